/* run_finish.h: what `potluck run` adds after training, beside its export
 * stage (run_finish.c): the exported GGUF's drift from the merged model, the
 * report, and the summary that ends the run. */
#ifndef PL_RUN_FINISH_H
#define PL_RUN_FINISH_H

#include <cjson/cJSON.h>
#include "../core/error.h"

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
