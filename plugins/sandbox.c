/* sandbox.c: the Lua 5.4 state recipes run in: chosen libraries, capped memory and instructions, checked paths.
 *
 * What a recipe sees, beyond plain Lua:
 *   - libraries: base, string, table, math, utf8, coroutine. Removed: dofile,
 *     loadfile, string.dump (and io, os, package, debug, require are never
 *     opened).
 *   - load(chunk [, name [, mode [, env]]]): mode is always "t"; a binary
 *     chunk is refused with "load: binary chunks are not allowed in recipes".
 *     With no env the chunk runs in the sandbox globals.
 *   - setmetatable(t, mt) refuses an mt that has a __gc field (raw lookup, as
 *     Lua's own check): finalizers run with no hooks, so they are not
 *     available. Adding __gc to a metatable after setmetatable has no effect
 *     in Lua 5.4 (the object is not marked for finalization).
 *   - the string metatable is locked (__metatable = false), so
 *     getmetatable("") returns false.
 *   - collectgarbage accepts only "collect" (the default) and "count"; other
 *     options ("stop", "incremental", ...) raise an error.
 *   - print writes one line to stderr, prefixed "lua: " (never to stdout,
 *     which belongs to potluck's own output).
 *   - rawset refuses the read-only proxies made by pl_sandbox_push_readonly.
 *
 * Limits: the allocator refuses growth past mem_bytes (plus a small reserve
 * while the error handler builds a traceback); a count hook every HOOK_STEP
 * instructions adds to a per-pcall counter and raises "instruction limit of
 * N exceeded" once the counter passes the cap. After the cap is hit the hook
 * fires on every instruction of each thread it runs on, so a recipe that
 * catches the error with pcall cannot keep running. New coroutines inherit
 * the hook of the thread that creates them (lua_newthread copies it).
 * Each allocation the cap refuses is charged to the same counter (one
 * instruction per 64 bytes the state holds: Lua answers a refusal with a
 * full collection), so catching memory errors in a loop, where every few
 * instructions force a collection of the whole heap, also ends at the cap.
 *
 * Positions: runtime errors carry Lua's own "file:line:". A memory error
 * raised inside the allocator has none (Lua raises it with no message
 * handler, and the stack cannot safely be read from the allocator), so
 * "memory limit of N MiB exceeded" is prefixed with the last position the
 * hook recorded (at most HOOK_STEP instructions old), or with the called
 * function's file and first line when the hook has not run yet.
 *
 * pl_sandbox_pcall runs on the main thread: C functions called from
 * recipe code (possibly inside a coroutine) that call back into Lua should
 * use lua_pcall on their own lua_State; nested pl_sandbox_pcall calls from
 * the main thread share the outer call's instruction budget.
 *
 * Status codes: syntax errors PL_EFORMAT, runtime errors PL_EINVAL, memory or
 * instruction limit hits PL_ERANGE, real allocation failures PL_ENOMEM, path
 * checks PL_EINVAL / PL_ENOTFOUND / PL_EIO. */
#include "sandbox.h"
#include "lpattern.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <lualib.h>

#define HOOK_STEP 10000
#define HANDLER_RESERVE ((size_t)1 << 20) /* extra bytes the message handler may use */

struct pl_sandbox {
    lua_State *L;
    pl_lua_limits lim;
    char *recipe_dir; /* realpath'd, or NULL */
    char *run_dir;    /* realpath'd, or NULL */
    char *write_dir;  /* pl_sandbox_limit_writes: writes only below this (realpath'd), or NULL */
    int no_writes;    /* pl_sandbox_limit_writes(NULL): no writes at all */
    char *allow[PL_SANDBOX_MAX_ALLOW]; /* --allow-read paths, realpath'd */
    int n_allow;
    size_t mem_used;
    size_t mem_cap;
    size_t mem_extra;  /* HANDLER_RESERVE while the message handler runs */
    int mem_hit;       /* the allocator refused a request since the last pcall began */
    int64_t count;     /* instructions of the current outermost pcall (+ GC charges) */
    int64_t gc_charged; /* part of count charged for refused allocations */
    int depth;         /* nesting of pl_sandbox_pcall */
    char where[96];    /* "file:line" last seen by the hook */
    char *traceback;   /* full text of the last error (message + traceback) */
};

/* ------------------------------------------------------------ limits */

static int parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    if (!s || !*s) return 0;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

static int parse_dbl(const char *s, double lo, double hi, double *out) {
    if (!s || !*s) return 0;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !(v >= lo && v <= hi)) return 0;
    *out = v;
    return 1;
}

#define MB_MAX ((int64_t)1 << 40) /* 1 EiB in MiB: far above any machine, far below overflow */

