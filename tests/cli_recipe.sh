#!/usr/bin/env bash
# tests/cli_recipe.sh: `potluck recipe check`, `potluck plugins`, and `potluck
# run` end to end on the tiny random Llama GGUF fixture: stage caching (which
# stages ran after each change), --from/--only/--to/--force, determinism,
# provenance into the stage files, the shards and the dataset card, the
# removed samples' log, train/eval/export, and validation messages.
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/check.sh
BIN=${POTLUCK_BIN:-build/san/potluck}
SHARED=${POTLUCK_SHARED:-../shared}
TINY=$SHARED/fixtures/gguf-tiny-llama/llama-2-tiny-random.gguf
PY=${POTLUCK_VENV:+$POTLUCK_VENV/bin/python}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export POTLUCK_PLUGINS=$T/no-user-plugins

# ------------------------------------------------------------ a corpus
python3 - "$T/rec/corpus.txt" <<'PY'
import os, random, sys
os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)
r = random.Random(5)
words = "the cat sat on a mat while rain fell over quiet hills and old roads led home".split()
lines = []
for i in range(60):
    lines.append(" ".join(r.choice(words) for _ in range(r.randint(3, 30))))
lines[10] = lines[3]            # an exact duplicate
lines[20] = "tiny"              # too short
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
cat > "$T/rec/recipe.lua" <<'EOF'
-- a recipe for the stage-caching test
local pl = require "potluck"
local suffix = "."
return pl.recipe {
  name = "cache-test",
  seed = 7,
  data = pl.pipeline {
    pl.source.text { path = "corpus.txt", unit = "line" },
    pl.map(function(s) s.text = s.text .. suffix return s end),
    pl.filter.length { min_chars = 10 },
    pl.dedup.exact {},
    pl.split { eval = 0.2 },
  },
  lora = { r = 4, alpha = 8, dropout = 0 },
  train = { steps = 3, lr = 1e-3, seq_len = 64, save_every = 3 },
  eval = { rows = 4 },
  export = { formats = { "peft" } },
}
EOF

# ------------------------------------------------------------ recipe check
out=$("$BIN" recipe check "$T/rec/recipe.lua" --base "$TINY" 2>&1); rc=$?
[ $rc = 0 ] && grep -q "ok: .*recipe.lua is a valid recipe" <<<"$out" && ok || fail "recipe check valid: rc=$rc $out"
grep -q "03-filter.length" <<<"$out" && grep -q '"min_chars":10' <<<"$out" && ok || fail "recipe check shows steps: $out"
"$BIN" recipe check "$T/rec/recipe.lua" --json >"$T/plan.json" 2>&1 && python3 -c "
import json,sys; p=json.load(open('$T/plan.json')); assert p['name']=='cache-test' and len(p['steps'])==5, p
assert p['steps'][1]['params']['fn'].startswith('<function'), p['steps'][1]" && ok || fail "recipe check --json"

