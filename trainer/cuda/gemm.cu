/* gemm.cu: GEMMs through cuBLASLt (bf16 operands, fp32 accumulation, bf16 or
 * fp32 output) in the row-major layouts of the CPU linear op, and the LoRA
 * path built on them (cuda_ops.h). Under the emulator the same calls are
 * served by emu_cublaslt.cpp (OpenBLAS sgemm on fp32 copies).
 *
 * Row-major to cuBLASLt's column-major: a row-major (r, c) matrix is the
 * column-major (c, r) matrix with ld = c, its transpose. So the row-major
 * C (M,N) = op(A) op(B) is the column-major C^T (N,M) = op(B)^T op(A)^T:
 * cuBLASLt's A is our B (transposed iff trans_b), its B our A (iff trans_a),
 * m = N, n = M, k = K. The linear forward y = x W^T becomes the "TN" case. */
#ifndef PL_CUDA_EMU
#include <cublasLt.h>
#endif
#include <mutex>
#include <new>
#include <unordered_map>
#include "cuda_common.cuh"

/* A GEMM's shape as the heuristic sees it: sizes, transposes, output type,
 * the operands' alignments and the workspace. */
struct gemm_key {
    int M, N, K, trans_a, trans_b, c_fp32;
    uint32_t al[3];
    uint64_t ws;
    bool operator==(const gemm_key &o) const {
        return M == o.M && N == o.N && K == o.K && trans_a == o.trans_a && trans_b == o.trans_b &&
               c_fp32 == o.c_fp32 && al[0] == o.al[0] && al[1] == o.al[1] && al[2] == o.al[2] && ws == o.ws;
    }
};
struct gemm_key_hash {
    size_t operator()(const gemm_key &k) const {
        uint64_t h = 1469598103934665603ull;
        const uint64_t v[] = {(uint64_t)k.M, (uint64_t)k.N, (uint64_t)k.K,
                              (uint64_t)(k.trans_a | k.trans_b << 1 | k.c_fp32 << 2), k.al[0], k.al[1], k.al[2], k.ws};
        for (uint64_t x : v) h = (h ^ x) * 1099511628211ull;
        return (size_t)h;
    }
};

/* The handle, and the algorithm chosen for each shape the first time it is
 * seen: later calls of that shape run the same algorithm (pinned for the
 * process, so a step's GEMMs do not change kernels between steps) without
 * asking the heuristic again. */
struct pl_cuda_blas {
    cublasLtHandle_t lt;
    std::mutex mu;
    std::unordered_map<gemm_key, cublasLtMatmulAlgo_t, gemm_key_hash> algos;
    unsigned long heuristic_calls = 0;
};

unsigned long pl_cuda_blas_heuristic_calls(const pl_cuda_blas *h) { return h ? h->heuristic_calls : 0; }

#define BLAS_ERR(st) (PL_CUDA_EBLAS + (int)(st))

int pl_cuda_blas_create(pl_cuda_blas **out) {
    *out = NULL;
    pl_cuda_blas *h = new (std::nothrow) pl_cuda_blas;
    if (!h) return (int)cudaErrorMemoryAllocation;
    cublasStatus_t st = cublasLtCreate(&h->lt);
    if (st != CUBLAS_STATUS_SUCCESS) {
        delete h;
        return BLAS_ERR(st);
    }
    *out = h;
    return 0;
}

void pl_cuda_blas_destroy(pl_cuda_blas *h) {
    if (!h) return;
    cublasLtDestroy(h->lt);
    delete h;
}

size_t pl_cuda_gemm_workspace(void) { return PL_CUDA_GEMM_WORKSPACE; }

/* The alignment a pointer has (a power of two, at most 256): declared to the
 * heuristic, whose default assumes 256 and may pick kernels that need it;
 * views into a buffer (a layer's slice, an odd row offset) have less. */
