/* shard_h5.c: libhdf5 wrapped once: quiet errors, error stack text in pl_err. */
#include "shard_h5.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local int h5_quiet_done;

void pl_h5_quiet(void) {
    if (h5_quiet_done) return;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    h5_quiet_done = 1;
}

typedef struct stack_text {
    char buf[600];
    size_t len;
    int n;
} stack_text;

/* Collect "func: description" of each stack entry, innermost last. */
static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
    stack_text *st = data;
    if (st->n >= 4 || st->len + 8 >= sizeof st->buf) return 0;
    const char *desc = e->desc ? e->desc : "";
    int w = snprintf(st->buf + st->len, sizeof st->buf - st->len, "%s%s: %s", st->n ? "; " : "",
                     e->func_name ? e->func_name : "?", desc);
    if (w > 0) {
        st->len += (size_t)w;
        if (st->len >= sizeof st->buf) st->len = sizeof st->buf - 1;
    }
    st->n++;
    (void)n;
    return 0;
}

int pl_h5_fail(pl_err *err, int code, const char *fmt, ...) {
    char head[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    stack_text st = {.len = 0, .n = 0};
    st.buf[0] = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_cb, &st);
    H5Eclear2(H5E_DEFAULT);
    for (char *p = st.buf; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    if (st.n) return pl_err_set(err, code, "%s (HDF5: %s)", head, st.buf);
    return pl_err_set(err, code, "%s", head);
}

void pl_h5_close(hid_t id) {
    if (id < 0) return;
    switch (H5Iget_type(id)) {
    case H5I_FILE: H5Fclose(id); break;
    case H5I_GROUP: H5Gclose(id); break;
    case H5I_DATATYPE: H5Tclose(id); break;
    case H5I_DATASPACE: H5Sclose(id); break;
    case H5I_DATASET: H5Dclose(id); break;
    case H5I_ATTR: H5Aclose(id); break;
    case H5I_GENPROP_LST: H5Pclose(id); break;
    default: break;
    }
    H5Eclear2(H5E_DEFAULT);
}

static hid_t vlen_utf8(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return t;
    if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

int pl_h5_attr_write_str(hid_t obj, const char *name, const char *value, pl_err *err) {
    pl_h5_quiet();
    hid_t t = vlen_utf8(), sp = H5Screate(H5S_SCALAR), a = -1;
    int rc = PL_OK;
    if (t < 0 || sp < 0) {
        rc = pl_h5_fail(err, PL_EIO, "attribute '%s': cannot create type", name);
        goto out;
    }
    a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    const char *v = value ? value : "";
    if (a < 0 || H5Awrite(a, t, &v) < 0) rc = pl_h5_fail(err, PL_EIO, "attribute '%s': cannot write", name);
out:
    pl_h5_close(a);
    pl_h5_close(sp);
    pl_h5_close(t);
    return rc;
}

int pl_h5_attr_write_i64(hid_t obj, const char *name, int64_t value, pl_err *err) {
    pl_h5_quiet();
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = sp < 0 ? -1 : H5Acreate2(obj, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = PL_OK;
    if (a < 0 || H5Awrite(a, H5T_NATIVE_INT64, &value) < 0)
        rc = pl_h5_fail(err, PL_EIO, "attribute '%s': cannot write", name);
    pl_h5_close(a);
    pl_h5_close(sp);
    return rc;
}

/* Open attribute name as a scalar; PL_ENOTFOUND when absent. */
static int attr_open_scalar(hid_t obj, const char *name, const char *where, hid_t *out, pl_err *err) {
    *out = -1;
    htri_t ex = H5Aexists(obj, name);
    if (ex < 0) return pl_h5_fail(err, PL_EFORMAT, "%s: attribute '%s': cannot look it up", where, name);
    if (!ex) return pl_err_set(err, PL_ENOTFOUND, "%s: attribute '%s' is missing", where, name);
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return pl_h5_fail(err, PL_EFORMAT, "%s: attribute '%s': cannot open", where, name);
    hid_t sp = H5Aget_space(a);
    hssize_t n = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
    pl_h5_close(sp);
    if (n != 1) {
        pl_h5_close(a);
        return pl_err_set(err, PL_EFORMAT, "%s: attribute '%s': expected a scalar, found %lld elements", where,
                          name, (long long)n);
    }
    *out = a;
    return PL_OK;
}

int pl_h5_attr_read_str(hid_t obj, const char *name, const char *where, char **out, pl_err *err) {
    pl_h5_quiet();
    *out = NULL;
    hid_t a;
    int rc = attr_open_scalar(obj, name, where, &a, err);
    if (rc) return rc;
    hid_t ft = H5Aget_type(a), mt = -1;
    if (ft < 0 || H5Tget_class(ft) != H5T_STRING) {
        rc = pl_err_set(err, PL_EFORMAT, "%s: attribute '%s': expected a string", where, name);
        goto out;
    }
    if (H5Tis_variable_str(ft) > 0) {
        mt = vlen_utf8();
        char *v = NULL;
        if (mt < 0 || H5Aread(a, mt, &v) < 0) {
            rc = pl_h5_fail(err, PL_EFORMAT, "%s: attribute '%s': cannot read", where, name);
            goto out;
        }
        *out = strdup(v ? v : "");
        if (v) H5free_memory(v);
    } else {
        size_t sz = H5Tget_size(ft);
        if (sz == 0 || sz > (1u << 20)) {
            rc = pl_err_set(err, PL_EFORMAT, "%s: attribute '%s': string size %zu out of range", where, name, sz);
            goto out;
        }
        char *v = calloc(1, sz + 1);
        mt = H5Tcopy(ft);
        if (!v || mt < 0 || H5Aread(a, mt, v) < 0) {
            free(v);
            rc = pl_h5_fail(err, PL_EFORMAT, "%s: attribute '%s': cannot read", where, name);
            goto out;
        }
        *out = v;
    }
    if (!*out) rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", where);
out:
    pl_h5_close(mt);
    pl_h5_close(ft);
    pl_h5_close(a);
    return rc;
}

int pl_h5_attr_read_i64(hid_t obj, const char *name, const char *where, int64_t *out, pl_err *err) {
    pl_h5_quiet();
    hid_t a;
    int rc = attr_open_scalar(obj, name, where, &a, err);
    if (rc) return rc;
    hid_t ft = H5Aget_type(a);
    if (ft < 0 || H5Tget_class(ft) != H5T_INTEGER) {
        rc = pl_err_set(err, PL_EFORMAT, "%s: attribute '%s': expected an integer", where, name);
    } else if (H5Aread(a, H5T_NATIVE_INT64, out) < 0) {
        rc = pl_h5_fail(err, PL_EFORMAT, "%s: attribute '%s': cannot read", where, name);
    }
    pl_h5_close(ft);
    pl_h5_close(a);
    return rc;
}
