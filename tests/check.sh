# tests/check.sh: sourced by the shell tests. ok/fail counting like check.h.
check_passed=0; check_failed=0
ok()   { check_passed=$((check_passed + 1)); }
fail() { check_failed=$((check_failed + 1)); echo "FAIL: $*" >&2; }
# expect_fail_line DESC CMD...: the command must exit non-zero, print exactly one
# line on stderr starting with "potluck: ", and not crash (no sanitizer report).
expect_clean_error() {
  local desc=$1; shift
  local err; err=$("$@" 2>&1 >/dev/null); local rc=$?
  local lines; lines=$(printf '%s\n' "$err" | grep -c .)
  if [ $rc -eq 0 ]; then fail "$desc: exit 0, expected an error"; return; fi
  if [ $rc -ge 128 ]; then fail "$desc: killed by a signal (rc=$rc): $err"; return; fi
  if printf '%s' "$err" | grep -qE 'Sanitizer|runtime error'; then fail "$desc: sanitizer: $err"; return; fi
  if [ "$lines" != 1 ] || ! printf '%s' "$err" | grep -q '^potluck: '; then
    fail "$desc: expected one line 'potluck: ...', got: $err"; return; fi
  ok
  echo "note: $desc -> $err"
}
check_summary() { echo "== $1: $check_passed passed, $check_failed failed"; [ $check_failed = 0 ]; }
# need_built TEST BIN...: every BIN must be an executable, else one failure and the test ends.
need_built() {
  local t=$1 b; shift
  for b in "$@"; do
    if ! [ -x "$b" ]; then fail "$b is not built (make emu / make build-opt)"; check_summary "$t"; exit 1; fi
  done
}
