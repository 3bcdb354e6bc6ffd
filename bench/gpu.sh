#!/usr/bin/env bash
# bench/gpu.sh [--dry-run] [--iters N] [--no-train] [--skip-33b] [--skip-long] [--no-peft]
#              [--steps N] [--warmup N] [--scratch DIR]: the CUDA kernels (trainer/cuda/) on
# this machine's GPU, one row per kernel: time per call, achieved GB/s
# (memory-bound kernels) or TFLOP/s (GEMMs through cuBLASLt, LoRA, attention,
# the fused LM head + loss) and the share of the device's peak (memory
# bandwidth from cudaGetDeviceProperties / cudaDevAttrMemoryClockRate; bf16
# tensor-core TFLOP/s from a spec-sheet table in bench/gpu_bench.c: RTX 3090,
# RTX 4090, RTX A5000, L4, A100, H100, H200). Shapes: a 1B-class layer, T =
# 2048 tokens (bench/gpu_bench.c). Where PyTorch with CUDA is importable, the
# PyTorch op on the same device and shapes follows in the same run ("torch:"
# rows).
#
# --dry-run, or no GPU (nvidia-smi missing or failing): the same bench code
# runs on the CPU emulator (make build/opt/bench/gpu_bench) with tiny shapes
# and the table is marked "emulated, not a measurement". A few seconds.
#
# With a GPU: builds build/gpu/gpu_bench-sm_XX (make gpu-bench GPU_ARCH=XX:
# nvcc for the device's arch, cuBLASLt, the static CUDA runtime).
#
# Then the training steps: bench/gpu_train.sh (potluck train --backend cuda on
# 7B, 33B and long-context 8B shapes, PEFT beside it; emulated with tiny
# shapes under --dry-run), given the options after --iters; --no-train leaves
# it out.
set -euo pipefail
cd "$(dirname "$0")/.."
dry=0 iters=20 train=1 targs=()
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) dry=1 ;;
    --iters) iters=${2:?--iters needs a number}; shift ;;
    --no-train) train=0 ;;
    --skip-33b|--skip-long|--no-peft) targs+=("$1") ;;
    --steps|--warmup|--scratch) targs+=("$1" "${2:?$1 needs a value}"); shift ;;
    *) echo "usage: bench/gpu.sh [--dry-run] [--iters N] [--no-train] [--skip-33b] [--skip-long] [--no-peft] [--steps N] [--warmup N] [--scratch DIR]" >&2; exit 2 ;;
  esac
  shift
done
[[ "$iters" =~ ^[1-9][0-9]*$ ]] || { echo "gpu.sh: --iters must be a positive integer" >&2; exit 2; }
if [ $dry = 0 ] && { ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; }; then
  echo "gpu.sh: no GPU here (nvidia-smi missing or failing): running the emulator instead"
  dry=1
fi

if [ $dry = 1 ]; then
  make --no-print-directory -s build/opt/bench/gpu_bench >/dev/null
  echo "gpu.sh: emulated, not a measurement (CPU emulator, tiny shapes)"
  build/opt/bench/gpu_bench --tiny
  [ $train = 0 ] || exec bash bench/gpu_train.sh --dry-run ${targs[@]+"${targs[@]}"}
  exit 0
fi

arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
make --no-print-directory -s gpu-bench GPU_ARCH="$arch" >/dev/null
out=$(mktemp)
build/gpu/gpu_bench-sm_"$arch" --iters "$iters" | tee "$out"
# The achieved GEMM TFLOP/s and memory bandwidth, for `potluck plan --backend cuda`'s step times
# (trainer/plan_time.c reads $POTLUCK_GPU_MEASURED, else $POTLUCK_CACHE/gpu, else ~/.cache/potluck/gpu).
name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
case "$name" in
  *3090*) key=RTX_3090 ;; *4090*) key=RTX_4090 ;; *A5000*) key=RTX_A5000 ;; *A100*) key=A100_80GB ;;
  *H100*) key=H100_SXM ;; *" L4"|L4) key=L4 ;; *) key= ;;
esac
mdir=${POTLUCK_GPU_MEASURED:-${POTLUCK_CACHE:-$HOME/.cache/potluck}/gpu}
if [ -n "$key" ] && mkdir -p "$mdir"; then
  python3 - "$out" "$mdir/$key.json" "$name" <<'PY'
