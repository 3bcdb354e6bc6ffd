/* nf4.cu: the frozen NF4 base on the GPU: dequantization to bf16, and the
 * fused dequantize + GEMV that decoding runs on each weight.
 *
 * Layout (lora/nf4.h, bitsandbytes'): two 4-bit codes per byte, element 2k in
 * the high nibble of byte k; an absmax per block of `blocksize` elements,
 * double-quantized as code[absmax_q[b]] * nested_absmax[b / 256] + offset.
 * Each multiply and add is one fp32 rounding, written __fmul_rn / __fadd_rn
 * so nvcc cannot fuse them into an FMA: the fp32 value of every element is
 * then the CPU's (pl_nf4_dequantize) bit for bit, and the bf16 output is
 * that value rounded to nearest even. */
#include "cuda_common.cuh"

/* The 16 NF4 values, the same fp32 constants as lora/nf4.c's pl_nf4_code
 * (test_cuda_emu compares the dequantized bits with the CPU's). */
__constant__ float pl_nf4_values[16] = {
    -0x1.0000000000000p+0f, -0x1.6473620000000p-1f, -0x1.0cd6600000000p-1f, -0x1.9465400000000p-2f,
    -0x1.23449a0000000p-2f, -0x1.7a6a7e0000000p-3f, -0x1.74f0e20000000p-4f, 0x0.0p+0f,
    0x1.45f5fe0000000p-4f,  0x1.4995c60000000p-3f,  0x1.f809ba0000000p-3f,  0x1.5a06740000000p-2f,
    0x1.c349700000000p-2f,  0x1.200f560000000p-1f,  0x1.7227660000000p-1f,  0x1.0000000000000p+0f,
};

/* Everything a kernel reads of the tensor, passed by value. */
struct nf4_args {
    const uint8_t *packed, *absmax_q;
    const float *nested, *code, *absmax;
    float offset;
    int64_t n;
    int bs_shift; /* log2(blocksize) */
};

static __device__ __forceinline__ float nf4_block_absmax(const nf4_args &w, int64_t b) {
    if (!w.absmax_q) return w.absmax[b];
    return __fadd_rn(__fmul_rn(w.code[w.absmax_q[b]], w.nested[b >> 8]), w.offset);
}

/* Element i as fp32 (the CPU's bits). */
static __device__ __forceinline__ float nf4_elem(const nf4_args &w, int64_t i, const float *values) {
    const uint8_t byte = w.packed[i >> 1];
    const int q = (i & 1) ? byte & 15 : byte >> 4;
    return __fmul_rn(values[q], nf4_block_absmax(w, i >> w.bs_shift));
}

/* ---- kernels ---------------------------------------------------------------------------- */

/* out (count) = w[start .. start + count); one thread per element, grid-stride. */
__global__ void nf4_dequant_kernel(__nv_bfloat16 *out, nf4_args w, int64_t start, int64_t count) {
    __shared__ float values[16];
    if (threadIdx.x < 16) values[threadIdx.x] = pl_nf4_values[threadIdx.x];
    __syncthreads();
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < count; k += (int64_t)gridDim.x * blockDim.x)
        out[k] = __float2bfloat16(nf4_elem(w, start + k, values));
}

/* y (T, rows) = x (T, cols) . W^T: one warp per output row; lane l takes
 * columns l, l + 32, ... and keeps T fp32 partial sums, combined across the
 * warp in butterfly order. x rows are read through the cache (every warp
 * reads all of x). */
__global__ void nf4_gemv_kernel(__nv_bfloat16 *y, const __nv_bfloat16 *x, nf4_args w, int rows, int cols, int T) {
    __shared__ float values[16];
    if (threadIdx.x < 16) values[threadIdx.x] = pl_nf4_values[threadIdx.x];
    __syncthreads();
    const int lane = threadIdx.x & 31;
    const int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (r >= rows) return; /* whole warps leave together */
    float acc[PL_CUDA_GEMV_MAX_T];
    for (int t = 0; t < PL_CUDA_GEMV_MAX_T; t++) acc[t] = 0.0f;
    const int64_t row0 = (int64_t)r * cols;
    for (int c = lane; c < cols; c += 32) {
        const float wv = nf4_elem(w, row0 + c, values);
        for (int t = 0; t < T; t++) acc[t] += wv * pl_ld(&x[(int64_t)t * cols + c]);
    }
    for (int t = 0; t < T; t++) {
        const float s = pl_warp_sum(acc[t]);
        if (lane == 0) pl_st(&y[(int64_t)t * rows + r], s);
    }
}

/* ---- launchers ---------------------------------------------------------------------------- */

static int nf4_make_args(const pl_cuda_nf4 *w, nf4_args *a) {
    if (!w || !w->packed || w->n <= 0 || w->blocksize < 32 || w->blocksize > 4096 ||
        (w->blocksize & (w->blocksize - 1)))
        return -1;
    if (w->absmax_q ? !(w->nested_absmax && w->code) : !w->absmax) return -1;
    a->packed = w->packed;
    a->absmax_q = w->absmax_q;
    a->nested = w->nested_absmax;
    a->code = w->code;
    a->absmax = w->absmax;
    a->offset = w->offset;
    a->n = w->n;
    int s = 0;
    while ((1 << s) < w->blocksize) s++;
    a->bs_shift = s;
    return 0;
}

extern "C" int pl_cuda_nf4_dequant(pl_bf16 *out, const pl_cuda_nf4 *w, int64_t start, int64_t count,
                                   pl_stream stream) {
    nf4_args a;
    if (nf4_make_args(w, &a) || start < 0 || count < 0 || start > w->n || count > w->n - start)
        return (int)cudaErrorInvalidValue;
    if (count == 0) return 0;
    const int threads = 256;
    int64_t blocks = (count + threads - 1) / threads;
    if (blocks > 65536) blocks = 65536; /* grid-stride beyond */
    PL_LAUNCH(nf4_dequant_kernel, (unsigned)blocks, threads, 0, stream, pl_dev_bf16(out), a, start, count);
    return pl_cuda_status();
}

extern "C" int pl_cuda_nf4_gemv(pl_bf16 *y, const pl_bf16 *x, const pl_cuda_nf4 *w, int rows, int cols, int T,
                                pl_stream stream) {
    nf4_args a;
    if (nf4_make_args(w, &a) || rows <= 0 || cols <= 0 || T < 1 || T > PL_CUDA_GEMV_MAX_T ||
        (int64_t)rows * cols != w->n)
        return (int)cudaErrorInvalidValue;
    const int warps = 4; /* rows per block */
    PL_LAUNCH(nf4_gemv_kernel, (unsigned)((rows + warps - 1) / warps), warps * 32, 0, stream, pl_dev_bf16(y),
              pl_dev_bf16(x), a, rows, cols, T);
    return pl_cuda_status();
}
