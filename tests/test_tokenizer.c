/* test_tokenizer.c: llama2.c and GGUF tokenizers against llama2.c's test vectors, llama.cpp's
 * vocabulary test vectors, llama.cpp's SmolLM2 prompt tokens, round trips and hostile files. */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include "check.h"
#include "core/atomic.h"
#include "core/error.h"
#include "core/gguf.h"
#include "core/json.h"
#include "datasets/tokenizer.h"
#include "datasets/tokenizer_hf_write.h"

static const char *g_shared;
static char g_tmp[256];

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *b = malloc((size_t)n + 1);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        fclose(f);
        return NULL;
    }
    fclose(f);
    b[n] = '\0';
    *len = (size_t)n;
    return b;
}

static int write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(p, 1, n, f);
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

/* Decode ids as running text, prev starting at -1 (start of text). *n gets the length. */
static char *decode_all(const pl_tokenizer *t, const int32_t *ids, int n_ids, int render_special, size_t *n) {
    size_t cap = (size_t)n_ids * (size_t)pl_tokenizer_max_piece_bytes(t) + 1, o = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    int prev = -1;
    for (int i = 0; i < n_ids; i++) {
        int k = pl_tokenizer_decode(t, prev, ids[i], render_special, s + o, cap - o);
        o += (size_t)k;
        prev = ids[i];
    }
    s[o] = '\0';
    *n = o;
    return s;
}

