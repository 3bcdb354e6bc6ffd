#!/usr/bin/env bash
# tests/test_layering.sh: the house stays a stack (tests/layering.sh): the
# tree passes; upward includes planted in a temporary copy (never in the
# tree) fail and are named; a downward one passes; and, on the objects of
# the optimized build, no layer uses a symbol defined above it (also shown
# failing on a planted call).
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/check.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

out=$(bash tests/layering.sh 2>&1)
if [ $? = 0 ] && [ -z "$out" ]; then ok; else fail "the tree has upward includes: $out"; fi

copy() { rm -rf "$tmp/t"; mkdir -p "$tmp/t"; for l in core datasets lora trainer plugins cli; do cp -r "$l" "$tmp/t/"; done; }
expect_upward() { # DESC FILE LINE_TEXT PATTERN: plant LINE_TEXT at the top of FILE; the check must fail naming it
  copy; sed -i "1i $3" "$tmp/t/$2"
  local o; o=$(bash tests/layering.sh "$tmp/t" 2>&1); local rc=$?
  echo "note: $1: exit $rc: $o"
  if [ $rc != 0 ] && grep -q "^$2:1: .*$4" <<<"$o"; then ok; else fail "$1: exit $rc, output: $o"; fi
}
expect_upward "core includes trainer" core/error.c '#include "../trainer/model.h"' 'trainer/ is above core/'
expect_upward "lora includes trainer (root path)" lora/lora.h '#include "trainer/train.h"' 'trainer/ is above lora/'
expect_upward "trainer/cpu includes plugins" trainer/cpu/cpu_linear.c '#include "../../plugins/host.h"' 'plugins/ is above trainer/'
expect_upward "plugins includes cli" plugins/pipeline.c '#include "../cli/cli.h"' 'cli/ is above plugins/'
expect_upward "an include of no file" datasets/shard.c '#include "nowhere.h"' 'resolves to no file'

copy; sed -i '1i #include "../core/error.h"' "$tmp/t/cli/main.c"; sed -i '1i #include "../lora/lora.h"' "$tmp/t/trainer/train.c"
o=$(bash tests/layering.sh "$tmp/t" 2>&1)
if [ $? = 0 ]; then ok; else fail "downward includes flagged: $o"; fi

# symbols: the objects of the optimized build
if [ -f build/opt/libpotluck.a ]; then
  o=$(bash tests/layering.sh --objects build/opt 2>&1)
  if [ $? = 0 ]; then ok; else fail "a layer uses symbols of a layer above it: $o"; fi
  copy
  mkdir -p "$tmp/t/b/core" "$tmp/t/b/trainer"
  printf '#include "../trainer/model.h"\nvoid planted(pl_model *m);\nvoid planted(pl_model *m) { pl_model_free(m); }\n' >"$tmp/t/core/planted.c"
  gcc -D_GNU_SOURCE -I"$tmp/t" -c "$tmp/t/core/planted.c" -o "$tmp/t/b/core/planted.o" &&
    cp build/opt/trainer/model.o "$tmp/t/b/trainer/model.o"
  o=$(cd "$tmp/t" && bash "$OLDPWD/tests/layering.sh" --objects b 2>&1); rc=$?
  echo "note: planted call core -> trainer: exit $rc: $o"
  if [ $rc != 0 ] && grep -q '^core/planted.o: uses pl_model_free, defined in trainer/' <<<"$o"; then ok
  else fail "planted call not caught: exit $rc: $o"; fi
else
  echo "note: no build/opt/libpotluck.a: symbol check skipped"
fi
check_summary layering
