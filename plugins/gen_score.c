/* gen_score.c: scorers of generative eval tasks and the LLM judge's reply
 * parser (gen_score.h), and their Lua binding for the task runner. */
#include <lauxlib.h>
#include <math.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "bind_text.h"
#include "gen_score.h"

/* ------------------------------------------------------------ normalization */

static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static int is_alnum(unsigned char c) { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* malloc'd normalized copy of s (NUL-terminated, length in *on); NULL: out of memory */
static char *normalize(const char *s, size_t n, const pl_norm *nm, size_t *on) {
    if (nm && nm->strip) {
        while (n && is_space((unsigned char)s[0])) { s++; n--; }
        while (n && is_space((unsigned char)s[n - 1])) n--;
    }
    /* a lowercased code point takes at most 4 bytes, as any UTF-8 one */
    char *o = malloc(n * 4 + 1);
    if (!o) return NULL;
    size_t k = 0;
    if (nm && nm->lowercase) {
        size_t i = 0;
        while (i < n) {
            utf8proc_int32_t cp;
            utf8proc_ssize_t l = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
            if (l <= 0) { o[k++] = s[i++]; continue; } /* invalid byte: kept as it is */
            k += (size_t)utf8proc_encode_char(utf8proc_tolower(cp), (utf8proc_uint8_t *)o + k);
            i += (size_t)l;
        }
    } else {
        memcpy(o, s, n);
        k = n;
    }
    o[k] = 0;
    *on = k;
    return o;
}

int pl_score_exact(const char *out, size_t n, const char *target, size_t tn, const pl_norm *nm) {
    size_t a, b;
    char *x = normalize(out, n, nm, &a), *y = normalize(target, tn, nm, &b);
    int r = x && y ? (a == b && !memcmp(x, y, a)) : -1;
    free(x);
    free(y);
    return r;
}

int pl_score_contains(const char *out, size_t n, const char *target, size_t tn, const pl_norm *nm) {
    size_t a, b;
    char *x = normalize(out, n, nm, &a), *y = normalize(target, tn, nm, &b);
    int r = -1;
    if (x && y) r = b == 0 || (b <= a && memmem(x, a, y, b) != NULL);
    free(x);
    free(y);
    return r;
}

int pl_regex_flags(const char *flags, uint32_t *opts) {
    *opts = 0;
    for (const char *f = flags ? flags : ""; *f; f++) {
        switch (*f) {
        case 'i': *opts |= PCRE2_CASELESS; break;
        case 'm': *opts |= PCRE2_MULTILINE; break;
        case 's': *opts |= PCRE2_DOTALL; break;
        case 'x': *opts |= PCRE2_EXTENDED; break;
        case 'u': *opts |= PCRE2_UTF | PCRE2_UCP; break;
        default: return (unsigned char)*f;
        }
    }
    return 0;
}

int pl_score_regex(const char *pattern, const char *flags, const char *out, size_t n, int *match, pl_err *err) {
    uint32_t opts = 0;
    *match = 0;
    int bad = pl_regex_flags(flags, &opts);
    if (bad) return pl_err_set(err, PL_EINVAL, "regex scorer: unknown flag '%c' (expected any of i m s x u)", bad);
    int ec;
    PCRE2_SIZE eoff;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, opts, &ec, &eoff, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return pl_err_set(err, PL_EINVAL, "regex scorer: pattern \"%.200s\": %s at offset %d", pattern, (const char *)msg, (int)eoff);
    }
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    pcre2_match_context *mc = pcre2_match_context_create(NULL);
    int rc = PL_OK;
    if (!md || !mc) rc = pl_err_set(err, PL_ENOMEM, "regex scorer: out of memory");
    else {
        pcre2_set_match_limit(mc, PL_REGEX_MATCH_LIMIT);
        pcre2_set_depth_limit(mc, PL_REGEX_DEPTH_LIMIT);
        pcre2_set_heap_limit(mc, PL_REGEX_HEAP_LIMIT_KIB);
        int m = pcre2_match(re, (PCRE2_SPTR)out, n, 0, 0, md, mc);
        if (m >= 0) *match = 1;
        else if (m != PCRE2_ERROR_NOMATCH) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(m, msg, sizeof msg);
            rc = pl_err_set(err, PL_EINVAL, "regex scorer: pattern \"%.200s\": %s", pattern, (const char *)msg);
        }
    }
    pcre2_match_context_free(mc);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return rc;
}

