#!/usr/bin/env bash
# tests/cli_bundle.sh: potluck pack / verify / unpack / inspect on a small
# real run: round trip (unpacked files hash to the lock), the same run packs
# to the same bytes from copies with other file times and umask, GNU tar
# lists and extracts it, --data modes, tampering caught and named (a changed
# byte in every entry, the lock, an added and a removed entry, in a directory
# and inside the archive), the card's front matter, clean errors.
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/check.sh
source tests/bundle_run.sh
BIN=${POTLUCK_BIN:-$PWD/build/san/potluck}
SHARED=${POTLUCK_SHARED:-../shared}
export TINY=$SHARED/fixtures/gguf-tiny-llama/llama-2-tiny-random.gguf
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

make_run "$T" && [ -f "$T/run/results.json" ] && ok || { fail "make_run: $(tail -5 "$T/run.log")"; check_summary cli_bundle; exit 1; }

# ------------------------------------------------------------ round trip
out=$("$BIN" pack "$T/run" -o "$T/b.potluck" 2>&1) && grep -q "packed .*b.potluck" <<<"$out" && ok || fail "pack: $out"
out=$("$BIN" verify "$T/b.potluck" 2>&1) && grep -q "match the lock; not signed" <<<"$out" && ok || fail "verify: $out"
out=$("$BIN" unpack "$T/b.potluck" "$T/u" 2>&1) && ok || fail "unpack: $out"
python3 - "$T/u" <<'PY' && ok || fail "unpacked files hash to the lock"
import hashlib, json, os, sys
d = sys.argv[1]
lock = json.load(open(os.path.join(d, "potluck.lock.json")))
assert lock["_type"] == "https://in-toto.io/Statement/v1" and lock["predicateType"] == "https://slsa.dev/provenance/v1"
subj = {s["name"]: s for s in lock["subject"]}
files = set()
for root, _, fs in os.walk(d):
    for f in fs:
        files.add(os.path.relpath(os.path.join(root, f), d))
assert files == set(subj) | {"potluck.lock.json"}, files ^ (set(subj) | {"potluck.lock.json"})
for n, s in subj.items():
    b = open(os.path.join(d, n), "rb").read()
    assert hashlib.sha256(b).hexdigest() == s["digest"]["sha256"] and len(b) == s["annotations"]["size"], n
for must in ["README.md", "recipe/recipe.lua", "recipe/corpus.txt", "plugins/prelude.lua", "plugins/lib/length.lua",
             "adapter/adapter_model.safetensors", "adapter/adapter_config.json", "results.json", "plan.json",
             "data/train/manifest.json", "data/train/shard-00000.h5", "data/eval/manifest.json", "train/config.json"]:
    assert must in subj, must
p = lock["predicate"]
bd = p["buildDefinition"]
deps = {x["name"]: x for x in bd["resolvedDependencies"]}
assert "base/weights" in deps and len(deps["base/weights"]["digest"]["sha256"]) == 64, deps.keys()
assert deps["base/weights"]["digest"]["sha256"] == hashlib.sha256(open(os.environ["TINY"], "rb").read()).hexdigest()
assert "data/train/shard-00000.h5" in deps and "recipe/recipe.lua" in deps and "plugins/lib/exact_dedup.lua" in deps
assert bd["internalParameters"]["seed"] == 7 and bd["internalParameters"]["lora"]["r"] == 4
assert bd["internalParameters"]["train"]["steps"] == 3 and "02-filter.length" in bd["internalParameters"]["stage_seeds"]
m = p["runDetails"]["metadata"]
assert m["potluck_host"]["backend"] == "cpu" and m["potluck_wall_seconds"] > 0 and "startedOn" in m
assert p["runDetails"]["builder"]["version"]["potluck"]
PY
# the unpacked folder verifies, and takes the umask's mode, not mkdtemp's 0700
out=$("$BIN" verify "$T/u" 2>&1) && ok || fail "verify dir: $out"
[ "$(stat -c %a "$T/u")" = 755 ] && ok || fail "unpacked folder mode $(stat -c %a "$T/u")"

# ------------------------------------------------------------ card
python3 - "$T/u/README.md" <<'PY' && ok || fail "card front matter and body"
import sys
t = open(sys.argv[1]).read()
assert t.startswith("---\n")
fm, body = t[4:].split("\n---\n", 1)
for k in ["license: apache-2.0", 'base_model: "llama-2-tiny-random.gguf"', "datasets:", "tags:", "model-index:", "name: eval_loss", "name: base_eval_loss"]:
    assert k in fm, k
for k in ["## Data", "| 02-filter.length | 60 | 59 | 1 | N chars < min_chars N: 1 |", "| 03-dedup.exact | 59 | 58 | 1 |", "## Training", "r=4", "lr=0.001",
          "hardware:", "wall time", "## Results", "eval_loss", "Llama", "sha256"]:
    assert k in body, k
PY


