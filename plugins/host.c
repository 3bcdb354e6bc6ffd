/* host.c: the recipe host: sandbox + potluck module + plugins + recipe, and
 * the C primitives the prelude builds the module from (files through the
 * sandbox's path rules, JSON, sample readers/writers, hashing, models). */
#include "host.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <lauxlib.h>

#include "../core/atomic.h"
#include "../core/mapfile.h"
#include "../core/progress.h"
#include "../core/sha256.h"
#include "../datasets/import.h"
#include "../trainer/run.h"
#include "bind_model.h"
#include "bind_text.h"
#include "gen_score.h"
#include "luajson.h"

#define REG_H "potluck.host_H"
#define REG_RECIPE "potluck.recipe"
#define REG_SOURCES "potluck.sources"   /* chunk name -> file path */
#define REG_MODULES "potluck.modules"   /* require cache */
#define REG_MODELS "potluck.models"     /* which -> model handle */
#define REG_HOST "potluck.host"

struct pl_host {
    pl_sandbox *sb;
    pl_host_opts o;
    char *recipe_dir;       /* realpath of the recipe's directory, or NULL */
    char *home;             /* pl_host_home() */
    char *user_plugins;
    char *dirs[3];          /* plugin folders in search order */
    const char *origins[3];
    pl_progress prog;       /* the running stage's progress line (C.progress_*) */
};

/* ------------------------------------------------------------ locations */

static char home_buf[PATH_MAX];

static int has_prelude(const char *dir) {
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/plugins/prelude.lua", dir);
    return access(p, R_OK) == 0;
}

const char *pl_host_home(void) {
    if (home_buf[0]) return home_buf;
    const char *env = getenv("POTLUCK_HOME");
    if (env && *env) {
        snprintf(home_buf, sizeof home_buf, "%s", env);
        return home_buf;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        for (int up = 0; up < 4; up++) {
            char *s = strrchr(exe, '/');
            if (!s) break;
            *s = 0;
            if (has_prelude(exe[0] ? exe : "/")) {
                snprintf(home_buf, sizeof home_buf, "%s", exe);
                return home_buf;
            }
        }
    }
    snprintf(home_buf, sizeof home_buf, ".");
    return home_buf;
}

char *pl_host_user_plugins(void) {
    const char *env = getenv("POTLUCK_PLUGINS");
    if (env && *env) return strdup(env);
    const char *home = getenv("HOME");
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/.local/share/potluck/plugins", home && *home ? home : "/nonexistent");
    return strdup(p);
}

static pl_host *host_of(lua_State *L) {
    lua_getfield(L, LUA_REGISTRYINDEX, REG_HOST);
    pl_host *h = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return h;
}

/* ------------------------------------------------------------ primitives */

/* Push msg with every mention of the run directory's absolute path written
 * as "<run>": what recipe code sees (an error it catches, a message it could
 * copy into a dataset) names run paths relative to the run directory and
 * never where the run lives on this machine (docs/security.md). */
static void push_scrubbed(lua_State *L, const char *msg) {
    const char *rd = pl_sandbox_run_dir(pl_sandbox_of(L));
    size_t k = rd ? strlen(rd) : 0;
    if (k < 2) {
        lua_pushstring(L, msg);
        return;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    const char *s = msg, *hit;
    while ((hit = strstr(s, rd))) {
        luaL_addlstring(&b, s, (size_t)(hit - s));
        luaL_addstring(&b, "<run>");
        s = hit + k;
    }
    luaL_addstring(&b, s);
    luaL_pushresult(&b);
}

/* luaL_error(L, "%s", msg) with the run directory scrubbed (push_scrubbed). */
static int raise_msg(lua_State *L, const char *msg) {
    luaL_where(L, 1);
    push_scrubbed(L, msg);
    lua_concat(L, 2);
    return lua_error(L);
}

static int raise_err(lua_State *L, const pl_err *e) { return raise_msg(L, e->msg); }

/* Resolve the path argument at idx (NUL bytes refused, not cut short). */
static int arg_path(lua_State *L, int idx, int for_write, char **out, pl_err *e) {
    size_t n;
    const char *p = luaL_checklstring(L, idx, &n);
    return pl_sandbox_resolvel(pl_sandbox_of(L), p, n, for_write, out, e);
}

/* resolve(path [, name]) -> resolved path for reading */
static int c_resolve(lua_State *L) {
    const char *name = luaL_optstring(L, 2, NULL);
    pl_err e = {0};
    char *out = NULL;
    if (arg_path(L, 1, 0, &out, &e)) {
        /* no position: the caller (the prelude's parameter check) adds the recipe's */
        if (name) {
            lua_pushfstring(L, "%s: ", name);
            push_scrubbed(L, e.msg);
            lua_concat(L, 2);
        } else push_scrubbed(L, e.msg);
        return lua_error(L);
    }
    lua_pushstring(L, out);
    free(out);
    return 1;
}

static int c_read_file(lua_State *L) {
    const char *p = luaL_checkstring(L, 1);
    pl_err e = {0};
    char *path = NULL;
    if (arg_path(L, 1, 0, &path, &e)) return raise_err(L, &e);
    FILE *f = fopen(path, "rb");
    if (!f) {
        lua_pushfstring(L, "pl.read_file: %s: %s", p, strerror(errno));
        free(path);
        return lua_error(L);
    }
    free(path);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) luaL_addlstring(&b, buf, n);
    fclose(f);
    luaL_pushresult(&b);
    return 1;
}

/* exists(path) -> true when the file is there (inside the allowed roots);
 * false when it is missing; an error for paths outside the roots. */
/* exists(path): true for a file or folder the recipe may read; false for a
 * missing one and for every path outside what it may read (the same answer,
 * so existence outside cannot be probed). */
