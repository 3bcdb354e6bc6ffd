#!/usr/bin/env bash
# tests/cli_model_random.sh: --model random:SHAPE[@SEED], the rehearsal model made
# in memory (trainer/model_random.c), from the command line:
#  - `potluck train --backend cuda` on the emulated build (build/emu/potluck, the
#    weights made on the device) and `potluck train` on the CPU, each against the
#    same run on the folder `potluck model init --random --nf4` writes for that shape
#    and seed: the step losses and the trained state (trainable.bin, the PEFT
#    adapter) are byte-identical; the adapter records the spec as its base;
#  - `potluck generate --backend cuda --tokenizer ...` gives the CPU backend's greedy
#    text; without --tokenizer it is refused naming --tokenizer;
#  - `potluck plan --model random:llama2-7b --backend cuda` plans the device as the
#    preset does (the same device_need) with the weights in the process's own memory
#    (no file map); its generation plan keeps the layers in NF4;
#  - model info names the format; a bad spec is refused with one line;
#  - a shape folder holding a tokenizer.json: generate needs no --tokenizer, and
#    a recipe runs on random:FOLDER@SEED (shard, train, export), packs with the
#    folder's config.json and tokenizer pinned in the lock, and verifies.
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/check.sh
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
EMU=${POTLUCK_BIN_EMU:-build/emu/potluck}
CPU=${POTLUCK_BIN_OPT:-build/opt/potluck}
TOK=${POTLUCK_SHARED:?}/fixtures/tokenizers/tiny-random-LlamaForCausalLM
need_built cli_model_random "$EMU" "$CPU"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cat >"$T/cfg.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32000, "hidden_size": 64,
 "intermediate_size": 160, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
 "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false,
 "bos_token_id": 1, "eos_token_id": 2}
JSON
awk 'BEGIN { for (n = 0; n < 8; n++) { printf "{\"input_ids\":["; for (i = 0; i < 33; i++) printf "%s%d", (i ? "," : ""),
  ((n * 33 + i) * 7919 + 13) % 30000 + 100; printf "]}\n" } }' >"$T/d.jsonl"
"$CPU" data build --in "$T/d.jsonl" --out "$T/data" >"$T/o.txt" 2>&1 || fail "data build: $(cat "$T/o.txt")"
"$CPU" model init --random --nf4 --config "$T/cfg.json" --seed 5 --out "$T/init" >"$T/o.txt" 2>&1 || fail "model init: $(cat "$T/o.txt")"
SPEC="random:$T/cfg.json@5"

train() { # BIN OUT MODEL ARGS...
  local bin=$1 out=$2 m=$3; shift 3
  "$bin" train --model "$m" --data "$T/data" --out "$out" --seq-len 32 --batch 1 --steps 3 --lora-r 8 \
    --lora-targets all-linear --checkpointing "$@" >"$out.log" 2>&1
}
losses() { grep -o '"loss":[-0-9.e]*' "$1/metrics.jsonl" | tr '\n' ' '; }
same_run() { # WHAT A B
  if [ -s "$2/trainable.bin" ] && cmp -s "$2/trainable.bin" "$3/trainable.bin" &&
     cmp -s "$2/adapter/adapter_model.safetensors" "$3/adapter/adapter_model.safetensors" &&
     [ "$(losses "$2")" = "$(losses "$3")" ]; then ok
    echo "note: $1: step losses $(losses "$2")(the same for both), trained state byte-identical"
  else fail "$1: random vs init folder: losses $(losses "$2")/ $(losses "$3"); $(tail -2 "$2.log")"; fi
}
if train "$EMU" "$T/gr" "$SPEC" --backend cuda && train "$EMU" "$T/gi" "$T/init" --backend cuda; then ok
  same_run "cuda (emulated), the weights made on the device" "$T/gr" "$T/gi"
  grep -q "NF4 base made from random:" "$T/gr.log" && ok || fail "the run says where its base came from: $(head -3 "$T/gr.log")"
else fail "emulated training: $(tail -3 "$T/gr.log" "$T/gi.log")"; fi
if train "$CPU" "$T/cr" "$SPEC" && train "$CPU" "$T/ci" "$T/init"; then ok
  same_run "cpu" "$T/cr" "$T/ci"
else fail "cpu training: $(tail -3 "$T/cr.log" "$T/ci.log")"; fi
grep -q "\"base_model_name_or_path\":[[:space:]]*\"$SPEC\"" "$T/cr/adapter/adapter_config.json" &&
  grep -q '"format":[[:space:]]*"random"' "$T/cr/adapter/potluck_base.json" && ok ||
  fail "the adapter names the spec as its base: $(cat "$T/cr/adapter/potluck_base.json")"

gen() { "$1" generate --model "$SPEC" --tokenizer "$TOK" --prompt "Hello world" --max-tokens 6 --temperature 0 "${@:2}" 2>"$T/g.err"; }
a=$(gen "$CPU") && b=$(gen "$EMU" --backend cuda) && [ -n "$a" ] && [ "$a" = "$b" ] && ok ||
  fail "greedy generation, cpu vs cuda: '$a' / '$b': $(cat "$T/g.err")"
