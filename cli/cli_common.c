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
#include "../plugins/pipeline.h"

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

int cli_gemm_mode(const char *opt, const char *s) {
    if (s && !strcmp(s, "tiled")) pl_gemm_set_openblas_threaded(0);
    else if (s && !strcmp(s, "openblas")) pl_gemm_set_openblas_threaded(1);
    else return cli_fail("%s: expected tiled or openblas, not '%s'", opt, s ? s : "");
    return 0;
}

void cli_set_threads(int n) {
    if (n > 0) omp_set_num_threads(n);
}

int cli_model_path(const char *arg, char **out, pl_err *err) {
    struct stat st;
    *out = NULL;
    if (arg && stat(arg, &st) == 0) {
        if (!(*out = strdup(arg))) return pl_err_set(err, PL_ENOMEM, "out of memory");
        return PL_OK;
    }
    return pl_model_resolve(arg, 1, out, err);
}
