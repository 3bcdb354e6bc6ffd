/* jinja_value.c: template values: constructors, dicts, truthiness,
 * Python-like str() / repr(), tojson, equality, and values from cJSON. */
#include "jinja_int.h"

#include <ctype.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ value helpers */

static jv v_cstr(const char *p) { return jj_v_str(p, strlen(p)); }

jv jj_v_list(jctx *c, size_t n) {
    jv v = {0};
    v.t = JV_LIST;
    v.u.l = jj_alloc(c, sizeof(jlist));
    v.u.l->n = n;
    v.u.l->v = n ? jj_alloc(c, n * sizeof(jv)) : NULL;
    return v;
}

jv jj_v_dict(jctx *c) {
    jv v = {0};
    v.t = JV_DICT;
    v.u.d = jj_alloc(c, sizeof(jdict));
    memset(v.u.d, 0, sizeof(jdict));
    return v;
}

jv *jj_dict_get(jdict *d, const char *k, size_t n) {
    for (size_t i = 0; i < d->n; i++)
        if (d->kn[i] == n && !memcmp(d->kp[i], k, n)) return &d->v[i];
    return NULL;
}

void jj_dict_set(jctx *c, jdict *d, const char *k, size_t n, jv v) {
    jv *e = jj_dict_get(d, k, n);
    if (e) { *e = v; return; }
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 8;
        const char **kp = jj_alloc(c, nc * sizeof *kp);
        size_t *kn = jj_alloc(c, nc * sizeof *kn);
        jv *vv = jj_alloc(c, nc * sizeof *vv);
        if (d->n) {
            memcpy(kp, d->kp, d->n * sizeof *kp);
            memcpy(kn, d->kn, d->n * sizeof *kn);
            memcpy(vv, d->v, d->n * sizeof *vv);
        }
        d->kp = kp; d->kn = kn; d->v = vv; d->cap = nc;
    }
    d->kp[d->n] = k;
    d->kn[d->n] = n;
    d->v[d->n] = v;
    d->n++;
}

const char *jj_type_name(jv v) {
    switch (v.t) {
    case JV_UNDEF: return "undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return "str";
    case JV_LIST: return v.flag ? "tuple" : "list";
    case JV_DICT: return v.flag ? "Namespace" : "dict";
    default: return "function";
    }
}

int jj_truthy(jv v) {
    switch (v.t) {
    case JV_UNDEF: case JV_NONE: return 0;
    case JV_BOOL: case JV_INT: return v.u.i != 0;
    case JV_FLOAT: return v.u.f != 0;
    case JV_STR: return v.u.s.n > 0;
    case JV_LIST: return v.u.l->n > 0;
    case JV_DICT: return v.flag ? 1 : v.u.d->n > 0;
    default: return 1;
    }
}

