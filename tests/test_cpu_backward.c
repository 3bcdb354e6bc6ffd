/* test_cpu_backward.c: the CPU backend's backward and optimizer ops: gradient checks, accumulation semantics, determinism.
 *
 * Gradient checks. For an op out = f(inputs) and a fixed random R of out's
 * shape, the scalar loss L = sum(out * R) (summed in double) has
 * dL/d(input) = the op's backward with dout = R. Each input element is moved
 * by +-h and L recomputed with the op's own fp32 forward; the central
 * difference (L+ - L-) / (x+ - x-) (the denominator taken from the floats
 * actually stored) is compared with the analytic backward.
 *
 * Tolerances. Inputs are O(1) and h = 2^-8 (~4e-3). The truncation error of
 * a central difference is h^2/6 f''' ~ 3e-6 for these smooth O(1) functions.
 * The rounding error is that of the outputs the perturbation touches (outputs
 * it does not touch give the same bits in both evaluations and cancel):
 * ~6e-8 * sqrt(n touched) * |out R| / (2h), so 1e-5 .. 1e-4 for the few
 * hundred outputs at most touched here. So we require the gradient vectors to
 * agree to 2e-3 relative in the 2-norm (||fd - an|| <= 2e-3 ||an||) and every
 * element to within 2e-3 * max|an| + 1e-4: a wrong term (a missing factor, a
 * sign, a lost key or head) is far above both, fp32 noise far below.
 *
 * Determinism: every op is run with 1, 2 and 3 OpenMP threads on shapes big
 * enough to take its parallel path (for the products: several pl_gemm tiles,
 * and sizes at which one OpenBLAS sgemm call would thread), and must give the
 * same bits, also run after run. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include "check.h"
#include "../core/half.h"
#include "../core/quant.h"
#include "../trainer/backend.h"

static const pl_backend *be;

/* ------------------------------------------------------------------ helpers */

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static uint64_t rnd_u64(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float rnd_unif(float lo, float hi) { return lo + (hi - lo) * (float)((rnd_u64() >> 40) * 0x1p-24); }
static float *rnd_vec(size_t n, float lo, float hi) {
    float *v = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) v[i] = rnd_unif(lo, hi);
    return v;
}
static float *dup_vec(const float *x, size_t n) {
    float *v = malloc((n ? n : 1) * sizeof(float));
    memcpy(v, x, n * sizeof(float));
    return v;
}
static float *fill_vec(size_t n, float f) {
    float *v = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) v[i] = f;
    return v;
}
static int same_bits(const void *a, const void *b, size_t bytes) { return memcmp(a, b, bytes) == 0; }
static int all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

/* ------------------------------------------------------- finite differences */

#define FD_H 0x1p-8

/* The forward under test: writes the op's output (nout floats) from inputs it
 * reads through file-level state, which fd_grad perturbs in place. */
typedef void (*fwd_fn)(float *out);

static double loss_of(fwd_fn f, float *out, const float *R, size_t nout) {
    f(out);
    double L = 0;
    for (size_t i = 0; i < nout; i++) L += (double)out[i] * R[i];
    return L;
}

/* g[i] = dL/dx[i] by central differences for the indices i = 0, step, 2 step, ... < n. */
static void fd_grad(fwd_fn f, float *x, size_t n, size_t step, const float *R, size_t nout, double *g) {
    float *out = malloc((nout ? nout : 1) * sizeof(float));
    for (size_t i = 0; i < n; i += step) {
        float x0 = x[i];
        float xp = x0 + (float)FD_H, xm = x0 - (float)FD_H;
        x[i] = xp;
        double Lp = loss_of(f, out, R, nout);
        x[i] = xm;
        double Lm = loss_of(f, out, R, nout);
        x[i] = x0;
        g[i] = (Lp - Lm) / ((double)xp - (double)xm);
    }
    free(out);
}

/* The tolerance rule from the top of the file, over the sampled indices. */
static void check_grad(const char *what, const float *an, const double *fd, size_t n, size_t step) {
    double dn = 0, an2 = 0, amax = 0;
    for (size_t i = 0; i < n; i += step) {
        double d = (double)an[i] - fd[i];
        dn += d * d;
        an2 += (double)an[i] * an[i];
        if (fabs(an[i]) > amax) amax = fabs(an[i]);
    }
    double rel = sqrt(dn) / (sqrt(an2) > 1e-30 ? sqrt(an2) : 1e-30);
    size_t worst = 0;
    double worst_d = -1;
    int bad = !isfinite(rel);
    for (size_t i = 0; i < n; i += step) {
        double d = fabs((double)an[i] - fd[i]);
        if (!(d <= 2e-3 * amax + 1e-4)) bad = 1;
        if (!(d <= worst_d)) worst_d = d, worst = i;
    }
    if (an2 == 0 && dn == 0) rel = 0;
    if (getenv("FD_VERBOSE")) printf("  %s: rel %.3g worst abs %.3g max|g| %.3g\n", what, rel, worst_d, amax);
    CHECK(rel <= 2e-3 && !bad, "%s: gradient: relative 2-norm error %.3g (limit 2e-3), worst element %zu: analytic %.8g, "
          "finite difference %.8g (max |grad| %.3g)", what, rel, worst, (double)an[worst], fd[worst], amax);
}

/* Runs f with 1, 2 and 3 threads (f writes nbytes at out each time) and checks the bits agree. */
typedef void (*run_fn)(void);
static void check_threads(const char *what, run_fn f, const void *out, size_t nbytes) {
    void *ref = malloc(nbytes ? nbytes : 1);
    int same = 1;
    for (int nt = 1; nt <= 3; nt++) {
        omp_set_num_threads(nt);
        f();
        if (nt == 1) memcpy(ref, out, nbytes);
        else same &= same_bits(ref, out, nbytes);
    }
    omp_set_num_threads(2);
    f();
    same &= same_bits(ref, out, nbytes);
    CHECK(same, "%s: same bits with 1, 2 and 3 threads", what);
    free(ref);
}

/* --------------------------------------------------------------- embedding */

static struct {
    float *table;
    const int32_t *ids;
    int T, C;
} E;
static void emb_fwd(float *out) { be->embedding(out, E.ids, E.table, E.T, E.C); }

static float *emb_dt, *emb_dout;
static int32_t *emb_ids;
static int emb_T, emb_C, emb_V;
static void emb_run(void) {
    memset(emb_dt, 0, (size_t)emb_V * emb_C * sizeof(float));
    be->embedding_bwd(emb_dt, emb_ids, emb_dout, emb_T, emb_C);
}

