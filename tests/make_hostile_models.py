#!/usr/bin/env python3
"""make_hostile_models.py OUTDIR: write broken model files for tests/cli_model.sh.

Plain Python (struct, json), no third-party packages: these are hand-made
bad inputs, not peer references. Each case is a file or directory in OUTDIR;
cases.txt lists "name<TAB>what the error must mention".
"""
import json
import os
import struct
import sys

out = sys.argv[1]
tiny_gguf = os.path.join(os.environ["POTLUCK_SHARED"], "fixtures/gguf-tiny-llama/llama-2-tiny-random.gguf")
os.makedirs(out, exist_ok=True)
cases = []
g = open(tiny_gguf, "rb").read()


def put(name, data, expect):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
    cases.append((name, expect))


# GGUF: truncated at several points (header, metadata, tensor table, data)
for cut in (3, 10, 23, 100, 5000, 700000, 724420, len(g) - 1):
    put(f"trunc_{cut}.gguf", g[:cut], "")
# GGUF: tensor count and kv count that overflow
put("ntensors_huge.gguf", g[:8] + struct.pack("<Q", 2**63 + 5) + g[16:], "")
put("nkv_huge.gguf", g[:16] + struct.pack("<Q", 2**64 - 1) + g[24:], "")
# GGUF: first key's string length that overflows
put("keylen_huge.gguf", g[:24] + struct.pack("<Q", 2**64 - 8) + g[32:], "")
# GGUF: unknown architecture
i = g.find(b"\x05\x00\x00\x00\x00\x00\x00\x00llama")
put("arch_unknown.gguf", g[:i + 8] + b"xxxxx" + g[i + 13:], "architecture")
# GGUF: a missing tensor (rename output_norm.weight so it is not found)
j = g.find(b"output_norm.weight")
put("missing_tensor.gguf", g[:j] + b"output_norx.weight" + g[j + 18:], "output_norm.weight")
# GGUF: version 99
put("version.gguf", g[:4] + struct.pack("<I", 99) + g[8:], "")


def safetensors(tensors, header_override=None):
    """tensors: list of (name, dtype, shape, bytes)"""
    hdr, data = {}, b""
    for name, dt, shape, raw in tensors:
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    if header_override is not None:
        return header_override
    return struct.pack("<Q", len(h)) + h + data


V, D, H, L, NH, NKV = 16, 8, 12, 1, 2, 1
hd = D // NH


def llama_tensors(skip=None, bad_shape=None):
    ts = []

    def add(name, shape):
        if name == skip:
            return
        if name == bad_shape:
            shape = [shape[0] + 1] + shape[1:]
        n = 1
        for s in shape:
            n *= s
        ts.append((name, "F32", shape, struct.pack(f"<{n}f", *([0.01] * n))))

    add("model.embed_tokens.weight", [V, D])
    add("model.norm.weight", [D])
    add("lm_head.weight", [V, D])
    for l in range(L):
        p = f"model.layers.{l}."
        add(p + "input_layernorm.weight", [D])
        add(p + "post_attention_layernorm.weight", [D])
        add(p + "self_attn.q_proj.weight", [NH * hd, D])
        add(p + "self_attn.k_proj.weight", [NKV * hd, D])
        add(p + "self_attn.v_proj.weight", [NKV * hd, D])
        add(p + "self_attn.o_proj.weight", [D, NH * hd])
        add(p + "mlp.gate_proj.weight", [H, D])
        add(p + "mlp.up_proj.weight", [H, D])
        add(p + "mlp.down_proj.weight", [D, H])
    return ts


config = {"architectures": ["LlamaForCausalLM"], "vocab_size": V, "hidden_size": D, "intermediate_size": H,
          "num_hidden_layers": L, "num_attention_heads": NH, "num_key_value_heads": NKV,
          "rms_norm_eps": 1e-5, "max_position_embeddings": 64, "tie_word_embeddings": False}


def hfdir(name, cfg, st_bytes, expect):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(cfg if isinstance(cfg, str) else json.dumps(cfg))
    if st_bytes is not None:
        with open(os.path.join(d, "model.safetensors"), "wb") as f:
            f.write(st_bytes)
    cases.append((name, expect))


good = safetensors(llama_tensors())
hfdir("hf_good", config, good, "OK")
hfdir("hf_arch", dict(config, architectures=["GPT2LMHeadModel"]), good, "architecture")
hfdir("hf_missing", config, safetensors(llama_tensors(skip="model.layers.0.mlp.up_proj.weight")), "up_proj")
hfdir("hf_shape", config, safetensors(llama_tensors(bad_shape="model.layers.0.self_attn.k_proj.weight")), "k_proj")
hfdir("hf_trunc", config, good[: len(good) // 2], "")
hfdir("hf_hdrlen", config, struct.pack("<Q", 2**64 - 1) + good[8:], "")
hfdir("hf_hdrlen2", config, struct.pack("<Q", len(good)) + good[8:], "")
hfdir("hf_badjson", config, struct.pack("<Q", 16) + b"{not json at all" + good[24:], "")
hfdir("hf_offsets", config, good.replace(b'"data_offsets": [0, ', b'"data_offsets": [9, ', 1), "")
hfdir("hf_config_type", dict(config, num_attention_heads="2"), good, "num_attention_heads")
hfdir("hf_config_broken", "{\"architectures\": [", good, "config.json")
hfdir("hf_heads", dict(config, num_key_value_heads=3), good, "head")
hfdir("hf_nosafetensors", config, None, "")
put("empty.bin", b"", "")
put("short.bin", b"\x01\x02\x03", "")
put("l2c_header.bin", struct.pack("<7i", 64, 172, 5, 8, 4, 512, 512) + b"\0" * 100, "bytes")
put("l2c_neg.bin", struct.pack("<7i", 64, 172, -5, 8, 4, 512, 512) + b"\0" * 100, "")
put("l2c_huge.bin", struct.pack("<7i", 2**31 - 1, 2**31 - 1, 2**31 - 1, 1, 1, 512, 512), "")
with open(os.path.join(out, "cases.txt"), "w") as f:
    for name, expect in cases:
        f.write(f"{name}\t{expect}\n")
