/* train.h: training an fp32 pl_model: parameters with Hugging Face names,
 * gradients, a forward over packed rows that keeps what the backward needs,
 * the backward to every parameter and to the input of every linear layer,
 * and plain SGD / AdamW steps. (The QLoRA issue builds the real run on this:
 * frozen base, LoRA adapters, schedules, checkpoints.)
 *
 * One step over micro-batches mb[0..n):
 *
 *   pl_train_zero_grad(t);
 *   n = total trained tokens (targets >= 0) over all micro-batches;
 *   for each mb: pl_train_forward(t, mb, ...); pl_train_backward(t, 1.0 / n);
 *   pl_train_adamw(t, &opts);      (or pl_train_sgd)
 *
 * so the gradient is that of the mean loss over the whole step, whatever the
 * split into micro-batches. pl_train_step does exactly this.
 *
 * Memory (docs/memory.md has the per-layer list and byte counts): the saved
 * activations for max_T tokens are allocated once by pl_train_init through
 * the backend's alloc with PL_MEM_ACTIVATIONS and reused by every forward;
 * gradients of parameters and of activations are PL_MEM_GRADIENTS; AdamW's
 * moments PL_MEM_OPTIMIZER (allocated at the first AdamW step); scratch
 * PL_MEM_WORKSPACE. pl_train_activation_bytes gives the exact count.
 *
 * QLoRA (pl_train_init_opts with frozen_base): the base stays as loaded (any
 * pl_qweight: fp32, GGUF quant types, NF4 through aux); the forward runs
 * through be->linear_q, input gradients through be->linear_q_bwd_x, and the
 * context has no parameters (n_params == 0): the embedding, norms, LM head
 * and every linear weight are frozen, with no gradient and no optimizer
 * state. Only the LoRA adapters attached with pl_train_attach_lora (lora/
 * lora.h) train; zero_grad, grad_norm, scale_grads, sgd, adamw and
 * pl_train_step cover their A and B after the parameters.
 *
 * Activation checkpointing (opts.checkpoint): the forward keeps only each
 * layer's input x_in; the other per-layer buffers exist once and the
 * backward recomputes each layer's forward from x_in before walking back
 * through it. Dropout masks are a pure function of (lora seed, t->step,
 * t->micro, layer, module, element), so the recomputation draws the same
 * masks and the gradients are bit for bit those without checkpointing.
 *
 * Offloaded checkpoints (opts.offload, with checkpoint, on a backend with
 * alloc_host: CUDA): two device buffers take turns as the layers' x_in. The
 * forward copies each layer's input to pinned host memory on the backend's
 * copy stream while the layer computes (the inputs of the last two layers
 * stay on the device); the backward fetches layer l-1's input while it
 * walks back through layer l. The copies move bytes only: the gradients are
 * bit for bit those of checkpointing without offload.
 *
 * MLP chunks (opts.mlp_chunk, with checkpoint): the MLP is per token, so each
 * layer runs it over chunks of rows, in the forward and again in the
 * backward (gate and up recomputed per chunk, then walked back), and its
 * (T, hidden) buffers shrink to (chunk, hidden): what long sequences need
 * most after the saved inputs. Dropout masks are the unchunked ones; the
 * gradients of the adapted MLP modules are summed chunk by chunk, so the bits
 * differ from an unchunked run's by rounding. */
#ifndef PL_TRAIN_H
#define PL_TRAIN_H

#include <stddef.h>
#include <stdint.h>
#include "../core/error.h"
#include "../core/lin.h"
#include "model.h"

/* A trained tensor: w (rows, cols) row-major, or a vector (rows = n, cols = 1). */
typedef struct pl_param {
    char name[96];      /* Hugging Face name, e.g. model.layers.3.self_attn.q_proj.weight */
    float *w;           /* the model's weights (writable) */
    float *g;           /* gradient, same shape (PL_MEM_GRADIENTS) */
    float *m, *v;       /* AdamW moments (PL_MEM_OPTIMIZER) or NULL before the first step */
    int64_t rows, cols;
    size_t n;           /* rows * cols */
    int frozen;         /* set by the caller: no weight gradient through linear_bwd / embedding_bwd, no
                         * optimizer update (the input gradients still flow) */
} pl_param;

