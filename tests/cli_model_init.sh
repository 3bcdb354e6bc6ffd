#!/usr/bin/env bash
# cli_model_init.sh: `potluck model init --random` (trainer/model_init.c).
#  - a small Llama-shaped config (3 layers: more NF4 tensors than the writer first holds), BF16 and NF4: potluck loads both (model info names
#    the dtypes), generates from the NF4 one, the same seed gives the same bytes with 1
#    and 2 threads, another seed other bytes, sharding writes an index potluck reads;
#  - the peers read it: bitsandbytes dequantizes potluck's NF4 tensors (QuantState
#    from the stored quant state) to within NF4's step of the BF16 init of the same seed,
#    and transformers loads the NF4 folder as a 4-bit model (Linear4bit layers) and runs it;
#  - (a preset at its real width: tests/big_7b.sh, in make test-big, inits llama2-7b whole);
#  - --tokenizer X.gguf writes SmolLM2's vocabulary as tokenizer.json: model info of the
#    new folder shows the GGUF's tokenizer id (fingerprint);
#  - clear errors: no --random, an unknown preset, an existing model folder, a tokenizer with
#    more tokens than the shape's vocab_size (before any weight is written), a GGUF whose
#    SentencePiece vocabulary cannot be written as tokenizer.json, a --tokenizer file that
#    is neither JSON nor GGUF.
set -u
cd "$(dirname "$0")/.."
source tests/check.sh
BIN=${POTLUCK_BIN:?}
BIN_OPT=${POTLUCK_BIN_OPT:?}
PY=${POTLUCK_VENV:?}/bin/python
TOK=${POTLUCK_SHARED:?}/fixtures/tokenizers/tiny-random-LlamaForCausalLM
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cat > "$T/config.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32000, "hidden_size": 64,
 "intermediate_size": 256, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
 "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false,
 "bos_token_id": 1, "eos_token_id": 2}
JSON
init() { "$BIN" model init --random --config "$T/config.json" --tokenizer "$TOK" "$@" >"$T/o.txt" 2>&1; }
if init --out "$T/nf4" --nf4 --seed 7 && init --out "$T/bf16" --seed 7; then ok; else fail "model init: $(cat "$T/o.txt")"; fi
"$BIN" model info "$T/nf4" >"$T/i.txt" 2>&1 && grep -q "NF4 x21" "$T/i.txt" && ok || fail "model info of the NF4 init: $(cat "$T/i.txt")"
"$BIN" model info "$T/bf16" >"$T/i.txt" 2>&1 && grep -q "BF16 x23" "$T/i.txt" && ok || fail "model info of the BF16 init: $(cat "$T/i.txt")"
if "$BIN" generate --model "$T/nf4" --prompt "Hello" --max-tokens 4 --temperature 0 >"$T/g.txt" 2>&1; then ok
else fail "generate from the NF4 init: $(cat "$T/g.txt")"; fi
"$BIN_OPT" model init --random --config "$T/config.json" --out "$T/t1" --nf4 --seed 7 --threads 1 >/dev/null 2>&1
"$BIN_OPT" model init --random --config "$T/config.json" --out "$T/t2" --nf4 --seed 7 --threads 2 >/dev/null 2>&1
"$BIN_OPT" model init --random --config "$T/config.json" --out "$T/s8" --nf4 --seed 8 >/dev/null 2>&1
if cmp -s "$T/t1/model.safetensors" "$T/t2/model.safetensors" && cmp -s "$T/t1/model.safetensors" "$T/nf4/model.safetensors"; then ok
else fail "the same seed gave different bytes (threads 1 / 2 / the sanitizer build)"; fi
if ! cmp -s "$T/s8/model.safetensors" "$T/nf4/model.safetensors"; then ok; else fail "seed 8 gave seed 7's bytes"; fi
"$BIN_OPT" model init --random --config "$T/config.json" --out "$T/sh" --nf4 --seed 7 --shard-mb 3 >/dev/null 2>&1
n=$(ls "$T/sh"/model-*-of-*.safetensors 2>/dev/null | wc -l)
if [ "$n" -ge 2 ] && [ -f "$T/sh/model.safetensors.index.json" ] && "$BIN" model info "$T/sh" >/dev/null 2>&1; then ok
  echo "note: --shard-mb 3: $n shards and an index; potluck loads them"
