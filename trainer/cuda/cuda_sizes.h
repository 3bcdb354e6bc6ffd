/* cuda_sizes.h: every size the CUDA backend allocates as a function of the
 * shapes, in C, for the kernels' launchers (the .cu files of trainer/cuda), the backend
 * (cuda_backend.cu) and the memory planner (trainer/plan.c) alike, so the
 * plan of a CUDA run is computed by the code that allocates (docs/planner.md). */
#ifndef PL_CUDA_SIZES_H
#define PL_CUDA_SIZES_H

#include <stddef.h>
#include <stdint.h>

/* ---- kernel workspaces (elements; the launchers' *_workspace functions) ---------------- */
#define PL_CUDA_SUMSQ_THREADS 256
#define PL_CUDA_SUMSQ_MAX_BLOCKS 1024
#define PL_CUDA_SUMSQ_PER_THREAD 8
#define PL_CUDA_RMS_DW_ROWS 64
#define PL_CUDA_CE_TOKENS 8
#define PL_CUDA_CE_VOCAB 256

/* Blocks of the sum of squares over n elements, and elements per block. */
static inline int pl_cuda_sumsq_split(int64_t n, int64_t *per) {
    if (n < 1) n = 1;
    int64_t nb = (n + PL_CUDA_SUMSQ_THREADS * PL_CUDA_SUMSQ_PER_THREAD - 1) /
                 (PL_CUDA_SUMSQ_THREADS * PL_CUDA_SUMSQ_PER_THREAD);
    if (nb > PL_CUDA_SUMSQ_MAX_BLOCKS) nb = PL_CUDA_SUMSQ_MAX_BLOCKS;
    if (nb < 1) nb = 1;
    *per = (n + nb - 1) / nb;
    return (int)nb;
}
static inline size_t pl_cuda_size_sumsq_ws(int64_t n) { /* doubles */
    int64_t per;
    return (size_t)pl_cuda_sumsq_split(n, &per);
}
static inline size_t pl_cuda_size_rmsnorm_bwd_ws(int T, int C) { /* floats */
    return T > 0 && C > 0 ? (size_t)((T + PL_CUDA_RMS_DW_ROWS - 1) / PL_CUDA_RMS_DW_ROWS) * (size_t)C : 0;
}
static inline size_t pl_cuda_size_attention_bwd_ws(int Tq, int nh) { /* floats */
    return Tq > 0 && nh > 0 ? (size_t)Tq * (size_t)nh : 0;
}
static inline int pl_cuda_ce_nchunks(int V) { return (V + PL_CUDA_CE_VOCAB - 1) / PL_CUDA_CE_VOCAB; }
static inline size_t pl_cuda_size_lm_head_ce_ws(int T, int V) { /* floats */
    return T > 0 && V > 0 ? (size_t)T * (2 * (size_t)pl_cuda_ce_nchunks(V) + 2) : 0;
}
static inline size_t pl_cuda_size_lm_head_ce_bwd_ws(int T, int C) { /* floats */
    return T > 0 && C > 0 ? (size_t)T * (size_t)C : 0;
}
#define PL_CUDA_GEMM_WORKSPACE ((size_t)32 << 20) /* NVIDIA's advice for Hopper; more than Ampere/Ada use */
/* linear_q on an NF4 weight for at most this many tokens runs the fused
 * GEMV (no scratch); above it the weight is dequantized into the bf16
 * scratch for a GEMM. */
#define PL_CUDA_GEMV_MAX_T 8

/* ---- the backend's scratch (bytes; cuda_backend.cu) ---------------------------------------
 * Grow-only slots, each as large as the largest call so far; a slot's size at
 * a call is below. The slots hold: a frozen NF4 weight dequantized to bf16 for
 * a GEMM; the bf16 copies of one module's LoRA A and B; fp32 kernel
 * workspaces (RMSNorm backward, attention backward, sum of squares: shared);
 * the attention backward's recomputed output and log-sum-exp; the fused
 * head + loss workspaces; two device scalars; the RMSNorm backward's
 * recomputed output and rstd. */
enum { PL_CUDA_SC_WBF16 = 0, PL_CUDA_SC_LORA_A, PL_CUDA_SC_LORA_B, PL_CUDA_SC_F32, PL_CUDA_SC_ATT_OUT, PL_CUDA_SC_WS,
       PL_CUDA_SC_DSUM, PL_CUDA_SC_NORM, PL_CUDA_SC_N };

static inline size_t pl_cuda_al16(size_t x) { return (x + 15) & ~(size_t)15; }
static inline size_t pl_cuda_sc_wbf16(int64_t n) { return (size_t)n * 2; }
static inline size_t pl_cuda_sc_lora_a(int r, int I) { return (size_t)r * (size_t)I * 2; }
static inline size_t pl_cuda_sc_lora_b(int O, int r) { return (size_t)O * (size_t)r * 2; }
static inline size_t pl_cuda_sc_rmsnorm_ws(int T, int C) { return pl_cuda_size_rmsnorm_bwd_ws(T, C) * 4 + 16; }
static inline size_t pl_cuda_sc_attention_ws(int T, int nh) { return pl_cuda_size_attention_bwd_ws(T, nh) * 4 + 16; }
static inline size_t pl_cuda_sc_sumsq_ws(int64_t n) { return pl_cuda_size_sumsq_ws(n) * 8 + 16; }
static inline size_t pl_cuda_sc_att_out(int T, int nh, int hd) {
    return pl_cuda_al16((size_t)T * (size_t)nh * (size_t)hd * 2) + (size_t)nh * (size_t)T * 4;
}
static inline size_t pl_cuda_sc_ce_ws(int T, int V) { return pl_cuda_size_lm_head_ce_ws(T, V) * 4 + 16; }
static inline size_t pl_cuda_sc_ce_bwd_ws(int T, int C) { return pl_cuda_size_lm_head_ce_bwd_ws(T, C) * 4 + 16; }
#define PL_CUDA_SC_DSUM_BYTES 16
static inline size_t pl_cuda_sc_norm(int T, int C) { return pl_cuda_al16((size_t)T * (size_t)C * 2) + (size_t)T * 4; }

/* The device copy of an NF4 weight of n elements: packed | absmax (codes or
 * fp32) | nested absmax | the 256-entry code, each part 16-byte aligned. */
static inline size_t pl_cuda_nf4_bytes(int64_t n, int blocksize, int double_quant) {
    size_t packed = (size_t)(n + 1) / 2, nb = (size_t)((n + blocksize - 1) / blocksize);
    size_t nn = double_quant ? (nb + 255) / 256 : 0;
    return pl_cuda_al16(packed) + pl_cuda_al16(double_quant ? nb : nb * 4) + pl_cuda_al16(nn * 4) + 256 * 4;
}

#endif
