/* test_cuda_emu.c: every CUDA kernel of trainer/cuda/ against the CPU op
 * (trainer/cpu/, the reference), under the emulator (trainer/cuda/emu/) or,
 * built with -DPL_CUDA_REAL against the real runtime (tests/gpu/check.sh),
 * on a GPU.
 *
 * For each op: awkward shapes (odd sizes, T = 1, head_dim 64 and 128, n not
 * a multiple of any block), the inputs rounded to bf16 first so the CPU
 * computes on exactly the values the kernel sees, then
 *   - per element |got - ref| <= atol + rtol |ref|, with the bounds stated at
 *     each op (rtol 2^-8 where the output is one bf16 rounding of an fp32
 *     result: bf16 has 8 significant bits, so one rounding is within 2^-9);
 *   - normalized MSE sum (got - ref)^2 / sum ref^2 below a bound;
 *   - no NaN or inf where the reference has none;
 *   - (emulator) the same bits under two fiber schedules (PL_EMU_SEED).
 * The data-parallel reduce-scatter's sum (nccl_dist.cu) is checked for the
 * bits of core/dist.c's host sum, which the MPI path uses.
 * Then the emulator's teeth: broken copies of two kernels (tests/cuda/teeth.cu)
 * are caught, and its runtime (out of memory at a set capacity, invalid
 * configurations) behaves as CUDA's. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "check.h"
#include "../core/half.h"
#include "../core/dist.h"
#include "../lora/nf4.h"
#include "../trainer/cpu/cpu_int.h"
#include "../trainer/ops_math.h"
#include "../trainer/cuda/cuda_ops.h"
#ifdef PL_CUDA_REAL
#include <cuda_runtime_api.h>
#else
#include "../trainer/cuda/emu/emu_runtime.h"
int teeth_rmsnorm_nosync(pl_bf16 *out, const pl_bf16 *x, const float *w, int T, int C, float eps);
int teeth_gemv(pl_bf16 *y, const pl_bf16 *x, const float *W, int rows, int cols, int broken);
int teeth_divergent_barrier(float *out);
#endif

static int g_big;

/* A fatal precondition inside a void test function. */
#define REQUIRE_VOID(cond)                                                                  \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            check_failed++;                                                                 \
            fprintf(stderr, "FAIL (fatal) %s:%d: %s\n", __FILE__, __LINE__, #cond);          \
            return;                                                                         \
        }                                                                                   \
    } while (0) /* PL_CUDA_TEST_BIG=1: the larger shapes of make test-big */

/* ---- helpers ---------------------------------------------------------------------------- */

static uint64_t g_rng = 0x1234567u;
static float frand(void) { /* uniform in [-1, 1) */
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((g_rng >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}
static float nrand(void) { return (frand() + frand() + frand()) * 1.2f; }

static uint16_t bf(float f) { return pl_f32_to_bf16(f); }
static float fb(uint16_t h) { return pl_bf16_to_f32(h); }

static void *dev_alloc(size_t bytes) {
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
        fprintf(stderr, "cudaMalloc(%zu) failed\n", bytes);
        exit(1);
    }
    return p;
}
static void *dev_up(const void *h, size_t bytes) {
    void *d = dev_alloc(bytes);
    if (bytes) cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice);
    return d;
}
static void down(void *h, const void *d, size_t bytes) {
    if (bytes) cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost);
}
/* n random bf16 values (scale s) on the host, and their fp32 values. */
static uint16_t *rand_bf16(size_t n, float s, float *as_float) {
    uint16_t *h = malloc(n * 2 + 2);
    for (size_t i = 0; i < n; i++) {
        h[i] = bf(nrand() * s);
        if (as_float) as_float[i] = fb(h[i]);
    }
    return h;
}
static int sync_ok(const char *what) {
    cudaError_t e = cudaDeviceSynchronize();
    CHECK(e == cudaSuccess, "%s: %s", what, cudaGetErrorString(e));
    return e == cudaSuccess;
}

/* Compares got against ref (n): the per-element bound, the normalized MSE
 * bound, NaN/inf where ref is finite. One CHECK each, naming the op and shape. */
static void compare(const char *what, const float *got, const float *ref, size_t n, double atol, double rtol,
                    double nmse_max) {
    double se = 0, sr = 0, worst = 0;
    size_t bad = 0, nonfinite = 0, first = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        double a = got[i], b = ref[i];
        if (isfinite(b) && !isfinite(a)) nonfinite++;
        double d = fabs(a - b);
        if (!(d <= atol + rtol * fabs(b))) {
            if (!bad++) first = i;
        }
        if (isfinite(d)) {
            se += d * d;
            if (d > worst) worst = d;
        }
        sr += b * b;
    }
    double nmse = sr > 0 ? se / sr : se;
    CHECK(nonfinite == 0, "%s: %zu NaN/inf outputs where the reference is finite", what, nonfinite);
    CHECK(bad == 0, "%s: %zu of %zu elements outside %g + %g|ref| (first [%zu] got %.9g ref %.9g; max |diff| %.3g)",
          what, bad, n, atol, rtol, first, bad ? got[first] : 0.0, bad ? ref[first] : 0.0, worst);
    CHECK(nmse <= nmse_max, "%s: normalized MSE %.3g above %.3g", what, nmse, nmse_max);
    if (getenv("PL_CUDA_TEST_VERBOSE"))
        printf("  %-44s n=%-7zu max|diff| %-10.3g nmse %.3g\n", what, n, worst, nmse);
}

static void bf16_to_float(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = fb(src[i]);
}

/* Same bits from the device buffer under the schedule of a second seed:
 * run() launches the op on the device buffers again (inputs unchanged). */
#ifndef PL_CUDA_REAL
#define SEED_A 1
#define SEED_B 0x5eed5eedull
#endif
#ifndef PL_CUDA_REAL
static void same_bits(const char *what, const void *first, const void *second, size_t bytes) {
    CHECK(memcmp(first, second, bytes) == 0, "%s: different bits under two fiber schedules", what);
}
#endif

/* ---- NF4 --------------------------------------------------------------------------------- */

typedef struct dev_nf4 {
    pl_cuda_nf4 w;
    void *bufs[5];
} dev_nf4;

static void nf4_upload(dev_nf4 *d, const pl_nf4 *q) {
    memset(d, 0, sizeof *d);
    d->w.n = q->n;
    d->w.blocksize = q->blocksize;
    d->w.offset = q->offset;
    d->w.packed = d->bufs[0] = dev_up(q->packed, (size_t)(q->n + 1) / 2);
    if (q->double_quant) {
        d->w.absmax_q = d->bufs[1] = dev_up(q->absmax_q, (size_t)q->n_blocks);
        d->w.nested_absmax = d->bufs[2] = dev_up(q->nested_absmax, (size_t)q->n_nested * 4);
        d->w.code = d->bufs[3] = dev_up(q->code, sizeof q->code);
    } else {
        d->w.absmax = d->bufs[4] = dev_up(q->absmax, (size_t)q->n_blocks * 4);
    }
}
static void nf4_free(dev_nf4 *d) {
    for (int i = 0; i < 5; i++) cudaFree(d->bufs[i]);
}

/* Dequantization: the bf16 of the CPU's fp32 value, bit for bit. */
static void test_nf4_dequant(int64_t n, int blocksize, int dq, int64_t start, int64_t count) {
    char what[96];
    snprintf(what, sizeof what, "nf4_dequant n=%lld bs=%d dq=%d [%lld,+%lld)", (long long)n, blocksize, dq,
             (long long)start, (long long)count);
    float *x = malloc((size_t)n * 4), *ref = malloc((size_t)count * 4 + 4);
    for (int64_t i = 0; i < n; i++) x[i] = nrand() * (1.0f + (float)(i % 777) / 100.0f);
    pl_nf4 q;
    pl_err err;
    REQUIRE_VOID(pl_nf4_quantize(x, n, blocksize, dq, &q, &err) == 0);
    pl_nf4_dequantize(&q, start, count, ref);
    dev_nf4 d;
    nf4_upload(&d, &q);
    uint16_t *dout = dev_alloc((size_t)count * 2), *got = malloc((size_t)count * 2 + 2);
    CHECK(pl_cuda_nf4_dequant(dout, &d.w, start, count, NULL) == 0, "%s: launch", what);
    sync_ok(what);
    down(got, dout, (size_t)count * 2);
    int64_t diff = 0;
    for (int64_t i = 0; i < count; i++) diff += got[i] != bf(ref[i]);
    CHECK(diff == 0, "%s: %lld elements differ from bf16(CPU)", what, (long long)diff);
    free(x), free(ref), free(got);
    cudaFree(dout);
    nf4_free(&d);
    pl_nf4_free(&q);
}

/* y (T, rows) = x (T, cols) . W^T: against double sums of the CPU's
 * dequantized fp32 W times the bf16 x. Bound: one bf16 rounding of the
 * output (rtol 2^-8) plus fp32 accumulation over cols terms (atol 1e-5 of
 * the row's sum of |w x|, per row). */
static void test_nf4_gemv(int rows, int cols, int T, int dq) {
    char what[96];
    snprintf(what, sizeof what, "nf4_gemv rows=%d cols=%d T=%d dq=%d", rows, cols, T, dq);
    const int64_t n = (int64_t)rows * cols;
    float *w = malloc((size_t)n * 4), *wd = malloc((size_t)n * 4), *xf = malloc((size_t)T * cols * 4);
    for (int64_t i = 0; i < n; i++) w[i] = nrand() * 0.05f;
    pl_nf4 q;
    pl_err err;
    REQUIRE_VOID(pl_nf4_quantize(w, n, 64, dq, &q, &err) == 0);
    pl_nf4_dequantize(&q, 0, n, wd);
    uint16_t *xh = rand_bf16((size_t)T * cols, 1.0f, xf);
    float *ref = malloc((size_t)T * rows * 4), *got = malloc((size_t)T * rows * 4);
    double worst_ratio = 0;
    int bad = 0;
    dev_nf4 d;
    nf4_upload(&d, &q);
    uint16_t *dx = dev_up(xh, (size_t)T * cols * 2), *dy = dev_alloc((size_t)T * rows * 2);
    uint16_t *yh = malloc((size_t)T * rows * 2);
    CHECK(pl_cuda_nf4_gemv(dy, dx, &d.w, rows, cols, T, NULL) == 0, "%s: launch", what);
    sync_ok(what);
    down(yh, dy, (size_t)T * rows * 2);
    bf16_to_float(got, yh, (size_t)T * rows);
    for (int t = 0; t < T; t++)
        for (int r = 0; r < rows; r++) {
            double s = 0, sa = 0;
            for (int c = 0; c < cols; c++) {
                double p = (double)wd[(int64_t)r * cols + c] * xf[(int64_t)t * cols + c];
                s += p;
                sa += fabs(p);
            }
            ref[t * rows + r] = (float)s;
            double tol = 1e-5 * sa + 0x1p-8 * fabs(s), d0 = fabs(got[t * rows + r] - s);
            if (!(d0 <= tol)) bad++;
            if (tol > 0 && d0 / tol > worst_ratio) worst_ratio = d0 / tol;
        }
    CHECK(bad == 0, "%s: %d outputs outside 1e-5 sum|wx| + 2^-8 |ref| (worst %.2f of the bound)", what, bad,
          worst_ratio);
    compare(what, got, ref, (size_t)T * rows, INFINITY, INFINITY, 1e-4);
#ifndef PL_CUDA_REAL
    pl_emu_set_seed(SEED_B);
    uint16_t *y2 = malloc((size_t)T * rows * 2);
    pl_cuda_nf4_gemv(dy, dx, &d.w, rows, cols, T, NULL);
    down(y2, dy, (size_t)T * rows * 2);
    pl_emu_set_seed(SEED_A);
    same_bits(what, yh, y2, (size_t)T * rows * 2);
    free(y2);
#endif
    free(w), free(wd), free(xf), free(xh), free(ref), free(got), free(yh);
    cudaFree(dx), cudaFree(dy);
    nf4_free(&d);
    pl_nf4_free(&q);
}

