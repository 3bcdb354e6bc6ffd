/* model_nf4.c: a model with an NF4 base: quantizing its layer weights
 * (lora/nf4.h does the format), the on-disk cache of a quantized base, and
 * the layer weights of a bitsandbytes-4bit checkpoint. */
#include "model_nf4.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/atomic.h"
#include "../core/mapfile.h"
#include "../core/sha256.h"
#include "model_int.h"
#include "plan.h"
#include <cjson/cJSON.h>

static size_t al8(size_t x) { return (x + 7) & ~(size_t)7; }

/* ---- NF4 bases for pl_model --------------------------------------------------- */

static const char *const lin_names[7] = {"q", "k", "v", "o", "gate", "up", "down"};

static void layer_weights(pl_layer *L, pl_qweight *ws[7]) {
    ws[0] = &L->wq; ws[1] = &L->wk; ws[2] = &L->wv; ws[3] = &L->wo;
    ws[4] = &L->w_gate; ws[5] = &L->w_up; ws[6] = &L->w_down;
}

pl_nf4 *pl_model_nf4_new(pl_model *m, int64_t n, int blocksize, int double_quant) {
    pl_nf4 shape;
    if (pl_nf4_shape(&shape, n, blocksize, double_quant)) return NULL;
    /* the plan's size of one model-held NF4 tensor (trainer/plan.h): header + arrays */
    const size_t head = al8(sizeof(pl_nf4)), total = pl_plan_nf4_tensor_bytes(n, blocksize, double_quant);
    if (total < head) return NULL;
    const size_t bytes = total - head;
    unsigned char *p = pl_model_own(m, total);
    if (!p) return NULL;
    pl_nf4 *q = (pl_nf4 *)(void *)p;
    *q = shape;
    pl_nf4_layout(q, p + head);
    q->buf = NULL;
    q->buf_bytes = bytes;
    return q;
}

/* Does p point into the model file's map (GGUF, safetensors), not into
 * memory the model owns or a llama2.c checkpoint read into a buffer? */
static int from_file_map(const pl_model *m, const void *p) {
    if (!p || m->source == PL_SRC_LLAMA2C) return 0;
    for (int i = 0; i < m->n_owned; i++)
        if (m->owned[i] == p) return 0;
    return 1;
}

int pl_model_nf4_quantize(pl_model *m, int blocksize, int double_quant, pl_err *err) {
    return pl_model_nf4_quantize_on(m, blocksize, double_quant, NULL, err);
}

