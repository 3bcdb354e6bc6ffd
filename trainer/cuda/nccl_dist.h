/* nccl_dist.h: the CUDA backend's data-parallel collectives over NCCL
 * (nccl_dist.cu), which cuda_backend.cu puts in its op table (backend.h's
 * dist_*). Only a build with NCCL (PL_HAVE_NCCL: `make gpu` when the toolkit
 * has nccl.h, and the emulated build, whose NCCL is emu/emu_nccl.cpp over
 * MPI, when MPI is there) has them: elsewhere pl_nccl_built is 0, the others
 * fail with PL_EUNSUPPORTED, and the backend leaves its dist_* NULL, so the
 * trainer keeps the MPI path. */
#ifndef PL_NCCL_DIST_H
#define PL_NCCL_DIST_H

#include <stddef.h>
#include "../../core/error.h"

/* 1 when this build has NCCL. */
int pl_nccl_built(void);
/* Collective: the communicator of core/dist.h's ranks (rank 0's
 * ncclUniqueId broadcast over MPI), on the current device, with its own
 * stream. *used = 0 (PL_OK) when two ranks share a device, which NCCL
 * refuses; every rank gets the same answer. */
int pl_nccl_open(int *used, pl_err *err);
/* backend.h's dist_reduce_scatter and dist_allgather (queued; see there). */
int pl_nccl_reduce_scatter(const float *in, size_t n, float *out, float *scratch, pl_err *err);
int pl_nccl_allgather(float *buf, size_t n, pl_err *err);
/* backend.h's dist_rs_begin, dist_rs_piece, dist_rs_end (queued; see
 * there); abandon forgets a reduce-scatter in pieces after a failure. */
int pl_nccl_rs_begin(const float *in, size_t n, const size_t *bounds, int nb, float *out, float *scratch,
                     pl_err *err);
int pl_nccl_rs_piece(int b, pl_err *err);
int pl_nccl_rs_end(pl_err *err);
void pl_nccl_rs_abandon(void);
/* Seconds the collectives queued since the last call took on the device
 * (waits for them). */
double pl_nccl_seconds(void);
/* End the communicator: waits for its work, or (abort) aborts it
 * (ncclCommAbort: a failed run, whose peers may never answer). */
void pl_nccl_close(int abort);

#endif
