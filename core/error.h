/* error.h: the error record every fallible potluck function fills.
 *
 * Library code never prints and never exits: it returns a negative status and
 * fills a pl_err with one line saying the object (file, tensor, key), what was
 * expected, what was found and, where useful, a hint. Only the CLI turns a
 * status into a message on stderr and an exit code. */
#ifndef PL_ERROR_H
#define PL_ERROR_H

#include <stddef.h>

enum pl_status {
    PL_OK = 0,
    PL_EIO = -1,          /* open/read/write/mmap failed (errno text in msg) */
    PL_EFORMAT = -2,      /* the bytes are not what the format says */
    PL_ERANGE = -3,       /* a size or offset read from a file is out of range */
    PL_ENOMEM = -4,       /* allocation failed */
    PL_EINVAL = -5,       /* bad argument from the caller or the user */
    PL_EUNSUPPORTED = -6, /* valid input we do not handle (arch, dtype, ...) */
    PL_ENOTFOUND = -7,    /* a named tensor, key or file is missing */
};

typedef struct pl_err {
    int code;        /* one of enum pl_status; PL_OK when nothing failed */
    char msg[1024];  /* one line, no trailing newline */
} pl_err;

/* Fill err (may be NULL) and return code, so callers write
 *   return pl_err_set(err, PL_EFORMAT, "%s: header: expected ..., found ...", path, ...); */
int pl_err_set(pl_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix an existing message: "ctx: old message". Returns err->code. */
int pl_err_prefix(pl_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void pl_err_clear(pl_err *err);

/* Name of a status code ("format error", ...). */
const char *pl_status_name(int code);

/* Checked arithmetic for sizes read from files: return 0 on overflow. */
static inline int pl_mul_ok(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline int pl_add_ok(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

#endif
