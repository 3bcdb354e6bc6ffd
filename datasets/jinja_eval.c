/* jinja_eval.c: rendering a parsed template: variable frames, lookups,
 * items and attributes, slices, comparison and arithmetic, statements. */
#include "jinja_int.h"

#include <ctype.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ evaluator */

static void step(jctx *c, jnode *n) {
    if (++c->steps > c->max_steps)
        jj_fail(c, PL_ERANGE, n->line, n->col, "template ran more than %llu steps (runaway loop?)", (unsigned long long)c->max_steps);
}

void jj_emit(jctx *c, jnode *n, const char *s, size_t len) {
    if (c->out_n + len > c->max_out)
        jj_fail(c, PL_ERANGE, n->line, n->col, "output exceeds %zu bytes", c->max_out);
    if (c->out_n + len + 1 > c->out_cap) {
        size_t nc = c->out_cap ? c->out_cap * 2 : 4096;
        while (nc < c->out_n + len + 1) nc *= 2;
        char *np = realloc(c->out, nc);
        if (!np) jj_fail(c, PL_ENOMEM, n->line, n->col, "out of memory for the output");
        c->out = np;
        c->out_cap = nc;
    }
    if (len) memcpy(c->out + c->out_n, s, len);
    c->out_n += len;
    c->out[c->out_n] = 0;
}

void jj_push_frame(jctx *c, jnode *at) {
    if (c->nframes == c->capframes) {
        int nc = c->capframes ? c->capframes * 2 : 16;
        if (nc > 4096) jj_fail(c, PL_ERANGE, at->line, at->col, "loops nested too deeply");
        jdict **nf = jj_alloc(c, (size_t)nc * sizeof *nf);
        if (c->nframes) memcpy(nf, c->frames, (size_t)c->nframes * sizeof *nf);
        c->frames = nf;
        c->capframes = nc;
    }
    jdict *d = jj_alloc(c, sizeof *d);
    memset(d, 0, sizeof *d);
    c->frames[c->nframes++] = d;
}

static jv lookup(jctx *c, const char *k, size_t n) {
    for (int i = c->nframes - 1; i >= 0; i--) {
        jv *v = jj_dict_get(c->frames[i], k, n);
        if (v) return *v;
    }
    static const struct { const char *nm; int fn; } globals[] = {
        {"raise_exception", FN_RAISE}, {"strftime_now", FN_STRFTIME}, {"namespace", FN_NAMESPACE},
        {"range", FN_RANGE}, {"dict", FN_DICT}};
    for (size_t i = 0; i < sizeof globals / sizeof *globals; i++)
        if (strlen(globals[i].nm) == n && !memcmp(globals[i].nm, k, n)) {
            jv v = {0};
            v.t = JV_FUNC;
            v.u.i = globals[i].fn;
            return v;
        }
    return jj_v_undef(k, n);
}

_Noreturn void jj_undef_err(jctx *c, jnode *n, jv v) {
    if (v.u.s.p) jj_fail(c, PL_EINVAL, n->line, n->col, "'%.*s' is undefined", (int)(v.u.s.n > 80 ? 80 : v.u.s.n), v.u.s.p);
    jj_fail(c, PL_EINVAL, n->line, n->col, "value is undefined");
}

int64_t jj_as_int(jctx *c, jnode *n, jv v, const char *what) {
    if (v.t == JV_INT || v.t == JV_BOOL) return v.u.i;
    if (v.t == JV_UNDEF) jj_undef_err(c, n, v);
    jj_fail(c, PL_EINVAL, n->line, n->col, "%s must be an integer, not %s", what, jj_type_name(v));
}

