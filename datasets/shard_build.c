/* shard_build.c: `data build`: a JSONL file (pre-tokenized, plain text or
 * conversations) through the resumable shard writer. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/sha256.h"
#include "shard_writer.h"

/* sample_id of a pre-tokenized record without text: sha256 of the ids as
 * little-endian int32 followed by the mask bytes. */
static uint64_t ids_sample_id(const int32_t *ids, const uint8_t *mask, int64_t n) {
    pl_sha256 *h = pl_sha256_new();
    uint8_t d[32];
    if (!h) return 0;
    uint8_t buf[4096];
    size_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)ids[i];
        buf[k++] = (uint8_t)v;
        buf[k++] = (uint8_t)(v >> 8);
        buf[k++] = (uint8_t)(v >> 16);
        buf[k++] = (uint8_t)(v >> 24);
        if (k == sizeof buf) {
            pl_sha256_update(h, buf, k);
            k = 0;
        }
    }
    pl_sha256_update(h, buf, k);
    if (mask) pl_sha256_update(h, mask, (size_t)n);
    pl_sha256_final(h, d);
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | d[i];
    return v;
}

int pl_build_parse_line(const pl_build_opts *o, const char *line, size_t len, const char *where, int32_t **ids_out,
                        uint8_t **mask_out, int64_t *n_out, char **text_out, uint64_t *sid_out, pl_err *err) {
    *ids_out = NULL;
    *mask_out = NULL;
    *n_out = 0;
    *text_out = NULL;
    *sid_out = 0;
    cJSON *j = cJSON_ParseWithLength(line, len);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return pl_err_set(err, PL_EFORMAT, "%s: expected one JSON object per line", where);
    }
    int rc = PL_OK;
    int32_t *ids = NULL;
    uint8_t *mask = NULL;
    char *text = NULL;
    int64_t n = 0;
    int vocab = o->tok ? pl_tokenizer_vocab(o->tok) : 0;
    const cJSON *jt = cJSON_GetObjectItemCaseSensitive(j, "text");
    if (jt && !cJSON_IsString(jt)) {
        rc = pl_err_set(err, PL_EFORMAT, "%s: \"text\": expected a string", where);
        goto out;
    }
    const cJSON *ji = cJSON_GetObjectItemCaseSensitive(j, "input_ids");
    if (ji) {
        if (!cJSON_IsArray(ji)) {
            rc = pl_err_set(err, PL_EFORMAT, "%s: \"input_ids\": expected an array of token ids", where);
            goto out;
        }
        n = cJSON_GetArraySize(ji);
        ids = malloc(sizeof *ids * (size_t)(n ? n : 1));
        mask = malloc((size_t)(n ? n : 1));
        if (!ids || !mask) {
            rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", where);
            goto out;
        }
        int64_t i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, ji) {
            double v = cJSON_IsNumber(e) ? e->valuedouble : -1;
            if (!cJSON_IsNumber(e) || v != (double)(int64_t)v || v < 0 || v > INT32_MAX || (vocab && v >= vocab)) {
                rc = pl_err_set(err, PL_EFORMAT, "%s: input_ids[%lld]: expected a token id in [0, %d), got %s", where,
                                (long long)i, vocab ? vocab : INT32_MAX, cJSON_IsNumber(e) ? "a number outside it" : "a non-number");
                goto out;
            }
            ids[i++] = (int32_t)v;
        }
        const cJSON *jm = cJSON_GetObjectItemCaseSensitive(j, "loss_mask");
        if (jm) {
            if (!cJSON_IsArray(jm) || cJSON_GetArraySize(jm) != n) {
                rc = pl_err_set(err, PL_EFORMAT, "%s: \"loss_mask\": expected an array of %lld 0/1 values (one per id)",
                                where, (long long)n);
                goto out;
            }
            i = 0;
            cJSON_ArrayForEach(e, jm) {
                int b = cJSON_IsBool(e) ? cJSON_IsTrue(e) : cJSON_IsNumber(e) ? (int)e->valuedouble : -1;
                if (b != 0 && b != 1) {
                    rc = pl_err_set(err, PL_EFORMAT, "%s: loss_mask[%lld]: expected 0 or 1", where, (long long)i);
                    goto out;
                }
                mask[i++] = (uint8_t)b;
            }
        } else {
            memset(mask, 1, (size_t)n);
        }
        if (jt) {
            text = strdup(jt->valuestring);
            if (!text) {
                rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", where);
                goto out;
            }
            *sid_out = pl_sample_id(text, strlen(text));
        } else {
            *sid_out = ids_sample_id(ids, mask, n);
        }
    } else if (jt) {
        if (!o->tok) {
            rc = pl_err_set(err, PL_EINVAL, "%s: a \"text\" record needs a tokenizer (--tokenizer PATH)", where);
            goto out;
        }
        const char *s = jt->valuestring;
        int nn = 0;
        if (!*s) goto out; /* empty text: no sample (counted as skipped) */
        if ((rc = pl_tokenizer_encode(o->tok, s, strlen(s), pl_tokenizer_add_bos(o->tok), 0, &ids, &nn, err))) {
            pl_err_prefix(err, "%s", where);
            goto out;
        }
        int eos = o->no_eos ? -1 : pl_tokenizer_eos(o->tok);
        n = nn + (eos >= 0 && nn > 0 ? 1 : 0);
        if (n > nn) {
            int32_t *q = realloc(ids, sizeof *ids * (size_t)n);
            if (!q) {
                rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", where);
                goto out;
            }
            ids = q;
            ids[nn] = eos;
        }
        mask = malloc((size_t)(n ? n : 1));
        text = strdup(s);
        if (!mask || !text) {
            rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", where);
            goto out;
        }
        memset(mask, 1, (size_t)n);
        /* a BOS the tokenizer put first is context, never a target */
        if (n > 0 && pl_tokenizer_bos(o->tok) >= 0 && ids[0] == pl_tokenizer_bos(o->tok) && pl_tokenizer_add_bos(o->tok))
            mask[0] = 0;
        *sid_out = pl_sample_id(s, strlen(s));
    } else if (cJSON_GetObjectItemCaseSensitive(j, "messages") || cJSON_GetObjectItemCaseSensitive(j, "conversations")) {
        rc = pl_err_set(err, PL_EUNSUPPORTED,
                        "%s: conversation records need the chat template importer, which this build does not have yet; "
                        "give pre-tokenized {\"input_ids\": [...], \"loss_mask\": [...]} or {\"text\": ...} lines",
                        where);
        goto out;
    } else {
        rc = pl_err_set(err, PL_EFORMAT, "%s: expected \"input_ids\" (pre-tokenized), \"text\" or \"messages\"", where);
        goto out;
    }
