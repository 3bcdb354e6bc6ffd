/* train_backward.c: the backward pass of the decoder through the backend's
 * backward ops, from the loss to every parameter and to the input of every
 * linear layer (the hook in train.h sees each one).
 *
 * Walking back (d_res holds dL/d(residual stream), (T,D)):
 *
 *   dlogits = scale * (softmax(logits) - onehot(target))    in place of logits
 *   d_xn    = dlogits . Whead ; dWhead += dlogits^T . xnf   (tied: into dEmbed)
 *   d_res   = rmsnorm_bwd(d_xn) ; dnorm +=
 *   per layer, last to first:
 *     d_act = d_res . Wdown ;            dWdown += d_res^T . act
 *     d_gate, d_up = swiglu_bwd(d_act)   (d_gate in place of d_act)
 *     d_xn  = d_gate . Wgate + d_up . Wup ; dWgate, dWup +=
 *     d_res += rmsnorm_bwd(d_xn, x_mid) ; dffn_norm +=
 *     d_att = d_res . Wo ;               dWo += d_res^T . att
 *     d_q, d_k, d_v = attention_bwd(d_att) ; rope_bwd(d_q), rope_bwd(d_k)
 *     d_xn  = d_q . Wq + d_k . Wk + d_v . Wv ; dWq.., dbq.. +=
 *     d_res += rmsnorm_bwd(d_xn, x_in) ; dattn_norm +=
 *   dEmbed += scatter(d_res by ids)
 *
 * QLoRA: with a frozen base (no parameters) the weight gradients are
 * skipped and dx comes from linear_q_bwd_x on the stored dtype. For an
 * adapted module, out += s * y with y = xa . B^T, xa = u . A^T, u = drop(x):
 *   dy = s * dout ; gB += dy^T . xa ; dxa = dy . B ;
 *   gA += dxa^T . u ; dx += drop(dxa . A)   (the same mask as the forward)
 * With checkpointing each layer's forward is recomputed from its saved x_in
 * before walking back through it.
 */
#include "train.h"

#include <string.h>

#include "train_int.h"
#include "qlora.h"

#include <omp.h>
#include <stddef.h>

#define TIMED(t, slot, call)                                        \
    do {                                                            \
        double t0_ = (t)->timing ? omp_get_wtime() : 0;             \
        call;                                                       \
        if ((t)->timing) (t)->t_op[slot] += omp_get_wtime() - t0_;  \
    } while (0)

static float *grad_of(pl_train *t, int idx) { return idx >= 0 ? t->params[idx].g : NULL; }
/* The same, NULL for a frozen parameter (ops whose gradient may be skipped). */
static float *grad_opt(pl_train *t, int idx) { return idx >= 0 && !t->params[idx].frozen ? t->params[idx].g : NULL; }

/* LoRA's part of an adapted module's backward (see the top of the file),
 * over rows row0 .. row0 + T - 1 (an MLP chunk): xa's rows and the dropout
 * mask's elements are theirs. */
static void lora_bwd(pl_train *t, int layer, pl_lin which, int mi, void *dx, const void *dout, const void *x,
                     int T, int I, int O, int row0) {
    const pl_backend *be = t->be;
    pl_lora_module *md = &t->lora->mods[mi];
    const float p = t->lora->cfg.dropout;
    const void *xa = pl_act_at(be, t->lora_xa[mi], (size_t)row0 * (size_t)md->r);
    if (!(p > 0)) {
        be->lora_bwd(dx, 1, md->gA, md->gB, dout, x, xa, md->A, md->B, T, I, O, md->r, md->scale, t->lora_y,
                     t->lora_dxa, t->lora_du);
        return;
    }
    uint64_t stream = pl_lora_drop_stream(t->step, t->micro, layer, which), first = (uint64_t)row0 * (uint64_t)I;
    be->dropout(t->lora_u, x, (size_t)T * I, p, t->lora->cfg.seed, stream, first); /* the forward's u */
    be->lora_bwd(t->lora_du, 0, md->gA, md->gB, dout, t->lora_u, xa, md->A, md->B, T, I, O, md->r, md->scale,
                 t->lora_y, t->lora_dxa, NULL);
    be->dropout(t->lora_du, t->lora_du, (size_t)T * I, p, t->lora->cfg.seed, stream, first);
    be->add(dx, dx, t->lora_du, (size_t)T * I);
}

