#!/usr/bin/env bash
# tests/cli_valgrind.sh: hostile inputs whose memory errors the ASan build
# cannot see, run through the optimized build under valgrind's memcheck.
#
# ASan instruments our code only: a read of freed memory inside a Debian
# library (cJSON) goes unnoticed. valgrind sees every access. Each case must
# end with potluck's normal answer and no memcheck error:
#   data build --in a JSONL whose records on lines 2.. are valid JSON but not
#   objects ("s", 5, [1]): the importer reported the kind of value after
#   freeing it (datasets/import.c; a use-after-free found by fuzzing).
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/check.sh
: "${POTLUCK_SHARED:?set POTLUCK_SHARED}"
BIN=${POTLUCK_BIN_OPT:-build/opt/potluck}
command -v valgrind >/dev/null || { fail "valgrind is not installed (Debian package valgrind)"; check_summary cli_valgrind; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
TOK=$POTLUCK_SHARED/fixtures/stories260K/tok512.bin
# OpenMP's pool and OpenBLAS keep memory until exit: leaks are not this test's business
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}  # potluck re-execs itself without it
VG=(valgrind -q --error-exitcode=99 --leak-check=no --track-origins=no)

printf '%s\n' '{"text": "one story about a cat."}' '"s"' '5' '[1]' '{"text": "two."}' > "$tmp/nonobj.jsonl"
out=$("${VG[@]}" "$BIN" data build --in "$tmp/nonobj.jsonl" --out "$tmp/ds" --tokenizer "$TOK" 2>&1); rc=$?
if [ $rc -ne 99 ] && ! grep -q '^==[0-9]*== ' <<<"$out"; then ok; else fail "non-object records: memcheck: $(grep '^==' <<<"$out" | head -8)"; fi
for want in 'nonobj.jsonl:2: expected a JSON object, found a string' 'nonobj.jsonl:3: expected a JSON object, found a scalar' \
            'nonobj.jsonl:4: expected a JSON object, found an array'; do
  if grep -qF "$want" <<<"$out"; then ok; else fail "non-object records: no '$want' in: $out"; fi
done
echo "note: non-object records under memcheck: exit $rc"
check_summary cli_valgrind
