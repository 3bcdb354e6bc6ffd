/* nccl_check.c: the CUDA backend's NCCL collectives (trainer/cuda/nccl_dist.cu)
 * against core/dist.c's MPI ones, under mpirun with one GPU per rank
 * (tests/gpu/check.sh; built by `make gpu-nccl-check`):
 *   mpirun -np 2 build/gpu/nccl_check-sm_XX [N_FLOATS] [ITERS]
 * and on the emulator with its NCCL over MPI (build/opt/tests/nccl_check_emu,
 * run by tests/mpi_nccl_emu.sh in make test).
 * Each rank fills N floats (default 40e6, about a 7B model's LoRA r 16
 * gradient) with values of mixed magnitudes from its rank's seed, then
 *   - reduce-scatters them with NCCL and with MPI (host copies): the same bits;
 *   - reduce-scatters them again in 8 pieces (dist_rs_begin/piece/end: one
 *     empty, others across the shards' edges), queued from the last to the
 *     first: the same bits;
 *   - a reduce-scatter in pieces with one piece never queued fails at
 *     take_error, naming it;
 *   - all-gathers the reduced shards both ways: the same bits;
 *   - times ITERS (default 10) NCCL reduce-scatter + all-gather pairs with
 *     the backend's event timers, and the MPI pair on host memory, and prints
 *     both (rank 0), with the bus bandwidth a ring would need.
 * Exit 0 when every rank's bits agree. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "../../core/dist.h"
#include "../../trainer/backend.h"
#include "../../trainer/cuda/cuda_backend.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    pl_err err = {0};
    size_t n = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 40000000;
    int iters = argc > 2 ? atoi(argv[2]) : 10;
    if (pl_dist_init(&err) || pl_dist_size() < 2) {
        fprintf(stderr, "nccl_check: %s\n", err.code ? err.msg : "run it under mpirun -np 2 (or more)");
        return 2;
    }
    int rank = pl_dist_rank(), P = pl_dist_size(), used = 0;
    const pl_backend *be = pl_backend_cuda_open(&err);
    if (!be) { fprintf(stderr, "nccl_check: rank %d: %s\n", rank, err.msg); pl_dist_abort(1); }
    if (!be->dist_open) { fprintf(stderr, "nccl_check: this build has no NCCL\n"); pl_dist_abort(1); }
    if (be->dist_open(&used, &err)) { fprintf(stderr, "nccl_check: rank %d: %s\n", rank, err.msg); pl_dist_abort(1); }
    if (!used) { if (!rank) fprintf(stderr, "nccl_check: NCCL not usable here (ranks share a device)\n"); pl_dist_abort(3); }
    size_t lo = pl_dist_shard_lo(n, rank), len = pl_dist_shard_lo(n, rank + 1) - lo, mx = 0;
    for (int k = 0; k < P; k++) {
        size_t l = pl_dist_shard_lo(n, k + 1) - pl_dist_shard_lo(n, k);
        if (l > mx) mx = l;
    }
    float *h = malloc(n * 4), *hred = malloc((len ? len : 1) * 4), *hsc = malloc((size_t)P * mx * 4), *got = malloc(n * 4);
    float *d = be->alloc(n * 4, PL_MEM_GRADIENTS), *dred = be->alloc((len ? len : 1) * 4, PL_MEM_GRADIENTS);
    float *dsc = be->alloc((size_t)P * mx * 4, PL_MEM_WORKSPACE);
    if (!h || !hred || !hsc || !got || !d || !dred || !dsc) { fprintf(stderr, "nccl_check: out of memory\n"); pl_dist_abort(1); }
    uint64_t s = 0x9e3779b97f4a7c15ull * (uint64_t)(rank + 1);
    static const float mag[] = {1e-4f, 1.0f, 3.3e2f, 1e4f};
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        h[i] = ((float)((s >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f) * mag[(i * 7 + i / 3) % 4];
    }
    be->upload(d, h, n * 4);
    int bad = 0;
    /* reduce-scatter: NCCL on the device, MPI on host copies */
    be->dist_reduce_scatter(d, n, dred, dsc);
    if (be->take_error(&err)) { fprintf(stderr, "nccl_check: rank %d: %s\n", rank, err.msg); pl_dist_abort(1); }
    if (pl_dist_reduce_scatter_f32(h, n, hred, hsc, &err)) { fprintf(stderr, "%s\n", err.msg); pl_dist_abort(1); }
    be->download(got, dred, len * 4);
    size_t diff = 0;
    for (size_t j = 0; j < len; j++) diff += memcmp(&got[j], &hred[j], 4) != 0;
    if (diff) { bad = 1; fprintf(stderr, "nccl_check: rank %d: reduce-scatter: %zu of %zu floats differ from MPI's\n", rank, diff, len); }
    /* the same reduce-scatter in pieces, queued last to first */
    enum { NB = 8 };
    size_t bounds[NB + 1];
    for (int b = 0; b <= NB; b++) bounds[b] = n * (size_t)b / NB;
    bounds[3] = bounds[2]; /* an empty piece */
    float *dred2 = be->alloc((len ? len : 1) * 4, PL_MEM_GRADIENTS);
    if (!dred2) { fprintf(stderr, "nccl_check: out of memory\n"); pl_dist_abort(1); }
    be->dist_rs_begin(d, n, bounds, NB, dred2, dsc);
    for (int b = NB - 1; b >= 0; b--) be->dist_rs_piece(b);
    be->dist_rs_end();
    if (be->take_error(&err)) { fprintf(stderr, "nccl_check: rank %d: in pieces: %s\n", rank, err.msg); pl_dist_abort(1); }
    be->download(got, dred2, len * 4);
    diff = 0;
    for (size_t j = 0; j < len; j++) diff += memcmp(&got[j], &hred[j], 4) != 0;
    if (diff) { bad = 1; fprintf(stderr, "nccl_check: rank %d: reduce-scatter in pieces: %zu of %zu floats differ from MPI's\n", rank, diff, len); }
    /* a piece never queued: an error at take_error, not a hang or a wrong sum */
    be->dist_rs_begin(d, n, bounds, NB, dred2, dsc);
    for (int b = 0; b < NB; b++)
        if (b != 5) be->dist_rs_piece(b);
    be->dist_rs_end();
    if (!be->take_error(&err) || !strstr(err.msg, "piece 5 was never sent")) {
        bad = 1;
        fprintf(stderr, "nccl_check: rank %d: a piece never queued: %s\n", rank, err.code ? err.msg : "no error");
    }
    be->free(dred2);
    /* all-gather of the reduced shards, both ways */
    memcpy(h + lo, hred, len * 4);
    be->copy(d + lo, dred, len * 4);
    be->dist_allgather(d, n);
    if (be->take_error(&err)) { fprintf(stderr, "nccl_check: rank %d: %s\n", rank, err.msg); pl_dist_abort(1); }
    if (pl_dist_allgather_f32(h, n, &err)) { fprintf(stderr, "%s\n", err.msg); pl_dist_abort(1); }
    be->download(got, d, n * 4);
    if (memcmp(got, h, n * 4)) { bad = 1; fprintf(stderr, "nccl_check: rank %d: all-gather differs from MPI's\n", rank); }
    double v = bad;
    pl_dist_allreduce_f64(&v, 1, &err);
    /* timing */
    (void)be->dist_seconds();
    for (int i = 0; i < iters; i++) {
        be->dist_reduce_scatter(d, n, dred, dsc);
        be->dist_allgather(d, n);
    }
    double tn = be->dist_seconds() / (iters > 0 ? iters : 1);
    if (be->take_error(&err)) { fprintf(stderr, "nccl_check: rank %d: %s\n", rank, err.msg); pl_dist_abort(1); }
    pl_dist_barrier(&err);
    double t0 = now_s();
    int mi = iters < 3 ? iters : 3;
    for (int i = 0; i < mi; i++) {
        pl_dist_reduce_scatter_f32(h, n, hred, hsc, &err);
        pl_dist_allgather_f32(h, n, &err);
    }
    double tm = (now_s() - t0) / (mi > 0 ? mi : 1);
    if (rank == 0) {
        double bytes = 2.0 * (double)n * 4 * (P - 1) / P; /* each rank sends and receives this much per pair */
        printf("nccl_check: %d ranks on %s, %zu floats: bits %s\n", P, pl_cuda_backend_device(), n,
               v == 0 ? "equal to MPI's (reduce-scatter, in one and in pieces, and all-gather)" : "DIFFER from MPI's");
        printf("nccl_check: reduce-scatter + all-gather: NCCL %.3f ms (%.1f GB/s per rank), MPI on host memory %.1f ms\n",
               1e3 * tn, tn > 0 ? bytes / tn / 1e9 : 0.0, 1e3 * tm);
    }
    be->dist_close(0);
    be->free(d), be->free(dred), be->free(dsc);
    free(h), free(hred), free(hsc), free(got);
    pl_dist_finalize();
    return v == 0 ? 0 : 1;
}
