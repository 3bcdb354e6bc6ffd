/* train.c: the training context (parameters, buffers), the forward that keeps
 * its activations, and the step / optimizer skeleton. The backward is in
 * train_backward.c.
 *
 * Forward, per layer l (shapes for T tokens; D model width, qd = nh*hd,
 * kvd = nkv*hd, H the MLP width), every named buffer kept for the backward:
 *
 *   xn1   = rmsnorm(x_in) * attn_norm                         (T,D)
 *   q,k,v = xn1 . Wq^T (+bq), ...; q,k = rope(q), rope(k)     (T,qd) (T,kvd) (T,kvd)
 *   att   = attention(q, k, v; causal within segments)        (T,qd)
 *   x_mid = x_in + att . Wo^T                                 (T,D)
 *   xn2   = rmsnorm(x_mid) * ffn_norm                         (T,D)
 *   gate, up = xn2 . Wgate^T, xn2 . Wup^T                     (T,H)
 *   act   = silu(gate) * up                                   (T,H)
 *   x_out = x_mid + act . Wdown^T   (the next layer's x_in)   (T,D)
 *
 * then xnf = rmsnorm(x_final) * norm, logits = xnf . Whead^T (T,V). */
#include "train.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_int.h"
#include "train_int.h"
#include "plan.h"
#include "qlora.h"

static const char *const timer_names[PL_TT_N] = {
    "embedding", "rmsnorm", "rope", "attention", "swiglu", "linear", "lm_head", "cross_entropy", "add",
    "embedding_bwd", "rmsnorm_bwd", "rope_bwd", "attention_bwd", "swiglu_bwd", "linear_bwd", "lm_head_bwd"};
const char *pl_train_timer_name(int slot) { return slot >= 0 && slot < PL_TT_N ? timer_names[slot] : "?"; }

/* The saved activations of the plan (trainer/plan.c), without LoRA's xa. */
size_t pl_train_activation_bytes_ckpt(const pl_model_config *c, int max_T, int checkpoint) {
    pl_train_shape s = {.seq_len = max_T, .micro_batch = 1, .checkpoint = checkpoint, .layer_dtype = PL_F32,
                        .embd_dtype = PL_F32, .head_dtype = PL_F32};
    pl_mem_plan p;
    pl_err e;
    if (pl_train_plan(c, &s, &p, &e)) return 0;
    return p.cat[PL_MEM_ACTIVATIONS];
}

size_t pl_train_activation_bytes(const pl_model_config *c, int max_T) {
    return pl_train_activation_bytes_ckpt(c, max_T, 0);
}

/* ------------------------------------------------------------ parameters */

/* Is w's storage ours to write? Weights converted by opts.fp32 (or copied
 * for alignment) are model-owned blocks; a llama2.c checkpoint lives in a
 * malloc'd buffer. Anything else points into a read-only file map. */
static int writable(const pl_model *m, const void *p) {
    if (m->source == PL_SRC_LLAMA2C) return 1;
    for (int i = 0; i < m->n_owned; i++)
        if (m->owned[i] == p) return 1;
    return 0;
}

static int make_writable(pl_model *m, pl_qweight *w, const char *name, pl_err *err) {
    if (w->dtype != PL_F32)
        return pl_err_set(err, PL_EINVAL, "%s: weight '%s' is %s; training needs fp32 weights (load with opts.fp32)",
                          m->path, name, pl_dtype_name(w->dtype));
    if (writable(m, w->data)) return 0;
    size_t n = (size_t)w->rows * (size_t)w->cols * sizeof(float);
    float *cp = pl_model_own(m, n);
    if (!cp) return pl_err_set(err, PL_ENOMEM, "%s: out of memory copying '%s' for training", m->path, name);
    memcpy(cp, w->data, n);
    w->data = cp;
    return 0;
}

static int add_param(pl_train *t, const char *name, float *w, int64_t rows, int64_t cols, pl_err *err) {
    pl_param *p = &t->params[t->n_params];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->w = w;
    p->rows = rows;
    p->cols = cols;
    p->n = (size_t)rows * (size_t)cols;
    p->g = t->be->alloc(p->n * sizeof(float), PL_MEM_GRADIENTS);
    if (!p->g) return pl_err_set(err, PL_ENOMEM, "%s: out of memory for the gradient of %s", t->m->path, name);
    return t->n_params++;
}

