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
 * checked against.
 *
 * Memory. Every buffer an op reads or writes comes from the backend's alloc
 * (or, for the frozen weights, from the model: see "Weights" below). Two
 * kinds:
 *  - activation buffers (activations, their gradients, logits, the KV cache,
 *    workspaces, token id arrays): the backend's own memory, host memory on
 *    the CPU and device memory on a GPU. Host code never dereferences them:
 *    it fills and reads them with upload, download, copy, zero and act_to_f32.
 *    Their element type is act_dtype (PL_F32 on the CPU, PL_BF16 on CUDA),
 *    so they are typed void * below; int32 arrays stay int32.
 *  - trained state (PL_MEM_GRADIENTS and PL_MEM_OPTIMIZER, and the LoRA
 *    masters, allocated by lora/ through this alloc): fp32, typed float *,
 *    and readable and writable by the host once take_error has returned
 *    (the CUDA backend allocates it as managed memory), so checkpoints,
 *    exports and the MPI all-reduce read it in place.
 * host_memory is 1 when every buffer is plain host memory (the CPU): code may
 * then skip a copy, never change a result.
 *
 * Weights. Frozen weights (pl_qweight, the norms' and biases' fp32 vectors,
 * the RoPE frequencies) are host memory owned by the model. A device backend
 * copies each to the device the first time an op uses it and keeps the copy,
 * keyed by the host pointer, until release_weights is called with that
 * pointer (pl_model_free calls it for each of the model's weights); the host
 * bytes must not change in between. Trained fp32 weights of a full fine-tune
 * are the CPU backend's only (a device backend leaves linear's fp32-weight
 * full fine-tune ops out and training says so). */
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

struct pl_nf4; /* lora/nf4.h */

