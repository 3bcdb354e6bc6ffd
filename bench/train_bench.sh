#!/usr/bin/env bash
# bench/train_bench.sh: potluck vs PyTorch training-step speed on the CPU, same model, same threads, one run.
#
# SmolLM2-135M ($POTLUCK_MODEL, a GGUF) dequantized to fp32 on both sides
# (potluck: pl_model_load with opts.fp32; torch: transformers
# from_pretrained(dir, gguf_file=...) in fp32, eager attention), one row of 256
# fixed token ids, batch 1, forward + backward + AdamW per step:
#   potluck: ./potluck bench-train --model M --seq 256 --steps S --warmup 1 --threads T
#   torch:   $POTLUCK_VENV/bin/python bench/torch_train.py (same flags)
# Each prints one JSON line with tokens_per_s (median of S timed steps after one
# warm-up step). potluck's line also carries the FLOPs of a step (6 * params *
# tokens + attention), the FLOP/s achieved, OpenBLAS sgemm's peak FLOP/s
# measured in the same process, and seconds per op (mean over the timed steps).
# BENCH_REPS runs per side, alternating; the table shows the medians, the ratio
# potluck / torch (above 1: potluck is faster), each side's peak RSS (largest
# over the runs, /usr/bin/time -v; torch's includes the Python interpreter and
# its imports) and where potluck's step time goes.
#
# Environment: POTLUCK_MODEL, POTLUCK_VENV (required); BENCH_THREADS (2),
# BENCH_REPS (3), BENCH_TRAIN_STEPS (3), BENCH_ONLY=potluck|torch (one side),
# BENCH_OUT (default build/bench/<date-time>), BENCH_POTLUCK (default ./potluck).
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "bench-train: $*" >&2; exit 1; }

