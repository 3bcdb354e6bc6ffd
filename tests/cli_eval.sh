#!/usr/bin/env bash
# tests/cli_eval.sh: `potluck eval` on the command line (ASan build, tiny
# model; SmolLM2 on the optimized build for the HellaSwag fixture):
#  - --limit takes the same items every time (--write-items byte-identical),
#    another --seed others, a smaller limit a subset;
#  - variants side by side in one table; results.json rows; --append;
#    --compare of two files; --samples per item;
#  - held-out loss and perplexity on a sharded dataset (ppl = exp(loss));
#  - malformed task files and bad arguments: one clean line, no crash.
set -u
cd "$(dirname "$0")/.."
source tests/check.sh
BIN=${POTLUCK_BIN:?}
BIN_OPT=${POTLUCK_BIN_OPT:?}
: "${POTLUCK_SHARED:?}" "${POTLUCK_MODEL:?}"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
TINY=$POTLUCK_SHARED/fixtures/gguf-tiny-llama/llama-2-tiny-random.gguf
HS=$POTLUCK_SHARED/fixtures/eval/hellaswag_val_full.txt

# seeded subsets of the 10,042 HellaSwag tasks
"$BIN" eval --task "$HS" --limit 50 --write-items "$tmp/a.jsonl" && \
"$BIN" eval --task "$HS" --limit 50 --write-items "$tmp/b.jsonl" && \
"$BIN" eval --task "$HS" --limit 20 --write-items "$tmp/c.jsonl" && \
"$BIN" eval --task "$HS" --limit 50 --seed 99 --write-items "$tmp/d.jsonl" || fail "--write-items"
[ "$(wc -l <"$tmp/a.jsonl")" = 50 ] && cmp -s "$tmp/a.jsonl" "$tmp/b.jsonl" && ok || fail "--limit 50 twice: not the same 50 items"
idx() { python3 -c 'import json,sys; print(" ".join(str(json.loads(l)["index"]) for l in open(sys.argv[1])))' "$1"; }
python3 - "$tmp/a.jsonl" "$tmp/c.jsonl" "$tmp/d.jsonl" <<'EOF' && ok || fail "subset properties"
import json, sys
a, c, d = ([json.loads(l)["index"] for l in open(p)] for p in sys.argv[1:])
assert set(c) <= set(a), "limit 20 is not within limit 50"
assert set(d) != set(a), "another seed took the same items"
assert a == sorted(a), "not in file order"
EOF

# variants side by side on the tiny model (the same model twice under two names), rows, --append, --compare
"$BIN" eval "$TINY" --as one "$TINY" --as two --task "$tmp/c.jsonl" --limit 5 --quiet --out "$tmp/r1.json" \
  --samples "$tmp/s.jsonl" >"$tmp/t1.txt" 2>"$tmp/e1.txt" || fail "two variants: $(cat "$tmp/e1.txt")"
grep -q '^one ' "$tmp/t1.txt" && grep -q '^two ' "$tmp/t1.txt" && grep -q 'c acc_norm' "$tmp/t1.txt" && ok || fail "table: $(cat "$tmp/t1.txt")"
python3 - "$tmp/r1.json" "$tmp/s.jsonl" <<'EOF' && ok || fail "results.json / samples"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["format"] == "potluck-eval/1"
rows = r["rows"]
assert len(rows) == 6, rows
for x in rows:
    assert x["n"] == 5 and x["task"] == "c" and len(x["items_sha256"]) == 64
    assert 0 <= x["value"] <= 1 and x["stderr"] >= 0
one = {x["metric"]: x["value"] for x in rows if x["variant"] == "one"}
two = {x["metric"]: x["value"] for x in rows if x["variant"] == "two"}
assert one == two, (one, two)
s = [json.loads(l) for l in open(sys.argv[2])]
assert len(s) == 10 and all(len(x["ll"]) == 4 and len(x["n_tokens"]) == 4 for x in s)
EOF
"$BIN" eval "$TINY" --as three --task "$tmp/c.jsonl" --limit 5 --quiet --out "$tmp/r1.json" --append >/dev/null 2>&1 && \
  [ "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["rows"]))' "$tmp/r1.json")" = 9 ] && ok || fail "--append"
"$BIN" eval "$TINY" --as other --task "$tmp/a.jsonl" --limit 5 --quiet --out "$tmp/r2.json" >/dev/null 2>&1 || fail "r2"
"$BIN" eval --compare "$tmp/r1.json" "$tmp/r2.json" >"$tmp/cmp.txt" 2>&1 && grep -q '^three ' "$tmp/cmp.txt" && grep -q '^other ' "$tmp/cmp.txt" \
  && grep -q 'a acc ' "$tmp/cmp.txt" && ok || fail "--compare: $(cat "$tmp/cmp.txt")"

