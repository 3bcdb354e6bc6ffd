/* cross_entropy.cu: the LM head fused with cross-entropy, forward and
 * backward, without the (T, V) logits.
 *
 * Semantics are the CPU's head + loss (trainer/train.c: linear, then
 * backend.h's cross_entropy and cross_entropy_bwd, then linear_bwd): logits
 * (T,V) = x (T,C) . W (V,C)^T; a row with target < 0 is ignored (loss 0, not
 * counted, zero gradient); target >= V is a caller bug made visible as NaN;
 * the loss sum runs over the counted rows in row order in double; the
 * backward's g = scale (softmax - onehot), scale = dL/d(loss of one row)
 * (1/n_valid for a mean).
 *
 * Every kernel computes logits one tile at a time: PL_CUDA_CE_TOKENS (8)
 * tokens by PL_CUDA_CE_VOCAB (256) vocabulary rows, one thread per
 * vocabulary row (it reads its W row once for the 8 tokens), fp32 sums in
 * column order, into 8 KiB of shared memory. Precision: x, W, dx bf16; lse,
 * losses, dW fp32; the loss sum double.
 *   forward: grid (token tiles, vocab chunks); each block writes, per token,
 *     the chunk's max and sum of exp (and the target's logit when it falls in
 *     the chunk) to the workspace; one thread per token then combines its
 *     chunks in chunk order into lse and the loss; one thread sums the losses
 *     in row order (the CPU's order, in double).
 *   dx: one block per token tile, looping over the vocabulary chunks in order:
 *     logits tile -> g tile (from lse) -> dx (tile rows, all C) += g . W_chunk,
 *     accumulated in an fp32 workspace that only this block touches, rounded
 *     to bf16 at the end.
 *   dW: one block per vocabulary chunk, looping over the token tiles in order:
 *     logits tile -> g tile -> dW (chunk rows, all C) += g^T . x_tile.
 * So the backward recomputes the logits twice (once per gradient); nothing
 * is (T, V), no atomics, every sum in an order fixed by the shape. Tiles whose
 * tokens are all ignored are skipped. */
#include "cuda_common.cuh"

#define CE_BT PL_CUDA_CE_TOKENS
#define CE_VCH PL_CUDA_CE_VOCAB /* = threads per block */

static_assert(CE_VCH / 32 == CE_BT, "the forward gives one warp to each token of a tile");

/* L (CE_BT, CE_VCH) in shared: L[t][c] = x[t0 + t] . W[v0 + c], -inf past T or V.
 * Thread c computes column c; no barrier inside. */
static __device__ void ce_logits_tile(float *L, const __nv_bfloat16 *x, const __nv_bfloat16 *W, int t0, int v0,
                                      int T, int C, int V) {
    const int c = threadIdx.x, v = v0 + c, nt = T - t0 < CE_BT ? T - t0 : CE_BT;
    float acc[CE_BT];
PL_UNROLL
    for (int t = 0; t < CE_BT; t++) acc[t] = 0.0f;
    if (v < V) {
        const __nv_bfloat16 *w = W + (int64_t)v * C;
        const __nv_bfloat16 *xt = x + (int64_t)t0 * C;
        for (int e = 0; e < C; e++) {
            const float wv = pl_ld(&w[e]);
PL_UNROLL
            for (int t = 0; t < CE_BT; t++)
                if (t < nt) acc[t] += wv * pl_ld(&xt[(int64_t)t * C + e]);
        }
    }
PL_UNROLL
    for (int t = 0; t < CE_BT; t++) L[t * CE_VCH + c] = v < V && t < nt ? acc[t] : -INFINITY;
}

/* Column c of L becomes g (in place, by the thread that computed it):
 * scale (exp(l - lse) - [v == target]), 0 for ignored rows and past V, NaN
 * for a target >= V. */
static __device__ void ce_grad_tile(float *L, const int32_t *targets, const float *lse, int t0, int v0, int T,
                                    int V, float scale) {
    const int c = threadIdx.x, v = v0 + c;
    for (int t = 0; t < CE_BT && t0 + t < T; t++) {
        const int32_t tg = targets[t0 + t];
        float g = 0.0f;
        if (tg >= V) g = NAN;
        else if (tg >= 0 && v < V) {
            const float p = expf(L[t * CE_VCH + c] - lse[t0 + t]);
            g = scale * (v == tg ? p - 1.0f : p);
        }
        L[t * CE_VCH + c] = g;
    }
}

/* 1 when every token of the tile is ignored (block-uniform). */
static __device__ int ce_tile_ignored(const int32_t *targets, int t0, int T) {
    for (int t = t0; t < T && t < t0 + CE_BT; t++)
        if (targets[t] >= 0) return 0;
    return 1;
}

/* ---- kernels ---------------------------------------------------------------------------- */

