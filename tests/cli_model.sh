#!/usr/bin/env bash
# cli_model.sh: the potluck binary on real and broken models.
#  - stories260K greedy, 200 steps, through `potluck generate`: byte-identical
#    to llama2.c's expected output;
#  - `potluck model info` on the real fixtures;
#  - broken inputs (truncated/corrupted GGUF and safetensors, overflowing
#    header lengths, unknown architecture, missing tensors, wrong shapes, bad
#    config): one line "potluck: ..." naming the problem, non-zero exit, no
#    crash and no sanitizer report (POTLUCK_BIN is the ASan/UBSan build).
set -u
cd "$(dirname "$0")/.."
source tests/check.sh
BIN=${POTLUCK_BIN:?}
S=${POTLUCK_SHARED:?}/fixtures
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# stories260K greedy
"$BIN" generate --model "$S/stories260K/stories260K.bin" --tokenizer "$S/stories260K/tok512.bin" \
  --temperature 0 --max-tokens 200 >"$tmp/out.txt" 2>"$tmp/err.txt"
rc=$?
head -c -1 "$tmp/out.txt" >"$tmp/out_trim.txt"   # run.c's final newline
if [ $rc = 0 ] && cmp -s "$tmp/out_trim.txt" "$S/stories260K/expected_greedy_t0_n200.txt"; then ok
else fail "stories260K greedy via CLI differs from llama2.c (rc=$rc): $(head -c 300 "$tmp/out.txt") $(cat "$tmp/err.txt")"; fi

# model info on real files
if "$BIN" model info "$S/stories260K/stories260K.bin" --tokenizer "$S/stories260K/tok512.bin" >"$tmp/info.txt" 2>&1 \
   && grep -q 'architecture:    llama' "$tmp/info.txt" && grep -q 'heads:           8 query, 4 key/value' "$tmp/info.txt"; then ok
else fail "model info stories260K: $(cat "$tmp/info.txt")"; fi
if "$BIN" model info "$S/gguf-tiny-llama/llama-2-tiny-random.gguf" >"$tmp/info2.txt" 2>&1 \
   && grep -q 'format:          GGUF' "$tmp/info2.txt" && grep -q 'F16 x' "$tmp/info2.txt" \
   && grep -q 'tied embeddings: no' "$tmp/info2.txt"; then ok
else fail "model info tiny gguf: $(cat "$tmp/info2.txt")"; fi
if [ -n "${POTLUCK_MODEL:-}" ]; then
  if "$BIN" model info "$POTLUCK_MODEL" >"$tmp/info3.txt" 2>&1 && grep -q 'chat template:   present' "$tmp/info3.txt" \
     && grep -q 'Q4_1' "$tmp/info3.txt"; then ok
  else fail "model info SmolLM2: $(cat "$tmp/info3.txt")"; fi
fi
# a GGUF generates (random weights: just that it runs and prints)
if "$BIN" generate --model "$S/gguf-tiny-llama/llama-2-tiny-random.gguf" --prompt "Hello" --max-tokens 8 \
     --temperature 0.7 --seed 3 >"$tmp/g.txt" 2>&1 && grep -q '^Hello' "$tmp/g.txt"; then ok
else fail "generate tiny gguf: $(cat "$tmp/g.txt")"; fi

# broken inputs
python3 tests/make_hostile_models.py "$tmp/h" || fail "could not build the hostile cases"
while IFS=$'\t' read -r name expect; do
  if [ "$expect" = OK ]; then
    if "$BIN" model info "$tmp/h/$name" >/dev/null 2>"$tmp/e"; then ok; else fail "$name should load: $(cat "$tmp/e")"; fi
    continue
  fi
  expect_clean_error "model info $name" "$BIN" model info "$tmp/h/$name"
  if [ -n "$expect" ]; then
    msg=$("$BIN" model info "$tmp/h/$name" 2>&1 >/dev/null)
    if grep -q -- "$expect" <<<"$msg" && grep -q -- "$name" <<<"$msg"; then ok
    else fail "$name: message should name the file and mention '$expect': $msg"; fi
  fi
done <"$tmp/h/cases.txt"
expect_clean_error "missing file" "$BIN" model info "$tmp/does-not-exist.gguf"
expect_clean_error "generate without --model" "$BIN" generate --prompt hi
expect_clean_error "bad --temperature" "$BIN" generate --model "$S/stories260K/stories260K.bin" --temperature 2e-4x
expect_clean_error "unknown option" "$BIN" generate --model "$S/stories260K/stories260K.bin" --frobnicate
expect_clean_error "llama2.c without tokenizer" "$BIN" generate --model "$S/stories260K/stories260K.bin"
check_summary cli_model
