/* bundle_sign.c: signatures in the OpenSSF model-signing format, key method
 * (what `model_signing sign key` writes and `model_signing verify key`
 * reads), through OpenSSL's libcrypto:
 *
 *   model.sig = a Sigstore bundle (JSON, media type ...bundle.v0.3+json):
 *     verificationMaterial.publicKey.hint = sha256 hex of the signer's public
 *       key as PEM (SubjectPublicKeyInfo); tlogEntries = []
 *     dsseEnvelope = {payload: base64 of the statement, payloadType
 *       "application/vnd.in-toto+json", signatures: [{sig: base64 of an ECDSA
 *       (P-256, SHA-256) DER signature over the DSSE PAE, keyid: ""}]}
 *   statement = in-toto Statement v1: one subject (the model's name, sha256
 *     over the raw 32-byte digests of the resources in order), predicateType
 *     "https://model_signing/signature/v1.0", predicate {serialization:
 *     {method "files", hash_type "sha256", allow_symlinks false,
 *     ignore_paths}, resources: [{name, algorithm "sha256", digest}]}
 *   PAE = "DSSEv1 <len(type)> <type> <len(payload)> <payload>"
 * The resources are the files by path (sha256 of their bytes), sorted by
 * path components. */
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/atomic.h"
#include "../core/sha256.h"
#include "bundle_int.h"

#define BUNDLE_MEDIA "application/vnd.dev.sigstore.bundle.v0.3+json"
#define PAYLOAD_TYPE "application/vnd.in-toto+json"
#define PRED_TYPE "https://model_signing/signature/v1.0"
#define STMT_TYPE "https://in-toto.io/Statement/v1"

static char *b64enc(const unsigned char *p, size_t n) {
    char *o = malloc(4 * ((n + 2) / 3) + 1);
    if (o) EVP_EncodeBlock((unsigned char *)o, p, (int)n);
    return o;
}

/* base64 -> bytes; -1 on a bad string */
static long b64dec(const char *s, unsigned char **out) {
    size_t n = strlen(s);
    if (n % 4) return -1;
    unsigned char *o = malloc(n / 4 * 3 + 1);
    if (!o) return -1;
    int k = EVP_DecodeBlock(o, (const unsigned char *)s, (int)n);
    if (k < 0) { free(o); return -1; }
    if (n && s[n - 1] == '=') k--;
    if (n > 1 && s[n - 2] == '=') k--;
    *out = o;
    return k;
}

static unsigned char *pae(const char *payload, size_t n, size_t *len) {
    char head[128];
    int h = snprintf(head, sizeof head, "DSSEv1 %zu %s %zu ", strlen(PAYLOAD_TYPE), PAYLOAD_TYPE, n);
    unsigned char *o = malloc((size_t)h + n);
    if (!o) return NULL;
    memcpy(o, head, (size_t)h);
    memcpy(o + h, payload, n);
    *len = (size_t)h + n;
    return o;
}

/* sha256 hex of the key's PEM SubjectPublicKeyInfo */
static int key_hint(EVP_PKEY *k, char hint[65]) {
    BIO *b = BIO_new(BIO_s_mem());
    if (!b || !PEM_write_bio_PUBKEY(b, k)) { BIO_free(b); return -1; }
    char *p;
    long n = BIO_get_mem_data(b, &p);
    uint8_t d[32];
    pl_sha256_buf(p, (size_t)n, d);
    pl_sha256_hex(d, hint);
    BIO_free(b);
    return 0;
}

static int is_p256(EVP_PKEY *k) {
    char g[64];
    size_t gl = 0;
    return EVP_PKEY_is_a(k, "EC") && EVP_PKEY_get_utf8_string_param(k, "group", g, sizeof g, &gl) && !strcmp(g, "prime256v1");
}

static const char *ssl_err(void) {
    static char b[256];
    unsigned long e = ERR_get_error();
    if (!e) return "unknown error";
    ERR_error_string_n(e, b, sizeof b);
    return b;
}

