/* test_shard.c: HDF5 shards, manifest, the resumable dataset writer, split and
 * merge, and hostile shards (damaged, truncated, missing datasets, wrong
 * dtypes, bad offsets, unknown schema).
 *
 * `test_shard --cmd data ARGS...` runs `potluck data ARGS...` (cmd_data) so
 * the shell tests can drive the command before main.c dispatches it. */
#include <dirent.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/atomic.h"
#include "../core/mapfile.h"
#include "../core/sha256.h"
#include "../datasets/manifest.h"
#include "../datasets/shard.h"
#include "../datasets/shard_writer.h"
#include "../datasets/tokenizer.h"
#include "../cli/cmd_data.h"
#include "check.h"

/* REQUIRE for void helpers: count a failure and leave the function. */
#define REQUIRE_VOID(cond, ...)                                                 \
    do {                                                                        \
        if (!(cond)) {                                                          \
            CHECK(0, __VA_ARGS__);                                              \
            return;                                                             \
        }                                                                       \
    } while (0)

static char tmpdir[256];

static char *pathf(const char *fmt, const char *a) {
    static char buf[8][1024];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/", tmpdir);
    size_t n = strlen(buf[k]);
    snprintf(buf[k] + n, sizeof buf[k] - n, fmt, a);
    return buf[k];
}

static int files_equal(const char *a, const char *b) {
    uint8_t x[32], y[32];
    if (pl_sha256_file(a, x, NULL) || pl_sha256_file(b, y, NULL)) return 0;
    return !memcmp(x, y, 32);
}

static void rm_rf(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[2048];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(dir);
}

/* deterministic synthetic sample k: length, ids, mask */
static int64_t sample_len(int k) { return 1 + (k * 37 + 11) % 97; }
static void sample_fill(int k, int32_t *ids, uint8_t *mask) {
    int64_t n = sample_len(k);
    for (int64_t i = 0; i < n; i++) {
        ids[i] = (int32_t)((k * 131 + i * 7) % 512);
        mask[i] = (uint8_t)(i >= n / 3);
    }
}

static void write_jsonl(const char *path, int n) {
    FILE *f = fopen(path, "w");
    int32_t ids[128];
    uint8_t mask[128];
    for (int k = 0; k < n; k++) {
        sample_fill(k, ids, mask);
        fprintf(f, "{\"input_ids\": [");
        for (int64_t i = 0; i < sample_len(k); i++) fprintf(f, "%s%d", i ? "," : "", ids[i]);
        fprintf(f, "], \"loss_mask\": [");
        for (int64_t i = 0; i < sample_len(k); i++) fprintf(f, "%s%d", i ? "," : "", mask[i]);
        fprintf(f, "]}\n");
        if (k % 50 == 7) fprintf(f, "\n"); /* blank lines are skipped */
    }
    fclose(f);
}

/* -------------------------------------------------------- one shard I/O */

static void test_shard_roundtrip(void) {
    int32_t tok[300];
    uint8_t mask[300];
    int64_t off[6] = {0};
    uint64_t ids[5];
    const char *texts[5] = {"one", "two \xc3\xa9", NULL, "four", ""};
    int64_t T = 0;
    for (int k = 0; k < 5; k++) {
        sample_fill(k, tok + T, mask + T);
        T += sample_len(k);
        off[k + 1] = T;
        ids[k] = 1000 + (uint64_t)k * 0x0123456789abull;
    }
    pl_shard_meta meta = {"ab", "chatml", "potluck test", 4};
    pl_err err = {0};
    const char *p1 = pathf("%s", "a.h5"), *p2 = pathf("%s", "b.h5");
    CHECK(pl_shard_write(p1, tok, mask, T, off, ids, 5, texts, NULL, &meta, &err) == 0, "write: %s", err.msg);
    usleep(1100000); /* a second later: no time stamps anywhere, so same bytes */
    CHECK(pl_shard_write(p2, tok, mask, T, off, ids, 5, texts, NULL, &meta, &err) == 0, "write: %s", err.msg);
    CHECK(files_equal(p1, p2), "two writes of the same shard differ (time stamps?)");
    pl_shard *s;
    REQUIRE_VOID(pl_shard_open(&s, p1, &err) == 0, "open: %s", err.msg);
    CHECK(pl_shard_samples(s) == 5 && pl_shard_tokens(s) == T, "counts %lld %lld", (long long)pl_shard_samples(s),
          (long long)pl_shard_tokens(s));
    CHECK(!memcmp(pl_shard_offsets(s), off, sizeof off), "offsets");
    CHECK(!memcmp(pl_shard_ids(s), ids, sizeof ids), "sample ids");
    CHECK(!strcmp(pl_shard_template(s), "chatml") && !strcmp(pl_shard_tokenizer_sha256(s), "ab") &&
          !strcmp(pl_shard_created_by(s), "potluck test"), "attributes");
    int32_t rt[300];
    uint8_t rm[300];
    CHECK(pl_shard_read_all(s, rt, rm, &err) == 0 && !memcmp(rt, tok, sizeof *tok * (size_t)T) &&
          !memcmp(rm, mask, (size_t)T), "read_all");
    CHECK(pl_shard_read(s, off[2], off[3] - off[2], rt, rm, &err) == 0 && !memcmp(rt, tok + off[2], 4 * (size_t)(off[3] - off[2])),
          "read one sample");
    CHECK(pl_shard_read(s, T - 1, 2, rt, rm, &err) == PL_ERANGE, "read past the end is refused");
    char *t = NULL;
    CHECK(pl_shard_read_text(s, 1, &t, &err) == 0 && t && !strcmp(t, "two \xc3\xa9"), "text 1 '%s'", t ? t : "");
    free(t);
    CHECK(pl_shard_read_text(s, 2, &t, &err) == 0 && t && !strcmp(t, ""), "NULL text reads as empty");
    free(t);
    CHECK(pl_shard_read_text(s, 5, &t, &err) == PL_ERANGE, "text out of range");
    /* no /provenance column: has_provenance 0, every sample reads "" */
    CHECK(!pl_shard_has_provenance(s) && pl_shard_has_text(s), "text but no provenance column");
    CHECK(pl_shard_read_provenance(s, 3, &t, &err) == 0 && t && !strcmp(t, ""), "absent provenance reads as \"\"");
    free(t);
    CHECK(pl_shard_read_provenance(s, 5, &t, &err) == PL_ERANGE, "provenance out of range");
    pl_shard_close(s);
    /* with provenance (and no text): written, reproducible, read back */
    const char *prov[5] = {"{\"source\":\"seeds.jsonl:12\",\"filters\":[\"filter.length\",\"dedup.minhash\"]}", NULL,
                           "{\"generator\":\"generate.self_instruct\",\"seed\":123,\"index\":4}", "",
                           "{\"source\":\"caf\xc3\xa9.jsonl:1\"}"};
    CHECK(pl_shard_write(p1, tok, mask, T, off, ids, 5, NULL, prov, &meta, &err) == 0, "write with provenance: %s", err.msg);
    CHECK(pl_shard_write(p2, tok, mask, T, off, ids, 5, NULL, prov, &meta, &err) == 0, "write with provenance: %s", err.msg);
    CHECK(files_equal(p1, p2), "two writes of the same shard with provenance differ");
    REQUIRE_VOID(pl_shard_open(&s, p1, &err) == 0, "open with provenance: %s", err.msg);
    CHECK(pl_shard_has_provenance(s) && !pl_shard_has_text(s), "provenance column, no text");
    for (int k = 0; k < 5; k++) {
        CHECK(pl_shard_read_provenance(s, k, &t, &err) == 0 && t && !strcmp(t, prov[k] ? prov[k] : ""),
              "provenance %d: '%s'", k, t ? t : "(null)");
        free(t);
    }
    CHECK(pl_shard_read_text(s, 0, &t, &err) == 0 && t && !strcmp(t, ""), "no text column reads as \"\"");
    free(t);
    CHECK(!memcmp(pl_shard_offsets(s), off, sizeof off), "offsets with provenance");
    pl_shard_close(s);
    CHECK(pl_sample_id("abc", 3) == pl_sample_id("abc", 3) && pl_sample_id("abc", 3) != pl_sample_id("abd", 3),
          "sample_id is a stable hash");
    /* sha256("abc") = ba7816bf 8f01cfea ...: first 8 bytes little-endian */
    CHECK(pl_sample_id("abc", 3) == 0xeacf018fbf1678baull, "sample_id of 'abc' = %llx",
          (unsigned long long)pl_sample_id("abc", 3));
    unlink(p1);
    unlink(p2);
}

