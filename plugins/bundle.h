/* bundle.h: .potluck bundles: a run directory packed into one pax tar
 * compressed with zstd (libarchive), that a peer can verify, inspect and
 * unpack safely (docs/bundles.md).
 *
 * Layout inside (entries in this order: the lock, the signature if any, then
 * every other file sorted by name; mtime 0, uid/gid 0, no owner names, mode
 * 0644, zstd level 9 in one thread, so the same run packs to the same bytes):
 *   potluck.lock.json   an in-toto Statement v1 with a SLSA v1 provenance
 *                       predicate: every other file of the bundle as a subject
 *                       (name, sha256, size), the base model, datasets, recipe
 *                       and plugins as resolved dependencies, seeds and the
 *                       resolved hyperparameters, hardware and wall time
 *   model.sig           optional: an OpenSSF model-signing signature (Sigstore
 *                       bundle, DSSE envelope) over every file but itself
 *   README.md           model + dataset card (Hugging Face YAML front matter)
 *   plan.json, results.json, stages/..., train/config.json, train/metrics.jsonl
 *   recipe/             the recipe, its local plugins/ and the files it names
 *   plugins/            the built-in plugins it loaded (plugins/user/: the user's)
 *   data/train, data/eval   manifest + card + shards (per --data)
 *   adapter/            the PEFT adapter
 * Only the lock and the signature are outside the lock's subjects. */
#ifndef PL_BUNDLE_H
#define PL_BUNDLE_H

#include <stdint.h>
#include <cjson/cJSON.h>
#include "../core/error.h"

#define PL_BUNDLE_LOCK "potluck.lock.json"
#define PL_BUNDLE_SIG "model.sig"

typedef enum { PL_DATA_FULL = 0, PL_DATA_MANIFEST, PL_DATA_NONE } pl_bundle_data;

typedef struct pl_pack_opts {
    const char *run_dir;
    const char *out;        /* NAME.potluck, written atomically */
    pl_bundle_data data;
    const char *recipe;     /* the recipe file (NULL: plan.json's recipe_path, else recipe_file) */
    const char *base;       /* the base model (NULL: plan.json's models.base) */
    const char *sign_key;   /* PEM EC private key: add model.sig (NULL: unsigned) */
    const char *version;    /* potluck's version, for the lock */
} pl_pack_opts;

typedef struct pl_bundle_stats {
    int files;              /* files in the bundle, the lock and signature included */
    int64_t bytes;          /* their sizes added up */
    int64_t archive_bytes;  /* the .potluck file */
    char signer[65];        /* sha256 of the signer's public key (PEM), "" when unsigned */
    int signed_ok;          /* verify: 1 when a key was given and the signature checked */
    char warn[1024];        /* pack: what the lock could not pin (e.g. base model not found) */
} pl_bundle_stats;

int pl_bundle_pack(const pl_pack_opts *o, pl_bundle_stats *st, pl_err *err);

/* Verify a .potluck file or an unpacked bundle directory: every entry is a
 * plain file named in the lock, hashes and sizes match, none is missing or
 * extra. With pubkey (PEM), model.sig must be present and verify; a directory
 * without a lock but with model.sig (signed by `model_signing sign key`) is
 * checked against the signature alone. Errors name the first difference. */
int pl_bundle_verify(const char *path, const char *pubkey, pl_bundle_stats *st, pl_err *err);

/* Verify, then extract into a temporary folder beside dir and rename it to
 * dir (which must not exist). Refuses anything verify refuses; writes only
 * under that folder. */
int pl_bundle_unpack(const char *path, const char *dir, const char *pubkey, pl_bundle_stats *st, pl_err *err);

/* Read the lock, the card and the signature's signer without extracting
 * (entries are streamed, not written). *lock and *card are the caller's. */
int pl_bundle_inspect(const char *path, cJSON **lock, char **card, pl_bundle_stats *st, pl_err *err);

/* An EC P-256 key pair for signing: the private key PEM (created 0600,
 * never over an existing file) and the public key PEM. */
int pl_bundle_keygen(const char *priv_path, const char *pub_path, pl_err *err);

#endif