/* grid (token tiles, vocab chunks), CE_VCH threads. pm, ps (T, nchunks): the
 * chunk's max and sum exp(l - max) per token; tl (T): the target's logit. */
__global__ void ce_fwd_partial_kernel(float *pm, float *ps, float *tl, const __nv_bfloat16 *x,
                                      const __nv_bfloat16 *W, const int32_t *targets, int T, int C, int V) {
    __shared__ float L[CE_BT * CE_VCH];
    const int t0 = blockIdx.x * CE_BT, vc = blockIdx.y, v0 = vc * CE_VCH, nvc = gridDim.y;
    ce_logits_tile(L, x, W, t0, v0, T, C, V);
    __syncthreads();
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, t = t0 + w;
    if (t >= T) return; /* warp-uniform; no barrier follows */
    const float *row = L + w * CE_VCH;
    float m = -INFINITY;
    for (int c = lane; c < CE_VCH; c += 32) m = row[c] > m ? row[c] : m;
    for (int o = 16; o > 0; o >>= 1) {
        const float u = __shfl_xor_sync(0xffffffffu, m, o);
        m = u > m ? u : m;
    }
    float s = 0.0f;
    for (int c = lane; c < CE_VCH; c += 32) s += expf(row[c] - m); /* -inf columns give 0 */
    s = pl_warp_sum(s);
    if (lane == 0) {
        pm[(int64_t)t * nvc + vc] = m;
        ps[(int64_t)t * nvc + vc] = s;
        const int32_t tg = targets[t];
        if (tg >= v0 && tg < v0 + CE_VCH && tg < V) tl[t] = row[tg - v0];
    }
}

/* One thread per token: combine the chunks in order. */
__global__ void ce_fwd_finish_kernel(float *lse, float *losses, const float *pm, const float *ps, const float *tl,
                                     const int32_t *targets, int T, int V, int nvc) {
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= T) return;
    const float *m = pm + (int64_t)t * nvc, *s = ps + (int64_t)t * nvc;
    float mx = -INFINITY;
    for (int c = 0; c < nvc; c++) mx = m[c] > mx ? m[c] : mx;
    float sum = 0.0f;
    for (int c = 0; c < nvc; c++) sum += s[c] * expf(m[c] - mx);
    const float l = mx + logf(sum);
    lse[t] = l;
    const int32_t tg = targets[t];
    losses[t] = tg < 0 ? 0.0f : tg >= V ? NAN : pl_cross_entropy_from_lse(l, tl[t]);
}

/* One thread: the CPU's sum (double, row order, counted rows only). */
__global__ void ce_fwd_sum_kernel(double *loss_sum, int64_t *n_valid, const float *losses, const int32_t *targets,
                                  int T) {
    if (threadIdx.x != 0) return;
    double sum = 0.0;
    int64_t nv = 0;
    for (int t = 0; t < T; t++) {
        if (targets[t] < 0) continue;
        sum += (double)losses[t];
        nv++;
    }
    if (loss_sum) *loss_sum = sum;
    if (n_valid) *n_valid = nv;
}

/* grid (token tiles), CE_VCH threads. acc (T, C) fp32: this tile's rows only. */
__global__ void ce_bwd_dx_kernel(__nv_bfloat16 *dx, float *acc, const __nv_bfloat16 *x, const __nv_bfloat16 *W,
                                 const int32_t *targets, const float *lse, int T, int C, int V, float scale) {
    __shared__ float L[CE_BT * CE_VCH];
    const int t0 = blockIdx.x * CE_BT, nt = T - t0 < CE_BT ? T - t0 : CE_BT;
    if (ce_tile_ignored(targets, t0, T)) {
        for (int e = threadIdx.x; e < nt * C; e += blockDim.x) pl_st(&dx[(int64_t)t0 * C + e], 0.0f);
        return;
    }
    float *a = acc + (int64_t)t0 * C;
    for (int v0 = 0; v0 < V; v0 += CE_VCH) {
        const int nv = V - v0 < CE_VCH ? V - v0 : CE_VCH;
        __syncthreads(); /* the previous chunk's g is consumed */
        ce_logits_tile(L, x, W, t0, v0, T, C, V);
        ce_grad_tile(L, targets, lse, t0, v0, T, V, scale);
        __syncthreads();
        for (int col = threadIdx.x; col < C; col += blockDim.x)
            for (int t = 0; t < nt; t++) {
                float s = v0 ? a[(int64_t)t * C + col] : 0.0f;
                for (int vv = 0; vv < nv; vv++) s += L[t * CE_VCH + vv] * pl_ld(&W[(int64_t)(v0 + vv) * C + col]);
                a[(int64_t)t * C + col] = s;
            }
    }
    for (int col = threadIdx.x; col < C; col += blockDim.x) /* each thread reads what it wrote */
        for (int t = 0; t < nt; t++) pl_st(&dx[(int64_t)(t0 + t) * C + col], a[(int64_t)t * C + col]);
}

