/* manifest.c: reading, writing and checking a dataset's manifest.json. */
#include "manifest.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/json.h"
#include "../core/sha256.h"

int pl_dataset_path(char *buf, size_t cap, const char *dir, const char *name) {
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    return n > 0 && (size_t)n < cap;
}

void pl_manifest_free(pl_manifest *m) {
    if (!m) return;
    for (int i = 0; i < m->n_shards; i++) free(m->shards[i].file);
    free(m->shards);
    free(m->tokenizer_sha256);
    free(m->template_name);
    cJSON_Delete(m->provenance);
    free(m);
}

const char *pl_manifest_build_key(const pl_manifest *m) {
    const cJSON *k = m->provenance ? cJSON_GetObjectItemCaseSensitive(m->provenance, "build_key") : NULL;
    return cJSON_IsString(k) ? k->valuestring : "";
}

static int is_hex64(const char *s) {
    if (strlen(s) != 64) return 0;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

/* A shard file name must stay inside the directory. */
static int safe_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 200 || s[0] == '.') return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '/' || s[i] == '\\' || (unsigned char)s[i] < 0x20) return 0;
    return 1;
}

static int nonneg(const cJSON *o, const char *key, const char *where, int64_t *out, pl_err *err) {
    int rc = pl_json_int(o, key, where, out, err);
    if (rc) return rc;
    if (*out < 0) return pl_err_set(err, PL_EFORMAT, "%s: %s: expected a count >= 0, got %lld", where, key, (long long)*out);
    return PL_OK;
}

