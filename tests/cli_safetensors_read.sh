#!/usr/bin/env bash
# tests/cli_safetensors_read.sh: the real safetensors package reads what potluck's writer wrote.
#
# build/san/tests/test_safetensors --write-only DIR writes DIR/single.safetensors (every
# dtype, a 0-dim scalar, an empty tensor, metadata) and DIR/sharded/ (3 shards + index);
# the peer (safetensors 0.8 with numpy and torch, from $POTLUCK_VENV) loads them and checks
# every value against the formula the C test used, the metadata, and the index layout
# (byte for byte what transformers' json.dumps(indent=2, sort_keys=True) gives).
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/check.sh
: "${POTLUCK_VENV:?set POTLUCK_VENV (run through make test)}"
bin=build/san/tests/test_safetensors
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ ! -x "$bin" ]; then
  fail "$bin is not built (make build/san/tests/test_safetensors)"
  check_summary "cli_safetensors_read"; exit 1
fi
if "$bin" --write-only "$tmp/out" 2>"$tmp/err"; then ok; else fail "write-only: $(cat "$tmp/err")"; fi

"$POTLUCK_VENV/bin/python" - "$tmp/out" >"$tmp/peer" 2>&1 <<'PY'
import json, os, re, sys
import numpy as np
import torch
import safetensors.numpy, safetensors.torch
from safetensors import safe_open

d = sys.argv[1]
def check(cond, desc):
    print(("PASS " if cond else "FAIL ") + desc)

def formula(dt, k, n):
    i = np.arange(n, dtype=np.int64)
    m = (7 * i + 3 * k) % 23
    if dt in ("F64", "F32", "F16", "BF16"): return (m - 11) * 0.125
    if dt in ("I64", "I32", "I16", "I8"): return (m - 11).astype(np.float64)
    if dt in ("U64", "U32", "U16", "U8"): return m.astype(np.float64)
    return ((i + k) % 2).astype(np.float64)  # BOOL

NP = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
      "I16": np.int16, "I8": np.int8, "U64": np.uint64, "U32": np.uint32, "U16": np.uint16,
      "U8": np.uint8, "BOOL": np.bool_}
SINGLE = [("f32", "F32", (2, 3, 4)), ("f16", "F16", (5, 7)), ("bf16", "BF16", (3, 8)), ("f64", "F64", (6,)),
          ("i32", "I32", (10,)), ("i64", "I64", (2, 2)), ("i8", "I8", (5,)), ("u8", "U8", (6,)),
          ("i16", "I16", (3,)), ("u16", "U16", (3,)), ("u32", "U32", (3,)), ("u64", "U64", (3,)),
          ("bool", "BOOL", (4,)), ("scalar", "F32", ()), ("empty", "F32", (0, 4)),
          ("model.layers.0.mlp.up_proj.weight", "F32", (4, 3))]

def check_tensor(where, name, dt, shape, k, arr):
    if dt == "BF16":
        check(arr.dtype == torch.bfloat16, f"{where}: {name} is bfloat16 (got {arr.dtype})")
        arr = arr.to(torch.float64).numpy()
    else:
        check(arr.dtype == NP[dt], f"{where}: {name} dtype {arr.dtype}, want {dt}")
    check(tuple(arr.shape) == shape, f"{where}: {name} shape {tuple(arr.shape)}, want {shape}")
    want = formula(dt, k, int(np.prod(shape, dtype=np.int64))).reshape(shape)
    check(np.array_equal(arr.astype(np.float64), want), f"{where}: {name} values")

# ---- single file
p = os.path.join(d, "single.safetensors")
with safe_open(p, framework="np") as f:
    check(f.metadata() == {"format": "pt", "note": "caf\u00e9 \"q\"\n\ttab"}, f"single: metadata {f.metadata()}")
    check(list(f.keys()) == sorted(n for n, _, _ in SINGLE), f"single: keys {list(f.keys())}")
    for k, (name, dt, shape) in enumerate(SINGLE):
        if dt != "BF16":
            check_tensor("single/np", name, dt, shape, k, f.get_tensor(name))
with safe_open(p, framework="pt") as f:
    k = [n for n, _, _ in SINGLE].index("bf16")
    check_tensor("single/pt", "bf16", "BF16", (3, 8), k, f.get_tensor("bf16"))
allt = safetensors.torch.load_file(p)   # the whole file through torch: every dtype
check(len(allt) == len(SINGLE), f"single: torch load_file gives {len(allt)} tensors")
check(torch.equal(allt["bool"], torch.tensor([False, True, False, True])), "single: bool via torch")
check(allt["u64"].tolist() == formula("U64", 11, 3).astype(int).tolist(), "single: u64 via torch")

# ---- sharded
sd = os.path.join(d, "sharded")
ip = os.path.join(sd, "model.safetensors.index.json")
text = open(ip, encoding="utf-8").read()
index = json.loads(text)
check(text == json.dumps(index, indent=2, sort_keys=True) + "\n", "index: text is json.dumps(indent=2, sort_keys=True) + newline")
check(index["metadata"] == {"total_parameters": 512, "total_size": 2048}, f"index: metadata {index['metadata']}")
want_map = {f"layers.{j}.weight": f"model-{j // 3 + 1:05d}-of-00003.safetensors" for j in range(8)}
check(index["weight_map"] == want_map, "index: weight_map")
files = sorted(x for x in os.listdir(sd) if x.endswith(".safetensors"))
check(files == [f"model-{i:05d}-of-00003.safetensors" for i in (1, 2, 3)], f"shard files {files}")
total = 0
for fn in files:
    t = safetensors.numpy.load_file(os.path.join(sd, fn))
    check(sorted(t) == sorted(n for n, s in want_map.items() if s == fn), f"{fn}: tensors {sorted(t)}")
    for name, arr in t.items():
        j = int(name.split(".")[1])
        check_tensor(fn, name, "F32", (8, 8), j, arr)
        total += arr.nbytes
    with safe_open(os.path.join(sd, fn), framework="pt") as f:
        check(f.metadata() == {"format": "pt"}, f"{fn}: metadata")
check(total == index["metadata"]["total_size"], f"total_size {total}")
PY
rc=$?
while IFS= read -r line; do
  case "$line" in
    PASS\ *) ok ;;
    FAIL\ *) fail "peer: ${line#FAIL }" ;;
    *) [ -n "$line" ] && echo "peer: $line" >&2 ;;
  esac
done <"$tmp/peer"
if [ $rc -ne 0 ]; then fail "peer script exited with $rc: $(tail -5 "$tmp/peer")"; fi
if [ "$check_passed" -lt 50 ]; then fail "only $check_passed checks ran"; fi
check_summary "cli_safetensors_read"
