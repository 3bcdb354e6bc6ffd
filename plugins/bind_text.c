/* bind_text.c: Lua bindings of the C text filters (see bind_text.h and docs/plugins.md). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <lauxlib.h>
#include <lua.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../datasets/minhash.h"
#include "../datasets/ngram.h"
#include "../datasets/textqual.h"
#include "bind_text.h"
#include "gen_score.h"

#define MT_REGEX "potluck.regex"
#define MT_MINHASH "potluck.minhash_index"
#define MT_NGRAM "potluck.ngram_index"

/* Create a metatable named tname with methods as __index, gc as __gc and a
 * locked __metatable; leaves nothing on the stack. */
static void new_class(lua_State *L, const char *tname, const luaL_Reg *methods, lua_CFunction gc) {
    luaL_newmetatable(L, tname);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
}

/* A boxed C pointer: the userdata holds only the pointer, freed by __gc. */
static void **check_box(lua_State *L, int idx, const char *tname, const char *what) {
    void **b = luaL_checkudata(L, idx, tname);
    if (!*b) luaL_error(L, "%s: used after it was freed", what);
    return b;
}

/* ---------------------------------------------------------------- pl.text */

static void add_field(lua_State *L, luaL_Buffer *b, int tidx, const char *key, int *n) {
    lua_getfield(L, tidx, key);
    if (lua_type(L, -1) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        lua_pop(L, 1);
        if (*n) luaL_addchar(b, '\n');
        luaL_addlstring(b, s, len);
        (*n)++;
    } else {
        lua_pop(L, 1);
    }
}

/* pl.text(s): s.text; else message contents joined by "\n"; else
 * instruction, input, output, prompt, response joined by "\n"; else "". */
static int l_text_text(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "text");
    if (lua_type(L, -1) == LUA_TSTRING) return 1;
    lua_pop(L, 1);
    luaL_Buffer b;
    int n = 0;
    lua_getfield(L, 1, "messages");
    int midx = lua_gettop(L);
    luaL_buffinit(L, &b);
    if (lua_type(L, midx) == LUA_TTABLE) {
        lua_Integer len = luaL_len(L, midx);
        for (lua_Integer i = 1; i <= len; i++) {
            lua_geti(L, midx, i);
            if (lua_type(L, -1) == LUA_TTABLE) {
                int t = lua_gettop(L);
                lua_getfield(L, t, "content");
                if (lua_type(L, -1) == LUA_TSTRING) {
                    size_t l;
                    const char *s = lua_tolstring(L, -1, &l);
                    /* keep the buffer's own stack slot on top while adding */
                    lua_pushvalue(L, -1);
                    lua_remove(L, -2);
                    lua_remove(L, t);
                    if (n) luaL_addchar(&b, '\n');
                    luaL_addlstring(&b, s, l);
                    lua_pop(L, 1);
                    n++;
                    continue;
                }
                lua_pop(L, 2);
            } else {
                lua_pop(L, 1);
            }
        }
        if (n) {
            luaL_pushresult(&b);
            return 1;
        }
    }
    static const char *const fields[] = {"instruction", "input", "output", "prompt", "response"};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) add_field(L, &b, 1, fields[i], &n);
    luaL_pushresult(&b);
    return 1;
}

/* ---------------------------------------------------------------- pl.hash */

static int l_text_hash(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    int norm = lua_toboolean(L, 2);
    char hex[33];
    pl_err err = {0};
    if (pl_text_hash_hex(s, len, norm, hex, &err)) return luaL_error(L, "pl.hash: %s", err.msg);
    lua_pushstring(L, hex);
    return 1;
}

/* ---------------------------------------------------------------- pl.regex */

typedef struct regex_box {
    pcre2_code *code;
    pcre2_match_data *md;
    pcre2_match_context *mc;
} regex_box;

static void regex_free(regex_box *r) {
    if (!r) return;
    pcre2_match_data_free(r->md);
    pcre2_match_context_free(r->mc);
    pcre2_code_free(r->code);
    free(r);
}

static int l_regex_gc(lua_State *L) {
    void **b = luaL_checkudata(L, 1, MT_REGEX);
    regex_free(*b);
    *b = NULL;
    return 0;
}

