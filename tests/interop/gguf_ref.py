# gguf_ref.py OUTDIR: what gguf-py's GGUFReader sees in the GGUF fixtures, the
# reference for tests/test_gguf.c.
#
# For the tiny Llama fixture (tiny.json) and SmolLM2 (smollm2.json):
#   version, n_tensors, n_kv, alignment, data_offset;
#   kv: every key with its value type, element type and length for arrays,
#       the scalar/string value, and the first elements of arrays;
#   tensors: every tensor's name, ggml type id, shape (ne0 first), offset
#       from the data section; for a subset, the float64 sum, absolute sum and
#       first 8 values of gguf.quants.dequantize(tensor).
# inputs: $POTLUCK_SHARED/fixtures/gguf-tiny-llama/llama-2-tiny-random.gguf $POTLUCK_MODEL
import os

import numpy as np
import gguf
from gguf import GGUFValueType as VT

from _common import env_path, out_dir, write_json


def scalar(v):
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v)
    return v


def describe(path, dequant_names):
    r = gguf.GGUFReader(path)
    kvs = []
    for key, f in r.fields.items():
        if key.startswith("GGUF."):
            continue  # header fields gguf-py exposes as pseudo-keys
        e = {"key": key, "type": int(f.types[0])}
        if f.types[0] == VT.ARRAY:
            e["arr_type"] = int(f.types[1]) if len(f.types) > 1 else None
            e["len"] = len(f.data)
            vals = f.contents()
            e["first"] = [scalar(v) for v in vals[:3]]
        else:
            e["value"] = scalar(f.contents())
        kvs.append(e)
    tensors = []
    for t in r.tensors:
        e = {"name": t.name, "type": int(t.tensor_type), "shape": [int(x) for x in t.shape],
             "offset": int(t.data_offset - r.data_offset), "n_bytes": int(t.n_bytes)}
        if dequant_names(t.name):
            v = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64).reshape(-1)
            e["sum"] = float(v.sum())
            e["abs_sum"] = float(np.abs(v).sum())
            e["first"] = [float(x) for x in v[:8]]
        tensors.append(e)
    return {"version": 3 if "GGUF.version" not in r.fields else int(r.fields["GGUF.version"].contents()),
            "n_tensors": len(r.tensors), "n_kv": len(kvs), "alignment": int(r.alignment),
            "data_offset": int(r.data_offset), "kv": kvs, "tensors": tensors}


def main():
    out = out_dir()
    shared = env_path("POTLUCK_SHARED")
    tiny = os.path.join(shared, "fixtures/gguf-tiny-llama/llama-2-tiny-random.gguf")
    write_json(os.path.join(out, "tiny.json"), describe(tiny, lambda name: True))
    model = env_path("POTLUCK_MODEL")
    pick = lambda name: (name in ("token_embd.weight", "output_norm.weight") or name.startswith("blk.0.")
                         or name.startswith("blk.29."))
    write_json(os.path.join(out, "smollm2.json"), describe(model, pick))


if __name__ == "__main__":
    main()
