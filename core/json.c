/* json.c: loading, typed reading and atomic writing of JSON files through cJSON. */
#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic.h"
#include "mapfile.h"

/* Line and column (1-based) of byte offset off in buf. */
static void line_col(const char *buf, size_t off, size_t *line, size_t *col) {
    size_t l = 1, c = 1;
    for (size_t i = 0; i < off; i++) {
        if (buf[i] == '\n') {
            l++;
            c = 1;
        } else {
            c++;
        }
    }
    *line = l;
    *col = c;
}

int pl_json_load(const char *path, size_t max_bytes, cJSON **out, pl_err *err) {
    *out = NULL;
    char *buf = NULL;
    size_t len = 0;
    int rc = pl_read_file(path, max_bytes, &buf, &len, err);
    if (rc) return rc;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (!j) {
        size_t off = (end && end >= buf && end <= buf + len) ? (size_t)(end - buf) : 0;
        size_t line, col;
        line_col(buf, off, &line, &col);
        rc = pl_err_set(err, PL_EFORMAT, "%s: not valid JSON (error at line %zu, column %zu)", path, line, col);
        free(buf);
        return rc;
    }
    /* Only white space may follow the value. */
    size_t off = (size_t)(end - buf);
    while (off < len && (buf[off] == ' ' || buf[off] == '\t' || buf[off] == '\n' || buf[off] == '\r')) off++;
    if (off < len) {
        size_t line, col;
        line_col(buf, off, &line, &col);
        rc = pl_err_set(err, PL_EFORMAT, "%s: unexpected text after the JSON value at line %zu, column %zu", path, line, col);
        cJSON_Delete(j);
        free(buf);
        return rc;
    }
    free(buf);
    *out = j;
    return PL_OK;
}

/* A short description of what a JSON value is, for "got ..." messages. */
static void describe(const cJSON *v, char *buf, size_t n) {
    if (!v) {
        snprintf(buf, n, "nothing");
    } else if (cJSON_IsString(v)) {
        /* at most 40 bytes, control characters shown as '?': one line */
        const char *s = v->valuestring ? v->valuestring : "";
        char clip[41];
        size_t len = strlen(s), k = len > 40 ? 40 : len;
        for (size_t i = 0; i < k; i++) clip[i] = (unsigned char)s[i] < 0x20 ? '?' : s[i];
        clip[k] = '\0';
        snprintf(buf, n, "string \"%s%s\"", clip, len > 40 ? "..." : "");
    } else if (cJSON_IsNumber(v)) {
        snprintf(buf, n, "number %.17g", v->valuedouble);
    } else if (cJSON_IsTrue(v)) {
        snprintf(buf, n, "true");
    } else if (cJSON_IsFalse(v)) {
        snprintf(buf, n, "false");
    } else if (cJSON_IsNull(v)) {
        snprintf(buf, n, "null");
    } else if (cJSON_IsArray(v)) {
        snprintf(buf, n, "an array");
    } else if (cJSON_IsObject(v)) {
        snprintf(buf, n, "an object");
    } else {
        snprintf(buf, n, "an invalid value");
    }
}

/* Look up key; *v is NULL when absent. Fails when obj is not an object. */
static int lookup(const cJSON *obj, const char *key, const char *where, const cJSON **v, pl_err *err) {
    *v = NULL;
    if (!cJSON_IsObject(obj)) {
        char got[96];
        describe(obj, got, sizeof got);
        return pl_err_set(err, PL_EFORMAT, "%s: %s: expected an object holding the key, got %s", where, key, got);
    }
    *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return PL_OK;
}

static int wrong(const cJSON *v, const char *key, const char *where, const char *expected, pl_err *err) {
    char got[96];
    describe(v, got, sizeof got);
    return pl_err_set(err, PL_EFORMAT, "%s: %s: expected %s, got %s", where, key, expected, got);
}

static int missing(const char *key, const char *where, const char *expected, pl_err *err) {
    return pl_err_set(err, PL_ENOTFOUND, "%s: %s: expected %s, but the key is missing", where, key, expected);
}

/* Integers are JSON numbers with no fractional part in +-2^53 (beyond that a
 * double no longer holds every integer, so the file's digits may be lost). */
