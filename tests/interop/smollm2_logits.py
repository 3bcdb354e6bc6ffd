# Reference logits of SmolLM2-135M-Instruct (Q4_1 GGUF) from transformers, in fp32.
#
# inputs: $POTLUCK_MODEL
#
# transformers reads the GGUF, dequantizes every tensor to fp32 and undoes
# llama.cpp's Q/K row permutation; the tokenizer is the one transformers builds
# from the GGUF's metadata. For each of the 8 fixed prompts in
# _common.SMOLLM2_PROMPTS the model runs once (batch 1, no padding, eval mode).
#
# Writes into OUTDIR (argv[1]):
#   prompts.json   {"model_sha256": hex, "vocab": V, "add_bos": bool,
#                   "bos_token_id": int, "prompts": [{"text": str, "ids": [int...],
#                   "T": int, "argmax_last": int}, ...]}
#                  ids are exactly what the tokenizer feeds the model
#                  (tokenizer(text)["input_ids"], special tokens such as
#                  <|im_start|> parsed); add_bos says whether the tokenizer put a
#                  BOS in front (it does not for SmolLM2: the GGUF says add_bos_token false).
#   logits_<i>.f32 float32 little-endian [T_i, V] row-major: the model's logits at
#                  every position of prompt i (i = 0..7).
import os
import sys
import time

import numpy as np
import torch

import _common as C


def load_model(model_dir, model_name):
    """AutoModelForCausalLM.from_pretrained on the GGUF, in fp32 (transformers
    dequantizes and undoes llama.cpp's Q/K permutation itself)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, gguf_file=model_name, dtype=torch.float32)


def main():
    t_start = time.time()
    out = C.out_dir()
    model_path = C.env_path("POTLUCK_MODEL")
    torch.manual_seed(0)
    torch.set_num_threads(2)

    from transformers import AutoTokenizer

    model_dir, model_name = os.path.split(os.path.abspath(model_path))
    tok = AutoTokenizer.from_pretrained(model_dir, gguf_file=model_name)
    model = load_model(model_dir, model_name)
    model.eval()
    V = int(model.config.vocab_size)
    assert model.get_output_embeddings().weight.shape[0] == V
    for name, p in model.named_parameters():
        if p.dtype != torch.float32:
            sys.exit("smollm2_logits: parameter %s is %s, expected float32" % (name, p.dtype))
    t_loaded = time.time()

    bos = tok.bos_token_id
    prompts = []
    any_bos = None
    for i, text in enumerate(C.SMOLLM2_PROMPTS):
        ids = list(tok(text)["input_ids"])
        plain = list(tok(text, add_special_tokens=False)["input_ids"])
        added_bos = len(ids) == len(plain) + 1 and ids[0] == bos and ids[1:] == plain
        if not added_bos and ids != plain:
            sys.exit("smollm2_logits: prompt %d: tokenizer added tokens other than a BOS: %r vs %r"
                     % (i, ids, plain))
        if any_bos is None:
            any_bos = added_bos
        elif any_bos != added_bos:
            sys.exit("smollm2_logits: tokenizer added a BOS to some prompts only")
        with torch.no_grad():
            logits = model(torch.tensor([ids], dtype=torch.long)).logits[0]  # (T, V)
        logits = logits.to(torch.float32).numpy()
        assert logits.shape == (len(ids), V), logits.shape
        C.write_f32(os.path.join(out, "logits_%d.f32" % i), logits, finite=True)
        last = int(np.argmax(logits[-1]))
        prompts.append({"text": text, "ids": ids, "T": len(ids), "argmax_last": last})
        print("smollm2_logits: prompt %d: T=%d, argmax at the last position %d %r"
              % (i, len(ids), last, tok.decode([last])), file=sys.stderr)

    C.write_json(os.path.join(out, "prompts.json"), {
        "model_sha256": C.sha256_file(model_path),
        "vocab": V,
        "add_bos": bool(any_bos),
        "bos_token_id": bos,
        "prompts": prompts,
    })
    t_end = time.time()
    print("smollm2_logits: load %.1f s, forward %.1f s, total %.1f s"
          % (t_loaded - t_start, t_end - t_loaded, t_end - t_start), file=sys.stderr)


if __name__ == "__main__":
    main()