/* ------------------------------------------------- hostile shard files */

/* A hand-made HDF5 file: each dataset given by (name, hdf5 type, n, data). */
typedef struct dset {
    const char *name;
    hid_t type;
    hsize_t n;
    const void *data;
} dset;

static void make_h5(const char *path, const dset *ds, int nd, int64_t schema) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    for (int i = 0; i < nd; i++) {
        hid_t sp = H5Screate_simple(1, &ds[i].n, NULL);
        hid_t d = H5Dcreate2(f, ds[i].name, ds[i].type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (ds[i].n) H5Dwrite(d, ds[i].type, H5S_ALL, H5S_ALL, H5P_DEFAULT, ds[i].data);
        H5Dclose(d);
        H5Sclose(sp);
    }
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, "schema", H5T_NATIVE_INT64, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &schema);
    H5Aclose(a);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, H5T_VARIABLE);
    const char *names[] = {"tokenizer_sha256", "template", "created_by"}, *v = "";
    for (int i = 0; i < 3; i++) {
        a = H5Acreate2(f, names[i], st, sp, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, st, &v);
        H5Aclose(a);
    }
    H5Tclose(st);
    H5Sclose(sp);
    H5Fclose(f);
}

static void expect_open_error(const char *path, const char *what, const char *needle) {
    pl_shard *s = NULL;
    pl_err err = {0};
    int rc = pl_shard_open(&s, path, &err);
    CHECK(rc != 0 && s == NULL, "%s: opened a bad shard", what);
    CHECK(strstr(err.msg, needle) != NULL, "%s: message '%s' lacks '%s'", what, err.msg, needle);
    CHECK(strstr(err.msg, path) != NULL, "%s: message '%s' does not name the file", what, err.msg);
    pl_shard_close(s);
}

