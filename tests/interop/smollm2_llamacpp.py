# Reference greedy continuations of SmolLM2-135M-Instruct (Q4_1 GGUF) from llama.cpp (llama-cpp-python).
#
# inputs: $POTLUCK_MODEL
#
# For each of the 8 fixed prompts in _common.SMOLLM2_PROMPTS (the same texts
# smollm2_logits.py feeds transformers): tokenize with llama.cpp's own tokenizer
# (special tokens such as <|im_start|> parsed, a BOS only if the GGUF's
# tokenizer.ggml.add_bos_token says so), evaluate the prompt, then 32 greedy
# steps: argmax of the last position's logits, evaluated one token at a time.
# Generation never stops at EOS: always 32 tokens. 2 threads, n_ctx 512.
#
# Writes into OUTDIR (argv[1]):
#   prompts.json  {"model_sha256": hex, "add_bos": bool, "n_gen": 32,
#                  "prompts": [{"text": str, "prompt_ids": [int...],
#                  "gen_ids": [32 ints], "top2_gap": [32 floats],
#                  "gen_text": str}, ...]}
#                 top2_gap[k] is llama.cpp's own top1 - top2 logit gap at step k
#                 (small gaps mark near-ties where another implementation may
#                 legitimately pick the other token); gen_text is only for humans.
import os
import sys
import time

import numpy as np

import _common as C

N_GEN = 32


def main():
    t_start = time.time()
    out = C.out_dir()
    model_path = C.env_path("POTLUCK_MODEL")
    add_bos = C.gguf_add_bos(model_path)
    if add_bos is None:
        add_bos = True  # llama.cpp's default for a GGUF that does not say

    from llama_cpp import Llama

    llm = Llama(model_path=model_path, n_threads=2, n_threads_batch=2, n_ctx=512,
                logits_all=True, verbose=False, seed=0)
    n_vocab = llm.n_vocab()
    t_loaded = time.time()

    prompts = []
    for i, text in enumerate(C.SMOLLM2_PROMPTS):
        ids = [int(t) for t in llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)]
        llm.reset()
        llm.eval(ids)
        gen, gaps, tops = [], [], []
        for _ in range(N_GEN):
            row = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float32)  # (n_vocab,)
            assert row.shape == (n_vocab,)
            if not np.all(np.isfinite(row)):
                sys.exit("smollm2_llamacpp: prompt %d: non-finite logits at step %d" % (i, len(gen)))
            tok = int(np.argmax(row))
            top2 = np.partition(row, -2)[-2:]  # the two largest, ascending
            gen.append(tok)
            gaps.append(float(top2[1] - top2[0]))
            top = np.argsort(row)[::-1][:16]
            tops.append([[int(t), float(row[t])] for t in top])
            llm.eval([tok])
        gen_text = llm.detokenize(gen).decode("utf-8", errors="replace")
        prompts.append({"text": text, "prompt_ids": ids, "gen_ids": gen, "top2_gap": gaps, "top": tops,
                        "gen_text": gen_text})
        print("smollm2_llamacpp: prompt %d: %d prompt tokens -> %r" % (i, len(ids), gen_text),
              file=sys.stderr)

    C.write_json(os.path.join(out, "prompts.json"), {
        "model_sha256": C.sha256_file(model_path),
        "add_bos": bool(add_bos),
        "n_gen": N_GEN,
        "prompts": prompts,
    })
    t_end = time.time()
    print("smollm2_llamacpp: load %.1f s, generation %.1f s, total %.1f s"
          % (t_loaded - t_start, t_end - t_loaded, t_end - t_start), file=sys.stderr)


if __name__ == "__main__":
    main()
