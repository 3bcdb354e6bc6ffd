#!/usr/bin/env bash
# bench/mpi_train.sh [STEPS]: data-parallel QLoRA training steps at 1 process
# and at 2 ranks under mpirun, one thread each (docs/distributed.md), on
# SmolLM2-135M ($POTLUCK_MODEL; NF4 base, LoRA r 16 on every linear layer,
# seq 256, 2 rows a step: one per rank). At 2 ranks twice: with the gradient
# exchange overlapped with the backward (the default) and after it
# (POTLUCK_DIST_OVERLAP=0). Prints the median step seconds of each, the
# speedup over one process, and the median seconds in collectives per step
# (metrics.jsonl comm_s: at 2 ranks with overlap, posting each layer's
# pieces during the backward plus the wait at its end); checks that the two
# 2-rank runs end with the same bits. The first step (warm-up) is left out.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${POTLUCK_BIN_OPT:-build/opt/potluck}
: "${POTLUCK_MODEL:?set POTLUCK_MODEL (make bench does)}" "${POTLUCK_SHARED:?set POTLUCK_SHARED}"
STEPS=${1:-6}
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
if ! command -v mpirun >/dev/null; then echo "mpi_train: mpirun not found (make deps installs openmpi-bin)"; exit 0; fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
head -c 300000 "$POTLUCK_SHARED/fixtures/text/tinystories_sample.txt" >"$T/text.txt"
ARGS=(--model "$POTLUCK_MODEL" --text "$T/text.txt" --base nf4 --lora-r 16 --lora-alpha 32 --seq-len 256 --batch 2
      --grad-accum 1 --steps "$STEPS" --eval-every 0 --save-every 0 --seed 3 --threads 1)
MPI=(mpirun --allow-run-as-root --oversubscribe -np 2 -x OMP_NUM_THREADS -x OMP_WAIT_POLICY)
"$BIN" train "${ARGS[@]}" --out "$T/one" >/dev/null 2>"$T/one.err" || { tail -3 "$T/one.err"; exit 1; }
"${MPI[@]}" "$BIN" train "${ARGS[@]}" --out "$T/ov" >/dev/null 2>"$T/ov.err" || { tail -3 "$T/ov.err"; exit 1; }
POTLUCK_DIST_OVERLAP=0 "${MPI[@]}" "$BIN" train "${ARGS[@]}" --out "$T/after" >/dev/null 2>"$T/after.err" \
  || { tail -3 "$T/after.err"; exit 1; }
same=no
cmp -s "$T/ov/trainable.bin" "$T/after/trainable.bin" && same=yes
python3 - "$T/one" "$T/ov" "$T/after" "$same" <<'PY'
import json, statistics, sys
def steps(d):
    return [json.loads(l) for l in open(d + "/metrics.jsonl") if '"loss"' in l][1:]
one, ov, after = (steps(d) for d in sys.argv[1:4])
med = lambda xs: statistics.median(xs) if xs else float("nan")
t1 = med([j["step_s"] for j in one])
print("mpi_train: SmolLM2-135M NF4, r 16 all-linear, seq 256, 2 rows a step, one thread per process, %d steps timed" % len(one))
print("  1 process:                    %.3f s/step" % t1)
for name, st in (("2 ranks, overlapped exchange", ov), ("2 ranks, exchange after", after)):
    t, c = med([j["step_s"] for j in st]), med([j["comm_s"] for j in st])
    extra = ""
    if st and "comm_pieces" in st[0]:
        extra = ", %d of %d pieces sent during the backward" % (st[0]["comm_pieces_early"], st[0]["comm_pieces"])
    print("  %-29s %.3f s/step, speedup %.2fx over 1 process, collectives %.4f s/step%s" % (name + ":", t, t1 / t, c, extra))
print("  the two 2-rank runs end with the same bits: %s" % sys.argv[4])
sys.exit(0 if sys.argv[4] == "yes" else 1)
PY
