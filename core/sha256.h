/* sha256.h: SHA-256 through OpenSSL's libcrypto. */
#ifndef PL_SHA256_H
#define PL_SHA256_H

#include <stddef.h>
#include <stdint.h>
#include "error.h"

typedef struct pl_sha256 pl_sha256;
pl_sha256 *pl_sha256_new(void);
void pl_sha256_update(pl_sha256 *h, const void *data, size_t len);
void pl_sha256_final(pl_sha256 *h, uint8_t out[32]); /* also frees h */

void pl_sha256_buf(const void *data, size_t len, uint8_t out[32]);
int pl_sha256_file(const char *path, uint8_t out[32], pl_err *err);
/* 64 lowercase hex digits + NUL */
void pl_sha256_hex(const uint8_t digest[32], char hex[65]);

#endif
