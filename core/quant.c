/* quant.c: dequantization of ggml's block types and the
 * dot products token generation runs directly on quantized weights.
 *
 * Exactness. Dequantization reproduces ggml / gguf-py bit for bit: every
 * element is computed with the same float32 operations in the same order
 * (e.g. Q4_1 is d*q + m as a multiply then an add, K-quants are
 * (d*scale)*q - (dmin*min)). This relies on the compiler not contracting
 * a*b + c into an FMA, which holds for -std=c11 (GCC's ISO modes default to
 * -ffp-contract=off) and for code built without FMA; test_quant checks it.
 *
 * Dot products. pl_vec_dot_f32 and pl_vec_dot_q8_0 have AVX2+FMA versions
 * (compiled with target attributes, chosen at run time, since the build has
 * no -march flag) and portable scalar versions. Each path sums in a fixed
 * order, so the same inputs give the same bits on every call. The two paths
 * differ from each other by float rounding only.
 *
 * Block pointers may be unaligned (a caller can slice rows anywhere), so fp16
 * fields are read with memcpy, never through the pl_block_* structs. */
#include "quant.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "half.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PL_X86 1
#else
#define PL_X86 0
#endif

/* ------------------------------------------------------------------ helpers */

static inline float ld_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return pl_f16_to_f32(h);
}

static inline void st_f16(uint8_t *p, float f) {
    uint16_t h = pl_f32_to_f16(f);
    memcpy(p, &h, 2);
}

/* Q4_K / Q5_K packed 6-bit scale and min of sub-block j (0..7). */
static inline void scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* ------------------------------------------------------------------ dequantization, one block each */

/* Q4_0: d, qs[16]; element j in the low nibble of qs[j], j+16 in the high one. */
static void deq_q4_0(const uint8_t *b, float *y) {
    const float d = ld_f16(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = (float)((qs[j] & 0xF) - 8) * d;
        y[j + 16] = (float)((qs[j] >> 4) - 8) * d;
    }
}

static void deq_q4_1(const uint8_t *b, float *y) {
    const float d = ld_f16(b), m = ld_f16(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)(qs[j] & 0xF) + m;
        y[j + 16] = d * (float)(qs[j] >> 4) + m;
    }
}

/* Q5_0: d, qh (bit j = 5th bit of element j), qs[16]. */
static void deq_q5_0(const uint8_t *b, float *y) {
    const float d = ld_f16(b);
    uint32_t qh;
    memcpy(&qh, b + 2, 4);
    const uint8_t *qs = b + 6;
    for (int j = 0; j < 16; j++) {
        int x0 = ((qs[j] & 0xF) | (int)(((qh >> j) & 1u) << 4)) - 16;
        int x1 = ((qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4)) - 16;
        y[j] = (float)x0 * d;
        y[j + 16] = (float)x1 * d;
    }
}

static void deq_q5_1(const uint8_t *b, float *y) {
    const float d = ld_f16(b), m = ld_f16(b + 2);
    uint32_t qh;
    memcpy(&qh, b + 4, 4);
    const uint8_t *qs = b + 8;
    for (int j = 0; j < 16; j++) {
        int x0 = (qs[j] & 0xF) | (int)(((qh >> j) & 1u) << 4);
        int x1 = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
        y[j] = d * (float)x0 + m;
        y[j + 16] = d * (float)x1 + m;
    }
}

static void deq_q8_0(const uint8_t *b, float *y) {
    const float d = ld_f16(b);
    const int8_t *qs = (const int8_t *)(b + 2);
    for (int j = 0; j < 32; j++) y[j] = (float)qs[j] * d;
}

/* Q2_K: scales[16] (low nibble scale, high nibble min), qs[64] (2 bits), d, dmin.
 * Element e: 128-chunk c = e/128, shift 2*((e/32)%4), byte qs[32c + e%32]. */
static void deq_q2_K(const uint8_t *b, float *y) {
    const uint8_t *sc = b, *qs = b + 16;
    const float d = ld_f16(b + 80), dmin = ld_f16(b + 82);
    for (int s = 0; s < 16; s++) {
        const float dl = d * (float)(sc[s] & 0xF), ml = dmin * (float)(sc[s] >> 4);
        for (int l = 0; l < 16; l++) {
            int e = s * 16 + l;
            int q = (qs[(e / 128) * 32 + e % 32] >> (2 * ((e / 32) % 4))) & 3;
            y[e] = dl * (float)q - ml;
        }
    }
}

/* Q3_K: hmask[32], qs[64] (low 2 bits), scales[12] (16 x 6-bit, offset 32), d.
 * The high bit of element e is bit e/32 of hmask[e%32]; when it is 0 the
 * value is lowered by 4. */
static void deq_q3_K(const uint8_t *b, float *y) {
    const uint8_t *hm = b, *qs = b + 32, *sc = b + 96;
    const float d = ld_f16(b + 108);
    for (int s = 0; s < 16; s++) {
        int lo = s < 8 ? (sc[s] & 0xF) : (sc[s - 8] >> 4);
        int hi = (sc[8 + s % 4] >> (2 * (s / 4))) & 3;
        const float dl = d * (float)((lo | (hi << 4)) - 32);
        for (int l = 0; l < 16; l++) {
            int e = s * 16 + l;
            int q = (qs[(e / 128) * 32 + e % 32] >> (2 * ((e / 32) % 4))) & 3;
            if (!((hm[e % 32] >> (e / 32)) & 1)) q -= 4;
            y[e] = dl * (float)q;
        }
    }
}

