# bench/torch_train.py: PyTorch's side of bench/train_bench.sh: forward + backward + AdamW
# steps of a GGUF model loaded by transformers (dequantized to fp32), one JSON line.
#
#   torch_train.py --model PATH.gguf [--seq N] [--steps S] [--warmup W] [--threads T]
#
# Same work as `potluck bench-train`: one row of N fixed ids ((i*7919) % 40000 + 100,
# modulo the vocabulary), targets the next ids (the last one ignored), mean
# cross-entropy, loss.backward(), torch.optim.AdamW(lr=1e-4) step, zero_grad.
# Eager attention, fp32, torch.set_num_threads(T). tokens/s is the median over
# the S timed steps (after W warm-up steps); model loading is not timed.
import argparse
import json
import os
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
    a = ap.parse_args()

    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(a.threads)
    d, f = os.path.split(os.path.abspath(a.model))
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.train()
    V = model.config.vocab_size
    N = a.seq
    ids = torch.tensor([((i * 7919) % 40000 + 100) % V for i in range(N)], dtype=torch.long)
    tg = torch.full((N,), -100, dtype=torch.long)
    tg[:-1] = ids[1:]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    params = sum(p.numel() for p in model.parameters())
    times, losses = [], []
    for s in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        logits = model(ids[None, :]).logits[0]
        loss = F.cross_entropy(logits, tg, ignore_index=-100)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=False)
        dt = time.perf_counter() - t0
        losses.append(loss.item())
        if s >= a.warmup:
            times.append(dt)
    med = statistics.median(times)
    print(json.dumps({"side": "torch", "seq": N, "batch": 1, "threads": torch.get_num_threads(),
                      "params": params, "steps": a.steps, "step_s_median": round(med, 4),
                      "tokens_per_s": round(N / med, 2), "loss_first": losses[0], "loss_last": losses[-1],
                      "torch": torch.__version__}))


if __name__ == "__main__":
    sys.exit(main())
