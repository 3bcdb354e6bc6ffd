/* pipeline.c: `potluck run`: the recipe's stages, cached by key, recipe code
 * in sandboxed children; then shard, train, eval and export in-process. */
#include "pipeline.h"

#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "../core/atomic.h"
#include "../core/dist.h"
#include "../core/mapfile.h"
#include "../core/json.h"
#include "../core/progress.h"
#include "../core/sha256.h"
#include "../core/units.h"
#include "../datasets/chat.h"
#include "../datasets/minhash.h"
#include "../datasets/shard_writer.h"
#include "../datasets/textqual.h"
#include "../datasets/tokenizer.h"
#include "../trainer/checkpoint.h"
#include "../trainer/eval_results.h"
#include "../trainer/eval_side.h"
#include "../trainer/export.h"
#include "../trainer/backend.h"
#include "../trainer/run.h"
#include "confine.h"
#include "bind_model.h"
#include "host.h"
#include "run_finish.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int send_json(int fd, cJSON *j, pl_err *err) {
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s) return pl_err_set(err, PL_ENOMEM, "out of memory");
    int bad = pl_write_all(fd, s, strlen(s));
    free(s);
    return bad ? pl_err_set(err, PL_EIO, "result pipe: %s", strerror(errno)) : PL_OK;
}

static void hex_of(const void *data, size_t n, char hex[65]) {
    uint8_t d[32];
    pl_sha256_buf(data, n, d);
    pl_sha256_hex(d, hex);
}

/* sha256 hex of a string list joined by '|' */
static void key_of(char out[65], const char *a, const char *b, const char *c) {
    size_t n = strlen(a) + strlen(b) + strlen(c) + 4;
    char *s = malloc(n);
    if (!s) { memset(out, '0', 64); out[64] = 0; return; }
    snprintf(s, n, "%s|%s|%s", a, b, c);
    hex_of(s, strlen(s), out);
    free(s);
}

static char *json_str(const cJSON *j) {
    char *s = j ? cJSON_PrintUnformatted(j) : NULL;
    return s ? s : strdup("null");
}

/* ------------------------------------------------------------ children */

typedef struct child_ctx {
    const pl_pipe_opts *o;
    const char *run_dir, *base, *teacher;
    const char *adapter;          /* eval metrics: the fine-tune's adapter (ctx.model()) */
    int index;
    const char *in, *out;
    int64_t in_count;             /* samples in `in` (the progress line's total), -1: unknown */
    int64_t seed;
    int plugins_only;
    const pl_stage_part *part;    /* several ranks: this rank's part of the stage, or NULL */
    int calls_rank, calls_size;   /* several ranks, a stage split by model calls: m:generate splits (bind_model.h) */
} child_ctx;

/* Kernel confinement of this recipe child (confine.h), applied before any
 * recipe code runs: reads under the recipe's folder, the --allow-read paths,
 * the run directory, the plugin folders, the models and the stage input;
 * writes only under write_dir (the stage's own folder), or nowhere. */
static int confine_child(const child_ctx *c, const char *write_dir, pl_err *err) {
    pl_confine cf = {.write_dir = write_dir, .require = c->o->limits.require_confinement};
    char *rdir = c->o->recipe ? realpath(c->o->recipe, NULL) : NULL;
    if (rdir) {
        char *s = strrchr(rdir, '/');
        if (s == rdir) s[1] = 0;
        else if (s) *s = 0;
    }
    char home[PATH_MAX + 32];
    snprintf(home, sizeof home, "%s/plugins", pl_host_home());
    char *user = pl_host_user_plugins();
    /* a model file that is not a GGUF may keep its tokenizer beside it (llama2.c) */
    char mdirs[2][PATH_MAX];
    const char *models[2] = {c->base, c->teacher};
    int rc = 0;
    for (int i = 0; i < 2; i++) {
        mdirs[i][0] = 0;
        const char *m = models[i];
        size_t n = m ? strlen(m) : 0;
        struct stat st;
        if (m && stat(m, &st) == 0 && S_ISREG(st.st_mode) && !(n > 5 && !strcmp(m + n - 5, ".gguf"))) {
            snprintf(mdirs[i], sizeof mdirs[i], "%s", m);
            char *s = strrchr(mdirs[i], '/');
            if (s) *s = 0;
            else snprintf(mdirs[i], sizeof mdirs[i], ".");
        }
    }
    const char *reads[] = {rdir, c->run_dir, home, user, c->base, c->teacher, mdirs[0], mdirs[1], c->in};
    for (size_t i = 0; i < sizeof reads / sizeof reads[0] && !rc; i++) rc = pl_confine_add_read(&cf, reads[i], err);
    for (int i = 0; i < c->o->n_allow_read && !rc; i++) rc = pl_confine_add_read(&cf, c->o->allow_read[i], err);
    if (!rc) rc = pl_confine_apply(&cf, err);
    free(rdir);
    free(user);
    return rc;
}

static int child_open(child_ctx *c, const char *write_dir, pl_host **h, pl_err *err) {
    pl_host_opts ho = {0};
    ho.recipe = c->plugins_only ? NULL : c->o->recipe;
    ho.run_dir = c->run_dir;
    ho.base_model = c->base;
    ho.teacher_model = c->teacher;
    ho.tuned_adapter = c->adapter;
    ho.limits = c->o->limits;
    ho.quiet = c->o->quiet;
    ho.allow_read = c->o->allow_read;
    ho.n_allow_read = c->o->n_allow_read;
    ho.limit_writes = 1; /* the same folder the kernel lets it write (confine_child) */
    ho.write_dir = write_dir;
    return pl_host_open(h, &ho, err);
}

static int child_plan(void *vc, int fd, pl_err *err) {
    child_ctx *c = vc;
    pl_host *h = NULL;
    cJSON *plan = NULL;
    int rc = confine_child(c, NULL, err);
    if (!rc) rc = child_open(c, NULL, &h, err);
    if (!rc) rc = pl_host_plan(h, c->o->size, &plan, err);
    pl_host_free(h);
    if (!rc) rc = send_json(fd, plan, err);
    return rc;
}

static int child_stage(void *vc, int fd, pl_err *err) {
    child_ctx *c = vc;
    if (c->o->threads > 0) omp_set_num_threads(c->o->threads);
    pl_host *h = NULL;
    cJSON *stats = NULL;
    char wdir[PATH_MAX];
    snprintf(wdir, sizeof wdir, "%s", c->out);
    char *s = strrchr(wdir, '/');
    if (s) *s = 0;
    int rc = confine_child(c, s ? wdir : ".", err);
    if (!rc) rc = child_open(c, s ? wdir : ".", &h, err);
    if (!rc && c->calls_size > 1) pl_lua_model_split_calls(c->calls_rank, c->calls_size);
    if (!rc) rc = pl_host_run_stage(h, c->o->size, c->index, c->in, c->in_count, c->out, c->seed, c->part, &stats, err);
    pl_host_free(h);
    if (!rc) rc = send_json(fd, stats, err);
    return rc;
}

static int child_metrics(void *vc, int fd, pl_err *err) {
    child_ctx *c = vc;
    if (c->o->threads > 0) omp_set_num_threads(c->o->threads);
    pl_host *h = NULL;
    cJSON *m = NULL;
    int rc = confine_child(c, NULL, err); /* metrics write nothing: the host records what they return */
    if (!rc) rc = child_open(c, NULL, &h, err);
    if (!rc) rc = pl_host_run_metrics(h, c->o->size, c->in, c->seed, &m, err);
    pl_host_free(h);
    if (!rc) rc = send_json(fd, m, err);
    return rc;
}

static int run_child_json_relay(const pl_pipe_opts *o, const char *what, pl_child_fn fn, child_ctx *c,
                                const pl_child_relay *relay, cJSON **out, pl_err *err) {
    char *buf = NULL;
    size_t n = 0;
    int rc = pl_child_run_relay(&o->limits, what, fn, c, relay, &buf, &n, err);
    if (rc) {
        free(buf);
        return rc;
    }
    *out = cJSON_ParseWithLength(buf ? buf : "", n);
    free(buf);
    if (!*out) return pl_err_set(err, PL_EFORMAT, "%s: the recipe process returned no result", what);
    return PL_OK;
}

static int run_child_json(const pl_pipe_opts *o, const char *what, pl_child_fn fn, child_ctx *c, cJSON **out,
                          pl_err *err) {
    return run_child_json_relay(o, what, fn, c, NULL, out, err);
}

int pl_pipeline_plan(const pl_pipe_opts *o, cJSON **plan, pl_err *err) {
    child_ctx c = {.o = o};
    return run_child_json(o, o->recipe, child_plan, &c, plan, err);
}

/* ------------------------------------------------------------ models */

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static int try_dir(const char *dir, const char *name, char **out) {
    char p[PATH_MAX * 2];
    const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
    const char *cands[2] = {name, base};
    for (int k = 0; k < 2; k++) {
        if (k == 1 && base == name) break;
        snprintf(p, sizeof p, "%s/%s", dir, cands[k]);
        if (exists(p)) { *out = realpath(p, NULL); return *out != NULL; }
        snprintf(p, sizeof p, "%s/%s.gguf", dir, cands[k]);
        if (exists(p)) { *out = realpath(p, NULL); return *out != NULL; }
        snprintf(p, sizeof p, "%s/%s*.gguf", dir, cands[k]);
        glob_t g;
        if (glob(p, 0, NULL, &g) == 0 && g.gl_pathc > 0) {
            *out = realpath(g.gl_pathv[0], NULL);
            globfree(&g);
            return *out != NULL;
        }
        globfree(&g);
    }
    return 0;
}

static char *model_dirs(void) {
    const char *env = getenv("POTLUCK_MODELS");
    if (env && *env) return strdup(env);
    const char *cache = getenv("POTLUCK_CACHE"), *home = getenv("HOME");
    char buf[PATH_MAX * 2 + 32];
    snprintf(buf, sizeof buf, "%s%s%s/.cache/potluck/models", cache && *cache ? cache : "",
             cache && *cache ? "/models:" : "", home && *home ? home : "");
    return strdup(buf);
}

int pl_model_resolve(const char *name, int from_cli, char **out, pl_err *err) {
    *out = NULL;
    if (!name || !*name) return pl_err_set(err, PL_EINVAL, "no base model: set base = \"...\" in the recipe or pass --base PATH");
    if (pl_model_is_random(name)) { /* a rehearsal model made in memory (trainer/model.h) */
        /* a SHAPE that is a path becomes absolute, so the recipe's children and later runs agree */
        char shape[PATH_MAX], *abs = NULL;
        const char *at = NULL;
        pl_model_random_shape(name, shape, sizeof shape, &at);
        if (*shape && exists(shape) && (abs = realpath(shape, NULL))) {
            size_t n = strlen(abs) + strlen(name) + 16;
            *out = malloc(n);
            if (*out) snprintf(*out, n, "random:%s%s", abs, at ? at : "");
            free(abs);
        } else {
            *out = strdup(name);
        }
        return *out ? PL_OK : pl_err_set(err, PL_ENOMEM, "out of memory");
    }
    if (from_cli && exists(name)) {
        *out = realpath(name, NULL);
        if (*out) return PL_OK;
    }
    char *dirs = model_dirs();
    if (!dirs) return pl_err_set(err, PL_ENOMEM, "out of memory");
    char *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save))
        if (*d && try_dir(d, name, out)) {
            free(dirs);
            return PL_OK;
        }
    free(dirs);
    dirs = model_dirs();
    if (from_cli)
        pl_err_set(err, PL_ENOTFOUND, "'%s': no such model file or folder, and no model of that name in %s "
                   "(give the path of a .gguf file or a Hugging Face model folder; POTLUCK_MODELS lists the folders "
                   "searched for names)", name, dirs ? dirs : "the model folders");
    else
        pl_err_set(err, PL_ENOTFOUND, "model '%s' not found in %s (set POTLUCK_MODELS to the folders holding your "
                   "models, or pass --base PATH)", name, dirs ? dirs : "the model folders");
    free(dirs);
    return PL_ENOTFOUND;
}

/* Identity of a model for cache keys: path, size and modification time of
 * the file, or of every file of a directory (hashing gigabytes on every run
 * would cost more than the stages it saves). */
static void model_id(const char *path, char hex[65]) {
    if (!path) { snprintf(hex, 65, "none"); return; }
    pl_sha256 *h = pl_sha256_new();
    if (!h) { snprintf(hex, 65, "nomem"); return; }
    pl_sha256_update(h, path, strlen(path));
    struct stat st;
    char buf[PATH_MAX * 2 + 64];
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *de;
        char **names = NULL;
        int n = 0, cap = 0;
        while (d && (de = readdir(d))) {
            if (de->d_name[0] == '.') continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 32;
                char **t = realloc(names, (size_t)cap * sizeof *t);
                if (!t) break;
                names = t;
            }
            names[n++] = strdup(de->d_name);
        }
        if (d) closedir(d);
        for (int i = 1; i < n; i++)
            for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
                char *t = names[j]; names[j] = names[j - 1]; names[j - 1] = t;
            }
        for (int i = 0; i < n; i++) {
            snprintf(buf, sizeof buf, "%s/%s", path, names[i]);
            struct stat s2;
            if (names[i] && stat(buf, &s2) == 0) {
                snprintf(buf, sizeof buf, "%s:%lld:%lld.%09ld", names[i], (long long)s2.st_size,
                         (long long)s2.st_mtim.tv_sec, s2.st_mtim.tv_nsec);
                pl_sha256_update(h, buf, strlen(buf));
            }
            free(names[i]);
        }
        free(names);
    } else if (stat(path, &st) == 0) {
        snprintf(buf, sizeof buf, ":%lld:%lld.%09ld", (long long)st.st_size, (long long)st.st_mtim.tv_sec,
                 st.st_mtim.tv_nsec);
        pl_sha256_update(h, buf, strlen(buf));
    }
    uint8_t d[32];
    pl_sha256_final(h, d);
    pl_sha256_hex(d, hex);
}

/* ------------------------------------------------------------ stages */