/* ---- embedding ------------------------------------------------------------------------------ */

/* Forward: an exact copy. Backward: the CPU's order, so the CPU's bits. */
static void test_embedding(int V, int C, int T) {
    char what[96];
    snprintf(what, sizeof what, "embedding V=%d C=%d T=%d", V, C, T);
    float *tf = malloc((size_t)V * C * 4), *df = malloc((size_t)T * C * 4);
    uint16_t *th = rand_bf16((size_t)V * C, 1.0f, tf), *dh = rand_bf16((size_t)T * C, 0.5f, df);
    int32_t *ids = malloc((size_t)T * 4);
    for (int t = 0; t < T; t++) ids[t] = (t * 7 + 3) % V; /* repeats once T > V */
    if (T > 2) ids[T - 1] = ids[0];
    uint16_t *dt = dev_up(th, (size_t)V * C * 2), *dout = dev_alloc((size_t)T * C * 2);
    uint16_t *dd = dev_up(dh, (size_t)T * C * 2), *got = malloc((size_t)T * C * 2);
    int32_t *dids = dev_up(ids, (size_t)T * 4);
    CHECK(pl_cuda_embedding(dout, dids, dt, T, C, NULL) == 0, "%s: launch", what);
    sync_ok(what);
    down(got, dout, (size_t)T * C * 2);
    int diff = 0;
    for (int t = 0; t < T; t++) diff += memcmp(got + (size_t)t * C, th + (size_t)ids[t] * C, (size_t)C * 2) != 0;
    CHECK(diff == 0, "%s: %d rows differ from the table's", what, diff);
    /* backward into a table gradient that already holds values (+=) */
    float *g0 = malloc((size_t)V * C * 4), *gref = malloc((size_t)V * C * 4), *ggot = malloc((size_t)V * C * 4);
    for (size_t i = 0; i < (size_t)V * C; i++) g0[i] = frand() * 0.1f;
    memcpy(gref, g0, (size_t)V * C * 4);
    pl_cpu_embedding_bwd(gref, ids, df, T, C);
    float *dg = dev_up(g0, (size_t)V * C * 4);
    CHECK(pl_cuda_embedding_bwd(dg, dids, dd, T, C, NULL) == 0, "%s bwd: launch", what);
    sync_ok(what);
    down(ggot, dg, (size_t)V * C * 4);
    CHECK(memcmp(ggot, gref, (size_t)V * C * 4) == 0, "%s bwd: not the CPU's bits", what);
    free(tf), free(df), free(th), free(dh), free(ids), free(got), free(g0), free(gref), free(ggot);
    cudaFree(dt), cudaFree(dout), cudaFree(dd), cudaFree(dids), cudaFree(dg);
}

/* ---- RMSNorm ---------------------------------------------------------------------------------- */

/* Forward: out within one bf16 rounding (rtol 2^-8, atol 1e-6) of the CPU's
 * fp32 result on the same bf16 inputs; rstd within 1e-5 (the sum order
 * differs). Backward: dx (bf16) within 2^-8 |ref| + 2^-8 rms(ref) (the
 * difference of two terms may cancel); dw (fp32, summed over T in another
 * order) within 1e-4 |ref| + 1e-5 max|dw|. */
static void test_rmsnorm(int T, int C) {
    char what[96];
    snprintf(what, sizeof what, "rmsnorm T=%d C=%d", T, C);
    const size_t n = (size_t)T * C;
    const float eps = 1e-5f;
    float *xf = malloc(n * 4), *w = malloc((size_t)C * 4), *ref = malloc(n * 4), *got = malloc(n * 4);
    uint16_t *xh = rand_bf16(n, 1.0f, xf), *oh = malloc(n * 2);
    for (int i = 0; i < C; i++) w[i] = 1.0f + 0.3f * frand();
    if (T > 1) /* a row of zeros: rstd = 1/sqrt(eps) */
        for (int i = 0; i < C; i++) xh[(size_t)C + i] = 0, xf[(size_t)C + i] = 0;
    pl_cpu_rmsnorm(ref, xf, w, T, C, eps);
    uint16_t *dx = dev_up(xh, n * 2), *dout = dev_alloc(n * 2);
    float *dw = dev_up(w, (size_t)C * 4), *drstd = dev_alloc((size_t)T * 4), *rstd = malloc((size_t)T * 4);
    CHECK(pl_cuda_rmsnorm(dout, drstd, dx, dw, T, C, eps, NULL) == 0, "%s: launch", what);
    sync_ok(what);
    down(oh, dout, n * 2);
    down(rstd, drstd, (size_t)T * 4);
    bf16_to_float(got, oh, n);
    compare(what, got, ref, n, 1e-6, 0x1p-8, 2e-5);
    float *rref = malloc((size_t)T * 4);
    for (int t = 0; t < T; t++) rref[t] = pl_rmsnorm_scale(pl_sumsq(xf + (size_t)t * C, C), C, eps);
    char w2[128];
    snprintf(w2, sizeof w2, "%s rstd", what);
    compare(w2, rstd, rref, (size_t)T, 0, 1e-5, 1e-10);
#ifndef PL_CUDA_REAL
    pl_emu_set_seed(SEED_B);
    uint16_t *o2 = malloc(n * 2);
    pl_cuda_rmsnorm(dout, drstd, dx, dw, T, C, eps, NULL);
    down(o2, dout, n * 2);
    pl_emu_set_seed(SEED_A);
    same_bits(what, oh, o2, n * 2);
    free(o2);
#endif
    /* backward */
    float *gf = malloc(n * 4), *dxref = malloc(n * 4), *dwref = malloc((size_t)C * 4), *dw0 = malloc((size_t)C * 4);
    uint16_t *gh = rand_bf16(n, 0.5f, gf);
    for (int i = 0; i < C; i++) dw0[i] = dwref[i] = 0.01f * frand();
    pl_cpu_rmsnorm_bwd(dxref, dwref, gf, xf, w, T, C, eps);
    uint16_t *dg = dev_up(gh, n * 2), *dgx = dev_alloc(n * 2);
    float *ddw = dev_up(dw0, (size_t)C * 4), *ws = dev_alloc(pl_cuda_rmsnorm_bwd_workspace(T, C) * 4);
    CHECK(pl_cuda_rmsnorm_bwd(dgx, ddw, dg, dx, dw, drstd, T, C, ws, NULL) == 0, "%s bwd: launch", what);
    sync_ok(what);
    uint16_t *gxh = malloc(n * 2);
    float *dwgot = malloc((size_t)C * 4);
    down(gxh, dgx, n * 2);
    down(dwgot, ddw, (size_t)C * 4);
    bf16_to_float(got, gxh, n);
    double rms = 0, mx = 0;
    for (size_t i = 0; i < n; i++) rms += (double)dxref[i] * dxref[i];
    rms = sqrt(rms / (double)n);
    for (int i = 0; i < C; i++) mx = fmax(mx, fabs(dwref[i]));
    snprintf(w2, sizeof w2, "%s bwd dx", what);
    compare(w2, got, dxref, n, 0x1p-8 * rms, 0x1p-8, 4e-5);
    snprintf(w2, sizeof w2, "%s bwd dw", what);
    compare(w2, dwgot, dwref, (size_t)C, 1e-5 * mx, 1e-4, 1e-8);
    /* in place: dx aliases dout */
    CHECK(pl_cuda_rmsnorm_bwd(dg, NULL, dg, dx, dw, drstd, T, C, NULL, NULL) == 0, "%s bwd in place", what);
    uint16_t *gxh2 = malloc(n * 2);
    down(gxh2, dg, n * 2);
    CHECK(memcmp(gxh, gxh2, n * 2) == 0, "%s bwd: dx in place differs", what);
    free(xf), free(w), free(ref), free(got), free(xh), free(oh), free(rstd), free(rref);
    free(gf), free(dxref), free(dwref), free(dw0), free(gh), free(gxh), free(gxh2), free(dwgot);
    cudaFree(dx), cudaFree(dout), cudaFree(dw), cudaFree(drstd), cudaFree(dg), cudaFree(dgx), cudaFree(ddw);
    cudaFree(ws);
}

/* ---- RoPE ------------------------------------------------------------------------------------- */

/* Each output is a x0 +- b x1 of two bf16 inputs, rounded once: within
 * 2^-8 (|ref| + |x0| + |x1|)-ish; stated as atol 2^-8 max|x|, rtol 2^-8. */
static void test_rope(int T, int nh, int hd) {
    char what[96];
    snprintf(what, sizeof what, "rope T=%d nh=%d hd=%d", T, nh, hd);
    const size_t n = (size_t)T * nh * hd;
    float *xf = malloc(n * 4), *ref = malloc(n * 4), *got = malloc(n * 4), *inv = malloc((size_t)(hd / 2 + 1) * 4);
    uint16_t *xh = rand_bf16(n, 1.0f, xf), *oh = malloc(n * 2);
    int32_t *pos = malloc((size_t)T * 4);
    for (int t = 0; t < T; t++) pos[t] = t == 0 ? 4095 : (t * 13) % 300; /* a large position too */
    for (int i = 0; i < hd / 2; i++) inv[i] = powf(10000.0f, -2.0f * (float)i / (float)hd);
    double mx = 0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(xf[i]));
    for (int dir = 0; dir < 2; dir++) {
        memcpy(ref, xf, n * 4);
        if (dir) pl_cpu_rope_bwd(ref, pos, inv, T, nh, hd);
        else pl_cpu_rope(ref, pos, inv, T, nh, hd);
        uint16_t *dx = dev_up(xh, n * 2);
        int32_t *dpos = dev_up(pos, (size_t)T * 4);
        float *dinv = dev_up(inv, (size_t)(hd / 2 + 1) * 4);
        CHECK(pl_cuda_rope(dx, dpos, dinv, T, nh, hd, dir, NULL) == 0, "%s: launch", what);
        sync_ok(what);
        down(oh, dx, n * 2);
        bf16_to_float(got, oh, n);
        char w2[128];
        snprintf(w2, sizeof w2, "%s %s", what, dir ? "bwd" : "fwd");
        compare(w2, got, ref, n, 0x1p-8 * mx, 0x1p-8, 2e-5);
        cudaFree(dx), cudaFree(dpos), cudaFree(dinv);
    }
    free(xf), free(ref), free(got), free(inv), free(xh), free(oh), free(pos);
}