/* Q4_K: d, dmin, scales[12] (8 x 6-bit scale + min), qs[128].
 * Sub-block k (32 elements) is the low (k even) or high nibble of qs[32*(k/2) ..]. */
static void deq_q4_K(const uint8_t *b, float *y) {
    const float d = ld_f16(b), dmin = ld_f16(b + 2);
    const uint8_t *scales = b + 4, *qs = b + 16;
    for (int k = 0; k < 8; k++) {
        uint8_t sc, m;
        scale_min_k4(k, scales, &sc, &m);
        const float dl = d * (float)sc, ml = dmin * (float)m;
        const uint8_t *q = qs + 32 * (k / 2);
        const int sh = 4 * (k & 1);
        for (int l = 0; l < 32; l++) y[k * 32 + l] = dl * (float)((q[l] >> sh) & 0xF) - ml;
    }
}

/* Q5_K: as Q4_K plus qh[32]; the 5th bit of sub-block k element l is bit k of qh[l]. */
static void deq_q5_K(const uint8_t *b, float *y) {
    const float d = ld_f16(b), dmin = ld_f16(b + 2);
    const uint8_t *scales = b + 4, *qh = b + 16, *qs = b + 48;
    for (int k = 0; k < 8; k++) {
        uint8_t sc, m;
        scale_min_k4(k, scales, &sc, &m);
        const float dl = d * (float)sc, ml = dmin * (float)m;
        const uint8_t *q = qs + 32 * (k / 2);
        const int sh = 4 * (k & 1);
        for (int l = 0; l < 32; l++) {
            int v = ((q[l] >> sh) & 0xF) | (((qh[l] >> k) & 1) << 4);
            y[k * 32 + l] = dl * (float)v - ml;
        }
    }
}

/* Q6_K: ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] int8, d.
 * In 128-chunk c, offset o: low bits from ql[64c + o%64] nibble o/64,
 * high bits from qh[32c + o%32] bits 2*(o/32). */
static void deq_q6_K(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    const float d = ld_f16(b + 208);
    for (int s = 0; s < 16; s++) {
        const float dl = d * (float)sc[s];
        for (int l = 0; l < 16; l++) {
            int e = s * 16 + l, c = e / 128, o = e % 128;
            int lo = (ql[64 * c + o % 64] >> (4 * (o / 64))) & 0xF;
            int hi = (qh[32 * c + o % 32] >> (2 * (o / 32))) & 3;
            y[e] = dl * (float)((lo | (hi << 4)) - 32);
        }
    }
}

typedef void (*deq_fn)(const uint8_t *, float *);

static deq_fn block_dequantizer(pl_dtype t) {
    switch (t) {
    case PL_Q4_0: return deq_q4_0;
    case PL_Q4_1: return deq_q4_1;
    case PL_Q5_0: return deq_q5_0;
    case PL_Q5_1: return deq_q5_1;
    case PL_Q8_0: return deq_q8_0;
    case PL_Q2_K: return deq_q2_K;
    case PL_Q3_K: return deq_q3_K;
    case PL_Q4_K: return deq_q4_K;
    case PL_Q5_K: return deq_q5_K;
    case PL_Q6_K: return deq_q6_K;
    default: return NULL;
    }
}

int pl_dtype_can_dequantize(pl_dtype t) {
    return t == PL_F32 || t == PL_F16 || t == PL_BF16 || block_dequantizer(t) != NULL;
}

/* AVX2 rows of Q4_0/Q4_1/Q8_0 (defined below); returns 1 when it did the work. */
static int deq_row_fast(pl_dtype t, const uint8_t *s, float *dst, int64_t n);

int pl_dequantize_row(pl_dtype t, const void *src, float *dst, int64_t n) {
    if (n < 0) return -1;
    const uint8_t *s = src;
    switch (t) {
    case PL_F32:
        if (n) memcpy(dst, s, (size_t)n * 4);
        return 0;
    case PL_F16:
        for (int64_t i = 0; i < n; i++) dst[i] = ld_f16(s + 2 * i);
        return 0;
    case PL_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = pl_bf16_to_f32(h);
        }
        return 0;
    default: break;
    }
    if (deq_row_fast(t, s, dst, n)) return 0;
    deq_fn f = block_dequantizer(t);
    if (!f) return -1;
    const int64_t qk = pl_dtype_block_elems(t);
    const size_t bs = pl_dtype_block_bytes(t);
    if (n % qk) return -1;
    for (int64_t i = 0; i < n / qk; i++) f(s + (size_t)i * bs, dst + i * qk);
    return 0;
}

/* ------------------------------------------------------------------ CPU dispatch */

static int g_force_scalar;

void pl_quant_force_scalar(int on) { __atomic_store_n(&g_force_scalar, on ? 1 : 0, __ATOMIC_RELAXED); }

#if PL_X86
#include <cpuid.h>
/* F16C from CPUID leaf 1 (not every compiler's __builtin_cpu_supports knows "f16c"). */
static int has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}
#endif

int pl_cpu_has_avx2(void) {
#if PL_X86
    static int cached = -1;
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v;
#else
    return 0;
#endif
}

static inline int use_avx2(void) {
    return !__atomic_load_n(&g_force_scalar, __ATOMIC_RELAXED) && pl_cpu_has_avx2();
}

