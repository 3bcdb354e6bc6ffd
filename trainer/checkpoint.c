/* checkpoint.c: atomic checkpoint directories with a sha256 manifest (see checkpoint.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/atomic.h"
#include "../core/json.h"
#include "../core/mapfile.h"
#include "../core/sha256.h"
#include "checkpoint.h"

#define CKPT_MANIFEST "manifest.json"
#define CKPT_MAX_FILES 4096

static char *str_printf(const char *fmt, const char *a, int64_t step) {
    size_t n = strlen(a) + 64;
    char *s = malloc(n);
    if (s) snprintf(s, n, fmt, a, step);
    return s;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)ftw;
    int rc = flag == FTW_DP ? rmdir(p) : unlink(p);
    return rc && errno != ENOENT ? -1 : 0;
}

int pl_rmtree(const char *path, pl_err *err) {
    struct stat st;
    if (lstat(path, &st)) return errno == ENOENT ? PL_OK : pl_err_set(err, PL_EIO, "%s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        if (unlink(path)) return pl_err_set(err, PL_EIO, "%s: cannot remove: %s", path, strerror(errno));
        return PL_OK;
    }
    if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS))
        return pl_err_set(err, PL_EIO, "%s: cannot remove the directory: %s", path, strerror(errno));
    return PL_OK;
}

static int fsync_path(const char *path, int dir, pl_err *err) {
    int fd = open(path, (dir ? O_DIRECTORY : 0) | O_RDONLY);
    if (fd < 0) return pl_err_set(err, PL_EIO, "%s: open for fsync: %s", path, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    if (rc && !dir) return pl_err_set(err, PL_EIO, "%s: fsync: %s", path, strerror(errno));
    return PL_OK;
}

void pl_ckpt_abort(pl_ckpt *c) {
    if (!c) return;
    if (c->tmp) pl_rmtree(c->tmp, NULL);
    free(c->root);
    free(c->tmp);
    free(c->final);
    memset(c, 0, sizeof *c);
}

int pl_ckpt_begin(pl_ckpt *c, const char *root, int64_t step, pl_err *err) {
    memset(c, 0, sizeof *c);
    if (step < 0 || step > 999999999) return pl_err_set(err, PL_EINVAL, "checkpoint: step %" PRId64 " out of range", step);
    int rc = pl_mkdirs(root, err);
    if (rc) return rc;
    c->step = step;
    c->root = strdup(root);
    c->tmp = str_printf("%s/.tmp-step-%06" PRId64, root, step);
    c->final = str_printf("%s/step-%06" PRId64, root, step);
    if (!c->root || !c->tmp || !c->final) {
        pl_ckpt_abort(c);
        return pl_err_set(err, PL_ENOMEM, "checkpoint: out of memory");
    }
    if ((rc = pl_rmtree(c->tmp, err))) { pl_ckpt_abort(c); return rc; }
    if (mkdir(c->tmp, 0755)) {
        rc = pl_err_set(err, PL_EIO, "%s: mkdir: %s", c->tmp, strerror(errno));
        pl_ckpt_abort(c);
        return rc;
    }
    return PL_OK;
}

int pl_ckpt_put(pl_ckpt *c, const char *name, const void *data, size_t len, pl_err *err) {
    return pl_ckpt_putv(c, name, &data, &len, 1, err);
}

int pl_ckpt_putv(pl_ckpt *c, const char *name, const void *const *data, const size_t *len, int np, pl_err *err) {
    if (!name || !*name || name[0] == '/' || strstr(name, "..") || !strcmp(name, CKPT_MANIFEST))
        return pl_err_set(err, PL_EINVAL, "checkpoint: bad file name \"%s\"", name ? name : "");
    size_t n = strlen(c->tmp) + strlen(name) + 2;
    char *p = malloc(n);
    if (!p) return pl_err_set(err, PL_ENOMEM, "checkpoint: out of memory");
    snprintf(p, n, "%s/%s", c->tmp, name);
    char *slash = strrchr(p, '/');
    int rc = PL_OK;
    if (slash > p + strlen(c->tmp)) { /* a subdirectory */
        *slash = 0;
        rc = pl_mkdirs(p, err);
        *slash = '/';
    }
    if (!rc) {
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) rc = pl_err_set(err, PL_EIO, "%s: %s", p, strerror(errno));
        else {
            for (int k = 0; k < np && !rc; k++) {
                const char *b = data[k];
                size_t left = len[k];
                while (left && !rc) {
                    ssize_t w = write(fd, b, left > (1u << 30) ? (1u << 30) : left);
                    if (w < 0 && errno == EINTR) continue;
                    if (w <= 0) rc = pl_err_set(err, PL_EIO, "%s: write: %s", p, strerror(errno));
                    else { b += w; left -= (size_t)w; }
                }
            }
            if (!rc && fsync(fd)) rc = pl_err_set(err, PL_EIO, "%s: fsync: %s", p, strerror(errno));
            close(fd);
        }
    }
    free(p);
    return rc;
}

