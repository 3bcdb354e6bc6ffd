#!/usr/bin/env bash
# cli_plan.sh: `potluck plan` (cli/cmd_plan.c, trainer/plan.h).
#  - the plan of a model given by path equals what `potluck train` measures
#    with the same flags (metrics.jsonl mem_peak, every category, byte for
#    byte), with and without checkpointing, for a QLoRA and a full run;
#  - presets: the list, Llama-2 7B's QLoRA breakdown (LoRA parameters as
#    PEFT counts them, NF4 base bytes), --json parses and adds up;
#  - --fit seq / --fit batch: the answer fits in --mem and one more does not;
#  - --generate: the KV cache is 2 * layers * sequences * ctx * kv dim * 4; with --backend cuda
#    * 2 (bf16), the device copies those of the training plan, the device total the tagged sum;
#  - --backend cuda: bf16 activations, the fused head, the base's device copies, the
#    device total against --mem, step times per GPU;
#  - bad inputs: one line "potluck: ..." each, non-zero exit, no crash.
set -u
cd "$(dirname "$0")/.."
source tests/check.sh
BIN=${POTLUCK_BIN:?}
S=${POTLUCK_SHARED:?}/fixtures
ST=$S/stories260K/stories260K.bin
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
PY=python3

# --help
if "$BIN" plan --help >"$tmp/h.txt" 2>&1 && grep -q -- '--fit seq|batch' "$tmp/h.txt" && grep -q -- '--mem SIZE' "$tmp/h.txt" \
   && grep -q -- '--generate' "$tmp/h.txt"; then ok; else fail "plan --help: $(cat "$tmp/h.txt")"; fi
if "$BIN" help | grep -q '^  plan '; then ok; else fail "potluck help does not list plan"; fi

# plan == potluck train's measured peaks (metrics.jsonl), same flags
i=0
for flags in "--lora-r 8 --seq-len 64" "--lora-r 4 --lora-targets q,v,down --seq-len 40 --checkpointing" \
             "--lora-r 0 --seq-len 32" "--lora-r 8 --base as-loaded --seq-len 48 --checkpointing"; do
  i=$((i + 1))
  # shellcheck disable=SC2086
  "$BIN" train --model "$ST" --tokenizer "$S/stories260K/tok512.bin" --text "$S/text/tinystories_sample.txt" \
    --out "$tmp/run$i" --steps 2 --eval-every 0 --save-every 0 $flags >"$tmp/tr$i.txt" 2>&1 \
    || { fail "train $flags: $(tail -3 "$tmp/tr$i.txt")"; continue; }
  # shellcheck disable=SC2086
  "$BIN" plan --model "$ST" $flags --json >"$tmp/p$i.json" 2>"$tmp/p$i.err" || { fail "plan $flags: $(cat "$tmp/p$i.err")"; continue; }
  r=$($PY - "$tmp/run$i/metrics.jsonl" "$tmp/p$i.json" <<'EOF'
import json, sys
last = [json.loads(l) for l in open(sys.argv[1]) if l.strip()][-1]["mem_peak"]
plan = json.load(open(sys.argv[2]))["tagged"]
bad = [f"{k}: plan {plan[k]} measured {last[k]}" for k in last if plan.get(k) != last[k]]
print("; ".join(bad) if bad else "same")
EOF
)
  if [ "$r" = same ]; then ok; else fail "plan vs potluck train ($flags): $r"; fi
done

# presets
"$BIN" plan --preset list >"$tmp/list.txt" 2>&1
n=$(grep -c . "$tmp/list.txt")
if [ "$n" -ge 16 ] && grep -q '^llama2-7b ' "$tmp/list.txt" && grep -q '^yi-34b ' "$tmp/list.txt" \
   && grep -q '^qwen2.5-32b ' "$tmp/list.txt"; then ok; else fail "preset list ($n): $(cat "$tmp/list.txt")"; fi
for p in $(awk '{print $1}' "$tmp/list.txt"); do
  if "$BIN" plan --preset "$p" --json >"$tmp/pp.json" 2>&1 && $PY -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['total'] > 1e9" "$tmp/pp.json"; then ok
  else fail "preset $p: $(head -c 300 "$tmp/pp.json")"; fi