static void test_embedding_bwd(void) {
    const int V = 7, C = 5, T = 9;
    int32_t ids[] = {3, 0, 6, 3, 1, 6, 3, 2, 0}; /* repeats, and row 4, 5 never used */
    E.table = rnd_vec((size_t)V * C, -1, 1), E.ids = ids, E.T = T, E.C = C;
    float *R = rnd_vec((size_t)T * C, -1, 1);
    double *fd = calloc((size_t)V * C, sizeof(double));
    fd_grad(emb_fwd, E.table, (size_t)V * C, 1, R, (size_t)T * C, fd);
    float *d0 = rnd_vec((size_t)V * C, -1, 1), *dt = dup_vec(d0, (size_t)V * C);
    float *dz = fill_vec((size_t)V * C, 0);
    be->embedding_bwd(dz, ids, R, T, C);
    check_grad("embedding_bwd", dz, fd, (size_t)V * C, 1);
    /* exact: each table row is the sum of its tokens' rows, in token order */
    int exact = 1;
    for (int c = 0; c < C; c++) {
        float s3 = ((0.0f + R[0 * C + c]) + R[3 * C + c]) + R[6 * C + c];
        exact &= dz[3 * C + c] == s3 && dz[4 * C + c] == 0.0f && dz[5 * C + c] == 0.0f;
    }
    CHECK(exact, "embedding_bwd: row 3 = its three tokens summed in order; unused rows stay 0");
    /* "+=": starting from d0 adds the same scatter */
    be->embedding_bwd(dt, ids, R, T, C);
    double md = 0;
    for (int i = 0; i < V * C; i++) md = fmax(md, fabs((double)dt[i] - ((double)d0[i] + dz[i])));
    CHECK(md <= 1e-6, "embedding_bwd accumulates into dtable (max diff %.3g)", md);
    free(E.table), free(R), free(fd), free(d0), free(dt), free(dz);

    /* determinism on a shape that takes the parallel path */
    emb_T = 300, emb_C = 100, emb_V = 50;
    emb_ids = malloc((size_t)emb_T * sizeof(int32_t));
    for (int t = 0; t < emb_T; t++) emb_ids[t] = (int32_t)(rnd_u64() % (uint64_t)emb_V);
    emb_dout = rnd_vec((size_t)emb_T * emb_C, -1, 1);
    emb_dt = malloc((size_t)emb_V * emb_C * sizeof(float));
    check_threads("embedding_bwd T=300 C=100", emb_run, emb_dt, (size_t)emb_V * emb_C * sizeof(float));
    free(emb_ids), free(emb_dout), free(emb_dt);
}

/* ----------------------------------------------------------------- rmsnorm */

static struct {
    float *x, *w;
    int T, C;
    float eps;
} N;
static void norm_fwd(float *out) { be->rmsnorm(out, N.x, N.w, N.T, N.C, N.eps); }

static void norm_case(int T, int C) {
    char what[64];
    snprintf(what, sizeof what, "rmsnorm_bwd T=%d C=%d", T, C);
    N.T = T, N.C = C, N.eps = 1e-5f;
    N.x = rnd_vec((size_t)T * C, -1.5f, 1.5f);
    N.w = rnd_vec((size_t)C, 0.5f, 1.5f);
    size_t n = (size_t)T * C;
    float *R = rnd_vec(n, -1, 1);
    double *gx = calloc(n, sizeof(double)), *gw = calloc((size_t)C, sizeof(double));
    fd_grad(norm_fwd, N.x, n, 1, R, n, gx);
    fd_grad(norm_fwd, N.w, (size_t)C, 1, R, n, gw);
    float *dx = fill_vec(n, NAN), *dw = fill_vec((size_t)C, 0);
    be->rmsnorm_bwd(dx, dw, R, N.x, N.w, T, C, N.eps);
    char w2[96];
    snprintf(w2, sizeof w2, "%s dx", what);
    check_grad(w2, dx, gx, n, 1);
    snprintf(w2, sizeof w2, "%s dw", what);
    check_grad(w2, dw, gw, (size_t)C, 1);
    CHECK(all_finite(dx, n), "%s: dx overwrites a NaN-filled buffer", what);
    /* dx may alias dout: the same bits */
    float *al = dup_vec(R, n), *dw2 = fill_vec((size_t)C, 0);
    be->rmsnorm_bwd(al, dw2, al, N.x, N.w, T, C, N.eps);
    CHECK(same_bits(al, dx, n * sizeof(float)) && same_bits(dw2, dw, (size_t)C * sizeof(float)),
          "%s: dx aliasing dout gives the same bits", what);
    /* dw "+=" */
    be->rmsnorm_bwd(dx, dw2, R, N.x, N.w, T, C, N.eps);
    double md = 0;
    for (int c = 0; c < C; c++) md = fmax(md, fabs((double)dw2[c] - 2.0 * dw[c]));
    CHECK(md <= 1e-5 * (1 + fabs(dw[0])), "%s: dw accumulates (max diff from 2x %.3g)", what, md);
    free(N.x), free(N.w), free(R), free(gx), free(gw), free(dx), free(dw), free(al), free(dw2);
}

static float *nd_dx, *nd_dw, *nd_dout, *nd_x, *nd_w;
static int nd_T, nd_C;
static void norm_run(void) {
    memset(nd_dw, 0, (size_t)nd_C * sizeof(float));
    be->rmsnorm_bwd(nd_dx, nd_dw, nd_dout, nd_x, nd_w, nd_T, nd_C, 1e-5f);
    memcpy(nd_dx + (size_t)nd_T * nd_C, nd_dw, (size_t)nd_C * sizeof(float)); /* dw after dx, one buffer */
}

static void test_rmsnorm_bwd(void) {
    norm_case(5, 13);
    norm_case(1, 7);
    norm_case(3, 40); /* full 8-lane blocks plus a tail */
    nd_T = 300, nd_C = 100; /* two chunks of rows, parallel path */
    nd_dx = malloc(((size_t)nd_T * nd_C + nd_C) * sizeof(float));
    nd_dw = malloc((size_t)nd_C * sizeof(float));
    nd_dout = rnd_vec((size_t)nd_T * nd_C, -1, 1);
    nd_x = rnd_vec((size_t)nd_T * nd_C, -1, 1);
    nd_w = rnd_vec((size_t)nd_C, 0.5f, 1.5f);
    check_threads("rmsnorm_bwd T=300 C=100 (dx and dw)", norm_run, nd_dx, ((size_t)nd_T * nd_C + nd_C) * sizeof(float));
    free(nd_dx), free(nd_dw), free(nd_dout), free(nd_x), free(nd_w);
}

