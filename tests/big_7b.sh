#!/usr/bin/env bash
# big_7b.sh (make test-big): one QLoRA step at real 7B shape on the CPU, and the
# planner's total against the process's measured peak.
#
#  1. `potluck model init --random --preset llama2-7b --nf4` (cached under
#     $POTLUCK_CACHE/big/, reused while trainer/model_init.c is unchanged), with the
#     Llama-2 tokenizer of the fixtures (32000 tokens, as the preset);
#  2. `potluck plan --model DIR --seq-len 64 --lora-r 64 --json`: the plan's total;
#  3. `potluck train` on the same settings for one step (--text from the fixtures),
#     under /usr/bin/time -v: it must finish, the loss must be finite, and the peak
#     RSS minus the binary's baseline (the RSS of `potluck plan`, which maps nothing
#     large) must be within 10% of the plan's total.
# BIG_PRESET=llama2-13b runs the same at 13B (needs about 12 GB of RAM).
set -u
cd "$(dirname "$0")/.."
source tests/check.sh
BIN=${POTLUCK_BIN_OPT:-build/opt/potluck}
PRESET=${BIG_PRESET:-llama2-7b}
CACHE=${POTLUCK_CACHE:-$HOME/.cache/potluck}
TOK=${POTLUCK_SHARED:?}/fixtures/tokenizers/tiny-random-LlamaForCausalLM
key=$(cat trainer/model_init.c trainer/model_init.h lora/nf4.c | sha256sum | cut -c1-12)
M=$CACHE/big/$PRESET-nf4-seed0-$key
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
if [ ! -f "$M/config.json" ]; then
  rm -rf "$CACHE/big/$PRESET-nf4-seed0-"*
  t0=$(date +%s)
  if POTLUCK_PROGRESS=1 "$BIN" model init --random --preset "$PRESET" --nf4 --tokenizer "$TOK" --out "$M" \
       >"$T/init.txt" 2>&1; then ok; echo "note: model init $PRESET (NF4): $(( $(date +%s) - t0 )) s, $(du -sh "$M" | cut -f1)"
  else fail "model init: $(tail -5 "$T/init.txt")"; rm -rf "$M"; check_summary big_7b; exit 1; fi
else ok; echo "note: $PRESET NF4 random model from the cache ($M)"; fi

SET=(--seq-len 64 --lora-r 64)
/usr/bin/time -v "$BIN" plan --model "$M" "${SET[@]}" --json >"$T/plan.json" 2>"$T/plan.time" \
  && ok || fail "plan: $(cat "$T/plan.json" "$T/plan.time" | tail -5)"
plan_total=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["total"])' "$T/plan.json")
base_kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$T/plan.time")
head -c 200000 "$POTLUCK_SHARED/fixtures/text/tinystories_sample.txt" >"$T/text.txt"
t0=$(date +%s)
if /usr/bin/time -v "$BIN" train --model "$M" --text "$T/text.txt" --out "$T/run" --steps 1 \
     "${SET[@]}" --threads 2 >"$T/train.txt" 2>"$T/train.time"; then ok
else fail "train: $(tail -8 "$T/train.txt" "$T/train.time")"; fi
secs=$(( $(date +%s) - t0 ))
grep -q "step 1/1 loss [0-9]" "$T/train.txt" "$T/train.time" && ok || fail "no finite loss at step 1: $(tail -5 "$T/train.txt" "$T/train.time")"
peak_kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$T/train.time")
python3 - "$plan_total" "$peak_kb" "$base_kb" "$secs" "$PRESET" <<'PY' && ok || fail "peak RSS is not within 10% of the plan"
import sys
plan, peak_kb, base_kb, secs, preset = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
used = (peak_kb - base_kb) * 1024
rel = (used - plan) / plan
print(f"note: {preset} QLoRA step (seq 64, r 64, CPU): plan {plan / 2**30:.2f} GiB, peak RSS {peak_kb / 2**20:.2f} GiB "
      f"- baseline {base_kb / 2**20:.2f} GiB = {used / 2**30:.2f} GiB ({rel:+.1%}); {secs} s")
sys.exit(0 if abs(rel) <= 0.10 else 1)
PY
check_summary big_7b