done
if "$BIN" plan --preset llama2-7b --seq-len 512 --mem 24GiB >"$tmp/7b.txt" 2>&1 && grep -q '^weights ' "$tmp/7b.txt" \
   && grep -q '^activations ' "$tmp/7b.txt" && grep -q '^optimizer ' "$tmp/7b.txt" && grep -q '^kv cache ' "$tmp/7b.txt" \
   && grep -q '^precision:  base layers NF4 (blocksize 64, double-quantized absmax)' "$tmp/7b.txt" \
   && grep -q '^fits in 24.00 GiB: yes' "$tmp/7b.txt" && grep -q '(224 modules, 39976960 LoRA parameters)' "$tmp/7b.txt"; then ok
else fail "llama2-7b text: $(cat "$tmp/7b.txt")"; fi
if "$BIN" plan --preset llama2-7b --seq-len 512 --mem 4GiB | grep -q '^fits in 4.00 GiB: no'; then ok; else fail "7B does not fit 4 GiB"; fi
# --json adds up: categories sum to the total, buffers sum to the categories, LoRA = 4 bytes x params
"$BIN" plan --preset llama2-7b --seq-len 512 --json >"$tmp/7b.json" 2>&1
r=$($PY - "$tmp/7b.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
errs = []
if sum(d["categories"].values()) != d["total"]: errs.append("categories do not sum to total")
if sum(d["tagged"].values()) != d["tagged_total"]: errs.append("tagged do not sum")
if d["tagged_total"] + d["model_owned"] + d["file_mapped"] != d["total"]: errs.append("held parts do not sum")
for c, v in d["categories"].items():
    s = sum(b["bytes"] for b in d["buffers"] if b["category"] == c)
    if s != v: errs.append(f"{c}: buffers {s} != {v}")
lw = [b for b in d["buffers"] if b["name"] == "lora_weights"][0]["bytes"]
if lw != 4 * 39976960: errs.append(f"lora weights {lw}")
base = [b for b in d["buffers"] if b["name"] == "base_layers"][0]
# NF4: 6,476,005,376 layer weights: packed n/2 + one absmax code per 64 + fp32 nested per 256 blocks (+ a header per tensor)
n = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008)
if not (n // 2 + n // 64 <= base["bytes"] <= n // 2 + n // 64 + n // 64 // 256 * 4 + 224 * 2048): errs.append(f"nf4 base {base['bytes']}")
if d["train"]["checkpointing"] or d["activations_with_checkpointing"] * 5 > d["categories"]["activations"]:
    errs.append("checkpointing saving")
print("; ".join(errs) if errs else "ok")
EOF
)
if [ "$r" = ok ]; then ok; else fail "7B json: $r"; fi

# --fit seq / batch: the answer fits, one more does not
for f in seq batch; do
  ans=$("$BIN" plan --preset llama2-13b --fit $f --mem 24GiB --seq-len 512 --json | $PY -c "import json,sys; print(json.load(sys.stdin)['largest'])")
  opt=$([ $f = seq ] && echo --seq-len || echo --micro-batch)
  f1=$("$BIN" plan --preset llama2-13b --seq-len 512 $opt "$ans" --mem 24GiB --json | $PY -c "import json,sys; print(json.load(sys.stdin)['fits'])")
  f2=$("$BIN" plan --preset llama2-13b --seq-len 512 $opt $((ans + 1)) --mem 24GiB --json | $PY -c "import json,sys; print(json.load(sys.stdin)['fits'])")
  if [ "$ans" -gt 0 ] && [ "$f1" = True ] && [ "$f2" = False ]; then ok; echo "note: llama2-13b in 24 GiB: --fit $f -> $ans"
  else fail "--fit $f: $ans ($f1 / $f2)"; fi
done
if "$BIN" plan --preset llama2-70b --fit seq --mem 8GiB | grep -q 'nothing fits'; then ok; else fail "70B in 8 GiB should not fit"; fi

# generation: KV cache of stories260K (5 layers, kv dim 32), 2 sequences of 128
kv=$("$BIN" plan --model "$ST" --generate --ctx 128 --batch 2 --json | $PY -c "import json,sys; print(json.load(sys.stdin)['categories']['kvcache'])")
if [ "$kv" = $((2 * 5 * 2 * 128 * 32 * 4)) ]; then ok; else fail "generate kv cache $kv"; fi
if "$BIN" plan --preset llama2-7b --generate --ctx 4096 --batch 1 --mem 24GiB | grep -q '^kv cache  *4294967296 '; then ok
else fail "llama2-7b kv cache at 4096: $("$BIN" plan --preset llama2-7b --generate --ctx 4096 2>&1)"; fi

