# bench/peft_train_gpu.py: PyTorch + PEFT's side of bench/gpu_train.sh: LoRA
# training steps on a random-init bf16 LlamaForCausalLM of a given shape, one
# JSON line per sequence length.
#
#   peft_train_gpu.py --config DIR/config.json --seq N [--seq N ...] [--steps S] [--warmup W]
#                     [--lora-r R] [--device cuda|cpu] [--threads T]
#
# The shape is the config.json's (a `potluck model init` folder: its NF4
# quantization_config is dropped, the base is bf16 and random, N(0, 0.02^2)).
# LoRA r R (alpha 2R, dropout 0.05, all-linear: q,k,v,o,gate,up,down; the
# adapters in fp32, PEFT's default for a bf16 base), gradient checkpointing
# (non-reentrant), SDPA attention, batch 1. One row of fixed ids
# ((i*7919 + 13) % vocab), next-token cross-entropy, backward,
# clip_grad_norm_(0.3), AdamW(lr 2e-4) on the LoRA parameters. tokens/s is the
# median over S timed steps after W warm-up steps; "max_memory_allocated" is
# torch.cuda.max_memory_allocated() over the warm-up and timed steps of that
# length (the bf16 base included; null on the CPU). --device cpu is for
# bench/gpu_train.sh --dry-run on a tiny shape, not a measurement. Exit
# status 3, with a line on stderr, when torch, transformers or peft cannot be
# imported or (--device cuda) torch sees no CUDA device.
import argparse
import json
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--seq", type=int, action="append", required=True)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()

    try:
        import torch
        import torch.nn.functional as F
        from transformers import LlamaConfig, LlamaForCausalLM
        from peft import LoraConfig, get_peft_model
    except ImportError as e:
        print(f"peft_train_gpu.py: cannot import torch, transformers and peft: {e}", file=sys.stderr)
        return 3
    if a.device == "cuda" and not torch.cuda.is_available():
        print("peft_train_gpu.py: torch has no CUDA device here", file=sys.stderr)
        return 3

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    with open(a.config) as f:
        d = json.load(f)
    for k in [k for k in d if k == "quantization_config" or k.startswith("potluck_")]:
        del d[k]
    d["torch_dtype"] = "bfloat16"
    cfg = LlamaConfig(**d)
    cfg._attn_implementation = "sdpa"
    dev = torch.device(a.device)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    with dev:  # initialized on the device: a 33B fp32 host init would take minutes
        model = LlamaForCausalLM(cfg)
    torch.set_default_dtype(prev)
    n_base = sum(p.numel() for p in model.parameters())
    lcfg = LoraConfig(r=a.lora_r, lora_alpha=2 * a.lora_r, lora_dropout=0.05, target_modules="all-linear",
                      task_type="CAUSAL_LM")
    model = get_peft_model(model, lcfg)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    model.config.use_cache = False
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    lora_dtype = str(params[0].dtype).replace("torch.", "")
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.0)
    V = cfg.vocab_size
    cuda = dev.type == "cuda"
    for seq in a.seq:
        ids = ((torch.arange(seq, device=dev) * 7919 + 13) % V).unsqueeze(0)
        tg = ids[:, 1:]
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        times = []
        for s in range(a.warmup + a.steps):
            t0 = time.perf_counter()
            logits = model(input_ids=ids).logits[:, :-1]
            loss = F.cross_entropy(logits.float().reshape(-1, V), tg.reshape(-1))
            del logits
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 0.3)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if cuda:
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            if s >= a.warmup:
                times.append(dt)
        med = statistics.median(times)
        print(json.dumps({"side": "peft", "device": torch.cuda.get_device_name() if cuda else "cpu",
                          "torch": torch.__version__, "base": "bf16", "base_params": n_base,
                          "lora_r": a.lora_r, "lora_dtype": lora_dtype, "seq": seq, "steps": a.steps,
                          "warmup": a.warmup, "step_s_median": med, "tokens_per_s": seq / med,
                          "max_memory_allocated": torch.cuda.max_memory_allocated() if cuda else None,
                          "loss_last": float(loss.detach())}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