/* Item access: lists by index, dicts by key, strings by code point. */
static jv get_item(jctx *c, jnode *n, jv o, jv k) {
    if (o.t == JV_UNDEF) jj_undef_err(c, n, o);
    if (o.t == JV_DICT) {
        if (k.t != JV_STR) return jj_v_undef(NULL, 0);
        jv *e = jj_dict_get(o.u.d, k.u.s.p, k.u.s.n);
        return e ? *e : jj_v_undef(k.u.s.p, k.u.s.n);
    }
    if (o.t == JV_LIST) {
        if (k.t != JV_INT && k.t != JV_BOOL) return jj_v_undef(NULL, 0);
        int64_t i = k.u.i, len = (int64_t)o.u.l->n;
        if (i < 0) i += len;
        if (i < 0 || i >= len) return jj_v_undef(NULL, 0);
        return o.u.l->v[i];
    }
    if (o.t == JV_STR) {
        if (k.t != JV_INT && k.t != JV_BOOL) return jj_v_undef(NULL, 0);
        int64_t len = (int64_t)jj_u8_count(o.u.s.p, o.u.s.n), i = k.u.i;
        if (i < 0) i += len;
        if (i < 0 || i >= len) return jj_v_undef(NULL, 0);
        size_t off = 0, l = 0;
        for (int64_t q = 0; q <= i; q++) {
            off += l;
            jj_u8_dec((const unsigned char *)o.u.s.p + off, o.u.s.n - off, &l);
        }
        return jj_v_str(o.u.s.p + off, l);
    }
    return jj_v_undef(NULL, 0);
}

jv jj_get_attr(jctx *c, jnode *n, jv o, const char *name, size_t nn) {
    if (o.t == JV_UNDEF) jj_undef_err(c, n, o);
    if (nn > 0 && name[0] == '_') jj_fail(c, PL_EINVAL, n->line, n->col, "access to attribute '%.*s' is unsafe", (int)nn, name);
    if (o.t == JV_DICT) {
        jv *e = jj_dict_get(o.u.d, name, nn);
        return e ? *e : jj_v_undef(name, nn);
    }
    return jj_v_undef(name, nn);
}

static void slice_idx(int64_t len, jv lo, jv hi, int64_t stp, int64_t *a, int64_t *b) {
    /* Python slice.indices */
    int64_t lo_d = stp > 0 ? 0 : len - 1, hi_d = stp > 0 ? len : -1;
    int64_t x = lo_d, y = hi_d;
    if (lo.t == JV_INT || lo.t == JV_BOOL) {
        x = lo.u.i;
        if (x < 0) { x += len; if (x < 0) x = stp > 0 ? 0 : -1; }
        else if (x >= len) x = stp > 0 ? len : len - 1;
    }
    if (hi.t == JV_INT || hi.t == JV_BOOL) {
        y = hi.u.i;
        if (y < 0) { y += len; if (y < 0) y = stp > 0 ? 0 : -1; }
        else if (y >= len) y = stp > 0 ? len : len - 1;
    }
    *a = x;
    *b = y;
}

static jv do_slice(jctx *c, jnode *n, jv o, jv lo, jv hi, jv st) {
    int64_t stp = 1;
    if (st.t != JV_UNDEF && st.t != JV_NONE) stp = jj_as_int(c, n, st, "slice step");
    if (stp == 0) jj_fail(c, PL_EINVAL, n->line, n->col, "slice step cannot be zero");
    if (lo.t != JV_UNDEF && lo.t != JV_NONE) jj_as_int(c, n, lo, "slice start");
    if (hi.t != JV_UNDEF && hi.t != JV_NONE) jj_as_int(c, n, hi, "slice end");
    if (o.t == JV_UNDEF) jj_undef_err(c, n, o);
    if (o.t == JV_LIST) {
        int64_t len = (int64_t)o.u.l->n, a, b;
        slice_idx(len, lo, hi, stp, &a, &b);
        size_t cnt = 0;
        for (int64_t i = a; stp > 0 ? i < b : i > b; i += stp) cnt++;
        jv r = jj_v_list(c, cnt);
        r.flag = o.flag;
        size_t k = 0;
        for (int64_t i = a; stp > 0 ? i < b : i > b; i += stp) r.u.l->v[k++] = o.u.l->v[i];
        return r;
    }
    if (o.t == JV_STR) {
        size_t ncp = jj_u8_count(o.u.s.p, o.u.s.n);
        size_t *offs = jj_alloc(c, (ncp + 1) * sizeof(size_t));
        size_t off = 0, l, q = 0;
        while (off < o.u.s.n) { offs[q++] = off; jj_u8_dec((const unsigned char *)o.u.s.p + off, o.u.s.n - off, &l); off += l; }
        offs[q] = o.u.s.n;
        int64_t a, b;
        slice_idx((int64_t)ncp, lo, hi, stp, &a, &b);
        sb s = {c, 0, 0, 0};
        for (int64_t i = a; stp > 0 ? i < b : i > b; i += stp) jj_sb_put(&s, o.u.s.p + offs[i], offs[i + 1] - offs[i]);
        return jj_sb_val(&s);
    }
    jj_fail(c, PL_EINVAL, n->line, n->col, "cannot slice a %s", jj_type_name(o));
}

