/* test_tokenizer_gguf.c: tokenizer.json / vocab.json tokenizers written as GGUF metadata encode and decode the same. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/gguf.h"
#include "../core/gguf_write.h"
#include "../core/json.h"
#include "../datasets/tokenizer.h"
#include "../datasets/tokenizer_gguf_write.h"
#include "../trainer/export.h"
#include "../trainer/model.h"
#include "check.h"

#include <sys/stat.h>

#define REQUIRE_VOID(c) do { if (!(c)) { CHECK(0, "%s", #c); return; } } while (0)

static const char *g_shared, *g_cache;

static char *slurp(const char *p, size_t *n) {
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long l = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)l + 1);
    if (b && fread(b, 1, (size_t)l, f) != (size_t)l) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[l] = '\0';
    *n = (size_t)l;
    return b;
}

typedef struct { char **s; size_t *n; int cnt, cap; } texts;

static void texts_add(texts *t, const char *p, size_t n) {
    if (t->cnt == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 256;
        t->s = realloc(t->s, (size_t)t->cap * sizeof *t->s);
        t->n = realloc(t->n, (size_t)t->cap * sizeof *t->n);
    }
    t->s[t->cnt] = malloc(n + 1);
    memcpy(t->s[t->cnt], p, n);
    t->s[t->cnt][n] = '\0';
    t->n[t->cnt++] = n;
}

/* the llama.cpp .inp vectors plus the first max_lines lines of the corpus */
static int load_texts(texts *t, int max_lines) {
    char p[1024];
    size_t n;
    snprintf(p, sizeof p, "%s/fixtures/llamacpp-vocab/ggml-vocab-llama-spm.gguf.inp", g_shared);
    char *inp = slurp(p, &n);
    if (!inp) return -1;
    static const char sep[] = "\n__ggml_vocab_test__\n";
    for (char *ip = inp;;) {
        char *e = strstr(ip, sep);
        if (!e) break;
        texts_add(t, ip, (size_t)(e - ip));
        ip = e + strlen(sep);
    }
    free(inp);
    int n_inp = t->cnt;
    snprintf(p, sizeof p, "%s/corpus/tok-corpus-v1.txt", g_cache);
    FILE *f = fopen(p, "rb");
    if (!f) return -1;
    char line[65536];
    for (int i = 0; i < max_lines && fgets(line, sizeof line, f); i++) texts_add(t, line, strlen(line));
    fclose(f);
    return n_inp;
}

static void texts_free(texts *t) {
    for (int i = 0; i < t->cnt; i++) free(t->s[i]);
    free(t->s);
    free(t->n);
}

/* added tokens of a tokenizer.json with lstrip/rstrip (GGUF cannot say so) */
static int strip_tokens(const char *dir, char ***out) {
    char p[1100];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    *out = NULL;
    cJSON *j = NULL;
    pl_err err = {0};
    if (access(p, R_OK) || pl_json_load(p, 64u << 20, &j, &err)) return 0;
    int k = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "added_tokens")) {
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "lstrip")) &&
            !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "rstrip")))
            continue;
        *out = realloc(*out, (size_t)(k + 1) * sizeof **out);
        (*out)[k++] = strdup(cJSON_GetObjectItemCaseSensitive(it, "content")->valuestring);
    }
    cJSON_Delete(j);
    return k;
}

static char *decode_all(const pl_tokenizer *t, const int32_t *ids, int n, size_t *len) {
    size_t cap = (size_t)n * (size_t)pl_tokenizer_max_piece_bytes(t) + 1, o = 0;
    char *b = malloc(cap);
    for (int i = 0; i < n; i++) o += (size_t)pl_tokenizer_decode(t, i ? ids[i - 1] : -1, ids[i], 0, b + o, cap - o);
    b[o] = '\0';
    *len = o;
    return b;
}

