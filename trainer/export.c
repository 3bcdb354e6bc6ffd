/* export.c: merged-model exports: Hugging Face directory and GGUF file. */
#include "export.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/atomic.h"
#include "../core/gguf_ftype.h"
#include "../core/gguf_write.h"
#include "../core/half.h"
#include "../core/json.h"
#include "../core/mapfile.h"
#include "../core/quant.h"
#include "../core/safetensors.h"
#include "../datasets/tokenizer.h"
#include "../datasets/tokenizer_gguf_write.h"
#include "../datasets/tokenizer_hf_write.h"
#include "model_int.h"

/* ------------------------------------------------------------ writable */

int pl_export_writable(pl_model *m, pl_err *err) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
        pl_layer *L = &m->layers[l];
        pl_qweight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) {
            pl_qweight *w = ws[i];
            size_t n;
            if (!pl_mul_ok((size_t)w->rows, (size_t)w->cols, &n) || !pl_mul_ok(n, sizeof(float), &n))
                return pl_err_set(err, PL_ERANGE, "%s: layer %d: weight too large", m->path, l);
            float *f = pl_model_own(m, n);
            if (!f) return pl_err_set(err, PL_ENOMEM, "%s: out of memory making fp32 weights", m->path);
            for (int64_t r = 0; r < w->rows; r++)
                if (pl_qweight_row(w, r, f + (size_t)r * w->cols))
                    return pl_err_set(err, PL_EUNSUPPORTED, "%s: layer %d: cannot convert a %s weight to fp32",
                                      m->path, l, pl_dtype_name(w->dtype));
            w->dtype = PL_F32;
            w->row_bytes = (size_t)w->cols * sizeof(float);
            w->data = f;
            w->aux = NULL;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ helpers */

/* Row r of a weight into dst (cols floats). */
static int qrow(const pl_qweight *w, int64_t r, float *dst, const char *name, pl_err *err) {
    if (pl_qweight_row(w, r, dst))
        return pl_err_set(err, PL_EUNSUPPORTED, "%s: dtype %s cannot be converted", name, pl_dtype_name(w->dtype));
    return 0;
}

/* Store n floats as type t (F32, F16, BF16 or a type pl_quantize_row takes) at dst. */
static void store_row(pl_dtype t, const float *x, int64_t n, void *dst) { (void)pl_quantize_row(t, x, dst, n); }

/* Base inverse frequencies divided by the model's: llama.cpp's rope_freqs
 * factors. Returns 1 when any factor differs from 1. */
static int rope_factors(const pl_model *m, float *fac) {
    int half = m->cfg.head_dim / 2, any = 0;
    for (int i = 0; i < half; i++) {
        float base = 1.0f / powf(m->cfg.rope_theta, (float)(2 * i) / (float)m->cfg.head_dim);
        fac[i] = base / m->inv_freq[i];
        if (fabsf(fac[i] - 1.0f) > 1e-6f) any = 1;
    }
    return any;
}

/* ------------------------------------------------------------ Hugging Face */

typedef struct bufs {
    void **p;
    int n, cap;
} bufs;

static void *bufs_alloc(bufs *b, size_t n) {
    if (b->n == b->cap) {
        int cap = b->cap ? 2 * b->cap : 64;
        void **q = realloc(b->p, (size_t)cap * sizeof *q);
        if (!q) return NULL;
        b->p = q;
        b->cap = cap;
    }
    void *x = malloc(n ? n : 1);
    if (x) b->p[b->n++] = x;
    return x;
}

static void bufs_free(bufs *b) {
    for (int i = 0; i < b->n; i++) free(b->p[i]);
    free(b->p);
}

static int st_matrix(pl_st_writer *sw, bufs *b, const char *name, const pl_qweight *w, pl_dtype dt, pl_err *err) {
    int64_t shape[2] = {w->rows, w->cols};
    if (dt == PL_F32 && w->dtype == PL_F32 && !w->aux && w->row_bytes == (size_t)w->cols * 4)
        return pl_st_writer_add(sw, name, PL_F32, 2, shape, w->data, err);
    size_t es = dt == PL_F32 ? 4 : 2, n;
    if (!pl_mul_ok((size_t)w->rows * (size_t)w->cols, es, &n))
        return pl_err_set(err, PL_ERANGE, "%s: too large", name);
    unsigned char *dst = bufs_alloc(b, n);
    float *row = malloc((size_t)w->cols * sizeof(float));
    if (!dst || !row) { free(row); return pl_err_set(err, PL_ENOMEM, "%s: out of memory", name); }
    int rc = 0;
    for (int64_t r = 0; r < w->rows && !rc; r++) {
        rc = qrow(w, r, row, name, err);
        if (!rc) store_row(dt, row, w->cols, dst + (size_t)r * (size_t)w->cols * es);
    }
    free(row);
    return rc ? rc : pl_st_writer_add(sw, name, dt, 2, shape, dst, err);
}

static int st_vector(pl_st_writer *sw, bufs *b, const char *name, const float *v, int64_t n, pl_dtype dt,
                     pl_err *err) {
    if (dt == PL_F32) return pl_st_writer_add(sw, name, PL_F32, 1, &n, v, err);
    uint16_t *d = bufs_alloc(b, (size_t)n * 2);
    if (!d) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", name);
    store_row(dt, v, n, d);
    return pl_st_writer_add(sw, name, dt, 1, &n, d, err);
}

cJSON *pl_export_hf_config(const pl_model_config *c, pl_dtype dt) {
    cJSON *j = cJSON_CreateObject();
    const char *arch = c->arch == PL_ARCH_QWEN2 ? "Qwen2ForCausalLM"
                       : c->arch == PL_ARCH_MISTRAL ? "MistralForCausalLM" : "LlamaForCausalLM";
    cJSON *a = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(a, cJSON_CreateString(arch));
    cJSON_AddStringToObject(j, "model_type", pl_arch_name(c->arch));
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab);
    cJSON_AddNumberToObject(j, "hidden_size", c->dim);
    cJSON_AddNumberToObject(j, "intermediate_size", c->hidden);
    cJSON_AddNumberToObject(j, "num_hidden_layers", c->n_layers);
    cJSON_AddNumberToObject(j, "num_attention_heads", c->n_heads);
    cJSON_AddNumberToObject(j, "num_key_value_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(j, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(j, "max_position_embeddings", c->max_seq);
    cJSON_AddNumberToObject(j, "rms_norm_eps", c->norm_eps);
    cJSON_AddNumberToObject(j, "rope_theta", c->rope_theta);
    if (c->rope_llama3) {
        cJSON *rs = cJSON_AddObjectToObject(j, "rope_scaling");
        cJSON_AddStringToObject(rs, "rope_type", "llama3");
        cJSON_AddNumberToObject(rs, "factor", c->rope_factor);
        cJSON_AddNumberToObject(rs, "low_freq_factor", c->rope_low_freq);
        cJSON_AddNumberToObject(rs, "high_freq_factor", c->rope_high_freq);
        cJSON_AddNumberToObject(rs, "original_max_position_embeddings", c->rope_orig_max);
    } else {
        cJSON_AddNullToObject(j, "rope_scaling");
    }
    cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tied_embeddings);
    cJSON_AddStringToObject(j, "hidden_act", "silu");
    if (c->arch != PL_ARCH_QWEN2) {
        cJSON_AddBoolToObject(j, "attention_bias", c->qkv_bias);
        cJSON_AddBoolToObject(j, "mlp_bias", 0);
    } else {
        cJSON_AddBoolToObject(j, "use_sliding_window", c->sliding_window > 0);
    }
    /* the base's window, as it came (null: none) */
    if (c->arch != PL_ARCH_LLAMA) {
        if (c->sliding_window > 0) cJSON_AddNumberToObject(j, "sliding_window", c->sliding_window);
        else if (c->arch == PL_ARCH_MISTRAL) cJSON_AddNullToObject(j, "sliding_window");
    }
    cJSON_AddNumberToObject(j, "attention_dropout", 0);
    cJSON_AddNumberToObject(j, "initializer_range", 0.02);
    if (c->bos_id >= 0) cJSON_AddNumberToObject(j, "bos_token_id", c->bos_id);
    if (c->eos_id >= 0) cJSON_AddNumberToObject(j, "eos_token_id", c->eos_id);
    cJSON_AddStringToObject(j, "torch_dtype", dt == PL_BF16 ? "bfloat16" : "float32");
    cJSON_AddBoolToObject(j, "use_cache", 1);
    return j;
}

