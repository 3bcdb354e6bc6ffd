/* tokenizer_hf.c: the Hugging Face tokenizer.json pipeline: added tokens, normalizers, pre-tokenizers, BPE by merge rank.
 *
 * Order, as tokenizers' TokenizerImpl::encode runs it:
 *   1. added tokens are cut out of the raw text (leftmost, longest at a
 *      position; lstrip/rstrip take the whitespace beside them along);
 *      special ones only when parse_special is set (HF's encode_special_tokens
 *      off), non-special ones always;
 *   2. each remaining segment is normalized (Prepend, Replace, NFC, NFKC,
 *      Lowercase, BertNormalizer) with a map from every normalized byte back
 *      to its offset in the caller's text;
 *   3. pre-tokenized (regex splits with Isolated behaviour, ByteLevel,
 *      Metaspace, BertPreTokenizer) into words;
 *   4. each word goes through the model: BPE (ids merged by the rank of the
 *      (left id, right id) pair, lowest rank first, leftmost on ties; byte
 *      fallback to <0xNN>; unk, fused when fuse_unk; ignore_merges) or
 *      WordPiece (tokenizer_wordpiece.c).
 * Offsets (pl_tokenizer_encode_offsets) come from the normalization map. */
#include "tokenizer_int.h"

#include <utf8proc.h>

/* ------------------------------------------------------------------ character classes */

/* Rust's char::is_whitespace (the White_Space property) */
static int is_ws_cp(uint32_t c) {
    return (c >= 9 && c <= 13) || c == ' ' || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* one code point at p (n bytes left); invalid bytes count as one U+FFFD-like unit of 1 byte */
static size_t next_cp(const char *p, size_t n, uint32_t *cp) {
    size_t k = utf8_valid((const unsigned char *)p, n, cp);
    if (!k) {
        *cp = 0xFFFD;
        return 1;
    }
    return k;
}

/* ------------------------------------------------------------------ normalization */

/* a normalized segment: bytes and the caller-text offset of each byte */
typedef struct { sbuf s; ivec map; } nstr;

static int nstr_add(nstr *d, const char *p, size_t n, int32_t off) {
    int rc = sbuf_add(&d->s, p, n);
    for (size_t i = 0; !rc && i < n; i++) rc = ivec_push(&d->map, off);
    return rc;
}

static int nstr_add_cp(nstr *d, uint32_t cp, int32_t off) {
    char u[4];
    return nstr_add(d, u, utf8_put(cp, u), off);
}

static int is_cjk(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Rust's char::is_other: general category C* */
static int is_other_cp(uint32_t c) {
    int cat = utf8proc_category((utf8proc_int32_t)c);
    return cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF || cat == UTF8PROC_CATEGORY_CS ||
           cat == UTF8PROC_CATEGORY_CO || cat == UTF8PROC_CATEGORY_CN;
}

/* BertNormalizer: clean_text, handle_chinese_chars, strip_accents, lowercase (in that order). */
static int norm_bert(const pl_tokenizer *t, const nstr *in, nstr *out) {
    int rc = PL_OK;
    for (size_t i = 0; i < in->s.n && !rc;) {
        uint32_t c;
        int32_t o = in->map.v[i];
        i += next_cp(in->s.p + i, in->s.n - i, &c);
        if (t->bert_clean) {
            if (c == 0 || c == 0xFFFD || (c != '\t' && c != '\n' && c != '\r' && is_other_cp(c))) continue;
            if (is_ws_cp(c)) c = ' ';
        }
        uint32_t cps[8];
        int ncp = 1;
        cps[0] = c;
        if (t->bert_strip_accents) {
            utf8proc_int32_t d[8];
            int last = 0;
            utf8proc_ssize_t nd = utf8proc_decompose_char((utf8proc_int32_t)c, d, 8, UTF8PROC_DECOMPOSE, &last);
            if (nd > 0 && nd <= 8) {
                ncp = 0;
                for (int k = 0; k < nd; k++)
                    if (utf8proc_category(d[k]) != UTF8PROC_CATEGORY_MN) cps[ncp++] = (uint32_t)d[k];
            }
        }
        for (int k = 0; k < ncp && !rc; k++) {
            uint32_t x = cps[k];
            if (t->bert_lower) x = (uint32_t)utf8proc_tolower((utf8proc_int32_t)x);
            if (t->bert_chinese && is_cjk(x)) {
                if (!(rc = nstr_add(out, " ", 1, o)) && !(rc = nstr_add_cp(out, x, o))) rc = nstr_add(out, " ", 1, o);
            } else {
                rc = nstr_add_cp(out, x, o);
            }
        }
    }
    return rc;
}

/* NFC / NFKC through utf8proc. The offsets are kept per run of text between
 * ASCII bytes: every byte a non-ASCII run turns into maps to the run's start. */
static int norm_utf8proc(const nstr *in, nstr *out, int compat) {
    int rc = PL_OK;
    for (size_t i = 0; i < in->s.n && !rc;) {
        if ((unsigned char)in->s.p[i] < 0x80) {
            rc = nstr_add(out, in->s.p + i, 1, in->map.v[i]);
            i++;
            continue;
        }
        size_t j = i;
        while (j < in->s.n && (unsigned char)in->s.p[j] >= 0x80) j++;
        utf8proc_uint8_t *r = NULL;
        utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)in->s.p + i, (utf8proc_ssize_t)(j - i), &r,
                                          UTF8PROC_STABLE | UTF8PROC_COMPOSE | (compat ? UTF8PROC_COMPAT : 0));
        if (m < 0) {
            /* not valid UTF-8: left as it is (HF's input is always valid UTF-8) */
            for (size_t k = i; k < j && !rc; k++) rc = nstr_add(out, in->s.p + k, 1, in->map.v[k]);
        } else {
            rc = nstr_add(out, (const char *)r, (size_t)m, in->map.v[i]);
        }
        free(r);
        i = j;
    }
    return rc;
}

