#!/usr/bin/env bash
# tests/cli_cuda_train.sh: `--backend cuda` from the command line, on the CUDA
# backend's emulated build (build/emu/potluck, make emu), against the CPU backend
# (build/opt/potluck), on llama2.c's stories260K with an NF4 base, LoRA r 8 with
# dropout 0.05, grad accum 2:
#  - a build without the CUDA backend refuses --backend cuda with one line that
#    says so and names --backend cpu; so does the CUDA build on a machine without a
#    device (the emulator's PL_EMU_DEVICES=0); an unknown backend is refused too;
#  - `potluck train --backend cuda` trains 4 steps; each step's loss is within 2%
#    of the CPU backend's (bf16 activations), and the eval loss falls;
#  - kill -9 during emulated training, then --resume: the final trainable state and
#    adapter are byte-identical to the uninterrupted emulated run's;
#    The resumed run turns on --checkpointing --offload-checkpoints (where the
#    saved layer inputs live, not the bits: runtime settings);
#  - --offload-checkpoints is refused on the CPU backend and without
#    --checkpointing; with checkpointing and --gpu-mem just below its plan, the
#    refusal names --offload-checkpoints, whose plan keeps the inputs off the device; a 65536-token
#    sequence on an 8B-shaped config.json is refused naming --offload-checkpoints --mlp-chunk 1024;
#  - a run killed on the CUDA backend resumes on the CPU backend (the same run
#    directory and checkpoints) and finishes all its steps;
#  - --gpu-mem one byte below `potluck plan --backend cuda`'s device total is refused before the model
#    loads, naming a setting that fits; the emulated run trains with exactly the plan (the backend
#    refuses any allocation past the cap), and the uncapped resumed runs give its bits; its
#    metrics.jsonl's device_peak is that plan's device total (the CPU run's has none);
#  - greedy `potluck generate --backend cuda` prints the CPU backend's text; a generation whose CUDA
#    plan (with the runtime's reserve) exceeds the device's memory is refused before it starts;
#  - `potluck eval --text --backend cuda` gives the CPU backend's perplexity within 1%.
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/check.sh
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
: "${POTLUCK_SHARED:?set POTLUCK_SHARED}"
EMU=${POTLUCK_BIN_EMU:-build/emu/potluck}
CPU=${POTLUCK_BIN_OPT:-build/opt/potluck}
need_built cli_cuda_train "$EMU" "$CPU"
S=$POTLUCK_SHARED/fixtures
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export TMPDIR=$tmp # the NF4 base cache
MODEL=(--model "$S/stories260K/stories260K.bin" --tokenizer "$S/stories260K/tok512.bin")
ARGS=("${MODEL[@]}" --text "$S/text/tinystories_sample.txt" --lora-r 8 --lora-alpha 16 --lora-dropout 0.05
      --steps 4 --seq-len 64 --grad-accum 2 --lr 5e-3 --eval-every 2 --eval-rows 4 --save-every 2 --keep-last 2)

# refusals
out=$("$CPU" train "${ARGS[@]}" --out "$tmp/x" --backend cuda 2>&1); rc=$?
if [ $rc -ne 0 ] && [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] && grep -q 'built without the CUDA backend' <<<"$out" &&
   grep -q -- '--backend cpu' <<<"$out"; then ok; else fail "a build without CUDA: rc $rc: $out"; fi
[ ! -e "$tmp/x/adapter" ] && ok || fail "the refused run wrote an adapter"
out=$(PL_EMU_DEVICES=0 "$EMU" train "${ARGS[@]}" --out "$tmp/y" --backend cuda 2>&1); rc=$?
if [ $rc -ne 0 ] && [ "$(printf '%s\n' "$out" | grep -vc '^train: NF4 base')" -eq 1 ] && grep -q 'no CUDA device' <<<"$out" &&
   grep -q -- '--backend cpu' <<<"$out"; then ok; else fail "no device (PL_EMU_DEVICES=0): rc $rc: $out"; fi
out=$("$EMU" generate "${MODEL[@]}" --backend tpu 2>&1); rc=$?
[ $rc -ne 0 ] && grep -q 'unknown backend' <<<"$out" && ok || fail "unknown backend: rc $rc: $out"