/* Copy dir_of(m->path)/name to out/name if it exists; *copied counts. */
static int copy_if_exists(const char *src_dir, const char *out_dir, const char *name, int *copied, pl_err *err) {
    char sp[4096], dp[4096];
    snprintf(sp, sizeof sp, "%s/%s", src_dir, name);
    snprintf(dp, sizeof dp, "%s/%s", out_dir, name);
    FILE *f = fopen(sp, "rb");
    if (!f) return 0;
    fclose(f);
    char *buf = NULL;
    size_t n = 0;
    int rc = pl_read_file(sp, (size_t)1 << 30, &buf, &n, err);
    if (!rc) rc = pl_write_file_atomic(dp, buf, n, err);
    free(buf);
    if (!rc) (*copied)++;
    return rc;
}

int pl_export_hf(const pl_model *m, const char *dir, const pl_export_hf_opts *o, pl_err *err) {
    pl_export_hf_opts def = {0};
    if (!o) o = &def;
    pl_dtype dt = o->dtype; /* PL_F32 is 0 */
    if (dt != PL_F32 && dt != PL_BF16)
        return pl_err_set(err, PL_EINVAL, "%s: Hugging Face export: dtype %s (expected F32 or BF16)", dir,
                          pl_dtype_name(dt));
    const pl_model_config *c = &m->cfg;
    float *fac = malloc((size_t)(c->head_dim / 2 + 1) * sizeof(float));
    if (!fac) return pl_err_set(err, PL_ENOMEM, "out of memory");
    int has_fac = rope_factors(m, fac);
    free(fac);
    if (has_fac && !c->rope_llama3)
        return pl_err_set(err, PL_EUNSUPPORTED,
                          "%s: the model's rope frequencies carry per-dimension factors (a GGUF rope_freqs.weight) "
                          "that config.json cannot express; export it as GGUF instead", m->path);
    int rc = pl_mkdirs(dir, err);
    if (rc) return rc;
    pl_st_writer *sw = pl_st_writer_new();
    bufs b = {0};
    cJSON *cfg = NULL;
    if (!sw) return pl_err_set(err, PL_ENOMEM, "out of memory");
    char name[128];
    int64_t D = c->dim, qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    if ((rc = pl_st_writer_meta(sw, "format", "pt", err)) ||
        (rc = st_matrix(sw, &b, "model.embed_tokens.weight", &m->tok_embd, dt, err)))
        goto done;
    for (int l = 0; l < c->n_layers && !rc; l++) {
        const pl_layer *L = &m->layers[l];
#define N(s) (snprintf(name, sizeof name, "model.layers.%d.%s", l, s), name)
        if ((rc = st_vector(sw, &b, N("input_layernorm.weight"), L->attn_norm, D, dt, err)) ||
            (rc = st_matrix(sw, &b, N("self_attn.q_proj.weight"), &L->wq, dt, err)) ||
            (rc = st_matrix(sw, &b, N("self_attn.k_proj.weight"), &L->wk, dt, err)) ||
            (rc = st_matrix(sw, &b, N("self_attn.v_proj.weight"), &L->wv, dt, err)) ||
            (rc = st_matrix(sw, &b, N("self_attn.o_proj.weight"), &L->wo, dt, err)) ||
            (rc = st_vector(sw, &b, N("post_attention_layernorm.weight"), L->ffn_norm, D, dt, err)) ||
            (rc = st_matrix(sw, &b, N("mlp.gate_proj.weight"), &L->w_gate, dt, err)) ||
            (rc = st_matrix(sw, &b, N("mlp.up_proj.weight"), &L->w_up, dt, err)) ||
            (rc = st_matrix(sw, &b, N("mlp.down_proj.weight"), &L->w_down, dt, err)))
            goto done;
        if (L->bq && ((rc = st_vector(sw, &b, N("self_attn.q_proj.bias"), L->bq, qd, dt, err)) ||
                      (rc = st_vector(sw, &b, N("self_attn.k_proj.bias"), L->bk, kvd, dt, err)) ||
                      (rc = st_vector(sw, &b, N("self_attn.v_proj.bias"), L->bv, kvd, dt, err))))
            goto done;
#undef N
    }
    if ((rc = st_vector(sw, &b, "model.norm.weight", m->out_norm, D, dt, err))) goto done;
    if (!c->tied_embeddings && (rc = st_matrix(sw, &b, "lm_head.weight", &m->lm_head, dt, err))) goto done;
    if ((rc = pl_st_writer_write_sharded(sw, dir, o->max_shard_bytes ? o->max_shard_bytes : (size_t)-1, err)))
        goto done;
    char p[4096];
    snprintf(p, sizeof p, "%s/config.json", dir);
    cfg = pl_export_hf_config(&m->cfg, dt);
    if (!cfg) { rc = pl_err_set(err, PL_ENOMEM, "out of memory"); goto done; }
    if ((rc = pl_json_write(p, cfg, err))) goto done;
    /* tokenizer files */
    int copied = 0;
    char readme[4096];
    int k = snprintf(readme, sizeof readme, "Exported by potluck from %s (%s, %s weights).\n", m->path,
                     pl_arch_name(c->arch), pl_dtype_name(dt));
    if (o->note) k += snprintf(readme + k, sizeof readme - k, "%s\n", o->note);
    if (m->source == PL_SRC_HF) {
        static const char *files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                      "generation_config.json", "tokenizer.model", "vocab.json", "merges.txt",
                                      "added_tokens.json", "chat_template.jinja"};
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
            if ((rc = copy_if_exists(m->path, dir, files[i], &copied, err))) goto done;
        snprintf(readme + k, sizeof readme - k, "Tokenizer: %d file(s) copied from the base directory.\n", copied);
    } else if (m->source == PL_SRC_GGUF && m->gguf) {
        /* the GGUF's vocabulary, merges, special tokens and chat template as
         * tokenizer.json + tokenizer_config.json */
        pl_err terr = {0};
        if (!pl_tokenizer_gguf_write_hf(m->gguf, dir, c->max_seq, &terr)) {
            snprintf(readme + k, sizeof readme - k,
                     "Tokenizer: tokenizer.json, tokenizer_config.json (chat template, special tokens) and "
                     "special_tokens_map.json, written from the base GGUF's metadata.\n");
        } else if (terr.code == PL_EUNSUPPORTED) {
            snprintf(readme + k, sizeof readme - k,
                     "Tokenizer: not included (%s). With transformers: AutoTokenizer.from_pretrained(<folder of "
                     "the base>, gguf_file=<its file name>).\n", terr.msg);
        } else {
            rc = pl_err_set(err, terr.code, "%s", terr.msg);
            goto done;
        }
    } else {
        snprintf(readme + k, sizeof readme - k,
                 "Tokenizer: not included; it is the base model's (%s).\n", m->path);
    }
    snprintf(p, sizeof p, "%s/README.txt", dir);
    rc = pl_write_file_atomic(p, readme, strlen(readme), err);
