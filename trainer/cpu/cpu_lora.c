/* cpu_lora.c: LoRA's forward and backward ops (backend.h's lora_fwd and
 * lora_bwd) from the CPU's linear ops, and the embedding of a table in any
 * dtype. */
#include <string.h>

#include "../../core/quant.h"
#include "cpu_int.h"

void pl_cpu_embedding_q(float *out, const int32_t *ids, const pl_qweight *table, int T) {
    for (int t = 0; t < T; t++)
        if (pl_qweight_row(table, ids[t], out + (size_t)t * (size_t)table->cols) != 0) {
            for (size_t i = 0; i < (size_t)T * (size_t)table->cols; i++) out[i] = __builtin_nanf("");
            pl_cpu_fail(PL_EUNSUPPORTED, "embedding: cannot read rows of dtype %s", pl_dtype_name(table->dtype));
            return;
        }
}

void pl_cpu_lora_fwd(float *y, float *xa, const float *u, const float *A, const float *B, int T, int I, int O, int r,
                     float scale, float *tmp) {
    pl_cpu_linear(xa, u, A, NULL, T, I, r);  /* xa (T,r) */
    pl_cpu_linear(tmp, xa, B, NULL, T, r, O); /* (T,O) */
    pl_cpu_scale(tmp, scale, (size_t)T * O);
    pl_cpu_add(y, y, tmp, (size_t)T * O);
}

void pl_cpu_lora_bwd(float *dx, int accumulate, float *gA, float *gB, const float *dout, const float *u,
                     const float *xa, const float *A, const float *B, int T, int I, int O, int r, float scale,
                     float *tmp, float *dxa, float *du) {
    memcpy(tmp, dout, (size_t)T * O * sizeof(float));
    pl_cpu_scale(tmp, scale, (size_t)T * O); /* dy (T,O) */
    pl_cpu_linear_bwd(dxa, gB, NULL, tmp, xa, B, T, r, O);
    if (accumulate) {
        pl_cpu_linear_bwd(du, gA, NULL, dxa, u, A, T, I, r);
        pl_cpu_add(dx, dx, du, (size_t)T * I);
    } else {
        pl_cpu_linear_bwd(dx, gA, NULL, dxa, u, A, T, I, r);
    }
}
