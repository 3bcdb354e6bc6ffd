/* jinja_parse.c: the recursive-descent parser from tokens to the node
 * tree (statements and expressions, Jinja's operator precedence). */
#include "jinja_int.h"

#include <ctype.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ parser */

static jtok *peek(jctx *c) { return &c->toks[c->tp]; }
static jtok *peek2(jctx *c) { return &c->toks[c->tp + 1 < c->ntok ? c->tp + 1 : c->tp]; }
static jtok *next(jctx *c) {
    jtok *t = &c->toks[c->tp];
    if (c->tp + 1 < c->ntok) c->tp++;
    return t;
}
static int is_op(jtok *t, const char *op) { return t->type == T_OP && t->n == strlen(op) && !memcmp(t->p, op, t->n); }
static int is_name(jtok *t, const char *nm) { return t->type == T_NAME && t->n == strlen(nm) && !memcmp(t->p, nm, t->n); }

static const char *tok_desc(jtok *t, char *buf, size_t cap) {
    switch (t->type) {
    case T_EOF: return "end of template";
    case T_TEXT: return "template text";
    case T_VBEGIN: return "'{{'";
    case T_VEND: return "'}}'";
    case T_BBEGIN: return "'{%'";
    case T_BEND: return "'%}'";
    case T_STR: return "a string";
    case T_INT: case T_FLOAT: return "a number";
    default: snprintf(buf, cap, "'%.*s'", (int)(t->n > 40 ? 40 : t->n), t->p); return buf;
    }
}

static _Noreturn void unexpected(jctx *c, jtok *t, const char *want) {
    char b[64];
    jj_fail(c, PL_EFORMAT, t->line, t->col, "expected %s, found %s", want, tok_desc(t, b, sizeof b));
}

static void expect_op(jctx *c, const char *op) {
    jtok *t = peek(c);
    if (!is_op(t, op)) {
        char w[16];
        snprintf(w, sizeof w, "'%s'", op);
        unexpected(c, t, w);
    }
    next(c);
}

static jnode *mk(jctx *c, int kind, jtok *at) {
    jnode *n = jj_alloc(c, sizeof *n);
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->line = at->line;
    n->col = at->col;
    return n;
}

typedef struct nvec {
    jnode **v;
    int n, cap;
} nvec;
static void nv_push(jctx *c, nvec *v, jnode *x) {
    if (v->n == v->cap) {
        int nc = v->cap ? v->cap * 2 : 8;
        jnode **nn = jj_alloc(c, (size_t)nc * sizeof *nn);
        if (v->n) memcpy(nn, v->v, (size_t)v->n * sizeof *nn);
        v->v = nn;
        v->cap = nc;
    }
    v->v[v->n++] = x;
}

static jnode *parse_expr(jctx *c);
static jnode *parse_or(jctx *c);
static jnode *parse_unary(jctx *c, int with_filter);

static void enter(jctx *c, jtok *t) {
    if (++c->depth > 200) jj_fail(c, PL_EUNSUPPORTED, t->line, t->col, "expression nested too deeply (more than 200 levels)");
}

/* Call arguments after '(' : positional and name=value. */
static void parse_args(jctx *c, jnode *n) {
    nvec pos = {0}, kv = {0};
    const char **kn = NULL;
    size_t *kl = NULL;
    int nk = 0, capk = 0;
    while (!is_op(peek(c), ")")) {
        if (pos.n + nk > 0) {
            expect_op(c, ",");
            if (is_op(peek(c), ")")) break;
        }
        jtok *t = peek(c);
        if (t->type == T_NAME && is_op(peek2(c), "=")) {
            next(c);
            next(c);
            if (nk == capk) {
                int nc = capk ? capk * 2 : 4;
                const char **nn = jj_alloc(c, (size_t)nc * sizeof *nn);
                size_t *nl = jj_alloc(c, (size_t)nc * sizeof *nl);
                if (nk) { memcpy(nn, kn, (size_t)nk * sizeof *nn); memcpy(nl, kl, (size_t)nk * sizeof *nl); }
                kn = nn; kl = nl; capk = nc;
            }
            kn[nk] = t->p;
            kl[nk] = t->n;
            nk++;
            nv_push(c, &kv, parse_expr(c));
        } else {
            if (nk) jj_fail(c, PL_EFORMAT, t->line, t->col, "positional argument after keyword argument");
            nv_push(c, &pos, parse_expr(c));
        }
    }
    next(c); /* ')' */
    n->kids = pos.v;
    n->nkids = pos.n;
    n->kids2 = kv.v;
    n->nkids2 = kv.n;
    n->kwn = kn;
    n->kwl = kl;
    n->nkw = nk;
}

