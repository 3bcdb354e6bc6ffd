/* test_export.c: the GGUF writer and the merged-model exports.
 *
 * - GGUF writer: a file with every value type (scalars, strings, numeric and
 *   string arrays, replaced and removed keys) and F32/F16/Q8_0/I32 tensors of
 *   odd sizes reads back through core/gguf.h with the same values, bytes and
 *   32-byte-aligned offsets; bad tensors are refused with a message.
 * - Tiny HF Llama (llama3 rope scaling, untied) and Qwen2 (biases, tied) from
 *   $POTLUCK_REFS/hf_tiny, merged with a hand-built nonzero LoRA (r 4 on
 *   q,k,v,o,gate,up,down): the merged Hugging Face export (F32) reloaded by
 *   potluck gives bit-identical logits, BF16 close ones; the GGUF export (F32)
 *   reloaded gives the same logits (Q/K interleave re-applied for llama and
 *   undone by the loader; none for qwen2); F16 within fp16 rounding.
 * - With POTLUCK_EXPORT_DIR set (tests/cli_export.sh), the exports, the
 *   merged logits and the round-trip GGUF stay there for the peers, and when
 *   the peers' results are already there (tf_logits.f32 from transformers,
 *   gguf_py.json from gguf-py) they are compared. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/gguf.h"
#include "core/atomic.h"
#include "core/gguf_write.h"
#include "core/half.h"
#include "core/json.h"
#include "core/mapfile.h"
#include "core/quant.h"
#include "core/sha256.h"
#include "trainer/model_lora.h"
#include "cli/cmd_export.h"
#include "trainer/export.h"
#include "trainer/model.h"

static uint64_t rng_state = 88172645463325252ull;
static float urand(float a) { /* U(-a, a), xorshift64 */
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return a * (2.0f * (float)((rng_state >> 11) * (1.0 / 9007199254740992.0)) - 1.0f);
}

/* ------------------------------------------------------------ GGUF writer */