losses() { grep '"loss"' "$1/metrics.jsonl" | sed 's/.*"loss": *\([-0-9.e+]*\).*/\1/'; }
steps_in() { local n; n=$(grep -c '"loss"' "$1/metrics.jsonl" 2>/dev/null); echo "${n:-0}"; }
same() { cmp -s "$1/trainable.bin" "$2/trainable.bin" && cmp -s "$1/adapter/adapter_model.safetensors" "$2/adapter/adapter_model.safetensors"; }

# --gpu-mem against the CUDA plan (potluck plan --backend cuda): the card's memory must hold the
# plan's device total plus the CUDA runtime's reserve (device_need); one byte less is refused
# before the model is loaded, naming the largest category and a setting that fits; the emulated run
# below trains with exactly the need, the backend refusing any allocation past the need less the
# reserve (so the plan's device total is the run's true device peak), and the uncapped resumed runs
# give its bits
pj() { "$CPU" plan --backend cuda "${ARGS[@]}" "$@" --json 2>"$tmp/plan.err" | "$PY" -c 'import json,sys; print(int(json.load(sys.stdin)["device_need"]))'; }
pjt() { "$CPU" plan --backend cuda "${ARGS[@]}" "$@" --json 2>"$tmp/plan.err" | "$PY" -c 'import json,sys; j=json.load(sys.stdin); assert j["device_need"] == j["device_total"] + j["runtime_reserve"] and j["runtime_reserve"] == 512 << 20, j; print(int(j["device_total"]))'; }
PY=${POTLUCK_VENV:+$POTLUCK_VENV/bin/}python3
need=$(pj); need_ck=$(pj --checkpointing); dev_total=$(pjt)
echo "note: cuda plan of the run: $need device bytes with the runtime's reserve, $dev_total without ($need_ck with --checkpointing)"
[ -n "$dev_total" ] && [ "$dev_total" -gt 0 ] && ok || fail "plan --backend cuda: device_need is not device_total + the 512 MiB reserve: $(cat "$tmp/plan.err")"
if [ -n "$need" ] && [ -n "$need_ck" ] && [ "$need_ck" -lt "$need" ]; then ok; else fail "plan --backend cuda: '$need' '$need_ck' $(cat "$tmp/plan.err")"; need=0; fi
out=$("$EMU" train "${ARGS[@]}" --backend cuda --gpu-mem $((need - 1)) --out "$tmp/cap1" 2>&1); rc=$?
echo "note: --gpu-mem $((need - 1)): $out"
if [ $rc -ne 0 ] && grep -q -- '--checkpointing fits' <<<"$out" && grep -q 'workspace\|activations\|weights' <<<"$out" &&
   ! grep -q 'NF4 base' <<<"$out"; then ok; else fail "--gpu-mem below the plan: rc $rc: $out"; fi

# offloaded checkpoints: refusals, the plan, the hint
out=$("$CPU" train "${ARGS[@]}" --checkpointing --offload-checkpoints --out "$tmp/off-cpu" 2>&1); rc=$?
[ $rc -ne 0 ] && grep -q 'needs --backend cuda and --checkpointing' <<<"$out" && ok || fail "--offload-checkpoints on the cpu: rc $rc: $out"
out=$("$EMU" train "${ARGS[@]}" --backend cuda --offload-checkpoints --out "$tmp/off-nock" 2>&1); rc=$?
[ $rc -ne 0 ] && grep -q 'needs --backend cuda and --checkpointing' <<<"$out" && ok || fail "--offload-checkpoints without checkpointing: rc $rc: $out"
need_off=$(pj --checkpointing --offload-checkpoints)
echo "note: cuda plan with --checkpointing --offload-checkpoints: $need_off device bytes"
if [ -n "$need_off" ] && [ "$need_off" -lt "${need_ck:-0}" ]; then ok; else fail "the offload plan: '$need_off' vs '$need_ck'"; fi
out=$("$EMU" train "${ARGS[@]}" --backend cuda --checkpointing --gpu-mem $((need_ck - 1)) --out "$tmp/cap2" 2>&1); rc=$?
echo "note: --checkpointing --gpu-mem $((need_ck - 1)): $out"
[ $rc -ne 0 ] && grep -q -- '--offload-checkpoints fits' <<<"$out" && ok || fail "--gpu-mem below the checkpointing plan: rc $rc: $out"

# a long sequence on a Llama-3.1-8B-shaped config (the header only: refused before any weight is read):
# the refusal names the settings that fit, MLP chunks included
printf '%s\n' '{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336,
 "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256, "rms_norm_eps": 1e-05,
 "rope_theta": 500000.0, "max_position_embeddings": 131072, "tie_word_embeddings": false, "torch_dtype": "bfloat16"}' >"$tmp/c8.json"
