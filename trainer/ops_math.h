/* ops_math.h: the per-row math of the forward ops, one source of truth for the
 * CPU backend (trainer/cpu/) and the CUDA kernels (trainer/cuda/).
 *
 * Every function here works on one row, one head or one element and compiles
 * as C11 and as CUDA (PL_HD = __host__ __device__). The CPU ops parallelize
 * over rows and call these; a CUDA kernel may call them from one thread, or do
 * its own reduction and call the scalar pieces (pl_rmsnorm_scale, pl_rope_pair,
 * pl_silu, pl_cross_entropy_from_lse, ...), so the formulas cannot drift.
 *
 * Summation order. Sums over a row run in PL_LANES interleaved float
 * accumulators (lane l takes elements l, l+8, l+16, ...) that are combined in a
 * fixed tree, then the tail is added. The order depends only on n, never on
 * threads, so results are the same bits run after run; the lanes also shorten
 * each running sum 8-fold (less rounding error on a 49152-entry vocabulary
 * row) and let the compiler use SIMD registers at -O2. */
#ifndef PL_OPS_MATH_H
#define PL_OPS_MATH_H

#include <math.h>
#include <stdint.h>
#include "../core/half.h"

#define PL_LANES 8

#ifdef __CUDACC__
#define PL_RESTRICT __restrict__
#else
#define PL_RESTRICT restrict
#endif

