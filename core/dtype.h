/* dtype.h: element types of tensors in files and in memory.
 *
 * Values follow ggml's type ids so a GGUF tensor's type field maps directly
 * (GGUF readers must still validate it). Safetensors-only integer types get
 * ids above ggml's range. Block layouts of the quantized types are pinned by
 * static_asserts in quant.h. */
#ifndef PL_DTYPE_H
#define PL_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum pl_dtype {
    PL_F32 = 0,
    PL_F16 = 1,
    PL_Q4_0 = 2,
    PL_Q4_1 = 3,
    PL_Q5_0 = 6,
    PL_Q5_1 = 7,
    PL_Q8_0 = 8,
    PL_Q8_1 = 9,
    PL_Q2_K = 10,
    PL_Q3_K = 11,
    PL_Q4_K = 12,
    PL_Q5_K = 13,
    PL_Q6_K = 14,
    PL_Q8_K = 15,
    PL_I8 = 24,
    PL_I16 = 25,
    PL_I32 = 26,
    PL_I64 = 27,
    PL_F64 = 28,
    PL_BF16 = 30,
    /* not in ggml: potluck's own in-memory formats */
    PL_NF4 = 90,  /* bitsandbytes NF4 with its quant state (lora/nf4.h); rows via pl_qaux */
    /* not in ggml: safetensors only */
    PL_U8 = 100,
    PL_BOOL = 101,
    PL_U16 = 102,
    PL_U32 = 103,
    PL_U64 = 104,
    PL_DTYPE_INVALID = -1,
} pl_dtype;

/* Elements per block (1 for plain types) and bytes per block; 0 for ids we
 * do not know. A row of n elements of type t takes n / block * bytes bytes and
 * n must be a multiple of the block size. */
int64_t pl_dtype_block_elems(pl_dtype t);
size_t pl_dtype_block_bytes(pl_dtype t);
/* Bytes of a row of n elements; 0 if t is unknown or n is not a whole number
 * of blocks or the product overflows. */
size_t pl_dtype_row_bytes(pl_dtype t, int64_t n);
const char *pl_dtype_name(pl_dtype t); /* "F32", "Q4_1", ...; "?" if unknown */
pl_dtype pl_dtype_from_name(const char *name); /* inverse; PL_DTYPE_INVALID */
int pl_dtype_is_quantized(pl_dtype t);

#endif
