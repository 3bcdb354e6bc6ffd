/* elementwise.cu: the small elementwise kernels the CUDA backend needs
 * between the big ones: fp32 -> bf16 conversion (the LoRA masters' bf16
 * copies, frozen fp32 weights), the bf16 residual add, the bias add, and
 * LoRA's dropout with the CPU's Philox draws (ops_math.h). */
#include "cuda_common.cuh"

/* ---- kernels ---------------------------------------------------------------------------- */

__global__ void f32_to_bf16_kernel(__nv_bfloat16 *out, const float *in, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        pl_st(&out[i], in[i]);
}

__global__ void add_bf16_kernel(__nv_bfloat16 *out, const __nv_bfloat16 *a, const __nv_bfloat16 *b, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        pl_st(&out[i], pl_ld(&a[i]) + pl_ld(&b[i]));
}

__global__ void bias_add_kernel(__nv_bfloat16 *y, const float *bias, int64_t n, int O) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        pl_st(&y[i], pl_ld(&y[i]) + bias[i % O]);
}

/* One thread per group of 8 elements: one Philox call, as the CPU op. */
__global__ void dropout_kernel(__nv_bfloat16 *dst, const __nv_bfloat16 *src, int64_t n, uint32_t thr,
                               float keep_scale, uint64_t seed, uint64_t stream_id, uint64_t first_group) {
    const int64_t ngroups = (n + 7) / 8;
    for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < ngroups;
         g += (int64_t)gridDim.x * blockDim.x) {
        uint32_t w[4];
        pl_philox4(seed, stream_id, first_group + (uint64_t)g, w);
        for (int k = 0; k < 8; k++) {
            int64_t e = g * 8 + k;
            if (e >= n) break;
            pl_st(&dst[e], pl_dropout_draw(w, k) >= thr ? pl_ld(&src[e]) * keep_scale : 0.0f);
        }
    }
}

/* ---- launchers ---------------------------------------------------------------------------- */

static unsigned ew_blocks(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    return (unsigned)(b > 65536 ? 65536 : b);
}

extern "C" int pl_cuda_f32_to_bf16(pl_bf16 *out, const float *in, int64_t n, pl_stream stream) {
    if (n < 0) return (int)cudaErrorInvalidValue;
    if (n == 0) return 0;
    PL_LAUNCH(f32_to_bf16_kernel, ew_blocks(n, 256), 256, 0, stream, pl_dev_bf16(out), in, n);
    return pl_cuda_status();
}

extern "C" int pl_cuda_add(pl_bf16 *out, const pl_bf16 *a, const pl_bf16 *b, int64_t n, pl_stream stream) {
    if (n < 0) return (int)cudaErrorInvalidValue;
    if (n == 0) return 0;
    PL_LAUNCH(add_bf16_kernel, ew_blocks(n, 256), 256, 0, stream, pl_dev_bf16(out), pl_dev_bf16(a), pl_dev_bf16(b), n);
    return pl_cuda_status();
}

extern "C" int pl_cuda_bias_add(pl_bf16 *y, const float *bias, int T, int O, pl_stream stream) {
    if (T < 0 || O <= 0) return (int)cudaErrorInvalidValue;
    int64_t n = (int64_t)T * O;
    if (n == 0) return 0;
    PL_LAUNCH(bias_add_kernel, ew_blocks(n, 256), 256, 0, stream, pl_dev_bf16(y), bias, n, O);
    return pl_cuda_status();
}

extern "C" int pl_cuda_dropout(pl_bf16 *dst, const pl_bf16 *src, int64_t n, float p, uint64_t seed, uint64_t stream_id,
                               uint64_t first, pl_stream stream) {
    if (n < 0 || !(p < 1.0f) || first % 8) return (int)cudaErrorInvalidValue;
    if (n == 0) return 0;
    if (!(p > 0)) {
        if (dst == src) return 0;
        return (int)cudaMemcpyAsync(dst, src, (size_t)n * 2, cudaMemcpyDeviceToDevice, stream);
    }
    PL_LAUNCH(dropout_kernel, ew_blocks((n + 7) / 8, 256), 256, 0, stream, pl_dev_bf16(dst), pl_dev_bf16(src), n,
              pl_dropout_threshold(p), 1.0f / (1.0f - p), seed, stream_id, first / 8);
    return pl_cuda_status();
}
