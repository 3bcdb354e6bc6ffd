/* cpu_loss.c: cross-entropy of logits against target ids on the CPU. */
#include <math.h>
#include "../ops_math.h"
#include "cpu_int.h"

/* Rows per parallel pass when the caller gives no losses buffer: the per-row
 * values go to a stack chunk and are summed in row order after each pass. */
#define CE_CHUNK 256

/* Loss of row t: 0 for an ignored row (target < 0); NaN for a target >= V (a
 * caller bug, made visible in the sum rather than read out of bounds). */
static float ce_row(const float *logits, int32_t target, int V) {
    if (target < 0) return 0.0f;
    if (target >= V) return NAN;
    return pl_cross_entropy_row(logits, V, target);
}

/* logits (T,V), targets (T); losses (T) or NULL. Rows are computed in
 * parallel (one row per thread), then summed in row order in double, so the
 * result has the same bits for any thread count. */
double pl_cpu_cross_entropy(const float *logits, const int32_t *targets, int T, int V, float *losses,
                            int64_t *n_valid) {
    double sum = 0.0;
    int64_t nv = 0;
    float chunk[CE_CHUNK];
    for (int t0 = 0; t0 < T; t0 += CE_CHUNK) {
        int n = T - t0 < CE_CHUNK ? T - t0 : CE_CHUNK;
        float *l = losses ? losses + t0 : chunk;
#pragma omp parallel for schedule(static) if ((long)n * V >= PL_CPU_PAR_MIN)
        for (int i = 0; i < n; i++) l[i] = ce_row(logits + (size_t)(t0 + i) * V, targets[t0 + i], V);
        for (int i = 0; i < n; i++) {
            if (targets[t0 + i] < 0) continue;
            sum += (double)l[i];
            nv++;
        }
    }
    if (n_valid) *n_valid = nv;
    return sum;
}
