/* cpu_linear_bwd.c: the linear layers' backward on the CPU.
 *
 * linear_bwd (fp32 w), out = x . w^T + bias:
 *   dx (T,I)  = dout (T,O) . w (O,I)        pl_gemm, beta 0
 *   dw (O,I) += dout^T (O,T) . x (T,I)      pl_gemm, beta 1
 *   dbias (O) += column sums of dout        our loop: each thread owns a range
 *                                           of columns, rows added in order
 * linear_q_bwd_x (frozen weight in any dtype): blocks of weight rows are
 * dequantized into the workspace (one row per thread, as linear_q does) and
 *   dx (+)= dout[:, r0:r0+nb] (T,nb) . workspace (nb,I)
 * with beta 0 for the first block and 1 after, so dx is overwritten.
 *
 * pl_gemm (core/gemm.h) splits every product over threads by output tiles of
 * a fixed shape, so the bits are the same at any thread count
 * (tests/test_cpu_backward.c checks 1, 2 and 3 threads). */
#include <math.h>
#include <string.h>
#include "../../core/gemm.h"
#include "../../core/quant.h"
#include "cpu_int.h"

#define LIN_COLS 16 /* dbias columns per work item: one cache line */

/* dx (T,I) = dout (T,O) . w (O,I) or NULL; dw (O,I) += dout^T . x or NULL;
 * dbias (O) += sum over rows of dout, or NULL. */
void pl_cpu_linear_bwd(float *dx, float *dw, float *dbias, const float *dout, const float *x, const float *w,
                       int T, int I, int O) {
    if (T <= 0) return;
    if (dx && I > 0) {
        if (O <= 0) /* empty sum; also keeps sgemm from rejecting lda = 0 */
            memset(dx, 0, (size_t)T * I * sizeof(float));
        else
            pl_gemm(0, 0, T, I, O, 1.0f, dout, O, w, I, 0.0f, dx, I);
    }
    if (dw && I > 0 && O > 0)
        pl_gemm(1, 0, O, I, T, 1.0f, dout, O, x, I, 1.0f, dw, I);
    if (dbias && O > 0) {
        const int nb = (O + LIN_COLS - 1) / LIN_COLS;
#pragma omp parallel for schedule(static) if ((long)T * O >= PL_CPU_PAR_MIN)
        for (int b = 0; b < nb; b++) {
            const int c0 = b * LIN_COLS, c1 = c0 + LIN_COLS < O ? c0 + LIN_COLS : O;
            for (int t = 0; t < T; t++) {
                const float *row = dout + (size_t)t * O;
                for (int c = c0; c < c1; c++) dbias[c] += row[c];
            }
        }
    }
}

/* dx (T, I) = dout (T, O) . dequant(w) (O, I); I = w->cols, O = w->rows.
 * workspace holds pl_cpu_linear_q_workspace(I) floats (unused for F32). */
void pl_cpu_linear_q_bwd_x(float *dx, const float *dout, const pl_qweight *w, int T, float *workspace) {
    const int I = (int)w->cols, O = (int)w->rows;
    if (T <= 0 || I <= 0) return;
    if (O <= 0) {
        memset(dx, 0, (size_t)T * I * sizeof(float));
        return;
    }
    if (!w->aux && w->dtype != PL_F32 && !pl_dtype_can_dequantize(w->dtype)) {
        for (size_t i = 0; i < (size_t)T * I; i++) dx[i] = NAN;
        pl_cpu_fail(PL_EUNSUPPORTED, "linear backward: weight rows of type %s cannot be read", pl_dtype_name(w->dtype));
        return;
    }
    if (w->dtype == PL_F32) {
        pl_gemm(0, 0, T, I, O, 1.0f, dout, O, (const float *)w->data, I, 0.0f, dx, I);
        return;
    }
    /* as many rows as the workspace holds, at most 256 per block */
    int64_t blk = (int64_t)(pl_cpu_linear_q_workspace(I) / (size_t)I);
    if (blk > 256) blk = 256;
    if (blk < 1) blk = 1;
    for (int64_t r0 = 0; r0 < O; r0 += blk) {
        const int nb = (int)(O - r0 < blk ? O - r0 : blk);
        /* workspace (nb, I) = dequant(w[r0 : r0+nb]) */
#pragma omp parallel for schedule(static) if ((long)nb * I >= PL_CPU_PAR_MIN)
        for (int r = 0; r < nb; r++) {
            float *dst = workspace + (size_t)r * I;
            if (pl_qweight_row(w, r0 + r, dst) != 0) {
                for (int c = 0; c < I; c++) dst[c] = NAN;
                pl_cpu_fail(PL_EUNSUPPORTED, "linear backward: weight rows of type %s cannot be read",
                            pl_dtype_name(w->dtype));
            }
        }
        /* dx (T, I) (+)= dout[:, r0 : r0+nb] (T, nb; row stride O) . workspace (nb, I) */
        pl_gemm(0, 0, T, I, nb, 1.0f, dout + r0, O, workspace, I, r0 == 0 ? 0.0f : 1.0f, dx, I);
    }
}
