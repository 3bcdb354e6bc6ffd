/* tokenizer_gguf_write.c: writing a loaded tokenizer as GGUF tokenizer metadata (tokenizer.ggml.*). */
#include "tokenizer_gguf_write.h"

#include "tokenizer_int.h"

/* tokenizer.ggml.pre names tried, in order; the first whose regex set equals the tokenizer's wins */
static const char *const pre_try[] = { "gpt2", "llama-bpe", "qwen2", "smollm", "falcon", "default",
                                       "deepseek-coder", "deepseek-llm" };

#define HF_CONTRACT "(?i:'s|'t|'re|'ve|'m|'ll|'d)"
/* the same sets as Hugging Face tokenizer.json files spell them */
static const struct { const char *name; const char *pats[3]; } pre_alt[] = {
    { "llama-bpe", { HF_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
                     "\\s+(?!\\S)|\\s+", NULL } },
    { "qwen2", { HF_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
                 "\\s+(?!\\S)|\\s+", NULL } },
};

/* serialized compiled code: equal bytes mean the same pattern and options */
static int re_bytes(const pcre2_code *re, uint8_t **b, PCRE2_SIZE *n) {
    int32_t r = pcre2_serialize_encode(&re, 1, b, n, NULL);
    return r == 1 ? PL_OK : PL_ENOMEM;
}