bad() { # bad NAME EXPECTED-SUBSTRING (recipe text on stdin)
  local name=$1 want=$2
  mkdir -p "$T/bad"; cat >"$T/bad/$name.lua"; echo "x" >"$T/bad/c.txt"
  local err; err=$("$BIN" recipe check "$T/bad/$name.lua" 2>&1 >/dev/null); local rc=$?
  if [ $rc = 0 ]; then fail "$name: accepted"; return; fi
  if grep -qE 'Sanitizer|runtime error' <<<"$err"; then fail "$name: sanitizer: $err"; return; fi
  if [ "$(grep -c . <<<"$err")" != 1 ] || ! grep -qF -- "$want" <<<"$err"; then fail "$name: want '$want', got: $err"; return; fi
  ok; echo "note: $name -> $err"
}
HEAD='local pl = require "potluck"'
SRC='data = pl.pipeline { pl.source.text { path = "c.txt" } }'
bad lr_string 'bad/lr_string.lua: train.lr: expected a number, got string "2e-4x"' <<EOF
$HEAD
return pl.recipe { name = "b", $SRC, train = { lr = "2e-4x" } }
EOF
bad train_key "train.lrr: unknown key (did you mean 'lr'?)" <<EOF
$HEAD
return pl.recipe { name = "b", $SRC, train = { lrr = 1 } }
EOF
bad top_key "unknown key 'trian' (did you mean 'train'?)" <<EOF
$HEAD
return pl.recipe { name = "b", $SRC, trian = {} }
EOF
bad lora_type "lora.r: expected an integer, got string" <<EOF
$HEAD
return pl.recipe { name = "b", $SRC, lora = { r = "sixteen" } }
EOF
bad plugin_name "pl.filter.lenght: no filter plugin named 'lenght' (did you mean 'length'?)" <<EOF
$HEAD
local f = pl.filter.lenght { min_chars = 3 }
return pl.recipe { name = "b", $SRC }
EOF
bad plugin_param "bad/plugin_param.lua:2: filter.length: unknown key 'min_char' (did you mean 'min_chars'?)" <<EOF
$HEAD
local f = pl.filter.length { min_char = 3 }
return pl.recipe { name = "b", $SRC }
EOF
bad plugin_type "filter.length.min_chars: expected an integer, got string" <<EOF
$HEAD
local f = pl.filter.length { min_chars = "3" }
return pl.recipe { name = "b", $SRC }
EOF
bad choice "source.text.unit: string \"words\" is not one of line, paragraph, file" <<EOF
$HEAD
return pl.recipe { name = "b", data = pl.pipeline { pl.source.text { path = "c.txt", unit = "words" } } }
EOF
bad missing_name "name: required, missing" <<EOF
$HEAD
return pl.recipe { $SRC }
EOF
bad no_recipe "must return pl.recipe" <<EOF
$HEAD
return { name = "b" }
EOF
bad missing_file "c2.txt" <<EOF
$HEAD
return pl.recipe { name = "b", data = pl.pipeline { pl.source.text { path = "c2.txt" } } }
EOF
bad syntax "bad/syntax.lua:2:" <<EOF
$HEAD
return pl.recipe { name = "b" , , }
EOF
bad runtime_line "bad/runtime_line.lua:3: attempt to call a number value (local 'x')" <<EOF
$HEAD
local x = 1
local y = x()
EOF
bad scale_size "scale[\"13b\"].train.lr: expected a number" <<EOF
$HEAD
return pl.recipe { name = "b", $SRC, scale = { ["13b"] = { train = { lr = "fast" } } } }
EOF
bad host_key "train.seed: set by the host" <<EOF
$HEAD
return pl.recipe { name = "b", $SRC, train = { seed = 3 } }
EOF
bad family_call "bad/family_call.lua:2: pl.dedup is a family of steps: write pl.dedup.<name>{...}" <<EOF
$HEAD
local d = pl.dedup { threshold = 0.8 }
EOF
bad not_a_step "pl.pipeline: item 2: expected a step" <<EOF
$HEAD
return pl.recipe { name = "b", data = pl.pipeline { pl.source.text { path = "c.txt" }, 42 } }
EOF
# --size picks the scale entry; an unknown size is an error with the list
cat >"$T/bad/sized.lua" <<EOF
$HEAD
return pl.recipe { name = "s", $SRC, train = { lr = 2e-4 },
  scale = { ["7b"] = { train = { lr = 2e-4 } }, ["33b"] = { train = { lr = 1e-4 }, lora = { dropout = 0.05 } } } }
EOF
"$BIN" recipe check "$T/bad/sized.lua" --size 33b --json >"$T/sized.json" 2>&1 && python3 -c "
import json; p=json.load(open('$T/sized.json')); assert p['train']['lr']==1e-4 and p['lora']['dropout']==0.05 and p['size']=='33b', p" \
  && ok || fail "--size 33b applies the overrides: $(cat "$T/sized.json")"
