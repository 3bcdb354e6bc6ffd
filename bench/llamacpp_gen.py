# llama.cpp's side of `make bench`: prompt processing and greedy generation speed through llama-cpp-python's C API.
#
# usage: llamacpp_gen.py --model PATH --batch B --prompt-tokens N --gen-tokens G [--threads 2]
#
# Mirrors `potluck bench-gen` (same flags, same JSON line):
#   - every one of the B sequences gets the same fixed prompt
#     [(i * 7919) % 40000 + 100 for i in range(N)]  (no BOS, no tokenizer);
#   - prompt processing: one llama_decode over all B*N prompt tokens (sequence s
#     has seq_id s, positions 0..N-1, logits only for its last token);
#     pp_tokens_per_s = B*N / that time;
#   - generation: G steps; each step takes the argmax of every sequence's last
#     logits and decodes the B new tokens in one batch (one token per sequence);
#     tg_tokens_per_s = B*G / the time of the G steps (argmax included);
#   - a short warm-up decode runs first and its KV cache is cleared; model load
#     and warm-up are not timed.
# Prints one JSON line:
#   {"impl": "llama.cpp", "batch": B, "prompt_tokens": N, "gen_tokens": G,
#    "pp_tokens_per_s": x, "tg_tokens_per_s": y, "threads": t, "first_ids": [...]}
# first_ids = the first (up to) 8 generated ids of sequence 0, a sanity check only.
import argparse
import ctypes
import json
import os
import sys
import time

import numpy as np


def _quiet(level, text, user_data):
    pass


_QUIET = None  # the ctypes callback; kept alive for the whole run


def prompt_ids(n):
    return [(i * 7919) % 40000 + 100 for i in range(n)]


def fail(msg):
    print("llamacpp_gen: " + msg, file=sys.stderr)
    sys.exit(1)


def fill(batch, entries):
    """entries: list of (token, pos, seq_id, want_logits); sets batch.n_tokens."""
    for j, (tok, pos, seq, want) in enumerate(entries):
        batch.token[j] = tok
        batch.pos[j] = pos
        batch.n_seq_id[j] = 1
        batch.seq_id[j][0] = seq
        batch.logits[j] = 1 if want else 0
    batch.n_tokens = len(entries)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--prompt-tokens", type=int, required=True)
    ap.add_argument("--gen-tokens", type=int, required=True)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    B, N, G = a.batch, a.prompt_tokens, a.gen_tokens
    if B < 1 or N < 1 or G < 0:
        fail("need --batch >= 1, --prompt-tokens >= 1, --gen-tokens >= 0")
    if not os.path.isfile(a.model):
        fail("%s: no such file" % a.model)

    import llama_cpp as L

    global _QUIET
    _QUIET = L.llama_log_callback(_quiet)

    L.llama_backend_init()
    L.llama_log_set(_QUIET, ctypes.c_void_p(0))  # llama.cpp's load-time chatter off
    mp = L.llama_model_default_params()
    model = L.llama_model_load_from_file(a.model.encode(), mp)
    if not model:
        fail("%s: llama.cpp could not load the model" % a.model)
    vocab = L.llama_model_get_vocab(model)
    n_vocab = L.llama_vocab_n_tokens(vocab)
    ids = prompt_ids(N)
    if max(ids) >= n_vocab:
        fail("prompt id %d is past the vocabulary (%d)" % (max(ids), n_vocab))

    cp = L.llama_context_default_params()
    n_ctx = B * (N + G + 8)
    cp.n_ctx = ((n_ctx + 255) // 256) * 256
    cp.n_batch = max(B * N, B)
    cp.n_ubatch = min(512, cp.n_batch)
    cp.n_seq_max = B
    cp.n_threads = a.threads
    cp.n_threads_batch = a.threads
    cp.kv_unified = False  # one KV stream per sequence: 8 independent sequences
    ctx = L.llama_init_from_model(model, cp)
    if not ctx:
        fail("llama_init_from_model failed (n_ctx %d, n_seq_max %d)" % (cp.n_ctx, B))
    mem = L.llama_get_memory(ctx)

    batch = L.llama_batch_init(max(B * N, B), 0, B)

    def decode(what):
        rc = L.llama_decode(ctx, batch)
        if rc != 0:
            fail("llama_decode failed during %s (status %d)" % (what, rc))
        L.llama_synchronize(ctx)

    def argmax_at(i):
        p = L.llama_get_logits_ith(ctx, i)
        if not p:
            fail("no logits for batch index %d" % i)
        return int(np.argmax(np.ctypeslib.as_array(p, shape=(n_vocab,))))

    # Warm-up (not timed): a few prompt tokens and one generation-shaped step, then forget them.
    w = min(N, 8)
    fill(batch, [(ids[i], i, 0, i == w - 1) for i in range(w)])
    decode("warm-up")
    fill(batch, [(ids[0], w, s, True) for s in range(1)])
    decode("warm-up")
    L.llama_memory_clear(mem, True)

    # Prompt processing: all B*N tokens in one batch; sequence s's last token is at index s*N + N-1.
    entries = [(ids[i], i, s, i == N - 1) for s in range(B) for i in range(N)]
    fill(batch, entries)
    t0 = time.perf_counter()
    decode("prompt processing")
    nxt = [argmax_at(s * N + N - 1) for s in range(B)]
    t_pp = time.perf_counter() - t0

    # Generation: G steps of B tokens (one per sequence), each followed by B argmaxes.
    first = [nxt[0]]
    t0 = time.perf_counter()
    for k in range(G):
        fill(batch, [(nxt[s], N + k, s, True) for s in range(B)])
        decode("generation")
        nxt = [argmax_at(s) for s in range(B)]
        if len(first) < 8:
            first.append(nxt[0])
    t_tg = time.perf_counter() - t0

    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)

    print(json.dumps({
        "impl": "llama.cpp", "batch": B, "prompt_tokens": N, "gen_tokens": G,
        "pp_tokens_per_s": B * N / t_pp,
        "tg_tokens_per_s": (B * G / t_tg) if G > 0 else 0.0,
        "threads": a.threads, "first_ids": first[:8],
    }), flush=True)


if __name__ == "__main__":
    main()
