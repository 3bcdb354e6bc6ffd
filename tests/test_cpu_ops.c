/* test_cpu_ops.c: the CPU backend's forward ops against double-precision references, and their determinism.
 *
 * Each reference below is the op's mathematical definition written as plain
 * loops in double. Tolerances are relative to the magnitude of the terms that
 * were summed (sum |a_i b_i| for a dot product, sum p_j |v_j| for attention),
 * so cancellation does not make a correct fp32 result look wrong. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include "check.h"
#include "../core/half.h"
#include "../core/quant.h"
#include "../trainer/backend.h"
#include "../trainer/cpu/cpu_int.h"
#include "../trainer/ops_math.h"

static const pl_backend *be;

/* ------------------------------------------------------------------ helpers */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd_u64(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float rnd_unif(float lo, float hi) { return lo + (hi - lo) * (float)((rnd_u64() >> 40) * 0x1p-24); }
static float *rnd_vec(size_t n, float lo, float hi) {
    float *v = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) v[i] = rnd_unif(lo, hi);
    return v;
}
static float *dup_vec(const float *x, size_t n) {
    float *v = malloc(n * sizeof(float));
    memcpy(v, x, n * sizeof(float));
    return v;
}

/* Check |got - ref| <= rtol * mag + atol elementwise (mag NULL: |ref|); one
 * CHECK per array, reporting the worst element. */
static void check_close(const char *what, const float *got, const double *ref, const double *mag, size_t n,
                        double rtol, double atol) {
    size_t worst = 0;
    double worst_ratio = -1;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double m = mag ? mag[i] : fabs(ref[i]);
        double tol = rtol * m + atol;
        double d = fabs((double)got[i] - ref[i]);
        double ratio = d <= tol ? (tol > 0 ? d / tol : 0) : (d > tol ? (tol > 0 ? d / tol : INFINITY) : INFINITY);
        if (!(d <= tol)) bad = 1;
        if (ratio > worst_ratio) worst_ratio = ratio, worst = i;
    }
    CHECK(!bad, "%s: element %zu: got %.9g, reference %.9g (error / tolerance %.3g)", what, worst,
          (double)got[worst], ref[worst], worst_ratio);
}

static int same_bits(const void *a, const void *b, size_t bytes) { return memcmp(a, b, bytes) == 0; }

/* ------------------------------------------------------------------ memory */

static void test_mem(void) {
    for (int c = 0; c < PL_MEM_NCAT; c++) CHECK(strcmp(pl_mem_cat_name((pl_mem_cat)c), "?") != 0, "cat %d has a name", c);
    CHECK(strcmp(pl_mem_cat_name(PL_MEM_KVCACHE), "kvcache") == 0, "kvcache name: %s", pl_mem_cat_name(PL_MEM_KVCACHE));
    CHECK(strcmp(pl_mem_cat_name(PL_MEM_NCAT), "?") == 0, "out-of-range category name");

    size_t cur0[PL_MEM_NCAT];
    for (int c = 0; c < PL_MEM_NCAT; c++) cur0[c] = pl_mem_current((pl_mem_cat)c);
    pl_mem_reset_peak();
    for (int c = 0; c < PL_MEM_NCAT; c++) CHECK(pl_mem_peak((pl_mem_cat)c) == cur0[c], "reset_peak sets peak to current");

    unsigned char *a = be->alloc(1000, PL_MEM_ACTIVATIONS);
    unsigned char *b = be->alloc(3, PL_MEM_ACTIVATIONS);
    unsigned char *g = be->alloc(4096 + 7, PL_MEM_GRADIENTS);
    CHECK(a && b && g, "alloc returned NULL");
    if (!a || !b || !g) return;
    CHECK(((uintptr_t)a & 63) == 0 && ((uintptr_t)b & 63) == 0 && ((uintptr_t)g & 63) == 0, "64-byte alignment");
    int zero = 1;
    for (int i = 0; i < 1000; i++) zero &= a[i] == 0;
    for (int i = 0; i < 4103; i++) zero &= g[i] == 0;
    CHECK(zero, "alloc returns zeroed memory");
    memset(a, 0xab, 1000); /* writable to the last byte (ASan checks) */
    memset(g, 0xcd, 4103);
    CHECK(pl_mem_current(PL_MEM_ACTIVATIONS) == cur0[PL_MEM_ACTIVATIONS] + 1003, "activations current %zu",
          pl_mem_current(PL_MEM_ACTIVATIONS));
    CHECK(pl_mem_current(PL_MEM_GRADIENTS) == cur0[PL_MEM_GRADIENTS] + 4103, "gradients current");
    CHECK(pl_mem_current(PL_MEM_WEIGHTS) == cur0[PL_MEM_WEIGHTS], "weights untouched");
    be->free(a);
    CHECK(pl_mem_current(PL_MEM_ACTIVATIONS) == cur0[PL_MEM_ACTIVATIONS] + 3, "free lowers current");
    CHECK(pl_mem_peak(PL_MEM_ACTIVATIONS) == cur0[PL_MEM_ACTIVATIONS] + 1003, "peak stays at the high mark");
    pl_mem_reset_peak();
    CHECK(pl_mem_peak(PL_MEM_ACTIVATIONS) == cur0[PL_MEM_ACTIVATIONS] + 3, "reset_peak after free");
    be->free(b);
    be->free(g);
    be->free(NULL);
    void *z = be->alloc(0, PL_MEM_WORKSPACE);
    CHECK(z != NULL && ((uintptr_t)z & 63) == 0, "alloc(0) gives a block");
    be->free(z);
    CHECK(be->alloc(1, PL_MEM_NCAT) == NULL, "alloc with a bad category fails");
    CHECK(be->alloc(SIZE_MAX - 8, PL_MEM_WORKSPACE) == NULL, "alloc of SIZE_MAX-8 fails cleanly");

    /* thread-safe counters: 3 threads allocate and free concurrently */
    enum { NA = 600 };
    void *ptr[NA];
    omp_set_num_threads(3);
#pragma omp parallel for schedule(static, 1)
    for (int i = 0; i < NA; i++) ptr[i] = be->alloc((size_t)(i % 97) + 1, (pl_mem_cat)(i % PL_MEM_NCAT));
    size_t want[PL_MEM_NCAT] = {0};
    for (int i = 0; i < NA; i++) want[i % PL_MEM_NCAT] += (size_t)(i % 97) + 1;
    int ok = 1;
    for (int c = 0; c < PL_MEM_NCAT; c++) ok &= pl_mem_current((pl_mem_cat)c) == cur0[c] + want[c];
    CHECK(ok, "concurrent allocs counted exactly");
#pragma omp parallel for schedule(static, 1)
    for (int i = 0; i < NA; i++) be->free(ptr[i]);
    ok = 1;
    for (int c = 0; c < PL_MEM_NCAT; c++) ok &= pl_mem_current((pl_mem_cat)c) == cur0[c];
    CHECK(ok, "concurrent frees return every category to its start");
    ok = 1;
    for (int c = 0; c < PL_MEM_NCAT; c++) ok &= pl_mem_peak((pl_mem_cat)c) >= cur0[c] + want[c];
    CHECK(ok, "peak covers the concurrent high mark");
    omp_set_num_threads(2);
}

