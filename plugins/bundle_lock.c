/* bundle_lock.c: what `potluck pack` takes from a run directory, and the
 * lock that pins it: an in-toto Statement v1 whose subjects are the bundle's
 * files and whose predicate is SLSA v1 provenance (build definition: the
 * recipe as external parameters, seeds and resolved hyperparameters as
 * internal ones, base model, datasets, recipe and plugins as resolved
 * dependencies; run details: builder, hardware, start, finish, wall time).
 *
 * Nothing here reads a file time, an owner or the run directory's own path:
 * the lock is a function of the files' bytes, so copies of a run lock (and
 * pack) alike. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/json.h"
#include "../core/mapfile.h"
#include "../core/sha256.h"
#include "../trainer/model.h"
#include "bundle_int.h"
#include "host.h"

#define STMT_TYPE "https://in-toto.io/Statement/v1"
#define SLSA_TYPE "https://slsa.dev/provenance/v1"
#define BUILD_TYPE "urn:potluck:buildtype:run:v1"
#define SEAL_KEY "\"potluck_lock_sha256\":"

static int is_file(const char *p) {
    struct stat st;
    return lstat(p, &st) == 0 && S_ISREG(st.st_mode);
}
static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* add run_dir/rel as name when it is a regular file */
static int add_opt(bnd_list *l, const char *run_dir, const char *rel, const char *name, pl_err *err) {
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/%s", run_dir, rel);
    if (!is_file(p)) return PL_OK;
    if (bnd_list_find(l, name)) return PL_OK;
    int rc = bnd_list_add(l, name, p, NULL, 0, err);
    if (!rc) bnd_list_sort(l);
    return rc;
}

static int hash_hex(const char *path, char hex[65], int64_t *size, pl_err *err) {
    uint8_t d[32];
    struct stat st;
    if (stat(path, &st)) return pl_err_set(err, PL_EIO, "%s: %s", path, strerror(errno));
    int rc = pl_sha256_file(path, d, err);
    if (rc) return rc;
    pl_sha256_hex(d, hex);
    if (size) *size = (int64_t)st.st_size;
    return PL_OK;
}

static cJSON *rd(const char *name, const char *uri, const char *sha, int64_t size) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", name);
    if (uri) cJSON_AddStringToObject(o, "uri", uri);
    cJSON *d = cJSON_AddObjectToObject(o, "digest");
    if (sha) cJSON_AddStringToObject(d, "sha256", sha);
    if (size >= 0) cJSON_AddNumberToObject(cJSON_AddObjectToObject(o, "annotations"), "size", (double)size);
    return o;
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* ------------------------------------------------------------ recipe + plugins */

