/* emu.h: run CUDA kernels on the CPU. Force-include it (-include) when
 * building a .cu file with the host C++ compiler:
 *
 *   c++ -std=c++17 -I. -include trainer/cuda/emu/emu.h -x c++ FILE.cu -x none trainer/cuda/emu/emu_{runtime,sched}.cpp -lpthread
 *
 * What it emulates (docs/cuda.md has the whole list):
 *  - each CUDA thread is a fiber with its own stack; the threads of one block
 *    run on one OS thread and switch only at __syncthreads and at warp
 *    operations (shuffles, votes, __syncwarp). At each of those points the
 *    block's runnable fibers are resumed in an order shuffled with a seeded
 *    generator ($PL_EMU_SEED, fixed by default), so a missing __syncthreads
 *    shows up as a wrong result under some seed;
 *  - a barrier completes when every live (not exited) thread of the block
 *    waits at one; a block whose threads wait on each other forever fails the
 *    launch with a message naming the kernel (cudaGetLastError,
 *    cudaDeviceSynchronize and stderr);
 *  - warps are 32 lanes (threads in x-fastest linear order, as CUDA); a warp
 *    operation completes when every non-exited lane of its mask has reached
 *    it with the same operation and mask; a value read from a lane outside
 *    the mask or exited is poison (all bits set: NaN for float);
 *  - __shared__ (static, in a dedicated section) and dynamic shared memory
 *    (PL_EXTERN_SHARED) are filled with 0xff bytes (NaN) before every block;
 *  - blocks of a grid run one after another, launches run synchronously on
 *    the calling thread; streams and events are ordered trivially.
 * Dynamic shared memory is declared with PL_EXTERN_SHARED(T, name) (inside
 * a kernel; `extern __shared__ T name[]` under nvcc): a block-scope extern
 * declaration cannot be given storage by a header. */
#ifndef PL_EMU_H
#define PL_EMU_H

#ifdef __cplusplus

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <cmath>
#include <tuple>
#include <type_traits>
#include <utility>
#include "emu_runtime.h"

/* ---- keywords ------------------------------------------------------------ */
#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
/* One static per kernel, placed in the section the launcher fills with NaN
 * before each block: all threads of the block see the same variable. */
#define __shared__ __attribute__((section("pl_emu_shared"), used)) static

#define PL_EXTERN_SHARED(T, name) T *const name = static_cast<T *>(::pl_emu::dynamic_shared())
#define PL_LAUNCH(kernel, grid, block, shmem, stream, ...) \
    ::pl_emu::launch(#kernel, kernel, grid, block, shmem, stream, ##__VA_ARGS__)

/* ---- vector types and built-in variables ------------------------------------ */
struct uint3 { unsigned x, y, z; };
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 u) : x(u.x), y(u.y), z(u.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};
struct __attribute__((aligned(8))) float2 { float x, y; };
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(8))) int2 { int x, y; };
struct __attribute__((aligned(16))) int4 { int x, y, z, w; };
struct __attribute__((aligned(8))) uint2 { unsigned x, y; };
struct __attribute__((aligned(16))) uint4 { unsigned x, y, z, w; };
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline int2 make_int2(int x, int y) { return int2{x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return uint3{x, y, z}; }

/* Set by the scheduler before each fiber resumes (all fibers of a block run
 * on the launching OS thread). Not const: the compiler must reload them
 * after every call that may switch fibers. */
extern __thread uint3 threadIdx, blockIdx; /* __thread: no C++ TLS wrapper calls */
extern __thread dim3 blockDim, gridDim;
static constexpr int warpSize = 32;

namespace pl_emu {

enum warp_kind { W_SHFL = 1, W_SHFL_UP, W_SHFL_DOWN, W_SHFL_XOR, W_BALLOT, W_ANY, W_ALL, W_SYNC };
enum bar_kind { B_PLAIN = 0, B_COUNT, B_AND, B_OR };

/* The switch points (emu_sched.cpp). */
int barrier(int kind, int pred);
uint64_t warp_op(int kind, unsigned mask, uint64_t value, int arg, int width);
unsigned active_mask();
void *dynamic_shared();
void fatal_outside_kernel(const char *what);

typedef void (*body_fn)(void *ctx);
struct launch_cfg {
    const char *name;
    const void *func;
    dim3 grid, block;
    size_t shmem;
    cudaStream_t stream;
};
cudaError_t run_grid(const launch_cfg &cfg, body_fn body, void *ctx);

template <class T> inline uint64_t to_bits(T v) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "warp shuffles move at most 8 bytes");
    uint64_t u = 0;
    memcpy(&u, &v, sizeof(T));
    return u;
}
template <class T> inline T from_bits(uint64_t u) {
    T v;
    memcpy(&v, &u, sizeof(T));
    return v;
}

