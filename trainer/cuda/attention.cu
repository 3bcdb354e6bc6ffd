/* attention.cu: causal GQA attention with segment ids (packed samples),
 * flash-style: forward with the per-row log-sum-exp, backward in two kernels
 * (dQ, then dK/dV) that recompute the probabilities from it.
 *
 * Semantics are backend.h's attention (the CPU op, trainer/cpu/cpu_attention.c,
 * is the reference): q (Tq, nh*hd), k and v (Tk, nkv*hd), out (Tq, nh*hd);
 * query head h uses key/value head h / (nh/nkv); query i sees key j iff
 * j <= qlast[i], j < Tk and, when qseg and kseg are given, kseg[j] == qseg[i];
 * scores are q.k / sqrt(hd); a query that sees no key gets a zero output (and
 * lse = -inf, zero dq, no contribution to dk/dv).
 *
 * Precision: q, k, v, out, dout, dq, dk, dv are bf16; the log-sum-exp and the
 * backward's D_i = dout_i . out_i are fp32; every sum is fp32. Tiles are kept
 * in shared memory as fp32, so each score is pl_dot (ops_math.h) of the same
 * floats the CPU sees: the CPU's bits for s_ij.
 *
 * Forward (one block per ATT_WARPS * ATT_FWD_QPW queries of one head; a warp
 * owns ATT_FWD_QPW queries): tiles of ATT_BK = 32 keys go through shared
 * memory; lane j scores key j of the tile for each of its warp's queries,
 * then the running max m, the running sum l and the output accumulator
 * (lane l holds dims l, l+32, l+64, l+96) are updated online: the old
 * values scaled by exp(m_old - m_new), the tile's p_j v_j added in key order.
 * lse_i = m + log(l).
 *
 * Backward, with p_ij = exp(s_ij - lse_i), dp_ij = dout_i . v_j,
 * D_i = dout_i . out_i and ds_ij = p_ij (dp_ij - D_i):
 *   dQ kernel (blocks over queries, as the forward): writes D_i to the
 *     workspace, then dq_i = scale sum_j ds_ij k_j in key order;
 *   dK/dV kernel (blocks over keys of one kv head; a warp owns ATT_KV_KPW
 *     keys): loops over the group's query heads in order and over tiles of 32
 *     queries (lane i scores query i of the tile), dv_j = sum p_ij dout_i and
 *     dk_j = scale sum ds_ij q_i in (head, query) order.
 * Every output element is written by one thread and every sum has an order
 * fixed by the shape: no atomics, the same bits whatever the block order.
 * hd <= PL_CUDA_ATTN_MAX_HD (128); shared memory stays under 48 KiB. */
#include "cuda_common.cuh"

#define ATT_WARPS 4
#define ATT_THREADS (ATT_WARPS * 32)
#define ATT_BK 32      /* keys per tile (forward, dQ) = queries per tile (dK/dV): one per lane */
#define ATT_FWD_QPW 4  /* queries per warp, forward */
#define ATT_BWD_QPW 2  /* queries per warp, dQ */
#define ATT_KV_KPW 2   /* keys per warp, dK/dV */
#define ATT_DPL (PL_CUDA_ATTN_MAX_HD / 32) /* head dims per lane */

/* Keys j < att_jend(qlast, Tk) may be seen by the query. */
static __device__ __forceinline__ int att_jend(int32_t qlast, int Tk) {
    int j = qlast + 1;
    return j > Tk ? Tk : (j < 0 ? 0 : j);
}

static __device__ __forceinline__ float att_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) {
        const float u = __shfl_xor_sync(0xffffffffu, v, o);
        v = u > v ? u : v;
    }
    return v;
}

/* rows (n, hd) of a (T, heads*hd) bf16 tensor, head hh, from row r0, into
 * shared dst with row stride ld; rows past T are zeros. Whole block. */
