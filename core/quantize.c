/* quantize.c: fp32 rows to ggml's block types, byte for byte what ggml's
 * reference quantizers (quantize_row_*_ref, which llama.cpp's quantizer
 * uses when no importance matrix is given) and gguf-py write.
 *
 * Exactness. Every value is computed with the same float32 operations in the
 * same order as ggml's reference: sums accumulated left to right, a*b + c as a
 * multiply then an add (GCC's ISO C modes, -std=c11, do not contract into
 * FMA), ggml's nearest_int (the 1.5 * 2^23 trick: round half to even), and
 * round-to-nearest-even fp16 conversion. tests/test_quantize_ggml.c compares
 * every type against ggml's own functions loaded from the peers' venv.
 *
 * The algorithms are ggml's (k-quants by Iwan Kawrakow): Q4_K and Q5_K pick
 * a scale and a minimum per 32 weights by a weighted least-squares search
 * over 21 / 16 candidate scales, then store the 8 scales and 8 minimums in 6
 * bits each against one fp16 super-scale; Q6_K picks a symmetric scale per 16
 * weights by a search over 19 candidates, stored in 8 bits.
 *
 * Outputs are written through byte pointers: dst need not be aligned. */
#include "quant.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "half.h"

/* ------------------------------------------------------------------ helpers */

static inline void st_f16(uint8_t *p, float f) {
    uint16_t h = pl_f32_to_f16(f);
    memcpy(p, &h, 2);
}

static inline float ld_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return pl_f16_to_f32(h);
}

/* (int)v for v in [lo, hi] (truncation, as ggml's integer casts), clamped to
 * [lo, hi] outside it; NaN gives lo. Never undefined behaviour. */
static inline int clamp_trunc(float v, int lo, int hi) {
    if (!(v >= (float)lo)) return lo;
    if (v >= (float)hi) return hi;
    return (int)v;
}

/* ggml's nearest_int: round to nearest, ties to even, for |f| < 2^22 (other
 * inputs give ggml's same defined garbage). */
static inline int nearest_int(float f) {
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }

/* ------------------------------------------------------------------ 32-element blocks */

/* Q8_0: d = amax / 127, q = round(x / d) (half away from zero). */
void pl_quantize_row_q8_0(const float *x, pl_block_q8_0 *y, int64_t n) {
    uint8_t *out = (uint8_t *)y;
    for (int64_t b = 0; b < n / PL_QK; b++, x += PL_QK, out += sizeof(pl_block_q8_0)) {
        float amax = 0.0f;
        for (int j = 0; j < PL_QK; j++) {
            float a = fabsf(x[j]);
            if (a > amax) amax = a;
        }
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        st_f16(out, d);
        for (int j = 0; j < PL_QK; j++) {
            float r = roundf(x[j] * id);
            int q = r != r ? 0 : r > 127.0f ? 127 : r < -127.0f ? -127 : (int)r;
            out[2 + j] = (uint8_t)(int8_t)q;
        }
    }
}

/* Largest-magnitude element (the first one on ties), with its sign. */
static inline float signed_absmax(const float *x) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < PL_QK; j++) {
        float a = fabsf(x[j]);
        if (a > amax) {
            amax = a;
            max = x[j];
        }
    }
    return max;
}

static inline void min_max(const float *x, float *mn, float *mx) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < PL_QK; j++) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    *mn = min;
    *mx = max;
}

/* Q4_0: d = max / -8, q = trunc(x * id + 8.5) clamped to 15. */
void pl_quantize_row_q4_0(const float *x, pl_block_q4_0 *y, int64_t n) {
    uint8_t *out = (uint8_t *)y;
    for (int64_t b = 0; b < n / PL_QK; b++, x += PL_QK, out += sizeof(pl_block_q4_0)) {
        const float d = signed_absmax(x) / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        st_f16(out, d);
        for (int j = 0; j < PL_QK / 2; j++) {
            float v0 = x[j] * id + 8.5f;
            float v1 = x[j + PL_QK / 2] * id + 8.5f;
            out[2 + j] = (uint8_t)(clamp_trunc(v0, 0, 15) | (clamp_trunc(v1, 0, 15) << 4));
        }
    }
}