static void run_case(const char *name, const char *kind, const texts *tx, int n_inp) {
    char dir[1024], out[256];
    snprintf(dir, sizeof dir, "%s/fixtures/tokenizers/%s", g_shared, name);
    snprintf(out, sizeof out, "/tmp/test_tokenizer_gguf_%d_%s.gguf", (int)getpid(), name);
    pl_err err = {0};
    pl_tokenizer *a = NULL, *b = NULL;
    pl_gguf *g = NULL;
    pl_gguf_writer *w = NULL;
    int rc = pl_tokenizer_load(&a, dir, &err);
    CHECK(rc == PL_OK, "%s: load: %s", name, err.msg);
    if (rc) return;
    w = pl_gguf_writer_new();
    rc = pl_tokenizer_to_gguf(a, w, 0, name, &err);
    CHECK(rc == PL_OK, "%s: to_gguf: %s", name, err.msg);
    if (!rc) {
        rc = pl_gguf_writer_write(w, out, &err);
        CHECK(rc == PL_OK, "%s: write: %s", name, err.msg);
    }
    if (!rc) {
        rc = pl_gguf_open(&g, out, &err);
        CHECK(rc == PL_OK, "%s: open: %s", name, err.msg);
    }
    if (!rc) {
        const pl_gguf_kv *mk = pl_gguf_get(g, "tokenizer.ggml.model");
        CHECK(mk && mk->type == PL_GGUF_STRING && mk->str.len == strlen(kind) && !memcmp(mk->str.ptr, kind, mk->str.len),
              "%s: tokenizer.ggml.model is %s", name, kind);
        rc = pl_tokenizer_from_gguf(&b, g, &err);
        CHECK(rc == PL_OK, "%s: from_gguf: %s", name, err.msg);
    }
    if (!rc) {
        int kn;
        CHECK(pl_tokenizer_kind(a) == pl_tokenizer_kind(b), "%s: kind", name);
        CHECK(pl_tokenizer_vocab(a) == pl_tokenizer_vocab(b), "%s: vocab %d vs %d", name, pl_tokenizer_vocab(a),
              pl_tokenizer_vocab(b));
        CHECK(pl_tokenizer_bos(a) == pl_tokenizer_bos(b) && pl_tokenizer_eos(a) == pl_tokenizer_eos(b),
              "%s: bos/eos %d/%d vs %d/%d", name, pl_tokenizer_bos(a), pl_tokenizer_eos(a), pl_tokenizer_bos(b),
              pl_tokenizer_eos(b));
        CHECK(pl_tokenizer_add_bos(a) == pl_tokenizer_add_bos(b), "%s: add_bos", name);
        const char *ca = pl_tokenizer_chat_template(a), *cb = pl_tokenizer_chat_template(b);
        CHECK((!ca && !cb) || (ca && cb && !strcmp(ca, cb)), "%s: chat template", name);
        if (pl_tokenizer_kind(b) == PL_TOK_BPE) {
            pl_tokenizer_pre(b, &kn);
            CHECK(kn, "%s: pre '%s' is known", name, pl_tokenizer_pre(b, NULL));
        }
        int same_piece = 1;
        for (int i = 0; i < pl_tokenizer_vocab(a) && i < pl_tokenizer_vocab(b); i++)
            same_piece &= !strcmp(pl_tokenizer_piece(a, i), pl_tokenizer_piece(b, i));
        CHECK(same_piece, "%s: every piece is the same", name);
        char **strip = NULL;
        int nstrip = strip_tokens(dir, &strip);
        int cmp = 0, bad_ids = 0, bad_dec = 0, skipped = 0;
        for (int i = 0; i < tx->cnt; i++) {
            int sk = 0;
            for (int s = 0; s < nstrip; s++) sk |= strstr(tx->s[i], strip[s]) != NULL;
            /* three settings: plain (as test-tokenizer-0), with BOS, with special tokens */
            for (int mode = 0; mode < 3; mode++) {
                int ab = mode == 1, ps = mode == 2;
                if (sk) {
                    skipped++;
                    continue;
                }
                int32_t *ia = NULL, *ib = NULL;
                int na = 0, nb = 0;
                int r1 = pl_tokenizer_encode(a, tx->s[i], tx->n[i], ab, ps, &ia, &na, &err);
                int r2 = pl_tokenizer_encode(b, tx->s[i], tx->n[i], ab, ps, &ib, &nb, &err);
                cmp++;
                int ok = r1 == PL_OK && r2 == PL_OK && na == nb && (!na || !memcmp(ia, ib, (size_t)na * sizeof *ia));
                if (!ok) {
                    if (bad_ids < 3)
                        fprintf(stderr, "  %s: text %d (%s, mode %d) '%.60s': %d vs %d ids\n", name, i,
                                i < n_inp ? "inp" : "corpus", mode, tx->s[i], na, nb);
                    bad_ids++;
                } else if (mode == 0) {
                    size_t la, lb;
                    char *da = decode_all(a, ia, na, &la), *db = decode_all(b, ib, nb, &lb);
                    if (la != lb || memcmp(da, db, la)) {
                        if (bad_dec < 3) fprintf(stderr, "  %s: text %d decode '%.60s' vs '%.60s'\n", name, i, da, db);
                        bad_dec++;
                    }
                    free(da);
                    free(db);
                }
                free(ia);
                free(ib);
            }
        }
        CHECK(cmp > 300, "%s: %d comparisons", name, cmp);
        CHECK(bad_ids == 0, "%s: %d of %d encodings differ", name, bad_ids, cmp);
        CHECK(bad_dec == 0, "%s: %d decodes differ", name, bad_dec);
        printf("note: %s: %d encodings identical, %d decodes compared, %d skipped (lstrip/rstrip token in the text)\n", name,
               cmp - bad_ids, cmp / 3, skipped);
        for (int s = 0; s < nstrip; s++) free(strip[s]);
        free(strip);
    }
    pl_tokenizer_free(b);
    pl_tokenizer_free(a);
    if (g) pl_gguf_close(g);
    pl_gguf_writer_free(w);
    unlink(out);
}