/* ---- SwiGLU ----------------------------------------------------------------------------------- */

/* Elementwise: one bf16 rounding of an fp32 result on the same inputs
 * (rtol 2^-8; atol 1e-30 for the results that underflow). Gates reach
 * +-20, past exp's float range for silu's tail. */
static void test_swiglu(int64_t n) {
    char what[96];
    snprintf(what, sizeof what, "swiglu n=%lld", (long long)n);
    float *gf = malloc((size_t)n * 4), *uf = malloc((size_t)n * 4), *df = malloc((size_t)n * 4);
    float *ref = malloc((size_t)n * 4), *ref2 = malloc((size_t)n * 4), *got = malloc((size_t)n * 4);
    uint16_t *gh = malloc((size_t)n * 2), *uh = rand_bf16((size_t)n, 1.0f, uf), *dh = rand_bf16((size_t)n, 1.0f, df);
    for (int64_t i = 0; i < n; i++) {
        gh[i] = bf(i % 97 == 0 ? (i % 2 ? 90.0f : -90.0f) : 20.0f * frand());
        gf[i] = fb(gh[i]);
    }
    pl_cpu_swiglu(ref, gf, uf, 1, (int)n);
    uint16_t *dg = dev_up(gh, (size_t)n * 2), *du = dev_up(uh, (size_t)n * 2), *dd = dev_up(dh, (size_t)n * 2);
    uint16_t *dout = dev_alloc((size_t)n * 2), *oh = malloc((size_t)n * 2);
    CHECK(pl_cuda_swiglu(dout, dg, du, n, NULL) == 0, "%s: launch", what);
    sync_ok(what);
    down(oh, dout, (size_t)n * 2);
    bf16_to_float(got, oh, (size_t)n);
    compare(what, got, ref, (size_t)n, 1e-30, 0x1p-8, 2e-5);
    /* backward */
    pl_cpu_swiglu_bwd(ref, ref2, df, gf, uf, 1, (int)n);
    uint16_t *ddg = dev_alloc((size_t)n * 2), *ddu = dev_alloc((size_t)n * 2);
    CHECK(pl_cuda_swiglu_bwd(ddg, ddu, dd, dg, du, n, NULL) == 0, "%s bwd: launch", what);
    sync_ok(what);
    char w2[128];
    down(oh, ddg, (size_t)n * 2);
    bf16_to_float(got, oh, (size_t)n);
    snprintf(w2, sizeof w2, "%s bwd dgate", what);
    compare(w2, got, ref, (size_t)n, 1e-30, 0x1p-8, 2e-5);
    down(oh, ddu, (size_t)n * 2);
    bf16_to_float(got, oh, (size_t)n);
    snprintf(w2, sizeof w2, "%s bwd dup", what);
    compare(w2, got, ref2, (size_t)n, 1e-30, 0x1p-8, 2e-5);
    free(gf), free(uf), free(df), free(ref), free(ref2), free(got), free(gh), free(uh), free(dh), free(oh);
    cudaFree(dg), cudaFree(du), cudaFree(dd), cudaFree(dout), cudaFree(ddg), cudaFree(ddu);
}

/* ---- attention ------------------------------------------------------------------------------ */

/* Causal GQA attention against pl_cpu_attention / pl_cpu_attention_bwd on the
 * same bf16 inputs (the backward's CPU reference is given the kernel's bf16
 * out, the value the kernel's D_i is computed from).
 * out (bf16): a convex combination of v rows, one bf16 rounding of an fp32
 * sum: rtol 2^-8, atol 1e-4 max|v| (fp32 sums in another order), nMSE 2e-5.
 * lse (fp32) against a double-precision log-sum-exp of the same scores:
 * 1e-5 + 1e-5 |ref|. dq, dk, dv (bf16): ds = p (dp - D) cancels, so the
 * bound is relative to the tensor's rms: 2^-8 rms(ref) + 1e-6 + 2^-8 |ref|,
 * nMSE 4e-5 (the 1e-6: with one key p = 1 and dp - D is 0 on the CPU, a
 * few ulp on the device, whose D sums in another order). A query that sees no key: out 0, lse -inf, dq 0 (compared exactly:
 * the reference is 0). gen: Tq < Tk with qlast[i] = Tk - Tq + i (decoding
 * against a KV cache); nokey: a query whose segment no key has, and one with
 * qlast = -1. */
static double rms_of(const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return n ? sqrt(s / (double)n) : 0;
}

static void test_attention(int Tq, int Tk, int nh, int nkv, int hd, int nsegs, int nokey) {
    char what[128];
    snprintf(what, sizeof what, "attention Tq=%d Tk=%d nh=%d nkv=%d hd=%d segs=%d%s", Tq, Tk, nh, nkv, hd, nsegs,
             nokey ? " nokey" : "");
    const size_t nq = (size_t)Tq * nh * hd, nk = (size_t)Tk * nkv * hd;
    float *qf = malloc(nq * 4 + 4), *kf = malloc(nk * 4 + 4), *vf = malloc(nk * 4 + 4), *gf = malloc(nq * 4 + 4);
    uint16_t *qh = rand_bf16(nq, 1.0f, qf), *kh = rand_bf16(nk, 1.0f, kf), *vh = rand_bf16(nk, 1.0f, vf);
    uint16_t *gh = rand_bf16(nq, 0.5f, gf);
    int32_t *qlast = malloc((size_t)Tq * 4 + 4), *qseg = malloc((size_t)Tq * 4 + 4), *kseg = malloc((size_t)Tk * 4 + 4);
    for (int i = 0; i < Tq; i++) qlast[i] = Tk - Tq + i;
    for (int j = 0; j < Tk; j++) kseg[j] = nsegs ? (int32_t)((int64_t)j * nsegs / Tk) : 0; /* packed samples */
    for (int i = 0; i < Tq; i++) qseg[i] = kseg[Tk - Tq + i];
    if (nokey && Tq > 3) {
        qlast[1] = -1;               /* sees no key at all */
        if (nsegs) qseg[Tq - 2] = -7; /* its segment has no key */
    }
    const int32_t *qs = nsegs ? qseg : NULL, *ks = nsegs ? kseg : NULL;
    float *ref = malloc(nq * 4 + 4), *got = malloc(nq * 4 + 4), *lref = malloc((size_t)nh * Tq * 4 + 4);
    pl_cpu_attention(ref, qf, kf, vf, qlast, qs, ks, Tq, Tk, nh, nkv, hd);
    const float scale = 1.0f / sqrtf((float)hd);
    for (int h = 0; h < nh; h++) /* the log-sum-exp in double */
        for (int i = 0; i < Tq; i++) {
            const int g = h / (nh / nkv);
            double m = -INFINITY, s = 0;
            for (int pass = 0; pass < 2; pass++)
                for (int j = 0; j <= qlast[i] && j < Tk; j++) {
                    if (qs && kseg[j] != qseg[i]) continue;
                    double d = 0;
                    for (int e = 0; e < hd; e++)
                        d += (double)qf[((size_t)i * nh + h) * hd + e] * kf[((size_t)j * nkv + g) * hd + e];
                    d *= scale;
                    if (!pass) m = d > m ? d : m;
                    else s += exp(d - m);
                }
            lref[(size_t)h * Tq + i] = s > 0 ? (float)(m + log(s)) : -INFINITY;
        }
    uint16_t *dq_ = dev_up(qh, nq * 2), *dk_ = dev_up(kh, nk * 2), *dv_ = dev_up(vh, nk * 2), *dg = dev_up(gh, nq * 2);
    uint16_t *dout = dev_alloc(nq * 2), *oh = malloc(nq * 2 + 2);
    int32_t *dql = dev_up(qlast, (size_t)Tq * 4), *dqs = dev_up(qseg, (size_t)Tq * 4), *dks = dev_up(kseg, (size_t)Tk * 4);
    const int32_t *dqs_ = nsegs ? dqs : NULL, *dks_ = nsegs ? dks : NULL;
    float *dlse = dev_alloc((size_t)nh * Tq * 4), *lse = malloc((size_t)nh * Tq * 4 + 4);
    CHECK(pl_cuda_attention(dout, dlse, dq_, dk_, dv_, dql, dqs_, dks_, Tq, Tk, nh, nkv, hd, NULL) == 0, "%s: launch",
          what);
    sync_ok(what);
    down(oh, dout, nq * 2);
    down(lse, dlse, (size_t)nh * Tq * 4);
    bf16_to_float(got, oh, nq);
    double vmax = 0;
    for (size_t i = 0; i < nk; i++) vmax = fmax(vmax, fabs(vf[i]));
    compare(what, got, ref, nq, 1e-4 * vmax, 0x1p-8, 2e-5);
    char w2[160];
    int lbad = 0;
    for (size_t i = 0; i < (size_t)nh * Tq; i++) { /* -inf where no key is seen; compare() needs finite refs */
        if (isinf(lref[i])) {
            lbad += !(isinf(lse[i]) && lse[i] < 0);
            lse[i] = lref[i] = 0;
        }
    }
    snprintf(w2, sizeof w2, "%s lse", what);
    CHECK(lbad == 0, "%s: %d rows that see no key without lse = -inf", w2, lbad);
    compare(w2, lse, lref, (size_t)nh * Tq, 1e-5, 1e-5, 1e-10);
    down(lse, dlse, (size_t)nh * Tq * 4); /* the raw values again, for the bit comparison */
    { /* without lse (generation): the same out */
        uint16_t *dout2 = dev_alloc(nq * 2), *oh2 = malloc(nq * 2 + 2);
        CHECK(pl_cuda_attention(dout2, NULL, dq_, dk_, dv_, dql, dqs_, dks_, Tq, Tk, nh, nkv, hd, NULL) == 0,
              "%s: launch without lse", what);
        sync_ok(what);
        down(oh2, dout2, nq * 2);
        CHECK(memcmp(oh, oh2, nq * 2) == 0, "%s: out differs without lse", what);
        free(oh2);
        cudaFree(dout2);
    }
    /* backward: the CPU gets the kernel's out */
    float *dqr = malloc(nq * 4 + 4), *dkr = malloc(nk * 4 + 4), *dvr = malloc(nk * 4 + 4), *gk = malloc(nk * 4 + 4);
    pl_cpu_attention_bwd(dqr, dkr, dvr, gf, qf, kf, vf, got, qlast, qs, ks, Tq, Tk, nh, nkv, hd);
    uint16_t *ddq = dev_alloc(nq * 2), *ddk = dev_alloc(nk * 2), *ddv = dev_alloc(nk * 2);
    uint16_t *hq = malloc(nq * 2 + 2), *hk = malloc(nk * 2 + 2), *hv = malloc(nk * 2 + 2);
    float *ws = dev_alloc(pl_cuda_attention_bwd_workspace(Tq, nh) * 4);
    CHECK(pl_cuda_attention_bwd(ddq, ddk, ddv, dg, dq_, dk_, dv_, dout, dlse, dql, dqs_, dks_, Tq, Tk, nh, nkv, hd, ws,
                                NULL) == 0,
          "%s bwd: launch", what);
    sync_ok(what);
    down(hq, ddq, nq * 2), down(hk, ddk, nk * 2), down(hv, ddv, nk * 2);
    bf16_to_float(got, hq, nq);
    snprintf(w2, sizeof w2, "%s bwd dq", what);
    compare(w2, got, dqr, nq, 0x1p-8 * rms_of(dqr, nq) + 1e-6, 0x1p-8, 4e-5);
    bf16_to_float(gk, hk, nk);
    snprintf(w2, sizeof w2, "%s bwd dk", what);
    compare(w2, gk, dkr, nk, 0x1p-8 * rms_of(dkr, nk) + 1e-6, 0x1p-8, 4e-5);
    bf16_to_float(gk, hv, nk);
    snprintf(w2, sizeof w2, "%s bwd dv", what);
    compare(w2, gk, dvr, nk, 0x1p-8 * rms_of(dvr, nk) + 1e-6, 0x1p-8, 4e-5);
    if (nokey && Tq > 3) {
        int z = 1;
        for (int h = 0; h < nh; h++)
            for (int e = 0; e < hd; e++) {
                z &= hq[((size_t)1 * nh + h) * hd + e] == 0 && oh[((size_t)1 * nh + h) * hd + e] == 0;
                if (nsegs) z &= hq[((size_t)(Tq - 2) * nh + h) * hd + e] == 0;
            }
        CHECK(z, "%s: a query that sees no key has a nonzero out or dq", what);
    }
#ifndef PL_CUDA_REAL
    pl_emu_set_seed(SEED_B);
    uint16_t *o2 = malloc(nq * 2 + 2), *q2 = malloc(nq * 2 + 2), *k2 = malloc(nk * 2 + 2), *v2 = malloc(nk * 2 + 2);
    float *l2 = malloc((size_t)nh * Tq * 4 + 4);
    pl_cuda_attention(dout, dlse, dq_, dk_, dv_, dql, dqs_, dks_, Tq, Tk, nh, nkv, hd, NULL);
    pl_cuda_attention_bwd(ddq, ddk, ddv, dg, dq_, dk_, dv_, dout, dlse, dql, dqs_, dks_, Tq, Tk, nh, nkv, hd, ws, NULL);
    down(o2, dout, nq * 2), down(l2, dlse, (size_t)nh * Tq * 4);
    down(q2, ddq, nq * 2), down(k2, ddk, nk * 2), down(v2, ddv, nk * 2);
    pl_emu_set_seed(SEED_A);
    same_bits(what, oh, o2, nq * 2);
    same_bits(what, lse, l2, (size_t)nh * Tq * 4);
    same_bits(what, hq, q2, nq * 2);
    same_bits(what, hk, k2, nk * 2);
    same_bits(what, hv, v2, nk * 2);
    free(o2), free(q2), free(k2), free(v2), free(l2);
#endif
    free(qf), free(kf), free(vf), free(gf), free(qh), free(kh), free(vh), free(gh), free(qlast), free(qseg);
    free(kseg), free(ref), free(got), free(lref), free(oh), free(lse), free(dqr), free(dkr), free(dvr), free(gk);
    free(hq), free(hk), free(hv);
    cudaFree(dq_), cudaFree(dk_), cudaFree(dv_), cudaFree(dg), cudaFree(dout), cudaFree(dql), cudaFree(dqs);
    cudaFree(dks), cudaFree(dlse), cudaFree(ddq), cudaFree(ddk), cudaFree(ddv), cudaFree(ws);
}

