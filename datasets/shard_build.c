/* shard_build.c: `data build`: a JSONL file (pre-tokenized, plain text or
 * conversations) through the resumable shard writer. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../core/sha256.h"
#include "chat.h"
#include "import.h"
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

/* What a build knows beyond pl_build_opts: the import format of records that
 * are not pre-tokenized, the chat template and the mask. */
typedef struct bctx {
    const pl_build_opts *o;
    pl_build_chat c;
    pl_import_fmt fmt;  /* format of the file's non-pre-tokenized records (AUTO: per record) */
    const char *tmpl;   /* resolved template (built-in name or source), NULL = none */
    pl_chat_opts co;
    int special_checked;
} bctx;

static void bctx_init(bctx *b, const pl_build_opts *o, const pl_build_chat *c) {
    memset(b, 0, sizeof *b);
    b->o = o;
    if (c) b->c = *c;
    b->fmt = b->c.fmt;
    b->tmpl = b->c.tmpl ? b->c.tmpl : o->tok ? pl_tokenizer_chat_template(o->tok) : NULL;
    if (o->tok) pl_chat_opts_from_tokenizer(&b->co, o->tok);
    b->co.mask = b->c.mask;
    /* templates that call strftime_now see a fixed date: builds stay reproducible */
    b->co.fixed_time = 1;
    b->co.now = 1704067200; /* 2024-01-01T00:00:00Z */
}

static int is_chat_fmt(pl_import_fmt f) { return f == PL_FMT_OPENAI || f == PL_FMT_SHAREGPT || f == PL_FMT_ALPACA; }

static const char *builtin_list = "chatml, llama2, llama3, mistral, alpaca, vicuna, guanaco";

/* A record through the importer (forced to b->fmt unless AUTO), rendered,
 * tokenized with offsets and masked. *bad = 1 when the record itself is
 * unusable (the importer's reason, or the template refusing it): the caller
 * skips it; other failures (no tokenizer, no template, out of memory) are
 * fatal for the build. */
static int conv_record(bctx *b, const char *line, size_t len, const char *where, int32_t **ids_out, uint8_t **mask_out,
                       int64_t *n_out, char **text_out, uint64_t *sid_out, int *bad, pl_err *err) {
    pl_import_opts io = {.fmt = b->fmt, .keep_errors = 1, .one_record = 1};
    pl_import im;
    int rc = pl_import_buffer("", line, len, &io, &im, err);
    if (rc) {
        pl_import_free(&im);
        pl_err_prefix(err, "%s", where);
        return rc;
    }
    if (im.n != 1) {
        /* the importer names the record ":1: reason" (one-line buffer, empty name) */
        const char *why = im.n_errors ? im.errors[0] : "no record";
        if (!strncmp(why, ":1: ", 4)) why += 4;
        *bad = 1;
        rc = pl_err_set(err, PL_EFORMAT, "%s: %s", where, why);
        pl_import_free(&im);
        return rc;
    }
    const pl_example *e = &im.ex[0];
    const pl_tokenizer *tok = b->o->tok;
    pl_chat_text r = {0};
    pl_chat_tokens t = {0};
    if (!tok) {
        rc = pl_err_set(err, PL_EINVAL, "%s: %s records need a tokenizer (--model PATH)", where,
                        pl_import_fmt_name(e->fmt));
        goto out;
    }
    if (is_chat_fmt(e->fmt)) {
        if (!b->tmpl) {
            rc = pl_err_set(err, PL_EINVAL, "%s: %s records need a chat template and the tokenizer has none; pass --template "
                            "NAME (%s) or a template file", where, pl_import_fmt_name(e->fmt), builtin_list);
            goto out;
        }
        if (!b->special_checked) {
            if ((rc = pl_chat_check_special(tok, b->tmpl, &e->chat, &b->co, err))) {
                pl_err_prefix(err, "%s", where);
                goto out;
            }
            b->special_checked = 1;
        }
    }
    if ((rc = pl_example_render(e, b->tmpl, &b->co, &r, err)) || (rc = pl_chat_tokenize(tok, &r, &t, err))) {
        if (rc != PL_ENOMEM) *bad = 1;
        pl_err_prefix(err, "%s", where);
        goto out;
    }
    char *text = malloc(r.len + 1);
    if (!text) {
        rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", where);
        goto out;
    }
    memcpy(text, r.text, r.len);
    text[r.len] = 0;
    *sid_out = pl_sample_id(r.text, r.len);
    *ids_out = t.ids;
    *mask_out = t.mask;
    *n_out = t.n;
    *text_out = text;
    t.ids = NULL;
    t.mask = NULL;
out:
    pl_chat_tokens_free(&t);
    pl_chat_text_free(&r);
    pl_import_free(&im);
    return rc;
}