int jj_cmp_order(jctx *c, jnode *n, jv a, jv b) {
    int an = a.t == JV_INT || a.t == JV_FLOAT || a.t == JV_BOOL, bn = b.t == JV_INT || b.t == JV_FLOAT || b.t == JV_BOOL;
    if (an && bn) {
        if (a.t != JV_FLOAT && b.t != JV_FLOAT) return a.u.i < b.u.i ? -1 : a.u.i > b.u.i;
        double x = a.t == JV_FLOAT ? a.u.f : (double)a.u.i, y = b.t == JV_FLOAT ? b.u.f : (double)b.u.i;
        return x < y ? -1 : x > y;
    }
    if (a.t == JV_STR && b.t == JV_STR) {
        size_t m = a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n;
        int r = memcmp(a.u.s.p, b.u.s.p, m);
        if (r) return r < 0 ? -1 : 1;
        return a.u.s.n < b.u.s.n ? -1 : a.u.s.n > b.u.s.n;
    }
    if (a.t == JV_UNDEF) jj_undef_err(c, n, a);
    if (b.t == JV_UNDEF) jj_undef_err(c, n, b);
    jj_fail(c, PL_EINVAL, n->line, n->col, "cannot order %s and %s", jj_type_name(a), jj_type_name(b));
}

int jj_contains(jctx *c, jnode *n, jv hay, jv x) {
    if (hay.t == JV_STR) {
        if (x.t != JV_STR) jj_fail(c, PL_EINVAL, n->line, n->col, "'in <string>' requires a string, not %s", jj_type_name(x));
        if (x.u.s.n == 0) return 1;
        if (x.u.s.n > hay.u.s.n) return 0;
        return memmem(hay.u.s.p, hay.u.s.n, x.u.s.p, x.u.s.n) != NULL;
    }
    if (hay.t == JV_LIST) {
        for (size_t i = 0; i < hay.u.l->n; i++)
            if (jj_v_eq(hay.u.l->v[i], x)) return 1;
        return 0;
    }
    if (hay.t == JV_DICT) return x.t == JV_STR && jj_dict_get(hay.u.d, x.u.s.p, x.u.s.n) != NULL;
    if (hay.t == JV_UNDEF) jj_undef_err(c, n, hay);
    jj_fail(c, PL_EINVAL, n->line, n->col, "argument of type %s is not iterable", jj_type_name(hay));
}