/* ---- LM head + cross-entropy ------------------------------------------------------------------ */

/* The fused head + loss against pl_cpu_linear, pl_cpu_cross_entropy,
 * pl_cpu_cross_entropy_bwd and pl_cpu_linear_bwd on the same bf16 x and W,
 * mean over the counted rows (scale 1/n_valid), every 4th target ignored.
 * losses, lse (fp32; logits summed in another order than sgemm's):
 * 1e-5 + 1e-5 |ref|; loss sum 1e-6 relative; n_valid exact. dx (bf16):
 * 2^-8 rms(ref) + 2^-8 |ref|, nMSE 4e-5. dW (fp32, += onto a nonzero
 * gradient, summed over tokens in another order): 1e-5 max|ref| + 1e-4 |ref|,
 * nMSE 1e-8. */
static void test_lm_head_ce(int T, int C, int V, int all_ignored) {
    char what[128];
    snprintf(what, sizeof what, "lm_head_ce T=%d C=%d V=%d%s", T, C, V, all_ignored ? " all ignored" : "");
    const size_t nx = (size_t)T * C, nw = (size_t)V * C;
    float *xf = malloc(nx * 4 + 4), *wf = malloc(nw * 4 + 4);
    uint16_t *xh = rand_bf16(nx, 1.0f, xf), *wh = rand_bf16(nw, 0.15f, wf);
    int32_t *tg = malloc((size_t)T * 4 + 4);
    for (int t = 0; t < T; t++) tg[t] = all_ignored || (t % 4 == 3) ? -100 : (int32_t)(((int64_t)t * 7919 + 13) % V);
    if (T > 2 && !all_ignored) tg[2] = V - 1; /* the last row of the last (partial) chunk */
    float *logits = malloc((size_t)T * V * 4 + 4), *lref = malloc((size_t)T * 4 + 4), *lseref = malloc((size_t)T * 4 + 4);
    pl_cpu_linear(logits, xf, wf, NULL, T, C, V);
    int64_t nv_ref = 0;
    double sum_ref = pl_cpu_cross_entropy(logits, tg, T, V, lref, &nv_ref);
    for (int t = 0; t < T; t++) lseref[t] = pl_logsumexp_row(logits + (size_t)t * V, V);
    const float scale = nv_ref ? 1.0f / (float)nv_ref : 1.0f;
    pl_cpu_cross_entropy_bwd(logits, logits, tg, T, V, scale);
    float *dxr = malloc(nx * 4 + 4), *dwr = malloc(nw * 4 + 4), *dw0 = malloc(nw * 4 + 4);
    for (size_t i = 0; i < nw; i++) dw0[i] = dwr[i] = 1e-3f * frand();
    pl_cpu_linear_bwd(dxr, dwr, NULL, logits, xf, wf, T, C, V);

    uint16_t *dx_ = dev_up(xh, nx * 2), *dw_ = dev_up(wh, nw * 2), *ddx = dev_alloc(nx * 2);
    int32_t *dtg = dev_up(tg, (size_t)T * 4);
    float *dlse = dev_alloc((size_t)T * 4), *dloss = dev_alloc((size_t)T * 4), *ddw = dev_up(dw0, nw * 4);
    float *ws = dev_alloc(pl_cuda_lm_head_ce_workspace(T, V) * 4), *wsb = dev_alloc(pl_cuda_lm_head_ce_bwd_workspace(T, C) * 4);
    double *dsum = dev_alloc(8), sum = -1;
    int64_t *dnv = dev_alloc(8), nv = -1;
    CHECK(pl_cuda_lm_head_ce(dlse, dloss, dsum, dnv, dx_, dw_, dtg, T, C, V, ws, NULL) == 0, "%s: launch", what);
    CHECK(pl_cuda_lm_head_ce_bwd(ddx, ddw, dx_, dw_, dtg, dlse, T, C, V, scale, wsb, NULL) == 0, "%s bwd: launch",
          what);
    sync_ok(what);
    float *lse = malloc((size_t)T * 4 + 4), *loss = malloc((size_t)T * 4 + 4), *got = malloc(nx * 4 + 4);
    float *dwg = malloc(nw * 4 + 4);
    uint16_t *gxh = malloc(nx * 2 + 2);
    down(lse, dlse, (size_t)T * 4), down(loss, dloss, (size_t)T * 4), down(&sum, dsum, 8), down(&nv, dnv, 8);
    down(gxh, ddx, nx * 2), down(dwg, ddw, nw * 4);
    char w2[160];
    snprintf(w2, sizeof w2, "%s loss", what);
    compare(w2, loss, lref, (size_t)T, 1e-5, 1e-5, 1e-10);
    snprintf(w2, sizeof w2, "%s lse", what);
    compare(w2, lse, lseref, (size_t)T, 1e-5, 1e-5, 1e-10);
    CHECK(nv == nv_ref, "%s: n_valid %lld, CPU %lld", what, (long long)nv, (long long)nv_ref);
    CHECK(fabs(sum - sum_ref) <= 1e-6 * fabs(sum_ref), "%s: loss sum %.17g, CPU %.17g", what, sum, sum_ref);
    bf16_to_float(got, gxh, nx);
    snprintf(w2, sizeof w2, "%s bwd dx", what);
    compare(w2, got, dxr, nx, 0x1p-8 * rms_of(dxr, nx), 0x1p-8, 4e-5);
    double mx = 0;
    for (size_t i = 0; i < nw; i++) mx = fmax(mx, fabs(dwr[i]));
    snprintf(w2, sizeof w2, "%s bwd dW", what);
    compare(w2, dwg, dwr, nw, 1e-5 * mx, 1e-4, 1e-8);
#ifndef PL_CUDA_REAL
    pl_emu_set_seed(SEED_B);
    float *l2 = malloc((size_t)T * 4 + 4), *s2 = malloc((size_t)T * 4 + 4), *w2b = malloc(nw * 4 + 4);
    uint16_t *x2 = malloc(nx * 2 + 2);
    cudaMemcpy(ddw, dw0, nw * 4, cudaMemcpyHostToDevice);
    pl_cuda_lm_head_ce(dlse, dloss, dsum, dnv, dx_, dw_, dtg, T, C, V, ws, NULL);
    pl_cuda_lm_head_ce_bwd(ddx, ddw, dx_, dw_, dtg, dlse, T, C, V, scale, wsb, NULL);
    down(s2, dlse, (size_t)T * 4), down(l2, dloss, (size_t)T * 4), down(x2, ddx, nx * 2), down(w2b, ddw, nw * 4);
    pl_emu_set_seed(SEED_A);
    same_bits(what, lse, s2, (size_t)T * 4);
    same_bits(what, loss, l2, (size_t)T * 4);
    same_bits(what, gxh, x2, nx * 2);
    same_bits(what, dwg, w2b, nw * 4);
    free(l2), free(s2), free(w2b), free(x2);
#endif
    free(xf), free(wf), free(xh), free(wh), free(tg), free(logits), free(lref), free(lseref), free(dxr), free(dwr);
    free(dw0), free(lse), free(loss), free(got), free(dwg), free(gxh);
    cudaFree(dx_), cudaFree(dw_), cudaFree(ddx), cudaFree(dtg), cudaFree(dlse), cudaFree(dloss), cudaFree(ddw);
    cudaFree(ws), cudaFree(wsb), cudaFree(dsum), cudaFree(dnv);
}