static int c_exists(lua_State *L) {
    pl_err e = {0};
    char *path = NULL;
    int rc = arg_path(L, 1, 0, &path, &e);
    if (rc == PL_ENOTFOUND || (rc && (strstr(e.msg, "No such file") || strstr(e.msg, "reads must stay inside") ||
                                      strstr(e.msg, "Not a directory")))) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (rc) return raise_err(L, &e);
    free(path);
    lua_pushboolean(L, 1);
    return 1;
}

static int c_write_file(lua_State *L) {
    const char *p = luaL_checkstring(L, 1);
    size_t n;
    const char *data = luaL_checklstring(L, 2, &n);
    pl_err e = {0};
    char *path = NULL;
    if (arg_path(L, 1, 1, &path, &e)) return raise_err(L, &e);
    int rc = pl_write_file_atomic(path, data, n, &e);
    free(path);
    if (rc) {
        /* the atomic writer names the resolved path: say the recipe's own */
        char m[sizeof e.msg + 64];
        const char *why = strrchr(e.msg, ':');
        snprintf(m, sizeof m, "pl.write_file: %s: cannot write%s", p, why ? why : "");
        return raise_msg(L, m);
    }
    return 0;
}

/* A FILE* in a userdata whose C-side __gc closes it. */
typedef struct lfile { FILE *f; char *line; size_t cap; int64_t lineno, sample; char *name; } lfile;

static int lfile_gc(lua_State *L) {
    lfile *lf = luaL_checkudata(L, 1, "potluck.lfile");
    if (lf->f) fclose(lf->f);
    free(lf->line);
    free(lf->name);
    lf->f = NULL;
    lf->line = lf->name = NULL;
    return 0;
}

static lfile *lfile_open(lua_State *L, const char *path, const char *shown) {
    lfile *lf = lua_newuserdatauv(L, sizeof *lf, 0);
    memset(lf, 0, sizeof *lf);
    if (luaL_newmetatable(L, "potluck.lfile")) {
        lua_pushcfunction(L, lfile_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushliteral(L, "locked");
        lua_setfield(L, -2, "__metatable");
    }
    lua_setmetatable(L, -2);
    lf->f = fopen(path, "rb");
    if (!lf->f) luaL_error(L, "%s: %s", shown, strerror(errno));
    lf->name = strdup(shown);
    return lf;
}

/* Next line without its newline; NULL at the end. */
static const char *lfile_next(lua_State *L, lfile *lf, size_t *len) {
    if (!lf->f) return NULL;
    ssize_t n = getline(&lf->line, &lf->cap, lf->f);
    if (n < 0) {
        fclose(lf->f);
        lf->f = NULL;
        return NULL;
    }
    lf->lineno++;
    if (n > (ssize_t)(64 << 20)) luaL_error(L, "%s:%lld: line longer than 64 MiB", lf->name, (long long)lf->lineno);
    while (n > 0 && (lf->line[n - 1] == '\n' || lf->line[n - 1] == '\r')) n--;
    *len = (size_t)n;
    return lf->line;
}

static int lines_iter(lua_State *L) {
    lfile *lf = lua_touserdata(L, lua_upvalueindex(1));
    size_t n;
    const char *s = lfile_next(L, lf, &n);
    if (!s) return 0;
    lua_pushlstring(L, s, n);
    return 1;
}

static int c_lines(lua_State *L) {
    const char *p = luaL_checkstring(L, 1);
    pl_err e = {0};
    char *path = NULL;
    if (arg_path(L, 1, 0, &path, &e)) return raise_err(L, &e);
    lua_pushstring(L, path);
    free(path);
    lfile_open(L, lua_tostring(L, -1), p);
    lua_pushcclosure(L, lines_iter, 1);
    return 1;
}

/* Samples of a stage file (host path, trusted); C.reader(path, lo, hi):
 * only samples lo .. hi - 1 (0-based, blank lines not counted), the others
 * skipped unparsed. */
static int reader_iter(lua_State *L) {
    lfile *lf = lua_touserdata(L, lua_upvalueindex(1));
    lua_Integer lo = lua_tointeger(L, lua_upvalueindex(2)), hi = lua_tointeger(L, lua_upvalueindex(3));
    for (;;) {
        size_t n;
        if (hi >= 0 && lf->sample >= hi) return 0;
        const char *s = lfile_next(L, lf, &n);
        if (!s) return 0;
        if (!n) continue;
        if (lf->sample++ < lo) continue;
        cJSON *j = cJSON_ParseWithLength(s, n);
        if (!j || !cJSON_IsObject(j)) {
            cJSON_Delete(j);
            return luaL_error(L, "%s:%lld: not a JSON object", lf->name, (long long)lf->lineno);
        }
        pl_lua_push_json(L, j);
        cJSON_Delete(j);
        return 1;
    }
}

static int c_reader(lua_State *L) {
    const char *p = luaL_checkstring(L, 1);
    lua_Integer lo = luaL_optinteger(L, 2, 0), hi = luaL_optinteger(L, 3, -1);
    lua_settop(L, 1);
    lfile_open(L, p, p);
    lua_pushinteger(L, lo);
    lua_pushinteger(L, hi);
    lua_pushcclosure(L, reader_iter, 3);
    return 1;
}

/* io.decision(i): the dedup decision the ranks computed (pl_stage_part) for
 * input sample i (1-based): the sample it duplicates (1-based, as
 * minhash_index:check_add says it) and the estimate, or nil. */
static int c_decision(lua_State *L) {
    const pl_stage_part *pt = lua_touserdata(L, lua_upvalueindex(1));
    lua_Integer i = luaL_checkinteger(L, 1);
    if (i < 1 || i > pt->n_dec) return luaL_error(L, "ctx.decision(%d): the stage's input has %d samples", (int)i, (int)pt->n_dec);
    if (pt->dup_of[i - 1] < 0) return 0;
    lua_pushinteger(L, (lua_Integer)pt->dup_of[i - 1] + 1);
    lua_pushnumber(L, pt->dup_jac[i - 1]);
    return 2;
}

typedef struct swriter { pl_afile af; int open; int64_t n; } swriter;

static int writer_gc(lua_State *L) {
    swriter *w = luaL_checkudata(L, 1, "potluck.writer");
    if (w->open) pl_afile_abort(&w->af);
    w->open = 0;
    return 0;
}

static int writer_write(lua_State *L) {
    swriter *w = luaL_checkudata(L, 1, "potluck.writer");
    luaL_checktype(L, 2, LUA_TTABLE);
    if (!w->open) return luaL_error(L, "writer is closed");
    char msg[512];
    cJSON *j = pl_lua_to_json(L, 2, msg, sizeof msg);
    if (!j) return luaL_error(L, "sample %lld: %s", (long long)w->n + 1, msg);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return luaL_error(L, "sample %lld: expected a record (table with named fields)", (long long)w->n + 1);
    }
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s) return luaL_error(L, "out of memory");
    int bad = fputs(s, w->af.fp) < 0 || fputc('\n', w->af.fp) < 0;
    free(s);
    if (bad) return luaL_error(L, "%s: write failed: %s", w->af.path, strerror(errno));
    w->n++;
    return 0;
}

