/* tokenizer_json.c: loading a Hugging Face tokenizer.json, a GPT-2 vocab.json + merges.txt, and pl_tokenizer_load by path.
 *
 * tokenizer.json support: model BPE (merges as "a b" strings or ["a", "b"]
 * pairs, byte_fallback, unk_token, fuse_unk, ignore_merges; no dropout, no
 * continuing_subword_prefix / end_of_word_suffix) and WordPiece;
 * normalizers Sequence, Prepend, Replace (string pattern), NFC, NFKC,
 * Lowercase, BertNormalizer; pre-tokenizers Sequence, ByteLevel, Split
 * (regex or string pattern, Isolated), Digits, Metaspace, BertPreTokenizer;
 * decoders ByteLevel, Metaspace, WordPiece, and the Replace/ByteFallback/
 * Fuse/Strip sequence of SentencePiece-style tokenizers. Anything else is
 * reported as unsupported, naming the piece, rather than silently ignored.
 * Added tokens keep their lstrip/rstrip flags; special ones are matched in
 * the text only with parse_special, non-special ones always. (Added tokens
 * with normalized=true are matched on the raw text, which equals the
 * normalized text for every normalizer that only prepends or replaces
 * spaces.) */
#include "tokenizer_int.h"

#include <errno.h>
#include <sys/stat.h>

#include "../core/gguf.h"
#include "../core/json.h"

#define JSON_MAX (256u << 20)

