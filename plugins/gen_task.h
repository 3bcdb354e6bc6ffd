/* gen_task.h: generative eval tasks written in Lua (docs/eval.md,
 * "Generative tasks"): `potluck eval MODEL --task FILE.lua`.
 *
 * A task file is strangers' code: it is evaluated only in a pl_child_run
 * child with the recipe sandbox (sandbox.h, host.h) and the kernel
 * confinement of recipe children (confine.h): reads under the task's folder,
 * the plugin folders and the models, writes nowhere. Two kinds of child:
 *   load: evaluate the file and return its items (no model), so a bad task
 *         fails before any model loads and the parent picks the --limit
 *         subset (pl_eval_subset) and hashes the items;
 *   run:  one per (model, task): generate for the chosen items with the
 *         model under evaluation, score each (gen_score.h; a Lua function;
 *         or the LLM judge), return one record per item.
 * The parent never runs task code. Fork before the parent's OpenMP threads
 * exist (cli/cmd_eval.c runs every task child before it loads a model). */
#ifndef PL_GEN_TASK_H
#define PL_GEN_TASK_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include "../core/error.h"
#include "sandbox.h"

typedef struct pl_gen_task {
    char *path;      /* the .lua file, as given */
    char *name;      /* task.name, default: the file name without .lua */
    char *metric;    /* the metric's name (default by scorer: exact_match, contains,
                      * regex_match, numeric_match, judge, score) */
    char *scorer;    /* exact | contains | regex | numeric | judge | function */
    char *judge;     /* the judge model's name when it is not the evaluated model ("self"), else NULL */
    cJSON *items;    /* the items (JSON objects, fields mapped), file order */
    int64_t n_items;
} pl_gen_task;

typedef struct pl_gen_task_opts {
    pl_lua_limits limits;
    int threads;          /* 0: OpenMP's default */
    int quiet;
} pl_gen_task_opts;

/* A .lua path: a generative task (any other --task is multiple choice). */
int pl_gen_task_is_lua(const char *path);

int pl_gen_task_load(pl_gen_task *t, const char *path, const pl_gen_task_opts *o, pl_err *err);
void pl_gen_task_free(pl_gen_task *t);
/* sha256 (hex) of the chosen items: their positions and canonical JSON. */
void pl_gen_task_hash(const pl_gen_task *t, const int64_t *sel, int64_t n, char hex[65]);

/* Generate and score the items at the 0-based positions sel with model
 * (resolved path) + adapter (NULL: none); judge_model: the resolved judge
 * when t->judge is set. *out: [{index, prompt, output, score (null when the
 * judge's reply was unparsable), judge, unparsed}], one per item of sel. */
int pl_gen_task_run(const pl_gen_task *t, const char *model, const char *adapter, const char *judge_model,
                    const int64_t *sel, int64_t n, int64_t seed, const pl_gen_task_opts *o, cJSON **out, pl_err *err);

#endif
