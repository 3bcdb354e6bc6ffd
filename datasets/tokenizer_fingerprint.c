/* tokenizer_fingerprint.c: a tokenizer's identity by behaviour, not by file:
 * two tokenizers with the same fingerprint give the same ids for every
 * probe text and the same bytes for every id, whatever file they were read
 * from (a GGUF's tokenizer.ggml.* keys, a tokenizer.json, a llama2.c .bin).
 * `potluck reproduce` at another size uses it to tell whether a bundle's
 * data and adapter fit a new base model's vocabulary.
 *
 * What is hashed, in order (integers as 4-byte little endian):
 *   "potluck-tokenizer-fingerprint-1", vocabulary size, BOS, EOS, add_bos;
 *   for every id: the bytes it decodes to in running text (after a plain
 *   token, special tokens rendered), length first;
 *   for every probe text below: its ids without BOS, count first. */
#include <stdlib.h>
#include <string.h>

#include "../core/sha256.h"
#include "tokenizer.h"

static const char *const probes[] = {
    "Hello world! The quick brown fox jumps over the lazy dog.",
    "  two spaces, a tab\there, and\nnew lines\n\n\nthree of them",
    "Numbers: 0 7 42 1234567 3.14159 -0.5e10 2026-12-07 1,000,000",
    "def f(x):\n    return {'a': [x ** 2 for x in range(10)]}  # comment\n",
    "Ünïcödé: café naïve façade Ωμέγα Привет мир",
    "中文测试，日本語のテキスト、한국어 문장입니다。",
    "emoji 🙂👍🏽 and symbols © ® ™ € £ ¥ — … «quotes»",
    "<s> </s> <|im_start|> [INST] not special in plain text [/INST]",
    "ALLCAPS lowercase MiXeD CamelCaseWords snake_case_words kebab-case",
    "don't won't I'm you're it's they'll we've",
};

static void put_u32(pl_sha256 *h, int64_t v) {
    uint32_t u = (uint32_t)v;
    uint8_t b[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    pl_sha256_update(h, b, 4);
}

int pl_tokenizer_fingerprint(const pl_tokenizer *t, char hex[65], pl_err *err) {
    int n = pl_tokenizer_vocab(t);
    int cap = pl_tokenizer_max_piece_bytes(t);
    if (n <= 0 || cap <= 0) return pl_err_set(err, PL_EINVAL, "tokenizer fingerprint: empty vocabulary");
    char *buf = malloc((size_t)cap + 1);
    pl_sha256 *h = pl_sha256_new();
    if (!buf || !h) {
        free(buf);
        if (h) { uint8_t d[32]; pl_sha256_final(h, d); }
        return pl_err_set(err, PL_ENOMEM, "tokenizer fingerprint: out of memory");
    }
    static const char tag[] = "potluck-tokenizer-fingerprint-1";
    pl_sha256_update(h, tag, sizeof tag - 1);
    put_u32(h, n);
    put_u32(h, pl_tokenizer_bos(t));
    put_u32(h, pl_tokenizer_eos(t));
    put_u32(h, pl_tokenizer_add_bos(t));
    /* "after a plain token": prev = the id of "a" where the vocabulary has
     * one, so SentencePiece keeps a piece's leading space */
    int prev = pl_tokenizer_find(t, "a");
    if (prev < 0) prev = pl_tokenizer_find(t, "\xe2\x96\x81" "a");
    if (prev < 0) prev = 0;
    for (int id = 0; id < n; id++) {
        int k = pl_tokenizer_decode(t, prev, id, 1, buf, (size_t)cap);
        if (k < 0) k = 0;
        put_u32(h, k);
        pl_sha256_update(h, buf, (size_t)k);
    }
    int rc = PL_OK;
    for (size_t i = 0; i < sizeof probes / sizeof probes[0] && !rc; i++) {
        int32_t *ids = NULL;
        int m = 0;
        rc = pl_tokenizer_encode(t, probes[i], strlen(probes[i]), 0, 0, &ids, &m, err);
        if (!rc) {
            put_u32(h, m);
            for (int j = 0; j < m; j++) put_u32(h, ids[j]);
        }
        free(ids);
    }
    uint8_t d[32];
    pl_sha256_final(h, d);
    free(buf);
    if (!rc) pl_sha256_hex(d, hex);
    return rc;
}