/* ------------------------------------------------------------ numbers */

/* length of a sign ending right before byte i ('-', '+' or U+2212), 0 when none */
static size_t sign_before(const char *s, size_t i, int *neg) {
    const unsigned char *u = (const unsigned char *)s;
    size_t l = 0;
    if (i >= 1 && (u[i - 1] == '-' || u[i - 1] == '+')) l = 1;
    else if (i >= 3 && u[i - 3] == 0xE2 && u[i - 2] == 0x88 && u[i - 1] == 0x92) l = 3;
    if (!l) return 0;
    /* a sign only where no word or number runs into it */
    if (i > l && is_alnum(u[i - l - 1])) return 0;
    *neg = l == 3 || u[i - 1] == '-';
    return l;
}

int pl_number_next(const char *s, size_t n, size_t *pos, pl_num_span *sp) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = *pos; i < n; i++) {
        int lead_dot = u[i] == '.' && i + 1 < n && is_digit(u[i + 1]) && !(i > 0 && is_digit(u[i - 1]));
        if (!is_digit(u[i]) && !lead_dot) continue;
        int neg = 0;
        size_t sl = sign_before(s, i, &neg);
        /* a sign that is part of the previous number's span is not there: *pos
         * starts after it, so only look back when the sign lies inside [*pos, i) */
        if (sl && i - sl < *pos) sl = 0, neg = 0;
        char buf[400];
        size_t k = 0, j = i;
        if (!lead_dot) {
            while (j < n && is_digit(u[j])) { if (k < 300) buf[k++] = (char)u[j]; j++; }
            if (j - i <= 3) {
                /* thousands groups: ",ddd" not followed by another digit */
                while (j + 3 < n + 0 && u[j] == ',' && is_digit(u[j + 1]) && is_digit(u[j + 2]) && is_digit(u[j + 3]) &&
                       !(j + 4 < n && is_digit(u[j + 4]))) {
                    if (k < 300) { buf[k++] = (char)u[j + 1]; buf[k++] = (char)u[j + 2]; buf[k++] = (char)u[j + 3]; }
                    j += 4;
                }
            }
        } else buf[k++] = '0';
        if (j + 1 < n && u[j] == '.' && is_digit(u[j + 1])) {
            buf[k++] = '.';
            j++;
            while (j < n && is_digit(u[j])) { if (k < 390) buf[k++] = (char)u[j]; j++; }
        }
        buf[k] = 0;
        double v = strtod(buf, NULL);
        sp->start = i - sl;
        sp->end = j;
        sp->value = neg ? -v : v;
        *pos = j;
        return 1;
    }
    *pos = n;
    return 0;
}

int pl_number_last(const char *s, size_t n, double *v) {
    size_t pos = 0;
    pl_num_span sp;
    int found = 0;
    while (pl_number_next(s, n, &pos, &sp)) { *v = sp.value; found = 1; }
    return found;
}

int pl_number_parse(const char *s, size_t n, double *v) {
    size_t a = 0, b = n, pos;
    while (a < b && is_space((unsigned char)s[a])) a++;
    while (b > a && is_space((unsigned char)s[b - 1])) b--;
    pos = a;
    pl_num_span sp;
    if (!pl_number_next(s, b, &pos, &sp) || sp.start != a || sp.end != b) return 0;
    *v = sp.value;
    return 1;
}

int pl_score_numeric(const char *out, size_t n, double target, double abs_tol, double rel_tol) {
    double x;
    if (!pl_number_last(out, n, &x)) return 0;
    return fabs(x - target) <= abs_tol + rel_tol * fabs(target);
}

/* ------------------------------------------------------------ the judge */

