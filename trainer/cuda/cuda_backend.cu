/* cuda_backend.cu: the CUDA backend's op table (trainer/backend.h) over the
 * kernels of this folder (cuda_ops.h). Host code only; it builds with nvcc
 * for a GPU and with the host compiler against the emulator (make emu).
 *
 * Precision: activations bf16 (act_dtype PL_BF16), every sum in fp32;
 * trained state (LoRA masters, gradients, AdamW moments) fp32.
 *
 * Memory (backend.h's two kinds):
 *  - activations, their gradients' scratch, workspaces, the KV cache:
 *    cudaMalloc, device only;
 *  - trained state (PL_MEM_WEIGHTS: the LoRA masters; PL_MEM_GRADIENTS;
 *    PL_MEM_OPTIMIZER): cudaMallocManaged, so checkpoints, exports and the
 *    MPI reduce-scatter read it in place once take_error has synchronized
 *    (with NCCL, the GPU build moves it on the device: nccl_dist.cu).
 *    PL_MEM_GRADIENTS also tags the trainer's activation gradients (d_res,
 *    ...): managed memory the kernels use where it lives.
 * Every allocation is tagged in the shared per-category counters
 * (pl_mem_peak), so the planner's categories hold for this backend too.
 *
 * Frozen weights are host memory owned by the model. The first op that uses
 * one copies it to the device (keyed by its host pointer, until
 * release_weights): NF4 as its packed bytes and quantization state (the
 * kernels dequantize it), any other dtype dequantized on the host row by row
 * to bf16, fp32 vectors (norms, biases, RoPE frequencies) as they are. A
 * GEMM on an NF4 weight dequantizes it into one reusable bf16 scratch
 * (PL_MEM_WORKSPACE) and calls cuBLASLt; decoding (T <= PL_CUDA_GEMV_MAX_T)
 * uses the fused NF4 GEMV instead.
 *
 * Ops whose backward kernel needs a value the op table does not pass
 * recompute it: rmsnorm_bwd recomputes rstd (one rmsnorm), attention_bwd
 * the log-sum-exp (one attention forward).
 *
 * Every op counts its launches (pl_cuda_backend_launches), so a test can
 * check that a training step ran on the device and nothing fell back. */
#include "cuda_common.cuh"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mutex>
#include <unordered_map>
#include <vector>

/* The project's C headers: C11's _Static_assert is C++'s static_assert, and
 * safetensors.h's pl_st (pulled in by nf4.h) is renamed here, out of the way
 * of cuda_common.cuh's bf16 store of the same name. */
#define _Static_assert static_assert
#define pl_st pl_st_c
extern "C" {
#include "../backend.h"
#include "../../core/half.h"
#include "../../core/dist.h"
#include "../../lora/nf4.h"
#include "cuda_backend.h"
#include "nccl_dist.h"
}
#undef pl_st
#undef _Static_assert

/* ---------------------------------------------------------------- state */

