/* test_train.c: the training forward/backward and the step skeleton (trainer/train.h).
 *
 * 1. Gradient parity with torch autograd (tests/interop/hf_grads.py): tiny
 *    random LlamaForCausalLM (GQA 4/2, untied) and Qwen2ForCausalLM (q/k/v
 *    bias, GQA 3, tied) saved by save_pretrained. For one row of 48 tokens
 *    with ignored targets, and for a packed row of three samples (segment ids,
 *    positions restarting at 0) against torch running the three alone: the
 *    loss (relative 1e-5) and every parameter's gradient (||g - ref|| / ||ref||
 *    <= 1e-4 per tensor). The packed case is also run as two micro-batches
 *    with gradient accumulation and must match the same reference.
 * 2. Memory accounting: the forward's saved activations are exactly
 *    pl_train_activation_bytes (docs/memory.md's formula) and every category
 *    returns to its starting value after pl_train_free.
 * 3. stories260K (llama2.c) on tinystories_sample.txt, rows of 64 tokens:
 *    10 AdamW steps lower the loss; a second run gives bit-identical weights;
 *    runs at 1, 2 and 3 OpenMP threads give bit-identical weights. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/json.h"
#include "core/mapfile.h"
#include "datasets/tokenizer.h"
#include "trainer/train.h"

static int read_i32(const char *dir, const char *name, int T, int32_t **out) {
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    char *b = NULL;
    size_t n = 0;
    pl_err err = {0};
    *out = NULL;
    if (pl_read_file(p, 1 << 20, &b, &n, &err) || n != (size_t)T * 4) {
        CHECK(0, "%s: %s (size %zu, expected %d)", p, err.msg, n, T * 4);
        free(b);
        return -1;
    }
    *out = (int32_t *)b;
    return 0;
}

/* Compares every gradient of t with the case's reference files; returns the
 * worst relative error (or 1e30 when something is missing). */
static double compare_grads(pl_train *t, const char *cdir, const cJSON *params, const char *what) {
    double worst = 0;
    int n_ref = 0;
    const char *worst_name = "";
    const cJSON *it;
    cJSON_ArrayForEach(it, params) {
        n_ref++;
        const char *name = NULL, *file = NULL;
        pl_err err = {0};
        if (pl_json_str(it, "name", "index.json", &name, &err) || pl_json_str(it, "file", "index.json", &file, &err)) {
            CHECK(0, "%s: %s", what, err.msg);
            return 1e30;
        }
        pl_param *p = pl_train_param(t, name);
        CHECK(p != NULL, "%s: torch parameter %s has no counterpart", what, name);
        if (!p) { worst = 1e30; continue; }
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", cdir, file);
        char *b = NULL;
        size_t nb = 0;
        if (pl_read_file(path, 1 << 26, &b, &nb, &err) || nb != p->n * 4) {
            CHECK(0, "%s: %s: %s (%zu bytes, expected %zu)", what, path, err.msg, nb, p->n * 4);
            free(b);
            worst = 1e30;
            continue;
        }
        const float *ref = (const float *)b;
        double dd = 0, rr = 0;
        for (size_t i = 0; i < p->n; i++) {
            double d = (double)p->g[i] - ref[i];
            dd += d * d;
            rr += (double)ref[i] * ref[i];
        }
        double rel = rr > 0 ? sqrt(dd / rr) : sqrt(dd);
        CHECK(rel <= 1e-4, "%s: %s: relative error %.3g (|ref| %.3g)", what, name, rel, sqrt(rr));
        if (!(rel <= worst)) { worst = rel; worst_name = p->name; }
        free(b);
    }
    CHECK(n_ref == t->n_params, "%s: torch has %d parameters, we train %d", what, n_ref, t->n_params);
    printf("note: %s: %d gradients, worst relative error %.2e (%s)\n", what, n_ref, worst, worst_name);
    return worst;
}

