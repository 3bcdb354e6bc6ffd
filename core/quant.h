/* quant.h: block layouts of ggml's quantized types, dequantization, and the
 * dot products generation runs directly on quantized weights.
 *
 * Layouts are those of ggml (ggml-common.h): d/m scales are fp16, a Q4 block
 * holds 32 weights in 16 bytes with element j in the low nibble of byte j and
 * element j+16 in the high nibble, K-quants use 256-element super-blocks. */
#ifndef PL_QUANT_H
#define PL_QUANT_H

#include <stddef.h>
#include <stdint.h>
#include "dtype.h"

#define PL_QK 32    /* elements per block of Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 */
#define PL_QK_K 256 /* elements per K-quant super-block */

typedef struct { uint16_t d; uint8_t qs[PL_QK / 2]; } pl_block_q4_0;
typedef struct { uint16_t d, m; uint8_t qs[PL_QK / 2]; } pl_block_q4_1;
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[PL_QK / 2]; } pl_block_q5_0;
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[PL_QK / 2]; } pl_block_q5_1;
typedef struct { uint16_t d; int8_t qs[PL_QK]; } pl_block_q8_0;
typedef struct { uint8_t scales[PL_QK_K / 16]; uint8_t qs[PL_QK_K / 4]; uint16_t d, dmin; } pl_block_q2_K;
typedef struct { uint8_t hmask[PL_QK_K / 8]; uint8_t qs[PL_QK_K / 4]; uint8_t scales[12]; uint16_t d; } pl_block_q3_K;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[PL_QK_K / 2]; } pl_block_q4_K;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[PL_QK_K / 8]; uint8_t qs[PL_QK_K / 2]; } pl_block_q5_K;
typedef struct { uint8_t ql[PL_QK_K / 2]; uint8_t qh[PL_QK_K / 4]; int8_t scales[PL_QK_K / 16]; uint16_t d; } pl_block_q6_K;

_Static_assert(sizeof(pl_block_q4_0) == 18, "q4_0 block");
_Static_assert(sizeof(pl_block_q4_1) == 20, "q4_1 block");
_Static_assert(sizeof(pl_block_q5_0) == 22, "q5_0 block");
_Static_assert(sizeof(pl_block_q5_1) == 24, "q5_1 block");
_Static_assert(sizeof(pl_block_q8_0) == 34, "q8_0 block");
_Static_assert(sizeof(pl_block_q2_K) == 84, "q2_K block");
_Static_assert(sizeof(pl_block_q3_K) == 110, "q3_K block");
_Static_assert(sizeof(pl_block_q4_K) == 144, "q4_K block");
_Static_assert(sizeof(pl_block_q5_K) == 176, "q5_K block");
_Static_assert(sizeof(pl_block_q6_K) == 210, "q6_K block");

/* Dequantize n elements (a whole number of blocks) of type t from src into
 * dst. Supports F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K.
 * Returns 0, or -1 if t is unsupported or n is not a whole number of blocks. */
int pl_dequantize_row(pl_dtype t, const void *src, float *dst, int64_t n);
int pl_dtype_can_dequantize(pl_dtype t);

struct pl_qweight;

/* Quantization state a weight format keeps outside its rows (NF4's absmax
 * per block, double-quantized, lives in lora/nf4.c). row() dequantizes row r
 * of w into dst (w->cols floats) and returns 0, or -1 on failure. */
typedef struct pl_qaux {
    int (*row)(const struct pl_qweight *w, int64_t r, float *dst);
} pl_qaux;

/* A weight matrix (rows = out features, cols = in features) in any dtype
 * pl_dequantize_row supports; row r starts at data + r * row_bytes. When aux
 * is set, the rows are read only through aux->row (dtype then names the
 * format, e.g. PL_NF4, and data/row_bytes are the format's own business). */
typedef struct pl_qweight {
    pl_dtype dtype;
    int64_t rows, cols;
    size_t row_bytes;
    const void *data;
    const pl_qaux *aux;
} pl_qweight;

/* Quantizers (quantize.c): n floats, a whole number of blocks, to type t,
 * byte for byte what ggml's reference quantizers write (llama.cpp's
 * quantizer without an importance matrix, gguf-py). pl_quantize_row takes
 * F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K and returns
 * 0, or -1 when t is not one of them or n is not whole blocks. dst need not
 * be aligned. Non-finite inputs give unspecified (but defined) bytes. */
int pl_quantize_row(pl_dtype t, const float *x, void *dst, int64_t n);
int pl_dtype_can_quantize(pl_dtype t);
void pl_quantize_row_q8_0(const float *x, pl_block_q8_0 *y, int64_t n);
void pl_quantize_row_q4_0(const float *x, pl_block_q4_0 *y, int64_t n);
void pl_quantize_row_q4_1(const float *x, pl_block_q4_1 *y, int64_t n);
void pl_quantize_row_q5_0(const float *x, pl_block_q5_0 *y, int64_t n);
void pl_quantize_row_q5_1(const float *x, pl_block_q5_1 *y, int64_t n);
void pl_quantize_row_q4_K(const float *x, pl_block_q4_K *y, int64_t n);
void pl_quantize_row_q5_K(const float *x, pl_block_q5_K *y, int64_t n);
void pl_quantize_row_q6_K(const float *x, pl_block_q6_K *y, int64_t n);

/* Dot product of one weight row of type t (n elements) with an fp32 vector.
 * Fast (AVX2+FMA when the CPU has it, checked at run time) for F32, F16, BF16,
 * Q4_0, Q4_1, Q8_0; other types go block by block through dequantization.
 * Always the same bits for the same inputs on the same machine. */
float pl_vec_dot_f32(pl_dtype t, const void *row, const float *x, int64_t n);

/* out[j] = pl_vec_dot_f32(t, row, x + j * x_stride, n) for j < nx, the same
 * bits, with each weight block unpacked once for two vectors (Q4_0, Q4_1,
 * Q8_0 with AVX2): the batched-generation hot loop. */
void pl_vec_dot_f32_multi(pl_dtype t, const void *row, const float *x, size_t x_stride, int nx, int64_t n,
                          float *out);

/* Dot product of a weight row with an activation row already quantized to
 * Q8_0 (int8 products, as llama.cpp does; faster, slightly less exact).
 * Supports Q4_0, Q4_1, Q8_0; returns NaN for other types. */
float pl_vec_dot_q8_0(pl_dtype t, const void *row, const pl_block_q8_0 *xq, int64_t n);

/* 1 when the running CPU supports AVX2 and FMA (the fast paths). */
int pl_cpu_has_avx2(void);

/* Tests only: nonzero makes the dot products take their portable scalar
 * paths even on an AVX2 CPU (so both paths can be checked); 0 restores the
 * default. Not meant to be toggled while other threads run dot products. */
void pl_quant_force_scalar(int on);

#endif