/* --------------------------------------------------------------- embedding */

static void test_embedding(void) {
    int V = 7, C = 5, T = 6;
    float *table = rnd_vec((size_t)V * C, -1, 1);
    int32_t ids[] = {3, 0, 6, 3, 1, 6};
    float *out = calloc((size_t)T * C, sizeof(float));
    be->embedding(out, ids, table, T, C);
    int ok = 1;
    for (int t = 0; t < T; t++) ok &= same_bits(out + t * C, table + ids[t] * C, (size_t)C * sizeof(float));
    CHECK(ok, "embedding rows are the table rows");
    free(table);
    free(out);
}

/* ------------------------------------------------------------------ rmsnorm */

static void ref_rmsnorm(double *out, const float *x, const float *w, int T, int C, float eps) {
    for (int t = 0; t < T; t++) {
        double ss = 0;
        for (int i = 0; i < C; i++) ss += (double)x[t * C + i] * x[t * C + i];
        double r = 1.0 / sqrt(ss / C + eps);
        for (int i = 0; i < C; i++) out[t * C + i] = x[t * C + i] * r * w[i];
    }
}

static void test_rmsnorm(void) {
    int shapes[][2] = {{1, 1}, {1, 7}, {5, 7}, {3, 257}, {2, 576}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int T = shapes[s][0], C = shapes[s][1];
        size_t n = (size_t)T * C;
        float *x = rnd_vec(n, -3, 3), *w = rnd_vec((size_t)C, 0.5f, 1.5f), *out = malloc(n * sizeof(float));
        double *ref = malloc(n * sizeof(double));
        float eps = 1e-5f;
        ref_rmsnorm(ref, x, w, T, C, eps);
        be->rmsnorm(out, x, w, T, C, eps);
        char what[64];
        snprintf(what, sizeof what, "rmsnorm T=%d C=%d", T, C);
        check_close(what, out, ref, NULL, n, 1e-5, 1e-7);
        /* in place gives the same bits */
        float *y = dup_vec(x, n);
        be->rmsnorm(y, y, w, T, C, eps);
        CHECK(same_bits(y, out, n * sizeof(float)), "%s: in place (out == x) same bits", what);
        free(x), free(w), free(out), free(ref), free(y);
    }
    /* a zero row stays finite thanks to eps */
    float x0[4] = {0}, w0[4] = {1, 1, 1, 1}, o0[4];
    be->rmsnorm(o0, x0, w0, 1, 4, 1e-6f);
    CHECK(o0[0] == 0 && o0[3] == 0, "rmsnorm of a zero row is zero");
}

/* --------------------------------------------------------------------- rope */

/* The reference rotates pair (x[i], x[i+hd/2]) by angle a = pos * inv_freq[i]
 * with a formed in fp32 (as Hugging Face's float32 inv_freq @ position does),
 * then cos/sin and the rotation in double. */
static void ref_rope(double *out, const float *x, const int32_t *pos, const float *inv_freq, int T, int nh, int hd) {
    int half = hd / 2;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < nh; h++) {
            const float *xh = x + ((size_t)t * nh + h) * hd;
            double *oh = out + ((size_t)t * nh + h) * hd;
            for (int d = 0; d < hd; d++) oh[d] = xh[d];
            for (int i = 0; i < half; i++) {
                double a = (double)((float)pos[t] * inv_freq[i]);
                double c = cos(a), s = sin(a);
                oh[i] = xh[i] * c - xh[i + half] * s;
                oh[i + half] = xh[i] * s + xh[i + half] * c;
            }
        }
}

static void test_rope(void) {
    int hds[] = {6, 10, 64, 7};
    for (size_t k = 0; k < sizeof hds / sizeof hds[0]; k++) {
        int hd = hds[k], nh = 3, T = 5;
        int32_t pos[] = {5, 6, 7, 1000, 123457}; /* not starting at 0, one far position */
        float *inv = malloc((size_t)(hd / 2 + 1) * sizeof(float));
        for (int i = 0; i < hd / 2; i++) inv[i] = (float)pow(10000.0, -2.0 * i / (hd & ~1));
        size_t n = (size_t)T * nh * hd;
        float *x = rnd_vec(n, -2, 2), *y = dup_vec(x, n);
        double *ref = malloc(n * sizeof(double)), *mag = malloc(n * sizeof(double));
        ref_rope(ref, x, pos, inv, T, nh, hd);
        for (size_t i = 0; i < n; i++) mag[i] = 4.0; /* |x0 c| + |x1 s| <= 2 * max|x| */
        be->rope(y, pos, inv, T, nh, hd);
        char what[64];
        snprintf(what, sizeof what, "rope hd=%d", hd);
        check_close(what, y, ref, mag, n, 2e-6, 0);
        if (hd & 1) { /* the odd last element of each head is untouched */
            int ok = 1;
            for (int r = 0; r < T * nh; r++) ok &= y[(size_t)r * hd + hd - 1] == x[(size_t)r * hd + hd - 1];
            CHECK(ok, "%s: odd last element untouched", what);
        }
        /* per-head helper gives the same bits as the per-row one the op uses */
        float *z = dup_vec(x, n);
        for (int t = 0; t < T; t++)
            for (int h = 0; h < nh; h++) pl_rope_head(z + ((size_t)t * nh + h) * hd, hd, pos[t], inv);
        CHECK(same_bits(z, y, n * sizeof(float)), "%s: pl_rope_head == op bits", what);
        /* position 0 is the identity */
        int32_t p0[5] = {0, 0, 0, 0, 0};
        float *w = dup_vec(x, n);
        be->rope(w, p0, inv, T, nh, hd);
        CHECK(same_bits(w, x, n * sizeof(float)), "%s: position 0 is the identity", what);
        free(inv), free(x), free(y), free(z), free(w), free(ref), free(mag);
    }
}

