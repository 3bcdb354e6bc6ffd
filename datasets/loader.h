/* loader.h: training batches from a sharded dataset.
 *
 * Order: each epoch visits every sample exactly once, in a permutation drawn
 * from (seed, epoch) with the counter-based RNG. Packing: the permutation is
 * cut into windows of pack_window samples; each window's samples are packed
 * first-fit-decreasing into rows of seq_len tokens. A row holds whole
 * samples as segments 1, 2, ... (0 = padding) with positions restarting at 0
 * in each segment, so a model given (ids, pos, seg) never attends across
 * samples. Samples longer than seq_len are truncated, or split into pieces
 * of seq_len tokens overlapping by one token (each piece its own segment).
 *
 * targets[t] = ids[t+1] when t+1 is in the same segment and its loss_mask is
 * 1, else -1. A batch's n_trained counts targets >= 0. For gradient
 * accumulation, pl_loader_step returns the trained-token count of the whole
 * step: scale each micro-batch's summed token loss by 1/step_trained, so
 * the loss is normalized over the step and not per micro-batch.
 *
 * State: (seed, epoch, cursor, row) where cursor is the permutation index of
 * the current window's first sample and row the rows of that window already
 * handed out. Packing depends only on (seed, epoch, cursor), so a loader
 * opened from a saved state yields exactly the batches an uninterrupted run
 * would have. With prefetch > 0 a background thread prepares batches ahead;
 * the state always reflects the batches handed to the caller. */
#ifndef PL_LOADER_H
#define PL_LOADER_H

#include <stdint.h>
#include "../core/error.h"

typedef enum pl_long_mode { PL_LONG_TRUNCATE = 0, PL_LONG_SPLIT = 1 } pl_long_mode;

typedef struct pl_loader_opts {
    int seq_len;          /* tokens per row (>= 2) */
    int batch_rows;       /* rows per batch (>= 1) */
    uint64_t seed;
    pl_long_mode long_mode;
    int pack_window;      /* samples packed together (0: 1024) */
    int prefetch;         /* batches prepared ahead by a thread (0: none) */
    int trust;            /* skip the size + sha256 check of each shard */
    int64_t epochs;       /* stop after this many epochs (0: endless) */
    int64_t preload_bytes;/* read all tokens into memory when they fit (0: 1 GiB; <0: never) */
    int32_t pad_id;       /* id put in padding positions */
} pl_loader_opts;

typedef struct pl_loader_state {
    uint64_t seed;
    int64_t epoch, cursor, row;
} pl_loader_state;

typedef struct pl_batch {
    int rows, seq_len;        /* rows filled (< batch_rows only at the end) */
    int32_t *ids, *targets;   /* (batch_rows, seq_len) */
    int32_t *seg, *pos;       /* (batch_rows, seq_len) */
    int64_t *seg_sample;      /* (batch_rows, seq_len): global sample index of segment k+1 of row r, -1 after the last */
    int32_t *seg_start;       /* (batch_rows, seq_len): first token of that segment within its sample */
    int64_t n_trained;        /* targets >= 0 */
    int64_t n_real;           /* non-padding tokens */
    pl_loader_state state;    /* loader state after this batch */
} pl_batch;

typedef struct pl_loader pl_loader;

/* resume: NULL to start at epoch 0; else a state from pl_loader_state_get. */
int pl_loader_open(pl_loader **out, const char *dir, const pl_loader_opts *o, const pl_loader_state *resume,
                   pl_err *err);
void pl_loader_close(pl_loader *l);

int pl_batch_alloc(const pl_loader *l, pl_batch *b, pl_err *err);
void pl_batch_free(pl_batch *b);

/* Next batch; b->rows == 0 when the epochs are exhausted. */
int pl_loader_next(pl_loader *l, pl_batch *b, pl_err *err);
/* accum micro-batches mb[0..accum) and the step's trained-token count. */
int pl_loader_step(pl_loader *l, pl_batch *mb, int accum, int64_t *step_trained, pl_err *err);
pl_loader_state pl_loader_state_get(const pl_loader *l);

int64_t pl_loader_samples(const pl_loader *l);   /* samples per epoch */
int64_t pl_loader_sample_len(const pl_loader *l, int64_t g);
/* Tokens and mask of global sample g (buffers of pl_loader_sample_len). */
int pl_loader_sample(pl_loader *l, int64_t g, int32_t *tok, uint8_t *mask, pl_err *err);
/* Padding fraction of the rows handed out so far. */
double pl_loader_padding(const pl_loader *l);

#endif
