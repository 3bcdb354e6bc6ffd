/* test_safetensors.c: safetensors round trips, sharding, files written by the real peers, hostile inputs.
 *
 *   test_safetensors                 the tests (reads $POTLUCK_REFS/safetensors_ref/)
 *   test_safetensors --write-only D  writes D/single.safetensors and D/sharded/ (for
 *                                    tests/cli_safetensors_read.sh, where the peer reads them) */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "core/atomic.h"
#include "core/half.h"
#include "core/json.h"
#include "core/mapfile.h"
#include "core/safetensors.h"

#define REQUIRE_VOID(cond)                                                          \
    do {                                                                            \
        if (!(cond)) {                                                              \
            check_failed++;                                                         \
            fprintf(stderr, "FAIL (fatal) %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            return;                                                                 \
        }                                                                           \
    } while (0)

static char g_tmp[256];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}
static void rm_rf(const char *p) { nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

/* A path in the test directory; 64 rotating buffers, so a test function may
 * keep a handful of them while making others. */
static char *tpath(const char *name) {
    static char buf[64][512];
    static int k;
    k = (k + 1) % 64;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_tmp, name);
    return buf[k];
}

static int write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    if (len && fwrite(data, 1, len, f) != len) {
        fclose(f);
        return -1;
    }
    return fclose(f);
}

static char *slurp(const char *path, size_t *len) {
    char *buf = NULL;
    pl_err err;
    if (pl_read_file(path, 64 << 20, &buf, len, &err) != PL_OK) return NULL;
    return buf;
}

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* ------------------------------------------------------------ test data */

static size_t esize_of(pl_dtype t) {
    switch (t) {
    case PL_F64: case PL_I64: case PL_U64: return 8;
    case PL_F32: case PL_I32: case PL_U32: return 4;
    case PL_F16: case PL_BF16: case PL_I16: case PL_U16: return 2;
    case PL_I8: case PL_U8: case PL_BOOL: return 1;
    default: return 0;
    }
}

static const char *st_name(pl_dtype t) {
    switch (t) {
    case PL_F64: return "F64";
    case PL_F32: return "F32";
    case PL_F16: return "F16";
    case PL_BF16: return "BF16";
    case PL_I64: return "I64";
    case PL_I32: return "I32";
    case PL_I16: return "I16";
    case PL_I8: return "I8";
    case PL_U64: return "U64";
    case PL_U32: return "U32";
    case PL_U16: return "U16";
    case PL_U8: return "U8";
    case PL_BOOL: return "BOOL";
    default: return "?";
    }
}

/* Element i of a tensor as double, whatever its dtype (data may be unaligned). */
static double elem(pl_dtype t, const void *data, size_t i) {
    const unsigned char *p = (const unsigned char *)data + i * esize_of(t);
    union { double d; float f; int64_t i64; uint64_t u64; int32_t i32; uint32_t u32; int16_t i16; uint16_t u16; int8_t i8; uint8_t u8; } v;
    memcpy(&v, p, esize_of(t));
    switch (t) {
    case PL_F64: return v.d;
    case PL_F32: return v.f;
    case PL_F16: return pl_f16_to_f32(v.u16);
    case PL_BF16: return pl_bf16_to_f32(v.u16);
    case PL_I64: return (double)v.i64;
    case PL_I32: return v.i32;
    case PL_I16: return v.i16;
    case PL_I8: return v.i8;
    case PL_U64: return (double)v.u64;
    case PL_U32: return v.u32;
    case PL_U16: return v.u16;
    case PL_U8: return v.u8;
    case PL_BOOL: return v.u8 != 0;
    default: return NAN;
    }
}

/* The value formula shared with tests/cli_safetensors_read.sh: element i of
 * tensor k is ((7i + 3k) mod 23) - 11 for signed types, scaled by 1/8 for
 * floats (exact in F16 and BF16), unscaled mod 23 for unsigned, (i + k) mod 2
 * for BOOL. */
static double formula(pl_dtype t, size_t k, size_t i) {
    long m = (long)((7 * i + 3 * k) % 23);
    switch (t) {
    case PL_F64: case PL_F32: case PL_F16: case PL_BF16: return (m - 11) * 0.125;
    case PL_I64: case PL_I32: case PL_I16: case PL_I8: return (double)(m - 11);
    case PL_U64: case PL_U32: case PL_U16: case PL_U8: return (double)m;
    case PL_BOOL: return (double)((i + k) % 2);
    default: return NAN;
    }
}

static void store(pl_dtype t, void *data, size_t i, double x) {
    unsigned char *p = (unsigned char *)data + i * esize_of(t);
    switch (t) {
    case PL_F64: memcpy(p, &x, 8); break;
    case PL_F32: { float f = (float)x; memcpy(p, &f, 4); break; }
    case PL_F16: { uint16_t h = pl_f32_to_f16((float)x); memcpy(p, &h, 2); break; }
    case PL_BF16: { uint16_t h = pl_f32_to_bf16((float)x); memcpy(p, &h, 2); break; }
    case PL_I64: { int64_t v = (int64_t)x; memcpy(p, &v, 8); break; }
    case PL_I32: { int32_t v = (int32_t)x; memcpy(p, &v, 4); break; }
    case PL_I16: { int16_t v = (int16_t)x; memcpy(p, &v, 2); break; }
    case PL_I8: { int8_t v = (int8_t)x; memcpy(p, &v, 1); break; }
    case PL_U64: { uint64_t v = (uint64_t)x; memcpy(p, &v, 8); break; }
    case PL_U32: { uint32_t v = (uint32_t)x; memcpy(p, &v, 4); break; }
    case PL_U16: { uint16_t v = (uint16_t)x; memcpy(p, &v, 2); break; }
    case PL_U8: case PL_BOOL: { uint8_t v = (uint8_t)x; memcpy(p, &v, 1); break; }
    default: break;
    }
}

typedef struct spec {
    const char *name;
    pl_dtype dtype;
    int n_dims;
    int64_t shape[4];
} spec;

/* The single-file set: every dtype, a 0-dim scalar, an empty tensor. */
static const spec k_single[] = {
    {"f32", PL_F32, 3, {2, 3, 4}},  {"f16", PL_F16, 2, {5, 7}},    {"bf16", PL_BF16, 2, {3, 8}},
    {"f64", PL_F64, 1, {6}},        {"i32", PL_I32, 1, {10}},      {"i64", PL_I64, 2, {2, 2}},
    {"i8", PL_I8, 1, {5}},          {"u8", PL_U8, 1, {6}},         {"i16", PL_I16, 1, {3}},
    {"u16", PL_U16, 1, {3}},        {"u32", PL_U32, 1, {3}},       {"u64", PL_U64, 1, {3}},
    {"bool", PL_BOOL, 1, {4}},      {"scalar", PL_F32, 0, {0}},    {"empty", PL_F32, 2, {0, 4}},
    {"model.layers.0.mlp.up_proj.weight", PL_F32, 2, {4, 3}},
};
#define N_SINGLE (sizeof k_single / sizeof k_single[0])
#define N_SHARDED 8 /* "layers.J.weight" F32 (8, 8): 256 bytes; max 800 bytes a shard -> 3 shards */
static const char *k_note = "caf\xc3\xa9 \"q\"\n\ttab";

static size_t spec_elems(const spec *s) {
    size_t n = 1;
    for (int d = 0; d < s->n_dims; d++) n *= (size_t)s->shape[d];
    return n;
}

/* Buffers filled by the formula; freed by free_bufs. */
static void *make_buf(const spec *s, size_t k) {
    size_t n = spec_elems(s);
    void *b = malloc(n * esize_of(s->dtype) + 1);
    if (b)
        for (size_t i = 0; i < n; i++) store(s->dtype, b, i, formula(s->dtype, k, i));
    return b;
}

static int write_single(const char *path, pl_err *err) {
    pl_st_writer *w = pl_st_writer_new();
    void *bufs[N_SINGLE] = {0};
    int rc = w ? PL_OK : PL_ENOMEM;
    for (size_t k = 0; rc == PL_OK && k < N_SINGLE; k++) {
        bufs[k] = make_buf(&k_single[k], k);
        rc = pl_st_writer_add(w, k_single[k].name, k_single[k].dtype, k_single[k].n_dims, k_single[k].shape, bufs[k],
                              err);
    }
    if (rc == PL_OK) rc = pl_st_writer_meta(w, "format", "pt", err);
    if (rc == PL_OK) rc = pl_st_writer_meta(w, "note", k_note, err);
    if (rc == PL_OK) rc = pl_st_writer_write(w, path, err);
    pl_st_writer_free(w);
    for (size_t k = 0; k < N_SINGLE; k++) free(bufs[k]);
    return rc;
}

static const spec *sharded_spec(size_t j) {
    static spec s[N_SHARDED];
    static char names[N_SHARDED][32];
    snprintf(names[j], sizeof names[j], "layers.%zu.weight", j);
    s[j] = (spec){names[j], PL_F32, 2, {8, 8}};
    return &s[j];
}

static int write_sharded(const char *dir, pl_err *err) {
    pl_st_writer *w = pl_st_writer_new();
    void *bufs[N_SHARDED] = {0};
    int rc = w ? PL_OK : PL_ENOMEM;
    for (size_t j = 0; rc == PL_OK && j < N_SHARDED; j++) {
        const spec *s = sharded_spec(j);
        bufs[j] = make_buf(s, j);
        rc = pl_st_writer_add(w, s->name, s->dtype, s->n_dims, s->shape, bufs[j], err);
    }
    if (rc == PL_OK) rc = pl_st_writer_meta(w, "format", "pt", err);
    if (rc == PL_OK) rc = pl_st_writer_write_sharded(w, dir, 800, err);
    pl_st_writer_free(w);
    for (size_t j = 0; j < N_SHARDED; j++) free(bufs[j]);
    return rc;
}

/* Checks tensor name of st against spec s filled with formula index k. */
static void check_spec(const pl_st *st, const spec *s, size_t k) {
    const pl_st_tensor *t = pl_st_find(st, s->name);
    CHECK(t != NULL, "tensor %s present", s->name);
    if (!t) return;
    CHECK(t->dtype == s->dtype, "%s: dtype %d", s->name, (int)t->dtype);
    int shape_ok = t->n_dims == s->n_dims;
    for (int d = 0; shape_ok && d < s->n_dims; d++) shape_ok = t->shape[d] == s->shape[d];
    CHECK(shape_ok, "%s: shape", s->name);
    size_t n = spec_elems(s);
    CHECK((size_t)t->n_elems == n && t->nbytes == n * esize_of(s->dtype), "%s: %lld elements, %zu bytes", s->name,
          (long long)t->n_elems, t->nbytes);
    size_t bad = 0;
    for (size_t i = 0; i < n && (size_t)t->n_elems == n; i++)
        if (elem(t->dtype, t->data, i) != formula(s->dtype, k, i)) bad++;
    CHECK(bad == 0, "%s: %zu values differ", s->name, bad);
    if (s->dtype == PL_F32 || s->dtype == PL_F16 || s->dtype == PL_BF16 || s->dtype == PL_F64) {
        float *f = malloc(n * sizeof *f + 4);
        pl_err err;
        int rc = f ? pl_st_to_f32(t, f, &err) : PL_ENOMEM;
        size_t badf = 0;
        for (size_t i = 0; rc == PL_OK && i < n; i++)
            if (f[i] != (float)formula(s->dtype, k, i)) badf++;
        CHECK(rc == PL_OK && badf == 0, "%s: pl_st_to_f32: rc %d, %zu values differ", s->name, rc, badf);
        free(f);
    }
}

/* ------------------------------------------------------------ round trip */
static void test_round_trip(void) {
    pl_err err;
    pl_err_clear(&err);
    const char *path = tpath("rt.safetensors");
    int rc = write_single(path, &err);
    REQUIRE_VOID(rc == PL_OK);
    /* header length: a multiple of 8, header padded with spaces */
    size_t len = 0;
    unsigned char *raw = (unsigned char *)slurp(path, &len);
    REQUIRE_VOID(raw && len >= 8);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | raw[i];
    CHECK(n % 8 == 0 && n + 8 <= len, "header length %llu is a multiple of 8", (unsigned long long)n);
    CHECK(raw[8] == '{' && (raw[8 + n - 1] == '}' || raw[8 + n - 1] == ' '), "header is a padded JSON object");
    CHECK(memcmp(raw + 8, "{\"__metadata__\":{\"format\":\"pt\",", 31) == 0, "metadata first: %.40s", raw + 8);
    free(raw);

    pl_st *st = NULL;
    rc = pl_st_open(&st, path, &err);
    REQUIRE_VOID(rc == PL_OK && st);
    CHECK(pl_st_count(st) == N_SINGLE, "count %zu", pl_st_count(st));
    int order_ok = 1;
    for (size_t k = 0; k < N_SINGLE; k++) {
        const pl_st_tensor *t = pl_st_at(st, k);
        if (!t || strcmp(t->name, k_single[k].name) != 0) order_ok = 0;
        if (t && t->file != 0) order_ok = 0;
        check_spec(st, &k_single[k], k);
    }
    CHECK(order_ok, "tensors in insertion order, all in file 0");
    CHECK(pl_st_at(st, N_SINGLE) == NULL, "pl_st_at past the end");
    CHECK(pl_st_find(st, "nope") == NULL, "absent tensor");
    const pl_st_tensor *sc = pl_st_find(st, "scalar");
    CHECK(sc && sc->n_dims == 0 && sc->n_elems == 1 && sc->nbytes == 4, "0-dim scalar");
    const pl_st_tensor *em = pl_st_find(st, "empty");
    CHECK(em && em->n_elems == 0 && em->nbytes == 0, "empty tensor");
    CHECK(pl_st_metadata(st, "format") && strcmp(pl_st_metadata(st, "format"), "pt") == 0, "metadata format");
    CHECK(pl_st_metadata(st, "note") && strcmp(pl_st_metadata(st, "note"), k_note) == 0, "metadata with escapes");
    CHECK(pl_st_metadata(st, "absent") == NULL, "absent metadata");
    CHECK(pl_st_file_path(st, 0) && strcmp(pl_st_file_path(st, 0), path) == 0, "file path");
    CHECK(pl_st_file_path(st, 1) == NULL, "no file 1");
    float dummy[16];
    rc = pl_st_to_f32(pl_st_find(st, "i32"), dummy, &err);
    CHECK(rc == PL_EUNSUPPORTED && strstr(err.msg, "'i32'"), "to_f32 of I32: %s", err.msg);
    pl_st_close(st);

    /* a directory with model.safetensors, and one with a single other file */
    pl_mkdirs(tpath("d1"), &err);
    CHECK(write_single(tpath("d1/model.safetensors"), &err) == PL_OK, "write into d1");
    rc = pl_st_open(&st, tpath("d1"), &err);
    CHECK(rc == PL_OK && pl_st_count(st) == N_SINGLE, "open a directory with model.safetensors: %s", err.msg);
    pl_st_close(st);
    pl_mkdirs(tpath("d2"), &err);
    CHECK(write_single(tpath("d2/adapter_model.safetensors"), &err) == PL_OK, "write into d2");
    rc = pl_st_open(&st, tpath("d2"), &err);
    CHECK(rc == PL_OK && pl_st_count(st) == N_SINGLE, "open a directory with one .safetensors: %s", err.msg);
    pl_st_close(st);

    /* an empty writer gives a valid file with no tensors */
    pl_st_writer *w = pl_st_writer_new();
    rc = pl_st_writer_write(w, tpath("none.safetensors"), &err);
    pl_st_writer_free(w);
    rc = rc ? rc : pl_st_open(&st, tpath("none.safetensors"), &err);
    CHECK(rc == PL_OK && pl_st_count(st) == 0, "empty file: %s", err.msg);
    pl_st_close(st);

    /* writer argument errors */
    w = pl_st_writer_new();
    float x[4] = {1, 2, 3, 4};
    int64_t shp[9] = {4, 1, 1, 1, 1, 1, 1, 1, 1};
    CHECK(pl_st_writer_add(w, "a", PL_F32, 1, shp, x, &err) == PL_OK, "add a");
    CHECK(pl_st_writer_add(w, "a", PL_F32, 1, shp, x, &err) == PL_EINVAL, "duplicate name: %s", err.msg);
    CHECK(pl_st_writer_add(w, "q", PL_Q4_0, 1, shp, x, &err) == PL_EUNSUPPORTED, "Q4_0: %s", err.msg);
    CHECK(pl_st_writer_add(w, "n9", PL_F32, 9, shp, x, &err) == PL_EINVAL, "9 dims: %s", err.msg);
    int64_t neg[1] = {-1};
    CHECK(pl_st_writer_add(w, "neg", PL_F32, 1, neg, x, &err) == PL_EINVAL, "negative dim: %s", err.msg);
    CHECK(pl_st_writer_add(w, "__metadata__", PL_F32, 1, shp, x, &err) == PL_EINVAL, "reserved name");
    CHECK(pl_st_writer_add(w, "", PL_F32, 1, shp, x, &err) == PL_EINVAL, "empty name");
    CHECK(pl_st_writer_add(w, "bad\xff", PL_F32, 1, shp, x, &err) == PL_EINVAL, "non-UTF-8 name");
    CHECK(pl_st_writer_add(w, "nodata", PL_F32, 1, shp, NULL, &err) == PL_EINVAL, "NULL data");
    int64_t huge[2] = {INT64_C(1) << 40, INT64_C(1) << 40};
    CHECK(pl_st_writer_add(w, "huge", PL_F32, 2, huge, x, &err) < 0, "huge shape: %s", err.msg);
    CHECK(pl_st_writer_meta(w, "k", "v1", &err) == PL_OK && pl_st_writer_meta(w, "k", "v2", &err) == PL_OK,
          "meta set twice");
    rc = pl_st_writer_write(w, tpath("one.safetensors"), &err);
    pl_st_writer_free(w);
    rc = rc ? rc : pl_st_open(&st, tpath("one.safetensors"), &err);
    CHECK(rc == PL_OK && pl_st_count(st) == 1 && strcmp(pl_st_metadata(st, "k"), "v2") == 0, "later meta wins");
    pl_st_close(st);
    CHECK(pl_st_writer_write(NULL, tpath("x"), &err) == PL_EINVAL, "NULL writer");
}

/* ------------------------------------------------------------ sharded */
static const char *basename_of(const char *p) {
    const char *s = p ? strrchr(p, '/') : NULL;
    return s ? s + 1 : p;
}

static int count_matching(const char *dir, const char *needle) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strstr(de->d_name, needle)) n++;
    closedir(d);
    return n;
}

