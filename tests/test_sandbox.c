/* test_sandbox.c: the Lua sandbox and the limited child: hostile recipes, path escapes, limits, child deaths.
 *
 * Layout under a fresh temp dir: recipe/ (the recipe directory, with
 * data.txt), run/ (the run directory, with symlinks leading out), run2/ (a
 * sibling whose name starts like run), outside/file.txt (must be untouched at
 * the end: same bytes, same mtime, no new entries). */
#include <dirent.h>
#include <ctype.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "check.h"
#include "plugins/sandbox.h"

static char g_root[256], g_recipe[300], g_run[300], g_outside[300], g_run2[300];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the DIR's own fd */
}

/* Load src as "hostile.lua" and run it with nres results left on the stack. */
static int run(pl_sandbox *sb, const char *src, int nres, pl_err *err) {
    pl_err_clear(err);
    int rc = pl_sandbox_loadstring(sb, src, strlen(src), "hostile.lua", 0, err);
    if (rc) return rc;
    return pl_sandbox_pcall(sb, 0, nres, err);
}

/* A hostile snippet must fail with a message holding `want`, its first line
 * starting with "hostile.lua:", and leave the stack as it was. */
static void expect_fail(pl_sandbox *sb, const char *label, const char *src, const char *want) {
    lua_State *L = pl_sandbox_L(sb);
    int top = lua_gettop(L);
    pl_err err;
    int rc = run(sb, src, 0, &err);
    CHECK(rc < 0, "%s: expected an error, got success", label);
    CHECK(strstr(err.msg, want) != NULL, "%s: message '%s' lacks '%s'", label, err.msg, want);
    CHECK(strncmp(err.msg, "hostile.lua:", 12) == 0, "%s: message '%s' does not start with hostile.lua:", label,
          err.msg);
    CHECK(strchr(err.msg, '\n') == NULL, "%s: message has more than one line", label);
    CHECK(lua_gettop(L) == top, "%s: stack %d -> %d", label, top, lua_gettop(L));
}

static int line_of(const char *msg) {
    const char *p = strchr(msg, ':');
    return p ? atoi(p + 1) : -1;
}

/* ------------------------------------------------------------ limits */

static void test_limits(void) {
    unsetenv("POTLUCK_LUA_MEM_MB");
    pl_lua_limits l;
    pl_lua_limits_default(&l);
    CHECK(l.mem_bytes == (int64_t)512 << 20, "default mem %lld", (long long)l.mem_bytes);
    CHECK(l.instructions == 2000000000, "default instructions");
    CHECK(l.cpu_seconds == 3600 && l.wall_seconds == 7200 && l.as_bytes == (int64_t)16 << 30, "default cpu/wall/as");
    setenv("POTLUCK_LUA_MEM_MB", "100", 1);
    setenv("POTLUCK_LUA_WALL_S", "2.5", 1);
    setenv("POTLUCK_LUA_CPU_S", "nonsense", 1);
    pl_lua_limits_default(&l);
    CHECK(l.mem_bytes == (int64_t)100 << 20, "env mem %lld", (long long)l.mem_bytes);
    CHECK(l.wall_seconds == 2.5, "env wall %g", l.wall_seconds);
    CHECK(l.cpu_seconds == 3600, "malformed env ignored: %d", l.cpu_seconds);
    unsetenv("POTLUCK_LUA_MEM_MB");
    unsetenv("POTLUCK_LUA_WALL_S");
    unsetenv("POTLUCK_LUA_CPU_S");

    pl_err err;
    int used = -1;
    char *a1[] = {"--lua-mem", "64", NULL};
    CHECK(pl_lua_limits_flag(&l, 2, a1, &used, &err) == 0 && used == 2 && l.mem_bytes == (int64_t)64 << 20,
          "--lua-mem 64: used %d mem %lld", used, (long long)l.mem_bytes);
    char *a2[] = {"--lua-cpu=5", NULL};
    CHECK(pl_lua_limits_flag(&l, 1, a2, &used, &err) == 0 && used == 1 && l.cpu_seconds == 5, "--lua-cpu=5");
    char *a3[] = {"--lua-wall", "abc", NULL};
    CHECK(pl_lua_limits_flag(&l, 2, a3, &used, &err) == PL_EINVAL && strstr(err.msg, "--lua-wall") &&
              strstr(err.msg, "'abc'"),
          "bad --lua-wall: %s", err.msg);
    char *a4[] = {"--lua-instructions", NULL};
    CHECK(pl_lua_limits_flag(&l, 1, a4, &used, &err) == PL_EINVAL && strstr(err.msg, "expected a value"),
          "missing value: %s", err.msg);
    char *a5[] = {"--lua-memory", "3", NULL};
    CHECK(pl_lua_limits_flag(&l, 2, a5, &used, &err) == 0 && used == 0, "not our flag");
    char *a6[] = {"--lua-as", "-5", NULL};
    CHECK(pl_lua_limits_flag(&l, 2, a6, &used, &err) == PL_EINVAL, "negative --lua-as refused");
    CHECK(strstr(pl_lua_limits_help(), "--lua-instructions") != NULL, "help lists the flags");
}

/* ------------------------------------------------------------ basics */

