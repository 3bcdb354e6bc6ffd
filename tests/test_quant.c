/* test_quant.c: dtypes, dequantization and quantizers against gguf-py, and the
 * quantized dot products (scalar and AVX2 paths) against double-precision sums.
 *
 * References come from tests/interop/quant_ref.py (gguf-py 0.19 run on seeded
 * random blocks), read from $POTLUCK_REFS/quant_ref/. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/dtype.h"
#include "core/half.h"
#include "core/mapfile.h"
#include "core/quant.h"

static const struct {
    const char *name;
    pl_dtype t;
} k_deq_types[] = {
    {"F32", PL_F32},   {"F16", PL_F16},   {"BF16", PL_BF16}, {"Q4_0", PL_Q4_0}, {"Q4_1", PL_Q4_1},
    {"Q5_0", PL_Q5_0}, {"Q5_1", PL_Q5_1}, {"Q8_0", PL_Q8_0}, {"Q2_K", PL_Q2_K}, {"Q3_K", PL_Q3_K},
    {"Q4_K", PL_Q4_K}, {"Q5_K", PL_Q5_K}, {"Q6_K", PL_Q6_K},
};
#define N_DEQ (sizeof k_deq_types / sizeof k_deq_types[0])

/* ------------------------------------------------------------------ small helpers */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd64(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float rndu(void) { return (float)((rnd64() >> 40) * (1.0 / 16777216.0)); } /* [0,1) */
static float rndn(void) { /* roughly normal */
    return (rndu() + rndu() + rndu() + rndu() - 2.0f) * 1.7f;
}

static int read_ref(const char *refs, const char *file, char **buf, size_t *len) {
    char path[1024];
    snprintf(path, sizeof path, "%s/quant_ref/%s", refs, file);
    pl_err err;
    int rc = pl_read_file(path, 64u << 20, buf, len, &err);
    if (rc) fprintf(stderr, "FAIL: %s\n", err.msg);
    return rc;
}

/* Random blocks of type t for n elements, with sane fp16 scale fields (as
 * quant_ref.py makes them); plain types get random normal values. */
static unsigned char *make_row(pl_dtype t, int64_t n) {
    size_t nb = pl_dtype_row_bytes(t, n);
    unsigned char *r = malloc(nb + 1);
    if (t == PL_F32 || t == PL_F16 || t == PL_BF16) {
        for (int64_t i = 0; i < n; i++) {
            float v = rndn();
            if (t == PL_F32) memcpy(r + 4 * i, &v, 4);
            else {
                uint16_t h = t == PL_F16 ? pl_f32_to_f16(v) : pl_f32_to_bf16(v);
                memcpy(r + 2 * i, &h, 2);
            }
        }
        return r;
    }
    for (size_t i = 0; i < nb; i++) r[i] = (unsigned char)rnd64();
    static const int off_q[][3] = {{PL_Q4_0, 0, -1}, {PL_Q4_1, 0, 2}, {PL_Q5_0, 0, -1}, {PL_Q5_1, 0, 2},
                                   {PL_Q8_0, 0, -1}, {PL_Q2_K, 80, 82}, {PL_Q3_K, 108, -1}, {PL_Q4_K, 0, 2},
                                   {PL_Q5_K, 0, 2}, {PL_Q6_K, 208, -1}};
    size_t bs = pl_dtype_block_bytes(t);
    for (size_t k = 0; k < sizeof off_q / sizeof off_q[0]; k++) {
        if (off_q[k][0] != (int)t) continue;
        for (size_t b = 0; b < nb / bs; b++)
            for (int f = 1; f <= 2; f++) {
                if (off_q[k][f] < 0) continue;
                float v = (1e-3f + rndu() * 0.099f) * (rnd64() & 1 ? 1.0f : -1.0f);
                uint16_t h = pl_f32_to_f16(v);
                memcpy(r + b * bs + (size_t)off_q[k][f], &h, 2);
            }
    }
    return r;
}

/* ------------------------------------------------------------------ dtype table */

static void test_dtype(void) {
    CHECK(pl_dtype_block_elems(PL_Q4_1) == 32 && pl_dtype_block_bytes(PL_Q4_1) == 20, "Q4_1 block");
    CHECK(pl_dtype_block_elems(PL_Q6_K) == 256 && pl_dtype_block_bytes(PL_Q6_K) == 210, "Q6_K block");
    CHECK(pl_dtype_block_bytes(PL_Q8_K) == 292 && pl_dtype_block_bytes(PL_Q8_1) == 36, "Q8_K/Q8_1 blocks");
    CHECK(pl_dtype_block_bytes(PL_BF16) == 2 && pl_dtype_block_bytes(PL_F64) == 8 && pl_dtype_block_bytes(PL_BOOL) == 1,
          "plain sizes");
    CHECK(pl_dtype_block_elems((pl_dtype)16) == 0 && pl_dtype_block_bytes((pl_dtype)99) == 0, "unknown ids");
    static const pl_dtype quant_sizes[][3] = {{PL_Q4_0, 18}, {PL_Q5_0, 22}, {PL_Q5_1, 24}, {PL_Q8_0, 34},
                                              {PL_Q2_K, 84}, {PL_Q3_K, 110}, {PL_Q4_K, 144}, {PL_Q5_K, 176}};
    for (size_t i = 0; i < sizeof quant_sizes / sizeof quant_sizes[0]; i++)
        CHECK(pl_dtype_block_bytes(quant_sizes[i][0]) == (size_t)quant_sizes[i][1], "%s block bytes",
              pl_dtype_name(quant_sizes[i][0]));
    CHECK(pl_dtype_row_bytes(PL_Q4_1, 576) == 18 * 20, "row bytes Q4_1 576");
    CHECK(pl_dtype_row_bytes(PL_F32, 7) == 28, "row bytes F32");
    CHECK(pl_dtype_row_bytes(PL_Q4_1, 33) == 0, "row bytes: not whole blocks");
    CHECK(pl_dtype_row_bytes(PL_Q4_1, -32) == 0, "row bytes: negative");
    CHECK(pl_dtype_row_bytes(PL_F64, INT64_MAX) == 0, "row bytes: overflow");
    CHECK(pl_dtype_row_bytes(PL_F32, INT64_MAX) == 0 && pl_dtype_row_bytes(PL_I32, INT64_MAX / 2 + 1) == 0,
          "row bytes: overflow (4 bytes)");
    CHECK(pl_dtype_row_bytes(PL_Q8_0, (INT64_MAX / 32) * 32) == (size_t)(INT64_MAX / 32) * 34, "row bytes: large");
    CHECK(pl_dtype_row_bytes((pl_dtype)42, 32) == 0, "row bytes: unknown type");
    const pl_dtype all[] = {PL_F32, PL_F16, PL_BF16, PL_F64, PL_I8,   PL_I16,  PL_I32,  PL_I64,  PL_U8,
                            PL_U16, PL_U32, PL_U64,  PL_BOOL, PL_Q4_0, PL_Q4_1, PL_Q5_0, PL_Q5_1, PL_Q8_0,
                            PL_Q8_1, PL_Q2_K, PL_Q3_K, PL_Q4_K, PL_Q5_K, PL_Q6_K, PL_Q8_K};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        CHECK(pl_dtype_from_name(pl_dtype_name(all[i])) == all[i], "name round trip %s", pl_dtype_name(all[i]));
        CHECK(pl_dtype_is_quantized(all[i]) == (pl_dtype_block_elems(all[i]) > 1), "is_quantized %s",
              pl_dtype_name(all[i]));
    }
    CHECK(strcmp(pl_dtype_name(PL_Q4_1), "Q4_1") == 0 && strcmp(pl_dtype_name((pl_dtype)77), "?") == 0, "names");
    CHECK(pl_dtype_from_name("bf16") == PL_BF16 && pl_dtype_from_name("nope") == PL_DTYPE_INVALID, "from_name");
    CHECK(pl_dtype_from_name(NULL) == PL_DTYPE_INVALID, "from_name NULL");
}