int pl_manifest_load(pl_manifest **out, const char *dir, pl_err *err) {
    *out = NULL;
    char path[4096];
    if (!pl_dataset_path(path, sizeof path, dir, PL_MANIFEST_NAME))
        return pl_err_set(err, PL_EINVAL, "%s: path too long", dir);
    struct stat stt;
    if (stat(path, &stt) != 0)
        return pl_err_set(err, errno == ENOENT ? PL_ENOTFOUND : PL_EIO, "%s: %s (is %s a potluck dataset directory?)",
                          path, strerror(errno), dir);
    cJSON *j = NULL;
    int rc = pl_json_load(path, 64u << 20, &j, err);
    if (rc) return rc;
    pl_manifest *m = calloc(1, sizeof *m);
    if (!m) {
        cJSON_Delete(j);
        return pl_err_set(err, PL_ENOMEM, "%s: out of memory", path);
    }
    const char *fmt = NULL, *ts = NULL, *tm = NULL;
    if (!cJSON_IsObject(j)) {
        rc = pl_err_set(err, PL_EFORMAT, "%s: expected a JSON object", path);
        goto out;
    }
    if ((rc = pl_json_str(j, "format", path, &fmt, err))) goto out;
    if (strcmp(fmt, "potluck-dataset")) {
        rc = pl_err_set(err, PL_EFORMAT, "%s: format is \"%s\", expected \"potluck-dataset\"", path, fmt);
        goto out;
    }
    if ((rc = pl_json_int(j, "schema", path, &m->schema, err))) goto out;
    if (m->schema != PL_DATASET_SCHEMA) {
        rc = pl_err_set(err, PL_EUNSUPPORTED,
                        "%s: dataset schema version %lld is not one this potluck reads (it reads version %d); "
                        "upgrade potluck or rebuild the dataset", path, (long long)m->schema, PL_DATASET_SCHEMA);
        goto out;
    }
    if ((rc = pl_json_str(j, "tokenizer_sha256", path, &ts, err)) || (rc = pl_json_str(j, "template", path, &tm, err)))
        goto out;
    if (*ts && !is_hex64(ts)) {
        rc = pl_err_set(err, PL_EFORMAT, "%s: tokenizer_sha256: expected 64 hex digits or \"\", got \"%.80s\"", path, ts);
        goto out;
    }
    m->tokenizer_sha256 = strdup(ts);
    m->template_name = strdup(tm);
    if (!m->tokenizer_sha256 || !m->template_name) {
        rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    if ((rc = pl_json_int_opt(j, "vocab", path, &m->vocab, err)) || (rc = pl_json_bool_opt(j, "text", path, &m->has_text, err)))
        goto out;
    if (m->vocab < 0 || m->vocab > (1 << 30)) {
        rc = pl_err_set(err, PL_EFORMAT, "%s: vocab %lld is out of range", path, (long long)m->vocab);
        goto out;
    }
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(j, "shards");
    if (!cJSON_IsArray(sh)) {
        rc = pl_err_set(err, PL_EFORMAT, "%s: shards: expected an array", path);
        goto out;
    }
    int n = cJSON_GetArraySize(sh);
    m->shards = calloc((size_t)(n ? n : 1), sizeof *m->shards);
    if (!m->shards) {
        rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    int64_t ss = 0, st = 0, sr = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, sh) {
        char where[4200];
        snprintf(where, sizeof where, "%s: shards[%d]", path, m->n_shards);
        pl_manifest_shard *s = &m->shards[m->n_shards];
        const char *file = NULL, *sha = NULL;
        if (!cJSON_IsObject(e)) {
            rc = pl_err_set(err, PL_EFORMAT, "%s: expected an object", where);
            goto out;
        }
        if ((rc = pl_json_str(e, "file", where, &file, err)) || (rc = pl_json_str(e, "sha256", where, &sha, err)))
            goto out;
        if (!safe_name(file)) {
            rc = pl_err_set(err, PL_EFORMAT, "%s: file \"%.80s\" is not a plain file name in the dataset directory",
                            where, file);
            goto out;
        }
        if (!is_hex64(sha)) {
            rc = pl_err_set(err, PL_EFORMAT, "%s: sha256: expected 64 lowercase hex digits", where);
            goto out;
        }
        if ((rc = nonneg(e, "bytes", where, &s->bytes, err)) || (rc = nonneg(e, "samples", where, &s->samples, err)) ||
            (rc = nonneg(e, "tokens", where, &s->tokens, err)) ||
            (rc = nonneg(e, "trained_tokens", where, &s->trained, err)))
            goto out;
        if (s->trained > s->tokens) {
            rc = pl_err_set(err, PL_EFORMAT, "%s: trained_tokens %lld > tokens %lld", where, (long long)s->trained,
                            (long long)s->tokens);
            goto out;
        }
        s->file = strdup(file);
        memcpy(s->sha256, sha, 65);
        m->n_shards++;
        if (!s->file) {
            rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", path);
            goto out;
        }
        if (__builtin_add_overflow(ss, s->samples, &ss) || __builtin_add_overflow(st, s->tokens, &st) ||
            __builtin_add_overflow(sr, s->trained, &sr)) {
            rc = pl_err_set(err, PL_ERANGE, "%s: counts overflow", where);
            goto out;
        }
        for (int k = 0; k < m->n_shards - 1; k++)
            if (!strcmp(m->shards[k].file, file)) {
                rc = pl_err_set(err, PL_EFORMAT, "%s: file \"%s\" is listed twice", where, file);
                goto out;
            }
    }
    const cJSON *tot = cJSON_GetObjectItemCaseSensitive(j, "totals");
    if (!cJSON_IsObject(tot)) {
        rc = pl_err_set(err, PL_EFORMAT, "%s: totals: expected an object", path);
        goto out;
    }
    char tw[4200];
    snprintf(tw, sizeof tw, "%s: totals", path);
    if ((rc = nonneg(tot, "samples", tw, &m->samples, err)) || (rc = nonneg(tot, "tokens", tw, &m->tokens, err)) ||
        (rc = nonneg(tot, "trained_tokens", tw, &m->trained, err)))
        goto out;
    if (m->samples != ss || m->tokens != st || m->trained != sr) {
        rc = pl_err_set(err, PL_EFORMAT,
                        "%s: totals (%lld samples, %lld tokens, %lld trained) differ from the sum over shards "
                        "(%lld, %lld, %lld)", path, (long long)m->samples, (long long)m->tokens, (long long)m->trained,
                        (long long)ss, (long long)st, (long long)sr);
        goto out;
    }
    const cJSON *prov = cJSON_GetObjectItemCaseSensitive(j, "provenance");
    if (prov && !cJSON_IsNull(prov)) {
        m->provenance = cJSON_Duplicate(prov, 1);
        if (!m->provenance) {
            rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", path);
            goto out;
        }
    }
out:
    cJSON_Delete(j);
    if (rc) pl_manifest_free(m);
    else *out = m;
    return rc;
}

int pl_manifest_save(const pl_manifest *m, const char *dir, pl_err *err) {
    char path[4096];
    if (!pl_dataset_path(path, sizeof path, dir, PL_MANIFEST_NAME))
        return pl_err_set(err, PL_EINVAL, "%s: path too long", dir);
    cJSON *j = cJSON_CreateObject();
    if (!j) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", path);
    cJSON_AddStringToObject(j, "format", "potluck-dataset");
    cJSON_AddNumberToObject(j, "schema", (double)PL_DATASET_SCHEMA);
    cJSON_AddStringToObject(j, "tokenizer_sha256", m->tokenizer_sha256 ? m->tokenizer_sha256 : "");
    cJSON_AddStringToObject(j, "template", m->template_name ? m->template_name : "");
    cJSON_AddNumberToObject(j, "vocab", (double)m->vocab);
    cJSON_AddBoolToObject(j, "text", m->has_text);
    cJSON *arr = cJSON_AddArrayToObject(j, "shards");
    for (int i = 0; arr && i < m->n_shards; i++) {
        const pl_manifest_shard *s = &m->shards[i];
        cJSON *o = cJSON_CreateObject();
        if (!o) break;
        cJSON_AddStringToObject(o, "file", s->file);
        cJSON_AddStringToObject(o, "sha256", s->sha256);
        cJSON_AddNumberToObject(o, "bytes", (double)s->bytes);
        cJSON_AddNumberToObject(o, "samples", (double)s->samples);
        cJSON_AddNumberToObject(o, "tokens", (double)s->tokens);
        cJSON_AddNumberToObject(o, "trained_tokens", (double)s->trained);
        cJSON_AddItemToArray(arr, o);
    }
    cJSON *tot = cJSON_AddObjectToObject(j, "totals");
    if (tot) {
        cJSON_AddNumberToObject(tot, "samples", (double)m->samples);
        cJSON_AddNumberToObject(tot, "tokens", (double)m->tokens);
        cJSON_AddNumberToObject(tot, "trained_tokens", (double)m->trained);
    }
    if (m->provenance) cJSON_AddItemToObject(j, "provenance", cJSON_Duplicate(m->provenance, 1));
    int rc = pl_json_write(path, j, err);
    cJSON_Delete(j);
    return rc;
}

int pl_manifest_check_shard(const pl_manifest *m, const char *dir, int i, pl_err *err) {
    const pl_manifest_shard *s = &m->shards[i];
    char path[4096];
    if (!pl_dataset_path(path, sizeof path, dir, s->file)) return pl_err_set(err, PL_EINVAL, "%s: path too long", dir);
    struct stat st;
    if (stat(path, &st) != 0)
        return pl_err_set(err, errno == ENOENT ? PL_ENOTFOUND : PL_EIO, "%s: shard named in the manifest: %s", path,
                          strerror(errno));
    if (!S_ISREG(st.st_mode)) return pl_err_set(err, PL_EFORMAT, "%s: not a regular file", path);
    if ((int64_t)st.st_size != s->bytes)
        return pl_err_set(err, PL_EFORMAT, "%s: size %lld bytes, the manifest says %lld (truncated or replaced)", path,
                          (long long)st.st_size, (long long)s->bytes);
    uint8_t d[32];
    int rc = pl_sha256_file(path, d, err);
    if (rc) return rc;
    char hex[65];
    pl_sha256_hex(d, hex);
    if (strcmp(hex, s->sha256))
        return pl_err_set(err, PL_EFORMAT, "%s: sha256 %s does not match the manifest's %s (the shard is damaged)", path,
                          hex, s->sha256);
    return PL_OK;
}

int pl_manifest_open_shard(const pl_manifest *m, const char *dir, int i, int trust, pl_shard **out, pl_err *err) {
    *out = NULL;
    if (i < 0 || i >= m->n_shards) return pl_err_set(err, PL_EINVAL, "%s: no shard %d", dir, i);
    int rc;
    if (!trust && (rc = pl_manifest_check_shard(m, dir, i, err))) return rc;
    const pl_manifest_shard *ms = &m->shards[i];
    char path[4096];
    if (!pl_dataset_path(path, sizeof path, dir, ms->file)) return pl_err_set(err, PL_EINVAL, "%s: path too long", dir);
    pl_shard *s;
    if ((rc = pl_shard_open(&s, path, err))) return rc;
    if (pl_shard_samples(s) != ms->samples || pl_shard_tokens(s) != ms->tokens) {
        rc = pl_err_set(err, PL_EFORMAT, "%s: holds %lld samples and %lld tokens, the manifest says %lld and %lld", path,
                        (long long)pl_shard_samples(s), (long long)pl_shard_tokens(s), (long long)ms->samples,
                        (long long)ms->tokens);
    } else if (strcmp(pl_shard_tokenizer_sha256(s), m->tokenizer_sha256)) {
        rc = pl_err_set(err, PL_EFORMAT, "%s: tokenizer_sha256 attribute \"%.64s\" differs from the manifest's \"%s\"",
                        path, pl_shard_tokenizer_sha256(s), m->tokenizer_sha256);
    }
    if (rc) pl_shard_close(s);
    else *out = s;
    return rc;
}
