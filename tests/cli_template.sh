#!/usr/bin/env bash
# tests/cli_template.sh: `potluck template` end to end on the ASan build.
#
# ShareGPT with the SmolLM2 GGUF's own ChatML template, OpenAI messages with a
# tokenizer.json fixture folder (its Llama-2 template, then --template built-ins
# over it), Alpaca and input/output records: the text between [[ ]] must be
# exactly the assistant replies + end-of-turn marker (--mask all / last
# change that); a malformed line is reported as file:line and skipped, and is
# fatal under --strict; bad options give one clean "potluck: ..." line.
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/check.sh
: "${POTLUCK_SHARED:?set POTLUCK_SHARED}"
: "${POTLUCK_MODEL:?set POTLUCK_MODEL}"
BIN=${POTLUCK_BIN:-build/san/potluck}
if ! [ -x "$BIN" ] || ! grep -q 'usage: potluck template' <<<"$("$BIN" template --help 2>/dev/null)"; then
  fail "$BIN does not run 'potluck template'"; check_summary cli_template; exit 1
fi
SMOL=$POTLUCK_MODEL
LLAMA=$POTLUCK_SHARED/fixtures/tokenizers/tiny-random-LlamaForCausalLM
PHI2=$POTLUCK_SHARED/fixtures/tokenizers/phi-2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
T() { "$BIN" template --no-color "$@"; }
# the marked parts of a rendering, one per line
marked() { grep -o '\[\[[^]]*\]\]' | sed 's/^\[\[//; s/\]\]$//'; }