typedef struct flist {
    char **v;
    int n;
} flist;

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Regular files under base/rel (depth <= 2), relative paths, manifest and dot files excluded. */
static int list_files(const char *base, const char *rel, int depth, flist *fl, pl_err *err) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s%s%s", base, *rel ? "/" : "", rel);
    DIR *d = opendir(dir);
    if (!d) return pl_err_set(err, PL_EIO, "%s: %s", dir, strerror(errno));
    struct dirent *e;
    int rc = PL_OK;
    while (!rc && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (!*rel && !strcmp(e->d_name, CKPT_MANIFEST)) continue;
        char relp[4096], full[8192];
        snprintf(relp, sizeof relp, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
        snprintf(full, sizeof full, "%s/%s", base, relp);
        struct stat st;
        if (lstat(full, &st)) { rc = pl_err_set(err, PL_EIO, "%s: %s", full, strerror(errno)); break; }
        if (S_ISDIR(st.st_mode) && depth < 2) rc = list_files(base, relp, depth + 1, fl, err);
        else if (S_ISREG(st.st_mode)) {
            if (fl->n >= CKPT_MAX_FILES) { rc = pl_err_set(err, PL_ERANGE, "%s: more than %d files", base, CKPT_MAX_FILES); break; }
            char **nv = realloc(fl->v, (size_t)(fl->n + 1) * sizeof *nv);
            if (!nv || !(nv[fl->n] = strdup(relp))) {
                if (nv) fl->v = nv;
                rc = pl_err_set(err, PL_ENOMEM, "checkpoint: out of memory");
                break;
            }
            fl->v = nv;
            fl->n++;
        }
    }
    closedir(d);
    return rc;
}

static void flist_free(flist *fl) {
    for (int i = 0; i < fl->n; i++) free(fl->v[i]);
    free(fl->v);
}

