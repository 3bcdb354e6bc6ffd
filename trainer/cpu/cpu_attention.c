/* cpu_attention.c: causal GQA attention with sample boundaries on the CPU.
 *
 * Work is split over (head, query) pairs, head-major so that the pairs of one
 * key/value head sit together (its K and V rows stay in cache), handed out
 * round-robin (static schedule, chunk 1) so that the cheap early queries and
 * the expensive late ones of causal attention are spread evenly. Each pair's
 * output (hd floats) is computed by exactly one thread with
 * pl_attention_query, so the bits do not depend on the thread count. Each
 * thread owns one score row of Tk floats; nothing else is allocated.
 *
 * The pair function is built twice (target_clones: AVX2 and baseline x86-64),
 * picked once at load time by the CPU. Both run the same C with no FMA
 * contraction and no reassociation, so they give the same bits; the AVX2 one
 * keeps pl_dot4's four 8-lane accumulators in registers (T=256, nh=9, hd=64 on
 * one thread: 3.6 ms against 6.1 ms for the baseline build). */
#include <math.h>
#include <stdlib.h>
#include <omp.h>
#include "../ops_math.h"
#include "cpu_int.h"

/* One (query, head) pair; flatten inlines pl_attention_query into each clone. */
PL_AVX2_CLONES
static void attn_pair(float *out, const float *q, const float *k, const float *v, long ld, int hd, float scale,
                      int jend, const int32_t *kseg, int32_t seg, float *s) {
    pl_attention_query(out, q, k, v, ld, hd, scale, jend, kseg, seg, s);
}

/* q (Tq, nh*hd), k and v (Tk, nkv*hd), out (Tq, nh*hd); qlast (Tq); qseg (Tq)
 * and kseg (Tk) both NULL or both given. See backend.h. */
void pl_cpu_attention(float *out, const float *q, const float *k, const float *v,
                      const int32_t *qlast, const int32_t *qseg, const int32_t *kseg,
                      int Tq, int Tk, int nh, int nkv, int hd) {
    if (Tq <= 0 || nh <= 0 || hd <= 0) return;
    const int group = nkv > 0 ? nh / nkv : 1;
    const long qld = (long)nh * hd, kld = (long)nkv * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    const long npairs = (long)Tq * nh;
    const int segs = qseg && kseg;
    /* Work per pair is about (visible keys) * hd * 4 flops; stay on the
     * calling thread when the whole call is tiny. */
    const int par = (double)npairs * (Tk > 0 ? Tk : 1) * hd >= 32768.0;
    const int nt = par ? omp_get_max_threads() : 1;
    const size_t srow = Tk > 0 ? (size_t)Tk : 1;
    float *scores = malloc((size_t)nt * srow * sizeof(float));
    if (!scores) {
        for (long i = 0; i < npairs * hd; i++) out[i] = NAN;
        pl_cpu_fail(PL_ENOMEM, "attention: out of memory for %zu bytes of scores", (size_t)nt * srow * sizeof(float));
        return;
    }
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
            attn_pair(out + i * qld + (long)h * hd, q + i * qld + (long)h * hd,
                               k + (long)kh * hd, v + (long)kh * hd, kld, hd, scale, jend,
                               segs ? kseg : NULL, segs ? qseg[i] : 0, s);
        }
    }
    free(scores);
}
