#!/usr/bin/env python3
"""make_corpus.py OUT: a deterministic multilingual tokenizer test corpus of distinct lines.

Sources are files installed by Debian packages (see SOURCES): Emacs' HELLO and
TUTORIAL translations (emacs-common: Chinese, Japanese, Korean, Thai, Russian,
Hebrew, ...), Unicode's emoji test files (unicode-data), the Arabic Hunspell
dictionary (hunspell-ar), Japanese and Chinese manual pages (manpages-ja,
manpages-zh), C headers from /usr/include and English text from
/usr/share/doc. Lines are taken in sorted file order, deduplicated, and
interleaved with generated lines: long whitespace runs, digit runs and
special-token look-alikes embedded in text. The output stops at CAP bytes.
System python3 only, no third-party packages. OUT is written atomically."""
import glob, gzip, os, sys

CAP = 6 * 1024 * 1024
MAX_LINE = 2000

def read_text(path):
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except OSError:
        return []
    for enc in ("utf-8",):
        try:
            return data.decode(enc).splitlines()
        except UnicodeDecodeError:
            return []
    return []

def files(pattern, limit=None):
    out = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    return out[:limit] if limit else out

SOURCES = [
    ("emacs HELLO + tutorials", files("/usr/share/emacs/*/etc/HELLO") + files("/usr/share/emacs/*/etc/tutorials/TUTORIAL*")),
    ("emoji", files("/usr/share/unicode/emoji/*.txt")),
    ("arabic", files("/usr/share/hunspell/ar.dic")),
    ("manpages ja", files("/usr/share/man/ja/**/*.gz", 400)),
    ("manpages zh", files("/usr/share/man/zh_CN/**/*.gz", 300) + files("/usr/share/man/zh_TW/**/*.gz", 200)),
    ("manpages other", files("/usr/share/man/ru/**/*.gz", 100) + files("/usr/share/man/de/**/*.gz", 100)),
    ("C headers", files("/usr/include/*.h") + files("/usr/include/linux/*.h", 300)),
    ("docs", files("/usr/share/doc/*/copyright", 400) + files("/usr/share/doc/*/README*", 200)),
]

SPECIALS = ["<|im_start|>", "<|im_end|>", "</s>", "<s>", "[INST]", "[/INST]", "<unk>", "<|endoftext|>",
            "<|user|>", "<|assistant|>", "<|end|>", "<|begin_of_text|>", "<<SYS>>", "<pad>", "[CLS]", "[SEP]"]

def generated(i, line):
    """deterministic extra lines derived from source line number i"""
    k = i % 7
    if k == 0:
        return " " * (1 + i % 40) + line + "\t" * (i % 5) + " " * (i % 17)
    if k == 1:
        return line + " " + str(i * 7919 % 10 ** (1 + i % 12)) + " " + "9" * (1 + i % 30) + "  3.14159 1,234,567"
    if k == 2:
        s = SPECIALS[i % len(SPECIALS)]
        t = SPECIALS[(i // 3) % len(SPECIALS)]
        return s + line[: 60] + " " + t + "x" + s + " " + line[60:120]
    if k == 3:
        return line.replace(" ", "   ")
    if k == 4:
        return "    " * (i % 6) + "if (x == " + str(i) + ") {  // " + line[:80]
    return None

def main():
    out = sys.argv[1]
    seen = set()
    lines, size = [], 0
    per_source = []
    for name, paths in SOURCES:
        per_source.append((name, [l for p in paths for l in read_text(p)]))
    # round-robin over sources so every kind of text is in the capped corpus
    idx = [0] * len(per_source)
    gen = 0
    while size < CAP and any(idx[s] < len(per_source[s][1]) for s in range(len(per_source))):
        for s, (name, src) in enumerate(per_source):
            for _ in range(8):
                if idx[s] >= len(src) or size >= CAP:
                    break
                line = src[idx[s]].rstrip("\n")[:MAX_LINE]
                idx[s] += 1
                cands = [line]
                if line.strip():
                    g = generated(gen, line)
                    gen += 1
                    if g is not None:
                        cands.append(g[:MAX_LINE])
                for c in cands:
                    if not c.strip() or c in seen or "\r" in c:
                        continue
                    seen.add(c)
                    lines.append(c)
                    size += len(c.encode("utf-8")) + 1
    tmp = out + ".tmp"
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for l in lines:
            f.write(l + "\n")
    os.replace(tmp, out)
    print(f"corpus: {out}: {len(lines)} distinct lines, {size} bytes")

if __name__ == "__main__":
    main()
