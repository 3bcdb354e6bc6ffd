#!/usr/bin/env bash
# tests/cli_newuser.sh: the new user's walkthrough of issue #20, scripted: a
# CPU-only user with SmolLM2 (found by name in $POTLUCK_MODELS) and an own
# 18-conversation JSONL (written below by hand) goes through model info,
# generation, a dataset, a QLoRA run with held-out eval, the PEFT export
# (what it names its base), a recipe of their own, and the careless inputs
# the issue lists. Every message that used to be vague is checked for the
# specific words that make it actionable; each check failed before the fix.
# The SmolLM2 training and export steps use the optimized build; the tiny
# random Llama fixture serves the recipe runs.
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/check.sh
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
BIN=${POTLUCK_BIN:-build/san/potluck}
OPT=${POTLUCK_BIN_OPT:-build/opt/potluck}
: "${POTLUCK_MODEL:?}" "${POTLUCK_SHARED:?}"
export POTLUCK_MODELS=${POTLUCK_MODELS:-$(dirname "$POTLUCK_MODEL")}
TINY=$POTLUCK_SHARED/fixtures/gguf-tiny-llama/llama-2-tiny-random.gguf
NAME=SmolLM2-135M-Instruct
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export POTLUCK_PLUGINS=$T/no-user-plugins

# has DESC TEXT WORD...: every WORD (fixed string) is in TEXT
has() {
  local d=$1 t=$2; shift 2
  for w in "$@"; do grep -qF -- "$w" <<<"$t" || { fail "$d: no '$w' in: $t"; return; }; done
  ok
}
# lacks DESC TEXT WORD...: no WORD is in TEXT
lacks() {
  local d=$1 t=$2; shift 2
  for w in "$@"; do grep -qF -- "$w" <<<"$t" && { fail "$d: '$w' in: $t"; return; }; done
  ok
}
# err_of CMD...: the command must fail with one clean line; prints that line
err_of() {
  local e; e=$("$@" 2>&1 >/dev/null); local rc=$?
  if [ $rc = 0 ]; then fail "exit 0: $*"; elif [ $rc -ge 128 ]; then fail "signal $rc: $*"
  elif grep -qE 'Sanitizer|runtime error' <<<"$e"; then fail "sanitizer: $e"
  elif [ "$(grep -c . <<<"$e")" != 1 ] || ! grep -q '^potluck: ' <<<"$e"; then fail "not one 'potluck:' line: $e"
  else ok; fi
  echo "note: ${*:1:3} -> $e" >&2
  printf '%s' "$e"
}

