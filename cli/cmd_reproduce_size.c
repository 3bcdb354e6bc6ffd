/* cmd_reproduce_size.c: `potluck reproduce BUNDLE --base OTHER [--size NAME]`:
 * rerun a bundle's recipe on another base model, as volunteers rerun a
 * community fine-tune at 13B or 33B.
 *
 * 1. The new base must read text as the original did: its tokenizer's
 *    fingerprint (datasets/tokenizer.h: every id's bytes and the ids of a
 *    fixed probe set) equals the one the lock recorded; when the recipe
 *    formats chats with the model's own template, the template's sha256
 *    must match too. Otherwise stop with the reason.
 * 2. The size: --size, else the new base's parameter count rounded.
 * 3. The plan: the recipe's settings at that size (its scale rules, as
 *    `potluck run --size` applies them) give the training configuration;
 *    its memory plan (trainer/run.h) is printed beside the original's and a
 *    plan larger than this machine's memory is refused.
 * 4. `potluck run RECIPE --base OTHER --size NAME` into DIR/run, with the
 *    original's thread count.
 * 5. The original's and the new run's settings, memory and results side by
 *    side, printed and written to DIR/compare.md. */
#include <glob.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/units.h"
#include "../core/atomic.h"
#include "../core/json.h"
#include "../core/sha256.h"
#include "../datasets/tokenizer.h"
#include "../plugins/pipeline.h"
#include "../trainer/plan.h"
#include "../trainer/run.h"
#include "cli.h"
#include "cmd_reproduce.h"

/* "7b" for 6.74e9 parameters, "33b" for 32.5e9, "0.135b" for 1.35e8 */
static void size_from_params(double n, char *buf, size_t cap) {
    double b = n / 1e9;
    if (b >= 1) snprintf(buf, cap, "%.0fb", floor(b + 0.5));
    else snprintf(buf, cap, "%.3gb", b);
}

static void human(double b, char *buf, size_t n) { pl_fmt_bytes(b, buf, n); }

static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static void fmt_num(double v, char *buf, size_t n) {
    if (isnan(v)) snprintf(buf, n, "-");
    else snprintf(buf, n, "%.6g", v);
}

/* The side-by-side table, in markdown. */
typedef struct table {
    char *s;
    size_t n, cap;
} table;

static void add(table *t, const char *what, const char *a, const char *b) {
    char line[512];
    int k = snprintf(line, sizeof line, "| %-28s | %-24s | %-24s |\n", what, a, b);
    if (k < 0) return;
    if ((size_t)k >= sizeof line) k = sizeof line - 1;
    if (t->n + (size_t)k + 1 > t->cap) {
        size_t c = t->cap ? t->cap * 2 : 4096;
        while (c < t->n + (size_t)k + 1) c *= 2;
        char *s = realloc(t->s, c);
        if (!s) return;
        t->s = s;
        t->cap = c;
    }
    memcpy(t->s + t->n, line, (size_t)k + 1);
    t->n += (size_t)k;
}

static void add_num(table *t, const char *what, double a, double b) {
    char x[48], y[48];
    fmt_num(a, x, sizeof x);
    fmt_num(b, y, sizeof y);
    add(t, what, x, y);
}

static void add_bytes(table *t, const char *what, double a, double b) {
    char x[48], y[48];
    human(isnan(a) ? -1 : a, x, sizeof x);
    human(isnan(b) ? -1 : b, y, sizeof y);
    add(t, what, x, y);
}

static cJSON *load_opt(const char *dir, const char *rel) {
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    cJSON *j = NULL;
    pl_err e = {0};
    if (access(p, R_OK) || pl_json_load(p, 64u << 20, &j, &e)) return NULL;
    return j;
}

/* Seconds of every stage of a run (its stage records), as pack sums them. */
static double run_seconds(const char *rd) {
    const char *pats[] = {"stages/*/stage.json", "stages/*.json"};
    double sum = 0;
    for (int k = 0; k < 2; k++) {
        char p[PATH_MAX * 2];
        snprintf(p, sizeof p, "%s/%s", rd, pats[k]);
        glob_t g;
        if (glob(p, 0, NULL, &g)) continue;
        for (size_t i = 0; i < g.gl_pathc; i++) {
            cJSON *j = NULL;
            pl_err e = {0};
            if (pl_json_load(g.gl_pathv[i], 1u << 20, &j, &e)) continue;
            double s = num(j, "seconds");
            if (s > 0) sum += s;
            cJSON_Delete(j);
        }
        globfree(&g);
    }
    return sum;
}

