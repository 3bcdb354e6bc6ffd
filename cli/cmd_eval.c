/* cmd_eval.c: `potluck eval`: several variants of a model (base, base +
 * adapter, exports, other models) on the same items, one table, and
 * results.json (docs/eval.md); `--compare` prints the table of results
 * files. The scoring lives in trainer/eval*.c. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../plugins/gen_task.h"
#include "../plugins/pipeline.h"
#include "../plugins/sandbox.h"
#include "../trainer/generate.h"
#include "../trainer/eval.h"
#include "../trainer/eval_results.h"
#include "cli.h"

static const char *eval_help =
    "usage: potluck eval MODEL [--adapter DIR] [--as NAME] [MODEL ...] (--task FILE | --data DIR | --text FILE)... [options]\n"
    "       potluck eval --compare RESULTS.json [RESULTS.json]...\n"
    "\n"
    "Evaluates each MODEL (a variant) on the same items and prints one table:\n"
    "a row per variant, a column per task and metric, each value with its\n"
    "standard error. See docs/eval.md.\n"
    "\n"
    "  MODEL              Hugging Face directory, GGUF file or llama2.c .bin, or a model\n"
    "                     name found in $POTLUCK_MODELS; repeat for more variants\n"
    "  --adapter DIR      a PEFT adapter (or a run directory: its newest adapter) merged\n"
    "                     into the MODEL just before it\n"
    "  --as NAME          the name of the MODEL just before it in the table and the rows\n"
    "                     (default: its file name, + the adapter's folder name)\n"
    "  --task FILE        a multiple-choice task: lm-eval JSONL lines {\"context\", \"choices\",\n"
    "                     \"gold\"} or llama.cpp's HellaSwag text (6 lines a task). Metrics:\n"
    "                     acc, acc_norm (as lm-evaluation-harness: summed log-likelihood of\n"
    "                     \" \" + choice after the context; acc_norm divides it by the\n"
    "                     choice's length in characters) and acc_llamacpp (llama.cpp's\n"
    "                     HellaSwag score: mean log-probability per token) (repeatable)\n"
    "  --task FILE.lua    a generative task written in Lua: prompts, generation settings and\n"
    "                     a scorer (exact, contains, regex, numeric, a Lua function or an LLM\n"
    "                     judge); runs sandboxed and confined as recipes do (docs/eval.md)\n"
    "  --judge MODEL      the judge model of every judge-scored .lua task (default: the\n"
    "                     task's own judge model, or the MODEL being evaluated)\n"
    "  --data DIR         held-out loss and perplexity on a sharded dataset: the tokens\n"
    "                     whose loss_mask is 1 (repeatable)\n"
    "  --text FILE        perplexity on a text file, as llama-perplexity: chunks of --ctx\n"
    "                     tokens, the second half of each scored\n"
    "  --ctx N            tokens per --text chunk (default 512)\n"
    "  --kl-base MODEL    with --text: also the KL divergence of each variant's next-token\n"
    "                     distribution from MODEL's (as llama-perplexity's KL-divergence mode):\n"
    "                     kl_mean, kl_p99, kl_max, same_top (argmaxes agree), ppl_base\n"
    "  --limit N          N items of each task (N samples of each --data): the first N of a\n"
    "                     permutation drawn from --seed, so the same N every time\n"
    "  --seed S           seed of the --limit subsets (default 1234)\n"
    "  --out FILE         write the rows as results.json (docs/eval.md)\n"
    "  --append           keep the rows already in --out and add these\n"
    "  --samples FILE     per-item scores as JSONL: every choice's log-likelihood, token\n"
    "                     count, llama.cpp score, and each scoring's pick; for .lua tasks\n"
    "                     the prompt, output, score (and the judge's reply)\n"
    "  --write-items FILE the items of the (one) --task as evaluated, as lm-eval JSONL\n"
    "                     (after --limit; a .lua task's items as JSON lines with their index),\n"
    "                     for a peer to score the same items\n"
    "  --batch-tokens N   tokens per forward batch (default 1024)\n"
    "  --threads N        worker threads (default: all cores)\n"
    "  --backend cpu|cuda where the models run (cpu; cuda: build/gpu/potluck, or build/emu/potluck emulated)\n"
    "  --quiet            no progress lines\n"
    "  --compare          print the table of the given results files (rows of all of them)\n"
    "\n"
    "Limits of the .lua tasks' sandboxed process (as for recipes):\n";

typedef struct variant {
    const char *model, *adapter, *name;
    char *auto_name;
} variant;

/* the scorers' progress callback -> the progress line (core/progress.h) */
static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void on_progress(void *u, int64_t done, int64_t total) {
    pl_progress *p = u;
    p->total = total;
    pl_progress_update(p, done);
}

