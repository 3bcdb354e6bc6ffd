/* test_nf4.c: NF4 + double quantization against bitsandbytes byte for byte
 * (packed data, absmax codes, nested absmax, offset, code map) and
 * dequantization bit for bit ($POTLUCK_REFS/nf4_ref), torch.mean of the
 * offset, linear_q on NF4 weights, NF4 model bases, the quantized-base cache
 * (incl. hostile cache files), and bitsandbytes-4bit checkpoints. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "../core/json.h"
#include "../core/mapfile.h"
#include "../core/sha256.h"
#include "../trainer/model_nf4.h"
#include "../trainer/model.h"

static const char *refs;

#define REQUIRE_VOID(cond, ...) do { if (!(cond)) { CHECK(0, __VA_ARGS__); return; } } while (0)

/* Read a reference file of exactly `bytes` bytes (or any size if bytes is
 * (size_t)-1, returned in *got); NULL on failure. */
static void *read_ref(const char *name, size_t bytes, size_t *got) {
    char p[4096];
    snprintf(p, sizeof p, "%s/nf4_ref/%s", refs, name);
    char *buf = NULL;
    size_t len = 0;
    pl_err err;
    if (pl_read_file(p, (size_t)1 << 30, &buf, &len, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    if (bytes != (size_t)-1 && len != bytes) {
        fprintf(stderr, "%s: %zu bytes, expected %zu\n", p, len, bytes);
        free(buf);
        return NULL;
    }
    if (got) *got = len;
    return buf;
}

static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* count of positions where a and b (n floats) differ in bits */
static int64_t bit_mismatch(const float *a, const float *b, int64_t n) {
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++) c += memcmp(a + i, b + i, 4) != 0;
    return c;
}

static int n_cases_ok, n_cases;

static void test_case(const cJSON *c, int i) {
    const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
    int64_t n = (int64_t)cJSON_GetObjectItem(c, "n")->valuedouble;
    int bs = cJSON_GetObjectItem(c, "blocksize")->valueint;
    int dq = cJSON_IsTrue(cJSON_GetObjectItem(c, "double_quant"));
    int64_t nab = (int64_t)cJSON_GetObjectItem(c, "n_absmax")->valuedouble;
    int64_t pb = (int64_t)cJSON_GetObjectItem(c, "packed_bytes")->valuedouble;
    char f[64];
    int fails0 = check_failed;
    snprintf(f, sizeof f, "c%d_x.f32", i);
    float *x = read_ref(f, (size_t)n * 4, NULL);
    snprintf(f, sizeof f, "c%d_packed.u8", i);
    uint8_t *packed = read_ref(f, (size_t)pb, NULL);
    snprintf(f, sizeof f, "c%d_absmax.bin", i);
    void *absmax = read_ref(f, (size_t)nab * (dq ? 1 : 4), NULL);
    snprintf(f, sizeof f, "c%d_deq.f32", i);
    float *deq = read_ref(f, (size_t)n * 4, NULL);
    CHECK(x && packed && absmax && deq, "case %d %s: reference files", i, name);
    if (!(x && packed && absmax && deq)) goto out;
    pl_nf4 q;
    pl_err err;
    int rc = pl_nf4_quantize(x, n, bs, dq, &q, &err);
    CHECK(rc == 0, "case %d %s: quantize: %s", i, name, err.msg);
    if (rc) goto out;
    CHECK(q.n_blocks == nab && (q.n + 1) / 2 == pb, "case %d %s: %lld blocks / %lld bytes, bnb %lld / %lld", i, name,
          (long long)q.n_blocks, (long long)(q.n + 1) / 2, (long long)nab, (long long)pb);
    CHECK(memcmp(q.packed, packed, (size_t)pb) == 0, "case %d %s (bs %d dq %d): packed bytes differ", i, name, bs, dq);
    if (dq) {
        int64_t dc = 0;
        for (int64_t b = 0; b < nab; b++) dc += q.absmax_q[b] != ((const uint8_t *)absmax)[b];
        CHECK(dc == 0, "case %d %s (bs %d): %lld of %lld absmax codes differ", i, name, bs, (long long)dc,
              (long long)nab);
        int64_t nn = (int64_t)cJSON_GetObjectItem(c, "n_nested")->valuedouble;
        uint32_t ob = (uint32_t)cJSON_GetObjectItem(c, "offset_bits")->valuedouble;
        CHECK(fbits(q.offset) == ob, "case %d %s (bs %d): offset %a, bnb %a", i, name, bs, (double)q.offset,
              (double)cJSON_GetObjectItem(c, "offset")->valuedouble);
        snprintf(f, sizeof f, "c%d_nested.f32", i);
        float *nest = read_ref(f, (size_t)nn * 4, NULL);
        snprintf(f, sizeof f, "c%d_code.f32", i);
        float *code = read_ref(f, 1024, NULL);
        CHECK(nest && q.n_nested == nn && bit_mismatch(q.nested_absmax, nest, nn) == 0,
              "case %d %s (bs %d): nested absmax differs", i, name, bs);
        CHECK(code && memcmp(q.code, code, 1024) == 0, "case %d %s: dynamic map differs", i, name);
        free(nest);
        free(code);
    } else {
        CHECK(bit_mismatch(q.absmax, absmax, nab) == 0, "case %d %s (bs %d): fp32 absmax differs", i, name, bs);
    }
    float *mine = malloc((size_t)n * 4);
    pl_nf4_dequantize(&q, 0, n, mine);
    int64_t mm = bit_mismatch(mine, deq, n);
    CHECK(mm == 0, "case %d %s (bs %d dq %d): %lld of %lld dequantized values differ", i, name, bs, dq,
          (long long)mm, (long long)n);
    /* any element range: dequantize in odd pieces */
    int64_t s = 0, piece = 1, bad = 0;
    while (s < n) {
        int64_t cnt = piece < n - s ? piece : n - s;
        pl_nf4_dequantize(&q, s, cnt, mine + s);
        s += cnt;
        piece = piece * 3 + 1;
    }
    bad = bit_mismatch(mine, deq, n);
    CHECK(bad == 0, "case %d %s: ranged dequantization differs at %lld values", i, name, (long long)bad);
    CHECK(pl_nf4_dequantize(&q, n, 1, mine) != 0 && pl_nf4_dequantize(&q, -1, 1, mine) != 0,
          "case %d: out-of-range dequantization refused", i);
    free(mine);
    pl_nf4_free(&q);
out:
    free(x);
    free(packed);
    free(absmax);
    free(deq);
    n_cases++;
    if (check_failed == fails0) n_cases_ok++;
}

static void test_cases(void) {
    char p[4096];
    snprintf(p, sizeof p, "%s/nf4_ref/cases.json", refs);
    cJSON *j = NULL;
    pl_err err;
    if (pl_json_load(p, 1 << 20, &j, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    const cJSON *cs = cJSON_GetObjectItem(j, "cases");
    int i = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cs) test_case(c, i++);
    printf("note: nf4 vs bitsandbytes %s: %d of %d cases byte-identical (packed, absmax, nested, offset, map, dequant)\n",
           cJSON_GetObjectItem(j, "bitsandbytes")->valuestring, n_cases_ok, n_cases);
    CHECK(n_cases >= 60, "expected the full case list, found %d", n_cases);
    cJSON_Delete(j);
}

static void test_mean(void) {
    char p[4096];
    snprintf(p, sizeof p, "%s/nf4_ref/mean.json", refs);
    cJSON *j = NULL;
    pl_err err;
    if (pl_json_load(p, 1 << 20, &j, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    int lanes = 0; /* the library default, whatever torch's capability string says */
    int i = 0, ok = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItem(j, "means")) {
        int64_t n = (int64_t)cJSON_GetObjectItem(m, "n")->valuedouble;
        uint32_t bits = (uint32_t)cJSON_GetObjectItem(m, "bits")->valuedouble;
        char f[64];
        snprintf(f, sizeof f, "mean_%d.f32", i);
        float *v = read_ref(f, (size_t)n * 4, NULL);
        if (v) {
            float got = pl_nf4_torch_mean(v, n, lanes);
            CHECK(fbits(got) == bits, "torch.mean of %lld floats: %a, torch %08x", (long long)n, (double)got, bits);
            ok += fbits(got) == bits;
        }
        free(v);
        i++;
    }
    printf("note: torch.mean: %d of %d lengths bit-identical\n", ok, i);
    cJSON_Delete(j);
}

/* linear_q through an NF4 qweight == dequantize + naive matmul (both paths:
 * few rows = per-row dots, many rows = block rows into the workspace + sgemm),
 * and linear_q_bwd_x == dout . dequant(w). */
static void test_linear_q(void) {
    const int O = 96, I = 200, T = 37;
    float *w = malloc(sizeof(float) * O * I), *x = malloc(sizeof(float) * T * I);
    uint64_t s = 88172645463325252ull;
    for (int i = 0; i < O * I; i++) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; w[i] = (float)((int64_t)(s % 2001) - 1000) / 997.0f; }
    for (int i = 0; i < T * I; i++) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; x[i] = (float)((int64_t)(s % 2001) - 1000) / 1000.0f; }
    pl_nf4 q;
    pl_err err;
    REQUIRE_VOID(pl_nf4_quantize(w, (int64_t)O * I, 64, 1, &q, &err) == 0, "quantize: %s", err.msg);
    pl_qweight qw;
    CHECK(pl_nf4_qweight(&q, O, I, &qw) == 0 && qw.dtype == PL_NF4 && qw.aux, "qweight view");
    CHECK(pl_nf4_qweight(&q, O + 1, I, &qw) != 0, "a view of the wrong shape is refused");
    pl_nf4_qweight(&q, O, I, &qw);
    float *dw = malloc(sizeof(float) * O * I);
    pl_nf4_dequantize(&q, 0, (int64_t)O * I, dw);
    const pl_backend *be = pl_backend_cpu();
    float *ws = malloc(pl_cpu_linear_q_workspace(I) * sizeof(float));
    float *out = malloc(sizeof(float) * T * O), *ref = malloc(sizeof(float) * T * O);
    float *bias = malloc(sizeof(float) * O);
    for (int o = 0; o < O; o++) bias[o] = 0.01f * (float)o;
    for (int Tn = 1; Tn <= T; Tn += T - 1) {
        be->linear_q(out, x, &qw, bias, Tn, ws);
        double md = 0;
        for (int t = 0; t < Tn; t++)
            for (int o = 0; o < O; o++) {
                double acc = bias[o];
                for (int i = 0; i < I; i++) acc += (double)x[t * I + i] * dw[o * I + i];
                double d = fabs(acc - out[t * O + o]);
                if (d > md) md = d;
            }
        CHECK(md < 1e-4, "linear_q on NF4 (T=%d): max diff %g vs dequantize + naive matmul", Tn, md);
    }
    /* input gradient: dx (T, I) = dout (T, O) . dequant(w) */
    float *dx = malloc(sizeof(float) * T * I);
    be->linear_q_bwd_x(dx, x /* any (T, O) values: reuse x's first T*O */, &qw, T, ws);
    double md = 0;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < I; i++) {
            double acc = 0;
            for (int o = 0; o < O; o++) acc += (double)x[t * O + o] * dw[o * I + i];
            double d = fabs(acc - dx[t * I + i]);
            if (d > md) md = d;
        }
    CHECK(md < 1e-4, "linear_q_bwd_x on NF4: max diff %g", md);
    free(dx); free(bias); free(out); free(ref); free(ws); free(dw); free(w); free(x);
    pl_nf4_free(&q);
}