"$CPU" generate --model "$SPEC" --prompt "Hi" --max-tokens 2 >"$T/o.txt" 2>&1
grep -q "no tokenizer" "$T/o.txt" && grep -q -- "--tokenizer" "$T/o.txt" && ok ||
  fail "generate without a tokenizer: $(cat "$T/o.txt")"

pj() { "$CPU" plan "$@" --backend cuda --lora-r 16 --seq-len 2048 --checkpointing --json; }
jv() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d[sys.argv[2]])' "$@"; }
if pj --model random:llama2-7b >"$T/pr.json" 2>"$T/o.txt" && pj --preset llama2-7b >"$T/pp.json" 2>>"$T/o.txt"; then
  need_r=$(jv "$T/pr.json" device_need); need_p=$(jv "$T/pp.json" device_need)
  [ "$need_r" = "$need_p" ] && [ "$(jv "$T/pr.json" file_mapped)" = 0 ] && ok ||
    fail "plan random:llama2-7b: device_need $need_r (preset $need_p), file_mapped $(jv "$T/pr.json" file_mapped)"
  echo "note: plan --backend cuda, 7B r 16 seq 2048 checkpointing: device_need $need_r bytes for random:llama2-7b and the preset"
else fail "plan: $(cat "$T/o.txt")"; fi
"$CPU" plan --model random:llama2-7b --generate --ctx 512 --backend cuda >"$T/o.txt" 2>&1 && grep -q "NF4" "$T/o.txt" && ok ||
  fail "generation plan of random:llama2-7b keeps NF4 layers: $(cat "$T/o.txt")"
"$CPU" model info "$SPEC" >"$T/o.txt" 2>&1 && grep -q "format: *random" "$T/o.txt" && ok || fail "model info: $(cat "$T/o.txt")"
for bad in "random:" "random:no-such-shape" "random:llama2-7b@x"; do
  "$CPU" train --model "$bad" --data "$T/data" --out "$T/bad" --steps 1 >"$T/o.txt" 2>&1
  rc=$?
  [ $rc != 0 ] && [ "$(wc -l <"$T/o.txt")" -le 2 ] && grep -q "random:" "$T/o.txt" && ok ||
    fail "train --model $bad refused in a line (rc $rc): $(cat "$T/o.txt")"
done
# a shape folder with its tokenizer (a model's folder without its weights): the random model takes
# that tokenizer, so generate needs no --tokenizer, and a recipe runs on it (shard, train, export,
# pack): the lock pins the folder's config.json and tokenizer.json, and the bundle verifies
mkdir -p "$T/shape"
cp "$T/cfg.json" "$T/shape/config.json" && cp "$TOK"/tokenizer.json "$TOK"/tokenizer_config.json "$T/shape/"
c=$("$CPU" generate --model "random:$T/shape@5" --prompt "Hello world" --max-tokens 6 --temperature 0 2>"$T/g.err")
[ -n "$c" ] && [ "$c" = "$a" ] && ok || fail "generate on random:FOLDER with its tokenizer.json: '$c' (with --tokenizer: '$a'): $(cat "$T/g.err")"
python3 -c 'import json
with open("'"$T"'/rec.jsonl", "w") as f:
    for i in range(24): f.write(json.dumps({"text": "Once upon a time a cat called %d liked fish and milk." % i}) + "\n")'
cat >"$T/rehearse.lua" <<'LUA'
local pl = require "potluck"
return pl.recipe { name = "rehearse", seed = 1, base = "random:shape@5",
  data = pl.pipeline { pl.source.jsonl { path = "rec.jsonl" } },
  lora = { r = 4, alpha = 8 }, train = { steps = 2, seq_len = 32, batch = 2 } }
LUA
if (cd "$T" && "$CPU" run rehearse.lua --out run --quiet >"$T/run.log" 2>&1 && "$CPU" pack run -o run.potluck >>"$T/run.log" 2>&1 &&
    "$CPU" verify run.potluck >>"$T/run.log" 2>&1); then ok
  [ -f "$T/run/export/adapter/adapter_model.safetensors" ] && grep -q '"base_model_name_or_path":[[:space:]]*"random:'"$T"'/shape@5"' "$T/run/export/adapter/adapter_config.json" &&
    ok || fail "the recipe on random:shape@5: no adapter naming the absolute spec: $(cat "$T/run/export/adapter/adapter_config.json" 2>&1 | head -5)"
  want=$(sha256sum "$T/shape/config.json" | cut -d' ' -f1)
  tar --zstd -xOf "$T/run.potluck" potluck.lock.json | python3 -c 'import json, sys
d = json.load(sys.stdin)
deps = d["predicate"]["buildDefinition"]["resolvedDependencies"]
got = {x["name"] + ":" + x["uri"]: x["digest"]["sha256"] for x in deps if x["name"].startswith("base/")}
assert got.get("base/config:config.json") == sys.argv[1] and "base/tokenizer:tokenizer.json" in got, got' "$want" &&
    ! grep -q "not found here" "$T/run.log" && ok || fail "the lock pins the random base's config.json and tokenizer: $(grep -i base "$T/run.log")"
else fail "a recipe on random:shape@5 (run, pack, verify): $(tail -3 "$T/run.log")"; fi
check_summary cli_model_random