THREADS=${BENCH_THREADS:-2}
REPS=${BENCH_REPS:-3}
STEPS=${BENCH_TRAIN_STEPS:-3}
SEQ=256
ONLY=${BENCH_ONLY:-}
: "${POTLUCK_MODEL:?bench-train: POTLUCK_MODEL is not set (run through make bench)}"
: "${POTLUCK_VENV:?bench-train: POTLUCK_VENV is not set (run through make bench)}"
PY="$POTLUCK_VENV/bin/python"
POTLUCK=${BENCH_POTLUCK:-./potluck}
case "$ONLY" in ""|potluck|torch) ;; *) die "BENCH_ONLY must be potluck or torch here, not '$ONLY'";; esac
[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPS must be a positive integer, not '$REPS'"
[[ "$STEPS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_TRAIN_STEPS must be a positive integer, not '$STEPS'"
[ -f "$POTLUCK_MODEL" ] || die "model $POTLUCK_MODEL is missing (make model fetches it)"
[ -x /usr/bin/time ] || die "/usr/bin/time is missing: install the Debian package 'time'"
if [ "$ONLY" != torch ]; then
  [ -x "$POTLUCK" ] || die "$POTLUCK is missing: build it first (make)"
fi
if [ "$ONLY" != potluck ]; then
  [ -x "$PY" ] || die "$PY is missing: the peers' venv is not built (make venv)"
  "$PY" -c "import torch, transformers, gguf" 2>/dev/null || die "$PY cannot import torch, transformers and gguf (make venv)"
fi

OUT=${BENCH_OUT:-build/bench/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
: > "$OUT/train.tsv"   # side rep tok_per_s peak_rss_kb json_file

export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS

run_one() {
  local side=$1 rep=$2
  local tag="$OUT/train.$side.$rep"
  local args=(--model "$POTLUCK_MODEL" --seq "$SEQ" --steps "$STEPS" --warmup 1 --threads "$THREADS")
  local cmd
  if [ "$side" = potluck ]; then cmd=("$POTLUCK" bench-train "${args[@]}")
  else cmd=("$PY" bench/torch_train.py "${args[@]}"); fi
  local rc=0
  /usr/bin/time -v -o "$tag.time" "${cmd[@]}" > "$tag.out" 2> "$tag.err" || rc=$?
  if [ $rc -ne 0 ]; then
    echo "bench-train: $side failed (exit $rc): ${cmd[*]}" >&2
    tail -n 5 "$tag.err" | sed 's/^/bench-train:   /' >&2
    [ "$side" = potluck ] && echo "bench-train: (does $POTLUCK implement 'bench-train'?)" >&2
    exit 1
  fi
  local val
  val=$(python3 - "$tag.out" "$SEQ" <<'EOF'
import json, math, sys
path, seq = sys.argv[1], int(sys.argv[2])
lines = [l for l in open(path) if l.lstrip().startswith("{")]
if not lines:
    sys.exit("%s: no JSON line in the output" % path)
r = json.loads(lines[-1])
if r.get("seq") != seq or r.get("batch") != 1:
    sys.exit("%s: seq/batch are %r/%r, expected %d/1" % (path, r.get("seq"), r.get("batch"), seq))
v = r.get("tokens_per_s")
if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
    sys.exit("%s: tokens_per_s is %r" % (path, v))
print(v)
EOF
) || die "$side: bad output (see $tag.out)"
  local rss
  rss=$(sed -n 's/^\s*Maximum resident set size (kbytes): //p' "$tag.time")
  [ -n "$rss" ] || die "$side: no peak RSS in $tag.time"
  printf '%s\t%s\t%s\t%s\t%s\n' "$side" "$rep" "$val" "$rss" "$tag.out" >> "$OUT/train.tsv"
  awk -v s="$side" -v r="$rep" -v v="$val" -v k="$rss" \
    'BEGIN { printf "bench-train: %-8s run %d: %8.1f tok/s, peak RSS %7.1f MB\n", s, r, v, k / 1024 }' >&2
}

SIDES=(potluck torch)
[ -n "$ONLY" ] && SIDES=("$ONLY")
echo "bench-train: $REPS run(s) per side, $THREADS threads, seq $SEQ, $STEPS timed steps per run, model $(basename "$POTLUCK_MODEL") dequantized to fp32; raw outputs in $OUT" >&2
for rep in $(seq 1 "$REPS"); do
  for side in "${SIDES[@]}"; do run_one "$side" "$rep"; done
done

python3 - "$OUT/train.tsv" "$THREADS" <<'EOF' | tee "$OUT/train_table.txt"
import json, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
vals, rss, last = {}, {}, {}
for side, rep, v, kb, path in rows:
    vals.setdefault(side, []).append(float(v))
    rss[side] = max(rss.get(side, 0), int(kb))
    last[side] = json.loads([l for l in open(path) if l.lstrip().startswith("{")][-1])
med = {s: statistics.median(v) for s, v in vals.items()}
p, t = med.get("potluck"), med.get("torch")
print("training step (forward + backward + AdamW), SmolLM2-135M fp32, seq 256, batch 1, %s threads; "
      "medians of %d runs" % (sys.argv[2], max(len(v) for v in vals.values())))
print("%-10s %10s %12s %10s" % ("side", "tok/s", "s/step", "RSS MB"))
for s in ("potluck", "torch"):
    if s in med:
        print("%-10s %10.1f %12.3f %10.1f" % (s, med[s], 256 / med[s], rss[s] / 1024))
if p and t:
    print("ratio potluck / torch: %.2f" % (p / t))
if "potluck" in last:
    r = last["potluck"]
    fl = r["flops_per_step"]
    ach = fl * p / 256
    print("FLOPs per step %.3g (6 * %d params * 256 tokens + attention); achieved %.1f GFLOP/s = %.0f%% of "
          "OpenBLAS sgemm peak %.1f GFLOP/s (1536^3, same run)"
          % (fl, r["params"], ach / 1e9, 100 * ach / r["sgemm_peak_flops"], r["sgemm_peak_flops"] / 1e9))
    tm = r["timers_s"]
    tot = sum(tm.values())
    print("potluck step time by op (last run, mean over its timed steps: %.3f s in ops of a %.3f s step):"
          % (tot, r["step_s_mean"]))
    for k, v in sorted(tm.items(), key=lambda kv: -kv[1]):
        if v >= 0.0005:
            print("  %-14s %7.3f s  %5.1f%%" % (k, v, 100 * v / tot))
EOF