static int writer_close(lua_State *L) {
    swriter *w = luaL_checkudata(L, 1, "potluck.writer");
    if (!w->open) return 0;
    w->open = 0;
    pl_err e = {0};
    if (pl_afile_commit(&w->af, &e)) return raise_err(L, &e);
    return 0;
}

static int c_writer(lua_State *L) {
    const char *p = luaL_checkstring(L, 1);
    swriter *w = lua_newuserdatauv(L, sizeof *w, 0);
    memset(w, 0, sizeof *w);
    if (luaL_newmetatable(L, "potluck.writer")) {
        lua_pushcfunction(L, writer_gc);
        lua_setfield(L, -2, "__gc");
        lua_newtable(L);
        lua_pushcfunction(L, writer_write);
        lua_setfield(L, -2, "write");
        lua_pushcfunction(L, writer_close);
        lua_setfield(L, -2, "close");
        lua_setfield(L, -2, "__index");
        lua_pushliteral(L, "locked");
        lua_setfield(L, -2, "__metatable");
    }
    lua_setmetatable(L, -2);
    pl_err e = {0};
    if (pl_afile_open(&w->af, p, &e)) return raise_err(L, &e);
    w->open = 1;
    return 1;
}

static int c_json_decode(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    cJSON *j = cJSON_ParseWithLength(s, n);
    if (!j) return luaL_error(L, "pl.json_decode: invalid JSON");
    pl_lua_push_json(L, j);
    cJSON_Delete(j);
    return 1;
}

static int c_json_encode(lua_State *L) {
    luaL_checkany(L, 1);
    char msg[512];
    cJSON *j = pl_lua_to_json(L, 1, msg, sizeof msg);
    if (!j) return luaL_error(L, "pl.json_encode: %s", msg);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s) return luaL_error(L, "out of memory");
    lua_pushstring(L, s);
    free(s);
    return 1;
}

/* check_train(lora, train) -> nil or "train.lr: expected ..." */
static int c_check_train(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    char msg[512];
    cJSON *root = cJSON_CreateObject();
    for (int i = 1; i <= 2; i++) {
        const char *sec = i == 1 ? "lora" : "train";
        /* an empty table is an object here */
        lua_pushnil(L);
        int empty = !lua_next(L, i);
        if (!empty) lua_pop(L, 2);
        cJSON *j = empty ? cJSON_CreateObject() : pl_lua_to_json(L, i, msg, sizeof msg);
        if (!j) {
            cJSON_Delete(root);
            lua_pushfstring(L, "%s: %s", sec, msg);
            return 1;
        }
        if (!cJSON_IsObject(j)) {
            cJSON_Delete(j);
            cJSON_Delete(root);
            lua_pushfstring(L, "%s: expected a table of name = value", sec);
            return 1;
        }
        cJSON_AddItemToObject(root, sec, j);
    }
    pl_run_cfg c;
    pl_run_cfg_defaults(&c);
    pl_err e = {0};
    int rc = pl_run_cfg_apply_json(&c, root, "", &e);
    pl_run_cfg_free(&c);
    cJSON_Delete(root);
    if (rc) {
        const char *m = e.msg;
        if (!strncmp(m, ": ", 2)) m += 2;
        lua_pushstring(L, m);
        return 1;
    }
    return 0;
}

static const char *source_path(void *ctx, const char *chunk) {
    lua_State *L = ctx;
    lua_getfield(L, LUA_REGISTRYINDEX, REG_SOURCES);
    lua_getfield(L, -1, chunk);
    const char *p = lua_tostring(L, -1); /* kept alive by the registry table */
    lua_pop(L, 2);
    return p;
}

static int c_hash(lua_State *L) {
    luaL_checkany(L, 1);
    pl_sha256 *h = pl_sha256_new();
    if (!h) return luaL_error(L, "out of memory");
    pl_lua_hash(L, 1, h, source_path, L);
    uint8_t d[32];
    char hex[65];
    pl_sha256_final(h, d);
    pl_sha256_hex(d, hex);
    lua_pushstring(L, hex);
    return 1;
}

/* file_sha256(resolved path) */
static int c_file_sha256(lua_State *L) {
    pl_err e = {0};
    char *path = NULL;
    if (arg_path(L, 1, 0, &path, &e)) return raise_err(L, &e);
    uint8_t d[32];
    char hex[65];
    int rc = pl_sha256_file(path, d, &e);
    free(path);
    if (rc) return raise_err(L, &e);
    pl_sha256_hex(d, hex);
    lua_pushstring(L, hex);
    return 1;
}

