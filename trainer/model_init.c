/* model_init.c: random models of any shape as Hugging Face directories (model_init.h). */
#include "../core/gguf.h"
#include "../datasets/tokenizer.h"
#include "../datasets/tokenizer_hf_write.h"
#include "model_init.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/atomic.h"
#include "../core/half.h"
#include "../core/json.h"
#include "../core/rng.h"
#include "../core/safetensors.h"
#include "../lora/nf4.h"
#include "export.h"
#include "model_int.h"

#define INIT_STD PL_INIT_STD
#define NF4_BLOCK PL_INIT_NF4_BLOCK

typedef pl_init_tensor tspec;

/* Storage of one shard's tensors until its file is written. */
typedef struct held {
    void **p;
    pl_nf4 *q;
    int np, nq, capp, capq;
} held;

static void *hold(held *h, size_t bytes) {
    if (h->np == h->capp) {
        int cap = h->capp ? 2 * h->capp : 64;
        void **np = realloc(h->p, (size_t)cap * sizeof *np);
        if (!np) return NULL;
        h->p = np;
        h->capp = cap;
    }
    void *p = malloc(bytes ? bytes : 1);
    if (p) h->p[h->np++] = p;
    return p;
}

static pl_nf4 *hold_nf4(held *h) {
    if (h->nq == h->capq) {
        int cap = h->capq ? 2 * h->capq : 16;
        pl_nf4 *nq = realloc(h->q, (size_t)cap * sizeof *nq);
        if (!nq) return NULL;
        h->q = nq;
        h->capq = cap;
    }
    pl_nf4 *q = &h->q[h->nq++];
    memset(q, 0, sizeof *q);
    return q;
}

static void release(held *h) {
    for (int i = 0; i < h->np; i++) free(h->p[i]);
    for (int i = 0; i < h->nq; i++) pl_nf4_free(&h->q[i]);
    free(h->p);
    free(h->q);
    memset(h, 0, sizeof *h);
}

void pl_model_init_normal(float *x, int64_t n, uint64_t seed, uint64_t stream) {
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (int64_t i = 0; i < n; i++) x[i] = INIT_STD * pl_rng_normal(seed, stream, (uint64_t)i);
}

int pl_model_init_bf16(uint16_t *d, int64_t n, uint64_t seed, uint64_t stream) {
    /* in chunks: never a whole fp32 copy of a large table */
    const int64_t chunk = (int64_t)1 << 22;
    float *x = malloc((size_t)(n < chunk ? n : chunk) * sizeof(float));
    if (!x) return -1;
    for (int64_t o = 0; o < n; o += chunk) {
        int64_t m = n - o < chunk ? n - o : chunk;
#pragma omp parallel for schedule(static) if (m >= 65536)
        for (int64_t i = 0; i < m; i++) x[i] = INIT_STD * pl_rng_normal(seed, stream, (uint64_t)(o + i));
        for (int64_t i = 0; i < m; i++) d[o + i] = pl_f32_to_bf16(x[i]);
    }
    free(x);
    return 0;
}

static size_t nf4_bytes(int64_t n, size_t json_len) {
    pl_nf4 shp;
    pl_nf4_shape(&shp, n, NF4_BLOCK, 1);
    return (size_t)(n + 1) / 2 + (size_t)shp.n_blocks + (size_t)shp.n_nested * 4 + 16 * 4 + 256 * 4 + json_len;
}

static int add_bf16(pl_st_writer *w, held *h, const tspec *t, uint64_t seed, pl_err *err) {
    int64_t n = t->cols ? t->rows * t->cols : t->rows;
    uint16_t *d = hold(h, (size_t)n * 2);
    if (!d) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", t->name);
    if (t->kind == PL_INIT_NORMAL) {
        if (pl_model_init_bf16(d, n, seed, t->stream)) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", t->name);
    } else {
        uint16_t v = t->kind == PL_INIT_ONES ? pl_f32_to_bf16(1.0f) : 0;
        for (int64_t i = 0; i < n; i++) d[i] = v;
    }
    int64_t shape[2] = {t->rows, t->cols};
    return pl_st_writer_add(w, t->name, PL_BF16, t->cols ? 2 : 1, shape, d, err);
}