/* ---- NF4 model bases ------------------------------------------------------ */

static void layer_ws(pl_layer *L, pl_qweight *ws[7]) {
    ws[0] = &L->wq; ws[1] = &L->wk; ws[2] = &L->wv; ws[3] = &L->wo;
    ws[4] = &L->w_gate; ws[5] = &L->w_up; ws[6] = &L->w_down;
}

/* ids (40) from hf_tiny/llama; NULL on failure */
static int32_t *tiny_ids(int *T) {
    char p[4096];
    snprintf(p, sizeof p, "%s/hf_tiny/llama/ids.i32", refs);
    char *b = NULL;
    size_t n = 0;
    pl_err err;
    if (pl_read_file(p, 1 << 20, &b, &n, &err) || n == 0 || n % 4) {
        free(b);
        return NULL;
    }
    *T = (int)(n / 4);
    return (int32_t *)(void *)b;
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= d)) d = e;
    }
    return d;
}

/* hf_tiny/llama loaded with nf4_blocksize 64: its logits equal those of the
 * fp32 model whose layer weights were NF4-quantized then dequantized (1e-5),
 * and stay close to the fp32 model's. */
static void test_model_nf4(void) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/hf_tiny/llama", refs);
    int T = 0;
    int32_t *ids = tiny_ids(&T);
    REQUIRE_VOID(ids && T > 0, "hf_tiny/llama ids");
    pl_err err;
    for (int dq = 0; dq <= 1; dq++) {
        pl_model *q = NULL, *f = NULL;
        pl_model_opts oq = {.nf4_blocksize = 64, .nf4_double_quant = dq};
        pl_model_opts of = {.fp32 = 1};
        int rc = pl_model_load(&q, dir, &oq, &err);
        CHECK(rc == 0, "nf4 load (dq %d): %s", dq, err.msg);
        int rc2 = pl_model_load(&f, dir, &of, &err);
        CHECK(rc2 == 0, "fp32 load: %s", err.msg);
        if (rc || rc2) {
            pl_model_free(q);
            pl_model_free(f);
            continue;
        }
        const int V = q->cfg.vocab, L = q->cfg.n_layers;
        int nf4_count = 0, ok_shapes = 1;
        float **bufs = calloc((size_t)L * 7, sizeof *bufs);
        for (int l = 0; l < L; l++) {
            pl_qweight *wq[7], *wf[7];
            layer_ws(&q->layers[l], wq);
            layer_ws(&f->layers[l], wf);
            for (int i = 0; i < 7; i++) {
                nf4_count += wq[i]->dtype == PL_NF4;
                ok_shapes &= wq[i]->rows == wf[i]->rows && wq[i]->cols == wf[i]->cols;
                /* the reference: quantize the fp32 weight ourselves, dequantize into a test-owned copy */
                const int64_t n = wf[i]->rows * wf[i]->cols;
                float *src = malloc((size_t)n * sizeof(float)), *dst = malloc((size_t)n * sizeof(float));
                for (int64_t r = 0; r < wf[i]->rows; r++) pl_qweight_row(wf[i], r, src + r * wf[i]->cols);
                pl_nf4 qq;
                if (pl_nf4_quantize(src, n, 64, dq, &qq, &err) == 0) {
                    pl_nf4_dequantize(&qq, 0, n, dst);
                    pl_nf4_free(&qq);
                } else {
                    CHECK(0, "quantize: %s", err.msg);
                }
                free(src);
                bufs[l * 7 + i] = dst;
                wf[i]->dtype = PL_F32;
                wf[i]->aux = NULL;
                wf[i]->data = dst;
                wf[i]->row_bytes = (size_t)wf[i]->cols * sizeof(float);
            }
        }
        CHECK(nf4_count == 7 * L && ok_shapes, "dq %d: %d of %d layer weights NF4, shapes kept", dq, nf4_count, 7 * L);
        CHECK(q->tok_embd.dtype != PL_NF4 && q->lm_head.dtype != PL_NF4, "embeddings and head stay as loaded");
        float *lq = malloc(sizeof(float) * (size_t)T * V), *lf = malloc(sizeof(float) * (size_t)T * V);
        float *l32 = malloc(sizeof(float) * (size_t)T * V);
        rc = pl_model_forward(q, ids, NULL, NULL, T, lq, &err);
        CHECK(rc == 0, "nf4 forward: %s", err.msg);
        rc2 = pl_model_forward(f, ids, NULL, NULL, T, lf, &err);
        CHECK(rc2 == 0, "dequantized forward: %s", err.msg);
        pl_model *p32 = NULL;
        int rc3 = pl_model_load(&p32, dir, &of, &err);
        if (!rc3) rc3 = pl_model_forward(p32, ids, NULL, NULL, T, l32, &err);
        CHECK(rc3 == 0, "fp32 forward: %s", err.msg);
        if (!rc && !rc2 && !rc3) {
            double d = max_abs_diff(lq, lf, (size_t)T * V), d32 = max_abs_diff(lq, l32, (size_t)T * V), sc = 0;
            for (size_t i = 0; i < (size_t)T * V; i++) sc = fabs(l32[i]) > sc ? fabs(l32[i]) : sc;
            CHECK(d <= 1e-5, "dq %d: NF4 model vs fp32 model of dequantized weights: max abs diff %g", dq, d);
            /* 4-bit weights move the logits: relative RMS error and top-1 agreement */
            double se = 0, s2 = 0;
            int same = 0;
            for (int t = 0; t < T; t++) {
                int a = 0, b = 0;
                for (int v = 0; v < V; v++) {
                    const size_t k = (size_t)t * V + v;
                    se += ((double)lq[k] - l32[k]) * ((double)lq[k] - l32[k]);
                    s2 += (double)l32[k] * l32[k];
                    if (lq[k] > lq[(size_t)t * V + a]) a = v;
                    if (l32[k] > l32[(size_t)t * V + b]) b = v;
                }
                same += a == b;
            }
            const double rel = sqrt(se / (s2 > 0 ? s2 : 1));
            /* this tiny random model is sensitive: its weights' NF4 error is ~9% (RMS), its logits' ~25% */
            CHECK(d32 > 0 && rel < 0.4 && 2 * same >= T, "dq %d: NF4 vs fp32 logits: relative RMS %g (max abs %g), "
                  "top-1 same at %d of %d", dq, rel, d32, same, T);
            printf("note: hf_tiny/llama NF4 bs 64 dq %d: vs dequantized-fp32 max %.3g; vs fp32 max %.3g, relative RMS "
                   "%.3g, top-1 same at %d of %d (max |logit| %.3g)\n", dq, d, d32, rel, same, T, sc);
        }
        pl_model_free(p32);
        free(lq);
        free(lf);
        free(l32);
        pl_model_free(q);
        pl_model_free(f);
        for (int i = 0; i < L * 7; i++) free(bufs[i]);
        free(bufs);
    }
    /* nf4 + fp32: the embeddings and head become fp32, the layers stay NF4 */
    pl_model *m = NULL;
    pl_model_opts ob = {.fp32 = 1, .nf4_blocksize = 64, .nf4_double_quant = 1};
    int rc = pl_model_load(&m, dir, &ob, &err);
    CHECK(rc == 0, "nf4 + fp32 load: %s", err.msg);
    if (!rc)
        CHECK(m->tok_embd.dtype == PL_F32 && m->lm_head.dtype == PL_F32 && m->layers[0].wq.dtype == PL_NF4 &&
                  m->layers[m->cfg.n_layers - 1].w_down.dtype == PL_NF4,
              "nf4 + fp32: embeddings/head fp32, layers NF4");
    pl_model_free(m);
    pl_model_opts obad = {.nf4_blocksize = 48};
    m = NULL;
    CHECK(pl_model_load(&m, dir, &obad, &err) == PL_EINVAL && !m && strstr(err.msg, "blocksize"),
          "nf4 blocksize 48 refused: %s", err.msg);
    free(ids);
}