/* Q4_1: d = (max - min) / 15, m = min, q = trunc((x - min) * id + 0.5). */
void pl_quantize_row_q4_1(const float *x, pl_block_q4_1 *y, int64_t n) {
    uint8_t *out = (uint8_t *)y;
    for (int64_t b = 0; b < n / PL_QK; b++, x += PL_QK, out += sizeof(pl_block_q4_1)) {
        float min, max;
        min_max(x, &min, &max);
        const float d = (max - min) / 15.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        st_f16(out, d);
        st_f16(out + 2, min);
        for (int j = 0; j < PL_QK / 2; j++) {
            float v0 = (x[j] - min) * id + 0.5f;
            float v1 = (x[j + PL_QK / 2] - min) * id + 0.5f;
            out[4 + j] = (uint8_t)(clamp_trunc(v0, 0, 15) | (clamp_trunc(v1, 0, 15) << 4));
        }
    }
}

/* Q5_0: d = max / -16, q = trunc(x * id + 16.5) clamped to 31; bit 4 of
 * element j goes to bit j of qh. */
void pl_quantize_row_q5_0(const float *x, pl_block_q5_0 *y, int64_t n) {
    uint8_t *out = (uint8_t *)y;
    for (int64_t b = 0; b < n / PL_QK; b++, x += PL_QK, out += sizeof(pl_block_q5_0)) {
        const float d = signed_absmax(x) / -16.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        st_f16(out, d);
        uint32_t qh = 0;
        for (int j = 0; j < PL_QK / 2; j++) {
            int q0 = clamp_trunc(x[j] * id + 16.5f, 0, 31);
            int q1 = clamp_trunc(x[j + PL_QK / 2] * id + 16.5f, 0, 31);
            out[6 + j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
            qh |= (uint32_t)(q0 >> 4) << j;
            qh |= (uint32_t)(q1 >> 4) << (j + PL_QK / 2);
        }
        memcpy(out + 2, &qh, 4);
    }
}

/* Q5_1: d = (max - min) / 31, m = min, q = trunc((x - min) * id + 0.5). */
void pl_quantize_row_q5_1(const float *x, pl_block_q5_1 *y, int64_t n) {
    uint8_t *out = (uint8_t *)y;
    for (int64_t b = 0; b < n / PL_QK; b++, x += PL_QK, out += sizeof(pl_block_q5_1)) {
        float min, max;
        min_max(x, &min, &max);
        const float d = (max - min) / 31.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        st_f16(out, d);
        st_f16(out + 2, min);
        uint32_t qh = 0;
        for (int j = 0; j < PL_QK / 2; j++) {
            /* ggml casts to uint8_t without a clamp; the values stay in [0, 31.5] */
            int q0 = clamp_trunc((x[j] - min) * id + 0.5f, 0, 255);
            int q1 = clamp_trunc((x[j + PL_QK / 2] - min) * id + 0.5f, 0, 255);
            out[8 + j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
            qh |= (uint32_t)((q0 & 0x10) >> 4) << j;
            qh |= (uint32_t)((q1 & 0x10) >> 4) << (j + PL_QK / 2);
        }
        memcpy(out + 4, &qh, 4);
    }
}

/* ------------------------------------------------------------------ k-quant helpers */

/* Asymmetric nmax-level quantization of n weights x with importance weights
 * w: L gets the levels, *neg_min the negated offset; returns the scale.
 * First the min/max grid, then nstep + 1 candidate grids
 * (rmin + rdelta * is + nmax levels over the range), each refit by weighted
 * least squares, keeping the one of least weighted squared error. */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L, float *neg_min,
                           uint8_t *Laux, float rmin, float rdelta, int nstep) {
    float min = x[0], max = x[0];
    float sum_w = w[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *neg_min = -min;
        return 0.0f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        int l = imax(0, imin(nmax, nearest_int(iscale * (x[i] - min))));
        L[i] = (uint8_t)l;
        float diff = scale * L[i] + min - x[i];
        best_error += w[i] * (diff * diff);
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = imax(0, imin(nmax, nearest_int(iscale * (x[i] - min))));
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                cur_error += w[i] * (diff * diff);
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *neg_min = -min;
    return scale;
}

/* Symmetric quantization of n weights to levels [-nmax, nmax - 1] (stored
 * + nmax in L) weighted by x^2: the max-magnitude grid refit by least
 * squares, then 18 nearby grids, keeping the best. Returns the scale. */
static float fit_scale_sym(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < 1e-15f) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(nmax + imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i]))));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* The 6-bit scale and min of sub-block j from a Q4_K/Q5_K scales[12]. */
static inline void scale_min_k4(int j, const uint8_t *q, int *d, int *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Q4_K / Q5_K share everything but the level count and the search grid:
 * per 32 weights a (scale, min) fit, both quantized to 6 bits against the
 * super-block's largest, then the levels recomputed from the stored values.
 * Writes d, dmin and scales[12] at blk and the levels (0..nmax) to L. */
static void kquant_scales(const float *x, uint8_t *blk, uint8_t *L, int nmax, float rmin, int nstep) {
    float scales[PL_QK_K / 32], mins[PL_QK_K / 32], w[32];
    uint8_t Laux[32];
    uint8_t *sc = blk + 4;
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < PL_QK_K / 32; j++) {
        const float *xj = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += xj[l] * xj[l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(xj[l]);
        scales[j] = fit_scale_min(32, nmax, xj, w, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < PL_QK_K / 32; j++) {
        uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
        if (ls > 63) ls = 63;
        if (lm > 63) lm = 63;
        if (j < 4) {
            sc[j] = ls;
            sc[j + 4] = lm;
        } else {
            sc[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            sc[j - 4] |= (uint8_t)((ls >> 4) << 6);
            sc[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    st_f16(blk, max_scale / 63.f);
    st_f16(blk + 2, max_min / 63.f);
    const float D = ld_f16(blk), DM = ld_f16(blk + 2);
    for (int j = 0; j < PL_QK_K / 32; j++) {
        int s, m;
        scale_min_k4(j, sc, &s, &m);
        const float d = D * s;
        if (!d) continue; /* keeps the fit's levels, as ggml does */
        const float dm = DM * m;
        for (int i = 0; i < 32; i++) L[32 * j + i] = (uint8_t)imax(0, imin(nmax, nearest_int((x[32 * j + i] + dm) / d)));
    }
}

/* ------------------------------------------------------------------ k-quants */

/* Q4_K: d, dmin, scales[12], qs[128]; qs byte l of each 64-weight chunk holds
 * weight l (low nibble) and weight l + 32 (high nibble). */
void pl_quantize_row_q4_K(const float *x, pl_block_q4_K *y, int64_t n) {
    uint8_t *out = (uint8_t *)y;
    uint8_t L[PL_QK_K];
    for (int64_t b = 0; b < n / PL_QK_K; b++, x += PL_QK_K, out += sizeof(pl_block_q4_K)) {
        kquant_scales(x, out, L, 15, -1.f, 20);
        uint8_t *q = out + 16;
        for (int j = 0; j < PL_QK_K; j += 64, q += 32)
            for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

/* Q5_K: d, dmin, scales[12], qh[32], qs[128]: Q4_K's nibbles plus bit 4 of
 * weight j + 64c (+ 32) in bit 2c (2c + 1) of qh[j % 32]. */
void pl_quantize_row_q5_K(const float *x, pl_block_q5_K *y, int64_t n) {
    uint8_t *out = (uint8_t *)y;
    uint8_t L[PL_QK_K];
    for (int64_t b = 0; b < n / PL_QK_K; b++, x += PL_QK_K, out += sizeof(pl_block_q5_K)) {
        kquant_scales(x, out, L, 31, -0.5f, 15);
        uint8_t *qh = out + 16, *ql = out + 48;
        memset(qh, 0, PL_QK_K / 8);
        uint8_t m1 = 1, m2 = 2;
        for (int c = 0; c < PL_QK_K; c += 64, ql += 32) {
            for (int j = 0; j < 32; j++) {
                int l1 = L[c + j], l2 = L[c + j + 32];
                if (l1 > 15) { l1 -= 16; qh[j] |= m1; }
                if (l2 > 15) { l2 -= 16; qh[j] |= m2; }
                ql[j] = (uint8_t)(l1 | (l2 << 4));
            }
            m1 = (uint8_t)(m1 << 2);
            m2 = (uint8_t)(m2 << 2);
        }
    }
}

/* Q6_K: ql[128], qh[64], scales[16] (int8), d: a symmetric 6-bit fit per
 * 16 weights, its scale stored in 8 bits against d = -max_scale / 128. */
void pl_quantize_row_q6_K(const float *x, pl_block_q6_K *y, int64_t n) {
    uint8_t *out = (uint8_t *)y;
    int8_t L[PL_QK_K];
    float scales[PL_QK_K / 16];
    for (int64_t b = 0; b < n / PL_QK_K; b++, x += PL_QK_K, out += sizeof(pl_block_q6_K)) {
        uint8_t *ql = out, *qh = out + 128;
        int8_t *sc = (int8_t *)(out + 192);
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < PL_QK_K / 16; ib++) {
            scales[ib] = fit_scale_sym(16, 32, x + 16 * ib, L + 16 * ib);
            float as = fabsf(scales[ib]);
            if (as > max_abs_scale) {
                max_abs_scale = as;
                max_scale = scales[ib];
            }
        }
        if (max_abs_scale < 1e-15f) {
            memset(out, 0, sizeof(pl_block_q6_K));
            continue;
        }
        float iscale = -128.f / max_scale;
        st_f16(out + 208, 1 / iscale);
        for (int ib = 0; ib < PL_QK_K / 16; ib++) sc[ib] = (int8_t)imin(127, nearest_int(iscale * scales[ib]));
        const float D = ld_f16(out + 208);
        for (int j = 0; j < PL_QK_K / 16; j++) {
            float d = D * sc[j];
            if (!d) continue;
            for (int i = 0; i < 16; i++) L[16 * j + i] = (int8_t)(imax(-32, imin(31, nearest_int(x[16 * j + i] / d))) + 32);
        }
        for (int j = 0; j < PL_QK_K; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; l++) {
                const uint8_t *Lu = (const uint8_t *)L + j + l;
                ql[l] = (uint8_t)((Lu[0] & 0xF) | ((Lu[64] & 0xF) << 4));
                ql[l + 32] = (uint8_t)((Lu[32] & 0xF) | ((Lu[96] & 0xF) << 4));
                qh[l] = (uint8_t)((Lu[0] >> 4) | ((Lu[32] >> 4) << 2) | ((Lu[64] >> 4) << 4) | ((Lu[96] >> 4) << 6));
            }
        }
    }
}

/* ------------------------------------------------------------------ dispatch */

int pl_dtype_can_quantize(pl_dtype t) {
    switch (t) {
    case PL_F32: case PL_F16: case PL_BF16:
    case PL_Q4_0: case PL_Q4_1: case PL_Q5_0: case PL_Q5_1: case PL_Q8_0:
    case PL_Q4_K: case PL_Q5_K: case PL_Q6_K:
        return 1;
    default:
        return 0;
    }
}

int pl_quantize_row(pl_dtype t, const float *x, void *dst, int64_t n) {
    if (!pl_dtype_can_quantize(t) || n < 0 || n % pl_dtype_block_elems(t)) return -1;
    switch (t) {
    case PL_F32: memcpy(dst, x, (size_t)n * sizeof(float)); break;
    case PL_F16: for (int64_t i = 0; i < n; i++) { uint16_t h = pl_f32_to_f16(x[i]); memcpy((uint8_t *)dst + 2 * i, &h, 2); } break;
    case PL_BF16: for (int64_t i = 0; i < n; i++) { uint16_t h = pl_f32_to_bf16(x[i]); memcpy((uint8_t *)dst + 2 * i, &h, 2); } break;
    case PL_Q4_0: pl_quantize_row_q4_0(x, dst, n); break;
    case PL_Q4_1: pl_quantize_row_q4_1(x, dst, n); break;
    case PL_Q5_0: pl_quantize_row_q5_0(x, dst, n); break;
    case PL_Q5_1: pl_quantize_row_q5_1(x, dst, n); break;
    case PL_Q8_0: pl_quantize_row_q8_0(x, dst, n); break;
    case PL_Q4_K: pl_quantize_row_q4_K(x, dst, n); break;
    case PL_Q5_K: pl_quantize_row_q5_K(x, dst, n); break;
    case PL_Q6_K: pl_quantize_row_q6_K(x, dst, n); break;
    default: return -1;
    }
    return 0;
}
