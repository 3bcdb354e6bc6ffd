#!/usr/bin/env bash
# tests/cli_mpi_data.sh: `potluck run` under mpirun (docs/distributed.md,
# "Sharded data work"), optimized build, one thread a rank:
#  - a recipe with generation (distill on SmolLM2-135M, sampled at
#    temperature 0.8), two filters and MinHash dedup, at 1 process and at
#    2 ranks: every stage's out.jsonl and removed.jsonl the same bytes (cmp);
#    the stages ran the sharded way (stage.json "dist"); the same set of files
#    in both run directories, no rank's private folder left behind;
#  - filter.novelty by ROUGE-L pairs split over the ranks, on the same planted
#    copies: at 1, 2 and 3 ranks the same bytes, exactly the planted copies
#    dropped, each naming its original's place among the kept samples;
#  - dedup by band ownership on planted near-duplicates (one word changed):
#    at 1, 2 and 3 ranks the same bytes, exactly the planted copies removed,
#    each naming its original; at 2 ranks both ranks found pairs (bands
#    16 x 8: ranks own 8 each);
#  - a rank that stops (SIGSTOP) during a split stage: the others' watchdog
#    ends the job after POTLUCK_DIST_TIMEOUT with a message naming the wait;
#    rank 0 wrote no output for that stage; kill -9 of a rank: mpirun ends the
#    job with a message; a 1-process run afterwards completes with the same
#    bytes;
#  - Evol-Instruct (2 rounds, split by input: each lineage on its rank) at 1
#    process and 2 ranks: the same bytes;
#  - self_instruct and persona (split by model calls: every rank runs the
#    stage, each m:generate split by prompt index) at 1 process and 2 ranks:
#    the same bytes; a plugin whose calls differ between the ranks (a table
#    address in its prompt) ends the job with a message naming the call;
#  - a whole recipe (data stages, shard, train, eval with a metric, export)
#    at 2 ranks: trained over the ranks with the step losses of one process
#    (1e-6 relative), the same bits twice, eval and export on rank 0 alone,
#    and a second run redoes no stage;
#  - the memory check counts the ranks on this machine: a model that fits one
#    process is refused at 2 ranks before any stage, naming them.
# Without mpirun the test says so and counts nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/check.sh
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
export OMP_NUM_THREADS=1
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
BIN=${POTLUCK_BIN_OPT:-build/opt/potluck}
MODEL=${POTLUCK_MODEL:-$HOME/.cache/potluck/models/SmolLM2-135M-Instruct.Q4_1.gguf}
if ! command -v mpirun >/dev/null; then
  echo "note: mpirun not found (apt-get install openmpi-bin libopenmpi-dev; make deps does): nothing tested"
  check_summary cli_mpi_data; exit 0
fi
if ! grep -q 'MPI_Init_thread' <(nm -D --undefined-only "$BIN" 2>/dev/null); then
  fail "$BIN was built without MPI"; check_summary cli_mpi_data; exit 1
fi
[ -f "$MODEL" ] || { fail "model missing: $MODEL"; check_summary cli_mpi_data; exit 1; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export POTLUCK_PLUGINS=$T/no-user-plugins POTLUCK_MODELS=$(dirname "$MODEL") TMPDIR=$T/tmp
mkdir -p "$T/rec" "$TMPDIR"
t0=$(date +%s)
MPI=(mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS -x OMP_WAIT_POLICY -x POTLUCK_PLUGINS -x POTLUCK_MODELS
     -x TMPDIR -x POTLUCK_DIST_TIMEOUT)
mpi() { local np=$1; shift; "${MPI[@]}" -np "$np" "$BIN" "$@"; }
export POTLUCK_DIST_TIMEOUT=${POTLUCK_DIST_TIMEOUT:-900}

python3 - "$T/rec" <<'PY'
import json, sys, random
d = sys.argv[1]
qs = ["Name a fruit that is yellow.", "What is 7 times 6?", "Give a synonym for happy.",
      "Which planet is known as the Red Planet?", "Suggest a name for a pet goldfish.", "What color is the sky?",
      "Name a fruit that is yellow.", "How many legs does a spider have?"]
with open(d + "/prompts.jsonl", "w") as f:
    for q in qs: f.write(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "?"}]}) + "\n")
