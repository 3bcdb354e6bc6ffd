/* cpu_norm.c: RMSNorm on the CPU, one row per OpenMP iteration. */
#include "../ops_math.h"
#include "cpu_int.h"

/* out (T,C) = x (T,C) / sqrt(mean(x^2) + eps) * w (C); out may alias x.
 * Each row belongs to one thread, so the bits do not depend on the thread count. */
void pl_cpu_rmsnorm(float *out, const float *x, const float *w, int T, int C, float eps) {
#pragma omp parallel for schedule(static) if ((long)T * C >= PL_CPU_PAR_MIN)
    for (int t = 0; t < T; t++) pl_rmsnorm_row(out + (size_t)t * C, x + (size_t)t * C, w, C, eps);
}
