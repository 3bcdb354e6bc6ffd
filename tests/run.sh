#!/usr/bin/env bash
# tests/run.sh [--big]: run every test and print the totals.
#
#   build/san/tests/test_*   unit, hostile-input and tiny-model tests (ASan+UBSan)
#   build/opt/tests/opt_*    SmolLM2-sized tests on the optimized build
#   tests/cli_*.sh           command-line tests; get POTLUCK_BIN (the ASan build)
#                            and POTLUCK_BIN_OPT
#   tests/test_layering.sh   the layers include only downwards (tests/layering.sh)
#   tests/big_*.sh           only with --big (make test-big)
# Each test prints "== NAME: P passed, F failed"; a test that dies without that
# line counts as one failure. The last line is "N passed, N failed".
# POTLUCK_TEST_JOBS tests run at once (default: the number of cores), the
# longest of the last run first; each result is printed when its test ends.
set -uo pipefail
cd "$(dirname "$0")/.."
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# OpenMP threads sleep instead of spinning while they wait: the same bits, and
# no collapse when other processes share the cores (spinning threads then wait
# on descheduled ones for whole time slices).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
export POTLUCK_BIN=$PWD/build/san/potluck
export POTLUCK_BIN_OPT=$PWD/build/opt/potluck
big=0; [ "${1:-}" = "--big" ] && big=1
passed=0; failed=0
log=$(mktemp -d)
# Tests run POTLUCK_TEST_JOBS at a time (default: the number of cores plus
# one: several tests wait part of their time, on a watchdog, a killed rank
# or a child's deadline, and one more test keeps the cores busy meanwhile; on
# this project's 2-core machine a warm run took 535 s at 3 jobs against 587 s
# at 2), each into its own files; each result is printed as its test finishes.
jobs_max=${POTLUCK_TEST_JOBS:-$(( $(OMP_NUM_THREADS= OMP_THREAD_LIMIT= nproc) + 1 ))} # nproc alone obeys OMP_NUM_THREADS
names=(); cmds=()
add() { local n=$1; shift; names+=("$n"); cmds+=("$(printf '%q ' "$@")"); }
start() {
  local i=$1 name=${names[$1]}
  ( t0=$(date +%s%N)
    eval "${cmds[$i]}" >"$log/$name.out" 2>"$log/$name.err"
    rc=$?
    echo $(( ($(date +%s%N) - t0) / 1000000 )) >"$log/$name.ms"
    echo $rc >"$log/$name.rc.tmp" && mv "$log/$name.rc.tmp" "$log/$name.rc" ) &
}
report() {
  local name=$1
  local rc=$(cat "$log/$name.rc") ms=$(cat "$log/$name.ms")
  local line=$(grep -E '^== .*: [0-9]+ passed, [0-9]+ failed' "$log/$name.out" | tail -1)
  local p=0 f=0
  if [ -n "$line" ]; then
    p=$(sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed.*/\1/' <<<"$line")
    f=$(sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed.*/\2/' <<<"$line")
  fi
  if [ "$rc" -ne 0 ] && [ "$f" = 0 ]; then f=1; fi
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$f" = 0 ]; then status=ok; else status=FAIL; fi
  printf '%-4s %-28s %5d passed %3d failed  %6d ms\n' "$status" "$name" "$p" "$f" "$ms"
  grep -hE '^(note|report):' "$log/$name.out" | sed 's/^/       /'
  if [ "$f" != 0 ]; then
    sed 's/^/       | /' "$log/$name.err" | tail -40
    sed 's/^/       > /' "$log/$name.out" | tail -10
  fi
}
for t in build/san/tests/test_*; do
  [ -x "$t" ] || continue; case "$t" in *.o|*.d) continue;; esac
  add "$(basename "$t")" "$t"
done
for t in build/opt/tests/opt_*; do
  [ -x "$t" ] || continue; case "$t" in *.o|*.d) continue;; esac
  add "$(basename "$t")" "$t"
done
for t in tests/cli_*.sh; do
  [ -f "$t" ] || continue
  add "$(basename "$t" .sh)" bash "$t"
done
add layering bash tests/test_layering.sh   # no layer includes from one above it
n=${#names[@]}; next=0; done_=0; running=0
# Start the longest tests first (their times in the last run, kept outside the
# repository; a test without one counts as long), so the run does not end on
# one long test with the other cores idle; each result prints as its test ends.
times_file=${POTLUCK_CACHE:-$HOME/.cache/potluck}/test-times.txt
declare -A prev_ms=()
declare -a reported=()
if [ -f "$times_file" ]; then while read -r nm ms; do [ -n "$nm" ] && prev_ms[$nm]=$ms; done <"$times_file"; fi
mapfile -t order < <(for i in "${!names[@]}"; do echo "${prev_ms[${names[$i]}]:-999999999} $i"; done | sort -k1,1nr -k2,2n | awk '{print $2}')
while [ $done_ -lt $n ]; do
  running=0
  for ((k = 0; k < next; k++)); do [ -f "$log/${names[${order[$k]}]}.rc" ] || running=$((running + 1)); done
  while [ $running -lt "$jobs_max" ] && [ $next -lt $n ]; do
    start "${order[$next]}"; next=$((next + 1)); running=$((running + 1))
  done
  wait -n 2>/dev/null
  for ((k = 0; k < next; k++)); do # report each test as it finishes
    i=${order[$k]}
    if [ -z "${reported[$i]:-}" ] && [ -f "$log/${names[$i]}.rc" ]; then report "${names[$i]}"; reported[$i]=1; done_=$((done_ + 1)); fi
  done
done
wait
if mkdir -p "$(dirname "$times_file")" 2>/dev/null; then
  for nm in "${names[@]}"; do [ -f "$log/$nm.ms" ] && echo "$nm $(cat "$log/$nm.ms")"; done >"$times_file.tmp.$$" &&
    mv "$times_file.tmp.$$" "$times_file"
fi
# big_* tests take the whole machine: one at a time, after the others
if [ $big = 1 ]; then
  for t in tests/big_*.sh; do
    [ -f "$t" ] || continue
    add "$(basename "$t" .sh)" bash "$t"
    start $n; wait; report "${names[$n]}"; n=$((n + 1))
  done
fi
rm -rf "$log"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
