/* cuda_ops.h: the CUDA kernels' launchers, as the CUDA backend (issue #15)
 * and the tests call them. C, so the C side of the project can include it.
 *
 * Conventions:
 *  - every pointer is device memory; shapes are written at each function as
 *    (rows, cols), row-major, as in trainer/backend.h;
 *  - activations are bf16 (pl_bf16: the raw bits of __nv_bfloat16); norm
 *    weights, LoRA masters, gradients of trained parameters and optimizer
 *    state are fp32; every sum accumulates in fp32 (double for sums of
 *    squares);
 *  - each launcher enqueues on stream (NULL: the default stream) and returns
 *    0 or the cudaError_t of the launch; execution errors surface at the next
 *    synchronization, as usual in CUDA;
 *  - determinism: no float atomics; every reduction has a fixed order that
 *    depends on the shape only, so the same inputs give the same bits run
 *    after run (and under any fiber schedule in the emulator);
 *  - the per-element and per-row math is trainer/ops_math.h's, shared with
 *    the CPU backend (trainer/cpu/), which is the reference.
 * Workspaces are the caller's (PL_MEM_WORKSPACE): each op that needs one has
 * a *_workspace function giving its size. */
#ifndef PL_CUDA_OPS_H
#define PL_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>
#include "cuda_sizes.h" /* the sizes (workspaces, tiles) shared with the planner */