/* Files the step's parameters name, relative to the recipe's folder. */
static int add_param_files(bnd_list *l, const cJSON *v, const char *rdir, pl_err *err) {
    if (cJSON_IsString(v)) {
        const char *s = v->valuestring;
        if (!bnd_name_ok(s) || strlen(s) > 512) return PL_OK;
        char p[PATH_MAX * 2], name[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", rdir, s);
        if (!is_file(p)) return PL_OK;
        snprintf(name, sizeof name, "recipe/%s", s);
        if (bnd_list_find(l, name)) return PL_OK;
        int rc = bnd_list_add(l, name, p, NULL, 0, err);
        if (!rc) bnd_list_sort(l);
        return rc;
    }
    const cJSON *c;
    cJSON_ArrayForEach(c, v) {
        int rc = add_param_files(l, c, rdir, err);
        if (rc) return rc;
    }
    return PL_OK;
}

/* A step's plugin as plan.json names it: plugins/prelude.lua and
 * plugins/lib/X (potluck's own), plugins/X (the recipe's folder), an absolute
 * path (the user's folder). The file must still hash to what the run used. */
static int add_plugin(bnd_list *l, const char *plugin, const char *want, const char *rdir, pl_err *err) {
    char p[PATH_MAX * 2], name[PATH_MAX * 2];
    const char *home = pl_host_home();
    p[0] = 0;
    if (plugin[0] == '/') {
        snprintf(p, sizeof p, "%s", plugin);
        snprintf(name, sizeof name, "plugins/user/%s", base_name(plugin));
    } else {
        if (!bnd_name_ok(plugin)) return pl_err_set(err, PL_EFORMAT, "plan.json: plugin path '%s' is not a safe relative path", plugin);
        const char *cand[2] = {home, rdir};
        for (int i = 0; i < 2; i++) {
            if (!cand[i]) continue;
            snprintf(p, sizeof p, "%s/%s", cand[i], plugin);
            snprintf(name, sizeof name, "%s%s", i ? "recipe/" : "", plugin);
            char hex[65];
            if (is_file(p) && !hash_hex(p, hex, NULL, err) && (!want || !strcmp(hex, want))) break;
            p[0] = 0;
        }
        if (!p[0])
            return pl_err_set(err, PL_ENOTFOUND,
                              "plugin %s: no file with the sha256 the run used (%.12s...) in %s or the recipe's folder; it changed since the run (rerun it, then pack)",
                              plugin, want ? want : "?", home);
    }
    if (!is_file(p)) return pl_err_set(err, PL_ENOTFOUND, "plugin %s: not found", p);
    if (bnd_list_find(l, name)) return PL_OK;
    int rc = bnd_list_add(l, name, p, NULL, 0, err);
    if (!rc) bnd_list_sort(l);
    return rc;
}

/* ------------------------------------------------------------ base model */

/* The base model's files: one file (GGUF, llama2.c), or a Hugging Face
 * folder's config, tokenizer and weights. */
static int base_deps(const char *path, cJSON *deps, cJSON *info, pl_err *err) {
    char p[PATH_MAX * 2], hex[65];
    int64_t size;
    int rc;
    cJSON *files = cJSON_AddArrayToObject(info, "files");
    if (is_file(path)) {
        if ((rc = hash_hex(path, hex, &size, err))) return rc;
        cJSON_AddItemToArray(deps, rd("base/weights", base_name(path), hex, size));
        cJSON_AddItemToArray(files, rd(base_name(path), NULL, hex, size));
        return PL_OK;
    }
    DIR *d = opendir(path);
    if (!d) return pl_err_set(err, PL_EIO, "%s: %s", path, strerror(errno));
    char **names = NULL;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *s = de->d_name;
        size_t k = strlen(s);
        int want = !strcmp(s, "config.json") || !strcmp(s, "tokenizer.json") || !strcmp(s, "tokenizer_config.json") ||
                   !strcmp(s, "tokenizer.model") || !strcmp(s, "generation_config.json") ||
                   (k > 12 && !strcmp(s + k - 12, ".safetensors")) || !strcmp(s, "model.safetensors.index.json");
        if (!want) continue;
        char **t = realloc(names, (size_t)(n + 1) * sizeof *t);
        if (!t) break;
        names = t;
        names[n++] = strdup(s);
    }
    closedir(d);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char *t = names[j]; names[j] = names[j - 1]; names[j - 1] = t;
        }
    rc = PL_OK;
    for (int i = 0; i < n; i++) {
        if (!rc && names[i]) {
            snprintf(p, sizeof p, "%s/%s", path, names[i]);
            if (!(rc = hash_hex(p, hex, &size, err))) {
                char dn[PATH_MAX];
                const char *role = strstr(names[i], "tokenizer") ? "base/tokenizer"
                                   : strstr(names[i], "config") && !strstr(names[i], "index") ? "base/config"
                                                                                              : "base/weights";
                snprintf(dn, sizeof dn, "%s", role);
                cJSON_AddItemToArray(deps, rd(dn, names[i], hex, size));
                cJSON_AddItemToArray(files, rd(names[i], NULL, hex, size));
            }
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

/* ------------------------------------------------------------ the lock */

static cJSON *load_opt(const char *run_dir, const char *rel) {
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/%s", run_dir, rel);
    cJSON *j = NULL;
    pl_err e = {0};
    if (is_file(p) && pl_json_load(p, 64u << 20, &j, &e)) j = NULL;
    return j;
}

static void copy_item(cJSON *dst, const char *key, const cJSON *src) {
    if (src) cJSON_AddItemToObject(dst, key, cJSON_Duplicate(src, 1));
}

/* The stage records of the data steps, in plan order: label, counts,
 * reasons, seed, models, seconds (for the card and the lock). */
static cJSON *stage_records(const char *run_dir, const cJSON *plan, double *wall, char *started, char *finished) {
    cJSON *out = cJSON_CreateArray();
    const cJSON *st;
    cJSON_ArrayForEach(st, cJSON_GetObjectItem(plan, "steps")) {
        const char *label = cJSON_GetStringValue(cJSON_GetObjectItem(st, "label"));
        if (!label || !bnd_name_ok(label)) continue;
        char rel[PATH_MAX];
        snprintf(rel, sizeof rel, "stages/%s/stage.json", label);
        cJSON *j = load_opt(run_dir, rel);
        if (!j) continue;
        cJSON_AddStringToObject(j, "label", label);
        copy_item(j, "kind", cJSON_GetObjectItem(st, "kind"));
        copy_item(j, "name", cJSON_GetObjectItem(st, "name"));
        copy_item(j, "params", cJSON_GetObjectItem(st, "params"));
        *wall += cJSON_GetNumberValue(cJSON_GetObjectItem(j, "seconds")) >= 0 ? cJSON_GetNumberValue(cJSON_GetObjectItem(j, "seconds")) : 0;
        cJSON_AddItemToArray(out, j);
    }
    const char *tail[] = {"shard", "train", "eval", "export"};
    for (int i = 0; i < 4; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "stages/%s.json", tail[i]);
        cJSON *j = load_opt(run_dir, rel);
        if (!j) continue;
        double s = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "seconds"));
        if (s == s && s > 0) *wall += s;
        const char *a = cJSON_GetStringValue(cJSON_GetObjectItem(j, "started"));
        const char *b = cJSON_GetStringValue(cJSON_GetObjectItem(j, "finished"));
        if (a && strlen(a) < 32 && (!started[0] || strcmp(a, started) < 0)) strcpy(started, a);
        if (b && strlen(b) < 32 && strcmp(b, finished) > 0) strcpy(finished, b);
        cJSON_Delete(j);
    }
    return out;
}