/* dx (T,I) = dout . W ; dW += dout^T . x ; db += sum dout ; LoRA's part;
 * then the hook. W in its stored dtype (frozen base: dx only). The rows are
 * row0 .. row0 + T - 1 of the layer's (an MLP chunk; else 0). */
static void lin_bwd_rows(pl_train *t, int layer, pl_lin which, void *dx, int pw, int pb, const void *dout,
                         const void *x, const pl_qweight *w, int T, int I, int O, int row0) {
    double t0 = t->timing ? omp_get_wtime() : 0;
    if (w->dtype == PL_F32 && !w->aux)
        t->be->linear_bwd(dx, grad_opt(t, pw), grad_opt(t, pb), dout, x, (const float *)w->data, T, I, O);
    else
        t->be->linear_q_bwd_x(dx, dout, w, T, t->ws_q);
    if (t->lora && layer >= 0 && which < PL_LIN_HEAD) {
        int mi = t->lora_idx[layer * 7 + which];
        if (mi >= 0) lora_bwd(t, layer, which, mi, dx, dout, x, T, I, O, row0);
    }
    if (t->timing) t->t_op[which == PL_LIN_HEAD ? PL_TT_HEAD_B : PL_TT_LINEAR_B] += omp_get_wtime() - t0;
    if (t->hook) t->hook(t->hook_user, layer, which, x, dout, dx, T, I, O); /* host_memory: checked */
}

static void lin_bwd(pl_train *t, int layer, pl_lin which, void *dx, int pw, int pb, const void *dout,
                    const void *x, const pl_qweight *w, int T, int I, int O) {
    lin_bwd_rows(t, layer, which, dx, pw, pb, dout, x, w, T, I, O, 0);
}

