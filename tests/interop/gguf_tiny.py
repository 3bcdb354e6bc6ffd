# Tiny random Llama / Qwen2 models written as GGUF the way llama.cpp's converter does, and the fp32 logits transformers computes from those GGUF files.
#
# inputs: $POTLUCK_SHARED/fixtures/gguf-tiny-llama/llama-2-tiny-random.gguf
# (the tiny models themselves are built here from fixed seeds)
#
# Each model is a transformers model built from a config whose parameters are
# re-randomized from a fixed seed so that every tensor matters (as hf_tiny.py:
# RMSNorm weights N(1, 0.5), biases N(0, 0.5), embeddings N(0, 0.5), other
# matrices N(0, 1/fan_in)). It is written with gguf-py's GGUFWriter as
# llama.cpp's convert_hf_to_gguf.py writes it:
#   - tensor names from gguf-py's tensor name map (token_embd, output_norm,
#     output, blk.N.attn_norm / attn_q / attn_k / attn_v / attn_output /
#     ffn_norm / ffn_gate / ffn_up / ffn_down, + attn_{q,k,v}.bias for qwen2);
#   - arch "llama": the rows of attn_q / attn_k permuted per head into
#     llama.cpp's interleaved RoPE order (LlamaModel.permute:
#     w.reshape(n_head, 2, hd/2, dim).swapaxes(1, 2).reshape(w.shape), K with
#     n_kv_head); arch "qwen2": no permutation;
#   - metadata <arch>.context_length, embedding_length, block_count,
#     feed_forward_length, attention.head_count, attention.head_count_kv,
#     rope.freq_base, attention.layer_norm_rms_epsilon, rope.dimension_count,
#     vocab_size, general.file_type; no tokenizer (transformers does not need
#     one to load the model);
#   - 1-D tensors (norms, biases) always F32; 2-D tensors F32, F16 or Q8_0
#     (gguf.quants.quantize); a tied model has no output.weight.
#
# The peer: every GGUF is loaded back with
# AutoModelForCausalLM.from_pretrained(OUTDIR, gguf_file=NAME, dtype=float32),
# which dequantizes with gguf-py and undoes the Q/K permutation itself, and its
# logits on 40 fixed ids are the reference. For the F32 files the script
# asserts that those logits equal the original model's (up to fp32 rounding),
# which proves the file's permutation and names are right; for F16 / Q8_0 it
# asserts they are close but not identical (the rounding really happened).
#
# One more variant, llama_rope_freqs_f32, checks Llama-3 rope scaling stored as
# llama.cpp stores it (a rope_freqs.weight tensor of per-dimension divisors, as
# LlamaModel.generate_extra_tensors computes them). transformers' GGUF loader
# ignores rope_freqs.weight, so this variant's reference is transformers'
# logits from the original Hugging Face model with rope_scaling llama3; the
# script asserts that the scaling changes those logits by a lot (else the check
# would prove nothing) and that the GGUF without scaling reproduces the
# unscaled model.
#
# Writes into OUTDIR (argv[1]):
#   llama_f32.gguf, llama_f16.gguf, llama_q8_0.gguf   LlamaForCausalLM: vocab 300, hidden 64,
#       intermediate 96, 2 layers, 4 heads, 2 KV heads (head_dim 16), rope_theta 500000,
#       rms_norm_eps 1e-5, untied, context 256
#   qwen2_f32.gguf, qwen2_q8_0.gguf                   Qwen2ForCausalLM: vocab 300, hidden 96,
#       intermediate 160, 2 layers, 6 heads, 2 KV heads (GQA 3, head_dim 16), q/k/v biases,
#       rope_theta 1e6, rms_norm_eps 1e-6, tied embeddings (no output.weight)
#       (hidden 96 and intermediate 160, not hf_tiny's 48/80: Q8_0 needs rows that are
#       whole 32-element blocks)
#   llama_rope_freqs_f32.gguf                         the Llama weights above with rope_theta
#       10000 and llama3 rope scaling (factor 8, low 1, high 4, original max positions 64)
#   ids.i32               int32 little-endian [40]: the input token ids
#   logits_<variant>.f32  float32 little-endian [40, 300] row-major
#   fixture_ids.i32, logits_fixture.f32   the shared fixture llama-2-tiny-random.gguf (a real
#                         llama.cpp conversion, F16, vocab 32000) run by transformers from
#                         the GGUF on 12 fixed ids: int32 [12] and float32 [12, 32000]
#   meta.json             {"T": 40, "vocab": 300, "variants": [{"name", "file", "arch", "type",
#                          "logits", "tied", "qkv_bias", "n_heads", "n_kv_heads", "peer"}],
#                          "fixture": {"file", "T", "vocab", "ids", "logits"}}
import json
import math
import os
import sys
import time

