/* gguf_write.c: a GGUF v3 writer (see gguf_write.h for the layout).
 *
 * Each key/value is kept already serialized (everything after its type
 * field), so writing is a copy and replacing a value is a swap. */
#include "gguf_write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf_write.c assumes a little-endian host"
#endif

#define GGUF_ALIGN 32
#define GGUF_MAX_NAME 63

typedef struct wkv {
    char *key;
    uint32_t vtype;
    unsigned char *val; /* serialized value */
    size_t len;
} wkv;

typedef struct wtensor {
    char *name;
    pl_dtype type;
    int n_dims;
    int64_t ne[4];
    size_t nbytes;
    const void *data;
    pl_gguf_fill_fn fill;
    void *ctx;
} wtensor;

struct pl_gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
};

pl_gguf_writer *pl_gguf_writer_new(void) { return calloc(1, sizeof(pl_gguf_writer)); }

void pl_gguf_writer_free(pl_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) { free(w->kv[i].key); free(w->kv[i].val); }
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

/* Bytes of one scalar of type vt; 0 for STRING/ARRAY/unknown. */
static size_t scalar_size(int vt) {
    switch (vt) {
    case PL_GGUF_UINT8: case PL_GGUF_INT8: case PL_GGUF_BOOL: return 1;
    case PL_GGUF_UINT16: case PL_GGUF_INT16: return 2;
    case PL_GGUF_UINT32: case PL_GGUF_INT32: case PL_GGUF_FLOAT32: return 4;
    case PL_GGUF_UINT64: case PL_GGUF_INT64: case PL_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

/* Store key -> (vtype, val[len]); val is taken over (freed on failure). */
static int put(pl_gguf_writer *w, const char *key, uint32_t vtype, unsigned char *val, size_t len, pl_err *err) {
    if (!key || !*key) {
        free(val);
        return pl_err_set(err, PL_EINVAL, "gguf writer: empty key");
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (!strcmp(w->kv[i].key, key)) {
            free(w->kv[i].val);
            w->kv[i].vtype = vtype;
            w->kv[i].val = val;
            w->kv[i].len = len;
            return 0;
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 32;
        wkv *n = realloc(w->kv, cap * sizeof *n);
        if (!n) { free(val); return pl_err_set(err, PL_ENOMEM, "gguf writer: out of memory"); }
        w->kv = n;
        w->cap_kv = cap;
    }
    char *k = strdup(key);
    if (!k) { free(val); return pl_err_set(err, PL_ENOMEM, "gguf writer: out of memory"); }
    w->kv[w->n_kv++] = (wkv){.key = k, .vtype = vtype, .val = val, .len = len};
    return 0;
}

void pl_gguf_unset(pl_gguf_writer *w, const char *key) {
    for (size_t i = 0; i < w->n_kv; i++) {
        if (!strcmp(w->kv[i].key, key)) {
            free(w->kv[i].key);
            free(w->kv[i].val);
            memmove(&w->kv[i], &w->kv[i + 1], (w->n_kv - i - 1) * sizeof *w->kv);
            w->n_kv--;
            return;
        }
    }
}

int pl_gguf_set_scalar(pl_gguf_writer *w, const char *key, int vtype, const void *value, pl_err *err) {
    size_t n = scalar_size(vtype);
    if (!n) return pl_err_set(err, PL_EINVAL, "gguf writer: key '%s': %d is not a scalar type", key, vtype);
    unsigned char *v = malloc(n);
    if (!v) return pl_err_set(err, PL_ENOMEM, "gguf writer: out of memory");
    memcpy(v, value, n);
    if (vtype == PL_GGUF_BOOL) v[0] = v[0] ? 1 : 0;
    return put(w, key, (uint32_t)vtype, v, n, err);
}

int pl_gguf_set_u32(pl_gguf_writer *w, const char *key, uint32_t v, pl_err *err) {
    return pl_gguf_set_scalar(w, key, PL_GGUF_UINT32, &v, err);
}
int pl_gguf_set_i32(pl_gguf_writer *w, const char *key, int32_t v, pl_err *err) {
    return pl_gguf_set_scalar(w, key, PL_GGUF_INT32, &v, err);
}
int pl_gguf_set_u64(pl_gguf_writer *w, const char *key, uint64_t v, pl_err *err) {
    return pl_gguf_set_scalar(w, key, PL_GGUF_UINT64, &v, err);
}
int pl_gguf_set_f32(pl_gguf_writer *w, const char *key, float v, pl_err *err) {
    return pl_gguf_set_scalar(w, key, PL_GGUF_FLOAT32, &v, err);
}
int pl_gguf_set_bool(pl_gguf_writer *w, const char *key, int v, pl_err *err) {
    uint8_t b = v ? 1 : 0;
    return pl_gguf_set_scalar(w, key, PL_GGUF_BOOL, &b, err);
}

int pl_gguf_set_strn(pl_gguf_writer *w, const char *key, const char *s, size_t len, pl_err *err) {
    unsigned char *v = malloc(8 + len);
    if (!v) return pl_err_set(err, PL_ENOMEM, "gguf writer: key '%s': out of memory", key);
    uint64_t l = len;
    memcpy(v, &l, 8);
    if (len) memcpy(v + 8, s, len);
    return put(w, key, PL_GGUF_STRING, v, 8 + len, err);
}

int pl_gguf_set_str(pl_gguf_writer *w, const char *key, const char *s, pl_err *err) {
    return pl_gguf_set_strn(w, key, s, strlen(s), err);
}

int pl_gguf_set_arr(pl_gguf_writer *w, const char *key, int elem_vtype, const void *data, uint64_t n,
                    pl_err *err) {
    size_t es = scalar_size(elem_vtype), bytes, total;
    if (!es) return pl_err_set(err, PL_EINVAL, "gguf writer: key '%s': arrays of type %d need pl_gguf_set_arr_str", key, elem_vtype);
    if (!pl_mul_ok((size_t)n, es, &bytes) || !pl_add_ok(bytes, 12, &total))
        return pl_err_set(err, PL_ERANGE, "gguf writer: key '%s': array of %llu elements is too large", key,
                          (unsigned long long)n);
    unsigned char *v = malloc(total);
    if (!v) return pl_err_set(err, PL_ENOMEM, "gguf writer: key '%s': out of memory", key);
    uint32_t et = (uint32_t)elem_vtype;
    memcpy(v, &et, 4);
    memcpy(v + 4, &n, 8);
    if (bytes) memcpy(v + 12, data, bytes);
    if (elem_vtype == PL_GGUF_BOOL)
        for (size_t i = 0; i < bytes; i++) v[12 + i] = v[12 + i] ? 1 : 0;
    return put(w, key, PL_GGUF_ARRAY, v, total, err);
}

int pl_gguf_set_arr_str(pl_gguf_writer *w, const char *key, const char *const *strs, const uint64_t *lens,
                        uint64_t n, pl_err *err) {
    size_t total = 12;
    for (uint64_t i = 0; i < n; i++) {
        size_t l = lens ? (size_t)lens[i] : strlen(strs[i]);
        if (!pl_add_ok(total, 8, &total) || !pl_add_ok(total, l, &total))
            return pl_err_set(err, PL_ERANGE, "gguf writer: key '%s': string array is too large", key);
    }
    unsigned char *v = malloc(total);
    if (!v) return pl_err_set(err, PL_ENOMEM, "gguf writer: key '%s': out of memory", key);
    uint32_t et = PL_GGUF_STRING;
    memcpy(v, &et, 4);
    memcpy(v + 4, &n, 8);
    size_t o = 12;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t l = lens ? lens[i] : strlen(strs[i]);
        memcpy(v + o, &l, 8);
        if (l) memcpy(v + o + 8, strs[i], (size_t)l);
        o += 8 + (size_t)l;
    }
    return put(w, key, PL_GGUF_ARRAY, v, total, err);
}

int pl_gguf_set_kv(pl_gguf_writer *w, const pl_gguf_kv *kv, pl_err *err) {
    char *key = strndup(kv->key.ptr, (size_t)kv->key.len);
    if (!key) return pl_err_set(err, PL_ENOMEM, "gguf writer: out of memory");
    int rc;
    if (kv->type == PL_GGUF_STRING) rc = pl_gguf_set_strn(w, key, kv->str.ptr, (size_t)kv->str.len, err);
    else if (kv->type == PL_GGUF_ARRAY && kv->arr_type == PL_GGUF_STRING) {
        const char **s = malloc((size_t)(kv->arr_len ? kv->arr_len : 1) * sizeof *s);
        uint64_t *l = malloc((size_t)(kv->arr_len ? kv->arr_len : 1) * sizeof *l);
        if (!s || !l) rc = pl_err_set(err, PL_ENOMEM, "gguf writer: key '%s': out of memory", key);
        else {
            for (uint64_t i = 0; i < kv->arr_len; i++) { s[i] = kv->strs[i].ptr; l[i] = kv->strs[i].len; }
            rc = pl_gguf_set_arr_str(w, key, s, l, kv->arr_len, err);
        }
        free(s);
        free(l);
    } else if (kv->type == PL_GGUF_ARRAY) rc = pl_gguf_set_arr(w, key, kv->arr_type, kv->data, kv->arr_len, err);
    else rc = pl_gguf_set_scalar(w, key, kv->type, kv->data, err);
    free(key);
    return rc;
}

static int add_tensor(pl_gguf_writer *w, const char *name, pl_dtype t, int n_dims, const int64_t *ne,
                      const void *data, pl_gguf_fill_fn fill, void *ctx, pl_err *err) {
    if (!name || !*name || strlen(name) > GGUF_MAX_NAME)
        return pl_err_set(err, PL_EINVAL, "gguf writer: tensor name '%s' must have 1..%d bytes", name ? name : "",
                          GGUF_MAX_NAME);
    if (n_dims < 1 || n_dims > 4)
        return pl_err_set(err, PL_EINVAL, "gguf writer: tensor '%s': %d dimensions (expected 1..4)", name, n_dims);
    if (!pl_dtype_block_bytes(t) || t == PL_NF4 || (int)t >= 90)
        return pl_err_set(err, PL_EUNSUPPORTED, "gguf writer: tensor '%s': dtype %s has no GGUF type", name,
                          pl_dtype_name(t));
    size_t rows = 1;
    for (int d = 1; d < n_dims; d++)
        if (ne[d] < 1 || !pl_mul_ok(rows, (size_t)ne[d], &rows))
            return pl_err_set(err, PL_EINVAL, "gguf writer: tensor '%s': bad dimension %d", name, d);
    size_t rb = ne[0] >= 1 ? pl_dtype_row_bytes(t, ne[0]) : 0, nbytes;
    if (!rb)
        return pl_err_set(err, PL_EINVAL, "gguf writer: tensor '%s': ne[0] = %lld is not a whole number of %s blocks",
                          name, (long long)ne[0], pl_dtype_name(t));
    if (!pl_mul_ok(rb, rows, &nbytes))
        return pl_err_set(err, PL_ERANGE, "gguf writer: tensor '%s' is too large", name);
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name))
            return pl_err_set(err, PL_EINVAL, "gguf writer: tensor '%s' added twice", name);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *n = realloc(w->t, cap * sizeof *n);
        if (!n) return pl_err_set(err, PL_ENOMEM, "gguf writer: out of memory");
        w->t = n;
        w->cap_t = cap;
    }
    wtensor *x = &w->t[w->n_t];
    memset(x, 0, sizeof *x);
    x->name = strdup(name);
    if (!x->name) return pl_err_set(err, PL_ENOMEM, "gguf writer: out of memory");
    x->type = t;
    x->n_dims = n_dims;
    for (int d = 0; d < n_dims; d++) x->ne[d] = ne[d];
    x->nbytes = nbytes;
    x->data = data;
    x->fill = fill;
    x->ctx = ctx;
    w->n_t++;
    return 0;
}

