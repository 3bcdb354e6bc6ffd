#!/usr/bin/env bash
# tests/big_eval_kl.sh (make test-big): `potluck eval --text --kl-base` against llama.cpp
# through llama-cpp-python (make test checks the same against llama-perplexity itself:
# tests/cli_eval_perplexity.sh).
# The variant is SmolLM2 re-quantized to Q4_0 by `potluck export` (no
# adapter), the reference the Q4_1 file it came from; the text the shared
# TinyStories sample, chunks of 128 tokens. llama.cpp (llama-cpp-python in
# the peers' venv, tests/interop/_llamacpp_kl.py, llama-perplexity's chunking
# and scoring) computes the same figures once per (peer versions, script,
# model bytes, text); the result is cached under $POTLUCK_CACHE/llamacpp_kl.
# llama.cpp quantizes activations (Q8_K) in its dot products, so the figures
# agree within tolerances, not bit for bit: scored tokens equal; perplexity
# of both within 1% (relative); KL mean within 5% (relative); KL p99 within
# 10%; same-top-token rate within 2 points.
set -u
cd "$(dirname "$0")/.."
source tests/check.sh
BIN_OPT=${POTLUCK_BIN_OPT:?}
: "${POTLUCK_MODEL:?}" "${POTLUCK_SHARED:?}" "${POTLUCK_VENV:?}"
CACHE=${POTLUCK_CACHE:-$HOME/.cache/potluck}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
TXT=$POTLUCK_SHARED/fixtures/text/tinystories_sample.txt
CTX=128

"$BIN_OPT" export --format gguf --model "$POTLUCK_MODEL" --type q4_0 --out "$tmp/q4_0.gguf" >/dev/null 2>"$tmp/ex.err" \
  && ok || { fail "export q4_0: $(cat "$tmp/ex.err")"; check_summary big_eval_kl; exit; }
key=$( { cat tests/requirements-peers.txt tests/interop/_llamacpp_kl.py; sha256sum "$POTLUCK_MODEL" "$tmp/q4_0.gguf" "$TXT"; echo $CTX; } | sha256sum | cut -c1-16)
cache=$CACHE/llamacpp_kl/$key
if [ -f "$cache/.done" ]; then
  echo "note: llama.cpp's figures taken from the cache ($key)"; ok
else
  rm -rf "$cache.tmp"; mkdir -p "$cache.tmp"
  if "$POTLUCK_VENV/bin/python" tests/interop/_llamacpp_kl.py "$POTLUCK_MODEL" "$tmp/q4_0.gguf" "$TXT" $CTX "$cache.tmp/kl.json" \
       >/dev/null 2>"$tmp/py.err"; then
    touch "$cache.tmp/.done"; rm -rf "$cache"; mv "$cache.tmp" "$cache"; ok
  else fail "llama.cpp: $(tail -5 "$tmp/py.err")"; check_summary big_eval_kl; exit; fi
fi

"$BIN_OPT" eval "$tmp/q4_0.gguf" --as q4_0 --text "$TXT" --ctx $CTX --kl-base "$POTLUCK_MODEL" --threads 2 --quiet \
  --out "$tmp/r.json" >/dev/null 2>"$tmp/pl.err" || { fail "potluck eval --kl-base: $(cat "$tmp/pl.err")"; check_summary big_eval_kl; exit; }
python3 - "$tmp/r.json" "$cache/kl.json" <<'EOF'
import json, sys
rows = {r["metric"]: r for r in json.load(open(sys.argv[1]))["rows"]}
ll = json.load(open(sys.argv[2]))
bad = 0
def check(cond, msg):
    global bad
    print(("ok   " if cond else "FAIL ") + msg)
    bad += 0 if cond else 1
v = lambda k: rows[k]["value"]
check(rows["ppl"]["n"] == ll["tokens"], "scored tokens: potluck %d, llama.cpp %d" % (rows["ppl"]["n"], ll["tokens"]))
for ours, theirs, tol in (("ppl_base", "ppl_ref", 0.01), ("ppl", "ppl", 0.01), ("kl_mean", "kl_mean", 0.05), ("kl_p99", "kl_p99", 0.10)):
    rel = abs(v(ours) - ll[theirs]) / abs(ll[theirs])
    check(rel <= tol, "%s: potluck %.5f, llama.cpp %.5f (%.2f%% apart, tolerance %.0f%%)" % (ours, v(ours), ll[theirs], 100 * rel, 100 * tol))
check(abs(v("same_top") - ll["same_top"]) <= 0.02, "same top token: potluck %.4f, llama.cpp %.4f" % (v("same_top"), ll["same_top"]))
print("note: KL(Q4_1 || Q4_0 re-quantized) on %d tokens: potluck mean %.4f p99 %.4f same-top %.2f%%, ppl %.3f -> %.3f; llama.cpp mean %.4f p99 %.4f same-top %.2f%%, ppl %.3f -> %.3f" % (
    ll["tokens"], v("kl_mean"), v("kl_p99"), 100 * v("same_top"), v("ppl_base"), v("ppl"),
    ll["kl_mean"], ll["kl_p99"], 100 * ll["same_top"], ll["ppl_ref"], ll["ppl"]))
sys.exit(1 if bad else 0)
EOF
[ $? = 0 ] && ok || fail "potluck and llama.cpp disagree (lines above)"
# the reference against itself: KL 0, the same top token everywhere
"$BIN_OPT" eval "$POTLUCK_MODEL" --text "$TXT" --ctx $CTX --kl-base "$POTLUCK_MODEL" --threads 2 --quiet --out "$tmp/s.json" >/dev/null 2>&1 && \
python3 - "$tmp/s.json" <<'EOF' && ok || fail "self KL"
import json, sys
rows = {r["metric"]: r["value"] for r in json.load(open(sys.argv[1]))["rows"]}
assert abs(rows["kl_mean"]) < 1e-9 and rows["same_top"] == 1 and rows["ppl"] == rows["ppl_base"], rows
EOF
check_summary big_eval_kl
