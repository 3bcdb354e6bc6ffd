/* shard_writer.h: building a dataset directory (docs/datasets.md).
 *
 * The writer takes samples (token ids + loss mask + sample_id + optional
 * text and provenance) from any source and cuts them into shards of a size limit. Each
 * shard is written to a temporary name, fsync'd and renamed, and recorded
 * (with its sha256 and the input position after it) in a journal written
 * atomically; manifest.json is written last, atomically. A build that is
 * killed at any point leaves no manifest naming a partial shard, and the
 * same build run again (same build key) verifies the journaled shards and
 * continues after them; the result is byte-identical to an uninterrupted
 * build.
 *
 * pl_dataset_build drives the writer from a JSONL file: pre-tokenized lines
 * {"input_ids": [...], "loss_mask": [...]}, plain text {"text": "..."} or
 * any record datasets/import.h reads (conversations, alpaca, input/output),
 * rendered with a chat template and masked (pl_dataset_build_chat). A record
 * whose "_prov" is an object carries it (compact JSON) into /provenance. */
#ifndef PL_SHARD_WRITER_H
#define PL_SHARD_WRITER_H

#include <stdint.h>
#include <cjson/cJSON.h>
#include "../core/error.h"
#include "../core/progress.h"
#include "import.h"
#include "manifest.h"
#include "tokenizer.h"

#define PL_JOURNAL_NAME ".build-journal.json"
#define PL_CREATED_BY "potluck 0.1.0"

typedef struct pl_sample {
    const int32_t *ids;   /* (n) */
    const uint8_t *mask;  /* (n) 1 = trained; NULL = all trained */
    int64_t n;
    uint64_t sample_id;
    const char *text;     /* NULL = none */
    const char *provenance; /* compact JSON object, e.g. {"source":"seeds.jsonl:12"}; NULL = none.
                             * Last, so {ids, mask, n, sid, text} still means "no provenance". */
} pl_sample;

typedef struct pl_dsw_opts {
    int64_t shard_tokens;  /* cut a shard once it holds this many tokens (0: 1<<24) */
    int64_t shard_bytes;   /* ... or this many uncompressed bytes (0: no byte limit) */
    int deflate_level;     /* 0..9 (negative: default 4) */
    int store_text;        /* write /text */
    const char *tokenizer_sha256, *template_name; /* "" when none */
    int64_t vocab;         /* 0 when unknown */
    const char *build_key; /* identifies input and options; resume only when equal */
    int store_provenance;  /* write /provenance in every shard ("" for samples without one) and
                            * "sample_provenance": true in the manifest's provenance; 0: samples'
                            * provenance is dropped and the shards are as without it */
} pl_dsw_opts;

typedef struct pl_dsw pl_dsw;

/* Prepare dir. If it holds a complete dataset with the same build key,
 * pl_dsw_complete() is 1 and nothing needs adding. If it holds a journal of
 * the same build, the journaled shards that still verify are kept and
 * pl_dsw_resume_pos() says where in the input to continue. If it holds a
 * different complete dataset, that one is left untouched and usable: the
 * new build goes to the sibling dir + PL_STAGING_SUFFIX (resumable the same
 * way) and pl_dsw_finish swaps it in with an atomic directory exchange, so a
 * crash at any point leaves the previous dataset or the new one. */
#define PL_STAGING_SUFFIX ".potluck-staging"
int pl_dsw_open(pl_dsw **out, const char *dir, const pl_dsw_opts *o, pl_err *err);
int pl_dsw_complete(const pl_dsw *w);
/* Input byte position and line number to continue from (0, 0 when fresh);
 * number of shards kept from the journal. */
void pl_dsw_resume_pos(const pl_dsw *w, int64_t *pos, int64_t *line, int *shards_kept);
/* Append a sample; pos/line are the input position just after it. */
int pl_dsw_add(pl_dsw *w, const pl_sample *s, int64_t pos, int64_t line, pl_err *err);
/* Count an input record that gave no sample (empty). */
void pl_dsw_skip(pl_dsw *w);
/* Flush the last shard, write card.md (card_text) then manifest.json with
 * provenance (taken over; may be NULL) plus the writer's own counts. */