static int build_params(pl_train *t, pl_err *err) {
    pl_model *m = t->m;
    const pl_model_config *c = &m->cfg;
    int64_t D = c->dim, qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    int64_t H = c->hidden;
    int tied = m->lm_head.data == m->tok_embd.data;
    int rc;
    if ((rc = make_writable(m, &m->tok_embd, "model.embed_tokens.weight", err))) return rc;
    if (tied) m->lm_head = m->tok_embd;
    else if ((rc = make_writable(m, &m->lm_head, "lm_head.weight", err))) return rc;
    int maxp = 2 + c->n_layers * 12 + 1;
    t->params = calloc((size_t)maxp, sizeof *t->params);
    t->p_layer = calloc((size_t)c->n_layers, sizeof *t->p_layer);
    if (!t->params || !t->p_layer) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", m->path);
    char n[160];
    if ((rc = add_param(t, "model.embed_tokens.weight", (float *)m->tok_embd.data, c->vocab, D, err)) < 0) return rc;
    t->p_embed = rc;
    for (int l = 0; l < c->n_layers; l++) {
        pl_layer *L = &m->layers[l];
        for (int j = 0; j < 12; j++) t->p_layer[l][j] = -1;
        struct { const char *name; pl_qweight *w; float *vec; int64_t rows, cols; int slot; } ps[] = {
            {"input_layernorm.weight", NULL, L->attn_norm, D, 1, 0},
            {"self_attn.q_proj.weight", &L->wq, NULL, qd, D, 2},
            {"self_attn.q_proj.bias", NULL, L->bq, qd, 1, 9},
            {"self_attn.k_proj.weight", &L->wk, NULL, kvd, D, 3},
            {"self_attn.k_proj.bias", NULL, L->bk, kvd, 1, 10},
            {"self_attn.v_proj.weight", &L->wv, NULL, kvd, D, 4},
            {"self_attn.v_proj.bias", NULL, L->bv, kvd, 1, 11},
            {"self_attn.o_proj.weight", &L->wo, NULL, D, qd, 5},
            {"post_attention_layernorm.weight", NULL, L->ffn_norm, D, 1, 1},
            {"mlp.gate_proj.weight", &L->w_gate, NULL, H, D, 6},
            {"mlp.up_proj.weight", &L->w_up, NULL, H, D, 7},
            {"mlp.down_proj.weight", &L->w_down, NULL, D, H, 8},
        };
        for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
            snprintf(n, sizeof n, "model.layers.%d.%s", l, ps[i].name);
            float *data = ps[i].vec;
            if (ps[i].w) {
                if ((rc = make_writable(m, ps[i].w, n, err))) return rc;
                data = (float *)ps[i].w->data;
            }
            if (!data) continue; /* no bias */
            if ((rc = add_param(t, n, data, ps[i].rows, ps[i].cols, err)) < 0) return rc;
            t->p_layer[l][ps[i].slot] = rc;
        }
    }
    if ((rc = add_param(t, "model.norm.weight", m->out_norm, D, 1, err)) < 0) return rc;
    t->p_norm = rc;
    t->p_head = -1;
    if (!tied) {
        if ((rc = add_param(t, "lm_head.weight", (float *)m->lm_head.data, c->vocab, D, err)) < 0) return rc;
        t->p_head = rc;
    }
    return 0;
}

pl_param *pl_train_param(pl_train *t, const char *name) {
    for (int i = 0; i < t->n_params; i++)
        if (!strcmp(t->params[i].name, name)) return &t->params[i];
    return NULL;
}

/* ------------------------------------------------------------ buffers */

/* One buffer of the plan: item b's size and category. */
static void *plan_alloc(pl_train *t, const pl_mem_plan *p, pl_plan_buf b, int *fail) {
    const pl_plan_item *it = &p->item[b];
    void *q = t->be->alloc(it->each, it->cat);
    if (!q) *fail = 1;
    return q;
}

void pl_train_free(pl_train *t) {
    if (!t) return;
    const pl_backend *be = t->be;
#define FREE(p) do { if (p) be->free(p); } while (0)
    for (int i = 0; i < t->n_params; i++) {
        FREE(t->params[i].g);
        FREE(t->params[i].m);
        FREE(t->params[i].v);
    }
    if (t->x_host)
        for (int l = 0; l < t->m->cfg.n_layers; l++) FREE(t->x_host[l]);
    free(t->x_host);
    FREE(t->x_stage[0]);
    FREE(t->x_stage[1]);
    if (t->acts)
        for (int l = 0; l < t->m->cfg.n_layers; l++) {
            pl_layer_acts *a = &t->acts[l];
            if (!t->x_stage[0]) FREE(a->x_in); /* else x_stage's, freed above */
            if (t->checkpoint && l > 0) continue; /* the other buffers are layer 0's, shared */
            void *ps[] = {a->xn1, a->q, a->k, a->v, a->att, a->x_mid, a->xn2, a->gate, a->up, a->act};
            for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) FREE(ps[i]);
        }
    void *rest[] = {t->ids, t->targets, t->pos, t->seg, t->qlast, t->x_final, t->xnf, t->logits, t->lse,
                    t->d_res, t->d_tmp, t->d_xn, t->d_q, t->d_k, t->d_v, t->d_att, t->d_act, t->d_up,
                    t->ws_lin, t->ws_q};
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++) FREE(rest[i]);
#undef FREE
    pl_train_attach_lora(t, NULL, NULL);
    free(t->lora_idx);
    free(t->acts);
    free(t->params);
    free(t->p_layer);
    free(t);
}