static __device__ void att_load_rows(float *dst, int ld, const __nv_bfloat16 *src, int r0, int n, int T,
                                     int heads, int hh, int hd) {
    for (int e = threadIdx.x; e < n * hd; e += blockDim.x) {
        const int r = e / hd, d = e - r * hd, t = r0 + r;
        dst[r * ld + d] = t < T ? pl_ld(&src[((int64_t)t * heads + hh) * hd + d]) : 0.0f;
    }
}

/* ---- kernels ---------------------------------------------------------------------------- */

/* grid (ceil(Tq / BQ), nh), ATT_THREADS threads; shared: K, V tiles (ATT_BK, hd+1), Q (BQ, hd), P (warps, 32). */
__global__ void attn_fwd_kernel(__nv_bfloat16 *out, float *lse, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                                const __nv_bfloat16 *v, const int32_t *qlast, const int32_t *qseg,
                                const int32_t *kseg, int Tq, int Tk, int nh, int nkv, int hd, float scale) {
    PL_EXTERN_SHARED(float, sm);
    const int BQ = ATT_WARPS * ATT_FWD_QPW, ld = hd + 1;
    float *Ks = sm, *Vs = Ks + ATT_BK * ld, *Qs = Vs + ATT_BK * ld, *Ps = Qs + BQ * hd;
    const int h = blockIdx.y, kh = h / (nh / nkv), i0 = blockIdx.x * BQ;
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    const int segs = qseg && kseg;
    att_load_rows(Qs, hd, q, i0, BQ, Tq, nh, h, hd);
    int kend = 0, jend[ATT_FWD_QPW], seg[ATT_FWD_QPW];
    float m[ATT_FWD_QPW], l[ATT_FWD_QPW], acc[ATT_FWD_QPW][ATT_DPL];
    for (int r = 0; r < BQ && i0 + r < Tq; r++) {
        const int e = att_jend(qlast[i0 + r], Tk);
        kend = e > kend ? e : kend;
    }
PL_UNROLL
    for (int u = 0; u < ATT_FWD_QPW; u++) {
        const int i = i0 + w * ATT_FWD_QPW + u;
        jend[u] = i < Tq ? att_jend(qlast[i], Tk) : 0;
        seg[u] = segs && i < Tq ? qseg[i] : 0;
        m[u] = -INFINITY;
        l[u] = 0.0f;
PL_UNROLL
        for (int rr = 0; rr < ATT_DPL; rr++) acc[u][rr] = 0.0f;
    }
    for (int j0 = 0; j0 < kend; j0 += ATT_BK) {
        const int nk = kend - j0 < ATT_BK ? kend - j0 : ATT_BK;
        __syncthreads(); /* the previous tile is consumed (and Q is loaded) */
        att_load_rows(Ks, ld, k, j0, ATT_BK, kend, nkv, kh, hd);
        att_load_rows(Vs, ld, v, j0, ATT_BK, kend, nkv, kh, hd);
        __syncthreads();
        const int j = j0 + lane;
PL_UNROLL
        for (int u = 0; u < ATT_FWD_QPW; u++) {
            if (j0 >= jend[u]) continue; /* warp-uniform */
            const int r = w * ATT_FWD_QPW + u;
            const bool vis = j < jend[u] && (!segs || kseg[j] == seg[u]);
            const float s = vis ? pl_dot(Qs + r * hd, Ks + lane * ld, hd) * scale : -INFINITY;
            const float mt = att_warp_max(s), mn = mt > m[u] ? mt : m[u];
            if (mn == -INFINITY) continue; /* nothing visible yet: warp-uniform */
            const float p = vis ? expf(s - mn) : 0.0f, alpha = expf(m[u] - mn);
            l[u] = l[u] * alpha + pl_warp_sum(p);
            m[u] = mn;
            Ps[w * 32 + lane] = p;
            __syncwarp();
PL_UNROLL
            for (int rr = 0; rr < ATT_DPL; rr++) {
                const int d = lane + 32 * rr;
                if (d >= hd) break;
                float a = acc[u][rr] * alpha;
                for (int jj = 0; jj < nk; jj++) a += Ps[w * 32 + jj] * Vs[jj * ld + d];
                acc[u][rr] = a;
            }
            __syncwarp(); /* Ps is rewritten by the next query */
        }
    }
PL_UNROLL
    for (int u = 0; u < ATT_FWD_QPW; u++) {
        const int i = i0 + w * ATT_FWD_QPW + u;
        if (i >= Tq) continue;
        const float inv = l[u] > 0.0f ? 1.0f / l[u] : 0.0f;
PL_UNROLL
        for (int rr = 0; rr < ATT_DPL; rr++) {
            const int d = lane + 32 * rr;
            if (d < hd) pl_st(&out[((int64_t)i * nh + h) * hd + d], acc[u][rr] * inv);
        }
        if (lse && lane == 0) lse[(int64_t)h * Tq + i] = l[u] > 0.0f ? m[u] + logf(l[u]) : -INFINITY;
    }
}

