#!/usr/bin/env bash
# tests/cli_bundle_hostile.sh: hostile .potluck archives built here (python3's
# tarfile + the zstd CLI), each with a valid lock for one honest file plus
# one attack: absolute path, ../ escape, a symlink pointing out then a file
# through it, a hard link, a device node, a duplicate entry, an entry larger
# than declared, an entry not in the lock, a compression bomb (a 256 MiB
# entry the lock declares small; and 5000 more entries than declared), an entry
# before the lock, no lock. `potluck unpack` must refuse each with one line,
# and nothing may appear outside the fresh target: the target's parent (and
# its parent, where ../ would land) list the same before and after.
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/check.sh
BIN=${POTLUCK_BIN:-$PWD/build/san/potluck}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/arch" "$T/work/box"

# mk NAME ATTACK: $T/arch/NAME.potluck
mk() {
  python3 - "$T/arch/$1.tar" "$2" "$T/work/box/abs-target" <<'PY'
import hashlib, io, json, sys, tarfile
out, attack, abs_target = sys.argv[1:4]
ok = b"an honest file\n"
def lock(files):
    st = {"_type": "https://in-toto.io/Statement/v1",
          "subject": [{"name": n, "digest": {"sha256": hashlib.sha256(d).hexdigest()}, "annotations": {"size": len(d)}} for n, d in files],
          "predicateType": "https://slsa.dev/provenance/v1",
          "predicate": {"runDetails": {"metadata": {"potluck_lock_sha256": "0" * 64}}}}
    t = json.dumps(st, indent="\t").replace('"potluck_lock_sha256": ', '"potluck_lock_sha256":\t') + "\n"
    b = t.encode()
    return b.replace(b"0" * 64, hashlib.sha256(b).hexdigest().encode())
def reg(tf, name, data, size=None):
    i = tarfile.TarInfo(name); i.size = len(data) if size is None else size; i.mode = 0o644
    tf.addfile(i, io.BytesIO(data))
def special(tf, name, typ, **kw):
    i = tarfile.TarInfo(name); i.type = typ
    for k, v in kw.items(): setattr(i, k, v)
    tf.addfile(i)
declared = [("ok.txt", ok)]
if attack == "oversize": declared = [("ok.txt", ok)]
if attack == "bomb": declared = [("ok.txt", ok), ("big.bin", b"\0" * 100)]
if attack in ("abs", "dotdot", "symlink", "hardlink", "device"):
    pass
with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tf:
    if attack == "lock-not-first":
        reg(tf, "ok.txt", ok)
    if attack != "no-lock":
        reg(tf, "potluck.lock.json", lock(declared))
    if attack == "abs":
        reg(tf, abs_target, b"pwned\n")
    elif attack == "dotdot":
        reg(tf, "../escape.txt", b"pwned\n")
    elif attack == "dotdot-deep":
        reg(tf, "data/../../escape.txt", b"pwned\n")
    elif attack == "symlink":
        special(tf, "link", tarfile.SYMTYPE, linkname="..")
        reg(tf, "link/through-link.txt", b"pwned\n")
    elif attack == "hardlink":
        special(tf, "hl", tarfile.LNKTYPE, linkname="ok.txt")
    elif attack == "device":
        special(tf, "dev", tarfile.CHRTYPE, devmajor=1, devminor=3)
    elif attack == "fifo":
        special(tf, "fifo", tarfile.FIFOTYPE)
    elif attack == "duplicate":
        reg(tf, "ok.txt", ok)
    elif attack == "oversize":
        reg(tf, "ok.txt", ok + b"and then some more bytes than the lock declares\n")
        ok = None
    elif attack == "not-in-lock":
        reg(tf, "extra.txt", b"not declared\n")
    elif attack == "bomb":
        class Zeros(io.RawIOBase):
            def __init__(self, n): self.n = n
            def readable(self): return True
            def readinto(self, b):
                k = min(len(b), self.n); b[:k] = bytes(k); self.n -= k; return k
        i = tarfile.TarInfo("big.bin"); i.size = 256 << 20
        tf.addfile(i, io.BufferedReader(Zeros(i.size), 1 << 20))
    elif attack == "many":
        reg(tf, "ok.txt", ok)
        for k in range(5000):
            reg(tf, f"f{k:05d}", b"")
        ok = None
    if ok is not None and attack != "lock-not-first":
        reg(tf, "ok.txt", ok)
PY
  zstd -q -f --rm "$T/arch/$1.tar" -o "$T/arch/$1.potluck"
}

# an honest one first: the harness itself must make bundles potluck accepts
mk honest none
out=$("$BIN" unpack "$T/arch/honest.potluck" "$T/work/box/honest" 2>&1) && [ -f "$T/work/box/honest/ok.txt" ] && ok || fail "honest archive: $out"
rm -rf "$T/work/box/honest"

snap() { (cd "$T/work" && find . -printf '%p %y %s\n' | sort); }
try() { # try NAME ATTACK EXPECTED-SUBSTRING
  mk "$1" "$2"
  local before after err rc
  before=$(snap)
  err=$("$BIN" unpack "$T/arch/$1.potluck" "$T/work/box/out" 2>&1 >/dev/null); rc=$?
  after=$(snap)
  if [ $rc = 0 ] || [ $rc -ge 128 ]; then fail "$1: rc=$rc: $err"
  elif grep -qE 'Sanitizer|runtime error' <<<"$err"; then fail "$1: sanitizer: $err"
  elif [ "$(grep -c . <<<"$err")" != 1 ] || ! grep -q '^potluck: ' <<<"$err"; then fail "$1: expected one line, got: $err"
  elif ! grep -qF -- "$3" <<<"$err"; then fail "$1: expected '$3' in: $err"
  else ok; echo "note: $1 -> $err"; fi
  [ "$before" = "$after" ] && ok || fail "$1: the filesystem around the target changed: $(diff <(echo "$before") <(echo "$after"))"
  [ ! -e "$T/work/box/abs-target" ] && [ ! -e "$T/work/escape.txt" ] && [ ! -e "$T/work/box/escape.txt" ] && ok || fail "$1: wrote outside"
  # verify refuses the same archive
  "$BIN" verify "$T/arch/$1.potluck" >/dev/null 2>&1 && fail "$1: verify accepted it" || ok
}
try abs abs "unsafe name"
try dotdot dotdot "unsafe name"
try dotdot-deep dotdot-deep "unsafe name"
try symlink symlink "a symbolic link: refused"
try hardlink hardlink "a hard link: refused"
try device device "a character device: refused"
try fifo fifo "a FIFO: refused"
try duplicate duplicate "duplicate entry refused"
try oversize oversize "the lock says 15 (larger than declared: refused)"
try not-in-lock not-in-lock "'extra.txt': not in the lock: refused"
t0=$(date +%s%N)
try bomb bomb "'big.bin': 268435456 bytes, the lock says 100 (larger than declared: refused)"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "note: bomb: $(stat -c %s "$T/arch/bomb.potluck") compressed bytes declaring 256 MiB, refused in ${ms} ms (archive build included)"
try many many "'f00000': not in the lock: refused"
try lock-not-first lock-not-first "the first entry is 'ok.txt', expected potluck.lock.json"
try no-lock no-lock "expected potluck.lock.json"
# a target inside a folder that does not exist, and one given with ..
expect_clean_error "unpack into a missing parent" "$BIN" unpack "$T/arch/honest.potluck" "$T/nope/deeper/out"

check_summary cli_bundle_hostile
