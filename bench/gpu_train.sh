#!/usr/bin/env bash
# bench/gpu_train.sh [--dry-run] [--skip-33b] [--skip-long] [--no-peft] [--steps N] [--warmup N]
#                    [--scratch DIR]: QLoRA training steps with `potluck train --backend cuda` on
# this machine's GPU (bench/gpu.sh runs it after the kernel table; it runs alone too):
#
#  1. Llama-2-7B shape, random NF4 base made on the device (--model random:SHAPE, the model
#     `potluck model init --preset llama2-7b --random --nf4` writes, with no file),
#     LoRA r 16 all-linear, checkpointing, batch 1, seq 512 and 2048: W warm-up + N timed steps
#     (default 2 + 3; 1 + 1 with --dry-run). Rows: tokens/s (median of the timed steps' metrics.jsonl tokens_per_s),
#     MFU, the device peak and the peak per memory category (metrics.jsonl's device_peak and
#     mem_peak). MFU = tokens/s x (6N + 12 L s d) / the device's bf16 dense peak (bench/gpu_bench.c's
#     table; gpu_bench --peak), N the base's matmul parameters: bench/gpu_train_report.py says why.
#  2. Where python3 imports torch (with CUDA), transformers and peft: the same shape as a random
#     bf16 LlamaForCausalLM with PEFT LoRA (r 16 all-linear, gradient checkpointing) at the same
#     lengths (bench/peft_train_gpu.py): tokens/s, torch.cuda.max_memory_allocated, and the
#     ratios potluck/peft of tokens/s and of memory (device_peak / max_memory_allocated).
#  3. Guanaco 33B: LLaMA-33B shape (preset llama-33b), NF4, r 64, seq 512, checkpointing,
#     --gpu-mem 24GiB, with --paged-optim when `potluck plan --backend cuda` says it is needed
#     to fit: 2 steps, the peaks. --skip-33b leaves it out.
#  4. Long context: Llama-3.1-8B shape, r 32, batch 1, checkpointing: the longest --seq-len
#     `potluck plan --backend cuda ... --mem 24GiB --fit seq` finds, then 1 step at it under
#     --gpu-mem 24GiB, with --offload-checkpoints --mlp-chunk 4096.
#     --skip-long leaves it out.
#
# The models are random:SHAPE specs: each run makes its base on the device in NF4 (seconds;
# the load time is in the "with load and save" line), so no weights are written or read.
# Their shapes (config.json, potluck model init --config-only, read by the report and PEFT)
# and the token datasets (pre-tokenized JSONL through potluck data build; no tokenizer is
# needed) are made once under --scratch DIR (default $POTLUCK_BENCH_SCRATCH, else
# $POTLUCK_CACHE/bench-gpu, else ~/.cache/potluck/bench-gpu) and reused; run directories are
# removed after their rows are printed. All rows go to DIR/gpu_train.json too (JSON lines,
# written whole at the end).
#
# --dry-run, or no GPU: the same steps and the same parsing on the CPU emulator
# (build/emu/potluck --backend cuda) with a tiny random model (2 layers, width 64), tiny lengths
# and a --gpu-mem sized from the tiny plan, PEFT on the CPU with $POTLUCK_VENV's python when it
# has torch and peft; MFU against the table's H100 SXM peak so the arithmetic runs. Every row
# is marked "emulated, not a measurement". Seconds, not minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
dry=0 skip33=0 skiplong=0 nopeft=0 steps= warmup= scratch=
usage() { echo "usage: bench/gpu_train.sh [--dry-run] [--skip-33b] [--skip-long] [--no-peft] [--steps N] [--warmup N] [--scratch DIR]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) dry=1 ;;
    --skip-33b) skip33=1 ;;
    --skip-long) skiplong=1 ;;
    --no-peft) nopeft=1 ;;
    --steps) steps=${2:?--steps needs a number}; shift ;;
    --warmup) warmup=${2:?--warmup needs a number}; shift ;;
    --scratch) scratch=${2:?--scratch needs a folder}; shift ;;
    *) usage ;;
  esac
  shift
done
[[ "${steps:-1}" =~ ^[1-9][0-9]*$ ]] || { echo "gpu_train.sh: --steps must be a positive integer" >&2; exit 2; }
[[ "${warmup:-0}" =~ ^[0-9]+$ ]] || { echo "gpu_train.sh: --warmup must be a whole number" >&2; exit 2; }
if [ $dry = 0 ] && { ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; }; then
  echo "gpu_train.sh: no GPU here (nvidia-smi missing or failing): running the emulator instead"
  dry=1
fi
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
export POTLUCK_PROGRESS=off
scratch=${scratch:-${POTLUCK_BENCH_SCRATCH:-${POTLUCK_CACHE:-$HOME/.cache/potluck}/bench-gpu}}

