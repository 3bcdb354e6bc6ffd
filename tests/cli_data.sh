#!/usr/bin/env bash
# tests/cli_data.sh: `potluck data` end to end on the ASan build, and h5py (the
# peer) reading the shards potluck wrote.
#
# build (pre-tokenized and plain text), verify, inspect, export (round trip
# through build gives byte-identical shards), split, merge; h5py opens every
# shard and reads the same tokens, loss_mask, offsets, sample_id and text that
# went in; a flipped byte, a truncated shard, a missing shard, an unknown
# schema version and bad input lines give one clean "potluck: ..." line.
# Conversations (ShareGPT with the SmolLM2 GGUF's template, OpenAI messages
# with a tokenizer.json folder and the vicuna built-in): the trained spans are
# exactly the assistant replies + end-of-turn marker; bad lines are reported
# with file:line and skipped, or fatal under --strict.
# Per-sample provenance ("_prov" objects -> /provenance): h5py reads the same
# strings, split/merge/export keep them, inspect shows them, and input without
# "_prov" gives shards with no /provenance dataset.
# Until cli/main.c dispatches `data`, the command runs through
# build/san/tests/test_shard --cmd data (the same cmd_data code).
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/check.sh
: "${POTLUCK_VENV:?set POTLUCK_VENV (run through make test)}"
: "${POTLUCK_SHARED:?set POTLUCK_SHARED}"
BIN=${POTLUCK_BIN:-build/san/potluck}
if [ -x "$BIN" ] && grep -q 'usage: potluck data' <<<"$("$BIN" data --help 2>/dev/null)"; then
  PL=("$BIN" data)
elif [ -x build/san/tests/test_shard ]; then
  PL=(build/san/tests/test_shard --cmd data)
  echo "note: potluck does not dispatch 'data' yet; using test_shard --cmd data"
else
  fail "neither $BIN data nor build/san/tests/test_shard is available"; check_summary cli_data; exit 1
fi
TOK=$POTLUCK_SHARED/fixtures/stories260K/tok512.bin
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
PY=$POTLUCK_VENV/bin/python