static jnode *parse_primary(jctx *c) {
    jtok *t = next(c);
    jnode *n;
    char b[64];
    switch (t->type) {
    case T_STR: {
        n = mk(c, E_LIT, t);
        n->lit.t = JV_STR;
        /* adjacent string literals concatenate */
        size_t len = t->n;
        const char *p = t->p;
        while (peek(c)->type == T_STR) {
            jtok *u = next(c);
            char *q = jj_alloc(c, len + u->n + 1);
            memcpy(q, p, len);
            memcpy(q + len, u->p, u->n);
            q[len + u->n] = 0;
            p = q;
            len += u->n;
        }
        n->lit.u.s.p = p;
        n->lit.u.s.n = len;
        return n;
    }
    case T_INT:
        n = mk(c, E_LIT, t);
        n->lit.t = JV_INT;
        n->lit.u.i = t->i;
        return n;
    case T_FLOAT:
        n = mk(c, E_LIT, t);
        n->lit.t = JV_FLOAT;
        n->lit.u.f = t->f;
        return n;
    case T_NAME:
        n = mk(c, E_LIT, t);
        if (is_name(t, "true") || is_name(t, "True")) { n->lit.t = JV_BOOL; n->lit.u.i = 1; return n; }
        if (is_name(t, "false") || is_name(t, "False")) { n->lit.t = JV_BOOL; n->lit.u.i = 0; return n; }
        if (is_name(t, "none") || is_name(t, "None")) { n->lit.t = JV_NONE; return n; }
        n->kind = E_NAME;
        n->name = t->p;
        n->name_n = t->n;
        return n;
    case T_OP:
        if (is_op(t, "(")) {
            if (is_op(peek(c), ")")) {
                next(c);
                n = mk(c, E_TUPLE, t);
                return n;
            }
            jnode *e = parse_expr(c);
            if (is_op(peek(c), ",")) {
                nvec v = {0};
                nv_push(c, &v, e);
                while (is_op(peek(c), ",")) {
                    next(c);
                    if (is_op(peek(c), ")")) break;
                    nv_push(c, &v, parse_expr(c));
                }
                n = mk(c, E_TUPLE, t);
                n->kids = v.v;
                n->nkids = v.n;
                e = n;
            }
            expect_op(c, ")");
            return e;
        }
        if (is_op(t, "[")) {
            nvec v = {0};
            while (!is_op(peek(c), "]")) {
                if (v.n) {
                    expect_op(c, ",");
                    if (is_op(peek(c), "]")) break;
                }
                nv_push(c, &v, parse_expr(c));
            }
            next(c);
            n = mk(c, E_LIST, t);
            n->kids = v.v;
            n->nkids = v.n;
            return n;
        }
        if (is_op(t, "{")) {
            nvec k = {0}, v = {0};
            while (!is_op(peek(c), "}")) {
                if (k.n) {
                    expect_op(c, ",");
                    if (is_op(peek(c), "}")) break;
                }
                nv_push(c, &k, parse_expr(c));
                expect_op(c, ":");
                nv_push(c, &v, parse_expr(c));
            }
            next(c);
            n = mk(c, E_DICT, t);
            n->kids = k.v;
            n->nkids = k.n;
            n->kids2 = v.v;
            n->nkids2 = v.n;
            return n;
        }
        /* fallthrough */
    default:
        jj_fail(c, PL_EFORMAT, t->line, t->col, "expected an expression, found %s", tok_desc(t, b, sizeof b));
    }
}

