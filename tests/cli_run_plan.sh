#!/usr/bin/env bash
# tests/cli_run_plan.sh: `potluck run` plans the training's memory before its
# first stage (plugins/pipeline.c check_memory, trainer/run_plan.c):
#  - --dry-run writes plan.json and memory_plan.json and runs nothing;
#  - recipes/guanaco.lua --size 33b on a LLaMA-33B-shaped model (its
#    config.json and a Llama-2 tokenizer: the plan reads the header only)
#    resolves lr 1e-4 and dropout 0.05 and plans the CPU training: more than
#    this machine has (NF4 weights, fp32 embeddings and head, r 64 AdamW), so
#    the run is refused before any data stage, in one line naming what to
#    change; --no-memory-check lets the dry run through; the plan's total is
#    the one `potluck plan` prints for the same settings;
#  - a plan whose weights alone exceed the machine (LLaMA-65B) says so;
#  - --to shard (no training) is not refused;
#  - --backend cuda (build/emu/potluck): the CUDA plan's device total against --gpu-mem or
#    train.gpu_mem before the first stage, else against the device's memory at the train stage.
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/check.sh
BIN=${POTLUCK_BIN:-build/san/potluck}
SHARED=${POTLUCK_SHARED:-../shared}
TOK=$SHARED/fixtures/tokenizers/tiny-random-LlamaForCausalLM
TINY=$SHARED/fixtures/gguf-tiny-llama/llama-2-tiny-random.gguf
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export POTLUCK_PLUGINS=$T/no-user-plugins

shape() { # shape DIR hidden intermediate layers heads
  mkdir -p "$1"; cp "$TOK"/tokenizer.json "$TOK"/tokenizer_config.json "$1/"
  python3 - "$1/config.json" "$2" "$3" "$4" "$5" <<'PY'
import json, sys
p, h, f, l, n = sys.argv[1], *map(int, sys.argv[2:])
json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32000, "hidden_size": h,
           "intermediate_size": f, "num_hidden_layers": l, "num_attention_heads": n, "num_key_value_heads": n,
           "max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
           "tie_word_embeddings": False, "torch_dtype": "float16"}, open(p, "w"))
PY
}
shape "$T/llama-33b" 6656 17920 60 52
shape "$T/llama-65b" 8192 22016 80 64

# guanaco at 33b: resolved settings and the plan are written, the run is refused before its first stage
out=$("$BIN" run recipes/guanaco.lua --size 33b --base "$T/llama-33b" --out "$T/g33" --dry-run 2>"$T/err"); rc=$?
err=$(cat "$T/err")
[ $rc = 1 ] && [ "$(grep -c . <<<"$err")" = 1 ] && grep -q "^potluck: train: the training at size 33b needs .* GiB (weights .* GiB, activations .*), more than this machine's .*: lower train.seq_len or lora.r in the recipe's scale\[\"33b\"\]" <<<"$err" \
  && ok || fail "guanaco 33b refusal: rc=$rc $err"
grep -q "plan: training needs .* does NOT fit" <<<"$out" && ok || fail "plan line: $out"
[ ! -e "$T/g33/stages" ] && ok || fail "a stage ran before the refusal: $(ls "$T/g33/stages")"
python3 - "$T/g33" <<'PY' && ok || fail "plan.json / memory_plan.json of guanaco 33b"
import json, sys, os
d = sys.argv[1]
p = json.load(open(os.path.join(d, "plan.json")))
assert p["size"] == "33b" and p["train"]["lr"] == 1e-4 and p["lora"]["dropout"] == 0.05, (p["train"], p["lora"])
m = json.load(open(os.path.join(d, "memory_plan.json")))
assert m["fits"] is False and m["size"] == "33b" and m["total"] > m["machine_memory"], m
assert m["lora_r"] == 64 and m["seq_len"] == p["train"]["seq_len"] and m["base"] == "nf4", m
assert m["model"]["num_hidden_layers"] == 60 and 3.2e10 < m["model"]["params"] < 3.3e10, m["model"]
print("note: guanaco 33b on the CPU backend plans %.2f GiB (weights %.2f GiB) against %.2f GiB here"
      % (m["total"] / 2**30, m["categories"]["weights"] / 2**30, m["machine_memory"] / 2**30))