static uint32_t align_of(const void *p) {
    uintptr_t a = (uintptr_t)p;
    uint32_t al = 256;
    while (al > 1 && a % al) al >>= 1;
    return al;
}

/* C = beta * C (K = 0: an empty sum, which cuBLASLt does not take). */
__global__ void scale_f32_kernel(float *c, int64_t n, float beta) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) c[i] = beta == 0.0f ? 0.0f : beta * c[i];
}
__global__ void scale_bf16_kernel(__nv_bfloat16 *c, int64_t n, float beta) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) pl_st(c + i, beta == 0.0f ? 0.0f : beta * pl_ld(c + i));
}

int pl_cuda_gemm(pl_cuda_blas *h, void *C, int c_fp32, const pl_bf16 *A, int trans_a, const pl_bf16 *B, int trans_b,
                 int M, int N, int K, float alpha, float beta, void *workspace, size_t workspace_bytes,
                 pl_stream stream) {
    if (M <= 0 || N <= 0) return 0;
    cudaStream_t s = (cudaStream_t)stream;
    if (K <= 0) {
        int64_t n = (int64_t)M * N;
        unsigned grid = (unsigned)((n + 255) / 256);
        if (c_fp32) PL_LAUNCH(scale_f32_kernel, grid, 256, 0, s, (float *)C, n, beta);
        else PL_LAUNCH(scale_bf16_kernel, grid, 256, 0, s, (__nv_bfloat16 *)C, n, beta);
        return pl_cuda_status();
    }
    const cudaDataType_t ct = c_fp32 ? CUDA_R_32F : CUDA_R_16BF;
    cublasLtMatmulDesc_t desc = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    const int32_t opa = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, opb = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const uint64_t ws = workspace ? (uint64_t)workspace_bytes : 0;
    cublasStatus_t st = cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb);
    /* cuBLASLt's A: our B, stored (K,N) row-major = (N,K) column-major, or (N,K) row-major when trans_b */
    if (st == CUBLAS_STATUS_SUCCESS)
        st = trans_b ? cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, (uint64_t)K, (uint64_t)N, K)
                     : cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, (uint64_t)N, (uint64_t)K, N);
    /* cuBLASLt's B: our A, stored (M,K) row-major = (K,M) column-major, or (K,M) row-major when trans_a */
    if (st == CUBLAS_STATUS_SUCCESS)
        st = trans_a ? cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, (uint64_t)M, (uint64_t)K, M)
                     : cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, (uint64_t)K, (uint64_t)M, K);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatrixLayoutCreate(&lc, ct, (uint64_t)N, (uint64_t)M, N);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatmulPreferenceCreate(&pref);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    /* cuBLASLt's A, B, C, D are our B, A, C, C */
    const uint32_t al[4] = {align_of(B), align_of(A), align_of(C), align_of(C)};
    for (int i = 0; i < 4 && st == CUBLAS_STATUS_SUCCESS; i++)
        st = cublasLtMatmulPreferenceSetAttribute(
            pref, (cublasLtMatmulPreferenceAttributes_t)(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES + i), &al[i],
            sizeof al[i]);
    const gemm_key key = {M, N, K, trans_a, trans_b, c_fp32, {al[0], al[1], al[2]}, ws};
    int cached = 0;
    {
        std::lock_guard<std::mutex> g(h->mu);
        auto it = h->algos.find(key);
        if (it != h->algos.end()) {
            heur.algo = it->second;
            cached = 1;
        }
    }
    if (st == CUBLAS_STATUS_SUCCESS && !cached) {
        st = cublasLtMatmulAlgoGetHeuristic(h->lt, desc, la, lb, lc, lc, pref, 1, &heur, &found);
        if (st == CUBLAS_STATUS_SUCCESS && found < 1) st = CUBLAS_STATUS_NOT_SUPPORTED;
        if (st == CUBLAS_STATUS_SUCCESS) {
            std::lock_guard<std::mutex> g(h->mu);
            h->algos[key] = heur.algo;
            h->heuristic_calls++;
        }
    }
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmul(h->lt, desc, &alpha, B, la, A, lb, &beta, C, lc, C, lc, &heur.algo, workspace,
                            (size_t)ws, s);
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (desc) cublasLtMatmulDescDestroy(desc);
    return st == CUBLAS_STATUS_SUCCESS ? 0 : BLAS_ERR(st);
}