expect_clean_error "--size 13c" "$BIN" recipe check "$T/bad/sized.lua" --size 13c
err=$("$BIN" recipe check "$T/bad/sized.lua" --size 13c 2>&1); grep -q "sizes: 33b, 7b" <<<"$err" && ok || fail "size list: $err"
# a size without an entry gets the QLoRA paper's settings, and the plan says so
"$BIN" recipe check "$T/bad/sized.lua" --size 65b --json >"$T/sized.json" 2>&1 && python3 -c "
import json; p=json.load(open('$T/sized.json'))
assert p['train']['lr'] == 1e-4 and p['lora']['dropout'] == 0.05 and p['size'] == '65b', p
assert 'QLoRA paper' in p['size_notes'], p['size_notes']" \
  && ok || fail "--size 65b without an entry: $(cat "$T/sized.json")"
"$BIN" recipe check "$T/bad/sized.lua" --size 13b --json >"$T/sized.json" 2>&1 && python3 -c "
import json; p=json.load(open('$T/sized.json'))
assert p['train']['lr'] == 2e-4 and p['size'] == '13b' and 'keeps 7B/13B' in p['size_notes'], p" \
  && ok || fail "--size 13b without an entry: $(cat "$T/sized.json")"
# scale as a function of the size
cat >"$T/bad/sizedfn.lua" <<EOF
$HEAD
return pl.recipe { name = "f", $SRC, train = { lr = 2e-4 },
  scale = function(size, r)
    local b = tonumber(size:match("^(%d+)b"))
    if b and b >= 13 then return { train = { lr = r.train.lr / 4 }, notes = "quartered from 13B" } end
  end }
EOF
"$BIN" recipe check "$T/bad/sizedfn.lua" --size 13b --json >"$T/sized.json" 2>&1 && python3 -c "
import json; p=json.load(open('$T/sized.json')); assert p['train']['lr'] == 5e-5 and p['size_notes'] == 'quartered from 13B', p" \
  && ok || fail "scale function at 13b: $(cat "$T/sized.json")"
cat >"$T/bad/sizedbad.lua" <<EOF
$HEAD
return pl.recipe { name = "g", $SRC, scale = function(size) return { train = { lr = "fast" } } end }
EOF
expect_clean_error "scale function returning a bad lr" "$BIN" recipe check "$T/bad/sizedbad.lua" --size 7b

# ------------------------------------------------------------ plugins
out=$("$BIN" plugins list 2>&1)
for p in "source  *jsonl" "filter  *length" "filter  *regex" "dedup  *exact" "dedup  *minhash" "filter  *gopher_quality" \
         "decontaminate  *ngram" "filter  *novelty" "filter  *language" "filter  *perplexity" "filter  *llm_judge" \
         "generate  *self_instruct" "generate  *evol_instruct" "generate  *persona" "generate  *distill" "split  *hash"; do
  grep -qE "^$p " <<<"$out" && ok || fail "plugins list lacks $p"
done
out=$("$BIN" plugins show minhash 2>&1)
grep -q "dedup.minhash" <<<"$out" && grep -q "num_perm" <<<"$out" && grep -q "threshold" <<<"$out" && ok || fail "plugins show minhash: $out"
expect_clean_error "plugins show unknown" "$BIN" plugins show nosuchplugin
# a recipe's own plugin folder joins the list; a user plugin folder too
mkdir -p "$T/rec2/plugins" "$T/userp"
cat > "$T/rec2/plugins/shout.lua" <<'EOF'
local pl = require "potluck"
pl.register { api = 1, kind = "map", name = "shout", doc = "Upper-case the text.",
  params = {}, each = function() return function(s) s.text = s.text:upper() return s end end }
