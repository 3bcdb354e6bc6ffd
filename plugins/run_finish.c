/* run_finish.c: the exported GGUF's drift, the report and the summary at
 * the end of `potluck run` (run_finish.h). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/json.h"
#include "../datasets/import.h"
#include "../trainer/eval_results.h"
#include "../trainer/eval_side.h"
#include "report.h"
#include "run_finish.h"

#define KL_TASK "export-kl"
#define KL_TEXT_MAX ((size_t)16 << 10)

static int nonempty(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && (S_ISDIR(st.st_mode) || st.st_size > 0);
}

/* Text of a JSONL file's samples (any importer format), appended to buf. */
static void add_text(const char *path, char *buf, size_t *len, size_t cap) {
    pl_import im = {0};
    pl_import_opts io = {0};
    pl_err e = {0};
    if (nonempty(path) && pl_import_file(path, &io, &im, &e) == 0) {
        for (size_t i = 0; i < im.n && *len < cap; i++) {
            const pl_example *x = &im.ex[i];
            const char *parts[3] = {x->text, x->input, x->output};
            int np = 3;
            for (int k = 0; k < x->chat.n + np; k++) {
                const char *s = k < x->chat.n ? x->chat.msg[k].content : parts[k - x->chat.n];
                if (!s || !*s) continue;
                size_t l = strlen(s);
                if (l > cap - *len - 2) l = cap - *len - 2;
                memcpy(buf + *len, s, l);
                *len += l;
                buf[(*len)++] = '\n';
                buf[*len] = 0;
                if (*len + 2 >= cap) break;
            }
        }
    }
    pl_import_free(&im);
}

int pl_run_export_kl(const char *run_dir, const char *base, const char *adapter, const cJSON *plan, int quiet,
                     pl_err *err) {
    const cJSON *ex = cJSON_GetObjectItem(plan, "export"), *f;
    int gguf = 0, merged = 0;
    cJSON_ArrayForEach(f, cJSON_GetObjectItem(ex, "formats")) {
        const char *s = cJSON_GetStringValue(f);
        if (s && !strcmp(s, "gguf")) gguf = 1;
        if (s && !strcmp(s, "merged")) merged = 1;
    }
    const cJSON *kl = cJSON_GetObjectItem(ex, "kl");
    if (!gguf || cJSON_IsFalse(kl) || !base) return PL_OK;
    char gp[PATH_MAX + 32], mp[PATH_MAX + 32], rp[PATH_MAX + 32], tp[PATH_MAX + 64];
    snprintf(gp, sizeof gp, "%s/export/model.gguf", run_dir);
    snprintf(mp, sizeof mp, "%s/export/merged", run_dir);
    snprintf(rp, sizeof rp, "%s/results.json", run_dir);
    char *text = malloc(KL_TEXT_MAX + 1);
    size_t len = 0;
    if (!text) return pl_err_set(err, PL_ENOMEM, "export: out of memory");
    text[0] = 0;
    snprintf(tp, sizeof tp, "%s/stages/shard/eval.jsonl", run_dir);
    add_text(tp, text, &len, KL_TEXT_MAX);
    snprintf(tp, sizeof tp, "%s/stages/shard/train.jsonl", run_dir);
    add_text(tp, text, &len, KL_TEXT_MAX);
    const char *gt = cJSON_GetStringValue(cJSON_GetObjectItem(ex, "gguf_type"));
    char name[64];
    snprintf(name, sizeof name, "gguf %s", gt ? gt : "f16");
    cJSON *rows = cJSON_CreateArray(), *kept = cJSON_CreateArray();
    int rc = PL_OK;
    /* no merged export: the reference is base + adapter, merged in memory
     * as the GGUF export merged it */
    if (!adapter && !merged) rc = pl_err_set(err, PL_EINVAL, "export.kl: no adapter to merge into the reference");
    else rc = pl_eval_export_kl(merged ? mp : base, merged ? NULL : adapter, gp, name, KL_TASK, text, len, rows, err);
    if (rc == PL_EUNSUPPORTED) { /* too little text for one chunk: no KL rows, the export stands */
        if (!quiet) printf("  export: no KL of the GGUF: %s\n", err->msg);
        pl_err_clear(err);
        rc = PL_OK;
    }
    free(text);
    /* results.json: this run's rows, without an earlier export's */
    cJSON *res = NULL;
    if (!rc && nonempty(rp)) rc = pl_json_load(rp, (size_t)64 << 20, &res, err);
    if (!rc && !res) res = cJSON_CreateObject();
    if (!rc) {
        cJSON *old = cJSON_DetachItemFromObject(res, "rows"), *r;
        cJSON_ArrayForEach(r, old) {
            const char *t = cJSON_GetStringValue(cJSON_GetObjectItem(r, "task"));
            if (!t || strcmp(t, KL_TASK)) cJSON_AddItemToArray(kept, cJSON_Duplicate(r, 1));
        }
        cJSON_Delete(old);
        cJSON_ArrayForEach(r, rows) cJSON_AddItemToArray(kept, cJSON_Duplicate(r, 1));
        cJSON_AddItemToObject(res, "rows", kept);
        kept = NULL;
        rc = pl_json_write(rp, res, err);
    }
    if (!rc && !quiet) {
        char *tab = pl_eval_table(rows);
        if (tab) printf("%s", tab);
        free(tab);
    }
    cJSON_Delete(res);
    cJSON_Delete(kept);
    cJSON_Delete(rows);
    return rc;
}