done:
    cJSON_Delete(cfg);
    pl_st_writer_free(sw);
    bufs_free(&b);
    return rc;
}

/* ------------------------------------------------------------ GGUF */

/* What one GGUF tensor is made from: a weight matrix (rows converted to
 * type out, in interleaved Q/K order when heads > 0) or a vector. */
typedef struct gsrc {
    const pl_qweight *w;
    const float *v;
    int64_t n;        /* vector length */
    pl_dtype out;
    int heads, hd;    /* > 0: re-apply llama.cpp's interleaved row order */
    char name[64];
} gsrc;

/* Rotate-half row of stored (interleaved) row s: within each head, stored
 * row 2i is rotate-half row i and stored row 2i+1 is rotate-half row i + hd/2. */
static int64_t src_row(int64_t s, int hd) {
    int64_t h = s / hd, j = s % hd;
    return h * hd + (j % 2 ? j / 2 + hd / 2 : j / 2);
}

static int gfill(void *ctx, void *dst, size_t nbytes, pl_err *err) {
    gsrc *g = ctx;
    if (g->v) {
        if (g->heads) for (int64_t s = 0; s < g->n; s++) ((float *)dst)[s] = g->v[src_row(s, g->hd)];
        else memcpy(dst, g->v, (size_t)g->n * sizeof(float));
        return 0;
    }
    const pl_qweight *w = g->w;
    size_t rb = pl_dtype_row_bytes(g->out, w->cols);
    int bad = 0, oom = 0;
    /* rows are independent: the same bytes with any number of threads */
#pragma omp parallel
    {
        float *row = malloc((size_t)w->cols * sizeof(float));
        if (!row) {
#pragma omp atomic write
            oom = 1;
        }
#pragma omp for schedule(static)
        for (int64_t s = 0; s < w->rows; s++) {
            if (!row) continue;
            if (pl_qweight_row(w, g->heads ? src_row(s, g->hd) : s, row)) {
#pragma omp atomic write
                bad = 1;
                continue;
            }
            store_row(g->out, row, w->cols, (unsigned char *)dst + (size_t)s * rb);
        }
        free(row);
    }
    (void)nbytes;
    if (oom) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", g->name);
    if (bad) return pl_err_set(err, PL_EUNSUPPORTED, "%s: dtype %s cannot be converted", g->name, pl_dtype_name(w->dtype));
    return 0;
}

