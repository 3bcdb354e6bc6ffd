#!/usr/bin/env bash
# tests/cli_bundle_sign.sh: signatures in the OpenSSF model-signing format,
# against the real peer (`model_signing`, pinned in
# tests/requirements-signing.txt, venv from `make venv-signing`):
#   potluck keygen + pack --sign: potluck verify --key accepts, a wrong key
#   is refused; `model_signing verify key` accepts the unpacked bundle and
#   rejects it after one byte of one file changes;
#   `model_signing sign key` on a folder: potluck verify --key accepts it and
#   rejects it tampered (a changed byte, an added file, a removed file).
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/check.sh
source tests/bundle_run.sh
BIN=${POTLUCK_BIN:-$PWD/build/san/potluck}
SHARED=${POTLUCK_SHARED:-../shared}
export TINY=$SHARED/fixtures/gguf-tiny-llama/llama-2-tiny-random.gguf
SV=${POTLUCK_SIGN_VENV:-${POTLUCK_CACHE:-$HOME/.cache/potluck}/venv-signing-$(sha256sum tests/requirements-signing.txt | cut -c1-16)}
MS=$SV/bin/model_signing
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
if [ ! -x "$MS" ]; then fail "no model_signing at $MS (make venv-signing)"; check_summary cli_bundle_sign; exit 1; fi

make_run "$T" && ok || fail "make_run: $(tail -5 "$T/run.log")"

# ------------------------------------------------------------ keys
out=$("$BIN" keygen "$T/k.pem" 2>&1) && [ -f "$T/k.pub.pem" ] && [ "$(stat -c %a "$T/k.pem")" = 600 ] && ok || fail "keygen: $out"
openssl pkey -in "$T/k.pem" -noout -text 2>/dev/null | grep -q "prime256v1\|P-256" && ok || fail "keygen: not a P-256 key"
expect_clean_error "keygen over an existing key" "$BIN" keygen "$T/k.pem"
"$BIN" keygen "$T/other.pem" >/dev/null 2>&1

# ------------------------------------------------------------ potluck signs
out=$("$BIN" pack "$T/run" -o "$T/s.potluck" --sign "$T/k.pem" 2>&1) && grep -q "signed by key" <<<"$out" && ok || fail "pack --sign: $out"
out=$("$BIN" verify "$T/s.potluck" --key "$T/k.pub.pem" 2>&1) && grep -q "signature OK" <<<"$out" && ok || fail "verify --key: $out"
out=$("$BIN" verify "$T/s.potluck" 2>&1) && grep -q "not checked" <<<"$out" && ok || fail "verify without --key reports the signer: $out"
expect_clean_error "wrong key" "$BIN" verify "$T/s.potluck" --key "$T/other.pub.pem"
"$BIN" pack "$T/run" -o "$T/u.potluck" >/dev/null 2>&1
expect_clean_error "unsigned bundle with --key" "$BIN" verify "$T/u.potluck" --key "$T/k.pub.pem"
"$BIN" pack "$T/run" -o "$T/s2.potluck" --sign "$T/k.pem" >/dev/null 2>&1
cmp -s "$T/s.potluck" "$T/s2.potluck" && echo "note: signed packs are byte-identical (deterministic ECDSA)" || echo "note: signed packs differ only in model.sig (ECDSA nonces)"
out=$("$BIN" unpack "$T/s.potluck" "$T/us" --key "$T/k.pub.pem" 2>&1) && ok || fail "unpack --key: $out"
out=$("$MS" verify key "$T/us" --signature "$T/us/model.sig" --public_key "$T/k.pub.pem" 2>&1); rc=$?
[ $rc = 0 ] && grep -q "Verification succeeded" <<<"$out" && ok || fail "model_signing verify key on a potluck-signed bundle: rc=$rc $out"
python3 -c "
import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[len(b)//2]^=1; open(p,'wb').write(b)" "$T/us/adapter/adapter_model.safetensors"
out=$("$MS" verify key "$T/us" --signature "$T/us/model.sig" --public_key "$T/k.pub.pem" 2>&1); rc=$?
[ $rc != 0 ] || ! grep -q "Verification succeeded" <<<"$out" && grep -q "adapter/adapter_model.safetensors" <<<"$out" && ok || fail "model_signing accepted a changed byte: rc=$rc $out"
expect_clean_error "potluck verify of the changed byte" "$BIN" verify "$T/us" --key "$T/k.pub.pem"
out=$("$MS" verify key "$T/us" --signature "$T/us/model.sig" --public_key "$T/other.pub.pem" 2>&1); rc=$?
! grep -q "Verification succeeded" <<<"$out" && ok || fail "model_signing accepted the wrong key"

# ------------------------------------------------------------ model_signing signs
mkdir -p "$T/m/sub"
printf 'weights\n' >"$T/m/model.bin"; printf '{"a":1}\n' >"$T/m/config.json"; head -c 100000 /dev/urandom >"$T/m/sub/shard.bin"
openssl ecparam -name prime256v1 -genkey -noout -out "$T/mk.pem" 2>/dev/null && openssl ec -in "$T/mk.pem" -pubout -out "$T/mpub.pem" 2>/dev/null
out=$("$MS" sign key "$T/m" --private_key "$T/mk.pem" --signature "$T/m/model.sig" 2>&1); rc=$?
[ $rc = 0 ] && [ -f "$T/m/model.sig" ] && ok || fail "model_signing sign key: rc=$rc $out"
out=$("$BIN" verify "$T/m" --key "$T/mpub.pem" 2>&1) && grep -q "signature OK" <<<"$out" && ok || fail "potluck verify of a model_signing-signed folder: $out"
expect_clean_error "model_signing folder, wrong key" "$BIN" verify "$T/m" --key "$T/k.pub.pem"
cp "$T/m/sub/shard.bin" "$T/saved"
python3 -c "
import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[777]^=1; open(p,'wb').write(b)" "$T/m/sub/shard.bin"
err=$("$BIN" verify "$T/m" --key "$T/mpub.pem" 2>&1); [ $? != 0 ] && grep -q "sub/shard.bin: sha256 .* differs from the signed" <<<"$err" && ok || fail "changed byte: $err"
cp "$T/saved" "$T/m/sub/shard.bin"
echo new >"$T/m/added.txt"
err=$("$BIN" verify "$T/m" --key "$T/mpub.pem" 2>&1); [ $? != 0 ] && grep -q "added.txt: not covered by the signature" <<<"$err" && ok || fail "added file: $err"
rm "$T/m/added.txt"; mv "$T/m/config.json" "$T/saved"
err=$("$BIN" verify "$T/m" --key "$T/mpub.pem" 2>&1); [ $? != 0 ] && grep -q "config.json: signed but missing" <<<"$err" && ok || fail "removed file: $err"
mv "$T/saved" "$T/m/config.json"
"$BIN" verify "$T/m" --key "$T/mpub.pem" >/dev/null 2>&1 && ok || fail "restored folder verifies"
python3 - "$T/m/model.sig" <<'PY'
import base64, json, sys
b = json.load(open(sys.argv[1]))
p = json.loads(base64.b64decode(b["dsseEnvelope"]["payload"]))
p["predicate"]["resources"][0]["digest"] = "0" * 64
b["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(p).encode()).decode()
json.dump(b, open(sys.argv[1], "w"))
PY
expect_clean_error "model.sig payload changed" "$BIN" verify "$T/m" --key "$T/mpub.pem"

check_summary cli_bundle_sign
