/* manifest.h: a dataset directory's manifest.json (docs/datasets.md):
 * schema version, tokenizer, template, the shards with their sha256, sizes
 * and counts, totals and provenance. Written last and atomically; a shard
 * is named in it only once it is whole. Every shard is checked against the
 * manifest (size, then sha256) before libhdf5 is allowed to open it. */
#ifndef PL_MANIFEST_H
#define PL_MANIFEST_H

#include <stdint.h>
#include <cjson/cJSON.h>
#include "../core/error.h"
#include "shard.h"

#define PL_DATASET_SCHEMA 1
#define PL_MANIFEST_NAME "manifest.json"

typedef struct pl_manifest_shard {
    char *file;        /* plain file name inside the dataset directory */
    char sha256[65];
    int64_t bytes, samples, tokens, trained;
} pl_manifest_shard;

typedef struct pl_manifest {
    int64_t schema;
    char *tokenizer_sha256; /* "" when unknown (pre-tokenized without --tokenizer) */
    char *template_name;    /* "" for none */
    int64_t vocab;          /* 0 when unknown */
    int has_text;
    int n_shards;
    pl_manifest_shard *shards;
    int64_t samples, tokens, trained;
    cJSON *provenance;      /* owned; may be NULL */
} pl_manifest;

/* Load DIR/manifest.json; refuses unknown schema versions. */
int pl_manifest_load(pl_manifest **out, const char *dir, pl_err *err);
/* Write DIR/manifest.json atomically. */
int pl_manifest_save(const pl_manifest *m, const char *dir, pl_err *err);
void pl_manifest_free(pl_manifest *m);
/* Build key recorded at build time (provenance.build_key) or "". */
const char *pl_manifest_build_key(const pl_manifest *m);

/* Size and sha256 of shard i against the manifest. */
int pl_manifest_check_shard(const pl_manifest *m, const char *dir, int i, pl_err *err);
/* Check (unless trust) then open shard i and compare its counts and
 * attributes with the manifest. */
int pl_manifest_open_shard(const pl_manifest *m, const char *dir, int i, int trust, pl_shard **out, pl_err *err);

/* "DIR/name" into buf; returns 0 when it does not fit. */
int pl_dataset_path(char *buf, size_t cap, const char *dir, const char *name);

#endif
