#!/usr/bin/env bash
# tests/cli_train_resume.sh: `potluck train` killed with SIGKILL at a random
# step and resumed gives final weights and a PEFT adapter bit-identical to an
# uninterrupted run (stories260K, LoRA r 4 with dropout, grad accum 2, cosine
# schedule), at the default thread count, with OMP_NUM_THREADS=3 for both
# runs, and killed at 3 threads then resumed at 1; the straight runs at the
# default thread count and at 3 threads give the same bits; a truncated file in the newest checkpoint makes --resume fall back to
# the previous good one with a message; SIGTERM writes a checkpoint and exits
# 143. Uses the optimized build ($POTLUCK_BIN_OPT).
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/check.sh
# sleep rather than spin in OpenMP barriers: the test machine's cores are shared (no effect on the bits)
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
: "${POTLUCK_SHARED:?set POTLUCK_SHARED}"
BIN=${POTLUCK_BIN_OPT:-build/opt/potluck}
if ! [ -x "$BIN" ] || ! grep -q 'usage: potluck train' <<<"$("$BIN" train --help 2>/dev/null)"; then
  fail "$BIN does not dispatch 'train' (cli/main.c needs: if (!strcmp(cmd, \"train\")) return cmd_train(argc - 1, argv + 1);)"
  check_summary cli_train_resume; exit 1
fi
S=$POTLUCK_SHARED/fixtures
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ARGS=(--model "$S/stories260K/stories260K.bin" --tokenizer "$S/stories260K/tok512.bin"
      --text "$S/text/tinystories_sample.txt" --lora-r 4 --lora-alpha 8 --lora-dropout 0.1 --base as-loaded
      --steps 60 --seq-len 64 --grad-accum 2 --lr 5e-3 --schedule cosine --warmup-steps 5
      --eval-every 20 --save-every 4 --keep-last 3)

steps_in() { local n; n=$(grep -c '"loss"' "$1/metrics.jsonl" 2>/dev/null); echo "${n:-0}"; }
same() { cmp -s "$1/trainable.bin" "$2/trainable.bin" && cmp -s "$1/adapter/adapter_model.safetensors" "$2/adapter/adapter_model.safetensors"; }

