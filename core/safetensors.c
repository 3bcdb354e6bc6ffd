/* safetensors.c: validated reading (single, directory, sharded) and atomic writing of safetensors files.
 *
 * File layout (https://github.com/huggingface/safetensors):
 *   u64 little-endian N | N bytes of JSON header | data section
 * The header maps tensor names to {"dtype", "shape", "data_offsets": [begin,
 * end]} (offsets relative to the data section) plus an optional
 * "__metadata__" object of string values. Everything read from a file is
 * checked before a tensor is exposed; see safetensors.h.
 *
 * A sharded checkpoint (the layout transformers' save_pretrained writes) is a
 * directory with model-0000K-of-0000N.safetensors shards and
 * model.safetensors.index.json: {"metadata": {"total_parameters": elements,
 * "total_size": bytes}, "weight_map": {tensor name: shard file name}}, dumped
 * by Python's json.dumps(indent=2, sort_keys=True) plus a newline, as
 * transformers 5 does. The writer produces exactly that text (total_parameters
 * is the sum of the tensors' element counts: transformers counts the model's
 * parameters, the same number when no tensor is tied or a buffer). This code assumes a little-endian host. */
#include "safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "atomic.h"
#include "half.h"
#include "json.h"
#include "mapfile.h"

#define ST_MAX_HEADER ((size_t)100 * 1000 * 1000) /* the limit the safetensors library uses */
#define ST_MAX_INDEX ((size_t)64 << 20)
#define ST_MAX_EXACT 9007199254740992.0 /* 2^53: larger JSON numbers are not exact doubles */
#define ST_INDEX_NAME "model.safetensors.index.json"
#define ST_SINGLE_NAME "model.safetensors"

/* ------------------------------------------------------------ dtypes */

static const struct {
    const char *name;
    pl_dtype t;
    size_t size;
} k_st_dtypes[] = {
    {"F64", PL_F64, 8}, {"F32", PL_F32, 4}, {"F16", PL_F16, 2}, {"BF16", PL_BF16, 2},
    {"I64", PL_I64, 8}, {"I32", PL_I32, 4}, {"I16", PL_I16, 2}, {"I8", PL_I8, 1},
    {"U64", PL_U64, 8}, {"U32", PL_U32, 4}, {"U16", PL_U16, 2}, {"U8", PL_U8, 1},
    {"BOOL", PL_BOOL, 1},
};
#define N_ST_DTYPES (sizeof k_st_dtypes / sizeof k_st_dtypes[0])

static int st_dtype_from_name(const char *s, pl_dtype *t, size_t *size) {
    for (size_t i = 0; i < N_ST_DTYPES; i++)
        if (strcmp(k_st_dtypes[i].name, s) == 0) {
            *t = k_st_dtypes[i].t;
            *size = k_st_dtypes[i].size;
            return 1;
        }
    return 0;
}

static const char *st_dtype_name(pl_dtype t, size_t *size) {
    for (size_t i = 0; i < N_ST_DTYPES; i++)
        if (k_st_dtypes[i].t == t) {
            if (size) *size = k_st_dtypes[i].size;
            return k_st_dtypes[i].name;
        }
    return NULL;
}

/* ------------------------------------------------------------ reader */

typedef struct st_file {
    char *path;
    pl_map map;
    size_t data_start; /* 8 + N */
    size_t data_size;
    char **meta_keys, **meta_vals;
    size_t n_meta;
} st_file;

struct pl_st {
    st_file *files;
    int n_files;
    pl_st_tensor *tensors;
    size_t n, cap;
    size_t *slots; /* open addressing over tensors by name: index + 1, 0 = empty */
    size_t n_slots;
};

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Slot holding name, or the empty slot where it would go. */
static size_t *find_slot(const pl_st *st, const char *name) {
    size_t mask = st->n_slots - 1;
    for (size_t i = (size_t)hash_str(name) & mask;; i = (i + 1) & mask) {
        size_t *s = &st->slots[i];
        if (*s == 0 || strcmp(st->tensors[*s - 1].name, name) == 0) return s;
    }
}

static int rehash(pl_st *st, size_t n_slots) {
    size_t *slots = calloc(n_slots, sizeof *slots);
    if (!slots) return -1;
    free(st->slots);
    st->slots = slots;
    st->n_slots = n_slots;
    for (size_t i = 0; i < st->n; i++) *find_slot(st, st->tensors[i].name) = i + 1;
    return 0;
}

/* Appends a tensor (taking ownership of t->name on success). Returns the
 * index of an existing tensor of the same name + 1 instead, or -1 on OOM. */
static long add_tensor(pl_st *st, pl_st_tensor *t) {
    if ((st->n + 1) * 2 > st->n_slots && rehash(st, st->n_slots ? st->n_slots * 2 : 64) != 0) return -1;
    size_t *slot = find_slot(st, t->name);
    if (*slot) return (long)*slot;
    if (st->n == st->cap) {
        size_t ncap = st->cap ? st->cap * 2 : 16;
        pl_st_tensor *nt = realloc(st->tensors, ncap * sizeof *nt);
        if (!nt) return -1;
        st->tensors = nt;
        st->cap = ncap;
    }
    st->tensors[st->n++] = *t;
    *slot = st->n;
    return 0;
}