/* ------------------------------------------------------------------ scalar dot products */

/* Any dequantizable type: dequantize 256 elements at a time, 4 float partial
 * sums per chunk, chunks summed in double. */
static float dot_f32_scalar(pl_dtype t, const void *row, const float *x, int64_t n) {
    const int64_t qk = pl_dtype_block_elems(t);
    const size_t bs = pl_dtype_block_bytes(t);
    float tmp[PL_QK_K];
    double total = 0.0;
    const uint8_t *w = row;
    for (int64_t i = 0; i < n; i += PL_QK_K) {
        int64_t m = n - i < PL_QK_K ? n - i : PL_QK_K; /* a whole number of blocks: qk divides 256 */
        pl_dequantize_row(t, w + (size_t)(i / qk) * bs, tmp, m);
        float s[4] = {0, 0, 0, 0};
        int64_t j = 0;
        for (; j + 4 <= m; j += 4)
            for (int k = 0; k < 4; k++) s[k] += tmp[j + k] * x[i + j + k];
        for (; j < m; j++) s[0] += tmp[j] * x[i + j];
        total += (double)((s[0] + s[1]) + (s[2] + s[3]));
    }
    return (float)total;
}

/* Weights · Q8_0 activations with integer block sums, as ggml's generic path. */
static float dot_q8_scalar(pl_dtype t, const void *row, const pl_block_q8_0 *xq, int64_t n) {
    const uint8_t *w = row, *a = (const uint8_t *)xq;
    const size_t bs = pl_dtype_block_bytes(t);
    double total = 0.0;
    for (int64_t b = 0; b < n / PL_QK; b++, w += bs, a += sizeof(pl_block_q8_0)) {
        const float dx = ld_f16(a);
        const int8_t *aq = (const int8_t *)(a + 2);
        int sumi = 0, suma = 0;
        float r;
        switch (t) {
        case PL_Q8_0: {
            const int8_t *wq = (const int8_t *)(w + 2);
            for (int j = 0; j < PL_QK; j++) sumi += wq[j] * aq[j];
            r = (ld_f16(w) * dx) * (float)sumi;
            break;
        }
        case PL_Q4_0:
            for (int j = 0; j < 16; j++)
                sumi += ((w[2 + j] & 0xF) - 8) * aq[j] + ((w[2 + j] >> 4) - 8) * aq[j + 16];
            r = (ld_f16(w) * dx) * (float)sumi;
            break;
        default: /* PL_Q4_1 */
            for (int j = 0; j < 16; j++) {
                sumi += (w[4 + j] & 0xF) * aq[j] + (w[4 + j] >> 4) * aq[j + 16];
                suma += aq[j] + aq[j + 16];
            }
            r = (ld_f16(w) * dx) * (float)sumi + (ld_f16(w + 2) * dx) * (float)suma;
            break;
        }
        total += (double)r;
    }
    return (float)total;
}

/* ------------------------------------------------------------------ AVX2 + FMA dot products */

#if PL_X86
#define AVX2 __attribute__((target("avx2,fma,f16c")))

static inline AVX2 float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline AVX2 float f16_hw(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

static inline AVX2 float ld_f32u(const uint8_t *p) {
    float f;
    memcpy(&f, p, 4);
    return f;
}

static AVX2 float dot_f32_avx2(const uint8_t *w, const float *x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps((const float *)(w + 4 * i)), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps((const float *)(w + 4 * i + 32)), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps((const float *)(w + 4 * i + 64)), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps((const float *)(w + 4 * i + 96)), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps((const float *)(w + 4 * i)), _mm256_loadu_ps(x + i), a0);
    float s = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += ld_f32u(w + 4 * i) * x[i];
    return s;
}