static int l_text_regex(lua_State *L) {
    size_t plen;
    const char *pat = luaL_checklstring(L, 1, &plen);
    const char *flags = luaL_optstring(L, 2, "");
    uint32_t opts = 0;
    int bad = pl_regex_flags(flags, &opts);
    if (bad) return luaL_error(L, "pl.regex: unknown flag '%c' (expected any of i m s x u)", bad);
    void **box = lua_newuserdatauv(L, sizeof(void *), 0);
    *box = NULL;
    luaL_setmetatable(L, MT_REGEX);
    regex_box *r = calloc(1, sizeof *r);
    if (!r) return luaL_error(L, "pl.regex: out of memory");
    *box = r;
    int ec;
    PCRE2_SIZE eoff;
    r->code = pcre2_compile((PCRE2_SPTR)pat, plen, opts, &ec, &eoff, NULL);
    if (!r->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return luaL_error(L, "pl.regex: pattern \"%s\": %s at offset %d", pat, (const char *)msg, (int)eoff);
    }
    r->md = pcre2_match_data_create_from_pattern(r->code, NULL);
    r->mc = pcre2_match_context_create(NULL);
    if (!r->md || !r->mc) return luaL_error(L, "pl.regex: out of memory");
    pcre2_set_match_limit(r->mc, PL_REGEX_MATCH_LIMIT);
    pcre2_set_depth_limit(r->mc, PL_REGEX_DEPTH_LIMIT);
    pcre2_set_heap_limit(r->mc, PL_REGEX_HEAP_LIMIT_KIB);
    return 1;
}

/* re:find(text [, init]) -> start, end (1-based, inclusive, as string.find) or nil. */
static int l_regex_find(lua_State *L) {
    regex_box *r = *check_box(L, 1, MT_REGEX, "regex");
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    lua_Integer init = luaL_optinteger(L, 3, 1);
    if (init < 1) init = 1;
    if ((size_t)(init - 1) > len) {
        lua_pushnil(L);
        return 1;
    }
    int rc = pcre2_match(r->code, (PCRE2_SPTR)s, len, (PCRE2_SIZE)(init - 1), 0, r->md, r->mc);
    if (rc == PCRE2_ERROR_NOMATCH) {
        lua_pushnil(L);
        return 1;
    }
    if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        return luaL_error(L, "regex: %s (the pattern backtracks too much on this text; limits: %d matches, depth %d)",
                          (const char *)msg, (int)PL_REGEX_MATCH_LIMIT, (int)PL_REGEX_DEPTH_LIMIT);
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(r->md);
    lua_pushinteger(L, (lua_Integer)ov[0] + 1);
    lua_pushinteger(L, (lua_Integer)ov[1]);
    return 2;
}

/* re:test(text) -> boolean */
static int l_regex_test(lua_State *L) {
    int n = l_regex_find(L);
    lua_pushboolean(L, n == 2);
    return 1;
}

/* ---------------------------------------------------------------- minhash */

static int l_minhash_gc(lua_State *L) {
    void **b = luaL_checkudata(L, 1, MT_MINHASH);
    pl_minhash_free(*b);
    *b = NULL;
    return 0;
}

static int opt_int(lua_State *L, int t, const char *k, int def, const char *what) {
    lua_getfield(L, t, k);
    int v = def;
    if (!lua_isnil(L, -1)) {
        int ok;
        lua_Integer x = lua_tointegerx(L, -1, &ok);
        if (!ok || x < -2147483647 || x > 2147483647) luaL_error(L, "%s: %s: expected an integer", what, k);
        v = (int)x;
    }
    lua_pop(L, 1);
    return v;
}
static double opt_num(lua_State *L, int t, const char *k, double def, const char *what) {
    lua_getfield(L, t, k);
    double v = def;
    if (!lua_isnil(L, -1)) {
        int ok;
        v = lua_tonumberx(L, -1, &ok);
        if (!ok) luaL_error(L, "%s: %s: expected a number", what, k);
    }
    lua_pop(L, 1);
    return v;
}
static int opt_unit(lua_State *L, int t, const char *what) {
    lua_getfield(L, t, "unit");
    int u = PL_UNIT_WORD;
    if (!lua_isnil(L, -1)) {
        const char *s = lua_tostring(L, -1);
        if (s && strcmp(s, "word") == 0) u = PL_UNIT_WORD;
        else if (s && strcmp(s, "char") == 0) u = PL_UNIT_CHAR;
        else luaL_error(L, "%s: unit: expected \"word\" or \"char\"", what);
    }
    lua_pop(L, 1);
    return u;
}

