/* checkpoint.h: training checkpoints as directories written atomically.
 *
 * Layout: ROOT/step-NNNNNN/ holding any files (and one level of
 * subdirectories) plus manifest.json:
 *   {"format": "potluck-checkpoint", "version": 1, "step": N,
 *    "files": [{"path": "state.json", "bytes": 123, "sha256": "..."}, ...]}
 * A checkpoint is built in ROOT/.tmp-step-NNNNNN/ (every file fsync'd), the
 * manifest is written last, the directory is renamed to step-NNNNNN and ROOT
 * fsync'd; so a crash leaves either no step-NNNNNN or a whole one. A
 * checkpoint counts as complete only when its manifest parses and every file
 * it lists has the recorded size and sha256 and no listed file is missing. */
#ifndef PL_CHECKPOINT_H
#define PL_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>
#include "../core/error.h"

typedef struct pl_ckpt {
    char *root;   /* checkpoints directory */
    char *tmp;    /* ROOT/.tmp-step-NNNNNN: write files here */
    char *final;  /* ROOT/step-NNNNNN */
    int64_t step;
} pl_ckpt;

/* Start checkpoint `step` under root (created if missing); a stale temporary
 * directory of the same step is removed first. */
int pl_ckpt_begin(pl_ckpt *c, const char *root, int64_t step, pl_err *err);
/* Write a file (name relative to the checkpoint, may hold one '/') into the
 * temporary directory, fsync'd. */
int pl_ckpt_put(pl_ckpt *c, const char *name, const void *data, size_t len, pl_err *err);
/* The same with the file's bytes given as n pieces written in order. */
int pl_ckpt_putv(pl_ckpt *c, const char *name, const void *const *data, const size_t *len, int n, pl_err *err);
/* Hash every file under the temporary directory, write manifest.json, fsync,
 * rename to step-NNNNNN (replacing an older one of the same step) and fsync
 * root. Frees c's strings whatever the outcome. */
int pl_ckpt_commit(pl_ckpt *c, pl_err *err);
/* Remove the temporary directory and free c (safe on a zeroed c). */
void pl_ckpt_abort(pl_ckpt *c);

/* Check a checkpoint directory: manifest, sizes, sha256. *step (may be NULL)
 * gets the manifest's step. */
int pl_ckpt_verify(const char *dir, int64_t *step, pl_err *err);

/* The newest complete checkpoint under root: its path (malloc'd) and step.
 * Each step-* directory that fails pl_ckpt_verify is reported through skip
 * (may be NULL) with the reason and passed over. PL_ENOTFOUND when none is
 * complete. */
typedef void (*pl_ckpt_skip_fn)(void *user, const char *dir, const char *why);
int pl_ckpt_latest(const char *root, char **path, int64_t *step, pl_ckpt_skip_fn skip, void *user, pl_err *err);

/* Keep the `keep` newest step-* directories (keep <= 0: all) and remove the
 * rest, and any .tmp-step-* left by a crash. */
int pl_ckpt_prune(const char *root, int keep, pl_err *err);

/* Read a file of a checkpoint (at most max_bytes) into a malloc'd buffer. */
int pl_ckpt_read(const char *dir, const char *name, size_t max_bytes, char **data, size_t *len, pl_err *err);

/* rm -rf path (no symlinks followed); 0 when path is absent. */
int pl_rmtree(const char *path, pl_err *err);

#endif