# 60 distinct documents of 40 random words; 12 planted copies with one word
# changed, placed after their originals
rng = random.Random(7)
words = ["w%03d" % i for i in range(400)]
docs = [" ".join(rng.choice(words) for _ in range(40)) for _ in range(60)]
out, planted = [], []
for i, t in enumerate(docs):
    out.append(t)
    if i % 5 == 2:
        w = t.split(); w[20] = "changed"; out.append(" ".join(w))
        planted.append((len(out) - 2, len(out) - 1))
with open(d + "/docs.jsonl", "w") as f:
    for t in out: f.write(json.dumps({"text": t}) + "\n")
json.dump(planted, open(d + "/planted.json", "w"))
PY
cat > "$T/rec/gen.lua" <<'EOF'
local pl = require "potluck"
return pl.recipe {
  name = "mpi-data", seed = 5, base = "SmolLM2-135M-Instruct",
  data = pl.pipeline {
    pl.source.jsonl { path = "prompts.jsonl" },
    pl.generate.distill { teacher = "base", max_tokens = 10, temperature = 0.8, batch = 3 },
    pl.filter.length { min_chars = 40 },
    pl.filter.regex { keywords = { "spider" }, mode = "drop" },
    pl.dedup.minhash { threshold = 0.5, ngram = 2, bands = 16, rows = 8 },
  },
}
EOF
cat > "$T/rec/dedup.lua" <<'EOF'
local pl = require "potluck"
return pl.recipe {
  name = "mpi-dedup", seed = 3,
  data = pl.pipeline {
    pl.source.jsonl { path = "docs.jsonl" },
    pl.filter.length { min_chars = 10 },
    pl.dedup.minhash { threshold = 0.7, ngram = 3, bands = 16, rows = 8 },
    pl.filter.novelty { threshold = 0.99 },
  },
}
EOF

# same_stages A B: every stage file of A is in B with the same bytes
same_stages() {
  local a=$1 b=$2 n=0 bad=""
  for f in "$a"/stages/*/out.jsonl "$a"/stages/*/removed.jsonl; do
    [ -f "$f" ] || continue
    n=$((n + 1))
    cmp -s "$f" "$b/${f#"$a"/}" || bad="$bad ${f#"$a"/stages/}"
  done
  [ -z "$bad" ] && [ $n -gt 0 ] && { echo "$n"; return 0; }
  echo "differ:$bad (of $n)"; return 1
}

# 1. generation, filters and dedup: 1 process vs 2 ranks
if "$BIN" run "$T/rec/gen.lua" --out "$T/g1" --to 05 --threads 1 --quiet 2>"$T/g1.err"; then ok
else fail "1 process: $(tail -3 "$T/g1.err")"; fi
if mpi 2 run "$T/rec/gen.lua" --out "$T/g2" --to 05 --threads 1 >"$T/g2.out" 2>"$T/g2.err"; then ok
else fail "2 ranks: $(tail -5 "$T/g2.err")"; fi
if r=$(same_stages "$T/g1" "$T/g2"); then ok; echo "note: generation recipe: $r stage files the same bytes at 1 and 2 ranks"
else fail "generation recipe, 1 vs 2 ranks: $r"; fi
python3 - "$T/g1" "$T/g2" <<'PY' && ok || fail "generation recipe: counts and how each stage ran"
import json, sys, os
a, b = sys.argv[1:]
def st(d, l): return json.load(open(os.path.join(d, "stages", l, "stage.json")))
def n(d, l): return sum(1 for _ in open(os.path.join(d, "stages", l, "out.jsonl")))
assert n(a, "02-generate.distill") == 8, n(a, "02-generate.distill")
ans = [json.loads(l)["messages"][-1]["content"] for l in open(os.path.join(a, "stages", "02-generate.distill", "out.jsonl"))]
assert all(x.strip() and x != "?" for x in ans), ans
assert ans[0] != ans[6], "the same prompt twice got the same sampled answer (streams by index?)"
assert st(a, "04-filter.regex")["removed"] == 1 and st(b, "04-filter.regex")["removed"] == 1
for l in ["01-source.jsonl", "02-generate.distill", "03-filter.length", "04-filter.regex", "05-dedup.minhash"]:
    sa, sb = st(a, l), st(b, l)
    for k in ["input", "output", "removed", "reasons", "examples"]:
        assert sa.get(k) == sb.get(k), (l, k, sa.get(k), sb.get(k))
    assert "dist" not in sa and sb["dist"]["ranks"] == 2, l