/* ------------------------------------------------------------------ dequantization vs gguf-py */

static void test_dequant(const char *refs) {
    for (size_t k = 0; k < N_DEQ; k++) {
        const char *name = k_deq_types[k].name;
        pl_dtype t = k_deq_types[k].t;
        char fr[64], ff[64], *raw = NULL, *ref = NULL;
        size_t nraw, nref;
        snprintf(fr, sizeof fr, "deq_%s.raw", name);
        snprintf(ff, sizeof ff, "deq_%s.f32", name);
        if (read_ref(refs, fr, &raw, &nraw) || read_ref(refs, ff, &ref, &nref)) {
            CHECK(0, "%s: reference files missing", name);
            free(raw);
            free(ref);
            continue;
        }
        int64_t n = (int64_t)(nref / 4);
        CHECK(n >= 2048 && pl_dtype_row_bytes(t, n) == nraw, "%s: %lld elements in %zu bytes", name, (long long)n,
              nraw);
        CHECK(pl_dtype_can_dequantize(t), "%s: can dequantize", name);
        float *got = malloc((size_t)n * sizeof *got), *want = malloc((size_t)n * sizeof *want);
        memcpy(want, ref, (size_t)n * 4);
        int rc = pl_dequantize_row(t, raw, got, n);
        CHECK(rc == 0, "%s: dequantize rc %d", name, rc);
        /* Exact equality (bits; NaN only needs to be NaN): every type's
         * elements are computed with gguf-py's float32 operations in the same
         * order, so no tolerance is needed for any of them. */
        int64_t bad = 0, first = -1, nans = 0;
        for (int64_t i = 0; i < n; i++) {
            int same = (got[i] != got[i] && want[i] != want[i]) || pl_f32_bits(got[i]) == pl_f32_bits(want[i]);
            if (want[i] != want[i]) nans++;
            if (!same && bad++ == 0) first = i;
        }
        CHECK(bad == 0, "%s: %lld of %lld values differ from gguf-py, first at %lld: %.9g vs %.9g", name,
              (long long)bad, (long long)n, (long long)first, first >= 0 ? got[first] : 0.0,
              first >= 0 ? want[first] : 0.0);
        if (t == PL_F16 || t == PL_BF16) CHECK(nans >= 3, "%s: special values present (%lld NaN)", name, (long long)nans);
        /* the same from an odd address (rows can start anywhere) */
        unsigned char *odd = malloc(nraw + 1);
        memcpy(odd + 1, raw, nraw);
        float *got2 = malloc((size_t)n * sizeof *got2);
        CHECK(pl_dequantize_row(t, odd + 1, got2, n) == 0 && memcmp(got, got2, (size_t)n * 4) == 0,
              "%s: unaligned source gives the same bits", name);
        /* a partial block is refused */
        if (pl_dtype_block_elems(t) > 1)
            CHECK(pl_dequantize_row(t, raw, got2, pl_dtype_block_elems(t) + 1) == -1, "%s: partial block refused", name);
        free(odd);
        free(got2);
        free(got);
        free(want);
        free(raw);
        free(ref);
    }
    float tmp[256];
    unsigned char zeros[292] = {0};
    CHECK(pl_dequantize_row(PL_Q8_1, zeros, tmp, 32) == -1 && !pl_dtype_can_dequantize(PL_Q8_1), "Q8_1 unsupported");
    CHECK(pl_dequantize_row(PL_Q8_K, zeros, tmp, 256) == -1 && !pl_dtype_can_dequantize(PL_Q8_K), "Q8_K unsupported");
    CHECK(pl_dequantize_row(PL_I32, zeros, tmp, 8) == -1, "I32 unsupported");
    CHECK(pl_dequantize_row(PL_F32, zeros, tmp, -1) == -1, "negative n refused");
}

