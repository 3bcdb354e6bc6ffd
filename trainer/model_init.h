/* model_init.h: a random-initialized model of any shape (potluck model init),
 * for planning checks and benchmarks at 7B-33B on machines that hold no real
 * checkpoint of that size.
 *
 * The result is a Hugging Face directory potluck and transformers load:
 * config.json, safetensors shards of at most shard_bytes each (with
 * model.safetensors.index.json when there are several) and, when asked, the
 * tokenizer files of another model. Weights are N(0, 0.02^2) (the Llama
 * initializer range), norms 1; embeddings and the LM head BF16. With nf4 the
 * layers' linear weights are written as bitsandbytes 4-bit (NF4, blocksize
 * 64, double-quantized absmax: what transformers' save_pretrained writes for a
 * load_in_4bit model), else BF16. One tensor is generated at a time and each
 * shard is written when full, so memory holds at most one shard plus one
 * tensor in fp32, never the whole model. The bytes depend only on the config,
 * the seed and the options (not on the thread count). */
#ifndef PL_MODEL_INIT_H
#define PL_MODEL_INIT_H

#include <stddef.h>
#include <stdint.h>
#include "../core/error.h"
#include "model.h"

typedef struct pl_model_init_opts {
    uint64_t seed;           /* default 0 */
    int nf4;                 /* layer weights as bitsandbytes NF4 (else BF16) */
    size_t shard_bytes;      /* 0: 2 GiB */
    const char *tokenizer;   /* folder (or tokenizer.json) whose tokenizer files are copied, or NULL */
    void (*progress)(void *user, int64_t done_bytes, int64_t total_bytes);
    void *user;
} pl_model_init_opts;

/* Write a random model of config c into dir (created; must not hold a
 * config.json already). Prints nothing; progress (may be NULL) is called
 * after every tensor. */
int pl_model_init_random(const pl_model_config *c, const char *dir, const pl_model_init_opts *o, pl_err *err);

#endif
