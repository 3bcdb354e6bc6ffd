/* host.h: the recipe host: a sandbox (plugins/sandbox.h) with the potluck
 * module (plugins/prelude.lua + C primitives), the plugins of every search
 * folder, and the recipe evaluated; then the recipe's plan and its stages.
 * Everything here runs recipe code: callers run it in a pl_child_run child
 * (plugins/pipeline.c does). */
#ifndef PL_HOST_H
#define PL_HOST_H

#include <stdint.h>
#include <cjson/cJSON.h>
#include "../core/error.h"
#include "sandbox.h"

typedef struct pl_host_opts {
    const char *recipe;        /* recipe .lua path; NULL: plugins only */
    const char *recipe_dir;    /* with recipe NULL: a recipe folder whose plugins/ to load */
    const char *run_dir;       /* reads/writes allowed here; NULL: none */
    const char *base_model;    /* resolved paths for ctx.model() / ctx.load_model("teacher"); NULL: none */
    const char *teacher_model;
    const char *tuned_adapter; /* the run's fine-tune: base_model + this PEFT adapter is
                                * ctx.load_model("tuned"); NULL: none */
    const char *user_plugins;  /* NULL: $POTLUCK_PLUGINS or ~/.local/share/potluck/plugins */
    pl_lua_limits limits;
    int quiet;                 /* no progress lines on stderr */
    const char *const *allow_read; /* more paths recipe code may read (pl_sandbox_allow_read) */
    int n_allow_read;
    int limit_writes;          /* 1: writes only under write_dir, or none when it is NULL (pl_sandbox_limit_writes) */
    const char *write_dir;
} pl_host_opts;

typedef struct pl_host pl_host;

/* The directory holding plugins/prelude.lua and plugins/lib: $POTLUCK_HOME,
 * else found upward from the executable (repo root, build/opt, build/san). */
const char *pl_host_home(void);
/* The user's plugin folder (see pl_host_opts.user_plugins). malloc'd. */
char *pl_host_user_plugins(void);

int pl_host_open(pl_host **out, const pl_host_opts *o, pl_err *err);
void pl_host_free(pl_host *h);

/* The recipe's plan (for size, NULL: as written): name, seed, base, lora,
 * train, eval, export, shard, steps[] {index, kind, name, label, hash,
 * plugin, params}. */
int pl_host_plan(pl_host *h, const char *size, cJSON **out, pl_err *err);
/* Registered plugins: [{kind, name, doc, file, origin, sha256, params}]. */
int pl_host_plugins(pl_host *h, cJSON **out, pl_err *err);
/* Run pipeline step index (1-based) over in_path (NULL: none) into
 * out_path; *stats = {input, output, removed, reasons}. in_count: the
 * samples in in_path when known (the progress line's total), else -1. */
int pl_host_run_stage(pl_host *h, const char *size, int index, const char *in_path, int64_t in_count,
                      const char *out_path, int64_t seed, cJSON **stats, pl_err *err);

/* The recipe's eval.metrics over the samples of path: *out = {name: value}. */
int pl_host_run_metrics(pl_host *h, const char *size, const char *path, int64_t seed, cJSON **out, pl_err *err);

#endif
