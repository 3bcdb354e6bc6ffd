/* jinja.c: the Jinja2 subset chat templates use: the entry points (parse,
 * render), the arenas, errors and UTF-8 helpers the other parts share.
 *
 * The parts, as Lua splits llex.c / lparser.c / lvm.c: jinja_lex.c (source
 * to tokens), jinja_parse.c (tokens to a tree), jinja_value.c (values,
 * their text and JSON forms), jinja_eval.c (rendering a tree),
 * jinja_filters.c (filters, tests, methods and global functions);
 * jinja_int.h holds the types they share.
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
#include "jinja_int.h"

#include <ctype.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ arena */

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

_Noreturn void jj_fail(jctx *c, int code, int line, int col, const char *fmt, ...) {
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

void *jj_alloc(jctx *c, size_t n) {
    void *p = arena_alloc(c->arena, n);
    if (!p) jj_fail(c, PL_ENOMEM, 0, 0, "out of memory (template values exceed %zu bytes)", c->arena->cap);
    return p;
}

char *jj_strdup(jctx *c, const char *s, size_t n) {
    char *p = jj_alloc(c, n + 1);
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* ------------------------------------------------------------------ UTF-8 helpers */

/* Decode one code point at s (n bytes available); *len gets its length (1 for
 * an invalid byte, which decodes as that byte's value). */
uint32_t jj_u8_dec(const unsigned char *s, size_t n, size_t *len) {
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

size_t jj_u8_enc(uint32_t cp, char *o) {
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
int jj_cp_space(uint32_t c) {
    return c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x1F) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

size_t jj_u8_count(const char *s, size_t n) {
    size_t k = 0, i = 0, l;
    while (i < n) { jj_u8_dec((const unsigned char *)s + i, n - i, &l); i += l; k++; }
    return k;
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
    if (len > ((size_t)64 << 20)) jj_fail(&c, PL_ERANGE, 0, 0, "template is %zu bytes, more than 64 MiB", len);
    /* normalize newlines, drop one trailing newline (keep_trailing_newline=False) */
    char *s = jj_alloc(&c, len + 1);
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
    jj_lex(&c);
    c.tp = 0;
    int which;
    t->root = jj_parse_body(&c, NULL, &which, &c.toks[0]);
    *out = t;
    return PL_OK;
}

void pl_jinja_free(pl_jinja *t) {
    if (!t) return;
    arena_free(&t->arena);
    free(t);
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
    jj_push_frame(c, t->root);
    if (vars)
        for (const cJSON *e = vars->child; e; e = e->next)
            if (e->string) jj_set_var(c, jj_strdup(c, e->string, strlen(e->string)), strlen(e->string), jj_from_json(c, e, 0));
    jj_push_frame(c, t->root);
    jj_emit(c, t->root, "", 0);
    jj_exec_body(c, t->root);
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