static int normalize(const pl_tokenizer *t, const tok_op *op, const nstr *in, nstr *out) {
    out->s.n = 0;
    out->map.n = 0;
    int rc = PL_OK;
    switch (op->kind) {
    case NORM_PREPEND:
        if (in->s.n == 0) break;
        if (op->flag && in->s.n >= op->an && !memcmp(in->s.p, op->a, op->an)) { /* ByteLevel prefix: only if missing */
            rc = nstr_add(out, in->s.p, in->s.n, 0);
            if (!rc) memcpy(out->map.v, in->map.v, in->s.n * sizeof *in->map.v);
            break;
        }
        if ((rc = nstr_add(out, op->a, op->an, in->map.v[0]))) break;
        for (size_t i = 0; i < in->s.n && !rc; i++) rc = nstr_add(out, in->s.p + i, 1, in->map.v[i]);
        break;
    case NORM_REPLACE:
        for (size_t i = 0; i < in->s.n && !rc;) {
            if (op->an && in->s.n - i >= op->an && !memcmp(in->s.p + i, op->a, op->an)) {
                rc = nstr_add(out, op->b, op->bn, in->map.v[i]);
                i += op->an;
            } else {
                rc = nstr_add(out, in->s.p + i, 1, in->map.v[i]);
                i++;
            }
        }
        break;
    case NORM_NFC: rc = norm_utf8proc(in, out, 0); break;
    case NORM_NFKC: rc = norm_utf8proc(in, out, 1); break;
    case NORM_LOWER:
        for (size_t i = 0; i < in->s.n && !rc;) {
            uint32_t c;
            int32_t o = in->map.v[i];
            size_t k = utf8_valid((const unsigned char *)in->s.p + i, in->s.n - i, &c);
            if (!k) {
                rc = nstr_add(out, in->s.p + i, 1, o);
                i++;
                continue;
            }
            rc = nstr_add_cp(out, (uint32_t)utf8proc_tolower((utf8proc_int32_t)c), o);
            i += k;
        }
        break;
    case NORM_BERT: rc = norm_bert(t, in, out); break;
    default: rc = PL_EINVAL;
    }
    return rc;
}