else fail "sharded init: $n shards: $(ls "$T/sh")"; fi
"$PY" - "$T" <<'PY' >"$T/py.txt" 2>&1 && ok || fail "peers on the init: $(tail -5 "$T/py.txt")"
import sys, torch
from safetensors.torch import load_file
import bitsandbytes.functional as F
from bitsandbytes.functional import QuantState
t = sys.argv[1]
m, b = load_file(f"{t}/nf4/model.safetensors"), load_file(f"{t}/bf16/model.safetensors")
worst = 0.0
for name in [k for k in m if k.endswith("_proj.weight")]:
    qs = {k[len(name) + 1:]: v for k, v in m.items() if k.startswith(name + ".")}
    w = F.dequantize_4bit(m[name], QuantState.from_dict(qs, device=torch.device("cpu"))).float()
    ref = b[name].float()
    assert w.shape == ref.shape, (name, w.shape, ref.shape)
    # the widest gap between NF4 codes is 0.277 of a block's absmax (0.723 to 1): half of it, plus bf16 rounding
    err = ((w - ref).abs().max() / ref.abs().max()).item()
    assert err < 0.145, (name, err)
    worst = max(worst, err)
from transformers import AutoModelForCausalLM
mod = AutoModelForCausalLM.from_pretrained(f"{t}/nf4", device_map="cpu")
assert type(mod.model.layers[0].mlp.down_proj).__name__ == "Linear4bit"
out = mod(torch.tensor([[1, 450, 4996, 17354]])).logits
assert torch.isfinite(out.float()).all()
print(f"note: bitsandbytes reads all 21 NF4 weights (worst |nf4 - bf16| {worst:.3f} of the absmax); "
      f"transformers runs the folder as a 4-bit model")
PY
grep '^note' "$T/py.txt"
expect_clean_error "init without --random" "$BIN" model init --preset llama2-7b --out "$T/x"
expect_clean_error "init with an unknown preset" "$BIN" model init --random --preset llama9-1b --out "$T/x"
expect_clean_error "init into an existing model" "$BIN" model init --random --config "$T/config.json" --out "$T/nf4"
# --tokenizer X.gguf (SmolLM2: 49152 tokens)
SM=${POTLUCK_MODEL:?}
python3 - "$T/config.json" "$T/c49k.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["vocab_size"] = 49152; c["num_hidden_layers"] = 1
json.dump(c, open(sys.argv[2], "w"))
PY
if "$BIN" model init --random --config "$T/c49k.json" --tokenizer "$SM" --out "$T/smtok" >"$T/o.txt" 2>&1; then
  a=$("$BIN" model info "$SM" | grep "^tokenizer id:"); b=$("$BIN" model info "$T/smtok" | grep "^tokenizer id:")
  [ -n "$a" ] && [ "$a" = "$b" ] && [ -f "$T/smtok/tokenizer_config.json" ] && ok || fail "tokenizer id GGUF '$a' vs written '$b'"
else fail "--tokenizer GGUF: $(cat "$T/o.txt")"; fi
expect_clean_error "tokenizer larger than vocab_size" "$BIN" model init --random --config "$T/config.json" --tokenizer "$SM" --out "$T/v"
[ ! -e "$T/v/model.safetensors" ] && [ ! -e "$T/v/config.json" ] && ok || fail "weights written despite the tokenizer refusal"
expect_clean_error "SentencePiece GGUF tokenizer" "$BIN" model init --random --config "$T/config.json" \
  --tokenizer "$POTLUCK_SHARED/fixtures/gguf-tiny-llama/llama-2-tiny-random.gguf" --out "$T/v2"
printf 'not a tokenizer' > "$T/tok.bin"
expect_clean_error "--tokenizer neither JSON nor GGUF" "$BIN" model init --random --config "$T/config.json" --tokenizer "$T/tok.bin" --out "$T/v3"
check_summary cli_model_init