static int hook_calls;
static void count_hook(void *user, int layer, pl_lin which, const float *x, const float *dout, float *dx, int T,
                       int I, int O) {
    (void)user; (void)x; (void)dout;
    if (layer == -1 ? which == PL_LIN_HEAD : which != PL_LIN_HEAD) hook_calls++;
    if (T > 0 && I > 0 && O > 0 && !isfinite(dx[0])) hook_calls = -1000000;
}

static void hf_case(const char *refs, const char *model_name, const char *case_name) {
    char mdir[4096], cdir[4200], p[4400], what[128];
    snprintf(mdir, sizeof mdir, "%s/hf_grads/%s/model", refs, model_name);
    snprintf(cdir, sizeof cdir, "%s/hf_grads/%s/%s", refs, model_name, case_name);
    snprintf(what, sizeof what, "%s/%s", model_name, case_name);
    pl_err err = {0};
    cJSON *idx = NULL;
    snprintf(p, sizeof p, "%s/index.json", cdir);
    int64_t T = 0, nv_ref = 0;
    double loss_ref = 0;
    if (pl_json_load(p, 1 << 20, &idx, &err) || pl_json_int(idx, "T", p, &T, &err) ||
        pl_json_num(idx, "loss", p, &loss_ref, &err) || pl_json_int(idx, "n_valid", p, &nv_ref, &err)) {
        CHECK(0, "%s: %s", what, err.msg);
        cJSON_Delete(idx);
        return;
    }
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(idx, "params");
    int32_t *ids = NULL, *tg = NULL, *pos = NULL, *seg = NULL;
    int packed = !strcmp(case_name, "packed");
    pl_model *m = NULL;
    pl_train *t = NULL;
    size_t act0 = pl_mem_current(PL_MEM_ACTIVATIONS), grad0 = pl_mem_current(PL_MEM_GRADIENTS);
    size_t ws0 = pl_mem_current(PL_MEM_WORKSPACE);
    if (read_i32(cdir, "ids.i32", (int)T, &ids) || read_i32(cdir, "targets.i32", (int)T, &tg) ||
        read_i32(cdir, "pos.i32", (int)T, &pos) || read_i32(cdir, "seg.i32", (int)T, &seg))
        goto out;
    pl_model_opts opts = {.fp32 = 1};
    int rc = pl_model_load(&m, mdir, &opts, &err);
    CHECK(rc == 0, "%s: load: %s", what, err.msg);
    if (rc) goto out;
    rc = pl_train_init(&t, m, (int)T, &err);
    CHECK(rc == 0, "%s: train init: %s", what, err.msg);
    if (rc) goto out;
    size_t want_act = pl_train_activation_bytes(&m->cfg, (int)T);
    double sum = 0;
    int64_t nv = 0;
    rc = pl_train_forward(t, ids, tg, pos, packed ? seg : NULL, (int)T, &sum, &nv, &err);
    CHECK(rc == 0, "%s: forward: %s", what, err.msg);
    if (rc) goto out;
    CHECK(pl_mem_current(PL_MEM_ACTIVATIONS) - act0 == want_act,
          "%s: activations after forward: %zu bytes, formula says %zu", what,
          pl_mem_current(PL_MEM_ACTIVATIONS) - act0, want_act);
    CHECK(pl_mem_current(PL_MEM_ACTIVATIONS) > act0, "%s: activations are counted", what);
    CHECK(nv == nv_ref, "%s: %lld valid targets, torch %lld", what, (long long)nv, (long long)nv_ref);
    double loss = sum / (double)nv;
    CHECK(fabs(loss - loss_ref) <= 1e-5 * fabs(loss_ref), "%s: loss %.8f, torch %.8f", what, loss, loss_ref);
    printf("note: %s: loss %.7f, torch %.7f (relative %.1e)\n", what, loss, loss_ref,
           fabs(loss - loss_ref) / fabs(loss_ref));
    pl_train_zero_grad(t);
    hook_calls = 0;
    t->hook = count_hook;
    rc = pl_train_backward(t, (float)(1.0 / (double)nv), &err);
    CHECK(rc == 0, "%s: backward: %s", what, err.msg);
    if (rc) goto out;
    CHECK(hook_calls == 7 * m->cfg.n_layers + 1, "%s: hook saw %d linear layers, expected %d", what, hook_calls,
          7 * m->cfg.n_layers + 1);
    t->hook = NULL;
    CHECK(pl_train_backward(t, 1.0f, &err) == PL_EINVAL, "%s: a second backward without a forward is refused", what);
    compare_grads(t, cdir, params, what);
    if (packed) {
        /* the same step as two micro-batches: samples 0+1 (33 tokens), then sample 2 (15) */
        int cut = 0;
        while (cut < T && seg[cut] != 2) cut++;
        pl_train_zero_grad(t);
        double s1 = 0, s2 = 0;
        rc = pl_train_forward(t, ids, tg, pos, seg, cut, &s1, NULL, &err) ||
             pl_train_backward(t, (float)(1.0 / (double)nv), &err) ||
             pl_train_forward(t, ids + cut, tg + cut, pos + cut, NULL, (int)T - cut, &s2, NULL, &err) ||
             pl_train_backward(t, (float)(1.0 / (double)nv), &err);
        CHECK(rc == 0, "%s: micro-batches: %s", what, err.msg);
        if (rc == 0) {
            double l2 = (s1 + s2) / (double)nv;
            CHECK(fabs(l2 - loss_ref) <= 1e-5 * fabs(loss_ref), "%s: 2 micro-batches: loss %.8f, torch %.8f", what,
                  l2, loss_ref);
            snprintf(what, sizeof what, "%s/%s as 2 micro-batches", model_name, case_name);
            compare_grads(t, cdir, params, what);
        }
    }
    /* an SGD step through pl_train_step writes the weights (copied out of the
     * read-only safetensors map when needed) and lowers the loss of this row */
    {
        pl_microbatch mb = {.ids = ids, .targets = tg, .pos = pos, .seg = packed ? seg : NULL, .T = (int)T};
        double l0 = 0, l1 = 0;
        rc = pl_train_step(t, &mb, 1, NULL, 1e-2f, &l0, &err);
        if (!rc) rc = pl_train_forward(t, ids, tg, pos, packed ? seg : NULL, (int)T, &l1, &nv, &err);
        CHECK(rc == 0, "%s: SGD step: %s", what, err.msg);
        l1 /= (double)nv;
        CHECK(fabs(l0 - loss_ref) <= 1e-5 * fabs(loss_ref) && l1 < l0, "%s: one SGD step: loss %.6f -> %.6f", what,
              l0, l1);
    }
    /* error paths */
    int32_t bad = m->cfg.vocab;
    CHECK(pl_train_forward(t, &bad, tg, NULL, NULL, 1, NULL, NULL, &err) == PL_EINVAL && strstr(err.msg, "vocabulary"),
          "%s: out-of-vocabulary id refused: %s", what, err.msg);
    CHECK(pl_train_forward(t, ids, tg, NULL, NULL, (int)T + 1, NULL, NULL, &err) == PL_EINVAL,
          "%s: a row longer than max_T is refused", what);
out:
    pl_train_free(t);
    pl_model_free(m);
    CHECK(pl_mem_current(PL_MEM_ACTIVATIONS) == act0 && pl_mem_current(PL_MEM_GRADIENTS) == grad0 &&
              pl_mem_current(PL_MEM_WORKSPACE) == ws0,
          "%s: memory back to its starting value after free (activations %zu, gradients %zu)", what,
          pl_mem_current(PL_MEM_ACTIVATIONS), pl_mem_current(PL_MEM_GRADIENTS));
    free(ids);
    free(tg);
    free(pos);
    free(seg);
    cJSON_Delete(idx);
}