/* ------------------------------------------------------------ summary */

static const cJSON *row_of(const cJSON *rows, const char *variant, const char *task, const char *metric) {
    const cJSON *r;
    cJSON_ArrayForEach(r, rows) {
        const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(r, "variant"));
        const char *t = cJSON_GetStringValue(cJSON_GetObjectItem(r, "task"));
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(r, "metric"));
        if (v && t && m && (!variant || !strcmp(v, variant)) && !strcmp(t, task) && !strcmp(m, metric)) return r;
    }
    return NULL;
}

static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* "0.370 ± 0.049 (base) -> 0.360 ± 0.048 (fine-tuned): ..." for one
 * multiple-choice metric of a task scored on both. */
static void say_mc(const cJSON *rows, const char *task, const char *metric) {
    const cJSON *b = row_of(rows, "base", task, metric), *t = row_of(rows, "fine-tuned", task, metric);
    if (!b || !t) return;
    double vb = num(b, "value"), vt = num(t, "value"), sb = num(b, "stderr"), st = num(t, "stderr");
    if (!isfinite(vb) || !isfinite(vt)) return;
    double se = sqrt((isfinite(sb) ? sb * sb : 0) + (isfinite(st) ? st * st : 0)), d = vt - vb;
    const char *verdict = se > 0 && fabs(d) > 2 * se ? (d > 0 ? "better, by more than two standard errors"
                                                              : "worse, by more than two standard errors")
                                                     : "no change beyond two standard errors";
    printf("  %s (%.0f items) %s: %.3f ± %.3f (base) -> %.3f ± %.3f (fine-tuned), %+.3f: %s\n", task, num(t, "n"), metric, vb,
           isfinite(sb) ? sb : 0, vt, isfinite(st) ? st : 0, d, verdict);
}