static void test_hostile_shards(void) {
    int32_t tok[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    uint8_t mask[10] = {0, 1, 1, 1, 1, 0, 1, 1, 1, 1};
    int64_t off[3] = {0, 5, 10}, bad_off[3] = {0, 7, 5}, far_off[3] = {0, 5, 99}, neg_off[3] = {3, 5, 10};
    uint64_t ids[2] = {1, 2};
    float ftok[10] = {0};
    const char *p = pathf("%s", "bad.h5");
    dset good[] = {{"tokens", H5T_NATIVE_INT32, 10, tok}, {"loss_mask", H5T_NATIVE_UINT8, 10, mask},
                   {"offsets", H5T_NATIVE_INT64, 3, off}, {"sample_id", H5T_NATIVE_UINT64, 2, ids}};
    make_h5(p, good, 4, 1);
    pl_shard *s;
    pl_err err = {0};
    CHECK(pl_shard_open(&s, p, &err) == 0, "hand-made good shard opens: %s", err.msg);
    if (!err.code) pl_shard_close(s);

    make_h5(p, good, 3, 1); /* no sample_id */
    expect_open_error(p, "missing dataset", "/sample_id is missing");
    dset d2[] = {{"tokens", H5T_NATIVE_FLOAT, 10, ftok}, good[1], good[2], good[3]};
    make_h5(p, d2, 4, 1);
    expect_open_error(p, "float tokens", "/tokens: expected int32, found a float");
    dset d3[] = {{"tokens", H5T_NATIVE_INT64, 10, (int64_t[10]){0}}, good[1], good[2], good[3]};
    make_h5(p, d3, 4, 1);
    expect_open_error(p, "int64 tokens", "/tokens: expected int32");
    dset d4[] = {good[0], {"loss_mask", H5T_NATIVE_INT8, 10, mask}, good[2], good[3]};
    make_h5(p, d4, 4, 1);
    expect_open_error(p, "signed mask", "/loss_mask: expected uint8");
    dset d5[] = {good[0], good[1], {"offsets", H5T_NATIVE_INT64, 3, bad_off}, good[3]};
    make_h5(p, d5, 4, 1);
    expect_open_error(p, "decreasing offsets", "/offsets[2] = 5 is out of range");
    dset d6[] = {good[0], good[1], {"offsets", H5T_NATIVE_INT64, 3, far_off}, good[3]};
    make_h5(p, d6, 4, 1);
    expect_open_error(p, "offsets past the tokens", "/offsets[2] = 99 is out of range");
    dset d7[] = {good[0], good[1], {"offsets", H5T_NATIVE_INT64, 3, neg_off}, good[3]};
    make_h5(p, d7, 4, 1);
    expect_open_error(p, "offsets not starting at 0", "/offsets[0] is 3");
    dset d8[] = {good[0], {"loss_mask", H5T_NATIVE_UINT8, 9, mask}, good[2], good[3]};
    make_h5(p, d8, 4, 1);
    expect_open_error(p, "mask length", "/loss_mask has 9 entries, /tokens has 10");
    dset d9[] = {good[0], good[1], {"offsets", H5T_NATIVE_INT64, 2, off}, good[3]};
    make_h5(p, d9, 4, 1);
    expect_open_error(p, "offsets count", "/offsets has 2 entries");
    make_h5(p, good, 4, 7);
    expect_open_error(p, "unknown shard schema", "shard schema version 7 is not one this potluck reads");
    /* /provenance: one string per sample, variable-length strings only */
    hid_t vstr = H5Tcopy(H5T_C_S1);
    H5Tset_size(vstr, H5T_VARIABLE);
    H5Tset_cset(vstr, H5T_CSET_UTF8);
    const char *pv[3] = {"{\"source\":\"a:1\"}", "", "{\"source\":\"a:3\"}"};
    dset dp[] = {good[0], good[1], good[2], good[3], {"provenance", vstr, 2, pv}};
    make_h5(p, dp, 5, 1);
    int orc = pl_shard_open(&s, p, &err);
    CHECK(orc == 0 && pl_shard_has_provenance(s), "hand-made shard with provenance opens: %s", err.msg);
    if (orc == 0) {
        char *t = NULL;
        CHECK(pl_shard_read_provenance(s, 1, &t, &err) == 0 && t && !strcmp(t, ""), "hand-made provenance 1");
        free(t);
        CHECK(pl_shard_read_provenance(s, 0, &t, &err) == 0 && t && !strcmp(t, pv[0]), "hand-made provenance 0");
        free(t);
        pl_shard_close(s);
    }
    dp[4].n = 3;
    make_h5(p, dp, 5, 1);
    expect_open_error(p, "provenance count 3 for 2 samples", "/provenance has 3 entries, expected one per sample (2)");
    dp[4].n = 1;
    make_h5(p, dp, 5, 1);
    expect_open_error(p, "provenance count 1 for 2 samples", "/provenance has 1 entries, expected one per sample (2)");
    dset dq[] = {good[0], good[1], good[2], good[3], {"provenance", H5T_NATIVE_UINT64, 2, ids}};
    make_h5(p, dq, 5, 1);
    expect_open_error(p, "integer provenance", "/provenance: expected 2 variable-length strings");
    dset dt[] = {good[0], good[1], good[2], good[3], {"text", vstr, 3, pv}};
    make_h5(p, dt, 5, 1);
    expect_open_error(p, "text count 3 for 2 samples", "/text has 3 entries, expected one per sample (2)");
    H5Tclose(vstr);

    /* truncated and garbage files (what --trust lets through to HDF5) */
    make_h5(p, good, 4, 1);
    struct stat st;
    stat(p, &st);
    for (int cut = 1; cut < 8; cut++) {
        CHECK(truncate(p, st.st_size * cut / 8) == 0, "truncate");
        char what[64];
        snprintf(what, sizeof what, "truncated to %d/8", cut);
        expect_open_error(p, what, "");
        make_h5(p, good, 4, 1);
    }
    FILE *f = fopen(p, "w");
    fputs("this is not an HDF5 file at all", f);
    fclose(f);
    expect_open_error(p, "text file", "cannot open as HDF5");
    unlink(p);
}

/* ------------------------------------------------------- dataset writer */

static int api_prov; /* build_with_api: store provenance (every third sample has one) */

static int build_with_api(const char *dir, int n, int stop_after, const char *key) {
    pl_dsw_opts o = {2000, 0, 4, 1, "", "", 512, key, api_prov};
    pl_dsw *w;
    pl_err err = {0};
    if (pl_dsw_open(&w, dir, &o, &err)) return -1;
    if (pl_dsw_complete(w)) {
        int rc = pl_dsw_finish(w, NULL, NULL, &err);
        pl_dsw_free(w);
        return rc;
    }
    int64_t pos;
    pl_dsw_resume_pos(w, &pos, NULL, NULL);
    int32_t ids[128];
    uint8_t mask[128];
    int rc = 0;
    for (int k = (int)pos; k < n && !rc; k++) {
        if (k == stop_after) { /* "crash": leave without finishing */
            pl_dsw_free(w);
            return 1;
        }
        sample_fill(k, ids, mask);
        char text[32];
        snprintf(text, sizeof text, "sample %d", k);
        char prov[64];
        snprintf(prov, sizeof prov, "{\"source\":\"api:%d\"}", k + 1);
        pl_sample s = {ids, mask, sample_len(k), pl_sample_id(text, strlen(text)), text, k % 3 == 0 ? prov : NULL};
        rc = pl_dsw_add(w, &s, k + 1, k + 1, &err);
    }
    if (!rc) rc = pl_dsw_finish(w, NULL, "# card\n", &err);
    if (rc) fprintf(stderr, "build: %s\n", err.msg);
    pl_dsw_free(w);
    return rc;
}

static int dirs_identical(const char *a, const char *b) {
    pl_manifest *m;
    pl_err err = {0};
    if (pl_manifest_load(&m, a, &err)) return 0;
    char pa[1024], pb[1024];
    int same = files_equal(pathf("%s/manifest.json", strrchr(a, '/') + 1), pathf("%s/manifest.json", strrchr(b, '/') + 1));
    for (int i = 0; i < m->n_shards && same; i++) {
        snprintf(pa, sizeof pa, "%s/%s", a, m->shards[i].file);
        snprintf(pb, sizeof pb, "%s/%s", b, m->shards[i].file);
        same = files_equal(pa, pb);
    }
    pl_manifest_free(m);
    return same;
}

static void test_writer_resume(void) {
    char full[512], part[512];
    snprintf(full, sizeof full, "%s/full", tmpdir);
    snprintf(part, sizeof part, "%s/part", tmpdir);
    CHECK(build_with_api(full, 300, -1, "k1") == 0, "uninterrupted build");
    pl_manifest *m;
    pl_err err = {0};
    REQUIRE_VOID(pl_manifest_load(&m, full, &err) == 0, "manifest: %s", err.msg);
    CHECK(m->samples == 300 && m->n_shards > 3, "300 samples in %d shards", m->n_shards);
    int64_t tt = 0;
    for (int k = 0; k < 300; k++) tt += sample_len(k);
    CHECK(m->tokens == tt, "tokens %lld", (long long)m->tokens);
    for (int i = 0; i < m->n_shards; i++) CHECK(pl_manifest_check_shard(m, full, i, &err) == 0, "check: %s", err.msg);
    pl_manifest_free(m);
    /* crash at several points, each time re-running until done */
    int stops[] = {5, 120, 121, 250, 299};
    for (size_t i = 0; i < sizeof stops / sizeof stops[0]; i++) {
        CHECK(build_with_api(part, 300, stops[i], "k1") == 1, "crashed run");
        char mp[600];
        snprintf(mp, sizeof mp, "%s/manifest.json", part);
        CHECK(access(mp, F_OK) != 0, "no manifest after a crash of a fresh build");
    }
    CHECK(build_with_api(part, 300, -1, "k1") == 0, "resumed build");
    CHECK(dirs_identical(full, part), "resumed build differs from the uninterrupted one");
    /* a complete dataset of the same build is left alone */
    CHECK(build_with_api(part, 300, 0, "k1") == 0, "complete build re-run finishes at once");
    CHECK(dirs_identical(full, part), "re-run changed a complete dataset");
    /* a different build replaces it, and stale extra shards go */
    CHECK(build_with_api(part, 40, -1, "k2") == 0, "smaller rebuild");
    REQUIRE_VOID(pl_manifest_load(&m, part, &err) == 0, "manifest: %s", err.msg);
    CHECK(m->samples == 40, "rebuild has 40 samples");
    char extra[600];
    snprintf(extra, sizeof extra, "%s/shard-%05d.h5", part, m->n_shards);
    CHECK(access(extra, F_OK) != 0, "stale shard %s was removed", extra);
    pl_manifest_free(m);
}

/* ------------------------------------------ manifest + damaged datasets */

static void copy_file(const char *a, const char *b) {
    FILE *x = fopen(a, "rb"), *y = fopen(b, "wb");
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, x)) > 0) fwrite(buf, 1, n, y);
    fclose(x);
    fclose(y);
}

