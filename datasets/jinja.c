/* jinja.c: lexer, parser and evaluator for the Jinja2 subset chat templates use.
 *
 * Memory: the parsed template lives in one arena owned by pl_jinja; each
 * render allocates every intermediate value in a second arena freed when the
 * render ends, so values are plain structs passed by value and never freed
 * one by one. Errors anywhere (lexer, parser, evaluator) longjmp back to the
 * entry point with the message already written; nothing else owns memory.
 *
 * Whitespace follows Jinja's lexer with trim_blocks and lstrip_blocks on:
 * the source's newlines are normalized to \n and one trailing newline is
 * dropped; "{%-"/"{{-"/"{#-" strip all whitespace before the tag, "-%}" etc.
 * all whitespace after it; otherwise a block or comment tag that is alone on
 * its line (only spaces/tabs before it) takes that indentation away, and
 * "%}"/"#}" eat one newline right after. */
#include "jinja.h"

#include <ctype.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ arena */

typedef struct jchunk {
    struct jchunk *next;
    size_t cap, used;
    _Alignas(16) unsigned char data[];
} jchunk;

typedef struct jarena {
    jchunk *head;
    size_t total, cap;
} jarena;

typedef struct jctx jctx;
static _Noreturn void jfail(jctx *c, int code, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void arena_free(jarena *a) {
    jchunk *ch = a->head;
    while (ch) {
        jchunk *n = ch->next;
        free(ch);
        ch = n;
    }
    a->head = NULL;
    a->total = 0;
}

/* NULL when the cap is reached or malloc fails. */
static void *arena_alloc(jarena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    if (!a->head || a->head->cap - a->head->used < n) {
        size_t sz = n > 65536 ? n : 65536;
        if (a->total + sz > a->cap || a->total + sz < a->total) return NULL;
        jchunk *ch = malloc(sizeof(jchunk) + sz);
        if (!ch) return NULL;
        ch->cap = sz;
        ch->used = 0;
        ch->next = a->head;
        a->head = ch;
        a->total += sz;
    }
    void *p = a->head->data + a->head->used;
    a->head->used += n;
    return p;
}

/* ------------------------------------------------------------------ values */

enum { JV_UNDEF, JV_NONE, JV_BOOL, JV_INT, JV_FLOAT, JV_STR, JV_LIST, JV_DICT, JV_FUNC };
enum { FN_RAISE = 1, FN_STRFTIME, FN_NAMESPACE, FN_RANGE, FN_DICT };

typedef struct jlist jlist;
typedef struct jdict jdict;

typedef struct jv {
    int t;
    int flag; /* JV_LIST: 1 = tuple; JV_DICT: 1 = namespace */
    union {
        int64_t i;
        double f;
        struct {
            const char *p;
            size_t n;
        } s; /* JV_STR; JV_UNDEF: the missing name (for messages) */
        jlist *l;
        jdict *d;
    } u;
} jv;

struct jlist {
    size_t n;
    jv *v;
};
struct jdict {
    size_t n, cap;
    const char **kp;
    size_t *kn;
    jv *v;
};

/* ------------------------------------------------------------------ AST */

enum {
    /* statements */
    N_BODY, N_TEXT, N_OUT, N_IF, N_FOR, N_SET, N_SETBLOCK, N_BREAK, N_CONTINUE,
    /* expressions */
    E_LIT, E_NAME, E_ATTR, E_ITEM, E_SLICE, E_CALL, E_FILTER, E_TEST, E_BIN, E_NEG, E_POS,
    E_NOT, E_AND, E_OR, E_COND, E_LIST, E_TUPLE, E_DICT, E_CMP
};
enum { OP_ADD = 1, OP_SUB, OP_MUL, OP_DIV, OP_FDIV, OP_MOD, OP_POW, OP_CAT,
       OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN };

typedef struct jnode jnode;
struct jnode {
    int kind, line, col;
    int op;
    const char *name;
    size_t name_n;
    jv lit;
    jnode *a, *b, *c, *d;
    jnode **kids;
    int nkids;
    jnode **kids2; /* else body (N_IF: else branch; N_FOR: else); E_CALL/E_FILTER: kw values */
    int nkids2;
    const char **kwn; /* kwarg names (E_CALL, E_FILTER, E_TEST); N_FOR/N_SET targets */
    size_t *kwl;
    int nkw;
    int *ops; /* E_CMP: operator per comparison */
};

/* ------------------------------------------------------------------ tokens */

enum { T_EOF, T_TEXT, T_VBEGIN, T_VEND, T_BBEGIN, T_BEND, T_NAME, T_STR, T_INT, T_FLOAT, T_OP };

typedef struct jtok {
    int type, line, col;
    const char *p; /* T_TEXT, T_NAME, T_OP: into the normalized source; T_STR: decoded */
    size_t n;
    int64_t i;
    double f;
} jtok;

struct pl_jinja {
    jarena arena;
    jnode *root;
    char name[128];
};

struct jctx {
    jmp_buf jb;
    pl_err *err;
    const char *name;
    jarena *arena;
    /* lexer/parser */
    const char *src;
    size_t n;
    jtok *toks;
    size_t ntok, captok, tp;
    int depth;
    /* renderer */
    char *out;
    size_t out_n, out_cap, max_out;
    uint64_t steps, max_steps;
    const pl_jinja_opts *opts;
    jdict **frames;
    int nframes, capframes;
    int brk; /* 1 = break, 2 = continue pending */
};

static _Noreturn void jfail(jctx *c, int code, int line, int col, const char *fmt, ...) {
    char buf[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (line > 0)
        pl_err_set(c->err, code, "%s:%d:%d: %s", c->name, line, col, buf);
    else
        pl_err_set(c->err, code, "%s: %s", c->name, buf);
    longjmp(c->jb, 1);
}

static void *jalloc(jctx *c, size_t n) {
    void *p = arena_alloc(c->arena, n);
    if (!p) jfail(c, PL_ENOMEM, 0, 0, "out of memory (template values exceed %zu bytes)", c->arena->cap);
    return p;
}

static char *jstrdup(jctx *c, const char *s, size_t n) {
    char *p = jalloc(c, n + 1);
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* ------------------------------------------------------------------ UTF-8 helpers */

/* Decode one code point at s (n bytes available); *len gets its length (1 for
 * an invalid byte, which decodes as that byte's value). */
static uint32_t u8_dec(const unsigned char *s, size_t n, size_t *len) {
    unsigned c = s[0];
    if (c < 0x80 || n < 2) { *len = 1; return c; }
    if ((c & 0xE0) == 0xC0 && (s[1] & 0xC0) == 0x80) { *len = 2; return ((c & 0x1F) << 6) | (s[1] & 0x3F); }
    if ((c & 0xF0) == 0xE0 && n >= 3 && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80) {
        *len = 3;
        return ((c & 0x0F) << 12) | ((s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    }
    if ((c & 0xF8) == 0xF0 && n >= 4 && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80 && (s[3] & 0xC0) == 0x80) {
        *len = 4;
        return ((c & 0x07) << 18) | ((s[1] & 0x3F) << 12) | ((s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    }
    *len = 1;
    return c;
}

static size_t u8_enc(uint32_t cp, char *o) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Python's str.isspace for a code point. */
static int cp_space(uint32_t c) {
    return c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x1F) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

static size_t u8_count(const char *s, size_t n) {
    size_t k = 0, i = 0, l;
    while (i < n) { u8_dec((const unsigned char *)s + i, n - i, &l); i += l; k++; }
    return k;
}

/* ------------------------------------------------------------------ lexer */

static void tok_push(jctx *c, jtok t) {
    if (c->ntok == c->captok) {
        size_t nc = c->captok ? c->captok * 2 : 256;
        jtok *nt = jalloc(c, nc * sizeof(jtok));
        if (c->ntok) memcpy(nt, c->toks, c->ntok * sizeof(jtok));
        c->toks = nt;
        c->captok = nc;
    }
    c->toks[c->ntok++] = t;
}

static void pos_of(jctx *c, size_t off, int *line, int *col) {
    int l = 1, cl = 1;
    for (size_t i = 0; i < off && i < c->n; i++) {
        if (c->src[i] == '\n') { l++; cl = 1; } else cl++;
    }
    *line = l;
    *col = cl;
}

/* Decode a Jinja string literal body (Python unicode-escape rules). */
static void lex_string(jctx *c, size_t *pi, jtok *t) {
    size_t i = *pi;
    char q = c->src[i++];
    size_t start = i;
    while (i < c->n && c->src[i] != q) {
        if (c->src[i] == '\\' && i + 1 < c->n) i++;
        i++;
    }
    if (i >= c->n) jfail(c, PL_EFORMAT, t->line, t->col, "unterminated string literal");
    size_t end = i;
    char *o = jalloc(c, (end - start) * 4 + 1);
    size_t k = 0;
    for (size_t j = start; j < end; j++) {
        char ch = c->src[j];
        if (ch != '\\' || j + 1 >= end) { o[k++] = ch; continue; }
        char e = c->src[++j];
        switch (e) {
        case 'n': o[k++] = '\n'; break;
        case 't': o[k++] = '\t'; break;
        case 'r': o[k++] = '\r'; break;
        case '\\': o[k++] = '\\'; break;
        case '\'': o[k++] = '\''; break;
        case '"': o[k++] = '"'; break;
        case 'a': o[k++] = '\a'; break;
        case 'b': o[k++] = '\b'; break;
        case 'f': o[k++] = '\f'; break;
        case 'v': o[k++] = '\v'; break;
        case '\n': break;
        case 'x': case 'u': case 'U': {
            int nd = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            uint32_t cp = 0;
            int ok = 1;
            for (int q2 = 1; q2 <= nd; q2++) {
                if (j + (size_t)q2 >= end || !isxdigit((unsigned char)c->src[j + (size_t)q2])) { ok = 0; break; }
                char h = c->src[j + (size_t)q2];
                cp = cp * 16 + (uint32_t)(isdigit((unsigned char)h) ? h - '0' : (tolower((unsigned char)h) - 'a' + 10));
            }
            if (!ok || cp > 0x10FFFF)
                jfail(c, PL_EFORMAT, t->line, t->col, "string literal: truncated or invalid \\%c escape", e);
            if (cp >= 0xD800 && cp <= 0xDFFF)
                jfail(c, PL_EUNSUPPORTED, t->line, t->col, "string literal: surrogate escape \\%c%04X", e, (unsigned)cp);
            k += u8_enc(cp, o + k);
            j += (size_t)nd;
            break;
        }
        default:
            if (e >= '0' && e <= '7') {
                uint32_t cp = 0;
                int m = 0;
                while (m < 3 && j < end && c->src[j] >= '0' && c->src[j] <= '7') { cp = cp * 8 + (uint32_t)(c->src[j] - '0'); j++; m++; }
                j--;
                k += u8_enc(cp, o + k);
            } else {
                o[k++] = '\\';
                o[k++] = e;
            }
        }
    }
    o[k] = 0;
    t->type = T_STR;
    t->p = o;
    t->n = k;
    *pi = end + 1;
}

static int is_ws(char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v'; }

/* Lex expression tokens from *pi until the closing "%}"/"}}" (kind '%' or
 * '{'); returns the whitespace-control sign of the closer (0, '-', '+') and
 * leaves *pi just after it. */
static int lex_expr(jctx *c, size_t *pi, int kind, int oline, int ocol) {
    size_t i = *pi;
    int balance = 0;
    for (;;) {
        while (i < c->n && is_ws(c->src[i])) i++;
        if (i >= c->n)
            jfail(c, PL_EFORMAT, oline, ocol, "unclosed %s tag: missing '%s'", kind == '%' ? "{%" : "{{",
                  kind == '%' ? "%}" : "}}");
        const char *s = c->src + i;
        size_t rem = c->n - i;
        char close = kind == '%' ? '%' : '}';
        if (balance == 0) {
            if (rem >= 3 && (s[0] == '-' || s[0] == '+') && s[1] == close && s[2] == '}') {
                *pi = i + 3;
                return s[0];
            }
            if (rem >= 2 && s[0] == close && s[1] == '}') {
                *pi = i + 2;
                return 0;
            }
        }
        jtok t = {0};
        pos_of(c, i, &t.line, &t.col);
        unsigned char ch = (unsigned char)s[0];
        if (isalpha(ch) || ch == '_') {
            size_t j = i;
            while (j < c->n && (isalnum((unsigned char)c->src[j]) || c->src[j] == '_')) j++;
            t.type = T_NAME;
            t.p = s;
            t.n = j - i;
            i = j;
        } else if (isdigit(ch)) {
            size_t j = i;
            int isf = 0;
            while (j < c->n && (isdigit((unsigned char)c->src[j]) || c->src[j] == '_')) j++;
            if (j + 1 < c->n && c->src[j] == '.' && isdigit((unsigned char)c->src[j + 1])) {
                isf = 1;
                j++;
                while (j < c->n && (isdigit((unsigned char)c->src[j]) || c->src[j] == '_')) j++;
            }
            if (j < c->n && (c->src[j] == 'e' || c->src[j] == 'E')) {
                size_t k = j + 1;
                if (k < c->n && (c->src[k] == '+' || c->src[k] == '-')) k++;
                if (k < c->n && isdigit((unsigned char)c->src[k])) {
                    isf = 1;
                    j = k;
                    while (j < c->n && isdigit((unsigned char)c->src[j])) j++;
                }
            }
            char buf[64];
            size_t m = 0;
            for (size_t k = i; k < j && m < sizeof buf - 1; k++)
                if (c->src[k] != '_') buf[m++] = c->src[k];
            buf[m] = 0;
            if (isf) {
                t.type = T_FLOAT;
                t.f = strtod(buf, NULL);
            } else {
                t.type = T_INT;
                char *e;
                unsigned long long v = strtoull(buf, &e, 10);
                if (m >= sizeof buf - 1 || v > (unsigned long long)INT64_MAX)
                    jfail(c, PL_EUNSUPPORTED, t.line, t.col, "integer literal too large");
                t.i = (int64_t)v;
            }
            i = j;
        } else if (ch == '\'' || ch == '"') {
            lex_string(c, &i, &t);
        } else {
            static const char *ops2[] = {"==", "!=", "<=", ">=", "//", "**"};
            t.type = T_OP;
            t.p = s;
            t.n = 0;
            for (size_t k = 0; k < sizeof ops2 / sizeof *ops2; k++)
                if (rem >= 2 && s[0] == ops2[k][0] && s[1] == ops2[k][1]) t.n = 2;
            if (!t.n) {
                if (!strchr("+-*/%~<>=.,:|()[]{}", ch) || ch == 0)
                    jfail(c, PL_EFORMAT, t.line, t.col, "unexpected character '%c' (0x%02x) in expression",
                          isprint(ch) ? ch : '?', ch);
                t.n = 1;
                if (ch == '(' || ch == '[' || ch == '{') balance++;
                if (ch == ')' || ch == ']' || ch == '}') {
                    if (balance == 0) jfail(c, PL_EFORMAT, t.line, t.col, "unexpected '%c'", ch);
                    balance--;
                }
            }
            i += t.n;
        }
        tok_push(c, t);
    }
}

static void lex(jctx *c) {
    size_t i = 0;
    int line_starting = 1;
    while (i <= c->n) {
        /* find the next tag start */
        size_t j = i;
        int kind = 0;
        while (j + 1 < c->n) {
            if (c->src[j] == '{' && (c->src[j + 1] == '{' || c->src[j + 1] == '%' || c->src[j + 1] == '#')) {
                kind = c->src[j + 1];
                break;
            }
            j++;
        }
        if (!kind) j = c->n;
        size_t tlen = j - i;
        int sign = 0;
        if (kind && j + 2 < c->n && (c->src[j + 2] == '-' || c->src[j + 2] == '+')) sign = c->src[j + 2];
        if (kind) {
            const char *text = c->src + i;
            if (sign == '-') {
                while (tlen > 0 && is_ws(text[tlen - 1])) tlen--;
            } else if (sign != '+' && kind != '{') {
                size_t lpos = 0;
                for (size_t k = tlen; k > 0; k--)
                    if (text[k - 1] == '\n') { lpos = k; break; }
                if (lpos > 0 || line_starting) {
                    int allws = tlen > lpos;
                    for (size_t k = lpos; k < tlen; k++)
                        if (!is_ws(text[k])) { allws = 0; break; }
                    if (allws) tlen = lpos;
                }
            }
        }
        if (tlen > 0) {
            jtok t = {0};
            t.type = T_TEXT;
            t.p = c->src + i;
            t.n = tlen;
            pos_of(c, i, &t.line, &t.col);
            tok_push(c, t);
        }
        if (!kind) break;
        int line, col;
        pos_of(c, j, &line, &col);
        size_t k = j + 2 + (sign ? 1 : 0);
        int endsign;
        if (kind == '#') {
            size_t e = k;
            while (e + 1 < c->n && !(c->src[e] == '#' && c->src[e + 1] == '}')) e++;
            if (e + 1 >= c->n) jfail(c, PL_EFORMAT, line, col, "unclosed comment: missing '#}'");
            endsign = (e > k && (c->src[e - 1] == '-' || c->src[e - 1] == '+')) ? c->src[e - 1] : 0;
            k = e + 2;
        } else {
            jtok t = {0};
            t.type = kind == '{' ? T_VBEGIN : T_BBEGIN;
            t.line = line;
            t.col = col;
            tok_push(c, t);
            endsign = lex_expr(c, &k, kind, line, col);
            jtok e = {0};
            e.type = kind == '{' ? T_VEND : T_BEND;
            pos_of(c, k - 2, &e.line, &e.col);
            tok_push(c, e);
        }
        line_starting = 0;
        if (endsign == '-') {
            while (k < c->n && is_ws(c->src[k])) k++;
            if (k > 0 && c->src[k - 1] == '\n' && k > j) line_starting = 1;
        } else if (endsign != '+' && kind != '{') {
            if (k < c->n && c->src[k] == '\n') { k++; line_starting = 1; }
        }
        i = k;
        if (i >= c->n) break;
    }
    jtok e = {0};
    e.type = T_EOF;
    pos_of(c, c->n, &e.line, &e.col);
    tok_push(c, e);
}

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
    jfail(c, PL_EFORMAT, t->line, t->col, "expected %s, found %s", want, tok_desc(t, b, sizeof b));
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
    jnode *n = jalloc(c, sizeof *n);
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
        jnode **nn = jalloc(c, (size_t)nc * sizeof *nn);
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
    if (++c->depth > 200) jfail(c, PL_EUNSUPPORTED, t->line, t->col, "expression nested too deeply (more than 200 levels)");
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
                const char **nn = jalloc(c, (size_t)nc * sizeof *nn);
                size_t *nl = jalloc(c, (size_t)nc * sizeof *nl);
                if (nk) { memcpy(nn, kn, (size_t)nk * sizeof *nn); memcpy(nl, kl, (size_t)nk * sizeof *nl); }
                kn = nn; kl = nl; capk = nc;
            }
            kn[nk] = t->p;
            kl[nk] = t->n;
            nk++;
            nv_push(c, &kv, parse_expr(c));
        } else {
            if (nk) jfail(c, PL_EFORMAT, t->line, t->col, "positional argument after keyword argument");
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
            char *q = jalloc(c, len + u->n + 1);
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
        jfail(c, PL_EFORMAT, t->line, t->col, "expected an expression, found %s", tok_desc(t, b, sizeof b));
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
            if (!slice && !lo) jfail(c, PL_EFORMAT, t->line, t->col, "empty subscript");
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
                    m->kids = jalloc(c, sizeof(jnode *));
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
        if (nops == 64) jfail(c, PL_EUNSUPPORTED, t->line, t->col, "comparison chain longer than 64");
        ops[nops++] = op;
        nv_push(c, &v, parse_math1(c));
    }
    if (!nops) return first;
    jnode *n = mk(c, E_CMP, at);
    n->a = first;
    n->kids = v.v;
    n->nkids = v.n;
    n->ops = jalloc(c, (size_t)nops * sizeof(int));
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
    const char **nm = jalloc(c, 8 * sizeof *nm);
    size_t *nl = jalloc(c, 8 * sizeof *nl);
    int k = 0;
    for (;;) {
        jtok *t = next(c);
        if (t->type != T_NAME) unexpected(c, t, "a variable name");
        if (k == 8) jfail(c, PL_EUNSUPPORTED, t->line, t->col, "more than 8 loop targets");
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
static jnode *parse_body(jctx *c, const char *const *ends, int *stop, jtok *opener);

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
            cur->b = parse_body(c, ends, &which, kw);
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
                cur->c = parse_body(c, ends2, &which, kw);
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
        if (is_name(peek(c), "recursive")) jfail(c, PL_EUNSUPPORTED, peek(c)->line, peek(c)->col, "recursive loops are not supported");
        expect_bend(c);
        static const char *const ends[] = {"else", "endfor", NULL};
        int which;
        n->c = parse_body(c, ends, &which, kw);
        if (which == 0) {
            expect_bend(c);
            static const char *const ends2[] = {"endfor", NULL};
            n->d = parse_body(c, ends2, &which, kw);
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
            n->kwn = jalloc(c, sizeof(char *));
            n->kwl = jalloc(c, sizeof(size_t));
            n->kwn[0] = a->p;
            n->kwl[0] = a->n;
            n->nkw = 1;
            n->op = 1;
        } else if (is_op(peek(c), ",")) {
            jfail(c, PL_EUNSUPPORTED, t->line, t->col, "tuple assignment in set is not supported");
        }
        if (peek(c)->type == T_BEND && !n->op) {
            next(c);
            n->kind = N_SETBLOCK;
            static const char *const ends[] = {"endset", NULL};
            int which;
            n->a = parse_body(c, ends, &which, kw);
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
        jnode *n = parse_body(c, ends, &which, kw);
        expect_bend(c);
        return n;
    }
    (void)bb;
    jfail(c, PL_EUNSUPPORTED, kw->line, kw->col, "unsupported statement %s", tok_desc(kw, b, sizeof b));
}

static jnode *parse_body(jctx *c, const char *const *ends, int *stop, jtok *opener) {
    nvec v = {0};
    jtok *first = peek(c);
    for (;;) {
        jtok *t = peek(c);
        if (t->type == T_EOF) {
            if (ends) {
                char b[64];
                jfail(c, PL_EFORMAT, opener->line, opener->col, "%s opened here is never closed (expected '{%% %s %%}')",
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
                jfail(c, PL_EFORMAT, kw->line, kw->col, "unexpected %s%s", tok_desc(kw, b, sizeof b),
                      ends ? "" : " (no block is open)");
            }
            next(c);
            c->depth++;
            if (c->depth > 200) jfail(c, PL_EUNSUPPORTED, t->line, t->col, "blocks nested too deeply (more than 200 levels)");
            nv_push(c, &v, parse_stmt(c, t));
            c->depth--;
        } else {
            char b[64];
            jfail(c, PL_EFORMAT, t->line, t->col, "unexpected %s", tok_desc(t, b, sizeof b));
        }
    }
    jnode *body = mk(c, N_BODY, first);
    body->kids = v.v;
    body->nkids = v.n;
    return body;
}

/* ------------------------------------------------------------------ public: parse */

static void ctx_init(jctx *c, pl_err *err, const char *name, jarena *a) {
    memset(c, 0, sizeof *c);
    c->err = err;
    c->name = name;
    c->arena = a;
}

int pl_jinja_parse(pl_jinja **out, const char *src, size_t len, const char *name, pl_err *err) {
    *out = NULL;
    pl_jinja *t = calloc(1, sizeof *t);
    if (!t) return pl_err_set(err, PL_ENOMEM, "template: out of memory");
    snprintf(t->name, sizeof t->name, "%s", name ? name : "template");
    t->arena.cap = (size_t)1 << 30;
    jctx c;
    ctx_init(&c, err, t->name, &t->arena);
    if (setjmp(c.jb)) {
        arena_free(&t->arena);
        free(t);
        return err ? err->code : PL_EFORMAT;
    }
    if (len > ((size_t)64 << 20)) jfail(&c, PL_ERANGE, 0, 0, "template is %zu bytes, more than 64 MiB", len);
    /* normalize newlines, drop one trailing newline (keep_trailing_newline=False) */
    char *s = jalloc(&c, len + 1);
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[k++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            s[k++] = src[i];
        }
    }
    if (k > 0 && s[k - 1] == '\n') k--;
    s[k] = 0;
    c.src = s;
    c.n = k;
    lex(&c);
    c.tp = 0;
    int which;
    t->root = parse_body(&c, NULL, &which, &c.toks[0]);
    *out = t;
    return PL_OK;
}

void pl_jinja_free(pl_jinja *t) {
    if (!t) return;
    arena_free(&t->arena);
    free(t);
}

/* ------------------------------------------------------------------ value helpers */

static jv v_undef(const char *name, size_t n) { jv v = {0}; v.t = JV_UNDEF; v.u.s.p = name; v.u.s.n = n; return v; }
static jv v_none(void) { jv v = {0}; v.t = JV_NONE; return v; }
static jv v_bool(int b) { jv v = {0}; v.t = JV_BOOL; v.u.i = !!b; return v; }
static jv v_int(int64_t i) { jv v = {0}; v.t = JV_INT; v.u.i = i; return v; }
static jv v_float(double f) { jv v = {0}; v.t = JV_FLOAT; v.u.f = f; return v; }
static jv v_str(const char *p, size_t n) { jv v = {0}; v.t = JV_STR; v.u.s.p = p; v.u.s.n = n; return v; }
static jv v_cstr(const char *p) { return v_str(p, strlen(p)); }

static jv v_list(jctx *c, size_t n) {
    jv v = {0};
    v.t = JV_LIST;
    v.u.l = jalloc(c, sizeof(jlist));
    v.u.l->n = n;
    v.u.l->v = n ? jalloc(c, n * sizeof(jv)) : NULL;
    return v;
}

static jv v_dict(jctx *c) {
    jv v = {0};
    v.t = JV_DICT;
    v.u.d = jalloc(c, sizeof(jdict));
    memset(v.u.d, 0, sizeof(jdict));
    return v;
}

static jv *dict_get(jdict *d, const char *k, size_t n) {
    for (size_t i = 0; i < d->n; i++)
        if (d->kn[i] == n && !memcmp(d->kp[i], k, n)) return &d->v[i];
    return NULL;
}

static void dict_set(jctx *c, jdict *d, const char *k, size_t n, jv v) {
    jv *e = dict_get(d, k, n);
    if (e) { *e = v; return; }
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 8;
        const char **kp = jalloc(c, nc * sizeof *kp);
        size_t *kn = jalloc(c, nc * sizeof *kn);
        jv *vv = jalloc(c, nc * sizeof *vv);
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

static const char *type_name(jv v) {
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

static int truthy(jv v) {
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

/* string builder in the arena */
typedef struct sb {
    jctx *c;
    char *p;
    size_t n, cap;
} sb;
static void sb_put(sb *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 64;
        while (nc < b->n + n + 1) {
            if (nc > ((size_t)1 << 40)) jfail(b->c, PL_ENOMEM, 0, 0, "string too large");
            nc *= 2;
        }
        char *np = jalloc(b->c, nc);
        if (b->n) memcpy(np, b->p, b->n);
        b->p = np;
        b->cap = nc;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_puts(sb *b, const char *s) { sb_put(b, s, strlen(s)); }
static jv sb_val(sb *b) { return b->p ? v_str(b->p, b->n) : v_str("", 0); }

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

static void to_str(sb *b, jv v, int repr);

static void repr_str(sb *b, const char *s, size_t n) {
    int has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = (has_sq && !has_dq) ? '"' : '\'';
    sb_put(b, &q, 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char e[8];
        if (ch == (unsigned char)q || ch == '\\') { e[0] = '\\'; e[1] = (char)ch; sb_put(b, e, 2); }
        else if (ch == '\n') sb_puts(b, "\\n");
        else if (ch == '\r') sb_puts(b, "\\r");
        else if (ch == '\t') sb_puts(b, "\\t");
        else if (ch < 0x20 || ch == 0x7f) { snprintf(e, sizeof e, "\\x%02x", ch); sb_puts(b, e); }
        else sb_put(b, (const char *)&s[i], 1);
    }
    sb_put(b, &q, 1);
}

/* str() (repr=0) or repr() (repr=1) as Python writes them. */
static void to_str(sb *b, jv v, int repr) {
    char buf[64];
    switch (v.t) {
    case JV_UNDEF: break;
    case JV_NONE: sb_puts(b, "None"); break;
    case JV_BOOL: sb_puts(b, v.u.i ? "True" : "False"); break;
    case JV_INT: snprintf(buf, sizeof buf, "%lld", (long long)v.u.i); sb_puts(b, buf); break;
    case JV_FLOAT: float_repr(v.u.f, buf, sizeof buf); sb_puts(b, buf); break;
    case JV_STR:
        if (repr) repr_str(b, v.u.s.p, v.u.s.n);
        else sb_put(b, v.u.s.p, v.u.s.n);
        break;
    case JV_LIST:
        sb_puts(b, v.flag ? "(" : "[");
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i) sb_puts(b, ", ");
            to_str(b, v.u.l->v[i], 1);
        }
        if (v.flag && v.u.l->n == 1) sb_puts(b, ",");
        sb_puts(b, v.flag ? ")" : "]");
        break;
    case JV_DICT:
        if (v.flag) sb_puts(b, "<Namespace ");
        sb_puts(b, "{");
        for (size_t i = 0; i < v.u.d->n; i++) {
            if (i) sb_puts(b, ", ");
            repr_str(b, v.u.d->kp[i], v.u.d->kn[i]);
            sb_puts(b, ": ");
            to_str(b, v.u.d->v[i], 1);
        }
        sb_puts(b, "}");
        if (v.flag) sb_puts(b, ">");
        break;
    default: sb_puts(b, "<function>"); break;
    }
}

static jv str_of(jctx *c, jv v) {
    if (v.t == JV_STR) return v;
    sb b = {c, 0, 0, 0};
    to_str(&b, v, 0);
    return sb_val(&b);
}

/* json.dumps(x, ensure_ascii=False, indent=indent, sort_keys=False) */
static void json_str(sb *b, const char *s, size_t n) {
    sb_puts(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char e[8];
        switch (ch) {
        case '"': sb_puts(b, "\\\""); break;
        case '\\': sb_puts(b, "\\\\"); break;
        case '\n': sb_puts(b, "\\n"); break;
        case '\r': sb_puts(b, "\\r"); break;
        case '\t': sb_puts(b, "\\t"); break;
        case '\b': sb_puts(b, "\\b"); break;
        case '\f': sb_puts(b, "\\f"); break;
        default:
            if (ch < 0x20) { snprintf(e, sizeof e, "\\u%04x", ch); sb_puts(b, e); }
            else sb_put(b, (const char *)&s[i], 1);
        }
    }
    sb_puts(b, "\"");
}

static void to_json(jctx *c, sb *b, jv v, int indent, int level, int line, int col) {
    char buf[64];
    if (level > 100) jfail(c, PL_EUNSUPPORTED, line, col, "tojson: value nested more than 100 levels");
    switch (v.t) {
    case JV_NONE: sb_puts(b, "null"); break;
    case JV_BOOL: sb_puts(b, v.u.i ? "true" : "false"); break;
    case JV_INT: snprintf(buf, sizeof buf, "%lld", (long long)v.u.i); sb_puts(b, buf); break;
    case JV_FLOAT:
        if (isnan(v.u.f)) sb_puts(b, "NaN");
        else if (isinf(v.u.f)) sb_puts(b, v.u.f < 0 ? "-Infinity" : "Infinity");
        else { float_repr(v.u.f, buf, sizeof buf); sb_puts(b, buf); }
        break;
    case JV_STR: json_str(b, v.u.s.p, v.u.s.n); break;
    case JV_LIST: case JV_DICT: {
        int isd = v.t == JV_DICT;
        size_t n = isd ? v.u.d->n : v.u.l->n;
        if (isd && v.flag) jfail(c, PL_EINVAL, line, col, "tojson: a namespace is not JSON serializable");
        sb_puts(b, isd ? "{" : "[");
        if (n == 0) { sb_puts(b, isd ? "}" : "]"); break; }
        for (size_t i = 0; i < n; i++) {
            if (i) sb_puts(b, indent >= 0 ? "," : ", ");
            if (indent >= 0) {
                sb_puts(b, "\n");
                for (int k = 0; k < indent * (level + 1); k++) sb_puts(b, " ");
            }
            if (isd) {
                json_str(b, v.u.d->kp[i], v.u.d->kn[i]);
                sb_puts(b, ": ");
                to_json(c, b, v.u.d->v[i], indent, level + 1, line, col);
            } else {
                to_json(c, b, v.u.l->v[i], indent, level + 1, line, col);
            }
        }
        if (indent >= 0) {
            sb_puts(b, "\n");
            for (int k = 0; k < indent * level; k++) sb_puts(b, " ");
        }
        sb_puts(b, isd ? "}" : "]");
        break;
    }
    case JV_UNDEF:
        jfail(c, PL_EINVAL, line, col, "tojson: '%.*s' is undefined", (int)v.u.s.n, v.u.s.p ? v.u.s.p : "");
    default:
        jfail(c, PL_EINVAL, line, col, "tojson: a %s is not JSON serializable", type_name(v));
    }
}

static int v_eq(jv a, jv b) {
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
            if (!v_eq(a.u.l->v[i], b.u.l->v[i])) return 0;
        return 1;
    case JV_DICT:
        if (a.flag || b.flag) return a.u.d == b.u.d;
        if (a.u.d->n != b.u.d->n) return 0;
        for (size_t i = 0; i < a.u.d->n; i++) {
            jv *o = dict_get(b.u.d, a.u.d->kp[i], a.u.d->kn[i]);
            if (!o || !v_eq(a.u.d->v[i], *o)) return 0;
        }
        return 1;
    default: return a.u.i == b.u.i;
    }
}

/* ------------------------------------------------------------------ cJSON -> value */

static jv from_json(jctx *c, const cJSON *j, int depth) {
    if (depth > 100) jfail(c, PL_EUNSUPPORTED, 0, 0, "variables nested more than 100 levels");
    if (!j || cJSON_IsNull(j)) return v_none();
    if (cJSON_IsBool(j)) return v_bool(cJSON_IsTrue(j));
    if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (d == floor(d) && fabs(d) < 9007199254740992.0) return v_int((int64_t)d);
        return v_float(d);
    }
    if (cJSON_IsString(j)) return v_cstr(j->valuestring ? j->valuestring : "");
    if (cJSON_IsArray(j)) {
        jv v = v_list(c, (size_t)cJSON_GetArraySize(j));
        size_t i = 0;
        for (const cJSON *e = j->child; e; e = e->next) v.u.l->v[i++] = from_json(c, e, depth + 1);
        return v;
    }
    if (cJSON_IsObject(j)) {
        jv v = v_dict(c);
        for (const cJSON *e = j->child; e; e = e->next)
            if (e->string) dict_set(c, v.u.d, e->string, strlen(e->string), from_json(c, e, depth + 1));
        return v;
    }
    return v_none();
}

/* ------------------------------------------------------------------ evaluator */

static jv eval(jctx *c, jnode *n);
static void exec_body(jctx *c, jnode *body);

static void step(jctx *c, jnode *n) {
    if (++c->steps > c->max_steps)
        jfail(c, PL_ERANGE, n->line, n->col, "template ran more than %llu steps (runaway loop?)", (unsigned long long)c->max_steps);
}

static void emit(jctx *c, jnode *n, const char *s, size_t len) {
    if (c->out_n + len > c->max_out)
        jfail(c, PL_ERANGE, n->line, n->col, "output exceeds %zu bytes", c->max_out);
    if (c->out_n + len + 1 > c->out_cap) {
        size_t nc = c->out_cap ? c->out_cap * 2 : 4096;
        while (nc < c->out_n + len + 1) nc *= 2;
        char *np = realloc(c->out, nc);
        if (!np) jfail(c, PL_ENOMEM, n->line, n->col, "out of memory for the output");
        c->out = np;
        c->out_cap = nc;
    }
    if (len) memcpy(c->out + c->out_n, s, len);
    c->out_n += len;
    c->out[c->out_n] = 0;
}

static void push_frame(jctx *c, jnode *at) {
    if (c->nframes == c->capframes) {
        int nc = c->capframes ? c->capframes * 2 : 16;
        if (nc > 4096) jfail(c, PL_ERANGE, at->line, at->col, "loops nested too deeply");
        jdict **nf = jalloc(c, (size_t)nc * sizeof *nf);
        if (c->nframes) memcpy(nf, c->frames, (size_t)c->nframes * sizeof *nf);
        c->frames = nf;
        c->capframes = nc;
    }
    jdict *d = jalloc(c, sizeof *d);
    memset(d, 0, sizeof *d);
    c->frames[c->nframes++] = d;
}

static jv lookup(jctx *c, const char *k, size_t n) {
    for (int i = c->nframes - 1; i >= 0; i--) {
        jv *v = dict_get(c->frames[i], k, n);
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
    return v_undef(k, n);
}

static _Noreturn void undef_err(jctx *c, jnode *n, jv v) {
    if (v.u.s.p) jfail(c, PL_EINVAL, n->line, n->col, "'%.*s' is undefined", (int)(v.u.s.n > 80 ? 80 : v.u.s.n), v.u.s.p);
    jfail(c, PL_EINVAL, n->line, n->col, "value is undefined");
}

static int64_t as_int(jctx *c, jnode *n, jv v, const char *what) {
    if (v.t == JV_INT || v.t == JV_BOOL) return v.u.i;
    if (v.t == JV_UNDEF) undef_err(c, n, v);
    jfail(c, PL_EINVAL, n->line, n->col, "%s must be an integer, not %s", what, type_name(v));
}

/* Item access: lists by index, dicts by key, strings by code point. */
static jv get_item(jctx *c, jnode *n, jv o, jv k) {
    if (o.t == JV_UNDEF) undef_err(c, n, o);
    if (o.t == JV_DICT) {
        if (k.t != JV_STR) return v_undef(NULL, 0);
        jv *e = dict_get(o.u.d, k.u.s.p, k.u.s.n);
        return e ? *e : v_undef(k.u.s.p, k.u.s.n);
    }
    if (o.t == JV_LIST) {
        if (k.t != JV_INT && k.t != JV_BOOL) return v_undef(NULL, 0);
        int64_t i = k.u.i, len = (int64_t)o.u.l->n;
        if (i < 0) i += len;
        if (i < 0 || i >= len) return v_undef(NULL, 0);
        return o.u.l->v[i];
    }
    if (o.t == JV_STR) {
        if (k.t != JV_INT && k.t != JV_BOOL) return v_undef(NULL, 0);
        int64_t len = (int64_t)u8_count(o.u.s.p, o.u.s.n), i = k.u.i;
        if (i < 0) i += len;
        if (i < 0 || i >= len) return v_undef(NULL, 0);
        size_t off = 0, l = 0;
        for (int64_t q = 0; q <= i; q++) {
            off += l;
            u8_dec((const unsigned char *)o.u.s.p + off, o.u.s.n - off, &l);
        }
        return v_str(o.u.s.p + off, l);
    }
    return v_undef(NULL, 0);
}

static jv get_attr(jctx *c, jnode *n, jv o, const char *name, size_t nn) {
    if (o.t == JV_UNDEF) undef_err(c, n, o);
    if (nn > 0 && name[0] == '_') jfail(c, PL_EINVAL, n->line, n->col, "access to attribute '%.*s' is unsafe", (int)nn, name);
    if (o.t == JV_DICT) {
        jv *e = dict_get(o.u.d, name, nn);
        return e ? *e : v_undef(name, nn);
    }
    return v_undef(name, nn);
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
    if (st.t != JV_UNDEF && st.t != JV_NONE) stp = as_int(c, n, st, "slice step");
    if (stp == 0) jfail(c, PL_EINVAL, n->line, n->col, "slice step cannot be zero");
    if (lo.t != JV_UNDEF && lo.t != JV_NONE) as_int(c, n, lo, "slice start");
    if (hi.t != JV_UNDEF && hi.t != JV_NONE) as_int(c, n, hi, "slice end");
    if (o.t == JV_UNDEF) undef_err(c, n, o);
    if (o.t == JV_LIST) {
        int64_t len = (int64_t)o.u.l->n, a, b;
        slice_idx(len, lo, hi, stp, &a, &b);
        size_t cnt = 0;
        for (int64_t i = a; stp > 0 ? i < b : i > b; i += stp) cnt++;
        jv r = v_list(c, cnt);
        r.flag = o.flag;
        size_t k = 0;
        for (int64_t i = a; stp > 0 ? i < b : i > b; i += stp) r.u.l->v[k++] = o.u.l->v[i];
        return r;
    }
    if (o.t == JV_STR) {
        size_t ncp = u8_count(o.u.s.p, o.u.s.n);
        size_t *offs = jalloc(c, (ncp + 1) * sizeof(size_t));
        size_t off = 0, l, q = 0;
        while (off < o.u.s.n) { offs[q++] = off; u8_dec((const unsigned char *)o.u.s.p + off, o.u.s.n - off, &l); off += l; }
        offs[q] = o.u.s.n;
        int64_t a, b;
        slice_idx((int64_t)ncp, lo, hi, stp, &a, &b);
        sb s = {c, 0, 0, 0};
        for (int64_t i = a; stp > 0 ? i < b : i > b; i += stp) sb_put(&s, o.u.s.p + offs[i], offs[i + 1] - offs[i]);
        return sb_val(&s);
    }
    jfail(c, PL_EINVAL, n->line, n->col, "cannot slice a %s", type_name(o));
}

static int cmp_order(jctx *c, jnode *n, jv a, jv b) {
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
    if (a.t == JV_UNDEF) undef_err(c, n, a);
    if (b.t == JV_UNDEF) undef_err(c, n, b);
    jfail(c, PL_EINVAL, n->line, n->col, "cannot order %s and %s", type_name(a), type_name(b));
}

static int contains(jctx *c, jnode *n, jv hay, jv x) {
    if (hay.t == JV_STR) {
        if (x.t != JV_STR) jfail(c, PL_EINVAL, n->line, n->col, "'in <string>' requires a string, not %s", type_name(x));
        if (x.u.s.n == 0) return 1;
        if (x.u.s.n > hay.u.s.n) return 0;
        return memmem(hay.u.s.p, hay.u.s.n, x.u.s.p, x.u.s.n) != NULL;
    }
    if (hay.t == JV_LIST) {
        for (size_t i = 0; i < hay.u.l->n; i++)
            if (v_eq(hay.u.l->v[i], x)) return 1;
        return 0;
    }
    if (hay.t == JV_DICT) return x.t == JV_STR && dict_get(hay.u.d, x.u.s.p, x.u.s.n) != NULL;
    if (hay.t == JV_UNDEF) undef_err(c, n, hay);
    jfail(c, PL_EINVAL, n->line, n->col, "argument of type %s is not iterable", type_name(hay));
}

static double as_num(jv v) { return v.t == JV_FLOAT ? v.u.f : (double)v.u.i; }
static int is_num(jv v) { return v.t == JV_INT || v.t == JV_FLOAT || v.t == JV_BOOL; }

static jv arith(jctx *c, jnode *n, int op, jv a, jv b) {
    if (op == OP_CAT) {
        sb s = {c, 0, 0, 0};
        to_str(&s, a, 0);
        to_str(&s, b, 0);
        return sb_val(&s);
    }
    if (a.t == JV_UNDEF) undef_err(c, n, a);
    if (b.t == JV_UNDEF) undef_err(c, n, b);
    if (op == OP_ADD && a.t == JV_STR && b.t == JV_STR) {
        sb s = {c, 0, 0, 0};
        sb_put(&s, a.u.s.p, a.u.s.n);
        sb_put(&s, b.u.s.p, b.u.s.n);
        return sb_val(&s);
    }
    if (op == OP_ADD && a.t == JV_LIST && b.t == JV_LIST) {
        jv r = v_list(c, a.u.l->n + b.u.l->n);
        if (a.u.l->n) memcpy(r.u.l->v, a.u.l->v, a.u.l->n * sizeof(jv));
        if (b.u.l->n) memcpy(r.u.l->v + a.u.l->n, b.u.l->v, b.u.l->n * sizeof(jv));
        return r;
    }
    if (op == OP_MUL && ((a.t == JV_STR && (b.t == JV_INT || b.t == JV_BOOL)) || (b.t == JV_STR && (a.t == JV_INT || a.t == JV_BOOL)))) {
        jv s = a.t == JV_STR ? a : b;
        int64_t k = a.t == JV_STR ? b.u.i : a.u.i;
        sb o = {c, 0, 0, 0};
        if (k > 0 && s.u.s.n && (uint64_t)k > (c->max_out / s.u.s.n) + 1)
            jfail(c, PL_ERANGE, n->line, n->col, "string repetition too large");
        for (int64_t i = 0; i < k; i++) sb_put(&o, s.u.s.p, s.u.s.n);
        return sb_val(&o);
    }
    if (!is_num(a) || !is_num(b)) {
        static const char *sym[] = {"", "+", "-", "*", "/", "//", "%", "**"};
        jfail(c, PL_EINVAL, n->line, n->col, "unsupported operand types for %s: %s and %s", sym[op], type_name(a), type_name(b));
    }
    if (a.t != JV_FLOAT && b.t != JV_FLOAT && op != OP_DIV) {
        int64_t x = a.u.i, y = b.u.i, r;
        switch (op) {
        case OP_ADD: if (__builtin_add_overflow(x, y, &r)) goto ovf; return v_int(r);
        case OP_SUB: if (__builtin_sub_overflow(x, y, &r)) goto ovf; return v_int(r);
        case OP_MUL: if (__builtin_mul_overflow(x, y, &r)) goto ovf; return v_int(r);
        case OP_FDIV: case OP_MOD: {
            if (y == 0) jfail(c, PL_EINVAL, n->line, n->col, "integer division or modulo by zero");
            if (x == INT64_MIN && y == -1) goto ovf;
            int64_t q = x / y, m = x % y;
            if (m != 0 && ((m < 0) != (y < 0))) { q--; m += y; }
            return v_int(op == OP_FDIV ? q : m);
        }
        case OP_POW: {
            if (y < 0) return v_float(pow((double)x, (double)y));
            int64_t acc = 1;
            for (int64_t i = 0; i < y; i++) {
                if (__builtin_mul_overflow(acc, x, &acc)) goto ovf;
                if (acc == 0 || acc == 1) break;
            }
            return v_int(acc);
        }
        }
    ovf:
        jfail(c, PL_ERANGE, n->line, n->col, "integer overflow");
    }
    double x = as_num(a), y = as_num(b);
    switch (op) {
    case OP_ADD: return v_float(x + y);
    case OP_SUB: return v_float(x - y);
    case OP_MUL: return v_float(x * y);
    case OP_DIV: if (y == 0) jfail(c, PL_EINVAL, n->line, n->col, "division by zero"); return v_float(x / y);
    case OP_FDIV: if (y == 0) jfail(c, PL_EINVAL, n->line, n->col, "division by zero"); return v_float(floor(x / y));
    case OP_MOD: {
        if (y == 0) jfail(c, PL_EINVAL, n->line, n->col, "modulo by zero");
        double m = fmod(x, y);
        if (m != 0 && ((m < 0) != (y < 0))) m += y;
        return v_float(m);
    }
    default: return v_float(pow(x, y));
    }
}

/* Iterate: lists, dict keys, string characters; undefined is empty. */
static jv as_iter(jctx *c, jnode *n, jv v) {
    if (v.t == JV_LIST) return v;
    if (v.t == JV_UNDEF) return v_list(c, 0);
    if (v.t == JV_DICT && !v.flag) {
        jv r = v_list(c, v.u.d->n);
        for (size_t i = 0; i < v.u.d->n; i++) r.u.l->v[i] = v_str(v.u.d->kp[i], v.u.d->kn[i]);
        return r;
    }
    if (v.t == JV_STR) {
        jv r = v_list(c, u8_count(v.u.s.p, v.u.s.n));
        size_t off = 0, l, k = 0;
        while (off < v.u.s.n) {
            u8_dec((const unsigned char *)v.u.s.p + off, v.u.s.n - off, &l);
            r.u.l->v[k++] = v_str(v.u.s.p + off, l);
            off += l;
        }
        return r;
    }
    jfail(c, PL_EINVAL, n->line, n->col, "a %s is not iterable", type_name(v));
}

/* Evaluated call arguments. */
typedef struct jargs {
    int n, nkw;
    jv *v;
    const char **kn;
    size_t *kl;
    jv *kv;
} jargs;

static jargs eval_args(jctx *c, jnode *n) {
    jargs a = {0};
    a.n = n->nkids;
    a.nkw = n->nkw;
    a.v = a.n ? jalloc(c, (size_t)a.n * sizeof(jv)) : NULL;
    a.kv = a.nkw ? jalloc(c, (size_t)a.nkw * sizeof(jv)) : NULL;
    for (int i = 0; i < a.n; i++) a.v[i] = eval(c, n->kids[i]);
    for (int i = 0; i < a.nkw; i++) a.kv[i] = eval(c, n->kids2[i]);
    a.kn = n->kwn;
    a.kl = n->kwl;
    return a;
}

/* Positional argument i, or keyword name, or undefined. */
static jv arg(jargs *a, int i, const char *name) {
    if (i >= 0 && i < a->n) return a->v[i];
    for (int k = 0; k < a->nkw; k++)
        if (name && a->kl[k] == strlen(name) && !memcmp(a->kn[k], name, a->kl[k])) return a->kv[k];
    return v_undef(NULL, 0);
}

static void check_nargs(jctx *c, jnode *n, jargs *a, int maxpos, const char *what) {
    if (a->n > maxpos) jfail(c, PL_EINVAL, n->line, n->col, "%s takes at most %d arguments (%d given)", what, maxpos, a->n);
}

static jv need_str(jctx *c, jnode *n, jv v, const char *what) {
    if (v.t == JV_STR) return v;
    if (v.t == JV_UNDEF) undef_err(c, n, v);
    jfail(c, PL_EINVAL, n->line, n->col, "%s expects a string, not %s", what, type_name(v));
}

/* Python str.strip/lstrip/rstrip; chars NULL = whitespace. */
static jv do_strip(jv s, jv chars, int left, int right) {
    const unsigned char *p = (const unsigned char *)s.u.s.p;
    size_t a = 0, b = s.u.s.n, l;
    int usec = chars.t == JV_STR;
    #define INSET(cp) (usec ? ({ int _f = 0; size_t _o = 0, _l; while (_o < chars.u.s.n) { uint32_t _c = u8_dec((const unsigned char *)chars.u.s.p + _o, chars.u.s.n - _o, &_l); if (_c == (cp)) { _f = 1; break; } _o += _l; } _f; }) : cp_space(cp))
    if (left)
        while (a < b) {
            uint32_t cp = u8_dec(p + a, b - a, &l);
            if (!INSET(cp)) break;
            a += l;
        }
    if (right)
        while (b > a) {
            size_t st = b - 1;
            while (st > a && (p[st] & 0xC0) == 0x80 && b - st < 4) st--;
            uint32_t cp = u8_dec(p + st, b - st, &l);
            if (st + l != b) { st = b - 1; cp = p[st]; }
            if (!INSET(cp)) break;
            b = st;
        }
    #undef INSET
    return v_str(s.u.s.p + a, b - a);
}

static jv case_map(jctx *c, jv s, int mode) { /* 0 lower 1 upper 2 title 3 capitalize */
    char *o = jalloc(c, s.u.s.n + 1);
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
    return v_str(o, s.u.s.n);
}

static jv do_split(jctx *c, jnode *n, jv s, jv sep, jv maxs) {
    int64_t maxsplit = -1;
    if (maxs.t != JV_UNDEF && maxs.t != JV_NONE) maxsplit = as_int(c, n, maxs, "maxsplit");
    /* collect into a growable array */
    size_t cap = 8, k = 0;
    jv *v = jalloc(c, cap * sizeof(jv));
    #define PUSH(x) do { if (k == cap) { jv *nv = jalloc(c, cap * 2 * sizeof(jv)); memcpy(nv, v, k * sizeof(jv)); v = nv; cap *= 2; } v[k++] = (x); } while (0)
    const unsigned char *p = (const unsigned char *)s.u.s.p;
    size_t len = s.u.s.n;
    if (sep.t == JV_UNDEF || sep.t == JV_NONE) {
        size_t i = 0, l;
        while (i < len) {
            while (i < len) { uint32_t cp = u8_dec(p + i, len - i, &l); if (!cp_space(cp)) break; i += l; }
            if (i >= len) break;
            if (maxsplit >= 0 && (int64_t)k >= maxsplit) {
                PUSH(v_str(s.u.s.p + i, len - i));
                break;
            }
            size_t st = i;
            while (i < len) { uint32_t cp = u8_dec(p + i, len - i, &l); if (cp_space(cp)) break; i += l; }
            PUSH(v_str(s.u.s.p + st, i - st));
        }
    } else {
        sep = need_str(c, n, sep, "split separator");
        if (sep.u.s.n == 0) jfail(c, PL_EINVAL, n->line, n->col, "split: empty separator");
        size_t i = 0;
        for (;;) {
            const char *f = (maxsplit >= 0 && (int64_t)k >= maxsplit) ? NULL
                           : memmem(s.u.s.p + i, len - i, sep.u.s.p, sep.u.s.n);
            if (!f) { PUSH(v_str(s.u.s.p + i, len - i)); break; }
            PUSH(v_str(s.u.s.p + i, (size_t)(f - (s.u.s.p + i))));
            i = (size_t)(f - s.u.s.p) + sep.u.s.n;
        }
    }
    #undef PUSH
    jv r = v_list(c, 0);
    r.u.l->n = k;
    r.u.l->v = v;
    return r;
}

static jv do_replace(jctx *c, jnode *n, jv s, jv a, jv b, jv cnt) {
    a = need_str(c, n, a, "replace");
    b = need_str(c, n, b, "replace");
    int64_t count = -1;
    if (cnt.t != JV_UNDEF && cnt.t != JV_NONE) count = as_int(c, n, cnt, "replace count");
    sb o = {c, 0, 0, 0};
    size_t i = 0;
    int64_t done = 0;
    if (a.u.s.n == 0) { /* Python inserts b between every character */
        size_t l;
        while (count < 0 || done < count) {
            sb_put(&o, b.u.s.p, b.u.s.n);
            done++;
            if (i >= s.u.s.n) break;
            u8_dec((const unsigned char *)s.u.s.p + i, s.u.s.n - i, &l);
            sb_put(&o, s.u.s.p + i, l);
            i += l;
        }
        sb_put(&o, s.u.s.p + i, s.u.s.n - i);
        return sb_val(&o);
    }
    while (count < 0 || done < count) {
        const char *f = memmem(s.u.s.p + i, s.u.s.n - i, a.u.s.p, a.u.s.n);
        if (!f) break;
        sb_put(&o, s.u.s.p + i, (size_t)(f - s.u.s.p) - i);
        sb_put(&o, b.u.s.p, b.u.s.n);
        i = (size_t)(f - s.u.s.p) + a.u.s.n;
        done++;
    }
    sb_put(&o, s.u.s.p + i, s.u.s.n - i);
    return sb_val(&o);
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
    list = as_iter(c, n, list);
    sb o = {c, 0, 0, 0};
    for (size_t i = 0; i < list.u.l->n; i++) {
        if (i) sb_put(&o, sep.u.s.p, sep.u.s.n);
        jv e = list.u.l->v[i];
        if (attr.t == JV_STR) e = get_attr(c, n, e, attr.u.s.p, attr.u.s.n);
        to_str(&o, e, 0);
    }
    return sb_val(&o);
}

static jv method_call(jctx *c, jnode *n, jv o, const char *m, size_t mn, jargs *a) {
#define IS(s) (mn == strlen(s) && !memcmp(m, s, mn))
    if (o.t == JV_UNDEF) undef_err(c, n, o);
    if (o.t == JV_STR) {
        if (IS("strip") || IS("lstrip") || IS("rstrip")) {
            check_nargs(c, n, a, 1, "strip");
            jv ch = arg(a, 0, NULL);
            if (ch.t == JV_NONE) ch = v_undef(NULL, 0);
            if (ch.t != JV_UNDEF) need_str(c, n, ch, "strip");
            return do_strip(o, ch, !IS("rstrip"), !IS("lstrip"));
        }
        if (IS("upper")) return case_map(c, o, 1);
        if (IS("lower")) return case_map(c, o, 0);
        if (IS("title")) return case_map(c, o, 2);
        if (IS("capitalize")) return case_map(c, o, 3);
        if (IS("startswith") || IS("endswith")) {
            check_nargs(c, n, a, 1, "startswith");
            return v_bool(starts_ends(c, n, o, arg(a, 0, NULL), IS("endswith")));
        }
        if (IS("split")) return do_split(c, n, o, arg(a, 0, "sep"), arg(a, 1, "maxsplit"));
        if (IS("replace")) return do_replace(c, n, o, arg(a, 0, NULL), arg(a, 1, NULL), arg(a, 2, NULL));
        if (IS("join")) return do_join(c, n, o, arg(a, 0, NULL), v_undef(NULL, 0));
        if (IS("find") || IS("count")) {
            jv x = need_str(c, n, arg(a, 0, NULL), "find");
            if (IS("find")) {
                const char *f = x.u.s.n ? memmem(o.u.s.p, o.u.s.n, x.u.s.p, x.u.s.n) : o.u.s.p;
                return v_int(f ? (int64_t)u8_count(o.u.s.p, (size_t)(f - o.u.s.p)) : -1);
            }
            if (!x.u.s.n) return v_int((int64_t)u8_count(o.u.s.p, o.u.s.n) + 1);
            int64_t k = 0;
            size_t i = 0;
            const char *f;
            while ((f = memmem(o.u.s.p + i, o.u.s.n - i, x.u.s.p, x.u.s.n))) { k++; i = (size_t)(f - o.u.s.p) + x.u.s.n; }
            return v_int(k);
        }
    } else if (o.t == JV_DICT) {
        if (!o.flag && (IS("items") || IS("keys") || IS("values"))) {
            jv r = v_list(c, o.u.d->n);
            for (size_t i = 0; i < o.u.d->n; i++) {
                jv k = v_str(o.u.d->kp[i], o.u.d->kn[i]);
                if (IS("keys")) r.u.l->v[i] = k;
                else if (IS("values")) r.u.l->v[i] = o.u.d->v[i];
                else {
                    jv t = v_list(c, 2);
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
            jv *e = k.t == JV_STR ? dict_get(o.u.d, k.u.s.p, k.u.s.n) : NULL;
            if (e) return *e;
            jv d = arg(a, 1, NULL);
            return d.t == JV_UNDEF ? v_none() : d;
        }
        jv *e = dict_get(o.u.d, m, mn);
        if (e) jfail(c, PL_EUNSUPPORTED, n->line, n->col, "'%.*s' is not callable", (int)mn, m);
    }
    jfail(c, PL_EUNSUPPORTED, n->line, n->col, "unsupported method %s.%.*s()", type_name(o), (int)mn, m);
#undef IS
}

static jv call_global(jctx *c, jnode *n, int fn, jargs *a) {
    if (fn == FN_RAISE) {
        jv m = arg(a, 0, NULL);
        jv s = str_of(c, m);
        jfail(c, PL_EINVAL, n->line, n->col, "raise_exception: %.*s", (int)(s.u.s.n > 600 ? 600 : s.u.s.n), s.u.s.p);
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
        if (f.u.s.n >= sizeof fmt) jfail(c, PL_EINVAL, n->line, n->col, "strftime_now: format longer than 255 bytes");
        memcpy(fmt, f.u.s.p, f.u.s.n);
        fmt[f.u.s.n] = 0;
        size_t k = f.u.s.n ? strftime(buf, sizeof buf, fmt, &tm) : 0;
        return v_str(jstrdup(c, buf, k), k);
    }
    if (fn == FN_NAMESPACE || fn == FN_DICT) {
        jv d = v_dict(c);
        d.flag = fn == FN_NAMESPACE;
        for (int i = 0; i < a->n; i++) { /* namespace({'a': 1}) */
            if (a->v[i].t != JV_DICT) jfail(c, PL_EINVAL, n->line, n->col, "%s() positional argument must be a dict", fn == FN_DICT ? "dict" : "namespace");
            for (size_t k = 0; k < a->v[i].u.d->n; k++) dict_set(c, d.u.d, a->v[i].u.d->kp[k], a->v[i].u.d->kn[k], a->v[i].u.d->v[k]);
        }
        for (int i = 0; i < a->nkw; i++) dict_set(c, d.u.d, a->kn[i], a->kl[i], a->kv[i]);
        return d;
    }
    /* range */
    int64_t lo = 0, hi, st = 1;
    if (a->n == 1) hi = as_int(c, n, a->v[0], "range()");
    else if (a->n == 2 || a->n == 3) {
        lo = as_int(c, n, a->v[0], "range()");
        hi = as_int(c, n, a->v[1], "range()");
        if (a->n == 3) st = as_int(c, n, a->v[2], "range()");
    } else jfail(c, PL_EINVAL, n->line, n->col, "range() takes 1 to 3 arguments");
    if (st == 0) jfail(c, PL_EINVAL, n->line, n->col, "range() step must not be zero");
    uint64_t cnt = 0;
    if (st > 0 && hi > lo) cnt = ((uint64_t)hi - (uint64_t)lo + (uint64_t)st - 1) / (uint64_t)st;
    if (st < 0 && lo > hi) cnt = ((uint64_t)lo - (uint64_t)hi + (uint64_t)(-st) - 1) / (uint64_t)(-st);
    if (cnt > 1000000) jfail(c, PL_ERANGE, n->line, n->col, "range() of %llu items is too large (limit 1000000)", (unsigned long long)cnt);
    jv r = v_list(c, (size_t)cnt);
    for (uint64_t i = 0; i < cnt; i++) r.u.l->v[i] = v_int(lo + (int64_t)i * st);
    return r;
}

static int run_test(jctx *c, jnode *n, jv v, const char *t, size_t tn, jargs *a);

static jv filter(jctx *c, jnode *n, jv v, jargs *a) {
    const char *m = n->name;
    size_t mn = n->name_n;
#define IS(s) (mn == strlen(s) && !memcmp(m, s, mn))
    if (IS("default") || IS("d")) {
        jv dflt = arg(a, 0, "default_value");
        int boolean = truthy(arg(a, 1, "boolean"));
        if (v.t == JV_UNDEF || (boolean && !truthy(v))) return dflt.t == JV_UNDEF ? v_str("", 0) : dflt;
        return v;
    }
    if (IS("safe")) return v;
    if (IS("string")) return str_of(c, v);
    if (v.t == JV_UNDEF && !IS("length") && !IS("count") && !IS("list") && !IS("tojson")) undef_err(c, n->a, v);
    if (IS("trim")) {
        jv ch = arg(a, 0, "chars");
        if (ch.t == JV_NONE) ch = v_undef(NULL, 0);
        return do_strip(str_of(c, v), ch, 1, 1);
    }
    if (IS("length") || IS("count")) {
        if (v.t == JV_STR) return v_int((int64_t)u8_count(v.u.s.p, v.u.s.n));
        if (v.t == JV_LIST) return v_int((int64_t)v.u.l->n);
        if (v.t == JV_DICT) return v_int((int64_t)v.u.d->n);
        if (v.t == JV_UNDEF) return v_int(0);
        jfail(c, PL_EINVAL, n->line, n->col, "object of type %s has no len()", type_name(v));
    }
    if (IS("upper")) return case_map(c, str_of(c, v), 1);
    if (IS("lower")) return case_map(c, str_of(c, v), 0);
    if (IS("capitalize")) return case_map(c, str_of(c, v), 3);
    if (IS("title")) return case_map(c, str_of(c, v), 2);
    if (IS("tojson")) {
        jv ind = arg(a, 0, "indent");
        int indent = -1;
        if (ind.t != JV_UNDEF && ind.t != JV_NONE) {
            int64_t x = as_int(c, n, ind, "tojson indent");
            if (x < 0 || x > 64) jfail(c, PL_EUNSUPPORTED, n->line, n->col, "tojson: indent %lld out of range 0..64", (long long)x);
            indent = (int)x;
        }
        if (truthy(arg(a, -1, "sort_keys")))
            jfail(c, PL_EUNSUPPORTED, n->line, n->col, "tojson: sort_keys is not supported");
        sb o = {c, 0, 0, 0};
        to_json(c, &o, v, indent, 0, n->line, n->col);
        return sb_val(&o);
    }
    if (IS("first") || IS("last")) {
        jv l = as_iter(c, n, v);
        if (!l.u.l->n) return v_undef(NULL, 0);
        return l.u.l->v[IS("first") ? 0 : l.u.l->n - 1];
    }
    if (IS("list")) return as_iter(c, n, v);
    if (IS("reverse")) {
        if (v.t == JV_STR) {
            jv l = as_iter(c, n, v);
            sb o = {c, 0, 0, 0};
            for (size_t i = l.u.l->n; i > 0; i--) sb_put(&o, l.u.l->v[i - 1].u.s.p, l.u.l->v[i - 1].u.s.n);
            return sb_val(&o);
        }
        jv l = as_iter(c, n, v);
        jv r = v_list(c, l.u.l->n);
        for (size_t i = 0; i < l.u.l->n; i++) r.u.l->v[i] = l.u.l->v[l.u.l->n - 1 - i];
        return r;
    }
    if (IS("join")) {
        jv sep = arg(a, 0, "d");
        if (sep.t == JV_UNDEF) sep = v_str("", 0);
        return do_join(c, n, str_of(c, sep), v, arg(a, 1, "attribute"));
    }
    if (IS("replace")) return do_replace(c, n, str_of(c, v), arg(a, 0, NULL), arg(a, 1, NULL), arg(a, 2, NULL));
    if (IS("int")) {
        if (v.t == JV_INT || v.t == JV_BOOL) return v_int(v.u.i);
        if (v.t == JV_FLOAT) return v_int(isfinite(v.u.f) && fabs(v.u.f) < 9.2e18 ? (int64_t)v.u.f : 0);
        if (v.t == JV_STR) {
            char buf[64];
            size_t k = v.u.s.n < 63 ? v.u.s.n : 63;
            memcpy(buf, v.u.s.p, k);
            buf[k] = 0;
            char *e;
            long long x = strtoll(buf, &e, 10);
            return v_int(*e == 0 && k ? x : 0);
        }
        return v_int(0);
    }
    if (IS("float")) {
        if (is_num(v)) return v_float(as_num(v));
        if (v.t == JV_STR) {
            char buf[64];
            size_t k = v.u.s.n < 63 ? v.u.s.n : 63;
            memcpy(buf, v.u.s.p, k);
            buf[k] = 0;
            char *e;
            double x = strtod(buf, &e);
            return v_float(*e == 0 && k ? x : 0.0);
        }
        return v_float(0);
    }
    if (IS("abs")) {
        if (v.t == JV_FLOAT) return v_float(fabs(v.u.f));
        int64_t x = as_int(c, n, v, "abs");
        if (x == INT64_MIN) jfail(c, PL_ERANGE, n->line, n->col, "integer overflow");
        return v_int(x < 0 ? -x : x);
    }
    if (IS("round")) {
        jv pr = arg(a, 0, "precision");
        int64_t p = pr.t == JV_UNDEF ? 0 : as_int(c, n, pr, "round precision");
        if (p < 0 || p > 15) jfail(c, PL_EUNSUPPORTED, n->line, n->col, "round: precision out of range");
        double s = pow(10, (double)p);
        return v_float(round(as_num(v) * s) / s);
    }
    if (IS("items")) return method_call(c, n, v, "items", 5, a);
    if (IS("unique")) {
        jv l = as_iter(c, n, v);
        jv r = v_list(c, l.u.l->n);
        size_t k = 0;
        for (size_t i = 0; i < l.u.l->n; i++) {
            int dup = 0;
            for (size_t j = 0; j < k && !dup; j++) dup = v_eq(r.u.l->v[j], l.u.l->v[i]);
            if (!dup) r.u.l->v[k++] = l.u.l->v[i];
        }
        r.u.l->n = k;
        return r;
    }
    if (IS("selectattr") || IS("rejectattr") || IS("select") || IS("reject")) {
        int byattr = IS("selectattr") || IS("rejectattr"), sel = IS("selectattr") || IS("select");
        jv l = as_iter(c, n, v);
        jv attr = byattr ? need_str(c, n, arg(a, 0, NULL), "selectattr attribute") : v_undef(NULL, 0);
        int ti = byattr ? 1 : 0;
        jv tname = arg(a, ti, NULL);
        jargs ta = {0};
        if (a->n > ti + 1) { ta.n = a->n - ti - 1; ta.v = a->v + ti + 1; }
        if (tname.t != JV_UNDEF) tname = need_str(c, n, tname, "test name");
        jv r = v_list(c, l.u.l->n);
        size_t k = 0;
        for (size_t i = 0; i < l.u.l->n; i++) {
            jv e = l.u.l->v[i];
            jv x = byattr ? (e.t == JV_DICT ? get_attr(c, n, e, attr.u.s.p, attr.u.s.n) : v_undef(NULL, 0)) : e;
            int ok = tname.t == JV_UNDEF ? truthy(x) : run_test(c, n, x, tname.u.s.p, tname.u.s.n, &ta);
            if (ok == sel) r.u.l->v[k++] = e;
        }
        r.u.l->n = k;
        return r;
    }
    if (IS("map")) {
        jv l = as_iter(c, n, v);
        jv attr = arg(a, -1, "attribute");
        jv r = v_list(c, l.u.l->n);
        if (attr.t == JV_STR) {
            jv dflt = arg(a, -1, "default");
            for (size_t i = 0; i < l.u.l->n; i++) {
                jv x = l.u.l->v[i].t == JV_DICT ? get_attr(c, n, l.u.l->v[i], attr.u.s.p, attr.u.s.n) : v_undef(NULL, 0);
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
        if (fname.u.s.n == 3 && !memcmp(fname.u.s.p, "map", 3)) jfail(c, PL_EUNSUPPORTED, n->line, n->col, "map(\"map\") is not supported");
        for (size_t i = 0; i < l.u.l->n; i++) r.u.l->v[i] = filter(c, &fake, l.u.l->v[i], &rest);
        return r;
    }
    if (IS("indent")) {
        jv w = arg(a, 0, "width");
        int64_t width = w.t == JV_UNDEF ? 4 : as_int(c, n, w, "indent width");
        if (width < 0 || width > 256) jfail(c, PL_EUNSUPPORTED, n->line, n->col, "indent width out of range");
        int first = truthy(arg(a, 1, "first")), blank = truthy(arg(a, 2, "blank"));
        jv s = str_of(c, v);
        sb o = {c, 0, 0, 0};
        size_t i = 0;
        int lineno = 0;
        while (i <= s.u.s.n) {
            const char *nl = memchr(s.u.s.p + i, '\n', s.u.s.n - i);
            size_t e = nl ? (size_t)(nl - s.u.s.p) : s.u.s.n;
            int empty = e == i;
            if ((lineno > 0 || first) && (!empty || blank))
                for (int64_t k = 0; k < width; k++) sb_puts(&o, " ");
            sb_put(&o, s.u.s.p + i, e - i);
            if (!nl) break;
            sb_puts(&o, "\n");
            i = e + 1;
            lineno++;
        }
        return sb_val(&o);
    }
    jfail(c, PL_EUNSUPPORTED, n->line, n->col, "unsupported filter '%.*s'", (int)(mn > 60 ? 60 : mn), m);
#undef IS
}

static int run_test(jctx *c, jnode *n, jv v, const char *t, size_t tn, jargs *a) {
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
        int64_t x = as_int(c, n, v, "even/odd test");
        return IS("even") ? (x % 2 == 0) : (x % 2 != 0);
    }
    if (IS("divisibleby")) {
        int64_t x = as_int(c, n, v, "divisibleby"), y = as_int(c, n, arg(a, 0, NULL), "divisibleby");
        if (y == 0) jfail(c, PL_EINVAL, n->line, n->col, "divisibleby 0");
        return x % y == 0;
    }
    if (IS("equalto") || IS("eq") || IS("==") || IS("sameas")) return v_eq(v, arg(a, 0, NULL));
    if (IS("ne") || IS("!=")) return !v_eq(v, arg(a, 0, NULL));
    if (IS("lt") || IS("lessthan")) return cmp_order(c, n, v, arg(a, 0, NULL)) < 0;
    if (IS("gt") || IS("greaterthan")) return cmp_order(c, n, v, arg(a, 0, NULL)) > 0;
    if (IS("le")) return cmp_order(c, n, v, arg(a, 0, NULL)) <= 0;
    if (IS("ge")) return cmp_order(c, n, v, arg(a, 0, NULL)) >= 0;
    if (IS("in")) return contains(c, n, arg(a, 0, NULL), v);
    if (IS("lower") || IS("upper")) {
        if (v.t != JV_STR) return 0;
        jv m = case_map(c, v, IS("lower") ? 0 : 1);
        return !memcmp(m.u.s.p, v.u.s.p, v.u.s.n);
    }
    jfail(c, PL_EUNSUPPORTED, n->line, n->col, "unsupported test '%.*s'", (int)(tn > 60 ? 60 : tn), t);
#undef IS
}

static jv eval(jctx *c, jnode *n) {
    step(c, n);
    switch (n->kind) {
    case E_LIT: return n->lit;
    case E_NAME: return lookup(c, n->name, n->name_n);
    case E_ATTR: return get_attr(c, n, eval(c, n->a), n->name, n->name_n);
    case E_ITEM: {
        jv o = eval(c, n->a);
        jv k = eval(c, n->b);
        if (o.t == JV_UNDEF) undef_err(c, n->a, o);
        return get_item(c, n, o, k);
    }
    case E_SLICE: {
        jv o = eval(c, n->a);
        jv lo = n->b ? eval(c, n->b) : v_none();
        jv hi = n->c ? eval(c, n->c) : v_none();
        jv st = n->d ? eval(c, n->d) : v_none();
        return do_slice(c, n, o, lo, hi, st);
    }
    case E_CALL: {
        if (n->a->kind == E_ATTR) {
            jv o = eval(c, n->a->a);
            jargs a = eval_args(c, n);
            return method_call(c, n, o, n->a->name, n->a->name_n, &a);
        }
        jv f = eval(c, n->a);
        if (f.t != JV_FUNC) {
            if (f.t == JV_UNDEF) undef_err(c, n->a, f);
            jfail(c, PL_EINVAL, n->line, n->col, "a %s is not callable", type_name(f));
        }
        jargs a = eval_args(c, n);
        return call_global(c, n, (int)f.u.i, &a);
    }
    case E_FILTER: {
        jv v = eval(c, n->a);
        jargs a = eval_args(c, n);
        return filter(c, n, v, &a);
    }
    case E_TEST: {
        jv v = eval(c, n->a);
        jargs a = eval_args(c, n);
        int r = run_test(c, n, v, n->name, n->name_n, &a);
        return v_bool(n->op ? !r : r);
    }
    case E_BIN: {
        jv a = eval(c, n->a);
        jv b = eval(c, n->b);
        return arith(c, n, n->op, a, b);
    }
    case E_NEG: case E_POS: {
        jv a = eval(c, n->a);
        if (a.t == JV_FLOAT) return v_float(n->kind == E_NEG ? -a.u.f : a.u.f);
        int64_t x = as_int(c, n, a, "unary operand");
        if (n->kind == E_NEG && x == INT64_MIN) jfail(c, PL_ERANGE, n->line, n->col, "integer overflow");
        return v_int(n->kind == E_NEG ? -x : x);
    }
    case E_NOT: return v_bool(!truthy(eval(c, n->a)));
    case E_AND: {
        jv a = eval(c, n->a);
        return truthy(a) ? eval(c, n->b) : a;
    }
    case E_OR: {
        jv a = eval(c, n->a);
        return truthy(a) ? a : eval(c, n->b);
    }
    case E_COND:
        if (truthy(eval(c, n->b))) return eval(c, n->a);
        return n->c ? eval(c, n->c) : v_undef(NULL, 0);
    case E_LIST: case E_TUPLE: {
        jv r = v_list(c, (size_t)n->nkids);
        r.flag = n->kind == E_TUPLE;
        for (int i = 0; i < n->nkids; i++) r.u.l->v[i] = eval(c, n->kids[i]);
        return r;
    }
    case E_DICT: {
        jv d = v_dict(c);
        for (int i = 0; i < n->nkids; i++) {
            jv k = eval(c, n->kids[i]);
            if (k.t != JV_STR) jfail(c, PL_EUNSUPPORTED, n->kids[i]->line, n->kids[i]->col, "dict keys must be strings here, not %s", type_name(k));
            dict_set(c, d.u.d, k.u.s.p, k.u.s.n, eval(c, n->kids2[i]));
        }
        return d;
    }
    case E_CMP: {
        jv a = eval(c, n->a);
        for (int i = 0; i < n->nkids; i++) {
            jv b = eval(c, n->kids[i]);
            int r;
            switch (n->ops[i]) {
            case OP_EQ: r = v_eq(a, b); break;
            case OP_NE: r = !v_eq(a, b); break;
            case OP_LT: r = cmp_order(c, n, a, b) < 0; break;
            case OP_LE: r = cmp_order(c, n, a, b) <= 0; break;
            case OP_GT: r = cmp_order(c, n, a, b) > 0; break;
            case OP_GE: r = cmp_order(c, n, a, b) >= 0; break;
            case OP_IN: r = contains(c, n, b, a); break;
            default: r = !contains(c, n, b, a); break;
            }
            if (!r) return v_bool(0);
            a = b;
        }
        return v_bool(1);
    }
    }
    jfail(c, PL_EUNSUPPORTED, n->line, n->col, "internal: bad expression node %d", n->kind);
}

static void set_var(jctx *c, const char *k, size_t n, jv v) { dict_set(c, c->frames[c->nframes - 1], k, n, v); }

static void exec_for(jctx *c, jnode *n) {
    jv it = as_iter(c, n->a, eval(c, n->a));
    jlist *src = it.u.l;
    /* apply the loop filter first: loop.length counts the filtered items */
    jv *items = src->v;
    size_t cnt = src->n;
    if (n->b) {
        items = cnt ? jalloc(c, cnt * sizeof(jv)) : NULL;
        size_t k = 0;
        for (size_t i = 0; i < src->n; i++) {
            push_frame(c, n);
            jv e = src->v[i];
            if (n->nkw == 1) set_var(c, n->kwn[0], n->kwl[0], e);
            else if (e.t == JV_LIST && e.u.l->n == (size_t)n->nkw)
                for (int t = 0; t < n->nkw; t++) set_var(c, n->kwn[t], n->kwl[t], e.u.l->v[t]);
            int ok = truthy(eval(c, n->b));
            c->nframes--;
            if (ok) items[k++] = e;
        }
        cnt = k;
    }
    if (cnt == 0) {
        if (n->d) exec_body(c, n->d);
        return;
    }
    for (size_t i = 0; i < cnt; i++) {
        step(c, n);
        push_frame(c, n);
        jv e = items[i];
        if (n->nkw == 1) set_var(c, n->kwn[0], n->kwl[0], e);
        else {
            if (e.t != JV_LIST || e.u.l->n != (size_t)n->nkw)
                jfail(c, PL_EINVAL, n->line, n->col, "cannot unpack a %s into %d loop variables", type_name(e), n->nkw);
            for (int t = 0; t < n->nkw; t++) set_var(c, n->kwn[t], n->kwl[t], e.u.l->v[t]);
        }
        jv loop = v_dict(c);
        jdict *d = loop.u.d;
        dict_set(c, d, "index0", 6, v_int((int64_t)i));
        dict_set(c, d, "index", 5, v_int((int64_t)i + 1));
        dict_set(c, d, "revindex0", 9, v_int((int64_t)(cnt - 1 - i)));
        dict_set(c, d, "revindex", 8, v_int((int64_t)(cnt - i)));
        dict_set(c, d, "first", 5, v_bool(i == 0));
        dict_set(c, d, "last", 4, v_bool(i + 1 == cnt));
        dict_set(c, d, "length", 6, v_int((int64_t)cnt));
        dict_set(c, d, "depth", 5, v_int(1));
        dict_set(c, d, "depth0", 6, v_int(0));
        if (i > 0) dict_set(c, d, "previtem", 8, items[i - 1]);
        if (i + 1 < cnt) dict_set(c, d, "nextitem", 8, items[i + 1]);
        set_var(c, "loop", 4, loop);
        exec_body(c, n->c);
        c->nframes--;
        if (c->brk == 1) { c->brk = 0; break; }
        if (c->brk == 2) c->brk = 0;
    }
}

static void exec_body(jctx *c, jnode *body) {
    for (int i = 0; i < body->nkids; i++) {
        jnode *n = body->kids[i];
        step(c, n);
        switch (n->kind) {
        case N_TEXT: emit(c, n, n->name, n->name_n); break;
        case N_OUT: {
            jv v = eval(c, n->a);
            if (v.t == JV_STR) emit(c, n, v.u.s.p, v.u.s.n);
            else {
                jv s = str_of(c, v);
                emit(c, n, s.u.s.p, s.u.s.n);
            }
            break;
        }
        case N_IF: {
            jnode *cur = n;
            while (cur) {
                if (truthy(eval(c, cur->a))) { exec_body(c, cur->b); break; }
                if (cur->c && cur->c->kind == N_IF) { cur = cur->c; continue; }
                if (cur->c) exec_body(c, cur->c);
                break;
            }
            break;
        }
        case N_FOR: exec_for(c, n); break;
        case N_SET: {
            jv v = eval(c, n->a);
            if (n->op) {
                jv ns = lookup(c, n->name, n->name_n);
                if (ns.t != JV_DICT || !ns.flag)
                    jfail(c, PL_EINVAL, n->line, n->col, "cannot assign attribute on a %s ('%.*s' is not a namespace)",
                          type_name(ns), (int)n->name_n, n->name);
                if (n->kwl[0] > 0 && n->kwn[0][0] == '_') jfail(c, PL_EINVAL, n->line, n->col, "namespace attribute names cannot start with '_'");
                dict_set(c, ns.u.d, n->kwn[0], n->kwl[0], v);
            } else {
                set_var(c, n->name, n->name_n, v);
            }
            break;
        }
        case N_SETBLOCK: {
            /* render the body into a string */
            char *so = c->out;
            size_t sn = c->out_n, scap = c->out_cap;
            c->out = NULL;
            c->out_n = c->out_cap = 0;
            exec_body(c, n->a);
            jv v = v_str(jstrdup(c, c->out ? c->out : "", c->out_n), c->out_n);
            free(c->out);
            c->out = so;
            c->out_n = sn;
            c->out_cap = scap;
            set_var(c, n->name, n->name_n, v);
            break;
        }
        case N_BREAK: case N_CONTINUE: {
            int in_loop = 0;
            for (int f = c->nframes - 1; f >= 2 && !in_loop; f--) in_loop = dict_get(c->frames[f], "loop", 4) != NULL;
            if (!in_loop) jfail(c, PL_EFORMAT, n->line, n->col, "'%s' outside a loop", n->kind == N_BREAK ? "break" : "continue");
            c->brk = n->kind == N_BREAK ? 1 : 2;
            return;
        }
        case N_BODY: exec_body(c, n); break;
        default: jfail(c, PL_EUNSUPPORTED, n->line, n->col, "internal: bad statement node %d", n->kind);
        }
        if (c->brk) return;
    }
}

int pl_jinja_render(const pl_jinja *t, const cJSON *vars, const pl_jinja_opts *opts, char **out, size_t *out_len,
                    pl_err *err) {
    *out = NULL;
    if (out_len) *out_len = 0;
    if (vars && !cJSON_IsObject(vars)) return pl_err_set(err, PL_EINVAL, "%s: variables must be a JSON object", t->name);
    jarena arena = {0};
    arena.cap = opts && opts->max_memory ? opts->max_memory : ((size_t)512 << 20);
    jctx *c = calloc(1, sizeof *c);
    if (!c) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", t->name);
    ctx_init(c, err, t->name, &arena);
    c->opts = opts;
    c->max_out = opts && opts->max_output ? opts->max_output : ((size_t)64 << 20);
    c->max_steps = opts && opts->max_steps ? opts->max_steps : 20000000ULL;
    if (setjmp(c->jb)) {
        free(c->out);
        arena_free(&arena);
        int code = err ? err->code : PL_EINVAL;
        free(c);
        return code;
    }
    push_frame(c, t->root);
    if (vars)
        for (const cJSON *e = vars->child; e; e = e->next)
            if (e->string) set_var(c, jstrdup(c, e->string, strlen(e->string)), strlen(e->string), from_json(c, e, 0));
    push_frame(c, t->root);
    emit(c, t->root, "", 0);
    exec_body(c, t->root);
    *out = c->out;
    if (out_len) *out_len = c->out_n;
    arena_free(&arena);
    free(c);
    return PL_OK;
}

int pl_jinja_render_string(const char *src, size_t len, const char *name, const cJSON *vars,
                           const pl_jinja_opts *opts, char **out, size_t *out_len, pl_err *err) {
    pl_jinja *t;
    *out = NULL;
    int rc = pl_jinja_parse(&t, src, len, name, err);
    if (rc) return rc;
    rc = pl_jinja_render(t, vars, opts, out, out_len, err);
    pl_jinja_free(t);
    return rc;
}