static jnode *parse_postfix(jctx *c, jnode *n) {
    for (;;) {
        jtok *t = peek(c);
        if (is_op(t, ".")) {
            next(c);
            jtok *nm = next(c);
            if (nm->type == T_INT) { /* x.0 as in Jinja: item 0 */
                jnode *m = mk(c, E_ITEM, nm);
                m->a = n;
                m->b = mk(c, E_LIT, nm);
                m->b->lit.t = JV_INT;
                m->b->lit.u.i = nm->i;
                n = m;
                continue;
            }
            if (nm->type != T_NAME) unexpected(c, nm, "an attribute name");
            jnode *m = mk(c, E_ATTR, nm);
            m->a = n;
            m->name = nm->p;
            m->name_n = nm->n;
            n = m;
        } else if (is_op(t, "[")) {
            next(c);
            jnode *lo = NULL, *hi = NULL, *st = NULL;
            int slice = 0;
            if (!is_op(peek(c), ":")) lo = parse_expr(c);
            if (is_op(peek(c), ":")) {
                slice = 1;
                next(c);
                if (!is_op(peek(c), "]") && !is_op(peek(c), ":")) hi = parse_expr(c);
                if (is_op(peek(c), ":")) {
                    next(c);
                    if (!is_op(peek(c), "]")) st = parse_expr(c);
                }
            }
            expect_op(c, "]");
            jnode *m = mk(c, slice ? E_SLICE : E_ITEM, t);
            m->a = n;
            m->b = lo;
            m->c = hi;
            m->d = st;
            if (!slice && !lo) jj_fail(c, PL_EFORMAT, t->line, t->col, "empty subscript");
            n = m;
        } else if (is_op(t, "(")) {
            next(c);
            jnode *m = mk(c, E_CALL, t);
            m->a = n;
            m->line = n->line; /* errors point at the callee */
            m->col = n->col;
            parse_args(c, m);
            n = m;
        } else {
            return n;
        }
    }
}

/* Filters (| name(args)) and tests (is [not] name(args)) after a unary. */
static jnode *parse_filters(jctx *c, jnode *n) {
    for (;;) {
        jtok *t = peek(c);
        if (is_op(t, "|")) {
            next(c);
            jtok *nm = next(c);
            if (nm->type != T_NAME) unexpected(c, nm, "a filter name");
            jnode *m = mk(c, E_FILTER, nm);
            m->a = n;
            m->name = nm->p;
            m->name_n = nm->n;
            if (is_op(peek(c), "(")) {
                next(c);
                parse_args(c, m);
            }
            n = m;
        } else if (is_name(t, "is")) {
            next(c);
            int neg = 0;
            if (is_name(peek(c), "not")) { next(c); neg = 1; }
            jtok *nm = next(c);
            if (nm->type != T_NAME) unexpected(c, nm, "a test name");
            jnode *m = mk(c, E_TEST, nm);
            m->a = n;
            m->op = neg;
            m->name = nm->p;
            m->name_n = nm->n;
            if (is_op(peek(c), "(")) {
                next(c);
                parse_args(c, m);
            } else {
                /* one bare argument: "is equalto 3", "is divisibleby 2" */
                jtok *u = peek(c);
                if (u->type == T_STR || u->type == T_INT || u->type == T_FLOAT ||
                    (u->type == T_NAME && !is_name(u, "and") && !is_name(u, "or") && !is_name(u, "else") &&
                     !is_name(u, "if") && !is_name(u, "is") && !is_name(u, "in") && !is_name(u, "not"))) {
                    jnode *arg = parse_postfix(c, parse_primary(c));
                    m->kids = jj_alloc(c, sizeof(jnode *));
                    m->kids[0] = arg;
                    m->nkids = 1;
                }
            }
            n = m;
        } else {
            return n;
        }
    }
}