void pl_lua_limits_default(pl_lua_limits *l) {
    l->mem_bytes = (int64_t)512 << 20;
    l->instructions = 2000000000;
    l->cpu_seconds = 3600;
    l->as_bytes = (int64_t)16 << 30;
    l->wall_seconds = 7200;
    l->require_confinement = 0;
    int64_t v;
    double d;
    /* Malformed values are ignored here (this function cannot report);
     * the command-line flags report them. */
    if (parse_i64(getenv("POTLUCK_LUA_MEM_MB"), 1, MB_MAX, &v)) l->mem_bytes = v << 20;
    if (parse_i64(getenv("POTLUCK_LUA_INSTRUCTIONS"), 1, INT64_MAX, &v)) l->instructions = v;
    if (parse_i64(getenv("POTLUCK_LUA_CPU_S"), 1, INT_MAX - 1, &v)) l->cpu_seconds = (int)v;
    if (parse_i64(getenv("POTLUCK_LUA_AS_MB"), 1, MB_MAX, &v)) l->as_bytes = v << 20;
    if (parse_dbl(getenv("POTLUCK_LUA_WALL_S"), 1e-3, 1e9, &d)) l->wall_seconds = d;
}

int pl_lua_limits_flag(pl_lua_limits *l, int argc, char **argv, int *used, pl_err *err) {
    static const char *names[] = {"--lua-mem", "--lua-instructions", "--lua-cpu", "--lua-as", "--lua-wall"};
    *used = 0;
    if (argc < 1 || !argv[0]) return 0;
    const char *a = argv[0];
    if (!strcmp(a, "--require-confinement")) {
        l->require_confinement = 1;
        *used = 1;
        return 0;
    }
    int which = -1;
    const char *val = NULL;
    for (int i = 0; i < 5; i++) {
        size_t n = strlen(names[i]);
        if (strncmp(a, names[i], n) != 0) continue;
        if (a[n] == '\0') {
            which = i;
            if (argc < 2 || !argv[1])
                return pl_err_set(err, PL_EINVAL, "%s: expected a value after the flag", names[i]);
            val = argv[1];
            *used = 2;
        } else if (a[n] == '=') {
            which = i;
            val = a + n + 1;
            *used = 1;
        }
        if (which >= 0) break;
    }
    if (which < 0) return 0;
    int64_t v;
    double d;
    switch (which) {
    case 0:
        if (!parse_i64(val, 1, MB_MAX, &v)) goto bad;
        l->mem_bytes = v << 20;
        break;
    case 1:
        if (!parse_i64(val, 1, INT64_MAX, &v)) goto bad;
        l->instructions = v;
        break;
    case 2:
        if (!parse_i64(val, 1, INT_MAX - 1, &v)) goto bad;
        l->cpu_seconds = (int)v;
        break;
    case 3:
        if (!parse_i64(val, 1, MB_MAX, &v)) goto bad;
        l->as_bytes = v << 20;
        break;
    default:
        if (!parse_dbl(val, 1e-3, 1e9, &d)) goto bad;
        l->wall_seconds = d;
        break;
    }
    return 0;
bad:
    *used = 0;
    return pl_err_set(err, PL_EINVAL, "%s: expected a positive %s, got '%s'", names[which],
                      which == 0 || which == 3 ? "number of MiB"
                      : which == 1             ? "instruction count"
                                               : "number of seconds",
                      val);
}

const char *pl_lua_limits_help(void) {
    return "  --lua-mem MB           memory a recipe's Lua state may hold (default 512; env POTLUCK_LUA_MEM_MB)\n"
           "  --lua-instructions N   Lua VM instructions per call into a recipe (default 2000000000;\n"
           "                         env POTLUCK_LUA_INSTRUCTIONS)\n"
           "  --lua-cpu S            CPU seconds of the recipe process (default 3600; env POTLUCK_LUA_CPU_S)\n"
           "  --lua-as MB            address space of the recipe process (default 16384; env POTLUCK_LUA_AS_MB)\n"
           "  --lua-wall S           wall-clock seconds of the recipe process (default 7200; env POTLUCK_LUA_WALL_S)\n"
           "  --require-confinement  refuse to run recipe code where the kernel lacks Landlock or seccomp\n"
           "                         (default: one warning line, then the layers it has; docs/security.md)\n";
}

/* ------------------------------------------------------------ allocator */

static void sb_hook(lua_State *L, lua_Debug *ar);

/* lua_Alloc with a byte cap. For ptr == NULL, osize is a type tag, not a size. */
static void *sb_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    pl_sandbox *sb = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        sb->mem_used -= old;
        return NULL;
    }
    if (nsize > old) {
        size_t cap = sb->mem_cap + sb->mem_extra;
        size_t grow = nsize - old;
        if (sb->mem_used > cap || grow > cap - sb->mem_used) {
            sb->mem_hit = 1;
            /* Lua answers a refusal with a full (emergency) collection:
             * charge its cost, about one instruction per 64 live bytes, so
             * a recipe that catches memory errors in a loop cannot spend
             * unbounded CPU in the collector between two VM instructions. */
            int64_t charge = (int64_t)(sb->mem_used >> 6) + 1;
            sb->count += charge;
            sb->gc_charged += charge;
            /* Over the cap: let the hook stop the main thread at its next
             * instruction (lua_sethook only sets fields; safe here). */
            if (sb->count > sb->lim.instructions && sb->L && sb->depth > 0)
                lua_sethook(sb->L, sb_hook, LUA_MASKCOUNT, 1);
            return NULL;
        }
    }
    void *p = realloc(ptr, nsize);
    if (!p) return NULL;
    sb->mem_used = sb->mem_used - old + nsize;
    return p;
}

/* ------------------------------------------------------------ hook */