/* Frozen base: no parameters at all; every p_* index is -1. */
static int build_frozen(pl_train *t, pl_err *err) {
    const pl_model_config *c = &t->m->cfg;
    t->params = calloc(1, sizeof *t->params);
    t->p_layer = calloc((size_t)c->n_layers, sizeof *t->p_layer);
    if (!t->params || !t->p_layer) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", t->m->path);
    t->p_embed = t->p_norm = t->p_head = -1;
    for (int l = 0; l < c->n_layers; l++)
        for (int j = 0; j < 12; j++) t->p_layer[l][j] = -1;
    return 0;
}

int pl_train_init(pl_train **out, pl_model *m, int max_T, pl_err *err) {
    return pl_train_init_opts(out, m, max_T, NULL, err);
}

int pl_train_init_opts(pl_train **out, pl_model *m, int max_T, const pl_train_opts *o, pl_err *err) {
    *out = NULL;
    if (max_T <= 0 || max_T > (1 << 20))
        return pl_err_set(err, PL_EINVAL, "train: row length %d is out of range (1..1048576)", max_T);
    int wrc = pl_model_check_window(m, max_T, "train rows", err);
    if (wrc) return wrc;
    pl_train *t = calloc(1, sizeof *t);
    if (!t) return pl_err_set(err, PL_ENOMEM, "train: out of memory");
    t->m = m;
    t->be = m->be;
    t->max_T = max_T;
    t->frozen_base = o && o->frozen_base;
    t->checkpoint = o && o->checkpoint;
    t->paged_optim = o && o->paged_optim;
    t->paged_min = o && o->paged_min ? o->paged_min : PL_PAGED_MIN; /* plan.h */
    t->offload = o && o->offload;
    t->mlp_chunk = o ? o->mlp_chunk : 0;
    if (t->mlp_chunk && (t->mlp_chunk < 0 || t->mlp_chunk % 8 || !t->checkpoint)) {
        int mc = t->mlp_chunk;
        free(t);
        return pl_err_set(err, PL_EINVAL, "train: MLP chunks of %d tokens: %s", mc,
                          mc < 0 || mc % 8 ? "expected a positive multiple of 8"
                                           : "chunks need checkpointing (--checkpointing): the backward recomputes them");
    }
    if (t->offload && (!t->checkpoint || !t->be->alloc_host || !t->be->offload)) {
        const char *why = !t->checkpoint ? "need checkpointing (--checkpointing)"
                                         : "need a device backend (--backend cuda); the CPU's memory is host memory";
        free(t);
        return pl_err_set(err, PL_EINVAL, "train: offloaded checkpoints %s", why);
    }
    if (!t->be->host_memory && !t->frozen_base) {
        free(t);
        return pl_err_set(err, PL_EUNSUPPORTED,
                          "train: the %s backend trains adapters on a frozen base (QLoRA/LoRA); full fine-tuning "
                          "runs on --backend cpu", m->be->name);
    }
    int rc = t->frozen_base ? build_frozen(t, err) : build_params(t, err);
    if (rc) { pl_train_free(t); return rc; }
    const pl_model_config *c = &m->cfg;
    /* every size below is the plan's (trainer/plan.h), so `potluck plan` and the allocation cannot drift */
    pl_train_shape sh = {.seq_len = max_T, .micro_batch = 1, .frozen_base = t->frozen_base,
                         .checkpoint = t->checkpoint, .layer_dtype = PL_F32, .embd_dtype = PL_F32,
                         .head_dtype = PL_F32, .cuda = !t->be->host_memory, .offload = t->offload,
                         .mlp_chunk = t->mlp_chunk};
    pl_mem_plan P;
    if ((rc = pl_train_plan(c, &sh, &P, err))) { pl_train_free(t); return rc; }
    const pl_mem_plan *p = &P;
    int fail = 0;
    t->acts = calloc((size_t)c->n_layers, sizeof *t->acts);
    if (!t->acts) fail = 1;
    t->ids = plan_alloc(t, p, PL_PB_TOKENS, &fail);
    t->targets = plan_alloc(t, p, PL_PB_TOKENS, &fail);
    t->pos = plan_alloc(t, p, PL_PB_TOKENS, &fail);
    t->seg = plan_alloc(t, p, PL_PB_TOKENS, &fail);
    t->qlast = plan_alloc(t, p, PL_PB_TOKENS, &fail);
    if (p->item[PL_PB_X_HOST].count) { /* offload: x_in from two device buffers; host copies of 0..L-3 */
        t->x_stage[0] = plan_alloc(t, p, PL_PB_X_IN, &fail);
        t->x_stage[1] = plan_alloc(t, p, PL_PB_X_IN, &fail);
        t->x_host = calloc((size_t)c->n_layers, sizeof *t->x_host);
        if (!t->x_host) fail = 1;
        for (size_t l = 0; !fail && l < p->item[PL_PB_X_HOST].count; l++)
            if (!(t->x_host[l] = t->be->alloc_host(p->item[PL_PB_X_HOST].each, p->item[PL_PB_X_HOST].cat))) fail = 1;
    } else {
        t->offload = 0; /* two layers or fewer: nothing to offload */
    }
    for (int l = 0; !fail && l < c->n_layers; l++) {
        pl_layer_acts *a = &t->acts[l];
        a->x_in = t->x_stage[0] ? t->x_stage[l & 1] : plan_alloc(t, p, PL_PB_X_IN, &fail);
        if (t->checkpoint && l > 0) { /* one set of per-layer buffers, recomputed in the backward */
            pl_layer_acts *a0 = &t->acts[0];
            a->xn1 = a0->xn1; a->q = a0->q; a->k = a0->k; a->v = a0->v; a->att = a0->att;
            a->x_mid = a0->x_mid; a->xn2 = a0->xn2; a->gate = a0->gate; a->up = a0->up; a->act = a0->act;
            continue;
        }
        a->xn1 = plan_alloc(t, p, PL_PB_XN1, &fail);
        a->q = plan_alloc(t, p, PL_PB_Q, &fail);
        a->k = plan_alloc(t, p, PL_PB_K, &fail);
        a->v = plan_alloc(t, p, PL_PB_V, &fail);
        a->att = plan_alloc(t, p, PL_PB_ATT, &fail);
        a->x_mid = plan_alloc(t, p, PL_PB_X_MID, &fail);
        a->xn2 = plan_alloc(t, p, PL_PB_XN2, &fail);
        a->gate = plan_alloc(t, p, PL_PB_GATE, &fail);
        a->up = plan_alloc(t, p, PL_PB_UP, &fail);
        a->act = plan_alloc(t, p, PL_PB_ACT, &fail);
    }
    t->x_final = plan_alloc(t, p, PL_PB_X_FINAL, &fail);
    t->xnf = plan_alloc(t, p, PL_PB_XNF, &fail);
    if (sh.cuda) { /* the head fused with the loss: the plan's "lse" item, no (T,V) logits */
        t->lse = plan_alloc(t, p, PL_PB_LOGITS, &fail);
    } else {
        t->logits = plan_alloc(t, p, PL_PB_LOGITS, &fail);
    }
    t->d_res = plan_alloc(t, p, PL_PB_D_RES, &fail);
    t->d_tmp = plan_alloc(t, p, PL_PB_D_TMP, &fail);
    t->d_xn = plan_alloc(t, p, PL_PB_D_XN, &fail);
    t->d_q = plan_alloc(t, p, PL_PB_D_Q, &fail);
    t->d_k = plan_alloc(t, p, PL_PB_D_K, &fail);
    t->d_v = plan_alloc(t, p, PL_PB_D_V, &fail);
    t->d_att = plan_alloc(t, p, PL_PB_D_ATT, &fail);
    t->d_act = plan_alloc(t, p, PL_PB_D_ACT, &fail);
    t->d_up = plan_alloc(t, p, PL_PB_D_UP, &fail);
    t->ws_lin = plan_alloc(t, p, PL_PB_WS_LIN, &fail);
    if (p->item[PL_PB_WS_Q].count) t->ws_q = plan_alloc(t, p, PL_PB_WS_Q, &fail);
    if (fail) {
        pl_train_free(t);
        return pl_err_set(err, PL_ENOMEM, "train: out of memory for the activations of %d tokens", max_T);
    }
    *out = t;
    return 0;
}