/* ------------------------------------------------------------ stories260K */

#define ROW 64
#define STEPS 10
#define MB_PER_STEP 2

typedef struct corpus {
    int32_t *tok;
    int n_rows; /* rows of ROW inputs with ROW next-token targets */
} corpus;

static float *snapshot(const pl_train *t, size_t *n) {
    size_t tot = 0;
    for (int i = 0; i < t->n_params; i++) tot += t->params[i].n;
    float *s = malloc(tot * sizeof(float));
    for (int i = 0, o = 0; s && i < t->n_params; o += (int)t->params[i].n, i++)
        memcpy(s + o, t->params[i].w, t->params[i].n * sizeof(float));
    *n = tot;
    return s;
}

static double eval_loss(pl_train *t, const corpus *c, int n_rows) {
    double sum = 0;
    int64_t nv = 0;
    pl_err err = {0};
    for (int r = 0; r < n_rows; r++) {
        double s;
        int64_t n;
        if (pl_train_forward(t, c->tok + r * ROW, c->tok + r * ROW + 1, NULL, NULL, ROW, &s, &n, &err)) return NAN;
        sum += s;
        nv += n;
    }
    return sum / (double)nv;
}

/* 10 AdamW steps from a fresh load; returns the final weights (malloc'd). */
static float *train_run(const char *model_path, const corpus *c, int threads, double *before, double *after,
                        size_t *n) {
    if (threads > 0) omp_set_num_threads(threads);
    double t0 = omp_get_wtime();
    pl_err err = {0};
    pl_model_opts opts = {.fp32 = 1};
    pl_model *m = NULL;
    pl_train *t = NULL;
    float *w = NULL;
    int rc = pl_model_load(&m, model_path, &opts, &err);
    CHECK(rc == 0, "stories260K: load: %s", err.msg);
    if (!rc) rc = pl_train_init(&t, m, ROW, &err);
    CHECK(rc == 0, "stories260K: init: %s", err.msg);
    if (rc) goto out;
    int eval_rows = STEPS * MB_PER_STEP < c->n_rows ? STEPS * MB_PER_STEP : c->n_rows;
    *before = eval_loss(t, c, eval_rows);
    pl_adamw_opts o = pl_adamw_defaults();
    o.lr = 2e-3f;
    for (int s = 0; s < STEPS; s++) {
        pl_microbatch mb[MB_PER_STEP];
        for (int i = 0; i < MB_PER_STEP; i++) {
            int r = (s * MB_PER_STEP + i) % c->n_rows;
            mb[i] = (pl_microbatch){.ids = c->tok + r * ROW, .targets = c->tok + r * ROW + 1, .T = ROW};
        }
        double loss;
        rc = pl_train_step(t, mb, MB_PER_STEP, &o, 0, &loss, &err);
        CHECK(rc == 0, "stories260K: step %d: %s", s, err.msg);
        if (rc) goto out;
        if (s == 0) {
            double gn = pl_train_grad_norm(t);
            CHECK(gn > 0 && isfinite(gn), "stories260K: gradient norm %g", gn);
        }
    }
    CHECK(pl_mem_current(PL_MEM_OPTIMIZER) > 0, "stories260K: optimizer state is counted");
    *after = eval_loss(t, c, eval_rows);
    w = snapshot(t, n);
out:
    pl_train_free(t);
    pl_model_free(m);
    CHECK(pl_mem_current(PL_MEM_OPTIMIZER) == 0, "stories260K: optimizer state freed");
    printf("note: stories260K: run at %d thread(s): %.2f s\n", omp_get_max_threads(), omp_get_wtime() - t0);
    omp_set_num_threads(2);
    return w;
}

