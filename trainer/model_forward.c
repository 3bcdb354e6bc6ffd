/* model_forward.c: the decoder's forward pass, over packed token rows
 * (pl_model_forward) and incrementally against a KV cache (pl_model_decode).
 * Both run the same per-layer steps through the backend's op table:
 *
 *   x += Wo . attention(rope(Wq . norm(x)), rope(Wk . norm(x)), Wv . norm(x))
 *   x += Wdown . (silu(Wgate . norm(x)) * (Wup . norm(x)))
 *   logits = Whead . norm(x)
 */
#include "model.h"

#include <stdlib.h>
#include <string.h>

#include "../core/quant.h"
#include "plan.h"

/* Activations for T rows (the backend's buffers, in its activation dtype),
 * and the rows' token ids, positions and last visible keys. */
typedef struct fwd_buf {
    void *x, *xb, *q, *k, *v, *att, *gate, *up, *ws;
    int32_t *ids, *pos, *qlast, *seg;
} fwd_buf;

static void buf_free(const pl_backend *be, fwd_buf *b) {
    void *ps[] = {b->x, b->xb, b->q, b->k, b->v, b->att, b->gate, b->up, b->ws, b->ids, b->pos, b->qlast, b->seg};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
        if (ps[i]) be->free(ps[i]);
    memset(b, 0, sizeof *b);
}

static int buf_alloc(const pl_model *m, int T, fwd_buf *b, pl_err *err) {
    const pl_backend *be = m->be;
    const pl_model_config *c = &m->cfg;
    size_t qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    size_t maxc = (size_t)c->dim;
    if ((size_t)c->hidden > maxc) maxc = c->hidden;
    if (qd > maxc) maxc = qd;
    memset(b, 0, sizeof *b);
    b->x = be->alloc(pl_act_bytes(be, (size_t)T * c->dim), PL_MEM_ACTIVATIONS);
    b->xb = be->alloc(pl_act_bytes(be, (size_t)T * maxc), PL_MEM_ACTIVATIONS);
    b->q = be->alloc(pl_act_bytes(be, (size_t)T * qd), PL_MEM_ACTIVATIONS);
    b->k = be->alloc(pl_act_bytes(be, (size_t)T * kvd), PL_MEM_ACTIVATIONS);
    b->v = be->alloc(pl_act_bytes(be, (size_t)T * kvd), PL_MEM_ACTIVATIONS);
    b->att = be->alloc(pl_act_bytes(be, (size_t)T * qd), PL_MEM_ACTIVATIONS);
    b->gate = be->alloc(pl_act_bytes(be, (size_t)T * c->hidden), PL_MEM_ACTIVATIONS);
    b->up = be->alloc(pl_act_bytes(be, (size_t)T * c->hidden), PL_MEM_ACTIVATIONS);
    b->ws = be->alloc(pl_cpu_linear_q_workspace((int64_t)maxc) * sizeof(float), PL_MEM_WORKSPACE);
    b->ids = be->alloc((size_t)T * sizeof(int32_t), PL_MEM_ACTIVATIONS);
    b->pos = be->alloc((size_t)T * sizeof(int32_t), PL_MEM_ACTIVATIONS);
    b->qlast = be->alloc((size_t)T * sizeof(int32_t), PL_MEM_ACTIVATIONS);
    b->seg = be->alloc((size_t)T * sizeof(int32_t), PL_MEM_ACTIVATIONS);
    if (!b->x || !b->xb || !b->q || !b->k || !b->v || !b->att || !b->gate || !b->up || !b->ws || !b->ids ||
        !b->pos || !b->qlast || !b->seg) {
        buf_free(be, b);
        return pl_err_set(err, PL_ENOMEM, "%s: out of memory for activations of %d tokens", m->path, T);
    }
    return 0;
}

/* b->x = the embedding rows of ids (host), checked; b->ids gets ids. */
static int embed(const pl_model *m, const int32_t *ids, int T, fwd_buf *b, pl_err *err) {
    const pl_model_config *c = &m->cfg;
    for (int t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= c->vocab)
            return pl_err_set(err, PL_EINVAL, "token id %d at position %d is outside the vocabulary (0..%d)",
                              ids[t], t, c->vocab - 1);
    m->be->upload(b->ids, ids, (size_t)T * sizeof(int32_t));
    m->be->embedding_q(b->x, b->ids, &m->tok_embd, T);
    return 0;
}

