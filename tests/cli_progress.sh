#!/usr/bin/env bash
# tests/cli_progress.sh: the progress lines (core/progress.h, docs/cli.md
# "Progress") of `potluck run` on the tiny random GGUF: a recipe with a
# source, a model-sampling generator (a recipe plugin), a filter, dedup,
# split, shard, train, eval (a task and a metric) and export.
#  - POTLUCK_PROGRESS=plain (POTLUCK_PROGRESS_EVERY=0: a line at every
#    update): every long stage prints periodic lines and a final line with
#    its count, time and rate, from the sandboxed children too;
#  - POTLUCK_PROGRESS=tty: the redrawn lines (\r ... \033[K) with the bar;
#  - under a real terminal (script(1), when there): the same, isatty in the
#    confined children included;
#  - POTLUCK_PROGRESS=off and --quiet: none;
#  - stdout is the same in every mode (apart from the stage times);
#  - train, eval, model init and generate on their own.
# Times are never compared: only the shapes of the lines.
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/check.sh
BIN=${POTLUCK_BIN:-build/san/potluck}
SHARED=${POTLUCK_SHARED:-../shared}
TINY=$SHARED/fixtures/gguf-tiny-llama/llama-2-tiny-random.gguf
HS=$SHARED/fixtures/eval/hellaswag_val_full.txt
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export POTLUCK_PLUGINS=$T/no-user-plugins
unset POTLUCK_PROGRESS POTLUCK_PROGRESS_EVERY

mkdir -p "$T/rec/plugins"
python3 - "$T/rec/corpus.txt" <<'PY'
import random, sys
r = random.Random(5)
words = "the cat sat on a mat while rain fell over quiet hills and old roads led home".split()
lines = [" ".join(r.choice(words) for _ in range(r.randint(3, 30))) for _ in range(60)]
lines[10] = lines[3]   # a duplicate
lines[20] = "tiny"     # too short
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
cat >"$T/rec/plugins/rawgen.lua" <<'EOF'
-- n raw-text continuations of the base (the tiny model has no chat template)
local pl = require "potluck"
pl.register {
  api = 1, kind = "generate", name = "raw",
  doc = "raw-text continuations of the base model",
  params = { n = { type = "integer", required = true, min = 1 } },
  stream = function(p, ctx, input, emit)
    for s in input() do emit(s) end
    local m = ctx.model()
    for i = 1, p.n do
      local out = m:generate({ "the cat sat on" }, { max_tokens = 6, seed = i })
      emit({ text = "the cat sat on " .. i .. " " .. out[1] })
    end
  end,
}
EOF
cat >"$T/rec/r.lua" <<'EOF'
local pl = require "potluck"
return pl.recipe {
  name = "progress-test",
  seed = 7,
  data = pl.pipeline {
    pl.source.text { path = "corpus.txt", unit = "line" },
    pl.generate.raw { n = 6 },
    pl.filter.length { min_chars = 10 },
    pl.dedup.exact {},
    pl.split { eval = 0.2 },
  },
  lora = { r = 4, alpha = 8, dropout = 0 },
  train = { steps = 3, lr = 1e-3, seq_len = 64 },
  eval = { rows = 4, tasks = { "mc.jsonl" }, limit = 3, metrics = { "distinct_2" } },
  export = { formats = { "peft" } },
}
EOF
"$BIN" eval --task "$HS" --limit 3 --write-items "$T/rec/mc.jsonl" >/dev/null 2>&1 || fail "mc.jsonl"

R=$T/run
run() { # MODE [flags]: stdout without the stage times -> $T/MODE.out, stderr -> $T/MODE.err
  local mode=$1; shift
  POTLUCK_PROGRESS=$mode POTLUCK_PROGRESS_EVERY=0 "$BIN" run "$T/rec/r.lua" --out "$R" --base "$TINY" --force "$@" \
    >"$T/$mode.raw" 2>"$T/$mode.err"
  local rc=$?
  sed -E 's/ \[[0-9.]+ s\]$//' "$T/$mode.raw" >"$T/$mode.out"
  return $rc
}
# every long stage: label, unit, total
STAGES=("01-source.text|samples|" "02-generate.raw|samples|6" "03-filter.length|samples|66" "04-dedup.exact|samples|65"
        "05-split.hash|samples|64" "shard train|samples|" "shard eval|samples|" "train|steps|3" "eval metrics|metrics|1"
        "eval base on mc|items|3" "eval fine-tuned on mc|items|3")
