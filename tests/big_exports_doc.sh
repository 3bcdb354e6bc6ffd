#!/usr/bin/env bash
# tests/big_exports_doc.sh (make test-big): docs/exports.md runs as written. Its ```sh block
# (data build, train, the three exports; potluck = the optimized build) runs
# in a folder holding chat.jsonl, eval.jsonl and
# models/SmolLM2-135M-Instruct.Q4_1.gguf, then every ```python block runs
# unchanged in the peers' venv (transformers + peft on the GGUF base,
# transformers on the merged folder, llama-cpp-python on the GGUF), offline;
# a block whose first line says "# needs the Hub" is the one left out. Also
# checks what the exports name their base and the merged tokenizer's ids.
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/check.sh
: "${POTLUCK_VENV:?}" "${POTLUCK_MODEL:?}"
OPT=${POTLUCK_BIN_OPT:-build/opt/potluck}
case $OPT in /*) ;; *) OPT=$PWD/$OPT ;; esac
PY=$POTLUCK_VENV/bin/python
DOC=$PWD/docs/exports.md
T=$(mktemp -d)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$T"' EXIT   # KEEP=1: leave the folder for a look
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} TOKENIZERS_PARALLELISM=false
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

mkdir -p "$T/models"
ln -s "$(realpath "$POTLUCK_MODEL")" "$T/models/SmolLM2-135M-Instruct.Q4_1.gguf"
python3 - "$T" <<'PY'
import json, sys
qa = [("What is the capital of France?", "Paris is the capital of France."),
      ("How many legs does a spider have?", "A spider has eight legs."),
      ("What colour is the sky?", "The sky is blue."), ("What is two plus three?", "Five."),
      ("Which planet is closest to the sun?", "Mercury."), ("What do bees make?", "Honey."),
      ("How many days are in a week?", "Seven."), ("What is frozen water called?", "Ice.")]
def w(path, rows):
    with open(path, "w") as f:
        for q, a in rows:
            f.write(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n")
w(sys.argv[1] + "/chat.jsonl", qa[:6]); w(sys.argv[1] + "/eval.jsonl", qa[6:])
PY
# the blocks of the doc: block N of kind K into $T/block-N.K
python3 - "$DOC" "$T" <<'PY'
import re, sys
doc = open(sys.argv[1]).read()
for i, (kind, body) in enumerate(re.findall(r"```(sh|python)\n(.*?)```", doc, re.S)):
    open(f"{sys.argv[2]}/block-{i}.{kind}", "w").write(body)
PY
n_sh=$(ls "$T"/block-*.sh 2>/dev/null | wc -l); n_py=$(ls "$T"/block-*.python 2>/dev/null | wc -l)
[ "$n_sh" = 1 ] && [ "$n_py" -ge 4 ] && ok || fail "docs/exports.md: expected 1 sh block and >= 4 python blocks, found $n_sh and $n_py"

cd "$T" || exit 1
potluck() { "$OPT" "$@"; }
export -f potluck; export OPT
if bash -e "$T"/block-*.sh >sh.out 2>sh.err; then ok; else fail "the sh block: $(tail -5 sh.err)"; fi
for f in out/adapter/adapter_config.json out/adapter/potluck_base.json out/merged/tokenizer.json \
         out/merged/tokenizer_config.json out/model.gguf; do
  [ -s "$f" ] && ok || fail "$f missing"
done
name=$(python3 -c "import json;print(json.load(open('out/adapter/adapter_config.json'))['base_model_name_or_path'])" 2>/dev/null)
[ "$name" = "HuggingFaceTB/SmolLM2-135M-Instruct" ] && ok || fail "base_model_name_or_path '$name'"
grep -q '"chat_template"' out/merged/tokenizer_config.json && grep -q '"eos_token":[[:space:]]*"<|im_end|>"' out/merged/tokenizer_config.json \
  && ok || fail "tokenizer_config.json: chat template and special tokens"

for b in "$T"/block-*.python; do
  if head -1 "$b" | grep -q '^# needs the Hub'; then echo "note: $(basename "$b"): needs the Hub, not run"; continue; fi
  out=$("$PY" "$b" 2>"$b.err"); rc=$?
  if [ $rc = 0 ] && [ -n "$(tr -d '[:space:]' <<<"$out")" ]; then ok; echo "note: $(basename "$b") -> $(tr '\n' ' ' <<<"$out" | cut -c1-100)"
  else fail "$(basename "$b") (rc=$rc): $(grep -v Warning "$b.err" | tail -5)"; fi
done

# the merged folder's tokenizer encodes as potluck (and the GGUF) does
text=$'Hello world! 12345 It\'s   a test.\n\n<|im_start|>user\nhi'
want=$(printf '%s' "$text" | "$OPT" tokenize --model models/SmolLM2-135M-Instruct.Q4_1.gguf)
got=$(printf '%s' "$text" | "$PY" -c "
import sys; from transformers import AutoTokenizer
t = AutoTokenizer.from_pretrained('out/merged'); print(' '.join(map(str, t(sys.stdin.read())['input_ids'])))" 2>/dev/null)
[ -n "$want" ] && [ "$got" = "$want" ] && ok || fail "merged tokenizer ids: '$got' vs potluck '$want'"

check_summary big_exports_doc