if [ $dry = 1 ]; then
  make --no-print-directory -s build/emu/potluck build/opt/bench/gpu_bench >/dev/null
  BIN=build/emu/potluck
  peak_line=$(build/opt/bench/gpu_bench --peak "H100 SXM" | grep '^peak:')
  tag="emulated, not a measurement"
  scratch=$scratch/dry
  PY=${POTLUCK_VENV:+$POTLUCK_VENV/bin/}python3
  peft_dev=cpu
  seqs=(32 64) seq33=32 mem= steps=${steps:-1} warmup=${warmup:-1}
  echo "gpu_train.sh: emulated, not a measurement (CPU emulator, a tiny random model, tiny lengths; MFU against the table's H100 SXM peak)"
else
  arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
  make --no-print-directory -s gpu gpu-bench GPU_ARCH="$arch" >/dev/null
  BIN=build/gpu/potluck-sm_$arch
  build/gpu/gpu_bench-sm_"$arch" --peak
  peak_line=$(build/gpu/gpu_bench-sm_"$arch" --peak | grep '^peak:')
  tag=
  PY=python3
  peft_dev=cuda
  seqs=(512 2048) seq33=512 mem=24GiB steps=${steps:-3} warmup=${warmup:-2}
fi
peak=$(sed -n 's/.* \([0-9.]*\) TFLOP\/s bf16.*/\1/p' <<<"$peak_line")
peak=${peak:-0}
mkdir -p "$scratch"
results=$scratch/gpu_train.json.part
: >"$results"
log=$scratch/last.log
R() { python3 bench/gpu_train_report.py "$@" ${tag:+--tag "$tag"} --peak "$peak"; }
echo "gpu_train.sh: MFU = tokens/s x (6N + 12 L s d) / $peak TFLOP/s (bf16 dense peak; N = base matmul parameters, L layers, s seq, d hidden)"

# shape DIR --preset NAME: the preset's config.json in DIR, made once (the weights are made
# by each run: --model random:DIR/config.json)
shape() {
  local dir=$1; shift
  [ -f "$dir/config.json" ] && return
  rm -rf "$dir"
  "$BIN" model init --config-only "$@" --out "$dir" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
}

# data VOCAB SEQ ROWS: ROWS samples of SEQ fixed pseudo-random ids each (one sample = one row,
# so attention spans the whole length); prints the dataset folder
data() {
  local d=$scratch/data-v$1-s$2-n$3
  if [ ! -f "$d/manifest.json" ]; then
    rm -rf "$d"
    awk -v V="$1" -v S="$2" -v N="$3" 'BEGIN {
      for (n = 0; n < N; n++) {
        printf "{\"input_ids\":[";
        for (i = 0; i < S; i++) printf "%s%d", (i ? "," : ""), ((n * S + i) * 7919 + 13) % (V - 100) + 100;
        printf "]}\n" } }' >"$d.jsonl"
    "$BIN" data build --in "$d.jsonl" --out "$d" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
    rm -f "$d.jsonl"
  fi
  echo "$d"
}

