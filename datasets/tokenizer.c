/* tokenizer.c: text <-> token ids for llama2.c tokenizer .bin files and GGUF vocabularies.
 *
 * Three flavours share one table layout (pieces in one arena, a piece -> id
 * open-addressing hash, token types, scores):
 *
 *   llama2.c .bin   SentencePiece-style BPE by piece score, exactly as
 *                   karpathy/llama2.c run.c encode()/decode()/safe_printf():
 *                   BOS 1, EOS 2, byte fallback ids 3..258 (byte + 3), a
 *                   dummy-prefix " " when the text is non-empty, then the
 *                   adjacent pair whose concatenation is a piece with the
 *                   highest score is merged until none is left (ties: the
 *                   leftmost pair; scores <= -1e10 never merge, as in run.c).
 *   GGUF "llama"    the same merge on the text with ' ' escaped as U+2581,
 *                   split into UTF-8 characters as llama.cpp does; characters
 *                   that are not pieces fall back to the <0xNN> byte tokens.
 *   GGUF "gpt2"     byte-level BPE: the text is pre-split by the regexes of
 *                   tokenizer.ggml.pre (PCRE2, UTF+UCP), each piece is mapped
 *                   through GPT-2's bytes_to_unicode and merged by lowest
 *                   merge rank (ties: leftmost).
 *
 * The merges run on a doubly linked list of symbols with a binary heap of
 * candidate pairs (stale entries are skipped when popped), so a long text
 * costs O(n log n), not llama2.c's O(n^2), with identical results.
 *
 * Special tokens (GGUF only), as llama.cpp's tokenizer_st_partition does:
 * user-defined tokens (type 4) are always cut out of the text before the
 * tokenizer sees it (Hugging Face and llama.cpp both do this; the mpt and
 * deepseek vocabularies rely on it); control and unknown tokens (types 3, 2)
 * only when parse_special is set. At each position the longest matching
 * token wins. A llama2.c vocabulary has no special strings (parse_special is
 * ignored, as in run.c).
 *
 * Pre-tokenizers (tokenizer.ggml.pre -> regex set, see pre_names below):
 * gpt-2 family (gpt-2, mpt, olmo, phi-2, ...), llama3 family (llama3,
 * llama-bpe, smaug-bpe, dbrx, ...; llama3 proper also ignore_merges),
 * qwen2 family, starcoder family (starcoder, refact, smollm, command-r, ...:
 * digits one by one, then GPT-2's pattern), falcon, deepseek-coder and
 * llama.cpp's "default" set. Anything else (deepseek-llm, tekken, bloom,
 * chameleon, gpt-4o, ...) falls back to GPT-2's pattern, and
 * pl_tokenizer_pre() reports it as unknown. */
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

enum { SRC_LLAMA2C = 0, SRC_GGUF_SPM = 1, SRC_GGUF_BPE = 2 };

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
};

/* ------------------------------------------------------------------ hashing */