pl_sandbox *pl_sandbox_of(lua_State *L) {
    pl_sandbox *sb;
    memcpy(&sb, lua_getextraspace(L), sizeof sb);
    return sb;
}

static void note_where(pl_sandbox *sb, const lua_Debug *ar) {
    if (ar->currentline > 0)
        snprintf(sb->where, sizeof sb->where, "%s:%d", ar->short_src, ar->currentline);
    else
        snprintf(sb->where, sizeof sb->where, "%s", ar->short_src);
}

/* Count hook: runs every lua_gethookcount(L) instructions on each thread. */
static void sb_hook(lua_State *L, lua_Debug *ar) {
    pl_sandbox *sb = pl_sandbox_of(L);
    int step = lua_gethookcount(L);
    sb->count += step > 0 ? step : 1;
    int have = lua_getinfo(L, "Sl", ar) != 0;
    if (have) note_where(sb, ar);
    if (sb->count <= sb->lim.instructions) {
        if (step != HOOK_STEP) lua_sethook(L, sb_hook, LUA_MASKCOUNT, HOOK_STEP);
        return;
    }
    /* Over the cap: from now on stop this thread at every instruction, so
     * catching the error with pcall cannot buy more time. */
    if (step != 1) lua_sethook(L, sb_hook, LUA_MASKCOUNT, 1);
    char msg[256];
    if (sb->gc_charged > 0)
        snprintf(msg, sizeof msg,
                 "instruction limit of %lld exceeded (%lld of them charged for garbage collections forced by the "
                 "memory limit of %lld MiB)",
                 (long long)sb->lim.instructions, (long long)sb->gc_charged, (long long)(sb->lim.mem_bytes >> 20));
    else
        snprintf(msg, sizeof msg, "instruction limit of %lld exceeded", (long long)sb->lim.instructions);
    if (have)
        lua_pushfstring(L, "%s: %s", sb->where, msg);
    else
        lua_pushstring(L, msg);
    lua_error(L);
}

/* Work done inside the string library's pattern functions (lpattern.c), in
 * matching steps, counts as instructions: a backtracking pattern stops at
 * the same cap as an endless loop. */
static void sb_charge(lua_State *L, int64_t steps) {
    pl_sandbox *sb = pl_sandbox_of(L);
    sb->count += steps;
    if (sb->count <= sb->lim.instructions || sb->depth <= 0) return;
    lua_sethook(L, sb_hook, LUA_MASKCOUNT, 1); /* and at every instruction after a pcall */
    luaL_error(L, "instruction limit of %I exceeded (in a string pattern function)", (lua_Integer)sb->lim.instructions);
}

/* ------------------------------------------------------------ wrapped base functions */

#define LOAD_SLOT 5 /* keeps the reader's last piece alive (as lbaselib does) */

static const char *load_reader(lua_State *L, void *ud, size_t *size) {
    (void)ud;
    luaL_checkstack(L, 2, "too many nested functions");
    lua_pushvalue(L, 1);
    lua_call(L, 0, 1);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        *size = 0;
        return NULL;
    }
    if (!lua_isstring(L, -1)) luaL_error(L, "reader function must return a string");
    lua_replace(L, LOAD_SLOT);
    return lua_tolstring(L, LOAD_SLOT, size);
}

/* load(chunk [, chunkname [, mode [, env]]]) with the mode forced to "t". */
static int l_load(lua_State *L) {
    static const char binmsg[] = "load: binary chunks are not allowed in recipes";
    size_t len;
    const char *s = lua_tolstring(L, 1, &len);
    luaL_optstring(L, 3, "t"); /* accepted and ignored */
    int env = !lua_isnone(L, 4) ? 4 : 0;
    int status;
    if (s) {
        if (len > 0 && s[0] == LUA_SIGNATURE[0]) {
            luaL_pushfail(L);
            lua_pushstring(L, binmsg);
            return 2;
        }
        const char *name = luaL_optstring(L, 2, s);
        status = luaL_loadbufferx(L, s, len, name, "t");
    } else {
        const char *name = luaL_optstring(L, 2, "=(load)");
        luaL_checktype(L, 1, LUA_TFUNCTION);
        lua_settop(L, LOAD_SLOT);
        status = lua_load(L, load_reader, NULL, name, "t");
    }
    if (status == LUA_OK) {
        if (env) {
            lua_pushvalue(L, env);
            if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
        }
        return 1;
    }
    luaL_pushfail(L);
    lua_insert(L, -2);
    if (lua_type(L, -1) == LUA_TSTRING && strstr(lua_tostring(L, -1), "binary chunk")) {
        lua_pop(L, 1);
        lua_pushstring(L, binmsg);
    }
    return 2;
}

/* setmetatable as in lbaselib, refusing a metatable with a __gc field. */
static int l_setmetatable(lua_State *L) {
    int t = lua_type(L, 2);
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
    if (t == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "setmetatable: __gc metamethods are not available in recipes");
        lua_pop(L, 1);
    }
    if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL) return luaL_error(L, "cannot change a protected metatable");
    lua_settop(L, 2);
    lua_setmetatable(L, 1);
    return 1;
}