import json, os, re, sys
rows = open(sys.argv[1]).read().splitlines()
def num(prefix, unit):
    v = [float(m.group(1)) for l in rows if l.startswith(prefix) for m in [re.search(r"([0-9.eE+]+) " + unit, l)] if m]
    return max(v) if v else 0.0
tf = num("gemm y=x.W^T", "TFLOP/s")
gbs = max(num("nf4_dequant", "GB/s"), num("swiglu ", "GB/s"))
if tf > 0 and gbs > 0:
    tmp = sys.argv[2] + ".tmp"
    json.dump({"device": sys.argv[3], "gemm_tflops": tf, "gbs": gbs, "source": "bench/gpu.sh"}, open(tmp, "w"))
    os.replace(tmp, sys.argv[2])
    print(f"gpu.sh: wrote {sys.argv[2]} (GEMM {tf:.3g} TFLOP/s, {gbs:.3g} GB/s) for potluck plan --backend cuda")
PY
fi
rm -f "$out"

if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  ITERS=$iters python3 - <<'PY'
import os, torch, torch.nn.functional as F
it = int(os.environ["ITERS"])
dev, bf = "cuda", torch.bfloat16
T, C, H, V, nh, nkv, hd, r = 2048, 2048, 5632, 32000, 16, 4, 128, 16
def t(f):
    f(); torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(it): f()
    b.record(); b.synchronize()
    return a.elapsed_time(b) * 1e-3 / it
def row(name, shape, f, nbytes=0, flops=0):
    try:  # an op this PyTorch lacks (rms_norm: 2.4, enable_gqa: 2.5) skips its row only
        s = t(f)
    except Exception as e:
        print(f"{'torch:' + name:<18} {shape:<30} skipped ({type(e).__name__}: {str(e)[:60]})")
        return
    ach = f"{flops / s * 1e-12:.3g} TFLOP/s" if flops else f"{nbytes / s * 1e-9:.3g} GB/s"
    print(f"{'torch:' + name:<18} {shape:<30} {s * 1e6:12.1f}  {ach}")
print(f"PyTorch {torch.__version__} on {torch.cuda.get_device_name()}")
x = torch.randn(T, C, device=dev, dtype=bf); w = torch.ones(C, device=dev, dtype=bf)
E = torch.randn(V, C, device=dev, dtype=bf); ids = (torch.arange(T, device=dev) * 7919 + 13) % V
row("embedding", f"T={T} C={C}", (lambda: F.embedding(ids, E)), T * C * 4)
row("rmsnorm", f"T={T} C={C}", (lambda: F.rms_norm(x, (C,), w, 1e-5)), T * C * 4)
g, u = torch.randn(T, H, device=dev, dtype=bf), torch.randn(T, H, device=dev, dtype=bf)
row("swiglu", f"T={T} H={H}", (lambda: F.silu(g) * u), T * H * 6)
p = [torch.zeros(1 << 24, device=dev, requires_grad=True)]
p[0].grad = torch.randn_like(p[0]) * 1e-3
opt = torch.optim.AdamW(p, lr=1e-4, fused=True)
row("adamw (fused)", f"n={1 << 24}", opt.step, (1 << 24) * 28)
q = torch.randn(1, nh, T, hd, device=dev, dtype=bf); k = torch.randn(1, nkv, T, hd, device=dev, dtype=bf); v = torch.randn_like(k)
row("attention (sdpa)", f"T={T} nh={nh}/{nkv} hd={hd}", (lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)), 0, 2.0 * T * T * hd * nh)
W = torch.randn(V, C, device=dev, dtype=bf) * 0.05; tg = torch.arange(T, device=dev) % V
row("lm_head + ce", f"T={T} C={C} V={V}", (lambda: F.cross_entropy((x @ W.t()).float(), tg)), 0, 2.0 * T * C * V)
row("gemm y=x.W^T", f"T={T} in={C} out={V}", (lambda: x @ W.t()), 0, 2.0 * T * C * V)
A = torch.randn(r, C, device=dev, dtype=bf); B = torch.randn(C, r, device=dev, dtype=bf)
row("lora_fwd", f"T={T} in=out={C} r={r}", (lambda: x + 2.0 * ((x @ A.t()) @ B.t())), 0, 4.0 * T * C * r)
PY
else
  echo "gpu.sh: PyTorch with CUDA is not importable here: no torch rows"
fi

[ $train = 0 ] || exec bash bench/gpu_train.sh ${targs[@]+"${targs[@]}"}
