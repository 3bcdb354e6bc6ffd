/* error.c: filling and prefixing pl_err records. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int pl_err_set(pl_err *err, int code, const char *fmt, ...) {
    if (!err) return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

int pl_err_prefix(pl_err *err, const char *fmt, ...) {
    if (!err) return PL_EINVAL;
    char head[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    /* "head: old", cut to fit (the cut is intended: messages are one line) */
    size_t n = strnlen(head, sizeof err->msg - 1);
    memcpy(err->msg, head, n);
    if (n + 2 < sizeof err->msg) {
        memcpy(err->msg + n, ": ", 2);
        n += 2;
    }
    size_t k = strnlen(old, sizeof old);
    if (k > sizeof err->msg - 1 - n) k = sizeof err->msg - 1 - n;
    memcpy(err->msg + n, old, k);
    err->msg[n + k] = '\0';
    return err->code;
}

void pl_err_clear(pl_err *err) {
    if (!err) return;
    err->code = PL_OK;
    err->msg[0] = '\0';
}

const char *pl_status_name(int code) {
    switch (code) {
    case PL_OK: return "ok";
    case PL_EIO: return "i/o error";
    case PL_EFORMAT: return "format error";
    case PL_ERANGE: return "out of range";
    case PL_ENOMEM: return "out of memory";
    case PL_EINVAL: return "invalid argument";
    case PL_EUNSUPPORTED: return "unsupported";
    case PL_ENOTFOUND: return "not found";
    default: return "error";
    }
}