/* A target >= V is a caller bug the CPU makes visible as NaN: its loss, the
 * loss sum, its dx row and (through the sum over tokens) all of dW; the other
 * row stays finite. */
static void test_lm_head_ce_bad_target(void) {
    const int T = 2, C = 16, V = 40;
    float xf[T * C], wf[V * C];
    uint16_t *xh = rand_bf16((size_t)T * C, 1.0f, xf), *wh = rand_bf16((size_t)V * C, 0.15f, wf);
    const int32_t tg[2] = {3, V};
    uint16_t *dx_ = dev_up(xh, sizeof xf / 2), *dw_ = dev_up(wh, sizeof wf / 2), *ddx = dev_alloc(sizeof xf / 2);
    int32_t *dtg = dev_up(tg, sizeof tg);
    float *dlse = dev_alloc(T * 4), *dloss = dev_alloc(T * 4), *ddw = dev_alloc(sizeof wf);
    float *ws = dev_alloc(pl_cuda_lm_head_ce_workspace(T, V) * 4), *wsb = dev_alloc(pl_cuda_lm_head_ce_bwd_workspace(T, C) * 4);
    double *dsum = dev_alloc(8), sum = 0;
    int64_t *dnv = dev_alloc(8), nv = 0;
    cudaMemset(ddw, 0, sizeof wf);
    CHECK(pl_cuda_lm_head_ce(dlse, dloss, dsum, dnv, dx_, dw_, dtg, T, C, V, ws, NULL) == 0 &&
              pl_cuda_lm_head_ce_bwd(ddx, ddw, dx_, dw_, dtg, dlse, T, C, V, 0.5f, wsb, NULL) == 0,
          "lm_head_ce bad target: launch");
    sync_ok("lm_head_ce bad target");
    float loss[2], dwg[V * C];
    uint16_t gx[T * C];
    down(loss, dloss, sizeof loss), down(&sum, dsum, 8), down(&nv, dnv, 8), down(gx, ddx, sizeof gx);
    down(dwg, ddw, sizeof dwg);
    int row0 = 1, row1 = 1, wnan = 1;
    for (int c = 0; c < C; c++) row0 &= isfinite(fb(gx[c])), row1 &= isnan(fb(gx[C + c]));
    for (int i = 0; i < V * C; i++) wnan &= isnan(dwg[i]);
    CHECK(isfinite(loss[0]) && isnan(loss[1]) && isnan(sum) && nv == 2,
          "lm_head_ce bad target: losses %g %g, sum %g, n_valid %lld", loss[0], loss[1], sum, (long long)nv);
    CHECK(row0 && row1 && wnan, "lm_head_ce bad target: dx row 0 finite %d, row 1 NaN %d, dW all NaN %d", row0, row1,
          wnan);
    free(xh), free(wh);
    cudaFree(dx_), cudaFree(dw_), cudaFree(ddx), cudaFree(dtg), cudaFree(dlse), cudaFree(dloss), cudaFree(ddw);
    cudaFree(ws), cudaFree(wsb), cudaFree(dsum), cudaFree(dnv);
}

/* ---- GEMM (cuBLASLt) and LoRA ---------------------------------------------------------------- */

static float *fabs_copy(const float *x, size_t n) {
    float *a = malloc(n * 4 + 4);
    for (size_t i = 0; i < n; i++) a[i] = fabsf(x[i]);
    return a;
}
static double max_of(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}
/* max over (T,O) of sum_k |x_tk| |w_ok|: the scale of a product's rounding error */
static double mag_linear(const float *x, const float *w, int T, int I, int O) {
    float *ax = fabs_copy(x, (size_t)T * I), *aw = fabs_copy(w, (size_t)O * I), *m = malloc((size_t)T * O * 4 + 4);
    pl_cpu_linear(m, ax, aw, NULL, T, I, O);
    double r = max_of(m, (size_t)T * O);
    free(ax), free(aw), free(m);
    return r;
}
static float *transpose(const float *x, int R, int C) {
    float *t = malloc((size_t)R * C * 4 + 4);
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++) t[(size_t)j * R + i] = x[(size_t)i * C + j];
    return t;
}
static void *g_ws;
static size_t g_ws_bytes;
static pl_cuda_blas *g_blas;

/* The CPU linear op's three products: y = x W^T (bf16 out), dx += dy W (bf16, in place), dW += dy^T x (fp32).
 * Bounds: bf16 outputs 2^-8 |ref| (one rounding) + 1e-5 max sum|a||b| (fp32 sums in another order);
 * dW 1e-5 max sum|dy||x| + 1e-5 |ref|; nMSE 2e-5 (bf16) and 1e-10 (fp32). */