/* -------------------------------------------------------------------- rope */

static struct {
    float *x;
    int32_t *pos;
    float *inv_freq;
    int T, nh, hd;
} P;
static void rope_fwd(float *out) {
    memcpy(out, P.x, (size_t)P.T * P.nh * P.hd * sizeof(float));
    be->rope(out, P.pos, P.inv_freq, P.T, P.nh, P.hd);
}

static void rope_case(int T, int nh, int hd) {
    char what[64];
    snprintf(what, sizeof what, "rope_bwd T=%d nh=%d hd=%d", T, nh, hd);
    P.T = T, P.nh = nh, P.hd = hd;
    size_t n = (size_t)T * nh * hd;
    P.x = rnd_vec(n, -1, 1);
    P.pos = malloc((size_t)T * sizeof(int32_t));
    for (int t = 0; t < T; t++) P.pos[t] = (int32_t)(rnd_u64() % 60);
    P.inv_freq = malloc((size_t)(hd / 2 > 0 ? hd / 2 : 1) * sizeof(float));
    for (int i = 0; i < hd / 2; i++) P.inv_freq[i] = (float)pow(10000.0, -2.0 * i / hd);
    float *R = rnd_vec(n, -1, 1);
    double *g = calloc(n, sizeof(double));
    fd_grad(rope_fwd, P.x, n, 1, R, n, g);
    float *d = dup_vec(R, n);
    be->rope_bwd(d, P.pos, P.inv_freq, T, nh, hd);
    check_grad(what, d, g, n, 1);
    /* the backward undoes the forward (an orthogonal rotation) to fp32 rounding */
    float *y = dup_vec(R, n);
    be->rope(y, P.pos, P.inv_freq, T, nh, hd);
    be->rope_bwd(y, P.pos, P.inv_freq, T, nh, hd);
    double md = 0;
    for (size_t i = 0; i < n; i++) md = fmax(md, fabs((double)y[i] - R[i]));
    CHECK(md <= 1e-6, "%s: rope_bwd(rope(x)) == x (max diff %.3g)", what, md);
    free(P.x), free(P.pos), free(P.inv_freq), free(R), free(g), free(d), free(y);
}

static float *rp_d, *rp_src, *rp_if;
static int32_t *rp_pos;
static void rope_run(void) {
    memcpy(rp_d, rp_src, (size_t)200 * 3 * 64 * sizeof(float));
    be->rope_bwd(rp_d, rp_pos, rp_if, 200, 3, 64);
}

static void test_rope_bwd(void) {
    rope_case(4, 2, 6);
    rope_case(3, 3, 10);
    rope_case(1, 1, 7); /* odd hd: the last element passes through */
    rp_src = rnd_vec((size_t)200 * 3 * 64, -1, 1);
    rp_d = malloc((size_t)200 * 3 * 64 * sizeof(float));
    rp_pos = malloc(200 * sizeof(int32_t));
    for (int t = 0; t < 200; t++) rp_pos[t] = t;
    rp_if = malloc(32 * sizeof(float));
    for (int i = 0; i < 32; i++) rp_if[i] = (float)pow(10000.0, -2.0 * i / 64);
    check_threads("rope_bwd T=200 nh=3 hd=64", rope_run, rp_d, (size_t)200 * 3 * 64 * sizeof(float));
    free(rp_src), free(rp_d), free(rp_pos), free(rp_if);
}

/* --------------------------------------------------------------- attention */

static struct {
    float *q, *k, *v;
    const int32_t *qlast, *qseg, *kseg;
    int Tq, Tk, nh, nkv, hd;
} A;
static void attn_fwd(float *out) {
    be->attention(out, A.q, A.k, A.v, A.qlast, A.qseg, A.kseg, A.Tq, A.Tk, A.nh, A.nkv, A.hd);
}

/* One attention configuration: finite differences on q, k and v (every
 * element, or every step-th for the bigger shapes), plus "=" semantics. */
static void attn_case(const char *what, int Tq, int Tk, int nh, int nkv, int hd, const int32_t *qlast,
                      const int32_t *qseg, const int32_t *kseg, size_t step) {
    A.Tq = Tq, A.Tk = Tk, A.nh = nh, A.nkv = nkv, A.hd = hd, A.qlast = qlast, A.qseg = qseg, A.kseg = kseg;
    size_t nq = (size_t)Tq * nh * hd, nk = (size_t)Tk * nkv * hd;
    A.q = rnd_vec(nq, -1.5f, 1.5f), A.k = rnd_vec(nk, -1.5f, 1.5f), A.v = rnd_vec(nk, -1, 1);
    float *R = rnd_vec(nq, -1, 1), *out = malloc(nq * sizeof(float));
    attn_fwd(out);
    double *gq = calloc(nq, sizeof(double)), *gk = calloc(nk, sizeof(double)), *gv = calloc(nk, sizeof(double));
    fd_grad(attn_fwd, A.q, nq, step, R, nq, gq);
    fd_grad(attn_fwd, A.k, nk, step, R, nq, gk);
    fd_grad(attn_fwd, A.v, nk, step, R, nq, gv);
    /* "=": outputs start as NaN and must be fully written */
    float *dq = fill_vec(nq, NAN), *dk = fill_vec(nk, NAN), *dv = fill_vec(nk, NAN);
    be->attention_bwd(dq, dk, dv, R, A.q, A.k, A.v, out, qlast, qseg, kseg, Tq, Tk, nh, nkv, hd);
    CHECK(all_finite(dq, nq) && all_finite(dk, nk) && all_finite(dv, nk), "%s: dq, dk, dv fully overwritten", what);
    char w2[128];
    snprintf(w2, sizeof w2, "%s dq", what);
    check_grad(w2, dq, gq, nq, step);
    snprintf(w2, sizeof w2, "%s dk", what);
    check_grad(w2, dk, gk, nk, step);
    snprintf(w2, sizeof w2, "%s dv", what);
    check_grad(w2, dv, gv, nk, step);
    /* run to run */
    float *dq2 = fill_vec(nq, 7), *dk2 = fill_vec(nk, 7), *dv2 = fill_vec(nk, 7);
    be->attention_bwd(dq2, dk2, dv2, R, A.q, A.k, A.v, out, qlast, qseg, kseg, Tq, Tk, nh, nkv, hd);
    CHECK(same_bits(dq, dq2, nq * 4) && same_bits(dk, dk2, nk * 4) && same_bits(dv, dv2, nk * 4),
          "%s: same bits run to run, whatever the outputs held before", what);
    free(A.q), free(A.k), free(A.v), free(R), free(out), free(gq), free(gk), free(gv);
    free(dq), free(dk), free(dv), free(dq2), free(dk2), free(dv2);
}

