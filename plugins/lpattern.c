/* lpattern.c: Lua 5.4 string patterns with charged matching work (lpattern.h).
 *
 * A backtracking matcher over the pattern language of the Lua manual: single
 * character classes (., %a %c %d %g %l %p %s %u %w %x and their complements,
 * %<punct>, [sets] with ranges and ^), repetitions * + - ?, anchors ^ and $,
 * captures ( ) and position captures (), back-references %1-%9, %bxy and
 * %f[set]. Limits as Lua's: 32 captures, a recursion depth of 200 ("pattern
 * too complex"). Steps are counted locally and charged every STEP_BATCH, and
 * once more when a call ends. */
#include "lpattern.h"

#include <ctype.h>
#include <string.h>

#include <lauxlib.h>

#define MAX_CAPTURES 32
#define CAP_OPEN (-1)
#define CAP_POSITION (-2)
#define MAX_DEPTH 200
#define STEP_BATCH 4096
#define ESC '%'
#define SPECIALS "^$*+?.([%-"

typedef struct capture {
    const char *init;
    ptrdiff_t len;
} capture;

typedef struct mstate {
    const char *src, *src_end, *pat_end;
    lua_State *L;
    int depth;    /* recursion left */
    int level;    /* captures open or closed */
    capture cap[MAX_CAPTURES];
    int64_t steps; /* not yet charged */
    pl_lpattern_charge_fn charge;
} mstate;

static inline void step(mstate *ms, int64_t n) {
    ms->steps += n;
    if (ms->steps >= STEP_BATCH) {
        int64_t s = ms->steps;
        ms->steps = 0;
        ms->charge(ms->L, s);
    }
}

static void settle(mstate *ms) {
    if (ms->steps > 0) {
        int64_t s = ms->steps;
        ms->steps = 0;
        ms->charge(ms->L, s);
    }
}

/* ------------------------------------------------------------ classes */

static int class_matches(int c, int cl) {
    int r;
    switch (tolower(cl)) {
    case 'a': r = isalpha(c); break;
    case 'c': r = iscntrl(c); break;
    case 'd': r = isdigit(c); break;
    case 'g': r = isgraph(c); break;
    case 'l': r = islower(c); break;
    case 'p': r = ispunct(c); break;
    case 's': r = isspace(c); break;
    case 'u': r = isupper(c); break;
    case 'w': r = isalnum(c); break;
    case 'x': r = isxdigit(c); break;
    default: return cl == c;
    }
    if (isupper(cl)) r = !r;
    return r != 0;
}

/* p at '[', last at the closing ']'. */
static int set_matches(int c, const char *p, const char *last) {
    int yes = 1;
    if (p[1] == '^') {
        yes = 0;
        p++;
    }
    while (++p < last) {
        if (*p == ESC) {
            p++;
            if (class_matches(c, (unsigned char)*p)) return yes;
        } else if (p[1] == '-' && p + 2 < last) {
            p += 2;
            if ((unsigned char)p[-2] <= c && c <= (unsigned char)*p) return yes;
        } else if ((unsigned char)*p == c) {
            return yes;
        }
    }
    return !yes;
}

/* The end of the single-character class starting at p. */
static const char *class_end(mstate *ms, const char *p) {
    char c = *p++;
    if (c == ESC) {
        if (p >= ms->pat_end) luaL_error(ms->L, "malformed pattern (ends with '%%')");
        return p + 1;
    }
    if (c == '[') {
        if (*p == '^') p++;
        do { /* the first character of a set is never its end, so "[]]" holds ']' */
            if (p >= ms->pat_end) luaL_error(ms->L, "malformed pattern (missing ']')");
            if (*(p++) == ESC && p < ms->pat_end) p++;
        } while (*p != ']');
        return p + 1;
    }
    return p;
}

