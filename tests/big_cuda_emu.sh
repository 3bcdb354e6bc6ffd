#!/usr/bin/env bash
# tests/big_cuda_emu.sh (make test-big): the emulated kernel tests with their
# larger shapes added (NF4 GEMV 576x1536, RMSNorm 300x4096, RoPE 512x32x128,
# AdamW/sumsq on 3M elements, attention (300,300) x 32 heads / 8 kv heads of
# 128 with segments, the fused LM head + loss at T 67, C 576, V 49152),
# optimized build.
cd "$(dirname "$0")/.."
PL_CUDA_TEST_BIG=1 exec build/opt/tests/opt_cuda_emu