# held-out loss and perplexity on a dataset (pre-tokenized, half the tokens masked)
python3 - "$tmp/ds.jsonl" <<'EOF'
import json, random, sys
random.seed(3)
with open(sys.argv[1], "w") as f:
    for i in range(12):
        n = random.randint(5, 40)
        ids = [random.randint(3, 31999) for _ in range(n)]
        f.write(json.dumps({"input_ids": ids, "loss_mask": [int(j >= n // 2) for j in range(n)]}) + "\n")
EOF
"$BIN" data build --in "$tmp/ds.jsonl" --out "$tmp/ds" >/dev/null 2>&1 || fail "data build"
"$BIN" eval "$TINY" --data "$tmp/ds" --quiet --out "$tmp/r3.json" >/dev/null 2>"$tmp/e3.txt" || fail "--data: $(cat "$tmp/e3.txt")"
python3 - "$tmp/r3.json" <<'EOF' && ok || fail "--data rows"
import json, math, sys
rows = {x["metric"]: x for x in json.load(open(sys.argv[1]))["rows"]}
l, p = rows["loss"], rows["ppl"]
assert l["task"] == "ds" and l["n"] > 100, l
assert 5 < l["value"] < 20 and l["stderr"] > 0, l
assert abs(p["value"] - math.exp(l["value"])) < 1e-6 * p["value"], (l, p)
EOF
"$BIN" eval "$TINY" --data "$tmp/ds" --limit 3 --quiet --out "$tmp/r4.json" >/dev/null 2>&1 && \
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["rows"]; assert 0 < r[0]["n"] < 100' "$tmp/r4.json" && ok || fail "--data --limit"

# HellaSwag on SmolLM2 (optimized build): sane accuracy for a 135M model, deterministic
"$BIN_OPT" eval "$POTLUCK_MODEL" --task "$HS" --limit 8 --quiet --threads 2 --out "$tmp/h1.json" >/dev/null 2>&1 && \
"$BIN_OPT" eval "$POTLUCK_MODEL" --task "$HS" --limit 8 --quiet --threads 2 --batch-tokens 200 --out "$tmp/h2.json" >/dev/null 2>&1 || fail "SmolLM2 HellaSwag"
python3 - "$tmp/h1.json" "$tmp/h2.json" <<'EOF' && ok || fail "SmolLM2 rows"
import json, sys
a, b = (json.load(open(p))["rows"] for p in sys.argv[1:])
for x, y in zip(a, b):
    assert x["value"] == y["value"], (x, y)   # batching does not change a pick
    assert 0 <= x["value"] <= 1 and x["n"] == 8, x
print("note: SmolLM2 HellaSwag 8 items: " + ", ".join("%s %.3f±%.3f" % (x["metric"], x["value"], x["stderr"]) for x in a))
EOF

# hostile task files and arguments
printf '{"context": "a", "choices": [], "gold": 0}\n' >"$tmp/empty_choices.jsonl"
printf '{"context": "a", "choices": ["x", ""], "gold": 0}\n' >"$tmp/empty_choice.jsonl"
printf '{"context": "a", "choices": ["x"], "gold": 3}\n' >"$tmp/gold.jsonl"
printf 'ctx\n1\na\nb\n' >"$tmp/short.txt"
printf '{"context": "a", "choi' >"$tmp/trunc.jsonl"
head -c 3000 /dev/urandom >"$tmp/random.bin"
: >"$tmp/empty.txt"
for f in empty_choices.jsonl empty_choice.jsonl gold.jsonl short.txt trunc.jsonl random.bin empty.txt; do
  expect_clean_error "task $f" "$BIN" eval "$TINY" --task "$tmp/$f"
done
expect_clean_error "no model" "$BIN" eval --task "$tmp/c.jsonl"
expect_clean_error "no task" "$BIN" eval "$TINY"
expect_clean_error "missing model" "$BIN" eval "$tmp/nope.gguf" --task "$tmp/c.jsonl"
expect_clean_error "--adapter first" "$BIN" eval --adapter x "$TINY" --task "$tmp/c.jsonl"
expect_clean_error "bad --adapter" "$BIN" eval "$TINY" --adapter "$tmp" --task "$tmp/c.jsonl"
expect_clean_error "--limit" "$BIN" eval "$TINY" --task "$tmp/c.jsonl" --limit -3
expect_clean_error "--compare bad file" "$BIN" eval --compare "$tmp/c.jsonl"
expect_clean_error "--compare nothing" "$BIN" eval --compare
expect_clean_error "unknown option" "$BIN" eval "$TINY" --task "$tmp/c.jsonl" --frobnicate
echo "too short" >"$tmp/short_text.txt"
expect_clean_error "--text shorter than a chunk" "$BIN" eval "$TINY" --text "$tmp/short_text.txt" --ctx 64
expect_clean_error "--kl-base without --text" "$BIN" eval "$TINY" --task "$tmp/c.jsonl" --kl-base "$TINY"
expect_clean_error "--text missing" "$BIN" eval "$TINY" --text "$tmp/nope.txt"
expect_clean_error "--ctx too long" "$BIN" eval "$TINY" --text "$POTLUCK_SHARED/fixtures/text/tinystories_sample.txt" --ctx 100000
expect_clean_error "--data not a dataset" "$BIN" eval "$TINY" --data "$tmp"

# potluck run: the eval stage scores the recipe's tasks on the base and the fine-tune
mkdir -p "$tmp/rec"
python3 - "$tmp/rec/corpus.txt" <<'EOF2'
import random, sys
r = random.Random(5)
words = "the cat sat on a mat while rain fell over quiet hills and old roads led home".split()
open(sys.argv[1], "w").write("\n".join(" ".join(r.choice(words) for _ in range(r.randint(5, 30))) for _ in range(40)) + "\n")
EOF2
head -3 "$tmp/c.jsonl" >"$tmp/rec/mc.jsonl"
mkdir -p "$tmp/rec/plugins"
cat >"$tmp/rec/plugins/ppl_metric.lua" <<'EOF2'
-- a metric that scores the model under evaluation and the base
local pl = require "potluck"
pl.register { api = 1, kind = "metric", name = "ppl_pair",
  measure = function(p, ctx, samples)
    local m, b = ctx.model(), ctx.load_model("base")
    local t = pl.text(samples[1])
    return { model = m:perplexity(t), base = b:perplexity(t), name = m:name() }
  end }
EOF2
cat >"$tmp/rec/recipe.lua" <<'EOF2'
local pl = require "potluck"
return pl.recipe {
  name = "eval-test", seed = 7,
  data = pl.pipeline { pl.source.text { path = "corpus.txt", unit = "line" }, pl.split { eval = 0.2 } },
  lora = { r = 4, alpha = 8, dropout = 0 },
  train = { steps = 2, lr = 1e-2, seq_len = 64, save_every = 2 },
  eval = { rows = 4, tasks = { "mc.jsonl" }, limit = 2, metrics = { "ppl_pair" } },
  export = { formats = { "peft" } },
}
EOF2
if "$BIN" run "$tmp/rec/recipe.lua" --out "$tmp/run" --base "$TINY" >"$tmp/run.out" 2>"$tmp/run.err"; then
  python3 - "$tmp/run/results.json" <<'EOF2' && ok || fail "run results.json rows"
import json, sys
r = json.load(open(sys.argv[1]))
rows = r["rows"]
v = {(x["variant"], x["task"], x["metric"]) for x in rows}
for who in ("base", "fine-tuned"):
    assert (who, "heldout", "loss") in v, v
    for m in ("acc", "acc_norm", "acc_llamacpp"):
        assert (who, "mc", m) in v, v
assert all(x["n"] == 2 for x in rows if x["task"] == "mc")
m = r["metrics"]["ppl_pair"]   # recipe metrics see the fine-tune; the base stays loadable
assert r["metrics_model"] == "fine-tuned" and m["name"] == "tuned", r
assert m["model"] != m["base"] and m["model"] > 1 and m["base"] > 1, m
EOF2
  "$BIN" eval --compare "$tmp/run/results.json" | grep -q '^fine-tuned ' && ok || fail "--compare a run's results.json"
  # another limit: the eval stage runs again, training does not
  sed -i 's/limit = 2/limit = 3/' "$tmp/rec/recipe.lua"
  "$BIN" run "$tmp/rec/recipe.lua" --out "$tmp/run" --base "$TINY" >"$tmp/run2.out" 2>"$tmp/run2.err"
  st=$(grep -E '^stage ' "$tmp/run2.out" | awk '{print $2 "=" $3}' | tr '\n' ' ')
  grep -q 'train=cached' <<<"$st" && grep -q 'eval=ran' <<<"$st" && \
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["rows"]; assert all(x["n"] == 3 for x in r if x["task"] == "mc")' "$tmp/run/results.json" \
    && ok || fail "eval tasks changed: want train cached, eval run: $st"
else fail "potluck run with eval tasks: $(tail -5 "$tmp/run.err")"; fi
check_summary cli_eval