static void test_sharded(void) {
    pl_err err;
    pl_err_clear(&err);
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tpath("sh"));
    int rc = write_sharded(dir, &err);
    REQUIRE_VOID(rc == PL_OK);
    CHECK(exists(tpath("sh/model-00001-of-00003.safetensors")) && exists(tpath("sh/model-00002-of-00003.safetensors")) &&
              exists(tpath("sh/model-00003-of-00003.safetensors")),
          "three shards written");
    CHECK(!exists(tpath("sh/model.safetensors")), "no single file");
    CHECK(count_matching(dir, ".tmp.") == 0, "no temp files");
    /* the index, byte for byte as transformers' json.dumps(indent=2, sort_keys=True) */
    char want[2048];
    int o = snprintf(want, sizeof want, "{\n  \"metadata\": {\n    \"total_parameters\": 512,\n    \"total_size\": 2048\n  },\n"
                                        "  \"weight_map\": {\n");
    for (int j = 0; j < N_SHARDED; j++)
        o += snprintf(want + o, sizeof want - (size_t)o, "    \"layers.%d.weight\": \"model-%05d-of-00003.safetensors\"%s\n",
                      j, j / 3 + 1, j + 1 < N_SHARDED ? "," : "");
    snprintf(want + o, sizeof want - (size_t)o, "  }\n}\n");
    size_t len = 0;
    char *idx = slurp(tpath("sh/model.safetensors.index.json"), &len);
    CHECK(idx && strcmp(idx, want) == 0, "index text:\n%s\nwanted:\n%s", idx ? idx : "(none)", want);
    free(idx);

    pl_st *st = NULL;
    rc = pl_st_open(&st, dir, &err);
    REQUIRE_VOID(rc == PL_OK && st);
    CHECK(pl_st_count(st) == N_SHARDED, "sharded count %zu", pl_st_count(st));
    int files_ok = 1;
    for (size_t j = 0; j < N_SHARDED; j++) {
        check_spec(st, sharded_spec(j), j);
        const pl_st_tensor *t = pl_st_find(st, sharded_spec(j)->name);
        char want_file[64];
        snprintf(want_file, sizeof want_file, "model-%05zu-of-00003.safetensors", j / 3 + 1);
        if (!t || strcmp(basename_of(pl_st_file_path(st, t->file)), want_file) != 0) files_ok = 0;
    }
    CHECK(files_ok, "each tensor in its shard");
    CHECK(pl_st_file_path(st, 2) && !pl_st_file_path(st, 3), "three files open");
    CHECK(pl_st_metadata(st, "format") && strcmp(pl_st_metadata(st, "format"), "pt") == 0, "shard metadata");
    pl_st_close(st);
    rc = pl_st_open(&st, tpath("sh/model.safetensors.index.json"), &err);
    CHECK(rc == PL_OK && pl_st_count(st) == N_SHARDED, "open by index path: %s", err.msg);
    pl_st_close(st);

    /* more shards: the old 3-shard files are removed */
    pl_st_writer *w = pl_st_writer_new();
    void *bufs[N_SHARDED];
    for (size_t j = 0; j < N_SHARDED; j++) {
        const spec *s = sharded_spec(j);
        bufs[j] = make_buf(s, j);
        pl_st_writer_add(w, s->name, s->dtype, s->n_dims, s->shape, bufs[j], &err);
    }
    rc = pl_st_writer_write_sharded(w, dir, 300, &err);
    CHECK(rc == PL_OK && count_matching(dir, "-of-00008.safetensors") == 8 && count_matching(dir, "-of-00003") == 0,
          "re-shard into 8 removes the 3 old shards: %s", err.msg);
    /* one shard: model.safetensors, index and shards removed */
    rc = pl_st_writer_write_sharded(w, dir, 1 << 20, &err);
    CHECK(rc == PL_OK && exists(tpath("sh/model.safetensors")) && !exists(tpath("sh/model.safetensors.index.json")) &&
              count_matching(dir, "-of-") == 0,
          "single-shard save: %s", err.msg);
    rc = pl_st_open(&st, dir, &err);
    CHECK(rc == PL_OK && pl_st_count(st) == N_SHARDED, "read the single-shard save: %s", err.msg);
    if (rc == PL_OK)
        for (size_t j = 0; j < N_SHARDED; j++) check_spec(st, sharded_spec(j), j);
    pl_st_close(st);
    /* back to shards: model.safetensors removed */
    rc = pl_st_writer_write_sharded(w, dir, 800, &err);
    CHECK(rc == PL_OK && !exists(tpath("sh/model.safetensors")) && count_matching(dir, "-of-00003") == 3,
          "sharded save after a single one: %s", err.msg);
    pl_st_writer_free(w);
    for (size_t j = 0; j < N_SHARDED; j++) free(bufs[j]);

    /* a tensor above the limit gets its own shard, numbered before the shard being filled */
    unsigned char *big = calloc(1, 2000);
    w = pl_st_writer_new();
    int64_t s100[1] = {100}, s2000[1] = {2000};
    pl_st_writer_add(w, "a", PL_U8, 1, s100, big, &err);
    pl_st_writer_add(w, "b", PL_U8, 1, s2000, big, &err);
    pl_st_writer_add(w, "c", PL_U8, 1, s100, big, &err);
    rc = pl_st_writer_write_sharded(w, tpath("big"), 1000, &err);
    pl_st_writer_free(w);
    free(big);
    rc = rc ? rc : pl_st_open(&st, tpath("big"), &err);
    CHECK(rc == PL_OK, "oversized tensor save: %s", err.msg);
    if (rc == PL_OK) {
        const pl_st_tensor *a = pl_st_find(st, "a"), *b = pl_st_find(st, "b"), *c = pl_st_find(st, "c");
        CHECK(a && b && c && strcmp(basename_of(pl_st_file_path(st, b->file)), "model-00001-of-00002.safetensors") == 0 &&
                  strcmp(basename_of(pl_st_file_path(st, a->file)), "model-00002-of-00002.safetensors") == 0 && a->file == c->file,
              "oversized tensor first, a and c together");
        pl_st_close(st);
    }
}

