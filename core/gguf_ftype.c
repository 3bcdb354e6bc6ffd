/* gguf_ftype.c: llama.cpp's file types and its per-tensor type choice for
 * Llama-family models (dense, no importance matrix, no overrides). */
#include "gguf_ftype.h"

#include <string.h>
#include <strings.h>

static const struct {
    pl_gguf_ftype f;
    const char *name;
    pl_dtype base;
} ftypes[] = {
    {PL_FTYPE_F32, "F32", PL_F32},       {PL_FTYPE_F16, "F16", PL_F16},       {PL_FTYPE_BF16, "BF16", PL_BF16},
    {PL_FTYPE_Q8_0, "Q8_0", PL_Q8_0},    {PL_FTYPE_Q6_K, "Q6_K", PL_Q6_K},    {PL_FTYPE_Q5_K_M, "Q5_K_M", PL_Q5_K},
    {PL_FTYPE_Q5_K_S, "Q5_K_S", PL_Q5_K}, {PL_FTYPE_Q5_1, "Q5_1", PL_Q5_1},   {PL_FTYPE_Q5_0, "Q5_0", PL_Q5_0},
    {PL_FTYPE_Q4_K_M, "Q4_K_M", PL_Q4_K}, {PL_FTYPE_Q4_K_S, "Q4_K_S", PL_Q4_K}, {PL_FTYPE_Q4_1, "Q4_1", PL_Q4_1},
    {PL_FTYPE_Q4_0, "Q4_0", PL_Q4_0},
};
#define NFT (sizeof ftypes / sizeof ftypes[0])

int pl_gguf_ftype_parse(const char *s, pl_gguf_ftype *out) {
    for (size_t i = 0; s && i < NFT; i++)
        if (!strcasecmp(s, ftypes[i].name)) {
            *out = ftypes[i].f;
            return 0;
        }
    return -1;
}

const char *pl_gguf_ftype_name(pl_gguf_ftype f) {
    for (size_t i = 0; i < NFT; i++)
        if (ftypes[i].f == f) return ftypes[i].name;
    return "?";
}

const char *pl_gguf_ftype_list(void) {
    return "f32, f16, bf16, q8_0, q6_k, q5_k_m, q5_k_s, q5_1, q5_0, q4_k_m, q4_k_s, q4_1, q4_0";
}

static pl_dtype base_type(pl_gguf_ftype f) {
    for (size_t i = 0; i < NFT; i++)
        if (ftypes[i].f == f) return ftypes[i].base;
    return PL_F32;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static int is_quantized(pl_dtype t) { return t != PL_F32 && t != PL_F16 && t != PL_BF16; }

/* llama.cpp's "use more bits" layers: the first and last eighth, and every
 * third one between. */
static int more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

pl_dtype pl_gguf_tensor_type(pl_gguf_ftype f, const pl_gguf_tensor_info *t) {
    /* only 2-D weights are quantized, never norms */
    if (t->n_dims < 2 || !ends_with(t->name, "weight") || strstr(t->name, "_norm.weight")) return PL_F32;
    pl_dtype ty = base_type(f);
    if (!is_quantized(ty)) return ty;
    int output = !strcmp(t->name, "output.weight"), embd = !strcmp(t->name, "token_embd.weight");
    if (output || (embd && !t->has_output)) {
        /* the output projection (or the embedding that doubles as it) keeps more bits */
        if (t->ne0 % pl_dtype_block_elems(ty)) ty = PL_Q8_0;
        else if (ty != PL_Q8_0) ty = PL_Q6_K;
    } else if (!embd && strstr(t->name, "attn_v.weight")) {
        if ((f == PL_FTYPE_Q4_K_M || f == PL_FTYPE_Q5_K_M) && more_bits(t->layer, t->n_layers)) ty = PL_Q6_K;
        else if (f == PL_FTYPE_Q4_K_S && t->layer < 4) ty = PL_Q5_K;
    } else if (!embd && strstr(t->name, "ffn_down")) {
        if ((f == PL_FTYPE_Q4_K_M || f == PL_FTYPE_Q5_K_M) && more_bits(t->layer, t->n_layers)) ty = PL_Q6_K;
        else if (f == PL_FTYPE_Q4_K_S && t->layer < t->n_layers / 8) ty = PL_Q5_K;
    }
    /* rows that are not whole blocks: the nearest 32-element type, else F16 */
    if (t->ne0 % pl_dtype_block_elems(ty)) {
        if (ty == PL_Q4_K) ty = PL_Q5_0;
        else if (ty == PL_Q5_K) ty = PL_Q5_1;
        else if (ty == PL_Q6_K) ty = PL_Q8_0;
        if (t->ne0 % pl_dtype_block_elems(ty)) ty = PL_F16;
    }
    return ty;
}