int pl_bundle_keygen(const char *priv_path, const char *pub_path, pl_err *err) {
    struct stat st;
    if (lstat(priv_path, &st) == 0) return pl_err_set(err, PL_EINVAL, "%s: already exists (keygen never overwrites a key)", priv_path);
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!k) return pl_err_set(err, PL_EIO, "keygen: %s", ssl_err());
    BIO *pb = BIO_new(BIO_s_mem()), *ub = BIO_new(BIO_s_mem());
    int rc = PL_OK;
    if (!pb || !ub || !PEM_write_bio_PrivateKey(pb, k, NULL, NULL, 0, NULL, NULL) || !PEM_write_bio_PUBKEY(ub, k))
        rc = pl_err_set(err, PL_EIO, "keygen: %s", ssl_err());
    if (!rc) {
        char *p;
        long n = BIO_get_mem_data(pb, &p);
        /* the private key: created 0600, never through a link, never over a file */
        int fd = open(priv_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 || pl_write_all(fd, p, (size_t)n) || fsync(fd)) rc = pl_err_set(err, PL_EIO, "%s: %s", priv_path, strerror(errno));
        if (fd >= 0) close(fd);
    }
    if (!rc) {
        char *p;
        long n = BIO_get_mem_data(ub, &p);
        rc = pl_write_file_atomic(pub_path, p, (size_t)n, err);
    }
    BIO_free(pb);
    BIO_free(ub);
    EVP_PKEY_free(k);
    return rc;
}

/* path components compare (Python's PurePosixPath order) */
static int path_cmp(const void *a, const void *b) {
    const char *x = ((const bnd_file *)a)->name, *y = ((const bnd_file *)b)->name;
    for (;;) {
        size_t nx = strcspn(x, "/"), ny = strcspn(y, "/");
        size_t m = nx < ny ? nx : ny;
        int c = memcmp(x, y, m);
        if (c) return c;
        if (nx != ny) return nx < ny ? -1 : 1;
        x += nx;
        y += ny;
        if (!*x || !*y) return *x ? 1 : *y ? -1 : 0;
        x++;
        y++;
    }
}