static inline AVX2 __m256 load_f16x8(const uint8_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

static inline AVX2 __m256 load_bf16x8(const uint8_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

static AVX2 float dot_f16_avx2(const uint8_t *w, const float *x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(load_f16x8(w + 2 * i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(load_f16x8(w + 2 * i + 16), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(load_f16x8(w + 2 * i + 32), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(load_f16x8(w + 2 * i + 48), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(load_f16x8(w + 2 * i), _mm256_loadu_ps(x + i), a0);
    float s = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += f16_hw(w + 2 * i) * x[i];
    return s;
}

static AVX2 float dot_bf16_avx2(const uint8_t *w, const float *x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(load_bf16x8(w + 2 * i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(load_bf16x8(w + 2 * i + 16), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(load_bf16x8(w + 2 * i + 32), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(load_bf16x8(w + 2 * i + 48), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(load_bf16x8(w + 2 * i), _mm256_loadu_ps(x + i), a0);
    float s = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, w + 2 * i, 2);
        s += pl_bf16_to_f32(h) * x[i];
    }
    return s;
}

/* 16 packed nibble bytes -> the 32 values as 4 x 8 int32: elements 0-7, 8-15
 * (low nibbles of bytes 0-7, 8-15), 16-23, 24-31 (high nibbles). */
static inline AVX2 void unpack_nibbles(const uint8_t *qs, __m256i *v0, __m256i *v1, __m256i *v2, __m256i *v3) {
    const __m256i m4 = _mm256_set1_epi32(0xF);
    __m256i e0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)qs));
    __m256i e1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(qs + 8)));
    *v0 = _mm256_and_si256(e0, m4);
    *v1 = _mm256_and_si256(e1, m4);
    *v2 = _mm256_srli_epi32(e0, 4);
    *v3 = _mm256_srli_epi32(e1, 4);
}

/* Two fp16 values at p (e.g. Q4_1's d and m) as floats in lanes 0 and 1,
 * with one conversion instruction. */
static inline AVX2 __m128 f16x2(const uint8_t *p) {
    uint32_t u;
    memcpy(&u, p, 4);
    return _mm_cvtph_ps(_mm_cvtsi32_si128((int)u));
}

/* fp16 at p and fp16 at q as floats in lanes 0 and 1. */
static inline AVX2 __m128 f16_pair(const uint8_t *p, const uint8_t *q) {
    uint16_t a, b;
    memcpy(&a, p, 2);
    memcpy(&b, q, 2);
    return _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)a | ((uint32_t)b << 16))));
}

/* Q4_1 · fp32: each block's 32 weights become floats in registers as
 * d*q + m (one FMA per 8), then FMA into 4 accumulators. */
static AVX2 float dot_q4_1_avx2(const uint8_t *w, const float *x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t b = 0; b < n / PL_QK; b++, w += sizeof(pl_block_q4_1), x += PL_QK) {
        const __m128 dm = f16x2(w);
        const __m256 d = _mm256_broadcastss_ps(dm), m = _mm256_broadcastss_ps(_mm_movehdup_ps(dm));
        __m256i q0, q1, q2, q3;
        unpack_nibbles(w + 4, &q0, &q1, &q2, &q3);
        a0 = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_cvtepi32_ps(q0), d, m), _mm256_loadu_ps(x), a0);
        a1 = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_cvtepi32_ps(q1), d, m), _mm256_loadu_ps(x + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_cvtepi32_ps(q2), d, m), _mm256_loadu_ps(x + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_cvtepi32_ps(q3), d, m), _mm256_loadu_ps(x + 24), a3);
    }
    return hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
}

/* Q4_0 · fp32: weights d*q - 8d (one FMA per 8), then FMA into 4 accumulators. */
static AVX2 float dot_q4_0_avx2(const uint8_t *w, const float *x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t b = 0; b < n / PL_QK; b++, w += sizeof(pl_block_q4_0), x += PL_QK) {
        uint16_t h;
        memcpy(&h, w, 2);
        const __m128 d1 = _mm_cvtph_ps(_mm_cvtsi32_si128(h));
        const __m256 d = _mm256_broadcastss_ps(d1);
        const __m256 m = _mm256_broadcastss_ps(_mm_mul_ss(d1, _mm_set_ss(-8.0f))); /* exact */
        __m256i q0, q1, q2, q3;
        unpack_nibbles(w + 2, &q0, &q1, &q2, &q3);
        a0 = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_cvtepi32_ps(q0), d, m), _mm256_loadu_ps(x), a0);
        a1 = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_cvtepi32_ps(q1), d, m), _mm256_loadu_ps(x + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_cvtepi32_ps(q2), d, m), _mm256_loadu_ps(x + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_cvtepi32_ps(q3), d, m), _mm256_loadu_ps(x + 24), a3);
    }
    return hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
}

static inline AVX2 __m256 load_i8x8_ps(const uint8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

static inline AVX2 uint64_t ld_u16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return h;
}

/* Q8_0 · fp32: per block sum q*x in one chain, then scale by d; two blocks
 * per iteration (their two scales converted together) into two accumulators. */
static AVX2 float dot_q8_0_avx2(const uint8_t *w, const float *x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    const int64_t nb = n / PL_QK;
    const size_t bs = sizeof(pl_block_q8_0);
    int64_t b = 0;
    for (; b + 1 < nb; b += 2, w += 2 * bs, x += 2 * PL_QK) {
        const __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128((int)(ld_u16(w) | ld_u16(w + bs) << 16)));
        __m256 p = _mm256_mul_ps(load_i8x8_ps(w + 2), _mm256_loadu_ps(x));
        __m256 q = _mm256_mul_ps(load_i8x8_ps(w + bs + 2), _mm256_loadu_ps(x + 32));
        p = _mm256_fmadd_ps(load_i8x8_ps(w + 10), _mm256_loadu_ps(x + 8), p);
        q = _mm256_fmadd_ps(load_i8x8_ps(w + bs + 10), _mm256_loadu_ps(x + 40), q);
        p = _mm256_fmadd_ps(load_i8x8_ps(w + 18), _mm256_loadu_ps(x + 16), p);
        q = _mm256_fmadd_ps(load_i8x8_ps(w + bs + 18), _mm256_loadu_ps(x + 48), q);
        p = _mm256_fmadd_ps(load_i8x8_ps(w + 26), _mm256_loadu_ps(x + 24), p);
        q = _mm256_fmadd_ps(load_i8x8_ps(w + bs + 26), _mm256_loadu_ps(x + 56), q);
        a0 = _mm256_fmadd_ps(_mm256_broadcastss_ps(dd), p, a0);
        a1 = _mm256_fmadd_ps(_mm256_broadcastss_ps(_mm_movehdup_ps(dd)), q, a1);
    }
    if (b < nb) {
        const __m256 d = _mm256_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128((int)ld_u16(w))));
        __m256 p = _mm256_mul_ps(load_i8x8_ps(w + 2), _mm256_loadu_ps(x));
        p = _mm256_fmadd_ps(load_i8x8_ps(w + 10), _mm256_loadu_ps(x + 8), p);
        p = _mm256_fmadd_ps(load_i8x8_ps(w + 18), _mm256_loadu_ps(x + 16), p);
        p = _mm256_fmadd_ps(load_i8x8_ps(w + 26), _mm256_loadu_ps(x + 24), p);
        a0 = _mm256_fmadd_ps(d, p, a0);
    }
    return hsum8(_mm256_add_ps(a0, a1));
}