static void test_manifest_checks(void) {
    char full[512];
    snprintf(full, sizeof full, "%s/full", tmpdir);
    pl_manifest *m;
    pl_err err = {0};
    REQUIRE_VOID(pl_manifest_load(&m, full, &err) == 0, "manifest: %s", err.msg);
    char sp[600], bak[600];
    snprintf(sp, sizeof sp, "%s/%s", full, m->shards[1].file);
    snprintf(bak, sizeof bak, "%s/backup.h5", tmpdir);
    copy_file(sp, bak);
    /* one flipped byte in the middle of a shard */
    FILE *f = fopen(sp, "r+b");
    fseek(f, m->shards[1].bytes / 2, SEEK_SET);
    int c = fgetc(f);
    fseek(f, m->shards[1].bytes / 2, SEEK_SET);
    fputc(c ^ 0x10, f);
    fclose(f);
    pl_shard *s = NULL;
    CHECK(pl_manifest_open_shard(m, full, 1, 0, &s, &err) == PL_EFORMAT, "flipped byte caught");
    CHECK(strstr(err.msg, "shard-00001.h5") && strstr(err.msg, "sha256"), "message names the shard: %s", err.msg);
    /* truncated */
    CHECK(truncate(sp, m->shards[1].bytes - 100) == 0, "truncate");
    CHECK(pl_manifest_open_shard(m, full, 1, 0, &s, &err) == PL_EFORMAT && strstr(err.msg, "truncated"),
          "truncated shard: %s", err.msg);
    CHECK(pl_manifest_open_shard(m, full, 1, 1, &s, &err) != 0 && s == NULL, "truncated shard with --trust: %s", err.msg);
    copy_file(bak, sp);
    CHECK(pl_manifest_open_shard(m, full, 1, 0, &s, &err) == 0, "restored shard opens: %s", err.msg);
    pl_shard_close(s);
    unlink(sp);
    CHECK(pl_manifest_open_shard(m, full, 1, 0, &s, &err) == PL_ENOTFOUND, "missing shard: %s", err.msg);
    copy_file(bak, sp);
    pl_manifest_free(m);

    /* hostile manifests */
    char bad[512];
    snprintf(bad, sizeof bad, "%s/badman", tmpdir);
    pl_mkdirs(bad, &err);
    const char *cases[][2] = {
        {"{\"format\":\"potluck-dataset\",\"schema\":2,\"tokenizer_sha256\":\"\",\"template\":\"\",\"shards\":[],"
         "\"totals\":{\"samples\":0,\"tokens\":0,\"trained_tokens\":0}}", "dataset schema version 2 is not one this potluck reads"},
        {"{\"format\":\"potluck-dataset\",\"schema\":1,\"tokenizer_sha256\":\"\",\"template\":\"\",\"shards\":[{\"file\":"
         "\"../etc/passwd\",\"sha256\":\"" "0000000000000000000000000000000000000000000000000000000000000000" "\",\"bytes\":1,"
         "\"samples\":1,\"tokens\":1,\"trained_tokens\":1}],\"totals\":{\"samples\":1,\"tokens\":1,\"trained_tokens\":1}}",
         "is not a plain file name"},
        {"{\"format\":\"potluck-dataset\",\"schema\":1,\"tokenizer_sha256\":\"\",\"template\":\"\",\"shards\":[],"
         "\"totals\":{\"samples\":5,\"tokens\":0,\"trained_tokens\":0}}", "differ from the sum over shards"},
        {"{\"format\":\"other\"}", "expected \"potluck-dataset\""},
        {"[1,2", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char mp[600];
        snprintf(mp, sizeof mp, "%s/manifest.json", bad);
        pl_write_file_atomic(mp, cases[i][0], strlen(cases[i][0]), &err);
        pl_manifest *mm = NULL;
        int rc = pl_manifest_load(&mm, bad, &err);
        CHECK(rc != 0 && mm == NULL && strstr(err.msg, cases[i][1]), "bad manifest %zu: '%s'", i, err.msg);
        pl_manifest_free(mm);
    }
    rm_rf(bad);
}

/* ------------------------------------------------- JSONL build and split */

static void test_build_jsonl(void) {
    const char *in = pathf("%s", "in.jsonl");
    write_jsonl(in, 500);
    char out[512];
    snprintf(out, sizeof out, "%s/fromjsonl", tmpdir);
    pl_build_opts o = {in, out, NULL, "", "", 3000, 0, 4, 0, 0, NULL, NULL, NULL};
    pl_build_stats st;
    pl_err err = {0};
    CHECK(pl_dataset_build(&o, &st, &err) == 0, "build: %s", err.msg);
    CHECK(st.samples == 500 && !st.already_complete, "500 samples (%lld)", (long long)st.samples);
    pl_manifest *m;
    REQUIRE_VOID(pl_manifest_load(&m, out, &err) == 0, "manifest: %s", err.msg);
    /* every sample as written, in order */
    int k = 0, ok = 1;
    int32_t ids[128], rt[128];
    uint8_t mask[128], rmk[128];
    for (int i = 0; i < m->n_shards; i++) {
        pl_shard *s;
        if (pl_manifest_open_shard(m, out, i, 0, &s, &err)) {
            ok = 0;
            break;
        }
        const int64_t *off = pl_shard_offsets(s);
        for (int64_t j = 0; j < pl_shard_samples(s); j++, k++) {
            sample_fill(k, ids, mask);
            int64_t n = off[j + 1] - off[j];
            pl_shard_read(s, off[j], n, rt, rmk, &err);
            if (n != sample_len(k) || memcmp(ids, rt, 4 * (size_t)n) || memcmp(mask, rmk, (size_t)n)) ok = 0;
        }
        pl_shard_close(s);
    }
    CHECK(ok && k == 500, "samples read back equal the input (%d)", k);
    pl_manifest_free(m);
    CHECK(pl_dataset_build(&o, &st, &err) == 0 && st.already_complete, "second build is a no-op");

    /* line errors name the file and line */
    const char *bad = pathf("%s", "bad.jsonl");
    const char *lines[][2] = {{"{\"input_ids\": [1, 2, -3]}", "bad.jsonl:2: input_ids[2]"},
                              {"{\"input_ids\": [1, 2], \"loss_mask\": [1]}", "bad.jsonl:2: \"loss_mask\": expected an array of 2"},
                              {"{\"input_ids\": [1, 2], \"loss_mask\": [1, 5]}", "bad.jsonl:2: loss_mask[1]: expected 0 or 1"},
                              {"not json", "bad.jsonl:2: invalid JSON near column 1 (strict mode)"},
                              {"{\"text\": \"hello\"}", "bad.jsonl:2: a \"text\" record needs a tokenizer"},
                              {"{\"messages\": []}", "bad.jsonl:2: "},
                              {"{\"foo\": 1}", "bad.jsonl:2: "}};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        FILE *f = fopen(bad, "w");
        fprintf(f, "{\"input_ids\": [1]}\n%s\n", lines[i][0]);
        fclose(f);
        char bo[512];
        snprintf(bo, sizeof bo, "%s/badout", tmpdir);
        pl_build_opts ob = {bad, bo, NULL, "", "", 0, 0, -1, 0, 0, NULL, NULL, NULL};
        pl_build_chat bc = {.strict = 1};
        int rc = pl_dataset_build_chat(&ob, &bc, &st, &err);
        CHECK(rc != 0 && strstr(err.msg, lines[i][1]), "bad line %zu: '%s'", i, err.msg);
        rm_rf(bo);
        /* without --strict a record the importer rejects is skipped and counted */
        rc = pl_dataset_build(&ob, &st, &err);
        if (i == 3 || i >= 5)
            CHECK(rc == 0 && st.bad == 1 && st.skipped == 1 && st.samples == 1, "bad line %zu skipped: %s", i, err.msg);
        else
            CHECK(rc != 0 && strstr(err.msg, lines[i][1]), "bad line %zu fatal without --strict: '%s'", i, err.msg);
        rm_rf(bo);
    }
}

