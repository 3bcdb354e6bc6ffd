/* swiglu.cu: SwiGLU forward and backward, elementwise on bf16 with fp32 math
 * (ops_math.h's pl_swiglu and pl_swiglu_bwd: the CPU's formulas). The
 * backward recomputes silu from gate instead of keeping it. */
#include "cuda_common.cuh"

/* ---- kernels ---------------------------------------------------------------------------- */

__global__ void swiglu_kernel(__nv_bfloat16 *out, const __nv_bfloat16 *gate, const __nv_bfloat16 *up, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        pl_st(&out[i], pl_swiglu(pl_ld(&gate[i]), pl_ld(&up[i])));
}

__global__ void swiglu_bwd_kernel(__nv_bfloat16 *dgate, __nv_bfloat16 *dup, const __nv_bfloat16 *dout,
                                  const __nv_bfloat16 *gate, const __nv_bfloat16 *up, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float dg, du;
        pl_swiglu_bwd(pl_ld(&dout[i]), pl_ld(&gate[i]), pl_ld(&up[i]), &dg, &du);
        pl_st(&dgate[i], dg);
        pl_st(&dup[i], du);
    }
}

/* ---- launchers ---------------------------------------------------------------------------- */

static unsigned ew_blocks(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    return (unsigned)(b > 65536 ? 65536 : b);
}

extern "C" int pl_cuda_swiglu(pl_bf16 *out, const pl_bf16 *gate, const pl_bf16 *up, int64_t n, pl_stream stream) {
    if (n < 0) return (int)cudaErrorInvalidValue;
    if (n == 0) return 0;
    PL_LAUNCH(swiglu_kernel, ew_blocks(n, 256), 256, 0, stream, pl_dev_bf16(out), pl_dev_bf16(gate), pl_dev_bf16(up), n);
    return pl_cuda_status();
}

extern "C" int pl_cuda_swiglu_bwd(pl_bf16 *dgate, pl_bf16 *dup, const pl_bf16 *dout, const pl_bf16 *gate,
                                  const pl_bf16 *up, int64_t n, pl_stream stream) {
    if (n < 0) return (int)cudaErrorInvalidValue;
    if (n == 0) return 0;
    PL_LAUNCH(swiglu_bwd_kernel, ew_blocks(n, 256), 256, 0, stream, pl_dev_bf16(dgate), pl_dev_bf16(dup),
              pl_dev_bf16(dout), pl_dev_bf16(gate), pl_dev_bf16(up), n);
    return pl_cuda_status();
}
