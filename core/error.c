/* error.c: filling and prefixing pl_err records. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Messages are one line, and parts of them come from input files: control
 * bytes (newline, escape, DEL, UTF-8 C1 controls) are written as \n, \t, \r or
 * \xNN, so a file
 * cannot print a second line, move the cursor or recolour the terminal. The
 * result is cut to cap - 1 bytes; text without control bytes is unchanged. */
static void escape_controls(char *dst, size_t cap, const char *src) {
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)src; *p && n + 1 < cap; p++) {
        char e[5];
        size_t k;
        if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) { /* U+0080..U+009F, the C1 controls (CSI is U+009B) */
            if (n + 8 >= cap) break;
            n += (size_t)snprintf(dst + n, cap - n, "\\x%02x\\x%02x", p[0], p[1]);
            p++;
            continue;
        }
        if (*p >= 0x20 && *p != 0x7f) e[0] = (char)*p, k = 1;
        else if (*p == '\n') memcpy(e, "\\n", 2), k = 2;
        else if (*p == '\t') memcpy(e, "\\t", 2), k = 2;
        else if (*p == '\r') memcpy(e, "\\r", 2), k = 2;
        else snprintf(e, sizeof e, "\\x%02x", *p), k = 4;
        if (n + k >= cap) break;
        memcpy(dst + n, e, k);
        n += k;
    }
    dst[n] = '\0';
}

int pl_err_set(pl_err *err, int code, const char *fmt, ...) {
    if (!err) return code;
    err->code = code;
    char raw[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    escape_controls(err->msg, sizeof err->msg, raw);
    return code;
}

int pl_err_prefix(pl_err *err, const char *fmt, ...) {
    if (!err) return PL_EINVAL;
    char raw[512], head[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    escape_controls(head, sizeof head, raw);
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