static void test_text_build(void) {
    const char *shared = check_env("POTLUCK_SHARED");
    char tp[1024];
    snprintf(tp, sizeof tp, "%s/fixtures/stories260K/tok512.bin", shared);
    pl_tokenizer *tok;
    pl_err err = {0};
    REQUIRE_VOID(pl_tokenizer_load(&tok, tp, &err) == 0, "tokenizer: %s", err.msg);
    const char *in = pathf("%s", "text.jsonl");
    FILE *f = fopen(in, "w");
    fprintf(f, "{\"text\": \"Once upon a time there was a cat.\"}\n{\"text\": \"The dog ran.\"}\n{\"text\": \"\"}\n");
    fclose(f);
    char out[512];
    snprintf(out, sizeof out, "%s/text", tmpdir);
    pl_build_opts o = {in, out, tok, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "", 0, 0, -1, 1, 0, NULL, NULL, NULL};
    pl_build_stats st;
    CHECK(pl_dataset_build(&o, &st, &err) == 0, "text build: %s", err.msg);
    CHECK(st.samples == 2 && st.skipped == 1, "2 samples, 1 empty skipped (%lld, %lld)", (long long)st.samples,
          (long long)st.skipped);
    pl_manifest *m;
    REQUIRE_VOID(pl_manifest_load(&m, out, &err) == 0, "manifest: %s", err.msg);
    pl_shard *s;
    REQUIRE_VOID(pl_manifest_open_shard(m, out, 0, 0, &s, &err) == 0, "open: %s", err.msg);
    int32_t *ids;
    int n;
    const char *t0 = "The dog ran.";
    pl_tokenizer_encode(tok, t0, strlen(t0), pl_tokenizer_add_bos(tok), 0, &ids, &n, &err);
    const int64_t *off = pl_shard_offsets(s);
    int64_t L = off[2] - off[1];
    int32_t rt[64];
    uint8_t rm[64];
    CHECK(L == n + 1 && L < 64, "sample 1 is the encoding + EOS (%lld vs %d)", (long long)L, n);
    if (L == n + 1 && L < 64) {
        pl_shard_read(s, off[1], L, rt, rm, &err);
        CHECK(!memcmp(rt, ids, 4 * (size_t)n) && rt[n] == pl_tokenizer_eos(tok), "ids + EOS");
        CHECK(rm[0] == 0 && rm[1] == 1 && rm[n] == 1, "BOS untrained, the rest trained");
    }
    char *txt;
    CHECK(pl_shard_read_text(s, 1, &txt, &err) == 0 && !strcmp(txt, t0), "text stored");
    free(txt);
    CHECK(pl_shard_ids(s)[1] == pl_sample_id(t0, strlen(t0)), "sample_id = hash of the text");
    free(ids);
    pl_shard_close(s);
    pl_manifest_free(m);
    pl_tokenizer_free(tok);
}

