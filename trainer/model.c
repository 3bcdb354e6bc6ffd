/* model.c: what every model loader shares: ownership, config checks, the
 * Q/K row permutation, RoPE frequencies, fp32 conversion, and the entry
 * point that picks a loader by looking at the path. */
#include "model_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/quant.h"
#include "model_nf4.h"

const char *pl_arch_name(pl_arch a) {
    switch (a) {
    case PL_ARCH_LLAMA: return "llama";
    case PL_ARCH_MISTRAL: return "mistral";
    case PL_ARCH_QWEN2: return "qwen2";
    }
    return "?";
}

void *pl_model_own(pl_model *m, size_t bytes) {
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? 2 * m->cap_owned : 64;
        void **o = realloc(m->owned, (size_t)cap * sizeof *o);
        if (!o) return NULL;
        m->owned = o;
        m->cap_owned = cap;
    }
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) return NULL;
    m->owned[m->n_owned++] = p;
    return p;
}

pl_model *pl_model_new(const char *path, pl_model_source src) {
    pl_model *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->path = strdup(path);
    m->source = src;
    m->be = pl_backend_cpu();
    m->cfg.bos_id = m->cfg.eos_id = -1;
    if (!m->path) { free(m); return NULL; }
    return m;
}

void pl_model_free(pl_model *m) {
    if (!m) return;
    if (m->be && m->be->release_weights) m->be->release_weights(NULL); /* the backend's copies of our weights */
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    if (m->gguf) pl_gguf_close(m->gguf);
    if (m->st) pl_st_close(m->st);
    free(m->file_buf);
    free(m->path);
    free(m);
}

int pl_model_check_window(const pl_model *m, int64_t n, const char *what, pl_err *err) {
    const int w = m->cfg.sliding_window;
    if (w <= 0 || n <= w) return 0;
    return pl_err_set(err, PL_EUNSUPPORTED,
                      "%s: %s: %lld tokens, but the model attends through a sliding window of %d (sliding_window in "
                      "its config), which potluck does not implement; use sequences of at most %d tokens",
                      m->path, what, (long long)n, w, w);
}

int pl_model_check_config(pl_model_config *c, const char *path, pl_err *err) {
#define BAD(...) return pl_err_set(err, PL_EFORMAT, __VA_ARGS__)
    if (c->vocab <= 0 || c->vocab > (1 << 24)) BAD("%s: vocab size %d is out of range (1..16777216)", path, c->vocab);
    if (c->dim <= 0 || c->dim > (1 << 16)) BAD("%s: hidden size %d is out of range (1..65536)", path, c->dim);
    if (c->hidden <= 0 || c->hidden > (1 << 18)) BAD("%s: intermediate size %d is out of range (1..262144)", path, c->hidden);
    if (c->n_layers <= 0 || c->n_layers > 1024) BAD("%s: layer count %d is out of range (1..1024)", path, c->n_layers);
    if (c->n_heads <= 0 || c->n_heads > 1024) BAD("%s: attention head count %d is out of range (1..1024)", path, c->n_heads);
    if (c->n_kv_heads <= 0 || c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads)
        BAD("%s: key/value head count %d must divide the head count %d", path, c->n_kv_heads, c->n_heads);
    if (c->head_dim == 0) {
        if (c->dim % c->n_heads) BAD("%s: hidden size %d is not a multiple of the head count %d", path, c->dim, c->n_heads);
        c->head_dim = c->dim / c->n_heads;
    }
    if (c->head_dim <= 0 || c->head_dim > 1024 || c->head_dim % 2)
        BAD("%s: head size %d must be even and in 2..1024", path, c->head_dim);
    if (c->max_seq <= 0) c->max_seq = 2048;
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta)) BAD("%s: rope_theta %g must be positive", path, (double)c->rope_theta);
    if (!(c->norm_eps > 0) || c->norm_eps > 1) BAD("%s: RMSNorm epsilon %g must be in (0, 1]", path, (double)c->norm_eps);
    if (c->rope_llama3) {
        if (!(c->rope_factor >= 1) || !(c->rope_low_freq > 0) || !(c->rope_high_freq > c->rope_low_freq) || c->rope_orig_max <= 0)
            BAD("%s: llama3 rope scaling needs factor >= 1, 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0", path);
    }
    if (c->bos_id >= c->vocab) c->bos_id = -1;
    if (c->eos_id >= c->vocab) c->eos_id = -1;
    return 0;
#undef BAD
}

