#!/usr/bin/env bash
# tests/cli_gpu_bench_dry.sh: bench/gpu.sh --dry-run runs the kernel bench on
# the CPU emulator, marks its table "emulated, not a measurement" and prints
# one row per kernel, none failed; then bench/gpu_train.sh --dry-run's
# training rows (potluck train --backend cuda on the emulator, a tiny model):
# for each case (the 7B shape at two lengths, the 33B case under --gpu-mem,
# the long-context case at the length potluck plan --fit seq found) a
# tokens/s + MFU + device peak row and a per-category peak row whose numbers
# parse, marked emulated; the PEFT rows and potluck/peft ratios (or the line
# saying the PEFT side was skipped); the same rows in gpu_train.json; nothing
# FAILED. No timing asserts: the time is reported.
set -uo pipefail
cd "$(dirname "$0")/.."
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
t0=$(date +%s)
out=$(nice -n 5 bash bench/gpu.sh --dry-run --scratch "$tmp" 2>&1); rc=$?
dt=$(( $(date +%s) - t0 ))
[ $rc = 0 ] && ok || bad "bench/gpu.sh --dry-run exited $rc: $out"
grep -q "gpu.sh: emulated, not a measurement" <<<"$out" && ok || bad "no 'emulated, not a measurement' mark"
for k in nf4_dequant nf4_gemv embedding rmsnorm rmsnorm_bwd rope swiglu swiglu_bwd adamw attention attention_bwd \
         lm_head_ce lm_head_ce_bwd "gemm y=x.W^T" "gemm dx=dy.W" "gemm dW+=dy^T.x" lora_fwd lora_bwd; do
  line=$(grep -F -- "$k " <<<"$out" | grep -F "(emulated)" | head -1)
  if [ -n "$line" ] && grep -qE '(GB/s|TFLOP/s)' <<<"$line"; then ok; else bad "no emulated row for $k"; fi
done
grep -q FAILED <<<"$out" && bad "something failed: $(grep FAILED <<<"$out")" || ok

# the training rows
grep -q "^gpu_train.sh: emulated, not a measurement" <<<"$out" && ok || bad "no gpu_train.sh emulated mark"
grep -q "^gpu_train.sh: MFU = tokens/s x (6N + 12 L s d) / [0-9.]* TFLOP/s" <<<"$out" && ok || bad "no MFU formula line"
E="(emulated, not a measurement)"
num='[0-9][0-9.e+-]*'
size="$num (B|KiB|MiB|GiB)"
long=$(sed -n 's/^gpu_train.sh: tiny r 32: the longest --seq-len potluck plan fits in [0-9]*: \([0-9]*\) (with .*)$/\1/p' <<<"$out")
[ -n "$long" ] && [ "$long" -ge 2 ] && ok || bad "no length from potluck plan --fit seq"
labels=("tiny seq 32 r 16" "tiny seq 64 r 16" "tiny seq 32 r 64 gpu-mem [0-9]+( paged)?" "tiny seq ${long:-X} r 32 gpu-mem [0-9]+ offload mlp-chunk 16")
for l in "${labels[@]}"; do
  grep -qE "^train: $l: potluck $num tokens/s \(median of [0-9]+ timed steps\), MFU $num%, device peak $size \\(emulated, not a measurement\\)\$" <<<"$out" &&
    ok || bad "no potluck row for '$l'"
  grep -qE "^train: $l: potluck peak per category: weights $size, activations $size, gradients $size, optimizer $size, workspace $size \\(emulated" <<<"$out" &&
    ok || bad "no per-category peak row for '$l'"
done
if grep -q "^gpu_train.sh: PEFT side skipped" <<<"$out"; then
  echo "note: $(grep '^gpu_train.sh: PEFT side skipped' <<<"$out")"
  ok
else
  for s in 32 64; do
    grep -qE "^train: tiny seq $s r 16: peft $num tokens/s .*MFU $num%, max_memory_allocated .*\\(emulated, not a measurement\\)\$" <<<"$out" &&
      ok || bad "no peft row at seq $s"
    grep -qE "^train: tiny seq $s r 16: ratio potluck/peft: tokens/s $num, memory .*\\(emulated" <<<"$out" &&
      ok || bad "no ratio row at seq $s"
  done
fi
grep -F "$E" <<<"$out" | grep '^train:' | grep -vq "$E\$" && bad "a training row is not marked at its end" || ok
res=$tmp/dry/gpu_train.json
if [ -f "$res" ] && python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
pl = [r for r in rows if r["side"] == "potluck"]
assert len(pl) == 4, len(pl)
for r in pl:
    assert r["emulated"] and r["tokens_per_s"] > 0 and r["mfu"] > 0 and r["device_peak"] > 0, r
    assert all(r["mem_peak"][k] > 0 for k in ("weights", "activations", "gradients", "optimizer", "workspace")), r
' "$res"; then ok; else bad "gpu_train.json: $(cat "$res" 2>&1 | head -3)"; fi
[ -e "$tmp/dry/run" ] && bad "a run directory was left behind" || ok
echo "report: bench/gpu.sh --dry-run: $(grep -c '(emulated)' <<<"$out") kernel rows, $(grep -c '^train: .*(emulated, not a measurement)$' <<<"$out") training rows in ${dt}s"
echo "== cli_gpu_bench_dry: $pass passed, $fail failed"
[ "$fail" = 0 ]