static struct {
    float *dq, *dk, *dv, *dout, *q, *k, *v, *out;
    int32_t *qlast, *seg;
    int T, nh, nkv, hd;
} AD;
static void attn_run(void) {
    size_t nq = (size_t)AD.T * AD.nh * AD.hd, nk = (size_t)AD.T * AD.nkv * AD.hd;
    be->attention_bwd(AD.dq, AD.dk, AD.dv, AD.dout, AD.q, AD.k, AD.v, AD.out, AD.qlast, AD.seg, AD.seg, AD.T, AD.T,
                      AD.nh, AD.nkv, AD.hd);
    memcpy(AD.dq + nq, AD.dk, nk * sizeof(float)); /* one buffer holds dq, dk, dv */
    memcpy(AD.dq + nq + nk, AD.dv, nk * sizeof(float));
}

static void test_attention_bwd(void) {
    {   /* T=1: one query, one key */
        int32_t ql[] = {0};
        attn_case("attention_bwd T=1 nh=2 nkv=1 hd=6", 1, 1, 2, 1, 6, ql, NULL, NULL, 1);
    }
    {   /* causal, GQA ratio 1, hd = 6 */
        int32_t ql[9];
        for (int i = 0; i < 9; i++) ql[i] = i;
        attn_case("attention_bwd T=9 nh=3 nkv=3 hd=6", 9, 9, 3, 3, 6, ql, NULL, NULL, 1);
    }
    {   /* GQA ratio 3, hd = 10, three packed segments (boundaries inside the row) */
        int32_t ql[11], seg[] = {0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2};
        for (int i = 0; i < 11; i++) ql[i] = i;
        attn_case("attention_bwd T=11 nh=6 nkv=2 hd=10 3 segments", 11, 11, 6, 2, 10, ql, seg, seg, 1);
    }
    {   /* KV-cache form: Tq=4 < Tk=9, qlast = pos0 + i with pos0 = 5, and
         * segments where query 2's segment has no key: it sees nothing */
        int32_t ql[] = {5, 6, 7, 8}, qs[] = {1, 2, 5, 3}, ks[] = {1, 1, 2, 2, 2, 3, 3, 3, 3};
        attn_case("attention_bwd Tq=4 Tk=9 nh=4 nkv=2 hd=6 qlast=5+i, a query that sees nothing", 4, 9, 4, 2, 6, ql, qs,
                  ks, 1);
    }
    {   /* KV-cache form without segments; query 1 has qlast = -1 (sees nothing),
         * query 2's qlast is past the cache (clamped to Tk) */
        int32_t ql[] = {3, -1, 20};
        attn_case("attention_bwd Tq=3 Tk=6 nh=3 nkv=1 hd=10 qlast={3,-1,20}", 3, 6, 3, 1, 10, ql, NULL, NULL, 1);
    }
    {   /* longer rows (runs of four keys through the 4-wide paths), sampled elements */
        int32_t ql[37], seg[37];
        for (int i = 0; i < 37; i++) ql[i] = i, seg[i] = i < 5 ? 0 : i < 30 ? 1 : 2;
        attn_case("attention_bwd T=37 nh=6 nkv=2 hd=10 (sampled)", 37, 37, 6, 2, 10, ql, seg, seg, 7);
    }
    /* a key no query sees (a future key in the cache) gets zero dk, dv */
    {
        int Tq = 2, Tk = 5, nh = 2, nkv = 1, hd = 6;
        int32_t ql[] = {1, 2};
        float *q = rnd_vec((size_t)Tq * nh * hd, -1, 1), *k = rnd_vec((size_t)Tk * hd, -1, 1);
        float *v = rnd_vec((size_t)Tk * hd, -1, 1), *dout = rnd_vec((size_t)Tq * nh * hd, -1, 1);
        float *out = malloc((size_t)Tq * nh * hd * 4), *dq = fill_vec((size_t)Tq * nh * hd, NAN);
        float *dk = fill_vec((size_t)Tk * hd, NAN), *dv = fill_vec((size_t)Tk * hd, NAN);
        be->attention(out, q, k, v, ql, NULL, NULL, Tq, Tk, nh, nkv, hd);
        be->attention_bwd(dq, dk, dv, dout, q, k, v, out, ql, NULL, NULL, Tq, Tk, nh, nkv, hd);
        int zero = 1;
        for (int i = 3 * hd; i < Tk * hd; i++) zero &= dk[i] == 0.0f && dv[i] == 0.0f;
        CHECK(zero, "attention_bwd: keys 3 and 4 (seen by no query) get dk = dv = 0");
        free(q), free(k), free(v), free(dout), free(out), free(dq), free(dk), free(dv);
    }

    /* determinism: T=64, GQA 3, two segments, with 1, 2 and 3 threads */
    AD.T = 64, AD.nh = 6, AD.nkv = 2, AD.hd = 10;
    size_t nq = (size_t)AD.T * AD.nh * AD.hd, nk = (size_t)AD.T * AD.nkv * AD.hd;
    AD.q = rnd_vec(nq, -1, 1), AD.k = rnd_vec(nk, -1, 1), AD.v = rnd_vec(nk, -1, 1), AD.dout = rnd_vec(nq, -1, 1);
    AD.out = malloc(nq * 4), AD.dq = malloc((nq + 2 * nk) * 4), AD.dk = malloc(nk * 4), AD.dv = malloc(nk * 4);
    AD.qlast = malloc((size_t)AD.T * 4), AD.seg = malloc((size_t)AD.T * 4);
    for (int i = 0; i < AD.T; i++) AD.qlast[i] = i, AD.seg[i] = i < 23 ? 0 : 1;
    be->attention(AD.out, AD.q, AD.k, AD.v, AD.qlast, AD.seg, AD.seg, AD.T, AD.T, AD.nh, AD.nkv, AD.hd);
    check_threads("attention_bwd T=64 nh=6 nkv=2 hd=10 (dq, dk, dv)", attn_run, AD.dq, (nq + 2 * nk) * 4);
    free(AD.q), free(AD.k), free(AD.v), free(AD.dout), free(AD.out), free(AD.dq), free(AD.dk), free(AD.dv);
    free(AD.qlast), free(AD.seg);
}

/* ------------------------------------------------------------------ swiglu */

static struct {
    float *g, *u;
    int T, H;
} S;
static void swiglu_fwd(float *out) { be->swiglu(out, S.g, S.u, S.T, S.H); }

