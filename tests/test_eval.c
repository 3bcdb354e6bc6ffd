/* test_eval.c: task file readers (good and malformed), seeded subsets, the
 * items' hash, stderr, the results table, and the multiple-choice scorer
 * (shared-prefix KV copies, batching) against a plain full forward of each
 * sequence on the tiny llama.cpp GGUF fixture. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../datasets/tokenizer.h"
#include "../trainer/eval.h"
#include "../trainer/eval_results.h"
#include "../trainer/model.h"
#include "check.h"

static int parse(pl_mc_task *t, const char *text, pl_err *err) {
    return pl_mc_task_parse(t, "t.jsonl", text, strlen(text), err);
}

static void expect_bad(const char *text, const char *want, int line) {
    pl_mc_task t;
    pl_err err = {0};
    int rc = parse(&t, text, &err);
    CHECK(rc != 0, "line %d: accepted a malformed task", line);
    CHECK(rc == 0 || strstr(err.msg, want), "line %d: message '%s' lacks '%s'", line, err.msg, want);
    if (!rc) pl_mc_task_free(&t);
}

static void test_readers(void) {
    pl_mc_task t;
    pl_err err = {0};
    const char *j = "{\"context\": \"A cat\", \"choices\": [\"sat.\", \"flew.\"], \"gold\": 0}\n"
                    "\n"
                    "{\"query\": \"B\", \"endings\": [\"x\", \"y\", \"z\"], \"label\": \"2\", \"index\": 41}\n";
    CHECK(parse(&t, j, &err) == 0, "jsonl: %s", err.msg);
    CHECK(t.n_items == 2 && !strcmp(t.format, "lm-eval-jsonl") && !strcmp(t.name, "t"), "jsonl: %lld items", (long long)t.n_items);
    if (t.n_items == 2) {
        CHECK(!strcmp(t.items[0].context, "A cat") && t.items[0].n_choices == 2 && t.items[0].gold == 0 && t.items[0].index == 0, "item 0");
        CHECK(t.items[1].n_choices == 3 && t.items[1].gold == 2 && t.items[1].index == 41, "item 1: string label, index key");
    }
    pl_mc_task_free(&t);
    const char *h = "Ctx one\n3\ne0\ne1\ne2\ne3\nCtx two\n0\na\nb\nc\nd\n";
    CHECK(pl_mc_task_parse(&t, "x/hs.txt", h, strlen(h), &err) == 0, "hellaswag: %s", err.msg);
    CHECK(t.n_items == 2 && !strcmp(t.format, "llamacpp-hellaswag") && !strcmp(t.name, "hs"), "hellaswag items");
    if (t.n_items == 2) CHECK(t.items[0].gold == 3 && !strcmp(t.items[0].choices[3], "e3") && t.items[1].index == 1, "hellaswag fields");
    pl_mc_task_free(&t);

    /* malformed */
    expect_bad("", "no items", __LINE__);
    expect_bad("\n\n  \n", "no items", __LINE__);
    expect_bad("{\"context\": \"a\", \"choices\": [], \"gold\": 0}\n", "no choices", __LINE__);
    expect_bad("{\"context\": \"a\", \"choices\": [\"x\", \"\"], \"gold\": 0}\n", "choice 1 is empty", __LINE__);
    expect_bad("{\"context\": \"a\", \"choices\": [\"x\"], \"gold\": 1}\n", "gold 1 is not a choice index", __LINE__);
    expect_bad("{\"context\": \"a\", \"choices\": [\"x\"], \"gold\": -1}\n", "not a choice index", __LINE__);
    expect_bad("{\"context\": \"a\", \"choices\": [\"x\"], \"gold\": 0.5}\n", "integer index", __LINE__);
    expect_bad("{\"context\": \"a\", \"choices\": [\"x\"]}\n", "\"gold\"", __LINE__);
    expect_bad("{\"choices\": [\"x\"], \"gold\": 0}\n", "\"context\"", __LINE__);
    expect_bad("{\"context\": 3, \"choices\": [\"x\"], \"gold\": 0}\n", "\"context\"", __LINE__);
    expect_bad("{\"context\": \"a\", \"choices\": \"x\", \"gold\": 0}\n", "\"choices\"", __LINE__);
    expect_bad("{\"context\": \"a\", \"choices\": [\"x\", 2], \"gold\": 0}\n", "choice 1 is not a string", __LINE__);
    expect_bad("{\"context\": \"a\", \"choices\": [\"x\"], \"gold\": 0}\n{\"context\": \"a\", \"choi", "t.jsonl:2: expected a JSON object", __LINE__);
    expect_bad("{\"context\": \"a\", \"choices\": [\"x\"], \"gold\": 0}\n[1, 2]\n", "t.jsonl:2", __LINE__);
    expect_bad("{\"context\": \"a\", \"choices\": [\"x\"], \"gold\": \"two\"}\n", "integer index", __LINE__);
    expect_bad("Ctx\n1\na\nb\nc\n", "the file ends after 5", __LINE__);
    expect_bad("Ctx\nx\na\nb\nc\nd\n", "expected the gold ending's index", __LINE__);
    expect_bad("Ctx\n7\na\nb\nc\nd\n", "gold -1 is not a choice index", __LINE__);
    expect_bad("Ctx\n1\na\n\nc\nd\n", "choice 1 is empty", __LINE__);
    expect_bad("Ctx\n1\na\nb\nc\nd\nCtx2\n0\n", "t.jsonl:7", __LINE__);
    expect_bad("Ctx\n99999999999999999999999\na\nb\nc\nd\n", "gold ending's index", __LINE__);
    {
        char nul[] = "Ctx\n1\na\nb\0\nc\nd\n";
        CHECK(pl_mc_task_parse(&t, "n.txt", nul, sizeof nul - 1, &err) != 0 && strstr(err.msg, "NUL"), "NUL byte: %s", err.msg);
    }
    /* too many choices */
    {
        char big[4096] = "{\"context\": \"a\", \"choices\": [";
        for (int i = 0; i < 70; i++) strcat(big, i ? ",\"c\"" : "\"c\"");
        strcat(big, "], \"gold\": 0}\n");
        expect_bad(big, "at most 64", __LINE__);
    }
    CHECK(pl_mc_task_load(&t, "/nonexistent/task.jsonl", &err) != 0 && strstr(err.msg, "/nonexistent/task.jsonl"), "missing file: %s", err.msg);
}

