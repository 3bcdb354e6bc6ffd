/* test_lpattern.c: plugins/lpattern.c against Lua 5.4's own string library.
 *
 * Two Lua states: one with the stock string library, one with find, match,
 * gmatch and gsub replaced by lpattern's. Random patterns (classes, sets,
 * ranges, repetitions, anchors, captures, position captures, back-references,
 * %b, %f, and malformed ones) and random subjects go through the same Lua
 * function in both; every result and every error message must be equal.
 * Then the budget: a backtracking pattern is stopped by the charge function
 * after the steps it was allowed, and the sandbox (pl_sandbox) reports it as
 * its instruction limit within a second. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "../plugins/lpattern.h"
#include "../plugins/sandbox.h"

static int64_t charged, charge_cap = INT64_MAX;

static void count_charge(lua_State *L, int64_t steps) {
    charged += steps;
    if (charged > charge_cap) luaL_error(L, "budget exceeded");
}

static const char harness[] =
    "local find, match, gmatch, gsub = string.find, string.match, string.gmatch, string.gsub\n"
    "local function rec(out, ok, ...)\n"
    "  local t = { tostring(ok) }\n"
    "  for i = 1, select('#', ...) do t[#t + 1] = tostring((select(i, ...))) end\n"
    "  out[#out + 1] = table.concat(t, ',')\n"
    "end\n"
    "function T(s, p, init)\n"
    "  local out = {}\n"
    "  rec(out, pcall(find, s, p))\n"
    "  rec(out, pcall(find, s, p, init))\n"
    "  rec(out, pcall(find, s, p, init, true))\n"
    "  rec(out, pcall(match, s, p, init))\n"
    "  rec(out, pcall(gsub, s, p, '<%0>'))\n"
    "  rec(out, pcall(gsub, s, p, '[%1%%]', 2))\n"
    "  rec(out, pcall(gsub, s, p, function(...) return select('#', ...) .. ':' .. tostring((...)) end))\n"
    "  rec(out, pcall(gsub, s, p, { a = 'A', [1] = 'one' }))\n"
    "  rec(out, pcall(function()\n"
    "    local r = {}\n"
    "    for a, b in gmatch(s, p, init) do\n"
    "      r[#r + 1] = tostring(a) .. '/' .. tostring(b)\n"
    "      if #r > 40 then break end\n"
    "    end\n"
    "    return table.concat(r, ';')\n"
    "  end))\n"
    "  return table.concat(out, '|')\n"
    "end\n";

static uint64_t rs = 88172645463325252ull;
static unsigned rnd(unsigned n) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (unsigned)(rs % n);
}

static void gen_pattern(char *buf, size_t cap) {
    static const char *atoms[] = {"a", "b", "c", ".", "%a", "%d", "%s", "%w", "%A", "%p", "%.", "%%", "[ab]",
                                  "[^a]", "[a-c]", "[%d]", "[]]", "[^%s]", "x", " ", "1", "(", ")"};
    static const char *specials[] = {"(", ")", "()", "%1", "%2", "%b()", "%f[%w]", "%f[%s]", "$", "^", "%0",
                                     "%", "[a", "%b(", "%f", "[%"};
    size_t n = 0;
    buf[0] = 0;
    if (rnd(4) == 0) n += (size_t)snprintf(buf + n, cap - n, "^");
    int items = 1 + (int)rnd(6);
    for (int i = 0; i < items && n + 12 < cap; i++) {
        const char *a = rnd(5) == 0 ? specials[rnd(sizeof specials / sizeof *specials)]
                                    : atoms[rnd(sizeof atoms / sizeof *atoms)];
        n += (size_t)snprintf(buf + n, cap - n, "%s", a);
        if (rnd(3) == 0) n += (size_t)snprintf(buf + n, cap - n, "%c", "*+-?"[rnd(4)]);
    }
    if (rnd(6) == 0 && n + 2 < cap) n += (size_t)snprintf(buf + n, cap - n, "$");
}

static void gen_subject(char *buf, size_t cap) {
    static const char alphabet[] = "abc abc1(2)x.%]";
    size_t len = rnd(14);
    if (len >= cap) len = cap - 1;
    for (size_t i = 0; i < len; i++) buf[i] = alphabet[rnd(sizeof alphabet - 1)];
    buf[len] = 0;
}

static const char *run_case(lua_State *L, const char *s, const char *p, int init, char *out, size_t cap) {
    lua_getglobal(L, "T");
    lua_pushstring(L, s);
    lua_pushstring(L, p);
    lua_pushinteger(L, init);
    if (lua_pcall(L, 3, 1, 0) != LUA_OK) {
        snprintf(out, cap, "harness error: %s", lua_tostring(L, -1));
    } else {
        snprintf(out, cap, "%s", lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    return out;
}

int main(void) {
    lua_State *stock = luaL_newstate(), *ours = luaL_newstate();
    REQUIRE(stock && ours, "lua states");
    luaL_openlibs(stock);
    luaL_openlibs(ours);
    lua_getglobal(ours, "string");
    pl_lpattern_install(ours, -1, count_charge);
    lua_pop(ours, 1);
    REQUIRE(luaL_dostring(stock, harness) == LUA_OK && luaL_dostring(ours, harness) == LUA_OK, "harness");

    /* 1. the same answers as Lua's string library */
    char p[128], s[32], a[8192], b[8192];
    int cases = 0, differ = 0;
    /* POTLUCK_LPATTERN_CASES: more (make test runs 20000 under ASan; the random
     * patterns are the fuzz corpus's job beyond that) */
    const char *nc = getenv("POTLUCK_LPATTERN_CASES");
    const int n_cases = nc && atoi(nc) > 0 ? atoi(nc) : 20000;
    for (int i = 0; i < n_cases; i++) {
        gen_pattern(p, sizeof p);
        gen_subject(s, sizeof s);
        int init = (int)rnd(20) - 8;
        run_case(stock, s, p, init, a, sizeof a);
        run_case(ours, s, p, init, b, sizeof b);
        cases++;
        if (strcmp(a, b)) {
            if (differ++ < 5) fprintf(stderr, "FAIL differ: s='%s' p='%s' init=%d\n  lua:  %s\n  ours: %s\n", s, p, init, a, b);
        }
    }
    CHECK(differ == 0, "%d of %d random cases differ from Lua's string library", differ, cases);
    printf("note: %d random pattern cases, each through find (3 ways), match, gsub (4 ways) and gmatch: %d differ\n",
           cases, differ);
    /* hand-picked cases the generator rarely makes */
    static const char *fixed[][2] = {
        {"hello world from Lua", "(%w+) (%w+)"}, {"key = value", "(%w+)%s*=%s*(%w+)"}, {"THE (quick) fox", "%f[%a]%a+"},
        {"f(a(b)c)d", "%b()"}, {"abcabc", "(a)(b)(c)%1%2%3"}, {"  trim  ", "^%s*(.-)%s*$"}, {"", ""}, {"abc", ""},
        {"aaa", "a-"}, {"aaa", "a-$"}, {"x=1, y=2", "(%w+)=(%w+)"}, {"\0a\0b", "%z"}, {"a.b", "a.b"}, {"a+b", "a+b"},
        {"[x]", "[[]"}, {"abc", "[^%a]"}, {"2024-01-02", "(%d+)-(%d+)-(%d+)"}, {"abc", "()b()"}, {"aXb", "%u"},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        run_case(stock, fixed[i][0], fixed[i][1], 1, a, sizeof a);
        run_case(ours, fixed[i][0], fixed[i][1], 1, b, sizeof b);
        CHECK(!strcmp(a, b), "s='%s' p='%s':\n  lua:  %s\n  ours: %s", fixed[i][0], fixed[i][1], a, b);
    }

    /* 2. the budget stops a backtracking pattern */
    charged = 0;
    charge_cap = 10 * 1000 * 1000;
    clock_t t0 = clock();
    int rc = luaL_dostring(ours, "return string.find(string.rep('a', 40), string.rep('a?', 40) .. string.rep('a', 40))");
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    CHECK(rc != LUA_OK && strstr(lua_tostring(ours, -1), "budget exceeded"), "backtracking pattern not stopped: %s",
          rc == LUA_OK ? "returned" : lua_tostring(ours, -1));
    CHECK(secs < 5.0, "stopping took %.2f s", secs);
    printf("note: string.find(('a'):rep(40), ('a?'):rep(40) .. ('a'):rep(40)) stopped after %lld charged steps in %.2f s\n",
           (long long)charged, secs);
    lua_settop(ours, 0);
    /* a linear pattern on 1 MB costs steps in proportion to its length */
    charged = 0;
    charge_cap = INT64_MAX;
    rc = luaL_dostring(ours, "local s = string.rep('word ', 200000) local n = 0 for w in s:gmatch('%a+') do n = n + 1 end return n");
    CHECK(rc == LUA_OK && lua_tointeger(ours, -1) == 200000, "gmatch over 1 MB: %s", rc ? lua_tostring(ours, -1) : "wrong count");
    CHECK(charged > 1000000 && charged < 20000000, "1 MB gmatch charged %lld steps", (long long)charged);
    lua_settop(ours, 0);
    lua_close(stock);
    lua_close(ours);

    /* 3. in the sandbox: the instruction limit, in well under the CPU limit */
    pl_lua_limits lim;
    pl_lua_limits_default(&lim);
    lim.instructions = 20 * 1000 * 1000;
    pl_sandbox *sb = NULL;
    pl_err err = {0};
    REQUIRE(pl_sandbox_new(&sb, &lim, NULL, NULL, &err) == 0, "sandbox: %s", err.msg);
    lua_State *L = pl_sandbox_L(sb);
    t0 = clock();
    int lrc = luaL_loadstring(L, "return string.find(string.rep('a', 40), string.rep('a?', 40) .. string.rep('a', 40))");
    if (lrc == LUA_OK) lrc = pl_sandbox_pcall(sb, 0, 1, &err);
    secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    CHECK(lrc != 0 && strstr(err.msg, "instruction limit of 20000000 exceeded"), "sandbox: %s", lrc ? err.msg : "returned");
    CHECK(secs < 10.0, "sandbox stop took %.2f s", secs);
    printf("note: in the sandbox (20M instructions): %s after %.2f s\n", err.msg, secs);
    /* pcall cannot buy more time */
    pl_err_clear(&err);
    lrc = luaL_loadstring(L, "local ok = pcall(string.find, string.rep('a', 40), string.rep('a?', 40) .. string.rep('a', 40))"
                             " while true do end");
    if (lrc == LUA_OK) lrc = pl_sandbox_pcall(sb, 0, 0, &err);
    CHECK(lrc != 0 && strstr(err.msg, "instruction limit"), "pcall around the pattern: %s", lrc ? err.msg : "returned");
    /* s:find goes through the string metatable to the same functions */
    pl_err_clear(&err);
    lrc = luaL_loadstring(L, "return (('a'):rep(40)):find(('a?'):rep(40) .. ('a'):rep(40))");
    if (lrc == LUA_OK) lrc = pl_sandbox_pcall(sb, 0, 1, &err);
    CHECK(lrc != 0 && strstr(err.msg, "instruction limit"), "method call: %s", lrc ? err.msg : "returned");
    pl_sandbox_free(sb);
    return check_summary("test_lpattern");
}
