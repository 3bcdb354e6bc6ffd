/* eval_mc.c: multiple-choice scoring by log-likelihood (eval.h).
 *
 * Work is cut into groups: the token sequences of one item's choices under
 * one scoring. A group's shared prefix (D tokens: the longest common prefix,
 * at most where scoring starts) runs once; its KV cache is copied to a cache
 * slot per choice, and the choices' remaining tokens run together. Groups
 * are packed into batches of about batch_tokens tokens:
 *   decode 1: the B prefixes, logits at each prefix's last token (B, vocab)
 *   copy:     prefix KV -> each choice's slot
 *   decode 2: every choice's tokens D..n-2, logits at all of them
 * Log-probability of token t of a choice: log_softmax(logits at t-1)[tok_t],
 * for t in [D, n), in double. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../datasets/tokenizer.h"
#include "eval.h"

typedef struct group {
    int n;              /* sequences (choices) */
    int32_t **tok;      /* (n)(len[i]) */
    int *len;
    int D;              /* shared prefix length, >= 1 */
    double **lp;        /* (n)(len[i] - D): log p of token D + k */
} group;

static void group_free(group *g) {
    for (int i = 0; i < g->n; i++) {
        if (g->tok) free(g->tok[i]);
        if (g->lp) free(g->lp[i]);
    }
    free(g->tok);
    free(g->len);
    free(g->lp);
    memset(g, 0, sizeof *g);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Set g->D from the sequences and the first scored position of each. */
static int group_prefix(group *g, int score_from) {
    int D = g->len[0];
    for (int i = 1; i < g->n; i++) {
        int k = 0;
        while (k < D && k < g->len[i] && g->tok[i][k] == g->tok[0][k]) k++;
        D = k;
    }
    if (D > score_from) D = score_from;
    g->D = D;
    return D;
}

static int tok_text(const pl_tokenizer *tok, const char *a, size_t na, const char *b, size_t nb, int bos,
                    int32_t **ids, int *n, pl_err *err) {
    char *s = malloc(na + nb + 1);
    if (!s) return pl_err_set(err, PL_ENOMEM, "eval: out of memory");
    memcpy(s, a, na);
    memcpy(s + na, b, nb);
    s[na + nb] = 0;
    int rc = pl_tokenizer_encode(tok, s, na + nb, bos, 0, ids, n, err);
    free(s);
    return rc;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* lm-eval's requests for one item: ctx = tok(context without trailing
 * whitespace); choice i = ctx + tok(context' + ws + " " + choice)[len(ctx):],
 * both encoded with the vocabulary's own BOS setting (lm-eval's Hugging
 * Face model encodes with the tokenizer's defaults). */
static int build_lmeval(const pl_tokenizer *tok, const pl_mc_item *it, group *g, int *score_from, pl_err *err) {
    size_t cl = strlen(it->context), keep = cl;
    while (keep > 0 && is_ws(it->context[keep - 1])) keep--;
    int32_t *ctx = NULL;
    int nctx = 0, rc = PL_OK;
    g->n = it->n_choices;
    g->tok = calloc((size_t)g->n, sizeof *g->tok);
    g->len = calloc((size_t)g->n, sizeof *g->len);
    g->lp = calloc((size_t)g->n, sizeof *g->lp);
    if (!g->tok || !g->len || !g->lp) return pl_err_set(err, PL_ENOMEM, "eval: out of memory");
    int bos = pl_tokenizer_add_bos(tok);
    if ((rc = tok_text(tok, it->context, keep, "", 0, bos, &ctx, &nctx, err))) return rc;
    int start = -1;
    if (nctx == 0) { /* lm-eval: an empty context is the prefix token */
        start = pl_tokenizer_bos(tok) >= 0 ? pl_tokenizer_bos(tok) : pl_tokenizer_eos(tok);
        if (start < 0) { free(ctx); return pl_err_set(err, PL_EINVAL, "eval: item %lld: empty context and the vocabulary has no BOS/EOS", (long long)it->index); }
    }
    for (int c = 0; c < g->n && !rc; c++) {
        size_t nl = strlen(it->choices[c]);
        size_t tl = (cl - keep) + 1 + nl;
        char *cont = malloc(tl + 1);
        if (!cont) { rc = pl_err_set(err, PL_ENOMEM, "eval: out of memory"); break; }
        memcpy(cont, it->context + keep, cl - keep);
        cont[cl - keep] = ' ';
        memcpy(cont + cl - keep + 1, it->choices[c], nl + 1);
        int32_t *whole = NULL, *ce = NULL;
        int nw = 0, nce = 0;
        if (nctx == 0) rc = tok_text(tok, cont, tl, "", 0, 0, &ce, &nce, err);
        else rc = tok_text(tok, it->context, keep, cont, tl, bos, &whole, &nw, err);
        free(cont);
        if (rc) break;
        int pre = nctx ? nctx : 1;
        int ncont = nctx ? (nw > nctx ? nw - nctx : 0) : nce;
        const int32_t *src = nctx ? whole + nctx : ce;
        g->len[c] = pre + ncont;
        g->tok[c] = malloc((size_t)(g->len[c] > 0 ? g->len[c] : 1) * sizeof(int32_t));
        if (!g->tok[c]) rc = pl_err_set(err, PL_ENOMEM, "eval: out of memory");
        else {
            if (nctx) memcpy(g->tok[c], ctx, (size_t)nctx * sizeof(int32_t));
            else g->tok[c][0] = start;
            memcpy(g->tok[c] + pre, src, (size_t)ncont * sizeof(int32_t));
        }
        free(whole);
        free(ce);
    }
    *score_from = nctx ? nctx : 1;
    free(ctx);
    return rc;
}

/* llama.cpp's: [BOS] + tok(context + " " + choice). */
static int build_llamacpp(const pl_tokenizer *tok, const pl_mc_item *it, group *g, pl_err *err) {
    g->n = it->n_choices;
    g->tok = calloc((size_t)g->n, sizeof *g->tok);
    g->len = calloc((size_t)g->n, sizeof *g->len);
    g->lp = calloc((size_t)g->n, sizeof *g->lp);
    if (!g->tok || !g->len || !g->lp) return pl_err_set(err, PL_ENOMEM, "eval: out of memory");
    int bos = pl_tokenizer_add_bos(tok);
    size_t cl = strlen(it->context);
    for (int c = 0; c < g->n; c++) {
        size_t nl = strlen(it->choices[c]);
        char *s = malloc(cl + nl + 2);
        if (!s) return pl_err_set(err, PL_ENOMEM, "eval: out of memory");
        memcpy(s, it->context, cl);
        s[cl] = ' ';
        memcpy(s + cl + 1, it->choices[c], nl + 1);
        int rc = pl_tokenizer_encode(tok, s, cl + nl + 1, bos, 0, &g->tok[c], &g->len[c], err);
        free(s);
        if (rc) return rc;
    }
    return PL_OK;
}

static int same_tokens(const group *a, const group *b) {
    if (a->n != b->n) return 0;
    for (int i = 0; i < a->n; i++)
        if (a->len[i] != b->len[i] || memcmp(a->tok[i], b->tok[i], (size_t)a->len[i] * sizeof(int32_t))) return 0;
    return 1;
}

/* log_softmax(x)[t] in double. */
static double logp_of(const float *x, int V, int t) {
    float mx = x[0];
    for (int v = 1; v < V; v++) mx = x[v] > mx ? x[v] : mx;
    double s = 0;
    for (int v = 0; v < V; v++) s += exp((double)x[v] - mx);
    return (double)x[t] - mx - log(s);
}

static void kv_copy(pl_kvcache *kv, int src, int dst) { pl_kvcache_copy_seq(kv, src, dst); }

/* Run groups g[0..ng): fill every g->lp. */
static int run_batch(pl_model *m, group **g, int ng, int64_t *tokens, pl_err *err) {
    int V = m->cfg.vocab, nseq = 0, nctx = 1, nsuf = 0, rows = 0;
    for (int j = 0; j < ng; j++)
        for (int i = 0; i < g[j]->n; i++) {
            nseq++;
            if (g[j]->len[i] > nctx) nctx = g[j]->len[i];
            if (g[j]->len[i] - 1 > g[j]->D) { nsuf++; rows += g[j]->len[i] - 1 - g[j]->D; }
        }
    if (nctx > m->cfg.max_seq)
        return pl_err_set(err, PL_ERANGE, "eval: a choice has %d tokens with its context, the model's context is %d", nctx, m->cfg.max_seq);
    pl_kvcache kv;
    int rc = pl_kvcache_init(&kv, m, nseq, nctx, err);
    if (rc) return rc;
    int *seqs = malloc((size_t)(nseq > 0 ? nseq : 1) * sizeof *seqs);
    int *ntk = malloc((size_t)(nseq > 0 ? nseq : 1) * sizeof *ntk);
    const int32_t **tk = malloc((size_t)(nseq > 0 ? nseq : 1) * sizeof *tk);
    float *last = malloc((size_t)ng * V * sizeof *last);
    float *all = rows ? malloc((size_t)rows * V * sizeof *all) : NULL;
    if (!seqs || !ntk || !tk || !last || (rows && !all)) { rc = pl_err_set(err, PL_ENOMEM, "eval: out of memory for a batch of %d rows", rows); goto out; }
    /* slot of (group j, choice i): first slot of group j + i */
    for (int j = 0, s = 0; j < ng; s += g[j]->n, j++) {
        seqs[j] = s;
        tk[j] = g[j]->tok[0];
        ntk[j] = g[j]->D;
        *tokens += g[j]->D;
    }
    if ((rc = pl_model_decode(m, &kv, ng, seqs, tk, ntk, last, NULL, err))) goto out;
    for (int j = 0, s = 0; j < ng; s += g[j]->n, j++)
        for (int i = 1; i < g[j]->n; i++) kv_copy(&kv, s, s + i);
    for (int j = 0; j < ng; j++)
        for (int i = 0; i < g[j]->n; i++) {
            int k = g[j]->len[i] - g[j]->D;
            g[j]->lp[i] = malloc((size_t)(k > 0 ? k : 1) * sizeof(double));
            if (!g[j]->lp[i]) { rc = pl_err_set(err, PL_ENOMEM, "eval: out of memory"); goto out; }
        }
    /* first token after the prefix: from the prefix's last logits */
    int nfirst = 0;
    for (int j = 0; j < ng; j++) nfirst += g[j]->n;
#pragma omp parallel for schedule(dynamic, 1)
    for (int q = 0; q < nfirst; q++) {
        int j = 0, i = q;
        while (i >= g[j]->n) { i -= g[j]->n; j++; }
        if (g[j]->len[i] > g[j]->D) g[j]->lp[i][0] = logp_of(last + (size_t)j * V, V, g[j]->tok[i][g[j]->D]);
    }
    if (nsuf) {
        int n = 0;
        for (int j = 0, s = 0; j < ng; s += g[j]->n, j++)
            for (int i = 0; i < g[j]->n; i++)
                if (g[j]->len[i] - 1 > g[j]->D) {
                    seqs[n] = s + i;
                    tk[n] = g[j]->tok[i] + g[j]->D;
                    ntk[n] = g[j]->len[i] - 1 - g[j]->D;
                    *tokens += ntk[n];
                    n++;
                }
        if ((rc = pl_model_decode(m, &kv, n, seqs, tk, ntk, NULL, all, err))) goto out;
        /* row r of `all` is (group, choice, k): predicts token D + 1 + k */
        int *rj = malloc((size_t)rows * 3 * sizeof *rj);
        if (!rj) { rc = pl_err_set(err, PL_ENOMEM, "eval: out of memory"); goto out; }
        int r = 0;
        for (int j = 0; j < ng; j++)
            for (int i = 0; i < g[j]->n; i++)
                for (int k = 0; k < g[j]->len[i] - 1 - g[j]->D; k++, r++) { rj[3 * r] = j; rj[3 * r + 1] = i; rj[3 * r + 2] = k; }
#pragma omp parallel for schedule(dynamic, 4)
        for (int q = 0; q < rows; q++) {
            group *gg = g[rj[3 * q]];
            int i = rj[3 * q + 1], k = rj[3 * q + 2];
            gg->lp[i][k + 1] = logp_of(all + (size_t)q * V, V, gg->tok[i][gg->D + 1 + k]);
        }
        free(rj);
    }
out:
    free(seqs);
    free(ntk);
    free(tk);
    free(last);
    free(all);
    pl_kvcache_free(&kv);
    return rc;
}

void pl_eval_mean_se(const double *x, int64_t n, double *mean, double *se) {
    double s = 0, ss = 0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    double mu = n ? s / (double)n : NAN;
    for (int64_t i = 0; i < n; i++) ss += (x[i] - mu) * (x[i] - mu);
    *mean = mu;
    *se = n > 1 ? sqrt(ss / (double)(n - 1)) / sqrt((double)n) : NAN;
}

/* Characters (UTF-8 code points) of s, as Python's len counts them. */
static int64_t n_chars(const char *s) {
    int64_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) n++;
    return n;
}

static int argmax(const double *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

void pl_mc_scores_free(pl_mc_scores *s) {
    if (!s) return;
    free(s->off);
    free(s->ll);
    free(s->n_tok);
    free(s->lc_mean);
    free(s->pred);
    free(s->pred_norm);
    free(s->pred_lc);
    memset(s, 0, sizeof *s);
}

/* One item's scores from its groups. */
static void item_scores(const pl_mc_item *it, const group *le, int score_from, const group *lc, pl_mc_scores *s,
                        int64_t i) {
    int64_t o = s->off[i];
    for (int c = 0; c < it->n_choices; c++) {
        double sum = 0;
        for (int t = score_from; t < le->len[c]; t++) sum += le->lp[c][t - le->D];
        s->ll[o + c] = sum;
        s->n_tok[o + c] = le->len[c] - score_from;
    }
    /* llama.cpp: mean over the tokens after the choices' common prefix */
    int P = lc->len[0];
    for (int c = 1; c < lc->n; c++) {
        int k = 0;
        while (k < P && k < lc->len[c] && lc->tok[c][k] == lc->tok[0][k]) k++;
        P = k;
    }
    if (P < lc->D) P = lc->D;
    for (int c = 0; c < it->n_choices; c++) {
        double sum = 0;
        int cnt = 0;
        for (int t = P; t < lc->len[c]; t++, cnt++) sum += lc->lp[c][t - lc->D];
        s->lc_mean[o + c] = cnt ? sum / cnt : -INFINITY;
    }
    double *norm = malloc((size_t)it->n_choices * sizeof *norm);
    if (norm) {
        for (int c = 0; c < it->n_choices; c++) norm[c] = s->ll[o + c] / (double)n_chars(it->choices[c]);
        s->pred_norm[i] = argmax(norm, it->n_choices);
        free(norm);
    }
    s->pred[i] = argmax(s->ll + o, it->n_choices);
    s->pred_lc[i] = argmax(s->lc_mean + o, it->n_choices);
}

int pl_mc_score(pl_model *m, const pl_tokenizer *tok, const pl_mc_task *t, const pl_eval_opts *o, pl_mc_scores *s,
                pl_err *err) {
    memset(s, 0, sizeof *s);
    double t0 = now_s();
    int64_t N = t->n_items, nc = 0;
    int budget = o && o->batch_tokens > 0 ? o->batch_tokens : 1024;
    for (int64_t i = 0; i < N; i++) nc += t->items[i].n_choices;
    s->n_items = N;
    s->off = malloc((size_t)(N + 1) * sizeof *s->off);
    s->ll = malloc((size_t)(nc ? nc : 1) * sizeof *s->ll);
    s->n_tok = malloc((size_t)(nc ? nc : 1) * sizeof *s->n_tok);
    s->lc_mean = malloc((size_t)(nc ? nc : 1) * sizeof *s->lc_mean);
    s->pred = malloc((size_t)(N ? N : 1) * sizeof *s->pred);
    s->pred_norm = malloc((size_t)(N ? N : 1) * sizeof *s->pred_norm);
    s->pred_lc = malloc((size_t)(N ? N : 1) * sizeof *s->pred_lc);
    /* per item: its lm-eval group and its llama.cpp group (or the same) */
    group *le = calloc((size_t)(N ? N : 1), sizeof *le), *lc = calloc((size_t)(N ? N : 1), sizeof *lc);
    int *sf = calloc((size_t)(N ? N : 1), sizeof *sf);
    char *shared = calloc((size_t)(N ? N : 1), 1);
    group **batch = NULL;
    int rc = PL_OK;
    if (!s->off || !s->ll || !s->n_tok || !s->lc_mean || !s->pred || !s->pred_norm || !s->pred_lc || !le || !lc || !sf || !shared) {
        rc = pl_err_set(err, PL_ENOMEM, "eval: out of memory for %lld items", (long long)N);
        goto out;
    }
    s->off[0] = 0;
    for (int64_t i = 0; i < N; i++) s->off[i + 1] = s->off[i] + t->items[i].n_choices;
    batch = malloc(sizeof *batch * 2 * (size_t)(N ? N : 1));
    if (!batch) { rc = pl_err_set(err, PL_ENOMEM, "eval: out of memory"); goto out; }
    int64_t next = 0; /* first item not yet built */
    while (next < N && !rc) {
        int ng = 0, btok = 0;
        int64_t first = next;
        while (next < N && !rc) {
            const pl_mc_item *it = &t->items[next];
            if ((rc = build_lmeval(tok, it, &le[next], &sf[next], err))) break;
            if ((rc = build_llamacpp(tok, it, &lc[next], err))) break;
            shared[next] = same_tokens(&le[next], &lc[next]);
            int need = 0;
            group_prefix(&le[next], sf[next]);
            for (int c = 0; c < le[next].n; c++) need += le[next].len[c] - le[next].D;
            need += le[next].D;
            if (!shared[next]) {
                int lcD = group_prefix(&lc[next], lc[next].len[0]);
                if (lcD == 0) {
                    rc = pl_err_set(err, PL_EINVAL, "eval: item %lld: the choices share no first token (llama.cpp scoring needs one)",
                                    (long long)it->index);
                    break;
                }
                for (int c = 0; c < lc[next].n; c++) need += lc[next].len[c] - lc[next].D;
                need += lc[next].D;
            }
            if (ng > 0 && btok + need > budget) { /* starts the next batch */
                group_free(&le[next]);
                group_free(&lc[next]);
                break;
            }
            btok += need;
            batch[ng++] = &le[next];
            if (!shared[next]) batch[ng++] = &lc[next];
            next++;
        }
        if (rc) break;
        if ((rc = run_batch(m, batch, ng, &s->tokens, err))) break;
        for (int64_t i = first; i < next; i++) {
            item_scores(&t->items[i], &le[i], sf[i], shared[i] ? &le[i] : &lc[i], s, i);
            group_free(&le[i]);
            group_free(&lc[i]);
        }
        if (o && o->progress) o->progress(o->user, next, N);
    }
    if (!rc) {
        double *x = malloc((size_t)(N ? N : 1) * sizeof *x);
        if (!x) { rc = pl_err_set(err, PL_ENOMEM, "eval: out of memory"); goto out; }
        for (int64_t i = 0; i < N; i++) x[i] = s->pred[i] == t->items[i].gold;
        pl_eval_mean_se(x, N, &s->acc, &s->acc_se);
        for (int64_t i = 0; i < N; i++) x[i] = s->pred_norm[i] == t->items[i].gold;
        pl_eval_mean_se(x, N, &s->acc_norm, &s->acc_norm_se);
        for (int64_t i = 0; i < N; i++) x[i] = s->pred_lc[i] == t->items[i].gold;
        pl_eval_mean_se(x, N, &s->acc_lc, &s->acc_lc_se);
        free(x);
    }
out:
    if (le) for (int64_t i = 0; i < N; i++) group_free(&le[i]);
    if (lc) for (int64_t i = 0; i < N; i++) group_free(&lc[i]);
    free(le);
    free(lc);
    free(sf);
    free(shared);
    free(batch);
    s->seconds = now_s() - t0;
    if (rc) pl_mc_scores_free(s);
    return rc;
}