static int ids_equal(const int32_t *a, int na, const int *b, int nb) {
    if (na != nb) return 0;
    for (int i = 0; i < na; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static void print_ids(const char *label, const int32_t *v, int n) {
    fprintf(stderr, "  %s (%d):", label, n);
    for (int i = 0; i < n && i < 64; i++) fprintf(stderr, " %d", v[i]);
    fputc('\n', stderr);
}

/* A tiny GGUF writer for synthetic vocabularies. */
typedef struct { unsigned char *p; size_t n, cap; int nkv; } gw;

static void gw_raw(gw *w, const void *p, size_t n) {
    if (w->n + n > w->cap) {
        w->cap = (w->n + n) * 2 + 256;
        w->p = realloc(w->p, w->cap);
    }
    memcpy(w->p + w->n, p, n);
    w->n += n;
}
static void gw_u32(gw *w, uint32_t v) { gw_raw(w, &v, 4); }
static void gw_u64(gw *w, uint64_t v) { gw_raw(w, &v, 8); }
static void gw_str(gw *w, const char *s) {
    gw_u64(w, strlen(s));
    gw_raw(w, s, strlen(s));
}
static void gw_key(gw *w, const char *k, uint32_t type) {
    gw_str(w, k);
    gw_u32(w, type);
    w->nkv++;
}
static void kv_str(gw *w, const char *k, const char *v) {
    gw_key(w, k, PL_GGUF_STRING);
    gw_str(w, v);
}
static void kv_u32(gw *w, const char *k, uint32_t v) {
    gw_key(w, k, PL_GGUF_UINT32);
    gw_u32(w, v);
}
static void kv_bool(gw *w, const char *k, int v) {
    gw_key(w, k, PL_GGUF_BOOL);
    unsigned char b = (unsigned char)v;
    gw_raw(w, &b, 1);
}
static void kv_strs(gw *w, const char *k, const char **v, int n) {
    gw_key(w, k, PL_GGUF_ARRAY);
    gw_u32(w, PL_GGUF_STRING);
    gw_u64(w, (uint64_t)n);
    for (int i = 0; i < n; i++) gw_str(w, v[i]);
}
static void kv_f32s(gw *w, const char *k, const float *v, int n) {
    gw_key(w, k, PL_GGUF_ARRAY);
    gw_u32(w, PL_GGUF_FLOAT32);
    gw_u64(w, (uint64_t)n);
    gw_raw(w, v, (size_t)n * 4);
}
static void kv_i32s(gw *w, const char *k, const int32_t *v, int n) {
    gw_key(w, k, PL_GGUF_ARRAY);
    gw_u32(w, PL_GGUF_INT32);
    gw_u64(w, (uint64_t)n);
    gw_raw(w, v, (size_t)n * 4);
}

/* header + kv bytes of w into path; w is reset */
static int write_gguf(const char *path, gw *w) {
    gw out = { 0 };
    gw_raw(&out, "GGUF", 4);
    gw_u32(&out, 3);
    gw_u64(&out, 0);
    gw_u64(&out, (uint64_t)w->nkv);
    gw_raw(&out, w->p, w->n);
    int rc = write_bytes(path, out.p, out.n);
    free(out.p);
    free(w->p);
    memset(w, 0, sizeof *w);
    return rc;
}

/* ------------------------------------------------------------ llama2.c */

/* The prompts of karpathy/llama2.c test.c, with BOS (ids from Meta's tokenizer). */
static void test_llama2c_32k(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/fixtures/llama2c/tokenizer.bin", g_shared);
    pl_tokenizer *t = NULL;
    pl_err err = { 0 };
    int rc = pl_tokenizer_load_llama2c(&t, path, 32000, &err);
    CHECK(rc == PL_OK, "load %s: %s", path, err.msg);
    if (rc) return;
    CHECK(pl_tokenizer_kind(t) == PL_TOK_SPM && pl_tokenizer_vocab(t) == 32000, "kind/vocab");
    CHECK(pl_tokenizer_bos(t) == 1 && pl_tokenizer_eos(t) == 2 && pl_tokenizer_add_bos(t) == 1, "bos/eos/add_bos");
    CHECK(pl_tokenizer_chat_template(t) == NULL, "no chat template in a llama2.c tokenizer");

    static const char *prompts[5] = {
        "",
        "I believe the meaning of life is",
        "Simply put, the theory of relativity states that ",
        "A brief message congratulating the team on the launch:\n\n        Hi everyone,\n\n        I just ",
        "Translate English to French:\n\n        sea otter => loutre de mer\n        peppermint => menthe "
        "poivrée\n        plush girafe => girafe peluche\n        cheese =>",
    };
    static const int e0[] = { 1 };
    static const int e1[] = { 1, 306, 4658, 278, 6593, 310, 2834, 338 };
    static const int e2[] = { 1, 3439, 17632, 1925, 29892, 278, 6368, 310, 14215, 537, 5922, 393, 29871 };
    static const int e3[] = { 1,   319,   11473, 2643, 378,  629,  271,   18099, 278,  3815, 373, 278,  6826,
                              29901, 13, 13,    4706, 6324, 14332, 29892, 13,   13,   4706, 306, 925,  29871 };
    static const int e4[] = { 1,    4103, 9632, 4223, 304,  5176, 29901, 13,   13,    4706, 7205, 4932, 357,
                              1149, 301,  449,  276,  316,  2778, 13,    4706, 1236,  407,  837,  524,  1149,
                              6042, 354,  772,  440,  29878, 1318, 13,   4706, 715,   1878, 330,  3055, 1725,
                              1149, 330,  3055, 1725, 4639, 28754, 13,   4706, 923,  968,   1149 };
    const int *exp[5] = { e0, e1, e2, e3, e4 };
    const int nexp[5] = { 1, 8, 13, 26, 50 };
    for (int k = 0; k < 5; k++) {
        int32_t *ids = NULL;
        int n = 0;
        rc = pl_tokenizer_encode(t, prompts[k], strlen(prompts[k]), 1, 0, &ids, &n, &err);
        CHECK(rc == PL_OK, "encode prompt %d: %s", k, err.msg);
        int ok = rc == PL_OK && ids_equal(ids, n, exp[k], nexp[k]);
        CHECK(ok, "llama2.c test.c prompt %d: ids differ from the expected ones", k);
        if (!ok && ids) {
            int32_t tmp[64];
            for (int i = 0; i < nexp[k]; i++) tmp[i] = exp[k][i];
            print_ids("expected", tmp, nexp[k]);
            print_ids("got", ids, n);
        }
        /* decoding from BOS gives the prompt back (run.c drops the dummy-prefix space after BOS) */
        size_t dn;
        char *d = rc == PL_OK ? decode_all(t, ids, n, 0, &dn) : NULL;
        CHECK(d && dn == strlen(prompts[k]) && memcmp(d, prompts[k], dn) == 0, "decode prompt %d: got '%s'", k,
              d ? d : "(null)");
        free(d);
        free(ids);
    }
    /* without BOS the dummy prefix stays: "I" -> " I" (306) */
    int32_t *ids = NULL;
    int n = 0;
    rc = pl_tokenizer_encode(t, "I", 1, 0, 0, &ids, &n, &err);
    CHECK(rc == PL_OK && n == 1 && ids[0] == 306, "encode 'I' without BOS: n=%d id=%d", n, n ? ids[0] : -1);
    free(ids);
    /* a character that is not a piece falls back to bytes + 3: U+1F642 = F0 9F 99 82 */
    rc = pl_tokenizer_encode(t, "\xF0\x9F\x99\x82", 4, 0, 0, &ids, &n, &err);
    CHECK(rc == PL_OK && n == 5 && ids[0] == 29871 && ids[1] == 0xF0 + 3 && ids[4] == 0x82 + 3,
          "byte fallback of an emoji: n=%d", n);
    /* run.c/safe_printf: a lone non-ASCII byte prints nothing; "<0x0A>" prints a newline */
    char buf[64];
    CHECK(rc == PL_OK && pl_tokenizer_decode(t, 29871, ids[1], 0, buf, sizeof buf) == 0,
          "a raw byte >= 0x80 decodes to nothing (safe_printf)");
    CHECK(pl_tokenizer_decode(t, 29871, 13, 0, buf, sizeof buf) == 1 && buf[0] == '\n', "<0x0A> decodes to \\n");
    CHECK(pl_tokenizer_decode(t, 29871, 3 + 7, 0, buf, sizeof buf) == 0, "<0x07> (bell) decodes to nothing");
    CHECK(pl_tokenizer_decode(t, 29871, 2, 0, buf, sizeof buf) == 0, "EOS gives nothing by default");
    int k = pl_tokenizer_decode(t, 29871, 2, 1, buf, sizeof buf);
    CHECK(k == 6 && memcmp(buf, "\n</s>\n", 6) == 0, "EOS with render_special gives llama2.c's piece");
    CHECK(pl_tokenizer_decode(t, 5, 306, 0, buf, sizeof buf) == 2 && memcmp(buf, " I", 2) == 0,
          "' I' keeps its space when not after BOS");
    CHECK(pl_tokenizer_decode(t, 1, 306, 0, buf, sizeof buf) == 1 && buf[0] == 'I', "' I' after BOS drops the space");
    CHECK(pl_tokenizer_decode(t, 1, 32000, 0, buf, sizeof buf) == 0 && pl_tokenizer_decode(t, 1, -1, 0, buf, 8) == 0,
          "out-of-range ids decode to nothing");
    CHECK(pl_tokenizer_find(t, " I") == 306 && pl_tokenizer_find(t, "no-such-piece-xyz") == -1, "find");
    CHECK(pl_tokenizer_piece(t, 306) && strcmp(pl_tokenizer_piece(t, 306), " I") == 0 &&
              pl_tokenizer_piece(t, 32000) == NULL,
          "piece");
    free(ids);
    pl_tokenizer_free(t);
}

/* stories260K's 512-token vocabulary: encode/decode of a TinyStories sample. */
static void test_llama2c_tok512(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/fixtures/stories260K/tok512.bin", g_shared);
    pl_tokenizer *t = NULL;
    pl_err err = { 0 };
    int rc = pl_tokenizer_load_llama2c(&t, path, 512, &err);
    CHECK(rc == PL_OK, "load %s: %s", path, err.msg);
    if (rc) return;
    snprintf(path, sizeof path, "%s/fixtures/text/tinystories_sample.txt", g_shared);
    size_t len;
    char *text = slurp(path, &len);
    CHECK(text != NULL, "read %s", path);
    if (!text) {
        pl_tokenizer_free(t);
        return;
    }
    int32_t *ids = NULL;
    int n = 0;
    rc = pl_tokenizer_encode(t, text, len, 1, 0, &ids, &n, &err);
    CHECK(rc == PL_OK && n > 1 && ids[0] == 1, "encode the sample: %s", err.msg);
    int in_range = 1, n_bytes_hi = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= 512) in_range = 0;
        if (ids[i] >= 3 + 0x80 && ids[i] <= 258) n_bytes_hi++;
    }
    CHECK(in_range, "every id is in the 512-token vocabulary");
    CHECK(n < (int)len / 2, "merges happen: %d tokens for %zu bytes", n, len);
    size_t dn;
    char *d = decode_all(t, ids, n, 0, &dn);
    /* run.c prints nothing for single bytes >= 0x80, so a character that falls back to bytes
     * would be lost; the sample's curly quotes must then be pieces of tok512 */
    CHECK(d && dn == len && memcmp(d, text, len) == 0,
          "decode(encode(sample)) == sample (%zu vs %zu bytes, %d high byte tokens)", dn, len, n_bytes_hi);
    printf("note: tok512: %zu bytes of TinyStories -> %d tokens (with BOS), %d byte-fallback tokens >= 0x80\n", len, n,
           n_bytes_hi);
    free(d);
    free(ids);
    /* each line on its own, too */
    int lines = 0, ok = 0;
    for (char *p = text; *p;) {
        char *e = strchr(p, '\n');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l) {
            rc = pl_tokenizer_encode(t, p, l, 1, 0, &ids, &n, &err);
            d = rc == PL_OK ? decode_all(t, ids, n, 0, &dn) : NULL;
            lines++;
            ok += d && dn == l && memcmp(d, p, l) == 0;
            free(d);
            free(ids);
        }
        p += l + (e ? 1 : 0);
    }
    CHECK(ok == lines && lines > 5, "line round trips: %d of %d", ok, lines);
    free(text);
    pl_tokenizer_free(t);
}

/* ------------------------------------------------------------ llama.cpp vocab vectors */

typedef struct { int n, match, roundtrip; } vec_result;

/* Run DIR/ggml-vocab-NAME.gguf.inp/.out (llama.cpp test-tokenizer-0: no BOS, parse_special
 * off; DIR NULL: the fixtures' llamacpp-vocab) on the vocabulary of gguf_path (NULL:
 * DIR/ggml-vocab-NAME.gguf itself). */