# generation on the CUDA backend: the bf16 KV cache (half the CPU's), the base's device copies (the training
# plan's dev_* buffers for the same base as stored), bf16 decode buffers + the head's (sequences, V) bf16 output,
# cuBLASLt's workspace; the device total is the tagged sum and is what --mem is checked against
G=(plan --model "$ST" --generate --ctx 128 --batch 2)
if "$BIN" "${G[@]}" --backend cuda --json >"$tmp/gc.json" 2>"$tmp/g.err" && "$BIN" "${G[@]}" --json >"$tmp/gcpu.json" 2>>"$tmp/g.err" &&
   "$BIN" plan --model "$ST" --backend cuda --base as-loaded --lora-r 8 --seq-len 16 --json >"$tmp/gt.json" 2>>"$tmp/g.err" &&
   "$BIN" "${G[@]}" --backend cuda --mem 1MiB --json >"$tmp/gsmall.json" 2>>"$tmp/g.err" &&
   $PY - "$tmp/gc.json" "$tmp/gcpu.json" "$tmp/gt.json" "$tmp/gsmall.json" <<'PYEOF' >"$tmp/g.out" 2>&1
import json, sys
g, c, t, small = (json.load(open(p)) for p in sys.argv[1:5])
L, D, V, n, T = t["model"]["num_hidden_layers"], t["model"]["hidden_size"], t["model"]["vocab_size"], 2, 2 * 128
assert g["backend"] == "cuda" and c["backend"] == "cpu" and g["prefill_tokens"] == T
kvd = 32
assert g["categories"]["kvcache"] == 2 * L * n * 128 * kvd * 2 and 2 * g["categories"]["kvcache"] == c["categories"]["kvcache"]
tg = g["tagged"]
assert set(tg) == {"weights", "activations", "gradients", "optimizer", "workspace", "kvcache"}, tg
assert tg["gradients"] == 0 and tg["optimizer"] == 0 and tg["kvcache"] == g["categories"]["kvcache"]
assert g["device_total"] == sum(tg.values()) == g["tagged_total"], (g["device_total"], tg)
dev = sum(b["bytes"] for b in t["buffers"] if b["name"] in ("dev_base", "dev_embedding", "dev_lm_head", "dev_norms"))
assert g["device_weights"] == tg["weights"] == dev > 0, (g["device_weights"], dev)
assert g["gemm_workspace"] == 32 << 20 and g["scratch"] == 0  # as stored: resident bf16 copies, no dequantized scratch
ca, ga = c["categories"]["activations"], g["categories"]["activations"]
assert ga == (ca - 16 * T - 4 * n * D) // 2 + 2 * n * D + 16 * T + 2 * n * V, (ca, ga)
assert g["total"] == g["device_total"] + g["logits"] + g["weights_model_owned"] + g["weights_file_mapped"]
assert "fits" not in g and small["fits"] is False and small["mem"] == 1 << 20
print("generation of 2 x 128 on stories260K: device %d bytes (weights %d, kv %d, activations %d, workspace %d)"
      % (g["device_total"], tg["weights"], tg["kvcache"], tg["activations"], tg["workspace"]))
PYEOF
then ok; echo "note: cuda $(cat "$tmp/g.out")"; else fail "plan --generate --backend cuda: $(cat "$tmp/g.err" "$tmp/g.out" | tail -5)"; fi
"$BIN" "${G[@]}" --backend cuda --mem 1MiB >"$tmp/gc.txt" 2>&1
dt=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['device_total'])" "$tmp/gc.json" 2>/dev/null)
if grep -q "^  on the device (tagged by the CUDA backend, pl_mem_peak): $dt (" "$tmp/gc.txt" &&
   grep -q '^kv cache  *[0-9][0-9]*  .*K and V bf16' "$tmp/gc.txt" && grep -q '^dev weights  *[0-9]' "$tmp/gc.txt" &&
   grep -q 'fits in 1.00 MiB of device memory: no' "$tmp/gc.txt"; then ok; else fail "cuda generate text: $(cat "$tmp/gc.txt")"; fi
if "$BIN" plan --preset llama2-7b --generate --ctx 4096 --batch 1 --backend cuda --mem 24GiB >"$tmp/g7.txt" 2>&1 &&
   grep -q '^kv cache  *2147483648 ' "$tmp/g7.txt" && grep -q 'fits in 24.00 GiB of device memory: yes' "$tmp/g7.txt"; then ok
else fail "llama2-7b cuda generation at 4096: $(cat "$tmp/g7.txt")"; fi

