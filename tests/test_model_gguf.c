/* test_model_gguf.c: GGUF models written as llama.cpp's converter writes them
 * (tests/interop/gguf_tiny.py: tiny random Llama with GQA and Q/K rows
 * permuted, F32/F16/Q8_0; Qwen2 with q/k/v bias, GQA 3, tied, unpermuted,
 * F32/Q8_0; Llama with rope_freqs.weight) must give transformers' logits,
 * through pl_model_forward and token by token through pl_model_decode; the
 * shared llama.cpp-converted fixture llama-2-tiny-random.gguf must load with
 * its metadata's config and give transformers' logits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/json.h"
#include "core/mapfile.h"
#include "trainer/model.h"

/* Largest |x| over n values. */
static double max_abs(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fabs(x[i]) > m ? fabs(x[i]) : m;
    return m;
}

/* Number of positions (rows of V) whose argmax differs between a and b. */
static int argmax_mismatches(const float *a, const float *b, int T, int V) {
    int bad = 0;
    for (int t = 0; t < T; t++) {
        int ia = 0, ib = 0;
        for (int v = 1; v < V; v++) {
            if (a[(size_t)t * V + v] > a[(size_t)t * V + ia]) ia = v;
            if (b[(size_t)t * V + v] > b[(size_t)t * V + ib]) ib = v;
        }
        bad += ia != ib;
    }
    return bad;
}

static int all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

/* Reads a raw little-endian array of exactly n 4-byte values. */
static char *read_raw(const char *dir, const char *name, size_t n, pl_err *err) {
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    char *b = NULL;
    size_t len = 0;
    if (pl_read_file(p, 1 << 28, &b, &len, err)) return NULL;
    if (len != n * 4) {
        pl_err_set(err, PL_EFORMAT, "%s: %zu bytes, expected %zu", p, len, n * 4);
        free(b);
        return NULL;
    }
    return b;
}

/* Feeds ids one token at a time through the KV cache; logits (T, V). */
static int decode_one_by_one(pl_model *m, const int32_t *ids, int T, float *logits, pl_err *err) {
    pl_kvcache kv;
    int rc = pl_kvcache_init(&kv, m, 1, T, err);
    if (rc) return rc;
    for (int t = 0; t < T && !rc; t++) {
        int seq = 0, n = 1;
        const int32_t *tok = ids + t;
        rc = pl_model_decode(m, &kv, 1, &seq, &tok, &n, logits + (size_t)t * m->cfg.vocab, NULL, err);
    }
    if (!rc && kv.len[0] != T) rc = pl_err_set(err, PL_EINVAL, "cache holds %d tokens, expected %d", kv.len[0], T);
    pl_kvcache_free(&kv);
    return rc;
}

typedef struct variant {
    const char *name, *file, *arch, *type, *logits;
    int tied, qkv_bias;
    int64_t n_heads, n_kv_heads;
} variant;