typedef struct pl_backend {
    const char *name;
    int act_dtype;   /* pl_dtype of activation buffers: PL_F32 or PL_BF16 */
    int host_memory; /* 1: every buffer is host memory */

    /* Memory: zeroed allocations tagged with a category; peak and current
     * bytes per category are tracked. */
    void *(*alloc)(size_t bytes, pl_mem_cat cat);
    void (*free)(void *p);
    /* Paged trained state (--paged-optim: AdamW moments): like alloc, but the
     * backend keeps the bytes in host memory between the ops that use them
     * and brings them to the device for those ops (bitsandbytes' paged
     * optimizers); freed with free. NULL on the CPU (the caller uses alloc). */
    void *(*alloc_paged)(size_t bytes, pl_mem_cat cat);
    /* Offloaded checkpoints (--offload-checkpoints). alloc_host: pinned host
     * memory, tagged like alloc but outside the device's memory and its cap;
     * freed with free; the host never reads it. offload: host = dev, fetch:
     * dev = host, each queued on a copy stream after the work queued so far,
     * so it overlaps the work queued after it; copy_wait(slot): the work
     * queued after it waits for that slot's last offload or fetch. Slots are
     * 0 and 1. NULL on the CPU (its memory is host memory already). */
    void *(*alloc_host)(size_t bytes, pl_mem_cat cat);
    void (*offload)(void *host, const void *dev, size_t bytes, int slot);
    void (*fetch)(void *dev, const void *host, size_t bytes, int slot);
    void (*copy_wait)(int slot);

    /* Host <-> backend buffers: upload dst (backend) = src (host); download
     * dst (host) = src (backend); copy within the backend; zero. bytes may be
     * 0. act_to_f32: n elements of an activation buffer to host floats. */
    void (*upload)(void *dst, const void *src, size_t bytes);
    void (*download)(void *dst, const void *src, size_t bytes);
    void (*copy)(void *dst, const void *src, size_t bytes);
    void (*zero)(void *p, size_t bytes);
    void (*act_to_f32)(float *dst, const void *src, size_t n);
    /* Drop the backend's copy of the frozen weight at host pointer p (NULL:
     * every copy, and the scratch sized by them; one it never copied:
     * nothing). NULL on the CPU. */
    void (*release_weights)(const void *p);
    /* A random frozen weight made on the device (the rehearsal model,
     * trainer/model_random.c): w's values are trainer/model_init.h's init of
     * (seed, stream) with standard deviation std, made in the backend's memory
     * as the weight's resident copy (keyed by w->data, as a first use would
     * copy it), then copied into w's host storage, which the model owns: a
     * PL_BF16 weight's rows (w->data), or a PL_NF4 weight's laid-out pl_nf4
     * (double-quantized; its arrays, offset and code). The host bytes equal
     * what the CPU makes of the same init (see core/philox.h for the one
     * place a GPU's libm may round differently). Returns 0, or the error's
     * code with the message left for take_error. NULL on the CPU. */
    int (*init_random)(pl_qweight *w, uint64_t seed, uint64_t stream, float std);
    /* A stored layer weight quantized to NF4 on the device (the NF4 base,
     * trainer/model_nf4.c): src a BF16 or F16 weight (its rows as stored,
     * contiguous, host memory), dst the model's laid-out double-quantized NF4
     * tensor of as many elements. The source's bytes go to the device (one
     * tensor at a time), the NF4 tensor is made there as dst's resident copy
     * (keyed by dst: the pl_qweight of dst has data == dst), and its bytes are
     * copied into dst's arrays: those pl_nf4_fill makes of src's values.
     * Returns 0; PL_EUNSUPPORTED, with no message, for a source it does not
     * take (the caller then quantizes on the host); or another error code
     * with the message left for take_error. NULL on the CPU. */
    int (*quantize_nf4)(struct pl_nf4 *dst, const pl_qweight *src);
    /* Allow this backend at most bytes of its memory from now on (0: no cap;
     * --gpu-mem): an allocation past it fails as out of memory. NULL on the
     * CPU. */
    void (*set_mem_cap)(size_t bytes);
    /* The most bytes of the backend's own device memory held at once since
     * it opened, over every category, paged state (alloc_paged) left out:
     * what the device needed, to set beside the per-category pl_mem_peak.
     * NULL on the CPU. */
    size_t (*mem_device_peak)(void);

    /* out (T,C) = table[ids[t]] ; table (V,C). ids are checked by the caller. */
    void (*embedding)(void *out, const int32_t *ids, const float *table, int T, int C);
    /* The same from a frozen table in any supported dtype (row ids[t],
     * dequantized). ids are checked by the caller. */
    void (*embedding_q)(void *out, const int32_t *ids, const pl_qweight *table, int T);

    /* out (T,C) = x / sqrt(mean(x^2) + eps) * w ; out may alias x. */
    void (*rmsnorm)(void *out, const void *x, const float *w, int T, int C, float eps);

    /* Rotate-half RoPE in place on x (T, nheads*hd): for each head, pairs
     * (i, i + hd/2) for i < hd/2 are rotated by angle pos[t] * inv_freq[i]. */
    void (*rope)(void *x, const int32_t *pos, const float *inv_freq, int T, int nheads, int hd);

    /* Causal GQA attention.
     * q (Tq, nh*hd), k and v (Tk, nkv*hd), out (Tq, nh*hd); query head h uses
     * key/value head h / (nh/nkv). Query i sees key j iff j <= qlast[i] and,
     * when qseg and kseg are non-NULL, kseg[j] == qseg[i]. Scores are scaled
     * by 1/sqrt(hd). A query that sees no key gets a zero output.
     * Training: Tq == Tk, qlast[i] = i, segment ids of the packed samples.
     * Generation: k/v is a sequence's KV cache, qlast[i] = pos0 + i. */
    void (*attention)(void *out, const void *q, const void *k, const void *v,
                      const int32_t *qlast, const int32_t *qseg, const int32_t *kseg,
                      int Tq, int Tk, int nh, int nkv, int hd);

    /* out (T,H) = silu(gate) * up ; out may alias gate. */
    void (*swiglu)(void *out, const void *gate, const void *up, int T, int H);

    /* out (T,O) = x (T,I) . w^T + bias ; w (O,I) fp32, bias (O) or NULL.
     * sgemm for T > 1. */
    void (*linear)(void *out, const void *x, const float *w, const float *bias,
                   int T, int I, int O);

    /* The same with a weight in any supported dtype. For few rows (T below a
     * threshold, as in generation) each output is a dot product on the
     * quantized row directly; otherwise blocks of rows are dequantized into
     * workspace and multiplied with sgemm. workspace holds at least
     * pl_cpu_linear_q_workspace(w->cols) floats. */
    void (*linear_q)(void *out, const void *x, const pl_qweight *w, const float *bias,
                     int T, void *workspace);

    /* LoRA on a module whose base output y (T,O) is already computed:
     * xa (T,r) = u (T,I) . A^T, kept for the backward; y += scale xa . B^T.
     * A (r,I) and B (O,r) are the fp32 masters. tmp: (T,O) activation
     * scratch. */
    void (*lora_fwd)(void *y, void *xa, const void *u, const float *A, const float *B, int T, int I, int O,
                     int r, float scale, void *tmp);

    /* out[i] = a[i] + b[i] ; out may alias a or b. */
    void (*add)(void *out, const void *a, const void *b, size_t n);

    /* dst = src with each element dropped (0) with probability p or scaled by
     * 1/(1-p), the mask a pure function of (seed, stream, element index):
     * LoRA dropout (trainer/qlora.h). The n elements are indices first ..
     * first + n - 1 of the tensor (first a multiple of 8: a slice of rows
     * draws the mask the whole tensor would). dst may alias src. */
    void (*dropout)(void *dst, const void *src, size_t n, float p, uint64_t seed, uint64_t stream, uint64_t first);

    /* Cross-entropy summed over the rows whose target is >= 0 (target < 0 is
     * ignored; the caller divides by *n_valid for a mean). logits (T,V). losses (T) receives each row's loss (0 for
     * ignored rows) when non-NULL; *n_valid the count of rows used.
     * Returns the sum of losses (double, summed in row order). */
    double (*cross_entropy)(const void *logits, const int32_t *targets, int T, int V,
                            float *losses, int64_t *n_valid);

    /* The LM head fused with the loss, for a frozen head (or NULL: the
     * caller runs linear_q and cross_entropy on materialized logits).
     * Forward: logits = x (T,C) . head^T are never stored whole; lse (T)
     * fp32 keeps each row's log-sum-exp; returns the sum of the losses of
     * rows with target >= 0 and sets *n_valid. Backward: dx (T,C) = g . head
     * with g = scale (softmax(logits) - onehot(target)). */
    double (*lm_head_ce)(float *lse, const void *x, const pl_qweight *head, const int32_t *targets, int T,
                         int64_t *n_valid);
    void (*lm_head_ce_bwd)(void *dx, const void *x, const pl_qweight *head, const int32_t *targets,
                           const float *lse, int T, float scale);

    /* ---- backward ops ------------------------------------------------
     * Each takes the gradient of its op's output (dout) and the forward
     * inputs, and produces input gradients (overwritten, "=") and parameter
     * gradients (accumulated, "+="), so gradient accumulation over
     * micro-batches is the caller's loop. Any pointer documented "or NULL"
     * skips that gradient. Same determinism rules as the forward ops,
     * including the same bits for 1, 2 or 3 threads wherever the op does
     * not call sgemm. */

    /* dtable (V,C) += scatter of dout (T,C) by ids, summed in token order. */
    void (*embedding_bwd)(float *dtable, const int32_t *ids, const void *dout, int T, int C);

    /* dx (T,C) = ; dw (C) += . x and w are the forward inputs. dx may alias dout. */
    void (*rmsnorm_bwd)(void *dx, float *dw, const void *dout, const void *x, const float *w,
                        int T, int C, float eps);

    /* In place: d (T, nheads*hd) holds dL/d(rope(x)) and becomes dL/dx. */
    void (*rope_bwd)(void *d, const int32_t *pos, const float *inv_freq, int T, int nheads, int hd);

    /* dq (Tq, nh*hd) = ; dk, dv (Tk, nkv*hd) = . Same masking arguments as
     * attention; out is the forward output (used for the softmax backward's
     * row sums). Recomputes the attention probabilities. */
    void (*attention_bwd)(void *dq, void *dk, void *dv, const void *dout, const void *q,
                          const void *k, const void *v, const void *out,
                          const int32_t *qlast, const int32_t *qseg, const int32_t *kseg,
                          int Tq, int Tk, int nh, int nkv, int hd);

    /* dgate, dup (T,H) = from dout (T,H) of out = silu(gate) * up. dgate may
     * alias dout. */
    void (*swiglu_bwd)(void *dgate, void *dup, const void *dout, const void *gate,
                       const void *up, int T, int H);

    /* out = x . w^T + bias: dx (T,I) = dout . w (or NULL); dw (O,I) += dout^T . x
     * (or NULL); dbias (O) += column sums of dout (or NULL). */
    void (*linear_bwd)(void *dx, float *dw, float *dbias, const void *dout, const void *x,
                       const float *w, int T, int I, int O);

    /* dx (T, w->cols) = dout (T, w->rows) . dequant(w): the input gradient
     * through a frozen weight in any dtype (QLoRA's base). workspace as for
     * linear_q. */
    void (*linear_q_bwd_x)(void *dx, const void *dout, const pl_qweight *w, int T, void *workspace);

    /* LoRA's backward (lora_fwd's): from dout (T,O), with s = scale:
     * gB (O,r) += s dout^T . xa ; dxa (T,r) = s dout . B ; gA (r,I) += dxa^T . u ;
     * then dx (T,I) += dxa . A when accumulate, else dx = dxa . A.
     * tmp (T,O), dxa (T,r) and du (T,I) are activation scratch. */
    void (*lora_bwd)(void *dx, int accumulate, float *gA, float *gB, const void *dout, const void *u,
                     const void *xa, const float *A, const float *B, int T, int I, int O, int r, float scale,
                     void *tmp, void *dxa, void *du);

    /* dlogits (T,V) = scale * (softmax(logits) - onehot(target)) for rows
     * with target >= 0, 0 for ignored rows. scale is dL/d(loss of one row),
     * e.g. 1/n_valid for a mean. dlogits may alias logits. */
    void (*cross_entropy_bwd)(void *dlogits, const void *logits, const int32_t *targets, int T,
                              int V, float scale);

    /* On trained fp32 state (gradients, weights, optimizer state):
     * sum of squares in double, in a fixed order (grad norms); x[i] *= s. */
    double (*sumsq)(const float *x, size_t n);
    void (*scale)(float *x, float s, size_t n);

    /* One AdamW step (decoupled weight decay, bias correction with the
     * 1-based step t): m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
     * p -= lr * (mhat / (sqrt(vhat) + eps) + wd * p), as torch.optim.AdamW. */
    void (*adamw)(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1,
                  float beta2, float eps, float wd, int t);

    /* Ops return nothing: one that fails (its scratch memory cannot be had, a
     * weight format it cannot read) fills its output with NaN and records
     * why. take_error waits for the backend's queued work to finish, then
     * moves the first such failure since the last call into err and returns
     * its code (0: none). Forward, backward, the optimizer step and decode
     * check it before they return, so a failed op is an error, never NaNs. */
    int (*take_error)(pl_err *err);

    /* Data-parallel collectives on the backend's own memory over the
     * devices' interconnect (NCCL), for a run of several ranks
     * (trainer/run_dist.c, docs/distributed.md). NULL where the backend has
     * none: the CPU, and the CUDA backend of a build without NCCL (the
     * emulated one); the trainer then uses core/dist.h's MPI collectives on
     * host-readable memory.
     * dist_open: collective (every rank, after pl_dist_init): makes the
     *   communicator, or sets *used = 0 and returns PL_OK where the ranks
     *   cannot use one (two ranks on one device), the same answer on every
     *   rank.
     * dist_reduce_scatter, dist_allgather: core/dist.h's
     *   pl_dist_reduce_scatter_f32 and pl_dist_allgather_f32, the same
     *   arguments and the same bits, on backend buffers (in, out, buf:
     *   trained state; scratch: P * largest shard floats of alloc'd
     *   PL_MEM_WORKSPACE); queued after the work queued so far and before
     *   the work queued after; a failure surfaces at take_error.
     * dist_rs_begin, dist_rs_piece, dist_rs_end: dist_reduce_scatter in
     *   pieces, overlapped with the backward (core/dist.h's pl_dist_rs_*,
     *   the same bits): bounds[0..nb] cut the n floats of in into pieces;
     *   piece(b) queues the exchange of piece b after the work queued so far
     *   (its gradients copied into in), and the work queued after it does
     *   not wait for it; every rank must queue the pieces in the same
     *   order, each once; end queues the sum into out, which the work
     *   queued after it waits for. A failure (or a piece never queued)
     *   surfaces at take_error.
     * dist_seconds: the seconds those took on the device since the last
     *   call (then reset; waits for them).
     * dist_close: ends the communicator; abort: without waiting for its
     *   queued work (a failed run: a peer may never answer). */
    int (*dist_open)(int *used, pl_err *err);
    void (*dist_reduce_scatter)(const float *in, size_t n, float *out, float *scratch);
    void (*dist_allgather)(float *buf, size_t n);
    void (*dist_rs_begin)(const float *in, size_t n, const size_t *bounds, int nb, float *out, float *scratch);
    void (*dist_rs_piece)(int b);
    void (*dist_rs_end)(void);
    double (*dist_seconds)(void);
    void (*dist_close)(int abort);
} pl_backend;