/* ------------------------------------------------------------ swiglu, add */

static void test_swiglu_add(void) {
    int T = 3, H = 11;
    size_t n = (size_t)T * H;
    float *g = rnd_vec(n, -6, 6), *u = rnd_vec(n, -2, 2), *out = malloc(n * sizeof(float));
    g[0] = -100.0f, g[1] = 100.0f, g[2] = 0.0f, g[3] = -1e30f;
    double *ref = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) ref[i] = (double)g[i] / (1.0 + exp(-(double)g[i])) * u[i];
    be->swiglu(out, g, u, T, H);
    check_close("swiglu", out, ref, NULL, n, 2e-6, 1e-30);
    CHECK(isfinite(out[3]) && fabsf(out[3]) == 0.0f, "swiglu(-1e30) is 0, got %g", (double)out[3]);
    float *gg = dup_vec(g, n);
    be->swiglu(gg, gg, u, T, H);
    CHECK(same_bits(gg, out, n * sizeof(float)), "swiglu in place (out == gate) same bits");

    size_t m = 1001;
    float *a = rnd_vec(m, -1, 1), *b = rnd_vec(m, -1, 1), *s = malloc(m * sizeof(float));
    be->add(s, a, b, m);
    int ok = 1;
    for (size_t i = 0; i < m; i++) ok &= s[i] == a[i] + b[i];
    CHECK(ok, "add exact");
    float *a2 = dup_vec(a, m);
    be->add(a2, a2, b, m);
    CHECK(same_bits(a2, s, m * sizeof(float)), "add in place (out == a)");
    float *b2 = dup_vec(b, m);
    be->add(b2, a, b2, m);
    CHECK(same_bits(b2, s, m * sizeof(float)), "add in place (out == b)");
    free(g), free(u), free(out), free(ref), free(gg), free(a), free(b), free(s), free(a2), free(b2);
}

/* ------------------------------------------------------------------ linear */

/* ref (T,O) = x . w^T + bias in double; mag (T,O) = sum |x w| + |bias|. */
static void ref_linear(double *ref, double *mag, const float *x, const float *w, const float *bias, int T, int I, int O) {
    for (int t = 0; t < T; t++)
        for (int o = 0; o < O; o++) {
            double s = bias ? bias[o] : 0, m = bias ? fabs(bias[o]) : 0;
            for (int i = 0; i < I; i++) {
                double p = (double)x[(size_t)t * I + i] * w[(size_t)o * I + i];
                s += p, m += fabs(p);
            }
            ref[(size_t)t * O + o] = s, mag[(size_t)t * O + o] = m;
        }
}

static void test_linear(void) {
    int Ts[] = {1, 3, 37}, Is[] = {7, 33}, Os[] = {5, 19};
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 2; b++)
            for (int c = 0; c < 2; c++)
                for (int hb = 0; hb < 2; hb++) {
                    int T = Ts[a], I = Is[b], O = Os[c];
                    float *x = rnd_vec((size_t)T * I, -1, 1), *w = rnd_vec((size_t)O * I, -1, 1);
                    float *bias = hb ? rnd_vec((size_t)O, -1, 1) : NULL;
                    float *out = malloc((size_t)T * O * sizeof(float));
                    double *ref = malloc((size_t)T * O * sizeof(double)), *mag = malloc((size_t)T * O * sizeof(double));
                    for (int i = 0; i < T * O; i++) out[i] = NAN; /* every output must be written */
                    ref_linear(ref, mag, x, w, bias, T, I, O);
                    be->linear(out, x, w, bias, T, I, O);
                    char what[80];
                    snprintf(what, sizeof what, "linear T=%d I=%d O=%d bias=%d", T, I, O, hb);
                    check_close(what, out, ref, mag, (size_t)T * O, 1e-5, 1e-7);
                    free(x), free(w), free(bias), free(out), free(ref), free(mag);
                }
    /* I = 0: an empty sum gives the bias (or zeros), T = 1 and T > 1 */
    float b3[3] = {1, 2, 3}, o6[6] = {9, 9, 9, 9, 9, 9}, xx[1] = {0}, ww[1] = {0};
    be->linear(o6, xx, ww, b3, 2, 0, 3);
    CHECK(o6[0] == 1 && o6[2] == 3 && o6[3] == 1 && o6[5] == 3, "linear with I=0 gives the bias");
    be->linear(o6, xx, ww, NULL, 1, 0, 3);
    CHECK(o6[0] == 0 && o6[2] == 0, "linear with I=0 and no bias gives zeros");
}

/* ---------------------------------------------------------------- linear_q */

/* Build a weight (O rows, I cols) of dtype t from src floats; returns bytes. */
static void *make_qweight(pl_dtype t, const float *src, int O, int I, size_t *row_bytes) {
    size_t rb = pl_dtype_row_bytes(t, I);
    unsigned char *buf = malloc(rb * (size_t)O);
    for (int o = 0; o < O; o++) {
        const float *s = src + (size_t)o * I;
        unsigned char *d = buf + rb * (size_t)o;
        switch (t) {
        case PL_F32: memcpy(d, s, rb); break;
        case PL_F16:
            for (int i = 0; i < I; i++) { uint16_t h = pl_f32_to_f16(s[i]); memcpy(d + 2 * i, &h, 2); }
            break;
        case PL_BF16:
            for (int i = 0; i < I; i++) { uint16_t h = pl_f32_to_bf16(s[i]); memcpy(d + 2 * i, &h, 2); }
            break;
        case PL_Q8_0: pl_quantize_row_q8_0(s, (pl_block_q8_0 *)d, I); break;
        case PL_Q4_0: pl_quantize_row_q4_0(s, (pl_block_q4_0 *)d, I); break;
        case PL_Q4_1: pl_quantize_row_q4_1(s, (pl_block_q4_1 *)d, I); break;
        case PL_Q6_K: /* random blocks with sane scales (no quantizer in core) */
            for (int blk = 0; blk < I / PL_QK_K; blk++) {
                pl_block_q6_K *q = (pl_block_q6_K *)d + blk;
                for (size_t j = 0; j < sizeof q->ql; j++) q->ql[j] = (uint8_t)rnd_u64();
                for (size_t j = 0; j < sizeof q->qh; j++) q->qh[j] = (uint8_t)rnd_u64();
                for (size_t j = 0; j < sizeof q->scales; j++) q->scales[j] = (int8_t)((int)(rnd_u64() % 200) - 100);
                q->d = pl_f32_to_f16(rnd_unif(0.5e-3f, 2e-3f));
            }
            break;
        default: break;
        }
    }
    *row_bytes = rb;
    return buf;
}