/* ------------------------------------------------------------ forward */

#define TIMED(t, slot, call)                                        \
    do {                                                            \
        double t0_ = (t)->timing ? omp_get_wtime() : 0;             \
        call;                                                       \
        if ((t)->timing) (t)->t_op[slot] += omp_get_wtime() - t0_;  \
    } while (0)

/* LoRA module index of (layer, which), or -1. */
static int lora_mod(const pl_train *t, int layer, pl_lin which) {
    if (!t->lora || layer < 0 || which >= PL_LIN_HEAD) return -1;
    return t->lora_idx[layer * 7 + which];
}

/* out (T,O) = x (T,I) . W^T (+ bias), W in its stored dtype; then, for an
 * adapted module, out += scale * (drop(x) . A^T) . B^T with xa = drop(x) . A^T
 * (T,r) saved for the backward. x and out are rows row0 .. row0 + T - 1 of
 * the layer's tokens (a chunk of the MLP): xa's rows and the dropout mask's
 * elements are theirs. */
static void lin_fwd(pl_train *t, int layer, pl_lin which, void *out, const void *x, const pl_qweight *w,
                    const float *bias, int T, int row0) {
    const pl_backend *be = t->be;
    const int I = (int)w->cols, O = (int)w->rows;
    double t0 = t->timing ? omp_get_wtime() : 0;
    if (w->dtype == PL_F32 && !w->aux) be->linear(out, x, (const float *)w->data, bias, T, I, O);
    else be->linear_q(out, x, w, bias, T, t->ws_q);
    int mi = lora_mod(t, layer, which);
    if (mi >= 0) {
        pl_lora_module *md = &t->lora->mods[mi];
        const void *u = x;
        if (t->lora->cfg.dropout > 0) {
            be->dropout(t->lora_u, x, (size_t)T * I, t->lora->cfg.dropout, t->lora->cfg.seed,
                        pl_lora_drop_stream(t->step, t->micro, layer, which), (uint64_t)row0 * (uint64_t)I);
            u = t->lora_u;
        }
        be->lora_fwd(out, pl_act_at(be, t->lora_xa[mi], (size_t)row0 * (size_t)md->r), u, md->A, md->B, T, I, O,
                     md->r, md->scale, t->lora_y);
    }
    if (t->timing) t->t_op[which == PL_LIN_HEAD ? PL_TT_HEAD : PL_TT_LINEAR] += omp_get_wtime() - t0;
}

