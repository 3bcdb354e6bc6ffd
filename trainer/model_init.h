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

/* ---- the init's definition, shared with the in-memory random model
 * (model_random.c) and the CUDA backend's init_random op ----------------------
 * Tensor k of the list below (its index in the model, embeddings first) draws
 * stream k: element i of a random tensor is PL_INIT_STD * pl_rng_normal(seed,
 * k, i) in fp32, then rounded to BF16 or quantized to NF4 (blocksize 64,
 * double-quantized, as pl_nf4_fill). Norms are 1, biases 0. */
#define PL_INIT_STD 0.02f
#define PL_INIT_NF4_BLOCK 64

typedef enum pl_init_kind { PL_INIT_NORMAL = 0, PL_INIT_ONES, PL_INIT_ZEROS, PL_INIT_NF4 } pl_init_kind;
typedef enum pl_init_slot {
    PL_INIT_EMBED = 0, PL_INIT_ATTN_NORM, PL_INIT_Q, PL_INIT_K, PL_INIT_V, PL_INIT_QB, PL_INIT_KB, PL_INIT_VB,
    PL_INIT_O, PL_INIT_FFN_NORM, PL_INIT_GATE, PL_INIT_UP, PL_INIT_DOWN, PL_INIT_NORM, PL_INIT_HEAD
} pl_init_slot;

typedef struct pl_init_tensor {
    char name[160];      /* its safetensors name */
    int64_t rows, cols;  /* cols 0: a vector of rows elements */
    int kind;            /* pl_init_kind: NORMAL is BF16, NF4 the layers' linear weights with nf4 */
    int layer, slot;     /* pl_init_slot; layer for the per-layer slots */
    uint64_t stream;     /* random stream: its index in the list */
    size_t bytes;        /* on disk */
} pl_init_tensor;

/* The model's tensors in the order transformers writes them (malloc'd; NULL
 * when out of memory). */
pl_init_tensor *pl_model_init_tensors(const pl_model_config *c, int nf4, int *count);
/* x (n) = the stream's first n values in fp32 (threads: the same bits). */
void pl_model_init_normal(float *x, int64_t n, uint64_t seed, uint64_t stream);
/* d (n) = the same values rounded to BF16, in chunks; -1 when out of memory. */
int pl_model_init_bf16(uint16_t *d, int64_t n, uint64_t seed, uint64_t stream);

#endif
