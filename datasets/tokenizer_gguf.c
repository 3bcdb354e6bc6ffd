/* tokenizer_gguf.c: tokenizers from GGUF metadata (tokenizer.ggml.*): "llama" (SentencePiece-style),
 * "gpt2" (byte-level BPE with the pre-tokenizer of tokenizer.ggml.pre) and "bert" (WordPiece).
 *
 * Special tokens, as llama.cpp's tokenizer_st_partition does: user-defined
 * tokens (type 4) are always cut out of the text before the tokenizer sees it
 * (Hugging Face and llama.cpp both do this; the mpt and deepseek vocabularies
 * rely on it); control and unknown tokens (types 3, 2) only when
 * parse_special is set. At each position the longest matching token wins. */
#include "tokenizer_int.h"


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

/* tokenizer.ggml.pre -> t->re (absent: llama.cpp's "default" set). */
static int setup_pre(pl_tokenizer *t, const pl_gguf *g, pl_err *err) {
    const pl_gguf_kv *kv = pl_gguf_get(g, "tokenizer.ggml.pre");
    if (kv) {
        if (kv->type != PL_GGUF_STRING)
            return pl_err_set(err, PL_EFORMAT, "%s: tokenizer.ggml.pre: expected a string, found %s", g->path,
                              vt_name(kv));
        size_t l = kv->str.len < sizeof t->pre - 1 ? (size_t)kv->str.len : sizeof t->pre - 1;
        if (l) memcpy(t->pre, kv->str.ptr, l);
        t->pre[l] = '\0';
    } else {
        strcpy(t->pre, "default");
    }
    int l3;
    const char *const *pats = tok_pre_patterns(t->pre, &t->pre_known, &l3);
    if (kv && kv->str.len > sizeof t->pre - 1) t->pre_known = 0; /* truncated: not a name we know */
    if (!t->pre_known) {
        /* another pre-tokenizer splits text elsewhere: GPT-2's pattern would give
         * valid ids that are not the model's own, so refuse, as tokenizer.json does */
        char names[900];
        tok_pre_names(names, sizeof names);
        return pl_err_set(err, PL_EUNSUPPORTED,
                          "%s: tokenizer.ggml.pre '%s' is not supported, so its text would split differently; pass "
                          "the model's tokenizer.json (--tokenizer) instead. Supported: %s",
                          g->path, t->pre, names);
    }
    if (l3) {
        t->ignore_merges = 1;
        t->add_bos = 1; /* llama.cpp's default for these; tokenizer.ggml.add_bos_token overrides */
    }
    return tok_compile_regexes(t, pats, g->path, err);
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
    else if (mk->str.len == 4 && !memcmp(mk->str.ptr, "bert", 4)) kind = PL_TOK_WPM;
    else {
        int l = mk->str.len > 40 ? 40 : (int)mk->str.len;
        return pl_err_set(err, PL_EUNSUPPORTED,
                          "%s: tokenizer.ggml.model '%.*s' is not supported (this version reads \"llama\", \"gpt2\" "
                          "and \"bert\")",
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
    t->src = kind == PL_TOK_SPM ? SRC_GGUF_SPM : kind == PL_TOK_BPE ? SRC_GGUF_BPE : SRC_WPM;
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
    if ((rc = tok_build_piece_hash(t, err, path))) goto fail;
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
    if (kind == PL_TOK_WPM) {
        /* llama.cpp's BERT vocabulary: word-initial pieces carry U+2581, continuations
         * are bare (Hugging Face's "##" removed); the text is normalized as
         * Hugging Face's BertNormalizer (lowercase, accents stripped) */
        t->cls = t->sep = t->pad = -1;
        if ((rc = get_token_id(g, "tokenizer.ggml.cls_token_id", n, &t->cls, err))) goto fail;
        if ((rc = get_token_id(g, "tokenizer.ggml.seperator_token_id", n, &t->sep, err))) goto fail;
        if ((rc = get_token_id(g, "tokenizer.ggml.padding_token_id", n, &t->pad, err))) goto fail;
        if (t->bos < 0) t->bos = t->cls;
        if (t->eos < 0) t->eos = t->sep;
        t->add_bos = t->bos >= 0;
        strcpy(t->wp_start, "\xe2\x96\x81");
        t->wp_cont[0] = '\0';
        t->wp_max_chars = 100;
        t->bert_lower = t->bert_strip_accents = t->bert_chinese = t->bert_clean = 1;
        t->hf_model = HF_WORDPIECE;
        t->norm[t->n_norm++] = (tok_op){ .kind = NORM_BERT };
        t->pretok[t->n_pretok++] = (tok_op){ .kind = PRE_OP_BERT };
        if (t->unk < 0) {
            rc = pl_err_set(err, PL_EFORMAT, "%s: bert tokenizer without tokenizer.ggml.unknown_token_id", path);
            goto fail;
        }
    }
    if (kind == PL_TOK_BPE) {
        tok_build_byte_maps(t);
        if ((rc = setup_pre(t, g, err))) goto fail;
    } else if (kind == PL_TOK_SPM && (rc = get_opt_bool(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix, err))) {
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
            int id = tok_lookup(t, hex, 6);
            if (id < 0) {
                char c = (char)b;
                id = tok_lookup(t, &c, 1);
            }
            if (id < 0) id = t->unk;
            t->byte_id[b] = id;
        } else if (kind == PL_TOK_BPE) {
            char u[4];
            size_t k = utf8_put(t->byte2cp[b], u);
            t->byte_id[b] = tok_lookup(t, u, k);
        }
    }
    /* without token types, an SPM "<0xNN>" piece is still a byte token */
    if (kind == PL_TOK_SPM && !yk)
        for (int i = 0; i < n; i++)
            if (tok_parse_byte_piece(piece_ptr(t, i), t->len[i]) >= 0) t->type[i] = TT_BYTE;
    if ((rc = tok_build_specials(t, path, err))) goto fail;
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