/* Rows r0 .. r0 + n - 1 of layer l's MLP: a->gate, a->up and a->act get
 * them from their row 0; out (T,D) gets down_proj's output in its rows r0..
 * (out NULL: stop before down_proj, as the chunked backward needs). */
void pl_train_mlp_rows(pl_train *t, int l, void *out, int r0, int n) {
    const pl_backend *be = t->be;
    const pl_model_config *c = &t->m->cfg;
    const pl_layer *L = &t->m->layers[l];
    pl_layer_acts *a = &t->acts[l];
    const size_t D = (size_t)c->dim;
    const void *xn2 = pl_act_at(be, a->xn2, (size_t)r0 * D);
    lin_fwd(t, l, PL_LIN_GATE, a->gate, xn2, &L->w_gate, NULL, n, r0);
    lin_fwd(t, l, PL_LIN_UP, a->up, xn2, &L->w_up, NULL, n, r0);
    TIMED(t, PL_TT_SWIGLU, be->swiglu(a->act, a->gate, a->up, n, c->hidden));
    if (out) lin_fwd(t, l, PL_LIN_DOWN, pl_act_at(be, out, (size_t)r0 * D), a->act, &L->w_down, NULL, n, r0);
}

/* Layer l's forward from acts[l].x_in into the layer's buffers; x_out (T,D)
 * gets the layer's output (the next x_in, or scratch when recomputing).
 * mlp 0: stop after xn2 (the chunked backward recomputes the MLP itself). */
void pl_train_layer_forward(pl_train *t, int l, void *x_out, int mlp) {
    pl_model *m = t->m;
    const pl_backend *be = t->be;
    const pl_model_config *c = &m->cfg;
    const int T = t->T_fwd, D = c->dim;
    const int H = c->hidden;
    (void)H;
    const int32_t *sg = t->has_seg ? t->seg : NULL;
    const pl_layer *L = &m->layers[l];
    pl_layer_acts *a = &t->acts[l];
    TIMED(t, PL_TT_NORM, be->rmsnorm(a->xn1, a->x_in, L->attn_norm, T, D, c->norm_eps));
    lin_fwd(t, l, PL_LIN_Q, a->q, a->xn1, &L->wq, L->bq, T, 0);
    lin_fwd(t, l, PL_LIN_K, a->k, a->xn1, &L->wk, L->bk, T, 0);
    lin_fwd(t, l, PL_LIN_V, a->v, a->xn1, &L->wv, L->bv, T, 0);
    TIMED(t, PL_TT_ROPE, {
        be->rope(a->q, t->pos, m->inv_freq, T, c->n_heads, c->head_dim);
        be->rope(a->k, t->pos, m->inv_freq, T, c->n_kv_heads, c->head_dim);
    });
    TIMED(t, PL_TT_ATTN, be->attention(a->att, a->q, a->k, a->v, t->qlast, sg, sg, T, T, c->n_heads,
                                       c->n_kv_heads, c->head_dim));
    lin_fwd(t, l, PL_LIN_O, t->ws_lin, a->att, &L->wo, NULL, T, 0);
    TIMED(t, PL_TT_ADD, be->add(a->x_mid, a->x_in, t->ws_lin, (size_t)T * D));
    TIMED(t, PL_TT_NORM, be->rmsnorm(a->xn2, a->x_mid, L->ffn_norm, T, D, c->norm_eps));
    if (!mlp) return;
    const int C = pl_train_mlp_chunk(t, T);
    for (int r0 = 0; r0 < T; r0 += C) pl_train_mlp_rows(t, l, t->ws_lin, r0, T - r0 < C ? T - r0 : C);
    TIMED(t, PL_TT_ADD, be->add(x_out, a->x_mid, t->ws_lin, (size_t)T * D));
}