static int parse_rec_body(bctx *b, cJSON *j, const char *line, size_t len, const char *where, int32_t **ids_out,
                          uint8_t **mask_out, int64_t *n_out, char **text_out, uint64_t *sid_out, int *bad, pl_err *err);

/* parse_rec_body plus the record's provenance: the compact JSON of its
 * "_prov" value when that is an object (malloc'd into *prov_out), else NULL. */
static int parse_rec(bctx *b, const char *line, size_t len, const char *where, int32_t **ids_out, uint8_t **mask_out,
                     int64_t *n_out, char **text_out, uint64_t *sid_out, char **prov_out, int *bad, pl_err *err) {
    *prov_out = NULL;
    cJSON *j = cJSON_ParseWithLength(line, len);
    if (j && !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        j = NULL;
    }
    char *prov = NULL;
    const cJSON *jp = j ? cJSON_GetObjectItemCaseSensitive(j, "_prov") : NULL;
    if (cJSON_IsObject(jp) && !(prov = cJSON_PrintUnformatted(jp))) {
        cJSON_Delete(j);
        *ids_out = NULL;
        *mask_out = NULL;
        *n_out = 0;
        *text_out = NULL;
        *sid_out = 0;
        *bad = 0;
        return pl_err_set(err, PL_ENOMEM, "%s: out of memory", where);
    }
    int rc = parse_rec_body(b, j, line, len, where, ids_out, mask_out, n_out, text_out, sid_out, bad, err);
    if (rc) free(prov);
    else *prov_out = prov;
    return rc;
}

/* One record: pre-tokenized (input_ids), plain text (the tokenizer's BOS
 * rule, EOS appended) or anything the importer reads. j: the line parsed as
 * a JSON object, or NULL when it is not one (the importer then reports why);
 * taken over. */
