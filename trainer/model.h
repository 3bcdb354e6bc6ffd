/* model.h: a Llama-family decoder (LlamaForCausalLM, MistralForCausalLM,
 * Qwen2ForCausalLM) loaded from a Hugging Face directory, a GGUF file or a
 * llama2.c checkpoint, with a forward pass over packed token rows and an
 * incremental (KV-cached) forward for generation.
 *
 * Q/K row order: one internal convention, Hugging Face's rotate-half (RoPE
 * rotates pairs (i, i + hd/2) of each head). GGUF files of arch llama and
 * llama2.c checkpoints store Q/K rows interleaved (pairs (2i, 2i+1)); their
 * rows are permuted on load (K with n_kv_heads). qwen2 GGUFs are stored in
 * rotate-half order already. See docs/model-formats.md.
 *
 * Weights keep the dtype they were stored in (a GGUF's Q4_1 stays Q4_1 and
 * generation runs on it directly); norms and biases are fp32. */
#ifndef PL_MODEL_H
#define PL_MODEL_H

#include <stdint.h>
#include "../core/error.h"
#include "../core/gguf.h"
#include "../core/safetensors.h"
#include "backend.h"

typedef enum pl_arch { PL_ARCH_LLAMA = 0, PL_ARCH_MISTRAL, PL_ARCH_QWEN2 } pl_arch;

typedef enum pl_model_source { PL_SRC_HF = 0, PL_SRC_GGUF, PL_SRC_LLAMA2C, PL_SRC_RANDOM } pl_model_source;

typedef struct pl_model_config {
    pl_arch arch;
    int vocab, dim, hidden, n_layers, n_heads, n_kv_heads, head_dim;
    int max_seq;           /* context length the model was trained for */
    float rope_theta, norm_eps;
    int tied_embeddings;   /* LM head shares the token embedding */
    int qkv_bias;          /* Qwen2 */
    /* Llama-3 rope scaling ("rope_type": "llama3") */
    int rope_llama3;
    float rope_factor, rope_low_freq, rope_high_freq;
    int rope_orig_max;
    int bos_id, eos_id;    /* -1 when unknown */
    int sliding_window;    /* Mistral (and Qwen2 with use_sliding_window): each token attends
                            * to at most this many positions; 0: no window. potluck does not
                            * implement the window: longer sequences are refused
                            * (pl_model_check_window) */
} pl_model_config;

typedef struct pl_layer {
    float *attn_norm, *ffn_norm;   /* (dim) */
    pl_qweight wq, wk, wv, wo;     /* (nh*hd, dim) (nkv*hd, dim) (nkv*hd, dim) (dim, nh*hd) */
    pl_qweight w_gate, w_up, w_down; /* (hidden, dim) (hidden, dim) (dim, hidden) */
    float *bq, *bk, *bv;           /* Qwen2 biases or NULL */
} pl_layer;

typedef struct pl_model {
    pl_model_config cfg;
    pl_model_source source;
    char *path;
    pl_qweight tok_embd;           /* (vocab, dim) */
    float *out_norm;               /* (dim) */
    pl_qweight lm_head;            /* (vocab, dim); == tok_embd when tied */
    pl_layer *layers;
    float *inv_freq;               /* (head_dim / 2), scaling applied */
    const pl_backend *be;
    /* owned storage */
    void **owned; int n_owned, cap_owned;
    pl_gguf *gguf;                 /* kept open: weights point into its map */
    pl_st *st;
    unsigned char *file_buf;       /* llama2.c checkpoint bytes */
} pl_model;

typedef struct pl_model_opts {
    int fp32;  /* convert every weight to an owned fp32 copy (training); with
                * nf4_blocksize set, only the embeddings and LM head (the NF4
                * layer weights stay NF4) */
    int nf4_blocksize;    /* > 0: quantize every layer's q,k,v,o,gate,up,down
                           * weight to NF4 with this blocksize (32..4096, a
                           * power of two) after loading (model_nf4.h); 0 = off */
    int nf4_double_quant; /* with nf4_blocksize: double-quantize the absmax */
} pl_model_opts;