static int l_collectgarbage(lua_State *L) {
    const char *opt = luaL_optstring(L, 1, "collect");
    if (strcmp(opt, "collect") != 0 && strcmp(opt, "count") != 0)
        return luaL_error(L, "collectgarbage: option '%s' is not available in recipes (only \"collect\" and \"count\")",
                          opt);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushstring(L, opt);
    lua_call(L, 1, 1);
    return 1;
}

static int l_print(lua_State *L) {
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "lua: ");
    for (int i = 1; i <= n; i++) {
        if (i > 1) luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_addchar(&b, '\n');
    luaL_pushresult(&b);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    fwrite(s, 1, len, stderr);
    fflush(stderr);
    return 0;
}

/* Registry key of the weak set of read-only proxies. */
static const char RO_KEY = 'r';

static int is_readonly(lua_State *L, int idx) {
    idx = lua_absindex(L, idx);
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &RO_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        return 0;
    }
    lua_pushvalue(L, idx);
    int ro = lua_rawget(L, -2) != LUA_TNIL;
    lua_pop(L, 2);
    return ro;
}

static int l_rawset(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    if (is_readonly(L, 1)) return luaL_error(L, "rawset: table is read-only");
    luaL_checkany(L, 2);
    luaL_checkany(L, 3);
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 1;
}

static int ro_newindex(lua_State *L) {
    if (lua_type(L, 2) == LUA_TSTRING)
        return luaL_error(L, "cannot assign to field '%s' of a read-only table", lua_tostring(L, 2));
    return luaL_error(L, "cannot assign to a read-only table");
}

static int ro_next(lua_State *L) {
    lua_settop(L, 2);
    if (lua_next(L, lua_upvalueindex(1))) return 2;
    lua_pushnil(L);
    return 1;
}

/* __pairs of a proxy: upvalue 1 the table, upvalue 2 the next function
 * (ro_next, or frozen_next for deep views), closed over the table. */
static int proxy_pairs(lua_State *L) {
    lua_CFunction next = lua_tocfunction(L, lua_upvalueindex(2));
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushcclosure(L, next, 1);
    lua_pushnil(L);
    lua_pushnil(L);
    return 3;
}

static int ro_len(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)lua_rawlen(L, lua_upvalueindex(1)));
    return 1;
}

/* Push a read-only proxy of the table at idx: __index is the table itself
 * (index_fn NULL) or index_fn closed over it; pairs walk it with next_fn closed
 * over it; # the table's; writes, rawset and getmetatable refused. */
static void push_proxy(lua_State *L, int idx, lua_CFunction index_fn, lua_CFunction next_fn) {
    idx = lua_absindex(L, idx);
    lua_newtable(L);             /* proxy */
    lua_createtable(L, 0, 5);    /* its metatable */
    lua_pushvalue(L, idx);
    if (index_fn) lua_pushcclosure(L, index_fn, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, ro_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushvalue(L, idx);
    lua_pushcfunction(L, next_fn);
    lua_pushcclosure(L, proxy_pairs, 2);
    lua_setfield(L, -2, "__pairs");
    lua_pushvalue(L, idx);
    lua_pushcclosure(L, ro_len, 1);
    lua_setfield(L, -2, "__len");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &RO_KEY) == LUA_TTABLE) { /* the sandbox's rawset refuses it */
        lua_pushvalue(L, -2);
        lua_pushboolean(L, 1);
        lua_rawset(L, -3);
    }
    lua_pop(L, 1);
}

void pl_sandbox_push_readonly(lua_State *L, int idx) { push_proxy(L, idx, NULL, ro_next); }

/* Deep read-only views (pl_sandbox_push_frozen): one per table, kept in a
 * registry table with weak keys (an ephemeron table: the view stays while its
 * table lives). */
static const char FROZEN_KEY = 'f';

static int frozen_index(lua_State *L) {
    lua_settop(L, 2);
    lua_gettable(L, lua_upvalueindex(1));
    pl_sandbox_push_frozen(L, -1);
    return 1;
}

static int frozen_next(lua_State *L) {
    lua_settop(L, 2);
    if (!lua_next(L, lua_upvalueindex(1))) {
        lua_pushnil(L);
        return 1;
    }
    pl_sandbox_push_frozen(L, -1);
    lua_remove(L, -2);
    return 2;
}

void pl_sandbox_push_frozen(lua_State *L, int idx) {
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE || is_readonly(L, idx)) {
        lua_pushvalue(L, idx);
        return;
    }
    if (luaL_getmetafield(L, idx, "__metatable") != LUA_TNIL) { /* protected already: the host's own objects */
        lua_pop(L, 1);
        lua_pushvalue(L, idx);
        return;
    }
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &FROZEN_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "k");
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &FROZEN_KEY);
    }
    int cache = lua_gettop(L);
    lua_pushvalue(L, idx);
    if (lua_rawget(L, cache) == LUA_TTABLE) { /* the view made before */
        lua_remove(L, cache);
        return;
    }
    lua_pop(L, 1);
    push_proxy(L, idx, frozen_index, frozen_next);
    lua_pushvalue(L, idx);
    lua_pushvalue(L, -2);
    lua_rawset(L, cache); /* cache[table] = view */
    lua_remove(L, cache);
}

/* ------------------------------------------------------------ state */

static void wrap_global(lua_State *L, const char *name, lua_CFunction f) {
    lua_getglobal(L, name);
    lua_pushcclosure(L, f, 1);
    lua_setglobal(L, name);
}