int pl_export_gguf(const pl_model *m, const char *path, const pl_export_gguf_opts *o, pl_err *err) {
    pl_export_gguf_opts def = {.ftype = PL_FTYPE_F16};
    if (!o) o = &def;
    pl_gguf_ftype ft = o->ftype;
    if (!strcmp(pl_gguf_ftype_name(ft), "?"))
        return pl_err_set(err, PL_EINVAL, "%s: GGUF export: file type %d (expected one of %s)", path, (int)ft,
                          pl_gguf_ftype_list());
    int quantized = ft != PL_FTYPE_F32 && ft != PL_FTYPE_F16 && ft != PL_FTYPE_BF16;
    const pl_gguf *tok = o->tok_src ? o->tok_src : m->gguf;
    pl_tokenizer *hft = NULL; /* without a GGUF source: the base directory's tokenizer, converted */
    if (!tok) {
        pl_err terr = {0};
        if (m->source != PL_SRC_HF || pl_tokenizer_load(&hft, m->path, &terr))
            return pl_err_set(err, PL_EUNSUPPORTED,
                              "%s: GGUF export needs the tokenizer: the base %s is not a GGUF file and its tokenizer "
                              "(tokenizer.json or vocab.json + merges.txt) does not load (%s); give a GGUF with the "
                              "same vocabulary",
                              path, m->path, m->source == PL_SRC_HF ? terr.msg : "not a Hugging Face directory");
    }
    const pl_model_config *c = &m->cfg;
    const char *arch = c->arch == PL_ARCH_QWEN2 ? "qwen2" : "llama";
    int permute = c->arch != PL_ARCH_QWEN2;
    int64_t D = c->dim, qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    size_t n_src = (size_t)c->n_layers * 12 + 8;
    gsrc *src = calloc(n_src, sizeof *src);
    float *fac = malloc((size_t)(c->head_dim / 2 + 1) * sizeof(float));
    pl_gguf_writer *w = pl_gguf_writer_new();
    int rc = 0;
    size_t ns = 0;
    if (!src || !fac || !w) { rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", path); goto done; }
    char key[160];
#define K(s) (snprintf(key, sizeof key, "%s.%s", arch, s), key)
    if ((rc = pl_gguf_set_str(w, "general.architecture", arch, err)) ||
        (rc = pl_gguf_set_str(w, "general.name", o->name ? o->name : "potluck export", err)) ||
        (rc = pl_gguf_set_u32(w, "general.file_type", (uint32_t)ft, err)) ||
        (quantized && (rc = pl_gguf_set_u32(w, "general.quantization_version", 2, err))) ||
        (rc = pl_gguf_set_u32(w, K("vocab_size"), (uint32_t)c->vocab, err)) ||
        (rc = pl_gguf_set_u32(w, K("context_length"), (uint32_t)c->max_seq, err)) ||
        (rc = pl_gguf_set_u32(w, K("embedding_length"), (uint32_t)c->dim, err)) ||
        (rc = pl_gguf_set_u32(w, K("block_count"), (uint32_t)c->n_layers, err)) ||
        (rc = pl_gguf_set_u32(w, K("feed_forward_length"), (uint32_t)c->hidden, err)) ||
        (rc = pl_gguf_set_u32(w, K("attention.head_count"), (uint32_t)c->n_heads, err)) ||
        (rc = pl_gguf_set_u32(w, K("attention.head_count_kv"), (uint32_t)c->n_kv_heads, err)) ||
        (rc = pl_gguf_set_u32(w, K("attention.key_length"), (uint32_t)c->head_dim, err)) ||
        (rc = pl_gguf_set_u32(w, K("attention.value_length"), (uint32_t)c->head_dim, err)) ||
        (rc = pl_gguf_set_f32(w, K("rope.freq_base"), c->rope_theta, err)) ||
        (rc = pl_gguf_set_u32(w, K("rope.dimension_count"), (uint32_t)c->head_dim, err)) ||
        (rc = pl_gguf_set_f32(w, K("attention.layer_norm_rms_epsilon"), c->norm_eps, err)))
        goto done;
#undef K
    /* tokenizer: the base's tokenizer.json converted, or every tokenizer.* key of the GGUF source */
    if (hft) {
        if ((rc = pl_tokenizer_to_gguf(hft, w, c->vocab, m->path, err))) goto done;
    }
    for (uint64_t i = 0; tok && i < tok->n_kv; i++) {
        const pl_gguf_kv *kv = &tok->kv[i];
        if (kv->key.len > 10 && !memcmp(kv->key.ptr, "tokenizer.", 10) && (rc = pl_gguf_set_kv(w, kv, err)))
            goto done;
    }
    if (tok && !pl_gguf_get(tok, "tokenizer.ggml.model")) {
        rc = pl_err_set(err, PL_EFORMAT, "%s: tokenizer source %s has no tokenizer.ggml.model", path, tok->path);
        goto done;
    }

    /* tensors, in llama.cpp's usual order */
#define MAT(nm, wp, hh) do { \
        gsrc *g = &src[ns++]; g->w = (wp); g->heads = (hh); g->hd = c->head_dim; \
        snprintf(g->name, sizeof g->name, "%s", nm); \
        pl_gguf_tensor_info ti = {.name = g->name, .n_dims = 2, .ne0 = (wp)->cols, .layer = cur_layer, \
                                  .n_layers = c->n_layers, .has_output = !c->tied_embeddings}; \
        g->out = pl_gguf_tensor_type(ft, &ti); \
        int64_t ne[2] = {(wp)->cols, (wp)->rows}; \
        if ((rc = pl_gguf_add_tensor_fill(w, g->name, g->out, 2, ne, gfill, g, err))) goto done; } while (0)
#define VEC(nm, vp, len, hh) do { \
        gsrc *g = &src[ns++]; g->v = (vp); g->n = (len); g->heads = (hh); g->hd = c->head_dim; g->out = PL_F32; \
        snprintf(g->name, sizeof g->name, "%s", nm); \
        int64_t ne[1] = {(len)}; \
        if ((rc = pl_gguf_add_tensor_fill(w, g->name, PL_F32, 1, ne, gfill, g, err))) goto done; } while (0)
    char name[64];
    int cur_layer = 0;
    MAT("token_embd.weight", &m->tok_embd, 0);
    if (rope_factors(m, fac)) {
        int64_t ne[1] = {c->head_dim / 2};
        if ((rc = pl_gguf_add_tensor(w, "rope_freqs.weight", PL_F32, 1, ne, fac, err))) goto done;
    }
    for (int l = 0; l < c->n_layers; l++) {
        const pl_layer *L = &m->layers[l];
        cur_layer = l;
#define N(s) (snprintf(name, sizeof name, "blk.%d.%s", l, s), name)
        VEC(N("attn_norm.weight"), L->attn_norm, D, 0);
        MAT(N("attn_q.weight"), &L->wq, permute ? c->n_heads : 0);
        MAT(N("attn_k.weight"), &L->wk, permute ? c->n_kv_heads : 0);
        MAT(N("attn_v.weight"), &L->wv, 0);
        if (L->bq) {
            VEC(N("attn_q.bias"), L->bq, qd, permute ? c->n_heads : 0);
            VEC(N("attn_k.bias"), L->bk, kvd, permute ? c->n_kv_heads : 0);
            VEC(N("attn_v.bias"), L->bv, kvd, 0);
        }
        MAT(N("attn_output.weight"), &L->wo, 0);
        VEC(N("ffn_norm.weight"), L->ffn_norm, D, 0);
        MAT(N("ffn_gate.weight"), &L->w_gate, 0);
        MAT(N("ffn_up.weight"), &L->w_up, 0);
        MAT(N("ffn_down.weight"), &L->w_down, 0);
#undef N
    }
    VEC("output_norm.weight", m->out_norm, D, 0);
    if (!c->tied_embeddings) MAT("output.weight", &m->lm_head, 0);
#undef MAT
#undef VEC
    rc = pl_gguf_writer_write(w, path, err);
done:
    pl_gguf_writer_free(w);
    pl_tokenizer_free(hft);
    free(src);
    free(fac);
    return rc;
}
