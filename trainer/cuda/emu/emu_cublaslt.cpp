/* emu_cublaslt.cpp: cuBLASLt's matmul on the CPU (emu_cublaslt.h): operands
 * copied to fp32, OpenBLAS sgemm in column-major (cuBLASLt's default order),
 * D rounded once to its type (CUDA's bf16 rounding: nearest even). Checks
 * what a real call would reject: types other than bf16 A/B with bf16 or fp32
 * C = D, shapes that do not agree with the transposes, ld < rows, k = 0,
 * a pointer less aligned than the preference promised (CUBLASLT_MATMUL_PREF_
 * MIN_ALIGNMENT_*_BYTES, 256 by default: cuBLASLt's kernels for the chosen
 * algorithm may use vector loads that need it; the emulator fails the call
 * with CUBLAS_STATUS_NOT_SUPPORTED where a GPU might fault or misread).
 *
 * cblas_sgemm is a weak reference: the test binaries link OpenBLAS (through
 * libpotluck's core/gemm.c); a program built with the one-line command of
 * docs/cuda.md, without -lopenblas, gets a plain triple loop instead (fp32
 * sums in k order). */
#include <stdlib.h>
#include <new>
#include <vector>
#include "emu_int.h"

struct cublasLtContext {
    int magic;
};
struct cublasLtMatmulDescOpaque_st {
    cublasComputeType_t compute;
    cudaDataType_t scale;
    int32_t transa, transb, pointer_mode;
};
struct cublasLtMatrixLayoutOpaque_st {
    cudaDataType_t type;
    uint64_t rows, cols;
    int64_t ld;
    int32_t order;
};
struct cublasLtMatmulPreferenceOpaque_st {
    uint64_t max_workspace;
    uint32_t align[4]; /* A, B, C, D */
};

#define HANDLE_MAGIC 0x4c74

/* CBLAS's, with its enums as int (CblasColMajor 102, CblasNoTrans 111, CblasTrans 112). */
extern "C" void cblas_sgemm(int order, int transa, int transb, int m, int n, int k, float alpha, const float *a,
                            int lda, const float *b, int ldb, float beta, float *c, int ldc) __attribute__((weak));