static void test_linear_q(void) {
    CHECK(3 < PL_CPU_LINQ_DOT_MAX_T && 37 >= PL_CPU_LINQ_DOT_MAX_T, "T=1 and 3 take the dot path, T=37 the sgemm path");
    /* the workspace size never shrinks as cols grow (a buffer for the widest
     * weight serves all), holds at least 64 rows, and stays bounded */
    int mono = 1, bounded = 1;
    size_t prev = 0;
    for (int64_t cols = 1; cols <= 70000; cols += cols < 5000 ? 1 : 7) {
        size_t w = pl_cpu_linear_q_workspace(cols);
        mono &= w >= prev;
        bounded &= w >= (size_t)(64 * cols) && w <= (size_t)(256 * cols) && (w <= ((size_t)1 << 20) || w == (size_t)(64 * cols));
        prev = w;
    }
    CHECK(mono, "pl_cpu_linear_q_workspace is monotone in cols");
    CHECK(bounded, "pl_cpu_linear_q_workspace within [64, 256] rows and ~1M floats");
    pl_dtype types[] = {PL_F32, PL_F16, PL_BF16, PL_Q8_0, PL_Q4_0, PL_Q4_1, PL_Q6_K};
    int Ts[] = {1, 3, 37};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        pl_dtype t = types[k];
        int I = t == PL_Q6_K ? 512 : 96, O = 300; /* 300 rows: two workspace blocks, the last partial */
        float *src = rnd_vec((size_t)O * I, -1, 1);
        pl_qweight w = {.dtype = t, .rows = O, .cols = I};
        void *data = make_qweight(t, src, O, I, &w.row_bytes);
        w.data = data;
        CHECK(w.row_bytes > 0, "row bytes of %s", pl_dtype_name(t));
        if (!w.row_bytes) { free(src), free(data); continue; }
        /* the reference multiplies the dequantized weight */
        float *deq = malloc((size_t)O * I * sizeof(float));
        int ok = 1;
        for (int o = 0; o < O; o++)
            ok &= pl_dequantize_row(t, (unsigned char *)data + (size_t)o * w.row_bytes, deq + (size_t)o * I, I) == 0;
        CHECK(ok, "%s: dequantize", pl_dtype_name(t));
        size_t wsn = pl_cpu_linear_q_workspace(I);
        CHECK(wsn >= (size_t)64 * I && wsn <= (size_t)256 * I, "workspace %zu floats for cols %d", wsn, I);
        float *ws = malloc(wsn * sizeof(float));
        for (int a = 0; a < 3; a++)
            for (int hb = 0; hb < 2; hb++) {
                int T = Ts[a];
                float *x = rnd_vec((size_t)T * I, -1, 1), *bias = hb ? rnd_vec((size_t)O, -1, 1) : NULL;
                float *out = malloc((size_t)T * O * sizeof(float));
                for (int i = 0; i < T * O; i++) out[i] = NAN;
                double *ref = malloc((size_t)T * O * sizeof(double)), *mag = malloc((size_t)T * O * sizeof(double));
                ref_linear(ref, mag, x, deq, bias, T, I, O);
                be->linear_q(out, x, &w, bias, T, ws);
                char what[80];
                snprintf(what, sizeof what, "linear_q %s T=%d bias=%d", pl_dtype_name(t), T, hb);
                check_close(what, out, ref, mag, (size_t)T * O, 1e-5, 1e-7);
                free(x), free(bias), free(out), free(ref), free(mag);
            }
        free(src), free(data), free(deq), free(ws);
    }
}

/* --------------------------------------------------------------- attention */

/* ref out (Tq, nh*hd) and mag = sum_j p_j |v_j| per element, in double. */
static void ref_attention(double *out, double *mag, const float *q, const float *k, const float *v, const int32_t *qlast,
                          const int32_t *qseg, const int32_t *kseg, int Tq, int Tk, int nh, int nkv, int hd) {
    double *p = malloc((size_t)(Tk > 0 ? Tk : 1) * sizeof(double));
    int group = nh / nkv;
    for (int i = 0; i < Tq; i++)
        for (int h = 0; h < nh; h++) {
            int kh = h / group;
            double *o = out + ((size_t)i * nh + h) * hd, *mg = mag + ((size_t)i * nh + h) * hd;
            for (int d = 0; d < hd; d++) o[d] = 0, mg[d] = 0;
            double mx = -INFINITY;
            int any = 0;
            for (int j = 0; j < Tk; j++) {
                int vis = j <= qlast[i] && (!qseg || kseg[j] == qseg[i]);
                p[j] = NAN;
                if (!vis) continue;
                double s = 0;
                for (int d = 0; d < hd; d++) s += (double)q[((size_t)i * nh + h) * hd + d] * k[((size_t)j * nkv + kh) * hd + d];
                p[j] = s / sqrt((double)hd);
                if (p[j] > mx) mx = p[j];
                any = 1;
            }
            if (!any) continue;
            double sum = 0;
            for (int j = 0; j < Tk; j++)
                if (p[j] == p[j]) p[j] = exp(p[j] - mx), sum += p[j];
            for (int j = 0; j < Tk; j++) {
                if (p[j] != p[j]) continue;
                for (int d = 0; d < hd; d++) {
                    double vv = v[((size_t)j * nkv + kh) * hd + d];
                    o[d] += p[j] / sum * vv;
                    mg[d] += p[j] / sum * fabs(vv);
                }
            }
        }
    free(p);
}

/* The key-by-key fp32 definition of pl_attention_query (its comment): the op
 * (blocked by four keys, maybe an AVX2 build) must give exactly these bits. */
