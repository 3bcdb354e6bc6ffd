"""llama.cpp's perplexity and KL divergence of a variant from a reference.

usage: python _llamacpp_kl.py REF.gguf VARIANT.gguf TEXT N_CTX OUT.json

Runs in the peers' venv through llama-cpp-python (the llama.cpp library it
carries, CPU, 2 threads); the steps are llama-perplexity's: the text is
tokenized once by llama.cpp (BOS added when the model wants it), cut into
chunks of N_CTX tokens, each chunk's first token set to BOS, all logits of a
chunk computed, and tokens N_CTX/2 + 1 .. N_CTX - 1 scored. Writes the
perplexity of both models, the KL(ref || variant) mean, percentiles and the
same-top-token rate. Not run by refs.sh (the name starts with _): the
caller (tests/big_eval_kl.sh) caches its output.
"""
import json
import sys

import numpy as np
from llama_cpp import Llama


def logsoftmax(x):
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def chunk_logits(llm, toks):
    llm.reset()
    llm.eval(toks)
    return np.array(llm.scores[: len(toks)], dtype=np.float32)


def main():
    ref_p, var_p, text_p, n_ctx, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    kw = dict(n_ctx=n_ctx, n_batch=n_ctx, logits_all=True, n_threads=2, verbose=False)
    ref, var = Llama(model_path=ref_p, **kw), Llama(model_path=var_p, **kw)
    text = open(text_p, "rb").read()
    add_bos = ref._model.add_bos_token() if hasattr(ref._model, "add_bos_token") else True
    toks = ref.tokenize(text, add_bos=add_bos, special=False)
    bos = ref.token_bos()
    first = n_ctx // 2
    nll_r, nll_v, kl, same = [], [], [], []
    for c in range(len(toks) // n_ctx):
        ch = list(toks[c * n_ctx:(c + 1) * n_ctx])
        if add_bos:
            ch[0] = bos
        a = logsoftmax(chunk_logits(ref, ch))
        b = logsoftmax(chunk_logits(var, ch))
        for t in range(first, n_ctx - 1):
            nll_r.append(-a[t, ch[t + 1]])
            nll_v.append(-b[t, ch[t + 1]])
            kl.append(float((np.exp(a[t]) * (a[t] - b[t])).sum()))
            same.append(float(a[t].argmax() == b[t].argmax()))
    kl_s = np.sort(np.array(kl))
    res = {"tokens": len(kl), "n_tokens_text": len(toks), "ppl_ref": float(np.exp(np.mean(nll_r))),
           "ppl": float(np.exp(np.mean(nll_v))), "kl_mean": float(np.mean(kl)),
           "kl_p50": float(np.percentile(kl_s, 50)), "kl_p99": float(np.percentile(kl_s, 99)),
           "kl_max": float(kl_s[-1]), "same_top": float(np.mean(same)), "add_bos": bool(add_bos)}
    json.dump(res, open(out, "w"), indent=1)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
