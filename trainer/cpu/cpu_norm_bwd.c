/* cpu_norm_bwd.c: RMSNorm's backward on the CPU.
 *
 * Rows are processed in chunks of NORM_CHUNK. For each chunk, in one parallel
 * region:
 *   1. each row's scale r = 1/sqrt(mean(x^2) + eps) (as the forward), one row per thread;
 *   2. dw: each thread owns a range of columns and adds the chunk's rows in
 *      row order (so every dw element is summed in token order by one thread);
 *   3. dx, one row per thread (after 2, since dx may alias dout).
 * Nothing is allocated; the bits do not depend on the thread count. */
#include "../ops_math.h"
#include "cpu_int.h"

#define NORM_CHUNK 256
#define NORM_COLS 16 /* dw columns per work item: one cache line */

/* dx (T,C) = ; dw (C) += ; dout (T,C), x (T,C), w (C) as in the forward. dx may alias dout. */
void pl_cpu_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x, const float *w, int T, int C,
                        float eps) {
    if (T <= 0 || C <= 0) return;
    float r[NORM_CHUNK];
    const int ncb = (C + NORM_COLS - 1) / NORM_COLS;
    for (int t0 = 0; t0 < T; t0 += NORM_CHUNK) {
        const int n = T - t0 < NORM_CHUNK ? T - t0 : NORM_CHUNK;
        const float *xc = x + (size_t)t0 * C, *dc = dout + (size_t)t0 * C;
#pragma omp parallel if ((long)n * C >= PL_CPU_PAR_MIN)
        {
#pragma omp for schedule(static)
            for (int i = 0; i < n; i++) r[i] = pl_rmsnorm_scale(pl_sumsq(xc + (size_t)i * C, C), C, eps);
            if (dw) {
#pragma omp for schedule(static)
                for (int b = 0; b < ncb; b++) {
                    const int c0 = b * NORM_COLS, c1 = c0 + NORM_COLS < C ? c0 + NORM_COLS : C;
                    for (int i = 0; i < n; i++)
                        for (int c = c0; c < c1; c++)
                            dw[c] += pl_rmsnorm_dw_term(dc[(size_t)i * C + c], xc[(size_t)i * C + c], r[i]);
                }
            }
            if (dx) {
#pragma omp for schedule(static)
                for (int i = 0; i < n; i++)
                    pl_rmsnorm_bwd_row(dx + (size_t)(t0 + i) * C, dc + (size_t)i * C, xc + (size_t)i * C, w, C, r[i]);
            }
        }
    }
}
