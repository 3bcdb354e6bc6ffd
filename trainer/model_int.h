/* model_int.h: internals shared by the model loaders (model_*.c). */
#ifndef PL_MODEL_INT_H
#define PL_MODEL_INT_H

#include "model.h"

/* Allocation owned by the model (freed with it); zeroed. NULL on failure. */
void *pl_model_own(pl_model *m, size_t bytes);

pl_model *pl_model_new(const char *path, pl_model_source src);

/* Check the config for sane, mutually consistent values; fills head_dim. */
int pl_model_check_config(pl_model_config *c, const char *path, pl_err *err);
/* The config of a llama2.c checkpoint header (model_llama2c.c). */
void pl_model_llama2c_config(const int32_t h[7], pl_model_config *c);

/* Check a weight's shape; name is used in the message. */
int pl_model_check_weight(const pl_qweight *w, int64_t rows, int64_t cols, const char *path,
                          const char *name, pl_err *err);

/* Undo the interleaved Q/K row order: within each head of hd rows, stored
 * row 2i becomes row i and stored row 2i+1 becomes row i + hd/2. Works on
 * rows of any dtype (row_bytes each); dst and src must not overlap. */
void pl_model_unpermute_rows(void *dst, const void *src, int n_heads, int hd, size_t row_bytes);
/* The same for a vector of n_heads*hd floats (biases). */
void pl_model_unpermute_vec(float *dst, const float *src, int n_heads, int hd);

/* RoPE inverse frequencies (with Llama-3 scaling when configured, and
 * per-dimension divisors `factors` (hd/2) when non-NULL, as GGUF's
 * rope_freqs.weight). */
int pl_model_init_rope(pl_model *m, const float *factors, pl_err *err);

/* Turn every weight matrix into an owned fp32 copy. */
int pl_model_to_fp32(pl_model *m, pl_err *err);

int pl_model_load_gguf(pl_model *m, pl_err *err);
int pl_model_load_hf(pl_model *m, pl_err *err);
int pl_model_load_llama2c(pl_model *m, pl_err *err);
/* m->path is a "random:" spec (model_random.c); sets m->be first. */
int pl_model_load_random(pl_model *m, pl_err *err);
/* The config and seed of a "random:" spec, checked. */
int pl_model_random_spec(const char *spec, pl_model_config *c, uint64_t *seed, pl_err *err);

/* Header only (trainer/plan.c: pl_model_read_header): the config of a
 * Hugging Face config.json, or of a GGUF's metadata (m->gguf is opened,
 * no weight is read). */
int pl_model_hf_config(pl_model *m, const char *cfg_path, pl_err *err);
int pl_model_gguf_config(pl_model *m, pl_err *err);

#endif