static int c_func_where(lua_State *L) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_Debug ar;
    lua_pushvalue(L, 1);
    lua_getinfo(L, ">S", &ar);
    lua_pushfstring(L, "<function %s:%d-%d>", ar.short_src, ar.linedefined, ar.lastlinedefined);
    return 1;
}

static int c_log(lua_State *L) {
    const char *label = luaL_checkstring(L, 1);
    const char *msg = luaL_checkstring(L, 2);
    pl_host *h = host_of(L);
    if (h) pl_progress_clear(&h->prog);
    if (!h || !h->o.quiet) fprintf(stderr, "  [%s] %s\n", label, msg);
    return 0;
}

/* progress_begin(label, total, unit): a stage's progress line (core/progress.h);
 * total <= 0 when unknown */
static int c_progress_begin(lua_State *L) {
    const char *label = luaL_checkstring(L, 1);
    lua_Integer total = luaL_optinteger(L, 2, 0);
    const char *unit = luaL_optstring(L, 3, "samples");
    pl_host *h = host_of(L);
    if (h) pl_progress_begin(&h->prog, label, (int64_t)total, unit);
    return 0;
}

/* progress(done [, kept]): units done so far; kept, when given, is shown */
static int c_progress(lua_State *L) {
    lua_Integer done = luaL_checkinteger(L, 1);
    pl_host *h = host_of(L);
    if (!h) return 0;
    if (!lua_isnoneornil(L, 2)) pl_progress_note(&h->prog, "%lld kept", (long long)luaL_checkinteger(L, 2));
    pl_progress_update(&h->prog, (int64_t)done);
    return 0;
}

static int c_progress_end(lua_State *L) {
    pl_host *h = host_of(L);
    if (h) pl_progress_end(&h->prog);
    return 0;
}

/* model("base" | "teacher") -> handle (one per name, loaded on first use) */
static int c_model(lua_State *L) {
    const char *which = luaL_checkstring(L, 1);
    pl_host *h = host_of(L);
    const char *path = NULL;
    const char *adapter = NULL;
    if (!strcmp(which, "base")) path = h->o.base_model;
    else if (!strcmp(which, "teacher")) path = h->o.teacher_model;
    else if (!strcmp(which, "tuned")) {
        if (!h->o.tuned_adapter) return luaL_error(L, "load_model: no fine-tune yet (\"tuned\" exists in the eval stage, after training)");
        path = h->o.base_model;
        adapter = h->o.tuned_adapter;
    } else return luaL_error(L, "load_model: unknown model '%s' (expected \"base\", \"teacher\" or \"tuned\")", which);
    if (!path) {
        if (!strcmp(which, "teacher"))
            return luaL_error(L, "no teacher model: set teacher = \"...\" in the recipe or pass --teacher PATH");
        return luaL_error(L, "no base model: set base = \"...\" in the recipe or pass --base PATH");
    }
    lua_getfield(L, LUA_REGISTRYINDEX, REG_MODELS);
    lua_getfield(L, -1, which);
    if (!lua_isnil(L, -1)) return 1;
    lua_pop(L, 1);
    pl_err e = {0};
    if (pl_lua_model_push_adapter(L, path, adapter, which, &e)) return raise_err(L, &e);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, which);
    return 1;
}

/* The path shown for a file: relative to the recipe directory when inside it. */
static const char *display_of(pl_host *h, const char *path) {
    if (h->recipe_dir) {
        size_t n = strlen(h->recipe_dir);
        if (!strncmp(path, h->recipe_dir, n) && path[n] == '/') return path + n + 1;
    }
    const char *rd = pl_sandbox_run_dir(h->sb);
    if (rd) {
        size_t n = strlen(rd);
        if (!strncmp(path, rd, n) && path[n] == '/') return path + n + 1;
    }
    return path;
}

static int c_display(lua_State *L) {
    lua_pushstring(L, display_of(host_of(L), luaL_checkstring(L, 1)));
    return 1;
}

static void push_messages(lua_State *L, const pl_chat *c) {
    lua_createtable(L, c->n, 0);
    for (int i = 0; i < c->n; i++) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, c->msg[i].role);
        lua_setfield(L, -2, "role");
        lua_pushstring(L, c->msg[i].content);
        lua_setfield(L, -2, "content");
        lua_rawseti(L, -2, i + 1);
    }
}

/* Iterator state for import(): a JSONL file is mapped and read a record at a
 * time (memory for one record, whatever the file's size; records past a
 * source's limit are never parsed); a JSON array file is imported whole. */
typedef struct limport {
    pl_map map;
    int mapped, whole, done, quiet;
    size_t pos;            /* JSONL: next byte */
    int line;              /* JSONL: its line number */
    pl_import_fmt fmt;     /* forced, or detected from the first good record */
    size_t n_bad, n_records, shown;
    pl_import im;          /* array file: all of it; JSONL: the current record */
    size_t next;           /* array file: next example */
    char *name;
} limport;

static void limport_release(limport *li) {
    pl_import_free(&li->im);
    if (li->mapped) pl_map_close(&li->map);
    li->mapped = 0;
    li->done = 1;
}

static int limport_gc(lua_State *L) {
    limport *li = lua_touserdata(L, 1);
    limport_release(li);
    free(li->name);
    li->name = NULL;
    return 0;
}

/* The next example of a JSONL file into li->im (n == 1), or 0 at the end.
 * Bad records are counted and the first 10 reported. */
static int jsonl_next(lua_State *L, limport *li) {
    for (;;) {
        pl_import_free(&li->im);
        if (li->pos >= li->map.size) return 0;
        const char *p = (const char *)li->map.data + li->pos;
        const char *nl = memchr(p, '\n', li->map.size - li->pos);
        size_t len = nl ? (size_t)(nl - p) : li->map.size - li->pos;
        const int line = li->line;
        li->pos += len + 1;
        li->line++;
        pl_import_opts o = {.fmt = li->fmt, .keep_errors = 1, .one_record = 1, .first_line = line};
        pl_err e = {0};
        if (pl_import_buffer(li->name, p, len, &o, &li->im, &e)) return raise_err(L, &e);
        li->n_records += li->im.n_records;
        li->n_bad += li->im.n_bad;
        if (li->im.n_errors && li->shown < 10 && !li->quiet) {
            fprintf(stderr, "  skipped: %s\n", li->im.errors[0]);
            li->shown++;
        }
        if (li->im.n == 1) {
            if (li->fmt == PL_FMT_AUTO) li->fmt = li->im.fmt;
            return 1;
        }
    }
}

