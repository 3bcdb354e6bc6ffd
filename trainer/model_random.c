/* model_random.c: a rehearsal model made in memory from a model spec
 * "random:SHAPE[@SEED]" (model.h), with no file: the model `potluck model
 * init --random --nf4` would write for that shape and seed (model_init.h's
 * init: NF4 layer weights, BF16 embeddings and head, norms 1), tensor by
 * tensor. With a backend that has init_random (CUDA) each random tensor is
 * made on the device and copied back to the model's memory; otherwise on the
 * host. Either way the model's host bytes are the init's. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/progress.h"
#include "../lora/nf4.h"
#include "model_init.h"
#include "model_int.h"
#include "model_nf4.h"
#include "plan.h"

#define PREFIX "random:"

int pl_model_is_random(const char *path) { return path && !strncmp(path, PREFIX, strlen(PREFIX)); }

int pl_model_random_shape(const char *spec, char *shape, size_t n, const char **seed_at) {
    if (!pl_model_is_random(spec)) return 0;
    const char *s = spec + strlen(PREFIX), *at = strrchr(s, '@');
    size_t len = at ? (size_t)(at - s) : strlen(s);
    snprintf(shape, n, "%.*s", (int)len, s);
    if (seed_at) *seed_at = at;
    return 1;
}

/* The shape: a preset's config, or a config.json (or a folder holding one). */
static int spec_shape(const char *spec, const char *shape, pl_model_config *c, pl_err *err) {
    const pl_plan_preset *p = pl_plan_preset_find(shape);
    if (p) {
        *c = p->cfg;
        return pl_model_check_config(c, spec, err);
    }
    struct stat st;
    char cfg[4200];
    if (stat(shape, &st) == 0 && S_ISDIR(st.st_mode)) snprintf(cfg, sizeof cfg, "%s/config.json", shape);
    else snprintf(cfg, sizeof cfg, "%s", shape);
    if (stat(cfg, &st) != 0) {
        char names[1024];
        pl_plan_preset_names(names, sizeof names);
        return pl_err_set(err, PL_EINVAL, "%s: '%s' is neither a preset (%s) nor a config.json or a folder holding one",
                          spec, shape, names);
    }
    pl_model *m = pl_model_new(cfg, PL_SRC_HF);
    if (!m) return pl_err_set(err, PL_ENOMEM, "out of memory");
    int rc = pl_model_hf_config(m, cfg, err);
    if (!rc) *c = m->cfg;
    pl_model_free(m);
    return rc ? rc : pl_model_check_config(c, spec, err);
}

int pl_model_random_spec(const char *spec, pl_model_config *c, uint64_t *seed, pl_err *err) {
    memset(c, 0, sizeof *c);
    *seed = 0;
    char shape[4096];
    const char *at = NULL;
    if (!pl_model_random_shape(spec, shape, sizeof shape, &at))
        return pl_err_set(err, PL_EINVAL, "%s: not a random: model spec", spec);
    if (at) {
        const char *s = at + 1;
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (!*s || *s == '-' || *s == '+' || errno || !end || *end)
            return pl_err_set(err, PL_EINVAL, "%s: the seed after '@' must be a whole number (random:SHAPE@SEED)", spec);
        *seed = (uint64_t)v;
    }
    if (!*shape)
        return pl_err_set(err, PL_EINVAL, "%s: give a shape: random:PRESET (potluck plan --preset list) or "
                          "random:PATH/config.json, optionally @SEED", spec);
    return spec_shape(spec, shape, c, err);
}

int pl_model_random_tokenizer_dir(const char *spec, char *dir, size_t n) {
    char shape[4096];
    if (!pl_model_random_shape(spec, shape, sizeof shape, NULL) || pl_plan_preset_find(shape)) return 0;
    struct stat st;
    if (stat(shape, &st) != 0) return 0;
    if (!S_ISDIR(st.st_mode)) { /* a config.json: its folder */
        char *slash = strrchr(shape, '/');
        if (slash) *slash = '\0';
        else snprintf(shape, sizeof shape, ".");
    }
    char tj[4200];
    snprintf(tj, sizeof tj, "%s/tokenizer.json", shape);
    if (access(tj, R_OK) != 0) return 0;
    snprintf(dir, n, "%s", shape);
    return 1;
}

/* Where tensor t goes in m (NULL for a vector slot: *vec gets the pointer's address). */
static pl_qweight *slot_weight(pl_model *m, const pl_init_tensor *t, float ***vec) {
    pl_layer *L = t->layer < m->cfg.n_layers ? &m->layers[t->layer] : NULL;
    *vec = NULL;
    switch (t->slot) {
    case PL_INIT_EMBED: return &m->tok_embd;
    case PL_INIT_HEAD: return &m->lm_head;
    case PL_INIT_NORM: *vec = &m->out_norm; return NULL;
    case PL_INIT_ATTN_NORM: *vec = &L->attn_norm; return NULL;
    case PL_INIT_FFN_NORM: *vec = &L->ffn_norm; return NULL;
    case PL_INIT_QB: *vec = &L->bq; return NULL;
    case PL_INIT_KB: *vec = &L->bk; return NULL;
    case PL_INIT_VB: *vec = &L->bv; return NULL;
    case PL_INIT_Q: return &L->wq;
    case PL_INIT_K: return &L->wk;
    case PL_INIT_V: return &L->wv;
    case PL_INIT_O: return &L->wo;
    case PL_INIT_GATE: return &L->w_gate;
    case PL_INIT_UP: return &L->w_up;
    case PL_INIT_DOWN: return &L->w_down;
    default: return NULL;
    }
}