const char *pl_judge_status_str(int status) {
    switch (status) {
    case PL_JUDGE_OK: return "ok";
    case PL_JUDGE_EMPTY: return "empty reply";
    case PL_JUDGE_NO_NUMBER: return "no number";
    case PL_JUDGE_AMBIGUOUS: return "several different numbers";
    case PL_JUDGE_RANGE: return "out of range";
    case PL_JUDGE_SCALE: return "another scale";
    }
    return "?";
}

static int lower_at(const char *s, size_t n, size_t i, const char *w) {
    size_t l = strlen(w);
    if (i + l > n) return 0;
    for (size_t k = 0; k < l; k++) {
        char c = s[i + k];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != w[k]) return 0;
    }
    return 1;
}

/* The denominator after the number ending at e ("/D" or " out of D"): 1 and
 * *d, *de (its end), or 0. */
static int denominator(const char *s, size_t n, size_t e, double *d, size_t *de) {
    size_t i = e;
    while (i < n && s[i] == ' ') i++;
    if (i < n && s[i] == '/') i++;
    else if (lower_at(s, n, i, "out of")) i += 6;
    else return 0;
    while (i < n && s[i] == ' ') i++;
    if (i >= n || !is_digit((unsigned char)s[i])) return 0;
    size_t pos = i;
    pl_num_span sp;
    if (!pl_number_next(s, n, &pos, &sp) || sp.start != i) return 0;
    *d = sp.value;
    *de = sp.end;
    return 1;
}

/* A label ending right before byte i: "score", "rating" or "grade" (as a
 * word start), then only spaces, '*', ':', '=', '-', "is", "of" up to i; or
 * "[[" right before i. */
static int labelled(const char *s, size_t i) {
    if (i >= 2 && s[i - 1] == '[' && s[i - 2] == '[') return 1;
    size_t j = i;
    for (;;) {
        while (j > 0 && (s[j - 1] == ' ' || s[j - 1] == '*' || s[j - 1] == ':' || s[j - 1] == '=' || s[j - 1] == '\t')) j--;
        if (j >= 2 && (lower_at(s, j, j - 2, "is") || lower_at(s, j, j - 2, "of")) && (j == 2 || !is_alnum((unsigned char)s[j - 3])) &&
            j < i) {
            j -= 2;
            continue;
        }
        break;
    }
    static const char *const words[] = {"score", "rating", "grade"};
    for (int w = 0; w < 3; w++) {
        size_t l = strlen(words[w]);
        if (j >= l && lower_at(s, j, j - l, words[w]) && (j == l || !is_alnum((unsigned char)s[j - l - 1]))) return 1;
    }
    return 0;
}

int pl_judge_parse(const char *reply, size_t n, double lo, double hi, double *score) {
    size_t a = 0;
    while (a < n && is_space((unsigned char)reply[a])) a++;
    if (a == n) return PL_JUDGE_EMPTY;
    int have_label = 0, n_distinct = 0, cand_den = 0;
    double cand = 0, first = 0, cand_d = 0;
    size_t pos = 0;
    pl_num_span sp;
    while (pl_number_next(reply, n, &pos, &sp)) {
        double d = 0;
        size_t de = 0;
        int has_d = denominator(reply, n, sp.end, &d, &de);
        int lab = labelled(reply, sp.start);
        if (lab) {
            have_label = 1;
            cand = sp.value;
            cand_den = has_d;
            cand_d = d;
        } else if (!have_label) {
            if (n_distinct == 0) { first = sp.value; n_distinct = 1; cand_den = has_d; cand_d = d; }
            else if (sp.value != first) n_distinct = 2;
            else if (has_d && !cand_den) { cand_den = 1; cand_d = d; }
        }
        if (has_d) pos = de; /* the denominator is no candidate */
    }
    if (!have_label) {
        if (n_distinct == 0) return PL_JUDGE_NO_NUMBER;
        if (n_distinct > 1) return PL_JUDGE_AMBIGUOUS;
        cand = first;
    }
    if (cand_den && cand_d != hi) return PL_JUDGE_SCALE;
    if (!(cand >= lo && cand <= hi)) return PL_JUDGE_RANGE;
    *score = cand;
    return PL_JUDGE_OK;
}