static jnode *parse_unary(jctx *c, int with_filter) {
    jtok *t = peek(c);
    enter(c, t);
    jnode *n;
    if (is_op(t, "-") || is_op(t, "+")) {
        next(c);
        n = mk(c, is_op(t, "-") ? E_NEG : E_POS, t);
        n->a = parse_unary(c, 0);
    } else {
        n = parse_postfix(c, parse_primary(c));
    }
    if (with_filter) n = parse_filters(c, n);
    c->depth--;
    return n;
}

static jnode *bin(jctx *c, jtok *t, int op, jnode *a, jnode *b) {
    jnode *n = mk(c, E_BIN, t);
    n->op = op;
    n->a = a;
    n->b = b;
    return n;
}

static jnode *parse_pow(jctx *c) {
    jnode *n = parse_unary(c, 1);
    while (is_op(peek(c), "**")) {
        jtok *t = next(c);
        n = bin(c, t, OP_POW, n, parse_unary(c, 1));
    }
    return n;
}
static jnode *parse_math2(jctx *c) {
    jnode *n = parse_pow(c);
    for (;;) {
        jtok *t = peek(c);
        int op = is_op(t, "*") ? OP_MUL : is_op(t, "/") ? OP_DIV : is_op(t, "//") ? OP_FDIV : is_op(t, "%") ? OP_MOD : 0;
        if (!op) return n;
        next(c);
        n = bin(c, t, op, n, parse_pow(c));
    }
}
static jnode *parse_concat(jctx *c) {
    jnode *n = parse_math2(c);
    while (is_op(peek(c), "~")) {
        jtok *t = next(c);
        n = bin(c, t, OP_CAT, n, parse_math2(c));
    }
    return n;
}
static jnode *parse_math1(jctx *c) {
    jnode *n = parse_concat(c);
    for (;;) {
        jtok *t = peek(c);
        int op = is_op(t, "+") ? OP_ADD : is_op(t, "-") ? OP_SUB : 0;
        if (!op) return n;
        next(c);
        n = bin(c, t, op, n, parse_concat(c));
    }
}
static jnode *parse_compare(jctx *c) {
    jnode *first = parse_math1(c);
    nvec v = {0};
    int ops[64];
    int nops = 0;
    jtok *at = peek(c);
    for (;;) {
        jtok *t = peek(c);
        int op = is_op(t, "==") ? OP_EQ : is_op(t, "!=") ? OP_NE : is_op(t, "<") ? OP_LT : is_op(t, "<=") ? OP_LE
               : is_op(t, ">") ? OP_GT : is_op(t, ">=") ? OP_GE : is_name(t, "in") ? OP_IN : 0;
        if (!op && is_name(t, "not") && is_name(peek2(c), "in")) {
            next(c);
            op = OP_NOTIN;
        }
        if (!op) break;
        next(c);
        if (nops == 64) jj_fail(c, PL_EUNSUPPORTED, t->line, t->col, "comparison chain longer than 64");
        ops[nops++] = op;
        nv_push(c, &v, parse_math1(c));
    }
    if (!nops) return first;
    jnode *n = mk(c, E_CMP, at);
    n->a = first;
    n->kids = v.v;
    n->nkids = v.n;
    n->ops = jj_alloc(c, (size_t)nops * sizeof(int));
    memcpy(n->ops, ops, (size_t)nops * sizeof(int));
    return n;
}
static jnode *parse_not(jctx *c) {
    jtok *t = peek(c);
    if (is_name(t, "not")) {
        next(c);
        enter(c, t);
        jnode *n = mk(c, E_NOT, t);
        n->a = parse_not(c);
        c->depth--;
        return n;
    }
    return parse_compare(c);
}
static jnode *parse_and(jctx *c) {
    jnode *n = parse_not(c);
    while (is_name(peek(c), "and")) {
        jtok *t = next(c);
        jnode *m = mk(c, E_AND, t);
        m->a = n;
        m->b = parse_not(c);
        n = m;
    }
    return n;
}
static jnode *parse_or(jctx *c) {
    jnode *n = parse_and(c);
    while (is_name(peek(c), "or")) {
        jtok *t = next(c);
        jnode *m = mk(c, E_OR, t);
        m->a = n;
        m->b = parse_and(c);
        n = m;
    }
    return n;
}
/* expr [if cond [else expr]] */
static jnode *parse_expr(jctx *c) {
    jtok *t0 = peek(c);
    enter(c, t0);
    jnode *n = parse_or(c);
    while (is_name(peek(c), "if")) {
        jtok *t = next(c);
        jnode *m = mk(c, E_COND, t);
        m->a = n;
        m->b = parse_or(c);
        if (is_name(peek(c), "else")) {
            next(c);
            m->c = parse_expr(c);
        }
        n = m;
    }
    c->depth--;
    return n;
}

