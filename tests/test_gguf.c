/* test_gguf.c: the GGUF reader (and mapfile) on the real fixtures, against
 * gguf-py's view of them, and on hostile files built in memory.
 *
 * (a) the tiny Llama fixture: header, metadata, tensor table, data section;
 * (b) SmolLM2-135M Q4_1 at $POTLUCK_MODEL: hyperparameters and tensor types;
 *     both compared with tests/interop/gguf_ref.py ($POTLUCK_REFS/gguf_ref);
 * (c) a small valid GGUF assembled here, then truncated, patched field by
 *     field (huge counts and lengths, bad dims/types/offsets/alignment,
 *     duplicates, ...) and randomly flipped: every bad file must give a
 *     non-zero status and a message naming the file, with no crash or leak. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "core/gguf.h"
#include "core/half.h"
#include "core/mapfile.h"
#include "core/quant.h"

static char g_dir[256];

/* ------------------------------------------------------------------ a tiny GGUF builder */

typedef struct {
    unsigned char *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put_u8(buf *b, uint8_t v) { put(b, &v, 1); }
static void put_u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(buf *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}

/* Named byte positions of fields in the valid file, for patching. */
static struct {
    const char *name;
    size_t pos;
} g_marks[64];
static int g_nmarks;
static void mark(const char *name, size_t pos) {
    g_marks[g_nmarks].name = name;
    g_marks[g_nmarks++].pos = pos;
}
static size_t at(const char *name) {
    for (int i = 0; i < g_nmarks; i++)
        if (strcmp(g_marks[i].name, name) == 0) return g_marks[i].pos;
    fprintf(stderr, "test bug: no mark %s\n", name);
    abort();
}

static void kv_head(buf *b, const char *key, uint32_t type) {
    put_str(b, key);
    put_u32(b, type);
}

static void free_marks(void) {
    for (int i = 0; i < g_nmarks; i++)
        if (g_marks[i].name[0] == 't' && g_marks[i].name[1] >= '0' && g_marks[i].name[1] <= '9')
            free((char *)g_marks[i].name);
    g_nmarks = 0;
}

#define N_TENSORS 4
#define N_KV 20
static size_t g_header_end; /* end of the tensor infos */

/* The valid file: 20 key/value pairs of every type (non-UTF-8 key and value
 * included), 4 tensors (F32 8x2, Q8_0 64, Q4_1 32x3, F16 4x1x1x1 with n_dims 4),
 * alignment 32, the last tensor ending at EOF. */
static void build_valid(buf *b) {
    free_marks();
    b->n = 0;
    put(b, "GGUF", 4);
    mark("version", b->n);
    put_u32(b, 3);
    mark("n_tensors", b->n);
    put_u64(b, N_TENSORS);
    mark("n_kv", b->n);
    put_u64(b, N_KV);

    mark("kv0.keylen", b->n);
    kv_head(b, "general.architecture", PL_GGUF_STRING);
    mark("kv0.vallen", b->n);
    put_str(b, "llama");
    kv_head(b, "general.alignment", PL_GGUF_UINT32);
    mark("align.type", b->n - 4);
    mark("align.value", b->n);
    put_u32(b, 32);
    kv_head(b, "general.name", PL_GGUF_STRING);
    mark("name.vallen", b->n);
    put_str(b, "tiny \xff\xfe test");
    mark("u8.key", b->n + 8);
    mark("u8.type", b->n + 8 + 7);
    kv_head(b, "test.u8", PL_GGUF_UINT8);
    put_u8(b, 200);
    kv_head(b, "test.i8", PL_GGUF_INT8);
    put_u8(b, (uint8_t)-5);
    kv_head(b, "test.u16", PL_GGUF_UINT16);
    uint16_t u16 = 65535;
    put(b, &u16, 2);
    kv_head(b, "test.i16", PL_GGUF_INT16);
    int16_t i16 = -300;
    put(b, &i16, 2);
    kv_head(b, "test.u32", PL_GGUF_UINT32);
    put_u32(b, 4000000000u);
    kv_head(b, "test.i32", PL_GGUF_INT32);
    put_u32(b, (uint32_t)-7);
    kv_head(b, "test.u64", PL_GGUF_UINT64);
    put_u64(b, (uint64_t)1 << 40);
    kv_head(b, "test.i64", PL_GGUF_INT64);
    put_u64(b, (uint64_t)(-((int64_t)1 << 40)));
    kv_head(b, "test.f32", PL_GGUF_FLOAT32);
    float f = 1.5f;
    put(b, &f, 4);
    kv_head(b, "test.f64", PL_GGUF_FLOAT64);
    double d = 2.25;
    put(b, &d, 8);
    kv_head(b, "test.bool", PL_GGUF_BOOL);
    put_u8(b, 1);
    kv_head(b, "test.arr_i32", PL_GGUF_ARRAY);
    mark("arr.type", b->n);
    put_u32(b, PL_GGUF_INT32);
    mark("arr.len", b->n);
    put_u64(b, 3);
    int32_t ai[3] = {1, -2, 3};
    put(b, ai, sizeof ai);
    kv_head(b, "test.arr_str", PL_GGUF_ARRAY);
    mark("sarr.type", b->n);
    put_u32(b, PL_GGUF_STRING);
    mark("sarr.len", b->n);
    put_u64(b, 3);
    mark("sarr.s0len", b->n);
    put_str(b, "a");
    put_str(b, "bc");
    put_str(b, "");
    kv_head(b, "test.arr_f32", PL_GGUF_ARRAY);
    put_u32(b, PL_GGUF_FLOAT32);
    put_u64(b, 2);
    float af[2] = {0.5f, -1.0f};
    put(b, af, sizeof af);
    kv_head(b, "key\xc3\x28-not-utf8", PL_GGUF_UINT8);
    put_u8(b, 1);
    kv_head(b, "test.big_u64", PL_GGUF_UINT64);
    put_u64(b, ((uint64_t)1 << 63) + 5);
    kv_head(b, "test.empty", PL_GGUF_STRING);
    put_str(b, "");

    /* tensor infos; offsets relative to the data section */
    static const char *names[N_TENSORS] = {"a", "b", "c", "dd"};
    static const uint32_t types[N_TENSORS] = {PL_F32, PL_Q8_0, PL_Q4_1, PL_F16};
    static const int ndims[N_TENSORS] = {2, 1, 2, 4};
    static const uint64_t ne[N_TENSORS][4] = {{8, 2}, {64}, {32, 3}, {4, 1, 1, 1}};
    static const char *tm[N_TENSORS] = {"t0", "t1", "t2", "t3"};
    uint64_t off = 0;
    uint64_t offs[N_TENSORS];
    for (int i = 0; i < N_TENSORS; i++) {
        char key[32];
#define MARK(field)                                                    \
    do {                                                               \
        snprintf(key, sizeof key, "%s." field, tm[i]);                 \
        mark(strdup(key), b->n);                                       \
    } while (0)
        MARK("namelen");
        put_str(b, names[i]);
        MARK("ndims");
        put_u32(b, (uint32_t)ndims[i]);
        for (int k = 0; k < ndims[i]; k++) {
            snprintf(key, sizeof key, "%s.ne%d", tm[i], k);
            mark(strdup(key), b->n);
            put_u64(b, ne[i][k]);
        }
        MARK("type");
        put_u32(b, types[i]);
        MARK("offset");
        offs[i] = off;
        put_u64(b, off);
        int64_t n = 1;
        for (int k = 0; k < ndims[i]; k++) n *= (int64_t)ne[i][k];
        off += (pl_dtype_row_bytes(types[i], n) + 31) / 32 * 32;
#undef MARK
    }
    g_header_end = b->n;
    while (b->n % 32) put_u8(b, 0);
    size_t data0 = b->n;
    /* a: F32 0, 0.5, ..., 7.5 */
    for (int i = 0; i < 16; i++) {
        float v = 0.5f * (float)i;
        put(b, &v, 4);
    }
    while (b->n < data0 + offs[1]) put_u8(b, 0);
    float x[96];
    for (int i = 0; i < 96; i++) x[i] = (float)((i * 37) % 23 - 11) * 0.125f;
    pl_block_q8_0 q8[2];
    pl_quantize_row_q8_0(x, q8, 64);
    put(b, q8, sizeof q8);
    while (b->n < data0 + offs[2]) put_u8(b, 0);
    pl_block_q4_1 q4[3];
    pl_quantize_row_q4_1(x, q4, 96);
    put(b, q4, sizeof q4);
    while (b->n < data0 + offs[3]) put_u8(b, 0);
    for (int i = 0; i < 4; i++) {
        uint16_t h = pl_f32_to_f16((float)i - 1.5f);
        put(b, &h, 2);
    }
}


static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
        abort();
    }
    if (n) fwrite(p, 1, n, f);
    fclose(f);
}

