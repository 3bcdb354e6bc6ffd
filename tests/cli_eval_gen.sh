#!/usr/bin/env bash
# tests/cli_eval_gen.sh: generative eval tasks written in Lua (docs/eval.md,
# "Generative tasks") on the real SmolLM2-135M-Instruct (optimized build; a
# few items, a few tokens each):
#  - recipes/eval/arith.lua: the table and results.json rows (value in [0,1],
#    stderr, n, items_sha256), --samples (prompt, output, target, score);
#  - two runs give byte-identical results.json and samples;
#  - --limit: the same items every time, a smaller limit a subset;
#  - the other scorers (contains, regex, a Lua function, the LLM judge: its
#    unparsable replies counted in a *_unparsed row, not scored 0);
#  - hostile task files (reads and writes outside, an endless loop at load
#    and in a scorer) and malformed ones: one clean error line (ASan build).
set -u
cd "$(dirname "$0")/.."
source tests/check.sh
BIN=${POTLUCK_BIN:?}
BIN_OPT=${POTLUCK_BIN_OPT:?}
: "${POTLUCK_MODEL:?}"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export POTLUCK_PLUGINS=$tmp/no-user-plugins
M=$POTLUCK_MODEL
ARITH=recipes/eval/arith.lua

# arith, 6 of its 16 items, twice
for r in 1 2; do
  "$BIN_OPT" eval "$M" --as smol --task "$ARITH" --limit 6 --threads 2 --out "$tmp/r$r.json" --samples "$tmp/s$r.jsonl" \
    >"$tmp/t$r.txt" 2>"$tmp/e$r.txt" || fail "arith run $r: $(tail -3 "$tmp/e$r.txt")"
done
grep -q 'arith numeric_match' "$tmp/t1.txt" && grep -qE '^smol +[01]\.[0-9]{4} ± [0-9.]+' "$tmp/t1.txt" && ok || fail "table: $(cat "$tmp/t1.txt")"
python3 - "$tmp/r1.json" "$tmp/s1.jsonl" <<'PY' && ok || fail "results.json / samples of arith"
import json, re, sys
r = json.load(open(sys.argv[1]))
assert r["format"] == "potluck-eval/1"
(row,) = r["rows"]
assert row["task"] == "arith" and row["metric"] == "numeric_match" and row["variant"] == "smol", row
assert 0 <= row["value"] <= 1 and isinstance(row["stderr"], (int, float)) and row["stderr"] >= 0, row
assert row["n"] == 6 and re.fullmatch("[0-9a-f]{64}", row["items_sha256"]), row
s = [json.loads(l) for l in open(sys.argv[2])]
assert len(s) == 6, len(s)
for x in s:
    assert x["task"] == "arith" and x["score"] in (0, 1) and isinstance(x["output"], str), x
    assert x["prompt"][0]["role"] == "user" and "Answer with the number only." in x["prompt"][0]["content"], x
    assert isinstance(x["target"], (int, float)), x
assert abs(sum(x["score"] for x in s) / 6 - row["value"]) < 1e-12
PY
cmp -s "$tmp/r1.json" "$tmp/r2.json" && cmp -s "$tmp/s1.jsonl" "$tmp/s2.jsonl" && ok || fail "two runs differ: $(diff "$tmp/r1.json" "$tmp/r2.json")"