/* ---- the quantized-base cache -------------------------------------------- */

static int write_bytes(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(b, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* load hf_tiny/llama plain, then the cache at path: rc and err */
static int load_with_cache(const char *dir, const char *path, pl_model **out, pl_err *err) {
    *out = NULL;
    int rc = pl_model_load(out, dir, NULL, err);
    if (rc) return rc;
    return pl_model_nf4_cache_load(*out, path, err);
}

/* the NF4 layer weights of a and b are identical */
static int same_nf4(const pl_model *a, const pl_model *b) {
    for (int l = 0; l < a->cfg.n_layers; l++) {
        pl_qweight *wa[7], *wb[7];
        layer_ws(&a->layers[l], wa);
        layer_ws(&b->layers[l], wb);
        for (int i = 0; i < 7; i++) {
            const pl_nf4 *x = wa[i]->data, *y = wb[i]->data;
            if (wa[i]->dtype != PL_NF4 || wb[i]->dtype != PL_NF4 || x->n != y->n || x->n_blocks != y->n_blocks ||
                x->double_quant != y->double_quant || memcmp(x->packed, y->packed, (size_t)(x->n + 1) / 2) ||
                memcmp(&x->offset, &y->offset, 4) ||
                (x->double_quant ? memcmp(x->absmax_q, y->absmax_q, (size_t)x->n_blocks) ||
                                       memcmp(x->nested_absmax, y->nested_absmax, (size_t)x->n_nested * 4)
                                 : memcmp(x->absmax, y->absmax, (size_t)x->n_blocks * 4)))
                return 0;
        }
    }
    return 1;
}

static void test_cache(void) {
    char dir[4096], path[4096], bad[4200];
    snprintf(dir, sizeof dir, "%s/hf_tiny/llama", refs);
    snprintf(path, sizeof path, "/tmp/potluck_test_nf4_%d.cache", (int)getpid());
    snprintf(bad, sizeof bad, "%s.bad", path);
    int T = 0;
    int32_t *ids = tiny_ids(&T);
    REQUIRE_VOID(ids, "ids");
    pl_err err;
    for (int dq = 0; dq <= 1; dq++) {
        pl_model *q = NULL, *c = NULL;
        pl_model_opts oq = {.nf4_blocksize = 64, .nf4_double_quant = dq};
        int rc = pl_model_load(&q, dir, &oq, &err);
        CHECK(rc == 0, "nf4 load: %s", err.msg);
        if (!rc) rc = pl_model_nf4_cache_save(q, path, &err);
        CHECK(rc == 0, "cache save (dq %d): %s", dq, err.msg);
        if (!rc) rc = load_with_cache(dir, path, &c, &err);
        CHECK(rc == 0, "cache load (dq %d): %s", dq, err.msg);
        if (!rc) {
            CHECK(same_nf4(q, c), "dq %d: cached NF4 weights equal the freshly quantized ones", dq);
            const int V = q->cfg.vocab;
            float *la = malloc(sizeof(float) * (size_t)T * V), *lb = malloc(sizeof(float) * (size_t)T * V);
            int ok = pl_model_forward(q, ids, NULL, NULL, T, la, &err) == 0 &&
                     pl_model_forward(c, ids, NULL, NULL, T, lb, &err) == 0;
            CHECK(ok && memcmp(la, lb, sizeof(float) * (size_t)T * V) == 0, "dq %d: same logits from the cache", dq);
            free(la);
            free(lb);
        }
        pl_model_free(q);
        pl_model_free(c);
    }
    /* a plain model cannot be cached */
    pl_model *p = NULL;
    if (pl_model_load(&p, dir, NULL, &err) == 0)
        CHECK(pl_model_nf4_cache_save(p, bad, &err) == PL_EINVAL && access(bad, F_OK) != 0, "save of a non-NF4 model refused: %s",
              err.msg);
    pl_model_free(p);
    /* hostile caches: read the good one (dq 1), break it */
    char *good = NULL;
    size_t n = 0;
    REQUIRE_VOID(pl_read_file(path, 1 << 26, &good, &n, &err) == 0 && n > 200, "cache bytes: %s", err.msg);
    size_t cuts[] = {0, 7, 55, 56, 87, 88, 100, n / 2, n - 33, n - 32, n - 1};
    int clean = 0, total = 0;
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        pl_model *m = NULL;
        write_bytes(bad, good, cuts[k]);
        int rc = load_with_cache(dir, bad, &m, &err);
        clean += rc < 0 && strstr(err.msg, bad) != NULL;
        total++;
        pl_model_free(m);
    }
    CHECK(clean == total, "truncated caches: %d of %d refused with a message naming the file (%s)", clean, total,
          err.msg);
    /* a flipped byte anywhere: the checksum */
    clean = total = 0;
    for (size_t off = 3; off < n; off += n / 13 + 1) {
        unsigned char *cp = malloc(n);
        memcpy(cp, good, n);
        cp[off] ^= 0x40;
        write_bytes(bad, cp, n);
        free(cp);
        pl_model *m = NULL;
        int rc = load_with_cache(dir, bad, &m, &err);
        clean += rc < 0;
        total++;
        pl_model_free(m);
    }
    CHECK(clean == total, "corrupted caches: %d of %d refused (%s)", clean, total, err.msg);
    /* hostile sizes behind a valid checksum: the first record's rows, n_blocks,
     * data_bytes; the tensor count; the name length */
    const size_t name_len = 10; /* "layers.0.q" */
    const size_t rows_at = 56 + 4 + name_len, nb_at = rows_at + 16, db_at = rows_at + 36;
    struct { size_t at; int width; uint64_t v; const char *what; } pokes[] = {
        {rows_at, 8, (uint64_t)1 << 62, "rows 2^62"}, {rows_at + 8, 8, 0, "cols 0"},
        {nb_at, 8, 1000000, "n_blocks"}, {db_at, 8, UINT64_MAX, "data_bytes 2^64-1"},
        {db_at, 8, 1, "data_bytes 1"}, {20, 4, 0xffffffffu, "tensor count"}, {56, 4, 0xfffffff0u, "name length"},
        {12, 4, 48, "blocksize 48"}, {16, 4, 7, "double_quant 7"}, {8, 4, 2, "version 2"},
        {24, 1, 0x5a, "key"},
    };
    for (size_t k = 0; k < sizeof pokes / sizeof pokes[0]; k++) {
        unsigned char *cp = malloc(n);
        memcpy(cp, good, n);
        for (int i = 0; i < pokes[k].width; i++) cp[pokes[k].at + i] = (unsigned char)(pokes[k].v >> (8 * i));
        pl_sha256_buf(cp, n - 32, cp + n - 32);
        write_bytes(bad, cp, n);
        free(cp);
        pl_model *m = NULL;
        int rc = load_with_cache(dir, bad, &m, &err);
        CHECK(rc < 0 && strstr(err.msg, "nf4 cache"), "hostile cache (%s) refused: %s", pokes[k].what, err.msg);
        /* the model is untouched: its layers are still the source weights */
        CHECK(m && m->layers[0].wq.dtype != PL_NF4, "hostile cache (%s): model left as loaded", pokes[k].what);
        pl_model_free(m);
    }
    /* the key: another model's files, or the same cache asked of a model whose weights changed */
    char other[4096];
    snprintf(other, sizeof other, "%s/hf_tiny/mistral", refs);
    pl_model *m = NULL;
    int rc = load_with_cache(other, path, &m, &err);
    CHECK(rc < 0 && (strstr(err.msg, "key mismatch") || strstr(err.msg, "tensors") || strstr(err.msg, "expected")),
          "a cache of another model refused: %s", err.msg);
    pl_model_free(m);
    free(good);
    unlink(path);
    unlink(bad);
    free(ids);
}

/* ---- bitsandbytes-4bit directories ----------------------------------------- */

/* nf4_ref/bnb4 (transformers' save_pretrained of a 4-bit NF4 double-quant
 * model): its dequantized layer weights equal bnb's bit for bit, its logits
 * match transformers' 4-bit model and the fp32 model of bnb's dequantization. */
static void test_bnb4(void) {
    char dir[4096], p[4200];
    snprintf(dir, sizeof dir, "%s/nf4_ref/bnb4", refs);
    size_t tn = 0;
    int32_t *toks = read_ref("tokens.i32", (size_t)-1, &tn);
    REQUIRE_VOID(toks && tn >= 4 && tn % 4 == 0, "tokens.i32");
    const int T = (int)(tn / 4);
    pl_err err;
    pl_model *m = NULL;
    int rc = pl_model_load(&m, dir, NULL, &err);
    CHECK(rc == 0, "bnb4 load: %s", err.msg);
    if (rc) {
        free(toks);
        return;
    }
    const int V = m->cfg.vocab;
    static const char *const hf[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                      "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
    int n_nf4 = 0, n_same = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        pl_qweight *ws[7];
        layer_ws(&m->layers[l], ws);
        for (int i = 0; i < 7; i++) {
            n_nf4 += ws[i]->dtype == PL_NF4;
            const int64_t n = ws[i]->rows * ws[i]->cols;
            snprintf(p, sizeof p, "bnbdeq_model.layers.%d.%s.weight.f32", l, hf[i]);
            float *ref = read_ref(p, (size_t)n * 4, NULL);
            float *mine = malloc((size_t)n * 4);
            for (int64_t r = 0; r < ws[i]->rows; r++) pl_qweight_row(ws[i], r, mine + r * ws[i]->cols);
            n_same += ref && bit_mismatch(mine, ref, n) == 0;
            free(ref);
            free(mine);
        }
    }
    CHECK(n_nf4 == 7 * m->cfg.n_layers, "bnb4: %d of %d layer weights NF4", n_nf4, 7 * m->cfg.n_layers);
    CHECK(n_same == 7 * m->cfg.n_layers, "bnb4: %d of %d weights dequantize bit-identical to bitsandbytes", n_same,
          7 * m->cfg.n_layers);
    float *lg = malloc(sizeof(float) * (size_t)T * V);
    rc = pl_model_forward(m, toks, NULL, NULL, T, lg, &err);
    CHECK(rc == 0, "bnb4 forward: %s", err.msg);
    float *ld = read_ref("logits_deq.f32", (size_t)T * V * 4, NULL);
    float *l4 = read_ref("logits_4bit.f32", (size_t)T * V * 4, NULL);
    CHECK(ld && l4, "bnb4 reference logits");
    if (!rc && ld && l4) {
        double sc = 0;
        for (size_t i = 0; i < (size_t)T * V; i++) sc = fabs(ld[i]) > sc ? fabs(ld[i]) : sc;
        const double dd = max_abs_diff(lg, ld, (size_t)T * V), d4 = max_abs_diff(lg, l4, (size_t)T * V);
        CHECK(dd <= 1e-4 * (sc > 1 ? sc : 1), "bnb4 vs fp32 model of bnb's dequantization: max abs %g", dd);
        /* transformers' 4-bit forward runs bnb's own CPU 4-bit matmul kernels (a different
         * accumulation than dequantize + fp32 matmul): close, not bit-equal */
        CHECK(d4 <= 1e-2 * (sc > 1 ? sc : 1), "bnb4 vs transformers' 4-bit model: max abs %g", d4);
        printf("note: bnb4: logits vs dequantized-fp32 model %.3g, vs transformers 4-bit %.3g (max |logit| %.3g)\n", dd,
               d4, sc);
    }
    free(ld);
    free(l4);
    free(lg);
    pl_model_free(m);
    free(toks);
}

/* bad arguments */
static void test_args(void) {
    float x[4] = {1, 2, 3, 4};
    pl_nf4 q;
    pl_err err;
    CHECK(pl_nf4_quantize(x, 4, 48, 1, &q, &err) == PL_EINVAL, "blocksize 48 refused");
    CHECK(pl_nf4_quantize(x, 4, 8192, 1, &q, &err) == PL_EINVAL, "blocksize 8192 refused");
    CHECK(pl_nf4_quantize(x, 0, 64, 1, &q, &err) == PL_EINVAL, "empty tensor refused");
    x[2] = NAN;
    CHECK(pl_nf4_quantize(x, 4, 64, 1, &q, &err) == PL_EINVAL && strstr(err.msg, "finite"), "NaN refused: %s", err.msg);
}

int main(void) {
    refs = check_env("POTLUCK_REFS");
    test_mean();
    test_cases();
    test_linear_q();
    test_args();
    test_model_nf4();
    test_cache();
    test_bnb4();
    return check_summary("test_nf4");
}