int bnd_sign(const char *privkey_pem, const char *model_name, const bnd_list *files, char **sig_json, pl_err *err) {
    *sig_json = NULL;
    FILE *fp = fopen(privkey_pem, "r");
    if (!fp) return pl_err_set(err, PL_EIO, "%s: %s", privkey_pem, strerror(errno));
    EVP_PKEY *k = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
    fclose(fp);
    if (!k) return pl_err_set(err, PL_EFORMAT, "%s: not a PEM private key (unencrypted; potluck keygen writes one)", privkey_pem);
    if (!is_p256(k)) {
        EVP_PKEY_free(k);
        return pl_err_set(err, PL_EUNSUPPORTED, "%s: expected an EC P-256 key", privkey_pem);
    }
    /* the statement, resources in path order */
    bnd_file *v = malloc(((size_t)files->n + 1) * sizeof *v);
    if (!v) { EVP_PKEY_free(k); return pl_err_set(err, PL_ENOMEM, "sign: out of memory"); }
    memcpy(v, files->v, (size_t)files->n * sizeof *v);
    qsort(v, (size_t)files->n, sizeof *v, path_cmp);
    cJSON *st = cJSON_CreateObject();
    cJSON_AddStringToObject(st, "_type", STMT_TYPE);
    cJSON_AddArrayToObject(st, "subject"); /* filled below, once the root digest is known */
    cJSON_AddStringToObject(st, "predicateType", PRED_TYPE);
    cJSON *pred = cJSON_AddObjectToObject(st, "predicate");
    cJSON *ser = cJSON_AddObjectToObject(pred, "serialization");
    cJSON_AddStringToObject(ser, "method", "files");
    cJSON_AddStringToObject(ser, "hash_type", "sha256");
    cJSON_AddFalseToObject(ser, "allow_symlinks");
    cJSON *ig = cJSON_AddArrayToObject(ser, "ignore_paths");
    cJSON_AddItemToArray(ig, cJSON_CreateString(PL_BUNDLE_SIG));
    cJSON *res = cJSON_AddArrayToObject(pred, "resources");
    pl_sha256 *root = pl_sha256_new();
    for (int i = 0; i < files->n; i++) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "name", v[i].name);
        cJSON_AddStringToObject(r, "algorithm", "sha256");
        cJSON_AddStringToObject(r, "digest", v[i].sha);
        cJSON_AddItemToArray(res, r);
        uint8_t raw[32];
        for (int j = 0; j < 32; j++) {
            unsigned x;
            sscanf(v[i].sha + 2 * j, "%2x", &x);
            raw[j] = (uint8_t)x;
        }
        pl_sha256_update(root, raw, 32);
    }
    free(v);
    uint8_t d[32];
    char hex[65];
    pl_sha256_final(root, d);
    pl_sha256_hex(d, hex);
    cJSON *s0 = cJSON_CreateObject();
    cJSON_AddStringToObject(s0, "name", model_name);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(s0, "digest"), "sha256", hex);
    cJSON_AddItemToArray(cJSON_GetObjectItem(st, "subject"), s0);
    char *payload = cJSON_PrintUnformatted(st);
    cJSON_Delete(st);
    /* sign the PAE */
    size_t plen = 0, siglen = 0;
    unsigned char *m = payload ? pae(payload, strlen(payload), &plen) : NULL;
    unsigned char *sig = NULL;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int rc = PL_OK;
    if (!m || !ctx) rc = pl_err_set(err, PL_ENOMEM, "sign: out of memory");
    else if (EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k) != 1 || EVP_DigestSign(ctx, NULL, &siglen, m, plen) != 1 ||
             !(sig = malloc(siglen)) || EVP_DigestSign(ctx, sig, &siglen, m, plen) != 1)
        rc = pl_err_set(err, PL_EIO, "sign: %s", ssl_err());
    char hint[65] = "";
    if (!rc && key_hint(k, hint)) rc = pl_err_set(err, PL_EIO, "sign: %s", ssl_err());
    if (!rc) {
        char *pb = b64enc((unsigned char *)payload, strlen(payload)), *sb = b64enc(sig, siglen);
        cJSON *b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "mediaType", BUNDLE_MEDIA);
        cJSON *vm = cJSON_AddObjectToObject(b, "verificationMaterial");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(vm, "publicKey"), "hint", hint);
        cJSON_AddArrayToObject(vm, "tlogEntries");
        cJSON *env = cJSON_AddObjectToObject(b, "dsseEnvelope");
        cJSON_AddStringToObject(env, "payload", pb ? pb : "");
        cJSON_AddStringToObject(env, "payloadType", PAYLOAD_TYPE);
        cJSON *sg = cJSON_CreateObject();
        cJSON_AddStringToObject(sg, "sig", sb ? sb : "");
        cJSON_AddStringToObject(sg, "keyid", "");
        cJSON_AddItemToArray(cJSON_AddArrayToObject(env, "signatures"), sg);
        *sig_json = cJSON_PrintUnformatted(b);
        cJSON_Delete(b);
        free(pb);
        free(sb);
        if (!*sig_json) rc = pl_err_set(err, PL_ENOMEM, "sign: out of memory");
    }
    EVP_MD_CTX_free(ctx);
    free(sig);
    free(m);
    free(payload);
    EVP_PKEY_free(k);
    return rc;
}