/* Runs protected: opens the libraries and installs the wrappers. */
static int sb_setup(lua_State *L) {
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base},         {LUA_STRLIBNAME, luaopen_string}, {LUA_TABLIBNAME, luaopen_table},
        {LUA_MATHLIBNAME, luaopen_math},   {LUA_UTF8LIBNAME, luaopen_utf8},  {LUA_COLIBNAME, luaopen_coroutine},
        {NULL, NULL},
    };
    for (const luaL_Reg *r = libs; r->name; r++) {
        luaL_requiref(L, r->name, r->func, 1);
        lua_pop(L, 1);
    }
    /* luaL_requiref records each library in package.loaded-style registry
     * table _LOADED; nothing reads it (require is not opened). */
    lua_pushnil(L);
    lua_setglobal(L, "dofile");
    lua_pushnil(L);
    lua_setglobal(L, "loadfile");
    lua_getglobal(L, "string");
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    pl_lpattern_install(L, -1, sb_charge);
    lua_pop(L, 1);

    lua_pushcfunction(L, l_load);
    lua_setglobal(L, "load");
    lua_pushcfunction(L, l_setmetatable);
    lua_setglobal(L, "setmetatable");
    wrap_global(L, "collectgarbage", l_collectgarbage);
    lua_pushcfunction(L, l_print);
    lua_setglobal(L, "print");
    lua_pushcfunction(L, l_rawset);
    lua_setglobal(L, "rawset");

    /* Lock the string metatable. */
    lua_pushliteral(L, "");
    if (lua_getmetatable(L, -1)) {
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);

    /* Weak-keyed set of read-only proxies. */
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &RO_KEY);
    return 0;
}

static int real_dir(const char *what, const char *dir, char **out, pl_err *err) {
    *out = NULL;
    if (!dir) return 0;
    char *r = realpath(dir, NULL);
    if (!r) return pl_err_set(err, errno == ENOENT ? PL_ENOTFOUND : PL_EIO, "%s '%s': %s", what, dir, strerror(errno));
    struct stat st;
    if (stat(r, &st) != 0 || !S_ISDIR(st.st_mode)) {
        free(r);
        return pl_err_set(err, PL_EINVAL, "%s '%s': not a directory", what, dir);
    }
    *out = r;
    return 0;
}

int pl_sandbox_new(pl_sandbox **out, const pl_lua_limits *lim, const char *recipe_dir, const char *run_dir,
                   pl_err *err) {
    *out = NULL;
    pl_sandbox *sb = calloc(1, sizeof *sb);
    if (!sb) return pl_err_set(err, PL_ENOMEM, "sandbox: out of memory");
    if (lim)
        sb->lim = *lim;
    else
        pl_lua_limits_default(&sb->lim);
    if (sb->lim.mem_bytes <= 0 || sb->lim.instructions <= 0) {
        pl_err_set(err, PL_EINVAL, "sandbox: memory and instruction limits must be positive (got %lld bytes, %lld)",
                   (long long)sb->lim.mem_bytes, (long long)sb->lim.instructions);
        free(sb);
        return PL_EINVAL;
    }
    sb->mem_cap = (uint64_t)sb->lim.mem_bytes > SIZE_MAX ? SIZE_MAX : (size_t)sb->lim.mem_bytes;
    int rc = real_dir("recipe directory", recipe_dir, &sb->recipe_dir, err);
    if (rc == 0) rc = real_dir("run directory", run_dir, &sb->run_dir, err);
    if (rc != 0) {
        pl_sandbox_free(sb);
        return rc;
    }
    sb->L = lua_newstate(sb_alloc, sb);
    if (!sb->L) {
        pl_err_set(err, PL_ENOMEM, "sandbox: cannot create a Lua state (memory limit %lld MiB)",
                   (long long)(sb->lim.mem_bytes >> 20));
        pl_sandbox_free(sb);
        return PL_ENOMEM;
    }
    memcpy(lua_getextraspace(sb->L), &sb, sizeof sb);
    lua_pushcfunction(sb->L, sb_setup);
    if (lua_pcall(sb->L, 0, 0, 0) != LUA_OK) {
        const char *m = lua_tostring(sb->L, -1);
        pl_err_set(err, PL_ENOMEM, "sandbox: setting up the Lua state failed: %s", m ? m : "?");
        pl_sandbox_free(sb);
        return PL_ENOMEM;
    }
    lua_sethook(sb->L, sb_hook, LUA_MASKCOUNT, HOOK_STEP);
    *out = sb;
    return 0;
}

void pl_sandbox_free(pl_sandbox *sb) {
    if (!sb) return;
    if (sb->L) lua_close(sb->L);
    free(sb->recipe_dir);
    free(sb->run_dir);
    free(sb->write_dir);
    for (int i = 0; i < sb->n_allow; i++) free(sb->allow[i]);
    free(sb->traceback);
    free(sb);
}

lua_State *pl_sandbox_L(pl_sandbox *sb) { return sb->L; }
const char *pl_sandbox_recipe_dir(const pl_sandbox *sb) { return sb->recipe_dir; }
const char *pl_sandbox_run_dir(const pl_sandbox *sb) { return sb->run_dir; }