/* grid (ceil(Tq / BQ), nh), ATT_THREADS threads; shared: K, V tiles (ATT_BK, hd+1), Q, dO (BQ, hd), P (warps, 32).
 * Dws (nh, Tq) receives D_i = dout_i . out_i for the dK/dV kernel. */
__global__ void attn_bwd_dq_kernel(__nv_bfloat16 *dq, float *Dws, const __nv_bfloat16 *dout,
                                   const __nv_bfloat16 *q, const __nv_bfloat16 *k, const __nv_bfloat16 *v,
                                   const __nv_bfloat16 *out, const float *lse, const int32_t *qlast,
                                   const int32_t *qseg, const int32_t *kseg, int Tq, int Tk, int nh, int nkv,
                                   int hd, float scale) {
    PL_EXTERN_SHARED(float, sm);
    const int BQ = ATT_WARPS * ATT_BWD_QPW, ld = hd + 1;
    float *Ks = sm, *Vs = Ks + ATT_BK * ld, *Qs = Vs + ATT_BK * ld, *Os = Qs + BQ * hd, *Ps = Os + BQ * hd;
    const int h = blockIdx.y, kh = h / (nh / nkv), i0 = blockIdx.x * BQ;
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    const int segs = qseg && kseg;
    att_load_rows(Qs, hd, q, i0, BQ, Tq, nh, h, hd);
    att_load_rows(Os, hd, dout, i0, BQ, Tq, nh, h, hd);
    int kend = 0, jend[ATT_BWD_QPW], seg[ATT_BWD_QPW];
    float L[ATT_BWD_QPW], D[ATT_BWD_QPW], acc[ATT_BWD_QPW][ATT_DPL];
    for (int r = 0; r < BQ && i0 + r < Tq; r++) {
        const int e = att_jend(qlast[i0 + r], Tk);
        kend = e > kend ? e : kend;
    }
PL_UNROLL
    for (int u = 0; u < ATT_BWD_QPW; u++) {
        const int i = i0 + w * ATT_BWD_QPW + u;
        float dd = 0.0f; /* D_i: lane partials over its dims, then a warp sum */
PL_UNROLL
        for (int rr = 0; rr < ATT_DPL; rr++) {
            const int d = lane + 32 * rr;
            if (i < Tq && d < hd) {
                const int64_t o = ((int64_t)i * nh + h) * hd + d;
                dd += pl_ld(&dout[o]) * pl_ld(&out[o]);
            }
        }
        D[u] = pl_warp_sum(dd);
        if (i < Tq && lane == 0) Dws[(int64_t)h * Tq + i] = D[u];
        L[u] = i < Tq ? lse[(int64_t)h * Tq + i] : -INFINITY;
        jend[u] = i < Tq && L[u] > -INFINITY ? att_jend(qlast[i], Tk) : 0;
        seg[u] = segs && i < Tq ? qseg[i] : 0;
PL_UNROLL
        for (int rr = 0; rr < ATT_DPL; rr++) acc[u][rr] = 0.0f;
    }
    for (int j0 = 0; j0 < kend; j0 += ATT_BK) {
        const int nk = kend - j0 < ATT_BK ? kend - j0 : ATT_BK;
        __syncthreads();
        att_load_rows(Ks, ld, k, j0, ATT_BK, kend, nkv, kh, hd);
        att_load_rows(Vs, ld, v, j0, ATT_BK, kend, nkv, kh, hd);
        __syncthreads();
        const int j = j0 + lane;
PL_UNROLL
        for (int u = 0; u < ATT_BWD_QPW; u++) {
            if (j0 >= jend[u]) continue; /* warp-uniform */
            const int r = w * ATT_BWD_QPW + u;
            const bool vis = j < jend[u] && (!segs || kseg[j] == seg[u]);
            float ds = 0.0f;
            if (vis) {
                const float p = expf(pl_dot(Qs + r * hd, Ks + lane * ld, hd) * scale - L[u]);
                ds = p * (pl_dot(Os + r * hd, Vs + lane * ld, hd) - D[u]);
            }
            Ps[w * 32 + lane] = ds;
            __syncwarp();
PL_UNROLL
            for (int rr = 0; rr < ATT_DPL; rr++) {
                const int d = lane + 32 * rr;
                if (d >= hd) break;
                float a = acc[u][rr];
                for (int jj = 0; jj < nk; jj++) a += Ps[w * 32 + jj] * Ks[jj * ld + d];
                acc[u][rr] = a;
            }
            __syncwarp();
        }
    }
PL_UNROLL
    for (int u = 0; u < ATT_BWD_QPW; u++) {
        const int i = i0 + w * ATT_BWD_QPW + u;
        if (i >= Tq) continue;
PL_UNROLL
        for (int rr = 0; rr < ATT_DPL; rr++) {
            const int d = lane + 32 * rr;
            if (d < hd) pl_st(&dq[((int64_t)i * nh + h) * hd + d], acc[u][rr] * scale);
        }
    }
}

