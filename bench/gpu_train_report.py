# bench/gpu_train_report.py: the rows of bench/gpu_train.sh, from a potluck
# run directory's metrics.jsonl and bench/peft_train_gpu.py's JSON lines.
# Every row is also appended, as one JSON object, to the results file
# (bench/gpu_train.sh renames it into place at the end).
#
#   gpu_train_report.py potluck RESULTS --label L --run DIR --config CONFIG.json --seq S --warmup W
#                       --peak TFLOPS [--tag T]
#   gpu_train_report.py peft RESULTS --label L --config CONFIG.json --peak TFLOPS [--tag T] < peft lines
#
# tokens/s: the median of metrics.jsonl's tokens_per_s over the steps after
# the first W (all of them when there are no more). MFU: tokens/s x FLOPs per
# token / the device's peak bf16 dense TFLOP/s, with FLOPs per token = 6N +
# 12 L s d (LoRA on a frozen base with activation recomputation: forward 2N,
# backward to the inputs only 2N, the checkpointed forward again 2N; the
# attention scores and values 12 L s d), N the base's matmul parameters (the
# layers' linears and the LM head; the embedding is a lookup), L layers, s
# the sequence length, d the hidden size. The per-category peaks are
# metrics.jsonl's mem_peak (docs/memory.md's categories; with --paged-optim
# "optimizer" counts the moments that live in host memory) and device_peak
# the most device bytes the backend held at once.
import argparse
import json
import statistics
import sys

CATS = ("weights", "activations", "gradients", "optimizer", "workspace")


def shape(path):
    with open(path) as f:
        c = json.load(f)
    d, f_, L, V = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    nh = c["num_attention_heads"]
    nkv = c.get("num_key_value_heads") or nh
    hd = c.get("head_dim") or d // nh
    n = L * (2 * d * nh * hd + 2 * d * nkv * hd + 3 * d * f_) + V * d
    return {"n": n, "layers": L, "d": d}


def flops_per_token(sh, seq):
    return 6.0 * sh["n"] + 12.0 * sh["layers"] * seq * sh["d"]


def mfu(tps, sh, seq, peak):
    return tps * flops_per_token(sh, seq) / (peak * 1e12) if peak > 0 else None


def fmt_mfu(m):
    return f"{100 * m:.3g}%" if m is not None else "? (no peak for this device)"


def gib(b):
    for unit, k in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if b >= 1 << k:
            return f"{b / (1 << k):.3g} {unit}"
    return f"{int(b)} B"


def append(results, row):
    with open(results, "a") as f:
        f.write(json.dumps(row) + "\n")


def potluck(a):
    lines = [json.loads(x) for x in open(f"{a.run}/metrics.jsonl") if x.strip()]
    steps = [x for x in lines if x.get("step", 0) >= 1 and "tokens_per_s" in x]
    if not steps:
        sys.exit(f"gpu_train_report: {a.run}/metrics.jsonl: no step lines")
    timed = steps[a.warmup:] or steps
    tps = statistics.median(x["tokens_per_s"] for x in timed)
    last = steps[-1]
    mem = last.get("mem_peak", {})
    dev = last.get("device_peak")
    sh = shape(a.config)
    m = mfu(tps, sh, a.seq, a.peak)
    cats = ", ".join(f"{k} {gib(mem.get(k, 0))}" for k in CATS)
    devs = gib(dev) if dev is not None else "? (no device_peak in metrics.jsonl)"
    print(f"train: {a.label}: potluck {tps:.1f} tokens/s (median of {len(timed)} timed steps), MFU {fmt_mfu(m)}, "
          f"device peak {devs}{a.tag}")
    print(f"train: {a.label}: potluck peak per category: {cats}{a.tag}")
    append(a.results, {"label": a.label, "side": "potluck", "seq": a.seq, "tokens_per_s": tps, "mfu": m,
                       "timed_steps": len(timed), "steps": len(steps), "mem_peak": mem, "device_peak": dev,
                       "rss_peak": last.get("rss_peak"), "flops_per_token": flops_per_token(sh, a.seq),
                       "base_matmul_params": sh["n"], "peak_tflops": a.peak, "emulated": bool(a.tag)})


def peft(a):
    sh = shape(a.config)
    n = 0
    for x in sys.stdin:
        x = x.strip()
        if not x.startswith("{"):
            continue
        r = json.loads(x)
        n += 1
        seq, tps, mma = r["seq"], r["tokens_per_s"], r.get("max_memory_allocated")
        m = mfu(tps, sh, seq, a.peak)
        mems = gib(mma) if mma is not None else "n/a (not on a GPU)"
        label = a.label.replace("{seq}", str(seq))
        print(f"train: {label}: peft {tps:.1f} tokens/s (median of {r['steps']} timed steps), MFU {fmt_mfu(m)}, "
              f"max_memory_allocated {mems} (torch {r['torch']}, {r['base']} base, LoRA {r['lora_dtype']}){a.tag}")
        append(a.results, {"label": label, "side": "peft", "seq": seq, "tokens_per_s": tps, "mfu": m,
                           "max_memory_allocated": mma, "device": r["device"], "torch": r["torch"],
                           "emulated": bool(a.tag)})
        pl = [x for x in map(json.loads, open(a.results)) if x["label"] == label and x["side"] == "potluck"]
        if pl:
            p = pl[-1]
            mr = f"{p['device_peak'] / mma:.3g} (device_peak / max_memory_allocated)" \
                if mma and p.get("device_peak") is not None else "n/a (no GPU memory figure on this side)"
            print(f"train: {label}: ratio potluck/peft: tokens/s {p['tokens_per_s'] / tps:.3g}, memory {mr}{a.tag}")
    if n == 0:
        sys.exit("gpu_train_report: no JSON line from bench/peft_train_gpu.py")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("side", choices=["potluck", "peft"])
    ap.add_argument("results")
    ap.add_argument("--label", required=True)
    ap.add_argument("--run")
    ap.add_argument("--config", required=True)
    ap.add_argument("--seq", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--peak", type=float, default=0.0)
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    if a.tag:
        a.tag = f" ({a.tag})"
    potluck(a) if a.side == "potluck" else peft(a)


if __name__ == "__main__":
    main()