int pl_ckpt_commit(pl_ckpt *c, pl_err *err) {
    flist fl = {0};
    cJSON *man = NULL;
    int rc = list_files(c->tmp, "", 0, &fl, err);
    if (rc) goto out;
    if (fl.n > 1) qsort(fl.v, (size_t)fl.n, sizeof *fl.v, cmp_str);
    man = cJSON_CreateObject();
    cJSON *files = cJSON_CreateArray();
    if (!man || !files) { cJSON_Delete(files); rc = pl_err_set(err, PL_ENOMEM, "checkpoint: out of memory"); goto out; }
    cJSON_AddStringToObject(man, "format", "potluck-checkpoint");
    cJSON_AddNumberToObject(man, "version", 1);
    cJSON_AddNumberToObject(man, "step", (double)c->step);
    cJSON_AddItemToObject(man, "files", files);
    for (int i = 0; i < fl.n; i++) {
        char full[8192], hex[65];
        uint8_t dg[32];
        snprintf(full, sizeof full, "%s/%s", c->tmp, fl.v[i]);
        struct stat st;
        if (stat(full, &st)) { rc = pl_err_set(err, PL_EIO, "%s: %s", full, strerror(errno)); goto out; }
        if ((rc = pl_sha256_file(full, dg, err))) goto out;
        if ((rc = fsync_path(full, 0, err))) goto out;
        pl_sha256_hex(dg, hex);
        cJSON *f = cJSON_CreateObject();
        if (!f) { rc = pl_err_set(err, PL_ENOMEM, "checkpoint: out of memory"); goto out; }
        cJSON_AddStringToObject(f, "path", fl.v[i]);
        cJSON_AddNumberToObject(f, "bytes", (double)st.st_size);
        cJSON_AddStringToObject(f, "sha256", hex);
        cJSON_AddItemToArray(files, f);
        char *slash = strchr(fl.v[i], '/');
        if (slash) { /* fsync the subdirectory once its files are in */
            *slash = 0;
            snprintf(full, sizeof full, "%s/%s", c->tmp, fl.v[i]);
            *slash = '/';
            fsync_path(full, 1, NULL);
        }
    }
    char mp[8192];
    snprintf(mp, sizeof mp, "%s/%s", c->tmp, CKPT_MANIFEST);
    if ((rc = pl_json_write(mp, man, err))) goto out;
    if ((rc = fsync_path(c->tmp, 1, err))) goto out;
    if ((rc = pl_rmtree(c->final, err))) goto out;
    if (rename(c->tmp, c->final)) { rc = pl_err_set(err, PL_EIO, "%s: rename to %s: %s", c->tmp, c->final, strerror(errno)); goto out; }
    fsync_path(c->root, 1, NULL);
    free(c->tmp);
    c->tmp = NULL; /* nothing left to remove */
out:
    flist_free(&fl);
    cJSON_Delete(man);
    pl_ckpt_abort(c);
    return rc;
}

int pl_ckpt_verify(const char *dir, int64_t *step, pl_err *err) {
    char mp[4096];
    snprintf(mp, sizeof mp, "%s/%s", dir, CKPT_MANIFEST);
    cJSON *man = NULL;
    int rc = pl_json_load(mp, 1 << 24, &man, err);
    if (rc) return rc;
    const char *fmt = NULL;
    int64_t st = -1;
    if ((rc = pl_json_str(man, "format", mp, &fmt, err))) goto out;
    if (strcmp(fmt, "potluck-checkpoint")) { rc = pl_err_set(err, PL_EFORMAT, "%s: format: expected \"potluck-checkpoint\", got \"%s\"", mp, fmt); goto out; }
    if ((rc = pl_json_int(man, "step", mp, &st, err))) goto out;
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(man, "files");
    if (!cJSON_IsArray(files)) { rc = pl_err_set(err, PL_EFORMAT, "%s: files: expected an array", mp); goto out; }
    int i = 0;
    const cJSON *f;
    cJSON_ArrayForEach(f, files) {
        const char *p = NULL, *hex = NULL;
        int64_t bytes = -1;
        char where[4200];
        snprintf(where, sizeof where, "%s: files[%d]", mp, i++);
        if ((rc = pl_json_str(f, "path", where, &p, err)) || (rc = pl_json_int(f, "bytes", where, &bytes, err)) ||
            (rc = pl_json_str(f, "sha256", where, &hex, err)))
            goto out;
        if (!*p || p[0] == '/' || strstr(p, "..")) { rc = pl_err_set(err, PL_EFORMAT, "%s: path \"%s\" is not inside the checkpoint", where, p); goto out; }
        char full[8192];
        snprintf(full, sizeof full, "%s/%s", dir, p);
        struct stat sb;
        if (stat(full, &sb)) { rc = pl_err_set(err, PL_ENOTFOUND, "%s: %s is missing", dir, p); goto out; }
        if ((int64_t)sb.st_size != bytes) {
            rc = pl_err_set(err, PL_EFORMAT, "%s: %s has %lld bytes, the manifest says %" PRId64, dir, p, (long long)sb.st_size, bytes);
            goto out;
        }
        uint8_t dg[32];
        char got[65];
        if ((rc = pl_sha256_file(full, dg, err))) goto out;
        pl_sha256_hex(dg, got);
        if (strcmp(got, hex)) { rc = pl_err_set(err, PL_EFORMAT, "%s: %s: sha256 %s, the manifest says %s", dir, p, got, hex); goto out; }
    }
    if (step) *step = st;
out:
    cJSON_Delete(man);
    return rc;
}