static int add_nf4(pl_st_writer *w, held *h, const tspec *t, uint64_t seed, pl_err *err) {
    const int64_t n = t->rows * t->cols;
    float *x = malloc((size_t)n * sizeof(float));
    if (!x) return pl_err_set(err, PL_ENOMEM, "%s: out of memory for %lld values", t->name, (long long)n);
    pl_model_init_normal(x, n, seed, t->stream);
    pl_nf4 *q = hold_nf4(h);
    int rc = q ? pl_nf4_quantize(x, n, NF4_BLOCK, 1, q, err) : pl_err_set(err, PL_ENOMEM, "out of memory");
    free(x);
    if (rc) return rc;
    char js[512], nm[200];
    int jl = snprintf(js, sizeof js,
                      "{\"quant_type\": \"nf4\", \"blocksize\": %d, \"dtype\": \"bfloat16\", \"shape\": [%lld, %lld], "
                      "\"nested_blocksize\": %d, \"nested_dtype\": \"float32\", \"nested_offset\": %.9g}",
                      NF4_BLOCK, (long long)t->rows, (long long)t->cols, PL_NF4_NESTED_BLOCK, (double)q->offset);
    /* the writer keeps pointers until the shard is written, and q moves when the array of
     * held pl_nf4 grows: copy what lives inside the struct (the nested code) out of it */
    char *jcopy = hold(h, (size_t)jl);
    float *qmap = hold(h, sizeof pl_nf4_code), *nmap = hold(h, sizeof q->code);
    if (!jcopy || !qmap || !nmap) return pl_err_set(err, PL_ENOMEM, "out of memory");
    memcpy(jcopy, js, (size_t)jl);
    memcpy(qmap, pl_nf4_code, sizeof pl_nf4_code);
    memcpy(nmap, q->code, sizeof q->code);
    int64_t s_packed[2] = {(n + 1) / 2, 1}, s_blocks = q->n_blocks, s_nested = q->n_nested, s16 = 16, s256 = 256,
            s_json = jl;
    if ((rc = pl_st_writer_add(w, t->name, PL_U8, 2, s_packed, q->packed, err))) return rc;
#define PART(suffix, dt, shp, data) \
    (snprintf(nm, sizeof nm, "%s.%s", t->name, suffix), pl_st_writer_add(w, nm, dt, 1, shp, data, err))
    if ((rc = PART("absmax", PL_U8, &s_blocks, q->absmax_q)) ||
        (rc = PART("quant_map", PL_F32, &s16, qmap)) ||
        (rc = PART("nested_absmax", PL_F32, &s_nested, q->nested_absmax)) ||
        (rc = PART("nested_quant_map", PL_F32, &s256, nmap)) ||
        (rc = PART("quant_state.bitsandbytes__nf4", PL_U8, &s_json, jcopy)))
        return rc;
#undef PART
    return 0;
}

pl_init_tensor *pl_model_init_tensors(const pl_model_config *c, int nf4, int *count) {
    const int64_t D = c->dim, H = c->hidden, V = c->vocab, qd = (int64_t)c->n_heads * c->head_dim,
                  kvd = (int64_t)c->n_kv_heads * c->head_dim;
    int cap = 16 + c->n_layers * 12, n = 0;
    tspec *t = calloc((size_t)cap, sizeof *t);
    if (!t) return NULL;
#define T(nm_fmt, layer_, r, cc, k, slot_) do { \
        tspec *s = &t[n]; snprintf(s->name, sizeof s->name, nm_fmt, layer_); s->rows = (r); s->cols = (cc); \
        s->kind = (k); s->layer = (layer_); s->slot = (slot_); s->stream = (uint64_t)n; \
        s->bytes = s->kind == PL_INIT_NF4 ? nf4_bytes(s->rows * s->cols, 200) \
                                          : (size_t)(s->cols ? s->rows * s->cols : s->rows) * 2; \
        n++; } while (0)
    const int lin = nf4 ? PL_INIT_NF4 : PL_INIT_NORMAL, N = PL_INIT_NORMAL, ONE = PL_INIT_ONES, Z = PL_INIT_ZEROS;
    T("model.embed_tokens.weight%.0d", 0, V, D, N, PL_INIT_EMBED);
    for (int l = 0; l < c->n_layers; l++) {
        T("model.layers.%d.input_layernorm.weight", l, D, 0, ONE, PL_INIT_ATTN_NORM);
        T("model.layers.%d.self_attn.q_proj.weight", l, qd, D, lin, PL_INIT_Q);
        T("model.layers.%d.self_attn.k_proj.weight", l, kvd, D, lin, PL_INIT_K);
        T("model.layers.%d.self_attn.v_proj.weight", l, kvd, D, lin, PL_INIT_V);
        if (c->qkv_bias) {
            T("model.layers.%d.self_attn.q_proj.bias", l, qd, 0, Z, PL_INIT_QB);
            T("model.layers.%d.self_attn.k_proj.bias", l, kvd, 0, Z, PL_INIT_KB);
            T("model.layers.%d.self_attn.v_proj.bias", l, kvd, 0, Z, PL_INIT_VB);
        }
        T("model.layers.%d.self_attn.o_proj.weight", l, D, qd, lin, PL_INIT_O);
        T("model.layers.%d.post_attention_layernorm.weight", l, D, 0, ONE, PL_INIT_FFN_NORM);
        T("model.layers.%d.mlp.gate_proj.weight", l, H, D, lin, PL_INIT_GATE);
        T("model.layers.%d.mlp.up_proj.weight", l, H, D, lin, PL_INIT_UP);
        T("model.layers.%d.mlp.down_proj.weight", l, D, H, lin, PL_INIT_DOWN);
    }
    T("model.norm.weight%.0d", 0, D, 0, ONE, PL_INIT_NORM);
    if (!c->tied_embeddings) T("lm_head.weight%.0d", 0, V, D, N, PL_INIT_HEAD);
