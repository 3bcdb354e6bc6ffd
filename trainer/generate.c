/* generate.c: token sampling (greedy, temperature, top-k, top-p) and the
 * batched generation loop over a KV cache. */
#include "generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/rng.h"
#include "../core/units.h"
#include "plan.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* Candidates by descending probability, ties by lower id first: a strict
 * total order, so the k best are one set and sort one way. */
typedef struct cand { float p; int id; } cand;
static int cand_before(const cand *x, const cand *y) { return x->p > y->p || (x->p == y->p && x->id < y->id); }
static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    return cand_before(x, y) ? -1 : cand_before(y, x) ? 1 : 0;
}

/* Rearrange c[0..n) so that its k best (cand_before) are c[0..k), sorted:
 * quickselect (median-of-three pivots, deterministic) then a sort of k. */
static void select_best(cand *c, int n, int k) {
    int lo = 0, hi = n - 1;
    while (hi > lo) {
        int mid = lo + (hi - lo) / 2;
        /* median of c[lo], c[mid], c[hi] into c[mid] */
        if (cand_before(&c[mid], &c[lo])) { cand t = c[mid]; c[mid] = c[lo]; c[lo] = t; }
        if (cand_before(&c[hi], &c[lo])) { cand t = c[hi]; c[hi] = c[lo]; c[lo] = t; }
        if (cand_before(&c[hi], &c[mid])) { cand t = c[hi]; c[hi] = c[mid]; c[mid] = t; }
        cand pv = c[mid];
        int i = lo, j = hi;
        while (i <= j) { /* Hoare partition: before the pivot to the left */
            while (cand_before(&c[i], &pv)) i++;
            while (cand_before(&pv, &c[j])) j--;
            if (i <= j) { cand t = c[i]; c[i] = c[j]; c[j] = t; i++; j--; }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
    qsort(c, (size_t)k, sizeof *c, cand_cmp);
}

/* Sampling without sorting the vocabulary: top-k selects its k candidates
 * (O(V)) and sorts those; top-p alone selects 64, 256, ... best until their
 * probabilities reach top_p; temperature alone walks the ids in order. With
 * top-k the draws are those of a full sort; without it the probabilities are
 * normalized over the ids in index order. */
int pl_sample(const float *logits, int V, const pl_sampler *s, uint64_t stream, uint64_t index,
              float *scratch) {
    if (s->temperature <= 0 || s->top_k == 1) return argmax(logits, V);
    cand *c = (cand *)scratch; /* 2*V floats hold V (float, int) pairs */
    float mx = logits[argmax(logits, V)];
    for (int i = 0; i < V; i++) {
        c[i].id = i;
        c[i].p = (logits[i] - mx) / s->temperature;
    }
    const int nucleus = s->top_p > 0 && s->top_p < 1;
    const double u = pl_rng_uniform_d(s->seed, stream, index);
    if (s->top_k > 0 && s->top_k < V) {
        int n = s->top_k;
        select_best(c, V, n);
        double sum = 0;
        for (int i = 0; i < n; i++) {
            c[i].p = expf(c[i].p);
            sum += c[i].p;
        }
        for (int i = 0; i < n; i++) c[i].p = (float)(c[i].p / sum);
        sum = 1;
        if (nucleus) {
            double cum = 0;
            int keep = n;
            for (int i = 0; i < n; i++) {
                cum += c[i].p;
                if (cum >= s->top_p) { keep = i + 1; break; }
            }
            n = keep;
            sum = cum > 0 ? cum : 1;
        }
        double r = u * sum, acc = 0;
        for (int i = 0; i < n; i++) {
            acc += c[i].p;
            if (r < acc) return c[i].id;
        }
        return c[n - 1].id;
    }
    /* the whole vocabulary: weights e^p, normalized over the ids in order */
    double z = 0;
    for (int i = 0; i < V; i++) {
        c[i].p = expf(c[i].p);
        z += c[i].p;
    }
    if (!nucleus) {
        double r = u * z, acc = 0;
        for (int i = 0; i < V; i++) {
            acc += c[i].p;
            if (r < acc) return c[i].id;
        }
        return V - 1;
    }
    /* the nucleus: the fewest best ids whose probabilities reach top_p */
    for (int k = 64;; k *= 4) {
        if (k > V) k = V;
        select_best(c, V, k);
        double cum = 0;
        int keep = 0;
        for (int i = 0; i < k; i++) {
            cum += c[i].p / z;
            if (cum >= s->top_p) { keep = i + 1; break; }
        }
        if (keep || k == V) {
            if (!keep) keep = k; /* rounding: everything */
            double r = u * cum, acc = 0;
            for (int i = 0; i < keep; i++) {
                acc += c[i].p / z;
                if (r < acc) return c[i].id;
            }
            return c[keep - 1].id;
        }
    }
}

static int is_stop(const pl_gen_opts *o, int32_t t) {
    for (int i = 0; i < o->n_stop; i++)
        if (o->stop[i] == t) return 1;
    return 0;
}

int pl_generate(pl_model *m, int n, const int32_t *const *prompts, const int *n_prompt,
                const pl_gen_opts *o, int32_t **out, int *n_out, pl_gen_stats *stats, pl_err *err) {
    const int V = m->cfg.vocab;
    int max_prompt = 0, rc = 0;
    for (int i = 0; i < n; i++) {
        out[i] = NULL;
        n_out[i] = 0;
        if (n_prompt[i] <= 0) return pl_err_set(err, PL_EINVAL, "generate: prompt %d is empty (give at least a BOS token)", i);
        if (n_prompt[i] > max_prompt) max_prompt = n_prompt[i];
    }
    int n_ctx = o->n_ctx > 0 ? o->n_ctx : max_prompt + (o->max_tokens > 0 ? o->max_tokens : 0);
    if (max_prompt > n_ctx)
        return pl_err_set(err, PL_EINVAL, "generate: a prompt of %d tokens does not fit the context of %d", max_prompt, n_ctx);
    pl_kvcache kv;
    if ((rc = pl_kvcache_init(&kv, m, n, n_ctx, err))) return rc;
    float *logits = malloc((size_t)n * V * sizeof(float));
    float *scratch = malloc((size_t)2 * V * sizeof(float));
    int *seqs = malloc((size_t)n * sizeof *seqs), *ntok = malloc((size_t)n * sizeof *ntok);
    int *active = malloc((size_t)n * sizeof *active);
    int32_t *next = malloc((size_t)n * sizeof *next);
    const int32_t **toks = malloc((size_t)n * sizeof *toks);
    for (int i = 0; i < n && !rc; i++) {
        out[i] = malloc((size_t)(o->max_tokens > 0 ? o->max_tokens : 1) * sizeof(int32_t));
        if (!out[i]) rc = PL_ENOMEM;
    }
    if (rc || !logits || !scratch || !seqs || !ntok || !active || !next || !toks) {
        rc = pl_err_set(err, PL_ENOMEM, "generate: out of memory");
        goto done;
    }
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        seqs[i] = i;
        toks[i] = prompts[i];
        ntok[i] = n_prompt[i];
        active[i] = o->max_tokens > 0;
    }
    if ((rc = pl_model_decode(m, &kv, n, seqs, toks, ntok, logits, NULL, err))) goto done;
    double t1 = now_s();
    if (stats) {
        stats->prompt_tokens = 0;
        for (int i = 0; i < n; i++) stats->prompt_tokens += n_prompt[i];
        stats->prompt_seconds = t1 - t0;
        stats->gen_tokens = 0;
        stats->decoded_tokens = 0;
    }
    /* logits row k belongs to the k-th sequence of the last decode call */
    int n_batch = n;
    for (int step = 0;; step++) {
        int k = 0;
        for (int b = 0; b < n_batch; b++) {
            int i = seqs[b];
            int32_t t = pl_sample(logits + (size_t)b * V, V, &o->sampler, o->stream0 + (uint64_t)i, (uint64_t)step,
                                  scratch);
            if (is_stop(o, t)) { active[i] = 0; continue; }
            out[i][n_out[i]++] = t;
            if (stats) stats->gen_tokens++;
            if (o->cb && o->cb(o->cb_ctx, i, t)) { active[i] = 0; continue; }
            if (n_out[i] >= o->max_tokens || kv.len[i] >= n_ctx) { active[i] = 0; continue; }
            next[k] = t;
            seqs[k] = i;
            k++;
        }
        if (k == 0) break;
        for (int b = 0; b < k; b++) {
            toks[b] = &next[b];
            ntok[b] = 1;
        }
        n_batch = k;
        if (stats) stats->decoded_tokens += k;
        if ((rc = pl_model_decode(m, &kv, k, seqs, toks, ntok, logits, NULL, err))) goto done;
    }
    if (stats) stats->gen_seconds = now_s() - t1;
done:
    if (rc)
        for (int i = 0; i < n; i++) { free(out[i]); out[i] = NULL; n_out[i] = 0; }
    free(logits); free(scratch); free(seqs); free(ntok); free(active); free(next); free(toks);
    pl_kvcache_free(&kv);
    return rc;
}

int pl_generate_check_device(const pl_model *m, int n, int prefill, int n_ctx, pl_err *err) {
    const pl_backend *be = m->be;
    if (!be || strcmp(be->name, "cuda") || n < 1 || n_ctx < 1) return PL_OK;
    const double mem = (double)pl_backend_mem_total(be);
    if (!(mem > 0)) return PL_OK; /* the backend could not say: its allocations report their own failure */
    pl_train_shape s = {.seq_len = n_ctx, .micro_batch = 1, .frozen_base = 1, .cuda = 1,
                        .layer_dtype = m->layers[0].w_gate.dtype, .embd_dtype = m->tok_embd.dtype,
                        .head_dtype = m->lm_head.dtype};
    pl_gen_plan g;
    pl_err pe = {0};
    if (pl_gen_plan_make(&m->cfg, &s, n, n_ctx, prefill, &g, &pe)) return PL_OK; /* unplannable: the run reports */
    if ((double)g.need <= mem) return PL_OK;
    char bn[32], bm[32], bw[32], bk[32], ba[32], bs[32], br[32];
    return pl_err_set(err, PL_ERANGE,
                      "need %s of device memory (weights %s, KV cache %s, activations %s, workspace %s, the CUDA "
                      "runtime's reserve %s), the device has %s",
                      pl_fmt_bytes((double)g.need, bn, sizeof bn),
                      pl_fmt_bytes((double)g.dev_weights, bw, sizeof bw), pl_fmt_bytes((double)g.kv, bk, sizeof bk),
                      pl_fmt_bytes((double)g.activations, ba, sizeof ba), pl_fmt_bytes((double)g.workspace, bs, sizeof bs),
                      pl_fmt_bytes((double)g.runtime, br, sizeof br), pl_fmt_bytes(mem, bm, sizeof bm));
}