static jv arith(jctx *c, jnode *n, int op, jv a, jv b) {
    if (op == OP_CAT) {
        sb s = {c, 0, 0, 0};
        jj_to_str(&s, a, 0);
        jj_to_str(&s, b, 0);
        return jj_sb_val(&s);
    }
    if (a.t == JV_UNDEF) jj_undef_err(c, n, a);
    if (b.t == JV_UNDEF) jj_undef_err(c, n, b);
    if (op == OP_ADD && a.t == JV_STR && b.t == JV_STR) {
        sb s = {c, 0, 0, 0};
        jj_sb_put(&s, a.u.s.p, a.u.s.n);
        jj_sb_put(&s, b.u.s.p, b.u.s.n);
        return jj_sb_val(&s);
    }
    if (op == OP_ADD && a.t == JV_LIST && b.t == JV_LIST) {
        jv r = jj_v_list(c, a.u.l->n + b.u.l->n);
        if (a.u.l->n) memcpy(r.u.l->v, a.u.l->v, a.u.l->n * sizeof(jv));
        if (b.u.l->n) memcpy(r.u.l->v + a.u.l->n, b.u.l->v, b.u.l->n * sizeof(jv));
        return r;
    }
    if (op == OP_MUL && ((a.t == JV_STR && (b.t == JV_INT || b.t == JV_BOOL)) || (b.t == JV_STR && (a.t == JV_INT || a.t == JV_BOOL)))) {
        jv s = a.t == JV_STR ? a : b;
        int64_t k = a.t == JV_STR ? b.u.i : a.u.i;
        sb o = {c, 0, 0, 0};
        if (k > 0 && s.u.s.n && (uint64_t)k > (c->max_out / s.u.s.n) + 1)
            jj_fail(c, PL_ERANGE, n->line, n->col, "string repetition too large");
        for (int64_t i = 0; i < k; i++) jj_sb_put(&o, s.u.s.p, s.u.s.n);
        return jj_sb_val(&o);
    }
    if (!jj_is_num(a) || !jj_is_num(b)) {
        static const char *sym[] = {"", "+", "-", "*", "/", "//", "%", "**"};
        jj_fail(c, PL_EINVAL, n->line, n->col, "unsupported operand types for %s: %s and %s", sym[op], jj_type_name(a), jj_type_name(b));
    }
    if (a.t != JV_FLOAT && b.t != JV_FLOAT && op != OP_DIV) {
        int64_t x = a.u.i, y = b.u.i, r;
        switch (op) {
        case OP_ADD: if (__builtin_add_overflow(x, y, &r)) goto ovf; return jj_v_int(r);
        case OP_SUB: if (__builtin_sub_overflow(x, y, &r)) goto ovf; return jj_v_int(r);
        case OP_MUL: if (__builtin_mul_overflow(x, y, &r)) goto ovf; return jj_v_int(r);
        case OP_FDIV: case OP_MOD: {
            if (y == 0) jj_fail(c, PL_EINVAL, n->line, n->col, "integer division or modulo by zero");
            if (x == INT64_MIN && y == -1) goto ovf;
            int64_t q = x / y, m = x % y;
            if (m != 0 && ((m < 0) != (y < 0))) { q--; m += y; }
            return jj_v_int(op == OP_FDIV ? q : m);
        }
        case OP_POW: {
            if (y < 0) return jj_v_float(pow((double)x, (double)y));
            int64_t acc = 1;
            for (int64_t i = 0; i < y; i++) {
                if (__builtin_mul_overflow(acc, x, &acc)) goto ovf;
                if (acc == 0 || acc == 1) break;
            }
            return jj_v_int(acc);
        }
        }
    ovf:
        jj_fail(c, PL_ERANGE, n->line, n->col, "integer overflow");
    }
    double x = jj_as_num(a), y = jj_as_num(b);
    switch (op) {
    case OP_ADD: return jj_v_float(x + y);
    case OP_SUB: return jj_v_float(x - y);
    case OP_MUL: return jj_v_float(x * y);
    case OP_DIV: if (y == 0) jj_fail(c, PL_EINVAL, n->line, n->col, "division by zero"); return jj_v_float(x / y);
    case OP_FDIV: if (y == 0) jj_fail(c, PL_EINVAL, n->line, n->col, "division by zero"); return jj_v_float(floor(x / y));
    case OP_MOD: {
        if (y == 0) jj_fail(c, PL_EINVAL, n->line, n->col, "modulo by zero");
        double m = fmod(x, y);
        if (m != 0 && ((m < 0) != (y < 0))) m += y;
        return jj_v_float(m);
    }
    default: return jj_v_float(pow(x, y));
    }
}

