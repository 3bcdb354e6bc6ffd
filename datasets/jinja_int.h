/* jinja_int.h: what the parts of the Jinja engine share (jinja.c lists
 * them): the arena, values, the node tree, tokens, the context of one parse
 * or render, and the functions one part calls in another (prefix jj_). */
#ifndef PL_JINJA_INT_H
#define PL_JINJA_INT_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

#include "jinja.h"

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

/* string builder in the arena */
typedef struct sb {
    jctx *c;
    char *p;
    size_t n, cap;
} sb;

/* Evaluated call arguments. */
typedef struct jargs {
    int n, nkw;
    jv *v;
    const char **kn;
    size_t *kl;
    jv *kv;
} jargs;

/* jinja.c */
_Noreturn void jj_fail(jctx *c, int code, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void *jj_alloc(jctx *c, size_t n);
char *jj_strdup(jctx *c, const char *s, size_t n);
uint32_t jj_u8_dec(const unsigned char *s, size_t n, size_t *len);
size_t jj_u8_enc(uint32_t cp, char *o);
int jj_cp_space(uint32_t c);
size_t jj_u8_count(const char *s, size_t n);

/* jinja_lex.c */
void jj_lex(jctx *c);

/* jinja_parse.c */
jnode *jj_parse_body(jctx *c, const char *const *ends, int *stop, jtok *opener);

/* jinja_value.c */
static inline jv jj_v_undef(const char *name, size_t n) { jv v = {0}; v.t = JV_UNDEF; v.u.s.p = name; v.u.s.n = n; return v; }
static inline jv jj_v_none(void) { jv v = {0}; v.t = JV_NONE; return v; }
static inline jv jj_v_bool(int b) { jv v = {0}; v.t = JV_BOOL; v.u.i = !!b; return v; }
static inline jv jj_v_int(int64_t i) { jv v = {0}; v.t = JV_INT; v.u.i = i; return v; }
static inline jv jj_v_float(double f) { jv v = {0}; v.t = JV_FLOAT; v.u.f = f; return v; }
static inline jv jj_v_str(const char *p, size_t n) { jv v = {0}; v.t = JV_STR; v.u.s.p = p; v.u.s.n = n; return v; }
jv jj_v_list(jctx *c, size_t n);
jv jj_v_dict(jctx *c);
jv *jj_dict_get(jdict *d, const char *k, size_t n);
void jj_dict_set(jctx *c, jdict *d, const char *k, size_t n, jv v);
const char *jj_type_name(jv v);
int jj_truthy(jv v);
void jj_sb_put(sb *b, const char *s, size_t n);
void jj_sb_puts(sb *b, const char *s);
jv jj_sb_val(sb *b);
void jj_to_str(sb *b, jv v, int repr);
jv jj_str_of(jctx *c, jv v);
void jj_to_json(jctx *c, sb *b, jv v, int indent, int level, int line, int col);
int jj_v_eq(jv a, jv b);
jv jj_from_json(jctx *c, const cJSON *j, int depth);

/* jinja_eval.c */
void jj_emit(jctx *c, jnode *n, const char *s, size_t len);
void jj_push_frame(jctx *c, jnode *at);
_Noreturn void jj_undef_err(jctx *c, jnode *n, jv v);
int64_t jj_as_int(jctx *c, jnode *n, jv v, const char *what);
jv jj_get_attr(jctx *c, jnode *n, jv o, const char *name, size_t nn);
int jj_cmp_order(jctx *c, jnode *n, jv a, jv b);
int jj_contains(jctx *c, jnode *n, jv hay, jv x);
static inline double jj_as_num(jv v) { return v.t == JV_FLOAT ? v.u.f : (double)v.u.i; }
static inline int jj_is_num(jv v) { return v.t == JV_INT || v.t == JV_FLOAT || v.t == JV_BOOL; }
jv jj_as_iter(jctx *c, jnode *n, jv v);
jv jj_eval(jctx *c, jnode *n);
void jj_set_var(jctx *c, const char *k, size_t n, jv v);
void jj_exec_body(jctx *c, jnode *body);

/* jinja_filters.c */
jargs jj_eval_args(jctx *c, jnode *n);
jv jj_method_call(jctx *c, jnode *n, jv o, const char *m, size_t mn, jargs *a);
jv jj_call_global(jctx *c, jnode *n, int fn, jargs *a);
jv jj_filter(jctx *c, jnode *n, jv v, jargs *a);
int jj_run_test(jctx *c, jnode *n, jv v, const char *t, size_t tn, jargs *a);

#endif
