/* cpu_attention_bwd.c: the backward of causal GQA attention with sample boundaries on the CPU.
 *
 * With s_ij = q_i . k_j / sqrt(hd), p_ij = softmax_j(s_ij) over the keys query
 * i sees, out_i = sum_j p_ij v_j, and dp_ij = dout_i . v_j:
 *   D_i   = dout_i . out_i  (= sum_j p_ij dp_ij)
 *   ds_ij = p_ij (dp_ij - D_i)
 *   dq_i  = scale sum_j ds_ij k_j
 *   dk_j  = scale sum_(h,i) ds_ij q_i      (over the query heads h of j's kv head)
 *   dv_j  = sum_(h,i) p_ij dout_i
 *
 * Two passes in one parallel region, each output row owned by one thread:
 *   1. over (query head, query) pairs, as the forward splits them: recompute
 *      the scores and softmax exactly as the forward (pl_attention_query_bwd),
 *      write dq and keep the row's max m and 1/sum;
 *   2. over (kv head, key) pairs: loop over the group's query heads in order,
 *      then over the queries that see the key in query order, recomputing
 *      p_ij = expf(s_ij - m_i) / sum_i (the same bits as pass 1) and dp_ij.
 * Every sum runs in a fixed order, so the bits do not depend on the thread
 * count. Queries are taken four at a time through pl_dot4 / pl_axpy4, which
 * give the same bits as one at a time.
 *
 * Cost is about 3.5 times the forward's (two more dot products and two more
 * axpys per visible (query, key, head)). Memory: three floats per (query,
 * head) and one score row of Tk floats per thread. */
#include <math.h>
#include <stdlib.h>
#include <omp.h>
#include "../ops_math.h"
#include "cpu_int.h"

/* Pass 1 for one (query, head) pair; flatten inlines the math into each clone
 * (AVX2 and baseline, same C and no contraction, so the same bits). */
PL_AVX2_CLONES
static void attn_bwd_query(float *dq, float *m, float *inv, const float *q, const float *k, const float *v,
                           const float *dout, float D, long ld, int hd, float scale, int jend,
                           const int32_t *kseg, int32_t seg, float *s) {
    pl_attention_query_bwd(dq, m, inv, q, k, v, dout, D, ld, hd, scale, jend, kseg, seg, s);
}

/* Everything pass 2 reads, shared by all (kv head, key) pairs. */
typedef struct attn_bwd_args {
    const float *q, *dout, *rm, *rinv, *rD; /* rm, rinv, rD are (nh, Tq) */
    const int32_t *qlast, *qseg, *kseg;
    int Tq, Tk, nh, hd;
    long qld;
    float scale;
} attn_bwd_args;

/* Pass 2 for a batch of nb <= 4 visible (head, query) pairs of key j:
 * dv += p dout_i and dk += ds q_i, in batch order. */
static inline void key_batch(float *dk, float *dv, const float *kj, const float *vj, const attn_bwd_args *a,
                             const int *bh, const int *bi, int nb) {
    const float *qp[4], *dp[4];
    float pr[4], ds[4];
    for (int u = 0; u < nb; u++) {
        long off = (long)bi[u] * a->qld + (long)bh[u] * a->hd;
        qp[u] = a->q + off;
        dp[u] = a->dout + off;
    }
    if (nb == 4) {
        float sr[4], dr[4];
        pl_dot4(kj, qp[0], qp[1], qp[2], qp[3], a->hd, sr);
        pl_dot4(vj, dp[0], dp[1], dp[2], dp[3], a->hd, dr);
        for (int u = 0; u < 4; u++) {
            long r = (long)bh[u] * a->Tq + bi[u];
            pr[u] = expf(sr[u] * a->scale - a->rm[r]) * a->rinv[r];
            ds[u] = pr[u] * (dr[u] - a->rD[r]);
        }
        pl_axpy4(dv, pr, dp[0], dp[1], dp[2], dp[3], a->hd);
        pl_axpy4(dk, ds, qp[0], qp[1], qp[2], qp[3], a->hd);
        return;
    }
    for (int u = 0; u < nb; u++) {
        long r = (long)bh[u] * a->Tq + bi[u];
        float p = expf(pl_dot(kj, qp[u], a->hd) * a->scale - a->rm[r]) * a->rinv[r];
        float d = p * (pl_dot(vj, dp[u], a->hd) - a->rD[r]);
        pl_axpy(dv, p, dp[u], a->hd);
        pl_axpy(dk, d, qp[u], a->hd);
    }
}