int pl_sandbox_limit_writes(pl_sandbox *sb, const char *dir, pl_err *err) {
    free(sb->write_dir);
    sb->write_dir = NULL;
    sb->no_writes = !dir;
    if (!dir) return PL_OK;
    sb->write_dir = realpath(dir, NULL);
    if (!sb->write_dir) {
        sb->no_writes = 1; /* fail closed */
        return pl_err_set(err, PL_EIO, "stage folder %s: %s", dir, strerror(errno));
    }
    return PL_OK;
}
const char *pl_sandbox_traceback(const pl_sandbox *sb) { return sb->traceback ? sb->traceback : ""; }
size_t pl_sandbox_mem_used(const pl_sandbox *sb) { return sb->mem_used; }

/* ------------------------------------------------------------ loading */

static int first_line_err(pl_err *err, int code, const char *prefix, const char *msg) {
    size_t n = strcspn(msg, "\n");
    return pl_err_set(err, code, "%s%.*s", prefix, (int)(n > 1000 ? 1000 : n), msg);
}

static int finish_load(pl_sandbox *sb, int status, int env_idx, pl_err *err) {
    lua_State *L = sb->L;
    if (status != LUA_OK) {
        const char *m = lua_tostring(L, -1);
        int code = status == LUA_ERRMEM ? (sb->mem_hit ? PL_ERANGE : PL_ENOMEM) : PL_EFORMAT;
        if (status == LUA_ERRMEM && sb->mem_hit)
            pl_err_set(err, code, "memory limit of %lld MiB exceeded while loading a chunk",
                       (long long)(sb->lim.mem_bytes >> 20));
        else
            first_line_err(err, code, "", m ? m : "(error object is not a string)");
        lua_pop(L, 1);
        return code;
    }
    if (env_idx != 0) {
        lua_pushvalue(L, env_idx);
        if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
    }
    return 0;
}

int pl_sandbox_loadstring(pl_sandbox *sb, const char *src, size_t len, const char *chunkname, int env_idx,
                          pl_err *err) {
    lua_State *L = sb->L;
    if (env_idx != 0) env_idx = lua_absindex(L, env_idx);
    if (!lua_checkstack(L, 4)) return pl_err_set(err, PL_ENOMEM, "%s: Lua stack is full", chunkname ? chunkname : "?");
    char name[512];
    if (!chunkname) chunkname = "=(string)";
    if (chunkname[0] == '@' || chunkname[0] == '=')
        snprintf(name, sizeof name, "%s", chunkname);
    else
        snprintf(name, sizeof name, "@%s", chunkname);
    sb->mem_hit = 0;
    int status = luaL_loadbufferx(L, src, len, name, "t");
    return finish_load(sb, status, env_idx, err);
}

int pl_sandbox_loadfile(pl_sandbox *sb, const char *path, const char *display, int env_idx, pl_err *err) {
    if (!display) display = path;
    FILE *f = fopen(path, "rb");
    if (!f) return pl_err_set(err, errno == ENOENT ? PL_ENOTFOUND : PL_EIO, "%s: %s", display, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    int rc = buf ? 0 : pl_err_set(err, PL_ENOMEM, "%s: out of memory reading the file", display);
    while (rc == 0) {
        if (len == cap) {
            char *nb = cap > sb->mem_cap ? NULL : realloc(buf, cap * 2);
            if (!nb) {
                rc = pl_err_set(err, cap > sb->mem_cap ? PL_ERANGE : PL_ENOMEM,
                                "%s: file is larger than the Lua memory limit (%lld MiB) or memory ran out", display,
                                (long long)(sb->lim.mem_bytes >> 20));
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) rc = pl_err_set(err, PL_EIO, "%s: read error: %s", display, strerror(errno));
            break;
        }
    }
    fclose(f);
    if (rc == 0) rc = pl_sandbox_loadstring(sb, buf, len, display, env_idx, err);
    free(buf);
    return rc;
}

/* ------------------------------------------------------------ calling */

/* Message handler: keeps the message as is (a string error already starts
 * with "file:line:" when Lua or error() put one there) and appends a
 * traceback. A bare "not enough memory" after the cap refused a request gets
 * the position of the innermost Lua function. Never runs recipe code. */
static int sb_msgh(lua_State *L) {
    pl_sandbox *sb = pl_sandbox_of(L);
    sb->mem_extra = HANDLER_RESERVE;
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (lua_isnil(L, 1))
            msg = lua_pushliteral(L, "nil error");
        else
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    if (sb->mem_hit && strcmp(msg, "not enough memory") == 0) {
        lua_Debug ar;
        for (int lv = 1; lua_getstack(L, lv, &ar); lv++) {
            if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
                note_where(sb, &ar);
                break;
            }
        }
    }
    luaL_traceback(L, L, msg, 1);
    sb->mem_extra = 0;
    return 1;
}

/* Skip repeats of the message's leading "file:line: " (coroutine.wrap adds
 * one per level it crosses, so a deep nest of coroutines would otherwise
 * fill the line with positions and cut off the reason). */
static const char *squash_positions(const char *m) {
    const char *sep = strstr(m, ": ");
    if (!sep || sep == m || sep - m > 200 || memchr(m, '\n', (size_t)(sep - m))) return m;
    size_t n = (size_t)(sep - m) + 2;
    while (strncmp(m + n, m, n) == 0) m += n;
    return m;
}