static void def_attention_query(float *out, const float *q, const float *k, const float *v, long ld, int hd, float scale,
                                int jend, const int32_t *kseg, int32_t seg, float *s) {
    for (int d = 0; d < hd; d++) out[d] = 0.0f;
    float m = -INFINITY;
    int any = 0;
    for (int j = 0; j < jend; j++) {
        if (kseg && kseg[j] != seg) continue;
        s[j] = pl_dot(q, k + j * ld, hd) * scale;
        if (s[j] > m) m = s[j];
        any = 1;
    }
    if (!any) return;
    float sum = 0.0f;
    for (int j = 0; j < jend; j++) {
        if (kseg && kseg[j] != seg) continue;
        s[j] = expf(s[j] - m);
        sum += s[j];
    }
    float inv = 1.0f / sum;
    for (int j = 0; j < jend; j++) {
        if (kseg && kseg[j] != seg) continue;
        pl_axpy(out, s[j] * inv, v + j * ld, hd);
    }
}

/* The whole op from def_attention_query; out (Tq, nh*hd). */
static void def_attention(float *out, const float *q, const float *k, const float *v, const int32_t *qlast,
                          const int32_t *qseg, const int32_t *kseg, int Tq, int Tk, int nh, int nkv, int hd) {
    float *s = malloc((size_t)(Tk > 0 ? Tk : 1) * sizeof(float));
    for (int i = 0; i < Tq; i++)
        for (int h = 0; h < nh; h++) {
            int jend = qlast[i] + 1 < Tk ? qlast[i] + 1 : Tk;
            if (jend < 0) jend = 0;
            def_attention_query(out + ((size_t)i * nh + h) * hd, q + ((size_t)i * nh + h) * hd, k + (size_t)(h / (nh / nkv)) * hd,
                                v + (size_t)(h / (nh / nkv)) * hd, (long)nkv * hd, hd, 1.0f / sqrtf((float)hd), jend,
                                qseg && kseg ? kseg : NULL, qseg && kseg ? qseg[i] : 0, s);
        }
    free(s);
}

typedef struct attn_case {
    const char *name;
    int Tq, Tk, nh, nkv, hd;
    const int32_t *qlast, *qseg, *kseg;
} attn_case;

/* Run one case against the reference; returns the op's output (caller frees). */
static float *run_attn_case(const attn_case *c, const float *q, const float *k, const float *v) {
    size_t no = (size_t)c->Tq * c->nh * c->hd;
    float *out = malloc(no * sizeof(float));
    for (size_t i = 0; i < no; i++) out[i] = NAN;
    double *ref = malloc(no * sizeof(double)), *mag = malloc(no * sizeof(double));
    ref_attention(ref, mag, q, k, v, c->qlast, c->qseg, c->kseg, c->Tq, c->Tk, c->nh, c->nkv, c->hd);
    be->attention(out, q, k, v, c->qlast, c->qseg, c->kseg, c->Tq, c->Tk, c->nh, c->nkv, c->hd);
    check_close(c->name, out, ref, mag, no, 1e-5, 1e-7);
    float *def = malloc(no * sizeof(float));
    def_attention(def, q, k, v, c->qlast, c->qseg, c->kseg, c->Tq, c->Tk, c->nh, c->nkv, c->hd);
    CHECK(same_bits(def, out, no * sizeof(float)), "%s: same bits as the key-by-key fp32 definition", c->name);
    free(ref), free(mag), free(def);
    return out;
}