how = {l: st(b, l)["dist"]["how"] for l in ["01-source.jsonl", "02-generate.distill", "03-filter.length", "05-dedup.minhash"]}
assert how == {"01-source.jsonl": "rank 0 alone", "02-generate.distill": "split by sample index",
               "03-filter.length": "split by sample index", "05-dedup.minhash": "minhash bands by rank"}, how
PY
if diff <(cd "$T/g1" && find . -type f | sort) <(cd "$T/g2" && find . -type f | sort) >"$T/files.diff"; then ok
else fail "other files in the 2-rank run directory: $(head -5 "$T/files.diff")"; fi
if [ -z "$(ls -A "$TMPDIR")" ]; then ok; else fail "left behind in TMPDIR: $(ls "$TMPDIR")"; fi
if [ "$(grep -c '^stage .* ran ' "$T/g2.out")" = 5 ]; then ok
else fail "2 ranks: one set of stage lines from rank 0 expected: $(cat "$T/g2.out")"; fi

# 2. dedup by band ownership on planted near-duplicates
if "$BIN" run "$T/rec/dedup.lua" --out "$T/d1" --to 04 --quiet 2>"$T/d1.err"; then ok
else fail "dedup, 1 process: $(tail -3 "$T/d1.err")"; fi
for np in 2 3; do
  if mpi $np run "$T/rec/dedup.lua" --out "$T/d$np" --to 04 --quiet 2>"$T/d$np.err"; then ok
  else fail "dedup, $np ranks: $(tail -5 "$T/d$np.err")"; fi
  if r=$(same_stages "$T/d1" "$T/d$np"); then ok; else fail "dedup recipe, 1 vs $np ranks: $r"; fi
done
python3 - "$T/rec/planted.json" "$T/d1" "$T/d2" "$T/d3" <<'PY' && ok || fail "dedup: the planted near-duplicates"
import json, sys, os
planted = json.load(open(sys.argv[1]))
for d in sys.argv[2:]:
    s = os.path.join(d, "stages", "03-dedup.minhash")
    rem = [json.loads(l) for l in open(os.path.join(s, "removed.jsonl"))]
    got = sorted((int(r["reason"].split("sample ")[1].split(" ")[0]) - 1, int(r["_prov"]["source"].split(":")[-1]) - 1) for r in rem)
    assert got == sorted(map(tuple, planted)), (d, got, planted)
    assert sum(1 for _ in open(os.path.join(s, "out.jsonl"))) == 72 - 12
    st = json.load(open(os.path.join(s, "stage.json")))
    if d != sys.argv[2]:
        assert st["dist"]["how"] == "minhash bands by rank" and st["dist"]["bands"] == 16, st["dist"]
        assert st["dist"]["pairs"] >= 12, st["dist"]
        nov = json.load(open(os.path.join(d, "stages", "04-filter.novelty", "stage.json")))
        assert nov["dist"]["how"] == "novelty pairs by rank", nov["dist"]
print("note: dedup: %d planted near-duplicates removed at 1, 2 and 3 ranks, each naming its original" % len(planted))
PY
if POTLUCK_DIST=off "$BIN" run "$T/rec/dedup.lua" --out "$T/doff" --to 04 --quiet 2>/dev/null && same_stages "$T/d1" "$T/doff" >/dev/null; then ok
else fail "POTLUCK_DIST=off"; fi
# 2b. filter.novelty by ROUGE-L pairs over the ranks: the planted copies (39 of 40 words in common,
# ROUGE-L 0.975) dropped at 1, 2 and 3 ranks with the same bytes, each naming its original's place
# among the kept samples
cat > "$T/rec/novelty.lua" <<'EOF'
local pl = require "potluck"
return pl.recipe { name = "mpi-novelty", seed = 3,
  data = pl.pipeline { pl.source.jsonl { path = "docs.jsonl" }, pl.filter.novelty { threshold = 0.95 } } }
EOF
if "$BIN" run "$T/rec/novelty.lua" --out "$T/n1" --to 02 --quiet 2>"$T/n1.err" &&
   mpi 2 run "$T/rec/novelty.lua" --out "$T/n2" --to 02 --quiet 2>"$T/n2.err" &&
   mpi 3 run "$T/rec/novelty.lua" --out "$T/n3" --to 02 --quiet 2>"$T/n3.err"; then ok
  for np in 2 3; do
    if r=$(same_stages "$T/n1" "$T/n$np"); then ok; else fail "novelty, 1 vs $np ranks: $r"; fi
  done
  python3 - "$T/rec/planted.json" "$T/n1" "$T/n2" "$T/n3" <<'PY' && ok || fail "novelty: the planted copies"
