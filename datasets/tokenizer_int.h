/* tokenizer_int.h: the tokenizer's internal layout, shared by datasets/tokenizer*.c.
 *
 * One table layout for every vocabulary kind: pieces in one arena, a piece ->
 * id open-addressing hash, token types and scores; the encoders are picked by
 * t->src. Not a public header. */
#ifndef PL_TOKENIZER_INT_H
#define PL_TOKENIZER_INT_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* token types as GGUF stores them (llama.cpp's llama_token_type) */
enum { TT_UNDEF = 0, TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

/* where the vocabulary came from; selects the encoder and decoder */
enum { SRC_LLAMA2C = 0, SRC_GGUF_SPM = 1, SRC_GGUF_BPE = 2, SRC_WPM = 3, SRC_HF = 4 };

/* tokenizer.json pieces this reader implements */
enum { HF_BPE = 0, HF_WORDPIECE = 1 };
enum { NORM_PREPEND = 1, NORM_REPLACE, NORM_NFC, NORM_NFKC, NORM_LOWER, NORM_BERT };
enum { PRE_OP_REGEX = 1, PRE_OP_BYTELEVEL_PREFIX, PRE_OP_METASPACE, PRE_OP_BERT };
/* added-token flags (tokenizer.json) */
enum { AF_LSTRIP = 1, AF_RSTRIP = 2, AF_NORMALIZED = 4, AF_SINGLE_WORD = 8, AF_ADDED = 16 };

#define MAX_OPS 8
/* a normalizer or pre-tokenizer step: a/b strings (Prepend, Replace), flag
 * (Prepend: only when missing; Metaspace: prepend 0 never, 1 first, 2 always),
 * re: index into t->re of its regex, split: Metaspace splits into words */
typedef struct tok_op { int kind; char *a, *b; size_t an, bn; int flag, re, split; } tok_op;

#define MAX_RE 6
#define MAX_VOCAB (1 << 26)

typedef struct merge_ent {
    size_t left;      /* offset of the left string in the arena */
    uint32_t left_len;
    size_t right;
    uint32_t right_len;
    int32_t rank;
} merge_ent;

struct pl_tokenizer {
    pl_tok_kind kind;
    int src;
    int n;                 /* vocabulary size */
    char *arena;           /* every piece, NUL-terminated, then the merge strings */
    size_t *off;           /* (n) piece offsets into arena */
    uint32_t *len;         /* (n) piece lengths */
    float *score;          /* (n) */
    uint8_t *type;         /* (n) TT_* */
    int32_t *slots;        /* piece hash: ids, -1 empty */
    size_t mask;
    uint32_t max_len;      /* longest piece in bytes */
    int bos, eos, unk;
    int add_bos;
    int add_space_prefix;  /* SPM: prepend ' ' to each text fragment */
    int32_t byte_id[256];  /* SPM byte fallback / BPE single byte-level char; -1 none */
    char *chat_template;
    /* special-token matching: ids grouped by first byte, longest first */
    int32_t *spec;
    uint32_t spec_start[257];
    int has_user;          /* some user-defined token: scan even without parse_special */
    /* BPE */
    merge_ent *merges;
    uint32_t n_merges;
    int32_t *mslots;
    size_t mmask;
    pcre2_code *re[MAX_RE];
    int n_re;
    int ignore_merges;
    uint32_t byte2cp[256];
    int16_t cp2byte[512];
    char pre[64];          /* tokenizer.ggml.pre as read, for notes */
    int pre_known;         /* 0: unknown pre, GPT-2 pattern used */
    /* tokenizer.json (SRC_HF) and WordPiece (SRC_WPM) */
    int hf_model;          /* HF_BPE or HF_WORDPIECE */
    int byte_level;        /* ByteLevel: text bytes map to GPT-2 characters */
    int byte_fallback, fuse_unk;
    uint8_t *aflags;       /* (n) AF_* for added tokens, NULL when none */
    tok_op norm[MAX_OPS];  /* normalizers, in order */
    int n_norm;
    tok_op pretok[MAX_OPS];/* pre-tokenizers, in order (regexes index re[]) */
    int n_pretok;
    uint64_t *pkeys;       /* id-pair merges: key (left << 32 | right), 0 empty (stored +1) */
    int32_t *prank, *pnew; /* rank and merged id per slot */
    size_t pmask;
    int dec_strip;         /* decoder: drop one leading ' ' at the start (Strip / Metaspace) */
    int dec_meta;          /* decoder: U+2581 -> ' ' */
    int dec_wordpiece;     /* decoder: "##" continuation pieces join, others get a space */
    char wp_start[8], wp_cont[8]; /* WordPiece prefixes: word start / continuation */
    int wp_max_chars;
    int bert_lower, bert_strip_accents, bert_chinese, bert_clean;
    int cls, sep, pad;
};

/* ------------------------------------------------------------------ hashing */

static inline uint64_t fnv1a(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static inline uint64_t mix64(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static inline int hash_cap(size_t n, size_t *cap) {
    size_t c = 16;
    while (c < n * 2) {
        if (c > SIZE_MAX / 4) return 0;
        c <<= 1;
    }
    *cap = c;
    return 1;
}

static inline uint64_t pair_hash(const char *a, size_t an, const char *b, size_t bn) {
    return mix64(fnv1a(a, an) ^ (mix64(fnv1a(b, bn)) + 0x9e3779b97f4a7c15ull));
}

static inline const char *piece_ptr(const pl_tokenizer *t, int id) { return t->arena + t->off[id]; }

/* ------------------------------------------------------------------ UTF-8 */

/* Length of the valid UTF-8 character at p (RFC 3629: no overlongs, no
 * surrogates, at most U+10FFFF), or 0 if the bytes there are not one. This is
 * as strict as PCRE2's own check, so validated runs can skip it. */
static inline size_t utf8_valid(const unsigned char *p, size_t n, uint32_t *cp) {
    unsigned c = p[0];
    if (c < 0x80) {
        if (cp) *cp = c;
        return 1;
    }
    size_t k;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) { k = 2; v = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { k = 3; v = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { k = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if (n < k) return 0;
    for (size_t i = 1; i < k; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (p[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    if (cp) *cp = v;
    return k;
}

/* llama.cpp's unicode_len_utf8: length from the lead byte alone */
static inline size_t utf8_len_lead(unsigned char c) {
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) return 2;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return 4;
    return 1;
}

static inline size_t utf8_put(uint32_t cp, char *o) {
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

/* ------------------------------------------------------------------ buffers */

typedef struct { int32_t *v; size_t n, cap; } ivec;

static inline int ivec_push(ivec *o, int32_t x) {
    if (o->n == o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 64;
        if (nc > (size_t)INT_MAX) nc = (size_t)INT_MAX;
        if (o->n >= nc) return PL_ERANGE;
        int32_t *nv = realloc(o->v, nc * sizeof *nv);
        if (!nv) return PL_ENOMEM;
        o->v = nv;
        o->cap = nc;
    }
    o->v[o->n++] = x;
    return PL_OK;
}

typedef struct { char *p; size_t n, cap; } sbuf;

static inline int sbuf_reserve(sbuf *b, size_t need) {
    if (need <= b->cap) return PL_OK;
    size_t nc = b->cap ? b->cap : 256;
    while (nc < need) {
        if (nc > SIZE_MAX / 2) return PL_ENOMEM;
        nc *= 2;
    }
    char *np = realloc(b->p, nc);
    if (!np) return PL_ENOMEM;
    b->p = np;
    b->cap = nc;
    return PL_OK;
}

static inline int sbuf_add(sbuf *b, const char *p, size_t n) {
    size_t need;
    if (!pl_add_ok(b->n, n, &need)) return PL_ENOMEM;
    int rc = sbuf_reserve(b, need);
    if (rc) return rc;
    if (n) memcpy(b->p + b->n, p, n);
    b->n = need;
    return PL_OK;
}

/* ------------------------------------------------------------------ merging */

typedef struct { int32_t prev, next; uint32_t off, n; int32_t id; int32_t toff; } sym; /* toff: offset in the caller's text */
/* a candidate merge of symbols left and right; lower prio is better */
typedef struct { double prio; int32_t left, right; uint32_t n; int32_t id; } bigram;

typedef struct {
    sym *s;
    size_t ns, cap_s;
    bigram *h;
    size_t nh, cap_h;
    sbuf buf;   /* the text the symbols index */
    sbuf tmp;
    ivec bmap;  /* (buf.n) offset in the caller's text of each byte of buf */
} work;

typedef struct { size_t a, b; } span;
typedef struct { span *v; size_t n, cap; } spans;

static inline int spans_push(spans *s, size_t a, size_t b) {
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        if (nc > SIZE_MAX / sizeof(span)) return PL_ENOMEM;
        span *nv = realloc(s->v, nc * sizeof *nv);
        if (!nv) return PL_ENOMEM;
        s->v = nv;
        s->cap = nc;
    }
    s->v[s->n].a = a;
    s->v[s->n].b = b;
    s->n++;
    return PL_OK;
}

/* encoder output: ids and, when want_offs, the byte offset of each */
typedef struct { ivec ids, offs; int want_offs; } tokout;

static inline int out_push(tokout *o, int32_t id, int32_t off) {
    int rc = ivec_push(&o->ids, id);
    if (rc || !o->want_offs) return rc;
    return ivec_push(&o->offs, off);
}

static inline int bmap_add(work *w, int32_t off, size_t k) {
    for (size_t i = 0; i < k; i++) {
        int rc = ivec_push(&w->bmap, off);
        if (rc) return rc;
    }
    return PL_OK;
}

/* tokenizer.c */
int tok_lookup(const pl_tokenizer *t, const char *p, size_t n);
pl_tokenizer *tok_alloc(int n);
int tok_build_piece_hash(pl_tokenizer *t, pl_err *err, const char *what);
int tok_build_specials(pl_tokenizer *t, const char *what, pl_err *err);
void tok_build_byte_maps(pl_tokenizer *t);
int tok_match_special(const pl_tokenizer *t, const char *p, size_t left, int parse_special);
int tok_regex_split(pcre2_code *const *re, int n_re, const char *text, size_t len, pcre2_match_data *md, spans *cur,
                    spans *nxt);
int tok_parse_byte_piece(const char *p, size_t n);
/* Byte-level BPE piece text (GPT-2's bytes_to_unicode) back to bytes; at most cap. */
int tok_decode_bytelevel(const pl_tokenizer *t, const char *p, size_t n, char *buf, size_t cap);
void work_free(work *w);
int sym_push(work *w, uint32_t off, uint32_t n, int32_t id, int32_t toff);
int heap_push(work *w, bigram b);
bigram heap_pop(work *w);
/* tokenizer_pretok.c: tokenizer.ggml.pre -> regexes */
const char *const *tok_pre_patterns(const char *pre, int *known, int *llama3_flags);
/* Every tokenizer.ggml.pre name tok_pre_patterns knows, ", "-separated, in dst
 * (cut to cap). */
void tok_pre_names(char *dst, size_t cap);
int tok_compile_regexes(pl_tokenizer *t, const char *const *pats, const char *what, pl_err *err);
extern const char tok_re_gpt2[];
/* tokenizer_gguf.c */
/* tokenizer_hf.c: tokenizer.json pipeline (added tokens, normalizers, pre-tokenizers, BPE by merge rank) */
int tok_encode_hf(const pl_tokenizer *t, const char *text, size_t len, int add_bos, int parse_special, work *w,
                  tokout *out);
int tok_hf_build_pair_merges(pl_tokenizer *t, const int32_t *left, const int32_t *right, size_t nm, const char *what,
                             pl_err *err);
int tok_decode_hf(const pl_tokenizer *t, int prev, int id, int render_special, char *buf, size_t cap);
/* tokenizer_wordpiece.c */
int tok_encode_wordpiece(const pl_tokenizer *t, const char *p, size_t n, const int32_t *map, tokout *out);
int tok_decode_wordpiece(const pl_tokenizer *t, int prev, int id, int render_special, char *buf, size_t cap);
/* tokenizer_json.c */
int tok_load_json(pl_tokenizer **out, const char *path, pl_err *err);
int tok_load_vocab_merges(pl_tokenizer **out, const char *vocab, const char *merges, pl_err *err);

#endif
