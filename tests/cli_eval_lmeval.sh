#!/usr/bin/env bash
# tests/cli_eval_lmeval.sh: potluck's multiple-choice scores equal
# lm-evaluation-harness's, item by item, on HellaSwag and SmolLM2.
#  1. `potluck eval --limit N --write-items` picks N HellaSwag tasks from
#     the shared llama.cpp-format fixture (N = 30 in make test; POTLUCK_EVAL_PEER_ITEMS;
#     tests/big_eval_lmeval.sh runs 200 in make test-big);
#  2. lm-eval (its own venv, make venv-lmeval) scores those items offline
#     through its Hugging Face model on the same GGUF weights
#     (tests/interop/_lmeval_mc.py); its output is cached under
#     $POTLUCK_CACHE/lmeval_mc/<key>, key = sha256(lm-eval requirements,
#     script, items, model, tokenizer files). lm-eval's tokenizer is the
#     tokenizer.json that `potluck export --format merged` writes for the GGUF
#     (run by the tokenizers library), not the one transformers derives from
#     the GGUF: that conversion splits some characters differently from
#     llama.cpp (SmolLM2: " ¼" -> [3351, 137]; llama.cpp, potluck and
#     tokenizers on tokenizer.json: [216, 28151]), which moves those items'
#     log-likelihoods by nats;
#  3. potluck (optimized build) scores them, --samples per item;
#  4. every choice's log-likelihood within 1e-3 + 1e-4 |ll| nats of lm-eval's
#     (a choice's ll sums the log-probabilities of its tokens, each computed
#     in fp32 on both sides with another summation order, so the difference
#     grows with the sum: seen 7.9e-4 on an AVX-512 machine, 1.3e-3 on an
#     AVX2 one); the same acc / acc_norm pick wherever the two best choices
#     differ by more than that bound (in ll, or in ll/len for acc_norm); acc
#     and acc_norm equal.
set -u
cd "$(dirname "$0")/.."
source tests/check.sh
BIN_OPT=${POTLUCK_BIN_OPT:?}
: "${POTLUCK_MODEL:?}" "${POTLUCK_SHARED:?}"
CACHE=${POTLUCK_CACHE:-$HOME/.cache/potluck}
LMV=${POTLUCK_LMEVAL_VENV:-$CACHE/venv-lmeval-$(sha256sum tests/requirements-lmeval.txt | cut -c1-16)}
N=${POTLUCK_EVAL_PEER_ITEMS:-30}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
HS=$POTLUCK_SHARED/fixtures/eval/hellaswag_val_full.txt

