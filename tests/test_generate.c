/* test_generate.c: the sampler (pl_sample, trainer/generate.c).
 *
 * - Greedy (temperature 0, or top_k 1) is the argmax, lowest id on ties.
 * - With top-k, the draw equals the rule written out here over a full sort
 *   of the vocabulary (sort by probability, ties by id; keep k; normalize;
 *   keep the nucleus; walk with the uniform draw): pl_sample selects the k
 *   best without sorting the rest and must give the same token every time.
 * - With top-p alone, the token is always inside the nucleus (the fewest best
 *   ids whose probabilities reach top_p, from a full sort here), including
 *   when the nucleus is wider than pl_sample's first selection of 64.
 * - Frequencies over 40000 draws follow the distribution (temperature alone,
 *   top-p alone): every id within 5 standard errors of its probability.
 * - The same (seed, stream, index) gives the same token; logits are not changed. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../core/rng.h"
#include "../trainer/generate.h"
#include "check.h"

static uint64_t rs = 0x2545f4914f6cdd1dull;
static double rnd(void) {
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (double)(rs >> 11) / 9007199254740992.0;
}

typedef struct { float p; int id; } scand;
static int scmp(const void *a, const void *b) {
    const scand *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return x->id - y->id;
}

/* The top-k rule over a full sort (the specification pl_sample's top-k path keeps). */
static int spec_topk(const float *logits, int V, const pl_sampler *s, uint64_t stream, uint64_t index) {
    scand *c = malloc((size_t)V * sizeof *c);
    float mx = logits[0];
    for (int i = 1; i < V; i++)
        if (logits[i] > mx) mx = logits[i];
    for (int i = 0; i < V; i++) c[i] = (scand){(logits[i] - mx) / s->temperature, i};
    qsort(c, (size_t)V, sizeof *c, scmp);
    int n = s->top_k;
    double sum = 0;
    for (int i = 0; i < n; i++) c[i].p = expf(c[i].p), sum += c[i].p;
    for (int i = 0; i < n; i++) c[i].p = (float)(c[i].p / sum);
    sum = 1;
    if (s->top_p > 0 && s->top_p < 1) {
        double cum = 0;
        int keep = n;
        for (int i = 0; i < n; i++) {
            cum += c[i].p;
            if (cum >= s->top_p) { keep = i + 1; break; }
        }
        n = keep;
        sum = cum > 0 ? cum : 1;
    }
    double r = pl_rng_uniform_d(s->seed, stream, index) * sum, acc = 0;
    int id = c[n - 1].id;
    for (int i = 0; i < n; i++) {
        acc += c[i].p;
        if (r < acc) { id = c[i].id; break; }
    }
    free(c);
    return id;
}

/* 1 where id is in the nucleus of top_p (full sort; probabilities over all ids). */
static void nucleus(const float *logits, int V, float temp, float top_p, char *in) {
    scand *c = malloc((size_t)V * sizeof *c);
    double mx = logits[0], z = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > mx) mx = logits[i];
    for (int i = 0; i < V; i++) c[i] = (scand){expf((float)((logits[i] - mx) / temp)), i}, z += c[i].p;
    qsort(c, (size_t)V, sizeof *c, scmp);
    memset(in, 0, (size_t)V);
    double cum = 0;
    for (int i = 0; i < V; i++) {
        in[c[i].id] = 1;
        cum += c[i].p / z;
        if (cum >= top_p - 1e-6) break; /* rounding: one id more at most */
    }
    free(c);
}

static void test_greedy(void) {
    float l[6] = {0.5f, 2.0f, -1.0f, 2.0f, 1.9f, 0.0f};
    float scratch[12];
    pl_sampler g = {.temperature = 0};
    CHECK(pl_sample(l, 6, &g, 0, 0, scratch) == 1, "temperature 0: argmax, lowest id on a tie");
    pl_sampler k1 = {.temperature = 1.0f, .top_k = 1, .seed = 3};
    CHECK(pl_sample(l, 6, &k1, 0, 0, scratch) == 1, "top_k 1: argmax");
}