namespace {

struct alloc_info {
    size_t bytes;
    pl_mem_cat cat;
    int paged; /* managed memory kept on the host between uses (alloc_paged) */
    int host;  /* pinned host memory (alloc_host) */
};

/* A frozen weight's device copy. */
struct resident {
    int kind;           /* 0: bf16 matrix/table; 1: NF4; 2: fp32 vector */
    void *dev;          /* the bf16 or fp32 data, or the NF4 block holding every array */
    size_t bytes;
    pl_cuda_nf4 nf4;    /* kind 1: device pointers into dev */
};

struct state {
    std::mutex mu;
    std::unordered_map<void *, alloc_info> allocs;
    std::unordered_map<const void *, resident> weights;
    pl_cuda_blas *blas = nullptr;
    void *gemm_ws = nullptr;
    size_t gemm_ws_bytes = 0;
    /* grow-only scratch, one per purpose (cuda_sizes.h's PL_CUDA_SC_*) */
    void *scratch[PL_CUDA_SC_N] = {};
    size_t scratch_bytes[PL_CUDA_SC_N] = {};
    size_t cap = 0;     /* --gpu-mem: bytes this backend allows itself (0: the device's) */
    size_t in_use = 0;  /* bytes allocated now */
    size_t peak = 0;    /* the most in_use has been (mem_device_peak) */
    int fail_code = 0;
    char fail_msg[256] = {};
    unsigned long launches[PL_CUDA_OP_N] = {};
    /* offloaded checkpoints: the copy stream (non-blocking, so it overlaps the
     * legacy default stream the kernels run on) and per slot the event the
     * copy waits for (ready) and the one later work waits for (done) */
    cudaStream_t copy_stream = nullptr;
    cudaEvent_t ready[2] = {}, done[2] = {};
    int opened = 0;
    int dev = 0; /* the device this process uses (several ranks: its local rank modulo the count) */
    char device[256] = {};
};

state *S;

enum { SC_WBF16 = PL_CUDA_SC_WBF16, SC_LORA_A = PL_CUDA_SC_LORA_A, SC_LORA_B = PL_CUDA_SC_LORA_B,
       SC_F32 = PL_CUDA_SC_F32, SC_ATT_OUT = PL_CUDA_SC_ATT_OUT, SC_WS = PL_CUDA_SC_WS, SC_DSUM = PL_CUDA_SC_DSUM,
       SC_NORM = PL_CUDA_SC_NORM };

const char *const op_names[PL_CUDA_OP_N] = {
    "embedding_q", "rmsnorm", "rope", "attention", "swiglu", "linear", "linear_q", "lora_fwd", "add",
    "dropout", "lm_head_ce", "lm_head_ce_bwd", "rmsnorm_bwd", "rope_bwd", "attention_bwd", "swiglu_bwd",
    "linear_bwd", "linear_q_bwd_x", "lora_bwd", "sumsq", "scale", "adamw", "offload", "fetch", "init_random", "quantize_nf4"};

void fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fail(int code, const char *fmt, ...) {
    std::lock_guard<std::mutex> g(S->mu);
    if (S->fail_code) return;
    S->fail_code = code ? code : PL_EIO;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(S->fail_msg, sizeof S->fail_msg, fmt, ap);
    va_end(ap);
}

/* A launcher's status: 0, a cudaError_t, or PL_CUDA_EBLAS + a cuBLAS status. */
void check(int rc, const char *op) {
    if (!rc) return;
    if (rc >= PL_CUDA_EBLAS)
        fail(PL_EIO, "cuda backend: %s: cuBLASLt status %d", op, rc - PL_CUDA_EBLAS);
    else
        fail(rc == (int)cudaErrorMemoryAllocation ? PL_ENOMEM : PL_EIO, "cuda backend: %s: %s", op,
             cudaGetErrorString((cudaError_t)rc));
}

void count(int op) { S->launches[op]++; }

int managed_cat(pl_mem_cat cat) {
    return cat == PL_MEM_WEIGHTS || cat == PL_MEM_GRADIENTS || cat == PL_MEM_OPTIMIZER;
}

/* ---------------------------------------------------------------- memory */

/* Managed pages of [p, p + bytes) to the device (to_device) or to the host. */
cudaError_t prefetch(const void *p, size_t bytes, int to_device) {
#if CUDART_VERSION >= 13000
    cudaMemLocation loc = {to_device ? cudaMemLocationTypeDevice : cudaMemLocationTypeHost, to_device ? S->dev : 0};
    return cudaMemPrefetchAsync(p, bytes, loc, 0, nullptr);
#else
    return cudaMemPrefetchAsync(p, bytes, to_device ? S->dev : cudaCpuDeviceId, nullptr);
#endif
}

void *alloc_any(size_t bytes, pl_mem_cat cat, int paged) {
    if ((int)cat < 0 || cat >= PL_MEM_NCAT) return nullptr;
    void *p = nullptr;
    size_t n = bytes ? bytes : 1;
    {
        std::lock_guard<std::mutex> g(S->mu);
        if (!paged && S->cap && S->in_use + n > S->cap) return nullptr; /* --gpu-mem: paged state is host memory */
    }
    cudaError_t e = paged || managed_cat(cat) ? cudaMallocManaged(&p, n, cudaMemAttachGlobal) : cudaMalloc(&p, n);
    if (e != cudaSuccess || !p) {
        cudaGetLastError(); /* an allocation failure is the caller's NULL, not a sticky error */
        return nullptr;
    }
    if (cudaMemset(p, 0, n) != cudaSuccess) {
        cudaFree(p);
        return nullptr;
    }
    if (paged) prefetch(p, n, 0); /* its home is the host */
    {
        std::lock_guard<std::mutex> g(S->mu);
        S->allocs[p] = alloc_info{n, cat, paged, 0};
        if (!paged && (S->in_use += n) > S->peak) S->peak = S->in_use;
    }
    pl_mem_note(cat, (ptrdiff_t)n);
    return p;
}

void *dev_alloc(size_t bytes, pl_mem_cat cat) { return alloc_any(bytes, cat, 0); }
void *dev_alloc_paged(size_t bytes, pl_mem_cat cat) { return alloc_any(bytes, cat, 1); }

int is_paged(const void *p) {
    std::lock_guard<std::mutex> g(S->mu);
    auto it = S->allocs.find(const_cast<void *>(p));
    return it != S->allocs.end() && it->second.paged;
}

void dev_free(void *p) {
    if (!p) return;
    alloc_info a;
    {
        std::lock_guard<std::mutex> g(S->mu);
        auto it = S->allocs.find(p);
        if (it == S->allocs.end()) return; /* not ours: leave it */
        a = it->second;
        S->allocs.erase(it);
        if (!a.paged && !a.host) S->in_use -= a.bytes;
    }
    if (a.host) cudaFreeHost(p);
    else cudaFree(p);
    pl_mem_note(a.cat, -(ptrdiff_t)a.bytes);
}

size_t device_peak() {
    std::lock_guard<std::mutex> g(S->mu);
    return S->peak;
}

/* Scratch slot s with at least bytes, tagged workspace (NULL: out of memory, recorded). */
void *scratch(int s, size_t bytes, const char *op) {
    if (S->scratch_bytes[s] >= bytes && S->scratch[s]) return S->scratch[s];
    if (S->scratch[s]) {
        cudaDeviceSynchronize(); /* queued kernels may still read it */
        dev_free(S->scratch[s]);
    }
    S->scratch[s] = dev_alloc(bytes, PL_MEM_WORKSPACE);
    S->scratch_bytes[s] = S->scratch[s] ? bytes : 0;
    if (!S->scratch[s]) fail(PL_ENOMEM, "cuda backend: %s: out of device memory for %zu bytes of scratch", op, bytes);
    return S->scratch[s];
}

void up(void *dst, const void *src, size_t bytes) {
    if (bytes) check((int)cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "upload");
}
void down(void *dst, const void *src, size_t bytes) {
    if (bytes) check((int)cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "download");
}
void dcopy(void *dst, const void *src, size_t bytes) {
    if (bytes && dst != src) check((int)cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice), "copy");
}
void dzero(void *p, size_t bytes) {
    if (bytes) check((int)cudaMemset(p, 0, bytes), "zero");
}

void act_to_f32(float *dst, const void *src, size_t n) {
    std::vector<uint16_t> tmp(n);
    down(tmp.data(), src, n * 2);
    for (size_t i = 0; i < n; i++) dst[i] = pl_bf16_to_f32(tmp[i]);
}

/* ---------------------------------------------------------------- frozen weights */

const resident *find_weight(const void *key) {
    std::lock_guard<std::mutex> g(S->mu);
    auto it = S->weights.find(key);
    return it == S->weights.end() ? nullptr : &it->second;
}

const resident *keep_weight(const void *key, const resident &r) {
    std::lock_guard<std::mutex> g(S->mu);
    return &(S->weights[key] = r);
}

/* An fp32 vector (norm weights, bias, RoPE frequencies) on the device. */
const float *vec_f32(const float *host, size_t n, const char *op) {
    if (!host) return nullptr;
    if (const resident *r = find_weight(host)) return (const float *)r->dev;
    void *d = dev_alloc(n * sizeof(float), PL_MEM_WEIGHTS);
    if (!d) {
        fail(PL_ENOMEM, "cuda backend: %s: out of device memory for a weight vector", op);
        return nullptr;
    }
    up(d, host, n * sizeof(float));
    return (const float *)keep_weight(host, resident{2, d, n * sizeof(float), {}})->dev;
}