/* ------------------------------------------------------------------ quantizers vs gguf-py */

static void test_quantizers(const char *refs) {
    char *in = NULL;
    size_t nin;
    if (read_ref(refs, "quant_in.f32", &in, &nin)) {
        CHECK(0, "quant_in.f32 missing");
        return;
    }
    int64_t n = (int64_t)(nin / 4);
    CHECK(n % 256 == 0 && n >= 1024, "quant input has %lld values", (long long)n);
    float *x = malloc((size_t)n * 4);
    memcpy(x, in, (size_t)n * 4);
    const pl_dtype types[] = {PL_Q8_0, PL_Q4_0, PL_Q4_1};
    for (int k = 0; k < 3; k++) {
        pl_dtype t = types[k];
        char file[64], *ref = NULL;
        size_t nref;
        snprintf(file, sizeof file, "quant_%s.raw", pl_dtype_name(t));
        if (read_ref(refs, file, &ref, &nref)) {
            CHECK(0, "%s missing", file);
            continue;
        }
        size_t nb = pl_dtype_row_bytes(t, n), bs = pl_dtype_block_bytes(t);
        CHECK(nb == nref, "%s: %zu bytes, expected %zu", file, nref, nb);
        unsigned char *got = calloc(1, nb);
        if (t == PL_Q8_0) pl_quantize_row_q8_0(x, (pl_block_q8_0 *)got, n);
        else if (t == PL_Q4_0) pl_quantize_row_q4_0(x, (pl_block_q4_0 *)got, n);
        else pl_quantize_row_q4_1(x, (pl_block_q4_1 *)got, n);
        size_t bad_blocks = 0, first = SIZE_MAX;
        for (size_t b = 0; b < nb / bs && nb == nref; b++)
            if (memcmp(got + b * bs, ref + b * bs, bs) != 0 && bad_blocks++ == 0) first = b;
        CHECK(nb == nref && bad_blocks == 0, "%s: %zu of %zu blocks differ from gguf-py's quantize, first #%zu",
              pl_dtype_name(t), bad_blocks, nb / bs, first);
        /* round trip: every value within half a step, plus what rounding the
         * scale d (and the min m) to fp16 costs: qmax * |d16 - d| + |m16 - m| */
        float *y = malloc((size_t)n * 4);
        pl_dequantize_row(t, got, y, n);
        int64_t far = 0;
        for (int64_t b = 0; b < n / 32; b++) {
            const float *xb = x + b * 32;
            float lo = xb[0], hi = lo, amax = 0;
            for (int j = 0; j < 32; j++) {
                lo = xb[j] < lo ? xb[j] : lo;
                hi = xb[j] > hi ? xb[j] : hi;
                amax = fabsf(xb[j]) > amax ? fabsf(xb[j]) : amax;
            }
            uint16_t h[2];
            memcpy(h, got + (size_t)b * bs, 4);
            float step = t == PL_Q8_0 ? amax / 127 : t == PL_Q4_0 ? amax / 8 : (hi - lo) / 15;
            float qmax = t == PL_Q8_0 ? 127 : t == PL_Q4_0 ? 8 : 15;
            float derr = fabsf(pl_f16_to_f32(h[0]) - step), merr = t == PL_Q4_1 ? fabsf(pl_f16_to_f32(h[1]) - lo) : 0;
            /* Q4_0 clips the far end (+8 is not representable): up to one step */
            float lim = (t == PL_Q4_0 ? 1.0f : 0.5f) * step * 1.0001f + qmax * derr + merr + amax * 1e-6f;
            for (int j = 0; j < 32; j++)
                if (fabsf(y[b * 32 + j] - xb[j]) > lim) far++;
        }
        CHECK(far == 0, "%s: %lld values off by more than half a step after a round trip", pl_dtype_name(t),
              (long long)far);
        free(y);
        free(got);
        free(ref);
    }
    free(x);
    free(in);
}