typedef struct run_state {
    const pl_pipe_opts *o;
    char *run_dir;
    cJSON *plan;
    char *base, *teacher;        /* resolved, or NULL */
    pl_err base_err, teacher_err;
    char base_id[65], teacher_id[65];
    int n_steps, n_total;        /* data steps; + shard, train, eval, export */
    int from, only, to;          /* 1-based stage numbers, 0: none */
    int trained_here;            /* the train stage ran in this process */
    int redo;                    /* a stage before ran: later ones are redone (their keys differ anyway) */
    cJSON *counts;               /* per data stage: {label, input, output, removed, reasons} */
    cJSON *tok_info;             /* shard: the base's tokenizer fingerprint and chat template (for stages/shard.json) */
    pl_progress prog;            /* shard and eval's progress line (core/progress.h); off with --quiet */
    pl_progress tprog;           /* train's: the redrawn line on a terminal; elsewhere the per-step
                                  * lines stay and it adds the final line only */
    cJSON *mem_plan;             /* train: the memory plan of the training run (for stages/train.json) */
    int rank, ranks;             /* several ranks (mpirun): this one and how many; rank 0 writes the run */
    char *part_dir;              /* several ranks: this rank's private folder for its part of a stage */
} run_state;

static const char *const TAIL[4] = {"shard", "train", "eval", "export"};

static const char *stage_label(run_state *r, int i, char *buf, size_t n) {
    if (i <= r->n_steps) {
        const cJSON *st = cJSON_GetArrayItem(cJSON_GetObjectItem(r->plan, "steps"), i - 1);
        snprintf(buf, n, "%s", cJSON_GetStringValue(cJSON_GetObjectItem(st, "label")));
    } else snprintf(buf, n, "%s", TAIL[i - r->n_steps - 1]);
    return buf;
}

/* A stage named on the command line: a number, a label ("03-filter.length"),
 * "kind.name", a kind (the first such step) or shard/train/eval/export. */
static int find_stage(run_state *r, const char *s, const char *opt, int *out, pl_err *err) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*s && !*end && v >= 1 && v <= r->n_total) { *out = (int)v; return PL_OK; }
    char lab[256];
    for (int i = 1; i <= r->n_total; i++) {
        stage_label(r, i, lab, sizeof lab);
        const char *kn = i <= r->n_steps ? lab + 3 : lab;
        if (!strcmp(s, lab) || !strcmp(s, kn)) { *out = i; return PL_OK; }
    }
    for (int i = 1; i <= r->n_steps; i++) {
        stage_label(r, i, lab, sizeof lab);
        size_t n = strlen(s);
        if (!strncmp(lab + 3, s, n) && lab[3 + n] == '.') { *out = i; return PL_OK; }
    }
    char all[4096] = "";
    for (int i = 1; i <= r->n_total; i++) {
        stage_label(r, i, lab, sizeof lab);
        size_t l = strlen(all);
        snprintf(all + l, sizeof all - l, "%s%s", i > 1 ? ", " : "", lab);
    }
    return pl_err_set(err, PL_EINVAL, "%s %s: no such stage (stages: %s)", opt, s, all);
}

static void stage_dir(run_state *r, const char *label, char *buf, size_t n) {
    snprintf(buf, n, "%s/stages/%s", r->run_dir, label);
}

/* Does the record at path say key, with the models it used unchanged? */
static int stage_cached(run_state *r, const char *json_path, const char *key, const char *need_file) {
    cJSON *j = NULL;
    pl_err e = {0};
    if (pl_json_load(json_path, 1 << 20, &j, &e)) return 0;
    const char *k = cJSON_GetStringValue(cJSON_GetObjectItem(j, "key"));
    int ok = k && !strcmp(k, key);
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItem(j, "models")) {
        const char *which = m->string, *id = cJSON_GetStringValue(m);
        const char *now = !strcmp(which, "base") ? r->base_id : !strcmp(which, "teacher") ? r->teacher_id : "";
        if (!id || strcmp(id, now)) ok = 0;
    }
    cJSON_Delete(j);
    if (ok && need_file && !exists(need_file)) ok = 0;
    return ok;
}

static int must_run(run_state *r, int i) {
    if (r->o->force) return 1;
    if (r->only) return r->only == i;
    if (r->from && i >= r->from) return 1;
    return 0;
}

static void say(run_state *r, const char *label, const char *what, const char *detail) {
    if (r->o->quiet) return;
    printf("stage %-28s %-6s %s\n", label, what, detail ? detail : "");
    fflush(stdout);
}

static int64_t stage_seed(int64_t seed, const char *label) {
    char buf[300];
    snprintf(buf, sizeof buf, "potluck-stage-seed|%lld|%s", (long long)seed, label);
    uint8_t d[32];
    pl_sha256_buf(buf, strlen(buf), d);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | d[i];
    return (int64_t)(v >> 12); /* fits a Lua integer and a double exactly */
}

/* One removal reason of a stage for people: the first reason of that shape
 * as the filter said it ("9 chars < min_chars 30"), "e.g. ..." when others
 * of the same shape differed; the shape itself for stages cached before the
 * examples were kept. */
static void reason_text(const cJSON *stats, const char *cls, char *buf, size_t n) {
    const cJSON *ex = cJSON_GetObjectItem(cJSON_GetObjectItem(stats, "examples"), cls);
    const char *r = cJSON_GetStringValue(cJSON_GetObjectItem(ex, "reason"));
    if (!r) { snprintf(buf, n, "%s", cls); return; }
    snprintf(buf, n, "%s%s", cJSON_IsTrue(cJSON_GetObjectItem(ex, "varied")) ? "e.g. " : "", r);
}

static void describe_counts(const cJSON *stats, char *buf, size_t n) {
    double in = cJSON_GetNumberValue(cJSON_GetObjectItem(stats, "input"));
    double out = cJSON_GetNumberValue(cJSON_GetObjectItem(stats, "output"));
    double rm = cJSON_GetNumberValue(cJSON_GetObjectItem(stats, "removed"));
    int l = snprintf(buf, n, "%.0f in, %.0f out", isnan(in) ? 0 : in, isnan(out) ? 0 : out);
    if (rm > 0) {
        l += snprintf(buf + l, n - (size_t)l, ", %.0f removed", rm);
        const cJSON *it;
        int first = 1;
        cJSON_ArrayForEach(it, cJSON_GetObjectItem(stats, "reasons")) {
            if ((size_t)l >= n - 1) break;
            char rt[256];
            reason_text(stats, it->string, rt, sizeof rt);
            l += snprintf(buf + l, n - (size_t)l, "%s%s: %.0f", first ? " (" : ", ", rt, it->valuedouble);
            first = 0;
        }
        if (!first && (size_t)l < n - 1) snprintf(buf + l, n - (size_t)l, ")");
    }
}

/* ------------------------------------------------------------ several ranks
 * `potluck run` under mpirun (docs/distributed.md, "Sharded data work").
 * Rank 0 alone writes the run directory; the others read it (the stage
 * inputs) and write their parts into a private temporary folder. A stage
 * runs in one of three ways:
 *   split: a per-sample plugin (shard = "sample") over an input of known
 *     size: rank k runs its contiguous part [lo_k, hi_k) of the input in its
 *     own recipe child; rank 0 gathers the parts' out.jsonl, removed.jsonl
 *     and counts and joins them in rank order, which is index order, so the
 *     files are the bytes one process writes;
 *   dedup: the built-in dedup.minhash: each rank signs its part of the
 *     input, the signatures are all-gathered, rank k finds the candidate
 *     pairs of the bands b with b % P == k, the pairs are gathered to rank 0,
 *     which resolves them in index order into the decisions check_add would
 *     make (datasets/minhash.h) and runs the stage's plugin with them;
 *   calls: a plugin registered with shard = "calls" (a generator whose
 *     rounds depend on earlier ones: self_instruct, persona): every rank
 *     runs the whole stage in its own recipe child, and each m:generate is
 *     split by prompt index (bind_model.h): the child sends its part's texts
 *     to its parent (pl_child_call), the parents all-gather them (calls_serve
 *     below, which checks that the ranks made the same call), and every
 *     child goes on with the whole list, as one process would. Rank 0's
 *     output is the stage's; the others' is dropped. After the child, one
 *     more round says the stage ended, so a rank that would make one more
 *     call than another fails instead of waiting;
 *   novelty: the built-in filter.novelty: the ROUGE-L pairs j < i split by
 *     i mod P, the pairs at or above the threshold gathered to rank 0,
 *     which resolves them in index order into the plugin's decisions
 *     (novelty_by_pairs) and runs the plugin with them;
 *   one: anything else runs on rank 0 while the others wait (sleeping). */

typedef struct calls_relay {
    run_state *r;
    int calls;       /* model calls served */
    double comm_s;   /* seconds in their all-gathers (waits included) */
} calls_relay;

/* One round of a stage split by model calls: every rank's request
 * (PL_CALLS_HEADER bytes, then its part) all-gathered; all must be of kind
 * `kind` with this rank's hash. *reply (when reply): u32 P, P u64 lengths,
 * the parts without their headers, in rank order. */
static int calls_round(calls_relay *cr, const char *req, size_t n, char **reply, size_t *reply_n, pl_err *err) {
    run_state *r = cr->r;
    int P = r->ranks;
    size_t *len = calloc((size_t)P, sizeof *len);
    char *all = NULL;
    if (!len) return pl_err_set(err, PL_ENOMEM, "out of memory");
    double t0 = now_s();
    int rc = pl_dist_allgather_bytes(req, n, (void **)&all, len, err);
    cr->comm_s += now_s() - t0;
    uint32_t kind;
    memcpy(&kind, req, 4);
    const char *what = kind == PL_CALLS_REQUEST ? "made" : "had ended its stage at";
    size_t o = 0, tot = 0;
    for (int k = 0; !rc && k < P; k++) {
        uint32_t kk = 0;
        if (len[k] >= PL_CALLS_HEADER) memcpy(&kk, all + o, 4);
        if (len[k] < PL_CALLS_HEADER || kk != kind)
            rc = pl_err_set(err, PL_EINVAL,
                            "the ranks' stages diverged: rank %d %s model call %d while rank %d %s "
                            "(a plugin with shard = \"calls\" must make the same calls on every rank)",
                            r->rank, what, cr->calls + 1, k, kk == PL_CALLS_REQUEST ? "made one" : "had ended its stage");
        else if (memcmp(all + o + 4, req + 4, 32))
            rc = pl_err_set(err, PL_EINVAL,
                            "the ranks' stages diverged: model call %d of rank %d had other prompts or options than "
                            "rank %d's (a plugin with shard = \"calls\" must make the same calls on every rank)",
                            cr->calls + 1, k, r->rank);
        tot += len[k] - PL_CALLS_HEADER;
        o += len[k];
    }
    if (!rc && reply) {
        char *b = malloc(4 + (size_t)P * 8 + tot + 1), *p = b;
        if (!b) rc = pl_err_set(err, PL_ENOMEM, "out of memory");
        else {
            uint32_t pp = (uint32_t)P;
            memcpy(p, &pp, 4);
            p += 4;
            for (int k = 0; k < P; k++) {
                uint64_t l = len[k] - PL_CALLS_HEADER;
                memcpy(p, &l, 8);
                p += 8;
            }
            o = 0;
            for (int k = 0; k < P; k++) {
                memcpy(p, all + o + PL_CALLS_HEADER, len[k] - PL_CALLS_HEADER);
                p += len[k] - PL_CALLS_HEADER;
                o += len[k];
            }
            *reply = b;
            *reply_n = (size_t)(p - b);
        }
    }
    if (!rc) cr->calls += kind == PL_CALLS_REQUEST;
    free(all);
    free(len);
    return rc;
}

/* pl_child_serve_fn: a split m:generate's request from this rank's child. */
static int calls_serve(void *user, const char *req, size_t n, char **reply, size_t *reply_n, pl_err *err) {
    uint32_t kind = 0;
    if (n >= PL_CALLS_HEADER) memcpy(&kind, req, 4);
    if (kind != PL_CALLS_REQUEST) return pl_err_set(err, PL_EINVAL, "the recipe process sent an unknown request");
    return calls_round(user, req, n, reply, reply_n, err);
}

/* The last round: this rank's stage ended; so must every rank's. */
static int calls_end(calls_relay *cr, pl_err *err) {
    char req[PL_CALLS_HEADER] = {0};
    uint32_t kind = PL_CALLS_END;
    memcpy(req, &kind, 4);
    return calls_round(cr, req, sizeof req, NULL, NULL, err);
}

/* After a stage only rank 0 ran (or every rank ran): rank 0's outcome on
 * every rank, so that all stop, fail or go on together. The others wait
 * sleeping (untimed: rank 0's stage takes as long as it takes). 1 is "stop
 * here" (--to, --only). */
static int share_rc(run_state *r, int rc, const char *stage, pl_err *err) {
    pl_err e = {0};
    int v = rc;
    if (pl_dist_wait(0, &e) || pl_dist_bcast(&v, sizeof v, 0, &e)) {
        if (!rc) *err = e;
        return rc ? rc : (e.code ? e.code : PL_EIO);
    }
    if (r->rank == 0 || rc) return rc; /* a rank's own error stands (its stage failed on it) */
    if (v != 0 && v != 1) return pl_err_set(err, v, "rank %d: rank 0's %s stage failed", r->rank, stage);
    return v;
}

static int share_json(run_state *r, cJSON **j, pl_err *err) {
    if (r->ranks <= 1) return PL_OK;
    char *s = NULL;
    size_t n = 0;
    if (r->rank == 0) {
        s = cJSON_PrintUnformatted(*j);
        if (!s) return pl_err_set(err, PL_ENOMEM, "out of memory");
        n = strlen(s);
    }
    int rc = pl_dist_bcast_bytes((void **)&s, &n, 0, err);
    if (!rc && r->rank != 0) {
        *j = cJSON_ParseWithLength(s ? s : "", n);
        if (!*j) rc = pl_err_set(err, PL_EFORMAT, "rank %d: rank 0 sent unreadable stage counts", r->rank);
    }
    free(s);
    return rc;
}

/* pl.text(s) of plugins/bind_text.c, on a parsed sample; *bad when a string
 * holds a NUL byte (cJSON's strings end there; Lua's do not). */
static char *sample_text(const cJSON *j, size_t *len, int *bad) {
    size_t cap = 256, n = 0;
    char *b = malloc(cap);
    if (!b) return NULL;
    int parts = 0;
#define ADD(str)                                                                  \
    do {                                                                          \
        const char *s_ = (str);                                                   \
        size_t l_ = strlen(s_);                                                   \
        if (n + l_ + 2 > cap) {                                                   \
            while (n + l_ + 2 > cap) cap *= 2;                                    \
            char *nb_ = realloc(b, cap);                                          \
            if (!nb_) { free(b); return NULL; }                                   \
            b = nb_;                                                              \
        }                                                                         \
        if (parts++) b[n++] = '\n';                                               \
        memcpy(b + n, s_, l_);                                                    \
        n += l_;                                                                  \
    } while (0)
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "text");
    if (cJSON_IsString(t)) {
        ADD(t->valuestring);
    } else {
        const cJSON *ms = cJSON_GetObjectItemCaseSensitive(j, "messages"), *m;
        if (cJSON_IsArray(ms))
            cJSON_ArrayForEach(m, ms) {
                const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
                if (cJSON_IsObject(m) && cJSON_IsString(c)) ADD(c->valuestring);
            }
        if (!parts) {
            static const char *const fields[] = {"instruction", "input", "output", "prompt", "response"};
            for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
                const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, fields[i]);
                if (cJSON_IsString(f)) ADD(f->valuestring);
            }
        }
    }
