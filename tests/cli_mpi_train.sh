#!/usr/bin/env bash
# tests/cli_mpi_train.sh: data-parallel `potluck train` under mpirun -np 2
# (docs/distributed.md), on stories260K with LoRA r 4, dropout 0.1 and
# clipping, through a sharded dataset (batch 2 x grad accum 2 = 4 rows a step):
#  - 2 ranks and 1 process with the same global batch, 5 steps: losses equal
#    within 1e-6 relative, LoRA weights within 1e-5 relative (|a - b| / |a|
#    over all LoRA tensors, 2-norm), and no tensor off by more than 1e-3 of
#    its largest weight (the measured differences are printed as notes: AdamW
#    divides by sqrt(v) + eps, so an element whose gradient is near eps
#    (1e-8) after cancellation turns a rounding-level difference of the sum
#    into a visible one; the largest per-tensor max |diff| / max |w| is about
#    1e-4 at eps 1e-8 and 1e-5 at eps 1e-6);
#  - two 2-rank runs give the same bits; the exchange overlapped with the
#    backward (every layer's piece sent during it) and after it
#    (POTLUCK_DIST_OVERLAP=0) give the same bits; ZeRO-1 (--zero 1) and plain
#    all-reduce (--zero 0) agree within the same tolerance, and rank 0's
#    tagged optimizer memory (metrics.jsonl mem_peak.optimizer) is half;
#  - the CUDA backend on the emulator (build/emu/potluck) under mpirun: the
#    NCCL path (the emulator's NCCL over MPI) and the MPI path on its managed
#    memory give the same bits, both with the exchange overlapped with the
#    backward (2 steps; see the section below);
#  - kill -9 of one rank mid-run ends the job, non-zero, within seconds, with
#    a message; --resume at 2 ranks continues from the last checkpoint and
#    ends with the bits of an uninterrupted 2-rank run; --resume at 1 rank
#    trains the same rows as an uninterrupted run (per-step token counts
#    equal) and ends near it (60 steps, about 10 epochs: losses within 1e-4,
#    weights 1e-4).
# Uses the optimized build ($POTLUCK_BIN_OPT): Open MPI's own allocations show
# up as leaks under LeakSanitizer, so the ASan build is not run under mpirun.
# Without mpirun (a build machine without openmpi-bin) the test says so and
# counts nothing; `make deps` installs it.
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/check.sh
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
export OMP_NUM_THREADS=1
# containers: shared memory and loopback only, no CMA (ptrace) single copy
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
: "${POTLUCK_SHARED:?set POTLUCK_SHARED}"
BIN=${POTLUCK_BIN_OPT:-build/opt/potluck}
if ! command -v mpirun >/dev/null; then
  echo "note: mpirun not found (apt-get install openmpi-bin libopenmpi-dev; make deps does): nothing tested"
  check_summary cli_mpi_train; exit 0
fi
if ! grep -q 'MPI_Init_thread' <(nm -D --undefined-only "$BIN" 2>/dev/null); then
  fail "$BIN was built without MPI (the Makefile links Open MPI when pkg-config finds ompi-c)"
  check_summary cli_mpi_train; exit 1
fi
S=$POTLUCK_SHARED/fixtures
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
MPI=(mpirun --allow-run-as-root --oversubscribe -np 2 -x OMP_NUM_THREADS -x OMP_WAIT_POLICY)

python3 - "$S/text/tinystories_sample.txt" "$tmp/stories.jsonl" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
with open(sys.argv[2], "w") as f:
    for s in text.replace("\n", " ").split(". "):
        if s.strip(): f.write(json.dumps({"text": s.strip() + "."}) + "\n")
PY
if "$BIN" data build --in "$tmp/stories.jsonl" --out "$tmp/ds" --tokenizer "$S/stories260K/tok512.bin" >/dev/null 2>"$tmp/ds.err"; then ok
else fail "data build: $(cat "$tmp/ds.err")"; check_summary cli_mpi_train; exit 1; fi

ARGS=(--model "$S/stories260K/stories260K.bin" --data "$tmp/ds" --lora-r 4 --lora-alpha 8 --lora-dropout 0.1
      --base as-loaded --seq-len 48 --batch 2 --grad-accum 2 --lr 5e-3 --schedule cosine --warmup-steps 1
      --max-grad-norm 0.3 --seed 7)

