/* test_quantize.c: core/quantize.c against ggml itself.
 *
 * ggml's ggml_quantize_chunk is loaded at run time from the libggml-base.so
 * that llama-cpp-python (pinned in tests/requirements-peers.txt) carries in
 * the peers' venv ($POTLUCK_VENV), and both quantize the same rows: random
 * normal rows at several scales, heavy-tailed rows, all-zero, constant,
 * one-hot, positive-only and negative-only rows, tiny (fp16-subnormal) and
 * large values, and rows with repeated maxima. Every output byte must be
 * equal. Without the venv the test fails: make test always builds it.
 *
 * Also checked without the peer: round trips through pl_dequantize_row stay
 * within each type's error bound, and pl_quantize_row refuses what it
 * cannot do. */
#include <dlfcn.h>
#include <glob.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "../core/quant.h"

typedef size_t (*ggml_quantize_chunk_fn)(int type, const float *src, void *dst, int64_t start, int64_t nrows,
                                         int64_t n_per_row, const float *imatrix);

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double urand(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return ((rng_state >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}
static float nrand(void) { return (float)(sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand())); }

#define NPR 1024 /* elements per row: 4 super-blocks */
#define NKINDS 14

/* Row kind k of NPR floats. */
static void make_row(int k, float *x) {
    for (int i = 0; i < NPR; i++) {
        float v = nrand();
        switch (k) {
        case 0: x[i] = v * 0.02f; break;                              /* weight-like */
        case 1: x[i] = v; break;
        case 2: x[i] = v * 1000.0f; break;                            /* large */
        case 3: x[i] = v * 1e-6f; break;                              /* scales are fp16 subnormals */
        case 4: x[i] = v * v * v * 0.01f; break;                      /* heavy tails */
        case 5: x[i] = 0.0f; break;                                   /* all zero */
        case 6: x[i] = 0.125f; break;                                 /* constant positive */
        case 7: x[i] = (i % 97 == 0) ? 3.0f : 0.0f; break;            /* sparse spikes */
        case 8: x[i] = fabsf(v) * 0.05f + 0.01f; break;               /* positive only: min > 0 */
        case 9: x[i] = -fabsf(v) * 0.05f - 0.01f; break;              /* negative only */
        case 10: x[i] = (i % 2 ? 1.0f : -1.0f) * 0.5f; break;         /* repeated maxima of both signs */
        case 11: x[i] = (float)((int)(v * 4.0f)) * 0.25f; break;      /* already on a grid */
        case 12: x[i] = (i / 32) % 2 ? v * 1e-20f : v * 0.1f; break;  /* blocks far below others */
        default: x[i] = (i / 16) % 3 == 0 ? 0.0f : v * 0.3f; break;   /* zero sub-blocks among others */
        }
    }
}

static void *open_ggml(void) {
    const char *venv = getenv("POTLUCK_VENV");
    if (!venv) return NULL;
    char pat[1024];
    snprintf(pat, sizeof pat, "%s/lib/python3*/site-packages/llama_cpp/lib/libggml-base.so", venv);
    glob_t g;
    void *h = NULL;
    if (glob(pat, 0, NULL, &g) == 0 && g.gl_pathc > 0) h = dlopen(g.gl_pathv[0], RTLD_NOW | RTLD_LOCAL);
    globfree(&g);
    return h;
}

static double max_abs(const float *x, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

int main(void) {
    static const pl_dtype types[] = {PL_F16, PL_BF16, PL_Q4_0, PL_Q4_1, PL_Q5_0, PL_Q5_1,
                                     PL_Q8_0, PL_Q4_K, PL_Q5_K, PL_Q6_K};
    const int ntypes = (int)(sizeof types / sizeof types[0]);
    enum { ROWS = NKINDS * 8 };
    float *x = malloc(sizeof(float) * ROWS * NPR);
    float *back = malloc(sizeof(float) * NPR);
    unsigned char *mine = malloc(ROWS * NPR * 4), *theirs = malloc(ROWS * NPR * 4);
    REQUIRE(x && back && mine && theirs, "out of memory");
    for (int r = 0; r < ROWS; r++) make_row(r % NKINDS, x + (size_t)r * NPR);

    /* 1. round trips within each type's bound (levels over the block's range) */
    for (int ti = 0; ti < ntypes; ti++) {
        pl_dtype t = types[ti];
        size_t rb = pl_dtype_row_bytes(t, NPR);
        int worst = -1;
        double worst_ratio = 0;
        for (int r = 0; r < ROWS; r++) {
            const float *xr = x + (size_t)r * NPR;
            CHECK(pl_quantize_row(t, xr, mine, NPR) == 0, "%s: quantize", pl_dtype_name(t));
            CHECK(pl_dequantize_row(t, mine, back, NPR) == 0, "%s: dequantize", pl_dtype_name(t));
            (void)rb;
            /* per 32-element block: error <= step (range / levels) + fp16 slack */
            for (int b = 0; b < NPR / 32; b++) {
                const float *xb = xr + 32 * b, *yb = back + 32 * b;
                double lo = xb[0], hi = xb[0];
                for (int i = 1; i < 32; i++) lo = fmin(lo, xb[i]), hi = fmax(hi, xb[i]);
                double range = fmax(hi - lo, max_abs(xb, 32)) + 1e-30;
                double levels = t == PL_Q4_0 || t == PL_Q4_1 || t == PL_Q4_K ? 15
                                : t == PL_Q5_0 || t == PL_Q5_1 || t == PL_Q5_K ? 31
                                : t == PL_Q6_K ? 63 : t == PL_Q8_0 ? 127 : 1000;
                /* K-quants store each block's scale and minimum in 6 (Q6_K: 8) bits against the
                 * super-block's largest: rounding them adds up to half a step of those, times the levels */
                double sb_range = max_abs(xr + 256 * (b / 8), 256) * 2 + 1e-30;
                int k = t == PL_Q4_K || t == PL_Q5_K || t == PL_Q6_K;
                for (int i = 0; i < 32; i++) {
                    double e = fabs((double)xb[i] - yb[i]);
                    double bound = (range / levels + (k ? sb_range / 63.0 : 0)) * 1.01 + 1e-7 * fabs(xb[i]) + 6e-8;
                    if (t == PL_F16 || t == PL_BF16) bound = fabs(xb[i]) * (t == PL_BF16 ? 4e-3 : 5e-4) + 6e-8;
                    /* scales of ~1e-8 are fp16 subnormals (steps of 6e-8): ggml's formats lose the
                     * precision there; only ask that nothing blows up */
                    if (r % NKINDS == 3) bound = 2 * max_abs(xr, NPR) + 1e-6;
                    if (e / bound > worst_ratio) worst_ratio = e / bound, worst = r;
                }
            }
        }
        CHECK(worst_ratio <= 1.0, "%s: round-trip error %.3g x the bound (row kind %d)", pl_dtype_name(t), worst_ratio,
              worst % NKINDS);
    }
    CHECK(pl_quantize_row(PL_Q4_K, x, mine, 100) == -1, "Q4_K: 100 elements is not whole super-blocks");
    CHECK(pl_quantize_row(PL_Q4_0, x, mine, 40) == -1, "Q4_0: 40 elements is not whole blocks");
    CHECK(pl_quantize_row(PL_Q3_K, x, mine, 256) == -1, "Q3_K is not a quantizer we have");
    CHECK(pl_quantize_row(PL_NF4, x, mine, 256) == -1, "NF4 goes through lora/nf4.c");
    CHECK(pl_dtype_can_quantize(PL_Q6_K) && !pl_dtype_can_quantize(PL_Q2_K), "can_quantize");

    /* 2. byte for byte against ggml */
    void *h = open_ggml();
    REQUIRE(h, "cannot load libggml-base.so from the peers' venv (POTLUCK_VENV=%s): %s",
            getenv("POTLUCK_VENV") ? getenv("POTLUCK_VENV") : "(unset)", dlerror());
    ggml_quantize_chunk_fn qc = (ggml_quantize_chunk_fn)(uintptr_t)dlsym(h, "ggml_quantize_chunk");
    REQUIRE(qc, "libggml-base.so has no ggml_quantize_chunk");
    for (int ti = 0; ti < ntypes; ti++) {
        pl_dtype t = types[ti];
        size_t rb = pl_dtype_row_bytes(t, NPR);
        size_t got = qc((int)t, x, theirs, 0, ROWS, NPR, NULL);
        CHECK(got == rb * ROWS, "%s: ggml wrote %zu bytes, expected %zu", pl_dtype_name(t), got, rb * ROWS);
        int bad_rows = 0, first_bad = -1;
        for (int r = 0; r < ROWS; r++) {
            pl_quantize_row(t, x + (size_t)r * NPR, mine + (size_t)r * rb, NPR);
            if (memcmp(mine + (size_t)r * rb, theirs + (size_t)r * rb, rb)) {
                if (first_bad < 0) first_bad = r;
                bad_rows++;
            }
        }
        CHECK(bad_rows == 0, "%s: %d of %d rows differ from ggml's bytes (first: row %d, kind %d)", pl_dtype_name(t),
              bad_rows, ROWS, first_bad, first_bad % NKINDS);
        /* one row at a time and the whole block of rows give the same bytes (rows are independent) */
        unsigned char *whole = malloc(rb * ROWS);
        if (whole) {
            pl_quantize_row(t, x, whole, (int64_t)ROWS * NPR);
            CHECK(!memcmp(whole, mine, rb * ROWS), "%s: many rows at once differ from row by row", pl_dtype_name(t));
            free(whole);
        }
    }
    /* unaligned destinations give the same bytes */
    pl_quantize_row(PL_Q5_K, x, mine + 1, NPR);
    qc((int)PL_Q5_K, x, theirs, 0, 1, NPR, NULL);
    CHECK(!memcmp(mine + 1, theirs, pl_dtype_row_bytes(PL_Q5_K, NPR)), "Q5_K at an odd address");
    dlclose(h);
    free(x);
    free(back);
    free(mine);
    free(theirs);
    return check_summary("test_quantize");
}
