#!/usr/bin/env bash
# bench/mpi_dedup.sh [DOCS] [WORDS]: MinHash dedup (pl.dedup.minhash, word
# 5-grams, 128 permutations, threshold 0.8: 9 bands x 13 rows) in `potluck
# run` at 1 process and at 2 ranks under mpirun, one thread each
# (docs/distributed.md, "Sharded data work"). DOCS documents (default 20000)
# of WORDS random words (default 200), every tenth followed by a copy with two
# words changed. Prints the dedup stage's seconds at each (stage.json), the
# speedup, and at 2 ranks where the time went: signing each rank's half, the
# collectives (all-gather of the signatures, gather of the pairs: comm_s),
# the bands' pairs, the waits, and rank 0 writing the stage's files. Checks
# that both runs wrote the same bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${POTLUCK_BIN_OPT:-build/opt/potluck}
N=${1:-20000}
W=${2:-200}
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export POTLUCK_PLUGINS=$T/none TMPDIR=$T
mkdir -p "$T/rec"
python3 - "$T/rec/docs.jsonl" "$N" "$W" <<'PY'
import json, random, sys
path, n, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(1)
vocab = ["w%d" % i for i in range(5000)]
with open(path, "w") as f:
    i = 0
    while i < n:
        t = [rng.choice(vocab) for _ in range(w)]
        f.write(json.dumps({"text": " ".join(t)}) + "\n"); i += 1
        if i % 10 == 0 and i < n:
            t[w // 3] = "x"; t[2 * w // 3] = "y"
            f.write(json.dumps({"text": " ".join(t)}) + "\n"); i += 1
PY
cat > "$T/rec/r.lua" <<'EOF'
local pl = require "potluck"
return pl.recipe { name = "bench-mpi-dedup", seed = 1,
  data = pl.pipeline { pl.source.jsonl { path = "docs.jsonl" }, pl.dedup.minhash {} } }
EOF
"$BIN" run "$T/rec/r.lua" --out "$T/one" --to 02 --quiet
mpirun --allow-run-as-root --oversubscribe -np 2 -x OMP_NUM_THREADS -x OMP_WAIT_POLICY -x POTLUCK_PLUGINS -x TMPDIR \
  "$BIN" run "$T/rec/r.lua" --out "$T/two" --to 02 --quiet
for f in out.jsonl removed.jsonl; do
  cmp "$T/one/stages/02-dedup.minhash/$f" "$T/two/stages/02-dedup.minhash/$f" || { echo "FAIL: $f differs"; exit 1; }
done
python3 - "$T" "$N" "$W" <<'PY'
import json, sys, os
t, n, w = sys.argv[1], sys.argv[2], sys.argv[3]
def st(d): return json.load(open(os.path.join(t, d, "stages", "02-dedup.minhash", "stage.json")))
a, b = st("one"), st("two")
d = b["dist"]
print("mpi_dedup: %s docs x %s words, %d removed (same bytes at 1 and 2 ranks), %d bands" % (n, w, a["removed"], d["bands"]))
print("  1 process: %.2f s   2 ranks: %.2f s   speedup %.2fx" % (a["seconds"], b["seconds"], a["seconds"] / b["seconds"]))
print("  2 ranks, rank 0: sign its half %.2f s, wait %.2f s, all-gather signatures %.3f s, its bands' pairs %.3f s, "
      "gather pairs %.3f s, resolve %.3f s (%d pairs), write the stage %.2f s; in collectives (comm_s) %.3f s"
      % (d["sign_s"], d["wait_s"], d["exchange_sigs_s"], d["band_pairs_s"], d["exchange_pairs_s"], d["resolve_s"],
         d["pairs"], d["write_s"], d["comm_s"]))
PY