#undef ADD
    b[n] = 0;
    *len = n;
    (void)bad;
    return b;
}

/* The minhash options of a dedup.minhash step, as plugins/lib/minhash.lua
 * passes them to pl.minhash_index. */
static void step_minhash_opts(const cJSON *st, pl_minhash_opts *o) {
    pl_minhash_opts_default(o);
    const cJSON *p = cJSON_GetObjectItem(st, "params"), *v;
    if (cJSON_IsNumber(v = cJSON_GetObjectItem(p, "threshold"))) o->threshold = v->valuedouble;
    if (cJSON_IsNumber(v = cJSON_GetObjectItem(p, "num_perm"))) o->num_perm = (int)v->valuedouble;
    if (cJSON_IsNumber(v = cJSON_GetObjectItem(p, "bands"))) o->bands = (int)v->valuedouble;
    if (cJSON_IsNumber(v = cJSON_GetObjectItem(p, "rows"))) o->rows = (int)v->valuedouble;
    if (cJSON_IsNumber(v = cJSON_GetObjectItem(p, "ngram"))) o->ngram = (int)v->valuedouble;
    if (cJSON_IsNumber(v = cJSON_GetObjectItem(p, "seed"))) o->seed = (uint64_t)(int64_t)v->valuedouble;
    const char *u = cJSON_GetStringValue(cJSON_GetObjectItem(p, "unit"));
    if (u && !strcmp(u, "char")) o->unit = PL_UNIT_CHAR;
}

/* fn(user, i, text, len) for the text (pl.text) of every input sample i in
 * [lo, hi) of path (0-based; blank lines not counted, as the stage reader
 * counts); fn owns text. *bad when a text holds a NUL byte. */
typedef int (*text_fn)(void *user, int64_t i, char *text, size_t len, pl_err *err);
static int each_text(const char *path, int64_t lo, int64_t hi, text_fn fn, void *user, int *bad, pl_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return pl_err_set(err, PL_EIO, "%s: %s", path, strerror(errno));
    int rc = 0;
    char *line = NULL;
    size_t cap = 0;
    int64_t idx = 0;
    ssize_t n;
    while (!rc && idx < hi && (n = getline(&line, &cap, f)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
        if (!n) continue;
        if (idx++ < lo) continue;
        if (memmem(line, (size_t)n, "\\u0000", 6)) *bad = 1;
        cJSON *j = cJSON_ParseWithLength(line, (size_t)n);
        if (!j || !cJSON_IsObject(j)) {
            cJSON_Delete(j);
            rc = pl_err_set(err, PL_EFORMAT, "%s: sample %lld: not a JSON object", path, (long long)idx);
            break;
        }
        size_t tl = 0;
        char *t = sample_text(j, &tl, bad);
        cJSON_Delete(j);
        if (!t) { rc = pl_err_set(err, PL_ENOMEM, "out of memory"); break; }
        rc = fn(user, idx - 1, t, tl, err);
    }
    free(line);
    fclose(f);
    if (!rc && idx < hi) rc = pl_err_set(err, PL_EFORMAT, "%s: %lld samples, expected %lld", path, (long long)idx, (long long)hi);
    return rc;
}

typedef struct sign_ctx { pl_minhash *m; uint64_t *sigs; int64_t lo; int np; } sign_ctx;
static int sign_one(void *user, int64_t i, char *text, size_t len, pl_err *err) {
    sign_ctx *c = user;
    int rc = pl_minhash_signature(c->m, text, len, c->sigs + (size_t)(i - c->lo) * c->np, NULL, err);
    free(text);
    return rc;
}

/* Signatures (num_perm values each) of input samples [lo, hi) of path. */
static int sign_part(pl_minhash *m, const char *path, int64_t lo, int64_t hi, uint64_t *sigs, int *bad, pl_err *err) {
    sign_ctx c = {.m = m, .sigs = sigs, .lo = lo, .np = pl_minhash_options(m)->num_perm};
    return each_text(path, lo, hi, sign_one, &c, bad, err);
}

/* Every rank's records (bytes of them) gathered to rank 0: *all (rank 0's,
 * malloc'd; NULL elsewhere) holds *count records of size rec, in rank order. */
static int gather_records(run_state *r, const void *mine, size_t bytes, size_t rec, void **all, size_t *count,
                          pl_err *err) {
    size_t *len = calloc((size_t)r->ranks, sizeof *len);
    if (!len) return pl_err_set(err, PL_ENOMEM, "out of memory");
    int rc = pl_dist_gather_bytes(mine, bytes, all, len, 0, err);
    size_t tot = 0;
    for (int k = 0; !rc && k < r->ranks; k++) tot += len[k];
    *count = tot / rec;
    free(len);
    return rc;
}

/* The dedup decisions of all input samples by band ownership (above). */
static int dedup_by_bands(run_state *r, const cJSON *st, const char *in, int64_t n, int64_t **dup_of, double **jac,
                          int *fallback, cJSON *timing, pl_err *err) {
    pl_minhash_opts mo;
    step_minhash_opts(st, &mo);
    pl_minhash *m = NULL;
    int rc = pl_minhash_new(&m, &mo, err);
    if (rc) return rc;
    int np = mo.num_perm, P = r->ranks;
    int64_t lo = (int64_t)pl_dist_shard_lo((size_t)n, r->rank), hi = (int64_t)pl_dist_shard_lo((size_t)n, r->rank + 1);
    uint64_t *mine = malloc(((size_t)(hi - lo) * np + 1) * sizeof *mine), *all = NULL;
    size_t *len = calloc((size_t)P, sizeof *len);
    pl_minhash_pair *pairs = NULL, *every = NULL;
    size_t n_pairs = 0, pcap = 0;
    int bad = 0;
    double t0 = now_s(), comm0 = pl_dist_comm_seconds();
    (void)comm0;
    if (!mine || !len) { rc = pl_err_set(err, PL_ENOMEM, "out of memory for %lld signatures", (long long)(hi - lo)); goto out; }
    if ((rc = sign_part(m, in, lo, hi, mine, &bad, err))) goto out;
    double t1 = now_s();
    /* a NUL byte in some text: cJSON cannot see past it; every rank falls
     * back to rank 0 running the plugin itself */
    double v = bad;
    if ((rc = pl_dist_wait(1, err)) || (rc = pl_dist_allreduce_f64(&v, 1, err))) goto out;
    if (v > 0) { *fallback = 1; goto out; }
    double t2 = now_s();
    if ((rc = pl_dist_allgather_bytes(mine, (size_t)(hi - lo) * np * sizeof *mine, (void **)&all, len, err))) goto out;
    double t3 = now_s();
    if ((rc = pl_minhash_pairs(m, all, n, r->rank, P, &pairs, &n_pairs, &pcap, err))) goto out;
    double t4 = now_s();
    if ((rc = pl_dist_wait(1, err))) goto out;
    double t5 = now_s();
    size_t ne = 0;
    if ((rc = gather_records(r, pairs, n_pairs * sizeof *pairs, sizeof *pairs, (void **)&every, &ne, err))) goto out;
    double t6 = now_s();
    if (r->rank == 0) {
        *dup_of = malloc(((size_t)n + 1) * sizeof **dup_of);
        *jac = malloc(((size_t)n + 1) * sizeof **jac);
        if (!*dup_of || !*jac) { rc = pl_err_set(err, PL_ENOMEM, "out of memory"); goto out; }
        rc = pl_minhash_resolve(m, every, ne, n, *dup_of, *jac, err);
        cJSON_AddNumberToObject(timing, "pairs", (double)ne);
    }
    double t7 = now_s();
    cJSON_AddNumberToObject(timing, "sign_s", t1 - t0);
    cJSON_AddNumberToObject(timing, "wait_s", (t2 - t1) + (t5 - t4));
    cJSON_AddNumberToObject(timing, "exchange_sigs_s", t3 - t2);
    cJSON_AddNumberToObject(timing, "band_pairs_s", t4 - t3);
    cJSON_AddNumberToObject(timing, "exchange_pairs_s", t6 - t5);
    cJSON_AddNumberToObject(timing, "resolve_s", t7 - t6);
    cJSON_AddNumberToObject(timing, "bands", pl_minhash_options(m)->bands);
out:
    free(mine);
    free(all);
    free(len);
    free(pairs);
    free(every);
    pl_minhash_free(m);
    return rc;
}

typedef struct texts_ctx { char **texts; size_t *lens; } texts_ctx;
static int keep_text(void *user, int64_t i, char *text, size_t len, pl_err *err) {
    texts_ctx *c = user;
    c->texts[i] = text;
    c->lens[i] = len;
    return PL_OK;
}

/* The texts (pl.text) of all n input samples of path; *bad when one holds
 * a NUL byte. */
static int read_texts(const char *path, int64_t n, char ***texts, size_t **lens, int *bad, pl_err *err) {
    *texts = calloc((size_t)n + 1, sizeof **texts);
    *lens = calloc((size_t)n + 1, sizeof **lens);
    if (!*texts || !*lens) return pl_err_set(err, PL_ENOMEM, "out of memory for %lld texts", (long long)n);
    texts_ctx c = {*texts, *lens};
    return each_text(path, 0, n, keep_text, &c, bad, err);
}

static void free_texts(char **texts, size_t *lens, int64_t n) {
    for (int64_t i = 0; texts && i < n; i++) free(texts[i]);
    free(texts);
    free(lens);
}

/* The built-in filter.novelty over the ranks: rank k compares every sample
 * i with i mod P == k against every earlier sample (pl_rouge_l(text_j,
 * text_i), the arguments in the plugin's order) and keeps the pairs at or
 * above the threshold; the pairs are gathered to rank 0, which walks the
 * samples in order: i is dropped for the first kept j (in index order, which
 * is the kept list's order) of its pairs, which is the one the plugin would
 * have stopped at, and dup_of[i] is j's place among the kept samples
 * (0-based; -1: kept), jac[i] its ROUGE-L. Every pair j < i is scored, where
 * one process scores i against the kept samples only, up to the first hit. */
typedef struct novelty_pair { int64_t i, j; double f; } novelty_pair;

static int cmp_novelty_pair(const void *a, const void *b) {
    const novelty_pair *x = a, *y = b;
    return x->i != y->i ? (x->i < y->i ? -1 : 1) : x->j != y->j ? (x->j < y->j ? -1 : 1) : 0;
}

static int novelty_by_pairs(run_state *r, const cJSON *st, const char *in, int64_t n, int64_t **dup_of, double **jac,
                            int *fallback, cJSON *timing, pl_err *err) {
    double thr = 0.7;
    const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(st, "params"), "threshold");
    if (cJSON_IsNumber(v)) thr = v->valuedouble;
    int P = r->ranks, bad = 0, rc;
    char **texts = NULL;
    size_t *lens = NULL;
    novelty_pair *pairs = NULL, *every = NULL;
    size_t np = 0, cap = 0;
    double t0 = now_s();
    if ((rc = read_texts(in, n, &texts, &lens, &bad, err))) goto out;
    double t1 = now_s();
    double b = bad; /* a NUL byte in some text: rank 0 runs the plugin itself */
    if ((rc = pl_dist_wait(1, err)) || (rc = pl_dist_allreduce_f64(&b, 1, err))) goto out;
    if (b > 0) { *fallback = 1; goto out; }
    for (int64_t i = r->rank; i < n && !rc; i += P)
        for (int64_t j = 0; j < i; j++) {
            double f = pl_rouge_l(texts[j], lens[j], texts[i], lens[i]);
            if (!(f >= thr)) continue;
            if (np == cap) {
                size_t nc = cap ? 2 * cap : 1024;
                novelty_pair *nb = realloc(pairs, nc * sizeof *nb);
                if (!nb) { rc = pl_err_set(err, PL_ENOMEM, "out of memory for the novelty pairs"); break; }
                pairs = nb;
                cap = nc;
            }
            pairs[np++] = (novelty_pair){i, j, f};
        }
    double t2 = now_s();
    if (rc || (rc = pl_dist_wait(1, err))) goto out;
    double t3 = now_s();
    size_t ne = 0;
    if ((rc = gather_records(r, pairs, np * sizeof *pairs, sizeof *pairs, (void **)&every, &ne, err))) goto out;
    double t4 = now_s();
    if (r->rank == 0) {
        qsort(every, ne, sizeof *every, cmp_novelty_pair);
        int64_t *kept_at = malloc(((size_t)n + 1) * sizeof *kept_at);
        *dup_of = malloc(((size_t)n + 1) * sizeof **dup_of);
        *jac = malloc(((size_t)n + 1) * sizeof **jac);
        if (!kept_at || !*dup_of || !*jac) { free(kept_at); rc = pl_err_set(err, PL_ENOMEM, "out of memory"); goto out; }
        int64_t nk = 0;
        size_t e = 0;
        for (int64_t i = 0; i < n; i++) {
            (*dup_of)[i] = -1;
            (*jac)[i] = 0;
            for (; e < ne && every[e].i == i; e++)
                if ((*dup_of)[i] < 0 && kept_at[every[e].j] >= 0) {
                    (*dup_of)[i] = kept_at[every[e].j];
                    (*jac)[i] = every[e].f;
                }
            kept_at[i] = (*dup_of)[i] < 0 ? nk++ : -1;
        }
        free(kept_at);
        cJSON_AddNumberToObject(timing, "pairs", (double)ne);
    }
    double t5 = now_s();
    cJSON_AddNumberToObject(timing, "read_s", t1 - t0);
    cJSON_AddNumberToObject(timing, "compare_s", t2 - t1);
    cJSON_AddNumberToObject(timing, "wait_s", t3 - t2);
    cJSON_AddNumberToObject(timing, "exchange_pairs_s", t4 - t3);
    cJSON_AddNumberToObject(timing, "resolve_s", t5 - t4);
out:
    free_texts(texts, lens, n);
    free(pairs);
    free(every);
    return rc;
}

/* The counts of the parts of a split stage, in rank order, as one process
 * counts them: sums; a reason's example is the first part's; it varied when
 * a part says so or the parts' examples differ. */