static void gguf_roundtrip(const char *dir) {
    pl_err err = {0};
    pl_gguf_writer *w = pl_gguf_writer_new();
    uint8_t u8 = 200; int8_t i8 = -100; uint16_t u16 = 60000; int16_t i16 = -30000;
    int64_t i64 = -5000000000ll; double f64 = 3.141592653589793;
    int rc = pl_gguf_set_scalar(w, "t.u8", PL_GGUF_UINT8, &u8, &err) |
             pl_gguf_set_scalar(w, "t.i8", PL_GGUF_INT8, &i8, &err) |
             pl_gguf_set_scalar(w, "t.u16", PL_GGUF_UINT16, &u16, &err) |
             pl_gguf_set_scalar(w, "t.i16", PL_GGUF_INT16, &i16, &err) |
             pl_gguf_set_u32(w, "t.u32", 4000000000u, &err) | pl_gguf_set_i32(w, "t.i32", -7, &err) |
             pl_gguf_set_f32(w, "t.f32", 0.5f, &err) | pl_gguf_set_bool(w, "t.bool", 1, &err) |
             pl_gguf_set_str(w, "t.str", "héllo", &err) | pl_gguf_set_u64(w, "t.u64", 1ull << 40, &err) |
             pl_gguf_set_scalar(w, "t.i64", PL_GGUF_INT64, &i64, &err) |
             pl_gguf_set_scalar(w, "t.f64", PL_GGUF_FLOAT64, &f64, &err) |
             pl_gguf_set_str(w, "t.empty", "", &err) | pl_gguf_set_u32(w, "t.replaced", 1, &err) |
             pl_gguf_set_u32(w, "t.removed", 9, &err);
    int32_t arr[5] = {1, -2, 3, -4, 5};
    float farr[3] = {1.5f, -2.5f, 1e-3f};
    const char *strs[4] = {"a", "", "<|im_start|>", "\xe2\x96\x81the"};
    rc |= pl_gguf_set_arr(w, "t.arr_i32", PL_GGUF_INT32, arr, 5, &err);
    rc |= pl_gguf_set_arr(w, "t.arr_f32", PL_GGUF_FLOAT32, farr, 3, &err);
    rc |= pl_gguf_set_arr(w, "t.arr_empty", PL_GGUF_UINT8, NULL, 0, &err);
    rc |= pl_gguf_set_arr_str(w, "t.arr_str", strs, NULL, 4, &err);
    rc |= pl_gguf_set_str(w, "t.replaced", "now a string", &err);
    pl_gguf_unset(w, "t.removed");
    CHECK(rc == 0, "setting keys: %s", err.msg);
    /* tensors: F32 (7), F16 (3 x 5), Q8_0 (64 x 3), I32 (2 x 2 x 2) */
    float f32[7], f16src[15], q8src[192];
    uint16_t f16[15];
    pl_block_q8_0 q8[6];
    int32_t i32[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    for (int i = 0; i < 7; i++) f32[i] = urand(3);
    for (int i = 0; i < 15; i++) { f16src[i] = urand(2); f16[i] = pl_f32_to_f16(f16src[i]); }
    for (int i = 0; i < 192; i++) q8src[i] = urand(1);
    pl_quantize_row_q8_0(q8src, q8, 192);
    int64_t ne_a[1] = {7}, ne_b[2] = {5, 3}, ne_c[2] = {64, 3}, ne_d[3] = {2, 2, 2};
    rc = pl_gguf_add_tensor(w, "a.f32", PL_F32, 1, ne_a, f32, &err);
    rc |= pl_gguf_add_tensor(w, "b.f16", PL_F16, 2, ne_b, f16, &err);
    rc |= pl_gguf_add_tensor(w, "c.q8_0", PL_Q8_0, 2, ne_c, q8, &err);
    rc |= pl_gguf_add_tensor(w, "d.i32", PL_I32, 3, ne_d, i32, &err);
    CHECK(rc == 0, "adding tensors: %s", err.msg);
    /* refusals */
    int64_t bad[2] = {33, 2};
    CHECK(pl_gguf_add_tensor(w, "bad", PL_Q8_0, 2, bad, q8, &err) == PL_EINVAL && strstr(err.msg, "bad"),
          "Q8_0 with 33 columns should be refused: %s", err.msg);
    CHECK(pl_gguf_add_tensor(w, "a.f32", PL_F32, 1, ne_a, f32, &err) == PL_EINVAL && strstr(err.msg, "twice"),
          "duplicate tensor should be refused: %s", err.msg);
    CHECK(pl_gguf_add_tensor(w, "nf4", PL_NF4, 1, ne_a, f32, &err) == PL_EUNSUPPORTED, "NF4 should be refused");
    CHECK(pl_gguf_add_tensor(w, "five", PL_F32, 5, ne_a, f32, &err) == PL_EINVAL, "5 dims should be refused");
    char path[4096];
    snprintf(path, sizeof path, "%s/roundtrip.gguf", dir);
    rc = pl_gguf_writer_write(w, path, &err);
    CHECK(rc == 0, "write: %s", err.msg);
    pl_gguf_writer_free(w);
    pl_gguf *g = NULL;
    rc = pl_gguf_open(&g, path, &err);
    CHECK(rc == 0, "reading back: %s", err.msg);
    if (rc) return;
    CHECK(g->version == 3 && g->n_kv == 18 && g->n_tensors == 4, "version %u, %llu keys, %llu tensors", g->version,
          (unsigned long long)g->n_kv, (unsigned long long)g->n_tensors);
    uint32_t u; int64_t v; float f; int b; char *s = NULL;
    CHECK(!pl_gguf_get_u32(g, "t.u8", &u, &err) && u == 200, "u8");
    CHECK(!pl_gguf_get_i64(g, "t.i8", &v, &err) && v == -100, "i8");
    CHECK(!pl_gguf_get_u32(g, "t.u16", &u, &err) && u == 60000, "u16");
    CHECK(!pl_gguf_get_i64(g, "t.i16", &v, &err) && v == -30000, "i16");
    CHECK(!pl_gguf_get_u32(g, "t.u32", &u, &err) && u == 4000000000u, "u32");
    CHECK(!pl_gguf_get_i64(g, "t.i32", &v, &err) && v == -7, "i32");
    CHECK(!pl_gguf_get_f32(g, "t.f32", &f, &err) && f == 0.5f, "f32");
    CHECK(!pl_gguf_get_bool(g, "t.bool", &b, &err) && b == 1, "bool");
    CHECK(!pl_gguf_get_i64(g, "t.u64", &v, &err) && v == (1ll << 40), "u64");
    CHECK(!pl_gguf_get_i64(g, "t.i64", &v, &err) && v == -5000000000ll, "i64");
    CHECK(!pl_gguf_get_f32(g, "t.f64", &f, &err) && f == (float)3.141592653589793, "f64");
    CHECK(!pl_gguf_get_str(g, "t.str", &s, &err) && !strcmp(s, "héllo"), "str");
    free(s); s = NULL;
    CHECK(!pl_gguf_get_str(g, "t.empty", &s, &err) && !strcmp(s, ""), "empty str");
    free(s); s = NULL;
    CHECK(!pl_gguf_get_str(g, "t.replaced", &s, &err) && !strcmp(s, "now a string"), "replaced key");
    free(s);
    CHECK(pl_gguf_get(g, "t.removed") == NULL, "removed key is absent");
    /* keys keep the order they were first set in */
    CHECK(g->kv[0].key.len == 4 && !memcmp(g->kv[0].key.ptr, "t.u8", 4), "first key is t.u8");
    const pl_gguf_kv *kv = pl_gguf_get(g, "t.arr_i32");
    CHECK(kv && kv->type == PL_GGUF_ARRAY && kv->arr_type == PL_GGUF_INT32 && kv->arr_len == 5 &&
              pl_gguf_arr_i64(kv, 3) == -4,
          "i32 array");
    kv = pl_gguf_get(g, "t.arr_f32");
    CHECK(kv && kv->arr_len == 3 && pl_gguf_arr_f64(kv, 1) == -2.5, "f32 array");
    kv = pl_gguf_get(g, "t.arr_empty");
    CHECK(kv && kv->arr_type == PL_GGUF_UINT8 && kv->arr_len == 0, "empty array");
    kv = pl_gguf_get(g, "t.arr_str");
    int sok = kv && kv->arr_type == PL_GGUF_STRING && kv->arr_len == 4;
    for (int i = 0; sok && i < 4; i++)
        sok = kv->strs[i].len == strlen(strs[i]) && !memcmp(kv->strs[i].ptr, strs[i], strlen(strs[i]));
    CHECK(sok, "string array");
    const pl_gguf_tensor *t = pl_gguf_find_tensor(g, "a.f32");
    CHECK(t && t->type == PL_F32 && t->n_dims == 1 && t->ne[0] == 7 && !memcmp(t->data, f32, sizeof f32), "a.f32");
    t = pl_gguf_find_tensor(g, "b.f16");
    CHECK(t && t->type == PL_F16 && t->ne[0] == 5 && t->ne[1] == 3 && !memcmp(t->data, f16, sizeof f16), "b.f16");
    t = pl_gguf_find_tensor(g, "c.q8_0");
    CHECK(t && t->type == PL_Q8_0 && t->ne[0] == 64 && t->nbytes == sizeof q8 && !memcmp(t->data, q8, sizeof q8),
          "c.q8_0");
    t = pl_gguf_find_tensor(g, "d.i32");
    CHECK(t && t->type == PL_I32 && t->n_dims == 3 && t->ne[2] == 2 && !memcmp(t->data, i32, sizeof i32), "d.i32");
    int aligned = 1;
    for (uint64_t i = 0; i < g->n_tensors; i++) aligned &= g->tensors[i].offset % 32 == 0;
    CHECK(aligned && g->data_offset % 32 == 0, "offsets are 32-byte aligned");
    pl_gguf_close(g);

    /* an unwritable path fails with a message and leaves nothing */
    w = pl_gguf_writer_new();
    pl_gguf_set_u32(w, "x", 1, &err);
    snprintf(path, sizeof path, "%s/no/such/dir/x.gguf", dir);
    CHECK(pl_gguf_writer_write(w, path, &err) != 0 && strstr(err.msg, "x.gguf"), "write to a missing dir: %s",
          err.msg);
    pl_gguf_writer_free(w);
}

/* gguf-py's view of roundtrip.gguf (tests/interop/export_check.py). */
static void gguf_py_compare(const char *dir) {
    char p[4096];
    snprintf(p, sizeof p, "%s/gguf_py.json", dir);
    if (access(p, F_OK)) return;
    pl_err err = {0};
    cJSON *j = NULL;
    if (pl_json_load(p, 1 << 24, &j, &err)) { CHECK(0, "%s", err.msg); return; }
    const cJSON *fields = cJSON_GetObjectItem(j, "fields"), *tensors = cJSON_GetObjectItem(j, "tensors");
    const cJSON *x;
    CHECK((x = cJSON_GetObjectItem(fields, "t.u16")) && x->valuedouble == 60000, "gguf-py t.u16");
    CHECK((x = cJSON_GetObjectItem(fields, "t.i64")) && x->valuedouble == -5000000000.0, "gguf-py t.i64");
    CHECK((x = cJSON_GetObjectItem(fields, "t.str")) && cJSON_IsString(x) && !strcmp(x->valuestring, "héllo"),
          "gguf-py t.str");
    CHECK((x = cJSON_GetObjectItem(fields, "t.replaced")) && cJSON_IsString(x) &&
              !strcmp(x->valuestring, "now a string"),
          "gguf-py t.replaced");
    x = cJSON_GetObjectItem(fields, "t.arr_str");
    CHECK(x && cJSON_GetArraySize(x) == 4 && !strcmp(cJSON_GetArrayItem(x, 2)->valuestring, "<|im_start|>") &&
              !strcmp(cJSON_GetArrayItem(x, 1)->valuestring, ""),
          "gguf-py string array");
    x = cJSON_GetObjectItem(fields, "t.arr_i32");
    CHECK(x && cJSON_GetArraySize(x) == 5 && cJSON_GetArrayItem(x, 3)->valuedouble == -4, "gguf-py i32 array");
    CHECK(!cJSON_GetObjectItem(fields, "t.removed") && cJSON_GetArraySize(fields) == 18, "gguf-py sees 18 fields");
    /* tensors: name, type, shape and the sha256 of the bytes gguf-py reads */
    pl_gguf *g = NULL;
    snprintf(p, sizeof p, "%s/roundtrip.gguf", dir);
    if (pl_gguf_open(&g, p, &err)) { CHECK(0, "%s", err.msg); cJSON_Delete(j); return; }
    CHECK(cJSON_GetArraySize(tensors) == 4, "gguf-py sees 4 tensors");
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const pl_gguf_tensor *t = &g->tensors[i];
        const cJSON *e = cJSON_GetObjectItem(tensors, t->name);
        char hex[65];
        uint8_t h[32];
        pl_sha256_buf(t->data, t->nbytes, h);
        pl_sha256_hex(h, hex);
        const cJSON *sh = cJSON_GetObjectItem(e, "sha256"), *ty = cJSON_GetObjectItem(e, "type");
        CHECK(e && sh && !strcmp(sh->valuestring, hex) && ty && (int)ty->valuedouble == (int)t->type &&
                  cJSON_GetArraySize(cJSON_GetObjectItem(e, "shape")) == t->n_dims,
              "gguf-py tensor %s: type/shape/bytes differ", t->name);
    }
    pl_gguf_close(g);
    cJSON_Delete(j);
    printf("note: gguf-py read roundtrip.gguf: 18 fields and 4 tensors match\n");
}

