/* jinja_filters.c: the built-ins: call arguments, str/list/dict methods,
 * global functions (range, namespace, raise_exception, strftime_now, dict),
 * filters and tests. */
#include "jinja_int.h"

#include <ctype.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

jargs jj_eval_args(jctx *c, jnode *n) {
    jargs a = {0};
    a.n = n->nkids;
    a.nkw = n->nkw;
    a.v = a.n ? jj_alloc(c, (size_t)a.n * sizeof(jv)) : NULL;
    a.kv = a.nkw ? jj_alloc(c, (size_t)a.nkw * sizeof(jv)) : NULL;
    for (int i = 0; i < a.n; i++) a.v[i] = jj_eval(c, n->kids[i]);
    for (int i = 0; i < a.nkw; i++) a.kv[i] = jj_eval(c, n->kids2[i]);
    a.kn = n->kwn;
    a.kl = n->kwl;
    return a;
}

/* Positional argument i, or keyword name, or undefined. */
static jv arg(jargs *a, int i, const char *name) {
    if (i >= 0 && i < a->n) return a->v[i];
    for (int k = 0; k < a->nkw; k++)
        if (name && a->kl[k] == strlen(name) && !memcmp(a->kn[k], name, a->kl[k])) return a->kv[k];
    return jj_v_undef(NULL, 0);
}

static void check_nargs(jctx *c, jnode *n, jargs *a, int maxpos, const char *what) {
    if (a->n > maxpos) jj_fail(c, PL_EINVAL, n->line, n->col, "%s takes at most %d arguments (%d given)", what, maxpos, a->n);
}

static jv need_str(jctx *c, jnode *n, jv v, const char *what) {
    if (v.t == JV_STR) return v;
    if (v.t == JV_UNDEF) jj_undef_err(c, n, v);
    jj_fail(c, PL_EINVAL, n->line, n->col, "%s expects a string, not %s", what, jj_type_name(v));
}

/* Python str.strip/lstrip/rstrip; chars NULL = whitespace. */
static jv do_strip(jv s, jv chars, int left, int right) {
    const unsigned char *p = (const unsigned char *)s.u.s.p;
    size_t a = 0, b = s.u.s.n, l;
    int usec = chars.t == JV_STR;
    #define INSET(cp) (usec ? ({ int _f = 0; size_t _o = 0, _l; while (_o < chars.u.s.n) { uint32_t _c = jj_u8_dec((const unsigned char *)chars.u.s.p + _o, chars.u.s.n - _o, &_l); if (_c == (cp)) { _f = 1; break; } _o += _l; } _f; }) : jj_cp_space(cp))
    if (left)
        while (a < b) {
            uint32_t cp = jj_u8_dec(p + a, b - a, &l);
            if (!INSET(cp)) break;
            a += l;
        }
    if (right)
        while (b > a) {
            size_t st = b - 1;
            while (st > a && (p[st] & 0xC0) == 0x80 && b - st < 4) st--;
            uint32_t cp = jj_u8_dec(p + st, b - st, &l);
            if (st + l != b) { st = b - 1; cp = p[st]; }
            if (!INSET(cp)) break;
            b = st;
        }
    #undef INSET
    return jj_v_str(s.u.s.p + a, b - a);
}

static jv case_map(jctx *c, jv s, int mode) { /* 0 lower 1 upper 2 title 3 capitalize */
    char *o = jj_alloc(c, s.u.s.n + 1);
    int prev_cased = 0;
    for (size_t i = 0; i < s.u.s.n; i++) {
        unsigned char ch = (unsigned char)s.u.s.p[i];
        int alpha = isalpha(ch) && ch < 0x80;
        if (mode == 0) o[i] = (char)(ch < 0x80 ? tolower(ch) : ch);
        else if (mode == 1) o[i] = (char)(ch < 0x80 ? toupper(ch) : ch);
        else if (mode == 2) {
            o[i] = (char)(alpha ? (prev_cased ? tolower(ch) : toupper(ch)) : ch);
            prev_cased = alpha || (ch >= 0x80);
        } else {
            o[i] = (char)(ch < 0x80 ? (i == 0 ? toupper(ch) : tolower(ch)) : ch);
        }
    }
    o[s.u.s.n] = 0;
    return jj_v_str(o, s.u.s.n);
}