static void patch32(unsigned char *p, size_t pos, uint32_t v) { memcpy(p + pos, &v, 4); }
static void patch64(unsigned char *p, size_t pos, uint64_t v) { memcpy(p + pos, &v, 8); }

/* Exercise an opened file the way a loader would: every value rendered,
 * every tensor dequantized (its bytes must lie inside the map). */
static int exercise(const pl_gguf *g) {
    char tmp[256];
    int ok = 1;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        pl_gguf_kv_format(&g->kv[i], tmp, sizeof tmp);
        if (g->kv[i].type == PL_GGUF_ARRAY && g->kv[i].arr_type != PL_GGUF_STRING)
            for (uint64_t k = 0; k < g->kv[i].arr_len && k < 4; k++) {
                (void)pl_gguf_arr_i64(&g->kv[i], k);
                (void)pl_gguf_arr_f64(&g->kv[i], k);
            }
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const pl_gguf_tensor *t = &g->tensors[i];
        const unsigned char *d = t->data;
        if (d < g->map.data || d + t->nbytes > g->map.data + g->map.size) ok = 0;
        if (!pl_dtype_can_dequantize(t->type) || t->n_elems > 4096) continue;
        float *out = malloc((size_t)t->n_elems * sizeof *out);
        if (pl_dequantize_row(t->type, t->data, out, t->n_elems) != 0) ok = 0;
        free(out);
    }
    return ok;
}

/* Open a hostile file: must fail with a message naming the file (and the
 * expected word, if given). */
static void expect_fail(const char *what, const unsigned char *p, size_t n, const char *word) {
    char path[512];
    snprintf(path, sizeof path, "%s/hostile.gguf", g_dir);
    write_file(path, p, n);
    pl_gguf *g = (pl_gguf *)0x1;
    pl_err err;
    pl_err_clear(&err);
    int rc = pl_gguf_open(&g, path, &err);
    CHECK(rc < 0 && g == NULL, "%s: open succeeded (rc %d)", what, rc);
    if (rc == 0) {
        pl_gguf_close(g);
        return;
    }
    if (getenv("TEST_GGUF_VERBOSE")) printf("%-40s %s\n", what, err.msg);
    CHECK(err.code == rc, "%s: err.code %d != rc %d", what, err.code, rc);
    CHECK(strstr(err.msg, path) != NULL, "%s: message does not name the file: %s", what, err.msg);
    if (word) CHECK(strstr(err.msg, word) != NULL, "%s: message lacks '%s': %s", what, word, err.msg);
}