EOF
cat > "$T/userp/mine.lua" <<'EOF'
local pl = require "potluck"
pl.register { api = 1, kind = "filter", name = "mine", doc = "Keep all.", each = function() return function() return true end end }
EOF
out=$(POTLUCK_PLUGINS=$T/userp "$BIN" plugins list --recipe "$T/rec2/r.lua" 2>&1)
grep -qE "^map  *shout  *recipe  *plugins/shout.lua" <<<"$out" && grep -qE "^filter  *mine  *user" <<<"$out" && ok || fail "recipe/user plugins: $out"
cat > "$T/userp/future.lua" <<'EOF'
local pl = require "potluck"
pl.register { api = 2, kind = "filter", name = "future", each = function() return function() return true end end }
EOF
err=$(POTLUCK_PLUGINS=$T/userp "$BIN" plugins list 2>&1); rc=$?
[ $rc != 0 ] && grep -q "future.lua.*written for plugin API 2; this potluck has API 1" <<<"$err" && ok || fail "API version: $err"
rm "$T/userp/future.lua"
cat > "$T/userp/clash.lua" <<'EOF'
local pl = require "potluck"
pl.register { api = 1, kind = "filter", name = "length", each = function() return function() return true end end }
EOF
err=$(POTLUCK_PLUGINS=$T/userp "$BIN" plugins list 2>&1); rc=$?
[ $rc != 0 ] && grep -q "already registered by plugins/lib/length.lua" <<<"$err" && ok || fail "name clash: $err"
rm "$T/userp/clash.lua"

# ------------------------------------------------------------ stage caching
R=$T/run
run() { "$BIN" run "$T/rec/recipe.lua" --out "$R" --base "$TINY" "$@" 2>"$T/err.txt"; }
ran() { grep -E '^stage ' "$T/out.txt" | awk '$3 == "ran" {print $2}' | tr '\n' ' '; }
cached() { grep -E '^stage ' "$T/out.txt" | awk '$3 == "cached" {print $2}' | tr '\n' ' '; }
expect_ran() { # DESC EXPECTED-RAN EXPECTED-CACHED
  local r c; r=$(ran); c=$(cached)
  [ "$r" = "$2" ] && [ "$c" = "$3" ] && ok || fail "$1: ran '$r' (want '$2'), cached '$c' (want '$3'); $(tail -3 "$T/err.txt")"
}
ALLD="01-source.text 02-map.lua 03-filter.length 04-dedup.exact 05-split.hash "
run --to split >"$T/out.txt"; rc=$?
[ $rc = 0 ] && ok || fail "first run --to split: rc=$rc $(cat "$T/err.txt")"
expect_ran "first run" "$ALLD" ""
run --to split >"$T/out.txt"
expect_ran "second run" "" "$ALLD"
sed -i 's/min_chars = 10/min_chars = 12/' "$T/rec/recipe.lua"
run --to split >"$T/out.txt"
expect_ran "filter parameter changed" "03-filter.length 04-dedup.exact 05-split.hash " "01-source.text 02-map.lua "
sed -i 's/local suffix = "."/local suffix = "!"/' "$T/rec/recipe.lua"
run --to split >"$T/out.txt"
expect_ran "map upvalue changed" "02-map.lua 03-filter.length 04-dedup.exact 05-split.hash " "01-source.text "
sed -i 's/s.text .. suffix return s/s.text .. suffix; return s/' "$T/rec/recipe.lua"
run --to split >"$T/out.txt"
expect_ran "map source changed" "02-map.lua 03-filter.length 04-dedup.exact 05-split.hash " "01-source.text "
echo "the last line of the corpus, added later" >>"$T/rec/corpus.txt"
run --to split >"$T/out.txt"
expect_ran "source file changed" "$ALLD" ""
run --to split --from dedup >"$T/out.txt"
expect_ran "--from dedup" "04-dedup.exact 05-split.hash " "01-source.text 02-map.lua 03-filter.length "
run --to split --only 03 >"$T/out.txt"
expect_ran "--only 03" "03-filter.length " "01-source.text 02-map.lua "
run --to split --force >"$T/out.txt"
expect_ran "--force" "$ALLD" ""
rm "$R/stages/04-dedup.exact/stage.json"   # as after a crash inside that stage
run --to split >"$T/out.txt"
expect_ran "interrupted stage redone" "04-dedup.exact " "01-source.text 02-map.lua 03-filter.length 05-split.hash "
expect_clean_error "--only with stale input" "$BIN" run "$T/rec/recipe.lua" --out "$T/fresh" --base "$TINY" --only 03
expect_clean_error "--from unknown stage" "$BIN" run "$T/rec/recipe.lua" --out "$R" --base "$TINY" --from nosuch
expect_clean_error "--backend cuda" "$BIN" run "$T/rec/recipe.lua" --out "$R" --base "$TINY" --backend cuda

