/* cpu_dropout.c: the dropout op (backend.h), LoRA's input dropout. */
#include <string.h>

#include "../ops_math.h"
#include "cpu_int.h"

/* An element is dropped when a 16-bit draw is below p * 65536 (p is resolved
 * to 1/65536): each Philox call (four 32-bit words) serves a group of 8
 * elements, owned by one thread; element e of the tensor is draw e % 8 of
 * call e / 8 (first, the slice's first element, is a multiple of 8). The CUDA kernel (trainer/cuda/convert.cu)
 * draws the same words. */
void pl_cpu_dropout(float *dst, const float *src, size_t n, float p, uint64_t seed, uint64_t stream, uint64_t first) {
    if (!(p > 0)) {
        if (dst != src) memcpy(dst, src, n * sizeof(float));
        return;
    }
    const uint32_t thr = pl_dropout_threshold(p);
    const float keep_scale = 1.0f / (1.0f - p);
    const long ngroups = (long)((n + 7) / 8);
#pragma omp parallel for schedule(static) if (ngroups >= 2048)
    for (long g = 0; g < ngroups; g++) {
        uint32_t w[4];
        pl_philox4(seed, stream, first / 8 + (uint64_t)g, w);
        for (int k = 0; k < 8; k++) {
            size_t e = (size_t)g * 8 + (size_t)k;
            if (e >= n) break;
            dst[e] = pl_dropout_draw(w, k) >= thr ? src[e] * keep_scale : 0.0f;
        }
    }
}