/* Iterate: lists, dict keys, string characters; undefined is empty. */
jv jj_as_iter(jctx *c, jnode *n, jv v) {
    if (v.t == JV_LIST) return v;
    if (v.t == JV_UNDEF) return jj_v_list(c, 0);
    if (v.t == JV_DICT && !v.flag) {
        jv r = jj_v_list(c, v.u.d->n);
        for (size_t i = 0; i < v.u.d->n; i++) r.u.l->v[i] = jj_v_str(v.u.d->kp[i], v.u.d->kn[i]);
        return r;
    }
    if (v.t == JV_STR) {
        jv r = jj_v_list(c, jj_u8_count(v.u.s.p, v.u.s.n));
        size_t off = 0, l, k = 0;
        while (off < v.u.s.n) {
            jj_u8_dec((const unsigned char *)v.u.s.p + off, v.u.s.n - off, &l);
            r.u.l->v[k++] = jj_v_str(v.u.s.p + off, l);
            off += l;
        }
        return r;
    }
    jj_fail(c, PL_EINVAL, n->line, n->col, "a %s is not iterable", jj_type_name(v));
}

jv jj_eval(jctx *c, jnode *n) {
    step(c, n);
    switch (n->kind) {
    case E_LIT: return n->lit;
    case E_NAME: return lookup(c, n->name, n->name_n);
    case E_ATTR: return jj_get_attr(c, n, jj_eval(c, n->a), n->name, n->name_n);
    case E_ITEM: {
        jv o = jj_eval(c, n->a);
        jv k = jj_eval(c, n->b);
        if (o.t == JV_UNDEF) jj_undef_err(c, n->a, o);
        return get_item(c, n, o, k);
    }
    case E_SLICE: {
        jv o = jj_eval(c, n->a);
        jv lo = n->b ? jj_eval(c, n->b) : jj_v_none();
        jv hi = n->c ? jj_eval(c, n->c) : jj_v_none();
        jv st = n->d ? jj_eval(c, n->d) : jj_v_none();
        return do_slice(c, n, o, lo, hi, st);
    }
    case E_CALL: {
        if (n->a->kind == E_ATTR) {
            jv o = jj_eval(c, n->a->a);
            jargs a = jj_eval_args(c, n);
            return jj_method_call(c, n, o, n->a->name, n->a->name_n, &a);
        }
        jv f = jj_eval(c, n->a);
        if (f.t != JV_FUNC) {
            if (f.t == JV_UNDEF) jj_undef_err(c, n->a, f);
            jj_fail(c, PL_EINVAL, n->line, n->col, "a %s is not callable", jj_type_name(f));
        }
        jargs a = jj_eval_args(c, n);
        return jj_call_global(c, n, (int)f.u.i, &a);
    }
    case E_FILTER: {
        jv v = jj_eval(c, n->a);
        jargs a = jj_eval_args(c, n);
        return jj_filter(c, n, v, &a);
    }
    case E_TEST: {
        jv v = jj_eval(c, n->a);
        jargs a = jj_eval_args(c, n);
        int r = jj_run_test(c, n, v, n->name, n->name_n, &a);
        return jj_v_bool(n->op ? !r : r);
    }
    case E_BIN: {
        jv a = jj_eval(c, n->a);
        jv b = jj_eval(c, n->b);
        return arith(c, n, n->op, a, b);
    }
    case E_NEG: case E_POS: {
        jv a = jj_eval(c, n->a);
        if (a.t == JV_FLOAT) return jj_v_float(n->kind == E_NEG ? -a.u.f : a.u.f);
        int64_t x = jj_as_int(c, n, a, "unary operand");
        if (n->kind == E_NEG && x == INT64_MIN) jj_fail(c, PL_ERANGE, n->line, n->col, "integer overflow");
        return jj_v_int(n->kind == E_NEG ? -x : x);
    }
    case E_NOT: return jj_v_bool(!jj_truthy(jj_eval(c, n->a)));
    case E_AND: {
        jv a = jj_eval(c, n->a);
        return jj_truthy(a) ? jj_eval(c, n->b) : a;
    }
    case E_OR: {
        jv a = jj_eval(c, n->a);
        return jj_truthy(a) ? a : jj_eval(c, n->b);
    }
    case E_COND:
        if (jj_truthy(jj_eval(c, n->b))) return jj_eval(c, n->a);
        return n->c ? jj_eval(c, n->c) : jj_v_undef(NULL, 0);
    case E_LIST: case E_TUPLE: {
        jv r = jj_v_list(c, (size_t)n->nkids);
        r.flag = n->kind == E_TUPLE;
        for (int i = 0; i < n->nkids; i++) r.u.l->v[i] = jj_eval(c, n->kids[i]);
        return r;
    }
    case E_DICT: {
        jv d = jj_v_dict(c);
        for (int i = 0; i < n->nkids; i++) {
            jv k = jj_eval(c, n->kids[i]);
            if (k.t != JV_STR) jj_fail(c, PL_EUNSUPPORTED, n->kids[i]->line, n->kids[i]->col, "dict keys must be strings here, not %s", jj_type_name(k));
            jj_dict_set(c, d.u.d, k.u.s.p, k.u.s.n, jj_eval(c, n->kids2[i]));
        }
        return d;
    }
    case E_CMP: {
        jv a = jj_eval(c, n->a);
        for (int i = 0; i < n->nkids; i++) {
            jv b = jj_eval(c, n->kids[i]);
            int r;
            switch (n->ops[i]) {
            case OP_EQ: r = jj_v_eq(a, b); break;
            case OP_NE: r = !jj_v_eq(a, b); break;
            case OP_LT: r = jj_cmp_order(c, n, a, b) < 0; break;
            case OP_LE: r = jj_cmp_order(c, n, a, b) <= 0; break;
            case OP_GT: r = jj_cmp_order(c, n, a, b) > 0; break;
            case OP_GE: r = jj_cmp_order(c, n, a, b) >= 0; break;
            case OP_IN: r = jj_contains(c, n, b, a); break;
            default: r = !jj_contains(c, n, b, a); break;
            }
            if (!r) return jj_v_bool(0);
            a = b;
        }
        return jj_v_bool(1);
    }
    }
    jj_fail(c, PL_EUNSUPPORTED, n->line, n->col, "internal: bad expression node %d", n->kind);
}