/* Load from: a directory with config.json + safetensors, a .gguf file, or a
 * llama2.c .bin checkpoint (detected by content); or make a rehearsal model
 * from a spec "random:SHAPE[@SEED]" (model_random.c): SHAPE a preset of
 * `potluck plan --preset list` or a config.json (or its folder), SEED 0 by
 * default. That model is the one `potluck model init --random --nf4 (--preset
 * SHAPE | --config SHAPE) --seed SEED` writes (NF4 layer weights, BF16
 * embeddings and head, the same bytes), made in memory with no file: on the
 * device with a backend that can (CUDA: backend.h's init_random), else on
 * the host. Its tokenizer is the tokenizer.json beside SHAPE's config.json
 * when there is one (a model's folder without its weights), else none.
 * opts may be NULL. */
int pl_model_is_random(const char *path);
/* 1 with dir = the folder of a random: spec's config.json when that folder
 * holds a tokenizer.json; 0 otherwise (a preset, no tokenizer.json). */
int pl_model_random_tokenizer_dir(const char *spec, char *dir, size_t n);
/* A random: spec's SHAPE into shape (n bytes); *seed_at: its "@SEED" tail
 * (NULL when none), pointing into spec. 0 when spec is no random: spec. */
int pl_model_random_shape(const char *spec, char *shape, size_t n, const char **seed_at);
int pl_model_load(pl_model **out, const char *path, const pl_model_opts *opts, pl_err *err);
void pl_model_free(pl_model *m);

/* The tokenizer for a model (model_tokenizer.c): tok_path if given (a GGUF
 * file, a tokenizer.json or its folder, or a llama2.c .bin), else the
 * model's own: a GGUF's vocabulary, a Hugging Face directory's
 * tokenizer.json, or a llama2.c model's tokenizer.bin beside it. */
struct pl_tokenizer;
int pl_model_tokenizer(const pl_model *m, const char *tok_path, struct pl_tokenizer **out, pl_err *err);

const char *pl_arch_name(pl_arch a);
int64_t pl_model_n_params(const pl_model *m);
/* PL_EUNSUPPORTED with a message when n tokens of one sequence would reach past
 * the model's sliding attention window (cfg.sliding_window), which potluck
 * does not implement; what names the use ("kv cache", "train", ...). */
int pl_model_check_window(const pl_model *m, int64_t n, const char *what, pl_err *err);

/* Full forward over T packed tokens (no cache): ids (T), pos (T) RoPE
 * positions, seg (T) segment ids or NULL (one sequence). Tokens attend only
 * to earlier tokens of their own segment. logits (T, vocab). */
int pl_model_forward(pl_model *m, const int32_t *ids, const int32_t *pos, const int32_t *seg,
                     int T, float *logits, pl_err *err);

/* KV cache for n_seq sequences of up to n_ctx tokens each. */
typedef struct pl_kvcache {
    const pl_backend *be; /* the model's: k and v are its activation buffers */
    int n_seq, n_ctx, n_layers, kv_dim;
    int *len;          /* (n_seq) tokens cached per sequence */
    void *k, *v;       /* (n_layers, n_seq, n_ctx, kv_dim) */
} pl_kvcache;

int pl_kvcache_init(pl_kvcache *kv, const pl_model *m, int n_seq, int n_ctx, pl_err *err);
void pl_kvcache_free(pl_kvcache *kv);
void pl_kvcache_clear(pl_kvcache *kv, int seq);
/* Sequence dst of the cache becomes a copy of sequence src. */
void pl_kvcache_copy_seq(pl_kvcache *kv, int src, int dst);

/* Incremental forward: for each of n sequences (seqs[i] an index into the
 * cache), feed n_tok[i] new tokens tok[i][0..n_tok[i]) at the cache's next
 * positions. All new tokens go through the linear layers as one batch.
 * logits_last (n, vocab) receives each sequence's logits at its last new
 * token; logits_all (sum n_tok, vocab), if non-NULL, every new token's. */
int pl_model_decode(pl_model *m, pl_kvcache *kv, int n, const int *seqs,
                    const int32_t *const *tok, const int *n_tok,
                    float *logits_last, float *logits_all, pl_err *err);

#endif