int pl_gguf_add_tensor(pl_gguf_writer *w, const char *name, pl_dtype t, int n_dims, const int64_t *ne,
                       const void *data, pl_err *err) {
    if (!data) return pl_err_set(err, PL_EINVAL, "gguf writer: tensor '%s': no data", name ? name : "");
    return add_tensor(w, name, t, n_dims, ne, data, NULL, NULL, err);
}

int pl_gguf_add_tensor_fill(pl_gguf_writer *w, const char *name, pl_dtype t, int n_dims, const int64_t *ne,
                            pl_gguf_fill_fn fill, void *ctx, pl_err *err) {
    if (!fill) return pl_err_set(err, PL_EINVAL, "gguf writer: tensor '%s': no fill function", name ? name : "");
    return add_tensor(w, name, t, n_dims, ne, NULL, fill, ctx, err);
}

static size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

static int wr(pl_afile *f, const void *p, size_t n, const char *path, pl_err *err) {
    if (n && fwrite(p, 1, n, f->fp) != n) return pl_err_set(err, PL_EIO, "%s: write failed", path);
    return 0;
}

static int wr_pad(pl_afile *f, size_t n, const char *path, pl_err *err) {
    static const unsigned char z[64];
    while (n) {
        size_t k = n < sizeof z ? n : sizeof z;
        if (wr(f, z, k, path, err)) return PL_EIO;
        n -= k;
    }
    return 0;
}