/* Called by the backward for every linear layer out = x . W^T + b right after
 * its input gradient dx = dout . W is written (before the gradients of the
 * layer's sibling projections are added to it): x (T, I) the forward input,
 * dout (T, O) the gradient of the output, dx (T, I) which the hook may modify
 * (e.g. add LoRA's x-gradient). layer is -1 for the LM head. */
/* Hooks see host floats: they need a backend with host_memory (the CPU). */
typedef void (*pl_train_hook)(void *user, int layer, pl_lin which, const float *x, const float *dout,
                              float *dx, int T, int I, int O);

typedef struct pl_layer_acts {
    /* saved by the forward for the backward; all (T, width) row-major, in the
     * backend's activation dtype (backend.h: touched through its ops only) */
    void *x_in;   /* (T,D)   residual stream entering the layer (= previous layer's output) */
    void *xn1;    /* (T,D)   rmsnorm(x_in) * attn_norm: input of q/k/v */
    void *q;      /* (T,qd)  after RoPE */
    void *k;      /* (T,kvd) after RoPE */
    void *v;      /* (T,kvd) */
    void *att;    /* (T,qd)  attention output: input of o_proj */
    void *x_mid;  /* (T,D)   x_in + o_proj(att) */
    void *xn2;    /* (T,D)   rmsnorm(x_mid) * ffn_norm: input of gate/up */
    void *gate;   /* (T,H)   gate_proj(xn2), before SiLU */
    void *up;     /* (T,H)   up_proj(xn2) */
    void *act;    /* (T,H)   silu(gate) * up: input of down_proj */
} pl_layer_acts;

struct pl_lora;

typedef struct pl_train {
    pl_model *m;
    const pl_backend *be;
    int max_T;                   /* capacity of the saved activations */
    int n_params;
    pl_param *params;            /* HF order: embed, per layer (norms, q,k,v(+bias), o, gate, up, down), norm, lm_head */
    /* index of each parameter in params (-1 when absent) */
    int p_embed, p_norm, p_head; /* p_head == -1 when tied */
    int (*p_layer)[12];          /* [l][j]: attn_norm, ffn_norm, q, k, v, o, gate, up, down, bq, bk, bv */
    /* saved activations (PL_MEM_ACTIVATIONS) of the last forward */
    int T;                       /* tokens of the last forward; 0 when none is pending */
    int32_t *ids, *targets, *pos, *seg, *qlast; /* (max_T) */
    int has_seg;
    pl_layer_acts *acts;         /* (n_layers) */
    void *x_final;              /* (T,D) output of the last layer */
    void *xnf;                  /* (T,D) final rmsnorm: input of the LM head */
    void *logits;               /* (T,V); the backward overwrites it with dlogits (NULL: fused head) */
    float *lse;                  /* (T) fp32 log-sum-exp of each row's logits, with be->lm_head_ce */
    /* activation gradients (PL_MEM_GRADIENTS) */
    void *d_res, *d_tmp, *d_xn, *d_q, *d_k, *d_v, *d_att, *d_act, *d_up;
    /* workspace (PL_MEM_WORKSPACE) */
    void *ws_lin;               /* (T,D) output of o_proj / down_proj before the residual add */
    /* optimizer */
    int step;                    /* AdamW steps taken (1-based t of the last step) */
    /* backward hook (NULL: none) */
    pl_train_hook hook;
    void *hook_user;
    /* called by the backward when layer l is done: every gradient of its
     * parameters and LoRA modules for this micro-batch is written (on the
     * backend; a device backend's may still be queued). NULL: none. The
     * data-parallel run sends a layer's gradients from here (run_dist.c). */
    void (*layer_done)(void *user, int layer);
    void *layer_done_user;
    /* per-op timers of the last forward/backward (seconds), when timing is set */
    int timing;
    double t_op[16];
    /* QLoRA (pl_train_init_opts, pl_train_attach_lora) */
    int frozen_base;             /* base weights in their stored dtype, no parameters */
    int checkpoint;              /* per-layer activation checkpointing */
    int paged_optim;             /* paged AdamW state (pl_train_opts) */
    size_t paged_min;
    int offload;                 /* offloaded checkpoints (pl_train_opts) */
    int mlp_chunk;               /* MLP rows per chunk (pl_train_opts), 0: all */
    void *x_stage[2];            /* offload: the two device x_in buffers (acts[l].x_in = x_stage[l & 1]) */
    void **x_host;               /* offload: (n_layers) pinned host copies of x_in; NULL for the last two */
    int micro;                   /* micro-batch index within the step (dropout key; pl_train_step sets it) */
    void *ws_q;                 /* linear_q workspace (PL_MEM_WORKSPACE) */
    struct pl_lora *lora;        /* attached adapters (not owned) or NULL */
    int *lora_idx;               /* (n_layers * 7): module index in lora->mods, or -1 */
    void **lora_xa;              /* per module (T, r): A . drop(x), saved (PL_MEM_ACTIVATIONS) */
    void *lora_u, *lora_du;     /* (T, max in): dropped input and its gradient (PL_MEM_WORKSPACE) */
    void *lora_y;               /* (T, max out): B . xa / the scaled output gradient (PL_MEM_WORKSPACE) */
    void *lora_dxa;             /* (T, max r) (PL_MEM_GRADIENTS) */
    int T_fwd;                   /* tokens of the forward in progress (or of the last one) */
} pl_train;

