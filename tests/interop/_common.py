# Shared helpers for the peer reference scripts: fixed prompts, raw-array and JSON writers.
#
# Not a reference script itself (refs.sh skips names starting with "_"), but it
# is part of every reference's cache key, so changing a prompt here recomputes
# every reference that uses it.
import hashlib
import json
import os
import sys

import numpy as np

# The fixed prompts both SmolLM2 scripts use (smollm2_logits.py, smollm2_llamacpp.py).
# Order matters: file names and JSON lists are indexed by position in this list.
SMOLLM2_PROMPTS = [
    # 0: plain English
    "The quick brown fox jumps over the lazy dog. Then the dog",
    # 1: code
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    # 2: number-heavy line
    "In 2023: 12 * 34 = 408, pi = 3.14, so 7 * 6 =",
    # 3: non-ASCII text (accents, CJK, emoji)
    "Café — 東京は首都です。Привет, мир! 🙂",
    # 4: ChatML chat rendered as text, with <|im_start|>/<|im_end|> special tokens
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
    "<|im_start|>assistant\n",
    # 5: a single word
    "Hello",
    # 6: a paragraph of roughly 100 tokens
    "The history of bread begins in the Neolithic era, when early farmers in the Fertile Crescent "
    "learned to grind wild grains between stones and bake the paste on hot rocks. Over thousands of "
    "years, bakers discovered that dough left to rest would rise, thanks to wild yeasts and bacteria "
    "carried on the flour and in the air. The Egyptians built the first large ovens, the Romans "
    "organised professional guilds of bakers, and medieval towns regulated the weight and price of "
    "every loaf. Today, sourdough is",
    # 7: newlines and tabs
    "name\tage\tcity\nAlice\t30\tParis\nBob\t25\tBerlin\n\nCarol\t",
]


def out_dir(argv=None):
    """The output directory from argv[1]; created if missing."""
    argv = sys.argv if argv is None else argv
    if len(argv) < 2:
        sys.exit("usage: %s OUTDIR" % os.path.basename(argv[0]))
    d = argv[1]
    os.makedirs(d, exist_ok=True)
    return d


def env_path(name):
    """The path in environment variable NAME; exits with a clear message if unset or missing."""
    p = os.environ.get(name)
    if not p:
        sys.exit("%s is not set" % name)
    if not os.path.exists(p):
        sys.exit("%s=%s: no such file" % (name, p))
    return p


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_f32(path, arr, finite=False):
    """Writes arr as raw little-endian float32, C order (row-major). Returns the shape.
    finite=True refuses NaN/inf (for outputs such as logits, where one means a bug)."""
    a = np.ascontiguousarray(np.asarray(arr, dtype="<f4"))
    if finite and not np.all(np.isfinite(a)):
        raise ValueError("%s: refusing to write non-finite values" % path)
    a.tofile(path)
    return a.shape


def write_i32(path, arr):
    """Writes arr as raw little-endian int32, C order. Returns the shape."""
    a = np.asarray(arr)
    if a.size and (a.min() < -(2**31) or a.max() >= 2**31):
        raise ValueError("%s: value out of int32 range" % path)
    a = np.ascontiguousarray(a.astype("<i4"))
    a.tofile(path)
    return a.shape


def write_json(path, obj):
    """Writes obj as UTF-8 JSON (non-ASCII kept as is), with a trailing newline."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def gguf_add_bos(path):
    """tokenizer.ggml.add_bos_token from a GGUF's metadata (None when absent)."""
    import gguf

    r = gguf.GGUFReader(path)
    f = r.fields.get("tokenizer.ggml.add_bos_token")
    if f is None:
        return None
    return bool(f.contents())