int pl_model_nf4_quantize_on(pl_model *m, int blocksize, int double_quant, int *on_device, pl_err *err) {
    if (on_device) *on_device = 0;
    if (!pl_nf4_valid_blocksize(blocksize))
        return pl_err_set(err, PL_EINVAL, "%s: nf4 blocksize %d: expected a power of two in 32..4096", m->path,
                          blocksize);
    float *tmp = NULL;
    size_t cap = 0;
    int rc = 0;
    for (int l = 0; l < m->cfg.n_layers && !rc; l++) {
        pl_qweight *ws[7];
        layer_weights(&m->layers[l], ws);
        for (int i = 0; i < 7 && !rc; i++) {
            pl_qweight *w = ws[i];
            if (w->dtype == PL_NF4) continue;
            size_t n, bytes;
            if (w->rows <= 0 || w->cols <= 0 || !pl_mul_ok((size_t)w->rows, (size_t)w->cols, &n) ||
                !pl_mul_ok(n, sizeof(float), &bytes)) {
                rc = pl_err_set(err, PL_ERANGE, "%s: layer %d %s weight: %lld x %lld is not a valid size", m->path,
                                l, lin_names[i], (long long)w->rows, (long long)w->cols);
                break;
            }
            const pl_backend *be = m->be;
            if (be && be->quantize_nf4 && double_quant && (w->dtype == PL_BF16 || w->dtype == PL_F16) && !w->aux &&
                w->row_bytes == (size_t)w->cols * 2) {
                /* on the device (a BF16/F16 weight as stored goes there whole; the NF4 bytes come back) */
                pl_nf4 *q = pl_model_nf4_new(m, (int64_t)n, blocksize, double_quant);
                if (!q) {
                    rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory quantizing layer %d %s weight to nf4", m->path,
                                    l, lin_names[i]);
                    break;
                }
                int drc = be->quantize_nf4(q, w);
                if (drc) {
                    pl_err e2 = {0};
                    rc = be->take_error(&e2);
                    rc = pl_err_set(err, rc ? rc : drc, "%s: layer %d %s weight: %s", m->path, l, lin_names[i],
                                    e2.msg[0] ? e2.msg : "quantizing on the device failed");
                    break;
                }
                const int64_t rows = w->rows, cols = w->cols;
                if (from_file_map(m, w->data)) pl_map_drop(w->data, pl_dtype_row_bytes(w->dtype, cols) * (size_t)rows);
                pl_nf4_qweight(q, rows, cols, w);
                if (on_device) (*on_device)++;
                continue;
            }
            if (bytes > cap) { /* one tensor's fp32 rows at most */
                float *t = realloc(tmp, bytes);
                if (!t) {
                    rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory for layer %d %s weight (%zu bytes)", m->path,
                                    l, lin_names[i], bytes);
                    break;
                }
                tmp = t;
                cap = bytes;
            }
            for (int64_t r = 0; r < w->rows && !rc; r++)
                if (pl_qweight_row(w, r, tmp + (size_t)r * (size_t)w->cols))
                    rc = pl_err_set(err, PL_EUNSUPPORTED, "%s: layer %d %s weight: cannot read %s rows", m->path, l,
                                    lin_names[i], pl_dtype_name(w->dtype));
            if (rc) break;
            pl_nf4 *q = pl_model_nf4_new(m, (int64_t)n, blocksize, double_quant);
            if (!q) {
                rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory quantizing layer %d %s weight to nf4", m->path, l,
                                lin_names[i]);
                break;
            }
            pl_err e2;
            if (pl_nf4_fill(tmp, q, &e2)) {
                rc = pl_err_set(err, e2.code, "%s: layer %d %s weight: %s", m->path, l, lin_names[i], e2.msg);
                break;
            }
            const int64_t rows = w->rows, cols = w->cols;
            /* the stored rows were read once, from the model file's map: drop
             * those pages from the resident set (the NF4 copy is what the
             * model reads from now on; the page cache keeps them if it can) */
            if (from_file_map(m, w->data)) pl_map_drop(w->data, pl_dtype_row_bytes(w->dtype, cols) * (size_t)rows);
            pl_nf4_qweight(q, rows, cols, w);
        }
    }
    free(tmp);
    return rc;
}

/* ---- the quantized-base cache ------------------------------------------------ */

#define CACHE_MAGIC "PLNF4CA\n"
#define CACHE_VERSION 1u
#define CACHE_HEAD 56
#define CACHE_MAX_NAME 255

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* sha256("potluck nf4 cache v1" | sha256 of each source weight file, in
 * order | blocksize u32 | double_quant u32). */
static int cache_key(const pl_model *m, int blocksize, int double_quant, uint8_t key[32], pl_err *err) {
    pl_sha256 *h = pl_sha256_new();
    if (!h) return pl_err_set(err, PL_ENOMEM, "%s: out of memory for sha256", m->path);
    static const char tag[] = "potluck nf4 cache v1";
    pl_sha256_update(h, tag, sizeof tag - 1);
    int n_files = 0;
    for (int f = 0;; f++) {
        const char *p = m->st ? pl_st_file_path(m->st, f) : f == 0 ? m->path : NULL;
        if (!p) break;
        uint8_t d[32];
        int rc = pl_sha256_file(p, d, err);
        if (rc) {
            pl_sha256_final(h, d);
            return rc;
        }
        pl_sha256_update(h, d, 32);
        n_files++;
    }
    unsigned char tail[8];
    put_u32(tail, (uint32_t)blocksize);
    put_u32(tail + 4, (uint32_t)!!double_quant);
    pl_sha256_update(h, tail, 8);
    pl_sha256_final(h, key);
    if (!n_files) return pl_err_set(err, PL_EINVAL, "%s: no source weight files to key the nf4 cache on", m->path);
    return 0;
}