/* step-* directory names under root, newest first. */
static int list_steps(const char *root, flist *fl, int tmp_too, pl_err *err) {
    DIR *d = opendir(root);
    if (!d) return errno == ENOENT ? PL_OK : pl_err_set(err, PL_EIO, "%s: %s", root, strerror(errno));
    struct dirent *e;
    int rc = PL_OK;
    while ((e = readdir(d))) {
        const char *nm = e->d_name;
        int is_step = !strncmp(nm, "step-", 5) && nm[5];
        int is_tmp = tmp_too && !strncmp(nm, ".tmp-step-", 10);
        if (!is_step && !is_tmp) continue;
        if (is_step && strspn(nm + 5, "0123456789") != strlen(nm + 5)) continue;
        char **nv = realloc(fl->v, (size_t)(fl->n + 1) * sizeof *nv);
        if (!nv || !(nv[fl->n] = strdup(nm))) {
            if (nv) fl->v = nv;
            rc = pl_err_set(err, PL_ENOMEM, "checkpoint: out of memory");
            break;
        }
        fl->v = nv;
        fl->n++;
    }
    closedir(d);
    return rc;
}

/* Newest first: longer digit strings are larger; equal lengths compare as text. */
static int cmp_step_desc(const void *a, const void *b) {
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    size_t lx = strlen(x), ly = strlen(y);
    if (lx != ly) return lx < ly ? 1 : -1;
    return -strcmp(x, y);
}

int pl_ckpt_latest(const char *root, char **path, int64_t *step, pl_ckpt_skip_fn skip, void *user, pl_err *err) {
    *path = NULL;
    flist fl = {0};
    int rc = list_steps(root, &fl, 0, err);
    if (rc) return rc;
    if (fl.n > 1) qsort(fl.v, (size_t)fl.n, sizeof *fl.v, cmp_step_desc);
    rc = pl_err_set(err, PL_ENOTFOUND, "%s: no complete checkpoint", root);
    for (int i = 0; i < fl.n; i++) {
        size_t n = strlen(root) + strlen(fl.v[i]) + 2;
        char *p = malloc(n);
        if (!p) { rc = pl_err_set(err, PL_ENOMEM, "checkpoint: out of memory"); break; }
        snprintf(p, n, "%s/%s", root, fl.v[i]);
        pl_err e2 = {0};
        int64_t st = 0;
        if (!pl_ckpt_verify(p, &st, &e2)) {
            *path = p;
            if (step) *step = st;
            pl_err_clear(err);
            rc = PL_OK;
            break;
        }
        if (skip) skip(user, p, e2.msg);
        free(p);
    }
    flist_free(&fl);
    return rc;
}

int pl_ckpt_prune(const char *root, int keep, pl_err *err) {
    flist fl = {0};
    int rc = list_steps(root, &fl, 1, err);
    if (rc) return rc;
    if (fl.n > 1) qsort(fl.v, (size_t)fl.n, sizeof *fl.v, cmp_step_desc);
    int kept = 0;
    for (int i = 0; i < fl.n && !rc; i++) {
        int is_tmp = fl.v[i][0] == '.';
        if (!is_tmp && (keep <= 0 || kept < keep)) { kept++; continue; }
        char p[8192];
        snprintf(p, sizeof p, "%s/%s", root, fl.v[i]);
        rc = pl_rmtree(p, err);
    }
    flist_free(&fl);
    return rc;
}

int pl_ckpt_read(const char *dir, const char *name, size_t max_bytes, char **data, size_t *len, pl_err *err) {
    char p[8192];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return pl_read_file(p, max_bytes, data, len, err);
}