/* Timer slots of t_op[]. */
enum { PL_TT_EMBED = 0, PL_TT_NORM, PL_TT_ROPE, PL_TT_ATTN, PL_TT_SWIGLU, PL_TT_LINEAR, PL_TT_HEAD,
       PL_TT_LOSS, PL_TT_ADD, PL_TT_EMBED_B, PL_TT_NORM_B, PL_TT_ROPE_B, PL_TT_ATTN_B, PL_TT_SWIGLU_B,
       PL_TT_LINEAR_B, PL_TT_HEAD_B, PL_TT_N };
const char *pl_train_timer_name(int slot);

/* A training context for m (weights must be fp32: load with opts.fp32) and
 * rows of up to max_T tokens. Weights that live in a read-only file map are
 * copied into memory the model owns and the model is pointed at the copies,
 * so m must outlive t. */
int pl_train_init(pl_train **out, pl_model *m, int max_T, pl_err *err);
void pl_train_free(pl_train *t);

typedef struct pl_train_opts {
    int frozen_base;  /* QLoRA: keep the base as loaded (any dtype, read-only), train only attached LoRA */
    int checkpoint;   /* keep only each layer's input; recompute the layer in the backward */
    int paged_optim;  /* AdamW moments of tensors of >= paged_min elements through be->alloc_paged */
    size_t paged_min; /* 0: PL_PAGED_MIN (trainer/plan.h: bitsandbytes' threshold) */
    int offload;      /* with checkpoint: saved layer inputs in pinned host memory (be->alloc_host) */
    int mlp_chunk;    /* with checkpoint: each layer's MLP runs over chunks of this many tokens (a multiple
                       * of 8; 0: all at once), forward and backward, so its (T, hidden) buffers are (chunk,
                       * hidden); the LoRA gradients are then summed chunk by chunk (other bits) */
} pl_train_opts;
/* n floats of AdamW state for a tensor of n elements: paged when the
 * context's options say so and the backend can (tagged PL_MEM_OPTIMIZER). */
float *pl_train_optim_alloc(pl_train *t, size_t n);
/* pl_train_init with options (o NULL = pl_train_init: every parameter fp32,
 * trainable, no checkpointing). With frozen_base the weights may be any
 * pl_qweight and are never written. */
int pl_train_init_opts(pl_train **out, pl_model *m, int max_T, const pl_train_opts *o, pl_err *err);