/* JSON number that is a whole number in [0, 2^53]. */
static int json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= ST_MAX_EXACT) || d != (double)(uint64_t)d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static void json_what(const cJSON *v, char *buf, size_t n) {
    if (cJSON_IsNumber(v))
        snprintf(buf, n, "%.15g", v->valuedouble);
    else if (cJSON_IsString(v))
        snprintf(buf, n, "a string");
    else if (cJSON_IsArray(v))
        snprintf(buf, n, "an array");
    else if (cJSON_IsObject(v))
        snprintf(buf, n, "an object");
    else if (cJSON_IsBool(v))
        snprintf(buf, n, "a boolean");
    else if (cJSON_IsNull(v))
        snprintf(buf, n, "null");
    else
        snprintf(buf, n, "nothing");
}

/* Reads "__metadata__": an object of string values. */
static int parse_metadata(st_file *f, const cJSON *m, pl_err *err) {
    if (!cJSON_IsObject(m)) {
        char w[64];
        json_what(m, w, sizeof w);
        return pl_err_set(err, PL_EFORMAT, "%s: __metadata__: expected an object of strings, got %s", f->path, w);
    }
    size_t n = (size_t)cJSON_GetArraySize(m);
    f->meta_keys = calloc(n ? n : 1, sizeof(char *));
    f->meta_vals = calloc(n ? n : 1, sizeof(char *));
    if (!f->meta_keys || !f->meta_vals) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", f->path);
    const cJSON *e;
    cJSON_ArrayForEach(e, m) {
        if (!cJSON_IsString(e) || !e->valuestring) {
            char w[64];
            json_what(e, w, sizeof w);
            return pl_err_set(err, PL_EFORMAT, "%s: __metadata__: '%.200s': expected a string, got %s", f->path,
                              e->string ? e->string : "", w);
        }
        char *k = strdup(e->string ? e->string : ""), *v = strdup(e->valuestring);
        if (!k || !v) {
            free(k);
            free(v);
            return pl_err_set(err, PL_ENOMEM, "%s: out of memory", f->path);
        }
        f->meta_keys[f->n_meta] = k;
        f->meta_vals[f->n_meta] = v;
        f->n_meta++;
    }
    return PL_OK;
}

/* Checks one header entry and fills t (name not set). */
static int parse_entry(const st_file *f, const char *name, const cJSON *e, pl_st_tensor *t, pl_err *err) {
    const char *p = f->path;
    char w[64];
    if (!cJSON_IsObject(e)) {
        json_what(e, w, sizeof w);
        return pl_err_set(err, PL_EFORMAT, "%s: tensor '%.200s': expected an object, got %s", p, name, w);
    }
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt) || !dt->valuestring) {
        json_what(dt, w, sizeof w);
        return pl_err_set(err, PL_EFORMAT, "%s: tensor '%.200s': dtype: expected a string, got %s", p, name, w);
    }
    size_t esize;
    if (!st_dtype_from_name(dt->valuestring, &t->dtype, &esize))
        return pl_err_set(err, PL_EUNSUPPORTED,
                          "%s: tensor '%.200s': unknown dtype \"%.40s\" (expected F64, F32, F16, BF16, I64, I32, I16, "
                          "I8, U64, U32, U16, U8 or BOOL)",
                          p, name, dt->valuestring);
    if (!cJSON_IsArray(sh)) {
        json_what(sh, w, sizeof w);
        return pl_err_set(err, PL_EFORMAT, "%s: tensor '%.200s': shape: expected an array, got %s", p, name, w);
    }
    int nd = cJSON_GetArraySize(sh);
    if (nd > PL_ST_MAX_DIMS)
        return pl_err_set(err, PL_EUNSUPPORTED, "%s: tensor '%.200s': shape has %d dimensions, at most %d supported", p,
                          name, nd, PL_ST_MAX_DIMS);
    t->n_dims = nd;
    int64_t n_elems = 1;
    int d = 0;
    const cJSON *dim;
    cJSON_ArrayForEach(dim, sh) {
        uint64_t v;
        if (!json_uint(dim, &v)) {
            json_what(dim, w, sizeof w);
            return pl_err_set(err, PL_EFORMAT, "%s: tensor '%.200s': shape[%d]: expected an integer >= 0, got %s", p,
                              name, d, w);
        }
        t->shape[d++] = (int64_t)v;
        if (__builtin_mul_overflow(n_elems, (int64_t)v, &n_elems))
            return pl_err_set(err, PL_ERANGE, "%s: tensor '%.200s': the number of elements of the shape overflows", p,
                              name);
    }
    for (int i = nd; i < PL_ST_MAX_DIMS; i++) t->shape[i] = 0;
    t->n_elems = n_elems;
    size_t nbytes;
    if (!pl_mul_ok((size_t)n_elems, esize, &nbytes))
        return pl_err_set(err, PL_ERANGE, "%s: tensor '%.200s': %lld elements of %zu bytes overflow", p, name,
                          (long long)n_elems, esize);
    t->nbytes = nbytes;
    uint64_t b, en;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_uint(cJSON_GetArrayItem(off, 0), &b) ||
        !json_uint(cJSON_GetArrayItem(off, 1), &en))
        return pl_err_set(err, PL_EFORMAT, "%s: tensor '%.200s': data_offsets: expected [begin, end], integers in 0..2^53",
                          p, name);
    if (b > en)
        return pl_err_set(err, PL_ERANGE, "%s: tensor '%.200s': data_offsets [%llu, %llu]: begin is after end", p, name,
                          (unsigned long long)b, (unsigned long long)en);
    if (en > f->data_size)
        return pl_err_set(err, PL_ERANGE,
                          "%s: tensor '%.200s': data_offsets [%llu, %llu] go past the end of the data section (%zu "
                          "bytes)",
                          p, name, (unsigned long long)b, (unsigned long long)en, f->data_size);
    if (en - b != nbytes)
        return pl_err_set(err, PL_EFORMAT,
                          "%s: tensor '%.200s': data_offsets [%llu, %llu] hold %llu bytes, but %s shape with %lld "
                          "elements needs %zu",
                          p, name, (unsigned long long)b, (unsigned long long)en, (unsigned long long)(en - b),
                          dt->valuestring, (long long)n_elems, nbytes);
    t->data = f->map.data + f->data_start + b;
    return PL_OK;
}