static jv do_split(jctx *c, jnode *n, jv s, jv sep, jv maxs) {
    int64_t maxsplit = -1;
    if (maxs.t != JV_UNDEF && maxs.t != JV_NONE) maxsplit = jj_as_int(c, n, maxs, "maxsplit");
    /* collect into a growable array */
    size_t cap = 8, k = 0;
    jv *v = jj_alloc(c, cap * sizeof(jv));
    #define PUSH(x) do { if (k == cap) { jv *nv = jj_alloc(c, cap * 2 * sizeof(jv)); memcpy(nv, v, k * sizeof(jv)); v = nv; cap *= 2; } v[k++] = (x); } while (0)
    const unsigned char *p = (const unsigned char *)s.u.s.p;
    size_t len = s.u.s.n;
    if (sep.t == JV_UNDEF || sep.t == JV_NONE) {
        size_t i = 0, l;
        while (i < len) {
            while (i < len) { uint32_t cp = jj_u8_dec(p + i, len - i, &l); if (!jj_cp_space(cp)) break; i += l; }
            if (i >= len) break;
            if (maxsplit >= 0 && (int64_t)k >= maxsplit) {
                PUSH(jj_v_str(s.u.s.p + i, len - i));
                break;
            }
            size_t st = i;
            while (i < len) { uint32_t cp = jj_u8_dec(p + i, len - i, &l); if (jj_cp_space(cp)) break; i += l; }
            PUSH(jj_v_str(s.u.s.p + st, i - st));
        }
    } else {
        sep = need_str(c, n, sep, "split separator");
        if (sep.u.s.n == 0) jj_fail(c, PL_EINVAL, n->line, n->col, "split: empty separator");
        size_t i = 0;
        for (;;) {
            const char *f = (maxsplit >= 0 && (int64_t)k >= maxsplit) ? NULL
                           : memmem(s.u.s.p + i, len - i, sep.u.s.p, sep.u.s.n);
            if (!f) { PUSH(jj_v_str(s.u.s.p + i, len - i)); break; }
            PUSH(jj_v_str(s.u.s.p + i, (size_t)(f - (s.u.s.p + i))));
            i = (size_t)(f - s.u.s.p) + sep.u.s.n;
        }
    }
    #undef PUSH
    jv r = jj_v_list(c, 0);
    r.u.l->n = k;
    r.u.l->v = v;
    return r;
}

static jv do_replace(jctx *c, jnode *n, jv s, jv a, jv b, jv cnt) {
    a = need_str(c, n, a, "replace");
    b = need_str(c, n, b, "replace");
    int64_t count = -1;
    if (cnt.t != JV_UNDEF && cnt.t != JV_NONE) count = jj_as_int(c, n, cnt, "replace count");
    sb o = {c, 0, 0, 0};
    size_t i = 0;
    int64_t done = 0;
    if (a.u.s.n == 0) { /* Python inserts b between every character */
        size_t l;
        while (count < 0 || done < count) {
            jj_sb_put(&o, b.u.s.p, b.u.s.n);
            done++;
            if (i >= s.u.s.n) break;
            jj_u8_dec((const unsigned char *)s.u.s.p + i, s.u.s.n - i, &l);
            jj_sb_put(&o, s.u.s.p + i, l);
            i += l;
        }
        jj_sb_put(&o, s.u.s.p + i, s.u.s.n - i);
        return jj_sb_val(&o);
    }
    while (count < 0 || done < count) {
        const char *f = memmem(s.u.s.p + i, s.u.s.n - i, a.u.s.p, a.u.s.n);
        if (!f) break;
        jj_sb_put(&o, s.u.s.p + i, (size_t)(f - s.u.s.p) - i);
        jj_sb_put(&o, b.u.s.p, b.u.s.n);
        i = (size_t)(f - s.u.s.p) + a.u.s.n;
        done++;
    }
    jj_sb_put(&o, s.u.s.p + i, s.u.s.n - i);
    return jj_sb_val(&o);
}

