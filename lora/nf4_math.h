/* nf4_math.h: the per-value steps of NF4 quantization (lora/nf4.c) as
 * inline functions for the host and the device (PL_HD), so the CPU quantizer
 * and the CUDA random init (trainer/cuda/nf4_init.cu) are one source:
 *  - pl_nf4_code_index: a scaled value's 4-bit code (the fp32 midpoints
 *    strictly below it: torch.bucketize, right=False);
 *  - pl_nf4_dyn_bin / pl_nf4_dyn_bin_value / pl_nf4_dyn_count: the nested
 *    8-bit code of bitsandbytes' CPU quantizer, which bins the scaled value
 *    into 65536 bins and gives each bin the number of dynamic-map midpoints
 *    strictly below the bin's value (the CPU builds that table once per map;
 *    the device counts per value, the same number);
 *  - pl_nf4_tsum: torch's single-thread CPU cascade sum of a float vector
 *    (the double quantization's offset is its mean), a fixed order of fp32
 *    additions.
 * Every expression is plain fp32 additions, multiplications and divisions
 * with no multiply-add that a compiler may fuse (nvcc contracts a * b + c),
 * except the one fmaf that bitsandbytes itself computes fused. See lora/nf4.c
 * for where each rule comes from. */
#ifndef PL_NF4_MATH_H
#define PL_NF4_MATH_H

#include <math.h>
#include <stdint.h>

#include "../core/hd.h"

#define PL_NF4_DYN_BINS 65536

/* The 4-bit code of s (already scaled by 1/absmax and clamped to [-1, 1]):
 * the number of the 15 fp32 midpoints (code[k] + code[k+1]) / 2 below it. */
static inline PL_HD int pl_nf4_code_index(float s, const float mid[15]) {
    int i = 0;
    for (int k = 0; k < 15; k++) i += mid[k] < s;
    return i;
}

/* The bin of a value already scaled by its nested block's 1 / absmax: clamp
 * to [-1, 1], then trunc(fma((v + 1) * 0.5, 65535, 0.5)). */
static inline PL_HD int pl_nf4_dyn_bin(float v) {
    v = v < -1.0f ? -1.0f : 1.0f < v ? 1.0f : v;
    const float t = fmaf((v + 1.0f) * 0.5f, (float)(PL_NF4_DYN_BINS - 1), 0.5f);
    if (!(t >= 0.0f)) return 0; /* NaN: cvttss2si gives 0x80000000, whose low 16 bits are 0 */
    return (int)t & 0xffff;
}

/* The value bin i stands for: (2 i) / 65535 - 1, fp32, that order. */
static inline PL_HD float pl_nf4_dyn_bin_value(int i) {
    return (2.0f * (float)i) / (float)(PL_NF4_DYN_BINS - 1) - 1.0f;
}

/* The number of the 255 ascending midpoints mid[k] strictly below v
 * (a binary search: the table the CPU builds holds these counts). */
static inline PL_HD int pl_nf4_dyn_count(const float mid[255], float v) {
    int lo = 0, hi = 255; /* mid[0..lo) < v <= mid[hi..255) */
    while (lo < hi) {
        const int m = (lo + hi) / 2;
        if (mid[m] < v) lo = m + 1;
        else hi = m;
    }
    return lo;
}

/* ---- torch.sum of a float vector on one CPU thread --------------------------
 * torch's vectorized_inner_sum: `lanes`-wide vectors (8: its AVX2 kernel,
 * which it also runs under AVX-512), row_sum with 4-way ILP, multi_row_sum's
 * 4 accumulator levels moved up every 2^lp units. */

static inline PL_HD int64_t pl_nf4_ceil_log2(int64_t x) {
    if (x <= 2) return 1;
    int64_t b = 0;
    for (uint64_t v = (uint64_t)(x - 1); v; v >>= 1) b++;
    return b;
}

static inline PL_HD void pl_nf4_vadd(float *a, const float *b, int w) {
    for (int i = 0; i < w; i++) a[i] += b[i];
}

static inline PL_HD void pl_nf4_vzero(float *a, int w) {
    for (int i = 0; i < w; i++) a[i] = 0.0f;
}

/* torch's multi_row_sum with 4 rows: unit u (w floats at x + u*w) belongs to
 * row u % 4; `size` units per row; partial sums move up 4 levels. */
static inline PL_HD void pl_nf4_multi_row_sum(const float *x, int64_t size, int w, float out[4][16]) {
    float acc[4][4][16];
    for (int j = 0; j < 4; j++)
        for (int k = 0; k < 4; k++) pl_nf4_vzero(acc[j][k], 16);
    const int64_t lp = pl_nf4_ceil_log2(size) / 4 > 4 ? pl_nf4_ceil_log2(size) / 4 : 4;
    const int64_t step = (int64_t)1 << lp, mask = step - 1;
    int64_t i = 0;
    while (i + step <= size) {
        for (int64_t j = 0; j < step; j++, i++)
            for (int k = 0; k < 4; k++) pl_nf4_vadd(acc[0][k], x + (4 * i + k) * w, w);
        for (int j = 1; j < 4; j++) {
            for (int k = 0; k < 4; k++) {
                pl_nf4_vadd(acc[j][k], acc[j - 1][k], w);
                pl_nf4_vzero(acc[j - 1][k], 16);
            }
            if ((i & (mask << (j * lp))) != 0) break;
        }
    }
    for (; i < size; i++)
        for (int k = 0; k < 4; k++) pl_nf4_vadd(acc[0][k], x + (4 * i + k) * w, w);
    for (int j = 1; j < 4; j++)
        for (int k = 0; k < 4; k++) pl_nf4_vadd(acc[0][k], acc[j][k], w);
    for (int k = 0; k < 4; k++)
        for (int l = 0; l < 16; l++) out[k][l] = acc[0][k][l];
}

/* torch's row_sum: 4-way ILP over `size` units, tail units into row 0. */
static inline PL_HD void pl_nf4_row_sum(const float *x, int64_t size, int w, float res[16]) {
    float p[4][16];
    int64_t size_ilp = size / 4;
    pl_nf4_multi_row_sum(x, size_ilp, w, p);
    for (int64_t i = size_ilp * 4; i < size; i++) pl_nf4_vadd(p[0], x + i * w, w);
    for (int k = 1; k < 4; k++) pl_nf4_vadd(p[0], p[k], w);
    for (int l = 0; l < w; l++) res[l] = p[0][l];
}

/* The sum of x (n floats) as torch.sum on one CPU thread with `lanes`-wide
 * vectors (8 or 16). */
static inline PL_HD float pl_nf4_tsum(const float *x, int64_t n, int lanes) {
    float v[16];
    pl_nf4_vzero(v, 16);
    if (n >= lanes) { /* vectorized_inner_sum */
        int64_t vec_size = n / lanes;
        pl_nf4_row_sum(x, vec_size, lanes, v);
        float f = 0.0f;
        for (int64_t k = vec_size * lanes; k < n; k++) f += x[k];
        for (int k = 0; k < lanes; k++) f += v[k];
        return 0.0f + f;
    }
    pl_nf4_row_sum(x, n, 1, v); /* scalar path */
    return 0.0f + v[0];
}

#endif
