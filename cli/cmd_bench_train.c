/* cmd_bench_train.c: `potluck bench-train`: forward + backward + AdamW steps
 * of a model dequantized to fp32 on the CPU backend, with the FLOP rate
 * achieved and OpenBLAS sgemm's peak measured in the same process, one JSON
 * line for bench/train_bench.sh to compare with PyTorch. */
#include <cblas.h>
#undef I
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/gemm.h"
#include "cli.h"
#include "cmd_bench_train.h"
#include "../trainer/train.h"

static const char *bench_train_help =
    "usage: potluck bench-train --model PATH [--seq N] [--steps S] [--warmup W] [--threads T]\n"
    "                           [--gemm tiled|openblas]\n"
    "\n"
    "Loads the model, dequantizes every weight to fp32, and runs W + S training\n"
    "steps (forward, loss, backward, AdamW lr 1e-4) on one row of N fixed token ids\n"
    "((i*7919) %% 40000 + 100, modulo the vocabulary; targets are the next ids).\n"
    "Prints one JSON line: tokens/s (median over the S timed steps), the FLOPs of\n"
    "a step (6 * params * N for the matrices, plus the attention's 6 * 2 * N^2/2\n"
    "* layers * heads * head_dim for scores and values, forward and backward),\n"
    "the FLOP/s achieved, OpenBLAS sgemm's peak FLOP/s measured in the same run\n"
    "(best of 1536^3 products), and seconds per op (forward and backward op timers\n"
    "averaged over the timed steps; \"adamw\" is the optimizer step).\n"
    "--gemm openblas multiplies matrices with one threaded OpenBLAS sgemm call\n"
    "instead of potluck's thread-count independent tiles (core/gemm.h), to\n"
    "measure what the tiles cost; its bits depend on the thread count.\n"
    "Defaults: N=256, S=3, W=1, T=all cores, --gemm tiled.\n";

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Best FLOP/s of a square sgemm of n (n^3 * 2 flops), over reps calls. */
static double sgemm_peak(int n, int reps) {
    size_t nn = (size_t)n * n;
    float *a = malloc(nn * sizeof(float)), *b = malloc(nn * sizeof(float)), *c = malloc(nn * sizeof(float));
    if (!a || !b || !c) { free(a); free(b); free(c); return 0; }
    for (size_t i = 0; i < nn; i++) { a[i] = (float)(i % 7) * 0.01f; b[i] = (float)(i % 5) * 0.02f; c[i] = 0; }
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = omp_get_wtime();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double dt = omp_get_wtime() - t0;
        double f = 2.0 * n * (double)n * n / dt;
        if (f > best) best = f;
    }
    free(a); free(b); free(c);
    return best;
}

int cmd_bench_train(int argc, char **argv) {
    const char *path = NULL;
    long N = 256, S = 3, W = 1, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(bench_train_help, stdout); return 0; }
        if (!strcmp(a, "--model")) { if (!v) return cli_fail("bench-train: --model: expected a value"); path = v; i++; }
        else if (!strcmp(a, "--seq")) { if (cli_int(a, v, 2, 1 << 16, &N)) return 1; i++; }
        else if (!strcmp(a, "--steps")) { if (cli_int(a, v, 1, 1000, &S)) return 1; i++; }
        else if (!strcmp(a, "--warmup")) { if (cli_int(a, v, 0, 1000, &W)) return 1; i++; }
        else if (!strcmp(a, "--threads")) { if (cli_int(a, v, 1, 1024, &threads)) return 1; i++; }
        else if (!strcmp(a, "--gemm")) { if (cli_gemm_mode(a, v)) return 1; i++; }
        else return cli_fail("bench-train: unknown option '%s' (see potluck bench-train --help)", a);
    }
    if (!path) return cli_fail("bench-train: --model PATH is required");
    cli_set_threads((int)threads);
    pl_err err = {0};
    pl_model *m = NULL;
    pl_model_opts opts = {.fp32 = 1};
    if (pl_model_load(&m, path, &opts, &err)) return cli_fail_err(&err);
    pl_train *t = NULL;
    int32_t *ids = malloc((size_t)N * sizeof *ids), *tg = malloc((size_t)N * sizeof *tg);
    double *times = malloc((size_t)S * sizeof *times);
    int status = 1;
    if (!ids || !tg || !times) { cli_fail("bench-train: out of memory"); goto out; }
    if (pl_train_init(&t, m, (int)N, &err)) { cli_fail_err(&err); goto out; }
    const pl_model_config *c = &m->cfg;
    for (long i = 0; i < N; i++) ids[i] = (int32_t)(((i * 7919) % 40000 + 100) % c->vocab);
    for (long i = 0; i < N; i++) tg[i] = i + 1 < N ? ids[i + 1] : -100;
    pl_adamw_opts o = pl_adamw_defaults();
    o.lr = 1e-4f;
    pl_microbatch mb = {.ids = ids, .targets = tg, .T = (int)N};
    double loss0 = 0, loss = 0, adamw_s = 0, total_s = 0;
    for (long s = 0; s < W + S; s++) {
        if (s == W) { memset(t->t_op, 0, sizeof t->t_op); adamw_s = 0; } /* sum the timed steps only */
        t->timing = 1;
        double t0 = omp_get_wtime();
        /* pl_train_step, unrolled to time the optimizer separately */
        pl_train_zero_grad(t);
        double sum = 0;
        int64_t nv = 0;
        if (pl_train_forward(t, ids, tg, NULL, NULL, (int)N, &sum, &nv, &err) ||
            pl_train_backward(t, (float)(1.0 / (double)nv), &err)) { cli_fail_err(&err); goto out; }
        double t1 = omp_get_wtime();
        if (pl_train_adamw(t, &o, &err)) { cli_fail_err(&err); goto out; }
        double t2 = omp_get_wtime();
        (void)mb;
        loss = sum / (double)nv;
        if (s == 0) loss0 = loss;
        if (s >= W) { times[s - W] = t2 - t0; total_s += t2 - t0; adamw_s += t2 - t1; }
    }
    qsort(times, (size_t)S, sizeof *times, cmp_d);
    double med = S % 2 ? times[S / 2] : 0.5 * (times[S / 2 - 1] + times[S / 2]);
    double params = (double)pl_model_n_params(m);
    double attn = 6.0 * 2.0 * ((double)N * N / 2.0) * c->n_layers * c->n_heads * c->head_dim;
    double flops = 6.0 * params * (double)N + attn;
    double peak = sgemm_peak(1536, 5);
    printf("{\"side\":\"potluck\",\"seq\":%ld,\"batch\":1,\"threads\":%d,\"params\":%.0f,\"steps\":%ld,"
           "\"step_s_median\":%.4f,\"tokens_per_s\":%.2f,\"flops_per_step\":%.4g,\"achieved_flops\":%.4g,"
           "\"gemm\":\"%s\",\"sgemm_peak_flops\":%.4g,\"loss_first\":%.5f,\"loss_last\":%.5f,\"step_s_mean\":%.4f,"
           "\"timers_s\":{",
           N, omp_get_max_threads(), params, S, med, (double)N / med, flops, flops / med, pl_gemm_openblas_threaded() ? "openblas" : "tiled", peak, loss0, loss,
           total_s / S);
    for (int k = 0; k < PL_TT_N; k++) printf("\"%s\":%.4f,", pl_train_timer_name(k), t->t_op[k] / S);
    printf("\"adamw\":%.4f}}\n", adamw_s / S);
    status = 0;
out:
    pl_train_free(t);
    pl_model_free(m);
    free(ids);
    free(tg);
    free(times);
    return status;
}