static char *dupn(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jbool(const cJSON *o, const char *k, int def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return def;
}

/* ------------------------------------------------------------------ pieces */

/* Fill t's pieces from (piece, id) pairs; ids must cover 0..n-1 without holes. */
typedef struct { const char *s; int id; } pv;

static int set_pieces(pl_tokenizer *t, const pv *v, size_t nv, const char *what, pl_err *err) {
    size_t total = 0;
    for (size_t i = 0; i < nv; i++) {
        size_t l = strlen(v[i].s);
        if (!pl_add_ok(total, l + 1, &total)) return pl_err_set(err, PL_ERANGE, "%s: vocabulary too large", what);
    }
    t->arena = malloc(total ? total : 1);
    if (!t->arena) return pl_err_set(err, PL_ENOMEM, "%s: cannot allocate %zu bytes of pieces", what, total);
    char *seen = calloc((size_t)t->n, 1);
    if (!seen) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", what);
    size_t ao = 0;
    for (size_t i = 0; i < nv; i++) {
        int id = v[i].id;
        if (seen[id]) continue; /* an added token that repeats a vocabulary entry */
        seen[id] = 1;
        size_t l = strlen(v[i].s);
        t->off[id] = ao;
        t->len[id] = (uint32_t)l;
        memcpy(t->arena + ao, v[i].s, l + 1);
        ao += l + 1;
        if (l > t->max_len) t->max_len = (uint32_t)l;
        t->type[id] = TT_NORMAL;
    }
    int missing = -1;
    for (int i = 0; i < t->n; i++)
        if (!seen[i]) {
            missing = i;
            break;
        }
    free(seen);
    if (missing >= 0)
        return pl_err_set(err, PL_EFORMAT, "%s: token id %d is missing (ids must run 0..%d without holes)", what, missing,
                          t->n - 1);
    return PL_OK;
}

/* ------------------------------------------------------------------ merges */

static int add_merge(pl_tokenizer *t, const char *a, size_t an, const char *b, size_t bn, ivec *l, ivec *r,
                     size_t idx, const char *what, pl_err *err) {
    int ia = tok_lookup(t, a, an), ib = tok_lookup(t, b, bn);
    if (ia < 0 || ib < 0)
        return pl_err_set(err, PL_EFORMAT, "%s: merges[%zu] '%.*s %.*s': %s is not in the vocabulary", what, idx,
                          (int)(an > 40 ? 40 : an), a, (int)(bn > 40 ? 40 : bn), b, ia < 0 ? "the left piece" : "the right piece");
    if (ivec_push(l, ia) || ivec_push(r, ib)) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", what);
    return PL_OK;
}

static int load_json_merges(pl_tokenizer *t, const cJSON *merges, const char *what, pl_err *err) {
    ivec l = { 0 }, r = { 0 };
    int rc = PL_OK;
    size_t idx = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, merges) {
        if (cJSON_IsString(m)) {
            const char *s = m->valuestring, *sp = strchr(s + (s[0] ? 1 : 0), ' ');
            if (!sp) {
                rc = pl_err_set(err, PL_EFORMAT, "%s: merges[%zu]: expected \"left right\", found '%.40s'", what, idx, s);
                break;
            }
            rc = add_merge(t, s, (size_t)(sp - s), sp + 1, strlen(sp + 1), &l, &r, idx, what, err);
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(cJSON_GetArrayItem(m, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(m, 1))) {
            const char *a = cJSON_GetArrayItem(m, 0)->valuestring, *b = cJSON_GetArrayItem(m, 1)->valuestring;
            rc = add_merge(t, a, strlen(a), b, strlen(b), &l, &r, idx, what, err);
        } else {
            rc = pl_err_set(err, PL_EFORMAT, "%s: merges[%zu]: expected a string or a pair of strings", what, idx);
        }
        if (rc) break;
        idx++;
    }
    if (!rc) rc = tok_hf_build_pair_merges(t, l.v, r.v, l.n, what, err);
    free(l.v);
    free(r.v);
    return rc;
}

/* ------------------------------------------------------------------ normalizers, pre-tokenizers */

static int add_op(tok_op *ops, int *n, tok_op op, const char *what, pl_err *err) {
    if (*n >= MAX_OPS) {
        free(op.a);
        free(op.b);
        return pl_err_set(err, PL_EUNSUPPORTED, "%s: more than %d normalizer/pre-tokenizer steps", what, MAX_OPS);
    }
    ops[(*n)++] = op;
    return PL_OK;
}

static int parse_normalizer(pl_tokenizer *t, const cJSON *nz, const char *what, pl_err *err) {
    if (!nz || cJSON_IsNull(nz)) return PL_OK;
    const char *ty = jstr(nz, "type");
    if (!ty) return pl_err_set(err, PL_EFORMAT, "%s: normalizer without a type", what);
    tok_op op = { 0 };
    if (!strcmp(ty, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(nz, "normalizers")) {
            int rc = parse_normalizer(t, it, what, err);
            if (rc) return rc;
        }
        return PL_OK;
    }
    if (!strcmp(ty, "Prepend")) {
        const char *s = jstr(nz, "prepend");
        if (!s) return pl_err_set(err, PL_EFORMAT, "%s: Prepend normalizer without 'prepend'", what);
        op.kind = NORM_PREPEND;
        op.a = dupn(s, op.an = strlen(s));
    } else if (!strcmp(ty, "Replace")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(nz, "pattern");
        const char *s = jstr(pat, "String"), *c = jstr(nz, "content");
        if (!s || !c)
            return pl_err_set(err, PL_EUNSUPPORTED, "%s: Replace normalizer: only a String pattern is supported", what);
        op.kind = NORM_REPLACE;
        op.a = dupn(s, op.an = strlen(s));
        op.b = dupn(c, op.bn = strlen(c));
    } else if (!strcmp(ty, "NFC")) {
        op.kind = NORM_NFC;
    } else if (!strcmp(ty, "NFKC")) {
        op.kind = NORM_NFKC;
    } else if (!strcmp(ty, "Lowercase")) {
        op.kind = NORM_LOWER;
    } else if (!strcmp(ty, "BertNormalizer")) {
        op.kind = NORM_BERT;
        t->bert_clean = jbool(nz, "clean_text", 1);
        t->bert_chinese = jbool(nz, "handle_chinese_chars", 1);
        t->bert_lower = jbool(nz, "lowercase", 1);
        t->bert_strip_accents = jbool(nz, "strip_accents", t->bert_lower); /* null: follows lowercase */
    } else {
        return pl_err_set(err, PL_EUNSUPPORTED, "%s: normalizer '%s' is not supported", what, ty);
    }
    if ((op.an && !op.a) || (op.bn && !op.b) || (op.kind == NORM_PREPEND && !op.a) || (op.kind == NORM_REPLACE && !op.b)) {
        free(op.a);
        free(op.b);
        return pl_err_set(err, PL_ENOMEM, "%s: out of memory", what);
    }
    return add_op(t->norm, &t->n_norm, op, what, err);
}

static int add_regex_op(pl_tokenizer *t, const char *pat, const char *what, pl_err *err) {
    const char *pats[2] = { pat, NULL };
    int rc = tok_compile_regexes(t, pats, what, err);
    if (rc) return rc;
    tok_op op = { .kind = PRE_OP_REGEX, .re = t->n_re - 1 };
    return add_op(t->pretok, &t->n_pretok, op, what, err);
}

/* a literal string as a PCRE2 pattern */
static char *quote_re(const char *s) {
    size_t n = strlen(s);
    char *o = malloc(n + 5);
    if (o) {
        memcpy(o, "\\Q", 2);
        memcpy(o + 2, s, n);
        memcpy(o + 2 + n, "\\E", 3);
    }
    return o;
}

static int parse_pretok(pl_tokenizer *t, const cJSON *pt, const char *what, pl_err *err) {
    if (!pt || cJSON_IsNull(pt)) return PL_OK;
    const char *ty = jstr(pt, "type");
    if (!ty) return pl_err_set(err, PL_EFORMAT, "%s: pre_tokenizer without a type", what);
    if (!strcmp(ty, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers")) {
            int rc = parse_pretok(t, it, what, err);
            if (rc) return rc;
        }
        return PL_OK;
    }
    if (!strcmp(ty, "ByteLevel")) {
        t->byte_level = 1;
        if (jbool(pt, "add_prefix_space", 0)) {
            if (t->n_pretok > 0)
                return pl_err_set(err, PL_EUNSUPPORTED, "%s: ByteLevel add_prefix_space after another pre-tokenizer", what);
            tok_op op = { .kind = NORM_PREPEND, .a = dupn(" ", 1), .an = 1, .flag = 1 };
            if (!op.a) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", what);
            int rc = add_op(t->norm, &t->n_norm, op, what, err);
            if (rc) return rc;
        }
        if (jbool(pt, "use_regex", 1)) return add_regex_op(t, tok_re_gpt2, what, err);
        return PL_OK;
    }
    if (!strcmp(ty, "Split")) {
        const char *beh = jstr(pt, "behavior");
        if (!beh || strcmp(beh, "Isolated") || jbool(pt, "invert", 0))
            return pl_err_set(err, PL_EUNSUPPORTED, "%s: Split pre-tokenizer: only behavior Isolated, not inverted", what);
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(pt, "pattern");
        const char *re = jstr(pat, "Regex"), *lit = jstr(pat, "String");
        if (re) return add_regex_op(t, re, what, err);
        if (!lit) return pl_err_set(err, PL_EFORMAT, "%s: Split pre-tokenizer without a pattern", what);
        char *q = quote_re(lit);
        if (!q) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", what);
        int rc = add_regex_op(t, q, what, err);
        free(q);
        return rc;
    }
    if (!strcmp(ty, "Digits")) return add_regex_op(t, jbool(pt, "individual_digits", 0) ? "\\p{N}" : "\\p{N}+", what, err);
    if (!strcmp(ty, "Metaspace")) {
        const char *rep = jstr(pt, "replacement"), *scheme = jstr(pt, "prepend_scheme");
        if (rep && strcmp(rep, "\xe2\x96\x81"))
            return pl_err_set(err, PL_EUNSUPPORTED, "%s: Metaspace with a replacement other than U+2581", what);
        if (t->n_pretok > 0)
            return pl_err_set(err, PL_EUNSUPPORTED, "%s: Metaspace after another pre-tokenizer", what);
        int flag = 2;
        if (scheme) flag = !strcmp(scheme, "never") ? 0 : !strcmp(scheme, "first") ? 1 : 2;
        else if (!jbool(pt, "add_prefix_space", 1)) flag = 0;
        const char *pats[2] = { "[^\xe2\x96\x81]+|\xe2\x96\x81[^\xe2\x96\x81]*", NULL };
        int rc = tok_compile_regexes(t, pats, what, err);
        if (rc) return rc;
        tok_op op = { .kind = PRE_OP_METASPACE, .flag = flag, .re = t->n_re - 1, .split = jbool(pt, "split", 1) };
        t->dec_meta = 1;
        t->dec_strip = flag != 0;
        return add_op(t->pretok, &t->n_pretok, op, what, err);
    }
    if (!strcmp(ty, "BertPreTokenizer")) {
        tok_op op = { .kind = PRE_OP_BERT };
        return add_op(t->pretok, &t->n_pretok, op, what, err);
    }
    return pl_err_set(err, PL_EUNSUPPORTED, "%s: pre_tokenizer '%s' is not supported", what, ty);
}

static int parse_decoder(pl_tokenizer *t, const cJSON *d, const char *what, pl_err *err) {
    if (!d || cJSON_IsNull(d)) return PL_OK;
    const char *ty = jstr(d, "type");
    if (!ty) return pl_err_set(err, PL_EFORMAT, "%s: decoder without a type", what);
    if (!strcmp(ty, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(d, "decoders")) {
            int rc = parse_decoder(t, it, what, err);
            if (rc) return rc;
        }
        return PL_OK;
    }
    if (!strcmp(ty, "Replace")) {
        const char *s = jstr(cJSON_GetObjectItemCaseSensitive(d, "pattern"), "String"), *c = jstr(d, "content");
        if (s && c && !strcmp(s, "\xe2\x96\x81") && !strcmp(c, " ")) {
            t->dec_meta = 1;
            return PL_OK;
        }
        return pl_err_set(err, PL_EUNSUPPORTED, "%s: Replace decoder other than U+2581 -> ' '", what);
    }
    if (!strcmp(ty, "Strip")) {
        const char *c = jstr(d, "content");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(d, "start"), *sp = cJSON_GetObjectItemCaseSensitive(d, "stop");
        if (c && !strcmp(c, " ") && cJSON_IsNumber(st) && st->valueint == 1 && cJSON_IsNumber(sp) && sp->valueint == 0) {
            t->dec_strip = 1;
            return PL_OK;
        }
        return pl_err_set(err, PL_EUNSUPPORTED, "%s: Strip decoder other than one leading space", what);
    }
    if (!strcmp(ty, "Metaspace")) {
        t->dec_meta = 1;
        const char *scheme = jstr(d, "prepend_scheme");
        t->dec_strip = scheme ? strcmp(scheme, "never") != 0 : jbool(d, "add_prefix_space", 1);
        return PL_OK;
    }
    if (!strcmp(ty, "ByteFallback") || !strcmp(ty, "Fuse") || !strcmp(ty, "ByteLevel") || !strcmp(ty, "WordPiece"))
        return PL_OK; /* implied by the model and pre-tokenizer */
    return pl_err_set(err, PL_EUNSUPPORTED, "%s: decoder '%s' is not supported", what, ty);
}

/* ------------------------------------------------------------------ tokenizer.json */

static int cmp_pv(const void *a, const void *b) {
    int x = ((const pv *)a)->id, y = ((const pv *)b)->id;
    return (x > y) - (x < y);
}

/* Build t from vocab (piece -> id object) plus added tokens; n = max id + 1. */
static int vocab_from_json(pl_tokenizer **out, const cJSON *vocab, const cJSON *added, const char *what, pl_err *err) {
    size_t nv = 0;
    const cJSON *it;
    int64_t maxid = -1;
    cJSON_ArrayForEach(it, vocab) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= MAX_VOCAB || !it->string)
            return pl_err_set(err, PL_EFORMAT, "%s: vocab entry '%.40s': expected an id in 0..%d", what,
                              it->string ? it->string : "?", MAX_VOCAB - 1);
        if (it->valueint > maxid) maxid = it->valueint;
        nv++;
    }
    cJSON_ArrayForEach(it, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= MAX_VOCAB || !jstr(it, "content"))
            return pl_err_set(err, PL_EFORMAT, "%s: added_tokens: expected {id, content}", what);
        if (id->valueint > maxid) maxid = id->valueint;
        nv++;
    }
    if (maxid < 0) return pl_err_set(err, PL_EFORMAT, "%s: empty vocabulary", what);
    pv *v = malloc(nv * sizeof *v);
    if (!v) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", what);
    size_t k = 0;
    cJSON_ArrayForEach(it, added) v[k++] = (pv){ jstr(it, "content"), cJSON_GetObjectItemCaseSensitive(it, "id")->valueint };
    cJSON_ArrayForEach(it, vocab) v[k++] = (pv){ it->string, it->valueint };
    qsort(v, nv, sizeof *v, cmp_pv); /* stable enough: added tokens first among equal ids is not needed */
    pl_tokenizer *t = tok_alloc((int)maxid + 1);
    if (!t) {
        free(v);
        return pl_err_set(err, PL_ENOMEM, "%s: cannot allocate a %d-token vocabulary", what, (int)maxid + 1);
    }
    int rc = set_pieces(t, v, nv, what, err);
    free(v);
    if (!rc) rc = tok_build_piece_hash(t, err, what);
    if (rc) {
        pl_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return PL_OK;
}

