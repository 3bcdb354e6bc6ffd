/* rmsnorm.cu: RMSNorm forward (keeps 1/rms per row for the backward) and
 * backward, bf16 activations, fp32 weight, fp32 sums.
 *
 * Forward: one block per row; the sum of squares is a block sum (order fixed
 * by the block size), the scale is ops_math.h's pl_rmsnorm_scale and each
 * output (x r) w as pl_rmsnorm_row computes it.
 * Backward (pl_rmsnorm_bwd_row's formula, with r from the forward):
 *   dx_i = r (w_i dy_i) - x_i (r^3 / C) sum_j dy_j w_j x_j
 *   dw_i += sum_t dy_ti (x_ti r_t)
 * dw is summed without atomics: partial sums over chunks of RMS_DW_ROWS rows
 * go to the workspace, then one thread per column adds the chunks in order.
 * The dw kernels run before the dx kernel, so dx may alias dout. */
#include "cuda_common.cuh"

#define RMS_THREADS 128
#define RMS_DW_ROWS PL_CUDA_RMS_DW_ROWS

/* ---- kernels ---------------------------------------------------------------------------- */

/* One block per row t. */
__global__ void rmsnorm_kernel(__nv_bfloat16 *out, float *rstd, const __nv_bfloat16 *x, const float *w, int C,
                               float eps) {
    __shared__ float sh[32];
    const int64_t row = (int64_t)blockIdx.x * C;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        const float v = pl_ld(&x[row + i]);
        ss += v * v;
    }
    ss = pl_block_sum(ss, sh);
    const float r = pl_rmsnorm_scale(ss, C, eps);
    for (int i = threadIdx.x; i < C; i += blockDim.x) pl_st(&out[row + i], (pl_ld(&x[row + i]) * r) * w[i]);
    if (rstd && threadIdx.x == 0) rstd[blockIdx.x] = r;
}

/* One block per row t: dx. */
__global__ void rmsnorm_bwd_dx_kernel(__nv_bfloat16 *dx, const __nv_bfloat16 *dout, const __nv_bfloat16 *x,
                                      const float *w, const float *rstd, int C) {
    __shared__ float sh[32];
    const int64_t row = (int64_t)blockIdx.x * C;
    const float r = rstd[blockIdx.x];
    float s = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) s += (pl_ld(&dout[row + i]) * w[i]) * pl_ld(&x[row + i]);
    s = pl_block_sum(s, sh);
    const float c = s * ((r * r) * r) / (float)C;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        const float dy = pl_ld(&dout[row + i]), xv = pl_ld(&x[row + i]);
        pl_st(&dx[row + i], r * (w[i] * dy) - xv * c);
    }
}

/* ws (nchunks, C): column c of chunk blockIdx.y, rows in order. */
__global__ void rmsnorm_bwd_dw_partial_kernel(float *ws, const __nv_bfloat16 *dout, const __nv_bfloat16 *x,
                                              const float *rstd, int T, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const int t0 = blockIdx.y * RMS_DW_ROWS, t1 = t0 + RMS_DW_ROWS < T ? t0 + RMS_DW_ROWS : T;
    float s = 0.0f;
    for (int t = t0; t < t1; t++) {
        const int64_t k = (int64_t)t * C + c;
        s += pl_rmsnorm_dw_term(pl_ld(&dout[k]), pl_ld(&x[k]), rstd[t]);
    }
    ws[(int64_t)blockIdx.y * C + c] = s;
}

/* dw (C) += the chunks' partial sums, in chunk order. */
__global__ void rmsnorm_bwd_dw_finish_kernel(float *dw, const float *ws, int nchunks, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float s = 0.0f;
    for (int k = 0; k < nchunks; k++) s += ws[(int64_t)k * C + c];
    dw[c] += s;
}

/* ---- launchers ---------------------------------------------------------------------------- */

extern "C" int pl_cuda_rmsnorm(pl_bf16 *out, float *rstd, const pl_bf16 *x, const float *w, int T, int C,
                               float eps, pl_stream stream) {
    if (T < 0 || C <= 0) return (int)cudaErrorInvalidValue;
    if (T == 0) return 0;
    PL_LAUNCH(rmsnorm_kernel, T, RMS_THREADS, 0, stream, pl_dev_bf16(out), rstd, pl_dev_bf16(x), w, C, eps);
    return pl_cuda_status();
}

extern "C" size_t pl_cuda_rmsnorm_bwd_workspace(int T, int C) { return pl_cuda_size_rmsnorm_bwd_ws(T, C); }

extern "C" int pl_cuda_rmsnorm_bwd(pl_bf16 *dx, float *dw, const pl_bf16 *dout, const pl_bf16 *x, const float *w,
                                   const float *rstd, int T, int C, float *workspace, pl_stream stream) {
    if (T < 0 || C <= 0 || (dw && !workspace)) return (int)cudaErrorInvalidValue;
    if (T == 0) return 0;
    if (dw) { /* first: dx may overwrite dout */
        const int nchunks = (T + RMS_DW_ROWS - 1) / RMS_DW_ROWS, threads = 128, cb = (C + threads - 1) / threads;
        PL_LAUNCH(rmsnorm_bwd_dw_partial_kernel, dim3(cb, nchunks), threads, 0, stream, workspace,
                  pl_dev_bf16(dout), pl_dev_bf16(x), rstd, T, C);
        PL_LAUNCH(rmsnorm_bwd_dw_finish_kernel, cb, threads, 0, stream, dw, (const float *)workspace, nchunks, C);
    }
    if (dx)
        PL_LAUNCH(rmsnorm_bwd_dx_kernel, T, RMS_THREADS, 0, stream, pl_dev_bf16(dx), pl_dev_bf16(dout),
                  pl_dev_bf16(x), w, rstd, C);
    return pl_cuda_status();
}