/* ------------------------------------------------------------------ dot products */

typedef struct {
    double worst_rel; /* max |got - ref| / sum|w*x| seen */
} dot_stats;

/* Results of every dot product, per path (0 scalar, 1 avx2), in call order;
 * both paths see the same data (the generator is reseeded), so comparing
 * them shows that forcing the scalar path really switches the code. */
static float g_res[2][1024];
static int g_nres[2];
static void record(int avx, float v) {
    if (g_nres[avx] < 1024) g_res[avx][g_nres[avx]++] = v;
}

static double ref_dot(const float *w, const float *x, int64_t n, double *abs_sum) {
    double s = 0, a = 0;
    for (int64_t i = 0; i < n; i++) {
        s += (double)w[i] * (double)x[i];
        a += fabs((double)w[i] * (double)x[i]);
    }
    *abs_sum = a;
    return s;
}

/* Tolerance relative to sum|w_i x_i|: float accumulation over at most ~1.5k
 * terms per lane; observed errors are ~1e-7, bounded here at 2e-5. */
#define DOT_RTOL 2e-5

static void check_dot(const char *what, pl_dtype t, int64_t n, float got, double ref, double abs_sum, dot_stats *st) {
    double err = fabs((double)got - ref), rel = abs_sum > 0 ? err / abs_sum : err;
    if (rel > st->worst_rel) st->worst_rel = rel;
    CHECK(got == got && rel <= DOT_RTOL, "%s %s n=%lld: got %.9g, reference %.9g (rel err %.3g of sum|wx| %.6g)", what,
          pl_dtype_name(t), (long long)n, got, ref, rel, abs_sum);
}

