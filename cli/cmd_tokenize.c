/* cmd_tokenize.c: `potluck tokenize`: encode stdin to token ids (or decode ids back to text) with any supported tokenizer. */
#include "cmd_tokenize.h"

#include <errno.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/error.h"
#include "../datasets/tokenizer.h"
#include "cli.h"

static const char usage[] =
    "usage: potluck tokenize --model PATH [--lines] [--no-special] [--no-parse-special] [--decode]\n"
    "       potluck tokenize --model PATH --bench FILE [--threads N]\n"
    "\n"
    "Reads text on stdin and writes its token ids, space-separated, on one line.\n"
    "  --model PATH        the model whose tokenizer to use: a GGUF file, a model folder (its\n"
    "                      tokenizer.json, or vocab.json + merges.txt), a model name found in\n"
    "                      $POTLUCK_MODELS, or a tokenizer file itself (tokenizer.json, a llama2.c\n"
    "                      tokenizer .bin); --tokenizer PATH is accepted as another spelling\n"
    "  --lines             encode each input line on its own (without its newline): one output line each\n"
    "  --no-special        add no BOS (by default BOS is added when the tokenizer asks for it)\n"
    "  --no-parse-special  special-token text such as <|im_start|> is tokenized as plain text\n"
    "                      (by default it becomes the special token, as Hugging Face does;\n"
    "                      llama.cpp's test vectors use --no-parse-special)\n"
    "  --decode            the reverse: stdin holds ids (whitespace-separated; with --lines one\n"
    "                      sequence per line) and the text is written; special tokens are written\n"
    "                      as their text unless --no-special\n"
    "  --bench FILE        measure encode speed instead: every line of FILE is a document,\n"
    "                      encoded with --threads N threads (default 1, documents split\n"
    "                      between threads); prints one JSON line {bytes, seconds, mb_per_s, tokens}\n"
    "Input that is not valid UTF-8 is still encoded, byte by byte, as byte-level and\n"
    "byte-fallback vocabularies allow.\n";

static char *read_all(FILE *f, size_t *n) {
    size_t cap = 1 << 16, len = 0;
    char *b = malloc(cap + 1);
    if (!b) return NULL;
    for (;;) {
        if (len == cap) {
            char *nb = realloc(b, cap * 2 + 1);
            if (!nb) {
                free(b);
                return NULL;
            }
            b = nb;
            cap *= 2;
        }
        size_t r = fread(b + len, 1, cap - len, f);
        len += r;
        if (r == 0) break;
    }
    b[len] = '\0';
    *n = len;
    return b;
}

static int encode_one(const pl_tokenizer *t, const char *s, size_t n, int bos, int parse, pl_err *err) {
    int32_t *ids = NULL;
    int k = 0;
    int rc = pl_tokenizer_encode(t, s, n, bos, parse, &ids, &k, err);
    if (rc) return rc;
    for (int i = 0; i < k; i++) printf(i ? " %d" : "%d", ids[i]);
    putchar('\n');
    free(ids);
    return PL_OK;
}

/* ids in s[0..n) -> text on stdout; *bad is set to the first bad id text */
static int decode_one(const pl_tokenizer *t, const char *s, size_t n, int render, char *buf, size_t cap, pl_err *err) {
    int prev = -1, vocab = pl_tokenizer_vocab(t);
    const char *p = s, *e = s + n;
    while (p < e) {
        while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
        if (p >= e) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v >= vocab || (end < e && !strchr(" \t\r\n", *end))) {
            int l = 0;
            while (p + l < e && !strchr(" \t\r\n", p[l]) && l < 20) l++;
            return pl_err_set(err, PL_EINVAL, "stdin: '%.*s' is not a token id (0..%d)", l, p, vocab - 1);
        }
        int k = pl_tokenizer_decode(t, prev, (int)v, render, buf, cap);
        fwrite(buf, 1, (size_t)k, stdout);
        prev = (int)v;
        p = end;
    }
    return PL_OK;
}