import json, sys, os
planted = json.load(open(sys.argv[1]))
for d in sys.argv[2:]:
    s = os.path.join(d, "stages", "02-filter.novelty")
    rem = [json.loads(l) for l in open(os.path.join(s, "removed.jsonl"))]
    kept = [json.loads(l)["_prov"]["source"] for l in open(os.path.join(s, "out.jsonl"))]
    got = []
    for r in rem:  # "ROUGE-L 0.975 >= 0.95 with kept sample K": K-th kept sample, 1-based
        k = int(r["reason"].rsplit(" ", 1)[1])
        got.append((int(kept[k - 1].split(":")[-1]) - 1, int(r["_prov"]["source"].split(":")[-1]) - 1))
        assert r["reason"].startswith("ROUGE-L 0.97"), r["reason"]
    assert sorted(got) == sorted(map(tuple, planted)), (d, got, planted)
    if d != sys.argv[2]:
        st = json.load(open(os.path.join(s, "stage.json")))["dist"]
        assert st["how"] == "novelty pairs by rank" and st["pairs"] >= len(planted), st
print("note: novelty: %d planted copies dropped at 1, 2 and 3 ranks, each naming its original" % len(planted))
PY
else fail "novelty recipe: $(tail -3 "$T/n1.err" "$T/n2.err" "$T/n3.err")"; fi

# rank_pid MPIRUN_PID R: the pid of rank R
rank_pid() {
  local p
  for p in $(pgrep -P "$1"); do
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && { echo "$p"; return; }
  done
}
# 3. a stopped rank: the watchdog ends the job; a killed rank: mpirun does
POTLUCK_DIST_TIMEOUT=4 "${MPI[@]}" -np 2 "$BIN" run "$T/rec/gen.lua" --out "$T/stop" --to 05 --threads 1 --quiet >/dev/null 2>"$T/stop.err" &
mpid=$!
victim=""
for _ in $(seq 1 200); do
  victim=$(rank_pid "$mpid" 1)
  [ -n "$victim" ] && [ -d "$T/stop/stages/01-source.jsonl" ] && break
  sleep 0.05
done
[ -n "$victim" ] && kill -STOP "$victim"
ts=$(date +%s)
stopped=0
for _ in $(seq 1 600); do kill -0 $mpid 2>/dev/null || { stopped=1; break; }; sleep 0.1; done
[ $stopped = 0 ] && { kill -9 "$victim" $mpid 2>/dev/null; }
wait $mpid; mrc=$?
dt=$(( $(date +%s) - ts ))
echo "note: SIGSTOP of rank pid ${victim:-none}: mpirun exit $mrc after ${dt} s"
grep -m1 "has waited" "$T/stop.err" | sed 's/^/note:   /'
if [ -n "$victim" ] && [ $stopped = 1 ] && [ $mrc != 0 ] && grep -q "has waited 4 s for the other ranks" "$T/stop.err"; then ok
else fail "stopped rank: stopped=$stopped rc=$mrc $(tail -3 "$T/stop.err")"; fi
if [ ! -f "$T/stop/stages/02-generate.distill/stage.json" ] && [ ! -f "$T/stop/stages/02-generate.distill/out.jsonl" ]; then ok
else fail "stopped rank: the interrupted stage has output"; fi

"${MPI[@]}" -np 2 "$BIN" run "$T/rec/gen.lua" --out "$T/kill" --to 05 --threads 1 --quiet >/dev/null 2>"$T/kill.err" &
mpid=$!
victim=""
for _ in $(seq 1 200); do
  victim=$(rank_pid "$mpid" 1)
  [ -n "$victim" ] && [ -d "$T/kill/stages/01-source.jsonl" ] && break
  sleep 0.05