static int run_vectors_in(const char *dir, const char *name, const char *gguf_path, vec_result *res, int verbose) {
    char p[512], fx[400];
    memset(res, 0, sizeof *res);
    if (!dir) {
        snprintf(fx, sizeof fx, "%s/fixtures/llamacpp-vocab", g_shared);
        dir = fx;
    }
    if (gguf_path) snprintf(p, sizeof p, "%s", gguf_path);
    else snprintf(p, sizeof p, "%s/ggml-vocab-%s.gguf", dir, name);
    pl_gguf *g = NULL;
    pl_err err = { 0 };
    if (pl_gguf_open(&g, p, &err) != PL_OK) {
        CHECK(0, "open %s: %s", p, err.msg);
        return -1;
    }
    pl_tokenizer *t = NULL;
    int rc = pl_tokenizer_from_gguf(&t, g, &err);
    pl_gguf_close(g);
    if (rc) {
        CHECK(0, "tokenizer from %s: %s", p, err.msg);
        return -1;
    }
    size_t il, ol;
    snprintf(p, sizeof p, "%s/ggml-vocab-%s.gguf.inp", dir, name);
    char *inp = slurp(p, &il);
    snprintf(p, sizeof p, "%s/ggml-vocab-%s.gguf.out", dir, name);
    char *outp = slurp(p, &ol);
    if (!inp || !outp) {
        CHECK(0, "read the .inp/.out of %s", name);
        free(inp);
        free(outp);
        pl_tokenizer_free(t);
        return -1;
    }
    static const char sep[] = "\n__ggml_vocab_test__\n";
    char *ip = inp, *op = outp;
    for (;;) {
        char *e = strstr(ip, sep);
        if (!e) break;
        char *oe = strchr(op, '\n');
        if (!oe) break;
        *oe = '\0';
        int exp[512], ne = 0;
        for (char *q = op; *q && ne < 512;) {
            char *end;
            long v = strtol(q, &end, 10);
            if (end == q) break;
            exp[ne++] = (int)v;
            q = end;
        }
        int32_t *ids = NULL;
        int n = 0;
        size_t tl = (size_t)(e - ip);
        rc = pl_tokenizer_encode(t, ip, tl, 0, 0, &ids, &n, &err);
        int ok = rc == PL_OK && ids_equal(ids, n, exp, ne);
        res->match += ok;
        if (!ok && verbose) {
            fprintf(stderr, "  %s test %d mismatch: input '%.*s'\n", name, res->n, (int)tl, ip);
            int32_t tmp[512];
            for (int i = 0; i < ne; i++) tmp[i] = exp[i];
            print_ids("expected", tmp, ne);
            print_ids("got", ids, n);
        }
        size_t dn;
        char *d = rc == PL_OK ? decode_all(t, ids, n, 0, &dn) : NULL;
        res->roundtrip += d && dn == tl && memcmp(d, ip, tl) == 0;
        free(d);
        free(ids);
        res->n++;
        ip = e + strlen(sep);
        op = oe + 1;
    }
    free(inp);
    free(outp);
    pl_tokenizer_free(t);
    return 0;
}

static int run_vectors(const char *name, const char *gguf_path, vec_result *res, int verbose) {
    return run_vectors_in(NULL, name, gguf_path, res, verbose);
}

/* Every vocabulary llama.cpp's own tests ship (the pinned llama-cpp-python's
 * source distribution, unpacked by `make llamacpp-vocab` into
 * $POTLUCK_LLAMACPP_VOCAB; it includes the ones too large for the fixtures:
 * qwen2, llama-bpe, command-r, ...): a vocabulary whose pre-tokenizer potluck
 * accepts must give llama.cpp's ids on every input; one it does not accept
 * must be refused with a message that names the pre-tokenizer. */
static void test_sdist_vectors(void) {
    const char *dir = getenv("POTLUCK_LLAMACPP_VOCAB");
    if (!dir || !*dir) {
        CHECK(0, "POTLUCK_LLAMACPP_VOCAB is not set (make test sets it: make llamacpp-vocab)");
        return;
    }
    DIR *d = opendir(dir);
    if (!d) {
        CHECK(0, "%s: cannot open (make llamacpp-vocab)", dir);
        return;
    }
    char names[64][96];
    int nn = 0;
    struct dirent *e;
    while ((e = readdir(d)) && nn < 64) {
        size_t l = strlen(e->d_name);
        if (l > 15 && !strncmp(e->d_name, "ggml-vocab-", 11) && !strcmp(e->d_name + l - 5, ".gguf")) {
            snprintf(names[nn], sizeof names[nn], "%.*s", (int)(l - 16), e->d_name + 11);
            nn++;
        }
    }
    closedir(d);
    qsort(names, (size_t)nn, sizeof names[0], (int (*)(const void *, const void *))strcmp);
    int accepted = 0, refused = 0;
    for (int i = 0; i < nn; i++) {
        char p[4096 + 160];
        snprintf(p, sizeof p, "%.4096s/ggml-vocab-%.95s.gguf.out", dir, names[i]);
        if (access(p, R_OK) != 0) continue; /* no vectors for this one */
        snprintf(p, sizeof p, "%.4096s/ggml-vocab-%.95s.gguf", dir, names[i]);
        pl_gguf *g = NULL;
        pl_err err = { 0 };
        if (pl_gguf_open(&g, p, &err) != PL_OK) {
            CHECK(0, "open %s: %s", p, err.msg);
            continue;
        }
        pl_tokenizer *t = NULL;
        int rc = pl_tokenizer_from_gguf(&t, g, &err);
        pl_gguf_close(g);
        pl_tokenizer_free(t);
        if (rc) {
            refused++;
            CHECK(strstr(err.msg, "pre-tokenizer") || strstr(err.msg, "tokenizer"), "%s refused without saying why: %s",
                  names[i], err.msg);
            printf("note: llama.cpp ggml-vocab-%s: refused: %s\n", names[i], err.msg);
            continue;
        }
        accepted++;
        vec_result r;
        if (run_vectors_in(dir, names[i], NULL, &r, 1)) continue;
        printf("note: llama.cpp ggml-vocab-%s: %d/%d inputs match llama.cpp's ids, %d/%d decode back\n", names[i],
               r.match, r.n, r.roundtrip, r.n);
        CHECK(r.n >= 40 && r.match == r.n, "%s: %d of %d inputs match llama.cpp's ids", names[i], r.match, r.n);
    }
    printf("note: llama.cpp's vocabularies in %s: %d accepted (every input checked), %d refused\n", dir, accepted,
           refused);
    CHECK(accepted >= 10, "only %d vocabularies accepted", accepted);
}

