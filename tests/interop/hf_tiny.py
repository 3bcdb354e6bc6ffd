# Tiny random Hugging Face models (safetensors, via transformers' save_pretrained) and their fp32 logits.
#
# No input files: every model is built here from fixed seeds.
#
# Each model is built from a config, its parameters are re-randomized from a
# fixed seed so that every tensor matters (normal with mean/std: RMSNorm weights
# (1, 0.5) instead of ones, biases (0, 0.5) instead of zeros, embeddings (0, 0.5),
# other matrices (0, 1/sqrt(fan_in))), then it is saved with save_pretrained (fp32
# safetensors) and run in fp32 eval mode (eager attention) on a fixed sequence
# of 40 token ids. Every saved folder is reloaded with from_pretrained and must
# reproduce the logits bit for bit, or the script fails.
#
# Writes into OUTDIR (argv[1]) one folder per model:
#   llama/          LlamaForCausalLM: vocab 300, hidden 64, intermediate 96, 2 layers,
#                   4 heads, 2 KV heads (head_dim 16), rope_theta 500000, llama3 rope
#                   scaling (factor 8, low 1, high 4, original max positions 64),
#                   rms_norm_eps 1e-5, untied lm_head, max_position_embeddings 256.
#                   One model.safetensors.
#   llama_sharded/  the same model and weights, saved with max_shard_size 100KB:
#                   model-0000k-of-0000n.safetensors + model.safetensors.index.json.
#                   Its config.json is rewritten in the older layout real checkpoints
#                   use (top-level "rope_theta" and "rope_scaling" instead of
#                   transformers 5's "rope_parameters"); the reload check covers it.
#   qwen2/          Qwen2ForCausalLM: vocab 300, hidden 48, intermediate 80, 2 layers,
#                   6 heads, 2 KV heads (GQA 3, head_dim 8), q/k/v biases,
#                   rms_norm_eps 1e-6, rope_theta 1e6, tied embeddings (no lm_head.weight
#                   in the file).
#   mistral/        MistralForCausalLM: vocab 300, hidden 64, intermediate 112, 2 layers,
#                   8 heads, 2 KV heads (GQA 4, head_dim 8), rope_theta 10000,
#                   rms_norm_eps 1e-5, untied, sliding_window null.
# and in each folder, next to config.json and the safetensors:
#   ids.i32     int32 little-endian [40]: the input token ids (same for every model)
#   logits.f32  float32 little-endian [40, 300] row-major: the logits at every position
#   meta.json   {"T": 40, "vocab": 300, "arch": str, "files": [safetensors names],
#                "tied": bool}
import copy
import json
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


def logits_of(model, ids):
    with torch.no_grad():
        out = model(ids[None, :]).logits[0]  # (T, V)
    return out.to(torch.float32).numpy()


def legacy_config(path):
    """Rewrites config.json with top-level rope_theta / rope_scaling (transformers 4.x layout)."""
    with open(path) as f:
        cfg = json.load(f)
    rp = cfg.pop("rope_parameters")
    cfg["rope_theta"] = rp.pop("rope_theta")
    if rp.get("rope_type", "default") != "default":
        cfg["rope_scaling"] = rp
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def save_and_check(name, model, cls, ids, out, shard=None, legacy=False):
    d = os.path.join(out, name)
    kw = {"max_shard_size": shard} if shard else {}
    model.save_pretrained(d, safe_serialization=True, **kw)
    if legacy:
        legacy_config(os.path.join(d, "config.json"))
    ref = logits_of(model, ids)
    assert ref.shape == (T, VOCAB)

    back = cls.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
    back.eval()
    got = logits_of(back, ids)
    if not np.array_equal(ref, got):
        sys.exit("hf_tiny: %s: reloaded model's logits differ (max abs %g)"
                 % (name, float(np.abs(ref - got).max())))
    for (k1, p1), (k2, p2) in zip(sorted(model.state_dict().items()), sorted(back.state_dict().items())):
        if k1 != k2 or not torch.equal(p1, p2):
            sys.exit("hf_tiny: %s: reloaded tensor %s differs" % (name, k1))

    files = sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))
    if shard and (len(files) < 2 or not os.path.exists(os.path.join(d, "model.safetensors.index.json"))):
        sys.exit("hf_tiny: %s: expected several shards and an index, found %r" % (name, files))
    if not shard and files != ["model.safetensors"]:
        sys.exit("hf_tiny: %s: expected one model.safetensors, found %r" % (name, files))

    C.write_i32(os.path.join(d, "ids.i32"), ids.numpy())
    C.write_f32(os.path.join(d, "logits.f32"), ref, finite=True)
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    C.write_json(os.path.join(d, "meta.json"), {
        "T": T, "vocab": VOCAB, "arch": type(model).__name__, "files": files, "tied": tied})
    sm = ref - ref.max(axis=1, keepdims=True)
    p = np.exp(sm) / np.exp(sm).sum(axis=1, keepdims=True)
    print("hf_tiny: %-13s %d file(s), logits std %.2f, mean max-prob %.2f"
          % (name, len(files), float(ref.std()), float(p.max(axis=1).mean())), file=sys.stderr)


def build(cls, config, seed):
    torch.manual_seed(seed)
    model = cls(config)
    rerandomize(model, seed + 1)
    model.eval()
    return model


def main():
    t0 = time.time()
    out = C.out_dir()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                              Qwen2Config, Qwen2ForCausalLM)

    ids = fixed_ids()

    llama_cfg = LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        rms_norm_eps=1e-5, tie_word_embeddings=False, max_position_embeddings=256,
        attn_implementation="eager")
    llama = build(LlamaForCausalLM, llama_cfg, 100)
    save_and_check("llama", llama, LlamaForCausalLM, ids, out)
    save_and_check("llama_sharded", copy.deepcopy(llama), LlamaForCausalLM, ids, out,
                   shard="100KB", legacy=True)

    qwen_cfg = Qwen2Config(
        vocab_size=VOCAB, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
        num_attention_heads=6, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1000000.0,
        tie_word_embeddings=True, max_position_embeddings=256, attn_implementation="eager")
    qwen = build(Qwen2ForCausalLM, qwen_cfg, 200)
    assert qwen.lm_head.weight.data_ptr() == qwen.model.embed_tokens.weight.data_ptr()
    save_and_check("qwen2", qwen, Qwen2ForCausalLM, ids, out)

    mistral_cfg = MistralConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=112, num_hidden_layers=2,
        num_attention_heads=8, num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=10000.0,
        tie_word_embeddings=False, sliding_window=None, max_position_embeddings=256,
        attn_implementation="eager")
    mistral = build(MistralForCausalLM, mistral_cfg, 300)
    save_and_check("mistral", mistral, MistralForCausalLM, ids, out)

    print("hf_tiny: done in %.1f s" % (time.time() - t0), file=sys.stderr)


if __name__ == "__main__":
    main()
