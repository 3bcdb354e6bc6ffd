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
 * The exchange may also go in pieces (pl_nccl_rs_begin/piece/end), so that
 * it overlaps the backward: piece b of the flat vector is a layer's
 * gradients, queued as soon as that layer's backward has been queued; each
 * rank's part of the piece (its intersection with rank k's shard) goes to
 * rank k, into the place in k's scratch the whole exchange would put it.
 * Only the sum waits for the last piece: the same scratch, the same sum,
 * the same bits. NCCL matches sends and receives in the order they are
 * issued, so every rank must queue the pieces in the same order (the
 * trainer does: run_dist.c's fixed order).
 * The all-gather moves bits only: ncclAllGather in place when the shards
 * are equal (n a multiple of P), else one ncclBroadcast per rank's shard in
 * one group (NCCL's all-gather takes equal counts).
 *
 * Streams: the backend queues its kernels on the legacy default stream.
 * Each collective (each piece) runs on this file's own stream, after an
 * event recorded on the default stream (so it sees the gradients copied
 * into the flat vector, or the optimizer's weights). After a whole
 * reduce-scatter or all-gather, and after the pieces' sum, the default
 * stream waits for an event recorded on this stream, so the work queued
 * next sees the result; after a piece it does not wait: the backward of
 * the layers below runs on while the piece moves. The host never waits
 * here; take_error's device synchronization does.
 *
 * Under the emulator (make emu, make test) the NCCL calls are
 * trainer/cuda/emu/emu_nccl.cpp's, over MPI, so this path runs at several
 * ranks there too; the emulator orders streams trivially, so there it
 * checks the bytes moved and their order, not the overlap.
 *
 * The sum kernel builds everywhere (tests/test_cuda_emu.c checks it against
 * pl_dist_sum_slices under the emulator); the NCCL part only with
 * PL_HAVE_NCCL (make gpu with NCCL; the emulated build with MPI). */
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
#include <vector>
#ifdef PL_CUDA_EMU
#include "emu/emu_nccl.h"
#else
#include <nccl.h>
#endif

namespace {

struct nccl_state {
    ncclComm_t comm = nullptr;
    cudaStream_t stream = nullptr;
    cudaEvent_t queued = nullptr; /* the default stream's work so far: the collective waits for it */
    cudaEvent_t done = nullptr;   /* the collective: the default stream waits for it */
    /* start and end of each collective (piece) queued since pl_nccl_seconds
     * last counted them; the pool grows (a step queues one per piece), so
     * counting never makes the host wait in the middle of a step */
    std::vector<cudaEvent_t> t0, t1;
    size_t timed = 0;
    double seconds = 0;
    int rank = 0, size = 1;
    /* the reduce-scatter in pieces under way (pl_nccl_rs_*) */
    const float *rs_in = nullptr;
    float *rs_out = nullptr, *rs_scratch = nullptr;
    size_t rs_n = 0;
    std::vector<size_t> rs_bounds;
    std::vector<char> rs_sent;
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
    for (size_t i = 0; i < N.timed; i++) {
        float ms = 0;
        if (cudaEventSynchronize(N.t1[i]) == cudaSuccess && cudaEventElapsedTime(&ms, N.t0[i], N.t1[i]) == cudaSuccess)
            N.seconds += 1e-3 * (double)ms;
    }
    N.timed = 0;
}

/* The collective's stream after the default stream's work so far; starts its timer. */
int begin(pl_err *err, const char *what) {
    cudaError_t e = cudaSuccess;
    if (N.timed == N.t0.size()) { /* one more timer pair */
        cudaEvent_t a = nullptr, b = nullptr;
        e = cudaEventCreate(&a);
        if (e == cudaSuccess) e = cudaEventCreate(&b);
        if (e != cudaSuccess) {
            if (a) cudaEventDestroy(a);
            return cuda_fail(err, e, "a timer event");
        }
        N.t0.push_back(a);
        N.t1.push_back(b);
    }
    e = cudaEventRecord(N.queued, 0);
    if (e == cudaSuccess) e = cudaStreamWaitEvent(N.stream, N.queued, 0);
    if (e == cudaSuccess) e = cudaEventRecord(N.t0[N.timed], N.stream);
    return e == cudaSuccess ? PL_OK : cuda_fail(err, e, what);
}

/* Stops the collective's timer; join: the default stream waits for it. */
int end(pl_err *err, const char *what, int join) {
    cudaError_t e = cudaEventRecord(N.t1[N.timed], N.stream);
    if (e == cudaSuccess) N.timed++;
    if (e == cudaSuccess && join) e = cudaEventRecord(N.done, N.stream);
    if (e == cudaSuccess && join) e = cudaStreamWaitEvent(0, N.done, 0);
    return e == cudaSuccess ? PL_OK : cuda_fail(err, e, what);
}

size_t shard_lo(size_t n, int k) { return pl_dist_shard_lo(n, k); }

/* Queued on the collectives' stream: this rank's own copy of its shard into
 * its slice of scratch, then the slices summed in rank order into out. */
int own_and_sum(const float *in, size_t n, float *out, float *scratch, pl_err *err) {
    const size_t lo = shard_lo(n, N.rank), len = shard_lo(n, N.rank + 1) - lo;
    cudaError_t e = len ? cudaMemcpyAsync(scratch + (size_t)N.rank * len, in + lo, len * sizeof(float),
                                          cudaMemcpyDeviceToDevice, N.stream)
                        : cudaSuccess;
    if (e != cudaSuccess) return cuda_fail(err, e, "reduce-scatter (own slice)");
    int k = pl_cuda_sum_slices(out, scratch, N.size, (int64_t)len, N.stream);
    return k ? cuda_fail(err, (cudaError_t)k, "reduce-scatter (sum in rank order)") : PL_OK;
}

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

/* Queued on the collectives' stream: floats [blo, bhi) of in, each rank's
 * part of them (its intersection with rank k's shard) to rank k, and every
 * rank's copy of their part of this rank's shard into its slice of scratch,
 * at the place the whole exchange ([0, n)) puts it. */
int exchange(const float *in, size_t n, size_t blo, size_t bhi, float *scratch, pl_err *err) {
    const int P = N.size, me = N.rank;
    const size_t lo = shard_lo(n, me), len = shard_lo(n, me + 1) - lo;
    const size_t mlo = blo > lo ? blo : lo, mhi = bhi < lo + len ? bhi : lo + len;
    ncclResult_t r = ncclGroupStart();
    for (int k = 0; k < P && r == ncclSuccess; k++) {
        if (k == me) continue;
        size_t klo = shard_lo(n, k), khi = shard_lo(n, k + 1);
        size_t a = blo > klo ? blo : klo, z = bhi < khi ? bhi : khi;
        if (a < z) r = ncclSend(in + a, z - a, ncclFloat, k, N.comm, N.stream);
        if (mlo < mhi && r == ncclSuccess)
            r = ncclRecv(scratch + (size_t)k * len + (mlo - lo), mhi - mlo, ncclFloat, k, N.comm, N.stream);
    }
    ncclResult_t r2 = ncclGroupEnd();
    if (r == ncclSuccess) r = r2;
    return r == ncclSuccess ? PL_OK : nccl_fail(err, r, "reduce-scatter (send/recv)");
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
    if (e != cudaSuccess) {
        rc = cuda_fail(err, e, "the collectives' stream and events");
        pl_nccl_close(1);
        return rc;
    }
    *used = 1;
    return PL_OK;
}


extern "C" int pl_nccl_reduce_scatter(const float *in, size_t n, float *out, float *scratch, pl_err *err) {
    int rc = begin(err, "reduce-scatter");
    if (!rc) rc = exchange(in, n, 0, n, scratch, err);
    if (!rc) rc = own_and_sum(in, n, out, scratch, err);
    return rc ? rc : end(err, "reduce-scatter", 1);
}

extern "C" int pl_nccl_rs_begin(const float *in, size_t n, const size_t *bounds, int nb, float *out, float *scratch,
                                pl_err *err) {
    if (N.rs_in) return pl_err_set(err, PL_EINVAL, "nccl: a reduce-scatter in pieces is already under way");
    if (nb < 1 || bounds[0] != 0 || bounds[nb] != n)
        return pl_err_set(err, PL_EINVAL, "nccl: the pieces do not cover the vector");
    for (int b = 0; b < nb; b++)
        if (bounds[b] > bounds[b + 1]) return pl_err_set(err, PL_EINVAL, "nccl: the pieces are not in order");
    N.rs_bounds.assign(bounds, bounds + nb + 1);
    N.rs_sent.assign((size_t)nb, 0);
    N.rs_in = in;
    N.rs_n = n;
    N.rs_out = out;
    N.rs_scratch = scratch;
    return PL_OK;
}

extern "C" int pl_nccl_rs_piece(int b, pl_err *err) {
    if (!N.rs_in || b < 0 || (size_t)b >= N.rs_sent.size() || N.rs_sent[(size_t)b])
        return pl_err_set(err, PL_EINVAL, "nccl: piece %d is not one to send", b);
    N.rs_sent[(size_t)b] = 1;
    int rc = begin(err, "reduce-scatter piece");
    if (!rc) rc = exchange(N.rs_in, N.rs_n, N.rs_bounds[(size_t)b], N.rs_bounds[(size_t)b + 1], N.rs_scratch, err);
    return rc ? rc : end(err, "reduce-scatter piece", 0); /* the default stream goes on with the backward */
}

extern "C" int pl_nccl_rs_end(pl_err *err) {
    if (!N.rs_in) return pl_err_set(err, PL_EINVAL, "nccl: no reduce-scatter in pieces under way");
    int rc = PL_OK;
    for (size_t b = 0; b < N.rs_sent.size(); b++)
        if (!N.rs_sent[b]) rc = pl_err_set(err, PL_EINVAL, "nccl: piece %zu was never sent", b);
    if (!rc) rc = begin(err, "reduce-scatter (sum)");
    if (!rc) rc = own_and_sum(N.rs_in, N.rs_n, N.rs_out, N.rs_scratch, err);
    if (!rc) rc = end(err, "reduce-scatter (sum)", 1);
    pl_nccl_rs_abandon();
    return rc;
}

extern "C" void pl_nccl_rs_abandon(void) {
    N.rs_in = nullptr;
    N.rs_out = N.rs_scratch = nullptr;
    N.rs_n = 0;
    N.rs_bounds.clear();
    N.rs_sent.clear();
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
    return end(err, "all-gather", 1);
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
    for (cudaEvent_t ev : N.t0) cudaEventDestroy(ev);
    for (cudaEvent_t ev : N.t1) cudaEventDestroy(ev);
    N = nccl_state();
}

#else /* no NCCL in this build (a toolkit without nccl.h, or no MPI) */

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
extern "C" int pl_nccl_rs_begin(const float *in, size_t n, const size_t *bounds, int nb, float *out, float *scratch,
                                pl_err *err) {
    return no_nccl(err);
}
extern "C" int pl_nccl_rs_piece(int b, pl_err *err) { return no_nccl(err); }
extern "C" int pl_nccl_rs_end(pl_err *err) { return no_nccl(err); }
extern "C" void pl_nccl_rs_abandon(void) {}
extern "C" double pl_nccl_seconds(void) { return 0; }
extern "C" void pl_nccl_close(int abort) {}

#endif
