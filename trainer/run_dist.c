/* run_dist.c: a training run over several ranks (docs/distributed.md).
 *
 * Every rank opens the same data source and packs the same global batch
 * (the loader is deterministic, so its exact-resume position stays global
 * and a run may resume at another world size); rank k trains rows k, k + P,
 * k + 2P, ... of the step, each with the dropout key of its global row
 * index, and scales its summed token losses by 1 / (trained tokens of the
 * whole step), as one process does. The gradients, flattened in the order
 * of run.ts, are then reduce-scattered with the sum over ranks taken in rank
 * order (core/dist.h), so the step's gradient equals one process's up to the
 * order of the additions, and the same world size gives the same bits.
 *
 * The gradient norm for clipping is the sum of each shard's squares, in
 * rank order; the loss is the sum of the ranks' losses, in rank order.
 * Then either
 *   ZeRO-1 (zero = 1): each rank steps AdamW on its shard with moments it
 *     alone keeps ((hi - lo) floats each instead of n_floats), and the new
 *     weights are all-gathered; or
 *   all-reduce (zero = 0): the reduced shards are all-gathered into every
 *     rank's gradient, and every rank steps all weights with full moments.
 * AdamW is elementwise, so both give the same bits. */
#include "run_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/dist.h"

int run_dist_open(run *r, pl_err *err) {
    rdist *d = &r->dist;
    memset(d, 0, sizeof *d);
    d->rank = pl_dist_rank();
    d->size = pl_dist_size();
    d->zero = r->c->zero;
    if (d->size <= 1) return PL_OK;
    const pl_backend *be = r->t->be;
    if (strcmp(be->name, "cpu"))
        return pl_err_set(err, PL_EUNSUPPORTED, "train: %d ranks: data-parallel training runs on the CPU backend only (this run uses %s)",
                          d->size, be->name);
    size_t N = r->n_floats, mx = 0;
    for (int k = 0; k < d->size; k++) {
        size_t len = pl_dist_shard_lo(N, k + 1) - pl_dist_shard_lo(N, k);
        if (len > mx) mx = len;
    }
    d->lo = pl_dist_shard_lo(N, d->rank);
    d->hi = pl_dist_shard_lo(N, d->rank + 1);
    size_t len = d->hi - d->lo;
    d->flat = be->alloc(N * sizeof(float), PL_MEM_GRADIENTS);
    d->red = be->alloc((len ? len : 1) * sizeof(float), PL_MEM_GRADIENTS);
    d->scratch = be->alloc((size_t)d->size * (mx ? mx : 1) * sizeof(float), PL_MEM_WORKSPACE);
    if (!d->flat || !d->red || !d->scratch) return pl_err_set(err, PL_ENOMEM, "train: out of memory for the gradient exchange");
    if (d->zero) {
        d->m = be->alloc((len ? len : 1) * sizeof(float), PL_MEM_OPTIMIZER);
        d->v = be->alloc((len ? len : 1) * sizeof(float), PL_MEM_OPTIMIZER);
        if (!d->m || !d->v) return pl_err_set(err, PL_ENOMEM, "train: out of memory for the AdamW state");
    }
    return PL_OK;
}

void run_dist_free(run *r) {
    rdist *d = &r->dist;
    if (d->size > 1 && r->t) {
        float *bufs[] = {d->flat, d->red, d->scratch, d->m, d->v};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            if (bufs[i]) r->t->be->free(bufs[i]);
    }
    memset(d, 0, sizeof *d);
}

