#!/usr/bin/env bash
# bench/run.sh: potluck vs llama.cpp speed on the same GGUF, same threads, measured in one run;
# then training-step speed vs PyTorch (bench/train_bench.sh).
#
# `make bench` runs this after building ./potluck, with POTLUCK_VENV and
# POTLUCK_MODEL set by the Makefile. Measurements (both sides get the same
# fixed prompt ids [(i * 7919) % 40000 + 100 for i in range(N)], greedy, 2 threads):
#   pp        prompt processing, batch 1, 256 prompt tokens (run with --gen-tokens 1) -> pp_tokens_per_s
#   tg        generation, batch 1, 16-token prompt, 128 new tokens -> tg_tokens_per_s
#   tg_b8     generation, 8 sequences decoded together (8 tokens per step),
#             16-token prompts, 128 new tokens each                -> tg_tokens_per_s (all sequences)
# potluck:   ./potluck bench-gen --model M --batch B --prompt-tokens N --gen-tokens G --threads T
# llama.cpp: $POTLUCK_VENV/bin/python bench/llamacpp_gen.py (same flags; llama-cpp-python's C API)
# Each prints one JSON line {"batch","prompt_tokens","gen_tokens","pp_tokens_per_s","tg_tokens_per_s"}.
# Every measurement runs BENCH_REPS times per side, the sides alternating so a
# change in machine load hits both; the table shows medians, the ratio
# potluck / llama.cpp (above 1: potluck is faster) and each side's peak RSS
# (the largest over the runs, from /usr/bin/time -v; llama.cpp's includes the
# Python interpreter, numpy and llama_cpp imports, about 40 MB).
#
# Environment: POTLUCK_MODEL, POTLUCK_VENV (required); BENCH_THREADS (2),
# BENCH_REPS (3), BENCH_ONLY=llamacpp|potluck (one side only, no ratios),
# BENCH_OUT (where raw outputs go; default build/bench/<date-time>),
# BENCH_POTLUCK (the binary; default ./potluck).
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "bench: $*" >&2; exit 1; }

