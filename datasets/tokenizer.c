/* tokenizer.c: tokenizer core: piece hash, merge engine, llama2.c / GGUF encoders, decoding, llama2.c .bin loading.
 *
 * The other parts: tokenizer_gguf.c (GGUF metadata), tokenizer_pretok.c
 * (tokenizer.ggml.pre -> regexes), tokenizer_json.c (tokenizer.json, GPT-2
 * vocab.json + merges.txt, pl_tokenizer_load by path), tokenizer_hf.c (the
 * Hugging Face pipeline), tokenizer_wordpiece.c (BERT); layout in
 * tokenizer_int.h.
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
 * costs O(n log n), not llama2.c's O(n^2), with identical results. Every
 * symbol carries the offset of its text in the caller's string, which is what
 * pl_tokenizer_encode_offsets returns. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer_int.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* id of the piece with exactly these bytes, or -1 */
int tok_lookup(const pl_tokenizer *t, const char *p, size_t n) {
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
int tok_build_piece_hash(pl_tokenizer *t, pl_err *err, const char *what) {
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

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the
 * other 68 bytes to U+0100.. in byte order. */
void tok_build_byte_maps(pl_tokenizer *t) {
    int n = 0;
    for (int i = 0; i < 512; i++) t->cp2byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        t->byte2cp[b] = keep ? (uint32_t)b : (uint32_t)(256 + n++);
        t->cp2byte[t->byte2cp[b]] = (int16_t)b;
    }
}

/* "<0xNN>" (exactly, two hex digits) -> byte, or -1 */
int tok_parse_byte_piece(const char *p, size_t n) {
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

void work_free(work *w) {
    free(w->s);
    free(w->h);
    free(w->buf.p);
    free(w->tmp.p);
    free(w->bmap.v);
}

static int bg_less(const bigram *a, const bigram *b) {
    if (a->prio != b->prio) return a->prio < b->prio;
    return a->left < b->left;
}

int heap_push(work *w, bigram b) {
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

bigram heap_pop(work *w) {
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

int sym_push(work *w, uint32_t off, uint32_t n, int32_t id, int32_t toff) {
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
    s->toff = toff;
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
        int id = tok_lookup(t, w->buf.p + a->off, n);
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
static int encode_llama2c(const pl_tokenizer *t, const char *text, size_t len, int add_bos, work *w, tokout *out) {
    int rc;
    ivec init = { 0 }, ioff = { 0 };
    if (add_bos && ((rc = ivec_push(&init, 1)) || (rc = ivec_push(&ioff, 0)))) goto done;
    if (len > 0) {
        int sp = tok_lookup(t, " ", 1);
        if ((rc = ivec_push(&init, sp >= 0 ? sp : ' ' + 3)) || (rc = ivec_push(&ioff, 0))) goto done;
    }
    /* each UTF-8 codepoint (a lead byte and at most 3 continuation bytes, as
     * run.c groups them) is a piece or falls back to its bytes */
    for (size_t i = 0; i < len;) {
        size_t s = i++;
        while (i < len && ((unsigned char)text[i] & 0xC0) == 0x80 && i - s < 4) i++;
        int id = tok_lookup(t, text + s, i - s);
        if (id >= 0) {
            if ((rc = ivec_push(&init, id)) || (rc = ivec_push(&ioff, (int32_t)s))) goto done;
        } else {
            for (size_t k = s; k < i; k++)
                if ((rc = ivec_push(&init, (unsigned char)text[k] + 3)) || (rc = ivec_push(&ioff, (int32_t)k))) goto done;
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
        if ((rc = sym_push(w, (uint32_t)off, t->len[id], id, ioff.v[i]))) goto done;
    }
    if ((rc = run_merges(t, w))) goto done;
    for (int32_t i = w->ns ? 0 : -1; i >= 0; i = w->s[i].next)
        if ((rc = out_push(out, w->s[i].id, w->s[i].toff))) goto done;
done:
    free(init.v);
    free(ioff.v);
    return rc;
}

/* One raw-text fragment of a GGUF "llama" vocabulary. */
static int encode_spm_fragment(const pl_tokenizer *t, const char *text, size_t len, int32_t base, int prefix, work *w,
                               tokout *out) {
    int rc;
    w->buf.n = 0;
    w->bmap.n = 0;
    w->ns = 0;
    static const char esc[3] = { (char)0xE2, (char)0x96, (char)0x81 };
    if (prefix && ((rc = sbuf_add(&w->buf, esc, 3)) || (rc = bmap_add(w, base, 3)))) return rc;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') rc = sbuf_add(&w->buf, esc, 3);
        else rc = sbuf_add(&w->buf, text + i, 1);
        if (rc || (rc = bmap_add(w, base + (int32_t)i, text[i] == ' ' ? 3 : 1))) return rc;
    }
    if (w->buf.n > UINT32_MAX) return PL_ERANGE;
    for (size_t i = 0; i < w->buf.n;) {
        size_t n = utf8_len_lead((unsigned char)w->buf.p[i]);
        if (n > w->buf.n - i) n = w->buf.n - i;
        int id = tok_lookup(t, w->buf.p + i, n);
        if (id >= 0 && !spm_usable(t, id)) id = -1;
        if ((rc = sym_push(w, (uint32_t)i, (uint32_t)n, id, w->bmap.v[i]))) return rc;
        i += n;
    }
    if ((rc = run_merges(t, w))) return rc;
    for (int32_t i = w->ns ? 0 : -1; i >= 0; i = w->s[i].next) {
        const sym *s = &w->s[i];
        if (s->id >= 0) {
            if ((rc = out_push(out, s->id, s->toff))) return rc;
            continue;
        }
        /* a character that is not a piece: its bytes */
        for (uint32_t k = 0; k < s->n; k++) {
            int b = (unsigned char)w->buf.p[s->off + k];
            int id = t->byte_id[b];
            if (id < 0) return PL_EUNSUPPORTED;
            if ((rc = out_push(out, id, w->bmap.v[s->off + k]))) return rc;
        }
    }
    return PL_OK;
}

/* BPE on one pre-split word (raw bytes). */
static int encode_bpe_word(const pl_tokenizer *t, const char *word, size_t len, int32_t base, work *w, tokout *out) {
    int rc;
    w->buf.n = 0;
    w->bmap.n = 0;
    w->ns = 0;
    for (size_t i = 0; i < len; i++) {
        char u[4];
        size_t k = utf8_put(t->byte2cp[(unsigned char)word[i]], u);
        if ((rc = sbuf_add(&w->buf, u, k)) || (rc = bmap_add(w, base + (int32_t)i, k))) return rc;
    }
    if (w->buf.n > UINT32_MAX) return PL_ERANGE;
    if (t->ignore_merges) {
        int id = tok_lookup(t, w->buf.p, w->buf.n);
        if (id >= 0) return out_push(out, id, base);
    }
    for (size_t i = 0; i < w->buf.n;) {
        size_t n = utf8_len_lead((unsigned char)w->buf.p[i]);
        if (n > w->buf.n - i) n = w->buf.n - i;
        if ((rc = sym_push(w, (uint32_t)i, (uint32_t)n, -1, w->bmap.v[i]))) return rc;
        i += n;
    }
    if ((rc = run_merges(t, w))) return rc;
    for (int32_t i = w->ns ? 0 : -1; i >= 0; i = w->s[i].next) {
        const sym *s = &w->s[i];
        int id = tok_lookup(t, w->buf.p + s->off, s->n);
        if (id >= 0) {
            if ((rc = out_push(out, id, s->toff))) return rc;
            continue;
        }
        /* a symbol that is not a token (incomplete vocabulary): its characters */
        for (uint32_t k = 0; k < s->n;) {
            size_t n = utf8_len_lead((unsigned char)w->buf.p[s->off + k]);
            if (n > s->n - k) n = s->n - k;
            int cid = tok_lookup(t, w->buf.p + s->off + k, n);
            if (cid < 0) cid = t->unk;
            if (cid >= 0 && (rc = out_push(out, cid, w->bmap.v[s->off + k]))) return rc;
            k += (uint32_t)n;
        }
    }
    return PL_OK;
}

/* Apply the pre-tokenizer regexes one after another, as llama.cpp's
 * unicode_regex_split and Hugging Face's Split(Isolated) do: each regex runs
 * on each piece the previous one produced (it cannot see past the piece), and
 * the text between matches is kept as pieces of its own. text is valid UTF-8. */
int tok_regex_split(pcre2_code *const *re, int n_re, const char *text, size_t len, pcre2_match_data *md, spans *cur,
                    spans *nxt) {
    int rc;
    cur->n = 0;
    if ((rc = spans_push(cur, 0, len))) return rc;
    for (int r = 0; r < n_re; r++) {
        nxt->n = 0;
        for (size_t k = 0; k < cur->n; k++) {
            size_t a = cur->v[k].a, b = cur->v[k].b, pos = 0, prev = 0, n = b - a;
            const PCRE2_SPTR subj = (PCRE2_SPTR)(text + a);
            while (pos < n) {
                int m = pcre2_match(re[r], subj, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
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
static int encode_bpe_fragment(const pl_tokenizer *t, const char *text, size_t len, int32_t base, work *w, tokout *out,
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
            if ((rc = tok_regex_split(t->re, t->n_re, text + s, i - s, md, cur, nxt))) return rc;
            for (size_t k = 0; k < cur->n; k++)
                if ((rc = encode_bpe_word(t, text + s + cur->v[k].a, cur->v[k].b - cur->v[k].a,
                                          base + (int32_t)(s + cur->v[k].a), w, out)))
                    return rc;
        }
        if (i < len) {
            if ((rc = encode_bpe_word(t, text + i, 1, base + (int32_t)i, w, out))) return rc;
            i++;
        }
    }
    return PL_OK;
}

/* Longest special token starting at text[i] (len bytes left), or -1. */
int tok_match_special(const pl_tokenizer *t, const char *p, size_t left, int parse_special) {
    unsigned c = (unsigned char)p[0];
    for (uint32_t k = t->spec_start[c]; k < t->spec_start[c + 1]; k++) {
        int id = t->spec[k];
        if (!parse_special && t->type[id] != TT_USER) continue;
        if (t->len[id] <= left && memcmp(piece_ptr(t, id), p, t->len[id]) == 0) return id;
    }
    return -1;
}

static int encode_gguf(const pl_tokenizer *t, const char *text, size_t len, int add_bos, int parse_special, work *w,
                       tokout *out, pl_err *err) {
    int rc = PL_OK;
    pcre2_match_data *md = NULL;
    spans cur = { 0 }, nxt = { 0 };
    if (t->kind == PL_TOK_BPE && t->n_re > 0) {
        md = pcre2_match_data_create(4, NULL);
        if (!md) return pl_err_set(err, PL_ENOMEM, "tokenizer: cannot allocate regex match data");
    }
    if (add_bos && t->bos >= 0 && (rc = out_push(out, t->bos, 0))) goto done;
    int prev_special = 1; /* SPM: the first fragment gets the space prefix */
    size_t i = 0;
    while (i < len) {
        /* the next raw fragment runs up to the next special token */
        size_t s = i;
        int sid = -1;
        if (t->spec_start[256] > 0 && (parse_special || t->has_user)) {
            while (i < len && (sid = tok_match_special(t, text + i, len - i, parse_special)) < 0) i++;
        } else {
            i = len;
        }
        if (i > s) {
            if (t->kind == PL_TOK_SPM)
                rc = encode_spm_fragment(t, text + s, i - s, (int32_t)s, t->add_space_prefix && prev_special, w, out);
            else
                rc = encode_bpe_fragment(t, text + s, i - s, (int32_t)s, w, out, md, &cur, &nxt);
            if (rc) goto done;
            prev_special = 0;
        }
        if (sid >= 0) {
            if ((rc = out_push(out, sid, (int32_t)i))) goto done;
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

static int encode_impl(const pl_tokenizer *t, const char *text, size_t len, int add_bos, int parse_special,
                       int32_t **ids, int32_t **offs, int *n_ids, pl_err *err) {
    if (ids) *ids = NULL;
    if (offs) *offs = NULL;
    if (n_ids) *n_ids = 0;
    if (!t || !ids || !n_ids || (!text && len))
        return pl_err_set(err, PL_EINVAL, "tokenizer: encode: NULL argument");
    if (len > (size_t)INT_MAX - 16)
        return pl_err_set(err, PL_EINVAL, "tokenizer: encode: text of %zu bytes is too long (limit %d)", len,
                          INT_MAX - 16);
    work w = { 0 };
    tokout out = { .want_offs = offs != NULL };
    int rc;
    if (t->src == SRC_LLAMA2C) rc = encode_llama2c(t, text, len, add_bos, &w, &out);
    else if (t->src == SRC_HF || t->src == SRC_WPM) rc = tok_encode_hf(t, text, len, add_bos, parse_special, &w, &out);
    else rc = encode_gguf(t, text, len, add_bos, parse_special, &w, &out, err);
    work_free(&w);
    if (rc) {
        free(out.ids.v);
        free(out.offs.v);
        switch (rc) {
        case PL_ENOMEM: return pl_err_set(err, rc, "tokenizer: encode: out of memory (%zu bytes of text)", len);
        case PL_ERANGE: return pl_err_set(err, rc, "tokenizer: encode: more than %d tokens", INT_MAX);
        case PL_EUNSUPPORTED:
            return pl_err_set(err, rc, "tokenizer: encode: a byte needs byte fallback but the vocabulary has no "
                                       "<0xNN> token and no unknown token");
        default: return pl_err_set(err, rc, "tokenizer: encode: regex matching failed");
        }
    }
    /* valid pointers even for no tokens */
    if (!out.ids.v) out.ids.v = malloc(sizeof *out.ids.v);
    if (offs && !out.offs.v) out.offs.v = malloc(sizeof *out.offs.v);
    if (!out.ids.v || (offs && !out.offs.v)) {
        free(out.ids.v);
        free(out.offs.v);
        return pl_err_set(err, PL_ENOMEM, "tokenizer: encode: out of memory");
    }
    *ids = out.ids.v;
    if (offs) *offs = out.offs.v;
    *n_ids = (int)out.ids.n;
    return PL_OK;
}

int pl_tokenizer_encode(const pl_tokenizer *t, const char *text, size_t len, int add_bos, int parse_special,
                        int32_t **ids, int *n_ids, pl_err *err) {
    return encode_impl(t, text, len, add_bos, parse_special, ids, NULL, n_ids, err);
}

int pl_tokenizer_encode_offsets(const pl_tokenizer *t, const char *text, size_t len, int add_bos, int parse_special,
                                int32_t **ids, int32_t **offs, int *n_ids, pl_err *err) {
    if (offs) *offs = NULL;
    if (!offs) return pl_err_set(err, PL_EINVAL, "tokenizer: encode_offsets: NULL argument");
    return encode_impl(t, text, len, add_bos, parse_special, ids, offs, n_ids, err);
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
    if (t->src == SRC_HF) return tok_decode_hf(t, prev, id, render_special, buf, cap);
    if (t->src == SRC_WPM) return tok_decode_wordpiece(t, prev, id, render_special, buf, cap);
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
            int v = tok_parse_byte_piece(p, n);
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
    return tok_decode_bytelevel(t, p, n, buf, cap);
}

int tok_decode_bytelevel(const pl_tokenizer *t, const char *p, size_t n, char *buf, size_t cap) {
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
    return tok_lookup(t, s, strlen(s));
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
    free(t->aflags);
    for (int i = 0; i < t->n_norm; i++) {
        free(t->norm[i].a);
        free(t->norm[i].b);
    }
    for (int i = 0; i < t->n_pretok; i++) {
        free(t->pretok[i].a);
        free(t->pretok[i].b);
    }
    free(t->pkeys);
    free(t->prank);
    free(t->pnew);
    free(t);
}

/* ------------------------------------------------------------------ loading */

pl_tokenizer *tok_alloc(int n) {
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
    t->cls = t->sep = t->pad = -1;
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
    if ((rc = tok_build_piece_hash(t, err, path))) {
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

static int cmp_spec(const void *a, const void *b, void *ctx) {
    const pl_tokenizer *t = ctx;
    int x = *(const int32_t *)a, y = *(const int32_t *)b;
    unsigned cx = (unsigned char)piece_ptr(t, x)[0], cy = (unsigned char)piece_ptr(t, y)[0];
    if (cx != cy) return cx < cy ? -1 : 1;
    if (t->len[x] != t->len[y]) return t->len[x] > t->len[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

int tok_build_specials(pl_tokenizer *t, const char *what, pl_err *err) {
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