/* A frozen matrix in any dtype but NF4 as bf16 (rows, cols) on the device. */
const pl_bf16 *mat_bf16(const pl_qweight *w, const char *op) {
    if (const resident *r = find_weight(w->data)) return (const pl_bf16 *)r->dev;
    size_t n = (size_t)w->rows * (size_t)w->cols;
    void *d = dev_alloc(n * 2, PL_MEM_WEIGHTS);
    if (!d) {
        fail(PL_ENOMEM, "cuda backend: %s: out of device memory for a %lld x %lld weight", op, (long long)w->rows,
             (long long)w->cols);
        return nullptr;
    }
    /* rows dequantized on the host in blocks of about 8 MiB of bf16, one copy per block */
    const size_t cols = (size_t)w->cols;
    const int64_t per = (int64_t)((size_t)(8 << 20) / (cols * 2) > 0 ? (size_t)(8 << 20) / (cols * 2) : 1);
    std::vector<float> row(cols);
    std::vector<uint16_t> blk((size_t)(per < w->rows ? per : w->rows) * cols);
    for (int64_t r0 = 0; r0 < w->rows; r0 += per) {
        int64_t nr = w->rows - r0 < per ? w->rows - r0 : per;
        for (int64_t r = 0; r < nr; r++) {
            if (pl_qweight_row(w, r0 + r, row.data()) != 0) {
                dev_free(d);
                fail(PL_EUNSUPPORTED, "cuda backend: %s: cannot read rows of dtype %s", op, pl_dtype_name(w->dtype));
                return nullptr;
            }
            for (size_t c = 0; c < cols; c++) blk[(size_t)r * cols + c] = pl_f32_to_bf16(row[c]);
        }
        up((char *)d + (size_t)r0 * cols * 2, blk.data(), (size_t)nr * cols * 2);
    }
    return (const pl_bf16 *)keep_weight(w->data, resident{0, d, n * 2, {}})->dev;
}

/* An NF4 weight's quantization state on the device. */
const pl_cuda_nf4 *mat_nf4(const pl_qweight *w, const char *op) {
    if (const resident *r = find_weight(w->data)) return &r->nf4;
    const pl_nf4 *q = (const pl_nf4 *)w->data;
    size_t packed = (size_t)(q->n + 1) / 2, nb = (size_t)q->n_blocks, nn = (size_t)q->n_nested;
    /* one block: packed | absmax codes or fp32 | nested | code, each 16-byte aligned (cuda_sizes.h) */
    size_t o_abs = pl_cuda_al16(packed), abs_bytes = q->double_quant ? nb : nb * 4;
    size_t o_nest = o_abs + pl_cuda_al16(abs_bytes), o_code = o_nest + pl_cuda_al16(nn * 4);
    size_t total = pl_cuda_nf4_bytes(q->n, q->blocksize, q->double_quant);
    char *d = (char *)dev_alloc(total, PL_MEM_WEIGHTS);
    if (!d) {
        fail(PL_ENOMEM, "cuda backend: %s: out of device memory for an NF4 weight of %lld elements", op,
             (long long)q->n);
        return nullptr;
    }
    up(d, q->packed, packed);
    resident r{1, d, total, {}};
    r.nf4.packed = (const uint8_t *)d;
    r.nf4.n = q->n;
    r.nf4.blocksize = q->blocksize;
    if (q->double_quant) {
        up(d + o_abs, q->absmax_q, nb);
        up(d + o_nest, q->nested_absmax, nn * 4);
        up(d + o_code, q->code, 256 * 4);
        r.nf4.absmax_q = (const uint8_t *)(d + o_abs);
        r.nf4.nested_absmax = (const float *)(d + o_nest);
        r.nf4.code = (const float *)(d + o_code);
        r.nf4.offset = q->offset;
    } else {
        up(d + o_abs, q->absmax, nb * 4);
        r.nf4.absmax = (const float *)(d + o_abs);
    }
    return &keep_weight(w->data, r)->nf4;
}

/* w as a bf16 (rows, cols) matrix for a GEMM: NF4 dequantized into the
 * shared scratch, anything else its resident copy. */
const pl_bf16 *gemm_weight(const pl_qweight *w, const char *op) {
    if (w->dtype != PL_NF4) return mat_bf16(w, op);
    const pl_cuda_nf4 *q = mat_nf4(w, op);
    if (!q) return nullptr;
    pl_bf16 *s = (pl_bf16 *)scratch(SC_WBF16, pl_cuda_sc_wbf16(q->n), op);
    if (!s) return nullptr;
    check(pl_cuda_nf4_dequant(s, q, 0, q->n, nullptr), op);
    return s;
}

void release_weights(const void *p) {
    cudaDeviceSynchronize();
    std::vector<void *> drop;
    {
        std::lock_guard<std::mutex> g(S->mu);
        if (!p) {
            for (auto &kv : S->weights) drop.push_back(kv.second.dev);
            S->weights.clear();
        } else {
            auto it = S->weights.find(p);
            if (it != S->weights.end()) {
                drop.push_back(it->second.dev);
                S->weights.erase(it);
            }
        }
    }
    for (void *d : drop) dev_free(d);
    if (!p) /* every weight: the scratch was sized by their shapes */
        for (int s = 0; s < PL_CUDA_SC_N; s++) {
            dev_free(S->scratch[s]);
            S->scratch[s] = nullptr;
            S->scratch_bytes[s] = 0;
        }
}

/* The double-quantized NF4 tensor q (the model's laid-out pl_nf4, host
 * memory) made on the device from src (device, BF16 or F16 words per src_kind
 * 1 or 2) or from the random init (src NULL): kept as q's resident copy
 * (keyed by q, as mat_nf4 would keep an upload), then downloaded into q's
 * arrays. A temporary workspace holds the blocks' fp32 absmax, the dynamic
 * map's midpoints and the offset. */
