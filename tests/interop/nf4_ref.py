# nf4_ref.py OUTDIR: bitsandbytes' NF4 (+ double quantization) on the CPU, the
# reference for tests/test_nf4.c.
# inputs: $POTLUCK_MODEL
#
# Quantization cases (cases.json lists them; file prefix c<i>_):
#   x.f32       the float32 input (flattened)
#   packed.u8   quantize_4bit(...)[0] bytes (first element in the high nibble)
#   absmax.bin  QuantState.absmax: uint8 codes (double quant) or float32
#   nested.f32  state2.absmax (double quant only)
#   code.f32    state2.code, the 256-entry dynamic map (double quant only)
#   deq.f32     dequantize_4bit(packed, state with the flattened shape) as float32
#   deq2d.f32   the same with the 2-D shape (differs where bnb's CPU kernel errs)
#   offset      in cases.json (float32 bits as an integer, and as a number)
# Inputs: seeded normal matrices of several shapes, two SmolLM2 weights
# (dequantized to fp32 from $POTLUCK_MODEL by gguf-py), all-zero blocks and
# tensors, element counts that are not multiples of the blocksize, odd counts,
# values exactly on the midpoints between NF4 codes; blocksizes 32..4096, with
# and without double quantization.
# mean.json + mean_<i>.f32: torch.mean of positive vectors of many lengths
# (the offset's reduction), with the torch CPU capability.
# bnb4/: a tiny random LlamaForCausalLM quantized by transformers +
# bitsandbytes (BitsAndBytesConfig nf4, double quant) and saved with
# save_pretrained (or, if transformers refuses 4-bit on the CPU, the same
# tensor layout written from bitsandbytes.functional directly; bnb4.json
# says which), fp32/ the same model unquantized, tokens.i32 and logits of
# the fp32 model whose linear weights are bnb's dequantization (logits_deq.f32)
# and, when the 4-bit model runs on the CPU, its own logits (logits_4bit.f32).
import copy
import json
import os
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")
import bitsandbytes  # noqa: E402
import bitsandbytes.functional as F  # noqa: E402

from _common import out_dir, write_json, env_path  # noqa: E402

torch.set_num_threads(1)  # torch's sum splits across threads only past 32768 blocks; pin it anyway
out = out_dir()
rng = np.random.default_rng(1234)


def midpoint_values():
    code = F.get_4bit_type("nf4", device="cpu")
    mids = ((code[:-1] + code[1:]) / 2).numpy().astype(np.float32)
    v = [1.0]  # absmax 1: the scale is exactly 1, so these stay on the midpoints
    for m in mids:
        v += [m, -m, np.nextafter(m, np.float32(2)), np.nextafter(m, np.float32(-2))]
    v += [c for c in code.numpy()]
    return np.array(v, dtype=np.float32)


def smollm2_weights():
    import gguf
    r = gguf.GGUFReader(env_path("POTLUCK_MODEL"))
    got = {}
    for t in r.tensors:
        if t.name in ("blk.0.attn_q.weight", "blk.3.ffn_down.weight"):
            a = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
            got[t.name] = a.reshape([int(d) for d in reversed(t.shape)] if a.ndim == 1 else a.shape)
    return got


cases = []


def add(name, x, blocksizes=(64,), dqs=(True, False)):
    x = np.ascontiguousarray(x, dtype=np.float32)
    for bs in blocksizes:
        for dq in dqs:
            cases.append((name, x, bs, dq))


add("normal_64x64", rng.standard_normal((64, 64)), (32, 64, 128, 256, 4096))
add("normal_128x576", rng.standard_normal((128, 576)) * 0.02, (64, 256))
add("normal_3x1000", rng.standard_normal((3, 1000)), (64, 128))
add("normal_512x513", rng.standard_normal((512, 513)) * 3.0, (32, 64))  # 8208 blocks at 32: 33 nested blocks
z = rng.standard_normal((16, 64)).astype(np.float32)
z[3] = 0.0  # an all-zero block at blocksize 64
z[7, :32] = 0.0
add("zero_block", z, (32, 64, 128))
add("all_zero", np.zeros((4, 64), np.float32), (64,))
add("all_zero_tail", np.zeros(65, np.float32), (64,))
zt = rng.standard_normal(1000).astype(np.float32)
zt[960:] = 0.0  # the short tail block (40 elements) is all zero
add("zero_tail_1000", zt, (64,))
for n in (1, 2, 63, 65, 1001, 1000):
    add("len_%d" % n, rng.standard_normal(n), (64, 32))