/* A tuple of expressions without parentheses (for/set targets use names). */
static void parse_targets(jctx *c, jnode *n) {
    const char **nm = jj_alloc(c, 8 * sizeof *nm);
    size_t *nl = jj_alloc(c, 8 * sizeof *nl);
    int k = 0;
    for (;;) {
        jtok *t = next(c);
        if (t->type != T_NAME) unexpected(c, t, "a variable name");
        if (k == 8) jj_fail(c, PL_EUNSUPPORTED, t->line, t->col, "more than 8 loop targets");
        nm[k] = t->p;
        nl[k] = t->n;
        k++;
        if (!is_op(peek(c), ",")) break;
        next(c);
    }
    n->kwn = nm;
    n->kwl = nl;
    n->nkw = k;
}

static void expect_bend(jctx *c) {
    jtok *t = peek(c);
    if (t->type != T_BEND) unexpected(c, t, "'%}'");
    next(c);
}

/* Parse statements until one of the end keywords (NULL-terminated list) is
 * the next block tag's keyword; *stop gets which (index) and the parser is
 * left just after that keyword. */

static jnode *parse_stmt(jctx *c, jtok *bb) {
    jtok *kw = next(c);
    char b[64];
    if (kw->type != T_NAME) unexpected(c, kw, "a statement keyword");
    if (is_name(kw, "if")) {
        jnode *n = mk(c, N_IF, kw);
        n->a = parse_expr(c);
        expect_bend(c);
        static const char *const ends[] = {"elif", "else", "endif", NULL};
        int which;
        jnode *cur = n;
        for (;;) {
            cur->b = jj_parse_body(c, ends, &which, kw);
            if (which == 0) { /* elif: a nested if in the else branch */
                jtok *el = &c->toks[c->tp - 1];
                jnode *m = mk(c, N_IF, el);
                m->a = parse_expr(c);
                expect_bend(c);
                cur->c = m;
                cur = m;
                continue;
            }
            if (which == 1) {
                expect_bend(c);
                static const char *const ends2[] = {"endif", NULL};
                cur->c = jj_parse_body(c, ends2, &which, kw);
            }
            expect_bend(c);
            return n;
        }
    }
    if (is_name(kw, "for")) {
        jnode *n = mk(c, N_FOR, kw);
        parse_targets(c, n);
        jtok *in = next(c);
        if (!is_name(in, "in")) unexpected(c, in, "'in'");
        n->a = parse_or(c); /* the iterable: no bare "x if y" here, as in Jinja */
        if (is_name(peek(c), "if")) {
            next(c);
            n->b = parse_expr(c);
        }
        if (is_name(peek(c), "recursive")) jj_fail(c, PL_EUNSUPPORTED, peek(c)->line, peek(c)->col, "recursive loops are not supported");
        expect_bend(c);
        static const char *const ends[] = {"else", "endfor", NULL};
        int which;
        n->c = jj_parse_body(c, ends, &which, kw);
        if (which == 0) {
            expect_bend(c);
            static const char *const ends2[] = {"endfor", NULL};
            n->d = jj_parse_body(c, ends2, &which, kw);
        }
        expect_bend(c);
        return n;
    }
    if (is_name(kw, "set")) {
        jtok *t = next(c);
        if (t->type != T_NAME) unexpected(c, t, "a variable name");
        jnode *n = mk(c, N_SET, kw);
        n->name = t->p;
        n->name_n = t->n;
        if (is_op(peek(c), ".")) { /* ns.attr */
            next(c);
            jtok *a = next(c);
            if (a->type != T_NAME) unexpected(c, a, "an attribute name");
            n->kwn = jj_alloc(c, sizeof(char *));
            n->kwl = jj_alloc(c, sizeof(size_t));
            n->kwn[0] = a->p;
            n->kwl[0] = a->n;
            n->nkw = 1;
            n->op = 1;
        } else if (is_op(peek(c), ",")) {
            jj_fail(c, PL_EUNSUPPORTED, t->line, t->col, "tuple assignment in set is not supported");
        }
        if (peek(c)->type == T_BEND && !n->op) {
            next(c);
            n->kind = N_SETBLOCK;
            static const char *const ends[] = {"endset", NULL};
            int which;
            n->a = jj_parse_body(c, ends, &which, kw);
            expect_bend(c);
            return n;
        }
        expect_op(c, "=");
        n->a = parse_expr(c);
        expect_bend(c);
        return n;
    }
    if (is_name(kw, "break") || is_name(kw, "continue")) {
        jnode *n = mk(c, is_name(kw, "break") ? N_BREAK : N_CONTINUE, kw);
        expect_bend(c);
        return n;
    }
    if (is_name(kw, "generation")) {
        expect_bend(c);
        static const char *const ends[] = {"endgeneration", NULL};
        int which;
        jnode *n = jj_parse_body(c, ends, &which, kw);
        expect_bend(c);
        return n;
    }
    (void)bb;
    jj_fail(c, PL_EUNSUPPORTED, kw->line, kw->col, "unsupported statement %s", tok_desc(kw, b, sizeof b));
}