int make_nf4(pl_nf4 *q, const uint16_t *src, int src_kind, uint64_t seed, uint64_t stream, float std, const char *op) {
    if (!q->double_quant || !q->packed || !q->absmax_q || !q->nested_absmax) {
        fail(PL_EINVAL, "cuda backend: %s: expected a laid-out double-quantized NF4 tensor", op);
        return PL_EINVAL;
    }
    const size_t packed = (size_t)(q->n + 1) / 2, nb = (size_t)q->n_blocks, nn = (size_t)q->n_nested;
    const size_t o_abs = pl_cuda_al16(packed), o_nest = o_abs + pl_cuda_al16(nb), o_code = o_nest + pl_cuda_al16(nn * 4);
    const size_t total = pl_cuda_nf4_bytes(q->n, q->blocksize, 1);
    char *d = (char *)dev_alloc(total, PL_MEM_WEIGHTS);
    /* workspace: absmax (nb floats) | the 255 midpoints | the offset */
    const size_t o_mid = pl_cuda_al16(nb * 4), o_off = o_mid + pl_cuda_al16(255 * 4);
    char *ws = d ? (char *)dev_alloc(o_off + 16, PL_MEM_WORKSPACE) : nullptr;
    if (!d || !ws) {
        dev_free(d);
        fail(PL_ENOMEM, "cuda backend: %s: out of device memory for an NF4 weight of %lld elements", op,
             (long long)q->n);
        return PL_ENOMEM;
    }
    float nf4_mid[15], dyn_mid[255];
    for (int k = 0; k < 15; k++) nf4_mid[k] = (pl_nf4_code[k] + pl_nf4_code[k + 1]) / 2.0f;
    for (int k = 0; k < 255; k++) dyn_mid[k] = 0.5f * (pl_nf4_dynamic_map[k] + pl_nf4_dynamic_map[k + 1]);
    up(ws + o_mid, dyn_mid, sizeof dyn_mid);
    up(d + o_code, pl_nf4_dynamic_map, 256 * 4);
    pl_cuda_nf4_init iw = {(uint8_t *)d, (uint8_t *)(d + o_abs), (float *)(d + o_nest), (float *)(ws + o_off), q->n,
                           q->blocksize};
    const float *dmid = (const float *)(ws + o_mid);
    check(src ? pl_cuda_nf4_quantize16(&iw, (float *)ws, nf4_mid, dmid, src, src_kind == 2, nullptr)
              : pl_cuda_nf4_init_random(&iw, (float *)ws, nf4_mid, dmid, seed, stream, std, nullptr),
          op);
    float offset = 0.0f;
    down(&offset, ws + o_off, sizeof offset);
    int64_t bad = -1;
    if (offset != offset) { /* a block held a NaN or an infinity: the first, as the CPU names it */
        std::vector<float> am(nb);
        down(am.data(), ws, nb * 4);
        for (size_t b = 0; b < nb && bad < 0; b++)
            if (am[b] != am[b]) bad = (int64_t)b * q->blocksize;
    }
    dev_free(ws);
    if (bad >= 0) {
        dev_free(d);
        fail(PL_EINVAL, "nf4: element %lld..: expected finite values, found NaN or infinity", (long long)bad);
        return PL_EINVAL;
    }
    resident r{1, d, total, {}};
    r.nf4.packed = (const uint8_t *)d;
    r.nf4.absmax_q = (const uint8_t *)(d + o_abs);
    r.nf4.nested_absmax = (const float *)(d + o_nest);
    r.nf4.code = (const float *)(d + o_code);
    r.nf4.offset = offset;
    r.nf4.n = q->n;
    r.nf4.blocksize = q->blocksize;
    keep_weight(q, r);
    down(q->packed, d, packed);
    down(q->absmax_q, d + o_abs, nb);
    down(q->nested_absmax, d + o_nest, nn * 4);
    memcpy(q->code, pl_nf4_dynamic_map, sizeof q->code);
    q->offset = offset;
    std::lock_guard<std::mutex> g(S->mu);
    return S->fail_code;
}

/* backend.h's init_random: the weight made on the device and kept resident
 * (as mat_bf16 / mat_nf4 would keep a copy), then its bytes downloaded into
 * the model's host storage. */
int op_init_random(pl_qweight *w, uint64_t seed, uint64_t stream, float std) {
    count(PL_CUDA_OP_INIT_RANDOM);
    if (find_weight(w->data)) {
        fail(PL_EINVAL, "cuda backend: init_random: the weight is already on the device");
        return PL_EINVAL;
    }
    const int64_t n = w->rows * w->cols;
    if (w->dtype == PL_BF16) {
        void *d = dev_alloc((size_t)n * 2, PL_MEM_WEIGHTS);
        if (!d) {
            fail(PL_ENOMEM, "cuda backend: init_random: out of device memory for a %lld x %lld weight",
                 (long long)w->rows, (long long)w->cols);
            return PL_ENOMEM;
        }
        check(pl_cuda_bf16_init_random((pl_bf16 *)d, n, seed, stream, std, nullptr), "init_random");
        keep_weight(w->data, resident{0, d, (size_t)n * 2, {}});
        down(const_cast<void *>(w->data), d, (size_t)n * 2);
    } else if (w->dtype == PL_NF4) {
        pl_nf4 *q = (pl_nf4 *)const_cast<void *>(w->data);
        if (q->n != n) {
            fail(PL_EINVAL, "cuda backend: init_random: the NF4 tensor has %lld elements, the weight %lld",
                 (long long)q->n, (long long)n);
            return PL_EINVAL;
        }
        int rc = make_nf4(q, nullptr, 0, seed, stream, std, "init_random");
        if (rc) return rc;
    } else {
        fail(PL_EUNSUPPORTED, "cuda backend: init_random: dtype %s: expected BF16 or NF4", pl_dtype_name(w->dtype));
        return PL_EUNSUPPORTED;
    }
    std::lock_guard<std::mutex> g(S->mu);
    return S->fail_code;
}

/* backend.h's quantize_nf4: the stored BF16/F16 rows uploaded whole into the
 * GEMM weight scratch (the size the GEMMs on this weight use anyway), then
 * make_nf4 from them. */
int op_quantize_nf4(struct pl_nf4 *dst, const pl_qweight *src) {
    if ((src->dtype != PL_BF16 && src->dtype != PL_F16) || src->aux || !dst ||
        src->row_bytes != (size_t)src->cols * 2 || dst->n != src->rows * src->cols)
        return PL_EUNSUPPORTED; /* the caller quantizes on the host */
    count(PL_CUDA_OP_QUANTIZE_NF4);
    if (find_weight(dst)) {
        fail(PL_EINVAL, "cuda backend: quantize_nf4: the weight is already on the device");
        return PL_EINVAL;
    }
    const size_t bytes = (size_t)dst->n * 2;
    void *s = scratch(SC_WBF16, pl_cuda_sc_wbf16(dst->n), "quantize_nf4");
    if (!s) return PL_ENOMEM;
    up(s, src->data, bytes);
    return make_nf4(dst, (const uint16_t *)s, src->dtype == PL_F16 ? 2 : 1, 0, 0, 0.0f, "quantize_nf4");
}

