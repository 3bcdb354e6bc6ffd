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
#include "../trainer/backend.h"

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

/* Replace every layer's q, k, v, o, gate, up and down weight of m with an
 * NF4 view (row blocks dequantized into one tensor's fp32 buffer at a time;
 * the quantized tensors are owned by m). Embeddings, norms and the LM head
 * are left as they are; weights already PL_NF4 are skipped. The pl_nf4 of a
 * model weight (w->data) has buf NULL: never pl_nf4_free it. */
struct pl_model;
int pl_nf4_quantize_model(struct pl_model *m, int blocksize, int double_quant, pl_err *err);

/* The quantized-base cache: the NF4 layer weights of a model, so a later run
 * skips quantization. Binary, little-endian:
 *   header (56 bytes): magic "PLNF4CA\n" (8), u32 version (1), u32 blocksize,
 *     u32 double_quant (0/1), u32 n_tensors (7 * n_layers), key (32) =
 *     sha256("potluck nf4 cache v1" | sha256 of each source weight file in
 *     order (safetensors shards, or the .gguf / .bin) | u32 blocksize |
 *     u32 double_quant)
 *   n_tensors records, in layer order q, k, v, o, gate, up, down:
 *     u32 name_len, name ("layers.<l>.<q|k|v|o|gate|up|down>"), u64 rows,
 *     u64 cols, u64 n_blocks, u64 n_nested, u32 offset (fp32 bits), u64
 *     data_bytes, then data: packed ((n+1)/2) | absmax (n_blocks codes, or
 *     n_blocks fp32 without double quant) | nested absmax (n_nested fp32)
 *   trailer: sha256 of every byte before it (32).
 * save needs every layer weight NF4 with one blocksize; it writes atomically
 * (core/atomic.h). load takes a model loaded from the same source files
 * (not yet quantized), checks the checksum, the key (recomputed from m's
 * files and the header's blocksize/double_quant), every name, shape and
 * size against the model and the file, and only then replaces the layer
 * weights with model-owned NF4 tensors. */
int pl_nf4_cache_save(const struct pl_model *m, const char *path, pl_err *err);
int pl_nf4_cache_load(struct pl_model *m, const char *path, pl_err *err);

/* A layer weight of a bitsandbytes-4bit safetensors checkpoint (transformers'
 * save_pretrained of a load_in_4bit NF4 model): the U8 tensor `name` holds
 * the packed codes (rows * cols + 1) / 2 bytes; `<name>.quant_state.
 * bitsandbytes__nf4` JSON (quant_type "nf4", blocksize, shape [rows, cols],
 * nested_blocksize 256 and nested_offset when double-quantized),
 * `<name>.quant_map` (the 16 NF4 values), `<name>.absmax` (U8 codes, or F32
 * without double quant), `<name>.nested_absmax` (F32), `<name>.
 * nested_quant_map` (F32, 256). Every size is checked; w becomes a view of a
 * model-owned pl_nf4. Called from trainer/model_hf.c for U8 weights. */
int pl_nf4_bnb_weight(struct pl_model *m, const char *name, int64_t rows, int64_t cols, pl_qweight *w, pl_err *err);

#endif