static void test_dot_f32(int avx, dot_stats *st) {
    const pl_dtype types[] = {PL_F32, PL_F16, PL_BF16, PL_Q4_0, PL_Q4_1, PL_Q5_0, PL_Q5_1,
                              PL_Q8_0, PL_Q2_K, PL_Q3_K, PL_Q4_K, PL_Q5_K, PL_Q6_K};
    const int64_t sizes[] = {32, 96, 160, 576, 1536, 49152, 37, 1539, 8, 1};
    rng_state = 0x1234567ull;
    pl_quant_force_scalar(!avx);
    const char *path = avx ? "avx2" : "scalar";
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        pl_dtype t = types[k];
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            int64_t n = sizes[s];
            if (n % pl_dtype_block_elems(t)) continue;
            unsigned char *row = make_row(t, n);
            float *w = malloc((size_t)n * 4), *x = malloc((size_t)n * 4);
            for (int64_t i = 0; i < n; i++) x[i] = rndn();
            pl_dequantize_row(t, row, w, n);
            double abs_sum, ref = ref_dot(w, x, n, &abs_sum);
            float got = pl_vec_dot_f32(t, row, x, n);
            record(avx, got);
            check_dot(path, t, n, got, ref, abs_sum, st);
            float again = pl_vec_dot_f32(t, row, x, n), third = pl_vec_dot_f32(t, row, x, n);
            CHECK(pl_f32_bits(got) == pl_f32_bits(again) && pl_f32_bits(got) == pl_f32_bits(third),
                  "%s %s n=%lld: repeated calls give different bits", path, pl_dtype_name(t), (long long)n);
            free(row);
            free(w);
            free(x);
        }
    }
    /* a 49152 x 576 Q4_1 matrix is too slow under ASan; 256 rows of it */
    int64_t rows = 256, cols = 576;
    size_t rb = pl_dtype_row_bytes(PL_Q4_1, cols);
    unsigned char *m = make_row(PL_Q4_1, rows * cols);
    float *x = malloc((size_t)cols * 4), *w = malloc((size_t)cols * 4);
    for (int64_t i = 0; i < cols; i++) x[i] = rndn();
    int worst_ok = 1;
    for (int64_t r = 0; r < rows; r++) {
        pl_dequantize_row(PL_Q4_1, m + (size_t)r * rb, w, cols);
        double abs_sum, ref = ref_dot(w, x, cols, &abs_sum);
        float got = pl_vec_dot_f32(PL_Q4_1, m + (size_t)r * rb, x, cols);
        double rel = fabs(got - ref) / abs_sum;
        if (rel > st->worst_rel) st->worst_rel = rel;
        if (!(rel <= DOT_RTOL)) worst_ok = 0;
    }
    CHECK(worst_ok, "%s: Q4_1 256x576 matvec within tolerance", path);
    free(m);
    free(x);
    free(w);
    /* unsupported types and partial blocks give NaN */
    unsigned char zeros[512] = {0};
    float xs[256] = {0};
    float r1 = pl_vec_dot_f32(PL_Q8_K, zeros, xs, 256), r2 = pl_vec_dot_f32(PL_Q4_1, zeros, xs, 33);
    float r3 = pl_vec_dot_f32(PL_I32, zeros, xs, 8);
    CHECK(r1 != r1 && r2 != r2 && r3 != r3, "%s: NaN for unsupported type / partial block", path);
    CHECK(pl_vec_dot_f32(PL_Q4_1, zeros, xs, 0) == 0.0f, "%s: n = 0 gives 0", path);
    pl_quant_force_scalar(0);
}

