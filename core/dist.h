/* dist.h: the ranks of a data-parallel job and the few collectives the
 * trainer needs, over MPI (Open MPI) when potluck was built with it.
 *
 * Who starts the ranks: mpirun (Open MPI sets OMPI_COMM_WORLD_SIZE), srun
 * (SLURM_STEP_NUM_TASKS, or PMI_SIZE with --mpi=pmi2), or any launcher that
 * sets one of those. pl_dist_init reads the world size from the environment
 * first and calls MPI_Init only when it is above 1, so a plain `potluck ...`
 * never touches MPI (no MPI_Init, no daemon, no network), and a build without
 * MPI (PL_HAVE_MPI undefined: the Makefile found no libopenmpi-dev) runs one
 * process as before and refuses a world size above 1 with a message.
 *
 * Determinism: the sums are computed here, not by MPI_Reduce/MPI_Allreduce
 * (whose order depends on the algorithm MPI picks): every element is summed
 * over the ranks in rank order 0, 1, ..., P-1, by the rank that owns it, so
 * the same inputs at the same world size give the same bits on every run.
 *
 * Sharding: a vector of n floats is cut into P contiguous shards, shard r is
 * [pl_dist_shard_lo(n, r), pl_dist_shard_lo(n, r + 1)).
 *
 * Failures: MPI's default error handler (errors are fatal) stays in place;
 * a rank that dies takes the job down through mpirun/srun. Besides, a
 * watchdog thread ends a rank whose collective has waited longer than
 * POTLUCK_DIST_TIMEOUT seconds (default 900; 0 turns it off), with a message
 * naming the collective, so a peer that hangs (not dies) cannot hang the job. */
#ifndef PL_DIST_H
#define PL_DIST_H

#include <stddef.h>
#include "error.h"

/* The world size the launcher announced in the environment (1 when none);
 * POTLUCK_DIST=off forces 1. */
int pl_dist_env_size(void);
/* How many of the job's ranks run on this machine, as the launcher says
 * (Open MPI's OMPI_COMM_WORLD_LOCAL_SIZE, MPICH's MPI_LOCALNRANKS; 1 when
 * none says): they share its memory. */
int pl_dist_env_local_size(void);
/* Join the job: MPI_Init when the environment announces more than one rank.
 * Idempotent. A build without MPI fails (PL_EUNSUPPORTED) for more than one. */
int pl_dist_init(pl_err *err);
/* MPI_Finalize when pl_dist_init started MPI (also registered with atexit);
 * afterwards this process is a world of one (its collectives copy). */
void pl_dist_finalize(void);
int pl_dist_rank(void);
int pl_dist_size(void);
/* 1 when this build has MPI. */
int pl_dist_have_mpi(void);
/* End the whole job now (MPI_Abort; exit when single). */
void pl_dist_abort(int code) __attribute__((noreturn));

size_t pl_dist_shard_lo(size_t n, int rank);

/* Seconds spent in the collectives below since the last call (then reset). */
double pl_dist_comm_seconds(void);

int pl_dist_barrier(pl_err *err);
/* bytes of buf from rank root to every rank. */
int pl_dist_bcast(void *buf, size_t bytes, int root, pl_err *err);
/* v[0..n) summed over the ranks in rank order, the result on every rank. */
int pl_dist_allreduce_f64(double *v, int n, pl_err *err);
/* Reduce-scatter: in (n floats, this rank's contribution) summed over the
 * ranks in rank order, this rank's shard written to out (shard length).
 * scratch: P * (largest shard) floats. */
int pl_dist_reduce_scatter_f32(const float *in, size_t n, float *out, float *scratch, pl_err *err);
/* The same reduce-scatter in pieces, so that it overlaps the work that
 * produces its input (the trainer's backward: a layer's LoRA gradients go out
 * as soon as they are final, while the layers below are still being walked).
 * The sum is the one above, element by element in rank order after every
 * piece has arrived, so the result has the same bits.
 *   bounds[0..nb]: the pieces [bounds[b], bounds[b + 1]) of the n floats,
 *     increasing from 0 to n; every rank passes the same pieces;
 *   begin: posts the receives of this rank's shard of every piece from every
 *     other rank into scratch (P x this rank's shard length floats);
 *   send(b): piece b of in is final: each rank's part of it goes out (in
 *     must stay unchanged until end), and MPI gets a chance to progress the
 *     messages in flight; each piece once, in any order;
 *   end: sends the pieces not sent yet, waits for all of them (the
 *     watchdog's "reduce-scatter"), sums into out (this rank's shard) and
 *     frees s, also on an error. abandon frees s after an error elsewhere
 *     (its receives cancelled).
 * With one rank, end copies in to out. */
typedef struct pl_dist_rs pl_dist_rs;
int pl_dist_rs_begin(pl_dist_rs **s, const float *in, size_t n, const size_t *bounds, int nb, float *scratch,
                     pl_err *err);
int pl_dist_rs_send(pl_dist_rs *s, int b, pl_err *err);
int pl_dist_rs_end(pl_dist_rs *s, float *out, pl_err *err);
void pl_dist_rs_abandon(pl_dist_rs *s);
/* 1 when piece b went out already (send, or end). */
int pl_dist_rs_sent(const pl_dist_rs *s, int b);
/* The reduce-scatter's sum, on the host: out[j] (len) = slices[j] +
 * slices[len + j] + ... + slices[(P - 1) len + j], left to right, one fp32
 * rounding per addition (the rank order above). The CUDA backend's NCCL path
 * sums on the device in the same order (trainer/cuda/nccl_dist.cu), so the
 * two give the same bits. */
void pl_dist_sum_slices(float *out, const float *slices, int P, size_t len);
/* All-gather in place: buf (n floats) holds this rank's shard at its place;
 * afterwards every rank's shard is in every rank's buf. */
int pl_dist_allgather_f32(float *buf, size_t n, pl_err *err);
/* Gather to root: every rank's shard (its shard's length) lands at its place
 * in root's full (n floats; NULL on the other ranks). */
int pl_dist_gather_f32(const float *shard, float *full, size_t n, int root, pl_err *err);

/* Byte buffers of any size, for the sharded data stages (docs/distributed.md).
 * bcast_bytes: root's *buf (*n bytes) to every rank; on the others *buf is
 * malloc'd (the caller frees it; NULL when *n is 0).
 * gather_bytes: every rank's n bytes to root, in rank order: root gets *all
 * (malloc'd, the ranks' buffers one after another) and len[r] (P entries,
 * caller-allocated) the size of rank r's part; *all is NULL elsewhere.
 * allgather_bytes: the same on every rank. With one rank these copy. */
int pl_dist_bcast_bytes(void **buf, size_t *n, int root, pl_err *err);
int pl_dist_gather_bytes(const void *buf, size_t n, void **all, size_t *len, int root, pl_err *err);
int pl_dist_allgather_bytes(const void *buf, size_t n, void **all, size_t *len, pl_err *err);
/* Wait, sleeping, until every rank got here (a barrier that polls every
 * 2 ms instead of spinning, so a rank waiting for another's long one-rank
 * work leaves it the cores). timed: the watchdog ends the wait after
 * POTLUCK_DIST_TIMEOUT seconds (ranks doing equal parts of one job); 0: not
 * timed (a wait as long as rank 0's one-rank stage; a rank that dies still
 * ends the job through the launcher). The time spent is not counted as
 * communication. */
int pl_dist_wait(int timed, pl_err *err);

#endif