# --limit: the same items every time, a subset for a smaller limit, others for another seed
"$BIN" eval --task "$ARITH" --limit 6 --write-items "$tmp/i6a.jsonl" 2>"$tmp/e.txt" && \
"$BIN" eval --task "$ARITH" --limit 6 --write-items "$tmp/i6b.jsonl" 2>>"$tmp/e.txt" && \
"$BIN" eval --task "$ARITH" --limit 3 --write-items "$tmp/i3.jsonl" 2>>"$tmp/e.txt" && \
"$BIN" eval --task "$ARITH" --limit 6 --seed 7 --write-items "$tmp/i6s.jsonl" 2>>"$tmp/e.txt" || fail "--write-items: $(cat "$tmp/e.txt")"
cmp -s "$tmp/i6a.jsonl" "$tmp/i6b.jsonl" && ok || fail "--limit 6 twice: not the same items"
python3 - "$tmp/i6a.jsonl" "$tmp/i3.jsonl" "$tmp/i6s.jsonl" "$tmp/s1.jsonl" <<'PY' && ok || fail "subset properties"
import json, sys
a, c, d, s = ([json.loads(l)["index"] for l in open(p)] for p in sys.argv[1:])
assert len(a) == 6 and a == sorted(a) and set(c) <= set(a) and set(d) != set(a), (a, c, d)
assert s == a, ("the evaluated items are the written ones", s, a)
PY

# the other scorers on three inline items (one process per task)
ITEMS='  items = {
    { input = "What is the capital of France?", target = { "Paris", "paris" } },
    { input = "What is the capital of Italy?", target = "Rome" },
    { input = "What is the capital of Japan?", target = "Tokyo" },
  },'
mk() { # NAME SCORER-EXPRESSION [METRIC]: a task file of the three items
  { echo 'local pl = require "potluck"'
    echo "return pl.task {"
    echo "$ITEMS"
    echo "  name = \"$1\", template = \"{input} Answer in one word.\", generate = { max_tokens = 8, stop = { \"\\n\" } },"
    echo "  scorer = $2,"
    [ -n "${3:-}" ] && echo "  metric = \"$3\","
    echo "}"; } >"$tmp/$1.lua"
}
mk cap_contains 'pl.scorer.contains { lowercase = true }'
mk cap_regex 'pl.scorer.regex { pattern = "^\\\\p{Lu}", flags = "u" }'
mk cap_fn 'function(out, item) return #out > 0 and #out < 200 end' nonempty
mk cap_judge 'pl.scorer.judge { max_tokens = 8 }'
"$BIN_OPT" eval "$M" --as smol --task "$tmp/cap_contains.lua" --task "$tmp/cap_regex.lua" --task "$tmp/cap_fn.lua" \
  --task "$tmp/cap_judge.lua" --threads 2 --out "$tmp/caps.json" --samples "$tmp/caps.jsonl" >"$tmp/t.txt" 2>"$tmp/e.txt" \
  || fail "scorers: $(tail -3 "$tmp/e.txt")"
python3 - "$tmp/caps.json" "$tmp/caps.jsonl" <<'PY' && ok || fail "scorer rows"
import json, sys
rows = {(r["task"], r["metric"]): r for r in json.load(open(sys.argv[1]))["rows"]}
want = [("cap_contains", "contains"), ("cap_regex", "regex_match"), ("cap_fn", "nonempty"), ("cap_judge", "judge"),
        ("cap_judge", "judge_unparsed")]
assert sorted(rows) == sorted(want), sorted(rows)
for k in want[:3]:
    r = rows[k]
    assert r["n"] == 3 and 0 <= r["value"] <= 1 and r["stderr"] is not None, r
u, j = rows[("cap_judge", "judge_unparsed")], rows[("cap_judge", "judge")]
assert u["n"] == 3 and 0 <= u["value"] <= 1, u
assert j["n"] == round(3 * (1 - u["value"])), (j, u)   # the judge's n counts parsed replies only
assert (j["value"] is None) == (j["n"] == 0) and (j["value"] is None or 0 <= j["value"] <= 1), j
s = [json.loads(l) for l in open(sys.argv[2]) if json.loads(l)["task"] == "cap_judge"]
assert len(s) == 3 and all(isinstance(x["judge"], str) for x in s), s
assert all((x["score"] is None) == ("unparsed" in x) for x in s), s
PY
grep -q "cap_judge: .* judge replies unparsable\|cap_judge: 3 items generated and scored" "$tmp/e.txt" && ok || fail "judge summary line: $(cat "$tmp/e.txt")"