#undef T
    *count = n;
    return t;
}

static int copy_file(const char *src, const char *dst, pl_err *err) {
    FILE *f = fopen(src, "rb");
    if (!f) return pl_err_set(err, PL_EIO, "%s: cannot open: %s", src, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    char tmp[65536];
    size_t r;
    while ((r = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if (len + r > cap) {
            size_t nc = cap ? cap * 2 : 1 << 20;
            while (nc < len + r) nc *= 2;
            char *nb = realloc(buf, nc);
            if (!nb) {
                free(buf);
                fclose(f);
                return pl_err_set(err, PL_ENOMEM, "%s: out of memory", src);
            }
            buf = nb;
            cap = nc;
        }
        memcpy(buf + len, tmp, r);
        len += r;
    }
    fclose(f);
    int rc = pl_write_file_atomic(dst, buf ? buf : "", len, err);
    free(buf);
    return rc;
}

static int copy_tokenizer(const char *from, const char *dir, pl_err *err) {
    struct stat st;
    if (stat(from, &st) != 0) return pl_err_set(err, PL_ENOTFOUND, "--tokenizer %s: %s", from, strerror(errno));
    char s[PATH_MAX + 64], d[PATH_MAX + 64];
    if (!S_ISDIR(st.st_mode)) {
        /* a GGUF: its vocabulary written as tokenizer files (byte-level BPE
         * vocabularies; others are refused, nothing copied) */
        FILE *f = fopen(from, "rb");
        char magic[4] = {0};
        size_t got = f ? fread(magic, 1, 4, f) : 0;
        if (f) fclose(f);
        if (got == 4 && !memcmp(magic, "GGUF", 4)) {
            pl_gguf *g = NULL;
            int rc = pl_gguf_open(&g, from, err);
            if (rc) return rc;
            pl_err e = {0};
            rc = pl_tokenizer_gguf_write_hf(g, dir, 0, &e);
            pl_gguf_close(g);
            if (rc)
                return pl_err_set(err, rc, "--tokenizer: %s (pass a folder with tokenizer.json, or a tokenizer.json)", e.msg);
            return 0;
        }
        size_t k = strlen(from);
        if (k < 5 || strcmp(from + k - 5, ".json"))
            return pl_err_set(err, PL_EINVAL, "--tokenizer %s: expected a folder with tokenizer files, a tokenizer.json or a GGUF",
                              from);
        snprintf(d, sizeof d, "%s/tokenizer.json", dir);
        return copy_file(from, d, err);
    }
    static const char *files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                  "tokenizer.model", "vocab.json", "merges.txt"};
    int copied = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(s, sizeof s, "%s/%s", from, files[i]);
        if (access(s, R_OK) != 0) continue;
        snprintf(d, sizeof d, "%s/%s", dir, files[i]);
        int rc = copy_file(s, d, err);
        if (rc) return rc;
        copied++;
    }
    if (!copied)
        return pl_err_set(err, PL_ENOTFOUND, "--tokenizer %s: no tokenizer.json, tokenizer.model or vocab.json there",
                          from);
    return 0;
}

