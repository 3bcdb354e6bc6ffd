#!/usr/bin/env bash
# cli_fuzz_replay.sh: every fuzz harness (tests/fuzz/fuzz_*.c, built with gcc and
# ASan + UBSan as build/san/fuzz/*) replayed over its corpus: the seeds and
# crash reproducers in tests/fuzz/corpus/NAME/ and, for the file parsers, the
# real files in ../shared/fixtures. Any sanitizer report or crash fails.
set -u
cd "$(dirname "$0")/.."
source tests/check.sh
shared=${POTLUCK_SHARED:-../shared}
for src in tests/fuzz/fuzz_*.c; do
  name=$(basename "$src" .c); short=${name#fuzz_}; bin=build/san/fuzz/$name
  [ -x "$bin" ] || { fail "$bin not built"; continue; }
  args=("tests/fuzz/corpus/$short")
  case $short in
    gguf) args+=($(find "$shared/fixtures" -name '*.gguf' -size -20M | sort | head -24)) ;;
    tokenizer_json) args+=($(find "$shared/fixtures" -name 'tokenizer.json' | head -8)) ;;
    jinja) args+=(tests/chat_templates) ;;
    llama2c) args+=("$shared/fixtures/stories260K/stories260K.bin" "$shared/fixtures/stories260K/tok512.bin") ;;
  esac
  out=$(TMPDIR=$(mktemp -d) "$bin" "${args[@]}" 2>&1); rc=$?
  n=$(sed -n 's/^== .*: \([0-9]*\) passed.*/\1/p' <<<"$out")
  if [ $rc = 0 ] && [ -n "$n" ] && [ "$n" -gt 0 ]; then ok; echo "note: $short: $n inputs replayed"
  else fail "$short (rc=$rc, ${n:-0} inputs): $(tail -20 <<<"$out")"; fi
done
check_summary cli_fuzz_replay