/* o as one JSON line of f, then freed. */
static int put_line(FILE *f, cJSON *o) {
    char *txt = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!txt) return -1;
    fprintf(f, "%s\n", txt);
    free(txt);
    return 0;
}

static const char *base_of(const char *p) {
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') n--;
    const char *b = p + n;
    while (b > p && b[-1] != '/') b--;
    return b;
}

static char *auto_name(const variant *v) {
    char buf[512];
    const char *b = base_of(v->model);
    size_t n = strlen(b);
    while (n && b[n - 1] == '/') n--;
    if (v->adapter) {
        const char *a = base_of(v->adapter);
        size_t an = strlen(a);
        while (an && a[an - 1] == '/') an--;
        snprintf(buf, sizeof buf, "%.*s+%.*s", (int)n, b, (int)an, a);
    } else snprintf(buf, sizeof buf, "%.*s", (int)n, b);
    return strdup(buf);
}

static int write_samples(FILE *f, const char *vname, const pl_mc_task *t, const pl_mc_scores *s) {
    for (int64_t i = 0; i < t->n_items; i++) {
        const pl_mc_item *it = &t->items[i];
        cJSON *o = cJSON_CreateObject(), *ll = cJSON_CreateArray(), *nt = cJSON_CreateArray(), *lc = cJSON_CreateArray();
        cJSON_AddStringToObject(o, "variant", vname);
        cJSON_AddStringToObject(o, "task", t->name);
        cJSON_AddNumberToObject(o, "index", (double)it->index);
        cJSON_AddNumberToObject(o, "gold", it->gold);
        for (int c = 0; c < it->n_choices; c++) {
            cJSON_AddItemToArray(ll, cJSON_CreateNumber(s->ll[s->off[i] + c]));
            cJSON_AddItemToArray(nt, cJSON_CreateNumber(s->n_tok[s->off[i] + c]));
            double v = s->lc_mean[s->off[i] + c];
            cJSON_AddItemToArray(lc, isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull());
        }
        cJSON_AddItemToObject(o, "ll", ll);
        cJSON_AddItemToObject(o, "n_tokens", nt);
        cJSON_AddItemToObject(o, "llamacpp", lc);
        cJSON_AddNumberToObject(o, "pred", s->pred[i]);
        cJSON_AddNumberToObject(o, "pred_norm", s->pred_norm[i]);
        cJSON_AddNumberToObject(o, "pred_llamacpp", s->pred_lc[i]);
        if (put_line(f, o)) return -1;
    }
    return 0;
}