int pl_train_forward(pl_train *t, const int32_t *ids, const int32_t *targets, const int32_t *pos,
                     const int32_t *seg, int T, double *loss_sum, int64_t *n_valid, pl_err *err) {
    pl_model *m = t->m;
    const pl_backend *be = t->be;
    const pl_model_config *c = &m->cfg;
    const int D = c->dim;
    const int V = c->vocab;
    if (T <= 0 || T > t->max_T)
        return pl_err_set(err, PL_EINVAL, "train: forward of %d tokens, the context was made for 1..%d", T, t->max_T);
    for (int i = 0; i < T; i++) {
        if (ids[i] < 0 || ids[i] >= V)
            return pl_err_set(err, PL_EINVAL, "train: token id %d at position %d is outside the vocabulary (0..%d)",
                              ids[i], i, V - 1);
        if (targets[i] >= V)
            return pl_err_set(err, PL_EINVAL, "train: target %d at position %d is outside the vocabulary (0..%d)",
                              targets[i], i, V - 1);
    }
    if (t->frozen_base && (m->tok_embd.dtype != PL_F32 || m->tok_embd.aux) && m->tok_embd.cols != D)
        return pl_err_set(err, PL_EINVAL, "train: embedding has %lld columns, expected %d",
                          (long long)m->tok_embd.cols, D);
    t->T = 0;
    int32_t *host = malloc((size_t)T * 3 * sizeof *host); /* pos, seg, qlast before their upload */
    if (!host) return pl_err_set(err, PL_ENOMEM, "train: out of memory");
    for (int i = 0; i < T; i++) {
        host[i] = pos ? pos[i] : i;
        host[T + i] = seg ? seg[i] : 0;
        host[2 * T + i] = i;
    }
    be->upload(t->ids, ids, (size_t)T * 4);
    be->upload(t->targets, targets, (size_t)T * 4);
    be->upload(t->pos, host, (size_t)T * 4);
    be->upload(t->seg, host + T, (size_t)T * 4);
    be->upload(t->qlast, host + 2 * T, (size_t)T * 4);
    free(host);
    t->has_seg = seg != NULL;
    t->T_fwd = T;
    if (m->tok_embd.dtype == PL_F32 && !m->tok_embd.aux && be->host_memory) {
        TIMED(t, PL_TT_EMBED, be->embedding(t->acts[0].x_in, t->ids, (const float *)m->tok_embd.data, T, D));
    } else { /* a quantized table (frozen base): each token's row dequantized */
        TIMED(t, PL_TT_EMBED, be->embedding_q(t->acts[0].x_in, t->ids, &m->tok_embd, T));
    }
    const size_t xb = pl_act_bytes(be, (size_t)T * D);
    for (int l = 0; l < c->n_layers; l++) {
        /* offload: layer l's input goes to the host while the layer computes;
         * its output overwrites layer l-1's input, whose copy must be done */
        if (t->offload && l + 2 < c->n_layers) be->offload(t->x_host[l], t->acts[l].x_in, xb, l & 1);
        if (t->offload && l >= 1 && l + 1 < c->n_layers) be->copy_wait((l + 1) & 1);
        pl_train_layer_forward(t, l, l + 1 < c->n_layers ? t->acts[l + 1].x_in : t->x_final, 1);
    }
    TIMED(t, PL_TT_NORM, be->rmsnorm(t->xnf, t->x_final, m->out_norm, T, D, c->norm_eps));
    int64_t nv = 0;
    double sum;
    if (!t->logits) { /* fused head + loss */
        TIMED(t, PL_TT_HEAD, sum = be->lm_head_ce(t->lse, t->xnf, &m->lm_head, t->targets, T, &nv));
    } else {
        lin_fwd(t, -1, PL_LIN_HEAD, t->logits, t->xnf, &m->lm_head, NULL, T, 0);
        TIMED(t, PL_TT_LOSS, sum = be->cross_entropy(t->logits, t->targets, T, V, NULL, &nv));
    }
    if (loss_sum) *loss_sum = sum;
    if (n_valid) *n_valid = nv;
    t->T = T;
    return be->take_error(err);
}

/* ------------------------------------------------------------ LoRA */