int pl_model_check_weight(const pl_qweight *w, int64_t rows, int64_t cols, const char *path,
                          const char *name, pl_err *err) {
    if (!w->data)
        return pl_err_set(err, PL_ENOTFOUND, "%s: missing tensor '%s'", path, name);
    if (w->rows != rows || w->cols != cols)
        return pl_err_set(err, PL_EFORMAT, "%s: tensor '%s': expected shape [%lld, %lld], found [%lld, %lld]",
                          path, name, (long long)rows, (long long)cols, (long long)w->rows, (long long)w->cols);
    if (!pl_dtype_can_dequantize(w->dtype))
        return pl_err_set(err, PL_EUNSUPPORTED, "%s: tensor '%s': dtype %s is not supported for weights",
                          path, name, pl_dtype_name(w->dtype));
    size_t rb = pl_dtype_row_bytes(w->dtype, cols);
    if (rb == 0 || rb != w->row_bytes)
        return pl_err_set(err, PL_EFORMAT, "%s: tensor '%s': %lld columns are not a whole number of %s blocks",
                          path, name, (long long)cols, pl_dtype_name(w->dtype));
    return 0;
}

void pl_model_unpermute_rows(void *dst, const void *src, int n_heads, int hd, size_t row_bytes) {
    const unsigned char *s = src;
    unsigned char *d = dst;
    for (int h = 0; h < n_heads; h++) {
        for (int i = 0; i < hd / 2; i++) {
            size_t base = (size_t)h * hd;
            memcpy(d + (base + i) * row_bytes, s + (base + 2 * i) * row_bytes, row_bytes);
            memcpy(d + (base + i + hd / 2) * row_bytes, s + (base + 2 * i + 1) * row_bytes, row_bytes);
        }
    }
}

void pl_model_unpermute_vec(float *dst, const float *src, int n_heads, int hd) {
    pl_model_unpermute_rows(dst, src, n_heads, hd, sizeof(float));
}

int pl_model_init_rope(pl_model *m, const float *factors, pl_err *err) {
    const pl_model_config *c = &m->cfg;
    int half = c->head_dim / 2;
    m->inv_freq = pl_model_own(m, (size_t)half * sizeof(float));
    if (!m->inv_freq) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", m->path);
    for (int i = 0; i < half; i++) {
        /* as transformers: base ** (arange(0, hd, 2).float() / hd), in fp32 */
        float expo = (float)(2 * i) / (float)c->head_dim;
        float f = 1.0f / powf(c->rope_theta, expo);
        if (c->rope_llama3) {
            double wavelen = 2.0 * M_PI / f;
            double low_wl = c->rope_orig_max / c->rope_low_freq;
            double high_wl = c->rope_orig_max / c->rope_high_freq;
            if (wavelen < high_wl) {
                /* high frequency: unchanged */
            } else if (wavelen > low_wl) {
                f = f / c->rope_factor;
            } else {
                float smooth = (float)((c->rope_orig_max / wavelen - c->rope_low_freq) /
                                       (c->rope_high_freq - c->rope_low_freq));
                f = (1.0f - smooth) * f / c->rope_factor + smooth * f;
            }
        }
        if (factors) {
            if (!(factors[i] > 0) || !isfinite(factors[i]))
                return pl_err_set(err, PL_EFORMAT, "%s: rope frequency factor %d is %g, expected a positive number",
                                  m->path, i, (double)factors[i]);
            f = f / factors[i];
        }
        m->inv_freq[i] = f;
    }
    return 0;
}

/* NF4 weights (a quantized base) are left as they are. */
static int to_fp32(pl_model *m, pl_qweight *w, pl_err *err) {
    if (w->dtype == PL_NF4) return 0;
    if (w->dtype == PL_F32 && ((uintptr_t)w->data & 63) == 0) return 0;
    size_t n;
    if (!pl_mul_ok((size_t)w->rows, (size_t)w->cols, &n) || !pl_mul_ok(n, sizeof(float), &n))
        return pl_err_set(err, PL_ERANGE, "%s: weight too large", m->path);
    float *f = pl_model_own(m, n);
    if (!f) return pl_err_set(err, PL_ENOMEM, "%s: out of memory converting weights to fp32", m->path);
    for (int64_t r = 0; r < w->rows; r++)
        if (pl_dequantize_row(w->dtype, (const unsigned char *)w->data + (size_t)r * w->row_bytes,
                              f + (size_t)r * w->cols, w->cols))
            return pl_err_set(err, PL_EUNSUPPORTED, "%s: cannot convert %s weights to fp32", m->path,
                              pl_dtype_name(w->dtype));
    w->dtype = PL_F32;
    w->data = f;
    w->row_bytes = (size_t)w->cols * sizeof(float);
    return 0;
}

