# Peers on the quickstart's exports (tests/cli_quickstart.sh; not run by refs.sh: the
# name starts with _, the caller caches its output): the PEFT
# adapter in transformers + peft, the GGUF in llama.cpp (llama-cpp-python).
#
#   _quickstart_check.py BASE.gguf ADAPTER_DIR MODEL.gguf OUT.json
#
# - peft: the base loaded by transformers from its GGUF (fp32), then
#   PeftModel.from_pretrained(base, ADAPTER_DIR) with no missing or unexpected
#   keys; the adapter must change the logits (its B matrices are trained),
#   and both forwards must be finite;
# - llama.cpp: Llama(MODEL.gguf) evaluates a chat prompt; the logits are finite
#   and its greedy continuation of 8 tokens is recorded.
# OUT.json: {"peft": {"lora_modules", "max_logit_change"}, "llamacpp":
# {"n_vocab", "greedy"}} for the shell test to check.
import json
import os
import sys
import warnings

import numpy as np

PROMPT = "<|im_start|>user\nGive one tip for saving water at home.<|im_end|>\n<|im_start|>assistant\n"


def peft_check(base_path, adapter):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.set_num_threads(2)
    d, name = os.path.split(os.path.abspath(base_path))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    base = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32).eval()
    ids = tok(PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        lb = base(ids).logits[0].float().numpy()
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        pm = PeftModel.from_pretrained(base, adapter).eval()
    bad = [str(w.message) for w in ws if "key" in str(w.message).lower()]
    if bad:
        sys.exit("quickstart_check: peft: %s" % bad[0])
    n_lora = sum(1 for n, _ in pm.named_modules() if n.endswith(".lora_A"))
    with torch.no_grad():
        lt = pm(ids).logits[0].float().numpy()
    if not (np.all(np.isfinite(lb)) and np.all(np.isfinite(lt))):
        sys.exit("quickstart_check: peft: non-finite logits")
    return {"lora_modules": n_lora, "max_logit_change": float(np.max(np.abs(lt - lb)))}


def llamacpp_check(path):
    from llama_cpp import Llama
    llm = Llama(model_path=path, n_threads=2, n_threads_batch=2, n_ctx=256, logits_all=True, verbose=False, seed=0)
    ids = [int(t) for t in llm.tokenize(PROMPT.encode("utf-8"), add_bos=False, special=True)]
    llm.reset()
    llm.eval(ids)
    gen = []
    for _ in range(8):
        row = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        if not np.all(np.isfinite(row)):
            sys.exit("quickstart_check: llama.cpp: non-finite logits")
        t = int(np.argmax(row))
        gen.append(t)
        llm.eval([t])
    return {"n_vocab": int(llm.n_vocab()), "greedy": gen}


def main():
    base, adapter, gguf, out = sys.argv[1:5]
    r = {"peft": peft_check(base, adapter), "llamacpp": llamacpp_check(gguf)}
    with open(out + ".tmp", "w") as f:
        json.dump(r, f, indent=1)
    os.replace(out + ".tmp", out)


if __name__ == "__main__":
    main()
