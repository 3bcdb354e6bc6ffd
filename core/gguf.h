/* gguf.h: reading GGUF files (llama.cpp's model format), versions 2 and 3.
 *
 * The file is memory-mapped. pl_gguf_open validates everything it reads:
 * every count, string length, array length, tensor dimension and offset is
 * range-checked against the file size before it is used, so a hostile file
 * gives PL_EFORMAT/PL_ERANGE with a message naming the file and the field,
 * never a crash. Tensor data pointers point into the map and stay valid
 * until pl_gguf_close. */
#ifndef PL_GGUF_H
#define PL_GGUF_H

#include <stddef.h>
#include <stdint.h>
#include "dtype.h"
#include "error.h"
#include "mapfile.h"

enum pl_gguf_vtype {
    PL_GGUF_UINT8 = 0, PL_GGUF_INT8 = 1, PL_GGUF_UINT16 = 2, PL_GGUF_INT16 = 3,
    PL_GGUF_UINT32 = 4, PL_GGUF_INT32 = 5, PL_GGUF_FLOAT32 = 6, PL_GGUF_BOOL = 7,
    PL_GGUF_STRING = 8, PL_GGUF_ARRAY = 9, PL_GGUF_UINT64 = 10, PL_GGUF_INT64 = 11,
    PL_GGUF_FLOAT64 = 12,
};

/* A string inside the map: not NUL-terminated. */
typedef struct pl_str {
    const char *ptr;
    uint64_t len;
} pl_str;

typedef struct pl_gguf_kv {
    pl_str key;
    int type;            /* enum pl_gguf_vtype */
    /* scalars (type != STRING/ARRAY): data points at the little-endian value.
     * STRING: str is the value.
     * ARRAY: arr_type is the element type, arr_len the count; for numeric
     * elements data points at arr_len packed values (size checked); for
     * STRING elements strs holds arr_len strings (built at open time).
     * Nested arrays are rejected as unsupported. */
    const unsigned char *data;
    pl_str str;
    int arr_type;
    uint64_t arr_len;
    pl_str *strs;
} pl_gguf_kv;

typedef struct pl_gguf_tensor {
    char *name;          /* NUL-terminated copy */
    pl_dtype type;
    int n_dims;          /* 1..4 */
    int64_t ne[4];       /* ne[0] is the innermost (contiguous) dimension, as in ggml */
    int64_t n_elems;
    uint64_t offset;     /* from the start of the data section */
    size_t nbytes;
    const void *data;    /* into the map */
} pl_gguf_tensor;

typedef struct pl_gguf {
    char *path;
    uint32_t version;
    pl_map map;
    uint64_t n_kv;
    pl_gguf_kv *kv;
    uint64_t n_tensors;
    pl_gguf_tensor *tensors;
    size_t alignment;    /* general.alignment or 32 */
    size_t data_offset;  /* start of the tensor data section in the file */
} pl_gguf;

int pl_gguf_open(pl_gguf **out, const char *path, pl_err *err);
void pl_gguf_close(pl_gguf *g);

const pl_gguf_kv *pl_gguf_get(const pl_gguf *g, const char *key); /* NULL if absent */
const pl_gguf_tensor *pl_gguf_find_tensor(const pl_gguf *g, const char *name);

/* Typed getters. Integers accept any integer vtype whose value fits; floats
 * accept FLOAT32/FLOAT64. Missing key: PL_ENOTFOUND (message names the key);
 * wrong type or out of range: PL_EFORMAT. */
int pl_gguf_get_u32(const pl_gguf *g, const char *key, uint32_t *out, pl_err *err);
int pl_gguf_get_i64(const pl_gguf *g, const char *key, int64_t *out, pl_err *err);
int pl_gguf_get_f32(const pl_gguf *g, const char *key, float *out, pl_err *err);
int pl_gguf_get_bool(const pl_gguf *g, const char *key, int *out, pl_err *err);
/* *out is a malloc'd NUL-terminated copy. */
int pl_gguf_get_str(const pl_gguf *g, const char *key, char **out, pl_err *err);

/* Element i of a numeric array, converted. Caller checks i < arr_len. */
int64_t pl_gguf_arr_i64(const pl_gguf_kv *kv, uint64_t i);
double pl_gguf_arr_f64(const pl_gguf_kv *kv, uint64_t i);

/* Short human-readable rendering of a value ("4096", "\"llama\"",
 * "[array of 49152 string]", ...), for `model info` and dumps. */
void pl_gguf_kv_format(const pl_gguf_kv *kv, char *buf, size_t n);
const char *pl_gguf_vtype_name(int vtype);

#endif