/* grid (ceil(Tk / BKV), nkv), ATT_THREADS threads; shared: Q, dO tiles (ATT_BK, hd+1), K, V rows (BKV, hd),
 * lse and D of the tile (ATT_BK each), P and dS (warps, 32) each. */
__global__ void attn_bwd_dkv_kernel(__nv_bfloat16 *dk, __nv_bfloat16 *dv, const __nv_bfloat16 *dout,
                                    const __nv_bfloat16 *q, const __nv_bfloat16 *k, const __nv_bfloat16 *v,
                                    const float *lse, const float *Dws, const int32_t *qlast, const int32_t *qseg,
                                    const int32_t *kseg, int Tq, int Tk, int nh, int nkv, int hd, float scale) {
    PL_EXTERN_SHARED(float, sm);
    const int BKV = ATT_WARPS * ATT_KV_KPW, ld = hd + 1;
    float *Qs = sm, *Os = Qs + ATT_BK * ld, *Kown = Os + ATT_BK * ld, *Vown = Kown + BKV * hd;
    float *Ls = Vown + BKV * hd, *Ds = Ls + ATT_BK, *Ps = Ds + ATT_BK, *Ss = Ps + ATT_WARPS * 32;
    const int g = blockIdx.y, group = nh / nkv, j0 = blockIdx.x * BKV;
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    const int segs = qseg && kseg;
    att_load_rows(Kown, hd, k, j0, BKV, Tk, nkv, g, hd);
    att_load_rows(Vown, hd, v, j0, BKV, Tk, nkv, g, hd);
    float adk[ATT_KV_KPW][ATT_DPL], adv[ATT_KV_KPW][ATT_DPL];
    int seg[ATT_KV_KPW];
PL_UNROLL
    for (int u = 0; u < ATT_KV_KPW; u++) {
        const int j = j0 + w * ATT_KV_KPW + u;
        seg[u] = segs && j < Tk ? kseg[j] : 0;
PL_UNROLL
        for (int rr = 0; rr < ATT_DPL; rr++) adk[u][rr] = adv[u][rr] = 0.0f;
    }
    for (int h = g * group; h < (g + 1) * group; h++)
        for (int i0 = 0; i0 < Tq; i0 += ATT_BK) {
            const int nq = Tq - i0 < ATT_BK ? Tq - i0 : ATT_BK;
            int any = 0; /* does a query of the tile see a key of this block? (block-uniform) */
            for (int r = 0; r < nq && !any; r++) any = att_jend(qlast[i0 + r], Tk) > j0;
            if (!any) continue;
            __syncthreads();
            att_load_rows(Qs, ld, q, i0, ATT_BK, Tq, nh, h, hd);
            att_load_rows(Os, ld, dout, i0, ATT_BK, Tq, nh, h, hd);
            if (threadIdx.x < ATT_BK) {
                const int i = i0 + threadIdx.x;
                Ls[threadIdx.x] = i < Tq ? lse[(int64_t)h * Tq + i] : -INFINITY;
                Ds[threadIdx.x] = i < Tq ? Dws[(int64_t)h * Tq + i] : 0.0f;
            }
            __syncthreads();
            const int i = i0 + lane;
PL_UNROLL
            for (int u = 0; u < ATT_KV_KPW; u++) {
                const int c = w * ATT_KV_KPW + u, j = j0 + c;
                if (j >= Tk) continue; /* warp-uniform */
                const bool vis = i < Tq && j < att_jend(qlast[i], Tk) && (!segs || qseg[i] == seg[u]) &&
                                 Ls[lane] > -INFINITY;
                float p = 0.0f, ds = 0.0f;
                if (vis) {
                    p = expf(pl_dot(Qs + lane * ld, Kown + c * hd, hd) * scale - Ls[lane]);
                    ds = p * (pl_dot(Os + lane * ld, Vown + c * hd, hd) - Ds[lane]);
                }
                Ps[w * 32 + lane] = p;
                Ss[w * 32 + lane] = ds;
                __syncwarp();
PL_UNROLL
                for (int rr = 0; rr < ATT_DPL; rr++) {
                    const int d = lane + 32 * rr;
                    if (d >= hd) break;
                    float a = adv[u][rr], b = adk[u][rr];
                    for (int ii = 0; ii < nq; ii++) {
                        a += Ps[w * 32 + ii] * Os[ii * ld + d];
                        b += Ss[w * 32 + ii] * Qs[ii * ld + d];
                    }
                    adv[u][rr] = a;
                    adk[u][rr] = b;
                }
                __syncwarp();
            }
        }
PL_UNROLL
    for (int u = 0; u < ATT_KV_KPW; u++) {
        const int j = j0 + w * ATT_KV_KPW + u;
        if (j >= Tk) continue;
PL_UNROLL
        for (int rr = 0; rr < ATT_DPL; rr++) {
            const int d = lane + 32 * rr;
            if (d >= hd) continue;
            const int64_t o = ((int64_t)j * nkv + g) * hd + d;
            pl_st(&dk[o], adk[u][rr] * scale);
            pl_st(&dv[o], adv[u][rr]);
        }
    }
}