/* One generative task's records of one variant: rows and --samples lines. */
static void gen_rows(cJSON *rows, const variant *V, const pl_gen_task *t, const char *hash, const cJSON *recs, int quiet,
                     double seconds) {
    int64_t n = cJSON_GetArraySize(recs), k = 0, unparsed = 0;
    double *x = malloc((size_t)(n ? n : 1) * sizeof *x), *u = malloc((size_t)(n ? n : 1) * sizeof *u);
    const char *first_bad = NULL, *first_why = NULL;
    const cJSON *r;
    cJSON_ArrayForEach(r, recs) {
        const cJSON *sc = cJSON_GetObjectItemCaseSensitive(r, "score");
        int bad = !cJSON_IsNumber(sc);
        if (u) u[k + unparsed] = bad;
        if (bad) {
            if (!first_bad) {
                first_bad = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "judge"));
                first_why = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "unparsed"));
            }
            unparsed++;
        } else if (x) x[k++] = sc->valuedouble;
    }
    double mean = NAN, se = NAN;
    if (x && k > 0) pl_eval_mean_se(x, k, &mean, &se);
    cJSON_AddItemToArray(rows, pl_eval_row(V->name, V->model, V->adapter, t->name, hash, k, t->metric, mean, se));
    if (!strcmp(t->scorer, "judge")) {
        char m[300];
        double um = NAN, us = NAN;
        if (u && n > 0) pl_eval_mean_se(u, n, &um, &us);
        snprintf(m, sizeof m, "%s_unparsed", t->metric);
        cJSON_AddItemToArray(rows, pl_eval_row(V->name, V->model, V->adapter, t->name, hash, n, m, um, us));
    }
    if (!quiet) {
        if (k > 0)
            fprintf(stderr, "  eval %s on %s: %lld items generated and scored in %.1f s: %s %.4f ± %.4f\n", V->name, t->name,
                    (long long)n, seconds, t->metric, mean, se);
        else
            fprintf(stderr, "  eval %s on %s: %lld items generated in %.1f s: %s n/a (no item could be scored)\n", V->name,
                    t->name, (long long)n, seconds, t->metric);
        if (unparsed) {
            char shown[64];
            snprintf(shown, sizeof shown, "%s", first_bad ? first_bad : "");
            for (char *c = shown; *c; c++) if (*c == '\n' || *c == '\r' || *c == '\t') *c = ' ';
            fprintf(stderr, "  eval %s on %s: %lld of %lld judge replies unparsable, left out of %s (first: %s: \"%s\")\n",
                    V->name, t->name, (long long)unparsed, (long long)n, t->metric, first_why ? first_why : "?", shown);
        }
    }
    free(x);
    free(u);
}

static int write_gen_samples(FILE *f, const char *vname, const pl_gen_task *t, const cJSON *recs) {
    const cJSON *r;
    cJSON_ArrayForEach(r, recs) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "variant", vname);
        cJSON_AddStringToObject(o, "task", t->name);
        const cJSON *ix = cJSON_GetObjectItemCaseSensitive(r, "index");
        cJSON_AddItemToObject(o, "index", cJSON_Duplicate(ix, 1));
        static const char *const keys[] = {"prompt", "output", "score", "judge", "unparsed"};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, keys[k]);
            if (v) cJSON_AddItemToObject(o, keys[k], cJSON_Duplicate(v, 1));
            else if (!strcmp(keys[k], "score")) cJSON_AddNullToObject(o, "score");
            if (!strcmp(keys[k], "prompt") && cJSON_IsNumber(ix)) {
                const cJSON *tg = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(t->items, (int)ix->valuedouble), "target");
                if (tg) cJSON_AddItemToObject(o, "target", cJSON_Duplicate(tg, 1));
            }
        }
        if (put_line(f, o)) return -1;
    }
    return 0;
}

/* The chosen items of a .lua task as JSON lines with their index, atomically. */
static int write_gen_items(const pl_gen_task *t, const int64_t *sel, int64_t n, const char *path, pl_err *err) {
    size_t pn = strlen(path) + 8;
    char *tmp = malloc(pn);
    if (!tmp) return pl_err_set(err, PL_ENOMEM, "out of memory");
    snprintf(tmp, pn, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) { free(tmp); return pl_err_set(err, PL_EIO, "%s: cannot write", path); }
    int bad = 0;
    for (int64_t i = 0; i < n && !bad; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "index", (double)sel[i]);
        const cJSON *it = cJSON_GetArrayItem(t->items, (int)sel[i]), *kv;
        cJSON_ArrayForEach(kv, it) if (strcmp(kv->string, "index")) cJSON_AddItemToObject(o, kv->string, cJSON_Duplicate(kv, 1));
        char *txt = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        bad = !txt || fprintf(f, "%s\n", txt) < 0;
        free(txt);
    }
    bad |= fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        unlink(tmp);
        free(tmp);
        return pl_err_set(err, PL_EIO, "%s: write failed", path);
    }
    free(tmp);
    return PL_OK;
}

