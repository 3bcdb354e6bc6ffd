#!/usr/bin/env bash
# tests/cli_bundle_reproduce.sh: `potluck reproduce`.
# Same size: pack a small real run, rerun it from the bundle on the same base
# and thread count: the adapter, results.json and the shards are
# byte-identical and the table says so.
# Another size: a run on SmolLM2-135M (the real GGUF) reproduced on a random
# SmolLM2-shaped model of 2 layers from `model init` with SmolLM2's
# tokenizer (written from the GGUF as tokenizer.json: the tokenizer check
# must see through the file format): the tokenizer and chat template are
# accepted, the plan is printed, the run finishes and the side-by-side table
# (also DIR/compare.md) shows both runs' settings, memory and losses.
# Refused with one line each: a base whose vocabulary differs (GPT-2's), one of
# the same size whose tokenizer behaves differently (the tiny GGUF's Llama-2
# vocabulary against a tokenizer.json where one token lost its text), a size
# whose memory plan exceeds this machine (a 65B-shaped config), a bad --size,
# a tampered bundle and an existing --out; the lock records the memory plan
# and the tokenizer fingerprint.
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/check.sh
source tests/bundle_run.sh
BIN=${POTLUCK_BIN:-$PWD/build/san/potluck}
SHARED=${POTLUCK_SHARED:-../shared}
export TINY=$SHARED/fixtures/gguf-tiny-llama/llama-2-tiny-random.gguf
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export POTLUCK_PLUGINS=$T/no-user-plugins

make_run "$T" && ok || fail "make_run: $(tail -5 "$T/run.log")"
"$BIN" pack "$T/run" -o "$T/b.potluck" >/dev/null 2>&1 && ok || fail "pack"
out=$("$BIN" reproduce "$T/b.potluck" --out "$T/r" 2>&1); rc=$?
table=$(grep '^|' <<<"$out")
[ $rc = 0 ] && grep -q "reproduce: identical" <<<"$out" && ok || fail "reproduce: rc=$rc $(tail -20 <<<"$out")"
for w in "adapter/adapter_model.safetensors" "adapter/adapter_config.json" "results.json (bytes)" "eval_loss" "base_eval_loss" \
         "final_train_loss" "data/train/shard-00000.h5" "data/eval/shard-00000.h5" "plugins (each step's sha256)"; do
  grep -F "| $w " <<<"$table" | grep -q "| identical |" && ok || fail "table row '$w': $table"
done
cmp -s "$T/run/export/adapter/adapter_model.safetensors" "$T/r/run/export/adapter/adapter_model.safetensors" && cmp -s "$T/run/results.json" "$T/r/run/results.json" \
  && ok || fail "adapter/results not byte-identical on disk"
echo "$table" | sed 's/^/note: /'

# the lock records the memory plan, the measured peak and the tokenizer's fingerprint
zstd -q -d -c "$T/b.potluck" | tar -xOf - potluck.lock.json > "$T/lock.json"
python3 - "$T/lock.json" <<'PY' && ok || fail "lock: memory_plan / rss_peak / base_tokenizer missing"
import json, sys
p = json.load(open(sys.argv[1]))["predicate"]["buildDefinition"]["internalParameters"]
mp = p["memory_plan"]
assert mp["total"] > 0 and mp["model"]["params"] > 0 and mp["seq_len"] == 64 and mp["lora_r"] == 4, mp
assert p["rss_peak"] > 0
assert len(p["base_tokenizer"]["fingerprint"]) == 64 and p["base_tokenizer"]["vocab"] == 32000
PY

# refusals
expect_clean_error "--size with bad characters" "$BIN" reproduce "$T/b.potluck" --out "$T/r4" --size '13b;x'
[ ! -e "$T/r4" ] && ok || fail "bad --size made DIR"
expect_clean_error "existing --out" "$BIN" reproduce "$T/b.potluck" --out "$T/r"
zstd -q -d -c "$T/b.potluck" | python3 -c "
import io, sys, tarfile
a = tarfile.open(fileobj=io.BytesIO(sys.stdin.buffer.read()))
with tarfile.open('$T/t.tar', 'w', format=tarfile.PAX_FORMAT) as b:
    for m in a.getmembers():
        d = a.extractfile(m).read()
        if m.name == 'recipe/recipe.lua': d = d.replace(b'steps = 3', b'steps = 4')
        b.addfile(m, io.BytesIO(d))"
zstd -q -f "$T/t.tar" -o "$T/t.potluck"
expect_clean_error "tampered recipe" "$BIN" reproduce "$T/t.potluck" --out "$T/r5"
[ ! -e "$T/r5/run" ] && ok || fail "tampered bundle ran"

# another size: SmolLM2-135M -> a random 2-layer model of its family
: "${POTLUCK_MODEL:?}"
S=$T/smol
mkdir -p "$S"
TINY=$POTLUCK_MODEL make_run "$S" && ok || fail "make_run on SmolLM2: $(tail -5 "$S/run.log")"
"$BIN" pack "$S/run" -o "$S/b.potluck" >/dev/null 2>&1 && ok || fail "pack SmolLM2 run"
"${POTLUCK_BIN_OPT:-build/opt/potluck}" model init --random --config "$POTLUCK_MODEL" --layers 2 --tokenizer "$POTLUCK_MODEL" \
  --out "$S/m2" >/dev/null 2>&1 && ok || fail "model init m2"