static int import_iter(lua_State *L) {
    limport *li = lua_touserdata(L, lua_upvalueindex(1));
    if (li->done) return 0;
    const pl_example *e;
    if (li->whole) {
        if (li->next >= li->im.n) return 0;
        e = &li->im.ex[li->next++];
    } else {
        if (!jsonl_next(L, li)) {
            if (li->n_bad && !li->quiet)
                fprintf(stderr, "  %s: %zu bad record(s) skipped of %zu\n", li->name, li->n_bad, li->n_records);
            limport_release(li);
            return 0;
        }
        e = &li->im.ex[0];
    }
    lua_newtable(L);
    if (e->fmt == PL_FMT_TEXT) {
        lua_pushstring(L, e->text);
        lua_setfield(L, -2, "text");
    } else if (e->fmt == PL_FMT_IO) {
        pl_chat c = {0};
        pl_err er = {0};
        if (pl_chat_add(&c, "user", e->input, &er) || pl_chat_add(&c, "assistant", e->output, &er)) {
            pl_chat_clear(&c);
            return raise_err(L, &er);
        }
        push_messages(L, &c);
        pl_chat_clear(&c);
        lua_setfield(L, -2, "messages");
    } else {
        push_messages(L, &e->chat);
        lua_setfield(L, -2, "messages");
    }
    lua_createtable(L, 0, 1);
    lua_pushfstring(L, "%s:%d", li->name, e->line);
    lua_setfield(L, -2, "source");
    lua_setfield(L, -2, "_prov");
    return 1;
}

/* import(resolved path, format) -> iterator of samples, read as they are
 * asked for; bad records are reported on stderr (first 10) and counted. */
static int c_import(lua_State *L) {
    const char *f = luaL_optstring(L, 2, "auto");
    pl_host *h = host_of(L);
    pl_err e = {0};
    pl_import_opts o = {0};
    if (pl_import_fmt_parse(f, &o.fmt, &e)) return raise_err(L, &e);
    char *path = NULL;
    if (arg_path(L, 1, 0, &path, &e)) return raise_err(L, &e);
    limport *li = lua_newuserdatauv(L, sizeof *li, 0);
    memset(li, 0, sizeof *li);
    li->done = 1;
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, limport_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    li->name = strdup(display_of(h, path));
    li->quiet = h->o.quiet;
    li->fmt = o.fmt;
    li->line = 1;
    int rc = pl_map_open(&li->map, path, &e);
    if (rc) {
        free(path);
        return raise_err(L, &e);
    }
    li->mapped = 1;
    li->done = 0;
    /* a JSON array file (first non-blank byte '[', after a byte order mark) is imported whole */
    size_t k = li->map.size >= 3 && !memcmp(li->map.data, "\xEF\xBB\xBF", 3) ? 3 : 0;
    while (k < li->map.size && (li->map.data[k] == ' ' || li->map.data[k] == '\t' || li->map.data[k] == '\r' ||
                                li->map.data[k] == '\n'))
        k++;
    if (k < li->map.size && li->map.data[k] == '[') {
        pl_map_close(&li->map);
        li->mapped = 0;
        li->whole = 1;
        rc = pl_import_file(path, &o, &li->im, &e);
        free(path);
        if (rc) return raise_err(L, &e); /* the userdata's __gc frees what was read */
        if (!h->o.quiet)
            for (size_t i = 0; i < li->im.n_errors && i < 10; i++) fprintf(stderr, "  skipped: %s\n", li->im.errors[i]);
        if (li->im.n_bad && !h->o.quiet)
            fprintf(stderr, "  %s: %zu bad record(s) skipped of %zu\n", li->name, li->im.n_bad, li->im.n_records);
    } else {
        free(path);
    }
    lua_pushcclosure(L, import_iter, 1);
    return 1;
}

/* unit_hash(text, seed) -> [0, 1) from sha256(seed ":" text) */
static int c_unit_hash(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    lua_Integer seed = luaL_optinteger(L, 2, 0);
    char pre[32];
    int pn = snprintf(pre, sizeof pre, "%lld:", (long long)seed);
    pl_sha256 *h = pl_sha256_new();
    if (!h) return luaL_error(L, "out of memory");
    pl_sha256_update(h, pre, (size_t)pn);
    pl_sha256_update(h, s, n);
    uint8_t d[32];
    pl_sha256_final(h, d);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | d[i];
    lua_pushnumber(L, (double)(v >> 11) / 9007199254740992.0);
    return 1;
}

/* rawset that refuses protected tables (the potluck API, locked metatables). */
static int c_rawset(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkany(L, 2);
    luaL_checkany(L, 3);
    if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
        return luaL_error(L, "rawset: the table is protected");
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 1;
}

/* ------------------------------------------------------------ require */