pl_bf16 *B16(void *p) { return (pl_bf16 *)p; }
const pl_bf16 *B16(const void *p) { return (const pl_bf16 *)p; }

/* The LoRA masters as bf16 copies (per call: r x I and O x r elements). */
int lora_bf16(const float *A, const float *B, int I, int O, int r, const pl_bf16 **A16, const pl_bf16 **B16_,
              const char *op) {
    pl_bf16 *a = (pl_bf16 *)scratch(SC_LORA_A, pl_cuda_sc_lora_a(r, I), op);
    pl_bf16 *b = (pl_bf16 *)scratch(SC_LORA_B, pl_cuda_sc_lora_b(O, r), op);
    if (!a || !b) return -1;
    check(pl_cuda_f32_to_bf16(a, A, (int64_t)r * I, nullptr), op);
    check(pl_cuda_f32_to_bf16(b, B, (int64_t)O * r, nullptr), op);
    *A16 = a;
    *B16_ = b;
    return 0;
}

/* ---------------------------------------------------------------- forward ops */

void op_embedding_q(void *out, const int32_t *ids, const pl_qweight *table, int T) {
    count(PL_CUDA_OP_EMBEDDING_Q);
    const pl_bf16 *tb = mat_bf16(table, "embedding");
    if (tb) check(pl_cuda_embedding(B16(out), ids, tb, T, (int)table->cols, nullptr), "embedding");
}

void op_rmsnorm(void *out, const void *x, const float *w, int T, int C, float eps) {
    count(PL_CUDA_OP_RMSNORM);
    const float *dw = vec_f32(w, (size_t)C, "rmsnorm");
    if (dw) check(pl_cuda_rmsnorm(B16(out), nullptr, B16(x), dw, T, C, eps, nullptr), "rmsnorm");
}

void rope_any(void *x, const int32_t *pos, const float *inv_freq, int T, int nh, int hd, int bwd) {
    count(bwd ? PL_CUDA_OP_ROPE_BWD : PL_CUDA_OP_ROPE);
    const float *f = vec_f32(inv_freq, (size_t)hd / 2, "rope");
    if (f) check(pl_cuda_rope(B16(x), pos, f, T, nh, hd, bwd, nullptr), "rope");
}
void op_rope(void *x, const int32_t *pos, const float *inv_freq, int T, int nh, int hd) {
    rope_any(x, pos, inv_freq, T, nh, hd, 0);
}
void op_rope_bwd(void *d, const int32_t *pos, const float *inv_freq, int T, int nh, int hd) {
    rope_any(d, pos, inv_freq, T, nh, hd, 1);
}

void op_attention(void *out, const void *q, const void *k, const void *v, const int32_t *qlast, const int32_t *qseg,
                  const int32_t *kseg, int Tq, int Tk, int nh, int nkv, int hd) {
    count(PL_CUDA_OP_ATTENTION);
    check(pl_cuda_attention(B16(out), nullptr, B16(q), B16(k), B16(v), qlast, qseg, kseg, Tq, Tk, nh, nkv, hd,
                            nullptr),
          "attention");
}

void op_swiglu(void *out, const void *gate, const void *upv, int T, int H) {
    count(PL_CUDA_OP_SWIGLU);
    check(pl_cuda_swiglu(B16(out), B16(gate), B16(upv), (int64_t)T * H, nullptr), "swiglu");
}

void bias(void *out, const float *b, int T, int O, const char *op) {
    if (!b) return;
    const float *db = vec_f32(b, (size_t)O, op);
    if (db) check(pl_cuda_bias_add(B16(out), db, T, O, nullptr), op);
}

/* A frozen fp32 weight (a base kept in fp32): its bf16 copy. */
void op_linear(void *out, const void *x, const float *w, const float *b, int T, int I, int O) {
    count(PL_CUDA_OP_LINEAR);
    pl_qweight qw = {PL_F32, O, I, (size_t)I * 4, w, nullptr};
    const pl_bf16 *W = mat_bf16(&qw, "linear");
    if (!W) return;
    check(pl_cuda_linear(S->blas, B16(out), B16(x), W, T, I, O, S->gemm_ws, S->gemm_ws_bytes, nullptr), "linear");
    bias(out, b, T, O, "linear");
}

void op_linear_q(void *out, const void *x, const pl_qweight *w, const float *b, int T, void *ws) {
    (void)ws;
    count(PL_CUDA_OP_LINEAR_Q);
    const int I = (int)w->cols, O = (int)w->rows;
    if (w->dtype == PL_NF4 && T <= PL_CUDA_GEMV_MAX_T) {
        const pl_cuda_nf4 *q = mat_nf4(w, "linear_q");
        if (q) check(pl_cuda_nf4_gemv(B16(out), B16(x), q, O, I, T, nullptr), "linear_q (gemv)");
    } else {
        const pl_bf16 *W = gemm_weight(w, "linear_q");
        if (W)
            check(pl_cuda_linear(S->blas, B16(out), B16(x), W, T, I, O, S->gemm_ws, S->gemm_ws_bytes, nullptr),
                  "linear_q");
    }
    bias(out, b, T, O, "linear_q");
}

void op_lora_fwd(void *y, void *xa, const void *u, const float *A, const float *B, int T, int I, int O, int r,
                 float scale, void *tmp) {
    (void)tmp;
    count(PL_CUDA_OP_LORA_FWD);
    const pl_bf16 *A16, *B16_;
    if (lora_bf16(A, B, I, O, r, &A16, &B16_, "lora_fwd")) return;
    check(pl_cuda_lora_fwd(S->blas, B16(y), B16(xa), B16(u), A16, B16_, T, I, O, r, scale, S->gemm_ws,
                           S->gemm_ws_bytes, nullptr),
          "lora_fwd");
}

void op_add(void *out, const void *a, const void *b, size_t n) {
    count(PL_CUDA_OP_ADD);
    check(pl_cuda_add(B16(out), B16(a), B16(b), (int64_t)n, nullptr), "add");
}

void op_dropout(void *dst, const void *src, size_t n, float p, uint64_t seed, uint64_t stream, uint64_t first) {
    count(PL_CUDA_OP_DROPOUT);
    check(pl_cuda_dropout(B16(dst), B16(src), (int64_t)n, p, seed, stream, first, nullptr), "dropout");
}