# counts and provenance in the stage files
python3 - "$R" <<'PY' && ok || fail "stage files: counts and provenance"
import json, sys, os
run = sys.argv[1]
st = lambda l: json.load(open(os.path.join(run, "stages", l, "stage.json")))
src, ln, dd = st("01-source.text"), st("03-filter.length"), st("04-dedup.exact")
assert src["output"] == 61, src
assert ln["input"] == 61 and ln["removed"] == 1, ln
assert dd["removed"] == 1, dd
assert ln["output"] - dd["removed"] == dd["output"]
rows = [json.loads(l) for l in open(os.path.join(run, "stages", "05-split.hash", "out.jsonl"))]
assert len(rows) == dd["output"]
for r in rows:
    p = r["_prov"]
    assert p["source"].startswith("corpus.txt:"), p
    assert p["filters"] == ["filter.length", "dedup.exact"], p
    assert r["split"] in ("train", "eval")
assert {r["split"] for r in rows} == {"train", "eval"}
rem = [json.loads(l) for l in open(os.path.join(run, "stages", "03-filter.length", "removed.jsonl"))]
assert len(rem) == 1 and rem[0]["_prov"]["source"] == "corpus.txt:21" and "min_chars" in rem[0]["reason"], rem
rem = [json.loads(l) for l in open(os.path.join(run, "stages", "04-dedup.exact", "removed.jsonl"))]
assert len(rem) == 1 and rem[0]["_prov"]["source"] == "corpus.txt:11", rem
PY

# determinism: a second run directory gives the same bytes in every stage
"$BIN" run "$T/rec/recipe.lua" --out "$T/run2" --base "$TINY" --to split >/dev/null 2>&1
same=1
for d in "$R"/stages/0*; do cmp -s "$d/out.jsonl" "$T/run2/stages/$(basename "$d")/out.jsonl" || same=0; done
[ $same = 1 ] && ok || fail "two runs differ in stage outputs"

# ------------------------------------------------------------ shard, train, eval, export
run >"$T/out.txt"; rc=$?
[ $rc = 0 ] && ok || fail "full run: rc=$rc $(tail -5 "$T/err.txt")"
expect_ran "full run after --to split" "shard train eval export " "$ALLD"
[ -f "$R/data/train/manifest.json" ] && [ -f "$R/data/eval/manifest.json" ] && ok || fail "datasets written"
grep -q "## Recipe pipeline" "$R/data/train/card.md" && grep -q "| 04-dedup.exact | 60 | 59 | 1 |" "$R/data/train/card.md" \
  && ok || fail "card has the pipeline counts: $(cat "$R/data/train/card.md")"
python3 - "$R" <<'PY' && ok || fail "results.json and export"
import json, sys, os
run = sys.argv[1]
r = json.load(open(os.path.join(run, "results.json")))
assert r["steps"] == 3 and "base_eval_loss" in r and "eval_loss" in r, r
assert os.path.isfile(os.path.join(run, "export", "adapter", "adapter_model.safetensors"))
assert json.load(open(os.path.join(run, "plan.json")))["name"] == "cache-test"
PY
# the host records the adapter training ended with; export refuses another one
[ -s "$R/stages/train.adapter" ] && [ "$(cat "$R/stages/train.adapter")" = "$(sha256sum <"$(ls -d "$R"/train/checkpoints/step-*/adapter | tail -1)/adapter_model.safetensors" | cut -c1-64)" ] \
  && ok || fail "stages/train.adapter records the final adapter's sha256: $(cat "$R/stages/train.adapter" 2>&1)"
