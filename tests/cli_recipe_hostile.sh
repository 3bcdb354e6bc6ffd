#!/usr/bin/env bash
# tests/cli_recipe_hostile.sh: hostile recipes and plugins against the real binary.
#
# Every case of tests/hostile_recipes (see its README.md) runs through
# `potluck recipe check` or `potluck run --out RUN` on a copy of the corpus
# that sits next to an "outside" folder holding a canary file. Each must end
# with a non-zero exit (not a signal, not our timeout), exactly one stderr
# line "potluck: ..." that matches the case's expected message and names the
# recipe file (file:line where the message has a position), and no sanitizer
# report. Afterwards: the canary is unchanged, the /tmp path the cases try to
# create does not exist, and nothing outside the run folders changed in the
# temporary tree (a find listing with sizes and mtimes, before and after).
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/check.sh
BIN=${POTLUCK_BIN:-build/san/potluck}
BIN=$(realpath "$BIN" 2>/dev/null || echo "$BIN")
if ! [ -x "$BIN" ] || ! grep -q 'usage: potluck recipe check' <<<"$("$BIN" recipe --help 2>/dev/null)"; then
  fail "$BIN does not run 'potluck recipe check'"; check_summary cli_recipe_hostile; exit 1
fi
CORPUS=$PWD/tests/hostile_recipes
tmp=$(mktemp -d)
EVIL=/tmp/potluck-hostile-$$
trap 'rm -rf "$tmp" "$EVIL"' EXIT
rm -rf "$EVIL"

mkdir -p "$tmp/corpus" "$tmp/outside" "$tmp/runs/_io" "$tmp/emptyplugins"
cp -r "$CORPUS/." "$tmp/corpus/"
find "$tmp/corpus" -name '*.lua' -exec sed -i "s|@EVIL@|$EVIL|g; s|@OUTSIDE@|$tmp/outside|g" {} +
echo "canary: nothing may change this file" >"$tmp/outside/canary.txt"
canary_sum=$(sha256sum <"$tmp/outside/canary.txt")
# the recipe folder as a home folder: a key in a dot-folder (read_dotssh.lua, exists_probe.lua)
mkdir -p "$tmp/corpus/.ssh"
echo "-----BEGIN TEST KEY----- not a real key" >"$tmp/corpus/.ssh/id_ed25519"
ln -s ../outside/canary.txt "$tmp/corpus/link_out"
ln -s ../outside "$tmp/corpus/link_dir"
mkdir -p "$tmp/runs/write_symlink"
ln -s ../../outside/canary.txt "$tmp/runs/write_symlink/evil"
# no user plugins (a folder that does not exist; an empty one is checked at the end)
export POTLUCK_PLUGINS=$tmp/no-user-plugins
unset POTLUCK_LUA_MEM_MB POTLUCK_LUA_INSTRUCTIONS POTLUCK_LUA_CPU_S POTLUCK_LUA_AS_MB POTLUCK_LUA_WALL_S

listing() { (cd "$tmp" && find . -path ./runs -prune -o -printf '%p %y %s %T@ %l\n' | sort); }
before=$(listing)

# header VALUE of "-- NAME: VALUE" in file
header() { sed -n "s/^-- $2: //p" "$1" | head -n 1; }