static int starts_ends(jctx *c, jnode *n, jv s, jv x, int ends) {
    if (x.t == JV_LIST && x.flag) {
        for (size_t i = 0; i < x.u.l->n; i++)
            if (starts_ends(c, n, s, x.u.l->v[i], ends)) return 1;
        return 0;
    }
    x = need_str(c, n, x, ends ? "endswith" : "startswith");
    if (x.u.s.n > s.u.s.n) return 0;
    return !memcmp(s.u.s.p + (ends ? s.u.s.n - x.u.s.n : 0), x.u.s.p, x.u.s.n);
}

static jv do_join(jctx *c, jnode *n, jv sep, jv list, jv attr) {
    list = jj_as_iter(c, n, list);
    sb o = {c, 0, 0, 0};
    for (size_t i = 0; i < list.u.l->n; i++) {
        if (i) jj_sb_put(&o, sep.u.s.p, sep.u.s.n);
        jv e = list.u.l->v[i];
        if (attr.t == JV_STR) e = jj_get_attr(c, n, e, attr.u.s.p, attr.u.s.n);
        jj_to_str(&o, e, 0);
    }
    return jj_sb_val(&o);
}

jv jj_method_call(jctx *c, jnode *n, jv o, const char *m, size_t mn, jargs *a) {
#define IS(s) (mn == strlen(s) && !memcmp(m, s, mn))
    if (o.t == JV_UNDEF) jj_undef_err(c, n, o);
    if (o.t == JV_STR) {
        if (IS("strip") || IS("lstrip") || IS("rstrip")) {
            check_nargs(c, n, a, 1, "strip");
            jv ch = arg(a, 0, NULL);
            if (ch.t == JV_NONE) ch = jj_v_undef(NULL, 0);
            if (ch.t != JV_UNDEF) need_str(c, n, ch, "strip");
            return do_strip(o, ch, !IS("rstrip"), !IS("lstrip"));
        }
        if (IS("upper")) return case_map(c, o, 1);
        if (IS("lower")) return case_map(c, o, 0);
        if (IS("title")) return case_map(c, o, 2);
        if (IS("capitalize")) return case_map(c, o, 3);
        if (IS("startswith") || IS("endswith")) {
            check_nargs(c, n, a, 1, "startswith");
            return jj_v_bool(starts_ends(c, n, o, arg(a, 0, NULL), IS("endswith")));
        }
        if (IS("split")) return do_split(c, n, o, arg(a, 0, "sep"), arg(a, 1, "maxsplit"));
        if (IS("replace")) return do_replace(c, n, o, arg(a, 0, NULL), arg(a, 1, NULL), arg(a, 2, NULL));
        if (IS("join")) return do_join(c, n, o, arg(a, 0, NULL), jj_v_undef(NULL, 0));
        if (IS("find") || IS("count")) {
            jv x = need_str(c, n, arg(a, 0, NULL), "find");
            if (IS("find")) {
                const char *f = x.u.s.n ? memmem(o.u.s.p, o.u.s.n, x.u.s.p, x.u.s.n) : o.u.s.p;
                return jj_v_int(f ? (int64_t)jj_u8_count(o.u.s.p, (size_t)(f - o.u.s.p)) : -1);
            }
            if (!x.u.s.n) return jj_v_int((int64_t)jj_u8_count(o.u.s.p, o.u.s.n) + 1);
            int64_t k = 0;
            size_t i = 0;
            const char *f;
            while ((f = memmem(o.u.s.p + i, o.u.s.n - i, x.u.s.p, x.u.s.n))) { k++; i = (size_t)(f - o.u.s.p) + x.u.s.n; }
            return jj_v_int(k);
        }
    } else if (o.t == JV_DICT) {
        if (!o.flag && (IS("items") || IS("keys") || IS("values"))) {
            jv r = jj_v_list(c, o.u.d->n);
            for (size_t i = 0; i < o.u.d->n; i++) {
                jv k = jj_v_str(o.u.d->kp[i], o.u.d->kn[i]);
                if (IS("keys")) r.u.l->v[i] = k;
                else if (IS("values")) r.u.l->v[i] = o.u.d->v[i];
                else {
                    jv t = jj_v_list(c, 2);
                    t.flag = 1;
                    t.u.l->v[0] = k;
                    t.u.l->v[1] = o.u.d->v[i];
                    r.u.l->v[i] = t;
                }
            }
            return r;
        }
        if (!o.flag && IS("get")) {
            jv k = arg(a, 0, NULL);
            jv *e = k.t == JV_STR ? jj_dict_get(o.u.d, k.u.s.p, k.u.s.n) : NULL;
            if (e) return *e;
            jv d = arg(a, 1, NULL);
            return d.t == JV_UNDEF ? jj_v_none() : d;
        }
        jv *e = jj_dict_get(o.u.d, m, mn);
        if (e) jj_fail(c, PL_EUNSUPPORTED, n->line, n->col, "'%.*s' is not callable", (int)mn, m);
    }
    jj_fail(c, PL_EUNSUPPORTED, n->line, n->col, "unsupported method %s.%.*s()", jj_type_name(o), (int)mn, m);
#undef IS
}

