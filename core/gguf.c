/* gguf.c: a validating reader for GGUF v2/v3 files (llama.cpp's model format).
 *
 * Layout (all little-endian):
 *   "GGUF" u32 version, u64 n_tensors, u64 n_kv
 *   n_kv x   { string key, u32 type, value }
 *   n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset }
 *   padding to general.alignment (default 32), then the tensor data section.
 * A string is u64 length + bytes; an array is u32 element type + u64 count +
 * elements. Every count and length is checked against the bytes that remain
 * before anything is allocated or read, so the allocations made here are
 * bounded by a small multiple of the file size. */
#include "gguf.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c assumes a little-endian host"
#endif

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
/* Smallest possible encodings, used to bound counts by the bytes left. */
#define MIN_KV_BYTES (8 + 4 + 1)                 /* empty key, type, 1-byte value */
#define MIN_TENSOR_BYTES (8 + 4 + 8 + 4 + 8)     /* empty name, n_dims, 1 dim, type, offset */

/* Open-addressing hash sets of indexes + 1, used while parsing to find
 * duplicate keys and tensor names in linear time. (Lookups afterwards scan:
 * files hold tens of keys and hundreds of tensors, and a pl_gguf stays a
 * plain struct.) */
typedef struct {
    size_t *kv_slots, kv_cap;
    size_t *t_slots, t_cap;
} dup_tables;

/* ------------------------------------------------------------------ helpers */

/* Render untrusted bytes (a key or tensor name) for a message: at most 64
 * bytes, non-printable and non-ASCII bytes as \xNN. */
static void show(char *buf, size_t n, const char *p, uint64_t len) {
    size_t o = 0;
    uint64_t lim = len > 64 ? 64 : len;
    for (uint64_t i = 0; i < lim && o + 5 < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') buf[o++] = (char)c;
        else o += (size_t)snprintf(buf + o, n - o, "\\x%02x", c);
    }
    if (lim < len && o + 4 < n) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o < n ? o : n - 1] = '\0';
}

static uint64_t hash_bytes(const char *p, size_t len) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

static size_t table_cap(uint64_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    return cap;
}

static pl_str kv_key(const pl_gguf *g, size_t i) { return g->kv[i].key; }
static pl_str tensor_key(const pl_gguf *g, size_t i) {
    pl_str s = {g->tensors[i].name, strlen(g->tensors[i].name)};
    return s;
}

/* Find (ptr,len) in a table; returns the index or SIZE_MAX; *slot_out gets
 * the slot where it is or where it would go. */
static size_t table_find(const pl_gguf *g, const size_t *slots, size_t cap, pl_str (*key_of)(const pl_gguf *, size_t),
                         const char *p, size_t len, size_t *slot_out) {
    size_t mask = cap - 1, s = (size_t)hash_bytes(p, len) & mask;
    for (;;) {
        if (slots[s] == 0) {
            if (slot_out) *slot_out = s;
            return SIZE_MAX;
        }
        pl_str k = key_of(g, slots[s] - 1);
        if (k.len == len && (len == 0 || memcmp(k.ptr, p, len) == 0)) {
            if (slot_out) *slot_out = s;
            return slots[s] - 1;
        }
        s = (s + 1) & mask;
    }
}

/* ------------------------------------------------------------------ reader */

typedef struct {
    const unsigned char *p;
    size_t size, pos;
    const char *path;
    pl_err *err;
    char where[400]; /* "kv #3 'general.name'", "tensor #5 'output.weight'", "header" */
} rd;

static int need(rd *r, size_t n, const char *what) {
    if (n <= r->size - r->pos) return PL_OK;
    return pl_err_set(r->err, PL_EFORMAT,
                      "%s: %s: %s needs %zu bytes at byte %zu, but the file ends at %zu bytes (truncated?)", r->path,
                      r->where, what, n, r->pos, r->size);
}