static void stories(const char *shared) {
    char mp[4096], tp[4096], xp[4096];
    snprintf(mp, sizeof mp, "%s/fixtures/stories260K/stories260K.bin", shared);
    snprintf(tp, sizeof tp, "%s/fixtures/stories260K/tok512.bin", shared);
    snprintf(xp, sizeof xp, "%s/fixtures/text/tinystories_sample.txt", shared);
    pl_err err = {0};
    pl_tokenizer *tk = NULL;
    char *text = NULL;
    size_t len = 0;
    int32_t *ids = NULL;
    int n_ids = 0;
    int rc = pl_tokenizer_load_llama2c(&tk, tp, 512, &err);
    if (!rc) rc = pl_read_file(xp, 1 << 24, &text, &len, &err);
    if (!rc) rc = pl_tokenizer_encode(tk, text, len, 1, 0, &ids, &n_ids, &err);
    CHECK(rc == 0, "stories260K: tokenize: %s", err.msg);
    pl_tokenizer_free(tk);
    free(text);
    if (rc) { free(ids); return; }
    corpus c = {.tok = ids, .n_rows = (n_ids - 1) / ROW};
    CHECK(c.n_rows >= 4, "stories260K: %d tokens make %d rows of %d", n_ids, c.n_rows, ROW);
    printf("note: stories260K: %d tokens of tinystories_sample.txt, %d rows of %d; %d steps of %d rows\n", n_ids,
           c.n_rows, ROW, STEPS, MB_PER_STEP);
    double b1, a1, b2, a2;
    size_t n1 = 0, n2 = 0;
    float *w1 = train_run(mp, &c, 0, &b1, &a1, &n1);
    float *w2 = train_run(mp, &c, 0, &b2, &a2, &n2);
    CHECK(w1 && w2, "stories260K: runs finished");
    if (w1 && w2) {
        CHECK(a1 < b1 - 0.05, "stories260K: loss over the trained rows %.4f before, %.4f after 10 AdamW steps", b1, a1);
        printf("note: stories260K: loss %.4f -> %.4f after %d AdamW steps\n", b1, a1, STEPS);
        CHECK(n1 == n2 && !memcmp(w1, w2, n1 * sizeof(float)), "stories260K: second run gives the same weight bits");
        float *wt[3] = {0};
        int same = 1;
        for (int k = 0; k < 3; k++) {
            double b, a;
            size_t nk = 0;
            wt[k] = train_run(mp, &c, k + 1, &b, &a, &nk);
            int eq = wt[k] && nk == n1 && !memcmp(wt[k], w1, n1 * sizeof(float));
            CHECK(eq, "stories260K: %d thread(s) give the same weight bits as the default run", k + 1);
            if (!eq) same = 0;
        }
        printf("note: stories260K: weights after 10 AdamW steps %s at 1, 2 and 3 threads and run to run\n",
               same ? "bit-identical" : "DIFFER");
        for (int k = 0; k < 3; k++) free(wt[k]);
    }
    free(w1);
    free(w2);
    free(ids);
}

