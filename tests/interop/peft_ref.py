# PEFT (LoRA on transformers' LlamaForCausalLM) loss, LoRA gradients and AdamW updates, for tests/test_lora.c.
#
# No input files: the model is built here from fixed seeds.
#
# Base: a tiny random LlamaForCausalLM (vocab 256, hidden 64, intermediate 96, 2 layers,
# 4 heads, 2 KV heads: GQA 2, head_dim 16, rope_theta 10000, rms_norm_eps 1e-5, untied
# lm_head), every parameter re-randomized (norm weights N(1, 0.5) so they are not all ones,
# embeddings N(0, 0.5), matrices N(0, 1/fan_in)), saved with save_pretrained as fp32
# safetensors in base/. The first run below is on this FP32 BASE.
#
# NF4 base (the QLoRA case): base/ reloaded, every layer linear weight (q,k,v,o,gate,up,
# down) quantized with bitsandbytes.functional.quantize_4bit(blocksize 64, nf4,
# compress_statistics=True) and dequantized with dequantize_4bit of the FLATTENED tensor
# (bnb 0.50.2's CPU 2-D dequantize indexes absmax per row when cols % blocksize != 0; see
# lora/nf4.h). potluck's NF4 is byte-identical to this quantizer, so nf4_base/ is exactly
# potluck's NF4-dequantized base. adapter0/ is loaded onto it (PeftModel.from_pretrained,
# trainable) and the same batch and 5 AdamW steps run again.
#
# Adapter: peft LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, all seven target
# modules, bias "none", task CAUSAL_LM). PEFT initializes A (Kaiming-uniform, torch's
# RNG) and B = 0; B is then set to seeded N(0, 0.05) values so the gradient reaches A
# too and the q/k adapters change the logits. The initial adapter is saved with
# PeftModel.save_pretrained in adapter0/ (the C test loads it: same init on both sides).
#
# Batch: three samples of 13, 20 and 15 tokens packed into one row of 48 (segment ids
# 0/1/2, positions restarting at 0); targets are the next ids with the last of each
# sample and about 1 in 5 others set to -100. Each sample runs ALONE through the model;
# loss = sum of every sample's per-token losses / trained tokens of the row.
#
# Training: 5 steps on that batch: loss.backward(); clip_grad_norm_(lora params, 0.3);
# torch.optim.AdamW(lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0.0).
#
# Output:
#   base/                       the fp32 base (config.json, model.safetensors)
#   adapter0/                   the initial adapter (adapter_config.json, adapter_model.safetensors)
#   ids.i32 targets.i32 pos.i32 seg.i32   int32 [48]
#   logits0.f32                 (48, 256) float32: the adapted model's logits (initial adapter),
#                               each sample alone, concatenated in row order
#   grads1/<name>.f32           LoRA gradients of step 1 (before clipping)
#   w1/<name>.f32, w5/<name>.f32  LoRA weights after steps 1 and 5
#   nf4_base/                   the NF4-dequantized base (config.json, model.safetensors)
#   nf4_logits0.f32, nf4_grads1/, nf4_w1/, nf4_w5/   the same on the NF4-dequantized base
#   index.json {"T", "n_valid", "losses": [5 step losses], "grad_norm1": float,
#               "nf4": {"losses", "grad_norm1"},
#               "tensors": [{"name", "shape"}]}   names exactly as in adapter_model.safetensors
import copy
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import _common as C

VOCAB = 256
LENS = (13, 20, 15)
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def rerandomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if name.endswith("norm.weight"):
                v = 1.0 + 0.5 * torch.randn(p.shape, generator=g)
            elif name.endswith("embed_tokens.weight"):
                v = 0.5 * torch.randn(p.shape, generator=g)
            elif p.dim() == 2:
                v = torch.randn(p.shape, generator=g) / np.sqrt(p.shape[1])
            else:
                raise RuntimeError("rerandomize: unexpected parameter %s" % name)
            p.copy_(v)


def make_targets(ids, seed):
    g = torch.Generator().manual_seed(seed)
    n = ids.shape[0]
    tg = torch.full((n,), -100, dtype=torch.long)
    tg[:-1] = ids[1:]
    tg[torch.rand(n, generator=g) < 0.2] = -100
    return tg


def saved_name(n):
    # PEFT's state-dict name without the adapter name, as save_pretrained writes it
    return n.replace(".default.weight", ".weight")


def train5(model, lora, samples, tgs, nv, out, prefix):
    """5 AdamW steps on the batch; grads of step 1 and weights after steps 1 and 5 go to
    out/<prefix>grads1, <prefix>w1, <prefix>w5. Returns (losses, grad norm of step 1)."""
    params = [p for _, p in lora]
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    losses = []
    gn1 = None
    for step in range(1, 6):
        opt.zero_grad(set_to_none=True)
        total = None
        for s, t in zip(samples, tgs):
            part = F.cross_entropy(model(s[None, :]).logits[0], t, ignore_index=-100, reduction="sum")
            total = part if total is None else total + part
        loss = total / nv
        loss.backward()
        losses.append(loss.item())
        if step == 1:
            for n, p in lora:
                d = os.path.join(out, prefix + "grads1")
                os.makedirs(d, exist_ok=True)
                C.write_f32(os.path.join(d, saved_name(n) + ".f32"), p.grad.numpy(), finite=True)
        gn = torch.nn.utils.clip_grad_norm_(params, 0.3)
        if step == 1:
            gn1 = float(gn)
        opt.step()
        if step in (1, 5):
            d = os.path.join(out, prefix + "w%d" % step)
            os.makedirs(d, exist_ok=True)
            for n, p in lora:
                C.write_f32(os.path.join(d, saved_name(n) + ".f32"), p.detach().numpy(), finite=True)
        print("peft_ref: %sstep %d loss %.6f grad norm %.6f" % (prefix, step, loss.item(), float(gn)), file=sys.stderr)

    return losses, gn1