static void test_builder_valid(void) {
    buf b = {0};
    build_valid(&b);
    char path[512];
    snprintf(path, sizeof path, "%s/valid.gguf", g_dir);
    write_file(path, b.p, b.n);
    pl_gguf *g = NULL;
    pl_err err;
    int rc = pl_gguf_open(&g, path, &err);
    CHECK(rc == 0, "valid built file: %s", rc ? err.msg : "");
    if (rc == 0) {
        CHECK(g->version == 3 && g->n_tensors == N_TENSORS && g->n_kv == N_KV, "built header");
        CHECK(g->alignment == 32 && g->data_offset == (g_header_end + 31) / 32 * 32, "built data offset %zu",
              g->data_offset);
        uint32_t u32;
        int64_t i64;
        float f32;
        int bl;
        char *s = NULL;
        CHECK(pl_gguf_get_u32(g, "test.u32", &u32, &err) == 0 && u32 == 4000000000u, "get_u32");
        CHECK(pl_gguf_get_u32(g, "test.u8", &u32, &err) == 0 && u32 == 200, "get_u32 from u8");
        CHECK(pl_gguf_get_u32(g, "test.u16", &u32, &err) == 0 && u32 == 65535, "get_u32 from u16");
        CHECK(pl_gguf_get_u32(g, "test.i8", &u32, &err) == PL_EFORMAT && strstr(err.msg, "test.i8") &&
                  strstr(err.msg, path),
              "get_u32 of a negative: %s", err.msg);
        CHECK(pl_gguf_get_u32(g, "test.u64", &u32, &err) == PL_EFORMAT, "get_u32 of 2^40");
        CHECK(pl_gguf_get_i64(g, "test.i64", &i64, &err) == 0 && i64 == -((int64_t)1 << 40), "get_i64");
        CHECK(pl_gguf_get_i64(g, "test.i16", &i64, &err) == 0 && i64 == -300, "get_i64 from i16");
        CHECK(pl_gguf_get_i64(g, "test.i32", &i64, &err) == 0 && i64 == -7, "get_i64 from i32");
        CHECK(pl_gguf_get_i64(g, "test.big_u64", &i64, &err) == PL_EFORMAT, "get_i64 of 2^63+5");
        CHECK(pl_gguf_get_i64(g, "test.f32", &i64, &err) == PL_EFORMAT, "get_i64 of a float");
        CHECK(pl_gguf_get_f32(g, "test.f32", &f32, &err) == 0 && f32 == 1.5f, "get_f32");
        CHECK(pl_gguf_get_f32(g, "test.f64", &f32, &err) == 0 && f32 == 2.25f, "get_f32 from f64");
        CHECK(pl_gguf_get_f32(g, "test.u8", &f32, &err) == PL_EFORMAT, "get_f32 of an int");
        CHECK(pl_gguf_get_bool(g, "test.bool", &bl, &err) == 0 && bl == 1, "get_bool");
        CHECK(pl_gguf_get_bool(g, "test.u8", &bl, &err) == PL_EFORMAT, "get_bool of an int");
        CHECK(pl_gguf_get_str(g, "general.architecture", &s, &err) == 0 && s && strcmp(s, "llama") == 0, "get_str");
        free(s);
        s = NULL;
        CHECK(pl_gguf_get_str(g, "general.name", &s, &err) == 0 && s && strcmp(s, "tiny \xff\xfe test") == 0,
              "non-UTF-8 string kept as is");
        free(s);
        s = NULL;
        CHECK(pl_gguf_get_str(g, "test.empty", &s, &err) == 0 && s && s[0] == '\0', "empty string");
        free(s);
        s = (char *)0x1;
        CHECK(pl_gguf_get_str(g, "test.u8", &s, &err) == PL_EFORMAT && s == NULL, "get_str of an int");
        CHECK(pl_gguf_get_u32(g, "no.such.key", &u32, &err) == PL_ENOTFOUND && strstr(err.msg, "no.such.key"),
              "missing key: %s", err.msg);
        CHECK(pl_gguf_get(g, "key\xc3\x28-not-utf8") != NULL, "non-UTF-8 key found");
        const pl_gguf_kv *kv = pl_gguf_get(g, "test.arr_i32");
        CHECK(kv && kv->type == PL_GGUF_ARRAY && kv->arr_type == PL_GGUF_INT32 && kv->arr_len == 3, "int array");
        if (kv)
            CHECK(pl_gguf_arr_i64(kv, 1) == -2 && pl_gguf_arr_f64(kv, 2) == 3.0 && pl_gguf_arr_i64(kv, 3) == 0,
                  "int array values");
        kv = pl_gguf_get(g, "test.arr_f32");
        if (kv) CHECK(pl_gguf_arr_f64(kv, 0) == 0.5 && pl_gguf_arr_i64(kv, 1) == -1, "float array values");
        kv = pl_gguf_get(g, "test.arr_str");
        CHECK(kv && kv->arr_type == PL_GGUF_STRING && kv->arr_len == 3 && kv->strs, "string array");
        if (kv && kv->strs)
            CHECK(kv->strs[1].len == 2 && memcmp(kv->strs[1].ptr, "bc", 2) == 0 && kv->strs[2].len == 0,
                  "string array values");
        char tmp[128];
        pl_gguf_kv_format(pl_gguf_get(g, "general.architecture"), tmp, sizeof tmp);
        CHECK(strcmp(tmp, "\"llama\"") == 0, "format string: %s", tmp);
        pl_gguf_kv_format(pl_gguf_get(g, "test.arr_str"), tmp, sizeof tmp);
        CHECK(strcmp(tmp, "[array of 3 string]") == 0, "format array: %s", tmp);
        pl_gguf_kv_format(pl_gguf_get(g, "test.i64"), tmp, sizeof tmp);
        CHECK(strcmp(tmp, "-1099511627776") == 0, "format i64: %s", tmp);
        pl_gguf_kv_format(pl_gguf_get(g, "test.f32"), tmp, sizeof tmp);
        CHECK(strcmp(tmp, "1.5") == 0, "format f32: %s", tmp);
        pl_gguf_kv_format(pl_gguf_get(g, "test.bool"), tmp, sizeof tmp);
        CHECK(strcmp(tmp, "true") == 0, "format bool: %s", tmp);
        char small[8];
        pl_gguf_kv_format(pl_gguf_get(g, "general.name"), small, sizeof small);
        CHECK(strlen(small) < sizeof small, "format truncates: %s", small);
        CHECK(strcmp(pl_gguf_vtype_name(PL_GGUF_FLOAT64), "float64") == 0 && strcmp(pl_gguf_vtype_name(99), "?") == 0,
              "vtype names");

        const pl_gguf_tensor *t = pl_gguf_find_tensor(g, "a");
        CHECK(t && t->type == PL_F32 && t->n_dims == 2 && t->ne[0] == 8 && t->ne[1] == 2 && t->ne[2] == 1 &&
                  t->n_elems == 16 && t->nbytes == 64 && t->offset == 0,
              "tensor a");
        if (t) {
            float v[16];
            pl_dequantize_row(t->type, t->data, v, 16);
            CHECK(v[0] == 0.0f && v[15] == 7.5f, "tensor a data");
        }
        t = pl_gguf_find_tensor(g, "c");
        CHECK(t && t->type == PL_Q4_1 && t->nbytes == 60 && t->offset % 32 == 0, "tensor c");
        t = pl_gguf_find_tensor(g, "dd");
        CHECK(t && t->n_dims == 4 && t->n_elems == 4 && (const unsigned char *)t->data + t->nbytes ==
                                                             g->map.data + g->map.size,
              "tensor dd ends at EOF");
        CHECK(pl_gguf_find_tensor(g, "d") == NULL && pl_gguf_find_tensor(g, "") == NULL, "absent tensors");
        CHECK(exercise(g), "valid file exercise");
        pl_gguf_close(g);
    }
    free(b.p);
}

