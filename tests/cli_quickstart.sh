#!/usr/bin/env bash
# tests/cli_quickstart.sh: the first run (`make run`, recipes/quickstart.lua)
# at reduced size, every artifact checked by what reads it:
#  1. the recipe is copied with smaller numbers (4 generated samples of at
#     most 40 tokens, 2 training steps of one 160-token row, 4 HellaSwag
#     items, 2 answers of 16 tokens) and run on
#     SmolLM2-135M-Instruct (optimized build); HellaSwag is found through
#     $POTLUCK_TASKS as `make run` finds it;
#  2. the summary says what changed: held-out loss, the HellaSwag items on
#     base and fine-tune, the GGUF's KL from the merged model, the files,
#     the commands to try next;
#  3. the shards verify (`potluck data verify`); results.json validates
#     (`potluck eval --compare` reads it) and holds the rows the summary
#     printed: held-out loss and acc / acc_norm / acc_llamacpp of both
#     variants on the same items, the export-kl rows, 2 answers of both;
#  4. the report: its eval table and answers; Debian's chromium renders it
#     (SVG curves in the DOM, no console errors);
#  5. the peers: transformers + peft load the PEFT adapter on the GGUF base
#     (no missing keys, the logits move), llama.cpp loads the Q4_K_M GGUF and
#     generates (tests/interop/_quickstart_check.py; cached per input hash);
#  6. the run packs into a bundle that verifies; a second run redoes no
#     stage, prints the summary again and leaves results.json as it was.
set -u
cd "$(dirname "$0")/.."
source tests/check.sh
BIN=${POTLUCK_BIN_OPT:?}
: "${POTLUCK_MODEL:?}" "${POTLUCK_SHARED:?}" "${POTLUCK_VENV:?}"
CACHE=${POTLUCK_CACHE:-$HOME/.cache/potluck}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export POTLUCK_TASKS=$POTLUCK_SHARED/fixtures/eval OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

mkdir -p "$tmp/rec/data"
cp recipes/data/seed_tasks.jsonl recipes/data/quickstart_eval.jsonl "$tmp/rec/data/"
python3 - recipes/quickstart.lua "$tmp/rec/quickstart.lua" <<'EOF' && ok || fail "the reduced recipe"
import sys
s = open(sys.argv[1]).read()
for a, b in [("n = 24,", "n = 4,"), ("max_tokens = 64,", "max_tokens = 40,"), ("steps = 24,", "steps = 2,"),
             ("seq_len = 256,", "seq_len = 160,"), ("grad_accum = 2,", "grad_accum = 1,"), ("save_every = 12", "save_every = 2"),
             ("every = 12,", "every = 2,"), ("limit = 100,", "limit = 4,"), ("answers = 3", "answers = 2, answer_tokens = 16")]:
    if s.count(a) != 1:
        sys.exit("recipes/quickstart.lua no longer has %r once: update tests/cli_quickstart.sh" % a)
    s = s.replace(a, b)
open(sys.argv[2], "w").write(s)
EOF
R=$tmp/run
if ! "$BIN" run "$tmp/rec/quickstart.lua" --base "$POTLUCK_MODEL" --out "$R" --threads 2 >"$tmp/run.out" 2>"$tmp/run.err"; then
  fail "potluck run: $(tail -5 "$tmp/run.err")"; check_summary cli_quickstart; exit; fi
ok
sed -n '/^summary:/,$p' "$tmp/run.out" | sed 's/^/       > /'
echo "note: stage seconds: $(grep -E '^stage .* ran ' "$tmp/run.out" | sed -E 's/^stage +([^ ]+) .*\[([0-9.]+) s\].*/\1 \2/' | tr '\n' ' ')"

# 2. the summary
for want in '^summary: ' '^  held-out loss [0-9.]* \(base\) -> [0-9.]* \(fine-tuned\): [0-9.]*% (lower|higher); perplexity' \
    '^  hellaswag_val_full \(4 items\) acc: ' '^  hellaswag_val_full \(4 items\) acc_norm: .*(standard errors)' \
    '^  gguf q4_k_m export against the merged model: KL [0-9.]* nats/token, same top token [0-9.]*%' \
    '^    report.html ' '^    export/model.gguf ' '^    potluck pack '; do
  grep -qE "$want" "$tmp/run.out" && ok || fail "summary: no line matching '$want'"
done

# 3. shards, results.json
for d in train eval; do
  "$BIN" data verify "$R/data/$d" >/dev/null 2>"$tmp/v.err" && ok || fail "data verify $d: $(cat "$tmp/v.err")"
done
"$BIN" eval --compare "$R/results.json" >"$tmp/cmp.out" 2>"$tmp/cmp.err" && ok || fail "eval --compare: $(cat "$tmp/cmp.err")"
grep -q "gguf q4_k_m" "$tmp/cmp.out" && grep -q "fine-tuned" "$tmp/cmp.out" && ok || fail "the compare table: $(cat "$tmp/cmp.out")"
python3 - "$R/results.json" <<'EOF' && ok || fail "results.json"
import json, math, sys
r = json.load(open(sys.argv[1]))
assert r["format"] == "potluck-eval/1", r.get("format")
rows = r["rows"]
def row(v, t, m):
    got = [x for x in rows if x["variant"] == v and x["task"] == t and x["metric"] == m]
    assert len(got) == 1, (v, t, m, len(got))
    return got[0]