/* Fixed combination of the 8 lane accumulators. */
static inline PL_HD float pl_lanes_sum(const float acc[PL_LANES]) {
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* sum_i a[i] * b[i] over n elements. */
static inline PL_HD float pl_dot(const float *a, const float *b, int n) {
    float acc[PL_LANES] = {0, 0, 0, 0, 0, 0, 0, 0};
    int i = 0;
    for (; i + PL_LANES <= n; i += PL_LANES)
        for (int l = 0; l < PL_LANES; l++) acc[l] += a[i + l] * b[i + l];
    float tail = 0.0f;
    for (; i < n; i++) tail += a[i] * b[i];
    return pl_lanes_sum(acc) + tail;
}

/* y[i] += a * x[i]; y and x do not overlap (lets the compiler use SIMD). */
static inline PL_HD void pl_axpy(float *PL_RESTRICT y, float a, const float *PL_RESTRICT x, int n) {
    int i = 0;
    for (; i + PL_LANES <= n; i += PL_LANES) /* written in blocks so -O2 turns it into SIMD */
        for (int l = 0; l < PL_LANES; l++) y[i + l] += a * x[i + l];
    for (; i < n; i++) y[i] += a * x[i];
}

/* sum_i x[i]^2 over n elements. */
static inline PL_HD float pl_sumsq(const float *x, int n) { return pl_dot(x, x, n); }

/* ------------------------------------------------------------------ RMSNorm */

/* The factor 1 / sqrt(mean(x^2) + eps) from a row's sum of squares. */
static inline PL_HD float pl_rmsnorm_scale(float sumsq, int n, float eps) {
    return 1.0f / sqrtf(sumsq / (float)n + eps);
}

/* out (C) = x / sqrt(mean(x^2) + eps) * w ; out may alias x. */
static inline PL_HD void pl_rmsnorm_row(float *out, const float *x, const float *w, int C, float eps) {
    float r = pl_rmsnorm_scale(pl_sumsq(x, C), C, eps);
    for (int i = 0; i < C; i++) out[i] = (x[i] * r) * w[i];
}

/* --------------------------------------------------------------------- RoPE */

/* Rotate-half RoPE: pair (x0, x1) = (x[i], x[i + hd/2]) rotated by angle a,
 * where a = pos * inv_freq[i] is computed in fp32 (as Hugging Face does). */
static inline PL_HD float pl_rope_angle(int32_t pos, float inv_freq) { return (float)pos * inv_freq; }

static inline PL_HD void pl_rope_pair(float *x0, float *x1, float c, float s) {
    float a = *x0, b = *x1;
    *x0 = a * c - b * s;
    *x1 = a * s + b * c;
}

/* One head x (hd) in place at position pos; inv_freq (hd/2). An odd last
 * element (odd hd) is left alone. */
static inline PL_HD void pl_rope_head(float *x, int hd, int32_t pos, const float *inv_freq) {
    int half = hd / 2;
    for (int i = 0; i < half; i++) {
        float a = pl_rope_angle(pos, inv_freq[i]);
        pl_rope_pair(&x[i], &x[i + half], cosf(a), sinf(a));
    }
}

/* All heads of one token row x (nheads*hd) in place; cos/sin computed once per
 * frequency and shared by the heads (same bits as pl_rope_head per head). */
static inline PL_HD void pl_rope_row(float *x, int nheads, int hd, int32_t pos, const float *inv_freq) {
    int half = hd / 2;
    for (int i = 0; i < half; i++) {
        float a = pl_rope_angle(pos, inv_freq[i]);
        float c = cosf(a), s = sinf(a);
        for (int h = 0; h < nheads; h++) pl_rope_pair(&x[h * hd + i], &x[h * hd + i + half], c, s);
    }
}

/* ------------------------------------------------------------------- SwiGLU */

/* silu(x) = x * sigmoid(x) = x / (1 + exp(-x)); exp overflow gives -0. */
static inline PL_HD float pl_silu(float x) { return x / (1.0f + expf(-x)); }

static inline PL_HD float pl_swiglu(float gate, float up) { return pl_silu(gate) * up; }

/* ------------------------------------------------------ softmax and log-sum-exp */

/* max of x (n >= 1). NaN entries are skipped unless all are NaN. */
static inline PL_HD float pl_row_max(const float *x, int n) {
    float m = -INFINITY;
    for (int i = 0; i < n; i++) m = x[i] > m ? x[i] : m; /* not fmaxf: that is a libm call */
    return m;
}

/* sum_i exp(x[i] - m), lanes as in pl_dot. */
static inline PL_HD float pl_sum_exp(const float *x, int n, float m) {
    float acc[PL_LANES] = {0, 0, 0, 0, 0, 0, 0, 0};
    int i = 0;
    for (; i + PL_LANES <= n; i += PL_LANES)
        for (int l = 0; l < PL_LANES; l++) acc[l] += expf(x[i + l] - m);
    float tail = 0.0f;
    for (; i < n; i++) tail += expf(x[i] - m);
    return pl_lanes_sum(acc) + tail;
}

/* log(sum_i exp(x[i])), stable: m + log(sum exp(x - m)). */
static inline PL_HD float pl_logsumexp_row(const float *x, int n) {
    float m = pl_row_max(x, n);
    if (m == -INFINITY || m == INFINITY) return m;
    return m + logf(pl_sum_exp(x, n, m));
}

/* Stable softmax of x (n) in place. */
static inline PL_HD void pl_softmax_row(float *x, int n) {
    float m = pl_row_max(x, n);
    float inv = 1.0f / pl_sum_exp(x, n, m);
    for (int i = 0; i < n; i++) x[i] = expf(x[i] - m) * inv;
}

/* --------------------------------------------------------------- cross-entropy */

static inline PL_HD float pl_cross_entropy_from_lse(float lse, float target_logit) { return lse - target_logit; }

/* -log softmax(logits)[target] for one row of V logits; 0 <= target < V. */
static inline PL_HD float pl_cross_entropy_row(const float *logits, int V, int target) {
    return pl_cross_entropy_from_lse(pl_logsumexp_row(logits, V), logits[target]);
}

/* ---------------------------------------------------------------- attention */

/* Four dot products r[u] = q . k_u, each summed in exactly pl_dot's order
 * (the same bits as four pl_dot calls); interleaved, they give the CPU four
 * independent add chains instead of one. */
static inline PL_HD void pl_dot4(const float *q, const float *k0, const float *k1, const float *k2,
                                 const float *k3, int n, float r[4]) {
    float a0[PL_LANES] = {0, 0, 0, 0, 0, 0, 0, 0}, a1[PL_LANES] = {0, 0, 0, 0, 0, 0, 0, 0};
    float a2[PL_LANES] = {0, 0, 0, 0, 0, 0, 0, 0}, a3[PL_LANES] = {0, 0, 0, 0, 0, 0, 0, 0};
    int i = 0;
    for (; i + PL_LANES <= n; i += PL_LANES)
        for (int l = 0; l < PL_LANES; l++) {
            float x = q[i + l];
            a0[l] += x * k0[i + l];
            a1[l] += x * k1[i + l];
            a2[l] += x * k2[i + l];
            a3[l] += x * k3[i + l];
        }
    float t0 = 0.0f, t1 = 0.0f, t2 = 0.0f, t3 = 0.0f;
    for (; i < n; i++) {
        t0 += q[i] * k0[i];
        t1 += q[i] * k1[i];
        t2 += q[i] * k2[i];
        t3 += q[i] * k3[i];
    }
    r[0] = pl_lanes_sum(a0) + t0;
    r[1] = pl_lanes_sum(a1) + t1;
    r[2] = pl_lanes_sum(a2) + t2;
    r[3] = pl_lanes_sum(a3) + t3;
}

/* y[i] = (((y[i] + a[0] x0[i]) + a[1] x1[i]) + a[2] x2[i]) + a[3] x3[i]: the
 * same bits as four pl_axpy calls in that order, with one pass over y. */
static inline PL_HD void pl_axpy4(float *PL_RESTRICT y, const float a[4], const float *PL_RESTRICT x0,
                                  const float *PL_RESTRICT x1, const float *PL_RESTRICT x2,
                                  const float *PL_RESTRICT x3, int n) {
    const float b0 = a[0], b1 = a[1], b2 = a[2], b3 = a[3];
    int i = 0;
    for (; i + PL_LANES <= n; i += PL_LANES)
        for (int l = 0; l < PL_LANES; l++)
            y[i + l] = (((y[i + l] + b0 * x0[i + l]) + b1 * x1[i + l]) + b2 * x2[i + l]) + b3 * x3[i + l];
    for (; i < n; i++) y[i] = (((y[i] + b0 * x0[i]) + b1 * x1[i]) + b2 * x2[i]) + b3 * x3[i];
}

/* 1 when keys j..j+3 exist (j + 4 <= jend) and are all visible. */
static inline PL_HD int pl_attn_block4(const int32_t *kseg, int j, int jend, int32_t seg) {
    if (j + 4 > jend) return 0;
    return !kseg || (kseg[j] == seg && kseg[j + 1] == seg && kseg[j + 2] == seg && kseg[j + 3] == seg);
}

/* One query head against the keys j < jend it may see: key j is visible iff
 * kseg == NULL or kseg[j] == seg. q (hd); k, v point at row 0 of this query's
 * key/value head, rows ld floats apart; s is scratch of jend floats.
 * out (hd) = sum_j softmax_j(q.k_j * scale) v_j over the visible keys, or zeros
 * when no key is visible. out must not alias q, k or v.
 *
 * Definition (key by key, in key order): s_j = pl_dot(q, k_j) * scale;
 * m = max s_j; e_j = expf(s_j - m); sum = e_j added in key order;
 * out = 0, then pl_axpy(out, e_j * (1/sum), v_j) in key order. Runs of four
 * visible keys go through pl_dot4 / pl_axpy4, which give the same bits. */
static inline PL_HD void pl_attention_query(float *out, const float *q, const float *k, const float *v,
                                            long ld, int hd, float scale, int jend,
                                            const int32_t *kseg, int32_t seg, float *s) {
    for (int d = 0; d < hd; d++) out[d] = 0.0f;
    int j0 = 0;
    if (kseg)
        while (j0 < jend && kseg[j0] != seg) j0++;
    if (j0 >= jend) return; /* sees no key */
    /* scores and their max */
    float m = -INFINITY;
    for (int j = j0; j < jend;) {
        if (pl_attn_block4(kseg, j, jend, seg)) {
            float r[4];
            pl_dot4(q, k + (long)j * ld, k + (long)(j + 1) * ld, k + (long)(j + 2) * ld, k + (long)(j + 3) * ld, hd, r);
            for (int u = 0; u < 4; u++) {
                float sc = r[u] * scale;
                s[j + u] = sc;
                m = sc > m ? sc : m;
            }
            j += 4;
            continue;
        }
        if (!kseg || kseg[j] == seg) {
            float sc = pl_dot(q, k + (long)j * ld, hd) * scale;
            s[j] = sc;
            m = sc > m ? sc : m;
        }
        j++;
    }
    /* exp and their sum, in key order */
    float sum = 0.0f;
    for (int j = j0; j < jend; j++) {
        if (kseg && kseg[j] != seg) continue;
        float e = expf(s[j] - m);
        s[j] = e;
        sum += e;
    }
    /* weighted sum of the values, in key order */
    float inv = 1.0f / sum;
    for (int j = j0; j < jend;) {
        if (pl_attn_block4(kseg, j, jend, seg)) {
            float p[4] = {s[j] * inv, s[j + 1] * inv, s[j + 2] * inv, s[j + 3] * inv};
            pl_axpy4(out, p, v + (long)j * ld, v + (long)(j + 1) * ld, v + (long)(j + 2) * ld, v + (long)(j + 3) * ld, hd);
            j += 4;
            continue;
        }
        if (!kseg || kseg[j] == seg) pl_axpy(out, s[j] * inv, v + (long)j * ld, hd);
        j++;
    }
}

#endif