static void test_hostile(void) {
    buf b = {0};
    build_valid(&b);
    const size_t n = b.n;
    unsigned char *v = malloc(n + 64);
    char what[128];

    /* truncation at every byte offset (the last tensor ends at EOF, so every
     * proper prefix is invalid) */
    for (size_t len = 0; len < n; len++) {
        snprintf(what, sizeof what, "truncated to %zu of %zu bytes", len, n);
        expect_fail(what, b.p, len, NULL);
    }

#define VARIANT(label, word, stmt)        \
    do {                                  \
        memcpy(v, b.p, n);                \
        size_t vn = n;                    \
        stmt;                             \
        expect_fail(label, v, vn, word);  \
    } while (0)

    VARIANT("bad magic", "magic", v[0] = 'X');
    VARIANT("version 1", "version 1", patch32(v, at("version"), 1));
    VARIANT("version 4", "version 4", patch32(v, at("version"), 4));
    VARIANT("version big-endian", "version", patch32(v, at("version"), 0x03000000));
    VARIANT("n_tensors huge", "n_tensors", patch64(v, at("n_tensors"), UINT64_MAX));
    VARIANT("n_tensors 2^40", "n_tensors", patch64(v, at("n_tensors"), (uint64_t)1 << 40));
    VARIANT("n_tensors 2^59 (x32 wraps)", "n_tensors", patch64(v, at("n_tensors"), (uint64_t)1 << 59));
    VARIANT("n_tensors + 1", NULL, patch64(v, at("n_tensors"), N_TENSORS + 1));
    VARIANT("n_kv huge", "n_kv", patch64(v, at("n_kv"), UINT64_MAX));
    VARIANT("n_kv 2^40", "n_kv", patch64(v, at("n_kv"), (uint64_t)1 << 40));
    VARIANT("n_kv + 1", NULL, patch64(v, at("n_kv"), N_KV + 1));
    VARIANT("key length huge", "length 18446744073709551615", patch64(v, at("kv0.keylen"), UINT64_MAX));
    VARIANT("key length past EOF", "runs past the end", patch64(v, at("kv0.keylen"), n));
    VARIANT("string length huge", "general.architecture", patch64(v, at("kv0.vallen"), UINT64_MAX));
    VARIANT("string length 2^63", "runs past the end", patch64(v, at("name.vallen"), (uint64_t)1 << 63));
    VARIANT("array length huge", "array of", patch64(v, at("arr.len"), UINT64_MAX));
    VARIANT("array length 2^62 (x4 wraps)", "array of", patch64(v, at("arr.len"), (uint64_t)1 << 62));
    VARIANT("string array length huge", "array of", patch64(v, at("sarr.len"), UINT64_MAX));
    VARIANT("string array length 2^61 (x8 wraps)", "array of", patch64(v, at("sarr.len"), (uint64_t)1 << 61));
    VARIANT("string in array length huge", "string #0", patch64(v, at("sarr.s0len"), UINT64_MAX - 3));
    VARIANT("nested array", "nested", patch32(v, at("arr.type"), PL_GGUF_ARRAY));
    VARIANT("unknown array element type", "element type 13", patch32(v, at("arr.type"), 13));
    VARIANT("unknown value type", "value type 13", patch32(v, at("u8.type"), 13));
    VARIANT("unknown value type huge", "value type", patch32(v, at("u8.type"), UINT32_MAX));
    VARIANT("duplicate key", "duplicate key", memcpy(v + at("u8.key"), "test.i8", 7));
    VARIANT("alignment 0", "general.alignment", patch32(v, at("align.value"), 0));
    VARIANT("alignment 3", "general.alignment", patch32(v, at("align.value"), 3));
    VARIANT("alignment 2^31", "general.alignment", patch32(v, at("align.value"), 0x80000000u));
    VARIANT("alignment 64 (offsets misaligned)", "alignment 64", patch32(v, at("align.value"), 64));
    VARIANT("alignment as float", "general.alignment", patch32(v, at("align.type"), PL_GGUF_FLOAT32));
    VARIANT("n_dims 0", "n_dims is 0", patch32(v, at("t0.ndims"), 0));
    VARIANT("n_dims 5", "n_dims is 5", patch32(v, at("t0.ndims"), 5));
    VARIANT("n_dims huge", "n_dims", patch32(v, at("t0.ndims"), UINT32_MAX));
    VARIANT("ne 0", "ne[0] is 0", patch64(v, at("t0.ne0"), 0));
    VARIANT("ne 2^63", "ne[1]", patch64(v, at("t0.ne1"), (uint64_t)1 << 63));
    VARIANT("ne product overflow", "overflows", (patch64(v, at("t0.ne0"), (uint64_t)1 << 62),
                                                 patch64(v, at("t0.ne1"), 4)));
    VARIANT("ne product overflow 4 dims", "overflows",
            (patch64(v, at("t3.ne1"), (uint64_t)1 << 31), patch64(v, at("t3.ne2"), (uint64_t)1 << 31),
             patch64(v, at("t3.ne3"), (uint64_t)1 << 31)));
    VARIANT("byte size overflow", "overflows", (patch64(v, at("t0.ne0"), (uint64_t)1 << 61),
                                                patch64(v, at("t0.ne1"), 2)));
    VARIANT("huge tensor past EOF", "past the end", (patch64(v, at("t0.ne0"), (uint64_t)1 << 40)));
    VARIANT("unknown tensor type 16", "type 16", patch32(v, at("t0.type"), 16));
    VARIANT("unknown tensor type 99", "type 99", patch32(v, at("t0.type"), 99));
    VARIANT("safetensors-only type id 100", "type 100", patch32(v, at("t0.type"), PL_U8));
    VARIANT("tensor type huge", "type 4294967295", patch32(v, at("t0.type"), UINT32_MAX));
    VARIANT("n_elems not a multiple of the block (48 Q8_0)", "block size", patch64(v, at("t1.ne0"), 48));
    VARIANT("n_elems smaller than a block (16 Q8_0)", "block size", patch64(v, at("t1.ne0"), 16));
    VARIANT("row not whole blocks (Q4_1 16x6)", "block size", (patch64(v, at("t2.ne0"), 16),
                                                               patch64(v, at("t2.ne1"), 6)));
    VARIANT("misaligned offset", "not a multiple of the alignment",
            patch64(v, at("t1.offset"), 64 + 4));
    VARIANT("offset past EOF", "past the end", patch64(v, at("t3.offset"), 4096));
    VARIANT("offset 2^63", "past the end", patch64(v, at("t3.offset"), (uint64_t)1 << 63));
    VARIANT("offset near 2^64 (add wraps)", "past the end", patch64(v, at("t3.offset"), UINT64_MAX - 31));
    VARIANT("duplicate tensor name", "duplicate tensor name", v[at("t1.namelen") + 8] = 'a');
    VARIANT("tensor name with NUL", "NUL", v[at("t3.namelen") + 9] = '\0');
    VARIANT("tensor name length huge", "name length", patch64(v, at("t2.namelen"), UINT64_MAX));
    VARIANT("data cut at the last tensor", "past the end", vn = n - 1);
    VARIANT("data section missing", "past the end", vn = g_header_end);
#undef VARIANT

    /* empty file, 3 bytes, a directory, a missing file */
    expect_fail("empty file", b.p, 0, "magic");
    expect_fail("3 bytes", b.p, 3, "magic");
    pl_gguf *g = NULL;
    pl_err err;
    char path[512];
    snprintf(path, sizeof path, "%s/no-such.gguf", g_dir);
    CHECK(pl_gguf_open(&g, path, &err) == PL_EIO && g == NULL && strstr(err.msg, path), "missing file: %s", err.msg);
    CHECK(pl_gguf_open(&g, g_dir, &err) < 0 && g == NULL && strstr(err.msg, g_dir), "directory: %s", err.msg);

    /* random single-byte flips: succeed or fail cleanly; when they succeed,
     * every tensor still lies inside the file */
    uint64_t s = 0x243f6a8885a308d3ull;
    int opened = 0, refused = 0, bad = 0;
    snprintf(path, sizeof path, "%s/flip.gguf", g_dir);
    for (int it = 0; it < 400; it++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        size_t pos = (size_t)((s >> 33) % (it % 4 == 3 ? n : g_header_end));
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        unsigned char nv = (unsigned char)(s >> 40);
        if (nv == b.p[pos]) nv ^= 0x80;
        memcpy(v, b.p, n);
        v[pos] = nv;
        write_file(path, v, n);
        g = NULL;
        pl_err_clear(&err);
        int rc = pl_gguf_open(&g, path, &err);
        if (rc == 0) {
            opened++;
            if (!exercise(g)) bad++;
            pl_gguf_close(g);
        } else {
            refused++;
            if (!strstr(err.msg, path) || err.code != rc || g != NULL) {
                bad++;
                fprintf(stderr, "flip at %zu: rc %d, message: %s\n", pos, rc, err.msg);
            }
        }
    }
    CHECK(bad == 0, "random flips: %d handled badly", bad);
    CHECK(opened > 0 && refused > 0, "random flips: %d opened, %d refused", opened, refused);
    printf("note: 400 random byte flips: %d opened fine, %d refused with a message\n", opened, refused);

    free(v);
    free(b.p);
    free_marks();
}