static void test_attention(void) {
    int32_t ql[64], seg3[9] = {0, 0, 0, 1, 1, 2, 2, 2, 2};
    for (int i = 0; i < 64; i++) ql[i] = i;

    /* training shapes: GQA ratios 1, 3, 4; hd 6, 10, 64 */
    struct { int T, nh, nkv, hd; } tr[] = {{7, 4, 4, 6}, {9, 6, 2, 10}, {8, 8, 2, 64}, {1, 3, 1, 10}};
    for (size_t s = 0; s < sizeof tr / sizeof tr[0]; s++) {
        int T = tr[s].T, nh = tr[s].nh, nkv = tr[s].nkv, hd = tr[s].hd;
        float *q = rnd_vec((size_t)T * nh * hd, -2, 2), *k = rnd_vec((size_t)T * nkv * hd, -2, 2),
              *v = rnd_vec((size_t)T * nkv * hd, -1, 1);
        char name[80];
        snprintf(name, sizeof name, "attention causal T=%d nh=%d nkv=%d hd=%d", T, nh, nkv, hd);
        attn_case c = {name, T, T, nh, nkv, hd, ql, NULL, NULL};
        free(run_attn_case(&c, q, k, v));
        free(q), free(k), free(v);
    }

    /* three packed samples in one row, GQA 3, hd 10; then the same with
     * interleaved segment ids (the semantics are per key, not per range) */
    int32_t segi[9] = {0, 1, 0, 2, 1, 0, 2, 2, 1};
    for (int il = 0; il < 2; il++) {
        const int32_t *sg = il ? segi : seg3;
        int T = 9, nh = 6, nkv = 2, hd = 10;
        size_t nq = (size_t)T * nh * hd, nk = (size_t)T * nkv * hd;
        float *q = rnd_vec(nq, -2, 2), *k = rnd_vec(nk, -2, 2), *v = rnd_vec(nk, -1, 1);
        attn_case c = {il ? "attention interleaved segments" : "attention 3 segments", T, T, nh, nkv, hd, ql, sg, sg};
        float *out = run_attn_case(&c, q, k, v);
        /* structural: changing the keys/values of any other segment, or of a
         * later position, must not change a query's output bits */
        int ok = 1;
        for (int i = 0; i < T; i++) {
            float *k2 = dup_vec(k, nk), *v2 = dup_vec(v, nk), *o2 = malloc(nq * sizeof(float));
            for (int j = 0; j < T; j++)
                if (sg[j] != sg[i] || j > i)
                    for (int d = 0; d < nkv * hd; d++) k2[(size_t)j * nkv * hd + d] += 5.0f, v2[(size_t)j * nkv * hd + d] -= 3.0f;
            be->attention(o2, q, k2, v2, ql, sg, sg, T, T, nh, nkv, hd);
            ok &= same_bits(o2 + (size_t)i * nh * hd, out + (size_t)i * nh * hd, (size_t)nh * hd * sizeof(float));
            free(k2), free(v2), free(o2);
        }
        CHECK(ok, "%s: a query's output ignores other segments and later keys", c.name);
        /* the first query of each segment sees only itself: output = its v */
        int firsts[] = {0, il ? 1 : 3, il ? 3 : 5};
        ok = 1;
        for (int f = 0; f < 3; f++)
            for (int h = 0; h < nh; h++)
                ok &= same_bits(out + ((size_t)firsts[f] * nh + h) * hd, v + ((size_t)firsts[f] * nkv + h / 3) * hd,
                                (size_t)hd * sizeof(float));
        CHECK(ok, "%s: a segment's first query returns its own v", c.name);
        free(q), free(k), free(v), free(out);
    }

    /* a larger packed row: hd 128, GQA 4 to one kv head, three samples */
    {
        int T = 70, nh = 4, nkv = 1, hd = 128;
        int32_t q70[70], s70[70];
        for (int i = 0; i < T; i++) q70[i] = i, s70[i] = i < 20 ? 0 : i < 50 ? 1 : 2;
        float *q = rnd_vec((size_t)T * nh * hd, -1, 1), *k = rnd_vec((size_t)T * nkv * hd, -1, 1),
              *v = rnd_vec((size_t)T * nkv * hd, -1, 1);
        attn_case c = {"attention T=70 hd=128 nh=4 nkv=1 3 segments", T, T, nh, nkv, hd, q70, s70, s70};
        free(run_attn_case(&c, q, k, v));
        free(q), free(k), free(v);
    }

    /* KV cache: Tq=3 queries at positions 5,6,7 against Tk=8 keys, GQA 4;
     * the same bits as rows 5..7 of the full causal pass */
    {
        int Tk = 8, nh = 8, nkv = 2, hd = 64;
        size_t nk = (size_t)Tk * nkv * hd, rowq = (size_t)nh * hd;
        float *qf = rnd_vec((size_t)Tk * rowq, -2, 2), *k = rnd_vec(nk, -2, 2), *v = rnd_vec(nk, -1, 1);
        int32_t qlast[3] = {5, 6, 7};
        attn_case c = {"attention kv-cache Tq=3 Tk=8", 3, Tk, nh, nkv, hd, qlast, NULL, NULL};
        float *out = run_attn_case(&c, qf + 5 * rowq, k, v);
        float *full = malloc((size_t)Tk * rowq * sizeof(float));
        be->attention(full, qf, k, v, ql, NULL, NULL, Tk, Tk, nh, nkv, hd);
        CHECK(same_bits(out, full + 5 * rowq, 3 * rowq * sizeof(float)), "attention: cached queries == full pass rows 5..7");
        /* qlast beyond Tk is clamped to the cache */
        int32_t qbig[1] = {1000};
        float *o1 = malloc(rowq * sizeof(float));
        be->attention(o1, qf + 7 * rowq, k, v, qbig, NULL, NULL, 1, Tk, nh, nkv, hd);
        CHECK(same_bits(o1, full + 7 * rowq, rowq * sizeof(float)), "attention: qlast >= Tk sees the whole cache");
        free(qf), free(k), free(v), free(out), free(full), free(o1);
    }

    /* queries that see nothing: qlast = -1, and a segment with no key at or before qlast */
    {
        int Tq = 3, Tk = 4, nh = 2, nkv = 1, hd = 6;
        float *q = rnd_vec((size_t)Tq * nh * hd, -1, 1), *k = rnd_vec((size_t)Tk * hd, -1, 1), *v = rnd_vec((size_t)Tk * hd, -1, 1);
        int32_t qlast[3] = {-1, 1, 3}, qseg[3] = {0, 7, 1}, kseg[4] = {0, 0, 1, 1};
        attn_case c = {"attention empty queries", Tq, Tk, nh, nkv, hd, qlast, qseg, kseg};
        float *out = run_attn_case(&c, q, k, v);
        int ok = 1;
        for (int d = 0; d < 2 * nh * hd; d++) ok &= out[d] == 0.0f;
        CHECK(ok, "attention: queries that see no key output zeros");
        float *o2 = malloc((size_t)Tq * nh * hd * sizeof(float));
        int32_t qneg[3] = {-1, -5, -1};
        be->attention(o2, q, k, v, qneg, NULL, NULL, Tq, Tk, nh, nkv, hd);
        ok = 1;
        for (int d = 0; d < Tq * nh * hd; d++) ok &= o2[d] == 0.0f;
        CHECK(ok, "attention: negative qlast outputs zeros");
        free(q), free(k), free(v), free(out), free(o2);
    }

    /* large scores stay stable: mixed (~ +-1000), and all very negative
     * (exp(score) underflows fp32 unless the max is subtracted) */
    for (int neg = 0; neg < 2; neg++) {
        int T = 5, nh = 2, nkv = 2, hd = 10;
        float *q = rnd_vec((size_t)T * nh * hd, neg ? 5 : -30, 30), *k = rnd_vec((size_t)T * nkv * hd, -30, neg ? -5 : 30),
              *v = rnd_vec((size_t)T * nkv * hd, -1, 1);
        attn_case c = {neg ? "attention very negative scores" : "attention large scores", T, T, nh, nkv, hd, ql, NULL, NULL};
        float *out = run_attn_case(&c, q, k, v);
        int ok = 1;
        for (int i = 0; i < T * nh * hd; i++) ok &= isfinite(out[i]);
        CHECK(ok, "attention large scores finite");
        free(q), free(k), free(v), free(out);
    }
}

/* ------------------------------------------------------------ cross-entropy */

static double ref_ce_row(const float *x, int V, int target) {
    double m = -INFINITY, s = 0;
    for (int i = 0; i < V; i++) m = fmax(m, x[i]);
    for (int i = 0; i < V; i++) s += exp(x[i] - m);
    return m + log(s) - x[target];
}