jv jj_call_global(jctx *c, jnode *n, int fn, jargs *a) {
    if (fn == FN_RAISE) {
        jv m = arg(a, 0, NULL);
        jv s = jj_str_of(c, m);
        jj_fail(c, PL_EINVAL, n->line, n->col, "raise_exception: %.*s", (int)(s.u.s.n > 600 ? 600 : s.u.s.n), s.u.s.p);
    }
    if (fn == FN_STRFTIME) {
        jv f = need_str(c, n, arg(a, 0, NULL), "strftime_now");
        time_t now;
        struct tm tm;
        if (c->opts && c->opts->fixed_time) {
            now = (time_t)c->opts->now;
            gmtime_r(&now, &tm);
        } else {
            now = time(NULL);
            localtime_r(&now, &tm);
        }
        char fmt[256], buf[512];
        if (f.u.s.n >= sizeof fmt) jj_fail(c, PL_EINVAL, n->line, n->col, "strftime_now: format longer than 255 bytes");
        memcpy(fmt, f.u.s.p, f.u.s.n);
        fmt[f.u.s.n] = 0;
        size_t k = f.u.s.n ? strftime(buf, sizeof buf, fmt, &tm) : 0;
        return jj_v_str(jj_strdup(c, buf, k), k);
    }
    if (fn == FN_NAMESPACE || fn == FN_DICT) {
        jv d = jj_v_dict(c);
        d.flag = fn == FN_NAMESPACE;
        for (int i = 0; i < a->n; i++) { /* namespace({'a': 1}) */
            if (a->v[i].t != JV_DICT) jj_fail(c, PL_EINVAL, n->line, n->col, "%s() positional argument must be a dict", fn == FN_DICT ? "dict" : "namespace");
            for (size_t k = 0; k < a->v[i].u.d->n; k++) jj_dict_set(c, d.u.d, a->v[i].u.d->kp[k], a->v[i].u.d->kn[k], a->v[i].u.d->v[k]);
        }
        for (int i = 0; i < a->nkw; i++) jj_dict_set(c, d.u.d, a->kn[i], a->kl[i], a->kv[i]);
        return d;
    }
    /* range */
    int64_t lo = 0, hi, st = 1;
    if (a->n == 1) hi = jj_as_int(c, n, a->v[0], "range()");
    else if (a->n == 2 || a->n == 3) {
        lo = jj_as_int(c, n, a->v[0], "range()");
        hi = jj_as_int(c, n, a->v[1], "range()");
        if (a->n == 3) st = jj_as_int(c, n, a->v[2], "range()");
    } else jj_fail(c, PL_EINVAL, n->line, n->col, "range() takes 1 to 3 arguments");
    if (st == 0) jj_fail(c, PL_EINVAL, n->line, n->col, "range() step must not be zero");
    uint64_t cnt = 0;
    if (st > 0 && hi > lo) cnt = ((uint64_t)hi - (uint64_t)lo + (uint64_t)st - 1) / (uint64_t)st;
    if (st < 0 && lo > hi) cnt = ((uint64_t)lo - (uint64_t)hi + (uint64_t)(-st) - 1) / (uint64_t)(-st);
    if (cnt > 1000000) jj_fail(c, PL_ERANGE, n->line, n->col, "range() of %llu items is too large (limit 1000000)", (unsigned long long)cnt);
    jv r = jj_v_list(c, (size_t)cnt);
    for (uint64_t i = 0; i < cnt; i++) r.u.l->v[i] = jj_v_int(lo + (int64_t)i * st);
    return r;
}