static cJSON *merge_counts(char *all, const size_t *len, int P, pl_err *err) {
    cJSON *out = NULL;
    size_t o = 0;
    for (int k = 0; k < P; k++) {
        cJSON *j = cJSON_ParseWithLength(all + o, len[k]);
        o += len[k];
        if (!j) { cJSON_Delete(out); pl_err_set(err, PL_EFORMAT, "rank %d sent unreadable stage counts", k); return NULL; }
        if (!out) { out = j; continue; }
        static const char *const sums[] = {"input", "output", "removed"};
        for (int i = 0; i < 3; i++) {
            cJSON *a = cJSON_GetObjectItem(out, sums[i]);
            double b = cJSON_GetNumberValue(cJSON_GetObjectItem(j, sums[i]));
            if (cJSON_IsNumber(a) && !isnan(b)) cJSON_SetNumberValue(a, a->valuedouble + b);
        }
        cJSON *rs = cJSON_GetObjectItem(out, "reasons"), *ex = cJSON_GetObjectItem(out, "examples"), *it;
        if (!cJSON_IsObject(rs)) { cJSON_DeleteItemFromObject(out, "reasons"); rs = cJSON_AddObjectToObject(out, "reasons"); }
        if (!cJSON_IsObject(ex)) { cJSON_DeleteItemFromObject(out, "examples"); ex = cJSON_AddObjectToObject(out, "examples"); }
        cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "reasons")) {
            cJSON *a = cJSON_GetObjectItem(rs, it->string);
            if (a) cJSON_SetNumberValue(a, a->valuedouble + it->valuedouble);
            else cJSON_AddNumberToObject(rs, it->string, it->valuedouble);
        }
        cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "examples")) {
            cJSON *a = cJSON_GetObjectItem(ex, it->string);
            if (!a) { cJSON_AddItemToObject(ex, it->string, cJSON_Duplicate(it, 1)); continue; }
            const char *ra = cJSON_GetStringValue(cJSON_GetObjectItem(a, "reason"));
            const char *rb = cJSON_GetStringValue(cJSON_GetObjectItem(it, "reason"));
            if (cJSON_IsTrue(cJSON_GetObjectItem(it, "varied")) || !ra || !rb || strcmp(ra, rb)) {
                cJSON_DeleteItemFromObject(a, "varied");
                cJSON_AddTrueToObject(a, "varied");
            }
        }
        cJSON_Delete(j);
    }
    return out;
}

static int read_part(const char *path, char **buf, size_t *n, pl_err *err) {
    struct stat stt;
    *buf = NULL;
    *n = 0;
    if (stat(path, &stt) != 0) return PL_OK; /* the stage writes no such file */
    return pl_read_file(path, (size_t)1 << 40, buf, n, err);
}

/* Gather the parts' file `name` from every rank's part folder; rank 0 writes
 * the parts one after another to dir/name (when its own part has it). */
static int join_parts(run_state *r, const char *dir, const char *name, pl_err *err) {
    char pp[PATH_MAX + 64], fp[PATH_MAX + 64];
    snprintf(pp, sizeof pp, "%s/%s", r->part_dir, name);
    struct stat stt;
    int have = stat(pp, &stt) == 0;
    char *buf = NULL, *all = NULL;
    size_t n = 0, *len = calloc((size_t)r->ranks, sizeof *len);
    if (!len) return pl_err_set(err, PL_ENOMEM, "out of memory");
    int rc = read_part(pp, &buf, &n, err);
    if (!rc) rc = pl_dist_gather_bytes(buf, n, (void **)&all, len, 0, err);
    if (!rc && r->rank == 0 && have) {
        size_t tot = 0;
        for (int k = 0; k < r->ranks; k++) tot += len[k];
        snprintf(fp, sizeof fp, "%s/%s", dir, name);
        rc = pl_write_file_atomic(fp, all, tot, err);
    }
    free(buf);
    free(all);
    free(len);
    unlink(pp);
    return rc;
}

/* Run stage i (child context c) over the ranks; *stats on every rank. */
static int dist_stage(run_state *r, const cJSON *st, child_ctx *c, const char *dir, const char *what, cJSON **stats,
                      pl_err *err) {
    const char *shard = cJSON_GetStringValue(cJSON_GetObjectItem(st, "shard"));
    const char *kind = cJSON_GetStringValue(cJSON_GetObjectItem(st, "kind"));
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(st, "name"));
    const char *origin = cJSON_GetStringValue(cJSON_GetObjectItem(st, "plugin_origin"));
    int64_t n = c->in_count;
    int split = c->in && n >= 0 && shard && !strcmp(shard, "sample");
    int calls = shard && !strcmp(shard, "calls");
    int dedup = c->in && n >= 0 && kind && name && origin && !strcmp(kind, "dedup") && !strcmp(name, "minhash") &&
                !strcmp(origin, "built-in");
    int novelty = c->in && n >= 0 && kind && name && origin && !strcmp(kind, "filter") && !strcmp(name, "novelty") &&
                  !strcmp(origin, "built-in");
    int rc = 0;
    (void)pl_dist_comm_seconds();
    cJSON *timing = cJSON_CreateObject();
    if (split) {
        pl_stage_part part = {.lo = (int64_t)pl_dist_shard_lo((size_t)n, r->rank),
                              .hi = (int64_t)pl_dist_shard_lo((size_t)n, r->rank + 1)};
        char po[PATH_MAX + 32], pr[PATH_MAX + 32];
        snprintf(po, sizeof po, "%s/out.jsonl", r->part_dir);
        snprintf(pr, sizeof pr, "%s/removed.jsonl", r->part_dir);
        unlink(po);
        unlink(pr);
        child_ctx pc = *c;
        pc.out = po;
        pc.in_count = part.hi - part.lo;
        pc.part = &part;
        cJSON *mine = NULL;
        double t0 = now_s();
        rc = run_child_json(r->o, what, child_stage, &pc, &mine, err);
        if (rc) { cJSON_Delete(timing); return rc; } /* the caller ends the job */
        cJSON_AddNumberToObject(timing, "part_s", now_s() - t0);
        char *s = cJSON_PrintUnformatted(mine);
        cJSON_Delete(mine);
        char *all = NULL;
        size_t *len = calloc((size_t)r->ranks, sizeof *len);
        double t1 = now_s();
        if (!s || !len) rc = pl_err_set(err, PL_ENOMEM, "out of memory");
        if (!rc) rc = pl_dist_wait(1, err);
        double t2 = now_s();
        cJSON_AddNumberToObject(timing, "wait_s", t2 - t1);
        if (!rc) rc = pl_dist_gather_bytes(s, strlen(s), (void **)&all, len, 0, err);
        if (!rc) rc = join_parts(r, dir, "out.jsonl", err);
        if (!rc) rc = join_parts(r, dir, "removed.jsonl", err);
        cJSON_AddNumberToObject(timing, "exchange_s", now_s() - t2);
        if (!rc && r->rank == 0 && !(*stats = merge_counts(all, len, r->ranks, err))) rc = err->code ? err->code : PL_EFORMAT;
        free(s);
        free(all);
        free(len);
    } else if (calls) {
        char po[PATH_MAX + 32], pr[PATH_MAX + 32];
        snprintf(po, sizeof po, "%s/out.jsonl", r->part_dir);
        snprintf(pr, sizeof pr, "%s/removed.jsonl", r->part_dir);
        child_ctx pc = *c;
        pc.calls_rank = r->rank;
        pc.calls_size = r->ranks;
        if (r->rank != 0) pc.out = po; /* the same stage, dropped: rank 0's output is the stage's */
        calls_relay cr = {.r = r};
        pl_child_relay rl = {.serve = calls_serve, .user = &cr};
        cJSON *mine = NULL;
        double t0 = now_s();
        rc = run_child_json_relay(r->o, what, child_stage, &pc, &rl, &mine, err);
        if (!rc) rc = calls_end(&cr, err);
        if (rc) { cJSON_Delete(mine); cJSON_Delete(timing); return rc; } /* the caller ends the job */
        cJSON_AddNumberToObject(timing, "stage_s", now_s() - t0);
        cJSON_AddNumberToObject(timing, "model_calls", cr.calls);
        cJSON_AddNumberToObject(timing, "exchange_s", cr.comm_s);
        if (r->rank == 0) *stats = mine;
        else {
            cJSON_Delete(mine);
            unlink(po);
            unlink(pr);
        }
    } else if (dedup || novelty) {
        int64_t *dup_of = NULL;
        double *jac = NULL;
        int fallback = 0;
        rc = dedup ? dedup_by_bands(r, st, c->in, n, &dup_of, &jac, &fallback, timing, err)
                   : novelty_by_pairs(r, st, c->in, n, &dup_of, &jac, &fallback, timing, err);
        if (!rc && r->rank == 0) {
            pl_stage_part part = {.lo = 0, .hi = -1, .dup_of = dup_of, .dup_jac = jac, .n_dec = n};
            child_ctx pc = *c;
            pc.part = fallback ? NULL : &part;
            double t0 = now_s();
            rc = run_child_json(r->o, what, child_stage, &pc, stats, err);
            cJSON_AddNumberToObject(timing, "write_s", now_s() - t0);
        }
        if (fallback) cJSON_AddStringToObject(timing, "note", "a text holds a NUL byte: rank 0 ran the stage alone");
        free(dup_of);
        free(jac);
    } else if (r->rank == 0) {
        rc = run_child_json(r->o, what, child_stage, c, stats, err);
    }
    if (rc) { cJSON_Delete(timing); return rc; }
    /* rank 0 waits for ranks with nothing left to do: timed; the others may
     * wait for rank 0's one-rank work, as long as it takes */
    if ((rc = pl_dist_wait(r->rank == 0 || split || calls, err))) { cJSON_Delete(timing); return rc; }
    if (r->rank == 0) {
        cJSON_AddNumberToObject(timing, "comm_s", pl_dist_comm_seconds());
        cJSON_AddStringToObject(timing, "how", split   ? "split by sample index"
                                               : calls ? "model calls split by prompt index"
                                               : dedup ? "minhash bands by rank"
                                               : novelty ? "novelty pairs by rank"
                                                       : "rank 0 alone");
        cJSON_AddNumberToObject(timing, "ranks", r->ranks);
        cJSON_AddItemToObject(*stats, "dist", timing);
    } else {
        cJSON_Delete(timing);
    }
    return share_json(r, stats, err);
}

static int run_data_stage(run_state *r, int i, const char *prev_key, const char *prev_out, char key[65],
                          char *out_path, size_t out_n, pl_err *err) {
    const cJSON *st = cJSON_GetArrayItem(cJSON_GetObjectItem(r->plan, "steps"), i - 1);
    char label[256], dir[PATH_MAX], sj[PATH_MAX + 16];
    stage_label(r, i, label, sizeof label);
    key_of(key, prev_key, "step", cJSON_GetStringValue(cJSON_GetObjectItem(st, "hash")));
    stage_dir(r, label, dir, sizeof dir);
    snprintf(out_path, out_n, "%s/out.jsonl", dir);
    snprintf(sj, sizeof sj, "%s/stage.json", dir);
    int cached = !must_run(r, i) && r->rank == 0 && stage_cached(r, sj, key, out_path);
    int rc;
    if (r->ranks > 1 && (rc = pl_dist_bcast(&cached, sizeof cached, 0, err))) return rc; /* rank 0 looks, for all */
    if (r->only && i < r->only) {
        if (!cached)
            return pl_err_set(err, PL_EINVAL, "--only %s: the stage before it, %s, has no up-to-date output (run without --only first)",
                              r->o->only, label);
    }
    if ((r->only && i > r->only) || (r->to && i > r->to)) return 1; /* stop */
    if (cached) {
        cJSON *j = NULL;
        int ok = r->rank != 0 || !pl_json_load(sj, 1 << 20, &j, err);
        if (r->ranks > 1) {
            if (!j) j = cJSON_CreateObject(); /* unreadable on rank 0: no counts, as one process */
            if ((rc = share_json(r, &j, err))) { cJSON_Delete(j); return rc; }
        }
        if (ok && j) {
            char d[512];
            describe_counts(j, d, sizeof d);
            say(r, label, "cached", d);
            cJSON_AddStringToObject(j, "label", label);
            cJSON_AddItemToArray(r->counts, j);
        } else {
            cJSON_Delete(j);
        }
        return PL_OK;
    }
    if (r->rank == 0) {
        if ((rc = pl_mkdirs(dir, err))) return rc;
        unlink(sj);
    }
    /* the previous stage's output count: the total of this one's progress line */
    const cJSON *prev = cJSON_GetArrayItem(r->counts, cJSON_GetArraySize(r->counts) - 1);
    const cJSON *prev_n = prev_out ? cJSON_GetObjectItem(prev, "output") : NULL;
    child_ctx c = {.o = r->o, .run_dir = r->run_dir, .base = r->base, .teacher = r->teacher, .index = i,
                   .in = prev_out, .in_count = cJSON_IsNumber(prev_n) ? (int64_t)prev_n->valuedouble : -1, .out = out_path,
                   .seed = stage_seed(cJSON_GetNumberValue(cJSON_GetObjectItem(r->plan, "seed")), label)};
    if (!r->o->quiet) {
        printf("stage %-28s running\n", label);
        fflush(stdout);
    }
    double t0 = now_s();
    cJSON *stats = NULL;
    char what[PATH_MAX + 300];
    snprintf(what, sizeof what, "%s: stage %s", r->o->recipe, label);
    if (r->ranks > 1) rc = dist_stage(r, st, &c, dir, what, &stats, err);
    else rc = run_child_json(r->o, what, child_stage, &c, &stats, err);
    if (rc) return rc;
    if (r->rank != 0) { /* rank 0 writes stage.json; the others keep the counts */
        cJSON_AddStringToObject(stats, "label", label);
        cJSON_AddItemToArray(r->counts, stats);
        return PL_OK;
    }
    cJSON_AddStringToObject(stats, "key", key);
    cJSON_AddNumberToObject(stats, "seconds", now_s() - t0);
    cJSON_AddNumberToObject(stats, "seed", (double)c.seed);
    /* models the stage loaded -> their identities */
    cJSON *used = cJSON_DetachItemFromObject(stats, "models");
    cJSON *models = cJSON_AddObjectToObject(stats, "models");
    const cJSON *m;
    cJSON_ArrayForEach(m, used) {
        const char *w = cJSON_GetStringValue(m);
        if (w) cJSON_AddStringToObject(models, w, !strcmp(w, "base") ? r->base_id : r->teacher_id);
    }
    cJSON_Delete(used);
    if ((rc = pl_json_write(sj, stats, err))) { cJSON_Delete(stats); return rc; }
    char d[512];
    describe_counts(stats, d, sizeof d);
    size_t l = strlen(d);
    snprintf(d + l, sizeof d - l, " [%.1f s]", now_s() - t0);
    say(r, label, "ran", d);
    cJSON_AddStringToObject(stats, "label", label);
    cJSON_AddItemToArray(r->counts, stats);
    return PL_OK;
}