/* ------------------------------------------------------------ files written by the peers */
static void test_peer_files(void) {
    const char *refs = check_env("POTLUCK_REFS");
    char base[1024], p[1400];
    snprintf(base, sizeof base, "%s/safetensors_ref", refs);
    snprintf(p, sizeof p, "%s/expected.json", base);
    pl_err err;
    pl_err_clear(&err);
    cJSON *ex = NULL;
    int rc = pl_json_load(p, 16 << 20, &ex, &err);
    CHECK(rc == PL_OK, "peer references: %s (run: bash tests/refs.sh safetensors_ref)", err.msg);
    if (rc) return;
    const cJSON *cases = cJSON_GetObjectItem(ex, "cases");
    int n_cases = 0, n_tensors = 0;
    const cJSON *cs;
    cJSON_ArrayForEach(cs, cases) {
        n_cases++;
        const char *rel = cJSON_GetObjectItem(cs, "path")->valuestring;
        snprintf(p, sizeof p, "%s/%s", base, rel);
        pl_st *st = NULL;
        rc = pl_st_open(&st, p, &err);
        CHECK(rc == PL_OK, "open peer file %s: %s", rel, err.msg);
        if (rc) continue;
        const cJSON *ts = cJSON_GetObjectItem(cs, "tensors");
        CHECK(pl_st_count(st) == (size_t)cJSON_GetArraySize(ts), "%s: %zu tensors, peer wrote %d", rel, pl_st_count(st),
              cJSON_GetArraySize(ts));
        const cJSON *m;
        cJSON_ArrayForEach(m, cJSON_GetObjectItem(cs, "metadata")) {
            const char *v = pl_st_metadata(st, m->string);
            CHECK(v && strcmp(v, m->valuestring) == 0, "%s: metadata %s = %s", rel, m->string, v ? v : "(none)");
        }
        const cJSON *tj;
        cJSON_ArrayForEach(tj, ts) {
            n_tensors++;
            const char *name = cJSON_GetObjectItem(tj, "name")->valuestring;
            const pl_st_tensor *t = pl_st_find(st, name);
            CHECK(t != NULL, "%s: tensor %s", rel, name);
            if (!t) continue;
            CHECK(strcmp(st_name(t->dtype), cJSON_GetObjectItem(tj, "dtype")->valuestring) == 0, "%s: %s dtype %s", rel,
                  name, st_name(t->dtype));
            const cJSON *shape = cJSON_GetObjectItem(tj, "shape");
            int shape_ok = t->n_dims == cJSON_GetArraySize(shape);
            for (int d = 0; shape_ok && d < t->n_dims; d++)
                shape_ok = t->shape[d] == (int64_t)cJSON_GetArrayItem(shape, d)->valuedouble;
            CHECK(shape_ok, "%s: %s shape", rel, name);
            const cJSON *shard = cJSON_GetObjectItem(tj, "shard");
            if (shard)
                CHECK(strcmp(basename_of(pl_st_file_path(st, t->file)), shard->valuestring) == 0, "%s: %s in shard %s",
                      rel, name, shard->valuestring);
            snprintf(p, sizeof p, "%s/%s", base, cJSON_GetObjectItem(tj, "values")->valuestring);
            size_t len = 0;
            char *want = slurp(p, &len);
            size_t n = (size_t)t->n_elems;
            CHECK(want && len == n * 4, "%s: %s: values file %zu bytes for %zu elements", rel, name, len, n);
            if (!want || len != n * 4) {
                free(want);
                continue;
            }
            float *got = malloc(n * 4 + 4);
            int is_float = t->dtype == PL_F32 || t->dtype == PL_F16 || t->dtype == PL_BF16 || t->dtype == PL_F64;
            if (is_float) {
                rc = pl_st_to_f32(t, got, &err);
                CHECK(rc == PL_OK, "%s: %s: to_f32: %s", rel, name, err.msg);
            } else {
                for (size_t i = 0; i < n; i++) got[i] = (float)elem(t->dtype, t->data, i);
            }
            CHECK(memcmp(got, want, n * 4) == 0, "%s: %s: values differ from the peer's (max abs %g)", rel, name,
                  check_max_abs(got, (const float *)want, n));
            free(got);
            free(want);
        }
        /* re-shard the transformers checkpoint with our writer: the index must be the same bytes */
        const cJSON *order = cJSON_GetObjectItem(cs, "order");
        if (order) {
            pl_st_writer *w = pl_st_writer_new();
            const cJSON *o;
            rc = PL_OK;
            cJSON_ArrayForEach(o, order) {
                const pl_st_tensor *t = pl_st_find(st, o->valuestring);
                if (!t) {
                    rc = PL_ENOTFOUND;
                    break;
                }
                if ((rc = pl_st_writer_add(w, t->name, t->dtype, t->n_dims, t->shape, t->data, &err))) break;
            }
            cJSON_ArrayForEach(m, cJSON_GetObjectItem(cs, "metadata")) pl_st_writer_meta(w, m->string, m->valuestring, &err);
            size_t max = (size_t)cJSON_GetObjectItem(cs, "max_shard_size")->valuedouble;
            if (rc == PL_OK) rc = pl_st_writer_write_sharded(w, tpath("reshard"), max, &err);
            pl_st_writer_free(w);
            CHECK(rc == PL_OK, "re-shard %s: %s", rel, err.msg);
            snprintf(p, sizeof p, "%s/%s", base, cJSON_GetObjectItem(cs, "index")->valuestring);
            size_t l1 = 0, l2 = 0;
            char *theirs = slurp(p, &l1), *ours = slurp(tpath("reshard/model.safetensors.index.json"), &l2);
            CHECK(theirs && ours && l1 == l2 && memcmp(theirs, ours, l1) == 0,
                  "our index differs from transformers':\n%s\ntransformers:\n%s", ours ? ours : "(none)",
                  theirs ? theirs : "(none)");
            free(theirs);
            free(ours);
            pl_st *mine = NULL;
            rc = pl_st_open(&mine, tpath("reshard"), &err);
            CHECK(rc == PL_OK && pl_st_count(mine) == pl_st_count(st), "read our re-shard: %s", err.msg);
            int same = rc == PL_OK;
            for (size_t i = 0; same && i < pl_st_count(st); i++) {
                const pl_st_tensor *a = pl_st_at(st, i), *b = pl_st_find(mine, a->name);
                same = b && b->nbytes == a->nbytes && memcmp(a->data, b->data, a->nbytes) == 0 &&
                       strcmp(basename_of(pl_st_file_path(st, a->file)), basename_of(pl_st_file_path(mine, b->file))) == 0;
            }
            CHECK(same, "re-shard: same tensors in the same shard files as transformers");
            pl_st_close(mine);
        }
        pl_st_close(st);
    }
    CHECK(n_cases == 3 && n_tensors > 30, "peer cases %d, tensors %d", n_cases, n_tensors);
    cJSON_Delete(ex);
}