/* eval sample ids of a split */
static int collect_ids(const char *dir, uint64_t *out, int cap) {
    pl_manifest *m;
    pl_err err = {0};
    if (pl_manifest_load(&m, dir, &err)) return -1;
    int n = 0;
    for (int i = 0; i < m->n_shards; i++) {
        pl_shard *s;
        if (pl_manifest_open_shard(m, dir, i, 0, &s, &err)) break;
        for (int64_t j = 0; j < pl_shard_samples(s) && n < cap; j++) out[n++] = pl_shard_ids(s)[j];
        pl_shard_close(s);
    }
    pl_manifest_free(m);
    return n;
}
static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_split_merge(void) {
    /* the same samples in another order and sharding split the same way */
    const char *in2 = pathf("%s", "rev.jsonl");
    FILE *f = fopen(in2, "w");
    int32_t ids[128];
    uint8_t mask[128];
    for (int k = 499; k >= 0; k--) {
        sample_fill(k, ids, mask);
        fprintf(f, "{\"input_ids\": [");
        for (int64_t i = 0; i < sample_len(k); i++) fprintf(f, "%s%d", i ? "," : "", ids[i]);
        fprintf(f, "], \"loss_mask\": [");
        for (int64_t i = 0; i < sample_len(k); i++) fprintf(f, "%s%d", i ? "," : "", mask[i]);
        fprintf(f, "]}\n");
    }
    fclose(f);
    char a[512], b[512], ae[512], at[512], be[512];
    snprintf(a, sizeof a, "%s/fromjsonl", tmpdir);
    snprintf(b, sizeof b, "%s/rev", tmpdir);
    snprintf(ae, sizeof ae, "%s/a_eval", tmpdir);
    snprintf(at, sizeof at, "%s/a_train", tmpdir);
    snprintf(be, sizeof be, "%s/b_eval", tmpdir);
    pl_build_opts o = {in2, b, NULL, "", "", 777, 0, 4, 0, 0, NULL, NULL, NULL};
    pl_build_stats st;
    pl_err err = {0};
    CHECK(pl_dataset_build(&o, &st, &err) == 0, "reversed build: %s", err.msg);
    int64_t nt = 0, ne = 0, nt2, ne2;
    CHECK(pl_dataset_split(a, 100, at, ae, 0, &nt, &ne, &err) == 0, "split: %s", err.msg);
    CHECK(nt + ne == 500 && ne > 20 && ne < 90, "split sizes %lld + %lld", (long long)nt, (long long)ne);
    CHECK(pl_dataset_split(b, 100, NULL, be, 0, &nt2, &ne2, &err) == 0, "split reversed: %s", err.msg);
    static uint64_t x[600], y[600], z[600];
    int nx = collect_ids(ae, x, 600), ny = collect_ids(be, y, 600), nz = collect_ids(at, z, 600);
    qsort(x, (size_t)nx, 8, cmp_u64);
    qsort(y, (size_t)ny, 8, cmp_u64);
    CHECK(nx == ne && ny == nx && !memcmp(x, y, 8 * (size_t)nx), "eval sides hold the same samples (%d, %d)", nx, ny);
    int ok = 1;
    for (int i = 0; i < nx; i++) ok &= pl_split_is_eval(x[i], 100);
    for (int i = 0; i < nz; i++) ok &= !pl_split_is_eval(z[i], 100);
    CHECK(ok && nz == nt, "every sample on its side");
    /* merge train + eval back: 500 samples; merging a with itself and dedup: still 500 */
    char mg[512];
    snprintf(mg, sizeof mg, "%s/merged", tmpdir);
    const char *ins[] = {at, ae};
    int64_t no, nd;
    CHECK(pl_dataset_merge(ins, 2, mg, 0, 0, &no, &nd, &err) == 0 && no == 500, "merge: %s %lld", err.msg, (long long)no);
    char mg2[512];
    snprintf(mg2, sizeof mg2, "%s/merged2", tmpdir);
    const char *ins2[] = {a, b};
    CHECK(pl_dataset_merge(ins2, 2, mg2, 1, 0, &no, &nd, &err) == 0 && no == 500 && nd == 500,
          "merge with dedup: %lld kept, %lld dropped (%s)", (long long)no, (long long)nd, err.msg);
    rm_rf(b);
    rm_rf(ae);
    rm_rf(at);
    rm_rf(be);
    rm_rf(mg);
    rm_rf(mg2);
}

/* ------------------------------------------------- per-sample provenance */

/* Every sample of a dataset: sample_id -> provenance ("" when none), in
 * order; returns the count or -1. *has gets whether every shard has the
 * /provenance column (1), none has (0), or it varies (-1). */