void jj_set_var(jctx *c, const char *k, size_t n, jv v) { jj_dict_set(c, c->frames[c->nframes - 1], k, n, v); }

static void exec_for(jctx *c, jnode *n) {
    jv it = jj_as_iter(c, n->a, jj_eval(c, n->a));
    jlist *src = it.u.l;
    /* apply the loop filter first: loop.length counts the filtered items */
    jv *items = src->v;
    size_t cnt = src->n;
    if (n->b) {
        items = cnt ? jj_alloc(c, cnt * sizeof(jv)) : NULL;
        size_t k = 0;
        for (size_t i = 0; i < src->n; i++) {
            jj_push_frame(c, n);
            jv e = src->v[i];
            if (n->nkw == 1) jj_set_var(c, n->kwn[0], n->kwl[0], e);
            else if (e.t == JV_LIST && e.u.l->n == (size_t)n->nkw)
                for (int t = 0; t < n->nkw; t++) jj_set_var(c, n->kwn[t], n->kwl[t], e.u.l->v[t]);
            int ok = jj_truthy(jj_eval(c, n->b));
            c->nframes--;
            if (ok) items[k++] = e;
        }
        cnt = k;
    }
    if (cnt == 0) {
        if (n->d) jj_exec_body(c, n->d);
        return;
    }
    for (size_t i = 0; i < cnt; i++) {
        step(c, n);
        jj_push_frame(c, n);
        jv e = items[i];
        if (n->nkw == 1) jj_set_var(c, n->kwn[0], n->kwl[0], e);
        else {
            if (e.t != JV_LIST || e.u.l->n != (size_t)n->nkw)
                jj_fail(c, PL_EINVAL, n->line, n->col, "cannot unpack a %s into %d loop variables", jj_type_name(e), n->nkw);
            for (int t = 0; t < n->nkw; t++) jj_set_var(c, n->kwn[t], n->kwl[t], e.u.l->v[t]);
        }
        jv loop = jj_v_dict(c);
        jdict *d = loop.u.d;
        jj_dict_set(c, d, "index0", 6, jj_v_int((int64_t)i));
        jj_dict_set(c, d, "index", 5, jj_v_int((int64_t)i + 1));
        jj_dict_set(c, d, "revindex0", 9, jj_v_int((int64_t)(cnt - 1 - i)));
        jj_dict_set(c, d, "revindex", 8, jj_v_int((int64_t)(cnt - i)));
        jj_dict_set(c, d, "first", 5, jj_v_bool(i == 0));
        jj_dict_set(c, d, "last", 4, jj_v_bool(i + 1 == cnt));
        jj_dict_set(c, d, "length", 6, jj_v_int((int64_t)cnt));
        jj_dict_set(c, d, "depth", 5, jj_v_int(1));
        jj_dict_set(c, d, "depth0", 6, jj_v_int(0));
        if (i > 0) jj_dict_set(c, d, "previtem", 8, items[i - 1]);
        if (i + 1 < cnt) jj_dict_set(c, d, "nextitem", 8, items[i + 1]);
        jj_set_var(c, "loop", 4, loop);
        jj_exec_body(c, n->c);
        c->nframes--;
        if (c->brk == 1) { c->brk = 0; break; }
        if (c->brk == 2) c->brk = 0;
    }
}