/* ------------------------------------------------------------------ BPE by id pairs */

typedef struct { int32_t prev, next, id, toff; } hsym;
typedef struct { int32_t rank, left, right, lid, rid, nid; } hmerge;

typedef struct {
    hsym *s;
    size_t ns, cap_s;
    hmerge *h;
    size_t nh, cap_h;
} hwork;

static inline uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1; }

static inline size_t pair_slot(uint64_t k, size_t mask) { return (size_t)mix64(k) & mask; }

/* rank of merging ids a and b (and the merged id), or -1 */
static int32_t pair_rank(const pl_tokenizer *t, int32_t a, int32_t b, int32_t *nid) {
    if (!t->pkeys) return -1;
    uint64_t k = pair_key(a, b);
    size_t i = pair_slot(k, t->pmask);
    for (;;) {
        uint64_t v = t->pkeys[i];
        if (v == 0) return -1;
        if (v == k) {
            *nid = t->pnew[i];
            return t->prank[i];
        }
        i = (i + 1) & t->pmask;
    }
}

/* Merges as (left id, right id) -> merged id, rank = index; the merged piece must be a token. */
int tok_hf_build_pair_merges(pl_tokenizer *t, const int32_t *left, const int32_t *right, size_t nm, const char *what,
                             pl_err *err) {
    size_t cap;
    if (!hash_cap(nm, &cap)) return pl_err_set(err, PL_ENOMEM, "%s: too many merges", what);
    t->pkeys = calloc(cap, sizeof *t->pkeys);
    t->prank = malloc(cap * sizeof *t->prank);
    t->pnew = malloc(cap * sizeof *t->pnew);
    if (!t->pkeys || !t->prank || !t->pnew) return pl_err_set(err, PL_ENOMEM, "%s: cannot allocate the merge table", what);
    t->pmask = cap - 1;
    sbuf tmp = { 0 };
    for (size_t r = 0; r < nm; r++) {
        int32_t a = left[r], b = right[r];
        tmp.n = 0;
        if (sbuf_add(&tmp, piece_ptr(t, a), t->len[a]) || sbuf_add(&tmp, piece_ptr(t, b), t->len[b])) {
            free(tmp.p);
            return pl_err_set(err, PL_ENOMEM, "%s: out of memory", what);
        }
        int nid = tok_lookup(t, tmp.p, tmp.n);
        if (nid < 0) {
            int rc = pl_err_set(err, PL_EFORMAT, "%s: merges[%zu] '%s' + '%s': the merged piece is not in the vocabulary",
                                what, r, piece_ptr(t, a), piece_ptr(t, b));
            free(tmp.p);
            return rc;
        }
        uint64_t k = pair_key(a, b);
        size_t i = pair_slot(k, t->pmask);
        while (t->pkeys[i] != 0 && t->pkeys[i] != k) i = (i + 1) & t->pmask;
        if (t->pkeys[i] == k) continue; /* the first (lowest) rank stays */
        t->pkeys[i] = k;
        t->prank[i] = (int32_t)r;
        t->pnew[i] = nid;
    }
    free(tmp.p);
    return PL_OK;
}

static int hm_less(const hmerge *a, const hmerge *b) {
    if (a->rank != b->rank) return a->rank < b->rank;
    return a->left < b->left;
}