static int mark_added(pl_tokenizer *t, const cJSON *added, const char *what, pl_err *err) {
    if (cJSON_GetArraySize(added) <= 0) return PL_OK;
    t->aflags = calloc((size_t)t->n, 1);
    if (!t->aflags) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", what);
    const cJSON *it;
    cJSON_ArrayForEach(it, added) {
        int id = cJSON_GetObjectItemCaseSensitive(it, "id")->valueint;
        const char *c = jstr(it, "content");
        if ((size_t)t->len[id] != strlen(c) || memcmp(piece_ptr(t, id), c, t->len[id]))
            return pl_err_set(err, PL_EFORMAT, "%s: added token %d '%.40s' differs from the vocabulary's piece", what, id, c);
        t->type[id] = jbool(it, "special", 0) ? TT_CONTROL : TT_USER;
        t->aflags[id] = AF_ADDED | (jbool(it, "lstrip", 0) ? AF_LSTRIP : 0) | (jbool(it, "rstrip", 0) ? AF_RSTRIP : 0) |
                        (jbool(it, "normalized", 0) ? AF_NORMALIZED : 0) | (jbool(it, "single_word", 0) ? AF_SINGLE_WORD : 0);
        /* a special token's piece is matched by the added-token pass, never by the model */
    }
    return PL_OK;
}