static uint64_t fnv1a(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t mix64(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static int hash_cap(size_t n, size_t *cap) {
    size_t c = 16;
    while (c < n * 2) {
        if (c > SIZE_MAX / 4) return 0;
        c <<= 1;
    }
    *cap = c;
    return 1;
}

static const char *piece_ptr(const pl_tokenizer *t, int id) { return t->arena + t->off[id]; }

/* id of the piece with exactly these bytes, or -1 */
static int lookup(const pl_tokenizer *t, const char *p, size_t n) {
    if (n > t->max_len) return -1;
    size_t i = (size_t)mix64(fnv1a(p, n)) & t->mask;
    for (;;) {
        int32_t id = t->slots[i];
        if (id < 0) return -1;
        if (t->len[id] == n && memcmp(piece_ptr(t, id), p, n) == 0) return id;
        i = (i + 1) & t->mask;
    }
}

/* Build the piece hash; a duplicate piece keeps its first id. Empty pieces
 * (a known defect of some vocabularies) are left out. */
static int build_piece_hash(pl_tokenizer *t, pl_err *err, const char *what) {
    size_t cap;
    if (!hash_cap((size_t)t->n, &cap)) return pl_err_set(err, PL_ENOMEM, "%s: vocabulary too large", what);
    t->slots = malloc(cap * sizeof *t->slots);
    if (!t->slots) return pl_err_set(err, PL_ENOMEM, "%s: cannot allocate the piece hash (%zu slots)", what, cap);
    memset(t->slots, 0xff, cap * sizeof *t->slots);
    t->mask = cap - 1;
    for (int id = 0; id < t->n; id++) {
        if (t->len[id] == 0) continue;
        const char *p = piece_ptr(t, id);
        size_t i = (size_t)mix64(fnv1a(p, t->len[id])) & t->mask;
        int dup = 0;
        while (t->slots[i] >= 0) {
            int32_t o = t->slots[i];
            if (t->len[o] == t->len[id] && memcmp(piece_ptr(t, o), p, t->len[id]) == 0) {
                dup = 1;
                break;
            }
            i = (i + 1) & t->mask;
        }
        if (!dup) t->slots[i] = id;
    }
    return PL_OK;
}

static uint64_t pair_hash(const char *a, size_t an, const char *b, size_t bn) {
    return mix64(fnv1a(a, an) ^ (mix64(fnv1a(b, bn)) + 0x9e3779b97f4a7c15ull));
}

/* rank of the merge (a, b), or -1 */
static int merge_rank(const pl_tokenizer *t, const char *a, size_t an, const char *b, size_t bn) {
    if (!t->mslots) return -1;
    size_t i = (size_t)pair_hash(a, an, b, bn) & t->mmask;
    for (;;) {
        int32_t e = t->mslots[i];
        if (e < 0) return -1;
        const merge_ent *m = &t->merges[e];
        if (m->left_len == an && m->right_len == bn && memcmp(t->arena + m->left, a, an) == 0 &&
            memcmp(t->arena + m->right, b, bn) == 0)
            return m->rank;
        i = (i + 1) & t->mmask;
    }
}

/* ------------------------------------------------------------------ UTF-8 */

/* Length of the valid UTF-8 character at p (RFC 3629: no overlongs, no
 * surrogates, at most U+10FFFF), or 0 if the bytes there are not one. This is
 * as strict as PCRE2's own check, so validated runs can skip it. */
static size_t utf8_valid(const unsigned char *p, size_t n, uint32_t *cp) {
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
static size_t utf8_len_lead(unsigned char c) {
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) return 2;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return 4;
    return 1;
}

static size_t utf8_put(uint32_t cp, char *o) {
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

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the
 * other 68 bytes to U+0100.. in byte order. */
static void build_byte_maps(pl_tokenizer *t) {
    int n = 0;
    for (int i = 0; i < 512; i++) t->cp2byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        t->byte2cp[b] = keep ? (uint32_t)b : (uint32_t)(256 + n++);
        t->cp2byte[t->byte2cp[b]] = (int16_t)b;
    }
}

/* "<0xNN>" (exactly, two hex digits) -> byte, or -1 */
static int parse_byte_piece(const char *p, size_t n) {
    if (n != 6 || p[0] != '<' || p[1] != '0' || p[2] != 'x' || p[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = p[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10
              : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* ------------------------------------------------------------------ buffers */

typedef struct { int32_t *v; size_t n, cap; } ivec;

static int ivec_push(ivec *o, int32_t x) {
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

static int sbuf_reserve(sbuf *b, size_t need) {
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

static int sbuf_add(sbuf *b, const char *p, size_t n) {
    size_t need;
    if (!pl_add_ok(b->n, n, &need)) return PL_ENOMEM;
    int rc = sbuf_reserve(b, need);
    if (rc) return rc;
    if (n) memcpy(b->p + b->n, p, n);
    b->n = need;
    return PL_OK;
}

/* ------------------------------------------------------------------ merging */

typedef struct { int32_t prev, next; uint32_t off, n; int32_t id; } sym;
/* a candidate merge of symbols left and right; lower prio is better */
typedef struct { double prio; int32_t left, right; uint32_t n; int32_t id; } bigram;

typedef struct {
    sym *s;
    size_t ns, cap_s;
    bigram *h;
    size_t nh, cap_h;
    sbuf buf;   /* the text the symbols index */
    sbuf tmp;
} work;

static void work_free(work *w) {
    free(w->s);
    free(w->h);
    free(w->buf.p);
    free(w->tmp.p);
}

static int bg_less(const bigram *a, const bigram *b) {
    if (a->prio != b->prio) return a->prio < b->prio;
    return a->left < b->left;
}

static int heap_push(work *w, bigram b) {
    if (w->nh == w->cap_h) {
        size_t nc = w->cap_h ? w->cap_h * 2 : 64;
        if (nc > SIZE_MAX / sizeof(bigram)) return PL_ENOMEM;
        bigram *nh = realloc(w->h, nc * sizeof *nh);
        if (!nh) return PL_ENOMEM;
        w->h = nh;
        w->cap_h = nc;
    }
    size_t i = w->nh++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bg_less(&b, &w->h[p])) break;
        w->h[i] = w->h[p];
        i = p;
    }
    w->h[i] = b;
    return PL_OK;
}

static bigram heap_pop(work *w) {
    bigram top = w->h[0];
    bigram last = w->h[--w->nh];
    size_t i = 0, n = w->nh;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const bigram *best = &last;
        if (l < n && bg_less(&w->h[l], best)) { m = l; best = &w->h[l]; }
        if (r < n && bg_less(&w->h[r], best)) { m = r; }
        if (m == i) break;
        w->h[i] = w->h[m];
        i = m;
    }
    if (n) w->h[i] = last;
    return top;
}

static int sym_push(work *w, uint32_t off, uint32_t n, int32_t id) {
    if (w->ns == w->cap_s) {
        size_t nc = w->cap_s ? w->cap_s * 2 : 64;
        if (nc > (size_t)INT32_MAX || nc > SIZE_MAX / sizeof(sym)) return PL_ENOMEM;
        sym *ns = realloc(w->s, nc * sizeof *ns);
        if (!ns) return PL_ENOMEM;
        w->s = ns;
        w->cap_s = nc;
    }
    sym *s = &w->s[w->ns];
    s->prev = (int32_t)w->ns - 1;
    s->next = -1;
    if (w->ns) w->s[w->ns - 1].next = (int32_t)w->ns;
    s->off = off;
    s->n = n;
    s->id = id;
    w->ns++;
    return PL_OK;
}

/* Can a SentencePiece merge produce this token? llama2.c: any piece. GGUF:
 * pieces SentencePiece itself would use (normal, user-defined, unused); never
 * control, unknown or byte tokens, so plain text "<s>" stays text. */
static int spm_usable(const pl_tokenizer *t, int id) {
    if (t->src == SRC_LLAMA2C) return 1;
    int ty = t->type[id];
    return ty == TT_NORMAL || ty == TT_USER || ty == TT_UNUSED || ty == TT_UNDEF;
}

/* Queue the merge of symbols l and r if there is one. */
static int try_pair(const pl_tokenizer *t, work *w, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return PL_OK;
    const sym *a = &w->s[l], *b = &w->s[r];
    size_t n = (size_t)a->n + b->n;
    if (n > UINT32_MAX) return PL_OK;
    bigram g = { 0, l, r, (uint32_t)n, -1 };
    if (t->kind == PL_TOK_SPM) {
        /* symbols are adjacent spans of w->buf: the concatenation is contiguous */
        int id = lookup(t, w->buf.p + a->off, n);
        if (id < 0 || !spm_usable(t, id)) return PL_OK;
        float sc = t->score[id];
        if (sc != sc) return PL_OK; /* NaN never wins a comparison in run.c */
        if (t->src == SRC_LLAMA2C && !(sc > -1e10f)) return PL_OK; /* run.c's best_score start */
        g.prio = -(double)sc;
        g.id = id;
    } else {
        int rank = merge_rank(t, w->buf.p + a->off, a->n, w->buf.p + b->off, b->n);
        if (rank < 0) return PL_OK;
        g.prio = rank;
    }
    return heap_push(w, g);
}

/* Merge the symbol list in w until no candidate is left. */
static int run_merges(const pl_tokenizer *t, work *w) {
    int rc;
    w->nh = 0;
    for (size_t i = 1; i < w->ns; i++)
        if ((rc = try_pair(t, w, (int32_t)i - 1, (int32_t)i))) return rc;
    while (w->nh) {
        bigram g = heap_pop(w);
        sym *a = &w->s[g.left], *b = &w->s[g.right];
        if (a->n == 0 || b->n == 0 || a->next != g.right || (size_t)a->n + b->n != g.n) continue; /* stale */
        a->n += b->n;
        a->id = g.id;
        b->n = 0;
        a->next = b->next;
        if (b->next >= 0) w->s[b->next].prev = g.left;
        if ((rc = try_pair(t, w, a->prev, g.left))) return rc;
        if ((rc = try_pair(t, w, g.left, a->next))) return rc;
    }
    return PL_OK;
}

/* ------------------------------------------------------------------ encoders */

/* llama2.c run.c encode(), minus BOS handling done by the caller. */
static int encode_llama2c(const pl_tokenizer *t, const char *text, size_t len, int add_bos, work *w, ivec *out) {
    int rc;
    ivec init = { 0 };
    if (add_bos && (rc = ivec_push(&init, 1))) goto done;
    if (len > 0) {
        int sp = lookup(t, " ", 1);
        if ((rc = ivec_push(&init, sp >= 0 ? sp : ' ' + 3))) goto done;
    }
    /* each UTF-8 codepoint (a lead byte and at most 3 continuation bytes, as
     * run.c groups them) is a piece or falls back to its bytes */
    for (size_t i = 0; i < len;) {
        size_t s = i++;
        while (i < len && ((unsigned char)text[i] & 0xC0) == 0x80 && i - s < 4) i++;
        int id = lookup(t, text + s, i - s);
        if (id >= 0) {
            if ((rc = ivec_push(&init, id))) goto done;
        } else {
            for (size_t k = s; k < i; k++)
                if ((rc = ivec_push(&init, (unsigned char)text[k] + 3))) goto done;
        }
    }
    /* symbols are the pieces of those ids laid end to end, so merging two
     * neighbours is run.c's sprintf("%s%s") */
    w->ns = 0;
    w->buf.n = 0;
    for (size_t i = 0; i < init.n; i++) {
        int id = init.v[i];
        size_t off = w->buf.n;
        if ((rc = sbuf_add(&w->buf, piece_ptr(t, id), t->len[id]))) goto done;
        if (w->buf.n > UINT32_MAX) { rc = PL_ERANGE; goto done; }
        if ((rc = sym_push(w, (uint32_t)off, t->len[id], id))) goto done;
    }
    if ((rc = run_merges(t, w))) goto done;
    for (int32_t i = w->ns ? 0 : -1; i >= 0; i = w->s[i].next)
        if ((rc = ivec_push(out, w->s[i].id))) goto done;
done:
    free(init.v);
    return rc;
}

/* One raw-text fragment of a GGUF "llama" vocabulary. */
static int encode_spm_fragment(const pl_tokenizer *t, const char *text, size_t len, int prefix, work *w, ivec *out) {
    int rc;
    w->buf.n = 0;
    w->ns = 0;
    static const char esc[3] = { (char)0xE2, (char)0x96, (char)0x81 };
    if (prefix && (rc = sbuf_add(&w->buf, esc, 3))) return rc;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') rc = sbuf_add(&w->buf, esc, 3);
        else rc = sbuf_add(&w->buf, text + i, 1);
        if (rc) return rc;
    }
    if (w->buf.n > UINT32_MAX) return PL_ERANGE;
    for (size_t i = 0; i < w->buf.n;) {
        size_t n = utf8_len_lead((unsigned char)w->buf.p[i]);
        if (n > w->buf.n - i) n = w->buf.n - i;
        int id = lookup(t, w->buf.p + i, n);
        if (id >= 0 && !spm_usable(t, id)) id = -1;
        if ((rc = sym_push(w, (uint32_t)i, (uint32_t)n, id))) return rc;
        i += n;
    }
    if ((rc = run_merges(t, w))) return rc;
    for (int32_t i = w->ns ? 0 : -1; i >= 0; i = w->s[i].next) {
        const sym *s = &w->s[i];
        if (s->id >= 0) {
            if ((rc = ivec_push(out, s->id))) return rc;
            continue;
        }
        /* a character that is not a piece: its bytes */
        for (uint32_t k = 0; k < s->n; k++) {
            int b = (unsigned char)w->buf.p[s->off + k];
            int id = t->byte_id[b];
            if (id < 0) return PL_EUNSUPPORTED;
            if ((rc = ivec_push(out, id))) return rc;
        }
    }
    return PL_OK;
}

/* BPE on one pre-split word (raw bytes). */
static int encode_bpe_word(const pl_tokenizer *t, const char *word, size_t len, work *w, ivec *out) {
    int rc;
    w->buf.n = 0;
    w->ns = 0;
    for (size_t i = 0; i < len; i++) {
        char u[4];
        size_t k = utf8_put(t->byte2cp[(unsigned char)word[i]], u);
        if ((rc = sbuf_add(&w->buf, u, k))) return rc;
    }
    if (w->buf.n > UINT32_MAX) return PL_ERANGE;
    if (t->ignore_merges) {
        int id = lookup(t, w->buf.p, w->buf.n);
        if (id >= 0) return ivec_push(out, id);
    }
    for (size_t i = 0; i < w->buf.n;) {
        size_t n = utf8_len_lead((unsigned char)w->buf.p[i]);
        if (n > w->buf.n - i) n = w->buf.n - i;
        if ((rc = sym_push(w, (uint32_t)i, (uint32_t)n, -1))) return rc;
        i += n;
    }
    if ((rc = run_merges(t, w))) return rc;
    for (int32_t i = w->ns ? 0 : -1; i >= 0; i = w->s[i].next) {
        const sym *s = &w->s[i];
        int id = lookup(t, w->buf.p + s->off, s->n);
        if (id >= 0) {
            if ((rc = ivec_push(out, id))) return rc;
            continue;
        }
        /* a symbol that is not a token (incomplete vocabulary): its characters */
        for (uint32_t k = 0; k < s->n;) {
            size_t n = utf8_len_lead((unsigned char)w->buf.p[s->off + k]);
            if (n > s->n - k) n = s->n - k;
            int cid = lookup(t, w->buf.p + s->off + k, n);
            if (cid < 0) cid = t->unk;
            if (cid >= 0 && (rc = ivec_push(out, cid))) return rc;
            k += (uint32_t)n;
        }
    }
    return PL_OK;
}

typedef struct { size_t a, b; } span;
typedef struct { span *v; size_t n, cap; } spans;

static int spans_push(spans *s, size_t a, size_t b) {
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

/* Apply the pre-tokenizer regexes one after another, as llama.cpp's
 * unicode_regex_split and Hugging Face's Split(Isolated) do: each regex runs
 * on each piece the previous one produced (it cannot see past the piece), and
 * the text between matches is kept as pieces of its own. text is valid UTF-8. */
static int regex_split(const pl_tokenizer *t, const char *text, size_t len, pcre2_match_data *md, spans *cur,
                       spans *nxt) {
    int rc;
    cur->n = 0;
    if ((rc = spans_push(cur, 0, len))) return rc;
    for (int r = 0; r < t->n_re; r++) {
        nxt->n = 0;
        for (size_t k = 0; k < cur->n; k++) {
            size_t a = cur->v[k].a, b = cur->v[k].b, pos = 0, prev = 0, n = b - a;
            const PCRE2_SPTR subj = (PCRE2_SPTR)(text + a);
            while (pos < n) {
                int m = pcre2_match(t->re[r], subj, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
                if (m == PCRE2_ERROR_NOMATCH) break;
                if (m < 0) return PL_EINVAL;
                PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
                size_t ms = ov[0], me = ov[1];
                if (me <= ms) {
                    /* empty match: step one character */
                    uint32_t cp;
                    size_t cl = utf8_valid((const unsigned char *)subj + ms, n - ms, &cp);
                    pos = ms + (cl ? cl : 1);
                    continue;
                }
                if (ms > prev && (rc = spans_push(nxt, a + prev, a + ms))) return rc;
                if ((rc = spans_push(nxt, a + ms, a + me))) return rc;
                prev = pos = me;
            }
            if (prev < n && (rc = spans_push(nxt, a + prev, b))) return rc;
        }
        spans tmp = *cur;
        *cur = *nxt;
        *nxt = tmp;
    }
    return PL_OK;
}

/* One raw-text fragment of a GGUF "gpt2" vocabulary. Runs of valid UTF-8 are
 * pre-split; a byte that is not valid UTF-8 becomes a word of its own
 * (byte-level BPE can still encode it). */
static int encode_bpe_fragment(const pl_tokenizer *t, const char *text, size_t len, work *w, ivec *out,
                               pcre2_match_data *md, spans *cur, spans *nxt) {
    int rc;
    size_t i = 0;
    while (i < len) {
        size_t s = i;
        while (i < len) {
            size_t k = utf8_valid((const unsigned char *)text + i, len - i, NULL);
            if (!k) break;
            i += k;
        }
        if (i > s) {
            if ((rc = regex_split(t, text + s, i - s, md, cur, nxt))) return rc;
            for (size_t k = 0; k < cur->n; k++)
                if ((rc = encode_bpe_word(t, text + s + cur->v[k].a, cur->v[k].b - cur->v[k].a, w, out))) return rc;
        }
        if (i < len) {
            if ((rc = encode_bpe_word(t, text + i, 1, w, out))) return rc;
            i++;
        }
    }
    return PL_OK;
}

/* Longest special token starting at text[i] (len bytes left), or -1. */
static int match_special(const pl_tokenizer *t, const char *p, size_t left, int parse_special) {
    unsigned c = (unsigned char)p[0];
    for (uint32_t k = t->spec_start[c]; k < t->spec_start[c + 1]; k++) {
        int id = t->spec[k];
        if (!parse_special && t->type[id] != TT_USER) continue;
        if (t->len[id] <= left && memcmp(piece_ptr(t, id), p, t->len[id]) == 0) return id;
    }
    return -1;
}

static int encode_gguf(const pl_tokenizer *t, const char *text, size_t len, int add_bos, int parse_special, work *w,
                       ivec *out, pl_err *err) {
    int rc = PL_OK;
    pcre2_match_data *md = NULL;
    spans cur = { 0 }, nxt = { 0 };
    if (t->kind == PL_TOK_BPE && t->n_re > 0) {
        md = pcre2_match_data_create(4, NULL);
        if (!md) return pl_err_set(err, PL_ENOMEM, "tokenizer: cannot allocate regex match data");
    }
    if (add_bos && t->bos >= 0 && (rc = ivec_push(out, t->bos))) goto done;
    int prev_special = 1; /* SPM: the first fragment gets the space prefix */
    size_t i = 0;
    while (i < len) {
        /* the next raw fragment runs up to the next special token */
        size_t s = i;
        int sid = -1;
        if (t->spec_start[256] > 0 && (parse_special || t->has_user)) {
            while (i < len && (sid = match_special(t, text + i, len - i, parse_special)) < 0) i++;
        } else {
            i = len;
        }
        if (i > s) {
            if (t->kind == PL_TOK_SPM)
                rc = encode_spm_fragment(t, text + s, i - s, t->add_space_prefix && prev_special, w, out);
            else
                rc = encode_bpe_fragment(t, text + s, i - s, w, out, md, &cur, &nxt);
            if (rc) goto done;
            prev_special = 0;
        }
        if (sid >= 0) {
            if ((rc = ivec_push(out, sid))) goto done;
            i += t->len[sid];
            prev_special = 1;
        }
    }
done:
    if (md) pcre2_match_data_free(md);
    free(cur.v);
    free(nxt.v);
    return rc;
}

int pl_tokenizer_encode(const pl_tokenizer *t, const char *text, size_t len, int add_bos, int parse_special,
                        int32_t **ids, int *n_ids, pl_err *err) {
    if (ids) *ids = NULL;
    if (n_ids) *n_ids = 0;
    if (!t || !ids || !n_ids || (!text && len))
        return pl_err_set(err, PL_EINVAL, "tokenizer: encode: NULL argument");
    if (len > (size_t)INT_MAX - 16)
        return pl_err_set(err, PL_EINVAL, "tokenizer: encode: text of %zu bytes is too long (limit %d)", len,
                          INT_MAX - 16);
    work w = { 0 };
    ivec out = { 0 };
    int rc;
    if (t->src == SRC_LLAMA2C) rc = encode_llama2c(t, text, len, add_bos, &w, &out);
    else rc = encode_gguf(t, text, len, add_bos, parse_special, &w, &out, err);
    work_free(&w);
    if (rc) {
        free(out.v);
        switch (rc) {
        case PL_ENOMEM: return pl_err_set(err, rc, "tokenizer: encode: out of memory (%zu bytes of text)", len);
        case PL_ERANGE: return pl_err_set(err, rc, "tokenizer: encode: more than %d tokens", INT_MAX);
        case PL_EUNSUPPORTED:
            return pl_err_set(err, rc, "tokenizer: encode: a byte needs byte fallback but the vocabulary has no "
                                       "<0xNN> token and no unknown token");
        default: return pl_err_set(err, rc, "tokenizer: encode: regex matching failed");
        }
    }
    if (!out.v) {
        out.v = malloc(sizeof *out.v); /* a valid pointer even for no tokens */
        if (!out.v) return pl_err_set(err, PL_ENOMEM, "tokenizer: encode: out of memory");
    }
    *ids = out.v;
    *n_ids = (int)out.n;
    return PL_OK;
}

/* ------------------------------------------------------------------ decoding */

static int put(char *buf, size_t cap, const char *p, size_t n) {
    if (n > cap) n = cap;
    if (n) memcpy(buf, p, n);
    return (int)n;
}

/* Decode rules by kind:
 *  llama2.c  run.c decode() then safe_printf(): after BOS (prev == 1) a
 *            leading ' ' is dropped; "<0xNN>" gives the byte; then a result
 *            of exactly one byte that is neither printable ASCII (0x20..0x7E)
 *            nor ASCII whitespace (\t \n \v \f \r) gives nothing, so e.g.
 *            byte-fallback pieces of a multi-byte character print nothing,
 *            exactly as llama2.c prints. Ids 0..2 (<unk>, BOS, EOS) give
 *            nothing unless render_special (then their piece, as run.c).
 *  GGUF llama U+2581 -> ' ', leading ' ' dropped after BOS when
 *            add_space_prefix; byte tokens give their byte; user-defined
 *            tokens their text; control/unknown only with render_special.
 *  GGUF gpt2 byte-level characters back to bytes; user-defined tokens
 *            verbatim; control/unknown only with render_special.
 * prev < 0 means "start of text" and is treated like BOS. */
int pl_tokenizer_decode(const pl_tokenizer *t, int prev, int id, int render_special, char *buf, size_t cap) {
    if (!t || id < 0 || id >= t->n || (!buf && cap)) return 0;
    const char *p = piece_ptr(t, id);
    size_t n = t->len[id];
    int ty = t->type[id];
    if (t->src == SRC_LLAMA2C) {
        if (id <= 2 && !render_special) return 0;
        int after_bos = prev == 1 || prev < 0;
        if (after_bos && n > 0 && p[0] == ' ') { p++; n--; }
        char b;
        /* run.c: sscanf(piece, "<0x%02hhX>") — "<0x" and one or two hex digits */
        if (n >= 4 && p[0] == '<' && p[1] == '0' && p[2] == 'x') {
            int v = 0, d = 0;
            for (size_t k = 3; k < n && d < 2; k++, d++) {
                char c = p[k];
                int x = (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                      : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
                if (x < 0) break;
                v = v * 16 + x;
            }
            if (d > 0) {
                b = (char)v;
                p = &b;
                n = 1;
            }
        }
        size_t z = memchr(p, 0, n) ? (size_t)((const char *)memchr(p, 0, n) - p) : n; /* C-string semantics */
        n = z;
        if (n == 0) return 0;
        if (n == 1) {
            unsigned c = (unsigned char)p[0];
            int printable = c >= 0x20 && c <= 0x7E;
            int space = c == ' ' || (c >= '\t' && c <= '\r');
            if (!printable && !space) return 0;
        }
        return put(buf, cap, p, n);
    }
    if (ty == TT_CONTROL || ty == TT_UNKNOWN) return render_special ? put(buf, cap, p, n) : 0;
    if (ty == TT_USER) return put(buf, cap, p, n);
    if (t->kind == PL_TOK_SPM) {
        if (ty == TT_BYTE) {
            int v = parse_byte_piece(p, n);
            if (v >= 0) {
                char b = (char)v;
                return put(buf, cap, &b, 1);
            }
        }
        size_t o = 0, k = 0;
        int strip = t->add_space_prefix && (prev < 0 || (t->bos >= 0 && prev == t->bos));
        while (k < n && o < cap) {
            char c;
            size_t adv = 1;
            if (n - k >= 3 && (unsigned char)p[k] == 0xE2 && (unsigned char)p[k + 1] == 0x96 &&
                (unsigned char)p[k + 2] == 0x81) {
                c = ' ';
                adv = 3;
            } else {
                c = p[k];
            }
            k += adv;
            if (strip && o == 0 && c == ' ') {
                strip = 0;
                continue;
            }
            strip = 0;
            buf[o++] = c;
        }
        return (int)o;
    }
    /* byte-level BPE */
    size_t o = 0;
    for (size_t k = 0; k < n && o < cap;) {
        uint32_t cp;
        size_t cl = utf8_valid((const unsigned char *)p + k, n - k, &cp);
        if (cl && cp < 512 && t->cp2byte[cp] >= 0) {
            buf[o++] = (char)t->cp2byte[cp];
            k += cl;
        } else {
            /* not a byte-level character: copy it as it is */
            size_t m = cl ? cl : 1;
            if (m > cap - o) m = cap - o;
            memcpy(buf + o, p + k, m);
            o += m;
            k += cl ? cl : 1;
        }
    }
    return (int)o;
}

/* ------------------------------------------------------------------ accessors */

pl_tok_kind pl_tokenizer_kind(const pl_tokenizer *t) { return t->kind; }
int pl_tokenizer_vocab(const pl_tokenizer *t) { return t->n; }
int pl_tokenizer_bos(const pl_tokenizer *t) { return t->bos; }
int pl_tokenizer_eos(const pl_tokenizer *t) { return t->eos; }
int pl_tokenizer_add_bos(const pl_tokenizer *t) { return t->add_bos && t->bos >= 0; }
const char *pl_tokenizer_chat_template(const pl_tokenizer *t) { return t->chat_template; }
int pl_tokenizer_max_piece_bytes(const pl_tokenizer *t) { return t->max_len > 0 ? (int)t->max_len : 1; }

int pl_tokenizer_find(const pl_tokenizer *t, const char *s) {
    if (!t || !s) return -1;
    return lookup(t, s, strlen(s));
}

const char *pl_tokenizer_piece(const pl_tokenizer *t, int id) {
    if (!t || id < 0 || id >= t->n) return NULL;
    return piece_ptr(t, id);
}

void pl_tokenizer_free(pl_tokenizer *t) {
    if (!t) return;
    free(t->arena);
    free(t->off);
    free(t->len);
    free(t->score);
    free(t->type);
    free(t->slots);
    free(t->chat_template);
    free(t->spec);
    free(t->merges);
    free(t->mslots);
    for (int i = 0; i < t->n_re; i++) pcre2_code_free(t->re[i]);
    free(t);
}

/* ------------------------------------------------------------------ loading */

static pl_tokenizer *tok_alloc(int n) {
    pl_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->n = n;
    t->off = calloc((size_t)n, sizeof *t->off);
    t->len = calloc((size_t)n, sizeof *t->len);
    t->score = calloc((size_t)n, sizeof *t->score);
    t->type = calloc((size_t)n, sizeof *t->type);
    if (!t->off || !t->len || !t->score || !t->type) {
        pl_tokenizer_free(t);
        return NULL;
    }
    t->bos = t->eos = t->unk = -1;
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    return t;
}

int pl_tokenizer_load_llama2c(pl_tokenizer **out, const char *path, int vocab_size, pl_err *err) {
    if (!out || !path) return pl_err_set(err, PL_EINVAL, "tokenizer: load_llama2c: NULL argument");
    *out = NULL;
    if (vocab_size < 259 || vocab_size > MAX_VOCAB)
        return pl_err_set(err, PL_EINVAL,
                          "%s: vocab_size %d from the model is out of range (llama2.c needs BOS 1, EOS 2 and byte "
                          "tokens 3..258, so at least 259; at most %d)",
                          path, vocab_size, MAX_VOCAB);
    FILE *f = fopen(path, "rb");
    if (!f) return pl_err_set(err, PL_EIO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char *data = NULL;
    size_t size = 0;
    int rc = PL_OK;
    if (fseek(f, 0, SEEK_END) != 0) { rc = pl_err_set(err, PL_EIO, "%s: cannot seek: %s", path, strerror(errno)); goto fail; }
    long fs = ftell(f);
    if (fs < 0) { rc = pl_err_set(err, PL_EIO, "%s: cannot tell size: %s", path, strerror(errno)); goto fail; }
    if ((unsigned long)fs > (1ul << 30)) {
        rc = pl_err_set(err, PL_ERANGE, "%s: %ld bytes is too large for a tokenizer file (limit 1 GiB)", path, fs);
        goto fail;
    }
    size = (size_t)fs;
    rewind(f);
    data = malloc(size ? size : 1);
    if (!data) { rc = pl_err_set(err, PL_ENOMEM, "%s: cannot allocate %zu bytes", path, size); goto fail; }
    if (size && fread(data, 1, size, f) != size) {
        rc = pl_err_set(err, PL_EIO, "%s: short read (%zu bytes expected)", path, size);
        goto fail;
    }
    fclose(f);
    f = NULL;

    if (size < 4) {
        rc = pl_err_set(err, PL_EFORMAT, "%s: expected a 4-byte max_token_length header, found a %zu-byte file", path, size);
        goto fail;
    }
    /* first pass: validate every record against the file size */
    size_t pos = 4, text_bytes = 0;
    for (int i = 0; i < vocab_size; i++) {
        if (size - pos < 8) {
            rc = pl_err_set(err, PL_EFORMAT,
                            "%s: token %d: record header (score, length) at offset %zu is past the end of the file "
                            "(%zu bytes); does the tokenizer match the model's vocab_size %d?",
                            path, i, pos, size, vocab_size);
            goto fail;
        }
        int32_t l;
        memcpy(&l, data + pos + 4, 4);
        if (l < 0 || (size_t)l > size - pos - 8) {
            rc = pl_err_set(err, PL_EFORMAT,
                            "%s: token %d: length %d at offset %zu does not fit in the file (%zu bytes left)", path, i,
                            (int)l, pos + 4, size - pos - 8);
            goto fail;
        }
        pos += 8 + (size_t)l;
        text_bytes += (size_t)l + 1;
    }
    pl_tokenizer *t = tok_alloc(vocab_size);
    if (!t) { rc = pl_err_set(err, PL_ENOMEM, "%s: cannot allocate a %d-token vocabulary", path, vocab_size); goto fail; }
    t->arena = malloc(text_bytes);
    if (!t->arena) {
        pl_tokenizer_free(t);
        rc = pl_err_set(err, PL_ENOMEM, "%s: cannot allocate %zu bytes of pieces", path, text_bytes);
        goto fail;
    }
    t->kind = PL_TOK_SPM;
    t->src = SRC_LLAMA2C;
    pos = 4;
    size_t ao = 0;
    for (int i = 0; i < vocab_size; i++) {
        int32_t l;
        memcpy(&t->score[i], data + pos, 4);
        memcpy(&l, data + pos + 4, 4);
        t->off[i] = ao;
        t->len[i] = (uint32_t)l;
        memcpy(t->arena + ao, data + pos + 8, (size_t)l);
        t->arena[ao + (size_t)l] = '\0';
        ao += (size_t)l + 1;
        pos += 8 + (size_t)l;
        if ((uint32_t)l > t->max_len) t->max_len = (uint32_t)l;
        t->type[i] = i == 0 ? TT_UNKNOWN : i <= 2 ? TT_CONTROL : i <= 258 ? TT_BYTE : TT_NORMAL;
    }
    free(data);
    data = NULL;
    t->bos = 1;
    t->eos = 2;
    t->unk = 0;
    t->add_bos = 1;
    t->add_space_prefix = 1;
    for (int b = 0; b < 256; b++) t->byte_id[b] = b + 3;
    if ((rc = build_piece_hash(t, err, path))) {
        pl_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return PL_OK;
fail:
    if (f) fclose(f);
    free(data);
    return rc;
}

/* --- GGUF --- */

static int is_numeric_vtype(int ty) {
    return ty == PL_GGUF_UINT8 || ty == PL_GGUF_INT8 || ty == PL_GGUF_UINT16 || ty == PL_GGUF_INT16 ||
           ty == PL_GGUF_UINT32 || ty == PL_GGUF_INT32 || ty == PL_GGUF_UINT64 || ty == PL_GGUF_INT64 ||
           ty == PL_GGUF_FLOAT32 || ty == PL_GGUF_FLOAT64;
}

static const char *vt_name(const pl_gguf_kv *kv) {
    if (kv->type == PL_GGUF_ARRAY) {
        static __thread char b[64];
        snprintf(b, sizeof b, "array of %s", pl_gguf_vtype_name(kv->arr_type));
        return b;
    }
    return pl_gguf_vtype_name(kv->type);
}

/* Optional numeric array of at least n elements; *kv NULL if absent. */
static int get_num_array(const pl_gguf *g, const char *key, uint64_t n, const pl_gguf_kv **kv, pl_err *err) {
    *kv = pl_gguf_get(g, key);
    if (!*kv) return PL_OK;
    if ((*kv)->type != PL_GGUF_ARRAY || !is_numeric_vtype((*kv)->arr_type))
        return pl_err_set(err, PL_EFORMAT, "%s: %s: expected a numeric array, found %s", g->path, key, vt_name(*kv));
    if ((*kv)->arr_len < n)
        return pl_err_set(err, PL_EFORMAT, "%s: %s: expected %" PRIu64 " entries (one per token), found %" PRIu64,
                          g->path, key, n, (*kv)->arr_len);
    if (n && !(*kv)->data)
        return pl_err_set(err, PL_EFORMAT, "%s: %s: array has no data", g->path, key);
    return PL_OK;
}

/* Optional token id key: *id unchanged when absent. */
static int get_token_id(const pl_gguf *g, const char *key, int n, int *id, pl_err *err) {
    if (!pl_gguf_get(g, key)) return PL_OK;
    int64_t v;
    int rc = pl_gguf_get_i64(g, key, &v, err);
    if (rc) return rc;
    if (v < 0 || v >= n)
        return pl_err_set(err, PL_ERANGE, "%s: %s: token id %" PRId64 " is outside the vocabulary (0..%d)", g->path,
                          key, v, n - 1);
    *id = (int)v;
    return PL_OK;
}

static int get_opt_bool(const pl_gguf *g, const char *key, int *v, pl_err *err) {
    if (!pl_gguf_get(g, key)) return PL_OK;
    return pl_gguf_get_bool(g, key, v, err);
}

typedef struct { const char *names; int set; } pre_map;

/* pre-tokenizer regex sets, PCRE2 syntax (UTF + UCP). The patterns are
 * those of the models' tokenizer.json files, as llama.cpp's
 * llm_tokenizer_bpe lists them per tokenizer.ggml.pre. */
enum { PRE_GPT2, PRE_LLAMA3, PRE_QWEN2, PRE_STARCODER, PRE_FALCON, PRE_DEFAULT, PRE_DEEPSEEK_CODER };

#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define RE_CONTRACT_CI "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"

static const char *const pre_sets[][MAX_RE + 1] = {
    [PRE_GPT2] = { RE_GPT2, NULL },
    [PRE_LLAMA3] = { RE_CONTRACT_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                     "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
                     NULL },
    [PRE_QWEN2] = { RE_CONTRACT_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
                    NULL },
    /* digits one by one first, then GPT-2's pattern (starcoder, smollm, ...) */
    [PRE_STARCODER] = { "\\p{N}", RE_GPT2, NULL },
    [PRE_FALCON] = { "[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]", NULL },
    [PRE_DEFAULT] = { "[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]", NULL },
    [PRE_DEEPSEEK_CODER] = { "[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+",
                             "[\\x{4E00}-\\x{9FA5}\\x{0800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+", "\\p{N}", NULL },
};

/* names are '|'-separated */
static const pre_map pre_names[] = {
    { "gpt-2|gpt2|phi-2|mpt|olmo|jais|jina-es|jina-de|jina-v1-en|jina-v2-es|jina-v2-de|jina-v2-code|roberta-bpe|"
      "gigachat|exaone4|trillion|a.x-4.0|mellum|modern-bert|granite-docling",
      PRE_GPT2 },
    { "llama3|llama-v3|llama-bpe|falcon3|falcon-h1|pixtral|midm-2.0|lfm2|smaug-bpe|dbrx|chatglm-bpe|glm4", PRE_LLAMA3 },
    { "qwen2|deepseek-r1-qwen|stablelm2|megrez|hunyuan|kormo|f2llmv2|solar-open", PRE_QWEN2 },
    { "starcoder|refact|command-r|smollm|codeshell|exaone|minerva-7b|mellum2", PRE_STARCODER },
    { "falcon", PRE_FALCON },
    { "default", PRE_DEFAULT },
    { "deepseek-coder", PRE_DEEPSEEK_CODER },
};

static int name_in(const char *list, const char *name) {
    size_t nl = strlen(name);
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, '|');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == nl && memcmp(p, name, l) == 0) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

static int setup_pre(pl_tokenizer *t, const pl_gguf *g, pl_err *err) {
    int set = PRE_DEFAULT;
    t->pre_known = 1;
    const pl_gguf_kv *kv = pl_gguf_get(g, "tokenizer.ggml.pre");
    if (kv) {
        if (kv->type != PL_GGUF_STRING)
            return pl_err_set(err, PL_EFORMAT, "%s: tokenizer.ggml.pre: expected a string, found %s", g->path,
                              vt_name(kv));
        size_t l = kv->str.len < sizeof t->pre - 1 ? (size_t)kv->str.len : sizeof t->pre - 1;
        if (l) memcpy(t->pre, kv->str.ptr, l);
        t->pre[l] = '\0';
        t->pre_known = 0;
        for (size_t i = 0; i < sizeof pre_names / sizeof pre_names[0]; i++)
            if (kv->str.len == l && name_in(pre_names[i].names, t->pre)) {
                set = pre_names[i].set;
                t->pre_known = 1;
                break;
            }
        /* NOTE: a pre-tokenizer we do not know (deepseek-llm, tekken, bloom,
         * chameleon, gpt-4o, ...) falls back to GPT-2's pattern: the ids are
         * valid tokens and decode back to the text, but may differ from the
         * model's own tokenizer. pl_tokenizer_pre_known() reports it. */
        if (!t->pre_known) set = PRE_GPT2;
    } else {
        strcpy(t->pre, "default");
    }
    if (set == PRE_LLAMA3 && (!strcmp(t->pre, "llama3") || !strcmp(t->pre, "llama-v3") ||
                              !strcmp(t->pre, "llama-bpe") || !strcmp(t->pre, "falcon3") ||
                              !strcmp(t->pre, "falcon-h1") || !strcmp(t->pre, "pixtral") ||
                              !strcmp(t->pre, "midm-2.0") || !strcmp(t->pre, "lfm2"))) {
        t->ignore_merges = 1;
        t->add_bos = 1; /* llama.cpp's default for these; tokenizer.ggml.add_bos_token overrides */
    }
    for (int i = 0; pre_sets[set][i]; i++) {
        int ec;
        PCRE2_SIZE eo;
        t->re[i] = pcre2_compile((PCRE2_SPTR)pre_sets[set][i], PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eo,
                                 NULL);
        if (!t->re[i]) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(ec, msg, sizeof msg);
            return pl_err_set(err, PL_EUNSUPPORTED, "%s: pre-tokenizer '%s': regex %d does not compile at %zu: %s",
                              g->path, t->pre, i, (size_t)eo, (const char *)msg);
        }
        t->n_re = i + 1;
        (void)pcre2_jit_compile(t->re[i], PCRE2_JIT_COMPLETE); /* optional speed-up; the interpreter works too */
    }
    return PL_OK;
}

static int cmp_spec(const void *a, const void *b, void *ctx) {
    const pl_tokenizer *t = ctx;
    int x = *(const int32_t *)a, y = *(const int32_t *)b;
    unsigned cx = (unsigned char)piece_ptr(t, x)[0], cy = (unsigned char)piece_ptr(t, y)[0];
    if (cx != cy) return cx < cy ? -1 : 1;
    if (t->len[x] != t->len[y]) return t->len[x] > t->len[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

static int build_specials(pl_tokenizer *t, const char *what, pl_err *err) {
    size_t ns = 0;
    for (int i = 0; i < t->n; i++) {
        int ty = t->type[i];
        if ((ty == TT_CONTROL || ty == TT_USER || ty == TT_UNKNOWN) && t->len[i] > 0) ns++;
    }
    memset(t->spec_start, 0, sizeof t->spec_start);
    if (!ns) return PL_OK;
    t->spec = malloc(ns * sizeof *t->spec);
    if (!t->spec) return pl_err_set(err, PL_ENOMEM, "%s: cannot allocate the special-token table", what);
    size_t k = 0;
    for (int i = 0; i < t->n; i++) {
        int ty = t->type[i];
        if ((ty == TT_CONTROL || ty == TT_USER || ty == TT_UNKNOWN) && t->len[i] > 0) t->spec[k++] = i;
        if (ty == TT_USER && t->len[i] > 0) t->has_user = 1;
    }
    qsort_r(t->spec, ns, sizeof *t->spec, cmp_spec, t);
    /* spec_start[c] .. spec_start[c+1]: tokens whose first byte is c */
    uint32_t cnt[256] = { 0 };
    for (size_t i = 0; i < ns; i++) cnt[(unsigned char)piece_ptr(t, t->spec[i])[0]]++;
    uint32_t acc = 0;
    for (int c = 0; c < 256; c++) {
        t->spec_start[c] = acc;
        acc += cnt[c];
    }
    t->spec_start[256] = acc;
    return PL_OK;
}

static int load_merges(pl_tokenizer *t, const pl_gguf *g, const pl_gguf_kv *mk, size_t *ao, pl_err *err) {
    uint64_t nm = mk->arr_len;
    t->merges = malloc((size_t)(nm ? nm : 1) * sizeof *t->merges);
    size_t cap;
    if (!t->merges || !hash_cap((size_t)nm, &cap))
        return pl_err_set(err, PL_ENOMEM, "%s: cannot allocate %" PRIu64 " merges", g->path, nm);
    t->mslots = malloc(cap * sizeof *t->mslots);
    if (!t->mslots) return pl_err_set(err, PL_ENOMEM, "%s: cannot allocate the merge hash", g->path);
    memset(t->mslots, 0xff, cap * sizeof *t->mslots);
    t->mmask = cap - 1;
    for (uint64_t i = 0; i < nm; i++) {
        const pl_str *s = &mk->strs[i];
        const char *sp = s->len > 1 ? memchr(s->ptr + 1, ' ', (size_t)s->len - 1) : NULL;
        if (!sp)
            return pl_err_set(err, PL_EFORMAT,
                              "%s: tokenizer.ggml.merges[%" PRIu64 "]: expected \"left right\" with a space, found a "
                              "%" PRIu64 "-byte string without one",
                              g->path, i, s->len);
        merge_ent *m = &t->merges[t->n_merges];
        size_t ll = (size_t)(sp - s->ptr), rl = (size_t)s->len - ll - 1;
        m->left = *ao;
        m->left_len = (uint32_t)ll;
        m->right = *ao + ll + 1;
        m->right_len = (uint32_t)rl;
        m->rank = (int32_t)i;
        memcpy(t->arena + *ao, s->ptr, (size_t)s->len);
        t->arena[*ao + s->len] = '\0';
        *ao += (size_t)s->len + 1;
        /* the first occurrence of a pair keeps its (lower) rank */
        size_t h = (size_t)pair_hash(t->arena + m->left, ll, t->arena + m->right, rl) & t->mmask;
        int dup = 0;
        while (t->mslots[h] >= 0) {
            const merge_ent *o = &t->merges[t->mslots[h]];
            if (o->left_len == ll && o->right_len == rl && !memcmp(t->arena + o->left, t->arena + m->left, ll) &&
                !memcmp(t->arena + o->right, t->arena + m->right, rl)) {
                dup = 1;
                break;
            }
            h = (h + 1) & t->mmask;
        }
        if (!dup) t->mslots[h] = (int32_t)t->n_merges;
        t->n_merges++;
    }
    return PL_OK;
}

int pl_tokenizer_from_gguf(pl_tokenizer **out, const pl_gguf *g, pl_err *err) {
    if (!out || !g) return pl_err_set(err, PL_EINVAL, "tokenizer: from_gguf: NULL argument");
    *out = NULL;
    const char *path = g->path ? g->path : "gguf";
    const pl_gguf_kv *mk = pl_gguf_get(g, "tokenizer.ggml.model");
    if (!mk)
        return pl_err_set(err, PL_ENOTFOUND, "%s: no tokenizer: key 'tokenizer.ggml.model' is missing", path);
    if (mk->type != PL_GGUF_STRING)
        return pl_err_set(err, PL_EFORMAT, "%s: tokenizer.ggml.model: expected a string, found %s", path, vt_name(mk));
    pl_tok_kind kind;
    if (mk->str.len == 5 && !memcmp(mk->str.ptr, "llama", 5)) kind = PL_TOK_SPM;
    else if (mk->str.len == 4 && !memcmp(mk->str.ptr, "gpt2", 4)) kind = PL_TOK_BPE;
    else {
        int l = mk->str.len > 40 ? 40 : (int)mk->str.len;
        return pl_err_set(err, PL_EUNSUPPORTED,
                          "%s: tokenizer.ggml.model '%.*s' is not supported (this version reads \"llama\" and \"gpt2\")",
                          path, l, mk->str.ptr);
    }
    const pl_gguf_kv *tk = pl_gguf_get(g, "tokenizer.ggml.tokens");
    if (!tk) return pl_err_set(err, PL_ENOTFOUND, "%s: key 'tokenizer.ggml.tokens' is missing", path);
    if (tk->type != PL_GGUF_ARRAY || tk->arr_type != PL_GGUF_STRING || (tk->arr_len && !tk->strs))
        return pl_err_set(err, PL_EFORMAT, "%s: tokenizer.ggml.tokens: expected an array of strings, found %s", path,
                          vt_name(tk));
    if (tk->arr_len == 0 || tk->arr_len > MAX_VOCAB)
        return pl_err_set(err, PL_ERANGE, "%s: tokenizer.ggml.tokens: %" PRIu64 " tokens (expected 1..%d)", path,
                          tk->arr_len, MAX_VOCAB);
    int n = (int)tk->arr_len;
    const pl_gguf_kv *sk, *yk, *mgk = NULL;
    int rc;
    if ((rc = get_num_array(g, "tokenizer.ggml.scores", (uint64_t)n, &sk, err))) return rc;
    if ((rc = get_num_array(g, "tokenizer.ggml.token_type", (uint64_t)n, &yk, err))) return rc;
    if (kind == PL_TOK_BPE) {
        mgk = pl_gguf_get(g, "tokenizer.ggml.merges");
        if (!mgk) return pl_err_set(err, PL_ENOTFOUND, "%s: gpt2 tokenizer without 'tokenizer.ggml.merges'", path);
        if (mgk->type != PL_GGUF_ARRAY || mgk->arr_type != PL_GGUF_STRING || (mgk->arr_len && !mgk->strs))
            return pl_err_set(err, PL_EFORMAT, "%s: tokenizer.ggml.merges: expected an array of strings, found %s",
                              path, vt_name(mgk));
        if (mgk->arr_len > (uint64_t)INT32_MAX)
            return pl_err_set(err, PL_ERANGE, "%s: tokenizer.ggml.merges: %" PRIu64 " merges is too many", path,
                              mgk->arr_len);
    }
    /* arena size: every token and merge string plus a NUL each */
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (tk->strs[i].len > UINT32_MAX - 1 || !pl_add_ok(total, (size_t)tk->strs[i].len + 1, &total))
            return pl_err_set(err, PL_ERANGE, "%s: tokenizer.ggml.tokens[%d]: %" PRIu64 " bytes is too long", path, i,
                              tk->strs[i].len);
    }
    for (uint64_t i = 0; mgk && i < mgk->arr_len; i++) {
        if (mgk->strs[i].len > UINT32_MAX - 1 || !pl_add_ok(total, (size_t)mgk->strs[i].len + 1, &total))
            return pl_err_set(err, PL_ERANGE, "%s: tokenizer.ggml.merges[%" PRIu64 "]: %" PRIu64 " bytes is too long",
                              path, i, mgk->strs[i].len);
    }
    pl_tokenizer *t = tok_alloc(n);
    if (!t) return pl_err_set(err, PL_ENOMEM, "%s: cannot allocate a %d-token vocabulary", path, n);
    t->arena = malloc(total ? total : 1);
    if (!t->arena) {
        rc = pl_err_set(err, PL_ENOMEM, "%s: cannot allocate %zu bytes of pieces", path, total);
        goto fail;
    }
    t->kind = kind;
    t->src = kind == PL_TOK_SPM ? SRC_GGUF_SPM : SRC_GGUF_BPE;
    size_t ao = 0;
    for (int i = 0; i < n; i++) {
        const pl_str *s = &tk->strs[i];
        t->off[i] = ao;
        t->len[i] = (uint32_t)s->len;
        if (s->len) memcpy(t->arena + ao, s->ptr, (size_t)s->len);
        t->arena[ao + s->len] = '\0';
        ao += (size_t)s->len + 1;
        if (t->len[i] > t->max_len) t->max_len = t->len[i];
        double sc = sk ? pl_gguf_arr_f64(sk, (uint64_t)i) : 0.0;
        t->score[i] = (float)sc;
        int64_t ty = yk ? pl_gguf_arr_i64(yk, (uint64_t)i) : TT_NORMAL;
        t->type[i] = (ty >= TT_NORMAL && ty <= TT_BYTE) ? (uint8_t)ty : TT_UNDEF;
    }
    if ((rc = build_piece_hash(t, err, path))) goto fail;
    if (kind == PL_TOK_BPE && (rc = load_merges(t, g, mgk, &ao, err))) goto fail;

    /* special ids and flags */
    if (kind == PL_TOK_SPM) {
        t->bos = n > 1 ? 1 : -1;
        t->eos = n > 2 ? 2 : -1;
        t->unk = 0;
        t->add_bos = 1;
        t->add_space_prefix = 1;
    }
    if ((rc = get_token_id(g, "tokenizer.ggml.bos_token_id", n, &t->bos, err))) goto fail;
    if ((rc = get_token_id(g, "tokenizer.ggml.eos_token_id", n, &t->eos, err))) goto fail;
    if ((rc = get_token_id(g, "tokenizer.ggml.unknown_token_id", n, &t->unk, err))) goto fail;
    if (kind == PL_TOK_BPE) {
        build_byte_maps(t);
        if ((rc = setup_pre(t, g, err))) goto fail;
    } else if ((rc = get_opt_bool(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix, err))) {
        goto fail;
    }
    if ((rc = get_opt_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos, err))) goto fail;
    if (t->add_bos && t->bos < 0) {
        rc = pl_err_set(err, PL_EFORMAT, "%s: tokenizer.ggml.add_bos_token is true but there is no BOS token id", path);
        goto fail;
    }
    /* byte fallback / single-byte lookups */
    for (int b = 0; b < 256; b++) {
        if (kind == PL_TOK_SPM) {
            char hex[7];
            snprintf(hex, sizeof hex, "<0x%02X>", b);
            int id = lookup(t, hex, 6);
            if (id < 0) {
                char c = (char)b;
                id = lookup(t, &c, 1);
            }
            if (id < 0) id = t->unk;
            t->byte_id[b] = id;
        } else {
            char u[4];
            size_t k = utf8_put(t->byte2cp[b], u);
            t->byte_id[b] = lookup(t, u, k);
        }
    }
    /* without token types, an SPM "<0xNN>" piece is still a byte token */
    if (kind == PL_TOK_SPM && !yk)
        for (int i = 0; i < n; i++)
            if (parse_byte_piece(piece_ptr(t, i), t->len[i]) >= 0) t->type[i] = TT_BYTE;
    if ((rc = build_specials(t, path, err))) goto fail;
    const pl_gguf_kv *ct = pl_gguf_get(g, "tokenizer.chat_template");
    if (ct) {
        if (ct->type != PL_GGUF_STRING) {
            rc = pl_err_set(err, PL_EFORMAT, "%s: tokenizer.chat_template: expected a string, found %s", path, vt_name(ct));
            goto fail;
        }
        if ((rc = pl_gguf_get_str(g, "tokenizer.chat_template", &t->chat_template, err))) goto fail;
    }
    *out = t;
    return PL_OK;
fail:
    pl_tokenizer_free(t);
    return rc;
}

const char *pl_tokenizer_pre(const pl_tokenizer *t, int *known) {
    if (known) *known = t->pre_known || t->kind != PL_TOK_BPE;
    return t->kind == PL_TOK_BPE ? t->pre : "";
}
