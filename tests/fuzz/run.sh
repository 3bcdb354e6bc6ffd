#!/usr/bin/env bash
# tests/fuzz/run.sh BIN...: run each libFuzzer binary for $FUZZ_SECONDS (default 600).
# Seeds: tests/fuzz/corpus/NAME/ plus the matching files in ../shared/fixtures;
# new corpus entries go to $POTLUCK_CACHE/fuzz/NAME (outside the repo); a crash
# is copied into tests/fuzz/corpus/NAME/ (commit it: make test replays it) and
# the run goes on with the next harness. Prints execs and coverage per harness.
set -uo pipefail
cd "$(dirname "$0")/../.."
secs=${FUZZ_SECONDS:-600}
shared=${POTLUCK_SHARED:-../shared}
cache=${POTLUCK_CACHE:-$HOME/.cache/potluck}/fuzz
status=0
for bin in "$@"; do
  name=$(basename "$bin"); short=${name#fuzz_}
  corpus=tests/fuzz/corpus/$short; work=$cache/$short; art=$cache/$short-crashes
  mkdir -p "$corpus" "$work" "$art"
  seeds=()
  case $short in
    gguf) seeds+=("$shared/fixtures") ;;
    tokenizer_json) seeds+=("$shared/fixtures") ;;
    llama2c) seeds+=("$shared/fixtures/stories260K") ;;
  esac
  echo "fuzz: $name for $secs s"
  "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$art/" "$work" "$corpus" "${seeds[@]}" >"$cache/$short.log" 2>&1
  rc=$?
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)|cov: ' "$cache/$short.log" | tail -3 | sed "s/^/  $short: /"
  for c in "$art"/crash-* "$art"/leak-* "$art"/timeout-* "$art"/oom-*; do
    [ -f "$c" ] || continue
    cp "$c" "$corpus/" && echo "  $short: CRASH kept as $corpus/$(basename "$c")"; status=1
  done
  [ $rc = 0 ] || status=1
done
exit $status