/* byte_id[]: byte-level characters, or <0xNN> pieces for byte fallback */
static void set_byte_ids(pl_tokenizer *t) {
    for (int b = 0; b < 256; b++) {
        if (t->byte_level) {
            char u[4];
            t->byte_id[b] = tok_lookup(t, u, utf8_put(t->byte2cp[b], u));
        } else {
            char hex[7];
            snprintf(hex, sizeof hex, "<0x%02X>", b);
            int id = tok_lookup(t, hex, 6);
            t->byte_id[b] = id;
            if (id >= 0 && t->type[id] == TT_NORMAL) t->type[id] = TT_BYTE;
        }
    }
}

/* Special token ids from a post_processor TemplateProcessing: the first SpecialToken before $A is the BOS. */
static void parse_post(pl_tokenizer *t, const cJSON *pp) {
    if (!pp || cJSON_IsNull(pp)) return;
    const char *ty = jstr(pp, "type");
    if (!ty) return;
    if (!strcmp(ty, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(pp, "processors")) parse_post(t, it);
        return;
    }
    if (!strcmp(ty, "BertProcessing")) {
        const cJSON *cls = cJSON_GetObjectItemCaseSensitive(pp, "cls");
        const cJSON *sep = cJSON_GetObjectItemCaseSensitive(pp, "sep");
        if (cJSON_IsArray(cls) && cJSON_IsString(cJSON_GetArrayItem(cls, 0)))
            t->cls = tok_lookup(t, cJSON_GetArrayItem(cls, 0)->valuestring, strlen(cJSON_GetArrayItem(cls, 0)->valuestring));
        if (cJSON_IsArray(sep) && cJSON_IsString(cJSON_GetArrayItem(sep, 0)))
            t->sep = tok_lookup(t, cJSON_GetArrayItem(sep, 0)->valuestring, strlen(cJSON_GetArrayItem(sep, 0)->valuestring));
        if (t->cls >= 0) t->bos = t->cls, t->add_bos = 1;
        if (t->sep >= 0) t->eos = t->sep;
        return;
    }
    if (strcmp(ty, "TemplateProcessing")) return;
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(pp, "single"), *first = cJSON_GetArrayItem(single, 0);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(first, "SpecialToken");
    const char *name = jstr(st, "id");
    if (name) {
        int id = tok_lookup(t, name, strlen(name));
        if (id >= 0) {
            t->bos = id;
            t->add_bos = 1;
        }
    }
}

