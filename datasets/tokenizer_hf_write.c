/* tokenizer_hf_write.c: a GGUF file's byte-level BPE tokenizer
 * (tokenizer.ggml.model "gpt2") written as Hugging Face tokenizer files, so a
 * model exported from a GGUF base loads with AutoTokenizer.from_pretrained:
 *   tokenizer.json         BPE model (vocab, merges), the pre-tokenizer as a
 *                          Sequence of Split(Regex, Isolated) per pattern of
 *                          tokenizer.ggml.pre (the patterns potluck's own
 *                          tokenizer runs, tokenizer_pretok.c) then ByteLevel
 *                          without its own regex, control and user-defined
 *                          tokens as added tokens;
 *   tokenizer_config.json  bos/eos/unk/pad texts, add_bos_token, the chat
 *                          template, model_max_length;
 *   special_tokens_map.json.
 * SentencePiece-style ("llama") and WordPiece vocabularies are not written:
 * the caller says so. */
#include "tokenizer_hf_write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/json.h"
#include "tokenizer_int.h"

static char *kv_str(const pl_gguf *g, const char *key) {
    const pl_gguf_kv *kv = pl_gguf_get(g, key);
    if (!kv || kv->type != PL_GGUF_STRING) return NULL;
    char *s = malloc(kv->str.len + 1);
    if (!s) return NULL;
    memcpy(s, kv->str.ptr, kv->str.len);
    s[kv->str.len] = 0;
    return s;
}

static int kv_int(const pl_gguf *g, const char *key, int64_t *v) {
    pl_err e = {0};
    return pl_gguf_get(g, key) && !pl_gguf_get_i64(g, key, v, &e);
}

/* A string of the tokens array as a cJSON string (it may hold NUL bytes in
 * theory; those are cut, as JSON strings from C are). */
static cJSON *str_item(const pl_str *s) {
    char *t = malloc(s->len + 1);
    if (!t) return NULL;
    memcpy(t, s->ptr, s->len);
    t[s->len] = 0;
    cJSON *j = cJSON_CreateString(t);
    free(t);
    return j;
}

static char *token_text(const pl_gguf_kv *toks, int64_t id) {
    if (id < 0 || (uint64_t)id >= toks->arr_len) return NULL;
    const pl_str *s = &toks->strs[id];
    char *t = malloc(s->len + 1);
    if (!t) return NULL;
    memcpy(t, s->ptr, s->len);
    t[s->len] = 0;
    return t;
}