/* Refuse keys an options table does not know (so typos do not pass silently). */
static void check_keys(lua_State *L, int t, const char *const *known, const char *what) {
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        int ok = 0;
        if (lua_type(L, -1) == LUA_TSTRING) {
            const char *k = lua_tostring(L, -1);
            for (int i = 0; known[i]; i++) ok |= strcmp(k, known[i]) == 0;
        }
        if (!ok) {
            lua_pushvalue(L, -1);
            const char *k = luaL_tolstring(L, -1, NULL);
            luaL_error(L, "%s: unknown option '%s'", what, k);
        }
    }
}

static int l_text_minhash_index(lua_State *L) {
    static const char *const known[] = {"threshold", "num_perm", "bands", "rows", "ngram", "unit", "seed", NULL};
    pl_minhash_opts o;
    pl_minhash_opts_default(&o);
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        check_keys(L, 1, known, "pl.minhash_index");
        o.threshold = opt_num(L, 1, "threshold", o.threshold, "pl.minhash_index");
        o.num_perm = opt_int(L, 1, "num_perm", o.num_perm, "pl.minhash_index");
        o.bands = opt_int(L, 1, "bands", 0, "pl.minhash_index");
        o.rows = opt_int(L, 1, "rows", 0, "pl.minhash_index");
        o.ngram = opt_int(L, 1, "ngram", o.ngram, "pl.minhash_index");
        o.unit = opt_unit(L, 1, "pl.minhash_index");
        lua_getfield(L, 1, "seed");
        if (!lua_isnil(L, -1)) o.seed = (uint64_t)luaL_checkinteger(L, -1);
        lua_pop(L, 1);
    }
    void **box = lua_newuserdatauv(L, sizeof(void *), 0);
    *box = NULL;
    luaL_setmetatable(L, MT_MINHASH);
    pl_err err = {0};
    pl_minhash *m;
    if (pl_minhash_new(&m, &o, &err)) return luaL_error(L, "pl.minhash_index: %s", err.msg);
    *box = m;
    return 1;
}

/* idx:check_add(text) -> nil (new, inserted) or the 1-based position (in
 * check_add calls) of the earlier near-duplicate, and its estimated Jaccard. */
static int l_minhash_check_add(lua_State *L) {
    pl_minhash *m = *check_box(L, 1, MT_MINHASH, "minhash_index");
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    int64_t dup;
    double j;
    pl_err err = {0};
    if (pl_minhash_check_add(m, s, len, &dup, &j, &err)) return luaL_error(L, "minhash_index: %s", err.msg);
    if (dup < 0) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushinteger(L, (lua_Integer)dup + 1);
    lua_pushnumber(L, j);
    return 2;
}

static int l_minhash_size(lua_State *L) {
    pl_minhash *m = *check_box(L, 1, MT_MINHASH, "minhash_index");
    lua_pushinteger(L, (lua_Integer)pl_minhash_size(m));
    return 1;
}

/* idx:params() -> num_perm, bands, rows */
static int l_minhash_params(lua_State *L) {
    pl_minhash *m = *check_box(L, 1, MT_MINHASH, "minhash_index");
    const pl_minhash_opts *o = pl_minhash_options(m);
    lua_pushinteger(L, o->num_perm);
    lua_pushinteger(L, o->bands);
    lua_pushinteger(L, o->rows);
    return 3;
}

/* ---------------------------------------------------------------- ngram */

static int l_ngram_gc(lua_State *L) {
    void **b = luaL_checkudata(L, 1, MT_NGRAM);
    pl_ngram_free(*b);
    *b = NULL;
    return 0;
}

