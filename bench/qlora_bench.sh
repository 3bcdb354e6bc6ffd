#!/usr/bin/env bash
# bench/qlora_bench.sh: potluck QLoRA training vs PyTorch + PEFT on the CPU, one run.
#
# SmolLM2-135M ($POTLUCK_MODEL), seq 256, batch 1, LoRA r 16 / alpha 32 /
# dropout 0.05 on all linear layers, clip 0.3, AdamW; activation checkpointing
# off and on. potluck: `potluck train --text` over a generated text (rows of
# 256 tokens, every token trained) with the base quantized to NF4 (--base nf4;
# BENCH_QLORA_BASE=as-loaded keeps the GGUF's Q4_1); tokens/s is the median
# of the per-step tokens_per_s in metrics.jsonl after the first step. PEFT:
# bench/peft_train.py (bitsandbytes NF4 if it runs on the CPU, else an fp32
# base; its JSON line says which). Peak RSS of both via /usr/bin/time -v.
# Prints each side's tokens/s, the ratio potluck / peft (above 1: potluck is
# faster) and the peak RSS of each.
#
# Environment: POTLUCK_MODEL, POTLUCK_VENV (required); BENCH_THREADS (2),
# BENCH_QLORA_STEPS (4), BENCH_POTLUCK (./potluck), BENCH_QLORA_BASE (nf4).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${POTLUCK_MODEL:?qlora-bench: POTLUCK_MODEL is not set}"
: "${POTLUCK_VENV:?qlora-bench: POTLUCK_VENV is not set}"
THREADS=${BENCH_THREADS:-2}
STEPS=${BENCH_QLORA_STEPS:-4}
POTLUCK=${BENCH_POTLUCK:-./potluck}
BASE=${BENCH_QLORA_BASE:-nf4}
PY=$POTLUCK_VENV/bin/python
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -c "
import random; r = random.Random(1)
w = 'the of and a to in is you that it he was for on are as with his they at be this have from'.split()
print('\n'.join(' '.join(r.choice(w) for _ in range(30)) for _ in range(600)))" >"$tmp/text.txt"
rss() { grep 'Maximum resident set size' "$1" | awk '{printf "%.0fMiB", $NF / 1024}'; }
printf '%-14s %-10s %12s %12s %8s %14s %14s\n' checkpointing base potluck_tok/s peft_tok/s ratio potluck_rss peft_rss
for ck in off on; do
  flag=--no-checkpointing; pyflag=
  if [ $ck = on ]; then flag=--checkpointing; pyflag=--checkpointing; fi
  OMP_NUM_THREADS=$THREADS /usr/bin/time -v "$POTLUCK" train --model "$POTLUCK_MODEL" --text "$tmp/text.txt" \
    --out "$tmp/run-$ck" --base "$BASE" --lora-r 16 --lora-alpha 32 --lora-dropout 0.05 --seq-len 256 \
    --steps $((STEPS + 1)) --save-every 0 --eval-frac 0 $flag --threads "$THREADS" >/dev/null 2>"$tmp/pl-$ck.time"
  pl=$(python3 -c "
import json, statistics
v = [json.loads(l)['tokens_per_s'] for l in open('$tmp/run-$ck/metrics.jsonl') if '\"loss\"' in l][1:]
print(statistics.median(v))")
  OMP_NUM_THREADS=$THREADS /usr/bin/time -v "$PY" bench/peft_train.py --model "$POTLUCK_MODEL" --seq 256 \
    --steps "$STEPS" --warmup 1 --threads "$THREADS" $pyflag >"$tmp/peft-$ck.json" 2>"$tmp/peft-$ck.time"
  read -r pt pbase note < <(python3 -c "
import json; d = json.loads(open('$tmp/peft-$ck.json').read().strip().splitlines()[-1])
print(d['tokens_per_s'], d['base'], d['note'].replace(' ', '_') or '-')")
  ratio=$(python3 -c "print(f'{$pl / $pt:.3f}')")
  printf '%-14s %-10s %12.1f %12.1f %8s %14s %14s\n' "$ck" "$BASE/$pbase" "$pl" "$pt" "$ratio" "$(rss "$tmp/pl-$ck.time")" "$(rss "$tmp/peft-$ck.time")"
  if [ "$note" != - ]; then echo "note: peft: ${note//_/ }"; fi
done