static int hpush(hwork *w, hmerge m) {
    if (w->nh == w->cap_h) {
        size_t nc = w->cap_h ? w->cap_h * 2 : 64;
        hmerge *nh = realloc(w->h, nc * sizeof *nh);
        if (!nh) return PL_ENOMEM;
        w->h = nh;
        w->cap_h = nc;
    }
    size_t i = w->nh++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hm_less(&m, &w->h[p])) break;
        w->h[i] = w->h[p];
        i = p;
    }
    w->h[i] = m;
    return PL_OK;
}

static hmerge hpop(hwork *w) {
    hmerge top = w->h[0], last = w->h[--w->nh];
    size_t i = 0, n = w->nh;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const hmerge *best = &last;
        if (l < n && hm_less(&w->h[l], best)) { m = l; best = &w->h[l]; }
        if (r < n && hm_less(&w->h[r], best)) m = r;
        if (m == i) break;
        w->h[i] = w->h[m];
        i = m;
    }
    if (n) w->h[i] = last;
    return top;
}

static int hsym_push(hwork *w, int32_t id, int32_t toff) {
    if (w->ns == w->cap_s) {
        size_t nc = w->cap_s ? w->cap_s * 2 : 64;
        if (nc > (size_t)INT32_MAX) return PL_ENOMEM;
        hsym *ns = realloc(w->s, nc * sizeof *ns);
        if (!ns) return PL_ENOMEM;
        w->s = ns;
        w->cap_s = nc;
    }
    hsym *s = &w->s[w->ns];
    s->prev = (int32_t)w->ns - 1;
    s->next = -1;
    if (w->ns) w->s[w->ns - 1].next = (int32_t)w->ns;
    s->id = id;
    s->toff = toff;
    w->ns++;
    return PL_OK;
}

static int hpair(const pl_tokenizer *t, hwork *w, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return PL_OK;
    int32_t nid, rank = pair_rank(t, w->s[l].id, w->s[r].id, &nid);
    if (rank < 0) return PL_OK;
    hmerge m = { rank, l, r, w->s[l].id, w->s[r].id, nid };
    return hpush(w, m);
}

/* Word::merge_all: merge the symbols of w until no pair has a rank; emit them. */
static int hmerge_all(const pl_tokenizer *t, hwork *w, tokout *out) {
    int rc;
    w->nh = 0;
    for (size_t i = 1; i < w->ns; i++)
        if ((rc = hpair(t, w, (int32_t)i - 1, (int32_t)i))) return rc;
    while (w->nh) {
        hmerge m = hpop(w);
        hsym *a = &w->s[m.left], *b = &w->s[m.right];
        if (a->id != m.lid || b->id != m.rid || a->next != m.right || b->id < 0) continue; /* stale */
        a->id = m.nid;
        b->id = -1;
        a->next = b->next;
        if (b->next >= 0) w->s[b->next].prev = m.left;
        if ((rc = hpair(t, w, a->prev, m.left))) return rc;
        if ((rc = hpair(t, w, m.left, a->next))) return rc;
    }
    for (int32_t i = w->ns ? 0 : -1; i >= 0; i = w->s[i].next)
        if ((rc = out_push(out, w->s[i].id, w->s[i].toff))) return rc;
    return PL_OK;
}