/* Logits of T rows of xn (normed) into the caller's host floats. */
static void head(const pl_model *m, fwd_buf *b, const void *xn, int T, float *logits, void *dev) {
    const pl_backend *be = m->be;
    if (be->host_memory) {
        be->linear_q(logits, xn, &m->lm_head, NULL, T, b->ws);
        return;
    }
    be->linear_q(dev, xn, &m->lm_head, NULL, T, b->ws);
    be->act_to_f32(logits, dev, (size_t)T * m->cfg.vocab);
}

/* A (T,V) activation buffer for head() on a backend without host memory. */
static void *head_buf(const pl_model *m, int T) {
    if (m->be->host_memory) return NULL;
    return m->be->alloc(pl_act_bytes(m->be, (size_t)T * m->cfg.vocab), PL_MEM_ACTIVATIONS);
}

/* q, k, v projections of norm(x), with RoPE applied to q and k. */
static void qkv(const pl_model *m, const pl_layer *L, fwd_buf *b, const int32_t *pos, int T) { /* pos: backend */
    const pl_backend *be = m->be;
    const pl_model_config *c = &m->cfg;
    be->rmsnorm(b->xb, b->x, L->attn_norm, T, c->dim, c->norm_eps);
    be->linear_q(b->q, b->xb, &L->wq, L->bq, T, b->ws);
    be->linear_q(b->k, b->xb, &L->wk, L->bk, T, b->ws);
    be->linear_q(b->v, b->xb, &L->wv, L->bv, T, b->ws);
    be->rope(b->q, pos, m->inv_freq, T, c->n_heads, c->head_dim);
    be->rope(b->k, pos, m->inv_freq, T, c->n_kv_heads, c->head_dim);
}

/* x += Wo . att ; x += MLP(norm(x)) */
static void finish_layer(const pl_model *m, const pl_layer *L, fwd_buf *b, int T) {
    const pl_backend *be = m->be;
    const pl_model_config *c = &m->cfg;
    be->linear_q(b->xb, b->att, &L->wo, NULL, T, b->ws);
    be->add(b->x, b->x, b->xb, (size_t)T * c->dim);
    be->rmsnorm(b->xb, b->x, L->ffn_norm, T, c->dim, c->norm_eps);
    be->linear_q(b->gate, b->xb, &L->w_gate, NULL, T, b->ws);
    be->linear_q(b->up, b->xb, &L->w_up, NULL, T, b->ws);
    be->swiglu(b->gate, b->gate, b->up, T, c->hidden);
    be->linear_q(b->xb, b->gate, &L->w_down, NULL, T, b->ws);
    be->add(b->x, b->x, b->xb, (size_t)T * c->dim);
}

int pl_model_forward(pl_model *m, const int32_t *ids, const int32_t *pos, const int32_t *seg,
                     int T, float *logits, pl_err *err) {
    if (T <= 0) return pl_err_set(err, PL_EINVAL, "forward: no tokens");
    int wrc = pl_model_check_window(m, T, "forward", err);
    if (wrc) return wrc;
    const pl_backend *be = m->be;
    const pl_model_config *c = &m->cfg;
    fwd_buf b;
    int rc = buf_alloc(m, T, &b, err);
    if (rc) return rc;
    int32_t *host = malloc((size_t)T * 2 * sizeof *host); /* positions, then qlast */
    void *dev_logits = head_buf(m, T);
    if (!host || (!be->host_memory && !dev_logits)) {
        rc = pl_err_set(err, PL_ENOMEM, "forward: out of memory");
        goto out;
    }
    for (int t = 0; t < T; t++) {
        host[t] = pos ? pos[t] : t;
        host[T + t] = t;
    }
    be->upload(b.pos, host, (size_t)T * sizeof(int32_t));
    be->upload(b.qlast, host + T, (size_t)T * sizeof(int32_t));
    if (seg) be->upload(b.seg, seg, (size_t)T * sizeof(int32_t));
    const int32_t *sg = seg ? b.seg : NULL;
    if ((rc = embed(m, ids, T, &b, err))) goto out;
    for (int l = 0; l < c->n_layers; l++) {
        const pl_layer *L = &m->layers[l];
        qkv(m, L, &b, b.pos, T);
        be->attention(b.att, b.q, b.k, b.v, b.qlast, sg, sg, T, T, c->n_heads, c->n_kv_heads, c->head_dim);
        finish_layer(m, L, &b, T);
    }
    be->rmsnorm(b.x, b.x, m->out_norm, T, c->dim, c->norm_eps);
    head(m, &b, b.x, T, logits, dev_logits);
    rc = be->take_error(err);
out:
    free(host);
    if (dev_logits) be->free(dev_logits);
    buf_free(be, &b);
    return rc;
}

