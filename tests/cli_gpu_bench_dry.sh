#!/usr/bin/env bash
# tests/cli_gpu_bench_dry.sh: bench/gpu.sh --dry-run runs the kernel bench on
# the CPU emulator in a few seconds, marks its table "emulated, not a
# measurement" and prints one row per kernel, none failed.
set -uo pipefail
cd "$(dirname "$0")/.."
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
t0=$(date +%s)
out=$(nice -n 5 bash bench/gpu.sh --dry-run 2>&1); rc=$?
dt=$(( $(date +%s) - t0 ))
[ $rc = 0 ] && ok || bad "bench/gpu.sh --dry-run exited $rc: $out"
grep -q "emulated, not a measurement" <<<"$out" && ok || bad "no 'emulated, not a measurement' mark"
for k in nf4_dequant nf4_gemv embedding rmsnorm rmsnorm_bwd rope swiglu swiglu_bwd adamw attention attention_bwd \
         lm_head_ce lm_head_ce_bwd "gemm y=x.W^T" "gemm dx=dy.W" "gemm dW+=dy^T.x" lora_fwd lora_bwd; do
  line=$(grep -F -- "$k " <<<"$out" | grep -F "(emulated)" | head -1)
  if [ -n "$line" ] && grep -qE '(GB/s|TFLOP/s)' <<<"$line"; then ok; else bad "no emulated row for $k"; fi
done
grep -q FAILED <<<"$out" && bad "a kernel failed: $(grep FAILED <<<"$out")" || ok
# a few seconds (the build, when not warm, is not the bench's cost: allow 120 s for it)
[ $dt -le 120 ] && ok || bad "took ${dt}s"
echo "report: bench/gpu.sh --dry-run: $(grep -c '(emulated)' <<<"$out") rows in ${dt}s"
echo "== cli_gpu_bench_dry: $pass passed, $fail failed"
[ "$fail" = 0 ]
