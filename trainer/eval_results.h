/* eval_results.h: results.json rows (docs/eval.md) and the side-by-side
 * table of several variants. */
#ifndef PL_EVAL_RESULTS_H
#define PL_EVAL_RESULTS_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include "../core/error.h"
#include "../core/progress.h"

/* One row: a metric of a variant on a task. value/se NAN -> null.
 * adapter and task_sha256 may be NULL. */
cJSON *pl_eval_row(const char *variant, const char *model, const char *adapter, const char *task,
                   const char *task_sha256, int64_t n, const char *metric, double value, double se);
/* Append the "rows" of a results file (checked) to rows. */
int pl_eval_rows_load(const char *path, cJSON *rows, pl_err *err);
/* {"format": "potluck-eval/1", "rows": rows}, atomically. */
int pl_eval_rows_write(const char *path, const cJSON *rows, pl_err *err);
/* The table: one line per variant, one column per task and metric,
 * "value ± stderr"; malloc'd text, NULL when out of memory. */
char *pl_eval_table(const cJSON *rows);

/* The base model and base + adapter (variants "base" and "fine-tuned") on
 * each multiple-choice task file, the same `limit` items (eval_run.c);
 * their acc, acc_norm and acc_llamacpp rows appended to rows. progress
 * (NULL: none): a line per variant and task, "eval base on TASK", in items.
 * answers (eval_side.h; NULL: none) are made by the same loaded models; a
 * model without a chat template makes none, and *answers_skipped (when
 * given) receives why. */
struct pl_answers;
int pl_eval_base_and_tuned(const char *base, const char *adapter, const char *const *tasks, int n_tasks, int64_t limit,
                           uint64_t seed, cJSON *rows, pl_progress *progress, struct pl_answers *answers,
                           pl_err *answers_skipped, pl_err *err);

#endif