done
[ -n "$victim" ] && kill -9 "$victim"
stopped=0
for _ in $(seq 1 300); do kill -0 $mpid 2>/dev/null || { stopped=1; break; }; sleep 0.1; done
[ $stopped = 0 ] && kill -9 $mpid 2>/dev/null
wait $mpid; mrc=$?
if [ -n "$victim" ] && [ $stopped = 1 ] && [ $mrc != 0 ] && grep -qiE 'signal 9|killed' "$T/kill.err"; then ok
else fail "killed rank: stopped=$stopped rc=$mrc $(tail -3 "$T/kill.err")"; fi
if "$BIN" run "$T/rec/gen.lua" --out "$T/kill" --to 05 --threads 1 --quiet 2>"$T/k1.err" && r=$(same_stages "$T/g1" "$T/kill"); then ok
else fail "1 process after the killed job: $(tail -3 "$T/k1.err") ${r:-}"; fi
# 4. the whole recipe under mpirun: the data stages split, rank 0 shards, every rank trains its rows
# of each step (as mpirun potluck train), then rank 0 alone evaluates (in a fresh process image: the
# eval metrics' child needs one) and exports; the same step losses as one process (within 1e-6
# relative: the sum over ranks is another order), the same bits at 2 ranks twice, and a second
# 2-rank run redoes no stage
TINY=${POTLUCK_SHARED:-../shared}/fixtures/gguf-tiny-llama/llama-2-tiny-random.gguf
head -c 20000 "${POTLUCK_SHARED:-../shared}/fixtures/text/tinystories_sample.txt" | tr -s '\n' >"$T/rec/c.txt"
cat >"$T/rec/whole.lua" <<'LUA'
local pl = require "potluck"
return pl.recipe { name = "whole", seed = 1,
  data = pl.pipeline { pl.source.text { path = "c.txt", unit = "line" }, pl.filter.length { min_chars = 10 },
                       pl.split { eval = 0.25 } },
  lora = { r = 2, alpha = 4 }, train = { steps = 4, seq_len = 32, batch = 2, grad_accum = 2, save_every = 2 },
  eval = { every = 2, rows = 2, metrics = { "mean_chars" } },
  export = { formats = { "peft" } } }
LUA
if "$BIN" run "$T/rec/whole.lua" --base "$TINY" --out "$T/w1" --threads 1 --quiet 2>"$T/w1.err" &&
   mpi 2 run "$T/rec/whole.lua" --base "$TINY" --out "$T/w2" --threads 1 >"$T/w2.out" 2>"$T/w2.err" &&
   mpi 2 run "$T/rec/whole.lua" --base "$TINY" --out "$T/w3" --threads 1 --quiet 2>"$T/w3.err"; then ok
else fail "the whole recipe at 1 process and 2 ranks: $(tail -3 "$T/w1.err" "$T/w2.err" "$T/w3.err")"; fi
python3 - "$T/w1" "$T/w2" <<'PY' && ok || fail "the whole recipe: 2 ranks against 1 process"
import json, sys, os
a, b = sys.argv[1:]
def steps(d): return [json.loads(l) for l in open(os.path.join(d, "train", "metrics.jsonl")) if '"loss"' in l]
sa, sb = steps(a), steps(b)
assert len(sa) == len(sb) == 4, (len(sa), len(sb))
assert all("ranks" not in x for x in sa) and all(x["ranks"] == 2 for x in sb), "the 2-rank run did not train over the ranks"
worst = max(abs(x["loss"] - y["loss"]) / abs(x["loss"]) for x, y in zip(sa, sb))
assert worst <= 1e-6, worst
for f in ("results.json", "export/adapter/adapter_model.safetensors", "report.html"):
    assert os.path.getsize(os.path.join(b, f)) > 0, f
print("note: the whole recipe at 2 ranks: 4 steps trained over the ranks, losses within %.2g relative of 1 process" % worst)
PY
cmp -s "$T/w2/train/trainable.bin" "$T/w3/train/trainable.bin" && ok || fail "two 2-rank runs of the whole recipe differ in their bits"
grep -q "continuing in a fresh process" "$T/w2.out" && grep -q "^done: " "$T/w2.out" && ok || fail "2 ranks: no eval in a fresh process, or no done line: $(tail -5 "$T/w2.out")"
if mpi 2 run "$T/rec/whole.lua" --base "$TINY" --out "$T/w2" --threads 1 >"$T/w4.out" 2>"$T/w4.err" &&
   [ "$(grep -c '^stage .* ran ' "$T/w4.out")" = 0 ] && grep -q '^summary: ' "$T/w4.out"; then ok