#define ST_MAX_VALUES 4000000 /* JSON values in one header: ~25 per tensor for 160k tensors */
#define ST_MAX_DEPTH 16

/* A cheap pass over the header before cJSON builds a tree of it, so that a
 * hostile 100 MB header of "[0,0,0,..." cannot cost gigabytes of nodes:
 * counts values (each comma or opening bracket outside strings), refuses
 * arrays of more than PL_ST_MAX_DIMS elements (a valid header has only
 * shapes and [begin, end] pairs) and deep nesting. Syntax is left to cJSON.
 * Returns NULL or what is wrong. */
static const char *st_prescan(const char *h, size_t n) {
    int arr_elems[ST_MAX_DEPTH]; /* element count of each open array; -1 for objects */
    int depth = 0, in_str = 0;
    size_t values = 0;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
            continue;
        }
        switch (c) {
        case '"':
            in_str = 1;
            if (depth > 0 && arr_elems[depth - 1] == 0) arr_elems[depth - 1] = 1;
            break;
        case '[':
        case '{':
            if (depth > 0 && arr_elems[depth - 1] == 0) arr_elems[depth - 1] = 1;
            if (depth == ST_MAX_DEPTH) return "is nested too deeply";
            arr_elems[depth++] = c == '[' ? 0 : -1;
            values++;
            break;
        case ']':
        case '}':
            if (depth > 0) depth--;
            break;
        case ',':
            values++;
            if (depth > 0 && arr_elems[depth - 1] >= 0 && ++arr_elems[depth - 1] > PL_ST_MAX_DIMS)
                return "has an array longer than any shape or data_offsets";
            break;
        default:
            /* the first element of an array */
            if (depth > 0 && arr_elems[depth - 1] == 0 && c != ' ' && c != '\t' && c != '\n' && c != '\r')
                arr_elems[depth - 1] = 1;
            break;
        }
        if (values > ST_MAX_VALUES) return "holds more JSON values than any real checkpoint";
    }
    return NULL;
}

/* Maps and validates file number fi of st and appends its tensors. */
static int parse_file(pl_st *st, int fi, pl_err *err) {
    st_file *f = &st->files[fi];
    const char *p = f->path;
    int rc = pl_map_open(&f->map, p, err);
    if (rc) return rc;
    size_t size = f->map.size;
    if (size < 8)
        return pl_err_set(err, PL_EFORMAT, "%s: file is %zu bytes, too short for the 8-byte header length", p, size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | f->map.data[i];
    if (n > size - 8)
        return pl_err_set(err, PL_ERANGE, "%s: header length %llu is past the end of the file (%zu bytes)", p,
                          (unsigned long long)n, size);
    if (n > ST_MAX_HEADER)
        return pl_err_set(err, PL_ERANGE, "%s: header length %llu is more than the limit of %zu bytes", p,
                          (unsigned long long)n, ST_MAX_HEADER);
    f->data_start = 8 + (size_t)n;
    f->data_size = size - f->data_start;

    /* A NUL-terminated copy, so the parser can never run off the map. */
    char *hdr = malloc((size_t)n + 1);
    if (!hdr) return pl_err_set(err, PL_ENOMEM, "%s: cannot allocate %llu bytes for the header", p, (unsigned long long)n);
    memcpy(hdr, f->map.data + 8, (size_t)n);
    hdr[n] = '\0';
    if (n == 0 || hdr[0] != '{') {
        free(hdr);
        return pl_err_set(err, PL_EFORMAT, "%s: header (%llu bytes) does not start with '{': not a safetensors file", p,
                          (unsigned long long)n);
    }
    const char *why = st_prescan(hdr, (size_t)n);
    if (why) {
        free(hdr);
        return pl_err_set(err, PL_EFORMAT, "%s: header (%llu bytes) %s", p, (unsigned long long)n, why);
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)n, &end, 0);
    if (!root) {
        size_t at = (end && end >= hdr && end <= hdr + n) ? (size_t)(end - hdr) : 0;
        free(hdr);
        return pl_err_set(err, PL_EFORMAT, "%s: header is not valid JSON (error at byte %zu of %llu)", p, at,
                          (unsigned long long)n);
    }
    for (const char *q = end; q < hdr + n; q++)
        if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r') {
            size_t at = (size_t)(q - hdr);
            cJSON_Delete(root);
            free(hdr);
            return pl_err_set(err, PL_EFORMAT, "%s: header has unexpected bytes after the JSON object at byte %zu", p,
                              at);
        }
    free(hdr);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return pl_err_set(err, PL_EFORMAT, "%s: header: expected a JSON object", p);
    }
    rc = PL_OK;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        const char *name = e->string ? e->string : "";
        if (strcmp(name, "__metadata__") == 0) {
            if (f->meta_keys) {
                rc = pl_err_set(err, PL_EFORMAT, "%s: header has __metadata__ twice", p);
                break;
            }
            if ((rc = parse_metadata(f, e, err))) break;
            continue;
        }
        if (!*name) {
            rc = pl_err_set(err, PL_EFORMAT, "%s: header has a tensor with an empty name", p);
            break;
        }
        pl_st_tensor t;
        memset(&t, 0, sizeof t);
        if ((rc = parse_entry(f, name, e, &t, err))) break;
        t.file = fi;
        t.name = strdup(name);
        if (!t.name) {
            rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", p);
            break;
        }
        long dup = add_tensor(st, &t);
        if (dup != 0) {
            free(t.name);
            if (dup < 0) {
                rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", p);
            } else {
                const pl_st_tensor *o = &st->tensors[dup - 1];
                if (o->file == fi)
                    rc = pl_err_set(err, PL_EFORMAT, "%s: tensor '%.200s' appears twice in the header", p, name);
                else
                    rc = pl_err_set(err, PL_EFORMAT, "%s: tensor '%.200s' is also in %s", p, name,
                                    st->files[o->file].path);
            }
            break;
        }
    }
    cJSON_Delete(root);
    return rc;
}