# ------------------------------------------------------------ same run, same bytes
(umask 022; cp -r "$T/run" "$T/copy1"; find "$T/copy1" -exec touch -d '2001-02-03 04:05:06' {} +)
(umask 077; mkdir "$T/copy2"; (cd "$T/run" && tar cf - .) | (cd "$T/copy2" && tar xf - --no-same-permissions); find "$T/copy2" -exec touch -d '2030-01-01 00:00:00' {} +)
[ "$(stat -c %a "$T/copy2/results.json")" != "$(stat -c %a "$T/copy1/results.json")" ] && ok || fail "copies differ in mode"
(umask 077; "$BIN" pack "$T/copy1" -o "$T/c1.potluck" >/dev/null 2>&1)
(umask 022; "$BIN" pack "$T/copy2" -o "$T/c2.potluck" >/dev/null 2>&1)
cmp -s "$T/c1.potluck" "$T/c2.potluck" && ok || fail "two copies pack to different bytes"
cmp -s "$T/b.potluck" "$T/c1.potluck" && ok || fail "copy packs differently from the original"
"$BIN" pack "$T/run" -o "$T/b2.potluck" >/dev/null 2>&1; cmp -s "$T/b.potluck" "$T/b2.potluck" && ok || fail "pack twice: different bytes"

# ------------------------------------------------------------ GNU tar reads it
n_lock=$(python3 -c "import json;print(len(json.load(open('$T/u/potluck.lock.json'))['subject'])+1)")
lst=$(tar --zstd -tvf "$T/b.potluck" 2>&1); rc=$?
[ $rc = 0 ] && [ "$(grep -c . <<<"$lst")" = "$n_lock" ] && head -1 <<<"$lst" | grep -q "potluck.lock.json" && ok || fail "tar --zstd -tvf: rc=$rc $lst"
grep -q "adapter/adapter_model.safetensors" <<<"$lst" && ! grep -qv -- "-rw-r--r-- 0/0 " <<<"$lst" && ok || fail "tar listing: modes/owners: $lst"
mkdir "$T/gt" && tar --zstd -xf "$T/b.potluck" -C "$T/gt" && "$BIN" verify "$T/gt" >/dev/null 2>&1 && ok || fail "tar -x then verify"
echo "note: $(head -3 <<<"$lst" | tr '\n' ';')"

# ------------------------------------------------------------ --data modes
"$BIN" pack "$T/run" -o "$T/m.potluck" --data manifest >/dev/null 2>&1 && "$BIN" verify "$T/m.potluck" >/dev/null 2>&1 && ok || fail "--data manifest"
"$BIN" pack "$T/run" -o "$T/n.potluck" --data none >/dev/null 2>&1 && "$BIN" verify "$T/n.potluck" >/dev/null 2>&1 && ok || fail "--data none"
lm=$(tar --zstd -tf "$T/m.potluck"); ln=$(tar --zstd -tf "$T/n.potluck"); lk=$(tar --zstd -xOf "$T/n.potluck" potluck.lock.json)
grep -q "data/train/manifest.json" <<<"$lm" && ! grep -q "\.h5" <<<"$lm" && ok || fail "--data manifest: no shards: $lm"
! grep -q "^data/" <<<"$ln" && ok || fail "--data none: no data: $ln"
grep -q '"data/train/shard-00000.h5"' <<<"$lk" && ok || fail "--data none: shards still pinned in the lock"

# ------------------------------------------------------------ tampering, unpacked
while IFS= read -r f; do
  cp "$T/u/$f" "$T/saved"
  python3 -c "
import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); i=len(b)//2; b[i]^=1; open(p,'wb').write(b)" "$T/u/$f"
  err=$("$BIN" verify "$T/u" 2>&1 >/dev/null); rc=$?
  if [ $rc != 0 ] && grep -qF "$f" <<<"$err" && [ "$(grep -c . <<<"$err")" = 1 ]; then ok; else fail "changed byte in $f: rc=$rc $err"; fi
  cp "$T/saved" "$T/u/$f"
done < <(cd "$T/u" && find . -type f | sed 's|^\./||' | sort)
"$BIN" verify "$T/u" >/dev/null 2>&1 && ok || fail "restored dir verifies"
echo "extra" > "$T/u/data/extra.txt"
expect_clean_error "added entry (dir)" "$BIN" verify "$T/u"
err=$("$BIN" verify "$T/u" 2>&1); grep -q "data/extra.txt': not in the lock" <<<"$err" && ok || fail "added entry named: $err"
rm "$T/u/data/extra.txt"
mv "$T/u/train/metrics.jsonl" "$T/saved"
err=$("$BIN" verify "$T/u" 2>&1); grep -q "train/metrics.jsonl: in the lock but missing" <<<"$err" && ok || fail "removed entry named: $err"
mv "$T/saved" "$T/u/train/metrics.jsonl"
cp "$T/u/potluck.lock.json" "$T/saved"
sed -i 's/"seed":\t7/"seed":\t8/' "$T/u/potluck.lock.json"
cmp -s "$T/saved" "$T/u/potluck.lock.json" && fail "sed changed nothing in the lock" || ok
err=$("$BIN" verify "$T/u" 2>&1); grep -q "potluck.lock.json: changed after packing" <<<"$err" && ok || fail "changed lock named: $err"
cp "$T/saved" "$T/u/potluck.lock.json"
ln -s /etc/passwd "$T/u/link"
expect_clean_error "symlink in dir" "$BIN" verify "$T/u"
rm "$T/u/link"