#ifdef __cplusplus
extern "C" {
#endif

typedef uint16_t pl_bf16;
struct CUstream_st; /* cudaStream_t is struct CUstream_st * */
typedef struct CUstream_st *pl_stream;

/* ---- nf4.cu: the frozen base --------------------------------------------------
 * An NF4 tensor on the device, bytes as lora/nf4.h (bitsandbytes' layout):
 * element i is nibble i of packed (high nibble first), block b = i / blocksize
 * has absmax_b = code[absmax_q[b]] * nested_absmax[b / 256] + offset when
 * double-quantized (absmax_q non-NULL), else absmax[b]; x_i = NF4[q_i] * absmax_b,
 * each step one fp32 rounding (no fused multiply-add), as the CPU does. */
typedef struct pl_cuda_nf4 {
    const uint8_t *packed;       /* (n + 1) / 2 bytes */
    const uint8_t *absmax_q;     /* (n_blocks) codes, or NULL */
    const float *nested_absmax;  /* (ceil(n_blocks / 256)) */
    const float *code;           /* (256) the dynamic map absmax_q indexes */
    const float *absmax;         /* (n_blocks) fp32, when absmax_q is NULL */
    float offset;
    int64_t n;
    int blocksize;               /* a power of two, 32..4096 */
} pl_cuda_nf4;

/* out (count) bf16 = elements [start, start + count) of w, dequantized. */
int pl_cuda_nf4_dequant(pl_bf16 *out, const pl_cuda_nf4 *w, int64_t start, int64_t count, pl_stream stream);

/* Decoding's fused dequantize + matrix-vector product:
 * y (T, rows) = x (T, cols) . dequant(w)^T, w holding (rows, cols) row-major;
 * 1 <= T <= PL_CUDA_GEMV_MAX_T (cuda_sizes.h); fp32 accumulation, bf16 out. */
int pl_cuda_nf4_gemv(pl_bf16 *y, const pl_bf16 *x, const pl_cuda_nf4 *w, int rows, int cols, int T,
                     pl_stream stream);

/* ---- nf4_init.cu: random weights made on the device (trainer/model_init.h's init) ----------
 * pl_cuda_nf4_init_random: the NF4 (double-quantized) tensor pl_nf4_fill would
 * make of x_i = std * normal(seed, stream, i), i < n (core/philox.h), written
 * into w's arrays: packed ((n + 1) / 2 bytes), absmax_q (n_blocks codes),
 * nested_absmax (ceil(n_blocks / 256)) and *offset (one float, device). The
 * 256-entry dynamic map is the caller's (bitsandbytes' map, which it uploads
 * beside them). absmax_ws: n_blocks floats of device workspace; nf4_mid: the
 * 15 fp32 midpoints of the NF4 codes, HOST memory (passed by value);
 * dyn_mid: the 255 fp32 midpoints 0.5 (map[k] + map[k+1]), device memory.
 * pl_cuda_bf16_init_random: out (n) = bf16(std * normal(seed, stream, i)). */
typedef struct pl_cuda_nf4_init {
    uint8_t *packed, *absmax_q;
    float *nested_absmax, *offset;
    int64_t n;
    int blocksize;
} pl_cuda_nf4_init;
int pl_cuda_nf4_init_random(pl_cuda_nf4_init *w, float *absmax_ws, const float *nf4_mid, const float *dyn_mid,
                            uint64_t seed, uint64_t stream, float std, pl_stream st);
int pl_cuda_bf16_init_random(pl_bf16 *out, int64_t n, uint64_t seed, uint64_t stream, float std, pl_stream st);
/* The same NF4 tensor made of stored values instead: src (n) BF16, or F16 when
 * f16 (raw 16-bit words, device memory), as pl_nf4_fill quantizes their exact
 * fp32 values. A block with a NaN or infinity makes *offset NaN (the CPU
 * refuses such a tensor; the caller checks). */
int pl_cuda_nf4_quantize16(pl_cuda_nf4_init *w, float *absmax_ws, const float *nf4_mid, const float *dyn_mid,
                           const uint16_t *src, int f16, pl_stream st);

/* ---- embedding.cu ------------------------------------------------------------------ */
/* out (T,C) = table (V,C) [ids[t]]; ids checked by the caller. */
int pl_cuda_embedding(pl_bf16 *out, const int32_t *ids, const pl_bf16 *table, int T, int C, pl_stream stream);
/* dtable (V,C) += dout (T,C) scattered by ids, each element summed in token
 * order by one thread (the CPU's order, so the same bits). */
int pl_cuda_embedding_bwd(float *dtable, const int32_t *ids, const pl_bf16 *dout, int T, int C, pl_stream stream);

/* ---- rmsnorm.cu -------------------------------------------------------------------- */
/* out (T,C) = x / sqrt(mean(x^2) + eps) * w ; rstd (T) keeps the factor for
 * the backward (or NULL). out may alias x. */
int pl_cuda_rmsnorm(pl_bf16 *out, float *rstd, const pl_bf16 *x, const float *w, int T, int C, float eps,
                    pl_stream stream);
/* dx (T,C) = ; dw (C) += (or NULL); rstd from the forward. dx may alias
 * dout. workspace: pl_cuda_rmsnorm_bwd_workspace(T, C) floats. */
size_t pl_cuda_rmsnorm_bwd_workspace(int T, int C);
int pl_cuda_rmsnorm_bwd(pl_bf16 *dx, float *dw, const pl_bf16 *dout, const pl_bf16 *x, const float *w,
                        const float *rstd, int T, int C, float *workspace, pl_stream stream);

/* ---- rope.cu ----------------------------------------------------------------------- */
/* Rotate-half RoPE in place on x (T, nheads*hd), pairs (i, i + hd/2) rotated
 * by pos[t] * inv_freq[i] (inv_freq (hd/2), fp32); backward != 0 rotates by
 * the opposite angle (the backward of the forward, in place on the gradient). */
int pl_cuda_rope(pl_bf16 *x, const int32_t *pos, const float *inv_freq, int T, int nheads, int hd, int backward,
                 pl_stream stream);

/* ---- swiglu.cu --------------------------------------------------------------------- */
/* out (n) = silu(gate) * up ; out may alias gate or up. */
int pl_cuda_swiglu(pl_bf16 *out, const pl_bf16 *gate, const pl_bf16 *up, int64_t n, pl_stream stream);
/* dgate, dup (n) from dout (n), recomputing silu; dgate may alias dout. */
int pl_cuda_swiglu_bwd(pl_bf16 *dgate, pl_bf16 *dup, const pl_bf16 *dout, const pl_bf16 *gate, const pl_bf16 *up,
                       int64_t n, pl_stream stream);

/* ---- attention.cu: causal GQA attention with segment ids ------------------------------- */
/* backend.h's attention (the CPU op is the reference): q (Tq, nh*hd), k and v
 * (Tk, nkv*hd), out (Tq, nh*hd), bf16; query head h uses kv head h / (nh/nkv)
 * (nh a multiple of nkv); query i sees key j iff j <= qlast[i], j < Tk and,
 * when qseg (Tq) and kseg (Tk) are given (both or neither), kseg[j] == qseg[i];
 * scores scaled by 1/sqrt(hd), hd <= PL_CUDA_ATTN_MAX_HD. A query that sees
 * no key gets zeros. lse (nh, Tq) fp32 receives each row's log-sum-exp of the
 * scaled scores (-inf for a query that sees no key), for the backward, or
 * NULL (generation). */
#define PL_CUDA_ATTN_MAX_HD 128
int pl_cuda_attention(pl_bf16 *out, float *lse, const pl_bf16 *q, const pl_bf16 *k, const pl_bf16 *v,
                      const int32_t *qlast, const int32_t *qseg, const int32_t *kseg, int Tq, int Tk, int nh,
                      int nkv, int hd, pl_stream stream);
/* dq (Tq, nh*hd) = ; dk, dv (Tk, nkv*hd) = ; bf16. out and lse are the
 * forward's. Two kernels (dq, then dk/dv), no atomics.
 * workspace: pl_cuda_attention_bwd_workspace(Tq, nh) floats. */
size_t pl_cuda_attention_bwd_workspace(int Tq, int nh);
int pl_cuda_attention_bwd(pl_bf16 *dq, pl_bf16 *dk, pl_bf16 *dv, const pl_bf16 *dout, const pl_bf16 *q,
                          const pl_bf16 *k, const pl_bf16 *v, const pl_bf16 *out, const float *lse,
                          const int32_t *qlast, const int32_t *qseg, const int32_t *kseg, int Tq, int Tk, int nh,
                          int nkv, int hd, float *workspace, pl_stream stream);

/* ---- cross_entropy.cu: the LM head fused with cross-entropy ---------------------------------- */
/* logits = x (T,C) . W (V,C)^T are never stored: they are recomputed in tiles
 * of PL_CUDA_CE_TOKENS tokens by PL_CUDA_CE_VOCAB vocabulary rows.
 * Forward (backend.h's cross_entropy): lse (T) fp32 = log-sum-exp of each
 * row's logits; losses (T) fp32 = lse - logit[target] for 0 <= target < V, 0
 * for an ignored row (target < 0), NaN for target >= V (or NULL);
 * *loss_sum (one double, device, or NULL) = sum of the losses of the rows
 * with target >= 0 in row order; *n_valid (one int64, device, or NULL) =
 * their count. workspace: pl_cuda_lm_head_ce_workspace(T, V) floats. */
size_t pl_cuda_lm_head_ce_workspace(int T, int V);
int pl_cuda_lm_head_ce(float *lse, float *losses, double *loss_sum, int64_t *n_valid, const pl_bf16 *x,
                       const pl_bf16 *W, const int32_t *targets, int T, int C, int V, float *workspace,
                       pl_stream stream);
/* Backward (backend.h's cross_entropy_bwd, then the head's linear_bwd):
 * with g (T,V) = scale (softmax(logits) - onehot(target)) (0 rows for
 * ignored targets, NaN for target >= V), dx (T,C) bf16 = g . W (or NULL);
 * dW (V,C) fp32 += g^T . x (or NULL). lse from the forward; scale is
 * dL/d(loss of one row), e.g. 1/n_valid for a mean.
 * workspace: pl_cuda_lm_head_ce_bwd_workspace(T, C) floats (when dx). */
size_t pl_cuda_lm_head_ce_bwd_workspace(int T, int C);
int pl_cuda_lm_head_ce_bwd(pl_bf16 *dx, float *dW, const pl_bf16 *x, const pl_bf16 *W, const int32_t *targets,
                           const float *lse, int T, int C, int V, float scale, float *workspace, pl_stream stream);

/* ---- adamw.cu: the optimizer on fp32 state ------------------------------------------- */
/* *out (one double, device) = sum x^2 (+= when accumulate), in a fixed order
 * (per-block partial sums in double, then summed in block order).
 * workspace: pl_cuda_sumsq_workspace(n) doubles. Summing the tensors of a
 * model one call after another with accumulate gives the global grad norm^2. */
size_t pl_cuda_sumsq_workspace(int64_t n);
int pl_cuda_sumsq(double *out, const float *x, int64_t n, int accumulate, double *workspace, pl_stream stream);
/* torch.nn.utils.clip_grad_norm_ on the device: coef = max_norm / (sqrt(*sumsq)
 * + 1e-6) in double; when coef < 1, x *= (float)coef. No host round trip. */
int pl_cuda_clip(float *x, int64_t n, const double *sumsq, float max_norm, pl_stream stream);
/* x *= s */
int pl_cuda_scale(float *x, float s, int64_t n, pl_stream stream);
/* One AdamW step (backend.h's adamw: torch.optim.AdamW, pl_adamw_elem). */
int pl_cuda_adamw(float *p, const float *g, float *m, float *v, int64_t n, float lr, float beta1, float beta2,
                  float eps, float wd, int t, pl_stream stream);

/* ---- gemm.cu: GEMMs through cuBLASLt, and the LoRA path ---------------------------------
 * bf16 operands, fp32 accumulation (CUBLAS_COMPUTE_32F), bf16 or fp32 output
 * rounded once; row-major as the CPU linear op (backend.h). A pl_cuda_blas
 * holds the cuBLASLt handle (one per device and host thread). Each call
 * builds its descriptors and asks cuBLASLt's heuristic for one algorithm
 * that fits the caller's workspace (device memory of
 * pl_cuda_gemm_workspace() bytes, PL_MEM_WORKSPACE; NULL or 0 bytes: only
 * algorithms that need none). cuBLASLt's choice depends on the shape, the
 * pointers' alignment and the device, not on the run, so the same inputs
 * give the same bits on one device. These return 0, a cudaError_t, or
 * PL_CUDA_EBLAS + the cublasStatus_t of a failed cuBLASLt call. */
#define PL_CUDA_EBLAS 10000
typedef struct pl_cuda_blas pl_cuda_blas;
int pl_cuda_blas_create(pl_cuda_blas **out);
void pl_cuda_blas_destroy(pl_cuda_blas *h);
/* How many times the handle asked cuBLASLt's heuristic: once per GEMM shape
 * (sizes, transposes, output type, alignments, workspace); later calls of a
 * shape reuse its algorithm. */
unsigned long pl_cuda_blas_heuristic_calls(const pl_cuda_blas *h);
size_t pl_cuda_gemm_workspace(void);

/* C (M,N) = alpha op(A) op(B) + beta C, row-major; op(A) (M,K): A is (M,K),
 * or (K,M) when trans_a; op(B) (K,N): B is (K,N), or (N,K) when trans_b.
 * C bf16, or fp32 when c_fp32. beta = 0: C is not read. K = 0: C = beta C. */
int pl_cuda_gemm(pl_cuda_blas *h, void *C, int c_fp32, const pl_bf16 *A, int trans_a, const pl_bf16 *B, int trans_b,
                 int M, int N, int K, float alpha, float beta, void *workspace, size_t workspace_bytes,
                 pl_stream stream);
/* The CPU linear op's three products (W (O,I) as the CPU stores it):
 * y (T,O) = x (T,I) . W^T ; dx (T,I) = dy (T,O) . W (+= when accumulate) ;
 * dW (O,I) fp32 += alpha dy^T . x. */
int pl_cuda_linear(pl_cuda_blas *h, pl_bf16 *y, const pl_bf16 *x, const pl_bf16 *W, int T, int I, int O,
                   void *workspace, size_t workspace_bytes, pl_stream stream);
int pl_cuda_linear_bwd_x(pl_cuda_blas *h, pl_bf16 *dx, int accumulate, const pl_bf16 *dy, const pl_bf16 *W, int T,
                         int I, int O, void *workspace, size_t workspace_bytes, pl_stream stream);
int pl_cuda_linear_bwd_w(pl_cuda_blas *h, float *dW, const pl_bf16 *dy, const pl_bf16 *x, int T, int I, int O,
                         float alpha, void *workspace, size_t workspace_bytes, pl_stream stream);

/* LoRA on a module out = x . W^T (trainer/train.c's lin_fwd / lora_bwd):
 * u (T,I) is the adapter's input: x, or drop(x) (pl_lora_dropout, made by
 * the caller) when dropout is on; A (r,I) and B (O,r) are bf16 copies of the
 * fp32 masters; scale = alpha/r, or alpha/sqrt(r) with rslora (md->scale).
 * Forward: xa (T,r) = u . A^T (bf16, kept for the backward), then
 * y (T,O) += scale xa . B^T (y holds the base output; one bf16 rounding).
 * Backward, from dout (T,O): dB (O,r) += scale dout^T . xa; dxa (T,r) =
 * scale dout . B (bf16, caller's scratch); dA (r,I) += dxa^T . u; then
 * dx (T,I) += dxa . A when accumulate_dx (no dropout), or dx = dxa . A
 * (dropout: the caller applies the same mask and adds, as the CPU does).
 * dA, dB or dx NULL: skipped. */
int pl_cuda_lora_fwd(pl_cuda_blas *h, pl_bf16 *y, pl_bf16 *xa, const pl_bf16 *u, const pl_bf16 *A, const pl_bf16 *B,
                     int T, int I, int O, int r, float scale, void *workspace, size_t workspace_bytes,
                     pl_stream stream);
int pl_cuda_lora_bwd(pl_cuda_blas *h, pl_bf16 *dx, int accumulate_dx, float *dA, float *dB, pl_bf16 *dxa,
                     const pl_bf16 *dout, const pl_bf16 *u, const pl_bf16 *xa, const pl_bf16 *A, const pl_bf16 *B,
                     int T, int I, int O, int r, float scale, void *workspace, size_t workspace_bytes,
                     pl_stream stream);

/* ---- elementwise.cu: between the big kernels ---------------------------------------------- */
/* out (n) bf16 = in (n) fp32, rounded to nearest even. */
int pl_cuda_f32_to_bf16(pl_bf16 *out, const float *in, int64_t n, pl_stream stream);
/* out = a + b (fp32 sum, one bf16 rounding); out may alias a or b. */
int pl_cuda_add(pl_bf16 *out, const pl_bf16 *a, const pl_bf16 *b, int64_t n, pl_stream stream);
/* y (T,O) += bias (O) fp32, one rounding. */
int pl_cuda_bias_add(pl_bf16 *y, const float *bias, int T, int O, pl_stream stream);
/* backend.h's dropout on bf16: the CPU op's mask (ops_math.h's Philox
 * draws, pl_dropout_threshold), kept values src * 1/(1-p) rounded once; dst
 * may alias src; p in [0, 1); the elements are the tensor's first ..
 * first + n - 1 (first a multiple of 8). */
int pl_cuda_dropout(pl_bf16 *dst, const pl_bf16 *src, int64_t n, float p, uint64_t seed, uint64_t stream_id,
                    uint64_t first, pl_stream stream);

/* ---- nccl_dist.cu: the data-parallel reduce-scatter's sum --------------------------------- */
/* out (len) = slices (P, len) summed over the rows in row order 0, 1, ...,
 * P-1, each element by one thread, one fp32 rounding per addition: the
 * order of core/dist.c's pl_dist_sum_slices, so the same bits. out must not
 * alias slices. */
int pl_cuda_sum_slices(float *out, const float *slices, int P, int64_t len, pl_stream stream);

#ifdef __cplusplus
}
#endif

#endif