static int l_text_ngram_index(lua_State *L) {
    static const char *const known[] = {"n", "unit", NULL};
    int n = 13, unit = PL_UNIT_WORD;
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        check_keys(L, 1, known, "pl.ngram_index");
        n = opt_int(L, 1, "n", n, "pl.ngram_index");
        unit = opt_unit(L, 1, "pl.ngram_index");
    }
    void **box = lua_newuserdatauv(L, sizeof(void *), 0);
    *box = NULL;
    luaL_setmetatable(L, MT_NGRAM);
    pl_err err = {0};
    pl_ngram_index *ix;
    if (pl_ngram_new(&ix, n, unit, &err)) return luaL_error(L, "pl.ngram_index: %s", err.msg);
    *box = ix;
    return 1;
}

/* Add every string value inside a parsed JSON value, each as its own text. */
static int ngram_add_json(pl_ngram_index *ix, const cJSON *v, size_t *added, int depth, pl_err *err) {
    if (depth > 64) return 0;
    if (cJSON_IsString(v) && v->valuestring) {
        size_t a;
        int rc = pl_ngram_add(ix, v->valuestring, strlen(v->valuestring), &a, err);
        *added += a;
        return rc;
    }
    for (const cJSON *c = v ? v->child : NULL; c; c = c->next) {
        int rc = ngram_add_json(ix, c, added, depth + 1, err);
        if (rc) return rc;
    }
    return 0;
}

/* ix:add(text [, format]) -> number of new grams. format "json": text is a
 * JSON value (e.g. a JSONL line) and each string inside it is added as its
 * own text (a line that does not parse is an error). */
static int l_ngram_add(lua_State *L) {
    pl_ngram_index *ix = *check_box(L, 1, MT_NGRAM, "ngram_index");
    size_t len, added = 0;
    const char *s = luaL_checklstring(L, 2, &len);
    const char *fmt = luaL_optstring(L, 3, "text");
    pl_err err = {0};
    int rc;
    if (strcmp(fmt, "json") == 0) {
        cJSON *j = cJSON_ParseWithLength(s, len);
        if (!j) return luaL_error(L, "ngram_index:add: the text is not valid JSON (near byte %d)",
                                  (int)(cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - s : 0));
        rc = ngram_add_json(ix, j, &added, 0, &err);
        cJSON_Delete(j);
    } else if (strcmp(fmt, "text") == 0) {
        rc = pl_ngram_add(ix, s, len, &added, &err);
    } else {
        return luaL_error(L, "ngram_index:add: format must be \"text\" or \"json\", got \"%s\"", fmt);
    }
    if (rc) return luaL_error(L, "ngram_index:add: %s", err.msg);
    lua_pushinteger(L, (lua_Integer)added);
    return 1;
}

/* ix:match(text) -> count of shared gram positions, first shared gram (or nil). */
static int l_ngram_match(lua_State *L) {
    pl_ngram_index *ix = *check_box(L, 1, MT_NGRAM, "ngram_index");
    size_t len, count;
    const char *s = luaL_checklstring(L, 2, &len);
    char *first;
    pl_err err = {0};
    if (pl_ngram_match(ix, s, len, &count, &first, &err)) return luaL_error(L, "ngram_index:match: %s", err.msg);
    lua_pushinteger(L, (lua_Integer)count);
    if (first) lua_pushstring(L, first);
    else lua_pushnil(L);
    free(first);
    return 2;
}

static int l_ngram_size(lua_State *L) {
    pl_ngram_index *ix = *check_box(L, 1, MT_NGRAM, "ngram_index");
    lua_pushinteger(L, (lua_Integer)pl_ngram_size(ix));
    return 1;
}

/* ---------------------------------------------------------------- quality */