static void check_variant(const char *dir, const variant *vr, const int32_t *ids, int T, int V) {
    pl_err err = {0};
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, vr->file);
    float *ref = (float *)read_raw(dir, vr->logits, (size_t)T * V, &err);
    CHECK(ref != NULL, "%s: reference logits: %s", vr->name, err.msg);
    if (!ref) return;
    pl_model *m = NULL;
    int rc = pl_model_load(&m, path, NULL, &err);
    CHECK(rc == 0, "%s: load: %s", vr->name, err.msg);
    if (rc) {
        free(ref);
        return;
    }
    const pl_model_config *c = &m->cfg;
    int is_qwen = !strcmp(vr->arch, "qwen2");
    CHECK(m->source == PL_SRC_GGUF, "%s: source %d", vr->name, (int)m->source);
    CHECK(!strcmp(pl_arch_name(c->arch), vr->arch), "%s: arch %s, expected %s", vr->name, pl_arch_name(c->arch), vr->arch);
    CHECK(c->vocab == V, "%s: vocab %d, expected %d", vr->name, c->vocab, V);
    CHECK(c->n_heads == vr->n_heads && c->n_kv_heads == vr->n_kv_heads, "%s: heads %d/%d, expected %lld/%lld",
          vr->name, c->n_heads, c->n_kv_heads, (long long)vr->n_heads, (long long)vr->n_kv_heads);
    CHECK(c->tied_embeddings == vr->tied, "%s: tied %d, expected %d", vr->name, c->tied_embeddings, vr->tied);
    CHECK(c->qkv_bias == vr->qkv_bias, "%s: qkv_bias %d, expected %d", vr->name, c->qkv_bias, vr->qkv_bias);
    CHECK(c->dim == (is_qwen ? 96 : 64) && c->hidden == (is_qwen ? 160 : 96) && c->n_layers == 2 && c->head_dim == 16,
          "%s: dim %d hidden %d layers %d head_dim %d", vr->name, c->dim, c->hidden, c->n_layers, c->head_dim);
    CHECK(c->max_seq == 256, "%s: context %d, expected 256", vr->name, c->max_seq);
    float theta = is_qwen ? 1e6f : strstr(vr->name, "rope_freqs") ? 1e4f : 5e5f;
    CHECK(c->rope_theta == theta, "%s: rope_theta %g, expected %g", vr->name, (double)c->rope_theta, (double)theta);
    CHECK(c->norm_eps == (is_qwen ? 1e-6f : 1e-5f), "%s: rms eps %g", vr->name, (double)c->norm_eps);
    if (vr->tied) CHECK(m->lm_head.data == m->tok_embd.data, "%s: tied LM head is not the token embedding", vr->name);
    else CHECK(m->lm_head.data && m->lm_head.data != m->tok_embd.data, "%s: untied LM head missing", vr->name);
    const pl_layer *L = &m->layers[c->n_layers - 1];
    CHECK(!strcmp(pl_dtype_name(L->wq.dtype), vr->type) && !strcmp(pl_dtype_name(L->w_down.dtype), vr->type) &&
              !strcmp(pl_dtype_name(m->tok_embd.dtype), vr->type),
          "%s: weights are %s/%s/%s, expected %s", vr->name, pl_dtype_name(L->wq.dtype), pl_dtype_name(L->w_down.dtype),
          pl_dtype_name(m->tok_embd.dtype), vr->type);
    CHECK((L->bq && L->bk && L->bv) == vr->qkv_bias && (L->bq || L->bk || L->bv) == vr->qkv_bias,
          "%s: q/k/v biases present: %d %d %d", vr->name, L->bq != NULL, L->bk != NULL, L->bv != NULL);

    size_t n = (size_t)T * V;
    float *lg = malloc(n * sizeof(float)), *dl = malloc(n * sizeof(float));
    if (!lg || !dl) {
        CHECK(0, "%s: out of memory", vr->name);
    } else if ((rc = pl_model_forward(m, ids, NULL, NULL, T, lg, &err))) {
        CHECK(0, "%s: forward: %s", vr->name, err.msg);
    } else {
        double scale = max_abs(ref, n), d = check_max_abs(lg, ref, n), tol = 1e-4 * (scale > 1 ? scale : 1);
        int bad = argmax_mismatches(lg, ref, T, V);
        CHECK(d <= tol, "%s: logits differ from transformers: max abs %g > %g (max |logit| %g)", vr->name, d, tol, scale);
        CHECK(bad == 0, "%s: argmax differs from transformers at %d of %d positions", vr->name, bad, T);
        rc = decode_one_by_one(m, ids, T, dl, &err);
        CHECK(rc == 0, "%s: decode: %s", vr->name, err.msg);
        double dd = rc ? INFINITY : check_max_abs(dl, lg, n), dr = rc ? INFINITY : check_max_abs(dl, ref, n);
        if (rc == 0) {
            CHECK(dd <= tol, "%s: token-by-token decode differs from forward: max abs %g > %g", vr->name, dd, tol);
            CHECK(dr <= tol, "%s: token-by-token decode differs from transformers: max abs %g > %g", vr->name, dr, tol);
            CHECK(argmax_mismatches(dl, ref, T, V) == 0, "%s: decode argmax differs from transformers", vr->name);
        }
        printf("note: %-21s %-4s %d tokens: max |logit| %.3g, forward vs transformers %.3g, decode vs forward %.3g, "
               "decode vs transformers %.3g\n",
               vr->name, vr->type, T, scale, d, dd, dr);
    }
    free(lg);
    free(dl);
    free(ref);
    pl_model_free(m);
}

