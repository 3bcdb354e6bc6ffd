/* gguf_ftype.h: llama.cpp's file types ("Q4_K_M", ...) and the tensor type
 * each tensor of a Llama-family model gets under one, as llama.cpp's
 * quantizer assigns them without an importance matrix (llama-quant.cpp of
 * the llama.cpp that tests/requirements-peers.txt pins through
 * llama-cpp-python; tests/cli_export_quant.sh checks the mixtures tensor by
 * tensor against it). */
#ifndef PL_GGUF_FTYPE_H
#define PL_GGUF_FTYPE_H

#include <stdint.h>
#include "dtype.h"

/* llama_ftype values, as stored in general.file_type. */
typedef enum pl_gguf_ftype {
    PL_FTYPE_F32 = 0,
    PL_FTYPE_F16 = 1,
    PL_FTYPE_Q4_0 = 2,
    PL_FTYPE_Q4_1 = 3,
    PL_FTYPE_Q8_0 = 7,
    PL_FTYPE_Q5_0 = 8,
    PL_FTYPE_Q5_1 = 9,
    PL_FTYPE_Q4_K_S = 14,
    PL_FTYPE_Q4_K_M = 15,
    PL_FTYPE_Q5_K_S = 16,
    PL_FTYPE_Q5_K_M = 17,
    PL_FTYPE_Q6_K = 18,
    PL_FTYPE_BF16 = 32,
} pl_gguf_ftype;

/* The names users type: "q4_k_m", "Q4_K_M", "f16", ... (case-insensitive).
 * Returns 0 and sets *out, or -1. */
int pl_gguf_ftype_parse(const char *s, pl_gguf_ftype *out);
/* "Q4_K_M", "F16", ...; "?" for a value not in the enum. */
const char *pl_gguf_ftype_name(pl_gguf_ftype f);
/* Every name pl_gguf_ftype_parse takes, lower case, separated by sep
 * (for --help texts and error messages). */
const char *pl_gguf_ftype_list(void);

/* What llama.cpp's quantizer decides for one tensor. */
typedef struct pl_gguf_tensor_info {
    const char *name;   /* llama.cpp's tensor name, e.g. "blk.3.attn_v.weight" */
    int n_dims;         /* 1 for norms and biases */
    int64_t ne0;        /* elements per row */
    int layer;          /* for blk.N.* tensors: N (llama.cpp counts attn_v and ffn_down
                         * tensors in file order, which is layer order in our exports) */
    int n_layers;
    int has_output;     /* the model has an output.weight (untied embeddings) */
} pl_gguf_tensor_info;

/* The tensor type of t in a file of type f, from fp32 source data: 1-D
 * tensors and norms stay F32; the default type of f, then llama.cpp's
 * mixture rules (output / tied token embedding to Q6_K, attn_v and ffn_down
 * of some layers to Q6_K in Q4_K_M and Q5_K_M, ...), then its fallbacks for
 * rows that are not whole blocks (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0,
 * then F16). */
pl_dtype pl_gguf_tensor_type(pl_gguf_ftype f, const pl_gguf_tensor_info *t);

#endif