void jj_sb_put(sb *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 64;
        while (nc < b->n + n + 1) {
            if (nc > ((size_t)1 << 40)) jj_fail(b->c, PL_ENOMEM, 0, 0, "string too large");
            nc *= 2;
        }
        char *np = jj_alloc(b->c, nc);
        if (b->n) memcpy(np, b->p, b->n);
        b->p = np;
        b->cap = nc;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
void jj_sb_puts(sb *b, const char *s) { jj_sb_put(b, s, strlen(s)); }
jv jj_sb_val(sb *b) { return b->p ? jj_v_str(b->p, b->n) : jj_v_str("", 0); }

/* Python repr of a float. */
static void float_repr(double f, char *out, size_t cap) {
    if (isnan(f)) { snprintf(out, cap, "nan"); return; }
    if (isinf(f)) { snprintf(out, cap, f < 0 ? "-inf" : "inf"); return; }
    if (f == 0) { snprintf(out, cap, signbit(f) ? "-0.0" : "0.0"); return; }
    char buf[64];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, f);
        if (strtod(buf, NULL) == f) break;
    }
    /* buf = [-]d.ddde[+-]XX : digits and exponent */
    char digits[32];
    int nd = 0, neg = 0;
    const char *p = buf;
    if (*p == '-') { neg = 1; p++; }
    while (*p && *p != 'e') { if (isdigit((unsigned char)*p)) digits[nd++] = *p; p++; }
    int exp = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    char o[64];
    size_t k = 0;
    if (neg) o[k++] = '-';
    if (exp < -4 || exp >= 16) {
        o[k++] = digits[0];
        if (nd > 1) { o[k++] = '.'; for (int i = 1; i < nd; i++) o[k++] = digits[i]; }
        k += (size_t)snprintf(o + k, sizeof o - k, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    } else if (exp < 0) {
        o[k++] = '0'; o[k++] = '.';
        for (int i = 0; i < -exp - 1; i++) o[k++] = '0';
        for (int i = 0; i < nd; i++) o[k++] = digits[i];
        o[k] = 0;
    } else {
        for (int i = 0; i <= exp; i++) o[k++] = i < nd ? digits[i] : '0';
        o[k++] = '.';
        if (nd > exp + 1) for (int i = exp + 1; i < nd; i++) o[k++] = digits[i];
        else o[k++] = '0';
        o[k] = 0;
    }
    snprintf(out, cap, "%s", o);
}

static void repr_str(sb *b, const char *s, size_t n) {
    int has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = (has_sq && !has_dq) ? '"' : '\'';
    jj_sb_put(b, &q, 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char e[8];
        if (ch == (unsigned char)q || ch == '\\') { e[0] = '\\'; e[1] = (char)ch; jj_sb_put(b, e, 2); }
        else if (ch == '\n') jj_sb_puts(b, "\\n");
        else if (ch == '\r') jj_sb_puts(b, "\\r");
        else if (ch == '\t') jj_sb_puts(b, "\\t");
        else if (ch < 0x20 || ch == 0x7f) { snprintf(e, sizeof e, "\\x%02x", ch); jj_sb_puts(b, e); }
        else jj_sb_put(b, (const char *)&s[i], 1);
    }
    jj_sb_put(b, &q, 1);
}

/* str() (repr=0) or repr() (repr=1) as Python writes them. */
/* The containers being printed, outermost first: a value that holds itself
 * (a namespace assigned into its own attribute) prints as Python's repr
 * does, "{...}" or "[...]" where it recurs, instead of recursing forever. */
#define TO_STR_DEPTH 200
static void to_str(sb *b, jv v, int repr, const void **open, int depth) {
    if (v.t == JV_LIST || v.t == JV_DICT) {
        const void *me = v.t == JV_LIST ? (const void *)v.u.l : (const void *)v.u.d;
        for (int i = 0; i < depth; i++)
            if (open[i] == me) {
                jj_sb_puts(b, v.t == JV_LIST ? "[...]" : v.flag ? "<Namespace {...}>" : "{...}");
                return;
            }
        if (depth >= TO_STR_DEPTH) {
            jj_sb_puts(b, "...");
            return;
        }
        open[depth] = me;
    }
    char buf[64];
    switch (v.t) {
    case JV_UNDEF: break;
    case JV_NONE: jj_sb_puts(b, "None"); break;
    case JV_BOOL: jj_sb_puts(b, v.u.i ? "True" : "False"); break;
    case JV_INT: snprintf(buf, sizeof buf, "%lld", (long long)v.u.i); jj_sb_puts(b, buf); break;
    case JV_FLOAT: float_repr(v.u.f, buf, sizeof buf); jj_sb_puts(b, buf); break;
    case JV_STR:
        if (repr) repr_str(b, v.u.s.p, v.u.s.n);
        else jj_sb_put(b, v.u.s.p, v.u.s.n);
        break;
    case JV_LIST:
        jj_sb_puts(b, v.flag ? "(" : "[");
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i) jj_sb_puts(b, ", ");
            to_str(b, v.u.l->v[i], 1, open, depth + 1);
        }
        if (v.flag && v.u.l->n == 1) jj_sb_puts(b, ",");
        jj_sb_puts(b, v.flag ? ")" : "]");
        break;
    case JV_DICT:
        if (v.flag) jj_sb_puts(b, "<Namespace ");
        jj_sb_puts(b, "{");
        for (size_t i = 0; i < v.u.d->n; i++) {
            if (i) jj_sb_puts(b, ", ");
            repr_str(b, v.u.d->kp[i], v.u.d->kn[i]);
            jj_sb_puts(b, ": ");
            to_str(b, v.u.d->v[i], 1, open, depth + 1);
        }
        jj_sb_puts(b, "}");
        if (v.flag) jj_sb_puts(b, ">");
        break;
    default: jj_sb_puts(b, "<function>"); break;
    }
}