int bnd_sig_hint(const char *sig, size_t n, char hint[65]) {
    hint[0] = 0;
    cJSON *b = cJSON_ParseWithLength(sig, n);
    const char *h = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(b, "verificationMaterial"), "publicKey"), "hint"));
    if (h && strlen(h) == 64) memcpy(hint, h, 65);
    cJSON_Delete(b);
    return hint[0] ? 0 : -1;
}

int bnd_sig_verify(const char *pubkey_pem, const char *sig, size_t n, bnd_list *out, char ***ignore, int *n_ignore,
                   char signer[65], pl_err *err) {
    *ignore = NULL;
    *n_ignore = 0;
    FILE *fp = fopen(pubkey_pem, "r");
    if (!fp) return pl_err_set(err, PL_EIO, "%s: %s", pubkey_pem, strerror(errno));
    EVP_PKEY *k = PEM_read_PUBKEY(fp, NULL, NULL, NULL);
    fclose(fp);
    if (!k) return pl_err_set(err, PL_EFORMAT, "%s: not a PEM public key", pubkey_pem);
    int rc = PL_OK;
    cJSON *b = cJSON_ParseWithLength(sig, n), *st = NULL;
    unsigned char *payload = NULL, *raw = NULL, *m = NULL;
    EVP_MD_CTX *ctx = NULL;
    char hint[65] = "";
    if (!is_p256(k)) { rc = pl_err_set(err, PL_EUNSUPPORTED, "%s: expected an EC P-256 key", pubkey_pem); goto out; }
    if (!b) { rc = pl_err_set(err, PL_EFORMAT, PL_BUNDLE_SIG ": not JSON"); goto out; }
    if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(b, "mediaType")) ? cJSON_GetStringValue(cJSON_GetObjectItem(b, "mediaType")) : "", BUNDLE_MEDIA)) {
        rc = pl_err_set(err, PL_EFORMAT, PL_BUNDLE_SIG ": mediaType is not %s", BUNDLE_MEDIA);
        goto out;
    }
    key_hint(k, hint);
    const char *h = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(b, "verificationMaterial"), "publicKey"), "hint"));
    if (h && h[0] && strcmp(h, hint)) {
        rc = pl_err_set(err, PL_EFORMAT, PL_BUNDLE_SIG ": signed by another key (hint %.16s..., this key %.16s...)", h, hint);
        goto out;
    }
    const cJSON *env = cJSON_GetObjectItem(b, "dsseEnvelope");
    const char *pt = cJSON_GetStringValue(cJSON_GetObjectItem(env, "payloadType"));
    const char *p64 = cJSON_GetStringValue(cJSON_GetObjectItem(env, "payload"));
    const char *s64 = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(env, "signatures"), 0), "sig"));
    if (!pt || strcmp(pt, PAYLOAD_TYPE) || !p64 || !s64) { rc = pl_err_set(err, PL_EFORMAT, PL_BUNDLE_SIG ": no DSSE envelope with an in-toto payload and a signature"); goto out; }
    long pl = b64dec(p64, &payload), sl = b64dec(s64, &raw);
    if (pl < 0 || sl < 0) { rc = pl_err_set(err, PL_EFORMAT, PL_BUNDLE_SIG ": bad base64"); goto out; }
    size_t mlen;
    m = pae((const char *)payload, (size_t)pl, &mlen);
    ctx = EVP_MD_CTX_new();
    if (!m || !ctx || EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, k) != 1 ||
        EVP_DigestVerify(ctx, raw, (size_t)sl, m, mlen) != 1) {
        rc = pl_err_set(err, PL_EFORMAT, PL_BUNDLE_SIG ": the signature does not verify with %s (wrong key, or the signature was changed)", pubkey_pem);
        goto out;
    }
    st = cJSON_ParseWithLength((const char *)payload, (size_t)pl);
    if (!st || strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(st, "_type")) ? cJSON_GetStringValue(cJSON_GetObjectItem(st, "_type")) : "", STMT_TYPE) ||
        strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(st, "predicateType")) ? cJSON_GetStringValue(cJSON_GetObjectItem(st, "predicateType")) : "", PRED_TYPE)) {
        rc = pl_err_set(err, PL_EFORMAT, PL_BUNDLE_SIG ": the payload is not an in-toto statement of type %s", PRED_TYPE);
        goto out;
    }
    const cJSON *pred = cJSON_GetObjectItem(st, "predicate"), *ser = cJSON_GetObjectItem(pred, "serialization"), *r;
    const char *meth = cJSON_GetStringValue(cJSON_GetObjectItem(ser, "method"));
    const char *ht = cJSON_GetStringValue(cJSON_GetObjectItem(ser, "hash_type"));
    if (!meth || strcmp(meth, "files") || !ht || strcmp(ht, "sha256")) {
        rc = pl_err_set(err, PL_EUNSUPPORTED, PL_BUNDLE_SIG ": serialization %s/%s: potluck checks method files with sha256 only", meth ? meth : "?", ht ? ht : "?");
        goto out;
    }
    pl_sha256 *root = pl_sha256_new();
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(pred, "resources")) {
        const char *nm = cJSON_GetStringValue(cJSON_GetObjectItem(r, "name"));
        const char *dg = cJSON_GetStringValue(cJSON_GetObjectItem(r, "digest"));
        const char *al = cJSON_GetStringValue(cJSON_GetObjectItem(r, "algorithm"));
        if (!nm || !dg || strlen(dg) != 64 || !al || strcmp(al, "sha256") || !bnd_name_ok(nm)) {
            rc = pl_err_set(err, PL_EFORMAT, PL_BUNDLE_SIG ": resource '%s': expected a safe name and a sha256 digest", nm ? nm : "?");
            break;
        }
        uint8_t d[32];
        for (int j = 0; j < 32; j++) {
            unsigned x;
            if (sscanf(dg + 2 * j, "%2x", &x) != 1) { rc = pl_err_set(err, PL_EFORMAT, PL_BUNDLE_SIG ": %s: bad digest", nm); break; }
            d[j] = (uint8_t)x;
        }
        if (rc) break;
        pl_sha256_update(root, d, 32);
        if ((rc = bnd_list_add(out, nm, NULL, NULL, 0, err))) break;
        snprintf(out->v[out->n - 1].sha, 65, "%s", dg);
        for (char *c = out->v[out->n - 1].sha; *c; c++)
            if (*c >= 'A' && *c <= 'F') *c = (char)(*c - 'A' + 'a');
    }
    uint8_t d[32];
    char hex[65];
    pl_sha256_final(root, d);
    pl_sha256_hex(d, hex);
    if (rc) goto out;
    const char *want = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(st, "subject"), 0), "digest"), "sha256"));
    if (!want || strcmp(want, hex)) { rc = pl_err_set(err, PL_EFORMAT, PL_BUNDLE_SIG ": the subject's digest does not match its resources"); goto out; }
    bnd_list_sort(out);
    for (int i = 1; i < out->n; i++)
        if (!strcmp(out->v[i - 1].name, out->v[i].name)) { rc = pl_err_set(err, PL_EFORMAT, PL_BUNDLE_SIG ": lists %s twice", out->v[i].name); goto out; }
    const cJSON *ig = cJSON_GetObjectItem(ser, "ignore_paths");
    int ni = cJSON_GetArraySize(ig);
    if (ni > 0) {
        *ignore = calloc((size_t)ni, sizeof **ignore);
        cJSON_ArrayForEach(r, ig)
            if (*ignore && cJSON_GetStringValue(r)) (*ignore)[(*n_ignore)++] = strdup(cJSON_GetStringValue(r));
    }
    memcpy(signer, hint, 65);
out:
    EVP_MD_CTX_free(ctx);
    free(m);
    free(payload);
    free(raw);
    cJSON_Delete(st);
    cJSON_Delete(b);
    EVP_PKEY_free(k);
    return rc;
}