int pl_sandbox_pcall(pl_sandbox *sb, int nargs, int nresults, pl_err *err) {
    lua_State *L = sb->L;
    int fidx = lua_gettop(L) - nargs;
    if (fidx < 1) return pl_err_set(err, PL_EINVAL, "pl_sandbox_pcall: %d arguments but only %d stack slots", nargs,
                                    lua_gettop(L));
    if (!lua_checkstack(L, 2)) return pl_err_set(err, PL_ENOMEM, "Lua stack is full");
    if (sb->depth == 0) {
        sb->count = 0;
        sb->gc_charged = 0;
        sb->mem_hit = 0;
        lua_sethook(L, sb_hook, LUA_MASKCOUNT, HOOK_STEP);
        lua_Debug ar;
        lua_pushvalue(L, fidx);
        if (lua_getinfo(L, ">S", &ar)) {
            if (ar.linedefined > 0)
                snprintf(sb->where, sizeof sb->where, "%s:%d", ar.short_src, ar.linedefined);
            else
                snprintf(sb->where, sizeof sb->where, "%s", ar.short_src);
        } else {
            snprintf(sb->where, sizeof sb->where, "?");
        }
    }
    lua_pushcfunction(L, sb_msgh);
    lua_insert(L, fidx);
    sb->depth++;
    int status = lua_pcall(L, nargs, nresults, fidx);
    sb->depth--;
    sb->mem_extra = 0;
    if (status == LUA_OK) {
        lua_remove(L, fidx);
        return 0;
    }
    const char *m = lua_tostring(L, -1);
    if (!m) m = "(error object is not a string)";
    free(sb->traceback);
    sb->traceback = strdup(m);
    m = squash_positions(m);
    long long mib = (long long)(sb->lim.mem_bytes >> 20);
    int code;
    if (status == LUA_ERRMEM) {
        /* Raised with no handler: the position is the last one the hook saw. */
        if (sb->mem_hit) {
            code = pl_err_set(err, PL_ERANGE, "%s: memory limit of %lld MiB exceeded", sb->where, mib);
        } else {
            code = pl_err_set(err, PL_ENOMEM, "%s: not enough memory", sb->where);
        }
    } else if (sb->mem_hit && strstr(m, "not enough memory")) {
        /* Lua's auxiliary buffers raise a plain "not enough memory". */
        size_t n = strcspn(m, "\n");
        const char *nem = strstr(m, "not enough memory");
        if (nem >= m + n) nem = NULL;
        if (nem && nem == m)
            code = pl_err_set(err, PL_ERANGE, "%s: memory limit of %lld MiB exceeded", sb->where, mib);
        else if (nem)
            code = pl_err_set(err, PL_ERANGE, "%.*smemory limit of %lld MiB exceeded", (int)(nem - m > 700 ? 700 : nem - m),
                              m, mib);
        else
            code = first_line_err(err, PL_EINVAL, "", m);
    } else if (strstr(m, "instruction limit of ") && sb->count > sb->lim.instructions) {
        code = first_line_err(err, PL_ERANGE, "", m);
    } else if (status == LUA_ERRERR) {
        code = pl_err_set(err, sb->mem_hit ? PL_ERANGE : PL_EINVAL, "%s: error in the error handler%s", sb->where,
                          sb->mem_hit ? " (memory limit reached)" : "");
    } else {
        code = first_line_err(err, PL_EINVAL, "", m);
    }
    lua_pop(L, 2); /* message, handler */
    return code;
}

/* ------------------------------------------------------------ paths */