static size_t absmax_bytes(const pl_nf4 *q) {
    return (size_t)q->n_blocks * (q->double_quant ? 1 : sizeof(float));
}

static int cache_write(pl_afile *f, pl_sha256 *h, const void *p, size_t n) {
    if (!n) return 0;
    pl_sha256_update(h, p, n);
    return fwrite(p, 1, n, f->fp) == n ? 0 : -1;
}

int pl_model_nf4_cache_save(const pl_model *m, const char *path, pl_err *err) {
    const int L = m->cfg.n_layers;
    if (L <= 0 || !m->layers)
        return pl_err_set(err, PL_EINVAL, "%s: nf4 cache: the model has no layers", path);
    const pl_nf4 *q0 = m->layers[0].wq.dtype == PL_NF4 ? m->layers[0].wq.data : NULL;
    if (!q0) return pl_err_set(err, PL_EINVAL, "%s: nf4 cache: the model's layer weights are not NF4", path);
    for (int l = 0; l < L; l++) {
        pl_qweight *ws[7];
        layer_weights(&m->layers[l], ws);
        for (int i = 0; i < 7; i++) {
            const pl_nf4 *q = ws[i]->data;
            if (ws[i]->dtype != PL_NF4 || !q || q->blocksize != q0->blocksize || q->double_quant != q0->double_quant)
                return pl_err_set(err, PL_EINVAL, "%s: nf4 cache: layer %d %s weight is not NF4 (blocksize %d, dq %d)",
                                  path, l, lin_names[i], q0->blocksize, q0->double_quant);
        }
    }
    unsigned char head[CACHE_HEAD];
    memcpy(head, CACHE_MAGIC, 8);
    put_u32(head + 8, CACHE_VERSION);
    put_u32(head + 12, (uint32_t)q0->blocksize);
    put_u32(head + 16, (uint32_t)q0->double_quant);
    put_u32(head + 20, (uint32_t)(7 * L));
    int rc = cache_key(m, q0->blocksize, q0->double_quant, head + 24, err);
    if (rc) return pl_err_prefix(err, "nf4 cache %s", path);
    pl_afile f;
    if ((rc = pl_afile_open(&f, path, err))) return rc;
    pl_sha256 *h = pl_sha256_new();
    int bad = !h || cache_write(&f, h, head, CACHE_HEAD);
    for (int l = 0; l < L && !bad; l++) {
        pl_qweight *ws[7];
        layer_weights(&m->layers[l], ws);
        for (int i = 0; i < 7 && !bad; i++) {
            const pl_nf4 *q = ws[i]->data;
            char name[64];
            int nl = snprintf(name, sizeof name, "layers.%d.%s", l, lin_names[i]);
            unsigned char rec[4 + CACHE_MAX_NAME + 8 * 4 + 4 + 8], *p = rec;
            put_u32(p, (uint32_t)nl); p += 4;
            memcpy(p, name, (size_t)nl); p += nl;
            put_u64(p, (uint64_t)ws[i]->rows); p += 8;
            put_u64(p, (uint64_t)ws[i]->cols); p += 8;
            put_u64(p, (uint64_t)q->n_blocks); p += 8;
            put_u64(p, (uint64_t)q->n_nested); p += 8;
            uint32_t ob;
            memcpy(&ob, &q->offset, 4);
            put_u32(p, ob); p += 4;
            const size_t pk = (size_t)(q->n + 1) / 2, ab = absmax_bytes(q), nb = (size_t)q->n_nested * sizeof(float);
            put_u64(p, (uint64_t)(pk + ab + nb)); p += 8;
            const void *am = q->double_quant ? (const void *)q->absmax_q : (const void *)q->absmax;
            bad = cache_write(&f, h, rec, (size_t)(p - rec)) || cache_write(&f, h, q->packed, pk) ||
                  cache_write(&f, h, am, ab) || cache_write(&f, h, q->nested_absmax, nb);
        }
    }
    uint8_t d[32];
    if (h) pl_sha256_final(h, d);
    if (!bad) bad = fwrite(d, 1, 32, f.fp) != 32;
    if (bad) {
        int e = errno;
        pl_afile_abort(&f);
        return h ? pl_err_set(err, PL_EIO, "%s: writing the nf4 cache: %s", path, strerror(e))
                 : pl_err_set(err, PL_ENOMEM, "%s: out of memory for sha256", path);
    }
    return pl_afile_commit(&f, err);
}