static int finish(pl_tokenizer *t, const char *what, pl_err *err) {
    tok_build_byte_maps(t);
    set_byte_ids(t);
    return tok_build_specials(t, what, err);
}

int tok_load_json(pl_tokenizer **out, const char *path, pl_err *err) {
    *out = NULL;
    cJSON *j = NULL;
    int rc = pl_json_load(path, JSON_MAX, &j, err);
    if (rc) return rc;
    pl_tokenizer *t = NULL;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
    const char *mty = jstr(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(j, "added_tokens");
    if (!mty || !cJSON_IsObject(vocab)) {
        rc = pl_err_set(err, PL_EFORMAT, "%s: expected model.type and a model.vocab object", path);
        goto fail;
    }
    int is_bpe = !strcmp(mty, "BPE"), is_wp = !strcmp(mty, "WordPiece");
    if (!is_bpe && !is_wp) {
        rc = pl_err_set(err, PL_EUNSUPPORTED, "%s: model type '%s' is not supported (BPE and WordPiece are)", path, mty);
        goto fail;
    }
    if ((rc = vocab_from_json(&t, vocab, added, path, err))) goto fail;
    t->kind = PL_TOK_BPE;
    t->src = SRC_HF;
    t->hf_model = is_wp ? HF_WORDPIECE : HF_BPE;
    if ((rc = mark_added(t, added, path, err))) goto fail;
    const char *unk = jstr(model, "unk_token");
    if (unk) t->unk = tok_lookup(t, unk, strlen(unk));
    if (is_bpe) {
        const cJSON *dr = cJSON_GetObjectItemCaseSensitive(model, "dropout");
        const char *csp = jstr(model, "continuing_subword_prefix"), *ews = jstr(model, "end_of_word_suffix");
        if ((dr && !cJSON_IsNull(dr)) || (csp && *csp) || (ews && *ews)) {
            rc = pl_err_set(err, PL_EUNSUPPORTED,
                            "%s: BPE with dropout, continuing_subword_prefix or end_of_word_suffix is not supported", path);
            goto fail;
        }
        t->byte_fallback = jbool(model, "byte_fallback", 0);
        t->fuse_unk = jbool(model, "fuse_unk", 0);
        t->ignore_merges = jbool(model, "ignore_merges", 0);
        if ((rc = load_json_merges(t, cJSON_GetObjectItemCaseSensitive(model, "merges"), path, err))) goto fail;
    } else {
        const char *csp = jstr(model, "continuing_subword_prefix");
        if (!csp) csp = "##";
        if (strlen(csp) >= sizeof t->wp_cont) {
            rc = pl_err_set(err, PL_EUNSUPPORTED, "%s: continuing_subword_prefix '%.20s' is too long", path, csp);
            goto fail;
        }
        strcpy(t->wp_cont, csp);
        t->wp_start[0] = '\0';
        const cJSON *mx = cJSON_GetObjectItemCaseSensitive(model, "max_input_chars_per_word");
        t->wp_max_chars = cJSON_IsNumber(mx) ? mx->valueint : 100;
        t->kind = PL_TOK_WPM;
        if (t->unk < 0) {
            rc = pl_err_set(err, PL_EFORMAT, "%s: WordPiece model without an unk_token in the vocabulary", path);
            goto fail;
        }
    }
    if ((rc = parse_normalizer(t, cJSON_GetObjectItemCaseSensitive(j, "normalizer"), path, err))) goto fail;
    if ((rc = parse_pretok(t, cJSON_GetObjectItemCaseSensitive(j, "pre_tokenizer"), path, err))) goto fail;
    if ((rc = parse_decoder(t, cJSON_GetObjectItemCaseSensitive(j, "decoder"), path, err))) goto fail;
    if (!t->byte_level && t->hf_model == HF_BPE) t->kind = PL_TOK_SPM;
    parse_post(t, cJSON_GetObjectItemCaseSensitive(j, "post_processor"));
    if ((rc = finish(t, path, err))) goto fail;
    cJSON_Delete(j);
    *out = t;
    return PL_OK;
fail:
    pl_tokenizer_free(t);
    cJSON_Delete(j);
    return rc;
}

/* ------------------------------------------------------------------ vocab.json + merges.txt */

static char *slurp(const char *path, size_t max, size_t *len, pl_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        pl_err_set(err, PL_EIO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *b = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            if (cap >= max) {
                pl_err_set(err, PL_ERANGE, "%s: larger than %zu bytes", path, max);
                free(b);
                fclose(f);
                return NULL;
            }
            cap = cap ? cap * 2 : 1 << 16;
            char *nb = realloc(b, cap + 1);
            if (!nb) {
                free(b);
                fclose(f);
                pl_err_set(err, PL_ENOMEM, "%s: out of memory", path);
                return NULL;
            }
            b = nb;
        }
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(b);
        pl_err_set(err, PL_EIO, "%s: read error", path);
        return NULL;
    }
    b[n] = '\0';
    *len = n;
    return b;
}