static int rd_u32(rd *r, uint32_t *v, const char *what) {
    int rc = need(r, 4, what);
    if (rc) return rc;
    memcpy(v, r->p + r->pos, 4);
    r->pos += 4;
    return PL_OK;
}

static int rd_u64(rd *r, uint64_t *v, const char *what) {
    int rc = need(r, 8, what);
    if (rc) return rc;
    memcpy(v, r->p + r->pos, 8);
    r->pos += 8;
    return PL_OK;
}

static int rd_str(rd *r, pl_str *s, const char *what) {
    uint64_t len;
    size_t at = r->pos;
    int rc = rd_u64(r, &len, what);
    if (rc) return rc;
    if (len > r->size - r->pos)
        return pl_err_set(r->err, PL_EFORMAT,
                          "%s: %s: %s length %" PRIu64 " at byte %zu runs past the end of the file (%zu bytes)",
                          r->path, r->where, what, len, at, r->size);
    s->ptr = (const char *)r->p + r->pos;
    s->len = len;
    r->pos += (size_t)len;
    return PL_OK;
}

static size_t vtype_size(int t) {
    switch (t) {
    case PL_GGUF_UINT8: case PL_GGUF_INT8: case PL_GGUF_BOOL: return 1;
    case PL_GGUF_UINT16: case PL_GGUF_INT16: return 2;
    case PL_GGUF_UINT32: case PL_GGUF_INT32: case PL_GGUF_FLOAT32: return 4;
    case PL_GGUF_UINT64: case PL_GGUF_INT64: case PL_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

const char *pl_gguf_vtype_name(int t) {
    switch (t) {
    case PL_GGUF_UINT8: return "uint8";
    case PL_GGUF_INT8: return "int8";
    case PL_GGUF_UINT16: return "uint16";
    case PL_GGUF_INT16: return "int16";
    case PL_GGUF_UINT32: return "uint32";
    case PL_GGUF_INT32: return "int32";
    case PL_GGUF_FLOAT32: return "float32";
    case PL_GGUF_BOOL: return "bool";
    case PL_GGUF_STRING: return "string";
    case PL_GGUF_ARRAY: return "array";
    case PL_GGUF_UINT64: return "uint64";
    case PL_GGUF_INT64: return "int64";
    case PL_GGUF_FLOAT64: return "float64";
    default: return "?";
    }
}

static int is_int_vtype(int t) {
    return t == PL_GGUF_UINT8 || t == PL_GGUF_INT8 || t == PL_GGUF_UINT16 || t == PL_GGUF_INT16 ||
           t == PL_GGUF_UINT32 || t == PL_GGUF_INT32 || t == PL_GGUF_UINT64 || t == PL_GGUF_INT64;
}

/* Value of an integer scalar at p: *neg says it is a negative signed value
 * (then *v holds it as int64 bits). */
static uint64_t load_int(int t, const unsigned char *p, int *neg) {
    *neg = 0;
    switch (t) {
    case PL_GGUF_UINT8: return p[0];
    case PL_GGUF_INT8: { int8_t v; memcpy(&v, p, 1); *neg = v < 0; return (uint64_t)(int64_t)v; }
    case PL_GGUF_UINT16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case PL_GGUF_INT16: { int16_t v; memcpy(&v, p, 2); *neg = v < 0; return (uint64_t)(int64_t)v; }
    case PL_GGUF_UINT32: { uint32_t v; memcpy(&v, p, 4); return v; }
    case PL_GGUF_INT32: { int32_t v; memcpy(&v, p, 4); *neg = v < 0; return (uint64_t)(int64_t)v; }
    case PL_GGUF_UINT64: { uint64_t v; memcpy(&v, p, 8); return v; }
    case PL_GGUF_INT64: { int64_t v; memcpy(&v, p, 8); *neg = v < 0; return (uint64_t)v; }
    case PL_GGUF_BOOL: return p[0];
    default: return 0;
    }
}

static double load_f64(int t, const unsigned char *p) {
    if (t == PL_GGUF_FLOAT32) { float v; memcpy(&v, p, 4); return v; }
    if (t == PL_GGUF_FLOAT64) { double v; memcpy(&v, p, 8); return v; }
    int neg;
    uint64_t u = load_int(t, p, &neg);
    return neg ? (double)(int64_t)u : (double)u;
}

static int read_kv(rd *r, pl_gguf_kv *kv) {
    uint32_t type;
    int rc = rd_u32(r, &type, "value type");
    if (rc) return rc;
    kv->type = (int)type;
    if (type == PL_GGUF_STRING) return rd_str(r, &kv->str, "string");
    if (type == PL_GGUF_ARRAY) {
        uint32_t at;
        uint64_t n;
        if ((rc = rd_u32(r, &at, "array element type"))) return rc;
        size_t len_at = r->pos;
        if ((rc = rd_u64(r, &n, "array length"))) return rc;
        kv->arr_type = (int)at;
        kv->arr_len = n;
        size_t left = r->size - r->pos;
        if (at == PL_GGUF_ARRAY)
            return pl_err_set(r->err, PL_EUNSUPPORTED, "%s: %s: nested arrays are not supported", r->path, r->where);
        if (at == PL_GGUF_STRING) {
            if (n > left / 8)
                return pl_err_set(r->err, PL_EFORMAT,
                                  "%s: %s: array of %" PRIu64 " strings at byte %zu runs past the end of the file "
                                  "(%zu bytes)", r->path, r->where, n, len_at, r->size);
            kv->strs = calloc(n ? (size_t)n : 1, sizeof *kv->strs);
            if (!kv->strs)
                return pl_err_set(r->err, PL_ENOMEM, "%s: %s: cannot allocate %" PRIu64 " strings", r->path,
                                  r->where, n);
            for (uint64_t i = 0; i < n; i++) {
                char what[64];
                snprintf(what, sizeof what, "string #%" PRIu64, i);
                if ((rc = rd_str(r, &kv->strs[i], what))) return rc;
            }
            return PL_OK;
        }
        size_t es = vtype_size((int)at);
        if (!es)
            return pl_err_set(r->err, PL_EFORMAT, "%s: %s: unknown array element type %" PRIu32 " (expected 0..12)",
                              r->path, r->where, at);
        if (n > left / es)
            return pl_err_set(r->err, PL_EFORMAT,
                              "%s: %s: array of %" PRIu64 " %s at byte %zu runs past the end of the file (%zu bytes)",
                              r->path, r->where, n, pl_gguf_vtype_name((int)at), len_at, r->size);
        kv->data = r->p + r->pos;
        r->pos += (size_t)n * es;
        return PL_OK;
    }
    size_t es = vtype_size((int)type);
    if (!es)
        return pl_err_set(r->err, PL_EFORMAT, "%s: %s: unknown value type %" PRIu32 " (expected 0..12)", r->path,
                          r->where, type);
    if ((rc = need(r, es, pl_gguf_vtype_name((int)type)))) return rc;
    kv->data = r->p + r->pos;
    r->pos += es;
    return PL_OK;
}

/* ggml type ids that name a type we know (quantized or plain). */
static int gguf_type_known(uint32_t t) {
    switch (t) {
    case PL_F32: case PL_F16: case PL_Q4_0: case PL_Q4_1: case PL_Q5_0: case PL_Q5_1: case PL_Q8_0:
    case PL_Q8_1: case PL_Q2_K: case PL_Q3_K: case PL_Q4_K: case PL_Q5_K: case PL_Q6_K: case PL_Q8_K:
    case PL_I8: case PL_I16: case PL_I32: case PL_I64: case PL_F64: case PL_BF16:
        return 1;
    default:
        return 0;
    }
}

static int read_tensor_info(rd *r, uint64_t idx, pl_gguf_tensor *t, size_t alignment) {
    pl_str name;
    int rc = rd_str(r, &name, "name");
    if (rc) return rc;
    char shown[300];
    show(shown, sizeof shown, name.ptr, name.len);
    snprintf(r->where, sizeof r->where, "tensor #%" PRIu64 " '%s'", idx, shown);
    if (memchr(name.ptr, '\0', (size_t)name.len))
        return pl_err_set(r->err, PL_EFORMAT, "%s: %s: the name contains a NUL byte", r->path, r->where);
    t->name = malloc((size_t)name.len + 1);
    if (!t->name) return pl_err_set(r->err, PL_ENOMEM, "%s: %s: out of memory", r->path, r->where);
    memcpy(t->name, name.ptr, (size_t)name.len);
    t->name[name.len] = '\0';

    uint32_t n_dims;
    if ((rc = rd_u32(r, &n_dims, "n_dims"))) return rc;
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return pl_err_set(r->err, PL_EFORMAT, "%s: %s: n_dims is %" PRIu32 ", expected 1..%d", r->path, r->where,
                          n_dims, GGUF_MAX_DIMS);
    t->n_dims = (int)n_dims;
    int64_t n_elems = 1;
    for (int i = 0; i < GGUF_MAX_DIMS; i++) t->ne[i] = 1;
    for (uint32_t i = 0; i < n_dims; i++) {
        uint64_t ne;
        if ((rc = rd_u64(r, &ne, "ne"))) return rc;
        if (ne < 1 || ne > (uint64_t)INT64_MAX)
            return pl_err_set(r->err, PL_EFORMAT, "%s: %s: ne[%" PRIu32 "] is %" PRIu64 ", expected 1..2^63-1",
                              r->path, r->where, i, ne);
        t->ne[i] = (int64_t)ne;
        if (__builtin_mul_overflow(n_elems, (int64_t)ne, &n_elems))
            return pl_err_set(r->err, PL_EFORMAT, "%s: %s: the element count overflows (ne[%" PRIu32 "] = %" PRIu64 ")",
                              r->path, r->where, i, ne);
    }
    t->n_elems = n_elems;

    uint32_t type;
    if ((rc = rd_u32(r, &type, "type"))) return rc;
    if (!gguf_type_known(type))
        return pl_err_set(r->err, PL_EUNSUPPORTED, "%s: %s: unknown or unsupported tensor type %" PRIu32, r->path,
                          r->where, type);
    t->type = (pl_dtype)type;
    int64_t blk = pl_dtype_block_elems(t->type);
    if (t->ne[0] % blk != 0)
        return pl_err_set(r->err, PL_EFORMAT,
                          "%s: %s: row length ne[0] = %" PRId64 " is not a multiple of the %s block size %" PRId64
                          " (%" PRId64 " elements in all)", r->path, r->where, t->ne[0], pl_dtype_name(t->type), blk,
                          n_elems);
    size_t row = pl_dtype_row_bytes(t->type, t->ne[0]), nbytes = row;
    for (int i = 1; i < GGUF_MAX_DIMS; i++)
        if (!row || !pl_mul_ok(nbytes, (size_t)t->ne[i], &nbytes))
            return pl_err_set(r->err, PL_EFORMAT, "%s: %s: the byte size overflows", r->path, r->where);
    t->nbytes = nbytes;

    uint64_t off;
    if ((rc = rd_u64(r, &off, "offset"))) return rc;
    if (off % alignment != 0)
        return pl_err_set(r->err, PL_EFORMAT, "%s: %s: data offset %" PRIu64 " is not a multiple of the alignment %zu",
                          r->path, r->where, off, alignment);
    t->offset = off;
    return PL_OK;
}

/* ------------------------------------------------------------------ open */

void pl_gguf_close(pl_gguf *g) {
    if (!g) return;
    if (g->kv)
        for (uint64_t i = 0; i < g->n_kv; i++) free(g->kv[i].strs);
    free(g->kv);
    if (g->tensors)
        for (uint64_t i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->tensors);
    pl_map_close(&g->map);
    free(g->path);
    free(g);
}

static int parse(pl_gguf *g, dup_tables *dt, pl_err *err) {
    rd r = {.p = g->map.data, .size = g->map.size, .pos = 0, .path = g->path, .err = err};
    snprintf(r.where, sizeof r.where, "header");
    int rc;

    if (r.size < 4 || memcmp(r.p, "GGUF", 4) != 0) {
        char got[32] = "";
        size_t k = r.size < 4 ? r.size : 4;
        for (size_t i = 0; i < k; i++) snprintf(got + 2 * i, sizeof got - 2 * i, "%02x", r.p[i]);
        return pl_err_set(err, PL_EFORMAT, "%s: not a GGUF file: expected magic \"GGUF\" (47475546), found %s%s",
                          g->path, k ? got : "an empty file", k && k < 4 ? " (file too short)" : "");
    }
    r.pos = 4;
    if ((rc = rd_u32(&r, &g->version, "version"))) return rc;
    if (g->version != 2 && g->version != 3) {
        const char *hint = g->version == 1 ? " (GGUF v1 used 32-bit counts; re-convert the model)"
                           : (g->version & 0xffff) == 0 ? " (big-endian GGUF?)" : "";
        return pl_err_set(err, PL_EUNSUPPORTED, "%s: header: GGUF version %" PRIu32 " is not supported, expected 2 or 3%s",
                          g->path, g->version, hint);
    }
    if ((rc = rd_u64(&r, &g->n_tensors, "n_tensors"))) return rc;
    if ((rc = rd_u64(&r, &g->n_kv, "n_kv"))) return rc;
    size_t left = r.size - r.pos;
    if (g->n_kv > left / MIN_KV_BYTES)
        return pl_err_set(err, PL_EFORMAT,
                          "%s: header: n_kv %" PRIu64 " cannot fit in the %zu bytes after the header (truncated?)",
                          g->path, g->n_kv, left);
    if (g->n_tensors > left / MIN_TENSOR_BYTES ||
        g->n_tensors * MIN_TENSOR_BYTES > left - g->n_kv * MIN_KV_BYTES)
        return pl_err_set(err, PL_EFORMAT,
                          "%s: header: n_tensors %" PRIu64 " (with n_kv %" PRIu64 ") cannot fit in the %zu bytes "
                          "after the header (truncated?)", g->path, g->n_tensors, g->n_kv, left);

    /* key/value pairs */
    g->kv = calloc(g->n_kv ? (size_t)g->n_kv : 1, sizeof *g->kv);
    dt->kv_cap = table_cap(g->n_kv);
    dt->kv_slots = calloc(dt->kv_cap, sizeof *dt->kv_slots);
    if (!g->kv || !dt->kv_slots)
        return pl_err_set(err, PL_ENOMEM, "%s: cannot allocate %" PRIu64 " key/value pairs", g->path, g->n_kv);
    uint64_t n_kv = g->n_kv;
    g->n_kv = 0; /* counts the entries filled, so close frees exactly those */
    for (uint64_t i = 0; i < n_kv; i++) {
        pl_gguf_kv *kv = &g->kv[i];
        snprintf(r.where, sizeof r.where, "kv #%" PRIu64, i);
        g->n_kv = i + 1;
        if ((rc = rd_str(&r, &kv->key, "key"))) return rc;
        char shown[300];
        show(shown, sizeof shown, kv->key.ptr, kv->key.len);
        snprintf(r.where, sizeof r.where, "kv #%" PRIu64 " '%s'", i, shown);
        size_t slot;
        if (table_find(g, dt->kv_slots, dt->kv_cap, kv_key, kv->key.ptr, (size_t)kv->key.len, &slot) != SIZE_MAX)
            return pl_err_set(err, PL_EFORMAT, "%s: %s: duplicate key", g->path, r.where);
        if ((rc = read_kv(&r, kv))) return rc;
        dt->kv_slots[slot] = (size_t)i + 1;
    }

    /* alignment */
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const pl_gguf_kv *al = pl_gguf_get(g, "general.alignment");
    if (al) {
        if (!is_int_vtype(al->type))
            return pl_err_set(err, PL_EFORMAT, "%s: key 'general.alignment': expected an integer, found %s", g->path,
                              pl_gguf_vtype_name(al->type));
        int neg;
        uint64_t a = load_int(al->type, al->data, &neg);
        if (neg || a == 0 || (a & (a - 1)) != 0 || a > ((uint64_t)1 << 30))
            return pl_err_set(err, PL_EFORMAT,
                              "%s: key 'general.alignment': %s%" PRIu64 " is not a power of two in 1..2^30", g->path,
                              neg ? "-" : "", neg ? 0 - a : a);
        g->alignment = (size_t)a;
    }

    /* tensor infos */
    g->tensors = calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof *g->tensors);
    dt->t_cap = table_cap(g->n_tensors);
    dt->t_slots = calloc(dt->t_cap, sizeof *dt->t_slots);
    if (!g->tensors || !dt->t_slots)
        return pl_err_set(err, PL_ENOMEM, "%s: cannot allocate %" PRIu64 " tensor infos", g->path, g->n_tensors);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        pl_gguf_tensor *t = &g->tensors[i];
        snprintf(r.where, sizeof r.where, "tensor #%" PRIu64, i);
        if ((rc = read_tensor_info(&r, i, t, g->alignment))) return rc;
        size_t slot, len = strlen(t->name);
        if (table_find(g, dt->t_slots, dt->t_cap, tensor_key, t->name, len, &slot) != SIZE_MAX)
            return pl_err_set(err, PL_EFORMAT, "%s: %s: duplicate tensor name", g->path, r.where);
        dt->t_slots[slot] = (size_t)i + 1;
    }

    /* data section */
    size_t pad = (g->alignment - r.pos % g->alignment) % g->alignment;
    if (!pl_add_ok(r.pos, pad, &g->data_offset))
        return pl_err_set(err, PL_ERANGE, "%s: data section offset overflows", g->path);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        pl_gguf_tensor *t = &g->tensors[i];
        size_t start, end;
        if (t->offset > SIZE_MAX || !pl_add_ok(g->data_offset, (size_t)t->offset, &start) ||
            !pl_add_ok(start, t->nbytes, &end) || end > r.size) {
            char shown[300];
            show(shown, sizeof shown, t->name, strlen(t->name));
            return pl_err_set(err, PL_ERANGE,
                              "%s: tensor #%" PRIu64 " '%s': data offset %" PRIu64 " + %zu bytes (section starts at "
                              "byte %zu) is past the end of the file (%zu bytes)", g->path, i, shown, t->offset, t->nbytes,
                              g->data_offset, r.size);
        }
        t->data = r.p + start;
    }
    return PL_OK;
}

