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
# the same (small) shapes; then, with mpirun, data-parallel training of the
# GPU build over NCCL against the MPI path (the same bits expected) and
# tests/gpu/nccl_check.c (NCCL's collectives vs MPI's bits and time, 40M
# floats; two GPUs); and prints a summary. Budget: under 6 minutes on
# one H100 for the kernels, plus potluck's nvcc build (a few minutes) and four
# 10-step stories260K runs for the NCCL part (each step has its own timeout).
set -uo pipefail
cd "$(dirname "$0")/../.."
carried=0; [ "${1:-}" = "--carried" ] && carried=1
export POTLUCK_SHARED=${POTLUCK_SHARED:-$PWD/../shared}
summary=()
fail=0
step() { # name, timeout seconds, command...
  local name=$1 to=$2; shift 2
  local t0=$(date +%s) out rc
  out=$(timeout "$to" "$@" 2>&1); rc=$?; last_out=$out
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
# Data-parallel training over NCCL (docs/distributed.md, "The NCCL path"):
# mpirun -np 2 of build/gpu/potluck-sm_XX (make gpu) training stories260K
# with --backend cuda, NCCL (the default) against POTLUCK_DIST_NCCL=0 (MPI on
# managed memory): the same trainable.bin bits are expected (the reduce-scatter
# sums in rank order on the device, as core/dist.c on the host); the step
# lines' comm_s (NCCL: event-timed on the device) against step_s. NCCL wants
# one GPU per rank ("Duplicate GPU detected" otherwise, no setting lifts it):
# with one GPU both ranks share device 0, potluck says so and keeps MPI, and
# the comparison is then MPI vs MPI (a functional check of --backend cuda
# under mpirun), marked as such. Then build/gpu/nccl_check-sm_XX: NCCL's
# reduce-scatter + all-gather of 40M floats (a 7B LoRA r 16 gradient) with
# MPI's bits, and their time (two GPUs or more only).
ngpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | wc -l)
if command -v mpirun >/dev/null; then
  export OMPI_MCA_btl=${OMPI_MCA_btl:-self,vader} OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
  MPI=(mpirun --allow-run-as-root --oversubscribe -np 2 -x OMP_NUM_THREADS=1 -x POTLUCK_DIST_NCCL)
  if [ $carried = 0 ]; then step "build potluck and nccl_check (nvcc sm_$arch)" 400 make --no-print-directory gpu gpu-nccl-check GPU_ARCH="$arch"; fi
  pbin=build/gpu/potluck-sm_$arch
  if [ -x "$pbin" ]; then
    d=$(mktemp -d); S=$POTLUCK_SHARED/fixtures
    python3 - "$S/text/tinystories_sample.txt" "$d/stories.jsonl" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
with open(sys.argv[2], "w") as f:
    for s in text.replace("\n", " ").split(". "):
        if s.strip(): f.write(json.dumps({"text": s.strip() + "."}) + "\n")
PY
    "$pbin" data build --in "$d/stories.jsonl" --out "$d/ds" --tokenizer "$S/stories260K/tok512.bin" >/dev/null
    TA=(train --backend cuda --model "$S/stories260K/stories260K.bin" --data "$d/ds" --lora-r 4 --lora-alpha 8
        --lora-dropout 0.1 --base as-loaded --seq-len 48 --batch 2 --grad-accum 2 --lr 5e-3 --max-grad-norm 0.3
        --seed 7 --steps 10)
    for z in 1 0; do
      step "mpirun -np 2 --backend cuda --zero $z (default: NCCL)" 180 env POTLUCK_DIST_NCCL=1 "${MPI[@]}" "$pbin" "${TA[@]}" --zero $z --out "$d/nccl-z$z"
      step "mpirun -np 2 --backend cuda --zero $z, POTLUCK_DIST_NCCL=0 (MPI)" 180 env POTLUCK_DIST_NCCL=0 "${MPI[@]}" "$pbin" "${TA[@]}" --zero $z --out "$d/mpi-z$z"
      comm=$(grep -o '"comm":"[a-z]*"' "$d/nccl-z$z/metrics.jsonl" 2>/dev/null | sort -u | tr '\n' ' ')
      what="NCCL vs MPI"; [ "$comm" = '"comm":"nccl" ' ] || what="MPI vs MPI ($ngpu GPU: NCCL not used, step lines say $comm)"
      if cmp -s "$d/nccl-z$z/trainable.bin" "$d/mpi-z$z/trainable.bin"; then summary+=("ok    --zero $z: $what: trainable.bin the same bits")
      else summary+=("FAIL  --zero $z: $what: trainable.bin differs"); fail=1; fi
      if [ $z = 1 ]; then # the overlapped exchange (pieces queued on the NCCL stream during the backward) vs after it
        step "mpirun -np 2 --backend cuda --zero 1, POTLUCK_DIST_OVERLAP=0" 180 env POTLUCK_DIST_NCCL=1 POTLUCK_DIST_OVERLAP=0 "${MPI[@]}" "$pbin" "${TA[@]}" --zero 1 --out "$d/after-z1"
        if cmp -s "$d/nccl-z1/trainable.bin" "$d/after-z1/trainable.bin"; then summary+=("ok    --zero 1: $what, overlapped vs after the backward: the same bits")
        else summary+=("FAIL  --zero 1: $what, overlapped vs after the backward: trainable.bin differs"); fail=1; fi
      fi
      python3 - "$d/nccl-z$z/metrics.jsonl" "$d/mpi-z$z/metrics.jsonl" <<'PY' | sed 's/^/  /'
import json, sys
for f in sys.argv[1:]:
    m = [json.loads(l) for l in open(f) if '"step_s"' in l][1:]  # the first step warms up
    if not m: continue
    st = sorted(j["step_s"] for j in m)[len(m) // 2]; cs = sorted(j["comm_s"] for j in m)[len(m) // 2]
    print("%s: %s: median step %.2f ms, of it in collectives %.3f ms (%.1f %%)" % (f.split("/")[-2], m[0].get("comm"), 1e3 * st, 1e3 * cs, 100 * cs / st))
PY
    done
    rm -rf "$d"
  else
    summary+=("skip  NCCL training check: $pbin missing (make gpu GPU_ARCH=$arch)")
  fi
  nbin=build/gpu/nccl_check-sm_$arch
  if [ "$ngpu" -ge 2 ] && [ -x "$nbin" ]; then
    step "NCCL reduce-scatter + all-gather of 40M floats vs MPI (bits, time)" 180 "${MPI[@]}" "$nbin" 40000000 10
    grep -h "nccl_check:" <<<"$last_out" | sed 's/^/  /'
  else
    summary+=("skip  nccl_check: needs 2 GPUs (found $ngpu) and $nbin")
  fi
else
  summary+=("skip  NCCL checks: mpirun not found (apt-get install openmpi-bin)")
fi
echo "==== summary ($gpu)"
printf '%s\n' "${summary[@]}"
exit $fail