void pl_st_close(pl_st *st) {
    if (!st) return;
    for (size_t i = 0; i < st->n; i++) free(st->tensors[i].name);
    for (int i = 0; i < st->n_files; i++) {
        st_file *f = &st->files[i];
        pl_map_close(&f->map);
        for (size_t k = 0; k < f->n_meta; k++) {
            free(f->meta_keys[k]);
            free(f->meta_vals[k]);
        }
        free(f->meta_keys);
        free(f->meta_vals);
        free(f->path);
    }
    free(st->files);
    free(st->tensors);
    free(st->slots);
    free(st);
}

static char *join_path(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *s = malloc(a + b + 2);
    if (!s) return NULL;
    memcpy(s, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') s[k++] = '/';
    memcpy(s + k, name, b + 1);
    return s;
}

static int is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static pl_st *st_new(int n_files, pl_err *err) {
    pl_st *st = calloc(1, sizeof *st);
    if (st) st->files = calloc((size_t)n_files, sizeof *st->files);
    if (!st || !st->files) {
        free(st);
        pl_err_set(err, PL_ENOMEM, "safetensors: out of memory");
        return NULL;
    }
    return st;
}

static int open_single(pl_st **out, const char *path, pl_err *err) {
    pl_st *st = st_new(1, err);
    if (!st) return PL_ENOMEM;
    st->files[0].path = strdup(path);
    st->n_files = 1;
    int rc = st->files[0].path ? parse_file(st, 0, err) : pl_err_set(err, PL_ENOMEM, "%s: out of memory", path);
    if (rc) {
        pl_st_close(st);
        return rc;
    }
    *out = st;
    return PL_OK;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A shard name from an index must be a plain file name in the index's directory. */
static int shard_name_ok(const char *s) {
    if (!*s || strchr(s, '/') || strchr(s, '\\') || strstr(s, "..")) return 0;
    for (const unsigned char *q = (const unsigned char *)s; *q; q++)
        if (*q < 0x20) return 0;
    return 1;
}

static int open_index(pl_st **out, const char *index_path, pl_err *err) {
    cJSON *idx = NULL;
    int rc = pl_json_load(index_path, ST_MAX_INDEX, &idx, err);
    if (rc) return rc;
    const char **names = NULL;
    char *dir = NULL;
    pl_st *st = NULL;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(idx, "weight_map");
    if (!cJSON_IsObject(idx) || !cJSON_IsObject(wm)) {
        rc = pl_err_set(err, PL_EFORMAT, "%s: expected an object with a \"weight_map\" object", index_path);
        goto done;
    }
    size_t n_map = (size_t)cJSON_GetArraySize(wm);
    names = malloc((n_map ? n_map : 1) * sizeof *names);
    if (!names) {
        rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", index_path);
        goto done;
    }
    size_t k = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, wm) {
        if (!cJSON_IsString(e) || !e->valuestring) {
            rc = pl_err_set(err, PL_EFORMAT, "%s: weight_map: '%.200s': expected a shard file name (string)", index_path,
                            e->string ? e->string : "");
            goto done;
        }
        if (!shard_name_ok(e->valuestring)) {
            rc = pl_err_set(err, PL_EFORMAT,
                            "%s: weight_map: '%.200s': shard name \"%.200s\" is not a plain file name (no '/', '\\', "
                            "'..' allowed)",
                            index_path, e->string ? e->string : "", e->valuestring);
            goto done;
        }
        names[k++] = e->valuestring;
    }
    /* Unique shard names, sorted, so shard 00001 is file 0; each opened once. */
    qsort(names, k, sizeof *names, cmp_str);
    size_t u = 0;
    for (size_t i = 0; i < k; i++)
        if (u == 0 || strcmp(names[u - 1], names[i]) != 0) names[u++] = names[i];
    const char *slash = strrchr(index_path, '/');
    dir = slash ? strndup(index_path, (size_t)(slash - index_path) + 1) : strdup("");
    st = st_new(u ? (int)u : 1, err);
    if (!dir || !st) {
        rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", index_path);
        goto done;
    }
    for (size_t i = 0; i < u; i++) {
        st->files[i].path = *dir ? join_path(dir, names[i]) : strdup(names[i]);
        st->n_files = (int)i + 1;
        if (!st->files[i].path) {
            rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", index_path);
            goto done;
        }
        struct stat sb;
        if (stat(st->files[i].path, &sb) != 0) {
            rc = pl_err_set(err, PL_ENOTFOUND, "%s: shard %s named in weight_map is missing (%s)", index_path, names[i],
                            strerror(errno));
            goto done;
        }
        if (!S_ISREG(sb.st_mode)) {
            rc = pl_err_set(err, PL_EFORMAT, "%s: shard %s named in weight_map is not a regular file", index_path,
                            names[i]);
            goto done;
        }
        if ((rc = parse_file(st, (int)i, err))) goto done;
    }
    /* Every tensor of the map must be in the shard the map names. */
    cJSON_ArrayForEach(e, wm) {
        const char *tn = e->string ? e->string : "";
        const pl_st_tensor *t = pl_st_find(st, tn);
        const char **hit = bsearch(&e->valuestring, names, u, sizeof *names, cmp_str);
        int want = hit ? (int)(hit - names) : -1;
        if (!t || t->file != want) {
            rc = pl_err_set(err, PL_ENOTFOUND, "%s: tensor '%.200s' is not in shard %s, where weight_map puts it%s%s",
                            index_path, tn, e->valuestring, t ? "; it is in " : "",
                            t ? st->files[t->file].path : "");
            goto done;
        }
    }
    *out = st;
    st = NULL;
    rc = PL_OK;
done:
    pl_st_close(st);
    free(names);
    free(dir);
    cJSON_Delete(idx);
    return rc;
}

static int open_dir(pl_st **out, const char *dir, pl_err *err) {
    char *p = join_path(dir, ST_INDEX_NAME);
    if (!p) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", dir);
    if (is_file(p)) {
        int rc = open_index(out, p, err);
        free(p);
        return rc;
    }
    free(p);
    p = join_path(dir, ST_SINGLE_NAME);
    if (!p) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", dir);
    if (is_file(p)) {
        int rc = open_single(out, p, err);
        free(p);
        return rc;
    }
    free(p);
    /* Otherwise exactly one *.safetensors file. */
    DIR *d = opendir(dir);
    if (!d) return pl_err_set(err, PL_EIO, "%s: cannot open directory: %s", dir, strerror(errno));
    char *found = NULL;
    int count = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || !ends_with(de->d_name, ".safetensors")) continue;
        if (++count == 1) found = strdup(de->d_name);
    }
    closedir(d);
    if (count != 1) {
        free(found);
        if (count == 0)
            return pl_err_set(err, PL_ENOTFOUND, "%s: no " ST_INDEX_NAME ", " ST_SINGLE_NAME " or other .safetensors file",
                              dir);
        return pl_err_set(err, PL_ENOTFOUND, "%s: %d .safetensors files but no " ST_INDEX_NAME " saying how they go together",
                          dir, count);
    }
    if (!found) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", dir);
    p = join_path(dir, found);
    free(found);
    if (!p) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", dir);
    int rc = open_single(out, p, err);
    free(p);
    return rc;
}