static int collect_prov(const char *dir, uint64_t *ids, char **prov, int cap, int *has) {
    pl_manifest *m;
    pl_err err = {0};
    if (pl_manifest_load(&m, dir, &err)) return -1;
    int n = 0, hp = -2;
    for (int i = 0; i < m->n_shards; i++) {
        pl_shard *s;
        if (pl_manifest_open_shard(m, dir, i, 0, &s, &err)) {
            n = -1;
            break;
        }
        int h = pl_shard_has_provenance(s);
        hp = hp == -2 ? h : hp == h ? hp : -1;
        for (int64_t j = 0; j < pl_shard_samples(s) && n < cap; j++, n++) {
            ids[n] = pl_shard_ids(s)[j];
            if (pl_shard_read_provenance(s, j, &prov[n], &err)) prov[n] = NULL;
        }
        pl_shard_close(s);
    }
    pl_manifest_free(m);
    *has = hp;
    return n;
}

static void free_strs(char **p, int n) {
    for (int i = 0; i < n; i++) free(p[i]);
}

static int manifest_flag(const char *dir) {
    pl_manifest *m;
    pl_err err = {0};
    if (pl_manifest_load(&m, dir, &err)) return -1;
    const cJSON *v = m->provenance ? cJSON_GetObjectItemCaseSensitive(m->provenance, "sample_provenance") : NULL;
    int r = v ? cJSON_IsTrue(v) : 0;
    pl_manifest_free(m);
    return r;
}

/* The provenance of sample id among (ids, prov) of n, or NULL. */
static const char *prov_of(uint64_t id, const uint64_t *ids, char **prov, int n) {
    for (int i = 0; i < n; i++)
        if (ids[i] == id) return prov[i] ? prov[i] : "(read error)";
    return NULL;
}