add("midpoints", midpoint_values(), (64, 128))
add("constant", np.full((8, 64), 0.5, np.float32), (64,))  # every absmax equal: nested 0/0
outl = rng.standard_normal((64, 64)).astype(np.float32)
outl[10, 5] = 1000.0
outl[40, 7] = -1e-6
add("outlier", outl, (64,))
for k, w in smollm2_weights().items():
    add("smollm2_" + k.replace(".", "_"), w, (64,), (True,))

manifest = []
for i, (name, x, bs, dq) in enumerate(cases):
    t = torch.from_numpy(x.copy())
    q, st = F.quantize_4bit(t, blocksize=bs, quant_type="nf4", compress_statistics=dq)
    # bitsandbytes 0.50.2's CPU kernel, given a 2-D shape whose last dimension
    # is not a multiple of the blocksize, indexes absmax per row (a bug: it
    # disagrees with its own quantizer and the default backend). The
    # reference is its dequantization of the flattened tensor; deq2d.f32 keeps
    # the 2-D call's output for the record.
    st_flat = copy.copy(st)
    st_flat.shape = torch.Size([x.size])
    deq = F.dequantize_4bit(q, st_flat, quant_type="nf4")
    deq2d = F.dequantize_4bit(q, st, quant_type="nf4")
    p = os.path.join(out, "c%d_" % i)
    x.reshape(-1).tofile(p + "x.f32")
    q.numpy().reshape(-1).tofile(p + "packed.u8")
    st.absmax.numpy().reshape(-1).tofile(p + "absmax.bin")
    e = {"name": name, "shape": list(x.shape), "n": int(x.size), "blocksize": bs, "double_quant": dq,
         "packed_bytes": int(q.numel()), "n_absmax": int(st.absmax.numel()),
         "absmax_dtype": str(st.absmax.dtype).replace("torch.", "")}
    if dq:
        st.state2.absmax.numpy().astype(np.float32).tofile(p + "nested.f32")
        st.state2.code.numpy().astype(np.float32).tofile(p + "code.f32")
        off = np.float32(st.offset.item())
        e.update(n_nested=int(st.state2.absmax.numel()), nested_blocksize=int(st.state2.blocksize),
                 offset=float(off), offset_bits=int(off.view(np.uint32)))
    deq.numpy().astype(np.float32).reshape(-1).tofile(p + "deq.f32")
    deq2d.numpy().astype(np.float32).reshape(-1).tofile(p + "deq2d.f32")
    manifest.append(e)
write_json(os.path.join(out, "cases.json"), {
    "bitsandbytes": bitsandbytes.__version__, "torch": torch.__version__,
    "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cases": manifest})

# torch.mean, the double quantization's offset, over many lengths
lens = [1, 2, 3, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 100, 255, 256, 257, 1000, 1023, 1024, 1025,
        4095, 4096, 4097, 13824, 20000, 32767]
means = []
for i, n in enumerate(lens):
    v = (rng.random(n) * rng.choice([1e-3, 1.0, 50.0])).astype(np.float32)
    v.tofile(os.path.join(out, "mean_%d.f32" % i))
    m = np.float32(torch.from_numpy(v).mean().item())
    means.append({"n": n, "bits": int(m.view(np.uint32))})
write_json(os.path.join(out, "mean.json"), {"cpu_capability": torch.backends.cpu.get_cpu_capability(),
                                            "means": means})

# ---- a bitsandbytes-4bit Hugging Face directory ----------------------------
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