cp "$R/stages/train.adapter" "$T/adapter.rec"
printf '%064d' 0 >"$R/stages/train.adapter"
run --from export >"$T/o.txt"; rc=$?
if [ $rc != 0 ] && grep -q "is not the adapter training ended with" "$T/err.txt"; then ok; echo "note: export of a swapped adapter -> $(tail -1 "$T/err.txt")"
else fail "export did not refuse an adapter that differs from the record (rc=$rc): $(cat "$T/err.txt")"; fi
cp "$T/adapter.rec" "$R/stages/train.adapter"
# a damaged final/ is an error that names the good checkpoint, never a silent fallback
mkdir -p "$R/train/final"
run --from export >"$T/o.txt"; rc=$?
if [ $rc != 0 ] && grep -q "final fails its manifest" "$T/err.txt" && grep -q "newest complete checkpoint is" "$T/err.txt"; then ok
else fail "a damaged final/ was not refused (rc=$rc): $(cat "$T/err.txt")"; fi
rmdir "$R/train/final"
if run --from export >"$T/o.txt"; then ok; else fail "export after restoring: $(cat "$T/err.txt")"; fi
if [ -n "$PY" ] && [ -x "$PY" ]; then
  "$PY" - "$R" <<'PY' && ok || fail "h5py reads /provenance of the shards"
import glob, json, os, sys, h5py
n = 0
for f in sorted(glob.glob(os.path.join(sys.argv[1], "data", "*", "shard-*.h5"))):
    with h5py.File(f, "r") as h:
        for s in h["provenance"][()]:
            p = json.loads(s.decode() if isinstance(s, bytes) else s)
            assert p["source"].startswith("corpus.txt:") and p["filters"] == ["filter.length", "dedup.exact"], p
            n += 1
assert n == 59, n
PY
else fail "no venv python for the h5py check"; fi
run >"$T/out.txt"
expect_ran "everything cached" "" "$ALLD""shard train eval export "
sed -i 's/steps = 3/steps = 4/' "$T/rec/recipe.lua"
run >"$T/out.txt"
expect_ran "train setting changed" "train eval export " "$ALLD""shard "
# ------------------------------------------------------------ scorer, metric, template plugins
mkdir -p "$T/rec3/plugins"
cat > "$T/rec3/plugins/mine.lua" <<'EOF'
local pl = require "potluck"
pl.register { api = 1, kind = "template", name = "plain_chat", doc = "User/Bot lines.",
  jinja = "{% for m in messages %}{% if m['role'] == 'user' %}User: {{ m['content'] }}\n{% else %}Bot: {{ m['content'] }}{{ eos_token }}\n{% endif %}{% endfor %}" }
pl.register { api = 1, kind = "scorer", name = "digits", doc = "How many digits the text holds.",
  score = function() return function(s) local _, n = pl.text(s):gsub("%d", "") return n end end }