/* 1: the new base reads text as the original did; 0: it does not (said) */
static int check_tokenizer(const repro_ctx *x, const cJSON *in) {
    const cJSON *bt = cJSON_GetObjectItem(in, "base_tokenizer");
    const char *want = cJSON_GetStringValue(cJSON_GetObjectItem(bt, "fingerprint"));
    if (!want) {
        cli_fail("reproduce: the bundle records no tokenizer fingerprint of its base (packed by an older potluck, or the "
                 "run had no shard stage): another base cannot be checked against it");
        return 0;
    }
    pl_tokenizer *tok = NULL;
    pl_err err = {0};
    if (pl_tokenizer_load(&tok, x->base, &err)) {
        cli_fail("reproduce: --base %s: its tokenizer: %s", x->base, err.msg);
        return 0;
    }
    char fp[65];
    int ok = !pl_tokenizer_fingerprint(tok, fp, &err);
    int vocab = pl_tokenizer_vocab(tok);
    const char *ct = pl_tokenizer_chat_template(tok);
    char ct_hex[65] = "";
    if (ct) {
        uint8_t d[32];
        pl_sha256_buf(ct, strlen(ct), d);
        pl_sha256_hex(d, ct_hex);
    }
    pl_tokenizer_free(tok);
    if (!ok) {
        cli_fail("reproduce: --base %s: %s", x->base, err.msg);
        return 0;
    }
    int want_vocab = (int)num(bt, "vocab");
    if (strcmp(fp, want)) {
        if (want_vocab > 0 && want_vocab != vocab)
            cli_fail("reproduce: --base %s: its tokenizer has %d tokens, the bundle's base %d: not the same family's "
                     "vocabulary (the bundle's data and adapter are in the original's token ids)",
                     x->base, vocab, want_vocab);
        else
            cli_fail("reproduce: --base %s: its tokenizer has the bundle's vocabulary size (%d) but not its behaviour: "
                     "some token decodes to other bytes or some text to other ids (fingerprint %.12s..., the bundle's "
                     "%.12s...; potluck model info shows it): not the same family's tokenizer",
                     x->base, vocab, fp, want);
        return 0;
    }
    printf("reproduce: tokenizer: the same as the bundle's base (%d tokens, fingerprint %.12s...)\n", vocab, fp);
    /* the chat template matters only when the recipe formats with the model's own */
    const cJSON *tmpl = cJSON_GetObjectItem(x->plan, "template");
    const cJSON *tsrc = cJSON_GetObjectItem(x->plan, "template_source");
    const char *want_ct = cJSON_GetStringValue(cJSON_GetObjectItem(bt, "chat_template_sha256"));
    if (cJSON_IsString(tmpl) || cJSON_IsString(tsrc)) {
        printf("reproduce: chat template: the recipe's own (%s), not the model's\n",
               cJSON_IsString(tmpl) ? tmpl->valuestring : "a template plugin");
    } else if (want_ct || ct_hex[0]) {
        if (!want_ct || !ct_hex[0] || strcmp(want_ct, ct_hex)) {
            cli_fail("reproduce: --base %s: %s: the recipe formats chats with the model's own template, so the "
                     "new base must have the original's (name a template in the recipe to run on this base)",
                     x->base,
                     !ct_hex[0] ? "has no chat template while the bundle's base had one"
                     : !want_ct ? "has a chat template while the bundle's base had none"
                                : "its chat template differs from the bundle's base's");
            return 0;
        }
        printf("reproduce: chat template: the same as the bundle's base's (sha256 %.12s...)\n", ct_hex);
    }
    return 1;
}