/* Is path equal to root or below it ('/' boundary)? Both are realpath'd. */
static int inside(const char *path, const char *root) {
    if (!root) return 0;
    size_t n = strlen(root);
    if (n == 1 && root[0] == '/') return path[0] == '/';
    return strncmp(path, root, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* A component of path below root that starts with '.' (path inside root). */
static int dot_below(const char *path, const char *root) {
    const char *p = path + strlen(root);
    while (*p) {
        while (*p == '/') p++;
        if (*p == '.') return 1;
        while (*p && *p != '/') p++;
    }
    return 0;
}

int pl_sandbox_allow_read(pl_sandbox *sb, const char *path, pl_err *err) {
    if (sb->n_allow >= PL_SANDBOX_MAX_ALLOW)
        return pl_err_set(err, PL_EINVAL, "--allow-read: at most %d paths", PL_SANDBOX_MAX_ALLOW);
    char *r = realpath(path, NULL);
    if (!r) return pl_err_set(err, errno == ENOENT ? PL_ENOTFOUND : PL_EIO, "--allow-read %s: %s", path, strerror(errno));
    sb->allow[sb->n_allow++] = r;
    return 0;
}

static int readable(const pl_sandbox *sb, const char *r) {
    if (inside(r, sb->run_dir)) return 1;
    for (int i = 0; i < sb->n_allow; i++)
        if (inside(r, sb->allow[i])) return 1;
    return inside(r, sb->recipe_dir) && !dot_below(r, sb->recipe_dir);
}

/* For a path that does not resolve: is its nearest existing ancestor
 * readable? If not, the path is outside, whether or not it exists, so a
 * recipe cannot probe for files outside its area by the kind of error. */
static int ancestor_readable(const pl_sandbox *sb, const char *full) {
    char tmp[2 * PATH_MAX + 2];
    snprintf(tmp, sizeof tmp, "%s", full);
    for (;;) {
        char *slash = strrchr(tmp, '/');
        if (!slash) return 0;
        if (slash == tmp) tmp[1] = '\0';
        else *slash = '\0';
        char *r = realpath(tmp, NULL);
        if (r) {
            int ok = readable(sb, r);
            free(r);
            return ok;
        }
        if (slash == tmp) return 0;
    }
}

static int outside_read(const char *path, pl_err *err) {
    return pl_err_set(err, PL_EINVAL, "'%s': reads must stay inside the recipe directory (not its dot-files or "
                      "dot-folders) or the run directory; to let the recipe read it, run with --allow-read PATH",
                      path);
}

int pl_sandbox_resolvel(pl_sandbox *sb, const char *path, size_t len, int for_write, char **out, pl_err *err) {
    *out = NULL;
    if (!path || len == 0) return pl_err_set(err, PL_EINVAL, "empty path");
    if (memchr(path, '\0', len)) return pl_err_set(err, PL_EINVAL, "path contains a NUL byte");
    if (len >= PATH_MAX) return pl_err_set(err, PL_EINVAL, "'%.200s...': path is too long", path);
    const char *base = sb->recipe_dir ? sb->recipe_dir : sb->run_dir;
    if (path[0] != '/' && !base)
        return pl_err_set(err, PL_EINVAL, "'%s': relative path, but there is no recipe or run directory", path);
    char full[2 * PATH_MAX + 2];
    if (path[0] == '/')
        snprintf(full, sizeof full, "%s", path);
    else
        snprintf(full, sizeof full, "%s/%s", base, path);

    if (!for_write) {
        char *r = realpath(full, NULL);
        if (!r) {
            int e = errno;
            if (!ancestor_readable(sb, full)) return outside_read(path, err);
            return pl_err_set(err, e == ENOENT ? PL_ENOTFOUND : PL_EIO, "'%s': %s", path, strerror(e));
        }
        if (!readable(sb, r)) {
            free(r);
            return outside_read(path, err);
        }
        *out = r;
        return 0;
    }

    if (!sb->run_dir) return pl_err_set(err, PL_EINVAL, "'%s': cannot write: there is no run directory", path);
    /* Split into parent and basename; trailing slashes leave an empty name. */
    char *slash = strrchr(full, '/');
    const char *name = slash + 1;
    if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return pl_err_set(err, PL_EINVAL, "'%s': not a file name to write", path);
    char parent[2 * PATH_MAX + 2];
    if (slash == full)
        snprintf(parent, sizeof parent, "/");
    else
        snprintf(parent, sizeof parent, "%.*s", (int)(slash - full), full);
    char *rp = realpath(parent, NULL);
    if (!rp)
        return pl_err_set(err, errno == ENOENT ? PL_ENOTFOUND : PL_EIO, "'%s': directory: %s", path, strerror(errno));
    if (!inside(rp, sb->run_dir)) {
        free(rp);
        return pl_err_set(err, PL_EINVAL, "'%s': writes must stay inside the run directory (a stage writes only "
                          "into its own output folder)", path);
    }
    if (sb->no_writes) {
        free(rp);
        return pl_err_set(err, PL_EINVAL, "'%s': this step writes nothing (plans and metrics return values; "
                          "the host records them)", path);
    }
    if (sb->write_dir && !inside(rp, sb->write_dir)) {
        free(rp);
        return pl_err_set(err, PL_EINVAL, "'%s': a stage writes only into its own folder %s/ (the rest of the run "
                          "directory is the host's)", path, sb->write_dir);
    }
    size_t need = strlen(rp) + 1 + strlen(name) + 1;
    char *res = malloc(need);
    if (!res) {
        free(rp);
        return pl_err_set(err, PL_ENOMEM, "'%s': out of memory", path);
    }
    snprintf(res, need, "%s%s%s", rp, strcmp(rp, "/") == 0 ? "" : "/", name);
    free(rp);
    /* An existing entry may be a symlink (a dangling one would let O_CREAT
     * make a file wherever it points): follow it and check the target. */
    struct stat st;
    if (lstat(res, &st) == 0) {
        if (S_ISLNK(st.st_mode)) {
            char *t = realpath(res, NULL);
            if (!t || !inside(t, sb->write_dir ? sb->write_dir : sb->run_dir)) {
                free(t);
                free(res);
                return pl_err_set(err, PL_EINVAL, "'%s': a symbolic link that leads outside the run directory", path);
            }
            free(res);
            res = t;
            if (stat(res, &st) != 0) st.st_mode = 0;
        }
        if (S_ISDIR(st.st_mode)) {
            free(res);
            return pl_err_set(err, PL_EINVAL, "'%s': is a directory, not a file to write", path);
        }
    }
    *out = res;
    return 0;
}

int pl_sandbox_resolve(pl_sandbox *sb, const char *path, int for_write, char **out, pl_err *err) {
    return pl_sandbox_resolvel(sb, path, path ? strlen(path) : 0, for_write, out, err);
}
