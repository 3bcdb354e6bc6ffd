/* dtype.c: block sizes, byte sizes and names of the tensor element types. */
#include "dtype.h"

#include <strings.h>

typedef struct {
    const char *name; /* NULL: no such id */
    int64_t block_elems;
    size_t block_bytes;
    int quantized;
} dtype_info;

#define MAX_ID 128

/* Indexed by id. Block layouts follow ggml (ggml-common.h); see the
 * static_asserts in quant.h. */
static const dtype_info k_types[MAX_ID] = {
    [PL_F32] = {"F32", 1, 4, 0},
    [PL_F16] = {"F16", 1, 2, 0},
    [PL_BF16] = {"BF16", 1, 2, 0},
    [PL_F64] = {"F64", 1, 8, 0},
    [PL_I8] = {"I8", 1, 1, 0},
    [PL_I16] = {"I16", 1, 2, 0},
    [PL_I32] = {"I32", 1, 4, 0},
    [PL_I64] = {"I64", 1, 8, 0},
    [PL_U8] = {"U8", 1, 1, 0},
    [PL_U16] = {"U16", 1, 2, 0},
    [PL_U32] = {"U32", 1, 4, 0},
    [PL_U64] = {"U64", 1, 8, 0},
    [PL_BOOL] = {"BOOL", 1, 1, 0},
    [PL_Q4_0] = {"Q4_0", 32, 2 + 16, 1},
    [PL_Q4_1] = {"Q4_1", 32, 2 + 2 + 16, 1},
    [PL_Q5_0] = {"Q5_0", 32, 2 + 4 + 16, 1},
    [PL_Q5_1] = {"Q5_1", 32, 2 + 2 + 4 + 16, 1},
    [PL_Q8_0] = {"Q8_0", 32, 2 + 32, 1},
    [PL_Q8_1] = {"Q8_1", 32, 2 + 2 + 32, 1},
    [PL_Q2_K] = {"Q2_K", 256, 16 + 64 + 2 + 2, 1},
    [PL_Q3_K] = {"Q3_K", 256, 32 + 64 + 12 + 2, 1},
    [PL_Q4_K] = {"Q4_K", 256, 2 + 2 + 12 + 128, 1},
    [PL_Q5_K] = {"Q5_K", 256, 2 + 2 + 12 + 32 + 128, 1},
    [PL_Q6_K] = {"Q6_K", 256, 128 + 64 + 16 + 2, 1},
    [PL_Q8_K] = {"Q8_K", 256, 4 + 256 + 2 * 16, 1},
};

static const dtype_info *lookup(pl_dtype t) {
    if ((unsigned)t >= MAX_ID || !k_types[t].name) return NULL;
    return &k_types[t];
}

int64_t pl_dtype_block_elems(pl_dtype t) {
    const dtype_info *d = lookup(t);
    return d ? d->block_elems : 0;
}

size_t pl_dtype_block_bytes(pl_dtype t) {
    const dtype_info *d = lookup(t);
    return d ? d->block_bytes : 0;
}

size_t pl_dtype_row_bytes(pl_dtype t, int64_t n) {
    const dtype_info *d = lookup(t);
    if (!d || n < 0 || n % d->block_elems != 0) return 0;
    size_t out;
    if (__builtin_mul_overflow((uint64_t)(n / d->block_elems), d->block_bytes, &out)) return 0;
    return out;
}

const char *pl_dtype_name(pl_dtype t) {
    if (t == PL_NF4) return "NF4"; /* no fixed block layout: its rows are read through pl_qaux */
    const dtype_info *d = lookup(t);
    return d ? d->name : "?";
}

pl_dtype pl_dtype_from_name(const char *name) {
    if (!name) return PL_DTYPE_INVALID;
    for (int i = 0; i < MAX_ID; i++)
        if (k_types[i].name && strcasecmp(k_types[i].name, name) == 0) return (pl_dtype)i;
    return PL_DTYPE_INVALID;
}

int pl_dtype_is_quantized(pl_dtype t) {
    const dtype_info *d = lookup(t);
    return d ? d->quantized : 0;
}
