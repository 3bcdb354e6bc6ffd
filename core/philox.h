/* philox.h: Philox4x32-10 (Salmon et al., SC 2011; Random123's philox4x32_R(10)),
 * as a host and device inline function: core/rng.c's generator and the CUDA
 * kernels' dropout (trainer/ops_math.h) are this one function.
 *
 * potluck's mapping of (seed, stream, index) onto key and counter (fixed:
 * changing it changes every random choice of every run):
 *   key = (seed & 0xffffffff, seed >> 32)
 *   ctr = (index & 0xffffffff, index >> 32, stream & 0xffffffff, stream >> 32) */
#ifndef PL_PHILOX_H
#define PL_PHILOX_H

#include <math.h>
#include <stdint.h>

#include "hd.h"

static inline PL_HD void pl_philox4(uint64_t seed, uint64_t stream, uint64_t index, uint32_t out[4]) {
    uint32_t c0 = (uint32_t)index, c1 = (uint32_t)(index >> 32), c2 = (uint32_t)stream,
             c3 = (uint32_t)(stream >> 32);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        if (r > 0) { /* Weyl key schedule */
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0, hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* A standard normal from counter (seed, stream, index): Box-Muller on the first
 * two words, u1 = (w[0] + 1) * 2^-32 in (0, 1], u2 = w[1] * 2^-32 in [0, 1),
 * sqrt(-2 ln u1) * cos(2 pi u2) in double, rounded once to float. core/rng.c's
 * pl_rng_normal and the CUDA random init (trainer/cuda/nf4_init.cu) are this
 * function. Every step is one IEEE operation except log and cos: the host's
 * libm and CUDA's (within 1 and 2 ulp in double) can differ in the last bit of
 * the double, which changes the float only when the double lies that close to
 * a float rounding boundary. The emulator uses the host's libm. */
static inline PL_HD float pl_philox_normal(uint64_t seed, uint64_t stream, uint64_t index) {
    uint32_t w[4];
    pl_philox4(seed, stream, index, w);
    double u1 = ((double)w[0] + 1.0) * 0x1.0p-32; /* (0, 1]: log never sees 0 */
    double u2 = (double)w[1] * 0x1.0p-32;         /* [0, 1) */
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

#endif