/* sum of 8-bit products, as 8 int32 lanes: u (unsigned) * s (signed), pairs
 * summed to int16 (no saturation for |u| <= 128, |s| <= 127), then to int32. */
static inline AVX2 __m256i dot_u8s8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* The 32 nibbles of a Q4 block as 32 unsigned bytes in element order. */
static inline AVX2 __m256i nibbles_u8(const uint8_t *qs) {
    /* the 16 bytes in both halves, the upper half shifted right by 4 */
    const __m256i raw = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    const __m256i sh = _mm256_srlv_epi32(raw, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
    return _mm256_and_si256(sh, _mm256_set1_epi8(0xF));
}

/* sum(w*a) of one block of signed int8 weights and activations: the sign of
 * w moves onto a so maddubs sees |w| (unsigned) times a (signed). */
static inline AVX2 __m256i dot_s8s8(__m256i w, __m256i a) {
    return dot_u8s8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
}

/* Lane k of v in all 8 lanes. */
static inline AVX2 __m256 lane(__m256 v, int k) { return _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(k)); }

/* Weights (Q4_0, Q4_1, Q8_0) · Q8_0 activations with int8 products: per
 * block an exact int32 sum in 8 lanes, converted and scaled by d_w*d_x
 * (computed in float, as ggml does). Two blocks per iteration, their fp16
 * scales converted by one instruction, into two accumulators (Q4_1: plus
 * m_w*d_x*sum(a) into two more). */
static AVX2 float dot_q8_avx2(pl_dtype t, const uint8_t *w, const uint8_t *a, int64_t n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    const size_t bs = pl_dtype_block_bytes(t), as = sizeof(pl_block_q8_0);
    const int64_t nb = n / PL_QK;
    int64_t b = 0;
    if (t == PL_Q4_1) { /* d_w*d_x*sum(q*a) + m_w*d_x*sum(a) */
        const __m256i ones = _mm256_set1_epi8(1);
        const __m256i ix = _mm256_setr_epi32(2, 2, 2, 2, 6, 6, 6, 6);
        for (; b < nb; b += 2, w += 2 * bs, a += 2 * as) {
            const int two = b + 1 < nb;
            uint32_t dm0, dm1 = 0;
            memcpy(&dm0, w, 4);
            if (two) memcpy(&dm1, w + bs, 4);
            const uint64_t h0 = dm0 | ld_u16(a) << 32, h1 = two ? dm1 | ld_u16(a + as) << 32 : 0;
            const __m256 s = _mm256_cvtph_ps(_mm_set_epi64x((long long)h1, (long long)h0)); /* dw0 mw0 dx0 0 dw1 mw1 dx1 0 */
            const __m256 p = _mm256_mul_ps(s, _mm256_permutevar8x32_ps(s, ix));
            const __m256i qa0 = _mm256_loadu_si256((const __m256i *)(a + 2));
            acc0 = _mm256_fmadd_ps(lane(p, 0), _mm256_cvtepi32_ps(dot_u8s8(nibbles_u8(w + 4), qa0)), acc0);
            acc1 = _mm256_fmadd_ps(lane(p, 1), _mm256_cvtepi32_ps(dot_u8s8(ones, qa0)), acc1);
            if (two) {
                const __m256i qa1 = _mm256_loadu_si256((const __m256i *)(a + as + 2));
                acc2 = _mm256_fmadd_ps(lane(p, 4), _mm256_cvtepi32_ps(dot_u8s8(nibbles_u8(w + bs + 4), qa1)), acc2);
                acc3 = _mm256_fmadd_ps(lane(p, 5), _mm256_cvtepi32_ps(dot_u8s8(ones, qa1)), acc3);
            }
        }
    } else {
        const __m256i eight = _mm256_set1_epi8(8);
        for (; b < nb; b += 2, w += 2 * bs, a += 2 * as) {
            const int two = b + 1 < nb;
            const uint64_t h = ld_u16(w) | ld_u16(a) << 16 | (two ? ld_u16(w + bs) << 32 | ld_u16(a + as) << 48 : 0);
            const __m128 s = _mm_cvtph_ps(_mm_cvtsi64_si128((long long)h)); /* dw0 dx0 dw1 dx1 */
            const __m128 p = _mm_mul_ps(s, _mm_movehdup_ps(s));              /* dw0*dx0 . dw1*dx1 . */
            __m256i qw = t == PL_Q8_0 ? _mm256_loadu_si256((const __m256i *)(w + 2))
                                      : _mm256_sub_epi8(nibbles_u8(w + 2), eight);
            acc0 = _mm256_fmadd_ps(_mm256_broadcastss_ps(p),
                                   _mm256_cvtepi32_ps(dot_s8s8(qw, _mm256_loadu_si256((const __m256i *)(a + 2)))), acc0);
            if (two) {
                qw = t == PL_Q8_0 ? _mm256_loadu_si256((const __m256i *)(w + bs + 2))
                                  : _mm256_sub_epi8(nibbles_u8(w + bs + 2), eight);
                acc1 = _mm256_fmadd_ps(_mm256_broadcastss_ps(_mm_movehl_ps(p, p)),
                                       _mm256_cvtepi32_ps(dot_s8s8(qw, _mm256_loadu_si256((const __m256i *)(a + as + 2)))),
                                       acc1);
            }
        }
    }
    return hsum8(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
}

/* Two activation vectors against one weight row: each block is unpacked
 * once and used for both. Per vector the operations and their order are
 * exactly those of the single-vector kernels above, so the results are the
 * same bits as two calls of pl_vec_dot_f32 (a batch of sequences gives each
 * sequence what it would get alone). */
static AVX2 void dot2_q4_1_avx2(const uint8_t *w, const float *x, const float *y, int64_t n, float *ox, float *oy) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    for (int64_t b = 0; b < n / PL_QK; b++, w += sizeof(pl_block_q4_1), x += PL_QK, y += PL_QK) {
        const __m128 dm = f16x2(w);
        const __m256 d = _mm256_broadcastss_ps(dm), m = _mm256_broadcastss_ps(_mm_movehdup_ps(dm));
        __m256i q0, q1, q2, q3;
        unpack_nibbles(w + 4, &q0, &q1, &q2, &q3);
        const __m256 w0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q0), d, m), w1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q1), d, m);
        const __m256 w2 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q2), d, m), w3 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q3), d, m);
        a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x), a0);
        a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + 8), a1);
        a2 = _mm256_fmadd_ps(w2, _mm256_loadu_ps(x + 16), a2);
        a3 = _mm256_fmadd_ps(w3, _mm256_loadu_ps(x + 24), a3);
        b0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(y), b0);
        b1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(y + 8), b1);
        b2 = _mm256_fmadd_ps(w2, _mm256_loadu_ps(y + 16), b2);
        b3 = _mm256_fmadd_ps(w3, _mm256_loadu_ps(y + 24), b3);
    }
    *ox = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    *oy = hsum8(_mm256_add_ps(_mm256_add_ps(b0, b1), _mm256_add_ps(b2, b3)));
}

