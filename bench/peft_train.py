# bench/peft_train.py: PyTorch + PEFT's side of bench/qlora_bench.sh: LoRA
# training steps (r 16, alpha 32, dropout 0.05, all-linear: q,k,v,o,gate,up,down)
# of SmolLM2-135M on the CPU, one JSON line.
#
#   peft_train.py --model PATH.gguf [--seq N] [--steps S] [--warmup W] [--threads T] [--checkpointing] [--base bnb4|fp32]
#
# The base: bitsandbytes 4-bit NF4 (blocksize 64, double quant) when --base bnb4 and
# it runs on the CPU, else fp32; the line says which ("base"). One row of N
# fixed ids ((i*7919) % 40000 + 100, modulo the vocabulary), next-token targets,
# mean cross-entropy, backward, clip_grad_norm_(0.3), AdamW(lr 2e-4) on the LoRA
# parameters. tokens/s is the median over S timed steps after W warm-up steps.
import argparse
import json
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--checkpointing", action="store_true")
    ap.add_argument("--base", default="bnb4", choices=["bnb4", "fp32"])
    a = ap.parse_args()

    import os
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM
    from peft import LoraConfig, get_peft_model

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    d, f = os.path.split(os.path.abspath(a.model))
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32, attn_implementation="eager")
    base = "fp32"
    note = ""
    if a.base == "bnb4":
        try:
            import bitsandbytes as bnb  # noqa: F401
            from transformers import BitsAndBytesConfig
            import tempfile
            tmp = tempfile.mkdtemp()
            # a GGUF-loaded model refuses save_pretrained: rebuild it from its config + weights
            cfg = model.config
            for k in ("quantization_config", "gguf_file"):
                if hasattr(cfg, k):
                    delattr(cfg, k)
            plain = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.float32)
            plain.load_state_dict(model.state_dict(), strict=False)
            plain.save_pretrained(tmp, safe_serialization=True)
            del plain
            q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=torch.float32)
            m4 = AutoModelForCausalLM.from_pretrained(tmp, quantization_config=q, torch_dtype=torch.float32,
                                                      attn_implementation="eager", device_map="cpu")
            ids = torch.tensor([[1, 2, 3]])
            m4(ids).logits.sum().item()  # does 4-bit run on this CPU?
            model = m4
            base = "bnb-nf4"
        except Exception as e:  # noqa: BLE001
            note = f"bitsandbytes 4-bit on CPU failed ({type(e).__name__}: {str(e)[:120]}); fp32 base"
    cfg = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
    model = get_peft_model(model, cfg)
    if a.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.train()
    V = model.config.vocab_size
    ids = torch.tensor([[((i * 7919) % 40000 + 100) % V for i in range(a.seq)]])
    tg = ids.clone()[:, 1:]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.0)
    times = []
    for s in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        logits = model(ids).logits[:, :-1]
        loss = F.cross_entropy(logits.reshape(-1, V), tg.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.3)
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        if s >= a.warmup:
            times.append(dt)
    med = statistics.median(times)
    print(json.dumps({"side": "peft", "base": base, "note": note, "seq": a.seq, "threads": a.threads,
                      "checkpointing": a.checkpointing, "steps": a.steps, "step_s_median": med,
                      "tokens_per_s": a.seq / med, "loss_last": float(loss)}))


if __name__ == "__main__":
    sys.exit(main())
