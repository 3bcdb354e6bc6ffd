/* pipeline.h: `potluck run`: a recipe's stages, each cached under a hash of
 * its inputs and definition, recipe code always in a sandboxed child.
 *
 * Stages: the recipe's data steps in order (source, map, filter, generate,
 * dedup, decontaminate, split, as written), then shard, train, eval, export.
 * Run directory:
 *   plan.json                    the resolved recipe (pl_host_plan) + models
 *   stages/NN-kind.name/out.jsonl   the step's samples (one JSON object a line)
 *   stages/NN-kind.name/stage.json  written last: key, counts, models used
 *   data/train, data/eval        the HDF5 datasets (shard stage)
 *   train/                       the training run (trainer/run.h layout)
 *   results.json                 eval: held-out loss of the base and the fine-tune
 *   export/                      adapter/, merged/, model.gguf as asked
 *   stages/{shard,train,eval,export}.json   their keys, written last
 * A stage is redone when its key differs (its definition, its input stage's
 * key, or a model it used changed), with --force, or from --from on; an
 * interrupted stage is redone (training resumes from its checkpoint). */
#ifndef PL_PIPELINE_H
#define PL_PIPELINE_H

#include <cjson/cJSON.h>
#include "../core/error.h"
#include "sandbox.h"

typedef struct pl_pipe_opts {
    const char *recipe;
    const char *out;        /* run directory (NULL: runs/<recipe file name>) */
    const char *base;       /* --base PATH: overrides the recipe's base */
    const char *teacher;    /* --teacher PATH */
    const char *size;       /* --size: the recipe's scale entry */
    const char *backend;    /* "cpu" (NULL) or "cuda" */
    const char *from, *only;/* stage names, labels or numbers */
    const char *to;         /* stop after this stage */
    int force;
    int dry_run;            /* --dry-run: plan (recipe and memory), write plan.json and memory_plan.json, run nothing */
    int no_memory_check;    /* --no-memory-check: train even when the memory plan exceeds this machine's memory */
    const char *gpu_mem;    /* --gpu-mem SIZE: with cuda, the device memory the training may use (train.gpu_mem) */
    int threads;            /* 0: OpenMP's default */
    int quiet;
    pl_lua_limits limits;
    const char *allow_read[PL_SANDBOX_MAX_ALLOW]; /* --allow-read: more paths recipe code may read */
    int n_allow_read;
    /* The command line that started the run (program name first), or NULL.
     * libgomp is not fork-safe once its thread pool exists: a child forked
     * after training in this process would hang in its first parallel
     * region. When eval still needs a recipe child after training ran here,
     * the run re-executes itself with this command line and --from eval. */
    char **argv;
    int argc;
} pl_pipe_opts;

/* Evaluate the recipe in a child and return its plan (no run directory
 * needed; nothing is written). */
int pl_pipeline_plan(const pl_pipe_opts *o, cJSON **plan, pl_err *err);

/* Resolve a model name: an existing path (absolute, or relative to the
 * current directory when given on the command line), else NAME, NAME.gguf,
 * NAME*.gguf and the last path component of NAME inside each folder of
 * $POTLUCK_MODELS (':'-separated; default $POTLUCK_CACHE/models, then
 * ~/.cache/potluck/models). *out malloc'd. */
int pl_model_resolve(const char *name, int from_cli, char **out, pl_err *err);

/* Run the recipe. Returns 0, PL_EINVAL-like errors with err filled, or 130/143 when
 * interrupted by SIGINT/SIGTERM (training checkpointed). */
int pl_pipeline_run(const pl_pipe_opts *o, pl_err *err);

#endif