static int do_compare(int argc, char **argv) {
    cJSON *rows = cJSON_CreateArray();
    pl_err err = {0};
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--compare")) continue;
        if (argv[i][0] == '-') { cJSON_Delete(rows); return cli_fail("eval --compare: unknown option '%s' (see potluck eval --help)", argv[i]); }
        if (pl_eval_rows_load(argv[i], rows, &err)) { cJSON_Delete(rows); return cli_fail_err(&err); }
        n++;
    }
    if (!n) { cJSON_Delete(rows); return cli_fail("eval --compare: give one or more results.json files"); }
    char *tab = pl_eval_table(rows);
    cJSON_Delete(rows);
    if (!tab) return cli_fail("out of memory");
    fputs(tab, stdout);
    free(tab);
    return 0;
}

/* On the CUDA backend, before the first item: the model and eval's largest
 * forward (a batch of --batch-tokens tokens, or a --text chunk of --ctx) by
 * the generation plan against the device's memory, so a model that cannot
 * fit is refused at once instead of after the tasks before it. */
static int eval_check_device(const pl_model *m, const char *name, long batch_tokens, int text_ctx, pl_err *err) {
    int n_ctx = batch_tokens > 0 ? (int)batch_tokens : 1024;
    if (text_ctx > n_ctx) n_ctx = text_ctx;
    if (n_ctx > m->cfg.max_seq) n_ctx = m->cfg.max_seq;
    pl_err e = {0};
    if (!pl_generate_check_device(m, 1, n_ctx, n_ctx, &e)) return PL_OK;
    return pl_err_set(err, e.code,
                      "eval: %s: a batch of %d tokens on the cuda backend %s: --backend cpu, a smaller --batch-tokens, "
                      "or a smaller model (potluck plan --generate --backend cuda shows every buffer)",
                      name, n_ctx, e.msg);
}