/* Datasets: manifest + shards as dependencies (whatever --data keeps), and
 * as files per --data. */
static int add_datasets(bnd_list *l, const pl_pack_opts *o, cJSON *deps, cJSON *info, pl_err *err) {
    const char *sides[] = {"train", "eval"};
    cJSON *ds = cJSON_AddObjectToObject(info, "datasets");
    for (int s = 0; s < 2; s++) {
        char rel[64], p[PATH_MAX * 2], hex[65];
        int64_t size;
        snprintf(rel, sizeof rel, "data/%s/manifest.json", sides[s]);
        snprintf(p, sizeof p, "%s/%s", o->run_dir, rel);
        if (!is_file(p)) continue;
        cJSON *m = NULL;
        int rc = pl_json_load(p, 64u << 20, &m, err);
        if (rc) return rc;
        if ((rc = hash_hex(p, hex, &size, err))) { cJSON_Delete(m); return rc; }
        cJSON_AddItemToArray(deps, rd(rel, NULL, hex, size));
        cJSON *di = cJSON_AddObjectToObject(ds, sides[s]);
        copy_item(di, "totals", cJSON_GetObjectItem(m, "totals"));
        copy_item(di, "tokenizer_sha256", cJSON_GetObjectItem(m, "tokenizer_sha256"));
        copy_item(di, "template", cJSON_GetObjectItem(m, "template"));
        if (o->data != PL_DATA_NONE) {
            if ((rc = add_opt(l, o->run_dir, rel, rel, err))) { cJSON_Delete(m); return rc; }
            snprintf(rel, sizeof rel, "data/%s/card.md", sides[s]);
            if ((rc = add_opt(l, o->run_dir, rel, rel, err))) { cJSON_Delete(m); return rc; }
        }
        const cJSON *sh;
        cJSON_ArrayForEach(sh, cJSON_GetObjectItem(m, "shards")) {
            const char *f = cJSON_GetStringValue(cJSON_GetObjectItem(sh, "file"));
            const char *sha = cJSON_GetStringValue(cJSON_GetObjectItem(sh, "sha256"));
            if (!f || strchr(f, '/') || !bnd_name_ok(f)) {
                cJSON_Delete(m);
                return pl_err_set(err, PL_EFORMAT, "%s: a shard file name is missing or not a plain name", p);
            }
            char srel[PATH_MAX];
            snprintf(srel, sizeof srel, "data/%s/%s", sides[s], f);
            cJSON_AddItemToArray(deps, rd(srel, NULL, sha, (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(sh, "bytes"))));
            if (o->data == PL_DATA_FULL) {
                snprintf(p, sizeof p, "%s/%s", o->run_dir, srel);
                if (!is_file(p)) {
                    cJSON_Delete(m);
                    return pl_err_set(err, PL_ENOTFOUND, "%s: listed in data/%s/manifest.json but missing (--data manifest packs without shards)", p, sides[s]);
                }
                if ((rc = add_opt(l, o->run_dir, srel, srel, err))) { cJSON_Delete(m); return rc; }
            }
        }
        cJSON_Delete(m);
    }
    return PL_OK;
}

