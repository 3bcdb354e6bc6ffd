# Tiny random Hugging Face models and torch autograd's loss and parameter gradients, for tests/test_train.c.
#
# No input files: every model is built here from fixed seeds.
#
# Models (built from a config, every parameter re-randomized from a fixed seed
# so no tensor keeps a default value: RMSNorm weights N(1, 0.5), biases
# N(0, 0.5), embeddings N(0, 0.5), matrices N(0, 1/fan_in)), saved with
# save_pretrained (fp32 safetensors), then run in fp32 with eager attention:
#   llama/model/   LlamaForCausalLM: vocab 256, hidden 64, intermediate 96, 2 layers, 4 heads,
#                  2 KV heads (GQA 2, head_dim 16), rope_theta 10000, rms_norm_eps 1e-5, untied lm_head.
#   qwen2/model/   Qwen2ForCausalLM: vocab 256, hidden 48, intermediate 80, 2 layers, 6 heads,
#                  2 KV heads (GQA 3, head_dim 8), q/k/v biases, rms_norm_eps 1e-6,
#                  rope_theta 1e6, tied embeddings.
#
# Two cases per model, each in its own folder next to model/:
#   single/  one row of T=48 tokens, positions 0..47. Targets are the next ids
#            with some set to -100 (ignored). loss = F.cross_entropy(logits, targets,
#            ignore_index=-100) (mean over the valid targets), loss.backward().
#   packed/  three samples of 13, 20 and 15 tokens, each run ALONE through the
#            model (its own positions from 0, its own causal mask); loss = sum of
#            every sample's per-token losses / total valid targets over the three,
#            backward. A packed row with segment ids 0/1/2 and positions restarting
#            at 0 must reproduce it.
# Each case folder holds:
#   ids.i32, targets.i32, pos.i32, seg.i32   int32 little-endian [48]
#   grads/<HF parameter name>.f32            float32 little-endian, the parameter's shape, row-major
#   index.json  {"T": 48, "loss": float, "n_valid": int,
#                "params": [{"name": str, "shape": [..], "file": "grads/..."}]}
# (Tied models list model.embed_tokens.weight only: its gradient includes the head's.)
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import _common as C

T = 48
VOCAB = 256
LENS = (13, 20, 15)


def rerandomize(model, seed):
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


def make_targets(ids, seed):
    """Next ids within the sample, the last one -100, and about 1 in 5 others -100."""
    g = torch.Generator().manual_seed(seed)
    n = ids.shape[0]
    tg = torch.full((n,), -100, dtype=torch.long)
    tg[:-1] = ids[1:]
    drop = torch.rand(n, generator=g) < 0.2
    tg[drop] = -100
    return tg


def write_case(d, model, ids, targets, pos, seg, loss, n_valid):
    os.makedirs(os.path.join(d, "grads"), exist_ok=True)
    C.write_i32(os.path.join(d, "ids.i32"), ids.numpy())
    C.write_i32(os.path.join(d, "targets.i32"), targets.numpy())
    C.write_i32(os.path.join(d, "pos.i32"), pos.numpy())
    C.write_i32(os.path.join(d, "seg.i32"), seg.numpy())
    params = []
    for name, p in model.named_parameters():
        if p.grad is None:
            raise RuntimeError("%s: no gradient" % name)
        f = "grads/%s.f32" % name
        C.write_f32(os.path.join(d, f), p.grad.detach().numpy(), finite=True)
        params.append({"name": name, "shape": list(p.shape), "file": f})
    C.write_json(os.path.join(d, "index.json"),
                 {"T": int(ids.shape[0]), "loss": float(loss), "n_valid": int(n_valid), "params": params})


def run_cases(name, model, out, seed):
    model.save_pretrained(os.path.join(out, name, "model"), safe_serialization=True)
    g = torch.Generator().manual_seed(seed)

    # single row of T tokens
    ids = torch.randint(0, VOCAB, (T,), generator=g)
    targets = make_targets(ids, seed + 1)
    model.zero_grad(set_to_none=True)
    logits = model(ids[None, :]).logits[0]
    loss = F.cross_entropy(logits, targets, ignore_index=-100)
    loss.backward()
    nv = int((targets >= 0).sum())
    write_case(os.path.join(out, name, "single"), model, ids, targets, torch.arange(T),
               torch.zeros(T, dtype=torch.long), loss.item(), nv)
    print("hf_grads: %-6s single: loss %.6f over %d targets" % (name, loss.item(), nv), file=sys.stderr)

    # three samples, each alone; the packed row's ids/targets/pos/seg are their concatenation
    samples = [torch.randint(0, VOCAB, (n,), generator=g) for n in LENS]
    tgs = [make_targets(s, seed + 10 + i) for i, s in enumerate(samples)]
    nv = int(sum(int((t >= 0).sum()) for t in tgs))
    model.zero_grad(set_to_none=True)
    total = None
    for s, t in zip(samples, tgs):
        lg = model(s[None, :]).logits[0]
        part = F.cross_entropy(lg, t, ignore_index=-100, reduction="sum")
        total = part if total is None else total + part
    loss = total / nv
    loss.backward()
    write_case(os.path.join(out, name, "packed"), model, torch.cat(samples), torch.cat(tgs),
               torch.cat([torch.arange(n) for n in LENS]),
               torch.cat([torch.full((n,), i, dtype=torch.long) for i, n in enumerate(LENS)]),
               loss.item(), nv)
    print("hf_grads: %-6s packed: loss %.6f over %d targets" % (name, loss.item(), nv), file=sys.stderr)


def build(cls, config, seed):
    torch.manual_seed(seed)
    model = cls(config)
    rerandomize(model, seed + 1)
    model.train()  # no dropout in these models; train mode only enables autograd paths
    return model


def main():
    t0 = time.time()
    out = C.out_dir()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    llama_cfg = LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0, rms_norm_eps=1e-5,
        tie_word_embeddings=False, max_position_embeddings=256, attention_dropout=0.0,
        attn_implementation="eager", torch_dtype=torch.float32)
    llama = build(LlamaForCausalLM, llama_cfg, 500)
    assert llama.lm_head.weight.data_ptr() != llama.model.embed_tokens.weight.data_ptr()
    run_cases("llama", llama, out, 600)

    qwen_cfg = Qwen2Config(
        vocab_size=VOCAB, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
        num_attention_heads=6, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1000000.0,
        tie_word_embeddings=True, max_position_embeddings=256, attention_dropout=0.0,
        attn_implementation="eager", torch_dtype=torch.float32)
    qwen = build(Qwen2ForCausalLM, qwen_cfg, 700)
    assert qwen.lm_head.weight.data_ptr() == qwen.model.embed_tokens.weight.data_ptr()
    assert qwen.model.layers[0].self_attn.q_proj.bias is not None
    run_cases("qwen2", qwen, out, 800)

    print("hf_grads: done in %.1f s" % (time.time() - t0), file=sys.stderr)


if __name__ == "__main__":
    main()
