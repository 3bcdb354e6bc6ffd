/* lora.h: LoRA adapters on the linear layers of a decoder, as PEFT defines
 * them: out += (dropout(x) . A^T . B^T) * scale, A (r, in), B (out, r),
 * scale = alpha / r (or alpha / sqrt(r) with rsLoRA). PEFT's initialization:
 * A Kaiming-uniform (a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in))) drawn from
 * the counter-based RNG keyed by (seed, module), B zero. Master weights,
 * gradients and AdamW moments are fp32 (docs/memory.md). Dropout masks are a
 * pure function of (seed, step, layer, module, element), so recomputation
 * under activation checkpointing draws the same masks.
 *
 * This layer holds the tensors, their init and the PEFT adapter files, with
 * shapes given as arguments: it knows no pl_model. trainer/model_lora.h puts
 * adapters on a model (and merges them); trainer/qlora.h trains them. */
#ifndef PL_LORA_H
#define PL_LORA_H

#include <stdint.h>
#include "../core/error.h"
#include "../core/lin.h"
#include "../core/mem.h"

typedef struct pl_lora_cfg {
    int r;              /* rank, >= 1 */
    float alpha;        /* lora_alpha */
    float dropout;      /* lora_dropout, in [0, 1) */
    int rslora;         /* scale = alpha / sqrt(r) instead of alpha / r */
    unsigned targets;   /* bit (1u << pl_lin) per target module; PL_LORA_ALL_LINEAR = q,k,v,o,gate,up,down */
    uint64_t seed;      /* init and dropout */
} pl_lora_cfg;

#define PL_LORA_ALL_LINEAR ((1u << PL_LIN_Q) | (1u << PL_LIN_K) | (1u << PL_LIN_V) | (1u << PL_LIN_O) | \
                            (1u << PL_LIN_GATE) | (1u << PL_LIN_UP) | (1u << PL_LIN_DOWN))

typedef struct pl_lora_module {
    int layer;
    pl_lin which;
    int r, in, out;
    float scale;
    float *A, *B;       /* (r, in), (out, r): master weights */
    float *gA, *gB;     /* gradients, same shapes */
    float *mA, *vA, *mB, *vB; /* AdamW moments or NULL before the first step */
} pl_lora_module;

typedef struct pl_lora {
    pl_lora_cfg cfg;
    int n;
    pl_lora_module *mods;  /* in PEFT's order: layer by layer, q,k,v,o,gate,up,down */
    /* the allocator (a backend's) holding A, B (PL_MEM_WEIGHTS), gA, gB
     * (PL_MEM_GRADIENTS) and the moments (PL_MEM_OPTIMIZER) */
    pl_allocator mem;
} pl_lora;

/* Parse "all-linear" or a comma list of q,k,v,o,gate,up,down (also the
 * q_proj... names) into a targets mask. */
int pl_lora_parse_targets(const char *s, unsigned *mask, pl_err *err);

/* The shape of one adapted weight: out (rows) x in (cols). */
typedef struct pl_lora_dims {
    int out, in;
} pl_lora_dims;

/* Adapters for n_layers layers, module j of layer l shaped dims[l * 7 + j]
 * (j in q,k,v,o,gate,up,down order; only cfg->targets are used), with A = B
 * = 0, allocated with mem. */
int pl_lora_alloc(pl_lora **out, int n_layers, const pl_lora_dims *dims, const pl_lora_cfg *cfg,
                  const pl_allocator *mem, pl_err *err);
/* PEFT's initialization of fresh modules: A Kaiming-uniform from (cfg.seed,
 * module), B stays 0. */
void pl_lora_init_weights(pl_lora *l);
void pl_lora_free(pl_lora *l);
pl_lora_module *pl_lora_find(pl_lora *l, int layer, pl_lin which);

/* PEFT adapter directory: adapter_config.json + adapter_model.safetensors
 * with names base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight
 * (r, in) and ...lora_B.weight (out, r); written atomically. write checks
 * that every module's layer is below n_layers; read checks every tensor
 * against dims (as pl_lora_alloc). */
int pl_lora_write_peft(const pl_lora *l, int n_layers, const char *dir, const char *base_model_name, pl_err *err);
int pl_lora_read_peft(pl_lora **out, int n_layers, const pl_lora_dims *dims, const pl_allocator *mem, const char *dir,
                      pl_err *err);

/* Number of trainable LoRA floats (sum of r*(in+out)). */
int64_t pl_lora_n_params(const pl_lora *l);

#endif