static void test_limit(void) {
    char *buf = malloc(1 << 16);
    size_t n = 0;
    for (int i = 0; i < 100; i++)
        n += (size_t)sprintf(buf + n, "{\"context\": \"c%d\", \"choices\": [\"a\", \"b\"], \"gold\": %d}\n", i, i % 2);
    pl_mc_task a, b, c;
    pl_err err = {0};
    pl_mc_task_parse(&a, "x.jsonl", buf, n, &err);
    pl_mc_task_parse(&b, "x.jsonl", buf, n, &err);
    pl_mc_task_parse(&c, "x.jsonl", buf, n, &err);
    char h0[65], h1[65], h2[65];
    pl_mc_task_hash(&a, h0);
    CHECK(pl_mc_task_limit(&a, 10, 7, &err) == 0 && a.n_items == 10 && a.n_file == 100, "limit 10");
    CHECK(pl_mc_task_limit(&b, 10, 7, &err) == 0, "limit 10 again");
    CHECK(pl_mc_task_limit(&c, 30, 7, &err) == 0 && c.n_items == 30, "limit 30");
    int same = 1, sorted = 1, subset = 1;
    for (int i = 0; i < 10; i++) {
        same &= a.items[i].index == b.items[i].index;
        if (i) sorted &= a.items[i].index > a.items[i - 1].index;
        int found = 0;
        for (int k = 0; k < 30; k++) found |= c.items[k].index == a.items[i].index;
        subset &= found;
    }
    CHECK(same, "the same seed takes the same items");
    CHECK(sorted, "items stay in file order");
    CHECK(subset, "limit 10 is a subset of limit 30");
    pl_mc_task_hash(&a, h1);
    pl_mc_task_hash(&b, h2);
    CHECK(!strcmp(h1, h2) && strcmp(h0, h1), "hash: same items same hash, other items another");
    pl_mc_task_free(&b);
    pl_mc_task_parse(&b, "x.jsonl", buf, n, &err);
    pl_mc_task_limit(&b, 10, 8, &err);
    int differ = 0;
    for (int i = 0; i < 10; i++) differ |= a.items[i].index != b.items[i].index;
    CHECK(differ, "another seed takes other items");
    CHECK(pl_mc_task_limit(&b, 0, 8, &err) == 0 && b.n_items == 10, "limit 0 keeps all");
    pl_mc_task_free(&a);
    pl_mc_task_free(&b);
    pl_mc_task_free(&c);
    free(buf);
}