int pl_run_finish(const char *run_dir, const char *recipe, int quiet, pl_err *err) {
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/train/metrics.jsonl", run_dir);
    if (!nonempty(p)) return PL_OK; /* stopped before training: no report, no summary */
    snprintf(p, sizeof p, "%s/report.html", run_dir);
    int rc = pl_report_write(run_dir, p, err);
    if (rc) return pl_err_prefix(err, "report");
    if (quiet) return PL_OK;
    cJSON *res = NULL;
    pl_err e2 = {0};
    snprintf(p, sizeof p, "%s/results.json", run_dir);
    if (nonempty(p)) pl_json_load(p, (size_t)64 << 20, &res, &e2);
    const cJSON *rows = cJSON_GetObjectItem(res, "rows");
    printf("\nsummary: %s\n", run_dir);
    double b = num(res, "base_eval_loss"), t = num(res, "eval_loss");
    if (isfinite(b) && isfinite(t))
        printf("  held-out loss %.4f (base) -> %.4f (fine-tuned): %.1f%% %s; perplexity %.2f -> %.2f\n", b, t,
               fabs(100 * (t - b) / b), t <= b ? "lower" : "higher", exp(b), exp(t));
    else if (isfinite(num(res, "final_train_loss")))
        printf("  no held-out split: final training loss %.4f\n", num(res, "final_train_loss"));
    /* multiple-choice tasks: each task scored on both */
    const cJSON *r;
    cJSON_ArrayForEach(r, rows) {
        const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(r, "variant"));
        const char *task = cJSON_GetStringValue(cJSON_GetObjectItem(r, "task"));
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(r, "metric"));
        if (v && task && m && !strcmp(v, "fine-tuned") && !strcmp(m, "acc")) {
            say_mc(rows, task, "acc");
            say_mc(rows, task, "acc_norm");
        }
    }
    const cJSON *kl = row_of(rows, NULL, KL_TASK, "kl_mean");
    if (kl) {
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(kl, "variant"));
        const cJSON *st = row_of(rows, name, KL_TASK, "same_top"), *pp = row_of(rows, name, KL_TASK, "ppl"),
                    *pb = row_of(rows, name, KL_TASK, "ppl_base");
        printf("  %s export against the merged model: KL %.4f nats/token, same top token %.1f%%, perplexity %.3f vs %.3f "
               "(%.0f tokens)\n",
               name, num(kl, "value"), 100 * num(st, "value"), num(pp, "value"), num(pb, "value"), num(kl, "n"));
    }
    printf("  files:\n");
    static const char *const F[][2] = {
        {"data/train", "the training set (HDF5 shards; `potluck data verify` checks them)"},
        {"data/eval", "the held-out set"},
        {"train", "checkpoints, metrics.jsonl, the adapter"},
        {"export/adapter", "the PEFT adapter (transformers + peft load it)"},
        {"export/merged", "the merged model (safetensors)"},
        {"export/model.gguf", "the GGUF (llama.cpp, Ollama, LM Studio)"},
        {"results.json", "every eval number (docs/eval.md; a peer can append rows)"},
        {"report.html", "curves, eval table, answers side by side: open it in a browser"},
    };
    for (size_t i = 0; i < sizeof F / sizeof F[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", run_dir, F[i][0]);
        if (nonempty(p)) printf("    %-20s %s\n", F[i][0], F[i][1]);
    }
    printf("  next:\n");
    snprintf(p, sizeof p, "%s/export/model.gguf", run_dir);
    if (nonempty(p))
        printf("    potluck generate --model %s/export/model.gguf --chat --temperature 0 --prompt \"...\"\n", run_dir);
    else printf("    potluck generate --model BASE --adapter %s --chat --temperature 0 --prompt \"...\"\n", run_dir);
    printf("    potluck eval --compare %s/results.json\n", run_dir);
    printf("    potluck pack %s -o RUN.potluck        (a bundle a peer can verify and reproduce)\n", run_dir);
    cJSON *plan = NULL;
    snprintf(p, sizeof p, "%s/plan.json", run_dir);
    if (nonempty(p)) pl_json_load(p, (size_t)16 << 20, &plan, &e2);
    /* a recipe with scale rules: another of its sizes */
    const char *size = cJSON_GetStringValue(cJSON_GetObjectItem(plan, "size")), *other = NULL;
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(plan, "sizes")) {
        const char *z = cJSON_GetStringValue(it);
        if (z && (!size || strcmp(z, size)) && !other) other = z;
    }
    if (other)
        printf("    potluck run %s --size %s        (the recipe's scale rules at another size)\n", recipe ? recipe : "RECIPE.lua",
               other);
    cJSON_Delete(plan);
    cJSON_Delete(res);
    return PL_OK;
}
