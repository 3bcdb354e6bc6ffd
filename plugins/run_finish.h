/* run_finish.h: what `potluck run` adds after training, beside its eval and
 * export stages (run_finish.c): the base's and the fine-tune's answers to the
 * same held-out prompts, the exported GGUF's drift from the merged model,
 * the report, and the summary that ends the run. */
#ifndef PL_RUN_FINISH_H
#define PL_RUN_FINISH_H

#include <cjson/cJSON.h>
#include "../core/error.h"

/* The eval section's `answers` held-out prompts (RUN/stages/shard/eval.jsonl)
 * answered by the base and by base + adapter: res["answers"]. Nothing when
 * the run has no eval split or answers is 0. */
int pl_run_answers(const char *run_dir, const char *base, const char *adapter, const cJSON *eval, cJSON *res,
                   int quiet, pl_err *err);

/* After the export stage: with a GGUF exported and export.kl, its KL
 * divergence from the merged model (RUN/export/merged when exported, else
 * base + adapter) on the run's samples (the eval split's, then the training
 * split's, at most 16 KiB of text) replaces the rows of task "export-kl" in
 * RUN/results.json. */
int pl_run_export_kl(const char *run_dir, const char *base, const char *adapter, const cJSON *plan, int quiet,
                     pl_err *err);

/* RUN/report.html (plugins/report.c), then (unless quiet) the summary on
 * stdout: what improved and by how much, the files written, the commands to
 * try next. Nothing when the run stopped before training. */
int pl_run_finish(const char *run_dir, const char *recipe, int quiet, pl_err *err);

#endif
