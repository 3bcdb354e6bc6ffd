/* report.h: `potluck report`: a run directory as one self-contained HTML
 * page (inline SVG curves, the eval table, the resolved recipe, the dataset
 * card; no scripts, no network). */
#ifndef PL_REPORT_H
#define PL_REPORT_H

#include "../core/error.h"

/* run_dir: a `potluck run` directory (train/metrics.jsonl, plan.json,
 * results.json, data/train/card.md) or a `potluck train` directory
 * (metrics.jsonl). Written atomically to out. */
int pl_report_write(const char *run_dir, const char *out, pl_err *err);

#endif