static int valid_module_name(const char *s) {
    if (!*s || *s == '.') return 0;
    for (; *s; s++)
        if (!(*s == '_' || *s == '.' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')))
            return 0;
    return 1;
}

static int call_H(pl_host *h, const char *fn, int nargs, int nres, pl_err *err);

/* Load a Lua file as a function on the stack. own_env: in an environment of
 * its own (H.new_env: plugins, modules, the recipe); else the sandbox
 * globals (the prelude). */
static int load_lua_file(pl_host *h, const char *path, const char *display, int own_env, pl_err *err) {
    lua_State *L = pl_sandbox_L(h->sb);
    lua_getfield(L, LUA_REGISTRYINDEX, REG_SOURCES);
    lua_pushstring(L, path);
    char chunk[PATH_MAX + 2];
    snprintf(chunk, sizeof chunk, "@%s", display);
    lua_setfield(L, -2, chunk);
    lua_pop(L, 1);
    if (!own_env) return pl_sandbox_loadfile(h->sb, path, display, 0, err);
    int rc = call_H(h, "new_env", 0, 1, err);
    if (rc) return rc;
    rc = pl_sandbox_loadfile(h->sb, path, display, lua_gettop(L), err);
    if (rc) {
        lua_pop(L, 1);
        return rc;
    }
    lua_remove(L, -2); /* the env stays alive as the function's _ENV upvalue */
    return PL_OK;
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static void display_for(pl_host *h, int d, const char *name, char *out, size_t n) {
    if (d == 0) snprintf(out, n, "plugins/lib/%s", name);
    else if (d == 1) snprintf(out, n, "plugins/%s", name); /* relative to the recipe */
    else snprintf(out, n, "%s/%s", h->dirs[2], name);
}

static int c_require(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    pl_host *h = host_of(L);
    lua_getfield(L, LUA_REGISTRYINDEX, REG_MODULES);
    int cache = lua_gettop(L);
    lua_getfield(L, cache, name);
    if (!lua_isnil(L, -1)) { /* every requirer gets a read-only view: nobody rebinds a module's fields */
        pl_sandbox_push_frozen(L, -1);
        return 1;
    }
    lua_pop(L, 1);
    if (!valid_module_name(name) || strstr(name, ".."))
        return luaL_error(L, "require '%s': module names are letters, digits, _ and . only", name);
    char rel[PATH_MAX];
    snprintf(rel, sizeof rel, "%s.lua", name);
    for (char *c = rel; *c && c < rel + strlen(rel) - 4; c++)
        if (*c == '.') *c = '/';
    for (int d = 0; d < 3; d++) {
        if (!h->dirs[d]) continue;
        char path[PATH_MAX * 2], display[PATH_MAX * 2];
        snprintf(path, sizeof path, "%s/%s", h->dirs[d], rel);
        if (!file_exists(path)) continue;
        display_for(h, d, rel, display, sizeof display);
        pl_err e = {0};
        if (load_lua_file(h, path, display, 1, &e)) return raise_err(L, &e);
        lua_pushstring(L, name);
        lua_call(L, 1, 1);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_pushboolean(L, 1);
        }
        lua_pushvalue(L, -1);
        lua_setfield(L, cache, name);
        pl_sandbox_push_frozen(L, -1);
        return 1;
    }
    return luaL_error(L, "require '%s': no module %s in the plugin folders (C modules are not available in recipes)",
                      name, rel);
}

/* ------------------------------------------------------------ open */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Every *.lua of dir (not recursive), sorted. */
static int list_lua(const char *dir, char ***out, int *n) {
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *de;
    int cap = 0;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 5 || strcmp(de->d_name + l - 4, ".lua") || de->d_name[0] == '.') continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            char **t = realloc(*out, (size_t)cap * sizeof *t);
            if (!t) break;
            *out = t;
        }
        (*out)[(*n)++] = strdup(de->d_name);
    }
    closedir(d);
    if (*n > 1) qsort(*out, (size_t)*n, sizeof **out, cmp_str);
    return 0;
}

static int call_H(pl_host *h, const char *fn, int nargs, int nres, pl_err *err) {
    lua_State *L = pl_sandbox_L(h->sb);
    lua_getfield(L, LUA_REGISTRYINDEX, REG_H);
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    lua_insert(L, -(nargs + 1));
    return pl_sandbox_pcall(h->sb, nargs, nres, err);
}

static int load_plugins(pl_host *h, pl_err *err) {
    lua_State *L = pl_sandbox_L(h->sb);
    for (int d = 0; d < 3; d++) {
        if (!h->dirs[d]) continue;
        char **names;
        int n;
        list_lua(h->dirs[d], &names, &n);
        int rc = 0;
        for (int i = 0; i < n && !rc; i++) {
            char path[PATH_MAX * 2], display[PATH_MAX * 2];
            snprintf(path, sizeof path, "%s/%s", h->dirs[d], names[i]);
            display_for(h, d, names[i], display, sizeof display);
            uint8_t dg[32];
            char hex[65];
            if ((rc = pl_sha256_file(path, dg, err))) break;
            pl_sha256_hex(dg, hex);
            lua_pushstring(L, display);
            lua_pushstring(L, hex);
            lua_pushstring(L, h->origins[d]);
            if ((rc = call_H(h, "begin_plugin", 3, 0, err))) break;
            if ((rc = load_lua_file(h, path, display, 1, err))) break;
            char modname[PATH_MAX];
            snprintf(modname, sizeof modname, "%s", names[i]);
            modname[strlen(modname) - 4] = 0;
            lua_pushstring(L, modname);
            if ((rc = pl_sandbox_pcall(h->sb, 1, 1, err))) break;
            /* cache as a module unless an earlier folder provided that name */
            lua_getfield(L, LUA_REGISTRYINDEX, REG_MODULES);
            lua_getfield(L, -1, modname);
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
                if (lua_isnil(L, -2)) lua_pushboolean(L, 1);
                else lua_pushvalue(L, -2);
                lua_setfield(L, -2, modname);
            } else lua_pop(L, 1);
            lua_pop(L, 2);
            if ((rc = call_H(h, "end_plugin", 0, 0, err))) break;
        }
        for (int i = 0; i < n; i++) free(names[i]);
        free(names);
        if (rc) return rc;
    }
    return PL_OK;
}