void jj_to_str(sb *b, jv v, int repr) {
    const void *open[TO_STR_DEPTH];
    to_str(b, v, repr, open, 0);
}

jv jj_str_of(jctx *c, jv v) {
    if (v.t == JV_STR) return v;
    sb b = {c, 0, 0, 0};
    jj_to_str(&b, v, 0);
    return jj_sb_val(&b);
}

/* json.dumps(x, ensure_ascii=False, indent=indent, sort_keys=False) */
static void json_str(sb *b, const char *s, size_t n) {
    jj_sb_puts(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char e[8];
        switch (ch) {
        case '"': jj_sb_puts(b, "\\\""); break;
        case '\\': jj_sb_puts(b, "\\\\"); break;
        case '\n': jj_sb_puts(b, "\\n"); break;
        case '\r': jj_sb_puts(b, "\\r"); break;
        case '\t': jj_sb_puts(b, "\\t"); break;
        case '\b': jj_sb_puts(b, "\\b"); break;
        case '\f': jj_sb_puts(b, "\\f"); break;
        default:
            if (ch < 0x20) { snprintf(e, sizeof e, "\\u%04x", ch); jj_sb_puts(b, e); }
            else jj_sb_put(b, (const char *)&s[i], 1);
        }
    }
    jj_sb_puts(b, "\"");
}

void jj_to_json(jctx *c, sb *b, jv v, int indent, int level, int line, int col) {
    char buf[64];
    if (level > 100) jj_fail(c, PL_EUNSUPPORTED, line, col, "tojson: value nested more than 100 levels");
    switch (v.t) {
    case JV_NONE: jj_sb_puts(b, "null"); break;
    case JV_BOOL: jj_sb_puts(b, v.u.i ? "true" : "false"); break;
    case JV_INT: snprintf(buf, sizeof buf, "%lld", (long long)v.u.i); jj_sb_puts(b, buf); break;
    case JV_FLOAT:
        if (isnan(v.u.f)) jj_sb_puts(b, "NaN");
        else if (isinf(v.u.f)) jj_sb_puts(b, v.u.f < 0 ? "-Infinity" : "Infinity");
        else { float_repr(v.u.f, buf, sizeof buf); jj_sb_puts(b, buf); }
        break;
    case JV_STR: json_str(b, v.u.s.p, v.u.s.n); break;
    case JV_LIST: case JV_DICT: {
        int isd = v.t == JV_DICT;
        size_t n = isd ? v.u.d->n : v.u.l->n;
        if (isd && v.flag) jj_fail(c, PL_EINVAL, line, col, "tojson: a namespace is not JSON serializable");
        jj_sb_puts(b, isd ? "{" : "[");
        if (n == 0) { jj_sb_puts(b, isd ? "}" : "]"); break; }
        for (size_t i = 0; i < n; i++) {
            if (i) jj_sb_puts(b, indent >= 0 ? "," : ", ");
            if (indent >= 0) {
                jj_sb_puts(b, "\n");
                for (int k = 0; k < indent * (level + 1); k++) jj_sb_puts(b, " ");
            }
            if (isd) {
                json_str(b, v.u.d->kp[i], v.u.d->kn[i]);
                jj_sb_puts(b, ": ");
                jj_to_json(c, b, v.u.d->v[i], indent, level + 1, line, col);
            } else {
                jj_to_json(c, b, v.u.l->v[i], indent, level + 1, line, col);
            }
        }
        if (indent >= 0) {
            jj_sb_puts(b, "\n");
            for (int k = 0; k < indent * level; k++) jj_sb_puts(b, " ");
        }
        jj_sb_puts(b, isd ? "}" : "]");
        break;
    }
    case JV_UNDEF:
        jj_fail(c, PL_EINVAL, line, col, "tojson: '%.*s' is undefined", (int)v.u.s.n, v.u.s.p ? v.u.s.p : "");
    default:
        jj_fail(c, PL_EINVAL, line, col, "tojson: a %s is not JSON serializable", jj_type_name(v));
    }
}

