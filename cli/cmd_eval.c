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
    "                     count, llama.cpp score, and each scoring's pick\n"
    "  --write-items FILE the items of the (one) --task as evaluated, as lm-eval JSONL\n"
    "                     (after --limit), for a peer to score the same items\n"
    "  --batch-tokens N   tokens per forward batch (default 1024)\n"
    "  --threads N        worker threads (default: all cores)\n"
    "  --quiet            no progress lines\n"
    "  --compare          print the table of the given results files (rows of all of them)\n";

typedef struct variant {
    const char *model, *adapter, *name;
    char *auto_name;
} variant;

/* the scorers' progress callback -> the progress line (core/progress.h) */
static void on_progress(void *u, int64_t done, int64_t total) {
    pl_progress *p = u;
    p->total = total;
    pl_progress_update(p, done);
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
        char *txt = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!txt) return -1;
        fprintf(f, "%s\n", txt);
        free(txt);
    }
    return 0;
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

int cmd_eval(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { fputs(eval_help, stdout); return 0; }
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--compare")) return do_compare(argc, argv);
    variant *vars = calloc((size_t)argc, sizeof *vars);
    const char **tasks = calloc((size_t)argc, sizeof *tasks), **datas = calloc((size_t)argc, sizeof *datas);
    int nv = 0, nt = 0, nd = 0, append = 0, quiet = 0, status = 1;
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
    if (!vars || !tasks || !datas || !rows) { status = cli_fail("out of memory"); goto done; }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--adapter") || !strcmp(a, "--as")) {
            if (!v) goto missing;
            if (!nv) { status = cli_fail("eval: %s comes after the MODEL it applies to", a); goto done; }
            if (a[2] == 'a' && a[3] == 'd') vars[nv - 1].adapter = v;
            else vars[nv - 1].name = v;
            i++;
        } else if (!strcmp(a, "--task")) { if (!v) goto missing; tasks[nt++] = v; i++; }
        else if (!strcmp(a, "--data")) { if (!v) goto missing; datas[nd++] = v; i++; }
        else if (!strcmp(a, "--text")) { if (!v) goto missing; text_path = v; i++; }
        else if (!strcmp(a, "--kl-base")) { if (!v) goto missing; kl_base = v; i++; }
        else if (!strcmp(a, "--ctx")) { if (cli_int(a, v, 4, 1 << 20, &ctx)) goto done; i++; }
        else if (!strcmp(a, "--limit")) { if (cli_int(a, v, 0, 1L << 40, &limit)) goto done; i++; }
        else if (!strcmp(a, "--seed")) { if (cli_int(a, v, 0, __LONG_MAX__, &seed)) goto done; i++; }
        else if (!strcmp(a, "--threads")) { if (cli_int(a, v, 1, 1024, &threads)) goto done; i++; }
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
    if (!nt && !nd && !text_path) { status = cli_fail("eval: give a --task FILE, a --data DIR or a --text FILE (see potluck eval --help)"); goto done; }
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
    if (items_path && nt != 1) { status = cli_fail("eval: --write-items needs exactly one --task"); goto done; }
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
    if (items_path && pl_mc_task_write_jsonl(&tk[0], items_path, &err)) { status = cli_fail_err(&err); free(hash); goto done; }
    if (!nv) { status = 0; free(hash); goto done; }
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
    if (vars) for (int v = 0; v < nv; v++) free(vars[v].auto_name);
    free(vars);
    free(tasks);
    free(datas);
    cJSON_Delete(rows);
    return status;
}