template <class... P, class... A>
cudaError_t launch(const char *name, void (*k)(P...), dim3 grid, dim3 block, size_t shmem, cudaStream_t stream,
                   A &&...a) {
    static_assert(sizeof...(P) == sizeof...(A), "PL_LAUNCH: argument count does not match the kernel's");
    typedef std::tuple<std::decay_t<P>...> args_t;
    args_t args(static_cast<std::decay_t<P>>(std::forward<A>(a))...);
    struct ctx_t {
        void (*k)(P...);
        args_t *args;
    } c{k, &args};
    body_fn body = [](void *p) {
        ctx_t *cc = static_cast<ctx_t *>(p);
        std::apply(cc->k, *cc->args);
    };
    launch_cfg cfg{name, reinterpret_cast<const void *>(k), grid, block, shmem, stream};
    return run_grid(cfg, body, &c);
}

} /* namespace pl_emu */

/* CUDA 12's cudaMemPrefetchAsync(ptr, bytes, device, stream). */
inline cudaError_t cudaMemPrefetchAsync(const void *p, size_t bytes, int dev, cudaStream_t s = 0) {
    cudaMemLocation loc;
    loc.type = dev == cudaCpuDeviceId ? cudaMemLocationTypeHost : cudaMemLocationTypeDevice;
    loc.id = dev;
    return cudaMemPrefetchAsync(p, bytes, loc, 0, s);
}

/* ---- synchronization and warp intrinsics ---------------------------------------- */
__forceinline__ void __syncthreads() { ::pl_emu::barrier(::pl_emu::B_PLAIN, 0); }
__forceinline__ int __syncthreads_count(int p) { return ::pl_emu::barrier(::pl_emu::B_COUNT, p != 0); }
__forceinline__ int __syncthreads_and(int p) { return ::pl_emu::barrier(::pl_emu::B_AND, p != 0); }
__forceinline__ int __syncthreads_or(int p) { return ::pl_emu::barrier(::pl_emu::B_OR, p != 0); }
__forceinline__ void __syncwarp(unsigned mask = 0xffffffffu) { ::pl_emu::warp_op(::pl_emu::W_SYNC, mask, 0, 0, 32); }
__forceinline__ unsigned __activemask() { return ::pl_emu::active_mask(); }
__forceinline__ unsigned __ballot_sync(unsigned mask, int p) {
    return (unsigned)::pl_emu::warp_op(::pl_emu::W_BALLOT, mask, p != 0, 0, 32);
}
__forceinline__ int __any_sync(unsigned mask, int p) { return (int)::pl_emu::warp_op(::pl_emu::W_ANY, mask, p != 0, 0, 32); }
__forceinline__ int __all_sync(unsigned mask, int p) { return (int)::pl_emu::warp_op(::pl_emu::W_ALL, mask, p != 0, 0, 32); }
template <class T> __forceinline__ T __shfl_sync(unsigned mask, T v, int src, int width = warpSize) {
    return ::pl_emu::from_bits<T>(::pl_emu::warp_op(::pl_emu::W_SHFL, mask, ::pl_emu::to_bits(v), src, width));
}
template <class T> __forceinline__ T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = warpSize) {
    return ::pl_emu::from_bits<T>(::pl_emu::warp_op(::pl_emu::W_SHFL_UP, mask, ::pl_emu::to_bits(v), (int)delta, width));
}
template <class T> __forceinline__ T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = warpSize) {
    return ::pl_emu::from_bits<T>(::pl_emu::warp_op(::pl_emu::W_SHFL_DOWN, mask, ::pl_emu::to_bits(v), (int)delta, width));
}
template <class T> __forceinline__ T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = warpSize) {
    return ::pl_emu::from_bits<T>(::pl_emu::warp_op(::pl_emu::W_SHFL_XOR, mask, ::pl_emu::to_bits(v), lane_mask, width));
}
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __nanosleep(unsigned) {}
inline long long clock64() { return (long long)__builtin_ia32_rdtsc(); }