/* One tensor record of a mapped cache, validated against the model. */
typedef struct cache_rec {
    pl_qweight *w;
    int64_t n_blocks, n_nested;
    float offset;
    const unsigned char *data; /* packed | absmax | nested */
} cache_rec;

int pl_model_nf4_cache_load(pl_model *m, const char *path, pl_err *err) {
    pl_map map;
    int rc = pl_map_open(&map, path, err);
    if (rc) return rc;
    const unsigned char *b = map.data;
    const size_t size = map.size;
    const int L = m->cfg.n_layers;
    cache_rec *recs = NULL;
    if (size < CACHE_HEAD + 32) {
        rc = pl_err_set(err, PL_EFORMAT, "%s: nf4 cache: %zu bytes, expected at least %d (header + checksum)", path,
                        size, CACHE_HEAD + 32);
        goto out;
    }
    if (memcmp(b, CACHE_MAGIC, 8) != 0) {
        rc = pl_err_set(err, PL_EFORMAT, "%s: nf4 cache: bad magic (not a potluck nf4 cache)", path);
        goto out;
    }
    if (get_u32(b + 8) != CACHE_VERSION) {
        rc = pl_err_set(err, PL_EUNSUPPORTED, "%s: nf4 cache: version %u, expected %u", path, get_u32(b + 8),
                        CACHE_VERSION);
        goto out;
    }
    uint8_t d[32];
    pl_sha256_buf(b, size - 32, d);
    if (memcmp(d, b + size - 32, 32) != 0) {
        rc = pl_err_set(err, PL_EFORMAT, "%s: nf4 cache: checksum mismatch (truncated or corrupted file)", path);
        goto out;
    }
    const uint32_t bs = get_u32(b + 12), dq = get_u32(b + 16), nt = get_u32(b + 20);
    if (!pl_nf4_valid_blocksize(bs) || dq > 1) {
        rc = pl_err_set(err, PL_EFORMAT, "%s: nf4 cache: blocksize %u / double_quant %u out of range", path, bs, dq);
        goto out;
    }
    if (L <= 0 || !m->layers || nt != 7u * (uint32_t)L) {
        rc = pl_err_set(err, PL_EFORMAT, "%s: nf4 cache: %u tensors, the model has %d", path, nt, 7 * L);
        goto out;
    }
    uint8_t key[32];
    if ((rc = cache_key(m, (int)bs, (int)dq, key, err))) {
        pl_err_prefix(err, "nf4 cache %s", path);
        goto out;
    }
    if (memcmp(key, b + 24, 32) != 0) {
        rc = pl_err_set(err, PL_EINVAL, "%s: nf4 cache: made from other weights or settings than %s (blocksize %u, "
                        "double_quant %u): key mismatch", path, m->path, bs, dq);
        goto out;
    }
    recs = calloc(nt, sizeof *recs);
    if (!recs) {
        rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    /* pass 1: every record checked against the file size and the model */
    size_t pos = CACHE_HEAD;
    const size_t end = size - 32;
    for (uint32_t t = 0; t < nt; t++) {
        const int l = (int)(t / 7), i = (int)(t % 7);
        pl_qweight *ws[7];
        layer_weights(&m->layers[l], ws);
        char want[64];
        const int wl = snprintf(want, sizeof want, "layers.%d.%s", l, lin_names[i]);
        if (end - pos < 4 || get_u32(b + pos) != (uint32_t)wl || end - pos - 4 < (size_t)wl + 44 ||
            memcmp(b + pos + 4, want, (size_t)wl) != 0) {
            rc = pl_err_set(err, PL_EFORMAT, "%s: nf4 cache: record %u at byte %zu: expected tensor '%s'", path, t,
                            pos, want);
            goto out;
        }
        const unsigned char *p = b + pos + 4 + wl;
        const uint64_t rows = get_u64(p), cols = get_u64(p + 8), nbk = get_u64(p + 16), nns = get_u64(p + 24);
        const uint32_t ob = get_u32(p + 32);
        const uint64_t db = get_u64(p + 36);
        pl_nf4 shape;
        if (rows != (uint64_t)ws[i]->rows || cols != (uint64_t)ws[i]->cols ||
            pl_nf4_shape(&shape, ws[i]->rows * ws[i]->cols, (int)bs, (int)dq) || (uint64_t)shape.n_blocks != nbk ||
            (uint64_t)shape.n_nested != nns) {
            rc = pl_err_set(err, PL_ERANGE, "%s: nf4 cache: '%s': shape %llu x %llu with %llu blocks / %llu nested, "
                            "expected %lld x %lld", path, want, (unsigned long long)rows, (unsigned long long)cols,
                            (unsigned long long)nbk, (unsigned long long)nns, (long long)ws[i]->rows,
                            (long long)ws[i]->cols);
            goto out;
        }
        const size_t need = (size_t)(shape.n + 1) / 2 + absmax_bytes(&shape) + (size_t)shape.n_nested * sizeof(float);
        pos += 4 + (size_t)wl + 44;
        if (db != need || end - pos < need) {
            rc = pl_err_set(err, PL_ERANGE, "%s: nf4 cache: '%s': %llu data bytes at byte %zu, expected %zu within "
                            "the file (%zu bytes)", path, want, (unsigned long long)db, pos, need, size);
            goto out;
        }
        recs[t].w = ws[i];
        recs[t].n_blocks = shape.n_blocks;
        recs[t].n_nested = shape.n_nested;
        memcpy(&recs[t].offset, &ob, 4);
        recs[t].data = b + pos;
        pos += need;
    }
    if (pos != end) {
        rc = pl_err_set(err, PL_EFORMAT, "%s: nf4 cache: %zu unexpected bytes after the last tensor", path, end - pos);
        goto out;
    }
    /* pass 2: copy into model-owned tensors (only allocation can fail here;
     * weights already replaced stay valid) */
    for (uint32_t t = 0; t < nt; t++) {
        pl_qweight *w = recs[t].w;
        const int64_t rows = w->rows, cols = w->cols;
        pl_nf4 *q = pl_model_nf4_new(m, rows * cols, (int)bs, (int)dq);
        if (!q) {
            rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory loading the nf4 cache", path);
            goto out;
        }
        const size_t pk = (size_t)(q->n + 1) / 2, ab = absmax_bytes(q), nb = (size_t)q->n_nested * sizeof(float);
        memcpy(q->packed, recs[t].data, pk);
        memcpy(q->double_quant ? (void *)q->absmax_q : (void *)q->absmax, recs[t].data + pk, ab);
        if (nb) memcpy(q->nested_absmax, recs[t].data + pk + ab, nb);
        q->offset = recs[t].offset;
        if (q->double_quant) memcpy(q->code, pl_nf4_dynamic_map, sizeof q->code);
        pl_nf4_qweight(q, rows, cols, w);
    }
out:
    free(recs);
    pl_map_close(&map);
    return rc;
}

/* ---- bitsandbytes-4bit checkpoints (*-bnb-4bit) ------------------------------ */

/* The companion tensor "<name>.<suffix>" with the given dtype and element
 * count (-1: any); NULL with err set otherwise. */
static const pl_st_tensor *bnb_part(pl_model *m, const char *name, const char *suffix, pl_dtype dt, int64_t count,
                                    pl_err *err) {
    char full[512];
    if (snprintf(full, sizeof full, "%s.%s", name, suffix) >= (int)sizeof full) {
        pl_err_set(err, PL_EINVAL, "%s: tensor name '%s' too long", m->path, name);
        return NULL;
    }
    const pl_st_tensor *t = pl_st_find(m->st, full);
    if (!t) {
        pl_err_set(err, PL_ENOTFOUND, "%s: 4-bit tensor '%s': missing '%s'", m->path, name, full);
        return NULL;
    }
    if (t->dtype != dt || (count >= 0 && t->n_elems != count) || t->nbytes != (size_t)t->n_elems * pl_dtype_block_bytes(dt)) {
        pl_err_set(err, PL_EFORMAT, "%s: '%s': expected %s with %lld elements, found %s with %lld", m->path, full,
                   pl_dtype_name(dt), (long long)count, pl_dtype_name(t->dtype), (long long)t->n_elems);
        return NULL;
    }
    return t;
}

static int json_num(const cJSON *j, const char *key, double *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsNumber(it)) return -1;
    *out = it->valuedouble;
    return 0;
}