static void test_vocab_vectors(void) {
    /* must match fully: every vocabulary whose pre-tokenizer is implemented */
    static const char *strict[] = { "llama-spm", "phi-3", "gpt-2", "falcon", "mpt", "starcoder", "refact",
                                    "deepseek-coder", "deepseek-llm" };
    for (size_t i = 0; i < sizeof strict / sizeof strict[0]; i++) {
        vec_result r;
        if (run_vectors(strict[i], NULL, &r, 1)) continue;
        printf("note: ggml-vocab-%s: %d/%d inputs match llama.cpp's ids, %d/%d decode back to the input\n", strict[i],
               r.match, r.n, r.roundtrip, r.n);
        CHECK(r.n == 46, "%s: 46 test inputs, found %d", strict[i], r.n);
        CHECK(r.match == r.n, "%s: %d of %d inputs match", strict[i], r.match, r.n);
        CHECK(r.roundtrip == r.n, "%s: %d of %d inputs decode back to the input", strict[i], r.roundtrip, r.n);
    }
    /* WordPiece (BERT): ids must match; the text is lowercased and accent-stripped, so no round trip */
    {
        vec_result r;
        if (run_vectors("bert-bge", NULL, &r, 1) == 0) {
            printf("note: ggml-vocab-bert-bge: %d/%d inputs match llama.cpp's ids\n", r.match, r.n);
            CHECK(r.n == 46 && r.match == r.n, "bert-bge: %d of %d inputs match", r.match, r.n);
        }
    }
}

/* Llama-3's byte-level BPE (pre "llama-bpe": llama3 regex + ignore_merges): llama.cpp's
 * llama-bpe vectors on a GGUF built here from the Llama-3.2 encoder.json/vocab.bpe fixture
 * (llama.cpp's own ggml-vocab-llama-bpe.gguf is too large for the fixtures). */
static void test_llama3_vectors(void) {
    char p[512];
    snprintf(p, sizeof p, "%s/fixtures/tokenizers/llama-3.2/encoder.json", g_shared);
    cJSON *enc = NULL;
    pl_err err = { 0 };
    if (pl_json_load(p, 16 << 20, &enc, &err) != PL_OK) {
        CHECK(0, "load %s: %s", p, err.msg);
        return;
    }
    enum { NB = 128000, NT = 128002 };
    const char **toks = calloc(NT, sizeof *toks);
    int32_t *types = malloc(NT * sizeof *types);
    int bad = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, enc) {
        int id = it->valueint;
        if (id < 0 || id >= NB || toks[id]) bad++;
        else toks[id] = it->string;
    }
    for (int i = 0; i < NB; i++) {
        if (!toks[i]) bad++;
        types[i] = 1;
    }
    toks[NB] = "<|begin_of_text|>";
    toks[NB + 1] = "<|end_of_text|>";
    types[NB] = types[NB + 1] = 3;
    CHECK(bad == 0, "encoder.json holds ids 0..%d exactly once (%d problems)", NB - 1, bad);
    size_t ml;
    snprintf(p, sizeof p, "%s/fixtures/tokenizers/llama-3.2/vocab.bpe", g_shared);
    char *mtext = slurp(p, &ml);
    CHECK(mtext != NULL, "read %s", p);
    if (bad || !mtext) {
        free(mtext);
        free(toks);
        free(types);
        cJSON_Delete(enc);
        return;
    }
    /* one merge per line; no header, and lines starting with '#' are merges too */
    int nm = 0;
    for (size_t i = 0; i < ml; i++) nm += mtext[i] == '\n';
    const char **merges = malloc((size_t)(nm + 1) * sizeof *merges);
    int k = 0;
    for (char *q = mtext; *q;) {
        char *e = strchr(q, '\n');
        if (e) *e = '\0';
        if (*q) merges[k++] = q;
        if (!e) break;
        q = e + 1;
    }
    CHECK(k == 280147, "vocab.bpe: %d merges", k);
    gw w = { 0 };
    kv_str(&w, "tokenizer.ggml.model", "gpt2");
    kv_str(&w, "tokenizer.ggml.pre", "llama-bpe");
    kv_strs(&w, "tokenizer.ggml.tokens", toks, NT);
    kv_i32s(&w, "tokenizer.ggml.token_type", types, NT);
    kv_strs(&w, "tokenizer.ggml.merges", merges, k);
    kv_u32(&w, "tokenizer.ggml.bos_token_id", NB);
    kv_u32(&w, "tokenizer.ggml.eos_token_id", NB + 1);
    snprintf(p, sizeof p, "%s/llama3.gguf", g_tmp);
    int wrc = write_gguf(p, &w);
    free(merges);
    free(mtext);
    free(toks);
    free(types);
    cJSON_Delete(enc);
    CHECK(wrc == 0, "write %s", p);
    if (wrc) return;
    vec_result r;
    if (run_vectors("llama-bpe", p, &r, 1)) return;
    printf("note: ggml-vocab-llama-bpe (Llama-3.2 vocabulary, pre llama-bpe): %d/%d inputs match llama.cpp's ids, "
           "%d/%d decode back to the input\n",
           r.match, r.n, r.roundtrip, r.n);
    CHECK(r.n == 46 && r.match == r.n && r.roundtrip == r.n, "llama-bpe: %d/%d match, %d round trips", r.match, r.n,
          r.roundtrip);
}

/* phi-3: user-defined "</s>" and control "<|user|>" tokens, chat template. */
static void test_phi3_specials(void) {
    char p[512];
    snprintf(p, sizeof p, "%s/fixtures/llamacpp-vocab/ggml-vocab-phi-3.gguf", g_shared);
    pl_gguf *g = NULL;
    pl_err err = { 0 };
    if (pl_gguf_open(&g, p, &err) != PL_OK) {
        CHECK(0, "open %s: %s", p, err.msg);
        return;
    }
    pl_tokenizer *t = NULL;
    int rc = pl_tokenizer_from_gguf(&t, g, &err);
    pl_gguf_close(g);
    CHECK(rc == PL_OK, "phi-3: %s", err.msg);
    if (rc) return;
    CHECK(pl_tokenizer_bos(t) == 1 && pl_tokenizer_eos(t) == 32000 && pl_tokenizer_add_bos(t) == 1,
          "phi-3 bos/eos/add_bos: %d %d %d", pl_tokenizer_bos(t), pl_tokenizer_eos(t), pl_tokenizer_add_bos(t));
    const char *ct = pl_tokenizer_chat_template(t);
    CHECK(ct && strstr(ct, "<|user|>"), "phi-3 chat template");
    int user = pl_tokenizer_find(t, "<|user|>");
    CHECK(user == 32010, "<|user|> is 32010, found %d", user);
    const char *s = "<|user|>\nHi";
    int32_t *ids = NULL;
    int n = 0;
    rc = pl_tokenizer_encode(t, s, strlen(s), 1, 1, &ids, &n, &err);
    CHECK(rc == PL_OK && n >= 3 && ids[0] == 1 && ids[1] == user, "parse_special: BOS then <|user|>");
    free(ids);
    rc = pl_tokenizer_encode(t, s, strlen(s), 0, 0, &ids, &n, &err);
    int found = 0;
    for (int i = 0; i < n; i++) found |= ids[i] == user;
    CHECK(rc == PL_OK && !found && n > 3, "no parse_special: <|user|> is text");
    size_t dn;
    char *d = decode_all(t, ids, n, 0, &dn);
    CHECK(d && dn == strlen(s) && memcmp(d, s, dn) == 0, "no parse_special: decodes back: '%s'", d ? d : "");
    free(d);
    free(ids);
    /* plain text "<s>" is never the BOS token */
    rc = pl_tokenizer_encode(t, "<s>", 3, 0, 0, &ids, &n, &err);
    found = 0;
    for (int i = 0; i < n; i++) found |= ids[i] == 1;
    CHECK(rc == PL_OK && !found, "text '<s>' does not become BOS");
    free(ids);
    char buf[64];
    CHECK(pl_tokenizer_decode(t, 5, user, 0, buf, sizeof buf) == 0, "control token decodes to nothing");
    CHECK(pl_tokenizer_decode(t, 5, user, 1, buf, sizeof buf) == 8 && !memcmp(buf, "<|user|>", 8),
          "control token with render_special");
    pl_tokenizer_free(t);
}


