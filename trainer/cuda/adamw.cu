/* adamw.cu: the optimizer on fp32 state: sum of squares (global grad norm),
 * clipping, scaling and AdamW.
 *
 * AdamW is ops_math.h's pl_adamw_elem element by element, with the per-step
 * constants from pl_adamw_consts computed once on the host: every operation
 * is an IEEE-rounded fp32 op or an explicit fmaf, so the GPU produces the
 * CPU's bits (nvcc's default -prec-div/-prec-sqrt keep / and sqrtf exact).
 * The sum of squares runs in double in two fixed-order stages (block
 * partials, then one block over the partials), so its bits depend only on n. */
#include "cuda_common.cuh"

#define SUMSQ_THREADS PL_CUDA_SUMSQ_THREADS
#define SUMSQ_MAX_BLOCKS PL_CUDA_SUMSQ_MAX_BLOCKS
#define SUMSQ_PER_THREAD PL_CUDA_SUMSQ_PER_THREAD

/* ---- kernels ---------------------------------------------------------------------------- */

/* ws[b] = sum of x^2 over block b's contiguous range of per elements. */
__global__ void sumsq_partial_kernel(double *ws, const float *x, int64_t n, int64_t per) {
    __shared__ double sh[32];
    const int64_t i0 = (int64_t)blockIdx.x * per, i1 = i0 + per < n ? i0 + per : n;
    double s = 0.0;
    for (int64_t i = i0 + threadIdx.x; i < i1; i += blockDim.x) s += (double)x[i] * (double)x[i];
    s = pl_block_sum(s, sh);
    if (threadIdx.x == 0) ws[blockIdx.x] = s;
}

/* *out (+)= sum of ws (nb); one block. */
__global__ void sumsq_finish_kernel(double *out, const double *ws, int nb, int accumulate) {
    __shared__ double sh[32];
    double s = 0.0;
    for (int i = threadIdx.x; i < nb; i += blockDim.x) s += ws[i];
    s = pl_block_sum(s, sh);
    if (threadIdx.x == 0) *out = accumulate ? *out + s : s;
}

__global__ void clip_kernel(float *x, int64_t n, const double *sumsq, float max_norm) {
    const double coef = (double)max_norm / (sqrt(*sumsq) + 1e-6);
    if (!(coef < 1.0)) return;
    const float c = (float)coef;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] *= c;
}

__global__ void scale_kernel(float *x, float s, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] *= s;
}

__global__ void adamw_kernel(float *p, const float *g, float *m, float *v, int64_t n, pl_adamw_k k) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        pl_adamw_elem(&p[i], g[i], &m[i], &v[i], &k);
}

/* ---- launchers ---------------------------------------------------------------------------- */

static unsigned ew_blocks(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    return (unsigned)(b > 65536 ? 65536 : b);
}

/* Blocks of the first stage and elements per block, from n alone. */
static int sumsq_split(int64_t n, int64_t *per) { return pl_cuda_sumsq_split(n, per); }

extern "C" size_t pl_cuda_sumsq_workspace(int64_t n) { return pl_cuda_size_sumsq_ws(n); }

extern "C" int pl_cuda_sumsq(double *out, const float *x, int64_t n, int accumulate, double *workspace,
                             pl_stream stream) {
    if (n < 0 || !out || !workspace) return (int)cudaErrorInvalidValue;
    int64_t per;
    const int nb = sumsq_split(n > 0 ? n : 1, &per);
    if (n > 0) PL_LAUNCH(sumsq_partial_kernel, nb, SUMSQ_THREADS, 0, stream, workspace, x, n, per);
    else cudaMemsetAsync(workspace, 0, sizeof(double), stream);
    PL_LAUNCH(sumsq_finish_kernel, 1, SUMSQ_THREADS, 0, stream, out, (const double *)workspace, nb, accumulate);
    return pl_cuda_status();
}

extern "C" int pl_cuda_clip(float *x, int64_t n, const double *sumsq, float max_norm, pl_stream stream) {
    if (n < 0 || !sumsq) return (int)cudaErrorInvalidValue;
    if (n == 0) return 0;
    PL_LAUNCH(clip_kernel, ew_blocks(n, 256), 256, 0, stream, x, n, sumsq, max_norm);
    return pl_cuda_status();
}

extern "C" int pl_cuda_scale(float *x, float s, int64_t n, pl_stream stream) {
    if (n < 0) return (int)cudaErrorInvalidValue;
    if (n == 0) return 0;
    PL_LAUNCH(scale_kernel, ew_blocks(n, 256), 256, 0, stream, x, s, n);
    return pl_cuda_status();
}

extern "C" int pl_cuda_adamw(float *p, const float *g, float *m, float *v, int64_t n, float lr, float beta1,
                             float beta2, float eps, float wd, int t, pl_stream stream) {
    if (n < 0 || t < 1) return (int)cudaErrorInvalidValue;
    if (n == 0) return 0;
    const pl_adamw_k k = pl_adamw_consts(lr, beta1, beta2, eps, wd, t);
    PL_LAUNCH(adamw_kernel, ew_blocks(n, 256), 256, 0, stream, p, g, m, v, n, k);
    return pl_cuda_status();
}