RATE='[0-9][0-9.]*'

# ------------------------------------------------------------ plain
run plain; rc=$?
[ $rc = 0 ] && ok || fail "plain run: rc=$rc $(tail -5 "$T/plain.err")"
grep -q $'\r' "$T/plain.err" && fail "plain: carriage returns on stderr" || ok
for s in "${STAGES[@]}"; do
  IFS='|' read -r label unit total <<<"$s"
  cnt=${total:+[0-9]+/$total}; cnt=${cnt:-[0-9]+(/[0-9]+)?}
  grep -qE "^$label: $cnt $unit in [0-9.:]+( s)?, $RATE $unit/s" "$T/plain.err" && ok \
    || fail "plain: no final line for '$label' ($cnt $unit in ..., rate): $(grep -F "$label" "$T/plain.err" | tail -2)"
done
# periodic lines with the percentage, the rate and the ETA (POTLUCK_PROGRESS_EVERY=0: every update)
grep -qE "^02-generate.raw: [1-5]/6 samples \([0-9]+%\), $RATE samples/s, ETA [0-9]+:[0-9]{2}$" "$T/plain.err" && ok \
  || fail "plain: no periodic generation line: $(grep -F 02-generate "$T/plain.err" | head -3)"
n=$(grep -cE "^03-filter.length: [0-9]+/66 samples \([0-9]+%\), $RATE samples/s" "$T/plain.err")
[ "$n" -ge 60 ] && ok || fail "plain: $n periodic filter lines, expected one per sample (66)"
grep -qE "^03-filter.length: 66/66 samples in .*, 65 kept$" "$T/plain.err" && ok || fail "plain: filter's kept count"
# training keeps its step lines (the log scripts read), then the final line
grep -qE '^  train: step 3/3 loss [0-9.]+ lr ' "$T/plain.err" && ok || fail "plain: train step lines: $(grep train "$T/plain.err")"
grep -qE "^train: 3/3 steps in .*, loss [0-9.]+ " "$T/plain.err" && ok || fail "plain: train final line carries the loss"

# ------------------------------------------------------------ tty (forced)
run tty; rc=$?
[ $rc = 0 ] && ok || fail "tty run: rc=$rc $(tail -5 "$T/tty.err")"
for s in "${STAGES[@]}"; do
  IFS='|' read -r label unit total <<<"$s"
  if [ -n "$total" ]; then
    grep -aqE $'\r'"$label  \[[#.]{20}\]  [0-9]+/$total $unit  ($RATE|-) $unit/s" "$T/tty.err" && ok \
      || fail "tty: no bar for '$label': $(tr '\r' '\n' <"$T/tty.err" | grep -F "$label" | head -2)"
  fi
  grep -aqE $'\r'"$label: [0-9/]+ $unit in [0-9.:]+( s)?, $RATE $unit/s.*"$'\033\\[K$' "$T/tty.err" && ok \
    || fail "tty: no final line for '$label': $(tr '\r' '\n' <"$T/tty.err" | grep -F "$label" | tail -1)"
done
# the eval losses get lines (after the bar is taken off: \r\033[K), the other steps none
grep -aqE '  train: step [12]/3 loss' "$T/tty.err" && fail "tty: per-step train lines beside the bar" || ok
grep -aqE $'\r\033\\[K  train: step 3/3 loss .* eval ' "$T/tty.err" && ok || fail "tty: the eval loss line: $(grep -a 'train: step' "$T/tty.err" | cat -v)"

# ------------------------------------------------------------ off, --quiet
run off; rc=$?
[ $rc = 0 ] && ! grep -qE ' in [0-9.:]+( s)?, |\[#|'$'\r' "$T/off.err" && ok || fail "off: rc=$rc progress printed: $(grep -E ' in [0-9.:]+( s)?, ' "$T/off.err" | head -3)"
POTLUCK_PROGRESS=plain "$BIN" run "$T/rec/r.lua" --out "$R" --base "$TINY" --force --quiet >/dev/null 2>"$T/quiet.err"
grep -qE ' in [0-9.:]+( s)?, ' "$T/quiet.err" && fail "--quiet: progress printed: $(head -3 "$T/quiet.err")" || ok