# inputs: pre-tokenized (with one text field), plain text
"$PY" - "$tmp" <<'PY'
import json, random, sys
d = sys.argv[1]; r = random.Random(7)
with open(f"{d}/pt.jsonl", "w") as f:
    for i in range(700):
        n = r.randint(1, 400)
        rec = {"input_ids": [r.randrange(512) for _ in range(n)], "loss_mask": [int(j >= n // 4) for j in range(n)]}
        if i % 3 == 0: rec["text"] = f"sample {i} caf\u00e9"
        f.write(json.dumps(rec) + "\n")
with open(f"{d}/text.jsonl", "w") as f:
    for s in ["Once upon a time there was a little boy named Ben.", "He saw a big red ball.", "The cat sat on the mat."]:
        f.write(json.dumps({"text": s}) + "\n")
PY

out=$("${PL[@]}" build --in "$tmp/pt.jsonl" --out "$tmp/ds" --model "$TOK" --shard-tokens 30000 --text 2>&1)
if [ $? -eq 0 ] && grep -q '700 samples' <<<"$out"; then ok; else fail "build: $out"; fi
nshards=$(ls "$tmp/ds"/shard-*.h5 | wc -l)
if [ "$nshards" -ge 4 ]; then ok; else fail "expected several shards, got $nshards"; fi
out=$("${PL[@]}" verify "$tmp/ds" 2>&1)
if [ $? -eq 0 ] && grep -q 'verify: .*ok' <<<"$out"; then ok; else fail "verify: $out"; fi
out=$("${PL[@]}" inspect "$tmp/ds" --model "$TOK" --samples 2 2>&1)
if [ $? -eq 0 ] && grep -q 'samples:        700' <<<"$out" && grep -q 'length histogram' <<<"$out" && grep -q '\[\[' <<<"$out"; then ok
else fail "inspect: $out"; fi
out=$("${PL[@]}" build --in "$tmp/pt.jsonl" --out "$tmp/ds" --model "$TOK" --shard-tokens 30000 --text 2>&1)
if grep -q 'already complete' <<<"$out"; then ok; else fail "re-run of a complete build: $out"; fi

# the peer: h5py reads what potluck wrote
"$PY" - "$tmp" >"$tmp/peer" 2>&1 <<'PY'
import json, os, sys, hashlib
import h5py, numpy as np
d = sys.argv[1]
def check(c, desc): print(("PASS " if c else "FAIL ") + desc)
recs = [json.loads(l) for l in open(f"{d}/pt.jsonl")]
man = json.load(open(f"{d}/ds/manifest.json"))
check(man["format"] == "potluck-dataset" and man["schema"] == 1, "manifest format and schema")
k = 0
for sh in man["shards"]:
    p = f"{d}/ds/{sh['file']}"
    check(hashlib.sha256(open(p, "rb").read()).hexdigest() == sh["sha256"], f"{sh['file']}: sha256")
    with h5py.File(p, "r") as f:
        check(f.attrs["schema"] == 1, f"{sh['file']}: schema attribute")
        check(f.attrs["tokenizer_sha256"] == man["tokenizer_sha256"], f"{sh['file']}: tokenizer attribute")
        tok, mask, off, sid, txt = f["tokens"][:], f["loss_mask"][:], f["offsets"][:], f["sample_id"][:], f["text"][:]
        check(tok.dtype == np.int32 and mask.dtype == np.uint8 and off.dtype == np.int64 and sid.dtype == np.uint64,
              f"{sh['file']}: dtypes {tok.dtype} {mask.dtype} {off.dtype} {sid.dtype}")
        check(f["tokens"].compression == "gzip" and f["tokens"].shuffle and f["tokens"].chunks is not None,
              f"{sh['file']}: tokens chunked with shuffle + deflate")
        check(len(off) == sh["samples"] + 1 and off[0] == 0 and off[-1] == len(tok) == sh["tokens"]
              and np.all(np.diff(off) >= 0), f"{sh['file']}: offsets")
        check(int(mask.sum()) == sh["trained_tokens"], f"{sh['file']}: trained tokens")
        good = True
        for i in range(sh["samples"]):
            r = recs[k]; a, b = off[i], off[i + 1]
            good &= tok[a:b].tolist() == r["input_ids"] and mask[a:b].tolist() == r["loss_mask"]
            want_text = r.get("text", "")
            t = txt[i].decode() if isinstance(txt[i], bytes) else txt[i]
            good &= t == want_text
            if "text" in r:
                want_id = int.from_bytes(hashlib.sha256(r["text"].encode()).digest()[:8], "little")
            else:
                raw = np.asarray(r["input_ids"], dtype="<i4").tobytes() + bytes(r["loss_mask"])
                want_id = int.from_bytes(hashlib.sha256(raw).digest()[:8], "little")
            good &= int(sid[i]) == want_id
            k += 1
        check(good, f"{sh['file']}: every sample's tokens, mask, text and sample_id equal the input")
check(k == len(recs), f"h5py saw {k} samples of {len(recs)}")
PY
rc=$?
while IFS= read -r line; do
  case "$line" in PASS\ *) ok ;; FAIL\ *) fail "h5py: ${line#FAIL }" ;; *) [ -n "$line" ] && echo "peer: $line" >&2 ;; esac
done <"$tmp/peer"
[ $rc -eq 0 ] || fail "h5py script exited $rc: $(tail -3 "$tmp/peer")"