static const luaL_Reg prims[] = {
    {"resolve", c_resolve}, {"exists", c_exists}, {"read_file", c_read_file}, {"write_file", c_write_file}, {"lines", c_lines},
    {"reader", c_reader}, {"writer", c_writer}, {"json_decode", c_json_decode}, {"json_encode", c_json_encode},
    {"check_train", c_check_train}, {"hash", c_hash}, {"file_sha256", c_file_sha256}, {"func_where", c_func_where},
    {"log", c_log}, {"progress", c_progress}, {"progress_begin", c_progress_begin}, {"progress_end", c_progress_end}, {"model", c_model}, {"display", c_display}, {"import", c_import},
    {"unit_hash", c_unit_hash}, {NULL, NULL}};

int pl_host_open(pl_host **out, const pl_host_opts *o, pl_err *err) {
    *out = NULL;
    pl_host *h = calloc(1, sizeof *h);
    if (!h) return pl_err_set(err, PL_ENOMEM, "out of memory");
    h->o = *o;
    if (o->quiet) h->prog.mode = PL_PROGRESS_OFF;
    int rc = PL_OK;
    h->home = strdup(pl_host_home());
    h->user_plugins = o->user_plugins ? strdup(o->user_plugins) : pl_host_user_plugins();
    if (o->recipe) {
        char *rp = realpath(o->recipe, NULL);
        if (!rp) { rc = pl_err_set(err, PL_EIO, "%s: %s", o->recipe, strerror(errno)); goto fail; }
        char *s = strrchr(rp, '/');
        if (s == rp) s[1] = 0;
        else *s = 0;
        h->recipe_dir = rp;
    } else if (o->recipe_dir) {
        h->recipe_dir = realpath(o->recipe_dir, NULL);
        if (!h->recipe_dir) { rc = pl_err_set(err, PL_EIO, "%s: %s", o->recipe_dir, strerror(errno)); goto fail; }
    }
    if ((rc = pl_sandbox_new(&h->sb, &o->limits, h->recipe_dir, o->run_dir, err))) goto fail;
    for (int i = 0; i < o->n_allow_read; i++)
        if ((rc = pl_sandbox_allow_read(h->sb, o->allow_read[i], err))) goto fail;
    if (o->limit_writes && (rc = pl_sandbox_limit_writes(h->sb, o->write_dir, err))) goto fail;
    {
        char p[PATH_MAX * 2];
        snprintf(p, sizeof p, "%s/plugins/lib", h->home);
        h->dirs[0] = strdup(p);
        h->origins[0] = "built-in";
        if (h->recipe_dir) {
            snprintf(p, sizeof p, "%s/plugins", h->recipe_dir);
            /* the recipe's own folder unless it is the built-in one */
            char *a = realpath(p, NULL), *b = realpath(h->dirs[0], NULL);
            if (a && (!b || strcmp(a, b))) h->dirs[1] = strdup(p);
            free(a);
            free(b);
        }
        h->origins[1] = "recipe";
        h->dirs[2] = strdup(h->user_plugins);
        h->origins[2] = "user";
    }
    lua_State *L = pl_sandbox_L(h->sb);
    lua_pushlightuserdata(L, h);
    lua_setfield(L, LUA_REGISTRYINDEX, REG_HOST);
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, REG_SOURCES);
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, REG_MODULES);
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, REG_MODELS);
    lua_pushcfunction(L, c_rawset);
    lua_setglobal(L, "rawset");
    /* The string metatable's __index is the original string library; the
     * global `string` becomes a copy, so `string.gsub = f` in a recipe
     * changes only the copy, never what s:gsub() calls in plugins. */
    lua_getglobal(L, "string");
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, -3)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
    }
    lua_setglobal(L, "string");
    lua_pop(L, 1);
    /* prelude(C) -> proxy, H */
    {
        char p[PATH_MAX * 2];
        snprintf(p, sizeof p, "%s/plugins/prelude.lua", h->home);
        uint8_t dg[32];
        char hex[65];
        if ((rc = pl_sha256_file(p, dg, err))) {
            pl_err_prefix(err, "potluck's Lua prelude (set POTLUCK_HOME to the potluck source folder)");
            goto fail;
        }
        pl_sha256_hex(dg, hex);
        if ((rc = load_lua_file(h, p, "plugins/prelude.lua", 0, err))) goto fail;
        luaL_newlib(L, prims);
        pl_bind_gen_score(L, -1);
        lua_pushstring(L, hex);
        lua_setfield(L, -2, "prelude_sha256");
        lua_pushlightuserdata(L, NULL);
        lua_setfield(L, -2, "null");
        if ((rc = pl_sandbox_pcall(h->sb, 1, 2, err))) goto fail;
        lua_setfield(L, LUA_REGISTRYINDEX, REG_H);
        /* text helpers on the module's inner table */
        if (lua_getmetatable(L, -1)) {
            lua_getfield(L, -1, "__index");
            pl_bind_text(L, lua_gettop(L));
            lua_pop(L, 2);
        }
        lua_getfield(L, LUA_REGISTRYINDEX, REG_MODULES);
        lua_pushvalue(L, -2);
        lua_setfield(L, -2, "potluck");
        lua_pop(L, 2);
        lua_pushcfunction(L, c_require);
        lua_setglobal(L, "require");
    }
    if ((rc = load_plugins(h, err))) goto fail;
    if (o->recipe) {
        if ((rc = load_lua_file(h, o->recipe, o->recipe, 1, err))) goto fail;
        if ((rc = pl_sandbox_pcall(h->sb, 0, 1, err))) goto fail;
        lua_setfield(L, LUA_REGISTRYINDEX, REG_RECIPE);
    }
    *out = h;
    return PL_OK;
fail:
    pl_host_free(h);
    return rc;
}

void pl_host_free(pl_host *h) {
    if (!h) return;
    pl_progress_clear(&h->prog); /* a stage that failed leaves no half line */
    pl_sandbox_free(h->sb);
    for (int i = 0; i < 3; i++) free(h->dirs[i]);
    free(h->recipe_dir);
    free(h->home);
    free(h->user_plugins);
    free(h);
}

