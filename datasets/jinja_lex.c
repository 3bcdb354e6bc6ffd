/* jinja_lex.c: the template lexer: text, {{ }}, {% %} and {# #} tags with
 * Jinja's whitespace control, and the tokens inside tags. */
#include "jinja_int.h"

#include <ctype.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ lexer */

static void tok_push(jctx *c, jtok t) {
    if (c->ntok == c->captok) {
        size_t nc = c->captok ? c->captok * 2 : 256;
        jtok *nt = jj_alloc(c, nc * sizeof(jtok));
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
    if (i >= c->n) jj_fail(c, PL_EFORMAT, t->line, t->col, "unterminated string literal");
    size_t end = i;
    char *o = jj_alloc(c, (end - start) * 4 + 1);
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
                jj_fail(c, PL_EFORMAT, t->line, t->col, "string literal: truncated or invalid \\%c escape", e);
            if (cp >= 0xD800 && cp <= 0xDFFF)
                jj_fail(c, PL_EUNSUPPORTED, t->line, t->col, "string literal: surrogate escape \\%c%04X", e, (unsigned)cp);
            k += jj_u8_enc(cp, o + k);
            j += (size_t)nd;
            break;
        }
        default:
            if (e >= '0' && e <= '7') {
                uint32_t cp = 0;
                int m = 0;
                while (m < 3 && j < end && c->src[j] >= '0' && c->src[j] <= '7') { cp = cp * 8 + (uint32_t)(c->src[j] - '0'); j++; m++; }
                j--;
                k += jj_u8_enc(cp, o + k);
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
            jj_fail(c, PL_EFORMAT, oline, ocol, "unclosed %s tag: missing '%s'", kind == '%' ? "{%" : "{{",
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
                    jj_fail(c, PL_EUNSUPPORTED, t.line, t.col, "integer literal too large");
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
                    jj_fail(c, PL_EFORMAT, t.line, t.col, "unexpected character '%c' (0x%02x) in expression",
                          isprint(ch) ? ch : '?', ch);
                t.n = 1;
                if (ch == '(' || ch == '[' || ch == '{') balance++;
                if (ch == ')' || ch == ']' || ch == '}') {
                    if (balance == 0) jj_fail(c, PL_EFORMAT, t.line, t.col, "unexpected '%c'", ch);
                    balance--;
                }
            }
            i += t.n;
        }
        tok_push(c, t);
    }
}

void jj_lex(jctx *c) {
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
            if (e + 1 >= c->n) jj_fail(c, PL_EFORMAT, line, col, "unclosed comment: missing '#}'");
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