int pl_dsw_finish(pl_dsw *w, cJSON *provenance, const char *card_text, pl_err *err);
void pl_dsw_free(pl_dsw *w);
/* Totals so far (including kept shards). */
void pl_dsw_totals(const pl_dsw *w, int64_t *samples, int64_t *tokens, int64_t *trained, int *shards, int64_t *skipped);

/* ------------------------------------------------------------ from JSONL */

typedef struct pl_build_opts {
    const char *in_path, *out_dir;
    const pl_tokenizer *tok;        /* required for text and chat lines */
    const char *tokenizer_sha256;   /* of the tokenizer file; "" when none */
    const char *template_name;      /* chat template name ("" = none) */
    int64_t shard_tokens, shard_bytes;
    int deflate_level;              /* negative: default */
    int store_text;
    int no_eos;                     /* text lines: do not append EOS */
    /* Added to card.md after the build's own lines (markdown, e.g. a recipe's
     * pipeline with the count each filter removed); NULL = nothing. */
    const char *card_extra;
    /* Items copied into the manifest's provenance object (e.g. {"recipe": ...,
     * "pipeline": [...]}); a key the build records itself is refused. NULL =
     * nothing. Neither this nor card_extra is part of the build key: a complete
     * dataset of the same input and options is left as it is. */
    const cJSON *provenance_extra;
    /* Begun by the caller (total: the input's records), updated here with the
     * records read so far, ended by the caller; NULL = none. */
    pl_progress *progress;
} pl_build_opts;

typedef struct pl_build_stats {
    int64_t samples, tokens, trained, skipped;
    int shards, shards_kept, already_complete;
    char build_key[65];
    int64_t bad; /* records skipped as bad in this run (each reported through on_bad) */
} pl_build_stats;

/* Records that are not pre-tokenized: the importer's formats (datasets/import.h),
 * rendered and masked as datasets/chat.h does. Zero-initialized = defaults. */
typedef struct pl_build_chat {
    pl_import_fmt fmt;   /* PL_FMT_AUTO: detected from the first JSON object of the file */
    const char *tmpl;    /* built-in name or Jinja source; NULL = the tokenizer's own */
    pl_mask_mode mask;   /* chat records: assistant (default), all, last */
    int strict;          /* the first bad record fails the build */
    /* called once per bad record skipped ("file:line: reason"); may be NULL */
    void (*on_bad)(void *ctx, const char *msg);
    void *ctx;
} pl_build_chat;

/* c == NULL: defaults. pl_dataset_build(o, st, err) is pl_dataset_build_chat(o, NULL, st, err). */
int pl_dataset_build_chat(const pl_build_opts *o, const pl_build_chat *c, pl_build_stats *st, pl_err *err);
int pl_dataset_build(const pl_build_opts *o, pl_build_stats *st, pl_err *err);

/* One JSONL record to a sample (ids/mask malloc'd into *ids, *mask).
 * Exposed for tests and for `data merge`-like tools. */
int pl_build_parse_line(const pl_build_opts *o, const char *line, size_t len, const char *where, int32_t **ids,
                        uint8_t **mask, int64_t *n, char **text, uint64_t *sample_id, pl_err *err);

/* ----------------------------------------------------------------- split */

/* 1 when a sample belongs to the eval split: sample_id % 1000 < permille. */
int pl_split_is_eval(uint64_t sample_id, int permille);

/* Copy the samples of the dataset at in_dir into train_dir and eval_dir
 * (either may be NULL to drop that side) by pl_split_is_eval. */
int pl_dataset_split(const char *in_dir, int permille, const char *train_dir, const char *eval_dir, int trust,
                     int64_t *n_train, int64_t *n_eval, pl_err *err);

/* Concatenate datasets (same tokenizer) into out_dir; dedup drops samples
 * whose sample_id was already seen. */
int pl_dataset_merge(const char *const *in_dirs, int n_in, const char *out_dir, int dedup, int trust,
                     int64_t *n_out, int64_t *n_dup, pl_err *err);

#endif