import numpy as np
import torch

import _common as C

T = 40
VOCAB = 300


def fixed_ids():
    g = torch.Generator().manual_seed(1234)
    return torch.randint(0, VOCAB, (T,), generator=g)


def rerandomize(model, seed):
    """Replaces every parameter with seeded random values so no tensor is a default."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if name.endswith("norm.weight"):
                v = 1.0 + 0.5 * torch.randn(p.shape, generator=g)
            elif name.endswith(".bias"):
                v = 0.5 * torch.randn(p.shape, generator=g)
            elif name.endswith("embed_tokens.weight"):
                v = 0.5 * torch.randn(p.shape, generator=g)
            elif p.dim() == 2:
                v = torch.randn(p.shape, generator=g) / np.sqrt(p.shape[1])
            else:
                raise RuntimeError("rerandomize: unexpected parameter %s %s" % (name, tuple(p.shape)))
            p.copy_(v.to(p.dtype))


def build(cls, config, seed):
    torch.manual_seed(seed)
    model = cls(config)
    rerandomize(model, seed + 1)
    model.eval()
    return model


def logits_of(model, ids):
    with torch.no_grad():
        out = model(ids[None, :]).logits[0]  # (T, V)
    return out.to(torch.float32).numpy()


def permute(w, n_head):
    """llama.cpp's LlamaModel.permute: rotate-half rows -> interleaved rows, per head."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_rope_factors(head_dim, base, factor, low, high, orig_ctx):
    """Per-dimension divisors of the inverse frequencies, as llama.cpp's converter writes rope_freqs."""
    freqs = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    low_wl = orig_ctx / low
    high_wl = orig_ctx / high
    out = []
    for f in freqs.tolist():
        wl = 2 * math.pi / f
        if wl < high_wl:
            out.append(1.0)
        elif wl > low_wl:
            out.append(factor)
        else:
            s = (orig_ctx / wl - low) / (high - low)
            out.append(1.0 / ((1 - s) / factor + s))
    return np.array(out, dtype=np.float32)


EXPECTED_NAMES = {"token_embd", "output_norm", "output", "attn_norm", "attn_q", "attn_k", "attn_v",
                  "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"}