int main(int argc, char **argv) {
    /* Many small parallel regions: with libgomp's default spin-waiting, a
     * 2-thread team on a busy 2-core machine spends seconds spinning (a
     * stories260K run took 5 s instead of 1.4 s). The wait policy is read when
     * libgomp loads, so set it and start again. */
    if (argc >= 1 && !getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        execv("/proc/self/exe", argv);
    }
    const char *refs = check_env("POTLUCK_REFS");
    const char *shared = check_env("POTLUCK_SHARED");
    omp_set_num_threads(2);
    for (int i = 0; i < PL_MEM_NCAT; i++) CHECK(pl_mem_current((pl_mem_cat)i) == 0, "nothing allocated at start");
    if (getenv("POTLUCK_TEST_THREADS_ONLY")) { /* tests/cli_openblas_kernels.sh: thread counts only */
        stories(shared);
        return check_summary("test_train");
    }
    double t0 = omp_get_wtime();
    hf_case(refs, "llama", "single");
    hf_case(refs, "llama", "packed");
    hf_case(refs, "qwen2", "single");
    hf_case(refs, "qwen2", "packed");
    double t1 = omp_get_wtime();
    stories(shared);
    printf("note: timing: torch parity %.1f s, stories260K runs %.1f s\n", t1 - t0, omp_get_wtime() - t1);
    return check_summary("test_train");
}