/* ------------------------------------------------------------ shard */

/* Split the last stage's samples into train/eval JSONL files (dropping the
 * split field); all samples must be chat (messages) or all text. */
static int split_samples(const char *in, const char *train, const char *eval, int64_t *n_train, int64_t *n_eval,
                         pl_err *err) {
    FILE *f = fopen(in, "rb");
    if (!f) return pl_err_set(err, PL_EIO, "%s: %s", in, strerror(errno));
    pl_afile at = {0}, ae = {0};
    int rc = pl_afile_open(&at, train, err);
    if (!rc) rc = pl_afile_open(&ae, eval, err);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int64_t ln = 0;
    int kind = 0; /* 1 chat, 2 text */
    *n_train = *n_eval = 0;
    while (!rc && (len = getline(&line, &cap, f)) > 0) {
        ln++;
        cJSON *j = cJSON_ParseWithLength(line, (size_t)len);
        if (!j) { rc = pl_err_set(err, PL_EFORMAT, "%s:%lld: not JSON", in, (long long)ln); break; }
        int k = cJSON_GetObjectItem(j, "messages") ? 1 : 2;
        if (kind && k != kind) {
            rc = pl_err_set(err, PL_EINVAL,
                            "shard: the pipeline's samples mix chat (messages) and plain text (sample %lld); "
                            "map them to one form before the shard stage", (long long)ln);
            cJSON_Delete(j);
            break;
        }
        kind = k;
        const char *sp = cJSON_GetStringValue(cJSON_GetObjectItem(j, "split"));
        int is_eval = sp && !strcmp(sp, "eval");
        cJSON_DeleteItemFromObject(j, "split");
        char *s = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
        if (!s) { rc = pl_err_set(err, PL_ENOMEM, "out of memory"); break; }
        FILE *o = is_eval ? ae.fp : at.fp;
        if (fputs(s, o) < 0 || fputc('\n', o) < 0) rc = pl_err_set(err, PL_EIO, "shard: write failed: %s", strerror(errno));
        free(s);
        if (is_eval) (*n_eval)++;
        else (*n_train)++;
    }
    free(line);
    fclose(f);
    if (!rc) rc = pl_afile_commit(&at, err);
    else pl_afile_abort(&at);
    if (!rc) rc = pl_afile_commit(&ae, err);
    else pl_afile_abort(&ae);
    return rc;
}

static void on_bad_record(void *ctx, const char *msg) {
    run_state *r = ctx;
    pl_progress_clear(&r->prog);
    fprintf(stderr, "  skipped: %s\n", msg);
}

static char *pipeline_card(run_state *r) {
    size_t cap = 8192, n = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    n += (size_t)snprintf(s + n, cap - n, "\n## Recipe pipeline\n\n- recipe: `%s` (%s)\n- seed: %.0f\n\n| stage | in | out | removed | reasons |\n|---|---|---|---|---|\n",
                          cJSON_GetStringValue(cJSON_GetObjectItem(r->plan, "name")), r->o->recipe,
                          cJSON_GetNumberValue(cJSON_GetObjectItem(r->plan, "seed")));
    const cJSON *c;
    cJSON_ArrayForEach(c, r->counts) {
        if (n + 1024 > cap) {
            char *t = realloc(s, cap *= 2);
            if (!t) break;
            s = t;
        }
        char reasons[600] = "";
        size_t rl = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItem(c, "reasons")) {
            if (rl > sizeof reasons - 100) break;
            char rt[256];
            reason_text(c, it->string, rt, sizeof rt);
            rl += (size_t)snprintf(reasons + rl, sizeof reasons - rl, "%s%s: %.0f", rl ? "; " : "", rt, it->valuedouble);
        }
        n += (size_t)snprintf(s + n, cap - n, "| %s | %.0f | %.0f | %.0f | %s |\n",
                              cJSON_GetStringValue(cJSON_GetObjectItem(c, "label")),
                              cJSON_GetNumberValue(cJSON_GetObjectItem(c, "input")),
                              cJSON_GetNumberValue(cJSON_GetObjectItem(c, "output")),
                              cJSON_GetNumberValue(cJSON_GetObjectItem(c, "removed")), reasons);
    }
    if (n + 256 < cap)
        snprintf(s + n, cap - n, "\nEach sample's provenance (source file:line or generator, seed and index, the "
                                 "filters it passed) is in the shards' /provenance column.\n");
    return s;
}

static int run_shard(run_state *r, const char *last_out, const char *key, pl_err *err) {
    if (!r->base) { *err = r->base_err; return err->code ? err->code : PL_EINVAL; }
    char dir[PATH_MAX], tr[PATH_MAX + 32], ev[PATH_MAX + 32], dtr[PATH_MAX], dev[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/stages/shard", r->run_dir);
    int rc;
    if ((rc = pl_mkdirs(dir, err))) return rc;
    snprintf(tr, sizeof tr, "%s/train.jsonl", dir);
    snprintf(ev, sizeof ev, "%s/eval.jsonl", dir);
    int64_t ntr = 0, nev = 0;
    if ((rc = split_samples(last_out, tr, ev, &ntr, &nev, err))) return rc;
    if (ntr == 0) return pl_err_set(err, PL_EINVAL, "shard: the pipeline produced no training samples");
    pl_tokenizer *tok = NULL;
    if (pl_model_is_random(r->base)) { /* a rehearsal model: the tokenizer.json beside its shape's config.json */
        char tdir[PATH_MAX];
        if (!pl_model_random_tokenizer_dir(r->base, tdir, sizeof tdir))
            return pl_err_set(err, PL_ENOTFOUND, "shard: %s: a random model has no tokenizer: give a shape whose folder "
                              "holds a tokenizer.json beside its config.json (random:PATH/config.json or random:FOLDER)",
                              r->base);
        rc = pl_tokenizer_load(&tok, tdir, err);
    } else {
        rc = pl_tokenizer_load(&tok, r->base, err);
    }
    if (rc) return rc;
    {
        /* what `potluck reproduce` checks a new base against (tokenizer.h) */
        char fp[65];
        if ((rc = pl_tokenizer_fingerprint(tok, fp, err))) goto out;
        cJSON_Delete(r->tok_info);
        r->tok_info = cJSON_CreateObject();
        cJSON_AddStringToObject(r->tok_info, "fingerprint", fp);
        cJSON_AddNumberToObject(r->tok_info, "vocab", pl_tokenizer_vocab(tok));
        const char *ct = pl_tokenizer_chat_template(tok);
        if (ct) {
            uint8_t d[32];
            char hx[65];
            pl_sha256_buf(ct, strlen(ct), d);
            pl_sha256_hex(d, hx);
            cJSON_AddStringToObject(r->tok_info, "chat_template_sha256", hx);
        }
    }
    const char *tname = cJSON_GetStringValue(cJSON_GetObjectItem(r->plan, "template"));
    const char *mask = cJSON_GetStringValue(cJSON_GetObjectItem(r->plan, "mask"));
    const cJSON *sh = cJSON_GetObjectItem(r->plan, "shard");
    pl_build_chat bc = {0};
    bc.on_bad = on_bad_record;
    bc.ctx = r;
    if (mask && (rc = pl_mask_mode_parse(mask, &bc.mask, err))) goto out;
    const char *tsrc = cJSON_GetStringValue(cJSON_GetObjectItem(r->plan, "template_source"));
    if (tsrc) bc.tmpl = tsrc; /* a template plugin's Jinja source */
    else if (tname) {
        bc.tmpl = pl_chat_builtin(tname);
        if (!bc.tmpl) {
            rc = pl_err_set(err, PL_EINVAL, "%s: template: '%s' is neither a template plugin nor a built-in template (chatml, llama2, llama3, mistral, alpaca, vicuna, guanaco)",
                            r->o->recipe, tname);
            goto out;
        }
    }
    char *card = pipeline_card(r);
    cJSON *prov = cJSON_CreateObject();
    cJSON_AddStringToObject(prov, "recipe", cJSON_GetStringValue(cJSON_GetObjectItem(r->plan, "name")));
    cJSON_AddItemToObject(prov, "pipeline", cJSON_Duplicate(r->counts, 1));
    cJSON_AddStringToObject(prov, "pipeline_key", key);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(prov, "tokenizer"), "path", r->base); /* for data inspect */
    for (int side = 0; side < 2 && !rc; side++) {
        if (side == 1 && nev == 0) break;
        snprintf(side ? dev : dtr, PATH_MAX, "%s/data/%s", r->run_dir, side ? "eval" : "train");
        pl_build_opts bo = {0};
        bo.in_path = side ? ev : tr;
        bo.out_dir = side ? dev : dtr;
        bo.tok = tok;
        bo.tokenizer_sha256 = r->base_id;
        bo.template_name = tname ? tname : "";
        bo.shard_tokens = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(sh, "shard_tokens"));
        bo.deflate_level = -1;
        bo.store_text = cJSON_IsTrue(cJSON_GetObjectItem(sh, "store_text"));
        bo.card_extra = card;
        bo.provenance_extra = prov;
        pl_build_stats bs = {0};
        bo.progress = &r->prog;
        pl_progress_begin(&r->prog, side ? "shard eval" : "shard train", side ? nev : ntr, "samples");
        rc = pl_dataset_build_chat(&bo, &bc, &bs, err);
        if (!rc) {
            pl_progress_update(&r->prog, side ? nev : ntr); /* all read (or there already: a complete dataset) */
            pl_progress_note(&r->prog, "%lld tokens", (long long)bs.tokens);
            pl_progress_end(&r->prog);
        } else pl_progress_clear(&r->prog);
        if (!rc && !r->o->quiet)
            printf("  data/%s: %lld samples, %lld tokens (%lld trained), %d shard(s)\n", side ? "eval" : "train",
                   (long long)bs.samples, (long long)bs.tokens, (long long)bs.trained, bs.shards);
    }
    if (!rc && nev == 0) {
        snprintf(dev, sizeof dev, "%s/data/eval", r->run_dir);
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof cmd, "%s/manifest.json", dev);
        unlink(cmd); /* no eval split: no stale eval set */
    }
    cJSON_Delete(prov);
    free(card);
out:
    pl_tokenizer_free(tok);
    return rc;
}

/* ------------------------------------------------------------ train */

static volatile sig_atomic_t run_stop;
static void on_signal(int sig) {
    if (run_stop) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    run_stop = sig;
}

/* A line per step (the training log), except on a terminal, where the
 * progress line shows the step and only the eval losses get lines. */
static void on_step(void *user, const pl_run_step *s) {
    run_state *r = user;
    if (r->o->quiet) return;
    if (s->step == 0) {
        pl_progress_clear(&r->tprog);
        fprintf(stderr, "  train: step 0: eval loss %.4f (base model)\n", s->eval_loss);
        return;
    }
    pl_run_progress_step(&r->tprog, s);
    int tty = r->tprog.mode == PL_PROGRESS_TTY;
    if (tty && isnan(s->eval_loss)) return;
    pl_progress_clear(&r->tprog);
    char ev[64] = "";
    if (!isnan(s->eval_loss)) snprintf(ev, sizeof ev, " eval %.4f", s->eval_loss);
    fprintf(stderr, "  train: step %d/%d loss %.4f lr %.2e %.1f tok/s%s%s\n", s->step, s->steps, s->loss, s->lr,
            s->tokens_per_s, ev, s->saved ? " (checkpoint)" : "");
}

static void on_msg(void *user, const char *msg) {
    run_state *r = user;
    pl_progress_clear(&r->tprog);
    if (!r->o->quiet) fprintf(stderr, "  train: %s\n", msg);
}

/* The adapter training ended with, as the host saw it: RUN/stages/train.adapter
 * holds the sha256 of the adapter_model.safetensors that pl_run_adapter picks
 * in train/ (final/, else the newest complete checkpoint), written
 * by this process only (recipe children cannot write there: confine.h), and
 * checked before every export. */
static void adapter_record_path(const run_state *r, char *p, size_t n) {
    snprintf(p, n, "%s/stages/train.adapter", r->run_dir);
}

static int adapter_sha_hex(const char *adapter_dir, char hex[65], pl_err *err) {
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", adapter_dir);
    uint8_t d[32];
    int rc = pl_sha256_file(p, d, err);
    if (!rc) pl_sha256_hex(d, hex);
    return rc;
}

static int record_adapter(const run_state *r, pl_err *err) {
    char tdir[PATH_MAX + 32], hex[65], rp[PATH_MAX + 32];
    snprintf(tdir, sizeof tdir, "%s/train", r->run_dir);
    char *ad = NULL, *model = NULL;
    int rc = pl_run_adapter(tdir, &ad, &model, err);
    if (!rc) rc = adapter_sha_hex(ad, hex, err);
    adapter_record_path(r, rp, sizeof rp);
    if (!rc) rc = pl_write_file_atomic(rp, hex, 64, err);
    free(ad);
    free(model);
    return rc;
}

/* Rank 0's preparation of the train stage's folder: resume an interrupted
 * run of the same key, else start over (*resume says which). */
static int train_prepare(run_state *r, const char *key, const char *dir, const char *kf, int *resume, pl_err *err) {
    /* an interrupted run of the same key resumes; anything else starts over */
    *resume = 0;
    char *old = NULL;
    FILE *f = fopen(kf, "r");
    if (f) {
        char buf[80] = "";
        if (fgets(buf, sizeof buf, f)) old = strdup(buf);
        fclose(f);
    }
    if (old && !strcmp(old, key) && !r->o->force && exists(dir)) *resume = 1;
    free(old);
    int rc;
    if (!*resume && exists(dir)) {
        /* move aside, then remove: the run dir never holds a half-deleted run */
        char old_dir[PATH_MAX + 32];
        snprintf(old_dir, sizeof old_dir, "%s/train.old", r->run_dir);
        if ((rc = pl_rmtree(old_dir, err))) return rc;
        if (rename(dir, old_dir) != 0)
            return pl_err_set(err, PL_EIO, "%s: cannot move the previous training run aside: %s", dir, strerror(errno));
        if ((rc = pl_rmtree(old_dir, err))) return rc;
    }
    return pl_write_file_atomic(kf, key, strlen(key), err);
}

/* The train stage. Under mpirun every rank trains its rows of each step
 * (trainer/run_dist.c, as `mpirun potluck train`): rank 0 prepares the
 * folder and tells the others whether the run resumes; rank 0 writes. */
