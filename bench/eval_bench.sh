#!/usr/bin/env bash
# bench/eval_bench.sh: multiple-choice eval throughput (HellaSwag items/s),
# potluck against lm-evaluation-harness, on the same items, model and
# threads, measured in one run. The items: BENCH_EVAL_ITEMS (default 40)
# HellaSwag tasks from the shared fixture (`potluck eval --limit`, seed
# 1234); lm-eval (venv-lmeval) runs its Hugging Face model on the same GGUF
# weights (float32, batch 8, the tokenizer.json of `potluck export --format
# merged`), potluck the GGUF directly (shared-prefix KV reuse, batched
# choices). Wall time of each whole command (model load included) and the
# items/s of the scoring alone as each tool reports it.
# Usage: bash bench/eval_bench.sh [POTLUCK_BIN]   (default ./potluck)
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-./potluck}
N=${BENCH_EVAL_ITEMS:-40}
THREADS=${BENCH_THREADS:-2}
CACHE=${POTLUCK_CACHE:-$HOME/.cache/potluck}
LMV=${POTLUCK_LMEVAL_VENV:-$CACHE/venv-lmeval-$(sha256sum tests/requirements-lmeval.txt | cut -c1-16)}
: "${POTLUCK_MODEL:?}" "${POTLUCK_SHARED:?}"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
HS=$POTLUCK_SHARED/fixtures/eval/hellaswag_val_full.txt
"$BIN" eval --task "$HS" --limit "$N" --write-items "$tmp/items.jsonl" || exit 1
"$BIN" export --format merged --model "$POTLUCK_MODEL" --out "$tmp/merged" >/dev/null || exit 1
mkdir -p "$tmp/tok" && cp "$tmp/merged"/tokenizer*.json "$tmp/merged"/special_tokens_map.json "$tmp/tok/"; rm -rf "$tmp/merged"
t0=$(date +%s.%N)
"$BIN" eval "$POTLUCK_MODEL" --task "$tmp/items.jsonl" --threads "$THREADS" --quiet --out "$tmp/pl.json" >/dev/null 2>"$tmp/pl.err" || { cat "$tmp/pl.err"; exit 1; }
t1=$(date +%s.%N)
"$BIN" eval "$POTLUCK_MODEL" --task "$tmp/items.jsonl" --threads "$THREADS" 2>&1 >/dev/null | grep -o '[0-9.]* items/s' | tail -1 >"$tmp/pl.rate"
[ -x "$LMV/bin/python" ] || { echo "eval bench: no lm-eval venv at $LMV (make venv-lmeval)"; exit 1; }
t2=$(date +%s.%N)
POTLUCK_PEER_THREADS=$THREADS "$LMV/bin/python" tests/interop/_lmeval_mc.py "$tmp/items.jsonl" "$POTLUCK_MODEL" "$tmp/lm" "$tmp/tok" \
  >/dev/null 2>"$tmp/lm.err" || { tail -5 "$tmp/lm.err"; exit 1; }
t3=$(date +%s.%N)
python3 - "$N" "$t0" "$t1" "$t2" "$t3" "$tmp/lm/lmeval_results.json" "$(cat "$tmp/pl.rate")" "$THREADS" <<'PY'
import json, sys
n = int(sys.argv[1]); t0, t1, t2, t3 = map(float, sys.argv[2:6])
lm = json.load(open(sys.argv[6])); pl_rate = sys.argv[7]; th = sys.argv[8]
pl_w, lm_w = t1 - t0, t3 - t2
print("eval: %d HellaSwag items, %s threads: potluck %.1f s (%.2f items/s; scoring alone %s), lm-eval %s %.1f s (%.2f items/s; %.2f items/s inside simple_evaluate, model load included); ratio %.1fx" % (
    n, th, pl_w, n / pl_w, pl_rate, lm["versions"]["lm_eval"], lm_w, n / lm_w, n / lm["seconds"], lm_w / pl_w))
PY