static void test_gemm(int T, int I, int O) {
    char what[128], w2[160];
    snprintf(what, sizeof what, "gemm T=%d in=%d out=%d", T, I, O);
    const size_t nx = (size_t)T * I, nw = (size_t)O * I, ny = (size_t)T * O;
    float *xf = malloc(nx * 4 + 4), *wf = malloc(nw * 4 + 4), *dyf = malloc(ny * 4 + 4), *dx0f = malloc(nx * 4 + 4);
    uint16_t *xh = rand_bf16(nx, 1.0f, xf), *wh = rand_bf16(nw, 0.2f, wf), *dyh = rand_bf16(ny, 0.5f, dyf);
    uint16_t *dx0h = rand_bf16(nx, 0.3f, dx0f);
    float *dw0 = malloc(nw * 4 + 4);
    for (size_t i = 0; i < nw; i++) dw0[i] = 0.1f * frand();
    float *yr = malloc(ny * 4 + 4), *dxr = malloc(nx * 4 + 4), *dwr = malloc(nw * 4 + 4);
    memcpy(dwr, dw0, nw * 4);
    pl_cpu_linear(yr, xf, wf, NULL, T, I, O);
    pl_cpu_linear_bwd(dxr, dwr, NULL, dyf, xf, wf, T, I, O);
    for (size_t i = 0; i < nx; i++) dxr[i] += dx0f[i];
    float *wt = transpose(wf, O, I), *dyt = transpose(dyf, T, O), *xt = transpose(xf, T, I);
    const double my = mag_linear(xf, wf, T, I, O), mdx = mag_linear(dyf, wt, T, O, I), mdw = mag_linear(dyt, xt, O, T, I);

    uint16_t *dx_ = dev_up(xh, nx * 2), *dw_ = dev_up(wh, nw * 2), *ddy = dev_up(dyh, ny * 2), *dy_ = dev_alloc(ny * 2);
    uint16_t *ddx = dev_up(dx0h, nx * 2);
    float *ddw = dev_up(dw0, nw * 4);
    CHECK(pl_cuda_linear(g_blas, dy_, dx_, dw_, T, I, O, g_ws, g_ws_bytes, NULL) == 0, "%s: linear", what);
    CHECK(pl_cuda_linear_bwd_x(g_blas, ddx, 1, ddy, dw_, T, I, O, g_ws, g_ws_bytes, NULL) == 0, "%s: bwd_x", what);
    CHECK(pl_cuda_linear_bwd_w(g_blas, ddw, ddy, dx_, T, I, O, 1.0f, g_ws, g_ws_bytes, NULL) == 0, "%s: bwd_w", what);
    sync_ok(what);
    uint16_t *yh = malloc(ny * 2 + 2), *gxh = malloc(nx * 2 + 2);
    float *yg = malloc(ny * 4 + 4), *dxg = malloc(nx * 4 + 4), *dwg = malloc(nw * 4 + 4);
    down(yh, dy_, ny * 2), down(gxh, ddx, nx * 2), down(dwg, ddw, nw * 4);
    bf16_to_float(yg, yh, ny), bf16_to_float(dxg, gxh, nx);
    snprintf(w2, sizeof w2, "%s y=x.W^T", what);
    compare(w2, yg, yr, ny, 1e-5 * my, 0x1p-8, 2e-5);
    snprintf(w2, sizeof w2, "%s dx+=dy.W", what);
    compare(w2, dxg, dxr, nx, 1e-5 * mdx + 1e-5 * max_of(dx0f, nx), 0x1p-8, 2e-5);
    snprintf(w2, sizeof w2, "%s dW+=dy^T.x", what);
    compare(w2, dwg, dwr, nw, 1e-5 * mdw, 1e-5, 1e-10);
#ifndef PL_CUDA_REAL
    pl_emu_set_seed(SEED_B);
    uint16_t *y2 = malloc(ny * 2 + 2), *x2 = malloc(nx * 2 + 2);
    float *w2b = malloc(nw * 4 + 4);
    cudaMemcpy(ddx, dx0h, nx * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(ddw, dw0, nw * 4, cudaMemcpyHostToDevice);
    pl_cuda_linear(g_blas, dy_, dx_, dw_, T, I, O, g_ws, g_ws_bytes, NULL);
    pl_cuda_linear_bwd_x(g_blas, ddx, 1, ddy, dw_, T, I, O, g_ws, g_ws_bytes, NULL);
    pl_cuda_linear_bwd_w(g_blas, ddw, ddy, dx_, T, I, O, 1.0f, g_ws, g_ws_bytes, NULL);
    down(y2, dy_, ny * 2), down(x2, ddx, nx * 2), down(w2b, ddw, nw * 4);
    pl_emu_set_seed(SEED_A);
    same_bits(what, yh, y2, ny * 2);
    same_bits(what, gxh, x2, nx * 2);
    same_bits(what, dwg, w2b, nw * 4);
    free(y2), free(x2), free(w2b);
#endif
    free(xf), free(wf), free(dyf), free(dx0f), free(xh), free(wh), free(dyh), free(dx0h), free(dw0), free(yr);
    free(dxr), free(dwr), free(wt), free(dyt), free(xt), free(yh), free(gxh), free(yg), free(dxg), free(dwg);
    cudaFree(dx_), cudaFree(dw_), cudaFree(ddy), cudaFree(dy_), cudaFree(ddx), cudaFree(ddw);
}

/* Views: x, W and y at odd element offsets inside their buffers (2-byte
 * aligned, as a slice of a larger buffer may be): gemm.cu declares each
 * pointer's alignment to cuBLASLt's heuristic (its default assumes 256 bytes;
 * the emulator fails a call whose pointers break what was declared). */
static void test_gemm_views(int T, int I, int O) {
    char what[96];
    snprintf(what, sizeof what, "gemm views T=%d in=%d out=%d (offsets 1, 3, 5)", T, I, O);
    const size_t nx = (size_t)T * I, nw = (size_t)O * I, ny = (size_t)T * O;
    float *xf = malloc(nx * 4 + 4), *wf = malloc(nw * 4 + 4), *yr = malloc(ny * 4 + 4), *yg = malloc(ny * 4 + 4);
    uint16_t *xh = rand_bf16(nx, 1.0f, xf), *wh = rand_bf16(nw, 0.2f, wf), *yh = malloc(ny * 2 + 2);
    pl_cpu_linear(yr, xf, wf, NULL, T, I, O);
    uint16_t *bx = dev_alloc((nx + 8) * 2), *bw = dev_alloc((nw + 8) * 2), *by = dev_alloc((ny + 8) * 2);
    cudaMemcpy(bx + 1, xh, nx * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(bw + 3, wh, nw * 2, cudaMemcpyHostToDevice);
    int e = pl_cuda_linear(g_blas, by + 5, bx + 1, bw + 3, T, I, O, g_ws, g_ws_bytes, NULL);
    CHECK(e == 0, "%s: %d", what, e);
    sync_ok(what);
    down(yh, by + 5, ny * 2);
    bf16_to_float(yg, yh, ny);
    compare(what, yg, yr, ny, 1e-5 * mag_linear(xf, wf, T, I, O), 0x1p-8, 2e-5);
    free(xf), free(wf), free(yr), free(yg), free(xh), free(wh), free(yh);
    cudaFree(bx), cudaFree(bw), cudaFree(by);
}

/* K = 0 (an empty sum): C = beta C; cuBLASLt is not called. And a NaN input
 * reaches exactly the outputs that depend on it. */
static void test_gemm_edges(void) {
    uint16_t h[6] = {bf(1.0f), bf(2.0f), bf(-3.0f), bf(4.0f), bf(5.0f), bf(6.0f)}, got[6];
    uint16_t *dc = dev_up(h, sizeof h);
    CHECK(pl_cuda_gemm(g_blas, dc, 0, NULL, 0, NULL, 1, 2, 3, 0, 1.0f, 0.5f, g_ws, g_ws_bytes, NULL) == 0, "gemm K=0");
    sync_ok("gemm K=0");
    down(got, dc, sizeof got);
    int ok = 1;
    for (int i = 0; i < 6; i++) ok &= fb(got[i]) == 0.5f * fb(h[i]);
    CHECK(ok, "gemm K=0: C = beta C");
    /* x (2,3) with a NaN in row 1; W (2,3): y row 1 NaN, row 0 finite; dW all NaN-free except through row 1 */
    uint16_t x[6] = {bf(1), bf(2), bf(3), bf(1), 0x7fc0, bf(1)}, w[6] = {bf(1), bf(0), bf(1), bf(0), bf(1), bf(0)};
    uint16_t *dx_ = dev_up(x, sizeof x), *dw_ = dev_up(w, sizeof w), *dy_ = dev_alloc(8), y[4];
    CHECK(pl_cuda_linear(g_blas, dy_, dx_, dw_, 2, 3, 2, g_ws, g_ws_bytes, NULL) == 0, "gemm NaN: launch");
    sync_ok("gemm NaN");
    down(y, dy_, sizeof y);
    CHECK(fb(y[0]) == 4.0f && fb(y[1]) == 2.0f && isnan(fb(y[2])) && isnan(fb(y[3])),
          "gemm NaN: y = %g %g %g %g, want 4 2 nan nan", fb(y[0]), fb(y[1]), fb(y[2]), fb(y[3]));
    cudaFree(dc), cudaFree(dx_), cudaFree(dw_), cudaFree(dy_);
}

/* LoRA (trainer/train.c's lin_fwd and lora_bwd) with the CPU ops on fp32; the
 * kernel keeps xa and dxa in bf16 (one rounding each, 2^-9 relative), so each
 * bound is 2^-8 times the scale of the product that follows that rounding
 * (max sum |a||b|, as the CPU computes it) plus 2^-8 |ref| for the output's
 * own bf16 rounding (fp32 outputs: 1e-5 |ref|). drop: u = x with a third of
 * the inputs zeroed and the rest scaled by 1.5 (as pl_lora_dropout makes
 * it), and dx = dxa . A returned for the caller to mask. */
static void test_lora(int T, int I, int O, int r, int rslora, int drop) {
    char what[128], w2[160];
    const float alpha = 16.0f, scale = rslora ? alpha / sqrtf((float)r) : alpha / (float)r;
    snprintf(what, sizeof what, "lora T=%d in=%d out=%d r=%d%s%s", T, I, O, r, rslora ? " rslora" : "",
             drop ? " dropout" : "");
    const size_t nu = (size_t)T * I, na = (size_t)r * I, nb = (size_t)O * r, ny = (size_t)T * O, nxa = (size_t)T * r;
    float *uf = malloc(nu * 4 + 4), *af = malloc(na * 4 + 4), *bff = malloc(nb * 4 + 4), *y0f = malloc(ny * 4 + 4);
    float *doutf = malloc(ny * 4 + 4), *dx0f = malloc(nu * 4 + 4);
    uint16_t *uh = rand_bf16(nu, 1.0f, uf), *ah = rand_bf16(na, 1.0f / sqrtf((float)I), af);
    uint16_t *bh = rand_bf16(nb, 0.05f, bff), *y0h = rand_bf16(ny, 1.0f, y0f), *douth = rand_bf16(ny, 0.5f, doutf);
    uint16_t *dx0h = rand_bf16(nu, 0.3f, dx0f);
    if (drop)
        for (size_t i = 0; i < nu; i++) {
            float v = i % 3 == 1 ? 0.0f : fb(uh[i]) * 1.5f;
            uh[i] = bf(v), uf[i] = fb(uh[i]);
        }
    float *dA0 = malloc(na * 4 + 4), *dB0 = malloc(nb * 4 + 4);
    for (size_t i = 0; i < na; i++) dA0[i] = 0.01f * frand();
    for (size_t i = 0; i < nb; i++) dB0[i] = 0.01f * frand();
    /* CPU, as lin_fwd and lora_bwd */
    float *xar = malloc(nxa * 4 + 4), *ly = malloc(ny * 4 + 4), *yr = malloc(ny * 4 + 4);
    pl_cpu_linear(xar, uf, af, NULL, T, I, r);
    pl_cpu_linear(ly, xar, bff, NULL, T, r, O);
    pl_cpu_scale(ly, scale, ny);
    pl_cpu_add(yr, y0f, ly, ny);
    float *dy = malloc(ny * 4 + 4), *dxar = malloc(nxa * 4 + 4), *dur = malloc(nu * 4 + 4);
    float *dAr = malloc(na * 4 + 4), *dBr = malloc(nb * 4 + 4), *dxr = malloc(nu * 4 + 4);
    memcpy(dy, doutf, ny * 4), memcpy(dAr, dA0, na * 4), memcpy(dBr, dB0, nb * 4);
    pl_cpu_scale(dy, scale, ny);
    pl_cpu_linear_bwd(dxar, dBr, NULL, dy, xar, bff, T, r, O);
    pl_cpu_linear_bwd(dur, dAr, NULL, dxar, uf, af, T, I, r);
    if (drop) memcpy(dxr, dur, nu * 4);
    else pl_cpu_add(dxr, dx0f, dur, nu);
    /* error scales: the products after each bf16 rounding (xa, dxa) */
    float *bt = transpose(bff, O, r), *at = transpose(af, r, I), *dyt = transpose(dy, T, O), *dxat = transpose(dxar, T, r);
    float *xat = transpose(xar, T, r), *ut = transpose(uf, T, I);
    const double m_xa = mag_linear(uf, af, T, I, r), m_y = mag_linear(xar, bff, T, r, O) * scale;
    const double m_dxa = mag_linear(dy, bt, T, O, r), m_dB = mag_linear(dyt, xat, O, T, r);
    const double m_dA = mag_linear(dxat, ut, r, T, I), m_dx = mag_linear(dxar, at, T, r, I);

    uint16_t *du_ = dev_up(uh, nu * 2), *da_ = dev_up(ah, na * 2), *db_ = dev_up(bh, nb * 2), *dy_ = dev_up(y0h, ny * 2);
    uint16_t *dxa_ = dev_alloc(nxa * 2), *ddxa = dev_alloc(nxa * 2), *ddout = dev_up(douth, ny * 2);
    uint16_t *ddx = dev_up(dx0h, nu * 2);
    float *ddA = dev_up(dA0, na * 4), *ddB = dev_up(dB0, nb * 4);
    CHECK(pl_cuda_lora_fwd(g_blas, dy_, dxa_, du_, da_, db_, T, I, O, r, scale, g_ws, g_ws_bytes, NULL) == 0,
          "%s: fwd", what);
    CHECK(pl_cuda_lora_bwd(g_blas, ddx, !drop, ddA, ddB, ddxa, ddout, du_, dxa_, da_, db_, T, I, O, r, scale, g_ws,
                           g_ws_bytes, NULL) == 0,
          "%s: bwd", what);
    sync_ok(what);
    uint16_t *yh = malloc(ny * 2 + 2), *xah = malloc(nxa * 2 + 2), *dxah = malloc(nxa * 2 + 2), *dxh = malloc(nu * 2 + 2);
    float *yg = malloc(ny * 4 + 4), *xag = malloc(nxa * 4 + 4), *dxag = malloc(nxa * 4 + 4), *dxg = malloc(nu * 4 + 4);
    float *dAg = malloc(na * 4 + 4), *dBg = malloc(nb * 4 + 4);
    down(yh, dy_, ny * 2), down(xah, dxa_, nxa * 2), down(dxah, ddxa, nxa * 2), down(dxh, ddx, nu * 2);
    down(dAg, ddA, na * 4), down(dBg, ddB, nb * 4);
    bf16_to_float(yg, yh, ny), bf16_to_float(xag, xah, nxa), bf16_to_float(dxag, dxah, nxa), bf16_to_float(dxg, dxh, nu);
    snprintf(w2, sizeof w2, "%s xa", what);
    compare(w2, xag, xar, nxa, 1e-5 * m_xa, 0x1p-8, 2e-5);
    snprintf(w2, sizeof w2, "%s y", what);
    compare(w2, yg, yr, ny, 0x1p-8 * m_y + 1e-5 * max_of(y0f, ny), 0x1p-8, 4e-5);
    snprintf(w2, sizeof w2, "%s dB", what);
    compare(w2, dBg, dBr, nb, 0x1p-8 * m_dB, 1e-5, 4e-5);
    snprintf(w2, sizeof w2, "%s dxa", what);
    compare(w2, dxag, dxar, nxa, 1e-5 * m_dxa, 0x1p-8, 2e-5);
    snprintf(w2, sizeof w2, "%s dA", what);
    compare(w2, dAg, dAr, na, 0x1p-8 * m_dA, 1e-5, 4e-5);
    snprintf(w2, sizeof w2, "%s dx", what);
    compare(w2, dxg, dxr, nu, 0x1p-8 * m_dx + 1e-5 * max_of(dx0f, nu), 0x1p-8, 4e-5);
#ifndef PL_CUDA_REAL
    pl_emu_set_seed(SEED_B);
    uint16_t *y2 = malloc(ny * 2 + 2), *x2 = malloc(nu * 2 + 2);
    float *a2 = malloc(na * 4 + 4), *b2 = malloc(nb * 4 + 4);
    cudaMemcpy(dy_, y0h, ny * 2, cudaMemcpyHostToDevice), cudaMemcpy(ddx, dx0h, nu * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(ddA, dA0, na * 4, cudaMemcpyHostToDevice), cudaMemcpy(ddB, dB0, nb * 4, cudaMemcpyHostToDevice);
    pl_cuda_lora_fwd(g_blas, dy_, dxa_, du_, da_, db_, T, I, O, r, scale, g_ws, g_ws_bytes, NULL);
    pl_cuda_lora_bwd(g_blas, ddx, !drop, ddA, ddB, ddxa, ddout, du_, dxa_, da_, db_, T, I, O, r, scale, g_ws,
                     g_ws_bytes, NULL);
    down(y2, dy_, ny * 2), down(x2, ddx, nu * 2), down(a2, ddA, na * 4), down(b2, ddB, nb * 4);
    pl_emu_set_seed(SEED_A);
    same_bits(what, yh, y2, ny * 2);
    same_bits(what, dxh, x2, nu * 2);
    same_bits(what, dAg, a2, na * 4);
    same_bits(what, dBg, b2, nb * 4);
    free(y2), free(x2), free(a2), free(b2);
#endif
    free(uf), free(af), free(bff), free(y0f), free(doutf), free(dx0f), free(uh), free(ah), free(bh), free(y0h);
    free(douth), free(dx0h), free(dA0), free(dB0), free(xar), free(ly), free(yr), free(dy), free(dxar), free(dur);
    free(dAr), free(dBr), free(dxr), free(bt), free(at), free(dyt), free(dxat), free(xat), free(ut);
    free(yh), free(xah), free(dxah), free(dxh), free(yg), free(xag), free(dxag), free(dxg), free(dAg), free(dBg);
    cudaFree(du_), cudaFree(da_), cudaFree(db_), cudaFree(dy_), cudaFree(dxa_), cudaFree(ddxa), cudaFree(ddout);
    cudaFree(ddx), cudaFree(ddA), cudaFree(ddB);
}

/* ---- optimizer ---------------------------------------------------------------------------------- */

/* AdamW: the CPU's bits (same fp32 operations, explicit fmaf), three steps.
 * Sum of squares: double, another order than the CPU's: rtol 1e-12. Clip:
 * the CPU's coefficient and product. */
static void test_optim(int64_t n) {
    char what[96];
    snprintf(what, sizeof what, "adamw n=%lld", (long long)n);
    const size_t b = (size_t)n * 4;
    float *p = malloc(b), *g = malloc(b), *m = calloc(1, b), *v = calloc(1, b), *out = malloc(b);
    for (int64_t i = 0; i < n; i++) p[i] = frand();
    float *dp = dev_up(p, b), *dg = dev_alloc(b), *dm = dev_up(m, b), *dv = dev_up(v, b);
    int same = 1;
    for (int t = 1; t <= 3; t++) {
        for (int64_t i = 0; i < n; i++) g[i] = frand() * (i % 5 == 0 ? 1e-3f : 1.0f);
        cudaMemcpy(dg, g, b, cudaMemcpyHostToDevice);
        pl_cpu_adamw(p, g, m, v, (size_t)n, 2e-4f, 0.9f, 0.999f, 1e-8f, 0.01f, t);
        CHECK(pl_cuda_adamw(dp, dg, dm, dv, n, 2e-4f, 0.9f, 0.999f, 1e-8f, 0.01f, t, NULL) == 0, "%s: launch", what);
        sync_ok(what);
        down(out, dp, b);
        same &= memcmp(out, p, b) == 0;
        down(out, dm, b);
        same &= memcmp(out, m, b) == 0;
        down(out, dv, b);
        same &= memcmp(out, v, b) == 0;
    }
    CHECK(same, "%s: p, m, v are not the CPU's bits after 3 steps", what);
    /* sum of squares, accumulated over two calls, then clipping */
    double *dsum = dev_alloc(sizeof(double)), *ws = dev_alloc(pl_cuda_sumsq_workspace(n) * sizeof(double)), got;
    CHECK(pl_cuda_sumsq(dsum, dg, n, 0, ws, NULL) == 0 && pl_cuda_sumsq(dsum, dp, n, 1, ws, NULL) == 0,
          "%s sumsq: launch", what);
    sync_ok(what);
    down(&got, dsum, sizeof got);
    double ref = pl_cpu_sumsq(g, (size_t)n) + pl_cpu_sumsq(p, (size_t)n);
    CHECK(fabs(got - ref) <= 1e-12 * ref, "sumsq n=%lld: %.17g, CPU %.17g", (long long)n, got, ref);
    const float maxn = 0.5f;
    CHECK(pl_cuda_clip(dg, n, dsum, maxn, NULL) == 0, "%s clip: launch", what);
    sync_ok(what);
    down(out, dg, b);
    double coef = maxn / (sqrt(ref) + 1e-6);
    if (coef < 1.0) pl_cpu_scale(g, (float)coef, (size_t)n);
    CHECK(memcmp(out, g, b) == 0, "clip n=%lld: not the CPU's bits (coef %g)", (long long)n, coef);
    free(p), free(g), free(m), free(v), free(out);
    cudaFree(dp), cudaFree(dg), cudaFree(dm), cudaFree(dv), cudaFree(dsum), cudaFree(ws);
}

/* ---- the reduce-scatter's sum in rank order (nccl_dist.cu) ---------------------------------- */

/* pl_cuda_sum_slices against core/dist.c's pl_dist_sum_slices: the same bits
 * (the NCCL path's reduce-scatter must give the MPI path's). The slices mix
 * magnitudes (1e-4 .. 1e4, both signs), so a different order of the P
 * additions rounds differently: the test checks that a reversed order does
 * differ somewhere (P >= 3), so equal bits are not an accident of the data. */
static void test_sum_slices(int P, int64_t len) {
    char what[96];
    snprintf(what, sizeof what, "sum_slices P=%d len=%lld", P, (long long)len);
    const size_t n = (size_t)P * (size_t)len, b = (size_t)len * 4;
    float *sl = malloc((n ? n : 1) * 4), *ref = malloc(b ? b : 4), *got = malloc(b ? b : 4);
    for (size_t i = 0; i < n; i++) {
        static const float mag[] = {1e-4f, 1.0f, 3.3e2f, 1e4f};
        sl[i] = frand() * mag[(i * 7 + i / 3) % 4];
    }
    pl_dist_sum_slices(ref, sl, P, (size_t)len);
    float *dsl = dev_up(sl, n * 4), *dout = dev_alloc(b);
    CHECK(pl_cuda_sum_slices(dout, dsl, P, len, NULL) == 0, "%s: launch", what);
    sync_ok(what);
    down(got, dout, b);
    CHECK(memcmp(got, ref, b) == 0, "%s: not the bits of core/dist.c's rank-order sum", what);
    if (P >= 3 && len >= 1000) {
        int64_t differ = 0;
        for (int64_t j = 0; j < len; j++) {
            float s = sl[(size_t)(P - 1) * (size_t)len + (size_t)j];
            for (int r = P - 2; r >= 0; r--) s += sl[(size_t)r * (size_t)len + (size_t)j];
            differ += memcmp(&s, &ref[j], 4) != 0;
        }
        CHECK(differ > 0, "%s: the reversed order gave the same bits everywhere (the data has no teeth)", what);
        printf("note: %s: the reversed rank order differs in %lld of %lld elements\n", what, (long long)differ,
               (long long)len);
    }
#ifndef PL_CUDA_REAL
    pl_emu_set_seed(SEED_B);
    cudaMemset(dout, 0, b ? b : 1);
    CHECK(pl_cuda_sum_slices(dout, dsl, P, len, NULL) == 0, "%s: launch", what);
    sync_ok(what);
    float *again = malloc(b ? b : 4);
    down(again, dout, b);
    same_bits(what, got, again, b);
    free(again);
    pl_emu_set_seed(SEED_A);
#endif
    CHECK(pl_cuda_sum_slices(dout, dsl, 0, len, NULL) != 0, "%s: P = 0 accepted", what);
    free(sl), free(ref), free(got);
    cudaFree(dsl), cudaFree(dout);
}

/* ---- the emulator itself --------------------------------------------------------------------------- */
#ifndef PL_CUDA_REAL
static int any_nonfinite_or_off(const uint16_t *a, const float *ref, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float x = fb(a[i]);
        if (!isfinite(x) || fabs(x - ref[i]) > 1e-6 + 0x1p-8 * fabs(ref[i])) return 1;
    }
    return 0;
}

static void test_teeth(void) {
    /* 1. rmsnorm without its barrier: wrong under some seed of the first 8 */
    const int T = 5, C = 256;
    const size_t n = (size_t)T * C;
    float *xf = malloc(n * 4), *w = malloc((size_t)C * 4), *ref = malloc(n * 4);
    uint16_t *xh = rand_bf16(n, 1.0f, xf), *oh = malloc(n * 2);
    for (int i = 0; i < C; i++) w[i] = 1.0f;
    pl_cpu_rmsnorm(ref, xf, w, T, C, 1e-5f);
    uint16_t *dx = dev_up(xh, n * 2), *dout = dev_alloc(n * 2);
    float *dw = dev_up(w, (size_t)C * 4);
    int caught = 0, ok_runs = 0;
    for (uint64_t seed = 1; seed <= 8; seed++) {
        pl_emu_set_seed(seed);
        teeth_rmsnorm_nosync(dout, dx, dw, T, C, 1e-5f);
        down(oh, dout, n * 2);
        caught += any_nonfinite_or_off(oh, ref, n);
        pl_cuda_rmsnorm(dout, NULL, dx, dw, T, C, 1e-5f, NULL); /* the real kernel under the same seed */
        down(oh, dout, n * 2);
        ok_runs += !any_nonfinite_or_off(oh, ref, n);
    }
    pl_emu_set_seed(SEED_A);
    CHECK(caught > 0, "teeth: rmsnorm without __syncthreads was right under all 8 seeds");
    CHECK(ok_runs == 8, "teeth: the real rmsnorm failed under %d of 8 seeds", 8 - ok_runs);
    printf("note: teeth: rmsnorm without its __syncthreads wrong under %d of 8 schedules\n", caught);
    /* 2. shuffle width 16 instead of 32 */
    const int rows = 9, cols = 100;
    float *W = malloc((size_t)rows * cols * 4), *xv = malloc((size_t)cols * 4), *yref = malloc((size_t)rows * 4);
    uint16_t *xb = rand_bf16((size_t)cols, 1.0f, xv), yb[16];
    for (int i = 0; i < rows * cols; i++) W[i] = frand();
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int c = 0; c < cols; c++) s += (double)W[r * cols + c] * xv[c];
        yref[r] = (float)s;
    }
    float *dW = dev_up(W, (size_t)rows * cols * 4);
    uint16_t *dxb = dev_up(xb, (size_t)cols * 2), *dy = dev_alloc(32);
    teeth_gemv(dy, dxb, dW, rows, cols, 0);
    down(yb, dy, (size_t)rows * 2);
    CHECK(!any_nonfinite_or_off(yb, yref, (size_t)rows), "teeth: the correct GEMV control is wrong");
    teeth_gemv(dy, dxb, dW, rows, cols, 1);
    down(yb, dy, (size_t)rows * 2);
    CHECK(any_nonfinite_or_off(yb, yref, (size_t)rows), "teeth: shuffle width 16 gave the right sums");
    /* 3. a barrier half the block skips while the other half shuffles */
    float *dz = dev_alloc(64 * 4);
    pl_emu_set_quiet(1);
    pl_emu_clear_message();
    int rc = teeth_divergent_barrier(dz);
    pl_emu_set_quiet(0);
    CHECK(rc == cudaErrorLaunchFailure, "teeth: divergent barrier launch returned %d", rc);
    CHECK(strstr(pl_emu_last_message(), "teeth_divergent_barrier_kernel") != NULL,
          "teeth: the failure does not name the kernel: %s", pl_emu_last_message());
    CHECK(strstr(pl_emu_last_message(), "__syncthreads") != NULL, "teeth: message: %s", pl_emu_last_message());
    CHECK(cudaDeviceSynchronize() == cudaErrorLaunchFailure, "teeth: cudaDeviceSynchronize does not report it");
    CHECK(cudaGetLastError() == cudaSuccess, "teeth: cudaGetLastError should be clear after reading it once");
    free(xf), free(w), free(ref), free(xh), free(oh), free(W), free(xv), free(yref), free(xb);
    cudaFree(dx), cudaFree(dout), cudaFree(dw), cudaFree(dW), cudaFree(dxb), cudaFree(dy), cudaFree(dz);
}