/* BPE on one word (normalized bytes p[0..n), offsets map[0..n)). */
static int bpe_word(const pl_tokenizer *t, const char *p, size_t n, const int32_t *map, hwork *hw, work *w,
                    tokout *out) {
    int rc;
    hw->ns = 0;
    if (t->byte_level) {
        if (t->ignore_merges) {
            w->buf.n = 0;
            for (size_t i = 0; i < n; i++) {
                char u[4];
                if ((rc = sbuf_add(&w->buf, u, utf8_put(t->byte2cp[(unsigned char)p[i]], u)))) return rc;
            }
            int id = tok_lookup(t, w->buf.p, w->buf.n);
            if (id >= 0) return out_push(out, id, map[0]);
        }
        for (size_t i = 0; i < n; i++) {
            int32_t id = t->byte_id[(unsigned char)p[i]];
            if (id < 0) id = t->unk;
            if (id < 0) continue; /* HF drops a character it cannot map and has no unk for */
            if ((rc = hsym_push(hw, id, map[i]))) return rc;
        }
        return hmerge_all(t, hw, out);
    }
    if (t->ignore_merges) {
        int id = tok_lookup(t, p, n);
        if (id >= 0) return out_push(out, id, map[0]);
    }
    int32_t unk_off = -1; /* a pending unk (fuse_unk joins neighbours) */
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = next_cp(p + i, n - i, &cp);
        int id = tok_lookup(t, p + i, k);
        if (id >= 0) {
            if (unk_off >= 0) {
                if ((rc = hsym_push(hw, t->unk, unk_off))) return rc;
                unk_off = -1;
            }
            if ((rc = hsym_push(hw, id, map[i]))) return rc;
            i += k;
            continue;
        }
        if (t->byte_fallback) {
            int ok = 1;
            for (size_t j = 0; j < k; j++) ok &= t->byte_id[(unsigned char)p[i + j]] >= 0;
            if (ok) {
                /* as tokenizers does: a pending unk is not flushed before the bytes */
                for (size_t j = 0; j < k; j++)
                    if ((rc = hsym_push(hw, t->byte_id[(unsigned char)p[i + j]], map[i]))) return rc;
                i += k;
                continue;
            }
        }
        if (t->unk >= 0) {
            if (unk_off >= 0 && !t->fuse_unk) {
                if ((rc = hsym_push(hw, t->unk, unk_off))) return rc;
                unk_off = -1;
            }
            if (unk_off < 0) unk_off = map[i];
        }
        i += k;
    }
    if (unk_off >= 0 && (rc = hsym_push(hw, t->unk, unk_off))) return rc;
    return hmerge_all(t, hw, out);
}

/* ------------------------------------------------------------------ pre-tokenization */

/* Split every span of cur by regex re (matches and the text between them
 * become spans; Isolated), into nxt. */
static int split_regex(const pcre2_code *re, const char *s, const spans *cur, spans *nxt, pcre2_match_data *md) {
    int rc;
    nxt->n = 0;
    for (size_t k = 0; k < cur->n; k++) {
        size_t a = cur->v[k].a, b = cur->v[k].b, pos = 0, prev = 0, n = b - a;
        PCRE2_SPTR subj = (PCRE2_SPTR)(s + a);
        while (pos < n) {
            int m = pcre2_match(re, subj, n, pos, 0, md, NULL);
            if (m == PCRE2_ERROR_NOMATCH) break;
            if (m < 0) return PL_EINVAL;
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            size_t ms = ov[0], me = ov[1];
            if (me <= ms) {
                uint32_t cp;
                pos = ms + next_cp((const char *)subj + ms, n - ms, &cp);
                continue;
            }
            if (ms > prev && (rc = spans_push(nxt, a + prev, a + ms))) return rc;
            if ((rc = spans_push(nxt, a + ms, a + me))) return rc;
            prev = pos = me;
        }
        if (prev < n && (rc = spans_push(nxt, a + prev, b))) return rc;
    }
    return PL_OK;
}

/* WordPiece's BertPreTokenizer split: whitespace removed, punctuation isolated. */
static int split_bert(const char *s, const spans *cur, spans *nxt) {
    int rc;
    nxt->n = 0;
    for (size_t k = 0; k < cur->n; k++) {
        size_t i = cur->v[k].a, b = cur->v[k].b, ws = (size_t)-1;
        while (i < b) {
            uint32_t c;
            size_t l = next_cp(s + i, b - i, &c);
            int cat = utf8proc_category((utf8proc_int32_t)c);
            int punct = (c < 0x80 && ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
                                      (c >= 123 && c <= 126))) ||
                        (cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO);
            if (is_ws_cp(c) || punct) {
                if (ws != (size_t)-1 && (rc = spans_push(nxt, ws, i))) return rc;
                ws = (size_t)-1;
                if (punct && (rc = spans_push(nxt, i, i + l))) return rc;
            } else if (ws == (size_t)-1) {
                ws = i;
            }
            i += l;
        }
        if (ws != (size_t)-1 && (rc = spans_push(nxt, ws, b))) return rc;
    }
    return PL_OK;
}