# other model kinds by path, and potluck train's other flags are accepted
if "$BIN" plan --model "$S/gguf-tiny-llama/llama-2-tiny-random.gguf" --seq-len 32 --lr 1e-3 --steps 5 --out /nonexistent \
     | grep -q 'F16'; then ok; else fail "plan on the tiny GGUF"; fi
if [ -n "${POTLUCK_REFS:-}" ] && [ -d "$POTLUCK_REFS/peft_ref/base" ]; then
  if "$BIN" plan --model "$POTLUCK_REFS/peft_ref/base/config.json" --seq-len 16 | grep -q 'hidden 64'; then ok
  else fail "plan on a config.json"; fi
fi
printf '{"model": "%s", "train": {"seq_len": 64}, "lora": {"r": 8}}' "$ST" >"$tmp/cfg.json"
a=$("$BIN" plan --config "$tmp/cfg.json" --json | $PY -c "import json,sys; print(json.load(sys.stdin)['tagged'])")
b=$("$BIN" plan --model "$ST" --seq-len 64 --lora-r 8 --json | $PY -c "import json,sys; print(json.load(sys.stdin)['tagged'])")
if [ -n "$a" ] && [ "$a" = "$b" ]; then ok; else fail "--config: $a vs $b"; fi

# bad inputs
mkdir -p "$tmp/empty"
printf 'not a model at all, just some text here\n' >"$tmp/text.bin"
expect_clean_error "unknown preset" "$BIN" plan --preset llama9-1b
if "$BIN" plan --preset llama9-1b 2>&1 | grep -q 'known: llama2-7b, .*yi-34b'; then ok; else fail "unknown preset lists the known ones"; fi
expect_clean_error "not a model (text)" "$BIN" plan --model "$tmp/text.bin"
expect_clean_error "not a model (folder)" "$BIN" plan --model "$tmp/empty"
expect_clean_error "missing path" "$BIN" plan --model "$tmp/nope"
expect_clean_error "neither model nor preset" "$BIN" plan
expect_clean_error "both model and preset" "$BIN" plan --model "$ST" --preset llama2-7b
expect_clean_error "negative seq" "$BIN" plan --preset llama2-7b --seq-len -5
expect_clean_error "negative rank" "$BIN" plan --preset llama2-7b --lora-r -1
expect_clean_error "negative mem" "$BIN" plan --preset llama2-7b --mem -2GiB
expect_clean_error "zero mem" "$BIN" plan --preset llama2-7b --mem 0
expect_clean_error "bad mem unit" "$BIN" plan --preset llama2-7b --mem 24XB
expect_clean_error "fit without mem" "$BIN" plan --preset llama2-7b --fit seq
expect_clean_error "fit what" "$BIN" plan --preset llama2-7b --fit layers --mem 1GiB
expect_clean_error "micro-batch 0" "$BIN" plan --preset llama2-7b --micro-batch 0
expect_clean_error "ctx negative" "$BIN" plan --preset llama2-7b --generate --ctx -1
expect_clean_error "unknown backend" "$BIN" plan --preset llama2-7b --backend tpu
# the CUDA plan of Llama-2 7B QLoRA: bf16 activations (half the CPU plan's), the fused head (no (T,V) logits),
# the device copies of the NF4 base, fits 24 GiB, step times for the six GPUs, --fit seq against the device total
if "$BIN" plan --preset llama2-7b --backend cuda --lora-r 64 --seq-len 512 --json >"$tmp/cuda.json" 2>"$tmp/cuda.err" &&
   "$BIN" plan --preset llama2-7b --lora-r 64 --seq-len 512 --json >"$tmp/cpu.json" 2>>"$tmp/cuda.err" &&
   "$BIN" plan --preset llama2-7b --backend cuda --lora-r 64 --seq-len 512 --mem 24GiB >"$tmp/cuda.txt" 2>>"$tmp/cuda.err" &&
   $PY - "$tmp/cuda.json" "$tmp/cpu.json" <<'PYEOF' >"$tmp/cuda.out" 2>&1