def write_gguf(path, model, arch, qtype, rope_factors=None):
    """Writes model as llama.cpp's converter would, with 2-D tensors in qtype."""
    import gguf

    cfg = model.config
    n_head = cfg.num_attention_heads
    n_kv = cfg.num_key_value_heads
    hd = cfg.hidden_size // n_head
    march = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2}[arch]
    name_map = gguf.get_tensor_name_map(march, cfg.num_hidden_layers)
    ftype = {gguf.GGMLQuantizationType.F32: gguf.LlamaFileType.ALL_F32,
             gguf.GGMLQuantizationType.F16: gguf.LlamaFileType.MOSTLY_F16,
             gguf.GGMLQuantizationType.Q8_0: gguf.LlamaFileType.MOSTLY_Q8_0}[qtype]

    w = gguf.GGUFWriter(path, arch)
    w.add_name("gguf_tiny " + arch)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    rp = getattr(cfg, "rope_parameters", None) or {}
    theta = rp.get("rope_theta", getattr(cfg, "rope_theta", None))
    w.add_rope_freq_base(float(theta))
    w.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    w.add_rope_dimension_count(hd)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(int(ftype))
    if qtype == gguf.GGMLQuantizationType.Q8_0:
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    sd = model.state_dict()
    written = []
    for hf_name in sd:
        t = sd[hf_name].detach().to(torch.float32).numpy()
        if hf_name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        base, suffix = hf_name.rsplit(".", 1)
        gname = name_map.get_name(base)
        if gname is None:
            sys.exit("gguf_tiny: no GGUF name for %s" % hf_name)
        short = gname.split(".")[-1]
        if short not in EXPECTED_NAMES:
            sys.exit("gguf_tiny: unexpected GGUF name %s for %s" % (gname, hf_name))
        if arch == "llama":
            if base.endswith("q_proj"):
                t = permute(t, n_head)
            elif base.endswith("k_proj"):
                t = permute(t, n_kv)
        t = np.ascontiguousarray(t)
        name = gname + "." + suffix
        if t.ndim == 1 or qtype == gguf.GGMLQuantizationType.F32:
            w.add_tensor(name, t.astype(np.float32))
        elif qtype == gguf.GGMLQuantizationType.F16:
            w.add_tensor(name, t.astype(np.float16))
        else:
            q = gguf.quants.quantize(t, qtype)
            w.add_tensor(name, q, raw_dtype=qtype)
        written.append(name)
    if rope_factors is not None:
        w.add_tensor(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", rope_factors)
        written.append("rope_freqs.weight")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return written


def check_file(path, arch, qtype, tied, written):
    """Reads the file back with GGUFReader: the arch, the tensor types and names."""
    import gguf

    r = gguf.GGUFReader(path)
    a = r.fields["general.architecture"].contents()
    if a != arch:
        sys.exit("gguf_tiny: %s: architecture %r" % (path, a))
    names = [t.name for t in r.tensors]
    if sorted(names) != sorted(written):
        sys.exit("gguf_tiny: %s: tensors %r, expected %r" % (path, names, written))
    if tied == ("output.weight" in names):
        sys.exit("gguf_tiny: %s: output.weight present=%s but tied=%s" % (path, "output.weight" in names, tied))
    for t in r.tensors:
        want = gguf.GGMLQuantizationType.F32 if len(t.shape) == 1 else qtype
        if t.tensor_type != want:
            sys.exit("gguf_tiny: %s: tensor %s is %s, expected %s" % (path, t.name, t.tensor_type.name, want.name))


def load_gguf(out, name):
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(out, gguf_file=name, dtype=torch.float32,
                                             attn_implementation="eager")
    m.eval()
    return m


def close(a, b, tol):
    return float(np.abs(a - b).max()) <= tol * max(1.0, float(np.abs(b).max()))


def main():
    t0 = time.time()
    out = C.out_dir()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    import gguf
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    Q = gguf.GGMLQuantizationType
    ids = fixed_ids()
    C.write_i32(os.path.join(out, "ids.i32"), ids.numpy())

    llama_cfg = LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rope_theta=500000.0,
        rms_norm_eps=1e-5, tie_word_embeddings=False, max_position_embeddings=256,
        attn_implementation="eager")
    llama = build(LlamaForCausalLM, llama_cfg, 400)

    qwen_cfg = Qwen2Config(
        vocab_size=VOCAB, hidden_size=96, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=6, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1000000.0,
        tie_word_embeddings=True, max_position_embeddings=256, attn_implementation="eager")
    qwen = build(Qwen2ForCausalLM, qwen_cfg, 500)
    assert qwen.lm_head.weight.data_ptr() == qwen.model.embed_tokens.weight.data_ptr()

    # the same Llama weights with theta 10000 and llama3 scaling (original context 64):
    # at 40 positions the scaled dimensions rotate visibly differently
    rope = dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                original_max_position_embeddings=64)
    llama3_cfg = LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0, rope_scaling=rope,
        rms_norm_eps=1e-5, tie_word_embeddings=False, max_position_embeddings=256,
        attn_implementation="eager")
    llama3 = LlamaForCausalLM(llama3_cfg)
    llama3.load_state_dict(llama.state_dict())
    llama3.eval()
    plain_cfg = LlamaConfig(**{**llama3_cfg.to_dict(), "rope_scaling": None, "rope_parameters": None,
                               "rope_theta": 10000.0})
    llama_plain10k = LlamaForCausalLM(plain_cfg)
    llama_plain10k.load_state_dict(llama.state_dict())
    llama_plain10k.eval()

    variants = [
        # name, model, arch, qtype, rope factors
        ("llama_f32", llama, "llama", Q.F32, None),
        ("llama_f16", llama, "llama", Q.F16, None),
        ("llama_q8_0", llama, "llama", Q.Q8_0, None),
        ("qwen2_f32", qwen, "qwen2", Q.F32, None),
        ("qwen2_q8_0", qwen, "qwen2", Q.Q8_0, None),
        ("llama_rope_freqs_f32", llama3, "llama", Q.F32,
         llama3_rope_factors(16, 10000.0, 8.0, 1.0, 4.0, 64)),
    ]
    meta_vars = []
    for name, model, arch, qtype, factors in variants:
        fname = name + ".gguf"
        path = os.path.join(out, fname)
        tied = bool(model.config.tie_word_embeddings)
        written = write_gguf(path, model, arch, qtype, factors)
        check_file(path, arch, qtype, tied, written)
        orig = logits_of(model, ids)
        back = load_gguf(out, fname)
        got = logits_of(back, ids)
        assert got.shape == (T, VOCAB)
        d = float(np.abs(got - orig).max())
        if factors is not None:
            # transformers' GGUF loader drops rope_freqs.weight: it must reproduce the
            # unscaled model, and the scaled model must differ from it clearly
            plain = logits_of(llama_plain10k, ids)
            if not close(got, plain, 1e-5):
                sys.exit("gguf_tiny: %s: transformers' GGUF logits differ from the unscaled model" % name)
            sd = float(np.abs(orig - plain).max())
            if sd < 0.5:
                sys.exit("gguf_tiny: %s: llama3 scaling changes the logits by only %g" % (name, sd))
            ref, peer = orig, "transformers (Hugging Face model, llama3 rope scaling)"
            print("gguf_tiny: %-21s scaled vs unscaled logits max diff %.3g" % (name, sd), file=sys.stderr)
        else:
            if qtype == Q.F32:
                if not close(got, orig, 1e-5):
                    sys.exit("gguf_tiny: %s: transformers' logits from the GGUF differ from the original "
                             "model's: max abs %g" % (name, d))
            elif d == 0 or not close(got, orig, 0.2):
                sys.exit("gguf_tiny: %s: %s logits vs original max abs %g (expected small, nonzero)"
                         % (name, qtype.name, d))
            ref, peer = got, "transformers (from the GGUF)"
            for (k1, p1), (k2, p2) in zip(sorted(model.state_dict().items()), sorted(back.state_dict().items())):
                if k1 != k2 or p1.shape != p2.shape:
                    sys.exit("gguf_tiny: %s: transformers' model has %s %s, original %s %s"
                             % (name, k2, tuple(p2.shape), k1, tuple(p1.shape)))
                if qtype == Q.F32 and not torch.equal(p1, p2):
                    sys.exit("gguf_tiny: %s: tensor %s differs after the GGUF round trip" % (name, k1))
            print("gguf_tiny: %-21s GGUF vs original logits max diff %.3g" % (name, d), file=sys.stderr)
        logits_name = "logits_%s.f32" % name
        C.write_f32(os.path.join(out, logits_name), ref)
        meta_vars.append({
            "name": name, "file": fname, "arch": arch, "type": qtype.name, "logits": logits_name,
            "tied": tied, "qkv_bias": arch == "qwen2",
            "n_heads": model.config.num_attention_heads, "n_kv_heads": model.config.num_key_value_heads,
            "peer": peer})
    # the shared fixture: a GGUF written by llama.cpp's own converter
    fx = os.path.join(C.env_path("POTLUCK_SHARED"), "fixtures", "gguf-tiny-llama", "llama-2-tiny-random.gguf")
    fx_ids = torch.tensor([1, 450, 4996, 17354, 1701, 29916, 432, 17204, 975, 278, 17366, 11203])
    fxm = AutoModelForCausalLM.from_pretrained(os.path.dirname(fx), gguf_file=os.path.basename(fx),
                                               dtype=torch.float32, attn_implementation="eager")
    fxm.eval()
    c = fxm.config
    if (c.model_type, c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads,
            c.vocab_size, c.tie_word_embeddings) != ("llama", 8, 1, 2, 2, 32000, False):
        sys.exit("gguf_tiny: %s: unexpected config %s" % (fx, c))
    fx_logits = logits_of(fxm, fx_ids)
    C.write_i32(os.path.join(out, "fixture_ids.i32"), fx_ids.numpy())
    C.write_f32(os.path.join(out, "logits_fixture.f32"), fx_logits)
    print("gguf_tiny: fixture               max |logit| %.3g" % float(np.abs(fx_logits).max()), file=sys.stderr)
    C.write_json(os.path.join(out, "meta.json"), {
        "T": T, "vocab": VOCAB, "variants": meta_vars,
        "fixture": {"file": "fixtures/gguf-tiny-llama/llama-2-tiny-random.gguf", "T": len(fx_ids),
                    "vocab": 32000, "ids": "fixture_ids.i32", "logits": "logits_fixture.f32"}})
    print("gguf_tiny: done in %.1f s" % (time.time() - t0), file=sys.stderr)


if __name__ == "__main__":
    main()
