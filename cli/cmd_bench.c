/* cmd_bench.c: `potluck bench-gen`: prompt-processing and generation speed
 * on fixed token ids, one JSON line, for bench/run.sh to compare with
 * llama.cpp in the same run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "../trainer/generate.h"

static const char *bench_help =
    "usage: potluck bench-gen --model PATH [--batch B] [--prompt-tokens N] [--gen-tokens G] [--threads T]\n"
    "                         [--gemm tiled|openblas]\n"
    "\n"
    "Processes B prompts of N fixed token ids ((i*7919) %% 40000 + 100, modulo the\n"
    "vocabulary) in one batch, then generates G tokens greedily for each (no stop\n"
    "token), and prints one JSON line (timing excludes model loading):\n"
    "  {\"batch\":B,\"prompt_tokens\":N,\"gen_tokens\":G,\"pp_tokens_per_s\":..,\"tg_tokens_per_s\":..}\n"
    "pp: B*N prompt tokens over the time of the batched prompt forward;\n"
    "tg: B*G tokens over the time of G decode steps of B tokens each (the first\n"
    "new token comes from the prompt forward; G+1 tokens are generated).\n"
    "--gemm openblas multiplies matrices with one threaded OpenBLAS sgemm call\n"
    "instead of potluck's thread-count independent tiles (core/gemm.h), to\n"
    "measure what the tiles cost; its bits depend on the thread count.\n"
    "Defaults: B=1, N=256, G=128, T=all cores, --gemm tiled.\n";

int cmd_bench_gen(int argc, char **argv) {
    const char *path = NULL;
    long B = 1, N = 256, G = 128, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(bench_help, stdout); return 0; }
        if (!strcmp(a, "--model")) { if (!v) return cli_fail("bench-gen: --model: expected a value"); path = v; i++; }
        else if (!strcmp(a, "--batch")) { if (cli_int(a, v, 1, 256, &B)) return 1; i++; }
        else if (!strcmp(a, "--prompt-tokens")) { if (cli_int(a, v, 1, 1 << 16, &N)) return 1; i++; }
        else if (!strcmp(a, "--gen-tokens")) { if (cli_int(a, v, 1, 1 << 16, &G)) return 1; i++; }
        else if (!strcmp(a, "--threads")) { if (cli_int(a, v, 1, 1024, &threads)) return 1; i++; }
        else if (!strcmp(a, "--gemm")) { if (cli_gemm_mode(a, v)) return 1; i++; }
        else return cli_fail("bench-gen: unknown option '%s' (see potluck bench-gen --help)", a);
    }
    if (!path) return cli_fail("bench-gen: --model PATH is required");
    cli_set_threads((int)threads);
    pl_err err = {0};
    pl_model *m;
    if (pl_model_load(&m, path, NULL, &err)) return cli_fail_err(&err);
    int32_t **p = calloc((size_t)B, sizeof *p), **out = calloc((size_t)B, sizeof *out);
    int *np = calloc((size_t)B, sizeof *np), *nout = calloc((size_t)B, sizeof *nout);
    int status = 1;
    if (!p || !out || !np || !nout) { status = cli_fail("out of memory"); goto done; }
    for (long b = 0; b < B; b++) {
        p[b] = malloc((size_t)N * sizeof(int32_t));
        if (!p[b]) { status = cli_fail("out of memory"); goto done; }
        for (long i = 0; i < N; i++) p[b][i] = (int32_t)(((i * 7919) % 40000 + 100) % m->cfg.vocab);
        np[b] = (int)N;
    }
    pl_gen_opts o = {.sampler = {.temperature = 0}, .max_tokens = (int)G + 1, .n_ctx = (int)(N + G + 1)};
    pl_gen_stats st;
    if (pl_generate(m, (int)B, (const int32_t *const *)p, np, &o, out, nout, &st, &err)) {
        status = cli_fail_err(&err);
        goto done;
    }
    printf("{\"batch\":%ld,\"prompt_tokens\":%ld,\"gen_tokens\":%ld,\"pp_tokens_per_s\":%.2f,\"tg_tokens_per_s\":%.2f}\n",
           B, N, G, st.prompt_tokens / st.prompt_seconds, st.decoded_tokens / st.gen_seconds);
    status = 0;
done:
    for (long b = 0; p && b < B; b++) free(p[b]);
    for (long b = 0; out && b < B; b++) free(out[b]);
    free(p); free(out); free(np); free(nout);
    pl_model_free(m);
    return status;
}