/* ------------------------------------------------------------ hostile inputs */
static void raw_st(const char *path, uint64_t n, const char *hdr, size_t hlen, const void *data, size_t dlen) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(n >> (8 * i));
    fwrite(len8, 1, 8, f);
    if (hlen) fwrite(hdr, 1, hlen, f);
    if (dlen) fwrite(data, 1, dlen, f);
    fclose(f);
}

static const unsigned char k_zeros[64];

/* A file with header hdr (its exact length) and 16 bytes of data. */
static void hdr_st(const char *path, const char *hdr) { raw_st(path, strlen(hdr), hdr, strlen(hdr), k_zeros, 16); }

/* Opening path must fail cleanly, with a message naming `names` (and containing want). */
static void expect_bad(const char *path, const char *names, const char *want, const char *desc) {
    pl_st *st = NULL;
    pl_err err;
    pl_err_clear(&err);
    int rc = pl_st_open(&st, path, &err);
    CHECK(rc < 0 && st == NULL && err.code == rc && strstr(err.msg, names) && (!want || strstr(err.msg, want)) &&
              !strchr(err.msg, '\n'),
          "%s: rc %d, message \"%s\" (want it to name %s%s%s)", desc, rc, err.msg, names, want ? " and say " : "",
          want ? want : "");
    if (getenv("PL_TEST_VERBOSE")) printf("%-45s -> %s\n", desc, err.msg);
    if (st) pl_st_close(st);
}