out:
    cJSON_Delete(j);
    if (rc) {
        free(ids);
        free(mask);
        free(text);
        return rc;
    }
    *ids_out = ids;
    *mask_out = mask;
    *n_out = n;
    *text_out = text;
    return PL_OK;
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

int pl_dataset_build(const pl_build_opts *o, pl_build_stats *st, pl_err *err) {
    memset(st, 0, sizeof *st);
    uint8_t d[32];
    char in_sha[65], key[65];
    int rc = pl_sha256_file(o->in_path, d, err);
    if (rc) return rc;
    pl_sha256_hex(d, in_sha);
    int level = o->deflate_level < 0 || o->deflate_level > 9 ? 4 : o->deflate_level;
    int64_t shard_tokens = o->shard_tokens > 0 ? o->shard_tokens : (int64_t)1 << 24;
    char kbuf[1024];
    snprintf(kbuf, sizeof kbuf,
             "potluck-build 1\nschema=%d\ninput_sha256=%s\ntokenizer_sha256=%s\ntemplate=%s\nshard_tokens=%lld\n"
             "shard_bytes=%lld\ndeflate=%d\ntext=%d\nno_eos=%d\n",
             PL_DATASET_SCHEMA, in_sha, o->tokenizer_sha256 ? o->tokenizer_sha256 : "",
             o->template_name ? o->template_name : "", (long long)shard_tokens, (long long)o->shard_bytes, level,
             o->store_text, o->no_eos);
    pl_sha256_buf(kbuf, strlen(kbuf), d);
    pl_sha256_hex(d, key);
    memcpy(st->build_key, key, 65);
    pl_dsw_opts wo = {shard_tokens, o->shard_bytes, level, o->store_text, o->tokenizer_sha256 ? o->tokenizer_sha256 : "",
                      o->template_name ? o->template_name : "", o->tok ? pl_tokenizer_vocab(o->tok) : 0, key};
    pl_dsw *w;
    if ((rc = pl_dsw_open(&w, o->out_dir, &wo, err))) return rc;
    if (pl_dsw_complete(w)) {
        st->already_complete = 1;
        pl_manifest *m;
        if (!pl_manifest_load(&m, o->out_dir, err)) {
            st->samples = m->samples;
            st->tokens = m->tokens;
            st->trained = m->trained;
            st->shards = st->shards_kept = m->n_shards;
            pl_manifest_free(m);
        }
        pl_dsw_free(w);
        return PL_OK;
    }
    int64_t pos = 0, lineno = 0;
    pl_dsw_resume_pos(w, &pos, &lineno, &st->shards_kept);
    FILE *fp = fopen(o->in_path, "rb");
    if (!fp) {
        rc = pl_err_set(err, PL_EIO, "%s: cannot open: %s", o->in_path, strerror(errno));
        pl_dsw_free(w);
        return rc;
    }
    if (pos && fseeko(fp, (off_t)pos, SEEK_SET) != 0) {
        rc = pl_err_set(err, PL_EIO, "%s: cannot seek to %lld: %s", o->in_path, (long long)pos, strerror(errno));
        fclose(fp);
        pl_dsw_free(w);
        return rc;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, fp)) > 0) {
        pos += len;
        lineno++;
        size_t k = 0;
        while (k < (size_t)len && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r' || line[k] == '\n')) k++;
        if (k == (size_t)len) continue; /* blank line */
        char where[4200];
        snprintf(where, sizeof where, "%s:%lld", o->in_path, (long long)lineno);
        int32_t *ids;
        uint8_t *mask;
        int64_t n;
        char *text;
        uint64_t sid;
        if ((rc = pl_build_parse_line(o, line, (size_t)len, where, &ids, &mask, &n, &text, &sid, err))) break;
        pl_sample s = {ids, mask, n, sid, text};
        rc = pl_dsw_add(w, &s, pos, lineno, err);
        free(ids);
        free(mask);
        free(text);
        if (rc) break;
    }
    if (!rc && ferror(fp)) rc = pl_err_set(err, PL_EIO, "%s: read error", o->in_path);
    free(line);
    fclose(fp);
    if (!rc) {
        cJSON *prov = cJSON_CreateObject();
        if (prov) {
            cJSON_AddStringToObject(prov, "created_by", PL_CREATED_BY);
            cJSON_AddStringToObject(prov, "input", base_name(o->in_path));
            cJSON_AddStringToObject(prov, "input_sha256", in_sha);
            cJSON_AddNumberToObject(prov, "shard_tokens", (double)shard_tokens);
            cJSON_AddNumberToObject(prov, "shard_bytes", (double)o->shard_bytes);
            cJSON_AddNumberToObject(prov, "deflate", level);
            cJSON_AddBoolToObject(prov, "eos_appended_to_text", !o->no_eos);
        }
        int64_t ns, nt, nr, sk;
        int nsh;
        pl_dsw_totals(w, &ns, &nt, &nr, &nsh, &sk);
        char card[8192], when[64];
        time_t now = time(NULL);
        struct tm tmv;
        gmtime_r(&now, &tmv);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tmv);
        snprintf(card, sizeof card,
                 "# Dataset card\n\n"
                 "- built: %s by %s (this time stamp lives here only; manifest.json and the shards hold none)\n"
                 "- source: `%s` (sha256 %s)\n"
                 "- tokenizer sha256: %s\n"
                 "- template: %s\n"
                 "- samples: %lld, tokens: %lld, trained tokens: %lld (%.1f%%)\n"
                 "- records without tokens skipped: %lld\n"
                 "- filters applied: none at build time (a recipe's pipeline records its own)\n"
                 "- license: that of the source data (not recorded by `data build`)\n"
                 "- build key: %s\n",
                 when, PL_CREATED_BY, base_name(o->in_path), in_sha,
                 o->tokenizer_sha256 && *o->tokenizer_sha256 ? o->tokenizer_sha256 : "(none)",
                 o->template_name && *o->template_name ? o->template_name : "(none)", (long long)ns, (long long)nt,
                 (long long)nr, nt ? 100.0 * (double)nr / (double)nt : 0.0, (long long)sk, key);
        rc = pl_dsw_finish(w, prov, card, err);
        pl_dsw_totals(w, &st->samples, &st->tokens, &st->trained, &st->shards, &st->skipped);
    }
    pl_dsw_free(w);
    return rc;
}
