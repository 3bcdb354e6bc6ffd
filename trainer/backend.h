/* backend.h: the op table every backend fills.
 *
 * All tensors are row-major fp32 unless said otherwise; shapes are written at
 * each op as (rows, cols). T is a number of tokens (a batch of rows packed
 * one after the other), C the model width, nh/nkv the query and key/value
 * head counts, hd the head size.
 *
 * Determinism: an op gives the same bits for the same inputs on the same
 * machine and thread count, run after run; no float reduction depends on the
 * order threads arrive (per-thread partials are summed in thread order).
 *
 * The CPU backend (trainer/cpu/) is the reference every other backend is
 * checked against. */
#ifndef PL_BACKEND_H
#define PL_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include "../core/dtype.h"
#include "../core/error.h"
#include "../core/mem.h"
#include "../core/quant.h"

/* Row r of w as floats (w->cols of them): through aux->row when set, else
 * pl_dequantize_row. 0, or -1 for an unsupported dtype. */
int pl_qweight_row(const pl_qweight *w, int64_t r, float *dst);

typedef struct pl_backend {
    const char *name;

    /* Memory: zeroed allocations tagged with a category; peak and current
     * bytes per category are tracked. */
    void *(*alloc)(size_t bytes, pl_mem_cat cat);
    void (*free)(void *p);

    /* out (T,C) = table[ids[t]] ; table (V,C). ids are checked by the caller. */
    void (*embedding)(float *out, const int32_t *ids, const float *table, int T, int C);

    /* out (T,C) = x / sqrt(mean(x^2) + eps) * w ; out may alias x. */
    void (*rmsnorm)(float *out, const float *x, const float *w, int T, int C, float eps);

    /* Rotate-half RoPE in place on x (T, nheads*hd): for each head, pairs
     * (i, i + hd/2) for i < hd/2 are rotated by angle pos[t] * inv_freq[i]. */
    void (*rope)(float *x, const int32_t *pos, const float *inv_freq, int T, int nheads, int hd);

    /* Causal GQA attention.
     * q (Tq, nh*hd), k and v (Tk, nkv*hd), out (Tq, nh*hd); query head h uses
     * key/value head h / (nh/nkv). Query i sees key j iff j <= qlast[i] and,
     * when qseg and kseg are non-NULL, kseg[j] == qseg[i]. Scores are scaled
     * by 1/sqrt(hd). A query that sees no key gets a zero output.
     * Training: Tq == Tk, qlast[i] = i, segment ids of the packed samples.
     * Generation: k/v is a sequence's KV cache, qlast[i] = pos0 + i. */
    void (*attention)(float *out, const float *q, const float *k, const float *v,
                      const int32_t *qlast, const int32_t *qseg, const int32_t *kseg,
                      int Tq, int Tk, int nh, int nkv, int hd);

    /* out (T,H) = silu(gate) * up ; out may alias gate. */
    void (*swiglu)(float *out, const float *gate, const float *up, int T, int H);

    /* out (T,O) = x (T,I) . w^T + bias ; w (O,I) fp32, bias (O) or NULL.
     * sgemm for T > 1. */
    void (*linear)(float *out, const float *x, const float *w, const float *bias,
                   int T, int I, int O);

    /* The same with a weight in any supported dtype. For few rows (T below a
     * threshold, as in generation) each output is a dot product on the
     * quantized row directly; otherwise blocks of rows are dequantized into
     * workspace and multiplied with sgemm. workspace holds at least
     * pl_cpu_linear_q_workspace(w->cols) floats. */
    void (*linear_q)(float *out, const float *x, const pl_qweight *w, const float *bias,
                     int T, float *workspace);

    /* out[i] = a[i] + b[i] ; out may alias a or b. */
    void (*add)(float *out, const float *a, const float *b, size_t n);

    /* Cross-entropy summed over the rows whose target is >= 0 (target < 0 is
     * ignored; the caller divides by *n_valid for a mean). logits (T,V). losses (T) receives each row's loss (0 for
     * ignored rows) when non-NULL; *n_valid the count of rows used.
     * Returns the sum of losses (double, summed in row order). */
    double (*cross_entropy)(const float *logits, const int32_t *targets, int T, int V,
                            float *losses, int64_t *n_valid);

    /* ---- backward ops ------------------------------------------------
     * Each takes the gradient of its op's output (dout) and the forward
     * inputs, and produces input gradients (overwritten, "=") and parameter
     * gradients (accumulated, "+="), so gradient accumulation over
     * micro-batches is the caller's loop. Any pointer documented "or NULL"
     * skips that gradient. Same determinism rules as the forward ops,
     * including the same bits for 1, 2 or 3 threads wherever the op does
     * not call sgemm. */

    /* dtable (V,C) += scatter of dout (T,C) by ids, summed in token order. */
    void (*embedding_bwd)(float *dtable, const int32_t *ids, const float *dout, int T, int C);

    /* dx (T,C) = ; dw (C) += . x and w are the forward inputs. dx may alias dout. */
    void (*rmsnorm_bwd)(float *dx, float *dw, const float *dout, const float *x, const float *w,
                        int T, int C, float eps);

    /* In place: d (T, nheads*hd) holds dL/d(rope(x)) and becomes dL/dx. */
    void (*rope_bwd)(float *d, const int32_t *pos, const float *inv_freq, int T, int nheads, int hd);

    /* dq (Tq, nh*hd) = ; dk, dv (Tk, nkv*hd) = . Same masking arguments as
     * attention; out is the forward output (used for the softmax backward's
     * row sums). Recomputes the attention probabilities. */
    void (*attention_bwd)(float *dq, float *dk, float *dv, const float *dout, const float *q,
                          const float *k, const float *v, const float *out,
                          const int32_t *qlast, const int32_t *qseg, const int32_t *kseg,
                          int Tq, int Tk, int nh, int nkv, int hd);

    /* dgate, dup (T,H) = from dout (T,H) of out = silu(gate) * up. dgate may
     * alias dout. */
    void (*swiglu_bwd)(float *dgate, float *dup, const float *dout, const float *gate,
                       const float *up, int T, int H);

    /* out = x . w^T + bias: dx (T,I) = dout . w (or NULL); dw (O,I) += dout^T . x
     * (or NULL); dbias (O) += column sums of dout (or NULL). */
    void (*linear_bwd)(float *dx, float *dw, float *dbias, const float *dout, const float *x,
                       const float *w, int T, int I, int O);

    /* dx (T, w->cols) = dout (T, w->rows) . dequant(w): the input gradient
     * through a frozen weight in any dtype (QLoRA's base). workspace as for
     * linear_q. */
    void (*linear_q_bwd_x)(float *dx, const float *dout, const pl_qweight *w, int T, float *workspace);

    /* dlogits (T,V) = scale * (softmax(logits) - onehot(target)) for rows
     * with target >= 0, 0 for ignored rows. scale is dL/d(loss of one row),
     * e.g. 1/n_valid for a mean. dlogits may alias logits. */
    void (*cross_entropy_bwd)(float *dlogits, const float *logits, const int32_t *targets, int T,
                              int V, float scale);

    /* Sum of squares in double, in a fixed order (grad norms). */
    double (*sumsq)(const float *x, size_t n);
    /* x[i] *= s */
    void (*scale)(float *x, float s, size_t n);

    /* One AdamW step (decoupled weight decay, bias correction with the
     * 1-based step t): m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
     * p -= lr * (mhat / (sqrt(vhat) + eps) + wd * p), as torch.optim.AdamW. */
    void (*adamw)(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1,
                  float beta2, float eps, float wd, int t);

    /* Ops return nothing: one that fails (its scratch memory cannot be had, a
     * weight format it cannot read) fills its output with NaN and records
     * why. take_error moves the first such failure since the last call into
     * err and returns its code (0: none). Forward, backward and decode check
     * it before they return, so a failed op is an error, never NaNs. */
    int (*take_error)(pl_err *err);
} pl_backend;

const pl_backend *pl_backend_cpu(void);

/* Memory accounting shared by all backends. */
size_t pl_mem_current(pl_mem_cat cat);
size_t pl_mem_peak(pl_mem_cat cat);
const char *pl_mem_cat_name(pl_mem_cat cat);
void pl_mem_reset_peak(void);

/* Workspace size (floats) linear_q needs for a weight with cols columns. */
size_t pl_cpu_linear_q_workspace(int64_t cols);

#endif
