/* nccl_dist.cu: the data-parallel gradient exchange of the CUDA backend on
 * the devices (docs/distributed.md, "The NCCL path"), as core/dist.c does it
 * on the host over MPI, with the same bits.
 *
 * MPI starts the ranks and carries rank 0's ncclUniqueId to the others
 * (pl_dist_bcast); NCCL then moves the LoRA gradients and weights between
 * device buffers. Determinism: ncclReduceScatter's summation order is
 * NCCL's (it depends on the algorithm, the topology and the channel count),
 * so the reduce-scatter is done in two parts instead:
 *   - an exchange: every rank sends each other rank k its copy of shard k
 *     and receives every rank's copy of its own shard, into a (P, shard)
 *     scratch, slice r from rank r (ncclSend/ncclRecv in one group; its own
 *     copy by a device copy);
 *   - a sum: sum_slices_kernel adds the P slices element by element in rank
 *     order 0, 1, ..., P-1, one fp32 rounding per addition, the order of
 *     core/dist.c's host sum (pl_dist_sum_slices), so the same inputs give
 *     the bits of the MPI path.
 * The all-gather moves bits only: ncclAllGather in place when the shards
 * are equal (n a multiple of P), else one ncclBroadcast per rank's shard in
 * one group (NCCL's all-gather takes equal counts).
 *
 * Streams: the backend queues its kernels on the legacy default stream.
 * Each collective runs on this file's own stream, after an event recorded
 * on the default stream (so it sees the backward's gradients and the
 * optimizer's weights), and the default stream then waits for an event
 * recorded after it, so the work queued next sees its result. The host
 * never waits here; take_error's device synchronization does. Overlap with
 * the backward beyond that ordering is not done (the trainer's backward
 * returns after a synchronization, so there is nothing to overlap with yet).
 *
 * The sum kernel builds everywhere (tests/test_cuda_emu.c checks it against
 * pl_dist_sum_slices under the emulator); the NCCL part only with
 * PL_HAVE_NCCL (make gpu). */
#include "cuda_common.cuh"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "../../core/dist.h"
#include "nccl_dist.h"
}

/* ---- CUDA kernels -------------------------------------------------------------------------- */

/* out (len) = slices (P, len) summed over the rows in row order. */
__global__ void sum_slices_kernel(float *out, const float *slices, int P, int64_t len) {
    for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < len; j += (int64_t)gridDim.x * blockDim.x) {
        float s = slices[j];
        for (int r = 1; r < P; r++) s += slices[(int64_t)r * len + j];
        out[j] = s;
    }
}

/* ---- kernel launchers ---------------------------------------------------------------------- */

extern "C" int pl_cuda_sum_slices(float *out, const float *slices, int P, int64_t len, pl_stream stream) {
    if (P < 1 || len < 0) return (int)cudaErrorInvalidValue;
    if (len == 0) return 0;
    int64_t b = (len + 255) / 256;
    PL_LAUNCH(sum_slices_kernel, (unsigned)(b > 65536 ? 65536 : b), 256, 0, stream, out, slices, P, len);
    return pl_cuda_status();
}

/* ---- NCCL ---------------------------------------------------------------------------------- */

#ifdef PL_HAVE_NCCL
#include <unistd.h>
#include <nccl.h>