out=$("$EMU" train --backend cuda --model "$tmp/c8.json" --text "$S/text/tinystories_sample.txt" --gpu-mem 24GiB --seq-len 65536 \
      --lora-r 32 --checkpointing --out "$tmp/c8run" 2>&1); rc=$?
echo "note: 8B shape, seq 65536, --checkpointing, --gpu-mem 24GiB: $out"
[ $rc -ne 0 ] && grep -q -- '--offload-checkpoints --mlp-chunk 1024 fits' <<<"$out" && grep -q 'activations' <<<"$out" && ok ||
  fail "the long-sequence refusal: rc $rc: $out"

# the CPU reference and an emulated run capped at the plan (the resumed runs below are compared with it bit for bit)
"$CPU" train "${ARGS[@]}" --out "$tmp/cpu" >/dev/null 2>"$tmp/cpu.err" && ok || fail "cpu run: $(tail -3 "$tmp/cpu.err")"
"$EMU" train "${ARGS[@]}" --backend cuda --gpu-mem "$need" --out "$tmp/g1" >"$tmp/g1.err" 2>&1 && ok ||
  fail "cuda run with --gpu-mem exactly the plan ($need): $(tail -3 "$tmp/g1.err")"
worst=$(paste <(losses "$tmp/cpu") <(losses "$tmp/g1") | awk '{d=($2-$1)/$1; if (d<0) d=-d; if (d>w) w=d; n++} END {printf "%d %.5f", n, w}')
echo "note: per-step loss, cuda (emulated) vs cpu: steps and worst relative difference: $worst"
awk -v s="$worst" 'BEGIN {split(s, a, " "); exit !(a[1] == 4 && a[2] <= 0.02)}' && ok || fail "step losses differ: $worst"
grep 'eval loss' "$tmp/g1.err" | tail -1 | sed 's/^/note: cuda: /'
ev=$(grep -o 'eval loss [0-9.]* (base) -> [0-9.]*' "$tmp/g1.err" | awk '{print ($6 < $3) ? "falls" : "rises"}')
[ "$ev" = falls ] && ok || fail "cuda run: the eval loss did not fall ($(grep 'eval loss' "$tmp/g1.err" | tail -1))"
grep -q '"backend":[[:space:]]*"cuda"' "$tmp/g1/config.json" && ok || fail "config.json does not record train.backend cuda"
# metrics.jsonl's device_peak: the most device bytes held at once, on the CUDA backend only; the run
# capped at the plan held exactly the plan's device total at its peak
dp=$(tail -1 "$tmp/g1/metrics.jsonl" | "$PY" -c 'import json,sys; print(int(json.load(sys.stdin).get("device_peak", -1)))')
echo "note: metrics.jsonl device_peak $dp, plan device_total $dev_total"
[ "$dp" = "$dev_total" ] && ok || fail "device_peak '$dp' is not the plan's device total $dev_total"
grep -q device_peak "$tmp/cpu/metrics.jsonl" && fail "the CPU backend's metrics.jsonl has a device_peak" || ok