/* ---- atomics: the fibers of a launch share one OS thread, the host may not -------- */
#define PL_EMU_ATOMIC_INT(T)                                                                          \
    inline T atomicAdd(T *a, T v) { return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST); }              \
    inline T atomicSub(T *a, T v) { return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST); }              \
    inline T atomicExch(T *a, T v) { return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST); }            \
    inline T atomicAnd(T *a, T v) { return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST); }              \
    inline T atomicOr(T *a, T v) { return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST); }                \
    inline T atomicXor(T *a, T v) { return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST); }              \
    inline T atomicCAS(T *a, T cmp, T v) {                                                            \
        __atomic_compare_exchange_n(a, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);           \
        return cmp;                                                                                   \
    }                                                                                                 \
    inline T atomicMax(T *a, T v) {                                                                   \
        T o = __atomic_load_n(a, __ATOMIC_SEQ_CST);                                                   \
        while (o < v && !__atomic_compare_exchange_n(a, &o, v, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) { \
        }                                                                                             \
        return o;                                                                                     \
    }                                                                                                 \
    inline T atomicMin(T *a, T v) {                                                                   \
        T o = __atomic_load_n(a, __ATOMIC_SEQ_CST);                                                   \
        while (v < o && !__atomic_compare_exchange_n(a, &o, v, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) { \
        }                                                                                             \
        return o;                                                                                     \
    }
PL_EMU_ATOMIC_INT(int)
PL_EMU_ATOMIC_INT(unsigned)
PL_EMU_ATOMIC_INT(unsigned long long)
PL_EMU_ATOMIC_INT(long long)
#undef PL_EMU_ATOMIC_INT
namespace pl_emu {
template <class F, class U> inline F atomic_float_op(F *a, F v, int add) {
    static_assert(sizeof(F) == sizeof(U), "");
    U *ua = reinterpret_cast<U *>(a);
    U o = __atomic_load_n(ua, __ATOMIC_SEQ_CST), n;
    F of;
    do {
        memcpy(&of, &o, sizeof of);
        F nf = add ? of + v : (v > of ? v : of);
        memcpy(&n, &nf, sizeof n);
    } while (!__atomic_compare_exchange_n(ua, &o, n, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
    return of;
}
} /* namespace pl_emu */
inline float atomicAdd(float *a, float v) { return ::pl_emu::atomic_float_op<float, uint32_t>(a, v, 1); }
inline double atomicAdd(double *a, double v) { return ::pl_emu::atomic_float_op<double, uint64_t>(a, v, 1); }
inline float atomicExch(float *a, float v) {
    uint32_t n, o;
    memcpy(&n, &v, 4);
    o = __atomic_exchange_n(reinterpret_cast<uint32_t *>(a), n, __ATOMIC_SEQ_CST);
    float r;
    memcpy(&r, &o, 4);
    return r;
}
inline unsigned atomicInc(unsigned *a, unsigned lim) {
    unsigned o = __atomic_load_n(a, __ATOMIC_SEQ_CST);
    while (!__atomic_compare_exchange_n(a, &o, o >= lim ? 0u : o + 1, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    }
    return o;
}

/* ---- bf16 and fp16, with CUDA's conversions (round to nearest even; NaN -> 0x7fff) -- */
namespace pl_emu {
inline unsigned short f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
    uint32_t rem = x << 16, r = x >> 16;
    if (rem > 0x80000000u || (rem == 0x80000000u && (r & 1u))) r++;
    return (unsigned short)r;
}
inline unsigned short f32_to_bf16_rz(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
    return (unsigned short)(x >> 16);
}
inline float bf16_to_f32(unsigned short h) {
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}
unsigned short f32_to_f16(float f); /* emu_runtime.cpp: CUDA's host conversion */
float f16_to_f32(unsigned short h);
} /* namespace pl_emu */

struct __nv_bfloat16 {
    unsigned short __x;
    __nv_bfloat16() = default;
    __nv_bfloat16(float f) : __x(::pl_emu::f32_to_bf16(f)) {}
    operator float() const { return ::pl_emu::bf16_to_f32(__x); }
};
struct __nv_bfloat162 { __nv_bfloat16 x, y; };
struct __half {
    unsigned short __x;
    __half() = default;
    __half(float f) : __x(::pl_emu::f32_to_f16(f)) {}
    operator float() const { return ::pl_emu::f16_to_f32(__x); }
};
struct __half2 { __half x, y; };
typedef __nv_bfloat16 nv_bfloat16;
static_assert(sizeof(__nv_bfloat16) == 2 && sizeof(__half) == 2, "16-bit types");

inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { __nv_bfloat16 b; b.__x = u; return b; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.__x; }
inline __nv_bfloat16 __float2bfloat16(float f) { return __ushort_as_bfloat16(::pl_emu::f32_to_bf16(f)); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __float2bfloat16(f); }
inline __nv_bfloat16 __float2bfloat16_rz(float f) { return __ushort_as_bfloat16(::pl_emu::f32_to_bf16_rz(f)); }
inline float __bfloat162float(__nv_bfloat16 b) { return ::pl_emu::bf16_to_f32(b.__x); }
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) { return __nv_bfloat162{__float2bfloat16(a), __float2bfloat16(b)}; }
inline float2 __bfloat1622float2(__nv_bfloat162 v) { return float2{__bfloat162float(v.x), __bfloat162float(v.y)}; }
inline __half __ushort_as_half(unsigned short u) { __half h; h.__x = u; return h; }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline __half __float2half(float f) { return __ushort_as_half(::pl_emu::f32_to_f16(f)); }
inline __half __float2half_rn(float f) { return __float2half(f); }
inline float __half2float(__half h) { return ::pl_emu::f16_to_f32(h.__x); }

/* ---- math intrinsics ----------------------------------------------------------- */
/* The fast approximations run as the accurate functions (the GPU's differ by a
 * few ulp; tolerances in tests cover it). The _rn forms round once, as on the
 * GPU (the host build must not contract: -std=c++17 keeps -ffp-contract=off). */
inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return exp10f(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline void __sincosf(float x, float *s, float *c) { *s = sinf(x); *c = cosf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __frsqrt_rn(float x) { return 1.0f / sqrtf(x); }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x == x ? x : 0.0f; }
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned i; memcpy(&i, &f, 4); return i; }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline unsigned __brev(unsigned x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    x = ((x >> 8) & 0x00ff00ffu) | ((x & 0x00ff00ffu) << 8);
    return (x >> 16) | (x << 16);
}
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
template <class T> inline T __ldg(const T *p) { return *p; }

/* ---- cuBLASLt (the subset gemm.cu calls; emu_cublaslt.cpp) ---------------- */
#include "emu_cublaslt.h"

#endif /* __cplusplus */
#endif