static int single(mstate *ms, const char *s, const char *p, const char *ep) {
    if (s >= ms->src_end) return 0;
    int c = (unsigned char)*s;
    switch (*p) {
    case '.': return 1;
    case ESC: return class_matches(c, (unsigned char)p[1]);
    case '[': return set_matches(c, p, ep - 1);
    default: return (unsigned char)*p == c;
    }
}

/* ------------------------------------------------------------ matching */

static const char *match(mstate *ms, const char *s, const char *p);

static const char *balance(mstate *ms, const char *s, const char *p) {
    if (p + 1 >= ms->pat_end) luaL_error(ms->L, "malformed pattern (missing arguments to '%%b')");
    if (s >= ms->src_end || *s != *p) return NULL;
    int open = *p, close = p[1], depth = 1;
    while (++s < ms->src_end) {
        step(ms, 1);
        if (*s == close) {
            if (--depth == 0) return s + 1;
        } else if (*s == open) {
            depth++;
        }
    }
    return NULL;
}

static const char *greedy(mstate *ms, const char *s, const char *p, const char *ep) {
    ptrdiff_t i = 0;
    while (single(ms, s + i, p, ep)) {
        i++;
        step(ms, 1);
    }
    for (; i >= 0; i--) {
        const char *r = match(ms, s + i, ep + 1);
        if (r) return r;
    }
    return NULL;
}

static const char *lazy(mstate *ms, const char *s, const char *p, const char *ep) {
    for (;;) {
        const char *r = match(ms, s, ep + 1);
        if (r) return r;
        if (!single(ms, s, p, ep)) return NULL;
        s++;
        step(ms, 1);
    }
}

static const char *open_capture(mstate *ms, const char *s, const char *p, ptrdiff_t what) {
    if (ms->level >= MAX_CAPTURES) luaL_error(ms->L, "too many captures");
    ms->cap[ms->level].init = s;
    ms->cap[ms->level].len = what;
    ms->level++;
    const char *r = match(ms, s, p);
    if (!r) ms->level--;
    return r;
}

static const char *close_capture(mstate *ms, const char *s, const char *p) {
    int l = ms->level - 1;
    while (l >= 0 && ms->cap[l].len != CAP_OPEN) l--;
    if (l < 0) luaL_error(ms->L, "invalid pattern capture");
    ms->cap[l].len = s - ms->cap[l].init;
    const char *r = match(ms, s, p);
    if (!r) ms->cap[l].len = CAP_OPEN;
    return r;
}

static int capture_index(mstate *ms, int c) {
    int l = c - '1';
    if (l < 0 || l >= ms->level || ms->cap[l].len == CAP_OPEN)
        return luaL_error(ms->L, "invalid capture index %%%d", l + 1);
    return l;
}

static const char *backref(mstate *ms, const char *s, int c) {
    int l = capture_index(ms, c);
    size_t len = (size_t)ms->cap[l].len; /* a position capture (-2) never matches */
    step(ms, (int64_t)(len < 1u << 20 ? len : 1u << 20) / 16 + 1);
    if ((size_t)(ms->src_end - s) >= len && memcmp(ms->cap[l].init, s, len) == 0) return s + len;
    return NULL;
}