static float *sw_g, *sw_u, *sw_d, *sw_out;
static void swiglu_run(void) {
    memcpy(sw_out, sw_d, (size_t)40000 * 4);
    be->swiglu_bwd(sw_out, sw_out + 40000, sw_out, sw_g, sw_u, 200, 200); /* dgate aliases dout */
}

static void test_swiglu_bwd(void) {
    S.T = 3, S.H = 17;
    size_t n = 51;
    S.g = rnd_vec(n, -4, 4), S.u = rnd_vec(n, -1.5f, 1.5f);
    S.g[5] = -30, S.g[6] = 30, S.g[7] = 0; /* saturated sigmoid both ways, and zero */
    float *R = rnd_vec(n, -1, 1);
    double *gg = calloc(n, sizeof(double)), *gu = calloc(n, sizeof(double));
    fd_grad(swiglu_fwd, S.g, n, 1, R, n, gg);
    fd_grad(swiglu_fwd, S.u, n, 1, R, n, gu);
    float *dg = fill_vec(n, NAN), *du = fill_vec(n, NAN);
    be->swiglu_bwd(dg, du, R, S.g, S.u, S.T, S.H);
    check_grad("swiglu_bwd dgate T=3 H=17", dg, gg, n, 1);
    check_grad("swiglu_bwd dup T=3 H=17", du, gu, n, 1);
    /* dgate aliasing dout: same bits */
    float *al = dup_vec(R, n), *du2 = malloc(n * 4);
    be->swiglu_bwd(al, du2, al, S.g, S.u, S.T, S.H);
    CHECK(same_bits(al, dg, n * 4) && same_bits(du2, du, n * 4), "swiglu_bwd: dgate aliasing dout gives the same bits");
    /* extreme gates stay finite */
    float gx[] = {-200, -90, 90, 200, -1e30f, 1e30f}, ux[] = {1, 2, 3, 4, 5, 6}, dx[] = {1, 1, 1, 1, 1, 1};
    float dgx[6], dux[6];
    be->swiglu_bwd(dgx, dux, dx, gx, ux, 1, 6);
    CHECK(all_finite(dgx, 6) && all_finite(dux, 4) && dgx[0] == 0.0f && fabsf(dgx[3] - 4.0f) < 1e-6f,
          "swiglu_bwd: saturated gates give finite gradients (dg(-200) = %g, dg(200) = %g)", (double)dgx[0],
          (double)dgx[3]);
    free(S.g), free(S.u), free(R), free(gg), free(gu), free(dg), free(du), free(al), free(du2);

    sw_g = rnd_vec(40000, -5, 5), sw_u = rnd_vec(40000, -1, 1), sw_d = rnd_vec(40000, -1, 1);
    sw_out = malloc((size_t)80000 * 4);
    check_threads("swiglu_bwd T=200 H=200", swiglu_run, sw_out, (size_t)80000 * 4);
    free(sw_g), free(sw_u), free(sw_d), free(sw_out);
}

/* ------------------------------------------------------------------ linear */

/* ref (T,I) = dout (T,O) . w (O,I), with mag = sum |dout w| for the tolerance. */
static void naive_dx(double *ref, double *mag, const float *dout, const float *w, int T, int I, int O) {
    for (int t = 0; t < T; t++)
        for (int i = 0; i < I; i++) {
            double s = 0, m = 0;
            for (int o = 0; o < O; o++) {
                double p = (double)dout[(size_t)t * O + o] * w[(size_t)o * I + i];
                s += p, m += fabs(p);
            }
            ref[(size_t)t * I + i] = s, mag[(size_t)t * I + i] = m;
        }
}

/* max over elements of |got - ref| / (mag + tiny); fp32 sums of n terms are within ~n * 6e-8 of mag. */
static double rel_err(const float *got, const double *ref, const double *mag, size_t n) {
    double w = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]) / (mag[i] + 1e-30);
        if (!(e <= w)) w = e;
    }
    return w;
}

static void linear_case(int T, int I, int O) {
    char what[64];
    snprintf(what, sizeof what, "linear_bwd T=%d I=%d O=%d", T, I, O);
    float *x = rnd_vec((size_t)T * I, -1, 1), *w = rnd_vec((size_t)O * I, -1, 1), *dout = rnd_vec((size_t)T * O, -1, 1);
    float *dw0 = rnd_vec((size_t)O * I, -1, 1), *db0 = rnd_vec((size_t)O, -1, 1);
    float *dx = fill_vec((size_t)T * I, NAN), *dw = dup_vec(dw0, (size_t)O * I), *db = dup_vec(db0, (size_t)O);
    be->linear_bwd(dx, dw, db, dout, x, w, T, I, O);
    double *ref = malloc((size_t)(T * I > O * I ? T * I : O * I) * sizeof(double));
    double *mag = malloc((size_t)(T * I > O * I ? T * I : O * I) * sizeof(double));
    naive_dx(ref, mag, dout, w, T, I, O);
    double e = rel_err(dx, ref, mag, (size_t)T * I);
    CHECK(e <= 1e-5, "%s: dx = dout . w against a naive loop (relative error %.3g)", what, e);
    /* dw (O,I) = dw0 + dout^T . x */
    for (int o = 0; o < O; o++)
        for (int i = 0; i < I; i++) {
            double s = dw0[(size_t)o * I + i], m = fabs(s);
            for (int t = 0; t < T; t++) {
                double p = (double)dout[(size_t)t * O + o] * x[(size_t)t * I + i];
                s += p, m += fabs(p);
            }
            ref[(size_t)o * I + i] = s, mag[(size_t)o * I + i] = m;
        }
    e = rel_err(dw, ref, mag, (size_t)O * I);
    CHECK(e <= 1e-5, "%s: dw += dout^T . x against a naive loop (relative error %.3g)", what, e);
    for (int o = 0; o < O; o++) {
        double s = db0[o], m = fabs(s);
        for (int t = 0; t < T; t++) s += dout[(size_t)t * O + o], m += fabs(dout[(size_t)t * O + o]);
        ref[o] = s, mag[o] = m;
    }
    e = rel_err(db, ref, mag, (size_t)O);
    CHECK(e <= 1e-5, "%s: dbias += column sums (relative error %.3g)", what, e);
    /* NULL skips: only dbias */
    float *db2 = dup_vec(db0, (size_t)O);
    be->linear_bwd(NULL, NULL, db2, dout, x, w, T, I, O);
    CHECK(same_bits(db2, db, (size_t)O * 4), "%s: dbias alone (dx, dw NULL) gives the same bits", what);
    free(x), free(w), free(dout), free(dw0), free(db0), free(dx), free(dw), free(db), free(ref), free(mag), free(db2);
}

