# Peer side of tests/cli_export_quant.sh: llama.cpp's own quantizer and loader.
#
#   _export_quant.py adapter MODEL.gguf DIR       a seeded random PEFT adapter (q_proj, v_proj,
#                                                down_proj, r 8) for MODEL, so the merged
#                                                weights are off the base's quantization grid
#   _export_quant.py quantize IN.gguf OUT.gguf FTYPE   llama.cpp's llama_model_quantize
#                                                (no importance matrix, 2 threads)
#   _export_quant.py digest DIR FILE.gguf...      DIR/<FILE's base name>.json for each FILE:
#                                                {tensor: [type, shape, sha256 of its bytes]}
#   _export_quant.py greedy DIR FILE.gguf...      DIR/greedy-<base name>.json: llama.cpp's greedy
#                                                ids for 2 SmolLM2 prompts (16 tokens each, 2 threads)
#
# Not a refs.sh reference (its inputs are potluck's own exports); the shell test
# caches what this computes by the exports' bytes and the peer versions.
import ctypes
import hashlib
import json
import os
import sys

import numpy as np

FTYPES = {  # llama_ftype values
    "f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7, "q5_0": 8, "q5_1": 9,
    "q4_k_s": 14, "q4_k_m": 15, "q5_k_s": 16, "q5_k_m": 17, "q6_k": 18, "bf16": 32,
}


def adapter(model, out):
    import gguf
    from safetensors.numpy import save_file
    r = gguf.GGUFReader(model)
    f = {fld.name: fld for fld in r.fields.values()}

    def u32(k):
        fld = f[k]
        return int(fld.parts[fld.data[0]][0])
    arch = bytes(f["general.architecture"].parts[-1]).decode()
    dim, hidden, layers = u32(f"{arch}.embedding_length"), u32(f"{arch}.feed_forward_length"), u32(f"{arch}.block_count")
    heads, kv = u32(f"{arch}.attention.head_count"), u32(f"{arch}.attention.head_count_kv")
    hd = dim // heads
    rng = np.random.default_rng(20261207)
    rank = 8
    shapes = {"self_attn.q_proj": (heads * hd, dim), "self_attn.v_proj": (kv * hd, dim), "mlp.down_proj": (dim, hidden)}
    t = {}
    for i in range(layers):
        for mod, (o, n) in shapes.items():
            p = f"base_model.model.model.layers.{i}.{mod}"
            t[p + ".lora_A.weight"] = (rng.standard_normal((rank, n)) / np.sqrt(n)).astype(np.float32)
            t[p + ".lora_B.weight"] = (rng.standard_normal((o, rank)) * 0.02).astype(np.float32)
    os.makedirs(out, exist_ok=True)
    save_file(t, os.path.join(out, "adapter_model.safetensors"), metadata={"format": "pt"})
    cfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": 16, "lora_dropout": 0.0,
           "bias": "none", "target_modules": ["q_proj", "v_proj", "down_proj"], "use_rslora": False,
           "base_model_name_or_path": "SmolLM2-135M-Instruct"}
    with open(os.path.join(out, "adapter_config.json"), "w") as fh:
        json.dump(cfg, fh, indent=2)


def quantize(inp, out, ftype):
    import llama_cpp
    p = llama_cpp.llama_model_quantize_default_params()
    p.nthread = 2
    p.ftype = FTYPES[ftype]
    rc = llama_cpp.llama_model_quantize(inp.encode(), out.encode(), ctypes.byref(p))
    if rc != 0:
        sys.exit(f"llama_model_quantize({inp}, {ftype}) returned {rc}")


def digest(outdir, *paths):
    for p in paths:
        digest1(p, os.path.join(outdir, os.path.basename(p)[:-5] + ".json"))


def tensor_table(path):
    """(general.file_type, [(name, type, shape, offset, nbytes)]) from a GGUF file's header.
    gguf-py's GGUFReader parses every metadata array (2.7 s a file for SmolLM2's vocabulary);
    this walks the header once and takes the type sizes from gguf-py's constants."""
    import struct
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
    fixed = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    with open(path, "rb") as fh:
        buf = fh.read(64 << 20)
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("Q")
        pos += n
        return buf[pos - n:pos].decode()

    def skip(t):
        nonlocal pos
        if t in fixed:
            pos += fixed[t]
        elif t == 8:
            string()
        elif t == 9:
            it, n = take("I"), take("Q")
            if it in fixed:
                pos += fixed[it] * n
            else:
                for _ in range(n):
                    skip(it)
        else:
            raise ValueError(f"{path}: metadata type {t}")
    assert buf[:4] == b"GGUF", path
    pos = 4
    take("I")
    n_t, n_kv = take("Q"), take("Q")
    align, ftype = 32, None
    for _ in range(n_kv):
        k, t = string(), take("I")
        if k == "general.alignment":
            align = take("I")
        elif k == "general.file_type":
            ftype = take("I")
        else:
            skip(t)
    infos = []
    for _ in range(n_t):
        name, nd = string(), take("I")
        shape = [take("Q") for _ in range(nd)]
        t, off = take("I"), take("Q")
        blk, bts = GGML_QUANT_SIZES[GGMLQuantizationType(t)]
        n = 1
        for d in shape:
            n *= d
        infos.append((name, GGMLQuantizationType(t).name, shape, off, n // blk * bts))
    data = (pos + align - 1) // align * align
    return ftype, [(nm, t, sh, data + off, nb) for nm, t, sh, off, nb in infos]


def digest1(path, out):
    ftype, table = tensor_table(path)
    d = {}
    with open(path, "rb") as fh:
        for name, t, shape, off, nb in table:
            fh.seek(off)
            d[name] = [t, shape, hashlib.sha256(fh.read(nb)).hexdigest()]
    with open(out, "w") as fh:
        json.dump({"tensors": d, "meta": {"file_type": ftype}}, fh, indent=1, sort_keys=True)


def greedy(outdir, *paths):
    for p in paths:
        greedy1(p, os.path.join(outdir, "greedy-" + os.path.basename(p)[:-5] + ".json"))


def greedy1(path, out):
    from _common import SMOLLM2_PROMPTS
    import llama_cpp
    llm = llama_cpp.Llama(model_path=path, n_ctx=512, n_threads=2, n_batch=512, verbose=False, seed=0)
    res = []
    for p in SMOLLM2_PROMPTS[1:3]:
        ids = llm.tokenize(p.encode(), add_bos=False, special=True)
        llm.reset()
        got = []
        for tok in llm.generate(ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0):
            if tok == llm.token_eos() or len(got) >= 16:
                break
            got.append(int(tok))
        res.append({"prompt": p, "ids": got, "text": llm.detokenize(got).decode("utf-8", "replace")})
    with open(out, "w") as fh:
        json.dump(res, fh, indent=1)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"adapter": adapter, "quantize": quantize, "digest": digest, "greedy": greedy}[cmd](*args)
