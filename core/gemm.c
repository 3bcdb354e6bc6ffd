/* gemm.c: pl_gemm, tiles of the output owned by one thread each (gemm.h).
 *
 * Each tile is one cblas_sgemm call that OpenBLAS runs on one thread: the
 * OpenMP build of OpenBLAS sizes its team from omp_get_max_threads() and runs
 * single-threaded inside an active parallel region, so every tile call is made
 * either from inside our team or, on one thread, with the thread count set to
 * 1 around it. Tile shapes depend on (M, N) only: GEMM_TM rows by GEMM_TN
 * columns, cut from the top left, the last row and column of tiles narrower.
 *
 * 256 x 128 tiles keep OpenBLAS's packing overhead to about (1/256 + 1/128)
 * of the multiply work and give even the 576-wide layers of a small model five
 * column tiles to share between threads (make bench measures the cost against
 * one threaded sgemm call: bench/gemm_bench.sh). */
#include "gemm.h"

#include <cblas.h>
#include <omp.h>
#include <stddef.h>

#define GEMM_TM 256
#define GEMM_TN 128

static int g_openblas_threaded;

void pl_gemm_set_openblas_threaded(int on) { g_openblas_threaded = on != 0; }
int pl_gemm_openblas_threaded(void) { return g_openblas_threaded; }

void pl_gemm_tile(int M, int N, int *tm, int *tn) {
    *tm = M < GEMM_TM ? M : GEMM_TM;
    *tn = N < GEMM_TN ? N : GEMM_TN;
}

typedef struct {
    int ta, tb, M, N, K, lda, ldb, ldc, tm, tn, tiles_n;
    float alpha, beta;
    const float *A, *B;
    float *C;
} gemm_job;

/* Tile t (row-major over the tile grid) as one sgemm call. */
static void gemm_tile(const gemm_job *j, int t) {
    const int i0 = (t / j->tiles_n) * j->tm, j0 = (t % j->tiles_n) * j->tn;
    const int m = j->M - i0 < j->tm ? j->M - i0 : j->tm, n = j->N - j0 < j->tn ? j->N - j0 : j->tn;
    /* rows i0.. of op(A): A's rows when not transposed, its columns when transposed */
    const float *a = j->ta ? j->A + i0 : j->A + (size_t)i0 * j->lda;
    /* columns j0.. of op(B): B's columns when not transposed, its rows when transposed */
    const float *b = j->tb ? j->B + (size_t)j0 * j->ldb : j->B + j0;
    cblas_sgemm(CblasRowMajor, j->ta ? CblasTrans : CblasNoTrans, j->tb ? CblasTrans : CblasNoTrans, m, n, j->K,
                j->alpha, a, j->lda, b, j->ldb, j->beta, j->C + (size_t)i0 * j->ldc + j0, j->ldc);
}

void pl_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
             int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* an empty sum: sgemm would reject lda = 0 */
        for (int i = 0; i < M; i++)
            for (int k = 0; k < N; k++) {
                float *c = C + (size_t)i * ldc + k;
                *c = beta == 0.0f ? 0.0f : beta * *c;
            }
        return;
    }
    if (g_openblas_threaded) {
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K,
                    alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    gemm_job j = {.ta = trans_a != 0, .tb = trans_b != 0, .M = M, .N = N, .K = K, .lda = lda, .ldb = ldb,
                  .ldc = ldc, .alpha = alpha, .beta = beta, .A = A, .B = B, .C = C};
    pl_gemm_tile(M, N, &j.tm, &j.tn);
    j.tiles_n = (N + j.tn - 1) / j.tn;
    const int tiles = ((M + j.tm - 1) / j.tm) * j.tiles_n;
    const int nt = omp_get_max_threads();
    if (omp_in_parallel() || tiles == 1 || nt == 1) {
        /* on this thread: OpenBLAS must not fork a team of its own */
        const int saved = omp_get_max_threads();
        if (saved != 1) omp_set_num_threads(1);
        for (int t = 0; t < tiles; t++) gemm_tile(&j, t);
        if (saved != 1) omp_set_num_threads(saved);
        return;
    }
#pragma omp parallel num_threads(nt < tiles ? nt : tiles)
    {
        /* this implicit task's own setting: OpenBLAS runs each tile on this thread
         * even if the runtime handed us a team of one */
        omp_set_num_threads(1);
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < tiles; t++) gemm_tile(&j, t);
    }
}