int pl_gguf_writer_write(pl_gguf_writer *w, const char *path, pl_err *err) {
    size_t align = GGUF_ALIGN;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, "general.alignment")) continue;
        uint32_t a = 0;
        if (w->kv[i].vtype != PL_GGUF_UINT32 || (memcpy(&a, w->kv[i].val, 4), a == 0) || (a & (a - 1)) ||
            a > (1u << 20))
            return pl_err_set(err, PL_EINVAL, "%s: general.alignment must be a u32 power of two", path);
        align = a;
    }
    pl_afile f;
    int rc = pl_afile_open(&f, path, err);
    if (rc) return rc;
    size_t pos = 0;
    uint32_t version = 3;
    uint64_t nt = w->n_t, nkv = w->n_kv;
#define W(p, n) do { if ((rc = wr(&f, (p), (n), path, err))) goto fail; pos += (n); } while (0)
    W("GGUF", 4);
    W(&version, 4);
    W(&nt, 8);
    W(&nkv, 8);
    for (size_t i = 0; i < w->n_kv; i++) {
        uint64_t kl = strlen(w->kv[i].key);
        W(&kl, 8);
        W(w->kv[i].key, (size_t)kl);
        W(&w->kv[i].vtype, 4);
        W(w->kv[i].val, w->kv[i].len);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        wtensor *t = &w->t[i];
        uint64_t nl = strlen(t->name);
        uint32_t nd = (uint32_t)t->n_dims, ty = (uint32_t)t->type;
        W(&nl, 8);
        W(t->name, (size_t)nl);
        W(&nd, 4);
        for (int d = 0; d < t->n_dims; d++) { uint64_t e = (uint64_t)t->ne[d]; W(&e, 8); }
        W(&ty, 4);
        W(&off, 8);
        off = align_up((size_t)off + t->nbytes, align);
    }
    if ((rc = wr_pad(&f, align_up(pos, align) - pos, path, err))) goto fail;
    for (size_t i = 0; i < w->n_t; i++) {
        wtensor *t = &w->t[i];
        if (t->fill) {
            void *buf = malloc(t->nbytes ? t->nbytes : 1);
            if (!buf) { rc = pl_err_set(err, PL_ENOMEM, "%s: tensor '%s': out of memory", path, t->name); goto fail; }
            rc = t->fill(t->ctx, buf, t->nbytes, err);
            if (!rc) rc = wr(&f, buf, t->nbytes, path, err);
            free(buf);
            if (rc) goto fail;
        } else if ((rc = wr(&f, t->data, t->nbytes, path, err))) goto fail;
        if (i + 1 < w->n_t && (rc = wr_pad(&f, align_up(t->nbytes, align) - t->nbytes, path, err))) goto fail;
    }
#undef W
    return pl_afile_commit(&f, err);
fail:
    pl_afile_abort(&f);
    return rc;
}