/* GPT-2 files as GPT2TokenizerFast reads them: byte-level BPE with GPT-2's
 * pattern; "<|endoftext|>" (when present) is a special added token and the
 * BOS/EOS. merges.txt: one "a b" per line; a first line "#version..." is a
 * header. */
int tok_load_vocab_merges(pl_tokenizer **out, const char *vocab, const char *merges, pl_err *err) {
    *out = NULL;
    cJSON *j = NULL;
    int rc = pl_json_load(vocab, JSON_MAX, &j, err);
    if (rc) return rc;
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return pl_err_set(err, PL_EFORMAT, "%s: expected a JSON object piece -> id", vocab);
    }
    pl_tokenizer *t = NULL;
    size_t ml = 0;
    char *mt = NULL;
    ivec l = { 0 }, r = { 0 };
    if ((rc = vocab_from_json(&t, j, NULL, vocab, err))) goto done;
    t->kind = PL_TOK_BPE;
    t->src = SRC_HF;
    t->hf_model = HF_BPE;
    t->byte_level = 1;
    if (!(mt = slurp(merges, JSON_MAX, &ml, err))) {
        rc = err ? err->code : PL_EIO;
        goto done;
    }
    size_t idx = 0;
    char *p = mt;
    if (!strncmp(p, "#version", 8)) {
        char *e = strchr(p, '\n');
        p = e ? e + 1 : p + strlen(p);
    }
    while (*p) {
        char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n && p[n - 1] == '\r') n--;
        if (n) {
            char *sp = memchr(p + 1, ' ', n > 1 ? n - 1 : 0);
            if (!sp) {
                rc = pl_err_set(err, PL_EFORMAT, "%s: line %zu: expected \"left right\"", merges, idx + 1);
                goto done;
            }
            if ((rc = add_merge(t, p, (size_t)(sp - p), sp + 1, n - (size_t)(sp - p) - 1, &l, &r, idx, merges, err)))
                goto done;
            idx++;
        }
        if (!e) break;
        p = e + 1;
    }
    if ((rc = tok_hf_build_pair_merges(t, l.v, r.v, l.n, merges, err))) goto done;
    if ((rc = add_regex_op(t, tok_re_gpt2, vocab, err))) goto done;
    int eot = tok_lookup(t, "<|endoftext|>", 13);
    if (eot >= 0) {
        t->aflags = calloc((size_t)t->n, 1);
        if (!t->aflags) {
            rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", vocab);
            goto done;
        }
        t->aflags[eot] = AF_ADDED;
        t->type[eot] = TT_CONTROL;
        t->bos = t->eos = eot;
    }
    rc = finish(t, vocab, err);