static void test_basics(pl_sandbox *sb) {
    lua_State *L = pl_sandbox_L(sb);
    pl_err err;
    CHECK(pl_sandbox_of(L) == sb, "pl_sandbox_of");
    CHECK(run(sb, "return 1 + 1", 1, &err) == 0 && lua_tointeger(L, -1) == 2, "1+1: %s", err.msg);
    lua_pop(L, 1);
    /* pl_sandbox_of from a coroutine */
    CHECK(run(sb, "return coroutine.wrap(function() return coroutine.running() end)()", 1, &err) == 0 &&
              lua_type(L, -1) == LUA_TTHREAD && pl_sandbox_of(lua_tothread(L, -1)) == sb,
          "pl_sandbox_of(coroutine): %s", err.msg);
    lua_pop(L, 1);
    /* only the chosen libraries */
    CHECK(run(sb, "return type(string) .. type(table) .. type(math) .. type(utf8) .. type(coroutine)", 1, &err) ==
                  0 &&
              strcmp(lua_tostring(L, -1), "tabletabletabletabletable") == 0,
          "libs present");
    lua_pop(L, 1);
    CHECK(run(sb, "return type(io) .. type(os) .. type(package) .. type(debug) .. type(require) .. type(dofile) .. "
                  "type(loadfile) .. type(string.dump)",
              1, &err) == 0 &&
              strcmp(lua_tostring(L, -1), "nilnilnilnilnilnilnilnil") == 0,
          "libs absent: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
    /* load: text with an env, and the globals by default */
    CHECK(run(sb, "local f = load('return X', 'c', 't', {X = 5}); return f()", 1, &err) == 0 &&
              lua_tointeger(L, -1) == 5,
          "load with env: %s", err.msg);
    lua_pop(L, 1);
    CHECK(run(sb, "Y = 7; return load('return Y')()", 1, &err) == 0 && lua_tointeger(L, -1) == 7,
          "load default env: %s", err.msg);
    lua_pop(L, 1);
    /* env_idx */
    lua_newtable(L);
    lua_pushinteger(L, 3);
    lua_setfield(L, -2, "Z");
    const char *src = "return Z, print";
    CHECK(pl_sandbox_loadstring(sb, src, strlen(src), "env.lua", -1, &err) == 0, "load with env_idx");
    CHECK(pl_sandbox_pcall(sb, 0, 2, &err) == 0 && lua_tointeger(L, -2) == 3 && lua_isnil(L, -1),
          "env_idx sees only its table");
    lua_pop(L, 3);
    /* collectgarbage */
    CHECK(run(sb, "collectgarbage(); collectgarbage('collect'); return collectgarbage('count')", 1, &err) == 0 &&
              lua_tonumber(L, -1) > 0,
          "collectgarbage count: %s", err.msg);
    lua_pop(L, 1);
    expect_fail(sb, "collectgarbage stop", "collectgarbage('stop')", "option 'stop' is not available");
    /* error objects that are not strings, and a syntax error */
    CHECK(run(sb, "error({})", 0, &err) == PL_EINVAL && strstr(err.msg, "error object is a table value"),
          "table error: %s", err.msg);
    CHECK(run(sb, "x = = 1", 0, &err) == PL_EFORMAT && strncmp(err.msg, "hostile.lua:1:", 14) == 0,
          "syntax error: %s", err.msg);
    CHECK(run(sb, "local a = 1\nlocal b = nil + a\n", 0, &err) == PL_EINVAL &&
              strncmp(err.msg, "hostile.lua:2: attempt to perform arithmetic", 44) == 0,
          "runtime error line: %s", err.msg);
    CHECK(strstr(pl_sandbox_traceback(sb), "stack traceback") != NULL, "traceback kept: %s", pl_sandbox_traceback(sb));
    CHECK(lua_gettop(L) == 0, "stack clean after basics: %d", lua_gettop(L));

    /* print goes to stderr with a prefix */
    char path[400];
    snprintf(path, sizeof path, "%s/print.txt", g_run);
    fflush(stderr);
    int saved = dup(2);
    FILE *f = fopen(path, "w");
    if (f && saved >= 0) {
        dup2(fileno(f), 2);
        fclose(f);
        int rc = run(sb, "print('hi', 1, nil, true)", 0, &err);
        fflush(stderr);
        dup2(saved, 2);
        close(saved);
        char got[64] = {0};
        FILE *g = fopen(path, "r");
        if (g) {
            size_t n = fread(got, 1, sizeof got - 1, g);
            got[n] = 0;
            fclose(g);
        }
        CHECK(rc == 0 && strcmp(got, "lua: hi\t1\tnil\ttrue\n") == 0, "print wrote '%s'", got);
        remove(path);
    } else {
        CHECK(0, "cannot redirect stderr");
    }
}

/* ------------------------------------------------------------ hostile code */

typedef struct {
    char *data;
    size_t len;
} bytes;

static int dump_writer(lua_State *L, const void *p, size_t n, void *ud) {
    (void)L;
    bytes *b = ud;
    char *nd = realloc(b->data, b->len + n);
    if (!nd) return 1;
    memcpy(nd + b->len, p, n);
    b->data = nd;
    b->len += n;
    return 0;
}

static void test_hostile(pl_sandbox *sb) {
    lua_State *L = pl_sandbox_L(sb);
    pl_err err;
    char out_path[400];
    snprintf(out_path, sizeof out_path, "%s/pwned", g_outside);
    lua_pushstring(L, out_path);
    lua_setglobal(L, "OUT");

    expect_fail(sb, "os.execute", "os.execute('touch ' .. OUT)", "global 'os'");
    expect_fail(sb, "io.open", "local f = io.open('/etc/passwd')", "global 'io'");
    expect_fail(sb, "io.open write", "io.open(OUT, 'w'):write('x')", "global 'io'");
    expect_fail(sb, "require C module", "local s = require('socket.core')", "global 'require'");
    expect_fail(sb, "package.loadlib", "package.loadlib('/lib/x86_64-linux-gnu/libc.so.6', 'system')",
                "global 'package'");
    expect_fail(sb, "string.dump", "local d = string.dump(function() end)", "field 'dump'");
    expect_fail(sb, "method dump", "local d = ('x').dump(print)", "field 'dump'");
    expect_fail(sb, "debug.sethook", "debug.sethook()", "global 'debug'");
    expect_fail(sb, "dofile", "dofile('/etc/passwd')", "global 'dofile'");
    expect_fail(sb, "loadfile", "loadfile('/etc/passwd')", "global 'loadfile'");

    /* A real binary chunk, made by an unsandboxed state. */
    lua_State *U = luaL_newstate();
    bytes bin = {0};
    if (U && luaL_loadstring(U, "return 42") == LUA_OK) lua_dump(U, dump_writer, &bin, 0);
    if (U) lua_close(U);
    CHECK(bin.len > 4 && bin.data[0] == 0x1b, "binary chunk built (%zu bytes)", bin.len);
    lua_pushlstring(L, bin.data ? bin.data : "", bin.len);
    lua_setglobal(L, "BIN");
    free(bin.data);
    expect_fail(sb, "load binary", "local f, e = load(BIN); if not f then error(e) end; return f()",
                "binary chunks are not allowed");
    expect_fail(sb, "load binary mode b", "local f, e = load(BIN, 'x', 'b'); if not f then error(e) end; return f()",
                "binary chunks are not allowed");
    expect_fail(sb, "load binary reader",
                "local done; local f, e = load(function() if done then return nil end; done = true; return BIN end)\n"
                "if not f then error(e) end",
                "binary chunks are not allowed");
    /* loadstring through the host also refuses binary */
    lua_getglobal(L, "BIN");
    size_t blen;
    const char *b = lua_tolstring(L, -1, &blen);
    int rc = pl_sandbox_loadstring(sb, b, blen, "bin.lua", 0, &err);
    lua_pop(L, 1);
    CHECK(rc == PL_EFORMAT && strstr(err.msg, "binary chunk"), "host loadstring binary: %s", err.msg);

    /* Endless loops. */
    expect_fail(sb, "endless loop", "local x = 0\nwhile true do\n  x = x + 1\nend\n", "instruction limit of 2000000 exceeded");
    rc = run(sb, "local x = 0\nwhile true do\n  x = x + 1\nend\n", 0, &err);
    int ln = line_of(err.msg);
    CHECK(rc == PL_ERANGE && ln >= 2 && ln <= 4, "endless loop reports its line (2..4): %s", err.msg);
    expect_fail(sb, "endless loop in coroutine.wrap",
                "local co = coroutine.wrap(function()\n  while true do end\nend)\nco()\n",
                "instruction limit of 2000000 exceeded");
    expect_fail(sb, "endless loop in coroutine.resume",
                "local co = coroutine.create(function()\n  while true do end\nend)\n"
                "local ok, e = coroutine.resume(co)\nerror(e, 0)\n",
                "instruction limit of 2000000 exceeded");
    expect_fail(sb, "endless loop catching the limit",
                "while true do\n  pcall(function() while true do end end)\nend\n", "instruction limit of");
    expect_fail(sb, "nested coroutines catching the limit",
                "while true do\n  coroutine.resume(coroutine.create(function()\n"
                "    while true do pcall(function() while true do end end) end\n  end))\nend\n",
                "instruction limit of");
    /* The budget is per call: a fresh call runs again. */
    CHECK(run(sb, "local s = 0 for i = 1, 1000 do s = s + i end return s", 1, &err) == 0 &&
              lua_tointeger(L, -1) == 500500,
          "state usable after the instruction limit: %s", err.msg);
    lua_pop(L, 1);

    /* __gc */
    expect_fail(sb, "setmetatable __gc", "setmetatable({}, {__gc = function() while true do end end})",
                "setmetatable: __gc metamethods are not available in recipes");
    expect_fail(sb, "setmetatable __gc=false", "setmetatable({}, {__gc = false})", "__gc metamethods");
    CHECK(run(sb,
              "FIN = nil\nlocal mt = {}\nlocal t = setmetatable({}, mt)\n"
              "mt.__gc = function() FIN = true; while true do end end\n"
              "t = nil\ncollectgarbage()\ncollectgarbage()\nreturn FIN",
              1, &err) == 0 &&
              lua_isnil(L, -1),
          "__gc added after setmetatable never runs: %s", err.msg);
    lua_pop(L, 1);
    CHECK(run(sb, "collectgarbage() return FIN", 1, &err) == 0 && lua_isnil(L, -1), "finalizer still not run");
    lua_pop(L, 1);

    /* Huge strings. */
    /* Lua refuses strings over 2^31 itself; under that the memory cap stops it. */
    expect_fail(sb, "huge string.rep 2^40", "local s = string.rep('x', 1 << 40)", "resulting string too large");
    expect_fail(sb, "huge string.rep 2^30", "local s = string.rep('x', 1 << 30)", "memory limit of 128 MiB exceeded");
    /* A memory error raised in C has no position of its own: the message
     * carries the last position the hook saw, here inside the loop. */
    rc = run(sb, "local t = {}\nfor i = 1, 100000 do t[i] = i end\nlocal s = string.rep('x', 1 << 30)", 0, &err);
    CHECK(rc == PL_ERANGE && strncmp(err.msg, "hostile.lua:2: memory limit of 128 MiB exceeded", 47) == 0,
          "string.rep names the last line seen: %s", err.msg);
    expect_fail(sb, "load with a bad argument", "load(true)", "bad argument #1 to 'load'");
    expect_fail(sb, "load reader error", "local f, e = load(function() return {} end) error(e)",
                "reader function must return a string");
    CHECK(run(sb, "local parts = {'return ', '6 * 7'} local i = 0\n"
                  "return load(function() i = i + 1 return parts[i] end, '=parts')()",
              1, &err) == 0 && lua_tointeger(L, -1) == 42,
          "load with a reader: %s", err.msg);
    lua_pop(L, 1);
    expect_fail(sb, "string.rep with separator", "local s = ('x'):rep(1 << 30, ('y'):rep(1000))",
                "resulting string too large");
    expect_fail(sb, "huge format width", "return string.format('%099999d', 1)", "invalid conversion");
    expect_fail(sb, "huge string.format",
                "local s = string.rep('x', 1 << 25)\nreturn string.format('%s%s%s%s', s, s, s, s)",
                "memory limit of 128 MiB exceeded");

    /* Deep recursion. */
    expect_fail(sb, "deep recursion", "local function f() return 1 + f() end\nreturn f()", "stack overflow");

    /* Metatable tricks. */
    CHECK(run(sb, "return getmetatable('')", 1, &err) == 0 && lua_isboolean(L, -1) && !lua_toboolean(L, -1),
          "string metatable is locked");
    lua_pop(L, 1);
    expect_fail(sb, "string metatable __index", "getmetatable('').__index = function() return 'pwned' end",
                "attempt to index a boolean value");
    expect_fail(sb, "setmetatable on a string", "setmetatable('', {})", "table expected");
    /* A read-only API table. */
    lua_newtable(L);
    lua_pushcfunction(L, luaopen_base); /* any function */
    lua_setfield(L, -2, "read_file");
    lua_pushinteger(L, 1);
    lua_setfield(L, -2, "api");
    pl_sandbox_push_readonly(L, -1);
    lua_setglobal(L, "pl");
    lua_pop(L, 1);
    expect_fail(sb, "assign to api", "pl.read_file = print", "read-only");
    expect_fail(sb, "rawset on api", "rawset(pl, 'read_file', print)", "rawset: table is read-only");
    expect_fail(sb, "setmetatable on api", "setmetatable(pl, {})", "cannot change a protected metatable");
    CHECK(run(sb, "local n = 0 for k in pairs(pl) do n = n + 1 end\n"
                  "return n, getmetatable(pl), pl.api, type(pl.read_file), rawget(pl, 'api')",
              5, &err) == 0 &&
              lua_tointeger(L, -5) == 2 && lua_toboolean(L, -4) == 0 && lua_tointeger(L, -3) == 1 &&
              strcmp(lua_tostring(L, -2), "function") == 0 && lua_isnil(L, -1),
          "read-only api still readable: %s", err.msg);
    lua_pop(L, 5);
    CHECK(run(sb, "local t = {} rawset(t, 'a', 1) return t.a", 1, &err) == 0 && lua_tointeger(L, -1) == 1,
          "rawset on plain tables works");
    lua_pop(L, 1);
    CHECK(lua_gettop(L) == 0, "stack clean after hostile: %d", lua_gettop(L));
}

/* Memory bombs in a state with a small cap and a large instruction budget. */
static void test_memory(const pl_lua_limits *base) {
    pl_lua_limits lim = *base;
    lim.mem_bytes = (int64_t)32 << 20;
    lim.instructions = 1000000000;
    pl_sandbox *sb = NULL;
    pl_err err;
    if (pl_sandbox_new(&sb, &lim, g_recipe, g_run, &err) != 0) {
        CHECK(0, "sandbox: %s", err.msg);
        return;
    }
    expect_fail(sb, "table bomb", "local t = {}\nfor i = 1, 1e9 do\n  t[i] = {i}\nend\n",
                "memory limit of 32 MiB exceeded");
    pl_err e2;
    int rc = run(sb, "local t = {}\nfor i = 1, 1e9 do\n  t[i] = {i}\nend\n", 0, &e2);
    int ln = line_of(e2.msg);
    CHECK(rc == PL_ERANGE && ln >= 2 && ln <= 4, "table bomb reports a line in its loop: %s", e2.msg);
    expect_fail(sb, "concat bomb", "local s = 'x'\nwhile true do s = s .. s end\n", "memory limit of 32 MiB exceeded");
    expect_fail(sb, "table.concat bomb",
                "local t = {} for i = 1, 100 do t[i] = ('y'):rep(1 << 20) end return table.concat(t)",
                "memory limit of 32 MiB exceeded");
    expect_fail(sb, "memory bomb in coroutine",
                "coroutine.wrap(function() local t = {} while true do t[#t + 1] = {} end end)()",
                "memory limit of 32 MiB exceeded");
    /* The state recovers once the garbage is gone. */
    lua_State *L = pl_sandbox_L(sb);
    CHECK(run(sb, "collectgarbage() return #string.rep('z', 1000)", 1, &err) == 0 && lua_tointeger(L, -1) == 1000,
          "usable after memory bombs: %s", err.msg);
    lua_pop(L, 1);
    CHECK(pl_sandbox_mem_used(sb) < (size_t)4 << 20, "memory back after collect: %zu", pl_sandbox_mem_used(sb));
    pl_sandbox_free(sb);
}

/* ------------------------------------------------------------ paths */

static void expect_resolve(pl_sandbox *sb, const char *path, int wr, int want_rc, const char *want) {
    char *out = NULL;
    pl_err err;
    pl_err_clear(&err);
    int rc = pl_sandbox_resolve(sb, path, wr, &out, &err);
    if (want_rc == 0) {
        CHECK(rc == 0 && out && strcmp(out, want) == 0, "resolve(%s, %d) = %s (%s), want %s", path, wr,
              out ? out : "NULL", err.msg, want);
    } else {
        CHECK(rc == want_rc && out == NULL, "resolve(%s, %d): rc %d out %s, want rc %d", path, wr, rc,
              out ? out : "NULL", want_rc);
        CHECK(strstr(err.msg, want) != NULL, "resolve(%s, %d): message '%s' lacks '%s'", path, wr, err.msg, want);
        CHECK(path[0] == '\0' || strstr(err.msg, path) != NULL, "resolve(%s): message names the path: %s", path,
              err.msg);
    }
    free(out);
}

static void test_paths(pl_sandbox *sb) {
    char want[700];
    snprintf(want, sizeof want, "%s/data.txt", g_recipe);
    expect_resolve(sb, "data.txt", 0, 0, want);
    expect_resolve(sb, "./sub/../data.txt", 0, PL_ENOTFOUND, "No such file"); /* sub/ does not exist */
    snprintf(want, sizeof want, "%s/old.txt", g_run);
    expect_resolve(sb, "../run/old.txt", 0, 0, want);
    expect_resolve(sb, want, 0, 0, want); /* absolute inside the run dir */
    expect_resolve(sb, "../outside/file.txt", 0, PL_EINVAL, "reads must stay inside");
    /* a missing file outside gets the same answer as an existing one: no existence probe */
    expect_resolve(sb, "../outside/x", 0, PL_EINVAL, "reads must stay inside");
    expect_resolve(sb, "/no/such/dir/x", 0, PL_EINVAL, "reads must stay inside");
    expect_resolve(sb, "sub/missing.txt", 0, PL_ENOTFOUND, "No such file"); /* missing inside: said so */
    expect_resolve(sb, "/etc/passwd", 0, PL_EINVAL, "reads must stay inside");
    expect_resolve(sb, "../run/link", 0, PL_EINVAL, "reads must stay inside");
    expect_resolve(sb, "../run/dirlink/file.txt", 0, PL_EINVAL, "reads must stay inside");
    expect_resolve(sb, "../run/../outside/file.txt", 0, PL_EINVAL, "reads must stay inside");
    expect_resolve(sb, "../run2/f.txt", 0, PL_EINVAL, "reads must stay inside");
    expect_resolve(sb, "", 0, PL_EINVAL, "empty path");

    snprintf(want, sizeof want, "%s/new.txt", g_run);
    expect_resolve(sb, "../run/new.txt", 1, 0, want);
    expect_resolve(sb, "../run/old.txt", 1, 0, (snprintf(want, sizeof want, "%s/old.txt", g_run), want));
    snprintf(want, sizeof want, "%s/inlink", g_run);
    char target[700];
    snprintf(target, sizeof target, "%s/old.txt", g_run);
    expect_resolve(sb, "../run/inlink", 1, 0, target); /* a link inside the run dir is followed */
    expect_resolve(sb, "../outside/x", 1, PL_EINVAL, "writes must stay inside the run directory");
    expect_resolve(sb, "../outside/file.txt", 1, PL_EINVAL, "writes must stay inside the run directory");
    expect_resolve(sb, "/etc/passwd", 1, PL_EINVAL, "writes must stay inside the run directory");
    expect_resolve(sb, "/tmp/x", 1, PL_EINVAL, "writes must stay inside the run directory");
    expect_resolve(sb, "data.txt", 1, PL_EINVAL, "writes must stay inside the run directory");
    expect_resolve(sb, "../run/link", 1, PL_EINVAL, "symbolic link");
    expect_resolve(sb, "../run/dlink", 1, PL_EINVAL, "symbolic link");
    expect_resolve(sb, "../run/dirlink/x", 1, PL_EINVAL, "writes must stay inside the run directory");
    expect_resolve(sb, "../run/../outside", 1, PL_EINVAL, "writes must stay inside the run directory");
    expect_resolve(sb, "../run/..", 1, PL_EINVAL, "not a file name");
    expect_resolve(sb, "../run/.", 1, PL_EINVAL, "not a file name");
    expect_resolve(sb, "../run/", 1, PL_EINVAL, "not a file name");
    expect_resolve(sb, "../run2/f.txt", 1, PL_EINVAL, "writes must stay inside the run directory");
    expect_resolve(sb, "../run/nosuchdir/f.txt", 1, PL_ENOTFOUND, "No such file");
    expect_resolve(sb, "../run/sub", 1, PL_EINVAL, "is a directory");

    /* writes narrowed to a stage's folder (run/sub), then to nothing, then back */
    snprintf(want, sizeof want, "%s/sub", g_run);
    pl_err lerr = {0};
    CHECK(pl_sandbox_limit_writes(sb, want, &lerr) == 0, "limit writes to run/sub: %s", lerr.msg);
    snprintf(want, sizeof want, "%s/sub/x.txt", g_run);
    expect_resolve(sb, "../run/sub/x.txt", 1, 0, want);
    expect_resolve(sb, "../run/new.txt", 1, PL_EINVAL, "a stage writes only into its own folder");
    expect_resolve(sb, "../run/old.txt", 1, PL_EINVAL, "a stage writes only into its own folder");
    expect_resolve(sb, "../run/inlink", 1, PL_EINVAL, "a stage writes only into its own folder");
    expect_resolve(sb, "../outside/x", 1, PL_EINVAL, "writes must stay inside the run directory");
    expect_resolve(sb, "../run/old.txt", 0, 0, (snprintf(want, sizeof want, "%s/old.txt", g_run), want)); /* reads unchanged */
    CHECK(pl_sandbox_limit_writes(sb, NULL, &lerr) == 0, "no writes");
    expect_resolve(sb, "../run/sub/x.txt", 1, PL_EINVAL, "this step writes nothing");
    expect_resolve(sb, "../run/new.txt", 1, PL_EINVAL, "this step writes nothing");
    CHECK(pl_sandbox_limit_writes(sb, "/no/such/stage/dir", &lerr) != 0 && strstr(lerr.msg, "/no/such/stage/dir"),
          "a missing stage folder is an error: %s", lerr.msg);
    expect_resolve(sb, "../run/new.txt", 1, PL_EINVAL, "this step writes nothing"); /* and writes stay shut */
    CHECK(pl_sandbox_limit_writes(sb, g_run, &lerr) == 0, "writes to the whole run directory again");
    snprintf(want, sizeof want, "%s/new.txt", g_run);
    expect_resolve(sb, "../run/new.txt", 1, 0, want);

    char *out = NULL;
    pl_err err;
    CHECK(pl_sandbox_resolvel(sb, "a\0b", 3, 0, &out, &err) == PL_EINVAL && strstr(err.msg, "NUL") && !out,
          "NUL in a path: %s", err.msg);

    /* No recipe dir: relative paths start at the run dir. */
    pl_sandbox *s2 = NULL;
    pl_lua_limits lim;
    pl_lua_limits_default(&lim);
    if (pl_sandbox_new(&s2, &lim, NULL, g_run, &err) == 0) {
        snprintf(want, sizeof want, "%s/x.txt", g_run);
        expect_resolve(s2, "x.txt", 1, 0, want);
        expect_resolve(s2, "../recipe/data.txt", 0, PL_EINVAL, "reads must stay inside");
        CHECK(strcmp(pl_sandbox_run_dir(s2), g_run) == 0 && pl_sandbox_recipe_dir(s2) == NULL, "dirs of s2");
        pl_sandbox_free(s2);
    } else {
        CHECK(0, "sandbox without a recipe dir: %s", err.msg);
    }
    /* A missing directory is an error at creation. */
    char missing[400];
    snprintf(missing, sizeof missing, "%s/missing", g_root);
    s2 = NULL;
    CHECK(pl_sandbox_new(&s2, &lim, missing, g_run, &err) == PL_ENOTFOUND && !s2 && strstr(err.msg, "missing"),
          "missing recipe dir: %s", err.msg);
}

static void test_loadfile(pl_sandbox *sb) {
    char path[400];
    pl_err err;
    lua_State *L = pl_sandbox_L(sb);
    snprintf(path, sizeof path, "%s/bad.lua", g_recipe);
    write_file(path, "local a = 1\nlocal b = = 2\n");
    CHECK(pl_sandbox_loadfile(sb, path, "bad.lua", 0, &err) == PL_EFORMAT && strncmp(err.msg, "bad.lua:2:", 10) == 0,
          "syntax error names file:line: %s", err.msg);
    snprintf(path, sizeof path, "%s/rt.lua", g_recipe);
    write_file(path, "local t = {}\n\nreturn t.x.y\n");
    CHECK(pl_sandbox_loadfile(sb, path, "recipes/rt.lua", 0, &err) == 0, "load rt.lua: %s", err.msg);
    CHECK(pl_sandbox_pcall(sb, 0, 1, &err) == PL_EINVAL && strncmp(err.msg, "recipes/rt.lua:3:", 17) == 0,
          "runtime error names file:line: %s", err.msg);
    snprintf(path, sizeof path, "%s/nope.lua", g_recipe);
    CHECK(pl_sandbox_loadfile(sb, path, "nope.lua", 0, &err) == PL_ENOTFOUND && strstr(err.msg, "nope.lua"),
          "missing file: %s", err.msg);
    CHECK(lua_gettop(L) == 0, "stack clean after loadfile: %d", lua_gettop(L));
}

/* ------------------------------------------------------------ child */

static int ch_ok(void *ctx, int fd, pl_err *err) {
    (void)ctx;
    (void)err;
    return write(fd, "hello", 5) == 5 ? 0 : PL_EIO;
}
static int ch_fail(void *ctx, int fd, pl_err *err) {
    (void)ctx;
    (void)fd;
    return pl_err_set(err, PL_EINVAL, "recipe.lua:7: bad thing");
}
static int ch_nomem(void *ctx, int fd, pl_err *err) {
    (void)ctx;
    (void)fd;
    return pl_err_set(err, PL_ENOMEM, "not enough memory");
}
static int ch_segv(void *ctx, int fd, pl_err *err) {
    (void)ctx;
    (void)fd;
    (void)err;
    signal(SIGSEGV, SIG_DFL); /* past ASan's own handler */
    raise(SIGSEGV);
    return 0;
}
static int ch_sleep(void *ctx, int fd, pl_err *err) {
    (void)ctx;
    (void)fd;
    (void)err;
    sleep(30);
    return 0;
}
static int ch_closed_sleep(void *ctx, int fd, pl_err *err) {
    (void)ctx;
    (void)err;
    close(fd);
    sleep(30);
    return 0;
}
static int ch_spin(void *ctx, int fd, pl_err *err) {
    (void)ctx;
    (void)fd;
    (void)err;
    volatile unsigned long x = 0;
    for (;;) x++;
    return 0;
}
static int ch_exit3(void *ctx, int fd, pl_err *err) {
    (void)ctx;
    (void)fd;
    (void)err;
    _exit(3);
}
static int ch_big(void *ctx, int fd, pl_err *err) {
    (void)ctx;
    (void)err;
    static char buf[1 << 20];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (char)('a' + i % 26);
    size_t off = 0;
    while (off < sizeof buf) {
        ssize_t w = write(fd, buf + off, sizeof buf - off);
        if (w <= 0) return pl_err_set(err, PL_EIO, "write failed");
        off += (size_t)w;
    }
    return 0;
}

/* Runs a Lua snippet in a sandbox inside the child. */
typedef struct {
    const char *src;
    int64_t mem;
} lua_job;

static int ch_lua(void *ctx, int fd, pl_err *err) {
    lua_job *j = ctx;
    pl_lua_limits lim;
    pl_lua_limits_default(&lim);
    lim.mem_bytes = j->mem;
    pl_sandbox *sb = NULL;
    int rc = pl_sandbox_new(&sb, &lim, g_recipe, g_run, err);
    if (rc) return rc;
    rc = pl_sandbox_loadstring(sb, j->src, strlen(j->src), "bomb.lua", 0, err);
    if (!rc) rc = pl_sandbox_pcall(sb, 0, 1, err);
    if (!rc) {
        size_t n;
        const char *s = lua_tolstring(pl_sandbox_L(sb), -1, &n);
        if (s && write(fd, s, n) != (ssize_t)n) rc = pl_err_set(err, PL_EIO, "write failed");
    }
    pl_sandbox_free(sb);
    return rc;
}

/* relay: the child asks its parent three times (one answer an error, one
 * 1 MiB) and writes what it got; without a relay pl_child_call refuses */
static int relay_upper(void *user, const char *req, size_t n, char **reply, size_t *rn, pl_err *err) {
    int *served = user;
    (*served)++;
    if (n == 4 && !memcmp(req, "fail", 4)) return pl_err_set(err, PL_EINVAL, "no such request: %.*s", (int)n, req);
    size_t out = n == 3 && !memcmp(req, "big", 3) ? (size_t)1 << 20 : n;
    char *b = malloc(out ? out : 1);
    if (!b) return pl_err_set(err, PL_ENOMEM, "out of memory");
    for (size_t i = 0; i < out; i++) b[i] = (char)toupper((unsigned char)req[i % n]);
    *reply = b;
    *rn = out;
    return 0;
}
static int ch_relay(void *ctx, int fd, pl_err *err) {
    (void)ctx;
    char *r = NULL;
    size_t n = 0;
    char msg[600];
    int rc = pl_child_call("hello relay", 11, &r, &n, err);
    if (rc) return rc;
    int l = snprintf(msg, sizeof msg, "%.*s|", (int)n, r);
    free(r);
    pl_err e = {0};
    rc = pl_child_call("fail", 4, &r, &n, &e);
    l += snprintf(msg + l, sizeof msg - (size_t)l, "%d %s|", rc, e.msg);
    if ((rc = pl_child_call("big", 3, &r, &n, err))) return rc;
    l += snprintf(msg + l, sizeof msg - (size_t)l, "%zu %c%c%c", n, r[0], r[n - 2], r[n - 1]);
    free(r);
    return write(fd, msg, (size_t)l) == l ? 0 : PL_EIO;
}
static int ch_norelay(void *ctx, int fd, pl_err *err) {
    (void)ctx;
    (void)fd;
    char *r = NULL;
    size_t n = 0;
    return pl_child_has_relay() ? pl_err_set(err, PL_EINVAL, "a relay where none was given")
                                : pl_child_call("x", 1, &r, &n, err);
}
static int ch_relay_die(void *ctx, int fd, pl_err *err) {
    (void)ctx;
    (void)fd;
    (void)err;
    _exit(7); /* gone before its first request */
}

static void test_relay(const pl_lua_limits *lim) {
    int served = 0;
    pl_child_relay rl = {.serve = relay_upper, .user = &served};
    char *out = NULL;
    size_t n = 0;
    pl_err err = {0};
    CHECK(pl_child_run_relay(lim, "relay", ch_relay, NULL, &rl, &out, &n, &err) == 0 && out &&
              !strcmp(out, "HELLO RELAY|-5 no such request: fail|1048576 BGB") && served == 3,
          "relay: %s (%s), %d served", out ? out : "(none)", err.msg, served);
    free(out);
    out = NULL;
    CHECK(pl_child_run(lim, "norelay", ch_norelay, NULL, &out, &n, &err) == PL_EUNSUPPORTED &&
              strstr(err.msg, "not a relayed child"),
          "pl_child_call without a relay: %s", err.msg);
    free(out);
    out = NULL;
    served = 0;
    CHECK(pl_child_run_relay(lim, "die", ch_relay_die, NULL, &rl, &out, &n, &err) == PL_EIO &&
              strstr(err.msg, "exited with status 7") && served == 0,
          "a relayed child that exits: %s", err.msg);
    free(out);
}

static void test_child(void) {
    pl_lua_limits lim;
    pl_lua_limits_default(&lim);
    lim.cpu_seconds = 10;
    lim.wall_seconds = 10;
    lim.as_bytes = (int64_t)4096 << 20;
    int fds0 = count_fds();
    pl_err err;
    char *out = NULL;
    size_t n = 0;

    /* stdio buffers are flushed before fork, not written twice */
    FILE *tf = tmpfile();
    if (tf) fputs("abc", tf);

    CHECK(pl_child_run(&lim, "ok", ch_ok, NULL, &out, &n, &err) == 0 && out && n == 5 && strcmp(out, "hello") == 0,
          "child result: %s", err.msg);
    free(out);
    out = NULL;
    if (tf) {
        rewind(tf);
        char got[16] = {0};
        size_t k = fread(got, 1, sizeof got - 1, tf);
        CHECK(k == 3 && strcmp(got, "abc") == 0, "stdio buffer written once: '%s'", got);
        fclose(tf);
    }

    CHECK(pl_child_run(&lim, "recipe.lua", ch_fail, NULL, &out, &n, &err) == PL_EINVAL &&
              strcmp(err.msg, "recipe.lua:7: bad thing") == 0 && out == NULL,
          "child error: %d %s", err.code, err.msg);
    CHECK(pl_child_run(&lim, "r.lua", ch_nomem, NULL, NULL, NULL, &err) == PL_ENOMEM &&
              strstr(err.msg, "r.lua: out of memory (address space limit 4096 MiB)"),
          "child out of memory: %s", err.msg);
    CHECK(pl_child_run(&lim, "r.lua", ch_segv, NULL, &out, &n, &err) == PL_EIO &&
              strcmp(err.msg, "r.lua: killed by signal 11 (Segmentation fault)") == 0,
          "child SIGSEGV: %s", err.msg);
    CHECK(pl_child_run(&lim, "r.lua", ch_exit3, NULL, &out, &n, &err) == PL_EIO &&
              strcmp(err.msg, "r.lua: exited with status 3") == 0,
          "child exit 3: %s", err.msg);

    pl_lua_limits fast = lim;
    fast.wall_seconds = 0.5;
    double t0 = now_s();
    CHECK(pl_child_run(&fast, "r.lua", ch_sleep, NULL, &out, &n, &err) == PL_ERANGE &&
              strcmp(err.msg, "r.lua: wall-clock limit of 0.5 s exceeded") == 0,
          "child past the deadline: %s", err.msg);
    double dt = now_s() - t0;
    CHECK(dt >= 0.45 && dt < 3, "deadline kill took %.2f s", dt);
    t0 = now_s();
    CHECK(pl_child_run(&fast, "r.lua", ch_closed_sleep, NULL, &out, &n, &err) == PL_ERANGE &&
              strstr(err.msg, "wall-clock limit of 0.5 s exceeded"),
          "child that closed its pipe and slept: %s", err.msg);
    CHECK(now_s() - t0 < 3, "closed-pipe child killed in time");

    pl_lua_limits cpu = lim;
    cpu.cpu_seconds = 1;
    cpu.wall_seconds = 8;
    CHECK(pl_child_run(&cpu, "spin", ch_spin, NULL, &out, &n, &err) == PL_ERANGE &&
              strcmp(err.msg, "spin: CPU time limit of 1 s exceeded") == 0,
          "CPU limit: %s", err.msg);

    CHECK(pl_child_run(&lim, "big", ch_big, NULL, &out, &n, &err) == 0 && out && n == (size_t)1 << 20,
          "1 MiB result: %zu bytes, %s", n, err.msg);
    int same = out != NULL;
    for (size_t i = 0; same && i < n; i++) same = out[i] == (char)('a' + i % 26);
    CHECK(same && out && out[n] == '\0', "1 MiB result content");
    free(out);
    out = NULL;
    CHECK(pl_child_run(&lim, "big", ch_big, NULL, NULL, NULL, &err) == 0, "1 MiB result dropped: %s", err.msg);

    /* Lua in the child: a pattern bomb never returns to the VM. */
    lua_job bomb = {"return string.find(('a'):rep(5000), '.-.-.-.-.-.-.-.-b')", (int64_t)64 << 20};
    pl_lua_limits pb = lim;
    pb.cpu_seconds = 1;
    pb.wall_seconds = 3;
    t0 = now_s();
    int rc = pl_child_run(&pb, "bomb.lua", ch_lua, &bomb, &out, &n, &err);
    CHECK(rc == PL_ERANGE && (strcmp(err.msg, "bomb.lua: CPU time limit of 1 s exceeded") == 0 ||
                              strcmp(err.msg, "bomb.lua: wall-clock limit of 3 s exceeded") == 0),
          "pattern bomb: %d %s", rc, err.msg);
    CHECK(now_s() - t0 < 5, "pattern bomb stopped in %.1f s", now_s() - t0);
    lua_job mem = {"local t = {} while true do t[#t + 1] = ('x'):rep(1000) .. #t end", (int64_t)32 << 20};
    rc = pl_child_run(&lim, "bomb.lua", ch_lua, &mem, &out, &n, &err);
    CHECK(rc == PL_ERANGE && strncmp(err.msg, "bomb.lua:1: memory limit of 32 MiB exceeded", 43) == 0,
          "memory bomb in the child: %d %s", rc, err.msg);
    lua_job good = {"return ('ab'):rep(3)", (int64_t)32 << 20};
    CHECK(pl_child_run(&lim, "good.lua", ch_lua, &good, &out, &n, &err) == 0 && out && strcmp(out, "ababab") == 0,
          "Lua result from the child: %s", err.msg);
    free(out);
    out = NULL;

    test_relay(&lim);

    CHECK(count_fds() == fds0, "fd count %d -> %d", fds0, count_fds());
    errno = 0;
    CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD, "no child left behind");
}