int pl_kvcache_init(pl_kvcache *kv, const pl_model *m, int n_seq, int n_ctx, pl_err *err) {
    memset(kv, 0, sizeof *kv);
    if (n_seq <= 0 || n_ctx <= 0)
        return pl_err_set(err, PL_EINVAL, "kv cache: need at least one sequence and one position");
    int rc = pl_model_check_window(m, n_ctx, "context", err);
    if (rc) return rc;
    kv->n_seq = n_seq;
    kv->n_ctx = n_ctx;
    kv->n_layers = m->cfg.n_layers;
    kv->kv_dim = m->cfg.n_kv_heads * m->cfg.head_dim;
    /* K, then V, in the backend's activation dtype: the plan's size (trainer/plan.h) */
    size_t n = pl_kvcache_bytes(&m->cfg, n_seq, n_ctx, (int)pl_act_bytes(m->be, 1)) / 2;
    if (!n) {
        memset(kv, 0, sizeof *kv);
        return pl_err_set(err, PL_ERANGE, "kv cache: %d sequences of %d tokens is too large", n_seq, n_ctx);
    }
    kv->be = m->be;
    kv->len = calloc((size_t)n_seq, sizeof *kv->len);
    kv->k = m->be->alloc(n, PL_MEM_KVCACHE);
    kv->v = m->be->alloc(n, PL_MEM_KVCACHE);
    if (!kv->len || !kv->k || !kv->v) {
        const pl_backend *be = m->be;
        free(kv->len);
        if (kv->k) be->free(kv->k);
        if (kv->v) be->free(kv->v);
        memset(kv, 0, sizeof *kv);
        return pl_err_set(err, PL_ENOMEM, "kv cache: out of memory for %d sequences of %d tokens", n_seq, n_ctx);
    }
    return 0;
}

void pl_kvcache_free(pl_kvcache *kv) {
    if (!kv || !kv->be) return;
    const pl_backend *be = kv->be;
    free(kv->len);
    if (kv->k) be->free(kv->k);
    if (kv->v) be->free(kv->v);
    memset(kv, 0, sizeof *kv);
}

void pl_kvcache_clear(pl_kvcache *kv, int seq) {
    if (seq >= 0 && seq < kv->n_seq) kv->len[seq] = 0;
}

static void *kv_at(const pl_kvcache *kv, void *base, int layer, int seq, int pos) {
    return pl_act_at(kv->be, base, (((size_t)layer * kv->n_seq + seq) * kv->n_ctx + pos) * kv->kv_dim);
}

void pl_kvcache_copy_seq(pl_kvcache *kv, int src, int dst) {
    size_t bytes = pl_act_bytes(kv->be, (size_t)kv->len[src] * kv->kv_dim);
    for (int l = 0; l < kv->n_layers; l++) {
        kv->be->copy(kv_at(kv, kv->k, l, dst, 0), kv_at(kv, kv->k, l, src, 0), bytes);
        kv->be->copy(kv_at(kv, kv->v, l, dst, 0), kv_at(kv, kv->v, l, src, 0), bytes);
    }
    kv->len[dst] = kv->len[src];
}

