#!/usr/bin/env bash
# tests/cli_tokenize.sh: `potluck tokenize` end to end on the ASan build.
#
# Token ids of llama.cpp's own test vectors ($POTLUCK_SHARED/fixtures/llamacpp-vocab,
# .inp texts and .out ids, encoded without BOS and without parsing special
# tokens as llama.cpp's test does) for a GPT-2 BPE GGUF and a Llama SPM GGUF;
# the same Llama-2 ids from a tokenizer.json folder and a llama2.c .bin;
# --lines, --no-special (BOS), --no-parse-special (<|im_start|> as text),
# --decode round trips; bad inputs give one clean error line.
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/check.sh
: "${POTLUCK_SHARED:?set POTLUCK_SHARED}"
: "${POTLUCK_MODEL:?set POTLUCK_MODEL}"
BIN=${POTLUCK_BIN:-build/san/potluck}
if ! [ -x "$BIN" ] || ! grep -q 'usage: potluck tokenize' <<<"$("$BIN" tokenize --help 2>/dev/null)"; then
  fail "$BIN does not run 'potluck tokenize'"; check_summary cli_tokenize; exit 1
fi
V=$POTLUCK_SHARED/fixtures/llamacpp-vocab
LLAMA=$POTLUCK_SHARED/fixtures/tokenizers/tiny-random-LlamaForCausalLM
L2C=$POTLUCK_SHARED/fixtures/llama2c/tokenizer.bin
SMOL=$POTLUCK_MODEL
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tok() { "$BIN" tokenize "$@"; }

# one error line "potluck: ..." on stderr, non-zero exit, no sanitizer report.
expect_one_error() {
  local desc=$1; shift
  local err rc
  err=$("$@" 2>&1 >/dev/null); rc=$?
  if [ $rc -eq 0 ]; then fail "$desc: exit 0, expected an error"; return; fi
  if [ $rc -ge 128 ]; then fail "$desc: killed by a signal (rc=$rc): $err"; return; fi
  if grep -qE 'Sanitizer|runtime error' <<<"$err"; then fail "$desc: sanitizer: $err"; return; fi
  if [ "$(printf '%s\n' "$err" | grep -c .)" != 1 ] || ! grep -qE '^potluck: ' <<<"$err"; then
    fail "$desc: expected one error line, got: $err"; return; fi
  ok
  echo "note: $desc -> $err"
}

# llama.cpp's vectors: split .inp on its separator, one file per text
split_vectors() { # NAME N: writes $tmp/NAME.K.txt and $tmp/NAME.K.ids for the first N
  python3 - "$V/$1.inp" "$V/$1.out" "$tmp/$1" "$2" <<'PY'
import sys
inp = open(sys.argv[1], encoding="utf-8", newline="").read().split("\n__ggml_vocab_test__\n")
out = open(sys.argv[2], encoding="utf-8").read().split("\n")
n = min(int(sys.argv[4]), len(out), len(inp))
for k in range(n):
    open(f"{sys.argv[3]}.{k}.txt", "w", encoding="utf-8", newline="").write(inp[k])
    open(f"{sys.argv[3]}.{k}.ids", "w").write(out[k].strip() + "\n")
print(n)
PY
}
for name in ggml-vocab-gpt-2.gguf ggml-vocab-llama-spm.gguf; do
  n=$(split_vectors "$name" 24)
  [ "${n:-0}" -ge 20 ] && ok || fail "$name: vectors not read ($n)"
  bad=0
  for k in $(seq 0 $((n - 1))); do
    got=$(tok --model "$V/$name" --no-special --no-parse-special <"$tmp/$name.$k.txt" 2>&1)
    if [ "$got" != "$(cat "$tmp/$name.$k.ids")" ]; then
      bad=$((bad + 1)); echo "  $name #$k: got '$got', want '$(cat "$tmp/$name.$k.ids")'" >&2
    fi
  done
  [ $bad = 0 ] && ok || fail "$name: $bad of $n llama.cpp vectors differ"
done
# the same Llama-2 vocabulary from a tokenizer.json folder and from a llama2.c .bin
for k in 0 1 2 3 20; do
  want=$(cat "$tmp/ggml-vocab-llama-spm.gguf.$k.ids")
  [ -s "$tmp/ggml-vocab-llama-spm.gguf.$k.txt" ] || continue
  got=$(tok --model "$LLAMA" --no-special --no-parse-special <"$tmp/ggml-vocab-llama-spm.gguf.$k.txt" 2>&1)
  [ "$got" = "$want" ] && ok || fail "tokenizer.json folder, vector $k: got '$got', want '$want'"
done
got=$(printf 'Hello world' | tok --model "$L2C" --no-special 2>&1)
[ "$got" = "15043 3186" ] && ok || fail "llama2.c .bin: 'Hello world' -> '$got'"