/* ---- launchers ---------------------------------------------------------------------------- */

static int att_args_ok(int Tq, int Tk, int nh, int nkv, int hd, const int32_t *qseg, const int32_t *kseg) {
    return Tq >= 0 && Tk >= 0 && nh > 0 && nkv > 0 && nh % nkv == 0 && hd > 0 && hd <= PL_CUDA_ATTN_MAX_HD &&
           !qseg == !kseg && Tq <= (1 << 30) / ATT_BK;
}

static size_t att_fwd_shmem(int hd) {
    return ((size_t)2 * ATT_BK * (hd + 1) + (size_t)ATT_WARPS * ATT_FWD_QPW * hd + ATT_WARPS * 32) * sizeof(float);
}
static size_t att_dq_shmem(int hd) {
    return ((size_t)2 * ATT_BK * (hd + 1) + (size_t)2 * ATT_WARPS * ATT_BWD_QPW * hd + ATT_WARPS * 32) *
           sizeof(float);
}
static size_t att_dkv_shmem(int hd) {
    return ((size_t)2 * ATT_BK * (hd + 1) + (size_t)2 * ATT_WARPS * ATT_KV_KPW * hd + 2 * ATT_BK +
            2 * ATT_WARPS * 32) * sizeof(float);
}

extern "C" int pl_cuda_attention(pl_bf16 *out, float *lse, const pl_bf16 *q, const pl_bf16 *k, const pl_bf16 *v,
                                 const int32_t *qlast, const int32_t *qseg, const int32_t *kseg, int Tq, int Tk,
                                 int nh, int nkv, int hd, pl_stream stream) {
    if (!att_args_ok(Tq, Tk, nh, nkv, hd, qseg, kseg)) return (int)cudaErrorInvalidValue;
    if (Tq == 0) return 0;
    const int BQ = ATT_WARPS * ATT_FWD_QPW;
    const dim3 grid((Tq + BQ - 1) / BQ, nh);
    PL_LAUNCH(attn_fwd_kernel, grid, ATT_THREADS, att_fwd_shmem(hd), stream, pl_dev_bf16(out), lse, pl_dev_bf16(q),
              pl_dev_bf16(k), pl_dev_bf16(v), qlast, qseg, kseg, Tq, Tk, nh, nkv, hd, 1.0f / sqrtf((float)hd));
    return pl_cuda_status();
}