vocab() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["vocab_size"])' "$1"; }
# cfg SPEC: the config.json of a random:PATH spec
cfg() { local p=${1#random:}; echo "${p%@*}"; }
plan_json() { "$BIN" plan --backend cuda "$@" --json; }
jget() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d[sys.argv[1]])' "$1"; }

# train LABEL MODEL SEQ NSTEPS NWARM ARGS...: one potluck run, its rows, then its run directory removed
train() {
  local label=$1 m=$2 seq=$3 n=$4 w=$5; shift 5
  local run=$scratch/run d
  d=$(data "$(vocab "$(cfg "$m")")" "$seq" "$n") || { echo "train: $label: FAILED (the token dataset)"; return 1; }
  rm -rf "$run"
  local t0=$SECONDS
  if ! "$BIN" train --backend cuda --model "$m" --data "$d" --out "$run" --seq-len "$seq" --batch 1 --steps "$n" \
       --lora-targets all-linear --checkpointing --save-every 1000000 --keep-last 1 "$@" >"$log" 2>&1; then
    echo "train: $label: FAILED (potluck train $*):" >&2
    tail -5 "$log" >&2
    echo "train: $label: FAILED"
    return 1
  fi
  echo "gpu_train.sh: $label: potluck train $* --seq-len $seq: $n steps, $((SECONDS - t0)) s with load and save"
  R potluck "$results" --label "$label" --run "$run" --config "$(cfg "$m")" --seq "$seq" --warmup "$w"
  rm -rf "$run"
}

fail=0
if [ $dry = 1 ]; then
  # one tiny shape stands in for each preset
  printf '%s\n' '{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 512,' \
    '"hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2, "num_attention_heads": 8,' \
    '"num_key_value_heads": 4, "max_position_embeddings": 1024, "rms_norm_eps": 1e-5, "rope_theta": 10000,' \
    '"tie_word_embeddings": false}' >"$scratch/tiny.json"
  m7=random:$scratch/tiny.json m33=$m7 m8=$m7 name7=tiny name33=tiny name8=tiny
else
  m7=random:$scratch/llama2-7b/config.json m33=random:$scratch/llama-33b/config.json
  m8=random:$scratch/llama3.1-8b/config.json
  name7=llama2-7b name33=llama-33b name8=llama3.1-8b
  shape "$scratch/llama2-7b" --preset llama2-7b
fi

# 1 + 2: the 7B shape at two lengths, potluck then PEFT
for s in "${seqs[@]}"; do
  train "$name7 seq $s r 16" "$m7" "$s" $((warmup + steps)) "$warmup" --lora-r 16 --lora-alpha 32 || fail=1
done
if [ $nopeft = 1 ]; then
  echo "gpu_train.sh: PEFT side skipped (--no-peft)"
else
  sargs=(); for s in "${seqs[@]}"; do sargs+=(--seq "$s"); done
  pthreads=(); [ $dry = 1 ] && pthreads=(--threads 1)
  prc=0
  "$PY" bench/peft_train_gpu.py --config "$(cfg "$m7")" "${sargs[@]}" --steps "$steps" --warmup "$warmup" \
    --lora-r 16 --device "$peft_dev" "${pthreads[@]}" >"$scratch/peft.out" 2>"$log" || prc=$?
  if [ $prc = 3 ]; then
    echo "gpu_train.sh: PEFT side skipped: $(grep '^peft_train_gpu.py:' "$log" | head -1) ($PY)"
  elif [ $prc = 0 ] && R peft "$results" --label "$name7 seq {seq} r 16" --config "$(cfg "$m7")" <"$scratch/peft.out"; then :
  else
    echo "train: peft: FAILED (exit $prc)"; tail -5 "$log" >&2; fail=1
  fi
  rm -f "$scratch/peft.out"
fi

# 3: Guanaco 33B under 24 GiB: --paged-optim only when the plan needs it to fit
if [ $skip33 = 1 ]; then
  echo "gpu_train.sh: the 33B case skipped (--skip-33b)"
else
  [ $dry = 1 ] || shape "$scratch/llama-33b" --preset llama-33b
  a33=(--model "$m33" --lora-r 64 --seq-len "$seq33" --checkpointing)
  if [ $dry = 1 ]; then # a cap between the paged and the unpaged plan, so the paged path runs
    u=$(plan_json "${a33[@]}" | jget device_need); p=$(plan_json "${a33[@]}" --paged-optim | jget device_need)
    mem=$(( (u + p) / 2 ))
  fi
  paged=()
  if [ "$(plan_json "${a33[@]}" --mem "$mem" | jget fits)" != True ]; then paged=(--paged-optim); fi
  if [ ${#paged[@]} = 1 ] && [ "$(plan_json "${a33[@]}" --paged-optim --mem "$mem" | jget fits)" != True ]; then
    echo "train: $name33 seq $seq33 r 64: FAILED (potluck plan: does not fit in $mem even with --paged-optim)"; fail=1
  else
    echo "gpu_train.sh: $name33 r 64 seq $seq33 in $mem: potluck plan says it fits${paged:+ with --paged-optim}"
    train "$name33 seq $seq33 r 64 gpu-mem $mem${paged:+ paged}" "$m33" "$seq33" 2 1 --lora-r 64 --lora-alpha 16 \
      --gpu-mem "$mem" "${paged[@]}" || fail=1
  fi
fi

# 4: long context, Llama-3.1-8B shape, r 32: the longest length the plan fits in 24 GiB
if [ $skiplong = 1 ]; then
  echo "gpu_train.sh: the long-context case skipped (--skip-long)"
else
  [ $dry = 1 ] || shape "$scratch/llama3.1-8b" --preset llama3.1-8b
  # the layer inputs offloaded to the host, the MLP in chunks (4096 tokens; 16 on the tiny dry-run model)
  chunk=4096; [ $dry = 1 ] && chunk=16
  off=(--offload-checkpoints --mlp-chunk $chunk); poff=("${off[@]}")
  a8=(--model "$m8" --lora-r 32 --batch 1 --checkpointing)
  [ $dry = 1 ] && mem=$(plan_json "${a8[@]}" "${poff[@]}" --seq-len 96 | jget device_need)
  long=$(plan_json "${a8[@]}" "${poff[@]}" --mem "$mem" --fit seq | jget largest)
  echo "gpu_train.sh: $name8 r 32: the longest --seq-len potluck plan fits in $mem: $long (with ${off[*]})"
  train "$name8 seq $long r 32 gpu-mem $mem offload mlp-chunk $chunk" "$m8" "$long" 1 0 --lora-r 32 --lora-alpha 64 \
    --gpu-mem "$mem" "${off[@]}" || fail=1
fi

mv "$results" "$scratch/gpu_train.json"
echo "gpu_train.sh: rows in $scratch/gpu_train.json${tag:+ ($tag)}"
exit $fail
