/* schedule.h: learning-rate schedules with warmup, as transformers'
 * get_{constant,linear,cosine}_schedule_with_warmup define them.
 *
 * The multiplier for optimizer step s (0-based: the first update uses s = 0,
 * as torch's LambdaLR does before its first .step()), with W warmup steps and
 * N total steps:
 *   warmup (s < W):  s / max(1, W)
 *   constant:        1
 *   linear:          max(0, (N - s) / max(1, N - W))
 *   cosine:          max(0, 0.5 * (1 + cos(pi * 2 * 0.5 * p))),  p = (s - W) / max(1, N - W)
 * A warmup ratio r gives W = ceil(r * N) (transformers' TrainingArguments). */
#ifndef PL_SCHEDULE_H
#define PL_SCHEDULE_H

#include "../core/error.h"

typedef enum pl_sched_kind { PL_SCHED_CONSTANT = 0, PL_SCHED_LINEAR, PL_SCHED_COSINE } pl_sched_kind;

/* "constant", "linear", "cosine" -> kind; PL_EINVAL with a message naming the choices. */
int pl_sched_parse(const char *s, pl_sched_kind *out, pl_err *err);
const char *pl_sched_name(pl_sched_kind k);

/* Warmup steps from a ratio in [0, 1]: ceil(ratio * total). */
int pl_sched_warmup_from_ratio(double ratio, int total);

/* The multiplier of the base learning rate at step s (0-based). */
double pl_sched_factor(pl_sched_kind k, int s, int warmup, int total);

#endif