static int parse_rec_body(bctx *b, cJSON *j, const char *line, size_t len, const char *where, int32_t **ids_out,
                          uint8_t **mask_out, int64_t *n_out, char **text_out, uint64_t *sid_out, int *bad, pl_err *err) {
    const pl_build_opts *o = b->o;
    *ids_out = NULL;
    *mask_out = NULL;
    *n_out = 0;
    *text_out = NULL;
    *sid_out = 0;
    *bad = 0;
    if (!j) return conv_record(b, line, len, where, ids_out, mask_out, n_out, text_out, sid_out, bad, err);
    int rc = PL_OK;
    int32_t *ids = NULL;
    uint8_t *mask = NULL;
    char *text = NULL;
    int64_t n = 0;
    int vocab = o->tok ? pl_tokenizer_vocab(o->tok) : 0;
    const cJSON *jt = cJSON_GetObjectItemCaseSensitive(j, "text");
    const cJSON *ji = cJSON_GetObjectItemCaseSensitive(j, "input_ids");
    if (jt && !cJSON_IsString(jt)) {
        if (ji) {
            rc = pl_err_set(err, PL_EFORMAT, "%s: \"text\": expected a string", where);
            goto out;
        }
        jt = NULL; /* the importer reports it */
    }
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
                int bit = cJSON_IsBool(e) ? cJSON_IsTrue(e) : cJSON_IsNumber(e) ? (int)e->valuedouble : -1;
                if (bit != 0 && bit != 1) {
                    rc = pl_err_set(err, PL_EFORMAT, "%s: loss_mask[%lld]: expected 0 or 1", where, (long long)i);
                    goto out;
                }
                mask[i++] = (uint8_t)bit;
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
    } else if (jt && (b->fmt == PL_FMT_AUTO || b->fmt == PL_FMT_TEXT) &&
               !cJSON_GetObjectItemCaseSensitive(j, "messages") && !cJSON_GetObjectItemCaseSensitive(j, "conversations")) {
        if (!o->tok) {
            rc = pl_err_set(err, PL_EINVAL, "%s: a \"text\" record needs a tokenizer (--model PATH)", where);
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
    } else {
        cJSON_Delete(j);
        return conv_record(b, line, len, where, ids_out, mask_out, n_out, text_out, sid_out, bad, err);
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

int pl_build_parse_line(const pl_build_opts *o, const char *line, size_t len, const char *where, int32_t **ids,
                        uint8_t **mask, int64_t *n, char **text, uint64_t *sample_id, pl_err *err) {
    bctx b;
    int bad;
    char *prov = NULL;
    bctx_init(&b, o, NULL);
    int rc = parse_rec(&b, line, len, where, ids, mask, n, text, sample_id, &prov, &bad, err);
    free(prov);
    return rc;
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* The file's format for records that are not pre-tokenized: forced, or what
 * the importer detects in the first line that is a JSON object (AUTO when that
 * object is pre-tokenized: then each other record is taken by its own keys).
 * Read from the start of the file, so a resumed build decides the same. */
static int detect_fmt(const char *path, pl_import_fmt forced, pl_import_fmt *out, pl_err *err) {
    *out = forced;
    if (forced != PL_FMT_AUTO) return PL_OK;
    FILE *fp = fopen(path, "rb");
    if (!fp) return pl_err_set(err, PL_EIO, "%s: cannot open: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = PL_OK;
    while ((len = getline(&line, &cap, fp)) > 0) {
        cJSON *j = cJSON_ParseWithLength(line, (size_t)len);
        int obj = j && cJSON_IsObject(j), pre = obj && cJSON_GetObjectItemCaseSensitive(j, "input_ids");
        cJSON_Delete(j);
        if (!obj) continue;
        if (!pre) {
            pl_import_opts io = {.fmt = PL_FMT_AUTO, .keep_errors = 1, .one_record = 1};
            pl_import im;
            rc = pl_import_buffer(path, line, (size_t)len, &io, &im, err);
            *out = im.fmt;
            pl_import_free(&im);
        }
        break;
    }
    free(line);
    fclose(fp);
    return rc;
}

/* One pass over the input: its sha256 (hex into sha) and whether any record
 * has a "_prov" object (*has_prov): such a dataset stores /provenance in
 * every shard. Only lines that could spell the key ("_prov" literally, or
 * any \u escape) are parsed. A function of the input alone, so a resumed
 * build decides the same. */
static int scan_input(const char *path, char sha[65], int *has_prov, pl_err *err) {
    *has_prov = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return pl_err_set(err, PL_EIO, "%s: cannot open: %s", path, strerror(errno));
    pl_sha256 *h = pl_sha256_new();
    if (!h) {
        fclose(fp);
        return pl_err_set(err, PL_ENOMEM, "out of memory");
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, fp)) > 0) {
        pl_sha256_update(h, line, (size_t)len);
        if (*has_prov || (!memmem(line, (size_t)len, "\"_prov\"", 7) && !memmem(line, (size_t)len, "\\u", 2))) continue;
        cJSON *j = cJSON_ParseWithLength(line, (size_t)len);
        if (j && cJSON_IsObject(j) && cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "_prov"))) *has_prov = 1;
        cJSON_Delete(j);
    }
    int rc = ferror(fp) ? pl_err_set(err, PL_EIO, "%s: read error", path) : PL_OK;
    uint8_t d[32];
    pl_sha256_final(h, d);
    pl_sha256_hex(d, sha);
    free(line);
    fclose(fp);
    return rc;
}

/* Keys of the manifest's provenance object the build writes itself. */
static const char *const own_prov_keys[] = {"created_by", "input", "input_sha256", "shard_tokens", "shard_bytes",
                                             "deflate", "eos_appended_to_text", "format", "mask", "template_sha256",
                                             "build_key", "skipped_records", "sample_provenance"};

static int check_prov_extra(const cJSON *x, pl_err *err) {
    if (!x) return PL_OK;
    if (!cJSON_IsObject(x)) return pl_err_set(err, PL_EINVAL, "build: provenance_extra: expected a JSON object");
    for (const cJSON *e = x->child; e; e = e->next)
        for (size_t k = 0; k < sizeof own_prov_keys / sizeof *own_prov_keys; k++)
            if (e->string && !strcmp(e->string, own_prov_keys[k]))
                return pl_err_set(err, PL_EINVAL,
                                  "build: provenance_extra: key \"%s\" is one the build records itself; use another name",
                                  e->string);
    return PL_OK;
}

static const char *mask_name(pl_mask_mode m) {
    return m == PL_MASK_ALL ? "all" : m == PL_MASK_LAST ? "last-assistant" : "assistant";
}