static AVX2 void dot2_q4_0_avx2(const uint8_t *w, const float *x, const float *y, int64_t n, float *ox, float *oy) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    for (int64_t b = 0; b < n / PL_QK; b++, w += sizeof(pl_block_q4_0), x += PL_QK, y += PL_QK) {
        uint16_t h;
        memcpy(&h, w, 2);
        const __m128 d1 = _mm_cvtph_ps(_mm_cvtsi32_si128(h));
        const __m256 d = _mm256_broadcastss_ps(d1);
        const __m256 m = _mm256_broadcastss_ps(_mm_mul_ss(d1, _mm_set_ss(-8.0f)));
        __m256i q0, q1, q2, q3;
        unpack_nibbles(w + 2, &q0, &q1, &q2, &q3);
        const __m256 w0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q0), d, m), w1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q1), d, m);
        const __m256 w2 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q2), d, m), w3 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q3), d, m);
        a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x), a0);
        a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + 8), a1);
        a2 = _mm256_fmadd_ps(w2, _mm256_loadu_ps(x + 16), a2);
        a3 = _mm256_fmadd_ps(w3, _mm256_loadu_ps(x + 24), a3);
        b0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(y), b0);
        b1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(y + 8), b1);
        b2 = _mm256_fmadd_ps(w2, _mm256_loadu_ps(y + 16), b2);
        b3 = _mm256_fmadd_ps(w3, _mm256_loadu_ps(y + 24), b3);
    }
    *ox = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    *oy = hsum8(_mm256_add_ps(_mm256_add_ps(b0, b1), _mm256_add_ps(b2, b3)));
}

