/* embedding.cu: token embedding lookup (bf16 table) and its backward into an
 * fp32 table gradient.
 *
 * The backward is a scatter-add where several tokens may share an id. With
 * no float atomics, each thread owns one column of the table and walks the
 * tokens in order, as the CPU backend does (cpu_embedding_bwd.c), so every
 * element gets the same sum in the same order: the CPU's bits. Parallelism
 * is the width C (enough for C >= 2048 on a 24 GB card); a sort-by-id
 * variant is the step up when T gets long (not done). */
#include "cuda_common.cuh"

/* ---- kernels ---------------------------------------------------------------------------- */

/* out (T,C) = table[ids[t]]; grid (ceil(C / blockDim.x), T). */
__global__ void embedding_kernel(__nv_bfloat16 *out, const int32_t *ids, const __nv_bfloat16 *table, int C) {
    const int t = blockIdx.y, c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c < C) out[(int64_t)t * C + c] = table[(int64_t)ids[t] * C + c];
}

/* dtable (V,C) += dout (T,C) by ids; thread per column, tokens in order. */
__global__ void embedding_bwd_kernel(float *dtable, const int32_t *ids, const __nv_bfloat16 *dout, int T, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    for (int t = 0; t < T; t++) dtable[(int64_t)ids[t] * C + c] += pl_ld(&dout[(int64_t)t * C + c]);
}

/* ---- launchers ---------------------------------------------------------------------------- */

extern "C" int pl_cuda_embedding(pl_bf16 *out, const int32_t *ids, const pl_bf16 *table, int T, int C,
                                 pl_stream stream) {
    if (T < 0 || C < 0 || T > 65535) return (int)cudaErrorInvalidValue;
    if (T == 0 || C == 0) return 0;
    const int threads = 128;
    PL_LAUNCH(embedding_kernel, dim3((C + threads - 1) / threads, T), threads, 0, stream, pl_dev_bf16(out), ids,
              pl_dev_bf16(table), C);
    return pl_cuda_status();
}

extern "C" int pl_cuda_embedding_bwd(float *dtable, const int32_t *ids, const pl_bf16 *dout, int T, int C,
                                     pl_stream stream) {
    if (T < 0 || C < 0) return (int)cudaErrorInvalidValue;
    if (T == 0 || C == 0) return 0;
    const int threads = 128;
    PL_LAUNCH(embedding_bwd_kernel, (C + threads - 1) / threads, threads, 0, stream, dtable, ids, pl_dev_bf16(dout),
              T, C);
    return pl_cuda_status();
}
