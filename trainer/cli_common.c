/* cli_common.c: helpers the command handlers share. */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/gemm.h"

int cli_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("potluck: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int cli_fail_err(const pl_err *err) {
    /* messages are one line; make sure of it */
    char buf[sizeof err->msg];
    snprintf(buf, sizeof buf, "%s", err->msg[0] ? err->msg : pl_status_name(err->code));
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return cli_fail("%s", buf);
}

int cli_int(const char *opt, const char *s, long min, long max, long *out) {
    if (!s) return cli_fail("%s: expected a value", opt);
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end) return cli_fail("%s: expected an integer, got \"%s\"", opt, s);
    if (v < min || v > max) return cli_fail("%s: %ld is out of range (%ld..%ld)", opt, v, min, max);
    *out = v;
    return 0;
}

int cli_float(const char *opt, const char *s, double min, double max, double *out) {
    if (!s) return cli_fail("%s: expected a value", opt);
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return cli_fail("%s: expected a number, got \"%s\"", opt, s);
    if (v < min || v > max) return cli_fail("%s: %g is out of range (%g..%g)", opt, v, min, max);
    *out = v;
    return 0;
}

int cli_load_tokenizer(const pl_model *m, const char *tok_path, pl_tokenizer **out, pl_err *err) {
    *out = NULL;
    if (!tok_path && m->source == PL_SRC_GGUF) return pl_tokenizer_from_gguf(out, m->gguf, err);
    char guess[4096];
    if (!tok_path && m->source == PL_SRC_LLAMA2C) {
        const char *slash = strrchr(m->path, '/');
        int dirlen = slash ? (int)(slash - m->path) : 1;
        snprintf(guess, sizeof guess, "%.*s/tokenizer.bin", dirlen, slash ? m->path : ".");
        if (access(guess, R_OK) != 0)
            return pl_err_set(err, PL_ENOTFOUND,
                              "%s: a llama2.c checkpoint needs its tokenizer: pass --tokenizer PATH (no %s)",
                              m->path, guess);
        tok_path = guess;
    }
    if (!tok_path && m->source == PL_SRC_HF) return pl_tokenizer_load(out, m->path, err);
    FILE *f = fopen(tok_path, "rb");
    if (!f) return pl_err_set(err, PL_EIO, "%s: %s", tok_path, strerror(errno));
    char magic[4] = {0};
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    if (got == 4 && !memcmp(magic, "GGUF", 4)) {
        pl_gguf *g;
        int rc = pl_gguf_open(&g, tok_path, err);
        if (rc) return rc;
        rc = pl_tokenizer_from_gguf(out, g, err);
        pl_gguf_close(g);
        return rc;
    }
    struct stat st;
    size_t n = strlen(tok_path);
    if ((stat(tok_path, &st) == 0 && S_ISDIR(st.st_mode)) || (n > 5 && !strcmp(tok_path + n - 5, ".json")))
        return pl_tokenizer_load(out, tok_path, err); /* tokenizer.json or its folder */
    return pl_tokenizer_load_llama2c(out, tok_path, m->cfg.vocab, err);
}

int cli_gemm_mode(const char *opt, const char *s) {
    if (s && !strcmp(s, "tiled")) pl_gemm_set_openblas_threaded(0);
    else if (s && !strcmp(s, "openblas")) pl_gemm_set_openblas_threaded(1);
    else return cli_fail("%s: expected tiled or openblas, not '%s'", opt, s ? s : "");
    return 0;
}

void cli_set_threads(int n) {
    if (n > 0) omp_set_num_threads(n);
}
