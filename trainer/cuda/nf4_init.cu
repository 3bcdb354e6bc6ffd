/* nf4_init.cu: NF4 (and bf16) tensors made on the device: random weights (a
 * rehearsal model: potluck train --model random:SHAPE with --backend cuda),
 * the values of trainer/model_init.h's init, and a stored BF16 or F16 weight
 * quantized to NF4 (the base of a QLoRA run), stored as the CPU stores them:
 *  - bf16: element i = bf16(std * normal(seed, stream, i)), round to nearest
 *    even (core/half.h's pl_f32_to_bf16 for finite values);
 *  - NF4, double-quantized (lora/nf4.c's pl_nf4_fill on the same values),
 *    in three kernels: (1) one thread per block of `blocksize` elements: its
 *    absmax and 4-bit codes (the values drawn twice, once for the absmax and
 *    once for the codes: nothing of size n is ever held but the packed
 *    codes); (2) one thread: the offset, torch's cascade mean of the fp32
 *    absmax (lora/nf4_math.h's pl_nf4_tsum, the CPU's order); (3) one thread
 *    per nested block of 256: its absmax of |absmax - offset| and the 8-bit
 *    codes, each the number of dynamic-map midpoints below its bin's value
 *    (what the CPU's table holds).
 * The normal is core/philox.h's pl_philox_normal; see there for the one place
 * a GPU's libm may round differently from the host's. */
#include "cuda_common.cuh"

#include "../../core/half.h"
#include "../../core/philox.h"
#include "../../lora/nf4_math.h"

struct nf4_init_args {
    uint8_t *packed;
    float *absmax;     /* (n_blocks) fp32: the blocks' absmax (the short tail's clamped) */
    int64_t n, n_blocks, full; /* full: blocks of exactly blocksize elements */
    int blocksize;
    uint64_t seed, stream;
    float std;
    const uint16_t *src; /* the values as stored (src_kind 1 BF16, 2 F16), or NULL: random */
    int src_kind;
    float mid[15];     /* the NF4 codes' fp32 midpoints */
};

/* Element i as fp32: the stored value (exact), or the init's draw. */
static __device__ __forceinline__ float init_value(const nf4_init_args &a, int64_t i) {
    if (a.src_kind == 1) return pl_bf16_to_f32(a.src[i]);
    if (a.src_kind == 2) return pl_f16_to_f32(a.src[i]);
    return __fmul_rn(a.std, pl_philox_normal(a.seed, a.stream, (uint64_t)i));
}

__global__ void nf4_init_blocks_kernel(nf4_init_args a) {
    const int64_t b = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= a.n_blocks) return;
    const int64_t i0 = b * a.blocksize, i1 = i0 + a.blocksize < a.n ? i0 + a.blocksize : a.n;
    float am = 0.0f;
    int finite = 1;
    for (int64_t i = i0; i < i1; i++) {
        const float x = init_value(a, i);
        if (!isfinite(x)) finite = 0;
        const float v = fabsf(x);
        if (v > am) am = v;
    }
    if (!finite) { /* the CPU refuses the tensor: a NaN absmax makes the offset NaN, which the caller checks */
        a.absmax[b] = __int_as_float(0x7fc00000);
        return;
    }
    /* full blocks: x * (1 / max(absmax, tiny)); the short tail: x / max(absmax, tiny) */
    const float tiny = (float)1e-38;
    const int full = b < a.full;
    float scale = 0.0f, div = 0.0f;
    if (full) {
        a.absmax[b] = am;
        scale = 1.0f / (am > tiny ? am : tiny);
    } else {
        div = am > tiny ? am : tiny;
        a.absmax[b] = div;
    }
    for (int64_t i = i0; i < i1; i += 2) {
        int qv[2] = {7, 7};
        for (int k = 0; k < 2 && i + k < i1; k++) {
            const float x = init_value(a, i + k);
            float s = full ? __fmul_rn(x, scale) : x / div;
            s = s < -1.0f ? -1.0f : s > 1.0f ? 1.0f : s;
            qv[k] = pl_nf4_code_index(s, a.mid);
        }
        a.packed[i / 2] = (uint8_t)(qv[0] << 4 | qv[1]);
    }
}

/* *offset = torch.mean(absmax) (8 lanes, the CPU's default), on one thread. */
__global__ void nf4_init_offset_kernel(float *offset, const float *absmax, int64_t n_blocks) {
    if (blockIdx.x == 0 && threadIdx.x == 0) *offset = pl_nf4_tsum(absmax, n_blocks, 8) / (float)n_blocks;
}

