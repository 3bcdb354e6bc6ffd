#!/usr/bin/env bash
# bench/loader_bench.sh: `data build` write throughput from pre-tokenized
# input, and loader packed tokens/s (shuffle on, deflate on, prefetch thread)
# against a raw memory-mapped .bin read of the same tokens, in one run.
# Usage: bash bench/loader_bench.sh [POTLUCK_BIN]   (default build/opt/potluck)
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-${POTLUCK_BIN_OPT:-build/opt/potluck}}
LINES=${BENCH_LINES:-40000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$tmp/in.jsonl" "$LINES" <<'PY'
import json, random, sys
r = random.Random(11)
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        n = r.randint(20, 1200)
        f.write(json.dumps({"input_ids": [r.randrange(49152) for _ in range(n)],
                            "loss_mask": [int(j >= n // 3) for j in range(n)]}) + "\n")
PY
mb=$(( $(stat -c %s "$tmp/in.jsonl") / 1048576 ))
echo "input: $LINES pre-tokenized records, $mb MiB of JSONL"
"$BIN" data build --in "$tmp/in.jsonl" --out "$tmp/ds" --shard-tokens 4000000 | sed 's/^/data build: /'
"$BIN" data bench "$tmp/ds" --seq-len 2048 --batch 8 --seconds 3 | sed 's/^/per-sample reads: /'
"$BIN" data bench "$tmp/ds" --seq-len 2048 --batch 8 --seconds 3 --preload | sed 's/^/preloaded:        /'
