"""safetensors_ref.py OUTDIR: safetensors files written by the real peers, for tests/test_safetensors.c.

Writes into OUTDIR:
  single.safetensors      safetensors.numpy.save_file: every numpy dtype safetensors
                          knows, a 0-dim scalar, an empty tensor, metadata
  torch_bf16.safetensors  safetensors.torch.save_file: BF16 (numpy has none), F32
  hf_sharded/             transformers' save_pretrained of a tiny random LlamaForCausalLM
                          in bf16 with a small max_shard_size: model-0000K-of-0000N
                          shards + model.safetensors.index.json (+ config.json)
  vNNN.f32                expected values of each tensor as raw little-endian float32
  expected.json           per case: path, metadata, tensors (name, dtype, shape, values
                          file, shard); for hf_sharded also the state_dict order and
                          max_shard_size, so the C test can re-shard and compare the index
No input files: everything is generated from fixed seeds.
"""
import json
import os
import sys

import numpy as np
import torch
import safetensors.numpy
import safetensors.torch
from safetensors import safe_open

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
torch.set_num_threads(1)
rng = np.random.default_rng(1234)

NP_NAMES = {
    np.dtype("float64"): "F64", np.dtype("float32"): "F32", np.dtype("float16"): "F16",
    np.dtype("int64"): "I64", np.dtype("int32"): "I32", np.dtype("int16"): "I16", np.dtype("int8"): "I8",
    np.dtype("uint64"): "U64", np.dtype("uint32"): "U32", np.dtype("uint16"): "U16", np.dtype("uint8"): "U8",
    np.dtype("bool"): "BOOL",
}
TORCH_NAMES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}
counter = [0]


def values_file(arr_f32):
    name = "v%03d.f32" % counter[0]
    counter[0] += 1
    np.ascontiguousarray(arr_f32, dtype="<f4").tofile(os.path.join(out, name))
    return name


def describe_np(name, a):
    return {"name": name, "dtype": NP_NAMES[a.dtype], "shape": list(a.shape),
            "values": values_file(a.astype(np.float32))}


def describe_torch(name, t, shard=None):
    d = {"name": name, "dtype": TORCH_NAMES[t.dtype], "shape": list(t.shape),
         "values": values_file(t.detach().float().numpy())}
    if shard is not None:
        d["shard"] = shard
    return d


cases = []

# ---- 1. numpy: every dtype, scalar, empty
arrays = {
    "f64": rng.standard_normal((4, 3)),
    "f32": rng.standard_normal((3, 4, 2)).astype(np.float32),
    "f16": rng.standard_normal((2, 5)).astype(np.float16),
    "i64": rng.integers(-1000000, 1000000, size=(2, 3)).astype(np.int64),
    "i32": rng.integers(-100000, 100000, size=(6,)).astype(np.int32),
    "i16": rng.integers(-30000, 30000, size=(5,)).astype(np.int16),
    "i8": rng.integers(-128, 128, size=(7,)).astype(np.int8),
    "u64": rng.integers(0, 1 << 24, size=(3,)).astype(np.uint64),
    "u32": rng.integers(0, 1 << 24, size=(3,)).astype(np.uint32),
    "u16": rng.integers(0, 65536, size=(4,)).astype(np.uint16),
    "u8": rng.integers(0, 256, size=(9,)).astype(np.uint8),
    "flags": rng.integers(0, 2, size=(2, 3)).astype(bool),
    "scalar": np.array(3.25, dtype=np.float32),
    "empty": np.zeros((0, 3), dtype=np.float32),
    "model.layers.0.self_attn.q_proj.weight": rng.standard_normal((8, 8)).astype(np.float32),
}
meta = {"format": "np", "creator": "safetensors_ref.py", "note": "caf\u00e9 \"quoted\""}
safetensors.numpy.save_file(arrays, os.path.join(out, "single.safetensors"), metadata=meta)
cases.append({"path": "single.safetensors", "metadata": meta,
              "tensors": [describe_np(k, v) for k, v in arrays.items()]})

# ---- 2. torch: BF16
tensors = {
    "bf16": torch.randn(4, 6).to(torch.bfloat16),
    "bf16_row": torch.randn(1, 33).to(torch.bfloat16),
    "f32": torch.randn(3),
}
safetensors.torch.save_file(tensors, os.path.join(out, "torch_bf16.safetensors"), metadata={"format": "pt"})
cases.append({"path": "torch_bf16.safetensors", "metadata": {"format": "pt"},
              "tensors": [describe_torch(k, v) for k, v in tensors.items()]})

# ---- 3. transformers: sharded save_pretrained
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

cfg = LlamaConfig(vocab_size=128, hidden_size=16, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                  tie_word_embeddings=False)
model = LlamaForCausalLM(cfg).to(torch.bfloat16)
max_shard = 4000  # bytes: embed_tokens/lm_head (4096 bytes) each get a shard of their own
hf_dir = os.path.join(out, "hf_sharded")
model.save_pretrained(hf_dir, max_shard_size=max_shard)
with open(os.path.join(hf_dir, "model.safetensors.index.json")) as f:
    index = json.load(f)
sd = model.state_dict()
order = list(sd.keys())
shards = sorted(set(index["weight_map"].values()))
assert len(shards) >= 3, shards
ts = []
for name in order:
    shard = index["weight_map"][name]
    # values as stored in the shard, read back through safetensors
    with safe_open(os.path.join(hf_dir, shard), framework="pt") as f:
        t = f.get_tensor(name)
        shard_meta = f.metadata()
    assert torch.equal(t, sd[name])
    ts.append(describe_torch(name, t, shard))
cases.append({"path": "hf_sharded", "metadata": shard_meta, "tensors": ts, "order": order,
              "max_shard_size": max_shard, "n_shards": len(shards),
              "index": "hf_sharded/model.safetensors.index.json"})

with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump({"cases": cases}, f, indent=1)
print("safetensors_ref: %d cases, %d value files, %d shards" % (len(cases), counter[0], len(shards)))
