#!/usr/bin/env bash
# tests/gpu/check.sh: the CUDA kernels on a real GPU, for a machine that has one.
#
#   bash tests/gpu/check.sh          build here for the device's arch (needs nvcc
#                                    and the project's build deps), then check
#   bash tests/gpu/check.sh --carried  use build/gpu/test_cuda_gpu-sm_XX built
#                                    elsewhere (`make gpu-test GPU_ARCH=XX`) and
#                                    carried over; only the driver is needed
#
# Runs tests/test_cuda_emu.c built against the real runtime (-DPL_CUDA_REAL):
# every kernel on the device against the CPU reference with the tolerances of
# docs/cuda.md; tests/test_cuda_backend.c the same way (the CUDA backend's
# QLoRA steps and greedy decoding against the CPU backend; POTLUCK_SHARED and
# POTLUCK_REFS must point at the fixtures and the peer references); then compute-sanitizer's memcheck, racecheck and synccheck on
# the same (small) shapes, and prints a summary. Budget: under 6 minutes on
# one H100 (each step has its own timeout).
set -uo pipefail
cd "$(dirname "$0")/../.."
carried=0; [ "${1:-}" = "--carried" ] && carried=1
export POTLUCK_SHARED=${POTLUCK_SHARED:-$PWD/../shared}
summary=()
fail=0
step() { # name, timeout seconds, command...
  local name=$1 to=$2; shift 2
  local t0=$(date +%s) out rc
  out=$(timeout "$to" "$@" 2>&1); rc=$?
  local dt=$(( $(date +%s) - t0 ))
  local line=$(grep -E '^== .*passed' <<<"$out" | tail -1)
  local san=$(grep -E 'ERROR SUMMARY' <<<"$out" | tail -1)
  if [ $rc = 0 ]; then summary+=("ok    $name (${dt}s) $line $san")
  else summary+=("FAIL  $name (${dt}s, exit $rc) $line $san"); fail=1; echo "---- $name"; tail -40 <<<"$out"; fi
}

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi >/dev/null 2>&1; then
  echo "check.sh: no GPU here (nvidia-smi missing or failing); the emulated tests (make test) are the proof"
  exit 2
fi
gpu=$(nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader | head -1)
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
echo "GPU: $gpu (sm_$arch)"
bin=build/gpu/test_cuda_gpu-sm_$arch
if [ $carried = 0 ]; then
  step "build (nvcc sm_$arch)" 300 make --no-print-directory gpu-test GPU_ARCH="$arch"
fi
if [ ! -x "$bin" ]; then
  echo "check.sh: $bin is missing (build it with: make gpu-test GPU_ARCH=$arch)"
  exit 1
fi
step "kernels vs CPU reference" 120 "$bin"
bbin=build/gpu/test_cuda_backend-sm_$arch
if [ -x "$bbin" ]; then
  step "backend: QLoRA steps and generation vs the CPU backend" 180 "$bbin"
  if [ -d "${POTLUCK_REFS:-/nonexistent}/peft_ref" ]; then
    step "backend: adapter for peft (--write-adapter)" 60 "$bbin" --write-adapter "$(mktemp -d)/out"
  else
    summary+=("skip  backend --write-adapter: POTLUCK_REFS/peft_ref not here")
  fi
else
  summary+=("skip  $bbin missing (make gpu-test GPU_ARCH=$arch)")
fi
cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [ -n "$cs" ]; then
  for tool in memcheck racecheck synccheck; do
    step "compute-sanitizer $tool" 150 "$cs" --tool "$tool" --error-exitcode 9 "$bin"
  done
else
  summary+=("skip  compute-sanitizer: not found")
fi
echo "==== summary ($gpu)"
printf '%s\n' "${summary[@]}"
exit $fail