done:
    free(l.v);
    free(r.v);
    free(mt);
    cJSON_Delete(j);
    if (rc) pl_tokenizer_free(t);
    else *out = t;
    return rc;
}

/* ------------------------------------------------------------------ by path */

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* tokenizer_config.json next to a tokenizer.json: chat_template, add_bos_token, bos/eos names */
static int read_config(pl_tokenizer *t, const char *path, pl_err *err) {
    cJSON *j = NULL;
    int rc = pl_json_load(path, 16u << 20, &j, err);
    if (rc) return rc;
    const char *ct = jstr(j, "chat_template");
    if (ct && !(t->chat_template = strdup(ct))) rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", path);
    const char *keys[2] = { "bos_token", "eos_token" };
    int *dst[2] = { &t->bos, &t->eos };
    for (int k = 0; k < 2 && !rc; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, keys[k]);
        const char *s = cJSON_IsString(v) ? v->valuestring : jstr(v, "content");
        if (s) {
            int id = tok_lookup(t, s, strlen(s));
            if (id >= 0) *dst[k] = id;
        }
    }
    const cJSON *ab = cJSON_GetObjectItemCaseSensitive(j, "add_bos_token");
    if (cJSON_IsBool(ab)) t->add_bos = cJSON_IsTrue(ab) && t->bos >= 0;
    cJSON_Delete(j);
    return rc;
}

