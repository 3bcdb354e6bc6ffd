/* eval_loss.c: held-out loss and perplexity on a sharded dataset, and
 * merging an adapter for evaluation (eval.h). Samples are packed into
 * rows of segments (no attention across samples) and run through the
 * model; token t+1 is scored when its loss_mask is 1. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/rng.h"
#include "../datasets/loader.h"
#include "export.h"
#include "model_lora.h"
#include "eval.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

#define SUBSET_STREAM 0x6576616c7375ULL /* as eval_task.c */

/* Rows [0, T) of one packed batch: accumulate -log p over scored targets. */
static int score_rows(pl_model *m, const int32_t *ids, const int32_t *pos, const int32_t *seg, const int32_t *tgt, int T,
                      double *sum, double *sumsq, int64_t *n, pl_err *err) {
    int V = m->cfg.vocab;
    float *logits = malloc((size_t)T * V * sizeof *logits);
    if (!logits) return pl_err_set(err, PL_ENOMEM, "eval: out of memory for %d rows of logits", T);
    int rc = pl_model_forward(m, ids, pos, seg, T, logits, err);
    double s = 0, ss = 0;
    int64_t k = 0;
    if (!rc) {
#pragma omp parallel for reduction(+ : s, ss, k) schedule(dynamic, 8)
        for (int t = 0; t < T; t++) {
            if (tgt[t] < 0) continue;
            const float *x = logits + (size_t)t * V;
            float mx = x[0];
            for (int v = 1; v < V; v++) mx = x[v] > mx ? x[v] : mx;
            double z = 0;
            for (int v = 0; v < V; v++) z += exp((double)x[v] - mx);
            double nll = -((double)x[tgt[t]] - mx - log(z));
            s += nll;
            ss += nll * nll;
            k++;
        }
    }
    *sum += s;
    *sumsq += ss;
    *n += k;
    free(logits);
    return rc;
}

int pl_eval_loss_data(pl_model *m, const char *dir, int64_t limit, uint64_t seed, const pl_eval_opts *o,
                      pl_loss_result *out, pl_err *err) {
    memset(out, 0, sizeof *out);
    double t0 = now_s();
    int S = m->cfg.max_seq > 4096 ? 4096 : m->cfg.max_seq;
    int budget = o && o->batch_tokens > 0 ? o->batch_tokens : 1024;
    if (budget < S) budget = S;
    pl_loader_opts lo = {.seq_len = S, .batch_rows = 1, .seed = seed};
    pl_loader *l = NULL;
    int rc = pl_loader_open(&l, dir, &lo, NULL, err);
    if (rc) return rc;
    int64_t N = pl_loader_samples(l), take = limit > 0 && limit < N ? limit : N;
    int64_t *pick = malloc((size_t)(N ? N : 1) * sizeof *pick);
    int32_t *ids = malloc((size_t)budget * sizeof *ids), *pos = malloc((size_t)budget * sizeof *pos);
    int32_t *seg = malloc((size_t)budget * sizeof *seg), *tgt = malloc((size_t)budget * sizeof *tgt);
    int32_t *tok = NULL;
    uint8_t *mask = NULL;
    if (!pick || !ids || !pos || !seg || !tgt) { rc = pl_err_set(err, PL_ENOMEM, "eval: out of memory"); goto out; }
    for (int64_t i = 0; i < N; i++) pick[i] = i;
    if (take < N) {
        for (int64_t i = 0; i < take; i++) {
            int64_t j = i + (int64_t)pl_rng_below(seed, SUBSET_STREAM, (uint64_t)i, (uint64_t)(N - i));
            int64_t x = pick[i]; pick[i] = pick[j]; pick[j] = x;
        }
        qsort(pick, (size_t)take, sizeof *pick, cmp_i64);
    }
    double sum = 0, sumsq = 0;
    int64_t n = 0;
    int T = 0, nseg = 0;
    for (int64_t q = 0; q < take && !rc; q++) {
        int64_t len = pl_loader_sample_len(l, pick[q]);
        int32_t *nt = realloc(tok, (size_t)(len > 0 ? len : 1) * sizeof *tok);
        uint8_t *nm = realloc(mask, (size_t)(len > 0 ? len : 1));
        if (!nt || !nm) { free(nt ? nt : tok); free(nm ? nm : mask); tok = NULL; mask = NULL; rc = pl_err_set(err, PL_ENOMEM, "eval: out of memory"); break; }
        tok = nt;
        mask = nm;
        if ((rc = pl_loader_sample(l, pick[q], tok, mask, err))) break;
        int L = len > S ? S : (int)len;
        if (L < 2) continue;
        if (T + L > budget) {
            rc = score_rows(m, ids, pos, seg, tgt, T, &sum, &sumsq, &n, err);
            T = 0;
            nseg = 0;
            if (rc) break;
        }
        nseg++;
        for (int t = 0; t < L; t++) {
            ids[T + t] = tok[t];
            pos[T + t] = t;
            seg[T + t] = nseg;
            tgt[T + t] = t + 1 < L && mask[t + 1] ? tok[t + 1] : -1;
        }
        T += L;
        out->samples++;
        if (o && o->progress) o->progress(o->user, q + 1, take);
    }
    if (!rc && T > 0) rc = score_rows(m, ids, pos, seg, tgt, T, &sum, &sumsq, &n, err);
    if (!rc) {
        if (n == 0) rc = pl_err_set(err, PL_EINVAL, "%s: no scored tokens (every loss_mask is 0)", dir);
        else {
            out->tokens = n;
            out->loss = sum / (double)n;
            double var = n > 1 ? (sumsq - sum * sum / (double)n) / (double)(n - 1) : 0;
            out->loss_se = sqrt(var > 0 ? var : 0) / sqrt((double)n);
            out->ppl = exp(out->loss);
            out->ppl_se = out->ppl * out->loss_se;
        }
    }
out:
    free(pick);
    free(ids);
    free(pos);
    free(seg);
    free(tgt);
    free(tok);
    free(mask);
    pl_loader_close(l);
    out->seconds = now_s() - t0;
    return rc;
}

int pl_eval_apply_adapter(pl_model *m, const char *dir, pl_err *err) {
    char p[4200];
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    FILE *f = fopen(p, "rb");
    char *ad = NULL, *mp = NULL;
    if (f) fclose(f);
    else if (pl_run_adapter(dir, &ad, &mp, err) == 0) dir = ad;
    else return pl_err_prefix(err, "--adapter %s", dir);
    pl_lora *l = NULL;
    int rc = pl_lora_load_peft(&l, m, dir, err);
    if (!rc) rc = pl_export_writable(m, err);
    if (!rc) rc = pl_lora_merge(m, l, err);
    pl_lora_free(l);
    free(ad);
    free(mp);
    return rc;
}
