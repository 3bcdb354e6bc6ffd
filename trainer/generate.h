/* generate.h: sampling and batched generation with a KV cache. */
#ifndef PL_GENERATE_H
#define PL_GENERATE_H

#include <stdint.h>
#include "model.h"

typedef struct pl_sampler {
    float temperature; /* 0: greedy (argmax, lowest id on ties) */
    int top_k;         /* 0: off */
    float top_p;       /* 1: off */
    uint64_t seed;
} pl_sampler;

/* Pick the next token from logits (V). Draw `index` of stream `stream` of
 * the counter-based RNG, so the choice depends only on (seed, stream, index).
 * scratch holds 2*V floats. logits is not modified. */
int pl_sample(const float *logits, int V, const pl_sampler *s, uint64_t stream, uint64_t index,
              float *scratch);

/* Called for every generated token; return non-zero to stop that sequence. */
typedef int (*pl_gen_cb)(void *ctx, int seq, int32_t token);

typedef struct pl_gen_opts {
    pl_sampler sampler;
    int max_tokens;        /* new tokens per sequence */
    const int32_t *stop;   /* stop tokens (not included in the output) */
    int n_stop;
    int n_ctx;             /* KV cache size per sequence; 0: prompt + max_tokens */
    pl_gen_cb cb;
    void *cb_ctx;
    uint64_t stream0;      /* sequence i samples from RNG stream stream0 + i (0:
                            * stream i), so a caller that splits one logical
                            * batch into chunks keeps every prompt's stream */
} pl_gen_opts;

typedef struct pl_gen_stats {
    int64_t prompt_tokens, gen_tokens;
    int64_t decoded_tokens; /* generated tokens fed back through the model */
    double prompt_seconds;  /* the batched prompt forward */
    double gen_seconds;     /* everything after it: sampling and decode steps */
} pl_gen_stats;

/* Generate for n prompts together: the prompts are processed in one batch,
 * then every unfinished sequence advances by one token per step, all in one
 * batch. out[i] (malloc'd, *n_out[i] tokens) receives sequence i's new
 * tokens. Sequence i samples from RNG stream o->stream0 + i. */
int pl_generate(pl_model *m, int n, const int32_t *const *prompts, const int *n_prompt,
                const pl_gen_opts *o, int32_t **out, int *n_out, pl_gen_stats *stats, pl_err *err);

/* On the CUDA backend, the generation's memory plan (trainer/plan.h: the
 * weights' device copies, the bf16 KV cache of n sequences of n_ctx tokens,
 * the prefill of `prefill` tokens in one call, the scratch, and the CUDA
 * runtime's reserve) against the device's memory, before anything is put on
 * the device (the backend copies weights at their first use), so a run that
 * cannot fit says so at once instead of failing midway. PL_ERANGE with
 * "need X of device memory (weights ..., KV cache ..., ...), the device has
 * Y" (the caller says what needs it and what to change); PL_OK when it fits,
 * on another backend, or when the device's size or the plan cannot be had. */
int pl_generate_check_device(const pl_model *m, int n, int prefill, int n_ctx, pl_err *err);

#endif