def nf4_run(cfg, out, samples, tgs, nv):
    """Quantize every layer linear weight of base/ with bitsandbytes (NF4, blocksize 64,
    double quantization) and dequantize the flattened tensor; save that base in nf4_base/,
    load adapter0/ onto it and run the same 5 steps (files prefixed nf4_)."""
    import bitsandbytes.functional as BF
    from transformers import LlamaForCausalLM
    from peft import PeftModel

    base = LlamaForCausalLM.from_pretrained(os.path.join(out, "base"), torch_dtype=torch.float32,
                                            attn_implementation="eager")
    n_q = 0
    with torch.no_grad():
        for name, p in base.named_parameters():
            if name.startswith("model.layers.") and any(name.endswith(t + ".weight") for t in TARGETS):
                # quantize the 2-D weight (blocks run over the flattened tensor), dequantize
                # with the state's shape set to the flattened one (as tests/interop/nf4_ref.py)
                q, st = BF.quantize_4bit(p.detach().contiguous(), blocksize=64, quant_type="nf4",
                                         compress_statistics=True)
                st_flat = copy.copy(st)
                st_flat.shape = torch.Size([p.numel()])
                d = BF.dequantize_4bit(q, st_flat, quant_type="nf4").float()
                assert d.numel() == p.numel(), (name, d.shape)
                p.copy_(d.reshape(p.shape))
                n_q += 1
    assert n_q == 7 * cfg.num_hidden_layers, n_q
    base.save_pretrained(os.path.join(out, "nf4_base"), safe_serialization=True)
    model = PeftModel.from_pretrained(base, os.path.join(out, "adapter0"), is_trainable=True)
    model.train()
    lora = [(n, p) for n, p in model.named_parameters() if "lora_" in n]
    assert len(lora) == 2 * 7 * 2, len(lora)
    with torch.no_grad():
        lg = torch.cat([model(s[None, :]).logits[0] for s in samples])
    C.write_f32(os.path.join(out, "nf4_logits0.f32"), lg.numpy(), finite=True)
    losses, gn1 = train5(model, lora, samples, tgs, nv, out, "nf4_")
    return {"losses": losses, "grad_norm1": gn1}


def main():
    t0 = time.time()
    out = C.out_dir()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    from transformers import LlamaConfig, LlamaForCausalLM
    from peft import LoraConfig, get_peft_model

    cfg = LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0, rms_norm_eps=1e-5,
        tie_word_embeddings=False, max_position_embeddings=256, attention_dropout=0.0,
        attn_implementation="eager", torch_dtype=torch.float32)
    torch.manual_seed(900)
    base = LlamaForCausalLM(cfg)
    rerandomize(base, 901)
    base.save_pretrained(os.path.join(out, "base"), safe_serialization=True)

    torch.manual_seed(902)  # PEFT's Kaiming init of A draws from torch's global RNG
    lcfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=TARGETS, use_rslora=False,
                      bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(base, lcfg)
    g = torch.Generator().manual_seed(903)
    lora = [(n, p) for n, p in model.named_parameters() if "lora_" in n]
    assert len(lora) == 2 * 7 * 2, len(lora)
    with torch.no_grad():
        for n, p in lora:
            if "lora_B" in n:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    model.save_pretrained(os.path.join(out, "adapter0"))
    model.train()

    g = torch.Generator().manual_seed(904)
    samples = [torch.randint(0, VOCAB, (n,), generator=g) for n in LENS]
    tgs = [make_targets(s, 905 + i) for i, s in enumerate(samples)]
    nv = int(sum(int((t >= 0).sum()) for t in tgs))
    C.write_i32(os.path.join(out, "ids.i32"), torch.cat(samples).numpy())
    C.write_i32(os.path.join(out, "targets.i32"), torch.cat(tgs).numpy())
    C.write_i32(os.path.join(out, "pos.i32"), torch.cat([torch.arange(n) for n in LENS]).numpy())
    C.write_i32(os.path.join(out, "seg.i32"),
                torch.cat([torch.full((n,), i, dtype=torch.long) for i, n in enumerate(LENS)]).numpy())

    with torch.no_grad():
        lg = torch.cat([model(s[None, :]).logits[0] for s in samples])
    C.write_f32(os.path.join(out, "logits0.f32"), lg.numpy(), finite=True)

    losses, gn1 = train5(model, lora, samples, tgs, nv, out, "")

    # The same on the NF4-dequantized base (a fresh copy of base/, adapter0/ loaded onto it).
    nf4 = nf4_run(cfg, out, samples, tgs, nv)

    C.write_json(os.path.join(out, "index.json"), {
        "T": sum(LENS), "n_valid": nv, "losses": losses, "grad_norm1": gn1, "nf4": nf4,
        "tensors": [{"name": saved_name(n), "shape": list(p.shape)} for n, p in lora]})
    print("peft_ref: done in %.1f s" % (time.time() - t0), file=sys.stderr)


if __name__ == "__main__":
    main()
