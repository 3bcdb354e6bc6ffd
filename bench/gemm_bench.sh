#!/usr/bin/env bash
# bench/gemm_bench.sh: what thread-count independent products cost, one run.
#
# potluck multiplies matrices with pl_gemm (core/gemm.h): output tiles of a
# fixed shape, each one single-threaded OpenBLAS sgemm call, so the bits do not
# depend on the thread count. Before, one threaded sgemm call let OpenBLAS split
# the work (faster when it splits well, but the bits change with the thread
# count and the processor). `--gemm openblas` on the bench commands restores
# that path; this script measures both, alternating, in the same run:
#   train    ./potluck bench-train --seq 256 (fp32 forward + backward + AdamW)
#   pp       ./potluck bench-gen, 256 prompt tokens, batch 1 (prompt processing)
#   tg_b16   ./potluck bench-gen, 16 sequences decoded together, 16-token
#            prompts, 64 new tokens each (T = 16 takes the dequantize + GEMM path)
# and prints the medians and the ratio tiled / openblas (1.0: no cost; below 1:
# the tiles are slower).
#
# Environment: POTLUCK_MODEL (required); BENCH_THREADS (2), BENCH_REPS (3),
# BENCH_POTLUCK (./potluck), BENCH_OUT (default build/bench/<date-time>).
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "gemm-bench: $*" >&2; exit 1; }
: "${POTLUCK_MODEL:?gemm-bench: POTLUCK_MODEL is not set (run through make bench)}"
THREADS=${BENCH_THREADS:-2}
REPS=${BENCH_REPS:-3}
POTLUCK=${BENCH_POTLUCK:-./potluck}
[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPS must be a positive integer, not '$REPS'"
[ -x "$POTLUCK" ] || die "$POTLUCK is missing: build it first (make)"
OUT=${BENCH_OUT:-build/bench/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
: > "$OUT/gemm.tsv"   # measurement mode rep tok_per_s
export OMP_NUM_THREADS=$THREADS

# measure NAME MODE REP FIELD ARGS...: one run of ./potluck ARGS --gemm MODE, FIELD of its JSON line
measure() {
  local name=$1 mode=$2 rep=$3 field=$4; shift 4
  local tag="$OUT/gemm.$name.$mode.$rep"
  local rc=0
  "$POTLUCK" "$@" --gemm "$mode" --threads "$THREADS" >"$tag.out" 2>"$tag.err" || rc=$?
  if [ $rc -ne 0 ]; then tail -n 5 "$tag.err" >&2; die "$name --gemm $mode failed (exit $rc): $POTLUCK $*"; fi
  local v
  v=$(python3 -c "
import json, math, sys
r = json.loads([l for l in open('$tag.out') if l.lstrip().startswith('{')][-1])
v = r.get('$field')
if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0: sys.exit('$tag.out: $field is %r' % (v,))
print(v)") || die "$name --gemm $mode: bad output (see $tag.out)"
  printf '%s\t%s\t%s\t%s\n' "$name" "$mode" "$rep" "$v" >> "$OUT/gemm.tsv"
}

echo "gemm-bench: $REPS run(s) per measurement and mode, $THREADS threads; raw outputs in $OUT" >&2
for rep in $(seq 1 "$REPS"); do
  for mode in tiled openblas; do
    measure train "$mode" "$rep" tokens_per_s bench-train --model "$POTLUCK_MODEL" --seq 256 --steps 3 --warmup 1
    measure pp "$mode" "$rep" pp_tokens_per_s bench-gen --model "$POTLUCK_MODEL" --batch 1 --prompt-tokens 256 --gen-tokens 1
    measure tg_b16 "$mode" "$rep" tg_tokens_per_s bench-gen --model "$POTLUCK_MODEL" --batch 16 --prompt-tokens 16 --gen-tokens 64
  done
done

python3 - "$OUT/gemm.tsv" "$THREADS" <<'PY' | tee "$OUT/gemm_table.txt"
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
vals, order = {}, []
for name, mode, rep, v in rows:
    if name not in order: order.append(name)
    vals.setdefault((name, mode), []).append(float(v))
desc = {"train": "train step, seq 256, fp32", "pp": "prompt 256 tok, batch 1", "tg_b16": "generate 64 x 16, batch 16"}
print("threads: %s; tok/s are medians of %d runs; ratio = tiled (pl_gemm) / one threaded OpenBLAS sgemm"
      % (sys.argv[2], max(len(v) for v in vals.values())))
print("%-40s %14s %16s %7s" % ("measurement", "tiled tok/s", "openblas tok/s", "ratio"))
for n in order:
    t, o = statistics.median(vals[(n, "tiled")]), statistics.median(vals[(n, "openblas")])
    print("%-40s %14.1f %16.1f %7.3f" % ("%s (%s)" % (n, desc[n]), t, o, t / o))
PY
