/* lora.h: LoRA adapters on the linear layers of a pl_model, as PEFT defines
 * them: out += (dropout(x) . A^T . B^T) * scale, A (r, in), B (out, r),
 * scale = alpha / r (or alpha / sqrt(r) with rsLoRA). PEFT's initialization:
 * A Kaiming-uniform (a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in))) drawn from
 * the counter-based RNG keyed by (seed, module), B zero. Master weights,
 * gradients and AdamW moments are fp32 (docs/memory.md). Dropout masks are a
 * pure function of (seed, step, layer, module, element), so recomputation
 * under activation checkpointing draws the same masks. */
#ifndef PL_LORA_H
#define PL_LORA_H

#include <stdint.h>
#include "../core/error.h"
#include "../trainer/model.h"
#include "../trainer/train.h"

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
    /* (added) the backend whose alloc holds A, B (PL_MEM_WEIGHTS), gA, gB
     * (PL_MEM_GRADIENTS) and the moments (PL_MEM_OPTIMIZER) */
    const pl_backend *be;
} pl_lora;

/* Parse "all-linear" or a comma list of q,k,v,o,gate,up,down (also the
 * q_proj... names) into a targets mask. */
int pl_lora_parse_targets(const char *s, unsigned *mask, pl_err *err);

int pl_lora_init(pl_lora **out, const pl_model *m, const pl_lora_cfg *cfg, pl_err *err);
void pl_lora_free(pl_lora *l);
pl_lora_module *pl_lora_find(pl_lora *l, int layer, pl_lin which);

/* PEFT adapter directory: adapter_config.json + adapter_model.safetensors
 * with names base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight
 * (r, in) and ...lora_B.weight (out, r); written atomically. */
int pl_lora_save_peft(const pl_lora *l, const pl_model *m, const char *dir, const char *base_model_name,
                      pl_err *err);
int pl_lora_load_peft(pl_lora **out, const pl_model *m, const char *dir, pl_err *err);

/* W += scale * B . A on every adapted module of an fp32 model. */
int pl_lora_merge(pl_model *m, const pl_lora *l, pl_err *err);

/* ---- added ---- */

/* dst (T, I) = dropout(src): element e = t*I + i is kept (and multiplied by
 * 1/(1-p)) iff a Philox draw keyed by (cfg.seed, stream(step, micro, layer,
 * which), e) is >= p * 2^32; dropped elements are 0. With p == 0 dst = src.
 * dst may alias src. Same bits at any thread count. */
void pl_lora_dropout(const pl_lora *l, int step, int micro, int layer, pl_lin which, float *dst,
                     const float *src, int T, int cols);

/* Options of one QLoRA optimizer step. */
typedef struct pl_qlora_opts {
    pl_adamw_opts adamw;
    float max_grad_norm;   /* clip the global L2 norm of the LoRA grads to this (QLoRA: 0.3); <= 0: off */
} pl_qlora_opts;

/* One full QLoRA step on a context with attached adapters: zero the grads;
 * forward + backward of each micro-batch (t->micro = its index) with the
 * loss normalized by the trained tokens of the whole step; global-norm
 * clipping as torch.nn.utils.clip_grad_norm_ (coef = max / (norm + 1e-6),
 * applied when < 1); AdamW (t->step advances; the next step draws new
 * dropout masks). *loss the step's mean loss, *grad_norm the norm before
 * clipping (either may be NULL). */
int pl_qlora_step(pl_train *t, const pl_microbatch *mb, int n_mb, const pl_qlora_opts *o, double *loss,
                  double *grad_norm, pl_err *err);

/* Number of trainable LoRA floats (sum of r*(in+out)). */
int64_t pl_lora_n_params(const pl_lora *l);

#endif