static void test_topk_equals_full_sort(void) {
    const int V = 3000;
    float *l = malloc(V * sizeof *l), *keep = malloc(V * sizeof *keep), *scratch = malloc(2 * V * sizeof *scratch);
    int same = 1, unchanged = 1, cases = 0;
    static const int ks[] = {2, 5, 40, 64, 257, 2999};
    static const float ps[] = {0.0f, 0.5f, 0.9f, 0.99f, 1.0f};
    for (int trial = 0; trial < 12; trial++) {
        for (int i = 0; i < V; i++) l[i] = (float)(rnd() * 12.0 - 6.0);
        if (trial % 3 == 0) /* ties: many equal logits */
            for (int i = 0; i < V; i++) l[i] = (float)(int)(l[i] * 2) / 2;
        memcpy(keep, l, V * sizeof *l);
        for (size_t a = 0; a < sizeof ks / sizeof *ks; a++)
            for (size_t b = 0; b < sizeof ps / sizeof *ps; b++)
                for (uint64_t idx = 0; idx < 4; idx++) {
                    pl_sampler s = {.temperature = 0.7f + 0.1f * (float)(trial % 4), .top_k = ks[a], .top_p = ps[b],
                                    .seed = 11 + (uint64_t)trial};
                    int got = pl_sample(l, V, &s, 5, idx, scratch), want = spec_topk(l, V, &s, 5, idx);
                    same &= got == want;
                    unchanged &= !memcmp(l, keep, V * sizeof *l);
                    cases++;
                }
    }
    CHECK(same, "top-k: the same token as a full sort in all %d cases", cases);
    CHECK(unchanged, "logits are not modified");
    free(l), free(keep), free(scratch);
}

static void test_nucleus_members(void) {
    const int V = 5000;
    float *l = malloc(V * sizeof *l), *scratch = malloc(2 * V * sizeof *scratch);
    char *in = malloc(V);
    int inside = 1, cases = 0, again = 1;
    for (int trial = 0; trial < 6; trial++) {
        /* flat logits make a nucleus of thousands of ids (past the first selection of 64) */
        double spread = trial < 3 ? 10.0 : 0.5;
        for (int i = 0; i < V; i++) l[i] = (float)(rnd() * spread);
        float top_p = trial % 2 ? 0.95f : 0.6f;
        pl_sampler s = {.temperature = 1.0f, .top_p = top_p, .seed = 99 + (uint64_t)trial};
        nucleus(l, V, 1.0f, top_p, in);
        for (uint64_t idx = 0; idx < 200; idx++) {
            int t = pl_sample(l, V, &s, 1, idx, scratch);
            inside &= t >= 0 && t < V && in[t];
            again &= pl_sample(l, V, &s, 1, idx, scratch) == t;
            cases++;
        }
    }
    CHECK(inside, "top-p alone: every one of %d draws is inside the nucleus", cases);
    CHECK(again, "the same (seed, stream, index) gives the same token");
    free(l), free(scratch), free(in);
}

/* Frequencies of n draws against probabilities prob (V ids). */
static void freq_check(const char *what, const float *l, int V, const pl_sampler *s, const double *prob) {
    enum { N = 40000 };
    int cnt[16] = {0};
    float scratch[32];
    for (int i = 0; i < N; i++) cnt[pl_sample(l, V, s, 3, (uint64_t)i, scratch)]++;
    int ok = 1;
    for (int v = 0; v < V; v++) {
        double se = sqrt(prob[v] * (1 - prob[v]) / N) + 1e-12;
        if (fabs(cnt[v] / (double)N - prob[v]) > 5 * se + (prob[v] == 0 ? 0 : 1e-9)) ok = 0;
        if (prob[v] == 0 && cnt[v]) ok = 0;
    }
    CHECK(ok, "%s: frequencies follow the distribution (%d %d %d %d %d ...)", what, cnt[0], cnt[1], cnt[2], cnt[3],
          cnt[4]);
}

static void test_frequencies(void) {
    float l[5] = {1.0f, 0.0f, 2.0f, -1.0f, 0.5f};
    double p[5], z = 0;
    for (int i = 0; i < 5; i++) z += p[i] = exp(l[i] / 0.8);
    for (int i = 0; i < 5; i++) p[i] /= z;
    pl_sampler t = {.temperature = 0.8f, .seed = 5};
    freq_check("temperature 0.8", l, 5, &t, p);
    /* top-p 0.8 at temperature 1: sorted probabilities .56 .21 .13 .08 .03 (ids 2 0 4 1 3) -> keep ids 2, 0, 4 (.77 < .8 <= .90) */
    double q[5], zz = 0;
    for (int i = 0; i < 5; i++) zz += q[i] = exp(l[i]);
    double kept = q[2] + q[0] + q[4];
    for (int i = 0; i < 5; i++) q[i] = (i == 2 || i == 0 || i == 4) ? q[i] / kept : 0;
    pl_sampler n = {.temperature = 1.0f, .top_p = 0.8f, .seed = 6};
    freq_check("top-p 0.8", l, 5, &n, q);
}

int main(void) {
    test_greedy();
    test_topk_equals_full_sort();
    test_nucleus_members();
    test_frequencies();
    return check_summary("test_generate");
}
