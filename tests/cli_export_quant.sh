#!/usr/bin/env bash
# cli_export_quant.sh: `potluck export --format gguf --type T` against llama.cpp's own quantizer.
#
# SmolLM2-135M-Instruct with a seeded random LoRA adapter merged (q_proj, v_proj,
# down_proj; so the merged weights are off the base's Q4_1 grid) is exported by
# potluck as F32 and as quantized types (below). llama.cpp (llama_model_quantize from
# the pinned llama-cpp-python, no importance matrix) quantizes potluck's F32
# export to the same types. For each type, every tensor of the two files must
# have the same name, type, shape and bytes (the mixtures: which tensors get
# Q6_K, Q5_0, ...; and the quantized blocks). llama.cpp then loads potluck's
# Q4_K_M and Q6_K exports (and Q5_K_M in test-big) and must produce the same greedy tokens as
# from its own quantization; potluck loads its own Q4_K_M export.
#
# llama.cpp's side (tensor digests and greedy ids of its files) depends only on
# the F32 export's bytes, tests/interop/_export_quant.py, _common.py and the peer
# pins: computed once per such key and cached under $POTLUCK_CACHE/export_quant.
set -u
cd "$(dirname "$0")/.."
source tests/check.sh
BIN=${POTLUCK_BIN:?}
BIN_OPT=${POTLUCK_BIN_OPT:?}
: "${POTLUCK_VENV:?}" "${POTLUCK_MODEL:?}"
PY="$POTLUCK_VENV/bin/python"
peer() { PYTHONPATH=tests/interop "$PY" tests/interop/_export_quant.py "$@"; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# make test checks 2 of the 12 types (a K-quant mixture and Q6_K;
# tests/test_quantize.c checks every quantizer byte for byte against ggml);
# make test-big all 12
# (tests/big_export_quant.sh sets EXPORT_QUANT_ALL=1).
if [ "${EXPORT_QUANT_ALL:-0}" = 1 ]; then
  TYPES="q4_0 q4_1 q5_0 q5_1 q8_0 q4_k_s q4_k_m q5_k_s q5_k_m q6_k f16 bf16"
  GREEDY="q4_k_m q5_k_m q6_k"
else
  TYPES="q4_k_m q6_k"
  GREEDY="q4_k_m q6_k"
fi

# the seeded adapter depends only on the script, the peer versions and the
# model: made once per such key and kept (numpy's generator, seeded)
akey=$( { cat tests/requirements-peers.txt tests/interop/_export_quant.py; sha256sum <"$POTLUCK_MODEL"; } | sha256sum | cut -c1-16)
acache=${POTLUCK_CACHE:-$HOME/.cache/potluck}/export_quant_adapter/$akey
if [ ! -f "$acache/.done" ]; then
  rm -rf "$acache.tmp"
  if peer adapter "$POTLUCK_MODEL" "$acache.tmp" 2>"$tmp/ad.err"; then
    touch "$acache.tmp/.done" && rm -rf "$acache" && mv "$acache.tmp" "$acache"
  else fail "adapter: $(tail -3 "$tmp/ad.err")"; fi
fi
mkdir -p "$tmp/ad" && cp "$acache"/adapter_* "$tmp/ad/" 2>/dev/null || fail "no cached adapter in $acache"
exp() { # TYPE OUT [BIN]
  "${3:-$BIN_OPT}" export --model "$POTLUCK_MODEL" --adapter "$tmp/ad" --format gguf --type "$1" --out "$2" \
    --threads 2 >"$tmp/exp.out" 2>&1
}
if exp f32 "$tmp/f32.gguf"; then ok; else fail "export --type f32: $(cat "$tmp/exp.out")"; fi

key=$( { cat tests/requirements-peers.txt tests/interop/_export_quant.py tests/interop/_common.py;
         sha256sum <"$tmp/f32.gguf"; echo "$TYPES / $GREEDY"; } | sha256sum | cut -c1-16)
cache=${POTLUCK_CACHE:-$HOME/.cache/potluck}/export_quant/$key
if [ -f "$cache/.done" ]; then
  echo "note: llama.cpp's quantizations of this F32 export taken from the cache ($key)"
else
  rm -rf "$cache.tmp"; mkdir -p "$cache.tmp" "$tmp/theirs"
  t0=$(date +%s)
  for t in $TYPES; do
    peer quantize "$tmp/f32.gguf" "$tmp/theirs/theirs-$t.gguf" "$t" >"$tmp/q.out" 2>&1 \
      || fail "llama.cpp quantize $t: $(tail -5 "$tmp/q.out")"
  done
  peer digest "$cache.tmp" "$tmp"/theirs/*.gguf 2>"$tmp/q.out" || fail "digest: $(tail -5 "$tmp/q.out")"
  peer greedy "$cache.tmp" $(for t in $GREEDY; do echo "$tmp/theirs/theirs-$t.gguf"; done) 2>"$tmp/q.out" \
    || fail "llama.cpp greedy on its own files: $(tail -5 "$tmp/q.out")"
  rm -rf "$tmp/theirs"
  if [ $check_failed = 0 ]; then
    touch "$cache.tmp/.done" && rm -rf "$cache" && mv "$cache.tmp" "$cache"
    echo "note: llama.cpp quantized the F32 export to $(wc -w <<<"$TYPES") types in $(( $(date +%s) - t0 )) s (cached as $key)"
  else cache=$cache.tmp; fi
fi

mkdir -p "$tmp/ours"
for t in $TYPES; do
  exp "$t" "$tmp/ours/ours-$t.gguf" || fail "export --type $t: $(cat "$tmp/exp.out")"
done
peer digest "$tmp/ours" "$tmp"/ours/*.gguf 2>"$tmp/d.err" || fail "digest of potluck's exports: $(tail -3 "$tmp/d.err")"
for t in $TYPES; do
  [ -f "$tmp/ours/ours-$t.json" ] || { fail "$t: no digest of potluck's export"; continue; }
  res=$("$PY" - "$tmp/ours/ours-$t.json" "$cache/theirs-$t.json" "$(stat -c %s "$tmp/ours/ours-$t.gguf")" <<'EOF2'
import collections, json, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
ta, tb = a["tensors"], b["tensors"]
bad = [k for k in sorted(set(ta) | set(tb)) if ta.get(k) != tb.get(k)]
mix = collections.Counter(v[0] for v in ta.values())
mix = ", ".join(f"{n} {k}" for k, n in sorted(mix.items(), key=lambda kv: -kv[1]))
if a["meta"] != b["meta"]:
    print(f"FAIL file_type {a['meta']} vs llama.cpp's {b['meta']}")
elif bad:
    k = bad[0]
    print(f"FAIL {len(bad)} of {len(tb)} tensors differ, first {k}: ours {ta.get(k, ['absent'])[:2]}, "
          f"llama.cpp's {tb.get(k, ['absent'])[:2]}")
else:
    print(f"ok {len(ta)} tensors byte-identical ({mix}); {int(sys.argv[3]) / 2**20:.1f} MiB")
EOF2
)
  case "$res" in
    ok*) ok; echo "note: $t: ${res#ok }";;
    *) fail "$t against llama.cpp's quantizer: $res";;
  esac
done

# llama.cpp loads potluck's exports and says the same as with its own quantization
peer greedy "$tmp/ours" $(for t in $GREEDY; do echo "$tmp/ours/ours-$t.gguf"; done) 2>"$tmp/g.err" \
  || fail "llama.cpp greedy on potluck's files: $(tail -3 "$tmp/g.err")"
for t in $GREEDY; do
  if cmp -s "$tmp/ours/greedy-ours-$t.json" "$cache/greedy-theirs-$t.json"; then
    ok; echo "note: $t: llama.cpp's greedy continuations equal on potluck's and its own file: $("$PY" -c \
      'import json,sys; r=json.load(open(sys.argv[1])); print(sum(len(x["ids"]) for x in r), "tokens, e.g.", repr(r[-1]["text"][:40]))' \
      "$tmp/ours/greedy-ours-$t.json")"
  else fail "$t: llama.cpp greedy on potluck's file differs from its own: $(diff <(head -c 600 "$tmp/ours/greedy-ours-$t.json" 2>&1) <(head -c 600 "$cache/greedy-theirs-$t.json"))"; fi
done

# potluck reads its own K-quant export back (the loader dequantizes Q4_K/Q5_K/Q6_K/Q5_0/Q8_0)
if "$BIN_OPT" generate --model "$tmp/ours/ours-q4_k_m.gguf" --prompt "The quick brown fox" --max-tokens 8 --temperature 0 \
     --threads 2 >"$tmp/gen.txt" 2>&1 && [ -s "$tmp/gen.txt" ]; then ok
else fail "potluck generate on its Q4_K_M export: $(cat "$tmp/gen.txt")"; fi
# the ASan/UBSan build writes the same bytes as the optimized one
if exp q4_k_m "$tmp/san-q4_k_m.gguf" "$BIN" && cmp -s "$tmp/san-q4_k_m.gguf" "$tmp/ours/ours-q4_k_m.gguf"; then ok
else fail "the sanitizer build's Q4_K_M export differs from the optimized build's: $(cat "$tmp/exp.out")"; fi
# one thread and two give the same bytes (rows are quantized in parallel)
if "$BIN_OPT" export --model "$POTLUCK_MODEL" --adapter "$tmp/ad" --format gguf --type q4_k_m --out "$tmp/t1.gguf" \
     --threads 1 >/dev/null 2>&1 && cmp -s "$tmp/t1.gguf" "$tmp/ours/ours-q4_k_m.gguf"; then ok
else fail "Q4_K_M export with 1 thread differs from 2 threads"; fi
expect_clean_error "export --type q3_k" "$BIN" export --model "$POTLUCK_MODEL" --format gguf --type q3_k --out "$tmp/x.gguf"
if grep -q 'q4_k_m' <<<"$("$BIN" export --help)"; then ok; else fail "export --help does not list q4_k_m"; fi
check_summary cli_export_quant