int pl_gguf_open(pl_gguf **out, const char *path, pl_err *err) {
    *out = NULL;
    pl_gguf *g = calloc(1, sizeof *g);
    if (!g) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", path);
    g->path = strdup(path);
    if (!g->path) {
        free(g);
        return pl_err_set(err, PL_ENOMEM, "%s: out of memory", path);
    }
    int rc = pl_map_open(&g->map, path, err);
    dup_tables tables = {0};
    if (rc == PL_OK) rc = parse(g, &tables, err);
    free(tables.kv_slots);
    free(tables.t_slots);
    if (rc != PL_OK) {
        pl_gguf_close(g);
        return rc;
    }
    *out = g;
    return PL_OK;
}

/* ------------------------------------------------------------------ lookups */

const pl_gguf_kv *pl_gguf_get(const pl_gguf *g, const char *key) {
    if (!g || !key || !g->kv) return NULL;
    size_t len = strlen(key);
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key.len == len && (len == 0 || memcmp(g->kv[i].key.ptr, key, len) == 0)) return &g->kv[i];
    return NULL;
}

const pl_gguf_tensor *pl_gguf_find_tensor(const pl_gguf *g, const char *name) {
    if (!g || !name || !g->tensors) return NULL;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].name && strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    return NULL;
}

static int get_kv(const pl_gguf *g, const char *key, const pl_gguf_kv **kv, pl_err *err) {
    *kv = pl_gguf_get(g, key);
    if (!*kv) return pl_err_set(err, PL_ENOTFOUND, "%s: key '%s' not found", g->path, key);
    return PL_OK;
}

