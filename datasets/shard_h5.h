/* shard_h5.h: the one wrapper around libhdf5: silenced error printing, the
 * HDF5 error stack copied into pl_err messages, and small typed helpers.
 * Internal to datasets/shard*.c. */
#ifndef PL_SHARD_H5_H
#define PL_SHARD_H5_H

#include <hdf5.h>
#include <stdint.h>
#include "../core/error.h"

/* Turn off HDF5's automatic error printing for the calling thread (the
 * thread-safe library keeps that setting per thread). Cheap; call before
 * any HDF5 use. */
void pl_h5_quiet(void);

/* Set err to "<fmt...>: <HDF5 error stack text>" and clear the stack.
 * Returns code. */
int pl_h5_fail(pl_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Close any HDF5 identifier if valid (>= 0); ignores errors. */
void pl_h5_close(hid_t id);

/* Attributes on an object: a variable-length UTF-8 string, an int64. */
int pl_h5_attr_write_str(hid_t obj, const char *name, const char *value, pl_err *err);
int pl_h5_attr_write_i64(hid_t obj, const char *name, int64_t value, pl_err *err);
/* Read; *out malloc'd. Missing attribute -> PL_ENOTFOUND. Any string type. */
int pl_h5_attr_read_str(hid_t obj, const char *name, const char *where, char **out, pl_err *err);
int pl_h5_attr_read_i64(hid_t obj, const char *name, const char *where, int64_t *out, pl_err *err);

#endif
