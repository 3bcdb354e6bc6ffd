#!/usr/bin/env bash
# bench/plan_bench.sh [POTLUCK]: the planner's accuracy table (docs/planner.md).
# For each training configuration below, `potluck plan --json` with the same
# flags beside what `potluck train` measured for 2 steps: the tagged peak per
# category (metrics.jsonl mem_peak: what the backend allocated, by category)
# and the process's peak RSS growth over its baseline (the peak RSS of
# `potluck model info` on the same model: binary, libraries, the model's
# header) against the plan's total. Configurations: the two real models here
# (stories260K: llama2.c, 6 heads, no GQA; SmolLM2-135M: GGUF Q4_1, GQA 9/3)
# across sequence length, LoRA rank, target modules, checkpointing, the NF4
# or as-loaded base and full fine-tuning.
set -euo pipefail
cd "$(dirname "$0")/.."
POTLUCK=${1:-./potluck}
S=${POTLUCK_SHARED:-../shared}/fixtures
ST=$S/stories260K/stories260K.bin
TOKF=$S/stories260K/tok512.bin
TEXT=$S/text/tinystories_sample.txt
: "${POTLUCK_MODEL:?plan_bench: POTLUCK_MODEL is not set (run through make bench)}"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
rss() { /usr/bin/time -f '%M' -o "$T/rss" "$@" >/dev/null 2>&1 || return 1; echo $(( $(cat "$T/rss") * 1024 )); }

echo
echo "planner accuracy (CPU backend, 2 training steps each): tagged peak per category, plan / measured;"
echo "RSS growth = peak RSS of potluck train minus the model-info baseline, against the plan's total"
printf '| %-52s | %-9s | %-9s | %-9s | %-9s | %-9s | %-9s | %-10s | %-10s | %-7s |\n' configuration weights activ grads optim wspace tagged "plan total" "RSS growth" "RSS/plan"
printf '|%s|\n' "------------------------------------------------------|-----------|-----------|-----------|-----------|-----------|-----------|------------|------------|---------"
i=0
while IFS='|' read -r model flags; do
  [ -n "$model" ] || continue
  i=$((i + 1))
  if [ "$model" = st ]; then m=$ST; extra=(--tokenizer "$TOKF"); label="stories260K $flags"; else m=$POTLUCK_MODEL; extra=(); label="SmolLM2 $flags"; fi
  base=$(rss "$POTLUCK" model info "$m") || { echo "plan_bench: model info $m failed" >&2; exit 1; }
  # shellcheck disable=SC2086
  peak=$(rss "$POTLUCK" train --model "$m" "${extra[@]}" --text "$TEXT" --out "$T/r$i" --steps 2 --eval-every 0 \
         --save-every 0 --threads 2 $flags) || { echo "plan_bench: train $label failed" >&2; exit 1; }
  # shellcheck disable=SC2086
  "$POTLUCK" plan --model "$m" $flags --threads 2 --json >"$T/p$i.json"
  python3 - "$T/r$i/metrics.jsonl" "$T/p$i.json" "$label" "$base" "$peak" <<'PY'
import json, sys
meas = [json.loads(l) for l in open(sys.argv[1]) if l.strip()][-1]["mem_peak"]
p = json.load(open(sys.argv[2]))
plan, label, base, peak = p["tagged"], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
def cell(k):
    a, b = plan.get(k, 0), meas.get(k, 0)
    if a == b: return "same" if a else "0"
    return "%+.1f%%" % (100.0 * (a - b) / b) if b else "%d/0" % a
tp, tm = sum(plan.values()), sum(meas.values())
growth = peak - base
mib = lambda b: "%.1f MiB" % (b / 2**20)
print("| %-52s | %-9s | %-9s | %-9s | %-9s | %-9s | %-9s | %-10s | %-10s | %-7s |" % (
    label[:52], cell("weights"), cell("activations"), cell("gradients"), cell("optimizer"), cell("workspace"),
    "same" if tp == tm else "%+.2f%%" % (100.0 * (tp - tm) / tm), mib(p["total"]), mib(growth),
    "%.2f" % (growth / p["total"])))
PY
done <<'CONF'
st|--lora-r 8 --seq-len 64
st|--lora-r 4 --lora-targets q,v,down --seq-len 40 --checkpointing
st|--lora-r 0 --seq-len 32
st|--lora-r 8 --base as-loaded --seq-len 48 --checkpointing
sm|--lora-r 8 --seq-len 128
sm|--lora-r 16 --seq-len 256 --checkpointing
sm|--lora-r 4 --lora-targets q,v --seq-len 64 --base as-loaded
CONF
echo "(same: the plan is the measured tagged peak byte for byte; a cell in % is (plan - measured) / measured)"
