/* test_gemm.c: pl_gemm (core/gemm.h).
 *
 * - Values: every transpose combination, alpha and beta, row strides wider
 *   than the rows, against a double-precision product computed here (each
 *   element within 4 K u sum|a||b|, u = 2^-24, the standard bound for a
 *   length-K float dot product in any order, plus the beta term's rounding).
 * - Edges: K = 0 (C scaled by beta; beta 0 clears NaN), M or N = 0, 1 x 1.
 * - Determinism: shapes with many tiles, and shapes at which one OpenBLAS
 *   sgemm call would split the work over threads, give the same bits at 1, 2
 *   and 3 threads, run after run, and when called from inside a parallel region.
 * - The thread count the caller set is the same after the call.
 * - Columns: a product over a block of columns that starts at a multiple of the
 *   column tile gives the same bits as the full product over those columns
 *   (cpu_linear.c relies on it for blocks of dequantized rows). */
#include <cblas.h>
#undef I
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../core/gemm.h"
#include "check.h"

static uint64_t rs = 88172645463325252ull;
static float rnd(void) {
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (float)((double)(rs >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
static float *rnd_vec(size_t n) {
    float *v = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) v[i] = rnd();
    return v;
}

static float a_at(const float *A, int ta, int lda, int i, int k) { return ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]; }
static float b_at(const float *B, int tb, int ldb, int k, int j) { return tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]; }

/* One case: checks values against double precision and returns nothing. */
static void value_case(int ta, int tb, int M, int N, int K, float alpha, float beta, int pad) {
    int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    float *A = rnd_vec((size_t)(ta ? K : M) * lda), *B = rnd_vec((size_t)(tb ? N : K) * ldb);
    float *C = rnd_vec((size_t)M * ldc), *C0 = malloc((size_t)M * ldc * sizeof(float));
    memcpy(C0, C, (size_t)M * ldc * sizeof(float));
    pl_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    const double u = ldexp(1.0, -24);
    int bad = 0, pad_ok = 1;
    double worst = 0;
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double s = 0, mag = 0;
            for (int k = 0; k < K; k++) {
                double p = (double)a_at(A, ta, lda, i, k) * b_at(B, tb, ldb, k, j);
                s += p, mag += fabs(p);
            }
            double c0 = C0[(size_t)i * ldc + j];
            double want = alpha * s + beta * c0;
            double tol = 4.0 * (K + 2) * u * (fabs(alpha) * mag + fabs(beta * c0)) + 1e-30;
            double d = fabs(C[(size_t)i * ldc + j] - want);
            if (d > tol) bad++;
            if (d / tol > worst) worst = d / tol;
        }
        for (int j = N; j < ldc; j++) pad_ok &= C[(size_t)i * ldc + j] == C0[(size_t)i * ldc + j];
    }
    CHECK(!bad, "gemm ta=%d tb=%d %dx%dx%d alpha %g beta %g pad %d: %d elements outside the rounding bound "
          "(worst at %.2f of it)", ta, tb, M, N, K, alpha, beta, pad, bad, worst);
    CHECK(pad_ok, "gemm ta=%d tb=%d %dx%dx%d: columns past N are untouched", ta, tb, M, N, K);
    free(A), free(B), free(C), free(C0);
}

static void test_values(void) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            value_case(ta, tb, 1, 1, 1, 1.0f, 0.0f, 0);
            value_case(ta, tb, 7, 13, 5, 1.0f, 0.0f, 0);
            value_case(ta, tb, 37, 200, 129, 0.5f, 1.0f, 3);
            value_case(ta, tb, 300, 260, 70, -2.0f, 0.25f, 1); /* 2 x 3 tiles, ragged */
        }
}

static void test_edges(void) {
    float A[4] = {1, 2, 3, 4}, B[4] = {5, 6, 7, 8};
    float C[4] = {NAN, 2, 3, 4};
    pl_gemm(0, 0, 2, 2, 0, 1.0f, A, 1, B, 2, 0.0f, C, 2);
    CHECK(C[0] == 0 && C[1] == 0 && C[2] == 0 && C[3] == 0, "K = 0, beta 0: C cleared (NaN too)");
    float D[4] = {1, 2, 3, 4};
    pl_gemm(0, 0, 2, 2, 0, 1.0f, A, 1, B, 2, 2.0f, D, 2);
    CHECK(D[0] == 2 && D[1] == 4 && D[2] == 6 && D[3] == 8, "K = 0, beta 2: C doubled");
    float E[4] = {9, 9, 9, 9};
    pl_gemm(0, 0, 0, 2, 2, 1.0f, A, 2, B, 2, 0.0f, E, 2);
    pl_gemm(0, 0, 2, 0, 2, 1.0f, A, 2, B, 2, 0.0f, E, 2);
    CHECK(E[0] == 9 && E[3] == 9, "M = 0 or N = 0: nothing written");
    float F[4] = {NAN, NAN, NAN, NAN};
    pl_gemm(0, 0, 2, 2, 2, 1.0f, A, 2, B, 2, 0.0f, F, 2);
    CHECK(F[0] == 19 && F[1] == 22 && F[2] == 43 && F[3] == 50, "2x2 product exact, beta 0 ignores NaN in C");
    int tm, tn, tm2, tn2;
    pl_gemm_tile(1000, 1000, &tm, &tn);
    pl_gemm_tile(1000, 1000, &tm2, &tn2);
    CHECK(tm == tm2 && tn == tn2 && tm > 0 && tn > 0 && tm <= 1000 && tn <= 1000, "tile shape is a function of M, N");
    pl_gemm_tile(3, 5, &tm, &tn);
    CHECK(tm == 3 && tn == 5, "small products are one tile");
}