int repro_other_size(const repro_ctx *x) {
    const cJSON *in = repro_internal(x->lock);
    if (!check_tokenizer(x, in)) return 1;

    /* the size */
    pl_model_header h;
    pl_err err = {0};
    char size[64];
    cJSON *np = NULL, *plan = NULL;
    pl_run_cfg c;
    pl_run_cfg_defaults(&c);
    int rc = 1;
    table t = {0};
    cJSON *res2 = NULL, *rec2 = NULL, *cfg2 = NULL;
    if (pl_model_read_header(x->base, &h, &err)) { cli_fail("reproduce: --base %s: %s", x->base, err.msg); goto out; }
    {
        pl_run_cfg probe;
        pl_run_cfg_defaults(&probe);
        cJSON *pj = NULL;
        double params = NAN;
        if (!pl_run_cfg_plan_json(&probe, x->base, &pj, &err)) params = num(cJSON_GetObjectItem(pj, "model"), "params");
        cJSON_Delete(pj);
        pl_run_cfg_free(&probe);
        if (x->size) snprintf(size, sizeof size, "%s", x->size);
        else if (!isnan(params)) {
            size_from_params(params, size, sizeof size);
            printf("reproduce: size %s (the new base has %.4g parameters; --size NAME chooses another scale entry)\n", size, params);
        } else { cli_fail("reproduce: --base %s: %s (give --size NAME)", x->base, err.msg); goto out; }
    }

    /* the recipe at that size, and its memory plan */
    {
        char rp[PATH_MAX * 2];
        snprintf(rp, sizeof rp, "%s/%s", x->ub, x->rname);
        pl_pipe_opts o = {0};
        pl_lua_limits_default(&o.limits);
        o.recipe = rp;
        o.base = x->base;
        o.size = size;
        o.quiet = 1;
        if (pl_pipeline_plan(&o, &plan, &err)) { cli_fail("reproduce: the recipe at size %s: %s", size, err.msg); goto out; }
        const char *notes = cJSON_GetStringValue(cJSON_GetObjectItem(plan, "size_notes"));
        if (notes) printf("reproduce: scale: %s\n", notes);
        cJSON *cfg = cJSON_CreateObject();
        cJSON_AddItemToObject(cfg, "lora", cJSON_Duplicate(cJSON_GetObjectItem(plan, "lora"), 1));
        cJSON_AddItemToObject(cfg, "train", cJSON_Duplicate(cJSON_GetObjectItem(plan, "train"), 1));
        int e = pl_run_cfg_apply_json(&c, cfg, "the recipe", &err);
        cJSON_Delete(cfg);
        if (e) { cli_fail("reproduce: the recipe at size %s: %s", size, err.msg); goto out; }
        c.threads = x->threads;
        if (pl_run_cfg_plan_json(&c, x->base, &np, &err)) { cli_fail("reproduce: the memory plan at size %s: %s", size, err.msg); goto out; }
    }
    const cJSON *op = cJSON_GetObjectItem(in, "memory_plan");
    double total = num(np, "total");
    double mem = pl_machine_memory();
    {
        char a[48], b[48], m[48];
        human(total, a, sizeof a);
        human(op ? num(op, "total") : -1, b, sizeof b);
        human(mem, m, sizeof m);
        printf("reproduce: plan at size %s: %s (lora r %d, seq_len %d, %d thread(s), base %s); the original planned %s; "
               "this machine has %s\n",
               size, a, (int)num(np, "lora_r"), (int)num(np, "seq_len"), (int)num(np, "threads"),
               cJSON_GetStringValue(cJSON_GetObjectItem(np, "base")), b, m);
        if (pl_run_plan_check(np, mem, size, x->base, &err)) { cli_fail("reproduce: %s", err.msg); goto out; }
    }
    printf("reproduce: running %s on %s at size %s with %d thread(s)\n", x->rname, x->base, size, x->threads);
    if (repro_run_child(x, size)) goto out;

    /* side by side */
    res2 = load_opt(x->rd, "results.json");
    rec2 = load_opt(x->rd, "stages/train.json");
    cfg2 = load_opt(x->rd, "train/config.json");
    const cJSON *meta = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(x->lock, "predicate"), "runDetails"), "metadata");
    const cJSON *res1 = cJSON_GetObjectItem(meta, "potluck_results");
    const cJSON *ext = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(x->lock, "predicate"), "buildDefinition"),
                                           "externalParameters");
    const cJSON *np2 = cJSON_GetObjectItem(rec2, "memory_plan");
    add(&t, "what", "original", "new");
    add(&t, "----------------------------", "------------------------", "------------------------");
    {
        const char *b1 = cJSON_GetStringValue(cJSON_GetObjectItem(ext, "base"));
        const char *s1 = cJSON_GetStringValue(cJSON_GetObjectItem(ext, "size"));
        const char *bn = strrchr(x->base, '/');
        char b1s[40], b2s[40];
        snprintf(b1s, sizeof b1s, "%.24s", b1 && b1[0] ? b1 : "?");
        snprintf(b2s, sizeof b2s, "%.24s", bn && bn[1] ? bn + 1 : x->base);
        add(&t, "base", b1s, b2s);
        add(&t, "size", s1 ? s1 : "(as written)", size);
    }
    add_num(&t, "parameters", num(cJSON_GetObjectItem(op, "model"), "params"), num(cJSON_GetObjectItem(np2, "model"), "params"));
    add_num(&t, "hidden size", num(cJSON_GetObjectItem(op, "model"), "hidden_size"), num(cJSON_GetObjectItem(np2, "model"), "hidden_size"));
    add_num(&t, "layers", num(cJSON_GetObjectItem(op, "model"), "num_hidden_layers"),
            num(cJSON_GetObjectItem(np2, "model"), "num_hidden_layers"));
    const cJSON *l1 = cJSON_GetObjectItem(in, "lora"), *t1 = cJSON_GetObjectItem(in, "train");
    const cJSON *l2 = cJSON_GetObjectItem(cfg2, "lora"), *t2 = cJSON_GetObjectItem(cfg2, "train");
    add_num(&t, "lora.r", num(l1, "r"), num(l2, "r"));
    add_num(&t, "lora.alpha", num(l1, "alpha"), num(l2, "alpha"));
    add_num(&t, "lora.dropout", num(l1, "dropout"), num(l2, "dropout"));
    add_num(&t, "train.lr", num(t1, "lr"), num(t2, "lr"));
    add_num(&t, "train.steps", num(t1, "steps"), num(t2, "steps"));
    add_num(&t, "train.seq_len", num(t1, "seq_len"), num(t2, "seq_len"));
    add_num(&t, "trained parameters", num(op, "trained_params"), num(np2, "trained_params"));
    add_bytes(&t, "memory planned", op ? num(op, "total") : NAN, np2 ? num(np2, "total") : NAN);
    add_bytes(&t, "peak RSS measured", num(in, "rss_peak"), num(rec2, "rss_peak"));
    const char *ks[] = {"steps", "tokens", "final_train_loss", "base_eval_loss", "eval_loss"};
    for (int i = 0; i < 5; i++) add_num(&t, ks[i], num(res1, ks[i]), num(res2, ks[i]));
    {
        const cJSON *m;
        cJSON_ArrayForEach(m, cJSON_GetObjectItem(res1, "metrics")) {
            char w[64];
            snprintf(w, sizeof w, "metric %.40s", m->string);
            add_num(&t, w, num(cJSON_GetObjectItem(res1, "metrics"), m->string), num(cJSON_GetObjectItem(res2, "metrics"), m->string));
        }
    }
    add_num(&t, "wall seconds (all stages)", num(meta, "potluck_wall_seconds"), run_seconds(x->rd));
    {
        char p[PATH_MAX * 2];
        snprintf(p, sizeof p, "%s/compare.md", x->out);
        printf("\n%s", t.s ? t.s : "");
        if (t.s && pl_write_file_atomic(p, t.s, t.n, &err)) { cli_fail_err(&err); goto out; }
        printf("\nreproduce: the recipe ran on %s at size %s; the table above is in %s\n", x->base, size, p);
    }
    rc = 0;
out:
    free(t.s);
    cJSON_Delete(np);
    cJSON_Delete(plan);
    cJSON_Delete(res2);
    cJSON_Delete(rec2);
    cJSON_Delete(cfg2);
    pl_run_cfg_free(&c);
    return rc;
}