/* Nested block nb: nested[nb] = max |absmax[b] - offset|, codes[b] its 8-bit codes. */
__global__ void nf4_init_nested_kernel(uint8_t *codes, float *nested, const float *absmax, const float *offset,
                                       const float *dyn_mid, int64_t n_blocks, int64_t n_nested) {
    const int64_t nb = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (nb >= n_nested) return;
    const float off = *offset;
    const int64_t b0 = nb * 256, b1 = b0 + 256 < n_blocks ? b0 + 256 : n_blocks;
    float am = 0.0f;
    for (int64_t b = b0; b < b1; b++) am = fmaxf(am, fabsf(__fsub_rn(absmax[b], off)));
    nested[nb] = am;
    if (am == 0.0f) { /* an all-zero nested block: every code 0 */
        for (int64_t b = b0; b < b1; b++) codes[b] = 0;
        return;
    }
    const float inv = 1.0f / am; /* scale by the reciprocal, as bitsandbytes */
    for (int64_t b = b0; b < b1; b++) {
        const int bin = pl_nf4_dyn_bin(__fmul_rn(__fsub_rn(absmax[b], off), inv));
        codes[b] = (uint8_t)pl_nf4_dyn_count(dyn_mid, pl_nf4_dyn_bin_value(bin));
    }
}

__global__ void bf16_init_kernel(__nv_bfloat16 *out, int64_t n, uint64_t seed, uint64_t stream, float std) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = __float2bfloat16(__fmul_rn(std, pl_philox_normal(seed, stream, (uint64_t)i)));
}

/* ---- launchers ---------------------------------------------------------------------------- */

static int nf4_make(pl_cuda_nf4_init *w, float *absmax_ws, const float *nf4_mid, const float *dyn_mid,
                    const uint16_t *src, int src_kind, uint64_t seed, uint64_t stream, float std, pl_stream st) {
    if (!w || !w->packed || !w->absmax_q || !w->nested_absmax || !w->offset || !absmax_ws || !nf4_mid ||
        !dyn_mid || w->n <= 0 || w->blocksize < 32 || w->blocksize > 4096 || (w->blocksize & (w->blocksize - 1)))
        return (int)cudaErrorInvalidValue;
    nf4_init_args a;
    a.src = src;
    a.src_kind = src_kind;
    a.packed = w->packed;
    a.absmax = absmax_ws;
    a.n = w->n;
    a.blocksize = w->blocksize;
    a.n_blocks = (w->n + w->blocksize - 1) / w->blocksize;
    a.full = w->n / w->blocksize;
    a.seed = seed;
    a.stream = stream;
    a.std = std;
    for (int k = 0; k < 15; k++) a.mid[k] = nf4_mid[k];
    const int threads = 128;
    const int64_t n_nested = (a.n_blocks + 255) / 256;
    PL_LAUNCH(nf4_init_blocks_kernel, (unsigned)((a.n_blocks + threads - 1) / threads), threads, 0, st, a);
    PL_LAUNCH(nf4_init_offset_kernel, 1, 1, 0, st, w->offset, (const float *)absmax_ws, a.n_blocks);
    PL_LAUNCH(nf4_init_nested_kernel, (unsigned)((n_nested + threads - 1) / threads), threads, 0, st, w->absmax_q,
              w->nested_absmax, (const float *)absmax_ws, (const float *)w->offset, dyn_mid, a.n_blocks, n_nested);
    return pl_cuda_status();
}

extern "C" int pl_cuda_nf4_init_random(pl_cuda_nf4_init *w, float *absmax_ws, const float *nf4_mid,
                                       const float *dyn_mid, uint64_t seed, uint64_t stream, float std,
                                       pl_stream st) {
    return nf4_make(w, absmax_ws, nf4_mid, dyn_mid, nullptr, 0, seed, stream, std, st);
}

extern "C" int pl_cuda_nf4_quantize16(pl_cuda_nf4_init *w, float *absmax_ws, const float *nf4_mid,
                                      const float *dyn_mid, const uint16_t *src, int f16, pl_stream st) {
    if (!src) return (int)cudaErrorInvalidValue;
    return nf4_make(w, absmax_ws, nf4_mid, dyn_mid, src, f16 ? 2 : 1, 0, 0, 0.0f, st);
}

extern "C" int pl_cuda_bf16_init_random(pl_bf16 *out, int64_t n, uint64_t seed, uint64_t stream, float std,
                                        pl_stream st) {
    if (!out || n <= 0) return (int)cudaErrorInvalidValue;
    const int threads = 256;
    int64_t blocks = (n + threads - 1) / threads;
    if (blocks > 65536) blocks = 65536; /* grid-stride beyond */
    PL_LAUNCH(bf16_init_kernel, (unsigned)blocks, threads, 0, st, pl_dev_bf16(out), n, seed, stream, std);
    return pl_cuda_status();
}