int pl_model_to_fp32(pl_model *m, pl_err *err) {
    int tied = m->lm_head.data == m->tok_embd.data;
    int rc = to_fp32(m, &m->tok_embd, err);
    if (rc) return rc;
    if (tied) m->lm_head = m->tok_embd;
    else if ((rc = to_fp32(m, &m->lm_head, err))) return rc;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        pl_layer *L = &m->layers[l];
        pl_qweight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
            if ((rc = to_fp32(m, ws[i], err))) return rc;
    }
    return 0;
}

int64_t pl_model_n_params(const pl_model *m) {
    const pl_model_config *c = &m->cfg;
    int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    int64_t per = 2 * (int64_t)c->dim + (int64_t)c->dim * qd * 2 + (int64_t)c->dim * kvd * 2 +
                  3 * (int64_t)c->dim * c->hidden;
    if (c->qkv_bias) per += qd + 2 * kvd;
    int64_t n = per * c->n_layers + (int64_t)c->vocab * c->dim + c->dim;
    if (!c->tied_embeddings) n += (int64_t)c->vocab * c->dim;
    return n;
}

/* llama2.c checkpoints have no magic: recognize them by a header whose seven
 * int32 values are plausible and whose size matches the file. */
static int looks_like_gguf(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    char b[4] = {0};
    ssize_t n = read(fd, b, 4);
    close(fd);
    return n == 4 && memcmp(b, "GGUF", 4) == 0;
}

/* A folder given as a model must be a Hugging Face model folder; when it is
 * not, say what one holds, and name a GGUF file inside it if there is one. */
static int check_model_dir(const char *path, pl_err *err) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/config.json", path);
    if (access(p, F_OK) == 0) return PL_OK;
    char gguf[256] = "";
    DIR *d = opendir(path);
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (e->d_name[0] != '.' && n > 5 && !strcmp(e->d_name + n - 5, ".gguf") && n < sizeof gguf) {
            snprintf(gguf, sizeof gguf, "%s", e->d_name);
            break;
        }
    }
    if (d) closedir(d);
    if (*gguf)
        return pl_err_set(err, PL_EINVAL, "%s: a folder without config.json is not a model; it holds %s: give that "
                          "file (%s/%s)", path, gguf, path, gguf);
    return pl_err_set(err, PL_EINVAL, "%s: a folder without config.json is not a model: a Hugging Face model folder "
                      "holds config.json, model.safetensors (or its shards) and tokenizer.json; or give a .gguf file",
                      path);
}

int pl_model_load(pl_model **out, const char *path, const pl_model_opts *opts, pl_err *err) {
    *out = NULL;
    struct stat st;
    pl_model_source src;
    if (pl_model_is_random(path)) src = PL_SRC_RANDOM;
    else if (stat(path, &st) != 0)
        return pl_err_set(err, PL_EIO, "%s: %s", path, strerror(errno));
    else if (S_ISDIR(st.st_mode)) {
        src = PL_SRC_HF;
        int rc = check_model_dir(path, err);
        if (rc) return rc;
    } else if (looks_like_gguf(path)) src = PL_SRC_GGUF;
    else {
        size_t n = strlen(path);
        if (n > 5 && !strcmp(path + n - 5, ".json"))
            return pl_err_set(err, PL_EINVAL, "%s: give the model directory, not its config file", path);
        if (n > 12 && !strcmp(path + n - 12, ".safetensors"))
            return pl_err_set(err, PL_EINVAL, "%s: give the model directory (config.json + safetensors), not a weights file", path);
        src = PL_SRC_LLAMA2C;
    }
    pl_model *m = pl_model_new(path, src);
    if (!m) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", path);
    int rc = src == PL_SRC_HF ? pl_model_load_hf(m, err)
           : src == PL_SRC_GGUF ? pl_model_load_gguf(m, err)
           : src == PL_SRC_RANDOM ? pl_model_load_random(m, err)
           : pl_model_load_llama2c(m, err);
    /* NF4 first, so fp32 then converts only the embeddings and the head */
    if (!rc && opts && opts->nf4_blocksize > 0)
        rc = pl_model_nf4_quantize(m, opts->nf4_blocksize, opts->nf4_double_quant, err);
    if (!rc && opts && opts->fp32) rc = pl_model_to_fp32(m, err);
    if (!rc) { /* the process's backend (--backend): its ops copy the weights they use */
        const pl_backend *be = pl_backend_default(err);
        if (be) m->be = be;
        else rc = err ? err->code : PL_EUNSUPPORTED;
    }
    if (rc) {
        pl_model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}