jnode *jj_parse_body(jctx *c, const char *const *ends, int *stop, jtok *opener) {
    nvec v = {0};
    jtok *first = peek(c);
    for (;;) {
        jtok *t = peek(c);
        if (t->type == T_EOF) {
            if (ends) {
                char b[64];
                jj_fail(c, PL_EFORMAT, opener->line, opener->col, "%s opened here is never closed (expected '{%% %s %%}')",
                      tok_desc(opener, b, sizeof b), ends[0]);
            }
            break;
        }
        if (t->type == T_TEXT) {
            next(c);
            jnode *n = mk(c, N_TEXT, t);
            n->name = t->p;
            n->name_n = t->n;
            nv_push(c, &v, n);
        } else if (t->type == T_VBEGIN) {
            next(c);
            jnode *n = mk(c, N_OUT, t);
            n->a = parse_expr(c);
            jtok *e = next(c);
            if (e->type != T_VEND) unexpected(c, e, "'}}'");
            nv_push(c, &v, n);
        } else if (t->type == T_BBEGIN) {
            jtok *kw = peek2(c);
            int hit = -1;
            for (int i = 0; ends && ends[i]; i++)
                if (is_name(kw, ends[i])) hit = i;
            if (hit >= 0) {
                next(c);
                next(c);
                *stop = hit;
                break;
            }
            if (kw->type == T_NAME && (is_name(kw, "endif") || is_name(kw, "endfor") || is_name(kw, "else") ||
                                       is_name(kw, "elif") || is_name(kw, "endset") || is_name(kw, "endgeneration"))) {
                char b[64];
                jj_fail(c, PL_EFORMAT, kw->line, kw->col, "unexpected %s%s", tok_desc(kw, b, sizeof b),
                      ends ? "" : " (no block is open)");
            }
            next(c);
            c->depth++;
            if (c->depth > 200) jj_fail(c, PL_EUNSUPPORTED, t->line, t->col, "blocks nested too deeply (more than 200 levels)");
            nv_push(c, &v, parse_stmt(c, t));
            c->depth--;
        } else {
            char b[64];
            jj_fail(c, PL_EFORMAT, t->line, t->col, "unexpected %s", tok_desc(t, b, sizeof b));
        }
    }
    jnode *body = mk(c, N_BODY, first);
    body->kids = v.v;
    body->nkids = v.n;
    return body;
}