static AVX2 void dot2_q8_0_avx2(const uint8_t *w, const float *x, const float *y, int64_t n, float *ox, float *oy) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;
    const int64_t nb = n / PL_QK;
    const size_t bs = sizeof(pl_block_q8_0);
    int64_t b = 0;
    for (; b + 1 < nb; b += 2, w += 2 * bs, x += 2 * PL_QK, y += 2 * PL_QK) {
        const __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128((int)(ld_u16(w) | ld_u16(w + bs) << 16)));
        const __m256 d0 = _mm256_broadcastss_ps(dd), d1 = _mm256_broadcastss_ps(_mm_movehdup_ps(dd));
        const __m256 u0 = load_i8x8_ps(w + 2), u1 = load_i8x8_ps(w + 10), u2 = load_i8x8_ps(w + 18), u3 = load_i8x8_ps(w + 26);
        const __m256 v0 = load_i8x8_ps(w + bs + 2), v1 = load_i8x8_ps(w + bs + 10), v2 = load_i8x8_ps(w + bs + 18),
                     v3 = load_i8x8_ps(w + bs + 26);
        __m256 p = _mm256_mul_ps(u0, _mm256_loadu_ps(x)), q = _mm256_mul_ps(v0, _mm256_loadu_ps(x + 32));
        p = _mm256_fmadd_ps(u1, _mm256_loadu_ps(x + 8), p);
        q = _mm256_fmadd_ps(v1, _mm256_loadu_ps(x + 40), q);
        p = _mm256_fmadd_ps(u2, _mm256_loadu_ps(x + 16), p);
        q = _mm256_fmadd_ps(v2, _mm256_loadu_ps(x + 48), q);
        p = _mm256_fmadd_ps(u3, _mm256_loadu_ps(x + 24), p);
        q = _mm256_fmadd_ps(v3, _mm256_loadu_ps(x + 56), q);
        a0 = _mm256_fmadd_ps(d0, p, a0);
        a1 = _mm256_fmadd_ps(d1, q, a1);
        p = _mm256_mul_ps(u0, _mm256_loadu_ps(y));
        q = _mm256_mul_ps(v0, _mm256_loadu_ps(y + 32));
        p = _mm256_fmadd_ps(u1, _mm256_loadu_ps(y + 8), p);
        q = _mm256_fmadd_ps(v1, _mm256_loadu_ps(y + 40), q);
        p = _mm256_fmadd_ps(u2, _mm256_loadu_ps(y + 16), p);
        q = _mm256_fmadd_ps(v2, _mm256_loadu_ps(y + 48), q);
        p = _mm256_fmadd_ps(u3, _mm256_loadu_ps(y + 24), p);
        q = _mm256_fmadd_ps(v3, _mm256_loadu_ps(y + 56), q);
        b0 = _mm256_fmadd_ps(d0, p, b0);
        b1 = _mm256_fmadd_ps(d1, q, b1);
    }
    if (b < nb) {
        const __m256 d = _mm256_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128((int)ld_u16(w))));
        const __m256 u0 = load_i8x8_ps(w + 2), u1 = load_i8x8_ps(w + 10), u2 = load_i8x8_ps(w + 18), u3 = load_i8x8_ps(w + 26);
        __m256 p = _mm256_mul_ps(u0, _mm256_loadu_ps(x));
        p = _mm256_fmadd_ps(u1, _mm256_loadu_ps(x + 8), p);
        p = _mm256_fmadd_ps(u2, _mm256_loadu_ps(x + 16), p);
        p = _mm256_fmadd_ps(u3, _mm256_loadu_ps(x + 24), p);
        a0 = _mm256_fmadd_ps(d, p, a0);
        p = _mm256_mul_ps(u0, _mm256_loadu_ps(y));
        p = _mm256_fmadd_ps(u1, _mm256_loadu_ps(y + 8), p);
        p = _mm256_fmadd_ps(u2, _mm256_loadu_ps(y + 16), p);
        p = _mm256_fmadd_ps(u3, _mm256_loadu_ps(y + 24), p);
        b0 = _mm256_fmadd_ps(d, p, b0);
    }
    *ox = hsum8(_mm256_add_ps(a0, a1));
    *oy = hsum8(_mm256_add_ps(b0, b1));
}

/* Row dequantization of the types prefill multiplies most. Each value is
 * computed with the scalar code's operations in the same order (a multiply,
 * then an add; no FMA), so the results are the same bits as the scalar
 * deq_* functions and gguf-py. */
static AVX2 void deq_row_q4_1_avx2(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += sizeof(pl_block_q4_1), y += PL_QK) {
        const __m128 dm = f16x2(b);
        const __m256 d = _mm256_broadcastss_ps(dm), m = _mm256_broadcastss_ps(_mm_movehdup_ps(dm));
        __m256i q0, q1, q2, q3;
        unpack_nibbles(b + 4, &q0, &q1, &q2, &q3);
        _mm256_storeu_ps(y, _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(q0)), m));
        _mm256_storeu_ps(y + 8, _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(q1)), m));
        _mm256_storeu_ps(y + 16, _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(q2)), m));
        _mm256_storeu_ps(y + 24, _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(q3)), m));
    }
}

static AVX2 void deq_row_q4_0_avx2(const uint8_t *b, float *y, int64_t nb) {
    const __m256i eight = _mm256_set1_epi32(8);
    for (int64_t i = 0; i < nb; i++, b += sizeof(pl_block_q4_0), y += PL_QK) {
        const __m256 d = _mm256_set1_ps(f16_hw(b));
        __m256i q0, q1, q2, q3;
        unpack_nibbles(b + 2, &q0, &q1, &q2, &q3);
        _mm256_storeu_ps(y, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q0, eight)), d));
        _mm256_storeu_ps(y + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q1, eight)), d));
        _mm256_storeu_ps(y + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q2, eight)), d));
        _mm256_storeu_ps(y + 24, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q3, eight)), d));
    }
}

static AVX2 void deq_row_q8_0_avx2(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += sizeof(pl_block_q8_0), y += PL_QK) {
        const __m256 d = _mm256_set1_ps(f16_hw(b));
        for (int k = 0; k < 4; k++) _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(load_i8x8_ps(b + 2 + 8 * k), d));
    }
}

/* A Q4_0 / Q4_1 row as floats computed exactly as the dot kernels above form
 * their weights, w = fma(q, d, m) (m = -8d for Q4_0), so that dot_f32_avx2 on
 * this row gives the same bits as dot_q4_*_avx2 on the blocks: both
 * accumulate elements 0-7, 8-15, 16-23, 24-31 of every 32 into a0..a3 in
 * order and end with the same horizontal sum. (Not the dequantization of
 * record, which multiplies then adds, as gguf-py does.) */