static void test_stats_table(void) {
    double x[4] = {1, 0, 1, 1}, m, se;
    pl_eval_mean_se(x, 4, &m, &se);
    /* lm-eval: sqrt(var_sample / n); var_sample = 0.25 for 3 of 4 */
    CHECK(fabs(m - 0.75) < 1e-12 && fabs(se - sqrt(0.25 / 4)) < 1e-12, "mean %g se %g", m, se);
    pl_eval_mean_se(x, 1, &m, &se);
    CHECK(m == 1 && isnan(se), "one item: no stderr");
    cJSON *rows = cJSON_CreateArray();
    cJSON_AddItemToArray(rows, pl_eval_row("base", "m.gguf", NULL, "hs", "aa", 10, "acc", 0.5, 0.1));
    cJSON_AddItemToArray(rows, pl_eval_row("tuned", "m.gguf", "ad", "hs", "bb", 10, "acc", 0.6, 0.1));
    cJSON_AddItemToArray(rows, pl_eval_row("tuned", "m.gguf", "ad", "dev", NULL, 99, "ppl", 12.5, NAN));
    char *tab = pl_eval_table(rows);
    CHECK(tab && strstr(tab, "0.5000 ± 0.1000") && strstr(tab, "12.5000") && strstr(tab, "different items"), "table:\n%s", tab ? tab : "");
    free(tab);
    pl_err err = {0};
    char path[] = "/tmp/test_eval_XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) close(fd);
    CHECK(pl_eval_rows_write(path, rows, &err) == 0, "write: %s", err.msg);
    cJSON *back = cJSON_CreateArray();
    CHECK(pl_eval_rows_load(path, back, &err) == 0 && cJSON_GetArraySize(back) == 3, "load: %s", err.msg);
    FILE *f = fopen(path, "w");
    fputs("{\"rows\": [{\"variant\": \"x\", \"task\": \"t\"}]}", f);
    fclose(f);
    CHECK(pl_eval_rows_load(path, back, &err) != 0 && strstr(err.msg, "rows[0]"), "bad row: %s", err.msg);
    f = fopen(path, "w");
    fputs("{\"nope\": 1}", f);
    fclose(f);
    CHECK(pl_eval_rows_load(path, back, &err) != 0 && strstr(err.msg, "\"rows\""), "no rows: %s", err.msg);
    unlink(path);
    cJSON_Delete(back);
    cJSON_Delete(rows);
}