int pl_tokenizer_gguf_write_hf(const pl_gguf *g, const char *dir, int64_t max_len, pl_err *err) {
    char *model = kv_str(g, "tokenizer.ggml.model");
    int is_gpt2 = model && !strcmp(model, "gpt2");
    if (!is_gpt2) {
        int rc = pl_err_set(err, PL_EUNSUPPORTED, "%s: tokenizer.ggml.model \"%s\": only byte-level BPE (gpt2) "
                            "vocabularies are written as tokenizer.json", g->path, model ? model : "(none)");
        free(model);
        return rc;
    }
    free(model);
    const pl_gguf_kv *toks = pl_gguf_get(g, "tokenizer.ggml.tokens");
    const pl_gguf_kv *merges = pl_gguf_get(g, "tokenizer.ggml.merges");
    const pl_gguf_kv *types = pl_gguf_get(g, "tokenizer.ggml.token_type");
    if (!toks || toks->type != PL_GGUF_ARRAY || toks->arr_type != PL_GGUF_STRING || !toks->strs || !merges ||
        merges->type != PL_GGUF_ARRAY || merges->arr_type != PL_GGUF_STRING || !merges->strs)
        return pl_err_set(err, PL_EFORMAT, "%s: tokenizer.ggml.tokens / merges: expected arrays of strings", g->path);
    if (types && (types->type != PL_GGUF_ARRAY || types->arr_len < toks->arr_len || !types->data)) types = NULL;
    char *pre = kv_str(g, "tokenizer.ggml.pre");
    int known = 0, l3 = 0;
    const char *const *pats = tok_pre_patterns(pre ? pre : "default", &known, &l3);
    if (!known) {
        int rc = pl_err_set(err, PL_EUNSUPPORTED, "%s: tokenizer.ggml.pre \"%s\" is not one potluck knows", g->path,
                            pre ? pre : "");
        free(pre);
        return rc;
    }
    free(pre);

    cJSON *tj = cJSON_CreateObject();
    cJSON_AddStringToObject(tj, "version", "1.0");
    cJSON_AddNullToObject(tj, "truncation");
    cJSON_AddNullToObject(tj, "padding");
    cJSON *added = cJSON_AddArrayToObject(tj, "added_tokens");
    for (uint64_t i = 0; types && i < toks->arr_len; i++) {
        int64_t ty = pl_gguf_arr_i64(types, i);
        if (ty != 3 && ty != 4) continue; /* control, user-defined */
        cJSON *a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "id", (double)i);
        cJSON_AddItemToObject(a, "content", str_item(&toks->strs[i]));
        cJSON_AddFalseToObject(a, "single_word");
        cJSON_AddFalseToObject(a, "lstrip");
        cJSON_AddFalseToObject(a, "rstrip");
        cJSON_AddBoolToObject(a, "normalized", ty == 4);
        cJSON_AddBoolToObject(a, "special", ty == 3);
        cJSON_AddItemToArray(added, a);
    }
    cJSON_AddNullToObject(tj, "normalizer");
    cJSON *pt = cJSON_AddObjectToObject(tj, "pre_tokenizer");
    cJSON_AddStringToObject(pt, "type", "Sequence");
    cJSON *seq = cJSON_AddArrayToObject(pt, "pretokenizers");
    for (int i = 0; pats[i]; i++) {
        cJSON *s = cJSON_CreateObject();
        cJSON_AddStringToObject(s, "type", "Split");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(s, "pattern"), "Regex", pats[i]);
        cJSON_AddStringToObject(s, "behavior", "Isolated");
        cJSON_AddFalseToObject(s, "invert");
        cJSON_AddItemToArray(seq, s);
    }
    cJSON *bl = cJSON_CreateObject();
    cJSON_AddStringToObject(bl, "type", "ByteLevel");
    cJSON_AddFalseToObject(bl, "add_prefix_space");
    cJSON_AddTrueToObject(bl, "trim_offsets");
    cJSON_AddFalseToObject(bl, "use_regex");
    cJSON_AddItemToArray(seq, bl);
    int64_t bos = -1, eos = -1, unk = -1, pad = -1, add_bos = 0;
    kv_int(g, "tokenizer.ggml.bos_token_id", &bos);
    kv_int(g, "tokenizer.ggml.eos_token_id", &eos);
    kv_int(g, "tokenizer.ggml.unknown_token_id", &unk);
    kv_int(g, "tokenizer.ggml.padding_token_id", &pad);
    {
        int b = 0;
        pl_err e = {0};
        if (pl_gguf_get(g, "tokenizer.ggml.add_bos_token") && !pl_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b, &e))
            add_bos = b;
    }
    char *bos_t = token_text(toks, bos), *eos_t = token_text(toks, eos), *unk_t = token_text(toks, unk),
         *pad_t = token_text(toks, pad);
    cJSON *pp = cJSON_AddObjectToObject(tj, "post_processor");
    if (add_bos && bos_t) {
        /* BOS first, as transformers' llama3 tokenizer.json does */
        cJSON_AddStringToObject(pp, "type", "TemplateProcessing");
        cJSON *single = cJSON_AddArrayToObject(pp, "single"), *pair = cJSON_AddArrayToObject(pp, "pair");
        const char *seqs[2] = {"A", "B"};
        for (int k = 0; k < 2; k++) {
            for (int w = 0; w < (k ? 2 : 1); w++) {
                cJSON *arr = k ? pair : single;
                cJSON *st = cJSON_CreateObject(), *sp = cJSON_AddObjectToObject(st, "SpecialToken");
                cJSON_AddStringToObject(sp, "id", bos_t);
                cJSON_AddNumberToObject(sp, "type_id", w);
                cJSON_AddItemToArray(arr, st);
                cJSON *sq = cJSON_CreateObject(), *sqi = cJSON_AddObjectToObject(sq, "Sequence");
                cJSON_AddStringToObject(sqi, "id", seqs[w]);
                cJSON_AddNumberToObject(sqi, "type_id", w);
                cJSON_AddItemToArray(arr, sq);
            }
        }
        cJSON *sts = cJSON_AddObjectToObject(pp, "special_tokens"), *b = cJSON_AddObjectToObject(sts, bos_t);
        cJSON_AddStringToObject(b, "id", bos_t);
        cJSON *ids = cJSON_AddArrayToObject(b, "ids");
        cJSON_AddItemToArray(ids, cJSON_CreateNumber((double)bos));
        cJSON *toksa = cJSON_AddArrayToObject(b, "tokens");
        cJSON_AddItemToArray(toksa, cJSON_CreateString(bos_t));
    } else {
        cJSON_AddStringToObject(pp, "type", "ByteLevel");
        cJSON_AddTrueToObject(pp, "add_prefix_space");
        cJSON_AddFalseToObject(pp, "trim_offsets");
        cJSON_AddTrueToObject(pp, "use_regex");
    }
    cJSON *dec = cJSON_AddObjectToObject(tj, "decoder");
    cJSON_AddStringToObject(dec, "type", "ByteLevel");
    cJSON_AddTrueToObject(dec, "add_prefix_space");
    cJSON_AddTrueToObject(dec, "trim_offsets");
    cJSON_AddTrueToObject(dec, "use_regex");
    cJSON *mo = cJSON_AddObjectToObject(tj, "model");
    cJSON_AddStringToObject(mo, "type", "BPE");
    cJSON_AddNullToObject(mo, "dropout");
    if (unk_t) cJSON_AddStringToObject(mo, "unk_token", unk_t);
    else cJSON_AddNullToObject(mo, "unk_token");
    cJSON_AddNullToObject(mo, "continuing_subword_prefix");
    cJSON_AddNullToObject(mo, "end_of_word_suffix");
    cJSON_AddFalseToObject(mo, "fuse_unk");
    cJSON_AddFalseToObject(mo, "byte_fallback");
    cJSON_AddBoolToObject(mo, "ignore_merges", l3);
    cJSON *vocab = cJSON_AddObjectToObject(mo, "vocab");
    for (uint64_t i = 0; i < toks->arr_len; i++) {
        cJSON *s = str_item(&toks->strs[i]);
        if (!s) break;
        cJSON_AddNumberToObject(vocab, s->valuestring, (double)i);
        cJSON_Delete(s);
    }
    cJSON *ml = cJSON_AddArrayToObject(mo, "merges");
    for (uint64_t i = 0; i < merges->arr_len; i++) cJSON_AddItemToArray(ml, str_item(&merges->strs[i]));

    char p[4200];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    int rc = pl_json_write(p, tj, err);
    cJSON_Delete(tj);

    /* tokenizer_config.json and special_tokens_map.json */
    cJSON *tc = cJSON_CreateObject(), *sm = cJSON_CreateObject();
    cJSON_AddBoolToObject(tc, "add_bos_token", (int)add_bos);
    cJSON_AddFalseToObject(tc, "add_eos_token");
    const char *names[4] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    char *vals[4] = {bos_t, eos_t, unk_t, pad_t};
    for (int k = 0; k < 4; k++)
        if (vals[k]) {
            cJSON_AddStringToObject(tc, names[k], vals[k]);
            cJSON_AddStringToObject(sm, names[k], vals[k]);
        }
    char *tmpl = kv_str(g, "tokenizer.chat_template");
    if (tmpl) cJSON_AddStringToObject(tc, "chat_template", tmpl);
    free(tmpl);
    cJSON_AddFalseToObject(tc, "clean_up_tokenization_spaces");
    if (max_len > 0) cJSON_AddNumberToObject(tc, "model_max_length", (double)max_len);
    cJSON_AddStringToObject(tc, "tokenizer_class", "PreTrainedTokenizerFast");
    if (!rc) {
        snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
        rc = pl_json_write(p, tc, err);
    }
    if (!rc) {
        snprintf(p, sizeof p, "%s/special_tokens_map.json", dir);
        rc = pl_json_write(p, sm, err);
    }
    cJSON_Delete(tc);
    cJSON_Delete(sm);
    free(bos_t); free(eos_t); free(unk_t); free(pad_t);
    return rc;
}
