#!/usr/bin/env bash
# tests/cli_eval_perplexity.sh: `potluck eval --text --kl-base` against
# llama.cpp's own llama-perplexity, built by `make llamacpp-perplexity` from
# the sources in the pinned llama-cpp-python sdist ($POTLUCK_LLAMA_PERPLEXITY).
# The variant is SmolLM2 re-quantized to Q4_0 by `potluck export`, the
# reference the Q4_1 file it came from; the text the shared TinyStories
# sample, chunks of 128 tokens:
#   llama-perplexity -m REF --kl-divergence-base base.kld -f TEXT -c 128
#   llama-perplexity -m VARIANT --kl-divergence-base base.kld --kl-divergence
# Its printed figures are parsed and cached per (binary, inputs) under
# $POTLUCK_CACHE/llama_perplexity. llama.cpp quantizes activations to 8 bits
# in its quantized dot products while potluck computes in fp32, so the
# figures agree within tolerances: scored tokens equal; both perplexities
# within 1%; KL mean within 5%; KL p99 within 10%; same-top-token rate
# within 2 points. (tests/big_eval_kl.sh, in make test-big, checks the same through the
# llama-cpp-python library, with llama-perplexity's chunking in Python.)
set -u
cd "$(dirname "$0")/.."
source tests/check.sh
BIN_OPT=${POTLUCK_BIN_OPT:?}
: "${POTLUCK_MODEL:?}" "${POTLUCK_SHARED:?}"
LPP=${POTLUCK_LLAMA_PERPLEXITY:-}
CACHE=${POTLUCK_CACHE:-$HOME/.cache/potluck}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
TXT=$POTLUCK_SHARED/fixtures/text/tinystories_sample.txt
CTX=128
if [ -z "$LPP" ] || [ ! -x "$LPP" ]; then
  fail "llama-perplexity not built (make llamacpp-perplexity; POTLUCK_LLAMA_PERPLEXITY='$LPP')"
  check_summary cli_eval_perplexity; exit; fi

"$BIN_OPT" export --format gguf --model "$POTLUCK_MODEL" --type q4_0 --out "$tmp/q4_0.gguf" >/dev/null 2>"$tmp/ex.err" \
  && ok || { fail "export q4_0: $(cat "$tmp/ex.err")"; check_summary cli_eval_perplexity; exit; }
key=$( { sha256sum "$LPP" "$POTLUCK_MODEL" "$tmp/q4_0.gguf" "$TXT" | cut -c1-64; echo $CTX; sed -n '/^python3 - "\$tmp\/ref.out"/,/^EOF/p' "$0"; } \
  | sha256sum | cut -c1-16)
cache=$CACHE/llama_perplexity/$key
if [ -f "$cache/lpp.json" ]; then
  echo "note: llama-perplexity's figures taken from the cache ($key)"; ok
else
  if "$LPP" -m "$POTLUCK_MODEL" -f "$TXT" -c $CTX -t 2 --kl-divergence-base "$tmp/base.kld" >"$tmp/ref.out" 2>&1 &&
     "$LPP" -m "$tmp/q4_0.gguf" -c $CTX -t 2 --kl-divergence-base "$tmp/base.kld" --kl-divergence >"$tmp/var.out" 2>&1; then
    ok
  else fail "llama-perplexity: $(tail -5 "$tmp/ref.out" "$tmp/var.out" 2>/dev/null)"; check_summary cli_eval_perplexity; exit; fi
  mkdir -p "$cache"
  python3 - "$tmp/ref.out" "$tmp/var.out" "$cache/lpp.json" <<'EOF' && ok || { fail "llama-perplexity's output: $(tail -30 "$tmp/var.out")"; check_summary cli_eval_perplexity; exit; }
import json, os, re, sys
ref, var = open(sys.argv[1], errors="replace").read(), open(sys.argv[2], errors="replace").read()
def num(pat, text):
    m = re.search(pat, text, re.M)
    if not m:
        sys.exit("no line matching %r" % pat)
    return float(m.group(1))
r = {"ppl": num(r"^Mean PPL\(Q\)\s*:\s*([0-9.]+)", var),
     "ppl_ref": num(r"^Mean PPL\(base\)\s*:\s*([0-9.]+)", var),
     "ppl_ref_run": num(r"Final estimate: PPL = ([0-9.]+)", ref),
     "kl_mean": num(r"^Mean\s+KLD:\s*([0-9.]+)", var),
     "kl_p99": num(r"^99\.0%\s+KLD:\s*([0-9.]+)", var),
     "kl_max": num(r"^Maximum KLD:\s*([0-9.]+)", var),
     "same_top": num(r"^Same top p:\s*([0-9.]+)", var) / 100,
     "chunks": num(r"computing over (\d+) chunks", var)}
r["tokens"] = int(r["chunks"]) * (128 - 1 - 64)
with open(sys.argv[3] + ".tmp", "w") as f:
    json.dump(r, f)
os.replace(sys.argv[3] + ".tmp", sys.argv[3])
EOF
fi

"$BIN_OPT" eval "$tmp/q4_0.gguf" --as q4_0 --text "$TXT" --ctx $CTX --kl-base "$POTLUCK_MODEL" --threads 2 --quiet \
  --out "$tmp/r.json" >/dev/null 2>"$tmp/pl.err" || { fail "potluck eval --kl-base: $(cat "$tmp/pl.err")"; check_summary cli_eval_perplexity; exit; }
python3 - "$tmp/r.json" "$cache/lpp.json" <<'EOF'
import json, sys
rows = {r["metric"]: r for r in json.load(open(sys.argv[1]))["rows"]}
ll = json.load(open(sys.argv[2]))
bad = 0
def check(cond, msg):
    global bad
    print(("ok   " if cond else "FAIL ") + msg)
    bad += 0 if cond else 1
v = lambda k: rows[k]["value"]
check(rows["ppl"]["n"] == ll["tokens"], "scored tokens: potluck %d, llama-perplexity %d" % (rows["ppl"]["n"], ll["tokens"]))
for ours, theirs, tol in (("ppl_base", "ppl_ref", 0.01), ("ppl_base", "ppl_ref_run", 0.01), ("ppl", "ppl", 0.01),
                          ("kl_mean", "kl_mean", 0.05), ("kl_p99", "kl_p99", 0.10)):
    rel = abs(v(ours) - ll[theirs]) / abs(ll[theirs])
    check(rel <= tol, "%s: potluck %.5f, llama-perplexity %s %.5f (%.2f%% apart, tolerance %.0f%%)"
          % (ours, v(ours), theirs, ll[theirs], 100 * rel, 100 * tol))
check(abs(v("same_top") - ll["same_top"]) <= 0.02, "same top token: potluck %.4f, llama-perplexity %.4f" % (v("same_top"), ll["same_top"]))
print("note: llama-perplexity, KL(Q4_1 || Q4_0 re-quantized) on %d tokens: potluck mean %.4f p99 %.4f max %.3f same-top %.2f%%, "
      "ppl %.3f -> %.3f; llama-perplexity mean %.4f p99 %.4f max %.3f same-top %.2f%%, ppl %.3f -> %.3f" % (
    ll["tokens"], v("kl_mean"), v("kl_p99"), v("kl_max"), 100 * v("same_top"), v("ppl_base"), v("ppl"),
    ll["kl_mean"], ll["kl_p99"], ll["kl_max"], 100 * ll["same_top"], ll["ppl_ref"], ll["ppl"]))
sys.exit(1 if bad else 0)
EOF
[ $? = 0 ] && ok || fail "potluck and llama-perplexity disagree (lines above)"
check_summary cli_eval_perplexity
