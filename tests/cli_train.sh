#!/usr/bin/env bash
# tests/cli_train.sh: the learning test. `potluck train` fine-tunes LoRA
# adapters (r 16, all-linear) on SmolLM2-135M ($POTLUCK_MODEL) over a frozen
# NF4 base with a small synthetic task (400 lines "Q: What is A plus B? A: A
# plus B is C.", --text, last 10% held out) and the held-out eval loss after
# 8 steps must be well below the base model's (< 0.75x), with metrics.jsonl,
# config.json, checkpoints and a PEFT adapter in the run directory. Uses the
# optimized build ($POTLUCK_BIN_OPT); POTLUCK_TRAIN_BASE=as-loaded keeps the
# GGUF's Q4_1 base instead of NF4.
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/check.sh
# sleep rather than spin in OpenMP barriers: the test machine's cores are shared (no effect on the bits)
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
: "${POTLUCK_MODEL:?set POTLUCK_MODEL}"
BIN=${POTLUCK_BIN_OPT:-build/opt/potluck}
if ! [ -x "$BIN" ] || ! grep -q 'usage: potluck train' <<<"$("$BIN" train --help 2>/dev/null)"; then
  fail "$BIN does not dispatch 'train' (cli/main.c needs: if (!strcmp(cmd, \"train\")) return cmd_train(argc - 1, argv + 1);)"
  check_summary cli_train; exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$tmp/sums.txt" <<'PY'
import random, sys
r = random.Random(5)
with open(sys.argv[1], "w") as f:
    for i in range(400):
        a, b = r.randint(10, 49), r.randint(10, 49)
        f.write(f"Q: What is {a} plus {b}? A: {a} plus {b} is {a + b}.\n")
PY
t0=$(date +%s)
"$BIN" train --model "$POTLUCK_MODEL" --text "$tmp/sums.txt" --out "$tmp/run" --base "${POTLUCK_TRAIN_BASE:-nf4}" \
  --lora-r 16 --lora-alpha 32 --lora-dropout 0.05 --steps 8 --seq-len 128 --lr 2e-3 --schedule linear --warmup-steps 2 \
  --eval-every 8 --eval-rows 4 --save-every 4 --seed 42 >"$tmp/out" 2>"$tmp/err"
rc=$?
echo "note: train took $(( $(date +%s) - t0 )) s"
if [ $rc = 0 ]; then ok; else fail "train exit $rc: $(tail -3 "$tmp/err")"; check_summary cli_train; exit 1; fi
base=$(grep '"step":0,' "$tmp/run/metrics.jsonl" | sed -E 's/.*"eval_loss":([0-9.eE+-]+).*/\1/')
last=$(grep '"step":8,' "$tmp/run/metrics.jsonl" | sed -E 's/.*"eval_loss":([0-9.eE+-]+).*/\1/')
echo "note: held-out eval loss: base $base, after 8 LoRA steps $last"
if python3 -c "import sys; b,l=float('$base'),float('$last'); sys.exit(0 if l < 0.75*b else 1)" 2>/dev/null; then ok
else fail "eval loss $last is not well below the base model's $base"; fi
for f in config.json metrics.jsonl trainable.bin adapter/adapter_config.json adapter/adapter_model.safetensors \
         checkpoints/step-000008/manifest.json checkpoints/step-000004/adapter/adapter_model.safetensors; do
  if [ -s "$tmp/run/$f" ]; then ok; else fail "missing $f"; fi
done
if grep -q '"grad_norm"' "$tmp/run/metrics.jsonl" && grep -q '"tokens_per_s"' "$tmp/run/metrics.jsonl" && grep -q '"mem_peak"' "$tmp/run/metrics.jsonl"; then ok
else fail "metrics.jsonl lacks fields"; fi
# The quantized-base cache beside the run: the first run wrote it, a second
# run (2 steps) into another run directory loads it and gets the losses the
# first run had at the same steps; a damaged cache is said and replaced.
if [ "${POTLUCK_TRAIN_BASE:-nf4}" = nf4 ]; then
  if grep -q "NF4 base cached in" "$tmp/out" "$tmp/err"; then ok; else fail "first run did not cache the NF4 base: $(cat "$tmp/err" | tail -3)"; fi
  args2=(train --model "$POTLUCK_MODEL" --text "$tmp/sums.txt" --base nf4 --lora-r 16 --lora-alpha 32 --lora-dropout 0.05
         --steps 8 --seq-len 128 --lr 2e-3 --schedule linear --warmup-steps 2 --eval-every 8 --eval-rows 4 --save-every 4 --seed 42)
  # 2 steps, no eval: the losses of steps 1-2 depend only on the warmup's
  # learning rates, which do not depend on the run's length
  "$BIN" "${args2[@]}" --steps 2 --eval-every 0 --out "$tmp/run2" >"$tmp/out2" 2>"$tmp/err2"
  if grep -q "NF4 base loaded from the cache" "$tmp/out2" "$tmp/err2" && \
     [ "$(grep -o '"loss":[^,]*' "$tmp/run2/metrics.jsonl" | wc -l)" = 2 ] && \
     cmp -s <(grep -o '"loss":[^,]*' "$tmp/run/metrics.jsonl" | head -2) <(grep -o '"loss":[^,]*' "$tmp/run2/metrics.jsonl"); then ok
  else fail "second run: cache not used or different losses: $(tail -3 "$tmp/err2")"; fi
  c=$(ls "$tmp"/.potluck-nf4/*.nf4 | head -1)
  printf 'x' | dd of="$c" bs=1 seek=100 conv=notrunc 2>/dev/null
  "$BIN" "${args2[@]}" --steps 1 --eval-every 0 --out "$tmp/run3" >"$tmp/out3" 2>"$tmp/err3"
  if grep -q "NF4 cache not used" "$tmp/out3" "$tmp/err3" && grep -q "NF4 base cached in" "$tmp/out3" "$tmp/err3"; then ok
  else fail "a damaged cache was not reported and replaced: $(tail -3 "$tmp/err3")"; fi
fi
tps=$(grep '"step":8,' "$tmp/run/metrics.jsonl" | sed -E 's/.*"tokens_per_s":([0-9.eE+-]+).*/\1/')
echo "note: last step $tps tokens/s"
check_summary cli_train