jv jj_filter(jctx *c, jnode *n, jv v, jargs *a) {
    const char *m = n->name;
    size_t mn = n->name_n;
#define IS(s) (mn == strlen(s) && !memcmp(m, s, mn))
    if (IS("default") || IS("d")) {
        jv dflt = arg(a, 0, "default_value");
        int boolean = jj_truthy(arg(a, 1, "boolean"));
        if (v.t == JV_UNDEF || (boolean && !jj_truthy(v))) return dflt.t == JV_UNDEF ? jj_v_str("", 0) : dflt;
        return v;
    }
    if (IS("safe")) return v;
    if (IS("string")) return jj_str_of(c, v);
    if (v.t == JV_UNDEF && !IS("length") && !IS("count") && !IS("list") && !IS("tojson")) jj_undef_err(c, n->a, v);
    if (IS("trim")) {
        jv ch = arg(a, 0, "chars");
        if (ch.t == JV_NONE) ch = jj_v_undef(NULL, 0);
        return do_strip(jj_str_of(c, v), ch, 1, 1);
    }
    if (IS("length") || IS("count")) {
        if (v.t == JV_STR) return jj_v_int((int64_t)jj_u8_count(v.u.s.p, v.u.s.n));
        if (v.t == JV_LIST) return jj_v_int((int64_t)v.u.l->n);
        if (v.t == JV_DICT) return jj_v_int((int64_t)v.u.d->n);
        if (v.t == JV_UNDEF) return jj_v_int(0);
        jj_fail(c, PL_EINVAL, n->line, n->col, "object of type %s has no len()", jj_type_name(v));
    }
    if (IS("upper")) return case_map(c, jj_str_of(c, v), 1);
    if (IS("lower")) return case_map(c, jj_str_of(c, v), 0);
    if (IS("capitalize")) return case_map(c, jj_str_of(c, v), 3);
    if (IS("title")) return case_map(c, jj_str_of(c, v), 2);
    if (IS("tojson")) {
        jv ind = arg(a, 0, "indent");
        int indent = -1;
        if (ind.t != JV_UNDEF && ind.t != JV_NONE) {
            int64_t x = jj_as_int(c, n, ind, "tojson indent");
            if (x < 0 || x > 64) jj_fail(c, PL_EUNSUPPORTED, n->line, n->col, "tojson: indent %lld out of range 0..64", (long long)x);
            indent = (int)x;
        }
        if (jj_truthy(arg(a, -1, "sort_keys")))
            jj_fail(c, PL_EUNSUPPORTED, n->line, n->col, "tojson: sort_keys is not supported");
        sb o = {c, 0, 0, 0};
        jj_to_json(c, &o, v, indent, 0, n->line, n->col);
        return jj_sb_val(&o);
    }
    if (IS("first") || IS("last")) {
        jv l = jj_as_iter(c, n, v);
        if (!l.u.l->n) return jj_v_undef(NULL, 0);
        return l.u.l->v[IS("first") ? 0 : l.u.l->n - 1];
    }
    if (IS("list")) return jj_as_iter(c, n, v);
    if (IS("reverse")) {
        if (v.t == JV_STR) {
            jv l = jj_as_iter(c, n, v);
            sb o = {c, 0, 0, 0};
            for (size_t i = l.u.l->n; i > 0; i--) jj_sb_put(&o, l.u.l->v[i - 1].u.s.p, l.u.l->v[i - 1].u.s.n);
            return jj_sb_val(&o);
        }
        jv l = jj_as_iter(c, n, v);
        jv r = jj_v_list(c, l.u.l->n);
        for (size_t i = 0; i < l.u.l->n; i++) r.u.l->v[i] = l.u.l->v[l.u.l->n - 1 - i];
        return r;
    }
    if (IS("join")) {
        jv sep = arg(a, 0, "d");
        if (sep.t == JV_UNDEF) sep = jj_v_str("", 0);
        return do_join(c, n, jj_str_of(c, sep), v, arg(a, 1, "attribute"));
    }
    if (IS("replace")) return do_replace(c, n, jj_str_of(c, v), arg(a, 0, NULL), arg(a, 1, NULL), arg(a, 2, NULL));
    if (IS("int")) {
        if (v.t == JV_INT || v.t == JV_BOOL) return jj_v_int(v.u.i);
        if (v.t == JV_FLOAT) return jj_v_int(isfinite(v.u.f) && fabs(v.u.f) < 9.2e18 ? (int64_t)v.u.f : 0);
        if (v.t == JV_STR) {
            char buf[64];
            size_t k = v.u.s.n < 63 ? v.u.s.n : 63;
            memcpy(buf, v.u.s.p, k);
            buf[k] = 0;
            char *e;
            long long x = strtoll(buf, &e, 10);
            return jj_v_int(*e == 0 && k ? x : 0);
        }
        return jj_v_int(0);
    }
    if (IS("float")) {
        if (jj_is_num(v)) return jj_v_float(jj_as_num(v));
        if (v.t == JV_STR) {
            char buf[64];
            size_t k = v.u.s.n < 63 ? v.u.s.n : 63;
            memcpy(buf, v.u.s.p, k);
            buf[k] = 0;
            char *e;
            double x = strtod(buf, &e);
            return jj_v_float(*e == 0 && k ? x : 0.0);
        }
        return jj_v_float(0);
    }
    if (IS("abs")) {
        if (v.t == JV_FLOAT) return jj_v_float(fabs(v.u.f));
        int64_t x = jj_as_int(c, n, v, "abs");
        if (x == INT64_MIN) jj_fail(c, PL_ERANGE, n->line, n->col, "integer overflow");
        return jj_v_int(x < 0 ? -x : x);
    }
    if (IS("round")) {
        jv pr = arg(a, 0, "precision");
        int64_t p = pr.t == JV_UNDEF ? 0 : jj_as_int(c, n, pr, "round precision");
        if (p < 0 || p > 15) jj_fail(c, PL_EUNSUPPORTED, n->line, n->col, "round: precision out of range");
        double s = pow(10, (double)p);
        return jj_v_float(round(jj_as_num(v) * s) / s);
    }
    if (IS("items")) return jj_method_call(c, n, v, "items", 5, a);
    if (IS("unique")) {
        jv l = jj_as_iter(c, n, v);
        jv r = jj_v_list(c, l.u.l->n);
        size_t k = 0;
        for (size_t i = 0; i < l.u.l->n; i++) {
            int dup = 0;
            for (size_t j = 0; j < k && !dup; j++) dup = jj_v_eq(r.u.l->v[j], l.u.l->v[i]);
            if (!dup) r.u.l->v[k++] = l.u.l->v[i];
        }
        r.u.l->n = k;
        return r;
    }
    if (IS("selectattr") || IS("rejectattr") || IS("select") || IS("reject")) {
        int byattr = IS("selectattr") || IS("rejectattr"), sel = IS("selectattr") || IS("select");
        jv l = jj_as_iter(c, n, v);
        jv attr = byattr ? need_str(c, n, arg(a, 0, NULL), "selectattr attribute") : jj_v_undef(NULL, 0);
        int ti = byattr ? 1 : 0;
        jv tname = arg(a, ti, NULL);
        jargs ta = {0};
        if (a->n > ti + 1) { ta.n = a->n - ti - 1; ta.v = a->v + ti + 1; }
        if (tname.t != JV_UNDEF) tname = need_str(c, n, tname, "test name");
        jv r = jj_v_list(c, l.u.l->n);
        size_t k = 0;
        for (size_t i = 0; i < l.u.l->n; i++) {
            jv e = l.u.l->v[i];
            jv x = byattr ? (e.t == JV_DICT ? jj_get_attr(c, n, e, attr.u.s.p, attr.u.s.n) : jj_v_undef(NULL, 0)) : e;
            int ok = tname.t == JV_UNDEF ? jj_truthy(x) : jj_run_test(c, n, x, tname.u.s.p, tname.u.s.n, &ta);
            if (ok == sel) r.u.l->v[k++] = e;
        }
        r.u.l->n = k;
        return r;
    }
    if (IS("map")) {
        jv l = jj_as_iter(c, n, v);
        jv attr = arg(a, -1, "attribute");
        jv r = jj_v_list(c, l.u.l->n);
        if (attr.t == JV_STR) {
            jv dflt = arg(a, -1, "default");
            for (size_t i = 0; i < l.u.l->n; i++) {
                jv x = l.u.l->v[i].t == JV_DICT ? jj_get_attr(c, n, l.u.l->v[i], attr.u.s.p, attr.u.s.n) : jj_v_undef(NULL, 0);
                r.u.l->v[i] = (x.t == JV_UNDEF && dflt.t != JV_UNDEF) ? dflt : x;
            }
            return r;
        }
        jv fname = need_str(c, n, arg(a, 0, NULL), "map filter name");
        jnode fake = *n;
        fake.name = fname.u.s.p;
        fake.name_n = fname.u.s.n;
        jargs rest = {0};
        if (a->n > 1) { rest.n = a->n - 1; rest.v = a->v + 1; }
        if (fname.u.s.n == 3 && !memcmp(fname.u.s.p, "map", 3)) jj_fail(c, PL_EUNSUPPORTED, n->line, n->col, "map(\"map\") is not supported");
        for (size_t i = 0; i < l.u.l->n; i++) r.u.l->v[i] = jj_filter(c, &fake, l.u.l->v[i], &rest);
        return r;
    }
    if (IS("indent")) {
        jv w = arg(a, 0, "width");
        int64_t width = w.t == JV_UNDEF ? 4 : jj_as_int(c, n, w, "indent width");
        if (width < 0 || width > 256) jj_fail(c, PL_EUNSUPPORTED, n->line, n->col, "indent width out of range");
        int first = jj_truthy(arg(a, 1, "first")), blank = jj_truthy(arg(a, 2, "blank"));
        jv s = jj_str_of(c, v);
        sb o = {c, 0, 0, 0};
        size_t i = 0;
        int lineno = 0;
        while (i <= s.u.s.n) {
            const char *nl = memchr(s.u.s.p + i, '\n', s.u.s.n - i);
            size_t e = nl ? (size_t)(nl - s.u.s.p) : s.u.s.n;
            int empty = e == i;
            if ((lineno > 0 || first) && (!empty || blank))
                for (int64_t k = 0; k < width; k++) jj_sb_puts(&o, " ");
            jj_sb_put(&o, s.u.s.p + i, e - i);
            if (!nl) break;
            jj_sb_puts(&o, "\n");
            i = e + 1;
            lineno++;
        }
        return jj_sb_val(&o);
    }
    jj_fail(c, PL_EUNSUPPORTED, n->line, n->col, "unsupported filter '%.*s'", (int)(mn > 60 ? 60 : mn), m);
#undef IS
}