/* pl_tokenizer_encode_offsets: same ids as encode; offsets non-decreasing, inside the text, and each
 * token's decoded text starts at its offset (GGUF byte-level, tokenizer.json SentencePiece-style). */
static void test_offsets(void) {
    char p[512];
    const char *paths[3];
    char p2[512], p3[512];
    snprintf(p, sizeof p, "%s/fixtures/llamacpp-vocab/ggml-vocab-gpt-2.gguf", g_shared);
    snprintf(p2, sizeof p2, "%s/fixtures/tokenizers/phi-3-mini", g_shared);
    snprintf(p3, sizeof p3, "%s/fixtures/llama2c/tokenizer.bin", g_shared);
    paths[0] = p;
    paths[1] = p2;
    paths[2] = p3;
    const char *text = "Hello <|user|> wörld  12345\n\tcode();";
    size_t tl = strlen(text);
    for (int k = 0; k < 3; k++) {
        pl_tokenizer *t = NULL;
        pl_err err = { 0 };
        if (pl_tokenizer_load(&t, paths[k], &err) != PL_OK) {
            CHECK(0, "load %s: %s", paths[k], err.msg);
            continue;
        }
        int32_t *a = NULL, *b = NULL, *o = NULL;
        int na = 0, nb = 0;
        int rc1 = pl_tokenizer_encode(t, text, tl, 1, 1, &a, &na, &err);
        int rc2 = pl_tokenizer_encode_offsets(t, text, tl, 1, 1, &b, &o, &nb, &err);
        CHECK(rc1 == PL_OK && rc2 == PL_OK && ids_equal(a, na, b, nb), "%s: encode_offsets gives encode's ids", paths[k]);
        int mono = 1, starts = 0, inside = 1;
        for (int i = 0; rc2 == PL_OK && i < nb; i++) {
            if (o[i] < 0 || (size_t)o[i] > tl) inside = 0;
            if (i && o[i] < o[i - 1]) mono = 0;
            if (i && o[i] > o[i - 1]) starts++;
        }
        CHECK(mono && inside && starts > 5, "%s: offsets in range and non-decreasing (%d distinct starts)", paths[k],
              starts);
        /* the first token after BOS starts at 0, the last token starts before the end */
        CHECK(nb > 2 && o[0] == 0 && o[nb - 1] < (int32_t)tl, "%s: first/last offsets", paths[k]);
        free(a);
        free(b);
        free(o);
        pl_tokenizer_free(t);
    }
    /* a control token's offset is where its text begins */
    pl_tokenizer *t = NULL;
    pl_err err = { 0 };
    if (pl_tokenizer_load(&t, p2, &err) == PL_OK) {
        int32_t *ids = NULL, *o = NULL;
        int n = 0;
        int rc = pl_tokenizer_encode_offsets(t, text, tl, 0, 1, &ids, &o, &n, &err);
        int at = -1;
        for (int i = 0; rc == PL_OK && i < n; i++)
            if (ids[i] == 32010) at = o[i];
        CHECK(at == 6, "phi-3 tokenizer.json: <|user|> at byte 6 (found %d)", at);
        free(ids);
        free(o);
        pl_tokenizer_free(t);
    }
}

/* ------------------------------------------------------------ SmolLM2 */

