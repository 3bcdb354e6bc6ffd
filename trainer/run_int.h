/* run_int.h: what the parts of the training run share (run.c lists them):
 * the rows of a step, the data source, the trained tensors, the run's
 * state, and the functions one part calls in another (prefix run_). */
#ifndef PL_RUN_INT_H
#define PL_RUN_INT_H

#include <stddef.h>
#include <stdint.h>

#include "../datasets/loader.h"
#include "../lora/lora.h"
#include "model.h"
#include "run.h"
#include "train.h"

typedef struct row {
    const int32_t *ids, *targets, *pos, *seg;
    int T;
} row;

typedef struct src {
    int text;                 /* 1: packed text; 0: dataset loader */
    int S;                    /* seq_len */
    int n_mb;                 /* micro-batch rows per step (upper bound) */
    /* loader */
    pl_loader *ld;
    pl_batch *bt;             /* (grad_accum) */
    int accum;
    /* text */
    int32_t *tok;
    int64_t n_tok, n_train_tok, n_rows;
    int64_t *perm;            /* (n_rows) order of the current epoch */
    int64_t epoch, pos;
    uint64_t seed;
    /* eval rows (owned copies) */
    int n_eval;
    int32_t *ev_buf;          /* (n_eval, 4, S): ids, targets, pos, seg */
    int *ev_T, *ev_hasseg;
} src;

typedef struct tens {
    float *w, *g;
    float **m, **v;
    size_t n;
    int layer;                /* the layer whose backward finishes its gradient; -1: after all layers */
} tens;

/* The run's share of a data-parallel job (run_dist.c; core/dist.h): ranks
 * train rows rank, rank + size, ... of each step; the gradient, flattened in
 * the order of run.ts, is reduce-scattered in rank order; with ZeRO-1 each
 * rank keeps the AdamW moments of its shard [lo, hi) only and the weights
 * are all-gathered after the step. size 1: none of this is used. */
typedef struct rdist {
    int rank, size, zero;
    size_t lo, hi;
    float *flat;              /* (n_floats) packed gradient, then gathered weights/gradient (PL_MEM_GRADIENTS) */
    float *red;               /* (hi - lo) this rank's reduced shard (PL_MEM_GRADIENTS) */
    float *scratch;           /* (size * largest shard) reduce-scatter receive (PL_MEM_WORKSPACE): the
                                 backend's memory with nccl, else host memory (run_dist_host_alloc) */
    size_t scratch_bytes;
    int nccl;                 /* 1: the backend's collectives (backend.h dist_*), else MPI on host memory */
    float *m, *v;             /* (hi - lo) ZeRO-1 moments (PL_MEM_OPTIMIZER) */
    double comm_s;            /* seconds in collectives in the last step */
    /* the exchange overlapped with the backward (both paths): the flat
     * vector in pieces of one layer each (maximal runs of run.ts with the
     * same layer), sent as the last row's backward finishes each layer, in
     * one fixed order on every rank (NCCL matches in issue order) */
    int overlap;
    int nb;                   /* pieces */
    size_t *bounds;           /* (nb + 1) flat offsets */
    int *b_layer, *b_ts;      /* (nb + 1) each piece's layer; its first tensor (b_ts[nb] = n_ts) */
    int *order;               /* (nb) the sending order: layers from the top down, then the rest (layer -1) */
    char *ready;              /* (nb) this step: the piece's layer is done */
    int cursor;               /* order[cursor] is the next piece to send (those before it went out) */
    int early;                /* pieces of the last step sent from the backward (the rest after it) */
    int armed_micro;          /* the row (t->micro) whose backward sends; -1: none */
    struct pl_dist_rs *rs;    /* the exchange in flight */
    int rs_failed;            /* a send from the backward failed: the step fails after it */
    pl_err rs_err;
} rdist;

typedef struct run {
    const pl_run_cfg *c;
    const pl_run_hooks *h;
    pl_model *m;
    pl_train *t;
    pl_lora *lora;
    src data;
    tens *ts;
    int n_ts;
    size_t n_floats;
    char cfg_hex[65];
    char *ckdir, *metrics;
    int64_t tokens, trained;  /* cumulative */
    rdist dist;
} run;

/* run_cfg.c */
void run_cfg_hash(const pl_run_cfg *c, char hex[65]);

/* run_data.c */
void run_text_perm(src *s);
void run_src_free(src *s);
int run_src_open(src *s, const pl_run_cfg *c, const pl_model *m, pl_err *err);
int run_src_step(src *s, row *r, int *n, int64_t *tokens, int64_t *trained, pl_err *err);

/* run_ckpt.c */
int run_save_state(run *r, int step, pl_err *err);
int run_resume(run *r, int *step, pl_err *err);

/* run.c: forward + backward of rows first, first + stride, ... (see there) */
int run_accum_rows(pl_train *t, const row *rw, int n, int first, int stride, int64_t trained, double *sum, pl_err *err);

/* run_dist.c */
int run_dist_open(run *r, pl_err *err);
/* failed: the run ends on an error (the backend's collectives are aborted, not waited for). */
void run_dist_free(run *r, int failed);
int run_dist_step(run *r, const row *rw, int n, int64_t trained, double lr, double *loss, double *gnorm, int *stop,
                  pl_err *err);
/* The full AdamW moments on rank 0 (m, v: n_floats each, else NULL): gathered
 * from the ranks' shards with ZeRO-1; collective. */
int run_dist_gather_moments(run *r, float *m, float *v, pl_err *err);
/* The flat moments (this rank's shard) from optimizer.bin's layout. */
void run_dist_load_moments(run *r, const float *file);
/* Host memory for what MPI writes (the reduce-scatter's scratch, rank 0's
 * gathered moments), tagged cat: the backend's alloc when its memory is host
 * memory, else malloc'd and counted in cat. */
float *run_dist_host_alloc(const pl_backend *be, size_t bytes, pl_mem_cat cat);
void run_dist_host_free(const pl_backend *be, float *p, size_t bytes, pl_mem_cat cat);

/* run_metrics.c */
int run_metrics_truncate(run *r, int step, pl_err *err);
int run_metrics_append(run *r, cJSON *j, pl_err *err);
void run_add_mem(cJSON *j, const pl_backend *be);

/* run.c */
void run_msg(run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
