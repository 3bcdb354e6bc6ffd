/* cpu_loss_bwd.c: cross-entropy's backward on the CPU, one row per OpenMP iteration. */
#include <math.h>
#include "../ops_math.h"
#include "cpu_int.h"

/* dlogits (T,V) = scale * (softmax(logits) - onehot(target)) for rows with
 * 0 <= target < V; zeros for ignored rows (target < 0); NaN for a target >= V
 * (a caller bug, made visible as in the forward). dlogits may alias logits. */
void pl_cpu_cross_entropy_bwd(float *dlogits, const float *logits, const int32_t *targets, int T, int V,
                              float scale) {
    if (T <= 0 || V <= 0) return;
#pragma omp parallel for schedule(static) if ((long)T * V >= PL_CPU_PAR_MIN)
    for (int t = 0; t < T; t++) {
        float *dl = dlogits + (size_t)t * V;
        const int32_t tg = targets[t];
        if (tg < 0 || tg >= V) {
            const float f = tg < 0 ? 0.0f : NAN;
            for (int i = 0; i < V; i++) dl[i] = f;
            continue;
        }
        pl_cross_entropy_bwd_row(dl, logits + (size_t)t * V, V, tg, scale);
    }
}