import json, sys
g, c = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
b = {x["name"]: x for x in g["buffers"]}
cb = {x["name"]: x for x in c["buffers"]}
assert g["train"]["backend"] == "cuda" and c["train"]["backend"] == "cpu"
assert b["x_in"]["bytes"] * 2 == cb["x_in"]["bytes"], (b["x_in"], cb["x_in"])
assert "logits" not in b and b["lse"]["bytes"] == 4 * 512 and cb["logits"]["bytes"] == 4 * 512 * 32000
assert b["dev_base"]["held"] == "backend" and b["dev_base"]["bytes"] > 3.3e9, b["dev_base"]
assert b["gemm_ws"]["bytes"] == 32 << 20
assert g["device_total"] == g["tagged_total"] and g["device_total"] < 24 * 2**30
st = {x["gpu"]: x for x in g["step_time"]}
assert len(st) == 6 and st["RTX 4090"]["fits"] and st["H100 SXM"]["seconds"] < st["RTX 3090"]["seconds"]
print("device %.2f GiB; RTX 4090 %.2f s/step" % (g["device_total"] / 2**30, st["RTX 4090"]["seconds"]))
PYEOF
then ok; echo "note: cuda plan of llama2-7b r 64 seq 512: $(cat "$tmp/cuda.out")"
else fail "cuda plan: $(cat "$tmp/cuda.err" "$tmp/cuda.out" 2>/dev/null | tail -5)"; fi
grep -q "fits in 24.00 GiB of device memory: yes" "$tmp/cuda.txt" && grep -q "RTX 3090" "$tmp/cuda.txt" && ok ||
  fail "cuda plan text: $(tail -12 "$tmp/cuda.txt")"
# LLaMA 33B, QLoRA's settings (r 64, seq 512, checkpointing): over 24 GiB of device memory, under it with
# the AdamW state paged to the host (the QLoRA paper trained it on one 24 GB card with paged optimizers)
P33=(plan --preset llama-33b --backend cuda --lora-r 64 --seq-len 512 --checkpointing --mem 24GiB)
a=$("$BIN" "${P33[@]}" 2>&1); b=$("$BIN" "${P33[@]}" --paged-optim 2>&1)
grep -q "device memory: no" <<<"$a" && grep -q "device memory: yes" <<<"$b" && grep -q "paged AdamW state" <<<"$b" && ok ||
  fail "33B paged: $(grep 'fits in' <<<"$a") / $(grep 'fits in' <<<"$b")"
echo "note: llama-33b r 64 seq 512 checkpointing: $(grep 'fits in' <<<"$a"); --paged-optim: $(grep 'fits in' <<<"$b")"
# long context: Llama-3.1 8B, r 32 all-linear, batch 1, in 24 GiB of device memory (Unsloth reports 78,475
# tokens for this case on 24 GB): checkpointing alone, with the layer inputs offloaded to the host, and with
# the MLP in chunks of 4096 tokens as well
P8=(plan --preset llama3.1-8b --backend cuda --lora-r 32 --lora-targets all-linear --checkpointing --mem 24GiB --fit seq --json)
fitn() { "$BIN" "${P8[@]}" "$@" 2>"$tmp/fit.err" | $PY -c 'import json,sys; d=json.load(sys.stdin); print(d["largest"] if d["device_total"] <= 24 * 2**30 else -1)'; }
f0=$(fitn); f1=$(fitn --offload-checkpoints); f2=$(fitn --offload-checkpoints --mlp-chunk 4096)
echo "note: llama3.1-8b r 32, the longest sequence in 24 GiB: $f0 tokens with checkpointing, $f1 with --offload-checkpoints, $f2 with --mlp-chunk 4096 as well"
[ -n "$f0" ] && [ -n "$f1" ] && [ -n "$f2" ] && [ "$f0" -gt 0 ] && [ "$f1" -gt "$f0" ] && [ "$f2" -gt 78475 ] && ok ||
  fail "long-context fits: '$f0' '$f1' '$f2' $(cat "$tmp/fit.err")"
"$BIN" plan --preset llama3.1-8b --backend cuda --lora-r 32 --checkpointing --offload-checkpoints --mlp-chunk 4096 \
  --seq-len 65536 >"$tmp/lc.txt" 2>&1 && grep -q "gate_proj output (chunk,H)" "$tmp/lc.txt" && grep -q "^  x_host " "$tmp/lc.txt" &&
  grep -q "offloaded layer inputs" "$tmp/lc.txt" && ok || fail "the offload/chunk plan's text: $(tail -5 "$tmp/lc.txt")"