int pl_st_open(pl_st **out, const char *path, pl_err *err) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) return pl_err_set(err, PL_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return open_dir(out, path, err);
    if (ends_with(path, ".json")) return open_index(out, path, err);
    return open_single(out, path, err);
}

size_t pl_st_count(const pl_st *st) { return st ? st->n : 0; }

const pl_st_tensor *pl_st_at(const pl_st *st, size_t i) { return st && i < st->n ? &st->tensors[i] : NULL; }

const pl_st_tensor *pl_st_find(const pl_st *st, const char *name) {
    if (!st || !st->n_slots || !name) return NULL;
    size_t *s = find_slot(st, name);
    return *s ? &st->tensors[*s - 1] : NULL;
}

const char *pl_st_metadata(const pl_st *st, const char *key) {
    if (!st || st->n_files < 1 || !key) return NULL;
    const st_file *f = &st->files[0];
    for (size_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_vals[i];
    return NULL;
}

const char *pl_st_file_path(const pl_st *st, int file) {
    return st && file >= 0 && file < st->n_files ? st->files[file].path : NULL;
}

/* Element reads go through memcpy: data in a file need not be aligned. */
int pl_st_to_f32(const pl_st_tensor *t, float *dst, pl_err *err) {
    const unsigned char *s = t->data;
    size_t n = (size_t)t->n_elems;
    switch (t->dtype) {
    case PL_F32:
        if (n) memcpy(dst, s, n * 4);
        return PL_OK;
    case PL_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = pl_f16_to_f32(h);
        }
        return PL_OK;
    case PL_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = pl_bf16_to_f32(h);
        }
        return PL_OK;
    case PL_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, s + 8 * i, 8);
            dst[i] = (float)d;
        }
        return PL_OK;
    default: {
        const char *dn = st_dtype_name(t->dtype, NULL);
        return pl_err_set(err, PL_EUNSUPPORTED, "tensor '%.200s': dtype %s is not F32, F16, BF16 or F64", t->name,
                          dn ? dn : "?");
    }
    }
}

/* ------------------------------------------------------------ writer */

typedef struct w_tensor {
    char *name;
    pl_dtype dtype;
    int n_dims;
    int64_t shape[PL_ST_MAX_DIMS];
    const void *data;
    size_t nbytes;
    size_t n_elems;
} w_tensor;

struct pl_st_writer {
    w_tensor *t;
    size_t n, cap;
    char **mk, **mv;
    size_t nm, mcap;
};

pl_st_writer *pl_st_writer_new(void) { return calloc(1, sizeof(pl_st_writer)); }

void pl_st_writer_free(pl_st_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) free(w->t[i].name);
    for (size_t i = 0; i < w->nm; i++) {
        free(w->mk[i]);
        free(w->mv[i]);
    }
    free(w->t);
    free(w->mk);
    free(w->mv);
    free(w);
}

