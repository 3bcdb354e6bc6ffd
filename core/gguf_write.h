/* gguf_write.h: writing GGUF v3 files (llama.cpp's model format).
 *
 * A writer collects metadata (every GGUF value type, including arrays of
 * numbers and of strings) and tensors (F32, F16, BF16, Q8_0 or any other
 * ggml type given as ready bytes), then writes the file atomically
 * (core/atomic.h): header, key/values in the order set, tensor infos in the
 * order added, padding to the alignment (32, or general.alignment when set
 * as a u32), tensor data each at an aligned offset. Setting a key twice
 * replaces its value in place. Tensor data is either referenced (kept alive
 * by the caller until the write returns) or produced at write time by a
 * callback, so a large export need not hold every converted tensor at once.
 * core/gguf.h reads what this writes. */
#ifndef PL_GGUF_WRITE_H
#define PL_GGUF_WRITE_H

#include <stddef.h>
#include <stdint.h>
#include "dtype.h"
#include "error.h"
#include "gguf.h"

typedef struct pl_gguf_writer pl_gguf_writer;

pl_gguf_writer *pl_gguf_writer_new(void);
void pl_gguf_writer_free(pl_gguf_writer *w);

/* Scalars. vtype is an enum pl_gguf_vtype scalar type; value points at one
 * little-endian value of that type (bool: one byte, 0 or 1). */
int pl_gguf_set_scalar(pl_gguf_writer *w, const char *key, int vtype, const void *value, pl_err *err);
int pl_gguf_set_u32(pl_gguf_writer *w, const char *key, uint32_t v, pl_err *err);
int pl_gguf_set_i32(pl_gguf_writer *w, const char *key, int32_t v, pl_err *err);
int pl_gguf_set_u64(pl_gguf_writer *w, const char *key, uint64_t v, pl_err *err);
int pl_gguf_set_f32(pl_gguf_writer *w, const char *key, float v, pl_err *err);
int pl_gguf_set_bool(pl_gguf_writer *w, const char *key, int v, pl_err *err);
/* Strings: len bytes (need not be NUL-terminated); set_str takes a C string. */
int pl_gguf_set_strn(pl_gguf_writer *w, const char *key, const char *s, size_t len, pl_err *err);
int pl_gguf_set_str(pl_gguf_writer *w, const char *key, const char *s, pl_err *err);
/* Array of n numeric (or bool) elements of type elem_vtype, packed little-endian. */
int pl_gguf_set_arr(pl_gguf_writer *w, const char *key, int elem_vtype, const void *data, uint64_t n,
                    pl_err *err);
/* Array of n strings; lens[i] bytes each, or strlen when lens is NULL. */
int pl_gguf_set_arr_str(pl_gguf_writer *w, const char *key, const char *const *strs, const uint64_t *lens,
                        uint64_t n, pl_err *err);
/* Copy a key/value read by core/gguf.h (any type, arrays of strings too). */
int pl_gguf_set_kv(pl_gguf_writer *w, const pl_gguf_kv *kv, pl_err *err);
/* Remove a key if present. */
void pl_gguf_unset(pl_gguf_writer *w, const char *key);

/* Fills dst (nbytes, the tensor's whole data) at write time. */
typedef int (*pl_gguf_fill_fn)(void *ctx, void *dst, size_t nbytes, pl_err *err);

/* Tensor of type t with n_dims (1..4) dimensions ne (ne[0] innermost, as in
 * ggml); ne[0] must be a whole number of blocks of t. data (referenced, not
 * copied) or fill/ctx provides the bytes. Names are unique, < 64 bytes. */
int pl_gguf_add_tensor(pl_gguf_writer *w, const char *name, pl_dtype t, int n_dims, const int64_t *ne,
                       const void *data, pl_err *err);
int pl_gguf_add_tensor_fill(pl_gguf_writer *w, const char *name, pl_dtype t, int n_dims, const int64_t *ne,
                            pl_gguf_fill_fn fill, void *ctx, pl_err *err);

/* Write everything to path atomically. The writer may be written again. */
int pl_gguf_writer_write(pl_gguf_writer *w, const char *path, pl_err *err);

#endif