namespace {

enum { N_TIMED = 8 };

struct nccl_state {
    ncclComm_t comm = nullptr;
    cudaStream_t stream = nullptr;
    cudaEvent_t queued = nullptr; /* the default stream's work so far: the collective waits for it */
    cudaEvent_t done = nullptr;   /* the collective: the default stream waits for it */
    cudaEvent_t t0[N_TIMED] = {}, t1[N_TIMED] = {}; /* start and end of each collective not yet counted */
    int timed = 0;
    double seconds = 0;
    int rank = 0, size = 1;
};

nccl_state N;

int nccl_fail(pl_err *err, ncclResult_t r, const char *what) {
    const char *last = N.comm ? ncclGetLastError(N.comm) : nullptr;
    return pl_err_set(err, PL_EIO, "nccl: rank %d: %s: %s%s%s", N.rank, what, ncclGetErrorString(r),
                      last && *last ? ": " : "", last && *last ? last : "");
}
int cuda_fail(pl_err *err, cudaError_t e, const char *what) {
    return pl_err_set(err, e == cudaErrorMemoryAllocation ? PL_ENOMEM : PL_EIO, "nccl: rank %d: %s: %s", N.rank, what,
                      cudaGetErrorString(e));
}

/* Fold the finished collectives' event times into N.seconds (waits for them). */
void collect() {
    for (int i = 0; i < N.timed; i++) {
        float ms = 0;
        if (cudaEventSynchronize(N.t1[i]) == cudaSuccess && cudaEventElapsedTime(&ms, N.t0[i], N.t1[i]) == cudaSuccess)
            N.seconds += 1e-3 * (double)ms;
    }
    N.timed = 0;
}

/* The collective's stream after the default stream's work so far; starts its timer. */
int begin(pl_err *err, const char *what) {
    if (N.timed == N_TIMED) collect();
    cudaError_t e = cudaEventRecord(N.queued, 0);
    if (e == cudaSuccess) e = cudaStreamWaitEvent(N.stream, N.queued, 0);
    if (e == cudaSuccess) e = cudaEventRecord(N.t0[N.timed], N.stream);
    return e == cudaSuccess ? PL_OK : cuda_fail(err, e, what);
}

/* The default stream after the collective; stops its timer. */
int end(pl_err *err, const char *what) {
    cudaError_t e = cudaEventRecord(N.t1[N.timed], N.stream);
    if (e == cudaSuccess) N.timed++;
    if (e == cudaSuccess) e = cudaEventRecord(N.done, N.stream);
    if (e == cudaSuccess) e = cudaStreamWaitEvent(0, N.done, 0);
    return e == cudaSuccess ? PL_OK : cuda_fail(err, e, what);
}

size_t shard_lo(size_t n, int k) { return pl_dist_shard_lo(n, k); }

/* Whether two ranks share a device (NCCL refuses that: "Duplicate GPU"):
 * every rank's host name and PCI bus id, all-gathered. 1 when they do
 * (*who names two such ranks), 0 when not, < 0 on error. */
int shared_device(char *who, size_t whosz, pl_err *err) {
    enum { W = 128 };
    char mine[W] = {0}, host[64] = {0}, bus[32] = {0};
    int dev = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetPCIBusId(bus, (int)sizeof bus, dev);
    if (e != cudaSuccess) return cuda_fail(err, e, "the device's PCI bus id");
    gethostname(host, sizeof host - 1);
    snprintf(mine, sizeof mine, "%s/%s", host, bus);
    void *all = nullptr;
    size_t *len = (size_t *)calloc((size_t)N.size, sizeof *len);
    if (!len) return pl_err_set(err, PL_ENOMEM, "nccl: out of memory");
    int rc = pl_dist_allgather_bytes(mine, W, &all, len, err);
    int dup = 0;
    if (!rc) {
        const char *a = (const char *)all;
        for (int i = 0; i < N.size && !dup; i++)
            for (int j = i + 1; j < N.size && !dup; j++)
                if (!strncmp(a + (size_t)i * W, a + (size_t)j * W, W)) {
                    dup = 1;
                    snprintf(who, whosz, "ranks %d and %d are both on %.*s", i, j, W, a + (size_t)i * W);
                }
    }
    free(all);
    free(len);
    return rc ? rc : dup;
}

} // namespace

extern "C" int pl_nccl_built(void) { return 1; }

extern "C" int pl_nccl_open(int *used, pl_err *err) {
    *used = 0;
    if (N.comm) {
        *used = 1;
        return PL_OK;
    }
    N.rank = pl_dist_rank();
    N.size = pl_dist_size();
    if (N.size <= 1) return PL_OK;
    char who[256] = {0};
    int rc = shared_device(who, sizeof who, err);
    if (rc < 0) return rc;
    if (rc == 1) {
        if (N.rank == 0)
            fprintf(stderr, "potluck: NCCL needs a device per rank (%s); the gradients go through MPI instead\n", who);
        return PL_OK;
    }
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    ncclResult_t r = ncclSuccess;
    if (N.rank == 0) r = ncclGetUniqueId(&id);
    /* rank 0's failure must not leave the others waiting in the broadcast: a zero id says so */
    int ok = r == ncclSuccess;
    if ((rc = pl_dist_bcast(&ok, sizeof ok, 0, err))) return rc;
    if (!ok) return N.rank == 0 ? nccl_fail(err, r, "ncclGetUniqueId")
                                : pl_err_set(err, PL_EIO, "nccl: rank 0 could not make the communicator's id");
    if ((rc = pl_dist_bcast(&id, sizeof id, 0, err))) return rc;
    if ((r = ncclCommInitRank(&N.comm, N.size, id, N.rank)) != ncclSuccess) {
        N.comm = nullptr;
        return nccl_fail(err, r, "ncclCommInitRank");
    }
    cudaError_t e = cudaStreamCreateWithFlags(&N.stream, cudaStreamNonBlocking);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&N.queued, cudaEventDisableTiming);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&N.done, cudaEventDisableTiming);
    for (int i = 0; i < N_TIMED && e == cudaSuccess; i++) {
        e = cudaEventCreate(&N.t0[i]);
        if (e == cudaSuccess) e = cudaEventCreate(&N.t1[i]);
    }
    if (e != cudaSuccess) {
        rc = cuda_fail(err, e, "the collectives' stream and events");
        pl_nccl_close(1);
        return rc;
    }
    *used = 1;
    return PL_OK;
}