# export -> build round trip: identical shards
"${PL[@]}" export "$tmp/ds" --jsonl "$tmp/ex.jsonl" 2>/dev/null && ok || fail "export"
if cmp -s <("$PY" -c "
import json,sys
for l in open('$tmp/ex.jsonl'):
    d=json.loads(l); r={'input_ids':d['input_ids'],'loss_mask':d['loss_mask']}
    if 'text' in d and d['text']: r['text']=d['text']
    print(json.dumps(r))") <("$PY" -c "
import json
for l in open('$tmp/pt.jsonl'): print(json.dumps(json.loads(l)))"); then ok; else fail "export gives back the input records"; fi
"${PL[@]}" export "$tmp/ds" --jsonl "$tmp/ex2.jsonl" --model "$TOK" 2>/dev/null
if head -1 "$tmp/ex2.jsonl" | grep -q '"spans"' && head -1 "$tmp/ex2.jsonl" | grep -q '"trained":true'; then ok
else fail "export with a tokenizer marks trained spans: $(head -c 300 "$tmp/ex2.jsonl")"; fi

# plain text with the tokenizer
out=$("${PL[@]}" build --in "$tmp/text.jsonl" --out "$tmp/txt" --model "$TOK" 2>&1)
if [ $? -eq 0 ] && grep -q '3 samples' <<<"$out"; then ok; else fail "text build: $out"; fi
out=$("${PL[@]}" inspect "$tmp/txt" --model "$TOK" --samples 1 2>&1)
if grep -q '\[\[.*Once upon a time' <<<"$out" || grep -q 'Once upon a time' <<<"$out"; then ok; else fail "decoded sample: $out"; fi

# split and merge
out=$("${PL[@]}" split "$tmp/ds" --eval-permille 200 --train-out "$tmp/tr" --eval-out "$tmp/ev" 2>&1)
if [ $? -eq 0 ]; then ok; else fail "split: $out"; fi
nt=$("$PY" -c "import json;print(json.load(open('$tmp/tr/manifest.json'))['totals']['samples'])")
ne=$("$PY" -c "import json;print(json.load(open('$tmp/ev/manifest.json'))['totals']['samples'])")
if [ $((nt + ne)) = 700 ] && [ "$ne" -gt 80 ] && [ "$ne" -lt 220 ]; then ok; else fail "split counts $nt + $ne"; fi
"${PL[@]}" verify "$tmp/tr" >/dev/null 2>&1 && "${PL[@]}" verify "$tmp/ev" >/dev/null 2>&1 && ok || fail "verify split outputs"
out=$("${PL[@]}" merge --out "$tmp/mg" --dedup "$tmp/tr" "$tmp/ev" "$tmp/ds" 2>&1)
if [ $? -eq 0 ] && grep -q '700 samples from 3 datasets, 700 duplicates dropped' <<<"$out"; then ok; else fail "merge: $out"; fi

# damage: flipped byte, truncation, missing shard, unknown schema
cp -r "$tmp/ds" "$tmp/bad"
printf '\x5a' | dd of="$tmp/bad/shard-00002.h5" bs=1 seek=5000 conv=notrunc status=none
expect_clean_error "flipped byte" "${PL[@]}" verify "$tmp/bad"
err=$("${PL[@]}" verify "$tmp/bad" 2>&1 >/dev/null)
if grep -q 'shard-00002.h5' <<<"$err" && grep -q 'sha256' <<<"$err"; then ok; else fail "flip message names the shard: $err"; fi
cp "$tmp/ds/shard-00002.h5" "$tmp/bad/"; truncate -s 3000 "$tmp/bad/shard-00001.h5"
expect_clean_error "truncated shard" "${PL[@]}" verify "$tmp/bad"
expect_clean_error "truncated shard with --trust (HDF5 sees it)" "${PL[@]}" verify "$tmp/bad" --trust
cp "$tmp/ds/shard-00001.h5" "$tmp/bad/"; rm "$tmp/bad/shard-00003.h5"
expect_clean_error "missing shard" "${PL[@]}" verify "$tmp/bad"
cp "$tmp/ds/shard-00003.h5" "$tmp/bad/"
"${PL[@]}" verify "$tmp/bad" >/dev/null 2>&1 && ok || fail "restored copy verifies"
sed -i 's/"schema":\t1/"schema":\t9/' "$tmp/bad/manifest.json"
expect_clean_error "unknown schema version" "${PL[@]}" inspect "$tmp/bad"
err=$("${PL[@]}" inspect "$tmp/bad" 2>&1 >/dev/null)
grep -q 'schema version 9 is not one this potluck reads' <<<"$err" && ok || fail "schema message: $err"
echo '{"input_ids": [1, 2, 600]}' >"$tmp/oov.jsonl"
expect_clean_error "token id outside the vocabulary" "${PL[@]}" build --in "$tmp/oov.jsonl" --out "$tmp/oov" --model "$TOK"
expect_clean_error "no dataset" "${PL[@]}" verify "$tmp/nothing"

# conversations: importer -> chat template -> tokens with offsets -> loss mask.
# The trained spans of every sample (export --model) must be exactly the
# assistant replies plus their end-of-turn marker.
SMOL=${POTLUCK_MODEL:?set POTLUCK_MODEL}
LLAMA=$POTLUCK_SHARED/fixtures/tokenizers/tiny-random-LlamaForCausalLM
PHI2=$POTLUCK_SHARED/fixtures/tokenizers/phi-2
cat >"$tmp/sg.jsonl" <<'JSONL'
{"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}, {"from": "human", "value": "And 3+3?"}, {"from": "gpt", "value": "6, of course."}]}
{"conversations": [{"from": "gpt", "value": "a reply before any question"}]}

not json at all
{"conversations": [{"from": "human", "value": "Name a colour."}, {"from": "gpt", "value": "Blue."}]}
JSONL
cat >"$tmp/oa.jsonl" <<'JSONL'
{"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there"}, {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye"}]}
{"messages": [{"role": "user", "content": [{"type": "text", "text": "What is red?"}]}, {"role": "assistant", "content": "A colour."}]}
JSONL
# spans of an export, one sample a line: "T|text" (trained) or "U|text", joined by " ## "
spans() { "$PY" -c '
import json, sys
for l in open(sys.argv[1]):
    d = json.loads(l)
    print(" ## ".join(("T|" if s["trained"] else "U|") + s["text"].replace("\n", "\\n") for s in d["spans"]))' "$1"; }
trained() { "$PY" -c '
import json, sys
for l in open(sys.argv[1]):
    d = json.loads(l)
    print(" ## ".join(s["text"] for s in d["spans"] if s["trained"]))' "$1"; }

# ShareGPT with the SmolLM2 GGUF's own (ChatML) template; 2 bad lines skipped
out=$("${PL[@]}" build --in "$tmp/sg.jsonl" --out "$tmp/sg" --model "$SMOL" --text 2>"$tmp/sg.err")
if [ $? -eq 0 ] && grep -q '2 samples' <<<"$out" && grep -q '2 records skipped (2 bad' <<<"$out"; then ok; else fail "sharegpt build: $out $(cat "$tmp/sg.err")"; fi
if grep -q "sg.jsonl:2: wrong role order" "$tmp/sg.err" && grep -q "sg.jsonl:4: invalid JSON" "$tmp/sg.err" &&
   [ "$(grep -c . "$tmp/sg.err")" = 2 ]; then ok
else fail "bad lines reported with file:line: $(cat "$tmp/sg.err")"; fi
"${PL[@]}" export "$tmp/sg" --jsonl "$tmp/sg.ex" --model "$SMOL" 2>/dev/null && ok || fail "export sharegpt"
want=$'4<|im_end|> ## 6, of course.<|im_end|>\nBlue.<|im_end|>'
got=$(trained "$tmp/sg.ex")
[ "$got" = "$want" ] && ok || fail "sharegpt trained spans: got '$got', want '$want'"
got=$(spans "$tmp/sg.ex" | head -1)
want='U|<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n ## T|4<|im_end|> ## U|\n<|im_start|>user\nAnd 3+3?<|im_end|>\n<|im_start|>assistant\n ## T|6, of course.<|im_end|> ## U|\n'
[ "$got" = "$want" ] && ok || fail "sharegpt sample 1 spans: got '$got'"
# sample_id is sha256 of the rendered text (stored with --text); manifest and card record template and mask
if "$PY" - "$tmp/sg" <<'PY'
import hashlib, json, sys, h5py
d = sys.argv[1]; man = json.load(open(f"{d}/manifest.json"))
assert man["template"] == "model" and man["provenance"]["mask"] == "assistant" and man["provenance"]["format"] == "sharegpt", man
assert len(man["provenance"]["template_sha256"]) == 64 and man["provenance"]["skipped_records"] == 2
with h5py.File(f"{d}/{man['shards'][0]['file']}") as f:
    for t, sid in zip(f["text"][:], f["sample_id"][:]):
        t = t.decode() if isinstance(t, bytes) else t
        assert t.startswith("<|im_start|>") and int(sid) == int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
card = open(f"{d}/card.md").read()
assert "template: model (sha256" in card and "format: sharegpt; loss mask: assistant" in card, card
PY
then ok; else fail "sharegpt manifest/card/sample_id"; fi
out=$("${PL[@]}" inspect "$tmp/sg" --model "$SMOL" --samples 1 2>&1)
if grep -qxF '[[6, of course.<|im_end|>]]' <<<"$out" && grep -q 'template:       model' <<<"$out"; then ok; else fail "inspect marks: $out"; fi
# reproducible: a second build into another directory gives identical bytes
"${PL[@]}" build --in "$tmp/sg.jsonl" --out "$tmp/sg2" --model "$SMOL" --text >/dev/null 2>&1
cmp -s "$tmp/sg/manifest.json" "$tmp/sg2/manifest.json" && cmp -s "$tmp/sg/shard-00000.h5" "$tmp/sg2/shard-00000.h5" && ok ||
  fail "two conversation builds differ"
# the same build again: complete; --mask last-assistant and --mask all
out=$("${PL[@]}" build --in "$tmp/sg.jsonl" --out "$tmp/sg" --model "$SMOL" --text 2>/dev/null)
grep -q 'already complete' <<<"$out" && ok || fail "conversation re-run: $out"
"${PL[@]}" build --in "$tmp/sg.jsonl" --out "$tmp/sgl" --model "$SMOL" --mask last-assistant >/dev/null 2>&1 &&
  "${PL[@]}" export "$tmp/sgl" --jsonl "$tmp/sgl.ex" --model "$SMOL" 2>/dev/null
got=$(trained "$tmp/sgl.ex")
[ "$got" = $'6, of course.<|im_end|>\nBlue.<|im_end|>' ] && ok || fail "--mask last-assistant: '$got'"
grep -q '"mask":[[:space:]]*"last-assistant"' "$tmp/sgl/manifest.json" && ok || fail "--mask last-assistant recorded in the manifest"
"${PL[@]}" build --in "$tmp/sg.jsonl" --out "$tmp/sga" --model "$SMOL" --mask all >/dev/null 2>&1 &&
  "${PL[@]}" export "$tmp/sga" --jsonl "$tmp/sga.ex" --model "$SMOL" 2>/dev/null
[ "$(spans "$tmp/sga.ex" | grep -c 'U|')" = 0 ] && [ -s "$tmp/sga.ex" ] && ok || fail "--mask all trains every token: $(spans "$tmp/sga.ex")"

# OpenAI messages with a tokenizer.json folder and a named built-in (vicuna):
# the tokenizer adds the one BOS, replies + </s> are trained
out=$("${PL[@]}" build --in "$tmp/oa.jsonl" --out "$tmp/oa" --model "$LLAMA" --template vicuna 2>&1)
if [ $? -eq 0 ] && grep -q '2 samples' <<<"$out"; then ok; else fail "openai build: $out"; fi
"${PL[@]}" export "$tmp/oa" --jsonl "$tmp/oa.ex" --model "$LLAMA" 2>/dev/null
got=$(trained "$tmp/oa.ex")
[ "$got" = $' Hi there</s> ##  Goodbye</s>\n A colour.</s>' ] && ok || fail "openai trained spans: '$got'"
got=$(spans "$tmp/oa.ex" | tail -1)
want="U|<s>A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions. USER: What is red? ASSISTANT: ## T| A colour.</s>"
[ "$got" = "$want" ] && ok || fail "openai sample 2 spans: got '$got'"
grep -q '"template":[[:space:]]*"vicuna"' "$tmp/oa/manifest.json" && grep -q 'template: vicuna' "$tmp/oa/card.md" && ok ||
  fail "template name in manifest and card"
"${PL[@]}" export "$tmp/oa" --jsonl "$tmp/oa.ids" 2>/dev/null
if "$PY" - "$tmp/oa.ids" <<'PY'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
# exactly one BOS (id 1), first and not trained; the last token </s> (id 2) trained
assert len(r) == 2
assert all(d["input_ids"][0] == 1 and d["input_ids"].count(1) == 1 and d["loss_mask"][0] == 0 for d in r), r
assert all(d["input_ids"][-1] == 2 and d["loss_mask"][-1] == 1 for d in r), r
PY
then ok; else fail "openai: one BOS, untrained; </s> last and trained"; fi
# the fixture folder's own (Llama-2) template, format forced
out=$("${PL[@]}" build --in "$tmp/oa.jsonl" --out "$tmp/oa2" --model "$LLAMA" --format openai 2>&1)
if [ $? -eq 0 ] && grep -q '"template":[[:space:]]*"model"' "$tmp/oa2/manifest.json"; then ok; else fail "fixture's own template: $out"; fi
"${PL[@]}" export "$tmp/oa2" --jsonl "$tmp/oa2.ex" --model "$LLAMA" 2>/dev/null
got=$(trained "$tmp/oa2.ex")
[ "$got" = $' Hi there </s> ##  Goodbye </s>\n A colour. </s>' ] || [ "$got" = $' Hi there</s> ##  Goodbye</s>\n A colour.</s>' ] && ok ||
  fail "llama2 template trained spans: '$got'"

# bad input: malformed under --strict, no usable record, no tokenizer, no template, template the vocabulary lacks
expect_clean_error "malformed line under --strict" "${PL[@]}" build --in "$tmp/sg.jsonl" --out "$tmp/st" --model "$SMOL" --strict
err=$("${PL[@]}" build --in "$tmp/sg.jsonl" --out "$tmp/st" --model "$SMOL" --strict 2>&1 >/dev/null)
grep -q 'sg.jsonl:2: wrong role order.*(strict mode)' <<<"$err" && ok || fail "strict message: $err"
[ ! -f "$tmp/st/manifest.json" ] && ok || fail "a failed strict build leaves no manifest"
printf 'nope\n{"conversations": []}\n' >"$tmp/allbad.jsonl"
err=$("${PL[@]}" build --in "$tmp/allbad.jsonl" --out "$tmp/ab" --model "$SMOL" 2>&1 >/dev/null); rc=$?
if [ $rc = 1 ] && [ "$(printf '%s\n' "$err" | grep -c .)" = 3 ] && printf '%s\n' "$err" | tail -1 | grep -q '^potluck: .*allbad.jsonl: no usable record: all 2 records were bad' &&
   grep -q 'allbad.jsonl:2: conversation has no messages' <<<"$err" && [ ! -f "$tmp/ab/manifest.json" ]; then ok
else fail "no usable record (rc=$rc): $err"; fi
expect_clean_error "conversations without a tokenizer" "${PL[@]}" build --in "$tmp/oa.jsonl" --out "$tmp/nt"
expect_clean_error "conversations, tokenizer without a template" "${PL[@]}" build --in "$tmp/oa.jsonl" --out "$tmp/nt" --model "$PHI2"
err=$("${PL[@]}" build --in "$tmp/oa.jsonl" --out "$tmp/nt" --model "$PHI2" 2>&1 >/dev/null)
grep -q 'need a chat template.*--template NAME' <<<"$err" && ok || fail "no-template message: $err"
expect_clean_error "chatml on a Llama-2 vocabulary" "${PL[@]}" build --in "$tmp/oa.jsonl" --out "$tmp/nt" --model "$LLAMA" --template chatml
expect_clean_error "unknown template" "${PL[@]}" build --in "$tmp/oa.jsonl" --out "$tmp/nt" --model "$LLAMA" --template nosuch
expect_clean_error "unknown mask" "${PL[@]}" build --in "$tmp/oa.jsonl" --out "$tmp/nt" --model "$LLAMA" --mask some
# per-sample provenance: a record's "_prov" object becomes its sample's
# /provenance string (compact JSON); records without one get "". Input without
# any "_prov" gives shards with no /provenance dataset at all.
"$PY" - "$tmp" <<'PY'
import json, sys
d = sys.argv[1]
provs = [{"source": "seeds.jsonl:12", "filters": ["filter.length", "dedup.minhash"]}, None,
         {"generator": "generate.self_instruct", "seed": 123, "index": 4, "stage": "03-generate.self_instruct"},
         "not an object", {"source": "caf\u00e9.jsonl:3", "filters": []}]
with open(f"{d}/prov.jsonl", "w") as f, open(f"{d}/noprov.jsonl", "w") as g:
    for i in range(60):
        rec = {"input_ids": [(i * 7 + j) % 512 for j in range(5 + i % 9)]}
        g.write(json.dumps(rec) + "\n")
        if provs[i % 5] is not None: rec["_prov"] = provs[i % 5]
        f.write(json.dumps(rec) + "\n")
PY
out=$("${PL[@]}" build --in "$tmp/prov.jsonl" --out "$tmp/pv" --model "$TOK" --shard-tokens 100 2>&1)
if [ $? -eq 0 ] && grep -q '60 samples' <<<"$out"; then ok; else fail "build with _prov: $out"; fi
out=$("${PL[@]}" build --in "$tmp/noprov.jsonl" --out "$tmp/npv" --model "$TOK" --shard-tokens 100 2>&1)
if [ $? -eq 0 ] && grep -q '60 samples' <<<"$out"; then ok; else fail "build without _prov: $out"; fi
"${PL[@]}" verify "$tmp/pv" >/dev/null 2>&1 && ok || fail "verify a dataset with provenance"
out=$("${PL[@]}" split "$tmp/pv" --eval-permille 300 --train-out "$tmp/pvtr" --eval-out "$tmp/pvev" 2>&1) && ok || fail "split provenance: $out"
out=$("${PL[@]}" merge --out "$tmp/pvmg" "$tmp/pvtr" "$tmp/pvev" "$tmp/npv" 2>&1) && ok || fail "merge provenance: $out"
"$PY" - "$tmp" >"$tmp/peer2" 2>&1 <<'PY'
import json, sys, h5py
d = sys.argv[1]
def check(c, desc): print(("PASS " if c else "FAIL ") + desc)
def compact(p): return json.dumps(p, separators=(",", ":"), ensure_ascii=False) if isinstance(p, dict) else ""
def s(x): return x.decode() if isinstance(x, bytes) else x
def read(ds):
    man = json.load(open(f"{d}/{ds}/manifest.json"))
    ids, provs, cols, gz = [], [], [], True
    for sh in man["shards"]:
        with h5py.File(f"{d}/{ds}/{sh['file']}", "r") as f:
            cols.append("provenance" in f)
            ids += [int(x) for x in f["sample_id"][:]]
            if "provenance" in f:
                p = f["provenance"]
                gz &= p.compression == "gzip" and p.shuffle and p.chunks is not None and h5py.check_string_dtype(p.dtype) is not None
                check(p.shape == (sh["samples"],), f"{ds}/{sh['file']}: /provenance has one entry per sample")
                provs += [s(x) for x in p[:]]
            else:
                provs += [None] * sh["samples"]
    return man, ids, provs, cols, gz
recs = [json.loads(l) for l in open(f"{d}/prov.jsonl")]
want = [compact(r.get("_prov")) for r in recs]
man, ids, provs, cols, gz = read("pv")
check(len(cols) >= 3 and all(cols), f"pv: every one of {len(cols)} shards has /provenance")
check(gz, "pv: /provenance is chunked vlen UTF-8 with shuffle + deflate, like /text")
check(provs == want, "pv: h5py reads each record's _prov as compact JSON, \"\" without: " + repr(provs[:5]))
check(all(p == "" or json.loads(p) == r.get("_prov") for p, r in zip(provs, recs)), "pv: every /provenance string parses back to its _prov")
check(man["provenance"].get("sample_provenance") is True, "pv: manifest says sample_provenance")
byid = dict(zip(ids, provs))
man2, _, _, cols2, _ = read("npv")
check(not any(cols2), "npv: no shard of input without _prov has a 'provenance' dataset")
check("sample_provenance" not in man2["provenance"], "npv: manifest does not mention sample provenance")
n = 0
for side in ("pvtr", "pvev"):
    m, i2, p2, c2, _ = read(side)
    check(all(c2) and m["provenance"].get("sample_provenance") is True, f"{side}: split keeps /provenance")
    check(all(byid[a] == b for a, b in zip(i2, p2)), f"{side}: each sample keeps its provenance")
    n += len(i2)
check(n == 60, f"split sides hold 60 samples ({n})")
m, i3, p3, c3, _ = read("pvmg")
check(all(c3) and len(i3) == 120, f"pvmg: merge has /provenance in every shard ({len(i3)} samples)")
check(all(p == byid[a] for a, p in zip(i3[:60], p3[:60])) and all(p == "" for p in p3[60:]),
      "pvmg: merged samples keep their provenance, \"\" for the dataset without")
PY
rc=$?
while IFS= read -r line; do
  case "$line" in PASS\ *) ok ;; FAIL\ *) fail "h5py: ${line#FAIL }" ;; *) [ -n "$line" ] && echo "peer: $line" >&2 ;; esac
done <"$tmp/peer2"
[ $rc -eq 0 ] || fail "h5py provenance script exited $rc: $(tail -3 "$tmp/peer2")"
out=$("${PL[@]}" inspect "$tmp/pv" --samples 3 2>&1)
if grep -qxF 'provenance: {"source":"seeds.jsonl:12","filters":["filter.length","dedup.minhash"]}' <<<"$out" &&
   grep -qxF 'provenance: {"generator":"generate.self_instruct","seed":123,"index":4,"stage":"03-generate.self_instruct"}' <<<"$out" &&
   [ "$(grep -c '^provenance: {' <<<"$out")" = 2 ] && grep -q '^provenance:     stored per sample' <<<"$out"; then ok
else fail "inspect shows provenance: $out"; fi
out=$("${PL[@]}" inspect "$tmp/npv" --samples 3 2>&1)
if ! grep -q '^provenance: {' <<<"$out" && grep -q '^provenance:     none' <<<"$out"; then ok; else fail "inspect without provenance: $out"; fi
grep -q 'sample provenance: one JSON object per sample' "$tmp/pv/card.md" && ! grep -q 'sample provenance' "$tmp/npv/card.md" && ok ||
  fail "card.md mentions sample provenance only when stored"
# export writes "_prov" objects; building from the export gives the same shards
"${PL[@]}" export "$tmp/pv" --jsonl "$tmp/pv.ex" 2>/dev/null && ok || fail "export with provenance"
"${PL[@]}" build --in "$tmp/pv.ex" --out "$tmp/pv2" --model "$TOK" --shard-tokens 100 >/dev/null 2>&1 && ok || fail "build from the export"
same=1
for f in "$tmp"/pv/shard-*.h5; do cmp -s "$f" "$tmp/pv2/$(basename "$f")" || same=0; done
[ $same = 1 ] && [ "$(ls "$tmp"/pv2/shard-*.h5 | wc -l)" = "$(ls "$tmp"/pv/shard-*.h5 | wc -l)" ] && ok ||
  fail "export -> build with provenance gives different shards"
# a shard whose /provenance does not have one entry per sample is refused cleanly (--trust lets HDF5 see it)
cp -r "$tmp/pv" "$tmp/pvbad"
"$PY" - "$tmp/pvbad/shard-00001.h5" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r+") as f:
    p = [x for x in f["provenance"][:]]
    del f["provenance"]
    f.create_dataset("provenance", data=p[:-1], dtype=h5py.string_dtype("utf-8"))
PY
expect_clean_error "provenance count mismatch" "${PL[@]}" verify "$tmp/pvbad" --trust
err=$("${PL[@]}" verify "$tmp/pvbad" --trust 2>&1 >/dev/null)
grep -q 'shard-00001.h5: /provenance has [0-9]* entries, expected one per sample' <<<"$err" && ok || fail "provenance count message: $err"

check_summary "cli_data"