static int run_train(run_state *r, const char *key, pl_err *err) {
    if (!r->base) { *err = r->base_err; return err->code ? err->code : PL_EINVAL; }
    char dir[PATH_MAX], kf[PATH_MAX + 32], dtr[PATH_MAX + 16], dev[PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s/train", r->run_dir);
    snprintf(kf, sizeof kf, "%s/stages/train.key", r->run_dir);
    snprintf(dtr, sizeof dtr, "%s/data/train", r->run_dir);
    snprintf(dev, sizeof dev, "%s/data/eval", r->run_dir);
    int resume = 0, rc = r->rank == 0 ? train_prepare(r, key, dir, kf, &resume, err) : PL_OK;
    if (r->ranks > 1) {
        int v[2] = {rc, resume};
        pl_err be = {0};
        if (pl_dist_bcast(v, sizeof v, 0, &be)) { *err = be; return be.code ? be.code : PL_EIO; }
        if (r->rank != 0 && v[0]) return pl_err_set(err, v[0], "train: rank 0 could not prepare the train stage");
        resume = v[1];
    }
    if (rc) return rc;
    pl_run_cfg c;
    pl_run_cfg_defaults(&c);
    cJSON *cfg = cJSON_CreateObject();
    cJSON_AddItemToObject(cfg, "lora", cJSON_Duplicate(cJSON_GetObjectItem(r->plan, "lora"), 1));
    cJSON_AddItemToObject(cfg, "train", cJSON_Duplicate(cJSON_GetObjectItem(r->plan, "train"), 1));
    rc = pl_run_cfg_apply_json(&c, cfg, r->o->recipe, err);
    cJSON_Delete(cfg);
    if (rc) goto out;
    free(c.model); c.model = strdup(r->base);
    free(c.data); c.data = strdup(dtr);
    char evm[PATH_MAX + 64];
    snprintf(evm, sizeof evm, "%s/manifest.json", dev);
    free(c.eval_data); c.eval_data = exists(evm) ? strdup(dev) : NULL;
    free(c.out); c.out = strdup(dir);
    c.seed = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(r->plan, "seed"));
    const cJSON *ev = cJSON_GetObjectItem(r->plan, "eval");
    int every = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(ev, "every"));
    c.eval_every = every > 0 ? every : c.steps;
    c.eval_rows = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(ev, "rows"));
    c.threads = r->o->threads;
    free(c.backend);
    c.backend = r->o->backend ? strdup(r->o->backend) : NULL;
    if (r->o->gpu_mem) { free(c.gpu_mem); c.gpu_mem = strdup(r->o->gpu_mem); }
    c.resume = resume;
    if (c.backend && !strcmp(c.backend, "cuda") && !c.gpu_mem && c.lora_r > 0 && !r->o->no_memory_check) {
        /* no cap given: the CUDA plan against the device's memory, now that the backend opens (check_memory
         * could not ask: the data stages' sandbox forks, and a CUDA context does not survive fork) */
        pl_err be_err = {0};
        const pl_backend *be = pl_backend_default(&be_err);
        double devmem = be ? (double)pl_backend_mem_total(be) : 0; /* a backend that cannot open: the trainer says why */
        if (devmem > 0) {
            char bd[32], what[64];
            snprintf(what, sizeof what, "the device's %s", pl_fmt_bytes(devmem, bd, sizeof bd));
            if ((rc = pl_run_gpu_fit(&c, devmem, what, 1, r->o->size, err))) {
                pl_err_prefix(err, "train");
                goto out;
            }
        }
    }
    if (c.threads > 0) omp_set_num_threads(c.threads);
    cJSON_Delete(r->mem_plan);
    r->mem_plan = NULL;
    {
        pl_err pe = {0};
        if (pl_run_cfg_plan_json(&c, r->base, &r->mem_plan, &pe)) r->mem_plan = NULL; /* the trainer reports its own errors */
    }
    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    run_stop = 0;
    pl_run_hooks hk = {.on_step = on_step, .on_msg = on_msg, .user = r, .stop = &run_stop,
                       .resume_hint = "run the same command again to resume"};
    pl_run_result res;
    rc = pl_run_train(&c, &hk, &res, err);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (!rc && !res.interrupted) pl_progress_end(&r->tprog);
    else pl_progress_clear(&r->tprog);
    if (!rc && res.interrupted) {
        rc = run_stop == SIGINT ? 130 : 143;
        pl_err_set(err, rc, "interrupted at step %d (checkpoint saved); run the same command again to resume",
                   res.steps_done);
    }
    if (!rc && r->rank == 0) rc = record_adapter(r, err);
out:
    pl_run_cfg_free(&c);
    return rc;
}

/* A task file named by the recipe's eval.tasks: relative to the recipe's
 * folder, else found in $POTLUCK_TASKS (':'-separated folders), as models
 * are found in $POTLUCK_MODELS; the recipe-relative path when neither has
 * it (the error then names it). */
static void task_path(const char *rdir, const char *t, char *out, size_t n) {
    snprintf(out, n, "%s/%s", rdir, t);
    if (exists(out)) return;
    const char *env = getenv("POTLUCK_TASKS");
    char *dirs = env ? strdup(env) : NULL, *save = NULL;
    for (char *d = dirs ? strtok_r(dirs, ":", &save) : NULL; d; d = strtok_r(NULL, ":", &save)) {
        if (!*d) continue;
        snprintf(out, n, "%s/%s", d, t);
        if (exists(out)) { free(dirs); return; }
    }
    free(dirs);
    snprintf(out, n, "%s/%s", rdir, t);
}

/* eval: the held-out loss of the base (step 0) and of the fine-tune (the
 * last eval), from the training run's metrics.jsonl. */
static int run_eval(run_state *r, pl_err *err) {
    char mp[PATH_MAX + 32], rp[PATH_MAX + 32];
    snprintf(mp, sizeof mp, "%s/train/metrics.jsonl", r->run_dir);
    snprintf(rp, sizeof rp, "%s/results.json", r->run_dir);
    FILE *f = fopen(mp, "r");
    if (!f) return pl_err_set(err, PL_EIO, "eval: %s: %s", mp, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    double base = NAN, fin = NAN, loss = NAN;
    int64_t last_step = 0, fin_step = 0, tokens = 0;
    while (getline(&line, &cap, f) > 0) {
        cJSON *j = cJSON_Parse(line);
        if (!j) continue;
        double step = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "step"));
        const cJSON *el = cJSON_GetObjectItem(j, "eval_loss");
        if (cJSON_IsNumber(el)) {
            if (step == 0) base = el->valuedouble;
            else { fin = el->valuedouble; fin_step = (int64_t)step; }
        }
        const cJSON *lo = cJSON_GetObjectItem(j, "loss");
        if (cJSON_IsNumber(lo)) {
            loss = lo->valuedouble;
            last_step = (int64_t)step;
            tokens = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "tokens"));
        }
        cJSON_Delete(j);
    }
    free(line);
    fclose(f);
    cJSON *res = cJSON_CreateObject();
    cJSON_AddStringToObject(res, "format", "potluck-eval/1"); /* its rows are docs/eval.md's */
    cJSON_AddStringToObject(res, "recipe", cJSON_GetStringValue(cJSON_GetObjectItem(r->plan, "name")));
    if (cJSON_GetObjectItem(r->plan, "size")) cJSON_AddStringToObject(res, "size", cJSON_GetStringValue(cJSON_GetObjectItem(r->plan, "size")));
    cJSON_AddStringToObject(res, "base", r->base ? r->base : "");
    cJSON_AddNumberToObject(res, "steps", (double)last_step);
    cJSON_AddNumberToObject(res, "tokens", (double)tokens);
    if (!isnan(loss)) cJSON_AddNumberToObject(res, "final_train_loss", loss);
    if (!isnan(base)) cJSON_AddNumberToObject(res, "base_eval_loss", base);
    if (!isnan(fin)) {
        cJSON_AddNumberToObject(res, "eval_loss", fin);
        cJSON_AddNumberToObject(res, "eval_step", (double)fin_step);
    }
    int rc = PL_OK;
    if (cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(r->plan, "eval"), "metrics")) > 0) {
        char sp[PATH_MAX + 64];
        snprintf(sp, sizeof sp, "%s/stages/shard/eval.jsonl", r->run_dir);
        struct stat st;
        if (stat(sp, &st) != 0 || st.st_size == 0) snprintf(sp, sizeof sp, "%s/stages/shard/train.jsonl", r->run_dir);
        /* the metrics see the fine-tune (ctx.model()); the base stays ctx.load_model("base") */
        char tdir0[PATH_MAX + 16], *mad = NULL, *mbm = NULL;
        snprintf(tdir0, sizeof tdir0, "%s/train", r->run_dir);
        pl_err aerr = {0};
        if (pl_run_adapter(tdir0, &mad, &mbm, &aerr)) mad = NULL;
        free(mbm);
        child_ctx c = {.o = r->o, .run_dir = r->run_dir, .base = r->base, .teacher = r->teacher, .in = sp, .adapter = mad,
                       .seed = stage_seed(cJSON_GetNumberValue(cJSON_GetObjectItem(r->plan, "seed")), "eval")};
        cJSON *m = NULL;
        char what[PATH_MAX + 32];
        snprintf(what, sizeof what, "%s: eval metrics", r->o->recipe);
        rc = run_child_json(r->o, what, child_metrics, &c, &m, err);
        if (!rc) cJSON_AddStringToObject(res, "metrics_model", mad ? "fine-tuned" : "base (no adapter found)");
        free(mad);
        if (!rc) {
            cJSON_AddItemToObject(res, "metrics", m);
            cJSON_AddStringToObject(res, "metrics_on", strstr(sp, "eval.jsonl") ? "eval split" : "train split (no eval split)");
            const cJSON *it;
            if (!r->o->quiet) cJSON_ArrayForEach(it, m) {
                char *v = cJSON_PrintUnformatted(it);
                printf("  eval: %s = %s\n", it->string, v ? v : "?");
                free(v);
            }
        }
    }
    /* rows (docs/eval.md): the held-out loss of base and fine-tune, and the
     * eval section's multiple-choice tasks scored on both (after the metrics
     * child: no fork once this process's OpenMP threads exist) */
    cJSON *rows = cJSON_CreateArray();
    cJSON_AddItemToObject(res, "rows", rows);
    if (!isnan(base)) cJSON_AddItemToArray(rows, pl_eval_row("base", r->base, NULL, "heldout", NULL, 0, "loss", base, NAN));
    if (!isnan(fin)) cJSON_AddItemToArray(rows, pl_eval_row("fine-tuned", r->base, "train", "heldout", NULL, 0, "loss", fin, NAN));
    const cJSON *evs = cJSON_GetObjectItem(r->plan, "eval"), *tj;
    int nt = cJSON_GetArraySize(cJSON_GetObjectItem(evs, "tasks"));
    /* and the same held-out prompts answered by both, with the same loaded models */
    int na = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(evs, "answers"));
    char ep[PATH_MAX + 64];
    snprintf(ep, sizeof ep, "%s/stages/shard/eval.jsonl", r->run_dir);
    struct stat est;
    if (stat(ep, &est) != 0 || est.st_size == 0) na = 0; /* no held-out split */
    if (!rc && (nt > 0 || na > 0) && r->base) {
        char tdir[PATH_MAX + 16], *ad = NULL, *bm = NULL, rdir[PATH_MAX];
        char (*tp)[PATH_MAX + 8] = calloc((size_t)(nt ? nt : 1), sizeof *tp);
        const char **tv = calloc((size_t)(nt ? nt : 1), sizeof *tv);
        pl_answers *ans = NULL;
        pl_err skipped = {0};
        snprintf(tdir, sizeof tdir, "%s/train", r->run_dir);
        snprintf(rdir, sizeof rdir, "%s", r->o->recipe);
        char *sl = strrchr(rdir, '/');
        if (sl) *sl = 0; else snprintf(rdir, sizeof rdir, ".");
        int k = 0;
        if (tp && tv) cJSON_ArrayForEach(tj, cJSON_GetObjectItem(evs, "tasks")) {
            const char *t = cJSON_GetStringValue(tj);
            if (!t) continue;
            if (t[0] == '/') snprintf(tp[k], sizeof tp[k], "%s", t);
            else task_path(rdir, t, tp[k], sizeof tp[k]);
            tv[k] = tp[k];
            k++;
        }
        rc = !tp || !tv ? pl_err_set(err, PL_ENOMEM, "eval: out of memory") : pl_run_adapter(tdir, &ad, &bm, err);
        if (!rc && na > 0)
            rc = pl_answers_open(&ans, ep, na, (int)cJSON_GetNumberValue(cJSON_GetObjectItem(evs, "answer_tokens")), err);
        if (!rc) rc = pl_eval_base_and_tuned(r->base, ad, tv, k, (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(evs, "limit")),
                                             stage_seed(cJSON_GetNumberValue(cJSON_GetObjectItem(r->plan, "seed")), "eval"), rows,
                                             &r->prog, ans, &skipped, err);
        if (rc) pl_progress_clear(&r->prog);
        if (rc) pl_err_prefix(err, "eval: tasks");
        if (!rc && ans && skipped.code) {
            if (!r->o->quiet) printf("  eval: no answers side by side: %s\n", skipped.msg);
        } else if (!rc && ans) {
            cJSON *aj = pl_answers_json(ans);
            if (!r->o->quiet)
                printf("  eval: %d held-out prompts answered by the base and the fine-tune (results.json, report.html)\n",
                       cJSON_GetArraySize(aj));
            cJSON_AddItemToObject(res, "answers", aj);
        }
        pl_answers_free(ans);
        free(ad);
        free(bm);
        free(tp);
        free(tv);
    }
    if (!rc && !r->o->quiet && cJSON_GetArraySize(rows) > 0) {
        char *tab = pl_eval_table(rows);
        if (tab) printf("%s", tab);
        free(tab);
    }
    if (!rc) rc = pl_json_write(rp, res, err);
    cJSON_Delete(res);
    if (!rc && !r->o->quiet) {
        if (!isnan(base) && !isnan(fin))
            printf("  eval: held-out loss %.4f (base) -> %.4f (fine-tuned, step %lld)\n", base, fin, (long long)fin_step);
        else printf("  eval: no held-out split (add pl.split{eval = 0.1} to the pipeline); train loss %.4f\n", loss);
    }
    return rc;
}