double op_lm_head_ce(float *lse, const void *x, const pl_qweight *head, const int32_t *targets, int T,
                     int64_t *n_valid) {
    count(PL_CUDA_OP_LM_HEAD_CE);
    const int C = (int)head->cols, V = (int)head->rows;
    const pl_bf16 *W = mat_bf16(head, "lm_head_ce");
    float *ws = (float *)scratch(SC_WS, pl_cuda_sc_ce_ws(T, V), "lm_head_ce");
    char *dsum = (char *)scratch(SC_DSUM, PL_CUDA_SC_DSUM_BYTES, "lm_head_ce");
    if (n_valid) *n_valid = 0;
    if (!W || !ws || !dsum) return NAN;
    check(pl_cuda_lm_head_ce(lse, nullptr, (double *)dsum, (int64_t *)(dsum + 8), B16(x), W, targets, T, C, V, ws,
                             nullptr),
          "lm_head_ce");
    double sum = 0;
    int64_t nv = 0;
    down(&sum, dsum, 8);
    down(&nv, dsum + 8, 8);
    if (n_valid) *n_valid = nv;
    return sum;
}

/* ---------------------------------------------------------------- backward ops */

void op_lm_head_ce_bwd(void *dx, const void *x, const pl_qweight *head, const int32_t *targets, const float *lse,
                       int T, float scale) {
    count(PL_CUDA_OP_LM_HEAD_CE_BWD);
    const int C = (int)head->cols, V = (int)head->rows;
    const pl_bf16 *W = mat_bf16(head, "lm_head_ce_bwd");
    float *ws = (float *)scratch(SC_WS, pl_cuda_sc_ce_bwd_ws(T, C), "lm_head_ce_bwd");
    if (W && ws)
        check(pl_cuda_lm_head_ce_bwd(B16(dx), nullptr, B16(x), W, targets, lse, T, C, V, scale, ws, nullptr),
              "lm_head_ce_bwd");
}

void op_rmsnorm_bwd(void *dx, float *dw, const void *dout, const void *x, const float *w, int T, int C, float eps) {
    count(PL_CUDA_OP_RMSNORM_BWD);
    const float *wd = vec_f32(w, (size_t)C, "rmsnorm_bwd");
    /* rstd recomputed: one forward into scratch */
    char *sc = (char *)scratch(SC_NORM, pl_cuda_sc_norm(T, C), "rmsnorm_bwd");
    float *ws = (float *)scratch(SC_F32, pl_cuda_sc_rmsnorm_ws(T, C), "rmsnorm_bwd");
    if (!wd || !sc || !ws) return;
    float *rstd = (float *)(sc + pl_cuda_al16((size_t)T * C * 2));
    check(pl_cuda_rmsnorm((pl_bf16 *)sc, rstd, B16(x), wd, T, C, eps, nullptr), "rmsnorm_bwd");
    check(pl_cuda_rmsnorm_bwd(B16(dx), dw, B16(dout), B16(x), wd, rstd, T, C, ws, nullptr), "rmsnorm_bwd");
}

void op_attention_bwd(void *dq, void *dk, void *dv, const void *dout, const void *q, const void *k, const void *v,
                      const void *out, const int32_t *qlast, const int32_t *qseg, const int32_t *kseg, int Tq, int Tk,
                      int nh, int nkv, int hd) {
    count(PL_CUDA_OP_ATTENTION_BWD);
    /* the forward's log-sum-exp, recomputed (with a scratch output) */
    size_t ob = pl_cuda_al16((size_t)Tq * nh * hd * 2);
    char *sc = (char *)scratch(SC_ATT_OUT, pl_cuda_sc_att_out(Tq, nh, hd), "attention_bwd");
    float *ws = (float *)scratch(SC_F32, pl_cuda_sc_attention_ws(Tq, nh), "attention_bwd");
    if (!sc || !ws) return;
    float *lse = (float *)(sc + ob);
    check(pl_cuda_attention((pl_bf16 *)sc, lse, B16(q), B16(k), B16(v), qlast, qseg, kseg, Tq, Tk, nh, nkv, hd,
                            nullptr),
          "attention_bwd");
    check(pl_cuda_attention_bwd(B16(dq), B16(dk), B16(dv), B16(dout), B16(q), B16(k), B16(v), B16(out), lse, qlast,
                                qseg, kseg, Tq, Tk, nh, nkv, hd, ws, nullptr),
          "attention_bwd");
}

void op_swiglu_bwd(void *dgate, void *dup, const void *dout, const void *gate, const void *upv, int T, int H) {
    count(PL_CUDA_OP_SWIGLU_BWD);
    check(pl_cuda_swiglu_bwd(B16(dgate), B16(dup), B16(dout), B16(gate), B16(upv), (int64_t)T * H, nullptr),
          "swiglu_bwd");
}

void op_linear_bwd(void *dx, float *dw, float *dbias, const void *dout, const void *x, const float *w, int T, int I,
                   int O) {
    count(PL_CUDA_OP_LINEAR_BWD);
    if (dw || dbias) {
        fail(PL_EUNSUPPORTED, "cuda backend: linear_bwd: gradients of base weights (full fine-tuning) are the cpu "
                              "backend's");
        return;
    }
    if (!dx) return;
    pl_qweight qw = {PL_F32, O, I, (size_t)I * 4, w, nullptr};
    const pl_bf16 *W = mat_bf16(&qw, "linear_bwd");
    if (W)
        check(pl_cuda_linear_bwd_x(S->blas, B16(dx), 0, B16(dout), W, T, I, O, S->gemm_ws, S->gemm_ws_bytes, nullptr),
              "linear_bwd");
}

void op_linear_q_bwd_x(void *dx, const void *dout, const pl_qweight *w, int T, void *ws) {
    (void)ws;
    count(PL_CUDA_OP_LINEAR_Q_BWD_X);
    const pl_bf16 *W = gemm_weight(w, "linear_q_bwd_x");
    if (W)
        check(pl_cuda_linear_bwd_x(S->blas, B16(dx), 0, B16(dout), W, T, (int)w->cols, (int)w->rows, S->gemm_ws,
                                   S->gemm_ws_bytes, nullptr),
              "linear_q_bwd_x");
}