/* ------------------------------------------------------------------ mapfile */

static void test_mapfile(void) {
    char path[512];
    pl_err err;
    snprintf(path, sizeof path, "%s/empty", g_dir);
    write_file(path, "", 0);
    pl_map m;
    CHECK(pl_map_open(&m, path, &err) == 0 && m.data == NULL && m.size == 0, "empty file maps to NULL/0");
    pl_map_close(&m);
    pl_map_close(&m); /* idempotent */
    snprintf(path, sizeof path, "%s/small", g_dir);
    write_file(path, "hello\0world", 11);
    CHECK(pl_map_open(&m, path, &err) == 0 && m.size == 11 && memcmp(m.data, "hello\0world", 11) == 0, "map small");
    pl_map_close(&m);
    CHECK(m.data == NULL && m.size == 0, "close resets");
    char *s = NULL;
    size_t len = 0;
    CHECK(pl_read_file(path, 100, &s, &len, &err) == 0 && len == 11 && s[11] == '\0' && memcmp(s, "hello\0world", 11) == 0,
          "read_file");
    free(s);
    s = NULL;
    CHECK(pl_read_file(path, 11, &s, &len, &err) == 0 && len == 11, "read_file at the limit");
    free(s);
    s = (char *)0x1;
    CHECK(pl_read_file(path, 10, &s, &len, &err) == PL_ERANGE && s == NULL && strstr(err.msg, path),
          "read_file over the limit: %s", err.msg);
    snprintf(path, sizeof path, "%s/empty", g_dir);
    CHECK(pl_read_file(path, 0, &s, &len, &err) == 0 && len == 0 && s && s[0] == '\0', "read_file empty");
    free(s);
    snprintf(path, sizeof path, "%s/missing", g_dir);
    CHECK(pl_map_open(&m, path, &err) == PL_EIO && strstr(err.msg, path), "map missing: %s", err.msg);
    CHECK(pl_read_file(path, 10, &s, &len, &err) == PL_EIO && strstr(err.msg, path), "read missing");
    CHECK(pl_map_open(&m, g_dir, &err) == PL_EIO, "map a directory");
    CHECK(pl_read_file(g_dir, 10, &s, &len, &err) == PL_EIO, "read a directory");
}