int bnd_lock_seal(char *lock, size_t n, pl_err *err) {
    char *k = strstr(lock, SEAL_KEY);
    if (!k) return pl_err_set(err, PL_EFORMAT, PL_BUNDLE_LOCK ": no potluck_lock_sha256");
    char *v = k + strlen(SEAL_KEY);
    while (*v == ' ' || *v == '\t') v++;
    if (*v != '"' || (size_t)(v + 66 - lock) > n || v[65] != '"') return pl_err_set(err, PL_EFORMAT, PL_BUNDLE_LOCK ": potluck_lock_sha256 is not 64 hex digits");
    memset(v + 1, '0', 64);
    uint8_t d[32];
    char hex[65];
    pl_sha256_buf(lock, n, d);
    pl_sha256_hex(d, hex);
    memcpy(v + 1, hex, 64);
    return PL_OK;
}

int bnd_lock_check(const char *lock, size_t n, pl_err *err) {
    const char *k = memmem(lock, n, SEAL_KEY, strlen(SEAL_KEY));
    if (!k || memmem(k + 1, n - (size_t)(k + 1 - lock), SEAL_KEY, strlen(SEAL_KEY)))
        return pl_err_set(err, PL_EFORMAT, PL_BUNDLE_LOCK ": expected one potluck_lock_sha256 field");
    char *copy = malloc(n + 1);
    if (!copy) return pl_err_set(err, PL_ENOMEM, PL_BUNDLE_LOCK ": out of memory");
    memcpy(copy, lock, n);
    copy[n] = 0;
    char *v = copy + (k - lock) + strlen(SEAL_KEY);
    while (*v == ' ' || *v == '\t') v++;
    char was[65] = "";
    int rc = PL_OK;
    if (*v != '"' || (size_t)(v + 66 - copy) > n || v[65] != '"') rc = pl_err_set(err, PL_EFORMAT, PL_BUNDLE_LOCK ": potluck_lock_sha256 is not 64 hex digits");
    else {
        memcpy(was, v + 1, 64);
        was[64] = 0;
        rc = bnd_lock_seal(copy, n, err);
        if (!rc && memcmp(v + 1, was, 64))
            rc = pl_err_set(err, PL_EFORMAT, PL_BUNDLE_LOCK ": changed after packing (its sha256 is %.16s..., it says %.16s...)", v + 1, was);
    }
    free(copy);
    return rc;
}

