/* tokenizer_wordpiece.c: WordPiece (BERT): greedy longest-match-first pieces of each pre-split word.
 *
 * As Hugging Face's WordPiece model: a word longer than wp_max_chars
 * characters, or one that cannot be covered by pieces, becomes the unknown
 * token. Word-initial pieces are looked up with wp_start before them ("" in a
 * tokenizer.json, U+2581 in llama.cpp's GGUF), later ones with wp_cont ("##"
 * in a tokenizer.json, "" in a GGUF). The normalizer (BertNormalizer) and the
 * pre-tokenizer (BertPreTokenizer) run in tokenizer_hf.c. */
#include "tokenizer_int.h"

int tok_encode_wordpiece(const pl_tokenizer *t, const char *p, size_t n, const int32_t *map, tokout *out) {
    size_t nchars = 0;
    for (size_t i = 0; i < n; i++) nchars += ((unsigned char)p[i] & 0xC0) != 0x80;
    if (t->wp_max_chars > 0 && nchars > (size_t)t->wp_max_chars) return out_push(out, t->unk, map[0]);
    size_t ls = strlen(t->wp_start), lc = strlen(t->wp_cont);
    size_t pre = ls > lc ? ls : lc;
    char stackbuf[256];
    char *cand = stackbuf;
    if (n + pre > sizeof stackbuf) {
        cand = malloc(n + pre);
        if (!cand) return PL_ENOMEM;
    }
    size_t mark = out->ids.n, start = 0;
    int rc = PL_OK;
    while (start < n) {
        const char *px = start ? t->wp_cont : t->wp_start;
        size_t pl = start ? lc : ls;
        memcpy(cand, px, pl);
        size_t end = n;
        if (end - start + pl > t->max_len) end = start + (t->max_len > pl ? t->max_len - pl : 0);
        while (end > start && end < n && ((unsigned char)p[end] & 0xC0) == 0x80) end--; /* a character boundary */
        int id = -1;
        while (end > start) {
            memcpy(cand + pl, p + start, end - start);
            id = tok_lookup(t, cand, pl + end - start);
            if (id >= 0) break;
            end--;
            while (end > start && ((unsigned char)p[end] & 0xC0) == 0x80) end--;
        }
        if (id < 0) {
            /* not coverable: the whole word is unknown */
            out->ids.n = mark;
            if (out->want_offs) out->offs.n = mark;
            rc = out_push(out, t->unk, map[0]);
            break;
        }
        if ((rc = out_push(out, id, map[start]))) break;
        start = end;
    }
    if (cand != stackbuf) free(cand);
    return rc;
}

/* Word-initial pieces read with a space before them (none at the start of
 * the text or after a control token), continuations join the word. */
int tok_decode_wordpiece(const pl_tokenizer *t, int prev, int id, int render_special, char *buf, size_t cap) {
    const char *p = piece_ptr(t, id);
    size_t n = t->len[id], o = 0;
    int ty = t->type[id];
    if (ty == TT_CONTROL || ty == TT_UNKNOWN) {
        if (!render_special) return 0;
        n = n < cap ? n : cap;
        memcpy(buf, p, n);
        return (int)n;
    }
    int at_start = prev < 0 || t->type[prev] == TT_CONTROL;
    size_t ls = strlen(t->wp_start), lc = strlen(t->wp_cont);
    int initial;
    if (ls) {
        initial = n >= ls && !memcmp(p, t->wp_start, ls);
        if (initial) { p += ls; n -= ls; }
    } else {
        initial = !(lc && n >= lc && !memcmp(p, t->wp_cont, lc));
        if (!initial) { p += lc; n -= lc; }
    }
    if (initial && !at_start && o < cap) buf[o++] = ' ';
    if (n > cap - o) n = cap - o;
    memcpy(buf + o, p, n);
    return (int)(o + n);
}