/* ------------------------------------------------------------------ real files vs gguf-py */

static cJSON *load_json(const char *refs, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/gguf_ref/%s", refs, name);
    char *txt = NULL;
    size_t len;
    pl_err err;
    if (pl_read_file(path, 64u << 20, &txt, &len, &err)) {
        CHECK(0, "reference missing: %s", err.msg);
        return NULL;
    }
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    CHECK(j != NULL, "%s: not JSON", path);
    return j;
}

static double jnum(const cJSON *o, const char *k) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(x) ? x->valuedouble : -1;
}

/* Compare everything gguf-py reports about a file with what we read. */
static void compare_with_peer(const pl_gguf *g, const cJSON *ref, const char *label) {
    CHECK(g->version == (uint32_t)jnum(ref, "version"), "%s: version", label);
    CHECK(g->n_tensors == (uint64_t)jnum(ref, "n_tensors"), "%s: n_tensors", label);
    CHECK(g->n_kv == (uint64_t)jnum(ref, "n_kv"), "%s: n_kv %llu vs %g", label, (unsigned long long)g->n_kv,
          jnum(ref, "n_kv"));
    CHECK(g->alignment == (size_t)jnum(ref, "alignment"), "%s: alignment", label);
    CHECK(g->data_offset == (size_t)jnum(ref, "data_offset"), "%s: data_offset %zu vs %g", label, g->data_offset,
          jnum(ref, "data_offset"));
    int kv_bad = 0, n_kv = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(ref, "kv")) {
        n_kv++;
        const char *key = cJSON_GetObjectItemCaseSensitive(e, "key")->valuestring;
        const pl_gguf_kv *kv = pl_gguf_get(g, key);
        int type = (int)jnum(e, "type");
        if (!kv || kv->type != type) {
            kv_bad++;
            fprintf(stderr, "%s: key %s missing or of another type\n", label, key);
            continue;
        }
        const cJSON *val = cJSON_GetObjectItemCaseSensitive(e, "value");
        int ok = 1;
        if (type == PL_GGUF_ARRAY) {
            ok = kv->arr_type == (int)jnum(e, "arr_type") && kv->arr_len == (uint64_t)jnum(e, "len");
            const cJSON *f;
            uint64_t i = 0;
            cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(e, "first")) {
                if (i >= kv->arr_len) ok = 0;
                else if (kv->arr_type == PL_GGUF_STRING)
                    ok &= cJSON_IsString(f) && kv->strs[i].len == strlen(f->valuestring) &&
                          memcmp(kv->strs[i].ptr, f->valuestring, (size_t)kv->strs[i].len) == 0;
                else ok &= pl_gguf_arr_f64(kv, i) == f->valuedouble;
                i++;
            }
        } else if (type == PL_GGUF_STRING) {
            ok = cJSON_IsString(val) && kv->str.len == strlen(val->valuestring) &&
                 memcmp(kv->str.ptr, val->valuestring, (size_t)kv->str.len) == 0;
        } else if (type == PL_GGUF_BOOL) {
            int bv;
            ok = pl_gguf_get_bool(g, key, &bv, NULL) == 0 && bv == cJSON_IsTrue(val);
        } else if (type == PL_GGUF_FLOAT32 || type == PL_GGUF_FLOAT64) {
            float fv;
            ok = pl_gguf_get_f32(g, key, &fv, NULL) == 0 && fv == (float)val->valuedouble;
        } else {
            int64_t iv;
            ok = pl_gguf_get_i64(g, key, &iv, NULL) == 0 && (double)iv == val->valuedouble;
        }
        if (!ok) {
            kv_bad++;
            fprintf(stderr, "%s: key %s: value differs from gguf-py\n", label, key);
        }
    }
    CHECK(kv_bad == 0 && (uint64_t)n_kv == g->n_kv, "%s: %d of %d keys differ from gguf-py", label, kv_bad, n_kv);
    int t_bad = 0, n_t = 0, n_sums = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(ref, "tensors")) {
        if ((uint64_t)n_t >= g->n_tensors) {
            t_bad++;
            break;
        }
        const pl_gguf_tensor *t = &g->tensors[n_t++];
        const char *name = cJSON_GetObjectItemCaseSensitive(e, "name")->valuestring;
        const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
        int ok = strcmp(t->name, name) == 0 && (int)t->type == (int)jnum(e, "type") &&
                 t->n_dims == cJSON_GetArraySize(shape) && t->offset == (uint64_t)jnum(e, "offset") &&
                 t->nbytes == (size_t)jnum(e, "n_bytes");
        for (int k = 0; k < t->n_dims && ok; k++) ok = t->ne[k] == (int64_t)cJSON_GetArrayItem(shape, k)->valuedouble;
        const cJSON *sum = cJSON_GetObjectItemCaseSensitive(e, "sum");
        if (ok && sum) {
            /* dequantize row by row, sum in double; first 8 values exact */
            n_sums++;
            int64_t rows = t->n_elems / t->ne[0];
            size_t rb = pl_dtype_row_bytes(t->type, t->ne[0]);
            float *row = malloc((size_t)t->ne[0] * sizeof *row);
            double s = 0, abs_s = 0;
            for (int64_t r = 0; r < rows && ok; r++) {
                ok = pl_dequantize_row(t->type, (const unsigned char *)t->data + (size_t)r * rb, row, t->ne[0]) == 0;
                for (int64_t i = 0; i < t->ne[0]; i++) {
                    s += row[i];
                    abs_s += fabs(row[i]);
                }
                if (r == 0) {
                    const cJSON *f;
                    int i = 0;
                    cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(e, "first")) {
                        if (i < t->ne[0]) ok &= (double)row[i] == f->valuedouble;
                        i++;
                    }
                }
            }
            double ref_abs = jnum(e, "abs_sum");
            ok &= fabs(s - sum->valuedouble) <= 1e-9 * ref_abs + 1e-12 && fabs(abs_s - ref_abs) <= 1e-9 * ref_abs;
            if (!ok) fprintf(stderr, "%s: %s: sum %.17g vs %.17g\n", label, name, s, sum->valuedouble);
            free(row);
        }
        if (!ok) {
            t_bad++;
            fprintf(stderr, "%s: tensor #%d %s differs from gguf-py\n", label, n_t - 1, name);
        }
    }
    CHECK(t_bad == 0 && (uint64_t)n_t == g->n_tensors && n_sums > 0,
          "%s: %d of %d tensors differ from gguf-py (%d dequantized)", label, t_bad, n_t, n_sums);
}

