#!/usr/bin/env bash
# cli_confine.sh: a running recipe child is confined by the kernel (plugins/confine.h).
#   - /proc/<child>/status of a stage child shows Seccomp: 2 and NoNewPrivs: 1;
#   - --require-confinement is accepted (this machine has Landlock and seccomp) and runs;
#   - a recipe stage cannot write outside its own stage folder even through a path the
#     Lua sandbox allows (the run directory): the kernel refuses, the run fails cleanly.
# tests/test_confine.c plays a compromised child (execve, sockets, ptrace, ...).
set -u
cd "$(dirname "$0")/.."
source tests/check.sh
BIN=${POTLUCK_BIN:?}
T=$(mktemp -d); trap 'kill $pid 2>/dev/null; rm -rf "$T"' EXIT
export POTLUCK_PLUGINS=$T/no-user-plugins
mkdir -p "$T/rec"
cat > "$T/rec/spin.lua" <<'LUA'
local pl = require "potluck"
return pl.recipe { name = "spin", seed = 1,
  data = pl.pipeline { pl.generate(function(ctx, emit) while true do end end) } }
LUA
"$BIN" run "$T/rec/spin.lua" --out "$T/run" --lua-wall 60 --quiet >"$T/spin.out" 2>&1 &
pid=$!
child=
for _ in $(seq 1 200); do
  child=$(pgrep -P "$pid" | head -1)
  [ -n "$child" ] && grep -q '^Seccomp:[[:space:]]*2' "/proc/$child/status" 2>/dev/null && break
  sleep 0.1
done
if [ -n "$child" ] && grep -q '^Seccomp:[[:space:]]*2' "/proc/$child/status" && grep -q '^NoNewPrivs:[[:space:]]*1' "/proc/$child/status"; then
  ok; echo "note: recipe child $child: $(grep -E '^(Seccomp|NoNewPrivs):' "/proc/$child/status" | tr '\n\t' '  ')"
else fail "recipe child ${child:-(none)}: $(grep -E '^(Seccomp|NoNewPrivs):' "/proc/$child/status" 2>&1 | tr '\n' ' ')"; fi
kill $pid 2>/dev/null; wait $pid 2>/dev/null

cat > "$T/rec/small.lua" <<'LUA'
local pl = require "potluck"
return pl.recipe { name = "small", seed = 1,
  data = pl.pipeline { pl.generate(function(ctx, emit) emit({ text = "one" }) end) } }
LUA
if "$BIN" run "$T/rec/small.lua" --out "$T/run2" --to 01 --require-confinement --quiet >"$T/o.txt" 2>&1; then ok
else fail "--require-confinement on a kernel with both layers: $(cat "$T/o.txt")"; fi
if ! grep -q 'warning' "$T/o.txt"; then ok; else fail "unexpected warning: $(cat "$T/o.txt")"; fi

# the Lua sandbox lets a stage write under the run directory; the kernel keeps it in its own folder
cat > "$T/rec/escape.lua" <<LUA
local pl = require "potluck"
return pl.recipe { name = "escape", seed = 1,
  data = pl.pipeline { pl.generate(function(ctx, emit)
    pl.write_file("$T/run3/planted.txt", "x")
    emit({ text = "one" })
  end) } }
LUA
"$BIN" run "$T/rec/escape.lua" --out "$T/run3" --to 01 --quiet >"$T/e.txt" 2>&1; rc=$?
if [ $rc != 0 ] && [ ! -e "$T/run3/planted.txt" ] && [ -z "$(find "$T/run3" -name 'planted*' -o -name '.planted*')" ]; then
  ok; echo "note: stage writing into the run directory -> $(tail -1 "$T/e.txt")"
else fail "a stage wrote outside its folder (rc=$rc): $(cat "$T/e.txt"; find "$T/run3")"; fi
check_summary cli_confine