int pl_model_nf4_bnb_weight(pl_model *m, const char *name, int64_t rows, int64_t cols, pl_qweight *w, pl_err *err) {
    memset(w, 0, sizeof *w);
    if (!m->st) return pl_err_set(err, PL_EINVAL, "%s: '%s': 4-bit weights need a safetensors model", m->path, name);
    if (strncmp(name, "model.layers.", 13) != 0)
        return pl_err_set(err, PL_EUNSUPPORTED, "%s: '%s': only the layers' linear weights may be 4-bit", m->path, name);
    if (rows <= 0 || cols <= 0 || rows > ((int64_t)1 << 46) / cols)
        return pl_err_set(err, PL_ERANGE, "%s: '%s': shape %lld x %lld out of range", m->path, name, (long long)rows,
                          (long long)cols);
    const pl_st_tensor *t = pl_st_find(m->st, name);
    if (!t) return pl_err_set(err, PL_ENOTFOUND, "%s: missing tensor '%s'", m->path, name);
    const pl_st_tensor *js = bnb_part(m, name, "quant_state.bitsandbytes__nf4", PL_U8, -1, err);
    if (!js) return err ? err->code : PL_EFORMAT; /* (FP4 checkpoints land here too: NF4 only) */
    if (js->n_elems <= 0 || js->n_elems > 65536)
        return pl_err_set(err, PL_ERANGE, "%s: '%s' quant state: %lld bytes, expected 1..65536", m->path, name,
                          (long long)js->n_elems);
    cJSON *j = cJSON_ParseWithLength((const char *)js->data, (size_t)js->n_elems);
    if (!j) return pl_err_set(err, PL_EFORMAT, "%s: '%s' quant state: not JSON", m->path, name);
    double bsd = 0, nbs = 0, noff = 0;
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *qt = cJSON_GetObjectItemCaseSensitive(j, "quant_type");
    int rc = 0;
    const int nested = cJSON_GetObjectItemCaseSensitive(j, "nested_blocksize") != NULL;
    if (json_num(j, "blocksize", &bsd) || !(bsd >= 32 && bsd <= 4096) || !pl_nf4_valid_blocksize((int64_t)bsd) ||
        bsd != (double)(int64_t)bsd)
        rc = pl_err_set(err, PL_EFORMAT, "%s: '%s' quant state: blocksize missing or not a power of two in 32..4096",
                        m->path, name);
    else if (!cJSON_IsString(qt) || strcmp(qt->valuestring, "nf4") != 0)
        rc = pl_err_set(err, PL_EUNSUPPORTED, "%s: '%s' quant state: quant_type %s, expected \"nf4\"", m->path, name,
                        cJSON_IsString(qt) ? qt->valuestring : "missing");
    else if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) != 2 ||
             !cJSON_IsNumber(cJSON_GetArrayItem(shape, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(shape, 1)) ||
             cJSON_GetArrayItem(shape, 0)->valuedouble != (double)rows ||
             cJSON_GetArrayItem(shape, 1)->valuedouble != (double)cols)
        rc = pl_err_set(err, PL_EFORMAT, "%s: '%s' quant state: shape is not [%lld, %lld]", m->path, name,
                        (long long)rows, (long long)cols);
    else if (nested && (json_num(j, "nested_blocksize", &nbs) || nbs != PL_NF4_NESTED_BLOCK ||
                        json_num(j, "nested_offset", &noff) || !isfinite(noff)))
        rc = pl_err_set(err, PL_EUNSUPPORTED, "%s: '%s' quant state: expected nested_blocksize %d and a finite "
                        "nested_offset", m->path, name, PL_NF4_NESTED_BLOCK);
    cJSON_Delete(j);
    if (rc) return rc;
    pl_nf4 shp;
    pl_nf4_shape(&shp, rows * cols, (int)bsd, nested);
    const int64_t packed = (shp.n + 1) / 2;
    if (t->dtype != PL_U8 || t->n_elems != packed || t->nbytes != (size_t)packed)
        return pl_err_set(err, PL_EFORMAT, "%s: '%s': expected %lld packed bytes (U8), found %s with %lld elements",
                          m->path, name, (long long)packed, pl_dtype_name(t->dtype), (long long)t->n_elems);
    const pl_st_tensor *qm = bnb_part(m, name, "quant_map", PL_F32, 16, err);
    if (!qm) return err ? err->code : PL_EFORMAT;
    if (memcmp(qm->data, pl_nf4_code, sizeof pl_nf4_code) != 0)
        return pl_err_set(err, PL_EUNSUPPORTED, "%s: '%s.quant_map' is not the NF4 code", m->path, name);
    const pl_st_tensor *ab = NULL, *na = NULL, *nm = NULL;
    if (nested) {
        if (!(ab = bnb_part(m, name, "absmax", PL_U8, shp.n_blocks, err)) ||
            !(na = bnb_part(m, name, "nested_absmax", PL_F32, shp.n_nested, err)) ||
            !(nm = bnb_part(m, name, "nested_quant_map", PL_F32, 256, err)))
            return err ? err->code : PL_EFORMAT;
    } else if (!(ab = bnb_part(m, name, "absmax", PL_F32, shp.n_blocks, err))) {
        return err ? err->code : PL_EFORMAT;
    }
    pl_nf4 *q = pl_model_nf4_new(m, rows * cols, (int)bsd, nested);
    if (!q) return pl_err_set(err, PL_ENOMEM, "%s: out of memory for '%s'", m->path, name);
    memcpy(q->packed, t->data, (size_t)packed);
    pl_map_drop(t->data, (size_t)packed); /* the copy is what the model reads: not twice in memory */
    if (nested) {
        memcpy(q->absmax_q, ab->data, (size_t)shp.n_blocks);
        memcpy(q->nested_absmax, na->data, (size_t)shp.n_nested * sizeof(float));
        memcpy(q->code, nm->data, sizeof q->code);
        q->offset = (float)noff;
    } else {
        memcpy(q->absmax, ab->data, (size_t)shp.n_blocks * sizeof(float));
    }
    return pl_nf4_qweight(q, rows, cols, w) ? pl_err_set(err, PL_EINVAL, "%s: '%s': bad shape", m->path, name) : 0;
}