static void test_tiny_fixture(const char *shared, const char *refs) {
    char path[1024];
    snprintf(path, sizeof path, "%s/fixtures/gguf-tiny-llama/llama-2-tiny-random.gguf", shared);
    pl_gguf *g = NULL;
    pl_err err;
    int rc = pl_gguf_open(&g, path, &err);
    CHECK(rc == 0, "open %s: %s", path, rc ? err.msg : "");
    if (rc) return;
    CHECK(g->version == 3, "version %u", g->version);
    CHECK(g->n_tensors == 12, "n_tensors %llu", (unsigned long long)g->n_tensors);
    CHECK(g->n_kv == 18, "n_kv %llu", (unsigned long long)g->n_kv);
    CHECK(g->alignment == 32 && g->data_offset == 724416, "data section at %zu", g->data_offset);
    CHECK(g->map.size == 1750560, "file size");
    char *arch = NULL;
    CHECK(pl_gguf_get_str(g, "general.architecture", &arch, &err) == 0 && arch && strcmp(arch, "llama") == 0, "arch");
    free(arch);
    static const struct {
        const char *key;
        uint32_t v;
    } u[] = {{"llama.embedding_length", 8}, {"llama.block_count", 1},        {"llama.feed_forward_length", 32},
             {"llama.attention.head_count", 2}, {"llama.attention.head_count_kv", 2}, {"llama.rope.dimension_count", 4},
             {"llama.context_length", 4096}, {"general.file_type", 1}, {"tokenizer.ggml.bos_token_id", 1},
             {"tokenizer.ggml.eos_token_id", 2}};
    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++) {
        uint32_t v = 0;
        CHECK(pl_gguf_get_u32(g, u[i].key, &v, &err) == 0 && v == u[i].v, "%s = %u, expected %u", u[i].key, v, u[i].v);
    }
    float eps = 0;
    CHECK(pl_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &eps, &err) == 0 && fabsf(eps - 1e-5f) < 1e-9f,
          "rms eps %g", eps);
    const pl_gguf_kv *tok = pl_gguf_get(g, "tokenizer.ggml.tokens");
    CHECK(tok && tok->type == PL_GGUF_ARRAY && tok->arr_type == PL_GGUF_STRING && tok->arr_len == 32000 && tok->strs,
          "tokens: array of 32000 strings");
    if (tok && tok->strs && tok->arr_len > 2) {
        CHECK(tok->strs[1].len == 3 && memcmp(tok->strs[1].ptr, "<s>", 3) == 0, "token 1 is <s>");
        CHECK(tok->strs[0].len == 5 && memcmp(tok->strs[0].ptr, "<unk>", 5) == 0, "token 0 is <unk>");
    }
    const pl_gguf_kv *sc = pl_gguf_get(g, "tokenizer.ggml.scores");
    CHECK(sc && sc->arr_type == PL_GGUF_FLOAT32 && sc->arr_len == 32000, "scores");
    const pl_gguf_tensor *t = pl_gguf_find_tensor(g, "token_embd.weight");
    CHECK(t && t->type == PL_F16 && t->n_dims == 2 && t->ne[0] == 8 && t->ne[1] == 32000 && t->offset == 0 &&
              t->nbytes == 8 * 32000 * 2 && (const unsigned char *)t->data == g->map.data + 724416,
          "token_embd.weight F16 {8, 32000} at the data start");
    t = pl_gguf_find_tensor(g, "blk.0.ffn_down.weight");
    CHECK(t && t->type == PL_F16 && t->ne[0] == 32 && t->ne[1] == 8, "ffn_down F16 {32, 8}");
    t = pl_gguf_find_tensor(g, "output_norm.weight");
    CHECK(t && t->type == PL_F32 && t->n_dims == 1 && t->ne[0] == 8, "output_norm F32 {8}");
    t = pl_gguf_find_tensor(g, "output.weight");
    CHECK(t && (const unsigned char *)t->data + t->nbytes == g->map.data + g->map.size, "output.weight ends at EOF");
    /* dequantize every tensor; the values are finite and F32 ones are the raw bytes */
    int finite = 1;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const pl_gguf_tensor *ti = &g->tensors[i];
        float *out = malloc((size_t)ti->n_elems * sizeof *out);
        CHECK(pl_dequantize_row(ti->type, ti->data, out, ti->n_elems) == 0, "dequantize %s", ti->name);
        for (int64_t k = 0; k < ti->n_elems; k++) finite &= isfinite(out[k]) != 0;
        if (ti->type == PL_F32) CHECK(memcmp(out, ti->data, ti->nbytes) == 0, "%s F32 bytes", ti->name);
        free(out);
    }
    CHECK(finite, "all dequantized values finite");
    cJSON *ref = load_json(refs, "tiny.json");
    if (ref) compare_with_peer(g, ref, "tiny fixture");
    cJSON_Delete(ref);
    pl_gguf_close(g);
}