void op_lora_bwd(void *dx, int accumulate, float *gA, float *gB, const void *dout, const void *u, const void *xa,
                 const float *A, const float *B, int T, int I, int O, int r, float scale, void *tmp, void *dxa,
                 void *du) {
    (void)tmp;
    (void)du;
    count(PL_CUDA_OP_LORA_BWD);
    const pl_bf16 *A16, *B16_;
    if (lora_bf16(A, B, I, O, r, &A16, &B16_, "lora_bwd")) return;
    check(pl_cuda_lora_bwd(S->blas, B16(dx), accumulate, gA, gB, B16(dxa), B16(dout), B16(u), B16(xa), A16, B16_, T,
                           I, O, r, scale, S->gemm_ws, S->gemm_ws_bytes, nullptr),
          "lora_bwd");
}

double op_sumsq(const float *x, size_t n) {
    count(PL_CUDA_OP_SUMSQ);
    double *ws = (double *)scratch(SC_F32, pl_cuda_sc_sumsq_ws((int64_t)n), "sumsq");
    double *d = (double *)scratch(SC_DSUM, PL_CUDA_SC_DSUM_BYTES, "sumsq");
    if (!ws || !d) return NAN;
    check(pl_cuda_sumsq(d, x, (int64_t)n, 0, ws, nullptr), "sumsq");
    double s = 0;
    down(&s, d, 8);
    return s;
}

void op_scale(float *x, float s, size_t n) {
    count(PL_CUDA_OP_SCALE);
    check(pl_cuda_scale(x, s, (int64_t)n, nullptr), "scale");
}

void op_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2, float eps,
              float wd, int t) {
    count(PL_CUDA_OP_ADAMW);
    int paged = is_paged(m) && is_paged(v); /* paged moments: on the device for this update only */
    if (paged) {
        check((int)prefetch(m, n * 4, 1), "adamw (prefetch)");
        check((int)prefetch(v, n * 4, 1), "adamw (prefetch)");
    }
    check(pl_cuda_adamw(p, g, m, v, (int64_t)n, lr, b1, b2, eps, wd, t, nullptr), "adamw");
    if (paged) {
        check((int)prefetch(m, n * 4, 0), "adamw (page out)");
        check((int)prefetch(v, n * 4, 0), "adamw (page out)");
    }
}

/* ---------------------------------------------------------------- offloaded checkpoints */

void *dev_alloc_host(size_t bytes, pl_mem_cat cat) {
    if ((int)cat < 0 || cat >= PL_MEM_NCAT) return nullptr;
    void *p = nullptr;
    size_t n = bytes ? bytes : 1;
    if (cudaMallocHost(&p, n) != cudaSuccess || !p) {
        cudaGetLastError();
        return nullptr;
    }
    memset(p, 0, n);
    {
        std::lock_guard<std::mutex> g(S->mu);
        S->allocs[p] = alloc_info{n, cat, 0, 1}; /* host memory: outside in_use and the cap */
    }
    pl_mem_note(cat, (ptrdiff_t)n);
    return p;
}

/* The copy stream and its events, made on first use (NULL: failed, recorded). */
int copy_stream_ready(const char *op) {
    if (S->copy_stream) return 1;
    cudaError_t e = cudaStreamCreateWithFlags(&S->copy_stream, cudaStreamNonBlocking);
    for (int i = 0; i < 2 && e == cudaSuccess; i++) {
        e = cudaEventCreateWithFlags(&S->ready[i], cudaEventDisableTiming);
        if (e == cudaSuccess) e = cudaEventCreateWithFlags(&S->done[i], cudaEventDisableTiming);
    }
    if (e != cudaSuccess) {
        check((int)e, op);
        return 0;
    }
    return 1;
}

/* dst = src on the copy stream, after the work queued on the default stream so far. */
void queue_copy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, int slot, int op, const char *name) {
    if (slot < 0 || slot > 1) {
        fail(PL_EINVAL, "cuda backend: %s: slot %d (expected 0 or 1)", name, slot);
        return;
    }
    if (!bytes || !copy_stream_ready(name)) return;
    count(op);
    cudaError_t e = cudaEventRecord(S->ready[slot], 0);
    if (e == cudaSuccess) e = cudaStreamWaitEvent(S->copy_stream, S->ready[slot], 0);
    if (e == cudaSuccess) e = cudaMemcpyAsync(dst, src, bytes, kind, S->copy_stream);
    if (e == cudaSuccess) e = cudaEventRecord(S->done[slot], S->copy_stream);
    check((int)e, name);
}

void op_offload(void *host, const void *dev, size_t bytes, int slot) {
    queue_copy(host, dev, bytes, cudaMemcpyDeviceToHost, slot, PL_CUDA_OP_OFFLOAD, "offload");
}

void op_fetch(void *dev, const void *host, size_t bytes, int slot) {
    queue_copy(dev, host, bytes, cudaMemcpyHostToDevice, slot, PL_CUDA_OP_FETCH, "fetch");
}

void op_copy_wait(int slot) {
    if (slot < 0 || slot > 1 || !S->copy_stream) return; /* nothing was queued */
    check((int)cudaStreamWaitEvent(0, S->done[slot], 0), "copy_wait");
}

int take_error(pl_err *err) {
    cudaError_t e = cudaDeviceSynchronize();
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e != cudaSuccess) fail(PL_EIO, "cuda backend: %s", cudaGetErrorString(e));
    std::lock_guard<std::mutex> g(S->mu);
    if (!S->fail_code) return 0;
    int code = S->fail_code;
    pl_err_set(err, code, "%s", S->fail_msg);
    S->fail_code = 0;
    return code;
}

/* ---------------------------------------------------------------- data-parallel collectives */

/* backend.h's dist_*, over NCCL (nccl_dist.cu); a failure is recorded for take_error. */
int dist_open(int *used, pl_err *err) { return pl_nccl_open(used, err); }
void dist_reduce_scatter(const float *in, size_t n, float *out, float *scratch) {
    pl_err e = {};
    if (pl_nccl_reduce_scatter(in, n, out, scratch, &e)) fail(e.code, "cuda backend: %s", e.msg);
}
void dist_allgather(float *buf, size_t n) {
    pl_err e = {};
    if (pl_nccl_allgather(buf, n, &e)) fail(e.code, "cuda backend: %s", e.msg);
}
void dist_rs_begin(const float *in, size_t n, const size_t *bounds, int nb, float *out, float *scratch) {
    pl_err e = {};
    if (pl_nccl_rs_begin(in, n, bounds, nb, out, scratch, &e)) fail(e.code, "cuda backend: %s", e.msg);
}
void dist_rs_piece(int b) {
    pl_err e = {};
    if (pl_nccl_rs_piece(b, &e)) fail(e.code, "cuda backend: %s", e.msg);
}
void dist_rs_end(void) {
    pl_err e = {};
    if (pl_nccl_rs_end(&e)) fail(e.code, "cuda backend: %s", e.msg);
}

