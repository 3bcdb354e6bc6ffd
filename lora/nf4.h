/* nf4.h: NF4 4-bit quantization with double quantization, bit-compatible
 * with bitsandbytes' quantize_4bit(quant_type="nf4", compress_statistics=True)
 * on the CPU (bitsandbytes 0.50.2 pinned in tests/requirements-peers.txt).
 *
 * Layout (as bitsandbytes): the tensor is flattened row-major and cut into
 * blocks of `blocksize` elements (the last block may be shorter). Each block
 * has an fp32 absmax; element i becomes the index of the nearest of the 16
 * NF4 codes to x / absmax, packed two per byte, element 2k in the HIGH nibble
 * of byte k (an odd count pads the last low nibble with code 7, i.e. 0.0).
 * Double quantization stores the absmax vector as offset = mean(absmax),
 * then (absmax - offset) quantized blockwise (256 per nested block) to 8-bit
 * codes of bitsandbytes' signed dynamic map, with an fp32 nested absmax per
 * 256 blocks. Dequantization: absmax_b = map[code_b] * nested[b / 256] + offset,
 * x_i = NF4[q_i] * absmax_b, each step one fp32 rounding. */
#ifndef PL_NF4_H
#define PL_NF4_H

#include <stddef.h>
#include <stdint.h>
#include "../core/error.h"
#include "../core/safetensors.h"
#include "../core/quant.h"

#define PL_NF4_NESTED_BLOCK 256

typedef struct pl_nf4 {
    int64_t n;             /* elements (the flattened tensor) */
    int blocksize;         /* 32..4096, a power of two */
    int double_quant;      /* absmax stored as 8-bit codes + nested absmax + offset */
    int64_t n_blocks;      /* ceil(n / blocksize) */
    int64_t n_nested;      /* ceil(n_blocks / 256) when double_quant, else 0 */
    uint8_t *packed;       /* (n + 1) / 2 bytes */
    float *absmax;         /* (n_blocks) fp32, when !double_quant */
    uint8_t *absmax_q;     /* (n_blocks) codes, when double_quant */
    float *nested_absmax;  /* (n_nested), when double_quant */
    float offset;          /* mean of the fp32 absmax, when double_quant */
    float code[256];       /* the dynamic map the codes index, when double_quant */
    void *buf;             /* one allocation holding every array above (NULL when
                            * someone else owns the arrays, e.g. a model) */
    size_t buf_bytes;
} pl_nf4;

/* The 16 NF4 values and bitsandbytes' 256-entry signed dynamic map. */
extern const float pl_nf4_code[16];
extern const float pl_nf4_dynamic_map[256];

/* Quantize x (n floats, all finite) with the given blocksize (32, 64, ...,
 * 4096); out is overwritten (free it with pl_nf4_free). */
int pl_nf4_quantize(const float *x, int64_t n, int blocksize, int double_quant, pl_nf4 *out, pl_err *err);
void pl_nf4_free(pl_nf4 *q);

/* dst (count) = elements [start, start + count) of the dequantized tensor. */
int pl_nf4_dequantize(const pl_nf4 *q, int64_t start, int64_t count, float *dst);

/* The fp32 absmax of block b (dequantized from the nested codes when
 * double-quantized). */
float pl_nf4_block_absmax(const pl_nf4 *q, int64_t b);

/* torch.mean of a contiguous fp32 vector as torch computes it on one CPU
 * thread (cascade sum with `lanes`-wide vector accumulators, then / n).
 * lanes 0 = 8, torch's choice on x86 (its sum kernel is AVX2 even under
 * AVX-512). */
float pl_nf4_torch_mean(const float *x, int64_t n, int lanes);
/* Vector width used for the double quantization's offset (8 or 16; 0 =
 * default 8). Returns the previous value. */
int pl_nf4_set_mean_lanes(int lanes);

/* A (rows, cols) weight view of q (q->n == rows * cols): w->dtype PL_NF4,
 * w->data = q, rows read through w->aux (row r = elements r*cols ..). */
int pl_nf4_qweight(const pl_nf4 *q, int64_t rows, int64_t cols, pl_qweight *w);

/* Laying out an NF4 tensor in memory its owner provides (a model keeps its
 * NF4 weights in model-owned memory: trainer/model_nf4.c). pl_nf4_shape
 * fills q's counts for n elements (0, or -1 when n or the blocksize is out
 * of range); pl_nf4_layout returns the bytes the arrays take and, with base
 * non-NULL, points q's arrays into base (q->buf = base); pl_nf4_fill
 * quantizes x (q->n floats) into the laid-out q (on error q's arrays hold
 * garbage). */
int pl_nf4_valid_blocksize(int64_t bs); /* 32..4096, a power of two */
int pl_nf4_shape(pl_nf4 *q, int64_t n, int blocksize, int double_quant);
size_t pl_nf4_layout(pl_nf4 *q, unsigned char *base);
int pl_nf4_fill(const float *x, pl_nf4 *q, pl_err *err);

#endif
