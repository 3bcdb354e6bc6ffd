/* rope.cu: rotate-half RoPE in place on bf16 rows (T, nheads*hd), forward
 * and backward (the same rotation by the opposite angle). One thread per
 * rotated pair (t, head, i < hd/2); the angle, its cos/sin in fp32 and the
 * rotation are ops_math.h's pl_rope_angle and pl_rope_pair, as the CPU. An
 * odd last element of a head is left alone, as on the CPU. */
#include "cuda_common.cuh"

/* ---- kernels ---------------------------------------------------------------------------- */

__global__ void rope_kernel(__nv_bfloat16 *x, const int32_t *pos, const float *inv_freq, int T, int nheads, int hd,
                            float sign) {
    const int half = hd / 2;
    const int64_t npairs = (int64_t)T * nheads * half;
    for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < npairs; p += (int64_t)gridDim.x * blockDim.x) {
        const int i = (int)(p % half);
        const int64_t th = p / half; /* t * nheads + h */
        const int t = (int)(th / nheads);
        const float a = pl_rope_angle(pos[t], inv_freq[i]);
        float x0 = pl_ld(&x[th * hd + i]), x1 = pl_ld(&x[th * hd + i + half]);
        pl_rope_pair(&x0, &x1, cosf(a), sign * sinf(a));
        pl_st(&x[th * hd + i], x0);
        pl_st(&x[th * hd + i + half], x1);
    }
}

/* ---- launchers ---------------------------------------------------------------------------- */

extern "C" int pl_cuda_rope(pl_bf16 *x, const int32_t *pos, const float *inv_freq, int T, int nheads, int hd,
                            int backward, pl_stream stream) {
    if (T < 0 || nheads < 0 || hd < 0) return (int)cudaErrorInvalidValue;
    const int64_t npairs = (int64_t)T * nheads * (hd / 2);
    if (npairs == 0) return 0;
    const int threads = 128;
    int64_t blocks = (npairs + threads - 1) / threads;
    if (blocks > 65536) blocks = 65536;
    PL_LAUNCH(rope_kernel, (unsigned)blocks, threads, 0, stream, pl_dev_bf16(x), pos, inv_freq, T, nheads, hd,
              backward ? -1.0f : 1.0f);
    return pl_cuda_status();
}