# ------------------------------------------------------------ tampering, inside the archive
zstd -q -d -c "$T/b.potluck" >"$T/b.tar"
retar() { # retar MODE OUT: rewrite b.tar (python tarfile) and compress it
  python3 - "$T/b.tar" "$T/t.tar" "$1" <<'PY'
import io, sys, tarfile
src, dst, mode = sys.argv[1:4]
with tarfile.open(src) as a, tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as b:
    for m in a.getmembers():
        data = a.extractfile(m).read()
        if mode == "flip" and m.name == "adapter/adapter_model.safetensors":
            data = bytearray(data); data[-1] ^= 0x40; data = bytes(data)
        if mode == "lock" and m.name == "potluck.lock.json":
            data = data.replace(b'"seed":\t7', b'"seed":\t9')
        if mode == "drop" and m.name == "results.json":
            continue
        b.addfile(m, io.BytesIO(data))
        if mode == "add" and m.name == "README.md":
            e = tarfile.TarInfo("zz-added.txt"); e.size = 3
            b.addfile(e, io.BytesIO(b"hi\n"))
PY
  zstd -q -f "$T/t.tar" -o "$2"
}
retar same "$T/same.potluck"; "$BIN" verify "$T/same.potluck" >/dev/null 2>&1 && ok || fail "rewritten unchanged archive verifies"
retar flip "$T/flip.potluck"; err=$("$BIN" verify "$T/flip.potluck" 2>&1); [ $? != 0 ] && grep -q "adapter/adapter_model.safetensors: sha256 .* differs from the lock" <<<"$err" && ok || fail "flip in archive: $err"
retar lock "$T/lock.potluck"; err=$("$BIN" verify "$T/lock.potluck" 2>&1); [ $? != 0 ] && grep -q "potluck.lock.json: changed after packing" <<<"$err" && ok || fail "lock in archive: $err"
retar drop "$T/drop.potluck"; err=$("$BIN" verify "$T/drop.potluck" 2>&1); [ $? != 0 ] && grep -q "results.json: in the lock but missing" <<<"$err" && ok || fail "drop in archive: $err"
retar add "$T/add.potluck"; err=$("$BIN" verify "$T/add.potluck" 2>&1); [ $? != 0 ] && grep -q "zz-added.txt': not in the lock" <<<"$err" && ok || fail "add in archive: $err"
head -c 20000 "$T/b.potluck" >"$T/trunc.potluck"
expect_clean_error "truncated archive" "$BIN" verify "$T/trunc.potluck"
for f in flip lock drop add; do echo "note: $f -> $("$BIN" verify "$T/$f.potluck" 2>&1)"; done

# ------------------------------------------------------------ inspect, without extracting
before=$(ls -lA --time-style=full-iso "$T")
out=$(cd "$T" && "$BIN" inspect b.potluck 2>&1); rc=$?
[ $rc = 0 ] && grep -q "^license: apache-2.0" <<<"$out" && grep -q "recipe:    bundle-test" <<<"$out" && grep -q "eval_loss=" <<<"$out" \
  && grep -q "signer:    (not signed)" <<<"$out" && grep -q "verified:  yes" <<<"$out" && grep -q "adapter/adapter_model.safetensors" <<<"$out" && ok || fail "inspect: $out"
[ "$before" = "$(ls -lA --time-style=full-iso "$T")" ] && ok || fail "inspect wrote something"
err=$("$BIN" inspect "$T/flip.potluck" 2>&1); [ $? != 0 ] && grep -q "does not verify" <<<"$err" && ok || fail "inspect of a tampered bundle"

# ------------------------------------------------------------ errors
expect_clean_error "pack: not a run dir" "$BIN" pack "$T/rec" -o "$T/x.potluck"
expect_clean_error "pack: bad --data" "$BIN" pack "$T/run" -o "$T/x.potluck" --data some
expect_clean_error "verify: missing" "$BIN" verify "$T/nope.potluck"
expect_clean_error "verify: not a bundle" "$BIN" verify "$T/rec/recipe.lua"
expect_clean_error "unpack: target exists" "$BIN" unpack "$T/b.potluck" "$T/u"
expect_clean_error "unpack: tampered" "$BIN" unpack "$T/flip.potluck" "$T/u2"
[ ! -e "$T/u2" ] && [ -z "$(ls -a "$T" | grep unpack-)" ] && ok || fail "failed unpack left files"
[ ! -e "$T/x.potluck" ] && ok || fail "failed pack left its output"
cp -r "$T/run" "$T/badrun"
python3 -c "
import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[-10]^=1; open(p,'wb').write(b)" "$T/badrun/data/train/shard-00000.h5"
expect_clean_error "pack: a shard changed since the run" "$BIN" pack "$T/badrun" -o "$T/x.potluck"
err=$("$BIN" pack "$T/badrun" -o "$T/x.potluck" 2>&1); grep -q "shard-00000.h5: sha256 .* its manifest recorded" <<<"$err" && ok || fail "changed shard named: $err"

check_summary cli_bundle