/* The adapter about to be exported must be the one training ended with. */
static int check_adapter(const run_state *r, const char *adapter, pl_err *err) {
    char rp[PATH_MAX + 32], want[80] = "", hex[65];
    adapter_record_path(r, rp, sizeof rp);
    FILE *f = fopen(rp, "r");
    if (!f) return record_adapter(r, err); /* a run from before the record existed: record it now */
    size_t n = fread(want, 1, 64, f);
    fclose(f);
    want[n] = 0;
    int rc = adapter_sha_hex(adapter, hex, err);
    if (rc) return rc;
    size_t rl = strlen(r->run_dir);
    const char *shown = !strncmp(adapter, r->run_dir, rl) && adapter[rl] == '/' ? adapter + rl + 1 : adapter;
    if (n != 64 || strcmp(want, hex))
        return pl_err_set(err, PL_EFORMAT,
                          "%s/adapter_model.safetensors is not the adapter training ended with (sha256 %.12s..., "
                          "recorded %.12s... in stages/train.adapter); nothing was exported. Rerun training "
                          "(potluck run ... --from train)",
                          shown, hex, n == 64 ? want : "(unreadable)");
    return 0;
}

static int run_export(run_state *r, pl_err *err) {
    const cJSON *ex = cJSON_GetObjectItem(r->plan, "export");
    const cJSON *f;
    char tdir[PATH_MAX], out[PATH_MAX + 64];
    snprintf(tdir, sizeof tdir, "%s/train", r->run_dir);
    snprintf(out, sizeof out, "%s/export", r->run_dir);
    int rc = pl_mkdirs(out, err);
    if (rc) return rc;
    cJSON_ArrayForEach(f, cJSON_GetObjectItem(ex, "formats")) {
        const char *fmt = cJSON_GetStringValue(f);
        if (!fmt) continue;
        if (!strcmp(fmt, "peft")) snprintf(out, sizeof out, "%s/export/adapter", r->run_dir);
        else if (!strcmp(fmt, "merged")) snprintf(out, sizeof out, "%s/export/merged", r->run_dir);
        else snprintf(out, sizeof out, "%s/export/model.gguf", r->run_dir);
        const char *gt = cJSON_GetStringValue(cJSON_GetObjectItem(ex, "gguf_type"));
        const char *dt = cJSON_GetStringValue(cJSON_GetObjectItem(ex, "dtype"));
        pl_export_job job = {.format = fmt, .out = out, .dtype = PL_F32, .gguf_ftype = PL_FTYPE_F16};
        if (!strcmp(fmt, "gguf") && gt && pl_gguf_ftype_parse(gt, &job.gguf_ftype))
            return pl_err_set(err, PL_EINVAL, "export: gguf_type: expected one of %s; got '%s'", pl_gguf_ftype_list(), gt);
        if (!strcmp(fmt, "merged")) {
            if (dt && !strcmp(dt, "bf16")) job.dtype = PL_BF16;
            else if (!dt || strcmp(dt, "f32"))
                return pl_err_set(err, PL_EINVAL, "export: dtype: expected f32 or bf16, got '%s'", dt ? dt : "");
        }
        char *adapter = NULL, *model = NULL, said[128];
        fflush(stdout);
        rc = pl_run_adapter(tdir, &adapter, &model, err);
        if (!rc) rc = check_adapter(r, adapter, err);
        job.adapter = adapter;
        job.model = model;
        if (!rc) rc = pl_export_job_run(&job, said, sizeof said, err);
        free(adapter);
        free(model);
        if (rc) return pl_err_prefix(err, "export --format %s", fmt);
        printf("export: %s -> %s\n", said, out);
        if (!r->o->quiet) printf("  export: %s -> %s\n", fmt, out);
    }
    char *adapter = NULL, *model = NULL;
    rc = pl_run_adapter(tdir, &adapter, &model, err);
    if (!rc) rc = pl_run_export_kl(r->run_dir, r->base, adapter, r->plan, r->o->quiet, err);
    free(adapter);
    free(model);
    return rc;
}

/* ------------------------------------------------------------ run */

/* "2026-01-02T03:04:05Z" under key (stage records only: keys never hold times) */
static void utc_stamp(cJSON *j, const char *key, time_t t) {
    struct tm tm;
    char b[32];
    if (!gmtime_r(&t, &tm) || !strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm)) return;
    cJSON_AddStringToObject(j, key, b);
}

/* What the training ran on (a bundle's lock and card report it): backend,
 * threads, CPU model and count, kernel. */
static void add_host(cJSON *j, const pl_pipe_opts *o) {
    cJSON *h = cJSON_AddObjectToObject(j, "host");
    cJSON_AddStringToObject(h, "backend", o->backend ? o->backend : "cpu");
    cJSON_AddNumberToObject(h, "threads", o->threads > 0 ? o->threads : omp_get_max_threads());
    cJSON_AddNumberToObject(h, "cpus", (double)sysconf(_SC_NPROCESSORS_ONLN));
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        char *c = strchr(line, ':');
        if (strncmp(line, "model name", 10) || !c) continue;
        c++;
        while (*c == ' ' || *c == '\t') c++;
        c[strcspn(c, "\n")] = 0;
        cJSON_AddStringToObject(h, "cpu", c);
        break;
    }
    if (f) fclose(f);
    struct utsname u;
    if (uname(&u) == 0) {
        char s[600];
        snprintf(s, sizeof s, "%s %s %s", u.sysname, u.release, u.machine);
        cJSON_AddStringToObject(h, "os", s);
    }
}

/* The training's measured peak resident set (the last metrics line's
 * rss_peak: this process's, which holds the whole training), beside the plan. */
static void add_rss_peak(cJSON *j, const run_state *r) {
    char mp[PATH_MAX + 32];
    snprintf(mp, sizeof mp, "%s/train/metrics.jsonl", r->run_dir);
    FILE *f = fopen(mp, "r");
    if (!f) return;
    char *line = NULL;
    size_t cap = 0;
    double peak = -1;
    while (getline(&line, &cap, f) > 0) {
        cJSON *m = cJSON_Parse(line);
        const cJSON *v = cJSON_GetObjectItem(m, "rss_peak");
        if (cJSON_IsNumber(v) && v->valuedouble > peak) peak = v->valuedouble;
        cJSON_Delete(m);
    }
    free(line);
    fclose(f);
    if (peak > 0) cJSON_AddNumberToObject(j, "rss_peak", peak);
}

/* A tail stage (shard, train, eval, export). Under mpirun the train stage
 * runs on every rank (each calls this with the same key); shard runs on
 * rank 0 alone, and eval and export after the others are done
 * (pl_pipeline_run, share_rc). */
static int tail_stage(run_state *r, int i, const char *key, const char *last_out, pl_err *err) {
    const char *name = TAIL[i - r->n_steps - 1];
    char sj[PATH_MAX + 64], need[PATH_MAX + 64];
    snprintf(sj, sizeof sj, "%s/stages/%s.json", r->run_dir, name);
    need[0] = 0;
    if (!strcmp(name, "shard")) snprintf(need, sizeof need, "%s/data/train/manifest.json", r->run_dir);
    else if (!strcmp(name, "train")) snprintf(need, sizeof need, "%s/train/metrics.jsonl", r->run_dir);
    else if (!strcmp(name, "eval")) snprintf(need, sizeof need, "%s/results.json", r->run_dir);
    int cached = !must_run(r, i) && stage_cached(r, sj, key, need[0] ? need : NULL);
    if (r->ranks > 1 && !strcmp(name, "train")) { /* the train stage on every rank: rank 0's view of the folder decides */
        int v = cached, brc = pl_dist_bcast(&v, sizeof v, 0, err);
        if (brc) return brc;
        cached = v;
    }
    if (r->only && i < r->only) {
        if (!cached)
            return pl_err_set(err, PL_EINVAL, "--only %s: the stage before it, %s, is not up to date (run without --only first)",
                              r->o->only, name);
        say(r, name, "cached", NULL);
        return PL_OK;
    }
    if ((r->only && i > r->only) || (r->to && i > r->to)) return 1;
    if (cached) { say(r, name, "cached", NULL); return PL_OK; }
    if (r->rank == 0) unlink(sj);
    if (!r->o->quiet) { printf("stage %-28s running\n", name); fflush(stdout); }
    double t0 = now_s();
    time_t started = time(NULL);
    int rc;
    if (!strcmp(name, "shard")) rc = run_shard(r, last_out, key, err);
    else if (!strcmp(name, "train")) { rc = run_train(r, key, err); r->trained_here = 1; }
    else if (!strcmp(name, "eval")) rc = run_eval(r, err);
    else rc = run_export(r, err);
    if (rc || r->rank != 0) return rc; /* rank 0 records the stage */
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "key", key);
    cJSON_AddNumberToObject(j, "seconds", now_s() - t0);
    utc_stamp(j, "started", started);
    utc_stamp(j, "finished", time(NULL));
    if (!strcmp(name, "train")) {
        add_host(j, r->o);
        if (r->mem_plan) cJSON_AddItemToObject(j, "memory_plan", cJSON_Duplicate(r->mem_plan, 1));
        add_rss_peak(j, r);
    }
    if (!strcmp(name, "shard") && r->tok_info) cJSON_AddItemToObject(j, "tokenizer", cJSON_Duplicate(r->tok_info, 1));
    if (strcmp(name, "eval") && strcmp(name, "export") ? 1 : 0) {
        cJSON *m = cJSON_AddObjectToObject(j, "models");
        cJSON_AddStringToObject(m, "base", r->base_id);
    }
    rc = pl_json_write(sj, j, err);
    cJSON_Delete(j);
    char d[64];
    snprintf(d, sizeof d, "[%.1f s]", now_s() - t0);
    say(r, name, "ran", d);
    return rc;
}

/* The training's memory plan before any stage runs (trainer/run.h: the plan
 * the trainer allocates from), for the backend the run trains on:
 * RUN/memory_plan.json, written by the host. On the CPU the plan's total is
 * checked against this machine's memory; on CUDA its device total against
 * --gpu-mem (or the recipe's train.gpu_mem) when one is given, else the
 * train stage checks it against the device's memory when it opens the
 * backend (not here: the data stages' sandbox forks, and a CUDA context
 * does not survive fork). A plan that does not fit stops the run here,
 * before hours of data work, naming what to change; --no-memory-check
 * trains anyway. A recipe or model the plan cannot read is left to the
 * train stage to report. */
static int check_memory(run_state *r, pl_err *err) {
    if (!r->base) return PL_OK;
    pl_run_cfg c;
    pl_run_cfg_defaults(&c);
    cJSON *cfg = cJSON_CreateObject();
    cJSON_AddItemToObject(cfg, "lora", cJSON_Duplicate(cJSON_GetObjectItem(r->plan, "lora"), 1));
    cJSON_AddItemToObject(cfg, "train", cJSON_Duplicate(cJSON_GetObjectItem(r->plan, "train"), 1));
    pl_err e = {0};
    cJSON *j = NULL;
    int rc = pl_run_cfg_apply_json(&c, cfg, r->o->recipe, &e);
    cJSON_Delete(cfg);
    c.threads = r->o->threads;
    free(c.backend); /* as the train stage: the command line's backend */
    c.backend = r->o->backend ? strdup(r->o->backend) : NULL;
    if (r->o->gpu_mem) { free(c.gpu_mem); c.gpu_mem = strdup(r->o->gpu_mem); }
    free(c.model);
    c.model = strdup(r->base);
    const int cuda = c.backend && !strcmp(c.backend, "cuda");
    double cap = 0;
    if (!rc && cuda && c.gpu_mem) {
        const char *why = pl_parse_bytes(c.gpu_mem, &cap);
        if (why) {
            rc = pl_err_set(err, PL_EINVAL, "%s: %s: got \"%s\"", r->o->gpu_mem ? "--gpu-mem" : "train.gpu_mem", why,
                            c.gpu_mem);
            pl_run_cfg_free(&c);
            return rc;
        }
    }
    if (!rc) rc = pl_run_cfg_plan_json(&c, r->base, &j, &e);
    if (rc) {
        pl_run_cfg_free(&c);
        return PL_OK;
    }
    /* on the CPU the ranks on this machine (mpirun) each hold a whole copy: they share its memory */
    const int local = cuda ? 1 : pl_dist_env_local_size();
    double mem = cuda ? cap : pl_machine_memory() / local;
    double total = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "total"));
    /* on CUDA the device's share plus the CUDA runtime's reserve (trainer/plan.h) */
    double need = cuda ? cJSON_GetNumberValue(cJSON_GetObjectItem(j, "device_need")) : total;
    double rt = cuda ? cJSON_GetNumberValue(cJSON_GetObjectItem(j, "runtime_reserve")) : 0;
    /* the breakdown: on CUDA what the device holds, on the CPU every byte */
    const cJSON *cats = cJSON_GetObjectItem(j, cuda ? "device" : "categories");
    double w = cJSON_GetNumberValue(cJSON_GetObjectItem(cats, "weights"));
    double a = cJSON_GetNumberValue(cJSON_GetObjectItem(cats, "activations"));
    double opt = cJSON_GetNumberValue(cJSON_GetObjectItem(cats, "optimizer"));
    int fits = !(mem > 0) || need <= mem;
    if (cuda) {
        if (mem > 0) cJSON_AddNumberToObject(j, "gpu_mem", mem);
    } else if (mem > 0) {
        cJSON_AddNumberToObject(j, "machine_memory", mem * local);
        if (local > 1) cJSON_AddNumberToObject(j, "ranks_on_machine", local);
    }
    if (cuda && !(mem > 0)) cJSON_AddNullToObject(j, "fits"); /* checked by the train stage */
    else cJSON_AddBoolToObject(j, "fits", fits);
    if (r->o->size) cJSON_AddStringToObject(j, "size", r->o->size);
    char pp[PATH_MAX + 32];
    snprintf(pp, sizeof pp, "%s/memory_plan.json", r->run_dir);
    rc = pl_json_write(pp, j, err);
    if (rc) {
        cJSON_Delete(j);
        pl_run_cfg_free(&c);
        return rc;
    }
    char bt[32], bm[32], bw[32], ba[32], bo[32], br[32], lim[64];
    pl_fmt_bytes(rt, br, sizeof br);
    pl_fmt_bytes(need, bt, sizeof bt);
    pl_fmt_bytes(mem, bm, sizeof bm);
    pl_fmt_bytes(w, bw, sizeof bw);
    pl_fmt_bytes(a, ba, sizeof ba);
    pl_fmt_bytes(opt, bo, sizeof bo);
    snprintf(lim, sizeof lim, "%s %s", r->o->gpu_mem ? "--gpu-mem" : "train.gpu_mem", bm);
    if (!r->o->quiet) {
        if (!cuda && local > 1)
            printf("plan: training needs %s (weights %s, activations %s, optimizer %s) in each of the %d ranks on "
                   "this machine, %s each: %s\n", bt, bw, ba, bo, local, bm, fits ? "fits" : "does NOT fit");
        else if (!cuda)
            printf("plan: training needs %s (weights %s, activations %s, optimizer %s) of this machine's %s: %s\n", bt,
                   bw, ba, bo, bm, fits ? "fits" : "does NOT fit");
        else if (mem > 0)
            printf("plan: training on the cuda backend needs %s of device memory (weights %s, activations %s, "
                   "optimizer %s, the CUDA runtime's reserve %s) of %s: %s\n", bt, bw, ba, bo, br, lim,
                   fits ? "fits" : "does NOT fit");
        else
            printf("plan: training on the cuda backend needs %s of device memory (weights %s, activations %s, "
                   "optimizer %s, the CUDA runtime's reserve %s); the train stage checks it against the device's "
                   "memory\n", bt, bw, ba, bo, br);
        fflush(stdout);
    }
    const int T = r->n_steps + 2; /* the train stage's number */
    int trains = (!r->to || r->to >= T) && (!r->only || r->only == T);
    pl_err pe = {0};
    rc = PL_OK;
    if (!fits && trains && !r->o->no_memory_check)
        rc = cuda ? pl_run_gpu_fit(&c, mem, lim, 1, r->o->size, &pe) : pl_run_plan_check(j, mem, r->o->size, r->base, &pe);
    cJSON_Delete(j);
    pl_run_cfg_free(&c);
    if (!rc) return PL_OK;
    if (local > 1)
        return pl_err_set(err, PL_ERANGE, "train: %d ranks on this machine hold a copy each, so each has 1/%d of its "
                          "memory: %s (fewer ranks a machine; memory_plan.json has the details; --no-memory-check "
                          "trains anyway)", local, local, pe.msg);
    return pl_err_set(err, PL_ERANGE, "train: %s (memory_plan.json has the details; --no-memory-check trains anyway)", pe.msg);
}