/* The device of this process: with several ranks (core/dist.h), its rank
 * among those of its machine (the launcher's OMPI_COMM_WORLD_LOCAL_RANK,
 * SLURM_LOCALID or MPI_LOCALRANKID; else its global rank) modulo the devices
 * it sees, so one rank per GPU when there are as many; else device 0. */
int pick_device(int n) {
    if (pl_dist_size() <= 1 || n <= 1) return 0;
    const char *names[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"};
    long local = pl_dist_rank();
    for (const char *nm : names) {
        const char *v = getenv(nm);
        char *end;
        if (v && *v) {
            long x = strtol(v, &end, 10);
            if (*end == '\0' && x >= 0) {
                local = x;
                break;
            }
        }
    }
    return (int)(local % n);
}

pl_backend cuda_backend;

} // namespace

/* ---------------------------------------------------------------- entry points */

extern "C" const pl_backend *pl_backend_cuda_open(pl_err *err) {
    static std::mutex open_mu;
    std::lock_guard<std::mutex> g(open_mu);
    if (S && S->opened) return &cuda_backend;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n <= 0) {
        cudaGetLastError();
        pl_err_set(err, PL_EUNSUPPORTED, "--backend cuda: no CUDA device (%s); use --backend cpu",
                   e != cudaSuccess ? cudaGetErrorString(e) : "the driver reports none");
        return nullptr;
    }
    if (!S) S = new state();
    S->dev = pick_device(n);
    if ((e = cudaSetDevice(S->dev)) != cudaSuccess) {
        pl_err_set(err, PL_EIO, "--backend cuda: cannot use device %d: %s", S->dev, cudaGetErrorString(e));
        return nullptr;
    }
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, S->dev) == cudaSuccess) snprintf(S->device, sizeof S->device, "%s", prop.name);
    int rc = pl_cuda_blas_create(&S->blas);
    if (rc) {
        pl_err_set(err, PL_EIO, "--backend cuda: cuBLASLt: cannot create a handle (status %d)", rc);
        return nullptr;
    }
    S->gemm_ws_bytes = pl_cuda_gemm_workspace();
    S->gemm_ws = dev_alloc(S->gemm_ws_bytes, PL_MEM_WORKSPACE);
    if (!S->gemm_ws) {
        pl_cuda_blas_destroy(S->blas);
        S->blas = nullptr;
        pl_err_set(err, PL_ENOMEM, "--backend cuda: out of device memory for cuBLASLt's %zu-byte workspace",
                   S->gemm_ws_bytes);
        return nullptr;
    }
    pl_backend &b = cuda_backend;
    memset(&b, 0, sizeof b);
    b.name = "cuda";
    b.act_dtype = PL_BF16;
    b.host_memory = 0;
    b.alloc = dev_alloc;
    b.alloc_paged = dev_alloc_paged;
    b.alloc_host = dev_alloc_host;
    b.offload = op_offload;
    b.fetch = op_fetch;
    b.copy_wait = op_copy_wait;
    b.free = dev_free;
    b.upload = up;
    b.download = down;
    b.copy = dcopy;
    b.zero = dzero;
    b.act_to_f32 = act_to_f32;
    b.release_weights = release_weights;
    b.init_random = op_init_random;
    b.quantize_nf4 = op_quantize_nf4;
    b.set_mem_cap = pl_cuda_backend_set_cap;
    b.mem_device_peak = device_peak;
    b.embedding_q = op_embedding_q;
    b.rmsnorm = op_rmsnorm;
    b.rope = op_rope;
    b.attention = op_attention;
    b.swiglu = op_swiglu;
    b.linear = op_linear;
    b.linear_q = op_linear_q;
    b.lora_fwd = op_lora_fwd;
    b.add = op_add;
    b.dropout = op_dropout;
    b.lm_head_ce = op_lm_head_ce;
    b.lm_head_ce_bwd = op_lm_head_ce_bwd;
    b.rmsnorm_bwd = op_rmsnorm_bwd;
    b.rope_bwd = op_rope_bwd;
    b.attention_bwd = op_attention_bwd;
    b.swiglu_bwd = op_swiglu_bwd;
    b.linear_bwd = op_linear_bwd;
    b.linear_q_bwd_x = op_linear_q_bwd_x;
    b.lora_bwd = op_lora_bwd;
    b.sumsq = op_sumsq;
    b.scale = op_scale;
    b.adamw = op_adamw;
    b.take_error = take_error;
    if (pl_nccl_built()) { /* else NULL: the trainer's MPI path */
        b.dist_open = dist_open;
        b.dist_reduce_scatter = dist_reduce_scatter;
        b.dist_allgather = dist_allgather;
        b.dist_rs_begin = dist_rs_begin;
        b.dist_rs_piece = dist_rs_piece;
        b.dist_rs_end = dist_rs_end;
        b.dist_seconds = pl_nccl_seconds;
        b.dist_close = pl_nccl_close;
    }
    S->opened = 1;
    return &cuda_backend;
}

extern "C" const char *pl_cuda_backend_device(void) { return S && S->opened ? S->device : ""; }

extern "C" size_t pl_cuda_backend_mem_total(void) {
    size_t fr = 0, tot = 0;
    if (!S || !S->opened) return 0;
    if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return tot;
}

extern "C" void pl_cuda_backend_set_cap(size_t bytes) {
    if (S) {
        std::lock_guard<std::mutex> g(S->mu);
        S->cap = bytes;
    }
}

extern "C" unsigned long pl_cuda_backend_launches(int op) {
    return S && op >= 0 && op < PL_CUDA_OP_N ? S->launches[op] : 0;
}

extern "C" unsigned long pl_cuda_backend_heuristic_calls(void) {
    return S && S->blas ? pl_cuda_blas_heuristic_calls(S->blas) : 0;
}

extern "C" const char *pl_cuda_backend_op_name(int op) { return op >= 0 && op < PL_CUDA_OP_N ? op_names[op] : "?"; }