expect_clean_error "mlp chunk without checkpointing" "$BIN" plan --preset llama2-7b --mlp-chunk 1024
expect_clean_error "mlp chunk not a multiple of 8" "$BIN" plan --preset llama2-7b --checkpointing --mlp-chunk 1001
expect_clean_error "offload on the cpu" "$BIN" plan --preset llama2-7b --checkpointing --offload-checkpoints
# a recipe at several sizes: Guanaco (recipes/guanaco.lua) at 7B, 13B and 33B on a 24 GiB GPU, resolved by its
# scale rules (lr 2e-4 / 2e-4 / 1e-4, dropout 0.1 / 0.05 / 0.05), shapes from the presets its base ids name
if "$BIN" plan recipes/guanaco.lua --sizes 7b,13b,33b --gpu 24GiB --json >"$tmp/gu.json" 2>"$tmp/gu.err" &&
   $PY - "$tmp/gu.json" >"$tmp/gu.out" 2>&1 <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["backend"] == "cuda" and d["mem"] == 24 * 2**30, d
r = {x["size"]: x for x in d["sizes"]}
assert list(r) == ["7b", "13b", "33b"], list(r)
assert [r[s]["lr"] for s in r] == [2e-4, 2e-4, 1e-4], [r[s]["lr"] for s in r]
assert [r[s]["lora_dropout"] for s in r] == [0.1, 0.05, 0.05]
assert [r[s]["shape"] for s in r] == ["preset llama-7b", "preset llama-13b", "preset llama-30b"], [r[s]["shape"] for s in r]
assert all(r[s]["lora_r"] == 64 and r[s]["seq_len"] == 512 and r[s]["global_batch"] == 16 for s in r)
assert r["7b"]["fits"] and r["13b"]["fits"] and r["7b"]["device_need"] < r["13b"]["device_need"] < r["33b"]["device_need"]
# what the device must hold: potluck's tagged bytes plus the CUDA runtime's stated reserve (512 MiB)
assert all(r[s]["device_need"] == r[s]["device_total"] + r[s]["runtime_reserve"] and r[s]["runtime_reserve"] == 512 * 2**20 for s in r)
g = r["33b"]
assert not g["fits"] and g["device_need"] > 24 * 2**30, g
assert "train.paged_optim = true" in g["fits_with"] and g["device_need_with"] <= 24 * 2**30, g
print("7b %.2f GiB, 13b %.2f GiB, 33b %.2f GiB -> %.2f GiB with %s (the CUDA runtime's 0.50 GiB included)" % (
      r["7b"]["device_need"] / 2**30, r["13b"]["device_need"] / 2**30, g["device_need"] / 2**30,
      g["device_need_with"] / 2**30, g["fits_with"]))
PYEOF
then ok; echo "note: plan recipes/guanaco.lua --sizes 7b,13b,33b --gpu 24GiB: $(cat "$tmp/gu.out")"
else fail "plan recipes/guanaco.lua --sizes: $(cat "$tmp/gu.err" "$tmp/gu.out" 2>/dev/null | tail -5)"; fi
"$BIN" plan recipes/guanaco.lua --sizes 7b,33b --gpu 24GiB >"$tmp/gu.txt" 2>&1 && grep -q "^33b .*preset llama-30b" "$tmp/gu.txt" &&
  grep -q "fits with train.paged_optim = true" "$tmp/gu.txt" && grep -q "fits in 24.00 GiB" "$tmp/gu.txt" && ok ||
  fail "plan RECIPE text: $(cat "$tmp/gu.txt")"
"$BIN" plan recipes/guanaco.lua --sizes 7b --mem 4GiB >"$tmp/gc.txt" 2>&1 && grep -q "does not fit in 4.00 GiB" "$tmp/gc.txt" && ok ||
  fail "plan RECIPE on the cpu, 4 GiB: $(cat "$tmp/gc.txt")"
expect_clean_error "recipe plan without --sizes" "$BIN" plan recipes/guanaco.lua --gpu 24GiB
expect_clean_error "recipe plan, --gpu with --backend cpu" "$BIN" plan recipes/guanaco.lua --sizes 7b --gpu 24GiB --backend cpu
expect_clean_error "bad targets" "$BIN" plan --preset llama2-7b --lora-targets q,zz
expect_clean_error "bad base" "$BIN" plan --preset llama2-7b --base fp8
expect_clean_error "bad blocksize" "$BIN" plan --preset llama2-7b --nf4-blocksize 48
expect_clean_error "too many tokens" "$BIN" plan --preset llama2-7b --seq-len 1048576 --micro-batch 2
expect_clean_error "unknown option" "$BIN" plan --preset llama2-7b --frobnicate
expect_clean_error "missing value" "$BIN" plan --preset
check_summary cli_plan