extern "C" size_t pl_cuda_attention_bwd_workspace(int Tq, int nh) { return pl_cuda_size_attention_bwd_ws(Tq, nh); }

extern "C" int pl_cuda_attention_bwd(pl_bf16 *dq, pl_bf16 *dk, pl_bf16 *dv, const pl_bf16 *dout, const pl_bf16 *q,
                                     const pl_bf16 *k, const pl_bf16 *v, const pl_bf16 *out, const float *lse,
                                     const int32_t *qlast, const int32_t *qseg, const int32_t *kseg, int Tq, int Tk,
                                     int nh, int nkv, int hd, float *workspace, pl_stream stream) {
    if (!att_args_ok(Tq, Tk, nh, nkv, hd, qseg, kseg) || (Tq > 0 && !workspace)) return (int)cudaErrorInvalidValue;
    const float scale = 1.0f / sqrtf((float)hd);
    if (Tq > 0) {
        const int BQ = ATT_WARPS * ATT_BWD_QPW;
        const dim3 grid((Tq + BQ - 1) / BQ, nh);
        PL_LAUNCH(attn_bwd_dq_kernel, grid, ATT_THREADS, att_dq_shmem(hd), stream, pl_dev_bf16(dq), workspace,
                  pl_dev_bf16(dout), pl_dev_bf16(q), pl_dev_bf16(k), pl_dev_bf16(v), pl_dev_bf16(out), lse, qlast,
                  qseg, kseg, Tq, Tk, nh, nkv, hd, scale);
    }
    if (Tk > 0) { /* with Tq == 0 every dk, dv is zero */
        const int BKV = ATT_WARPS * ATT_KV_KPW;
        const dim3 grid((Tk + BKV - 1) / BKV, nkv);
        PL_LAUNCH(attn_bwd_dkv_kernel, grid, ATT_THREADS, att_dkv_shmem(hd), stream, pl_dev_bf16(dk),
                  pl_dev_bf16(dv), pl_dev_bf16(dout), pl_dev_bf16(q), pl_dev_bf16(k), pl_dev_bf16(v), lse,
                  (const float *)workspace, qlast, qseg, kseg, Tq, Tk, nh, nkv, hd, scale);
    }
    return pl_cuda_status();
}