int jj_run_test(jctx *c, jnode *n, jv v, const char *t, size_t tn, jargs *a) {
#define IS(s) (tn == strlen(s) && !memcmp(t, s, tn))
    if (IS("defined")) return v.t != JV_UNDEF;
    if (IS("undefined")) return v.t == JV_UNDEF;
    if (IS("none")) return v.t == JV_NONE;
    if (IS("string")) return v.t == JV_STR;
    if (IS("number")) return v.t == JV_INT || v.t == JV_FLOAT;
    if (IS("integer")) return v.t == JV_INT;
    if (IS("float")) return v.t == JV_FLOAT;
    if (IS("boolean")) return v.t == JV_BOOL;
    if (IS("true")) return v.t == JV_BOOL && v.u.i;
    if (IS("false")) return v.t == JV_BOOL && !v.u.i;
    if (IS("mapping")) return v.t == JV_DICT && !v.flag;
    if (IS("iterable")) return v.t == JV_LIST || v.t == JV_STR || (v.t == JV_DICT && !v.flag) || v.t == JV_UNDEF;
    if (IS("sequence")) return v.t == JV_LIST || v.t == JV_STR || (v.t == JV_DICT && !v.flag);
    if (IS("callable")) return v.t == JV_FUNC;
    if (IS("even") || IS("odd")) {
        int64_t x = jj_as_int(c, n, v, "even/odd test");
        return IS("even") ? (x % 2 == 0) : (x % 2 != 0);
    }
    if (IS("divisibleby")) {
        int64_t x = jj_as_int(c, n, v, "divisibleby"), y = jj_as_int(c, n, arg(a, 0, NULL), "divisibleby");
        if (y == 0) jj_fail(c, PL_EINVAL, n->line, n->col, "divisibleby 0");
        return x % y == 0;
    }
    if (IS("equalto") || IS("eq") || IS("==") || IS("sameas")) return jj_v_eq(v, arg(a, 0, NULL));
    if (IS("ne") || IS("!=")) return !jj_v_eq(v, arg(a, 0, NULL));
    if (IS("lt") || IS("lessthan")) return jj_cmp_order(c, n, v, arg(a, 0, NULL)) < 0;
    if (IS("gt") || IS("greaterthan")) return jj_cmp_order(c, n, v, arg(a, 0, NULL)) > 0;
    if (IS("le")) return jj_cmp_order(c, n, v, arg(a, 0, NULL)) <= 0;
    if (IS("ge")) return jj_cmp_order(c, n, v, arg(a, 0, NULL)) >= 0;
    if (IS("in")) return jj_contains(c, n, arg(a, 0, NULL), v);
    if (IS("lower") || IS("upper")) {
        if (v.t != JV_STR) return 0;
        jv m = case_map(c, v, IS("lower") ? 0 : 1);
        return !memcmp(m.u.s.p, v.u.s.p, v.u.s.n);
    }
    jj_fail(c, PL_EUNSUPPORTED, n->line, n->col, "unsupported test '%.*s'", (int)(tn > 60 ? 60 : tn), t);
#undef IS
}