/* The llama.cpp-converted fixture: config from its metadata, logits vs transformers. */
static void check_fixture(const char *shared, const char *dir, const cJSON *fx, const char *where) {
    pl_err err = {0};
    const char *file = NULL, *ids_name = NULL, *lg_name = NULL;
    int64_t T = 0, V = 0;
    if (pl_json_str(fx, "file", where, &file, &err) || pl_json_str(fx, "ids", where, &ids_name, &err) ||
        pl_json_str(fx, "logits", where, &lg_name, &err) || pl_json_int(fx, "T", where, &T, &err) ||
        pl_json_int(fx, "vocab", where, &V, &err) || T <= 0 || T > 4096 || V != 32000) {
        CHECK(0, "fixture entry of %s: %s", where, err.msg);
        return;
    }
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", shared, file);
    pl_model *m = NULL;
    int rc = pl_model_load(&m, path, NULL, &err);
    CHECK(rc == 0, "fixture: load: %s", err.msg);
    if (rc) return;
    const pl_model_config *c = &m->cfg;
    CHECK(c->arch == PL_ARCH_LLAMA && c->dim == 8 && c->n_layers == 1 && c->n_heads == 2 && c->n_kv_heads == 2 &&
              c->head_dim == 4 && c->hidden == 32 && c->vocab == 32000 && !c->tied_embeddings && !c->qkv_bias,
          "fixture: config arch %s dim %d layers %d heads %d/%d head_dim %d hidden %d vocab %d tied %d bias %d",
          pl_arch_name(c->arch), c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->hidden, c->vocab,
          c->tied_embeddings, c->qkv_bias);
    CHECK(c->max_seq == 4096 && c->norm_eps == 1e-5f && c->rope_theta == 10000.0f && c->bos_id == 1 && c->eos_id == 2,
          "fixture: context %d eps %g theta %g bos %d eos %d", c->max_seq, (double)c->norm_eps, (double)c->rope_theta,
          c->bos_id, c->eos_id);
    CHECK(m->layers[0].wq.dtype == PL_F16 && m->lm_head.dtype == PL_F16, "fixture: weights %s, expected F16",
          pl_dtype_name(m->layers[0].wq.dtype));
    int32_t *ids = (int32_t *)read_raw(dir, ids_name, (size_t)T, &err);
    float *ref = ids ? (float *)read_raw(dir, lg_name, (size_t)(T * V), &err) : NULL;
    CHECK(ids && ref, "fixture: reference files: %s", err.msg);
    float *lg = malloc((size_t)(T * V) * sizeof(float));
    if (ids && ref && lg) {
        rc = pl_model_forward(m, ids, NULL, NULL, (int)T, lg, &err);
        CHECK(rc == 0, "fixture: forward: %s", err.msg);
        if (rc == 0) {
            size_t n = (size_t)(T * V);
            /* Its random weights give logits under 0.3, so the tolerance is relative
             * without a floor of 1: with one, skipping the Q/K un-permutation
             * (max abs diff 1e-4 here) would still pass. */
            double scale = max_abs(ref, n), d = check_max_abs(lg, ref, n), tol = 1e-4 * scale;
            CHECK(all_finite(lg, n), "fixture: non-finite logits");
            CHECK(max_abs(lg, n) > 0, "fixture: all logits are zero");
            CHECK(d <= tol, "fixture: logits differ from transformers: max abs %g > %g (max |logit| %g)", d, tol, scale);
            int bad = argmax_mismatches(lg, ref, (int)T, (int)V);
            CHECK(bad == 0, "fixture: argmax differs from transformers at %d of %lld positions", bad, (long long)T);
            printf("note: fixture llama-2-tiny-random.gguf F16 %lld tokens: max |logit| %.3g, forward vs transformers %.3g\n",
                   (long long)T, scale, d);
        }
    }
    free(lg);
    free(ids);
    free(ref);
    pl_model_free(m);
}