int pl_pipeline_run(const pl_pipe_opts *o, pl_err *err) {
    /* the train and eval stages' models (recipe generation runs in the sandbox's child, on the cpu) */
    int brc = pl_backend_set_default(o->backend, err);
    if (brc) return brc;
    /* several ranks (mpirun; docs/distributed.md): rank 0 writes and speaks,
     * the others run their parts of the data stages quietly */
    pl_pipe_opts ro = *o;
    int rank = pl_dist_rank(), ranks = pl_dist_size();
    if (rank != 0) ro.quiet = 1;
    o = &ro;
    run_state r = {.o = o, .rank = rank, .ranks = ranks};
    if (o->quiet) r.prog.mode = r.tprog.mode = PL_PROGRESS_OFF;
    r.tprog.every = -1;
    int rc;
    char def[PATH_MAX];
    const char *out = o->out;
    if (!out) {
        const char *b = strrchr(o->recipe, '/') ? strrchr(o->recipe, '/') + 1 : o->recipe;
        snprintf(def, sizeof def, "runs/%.*s%s%s", (int)(strlen(b) > 4 && !strcmp(b + strlen(b) - 4, ".lua") ? strlen(b) - 4 : strlen(b)),
                 b, o->size ? "-" : "", o->size ? o->size : "");
        out = def;
    }
    if (rank == 0) {
        if ((rc = pl_mkdirs(out, err))) return rc;
        r.run_dir = realpath(out, NULL);
        if (!r.run_dir) return pl_err_set(err, PL_EIO, "%s: %s", out, strerror(errno));
    }
    if (ranks > 1) {
        /* rank 0's run directory (on a filesystem every rank sees) and a
         * private folder for this rank's parts of the stages */
        size_t n = r.run_dir ? strlen(r.run_dir) + 1 : 0;
        if ((rc = pl_dist_bcast_bytes((void **)&r.run_dir, &n, 0, err))) return rc;
        const char *tmp = getenv("TMPDIR");
        char tp[PATH_MAX];
        snprintf(tp, sizeof tp, "%s/potluck-rank%d-XXXXXX", tmp && *tmp ? tmp : "/tmp", rank);
        if (!mkdtemp(tp)) return pl_err_set(err, PL_EIO, "%s: %s", tp, strerror(errno));
        r.part_dir = strdup(tp);
    }
    r.counts = cJSON_CreateArray();
    child_ctx pc = {.o = o, .run_dir = r.run_dir};
    if (rank == 0 && (rc = run_child_json(o, o->recipe, child_plan, &pc, &r.plan, err))) goto done;
    if (ranks > 1) {
        if (rank != 0) r.plan = cJSON_CreateObject();
        if ((rc = share_json(&r, &r.plan, err))) goto done;
    }
    /* models */
    const char *bname = o->base ? o->base : cJSON_GetStringValue(cJSON_GetObjectItem(r.plan, "base"));
    if (pl_model_resolve(bname, o->base != NULL, &r.base, &r.base_err)) r.base = NULL;
    /* a base that is named but cannot be found fails now, not after the data stages */
    if (!r.base && bname && *bname) {
        rc = pl_err_set(err, r.base_err.code, "%s%s", o->base ? "--base " : "base: ", r.base_err.msg);
        goto done;
    }
    const char *tname = o->teacher ? o->teacher : cJSON_GetStringValue(cJSON_GetObjectItem(r.plan, "teacher"));
    if (tname && pl_model_resolve(tname, o->teacher != NULL, &r.teacher, &r.teacher_err)) r.teacher = NULL;
    if (!r.teacher && tname && *tname) {
        rc = pl_err_set(err, r.teacher_err.code, "%s%s", o->teacher ? "--teacher " : "teacher: ", r.teacher_err.msg);
        goto done;
    }
    model_id(r.base, r.base_id);
    model_id(r.teacher, r.teacher_id);
    if (rank == 0) {
        cJSON *p = cJSON_Duplicate(r.plan, 1);
        cJSON *m = cJSON_AddObjectToObject(p, "models");
        cJSON_AddStringToObject(m, "base", r.base ? r.base : "");
        if (r.teacher) cJSON_AddStringToObject(m, "teacher", r.teacher);
        cJSON_AddStringToObject(p, "recipe_file", o->recipe);
        char *rp = realpath(o->recipe, NULL); /* a bundle finds the recipe and its files from any directory */
        if (rp) cJSON_AddStringToObject(p, "recipe_path", rp);
        free(rp);
        char pp[PATH_MAX + 16];
        snprintf(pp, sizeof pp, "%s/plan.json", r.run_dir);
        rc = pl_json_write(pp, p, err);
        cJSON_Delete(p);
        if (rc) goto done;
    }
    r.n_steps = cJSON_GetArraySize(cJSON_GetObjectItem(r.plan, "steps"));
    r.n_total = r.n_steps + 4;
    if (o->from && (rc = find_stage(&r, o->from, "--from", &r.from, err))) goto done;
    if (o->only && (rc = find_stage(&r, o->only, "--only", &r.only, err))) goto done;
    if (o->to && (rc = find_stage(&r, o->to, "--to", &r.to, err))) goto done;
    if (!o->quiet) {
        printf("run %s: recipe %s%s%s, base %s\n", r.run_dir, cJSON_GetStringValue(cJSON_GetObjectItem(r.plan, "name")),
               o->size ? " at size " : "", o->size ? o->size : "", r.base ? r.base : "(not found)");
        fflush(stdout);
    }
    if (rank == 0 && (rc = check_memory(&r, err))) goto done;
    if (o->dry_run) {
        if (!o->quiet) printf("dry run: %s/plan.json and memory_plan.json written; no stage ran\n", r.run_dir);
        goto done;
    }
    char key[65], prev[65], last_out[PATH_MAX + 16] = "";
    {
        char seed[64];
        snprintf(seed, sizeof seed, "%.0f", cJSON_GetNumberValue(cJSON_GetObjectItem(r.plan, "seed")));
        key_of(prev, "potluck-pipeline-v1", seed, "");
    }
    for (int i = 1; i <= r.n_steps; i++) {
        char outp[PATH_MAX + 16];
        rc = run_data_stage(&r, i, prev, last_out[0] ? last_out : NULL, key, outp, sizeof outp, err);
        if (rc == 1) { rc = 0; goto done; }
        if (rc) goto done;
        memcpy(prev, key, 65);
        snprintf(last_out, sizeof last_out, "%s", outp);
    }
    /* shard: the data key + what turns samples into tokens; under mpirun
     * rank 0 shards while the others wait (sleeping), then every rank trains
     * its rows of each step (trainer/run_dist.c), then rank 0 goes on alone */
    {
        char *sh = json_str(cJSON_GetObjectItem(r.plan, "shard"));
        char extra[1024];
        snprintf(extra, sizeof extra, "%s|%s|%s", r.base_id,
                 cJSON_GetStringValue(cJSON_GetObjectItem(r.plan, "template")) ? cJSON_GetStringValue(cJSON_GetObjectItem(r.plan, "template")) : "-",
                 cJSON_GetStringValue(cJSON_GetObjectItem(r.plan, "mask")));
        key_of(key, prev, extra, sh);
        free(sh);
        rc = rank == 0 ? tail_stage(&r, r.n_steps + 1, key, last_out, err) : PL_OK;
        if (ranks > 1) rc = share_rc(&r, rc, "shard", err);
        if (rc == 1) { rc = 0; goto done; }
        if (rc) goto done;
        memcpy(prev, key, 65);
    }
    /* train: + lora/train sections, eval settings and the base */
    {
        char *lo = json_str(cJSON_GetObjectItem(r.plan, "lora")), *tr = json_str(cJSON_GetObjectItem(r.plan, "train"));
        /* the eval stage's own tasks and limit do not change training */
        cJSON *evc = cJSON_Duplicate(cJSON_GetObjectItem(r.plan, "eval"), 1);
        cJSON_DeleteItemFromObject(evc, "tasks");
        cJSON_DeleteItemFromObject(evc, "limit");
        cJSON_DeleteItemFromObject(evc, "answers");
        cJSON_DeleteItemFromObject(evc, "answer_tokens");
        char *ev = json_str(evc);
        cJSON_Delete(evc);
        size_t n = strlen(lo) + strlen(tr) + strlen(ev) + 200;
        char *s = malloc(n);
        if (s) snprintf(s, n, "%s|%s|%s|%s", lo, tr, ev, r.base_id);
        key_of(key, prev, "train", s ? s : "");
        free(s); free(lo); free(tr); free(ev);
        rc = tail_stage(&r, r.n_steps + 2, key, last_out, err);
        if (ranks > 1) rc = share_rc(&r, rc, "train", err);
        if (rc == 1) { rc = 0; goto done; }
        if (rc) goto done;
        memcpy(prev, key, 65);
    }
    if (ranks > 1) {
        /* eval and export are rank 0's, in one process: the others are done;
         * rank 0 leaves the job (MPI ends here) and goes on as one process,
         * also across the fresh process image below */
        ranks = r.ranks = 1; /* no wait for the others at the end: they are done */
        if (rank != 0) goto done;
        pl_dist_finalize();
        setenv("POTLUCK_DIST", "off", 1);
    }
    /* eval metrics run in a recipe child; after training in this process
     * (OpenMP's pool exists, and libgomp does not survive fork) continue in
     * a fresh process image instead */
    if (r.trained_here && !r.only && o->argv &&
        cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(r.plan, "eval"), "metrics")) > 0) {
        char **av = calloc((size_t)o->argc + 4, sizeof *av);
        if (av) {
            int n = 0;
            for (int i = 0; i < o->argc; i++) {
                const char *a = o->argv[i];
                if (!strcmp(a, "--force")) continue;
                if ((!strcmp(a, "--from") || !strcmp(a, "--only")) && i + 1 < o->argc) { i++; continue; }
                av[n++] = o->argv[i];
            }
            av[n++] = "--from";
            av[n++] = "eval";
            av[n] = NULL;
            if (!o->quiet)
                printf("run: continuing in a fresh process for the eval metrics (OpenMP's threads do not survive fork)\n");
            fflush(stdout);
            fflush(stderr);
            execv("/proc/self/exe", av);
            free(av); /* exec failed: carry on here */
        }
    }
    {
        cJSON *evt = cJSON_CreateObject();
        cJSON_AddItemToObject(evt, "tasks", cJSON_Duplicate(cJSON_GetObjectItem(cJSON_GetObjectItem(r.plan, "eval"), "tasks"), 1));
        cJSON_AddItemToObject(evt, "limit", cJSON_Duplicate(cJSON_GetObjectItem(cJSON_GetObjectItem(r.plan, "eval"), "limit"), 1));
        cJSON_AddItemToObject(evt, "answers", cJSON_Duplicate(cJSON_GetObjectItem(cJSON_GetObjectItem(r.plan, "eval"), "answers"), 1));
        cJSON_AddItemToObject(evt, "answer_tokens",
                              cJSON_Duplicate(cJSON_GetObjectItem(cJSON_GetObjectItem(r.plan, "eval"), "answer_tokens"), 1));
        char *et = json_str(evt);
        cJSON_Delete(evt);
        key_of(key, prev, "eval", et);
        free(et);
    }
    rc = tail_stage(&r, r.n_steps + 3, key, last_out, err);
    if (rc == 1) { rc = 0; goto done; }
    if (rc) goto done;
    memcpy(prev, key, 65);
    {
        char *ex = json_str(cJSON_GetObjectItem(r.plan, "export"));
        key_of(key, prev, "export", ex);
        free(ex);
    }
    rc = tail_stage(&r, r.n_steps + 4, key, last_out, err);
    if (rc == 1) rc = 0;
    if (!rc && !o->quiet) printf("done: %s\n", r.run_dir);
    if (!rc && !r.to && !r.only) rc = pl_run_finish(r.run_dir, o->recipe, o->quiet, err);
done:
    if (r.part_dir) {
        char p2[PATH_MAX + 32];
        snprintf(p2, sizeof p2, "%s/out.jsonl", r.part_dir);
        unlink(p2);
        snprintf(p2, sizeof p2, "%s/removed.jsonl", r.part_dir);
        unlink(p2);
        rmdir(r.part_dir);
        free(r.part_dir);
    }
    /* several ranks: none leaves before the others are done (rank 0 may
     * still be writing what they would read next) */
    if (ranks > 1 && !rc) rc = pl_dist_wait(1, err);
    cJSON_Delete(r.plan);
    cJSON_Delete(r.counts);
    cJSON_Delete(r.tok_info);
    cJSON_Delete(r.mem_plan);
    free(r.run_dir);
    free(r.base);
    free(r.teacher);
    return rc;
}