void jj_exec_body(jctx *c, jnode *body) {
    for (int i = 0; i < body->nkids; i++) {
        jnode *n = body->kids[i];
        step(c, n);
        switch (n->kind) {
        case N_TEXT: jj_emit(c, n, n->name, n->name_n); break;
        case N_OUT: {
            jv v = jj_eval(c, n->a);
            if (v.t == JV_STR) jj_emit(c, n, v.u.s.p, v.u.s.n);
            else {
                jv s = jj_str_of(c, v);
                jj_emit(c, n, s.u.s.p, s.u.s.n);
            }
            break;
        }
        case N_IF: {
            jnode *cur = n;
            while (cur) {
                if (jj_truthy(jj_eval(c, cur->a))) { jj_exec_body(c, cur->b); break; }
                if (cur->c && cur->c->kind == N_IF) { cur = cur->c; continue; }
                if (cur->c) jj_exec_body(c, cur->c);
                break;
            }
            break;
        }
        case N_FOR: exec_for(c, n); break;
        case N_SET: {
            jv v = jj_eval(c, n->a);
            if (n->op) {
                jv ns = lookup(c, n->name, n->name_n);
                if (ns.t != JV_DICT || !ns.flag)
                    jj_fail(c, PL_EINVAL, n->line, n->col, "cannot assign attribute on a %s ('%.*s' is not a namespace)",
                          jj_type_name(ns), (int)n->name_n, n->name);
                if (n->kwl[0] > 0 && n->kwn[0][0] == '_') jj_fail(c, PL_EINVAL, n->line, n->col, "namespace attribute names cannot start with '_'");
                jj_dict_set(c, ns.u.d, n->kwn[0], n->kwl[0], v);
            } else {
                jj_set_var(c, n->name, n->name_n, v);
            }
            break;
        }
        case N_SETBLOCK: {
            /* render the body at the end of the output, take it as a string, cut it off
             * again: the output buffer never leaves c, so an error inside the body
             * (a longjmp) loses nothing */
            size_t start = c->out_n;
            jj_exec_body(c, n->a);
            size_t len = c->out_n - start;
            jv v = jj_v_str(jj_strdup(c, c->out ? c->out + start : "", len), len);
            c->out_n = start;
            if (c->out) c->out[start] = 0;
            jj_set_var(c, n->name, n->name_n, v);
            break;
        }
        case N_BREAK: case N_CONTINUE: {
            int in_loop = 0;
            for (int f = c->nframes - 1; f >= 2 && !in_loop; f--) in_loop = jj_dict_get(c->frames[f], "loop", 4) != NULL;
            if (!in_loop) jj_fail(c, PL_EFORMAT, n->line, n->col, "'%s' outside a loop", n->kind == N_BREAK ? "break" : "continue");
            c->brk = n->kind == N_BREAK ? 1 : 2;
            return;
        }
        case N_BODY: jj_exec_body(c, n); break;
        default: jj_fail(c, PL_EUNSUPPORTED, n->line, n->col, "internal: bad statement node %d", n->kind);
        }
        if (c->brk) return;
    }
}
