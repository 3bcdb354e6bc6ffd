/* schedule.c: learning-rate schedules with warmup (see schedule.h). */
#include <math.h>
#include <string.h>

#include "schedule.h"

static const char *const sched_names[] = {"constant", "linear", "cosine"};

int pl_sched_parse(const char *s, pl_sched_kind *out, pl_err *err) {
    for (int k = 0; k < 3; k++)
        if (s && !strcmp(s, sched_names[k])) {
            *out = (pl_sched_kind)k;
            return PL_OK;
        }
    return pl_err_set(err, PL_EINVAL, "schedule: expected constant, linear or cosine, got \"%s\"", s ? s : "");
}

const char *pl_sched_name(pl_sched_kind k) {
    return (unsigned)k < 3 ? sched_names[k] : "?";
}

int pl_sched_warmup_from_ratio(double ratio, int total) {
    if (!(ratio > 0) || total <= 0) return 0;
    double w = ceil(ratio * (double)total);
    return w > total ? total : (int)w;
}

double pl_sched_factor(pl_sched_kind k, int s, int warmup, int total) {
    if (s < warmup) return (double)s / (double)(warmup > 1 ? warmup : 1);
    double span = (double)(total - warmup > 1 ? total - warmup : 1);
    switch (k) {
    case PL_SCHED_LINEAR: {
        double f = (double)(total - s) / span;
        return f > 0 ? f : 0;
    }
    case PL_SCHED_COSINE: {
        double p = (double)(s - warmup) / span;
        double f = 0.5 * (1.0 + cos(M_PI * 2.0 * 0.5 * p));
        return f > 0 ? f : 0;
    }
    default:
        return 1.0;
    }
}
