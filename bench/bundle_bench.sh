#!/usr/bin/env bash
# bench/bundle_bench.sh: bundle throughput against the tools a person would use
# by hand, on the same files in the same run:
#   pack:   potluck pack RUN -o B.potluck   vs  tar --zstd -cf B.tar.zst + sha256sum of every file
#   verify: potluck verify B.potluck        vs  tar --zstd -xf into a folder + sha256sum -c
# MB/s = bytes of the run's files / wall seconds; ratio = potluck's MB/s over
# the baseline's (above 1: potluck is faster); the best of BENCH_BUNDLE_REPS (2)
# alternating runs per side, from a warm page cache. The run is a small real one
# (tests/bundle_run.sh) whose data/train gets BENCH_BUNDLE_MB (default 1024)
# of extra shard files listed in its manifest: int32 token ids below 16384
# (two zero bytes in four, so zstd has about what real shards give it; they
# are raw arrays, not HDF5: pack only hashes and copies shards).
# Usage: bash bench/bundle_bench.sh [POTLUCK_BIN]; BENCH_BUNDLE=0 skips it.
set -uo pipefail
cd "$(dirname "$0")/.."
[ "${BENCH_BUNDLE:-1}" = 0 ] && { echo "bundle: skipped (BENCH_BUNDLE=0)"; exit 0; }
BIN=$(realpath "${1:-./potluck}")
MB=${BENCH_BUNDLE_MB:-1024}
SHARED=${POTLUCK_SHARED:-$(realpath ../shared)}
export TINY=$SHARED/fixtures/gguf-tiny-llama/llama-2-tiny-random.gguf POTLUCK_BIN_OPT=$BIN
source tests/bundle_run.sh
T=$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/bundle-bench.XXXXXX")
trap 'rm -rf "$T"' EXIT
make_run "$T" || { echo "bundle: the small run failed: $(tail -3 "$T/run.log")" >&2; exit 1; }
python3 - "$T/run/data/train" "$MB" <<'PY' || { echo "bundle: making shards failed" >&2; exit 1; }
import hashlib, json, os, random, sys
d, mb = sys.argv[1], int(sys.argv[2])
r = random.Random(3)
mask = bytes(b & 0x3f for b in range(256))
m = json.load(open(os.path.join(d, "manifest.json")))
per = 128
left, k = mb, 1
while left > 0:
    n = min(per, left) << 20
    ba = bytearray(n)
    ba[0::4] = r.randbytes(n // 4)
    ba[1::4] = r.randbytes(n // 4).translate(mask)
    name = f"shard-{k:05d}.h5"
    open(os.path.join(d, name), "wb").write(ba)
    m["shards"].append({"file": name, "sha256": hashlib.sha256(ba).hexdigest(), "bytes": n, "samples": 0, "tokens": n // 4, "trained_tokens": 0})
    left -= per; k += 1
json.dump(m, open(os.path.join(d, "manifest.json"), "w"), indent="\t")
PY
bytes=$(du -sb --apparent-size "$T/run" | cut -f1)
find "$T/run" -type f -exec cat {} + >/dev/null   # both sides start from the page cache
now() { date +%s.%N; }
best() { python3 -c "import sys; print(f'{max(float(x) for x in sys.argv[1:]):.1f}')" "$@"; }
rate() { python3 -c "print(f'{$bytes/1e6/($2-$1):.1f}')"; }
REPS=${BENCH_BUNDLE_REPS:-2}
pp=(); bp=(); pv=(); bv=()
for rep in $(seq "$REPS"); do   # the sides alternate, so a change in load hits both
  rm -rf "$T/b.potluck" "$T/b.tar.zst" "$T/x"
  t0=$(now); "$BIN" pack "$T/run" -o "$T/b.potluck" >/dev/null || { echo "bundle: pack failed" >&2; exit 1; }; t1=$(now)
  (cd "$T/run" && tar --zstd -cf "$T/b.tar.zst" . && find . -type f -print0 | xargs -0 sha256sum >"$T/sums"); t2=$(now)
  "$BIN" verify "$T/b.potluck" >/dev/null || { echo "bundle: verify failed" >&2; exit 1; }; t3=$(now)
  mkdir "$T/x" && (cd "$T/x" && tar --zstd -xf "$T/b.tar.zst" && sha256sum --quiet -c "$T/sums"); t4=$(now)
  pp+=("$(rate "$t0" "$t1")"); bp+=("$(rate "$t1" "$t2")"); pv+=("$(rate "$t2" "$t3")"); bv+=("$(rate "$t3" "$t4")")
done
p_pack=$(best "${pp[@]}"); b_pack=$(best "${bp[@]}"); p_ver=$(best "${pv[@]}"); b_ver=$(best "${bv[@]}")
sz_p=$(stat -c %s "$T/b.potluck"); sz_t=$(stat -c %s "$T/b.tar.zst")
printf 'bundle (%d MB of files, %d cores, best of %d):\n' $((bytes / 1000000)) "$(nproc)" "$REPS"
printf '  %-8s potluck %8s MB/s   tar+zstd+sha256sum %8s MB/s   ratio %sx\n' pack "$p_pack" "$b_pack" "$(python3 -c "print(f'{$p_pack/$b_pack:.2f}')")"
printf '  %-8s potluck %8s MB/s   tar -x+sha256sum -c %7s MB/s   ratio %sx\n' verify "$p_ver" "$b_ver" "$(python3 -c "print(f'{$p_ver/$b_ver:.2f}')")"
printf '  archive: potluck %d bytes, tar --zstd %d bytes\n' "$sz_p" "$sz_t"