extern "C" int pl_nccl_reduce_scatter(const float *in, size_t n, float *out, float *scratch, pl_err *err) {
    const int P = N.size, me = N.rank;
    const size_t lo = shard_lo(n, me), len = shard_lo(n, me + 1) - lo;
    int rc = begin(err, "reduce-scatter");
    if (rc) return rc;
    /* slice k of scratch <- rank k's copy of this rank's shard; rank k <- this rank's copy of shard k */
    ncclResult_t r = ncclGroupStart();
    for (int k = 0; k < P && r == ncclSuccess; k++) {
        if (k == me) continue;
        size_t klo = shard_lo(n, k), klen = shard_lo(n, k + 1) - klo;
        if (klen) r = ncclSend(in + klo, klen, ncclFloat, k, N.comm, N.stream);
        if (len && r == ncclSuccess) r = ncclRecv(scratch + (size_t)k * len, len, ncclFloat, k, N.comm, N.stream);
    }
    ncclResult_t r2 = ncclGroupEnd();
    if (r == ncclSuccess) r = r2;
    if (r != ncclSuccess) return nccl_fail(err, r, "reduce-scatter (send/recv)");
    cudaError_t e = len ? cudaMemcpyAsync(scratch + (size_t)me * len, in + lo, len * sizeof(float),
                                          cudaMemcpyDeviceToDevice, N.stream)
                        : cudaSuccess;
    if (e != cudaSuccess) return cuda_fail(err, e, "reduce-scatter (own slice)");
    int k = pl_cuda_sum_slices(out, scratch, P, (int64_t)len, N.stream);
    if (k) return cuda_fail(err, (cudaError_t)k, "reduce-scatter (sum in rank order)");
    return end(err, "reduce-scatter");
}

extern "C" int pl_nccl_allgather(float *buf, size_t n, pl_err *err) {
    const int P = N.size, me = N.rank;
    int rc = begin(err, "all-gather");
    if (rc) return rc;
    ncclResult_t r = ncclSuccess;
    if (n % (size_t)P == 0) { /* equal shards: in place, this rank's shard already at its offset */
        size_t c = n / (size_t)P;
        if (c) r = ncclAllGather(buf + (size_t)me * c, buf, c, ncclFloat, N.comm, N.stream);
    } else { /* uneven shards: each rank's shard broadcast from it, in place */
        r = ncclGroupStart();
        for (int k = 0; k < P && r == ncclSuccess; k++) {
            size_t klo = shard_lo(n, k), klen = shard_lo(n, k + 1) - klo;
            if (klen) r = ncclBroadcast(buf + klo, buf + klo, klen, ncclFloat, k, N.comm, N.stream);
        }
        ncclResult_t r2 = ncclGroupEnd();
        if (r == ncclSuccess) r = r2;
    }
    if (r != ncclSuccess) return nccl_fail(err, r, "all-gather");
    return end(err, "all-gather");
}

extern "C" double pl_nccl_seconds(void) {
    collect();
    double s = N.seconds;
    N.seconds = 0;
    return s;
}

extern "C" void pl_nccl_close(int abort) {
    if (abort) {
        if (N.comm) ncclCommAbort(N.comm);
    } else {
        if (N.stream) cudaStreamSynchronize(N.stream);
        if (N.comm) ncclCommDestroy(N.comm);
    }
    if (N.stream) cudaStreamDestroy(N.stream);
    cudaEvent_t *evs[] = {&N.queued, &N.done};
    for (cudaEvent_t *ev : evs)
        if (*ev) cudaEventDestroy(*ev);
    for (int i = 0; i < N_TIMED; i++) {
        if (N.t0[i]) cudaEventDestroy(N.t0[i]);
        if (N.t1[i]) cudaEventDestroy(N.t1[i]);
    }
    N = nccl_state();
}

#else /* no NCCL in this build (the emulated one, or a toolkit without nccl.h) */

extern "C" int pl_nccl_built(void) { return 0; }
static int no_nccl(pl_err *err) {
    return pl_err_set(err, PL_EUNSUPPORTED, "nccl: this potluck was built without NCCL (make gpu links it)");
}
extern "C" int pl_nccl_open(int *used, pl_err *err) {
    *used = 0;
    return no_nccl(err);
}
extern "C" int pl_nccl_reduce_scatter(const float *in, size_t n, float *out, float *scratch, pl_err *err) {
    return no_nccl(err);
}
extern "C" int pl_nccl_allgather(float *buf, size_t n, pl_err *err) { return no_nccl(err); }
extern "C" double pl_nccl_seconds(void) { return 0; }
extern "C" void pl_nccl_close(int abort) {}

#endif