/* Column-major C (m,n) = alpha op(A) op(B) + beta C, packed operands. */
static void sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
                  float beta, float *c, int ldc) {
    if (cblas_sgemm) {
        cblas_sgemm(102, ta ? 112 : 111, tb ? 112 : 111, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float acc = 0.0f;
            for (int p = 0; p < k; p++)
                acc += (ta ? a[(size_t)i * lda + p] : a[(size_t)p * lda + i]) *
                       (tb ? b[(size_t)p * ldb + j] : b[(size_t)j * ldb + p]);
            float &o = c[(size_t)j * ldc + i];
            o = beta == 0.0f ? alpha * acc : alpha * acc + beta * o;
        }
}

extern "C" {

cublasStatus_t cublasLtCreate(cublasLtHandle_t *handle) {
    if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
    cublasLtContext *h = new (std::nothrow) cublasLtContext{HANDLE_MAGIC};
    if (!h) return CUBLAS_STATUS_ALLOC_FAILED;
    *handle = h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
    if (!handle || handle->magic != HANDLE_MAGIC) return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->magic = 0;
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *desc, cublasComputeType_t compute, cudaDataType_t scale) {
    if (!desc || compute != CUBLAS_COMPUTE_32F || scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    *desc = new (std::nothrow) cublasLtMatmulDescOpaque_st{compute, scale, CUBLAS_OP_N, CUBLAS_OP_N, 0};
    return *desc ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
    delete desc;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr,
                                              const void *buf, size_t size) {
    if (!desc || !buf || size != sizeof(int32_t)) return CUBLAS_STATUS_INVALID_VALUE;
    int32_t v;
    memcpy(&v, buf, 4);
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA: desc->transa = v; break;
    case CUBLASLT_MATMUL_DESC_TRANSB: desc->transb = v; break;
    case CUBLASLT_MATMUL_DESC_POINTER_MODE: desc->pointer_mode = v; break;
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (desc->transa > 1 || desc->transb > 1 || desc->pointer_mode != 0) return CUBLAS_STATUS_NOT_SUPPORTED;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *layout, cudaDataType_t type, uint64_t rows,
                                          uint64_t cols, int64_t ld) {
    if (!layout) return CUBLAS_STATUS_INVALID_VALUE;
    if (type != CUDA_R_16BF && type != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (ld < 1 || (uint64_t)ld < rows) return CUBLAS_STATUS_INVALID_VALUE;
    *layout = new (std::nothrow) cublasLtMatrixLayoutOpaque_st{type, rows, cols, ld, 0};
    return *layout ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
    delete layout;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *pref) {
    if (!pref) return CUBLAS_STATUS_INVALID_VALUE;
    *pref = new (std::nothrow) cublasLtMatmulPreferenceOpaque_st{0, {256, 256, 256, 256}};
    return *pref ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
    delete pref;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void *buf,
                                                    size_t size) {
    if (!pref || !buf) return CUBLAS_STATUS_INVALID_VALUE;
    if (attr == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES && size == sizeof(uint64_t)) {
        memcpy(&pref->max_workspace, buf, 8);
        return CUBLAS_STATUS_SUCCESS;
    }
    if (attr >= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES && attr <= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES &&
        size == sizeof(uint32_t)) {
        uint32_t v;
        memcpy(&v, buf, 4);
        if (v == 0 || (v & (v - 1))) return CUBLAS_STATUS_INVALID_VALUE;
        pref->align[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES] = v;
        return CUBLAS_STATUS_SUCCESS;
    }
    return CUBLAS_STATUS_NOT_SUPPORTED;
}

} /* extern "C" */

/* The shapes of a matmul: op(A) (m,k), op(B) (k,n), C and D (m,n). */
static cublasStatus_t check_shapes(cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                   cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d, uint64_t *m, uint64_t *n,
                                   uint64_t *k) {
    if (!desc || !a || !b || !c || !d) return CUBLAS_STATUS_INVALID_VALUE;
    if (a->type != CUDA_R_16BF || b->type != CUDA_R_16BF || c->type != d->type) return CUBLAS_STATUS_NOT_SUPPORTED;
    uint64_t am = desc->transa ? a->cols : a->rows, ak = desc->transa ? a->rows : a->cols;
    uint64_t bk = desc->transb ? b->cols : b->rows, bn = desc->transb ? b->rows : b->cols;
    if (ak != bk || c->rows != am || c->cols != bn || d->rows != am || d->cols != bn) return CUBLAS_STATUS_INVALID_VALUE;
    if (ak == 0) return CUBLAS_STATUS_NOT_SUPPORTED;
    *m = am;
    *n = bn;
    *k = ak;
    return CUBLAS_STATUS_SUCCESS;
}

extern "C" {

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                                              cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t results[], int *returned) {
    if (!handle || handle->magic != HANDLE_MAGIC) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!pref || requested < 1 || !results || !returned) return CUBLAS_STATUS_INVALID_VALUE;
    uint64_t m, n, k;
    *returned = 0;
    cublasStatus_t st = check_shapes(desc, a, b, c, d, &m, &n, &k);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    memset(&results[0], 0, sizeof results[0]);
    results[0].algo.data[0] = 0x656d75; /* "emu" */
    for (int i = 0; i < 4; i++) results[0].algo.data[1 + i] = pref->align[i]; /* what its kernels may assume */
    results[0].workspaceSize = 0;
    results[0].state = CUBLAS_STATUS_SUCCESS;
    results[0].wavesCount = 1.0f;
    *returned = 1;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void *alpha,
                              const void *A, cublasLtMatrixLayout_t a, const void *B, cublasLtMatrixLayout_t b,
                              const void *beta, const void *C, cublasLtMatrixLayout_t c, void *D,
                              cublasLtMatrixLayout_t d, const cublasLtMatmulAlgo_t *algo, void *workspace,
                              size_t workspace_bytes, cudaStream_t stream) {
    (void)workspace;
    (void)workspace_bytes;
    if (!handle || handle->magic != HANDLE_MAGIC) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!alpha || !beta || !A || !B || !D || !pl_emu::stream_valid(stream)) return CUBLAS_STATUS_INVALID_VALUE;
    if (!algo || algo->data[0] != 0x656d75) return CUBLAS_STATUS_INVALID_VALUE; /* the emulator wants the heuristic's */
    const void *ptrs[4] = {A, B, C, D};
    for (int i = 0; i < 4; i++)
        if (ptrs[i] && (uintptr_t)ptrs[i] % algo->data[1 + i] != 0) return CUBLAS_STATUS_NOT_SUPPORTED;
    uint64_t m, n, k;
    cublasStatus_t st = check_shapes(desc, a, b, c, d, &m, &n, &k);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    float al, be;
    memcpy(&al, alpha, 4);
    memcpy(&be, beta, 4);
    if (be != 0.0f && !C) return CUBLAS_STATUS_INVALID_VALUE;
    if (C && C != D && c->ld != d->ld) return CUBLAS_STATUS_NOT_SUPPORTED; /* cuBLASLt: C and D alike unless in place */
    if (C == D && c->ld != d->ld) return CUBLAS_STATUS_INVALID_VALUE;
    /* fp32 copies, packed (ld = rows) */
    auto up = [](const void *p, cublasLtMatrixLayout_t l, std::vector<float> &out) {
        out.resize((size_t)(l->rows * l->cols));
        for (uint64_t j = 0; j < l->cols; j++)
            for (uint64_t i = 0; i < l->rows; i++) {
                size_t at = (size_t)(j * (uint64_t)l->ld + i);
                out[(size_t)(j * l->rows + i)] =
                    l->type == CUDA_R_16BF ? pl_emu::bf16_to_f32(static_cast<const unsigned short *>(p)[at])
                                           : static_cast<const float *>(p)[at];
            }
    };
    std::vector<float> fa, fb, fc;
    up(A, a, fa);
    up(B, b, fb);
    if (be != 0.0f) up(C, c, fc);
    else fc.assign((size_t)(m * n), 0.0f);
    sgemm(desc->transa, desc->transb, (int)m, (int)n, (int)k, al, fa.data(), (int)a->rows, fb.data(), (int)b->rows, be,
          fc.data(), (int)m);
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t i = 0; i < m; i++) {
            size_t at = (size_t)(j * (uint64_t)d->ld + i);
            float v = fc[(size_t)(j * m + i)];
            if (d->type == CUDA_R_16BF) static_cast<unsigned short *>(D)[at] = pl_emu::f32_to_bf16(v);
            else static_cast<float *>(D)[at] = v;
        }
    return CUBLAS_STATUS_SUCCESS;
}

} /* extern "C" */