static void set_num(lua_State *L, const char *k, double v) {
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}
static void set_int(lua_State *L, const char *k, int64_t v) {
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

static int l_text_quality(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    pl_gopher_stats st;
    pl_err err = {0};
    if (pl_gopher_stats_compute(s, len, &st, &err)) return luaL_error(L, "pl.quality: %s", err.msg);
    lua_createtable(L, 0, 24);
    set_int(L, "chars", st.n_chars);
    set_int(L, "words", st.n_words);
    set_int(L, "nonsymbol_words", st.n_nonsymbol_words);
    set_int(L, "lines", st.n_lines);
    set_int(L, "paragraphs", st.n_paragraphs);
    set_num(L, "mean_word_len", st.mean_word_len);
    set_num(L, "hash_ratio", st.hash_ratio);
    set_num(L, "ellipsis_ratio", st.ellipsis_ratio);
    set_num(L, "bullet_lines_ratio", st.bullet_lines_ratio);
    set_num(L, "ellipsis_lines_ratio", st.ellipsis_lines_ratio);
    set_num(L, "alpha_words_ratio", st.alpha_words_ratio);
    set_int(L, "stop_words", st.stop_words);
    set_num(L, "dup_line_frac", st.dup_line_frac);
    set_num(L, "dup_para_frac", st.dup_para_frac);
    set_num(L, "dup_line_char_frac", st.dup_line_char_frac);
    set_num(L, "dup_para_char_frac", st.dup_para_char_frac);
    char k[32];
    for (int n = 2; n <= 4; n++) {
        snprintf(k, sizeof k, "top_%d_gram_frac", n);
        set_num(L, k, st.top_ngram_frac[n - 2]);
    }
    for (int n = 5; n <= 10; n++) {
        snprintf(k, sizeof k, "dup_%d_gram_frac", n);
        set_num(L, k, st.dup_ngram_frac[n - 5]);
    }
    return 1;
}

/* pl.gopher(text [, opts]) -> keep, reason. opts: rules = "all" | "quality" |
 * "repetition", and any threshold of pl_gopher_opts by its field name
 * (top_ngram_frac and dup_ngram_frac as lists of 3 and 6 numbers). */
static int l_text_gopher(lua_State *L) {
    static const char *const known[] = {"rules", "min_words", "max_words", "min_mean_word_len", "max_mean_word_len",
                                        "max_symbol_word_ratio", "max_bullet_lines_ratio",
                                        "max_ellipsis_lines_ratio", "min_alpha_words_ratio", "min_stop_words",
                                        "dup_line_frac", "dup_para_frac", "dup_line_char_frac",
                                        "dup_para_char_frac", "top_ngram_frac", "dup_ngram_frac", NULL};
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    pl_gopher_opts o;
    pl_gopher_opts_default(&o);
    int which = 3;
    if (!lua_isnoneornil(L, 2)) {
        const char *w = "pl.gopher";
        luaL_checktype(L, 2, LUA_TTABLE);
        check_keys(L, 2, known, w);
        lua_getfield(L, 2, "rules");
        if (!lua_isnil(L, -1)) {
            const char *r = lua_tostring(L, -1);
            if (r && strcmp(r, "all") == 0) which = 3;
            else if (r && strcmp(r, "quality") == 0) which = 1;
            else if (r && strcmp(r, "repetition") == 0) which = 2;
            else return luaL_error(L, "pl.gopher: rules: expected \"all\", \"quality\" or \"repetition\"");
        }
        lua_pop(L, 1);
        o.min_words = (int64_t)opt_num(L, 2, "min_words", (double)o.min_words, w);
        o.max_words = (int64_t)opt_num(L, 2, "max_words", (double)o.max_words, w);
        o.min_mean_word_len = opt_num(L, 2, "min_mean_word_len", o.min_mean_word_len, w);
        o.max_mean_word_len = opt_num(L, 2, "max_mean_word_len", o.max_mean_word_len, w);
        o.max_symbol_word_ratio = opt_num(L, 2, "max_symbol_word_ratio", o.max_symbol_word_ratio, w);
        o.max_bullet_lines_ratio = opt_num(L, 2, "max_bullet_lines_ratio", o.max_bullet_lines_ratio, w);
        o.max_ellipsis_lines_ratio = opt_num(L, 2, "max_ellipsis_lines_ratio", o.max_ellipsis_lines_ratio, w);
        o.min_alpha_words_ratio = opt_num(L, 2, "min_alpha_words_ratio", o.min_alpha_words_ratio, w);
        o.min_stop_words = opt_int(L, 2, "min_stop_words", o.min_stop_words, w);
        o.dup_line_frac = opt_num(L, 2, "dup_line_frac", o.dup_line_frac, w);
        o.dup_para_frac = opt_num(L, 2, "dup_para_frac", o.dup_para_frac, w);
        o.dup_line_char_frac = opt_num(L, 2, "dup_line_char_frac", o.dup_line_char_frac, w);
        o.dup_para_char_frac = opt_num(L, 2, "dup_para_char_frac", o.dup_para_char_frac, w);
        static const struct {
            const char *k;
            int n;
        } lists[2] = {{"top_ngram_frac", 3}, {"dup_ngram_frac", 6}};
        for (int li = 0; li < 2; li++) {
            double *dst = li == 0 ? o.top_ngram_frac : o.dup_ngram_frac;
            lua_getfield(L, 2, lists[li].k);
            if (!lua_isnil(L, -1)) {
                if (!lua_istable(L, -1) || luaL_len(L, -1) != lists[li].n)
                    return luaL_error(L, "pl.gopher: %s: expected a list of %d numbers", lists[li].k, lists[li].n);
                for (int i = 0; i < lists[li].n; i++) {
                    lua_geti(L, -1, i + 1);
                    int ok;
                    dst[i] = lua_tonumberx(L, -1, &ok);
                    if (!ok) return luaL_error(L, "pl.gopher: %s[%d]: expected a number", lists[li].k, i + 1);
                    lua_pop(L, 1);
                }
            }
            lua_pop(L, 1);
        }
    }
    int keep;
    char reason[256];
    pl_err err = {0};
    if (pl_gopher_check(s, len, &o, which, &keep, reason, sizeof reason, &err))
        return luaL_error(L, "pl.gopher: %s", err.msg);
    lua_pushboolean(L, keep);
    if (keep) lua_pushnil(L);
    else lua_pushstring(L, reason);
    return 2;
}

/* ---------------------------------------------------------------- script, rouge */

static int l_text_script(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    pl_script_info si;
    pl_script_detect(s, len, &si);
    lua_pushstring(L, si.script);
    lua_pushnumber(L, si.share);
    lua_pushstring(L, si.lang);
    return 3;
}

static int l_text_rouge_l(lua_State *L) {
    size_t la, lb;
    const char *a = luaL_checklstring(L, 1, &la);
    const char *b = luaL_checklstring(L, 2, &lb);
    lua_pushnumber(L, pl_rouge_l(a, la, b, lb));
    return 1;
}

/* ---------------------------------------------------------------- install */

void pl_bind_text(lua_State *L, int module_idx) {
    module_idx = lua_absindex(L, module_idx);
    static const luaL_Reg regex_m[] = {{"find", l_regex_find}, {"test", l_regex_test}, {NULL, NULL}};
    static const luaL_Reg minhash_m[] = {
        {"check_add", l_minhash_check_add}, {"size", l_minhash_size}, {"params", l_minhash_params}, {NULL, NULL}};
    static const luaL_Reg ngram_m[] = {
        {"add", l_ngram_add}, {"match", l_ngram_match}, {"size", l_ngram_size}, {NULL, NULL}};
    new_class(L, MT_REGEX, regex_m, l_regex_gc);
    new_class(L, MT_MINHASH, minhash_m, l_minhash_gc);
    new_class(L, MT_NGRAM, ngram_m, l_ngram_gc);
    static const luaL_Reg fns[] = {
        {"text", l_text_text},       {"hash", l_text_hash},
        {"regex", l_text_regex},     {"minhash_index", l_text_minhash_index},
        {"ngram_index", l_text_ngram_index}, {"quality", l_text_quality},
        {"gopher", l_text_gopher},   {"script", l_text_script},
        {"rouge_l", l_text_rouge_l}, {NULL, NULL}};
    for (const luaL_Reg *f = fns; f->name; f++) {
        lua_pushcfunction(L, f->func);
        lua_setfield(L, module_idx, f->name);
    }
}