static float *lb_dout, *lb_x, *lb_w, *lb_out;
static int lb_T = 37, lb_I = 70, lb_O = 300;
static void lin_dbias_run(void) {
    memset(lb_out, 0, (size_t)lb_O * 4);
    be->linear_bwd(NULL, NULL, lb_out, lb_dout, lb_x, lb_w, lb_T, lb_I, lb_O);
}
static void lin_sgemm_run(void) {
    size_t nx = (size_t)lb_T * lb_I;
    memset(lb_out + nx, 0, (size_t)lb_O * lb_I * 4);
    be->linear_bwd(lb_out, lb_out + nx, NULL, lb_dout, lb_x, lb_w, lb_T, lb_I, lb_O);
}

/* Run f twice at each of 1, 2, 3 threads: same bits run to run and across
 * thread counts. */
static void check_gemm_runs(const char *what, run_fn f, const float *out, size_t nbytes) {
    void *ref = malloc(nbytes), *first = malloc(nbytes);
    int cross = 1, runs = 1;
    for (int nt = 1; nt <= 3; nt++) {
        omp_set_num_threads(nt);
        f();
        memcpy(ref, out, nbytes);
        f();
        runs &= same_bits(ref, out, nbytes);
        if (nt == 1) memcpy(first, out, nbytes);
        else cross &= same_bits(first, out, nbytes);
    }
    omp_set_num_threads(2);
    CHECK(runs, "%s: same bits run to run at each thread count", what);
    CHECK(cross, "%s: same bits with 1, 2 and 3 threads", what);
    free(ref), free(first);
}

static void test_linear_bwd(void) {
    linear_case(7, 13, 11);
    linear_case(1, 5, 9);
    linear_case(33, 64, 17);
    lb_dout = rnd_vec((size_t)lb_T * lb_O, -1, 1), lb_x = rnd_vec((size_t)lb_T * lb_I, -1, 1);
    lb_w = rnd_vec((size_t)lb_O * lb_I, -1, 1);
    lb_out = malloc(((size_t)lb_T * lb_I + (size_t)lb_O * lb_I) * 4);
    check_threads("linear_bwd dbias T=37 O=300", lin_dbias_run, lb_out, (size_t)lb_O * 4);
    check_gemm_runs("linear_bwd T=37 I=70 O=300 dx and dw (pl_gemm)", lin_sgemm_run, lb_out,
                    ((size_t)lb_T * lb_I + (size_t)lb_O * lb_I) * 4);
    free(lb_dout), free(lb_x), free(lb_w), free(lb_out);
    /* tiles in both dimensions of dx (300 x 520) and dw (700 x 520) */
    lb_T = 300, lb_I = 520, lb_O = 700;
    lb_dout = rnd_vec((size_t)lb_T * lb_O, -1, 1), lb_x = rnd_vec((size_t)lb_T * lb_I, -1, 1);
    lb_w = rnd_vec((size_t)lb_O * lb_I, -1, 1);
    lb_out = malloc(((size_t)lb_T * lb_I + (size_t)lb_O * lb_I) * 4);
    check_gemm_runs("linear_bwd T=300 I=520 O=700 dx and dw (pl_gemm)", lin_sgemm_run, lb_out,
                    ((size_t)lb_T * lb_I + (size_t)lb_O * lb_I) * 4);
    free(lb_dout), free(lb_x), free(lb_w), free(lb_out);
}

/* ---------------------------------------------------------------- linear_q */

/* A weight (O, I) of dtype t quantized from random floats; data malloc'd. */
static pl_qweight make_qweight(pl_dtype t, int O, int I) {
    pl_qweight w = {t, O, I, 0, NULL, NULL};
    float *f = rnd_vec((size_t)O * I, -1, 1);
    size_t nb = (size_t)I / PL_QK;
    switch (t) {
    case PL_F32: w.row_bytes = (size_t)I * 4; break;
    case PL_F16: w.row_bytes = (size_t)I * 2; break;
    case PL_Q8_0: w.row_bytes = nb * sizeof(pl_block_q8_0); break;
    case PL_Q4_1: w.row_bytes = nb * sizeof(pl_block_q4_1); break;
    default: break;
    }
    unsigned char *d = malloc((size_t)O * w.row_bytes);
    for (int o = 0; o < O; o++) {
        const float *src = f + (size_t)o * I;
        unsigned char *dst = d + (size_t)o * w.row_bytes;
        if (t == PL_F32) memcpy(dst, src, (size_t)I * 4);
        else if (t == PL_F16)
            for (int i = 0; i < I; i++) {
                uint16_t h = pl_f32_to_f16(src[i]);
                memcpy(dst + 2 * i, &h, 2);
            }
        else if (t == PL_Q8_0) pl_quantize_row_q8_0(src, (pl_block_q8_0 *)dst, I);
        else pl_quantize_row_q4_1(src, (pl_block_q4_1 *)dst, I);
    }
    free(f);
    w.data = d;
    return w;
}

static pl_qweight lq_w;
static float *lq_dout, *lq_dx, *lq_ws;
static int lq_T;
static void linq_run(void) { be->linear_q_bwd_x(lq_dx, lq_dout, &lq_w, lq_T, lq_ws); }

static void test_linear_q_bwd_x(void) {
    const pl_dtype types[] = {PL_F32, PL_F16, PL_Q8_0, PL_Q4_1};
    const int T = 5, I = 64, O = 300; /* 300 rows: two dequantized blocks (256 + 44) */
    for (int ti = 0; ti < 4; ti++) {
        pl_qweight w = make_qweight(types[ti], O, I);
        float *deq = malloc((size_t)O * I * 4);
        int ok = 1;
        for (int o = 0; o < O; o++)
            ok &= pl_dequantize_row(w.dtype, (const unsigned char *)w.data + (size_t)o * w.row_bytes, deq + (size_t)o * I,
                                    I) == 0;
        CHECK(ok, "dequantize %s", pl_dtype_name(w.dtype));
        float *dout = rnd_vec((size_t)T * O, -1, 1), *dx = fill_vec((size_t)T * I, NAN);
        float *ws = malloc(pl_cpu_linear_q_workspace(I) * 4);
        be->linear_q_bwd_x(dx, dout, &w, T, ws);
        double *ref = malloc((size_t)T * I * 8), *mag = malloc((size_t)T * I * 8);
        naive_dx(ref, mag, dout, deq, T, I, O);
        double e = rel_err(dx, ref, mag, (size_t)T * I);
        CHECK(e <= 1e-5, "linear_q_bwd_x %s T=%d I=%d O=%d: against dequantize + naive loop (relative error %.3g)",
              pl_dtype_name(w.dtype), T, I, O, e);
        CHECK(all_finite(dx, (size_t)T * I), "linear_q_bwd_x %s: dx overwrites a NaN-filled buffer", pl_dtype_name(w.dtype));
        /* T = 1 */
        float *dx1 = fill_vec((size_t)I, NAN);
        be->linear_q_bwd_x(dx1, dout, &w, 1, ws);
        e = rel_err(dx1, ref, mag, (size_t)I);
        CHECK(e <= 1e-5, "linear_q_bwd_x %s T=1 (relative error %.3g)", pl_dtype_name(w.dtype), e);
        free(deq), free(dout), free(dx), free(ws), free(ref), free(mag), free(dx1), free((void *)w.data);
    }
    lq_T = 37;
    lq_w = make_qweight(PL_Q4_1, 600, 96);
    lq_dout = rnd_vec((size_t)lq_T * 600, -1, 1);
    lq_dx = malloc((size_t)lq_T * 96 * 4);
    lq_ws = malloc(pl_cpu_linear_q_workspace(96) * 4);
    check_gemm_runs("linear_q_bwd_x Q4_1 T=37 I=96 O=600 (dequantize + pl_gemm)", linq_run, lq_dx,
                    (size_t)lq_T * 96 * 4);
    free((void *)lq_w.data), free(lq_dout), free(lq_dx), free(lq_ws);
}

