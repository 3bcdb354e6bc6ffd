# tokenizer_corpus.py OUTDIR: Hugging Face `tokenizers` ids for every line of the tokenizer test corpus.
#
# The corpus is built by tests/make_corpus.py (make test runs it before the
# references). For each tokenizer NAME below this writes OUTDIR/NAME/:
#   ids.bin     every line's ids, concatenated (little-endian; uint16 when the
#               vocabulary has fewer than 65536 ids, else uint32: meta.json "dtype")
#   lines.bin   uint32 per line: its number of ids (the line offsets into ids.bin)
#   rt.bin      uint8 per line: 1 when decode(encode(line)) == line for the reference
#   meta.json   name, dtype, lines, tokens, corpus sha256, vocabulary size
# and, for llama-3.2, the tokenizer.json the reference was built from (the
# fixture's encoder.json + vocab.bpe wrapped as PROVENANCE.md section 4e says:
# BPE with ignore_merges, Split(llama-3 regex, Isolated) then
# ByteLevel(use_regex=false), plus <|begin_of_text|>/<|end_of_text|>).
# smollm2 is the GGUF vocabulary as transformers loads it, with SmolLM2's
# digit-splitting pre-tokenizer restored (see smollm2()); smollm2-transformers-gguf
# is transformers' GGUF loading as it is (reported by the C test, not asserted).
# Every line is encoded with add_special_tokens=False; special-token text in
# a line is matched as Hugging Face does by default.
# inputs: $POTLUCK_CACHE/corpus/tok-corpus-v1.txt $POTLUCK_SHARED/fixtures/tokenizers/gpt2/vocab.json $POTLUCK_SHARED/fixtures/tokenizers/gpt2/merges.txt $POTLUCK_SHARED/fixtures/tokenizers/llama-3.2/encoder.json $POTLUCK_SHARED/fixtures/tokenizers/llama-3.2/vocab.bpe $POTLUCK_SHARED/fixtures/tokenizers/phi-2/tokenizer.json $POTLUCK_SHARED/fixtures/tokenizers/phi-3-mini/tokenizer.json $POTLUCK_SHARED/fixtures/tokenizers/tiny-random-LlamaForCausalLM/tokenizer.json $POTLUCK_MODEL
import hashlib
import json
import os
import sys

import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

SHARED = os.environ["POTLUCK_SHARED"] + "/fixtures/tokenizers"
CORPUS = os.environ["POTLUCK_CACHE"] + "/corpus/tok-corpus-v1.txt"
MODEL = os.environ["POTLUCK_MODEL"]
LLAMA3_RE = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
             "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")


def gpt2():
    tok = Tokenizer(models.BPE.from_file(f"{SHARED}/gpt2/vocab.json", f"{SHARED}/gpt2/merges.txt"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
    return tok


def llama32(outdir):
    with open(f"{SHARED}/llama-3.2/encoder.json", encoding="utf-8") as f:
        vocab = json.load(f)
    merges = []
    with open(f"{SHARED}/llama-3.2/vocab.bpe", encoding="utf-8") as f:
        for line in f.read().split("\n"):
            if line:  # no header; lines starting with '#' are merges too
                a, b = line.split(" ", 1)
                merges.append((a, b))
    tok = Tokenizer(models.BPE(vocab, merges, ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_RE), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken("<|begin_of_text|>", special=True), AddedToken("<|end_of_text|>", special=True)])
    os.makedirs(f"{outdir}/llama-3.2", exist_ok=True)
    tok.save(f"{outdir}/llama-3.2/tokenizer.json")
    return tok


def smollm2(raw):
    """SmolLM2's GGUF vocabulary through transformers' GGUF loader. That loader
    ignores tokenizer.ggml.pre ("smollm") and gives plain GPT-2 ByteLevel; with
    raw=False the pre-tokenizer is set to the one SmolLM2's own tokenizer.json
    has and llama.cpp's "smollm" encodes: digits one by one, then ByteLevel."""
    from transformers import AutoTokenizer
    t = AutoTokenizer.from_pretrained(os.path.dirname(MODEL), gguf_file=os.path.basename(MODEL)).backend_tokenizer
    if not raw:
        t.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ])
    return t


def main():
    out = sys.argv[1]
    with open(CORPUS, "rb") as f:
        raw = f.read()
    lines = raw.decode("utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    sha = hashlib.sha256(raw).hexdigest()
    toks = {
        "gpt2": gpt2(),
        "llama-3.2": llama32(out),
        "phi-2": Tokenizer.from_file(f"{SHARED}/phi-2/tokenizer.json"),
        "phi-3-mini": Tokenizer.from_file(f"{SHARED}/phi-3-mini/tokenizer.json"),
        "tiny-random-LlamaForCausalLM": Tokenizer.from_file(f"{SHARED}/tiny-random-LlamaForCausalLM/tokenizer.json"),
        "smollm2": smollm2(False),
        "smollm2-transformers-gguf": smollm2(True),
    }
    summary = {}
    for name, tok in toks.items():
        encs = tok.encode_batch(lines, add_special_tokens=False)
        ids = [e.ids for e in encs]
        decs = tok.decode_batch(ids, skip_special_tokens=False)
        n = tok.get_vocab_size(with_added_tokens=True)
        dtype = "<u2" if n < 65536 else "<u4"
        d = f"{out}/{name}"
        os.makedirs(d, exist_ok=True)
        flat = np.fromiter((i for e in ids for i in e), dtype=np.int64)
        flat.astype(dtype).tofile(f"{d}/ids.bin")
        np.array([len(e) for e in ids], dtype="<u4").tofile(f"{d}/lines.bin")
        rt = np.array([dec == line for dec, line in zip(decs, lines)], dtype=np.uint8)
        rt.tofile(f"{d}/rt.bin")
        meta = {"name": name, "dtype": "uint16" if dtype == "<u2" else "uint32", "lines": len(lines),
                "tokens": int(flat.size), "corpus_sha256": sha, "vocab": n, "round_trips": int(rt.sum())}
        with open(f"{d}/meta.json", "w") as f:
            json.dump(meta, f, indent=1)
        summary[name] = meta
        print(f"tokenizer_corpus: {name}: {len(lines)} lines, {flat.size} ids, {int(rt.sum())} round trips")
    with open(f"{out}/summary.json", "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