int bnd_lock_build(const pl_pack_opts *o, bnd_list *l, char **lock_json, pl_bundle_stats *st, pl_err *err) {
    int rc;
    cJSON *plan = NULL, *stmt = NULL, *info = cJSON_CreateObject();
    char *rpath = NULL, *card = NULL;
    char p[PATH_MAX * 2];
    *lock_json = NULL;
    snprintf(p, sizeof p, "%s/plan.json", o->run_dir);
    if (!is_file(p)) { rc = pl_err_set(err, PL_ENOTFOUND, "%s: not a run directory (no plan.json; `potluck run` writes one)", o->run_dir); goto out; }
    if ((rc = pl_json_load(p, 64u << 20, &plan, err))) goto out;

    /* the run's own records */
    const char *runfiles[] = {"plan.json", "results.json", "train/config.json", "train/metrics.jsonl"};
    for (int i = 0; i < 4; i++)
        if ((rc = add_opt(l, o->run_dir, runfiles[i], runfiles[i], err))) goto out;
    {
        snprintf(p, sizeof p, "%s/stages", o->run_dir);
        DIR *d = opendir(p);
        struct dirent *de;
        while (d && (de = readdir(d))) {
            const char *s = de->d_name;
            char rel[PATH_MAX];
            if (s[0] == '.' || !bnd_name_ok(s)) continue;
            size_t k = strlen(s);
            if (k > 5 && !strcmp(s + k - 5, ".json")) snprintf(rel, sizeof rel, "stages/%s", s);
            else snprintf(rel, sizeof rel, "stages/%s/stage.json", s);
            if ((rc = add_opt(l, o->run_dir, rel, rel, err))) break;
        }
        if (d) closedir(d);
        if (rc) goto out;
    }
    /* the adapter: the exported one, else the trainer's */
    {
        const char *dirs[] = {"export/adapter", "train/adapter"};
        for (int i = 0; i < 2; i++) {
            snprintf(p, sizeof p, "%s/%s/adapter_model.safetensors", o->run_dir, dirs[i]);
            if (!is_file(p)) continue;
            const char *fs[] = {"adapter_config.json", "adapter_model.safetensors"};
            for (int k = 0; k < 2 && !rc; k++) {
                char rel[256], name[256];
                snprintf(rel, sizeof rel, "%s/%s", dirs[i], fs[k]);
                snprintf(name, sizeof name, "adapter/%s", fs[k]);
                rc = add_opt(l, o->run_dir, rel, name, err);
            }
            break;
        }
        if (rc) goto out;
    }

    cJSON *deps = cJSON_CreateArray();
    stmt = cJSON_CreateObject();
    /* recipe and plugins */
    const char *recipe = o->recipe;
    if (!recipe) recipe = cJSON_GetStringValue(cJSON_GetObjectItem(plan, "recipe_path"));
    if (!recipe || !is_file(recipe)) {
        const char *rf = cJSON_GetStringValue(cJSON_GetObjectItem(plan, "recipe_file"));
        recipe = rf && is_file(rf) ? rf : NULL;
    }
    if (!recipe) {
        cJSON_Delete(deps);
        rc = pl_err_set(err, PL_ENOTFOUND, "%s/plan.json: the recipe file it names is not found from here (give it with --recipe PATH)", o->run_dir);
        goto out;
    }
    rpath = realpath(recipe, NULL);
    if (!rpath) { cJSON_Delete(deps); rc = pl_err_set(err, PL_EIO, "%s: %s", recipe, strerror(errno)); goto out; }
    char rdir[PATH_MAX];
    snprintf(rdir, sizeof rdir, "%s", rpath);
    *strrchr(rdir, '/') = 0;
    char rname[PATH_MAX + 16];
    snprintf(rname, sizeof rname, "recipe/%s", base_name(rpath));
    if ((rc = bnd_list_add(l, rname, rpath, NULL, 0, err))) { cJSON_Delete(deps); goto out; }
    bnd_list_sort(l);
    if ((rc = add_plugin(l, "plugins/prelude.lua", NULL, NULL, err))) { cJSON_Delete(deps); goto out; }
    const cJSON *step;
    cJSON_ArrayForEach(step, cJSON_GetObjectItem(plan, "steps")) {
        const char *plug = cJSON_GetStringValue(cJSON_GetObjectItem(step, "plugin"));
        const char *want = cJSON_GetStringValue(cJSON_GetObjectItem(step, "plugin_sha256"));
        if (plug && (rc = add_plugin(l, plug, want, rdir, err))) break;
        if ((rc = add_param_files(l, cJSON_GetObjectItem(step, "params"), rdir, err))) break;
    }
    if (rc) { cJSON_Delete(deps); goto out; }
    /* datasets */
    if ((rc = add_datasets(l, o, deps, info, err))) { cJSON_Delete(deps); goto out; }

    /* hash everything on disk; deps for the recipe and plugins */
    bnd_list_sort(l);
    {
        /* hashed on every core (large shards dominate); the first failure in
         * list order is reported */
        int *rcs = calloc((size_t)l->n + 1, sizeof *rcs);
        pl_err *errs = calloc((size_t)l->n + 1, sizeof *errs);
        if (!rcs || !errs) rc = pl_err_set(err, PL_ENOMEM, "pack: out of memory");
        else {
#pragma omp parallel for schedule(dynamic, 1)
            for (int i = 0; i < l->n; i++)
                if (l->v[i].src) rcs[i] = hash_hex(l->v[i].src, l->v[i].sha, &l->v[i].size, &errs[i]);
            for (int i = 0; i < l->n && !rc; i++)
                if (rcs[i]) {
                    if (err) *err = errs[i];
                    rc = rcs[i];
                }
        }
        free(rcs);
        free(errs);
    }
    for (int i = 0; i < l->n && !rc; i++) {
        bnd_file *f = &l->v[i];
        if (f->src && (!strncmp(f->name, "recipe/", 7) || !strncmp(f->name, "plugins/", 8)))
            cJSON_AddItemToArray(deps, rd(f->name, NULL, f->sha, f->size));
    }
    {
        /* a shard packed must be the one its manifest recorded */
        const cJSON *d;
        cJSON_ArrayForEach(d, deps) {
            const char *n = cJSON_GetStringValue(cJSON_GetObjectItem(d, "name"));
            const char *want = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(d, "digest"), "sha256"));
            bnd_file *f = n && !strncmp(n, "data/", 5) ? bnd_list_find(l, n) : NULL;
            if (f && f->src && want && strcmp(want, f->sha)) {
                rc = pl_err_set(err, PL_EFORMAT, "%s/%s: sha256 %.16s... is not the %.16s... its manifest recorded (changed since the run)",
                                o->run_dir, n, f->sha, want);
                break;
            }
        }
    }
    if (rc) { cJSON_Delete(deps); goto out; }

    /* base model */
    const char *bname = cJSON_GetStringValue(cJSON_GetObjectItem(plan, "base"));
    const char *bpath = o->base ? o->base : cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(plan, "models"), "base"));
    if ((!bname || !bname[0]) && bpath && bpath[0]) bname = base_name(bpath); /* given with --base only */
    cJSON *binfo = cJSON_AddObjectToObject(info, "base");
    cJSON_AddStringToObject(binfo, "name", bname ? bname : "");
    char shape[PATH_MAX];
    if (bpath && pl_model_is_random(bpath)) {
        /* a rehearsal model (trainer/model.h): its shape (a preset, or a
         * config.json and the tokenizer beside it) and seed are the model */
        cJSON_AddStringToObject(binfo, "format", "random");
        cJSON_AddStringToObject(binfo, "spec", bpath);
        pl_model_random_shape(bpath, shape, sizeof shape, NULL);
        if (is_file(shape) || is_dir(shape)) {
            cJSON_AddStringToObject(binfo, "file", base_name(shape));
            if ((rc = base_deps(shape, deps, binfo, err))) { cJSON_Delete(deps); goto out; }
        } else {
            cJSON_AddStringToObject(binfo, "preset", shape);
        }
    } else if (bpath && bpath[0] && (is_file(bpath) || is_dir(bpath))) {
        cJSON_AddStringToObject(binfo, "file", base_name(bpath));
        if ((rc = base_deps(bpath, deps, binfo, err))) { cJSON_Delete(deps); goto out; }
    } else if (st) {
        snprintf(st->warn, sizeof st->warn, "base model %s not found here (%s): the lock names it without its sha256 (give it with --base PATH)",
                 bname ? bname : "?", bpath && bpath[0] ? bpath : "no path recorded");
    }
    const cJSON *ds_train = cJSON_GetObjectItem(cJSON_GetObjectItem(info, "datasets"), "train");
    copy_item(binfo, "tokenizer_sha256", cJSON_GetObjectItem(ds_train, "tokenizer_sha256"));

    /* stage records, hardware, times */
    double wall = 0;
    char started[32] = "", finished[32] = "";
    cJSON *stages = stage_records(o->run_dir, plan, &wall, started, finished);
    cJSON_AddItemToObject(info, "stages", stages);
    cJSON *train_rec = load_opt(o->run_dir, "stages/train.json");
    cJSON *tcfg = load_opt(o->run_dir, "train/config.json");
    cJSON *results = load_opt(o->run_dir, "results.json");

    /* the statement */
    cJSON_AddStringToObject(stmt, "_type", STMT_TYPE);
    cJSON *subj = cJSON_AddArrayToObject(stmt, "subject");
    cJSON_AddStringToObject(stmt, "predicateType", SLSA_TYPE);
    cJSON *pred = cJSON_AddObjectToObject(stmt, "predicate");
    cJSON *bd = cJSON_AddObjectToObject(pred, "buildDefinition");
    cJSON_AddStringToObject(bd, "buildType", BUILD_TYPE);
    cJSON *ext = cJSON_AddObjectToObject(bd, "externalParameters");
    cJSON_AddStringToObject(ext, "recipe", rname);
    copy_item(ext, "name", cJSON_GetObjectItem(plan, "name"));
    cJSON_AddStringToObject(ext, "base", bname ? bname : "");
    copy_item(ext, "size", cJSON_GetObjectItem(plan, "size"));
    copy_item(ext, "license", cJSON_GetObjectItem(plan, "license"));
    cJSON_AddStringToObject(ext, "data", o->data == PL_DATA_FULL ? "full" : o->data == PL_DATA_MANIFEST ? "manifest" : "none");
    cJSON *inp = cJSON_AddObjectToObject(bd, "internalParameters");
    copy_item(inp, "seed", cJSON_GetObjectItem(plan, "seed"));
    {
        cJSON *seeds = cJSON_AddObjectToObject(inp, "stage_seeds");
        const cJSON *s;
        cJSON_ArrayForEach(s, stages) {
            const cJSON *sd = cJSON_GetObjectItem(s, "seed");
            if (sd) copy_item(seeds, cJSON_GetStringValue(cJSON_GetObjectItem(s, "label")), sd);
        }
    }
    if (tcfg) {
        copy_item(inp, "lora", cJSON_GetObjectItem(tcfg, "lora"));
        copy_item(inp, "train", cJSON_GetObjectItem(tcfg, "train"));
    } else {
        copy_item(inp, "lora", cJSON_GetObjectItem(plan, "lora"));
        copy_item(inp, "train", cJSON_GetObjectItem(plan, "train"));
    }
    const char *secs[] = {"template", "mask", "shard", "eval", "export"};
    for (int i = 0; i < 5; i++) copy_item(inp, secs[i], cJSON_GetObjectItem(plan, secs[i]));
    {
        /* the base's tokenizer by behaviour (reproduce at another size checks a
         * new base against it) and the memory plan the training ran under */
        cJSON *shard_rec = load_opt(o->run_dir, "stages/shard.json");
        copy_item(inp, "base_tokenizer", cJSON_GetObjectItem(shard_rec, "tokenizer"));
        cJSON_Delete(shard_rec);
        if (train_rec) {
            copy_item(inp, "memory_plan", cJSON_GetObjectItem(train_rec, "memory_plan"));
            copy_item(inp, "rss_peak", cJSON_GetObjectItem(train_rec, "rss_peak"));
        }
    }
    {
        cJSON *keys = cJSON_AddObjectToObject(inp, "stage_keys");
        const cJSON *s;
        cJSON_ArrayForEach(s, stages) copy_item(keys, cJSON_GetStringValue(cJSON_GetObjectItem(s, "label")), cJSON_GetObjectItem(s, "key"));
        if (train_rec) copy_item(keys, "train", cJSON_GetObjectItem(train_rec, "key"));
    }
    cJSON_AddItemToObject(bd, "resolvedDependencies", deps);
    cJSON *rdt = cJSON_AddObjectToObject(pred, "runDetails");
    cJSON *bld = cJSON_AddObjectToObject(rdt, "builder");
    cJSON_AddStringToObject(bld, "id", "urn:potluck:builder:cli");
    cJSON *ver = cJSON_AddObjectToObject(bld, "version");
    cJSON_AddStringToObject(ver, "potluck", o->version ? o->version : "?");
    cJSON_AddStringToObject(ver, "build", "gcc " __VERSION__);
    cJSON *meta = cJSON_AddObjectToObject(rdt, "metadata");
    if (train_rec) copy_item(meta, "invocationId", cJSON_GetObjectItem(train_rec, "key"));
    if (started[0]) cJSON_AddStringToObject(meta, "startedOn", started);
    if (finished[0]) cJSON_AddStringToObject(meta, "finishedOn", finished);
    cJSON_AddNumberToObject(meta, "potluck_wall_seconds", wall);
    cJSON *host = train_rec ? cJSON_GetObjectItem(train_rec, "host") : NULL;
    if (host) copy_item(meta, "potluck_host", host);
    else cJSON_AddStringToObject(meta, "potluck_host", "not recorded by the run");
    if (results) copy_item(meta, "potluck_results", results);
    cJSON_AddStringToObject(meta, "potluck_lock_sha256", "0000000000000000000000000000000000000000000000000000000000000000");

    /* the card: built from what the lock says, then listed as a subject */
    copy_item(info, "host", host);
    cJSON_AddNumberToObject(info, "wall_seconds", wall);
    copy_item(info, "results", results);
    copy_item(info, "lora", cJSON_GetObjectItem(inp, "lora"));
    copy_item(info, "train", cJSON_GetObjectItem(inp, "train"));
    cJSON_AddStringToObject(info, "data_mode", cJSON_GetStringValue(cJSON_GetObjectItem(ext, "data")));
    cJSON_Delete(train_rec);
    cJSON_Delete(tcfg);
    cJSON_Delete(results);
    if ((rc = bnd_card_build(o->run_dir, plan, info, &card, err))) goto out;
    {
        size_t cl = strlen(card);
        if ((rc = bnd_list_add(l, "README.md", NULL, card, cl, err))) goto out;
        bnd_file *f = &l->v[l->n - 1];
        card = NULL;
        uint8_t d[32];
        pl_sha256_buf(f->mem, f->mem_len, d);
        pl_sha256_hex(d, f->sha);
        f->size = (int64_t)f->mem_len;
        bnd_list_sort(l);
    }
    for (int i = 0; i < l->n; i++) {
        if (!bnd_name_ok(l->v[i].name) || !strcmp(l->v[i].name, PL_BUNDLE_LOCK) || !strcmp(l->v[i].name, PL_BUNDLE_SIG)) {
            rc = pl_err_set(err, PL_EINVAL, "pack: file name '%s' cannot go in a bundle", l->v[i].name);
            goto out;
        }
        cJSON_AddItemToArray(subj, rd(l->v[i].name, NULL, l->v[i].sha, l->v[i].size));
    }
    char *s = cJSON_Print(stmt);
    if (!s) { rc = pl_err_set(err, PL_ENOMEM, "pack: out of memory writing the lock"); goto out; }
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (!t) { free(s); rc = pl_err_set(err, PL_ENOMEM, "pack: out of memory"); goto out; }
    t[n] = '\n';
    t[n + 1] = 0;
    if ((rc = bnd_lock_seal(t, n + 1, err))) { free(t); goto out; }
    *lock_json = t;
out:
    free(card);
    free(rpath);
    cJSON_Delete(stmt);
    cJSON_Delete(plan);
    cJSON_Delete(info);
    return rc;
}