static void test_runtime(void) {
    size_t fr, tot;
    cudaMemGetInfo(&fr, &tot);
    CHECK(tot == (size_t)24 << 30 || getenv("PL_EMU_MEM"), "runtime: default capacity %zu, expected 24 GiB", tot);
    const size_t used = pl_emu_mem_used();
    pl_emu_set_capacity(used + (1 << 20));
    void *a = NULL, *b = NULL;
    CHECK(cudaMalloc(&a, 700 << 10) == cudaSuccess, "runtime: 700 KiB under a 1 MiB capacity");
    CHECK(cudaMalloc(&b, 700 << 10) == cudaErrorMemoryAllocation && b == NULL, "runtime: over capacity must fail");
    CHECK(cudaGetLastError() == cudaErrorMemoryAllocation, "runtime: the failure is the last error");
    cudaMemGetInfo(&fr, &tot);
    CHECK(tot == used + (1 << 20) && fr == tot - used - (700 << 10), "runtime: cudaMemGetInfo %zu/%zu", fr, tot);
    CHECK(cudaFree(a) == cudaSuccess && cudaFree(a) == cudaErrorInvalidValue, "runtime: double free is an error");
    cudaGetLastError();
    pl_emu_set_capacity((size_t)24 << 30);
    /* copies outside an allocation, and an invalid launch configuration */
    char h[64];
    void *d = dev_alloc(32);
    CHECK(cudaMemcpy(d, h, 64, cudaMemcpyHostToDevice) == cudaErrorInvalidValue, "runtime: copy past the end");
    cudaGetLastError();
    pl_emu_set_quiet(1);
    CHECK(pl_cuda_embedding(d, d, d, 70000, 4, NULL) == cudaErrorInvalidValue, "runtime: launcher argument check");
    pl_emu_set_quiet(0);
    cudaStream_t s;
    cudaEvent_t e0, e1;
    float ms = -1;
    CHECK(cudaStreamCreate(&s) == cudaSuccess && cudaEventCreate(&e0) == cudaSuccess &&
              cudaEventCreate(&e1) == cudaSuccess,
          "runtime: streams and events");
    cudaEventRecord(e0, s);
    CHECK(cudaMemsetAsync(d, 0, 32, s) == cudaSuccess, "runtime: memset on a stream");
    cudaEventRecord(e1, s);
    CHECK(cudaEventElapsedTime(&ms, e0, e1) == cudaSuccess && ms >= 0, "runtime: elapsed time");
    cudaMemLocation loc = {cudaMemLocationTypeDevice, 0};
    CHECK(cudaMemPrefetchAsync(d, 32, loc, 0, s) == cudaSuccess, "runtime: prefetch");
    CHECK(cudaStreamSynchronize(s) == cudaSuccess, "runtime: stream sync");
    cudaEventDestroy(e0), cudaEventDestroy(e1), cudaStreamDestroy(s);
    CHECK(cudaStreamDestroy(s) == cudaErrorInvalidResourceHandle, "runtime: destroyed stream");
    cudaGetLastError();
    cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, 0) == cudaSuccess && prop.warpSize == 32 && prop.major == 8,
          "runtime: device properties");
    cudaFree(d);
}
#endif