else fail "a second 2-rank run redid stages: $(grep '^stage .* ran ' "$T/w4.out") $(tail -3 "$T/w4.err")"; fi
# 4b. Evol-Instruct split by input (each lineage on its rank), 2 rounds on 2 of the prompts, SmolLM2
# at temperature 0.8: 1 process vs 2 ranks, the same bytes
head -2 "$T/rec/prompts.jsonl" >"$T/rec/prompts2.jsonl"
cat >"$T/rec/evol.lua" <<'LUA'
local pl = require "potluck"
return pl.recipe {
  name = "mpi-evol", seed = 11, base = "SmolLM2-135M-Instruct",
  data = pl.pipeline {
    pl.source.jsonl { path = "prompts2.jsonl" },
    pl.generate.evol_instruct { rounds = 2, max_tokens = 8, temperature = 0.8, batch = 3 },
  },
}
LUA
if "$BIN" run "$T/rec/evol.lua" --out "$T/e1" --to 02 --threads 1 --quiet >"$T/e1.err" 2>&1 &&
   mpi 2 run "$T/rec/evol.lua" --out "$T/e2" --to 02 --threads 1 >"$T/e2.err" 2>&1; then ok
  if r=$(same_stages "$T/e1" "$T/e2"); then ok; else fail "evol_instruct, 1 vs 2 ranks: $r"; fi
  python3 - "$T/e1" "$T/e2" <<'PY' && ok || fail "evol_instruct: evolutions kept, split by sample index"
import json, sys, os
a, b = sys.argv[1:]
st = json.load(open(os.path.join(b, "stages", "02-generate.evol_instruct", "stage.json")))
assert st["dist"]["how"] == "split by sample index", st["dist"]
ev = [json.loads(l) for l in open(os.path.join(a, "stages", "02-generate.evol_instruct", "out.jsonl"))]
evs = [s["_prov"] for s in ev if s.get("_prov", {}).get("generator") == "evol_instruct"]
assert evs, "no evolution kept"
print("note: evol_instruct at 1 process and 2 ranks: %d samples, %d evolutions (rounds %s), the same bytes"
      % (len(ev), len(evs), sorted(p["round"] for p in evs)))
PY
else fail "evol_instruct recipe: $(tail -3 "$T/e1.err" "$T/e2.err")"; fi

# 4c. self_instruct and persona (rounds that depend on earlier ones): every rank runs the stage, each
# m:generate split by prompt index, the texts shared through the parents: 1 process vs 2 ranks, the
# same bytes; a plugin whose calls differ between the ranks fails the job, naming the call
mkdir -p "$T/rec5/plugins"
cp "$T/rec/prompts2.jsonl" "$T/rec5/"
cat >"$T/rec5/calls.lua" <<'LUA'
local pl = require "potluck"
return pl.recipe {
  name = "mpi-calls", seed = 13, base = "SmolLM2-135M-Instruct",
  data = pl.pipeline {
    pl.source.jsonl { path = "prompts2.jsonl" },
    pl.generate.self_instruct { n = 2, few_shot = 2, batch = 3, max_tokens = 12, temperature = 0.8,
                                on_shortfall = "warn", max_rounds = 3 },
    pl.generate.persona { personas = { "a retired sailor", "a beekeeper" }, n = 3, batch = 2, max_tokens = 8,
                          temperature = 0.8 },
  },
}
LUA
if "$BIN" run "$T/rec5/calls.lua" --out "$T/c1" --to 03 --threads 1 --quiet >"$T/c1.err" 2>&1 &&
   mpi 2 run "$T/rec5/calls.lua" --out "$T/c2" --to 03 --threads 1 >"$T/c2.err" 2>&1; then ok
  if r=$(same_stages "$T/c1" "$T/c2"); then ok; else fail "self_instruct and persona, 1 vs 2 ranks: $r"; fi
  python3 - "$T/c1" "$T/c2" <<'PY' && ok || fail "self_instruct and persona: split by model calls"
import json, sys, os
a, b = sys.argv[1:]
for st in ("02-generate.self_instruct", "03-generate.persona"):
    d = json.load(open(os.path.join(b, "stages", st, "stage.json")))["dist"]
    assert d["how"] == "model calls split by prompt index" and d["model_calls"] >= 2, (st, d)
    gen = [json.loads(l) for l in open(os.path.join(a, "stages", st, "out.jsonl"))]
    made = [s for s in gen if s["_prov"].get("generator") == st.split(".")[1]]
    assert made, st + ": nothing generated"
    print("note: %s at 1 process and 2 ranks: %d generated, %d model calls split, the same bytes"
          % (st, len(made), d["model_calls"]))