int main(void) {
    const char *refs = check_env("POTLUCK_REFS");
    const char *shared = check_env("POTLUCK_SHARED");
    char dir[4096], p[4200];
    snprintf(dir, sizeof dir, "%s/gguf_tiny", refs);
    snprintf(p, sizeof p, "%s/meta.json", dir);
    pl_err err = {0};
    cJSON *meta = NULL;
    int64_t T = 0, V = 0;
    int rc = pl_json_load(p, 1 << 20, &meta, &err);
    if (!rc) rc = pl_json_int(meta, "T", p, &T, &err);
    if (!rc) rc = pl_json_int(meta, "vocab", p, &V, &err);
    if (!rc && (T <= 0 || T > 4096 || V <= 0 || V > (1 << 20))) rc = pl_err_set(&err, PL_ERANGE, "%s: T %lld vocab %lld", p, (long long)T, (long long)V);
    if (rc) cJSON_Delete(meta);
    REQUIRE(rc == 0, "%s", err.msg);
    int32_t *ids = (int32_t *)read_raw(dir, "ids.i32", (size_t)T, &err);
    if (!ids) cJSON_Delete(meta);
    REQUIRE(ids != NULL, "%s", err.msg);

    const cJSON *vars = cJSON_GetObjectItemCaseSensitive(meta, "variants");
    int nvar = cJSON_IsArray(vars) ? cJSON_GetArraySize(vars) : 0;
    CHECK(nvar == 6, "%s: %d variants, expected 6", p, nvar);
    int seen_q8 = 0, seen_f16 = 0, seen_qwen = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, vars) {
        variant vr = {0};
        if (pl_json_str(v, "name", p, &vr.name, &err) || pl_json_str(v, "file", p, &vr.file, &err) ||
            pl_json_str(v, "arch", p, &vr.arch, &err) || pl_json_str(v, "type", p, &vr.type, &err) ||
            pl_json_str(v, "logits", p, &vr.logits, &err) || pl_json_bool(v, "tied", p, &vr.tied, &err) ||
            pl_json_bool(v, "qkv_bias", p, &vr.qkv_bias, &err) || pl_json_int(v, "n_heads", p, &vr.n_heads, &err) ||
            pl_json_int(v, "n_kv_heads", p, &vr.n_kv_heads, &err)) {
            CHECK(0, "%s", err.msg);
            continue;
        }
        seen_q8 += !strcmp(vr.type, "Q8_0");
        seen_f16 += !strcmp(vr.type, "F16");
        seen_qwen += !strcmp(vr.arch, "qwen2");
        check_variant(dir, &vr, ids, (int)T, (int)V);
    }
    CHECK(seen_q8 == 2 && seen_f16 == 1 && seen_qwen == 2, "variants: %d Q8_0, %d F16, %d qwen2", seen_q8, seen_f16, seen_qwen);

    const cJSON *fx = cJSON_GetObjectItemCaseSensitive(meta, "fixture");
    CHECK(cJSON_IsObject(fx), "%s: no fixture entry", p);
    if (cJSON_IsObject(fx)) check_fixture(shared, dir, fx, p);

    cJSON_Delete(meta);
    free(ids);
    return check_summary("test_model_gguf");
}