int cmd_eval(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(eval_help, stdout);
            fputs(pl_lua_limits_help(), stdout);
            return 0;
        }
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--compare")) return do_compare(argc, argv);
    variant *vars = calloc((size_t)argc, sizeof *vars);
    const char **tasks = calloc((size_t)argc, sizeof *tasks), **datas = calloc((size_t)argc, sizeof *datas);
    const char **gtasks = calloc((size_t)argc, sizeof *gtasks);
    int nv = 0, nt = 0, nd = 0, ngt = 0, append = 0, quiet = 0, status = 1;
    const char *judge_arg = NULL;
    pl_gen_task_opts go = {0};
    pl_lua_limits_default(&go.limits);
    pl_gen_task *gt = NULL;
    int64_t **gsel = NULL, *gn = NULL;
    char (*ghash)[65] = NULL;
    char **gjudge = NULL;
    cJSON **grec = NULL;   /* [v * ngt + g]: the records of variant v on task g */
    double *gsec = NULL;
    long limit = 0, seed = 1234, threads = 0, batch_tokens = 0;
    const char *out_path = NULL, *samples_path = NULL, *items_path = NULL, *text_path = NULL, *kl_base = NULL;
    long ctx = 512;
    char *text = NULL;
    size_t text_len = 0;
    pl_model *ref = NULL;
    pl_tokenizer *ref_tok = NULL;
    pl_mc_task *tk = NULL;
    cJSON *rows = cJSON_CreateArray();
    FILE *sf = NULL;
    char *sf_tmp = NULL;
    pl_err err = {0};
    if (!vars || !tasks || !datas || !gtasks || !rows) { status = cli_fail("out of memory"); goto done; }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int used = 0;
        if (pl_lua_limits_flag(&go.limits, argc - i, argv + i, &used, &err)) { status = cli_fail_err(&err); goto done; }
        if (used) { i += used - 1; continue; }
        if (!strcmp(a, "--adapter") || !strcmp(a, "--as")) {
            if (!v) goto missing;
            if (!nv) { status = cli_fail("eval: %s comes after the MODEL it applies to", a); goto done; }
            if (a[2] == 'a' && a[3] == 'd') vars[nv - 1].adapter = v;
            else vars[nv - 1].name = v;
            i++;
        } else if (!strcmp(a, "--task")) {
            if (!v) goto missing;
            if (pl_gen_task_is_lua(v)) gtasks[ngt++] = v;
            else tasks[nt++] = v;
            i++;
        }
        else if (!strcmp(a, "--judge")) { if (!v) goto missing; judge_arg = v; i++; }
        else if (!strcmp(a, "--data")) { if (!v) goto missing; datas[nd++] = v; i++; }
        else if (!strcmp(a, "--text")) { if (!v) goto missing; text_path = v; i++; }
        else if (!strcmp(a, "--kl-base")) { if (!v) goto missing; kl_base = v; i++; }
        else if (!strcmp(a, "--ctx")) { if (cli_int(a, v, 4, 1 << 20, &ctx)) goto done; i++; }
        else if (!strcmp(a, "--limit")) { if (cli_int(a, v, 0, 1L << 40, &limit)) goto done; i++; }
        else if (!strcmp(a, "--seed")) { if (cli_int(a, v, 0, __LONG_MAX__, &seed)) goto done; i++; }
        else if (!strcmp(a, "--threads")) { if (cli_int(a, v, 1, 1024, &threads)) goto done; i++; }
        else if (!strcmp(a, "--backend")) {
            if (!v) goto missing;
            pl_err be_err = {0};
            if (pl_backend_set_default(v, &be_err)) { status = cli_fail_err(&be_err); goto done; }
            i++;
        }
        else if (!strcmp(a, "--batch-tokens")) { if (cli_int(a, v, 16, 1 << 20, &batch_tokens)) goto done; i++; }
        else if (!strcmp(a, "--out")) { if (!v) goto missing; out_path = v; i++; }
        else if (!strcmp(a, "--samples")) { if (!v) goto missing; samples_path = v; i++; }
        else if (!strcmp(a, "--write-items")) { if (!v) goto missing; items_path = v; i++; }
        else if (!strcmp(a, "--append")) append = 1;
        else if (!strcmp(a, "--quiet")) quiet = 1;
        else if (a[0] == '-' && a[1]) { status = cli_fail("eval: unknown option '%s' (see potluck eval --help)", a); goto done; }
        else vars[nv++].model = a;
        continue;
    missing:
        status = cli_fail("eval: %s: expected a value", a);
        goto done;
    }
    if (!nv && !items_path) { status = cli_fail("eval: give a MODEL (see potluck eval --help)"); goto done; }
    if (!nt && !ngt && !nd && !text_path) { status = cli_fail("eval: give a --task FILE, a --data DIR or a --text FILE (see potluck eval --help)"); goto done; }
    if (kl_base && !text_path) { status = cli_fail("eval: --kl-base needs --text FILE"); goto done; }
    if (text_path) {
        FILE *tf = fopen(text_path, "rb");
        if (!tf) { status = cli_fail("eval: --text %s: cannot open", text_path); goto done; }
        size_t cap = 1 << 16;
        text = malloc(cap);
        while (text) {
            size_t k = fread(text + text_len, 1, cap - text_len, tf);
            text_len += k;
            if (k == 0) break;
            if (text_len == cap) {
                char *nt2 = cap < ((size_t)1 << 30) ? realloc(text, cap * 2) : NULL;
                if (!nt2) { free(text); text = NULL; break; }
                text = nt2;
                cap *= 2;
            }
        }
        fclose(tf);
        if (!text) { status = cli_fail("eval: --text %s: too large or out of memory", text_path); goto done; }
    }
    if (items_path && nt + ngt != 1) { status = cli_fail("eval: --write-items needs exactly one --task"); goto done; }
    if (append && !out_path) { status = cli_fail("eval: --append needs --out FILE"); goto done; }
    cli_set_threads((int)threads);
    /* tasks first: a bad task file fails before any model loads */
    tk = calloc((size_t)(nt ? nt : 1), sizeof *tk);
    if (!tk) { status = cli_fail("out of memory"); goto done; }
    char (*hash)[65] = calloc((size_t)(nt ? nt : 1), sizeof *hash);
    if (!hash) { status = cli_fail("out of memory"); goto done; }
    for (int t = 0; t < nt; t++) {
        if (pl_mc_task_load(&tk[t], tasks[t], &err) || pl_mc_task_limit(&tk[t], limit, (uint64_t)seed, &err)) {
            status = cli_fail_err(&err);
            free(hash);
            goto done;
        }
        pl_mc_task_hash(&tk[t], hash[t]);
    }
    /* generative tasks: each file evaluated in a sandboxed, confined child */
    go.threads = (int)threads;
    go.quiet = quiet;
    gt = calloc((size_t)(ngt ? ngt : 1), sizeof *gt);
    gsel = calloc((size_t)(ngt ? ngt : 1), sizeof *gsel);
    gn = calloc((size_t)(ngt ? ngt : 1), sizeof *gn);
    ghash = calloc((size_t)(ngt ? ngt : 1), sizeof *ghash);
    gjudge = calloc((size_t)(ngt ? ngt : 1), sizeof *gjudge);
    grec = calloc((size_t)(nv ? nv : 1) * (size_t)(ngt ? ngt : 1), sizeof *grec);
    gsec = calloc((size_t)(nv ? nv : 1) * (size_t)(ngt ? ngt : 1), sizeof *gsec);
    if (!gt || !gsel || !gn || !ghash || !gjudge || !grec || !gsec) { status = cli_fail("out of memory"); free(hash); goto done; }
    for (int g = 0; g < ngt; g++) {
        if (pl_gen_task_load(&gt[g], gtasks[g], &go, &err) ||
            pl_eval_subset(gt[g].n_items, limit, (uint64_t)seed, &gsel[g], &gn[g], &err)) {
            status = cli_fail_err(&err);
            free(hash);
            goto done;
        }
        pl_gen_task_hash(&gt[g], gsel[g], gn[g], ghash[g]);
        const char *jm = !strcmp(gt[g].scorer, "judge") ? (judge_arg ? judge_arg : gt[g].judge) : NULL;
        if (jm && (judge_arg ? cli_model_path(jm, &gjudge[g], &err) : pl_model_resolve(jm, 0, &gjudge[g], &err))) {
            pl_err_prefix(&err, "%s: judge model", gtasks[g]);
            status = cli_fail_err(&err);
            free(hash);
            goto done;
        }
    }
    if (items_path && nt && pl_mc_task_write_jsonl(&tk[0], items_path, &err)) { status = cli_fail_err(&err); free(hash); goto done; }
    if (items_path && ngt && write_gen_items(&gt[0], gsel[0], gn[0], items_path, &err)) { status = cli_fail_err(&err); free(hash); goto done; }
    if (!nv) { status = 0; free(hash); goto done; }
    /* every task child forks before this process loads a model: libgomp is
     * not fork-safe once its thread pool exists */
    for (int v = 0; v < nv && ngt; v++) {
        variant *V = &vars[v];
        if (!V->name) V->name = V->auto_name = auto_name(V);
        char *resolved = NULL;
        if (cli_model_path(V->model, &resolved, &err)) { status = cli_fail_err(&err); free(hash); goto done; }
        for (int g = 0; g < ngt; g++) {
            if (!quiet) fprintf(stderr, "  eval %s on %s: generating %lld items\n", V->name, gt[g].name, (long long)gn[g]);
            double t0 = mono();
            int rc = pl_gen_task_run(&gt[g], resolved, V->adapter, gjudge[g] ? gjudge[g] : NULL, gsel[g], gn[g], seed, &go,
                                     &grec[v * ngt + g], &err);
            gsec[v * ngt + g] = mono() - t0;
            if (rc) { free(resolved); status = cli_fail_err(&err); free(hash); goto done; }
        }
        free(resolved);
    }
    if (append && access(out_path, F_OK) == 0 && pl_eval_rows_load(out_path, rows, &err)) { status = cli_fail_err(&err); free(hash); goto done; }
    if (samples_path) {
        size_t n = strlen(samples_path) + 16;
        sf_tmp = malloc(n);
        if (sf_tmp) snprintf(sf_tmp, n, "%s.tmp", samples_path);
        if (!sf_tmp || !(sf = fopen(sf_tmp, "w"))) { status = cli_fail("eval: --samples %s: cannot write", samples_path); free(hash); goto done; }
    }
    if (kl_base) {
        char *rp = NULL;
        if (cli_model_path(kl_base, &rp, &err) || pl_model_load(&ref, rp, NULL, &err) || pl_model_tokenizer(ref, NULL, &ref_tok, &err)) {
            free(rp);
            status = cli_fail_err(&err);
            free(hash);
            goto done;
        }
        free(rp);
    }
    pl_progress pg = {.mode = quiet ? PL_PROGRESS_OFF : PL_PROGRESS_AUTO};
    pl_eval_opts eo = {.batch_tokens = (int)batch_tokens, .progress = on_progress, .user = &pg};
    for (int v = 0; v < nv; v++) {
        variant *V = &vars[v];
        if (!V->name) V->name = V->auto_name = auto_name(V);
        char *resolved = NULL;
        pl_model *m = NULL;
        pl_tokenizer *tok = NULL;
        if (cli_model_path(V->model, &resolved, &err) || pl_model_load(&m, resolved, NULL, &err) ||
            pl_model_tokenizer(m, NULL, &tok, &err) || (V->adapter && pl_eval_apply_adapter(m, V->adapter, &err))) {
            free(resolved);
            pl_tokenizer_free(tok);
            pl_model_free(m);
            status = cli_fail_err(&err);
            free(hash);
            goto done;
        }
        free(resolved);
        if (eval_check_device(m, V->name, batch_tokens, text_path ? (int)ctx : 0, &err) ||
            (ref && v == 0 && eval_check_device(ref, "the --kl-base model", batch_tokens, (int)ctx, &err))) {
            pl_tokenizer_free(tok);
            pl_model_free(m);
            status = cli_fail_err(&err);
            free(hash);
            goto done;
        }
        int rc = 0;
        for (int t = 0; t < nt && !rc; t++) {
            pl_mc_scores s;
            char what[300];
            snprintf(what, sizeof what, "eval %s on %s", V->name, tk[t].name);
            pl_progress_begin(&pg, what, tk[t].n_items, "items");
            if ((rc = pl_mc_score(m, tok, &tk[t], &eo, &s, &err))) { pl_progress_clear(&pg); break; }
            int64_t n = tk[t].n_items;
            cJSON_AddItemToArray(rows, pl_eval_row(V->name, V->model, V->adapter, tk[t].name, hash[t], n, "acc", s.acc, s.acc_se));
            cJSON_AddItemToArray(rows, pl_eval_row(V->name, V->model, V->adapter, tk[t].name, hash[t], n, "acc_norm", s.acc_norm, s.acc_norm_se));
            cJSON_AddItemToArray(rows, pl_eval_row(V->name, V->model, V->adapter, tk[t].name, hash[t], n, "acc_llamacpp", s.acc_lc, s.acc_lc_se));
            pl_progress_note(&pg, "%lld tokens", (long long)s.tokens);
            pl_progress_end(&pg);
            if (sf) write_samples(sf, V->name, &tk[t], &s);
            pl_mc_scores_free(&s);
        }
        for (int g = 0; g < ngt && !rc; g++) {
            gen_rows(rows, V, &gt[g], ghash[g], grec[v * ngt + g], quiet, gsec[v * ngt + g]);
            if (sf) write_gen_samples(sf, V->name, &gt[g], grec[v * ngt + g]);
        }
        for (int d = 0; d < nd && !rc; d++) {
            pl_loss_result lr;
            char what[300];
            snprintf(what, sizeof what, "eval %s on %s", V->name, base_of(datas[d]));
            pl_progress_begin(&pg, what, 0, "samples");
            if ((rc = pl_eval_loss_data(m, datas[d], limit, (uint64_t)seed, &eo, &lr, &err))) { pl_progress_clear(&pg); break; }
            cJSON_AddItemToArray(rows, pl_eval_row(V->name, V->model, V->adapter, base_of(datas[d]), NULL, lr.tokens, "loss", lr.loss, lr.loss_se));
            cJSON_AddItemToArray(rows, pl_eval_row(V->name, V->model, V->adapter, base_of(datas[d]), NULL, lr.tokens, "ppl", lr.ppl, lr.ppl_se));
            pl_progress_note(&pg, "%lld scored tokens", (long long)lr.tokens);
            pl_progress_end(&pg);
        }
        if (!rc && text_path) {
            pl_text_result tr;
            char what[300];
            const char *tn = base_of(text_path);
            snprintf(what, sizeof what, "%s on %s", V->name, tn);
            char label[320];
            snprintf(label, sizeof label, "eval %s", what);
            pl_progress_begin(&pg, label, 0, "chunks");
            rc = pl_eval_text(m, ref_tok ? ref_tok : tok, ref, text, text_len, (int)ctx, &eo, &tr, &err);
            if (rc) pl_err_prefix(&err, "%s", text_path);
            if (rc) pl_progress_clear(&pg);
            else pl_progress_end(&pg);
            if (!rc) {
                cJSON_AddItemToArray(rows, pl_eval_row(V->name, V->model, V->adapter, tn, NULL, tr.tokens, "ppl", tr.ppl, tr.ppl_se));
                if (ref) {
                    cJSON_AddItemToArray(rows, pl_eval_row(V->name, V->model, V->adapter, tn, NULL, tr.tokens, "ppl_base", tr.ppl_ref, tr.ppl_ref_se));
                    cJSON_AddItemToArray(rows, pl_eval_row(V->name, V->model, V->adapter, tn, NULL, tr.tokens, "kl_mean", tr.kl_mean, tr.kl_se));
                    cJSON_AddItemToArray(rows, pl_eval_row(V->name, V->model, V->adapter, tn, NULL, tr.tokens, "kl_p99", tr.kl_p99, NAN));
                    cJSON_AddItemToArray(rows, pl_eval_row(V->name, V->model, V->adapter, tn, NULL, tr.tokens, "kl_max", tr.kl_max, NAN));
                    cJSON_AddItemToArray(rows, pl_eval_row(V->name, V->model, V->adapter, tn, NULL, tr.tokens, "same_top", tr.same_top, tr.same_top_se));
                }
                if (!quiet) {
                    fprintf(stderr, "  eval %s: %lld chunks of %ld, %lld scored tokens in %.1f s: ppl %.4f ± %.4f", what,
                            (long long)tr.chunks, ctx, (long long)tr.tokens, tr.seconds, tr.ppl, tr.ppl_se);
                    if (ref)
                        fprintf(stderr, "; base ppl %.4f; KL mean %.6f ± %.6f, median %.6f, p90 %.6f, p95 %.6f, p99 %.6f, max %.6f; same top %.2f%% ± %.2f%%",
                                tr.ppl_ref, tr.kl_mean, tr.kl_se, tr.kl_p50, tr.kl_p90, tr.kl_p95, tr.kl_p99, tr.kl_max,
                                100 * tr.same_top, 100 * tr.same_top_se);
                    fputc('\n', stderr);
                }
            }
        }
        pl_tokenizer_free(tok);
        pl_model_free(m);
        if (rc) { status = cli_fail_err(&err); free(hash); goto done; }
    }
    free(hash);
    if (sf) {
        int bad = fflush(sf) != 0 || fsync(fileno(sf)) != 0;
        bad |= fclose(sf) != 0;
        sf = NULL;
        if (bad || rename(sf_tmp, samples_path) != 0) { status = cli_fail("eval: --samples %s: write failed", samples_path); goto done; }
    }
    if (out_path && pl_eval_rows_write(out_path, rows, &err)) { status = cli_fail_err(&err); goto done; }
    char *tab = pl_eval_table(rows);
    if (tab) fputs(tab, stdout);
    free(tab);
    status = 0;
done:
    free(text);
    pl_tokenizer_free(ref_tok);
    pl_model_free(ref);
    if (sf) { fclose(sf); unlink(sf_tmp); }
    free(sf_tmp);
    if (tk) for (int t = 0; t < nt; t++) pl_mc_task_free(&tk[t]);
    free(tk);
    for (int g = 0; gt && g < ngt; g++) pl_gen_task_free(&gt[g]);
    for (int g = 0; gsel && g < ngt; g++) free(gsel[g]);
    for (int g = 0; gjudge && g < ngt; g++) free(gjudge[g]);
    for (int k = 0; grec && k < nv * ngt; k++) cJSON_Delete(grec[k]);
    free(gt);
    free(gsel);
    free(gn);
    free(ghash);
    free(gjudge);
    free(grec);
    free(gsec);
    free(gtasks);
    if (vars) for (int v = 0; v < nv; v++) free(vars[v].auto_name);
    free(vars);
    free(tasks);
    free(datas);
    cJSON_Delete(rows);
    return status;
}