PY
else fail "self_instruct and persona recipe: $(tail -3 "$T/c1.err" "$T/c2.err")"; fi
cat >"$T/rec5/plugins/wobble.lua" <<'LUA'
local pl = require "potluck"
-- a table's address differs between processes: so does this plugin's prompt
pl.register { api = 1, kind = "generate", name = "wobble", shard = "calls", doc = "A call that differs per process.",
  params = {}, stream = function(p, ctx, input, emit)
    for s in input() do emit(s) end
    ctx.model():generate({ "Say " .. tostring({}) }, { max_tokens = 1 })
  end }
LUA
cat >"$T/rec5/wobble.lua" <<'LUA'
local pl = require "potluck"
return pl.recipe { name = "mpi-wobble", seed = 1, base = "SmolLM2-135M-Instruct",
  data = pl.pipeline { pl.source.jsonl { path = "prompts2.jsonl" }, pl.generate.wobble {} } }
LUA
if mpi 2 run "$T/rec5/wobble.lua" --out "$T/wob" --to 02 --threads 1 --quiet >/dev/null 2>"$T/wob.err"; then
  fail "a plugin whose model calls differ between the ranks: the job succeeded"
elif grep -q "the ranks' stages diverged: model call 1 of rank [01] had other prompts or options than rank [01]'s" "$T/wob.err" &&
     [ ! -f "$T/wob/stages/02-generate.wobble/out.jsonl" ]; then ok
  echo "note: diverged calls: $(grep -m1 diverged "$T/wob.err")"
else fail "a plugin whose model calls differ between the ranks: $(tail -3 "$T/wob.err")"; fi

# 5. the memory plan counts the ranks on this machine (each holds a whole copy): a 13B-wide model
# whose plan takes 55-95% of this machine's memory fits one process and is refused at 2 ranks,
# before any stage (--dry-run), naming the ranks
TOKD=${POTLUCK_SHARED:-../shared}/fixtures/tokenizers/tiny-random-LlamaForCausalLM
big=""
for L in 40 60 80 100 120 160 200 240 320 400 480 600; do
  mkdir -p "$T/wide$L" && cp "$TOKD"/tokenizer.json "$TOKD"/tokenizer_config.json "$T/wide$L/"
  python3 -c 'import json,sys; json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 5120,
    "intermediate_size": 13824, "num_hidden_layers": int(sys.argv[2]), "num_attention_heads": 40, "num_key_value_heads": 40,
    "vocab_size": 32000, "rms_norm_eps": 1e-5, "max_position_embeddings": 4096, "tie_word_embeddings": False,
    "torch_dtype": "float16"}, open(sys.argv[1], "w"))' "$T/wide$L/config.json" "$L"
  "$BIN" run "$T/rec/whole.lua" --base "$T/wide$L" --out "$T/m1-$L" --dry-run >/dev/null 2>&1 || continue
  if python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); sys.exit(0 if 0.55 * m["machine_memory"] < m["total"] < 0.95 * m["machine_memory"] else 1)' "$T/m1-$L/memory_plan.json"; then big=$L; break; fi
done
if [ -n "$big" ]; then
  out=$(mpi 2 run "$T/rec/whole.lua" --base "$T/wide$big" --out "$T/m2" --dry-run 2>&1); rc=$?
  echo "note: $big layers of a 13B-wide model at 2 ranks: $(grep -E '^plan:|potluck:' <<<"$out" | head -2)"
  if [ $rc != 0 ] && grep -q "plan: training needs .* in each of the 2 ranks on this machine, .* each: does NOT fit" <<<"$out" &&
     grep -q "train: 2 ranks on this machine hold a copy each, so each has 1/2 of its memory" <<<"$out" &&
     python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); assert m["fits"] is False and m["ranks_on_machine"] == 2' "$T/m2/memory_plan.json"; then ok
  else fail "2 ranks of a model that fits one process: rc $rc: $out"; fi
else fail "no model width between 55% and 95% of this machine's memory (the plan of 40..600 layers)"; fi
echo "note: whole test $(( $(date +%s) - t0 )) s"
check_summary cli_mpi_data