cfg = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                  rms_norm_eps=1e-5, tie_word_embeddings=False, torch_dtype="float32")
torch.manual_seed(7)
base = LlamaForCausalLM(cfg).eval()
fp32_dir = os.path.join(out, "fp32")
base.save_pretrained(fp32_dir, safe_serialization=True)
tokens = torch.tensor([[1, 17, 42, 200, 3, 99, 5, 250, 128, 64, 7, 31]], dtype=torch.long)
tokens.numpy().astype(np.int32).reshape(-1).tofile(os.path.join(out, "tokens.i32"))
bnb_dir = os.path.join(out, "bnb4")
info = {"how": None}
LIN = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
       "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
try:
    from transformers import BitsAndBytesConfig
    bcfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.float32)
    q4 = LlamaForCausalLM.from_pretrained(fp32_dir, quantization_config=bcfg, device_map="cpu",
                                          torch_dtype=torch.float32).eval()
    q4.save_pretrained(bnb_dir, safe_serialization=True)
    with torch.no_grad():
        l4 = q4(tokens).logits[0].float().numpy()
    l4.astype(np.float32).tofile(os.path.join(out, "logits_4bit.f32"))
    info["how"] = "transformers save_pretrained"
except Exception as ex:  # transformers refused 4-bit on the CPU: same layout by hand
    info["transformers_error"] = "%s: %s" % (type(ex).__name__, str(ex)[:300])
    from safetensors.torch import save_file
    os.makedirs(bnb_dir, exist_ok=True)
    sd = {k: v.contiguous() for k, v in base.state_dict().items()}
    tensors = {}
    for k, v in sd.items():
        if any(k.endswith(l + ".weight") for l in LIN):
            q, st = F.quantize_4bit(v, blocksize=64, quant_type="nf4", compress_statistics=True)
            tensors[k] = q
            for kk, vv in st.as_dict(packed=True).items():
                tensors[k + "." + kk] = vv
        else:
            tensors[k] = v
    save_file(tensors, os.path.join(bnb_dir, "model.safetensors"), metadata={"format": "pt"})
    c = cfg.to_dict()
    c["architectures"] = ["LlamaForCausalLM"]
    c["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True,
                                "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True}
    with open(os.path.join(bnb_dir, "config.json"), "w") as f:
        json.dump(c, f, indent=2, default=str)
    info["how"] = "bitsandbytes.functional + safetensors (same names)"

# the fp32 model whose linear weights are bnb's dequantization of the saved 4-bit tensors
from safetensors.torch import load_file  # noqa: E402
from bitsandbytes.functional import QuantState  # noqa: E402
sd4 = load_file(os.path.join(bnb_dir, "model.safetensors"))
deq_model = LlamaForCausalLM(cfg).eval()
new_sd = dict(base.state_dict())
for k in list(new_sd):
    if any(k.endswith(l + ".weight") for l in LIN):
        qs = {kk[len(k) + 1:]: vv for kk, vv in sd4.items() if kk.startswith(k + ".")}
        st = QuantState.from_dict(qs, device=torch.device("cpu"))
        w = F.dequantize_4bit(sd4[k], st, quant_type="nf4").float()
        new_sd[k] = w
        w.numpy().astype(np.float32).reshape(-1).tofile(os.path.join(out, "bnbdeq_" + k + ".f32"))
deq_model.load_state_dict(new_sd)
with torch.no_grad():
    ld = deq_model(tokens).logits[0].float().numpy()
ld.astype(np.float32).tofile(os.path.join(out, "logits_deq.f32"))
info.update(n_tokens=int(tokens.numel()), vocab=cfg.vocab_size, layers=cfg.num_hidden_layers,
            has_logits_4bit=os.path.exists(os.path.join(out, "logits_4bit.f32")),
            tensors=sorted(k for k in sd4 if any(l in k for l in LIN))[:12])
write_json(os.path.join(out, "bnb4.json"), info)
print("nf4_ref: %d cases, bnb4 via %s" % (len(cases), info["how"]))