# compare.py A B TOL_LOSS TOL_W LABEL: per-step losses and adapter tensors
cat >"$tmp/compare.py" <<'PY'
import json, struct, sys
def losses(d):
    out = {}
    for l in open(d + "/metrics.jsonl"):
        j = json.loads(l)
        if "loss" in j: out[j["step"]] = (j["loss"], j["tokens"])
    return out
def tensors(d):
    b = open(d + "/adapter/adapter_model.safetensors", "rb").read()
    n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); base = 8 + n
    out = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        s, e = v["data_offsets"]
        out[k] = struct.unpack("<%df" % ((e - s) // 4), b[base + s:base + e])
    return out
a, b, tl, tw, lab = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
la, lb = losses(a), losses(b)
bad = []
if sorted(la) != sorted(lb): bad.append("steps %s vs %s" % (sorted(la), sorted(lb)))
dl = max((abs(la[s][0] - lb[s][0]) / abs(la[s][0]) for s in la if s in lb), default=0)
if any(la[s][1] != lb[s][1] for s in la if s in lb): bad.append("per-step token counts differ (other rows trained)")
ta, tb = tensors(a), tensors(b)
dt, dmax, n2, d2 = 0.0, 0.0, 0.0, 0.0
for k in ta:
    m = max(abs(x) for x in ta[k]) or 1.0
    d = max(abs(x - y) for x, y in zip(ta[k], tb[k]))
    dt = max(dt, d / m); dmax = max(dmax, d)
    n2 += sum(x * x for x in ta[k]); d2 += sum((x - y) ** 2 for x, y in zip(ta[k], tb[k]))
dw = (d2 / n2) ** 0.5 if n2 else 0.0
print("note: %s: loss rel diff %.3g (max over %d steps); LoRA rel diff %.3g (2-norm), per tensor max |diff|/max |w| %.3g, max |diff| %.3g"
      % (lab, dl, len(la), dw, dt, dmax))
if dl > tl: bad.append("loss rel diff %.3g > %g" % (dl, tl))
if dw > tw: bad.append("LoRA rel diff %.3g > %g" % (dw, tw))
if dt > 100 * tw: bad.append("a LoRA tensor off by %.3g of its largest weight (> %g)" % (dt, 100 * tw))
if bad: print("FAIL: " + lab + ": " + "; ".join(bad), file=sys.stderr); sys.exit(1)
PY
cmp_runs() { if python3 "$tmp/compare.py" "$@"; then ok; else fail "$5: see above"; fi; }
same_bits() { cmp -s "$1/trainable.bin" "$2/trainable.bin" && cmp -s "$1/adapter/adapter_model.safetensors" "$2/adapter/adapter_model.safetensors"; }
opt_mem() { python3 -c 'import json,sys
m=[json.loads(l) for l in open(sys.argv[1]+"/metrics.jsonl")]
print(int(max(j.get("mem_peak",{}).get("optimizer",0) for j in m)))' "$1"; }
mpi_train() { # OUT ERRFILE args...
  local o=$1 e=$2; shift 2
  "${MPI[@]}" "$BIN" train "${ARGS[@]}" --out "$o" "$@" >"$o.out" 2>"$e"
}

t0=$(date +%s.%N)
# 1 process vs 2 ranks, 5 steps
if "$BIN" train "${ARGS[@]}" --steps 5 --out "$tmp/one" >/dev/null 2>"$tmp/one.err"; then ok; else fail "1 process: $(tail -3 "$tmp/one.err")"; fi
t1=$(date +%s.%N)
for z in 0 1; do
  if mpi_train "$tmp/two-z$z" "$tmp/two-z$z.err" --steps 5 --zero $z; then ok
  else fail "mpirun -np 2 --zero $z: $(tail -5 "$tmp/two-z$z.err")"; fi
done
t2=$(date +%s.%N)
if mpi_train "$tmp/two-z1b" "$tmp/two-z1b.err" --steps 5 --zero 1; then ok; else fail "second 2-rank run: $(tail -5 "$tmp/two-z1b.err")"; fi
echo "note: 5 steps: 1 process $(printf '%.2f' "$(echo "$t1 - $t0" | bc)") s, 2 ranks $(printf '%.2f' "$(echo "($t2 - $t1) / 2" | bc -l)") s (launch included)"
if [ -f "$tmp/two-z1/trainable.bin" ]; then
  cmp_runs "$tmp/one" "$tmp/two-z1" 1e-6 1e-5 "2 ranks (ZeRO-1) vs 1 process"
  cmp_runs "$tmp/one" "$tmp/two-z0" 1e-6 1e-5 "2 ranks (all-reduce) vs 1 process"
  cmp_runs "$tmp/two-z0" "$tmp/two-z1" 1e-6 1e-5 "ZeRO-1 vs all-reduce"
  if same_bits "$tmp/two-z0" "$tmp/two-z1"; then echo "note: ZeRO-1 and all-reduce give the same bits"; fi
  if same_bits "$tmp/two-z1" "$tmp/two-z1b"; then ok; else fail "two 2-rank runs differ in their bits"; fi
  m1=$(opt_mem "$tmp/one"); m0=$(opt_mem "$tmp/two-z0"); mz=$(opt_mem "$tmp/two-z1")
  echo "note: optimizer memory of rank 0: 1 process $m1 B, all-reduce $m0 B, ZeRO-1 $mz B"
  if [ "$m0" = "$m1" ] && [ $((2 * mz)) -le $((m0 + 8)) ] && [ $((2 * mz)) -ge $((m0 - 8)) ]; then ok
  else fail "ZeRO-1 optimizer memory $mz B is not half of $m0 B"; fi
  if ! [ -e "$tmp/two-z1/checkpoints" ] || [ "$(ls "$tmp/two-z1/checkpoints" | grep -c step-)" = 1 ]; then ok
  else fail "checkpoints: $(ls "$tmp/two-z1/checkpoints")"; fi
  # the exchange overlapped with the backward (the default on the CPU): every
  # layer's piece left during the last row's backward, and exchanging after
  # the backward instead (POTLUCK_DIST_OVERLAP=0) gives the same bits, with
  # ZeRO-1 and with all-reduce; also with one row a step, where rank 1 trains
  # nothing and sends its zeros after the backward
  if python3 - "$tmp/two-z1/metrics.jsonl" <<'PY'
import json, sys
st = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
assert st and all(j.get("comm_pieces") == 5 and j.get("comm_pieces_early") == 5 for j in st), \
    [(j.get("comm_pieces"), j.get("comm_pieces_early")) for j in st]
print("note: overlapped exchange: %d pieces a step, all sent during the backward" % st[0]["comm_pieces"])
PY
  then ok; else fail "the overlapped exchange's pieces (metrics.jsonl comm_pieces, comm_pieces_early)"; fi
  for z in 0 1; do
    if POTLUCK_DIST_OVERLAP=0 mpi_train "$tmp/after-z$z" "$tmp/after-z$z.err" --steps 5 --zero $z \
       && same_bits "$tmp/two-z$z" "$tmp/after-z$z" && ! grep -q comm_pieces "$tmp/after-z$z/metrics.jsonl"; then ok
    else fail "--zero $z: the exchange after the backward gives other bits than the overlapped one: $(tail -3 "$tmp/after-z$z.err")"; fi
  done
  ONE=(--batch 1 --grad-accum 1 --steps 3)
  if mpi_train "$tmp/row1" "$tmp/row1.err" "${ONE[@]}" && POTLUCK_DIST_OVERLAP=0 mpi_train "$tmp/row1b" "$tmp/row1b.err" "${ONE[@]}" \
     && same_bits "$tmp/row1" "$tmp/row1b"; then ok
  else fail "one row a step: overlapped and after-the-backward exchanges differ: $(tail -3 "$tmp/row1.err" "$tmp/row1b.err")"; fi
fi

# The CUDA backend under mpirun, on the emulator (build/emu/potluck), 2 steps: by default the NCCL
# path (trainer/cuda/nccl_dist.cu on device buffers; the emulator's NCCL moves the bytes over MPI),
# and with POTLUCK_DIST_NCCL=0 the MPI path on its managed memory, read after take_error. Checked:
# 1 process vs 2 ranks; ZeRO-1 vs all-reduce the same bits; the step lines say "comm": "nccl" (or
# "mpi"); NCCL and MPI paths the same bits; on both the exchange overlaps the backward (every piece
# queued during it) with the bits of the exchange after it (POTLUCK_DIST_OVERLAP=0); rank 0 writes
# the gathered optimizer state. tests/cli_mpi_nccl.sh checks the collectives themselves;
# tests/gpu/check.sh runs this on GPUs.
EMU=${POTLUCK_BIN_EMU:-build/emu/potluck}
if [ -x "$EMU" ]; then
  CU=(--backend cuda --steps 2)
  te0=$(date +%s)
  if "$EMU" train "${ARGS[@]}" "${CU[@]}" --out "$tmp/cu-one" >/dev/null 2>"$tmp/cu-one.err"; then ok
  else fail "emulated cuda, 1 process: $(tail -3 "$tmp/cu-one.err")"; fi
  for z in 0 1; do
    if "${MPI[@]}" "$EMU" train "${ARGS[@]}" "${CU[@]}" --zero $z --out "$tmp/cu-z$z" >/dev/null 2>"$tmp/cu-z$z.err"; then ok
    else fail "emulated cuda, mpirun -np 2 --zero $z: $(tail -5 "$tmp/cu-z$z.err")"; fi
  done
  if POTLUCK_DIST_NCCL=0 "${MPI[@]}" -x POTLUCK_DIST_NCCL "$EMU" train "${ARGS[@]}" "${CU[@]}" --zero 1 --out "$tmp/cu-mpi" >/dev/null 2>"$tmp/cu-mpi.err"; then ok
  else fail "emulated cuda, mpirun -np 2, POTLUCK_DIST_NCCL=0: $(tail -5 "$tmp/cu-mpi.err")"; fi
  if [ -f "$tmp/cu-z1/trainable.bin" ] && [ -f "$tmp/cu-z0/trainable.bin" ] && [ -f "$tmp/cu-mpi/trainable.bin" ]; then
    cmp_runs "$tmp/cu-one" "$tmp/cu-z1" 1e-6 1e-5 "emulated cuda: 2 ranks (ZeRO-1, NCCL) vs 1 process"
    if same_bits "$tmp/cu-z0" "$tmp/cu-z1"; then ok; else fail "emulated cuda: ZeRO-1 and all-reduce differ in their bits"; fi
    if same_bits "$tmp/cu-mpi" "$tmp/cu-z1"; then ok; else fail "emulated cuda: the NCCL and the MPI paths differ in their bits"; fi
    if grep -q '"comm":"nccl"' "$tmp/cu-z1/metrics.jsonl" && ! grep -q '"comm":"mpi"' "$tmp/cu-z1/metrics.jsonl"; then ok
    else fail "emulated cuda: the default 2-rank run did not take the NCCL path: $(grep -o '"comm":"[a-z]*"' "$tmp/cu-z1/metrics.jsonl" | sort -u)"; fi
    if grep -q '"comm":"mpi"' "$tmp/cu-mpi/metrics.jsonl"; then ok; else fail "emulated cuda: POTLUCK_DIST_NCCL=0 gave no \"comm\":\"mpi\" step line"; fi
    # the exchange overlapped with the backward on both paths (NCCL: queued on its stream; MPI: a device
    # sync per piece): every piece sent during the backward, and the bits of the exchange after it
    for p in cu-z1 cu-mpi; do
      if grep -q '"comm_pieces_early":5' "$tmp/$p/metrics.jsonl"; then ok
      else fail "emulated cuda ($p): the pieces were not sent during the backward: $(grep -o '"comm_pieces[a-z_]*":[0-9]*' "$tmp/$p/metrics.jsonl" | head -2)"; fi
    done
    if POTLUCK_DIST_OVERLAP=0 "${MPI[@]}" -x POTLUCK_DIST_OVERLAP "$EMU" train "${ARGS[@]}" "${CU[@]}" --zero 1 --out "$tmp/cu-after" >/dev/null 2>"$tmp/cu-after.err" \
       && same_bits "$tmp/cu-z1" "$tmp/cu-after" && ! grep -q '"comm_pieces_early"' "$tmp/cu-after/metrics.jsonl"; then ok
    else fail "emulated cuda: the overlapped and the after-the-backward NCCL exchanges differ: $(tail -3 "$tmp/cu-after.err")"; fi
    if [ "$(stat -c %s "$tmp/cu-z1/checkpoints/step-000002/optimizer.bin" 2>/dev/null)" = \
         "$(stat -c %s "$tmp/cu-one/checkpoints/step-000002/optimizer.bin" 2>/dev/null)" ]; then ok
    else fail "emulated cuda: rank 0's optimizer.bin is not the one-process size"; fi
  fi
  echo "note: emulated cuda under mpirun: $(( $(date +%s) - te0 )) s"
else
  echo "note: $EMU not built (make emu): the CUDA backend under mpirun not tested"
fi

# kill -9 of a rank mid-run; resume at 1 and at 2 ranks
NL=${MPI_TEST_STEPS:-60}
LONG=(--steps $NL --save-every 3 --keep-last 2)
if "$BIN" train "${ARGS[@]}" "${LONG[@]}" --out "$tmp/straight" >/dev/null 2>"$tmp/straight.err"; then ok
else fail "straight 1-process run: $(tail -3 "$tmp/straight.err")"; fi
if mpi_train "$tmp/straight2" "$tmp/straight2.err" "${LONG[@]}"; then ok
else fail "straight 2-rank run: $(tail -5 "$tmp/straight2.err")"; fi
steps_in() { local n; n=$(grep -c '"loss"' "$1/metrics.jsonl" 2>/dev/null); echo "${n:-0}"; }
"${MPI[@]}" "$BIN" train "${ARGS[@]}" "${LONG[@]}" --out "$tmp/killed" >/dev/null 2>"$tmp/killed.err" &
mpid=$!
for _ in $(seq 1 1500); do
  [ "$(steps_in "$tmp/killed")" -ge 7 ] && break
  kill -0 $mpid 2>/dev/null || break
  sleep 0.02
done
victim=$(pgrep -P $mpid -f 'potluck' | tail -1)
if [ -n "$victim" ]; then kill -9 "$victim"; fi
tk=$(date +%s.%N)
stopped=0
for _ in $(seq 1 300); do kill -0 $mpid 2>/dev/null || { stopped=1; break; }; sleep 0.05; done
if [ $stopped = 0 ]; then kill -9 $mpid 2>/dev/null; pkill -9 -P $mpid 2>/dev/null; fi
wait $mpid; mrc=$?
dt=$(echo "$(date +%s.%N) - $tk" | bc)
at=$(steps_in "$tmp/killed")
echo "note: kill -9 of rank pid ${victim:-none} after step $at: mpirun exit $mrc after $(printf '%.2f' "$dt") s"
grep -m2 -iE 'signal 9|killed|rank' "$tmp/killed.err" | sed 's/^/note:   /'
if [ -n "$victim" ] && [ $stopped = 1 ] && [ $mrc != 0 ] && [ "$at" -lt $NL ]; then ok
else fail "kill -9 of a rank: stopped=$stopped rc=$mrc after step $at"; fi
if grep -qiE 'signal 9|killed' "$tmp/killed.err"; then ok; else fail "no message saying a rank was killed: $(tail -5 "$tmp/killed.err")"; fi
cp -r "$tmp/killed" "$tmp/killed2"
if "$BIN" train "${ARGS[@]}" "${LONG[@]}" --out "$tmp/killed" --resume >/dev/null 2>"$tmp/r1.err"; then ok
else fail "resume at 1 rank: $(tail -3 "$tmp/r1.err")"; fi
grep -h 'resume:' "$tmp/r1.err" | sed 's/^/note: 1 rank: /'
if mpi_train "$tmp/killed2" "$tmp/r2.err" "${LONG[@]}" --resume; then ok
else fail "resume at 2 ranks: $(tail -5 "$tmp/r2.err")"; fi
grep -h 'resume:' "$tmp/r2.err" | sed 's/^/note: 2 ranks: /'
cmp_runs "$tmp/straight" "$tmp/killed" 1e-4 1e-4 "$NL steps, killed at 2 ranks, resumed at 1, vs 1 process"
if same_bits "$tmp/straight2" "$tmp/killed2"; then ok; else fail "killed and resumed at 2 ranks: other bits than the uninterrupted 2-rank run"; fi
cmp_runs "$tmp/straight2" "$tmp/killed2" 0 0 "$NL steps, killed and resumed at 2 ranks, vs 2 ranks"
echo "note: whole test $(( $(date +%s) - ${t0%.*} )) s"
check_summary cli_mpi_train