# hostile task files: refused or stopped, one clean line, nothing written
mkdir -p "$tmp/h"
echo secret >"$tmp/outside.txt"
cat >"$tmp/h/read.lua" <<LUA
local pl = require "potluck"
return pl.task { items = { { input = pl.read_file("$tmp/outside.txt"), target = "x" } }, scorer = "exact" }
LUA
cat >"$tmp/h/escape.lua" <<'LUA'
return { items = "../outside.txt", scorer = "exact" }
LUA
cat >"$tmp/h/write.lua" <<LUA
local pl = require "potluck"
pl.write_file("$tmp/planted.txt", "x")
return pl.task { items = { { input = "a", target = "x" } }, scorer = "exact" }
LUA
printf 'local pl = require "potluck"\nwhile true do end\n' >"$tmp/h/loop.lua"
cat >"$tmp/h/loopscore.lua" <<'LUA'
return { items = { { input = "a" } }, generate = { max_tokens = 1 }, scorer = function(out, item) while true do end end }
LUA
LIM="--lua-instructions 10000000"
expect_clean_error "task reading outside its folder" "$BIN" eval "$M" --task "$tmp/h/read.lua" $LIM
grep -q "reads must stay inside" <<<"$("$BIN" eval "$M" --task "$tmp/h/read.lua" $LIM 2>&1)" && ok || fail "read refusal message"
expect_clean_error "task items outside its folder" "$BIN" eval "$M" --task "$tmp/h/escape.lua" $LIM
expect_clean_error "task writing a file" "$BIN" eval "$M" --task "$tmp/h/write.lua" $LIM
[ ! -e "$tmp/planted.txt" ] && ok || fail "the hostile task planted a file"
expect_clean_error "task looping at load" "$BIN" eval "$M" --task "$tmp/h/loop.lua" $LIM
grep -q "loop.lua:2: instruction limit of 10000000 exceeded" <<<"$("$BIN" eval "$M" --task "$tmp/h/loop.lua" $LIM 2>&1)" \
  && ok || fail "endless loop message"
expect_clean_error "scorer looping" "$BIN_OPT" eval "$M" --task "$tmp/h/loopscore.lua" $LIM --quiet
expect_clean_error "task with a wall-clock limit" "$BIN" eval "$M" --task "$tmp/h/loop.lua" --lua-wall 1

# malformed task files: one line that says what is wrong
bad() { # NAME WANT LUA
  printf '%s\n' "$3" >"$tmp/h/$1.lua"
  expect_clean_error "bad task $1" "$BIN" eval "$M" --task "$tmp/h/$1.lua"
  grep -qF -- "$2" <<<"$("$BIN" eval "$M" --task "$tmp/h/$1.lua" 2>&1)" && ok || fail "bad task $1: message lacks '$2'"
}
bad noscorer "scorer: required, missing" 'return { items = { { input = "a", target = "x" } } }'
bad badtype 'generate.max_tokens: expected an integer, got string "ten"' \
  'return { items = { { input = "a", target = "x" } }, scorer = "exact", generate = { max_tokens = "ten" } }'
bad unknown "did you mean 'exact'?" 'return { items = { { input = "a", target = "x" } }, scorer = "exakt" }'
bad notarget 'items[2]: the exact scorer needs "target"' 'return { items = { { input = "a", target = "x" }, { input = "b" } }, scorer = "exact" }'
bad noinput 'items[1]: expected "input" (a string)' 'return { items = { { question = "a", target = "x" } }, scorer = "exact" }'
bad badnum 'target string "many" is not a number' 'return { items = { { input = "a", target = "many" } }, scorer = "numeric" }'
bad number "must return pl.task{...} (a table), got integer 42" 'return 42'
bad syntax "syntax.lua:2: unexpected symbol near <eof>" 'return {'
bad unknownkey "unknown key 'scorrer'" 'return { items = { { input = "a", target = "x" } }, scorrer = "exact" }'
bad noitems "items: no items" 'return { items = {}, scorer = "exact" }'
check_summary cli_eval_gen