static void test_smollm2(void) {
    const char *model = check_env("POTLUCK_MODEL");
    struct stat st;
    if (stat(model, &st) != 0) {
        CHECK(0, "POTLUCK_MODEL=%s does not exist", model);
        return;
    }
    pl_gguf *g = NULL;
    pl_err err = { 0 };
    if (pl_gguf_open(&g, model, &err) != PL_OK) {
        CHECK(0, "open %s: %s", model, err.msg);
        return;
    }
    pl_tokenizer *t = NULL;
    int rc = pl_tokenizer_from_gguf(&t, g, &err);
    pl_gguf_close(g);
    CHECK(rc == PL_OK, "SmolLM2 tokenizer: %s", err.msg);
    if (rc) return;
    int known = 0;
    CHECK(pl_tokenizer_kind(t) == PL_TOK_BPE && pl_tokenizer_vocab(t) == 49152, "SmolLM2: gpt2 kind, 49152 tokens");
    CHECK(strcmp(pl_tokenizer_pre(t, &known), "smollm") == 0 && known, "pre smollm is implemented");
    CHECK(pl_tokenizer_bos(t) == 1 && pl_tokenizer_eos(t) == 2 && pl_tokenizer_add_bos(t) == 0,
          "SmolLM2 bos 1, eos 2, no add_bos");
    const char *ct = pl_tokenizer_chat_template(t);
    CHECK(ct && strstr(ct, "<|im_start|>"), "SmolLM2 chat template mentions <|im_start|>");
    int ims = pl_tokenizer_find(t, "<|im_start|>");
    CHECK(ims == 1, "<|im_start|> is id 1, found %d", ims);

    /* digits are split one by one (smollm pre-tokenizer) */
    const char *hello = "Hello, world! 12345";
    int32_t *ids = NULL;
    int n = 0;
    rc = pl_tokenizer_encode(t, hello, strlen(hello), 0, 0, &ids, &n, &err);
    CHECK(rc == PL_OK, "encode: %s", err.msg);
    int digits = 0;
    char buf[256];
    for (int i = 0; rc == PL_OK && i < n; i++) {
        int k = pl_tokenizer_decode(t, i ? ids[i - 1] : -1, ids[i], 0, buf, sizeof buf);
        if (k == 1 && buf[0] >= '1' && buf[0] <= '5') digits++;
    }
    CHECK(digits == 5, "'12345' is five one-digit tokens (found %d)", digits);
    CHECK(rc == PL_OK && n == 10, "'%s' is 10 tokens, found %d", hello, n);
    free(ids);

    static const char *strs[] = {
        "Hello, world! 12345",
        "Café — 東京は首都です。Привет, мир! 🙂",
        "  two  spaces,\ttab\n\nnewlines\r\n and trailing   ",
        "naïve façade, Ελληνικά, עברית, हिन्दी, 😀👍🏽",
        "<|im_start|>user\nnot special here<|im_end|>",
        "invalid utf-8: \xc3( \xe2\x82 \x80\x80 end",
    };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        rc = pl_tokenizer_encode(t, strs[i], strlen(strs[i]), 0, 0, &ids, &n, &err);
        size_t dn;
        char *d = rc == PL_OK ? decode_all(t, ids, n, 0, &dn) : NULL;
        CHECK(d && dn == strlen(strs[i]) && memcmp(d, strs[i], dn) == 0, "SmolLM2 round trip %zu: '%s'", i,
              d ? d : "");
        free(d);
        free(ids);
    }
    /* <|im_start|> is one id only with parse_special */
    const char *chat = "<|im_start|>user\nHi<|im_end|>\n";
    rc = pl_tokenizer_encode(t, chat, strlen(chat), 0, 1, &ids, &n, &err);
    CHECK(rc == PL_OK && n >= 4 && ids[0] == 1 && ids[n - 2] == 2, "parse_special=1: <|im_start|> ... <|im_end|>");
    size_t dn;
    char *d = rc == PL_OK ? decode_all(t, ids, n, 1, &dn) : NULL;
    CHECK(d && dn == strlen(chat) && memcmp(d, chat, dn) == 0, "render_special decodes the chat back");
    free(d);
    d = rc == PL_OK ? decode_all(t, ids, n, 0, &dn) : NULL;
    CHECK(d && strcmp(d, "user\nHi\n") == 0, "without render_special control tokens vanish: '%s'", d ? d : "");
    free(d);
    free(ids);
    rc = pl_tokenizer_encode(t, chat, strlen(chat), 0, 0, &ids, &n, &err);
    int found = 0;
    for (int i = 0; rc == PL_OK && i < n; i++) found |= ids[i] == 1 || ids[i] == 2;
    CHECK(rc == PL_OK && !found && n > 6, "parse_special=0: <|im_start|> is plain text (%d tokens)", n);
    free(ids);
    /* add_bos with a BOS id prepends it even though the model does not ask for one */
    rc = pl_tokenizer_encode(t, "Hi", 2, 1, 0, &ids, &n, &err);
    CHECK(rc == PL_OK && n >= 2 && ids[0] == 1, "add_bos=1 prepends BOS");
    free(ids);

    /* llama.cpp's own ids for the fixed SmolLM2 prompts (tests/interop/smollm2_llamacpp.py) */
    const char *refs = check_env("POTLUCK_REFS");
    char rp[512];
    snprintf(rp, sizeof rp, "%s/smollm2_llamacpp/prompts.json", refs);
    cJSON *js = NULL;
    rc = pl_json_load(rp, 64 << 20, &js, &err);
    CHECK(rc == PL_OK, "peer reference %s: %s (run: bash tests/refs.sh smollm2_llamacpp)", rp, err.msg);
    if (rc == PL_OK) {
        int add_bos = 0;
        pl_json_bool(js, "add_bos", rp, &add_bos, &err);
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(js, "prompts");
        int np = 0, match = 0;
        const cJSON *pr;
        cJSON_ArrayForEach(pr, arr) {
            const char *text = NULL;
            const cJSON *pid = cJSON_GetObjectItemCaseSensitive(pr, "prompt_ids");
            if (pl_json_str(pr, "text", rp, &text, &err) || !cJSON_IsArray(pid)) continue;
            np++;
            rc = pl_tokenizer_encode(t, text, strlen(text), add_bos, 1, &ids, &n, &err);
            int ne = cJSON_GetArraySize(pid), ok = rc == PL_OK && ne == n;
            for (int i = 0; ok && i < n; i++) ok = cJSON_GetArrayItem(pid, i)->valueint == ids[i];
            match += ok;
            if (!ok) {
                fprintf(stderr, "  SmolLM2 prompt %d differs from llama.cpp: '%s'\n", np - 1, text);
                print_ids("got", ids, n);
            }
            free(ids);
        }
        printf("note: SmolLM2: %d/%d prompts tokenize exactly as llama.cpp does (parse_special)\n", match, np);
        CHECK(np == 8 && match == np, "SmolLM2 prompts: %d of %d match llama.cpp", match, np);
        cJSON_Delete(js);
    }
    pl_tokenizer_free(t);
}

/* ------------------------------------------------------------ hostile files */

/* Write the header + kv bytes of w to a file and load a tokenizer from it. */
static int load_synth(gw *w, const char *name, pl_tokenizer **t, pl_err *err) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.gguf", g_tmp, name);
    write_gguf(path, w);
    pl_gguf *g = NULL;
    *t = NULL;
    int rc = pl_gguf_open(&g, path, err);
    if (rc) return 1000 + rc; /* the GGUF reader refused it: not what these cases test */
    rc = pl_tokenizer_from_gguf(t, g, err);
    pl_gguf_close(g);
    return rc;
}

static const char *bpe_toks[] = { "a", "b", "c", "ab", "abc", "Ġ", "Ġa", "<|end|>" };
static const char *bpe_merges[] = { "a b", "ab c", "Ġ a" };

static void synth_bpe(gw *w) {
    kv_str(w, "tokenizer.ggml.model", "gpt2");
    kv_str(w, "tokenizer.ggml.pre", "gpt-2");
    kv_strs(w, "tokenizer.ggml.tokens", bpe_toks, 8);
}

/* pl_tokenizer_fingerprint: the same vocabulary read from a GGUF and from the
 * tokenizer.json potluck writes from it gives the same fingerprint; another
 * vocabulary, and the same vocabulary with one token's text changed, do not. */
static void test_fingerprint(void) {
    const char *model = check_env("POTLUCK_MODEL");
    pl_err err = {0};
    pl_gguf *g = NULL;
    if (pl_gguf_open(&g, model, &err)) { CHECK(0, "open %s: %s", model, err.msg); return; }
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/fp-smollm2", g_tmp);
    mkdir(dir, 0755);
    pl_tokenizer *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    int rc = pl_tokenizer_from_gguf(&a, g, &err);
    if (!rc) rc = pl_tokenizer_gguf_write_hf(g, dir, 0, &err);
    pl_gguf_close(g);
    if (!rc) rc = pl_tokenizer_load(&b, dir, &err);
    CHECK(rc == 0, "SmolLM2 from GGUF and as written tokenizer.json: %s", err.msg);
    char fa[65] = "", fb[65] = "", fc[65] = "", fd[65] = "", fa2[65] = "";
    if (!rc) {
        CHECK(pl_tokenizer_fingerprint(a, fa, &err) == 0 && strlen(fa) == 64, "fingerprint GGUF: %s", err.msg);
        CHECK(pl_tokenizer_fingerprint(a, fa2, &err) == 0 && !strcmp(fa, fa2), "fingerprint twice: the same");
        CHECK(pl_tokenizer_fingerprint(b, fb, &err) == 0, "fingerprint tokenizer.json: %s", err.msg);
        CHECK(!strcmp(fa, fb), "GGUF %s and its tokenizer.json %s: the same fingerprint", fa, fb);
    }
    /* two tokens' ids swapped in the tokenizer.json ("hello" <-> "world"):
     * same size, same pieces, other ids */
    char p[4300];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    cJSON *j = NULL;
    if (!rc && !pl_json_load(p, 64u << 20, &j, &err)) {
        cJSON *vocab = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "model"), "vocab");
        cJSON *h = cJSON_GetObjectItem(vocab, "hello"), *w = cJSON_GetObjectItem(vocab, "world");
        if (cJSON_IsNumber(h) && cJSON_IsNumber(w)) {
            double t = h->valuedouble;
            cJSON_SetNumberValue(h, w->valuedouble);
            cJSON_SetNumberValue(w, t);
            char *txt = cJSON_PrintUnformatted(j);
            pl_err e2 = {0};
            CHECK(txt && pl_write_file_atomic(p, txt, strlen(txt), &e2) == 0, "write the edited tokenizer.json: %s", e2.msg);
            free(txt);
            if (!pl_tokenizer_load(&c, dir, &e2)) {
                CHECK(pl_tokenizer_vocab(c) == pl_tokenizer_vocab(a), "edited vocabulary keeps its size");
                CHECK(pl_tokenizer_fingerprint(c, fc, &e2) == 0 && strcmp(fc, fa), "two ids swapped: another fingerprint");
            } else CHECK(0, "edited tokenizer.json: %s", e2.msg);
        } else CHECK(0, "SmolLM2 vocabulary has no \"hello\"/\"world\" to swap");
        cJSON_Delete(j);
    }
    snprintf(p, sizeof p, "%s/fixtures/tokenizers/gpt2", g_shared);
    if (!pl_tokenizer_load(&d, p, &err)) {
        CHECK(pl_tokenizer_fingerprint(d, fd, &err) == 0 && strcmp(fd, fa), "GPT-2: another fingerprint");
    } else CHECK(0, "gpt2: %s", err.msg);
    pl_tokenizer_free(a);
    pl_tokenizer_free(b);
    pl_tokenizer_free(c);
    pl_tokenizer_free(d);
}

