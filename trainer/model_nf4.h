/* model_nf4.h: a model with an NF4 base (QLoRA's frozen 4-bit weights): the
 * model quantizes its own layer weights with lora/nf4.h's format, keeps
 * them in memory it owns, caches them on disk, and reads them from
 * bitsandbytes-4bit checkpoints. */
#ifndef PL_MODEL_NF4_H
#define PL_MODEL_NF4_H

#include "../core/error.h"
#include "../lora/nf4.h"
#include "model.h"

/* A model-owned pl_nf4 for n elements, laid out (lora/nf4.h) and zeroed:
 * the struct and its arrays in one pl_model_own allocation (q->buf is NULL:
 * pl_nf4_free must not be called on it; the model frees it). NULL when out
 * of memory or n / blocksize are out of range. */
pl_nf4 *pl_model_nf4_new(pl_model *m, int64_t n, int blocksize, int double_quant);

/* Replace every layer's q, k, v, o, gate, up and down weight of m with an
 * NF4 view (row blocks dequantized into one tensor's fp32 buffer at a time;
 * the quantized tensors are owned by m). Embeddings, norms and the LM head
 * are left as they are; weights already PL_NF4 are skipped. The pl_nf4 of a
 * model weight (w->data) has buf NULL: never pl_nf4_free it. */
int pl_model_nf4_quantize(pl_model *m, int blocksize, int double_quant, pl_err *err);
/* The same; with a backend that has quantize_nf4 (CUDA) and double
 * quantization, each BF16/F16 weight is quantized on the device instead (its
 * resident copy made there, the same bytes copied back). *on_device (may be
 * NULL) gets the count of weights so made. */
int pl_model_nf4_quantize_on(pl_model *m, int blocksize, int double_quant, int *on_device, pl_err *err);

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
int pl_model_nf4_cache_save(const pl_model *m, const char *path, pl_err *err);
int pl_model_nf4_cache_load(pl_model *m, const char *path, pl_err *err);

/* A layer weight of a bitsandbytes-4bit safetensors checkpoint (transformers'
 * save_pretrained of a load_in_4bit NF4 model): the U8 tensor `name` holds
 * the packed codes (rows * cols + 1) / 2 bytes; `<name>.quant_state.
 * bitsandbytes__nf4` JSON (quant_type "nf4", blocksize, shape [rows, cols],
 * nested_blocksize 256 and nested_offset when double-quantized),
 * `<name>.quant_map` (the 16 NF4 values), `<name>.absmax` (U8 codes, or F32
 * without double quant), `<name>.nested_absmax` (F32), `<name>.
 * nested_quant_map` (F32, 256). Every size is checked; w becomes a view of a
 * model-owned pl_nf4. Called from trainer/model_hf.c for U8 weights. */
int pl_model_nf4_bnb_weight(pl_model *m, const char *name, int64_t rows, int64_t cols, pl_qweight *w, pl_err *err);

#endif
