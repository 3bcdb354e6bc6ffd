/* model_gguf.c: loading a Llama-family model from a GGUF file.
 *
 * Hyperparameters come from the "<arch>.*" metadata; weights stay in their
 * stored dtype and point into the file's map, except Q and K of arch llama,
 * whose rows are copied into rotate-half order (see model.h). */
#include "model_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/quant.h"

static int get_u32(pl_model *m, const char *arch, const char *suffix, int required, int *out, pl_err *err) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    uint32_t v;
    int rc = pl_gguf_get_u32(m->gguf, key, &v, err);
    if (rc == PL_ENOTFOUND && !required) return 0;
    if (rc) return pl_err_prefix(err, "%s", m->path);
    if (v > (1u << 30)) return pl_err_set(err, PL_ERANGE, "%s: %s = %u is out of range", m->path, key, v);
    *out = (int)v;
    return 0;
}

static int get_f32(pl_model *m, const char *arch, const char *suffix, float *out, pl_err *err) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = pl_gguf_get_f32(m->gguf, key, out, err);
    if (rc == PL_ENOTFOUND) return 0;
    return rc ? pl_err_prefix(err, "%s", m->path) : 0;
}

/* A weight matrix: GGUF ne[0] is the input (column) count, ne[1] the rows. */
static int weight(pl_model *m, const char *name, int64_t rows, int64_t cols, int optional, pl_qweight *w, pl_err *err) {
    const pl_gguf_tensor *t = pl_gguf_find_tensor(m->gguf, name);
    memset(w, 0, sizeof *w);
    if (!t) {
        if (optional) return 0;
        return pl_err_set(err, PL_ENOTFOUND, "%s: missing tensor '%s'", m->path, name);
    }
    if (t->n_dims != 2)
        return pl_err_set(err, PL_EFORMAT, "%s: tensor '%s': expected 2 dimensions, found %d", m->path, name, t->n_dims);
    w->dtype = t->type;
    w->cols = t->ne[0];
    w->rows = t->ne[1];
    w->row_bytes = pl_dtype_row_bytes(t->type, t->ne[0]);
    w->data = t->data;
    return pl_model_check_weight(w, rows, cols, m->path, name, err);
}

/* A vector (norm weights, biases) as an owned fp32 copy. */
static int vector(pl_model *m, const char *name, int64_t n, int optional, float **out, pl_err *err) {
    *out = NULL;
    const pl_gguf_tensor *t = pl_gguf_find_tensor(m->gguf, name);
    if (!t) {
        if (optional) return 0;
        return pl_err_set(err, PL_ENOTFOUND, "%s: missing tensor '%s'", m->path, name);
    }
    if (t->n_elems != n || t->ne[0] != n)
        return pl_err_set(err, PL_EFORMAT, "%s: tensor '%s': expected %lld elements, found %lld",
                          m->path, name, (long long)n, (long long)t->n_elems);
    float *f = pl_model_own(m, (size_t)n * sizeof(float));
    if (!f) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", m->path);
    if (pl_dequantize_row(t->type, t->data, f, n))
        return pl_err_set(err, PL_EUNSUPPORTED, "%s: tensor '%s': dtype %s is not supported", m->path, name,
                          pl_dtype_name(t->type));
    *out = f;
    return 0;
}

/* Copy a Q or K matrix into rotate-half row order. */
static int unpermute(pl_model *m, pl_qweight *w, int n_heads, int hd, pl_err *err) {
    size_t bytes = (size_t)w->rows * w->row_bytes;
    void *dst = pl_model_own(m, bytes);
    if (!dst) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", m->path);
    pl_model_unpermute_rows(dst, w->data, n_heads, hd, w->row_bytes);
    w->data = dst;
    return 0;
}