static void test_hostile(void) {
    pl_err err;
    pl_err_clear(&err);
    /* truncated at every byte */
    const char *good = tpath("good.safetensors");
    pl_st_writer *w = pl_st_writer_new();
    float f3[3] = {1, 2, 3};
    int8_t i5[5] = {1, -2, 3, -4, 5};
    int64_t s3[1] = {3}, s5[1] = {5};
    pl_st_writer_add(w, "w", PL_F32, 1, s3, f3, &err);
    pl_st_writer_add(w, "b", PL_I8, 1, s5, i5, &err);
    pl_st_writer_meta(w, "format", "pt", &err);
    int rc = pl_st_writer_write(w, good, &err);
    pl_st_writer_free(w);
    REQUIRE_VOID(rc == PL_OK);
    size_t len = 0;
    char *bytes = slurp(good, &len);
    REQUIRE_VOID(bytes && len > 8);
    pl_st *st = NULL;
    rc = pl_st_open(&st, good, &err);
    CHECK(rc == PL_OK && pl_st_count(st) == 2, "the untruncated file opens: %s", err.msg);
    pl_st_close(st);
    const char *tr = tpath("trunc.safetensors");
    size_t bad_at = SIZE_MAX;
    for (size_t k = 0; k < len; k++) {
        write_bytes(tr, bytes, k);
        st = NULL;
        pl_err_clear(&err);
        rc = pl_st_open(&st, tr, &err);
        if (rc >= 0 || st || !strstr(err.msg, tr)) {
            if (bad_at == SIZE_MAX) bad_at = k;
        }
        pl_st_close(st);
    }
    CHECK(bad_at == SIZE_MAX, "truncated at %zu of %zu bytes: not rejected cleanly", bad_at, len);

    /* random byte corruption: anything may be accepted or rejected, never a crash or a leak */
    uint64_t lcg = 12345;
    char *copy = malloc(len);
    int accepted = 0, rejected_clean = 0, rejected_bad = 0;
    for (int it = 0; copy && it < 1500; it++) {
        memcpy(copy, bytes, len);
        for (int flips = 0; flips < 1 + it % 3; flips++) {
            lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)(lcg >> 33) % len;
            copy[at] = (char)(lcg >> 25);
        }
        write_bytes(tr, copy, len);
        st = NULL;
        rc = pl_st_open(&st, tr, &err);
        if (rc == PL_OK) {
            accepted++;
            for (size_t i = 0; i < pl_st_count(st); i++) { /* touch every exposed byte */
                const pl_st_tensor *t = pl_st_at(st, i);
                volatile unsigned char sum = 0;
                for (size_t b = 0; b < t->nbytes; b++) sum += ((const unsigned char *)t->data)[b];
                (void)sum;
            }
        } else if (strstr(err.msg, tr)) {
            rejected_clean++;
        } else {
            rejected_bad++;
        }
        pl_st_close(st);
    }
    free(copy);
    free(bytes);
    printf("note: %d corrupted copies of a %zu-byte file: %d accepted, %d rejected\n", 1500, len, accepted,
           rejected_clean + rejected_bad);
    CHECK(rejected_bad == 0 && rejected_clean > 0, "corrupted files: %d accepted, %d rejected naming the file, %d not",
          accepted, rejected_clean, rejected_bad);

    const char *p = tpath("hostile.safetensors");
    raw_st(p, UINT64_MAX, "{}", 2, NULL, 0);
    expect_bad(p, p, "past the end", "header length 2^64-1");
    raw_st(p, 1000, "{}", 2, k_zeros, 16);
    expect_bad(p, p, "past the end", "header length > file size");
    raw_st(p, 19, "{}", 2, k_zeros, 16);
    expect_bad(p, p, "past the end", "header length one past the file size");
    /* header length above the 100 MB cap, in a sparse file that is long enough */
    raw_st(p, 100000001, "{}", 2, NULL, 0);
    rc = truncate(p, 8 + 100000001 + 16);
    CHECK(rc == 0, "truncate: %s", strerror(errno));
    expect_bad(p, p, "limit", "header length above the cap");
    hdr_st(p, "{not json}");
    expect_bad(p, p, "not valid JSON", "header not JSON");
    hdr_st(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}");
    expect_bad(p, p, "not valid JSON", "header JSON cut short");
    hdr_st(p, "[1, 2]");
    expect_bad(p, p, "'{'", "header an array");
    hdr_st(p, "\"str\"");
    expect_bad(p, p, NULL, "header a string");
    raw_st(p, 0, "", 0, k_zeros, 16);
    expect_bad(p, p, NULL, "header empty");
    hdr_st(p, "{} trailing");
    expect_bad(p, p, "after the JSON", "trailing bytes");
    hdr_st(p, "{\"a\": 1}");
    expect_bad(p, p, "expected an object", "entry not an object");
    hdr_st(p, "{\"a\": {\"dtype\": \"Q4\", \"shape\": [4], \"data_offsets\": [0, 16]}}");
    expect_bad(p, p, "unknown dtype", "dtype unknown");
    hdr_st(p, "{\"a\": {\"dtype\": \"f32\", \"shape\": [4], \"data_offsets\": [0, 16]}}");
    expect_bad(p, p, "unknown dtype", "dtype in lower case");
    hdr_st(p, "{\"a\": {\"dtype\": 4, \"shape\": [4], \"data_offsets\": [0, 16]}}");
    expect_bad(p, p, "dtype", "dtype a number");
    hdr_st(p, "{\"a\": {\"shape\": [4], \"data_offsets\": [0, 16]}}");
    expect_bad(p, p, "dtype", "dtype missing");
    hdr_st(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [-4], \"data_offsets\": [0, 16]}}");
    expect_bad(p, p, "shape[0]", "shape negative");
    hdr_st(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [2, 1.5], \"data_offsets\": [0, 12]}}");
    expect_bad(p, p, "shape[1]", "shape non-integer");
    hdr_st(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [\"4\"], \"data_offsets\": [0, 16]}}");
    expect_bad(p, p, "shape[0]", "shape a string");
    hdr_st(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": 4, \"data_offsets\": [0, 16]}}");
    expect_bad(p, p, "shape", "shape not an array");
    hdr_st(p, "{\"a\": {\"dtype\": \"F32\", \"data_offsets\": [0, 16]}}");
    expect_bad(p, p, "shape", "shape missing");
    hdr_st(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 4294967296], \"data_offsets\": [0, 0]}}");
    expect_bad(p, p, "overflow", "shape product overflows int64");
    hdr_st(p, "{\"a\": {\"dtype\": \"F64\", \"shape\": [4503599627370496, 1024], \"data_offsets\": [0, 0]}}");
    expect_bad(p, p, "overflow", "elements * element size overflows");
    hdr_st(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [1e300], \"data_offsets\": [0, 16]}}");
    expect_bad(p, p, "shape[0]", "shape 1e300");
    hdr_st(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,4], \"data_offsets\": [0, 16]}}");
    expect_bad(p, p, "array longer", "nine dimensions");
    hdr_st(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [\"1\",\"1\",\"1\",\"1\",\"1\",\"1\",\"1\",\"1\",\"4\"], \"data_offsets\": [0, 16]}}");
    expect_bad(p, p, "array longer", "nine string dimensions");
    hdr_st(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [[1],[1],[1],[1],[1],[1],[1],[1],[4]], \"data_offsets\": [0, 16]}}");
    expect_bad(p, p, "array longer", "nine array dimensions");
    hdr_st(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,4], \"data_offsets\": [0, 16]}, \"s\": {\"dtype\": \"U8\", \"shape\": [], \"data_offsets\": [0, 1]}}");
    rc = pl_st_open(&st, p, &err);
    CHECK(rc == PL_OK && pl_st_count(st) == 2 && pl_st_find(st, "a")->n_dims == 8, "eight dimensions are fine: %s", err.msg);
    pl_st_close(st);
    /* a header of millions of tiny values is refused before it is parsed */
    {
        size_t reps = 2000001, hl = 6 + reps * 6 + 2;
        char *h = malloc(hl + 1);
        if (h) {
            memcpy(h, "{\"x\":{", 6);
            for (size_t r = 0; r < reps; r++) memcpy(h + 6 + r * 6, "\"\":{},", 6);
            memcpy(h + 6 + reps * 6 - 1, "}}", 2);
            hl = 6 + reps * 6 + 1;
            h[hl] = '\0';
            raw_st(p, hl, h, hl, k_zeros, 16);
            free(h);
            expect_bad(p, p, "more JSON values", "millions of values");
        }
    }
    hdr_st(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [16, 0]}}");
    expect_bad(p, p, "begin is after end", "data_offsets reversed");
    hdr_st(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [8], \"data_offsets\": [0, 32]}}");
    expect_bad(p, p, "past the end", "data_offsets past the end");
    hdr_st(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [18446744073709551600, 18446744073709551616]}}");
    expect_bad(p, p, "data_offsets", "data_offsets near 2^64");
    hdr_st(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 8]}}");
    expect_bad(p, p, "needs 16", "data_offsets size mismatch");
    hdr_st(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16, 32]}}");
    expect_bad(p, p, "data_offsets", "data_offsets three numbers");
    hdr_st(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [-16, 0]}}");
    expect_bad(p, p, "data_offsets", "data_offsets negative");
    hdr_st(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [4]}}");
    expect_bad(p, p, "data_offsets", "data_offsets missing");
    hdr_st(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
              "\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}");
    expect_bad(p, p, "twice", "duplicate names");
    hdr_st(p, "{\"\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}");
    expect_bad(p, p, "empty name", "empty name");
    hdr_st(p, "{\"__metadata__\": {\"k\": 1}}");
    expect_bad(p, p, "__metadata__", "metadata value not a string");
    hdr_st(p, "{\"__metadata__\": [\"k\"]}");
    expect_bad(p, p, "__metadata__", "metadata not an object");
    hdr_st(p, "{\"__metadata__\": {}, \"__metadata__\": {}}");
    expect_bad(p, p, "__metadata__", "metadata twice");
    /* deep nesting inside the header */
    char deep[3000];
    memcpy(deep, "{\"a\":", 5);
    memset(deep + 5, '[', 2000);
    deep[2005] = '\0';
    hdr_st(p, deep);
    expect_bad(p, p, NULL, "deeply nested header");
    /* a valid entry beside the bad one: nothing leaks */
    hdr_st(p, "{\"ok\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
              "\"bad\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 24]}}");
    expect_bad(p, p, "'bad'", "second entry bad");
    /* the same shapes are fine when consistent */
    hdr_st(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}   ");
    rc = pl_st_open(&st, p, &err);
    CHECK(rc == PL_OK && pl_st_count(st) == 1, "consistent hand-made header accepted: %s", err.msg);
    pl_st_close(st);

    /* sharded checkpoints */
    const char *d = tpath("idx");
    pl_mkdirs(d, &err);
    const char *s1 = tpath("idx/model-00001-of-00002.safetensors"), *s2 = tpath("idx/model-00002-of-00002.safetensors");
    const char *ix = tpath("idx/model.safetensors.index.json");
    hdr_st(s1, "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}");