/* A Hugging Face base (refs' hf_tiny/llama, vocab 300) with a small SentencePiece-style tokenizer.json
 * of 295 tokens: pl_export_gguf converts it (padding to 300 rows) when no GGUF tokenizer is given. */
static void export_case(const char *refs) {
    char dir[512], p[1100], out[600];
    snprintf(dir, sizeof dir, "/tmp/test_tokenizer_gguf_%d_hf", (int)getpid());
    snprintf(out, sizeof out, "%s.gguf", dir);
    mkdir(dir, 0755);
    static const char *files[] = { "config.json", "model.safetensors" };
    for (int i = 0; i < 2; i++) {
        char src[1100];
        snprintf(src, sizeof src, "%s/hf_tiny/llama/%s", refs, files[i]);
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        CHECK(symlink(src, p) == 0, "symlink %s", src);
    }
    /* vocab: <unk> <s> </s>, 256 byte pieces, U+2581, a..z, then merges' results */
    static const char *merges[][2] = { { "\u2581", "t" }, { "h", "e" }, { "\u2581t", "he" }, { "i", "n" },
                                       { "\u2581", "a" }, { "o", "n" }, { "e", "r" }, { "\u2581", "s" } };
    const int nm = (int)(sizeof merges / sizeof merges[0]);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    FILE *f = fopen(p, "w");
    REQUIRE_VOID(f);
    fprintf(f, "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"single_word\":false,"
               "\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},{\"id\":1,\"content\":\"<s>\","
               "\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},{\"id\":2,"
               "\"content\":\"</s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,"
               "\"special\":true}],\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\","
               "\"prepend\":\"\\u2581\"},{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"}]},"
               "\"pre_tokenizer\":null,\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":"
               "{\"id\":\"<s>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[],"
               "\"special_tokens\":{}},\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":"
               "{\"String\":\"\\u2581\"},\"content\":\" \"},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":"
               "\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]},\"model\":{\"type\":\"BPE\",\"dropout\":null,"
               "\"unk_token\":\"<unk>\",\"continuing_subword_prefix\":null,\"end_of_word_suffix\":null,\"fuse_unk\":true,"
               "\"byte_fallback\":true,\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2");
    int id = 3;
    for (int b = 0; b < 256; b++) fprintf(f, ",\"<0x%02X>\":%d", b, id++);
    fprintf(f, ",\"\\u2581\":%d", id++);
    for (char c = 'a'; c <= 'z'; c++) fprintf(f, ",\"%c\":%d", c, id++);
    for (int i = 0; i < nm; i++) fprintf(f, ",\"%s%s\":%d", merges[i][0], merges[i][1], id++);
    fprintf(f, "},\"merges\":[");
    for (int i = 0; i < nm; i++) fprintf(f, "%s\"%s %s\"", i ? "," : "", merges[i][0], merges[i][1]);
    fprintf(f, "]}}\n");
    fclose(f);
    CHECK(id == 294, "tiny tokenizer has %d tokens", id);

    pl_err err = {0};
    pl_model *m = NULL;
    pl_tokenizer *a = NULL, *b = NULL;
    pl_gguf *g = NULL;
    int rc = pl_model_load(&m, dir, NULL, &err);
    CHECK(rc == PL_OK, "load %s: %s", dir, err.msg);
    if (!rc) {
        rc = pl_export_gguf(m, out, NULL, &err);
        CHECK(rc == PL_OK, "GGUF export of an HF base with a tokenizer.json: %s", err.msg);
    }
    if (!rc) rc = pl_tokenizer_load(&a, dir, &err);
    if (!rc) rc = pl_gguf_open(&g, out, &err);
    if (!rc) rc = pl_tokenizer_from_gguf(&b, g, &err);
    CHECK(rc == PL_OK, "exported tokenizer reads back: %s", err.msg);
    if (!rc) {
        CHECK(pl_tokenizer_vocab(b) == 300 && !strcmp(pl_tokenizer_piece(b, 299), "[PAD299]"),
              "exported vocabulary padded to the model's 300 rows (%d)", pl_tokenizer_vocab(b));
        CHECK(pl_gguf_find_tensor(g, "token_embd.weight") != NULL, "exported tensors present");
        static const char *tx[] = { "the tin is on the mat", "Hé! <s>the\n", "  sat there " };
        for (int i = 0; i < 3; i++) {
            int32_t *ia = NULL, *ib = NULL;
            int na = 0, nb = 0;
            pl_tokenizer_encode(a, tx[i], strlen(tx[i]), 1, 1, &ia, &na, &err);
            pl_tokenizer_encode(b, tx[i], strlen(tx[i]), 1, 1, &ib, &nb, &err);
            CHECK(na > 2 && na == nb && !memcmp(ia, ib, (size_t)na * sizeof *ia), "exported tokenizer encodes '%s'", tx[i]);
            free(ia);
            free(ib);
        }
    }
    pl_tokenizer_free(a);
    pl_tokenizer_free(b);
    if (g) pl_gguf_close(g);
    pl_model_free(m);
    unlink(out);
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    unlink(p);
    rmdir(dir);
}