"$BIN_OPT" eval --task "$HS" --limit "$N" --write-items "$tmp/items.jsonl" || { fail "--write-items"; check_summary cli_eval_lmeval; exit; }
"$BIN_OPT" export --format merged --model "$POTLUCK_MODEL" --out "$tmp/merged" >/dev/null 2>"$tmp/ex.err" || { fail "export merged: $(cat "$tmp/ex.err")"; check_summary cli_eval_lmeval; exit; }
mkdir -p "$tmp/tok" && cp "$tmp/merged"/tokenizer*.json "$tmp/merged"/special_tokens_map.json "$tmp/tok/" 2>/dev/null; rm -rf "$tmp/merged"
key=$( { cat tests/requirements-lmeval.txt tests/interop/_lmeval_mc.py "$tmp/items.jsonl" "$tmp/tok"/*; sha256sum "$POTLUCK_MODEL"; } | sha256sum | cut -c1-16)
cache=$CACHE/lmeval_mc/$key
if [ -f "$cache/.done" ]; then
  echo "note: lm-eval's scores of these $N items taken from the cache ($key)"
  ok
elif [ ! -x "$LMV/bin/python" ]; then
  fail "no lm-eval venv at $LMV (make venv-lmeval)"
  check_summary cli_eval_lmeval; exit
else
  t0=$(date +%s)
  rm -rf "$cache.tmp"; mkdir -p "$cache.tmp"
  if POTLUCK_PEER_THREADS=2 "$LMV/bin/python" tests/interop/_lmeval_mc.py "$tmp/items.jsonl" "$POTLUCK_MODEL" "$cache.tmp" "$tmp/tok" \
       >"$tmp/lm.out" 2>"$tmp/lm.err"; then
    touch "$cache.tmp/.done"; rm -rf "$cache"; mv "$cache.tmp" "$cache"
    echo "note: lm-eval scored $N items in $(( $(date +%s) - t0 )) s (cached afterwards)"
    ok
  else
    fail "lm-eval: $(tail -5 "$tmp/lm.err")"; check_summary cli_eval_lmeval; exit
  fi
fi

"$BIN_OPT" eval "$POTLUCK_MODEL" --task "$tmp/items.jsonl" --threads 2 --quiet --samples "$tmp/pl.jsonl" \
  --out "$tmp/pl.json" >/dev/null 2>"$tmp/pl.err" || { fail "potluck eval: $(cat "$tmp/pl.err")"; check_summary cli_eval_lmeval; exit; }

python3 - "$tmp/items.jsonl" "$tmp/pl.jsonl" "$cache/lmeval_samples.jsonl" "$tmp/pl.json" "$cache/lmeval_results.json" <<'EOF'
import json, sys
items = {d["index"]: d for d in map(json.loads, open(sys.argv[1]))}
pl = {d["index"]: d for d in map(json.loads, open(sys.argv[2]))}
lm = {d["index"]: d for d in map(json.loads, open(sys.argv[3]))}
rows = {r["metric"]: r for r in json.load(open(sys.argv[4]))["rows"]}
lmr = json.load(open(sys.argv[5]))
bad = 0
def check(cond, msg):
    global bad
    print(("ok   " if cond else "FAIL ") + msg)
    bad += 0 if cond else 1
check(set(pl) == set(lm) == set(items), "the same %d items" % len(items))
def tol(v):
    return 1e-3 + 1e-4 * abs(v)
mx, worst, over = 0.0, None, 0.0  # over: the largest |diff| / tol
same = {"acc": [0, 0], "acc_norm": [0, 0]}   # [compared, agreeing]
ties = {"acc": 0, "acc_norm": 0}
for i, it in items.items():
    a, b = pl[i]["ll"], lm[i]["ll"]
    for c, (x, y) in enumerate(zip(a, b)):
        if abs(x - y) > mx: mx, worst = abs(x - y), (i, c)
        over = max(over, abs(x - y) / tol(y))
    lens = [len(ch) for ch in it["choices"]]
    for name, sc, pick in (("acc", b, pl[i]["pred"]), ("acc_norm", [v / n for v, n in zip(b, lens)], pl[i]["pred_norm"])):
        top = sorted(range(len(sc)), key=lambda c: -sc[c])
        if sc[top[0]] - sc[top[1]] <= tol(sc[top[0]]) + tol(sc[top[1]]):
            ties[name] += 1
            continue
        same[name][0] += 1
        same[name][1] += pick == top[0]
        lm_correct = lm[i][name] == 1.0
        if lm_correct != (pick == it["gold"]):
            print("  item %d: %s: lm-eval %s, potluck picks %d (gold %d)" % (i, name, lm_correct, pick, it["gold"]))
check(over <= 1.0, "every choice's log-likelihood within 1e-3 + 1e-4 |ll| of lm-eval's: max |diff| %.2e (item %s choice %s), %.2f of the bound at most" % (mx, worst[0] if worst else "-", worst[1] if worst else "-", over))
for name in ("acc", "acc_norm"):
    n, s = same[name]
    check(n == s, "%s: the same pick on %d/%d items whose two best choices differ by more than the bound (%d closer)" % (name, s, n, ties[name]))
    check(abs(rows[name]["value"] - lmr[name]) < 1e-9, "%s: potluck %.4f ± %.4f, lm-eval %.4f ± %.4f" % (name, rows[name]["value"], rows[name]["stderr"], lmr[name], lmr[name + "_stderr"]))
print("note: %d HellaSwag items, SmolLM2-135M-Instruct Q4_1: acc %.4f acc_norm %.4f (both = lm-eval), max |ll diff| %.2e; acc_llamacpp %.4f; lm-eval %s, %.0f s on %d threads" % (
    len(items), rows["acc"]["value"], rows["acc_norm"]["value"], mx, rows["acc_llamacpp"]["value"],
    lmr["versions"]["lm_eval"], lmr["seconds"], lmr["threads"]))
sys.exit(1 if bad else 0)
EOF
[ $? = 0 ] && ok || fail "potluck and lm-eval disagree (lines above)"
check_summary cli_eval_lmeval