/* --bench: encode every line of file with nthreads threads, report MB/s (10^6 bytes of text per second) */
static int bench(const pl_tokenizer *t, const char *file, int nthreads, int parse) {
    FILE *f = fopen(file, "rb");
    if (!f) {
        fprintf(stderr, "potluck: tokenize: %s: cannot open: %s\n", file, strerror(errno));
        return 1;
    }
    size_t n = 0;
    char *in = read_all(f, &n);
    fclose(f);
    if (!in) {
        fprintf(stderr, "potluck: tokenize: %s: out of memory\n", file);
        return 1;
    }
    size_t nl = 0;
    for (size_t i = 0; i < n; i++) nl += in[i] == '\n';
    size_t *st = malloc((nl + 2) * sizeof *st), k = 0;
    if (!st) {
        free(in);
        return 1;
    }
    st[k++] = 0;
    for (size_t i = 0; i < n; i++)
        if (in[i] == '\n') st[k++] = i + 1;
    if (st[k - 1] < n) st[k++] = n + 1;
    long long tokens = 0;
    int failed = 0;
    long nd = (long)k - 1; /* documents */
    double t0 = omp_get_wtime();
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 64) reduction(+ : tokens, failed)
    for (long i = 0; i < nd; i++) {
        int32_t *ids = NULL;
        int c = 0;
        pl_err e = { 0 };
        if (pl_tokenizer_encode(t, in + st[i], st[i + 1] - 1 - st[i], 0, parse, &ids, &c, &e)) failed++;
        tokens += c;
        free(ids);
    }
    double sec = omp_get_wtime() - t0;
    printf("{\"bytes\": %zu, \"lines\": %zu, \"threads\": %d, \"seconds\": %.4f, \"mb_per_s\": %.3f, \"tokens\": %lld}\n", n,
           k - 1, nthreads, sec, (double)n / 1e6 / sec, tokens);
    free(st);
    free(in);
    if (failed) fprintf(stderr, "potluck: tokenize: --bench: %d lines failed to encode\n", failed);
    return failed ? 1 : 0;
}

int cmd_tokenize(int argc, char **argv) {
    const char *path = NULL, *bench_file = NULL;
    int threads = 1;
    int lines = 0, nospecial = 0, noparse = 0, decode = 0;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "--model") || !strcmp(argv[i], "--tokenizer")) && i + 1 < argc) path = argv[++i];
        else if (!strcmp(argv[i], "--lines")) lines = 1;
        else if (!strcmp(argv[i], "--no-special")) nospecial = 1;
        else if (!strcmp(argv[i], "--no-parse-special")) noparse = 1;
        else if (!strcmp(argv[i], "--decode")) decode = 1;
        else if (!strcmp(argv[i], "--bench") && i + 1 < argc) bench_file = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            threads = atoi(argv[++i]);
            if (threads < 1 || threads > 256) {
                fprintf(stderr, "potluck: tokenize: --threads must be 1..256, not '%s'\n", argv[i]);
                return 2;
            }
        }
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage, stdout);
            return 0;
        } else {
            fprintf(stderr, "potluck: tokenize: unknown or incomplete argument '%s'\n%s", argv[i], usage);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "potluck: tokenize: --model PATH is required\n%s", usage);
        return 2;
    }
    pl_err err = { 0 };
    pl_tokenizer *t = NULL;
    char *resolved = NULL;
    if (cli_model_path(path, &resolved, &err) || pl_tokenizer_load(&t, resolved, &err) != PL_OK) {
        free(resolved);
        fprintf(stderr, "potluck: tokenize: %s\n", err.msg);
        return 1;
    }
    free(resolved);
    if (bench_file) {
        int r = bench(t, bench_file, threads, !noparse);
        pl_tokenizer_free(t);
        return r;
    }
    size_t n = 0;
    char *in = read_all(stdin, &n);
    if (!in) {
        fprintf(stderr, "potluck: tokenize: cannot read stdin (out of memory)\n");
        pl_tokenizer_free(t);
        return 1;
    }
    int bos = !nospecial && pl_tokenizer_add_bos(t), parse = !noparse, rc = PL_OK;
    size_t cap = (size_t)pl_tokenizer_max_piece_bytes(t) + 8;
    char *buf = malloc(cap);
    if (!buf) rc = pl_err_set(&err, PL_ENOMEM, "out of memory");
    if (!rc && !lines) {
        rc = decode ? decode_one(t, in, n, !nospecial, buf, cap, &err) : encode_one(t, in, n, bos, parse, &err);
    } else if (!rc) {
        const char *p = in, *e = in + n;
        while (p < e && !rc) {
            const char *nl = memchr(p, '\n', (size_t)(e - p));
            size_t l = nl ? (size_t)(nl - p) : (size_t)(e - p);
            if (decode) {
                rc = decode_one(t, p, l, !nospecial, buf, cap, &err);
                putchar('\n');
            } else {
                rc = encode_one(t, p, l, bos, parse, &err);
            }
            p += l + (nl ? 1 : 0);
        }
    }
    free(buf);
    free(in);
    pl_tokenizer_free(t);
    if (fflush(stdout) != 0 && !rc) rc = pl_err_set(&err, PL_EIO, "stdout: write failed: %s", strerror(errno));
    if (rc) {
        fprintf(stderr, "potluck: tokenize: %s\n", err.msg);
        return 1;
    }
    return 0;
}