int main(void) {
    g_shared = check_env("POTLUCK_SHARED");
    g_cache = check_env("POTLUCK_CACHE");
    texts tx = {0};
    int n_inp = load_texts(&tx, 300);
    REQUIRE(n_inp > 10 && tx.cnt > n_inp + 250, "read the .inp vectors and the corpus (%d, %d)", n_inp, tx.cnt);
    run_case("phi-2", "gpt2", &tx, n_inp);
    run_case("gpt2", "gpt2", &tx, n_inp);
    run_case("phi-3-mini", "llama", &tx, n_inp);
    run_case("tiny-random-LlamaForCausalLM", "llama", &tx, n_inp);

    /* a model with more token rows than the tokenizer: llama.cpp's [PAD<id>] tokens */
    char p[1100];
    {
        snprintf(p, sizeof p, "%s/fixtures/tokenizers/tiny-random-LlamaForCausalLM", g_shared);
        pl_tokenizer *a = NULL, *b = NULL;
        pl_gguf *g = NULL;
        pl_err err = {0};
        char out[256];
        snprintf(out, sizeof out, "/tmp/test_tokenizer_gguf_%d_pad.gguf", (int)getpid());
        pl_gguf_writer *w = pl_gguf_writer_new();
        int rc = pl_tokenizer_load(&a, p, &err);
        if (!rc) rc = pl_tokenizer_to_gguf(a, w, pl_tokenizer_vocab(a) + 7, "tiny", &err);
        if (!rc) rc = pl_gguf_writer_write(w, out, &err);
        if (!rc) rc = pl_gguf_open(&g, out, &err);
        if (!rc) rc = pl_tokenizer_from_gguf(&b, g, &err);
        CHECK(rc == PL_OK, "padded: %s", err.msg);
        if (!rc) {
            int n = pl_tokenizer_vocab(a);
            char want[32];
            snprintf(want, sizeof want, "[PAD%d]", n + 6);
            CHECK(pl_tokenizer_vocab(b) == n + 7 && !strcmp(pl_tokenizer_piece(b, n + 6), want), "padded vocab");
            int ok = 1;
            for (int i = 0; i < 50 && i < tx.cnt; i++) {
                int32_t *ia = NULL, *ib = NULL;
                int na = 0, nb = 0;
                pl_tokenizer_encode(a, tx.s[i], tx.n[i], 1, 1, &ia, &na, &err);
                pl_tokenizer_encode(b, tx.s[i], tx.n[i], 1, 1, &ib, &nb, &err);
                ok &= na == nb && (!na || !memcmp(ia, ib, (size_t)na * sizeof *ia));
                free(ia);
                free(ib);
            }
            CHECK(ok, "padded vocabulary encodes as the tokenizer.json");
        }
        rc = a ? pl_tokenizer_to_gguf(a, w, pl_tokenizer_vocab(a) - 1, "tiny", &err) : -1;
        CHECK(rc == PL_ERANGE && strstr(err.msg, "token rows"), "fewer rows than tokens refused: %s", err.msg);
        pl_tokenizer_free(a);
        pl_tokenizer_free(b);
        if (g) pl_gguf_close(g);
        pl_gguf_writer_free(w);
        unlink(out);
    }

    export_case(check_env("POTLUCK_REFS"));

    /* refusals: a WordPiece GGUF vocabulary cannot be written */
    snprintf(p, sizeof p, "%s/fixtures/llamacpp-vocab/ggml-vocab-bert-bge.gguf", g_shared);
    pl_gguf *g = NULL;
    pl_tokenizer *t = NULL;
    pl_err err = {0};
    if (pl_gguf_open(&g, p, &err) == PL_OK && pl_tokenizer_from_gguf(&t, g, &err) == PL_OK) {
        pl_gguf_writer *w = pl_gguf_writer_new();
        int rc = pl_tokenizer_to_gguf(t, w, 0, "bert-bge", &err);
        CHECK(rc == PL_EUNSUPPORTED && strstr(err.msg, "WordPiece"), "bert refused: %d %s", rc, err.msg);
        pl_gguf_writer_free(w);
    } else {
        CHECK(0, "open %s: %s", p, err.msg);
    }
    pl_tokenizer_free(t);
    if (g) pl_gguf_close(g);
    texts_free(&tx);
    return check_summary("test_tokenizer_gguf");
}