int pl_train_attach_lora(pl_train *t, struct pl_lora *l, pl_err *err) {
    const pl_backend *be = t->be;
    if (t->lora_xa && t->lora) {
        for (int i = 0; i < t->lora->n; i++)
            if (t->lora_xa[i]) be->free(t->lora_xa[i]);
    }
    free(t->lora_xa);
    t->lora_xa = NULL;
    void **bufs[] = {&t->lora_u, &t->lora_du, &t->lora_y, &t->lora_dxa};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        if (*bufs[i]) be->free(*bufs[i]);
        *bufs[i] = NULL;
    }
    t->lora = NULL;
    t->T = 0;
    if (!l) return 0;
    const pl_model_config *c = &t->m->cfg;
    if (!t->lora_idx) {
        t->lora_idx = malloc((size_t)c->n_layers * 7 * sizeof(int));
        if (!t->lora_idx) return pl_err_set(err, PL_ENOMEM, "train: out of memory attaching LoRA");
    }
    for (int i = 0; i < c->n_layers * 7; i++) t->lora_idx[i] = -1;
    int maxR = 1;
    unsigned mask = 0;
    for (int i = 0; i < l->n; i++) {
        const pl_lora_module *md = &l->mods[i];
        if (md->layer < 0 || md->layer >= c->n_layers || (int)md->which < 0 || md->which >= PL_LIN_HEAD)
            return pl_err_set(err, PL_EINVAL, "train: LoRA module %d: layer %d / %s is not in the model", i,
                              md->layer, pl_lin_name(md->which));
        const pl_layer *L = &t->m->layers[md->layer];
        const pl_qweight *ws[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        const pl_qweight *w = ws[md->which];
        if (md->in != w->cols || md->out != w->rows || md->r <= 0)
            return pl_err_set(err, PL_EINVAL,
                              "train: LoRA module layers.%d.%s is (in %d, out %d, r %d); the model's weight is "
                              "(%lld, %lld)", md->layer, pl_lin_name(md->which), md->in, md->out, md->r,
                              (long long)w->rows, (long long)w->cols);
        if (t->lora_idx[md->layer * 7 + md->which] >= 0)
            return pl_err_set(err, PL_EINVAL, "train: LoRA module layers.%d.%s appears twice", md->layer,
                              pl_lin_name(md->which));
        t->lora_idx[md->layer * 7 + md->which] = i;
        mask |= 1u << md->which;
        if (md->r > maxR) maxR = md->r;
    }
    /* the scratch is the plan's (trainer/plan.h): widest adapted input and
     * output of the adapted module kinds (checked equal to the model's above) */
    pl_train_shape sh = {.seq_len = t->max_T, .micro_batch = 1, .frozen_base = 1, .lora_r = maxR,
                         .lora_targets = mask, .checkpoint = t->checkpoint, .layer_dtype = PL_F32,
                         .embd_dtype = PL_F32, .head_dtype = PL_F32, .cuda = !t->be->host_memory,
                         .offload = t->offload, .mlp_chunk = t->mlp_chunk};
    pl_mem_plan P;
    int rc = pl_train_plan(c, &sh, &P, err);
    if (rc) return rc;
    t->lora_xa = calloc((size_t)(l->n > 0 ? l->n : 1), sizeof *t->lora_xa);
    int fail = !t->lora_xa;
    t->lora = l; /* so a failure below frees what was allocated */
    for (int i = 0; !fail && i < l->n; i++)
        if (!(t->lora_xa[i] = t->be->alloc(pl_plan_lora_xa_bytes(t->max_T, l->mods[i].r, sh.cuda ? 2 : 4),
                                           PL_MEM_ACTIVATIONS)))
            fail = 1;
    t->lora_u = plan_alloc(t, &P, PL_PB_LORA_U, &fail);
    t->lora_du = plan_alloc(t, &P, PL_PB_LORA_DU, &fail);
    t->lora_y = plan_alloc(t, &P, PL_PB_LORA_Y, &fail);
    t->lora_dxa = plan_alloc(t, &P, PL_PB_LORA_DXA, &fail);
    if (fail) {
        pl_train_attach_lora(t, NULL, NULL);
        return pl_err_set(err, PL_ENOMEM, "train: out of memory for the LoRA buffers of %d tokens", t->max_T);
    }
    return 0;
}

/* ------------------------------------------------------------ optimizer */

/* The attached LoRA modules as (weight, grad, m, v, n) pairs: A then B of each. */
#define LORA_N(md) ((size_t)(md)->r * (size_t)(md)->in)
#define LORB_N(md) ((size_t)(md)->out * (size_t)(md)->r)

void pl_train_zero_grad(pl_train *t) {
    const pl_backend *be = t->be;
    for (int i = 0; i < t->n_params; i++) be->zero(t->params[i].g, t->params[i].n * sizeof(float));
    for (int i = 0; t->lora && i < t->lora->n; i++) {
        pl_lora_module *md = &t->lora->mods[i];
        be->zero(md->gA, LORA_N(md) * sizeof(float));
        be->zero(md->gB, LORB_N(md) * sizeof(float));
    }
}

double pl_train_grad_norm(const pl_train *t) {
    double s = 0;
    for (int i = 0; i < t->n_params; i++) s += t->be->sumsq(t->params[i].g, t->params[i].n);
    for (int i = 0; t->lora && i < t->lora->n; i++) {
        const pl_lora_module *md = &t->lora->mods[i];
        s += t->be->sumsq(md->gA, LORA_N(md));
        s += t->be->sumsq(md->gB, LORB_N(md));
    }
    return sqrt(s);
}

void pl_train_scale_grads(pl_train *t, float s) {
    for (int i = 0; i < t->n_params; i++) t->be->scale(t->params[i].g, s, t->params[i].n);
    for (int i = 0; t->lora && i < t->lora->n; i++) {
        pl_lora_module *md = &t->lora->mods[i];
        t->be->scale(md->gA, s, LORA_N(md));
        t->be->scale(md->gB, s, LORB_N(md));
    }
}