PY
# the same total as `potluck plan` with the same settings
want=$(python3 -c "import json,sys; print(int(json.load(open(sys.argv[1]))['total']))" "$T/g33/memory_plan.json")
got=$("$BIN" plan --model "$T/llama-33b" --seq-len "$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['train']['seq_len'])" "$T/g33/plan.json")" \
      --lora-r 64 --checkpointing --json 2>/dev/null | python3 -c "import json,sys; print(int(json.load(sys.stdin)['total']))")
[ -n "$want" ] && [ "$want" = "$got" ] && ok || fail "memory_plan.json total $want vs potluck plan $got"
"$BIN" run recipes/guanaco.lua --size 33b --base "$T/llama-33b" --out "$T/g33b" --dry-run --no-memory-check >/dev/null 2>&1 \
  && ok || fail "--no-memory-check --dry-run should pass"
[ ! -e "$T/g33b/stages" ] && [ -f "$T/g33b/memory_plan.json" ] && ok || fail "dry run ran a stage or wrote no plan"
expect_clean_error "guanaco 33b without --dry-run" "$BIN" run recipes/guanaco.lua --size 33b --base "$T/llama-33b" --out "$T/g33c"
[ ! -e "$T/g33c/stages" ] && ok || fail "refused run left stages"

# 65b: the weights alone do not fit
err=$("$BIN" run recipes/guanaco.lua --size 65b --base "$T/llama-65b" --out "$T/g65" 2>&1 >/dev/null); rc=$?
[ $rc = 1 ] && grep -q "and the base model's weights alone take .* GiB: use a smaller model" <<<"$err" && ok || fail "65b: rc=$rc $err"

# a small recipe: --dry-run fits and runs nothing; --to shard on the 65b shape is not refused (no training)
mkdir -p "$T/rec"
printf 'the cat sat on the mat and looked at the hills\n%.0s' $(seq 1 30) >"$T/rec/c.txt"
cat >"$T/rec/r.lua" <<'LUA'
local pl = require "potluck"
return pl.recipe { name = "small", seed = 1,
  data = pl.pipeline { pl.source.text { path = "c.txt", unit = "line" } },
  lora = { r = 2, alpha = 4 }, train = { steps = 1, seq_len = 32 } }
LUA
out=$("$BIN" run "$T/rec/r.lua" --base "$TINY" --out "$T/s1" --dry-run 2>&1); rc=$?
[ $rc = 0 ] && grep -q "dry run: .* no stage ran" <<<"$out" && [ ! -e "$T/s1/stages" ] && ok || fail "small dry run: rc=$rc $out"
python3 -c "import json,sys; m=json.load(open(sys.argv[1])); assert m['fits'] is True and m['total'] > 0" "$T/s1/memory_plan.json" \
  && ok || fail "small memory_plan.json"
"$BIN" run "$T/rec/r.lua" --base "$T/llama-65b" --out "$T/s2" --to shard --quiet >"$T/o" 2>&1; rc=$?
# the shard stage needs only the tokenizer; with --to shard nothing trains, so nothing is refused
[ $rc = 0 ] && [ -f "$T/s2/data/train/manifest.json" ] && ok || fail "--to shard on a big model: rc=$rc $(cat "$T/o")"

# --backend cuda on the emulated build: the run plans the CUDA backend's device memory (the same device total
# as potluck plan --backend cuda); a --gpu-mem (or the recipe's train.gpu_mem) below it is refused before the
# first stage, naming the recipe setting that fits; exactly the plan passes; with no cap, the train stage
# checks the plan against the device's memory (the emulator's PL_EMU_MEM) when it opens the backend, and
# refuses before it trains
EMU=${POTLUCK_BIN_EMU:-build/emu/potluck}
if ! [ -x "$EMU" ]; then fail "$EMU is not built (make emu)"; check_summary cli_run_plan; exit 1; fi
out=$("$EMU" run "$T/rec/r.lua" --base "$TINY" --backend cuda --out "$T/c0" --dry-run 2>&1); rc=$?
need=$(python3 -c "import json,sys; m=json.load(open(sys.argv[1])); assert m['backend'] == 'cuda' and m['fits'] is None; print(int(m['device_total']))" "$T/c0/memory_plan.json" 2>/dev/null)
dneed=$(python3 -c "import json,sys; m=json.load(open(sys.argv[1])); assert m['device_need'] == m['device_total'] + m['runtime_reserve'] > m['device_total']; print(int(m['device_need']))" "$T/c0/memory_plan.json" 2>/dev/null)
[ $rc = 0 ] && [ -n "$need" ] && grep -q "plan: training on the cuda backend needs .* of device memory (weights .*); the train stage checks it against the device's memory" <<<"$out" \
  && ok || fail "cuda dry run: rc=$rc need='$need' $out"
