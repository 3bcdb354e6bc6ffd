#!/usr/bin/env bash
# tests/cli_hostile_metric.sh: a recipe's own metric plugin runs after training,
# in a confined child, and tries to change what the run reports and exports:
# it writes (each attempt in pcall, so the run goes on to export) over the
# trained adapter, the last checkpoint's adapter, train/config.json,
# stages/train.json, stages/train.adapter (the host's sha256 record), the
# run's plan.json, a file beside the run directory, and plants a new file in
# train/. Every write must be refused (the metric reports how many
# succeeded: 0; and of its attempts through relative paths, how many refusals
# named the run directory's absolute path: 0), and against a clean run of the same recipe whose metric
# writes nothing: train/config.json, stages/train.adapter, results.json's
# losses and the exported adapter are byte-identical (train/config.json up to
# its run folder's name), and a find listing of
# everything outside the two run directories is unchanged.
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/check.sh
BIN=${POTLUCK_BIN:-build/san/potluck}
SHARED=${POTLUCK_SHARED:-../shared}
TINY=$SHARED/fixtures/gguf-tiny-llama/llama-2-tiny-random.gguf
T=$(mktemp -d)
trap "[ -n \"${KEEP_T:-}\" ] || rm -rf \"$T\"" EXIT
export POTLUCK_PLUGINS=$T/no-user-plugins
mkdir -p "$T/outside"
echo "canary" >"$T/outside/canary.txt"

python3 - "$T/corpus.txt" <<'PY'
import random, sys
r = random.Random(3)
w = "a small model learns the words of quiet hills and long roads home".split()
open(sys.argv[1], "w").write("\n".join(" ".join(r.choice(w) for _ in range(r.randint(4, 20))) for _ in range(50)) + "\n")
PY

# make_case NAME ATTEMPTS: a recipe folder NAME whose metric runs the Lua in ATTEMPTS
make_case() {
  local d=$T/$1
  mkdir -p "$d/plugins"
  cp "$T/corpus.txt" "$d/"
  cat >"$d/plugins/tamper.lua" <<LUA
local pl = require "potluck"
-- each attempt in pcall; what came back: writes that succeeded, and error
-- messages that name the run directory's absolute path
local function attempts()
  local ok_writes, leaks = 0, 0
  local function try(path, data, relative)
    local ok, msg = pcall(pl.write_file, path, data)
    if ok then ok_writes = ok_writes + 1
    elseif relative and string.find(tostring(msg), '$R', 1, true) then leaks = leaks + 1 end
  end
  -- relative paths: whatever they resolve against, the refusal must not say where the run lives
  for _, rel in ipairs({ 'train/config.json', '../train/config.json', '../../train/config.json', 'stages/train.json',
                         '../stages/train.adapter', '../../stages/train.adapter', 'x/y/z.txt' }) do
    try(rel, 'evil', true)
  end
$2
  return ok_writes, leaks
end
pl.register { api = 1, kind = "metric", name = "tamper", doc = "How many writes to host state succeeded.",
  measure = function(p, ctx, samples) local w = attempts() return w end }
pl.register { api = 1, kind = "metric", name = "tamper_leaks", doc = "How many refusals named the run directory.",
  measure = function(p, ctx, samples) local _, l = attempts() return l end }
LUA
  cat >"$d/r.lua" <<'LUA'
local pl = require "potluck"
return pl.recipe {
  name = "tamper", seed = 5,
  data = pl.pipeline {
    pl.source.text { path = "corpus.txt", unit = "line" },
    pl.split { eval = 0.2 },
  },
  lora = { r = 4, alpha = 8, dropout = 0 },
  train = { steps = 3, lr = 1e-3, seq_len = 48, save_every = 3 },
  eval = { rows = 4, metrics = { "tamper", "tamper_leaks" } },
  export = { formats = { "peft" } },
}
LUA
}