# ------------------------------------------------------------ stdout unchanged
cmp -s "$T/plain.out" "$T/tty.out" && cmp -s "$T/plain.out" "$T/off.out" && ok \
  || fail "stdout differs between modes: $(diff "$T/plain.out" "$T/tty.out" | head -5) $(diff "$T/plain.out" "$T/off.out" | head -5)"
PAT=' (samples|steps|items|metrics)/s|ETA '
grep -qE "$PAT" "$T/plain.out" && fail "progress on stdout: $(grep -E "$PAT" "$T/plain.out" | head -2)" || ok

# ------------------------------------------------------------ a real terminal
if command -v script >/dev/null 2>&1; then
  cmd="$BIN run '$T/rec/r.lua' --out '$T/pty' --base '$TINY' --to 03"
  POTLUCK_PROGRESS= script -qec "$cmd" /dev/null >"$T/pty.txt" 2>&1; rc=$?
  [ $rc = 0 ] && grep -aqE $'\r02-generate.raw  \\[[#.]{20}\\]' "$T/pty.txt" && grep -aqE $'\r03-filter.length: 66/66 samples in ' "$T/pty.txt" \
    && ok || fail "under a terminal (confined children): rc=$rc $(tr '\r' '\n' <"$T/pty.txt" | tail -5)"
else
  echo "note: script(1) not found: the real-terminal check skipped"
fi

# ------------------------------------------------------------ the commands on their own
POTLUCK_PROGRESS=plain "$BIN" train --model "$TINY" --text "$T/rec/corpus.txt" --out "$T/tr" --steps 2 --seq-len 32 \
  --lora-r 4 >"$T/train.out" 2>"$T/train.err"; rc=$?
[ $rc = 0 ] && grep -qE '^train: step 2/2 loss [0-9.]+ lr [0-9.e+-]+ grad_norm ' "$T/train.err" \
  && grep -qE "^train: 2/2 steps in [0-9.:]+( s)?, $RATE steps/s, loss " "$T/train.err" && ok \
  || fail "train plain: rc=$rc $(cat "$T/train.err")"
POTLUCK_PROGRESS=tty "$BIN" train --model "$TINY" --text "$T/rec/corpus.txt" --out "$T/tr2" --steps 2 --seq-len 32 \
  --lora-r 4 >"$T/train2.out" 2>"$T/train2.err"; rc=$?
[ $rc = 0 ] && grep -aqE $'\rtrain  \\[[#.]{20}\\]  [12]/2 steps' "$T/train2.err" && ! grep -aq '^train: step 1/2' "$T/train2.err" && ok \
  || fail "train tty: rc=$rc $(tr '\r' '\n' <"$T/train2.err" | tail -3)"
POTLUCK_PROGRESS=plain "$BIN" eval "$TINY" --task "$T/rec/mc.jsonl" >"$T/eval.out" 2>"$T/eval.err"; rc=$?
[ $rc = 0 ] && grep -qE "^eval .* on mc: 3/3 items in [0-9.:]+( s)?, $RATE items/s, [0-9]+ tokens$" "$T/eval.err" && ok \
  || fail "eval plain: rc=$rc $(cat "$T/eval.err")"
POTLUCK_PROGRESS=plain "$BIN" model init --random --config "$TINY" --out "$T/mi" >/dev/null 2>"$T/init.err"; rc=$?
[ $rc = 0 ] && grep -qE "^model init: ([0-9]+)/\\1 KiB in [0-9.:]+( s)?, $RATE KiB/s$" "$T/init.err" && ok \
  || fail "model init plain: rc=$rc $(cat "$T/init.err")"
POTLUCK_PROGRESS=plain "$BIN" generate --model "$TINY" --prompt a --prompt b --max-tokens 4 --temperature 0 \
  >"$T/gen.out" 2>"$T/gen.err"; rc=$?
[ $rc = 0 ] && grep -qE "^generate: [0-9]+ tokens in [0-9.:]+( s)?, $RATE tokens/s$" "$T/gen.err" \
  && ! grep -q 'tokens/s' "$T/gen.out" && ok || fail "generate plain: rc=$rc $(cat "$T/gen.err")"

check_summary cli_progress