got=$("$BIN" plan --model "$TINY" --backend cuda --seq-len 32 --lora-r 2 --json 2>/dev/null | python3 -c "import json,sys; print(int(json.load(sys.stdin)['device_total']))")
[ -n "$need" ] && [ "$need" = "$got" ] && ok || fail "memory_plan.json device_total $need vs potluck plan --backend cuda $got"
echo "note: the small recipe's CUDA plan: $need device bytes, $dneed with the CUDA runtime's reserve"
err=$("$EMU" run "$T/rec/r.lua" --base "$TINY" --backend cuda --gpu-mem $((dneed - 1)) --out "$T/c1" 2>&1 >"$T/c1.out"); rc=$?
echo "note: --gpu-mem $((dneed - 1)): $err"
[ $rc = 1 ] && [ "$(grep -c . <<<"$err")" = 1 ] && grep -q "^potluck: train: --gpu-mem .*: the run's CUDA plan needs .* of device memory, .* of it workspace; .*train.seq_len = 16 fits" <<<"$err" \
  && grep -q "plan: training on the cuda backend needs .* of --gpu-mem .*: does NOT fit" "$T/c1.out" && ok || fail "--gpu-mem below the plan: rc=$rc $err"
[ ! -e "$T/c1/stages" ] && python3 -c "import json,sys; m=json.load(open(sys.argv[1])); assert m['fits'] is False and m['gpu_mem'] == $dneed - 1" "$T/c1/memory_plan.json" \
  && ok || fail "refused cuda run: stages ran or memory_plan.json wrong"
"$EMU" run "$T/rec/r.lua" --base "$TINY" --backend cuda --gpu-mem "$dneed" --out "$T/c2" --dry-run >/dev/null 2>&1 &&
  python3 -c "import json,sys; assert json.load(open(sys.argv[1]))['fits'] is True" "$T/c2/memory_plan.json" && ok || fail "--gpu-mem exactly the plan"
sed "s/train = { steps = 1, seq_len = 32 }/train = { steps = 1, seq_len = 32, gpu_mem = \"$((dneed - 1))\" }/" "$T/rec/r.lua" >"$T/rec/r2.lua"
err=$("$EMU" run "$T/rec/r2.lua" --base "$TINY" --backend cuda --out "$T/c3" 2>&1 >/dev/null); rc=$?
[ $rc = 1 ] && grep -q "train: train.gpu_mem .*: the run's CUDA plan needs" <<<"$err" && [ ! -e "$T/c3/stages" ] && ok || fail "train.gpu_mem: rc=$rc $err"
expect_clean_error "--gpu-mem without cuda" "$BIN" run "$T/rec/r.lua" --base "$TINY" --gpu-mem 1GiB --out "$T/c4"
expect_clean_error "--gpu-mem bad size" "$EMU" run "$T/rec/r.lua" --base "$TINY" --backend cuda --gpu-mem 12XB --out "$T/c4"
err=$(PL_EMU_MEM=$((dneed - 1)) "$EMU" run "$T/rec/r.lua" --base "$TINY" --backend cuda --out "$T/c5" --quiet 2>&1 >/dev/null); rc=$?
echo "note: device memory $((dneed - 1)) (PL_EMU_MEM): $err"
[ $rc = 1 ] && grep -q "train: the device's .*: the run's CUDA plan needs .* of device memory" <<<"$err" && [ -e "$T/c5/data/train/manifest.json" ] &&
  [ ! -e "$T/c5/train/metrics.jsonl" ] && ok || fail "the device's memory at the train stage: rc=$rc $err"
check_summary cli_run_plan
