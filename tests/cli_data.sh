#!/usr/bin/env bash
# tests/cli_data.sh: `potluck data` end to end on the ASan build, and h5py (the
# peer) reading the shards potluck wrote.
#
# build (pre-tokenized and plain text), verify, inspect, export (round trip
# through build gives byte-identical shards), split, merge; h5py opens every
# shard and reads the same tokens, loss_mask, offsets, sample_id and text that
# went in; a flipped byte, a truncated shard, a missing shard, an unknown
# schema version and bad input lines give one clean "potluck: ..." line.
# Until trainer/main.c dispatches `data`, the command runs through
# build/san/tests/test_shard --cmd data (the same cmd_data code).
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/check.sh
: "${POTLUCK_VENV:?set POTLUCK_VENV (run through make test)}"
: "${POTLUCK_SHARED:?set POTLUCK_SHARED}"
BIN=${POTLUCK_BIN:-build/san/potluck}
if [ -x "$BIN" ] && "$BIN" data --help 2>/dev/null | grep -q 'usage: potluck data'; then
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

out=$("${PL[@]}" build --in "$tmp/pt.jsonl" --out "$tmp/ds" --tokenizer "$TOK" --shard-tokens 30000 --text 2>&1)
if [ $? -eq 0 ] && grep -q '700 samples' <<<"$out"; then ok; else fail "build: $out"; fi
nshards=$(ls "$tmp/ds"/shard-*.h5 | wc -l)
if [ "$nshards" -ge 4 ]; then ok; else fail "expected several shards, got $nshards"; fi
out=$("${PL[@]}" verify "$tmp/ds" 2>&1)
if [ $? -eq 0 ] && grep -q 'verify: .*ok' <<<"$out"; then ok; else fail "verify: $out"; fi
out=$("${PL[@]}" inspect "$tmp/ds" --tokenizer "$TOK" --samples 2 2>&1)
if [ $? -eq 0 ] && grep -q 'samples:        700' <<<"$out" && grep -q 'length histogram' <<<"$out" && grep -q '\[\[' <<<"$out"; then ok
else fail "inspect: $out"; fi
out=$("${PL[@]}" build --in "$tmp/pt.jsonl" --out "$tmp/ds" --tokenizer "$TOK" --shard-tokens 30000 --text 2>&1)
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
"${PL[@]}" export "$tmp/ds" --jsonl "$tmp/ex2.jsonl" --tokenizer "$TOK" 2>/dev/null
if head -1 "$tmp/ex2.jsonl" | grep -q '"spans"' && head -1 "$tmp/ex2.jsonl" | grep -q '"trained":true'; then ok
else fail "export with a tokenizer marks trained spans: $(head -c 300 "$tmp/ex2.jsonl")"; fi

# plain text with the tokenizer
out=$("${PL[@]}" build --in "$tmp/text.jsonl" --out "$tmp/txt" --tokenizer "$TOK" 2>&1)
if [ $? -eq 0 ] && grep -q '3 samples' <<<"$out"; then ok; else fail "text build: $out"; fi
out=$("${PL[@]}" inspect "$tmp/txt" --tokenizer "$TOK" --samples 1 2>&1)
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
expect_clean_error "token id outside the vocabulary" "${PL[@]}" build --in "$tmp/oov.jsonl" --out "$tmp/oov" --tokenizer "$TOK"
expect_clean_error "no dataset" "${PL[@]}" verify "$tmp/nothing"
echo '{"messages": [{"role": "user", "content": "hi"}]}' >"$tmp/conv.jsonl"
expect_clean_error "conversations without the importer" "${PL[@]}" build --in "$tmp/conv.jsonl" --out "$tmp/conv"
check_summary "cli_data"