/* ----------------------------------------------------------- cross-entropy */

static struct {
    float *logits;
    int T, V;
    float scale;
} X;

static float *cd_l, *cd_d;
static int32_t *cd_t;
static void ce_run(void) { be->cross_entropy_bwd(cd_d, cd_l, cd_t, 100, 500, 0.01f); }

static void test_cross_entropy_bwd(void) {
    const int T = 6, V = 37;
    int32_t tg[] = {4, -1, 36, 0, -100, 17};
    X.T = T, X.V = V;
    X.logits = rnd_vec((size_t)T * V, -3, 3);
    X.logits[2 * V + 36] = 8; /* a confident row */
    int64_t nv = 0;
    be->cross_entropy(X.logits, tg, T, V, NULL, &nv);
    CHECK(nv == 4, "cross_entropy: 4 valid rows (got %lld)", (long long)nv);
    X.scale = 1.0f / (float)nv;
    /* L = scale * (the forward's double sum of fp32 row losses); a
     * perturbation changes one row's loss, so the difference carries only that
     * row's rounding (~6e-8 * |loss| / 2h), far within the bound */
    size_t n = (size_t)T * V;
    double *g = calloc(n, sizeof(double));
    for (size_t i = 0; i < n; i++) {
        float x0 = X.logits[i], xp = x0 + (float)FD_H, xm = x0 - (float)FD_H;
        X.logits[i] = xp;
        double Lp = be->cross_entropy(X.logits, tg, T, V, NULL, NULL);
        X.logits[i] = xm;
        double Lm = be->cross_entropy(X.logits, tg, T, V, NULL, NULL);
        X.logits[i] = x0;
        g[i] = X.scale * (Lp - Lm) / ((double)xp - (double)xm);
    }
    float *dl = fill_vec(n, NAN);
    be->cross_entropy_bwd(dl, X.logits, tg, T, V, X.scale);
    check_grad("cross_entropy_bwd T=6 V=37 scale=1/4", dl, g, n, 1);
    int zero = 1;
    for (int i = 0; i < V; i++) zero &= dl[1 * V + i] == 0.0f && dl[4 * V + i] == 0.0f;
    CHECK(zero, "cross_entropy_bwd: ignored rows (target -1, -100) get exact zeros");
    /* each valid row sums to ~0 (softmax sums to 1) */
    double rs = 0;
    for (int i = 0; i < V; i++) rs += dl[3 * V + i];
    CHECK(fabs(rs) < 1e-6, "cross_entropy_bwd: a row's gradient sums to 0 (%.3g)", rs);
    /* dlogits aliasing logits: the same bits */
    float *al = dup_vec(X.logits, n);
    be->cross_entropy_bwd(al, al, tg, T, V, X.scale);
    CHECK(same_bits(al, dl, n * 4), "cross_entropy_bwd: dlogits aliasing logits gives the same bits");
    /* scale is applied linearly */
    float *d2 = malloc(n * 4);
    be->cross_entropy_bwd(d2, X.logits, tg, T, V, 2.0f * X.scale);
    double md = 0;
    for (size_t i = 0; i < n; i++) md = fmax(md, fabs((double)d2[i] - 2.0 * dl[i]));
    CHECK(md <= 1e-7, "cross_entropy_bwd: doubling scale doubles the gradient (max diff %.3g)", md);
    /* a target >= V is a caller bug: NaN, not an out-of-bounds read */
    int32_t bad[] = {V};
    be->cross_entropy_bwd(d2, X.logits, bad, 1, V, 1.0f);
    CHECK(isnan(d2[0]) && isnan(d2[V - 1]), "cross_entropy_bwd: target >= V gives a NaN row");
    free(X.logits), free(g), free(dl), free(al), free(d2);

    cd_l = rnd_vec((size_t)100 * 500, -5, 5), cd_d = malloc((size_t)100 * 500 * 4);
    cd_t = malloc(100 * 4);
    for (int t = 0; t < 100; t++) cd_t[t] = t % 7 == 3 ? -1 : (int32_t)(rnd_u64() % 500);
    check_threads("cross_entropy_bwd T=100 V=500", ce_run, cd_d, (size_t)100 * 500 * 4);
    free(cd_l), free(cd_d), free(cd_t);
}

/* --------------------------------------------------------- sumsq and scale */

static float *ss_x;
static double ss_out;
static void sumsq_run(void) { ss_out = be->sumsq(ss_x, 1234567); }

static float *sc_x, *sc_y;
static void scale_run(void) {
    memcpy(sc_y, sc_x, 50000 * 4);
    be->scale(sc_y, 1.0f / 3.0f, 50000);
}