cat >"$tmp/sg.jsonl" <<'JSONL'
{"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}, {"from": "human", "value": "And 3+3?"}, {"from": "gpt", "value": "6, of course."}]}
{"conversations": [{"from": "human", "value": "Name a colour."}, {"from": "gpt", "value": "Blue."}]}
JSONL
cat >"$tmp/chat.jsonl" <<'JSONL'
{"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there"}, {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye"}]}
{"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "oops"}
{"messages": [{"role": "user", "content": "What is red?"}, {"role": "assistant", "content": "A colour."}]}
JSONL

# SmolLM2 GGUF, its own ChatML template
out=$(T --in "$tmp/sg.jsonl" --model "$SMOL" --limit 0 2>"$tmp/err"); rc=$?
[ $rc = 0 ] && ok || fail "sharegpt with SmolLM2: rc=$rc $(cat "$tmp/err")"
got=$(marked <<<"$out")
[ "$got" = $'4<|im_end|>\n6, of course.<|im_end|>\nBlue.<|im_end|>' ] && ok || fail "SmolLM2 marked spans: '$got'"
grep -q '^<|im_start|>system$' <<<"$out" && grep -q '^Be brief.<|im_end|>$' <<<"$out" && grep -qxF '<|im_start|>assistant' <<<"$out" && ok ||
  fail "ChatML rendering: $out"
grep -q '== example 1 (.*sg.jsonl:1, sharegpt, 46 tokens, 8 trained)' <<<"$out" && ok || fail "example header with token counts: $out"
grep -q 'sg.jsonl: 2 records read as sharegpt: 2 imported, 0 bad (skipped), 0 blank lines; 84 tokens, 11 trained' "$tmp/err" && ok ||
  fail "totals: $(cat "$tmp/err")"
got=$(T --in "$tmp/sg.jsonl" --model "$SMOL" --mask last 2>/dev/null | marked)
[ "$got" = $'6, of course.<|im_end|>\nBlue.<|im_end|>' ] && ok || fail "--mask last: '$got'"
out=$(T --in "$tmp/sg.jsonl" --model "$SMOL" --mask all 2>/dev/null)
grep -q '^\[\[<|im_start|>system$' <<<"$out" && ! grep -q ']]<' <<<"$out" && ok || fail "--mask all marks everything: $out"
out=$(T --in "$tmp/sg.jsonl" --model "$SMOL" --limit 1 2>/dev/null)
[ "$(grep -c '^== example' <<<"$out")" = 1 ] && ok || fail "--limit 1: $out"
out=$("$BIN" template --color --in "$tmp/sg.jsonl" --model "$SMOL" --limit 1 2>/dev/null)
grep -q $'\x1b\\[1;32m4<|im_end|>\x1b\\[0m' <<<"$out" && ok || fail "--color marks in green: $out"

# a tokenizer.json folder with its own Llama-2 template; a malformed line skipped
out=$(T --in "$tmp/chat.jsonl" --model "$LLAMA" --limit 0 2>"$tmp/err"); rc=$?
[ $rc = 0 ] && ok || fail "fixture folder: rc=$rc $(cat "$tmp/err")"
got=$(marked <<<"$out")
[ "$got" = $' Hi there </s>\n Goodbye </s>\n A colour. </s>' ] && ok || fail "Llama-2 template marked spans: '$got'"
grep -q '^<s>\[INST\] Hello \[/INST\]\[\[ Hi there </s>\]\]<s>\[INST\] Bye' <<<"$out" && grep -q 'BOS from the template' <<<"$out" && ok ||
  fail "Llama-2 rendering: $out"
grep -q "chat.jsonl:2: invalid JSON" "$tmp/err" && grep -q '3 records read as openai: 2 imported, 1 bad (skipped)' "$tmp/err" && ok ||
  fail "malformed line reported with file:line: $(cat "$tmp/err")"
grep -q 'chat.jsonl:2' <<<"$out" && fail "the malformed line was rendered" || ok

# --template NAME built-ins override the model's own
got=$(T --in "$tmp/chat.jsonl" --model "$LLAMA" --template vicuna --limit 0 2>/dev/null | marked)
[ "$got" = $' Hi there</s>\n Goodbye</s>\n A colour.</s>' ] && ok || fail "vicuna marked spans: '$got'"
out=$(T --in "$tmp/chat.jsonl" --model "$SMOL" --template chatml --limit 1 2>/dev/null)
grep -qxF '[[Hi there<|im_end|>]]' <<<"$out" && ! grep -q 'SmolLM' <<<"$out" && ok || fail "chatml built-in on SmolLM2: $out"
# without --model: character spans, and templates that need no vocabulary
got=$(T --in "$tmp/chat.jsonl" --template llama3 --limit 1 2>/dev/null | marked)
[ "$got" = $'Hi there<|eot_id|>\nGoodbye<|eot_id|>' ] && ok || fail "llama3 without a model: '$got'"
got=$(T --in "$tmp/chat.jsonl" --template mistral --eos '</s>' --limit 1 2>/dev/null | marked)
grep -q 'Hi there</s>' <<<"$got" && ok || fail "mistral with --eos: '$got'"
# a template file
printf '%s' "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{{ eos_token }}
{% endfor %}" >"$tmp/t.jinja"
got=$(T --in "$tmp/chat.jsonl" --template "$tmp/t.jinja" --eos '<|end|>' --limit 1 2>/dev/null | marked)
[ "$got" = $'Hi there<|end|>\nGoodbye<|end|>' ] && ok || fail "template file: '$got'"

# alpaca and input/output records (io: the output and the EOS text, <|im_end|> for SmolLM2, are trained)
printf '%s\n' '{"instruction": "Add 2 and 2.", "input": "", "output": "4"}' >"$tmp/alpaca.jsonl"
got=$(T --in "$tmp/alpaca.jsonl" --model "$SMOL" 2>/dev/null | marked)
[ "$got" = "4<|im_end|>" ] && ok || fail "alpaca: '$got'"
printf '%s\n' '{"input": "Q: 2+2? A:", "output": " 4"}' >"$tmp/io.jsonl"
out=$(T --in "$tmp/io.jsonl" --model "$SMOL" 2>/dev/null)
grep -qF 'Q: 2+2? A:[[ 4<|im_end|>]]' <<<"$out" && ok || fail "input/output: $out"

# --strict: the malformed line is fatal
expect_clean_error "malformed line under --strict" T --in "$tmp/chat.jsonl" --model "$LLAMA" --strict
err=$(T --in "$tmp/chat.jsonl" --model "$LLAMA" --strict 2>&1 >/dev/null)
grep -q '^potluck: .*chat.jsonl:2: invalid JSON.*(strict mode)' <<<"$err" && ok || fail "strict message: $err"
# every record bad: exit 1, each reported
printf 'nope\n{"messages": []}\n' >"$tmp/allbad.jsonl"
err=$(T --in "$tmp/allbad.jsonl" --model "$SMOL" 2>&1 >/dev/null); rc=$?
[ $rc = 1 ] && grep -q 'allbad.jsonl:1: invalid JSON' <<<"$err" && grep -q 'allbad.jsonl:2:' <<<"$err" && ok || fail "all bad (rc=$rc): $err"

# bad options and inputs: one clean line
expect_clean_error "missing --in file" T --in "$tmp/nothing.jsonl" --model "$SMOL"
expect_clean_error "missing model" T --in "$tmp/chat.jsonl" --model "$tmp/nothing.gguf"
expect_clean_error "unknown template" T --in "$tmp/chat.jsonl" --template nosuch
expect_clean_error "no template at all" T --in "$tmp/chat.jsonl"
expect_clean_error "model without a template" T --in "$tmp/chat.jsonl" --model "$PHI2"
expect_clean_error "chatml on a Llama-2 vocabulary" T --in "$tmp/chat.jsonl" --model "$LLAMA" --template chatml
expect_clean_error "unknown mask" T --in "$tmp/chat.jsonl" --template chatml --mask some
expect_clean_error "unknown format" T --in "$tmp/chat.jsonl" --template chatml --format yaml
check_summary "cli_template"
