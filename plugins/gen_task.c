/* gen_task.c: generative eval tasks (gen_task.h): the load and run
 * children, their confinement, and the items' hash. The Lua side (the task
 * schema, prompts, generation, scorers) is prelude.lua's
 * H.task_describe / H.task_run. */
#include "gen_task.h"

#include <limits.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/sha256.h"
#include "confine.h"
#include "host.h"

int pl_gen_task_is_lua(const char *path) {
    size_t n = path ? strlen(path) : 0;
    return n > 4 && !strcmp(path + n - 4, ".lua");
}

void pl_gen_task_free(pl_gen_task *t) {
    if (!t) return;
    free(t->path);
    free(t->name);
    free(t->metric);
    free(t->scorer);
    free(t->judge);
    cJSON_Delete(t->items);
    memset(t, 0, sizeof *t);
}

typedef struct gen_child {
    const pl_gen_task *t;
    const char *path;
    const char *model, *adapter, *judge;
    const int64_t *sel;
    int64_t n, seed;
    const pl_gen_task_opts *o;
    char name[256];
} gen_child;

/* The folder a model's files live in when that is more than the file: a
 * llama2.c checkpoint keeps its tokenizer beside it. */
static void model_dir(const char *m, char *out, size_t n) {
    out[0] = 0;
    struct stat st;
    size_t l = m ? strlen(m) : 0;
    if (!m || stat(m, &st) != 0 || !S_ISREG(st.st_mode) || (l > 5 && !strcmp(m + l - 5, ".gguf"))) return;
    snprintf(out, n, "%s", m);
    char *s = strrchr(out, '/');
    if (s) *s = 0;
    else snprintf(out, n, ".");
}

/* Confinement of a task child (confine.h): reads under the task's folder,
 * the plugin folders and the models; no writes. */
static int confine_task(const gen_child *c, pl_err *err) {
    pl_confine cf = {.write_dir = NULL, .require = c->o->limits.require_confinement};
    char *tdir = realpath(c->path, NULL);
    if (tdir) {
        char *s = strrchr(tdir, '/');
        if (s == tdir) s[1] = 0;
        else if (s) *s = 0;
    }
    char home[PATH_MAX + 32], md[2][PATH_MAX];
    snprintf(home, sizeof home, "%s/plugins", pl_host_home());
    char *user = pl_host_user_plugins();
    model_dir(c->model, md[0], sizeof md[0]);
    model_dir(c->judge, md[1], sizeof md[1]);
    const char *reads[] = {tdir, home, user, c->model, c->adapter, c->judge, md[0], md[1]};
    int rc = PL_OK;
    for (size_t i = 0; i < sizeof reads / sizeof reads[0] && !rc; i++) rc = pl_confine_add_read(&cf, reads[i], err);
    if (!rc) rc = pl_confine_apply(&cf, err);
    free(tdir);
    free(user);
    return rc;
}

static int open_host(const gen_child *c, pl_host **h, pl_err *err) {
    pl_host_opts ho = {0};
    ho.recipe = c->path;
    ho.base_model = c->model;
    ho.tuned_adapter = c->adapter;
    ho.teacher_model = c->judge;
    ho.limits = c->o->limits;
    ho.quiet = c->o->quiet;
    ho.limit_writes = 1; /* writes nowhere, as the kernel confinement says */
    ho.write_dir = NULL;
    return pl_host_open(h, &ho, err);
}

static int send_json(int fd, cJSON *j, pl_err *err) {
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s) return pl_err_set(err, PL_ENOMEM, "out of memory");
    size_t n = strlen(s), off = 0;
    while (off < n) {
        ssize_t k = write(fd, s + off, n - off);
        if (k <= 0) { free(s); return pl_err_set(err, PL_EIO, "task: result pipe: write failed"); }
        off += (size_t)k;
    }
    free(s);
    return PL_OK;
}

static int child_load(void *vc, int fd, pl_err *err) {
    gen_child *c = vc;
    pl_host *h = NULL;
    cJSON *j = NULL;
    int rc = confine_task(c, err);
    if (!rc) rc = open_host(c, &h, err);
    if (!rc) rc = pl_host_task_describe(h, c->name, &j, err);
    pl_host_free(h);
    if (!rc) rc = send_json(fd, j, err);
    return rc;
}

