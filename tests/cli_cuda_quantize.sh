#!/usr/bin/env bash
# tests/cli_cuda_quantize.sh: the NF4 base quantized on the device. `potluck train
# --backend cuda` on a BF16 model (potluck model init without --nf4) quantizes each
# layer weight on the device (backend.h's quantize_nf4; the emulated build here):
#  - the run says so (7 of 7 weights a layer);
#  - the quantized-base cache it writes next to the run (.potluck-nf4/) is byte-identical
#    to the one the CPU backend writes for the same model (the bytes come back from
#    the device);
#  - an emulated run that loads the CPU's cache instead trains to the same bits.
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/check.sh
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
EMU=${POTLUCK_BIN_EMU:-build/emu/potluck}
CPU=${POTLUCK_BIN_OPT:-build/opt/potluck}
need_built cli_cuda_quantize "$EMU" "$CPU"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cat >"$T/cfg.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 2000, "hidden_size": 96,
 "intermediate_size": 1101, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
 "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false}
JSON
awk 'BEGIN { for (n = 0; n < 8; n++) { printf "{\"input_ids\":["; for (i = 0; i < 33; i++) printf "%s%d", (i ? "," : ""),
  ((n * 33 + i) * 7919 + 13) % 1900 + 100; printf "]}\n" } }' >"$T/d.jsonl"
"$CPU" data build --in "$T/d.jsonl" --out "$T/data" >"$T/o.txt" 2>&1 || fail "data build: $(cat "$T/o.txt")"
"$CPU" model init --random --config "$T/cfg.json" --seed 4 --out "$T/bf16" >"$T/o.txt" 2>&1 || fail "model init: $(cat "$T/o.txt")"
mkdir -p "$T/cpu" "$T/dev"
train() { # BIN OUT STEPS ARGS...
  local bin=$1 out=$2 n=$3; shift 3
  "$bin" train --model "$T/bf16" --data "$T/data" --out "$out" --seq-len 32 --batch 1 --steps "$n" --lora-r 8 \
    --lora-targets all-linear "$@" >"$out.log" 2>&1
}
train "$CPU" "$T/cpu/run" 1 || fail "cpu run: $(tail -3 "$T/cpu/run.log")"
if train "$EMU" "$T/dev/run" 3 --backend cuda; then ok
  grep -q "14 of 14 layer weights quantized on the device" "$T/dev/run.log" && ok ||
    fail "the run says the base was quantized on the device: $(head -4 "$T/dev/run.log")"
else fail "emulated run: $(tail -3 "$T/dev/run.log")"; fi
a=$(ls "$T"/cpu/.potluck-nf4/*.nf4 2>/dev/null | head -1); b=$(ls "$T"/dev/.potluck-nf4/*.nf4 2>/dev/null | head -1)
if [ -n "$a" ] && [ -n "$b" ] && [ "$(basename "$a")" = "$(basename "$b")" ] && cmp -s "$a" "$b"; then ok
  echo "note: the NF4 cache from the device equals the CPU's: $(stat -c %s "$a") bytes"
else fail "the NF4 caches differ (cpu '$a', device '$b')"; fi
if train "$EMU" "$T/cpu/run2" 3 --backend cuda && grep -q "loaded from the cache" "$T/cpu/run2.log" &&
   cmp -s "$T/cpu/run2/trainable.bin" "$T/dev/run/trainable.bin"; then ok
else fail "the emulated run on the CPU's cache: $(head -3 "$T/cpu/run2.log")"; fi
check_summary cli_cuda_quantize