/* Valid UTF-8 with no NUL (it becomes a JSON string). */
static int utf8_ok(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        int len;
        uint32_t cp;
        if (c < 0x80) {
            p++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return 0;
        }
        for (int i = 1; i < len; i++) {
            if ((p[i] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (p[i] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        p += len;
    }
    return 1;
}

int pl_st_writer_add(pl_st_writer *w, const char *name, pl_dtype dtype, int n_dims, const int64_t *shape,
                     const void *data, pl_err *err) {
    if (!w || !name) return pl_err_set(err, PL_EINVAL, "safetensors writer: no writer or no name");
    if (!*name || strcmp(name, "__metadata__") == 0 || !utf8_ok(name))
        return pl_err_set(err, PL_EINVAL, "safetensors writer: tensor name \"%.200s\" is empty, reserved or not UTF-8",
                          name);
    size_t esize;
    const char *dn = st_dtype_name(dtype, &esize);
    if (!dn)
        return pl_err_set(err, PL_EUNSUPPORTED, "safetensors writer: tensor '%.200s': dtype %d cannot be stored in safetensors",
                          name, (int)dtype);
    if (n_dims < 0 || n_dims > PL_ST_MAX_DIMS || (n_dims > 0 && !shape))
        return pl_err_set(err, PL_EINVAL, "safetensors writer: tensor '%.200s': %d dimensions (0..%d allowed)", name,
                          n_dims, PL_ST_MAX_DIMS);
    size_t nel = 1;
    for (int i = 0; i < n_dims; i++) {
        if (shape[i] < 0 || (double)shape[i] > ST_MAX_EXACT)
            return pl_err_set(err, PL_EINVAL, "safetensors writer: tensor '%.200s': shape[%d] = %lld is out of range",
                              name, i, (long long)shape[i]);
        if (!pl_mul_ok(nel, (size_t)shape[i], &nel))
            return pl_err_set(err, PL_ERANGE, "safetensors writer: tensor '%.200s': element count overflows", name);
    }
    size_t nbytes;
    if (!pl_mul_ok(nel, esize, &nbytes) || nel > (size_t)INT64_MAX)
        return pl_err_set(err, PL_ERANGE, "safetensors writer: tensor '%.200s': size overflows", name);
    if (nbytes && !data)
        return pl_err_set(err, PL_EINVAL, "safetensors writer: tensor '%.200s': no data for %zu bytes", name, nbytes);
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return pl_err_set(err, PL_EINVAL, "safetensors writer: tensor '%.200s' added twice", name);
    if (w->n == w->cap) {
        size_t ncap = w->cap ? w->cap * 2 : 16;
        w_tensor *nt = realloc(w->t, ncap * sizeof *nt);
        if (!nt) return pl_err_set(err, PL_ENOMEM, "safetensors writer: out of memory");
        w->t = nt;
        w->cap = ncap;
    }
    w_tensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) return pl_err_set(err, PL_ENOMEM, "safetensors writer: out of memory");
    t->dtype = dtype;
    t->n_dims = n_dims;
    for (int i = 0; i < n_dims; i++) t->shape[i] = shape[i];
    t->data = data;
    t->nbytes = nbytes;
    t->n_elems = nel;
    w->n++;
    return PL_OK;
}

/* Sets key (replacing an earlier value of the same key). */
int pl_st_writer_meta(pl_st_writer *w, const char *key, const char *value, pl_err *err) {
    if (!w || !key || !value) return pl_err_set(err, PL_EINVAL, "safetensors writer: metadata needs a key and a value");
    if (!utf8_ok(key) || !utf8_ok(value))
        return pl_err_set(err, PL_EINVAL, "safetensors writer: metadata '%.200s' is not valid UTF-8", key);
    char *v = strdup(value);
    if (!v) return pl_err_set(err, PL_ENOMEM, "safetensors writer: out of memory");
    for (size_t i = 0; i < w->nm; i++)
        if (strcmp(w->mk[i], key) == 0) {
            free(w->mv[i]);
            w->mv[i] = v;
            return PL_OK;
        }
    if (w->nm == w->mcap) {
        size_t ncap = w->mcap ? w->mcap * 2 : 8;
        char **a = realloc(w->mk, ncap * sizeof *a);
        if (a) w->mk = a;
        char **b = a ? realloc(w->mv, ncap * sizeof *b) : NULL;
        if (b) w->mv = b;
        if (!a || !b) {
            free(v);
            return pl_err_set(err, PL_ENOMEM, "safetensors writer: out of memory");
        }
        w->mcap = ncap;
    }
    char *k = strdup(key);
    if (!k) {
        free(v);
        return pl_err_set(err, PL_ENOMEM, "safetensors writer: out of memory");
    }
    w->mk[w->nm] = k;
    w->mv[w->nm] = v;
    w->nm++;
    return PL_OK;
}

/* Growable text buffer; on allocation failure it stays marked bad. */
typedef struct sbuf {
    char *p;
    size_t n, cap;
    int bad;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->bad) return;
    if (b->n + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap < b->n + n + 1) ncap *= 2;
        char *np = realloc(b->p, ncap);
        if (!np) {
            b->bad = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_fmt(sbuf *b, const char *fmt, unsigned long long v) {
    char tmp[32];
    int k = snprintf(tmp, sizeof tmp, fmt, v);
    sb_put(b, tmp, (size_t)k);
}

/* JSON string literal. ascii: escape everything outside ' '..'~' as \uXXXX
 * (UTF-16, lowercase hex), as Python's json.dumps does by default; otherwise
 * only quotes, backslashes and control characters, as serde_json does. s is
 * valid UTF-8 (checked when it was added). */
static void sb_json_str(sbuf *b, const char *s, int ascii) {
    sb_put(b, "\"", 1);
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        char esc[16];
        if (c == '"') {
            sb_put(b, "\\\"", 2);
        } else if (c == '\\') {
            sb_put(b, "\\\\", 2);
        } else if (c == '\n') {
            sb_put(b, "\\n", 2);
        } else if (c == '\r') {
            sb_put(b, "\\r", 2);
        } else if (c == '\t') {
            sb_put(b, "\\t", 2);
        } else if (c == '\b') {
            sb_put(b, "\\b", 2);
        } else if (c == '\f') {
            sb_put(b, "\\f", 2);
        } else if (c < 0x20 || (ascii && c == 0x7f)) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            sb_str(b, esc);
        } else if (c < 0x80 || !ascii) {
            sb_put(b, (const char *)p, 1);
        } else {
            int len = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : 4;
            uint32_t cp = len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
            for (int i = 1; i < len; i++) cp = cp << 6 | (p[i] & 0x3f);
            if (cp >= 0x10000) {
                cp -= 0x10000;
                snprintf(esc, sizeof esc, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
            } else {
                snprintf(esc, sizeof esc, "\\u%04x", cp);
            }
            sb_str(b, esc);
            p += len;
            continue;
        }
        p++;
    }
    sb_put(b, "\"", 1);
}

/* Writes tensors idx[0..n) of w as one file at path. */
static int write_file(const pl_st_writer *w, const size_t *idx, size_t n, const char *path, pl_err *err) {
    sbuf h = {0};
    sb_str(&h, "{");
    int first = 1;
    if (w->nm) {
        sb_str(&h, "\"__metadata__\":{");
        for (size_t i = 0; i < w->nm; i++) {
            if (i) sb_str(&h, ",");
            sb_json_str(&h, w->mk[i], 0);
            sb_str(&h, ":");
            sb_json_str(&h, w->mv[i], 0);
        }
        sb_str(&h, "}");
        first = 0;
    }
    size_t off = 0;
    for (size_t k = 0; k < n; k++) {
        const w_tensor *t = &w->t[idx[k]];
        if (!first) sb_str(&h, ",");
        first = 0;
        sb_json_str(&h, t->name, 0);
        sb_str(&h, ":{\"dtype\":\"");
        sb_str(&h, st_dtype_name(t->dtype, NULL));
        sb_str(&h, "\",\"shape\":[");
        for (int d = 0; d < t->n_dims; d++) sb_fmt(&h, d ? ",%llu" : "%llu", (unsigned long long)t->shape[d]);
        size_t end;
        if (!pl_add_ok(off, t->nbytes, &end)) {
            free(h.p);
            return pl_err_set(err, PL_ERANGE, "%s: total tensor size overflows", path);
        }
        sb_fmt(&h, "],\"data_offsets\":[%llu", (unsigned long long)off);
        sb_fmt(&h, ",%llu]}", (unsigned long long)end);
        off = end;
    }
    sb_str(&h, "}");
    while (!h.bad && h.n % 8) sb_str(&h, " "); /* data starts 8-byte aligned */
    if (h.bad) {
        free(h.p);
        return pl_err_set(err, PL_ENOMEM, "%s: out of memory building the header", path);
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.n >> (8 * i));
    pl_afile f;
    int rc = pl_afile_open(&f, path, err);
    if (rc) {
        free(h.p);
        return rc;
    }
    int ok = fwrite(len8, 1, 8, f.fp) == 8 && fwrite(h.p, 1, h.n, f.fp) == h.n;
    for (size_t k = 0; ok && k < n; k++) {
        const w_tensor *t = &w->t[idx[k]];
        if (t->nbytes && fwrite(t->data, 1, t->nbytes, f.fp) != t->nbytes) ok = 0;
    }
    free(h.p);
    if (!ok) {
        int e = errno;
        pl_afile_abort(&f);
        return pl_err_set(err, PL_EIO, "%s: write failed: %s", path, strerror(e));
    }
    return pl_afile_commit(&f, err);
}

int pl_st_writer_write(pl_st_writer *w, const char *path, pl_err *err) {
    if (!w) return pl_err_set(err, PL_EINVAL, "%s: no safetensors writer", path);
    size_t *idx = malloc((w->n ? w->n : 1) * sizeof *idx);
    if (!idx) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < w->n; i++) idx[i] = i;
    int rc = write_file(w, idx, w->n, path, err);
    free(idx);
    return rc;
}

/* "model-DDDDD-of-DDDDD.safetensors" (a shard name of transformers' pattern). */
static int is_shard_name(const char *s) {
    static const char pat[] = "model-#####-of-#####.safetensors";
    if (strlen(s) != sizeof pat - 1) return 0;
    for (size_t i = 0; pat[i]; i++) {
        if (pat[i] == '#' ? (s[i] < '0' || s[i] > '9') : s[i] != pat[i]) return 0;
    }
    return 1;
}

/* After a successful save, remove what a previous save into the same
 * directory left that the new one does not use (as transformers does): other
 * shard files of the model-XXXXX-of-YYYYY pattern and the single file or
 * index of the other layout. keep_of is the new shard count (0: single). */
static void remove_stale(const char *dir, int n_shards) {
    DIR *d = opendir(dir);
    if (!d) return;
    char want_of[32];
    snprintf(want_of, sizeof want_of, "-of-%05d.", n_shards);
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *nm = de->d_name;
        int stale = 0;
        if (is_shard_name(nm))
            stale = n_shards == 0 || strstr(nm, want_of) == NULL || atoi(nm + 6) < 1 || atoi(nm + 6) > n_shards;
        else if (n_shards == 0 && strcmp(nm, ST_INDEX_NAME) == 0)
            stale = 1;
        else if (n_shards > 0 && strcmp(nm, ST_SINGLE_NAME) == 0)
            stale = 1;
        if (stale) {
            char *p = join_path(dir, nm);
            if (p) unlink(p);
            free(p);
        }
    }
    closedir(d);
}

