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
 * The exchange overlaps the backward: during this rank's last row of the
 * step, each layer's pieces of the flat gradient go out as soon as its
 * backward is done (pl_train.layer_done), and only the sum waits for the
 * end; the sum is the same, so are the bits (POTLUCK_DIST_OVERLAP=0
 * exchanges after the backward, for comparison). Every rank sends the
 * pieces in one order (the layers from the top down, as the backward
 * finishes them, then the pieces of no layer), a piece waiting for those
 * before it: NCCL matches sends and receives in the order they are issued,
 * and a rank without rows this step sends them all after its (empty)
 * backward. On the NCCL path a piece is queued on the collectives' stream
 * and the backward's kernels go on meanwhile; on the CUDA backend's MPI
 * path (POTLUCK_DIST_NCCL=0, or two ranks on one device) a piece waits for
 * the device (take_error) before MPI reads it: one synchronization per layer
 * of the last row, so the host's sends overlap the device's work on the
 * layers below, not its own queueing.
 *
 * The gradient norm for clipping is the sum of each shard's squares, in
 * rank order; the loss is the sum of the ranks' losses, in rank order.
 * Then either
 *   ZeRO-1 (zero = 1): each rank steps AdamW on its shard with moments it
 *     alone keeps ((hi - lo) floats each instead of n_floats), and the new
 *     weights are all-gathered; or
 *   all-reduce (zero = 0): the reduced shards are all-gathered into every
 *     rank's gradient, and every rank steps all weights with full moments.
 * AdamW is elementwise, so both give the same bits.
 *
 * Two ways to move the floats, with the same bits:
 *   - MPI (core/dist.h) on host memory: the CPU backend's buffers, or the
 *     CUDA backend's trained state (managed memory), read by the host after
 *     take_error has synchronized the device; the reduce-scatter's receive
 *     scratch is then plain host memory;
 *   - the backend's own collectives (backend.h's dist_*: NCCL on the CUDA
 *     backend of `make gpu`) on device buffers, queued between the
 *     backward's and the optimizer's kernels; the host never touches the
 *     flat vectors. Chosen when the backend has them, unless
 *     POTLUCK_DIST_NCCL=0 (rank 0's setting counts) or two ranks share a
 *     device.
 * Copies between the run's tensors and the flat vectors go through the
 * backend's copy either way, and a step ends with take_error, so the
 * checkpoint code after it may read the weights and moments on the host. */
#include "run_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/dist.h"

/* Host memory the MPI path writes to, tagged cat: the backend's when it is
 * host memory, else malloc'd (a device backend's workspace is device memory). */
float *run_dist_host_alloc(const pl_backend *be, size_t bytes, pl_mem_cat cat) {
    if (be->host_memory) return be->alloc(bytes, cat);
    float *p = calloc(1, bytes ? bytes : 1);
    if (p) pl_mem_note(cat, (ptrdiff_t)(bytes ? bytes : 1));
    return p;
}
void run_dist_host_free(const pl_backend *be, float *p, size_t bytes, pl_mem_cat cat) {
    if (!p) return;
    if (be->host_memory) {
        be->free(p);
        return;
    }
    free(p);
    pl_mem_note(cat, -(ptrdiff_t)(bytes ? bytes : 1));
}

/* The flat vector's pieces for the overlapped exchange: maximal runs of
 * run.ts whose gradients the same layer's backward finishes; their sending
 * order (order: the layers from the top down, then layer -1's, each group in
 * flat order). */
static int pieces(run *r, pl_err *err) {
    rdist *d = &r->dist;
    int n = r->n_ts;
    d->bounds = malloc((size_t)(n + 1) * sizeof *d->bounds);
    d->b_layer = malloc((size_t)(n + 1) * sizeof *d->b_layer);
    d->b_ts = malloc((size_t)(n + 1) * sizeof *d->b_ts);
    d->order = malloc((size_t)(n + 1) * sizeof *d->order);
    d->ready = calloc((size_t)(n + 1), 1);
    if (!d->bounds || !d->b_layer || !d->b_ts || !d->order || !d->ready)
        return pl_err_set(err, PL_ENOMEM, "train: out of memory for the gradient exchange");
    size_t o = 0;
    d->nb = 0;
    for (int i = 0; i < n; i++) {
        if (i == 0 || r->ts[i].layer != r->ts[i - 1].layer) {
            d->bounds[d->nb] = o;
            d->b_layer[d->nb] = r->ts[i].layer;
            d->b_ts[d->nb] = i;
            d->nb++;
        }
        o += r->ts[i].n;
    }
    d->bounds[d->nb] = o;
    d->b_ts[d->nb] = n;
    d->armed_micro = -1;
    int top = -1, k = 0;
    for (int b = 0; b < d->nb; b++)
        if (d->b_layer[b] > top) top = d->b_layer[b];
    for (int l = top; l >= -1; l--) /* a stable order by layer, descending (-1 last) */
        for (int b = 0; b < d->nb; b++)
            if (d->b_layer[b] == l) d->order[k++] = b;
    if (k != d->nb) return pl_err_set(err, PL_EINVAL, "train: a trained tensor has no layer to send it after");
    return PL_OK;
}

int run_dist_open(run *r, pl_err *err) {
    rdist *d = &r->dist;
    memset(d, 0, sizeof *d);
    d->rank = pl_dist_rank();
    d->size = pl_dist_size();
    d->zero = r->c->zero;
    if (d->size <= 1) return PL_OK;
    const pl_backend *be = r->t->be;
    int rc;
    if (be->dist_open) { /* the backend's collectives unless POTLUCK_DIST_NCCL=0 (rank 0's) */
        const char *e = getenv("POTLUCK_DIST_NCCL");
        int want = !(e && !strcmp(e, "0"));
        if ((rc = pl_dist_bcast(&want, sizeof want, 0, err))) return rc;
        if (want && (rc = be->dist_open(&d->nccl, err))) {
            pl_err_prefix(err, "train: %d ranks on the %s backend", d->size, be->name);
            char hint[] = " (POTLUCK_DIST_NCCL=0 sends the gradients through MPI instead)";
            size_t l = strlen(err->msg);
            if (l + sizeof hint <= sizeof err->msg) memcpy(err->msg + l, hint, sizeof hint);
            return rc;
        }
    }
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
    d->scratch_bytes = (size_t)d->size * (mx ? mx : 1) * sizeof(float);
    d->scratch = d->nccl ? be->alloc(d->scratch_bytes, PL_MEM_WORKSPACE)
                         : run_dist_host_alloc(be, d->scratch_bytes, PL_MEM_WORKSPACE);
    if (!d->flat || !d->red || !d->scratch) return pl_err_set(err, PL_ENOMEM, "train: out of memory for the gradient exchange");
    if (d->zero) {
        d->m = be->alloc((len ? len : 1) * sizeof(float), PL_MEM_OPTIMIZER);
        d->v = be->alloc((len ? len : 1) * sizeof(float), PL_MEM_OPTIMIZER);
        if (!d->m || !d->v) return pl_err_set(err, PL_ENOMEM, "train: out of memory for the AdamW state");
    }
    { /* overlap the exchange with the backward unless POTLUCK_DIST_OVERLAP=0 (rank 0's) */
        const char *e = getenv("POTLUCK_DIST_OVERLAP");
        int want = !(e && !strcmp(e, "0"));
        if ((rc = pl_dist_bcast(&want, sizeof want, 0, err))) return rc;
        if (d->nccl && !(be->dist_rs_begin && be->dist_rs_piece && be->dist_rs_end)) want = 0;
        if (want && (rc = pieces(r, err))) return rc;
        d->overlap = want;
    }
    /* the allocations' zeroing done before the host may write the moments (resume) */
    return be->take_error(err);
}

void run_dist_free(run *r, int failed) {
    rdist *d = &r->dist;
    if (d->size > 1 && r->t) {
        const pl_backend *be = r->t->be;
        if (d->nccl && be->dist_close) be->dist_close(failed);
        float *bufs[] = {d->flat, d->red, d->m, d->v};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            if (bufs[i]) be->free(bufs[i]);
        if (d->scratch) {
            if (d->nccl) be->free(d->scratch);
            else run_dist_host_free(be, d->scratch, d->scratch_bytes, PL_MEM_WORKSPACE);
        }
    }
    pl_dist_rs_abandon(d->rs);
    free(d->bounds);
    free(d->b_layer);
    free(d->b_ts);
    free(d->order);
    free(d->ready);
    memset(d, 0, sizeof *d);
}

/* Before MPI reads or writes trained state: the device's work done (a no-op on the CPU). */
static int host_ready(const pl_backend *be, pl_err *err) { return be->host_memory ? PL_OK : be->take_error(err); }

static int reduce_scatter(run *r, pl_err *err) {
    rdist *d = &r->dist;
    const pl_backend *be = r->t->be;
    if (d->nccl) {
        be->dist_reduce_scatter(d->flat, r->n_floats, d->red, d->scratch);
        return PL_OK;
    }
    int rc = host_ready(be, err);
    return rc ? rc : pl_dist_reduce_scatter_f32(d->flat, r->n_floats, d->red, d->scratch, err);
}

static int allgather(run *r, pl_err *err) {
    rdist *d = &r->dist;
    const pl_backend *be = r->t->be;
    if (d->nccl) {
        be->dist_allgather(d->flat, r->n_floats);
        return PL_OK;
    }
    int rc = host_ready(be, err);
    return rc ? rc : pl_dist_allgather_f32(d->flat, r->n_floats, err);
}

/* flat <- every tensor's gradient (grads) or weights, in run.ts order; or back (to_flat 0) */
static void flat_copy(run *r, int grads, int to_flat) {
    const pl_backend *be = r->t->be;
    size_t o = 0;
    for (int i = 0; i < r->n_ts; i++) {
        float *t = grads ? r->ts[i].g : r->ts[i].w;
        size_t b = r->ts[i].n * sizeof(float);
        if (to_flat) be->copy(r->dist.flat + o, t, b);
        else be->copy(t, r->dist.flat + o, b);
        o += r->ts[i].n;
    }
}

/* Piece b of the overlapped exchange: its tensors' gradients into flat, then out. */
static int piece_send(run *r, int b, pl_err *err) {
    rdist *d = &r->dist;
    const pl_backend *be = r->t->be;
    size_t o = d->bounds[b];
    for (int i = d->b_ts[b]; i < d->b_ts[b + 1]; i++) {
        be->copy(d->flat + o, r->ts[i].g, r->ts[i].n * sizeof(float));
        o += r->ts[i].n;
    }
    if (d->nccl) { /* queued after the copies; the backward's kernels do not wait for it */
        be->dist_rs_piece(b);
        return PL_OK;
    }
    int rc = host_ready(be, err); /* a device backend: the piece's copies done before MPI reads it */
    return rc ? rc : pl_dist_rs_send(d->rs, b, err);
}

/* The pieces next in the sending order whose layers are done (all: every
 * piece left). */
static int send_ready(run *r, int all, pl_err *err) {
    rdist *d = &r->dist;
    for (; d->cursor < d->nb; d->cursor++) {
        int b = d->order[d->cursor];
        if (!all && !d->ready[b]) break;
        int rc = piece_send(r, b, err);
        if (rc) return rc;
        if (!all) d->early++;
    }
    return PL_OK;
}

/* pl_train.layer_done during this rank's last row of the step: the layer's
 * gradients are final, so its pieces go out while the layers below are walked. */
static void on_layer_done(void *user, int layer) {
    run *r = user;
    rdist *d = &r->dist;
    if (r->t->micro != d->armed_micro || d->rs_failed) return;
    for (int b = 0; b < d->nb; b++)
        if (d->b_layer[b] == layer) d->ready[b] = 1;
    if (send_ready(r, 0, &d->rs_err)) d->rs_failed = 1;
}

/* This rank's rows of the step, with the reduce-scatter of their gradients
 * into d->red: overlapped with the last row's backward, or after it. Both
 * send the same floats and sum them in the same order: the same bits. */
static int accum_and_reduce(run *r, const row *rw, int n, int64_t trained, double *sum, pl_err *err) {
    pl_train *t = r->t;
    rdist *d = &r->dist;
    int rc;
    if (!d->overlap) {
        if ((rc = run_accum_rows(t, rw, n, d->rank, d->size, trained, sum, err))) return rc;
        flat_copy(r, 1, 1);
        return reduce_scatter(r, err);
    }
    const pl_backend *be = t->be;
    if (d->nccl) be->dist_rs_begin(d->flat, r->n_floats, d->bounds, d->nb, d->red, d->scratch);
    else if ((rc = pl_dist_rs_begin(&d->rs, d->flat, r->n_floats, d->bounds, d->nb, d->scratch, err))) return rc;
    memset(d->ready, 0, (size_t)d->nb);
    d->cursor = 0;
    d->rs_failed = 0;
    d->early = 0;
    /* the last row this rank trains (rows rank, rank + P, ... below n); none when it has none */
    d->armed_micro = n > d->rank && trained > 0 ? d->rank + (n - 1 - d->rank) / d->size * d->size : -1;
    t->layer_done = on_layer_done;
    t->layer_done_user = r;
    rc = run_accum_rows(t, rw, n, d->rank, d->size, trained, sum, err);
    t->layer_done = NULL;
    t->layer_done_user = NULL;
    d->armed_micro = -1;
    if (!rc && d->rs_failed) {
        *err = d->rs_err;
        rc = err->code ? err->code : PL_EIO;
    }
    if (!rc) rc = send_ready(r, 1, err); /* the pieces of no layer (head, embedding), or all of a rank without rows */
    if (d->nccl) { /* the sum queued; a failure surfaces at take_error (this step's end) */
        if (!rc) be->dist_rs_end();
        return rc;
    }
    if (!rc) rc = host_ready(t->be, err); /* the sum below is written by the host */
    if (rc) {
        pl_dist_rs_abandon(d->rs);
        d->rs = NULL;
        return rc;
    }
    rc = pl_dist_rs_end(d->rs, d->red, err);
    d->rs = NULL;
    return rc;
}

static double comm_seconds(run *r) {
    const pl_backend *be = r->t->be;
    return pl_dist_comm_seconds() + (r->dist.nccl && be->dist_seconds ? be->dist_seconds() : 0.0);
}

int run_dist_step(run *r, const row *rw, int n, int64_t trained, double lr, double *loss, double *gnorm, int *stop,
                  pl_err *err) {
    pl_train *t = r->t;
    rdist *d = &r->dist;
    const pl_backend *be = t->be;
    pl_train_zero_grad(t);
    double sum = 0;
    (void)comm_seconds(r);
    int rc = accum_and_reduce(r, rw, n, trained, &sum, err); /* this rank's rows, the gradients' exchange */
    if (rc) return rc;
    size_t len = d->hi - d->lo;
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
        be->copy(d->flat + d->lo, d->red, len * sizeof(float));
        if ((rc = allgather(r, err))) return rc;
        flat_copy(r, 1, 0);
        rc = pl_train_adamw(t, &ao, err); /* ends with take_error */
        d->comm_s = comm_seconds(r);
        return rc;
    }
    /* ZeRO-1: this rank's shard of each tensor, then everyone's weights */
    t->step++;
    size_t o = 0;
    for (int i = 0; i < r->n_ts; i++) {
        size_t a = o > d->lo ? o : d->lo, b = o + r->ts[i].n < d->hi ? o + r->ts[i].n : d->hi;
        if (a < b) {
            float *w = r->ts[i].w + (a - o);
            be->adamw(w, d->red + (a - d->lo), d->m + (a - d->lo), d->v + (a - d->lo), b - a, ao.lr, ao.beta1,
                      ao.beta2, ao.eps, ao.weight_decay, t->step);
            be->copy(d->flat + a, w, (b - a) * sizeof(float));
        }
        o += r->ts[i].n;
    }
    if ((rc = allgather(r, err))) return rc;
    flat_copy(r, 0, 0);
    rc = be->take_error(err); /* the device's work done: the host may read the weights (checkpoints) */
    d->comm_s = comm_seconds(r);
    return rc;
}

/* optimizer.bin: for each tensor i (flat offset o_i, n_i floats): m_i then v_i */
int run_dist_gather_moments(run *r, float *m, float *v, pl_err *err) {
    rdist *d = &r->dist;
    int rc = host_ready(r->t->be, err); /* MPI reads the moments on the host */
    if (!rc) rc = pl_dist_gather_f32(d->m, m, r->n_floats, 0, err);
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
