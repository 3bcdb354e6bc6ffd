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
#include "../core/philox.h"

#define PL_LANES 8

/* A product that must be rounded on its own before the add that follows it:
 * nvcc fuses a * b + c into an FMA by default (C here does not contract:
 * -std=c11), so where the CPU's bits are promised the device code says so. */
#if defined(__CUDA_ARCH__)
#define PL_MUL_RN(a, b) __fmul_rn((a), (b))
#else
#define PL_MUL_RN(a, b) ((a) * (b))
#endif

#if defined(__CUDACC__) || defined(__cplusplus) /* nvcc, and .cu files built by the emulator (C++) */
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

/* Scores and softmax of one query head over its visible keys, the first
 * half of the attention definition below: s_j = pl_dot(q, k_j) * scale
 * (runs of four visible keys through pl_dot4, the same bits), m = max s_j,
 * then s_j = expf(s_j - m) with their sum added in key order. Returns the
 * first visible key j0 (jend when none is visible: nothing is written) and
 * sets *m_out and *sum_out. */
static inline PL_HD int pl_attn_softmax(const float *q, const float *k, long ld, int hd, float scale, int jend,
                                        const int32_t *kseg, int32_t seg, float *s, float *m_out,
                                        float *sum_out) {
    int j0 = 0;
    if (kseg)
        while (j0 < jend && kseg[j0] != seg) j0++;
    if (j0 >= jend) return jend;
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
    float sum = 0.0f;
    for (int j = j0; j < jend; j++) {
        if (kseg && kseg[j] != seg) continue;
        float e = expf(s[j] - m);
        s[j] = e;
        sum += e;
    }
    *m_out = m;
    *sum_out = sum;
    return j0;
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
    float m, sum;
    int j0 = pl_attn_softmax(q, k, ld, hd, scale, jend, kseg, seg, s, &m, &sum);
    if (j0 >= jend) return; /* sees no key */
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

/* =================================================================== backward
 *
 * The per-row math of the backward ops (trainer/cpu/cpu_*_bwd.c, cpu_optim.c).
 * Each derivative is written against exactly what the forward above computes
 * (same rmsnorm scale, same rope angle, same softmax), so forward and backward
 * cannot drift apart. Sums run in the same lane order as pl_dot. */

/* sum_i a[i] * b[i] * c[i], lanes as in pl_dot. */
static inline PL_HD float pl_dot3(const float *a, const float *b, const float *c, int n) {
    float acc[PL_LANES] = {0, 0, 0, 0, 0, 0, 0, 0};
    int i = 0;
    for (; i + PL_LANES <= n; i += PL_LANES)
        for (int l = 0; l < PL_LANES; l++) acc[l] += (a[i + l] * b[i + l]) * c[i + l];
    float tail = 0.0f;
    for (; i < n; i++) tail += (a[i] * b[i]) * c[i];
    return pl_lanes_sum(acc) + tail;
}

/* y[i] *= a */
static inline PL_HD void pl_scal(float *y, float a, int n) {
    for (int i = 0; i < n; i++) y[i] *= a;
}

/* RMSNorm backward of one row, given r = pl_rmsnorm_scale(sum x^2, C, eps) as
 * the forward computed it. With out_i = (x_i r) w_i and
 * dr/dx_j = -r^3 x_j / C:
 *   dx_i = r w_i dy_i - x_i (r^3 / C) sum_j dy_j w_j x_j.
 * dx may alias dy (the sum is taken before anything is written). */
static inline PL_HD void pl_rmsnorm_bwd_row(float *dx, const float *dy, const float *x, const float *w, int C,
                                            float r) {
    float c = pl_dot3(dy, w, x, C) * ((r * r) * r) / (float)C;
    for (int i = 0; i < C; i++) dx[i] = r * (w[i] * dy[i]) - x[i] * c;
}

/* dL/dw_i contribution of one row: dy_i * (x_i r), the forward's factor of w_i. */
static inline PL_HD float pl_rmsnorm_dw_term(float dy, float x, float r) { return dy * (x * r); }

/* RoPE backward of one token row d (nheads*hd) in place: the rotation is
 * orthogonal, so the gradient is rotated by the opposite angle (the same
 * angle, cos and sin as pl_rope_row; sin negated). */
static inline PL_HD void pl_rope_row_bwd(float *d, int nheads, int hd, int32_t pos, const float *inv_freq) {
    int half = hd / 2;
    for (int i = 0; i < half; i++) {
        float a = pl_rope_angle(pos, inv_freq[i]);
        float c = cosf(a), s = sinf(a);
        for (int h = 0; h < nheads; h++) pl_rope_pair(&d[h * hd + i], &d[h * hd + i + half], c, -s);
    }
}

/* sigmoid(x) = 1 / (1 + exp(-x)), the factor pl_silu divides by. */
static inline PL_HD float pl_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* SwiGLU backward of one element of out = silu(g) * u:
 *   du = dout * silu(g)   (silu as the forward computes it)
 *   dg = dout * u * sig(g) (1 + g (1 - sig(g)))   (d silu / dg)
 * For g -> -inf sig is 0 and dg is 0; for g -> +inf sig is 1 and dg is dout u. */
static inline PL_HD void pl_swiglu_bwd(float dout, float g, float u, float *dg, float *du) {
    float sg = pl_sigmoid(g);
    float dsilu = sg * (1.0f + g * (1.0f - sg));
    *du = dout * pl_silu(g);
    *dg = (dout * u) * dsilu;
}

/* Cross-entropy backward of one row of V logits with 0 <= target < V:
 * dl = scale * (softmax(logits) - onehot(target)), the softmax as
 * pl_softmax_row computes it (expf(x - max) * (1 / sum)). dl may alias logits. */
static inline PL_HD void pl_cross_entropy_bwd_row(float *dl, const float *logits, int V, int target, float scale) {
    float m = pl_row_max(logits, V);
    float inv = 1.0f / pl_sum_exp(logits, V, m);
    for (int i = 0; i < V; i++) {
        float p = expf(logits[i] - m) * inv;
        dl[i] = scale * (i == target ? p - 1.0f : p);
    }
}

/* Attention backward, one query head against its visible keys (arguments as
 * pl_attention_query, plus dout and D = dout . out for this query head).
 * Recomputes s_j, m and sum exactly as the forward (same bits, so p_j is the
 * forward's probability), then with dp_j = dout . v_j:
 *   ds_j = p_j (dp_j - D)         (softmax backward; D = sum_j p_j dp_j)
 *   dq   = scale * sum_j ds_j k_j (added in key order)
 * Writes dq (hd) and the row's softmax statistics *m_out and *inv_out
 * (1/sum) so that a key-side pass can recompute p_j = expf(s_j - m) * inv.
 * A query that sees no key gets dq = 0, *m_out = -inf, *inv_out = 0. s is
 * scratch of jend floats. */
static inline PL_HD void pl_attention_query_bwd(float *dq, float *m_out, float *inv_out, const float *q,
                                                const float *k, const float *v, const float *dout, float D,
                                                long ld, int hd, float scale, int jend, const int32_t *kseg,
                                                int32_t seg, float *s) {
    for (int d = 0; d < hd; d++) dq[d] = 0.0f;
    *m_out = -INFINITY;
    *inv_out = 0.0f;
    float m, sum;
    int j0 = pl_attn_softmax(q, k, ld, hd, scale, jend, kseg, seg, s, &m, &sum); /* the forward's own */
    if (j0 >= jend) return;
    float inv = 1.0f / sum;
    *m_out = m;
    *inv_out = inv;
    /* ds_j = p_j (dout . v_j - D) */
    for (int j = j0; j < jend;) {
        if (pl_attn_block4(kseg, j, jend, seg)) {
            float r[4];
            pl_dot4(dout, v + (long)j * ld, v + (long)(j + 1) * ld, v + (long)(j + 2) * ld, v + (long)(j + 3) * ld, hd, r);
            for (int u = 0; u < 4; u++) s[j + u] = (s[j + u] * inv) * (r[u] - D);
            j += 4;
            continue;
        }
        if (!kseg || kseg[j] == seg) s[j] = (s[j] * inv) * (pl_dot(dout, v + (long)j * ld, hd) - D);
        j++;
    }
    /* dq = scale * sum_j ds_j k_j */
    for (int j = j0; j < jend;) {
        if (pl_attn_block4(kseg, j, jend, seg)) {
            pl_axpy4(dq, s + j, k + (long)j * ld, k + (long)(j + 1) * ld, k + (long)(j + 2) * ld, k + (long)(j + 3) * ld, hd);
            j += 4;
            continue;
        }
        if (!kseg || kseg[j] == seg) pl_axpy(dq, s[j], k + (long)j * ld, hd);
        j++;
    }
    pl_scal(dq, scale, hd);
}

/* ------------------------------------------------------------------- AdamW */

/* Per-step constants of torch.optim.AdamW (torch/optim/adam.py,
 * _single_tensor_adam with decoupled weight decay), computed in double as
 * torch computes its Python scalars, then rounded once to float. */
typedef struct pl_adamw_k {
    float decay;     /* 1 - lr * wd */
    float w1;        /* 1 - beta1: the lerp weight of m toward g */
    float beta2, w2; /* beta2 and 1 - beta2 */
    float bc2_sqrt;  /* sqrt(1 - beta2^t) */
    float eps;
    float neg_step;  /* -lr / (1 - beta1^t) */
} pl_adamw_k;

static inline PL_HD pl_adamw_k pl_adamw_consts(float lr, float beta1, float beta2, float eps, float wd, int t) {
    pl_adamw_k c;
    double b1 = beta1, b2 = beta2, dlr = lr;
    c.decay = (float)(1.0 - dlr * (double)wd);
    c.w1 = (float)(1.0 - b1);
    c.beta2 = beta2;
    c.w2 = (float)(1.0 - b2);
    c.bc2_sqrt = (float)sqrt(1.0 - pow(b2, (double)t));
    c.eps = eps;
    c.neg_step = (float)(-dlr / (1.0 - pow(b1, (double)t)));
    return c;
}

/* One element, in torch's order of float operations:
 *   p  = p * (1 - lr wd)
 *   m  = lerp(m, g, 1 - b1)           (= b1 m + (1 - b1) g)
 *   v  = v * b2 + ((1 - b2) g) g
 *   p  = p + (-lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
 * with bc1 = 1 - b1^t, bc2 = 1 - b2^t. The lerp and the v update are fused
 * multiply-adds, as torch's vectorized CPU kernels compute them (lerp_vec's
 * fmadd; addcmul): with the same fp32 hyperparameters, m and v come out with
 * torch 2.x's CPU bits and p within an ulp of them (measured once against
 * torch 2.15, 10 steps). fmaf is exactly rounded, so the bits are the same on
 * any CPU and in CUDA. */
static inline PL_HD void pl_adamw_elem(float *p, float g, float *m, float *v, const pl_adamw_k *c) {
    float pp = PL_MUL_RN(*p, c->decay); /* not fused with the add below */
    float mm = *m, vv = *v;
    /* torch's lerp: start + w (end - start) for |w| < 0.5, else end + (w - 1)(end - start) */
    mm = c->w1 < 0.5f ? fmaf(c->w1, g - mm, mm) : fmaf(c->w1 - 1.0f, g - mm, g);
    vv = fmaf(c->w2 * g, g, vv * c->beta2);
    float denom = sqrtf(vv) / c->bc2_sqrt + c->eps;
    *p = pp + (c->neg_step * mm) / denom;
    *m = mm;
    *v = vv;
}

/* ---- dropout -----------------------------------------------------------------
 * Draws from core/philox.h's pl_philox4 (core/rng.c's generator, callable on
 * the device). */
/* Dropout keeps element e when its 16-bit draw is >= this (p resolved to
 * 1/65536); draws: word (e % 8) / 2 of Philox index e / 8, half (e % 2). */
static inline PL_HD uint32_t pl_dropout_threshold(float p) {
    double t = (double)p * 65536.0 + 0.5;
    return t >= 65535.0 ? 65535u : (uint32_t)t;
}
static inline PL_HD uint32_t pl_dropout_draw(const uint32_t w[4], int k) { return (w[k >> 1] >> ((k & 1) * 16)) & 0xffffu; }

#endif