static const char *match(mstate *ms, const char *s, const char *p) {
    if (ms->depth-- == 0) luaL_error(ms->L, "pattern too complex");
    step(ms, 1);
    for (;;) {
        if (p == ms->pat_end) break;
        const char *ep;
        switch (*p) {
        case '(':
            s = (p + 1 < ms->pat_end && p[1] == ')') ? open_capture(ms, s, p + 2, CAP_POSITION)
                                                       : open_capture(ms, s, p + 1, CAP_OPEN);
            goto done;
        case ')':
            s = close_capture(ms, s, p + 1);
            goto done;
        case '$':
            if (p + 1 != ms->pat_end) goto plain;
            if (s != ms->src_end) s = NULL;
            goto done;
        case ESC:
            if (p + 1 >= ms->pat_end) goto plain; /* class_end reports it */
            switch (p[1]) {
            case 'b':
                s = balance(ms, s, p + 2);
                if (!s) goto done;
                p += 4;
                continue;
            case 'f': {
                p += 2;
                if (p >= ms->pat_end || *p != '[') luaL_error(ms->L, "missing '[' after '%%f' in pattern");
                ep = class_end(ms, p);
                int prev = s == ms->src ? 0 : (unsigned char)s[-1];
                int cur = s < ms->src_end ? (unsigned char)*s : 0;
                if (!set_matches(prev, p, ep - 1) && set_matches(cur, p, ep - 1)) {
                    p = ep;
                    continue;
                }
                s = NULL;
                goto done;
            }
            case '0': case '1': case '2': case '3': case '4':
            case '5': case '6': case '7': case '8': case '9':
                s = backref(ms, s, (unsigned char)p[1]);
                if (!s) goto done;
                p += 2;
                continue;
            default:
                goto plain;
            }
        default:
        plain:
            ep = class_end(ms, p);
            if (!single(ms, s, p, ep)) {
                if (ep < ms->pat_end && (*ep == '*' || *ep == '?' || *ep == '-')) {
                    p = ep + 1; /* zero repetitions are fine */
                    continue;
                }
                s = NULL;
                goto done;
            }
            if (ep < ms->pat_end) {
                switch (*ep) {
                case '?': {
                    const char *r = match(ms, s + 1, ep + 1);
                    if (r) {
                        s = r;
                        goto done;
                    }
                    p = ep + 1;
                    continue;
                }
                case '+': s = greedy(ms, s + 1, p, ep); goto done;
                case '*': s = greedy(ms, s, p, ep); goto done;
                case '-': s = lazy(ms, s, p, ep); goto done;
                default: break;
                }
            }
            s++;
            p = ep;
            continue;
        }
    }
done:
    ms->depth++;
    return s;
}

/* ------------------------------------------------------------ captures out */

static void push_capture(mstate *ms, int i, const char *s, const char *e) {
    if (i >= ms->level) {
        if (i != 0) luaL_error(ms->L, "invalid capture index %%%d", i + 1);
        lua_pushlstring(ms->L, s, (size_t)(e - s)); /* the whole match */
        return;
    }
    ptrdiff_t l = ms->cap[i].len;
    if (l == CAP_OPEN) luaL_error(ms->L, "unfinished capture");
    if (l == CAP_POSITION) lua_pushinteger(ms->L, (ms->cap[i].init - ms->src) + 1);
    else lua_pushlstring(ms->L, ms->cap[i].init, (size_t)l);
}

/* Pushes the captures (the whole match when there are none and s is set). */
static int push_captures(mstate *ms, const char *s, const char *e) {
    int n = (ms->level == 0 && s) ? 1 : ms->level;
    luaL_checkstack(ms->L, n, "too many captures");
    for (int i = 0; i < n; i++) push_capture(ms, i, s, e);
    return n;
}

static void ms_init(mstate *ms, lua_State *L, const char *s, size_t ls, const char *p, size_t lp,
                    pl_lpattern_charge_fn charge) {
    ms->L = L;
    ms->src = s;
    ms->src_end = s + ls;
    ms->pat_end = p + lp;
    ms->steps = 0;
    ms->charge = charge;
}

static void ms_reset(mstate *ms) {
    ms->level = 0;
    ms->depth = MAX_DEPTH;
}

/* ------------------------------------------------------------ the functions */

static pl_lpattern_charge_fn charge_of(lua_State *L) {
    pl_lpattern_charge_fn f;
    memcpy(&f, lua_touserdata(L, lua_upvalueindex(1)), sizeof f);
    return f;
}

/* Lua 5.4's translation of a relative initial position to 1..len+1 (or more). */
static size_t start_pos(lua_Integer pos, size_t len) {
    if (pos > 0) return (size_t)pos;
    if (pos == 0) return 1;
    if (pos < -(lua_Integer)len) return 1;
    return len + (size_t)pos + 1;
}