/* Pass 2 for key j of kv head g, whose query heads are h0 .. h1-1: dk, dv (hd)
 * rows are overwritten. */
PL_AVX2_CLONES
static void attn_bwd_key(float *dk, float *dv, const float *kj, const float *vj, int j, int h0, int h1,
                         const attn_bwd_args *a) {
    for (int d = 0; d < a->hd; d++) dk[d] = dv[d] = 0.0f;
    const int segs = a->qseg && a->kseg;
    const int32_t seg = segs ? a->kseg[j] : 0;
    int bh[4], bi[4], nb = 0;
    for (int h = h0; h < h1; h++)
        for (int i = 0; i < a->Tq; i++) {
            /* query i sees key j iff j <= qlast[i] (and j < Tk) and the segments match */
            if (a->qlast[i] < j || (segs && a->qseg[i] != seg)) continue;
            bh[nb] = h;
            bi[nb] = i;
            if (++nb == 4) {
                key_batch(dk, dv, kj, vj, a, bh, bi, 4);
                nb = 0;
            }
        }
    if (nb) key_batch(dk, dv, kj, vj, a, bh, bi, nb);
    pl_scal(dk, a->scale, a->hd);
}

/* dq (Tq, nh*hd) = ; dk, dv (Tk, nkv*hd) = ; dout, q, out (Tq, nh*hd); k, v
 * (Tk, nkv*hd); qlast (Tq); qseg (Tq) and kseg (Tk) both NULL or both given.
 * See backend.h. */
void pl_cpu_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                          const float *v, const float *out, const int32_t *qlast, const int32_t *qseg,
                          const int32_t *kseg, int Tq, int Tk, int nh, int nkv, int hd) {
    if (nh <= 0 || hd <= 0 || Tq < 0 || Tk < 0) return;
    const int group = nkv > 0 ? nh / nkv : 1;
    const long qld = (long)nh * hd, kld = (long)nkv * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    const long npairs = (long)Tq * nh, nkeys = nkv > 0 ? (long)Tk * nkv : 0;
    const int segs = qseg && kseg;
    const int par = (double)npairs * (Tk > 0 ? Tk : 1) * hd >= 32768.0;
    const int nt = par ? omp_get_max_threads() : 1;
    const size_t srow = Tk > 0 ? (size_t)Tk : 1;
    /* per (head, query): m, 1/sum, D; then one score row per thread */
    float *buf = malloc(((size_t)3 * (size_t)(npairs > 0 ? npairs : 1) + (size_t)nt * srow) * sizeof(float));
    if (!buf) {
        for (long i = 0; i < npairs * hd; i++) dq[i] = NAN;
        for (long i = 0; i < nkeys * hd; i++) dk[i] = dv[i] = NAN;
        pl_cpu_fail(PL_ENOMEM, "attention backward: out of memory for its scratch");
        return;
    }
    float *rm = buf, *rinv = buf + npairs, *rD = buf + 2 * npairs, *scores = buf + 3 * npairs;
    const attn_bwd_args a = {q, dout, rm, rinv, rD, qlast, qseg, kseg, Tq, Tk, nh, hd, qld, scale};
#pragma omp parallel num_threads(nt) if (par)
    {
        float *s = scores + (size_t)omp_get_thread_num() * srow;
#pragma omp for schedule(static, 1)
        for (long p = 0; p < npairs; p++) {
            int h = (int)(p / Tq), i = (int)(p % Tq);
            int kh = h / group;
            int jend = qlast[i] + 1; /* keys 0..qlast[i] */
            if (jend > Tk) jend = Tk;
            if (jend < 0) jend = 0;
            if (nkv <= 0) jend = 0;
            const long off = i * qld + (long)h * hd;
            float D = pl_dot(dout + off, out + off, hd);
            rD[p] = D;
            attn_bwd_query(dq + off, &rm[p], &rinv[p], q + off, k + (long)kh * hd, v + (long)kh * hd, dout + off,
                           D, kld, hd, scale, jend, segs ? kseg : NULL, segs ? qseg[i] : 0, s);
        }
        /* implicit barrier: pass 2 reads every row's m, 1/sum and D */
#pragma omp for schedule(static, 1)
        for (long p = 0; p < nkeys; p++) {
            int g = (int)(p / Tk), j = (int)(p % Tk);
            int h0 = g * group, h1 = h0 + group < nh ? h0 + group : nh;
            const long off = (long)j * kld + (long)g * hd;
            attn_bwd_key(dk + off, dv + off, k + off, v + off, j, h0, h1, &a);
        }
    }
    free(buf);
}
