/* cpu_embedding_bwd.c: the token embedding's backward (scatter-add into the table gradient) on the CPU.
 *
 * Several tokens may share an id, so rows of dtable receive sums. Each thread
 * owns a fixed range of columns and scans all tokens in order: every element
 * of dtable is updated by exactly one thread, in token order, so the bits do
 * not depend on the thread count (and no vocabulary size is needed). */
#include <omp.h>
#include "cpu_int.h"

/* Columns per work item: 16 floats = one 64-byte cache line, so two threads
 * never write the same line of a row. */
#define EMB_COLS 16

/* dtable (V,C) += dout (T,C) scattered by ids (T); the caller has checked 0 <= ids[t] < V. */
void pl_cpu_embedding_bwd(float *dtable, const int32_t *ids, const float *dout, int T, int C) {
    if (T <= 0 || C <= 0) return;
    const int nblk = (C + EMB_COLS - 1) / EMB_COLS;
#pragma omp parallel for schedule(static) if ((long)T * C >= PL_CPU_PAR_MIN)
    for (int b = 0; b < nblk; b++) {
        const int c0 = b * EMB_COLS, c1 = c0 + EMB_COLS < C ? c0 + EMB_COLS : C;
        for (int t = 0; t < T; t++) {
            float *dst = dtable + (size_t)ids[t] * C;
            const float *src = dout + (size_t)t * C;
            for (int c = c0; c < c1; c++) dst[c] += src[c];
        }
    }
}
