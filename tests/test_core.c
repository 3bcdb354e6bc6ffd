/* test_core.c: errors, SHA-256, atomic files, the Philox generator and the JSON helpers. */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "core/atomic.h"
#include "core/error.h"
#include "core/json.h"
#include "core/mapfile.h"
#include "core/rng.h"
#include "core/sha256.h"

/* REQUIRE for void helpers: count a failure and leave the helper. */
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

static char *tpath(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_tmp, name);
    return buf[k];
}

static char *slurp(const char *path, size_t *len) {
    char *buf = NULL;
    pl_err err;
    if (pl_read_file(path, 1 << 20, &buf, len, &err) != PL_OK) return NULL;
    return buf;
}

static int write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

/* Number of directory entries whose name contains ".tmp." (atomic temp files). */
static int count_temps(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strstr(de->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

/* ------------------------------------------------------------ error.c */
static void test_error(void) {
    pl_err err;
    pl_err_clear(&err);
    CHECK(err.code == PL_OK && err.msg[0] == '\0', "pl_err_clear");
    int rc = pl_err_set(&err, PL_EFORMAT, "%s: header: expected %d, found %d", "model.gguf", 3, 7);
    CHECK(rc == PL_EFORMAT && err.code == PL_EFORMAT, "pl_err_set returns the code");
    CHECK(strcmp(err.msg, "model.gguf: header: expected 3, found 7") == 0, "pl_err_set message: %s", err.msg);
    rc = pl_err_prefix(&err, "loading %s", "run1");
    CHECK(rc == PL_EFORMAT, "pl_err_prefix returns the code");
    CHECK(strcmp(err.msg, "loading run1: model.gguf: header: expected 3, found 7") == 0, "prefix: %s", err.msg);
    CHECK(pl_err_set(NULL, PL_EIO, "x") == PL_EIO, "pl_err_set(NULL) returns the code");
    /* text from input files cannot print a second line or drive the terminal */
    pl_err_set(&err, PL_EFORMAT, "t.jinja: unknown filter '%s'", "a\nFAKE.gguf:1: ok\x1b[2J\t\r\x7f\xc2\x9b" "31m \xc3\xa9");
    CHECK(strcmp(err.msg, "t.jinja: unknown filter 'a\\nFAKE.gguf:1: ok\\x1b[2J\\t\\r\\x7f\\xc2\\x9b31m \xc3\xa9'") == 0,
          "control bytes escaped, UTF-8 kept: %s", err.msg);
    pl_err_prefix(&err, "ctx\n%s", "x\x1b");
    CHECK(!strchr(err.msg, '\n') && !strchr(err.msg, 0x1b) && !strncmp(err.msg, "ctx\\nx\\x1b: t.jinja", 19),
          "prefix escaped too: %s", err.msg);
    char many[3000];
    memset(many, '\n', sizeof many - 1);
    many[sizeof many - 1] = 0;
    pl_err_set(&err, PL_EFORMAT, "%s", many);
    CHECK(strlen(err.msg) < sizeof err.msg && strlen(err.msg) % 2 == 0 && !strchr(err.msg, '\n'),
          "escaping cuts at whole escapes within the buffer (%zu bytes)", strlen(err.msg));
    /* a very long message is cut, never overflowed */
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    pl_err_set(&err, PL_ERANGE, "%s", big);
    CHECK(strlen(err.msg) == sizeof err.msg - 1, "long message truncated to %zu", strlen(err.msg));
    pl_err_prefix(&err, "ctx");
    CHECK(strncmp(err.msg, "ctx: xxx", 8) == 0 && strlen(err.msg) == sizeof err.msg - 1, "prefix of a long message");
    CHECK(strcmp(pl_status_name(PL_EFORMAT), "format error") == 0, "status name");
    CHECK(strcmp(pl_status_name(PL_ENOTFOUND), "not found") == 0, "status name not found");
    CHECK(strcmp(pl_status_name(12345), "error") == 0, "unknown status name");
}

/* ------------------------------------------------------------ sha256 */
static int hex_is(const uint8_t d[32], const char *want) {
    char hex[65];
    pl_sha256_hex(d, hex);
    if (strcmp(hex, want) != 0) {
        fprintf(stderr, "  got  %s\n  want %s\n", hex, want);
        return 0;
    }
    return 1;
}

static void test_sha256(void) {
    uint8_t d[32];
    /* FIPS 180-2 / NIST examples */
    pl_sha256_buf("", 0, d);
    CHECK(hex_is(d, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), "sha256 of \"\"");
    pl_sha256_buf("abc", 3, d);
    CHECK(hex_is(d, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), "sha256 of \"abc\"");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    pl_sha256_buf(two, strlen(two), d);
    CHECK(hex_is(d, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"), "sha256 of the 448-bit vector");
    /* one million 'a', in one buffer and streamed in uneven pieces */
    size_t n = 1000000;
    char *a = malloc(n);
    REQUIRE_VOID(a);
    memset(a, 'a', n);
    pl_sha256_buf(a, n, d);
    CHECK(hex_is(d, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"), "sha256 of a million 'a'");
    pl_sha256 *h = pl_sha256_new();
    CHECK(h != NULL, "pl_sha256_new");
    if (h) {
        size_t off = 0, step = 1;
        while (off < n) {
            size_t k = step < n - off ? step : n - off;
            pl_sha256_update(h, a + off, k);
            off += k;
            step = step * 3 + 1;
        }
        pl_sha256_final(h, d);
        CHECK(hex_is(d, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"), "streamed million 'a'");
    }
    free(a);

    /* a fixture whose sha256 PROVENANCE.md lists */
    char path[1024];
    snprintf(path, sizeof path, "%s/fixtures/stories260K/stories260K.bin", check_env("POTLUCK_SHARED"));
    pl_err err;
    pl_err_clear(&err);
    int rc = pl_sha256_file(path, d, &err);
    CHECK(rc == PL_OK, "pl_sha256_file: %s", err.msg);
    CHECK(hex_is(d, "b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696"), "sha256 of stories260K.bin");
    snprintf(path, sizeof path, "%s/fixtures/stories260K/tok512.bin", check_env("POTLUCK_SHARED"));
    rc = pl_sha256_file(path, d, &err);
    CHECK(rc == PL_OK && hex_is(d, "037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312"),
          "sha256 of tok512.bin");
    /* empty file */
    write_text(tpath("empty"), "");
    rc = pl_sha256_file(tpath("empty"), d, &err);
    CHECK(rc == PL_OK && hex_is(d, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
          "sha256 of an empty file");
    rc = pl_sha256_file(tpath("no-such-file"), d, &err);
    CHECK(rc == PL_EIO && strstr(err.msg, "no-such-file"), "missing file: %d %s", rc, err.msg);
}

/* ------------------------------------------------------------ atomic */
static void test_atomic(void) {
    pl_err err;
    pl_err_clear(&err);
    const char *p = tpath("out.txt");
    int rc = pl_write_file_atomic(p, "hello\n", 6, &err);
    CHECK(rc == PL_OK, "atomic write: %s", err.msg);
    size_t len = 0;
    char *got = slurp(p, &len);
    CHECK(got && len == 6 && memcmp(got, "hello\n", 6) == 0, "atomic write content");
    free(got);
    CHECK(count_temps(g_tmp) == 0, "no temp file left after a write");

    /* overwrite */
    rc = pl_write_file_atomic(p, "second", 6, &err);
    got = slurp(p, &len);
    CHECK(rc == PL_OK && got && len == 6 && memcmp(got, "second", 6) == 0, "atomic overwrite");
    free(got);

    /* abort keeps the old file and removes the temp */
    pl_afile f;
    rc = pl_afile_open(&f, p, &err);
    CHECK(rc == PL_OK && f.fp && f.tmp, "pl_afile_open: %s", err.msg);
    if (rc == PL_OK) {
        const char *base = strrchr(f.tmp, '/');
        CHECK(base && strncmp(base, "/.out.txt.tmp.", 14) == 0, "temp name %s", f.tmp);
        struct stat sb;
        CHECK(stat(f.tmp, &sb) == 0, "temp file exists while writing");
        fputs("partial write that must not appear", f.fp);
        fflush(f.fp);
        CHECK(count_temps(g_tmp) == 1, "one temp file while writing");
        pl_afile_abort(&f);
        CHECK(f.fp == NULL && f.tmp == NULL && f.path == NULL, "abort clears the handle");
    }
    got = slurp(p, &len);
    CHECK(got && len == 6 && memcmp(got, "second", 6) == 0, "abort leaves the old file intact");
    free(got);
    CHECK(count_temps(g_tmp) == 0, "abort removes the temp file");
    pl_afile_abort(&f); /* twice: harmless */
    pl_afile zero;
    memset(&zero, 0, sizeof zero);
    pl_afile_abort(&zero);

    /* commit through the stream API, empty content */
    rc = pl_afile_open(&f, tpath("streamed.bin"), &err);
    if (rc == PL_OK) {
        for (int i = 0; i < 1000; i++) fprintf(f.fp, "%d,", i);
        rc = pl_afile_commit(&f, &err);
        CHECK(rc == PL_OK && f.fp == NULL && f.tmp == NULL, "commit: %s", err.msg);
    }
    got = slurp(tpath("streamed.bin"), &len);
    CHECK(got && strncmp(got, "0,1,2,", 6) == 0 && strstr(got, ",999,") != NULL, "streamed content");
    free(got);
    rc = pl_write_file_atomic(tpath("zero"), NULL, 0, &err);
    got = slurp(tpath("zero"), &len);
    CHECK(rc == PL_OK && got && len == 0, "atomic write of nothing");
    free(got);

    /* errors name the file */
    rc = pl_write_file_atomic(tpath("missing-dir/x.txt"), "x", 1, &err);
    CHECK(rc == PL_EIO && strstr(err.msg, "missing-dir/x.txt"), "write into a missing directory: %s", err.msg);
    CHECK(count_temps(g_tmp) == 0, "no temp after failures");

    /* mkdirs */
    rc = pl_mkdirs(tpath("a/b//c/d/"), &err);
    struct stat sb;
    CHECK(rc == PL_OK && stat(tpath("a/b/c/d"), &sb) == 0 && S_ISDIR(sb.st_mode), "mkdirs: %s", err.msg);
    rc = pl_mkdirs(tpath("a/b/c"), &err);
    CHECK(rc == PL_OK, "mkdirs of an existing directory: %s", err.msg);
    rc = pl_mkdirs(tpath("out.txt/sub"), &err);
    CHECK(rc == PL_EIO && strstr(err.msg, "out.txt"), "mkdirs through a file: %s", err.msg);
    rc = pl_mkdirs(tpath("out.txt"), &err);
    CHECK(rc == PL_EIO, "mkdirs on a file: %s", err.msg);
    rc = pl_write_file_atomic(tpath("a/b/c/d/deep.txt"), "deep", 4, &err);
    CHECK(rc == PL_OK, "write into created dirs");
}

/* ------------------------------------------------------------ rng */
static void test_rng(void) {
    /* Random123 kat_vectors, "philox4x32 10" lines: ctr[4] key[2] -> out[4].
     * Through pl_philox: index = ctr1:ctr0, stream = ctr3:ctr2, seed = key1:key0. */
    uint32_t w[4];
    pl_philox(0, 0, 0, w);
    CHECK(w[0] == 0x6627e8d5u && w[1] == 0xe169c58du && w[2] == 0xbc57ac4cu && w[3] == 0x9b00dbd8u,
          "philox KAT zeros: %08x %08x %08x %08x", w[0], w[1], w[2], w[3]);
    pl_philox(UINT64_MAX, UINT64_MAX, UINT64_MAX, w);
    CHECK(w[0] == 0x408f276du && w[1] == 0x41c83b0eu && w[2] == 0xa20bc7c6u && w[3] == 0x6d5451fdu,
          "philox KAT ones: %08x %08x %08x %08x", w[0], w[1], w[2], w[3]);
    pl_philox(0x299f31d0a4093822ull, 0x0370734413198a2eull, 0x85a308d3243f6a88ull, w);
    CHECK(w[0] == 0xd16cfe09u && w[1] == 0x94fdccebu && w[2] == 0x5001e420u && w[3] == 0x24126ea1u,
          "philox KAT pi: %08x %08x %08x %08x", w[0], w[1], w[2], w[3]);

    /* derived values follow the documented mapping */
    pl_philox(42, 7, 1234, w);
    CHECK(pl_rng_u32(42, 7, 1234) == w[0], "u32 = word 0");
    CHECK(pl_rng_u64(42, 7, 1234) == ((uint64_t)w[1] << 32 | w[0]), "u64 = word1:word0");
    CHECK(pl_rng_uniform(42, 7, 1234) == (float)(w[0] >> 8) / 16777216.0f, "uniform = top 24 bits");
    /* every argument matters, and the same arguments give the same bits */
    CHECK(pl_rng_u64(42, 7, 1234) != pl_rng_u64(43, 7, 1234), "seed changes the draw");
    CHECK(pl_rng_u64(42, 7, 1234) != pl_rng_u64(42, 8, 1234), "stream changes the draw");
    CHECK(pl_rng_u64(42, 7, 1234) != pl_rng_u64(42, 7, 1235), "index changes the draw");
    CHECK(pl_rng_u64(42, 1ull << 40, 1234) != pl_rng_u64(42, 0, 1234), "high stream bits matter");
    CHECK(pl_rng_u64(42, 7, 1ull << 40) != pl_rng_u64(42, 7, 0), "high index bits matter");
    CHECK(pl_rng_u64(1ull << 40, 7, 1) != pl_rng_u64(0, 7, 1), "high seed bits matter");

    enum { N = 100000 };
    double su = 0, su2 = 0, sd = 0, sd2 = 0, sn = 0, sn2 = 0, sn4 = 0;
    double sa = 0, sb = 0, sab = 0, sa2 = 0, sb2 = 0;
    int in_range = 1, same = 0, finite = 1;
    for (uint64_t i = 0; i < N; i++) {
        float u = pl_rng_uniform(5, 1, i);
        double ud = pl_rng_uniform_d(5, 1, i);
        float z = pl_rng_normal(5, 2, i);
        if (!(u >= 0.0f && u < 1.0f) || !(ud >= 0.0 && ud < 1.0)) in_range = 0;
        if (!isfinite(z)) finite = 0;
        su += u, su2 += (double)u * u;
        sd += ud, sd2 += ud * ud;
        sn += z, sn2 += (double)z * z, sn4 += (double)z * z * z * z;
        /* two streams under one seed: uncorrelated */
        double a = pl_rng_uniform_d(5, 10, i), b = pl_rng_uniform_d(5, 11, i);
        sa += a, sb += b, sab += a * b, sa2 += a * a, sb2 += b * b;
        if (pl_rng_u64(5, 10, i) == pl_rng_u64(5, 11, i)) same++;
    }
    double mu = su / N, vu = su2 / N - mu * mu;
    double md = sd / N, vd = sd2 / N - md * md;
    double mn = sn / N, vn = sn2 / N - mn * mn, kn = sn4 / N;
    CHECK(in_range, "uniform values in [0, 1)");
    CHECK(finite, "normal values finite");
    CHECK(fabs(mu - 0.5) < 0.005 && fabs(vu - 1.0 / 12) < 0.002, "uniform mean %.5f var %.5f", mu, vu);
    CHECK(fabs(md - 0.5) < 0.005 && fabs(vd - 1.0 / 12) < 0.002, "uniform_d mean %.5f var %.5f", md, vd);
    CHECK(fabs(mn) < 0.015 && fabs(vn - 1) < 0.02, "normal mean %.5f var %.5f", mn, vn);
    CHECK(fabs(kn - 3) < 0.1, "normal 4th moment %.4f (3 expected)", kn);
    double cov = sab / N - (sa / N) * (sb / N);
    double corr = cov / sqrt((sa2 / N - (sa / N) * (sa / N)) * (sb2 / N - (sb / N) * (sb / N)));
    CHECK(fabs(corr) < 0.015, "streams 10 and 11 correlation %.5f", corr);
    CHECK(same == 0, "streams 10 and 11 share %d draws", same);
    /* neighbouring indices within a stream are uncorrelated too */
    double s1 = 0, s2 = 0, s12 = 0, q1 = 0, q2 = 0;
    for (uint64_t i = 0; i < N; i++) {
        double a = pl_rng_uniform_d(9, 0, i), b = pl_rng_uniform_d(9, 0, i + 1);
        s1 += a, s2 += b, s12 += a * b, q1 += a * a, q2 += b * b;
    }
    double c2 = (s12 / N - s1 / N * s2 / N) / sqrt((q1 / N - s1 / N * s1 / N) * (q2 / N - s2 / N * s2 / N));
    CHECK(fabs(c2) < 0.015, "lag-1 correlation %.5f", c2);

    /* below: range and rough uniformity (chi-square, 9 dof, 0.1% critical value 27.88) */
    long cnt[10] = {0};
    int below_ok = 1;
    for (uint64_t i = 0; i < N; i++) {
        uint64_t r = pl_rng_below(3, 4, i, 10);
        if (r >= 10) {
            below_ok = 0;
            break;
        }
        cnt[r]++;
    }
    CHECK(below_ok, "pl_rng_below(10) in range");
    double chi = 0;
    for (int k = 0; k < 10; k++) chi += (cnt[k] - N / 10.0) * (cnt[k] - N / 10.0) / (N / 10.0);
    CHECK(chi < 27.88, "pl_rng_below(10) chi-square %.2f", chi);
    /* n = 3: 2^64 mod 3 != 0, the case modulo would bias */
    long c3[3] = {0};
    for (uint64_t i = 0; i < 30000; i++) c3[pl_rng_below(8, 0, i, 3)]++;
    CHECK(labs(c3[0] - 10000) < 500 && labs(c3[1] - 10000) < 500 && labs(c3[2] - 10000) < 500,
          "below(3) counts %ld %ld %ld", c3[0], c3[1], c3[2]);
    int big_ok = 1, hi_half = 0;
    uint64_t nbig = (1ull << 63) + 12345;
    for (uint64_t i = 0; i < 2000; i++) {
        uint64_t r = pl_rng_below(1, 2, i, nbig);
        if (r >= nbig) big_ok = 0;
        if (r >= nbig / 2) hi_half++;
        if (pl_rng_below(1, 2, i, UINT64_MAX) == UINT64_MAX) big_ok = 0;
    }
    CHECK(big_ok, "pl_rng_below(2^63+12345) and (2^64-1) in range");
    CHECK(hi_half > 850 && hi_half < 1150, "below(2^63+..) halves: %d of 2000 high", hi_half);
    CHECK(pl_rng_below(1, 2, 3, 1) == 0, "below(1) is 0");
    CHECK(pl_rng_below(1, 2, 3, 1000) == pl_rng_below(1, 2, 3, 1000), "below is deterministic");
}

/* ------------------------------------------------------------ json */
static void test_json(void) {
    pl_err err;
    pl_err_clear(&err);
    const char *cfg = tpath("config.json");
    write_text(cfg,
               "{\n  \"num_attention_heads\": \"9\",\n  \"hidden_size\": 576,\n  \"rms_norm_eps\": 1e-05,\n"
               "  \"tie_word_embeddings\": true,\n  \"model_type\": \"llama\",\n  \"ratio\": 1.5,\n"
               "  \"rope_scaling\": null,\n  \"huge\": 1e300,\n  \"neg\": -42,\n  \"list\": [1, 2],\n"
               "  \"obj\": {\"a\": 1}\n}\n");
    cJSON *j = NULL;
    int rc = pl_json_load(cfg, 1 << 20, &j, &err);
    REQUIRE_VOID(rc == PL_OK && j);
    int64_t iv = 0;
    double dv = 0;
    const char *sv = NULL;
    int bv = -1;
    rc = pl_json_int(j, "num_attention_heads", "config.json", &iv, &err);
    CHECK(rc == PL_EFORMAT, "string for an integer: rc %d", rc);
    CHECK(strcmp(err.msg, "config.json: num_attention_heads: expected an integer, got string \"9\"") == 0, "msg: %s",
          err.msg);
    rc = pl_json_int(j, "hidden_size", "config.json", &iv, &err);
    CHECK(rc == PL_OK && iv == 576, "int 576");
    rc = pl_json_int(j, "neg", "config.json", &iv, &err);
    CHECK(rc == PL_OK && iv == -42, "int -42");
    rc = pl_json_int(j, "ratio", "config.json", &iv, &err);
    CHECK(rc == PL_EFORMAT && strcmp(err.msg, "config.json: ratio: expected an integer, got number 1.5") == 0,
          "fractional: %s", err.msg);
    rc = pl_json_int(j, "huge", "config.json", &iv, &err);
    CHECK(rc == PL_ERANGE && strstr(err.msg, "config.json: huge:"), "huge integer: %s", err.msg);
    rc = pl_json_int(j, "vocab_size", "config.json", &iv, &err);
    CHECK(rc == PL_ENOTFOUND && strcmp(err.msg, "config.json: vocab_size: expected an integer, but the key is missing") == 0,
          "missing: %s", err.msg);
    rc = pl_json_num(j, "rms_norm_eps", "config.json", &dv, &err);
    CHECK(rc == PL_OK && dv == 1e-5, "num 1e-5");
    rc = pl_json_num(j, "hidden_size", "config.json", &dv, &err);
    CHECK(rc == PL_OK && dv == 576.0, "int as number");
    rc = pl_json_num(j, "model_type", "config.json", &dv, &err);
    CHECK(rc == PL_EFORMAT && strcmp(err.msg, "config.json: model_type: expected a number, got string \"llama\"") == 0,
          "string for a number: %s", err.msg);
    rc = pl_json_str(j, "model_type", "config.json", &sv, &err);
    CHECK(rc == PL_OK && sv && strcmp(sv, "llama") == 0, "str");
    rc = pl_json_str(j, "hidden_size", "config.json", &sv, &err);
    CHECK(rc == PL_EFORMAT && strcmp(err.msg, "config.json: hidden_size: expected a string, got number 576") == 0,
          "number for a string: %s", err.msg);
    rc = pl_json_str(j, "list", "config.json", &sv, &err);
    CHECK(rc == PL_EFORMAT && strcmp(err.msg, "config.json: list: expected a string, got an array") == 0, "array: %s",
          err.msg);
    rc = pl_json_bool(j, "tie_word_embeddings", "config.json", &bv, &err);
    CHECK(rc == PL_OK && bv == 1, "bool");
    rc = pl_json_bool(j, "obj", "config.json", &bv, &err);
    CHECK(rc == PL_EFORMAT && strcmp(err.msg, "config.json: obj: expected true or false, got an object") == 0,
          "object for a bool: %s", err.msg);
    rc = pl_json_bool(j, "rope_scaling", "config.json", &bv, &err);
    CHECK(rc == PL_EFORMAT && strcmp(err.msg, "config.json: rope_scaling: expected true or false, got null") == 0,
          "null for a bool: %s", err.msg);
    /* optional variants: absent or null leave *out alone */
    iv = 7;
    rc = pl_json_int_opt(j, "vocab_size", "config.json", &iv, &err);
    CHECK(rc == PL_OK && iv == 7, "int_opt absent");
    rc = pl_json_int_opt(j, "rope_scaling", "config.json", &iv, &err);
    CHECK(rc == PL_OK && iv == 7, "int_opt null");
    rc = pl_json_int_opt(j, "hidden_size", "config.json", &iv, &err);
    CHECK(rc == PL_OK && iv == 576, "int_opt present");
    rc = pl_json_int_opt(j, "model_type", "config.json", &iv, &err);
    CHECK(rc == PL_EFORMAT && iv == 576, "int_opt wrong type: %s", err.msg);
    dv = 3.5;
    rc = pl_json_num_opt(j, "nope", "config.json", &dv, &err);
    CHECK(rc == PL_OK && dv == 3.5, "num_opt absent");
    rc = pl_json_num_opt(j, "ratio", "config.json", &dv, &err);
    CHECK(rc == PL_OK && dv == 1.5, "num_opt present");
    sv = "default";
    rc = pl_json_str_opt(j, "rope_scaling", "config.json", &sv, &err);
    CHECK(rc == PL_OK && strcmp(sv, "default") == 0, "str_opt null");
    rc = pl_json_str_opt(j, "neg", "config.json", &sv, &err);
    CHECK(rc == PL_EFORMAT, "str_opt wrong type");
    bv = 5;
    rc = pl_json_bool_opt(j, "nope", "config.json", &bv, &err);
    CHECK(rc == PL_OK && bv == 5, "bool_opt absent");
    rc = pl_json_bool_opt(j, "tie_word_embeddings", "config.json", &bv, &err);
    CHECK(rc == PL_OK && bv == 1, "bool_opt present");
    /* getters on something that is not an object */
    rc = pl_json_int(cJSON_GetObjectItem(j, "list"), "x", "config.json", &iv, &err);
    CHECK(rc == PL_EFORMAT && strstr(err.msg, "config.json: x: expected an object"), "not an object: %s", err.msg);
    rc = pl_json_int(NULL, "x", "config.json", &iv, &err);
    CHECK(rc == PL_EFORMAT, "NULL object");

    /* write and read back */
    const char *out = tpath("written.json");
    rc = pl_json_write(out, j, &err);
    CHECK(rc == PL_OK, "pl_json_write: %s", err.msg);
    size_t len = 0;
    char *text = slurp(out, &len);
    CHECK(text && len > 2 && text[len - 1] == '\n' && text[len - 2] == '}', "written JSON ends with a newline");
    free(text);
    cJSON *back = NULL;
    rc = pl_json_load(out, 1 << 20, &back, &err);
    CHECK(rc == PL_OK && back && cJSON_Compare(j, back, 1), "written JSON reads back equal");
    cJSON_Delete(back);
    CHECK(count_temps(g_tmp) == 0, "no temp after pl_json_write");
    cJSON_Delete(j);

    /* load errors name the file and the place */
    const char *bad = tpath("bad.json");
    write_text(bad, "{\n  \"a\": 1,\n  \"b\": [1, 2,\n}\n");
    j = NULL;
    rc = pl_json_load(bad, 1 << 20, &j, &err);
    CHECK(rc == PL_EFORMAT && j == NULL && strstr(err.msg, "bad.json: not valid JSON (error at line 4"),
          "invalid JSON: %s", err.msg);
    write_text(bad, "{\"a\": 1} trailing");
    rc = pl_json_load(bad, 1 << 20, &j, &err);
    CHECK(rc == PL_EFORMAT && j == NULL && strstr(err.msg, "bad.json") && strstr(err.msg, "column 10"),
          "trailing text: %s", err.msg);
    write_text(bad, "");
    rc = pl_json_load(bad, 1 << 20, &j, &err);
    CHECK(rc == PL_EFORMAT && j == NULL, "empty file: %s", err.msg);
    write_text(bad, "[1, 2, 3]");
    rc = pl_json_load(bad, 4, &j, &err);
    CHECK(rc == PL_ERANGE && j == NULL && strstr(err.msg, "bad.json"), "over max_bytes: %s", err.msg);
    rc = pl_json_load(tpath("absent.json"), 1 << 20, &j, &err);
    CHECK(rc == PL_EIO && strstr(err.msg, "absent.json"), "missing file: %s", err.msg);
    /* deep nesting is refused, not a stack overflow */
    size_t depth = 100000;
    char *deep = malloc(depth + 1);
    REQUIRE_VOID(deep);
    memset(deep, '[', depth);
    deep[depth] = '\0';
    write_text(bad, deep);
    free(deep);
    rc = pl_json_load(bad, 1 << 20, &j, &err);
    CHECK(rc == PL_EFORMAT && j == NULL, "deep nesting: %s", err.msg);
}

int main(void) {
    const char *tmpdir = getenv("TMPDIR");
    snprintf(g_tmp, sizeof g_tmp, "%s/pl_test_core.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    REQUIRE(mkdtemp(g_tmp) != NULL, "mkdtemp: %s", strerror(errno));
    test_error();
    test_sha256();
    test_atomic();
    test_rng();
    test_json();
    rm_rf(g_tmp);
    return check_summary("test_core");
}
