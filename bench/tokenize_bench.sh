#!/usr/bin/env bash
# bench/tokenize_bench.sh: potluck vs Hugging Face `tokenizers` encode speed on the tokenizer test corpus, same run.
#
# For each tokenizer, both sides encode every line of the corpus (tests/make_corpus.py;
# $POTLUCK_CACHE/corpus/tok-corpus-v1.txt, built here if missing) as a separate document,
# with 1 thread and with 2 threads, BENCH_REPS times each, alternating sides; the table
# shows median MB/s (10^6 bytes of text per second) and the ratio potluck / HF (above 1:
# potluck is faster).
#   potluck: ./potluck tokenize --tokenizer T --bench CORPUS --threads N
#   HF:      RAYON_NUM_THREADS=N $POTLUCK_VENV/bin/python bench/tokenize_bench.py T CORPUS  (encode_batch)
# Environment: POTLUCK_VENV, POTLUCK_SHARED, POTLUCK_CACHE, POTLUCK_MODEL (make bench sets
# them), BENCH_REPS (3), BENCH_POTLUCK (./potluck).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${POTLUCK_VENV:?}" "${POTLUCK_SHARED:?}" "${POTLUCK_CACHE:?}" "${POTLUCK_MODEL:?}"
REPS=${BENCH_REPS:-3}
POTLUCK=${BENCH_POTLUCK:-./potluck}
PY="$POTLUCK_VENV/bin/python"
CORPUS="$POTLUCK_CACHE/corpus/tok-corpus-v1.txt"
[ -f "$CORPUS" ] || python3 tests/make_corpus.py "$CORPUS"
[ -x "$POTLUCK" ] || { echo "tokenize_bench: $POTLUCK is missing (make potluck)" >&2; exit 1; }
F="$POTLUCK_SHARED/fixtures/tokenizers"
TOKS=("gpt2=$F/gpt2" "phi-2=$F/phi-2" "phi-3-mini=$F/phi-3-mini" "smollm2-gguf=$POTLUCK_MODEL")
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mbs() { sed -n 's/.*"mb_per_s": \([0-9.]*\).*/\1/p'; }
printf '%-14s %7s %12s %12s %7s\n' tokenizer threads potluck_MB/s hf_MB/s ratio
for kv in "${TOKS[@]}"; do
  name=${kv%%=*}; tok=${kv#*=}
  for th in 1 2; do
    p=(); h=()
    for ((r = 0; r < REPS; r++)); do
      p+=("$("$POTLUCK" tokenize --tokenizer "$tok" --bench "$CORPUS" --threads "$th" | mbs)")
      h+=("$(RAYON_NUM_THREADS=$th TOKENIZERS_PARALLELISM=true "$PY" bench/tokenize_bench.py "$tok" "$CORPUS" 2>/dev/null | mbs)")
    done
    pm=$(printf '%s\n' "${p[@]}" | median); hm=$(printf '%s\n' "${h[@]}" | median)
    printf '%-14s %7d %12.2f %12.2f %7.2f\n' "$name" "$th" "$pm" "$hm" "$(echo "$pm / $hm" | bc -l)"
  done
done