static int has_specials(const char *p, size_t lp) {
    size_t upto = 0;
    do {
        if (strpbrk(p + upto, SPECIALS)) return 1;
        upto += strlen(p + upto) + 1; /* past an embedded zero */
    } while (upto <= lp);
    return 0;
}

static const char *find_plain(mstate *ms, const char *s, size_t ls, const char *p, size_t lp) {
    if (lp == 0) return s;
    if (lp > ls) return NULL;
    const char *end = s + (ls - lp) + 1;
    while (s < end) {
        const char *hit = memchr(s, *p, (size_t)(end - s));
        if (!hit) {
            step(ms, (int64_t)(end - s) / 16 + 1);
            return NULL;
        }
        step(ms, (int64_t)(hit - s) / 16 + (int64_t)lp / 16 + 1);
        if (memcmp(hit + 1, p + 1, lp - 1) == 0) return hit;
        s = hit + 1;
    }
    return NULL;
}

static int find_or_match(lua_State *L, int find) {
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_pos(luaL_optinteger(L, 3, 1), ls);
    if (init > ls + 1) {
        luaL_pushfail(L);
        return 1;
    }
    mstate ms;
    ms_init(&ms, L, s, ls, p, lp, charge_of(L));
    if (find && (lua_toboolean(L, 4) || !has_specials(p, lp))) {
        const char *hit = find_plain(&ms, s + init - 1, ls - init + 1, p, lp);
        settle(&ms);
        if (!hit) {
            luaL_pushfail(L);
            return 1;
        }
        lua_pushinteger(L, (hit - s) + 1);
        lua_pushinteger(L, (lua_Integer)((hit - s) + lp));
        return 2;
    }
    const char *s1 = s + init - 1;
    int anchor = *p == '^';
    if (anchor) {
        p++;
        lp--;
        ms.pat_end = p + lp;
    }
    do {
        ms_reset(&ms);
        const char *e = match(&ms, s1, p);
        if (e) {
            settle(&ms);
            if (find) {
                lua_pushinteger(L, (s1 - s) + 1);
                lua_pushinteger(L, e - s);
                return push_captures(&ms, NULL, NULL) + 2;
            }
            return push_captures(&ms, s1, e);
        }
    } while (s1++ < ms.src_end && !anchor);
    settle(&ms);
    luaL_pushfail(L);
    return 1;
}

static int l_find(lua_State *L) { return find_or_match(L, 1); }
static int l_match(lua_State *L) { return find_or_match(L, 0); }

/* gmatch: the iterator keeps the subject and pattern (upvalues 2 and 3, so
 * they stay alive) and its position and last match in a userdata (4). */
typedef struct gstate {
    size_t pos;       /* next start, 0-based */
    ptrdiff_t last;   /* end of the last match, or -1 */
} gstate;

static int gmatch_next(lua_State *L) {
    size_t ls, lp;
    const char *s = lua_tolstring(L, lua_upvalueindex(2), &ls);
    const char *p = lua_tolstring(L, lua_upvalueindex(3), &lp);
    gstate *g = lua_touserdata(L, lua_upvalueindex(4));
    mstate ms;
    ms_init(&ms, L, s, ls, p, lp, charge_of(L));
    for (const char *src = s + g->pos; src <= ms.src_end; src++) {
        ms_reset(&ms);
        const char *e = match(&ms, src, p);
        if (e && (g->last < 0 || e != s + g->last)) {
            g->pos = (size_t)(e - s);
            g->last = e - s;
            settle(&ms);
            return push_captures(&ms, src, e);
        }
    }
    g->pos = ls + 1;
    settle(&ms);
    return 0;
}

static int l_gmatch(lua_State *L) {
    size_t ls;
    luaL_checklstring(L, 1, &ls);
    luaL_checkstring(L, 2);
    size_t init = start_pos(luaL_optinteger(L, 3, 1), ls) - 1; /* 0-based */
    if (init > ls) init = ls + 1; /* past the end: no match at all, not even an empty one */
    lua_settop(L, 2);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1); /* charge, s, p */
    gstate *g = lua_newuserdatauv(L, sizeof *g, 0);
    g->pos = init;
    g->last = -1;
    lua_pushcclosure(L, gmatch_next, 4);
    return 1;
}