static void test_dot_q8(int avx, dot_stats *st) {
    const pl_dtype types[] = {PL_Q4_0, PL_Q4_1, PL_Q8_0};
    const int64_t sizes[] = {32, 96, 576, 1536, 49152};
    const char *path = avx ? "avx2 q8" : "scalar q8";
    rng_state = 0x7654321ull;
    pl_quant_force_scalar(!avx);
    for (size_t k = 0; k < 3; k++) {
        pl_dtype t = types[k];
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            int64_t n = sizes[s];
            unsigned char *row;
            /* weights as a model has them: quantized from floats */
            float *src = malloc((size_t)n * 4);
            for (int64_t i = 0; i < n; i++) src[i] = rndn() * 0.05f;
            if (t == PL_Q4_1) {
                row = malloc(pl_dtype_row_bytes(t, n));
                pl_quantize_row_q4_1(src, (pl_block_q4_1 *)row, n);
            } else if (t == PL_Q4_0) {
                row = malloc(pl_dtype_row_bytes(t, n));
                pl_quantize_row_q4_0(src, (pl_block_q4_0 *)row, n);
            } else {
                row = make_row(t, n); /* random int8 including -128 */
            }
            float *x = malloc((size_t)n * 4), *w = malloc((size_t)n * 4), *xd = malloc((size_t)n * 4);
            for (int64_t i = 0; i < n; i++) x[i] = rndn();
            pl_block_q8_0 *xq = malloc((size_t)(n / 32) * sizeof *xq);
            pl_quantize_row_q8_0(x, xq, n);
            pl_dequantize_row(t, row, w, n);
            pl_dequantize_row(PL_Q8_0, xq, xd, n);
            double abs_sum, ref = ref_dot(w, xd, n, &abs_sum);
            float got = pl_vec_dot_q8_0(t, row, xq, n);
            record(avx, got);
            check_dot(path, t, n, got, ref, abs_sum, st);
            CHECK(pl_f32_bits(got) == pl_f32_bits(pl_vec_dot_q8_0(t, row, xq, n)), "%s %s n=%lld: repeat differs",
                  path, pl_dtype_name(t), (long long)n);
            /* close to the unquantized-activation product too (activation rounding only) */
            double abs2, ref2 = ref_dot(w, x, n, &abs2);
            CHECK(fabs(got - ref2) <= 0.02 * abs2, "%s %s n=%lld: %.6g vs fp32 activations %.6g", path,
                  pl_dtype_name(t), (long long)n, got, ref2);
            free(src);
            free(row);
            free(x);
            free(w);
            free(xd);
            free(xq);
        }
    }
    unsigned char zeros[256] = {0};
    pl_block_q8_0 xq[4];
    memset(xq, 0, sizeof xq);
    float r1 = pl_vec_dot_q8_0(PL_Q5_0, zeros, xq, 32), r2 = pl_vec_dot_q8_0(PL_Q4_1, zeros, xq, 48);
    CHECK(r1 != r1 && r2 != r2, "%s: NaN for unsupported type / partial block", path);
    pl_quant_force_scalar(0);
}

/* Q8_0 quantization of activations: exact known values. */
static void test_q8_known(void) {
    float x[32];
    for (int i = 0; i < 32; i++) x[i] = (float)(i - 16) * 0.5f; /* -8 .. 7.5 */
    pl_block_q8_0 b;
    pl_quantize_row_q8_0(x, &b, 32);
    float d = pl_f16_to_f32(b.d);
    CHECK(fabsf(d - 8.0f / 127.0f) < 1e-4f, "q8_0 d = amax/127 (%g)", d);
    CHECK(b.qs[0] == -127 && b.qs[16] == 0 && b.qs[31] == 119, "q8_0 values %d %d %d", b.qs[0], b.qs[16], b.qs[31]);
}

