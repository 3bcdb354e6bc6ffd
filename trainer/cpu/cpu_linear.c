/* cpu_linear.c: linear layers on the CPU, fp32 weights and weights in any dequantizable dtype.
 *
 * linear (fp32 w):
 *   T == 1  our own OpenMP matvec: output o = pl_dot(w[o], x), one output per
 *           thread, so the bits do not depend on the thread count.
 *   T > 1   pl_gemm (core/gemm.h): OpenBLAS sgemm on output tiles that we,
 *           not OpenBLAS, hand to threads. Thread-count independent bits.
 *
 * linear_q (pl_qweight):
 *   F32          -> linear above.
 *   T < PL_CPU_LINQ_DOT_MAX_T (generation): OpenMP over output rows; each row's
 *           quantized bytes are read once and dotted with all T inputs by
 *           pl_vec_dot_f32 (core/quant.c). Thread-count independent bits.
 *   otherwise: blocks of rows are dequantized into the workspace (in parallel,
 *           one row per thread) and multiplied with pl_gemm outside any
 *           parallel region. Blocks of 128 or more rows are whole multiples of
 *           pl_gemm's column tile, so an F32 weight and the same values in
 *           another dtype give the same bits at T >= PL_CPU_LINQ_DOT_MAX_T. */
#include <math.h>
#include <omp.h>
#include <string.h>
#include "../../core/gemm.h"
#include "../../core/quant.h"
#include "../ops_math.h"
#include "cpu_int.h"

/* Rows of weight dequantized per sgemm call: about 1M floats (4 MB) of
 * workspace, kept within [64, 256] rows. */
#define LINQ_WS_FLOATS ((int64_t)1 << 20)
static int64_t linq_block_rows(int64_t cols) {
    int64_t r = cols > 0 ? LINQ_WS_FLOATS / cols : 256;
    if (r < 64) r = 64;
    if (r > 256) r = 256;
    if (r >= 128) r = r / 128 * 128; /* whole column tiles of pl_gemm */
    return r;
}

/* At least linq_block_rows(cols) * cols, and never smaller for wider cols, so
 * one buffer sized for a model's widest weight serves every linear_q call:
 * 256 * cols up to 4096 columns, then 1M floats, then 64 * cols past 16384. */
size_t pl_cpu_linear_q_workspace(int64_t cols) {
    if (cols <= 0) return 0;
    if (cols <= LINQ_WS_FLOATS / 256) return (size_t)(256 * cols);
    return (size_t)(64 * cols > LINQ_WS_FLOATS ? 64 * cols : LINQ_WS_FLOATS);
}

int pl_qweight_row(const pl_qweight *w, int64_t r, float *dst) {
    if (r < 0 || r >= w->rows) return -1;
    if (w->aux) return w->aux->row(w, r, dst);
    return pl_dequantize_row(w->dtype, (const unsigned char *)w->data + (size_t)r * w->row_bytes, dst, w->cols);
}

/* out (T,O) rows all set to bias (O), the sgemm then adds with beta = 1. */
static void fill_bias(float *out, const float *bias, int T, int O) {
    for (int t = 0; t < T; t++) memcpy(out + (size_t)t * O, bias, (size_t)O * sizeof(float));
}

/* out (T,O) = x (T,I) . w (O,I)^T + bias (O) or NULL. */
void pl_cpu_linear(float *out, const float *x, const float *w, const float *bias, int T, int I, int O) {
    if (T <= 0 || O <= 0) return;
    if (I <= 0) { /* empty sum; also keeps sgemm from rejecting lda = 0 */
        for (size_t i = 0; i < (size_t)T * O; i++) out[i] = bias ? bias[i % O] : 0.0f;
        return;
    }
    if (T == 1) {
#pragma omp parallel for schedule(static) if ((long)O * I >= PL_CPU_PAR_MIN)
        for (int o = 0; o < O; o++) {
            float y = pl_dot(w + (size_t)o * I, x, I);
            out[o] = bias ? y + bias[o] : y;
        }
        return;
    }
    if (bias) fill_bias(out, bias, T, O);
    pl_gemm(0, 1, T, O, I, 1.0f, x, I, w, I, bias ? 1.0f : 0.0f, out, O);
}

/* out (T,O) = x (T,I) . dequant(w) (O,I)^T + bias; I = w->cols, O = w->rows.
 * workspace holds pl_cpu_linear_q_workspace(I) floats (unused on the dot path). */