static int get_int(const cJSON *v, const char *key, const char *where, int64_t *out, pl_err *err) {
    if (!cJSON_IsNumber(v)) return wrong(v, key, where, "an integer", err);
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d)) return wrong(v, key, where, "an integer", err);
    if (fabs(d) > 9007199254740992.0)
        return pl_err_set(err, PL_ERANGE, "%s: %s: expected an integer within +-2^53, got %.17g", where, key, d);
    *out = (int64_t)d;
    return PL_OK;
}

int pl_json_int(const cJSON *obj, const char *key, const char *where, int64_t *out, pl_err *err) {
    const cJSON *v;
    int rc = lookup(obj, key, where, &v, err);
    if (rc) return rc;
    if (!v) return missing(key, where, "an integer", err);
    return get_int(v, key, where, out, err);
}

int pl_json_int_opt(const cJSON *obj, const char *key, const char *where, int64_t *out, pl_err *err) {
    const cJSON *v;
    int rc = lookup(obj, key, where, &v, err);
    if (rc) return rc;
    if (!v || cJSON_IsNull(v)) return PL_OK;
    return get_int(v, key, where, out, err);
}

static int get_num(const cJSON *v, const char *key, const char *where, double *out, pl_err *err) {
    if (!cJSON_IsNumber(v)) return wrong(v, key, where, "a number", err);
    *out = v->valuedouble;
    return PL_OK;
}

int pl_json_num(const cJSON *obj, const char *key, const char *where, double *out, pl_err *err) {
    const cJSON *v;
    int rc = lookup(obj, key, where, &v, err);
    if (rc) return rc;
    if (!v) return missing(key, where, "a number", err);
    return get_num(v, key, where, out, err);
}

int pl_json_num_opt(const cJSON *obj, const char *key, const char *where, double *out, pl_err *err) {
    const cJSON *v;
    int rc = lookup(obj, key, where, &v, err);
    if (rc) return rc;
    if (!v || cJSON_IsNull(v)) return PL_OK;
    return get_num(v, key, where, out, err);
}

static int get_str(const cJSON *v, const char *key, const char *where, const char **out, pl_err *err) {
    if (!cJSON_IsString(v) || !v->valuestring) return wrong(v, key, where, "a string", err);
    *out = v->valuestring;
    return PL_OK;
}

int pl_json_str(const cJSON *obj, const char *key, const char *where, const char **out, pl_err *err) {
    const cJSON *v;
    int rc = lookup(obj, key, where, &v, err);
    if (rc) return rc;
    if (!v) return missing(key, where, "a string", err);
    return get_str(v, key, where, out, err);
}

int pl_json_str_opt(const cJSON *obj, const char *key, const char *where, const char **out, pl_err *err) {
    const cJSON *v;
    int rc = lookup(obj, key, where, &v, err);
    if (rc) return rc;
    if (!v || cJSON_IsNull(v)) return PL_OK;
    return get_str(v, key, where, out, err);
}

static int get_bool(const cJSON *v, const char *key, const char *where, int *out, pl_err *err) {
    if (!cJSON_IsBool(v)) return wrong(v, key, where, "true or false", err);
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return PL_OK;
}

int pl_json_bool(const cJSON *obj, const char *key, const char *where, int *out, pl_err *err) {
    const cJSON *v;
    int rc = lookup(obj, key, where, &v, err);
    if (rc) return rc;
    if (!v) return missing(key, where, "true or false", err);
    return get_bool(v, key, where, out, err);
}

int pl_json_bool_opt(const cJSON *obj, const char *key, const char *where, int *out, pl_err *err) {
    const cJSON *v;
    int rc = lookup(obj, key, where, &v, err);
    if (rc) return rc;
    if (!v || cJSON_IsNull(v)) return PL_OK;
    return get_bool(v, key, where, out, err);
}

int pl_json_write(const char *path, const cJSON *obj, pl_err *err) {
    if (!obj) return pl_err_set(err, PL_EINVAL, "%s: no JSON value to write", path);
    char *text = cJSON_Print((cJSON *)obj);
    if (!text) return pl_err_set(err, PL_ENOMEM, "%s: cannot serialize JSON (out of memory)", path);
    size_t n = strlen(text);
    char *buf = malloc(n + 1);
    if (!buf) {
        cJSON_free(text);
        return pl_err_set(err, PL_ENOMEM, "%s: out of memory", path);
    }
    memcpy(buf, text, n);
    buf[n] = '\n';
    cJSON_free(text);
    int rc = pl_write_file_atomic(path, buf, n + 1, err);
    free(buf);
    return rc;
}