/* pl_vec_dot_f32_multi gives exactly the bits of one pl_vec_dot_f32 per
 * vector, for every supported dtype and 1..5 vectors (pairs and a leftover). */
static void test_dot_multi(void) {
    const int64_t n = 576;
    const pl_dtype types[] = {PL_Q4_0, PL_Q4_1, PL_Q8_0, PL_F16, PL_F32, PL_Q6_K};
    float *src = malloc(sizeof(float) * n), *x = malloc(sizeof(float) * n * 5);
    unsigned char *row = malloc(4 * n + 64);
    uint32_t r = 12345;
    for (int64_t i = 0; i < n * 5; i++) {
        r = r * 1664525u + 1013904223u;
        x[i] = (float)((int32_t)(r >> 8) - (1 << 23)) / (float)(1 << 23);
    }
    for (int64_t i = 0; i < n; i++) src[i] = x[(i * 7) % (n * 5)] * 0.5f;
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        pl_dtype t = types[k];
        size_t rb = pl_dtype_row_bytes(t, n);
        if (t == PL_Q4_0) pl_quantize_row_q4_0(src, (pl_block_q4_0 *)row, n);
        else if (t == PL_Q4_1) pl_quantize_row_q4_1(src, (pl_block_q4_1 *)row, n);
        else if (t == PL_Q8_0) pl_quantize_row_q8_0(src, (pl_block_q8_0 *)row, n);
        else if (t == PL_F32) memcpy(row, src, rb);
        else for (size_t i = 0; i < rb; i++) row[i] = (unsigned char)(x[i % (n * 5)] * 97.0f) & 0x3b; /* finite f16 / q6_K bytes */
        for (int nx = 1; nx <= 5; nx++) {
            float out[5], one[5];
            pl_vec_dot_f32_multi(t, row, x, (size_t)n, nx, n, out);
            int same = 1;
            for (int j = 0; j < nx; j++) {
                one[j] = pl_vec_dot_f32(t, row, x + (size_t)j * n, n);
                if (pl_f32_bits(one[j]) != pl_f32_bits(out[j])) same = 0;
            }
            CHECK(same, "%s: multi-vector dot of %d vectors differs from single dots", pl_dtype_name(t), nx);
        }
    }
    free(src); free(x); free(row);
}

int main(void) {
    const char *refs = check_env("POTLUCK_REFS");
    test_dtype();
    pl_quant_force_scalar(1); /* the scalar dequantizers, then the AVX2 rows: both exact */
    test_dequant(refs);
    pl_quant_force_scalar(0);
    test_dequant(refs);
    test_quantizers(refs);
    test_q8_known();
    test_dot_multi();
    dot_stats st = {0}, st_q8 = {0};
    test_dot_f32(0, &st);
    test_dot_q8(0, &st_q8);
    if (pl_cpu_has_avx2()) {
        test_dot_f32(1, &st);
        test_dot_q8(1, &st_q8);
        int differ = 0;
        CHECK(g_nres[0] == g_nres[1] && g_nres[0] >= 80, "both paths ran the same cases (%d, %d)", g_nres[0], g_nres[1]);
        for (int i = 0; i < g_nres[0] && i < g_nres[1]; i++) differ += pl_f32_bits(g_res[0][i]) != pl_f32_bits(g_res[1][i]);
        CHECK(differ > 0, "forcing the scalar path changes no result: the switch does not work");
        printf("note: scalar and avx2 dot products differ in the last bits in %d of %d cases\n", differ, g_nres[0]);
    } else {
        printf("note: this CPU has no AVX2+FMA; only the scalar dot products were exercised\n");
    }
    printf("note: dot products: worst error %.3g (fp32 activations), %.3g (q8_0 activations) of sum|w*x|; "
           "avx2 paths %s\n", st.worst_rel, st_q8.worst_rel, pl_cpu_has_avx2() ? "tested" : "not available");
    return check_summary("test_quant");
}
