#!/usr/bin/env bash
# tests/big_recipe_generate.sh (make test-big; make test runs self_instruct through
# tests/cli_quickstart.sh): the Self-Instruct and persona generators
# through `potluck run` on SmolLM2-135M-Instruct (optimized build): the
# requested number of samples, each with its provenance, bit-identical from a
# second run directory with the same seed, different with another seed; and
# a recipe's programmatic Lua generator.
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/check.sh
BIN=${POTLUCK_BIN_OPT:-build/opt/potluck}
MODEL=${POTLUCK_MODEL:-$HOME/.cache/potluck/models/SmolLM2-135M-Instruct.Q4_1.gguf}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export POTLUCK_PLUGINS=$T/no-user-plugins
[ -f "$MODEL" ] || { fail "model missing: $MODEL"; check_summary big_recipe_generate; exit 1; }

mkdir -p "$T/rec"
cat > "$T/rec/seeds.jsonl" <<'EOF'
{"instruction": "Name a fruit that is yellow.", "output": "A banana is yellow."}
{"instruction": "What is 7 times 6?", "output": "7 times 6 is 42."}
{"instruction": "Give a synonym for happy.", "output": "Joyful."}
{"instruction": "Write a short greeting for a birthday card.", "output": "Happy birthday! Wishing you a wonderful year ahead."}
{"instruction": "Which planet is known as the Red Planet?", "output": "Mars is known as the Red Planet."}
{"instruction": "Suggest a name for a pet goldfish.", "output": "How about Bubbles?"}
EOF
cat > "$T/rec/gen.lua" <<'EOF'
local pl = require "potluck"
local SEED = 11
return pl.recipe {
  name = "gen-test",
  seed = SEED,
  base = "SmolLM2-135M-Instruct",
  data = pl.pipeline {
    pl.generate.self_instruct { seeds = "seeds.jsonl", n = 4, few_shot = 3, max_tokens = 24, batch = 4 },
    pl.generate.persona { personas = { "a beekeeper", "a night-shift nurse", "a chess coach" }, n = 3,
                          max_tokens = 24, batch = 3 },
    pl.generate(function(ctx, emit)
      for i = 1, 2 do
        emit({ text = "programmatic sample " .. i .. " " .. math.random(1000) })
      end
    end),
  },
}
EOF
run() { POTLUCK_MODELS=$(dirname "$MODEL") "$BIN" run "$T/rec/gen.lua" --out "$1" --to "${2:-03}" --quiet 2>"$T/err.txt"; }
run "$T/a"; rc=$?
[ $rc = 0 ] && ok || fail "run: rc=$rc $(tail -5 "$T/err.txt")"
python3 - "$T/a" <<'PY' && ok || fail "counts and provenance"
import json, sys, os
run = sys.argv[1]
def rows(label): return [json.loads(l) for l in open(os.path.join(run, "stages", label, "out.jsonl"))]
si = rows("01-generate.self_instruct")
assert len(si) == 4, len(si)
for i, r in enumerate(si):
    p = r["_prov"]
    assert p["generator"] == "self_instruct" and p["index"] == i + 1 and isinstance(p["seed"], int), p
    m = r["messages"]
    assert [x["role"] for x in m] == ["user", "assistant"] and m[0]["content"].strip() and m[1]["content"].strip(), m
pe = rows("02-generate.persona")
assert len(pe) == 4 + 3, len(pe)
assert pe[:4] == si                      # the input passes through
for r in pe[4:]:
    p = r["_prov"]
    assert p["generator"] == "persona" and "persona" in p, p
pairs = [(r["_prov"]["persona"], r["_prov"]["task"]) for r in pe[4:]]
assert len(set(pairs)) == 3 and all(p in ("a beekeeper", "a night-shift nurse", "a chess coach") for p, _ in pairs), pairs
lu = rows("03-generate.lua")
assert len(lu) == 9 and lu[:7] == pe
assert lu[7]["_prov"]["generator"] == "generate.lua" and lu[7]["_prov"]["index"] == 8, lu[7]
PY
run "$T/b"
same=1
for d in "$T"/a/stages/0*; do cmp -s "$d/out.jsonl" "$T/b/stages/$(basename "$d")/out.jsonl" || same=0; done
[ $same = 1 ] && ok || fail "a second run with the same seed differs"
sed -i 's/local SEED = 11/local SEED = 12/' "$T/rec/gen.lua"
run "$T/c" 01
cmp -s "$T/a/stages/01-generate.self_instruct/out.jsonl" "$T/c/stages/01-generate.self_instruct/out.jsonl" \
  && fail "another seed gives the same samples" || ok
check_summary big_recipe_generate