int run_dist_step(run *r, const row *rw, int n, int64_t trained, double lr, double *loss, double *gnorm, int *stop,
                  pl_err *err) {
    pl_train *t = r->t;
    rdist *d = &r->dist;
    const pl_backend *be = t->be;
    pl_train_zero_grad(t);
    double sum = 0;
    int rc = run_accum_rows(t, rw, n, d->rank, d->size, trained, &sum, err); /* this rank's rows */
    if (rc) return rc;
    size_t N = r->n_floats, len = d->hi - d->lo, o = 0;
    for (int i = 0; i < r->n_ts; i++) {
        memcpy(d->flat + o, r->ts[i].g, r->ts[i].n * sizeof(float));
        o += r->ts[i].n;
    }
    (void)pl_dist_comm_seconds();
    if ((rc = pl_dist_reduce_scatter_f32(d->flat, N, d->red, d->scratch, err))) return rc;
    double v[3] = {len ? be->sumsq(d->red, len) : 0.0, sum, *stop ? 1.0 : 0.0};
    if ((rc = pl_dist_allreduce_f64(v, 3, err))) return rc;
    *loss = trained > 0 ? v[1] / (double)trained : NAN;
    *gnorm = sqrt(v[0]);
    *stop = v[2] > 0;
    const pl_run_cfg *c = r->c;
    if (c->max_grad_norm > 0) {
        double coef = c->max_grad_norm / (*gnorm + 1e-6);
        if (coef < 1.0 && len) be->scale(d->red, (float)coef, len);
    }
    pl_adamw_opts ao = {.lr = (float)lr, .beta1 = (float)c->beta1, .beta2 = (float)c->beta2, .eps = (float)c->eps,
                        .weight_decay = (float)c->weight_decay};
    if (!d->zero) {
        memcpy(d->flat + d->lo, d->red, len * sizeof(float));
        if ((rc = pl_dist_allgather_f32(d->flat, N, err))) return rc;
        o = 0;
        for (int i = 0; i < r->n_ts; i++) {
            memcpy(r->ts[i].g, d->flat + o, r->ts[i].n * sizeof(float));
            o += r->ts[i].n;
        }
        rc = pl_train_adamw(t, &ao, err);
        d->comm_s = pl_dist_comm_seconds();
        return rc;
    }
    /* ZeRO-1: this rank's shard of each tensor, then everyone's weights */
    t->step++;
    o = 0;
    for (int i = 0; i < r->n_ts; i++) {
        size_t a = o > d->lo ? o : d->lo, b = o + r->ts[i].n < d->hi ? o + r->ts[i].n : d->hi;
        if (a < b) {
            float *w = r->ts[i].w + (a - o);
            be->adamw(w, d->red + (a - d->lo), d->m + (a - d->lo), d->v + (a - d->lo), b - a, ao.lr, ao.beta1,
                      ao.beta2, ao.eps, ao.weight_decay, t->step);
            memcpy(d->flat + a, w, (b - a) * sizeof(float));
        }
        o += r->ts[i].n;
    }
    if ((rc = pl_dist_allgather_f32(d->flat, N, err))) return rc;
    o = 0;
    for (int i = 0; i < r->n_ts; i++) {
        memcpy(r->ts[i].w, d->flat + o, r->ts[i].n * sizeof(float));
        o += r->ts[i].n;
    }
    d->comm_s = pl_dist_comm_seconds();
    return PL_OK;
}

/* optimizer.bin: for each tensor i (flat offset o_i, n_i floats): m_i then v_i */
int run_dist_gather_moments(run *r, float *m, float *v, pl_err *err) {
    rdist *d = &r->dist;
    int rc = pl_dist_gather_f32(d->m, m, r->n_floats, 0, err);
    if (!rc) rc = pl_dist_gather_f32(d->v, v, r->n_floats, 0, err);
    return rc;
}

void run_dist_load_moments(run *r, const float *file) {
    rdist *d = &r->dist;
    size_t o = 0;
    for (int i = 0; i < r->n_ts; i++) {
        size_t n = r->ts[i].n, a = o > d->lo ? o : d->lo, b = o + n < d->hi ? o + n : d->hi;
        if (a < b) {
            memcpy(d->m + (a - d->lo), file + 2 * o + (a - o), (b - a) * sizeof(float));
            memcpy(d->v + (a - d->lo), file + 2 * o + n + (a - o), (b - a) * sizeof(float));
        }
        o += n;
    }
}