static void sgd_vec(float *w, const float *g, long n, float lr) {
#pragma omp parallel for schedule(static) if (n >= 16384)
    for (long j = 0; j < n; j++) w[j] -= lr * g[j];
}

void pl_train_sgd(pl_train *t, float lr) {
    /* one element per iteration: same bits at every thread count */
    for (int i = 0; i < t->n_params; i++) {
        pl_param *p = &t->params[i];
        if (p->frozen) continue;
        float *w = p->w;
        const float *g = p->g;
        sgd_vec(w, g, (long)p->n, lr);
    }
    for (int i = 0; t->lora && i < t->lora->n; i++) {
        pl_lora_module *md = &t->lora->mods[i];
        sgd_vec(md->A, md->gA, (long)LORA_N(md), lr);
        sgd_vec(md->B, md->gB, (long)LORB_N(md), lr);
    }
}

float *pl_train_optim_alloc(pl_train *t, size_t n) {
    if (t->paged_optim && t->be->alloc_paged && n >= t->paged_min)
        return t->be->alloc_paged(n * sizeof(float), PL_MEM_OPTIMIZER);
    return t->be->alloc(n * sizeof(float), PL_MEM_OPTIMIZER);
}

pl_adamw_opts pl_adamw_defaults(void) {
    return (pl_adamw_opts){.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f};
}

int pl_train_adamw(pl_train *t, const pl_adamw_opts *o, pl_err *err) {
    for (int i = 0; i < t->n_params; i++) {
        pl_param *p = &t->params[i];
        if (p->frozen) continue;
        if (!p->m) p->m = pl_train_optim_alloc(t, p->n);
        if (!p->v) p->v = pl_train_optim_alloc(t, p->n);
        if (!p->m || !p->v)
            return pl_err_set(err, PL_ENOMEM, "train: out of memory for the AdamW state of %s", p->name);
    }
    for (int i = 0; t->lora && i < t->lora->n; i++) {
        pl_lora_module *md = &t->lora->mods[i];
        float **ps[4] = {&md->mA, &md->vA, &md->mB, &md->vB};
        size_t ns[4] = {LORA_N(md), LORA_N(md), LORB_N(md), LORB_N(md)};
        for (int k = 0; k < 4; k++)
            if (!*ps[k] && !(*ps[k] = pl_train_optim_alloc(t, ns[k])))
                return pl_err_set(err, PL_ENOMEM, "train: out of memory for the AdamW state of LoRA layers.%d.%s",
                                  md->layer, pl_lin_name(md->which));
    }
    t->step++;
    for (int i = 0; i < t->n_params; i++) {
        pl_param *p = &t->params[i];
        if (p->frozen) continue;
        t->be->adamw(p->w, p->g, p->m, p->v, p->n, o->lr, o->beta1, o->beta2, o->eps, o->weight_decay, t->step);
    }
    for (int i = 0; t->lora && i < t->lora->n; i++) {
        pl_lora_module *md = &t->lora->mods[i];
        t->be->adamw(md->A, md->gA, md->mA, md->vA, LORA_N(md), o->lr, o->beta1, o->beta2, o->eps,
                     o->weight_decay, t->step);
        t->be->adamw(md->B, md->gB, md->mB, md->vB, LORB_N(md), o->lr, o->beta1, o->beta2, o->eps,
                     o->weight_decay, t->step);
    }
    return t->be->take_error(err); /* and the host may read the weights */
}

int pl_train_accumulate(pl_train *t, const pl_microbatch *mb, int n_mb, const char *who, double *loss, pl_err *err) {
    if (n_mb <= 0) return pl_err_set(err, PL_EINVAL, "%s: a step needs at least one micro-batch", who);
    int64_t total = 0;
    for (int i = 0; i < n_mb; i++)
        for (int j = 0; j < mb[i].T; j++) total += mb[i].targets[j] >= 0;
    if (total == 0) return pl_err_set(err, PL_EINVAL, "%s: the step has no trained tokens (every target is < 0)", who);
    pl_train_zero_grad(t);
    double sum = 0;
    int rc = 0;
    for (int i = 0; i < n_mb && !rc; i++) {
        double s = 0;
        t->micro = i;
        rc = pl_train_forward(t, mb[i].ids, mb[i].targets, mb[i].pos, mb[i].seg, mb[i].T, &s, NULL, err);
        sum += s;
        if (!rc) rc = pl_train_backward(t, (float)(1.0 / (double)total), err);
    }
    t->micro = 0;
    if (!rc && loss) *loss = sum / (double)total;
    return rc;
}

int pl_train_step(pl_train *t, const pl_microbatch *mb, int n_mb, const pl_adamw_opts *o, float sgd_lr,
                  double *loss, pl_err *err) {
    int rc = pl_train_accumulate(t, mb, n_mb, "train", loss, err);
    if (rc) return rc;
    if (o) return pl_train_adamw(t, o, err);
    pl_train_sgd(t, sgd_lr);
    return 0;
}