int pl_dataset_build(const pl_build_opts *o, pl_build_stats *st, pl_err *err) {
    return pl_dataset_build_chat(o, NULL, st, err);
}

int pl_dataset_build_chat(const pl_build_opts *o, const pl_build_chat *c, pl_build_stats *st, pl_err *err) {
    memset(st, 0, sizeof *st);
    uint8_t d[32];
    char in_sha[65], key[65], tmpl_sha[65] = "";
    int has_prov = 0;
    int rc = check_prov_extra(o->provenance_extra, err);
    if (rc) return rc;
    struct stat ist;
    if (stat(o->in_path, &ist) == 0 && S_ISDIR(ist.st_mode))
        return pl_err_set(err, PL_EINVAL, "%s: is a folder; the input is one JSONL file (one record per line)", o->in_path);
    if ((rc = scan_input(o->in_path, in_sha, &has_prov, err))) return rc;
    bctx b;
    bctx_init(&b, o, c);
    if ((rc = detect_fmt(o->in_path, b.c.fmt, &b.fmt, err))) return rc;
    /* the template is recorded when one is given or the records need one */
    const char *tname = o->template_name ? o->template_name : "";
    if (is_chat_fmt(b.fmt) || b.c.tmpl) {
        if (!o->tok)
            return pl_err_set(err, PL_EINVAL, "%s: %s records need a tokenizer (--model PATH)", o->in_path,
                              pl_import_fmt_name(b.fmt));
        if (!b.tmpl)
            return pl_err_set(err, PL_EINVAL, "%s: %s records need a chat template and the tokenizer has none; pass "
                              "--template NAME (%s) or a template file", o->in_path, pl_import_fmt_name(b.fmt), builtin_list);
        const char *src = pl_chat_builtin(b.tmpl) ? pl_chat_builtin(b.tmpl) : b.tmpl;
        pl_sha256_buf(src, strlen(src), d);
        pl_sha256_hex(d, tmpl_sha);
        if (!*tname) tname = !b.c.tmpl ? "model" : pl_chat_builtin(b.c.tmpl) ? b.c.tmpl : "custom";
    }
    const char *fmt_name = b.fmt == PL_FMT_AUTO ? "pre-tokenized" : pl_import_fmt_name(b.fmt);
    const char *mask_desc = is_chat_fmt(b.fmt) ? mask_name(b.c.mask)
                            : b.fmt == PL_FMT_IO ? "output"
                            : b.fmt == PL_FMT_TEXT ? "all" : "given";
    int level = o->deflate_level < 0 || o->deflate_level > 9 ? 4 : o->deflate_level;
    int64_t shard_tokens = o->shard_tokens > 0 ? o->shard_tokens : (int64_t)1 << 24;
    char kbuf[1024];
    snprintf(kbuf, sizeof kbuf,
             "potluck-build 1\nschema=%d\ninput_sha256=%s\ntokenizer_sha256=%s\ntemplate=%s\nshard_tokens=%lld\n"
             "shard_bytes=%lld\ndeflate=%d\ntext=%d\nno_eos=%d\nformat=%s\nmask=%s\ntemplate_sha256=%s\n",
             PL_DATASET_SCHEMA, in_sha, o->tokenizer_sha256 ? o->tokenizer_sha256 : "", tname,
             (long long)shard_tokens, (long long)o->shard_bytes, level, o->store_text, o->no_eos, fmt_name, mask_desc,
             tmpl_sha);
    pl_sha256_buf(kbuf, strlen(kbuf), d);
    pl_sha256_hex(d, key);
    memcpy(st->build_key, key, 65);
    pl_dsw_opts wo = {shard_tokens, o->shard_bytes, level, o->store_text, o->tokenizer_sha256 ? o->tokenizer_sha256 : "",
                      tname, o->tok ? pl_tokenizer_vocab(o->tok) : 0, key, has_prov};
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
    if (o->progress) pl_progress_start_at(o->progress, lineno);
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
        if (o->progress) pl_progress_update(o->progress, lineno);
        size_t k = 0;
        while (k < (size_t)len && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r' || line[k] == '\n')) k++;
        if (k == (size_t)len) continue; /* blank line */
        char where[4200];
        snprintf(where, sizeof where, "%s:%lld", o->in_path, (long long)lineno);
        int32_t *ids;
        uint8_t *mask;
        int64_t n;
        char *text, *prov;
        uint64_t sid;
        int bad;
        if ((rc = parse_rec(&b, line, (size_t)len, where, &ids, &mask, &n, &text, &sid, &prov, &bad, err))) {
            if (!bad) break;
            if (b.c.strict) {
                char m[sizeof err->msg];
                snprintf(m, sizeof m, "%s", err->msg);
                pl_err_set(err, PL_EFORMAT, "%.*s (strict mode)", (int)sizeof m - 20, m);
                break;
            }
            /* a bad record: reported, counted, skipped */
            st->bad++;
            if (b.c.on_bad) b.c.on_bad(b.c.ctx, err->msg);
            pl_err_clear(err);
            rc = PL_OK;
            pl_dsw_skip(w);
            continue;
        }
        pl_sample s = {ids, mask, n, sid, text, prov};
        rc = pl_dsw_add(w, &s, pos, lineno, err);
        free(ids);
        free(mask);
        free(text);
        free(prov);
        if (rc) break;
    }
    if (!rc && ferror(fp)) rc = pl_err_set(err, PL_EIO, "%s: read error", o->in_path);
    free(line);
    fclose(fp);
    if (!rc) {
        int64_t ns;
        pl_dsw_totals(w, &ns, NULL, NULL, NULL, NULL);
        if (ns == 0 && st->bad)
            rc = pl_err_set(err, PL_EFORMAT, "%s: no usable record: all %lld records were bad (reported above)",
                            o->in_path, (long long)st->bad);
        else if (ns == 0)
            rc = pl_err_set(err, PL_EFORMAT, "%s: 0 samples: the file is empty or holds only blank lines "
                            "(expected one JSON record per line)", o->in_path);
    }
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
            cJSON_AddStringToObject(prov, "format", fmt_name);
            cJSON_AddStringToObject(prov, "mask", mask_desc);
            cJSON_AddStringToObject(prov, "template_sha256", tmpl_sha);
            for (const cJSON *e = o->provenance_extra ? o->provenance_extra->child : NULL; e; e = e->next)
                if (e->string) cJSON_AddItemToObject(prov, e->string, cJSON_Duplicate(e, 1));
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
                 "- template: %s%s%s%s\n"
                 "- format: %s; loss mask: %s\n"
                 "- samples: %lld, tokens: %lld, trained tokens: %lld (%.1f%%)\n"
                 "- records skipped (bad, or without tokens): %lld\n"
                 "- filters applied: none at build time (a recipe's pipeline records its own)\n"
                 "%s"
                 "- license: that of the source data (not recorded by `data build`)\n"
                 "- build key: %s\n",
                 when, PL_CREATED_BY, base_name(o->in_path), in_sha,
                 o->tokenizer_sha256 && *o->tokenizer_sha256 ? o->tokenizer_sha256 : "(none)",
                 *tname ? tname : "(none)", *tmpl_sha ? " (sha256 " : "", tmpl_sha, *tmpl_sha ? ")" : "", fmt_name,
                 mask_desc, (long long)ns, (long long)nt,
                 (long long)nr, nt ? 100.0 * (double)nr / (double)nt : 0.0, (long long)sk,
                 has_prov ? "- sample provenance: one JSON object per sample in each shard's /provenance "
                            "(the record's `_prov`: source file and line or generator and seed, filters passed; "
                            "\"\" for records without one)\n" : "",
                 key);
        /* card.md: the build's lines, then the caller's (a recipe's pipeline and filter counts) */
        char *full = NULL;
        if (o->card_extra && *o->card_extra) {
            size_t a = strlen(card), x = strlen(o->card_extra);
            full = malloc(a + x + 3);
            if (full) {
                memcpy(full, card, a);
                full[a] = '\n';
                memcpy(full + a + 1, o->card_extra, x);
                if (o->card_extra[x - 1] != '\n') full[a + 1 + x++] = '\n';
                full[a + 1 + x] = 0;
            }
        }
        if (o->card_extra && *o->card_extra && !full) {
            cJSON_Delete(prov);
            rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory for the dataset card", o->out_dir);
        } else {
            rc = pl_dsw_finish(w, prov, full ? full : card, err);
        }
        free(full);
        pl_dsw_totals(w, &st->samples, &st->tokens, &st->trained, &st->shards, &st->skipped);
    }
    pl_dsw_free(w);
    return rc;
}