pl.register { api = 1, kind = "metric", name = "samples", doc = "How many held-out samples.",
  measure = function(p, ctx, samples) return #samples end }
EOF
python3 - "$T/rec3/chat.jsonl" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(40):
        a = "the answer is %d" % i if i % 4 else "no numbers here at all"
        f.write(json.dumps({"messages": [{"role": "user", "content": "question about cats and hills"},
                                         {"role": "assistant", "content": a}]}) + "\n")
PY
cat > "$T/rec3/r.lua" <<'EOF'
local pl = require "potluck"
return pl.recipe {
  name = "kinds", template = "plain_chat",
  data = pl.pipeline {
    pl.source.jsonl { path = "chat.jsonl" },
    pl.filter.score { scorer = "digits", min = 1 },
    pl.split { eval = 0.25 },
  },
  lora = { r = 2, alpha = 4, dropout = 0 },
  train = { steps = 1, seq_len = 32 },
  eval = { rows = 2, metrics = { "samples", "distinct_2", "mean_chars" } },
}
EOF
"$BIN" run "$T/rec3/r.lua" --out "$T/run3" --base "$TINY" >"$T/out.txt" 2>"$T/err.txt"; rc=$?
[ $rc = 0 ] && ok || fail "scorer/metric/template run: rc=$rc $(tail -5 "$T/err.txt")"
python3 - "$T/run3" <<'PY' && ok || fail "scorer, metrics and template plugin used"
import json, sys, os
run = sys.argv[1]
st = json.load(open(os.path.join(run, "stages", "02-filter.score", "stage.json")))
assert st["input"] == 40 and st["removed"] == 10, st
r = json.load(open(os.path.join(run, "results.json")))
m = r["metrics"]
n_eval = sum(1 for _ in open(os.path.join(run, "stages", "shard", "eval.jsonl")))
assert m["samples"] == n_eval > 0 and 0 < m["distinct_2"] <= 1 and m["mean_chars"] > 10, m
PY
grep -q "template: plain_chat" "$R/../run3/data/train/card.md" && ok || fail "card names the plugin template: $(cat "$T/run3/data/train/card.md")"
grep -q "eval: samples = " "$T/out.txt" && ok || fail "metrics printed: $(cat "$T/out.txt")"
sed -i 's/metrics = { "samples", "distinct_2", "mean_chars" }/metrics = { "sample" }/' "$T/rec3/r.lua"
expect_clean_error "unknown metric" "$BIN" recipe check "$T/rec3/r.lua"
# a token-length filter counts with the base model's tokenizer
cat > "$T/rec3/tok.lua" <<'EOF'
local pl = require "potluck"
return pl.recipe { name = "tok", data = pl.pipeline {
  pl.source.jsonl { path = "chat.jsonl" }, pl.filter.length { min_tokens = 13 } } }
EOF
"$BIN" run "$T/rec3/tok.lua" --out "$T/run4" --base "$TINY" --to 02 >/dev/null 2>"$T/err.txt"; rc=$?
python3 - "$T/run4" <<'PY' && [ $rc = 0 ] && ok || fail "token-length filter: rc=$rc $(tail -3 "$T/err.txt")"
import json, sys, os
d = os.path.join(sys.argv[1], "stages", "02-filter.length")
st = json.load(open(os.path.join(d, "stage.json")))
rem = [json.loads(l) for l in open(os.path.join(d, "removed.jsonl"))]
assert st["input"] == 40 and 0 < st["removed"] < 40 and len(rem) == st["removed"], st
assert all("tokens < min_tokens 13" in r["reason"] for r in rem), rem[:2]
PY
# a recipe's globals are its own: clobbering the libraries and pairs does not
# reach the built-in plugins (each file runs in an environment of its own)
cat > "$T/rec3/clobber.lua" <<'EOF'
local pl = require "potluck"
table.concat, table.sort, math.floor, math.min = nil, nil, nil, nil
string.format, string.gsub, string.find, string.lower = nil, nil, nil, nil
pairs, ipairs, tostring, type = nil, nil, nil, nil
return pl.recipe { name = "clobber", data = pl.pipeline {
  pl.source.jsonl { path = "chat.jsonl" }, pl.filter.length { min_chars = 5 }, pl.filter.regex { keywords = { "hills" }, mode = "keep" },
  pl.dedup.exact {}, pl.dedup.minhash { threshold = 0.9 }, pl.filter.novelty { threshold = 0.99 },
  pl.split { eval = 0.2 } } }
EOF
"$BIN" run "$T/rec3/clobber.lua" --out "$T/run5" --base "$TINY" --to 07 >/dev/null 2>"$T/err.txt" && \
  [ -s "$T/run5/stages/07-split.hash/out.jsonl" ] && ok || fail "clobbered globals reached the plugins: $(tail -3 "$T/err.txt")"
# kill -9 during training inside `potluck run`: the next run resumes from the
# newest checkpoint and ends with the bits of an uninterrupted run
OPT=${POTLUCK_BIN_OPT:-build/opt/potluck}
mkdir -p "$T/kill"
python3 -c "
import random
r = random.Random(1); w = 'the cat sat on a mat while rain fell over quiet hills'.split()
open('$T/kill/c.txt', 'w').write('\n'.join(' '.join(r.choice(w) for _ in range(r.randint(5, 40))) for _ in range(200)) + '\n')"
cat > "$T/kill/k.lua" <<'EOF'
local pl = require "potluck"
return pl.recipe { name = "kill", data = pl.pipeline { pl.source.text { path = "c.txt", unit = "line" }, pl.split { eval = 0.1 } },
  lora = { r = 4, alpha = 8 }, train = { steps = 160, seq_len = 64, save_every = 20, lr = 1e-3 }, eval = { rows = 4 } }
EOF
"$OPT" run "$T/kill/k.lua" --out "$T/kill/a" --base "$TINY" --quiet >/dev/null 2>&1
"$OPT" run "$T/kill/k.lua" --out "$T/kill/b" --base "$TINY" --quiet >/dev/null 2>&1 &
pid=$!
for i in $(seq 1 1200); do
  [ "$(ls "$T/kill/b/train/checkpoints" 2>/dev/null | wc -l)" -ge 2 ] && break
  sleep 0.05
done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
killed_at=$(ls "$T/kill/b/train/checkpoints" 2>/dev/null | tail -1)
out=$("$OPT" run "$T/kill/k.lua" --out "$T/kill/b" --base "$TINY" 2>&1)
if [ -z "$killed_at" ] || [ "$killed_at" = step-000160 ]; then fail "kill -9 came too late (checkpoints: $killed_at)"
elif grep -q "resume: from .*$killed_at" <<<"$out" && \
     cmp -s "$T/kill/a/export/adapter/adapter_model.safetensors" "$T/kill/b/export/adapter/adapter_model.safetensors"; then
  ok; echo "note: killed after $killed_at; resumed run's adapter is byte-identical to an uninterrupted run"
else fail "resume after kill -9: $(grep -E 'resume|stage train' <<<"$out")"; fi
# pl.source.jsonl reads a record at a time: with limit 2, the bad record on line 4
# is never parsed; without a limit it is reported with its own line number
mkdir -p "$T/stream"
printf '%s\n' '{"text": "one"}' '{"text": "two"}' '{"text": "three"}' 'not json' '{"text": "five"}' >"$T/stream/data.jsonl"
for lim in 2 0; do
  if [ $lim = 0 ]; then lp=; else lp=", limit = $lim"; fi
  printf 'local pl = require "potluck"\nreturn pl.recipe { name = "s", data = pl.pipeline { pl.source.jsonl { path = "data.jsonl"%s } } }\n' "$lp" >"$T/stream/r$lim.lua"
  out=$("$BIN" run "$T/stream/r$lim.lua" --out "$T/stream/run$lim" --to 01 2>&1)
  n=$(cat "$T"/stream/run$lim/stages/01-*/out.jsonl 2>/dev/null | wc -l)
  if [ $lim = 2 ]; then
    if [ "$n" = 2 ] && ! grep -q 'skipped' <<<"$out"; then ok; else fail "jsonl limit 2: $n records, output: $out"; fi
  else
    if [ "$n" = 4 ] && grep -q 'skipped: data.jsonl:4: invalid JSON' <<<"$out" && grep -q '1 bad record(s) skipped of 5' <<<"$out" &&
       grep -q '"source":"data.jsonl:5"' "$T"/stream/run0/stages/01-*/out.jsonl; then ok
    else fail "jsonl without limit: $n records, output: $out"; fi
  fi
done
check_summary cli_recipe