static void test_sumsq_scale(void) {
    size_t ns[] = {0, 1, 7, 4096, 4097, 100003};
    for (int c = 0; c < 6; c++) {
        size_t n = ns[c];
        float *x = rnd_vec(n, -2, 2);
        double ref = 0;
        for (size_t i = 0; i < n; i++) ref += (double)x[i] * x[i];
        double got = be->sumsq(x, n);
        CHECK(fabs(got - ref) <= 1e-12 * ref, "sumsq n=%zu: %.17g, reference %.17g", n, got, ref);
        free(x);
    }
    float big[] = {1e20f, 1e20f, 3e-20f}; /* squares overflow fp32, not double */
    double bref = ((double)big[0] * big[0] + (double)big[1] * big[1]) + (double)big[2] * big[2];
    CHECK(be->sumsq(big, 3) == bref, "sumsq accumulates in double: %.17g, reference %.17g", be->sumsq(big, 3), bref);
    ss_x = rnd_vec(1234567, -1, 1);
    check_threads("sumsq n=1234567 (5 parallel passes)", sumsq_run, &ss_out, sizeof ss_out);
    free(ss_x);

    float *y = rnd_vec(20001, -1, 1), *y0 = dup_vec(y, 20001);
    be->scale(y, -0.375f, 20001);
    int ok = 1;
    for (int i = 0; i < 20001; i++) ok &= y[i] == y0[i] * -0.375f;
    CHECK(ok, "scale: x[i] *= s exactly");
    free(y), free(y0);
    sc_x = rnd_vec(50000, -1, 1), sc_y = malloc(50000 * 4);
    check_threads("scale n=50000", scale_run, sc_y, 50000 * 4);
    free(sc_x), free(sc_y);
}

/* ------------------------------------------------------------------- AdamW */

/* torch.optim.AdamW's step (torch/optim/adam.py, _single_tensor_adam with
 * decoupled_weight_decay) written out in double for one element:
 *   p *= 1 - lr wd; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
 *   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps) */
static void adamw_ref(double *p, double g, double *m, double *v, double lr, double b1, double b2, double eps,
                      double wd, int t) {
    *p *= 1.0 - lr * wd;
    *m = b1 * *m + (1.0 - b1) * g;
    *v = b2 * *v + (1.0 - b2) * g * g;
    double bc1 = 1.0 - pow(b1, t), bc2 = 1.0 - pow(b2, t);
    *p -= lr / bc1 * *m / (sqrt(*v) / sqrt(bc2) + eps);
}

static float *ad_p, *ad_g, *ad_m, *ad_v, *ad_out;
static void adamw_run(void) {
    const size_t n = 50000;
    for (size_t i = 0; i < n; i++) ad_p[i] = 0.5f - (float)(i % 101) * 0.01f, ad_m[i] = 0, ad_v[i] = 0;
    for (int t = 1; t <= 3; t++) be->adamw(ad_p, ad_g, ad_m, ad_v, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f, t);
    memcpy(ad_out, ad_p, n * 4), memcpy(ad_out + n, ad_m, n * 4), memcpy(ad_out + 2 * n, ad_v, n * 4);
}

static void test_adamw(void) {
    enum { NE = 6 };
    const float lr = 2e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;
    float p[NE] = {0.5f, -1.25f, 0.0f, 3.0f, -0.01f, 1e-3f}, m[NE] = {0}, v[NE] = {0};
    double pd[NE], md[NE] = {0}, vd[NE] = {0};
    for (int i = 0; i < NE; i++) pd[i] = p[i];
    for (int t = 1; t <= 10; t++) {
        float g[NE];
        for (int i = 0; i < NE; i++) g[i] = i == 2 ? 0.0f : rnd_unif(-1, 1) * (i == 5 ? 1e-6f : 1.0f);
        be->adamw(p, g, m, v, NE, lr, b1, b2, eps, wd, t);
        for (int i = 0; i < NE; i++)
            adamw_ref(&pd[i], g[i], &md[i], &vd[i], (double)lr, (double)b1, (double)b2, (double)eps, (double)wd, t);
        if (t == 1 || t == 2 || t == 10) {
            /* fp32 against double: the update lr * m / denom is computed to a
             * few ulps, so p agrees to ~1e-6 of |p| plus ~1e-5 of lr */
            double ep = 0, em = 0, ev = 0;
            for (int i = 0; i < NE; i++) {
                ep = fmax(ep, fabs(p[i] - pd[i]) / (fabs(pd[i]) * 1e-6 + lr * 1e-5));
                em = fmax(em, fabs(m[i] - md[i]) / (fabs(md[i]) * 1e-5 + 1e-12));
                ev = fmax(ev, fabs(v[i] - vd[i]) / (fabs(vd[i]) * 1e-5 + 1e-18));
            }
            CHECK(ep <= 1 && em <= 1 && ev <= 1, "adamw t=%d against torch's formula in double: p, m, v errors / "
                  "tolerance %.3g %.3g %.3g", t, ep, em, ev);
        }
    }
    /* the first step moves each parameter by ~lr against the gradient's sign (plus decay) */
    {
        float q[2] = {1.0f, 1.0f}, gq[2] = {0.3f, -2.0f}, mq[2] = {0}, vq[2] = {0};
        be->adamw(q, gq, mq, vq, 2, 0.01f, 0.9f, 0.999f, 1e-8f, 0.0f, 1);
        CHECK(fabsf(q[0] - 0.99f) < 1e-6f && fabsf(q[1] - 1.01f) < 1e-6f, "adamw t=1: p moves by lr (%.8g %.8g)",
              (double)q[0], (double)q[1]);
        float r[1] = {2.0f}, gz[1] = {0}, mz[1] = {0}, vz[1] = {0};
        be->adamw(r, gz, mz, vz, 1, 0.01f, 0.9f, 0.999f, 1e-8f, 0.5f, 1);
        CHECK(r[0] == 2.0f * (float)(1.0 - 0.01 * 0.5), "adamw: zero gradient leaves only the decay (%.9g)", (double)r[0]);
    }
    const size_t n = 50000;
    ad_p = malloc(n * 4), ad_m = malloc(n * 4), ad_v = malloc(n * 4), ad_out = malloc(3 * n * 4);
    ad_g = rnd_vec(n, -1, 1);
    check_threads("adamw n=50000, 3 steps (p, m, v)", adamw_run, ad_out, 3 * n * 4);
    free(ad_p), free(ad_m), free(ad_v), free(ad_out), free(ad_g);
}

int main(void) {
    be = pl_backend_cpu();
    REQUIRE(be->embedding_bwd && be->rmsnorm_bwd && be->rope_bwd && be->attention_bwd && be->swiglu_bwd &&
                be->linear_bwd && be->linear_q_bwd_x && be->cross_entropy_bwd && be->sumsq && be->scale && be->adamw,
            "the CPU backend fills every backward op");
    omp_set_num_threads(2);
    test_embedding_bwd();
    test_rmsnorm_bwd();
    test_rope_bwd();
    test_attention_bwd();
    test_swiglu_bwd();
    test_linear_bwd();
    test_linear_q_bwd_x();
    test_cross_entropy_bwd();
    test_sumsq_scale();
    test_adamw();
    return check_summary("test_cpu_backward");
}