/* grid (vocab chunks), CE_VCH threads: dW rows of the chunk += g^T x, token tiles in order. */
__global__ void ce_bwd_dw_kernel(float *dW, const __nv_bfloat16 *x, const __nv_bfloat16 *W, const int32_t *targets,
                                 const float *lse, int T, int C, int V, float scale) {
    __shared__ float L[CE_BT * CE_VCH];
    const int v0 = blockIdx.x * CE_VCH, nv = V - v0 < CE_VCH ? V - v0 : CE_VCH;
    for (int t0 = 0; t0 < T; t0 += CE_BT) {
        if (ce_tile_ignored(targets, t0, T)) continue; /* block-uniform */
        const int nt = T - t0 < CE_BT ? T - t0 : CE_BT;
        __syncthreads();
        ce_logits_tile(L, x, W, t0, v0, T, C, V);
        ce_grad_tile(L, targets, lse, t0, v0, T, V, scale);
        __syncthreads();
        for (int vv = 0; vv < nv; vv++) {
            float *d = dW + (int64_t)(v0 + vv) * C;
            for (int col = threadIdx.x; col < C; col += blockDim.x) {
                float s = d[col];
                for (int t = 0; t < nt; t++) s += L[t * CE_VCH + vv] * pl_ld(&x[(int64_t)(t0 + t) * C + col]);
                d[col] = s;
            }
        }
    }
}

/* ---- launchers ---------------------------------------------------------------------------- */

static int ce_nchunks(int V) { return pl_cuda_ce_nchunks(V); }

extern "C" size_t pl_cuda_lm_head_ce_workspace(int T, int V) { return pl_cuda_size_lm_head_ce_ws(T, V); }

extern "C" int pl_cuda_lm_head_ce(float *lse, float *losses, double *loss_sum, int64_t *n_valid, const pl_bf16 *x,
                                  const pl_bf16 *W, const int32_t *targets, int T, int C, int V, float *workspace,
                                  pl_stream stream) {
    if (T < 0 || C <= 0 || V <= 0 || !lse || (T > 0 && !workspace)) return (int)cudaErrorInvalidValue;
    if (T == 0) {
        if (loss_sum) cudaMemsetAsync(loss_sum, 0, sizeof *loss_sum, stream);
        if (n_valid) cudaMemsetAsync(n_valid, 0, sizeof *n_valid, stream);
        return pl_cuda_status();
    }
    const int nvc = ce_nchunks(V), ntt = (T + CE_BT - 1) / CE_BT;
    float *pm = workspace, *ps = pm + (size_t)T * nvc, *tl = ps + (size_t)T * nvc, *lbuf = tl + T;
    if (losses) lbuf = losses;
    PL_LAUNCH(ce_fwd_partial_kernel, dim3(ntt, nvc), CE_VCH, 0, stream, pm, ps, tl, pl_dev_bf16(x), pl_dev_bf16(W),
              targets, T, C, V);
    PL_LAUNCH(ce_fwd_finish_kernel, (T + 127) / 128, 128, 0, stream, lse, lbuf, (const float *)pm,
              (const float *)ps, (const float *)tl, targets, T, V, nvc);
    if (loss_sum || n_valid)
        PL_LAUNCH(ce_fwd_sum_kernel, 1, 32, 0, stream, loss_sum, n_valid, (const float *)lbuf, targets, T);
    return pl_cuda_status();
}

extern "C" size_t pl_cuda_lm_head_ce_bwd_workspace(int T, int C) { return pl_cuda_size_lm_head_ce_bwd_ws(T, C); }

extern "C" int pl_cuda_lm_head_ce_bwd(pl_bf16 *dx, float *dW, const pl_bf16 *x, const pl_bf16 *W,
                                      const int32_t *targets, const float *lse, int T, int C, int V, float scale,
                                      float *workspace, pl_stream stream) {
    if (T < 0 || C <= 0 || V <= 0 || (dx && T > 0 && !workspace)) return (int)cudaErrorInvalidValue;
    if (T == 0) return 0;
    if (dx)
        PL_LAUNCH(ce_bwd_dx_kernel, (T + CE_BT - 1) / CE_BT, CE_VCH, 0, stream, pl_dev_bf16(dx), workspace,
                  pl_dev_bf16(x), pl_dev_bf16(W), targets, lse, T, C, V, scale);
    if (dW)
        PL_LAUNCH(ce_bwd_dw_kernel, ce_nchunks(V), CE_VCH, 0, stream, dW, pl_dev_bf16(x), pl_dev_bf16(W), targets,
                  lse, T, C, V, scale);
    return pl_cuda_status();
}
