/* cpu_optim.c: the optimizer's elementwise ops on the CPU: sum of squares (grad norm), scale, AdamW.
 *
 * AdamW is torch.optim.AdamW (decoupled weight decay), element by element
 * (pl_adamw_elem in ops_math.h):
 *   p  <- p (1 - lr wd)
 *   m  <- b1 m + (1 - b1) g               (computed as torch's lerp, a fused multiply-add)
 *   v  <- b2 v + (1 - b2) g^2             (a fused multiply-add, as torch's addcmul)
 *   p  <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * which is p - lr (mhat / (sqrt(vhat) + eps) + wd p_old) with mhat, vhat the
 * bias-corrected moments. All three ops are elementwise or reduce in a fixed
 * order, so their bits do not depend on the thread count. */
#include "../ops_math.h"
#include "cpu_int.h"

/* sumsq: the input is cut into SUMSQ_CHUNK-element chunks, each summed in
 * double by one thread (4 lanes, fixed combination); the chunk sums are added
 * in chunk order. Up to SUMSQ_GROUP chunks run per parallel pass (stack slots). */
#define SUMSQ_CHUNK 4096
#define SUMSQ_GROUP 256

static double sumsq_chunk(const float *x, size_t n) {
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        a0 += (double)x[i] * x[i];
        a1 += (double)x[i + 1] * x[i + 1];
        a2 += (double)x[i + 2] * x[i + 2];
        a3 += (double)x[i + 3] * x[i + 3];
    }
    for (; i < n; i++) a0 += (double)x[i] * x[i];
    return (a0 + a1) + (a2 + a3);
}

double pl_cpu_sumsq(const float *x, size_t n) {
    double total = 0.0, part[SUMSQ_GROUP];
    const size_t nchunks = (n + SUMSQ_CHUNK - 1) / SUMSQ_CHUNK;
    for (size_t g0 = 0; g0 < nchunks; g0 += SUMSQ_GROUP) {
        const int ng = (int)(nchunks - g0 < SUMSQ_GROUP ? nchunks - g0 : SUMSQ_GROUP);
#pragma omp parallel for schedule(static) if (ng > 1 && (size_t)ng * SUMSQ_CHUNK >= PL_CPU_PAR_MIN)
        for (int c = 0; c < ng; c++) {
            size_t s = (g0 + (size_t)c) * SUMSQ_CHUNK;
            size_t len = n - s < SUMSQ_CHUNK ? n - s : SUMSQ_CHUNK;
            part[c] = sumsq_chunk(x + s, len);
        }
        for (int c = 0; c < ng; c++) total += part[c];
    }
    return total;
}

/* x[i] *= s */
void pl_cpu_scale(float *x, float s, size_t n) {
#pragma omp parallel for schedule(static) if (n >= PL_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

/* One AdamW step on n parameters p with gradients g and moments m, v; t is the 1-based step. */
void pl_cpu_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2,
                  float eps, float wd, int t) {
    const pl_adamw_k k = pl_adamw_consts(lr, beta1, beta2, eps, wd, t);
#pragma omp parallel for schedule(static) if (n >= PL_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) pl_adamw_elem(&p[i], g[i], &m[i], &v[i], &k);
}