int pl_cuda_linear(pl_cuda_blas *h, pl_bf16 *y, const pl_bf16 *x, const pl_bf16 *W, int T, int I, int O,
                   void *workspace, size_t workspace_bytes, pl_stream stream) {
    return pl_cuda_gemm(h, y, 0, x, 0, W, 1, T, O, I, 1.0f, 0.0f, workspace, workspace_bytes, stream);
}

int pl_cuda_linear_bwd_x(pl_cuda_blas *h, pl_bf16 *dx, int accumulate, const pl_bf16 *dy, const pl_bf16 *W, int T,
                         int I, int O, void *workspace, size_t workspace_bytes, pl_stream stream) {
    return pl_cuda_gemm(h, dx, 0, dy, 0, W, 0, T, I, O, 1.0f, accumulate ? 1.0f : 0.0f, workspace, workspace_bytes,
                        stream);
}

int pl_cuda_linear_bwd_w(pl_cuda_blas *h, float *dW, const pl_bf16 *dy, const pl_bf16 *x, int T, int I, int O,
                         float alpha, void *workspace, size_t workspace_bytes, pl_stream stream) {
    return pl_cuda_gemm(h, dW, 1, dy, 1, x, 0, O, I, T, alpha, 1.0f, workspace, workspace_bytes, stream);
}

/* ---- LoRA ------------------------------------------------------------------------------ */

int pl_cuda_lora_fwd(pl_cuda_blas *h, pl_bf16 *y, pl_bf16 *xa, const pl_bf16 *u, const pl_bf16 *A, const pl_bf16 *B,
                     int T, int I, int O, int r, float scale, void *workspace, size_t workspace_bytes,
                     pl_stream stream) {
    int e = pl_cuda_gemm(h, xa, 0, u, 0, A, 1, T, r, I, 1.0f, 0.0f, workspace, workspace_bytes, stream);
    if (e) return e;
    return pl_cuda_gemm(h, y, 0, xa, 0, B, 1, T, O, r, scale, 1.0f, workspace, workspace_bytes, stream);
}

int pl_cuda_lora_bwd(pl_cuda_blas *h, pl_bf16 *dx, int accumulate_dx, float *dA, float *dB, pl_bf16 *dxa,
                     const pl_bf16 *dout, const pl_bf16 *u, const pl_bf16 *xa, const pl_bf16 *A, const pl_bf16 *B,
                     int T, int I, int O, int r, float scale, void *workspace, size_t workspace_bytes,
                     pl_stream stream) {
    int e = 0;
    /* dB (O,r) += scale dout^T . xa */
    if (dB) e = pl_cuda_gemm(h, dB, 1, dout, 1, xa, 0, O, r, T, scale, 1.0f, workspace, workspace_bytes, stream);
    /* dxa (T,r) = scale dout . B */
    if (!e) e = pl_cuda_gemm(h, dxa, 0, dout, 0, B, 0, T, r, O, scale, 0.0f, workspace, workspace_bytes, stream);
    /* dA (r,I) += dxa^T . u */
    if (!e && dA) e = pl_cuda_gemm(h, dA, 1, dxa, 1, u, 0, r, I, T, 1.0f, 1.0f, workspace, workspace_bytes, stream);
    /* dx (T,I) (+)= dxa . A */
    if (!e && dx)
        e = pl_cuda_gemm(h, dx, 0, dxa, 0, A, 0, T, I, r, 1.0f, accumulate_dx ? 1.0f : 0.0f, workspace,
                         workspace_bytes, stream);
    return e;
}