typedef struct {
    int ta, tb, M, N, K;
    float *A, *B, *C0;
} det_case;

static void det_run(const det_case *d, float *C) {
    memcpy(C, d->C0, (size_t)d->M * d->N * sizeof(float));
    pl_gemm(d->ta, d->tb, d->M, d->N, d->K, 1.0f, d->A, d->ta ? d->M : d->K, d->B, d->tb ? d->K : d->N, 1.0f, C, d->N);
}

static void test_threads(void) {
    /* 300 x 700 x 520: 2 x 6 tiles, and far above OpenBLAS's threading threshold */
    int shapes[][3] = {{300, 700, 520}, {64, 576, 576}, {576, 576, 64}, {37, 200, 129}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                det_case d = {ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], NULL, NULL, NULL};
                size_t nc = (size_t)d.M * d.N;
                d.A = rnd_vec((size_t)d.M * d.K), d.B = rnd_vec((size_t)d.K * d.N), d.C0 = rnd_vec(nc);
                float *ref = malloc(nc * 4), *c = malloc(nc * 4);
                omp_set_num_threads(1);
                det_run(&d, ref);
                int same = 1, kept = 1;
                for (int nt = 1; nt <= 3; nt++) {
                    omp_set_num_threads(nt);
                    for (int rep = 0; rep < 2; rep++) {
                        det_run(&d, c);
                        same &= !memcmp(ref, c, nc * 4);
                    }
                    kept &= omp_get_max_threads() == nt;
                }
                /* from inside a parallel region: each thread its own product, on its own thread */
                omp_set_num_threads(2);
                float *c2 = malloc(nc * 4);
#pragma omp parallel num_threads(2)
                det_run(&d, omp_get_thread_num() ? c2 : c);
                same &= !memcmp(ref, c, nc * 4) && !memcmp(ref, c2, nc * 4);
                CHECK(same, "gemm ta=%d tb=%d %dx%dx%d: same bits at 1, 2, 3 threads, run to run and inside a parallel "
                      "region", ta, tb, d.M, d.N, d.K);
                CHECK(kept, "gemm: the caller's thread count is unchanged by the call");
                free(d.A), free(d.B), free(d.C0), free(ref), free(c), free(c2);
            }
    omp_set_num_threads(2);
}

/* A block of columns [j0, j0+nb) computed alone, j0 a multiple of the column
 * tile, gives the same bits as those columns of the full product. */
static void test_column_blocks(void) {
    const int M = 300, N = 700, K = 520;
    int tm, tn;
    pl_gemm_tile(M, N, &tm, &tn);
    float *A = rnd_vec((size_t)M * K), *W = rnd_vec((size_t)N * K);
    float *full = malloc((size_t)M * N * 4), *part = malloc((size_t)M * N * 4);
    pl_gemm(0, 1, M, N, K, 1.0f, A, K, W, K, 0.0f, full, N);
    for (int j0 = 0; j0 < N; j0 += 2 * tn) {
        int nb = N - j0 < 2 * tn ? N - j0 : 2 * tn;
        pl_gemm(0, 1, M, nb, K, 1.0f, A, K, W + (size_t)j0 * K, K, 0.0f, part + j0, N);
    }
    CHECK(!memcmp(full, part, (size_t)M * N * 4), "blocks of %d columns at multiples of the %d-column tile: same bits "
          "as the full product", 2 * tn, tn);
    free(A), free(W), free(full), free(part);
}

static void test_openblas_switch(void) {
    CHECK(!pl_gemm_openblas_threaded(), "tiles by default");
    pl_gemm_set_openblas_threaded(1);
    CHECK(pl_gemm_openblas_threaded(), "the benchmarks' switch turns on");
    float A[4] = {1, 2, 3, 4}, B[4] = {5, 6, 7, 8}, C[4];
    pl_gemm(0, 0, 2, 2, 2, 1.0f, A, 2, B, 2, 0.0f, C, 2);
    CHECK(C[0] == 19 && C[3] == 50, "one threaded sgemm call gives the product");
    pl_gemm_set_openblas_threaded(0);
    CHECK(!pl_gemm_openblas_threaded(), "and off");
}

int main(void) {
    /* which OpenBLAS kernel ran (tests/cli_openblas_kernels.sh checks it) */
    printf("note: OpenBLAS kernel: %s\n", openblas_get_corename());
    omp_set_num_threads(2);
    test_values();
    test_edges();
    test_threads();
    test_column_blocks();
    test_openblas_switch();
    return check_summary("test_gemm");
}