/* ------------------------------------------------------------ tiny models */

/* A hand-built LoRA on every linear layer: A (r, in), B (out, r), nonzero. */
static pl_lora *make_lora(const pl_model *m, int r, float alpha) {
    pl_lora *l = calloc(1, sizeof *l);
    l->cfg = (pl_lora_cfg){.r = r, .alpha = alpha, .targets = PL_LORA_ALL_LINEAR, .seed = 7};
    l->n = m->cfg.n_layers * 7;
    l->mods = calloc((size_t)l->n, sizeof *l->mods);
    for (int layer = 0, k = 0; layer < m->cfg.n_layers; layer++) {
        const pl_layer *L = &m->layers[layer];
        const pl_qweight *ws[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int wi = 0; wi < 7; wi++, k++) {
            pl_lora_module *md = &l->mods[k];
            md->layer = layer;
            md->which = (pl_lin)wi;
            md->r = r;
            md->in = (int)ws[wi]->cols;
            md->out = (int)ws[wi]->rows;
            md->scale = alpha / (float)r;
            md->A = malloc(sizeof(float) * (size_t)r * md->in);
            md->B = malloc(sizeof(float) * (size_t)r * md->out);
            for (int i = 0; i < r * md->in; i++) md->A[i] = urand(1.0f / sqrtf((float)md->in));
            for (int i = 0; i < r * md->out; i++) md->B[i] = urand(0.05f);
        }
    }
    return l;
}