/* vocabulary size of a llama2.c tokenizer .bin: records until the end of the file */
static int llama2c_count(const char *path, int *n, pl_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return pl_err_set(err, PL_EIO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char h[8];
    int c = 0, rc = PL_OK;
    if (fread(h, 1, 4, f) != 4) rc = pl_err_set(err, PL_EFORMAT, "%s: shorter than the 4-byte header", path);
    while (!rc) {
        size_t got = fread(h, 1, 8, f);
        if (got == 0) break;
        int32_t l;
        memcpy(&l, h + 4, 4);
        if (got != 8 || l < 0 || fseek(f, l, SEEK_CUR) != 0) {
            rc = pl_err_set(err, PL_EFORMAT, "%s: token %d: truncated record", path, c);
            break;
        }
        if (++c > MAX_VOCAB) rc = pl_err_set(err, PL_ERANGE, "%s: more than %d tokens", path, MAX_VOCAB);
    }
    fclose(f);
    *n = c;
    return rc;
}

int pl_tokenizer_load(pl_tokenizer **out, const char *path, pl_err *err) {
    if (!out || !path) return pl_err_set(err, PL_EINVAL, "tokenizer: load: NULL argument");
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0) return pl_err_set(err, PL_EIO, "%s: cannot open: %s", path, strerror(errno));
    char p[4096], q[4096];
    if (S_ISDIR(st.st_mode)) {
        snprintf(p, sizeof p, "%s/tokenizer.json", path);
        if (file_exists(p)) {
            int rc = tok_load_json(out, p, err);
            if (rc) return rc;
            snprintf(q, sizeof q, "%s/tokenizer_config.json", path);
            if (file_exists(q) && (rc = read_config(*out, q, err))) {
                pl_tokenizer_free(*out);
                *out = NULL;
            }
            return rc;
        }
        snprintf(p, sizeof p, "%s/vocab.json", path);
        snprintf(q, sizeof q, "%s/merges.txt", path);
        if (file_exists(p) && file_exists(q)) return tok_load_vocab_merges(out, p, q, err);
        return pl_err_set(err, PL_ENOTFOUND, "%s: a folder without tokenizer.json or vocab.json + merges.txt", path);
    }
    FILE *f = fopen(path, "rb");
    if (!f) return pl_err_set(err, PL_EIO, "%s: cannot open: %s", path, strerror(errno));
    char magic[4] = { 0 };
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    if (got == 4 && !memcmp(magic, "GGUF", 4)) {
        pl_gguf *g = NULL;
        int rc = pl_gguf_open(&g, path, err);
        if (rc) return rc;
        rc = pl_tokenizer_from_gguf(out, g, err);
        pl_gguf_close(g);
        return rc;
    }
    size_t pl = strlen(path);
    if ((pl >= 5 && !strcmp(path + pl - 5, ".json")) || (got >= 1 && magic[0] == '{')) return tok_load_json(out, path, err);
    int n = 0;
    int rc = llama2c_count(path, &n, err);
    if (rc) return pl_err_prefix(err, "not a GGUF, tokenizer.json or llama2.c tokenizer");
    return pl_tokenizer_load_llama2c(out, path, n, err);
}

int pl_tokenizer_open(pl_tokenizer **out, const char *path, int vocab_size, pl_err *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return pl_err_set(err, PL_EIO, "%s: %s", path, strerror(errno));
    char magic[4] = {0};
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    if (got == 4 && !memcmp(magic, "GGUF", 4)) {
        pl_gguf *g;
        int rc = pl_gguf_open(&g, path, err);
        if (rc) return rc;
        rc = pl_tokenizer_from_gguf(out, g, err);
        pl_gguf_close(g);
        return rc;
    }
    struct stat st;
    size_t n = strlen(path);
    if ((stat(path, &st) == 0 && S_ISDIR(st.st_mode)) || (n > 5 && !strcmp(path + n - 5, ".json")))
        return pl_tokenizer_load(out, path, err); /* tokenizer.json or its folder */
    return pl_tokenizer_load_llama2c(out, path, vocab_size, err);
}