void pl_cpu_linear_q(float *out, const float *x, const pl_qweight *w, const float *bias, int T,
                     float *workspace) {
    const int I = (int)w->cols, O = (int)w->rows;
    if (T <= 0 || O <= 0) return;
    if (w->dtype == PL_F32 || I <= 0) {
        pl_cpu_linear(out, x, (const float *)w->data, bias, T, I, O);
        return;
    }
    if (!w->aux && !pl_dtype_can_dequantize(w->dtype)) {
        for (size_t i = 0; i < (size_t)T * O; i++) out[i] = NAN;
        pl_cpu_fail(PL_EUNSUPPORTED, "linear: weight rows of type %s cannot be read", pl_dtype_name(w->dtype));
        return;
    }
    const unsigned char *base = w->data;
    const size_t rb = w->row_bytes;
    if (T < PL_CPU_LINQ_DOT_MAX_T && w->aux) {
        /* a format read only through its row function: each thread
         * dequantizes a row into its own slice of the workspace (at most 64
         * threads, which pl_cpu_linear_q_workspace provides for), then dots */
        int nt = omp_get_max_threads();
        if (nt > 64) nt = 64;
#pragma omp parallel for schedule(static) num_threads(nt) if ((long)O * I >= PL_CPU_PAR_MIN)
        for (int o = 0; o < O; o++) {
            float b = bias ? bias[o] : 0.0f, y[PL_CPU_LINQ_DOT_MAX_T];
            float *wr = workspace + (size_t)omp_get_thread_num() * (size_t)I;
            if (pl_qweight_row(w, o, wr) != 0) {
                for (int c = 0; c < I; c++) wr[c] = NAN;
                pl_cpu_fail(PL_EUNSUPPORTED, "linear: weight rows of type %s cannot be read", pl_dtype_name(w->dtype));
            }
            pl_vec_dot_f32_multi(PL_F32, wr, x, (size_t)I, T, I, y);
            for (int t = 0; t < T; t++) out[(size_t)t * O + o] = y[t] + b;
        }
        return;
    }
    if (T < PL_CPU_LINQ_DOT_MAX_T) {
        /* out[t, o] for all t from one pass over row o */
#pragma omp parallel for schedule(static) if ((long)O * I >= PL_CPU_PAR_MIN)
        for (int o = 0; o < O; o++) {
            const void *row = base + (size_t)o * rb;
            float b = bias ? bias[o] : 0.0f, y[PL_CPU_LINQ_DOT_MAX_T];
            /* each quantized block is unpacked once for two inputs; same bits as one dot per input */
            pl_vec_dot_f32_multi(w->dtype, row, x, (size_t)I, T, I, y);
            for (int t = 0; t < T; t++) out[(size_t)t * O + o] = y[t] + b;
        }
        return;
    }
    if (bias) fill_bias(out, bias, T, O);
    /* Fused, when the workspace holds a column tile of pl_gemm per thread: each
     * thread dequantizes the weight rows of one column tile into its own slice
     * and multiplies them at once (one team for the whole product, the rows
     * still in cache). The calls are pl_gemm's own tiles, so the bits are
     * those of the block path below and of an F32 weight. */
    int tm, tn;
    pl_gemm_tile(T, O, &tm, &tn);
    const int slots = (int)(pl_cpu_linear_q_workspace(I) / ((size_t)tn * (size_t)I));
    const int nt = omp_get_max_threads(), ntn = (O + tn - 1) / tn;
    if (nt <= slots && !pl_gemm_openblas_threaded()) {
#pragma omp parallel num_threads(nt < ntn ? nt : ntn)
        {
            float *wsl = workspace + (size_t)omp_get_thread_num() * (size_t)tn * (size_t)I;
#pragma omp for schedule(dynamic, 1)
            for (int j = 0; j < ntn; j++) {
                const int r0 = j * tn, nb = O - r0 < tn ? O - r0 : tn;
                for (int r = 0; r < nb; r++)
                    if (pl_qweight_row(w, r0 + r, wsl + (size_t)r * I) != 0) {
                        for (int c = 0; c < I; c++) wsl[(size_t)r * I + c] = NAN;
                        pl_cpu_fail(PL_EUNSUPPORTED, "linear: weight rows of type %s cannot be read",
                                    pl_dtype_name(w->dtype));
                    }
                /* one column tile of pl_gemm (inside the team: on this thread) */
                pl_gemm(0, 1, T, nb, I, 1.0f, x, I, wsl, I, bias ? 1.0f : 0.0f, out + r0, O);
            }
        }
        return;
    }
    const int64_t blk = linq_block_rows(I);
    for (int64_t r0 = 0; r0 < O; r0 += blk) {
        const int nb = (int)(O - r0 < blk ? O - r0 : blk);
        /* workspace (nb, I) = dequant(w[r0 : r0+nb]) */
#pragma omp parallel for schedule(static) if ((long)nb * I >= PL_CPU_PAR_MIN)
        for (int r = 0; r < nb; r++) {
            float *dst = workspace + (size_t)r * I;
            if (pl_qweight_row(w, r0 + r, dst) != 0) {
                for (int c = 0; c < I; c++) dst[c] = NAN;
                pl_cpu_fail(PL_EUNSUPPORTED, "linear: weight rows of type %s cannot be read", pl_dtype_name(w->dtype));
            }
        }
        /* out[:, r0 : r0+nb] (T, nb; row stride O) (+)= x . workspace^T */
        pl_gemm(0, 1, T, nb, I, 1.0f, x, I, workspace, I, bias ? 1.0f : 0.0f, out + r0, O);
    }
}