/* The scorer against a plain forward of every full sequence. */
static double ref_ll(pl_model *m, const int32_t *ids, int n, int from, double *mean_from, int from2) {
    float *lg = malloc((size_t)n * m->cfg.vocab * sizeof *lg);
    pl_err err = {0};
    double s = 0, s2 = 0;
    int c2 = 0;
    if (pl_model_forward(m, ids, NULL, NULL, n, lg, &err) == 0)
        for (int t = 1; t < n; t++) {
            const float *x = lg + (size_t)(t - 1) * m->cfg.vocab;
            double mx = x[0], z = 0;
            for (int v = 1; v < m->cfg.vocab; v++) mx = x[v] > mx ? x[v] : mx;
            for (int v = 0; v < m->cfg.vocab; v++) z += exp(x[v] - mx);
            double lp = x[ids[t]] - mx - log(z);
            if (t >= from) s += lp;
            if (t >= from2) { s2 += lp; c2++; }
        }
    free(lg);
    *mean_from = c2 ? s2 / c2 : -INFINITY;
    return s;
}

static void test_scorer(void) {
    const char *shared = getenv("POTLUCK_SHARED");
    if (!shared) { printf("note: POTLUCK_SHARED unset, scorer test skipped\n"); return; }
    char path[4096];
    snprintf(path, sizeof path, "%s/fixtures/gguf-tiny-llama/llama-2-tiny-random.gguf", shared);
    pl_model *m = NULL;
    pl_tokenizer *tok = NULL;
    pl_err err = {0};
    if (pl_model_load(&m, path, NULL, &err) || pl_model_tokenizer(m, NULL, &tok, &err)) {
        CHECK(0, "tiny model: %s", err.msg);
        pl_model_free(m);
        return;
    }
    const char *j =
        "{\"context\": \"Once upon a time, there was\", \"choices\": [\"a little girl.\", \"a dog named Max who liked to run\", \"the sun\", \"a little boy\"], \"gold\": 1}\n"
        "{\"context\": \"The cat sat on the \", \"choices\": [\"mat\", \"hat and then it slept for a long time\"], \"gold\": 0}\n"
        "{\"context\": \"\", \"choices\": [\"Hello there\", \"Goodbye\"], \"gold\": 0}\n"
        "{\"context\": \"She said\", \"choices\": [\"yes\", \"yes please\", \"no\"], \"gold\": 2}\n"
        "{\"context\": \"Numbers: 1 2 3\", \"choices\": [\"4 5 6\", \"4 5 7\", \"é ü\"], \"gold\": 0}\n";
    pl_mc_task t;
    if (parse(&t, j, &err) != 0) {
        CHECK(0, "parse: %s", err.msg);
        pl_tokenizer_free(tok);
        pl_model_free(m);
        return;
    }
    pl_mc_scores a, b;
    pl_eval_opts big = {.batch_tokens = 4096}, small = {.batch_tokens = 16};
    int ra = pl_mc_score(m, tok, &t, &big, &a, &err);
    CHECK(ra == 0, "score: %s", err.msg);
    int rb = pl_mc_score(m, tok, &t, &small, &b, &err);
    CHECK(rb == 0, "score (one item a batch): %s", err.msg);
    if (!ra && !rb) {
        double md = 0;
        for (int64_t k = 0; k < a.off[t.n_items]; k++) {
            md = fmax(md, fabs(a.ll[k] - b.ll[k]));
            if (isfinite(a.lc_mean[k])) md = fmax(md, fabs(a.lc_mean[k] - b.lc_mean[k]));
        }
        CHECK(md < 1e-4, "batching changes scores by %g", md);
        /* lm-eval scoring from a plain forward: BOS? + ctx + continuation tokens */
        int bos = pl_tokenizer_add_bos(tok);
        double mx = 0, mxl = 0;
        for (int64_t i = 0; i < t.n_items; i++) {
            const pl_mc_item *it = &t.items[i];
            int32_t *ctx = NULL;
            int nctx = 0;
            pl_tokenizer_encode(tok, it->context, strlen(it->context), bos, 0, &ctx, &nctx, &err);
            /* trailing space moves to the continuation */
            size_t keep = strlen(it->context);
            while (keep && it->context[keep - 1] == ' ') keep--;
            free(ctx);
            pl_tokenizer_encode(tok, it->context, keep, bos, 0, &ctx, &nctx, &err);
            for (int c = 0; c < it->n_choices; c++) {
                char s[512];
                snprintf(s, sizeof s, "%s %s", it->context, it->choices[c]);
                int32_t *w = NULL, *ids;
                int nw = 0, n;
                double mean;
                pl_tokenizer_encode(tok, s, strlen(s), bos, 0, &w, &nw, &err);
                if (nctx == 0) { /* empty context: the prefix token, then the continuation alone */
                    int32_t *cw = NULL;
                    int ncw = 0;
                    pl_tokenizer_encode(tok, s, strlen(s), 0, 0, &cw, &ncw, &err);
                    n = ncw + 1;
                    ids = malloc((size_t)n * sizeof *ids);
                    ids[0] = pl_tokenizer_bos(tok) >= 0 ? pl_tokenizer_bos(tok) : pl_tokenizer_eos(tok);
                    memcpy(ids + 1, cw, (size_t)ncw * sizeof *ids);
                    free(cw);
                } else {
                    n = nw;
                    ids = malloc((size_t)n * sizeof *ids);
                    memcpy(ids, ctx, (size_t)nctx * sizeof *ids);
                    memcpy(ids + nctx, w + nctx, (size_t)(nw - nctx) * sizeof *ids);
                }
                double r = ref_ll(m, ids, n, nctx ? nctx : 1, &mean, n);
                mx = fmax(mx, fabs(r - a.ll[a.off[i] + c]));
                CHECK(a.n_tok[a.off[i] + c] == n - (nctx ? nctx : 1), "item %lld choice %d: %d tokens, expected %d",
                      (long long)i, c, a.n_tok[a.off[i] + c], n - (nctx ? nctx : 1));
                free(ids);
                free(w);
            }
            /* llama.cpp scoring: BOS? + tok(context + " " + choice), after the common prefix */
            int32_t *seq[8];
            int ns[8], P = 1 << 30;
            for (int c = 0; c < it->n_choices; c++) {
                char s[512];
                snprintf(s, sizeof s, "%s %s", it->context, it->choices[c]);
                seq[c] = NULL;
                pl_tokenizer_encode(tok, s, strlen(s), bos, 0, &seq[c], &ns[c], &err);
                if (c) {
                    int k = 0;
                    while (k < P && k < ns[c] && seq[c][k] == seq[0][k]) k++;
                    P = k;
                } else P = ns[0];
            }
            for (int c = 0; c < it->n_choices; c++) {
                double mean;
                if (P >= 1) {
                    ref_ll(m, seq[c], ns[c], ns[c], &mean, P);
                    double got = a.lc_mean[a.off[i] + c];
                    if (isfinite(mean) || isfinite(got)) mxl = fmax(mxl, fabs(mean - got));
                }
                free(seq[c]);
            }
            free(ctx);
        }
        CHECK(mx < 1e-3, "lm-eval log-likelihoods differ from a plain forward by %g", mx);
        CHECK(mxl < 1e-4, "llama.cpp scores differ from a plain forward by %g", mxl);
        printf("note: scorer vs plain forward: max |ll| diff %.3g, llama.cpp mean %.3g; acc %.2f acc_norm %.2f\n", mx, mxl, a.acc, a.acc_norm);
        CHECK(a.acc >= 0 && a.acc <= 1 && isfinite(a.acc_se), "acc %g ± %g", a.acc, a.acc_se);
        pl_mc_scores_free(&b);
    }
    if (!ra) pl_mc_scores_free(&a);
    pl_mc_task_free(&t);
    pl_tokenizer_free(tok);
    pl_model_free(m);
}

int main(void) {
    test_readers();
    test_limit();
    test_stats_table();
    test_scorer();
    return check_summary("test_eval");
}