/* gsub's replacement string: %0-%9 and %%. */
static void add_string(mstate *ms, luaL_Buffer *b, const char *s, const char *e, int idx) {
    size_t l;
    const char *r = lua_tolstring(ms->L, idx, &l);
    const char *q;
    while ((q = memchr(r, ESC, l)) != NULL) {
        luaL_addlstring(b, r, (size_t)(q - r));
        q++; /* the character after '%' (the string's terminating zero at its end) */
        if (*q == ESC) {
            luaL_addchar(b, *q);
        } else if (isdigit((unsigned char)*q)) {
            if (*q == '0') {
                luaL_addlstring(b, s, (size_t)(e - s));
            } else {
                push_capture(ms, *q - '1', s, e);
                luaL_tolstring(ms->L, -1, NULL);
                lua_remove(ms->L, -2);
                luaL_addvalue(b);
            }
        } else {
            luaL_error(ms->L, "invalid use of '%c' in replacement string", ESC);
        }
        l -= (size_t)(q + 1 - r);
        r = q + 1;
    }
    luaL_addlstring(b, r, l);
}

/* Returns 1 when the match was replaced, 0 when it was kept. */
static int add_value(mstate *ms, luaL_Buffer *b, const char *s, const char *e, int tr) {
    lua_State *L = ms->L;
    if (tr == LUA_TFUNCTION) {
        lua_pushvalue(L, 3);
        int n = push_captures(ms, s, e);
        lua_call(L, n, 1);
    } else if (tr == LUA_TTABLE) {
        push_capture(ms, 0, s, e);
        lua_gettable(L, 3);
    } else {
        add_string(ms, b, s, e, 3);
        return 1;
    }
    if (!lua_toboolean(L, -1)) {
        lua_pop(L, 1);
        luaL_addlstring(b, s, (size_t)(e - s));
        return 0;
    }
    if (!lua_isstring(L, -1)) return luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    luaL_addvalue(b);
    return 1;
}

static int l_gsub(lua_State *L) {
    size_t ls, lp;
    const char *src = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    const char *last = NULL;
    int tr = lua_type(L, 3);
    lua_Integer max_n = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
    luaL_argexpected(L, tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION || tr == LUA_TTABLE, 3,
                     "string/function/table");
    int anchor = *p == '^';
    if (anchor) {
        p++;
        lp--;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    mstate ms;
    ms_init(&ms, L, src, ls, p, lp, charge_of(L));
    lua_Integer n = 0;
    int changed = 0;
    while (n < max_n) {
        ms_reset(&ms);
        const char *e = match(&ms, src, p);
        if (e && e != last) {
            n++;
            changed = add_value(&ms, &b, src, e, tr) | changed;
            src = last = e;
        } else if (src < ms.src_end) {
            luaL_addchar(&b, *src++);
        } else {
            break;
        }
        if (anchor) break;
    }
    settle(&ms);
    if (!changed) {
        lua_pushvalue(L, 1);
    } else {
        luaL_addlstring(&b, src, (size_t)(ms.src_end - src));
        luaL_pushresult(&b);
    }
    lua_pushinteger(L, n);
    return 2;
}

void pl_lpattern_install(lua_State *L, int idx, pl_lpattern_charge_fn charge) {
    static const luaL_Reg fns[] = {{"find", l_find}, {"match", l_match}, {"gmatch", l_gmatch}, {"gsub", l_gsub}, {NULL, NULL}};
    idx = lua_absindex(L, idx);
    for (const luaL_Reg *r = fns; r->name; r++) {
        pl_lpattern_charge_fn *box = lua_newuserdatauv(L, sizeof charge, 0);
        memcpy(box, &charge, sizeof charge);
        lua_pushcclosure(L, r->func, 1);
        lua_setfield(L, idx, r->name);
    }
}