R=$T/runs
mkdir -p "$R"
make_case clean "  -- writes nothing"
make_case hostile "
  local run = '$R/hostile'
  try(run .. '/train/adapter/adapter_model.safetensors', 'evil')
  try(run .. '/train/checkpoints/step-000003/adapter/adapter_model.safetensors', 'evil')
  try(run .. '/train/config.json', '{\"lora\":{\"r\":64}}')
  try(run .. '/stages/train.json', '{}')
  try(run .. '/stages/train.adapter', string.rep('0', 64))
  try(run .. '/plan.json', '{}')
  try(run .. '/train/planted.txt', 'x')
  try('$T/outside/canary.txt', 'changed')
  try('$T/outside/new.txt', 'x')"

listing() { (cd "$T" && find . -mindepth 1 -path ./runs -prune -o -printf '%p %y %s %T@\n' | sort); }
before=$(listing)
"$BIN" run "$T/clean/r.lua" --out "$R/clean" --base "$TINY" --threads 1 >"$R/clean.log" 2>&1 && ok || fail "clean run: $(tail -5 "$R/clean.log")"
before_h=$(listing)
"$BIN" run "$T/hostile/r.lua" --out "$R/hostile" --base "$TINY" --threads 1 >"$R/hostile.log" 2>&1; rc=$?
[ $rc = 0 ] && ok || fail "hostile run (its writes are in pcall): rc=$rc $(tail -5 "$R/hostile.log")"
grep -q "Sanitizer\|runtime error" "$R/hostile.log" && fail "sanitizer: $(grep -m3 'Sanitizer\|runtime error' "$R/hostile.log")" || ok

python3 - "$R/clean/results.json" "$R/hostile/results.json" <<'PY' && ok || fail "results: tamper metric must be 0 and the losses equal"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["metrics"]["tamper"] == 0 and b["metrics"]["tamper"] == 0, (a["metrics"], b["metrics"])
assert b["metrics"]["tamper_leaks"] == 0, b["metrics"]  # refusals name paths relative to the run directory
for k in ("steps", "tokens", "final_train_loss", "base_eval_loss", "eval_loss"):
    assert a[k] == b[k], (k, a[k], b[k])
PY
# train/config.json names its run's folders: the same once the folder name is the same
cmp -s "$R/clean/train/config.json" <(sed 's|/runs/hostile/|/runs/clean/|g' "$R/hostile/train/config.json") \
  && ok || fail "train/config.json differs: $(diff "$R/clean/train/config.json" "$R/hostile/train/config.json")"
for f in stages/train.adapter export/adapter/adapter_model.safetensors train/adapter/adapter_model.safetensors \
         train/checkpoints/step-000003/adapter/adapter_model.safetensors; do
  cmp -s "$R/clean/$f" "$R/hostile/$f" && ok || fail "$f differs between the clean and the hostile run"
done
[ "$(cat "$R/hostile/stages/train.adapter")" = "$(sha256sum <"$R/hostile/export/adapter/adapter_model.safetensors" | cut -c1-64)" ] \
  && ok || fail "stages/train.adapter is not the exported adapter's sha256"
python3 -c "import json,sys; json.load(open(sys.argv[1]))['key']" "$R/hostile/stages/train.json" && ok || fail "stages/train.json was replaced"
python3 -c "import json,sys; assert json.load(open(sys.argv[1]))['steps']" "$R/hostile/plan.json" && ok || fail "plan.json was replaced"
[ ! -e "$R/hostile/train/planted.txt" ] && ok || fail "a file was planted in train/"
[ "$(listing)" = "$before" ] && [ "$before_h" = "$before" ] && ok || fail "outside the run directories changed: $(diff <(echo "$before") <(listing))"
[ "$(cat "$T/outside/canary.txt")" = canary ] && [ ! -e "$T/outside/new.txt" ] && ok || fail "canary changed"
[ $check_failed = 0 ] && echo "note: hostile metric: 16 writes attempted after training (7 through relative paths), 0 succeeded, no refusal named the run directory; adapter, config and records byte-identical to a clean run's"
check_summary cli_hostile_metric
