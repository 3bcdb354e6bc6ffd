/* sha256.c: SHA-256 of buffers and files through OpenSSL's EVP interface. */
#include "sha256.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

struct pl_sha256 {
    EVP_MD_CTX *ctx;
};

pl_sha256 *pl_sha256_new(void) {
    pl_sha256 *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(h->ctx);
        free(h);
        return NULL;
    }
    return h;
}

void pl_sha256_update(pl_sha256 *h, const void *data, size_t len) {
    if (!h || len == 0) return;
    EVP_DigestUpdate(h->ctx, data, len);
}

void pl_sha256_final(pl_sha256 *h, uint8_t out[32]) {
    if (!h) {
        memset(out, 0, 32);
        return;
    }
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(h->ctx, out, &n) != 1 || n != 32) memset(out, 0, 32);
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

void pl_sha256_buf(const void *data, size_t len, uint8_t out[32]) {
    unsigned int n = 0;
    /* EVP_Digest does init/update/final on a context of its own. */
    if (EVP_Digest(len ? data : "", len, out, &n, EVP_sha256(), NULL) != 1 || n != 32)
        memset(out, 0, 32);
}

/* Streams the file in 1 MiB chunks, so any size works in constant memory. */
int pl_sha256_file(const char *path, uint8_t out[32], pl_err *err) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return pl_err_set(err, PL_EIO, "%s: cannot open: %s", path, strerror(errno));
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = malloc(CHUNK);
    pl_sha256 *h = pl_sha256_new();
    if (!buf || !h) {
        free(buf);
        if (h) pl_sha256_final(h, out);
        fclose(fp);
        return pl_err_set(err, PL_ENOMEM, "%s: sha256: out of memory", path);
    }
    size_t n;
    while ((n = fread(buf, 1, CHUNK, fp)) > 0) pl_sha256_update(h, buf, n);
    int bad = ferror(fp);
    int e = errno;
    fclose(fp);
    free(buf);
    pl_sha256_final(h, out);
    if (bad) {
        memset(out, 0, 32);
        return pl_err_set(err, PL_EIO, "%s: read error: %s", path, strerror(e));
    }
    return PL_OK;
}

void pl_sha256_hex(const uint8_t digest[32], char hex[65]) {
    static const char d[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = d[digest[i] >> 4];
        hex[2 * i + 1] = d[digest[i] & 15];
    }
    hex[64] = '\0';
}
