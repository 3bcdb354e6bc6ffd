#!/usr/bin/env bash
# cli_export.sh: potluck's exports against the peers, live.
#  1. build/san/tests/test_export and build/opt/tests/opt_export write their
#     exports into one directory (POTLUCK_EXPORT_DIR): the GGUF writer's
#     round-trip file, the tiny HF Llama/Qwen2 merged exports and PEFT
#     adapters with potluck's merged logits, SmolLM2 merged with a small
#     adapter as F16 and Q8_0 GGUF (+ the adapter);
#  2. tests/interop/export_check.py runs gguf-py, transformers, peft and
#     llama.cpp (llama-cpp-python, 2 threads) on them;
#  3. both tests run again and compare with what the peers wrote (gguf-py
#     fields/tensors; transformers and peft logits; llama.cpp greedy
#     continuations of 8 prompts, 16 tokens each, near ties skipped);
#  4. `potluck generate --adapter` (real binary) on SmolLM2 with that adapter,
#     with the model's chat template, and clean errors for bad adapters.
set -u
cd "$(dirname "$0")/.."
source tests/check.sh
BIN=${POTLUCK_BIN:?}
BIN_OPT=${POTLUCK_BIN_OPT:?}
: "${POTLUCK_VENV:?}" "${POTLUCK_MODEL:?}" "${POTLUCK_REFS:?}" "${POTLUCK_SHARED:?}"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export POTLUCK_EXPORT_DIR=$tmp/ex
mkdir -p "$POTLUCK_EXPORT_DIR"

run_test() { # NAME BINARY: run a C test, count its result as one check, keep its notes
  local out; out=$("$2" 2>"$tmp/$1.err"); local rc=$?
  grep '^note:' <<<"$out"
  if [ $rc = 0 ]; then ok; else fail "$1 (rc=$rc): $(grep -E '^FAIL|^==' "$tmp/$1.err" <(echo "$out") | head -20)"; fi
}
run_test test_export build/san/tests/test_export >/dev/null
run_test opt_export build/opt/tests/opt_export >/dev/null
# The peers' results depend only on the exported bytes, the script and the
# peer versions: computed once per such key and cached (as tests/refs.sh does;
# the *_cmd* and *_run exports carry temporary paths and no peer reads them).
peer_files="gguf_py.json llama_tf_logits.f32 qwen2_tf_logits.f32 llama_peft_logits.f32 qwen2_peft_logits.f32 llamacpp_f16.json llamacpp_q8_0.json"
key=$( { cat tests/requirements-peers.txt tests/interop/export_check.py tests/interop/_common.py;
         (cd "$POTLUCK_EXPORT_DIR" && find . -type f -not -path "./*_cmd*" -not -path "./*_run/*" | LC_ALL=C sort | xargs sha256sum); } | sha256sum | cut -c1-16)
cache=${POTLUCK_CACHE:-$HOME/.cache/potluck}/export_check/$key
if [ -f "$cache/.done" ]; then
  cp "$cache"/* "$POTLUCK_EXPORT_DIR/" && ok
  echo "note: peer results for these exports taken from the cache ($key)"
elif PYTHONPATH=tests/interop "$POTLUCK_VENV/bin/python" tests/interop/export_check.py "$POTLUCK_EXPORT_DIR" 2>"$tmp/py.err"; then
  ok
  mkdir -p "$cache.tmp" && for f in $peer_files; do [ -f "$POTLUCK_EXPORT_DIR/$f" ] && cp "$POTLUCK_EXPORT_DIR/$f" "$cache.tmp/"; done
  touch "$cache.tmp/.done" && rm -rf "$cache" && mv "$cache.tmp" "$cache"
else fail "export_check.py: $(tail -5 "$tmp/py.err")"; fi
for f in $peer_files; do
  if [ -s "$POTLUCK_EXPORT_DIR/$f" ]; then ok; else fail "the peers did not write $f"; fi
done
run_test test_export build/san/tests/test_export
run_test opt_export build/opt/tests/opt_export

# generate --adapter, --chat with the model's template (echoed with its special tokens)
if "$BIN_OPT" generate --model "$POTLUCK_MODEL" --adapter "$POTLUCK_EXPORT_DIR/smollm2_adapter" --chat \
     --prompt "What is the capital of France?" --max-tokens 12 --temperature 0 --threads 2 >"$tmp/g.txt" 2>"$tmp/g.err" \
   && grep -qF '<|im_start|>user' "$tmp/g.txt" && grep -qxF '<|im_start|>assistant' "$tmp/g.txt"; then ok
else fail "generate --adapter --chat: $(cat "$tmp/g.txt" "$tmp/g.err")"; fi
# --adapter merges at load time: the same greedy text as the exported F16 GGUF of the
# same merge (a prompt whose continuation has clear top-2 gaps, see opt_export's notes)
P='In 2023: 12 * 34 = 408, pi = 3.14, so 7 * 6 ='
"$BIN_OPT" generate --model "$POTLUCK_MODEL" --adapter "$POTLUCK_EXPORT_DIR/smollm2_adapter" --prompt "$P" \
  --max-tokens 12 --temperature 0 --threads 2 >"$tmp/g1.txt" 2>&1
"$BIN_OPT" generate --model "$POTLUCK_EXPORT_DIR/smollm2_f16.gguf" --prompt "$P" --max-tokens 12 --temperature 0 \
  --threads 2 >"$tmp/g2.txt" 2>&1
if [ -s "$tmp/g1.txt" ] && cmp -s "$tmp/g1.txt" "$tmp/g2.txt"; then ok; echo "note: generate --adapter: $(head -c 200 "$tmp/g1.txt")"
else fail "generate --adapter vs the F16 export: $(cat "$tmp/g1.txt") | $(cat "$tmp/g2.txt")"; fi
expect_clean_error "generate --adapter missing dir" "$BIN" generate --model "$POTLUCK_MODEL" --adapter "$tmp/nope" --max-tokens 1
mkdir -p "$tmp/badad" && cp "$POTLUCK_EXPORT_DIR/llama_adapter/"* "$tmp/badad/"
expect_clean_error "generate --adapter of another model" "$BIN" generate --model "$POTLUCK_MODEL" --adapter "$tmp/badad" --max-tokens 1
check_summary cli_export