static int child_run(void *vc, int fd, pl_err *err) {
    gen_child *c = vc;
    if (c->o->threads > 0) omp_set_num_threads(c->o->threads);
    pl_host *h = NULL;
    cJSON *j = NULL;
    int rc = confine_task(c, err);
    if (!rc) rc = open_host(c, &h, err);
    if (!rc) rc = pl_host_task_run(h, c->name, c->sel, c->n, c->seed, c->adapter != NULL, &j, err);
    pl_host_free(h);
    if (!rc) rc = send_json(fd, j, err);
    return rc;
}

static void default_name(const char *path, char *out, size_t n) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t l = strlen(b);
    if (l > 4 && !strcmp(b + l - 4, ".lua")) l -= 4;
    snprintf(out, n, "%.*s", (int)l, b);
}

static int run_child(gen_child *c, int (*fn)(void *, int, pl_err *), cJSON **out, pl_err *err) {
    char *buf = NULL;
    size_t n = 0;
    int rc = pl_child_run(&c->o->limits, c->path, fn, c, &buf, &n, err);
    if (rc) { free(buf); return rc; }
    *out = cJSON_ParseWithLength(buf ? buf : "", n);
    free(buf);
    if (!*out) return pl_err_set(err, PL_EFORMAT, "%s: the task process returned no result", c->path);
    return PL_OK;
}

static char *dup_str(const cJSON *j) {
    const char *s = cJSON_GetStringValue(j);
    return s ? strdup(s) : NULL;
}

int pl_gen_task_load(pl_gen_task *t, const char *path, const pl_gen_task_opts *o, pl_err *err) {
    memset(t, 0, sizeof *t);
    if (access(path, R_OK) != 0) return pl_err_set(err, PL_EIO, "%s: cannot read the task file", path);
    gen_child c = {.path = path, .o = o};
    default_name(path, c.name, sizeof c.name);
    cJSON *j = NULL;
    int rc = run_child(&c, child_load, &j, err);
    if (rc) return rc;
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(j, "items");
    t->path = strdup(path);
    t->name = dup_str(cJSON_GetObjectItemCaseSensitive(j, "name"));
    t->metric = dup_str(cJSON_GetObjectItemCaseSensitive(j, "metric"));
    t->scorer = dup_str(cJSON_GetObjectItemCaseSensitive(j, "scorer"));
    const char *jm = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "judge"));
    if (jm && strcmp(jm, "self")) t->judge = strdup(jm);
    if (!t->path || !t->name || !t->metric || !t->scorer || !cJSON_IsArray(items)) {
        cJSON_Delete(j);
        pl_gen_task_free(t);
        return pl_err_set(err, PL_EFORMAT, "%s: the task process returned an incomplete description", path);
    }
    t->items = cJSON_DetachItemViaPointer(j, (cJSON *)items);
    t->n_items = cJSON_GetArraySize(t->items);
    cJSON_Delete(j);
    return PL_OK;
}

void pl_gen_task_hash(const pl_gen_task *t, const int64_t *sel, int64_t n, char hex[65]) {
    pl_sha256 *h = pl_sha256_new();
    uint8_t d[32];
    for (int64_t i = 0; i < n; i++) {
        char num[32];
        int k = snprintf(num, sizeof num, "%lld\n", (long long)sel[i]);
        pl_sha256_update(h, num, (size_t)k);
        char *s = cJSON_PrintUnformatted(cJSON_GetArrayItem(t->items, (int)sel[i]));
        if (s) pl_sha256_update(h, s, strlen(s) + 1);
        free(s);
    }
    pl_sha256_final(h, d);
    pl_sha256_hex(d, hex);
}

int pl_gen_task_run(const pl_gen_task *t, const char *model, const char *adapter, const char *judge_model,
                    const int64_t *sel, int64_t n, int64_t seed, const pl_gen_task_opts *o, cJSON **out, pl_err *err) {
    gen_child c = {.t = t, .path = t->path, .model = model, .adapter = adapter, .judge = judge_model,
                   .sel = sel, .n = n, .seed = seed, .o = o};
    default_name(t->path, c.name, sizeof c.name);
    int rc = run_child(&c, child_run, out, err);
    if (rc) return rc;
    if (!cJSON_IsArray(*out) || cJSON_GetArraySize(*out) != n) {
        cJSON_Delete(*out);
        *out = NULL;
        return pl_err_set(err, PL_EFORMAT, "%s: the task process returned %s results for %lld items", t->path,
                          "a wrong number of", (long long)n);
    }
    return PL_OK;
}