int pl_train_backward(pl_train *t, float scale, pl_err *err) {
    const pl_backend *be = t->be;
    pl_model *m = t->m;
    const pl_model_config *c = &m->cfg;
    const int T = t->T, D = c->dim, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    const int H = c->hidden, V = c->vocab;
    if (T <= 0) return pl_err_set(err, PL_EINVAL, "train: backward without a forward before it");
    int need_embed = t->p_embed >= 0 && !t->params[t->p_embed].frozen;
    if ((need_embed && !be->embedding_bwd) || !be->rmsnorm_bwd || !be->rope_bwd || !be->attention_bwd ||
        !be->swiglu_bwd || !be->linear_bwd || (t->logits ? !be->cross_entropy_bwd : !be->lm_head_ce_bwd) ||
        (t->frozen_base && !be->linear_q_bwd_x) || (t->lora && !be->lora_bwd))
        return pl_err_set(err, PL_EUNSUPPORTED, "train: backend '%s' lacks backward ops", be->name);
    if (t->hook && pl_train_mlp_chunk(t, T) < T)
        return pl_err_set(err, PL_EUNSUPPORTED, "train: backward hooks see whole layers; MLP chunks are on");
    if (t->hook && !be->host_memory)
        return pl_err_set(err, PL_EUNSUPPORTED, "train: backward hooks read host floats; backend '%s' has none",
                          be->name);
    const int32_t *sg = t->has_seg ? t->seg : NULL;
    const size_t TD = (size_t)T * D;

    /* loss -> logits -> final norm */
    if (!t->logits) { /* the fused head + loss of a frozen head */
        TIMED(t, PL_TT_HEAD_B, be->lm_head_ce_bwd(t->d_xn, t->xnf, &m->lm_head, t->targets, t->lse, T, scale));
    } else {
        void *dlogits = t->logits;
        TIMED(t, PL_TT_HEAD_B, be->cross_entropy_bwd(dlogits, t->logits, t->targets, T, V, scale));
        int head = t->p_head >= 0 ? t->p_head : t->p_embed; /* tied: the head's gradient adds into the embedding's */
        lin_bwd(t, -1, PL_LIN_HEAD, t->d_xn, head, -1, dlogits, t->xnf, &m->lm_head, T, D, V);
    }
    TIMED(t, PL_TT_NORM_B, be->rmsnorm_bwd(t->d_res, grad_of(t, t->p_norm), t->d_xn, t->x_final, m->out_norm, T, D,
                                           c->norm_eps));

    for (int l = c->n_layers - 1; l >= 0; l--) {
        const pl_layer *L = &m->layers[l];
        const pl_layer_acts *a = &t->acts[l];
        const int *pi = t->p_layer[l];
        if (t->offload) { /* layer l-1's input comes back while layer l is walked; layer l's is here */
            if (l >= 1 && l - 1 + 2 < c->n_layers)
                be->fetch(t->acts[l - 1].x_in, t->x_host[l - 1], pl_act_bytes(be, TD), (l - 1) & 1);
            if (l + 2 < c->n_layers) be->copy_wait(l & 1);
        }
        /* refill the shared buffers; MLP chunks are recomputed one by one below */
        const int C = pl_train_mlp_chunk(t, T), chunked = C < T;
        if (t->checkpoint) pl_train_layer_forward(t, l, t->ws_lin, !chunked);
        /* MLP: x_out = x_mid + down(silu(gate) * up), over chunks of C rows */
        for (int r0 = 0; r0 < T; r0 += C) {
            const int n = T - r0 < C ? T - r0 : C;
            const size_t o = (size_t)r0 * (size_t)D;
            const void *xn2 = pl_act_at(be, a->xn2, o);
            if (chunked) pl_train_mlp_rows(t, l, NULL, r0, n); /* gate, up, act of these rows */
            lin_bwd_rows(t, l, PL_LIN_DOWN, t->d_act, pi[8], -1, pl_act_at(be, t->d_res, o), a->act, &L->w_down, n, H,
                         D, r0);
            TIMED(t, PL_TT_SWIGLU_B, be->swiglu_bwd(t->d_act, t->d_up, t->d_act, a->gate, a->up, n, H));
            lin_bwd_rows(t, l, PL_LIN_GATE, pl_act_at(be, t->d_xn, o), pi[6], -1, t->d_act, xn2, &L->w_gate, n, D, H,
                         r0);
            lin_bwd_rows(t, l, PL_LIN_UP, pl_act_at(be, t->d_tmp, o), pi[7], -1, t->d_up, xn2, &L->w_up, n, D, H, r0);
        }
        TIMED(t, PL_TT_ADD, be->add(t->d_xn, t->d_xn, t->d_tmp, TD));
        TIMED(t, PL_TT_NORM_B, be->rmsnorm_bwd(t->d_tmp, grad_of(t, pi[1]), t->d_xn, a->x_mid, L->ffn_norm, T, D,
                                               c->norm_eps));
        TIMED(t, PL_TT_ADD, be->add(t->d_res, t->d_res, t->d_tmp, TD));
        /* attention: x_mid = x_in + o(attention(rope(q), rope(k), v)) */
        lin_bwd(t, l, PL_LIN_O, t->d_att, pi[5], -1, t->d_res, a->att, &L->wo, T, qd, D);
        TIMED(t, PL_TT_ATTN_B, be->attention_bwd(t->d_q, t->d_k, t->d_v, t->d_att, a->q, a->k, a->v, a->att,
                                                 t->qlast, sg, sg, T, T, c->n_heads, c->n_kv_heads, c->head_dim));
        TIMED(t, PL_TT_ROPE_B, {
            be->rope_bwd(t->d_q, t->pos, m->inv_freq, T, c->n_heads, c->head_dim);
            be->rope_bwd(t->d_k, t->pos, m->inv_freq, T, c->n_kv_heads, c->head_dim);
        });
        lin_bwd(t, l, PL_LIN_Q, t->d_xn, pi[2], pi[9], t->d_q, a->xn1, &L->wq, T, D, qd);
        lin_bwd(t, l, PL_LIN_K, t->d_tmp, pi[3], pi[10], t->d_k, a->xn1, &L->wk, T, D, kvd);
        TIMED(t, PL_TT_ADD, be->add(t->d_xn, t->d_xn, t->d_tmp, TD));
        lin_bwd(t, l, PL_LIN_V, t->d_tmp, pi[4], pi[11], t->d_v, a->xn1, &L->wv, T, D, kvd);
        TIMED(t, PL_TT_ADD, be->add(t->d_xn, t->d_xn, t->d_tmp, TD));
        TIMED(t, PL_TT_NORM_B, be->rmsnorm_bwd(t->d_tmp, grad_of(t, pi[0]), t->d_xn, a->x_in, L->attn_norm, T, D,
                                               c->norm_eps));
        TIMED(t, PL_TT_ADD, be->add(t->d_res, t->d_res, t->d_tmp, TD));
        if (t->layer_done) t->layer_done(t->layer_done_user, l);
    }
    if (t->p_embed >= 0 && !t->params[t->p_embed].frozen)
        TIMED(t, PL_TT_EMBED_B, be->embedding_bwd(grad_of(t, t->p_embed), t->ids, t->d_res, T, D));
    t->T = 0; /* the logits are gone: a second backward needs a new forward */
    return be->take_error(err);
}