int pl_model_decode(pl_model *m, pl_kvcache *kv, int n, const int *seqs,
                    const int32_t *const *tok, const int *n_tok,
                    float *logits_last, float *logits_all, pl_err *err) {
    const pl_backend *be = m->be;
    const pl_model_config *c = &m->cfg;
    int T = 0;
    for (int i = 0; i < n; i++) {
        if (seqs[i] < 0 || seqs[i] >= kv->n_seq)
            return pl_err_set(err, PL_EINVAL, "decode: sequence %d is not in the cache (0..%d)", seqs[i], kv->n_seq - 1);
        for (int j = 0; j < i; j++)
            if (seqs[j] == seqs[i]) return pl_err_set(err, PL_EINVAL, "decode: sequence %d given twice", seqs[i]);
        if (n_tok[i] <= 0) return pl_err_set(err, PL_EINVAL, "decode: sequence %d has no new tokens", seqs[i]);
        if (kv->len[seqs[i]] + n_tok[i] > kv->n_ctx)
            return pl_err_set(err, PL_ERANGE, "decode: sequence %d would hold %d tokens, the context is %d",
                              seqs[i], kv->len[seqs[i]] + n_tok[i], kv->n_ctx);
        T += n_tok[i];
    }
    if (T == 0) return pl_err_set(err, PL_EINVAL, "decode: no tokens");
    fwd_buf b;
    int rc = buf_alloc(m, T, &b, err);
    if (rc) return rc;
    int32_t *ids = malloc((size_t)T * sizeof *ids), *pos = malloc((size_t)T * sizeof *pos);
    int32_t *qlast = malloc((size_t)T * sizeof *qlast);
    void *xl = logits_all ? NULL : be->alloc(pl_act_bytes(be, (size_t)n * c->dim), PL_MEM_ACTIVATIONS);
    void *dev_logits = head_buf(m, logits_all ? T : n);
    if (!ids || !pos || !qlast || (!logits_all && !xl) || (!be->host_memory && !dev_logits)) {
        rc = pl_err_set(err, PL_ENOMEM, "decode: out of memory");
        goto out;
    }
    for (int i = 0, t = 0; i < n; i++)
        for (int j = 0; j < n_tok[i]; j++, t++) {
            ids[t] = tok[i][j];
            pos[t] = kv->len[seqs[i]] + j;
            qlast[t] = pos[t];
        }
    if ((rc = embed(m, ids, T, &b, err))) goto out;
    be->upload(b.pos, pos, (size_t)T * sizeof(int32_t));
    be->upload(b.qlast, qlast, (size_t)T * sizeof(int32_t));
    size_t qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)kv->kv_dim;
    for (int l = 0; l < c->n_layers; l++) {
        const pl_layer *L = &m->layers[l];
        qkv(m, L, &b, b.pos, T);
        for (int i = 0, t0 = 0; i < n; t0 += n_tok[i], i++) {
            int s = seqs[i], len = kv->len[s];
            size_t bytes = pl_act_bytes(be, (size_t)n_tok[i] * kvd);
            be->copy(kv_at(kv, kv->k, l, s, len), pl_act_at(be, b.k, (size_t)t0 * kvd), bytes);
            be->copy(kv_at(kv, kv->v, l, s, len), pl_act_at(be, b.v, (size_t)t0 * kvd), bytes);
            be->attention(pl_act_at(be, b.att, (size_t)t0 * qd), pl_act_at(be, b.q, (size_t)t0 * qd),
                          kv_at(kv, kv->k, l, s, 0), kv_at(kv, kv->v, l, s, 0), b.qlast + t0, NULL, NULL, n_tok[i],
                          len + n_tok[i], c->n_heads, c->n_kv_heads, c->head_dim);
        }
        finish_layer(m, L, &b, T);
    }
    if (logits_all) {
        be->rmsnorm(b.x, b.x, m->out_norm, T, c->dim, c->norm_eps);
        head(m, &b, b.x, T, logits_all, dev_logits);
        if (logits_last)
            for (int i = 0, t = 0; i < n; i++) {
                t += n_tok[i];
                memcpy(logits_last + (size_t)i * c->vocab, logits_all + (size_t)(t - 1) * c->vocab,
                       (size_t)c->vocab * sizeof(float));
            }
    } else if (logits_last) {
        for (int i = 0, t = 0; i < n; i++) {
            t += n_tok[i];
            be->copy(pl_act_at(be, xl, (size_t)i * c->dim), pl_act_at(be, b.x, (size_t)(t - 1) * c->dim),
                     pl_act_bytes(be, (size_t)c->dim));
        }
        be->rmsnorm(xl, xl, m->out_norm, n, c->dim, c->norm_eps);
        head(m, &b, xl, n, logits_last, dev_logits);
    }
    if ((rc = be->take_error(err))) goto out; /* the cache is not advanced */
    for (int i = 0; i < n; i++) kv->len[seqs[i]] += n_tok[i];
out:
    free(ids);
    free(pos);
    free(qlast);
    if (xl) be->free(xl);
    if (dev_logits) be->free(dev_logits);
    buf_free(be, &b);
    return rc;
}