/* Attach LoRA adapters (lora/lora.h; l must outlive t, or be detached with
 * NULL): the forward adds scale * B . A . drop(x) to every adapted linear
 * layer, the backward fills the modules' gA and gB and adds LoRA's input
 * gradient, and the optimizer functions update A and B. Allocates the saved
 * xa (T, r) of each module (PL_MEM_ACTIVATIONS) and LoRA scratch. The modules'
 * shapes must match the model's. */
int pl_train_attach_lora(pl_train *t, struct pl_lora *l, pl_err *err);

/* Bytes pl_train_init allocates with PL_MEM_ACTIVATIONS for config c and
 * max_T tokens: 4*T*(L*(4D + 2qd + 2kvd + 3H) + 2D + V + 5). */
size_t pl_train_activation_bytes(const pl_model_config *c, int max_T);
/* The same with checkpointing on or off: with it, per layer only x_in
 * (4*T*D) plus one shared set of the other buffers:
 * 4*T*(L*D + (3D + 2qd + 2kvd + 3H) + 2D + V + 5). LoRA adds 4*T*r per
 * adapted module (its saved xa) either way. */
size_t pl_train_activation_bytes_ckpt(const pl_model_config *c, int max_T, int checkpoint);

/* Forward over T packed tokens: ids (T), targets (T, < 0 = not trained),
 * pos (T) RoPE positions or NULL (0..T-1), seg (T) segment ids or NULL (one
 * sequence). Keeps the activations for pl_train_backward. *loss_sum gets the
 * sum of the per-token losses, *n_valid the count of trained tokens (either
 * may be NULL). logits stay in t->logits until the backward. */
int pl_train_forward(pl_train *t, const int32_t *ids, const int32_t *targets, const int32_t *pos,
                     const int32_t *seg, int T, double *loss_sum, int64_t *n_valid, pl_err *err);

/* Backward of scale * (sum of the last forward's per-token losses): adds
 * into every parameter's gradient. scale is 1 / (trained tokens in the whole
 * step) for a mean. Consumes the forward's logits. */
int pl_train_backward(pl_train *t, float scale, pl_err *err);

void pl_train_zero_grad(pl_train *t);
/* Global L2 norm of all gradients (backend sumsq, in parameter order). */
double pl_train_grad_norm(const pl_train *t);
/* Multiply every gradient by s (clipping). Like zero_grad, grad_norm, sgd
 * and adamw, this covers the parameters then the attached LoRA modules (gA
 * then gB of each, in module order). */
void pl_train_scale_grads(pl_train *t, float s);

/* w -= lr * g on every parameter. */
void pl_train_sgd(pl_train *t, float lr);

typedef struct pl_adamw_opts {
    float lr, beta1, beta2, eps, weight_decay;
} pl_adamw_opts;
/* torch.optim.AdamW's defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, wd 0.01. */
pl_adamw_opts pl_adamw_defaults(void);
/* One AdamW step on every parameter (moments allocated on the first call). */
int pl_train_adamw(pl_train *t, const pl_adamw_opts *o, pl_err *err);

/* One micro-batch: a packed row of T tokens (pointers as pl_train_forward). */
typedef struct pl_microbatch {
    const int32_t *ids, *targets, *pos, *seg;
    int T;
} pl_microbatch;

/* zero_grad, forward + backward of each micro-batch with the loss normalized
 * by the trained tokens of the whole step, then AdamW (o) or, when o is NULL,
 * SGD with lr sgd_lr. *loss (may be NULL) gets the step's mean loss. */
int pl_train_step(pl_train *t, const pl_microbatch *mb, int n_mb, const pl_adamw_opts *o, float sgd_lr,
                  double *loss, pl_err *err);
/* The gradient part of a step: zero_grad, then forward + backward of each
 * micro-batch with the loss normalized by the trained tokens of the whole
 * step. *loss (may be NULL) gets the step's mean loss. who prefixes the
 * messages ("train", "qlora"). pl_train_step and pl_qlora_step use it. */
int pl_train_accumulate(pl_train *t, const pl_microbatch *mb, int n_mb, const char *who, double *loss, pl_err *err);

/* Parameter by Hugging Face name, or NULL. */
pl_param *pl_train_param(pl_train *t, const char *name);

#endif