#define IDX(text) write_bytes(ix, text, strlen(text))
    IDX("{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\", \"b\": \"model-00002-of-00002.safetensors\"}}");
    expect_bad(d, ix, "model-00002-of-00002.safetensors", "index names a missing shard");
    IDX("{\"weight_map\": {\"a\": \"../model-00001-of-00002.safetensors\"}}");
    expect_bad(d, ix, "not a plain file name", "shard name with ../");
    IDX("{\"weight_map\": {\"a\": \"sub/model.safetensors\"}}");
    expect_bad(d, ix, "not a plain file name", "shard name with /");
    IDX("{\"weight_map\": {\"a\": \"..\"}}");
    expect_bad(d, ix, "not a plain file name", "shard name ..");
    IDX("{\"weight_map\": {\"a\": \"/etc/passwd\"}}");
    expect_bad(d, ix, "not a plain file name", "absolute shard name");
    IDX("{\"weight_map\": {\"a\": \"\"}}");
    expect_bad(d, ix, "not a plain file name", "empty shard name");
    IDX("{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\", \"zzz\": \"model-00001-of-00002.safetensors\"}}");
    expect_bad(d, ix, "'zzz' is not in shard", "tensor missing from its shard");
    hdr_st(s2, "{\"b\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}");
    IDX("{\"weight_map\": {\"a\": \"model-00002-of-00002.safetensors\", \"b\": \"model-00002-of-00002.safetensors\"}}");
    expect_bad(d, ix, "'a' is not in shard", "tensor in another shard than the index says");
    IDX("{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\", \"b\": \"model-00002-of-00002.safetensors\"}}");
    rc = pl_st_open(&st, d, &err);
    CHECK(rc == PL_OK && pl_st_count(st) == 2, "the consistent two-shard checkpoint opens: %s", err.msg);
    pl_st_close(st);
    hdr_st(s2, "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}");
    IDX("{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\", \"b\": \"model-00002-of-00002.safetensors\"}}");
    expect_bad(d, "model-00002-of-00002.safetensors", "also in", "tensor in two shards");
    hdr_st(s2, "{\"b\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 99]}}");
    expect_bad(d, "model-00002-of-00002.safetensors", "data_offsets", "a bad shard");
    IDX("{\"weight_map\": {\"a\": 7}}");
    expect_bad(d, ix, "expected a shard file name", "shard name not a string");
    IDX("{\"weight\": {}}");
    expect_bad(d, ix, "weight_map", "no weight_map");
    IDX("{\"weight_map\": [\"a\"]}");
    expect_bad(d, ix, "weight_map", "weight_map an array");
    IDX("{\"weight_map\": {\"a\": ");
    expect_bad(d, ix, "not valid JSON", "index not JSON");
    IDX("[]");
    expect_bad(ix, ix, "weight_map", "index an array, opened by path");
