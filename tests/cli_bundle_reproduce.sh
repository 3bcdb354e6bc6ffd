#!/usr/bin/env bash
# tests/cli_bundle_reproduce.sh: `potluck reproduce` at the same size: pack a
# small real run, rerun it from the bundle on the same base and thread count:
# the adapter, results.json and the shards are byte-identical and the table
# says so. A base with another sha256, a tampered bundle, --size and an
# existing --out are refused with one line.
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/check.sh
source tests/bundle_run.sh
BIN=${POTLUCK_BIN:-$PWD/build/san/potluck}
SHARED=${POTLUCK_SHARED:-../shared}
export TINY=$SHARED/fixtures/gguf-tiny-llama/llama-2-tiny-random.gguf
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export POTLUCK_PLUGINS=$T/no-user-plugins

make_run "$T" && ok || fail "make_run: $(tail -5 "$T/run.log")"
"$BIN" pack "$T/run" -o "$T/b.potluck" >/dev/null 2>&1 && ok || fail "pack"
out=$("$BIN" reproduce "$T/b.potluck" --out "$T/r" 2>&1); rc=$?
table=$(grep '^|' <<<"$out")
[ $rc = 0 ] && grep -q "reproduce: identical" <<<"$out" && ok || fail "reproduce: rc=$rc $(tail -20 <<<"$out")"
for w in "adapter/adapter_model.safetensors" "adapter/adapter_config.json" "results.json (bytes)" "eval_loss" "base_eval_loss" \
         "final_train_loss" "data/train/shard-00000.h5" "data/eval/shard-00000.h5" "plugins (each step's sha256)"; do
  grep -F "| $w " <<<"$table" | grep -q "| identical |" && ok || fail "table row '$w': $table"
done
cmp -s "$T/run/export/adapter/adapter_model.safetensors" "$T/r/run/export/adapter/adapter_model.safetensors" && cmp -s "$T/run/results.json" "$T/r/run/results.json" \
  && ok || fail "adapter/results not byte-identical on disk"
echo "$table" | sed 's/^/note: /'

# refusals
cp "$TINY" "$T/other.gguf"
python3 -c "
import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[-100]^=1; open(p,'wb').write(b)" "$T/other.gguf"
expect_clean_error "another base" "$BIN" reproduce "$T/b.potluck" --out "$T/r2" --base "$T/other.gguf"
err=$("$BIN" reproduce "$T/b.potluck" --out "$T/r3" --base "$T/other.gguf" 2>&1 >/dev/null); grep -q "is not the bundle's base" <<<"$err" && ok || fail "another base named: $err"
expect_clean_error "--size" "$BIN" reproduce "$T/b.potluck" --out "$T/r4" --size 13b
expect_clean_error "existing --out" "$BIN" reproduce "$T/b.potluck" --out "$T/r"
zstd -q -d -c "$T/b.potluck" | python3 -c "
import io, sys, tarfile
a = tarfile.open(fileobj=io.BytesIO(sys.stdin.buffer.read()))
with tarfile.open('$T/t.tar', 'w', format=tarfile.PAX_FORMAT) as b:
    for m in a.getmembers():
        d = a.extractfile(m).read()
        if m.name == 'recipe/recipe.lua': d = d.replace(b'steps = 3', b'steps = 4')
        b.addfile(m, io.BytesIO(d))"
zstd -q -f "$T/t.tar" -o "$T/t.potluck"
expect_clean_error "tampered recipe" "$BIN" reproduce "$T/t.potluck" --out "$T/r5"
[ ! -e "$T/r5/run" ] && ok || fail "tampered bundle ran"

check_summary cli_bundle_reproduce