int jj_v_eq(jv a, jv b) {
    int an = a.t == JV_INT || a.t == JV_FLOAT || a.t == JV_BOOL, bn = b.t == JV_INT || b.t == JV_FLOAT || b.t == JV_BOOL;
    if (an && bn) {
        if (a.t != JV_FLOAT && b.t != JV_FLOAT) return a.u.i == b.u.i;
        double x = a.t == JV_FLOAT ? a.u.f : (double)a.u.i, y = b.t == JV_FLOAT ? b.u.f : (double)b.u.i;
        return x == y;
    }
    if (a.t != b.t) return 0;
    switch (a.t) {
    case JV_UNDEF: case JV_NONE: return 1;
    case JV_STR: return a.u.s.n == b.u.s.n && !memcmp(a.u.s.p, b.u.s.p, a.u.s.n);
    case JV_LIST:
        if (a.u.l->n != b.u.l->n) return 0;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!jj_v_eq(a.u.l->v[i], b.u.l->v[i])) return 0;
        return 1;
    case JV_DICT:
        if (a.flag || b.flag) return a.u.d == b.u.d;
        if (a.u.d->n != b.u.d->n) return 0;
        for (size_t i = 0; i < a.u.d->n; i++) {
            jv *o = jj_dict_get(b.u.d, a.u.d->kp[i], a.u.d->kn[i]);
            if (!o || !jj_v_eq(a.u.d->v[i], *o)) return 0;
        }
        return 1;
    default: return a.u.i == b.u.i;
    }
}

/* ------------------------------------------------------------------ cJSON -> value */

jv jj_from_json(jctx *c, const cJSON *j, int depth) {
    if (depth > 100) jj_fail(c, PL_EUNSUPPORTED, 0, 0, "variables nested more than 100 levels");
    if (!j || cJSON_IsNull(j)) return jj_v_none();
    if (cJSON_IsBool(j)) return jj_v_bool(cJSON_IsTrue(j));
    if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (d == floor(d) && fabs(d) < 9007199254740992.0) return jj_v_int((int64_t)d);
        return jj_v_float(d);
    }
    if (cJSON_IsString(j)) return v_cstr(j->valuestring ? j->valuestring : "");
    if (cJSON_IsArray(j)) {
        jv v = jj_v_list(c, (size_t)cJSON_GetArraySize(j));
        size_t i = 0;
        for (const cJSON *e = j->child; e; e = e->next) v.u.l->v[i++] = jj_from_json(c, e, depth + 1);
        return v;
    }
    if (cJSON_IsObject(j)) {
        jv v = jj_v_dict(c);
        for (const cJSON *e = j->child; e; e = e->next)
            if (e->string) jj_dict_set(c, v.u.d, e->string, strlen(e->string), jj_from_json(c, e, depth + 1));
        return v;
    }
    return jj_v_none();
}