one_round() { # $1 = label; env OMP_NUM_THREADS as given; RESUME_THREADS: the resume's thread count
  local lab=$1 a=$tmp/$1-straight b=$tmp/$1-killed
  if "$BIN" train "${ARGS[@]}" --out "$a" >/dev/null 2>"$tmp/$lab.a.err"; then ok; else fail "$lab: straight run: $(tail -3 "$tmp/$lab.a.err")"; return; fi
  local target=$(( RANDOM % 40 + 6 ))
  "$BIN" train "${ARGS[@]}" --out "$b" >/dev/null 2>"$tmp/$lab.b.err" &
  local pid=$!
  for _ in $(seq 1 600); do
    n=$(steps_in "$b")
    [ "${n:-0}" -ge $target ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.02
  done
  kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  local at; at=$(steps_in "$b")
  echo "note: $lab: killed with SIGKILL after step $at (target $target)"
  if [ "$at" -lt 60 ]; then ok; else fail "$lab: the run finished before the kill"; fi
  local renv=(env); [ -n "${RESUME_THREADS:-}" ] && renv+=(OMP_NUM_THREADS="$RESUME_THREADS")
  if "${renv[@]}" "$BIN" train "${ARGS[@]}" --out "$b" --resume >/dev/null 2>"$tmp/$lab.r.err"; then ok; else fail "$lab: resume: $(tail -3 "$tmp/$lab.r.err")"; fi
  grep -h 'resume' "$tmp/$lab.r.err" | sed 's/^/note: /'
  if same "$a" "$b"; then ok; else fail "$lab: resumed run's final weights/adapter differ from the straight run's"; fi
  local la lb
  la=$(grep -c '"loss"' "$a/metrics.jsonl"); lb=$(grep -c '"loss"' "$b/metrics.jsonl")
  if [ "$la" = 60 ] && [ "$lb" = 60 ]; then ok; else fail "$lab: metrics lines $la / $lb, expected 60"; fi
}

one_round default
OMP_NUM_THREADS=3 one_round t3
OMP_NUM_THREADS=3 RESUME_THREADS=1 one_round t3-resume-t1
# thread-count independent arithmetic (core/gemm.h): the default count and 3 threads agree
if same "$tmp/default-straight" "$tmp/t3-straight"; then ok
else fail "3 threads give other weight bits than the default thread count"; fi

# the same through a sharded dataset (packing loader: batch 2, its exact resume state)
python3 - "$S/text/tinystories_sample.txt" "$tmp/stories.jsonl" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
with open(sys.argv[2], "w") as f:
    for s in text.replace("\n", " ").split(". "):
        if s.strip(): f.write(json.dumps({"text": s.strip() + "."}) + "\n")
PY
if "$BIN" data build --in "$tmp/stories.jsonl" --out "$tmp/ds" --tokenizer "$S/stories260K/tok512.bin" >/dev/null 2>"$tmp/ds.err"; then ok
else fail "data build: $(cat "$tmp/ds.err")"; fi
ARGS=(--model "$S/stories260K/stories260K.bin" --data "$tmp/ds" --eval-data "$tmp/ds" --eval-rows 2
      --lora-r 4 --lora-dropout 0.1 --base as-loaded --steps 60 --seq-len 48 --batch 2 --grad-accum 2
      --lr 5e-3 --schedule linear --warmup-ratio 0.1 --eval-every 20 --save-every 3 --keep-last 2)
one_round data
ARGS=(--model "$S/stories260K/stories260K.bin" --tokenizer "$S/stories260K/tok512.bin"
      --text "$S/text/tinystories_sample.txt" --lora-r 4 --lora-alpha 8 --lora-dropout 0.1 --base as-loaded
      --steps 60 --seq-len 64 --grad-accum 2 --lr 5e-3 --schedule cosine --warmup-steps 5
      --eval-every 20 --save-every 4 --keep-last 3)

# SIGTERM: checkpoint after the current step, exit 143; then a truncated newest checkpoint is skipped
c=$tmp/term
"$BIN" train "${ARGS[@]}" --steps 400 --save-every 1000 --out "$c" >/dev/null 2>"$tmp/term.err" &
pid=$!
for _ in $(seq 1 500); do [ "$(steps_in "$c")" -ge 10 ] && break; sleep 0.02; done
kill -TERM $pid; wait $pid; rc=$?
if [ $rc = 143 ]; then ok; else fail "SIGTERM: exit $rc, expected 143"; fi
if grep -q 'interrupted: checkpoint written' "$tmp/term.err"; then ok; else fail "SIGTERM: no checkpoint message: $(cat "$tmp/term.err" | tail -2)"; fi
newest=$(ls -d "$c"/checkpoints/step-* | sort | tail -1)
if [ -n "$newest" ] && [ -f "$newest/manifest.json" ]; then ok; else fail "SIGTERM: no checkpoint"; fi
# a second checkpoint to fall back to: continue a little, interrupt again
"$BIN" train "${ARGS[@]}" --steps 400 --save-every 1000 --out "$c" --resume >/dev/null 2>"$tmp/term2.err" &
pid=$!
before=$(steps_in "$c")
for _ in $(seq 1 500); do [ "$(steps_in "$c")" -ge $((before + 5)) ] && break; sleep 0.02; done
kill -INT $pid; wait $pid; rc=$?
if [ $rc = 130 ]; then ok; else fail "SIGINT: exit $rc, expected 130"; fi
newest=$(ls -d "$c"/checkpoints/step-* | sort | tail -1)
prev=$(ls -d "$c"/checkpoints/step-* | sort | tail -2 | head -1)
truncate -s 10 "$newest/optimizer.bin"
out=$("$BIN" train "${ARGS[@]}" --steps 400 --save-every 1000 --out "$c" --resume 2>&1 >/dev/null & p=$!; sleep 1.5; kill -INT $p; wait $p)
if grep -q "skipping checkpoint: $newest: optimizer.bin has 10 bytes" <<<"$out" && grep -q "resume: from $prev" <<<"$out"; then ok
  echo "note: $(grep -m1 skipping <<<"$out")"
else fail "truncated checkpoint not skipped with a message: $out"; fi

# bad input: one clean "potluck: ..." line
echo '{"train": {"lr": "2e-4x"}}' >"$tmp/bad.json"
expect_clean_error "config type" "$BIN" train --config "$tmp/bad.json" "${ARGS[@]}" --out "$tmp/x1"
expect_clean_error "flag value" "$BIN" train "${ARGS[@]}" --lr 2e-4x --out "$tmp/x2"
expect_clean_error "no data" "$BIN" train --model "$S/stories260K/stories260K.bin" --out "$tmp/x3"
expect_clean_error "existing run without --resume" "$BIN" train "${ARGS[@]}" --out "$tmp/default-straight"
# Continuing from an adapter: `import --peft` checks a finished run's adapter
# and starts a run directory from it; `train --init-adapter` starts there. With
# lr 0 one step leaves the weights as they came: the adapter is the imported
# one and the step-0 eval loss is the first run's final eval loss.
"$BIN" train "${ARGS[@]}" --steps 8 --eval-every 8 --out "$tmp/c1" >/dev/null 2>"$tmp/c1.err" || fail "continue: first run: $(tail -2 "$tmp/c1.err")"
if "$BIN" import --peft "$tmp/c1/adapter" --model "$S/stories260K/stories260K.bin" --out "$tmp/c2" >"$tmp/c2.out" 2>&1; then ok
else fail "import --peft: $(cat "$tmp/c2.out")"; fi
"$BIN" train "${ARGS[@]}" --steps 1 --lr 0 --eval-every 1 --init-adapter "$tmp/c2/adapter" --out "$tmp/c3" >/dev/null 2>"$tmp/c3.err"
if grep -q "LoRA weights start from" "$tmp/c3.err" && cmp -s "$tmp/c1/adapter/adapter_model.safetensors" "$tmp/c3/adapter/adapter_model.safetensors"; then ok
else fail "train --init-adapter with lr 0 changed the adapter: $(tail -2 "$tmp/c3.err")"; fi
e1=$(grep '"step":8,' "$tmp/c1/metrics.jsonl" | sed -E 's/.*"eval_loss":([0-9.eE+-]+).*/\1/')
e0=$(grep '"step":0,' "$tmp/c3/metrics.jsonl" | sed -E 's/.*"eval_loss":([0-9.eE+-]+).*/\1/')
if [ -n "$e1" ] && [ "$e1" = "$e0" ]; then ok; echo "note: continued run starts at the first run's eval loss $e0"
else fail "continued run's step-0 eval loss $e0 != first run's final $e1"; fi
expect_clean_error "init adapter of another rank" "$BIN" train "${ARGS[@]}" --lora-r 8 --init-adapter "$tmp/c1/adapter" --out "$tmp/c4"
check_summary cli_train_resume