static void test_cross_entropy(void) {
    int shapes[][2] = {{6, 37}, {300, 1000}, {1, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int T = shapes[s][0], V = shapes[s][1];
        float *logits = rnd_vec((size_t)T * V, -8, 8);
        int32_t *tg = malloc((size_t)T * sizeof(int32_t));
        for (int t = 0; t < T; t++) tg[t] = (int32_t)(rnd_u64() % (uint64_t)V);
        if (T >= 6) {
            tg[1] = -100, tg[4] = -100, tg[0] = 0, tg[2] = V - 1;
            logits[(size_t)3 * V + 5] = 95.0f; /* a huge logit (exp overflows fp32): stable lse */
            logits[(size_t)5 * V + 1] = -90.0f;
        }
        float *losses = malloc((size_t)T * sizeof(float));
        double *ref = malloc((size_t)T * sizeof(double));
        double rsum = 0;
        int64_t rvalid = 0;
        for (int t = 0; t < T; t++) {
            ref[t] = tg[t] < 0 ? 0.0 : ref_ce_row(logits + (size_t)t * V, V, tg[t]);
            if (tg[t] >= 0) rsum += ref[t], rvalid++;
        }
        int64_t nv = -1;
        double sum = be->cross_entropy(logits, tg, T, V, losses, &nv);
        char what[64];
        snprintf(what, sizeof what, "cross_entropy T=%d V=%d", T, V);
        double *mag = malloc((size_t)T * sizeof(double));
        for (int t = 0; t < T; t++) mag[t] = fabs(ref[t]) + 10.0; /* lse's own scale (|max| + log V) bounds fp32 error */
        check_close(what, losses, ref, mag, (size_t)T, 1e-6, 0);
        CHECK(nv == rvalid, "%s: n_valid %lld, expected %lld", what, (long long)nv, (long long)rvalid);
        CHECK(fabs(sum - rsum) <= 1e-6 * (fabs(rsum) + 10.0 * rvalid), "%s: sum %.10g vs %.10g", what, sum, rsum);
        double psum = 0;
        for (int t = 0; t < T; t++) psum += (double)losses[t];
        CHECK(psum == sum, "%s: sum is the row-order sum of the row losses", what);
        int zero = 1;
        for (int t = 0; t < T; t++)
            if (tg[t] < 0) zero &= losses[t] == 0.0f;
        CHECK(zero, "%s: ignored rows have loss 0", what);
        double sum2 = be->cross_entropy(logits, tg, T, V, NULL, NULL);
        CHECK(sum2 == sum, "%s: losses NULL gives the same sum", what);
        free(logits), free(tg), free(losses), free(ref), free(mag);
    }
    /* all rows ignored */
    float lg[6] = {1, 2, 3, 4, 5, 6};
    int32_t tg[2] = {-100, -1};
    int64_t nv = 7;
    double s = be->cross_entropy(lg, tg, 2, 3, NULL, &nv);
    CHECK(s == 0.0 && nv == 0, "cross_entropy all ignored: sum %g n_valid %lld", s, (long long)nv);
}

/* ------------------------------------------------------------ determinism */

/* Each op runs twice at 1, 2 and 3 threads on shapes large enough to fork.
 * thread_free: the op promises the same bits at every thread count. */
typedef void (*op_fn)(float *out, void *ctx);

static void det_check(const char *name, op_fn fn, void *ctx, size_t nout, int thread_free, int *cross_same) {
    float *first = NULL;
    int run_ok = 1, cross_ok = 1;
    for (int nt = 1; nt <= 3; nt++) {
        omp_set_num_threads(nt);
        float *a = malloc(nout * sizeof(float)), *b = malloc(nout * sizeof(float));
        fn(a, ctx);
        fn(b, ctx);
        run_ok &= same_bits(a, b, nout * sizeof(float));
        if (!first) first = a;
        else {
            cross_ok &= same_bits(a, first, nout * sizeof(float));
            free(a);
        }
        free(b);
    }
    free(first);
    omp_set_num_threads(2);
    CHECK(run_ok, "%s: same bits run after run at 1, 2 and 3 threads", name);
    if (thread_free) CHECK(cross_ok, "%s: same bits with 1, 2 and 3 threads", name);
    if (cross_same) *cross_same = cross_ok;
}

typedef struct det_ctx {
    float *x, *y, *w, *bias, *ws;
    int32_t *ids, *pos, *ql, *seg;
    float *inv;
    pl_qweight qw;
    int T, C, nh, nkv, hd;
} det_ctx;

static void d_rmsnorm(float *out, void *p) { det_ctx *c = p; be->rmsnorm(out, c->x, c->w, c->T, c->C, 1e-5f); }
static void d_rope(float *out, void *p) {
    det_ctx *c = p;
    memcpy(out, c->x, (size_t)c->T * c->nh * c->hd * sizeof(float));
    be->rope(out, c->pos, c->inv, c->T, c->nh, c->hd);
}
static void d_swiglu(float *out, void *p) { det_ctx *c = p; be->swiglu(out, c->x, c->y, c->T, c->C); }
static void d_add(float *out, void *p) { det_ctx *c = p; be->add(out, c->x, c->y, (size_t)c->T * c->C); }
static void d_embedding(float *out, void *p) { det_ctx *c = p; be->embedding(out, c->ids, c->w, c->T, c->C); }
static void d_attention(float *out, void *p) {
    det_ctx *c = p;
    be->attention(out, c->x, c->y, c->w, c->ql, c->seg, c->seg, c->T, c->T, c->nh, c->nkv, c->hd);
}
static void d_attention_gen(float *out, void *p) {
    det_ctx *c = p; /* one query at the last position against the whole cache */
    be->attention(out, c->x + (size_t)(c->T - 1) * c->nh * c->hd, c->y, c->w, c->ql + c->T - 1, NULL, NULL, 1, c->T, c->nh,
                  c->nkv, c->hd);
}
static void d_linear(float *out, void *p) { det_ctx *c = p; be->linear(out, c->x, c->w, c->bias, c->T, c->C, c->nh); }
static void d_linear_q(float *out, void *p) { det_ctx *c = p; be->linear_q(out, c->x, &c->qw, c->bias, c->T, c->ws); }
static void d_ce(float *out, void *p) {
    det_ctx *c = p;
    double s = be->cross_entropy(c->x, c->ids, c->T, c->C, out + 2, NULL);
    memcpy(out, &s, sizeof s); /* out[0..1] = the double sum, then the losses */
}

static void test_determinism(void) {
    det_ctx c;
    memset(&c, 0, sizeof c);
    /* rmsnorm, swiglu, add, embedding: 64 x 513 */
    c.T = 64, c.C = 513;
    c.x = rnd_vec((size_t)c.T * c.C, -3, 3), c.y = rnd_vec((size_t)c.T * c.C, -3, 3), c.w = rnd_vec((size_t)c.T * c.C, 0, 2);
    c.ids = malloc((size_t)c.T * sizeof(int32_t));
    for (int t = 0; t < c.T; t++) c.ids[t] = (int32_t)(rnd_u64() % (uint64_t)c.T);
    det_check("rmsnorm", d_rmsnorm, &c, (size_t)c.T * c.C, 1, NULL);
    det_check("swiglu", d_swiglu, &c, (size_t)c.T * c.C, 1, NULL);
    det_check("add", d_add, &c, (size_t)c.T * c.C, 1, NULL);
    det_check("embedding", d_embedding, &c, (size_t)c.T * c.C, 1, NULL);
    /* cross_entropy: T=300 rows of V=513 (two chunks), ignored rows mixed in */
    {
        det_ctx e = c;
        e.T = 300, e.C = 513;
        e.x = rnd_vec((size_t)e.T * e.C, -5, 5);
        e.ids = malloc((size_t)e.T * sizeof(int32_t));
        for (int t = 0; t < e.T; t++) e.ids[t] = t % 7 == 3 ? -100 : (int32_t)(rnd_u64() % (uint64_t)e.C);
        det_check("cross_entropy", d_ce, &e, (size_t)e.T + 2, 1, NULL);
        free(e.x), free(e.ids);
    }
    free(c.x), free(c.y), free(c.w), free(c.ids);

    /* rope and attention: T=64, nh=4, nkv=2, hd=64, two segments */
    memset(&c, 0, sizeof c);
    c.T = 64, c.nh = 4, c.nkv = 2, c.hd = 64;
    size_t nq = (size_t)c.T * c.nh * c.hd, nk = (size_t)c.T * c.nkv * c.hd;
    c.x = rnd_vec(nq, -2, 2), c.y = rnd_vec(nk, -2, 2), c.w = rnd_vec(nk, -1, 1);
    c.pos = malloc((size_t)c.T * sizeof(int32_t)), c.ql = malloc((size_t)c.T * sizeof(int32_t)), c.seg = malloc((size_t)c.T * sizeof(int32_t));
    c.inv = malloc((size_t)c.hd / 2 * sizeof(float));
    for (int i = 0; i < c.hd / 2; i++) c.inv[i] = (float)pow(10000.0, -2.0 * i / c.hd);
    for (int t = 0; t < c.T; t++) c.pos[t] = t < 40 ? t + 3 : t - 40, c.ql[t] = t, c.seg[t] = t < 40 ? 0 : 1;
    det_check("rope", d_rope, &c, nq, 1, NULL);
    det_check("attention (T=64, 2 segments)", d_attention, &c, nq, 1, NULL);
    det_check("attention (generation, Tq=1)", d_attention_gen, &c, (size_t)c.nh * c.hd, 1, NULL);
    free(c.x), free(c.y), free(c.w), free(c.pos), free(c.ql), free(c.seg), free(c.inv);

    /* linear: T=1 (our matvec) and T=37, T=300 (pl_gemm tiles): all thread-count free */
    memset(&c, 0, sizeof c);
    c.C = 129, c.nh = 200; /* I, O */
    c.x = rnd_vec((size_t)37 * c.C, -1, 1), c.w = rnd_vec((size_t)c.nh * c.C, -1, 1), c.bias = rnd_vec((size_t)c.nh, -1, 1);
    c.T = 1;
    det_check("linear T=1", d_linear, &c, (size_t)c.nh, 1, NULL);
    c.T = 37;
    det_check("linear T=37 (pl_gemm)", d_linear, &c, (size_t)c.T * c.nh, 1, NULL);
    free(c.x), free(c.w), free(c.bias);
    /* big enough for OpenBLAS to thread a single sgemm call, and tiles in both dimensions */
    c.C = 520, c.nh = 700, c.T = 300;
    c.x = rnd_vec((size_t)c.T * c.C, -1, 1), c.w = rnd_vec((size_t)c.nh * c.C, -1, 1), c.bias = rnd_vec((size_t)c.nh, -1, 1);
    det_check("linear T=300 I=520 O=700 (pl_gemm, 2 x 6 tiles)", d_linear, &c, (size_t)c.T * c.nh, 1, NULL);
    free(c.x), free(c.w), free(c.bias);

    /* linear_q Q4_1 300 x 256: T=3 (dot path) and T=37 (dequantize + sgemm) */
    memset(&c, 0, sizeof c);
    int O = 300, I = 256;
    float *src = rnd_vec((size_t)O * I, -1, 1);
    c.qw = (pl_qweight){.dtype = PL_Q4_1, .rows = O, .cols = I};
    void *data = make_qweight(PL_Q4_1, src, O, I, &c.qw.row_bytes);
    c.qw.data = data;
    c.ws = malloc(pl_cpu_linear_q_workspace(I) * sizeof(float));
    c.x = rnd_vec((size_t)37 * I, -1, 1), c.bias = rnd_vec((size_t)O, -1, 1);
    c.T = 3;
    det_check("linear_q Q4_1 T=3 (dot path)", d_linear_q, &c, (size_t)c.T * O, 1, NULL);
    c.T = 37;
    det_check("linear_q Q4_1 T=37 (dequantize + pl_gemm)", d_linear_q, &c, (size_t)c.T * O, 1, NULL);
    free(src), free(data), free(c.ws), free(c.x), free(c.bias);
}


/* An op that fails records why; take_error hands it over once (the caller
 * turns it into an error instead of computing on NaNs). */
static void test_op_errors(void) {
    pl_err err = {0};
    CHECK(be->take_error && be->take_error(&err) == 0, "no failure recorded at the start");
    /* Q8_1 is a layout ggml uses for activations only: its rows cannot be read as weights */
    uint8_t raw[4 * 36] = {0};
    pl_qweight w = {.dtype = PL_Q8_1, .rows = 2, .cols = 64, .row_bytes = 72, .data = raw};
    float x[64] = {0}, out[2], ws[2 * 64 * 64];
    be->linear_q(out, x, &w, NULL, 1, ws);
    int rc = be->take_error(&err);
    CHECK(rc == PL_EUNSUPPORTED && strstr(err.msg, "Q8_1"), "linear_q on an unreadable dtype: rc %d, '%s'", rc, err.msg);
    CHECK(isnan(out[0]) && isnan(out[1]), "the output is NaN, never stale numbers");
    pl_err e2 = {0};
    CHECK(be->take_error(&e2) == 0, "the failure is handed over once");
}

int main(void) {
    be = pl_backend_cpu();
    REQUIRE(be && strcmp(be->name, "cpu") == 0, "pl_backend_cpu");
    REQUIRE(be->alloc && be->free && be->embedding && be->rmsnorm && be->rope && be->attention && be->swiglu &&
                be->linear && be->linear_q && be->add && be->cross_entropy,
            "every op is filled");
    omp_set_num_threads(2);
    test_mem();
    test_embedding();
    test_rmsnorm();
    test_rope();
    test_swiglu_add();
    test_linear();
    test_op_errors();
    test_linear_q();
    test_attention();
    test_cross_entropy();
    test_determinism();
    return check_summary("test_cpu_ops");
}