/* One random tensor into w: on the device when the backend can, else here. */
static int fill(pl_model *m, const pl_init_tensor *t, pl_qweight *w, uint64_t seed, pl_err *err) {
    const pl_backend *be = m->be;
    const int64_t n = t->rows * t->cols;
    if (be->init_random) {
        if (!be->init_random(w, seed, t->stream, PL_INIT_STD)) return 0;
        int rc = be->take_error(err);
        if (!rc) rc = pl_err_set(err, PL_EIO, "the backend could not make the tensor");
        pl_err_prefix(err, "%s: %s", m->path, t->name);
        return rc;
    }
    if (w->dtype == PL_BF16)
        return pl_model_init_bf16((uint16_t *)(void *)w->data, n, seed, t->stream)
                   ? pl_err_set(err, PL_ENOMEM, "%s: %s: out of memory", m->path, t->name)
                   : 0;
    float *x = malloc((size_t)n * sizeof(float)); /* one tensor in fp32 at most */
    if (!x) return pl_err_set(err, PL_ENOMEM, "%s: %s: out of memory for %lld values", m->path, t->name, (long long)n);
    pl_model_init_normal(x, n, seed, t->stream);
    int rc = pl_nf4_fill(x, (pl_nf4 *)(void *)w->data, err);
    free(x);
    return rc;
}

int pl_model_load_random(pl_model *m, pl_err *err) {
    uint64_t seed = 0;
    int rc = pl_model_random_spec(m->path, &m->cfg, &seed, err);
    if (rc) return rc;
    const pl_backend *be = pl_backend_default(err);
    if (!be) return err && err->code ? err->code : PL_EUNSUPPORTED;
    m->be = be; /* before any weight: a device backend makes them where it keeps them */
    const pl_model_config *c = &m->cfg;
    int nt = 0;
    pl_init_tensor *ts = pl_model_init_tensors(c, 1, &nt);
    m->layers = pl_model_own(m, (size_t)c->n_layers * sizeof *m->layers);
    if (!ts || !m->layers) {
        free(ts);
        return pl_err_set(err, PL_ENOMEM, "%s: out of memory", m->path);
    }
    int64_t total = 0, done = 0;
    for (int i = 0; i < nt; i++) total += (int64_t)ts[i].bytes;
    pl_progress pr = {0};
    if (total >= ((int64_t)256 << 20)) pl_progress_begin(&pr, be->init_random ? "random model (device)" : "random model",
                                                        total >> 20, "MiB");
    for (int i = 0; i < nt && !rc; i++) {
        const pl_init_tensor *t = &ts[i];
        float **vec = NULL;
        pl_qweight *w = slot_weight(m, t, &vec);
        if (vec) { /* norms 1, biases 0, fp32 as every loader keeps them */
            float *v = pl_model_own(m, (size_t)t->rows * sizeof(float));
            if (!v) { rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", m->path); break; }
            for (int64_t k = 0; k < t->rows; k++) v[k] = t->kind == PL_INIT_ONES ? 1.0f : 0.0f;
            *vec = v;
        } else if (!w) {
            rc = pl_err_set(err, PL_EINVAL, "%s: %s: no place for this tensor", m->path, t->name);
        } else if (t->kind == PL_INIT_NF4) {
            pl_nf4 *q = pl_model_nf4_new(m, t->rows * t->cols, PL_INIT_NF4_BLOCK, 1);
            if (!q || pl_nf4_qweight(q, t->rows, t->cols, w))
                rc = pl_err_set(err, PL_ENOMEM, "%s: %s: out of memory", m->path, t->name);
            else rc = fill(m, t, w, seed, err);
        } else {
            uint16_t *d = pl_model_own(m, (size_t)(t->rows * t->cols) * 2);
            if (!d) { rc = pl_err_set(err, PL_ENOMEM, "%s: %s: out of memory", m->path, t->name); break; }
            *w = (pl_qweight){PL_BF16, t->rows, t->cols, (size_t)t->cols * 2, d, NULL};
            rc = fill(m, t, w, seed, err);
        }
        done += (int64_t)t->bytes;
        if (pr.active) pl_progress_update(&pr, done >> 20);
    }
    if (pr.active) pl_progress_end(&pr);
    free(ts);
    if (rc) return rc;
    if (c->tied_embeddings) m->lm_head = m->tok_embd;
    return pl_model_init_rope(m, NULL, err);
}
