/* teeth.cu: broken copies of two kernels, for test_cuda_emu to prove that
 * the emulator catches what a GPU would do to them:
 *  - rmsnorm_kernel with the __syncthreads after the per-warp partial sums
 *    removed: warps read the shared partials before all are written (the
 *    emulator fills shared memory with NaN, so a fast warp reads NaN);
 *  - nf4_gemv's warp sum with shuffle width 16 instead of 32: each half
 *    warp sums only its own 16 lanes;
 *  - a __syncthreads that half the block skips while the other half waits
 *    in a warp shuffle: the launch must fail, naming the kernel.
 * Built only for the emulator (tests/cuda is not compiled by nvcc). */
#include "trainer/cuda/cuda_common.cuh"

/* pl_block_sum without its first barrier. */
static __device__ float block_sum_nosync(float v, float *sh) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = pl_warp_sum(v);
    if (lane == 0) sh[w] = v;
    /* __syncthreads(); removed */
    float t = lane < nw ? sh[lane] : 0.0f;
    t = pl_warp_sum(t);
    __syncthreads();
    return t;
}

__global__ void teeth_rmsnorm_nosync_kernel(__nv_bfloat16 *out, const __nv_bfloat16 *x, const float *w, int C,
                                            float eps) {
    __shared__ float sh[32];
    const int64_t row = (int64_t)blockIdx.x * C;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        const float v = pl_ld(&x[row + i]);
        ss += v * v;
    }
    ss = block_sum_nosync(ss, sh);
    const float r = pl_rmsnorm_scale(ss, C, eps);
    for (int i = threadIdx.x; i < C; i += blockDim.x) pl_st(&out[row + i], (pl_ld(&x[row + i]) * r) * w[i]);
}

/* A bf16 GEMV (no NF4) whose warp sum uses width 16. */
__global__ void teeth_gemv_width16_kernel(__nv_bfloat16 *y, const __nv_bfloat16 *x, const float *W, int rows,
                                          int cols) {
    const int lane = threadIdx.x & 31, r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (r >= rows) return;
    float acc = 0.0f;
    for (int c = lane; c < cols; c += 32) acc += W[(int64_t)r * cols + c] * pl_ld(&x[c]);
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o, 16); /* should be 32 */
    if (lane == 0) pl_st(&y[r], acc);
}

/* The same GEMV, correct: the control. */
__global__ void teeth_gemv_ok_kernel(__nv_bfloat16 *y, const __nv_bfloat16 *x, const float *W, int rows, int cols) {
    const int lane = threadIdx.x & 31, r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (r >= rows) return;
    float acc = 0.0f;
    for (int c = lane; c < cols; c += 32) acc += W[(int64_t)r * cols + c] * pl_ld(&x[c]);
    acc = pl_warp_sum(acc);
    if (lane == 0) pl_st(&y[r], acc);
}

__global__ void teeth_divergent_barrier_kernel(float *out) {
    if (threadIdx.x < 16) { /* lanes 16..31 of warp 0 wait for these in the shuffle */
        __syncthreads();
        out[threadIdx.x] = 1.0f;
    } else {
        out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (float)threadIdx.x, 1);
    }
}

extern "C" int teeth_rmsnorm_nosync(pl_bf16 *out, const pl_bf16 *x, const float *w, int T, int C, float eps) {
    PL_LAUNCH(teeth_rmsnorm_nosync_kernel, T, 128, 0, 0, pl_dev_bf16(out), pl_dev_bf16(x), w, C, eps);
    return pl_cuda_status();
}

extern "C" int teeth_gemv(pl_bf16 *y, const pl_bf16 *x, const float *W, int rows, int cols, int broken) {
    if (broken)
        PL_LAUNCH(teeth_gemv_width16_kernel, (rows + 3) / 4, 128, 0, 0, pl_dev_bf16(y), pl_dev_bf16(x), W, rows, cols);
    else
        PL_LAUNCH(teeth_gemv_ok_kernel, (rows + 3) / 4, 128, 0, 0, pl_dev_bf16(y), pl_dev_bf16(x), W, rows, cols);
    return pl_cuda_status();
}

extern "C" int teeth_divergent_barrier(float *out) {
    PL_LAUNCH(teeth_divergent_barrier_kernel, 1, 64, 0, 0, out);
    return pl_cuda_status();
}