typedef struct wm_entry {
    const char *name;
    int shard;
} wm_entry;

static int cmp_wm(const void *a, const void *b) {
    return strcmp(((const wm_entry *)a)->name, ((const wm_entry *)b)->name);
}

/* Groups tensors in insertion order: a shard is closed when the next tensor
 * would take it past max_shard_bytes; a tensor larger than the limit gets a
 * shard of its own (huggingface_hub's split_state_dict_into_shards rule). */
int pl_st_writer_write_sharded(pl_st_writer *w, const char *dir, size_t max_shard_bytes, pl_err *err) {
    if (!w) return pl_err_set(err, PL_EINVAL, "%s: no safetensors writer", dir);
    int rc = pl_mkdirs(dir, err);
    if (rc) return rc;
    size_t n = w->n;
    int *shard_of = calloc(n ? n : 1, sizeof *shard_of);
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    wm_entry *wm = malloc((n ? n : 1) * sizeof *wm);
    char *path = NULL;
    sbuf j = {0};
    if (!shard_of || !idx || !wm) {
        rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", dir);
        goto done;
    }
    /* Tensors of the shard being filled are marked pending (-1 - index of
     * its first tensor) and numbered when it closes; an oversized tensor is
     * numbered at once, so it comes before the shard still being filled, as
     * in huggingface_hub. */
    int n_shards = 0, open_g = -1;
    size_t cur = 0, total = 0, n_params = 0;
    for (size_t i = 0; i < n; i++) {
        size_t sz = w->t[i].nbytes;
        if (!pl_add_ok(total, sz, &total) || !pl_add_ok(n_params, w->t[i].n_elems, &n_params)) {
            rc = pl_err_set(err, PL_ERANGE, "%s: total tensor size overflows", dir);
            goto done;
        }
        if (sz > max_shard_bytes) {
            shard_of[i] = n_shards++; /* its own shard, closed now */
            continue;
        }
        if (open_g >= 0 && cur + sz > max_shard_bytes) {
            for (size_t k = 0; k < i; k++)
                if (shard_of[k] == -1 - open_g) shard_of[k] = n_shards;
            n_shards++;
            open_g = -1;
        }
        if (open_g < 0) {
            open_g = (int)i;
            cur = 0;
        }
        shard_of[i] = -1 - open_g; /* pending: numbered when its group closes */
        cur += sz;
    }
    if (open_g >= 0) {
        for (size_t k = 0; k < n; k++)
            if (shard_of[k] == -1 - open_g) shard_of[k] = n_shards;
        n_shards++;
    }
    if (n_shards > 99999) {
        rc = pl_err_set(err, PL_ERANGE, "%s: %d shards, more than the 99999 the naming scheme allows", dir, n_shards);
        goto done;
    }
    if (n_shards <= 1) {
        path = join_path(dir, ST_SINGLE_NAME);
        if (!path) {
            rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", dir);
            goto done;
        }
        if ((rc = pl_st_writer_write(w, path, err))) goto done;
        remove_stale(dir, 0);
        goto done;
    }
    char fname[64];
    for (int s = 0; s < n_shards; s++) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (shard_of[i] == s) idx[k++] = i;
        snprintf(fname, sizeof fname, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
        free(path);
        path = join_path(dir, fname);
        if (!path) {
            rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", dir);
            goto done;
        }
        if ((rc = write_file(w, idx, k, path, err))) goto done;
    }
    /* The index, last: json.dumps(index, indent=2, sort_keys=True) + "\n". */
    for (size_t i = 0; i < n; i++) {
        wm[i].name = w->t[i].name;
        wm[i].shard = shard_of[i];
    }
    qsort(wm, n, sizeof *wm, cmp_wm);
    sb_str(&j, "{\n  \"metadata\": {\n    \"total_parameters\": ");
    sb_fmt(&j, "%llu", (unsigned long long)n_params);
    sb_str(&j, ",\n    \"total_size\": ");
    sb_fmt(&j, "%llu", (unsigned long long)total);
    sb_str(&j, "\n  },\n  \"weight_map\": {");
    for (size_t i = 0; i < n; i++) {
        sb_str(&j, i ? ",\n    " : "\n    ");
        sb_json_str(&j, wm[i].name, 1);
        snprintf(fname, sizeof fname, ": \"model-%05d-of-%05d.safetensors\"", wm[i].shard + 1, n_shards);
        sb_str(&j, fname);
    }
    sb_str(&j, "\n  }\n}\n");
    if (j.bad) {
        rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", dir);
        goto done;
    }
    free(path);
    path = join_path(dir, ST_INDEX_NAME);
    if (!path) {
        rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", dir);
        goto done;
    }
    if ((rc = pl_write_file_atomic(path, j.p, j.n, err))) goto done;
    remove_stale(dir, n_shards);
done:
    free(j.p);
    free(path);
    free(wm);
    free(idx);
    free(shard_of);
    return rc;
}