int main(void) {
    g_big = getenv("PL_CUDA_TEST_BIG") && atoi(getenv("PL_CUDA_TEST_BIG"));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
#ifndef PL_CUDA_REAL
    pl_emu_set_seed(SEED_A);
#endif
    /* NF4: odd counts and starts, 1 and 2+ nested blocks, plain absmax */
    test_nf4_dequant(19237, 64, 1, 0, 19237);
    test_nf4_dequant(19237, 64, 1, 1001, 777);
    test_nf4_dequant(64 * 5 + 3, 64, 1, 3, 64 * 5);
    test_nf4_dequant(1000, 128, 0, 1, 998);
    test_nf4_gemv(37, 160, 1, 1);
    test_nf4_gemv(21, 129, 3, 1);
    test_nf4_gemv(16, 576, PL_CUDA_GEMV_MAX_T, 0);
    if (g_big) test_nf4_gemv(576, 1536, 4, 1);
    test_embedding(50, 129, 1);
    test_embedding(50, 129, 77);
    test_rmsnorm(1, 64);
    test_rmsnorm(37, 129);
    test_rmsnorm(70, 576);
    if (g_big) test_rmsnorm(300, 4096);
    test_rope(1, 3, 64);
    test_rope(37, 3, 128);
    test_rope(5, 2, 7);
    if (g_big) test_rope(512, 32, 128);
    test_swiglu(1);
    test_swiglu(37 * 129);
    /* attention: T = 1, odd T past the 16/32 tiles, hd 64, 128, 16 and 7, GQA 1, 2, 4 and 8, packed
     * segments, queries that see no key, decoding against a cache (Tq < Tk) */
    test_attention(1, 1, 4, 1, 64, 0, 0);
    test_attention(37, 37, 2, 2, 64, 3, 0);
    test_attention(45, 45, 8, 1, 128, 4, 1);
    test_attention(19, 19, 4, 1, 16, 0, 1);
    test_attention(21, 21, 4, 2, 7, 2, 1);
    test_attention(3, 40, 8, 4, 64, 0, 0);
    if (g_big) test_attention(300, 300, 32, 8, 128, 5, 1);
    /* LM head + loss: V not a multiple of the 256-row chunk, T = 1, T not a multiple of 8, no counted row */
    test_lm_head_ce(1, 64, 300, 0);
    test_lm_head_ce(37, 96, 1000, 0);
    test_lm_head_ce(8, 128, 256, 0);
    test_lm_head_ce(5, 32, 77, 1);
    test_lm_head_ce_bad_target();
    if (g_big) test_lm_head_ce(67, 576, 49152, 0);
    /* GEMM through cuBLASLt (the emulator's: OpenBLAS) and LoRA: T = 1, odd in/out, r = 1, 8, 64 */
    CHECK(pl_cuda_blas_create(&g_blas) == 0, "cuBLASLt handle");
    g_ws_bytes = pl_cuda_gemm_workspace();
    g_ws = dev_alloc(g_ws_bytes);
    test_gemm(1, 37, 13);
    test_gemm(37, 129, 77);
    test_gemm(8, 64, 576);
    test_gemm(5, 3, 1);
    test_gemm_views(7, 33, 19);
    test_gemm_edges();
    test_lora(1, 37, 13, 1, 0, 0);
    test_lora(37, 129, 77, 8, 0, 0);
    test_lora(37, 129, 77, 8, 1, 1);
    test_lora(19, 67, 131, 64, 1, 0);
    test_lora(3, 96, 33, 64, 0, 1);
    if (g_big) test_lora(300, 576, 1536, 64, 0, 0);
    cudaFree(g_ws);
    pl_cuda_blas_destroy(g_blas);
    test_optim(1);
    test_optim(100003);
    if (g_big) test_optim(3000017);
    /* the reduce-scatter's sum: one rank, len 0 and 1, odd lengths past the 256-thread block, 2..7 ranks */
    test_sum_slices(1, 33);
    test_sum_slices(2, 0);
    test_sum_slices(2, 1);
    test_sum_slices(3, 257);
    test_sum_slices(4, 100003);
    test_sum_slices(7, 4099);
    if (g_big) test_sum_slices(8, 3000017);
#ifndef PL_CUDA_REAL
    test_teeth();
    test_runtime();
#endif
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
#ifndef PL_CUDA_REAL
    printf("note: emulated kernels: %.2f s, %llu launches, %llu fiber switches\n", s,
           (unsigned long long)pl_emu_launches(), (unsigned long long)pl_emu_switches());
#else
    printf("note: device kernels: %.2f s\n", s);
#endif
    return check_summary("test_cuda_emu");
}