/* The config from the metadata and the tensor table (no weight is read). */
int pl_model_gguf_config(pl_model *m, pl_err *err) {
    int rc = pl_gguf_open(&m->gguf, m->path, err);
    if (rc) return rc;
    char *arch = NULL;
    rc = pl_gguf_get_str(m->gguf, "general.architecture", &arch, err);
    if (rc) return pl_err_prefix(err, "%s", m->path);
    pl_model_config *c = &m->cfg;
    if (!strcmp(arch, "llama")) c->arch = PL_ARCH_LLAMA;
    else if (!strcmp(arch, "qwen2")) c->arch = PL_ARCH_QWEN2;
    else {
        rc = pl_err_set(err, PL_EUNSUPPORTED, "%s: unknown architecture '%s' (supported: llama, qwen2)", m->path, arch);
        free(arch);
        return rc;
    }
    c->rope_theta = 10000.0f;
    c->norm_eps = 1e-5f;
    int head_k = 0;
    if ((rc = get_u32(m, arch, "embedding_length", 1, &c->dim, err)) ||
        (rc = get_u32(m, arch, "feed_forward_length", 1, &c->hidden, err)) ||
        (rc = get_u32(m, arch, "block_count", 1, &c->n_layers, err)) ||
        (rc = get_u32(m, arch, "attention.head_count", 1, &c->n_heads, err)) ||
        (rc = get_u32(m, arch, "context_length", 0, &c->max_seq, err)) ||
        (rc = get_u32(m, arch, "attention.key_length", 0, &head_k, err)) ||
        (rc = get_f32(m, arch, "rope.freq_base", &c->rope_theta, err)) ||
        (rc = get_f32(m, arch, "attention.layer_norm_rms_epsilon", &c->norm_eps, err))) {
        free(arch);
        return rc;
    }
    c->n_kv_heads = c->n_heads;
    if ((rc = get_u32(m, arch, "attention.head_count_kv", 0, &c->n_kv_heads, err))) { free(arch); return rc; }
    c->head_dim = head_k;
    int vocab = 0, rope_dims = 0;
    if ((rc = get_u32(m, arch, "vocab_size", 0, &vocab, err)) ||
        (rc = get_u32(m, arch, "rope.dimension_count", 0, &rope_dims, err))) {
        free(arch);
        return rc;
    }
    free(arch);
    const pl_gguf_tensor *emb = pl_gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!emb) return pl_err_set(err, PL_ENOTFOUND, "%s: missing tensor 'token_embd.weight'", m->path);
    if (emb->n_dims != 2)
        return pl_err_set(err, PL_EFORMAT, "%s: tensor 'token_embd.weight': expected 2 dimensions, found %d", m->path, emb->n_dims);
    c->vocab = vocab ? vocab : (int)(emb->ne[1] > (1 << 24) ? -1 : emb->ne[1]);
    uint32_t id;
    if (!pl_gguf_get_u32(m->gguf, "tokenizer.ggml.bos_token_id", &id, NULL) && id < (1u << 24)) c->bos_id = (int)id;
    if (!pl_gguf_get_u32(m->gguf, "tokenizer.ggml.eos_token_id", &id, NULL) && id < (1u << 24)) c->eos_id = (int)id;
    c->qkv_bias = pl_gguf_find_tensor(m->gguf, "blk.0.attn_q.bias") != NULL;
    if ((rc = pl_model_check_config(c, m->path, err))) return rc;
    if (rope_dims && rope_dims != c->head_dim)
        return pl_err_set(err, PL_EUNSUPPORTED,
                          "%s: rope.dimension_count %d differs from the head size %d (partial rotary embeddings are not supported)",
                          m->path, rope_dims, c->head_dim);
    return 0;
}

int pl_model_load_gguf(pl_model *m, pl_err *err) {
    int rc = pl_model_gguf_config(m, err);
    if (rc) return rc;
    pl_model_config *c = &m->cfg;
    int64_t D = c->dim, qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    if ((rc = weight(m, "token_embd.weight", c->vocab, D, 0, &m->tok_embd, err))) return rc;
    if ((rc = weight(m, "output.weight", c->vocab, D, 1, &m->lm_head, err))) return rc;
    c->tied_embeddings = m->lm_head.data == NULL;
    if (c->tied_embeddings) m->lm_head = m->tok_embd;
    if ((rc = vector(m, "output_norm.weight", D, 0, &m->out_norm, err))) return rc;
    m->layers = pl_model_own(m, (size_t)c->n_layers * sizeof *m->layers);
    if (!m->layers) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", m->path);
    int permute = c->arch == PL_ARCH_LLAMA;
    for (int l = 0; l < c->n_layers; l++) {
        pl_layer *L = &m->layers[l];
        char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", l, s), n)
        if ((rc = vector(m, NAME("attn_norm.weight"), D, 0, &L->attn_norm, err)) ||
            (rc = vector(m, NAME("ffn_norm.weight"), D, 0, &L->ffn_norm, err)) ||
            (rc = weight(m, NAME("attn_q.weight"), qd, D, 0, &L->wq, err)) ||
            (rc = weight(m, NAME("attn_k.weight"), kvd, D, 0, &L->wk, err)) ||
            (rc = weight(m, NAME("attn_v.weight"), kvd, D, 0, &L->wv, err)) ||
            (rc = weight(m, NAME("attn_output.weight"), D, qd, 0, &L->wo, err)) ||
            (rc = weight(m, NAME("ffn_gate.weight"), c->hidden, D, 0, &L->w_gate, err)) ||
            (rc = weight(m, NAME("ffn_up.weight"), c->hidden, D, 0, &L->w_up, err)) ||
            (rc = weight(m, NAME("ffn_down.weight"), D, c->hidden, 0, &L->w_down, err)))
            return rc;
        if (c->qkv_bias) {
            if ((rc = vector(m, NAME("attn_q.bias"), qd, 0, &L->bq, err)) ||
                (rc = vector(m, NAME("attn_k.bias"), kvd, 0, &L->bk, err)) ||
                (rc = vector(m, NAME("attn_v.bias"), kvd, 0, &L->bv, err)))
                return rc;
        }
#undef NAME
        if (permute) {
            if ((rc = unpermute(m, &L->wq, c->n_heads, c->head_dim, err)) ||
                (rc = unpermute(m, &L->wk, c->n_kv_heads, c->head_dim, err)))
                return rc;
            if (L->bq) {
                float *b = pl_model_own(m, (size_t)(qd + kvd) * sizeof(float));
                if (!b) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", m->path);
                pl_model_unpermute_vec(b, L->bq, c->n_heads, c->head_dim);
                pl_model_unpermute_vec(b + qd, L->bk, c->n_kv_heads, c->head_dim);
                L->bq = b;
                L->bk = b + qd;
            }
        }
    }
    /* Llama-3 style rope scaling is stored as per-dimension divisors. */
    float *factors = NULL;
    if (pl_gguf_find_tensor(m->gguf, "rope_freqs.weight") &&
        (rc = vector(m, "rope_freqs.weight", c->head_dim / 2, 0, &factors, err)))
        return rc;
    return pl_model_init_rope(m, factors, err);
}