static int to_json_result(pl_host *h, cJSON **out, const char *what, pl_err *err) {
    lua_State *L = pl_sandbox_L(h->sb);
    char msg[512];
    *out = pl_lua_to_json(L, -1, msg, sizeof msg);
    lua_pop(L, 1);
    if (!*out) return pl_err_set(err, PL_EINVAL, "%s: %s", what, msg);
    return PL_OK;
}

static const char *recipe_name(pl_host *h) { return h->o.recipe ? h->o.recipe : "recipe"; }

int pl_host_plan(pl_host *h, const char *size, cJSON **out, pl_err *err) {
    lua_State *L = pl_sandbox_L(h->sb);
    lua_getfield(L, LUA_REGISTRYINDEX, REG_RECIPE);
    if (size) lua_pushstring(L, size);
    else lua_pushnil(L);
    int rc = call_H(h, "plan", 2, 1, err);
    if (rc) {
        if (!strstr(err->msg, recipe_name(h))) pl_err_prefix(err, "%s", recipe_name(h));
        return rc;
    }
    return to_json_result(h, out, "plan", err);
}

int pl_host_plugins(pl_host *h, cJSON **out, pl_err *err) {
    int rc = call_H(h, "plugins", 0, 1, err);
    if (rc) return rc;
    return to_json_result(h, out, "plugins", err);
}

int pl_host_run_stage(pl_host *h, const char *size, int index, const char *in_path, int64_t in_count,
                      const char *out_path, int64_t seed, const pl_stage_part *part, cJSON **stats, pl_err *err) {
    lua_State *L = pl_sandbox_L(h->sb);
    pl_lua_model_set_default_seed(L, (lua_Integer)seed);
    lua_getfield(L, LUA_REGISTRYINDEX, REG_RECIPE);
    if (size) lua_pushstring(L, size);
    else lua_pushnil(L);
    lua_pushinteger(L, index);
    lua_createtable(L, 0, 4);
    if (in_path) {
        lua_pushstring(L, in_path);
        lua_setfield(L, -2, "input");
    }
    if (in_count >= 0) {
        lua_pushinteger(L, (lua_Integer)in_count);
        lua_setfield(L, -2, "total");
    }
    lua_pushstring(L, out_path);
    lua_setfield(L, -2, "output");
    lua_pushinteger(L, (lua_Integer)seed);
    lua_setfield(L, -2, "seed");
    if (part && part->hi >= 0) {
        lua_pushinteger(L, (lua_Integer)part->lo);
        lua_setfield(L, -2, "lo");
        lua_pushinteger(L, (lua_Integer)part->hi);
        lua_setfield(L, -2, "hi");
    }
    if (part && part->dup_of) {
        lua_pushlightuserdata(L, (void *)part);
        lua_pushcclosure(L, c_decision, 1);
        lua_setfield(L, -2, "decision");
    }
    int rc = call_H(h, "run_stage", 4, 1, err);
    if (rc) return rc;
    /* the models the stage loaded: their identities join the stage's key */
    if (lua_istable(L, -1)) {
        lua_newtable(L);
        int n = 0;
        lua_getfield(L, LUA_REGISTRYINDEX, REG_MODELS);
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            lua_pop(L, 1);
            lua_pushvalue(L, -1);
            lua_rawseti(L, -4, ++n);
        }
        lua_pop(L, 1);
        lua_setfield(L, -2, "models");
    }
    return to_json_result(h, stats, "stage stats", err);
}

int pl_host_run_metrics(pl_host *h, const char *size, const char *path, int64_t seed, cJSON **out, pl_err *err) {
    lua_State *L = pl_sandbox_L(h->sb);
    pl_lua_model_set_default_seed(L, (lua_Integer)seed);
    lua_getfield(L, LUA_REGISTRYINDEX, REG_RECIPE);
    if (size) lua_pushstring(L, size);
    else lua_pushnil(L);
    lua_pushstring(L, path);
    lua_pushinteger(L, (lua_Integer)seed);
    int rc = call_H(h, "run_metrics", 4, 1, err);
    if (rc) return rc;
    /* an empty result table is an object, not an array */
    lua_pushnil(L);
    if (!lua_next(L, -2)) {
        lua_pop(L, 1);
        *out = cJSON_CreateObject();
        return PL_OK;
    }
    lua_pop(L, 2);
    return to_json_result(h, out, "metrics", err);
}

int pl_host_task_describe(pl_host *h, const char *name, cJSON **out, pl_err *err) {
    lua_State *L = pl_sandbox_L(h->sb);
    lua_getfield(L, LUA_REGISTRYINDEX, REG_RECIPE);
    lua_pushstring(L, name);
    int rc = call_H(h, "task_describe", 2, 1, err);
    if (rc) return rc;
    return to_json_result(h, out, "task", err);
}

int pl_host_task_run(pl_host *h, const char *name, const int64_t *sel, int64_t n, int64_t seed, int tuned, cJSON **out,
                     pl_err *err) {
    lua_State *L = pl_sandbox_L(h->sb);
    pl_lua_model_set_default_seed(L, (lua_Integer)seed);
    lua_getfield(L, LUA_REGISTRYINDEX, REG_RECIPE);
    lua_pushstring(L, name);
    lua_createtable(L, n < INT32_MAX ? (int)n : 0, 0);
    for (int64_t i = 0; i < n; i++) {
        lua_pushinteger(L, (lua_Integer)sel[i]);
        lua_rawseti(L, -2, (lua_Integer)(i + 1));
    }
    lua_pushinteger(L, (lua_Integer)seed);
    lua_pushstring(L, tuned ? "tuned" : "base");
    int rc = call_H(h, "task_run", 5, 1, err);
    if (rc) return rc;
    return to_json_result(h, out, "task results", err);
}