[ -f "$S/m2/tokenizer.json" ] && ! cmp -s "$S/m2/tokenizer.json" "$POTLUCK_MODEL" && ok || fail "model init --tokenizer GGUF: no tokenizer.json written"
out=$("$BIN" reproduce "$S/b.potluck" --base "$S/m2" --out "$S/r" 2>&1); rc=$?
[ $rc = 0 ] && ok || fail "reproduce at another size: rc=$rc $(tail -20 <<<"$out")"
grep -q "reproduce: tokenizer: the same as the bundle's base (49152 tokens" <<<"$out" && ok || fail "tokenizer line: $out"
grep -q "reproduce: chat template: the same as the bundle's base's" <<<"$out" && ok || fail "template line: $out"
grep -q "reproduce: plan at size 0.0354b: .* MiB (lora r 4, seq_len 64" <<<"$out" && ok || fail "plan line: $out"
table=$(grep '^|' <<<"$out")
row() { grep -F "| $1 " <<<"$table"; }
row layers | grep -q "| 30  *| 2  *|" && ok || fail "layers row: $(row layers)"
row "train.seq_len" | grep -q "| 64  *| 64  *|" && ok || fail "seq_len row: $(row train.seq_len)"
for k in eval_loss base_eval_loss final_train_loss "memory planned" "peak RSS measured"; do
  row "$k" | awk -F'|' '{ exit !($3 !~ /^ *- *$/ && $4 !~ /^ *- *$/) }' && ok || fail "row $k lacks a value: $(row "$k")"
done
row eval_loss | awk -F'|' '{ exit !($3 + 0 != $4 + 0) }' && ok || fail "eval_loss the same on both models?: $(row eval_loss)"
python3 - "$S/r/run/results.json" "$S/r/run/train/config.json" "$S/r/run/stages/train.json" <<'PY' && ok || fail "new run's results/config/plan"
import json, math, sys
r = json.load(open(sys.argv[1])); c = json.load(open(sys.argv[2])); t = json.load(open(sys.argv[3]))
assert r["steps"] == 3 and math.isfinite(r["eval_loss"]), r
assert r.get("size") == "0.0354b", r
assert c["lora"]["r"] == 4 and c["train"]["seq_len"] == 64
assert t["memory_plan"]["model"]["num_hidden_layers"] == 2
PY
cmp -s <(grep '^|' <<<"$out") "$S/r/compare.md" && ok || fail "compare.md is not the printed table"
echo "$table" | sed 's/^/note: /'
# --size picks the recipe's scale entry: QLoRA paper defaults from 33B halve lr
out=$("$BIN" reproduce "$S/b.potluck" --base "$S/m2" --size 33b --out "$S/r33" 2>&1); rc=$?
[ $rc = 0 ] && grep -F "| train.lr " <<<"$out" | grep -q "| 0.001  *| 0.0005  *|" && ok || fail "--size 33b: rc=$rc $(grep -F '| train.lr' <<<"$out") $(tail -3 <<<"$out")"

# refused: another vocabulary, the same size but other behaviour, too big a plan
err=$("$BIN" reproduce "$S/b.potluck" --base "$SHARED/fixtures/tokenizers/gpt2" --out "$S/x1" 2>&1 >/dev/null); rc=$?
[ $rc != 0 ] && grep -q "its tokenizer has 50257 tokens, the bundle's base 49152" <<<"$err" && [ ! -e "$S/x1/run" ] && ok || fail "gpt2 vocabulary: rc=$rc $err"
M1=$T/m1
"${POTLUCK_BIN_OPT:-build/opt/potluck}" model init --random --config "$TINY" --tokenizer "$SHARED/fixtures/tokenizers/tiny-random-LlamaForCausalLM" \
  --out "$M1" >/dev/null 2>&1 && ok || fail "model init m1"
mkdir -p "$T/m1run"
TINY=$M1 make_run "$T/m1run" && ok || fail "make_run on m1: $(tail -5 "$T/m1run/run.log")"
"$BIN" pack "$T/m1run/run" -o "$T/m1.potluck" >/dev/null 2>&1 && ok || fail "pack m1 run"
err=$("$BIN" reproduce "$T/m1.potluck" --base "$TINY" --out "$T/x2" 2>&1 >/dev/null); rc=$?
[ $rc != 0 ] && grep -q "has the bundle's vocabulary size (32000) but not its behaviour" <<<"$err" && [ ! -e "$T/x2/run" ] && ok || fail "behaviour: rc=$rc $err"
mkdir -p "$T/big"
cp "$M1"/tokenizer.json "$M1"/tokenizer_config.json "$T/big/"
python3 - "$M1/config.json" "$T/big/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c.update(hidden_size=8192, intermediate_size=22016, num_hidden_layers=80, num_attention_heads=64, num_key_value_heads=64, head_dim=128)
json.dump(c, open(sys.argv[2], "w"))
PY
err=$("$BIN" reproduce "$T/m1.potluck" --base "$T/big" --size 65b --out "$T/x3" 2>&1 >/dev/null); rc=$?
[ $rc != 0 ] && grep -q "the training at size 65b needs .* GiB, more than this machine's .*weights alone take" <<<"$err" && [ ! -e "$T/x3/run" ] \
  && ok || fail "65b plan: rc=$rc $err"
expect_clean_error "plan too big" "$BIN" reproduce "$T/m1.potluck" --base "$T/big" --size 65b --out "$T/x4"
# the base the run recorded changed since: without --base nothing runs
python3 -c "
import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[-100]^=1; open(p,'wb').write(b)" "$M1/model.safetensors"
err=$("$BIN" reproduce "$T/m1.potluck" --out "$T/x5" 2>&1 >/dev/null); rc=$?
[ $rc != 0 ] && grep -q "is not the bundle's base: a different model (to reproduce at another size, give it with --base PATH)" <<<"$err" \
  && [ ! -e "$T/x5/run" ] && ok || fail "changed recorded base: rc=$rc $err"

check_summary cli_bundle_reproduce