typedef struct {
    nstr n1, n2;
    spans cur, nxt;
    hwork hw;
    pcre2_match_data *md;
} hstate;

static void hstate_free(hstate *h) {
    free(h->n1.s.p);
    free(h->n1.map.v);
    free(h->n2.s.p);
    free(h->n2.map.v);
    free(h->cur.v);
    free(h->nxt.v);
    free(h->hw.s);
    free(h->hw.h);
    if (h->md) pcre2_match_data_free(h->md);
}

static const char META[] = "\xe2\x96\x81"; /* U+2581 */

/* One segment of raw text (no added tokens in it), text[a..b). */
static int encode_segment(const pl_tokenizer *t, const char *text, size_t a, size_t b, hstate *h, work *w,
                          tokout *out) {
    int rc;
    nstr *cur = &h->n1, *nx = &h->n2;
    cur->s.n = 0;
    cur->map.n = 0;
    if ((rc = sbuf_add(&cur->s, text + a, b - a))) return rc;
    for (size_t i = a; i < b; i++)
        if ((rc = ivec_push(&cur->map, (int32_t)i))) return rc;
    for (int k = 0; k < t->n_norm; k++) {
        if ((rc = normalize(t, &t->norm[k], cur, nx))) return rc;
        nstr *tmp = cur;
        cur = nx;
        nx = tmp;
    }
    /* pre-tokenizers */
    h->cur.n = 0;
    if (cur->s.n == 0) return PL_OK;
    if ((rc = spans_push(&h->cur, 0, cur->s.n))) return rc;
    for (int k = 0; k < t->n_pretok; k++) {
        const tok_op *op = &t->pretok[k];
        if (op->kind == PRE_OP_METASPACE) {
            /* ' ' -> U+2581 and the prefix; must be the first pre-tokenizer */
            nx->s.n = 0;
            nx->map.n = 0;
            int pre = op->flag == 2 || (op->flag == 1 && a == 0);
            if (pre && !(cur->s.n >= 3 && !memcmp(cur->s.p, META, 3)) && (rc = nstr_add(nx, META, 3, cur->map.v[0])))
                return rc;
            for (size_t i = 0; i < cur->s.n; i++) {
                if (cur->s.p[i] == ' ') rc = nstr_add(nx, META, 3, cur->map.v[i]);
                else rc = nstr_add(nx, cur->s.p + i, 1, cur->map.v[i]);
                if (rc) return rc;
            }
            nstr *tmp = cur;
            cur = nx;
            nx = tmp;
            h->cur.n = 0;
            if ((rc = spans_push(&h->cur, 0, cur->s.n))) return rc;
        }
        if (op->kind == PRE_OP_REGEX || op->kind == PRE_OP_METASPACE) {
            if (op->kind == PRE_OP_METASPACE && !op->split) continue;
            if ((rc = split_regex(t->re[op->re], cur->s.p, &h->cur, &h->nxt, h->md))) return rc;
        } else if (op->kind == PRE_OP_BERT) {
            if ((rc = split_bert(cur->s.p, &h->cur, &h->nxt))) return rc;
        } else {
            continue;
        }
        spans tmp = h->cur;
        h->cur = h->nxt;
        h->nxt = tmp;
    }
    for (size_t k = 0; k < h->cur.n; k++) {
        size_t s = h->cur.v[k].a, e = h->cur.v[k].b;
        if (e <= s) continue;
        if (t->hf_model == HF_WORDPIECE) rc = tok_encode_wordpiece(t, cur->s.p + s, e - s, cur->map.v + s, out);
        else rc = bpe_word(t, cur->s.p + s, e - s, cur->map.v + s, &h->hw, w, out);
        if (rc) return rc;
    }
    return PL_OK;
}

