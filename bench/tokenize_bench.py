# tokenize_bench.py TOKENIZER CORPUS: Hugging Face `tokenizers` encode speed on every line of CORPUS (one JSON line).
#
# TOKENIZER: a tokenizer.json, a folder with one, a GPT-2 folder (vocab.json + merges.txt) or a GGUF
# (through transformers' GGUF loader). Threads: set RAYON_NUM_THREADS before starting (the
# Rayon pool is sized once per process). encode_batch(lines, add_special_tokens=False).
import json, os, sys, time

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers


def load(path):
    if os.path.isdir(path):
        if os.path.exists(f"{path}/tokenizer.json"):
            return Tokenizer.from_file(f"{path}/tokenizer.json")
        tok = Tokenizer(models.BPE.from_file(f"{path}/vocab.json", f"{path}/merges.txt"))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
        return tok
    if path.endswith(".gguf"):
        from transformers import AutoTokenizer
        t = AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path)).backend_tokenizer
        t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                   pre_tokenizers.ByteLevel(add_prefix_space=False)])
        return t
    return Tokenizer.from_file(path)


def main():
    tok = load(sys.argv[1])
    with open(sys.argv[2], "rb") as f:
        raw = f.read()
    lines = raw.decode("utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    tok.encode_batch(lines[:200], add_special_tokens=False)  # warm-up: thread pool, caches of the first lines only
    t0 = time.perf_counter()
    encs = tok.encode_batch(lines, add_special_tokens=False)
    sec = time.perf_counter() - t0
    print(json.dumps({"bytes": len(raw), "lines": len(lines), "threads": int(os.environ.get("RAYON_NUM_THREADS", "0")),
                      "seconds": round(sec, 4), "mb_per_s": round(len(raw) / 1e6 / sec, 3),
                      "tokens": sum(len(e.ids) for e in encs)}))


if __name__ == "__main__":
    main()
