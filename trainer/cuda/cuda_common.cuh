/* cuda_common.cuh: what every .cu of trainer/cuda/ shares: the launch macro
 * and dynamic shared memory under nvcc (the emulator's emu.h defines both
 * for host builds), bf16 loads and stores, and warp / block sums whose
 * order depends only on the block size. */
#ifndef PL_CUDA_COMMON_CUH
#define PL_CUDA_COMMON_CUH

#ifndef PL_CUDA_EMU
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#define PL_LAUNCH(kernel, grid, block, shmem, stream, ...) kernel<<<grid, block, shmem, stream>>>(__VA_ARGS__)
#define PL_EXTERN_SHARED(T, name) extern __shared__ __align__(16) T name[]
#endif

#include "../ops_math.h"
#include "cuda_ops.h"

/* Unroll a loop of constant trip count (nvcc; the emulator's compiler has its own heuristics). */
#ifdef __CUDACC__
#define PL_UNROLL _Pragma("unroll")
#else
#define PL_UNROLL
#endif

static __device__ __forceinline__ float pl_ld(const __nv_bfloat16 *p) { return __bfloat162float(*p); }
static __device__ __forceinline__ void pl_st(__nv_bfloat16 *p, float v) { *p = __float2bfloat16(v); }

static inline __nv_bfloat16 *pl_dev_bf16(pl_bf16 *p) { return reinterpret_cast<__nv_bfloat16 *>(p); }
static inline const __nv_bfloat16 *pl_dev_bf16(const pl_bf16 *p) { return reinterpret_cast<const __nv_bfloat16 *>(p); }

/* Sum over the 32 lanes of a full warp, butterfly order: every lane gets the
 * same bits (each step adds a + b on one lane and b + a on its partner). */
template <class F> static __device__ __forceinline__ F pl_warp_sum(F v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, every thread calls it);
 * every thread gets the same bits. sh: 32 elements of shared scratch,
 * reusable after the call returns. */
template <class F> static __device__ F pl_block_sum(F v, F *sh) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = pl_warp_sum(v);
    if (lane == 0) sh[w] = v;
    __syncthreads();
    F t = lane < nw ? sh[lane] : F(0);
    t = pl_warp_sum(t);
    __syncthreads(); /* sh may be written again by the caller's next sum */
    return t;
}

static inline int pl_cuda_status(void) { return (int)cudaGetLastError(); }

#endif