static int wrong(const pl_gguf *g, const char *key, const pl_gguf_kv *kv, const char *expected, pl_err *err) {
    char val[128];
    pl_gguf_kv_format(kv, val, sizeof val);
    return pl_err_set(err, PL_EFORMAT, "%s: key '%s': expected %s, found %s %s", g->path, key, expected,
                      pl_gguf_vtype_name(kv->type), val);
}

int pl_gguf_get_u32(const pl_gguf *g, const char *key, uint32_t *out, pl_err *err) {
    const pl_gguf_kv *kv;
    int rc = get_kv(g, key, &kv, err);
    if (rc) return rc;
    if (!is_int_vtype(kv->type)) return wrong(g, key, kv, "an unsigned 32-bit integer", err);
    int neg;
    uint64_t v = load_int(kv->type, kv->data, &neg);
    if (neg || v > UINT32_MAX) return wrong(g, key, kv, "an unsigned 32-bit integer", err);
    *out = (uint32_t)v;
    return PL_OK;
}

int pl_gguf_get_i64(const pl_gguf *g, const char *key, int64_t *out, pl_err *err) {
    const pl_gguf_kv *kv;
    int rc = get_kv(g, key, &kv, err);
    if (rc) return rc;
    if (!is_int_vtype(kv->type)) return wrong(g, key, kv, "a 64-bit signed integer", err);
    int neg;
    uint64_t v = load_int(kv->type, kv->data, &neg);
    if (!neg && v > (uint64_t)INT64_MAX) return wrong(g, key, kv, "a 64-bit signed integer", err);
    *out = (int64_t)v;
    return PL_OK;
}

