#!/usr/bin/env bash
# tests/cli_data_kill.sh: kill -9 during `potluck data build` at random times.
#
# An uninterrupted build of a pre-tokenized input (optimized build, >= 2 s;
# >= 5 s with KILL_MIN_MS=5000, as make test-big runs it) is
# the reference. Then 1 trial (KILL_TRIALS; make test-big runs 40): a fresh
# build is killed with SIGKILL at a
# time drawn uniformly over the reference duration; whatever manifest exists
# must pass `data verify` (a fresh build must have none unless it finished);
# re-running the same command must finish the job with a manifest and shards
# byte-identical to the reference. Reports how many kills landed while a
# shard file was being written (a .shard-*.tmp left behind) and how many
# between shard files.
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/check.sh
BIN=${POTLUCK_BIN_OPT:-build/opt/potluck}
if ! [ -x "$BIN" ] || ! grep -q 'usage: potluck data' <<<"$("$BIN" data --help 2>/dev/null)"; then
  fail "$BIN does not run 'potluck data' (cli/main.c must dispatch cmd_data)"
  check_summary cli_data_kill; exit 1
fi
TRIALS=${KILL_TRIALS:-1}
LINES=${KILL_LINES:-24000}
MIN_MS=${KILL_MIN_MS:-2000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
make_input() {
python3 - "$tmp/in.jsonl" "$LINES" <<'PY'
import json, random, sys
r = random.Random(3); bodies = []
for i in range(400):
    n = r.randint(50, 600)
    ids = [r.randrange(512) for _ in range(n)]
    bodies.append((json.dumps(ids[1:])[1:-1], json.dumps([1] + [int(j >= n // 3) for j in range(1, n)])[1:-1]))
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        a, b = bodies[i % 400]
        f.write('{"input_ids": [%d, %s], "loss_mask": [%s]}\n' % (i % 512, a, b))
PY
}
args=(data build --in "$tmp/in.jsonl" --shard-tokens 1000000)
# The build must run >= MIN_MS so kill times spread over real work: grow the
# input until the reference build on this machine takes that long.
for attempt in 1 2 3 4; do
  make_input
  rm -rf "$tmp/ref"
  t0=$(date +%s%N)
  "$BIN" "${args[@]}" --out "$tmp/ref" >"$tmp/ref.log" 2>&1 || { fail "reference build: $(cat "$tmp/ref.log")"; check_summary cli_data_kill; exit 1; }
  ref_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  [ "$ref_ms" -ge "$MIN_MS" ] && break
  LINES=$(( LINES * (MIN_MS + MIN_MS / 5) / (ref_ms > 0 ? ref_ms : 1) + 1000 ))
done
nshards=$(ls "$tmp/ref"/shard-*.h5 | wc -l)
echo "note: reference build: ${ref_ms} ms, $nshards shards, $LINES input lines"
if [ "$ref_ms" -ge "$MIN_MS" ]; then ok; else fail "reference build took ${ref_ms} ms even with $LINES lines"; fi
same_as_ref() {
  cmp -s "$tmp/ref/manifest.json" "$1/manifest.json" || return 1
  for f in "$tmp/ref"/shard-*.h5; do cmp -s "$f" "$1/$(basename "$f")" || return 1; done
  [ "$(ls "$1"/shard-*.h5 | wc -l)" = "$nshards" ]
}
RANDOM=4242
mid=0; between=0; finished=0
for i in $(seq 1 "$TRIALS"); do
  d="$tmp/t$i"
  kill_ms=$(( (RANDOM * 32768 + RANDOM) % ref_ms ))
  "$BIN" "${args[@]}" --out "$d" >/dev/null 2>&1 &
  pid=$!
  sleep "$(printf '%d.%03d' $((kill_ms / 1000)) $((kill_ms % 1000)))"
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  if ls -a "$d" 2>/dev/null | grep -q '^\.shard-.*\.tmp$'; then mid=$((mid + 1)); else between=$((between + 1)); fi
  if [ -f "$d/manifest.json" ]; then
    finished=$((finished + 1))
    if "$BIN" data verify "$d" >/dev/null 2>&1; then ok; else fail "trial $i (kill at ${kill_ms} ms): manifest present but verify fails"; fi
  elif "$BIN" data verify "$d" >/dev/null 2>&1; then
    fail "trial $i (kill at ${kill_ms} ms): no manifest, yet verify accepts the folder as a dataset"
  else
    ok  # a fresh build killed before its end has no manifest: verify refuses it, nothing names a partial shard
  fi
  out=$("$BIN" "${args[@]}" --out "$d" 2>&1)
  if [ $? -eq 0 ] && "$BIN" data verify "$d" >/dev/null 2>&1; then ok; else fail "trial $i: re-run or verify failed: $out"; fi
  if same_as_ref "$d"; then ok; else fail "trial $i (kill at ${kill_ms} ms): re-run differs from the uninterrupted build"; fi
  kept=$(grep -o '([0-9]* kept' <<<"$out" | grep -o '[0-9]*')
  echo "note: trial $i: kill at ${kill_ms} ms, shards kept on re-run: ${kept:-all (complete)}"
  rm -rf "$d"
done
# Replacing a dataset: the directory holds a complete dataset A (the same
# input with another shard size, so another build) and a build of B is
# killed at a random time. The directory must always hold a complete,
# verifying dataset, A or B, never neither; re-running finishes B.
REPL=${KILL_REPLACE_TRIALS:-1}
"$BIN" data build --in "$tmp/in.jsonl" --shard-tokens 700000 --out "$tmp/refA" >/dev/null 2>&1 || fail "building dataset A"
same_as() { # DIR REF: identical manifest and shards
  cmp -s "$2/manifest.json" "$1/manifest.json" || return 1
  for f in "$2"/shard-*.h5; do cmp -s "$f" "$1/$(basename "$f")" || return 1; done
  [ "$(ls "$1"/shard-*.h5 | wc -l)" = "$(ls "$2"/shard-*.h5 | wc -l)" ]
}
keptA=0; gotB=0
for i in $(seq 1 "$REPL"); do
  d="$tmp/r$i"
  rm -rf "$d" && cp -r "$tmp/refA" "$d"
  kill_ms=$(( (RANDOM * 32768 + RANDOM) % ref_ms ))
  "$BIN" "${args[@]}" --out "$d" >/dev/null 2>&1 &
  pid=$!
  sleep "$(printf '%d.%03d' $((kill_ms / 1000)) $((kill_ms % 1000)))"
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  if [ -f "$d/manifest.json" ] && "$BIN" data verify "$d" >/dev/null 2>&1; then ok
  else fail "replace trial $i (kill at ${kill_ms} ms): no verifying dataset left"; fi
  if same_as "$d" "$tmp/refA"; then keptA=$((keptA + 1)); ok
  elif same_as_ref "$d"; then gotB=$((gotB + 1)); ok
  else fail "replace trial $i: the directory holds neither the old dataset nor the new one"; fi
  out=$("$BIN" "${args[@]}" --out "$d" 2>&1)
  if [ $? -eq 0 ] && same_as_ref "$d" && ! [ -e "$d.potluck-staging" ]; then ok
  else fail "replace trial $i: re-run did not finish the new dataset cleanly: $out"; fi
  rm -rf "$d" "$d.potluck-staging"
done
echo "report: replacing a dataset, $REPL kills: the old dataset intact after $keptA, the new one complete after $gotB, never neither"
echo "report: kill -9 trials: $TRIALS over a ${ref_ms} ms build of $nshards shards: $((between - finished + mid)) mid-shard ($mid while the shard file was being written, $((between - finished)) while its samples were being gathered), $finished after the build had finished; every re-run matched the uninterrupted build byte for byte"
check_summary cli_data_kill