# ------------------------------------------------------------ the user's data
mkdir -p "$T/work/somedir"
cat >"$T/work/chat.jsonl" <<'EOF'
{"messages": [{"role": "user", "content": "What is the capital of France?"}, {"role": "assistant", "content": "Paris is the capital of France."}]}
{"messages": [{"role": "user", "content": "How many legs does a spider have?"}, {"role": "assistant", "content": "A spider has eight legs."}]}
{"messages": [{"role": "user", "content": "What colour is the sky on a clear day?"}, {"role": "assistant", "content": "On a clear day the sky is blue."}]}
{"messages": [{"role": "user", "content": "Name a fruit that is yellow."}, {"role": "assistant", "content": "A banana is a yellow fruit."}]}
{"messages": [{"role": "user", "content": "What is two plus three?"}, {"role": "assistant", "content": "Two plus three is five."}]}
{"messages": [{"role": "user", "content": "Which planet is closest to the sun?"}, {"role": "assistant", "content": "Mercury is the planet closest to the sun."}]}
{"messages": [{"role": "user", "content": "What do bees make?"}, {"role": "assistant", "content": "Bees make honey and wax."}]}
{"messages": [{"role": "user", "content": "How many days are in a week?"}, {"role": "assistant", "content": "A week has seven days."}]}
{"messages": [{"role": "user", "content": "What is frozen water called?"}, {"role": "assistant", "content": "Frozen water is called ice."}]}
{"messages": [{"role": "user", "content": "Which animal says moo?"}, {"role": "assistant", "content": "A cow says moo."}]}
{"messages": [{"role": "system", "content": "You answer in one short sentence."}, {"role": "user", "content": "What is the largest ocean?"}, {"role": "assistant", "content": "The Pacific is the largest ocean."}]}
{"messages": [{"role": "user", "content": "How many hours are in a day?"}, {"role": "assistant", "content": "A day has twenty-four hours."}]}
{"messages": [{"role": "user", "content": "What gas do plants take in?"}, {"role": "assistant", "content": "Plants take in carbon dioxide."}]}
{"messages": [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello!"}]}
{"messages": [{"role": "user", "content": "What is the opposite of hot?"}, {"role": "assistant", "content": "The opposite of hot is cold."}]}
{"messages": [{"role": "user", "content": "How many sides does a triangle have?"}, {"role": "assistant", "content": "A triangle has three sides."}]}
{"messages": [{"role": "user", "content": "Which season comes after winter?"}, {"role": "assistant", "content": "Spring comes after winter."}]}
{"messages": [{"role": "user", "content": "What do you call a baby cat?"}, {"role": "assistant", "content": "A baby cat is called a kitten."}, {"role": "user", "content": "And a baby dog?"}, {"role": "assistant", "content": "A baby dog is called a puppy."}]}
EOF
[ "$(wc -l <"$T/work/chat.jsonl")" = 18 ] && ok || fail "18 conversations"
head -14 "$T/work/chat.jsonl" >"$T/work/train.jsonl"
tail -4 "$T/work/chat.jsonl" >"$T/work/eval.jsonl"
: >"$T/work/empty.jsonl"
cd "$T/work" || exit 1
B=$OLDPWD/$BIN; [ "${BIN#/}" != "$BIN" ] && B=$BIN
O=$OLDPWD/$OPT; [ "${OPT#/}" != "$OPT" ] && O=$OPT

# ------------------------------------------------------------ 10: model info by name, --template
out=$("$B" model info $NAME 2>&1); rc=$?
[ $rc = 0 ] && has "model info NAME resolves as recipes do" "$out" "$NAME" ".gguf" "chat template:" || fail "model info $NAME: rc=$rc $out"
out=$("$B" model info $NAME --template 2>&1)
has "model info --template prints the template" "$out" "{% for message in messages %}" "<|im_start|>"
e=$(err_of "$B" model info NoSuchModel-1B)
has "model info unknown name" "$e" "NoSuchModel-1B" "POTLUCK_MODELS"

# ------------------------------------------------------------ 10: generate --chat shows the special tokens
out=$("$B" generate --model $NAME --chat --prompt "Hi" --max-tokens 3 --temperature 0 --threads 2 2>&1)
has "generate --chat echoes the rendered prompt" "$out" "<|im_start|>user" "<|im_end|>" "<|im_start|>assistant"

# ------------------------------------------------------------ 7: a folder where a file is expected
e=$(err_of "$B" generate --model somedir --prompt x)
has "generate --model somedir" "$e" "somedir" "config.json" "safetensors" ".gguf"
e=$(err_of "$B" data build --in somedir --out ds --model $NAME)
has "data build --in somedir" "$e" "somedir" "is a folder" "JSONL"
lacks "data build --in somedir" "$e" "read error"

# ------------------------------------------------------------ 6: an empty input file
e=$(err_of "$B" data build --in empty.jsonl --out ds_empty --model $NAME)
has "data build of an empty file" "$e" "empty.jsonl" "0 samples" "empty"
[ ! -f ds_empty/manifest.json ] && ok || fail "an empty build wrote a manifest"

# ------------------------------------------------------------ 10: one vocabulary for data build
out=$("$B" data build --in train.jsonl --out ds_tr --model $NAME 2>&1) && ok || fail "data build --model NAME: $out"
out=$("$B" data build --in eval.jsonl --out ds_ev --tokenizer "$POTLUCK_MODEL" 2>&1) && ok || fail "data build --tokenizer (alias): $out"
out=$("$B" data inspect ds_tr --samples 1 2>&1)
has "data inspect decodes with the recorded tokenizer" "$out" "recorded by the build" "[[" "<|im_start|>"
help=$("$B" data --help)
lacks "data --help prints printf escapes" "$help" "%%"
has "data --help: --model, last-assistant" "$help" "--model PATH" "last-assistant"
thelp=$("$B" template --help)
has "template --help: last-assistant" "$thelp" "last-assistant"
out=$("$B" data build --in train.jsonl --out ds_last --model $NAME --mask last 2>&1) && ok || fail "--mask last (alias): $out"
grep -q '"mask":[[:space:]]*"last-assistant"' ds_last/manifest.json && ok || fail "--mask last recorded as last-assistant"
e=$(err_of "$B" data build --in train.jsonl --out ds_x --model $NAME --mask final)
has "unknown mask names the choices" "$e" "assistant" "all" "last-assistant"
out=$(printf 'Hello' | "$B" tokenize --model $NAME 2>&1)
[ -n "$out" ] && ! grep -q potluck <<<"$out" && ok || fail "tokenize --model NAME: $out"

# ------------------------------------------------------------ 1: --eval-data without --eval-every
out=$("$O" train --model "$POTLUCK_MODEL" --data ds_tr --eval-data ds_ev --out runs/ev --steps 2 --seq-len 64 \
      --lora-r 4 --threads 2 2>&1); rc=$?
if [ $rc = 0 ]; then ok; else fail "train --eval-data: rc=$rc $out"; fi
n=$(grep -c '"eval_loss"' runs/ev/metrics.jsonl 2>/dev/null)
[ "${n:-0}" = 2 ] && ok || fail "eval_loss at step 0 and the end: $n lines: $(cat runs/ev/metrics.jsonl 2>/dev/null | cut -c1-80)"
grep -q '"step":0,.*"eval_loss"\|"step":[[:space:]]*0,' runs/ev/metrics.jsonl && ok || fail "no step-0 eval"
has "train prints the eval losses" "$out" "eval loss" "(base)"

# ------------------------------------------------------------ 3: the adapter names its base so a peer resolves it
out=$("$O" export runs/ev --format peft --out ex_peft 2>&1) && ok || fail "export peft: $out"
name=$(python3 -c "import json;print(json.load(open('ex_peft/adapter_config.json'))['base_model_name_or_path'])")
[ "$name" = "HuggingFaceTB/$NAME" ] && ok || fail "base_model_name_or_path: '$name'"
python3 - "$POTLUCK_MODEL" <<'PY' && ok || fail "potluck_base.json"
import hashlib, json, os, sys
b = json.load(open("ex_peft/potluck_base.json"))
assert b["local_path"] == os.path.realpath(sys.argv[1]), b
h = hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest()
assert b["sha256"][os.path.basename(sys.argv[1])] == h, b
PY
out=$("$O" export runs/ev --format peft --out ex_peft2 --base-name my-org/my-base 2>&1) && \
  grep -q '"base_model_name_or_path":[[:space:]]*"my-org/my-base"' ex_peft2/adapter_config.json && ok || fail "--base-name: $out"
# 7: export into an existing folder: says what to do, no temporary name
e=$(err_of "$O" export runs/ev --format gguf --out somedir)
has "export gguf --out folder" "$e" "somedir" "folder" "somedir/model.gguf"
lacks "export gguf --out folder" "$e" ".tmp."
: >afile
e=$(err_of "$O" export runs/ev --format peft --out afile)
has "export peft --out file" "$e" "afile" "folder"

# ------------------------------------------------------------ recipes (tiny model)
mkdir -p rec/sub
cp train.jsonl rec/chat.jsonl
cat >rec/sub/my.lua <<'EOF'
local pl = require "potluck"
return pl.recipe {
  name = "mine",
  base = "SmolLM2-135M-Instrcut",
  data = pl.pipeline {
    pl.source.jsonl { path = "../chat.jsonl" },
  },
  train = { steps = 2, seq_len = 32 },
}
EOF
# 4: a base that does not exist fails at once, before any stage
cat >rec/ok.lua <<'EOF'
local pl = require "potluck"
return pl.recipe {
  name = "ok",
  base = "SmolLM2-135M-Instruct",
  data = pl.pipeline {
    pl.source.jsonl { path = "chat.jsonl" },
    pl.map(function(s) return { text = s.messages[2].content } end),
    pl.filter.length { min_chars = 30 },
  },
  lora = { r = 2, alpha = 4, dropout = 0 },
  train = { steps = 400, seq_len = 32, save_every = 1 },
  export = { formats = { "peft" } },
}
EOF
e=$(err_of "$B" run rec/ok.lua --out runs/nope --base /nope/model.gguf)
has "run --base /nope" "$e" "--base" "/nope/model.gguf" "no such model file or folder"
lacks "run --base /nope" "$e" "or pass --base PATH"
[ ! -d runs/nope/stages ] && ok || fail "run --base /nope ran stages: $(ls runs/nope/stages)"
e=$(err_of "$B" recipe check rec/sub/my.lua --allow-read rec)
has "recipe check: misspelled base" "$e" "SmolLM2-135M-Instrcut" "not found" "POTLUCK_MODELS"
out=$("$B" recipe check rec/ok.lua 2>&1) && has "recipe check: a good base" "$out" "ok: rec/ok.lua is a valid recipe" || fail "recipe check ok.lua: $out"
# 5: reading beside the recipe folder names the way out
e=$(err_of "$B" run rec/sub/my.lua --out runs/mine --base "$TINY" --to 01)
has "read outside the recipe folder" "$e" "../chat.jsonl" "--allow-read PATH"
out=$("$B" run rec/sub/my.lua --out runs/mine --base "$TINY" --to 01 --allow-read rec/chat.jsonl 2>&1) && ok || fail "--allow-read: $out"
# 10: lora.rank
sed 's/lora = { r = 2,/lora = { rank = 2,/' rec/ok.lua >rec/rank.lua
e=$(err_of "$B" recipe check rec/rank.lua)
has "lora.rank" "$e" "rank" "did you mean 'r'"
# 9: the stage summary shows the filter's own numbers
out=$("$B" run rec/ok.lua --out runs/ok --base "$TINY" --to 03 2>&1)
has "stage summary numbers" "$out" "chars < min_chars 30"
lacks "stage summary numbers" "$out" "min_chars N"
# 8: Ctrl-C inside potluck run says to rerun the same command
"$O" run rec/ok.lua --out runs/ok --base "$TINY" --threads 1 >run.out 2>run.err &
pid=$!
for _ in $(seq 1 600); do
  grep -q '"loss"' runs/ok/train/metrics.jsonl 2>/dev/null && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.05
done
kill -INT $pid 2>/dev/null; wait $pid; rc=$?
err=$(cat run.err)
[ $rc = 130 ] && ok || fail "Ctrl-C in run: rc=$rc $(tail -3 run.err)"
has "Ctrl-C in run: how to resume" "$err" "run the same command again to resume"
lacks "Ctrl-C in run: no --resume" "$err" "--resume"
out=$("$O" run rec/ok.lua --out runs/ok --base "$TINY" --threads 1 --to train 2>&1) && \
  has "rerun resumes" "$out" "resum" || fail "rerun after Ctrl-C: $out"

check_summary cli_newuser