int pl_gguf_get_f32(const pl_gguf *g, const char *key, float *out, pl_err *err) {
    const pl_gguf_kv *kv;
    int rc = get_kv(g, key, &kv, err);
    if (rc) return rc;
    if (kv->type != PL_GGUF_FLOAT32 && kv->type != PL_GGUF_FLOAT64) return wrong(g, key, kv, "a float", err);
    double v = load_f64(kv->type, kv->data);
    if (isfinite(v) && fabs(v) > FLT_MAX) return wrong(g, key, kv, "a float in the float32 range", err);
    *out = (float)v;
    return PL_OK;
}

int pl_gguf_get_bool(const pl_gguf *g, const char *key, int *out, pl_err *err) {
    const pl_gguf_kv *kv;
    int rc = get_kv(g, key, &kv, err);
    if (rc) return rc;
    if (kv->type != PL_GGUF_BOOL) return wrong(g, key, kv, "a bool", err);
    *out = kv->data[0] != 0;
    return PL_OK;
}

int pl_gguf_get_str(const pl_gguf *g, const char *key, char **out, pl_err *err) {
    const pl_gguf_kv *kv;
    *out = NULL;
    int rc = get_kv(g, key, &kv, err);
    if (rc) return rc;
    if (kv->type != PL_GGUF_STRING) return wrong(g, key, kv, "a string", err);
    char *s = malloc((size_t)kv->str.len + 1);
    if (!s) return pl_err_set(err, PL_ENOMEM, "%s: key '%s': cannot allocate %" PRIu64 " bytes", g->path, key,
                              kv->str.len + 1);
    if (kv->str.len) memcpy(s, kv->str.ptr, (size_t)kv->str.len);
    s[kv->str.len] = '\0';
    *out = s;
    return PL_OK;
}