io=$tmp/runs/_io
n_cases=0
# run_case RELPATH (relative to the corpus copy)
run_case() {
  local rel=$1 f=$tmp/corpus/$1
  local how flags expect where name
  how=$(header "$f" how); flags=$(header "$f" flags); expect=$(header "$f" expect); where=$(header "$f" where)
  name=${rel%.lua}; name=${name//\//_}
  [ -n "$how" ] && [ -n "$expect" ] || { fail "$rel: missing '-- how:' or '-- expect:' header"; return; }
  [ -n "$(header "$f" tries)" ] || fail "$rel: missing '-- tries:' header"
  n_cases=$((n_cases + 1))
  local -a cmd
  # shellcheck disable=SC2206
  local -a fl=($flags)
  case $how in
    check) cmd=("$BIN" recipe check "$rel" "${fl[@]}") ;;
    run) cmd=("$BIN" run "$rel" --out "$tmp/runs/$name" --quiet "${fl[@]}") ;;
    *) fail "$rel: unknown how '$how'"; return ;;
  esac
  local t0=$SECONDS
  (cd "$tmp/corpus" && timeout 60 "${cmd[@]}") >"$io/out" 2>"$io/err"
  local rc=$?
  local err; err=$(cat "$io/err")
  local took=$((SECONDS - t0))
  if [ $rc = 0 ]; then fail "$rel: exit 0, expected an error (stdout: $(head -c 300 "$io/out"))"
  elif [ $rc -ge 124 ]; then fail "$rel: killed or timed out (rc=$rc): $err"
  else ok; fi
  if [ "$(grep -c 'ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:' "$io/err")" != 0 ]; then
    fail "$rel: sanitizer report: $err"
  else ok; fi
  if [ "$(grep -c . "$io/err")" != 1 ] || ! grep -q '^potluck: ' "$io/err"; then
    fail "$rel: expected one line 'potluck: ...' on stderr, got: $err"
  else ok; fi
  if grep -q 'ESCAPED' "$io/err" || ! grep -qE -- "$expect" "$io/err"; then
    fail "$rel: expected /$expect/, got: $err"
  else ok; fi
  # the position is the recipe's or plugin's, not the host prelude's
  grep -q 'prelude\.lua' "$io/err" && fail "$rel: the message points into the host's prelude: $err" || ok
  # the message names the recipe file, with a line when Lua gave one
  local base; base=$(basename "$rel")
  case ${where:-line} in
    line) grep -qE -- "$(printf '%s' "$base" | sed 's/\./\\./g'):[0-9]+:" "$io/err" && ok ||
            fail "$rel: message does not name $base:LINE: $err" ;;
    file | plugin) grep -qF -- "$rel" "$io/err" && ok || fail "$rel: message does not name $rel: $err" ;;
    *) fail "$rel: unknown where '$where'" ;;
  esac
  echo "note: [$how ${took}s] $rel -> $err"
}

for f in "$tmp"/corpus/*.lua; do run_case "$(basename "$f")"; done
for d in "$tmp"/corpus/plugin_case/*/; do run_case "plugin_case/$(basename "$d")/recipe.lua"; done
[ $n_cases -ge 50 ] && ok || fail "only $n_cases cases found in $CORPUS"

# potluck killed (SIGKILL, SIGINT, SIGTERM) while a recipe runs: no recipe process may outlive it
ours() { for p in /proc/[0-9]*; do [ "$(readlink "$p/cwd" 2>/dev/null)" = "$tmp/corpus" ] && echo "${p#/proc/}"; done; }
for sig in KILL INT TERM; do
  { (cd "$tmp/corpus" && timeout -s $sig 1 "$BIN" recipe check pattern_bomb.lua --lua-cpu 60 --lua-wall 60) >/dev/null 2>&1; } 2>/dev/null
  sleep 0.5
  left=$(ours)
  [ -z "$left" ] && ok || { fail "SIG$sig to potluck left the recipe child running (pids $left)"; for p in $left; do kill -9 "$p"; done; }
done

# an empty user plugin folder is no plugin at all (list_lua must not qsort a NULL list)
printf -- '-- plain\nlocal pl = require "potluck"\nreturn pl.recipe { name = "x", data = pl.pipeline { pl.source.jsonl { path = "hostile.jsonl" } } }\n' >"$tmp/runs/_io/plain.lua"
cp "$tmp/corpus/hostile.jsonl" "$tmp/runs/_io/"
out=$(cd "$tmp/runs/_io" && POTLUCK_PLUGINS=$tmp/emptyplugins "$BIN" recipe check plain.lua 2>&1); rc=$?
[ $rc = 0 ] && ! grep -q 'runtime error' <<<"$out" && ok || fail "an empty user plugin folder: rc=$rc: $out"

# nothing outside the run folders was touched
[ "$(sha256sum <"$tmp/outside/canary.txt")" = "$canary_sum" ] && ok || fail "the canary changed: $(cat "$tmp/outside/canary.txt")"
[ -e "$EVIL" ] || [ -L "$EVIL" ] && fail "$EVIL was created" || ok
[ -L "$tmp/runs/write_symlink/evil" ] && ok || fail "the planted symlink in the run folder was replaced"
[ -e "$tmp/outside.txt" ] && fail "../outside.txt was written" || ok
after=$(listing)
if [ "$before" = "$after" ]; then ok; else fail "files outside the run folders changed: $(diff <(echo "$before") <(echo "$after") | head -20)"; fi
[ -e runs ] && [ "$(find runs -newer "$tmp/corpus" 2>/dev/null | head -1)" ] && fail "something was written under ./runs" || ok

check_summary cli_recipe_hostile