# kill -9 and resume, on the same backend and on the other one
for lab in same-backend other-backend; do
  k=$tmp/k-$lab
  "$EMU" train "${ARGS[@]}" --backend cuda --out "$k" >/dev/null 2>"$tmp/$lab.err" &
  pid=$!
  for _ in $(seq 1 1500); do
    [ "$(steps_in "$k")" -ge 3 ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.02
  done
  kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  at=$(steps_in "$k")
  echo "note: $lab: killed with SIGKILL after step $at"
  [ "$at" -lt 4 ] && ok || fail "$lab: the run finished before the kill"
  if [ $lab = same-backend ]; then
    "$EMU" train "${ARGS[@]}" --backend cuda --checkpointing --offload-checkpoints --out "$k" --resume >/dev/null \
      2>"$tmp/$lab.r.err" && ok || fail "$lab: resume: $(tail -3 "$tmp/$lab.r.err")"
    same "$tmp/g1" "$k" && ok || fail "resumed emulated run (with offloaded checkpoints) differs from the uninterrupted one"
  else
    "$CPU" train "${ARGS[@]}" --backend cpu --out "$k" --resume >/dev/null 2>"$tmp/$lab.r.err" && ok || fail "$lab: resume on cpu: $(tail -3 "$tmp/$lab.r.err")"
    [ "$(steps_in "$k")" -eq 4 ] && [ -f "$k/adapter/adapter_model.safetensors" ] && ok || fail "$lab: resumed on cpu: $(steps_in "$k") steps"
  fi
  grep -h 'resum' "$tmp/$lab.r.err" | head -2 | sed "s/^/note: $lab: /"
done

# generation and eval
G=(generate "${MODEL[@]}" --temperature 0 --max-tokens 60)
a=$("$CPU" "${G[@]}" 2>"$tmp/gc.err"); b=$("$EMU" "${G[@]}" --backend cuda 2>"$tmp/gg.err")
[ -n "$a" ] && [ "$a" = "$b" ] && ok || fail "greedy text differs: cpu '$a' cuda '$b' $(tail -2 "$tmp/gg.err")"
# generation checks its CUDA plan (weights, KV cache, prefill, scratch, the runtime's 512 MiB reserve)
# against the device's memory before anything goes to the device: 40 MB of emulated device memory
# holds the run's own buffers (about 33 MB, cuBLASLt's 32 MiB workspace most of it) but not the
# reserve: refused, one line, nothing printed; with the reserve set to 0 the same device runs it
out=$(PL_EMU_MEM=40000000 "$EMU" "${G[@]}" --backend cuda 2>"$tmp/gm.err"); rc=$?
echo "note: generate on 40 MB of device memory: $(cat "$tmp/gm.err")"
[ $rc = 1 ] && [ -z "$out" ] && [ "$(grep -c . "$tmp/gm.err")" = 1 ] &&
  grep -q "^potluck: generate: 1 prompt of up to .* tokens on the cuda backend need .* of device memory (weights .*, KV cache .*, the CUDA runtime's reserve 512.00 MiB), the device has 38.15 MiB: fewer prompts at once, a shorter --max-tokens, or --backend cpu" "$tmp/gm.err" \
  && ok || fail "generate over the device's memory: rc $rc, out '$out', $(cat "$tmp/gm.err")"
out=$(POTLUCK_CUDA_RUNTIME_MIB=0 PL_EMU_MEM=40000000 "$EMU" "${G[@]}" --backend cuda 2>"$tmp/gm0.err"); rc=$?
[ $rc = 0 ] && [ "$out" = "$a" ] && ok || fail "generate with no runtime reserve on 40 MB: rc $rc, $(tail -2 "$tmp/gm0.err")"
E=(eval "$S/gguf-tiny-llama/llama-2-tiny-random.gguf" --text "$S/text/tinystories_sample.txt" --ctx 64 --limit 4)
ec=$("$CPU" "${E[@]}" 2>&1); eg=$("$EMU" "${E[@]}" --backend cuda 2>&1)
lc=$(grep -o 'ppl [0-9.]*' <<<"$ec" | head -1 | cut -d' ' -f2); lg=$(grep -o 'ppl [0-9.]*' <<<"$eg" | head -1 | cut -d' ' -f2)
echo "note: eval --text perplexity (tiny random GGUF, F16 weights): cpu $lc cuda $lg"
awk -v a="$lc" -v b="$lg" 'BEGIN {d=(b-a)/a; if (d<0) d=-d; exit !(a > 0 && d <= 0.01)}' && ok || fail "eval perplexity: cpu '$lc' cuda '$lg' ($ec / $eg)"
# eval checks the same plan before its first item (its largest forward: --ctx 64 here, the default
# --batch-tokens 1024 capped at the model's context): refused on 40 MB, one line, no result printed
out=$(PL_EMU_MEM=40000000 "$EMU" "${E[@]}" --backend cuda 2>"$tmp/em.err"); rc=$?
[ $rc = 1 ] && [ -z "$out" ] && [ "$(grep -c . "$tmp/em.err")" = 1 ] &&
  grep -q "^potluck: eval: llama-2-tiny-random[^:]*: a batch of [0-9]* tokens on the cuda backend need .* of device memory (weights .*, the CUDA runtime's reserve 512.00 MiB), the device has 38.15 MiB: --backend cpu, a smaller --batch-tokens, or a smaller model" "$tmp/em.err" \
  && ok || fail "eval over the device's memory: rc $rc, out '$out', $(cat "$tmp/em.err")"
check_summary cli_cuda_train