int64_t pl_gguf_arr_i64(const pl_gguf_kv *kv, uint64_t i) {
    if (!kv || kv->type != PL_GGUF_ARRAY || i >= kv->arr_len || !kv->data) return 0;
    size_t es = vtype_size(kv->arr_type);
    const unsigned char *p = kv->data + (size_t)i * es;
    if (kv->arr_type == PL_GGUF_FLOAT32 || kv->arr_type == PL_GGUF_FLOAT64) {
        double v = load_f64(kv->arr_type, p);
        if (!(v == v)) return 0;
        if (v >= 9223372036854775807.0) return INT64_MAX;
        if (v <= -9223372036854775808.0) return INT64_MIN;
        return (int64_t)v;
    }
    int neg;
    uint64_t u = load_int(kv->arr_type, p, &neg);
    if (!neg && u > (uint64_t)INT64_MAX) return INT64_MAX;
    return (int64_t)u;
}

double pl_gguf_arr_f64(const pl_gguf_kv *kv, uint64_t i) {
    if (!kv || kv->type != PL_GGUF_ARRAY || i >= kv->arr_len || !kv->data) return 0;
    size_t es = vtype_size(kv->arr_type);
    return load_f64(kv->arr_type, kv->data + (size_t)i * es);
}

/* ------------------------------------------------------------------ display */