/* 1 if the patterns pats (NULL-terminated) compile to exactly res[0..nre), 0 if not, < 0 on error */
static int same_set(pcre2_code *const *res, int nre, const char *const *pats) {
    int np = 0;
    while (pats[np]) np++;
    if (np != nre) return 0;
    int same = 1;
    for (int i = 0; i < np && same; i++) {
        int ec;
        PCRE2_SIZE eo;
        pcre2_code *c = pcre2_compile((PCRE2_SPTR)pats[i], PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
        if (!c) return PL_EUNSUPPORTED;
        uint8_t *a = NULL, *b = NULL;
        PCRE2_SIZE na = 0, nb = 0;
        int rc = re_bytes(c, &a, &na);
        if (!rc) rc = re_bytes(res[i], &b, &nb);
        if (!rc) same = na == nb && !memcmp(a, b, na);
        if (a) pcre2_serialize_free(a);
        if (b) pcre2_serialize_free(b);
        pcre2_code_free(c);
        if (rc) return rc;
    }
    return same;
}

/* The tokenizer.ggml.pre name for a byte-level BPE tokenizer.json's regex pre-tokenizers. */
static int hf_pre_name(const pl_tokenizer *t, const char **name, const char *what, pl_err *err) {
    pcre2_code *res[MAX_OPS];
    int nre = 0;
    for (int i = 0; i < t->n_pretok; i++) {
        if (t->pretok[i].kind != PRE_OP_REGEX)
            return pl_err_set(err, PL_EUNSUPPORTED,
                              "%s: pre-tokenizer step %d is not a regex split; GGUF (tokenizer.ggml.pre) cannot express it",
                              what, i);
        res[nre++] = t->re[t->pretok[i].re];
    }
    for (size_t i = 0; i < sizeof pre_try / sizeof pre_try[0]; i++) {
        int known, l3;
        const char *const *pats = tok_pre_patterns(pre_try[i], &known, &l3);
        int s = same_set(res, nre, pats);
        if (s < 0) return pl_err_set(err, s, "%s: cannot compile the pre-tokenizer regexes of '%s'", what, pre_try[i]);
        if (s) {
            *name = pre_try[i];
            return PL_OK;
        }
    }
    for (size_t i = 0; i < sizeof pre_alt / sizeof pre_alt[0]; i++) {
        int s = same_set(res, nre, pre_alt[i].pats);
        if (s < 0) return pl_err_set(err, s, "%s: cannot compile the pre-tokenizer regexes of '%s'", what, pre_alt[i].name);
        if (s) {
            *name = pre_alt[i].name;
            return PL_OK;
        }
    }
    return pl_err_set(err, PL_EUNSUPPORTED,
                      "%s: its %d pre-tokenizer regex(es) match no tokenizer.ggml.pre name this version knows "
                      "(gpt2, llama-bpe, qwen2, smollm, falcon, default, deepseek-coder, deepseek-llm); not guessing",
                      what, nre);
}

typedef struct { int32_t rank, a, b, nid; } pmerge;

static int cmp_pmerge(const void *x, const void *y) {
    int32_t a = ((const pmerge *)x)->rank, b = ((const pmerge *)y)->rank;
    return (a > b) - (a < b);
}

/* tokenizer.json merges (id pairs in t->pkeys) in rank order; *out malloc'd */
static int hf_merges(const pl_tokenizer *t, pmerge **out, size_t *n, const char *what, pl_err *err) {
    *out = NULL;
    *n = 0;
    if (!t->pkeys) return PL_OK;
    size_t cnt = 0;
    for (size_t i = 0; i <= t->pmask; i++) cnt += t->pkeys[i] != 0;
    pmerge *m = malloc((cnt ? cnt : 1) * sizeof *m);
    if (!m) return pl_err_set(err, PL_ENOMEM, "%s: out of memory for %zu merges", what, cnt);
    size_t k = 0;
    for (size_t i = 0; i <= t->pmask; i++) {
        uint64_t v = t->pkeys[i];
        if (!v) continue;
        v -= 1; /* keys are stored + 1 */
        m[k++] = (pmerge){ t->prank[i], (int32_t)(v >> 32), (int32_t)(uint32_t)v, t->pnew[i] };
    }
    qsort(m, k, sizeof *m, cmp_pmerge);
    *out = m;
    *n = k;
    return PL_OK;
}

/* Normalizers / pre-tokenizer of a SentencePiece-style tokenizer.json -> add_space_prefix, or an error. */
static int hf_spm_prefix(const pl_tokenizer *t, int *asp, const char *what, pl_err *err) {
    static const char meta[] = "\xe2\x96\x81";
    int prepend = 0, replace = 0;
    for (int i = 0; i < t->n_norm; i++) {
        const tok_op *o = &t->norm[i];
        if (o->kind == NORM_PREPEND && o->an == 3 && !memcmp(o->a, meta, 3) && !replace && !prepend) prepend = 1;
        else if (o->kind == NORM_REPLACE && o->an == 1 && o->a[0] == ' ' && o->bn == 3 && !memcmp(o->b, meta, 3))
            replace = 1;
        else
            return pl_err_set(err, PL_EUNSUPPORTED,
                              "%s: normalizer step %d (kind %d) has no GGUF \"llama\" equivalent (only Prepend U+2581 "
                              "and Replace ' ' -> U+2581)",
                              what, i, o->kind);
    }
    if (t->n_pretok == 0) {
        if (!replace)
            return pl_err_set(err, PL_EUNSUPPORTED,
                              "%s: SentencePiece-style BPE without Replace ' ' -> U+2581 or Metaspace", what);
        *asp = prepend;
        return PL_OK;
    }
    if (t->n_pretok == 1 && t->pretok[0].kind == PRE_OP_METASPACE && !replace && !prepend && t->pretok[0].flag != 1) {
        *asp = t->pretok[0].flag != 0;
        return PL_OK;
    }
    return pl_err_set(err, PL_EUNSUPPORTED,
                      "%s: SentencePiece-style BPE with a pre-tokenizer other than one Metaspace (prepend always/never)",
                      what);
}

/* tokens, types (and scores when non-NULL) for nv >= t->n entries: ids from t->n on are
 * llama.cpp's padding "[PAD<id>]" (type unused), as its converter writes them */
static int put_vocab(const pl_tokenizer *t, pl_gguf_writer *w, const float *scores, int nv, pl_err *err) {
    const char **strs = malloc((size_t)nv * sizeof *strs);
    uint64_t *lens = malloc((size_t)nv * sizeof *lens);
    int32_t *types = malloc((size_t)nv * sizeof *types);
    float *sc = scores ? malloc((size_t)nv * sizeof *sc) : NULL;
    char *pad = nv > t->n ? malloc((size_t)(nv - t->n) * 16) : NULL;
    int rc;
    if (!strs || !lens || !types || (scores && !sc) || (nv > t->n && !pad)) {
        rc = pl_err_set(err, PL_ENOMEM, "tokenizer: out of memory for %d tokens", nv);
        goto done;
    }
    for (int i = 0; i < nv; i++) {
        if (i < t->n) {
            strs[i] = piece_ptr(t, i);
            lens[i] = t->len[i];
            types[i] = t->type[i] ? t->type[i] : TT_NORMAL;
            if (sc) sc[i] = scores[i];
        } else {
            char *q = pad + (size_t)(i - t->n) * 16;
            lens[i] = (uint64_t)snprintf(q, 16, "[PAD%d]", i);
            strs[i] = q;
            types[i] = TT_UNUSED;
            if (sc) sc[i] = -1e9f;
        }
    }
    if ((rc = pl_gguf_set_arr_str(w, "tokenizer.ggml.tokens", strs, lens, (uint64_t)nv, err))) goto done;
    if (sc && (rc = pl_gguf_set_arr(w, "tokenizer.ggml.scores", PL_GGUF_FLOAT32, sc, (uint64_t)nv, err))) goto done;
    rc = pl_gguf_set_arr(w, "tokenizer.ggml.token_type", PL_GGUF_INT32, types, (uint64_t)nv, err);
done:
    free(strs);
    free(lens);
    free(types);
    free(sc);
    free(pad);
    return rc;
}

/* tokenizer.ggml.merges: n strings "left right"; from id pairs (hm) or the GGUF arena (t->merges) */
static int put_merges(const pl_tokenizer *t, pl_gguf_writer *w, const pmerge *hm, size_t n, pl_err *err) {
    const char **strs = malloc((n ? n : 1) * sizeof *strs);
    uint64_t *lens = malloc((n ? n : 1) * sizeof *lens);
    sbuf b = { 0 };
    size_t *offs = malloc((n ? n : 1) * sizeof *offs);
    int rc = PL_OK;
    if (!strs || !lens || !offs) rc = PL_ENOMEM;
    for (size_t i = 0; i < n && !rc; i++) {
        if (hm) {
            offs[i] = b.n;
            lens[i] = (uint64_t)t->len[hm[i].a] + 1 + t->len[hm[i].b];
            rc = sbuf_add(&b, piece_ptr(t, hm[i].a), t->len[hm[i].a]);
            if (!rc) rc = sbuf_add(&b, " ", 1);
            if (!rc) rc = sbuf_add(&b, piece_ptr(t, hm[i].b), t->len[hm[i].b]);
        } else {
            const merge_ent *m = &t->merges[i];
            strs[i] = t->arena + m->left; /* "left right" as read */
            lens[i] = (uint64_t)m->left_len + 1 + m->right_len;
        }
    }
    if (rc) {
        rc = pl_err_set(err, PL_ENOMEM, "tokenizer: out of memory for %zu merges", n);
    } else {
        if (hm)
            for (size_t i = 0; i < n; i++) strs[i] = b.p + offs[i];
        rc = pl_gguf_set_arr_str(w, "tokenizer.ggml.merges", strs, lens, (uint64_t)n, err);
    }
    free(strs);
    free(lens);
    free(offs);
    free(b.p);
    return rc;
}

static int put_id(pl_gguf_writer *w, const char *key, int id, int n, pl_err *err) {
    if (id < 0 || id >= n) return PL_OK;
    return pl_gguf_set_u32(w, key, (uint32_t)id, err);
}

int pl_tokenizer_to_gguf(const pl_tokenizer *t, pl_gguf_writer *w, int n_vocab, const char *what, pl_err *err) {
    if (!t || !w) return pl_err_set(err, PL_EINVAL, "tokenizer: to_gguf: NULL argument");
    if (!what) what = "tokenizer";
    if (n_vocab <= 0) n_vocab = t->n;
    if (n_vocab < t->n || n_vocab > MAX_VOCAB)
        return pl_err_set(err, PL_ERANGE, "%s: the model has %d token rows but the tokenizer has %d tokens", what,
                          n_vocab, t->n);
    if (t->kind == PL_TOK_WPM)
        return pl_err_set(err, PL_EUNSUPPORTED, "%s: WordPiece tokenizers are not written as GGUF by this version", what);
    if (t->src == SRC_LLAMA2C || t->src == SRC_WPM)
        return pl_err_set(err, PL_EUNSUPPORTED, "%s: a llama2.c tokenizer is not written as GGUF by this version", what);
    int rc;
    pmerge *hm = NULL;
    size_t nhm = 0;
    float *scores = NULL;
    int asp = 0;
    const char *pre = NULL;
    if (t->src == SRC_HF) {
        if (t->hf_model != HF_BPE)
            return pl_err_set(err, PL_EUNSUPPORTED, "%s: only BPE tokenizer.json models are written as GGUF", what);
        /* NOTE: added tokens' lstrip/rstrip/single_word have no GGUF key (llama.cpp's converter drops
         * them too and re-adds some by model name), so they are not written */
        if (t->kind == PL_TOK_BPE) {
            if (t->n_norm)
                return pl_err_set(err, PL_EUNSUPPORTED,
                                  "%s: byte-level BPE with a normalizer (or ByteLevel add_prefix_space); GGUF \"gpt2\" "
                                  "cannot express it",
                                  what);
            if ((rc = hf_pre_name(t, &pre, what, err))) return rc;
            int known, l3;
            (void)tok_pre_patterns(pre, &known, &l3);
            if (l3 != (t->ignore_merges != 0))
                return pl_err_set(err, PL_EUNSUPPORTED,
                                  "%s: ignore_merges is %d but llama.cpp's pre-tokenizer '%s' implies %d", what,
                                  t->ignore_merges, pre, l3);
        } else {
            if ((rc = hf_spm_prefix(t, &asp, what, err))) return rc;
            if (t->ignore_merges)
                return pl_err_set(err, PL_EUNSUPPORTED, "%s: SentencePiece-style BPE with ignore_merges", what);
        }
        if ((rc = hf_merges(t, &hm, &nhm, what, err))) return rc;
        if (t->kind == PL_TOK_SPM) {
            /* SentencePiece merges the best-scored piece first: -rank of the first merge forming it */
            scores = malloc((size_t)t->n * sizeof *scores);
            if (!scores) {
                free(hm);
                return pl_err_set(err, PL_ENOMEM, "%s: out of memory", what);
            }
            for (int i = 0; i < t->n; i++) scores[i] = -1e9f;
            for (size_t i = nhm; i-- > 0;) {
                if (hm[i].nid >= 0 && hm[i].nid < t->n) scores[hm[i].nid] = -(float)hm[i].rank;
            }
        }
    } else {
        if (t->kind == PL_TOK_BPE) {
            if (!t->pre_known)
                return pl_err_set(err, PL_EUNSUPPORTED, "%s: tokenizer.ggml.pre '%s' is not one this version knows",
                                  what, t->pre);
            pre = t->pre;
        }
        asp = t->add_space_prefix;
    }
    int spm = t->kind == PL_TOK_SPM;
    if ((rc = pl_gguf_set_str(w, "tokenizer.ggml.model", spm ? "llama" : "gpt2", err))) goto done;
    if (pre && (rc = pl_gguf_set_str(w, "tokenizer.ggml.pre", pre, err))) goto done;
    if ((rc = put_vocab(t, w, spm ? (scores ? scores : t->score) : NULL, n_vocab, err))) goto done;
    if (!spm) {
        if (t->src == SRC_HF) rc = put_merges(t, w, hm, nhm, err);
        else rc = put_merges(t, w, NULL, t->n_merges, err);
        if (rc) goto done;
    }
    if ((rc = put_id(w, "tokenizer.ggml.bos_token_id", t->bos, t->n, err)) ||
        (rc = put_id(w, "tokenizer.ggml.eos_token_id", t->eos, t->n, err)) ||
        (rc = put_id(w, "tokenizer.ggml.unknown_token_id", t->unk, t->n, err)) ||
        (rc = put_id(w, "tokenizer.ggml.padding_token_id", t->pad, t->n, err)) ||
        (rc = pl_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", t->add_bos != 0, err)) ||
        (spm && (rc = pl_gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", asp, err))) ||
        (t->chat_template && (rc = pl_gguf_set_str(w, "tokenizer.chat_template", t->chat_template, err))))
        goto done;
done:
    free(hm);
    free(scores);
    return rc;
}