#undef IDX
    /* directories that do not say what to open */
    pl_mkdirs(tpath("two"), &err);
    hdr_st(tpath("two/x.safetensors"), "{}");
    hdr_st(tpath("two/y.safetensors"), "{}");
    expect_bad(tpath("two"), tpath("two"), "2 .safetensors files", "two files, no index");
    pl_mkdirs(tpath("none"), &err);
    expect_bad(tpath("none"), tpath("none"), "no model.safetensors.index.json", "empty directory");
    expect_bad(tpath("does-not-exist"), "does-not-exist", NULL, "missing path");
    write_bytes(tpath("empty.safetensors"), "", 0);
    expect_bad(tpath("empty.safetensors"), "empty.safetensors", "too short", "empty file");
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--write-only") == 0) {
        pl_err err;
        pl_err_clear(&err);
        char p[4096];
        int rc = pl_mkdirs(argv[2], &err);
        if (rc == PL_OK) {
            snprintf(p, sizeof p, "%s/single.safetensors", argv[2]);
            rc = write_single(p, &err);
        }
        if (rc == PL_OK) {
            snprintf(p, sizeof p, "%s/sharded", argv[2]);
            rc = write_sharded(p, &err);
        }
        if (rc != PL_OK) {
            fprintf(stderr, "test_safetensors: %s\n", err.msg);
            return 1;
        }
        return 0;
    }
    const char *tmpdir = getenv("TMPDIR");
    snprintf(g_tmp, sizeof g_tmp, "%s/pl_test_st.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    REQUIRE(mkdtemp(g_tmp) != NULL, "mkdtemp: %s", strerror(errno));
    test_round_trip();
    test_sharded();
    test_hostile();
    test_peer_files();
    rm_rf(g_tmp);
    return check_summary("test_safetensors");
}