/* ------------------------------------------------------------ main */

static int outside_untouched(time_t mtime0) {
    char path[400];
    snprintf(path, sizeof path, "%s/file.txt", g_outside);
    FILE *f = fopen(path, "rb");
    char got[64] = {0};
    if (f) {
        size_t k = fread(got, 1, sizeof got - 1, f);
        got[k] = 0;
        fclose(f);
    }
    struct stat st;
    int ok = f && strcmp(got, "original\n") == 0 && stat(path, &st) == 0 && st.st_mtime == mtime0;
    DIR *d = opendir(g_outside);
    int entries = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) entries++;
    if (d) closedir(d);
    return ok && entries == 1;
}

int main(void) {
    snprintf(g_root, sizeof g_root, "/tmp/pl_sandbox_XXXXXX");
    REQUIRE(mkdtemp(g_root) != NULL, "mkdtemp: %s", strerror(errno));
    char *rr = realpath(g_root, NULL);
    REQUIRE(rr != NULL, "realpath");
    snprintf(g_root, sizeof g_root, "%s", rr);
    free(rr);
    snprintf(g_recipe, sizeof g_recipe, "%s/recipe", g_root);
    snprintf(g_run, sizeof g_run, "%s/run", g_root);
    snprintf(g_run2, sizeof g_run2, "%s/run2", g_root);
    snprintf(g_outside, sizeof g_outside, "%s/outside", g_root);
    mkdir(g_recipe, 0755);
    mkdir(g_run, 0755);
    mkdir(g_run2, 0755);
    mkdir(g_outside, 0755);
    char p[700], t[700];
    snprintf(p, sizeof p, "%s/file.txt", g_outside);
    write_file(p, "original\n");
    struct stat st0;
    REQUIRE(stat(p, &st0) == 0, "outside file");
    snprintf(p, sizeof p, "%s/data.txt", g_recipe);
    write_file(p, "data\n");
    snprintf(p, sizeof p, "%s/old.txt", g_run);
    write_file(p, "old\n");
    snprintf(p, sizeof p, "%s/f.txt", g_run2);
    write_file(p, "run2\n");
    snprintf(p, sizeof p, "%s/sub", g_run);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/link", g_run);
    snprintf(t, sizeof t, "%s/file.txt", g_outside);
    REQUIRE(symlink(t, p) == 0, "symlink");
    snprintf(p, sizeof p, "%s/dlink", g_run);
    snprintf(t, sizeof t, "%s/new.txt", g_outside);
    REQUIRE(symlink(t, p) == 0, "symlink");
    snprintf(p, sizeof p, "%s/dirlink", g_run);
    REQUIRE(symlink(g_outside, p) == 0, "symlink");
    snprintf(p, sizeof p, "%s/inlink", g_run);
    REQUIRE(symlink("old.txt", p) == 0, "symlink");

    test_limits();

    pl_lua_limits lim;
    pl_lua_limits_default(&lim);
    lim.mem_bytes = (int64_t)128 << 20;
    lim.instructions = 2000000;
    pl_sandbox *sb = NULL;
    pl_err err;
    REQUIRE(pl_sandbox_new(&sb, &lim, g_recipe, g_run, &err) == 0, "sandbox: %s", err.msg);
    CHECK(strcmp(pl_sandbox_recipe_dir(sb), g_recipe) == 0 && strcmp(pl_sandbox_run_dir(sb), g_run) == 0,
          "sandbox dirs");
    test_basics(sb);
    test_hostile(sb);
    test_paths(sb);
    test_loadfile(sb);
    pl_sandbox_free(sb);
    test_memory(&lim);
    test_child();

    CHECK(outside_untouched(st0.st_mtime), "outside/ is unchanged: one file, same bytes, same mtime");
    snprintf(p, sizeof p, "%s/new.txt", g_run);
    CHECK(access(p, F_OK) != 0, "resolve created no file");
    nftw(g_root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return check_summary("test_sandbox");
}