static void test_hostile_gguf(void) {
    pl_err err = { 0 };
    pl_tokenizer *t = NULL;
    gw w = { 0 };
    int rc;

    /* a valid tiny byte-level BPE vocabulary */
    synth_bpe(&w);
    kv_strs(&w, "tokenizer.ggml.merges", bpe_merges, 3);
    int32_t types[8] = { 1, 1, 1, 1, 1, 1, 1, 3 };
    kv_i32s(&w, "tokenizer.ggml.token_type", types, 8);
    kv_u32(&w, "tokenizer.ggml.eos_token_id", 7);
    rc = load_synth(&w, "ok", &t, &err);
    CHECK(rc == PL_OK, "synthetic gpt2 vocab: %d %s", rc, err.msg);
    if (rc == PL_OK) {
        int32_t *ids = NULL;
        int n = 0;
        rc = pl_tokenizer_encode(t, "abc a<|end|>", 12, 1, 1, &ids, &n, &err);
        CHECK(rc == PL_OK && n == 3 && ids[0] == 4 && ids[1] == 6 && ids[2] == 7,
              "synthetic: 'abc a<|end|>' -> abc, Ġa, <|end|> (n=%d)", n);
        CHECK(pl_tokenizer_bos(t) == -1 && pl_tokenizer_add_bos(t) == 0 && pl_tokenizer_eos(t) == 7,
              "synthetic: no BOS");
        free(ids);
        /* bytes the vocabulary lacks are dropped, never out of range */
        rc = pl_tokenizer_encode(t, "xyz\xff", 4, 0, 0, &ids, &n, &err);
        CHECK(rc == PL_OK && n == 0, "unknown bytes with no unknown token: n=%d", n);
        free(ids);
        pl_tokenizer_free(t);
    }

    /* tokens is not an array of strings */
    kv_str(&w, "tokenizer.ggml.model", "gpt2");
    kv_str(&w, "tokenizer.ggml.tokens", "abc");
    rc = load_synth(&w, "tok_str", &t, &err);
    CHECK(rc == PL_EFORMAT && !t && strstr(err.msg, "tokenizer.ggml.tokens"), "tokens as a string: %d %s", rc,
          err.msg);

    /* scores shorter than tokens */
    kv_str(&w, "tokenizer.ggml.model", "llama");
    kv_strs(&w, "tokenizer.ggml.tokens", bpe_toks, 8);
    float sc[3] = { 0, -1, -2 };
    kv_f32s(&w, "tokenizer.ggml.scores", sc, 3);
    rc = load_synth(&w, "short_scores", &t, &err);
    CHECK(rc == PL_EFORMAT && !t && strstr(err.msg, "scores"), "short scores: %d %s", rc, err.msg);

    /* token types as strings */
    kv_str(&w, "tokenizer.ggml.model", "llama");
    kv_strs(&w, "tokenizer.ggml.tokens", bpe_toks, 8);
    kv_strs(&w, "tokenizer.ggml.token_type", bpe_toks, 8);
    rc = load_synth(&w, "types_str", &t, &err);
    CHECK(rc == PL_EFORMAT && !t && strstr(err.msg, "token_type"), "string token types: %d %s", rc, err.msg);

    /* BOS id out of range */
    kv_str(&w, "tokenizer.ggml.model", "llama");
    kv_strs(&w, "tokenizer.ggml.tokens", bpe_toks, 8);
    kv_u32(&w, "tokenizer.ggml.bos_token_id", 8);
    rc = load_synth(&w, "bos_range", &t, &err);
    CHECK(rc == PL_ERANGE && !t && strstr(err.msg, "bos_token_id"), "bos out of range: %d %s", rc, err.msg);

    /* merges without a space */
    static const char *bad_merges[] = { "a b", "abc" };
    synth_bpe(&w);
    kv_strs(&w, "tokenizer.ggml.merges", bad_merges, 2);
    rc = load_synth(&w, "merge_nospace", &t, &err);
    CHECK(rc == PL_EFORMAT && !t && strstr(err.msg, "merges[1]"), "merge without a space: %d %s", rc, err.msg);

    /* merges missing for gpt2 */
    synth_bpe(&w);
    rc = load_synth(&w, "no_merges", &t, &err);
    CHECK(rc == PL_ENOTFOUND && !t, "gpt2 without merges: %d %s", rc, err.msg);

    /* add_bos_token true without a BOS id */
    synth_bpe(&w);
    kv_strs(&w, "tokenizer.ggml.merges", bpe_merges, 3);
    kv_bool(&w, "tokenizer.ggml.add_bos_token", 1);
    rc = load_synth(&w, "bos_missing", &t, &err);
    CHECK(rc == PL_EFORMAT && !t && strstr(err.msg, "add_bos_token"), "add_bos without bos: %d %s", rc, err.msg);

    /* add_bos_token of the wrong type */
    synth_bpe(&w);
    kv_strs(&w, "tokenizer.ggml.merges", bpe_merges, 3);
    kv_u32(&w, "tokenizer.ggml.add_bos_token", 1);
    rc = load_synth(&w, "bos_type", &t, &err);
    CHECK(rc == PL_EFORMAT && !t, "add_bos_token as uint32: %d %s", rc, err.msg);

    /* no tokenizer at all, and an unknown model */
    kv_str(&w, "general.architecture", "llama");
    rc = load_synth(&w, "no_tok", &t, &err);
    CHECK(rc == PL_ENOTFOUND && !t, "no tokenizer.ggml.model: %d %s", rc, err.msg);
    kv_str(&w, "tokenizer.ggml.model", "rwkv");
    kv_strs(&w, "tokenizer.ggml.tokens", bpe_toks, 8);
    rc = load_synth(&w, "rwkv", &t, &err);
    CHECK(rc == PL_EUNSUPPORTED && !t, "unknown model: %d %s", rc, err.msg);

    /* an unknown pre-tokenizer is refused with its name, the way out and the supported names
     * (GPT-2's pattern would give valid ids that are not the model's own) */
    kv_str(&w, "tokenizer.ggml.model", "gpt2");
    kv_str(&w, "tokenizer.ggml.pre", "some-future-model");
    kv_strs(&w, "tokenizer.ggml.tokens", bpe_toks, 8);
    kv_strs(&w, "tokenizer.ggml.merges", bpe_merges, 3);
    rc = load_synth(&w, "pre_unknown", &t, &err);
    CHECK(rc == PL_EUNSUPPORTED && !t && strstr(err.msg, "tokenizer.ggml.pre 'some-future-model' is not supported") &&
              strstr(err.msg, "tokenizer.json") && strstr(err.msg, "qwen2") && strstr(err.msg, "smollm") &&
              strstr(err.msg, "llama-bpe"),
          "unknown pre refused: %d %s", rc, err.msg);
    pl_tokenizer_free(t);
    /* a known one loads and says which */
    kv_str(&w, "tokenizer.ggml.model", "gpt2");
    kv_str(&w, "tokenizer.ggml.pre", "qwen2");
    kv_strs(&w, "tokenizer.ggml.tokens", bpe_toks, 8);
    kv_strs(&w, "tokenizer.ggml.merges", bpe_merges, 3);
    rc = load_synth(&w, "pre_qwen2", &t, &err);
    int known = 0;
    CHECK(rc == PL_OK && t && !strcmp(pl_tokenizer_pre(t, &known), "qwen2") && known, "known pre: %d %s", rc, err.msg);
    pl_tokenizer_free(t);

    /* an SPM vocabulary with an empty piece and a duplicate, no types, no scores */
    static const char *spm_toks[] = { "<unk>", "<s>", "</s>", "", "\xe2\x96\x81", "a", "\xe2\x96\x81" "a", "a",
                                      "<0x62>" };
    kv_str(&w, "tokenizer.ggml.model", "llama");
    kv_strs(&w, "tokenizer.ggml.tokens", spm_toks, 9);
    rc = load_synth(&w, "spm_odd", &t, &err);
    CHECK(rc == PL_OK, "odd SPM vocab: %d %s", rc, err.msg);
    if (rc == PL_OK) {
        int32_t *ids = NULL;
        int n = 0;
        rc = pl_tokenizer_encode(t, "ab", 2, 1, 0, &ids, &n, &err);
        CHECK(rc == PL_OK && n == 3 && ids[0] == 1 && ids[1] == 6 && ids[2] == 8, "odd SPM: BOS ▁a <0x62> (n=%d)", n);
        char buf[8];
        CHECK(n == 3 && pl_tokenizer_decode(t, 6, 8, 0, buf, sizeof buf) == 1 && buf[0] == 'b', "byte piece decodes");
        free(ids);
        /* 'c' has no byte token: the unknown token */
        rc = pl_tokenizer_encode(t, "c", 1, 0, 0, &ids, &n, &err);
        CHECK(rc == PL_OK && n == 2 && ids[0] == 4 && ids[1] == 0, "odd SPM: ▁ then <unk> (n=%d)", n);
        free(ids);
        pl_tokenizer_free(t);
    }
}