static AVX2 void fma_row_q4_avx2(pl_dtype t, const uint8_t *w, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, y += PL_QK) {
        __m256 d, m;
        __m256i q0, q1, q2, q3;
        if (t == PL_Q4_1) {
            const __m128 dm = f16x2(w);
            d = _mm256_broadcastss_ps(dm);
            m = _mm256_broadcastss_ps(_mm_movehdup_ps(dm));
            unpack_nibbles(w + 4, &q0, &q1, &q2, &q3);
            w += sizeof(pl_block_q4_1);
        } else {
            uint16_t h;
            memcpy(&h, w, 2);
            const __m128 d1 = _mm_cvtph_ps(_mm_cvtsi32_si128(h));
            d = _mm256_broadcastss_ps(d1);
            m = _mm256_broadcastss_ps(_mm_mul_ss(d1, _mm_set_ss(-8.0f)));
            unpack_nibbles(w + 2, &q0, &q1, &q2, &q3);
            w += sizeof(pl_block_q4_0);
        }
        _mm256_storeu_ps(y, _mm256_fmadd_ps(_mm256_cvtepi32_ps(q0), d, m));
        _mm256_storeu_ps(y + 8, _mm256_fmadd_ps(_mm256_cvtepi32_ps(q1), d, m));
        _mm256_storeu_ps(y + 16, _mm256_fmadd_ps(_mm256_cvtepi32_ps(q2), d, m));
        _mm256_storeu_ps(y + 24, _mm256_fmadd_ps(_mm256_cvtepi32_ps(q3), d, m));
    }
}
#endif /* PL_X86 */

static int deq_row_fast(pl_dtype t, const uint8_t *s, float *dst, int64_t n) {
#if PL_X86
    if ((t == PL_Q4_0 || t == PL_Q4_1 || t == PL_Q8_0) && n % PL_QK == 0 && use_avx2()) {
        if (t == PL_Q4_1) deq_row_q4_1_avx2(s, dst, n / PL_QK);
        else if (t == PL_Q4_0) deq_row_q4_0_avx2(s, dst, n / PL_QK);
        else deq_row_q8_0_avx2(s, dst, n / PL_QK);
        return 1;
    }
#endif
    (void)t; (void)s; (void)dst; (void)n;
    return 0;
}

/* ------------------------------------------------------------------ public dot products */

float pl_vec_dot_f32(pl_dtype t, const void *row, const float *x, int64_t n) {
#if PL_X86
    /* the hot path first: one switch, no table lookups */
    if (n > 0 && use_avx2()) {
        switch (t) {
        case PL_F32: return dot_f32_avx2(row, x, n);
        case PL_F16: return dot_f16_avx2(row, x, n);
        case PL_BF16: return dot_bf16_avx2(row, x, n);
        case PL_Q4_0: return n % PL_QK ? NAN : dot_q4_0_avx2(row, x, n);
        case PL_Q4_1: return n % PL_QK ? NAN : dot_q4_1_avx2(row, x, n);
        case PL_Q8_0: return n % PL_QK ? NAN : dot_q8_0_avx2(row, x, n);
        default: break;
        }
    }
#endif
    if (n < 0 || !pl_dtype_can_dequantize(t) || n % pl_dtype_block_elems(t)) return NAN;
    if (n == 0) return 0.0f;
    return dot_f32_scalar(t, row, x, n);
}

void pl_vec_dot_f32_multi(pl_dtype t, const void *row, const float *x, size_t x_stride, int nx, int64_t n,
                          float *out) {
    int j = 0;
#if PL_X86
    /* three or more vectors: unpack the Q4 row once into floats (the kernels'
     * own weights) and run the fp32 kernel per vector: the same bits */
    if (nx >= 3 && n > 0 && n % PL_QK == 0 && n <= 16384 && use_avx2() && (t == PL_Q4_0 || t == PL_Q4_1)) {
        float wrow[16384] __attribute__((aligned(32)));
        fma_row_q4_avx2(t, row, wrow, n / PL_QK);
        for (; j < nx; j++) out[j] = dot_f32_avx2((const uint8_t *)wrow, x + (size_t)j * x_stride, n);
        return;
    }
    if (n > 0 && n % PL_QK == 0 && use_avx2() && (t == PL_Q4_0 || t == PL_Q4_1 || t == PL_Q8_0)) {
        for (; j + 1 < nx; j += 2) {
            const float *xa = x + (size_t)j * x_stride, *xb = xa + x_stride;
            if (t == PL_Q4_1) dot2_q4_1_avx2(row, xa, xb, n, &out[j], &out[j + 1]);
            else if (t == PL_Q4_0) dot2_q4_0_avx2(row, xa, xb, n, &out[j], &out[j + 1]);
            else dot2_q8_0_avx2(row, xa, xb, n, &out[j], &out[j + 1]);
        }
    }
#endif
    for (; j < nx; j++) out[j] = pl_vec_dot_f32(t, row, x + (size_t)j * x_stride, n);
}

float pl_vec_dot_q8_0(pl_dtype t, const void *row, const pl_block_q8_0 *xq, int64_t n) {
    if ((t != PL_Q4_0 && t != PL_Q4_1 && t != PL_Q8_0) || n < 0 || n % PL_QK) return NAN;
    if (n == 0) return 0.0f;
#if PL_X86
    if (use_avx2()) return dot_q8_avx2(t, row, (const uint8_t *)xq, n);
#endif
    return dot_q8_scalar(t, row, xq, n);
}