static void test_provenance(void) {
    char full[512], part[512];
    snprintf(full, sizeof full, "%s/pfull", tmpdir);
    snprintf(part, sizeof part, "%s/ppart", tmpdir);
    static uint64_t ida[1000], idb[1000];
    static char *pa[1000], *pb[1000];
    int has = 0;
    /* the writer: a resumed build with provenance is byte-identical */
    api_prov = 1;
    CHECK(build_with_api(full, 300, -1, "p1") == 0, "build with provenance");
    CHECK(build_with_api(part, 300, 130, "p1") == 1 && build_with_api(part, 300, 250, "p1") == 1, "crashed runs");
    CHECK(build_with_api(part, 300, -1, "p1") == 0, "resumed build with provenance");
    CHECK(dirs_identical(full, part), "resumed build with provenance differs from the uninterrupted one");
    api_prov = 0;
    int n = collect_prov(full, ida, pa, 1000, &has);
    CHECK(n == 300 && has == 1 && manifest_flag(full) == 1, "300 samples, /provenance in every shard, flagged (%d %d)",
          n, has);
    int ok = n == 300;
    for (int k = 0; k < n && ok; k++) {
        char want[64] = "";
        if (k % 3 == 0) snprintf(want, sizeof want, "{\"source\":\"api:%d\"}", k + 1);
        ok = pa[k] && !strcmp(pa[k], want);
    }
    CHECK(ok, "provenance of every sample as added");
    /* the same samples without store_provenance: no column, no flag */
    int nb = collect_prov(pathf("%s", "full"), idb, pb, 1000, &has);
    CHECK(nb == 300 && has == 0 && manifest_flag(pathf("%s", "full")) == 0, "store_provenance 0: no /provenance (%d %d)",
          nb, has);
    free_strs(pb, nb > 0 ? nb : 0);

    /* split and merge carry it over */
    char tr[512], ev[512], mg[512];
    snprintf(tr, sizeof tr, "%s/ptr", tmpdir);
    snprintf(ev, sizeof ev, "%s/pev", tmpdir);
    snprintf(mg, sizeof mg, "%s/pmg", tmpdir);
    pl_err err = {0};
    int64_t nt = 0, ne = 0, no = 0, nd = 0;
    CHECK(pl_dataset_split(full, 300, tr, ev, 0, &nt, &ne, &err) == 0 && nt + ne == 300, "split: %s", err.msg);
    for (int side = 0; side < 2; side++) {
        const char *d = side ? ev : tr;
        nb = collect_prov(d, idb, pb, 1000, &has);
        ok = nb == (side ? ne : nt) && has == 1 && manifest_flag(d) == 1;
        for (int i = 0; i < nb && ok; i++) {
            const char *w = prov_of(idb[i], ida, pa, n);
            ok = w && pb[i] && !strcmp(w, pb[i]);
        }
        CHECK(ok, "split %s side keeps each sample's provenance (%d samples)", side ? "eval" : "train", nb);
        free_strs(pb, nb > 0 ? nb : 0);
    }
    /* merge of a dataset with provenance and one without: the column is there, "" for the other's samples */
    const char *ins[] = {tr, pathf("%s", "fromjsonl")};
    CHECK(pl_dataset_merge(ins, 2, mg, 0, 0, &no, &nd, &err) == 0 && no == nt + 500, "merge: %s", err.msg);
    nb = collect_prov(mg, idb, pb, 1000, &has);
    ok = nb == nt + 500 && has == 1 && manifest_flag(mg) == 1;
    for (int i = 0; i < nb && ok; i++) {
        const char *w = i < nt ? prov_of(idb[i], ida, pa, n) : "";
        ok = w && pb[i] && !strcmp(w, pb[i]);
    }
    CHECK(ok, "merge keeps provenance, \"\" for samples of the dataset without (%d samples)", nb);
    free_strs(pb, nb > 0 ? nb : 0);
    free_strs(pa, n > 0 ? n : 0);
    rm_rf(tr);
    rm_rf(ev);
    rm_rf(mg);
    rm_rf(part);
    rm_rf(full);

    /* data build: "_prov" objects become the samples' provenance */
    const char *in = pathf("%s", "prov.jsonl");
    FILE *f = fopen(in, "w");
    fprintf(f, "{\"input_ids\": [1, 2, 3], \"_prov\": {\"source\": \"seeds.jsonl:12\", \"filters\": [\"filter.length\", "
               "\"dedup.minhash\"]}}\n");
    fprintf(f, "{\"input_ids\": [4, 5]}\n");
    fprintf(f, "{\"input_ids\": [6], \"_prov\": \"not an object\"}\n");
    fprintf(f, "{\"input_ids\": [7, 8], \"_prov\": {\"generator\": \"generate.self_instruct\", \"seed\": 123, "
               "\"index\": 4, \"stage\": \"03-generate.self_instruct\"}}\n");
    fclose(f);
    char out[512], out2[512];
    snprintf(out, sizeof out, "%s/pbuild", tmpdir);
    snprintf(out2, sizeof out2, "%s/pbuild2", tmpdir);
    cJSON *extra = cJSON_Parse("{\"recipe\": \"quickstart.lua\", \"pipeline\": [{\"stage\": \"filter.length\", \"removed\": 3}]}");
    pl_build_opts o = {in, out, NULL, "", "", 0, 0, -1, 0, 0, "## Pipeline\n\n- filter.length: 3 removed", extra, NULL};
    pl_build_stats st;
    CHECK(pl_dataset_build(&o, &st, &err) == 0 && st.samples == 4, "build with _prov: %s", err.msg);
    const char *want[4] = {"{\"source\":\"seeds.jsonl:12\",\"filters\":[\"filter.length\",\"dedup.minhash\"]}", "", "",
                           "{\"generator\":\"generate.self_instruct\",\"seed\":123,\"index\":4,\"stage\":\"03-generate.self_instruct\"}"};
    nb = collect_prov(out, idb, pb, 1000, &has);
    ok = nb == 4 && has == 1 && manifest_flag(out) == 1;
    for (int i = 0; i < nb && ok; i++) ok = pb[i] && !strcmp(pb[i], want[i]);
    CHECK(ok, "built provenance: compact JSON of each \"_prov\" object, \"\" otherwise (%d: '%s')", nb,
          nb > 0 && pb[0] ? pb[0] : "");
    free_strs(pb, nb > 0 ? nb : 0);
    pl_manifest *m;
    if (pl_manifest_load(&m, out, &err) == 0) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(m->provenance, "recipe");
        const cJSON *pp = cJSON_GetObjectItemCaseSensitive(m->provenance, "pipeline");
        CHECK(cJSON_IsString(r) && !strcmp(r->valuestring, "quickstart.lua") && cJSON_IsArray(pp) &&
              cJSON_GetArraySize(pp) == 1, "provenance_extra copied into the manifest's provenance");
        CHECK(strlen(pl_manifest_build_key(m)) == 64, "build key recorded");
        pl_manifest_free(m);
    } else {
        CHECK(0, "manifest: %s", err.msg);
    }
    char *card = NULL;
    size_t clen;
    char cp[600];
    snprintf(cp, sizeof cp, "%s/card.md", out);
    CHECK(pl_read_file(cp, 1 << 20, &card, &clen, &err) == 0 && card && strstr(card, "- build key: ") &&
          strstr(card, "sample provenance: one JSON object per sample") &&
          strstr(card, "- build key: ") < strstr(card, "## Pipeline\n\n- filter.length: 3 removed\n"),
          "card_extra appended after the card's own lines: %s", card ? card : "");
    free(card);
    /* the build key ignores card_extra/provenance_extra: the same input is complete */
    pl_build_opts o2 = o;
    o2.card_extra = NULL;
    o2.provenance_extra = NULL;
    CHECK(pl_dataset_build(&o2, &st, &err) == 0 && st.already_complete, "same input without extras: complete");
    /* a key the build records itself is refused */
    cJSON *clash = cJSON_Parse("{\"input_sha256\": \"x\"}");
    o2.out_dir = out2;
    o2.provenance_extra = clash;
    CHECK(pl_dataset_build(&o2, &st, &err) == PL_EINVAL && strstr(err.msg, "\"input_sha256\" is one the build records itself"),
          "clashing provenance_extra: '%s'", err.msg);
    cJSON_Delete(clash);
    cJSON_Delete(extra);
    rm_rf(out);
    rm_rf(out2);
    /* a key spelled with \u escapes is still found; a "_prov" only inside a string is not a key */
    f = fopen(in, "w");
    fprintf(f, "{\"input_ids\": [1], \"text\": \"about \\\"_prov\\\" keys\"}\n{\"input_ids\": [2], \"_pro\\u0076\": {\"a\": 1}}\n");
    fclose(f);
    o2 = o;
    o2.card_extra = NULL;
    o2.provenance_extra = NULL;
    CHECK(pl_dataset_build(&o2, &st, &err) == 0, "escaped key build: %s", err.msg);
    nb = collect_prov(out, idb, pb, 1000, &has);
    CHECK(nb == 2 && has == 1 && pb[0] && !strcmp(pb[0], "") && pb[1] && !strcmp(pb[1], "{\"a\":1}"),
          "escaped _prov key found (%d, %d)", nb, has);
    free_strs(pb, nb > 0 ? nb : 0);
    rm_rf(out);
    f = fopen(in, "w");
    fprintf(f, "{\"input_ids\": [1], \"text\": \"about \\\"_prov\\\" keys\"}\n{\"input_ids\": [2], \"x\": {\"_prov\": {}}}\n");
    fclose(f);
    CHECK(pl_dataset_build(&o2, &st, &err) == 0, "no-_prov build: %s", err.msg);
    nb = collect_prov(out, idb, pb, 1000, &has);
    CHECK(nb == 2 && has == 0 && manifest_flag(out) == 0, "no top-level _prov object: no /provenance, no flag (%d %d)",
          nb, has);
    free_strs(pb, nb > 0 ? nb : 0);
    rm_rf(out);
    unlink(in);
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "--cmd")) return cmd_data(argc - 2, argv + 2);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_shard.XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    test_shard_roundtrip();
    test_hostile_shards();
    test_writer_resume();
    test_manifest_checks();
    test_build_jsonl();
    test_text_build();
    test_provenance();
    test_split_merge();
    char p[600];
    const char *sub[] = {"full", "part", "fromjsonl", "text"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", tmpdir, sub[i]);
        rm_rf(p);
    }
    rm_rf(tmpdir);
    return check_summary("test_shard");
}