THREADS=${BENCH_THREADS:-2}
REPS=${BENCH_REPS:-3}
ONLY=${BENCH_ONLY:-}
: "${POTLUCK_MODEL:?bench: POTLUCK_MODEL is not set (run through make bench)}"
: "${POTLUCK_VENV:?bench: POTLUCK_VENV is not set (run through make bench)}"
PY="$POTLUCK_VENV/bin/python"
POTLUCK=${BENCH_POTLUCK:-./potluck}
case "$ONLY" in ""|llamacpp|potluck) ;; *) die "BENCH_ONLY must be llamacpp or potluck, not '$ONLY'";; esac
[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPS must be a positive integer, not '$REPS'"

# ---------------------------------------------------------------- preflight
[ -f "$POTLUCK_MODEL" ] || die "model $POTLUCK_MODEL is missing (make model fetches it)"
[ -x /usr/bin/time ] || die "/usr/bin/time is missing: install the Debian package 'time' (apt-get install time)"
if [ "$ONLY" != llamacpp ]; then
  [ -x "$POTLUCK" ] || die "$POTLUCK is missing: build it first (make, or make bench which builds it), or set BENCH_ONLY=llamacpp"
fi
if [ "$ONLY" != potluck ]; then
  [ -x "$PY" ] || die "$PY is missing: the peers' venv is not built (make venv)"
  "$PY" -c "import llama_cpp, numpy" 2>/dev/null || die "$PY cannot import llama_cpp and numpy (make venv)"
fi

OUT=${BENCH_OUT:-build/bench/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
: > "$OUT/results.tsv"   # measurement side rep tok_per_s peak_rss_kb

export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS

# name batch prompt_tokens gen_tokens json_field
MEASUREMENTS=(
  "pp    1 256   1 pp_tokens_per_s"
  "tg    1  16 128 tg_tokens_per_s"
  "tg_b8 8  16 128 tg_tokens_per_s"
)

# run_one SIDE NAME REP B N G FIELD: runs one measurement, appends a line to results.tsv.
run_one() {
  local side=$1 name=$2 rep=$3 b=$4 n=$5 g=$6 field=$7
  local tag="$OUT/$name.$side.$rep"
  local args=(--model "$POTLUCK_MODEL" --batch "$b" --prompt-tokens "$n" --gen-tokens "$g" --threads "$THREADS")
  local cmd
  if [ "$side" = potluck ]; then cmd=("$POTLUCK" bench-gen "${args[@]}")
  else cmd=("$PY" bench/llamacpp_gen.py "${args[@]}"); fi
  local rc=0
  /usr/bin/time -v -o "$tag.time" "${cmd[@]}" > "$tag.out" 2> "$tag.err" || rc=$?
  if [ $rc -ne 0 ]; then
    echo "bench: $side $name failed (exit $rc): ${cmd[*]}" >&2
    tail -n 5 "$tag.err" | sed 's/^/bench:   /' >&2
    [ "$side" = potluck ] && echo "bench: (does $POTLUCK implement 'bench-gen'? bench/run.sh states the contract)" >&2
    exit 1
  fi
  # Check the JSON line and pull out FIELD; fails loudly on anything unexpected.
  local val
  val=$(python3 - "$tag.out" "$field" "$b" "$n" "$g" <<'EOF'
import json, math, sys
path, field, b, n, g = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
lines = [l for l in open(path) if l.lstrip().startswith("{")]
if not lines:
    sys.exit("%s: no JSON line in the output" % path)
try:
    r = json.loads(lines[-1])
except ValueError as e:
    sys.exit("%s: last JSON line does not parse: %s" % (path, e))
for k, want in (("batch", b), ("prompt_tokens", n), ("gen_tokens", g)):
    if r.get(k) != want:
        sys.exit("%s: %s is %r, expected %d" % (path, k, r.get(k), want))
v = r.get(field)
if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
    sys.exit("%s: %s is %r, expected a positive number" % (path, field, v))
print(v)
EOF
) || die "$side $name: bad output (see $tag.out)"
  local rss
  rss=$(sed -n 's/^\s*Maximum resident set size (kbytes): //p' "$tag.time")
  [ -n "$rss" ] || die "$side $name: no peak RSS in $tag.time"
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$side" "$rep" "$val" "$rss" >> "$OUT/results.tsv"
  awk -v n="$name" -v s="$side" -v r="$rep" -v v="$val" -v k="$rss" \
    'BEGIN { printf "bench: %-6s %-9s run %d: %10.1f tok/s, peak RSS %6.1f MB\n", n, s, r, v, k / 1024 }' >&2
}

SIDES=(potluck llamacpp)
[ -n "$ONLY" ] && SIDES=("$ONLY")
echo "bench: $REPS run(s) per measurement and side, $THREADS threads, model $(basename "$POTLUCK_MODEL"); raw outputs in $OUT" >&2
for m in "${MEASUREMENTS[@]}"; do
  read -r name b n g field <<< "$m"
  for rep in $(seq 1 "$REPS"); do
    for side in "${SIDES[@]}"; do run_one "$side" "$name" "$rep" "$b" "$n" "$g" "$field"; done
  done
done

# ---------------------------------------------------------------- table
python3 - "$OUT/results.tsv" "$THREADS" <<'EOF' | tee "$OUT/table.txt"
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
order = []
vals, rss = {}, {}
for name, side, rep, v, kb in rows:
    if name not in order:
        order.append(name)
    vals.setdefault((name, side), []).append(float(v))
    rss[(name, side)] = max(rss.get((name, side), 0), int(kb))
desc = {"pp": "prompt 256 tok, batch 1", "tg": "generate 128, batch 1", "tg_b8": "generate 128 x 8, batch 8"}
def med(name, side):
    v = vals.get((name, side))
    return statistics.median(v) if v else None
def fmt(x, f="%.1f"):
    return f % x if x is not None else "-"
print("threads: %s; tok/s are medians of %d runs; ratio = potluck / llama.cpp"
      % (sys.argv[2], max(len(v) for v in vals.values())))
hdr = ("measurement", "potluck tok/s", "llama.cpp tok/s", "ratio", "potluck RSS MB", "llama.cpp RSS MB")
print("%-34s %14s %16s %7s %15s %17s" % hdr)
for name in order:
    p, l = med(name, "potluck"), med(name, "llamacpp")
    ratio = p / l if p is not None and l is not None else None
    pr = rss.get((name, "potluck")); lr = rss.get((name, "llamacpp"))
    print("%-34s %14s %16s %7s %15s %17s" % (
        "%s (%s)" % (name, desc.get(name, "")), fmt(p), fmt(l), fmt(ratio, "%.2f"),
        fmt(pr / 1024 if pr else None), fmt(lr / 1024 if lr else None)))
EOF

# ---------------------------------------------------------------- training
# Training-step speed against PyTorch (bench/train_bench.sh states what it
# measures); BENCH_TRAIN=0 skips it, BENCH_ONLY=llamacpp skips it too.
if [ "${BENCH_TRAIN:-1}" != 0 ] && [ "$ONLY" != llamacpp ]; then
  train_only=; [ "$ONLY" = potluck ] && train_only=potluck
  BENCH_OUT="$OUT" BENCH_ONLY="$train_only" BENCH_POTLUCK="$POTLUCK" BENCH_THREADS="$THREADS" \
    bash bench/train_bench.sh
fi

# ---------------------------------------------------------------- products
# What the thread-count independent GEMM tiles cost against one threaded
# OpenBLAS sgemm call (bench/gemm_bench.sh); BENCH_GEMM=0 skips it.
if [ "${BENCH_GEMM:-1}" != 0 ] && [ "$ONLY" != llamacpp ]; then
  BENCH_OUT="$OUT" BENCH_POTLUCK="$POTLUCK" BENCH_THREADS="$THREADS" BENCH_REPS="$REPS" bash bench/gemm_bench.sh
fi

# ---------------------------------------------------------------- tokenizers
# Encode throughput against Hugging Face tokenizers on the test corpus;
# BENCH_TOKENIZE=0 skips it.
if [ "${BENCH_TOKENIZE:-1}" != 0 ] && [ "$ONLY" = "" ]; then
  bash bench/tokenize_bench.sh
fi

# ---------------------------------------------------------------- datasets
# Loader throughput against a raw memory-mapped read, and data build write
# throughput; BENCH_LOADER=0 skips it.
if [ "${BENCH_LOADER:-1}" != 0 ] && [ "$ONLY" = "" ]; then
  bash bench/loader_bench.sh
fi

# ---------------------------------------------------------------- QLoRA
# QLoRA training steps (NF4 base, LoRA r16 all-linear, seq 256) against
# PyTorch + PEFT (+ bitsandbytes 4-bit on the CPU); BENCH_QLORA=0 skips it.
if [ "${BENCH_QLORA:-1}" != 0 ] && [ "$ONLY" = "" ]; then
  bash bench/qlora_bench.sh
fi

# ---------------------------------------------------------------- recipes
# Near-dedup (MinHash + LSH) documents/s against datasketch; BENCH_DEDUP=0
# skips it. Pipeline overhead (a Lua map + two C filters over 100k
# documents); BENCH_PIPELINE=0 skips it.
if [ "${BENCH_DEDUP:-1}" != 0 ] && [ "$ONLY" = "" ]; then
  bash bench/dedup.sh "$POTLUCK"
fi
if [ "${BENCH_PIPELINE:-1}" != 0 ] && [ "$ONLY" = "" ]; then
  bash bench/pipeline_bench.sh "$POTLUCK"
fi

# ---------------------------------------------------------------- eval
# HellaSwag items/s against lm-evaluation-harness on the same items and
# threads (bench/eval_bench.sh); BENCH_EVAL=0 skips it.
if [ "${BENCH_EVAL:-1}" != 0 ] && [ "$ONLY" = "" ]; then
  bash bench/eval_bench.sh "$POTLUCK"
fi

# ---------------------------------------------------------------- planner
# plan / measured per category and RSS growth / plan total for 7 training
# configurations (bench/plan_bench.sh); BENCH_PLAN=0 skips it.
if [ "${BENCH_PLAN:-1}" != 0 ] && [ "$ONLY" = "" ]; then
  bash bench/plan_bench.sh "$POTLUCK"
fi

# ---------------------------------------------------------------- ranks
# data-parallel training at 1 process and 2 ranks, the exchange overlapped
# with the backward and after it (bench/mpi_train.sh), and MinHash dedup at 1
# and 2 ranks (bench/mpi_dedup.sh); BENCH_MPI=0 skips both.
if [ "${BENCH_MPI:-1}" != 0 ] && [ "$ONLY" = "" ]; then
  POTLUCK_BIN_OPT="$POTLUCK" bash bench/mpi_train.sh
  POTLUCK_BIN_OPT="$POTLUCK" bash bench/mpi_dedup.sh
fi

# ---------------------------------------------------------------- bundles
# pack / verify MB/s against tar --zstd + sha256sum on the same files
# (BENCH_BUNDLE_MB of shards, default 1024); BENCH_BUNDLE=0 skips it.
if [ "${BENCH_BUNDLE:-1}" != 0 ] && [ "$ONLY" = "" ]; then
  bash bench/bundle_bench.sh "$POTLUCK"
fi