static void test_hostile_llama2c(void) {
    char src[512], path[512];
    snprintf(src, sizeof src, "%s/fixtures/stories260K/tok512.bin", g_shared);
    size_t len;
    char *b = slurp(src, &len);
    CHECK(b && len == 6227, "read tok512.bin");
    if (!b) return;
    pl_tokenizer *t = NULL;
    pl_err err = { 0 };
    int rc;
    /* the vocabulary is larger than the file */
    rc = pl_tokenizer_load_llama2c(&t, src, 513, &err);
    CHECK(rc == PL_EFORMAT && !t && strstr(err.msg, "token 512"), "vocab 513 on a 512-token file: %d %s", rc, err.msg);
    /* too small for the byte tokens */
    rc = pl_tokenizer_load_llama2c(&t, src, 100, &err);
    CHECK(rc == PL_EINVAL && !t, "vocab 100: %d %s", rc, err.msg);
    /* truncated at every few bytes */
    snprintf(path, sizeof path, "%s/trunc.bin", g_tmp);
    int all = 1;
    for (size_t cut = 0; cut < len; cut += 97) {
        write_bytes(path, b, cut);
        rc = pl_tokenizer_load_llama2c(&t, path, 512, &err);
        if (rc != PL_EFORMAT || t) all = 0;
        pl_tokenizer_free(t);
        t = NULL;
    }
    CHECK(all, "every truncation is a format error");
    /* a negative and a huge length */
    int32_t bad = -5;
    memcpy(b + 4 + 4, &bad, 4);
    write_bytes(path, b, len);
    rc = pl_tokenizer_load_llama2c(&t, path, 512, &err);
    CHECK(rc == PL_EFORMAT && !t && strstr(err.msg, "token 0"), "negative length: %d %s", rc, err.msg);
    bad = 0x7fffffff;
    memcpy(b + 4 + 4, &bad, 4);
    write_bytes(path, b, len);
    rc = pl_tokenizer_load_llama2c(&t, path, 512, &err);
    CHECK(rc == PL_EFORMAT && !t, "huge length: %d %s", rc, err.msg);
    rc = pl_tokenizer_load_llama2c(&t, "/nonexistent/tok.bin", 512, &err);
    CHECK(rc == PL_EIO && !t, "missing file: %d", rc);
    free(b);

    /* random bytes through every encoder never crash and stay in range */
    rc = pl_tokenizer_load_llama2c(&t, src, 512, &err);
    if (rc == PL_OK) {
        unsigned char junk[4096];
        uint32_t s = 12345;
        for (size_t i = 0; i < sizeof junk; i++) {
            s = s * 1103515245u + 12345u;
            junk[i] = (unsigned char)(s >> 16);
        }
        int32_t *ids = NULL;
        int n = 0, ok = 1;
        rc = pl_tokenizer_encode(t, (const char *)junk, sizeof junk, 1, 1, &ids, &n, &err);
        for (int i = 0; rc == PL_OK && i < n; i++) ok &= ids[i] >= 0 && ids[i] < 512;
        CHECK(rc == PL_OK && ok, "llama2c: random bytes encode in range");
        free(ids);
        rc = pl_tokenizer_encode(t, "", 0, 0, 0, &ids, &n, &err);
        CHECK(rc == PL_OK && n == 0 && ids != NULL, "empty text without BOS: no tokens");
        free(ids);
        pl_tokenizer_free(t);
    }
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

int main(void) {
    g_shared = check_env("POTLUCK_SHARED");
    snprintf(g_tmp, sizeof g_tmp, "/tmp/test_tokenizer.XXXXXX");
    if (!mkdtemp(g_tmp)) {
        fprintf(stderr, "FAIL: mkdtemp\n");
        return 1;
    }
    test_llama2c_32k();
    test_llama2c_tok512();
    test_offsets();
    test_vocab_vectors();
    test_llama3_vectors();
    test_sdist_vectors();
    test_phi3_specials();
    test_smollm2();
    test_fingerprint();
    test_hostile_gguf();
    test_hostile_llama2c();
    nftw(g_tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return check_summary("test_tokenizer");
}