static void free_lora(pl_lora *l) {
    for (int i = 0; i < l->n; i++) { free(l->mods[i].A); free(l->mods[i].B); }
    free(l->mods);
    free(l);
}

/* W += scale * B . A on the model's (writable fp32) weights: the test's own
 * merge, independent of pl_lora_merge (trainer/model_lora.c). */
static void merge(pl_model *m, const pl_lora *l) {
    for (int k = 0; k < l->n; k++) {
        const pl_lora_module *md = &l->mods[k];
        pl_layer *L = &m->layers[md->layer];
        pl_qweight *ws[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        float *W = (float *)ws[md->which]->data;
        for (int o = 0; o < md->out; o++)
            for (int i = 0; i < md->in; i++) {
                float s = 0;
                for (int j = 0; j < md->r; j++) s += md->B[(size_t)o * md->r + j] * md->A[(size_t)j * md->in + i];
                W[(size_t)o * md->in + i] += md->scale * s;
            }
    }
}

static float *logits_of(const char *path, const int32_t *ids, int T, int *V, pl_err *err) {
    pl_model *m = NULL;
    if (pl_model_load(&m, path, NULL, err)) return NULL;
    *V = m->cfg.vocab;
    float *lg = malloc(sizeof(float) * (size_t)T * *V);
    if (pl_model_forward(m, ids, NULL, NULL, T, lg, err)) { free(lg); lg = NULL; }
    pl_model_free(m);
    return lg;
}

static int write_raw(const char *dir, const char *name, const void *p, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    pl_err err = {0};
    return pl_write_file_atomic(path, p, n, &err);
}

static void tiny_model(const char *refs, const char *name, const char *tok_gguf, const char *dir) {
    char p[8192], out[4096];
    snprintf(p, sizeof p, "%s/hf_tiny/%s/ids.i32", refs, name);
    pl_err err = {0};
    char *idb = NULL;
    size_t idn = 0;
    if (pl_read_file(p, 1 << 20, &idb, &idn, &err)) { CHECK(0, "%s", err.msg); return; }
    const int32_t *ids = (const int32_t *)idb;
    int T = (int)(idn / 4);
    snprintf(p, sizeof p, "%s/hf_tiny/%s", refs, name);
    pl_model *m = NULL;
    int rc = pl_model_load(&m, p, NULL, &err);
    CHECK(rc == 0, "%s: load: %s", name, err.msg);
    if (rc) { free(idb); return; }
    int V = m->cfg.vocab;
    float *base = malloc(sizeof(float) * (size_t)T * V), *merged = malloc(sizeof(float) * (size_t)T * V);
    CHECK(!pl_model_forward(m, ids, NULL, NULL, T, base, &err), "%s: forward: %s", name, err.msg);
    CHECK(!pl_export_writable(m, &err), "%s: writable: %s", name, err.msg);
    pl_lora *l = make_lora(m, 4, 8.0f);
    /* the PEFT export of the adapter (lora/lora.c), for peft in tests/cli_export.sh */
    snprintf(out, sizeof out, "%s/%s_adapter", dir, name);
    CHECK(pl_lora_save_peft(l, m, out, p, &err) == 0, "%s: save PEFT: %s", name, err.msg);
    pl_lora *back = NULL;
    CHECK(pl_lora_load_peft(&back, m, out, &err) == 0, "%s: load PEFT: %s", name, err.msg);
    if (back) {
        int same = back->n == l->n;
        for (int k = 0; same && k < l->n; k++)
            same = !memcmp(back->mods[k].A, l->mods[k].A, sizeof(float) * 4 * l->mods[k].in) &&
                   !memcmp(back->mods[k].B, l->mods[k].B, sizeof(float) * 4 * l->mods[k].out) &&
                   back->mods[k].scale == l->mods[k].scale;
        CHECK(same, "%s: PEFT adapter round trip changed A/B/scale", name);
        pl_lora_free(back);
    }
    merge(m, l);
    free_lora(l);
    CHECK(!pl_model_forward(m, ids, NULL, NULL, T, merged, &err), "%s: merged forward: %s", name, err.msg);
    double dl = check_max_abs(base, merged, (size_t)T * V);
    CHECK(dl > 1e-2, "%s: the adapter should change the logits (max diff %g)", name, dl);

    /* Hugging Face F32: bit-identical after reloading */
    snprintf(out, sizeof out, "%s/%s_merged", dir, name);
    pl_export_hf_opts ho = {.dtype = PL_F32, .note = "test adapter merged"};
    rc = pl_export_hf(m, out, &ho, &err);
    CHECK(rc == 0, "%s: HF export: %s", name, err.msg);
    int V2 = 0;
    float *lg = rc ? NULL : logits_of(out, ids, T, &V2, &err);
    CHECK(lg && V2 == V, "%s: reload HF export: %s", name, err.msg);
    if (lg) {
        double d = check_max_abs(lg, merged, (size_t)T * V);
        CHECK(d == 0, "%s: HF F32 export reloaded: logits differ by %g", name, d);
        printf("note: %s: merged HF F32 export reloaded by potluck: max abs logit diff %g (adapter moved logits by %g)\n",
               name, d, dl);
    }
    free(lg);
    snprintf(p, sizeof p, "%s/config.json", out);
    cJSON *cj = NULL;
    CHECK(!pl_json_load(p, 1 << 20, &cj, &err), "%s: %s", name, err.msg);
    if (cj) {
        const cJSON *a = cJSON_GetObjectItem(cj, "architectures");
        CHECK(a && cJSON_GetArraySize(a) == 1, "%s: architectures", name);
        CHECK(cJSON_IsTrue(cJSON_GetObjectItem(cj, "tie_word_embeddings")) == !!m->cfg.tied_embeddings,
              "%s: tie_word_embeddings", name);
        const cJSON *rs = cJSON_GetObjectItem(cj, "rope_scaling");
        CHECK(m->cfg.rope_llama3 ? cJSON_IsObject(rs) && cJSON_GetObjectItem(rs, "factor")->valuedouble == 8
                                 : cJSON_IsNull(rs),
              "%s: rope_scaling", name);
        cJSON_Delete(cj);
    }
    snprintf(p, sizeof p, "%s/README.txt", out);
    CHECK(access(p, F_OK) == 0, "%s: README.txt", name);

    /* BF16 and sharded */
    snprintf(out, sizeof out, "%s/%s_bf16", dir, name);
    pl_export_hf_opts hb = {.dtype = PL_BF16, .max_shard_bytes = 20000};
    rc = pl_export_hf(m, out, &hb, &err);
    CHECK(rc == 0, "%s: HF BF16 export: %s", name, err.msg);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", out);
    CHECK(rc || access(p, F_OK) == 0, "%s: sharded export has an index", name);
    lg = rc ? NULL : logits_of(out, ids, T, &V2, &err);
    CHECK(lg != NULL, "%s: reload BF16: %s", name, err.msg);
    if (lg) {
        double d = check_max_abs(lg, merged, (size_t)T * V);
        CHECK(d < 0.1 * (dl > 1 ? dl : 1), "%s: BF16 export: logits differ by %g", name, d);
        printf("note: %s: BF16 sharded export: max abs logit diff %g\n", name, d);
    }
    free(lg);

    /* GGUF F32: exact after the Q/K permutation round trip; F16 close */
    pl_gguf *tok = NULL;
    CHECK(!pl_gguf_open(&tok, tok_gguf, &err), "%s", err.msg);
    pl_export_gguf_opts go = {.ftype = PL_FTYPE_F32, .tok_src = tok};
    snprintf(out, sizeof out, "%s/%s_f32.gguf", dir, name);
    rc = tok ? pl_export_gguf(m, out, &go, &err) : -1;
    CHECK(rc == 0, "%s: GGUF export: %s", name, err.msg);
    lg = rc ? NULL : logits_of(out, ids, T, &V2, &err);
    CHECK(lg != NULL, "%s: reload GGUF: %s", name, err.msg);
    if (lg) {
        double d = check_max_abs(lg, merged, (size_t)T * V);
        CHECK(d <= 1e-5, "%s: GGUF F32 export reloaded: logits differ by %g", name, d);
        printf("note: %s: GGUF F32 export reloaded: max abs logit diff %g\n", name, d);
    }
    free(lg);
    go.ftype = PL_FTYPE_F16;
    snprintf(out, sizeof out, "%s/%s_f16.gguf", dir, name);
    rc = tok ? pl_export_gguf(m, out, &go, &err) : -1;
    CHECK(rc == 0, "%s: GGUF F16 export: %s", name, err.msg);
    lg = rc ? NULL : logits_of(out, ids, T, &V2, &err);
    if (lg) {
        double d = check_max_abs(lg, merged, (size_t)T * V);
        CHECK(d < 0.05 * (dl > 1 ? dl : 1), "%s: GGUF F16: logits differ by %g", name, d);
        printf("note: %s: GGUF F16 export reloaded: max abs logit diff %g\n", name, d);
    } else CHECK(0, "%s: reload F16 GGUF: %s", name, err.msg);
    free(lg);
    if (tok) {
        pl_gguf *g = NULL;
        CHECK(!pl_gguf_open(&g, out, &err), "%s", err.msg);
        if (g) {
            char *arch = NULL;
            uint32_t ft = 99;
            CHECK(!pl_gguf_get_str(g, "general.architecture", &arch, &err) &&
                      !strcmp(arch, m->cfg.arch == PL_ARCH_QWEN2 ? "qwen2" : "llama"),
                  "%s: general.architecture", name);
            free(arch);
            CHECK(!pl_gguf_get_u32(g, "general.file_type", &ft, &err) && ft == 1, "%s: file_type", name);
            CHECK(pl_gguf_get(g, "tokenizer.ggml.tokens") && pl_gguf_get(g, "tokenizer.ggml.model"),
                  "%s: tokenizer keys copied", name);
            CHECK((pl_gguf_find_tensor(g, "output.weight") == NULL) == !!m->cfg.tied_embeddings, "%s: output.weight",
                  name);
            CHECK((pl_gguf_find_tensor(g, "rope_freqs.weight") != NULL) == !!m->cfg.rope_llama3,
                  "%s: rope_freqs.weight", name);
            pl_gguf_close(g);
        }
    }
    pl_gguf_close(tok);
    /* a GGUF export needs a tokenizer source */
    snprintf(out, sizeof out, "%s/%s_notok.gguf", dir, name);
    CHECK(pl_export_gguf(m, out, NULL, &err) == PL_EUNSUPPORTED && strstr(err.msg, "tokenizer"),
          "%s: GGUF without tokenizer source: %s", name, err.msg);

    /* the commands: import checks the adapter and starts a run dir; export
     * from that run dir gives the same merged model as the library calls */
    {
        char ad[4200], run[4200], mdir[8400], bdir[4200], ex[4200], gg[4200], pf[4200];
        snprintf(ad, sizeof ad, "%s/%s_adapter", dir, name);
        snprintf(run, sizeof run, "%s/%s_run", dir, name);
        snprintf(bdir, sizeof bdir, "%s/hf_tiny/%s", refs, name);
        snprintf(ex, sizeof ex, "%s/%s_cmd_merged", dir, name);
        snprintf(gg, sizeof gg, "%s/%s_cmd.gguf", dir, name);
        snprintf(pf, sizeof pf, "%s/%s_cmd_peft", dir, name);
        char *a1[] = {"import", "--peft", ad, "--model", bdir, "--out", run};
        CHECK(cmd_import(7, a1) == 0, "%s: potluck import", name);
        char *a2[] = {"export", run, "--format", "merged", "--out", ex};
        CHECK(cmd_export(6, a2) == 0, "%s: potluck export --format merged", name);
        int V3 = 0;
        lg = logits_of(ex, ids, T, &V3, &err);
        CHECK(lg && check_max_abs(lg, merged, (size_t)T * V) <= 1e-5, "%s: potluck export RUN_DIR merged: %s", name,
              lg ? "logits differ" : err.msg);
        free(lg);
        char *a3[] = {"export", "--adapter", ad, "--model", bdir, "--format", "gguf", "--type", "f32",
                      "--tokenizer-gguf", (char *)tok_gguf, "--out", gg};
        CHECK(cmd_export(13, a3) == 0, "%s: potluck export --format gguf", name);
        lg = logits_of(gg, ids, T, &V3, &err);
        CHECK(lg && check_max_abs(lg, merged, (size_t)T * V) <= 1e-5, "%s: potluck export gguf: %s", name,
              lg ? "logits differ" : err.msg);
        free(lg);
        char *a4[] = {"export", run, "--format", "peft", "--out", pf};
        CHECK(cmd_export(6, a4) == 0, "%s: potluck export --format peft", name);
        snprintf(mdir, sizeof mdir, "%s/adapter_model.safetensors", pf);
        CHECK(access(mdir, F_OK) == 0, "%s: peft export wrote %s", name, mdir);
        char *a5[] = {"import", "--peft", bdir, "--model", bdir};
        CHECK(cmd_import(5, a5) != 0, "%s: import of a directory without an adapter must fail", name);
        char *a6[] = {"export", "--adapter", ad, "--model", bdir, "--format", "gguf", "--out", gg};
        CHECK(cmd_export(9, a6) != 0, "%s: GGUF export of an HF base without --tokenizer-gguf must fail", name);
    }

    /* peers' side (tests/cli_export.sh) */
    write_raw(dir, name[0] == 'l' ? "llama_merged_logits.f32" : "qwen2_merged_logits.f32", merged,
              sizeof(float) * (size_t)T * V);
    snprintf(p, sizeof p, "%s/%s_peft_logits.f32", dir, name);
    if (access(p, F_OK) == 0) {
        char *tf = NULL;
        size_t n = 0;
        CHECK(!pl_read_file(p, 1 << 26, &tf, &n, &err) && n == sizeof(float) * (size_t)T * V, "%s: %s", name, err.msg);
        if (n == sizeof(float) * (size_t)T * V) {
            double d = check_max_abs((float *)tf, merged, (size_t)T * V);
            CHECK(d <= 1e-4 * (dl > 1 ? dl : 1), "%s: peft with our adapter vs our merged model: logits differ by %g", name, d);
            printf("note: %s: peft loading our PEFT adapter on the base vs potluck's merged model: max abs logit diff %g\n", name, d);
        }
        free(tf);
    }
    snprintf(p, sizeof p, "%s/%s_tf_logits.f32", dir, name);
    if (access(p, F_OK) == 0) {
        char *tf = NULL;
        size_t n = 0;
        CHECK(!pl_read_file(p, 1 << 26, &tf, &n, &err) && n == sizeof(float) * (size_t)T * V, "%s: %s", name, err.msg);
        if (n == sizeof(float) * (size_t)T * V) {
            double d = check_max_abs((float *)tf, merged, (size_t)T * V);
            CHECK(d <= 1e-4 * (dl > 1 ? dl : 1), "%s: transformers on our merged export: logits differ by %g", name, d);
            printf("note: %s: transformers loading our merged export: max abs logit diff %g\n", name, d);
        }
        free(tf);
    }
    free(base);
    free(merged);
    free(idb);
    pl_model_free(m);
}

int main(void) {
    const char *refs = check_env("POTLUCK_REFS");
    const char *shared = check_env("POTLUCK_SHARED");
    const char *keep = getenv("POTLUCK_EXPORT_DIR");
    char tmpl[] = "/tmp/pl_export_XXXXXX";
    const char *dir = keep && *keep ? keep : mkdtemp(tmpl);
    REQUIRE(dir != NULL, "mkdtemp");
    gguf_roundtrip(dir);
    gguf_py_compare(dir);
    char tok[4096];
    snprintf(tok, sizeof tok, "%s/fixtures/gguf-tiny-llama/llama-2-tiny-random.gguf", shared);
    tiny_model(refs, "llama", tok, dir);
    tiny_model(refs, "qwen2", tok, dir);
    if (!(keep && *keep)) {
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        CHECK(system(cmd) == 0, "cleanup");
    }
    return check_summary("test_export");
}