static void format_str(const pl_str *s, char *buf, size_t n) {
    /* "..." with escapes, truncated to fit n */
    size_t o = 0;
    if (n < 8) {
        if (n) buf[0] = '\0';
        return;
    }
    buf[o++] = '"';
    uint64_t i = 0;
    for (; i < s->len; i++) {
        unsigned char c = (unsigned char)s->ptr[i];
        char tmp[8];
        size_t k;
        if (c == '"' || c == '\\') { tmp[0] = '\\'; tmp[1] = (char)c; k = 2; }
        else if (c == '\n') { memcpy(tmp, "\\n", 2); k = 2; }
        else if (c == '\t') { memcpy(tmp, "\\t", 2); k = 2; }
        else if (c < 0x20 || c == 0x7f) { snprintf(tmp, sizeof tmp, "\\x%02x", c); k = 4; }
        else { tmp[0] = (char)c; k = 1; }
        if (o + k + 5 > n) break; /* keep room for ..." and NUL */
        memcpy(buf + o, tmp, k);
        o += k;
    }
    if (i < s->len) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o++] = '"';
    buf[o] = '\0';
}

void pl_gguf_kv_format(const pl_gguf_kv *kv, char *buf, size_t n) {
    if (!buf || n == 0) return;
    buf[0] = '\0';
    if (!kv) return;
    switch (kv->type) {
    case PL_GGUF_STRING:
        format_str(&kv->str, buf, n);
        return;
    case PL_GGUF_ARRAY:
        snprintf(buf, n, "[array of %" PRIu64 " %s]", kv->arr_len, pl_gguf_vtype_name(kv->arr_type));
        return;
    case PL_GGUF_BOOL:
        snprintf(buf, n, "%s", kv->data[0] ? "true" : "false");
        return;
    case PL_GGUF_FLOAT32:
    case PL_GGUF_FLOAT64:
        snprintf(buf, n, "%.9g", load_f64(kv->type, kv->data));
        return;
    default:
        if (is_int_vtype(kv->type)) {
            int neg;
            uint64_t v = load_int(kv->type, kv->data, &neg);
            if (neg) snprintf(buf, n, "%" PRId64, (int64_t)v);
            else snprintf(buf, n, "%" PRIu64, v);
        } else {
            snprintf(buf, n, "?");
        }
    }
}