# BOS: added by default when the tokenizer asks for it, not with --no-special
got=$(printf 'Hello world' | tok --model "$LLAMA" 2>&1)
[ "$got" = "1 15043 3186" ] && ok || fail "tokenizer.json adds BOS: '$got'"
got=$(printf 'Hello world' | tok --model "$L2C" 2>&1)
[ "$got" = "1 15043 3186" ] && ok || fail "llama2.c .bin adds BOS: '$got'"
got=$(printf 'Hello world' | tok --model "$SMOL" 2>&1)
[ "$got" = "19556 905" ] && ok || fail "SmolLM2 GGUF (no BOS): '$got'"

# special tokens: parsed by default, plain text with --no-parse-special
got=$(printf '<|im_start|>user' | tok --model "$SMOL" 2>&1)
[ "$got" = "1 4093" ] && ok || fail "<|im_start|> parsed: '$got'"
got=$(printf '<|im_start|>user' | tok --model "$SMOL" --no-parse-special 2>&1)
if [ "$(wc -w <<<"$got")" -gt 3 ] && ! grep -qw 1 <<<"${got%% *}"; then ok; else fail "--no-parse-special: '$got'"; fi

# --lines: one output line per input line
printf 'Hello world\nHe saw a big red ball.\n\nThe end' >"$tmp/lines.txt"
tok --model "$LLAMA" --lines --no-special <"$tmp/lines.txt" >"$tmp/lines.ids" 2>&1
if [ "$(wc -l <"$tmp/lines.ids")" = 4 ] && [ "$(head -1 "$tmp/lines.ids")" = "15043 3186" ] && [ -z "$(sed -n 3p "$tmp/lines.ids")" ]; then ok
else fail "--lines: $(cat "$tmp/lines.ids")"; fi
# each line as encoded on its own
l2=$(printf 'He saw a big red ball.' | tok --model "$LLAMA" --no-special)
[ "$(sed -n 2p "$tmp/lines.ids")" = "$l2" ] && ok || fail "--lines line 2 differs from encoding it alone"

# --decode round trips (text -> ids -> text) on every kind of tokenizer
printf 'Once upon a time, caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 and  two  spaces.\nSecond line\t tab' >"$tmp/rt.txt"
for t in "$SMOL" "$LLAMA" "$L2C" "$V/ggml-vocab-gpt-2.gguf" "$V/ggml-vocab-llama-spm.gguf"; do
  tok --model "$t" --no-special <"$tmp/rt.txt" >"$tmp/rt.ids" 2>&1
  tok --model "$t" --decode --no-special <"$tmp/rt.ids" >"$tmp/rt.back" 2>&1
  cmp -s "$tmp/rt.txt" "$tmp/rt.back" && ok || fail "decode round trip with $(basename "$t"): '$(cat "$tmp/rt.back")'"
done
# special tokens come back as their text unless --no-special
got=$(printf '<|im_start|>user\nhi<|im_end|>' | tok --model "$SMOL" | tok --model "$SMOL" --decode)
[ "$got" = $'<|im_start|>user\nhi<|im_end|>' ] && ok || fail "decode renders special tokens: '$got'"
got=$(printf '<|im_start|>user\nhi<|im_end|>' | tok --model "$SMOL" | tok --model "$SMOL" --decode --no-special)
[ "$got" = $'user\nhi' ] && ok || fail "decode --no-special drops special tokens: '$got'"
# --decode --lines: one text line per id line
printf 'Hello world\nHi\n' | tok --model "$LLAMA" --lines --no-special | tok --model "$LLAMA" --decode --lines >"$tmp/dl.txt" 2>&1
[ "$(cat "$tmp/dl.txt")" = $'Hello world\nHi' ] && ok || fail "--decode --lines: '$(cat "$tmp/dl.txt")'"

# bad inputs
expect_one_error "missing tokenizer file" tok --model "$tmp/nothing.gguf" </dev/null
expect_one_error "not a tokenizer" tok --model "$tmp/lines.txt" </dev/null
expect_one_error "decode: id past the vocabulary" sh -c "echo '1 2 99999999' | '$BIN' tokenize --tokenizer '$SMOL' --decode"
expect_one_error "decode: not a number" sh -c "echo '12 abc' | '$BIN' tokenize --tokenizer '$SMOL' --decode"
expect_one_error "decode: negative id" sh -c "echo '-5' | '$BIN' tokenize --tokenizer '$LLAMA' --decode"
err=$(echo '1 2 99999999' | tok --model "$SMOL" --decode 2>&1 >/dev/null)
grep -q "'99999999' is not a token id (0..49151)" <<<"$err" && ok || fail "bad id message: $err"
# a usage error: exit 2, the reason first, then the usage text
err=$(tok --lines 2>&1 </dev/null >/dev/null); rc=$?
[ $rc = 2 ] && [ "$(head -1 <<<"$err")" = "potluck: tokenize: --model PATH is required" ] && ok || fail "no --model (rc=$rc): $err"
check_summary "cli_tokenize"
