/* eval_text.c: perplexity on a text file and the KL divergence of a
 * variant's next-token distributions from a reference model's, chunked as
 * llama.cpp's llama-perplexity does (eval.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../datasets/tokenizer.h"
#include "eval.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *sorted, int64_t n, double p) {
    if (n <= 0) return NAN;
    double r = p * (double)(n - 1);
    int64_t lo = (int64_t)floor(r);
    int64_t hi = lo + 1 < n ? lo + 1 : lo;
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (r - (double)lo);
}

/* log_softmax of one row into out (double) ; returns the argmax */
static int log_softmax(const float *x, int V, double *out) {
    int am = 0;
    for (int v = 1; v < V; v++)
        if (x[v] > x[am]) am = v;
    double mx = x[am], z = 0;
    for (int v = 0; v < V; v++) z += exp((double)x[v] - mx);
    double lz = mx + log(z);
    for (int v = 0; v < V; v++) out[v] = (double)x[v] - lz;
    return am;
}

int pl_eval_text(pl_model *m, const pl_tokenizer *tok, pl_model *ref, const char *text, size_t len, int n_ctx,
                 const pl_eval_opts *o, pl_text_result *out, pl_err *err) {
    memset(out, 0, sizeof *out);
    double t0 = now_s();
    int V = m->cfg.vocab;
    if (ref && ref->cfg.vocab != V)
        return pl_err_set(err, PL_EINVAL, "kl: the reference has %d tokens in its vocabulary, the model %d", ref->cfg.vocab, V);
    if (n_ctx < 4) return pl_err_set(err, PL_EINVAL, "--ctx %d: at least 4 tokens", n_ctx);
    if (n_ctx > m->cfg.max_seq || (ref && n_ctx > ref->cfg.max_seq))
        return pl_err_set(err, PL_EINVAL, "--ctx %d: more than the model's context (%d)", n_ctx, m->cfg.max_seq);
    int32_t *ids = NULL;
    int n = 0, bos = pl_tokenizer_add_bos(tok);
    int rc = pl_tokenizer_encode(tok, text, len, bos, 0, &ids, &n, err);
    if (rc) return rc;
    int n_chunks = n / n_ctx, first = n_ctx / 2;
    if (n_chunks == 0) {
        free(ids);
        return pl_err_set(err, PL_EINVAL, "the text has %d tokens, fewer than one chunk of --ctx %d", n, n_ctx);
    }
    int per = n_ctx - 1 - first;
    int64_t total = (int64_t)n_chunks * per;
    float *lg = malloc((size_t)n_ctx * V * sizeof *lg), *lr = ref ? malloc((size_t)n_ctx * V * sizeof *lr) : NULL;
    int32_t *chunk = malloc((size_t)n_ctx * sizeof *chunk);
    double *nll = malloc((size_t)total * sizeof *nll), *nll_ref = ref ? malloc((size_t)total * sizeof *nll_ref) : NULL;
    double *kl = ref ? malloc((size_t)total * sizeof *kl) : NULL, *same = ref ? malloc((size_t)total * sizeof *same) : NULL;
    if (!lg || !chunk || !nll || (ref && (!lr || !nll_ref || !kl || !same))) {
        rc = pl_err_set(err, PL_ENOMEM, "eval: out of memory for chunks of %d tokens", n_ctx);
        goto out;
    }
    for (int c = 0; c < n_chunks && !rc; c++) {
        memcpy(chunk, ids + (size_t)c * n_ctx, (size_t)n_ctx * sizeof *chunk);
        if (bos && pl_tokenizer_bos(tok) >= 0) chunk[0] = pl_tokenizer_bos(tok);
        if ((rc = pl_model_forward(m, chunk, NULL, NULL, n_ctx, lg, err))) break;
        if (ref && (rc = pl_model_forward(ref, chunk, NULL, NULL, n_ctx, lr, err))) break;
#pragma omp parallel
        {
            double *a = malloc((size_t)V * sizeof *a), *b = ref ? malloc((size_t)V * sizeof *b) : NULL;
#pragma omp for schedule(dynamic, 4)
            for (int j = 0; j < per; j++) {
                if (!a || (ref && !b)) continue;
                int t = first + j;
                int64_t k = (int64_t)c * per + j;
                int am = log_softmax(lg + (size_t)t * V, V, a);
                nll[k] = -a[chunk[t + 1]];
                if (ref) {
                    int bm = log_softmax(lr + (size_t)t * V, V, b);
                    nll_ref[k] = -b[chunk[t + 1]];
                    double s = 0;
                    for (int v = 0; v < V; v++) s += exp(b[v]) * (b[v] - a[v]);
                    kl[k] = s;
                    same[k] = am == bm;
                }
            }
            free(a);
            free(b);
        }
        if (o && o->progress) o->progress(o->user, c + 1, n_chunks);
    }
    if (rc) goto out;
    out->tokens = total;
    out->chunks = n_chunks;
    double mu, se;
    pl_eval_mean_se(nll, total, &mu, &se);
    out->ppl = exp(mu);
    out->ppl_se = out->ppl * se;
    if (ref) {
        pl_eval_mean_se(nll_ref, total, &mu, &se);
        out->ppl_ref = exp(mu);
        out->ppl_ref_se = out->ppl_ref * se;
        pl_eval_mean_se(kl, total, &out->kl_mean, &out->kl_se);
        pl_eval_mean_se(same, total, &out->same_top, &out->same_top_se);
        qsort(kl, (size_t)total, sizeof *kl, cmp_d);
        out->kl_p50 = pct(kl, total, 0.50);
        out->kl_p90 = pct(kl, total, 0.90);
        out->kl_p95 = pct(kl, total, 0.95);
        out->kl_p99 = pct(kl, total, 0.99);
        out->kl_max = kl[total - 1];
    }
out:
    free(ids);
    free(lg);
    free(lr);
    free(chunk);
    free(nll);
    free(nll_ref);
    free(kl);
    free(same);
    out->seconds = now_s() - t0;
    return rc;
}