const pl_backend *pl_backend_cpu(void);

/* The backend called name ("cpu", "cuda"), or NULL with err set saying why
 * (unknown name; a build without the CUDA backend; no device). The CUDA
 * backend exists in builds that link trainer/cuda/ (make emu, make gpu). */
const pl_backend *pl_backend_named(const char *name, pl_err *err);

/* The backend pl_model_load gives the models it loads: "cpu" until
 * pl_backend_set_default names another (checked to exist in this build;
 * opened by the first load). The recipe sandbox's child resets it to cpu. */
int pl_backend_set_default(const char *name, pl_err *err);
const char *pl_backend_default_name(void);
const pl_backend *pl_backend_default(pl_err *err);
/* The memory of be's device in bytes (the CUDA backend: device 0's total, as
 * cudaMemGetInfo reports it); 0 when unknown or be is the CPU. */
size_t pl_backend_mem_total(const pl_backend *be);

/* Bytes of n activation elements on be. */
static inline size_t pl_act_bytes(const pl_backend *be, size_t n) {
    return n * (be->act_dtype == PL_F32 ? 4u : 2u);
}
/* Element i of activation buffer p. */
static inline void *pl_act_at(const pl_backend *be, const void *p, size_t i) {
    return (char *)(uintptr_t)p + pl_act_bytes(be, i);
}

/* Memory accounting shared by all backends. */
size_t pl_mem_current(pl_mem_cat cat);
size_t pl_mem_peak(pl_mem_cat cat);
const char *pl_mem_cat_name(pl_mem_cat cat);
void pl_mem_reset_peak(void);
/* A backend's allocation (bytes > 0) or free (bytes < 0) in category cat. */
void pl_mem_note(pl_mem_cat cat, ptrdiff_t bytes);

/* Workspace size (floats) linear_q needs for a weight with cols columns. */
size_t pl_cpu_linear_q_workspace(int64_t cols);

#endif
