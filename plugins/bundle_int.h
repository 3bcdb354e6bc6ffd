/* bundle_int.h: what the bundle files share (prefix bnd_): the list of
 * files a bundle holds, the lock's checker, the archive reader and the
 * model-signing signature. */
#ifndef PL_BUNDLE_INT_H
#define PL_BUNDLE_INT_H

#include <stdint.h>
#include <cjson/cJSON.h>
#include "../core/error.h"
#include "bundle.h"

/* Limits a hostile bundle cannot raise: the lock and signature are read
 * into memory, so they are capped; names are capped. */
#define BND_MAX_LOCK (64u << 20)
#define BND_MAX_SIG (16u << 20)
#define BND_MAX_FILES 1000000
#define BND_MAX_NAME 1024

typedef struct bnd_file {
    char *name;       /* path inside the bundle */
    char *src;        /* on disk (pack), or NULL */
    char *mem;        /* or these bytes */
    size_t mem_len;
    int64_t size;
    char sha[65];
    int seen;         /* verify: met in the archive */
} bnd_file;

typedef struct bnd_list {
    bnd_file *v;
    int n, cap;
} bnd_list;

int bnd_list_add(bnd_list *l, const char *name, const char *src, char *mem, size_t mem_len, pl_err *err);
void bnd_list_sort(bnd_list *l);
bnd_file *bnd_list_find(const bnd_list *l, const char *name);
void bnd_list_free(bnd_list *l);

/* A name is safe when it is relative, has no empty, "." or ".." component,
 * no backslash or control character and is at most BND_MAX_NAME bytes. */
int bnd_name_ok(const char *name);

/* pack: the lock (an in-toto statement) over files, and the card */
int bnd_lock_build(const pl_pack_opts *o, bnd_list *files, char **lock_json, pl_bundle_stats *st, pl_err *err);
int bnd_card_build(const char *run_dir, const cJSON *plan, const cJSON *lockinfo, char **card, pl_err *err);
/* The lock's self digest: sha256 of the lock with its potluck_lock_sha256
 * value replaced by 64 zeros; bnd_lock_seal fills it in place. */
int bnd_lock_seal(char *lock, size_t n, pl_err *err);
int bnd_lock_check(const char *lock, size_t n, pl_err *err);

/* The checker: the lock's subjects, then each entry as it comes. */
typedef struct bnd_check {
    bnd_list want;        /* from the lock */
    cJSON *lock;
    char *lock_bytes;
    size_t lock_len;
    char *sig;            /* model.sig, when met */
    size_t sig_len;
    int64_t files, bytes; /* met so far (lock and sig included) */
    int64_t max_bytes;    /* what the lock declares, plus lock and signature caps */
} bnd_check;

int bnd_check_lock(bnd_check *c, char *lock, size_t n, pl_err *err); /* takes lock */
/* entry name of size bytes (from the header): the expected file, or NULL
 * with err filled */
bnd_file *bnd_check_entry(bnd_check *c, const char *name, int64_t size, pl_err *err);
int bnd_check_done(bnd_check *c, pl_err *err);
/* With pubkey: model.sig must be there and cover exactly the bundle's
 * files. Fills st->signer / st->signed_ok. */
int bnd_check_sig(bnd_check *c, const char *pubkey, pl_bundle_stats *st, pl_err *err);
void bnd_check_free(bnd_check *c);

/* model-signing (OpenSSF): sign the files (name + sha256) as the model
 * named model_name; verify a signature file's bytes with a public key into
 * the list of (name, sha) it signs and the paths it ignores. */
int bnd_sign(const char *privkey_pem, const char *model_name, const bnd_list *files, char **sig_json, pl_err *err);
int bnd_sig_verify(const char *pubkey_pem, const char *sig, size_t n, bnd_list *signed_files, char ***ignore,
                   int *n_ignore, char signer[65], pl_err *err);
/* Only the signer's key hint (sha256 of its PEM public key), unchecked. */
int bnd_sig_hint(const char *sig, size_t n, char hint[65]);

#endif