/* ------------------------------------------------------------ Lua */

static void opt_norm(lua_State *L, int idx, pl_norm *nm) {
    nm->strip = 1;
    nm->lowercase = 0;
    if (!lua_istable(L, idx)) return;
    lua_getfield(L, idx, "strip");
    if (!lua_isnil(L, -1)) nm->strip = lua_toboolean(L, -1);
    lua_getfield(L, idx, "lowercase");
    nm->lowercase = lua_toboolean(L, -1);
    lua_pop(L, 2);
}

/* score_exact(output, target, {strip, lowercase}) -> 0 | 1 */
static int l_score_exact(lua_State *L) {
    size_t n, tn;
    const char *o = luaL_checklstring(L, 1, &n), *t = luaL_checklstring(L, 2, &tn);
    pl_norm nm;
    opt_norm(L, 3, &nm);
    int r = pl_score_exact(o, n, t, tn, &nm);
    if (r < 0) return luaL_error(L, "exact scorer: out of memory");
    lua_pushinteger(L, r);
    return 1;
}

static int l_score_contains(lua_State *L) {
    size_t n, tn;
    const char *o = luaL_checklstring(L, 1, &n), *t = luaL_checklstring(L, 2, &tn);
    pl_norm nm;
    opt_norm(L, 3, &nm);
    int r = pl_score_contains(o, n, t, tn, &nm);
    if (r < 0) return luaL_error(L, "contains scorer: out of memory");
    lua_pushinteger(L, r);
    return 1;
}

/* score_regex(output, pattern, flags) -> 0 | 1 */
static int l_score_regex(lua_State *L) {
    size_t n;
    const char *o = luaL_checklstring(L, 1, &n), *p = luaL_checkstring(L, 2), *f = luaL_optstring(L, 3, "");
    pl_err e = {0};
    int m = 0;
    if (pl_score_regex(p, f, o, n, &m, &e)) return luaL_error(L, "%s", e.msg);
    lua_pushinteger(L, m);
    return 1;
}

/* score_numeric(output, target, abs, rel) -> 0 | 1 */
static int l_score_numeric(lua_State *L) {
    size_t n;
    const char *o = luaL_checklstring(L, 1, &n);
    lua_pushinteger(L, pl_score_numeric(o, n, luaL_checknumber(L, 2), luaL_checknumber(L, 3), luaL_checknumber(L, 4)));
    return 1;
}

/* number_last(s) -> number | nil */
static int l_number_last(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    double v;
    if (pl_number_last(s, n, &v)) lua_pushnumber(L, v);
    else lua_pushnil(L);
    return 1;
}

/* number_parse(s) -> number | nil */
static int l_number_parse(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    double v;
    if (pl_number_parse(s, n, &v)) lua_pushnumber(L, v);
    else lua_pushnil(L);
    return 1;
}

/* judge_parse(reply, lo, hi) -> score | nil, reason */
static int l_judge_parse(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    double v = 0;
    int st = pl_judge_parse(s, n, luaL_checknumber(L, 2), luaL_checknumber(L, 3), &v);
    if (st == PL_JUDGE_OK) { lua_pushnumber(L, v); return 1; }
    lua_pushnil(L);
    lua_pushstring(L, pl_judge_status_str(st));
    return 2;
}

void pl_bind_gen_score(lua_State *L, int idx) {
    static const luaL_Reg fns[] = {{"score_exact", l_score_exact}, {"score_contains", l_score_contains},
                                   {"score_regex", l_score_regex}, {"score_numeric", l_score_numeric},
                                   {"number_last", l_number_last}, {"number_parse", l_number_parse},
                                   {"judge_parse", l_judge_parse}, {NULL, NULL}};
    idx = lua_absindex(L, idx);
    for (const luaL_Reg *f = fns; f->name; f++) {
        lua_pushcfunction(L, f->func);
        lua_setfield(L, idx, f->name);
    }
}