int pl_model_init_random(const pl_model_config *c, const char *dir, const pl_model_init_opts *o, pl_err *err) {
    pl_model_init_opts def = {0};
    if (!o) o = &def;
    pl_model_config cc = *c;
    int rc = pl_model_check_config(&cc, "model init", err);
    if (rc) return rc;
    c = &cc;
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/config.json", dir);
    if (access(p, F_OK) == 0)
        return pl_err_set(err, PL_EINVAL, "%s already holds a model (config.json); choose a new --out", dir);
    if ((rc = pl_mkdirs(dir, err))) return rc;
    /* the tokenizer first: a --tokenizer it cannot use stops before gigabytes of weights are written */
    if (o->tokenizer && (rc = copy_tokenizer(o->tokenizer, dir, err))) return rc;
    if (o->tokenizer) {
        pl_tokenizer *tok = NULL;
        if ((rc = pl_tokenizer_load(&tok, dir, err))) return rc;
        int tv = pl_tokenizer_vocab(tok);
        pl_tokenizer_free(tok);
        if (tv > c->vocab)
            return pl_err_set(err, PL_EINVAL, "--tokenizer %s has %d tokens, more than the shape's vocab_size %d: "
                              "give a shape with vocab_size >= %d", o->tokenizer, tv, c->vocab, tv);
    }
    int nt = 0;
    tspec *ts = pl_model_init_tensors(c, o->nf4, &nt);
    if (!ts) return pl_err_set(err, PL_ENOMEM, "out of memory");
    const size_t shard_cap = o->shard_bytes ? o->shard_bytes : (size_t)2 << 30;
    /* shards: consecutive tensors up to shard_cap bytes (a larger tensor alone) */
    int *shard_of = malloc((size_t)nt * sizeof *shard_of);
    int n_shards = 0;
    int64_t total = 0;
    if (!shard_of) { free(ts); return pl_err_set(err, PL_ENOMEM, "out of memory"); }
    size_t cur = 0;
    for (int i = 0; i < nt; i++) {
        if (i == 0 || (cur > 0 && cur + ts[i].bytes > shard_cap)) {
            n_shards++;
            cur = 0;
        }
        shard_of[i] = n_shards - 1;
        cur += ts[i].bytes;
        total += (int64_t)ts[i].bytes;
    }
    cJSON *index = cJSON_CreateObject(), *wmap = NULL;
    if (index) {
        cJSON *meta = cJSON_AddObjectToObject(index, "metadata");
        cJSON_AddNumberToObject(meta, "total_size", (double)total);
        wmap = cJSON_AddObjectToObject(index, "weight_map");
    }
    int64_t done = 0;
    for (int s = 0, i = 0; s < n_shards && !rc; s++) {
        char file[64];
        if (n_shards == 1) snprintf(file, sizeof file, "model.safetensors");
        else snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
        pl_st_writer *w = pl_st_writer_new();
        held h = {0};
        if (!w) rc = pl_err_set(err, PL_ENOMEM, "out of memory");
        if (!rc) rc = pl_st_writer_meta(w, "format", "pt", err);
        for (; i < nt && shard_of[i] == s && !rc; i++) {
            rc = ts[i].kind == PL_INIT_NF4 ? add_nf4(w, &h, &ts[i], o->seed, err) : add_bf16(w, &h, &ts[i], o->seed, err);
            if (!rc && wmap) {
                cJSON_AddStringToObject(wmap, ts[i].name, file);
                if (ts[i].kind == PL_INIT_NF4) {
                    static const char *parts[] = {"absmax", "quant_map", "nested_absmax", "nested_quant_map",
                                                  "quant_state.bitsandbytes__nf4"};
                    for (int k = 0; k < 5; k++) {
                        char nm[200];
                        snprintf(nm, sizeof nm, "%s.%s", ts[i].name, parts[k]);
                        cJSON_AddStringToObject(wmap, nm, file);
                    }
                }
            }
            done += (int64_t)ts[i].bytes;
            if (!rc && o->progress) o->progress(o->user, done, total);
        }
        if (!rc) {
            snprintf(p, sizeof p, "%s/%s", dir, file);
            rc = pl_st_writer_write(w, p, err);
        }
        pl_st_writer_free(w);
        release(&h);
    }
    if (!rc && n_shards > 1) {
        snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
        rc = index ? pl_json_write(p, index, err) : pl_err_set(err, PL_ENOMEM, "out of memory");
    }
    cJSON_Delete(index);
    free(shard_of);
    free(ts);
    if (!rc) {
        /* config.json last: a directory without one is not a model, so a crash leaves nothing that loads */
        cJSON *j = pl_export_hf_config(c, PL_BF16);
        if (!j) return pl_err_set(err, PL_ENOMEM, "out of memory");
        if (o->nf4) {
            cJSON *q = cJSON_AddObjectToObject(j, "quantization_config");
            cJSON_AddStringToObject(q, "quant_method", "bitsandbytes");
            cJSON_AddBoolToObject(q, "load_in_4bit", 1);
            cJSON_AddBoolToObject(q, "load_in_8bit", 0);
            cJSON_AddStringToObject(q, "bnb_4bit_quant_type", "nf4");
            cJSON_AddBoolToObject(q, "bnb_4bit_use_double_quant", 1);
            cJSON_AddStringToObject(q, "bnb_4bit_compute_dtype", "bfloat16");
            cJSON_AddStringToObject(q, "bnb_4bit_quant_storage", "uint8");
        }
        cJSON_AddStringToObject(j, "potluck_init", o->nf4 ? "random, NF4 layers" : "random");
        cJSON_AddNumberToObject(j, "potluck_seed", (double)o->seed);
        snprintf(p, sizeof p, "%s/config.json", dir);
        rc = pl_json_write(p, j, err);
        cJSON_Delete(j);
    }
    return rc;
}