int tok_encode_hf(const pl_tokenizer *t, const char *text, size_t len, int add_bos, int parse_special, work *w,
                  tokout *out) {
    hstate h = { 0 };
    int rc = PL_OK;
    h.md = pcre2_match_data_create(4, NULL);
    if (!h.md) return PL_ENOMEM;
    if (add_bos && t->bos >= 0 && (rc = out_push(out, t->bos, 0))) goto done;
    size_t i = 0, seg = 0;
    int scan = t->spec_start[256] > 0;
    while (i <= len) {
        int sid = -1;
        size_t ms = len, me = len;
        if (scan) {
            for (size_t p = i; p < len; p++) {
                sid = tok_match_special(t, text + p, len - p, parse_special);
                if (sid >= 0) {
                    ms = p;
                    me = p + t->len[sid];
                    break;
                }
            }
        }
        size_t ss = ms, se = me;
        if (sid >= 0 && t->aflags) {
            uint32_t c;
            if (t->aflags[sid] & AF_LSTRIP) /* whitespace before the token joins it */
                while (ss > seg) {
                    size_t q = ss - 1;
                    while (q > seg && ((unsigned char)text[q] & 0xC0) == 0x80) q--;
                    if (!utf8_valid((const unsigned char *)text + q, ss - q, &c) || !is_ws_cp(c)) break;
                    ss = q;
                }
            if (t->aflags[sid] & AF_RSTRIP)
                while (se < len) {
                    size_t k = utf8_valid((const unsigned char *)text + se, len - se, &c);
                    if (!k || !is_ws_cp(c)) break;
                    se += k;
                }
        }
        if (ss > seg && (rc = encode_segment(t, text, seg, ss, &h, w, out))) goto done;
        if (sid < 0) break;
        if ((rc = out_push(out, sid, (int32_t)ss))) goto done;
        seg = i = se;
        if (se == len) break;
    }
done:
    hstate_free(&h);
    return rc;
}

/* ------------------------------------------------------------------ decoding */

static int put(char *buf, size_t cap, const char *p, size_t n) {
    if (n > cap) n = cap;
    if (n) memcpy(buf, p, n);
    return (int)n;
}

int tok_decode_hf(const pl_tokenizer *t, int prev, int id, int render_special, char *buf, size_t cap) {
    const char *p = piece_ptr(t, id);
    size_t n = t->len[id];
    if (t->aflags && (t->aflags[id] & AF_ADDED)) {
        if (t->type[id] == TT_CONTROL && !render_special) return 0;
        return put(buf, cap, p, n);
    }
    if (t->hf_model == HF_WORDPIECE) return tok_decode_wordpiece(t, prev, id, render_special, buf, cap);
    if (t->byte_level) return tok_decode_bytelevel(t, p, n, buf, cap);
    if (t->byte_fallback && t->type[id] == TT_BYTE) {
        int v = tok_parse_byte_piece(p, n);
        if (v >= 0) {
            char c = (char)v;
            return put(buf, cap, &c, 1);
        }
    }
    size_t o = 0, k = 0;
    int strip = t->dec_strip && (prev < 0 || (t->bos >= 0 && prev == t->bos));
    while (k < n && o < cap) {
        char c = p[k];
        size_t adv = 1;
        if (t->dec_meta && n - k >= 3 && !memcmp(p + k, META, 3)) {
            c = ' ';
            adv = 3;
        }
        if (strip && o == 0 && c == ' ') {
            strip = 0;
            k += adv;
            continue;
        }
        strip = 0;
        if (adv == 3) {
            buf[o++] = ' ';
        } else {
            buf[o++] = c;
        }
        k += adv;
    }
    return (int)o;
}