for v in ("base", "fine-tuned"):
    assert math.isfinite(row(v, "heldout", "loss")["value"])
    for m in ("acc", "acc_norm", "acc_llamacpp"):
        x = row(v, "hellaswag_val_full", m)
        assert x["n"] == 4 and 0 <= x["value"] <= 1 and x["stderr"] >= 0, x
assert row("base", "hellaswag_val_full", "acc")["items_sha256"] == row("fine-tuned", "hellaswag_val_full", "acc")["items_sha256"]
kl = row("gguf q4_k_m", "export-kl", "kl_mean")
assert math.isfinite(kl["value"]) and kl["value"] >= 0 and kl["n"] > 0, kl
st = row("gguf q4_k_m", "export-kl", "same_top")["value"]
assert 0.5 < st <= 1, st
for m in ("ppl", "ppl_base"):
    assert row("gguf q4_k_m", "export-kl", m)["value"] > 1
a = r["answers"]
assert len(a) == 2, len(a)
for x in a:
    assert all(isinstance(x[k], str) and x[k] for k in ("prompt", "reference", "base", "fine_tuned")), x
print("note: KL %.4f, same top %.3f, answers %d" % (kl["value"], st, len(a)))
EOF

# 4. the report
H=$R/report.html
grep -q '<table id="answers">' "$H" && grep -q '<table id="eval">' "$H" && grep -q 'export-kl' "$H" && ok \
  || fail "report.html lacks the eval table, the KL rows or the answers"
if command -v chromium >/dev/null 2>&1; then
  timeout 120 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$tmp/chrome" --enable-logging=stderr --v=0 \
    --dump-dom "file://$H" >"$tmp/dom.html" 2>"$tmp/c.err"
  n=$(grep -o '<svg id="[a-z]*"' "$tmp/dom.html" | wc -l)
  [ "$n" -ge 4 ] && grep -q '<td class="ans">' "$tmp/dom.html" && ok || fail "chromium's DOM: $n SVG charts, answers $(grep -c 'class="ans"' "$tmp/dom.html")"
  if grep -hiE 'CONSOLE.*(error|uncaught)|Refused to' "$tmp/c.err" >"$tmp/console.txt"; then
    fail "chromium console: $(head -5 "$tmp/console.txt")"
  else ok; fi
else
  echo "note: chromium is not installed: the browser check is skipped (make deps installs it)"
fi

# 5. the peers
AD=$R/export/adapter G=$R/export/model.gguf
key=$( { cat tests/requirements-peers.txt tests/interop/_quickstart_check.py; sha256sum "$POTLUCK_MODEL" "$AD"/* "$G" | cut -c1-64; } | sha256sum | cut -c1-16)
cache=$CACHE/quickstart_check/$key
if [ -f "$cache/peers.json" ]; then
  echo "note: the peers' results taken from the cache ($key)"; ok
else
  mkdir -p "$cache"
  if "$POTLUCK_VENV/bin/python" tests/interop/_quickstart_check.py "$POTLUCK_MODEL" "$AD" "$G" "$cache/peers.json" \
       >/dev/null 2>"$tmp/py.err"; then ok
  else fail "quickstart_check.py: $(tail -5 "$tmp/py.err")"; fi
fi
python3 - "$cache/peers.json" <<'EOF' && ok || fail "the peers' results"
import json, sys
r = json.load(open(sys.argv[1]))
p, l = r["peft"], r["llamacpp"]
assert p["lora_modules"] == 30 * 7, p          # all-linear on SmolLM2's 30 layers
assert p["max_logit_change"] > 1e-3, p        # the trained adapter moves the logits
assert l["n_vocab"] == 49152 and len(l["greedy"]) == 8, l
print("note: peft: %d LoRA modules, logits move by up to %.3f; llama.cpp greedy %s"
      % (p["lora_modules"], p["max_logit_change"], l["greedy"]))
EOF

# 6. bundle, second run
"$BIN" pack "$R" -o "$tmp/q.potluck" >/dev/null 2>"$tmp/p.err" && ok || fail "pack: $(cat "$tmp/p.err")"
"$BIN" verify "$tmp/q.potluck" >/dev/null 2>"$tmp/vb.err" && ok || fail "verify: $(cat "$tmp/vb.err")"
cp "$R/results.json" "$tmp/results.before"
"$BIN" run "$tmp/rec/quickstart.lua" --base "$POTLUCK_MODEL" --out "$R" --threads 2 >"$tmp/run2.out" 2>"$tmp/run2.err" \
  && ok || fail "second run: $(tail -3 "$tmp/run2.err")"
n=$(grep -cE '^stage .* ran ' "$tmp/run2.out")
[ "$n" = 0 ] && ok || fail "the second run redid $n stage(s): $(grep -E '^stage .* ran ' "$tmp/run2.out")"
grep -q '^summary: ' "$tmp/run2.out" && cmp -s "$R/results.json" "$tmp/results.before" && ok \
  || fail "second run: no summary, or results.json changed"
check_summary cli_quickstart