static void test_smollm2(const char *refs) {
    const char *model = getenv("POTLUCK_MODEL");
    if (!model || !*model) {
        printf("note: POTLUCK_MODEL is not set; the SmolLM2 checks did not run (make test sets it)\n");
        return;
    }
    struct stat st;
    CHECK(stat(model, &st) == 0, "POTLUCK_MODEL=%s: the file is missing", model);
    pl_gguf *g = NULL;
    pl_err err;
    int rc = pl_gguf_open(&g, model, &err);
    CHECK(rc == 0, "open SmolLM2: %s", rc ? err.msg : "");
    if (rc) return;
    char *arch = NULL;
    CHECK(pl_gguf_get_str(g, "general.architecture", &arch, &err) == 0 && arch && strcmp(arch, "llama") == 0,
          "SmolLM2 arch %s", arch ? arch : "?");
    free(arch);
    static const struct {
        const char *key;
        uint32_t v;
    } u[] = {{"llama.block_count", 30}, {"llama.embedding_length", 576}, {"llama.attention.head_count", 9},
             {"llama.attention.head_count_kv", 3}, {"llama.feed_forward_length", 1536}, {"llama.vocab_size", 49152}};
    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++) {
        uint32_t v = 0;
        CHECK(pl_gguf_get_u32(g, u[i].key, &v, &err) == 0 && v == u[i].v, "SmolLM2 %s = %u, expected %u", u[i].key, v,
              u[i].v);
    }
    const pl_gguf_kv *tok = pl_gguf_get(g, "tokenizer.ggml.tokens");
    CHECK(tok && tok->arr_type == PL_GGUF_STRING && tok->arr_len == 49152, "SmolLM2 tokens");
    CHECK(g->n_tensors == 272, "SmolLM2 n_tensors %llu", (unsigned long long)g->n_tensors);
    int counts[128] = {0}, unsupported = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        pl_dtype t = g->tensors[i].type;
        if (!pl_dtype_can_dequantize(t)) {
            unsupported++;
            fprintf(stderr, "SmolLM2: tensor %s has type %s\n", g->tensors[i].name, pl_dtype_name(t));
        }
        if ((int)t >= 0 && (int)t < 128) counts[t]++;
    }
    CHECK(unsupported == 0, "SmolLM2: %d tensors of types the dequantizer does not support", unsupported);
    char types[256] = "";
    for (int t = 0; t < 128; t++)
        if (counts[t]) {
            size_t l = strlen(types);
            snprintf(types + l, sizeof types - l, "%s%s x%d", l ? ", " : "", pl_dtype_name((pl_dtype)t), counts[t]);
        }
    printf("note: SmolLM2 tensor types: %s\n", types);
    const pl_gguf_tensor *t = pl_gguf_find_tensor(g, "token_embd.weight");
    CHECK(t && t->ne[0] == 576 && t->ne[1] == 49152, "SmolLM2 token_embd {576, 49152}");
    t = pl_gguf_find_tensor(g, "blk.29.ffn_down.weight");
    CHECK(t && t->type == PL_Q4_1 && t->ne[0] == 1536 && t->ne[1] == 576, "SmolLM2 blk.29.ffn_down Q4_1 {1536, 576}");
    cJSON *ref = load_json(refs, "smollm2.json");
    if (ref) compare_with_peer(g, ref, "SmolLM2");
    cJSON_Delete(ref);
    pl_gguf_close(g);
}

int main(void) {
    const char *shared = check_env("POTLUCK_SHARED");
    const char *refs = check_env("POTLUCK_REFS");
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/test_gguf.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    REQUIRE(mkdtemp(g_dir) != NULL, "mkdtemp %s: %s", g_dir, strerror(errno));
    test_mapfile();
    test_builder_valid();
    test_hostile();
    test_tiny_fixture(shared, refs);
    test_smollm2(refs);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return check_summary("test_gguf");
}
