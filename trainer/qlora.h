/* qlora.h: training LoRA adapters (lora/lora.h) attached to a pl_train
 * (pl_train_attach_lora): dropout masks and the QLoRA optimizer step. */
#ifndef PL_QLORA_H
#define PL_QLORA_H

#include "../core/error.h"
#include "../lora/lora.h"
#include "train.h"

/* dst (T, I) = dropout(src): element e = t*I + i is kept (and multiplied by
 * 1/(1-p)) iff a Philox draw keyed by (cfg.seed, stream(step, micro, layer,
 * which), e) is >= p * 2^32; dropped elements are 0. With p == 0 dst = src.
 * dst may alias src. Same bits at any thread count. */
void pl_lora_dropout(const pl_lora *l, int step, int micro, int layer, pl_lin which, float *dst,
                     const float *src, int T, int cols);
/* The dropout op's stream for (step, micro, layer, which): with the adapter
 * seed, be->dropout(dst, src, n, cfg.dropout, cfg.seed, stream) draws the
 * same mask on any backend. */
uint64_t pl_lora_drop_stream(int step, int micro, int layer, pl_lin which);

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

#endif
