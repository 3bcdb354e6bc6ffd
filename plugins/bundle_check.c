/* bundle_check.c: checking a bundle's entries against its lock as they come
 * (from an archive or a directory), before any byte of an entry is trusted:
 * the lock first (its own digest, its subjects), then each entry's name,
 * size and sha256, then what is missing; the signature last. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/sha256.h"
#include "bundle_int.h"

static int is_hex64(const char *s) {
    if (!s || strlen(s) != 64) return 0;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

int bnd_check_lock(bnd_check *c, char *lock, size_t n, pl_err *err) {
    c->lock_bytes = lock;
    c->lock_len = n;
    c->files = 1;
    c->bytes = (int64_t)n;
    int rc = bnd_lock_check(lock, n, err);
    if (rc) return rc;
    c->lock = cJSON_ParseWithLength(lock, n);
    if (!c->lock) return pl_err_set(err, PL_EFORMAT, PL_BUNDLE_LOCK ": not valid JSON");
    const cJSON *subj = cJSON_GetObjectItem(c->lock, "subject"), *s;
    if (!cJSON_IsArray(subj)) return pl_err_set(err, PL_EFORMAT, PL_BUNDLE_LOCK ": no subject list");
    if (cJSON_GetArraySize(subj) > BND_MAX_FILES)
        return pl_err_set(err, PL_ERANGE, PL_BUNDLE_LOCK ": %d subjects, more than %d", cJSON_GetArraySize(subj), BND_MAX_FILES);
    int64_t total = 0;
    cJSON_ArrayForEach(s, subj) {
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(s, "name"));
        const char *sha = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(s, "digest"), "sha256"));
        const cJSON *sz = cJSON_GetObjectItem(cJSON_GetObjectItem(s, "annotations"), "size");
        if (!name || !bnd_name_ok(name) || !strcmp(name, PL_BUNDLE_LOCK) || !strcmp(name, PL_BUNDLE_SIG))
            return pl_err_set(err, PL_EFORMAT, PL_BUNDLE_LOCK ": subject name '%s' is not a safe relative file name", name ? name : "(none)");
        if (!is_hex64(sha)) return pl_err_set(err, PL_EFORMAT, PL_BUNDLE_LOCK ": %s: sha256 is not 64 lowercase hex digits", name);
        if (!cJSON_IsNumber(sz) || sz->valuedouble < 0 || sz->valuedouble > 1e15 || sz->valuedouble != (double)(int64_t)sz->valuedouble)
            return pl_err_set(err, PL_EFORMAT, PL_BUNDLE_LOCK ": %s: annotations.size is not a byte count", name);
        if ((rc = bnd_list_add(&c->want, name, NULL, NULL, 0, err))) return rc;
        bnd_file *f = &c->want.v[c->want.n - 1];
        memcpy(f->sha, sha, 65);
        f->size = (int64_t)sz->valuedouble;
        total += f->size;
    }
    bnd_list_sort(&c->want);
    for (int i = 1; i < c->want.n; i++)
        if (!strcmp(c->want.v[i - 1].name, c->want.v[i].name))
            return pl_err_set(err, PL_EFORMAT, PL_BUNDLE_LOCK ": lists %s twice", c->want.v[i].name);
    c->max_bytes = total + (int64_t)n + BND_MAX_SIG;
    return PL_OK;
}

bnd_file *bnd_check_entry(bnd_check *c, const char *name, int64_t size, pl_err *err) {
    if (!bnd_name_ok(name)) {
        pl_err_set(err, PL_EFORMAT, "entry '%s': unsafe name (absolute, empty, '.' or '..' component, or control characters): refused", name);
        return NULL;
    }
    if (++c->files > (int64_t)c->want.n + 2) {
        pl_err_set(err, PL_ERANGE, "entry '%s': more entries than the lock declares (%d files): refused", name, c->want.n);
        return NULL;
    }
    if (!strcmp(name, PL_BUNDLE_LOCK)) {
        pl_err_set(err, PL_EFORMAT, "entry '%s': a second lock: duplicate entry refused", name);
        return NULL;
    }
    bnd_file *f = bnd_list_find(&c->want, name);
    if (!f) {
        pl_err_set(err, PL_EFORMAT, "entry '%s': not in the lock: refused", name);
        return NULL;
    }
    if (f->seen) {
        pl_err_set(err, PL_EFORMAT, "entry '%s': duplicate entry refused", name);
        return NULL;
    }
    if (size != f->size) {
        pl_err_set(err, PL_EFORMAT, "entry '%s': %lld bytes, the lock says %lld%s", name, (long long)size, (long long)f->size,
                   size > f->size ? " (larger than declared: refused)" : "");
        return NULL;
    }
    if (c->bytes + size > c->max_bytes) {
        pl_err_set(err, PL_ERANGE, "entry '%s': more bytes than the lock declares: refused", name);
        return NULL;
    }
    c->bytes += size;
    f->seen = 1;
    return f;
}

int bnd_check_done(bnd_check *c, pl_err *err) {
    for (int i = 0; i < c->want.n; i++)
        if (!c->want.v[i].seen) return pl_err_set(err, PL_ENOTFOUND, "%s: in the lock but missing from the bundle", c->want.v[i].name);
    return PL_OK;
}

/* The signature covers exactly the lock and the lock's subjects. */
int bnd_check_sig(bnd_check *c, const char *pubkey, pl_bundle_stats *st, pl_err *err) {
    if (c->sig && st) bnd_sig_hint(c->sig, c->sig_len, st->signer);
    if (!pubkey) return PL_OK;
    if (!c->sig) return pl_err_set(err, PL_ENOTFOUND, "not signed (no %s) but --key was given", PL_BUNDLE_SIG);
    bnd_list got = {0};
    char **ign = NULL;
    int nign = 0;
    char signer[65] = "";
    int rc = bnd_sig_verify(pubkey, c->sig, c->sig_len, &got, &ign, &nign, signer, err);
    for (int i = 0; i < nign; i++) free(ign[i]);
    free(ign);
    if (rc) { bnd_list_free(&got); return rc; }
    /* expected: the lock + every subject */
    char lsha[65];
    uint8_t d[32];
    pl_sha256_buf(c->lock_bytes, c->lock_len, d);
    pl_sha256_hex(d, lsha);
    for (int i = 0; i < got.n && !rc; i++) {
        const char *n = got.v[i].name;
        const char *want = !strcmp(n, PL_BUNDLE_LOCK) ? lsha : NULL;
        if (!want) {
            bnd_file *f = bnd_list_find(&c->want, n);
            if (!f) { rc = pl_err_set(err, PL_EFORMAT, "%s: signs '%s', which the bundle does not hold", PL_BUNDLE_SIG, n); break; }
            want = f->sha;
        }
        if (strcmp(want, got.v[i].sha))
            rc = pl_err_set(err, PL_EFORMAT, "%s: the signature's sha256 differs from the bundle's (%.16s... signed, %.16s... here)", n, got.v[i].sha, want);
    }
    if (!rc) {
        if (!bnd_list_find(&got, PL_BUNDLE_LOCK)) rc = pl_err_set(err, PL_EFORMAT, "%s: does not sign %s", PL_BUNDLE_SIG, PL_BUNDLE_LOCK);
        for (int i = 0; i < c->want.n && !rc; i++)
            if (!bnd_list_find(&got, c->want.v[i].name))
                rc = pl_err_set(err, PL_EFORMAT, "%s: not covered by the signature", c->want.v[i].name);
    }
    bnd_list_free(&got);
    if (!rc && st) {
        memcpy(st->signer, signer, 65);
        st->signed_ok = 1;
    }
    return rc;
}

void bnd_check_free(bnd_check *c) {
    bnd_list_free(&c->want);
    cJSON_Delete(c->lock);
    free(c->lock_bytes);
    free(c->sig);
    memset(c, 0, sizeof *c);
}
