/* run_metrics.c: metrics.jsonl: one JSON line per step and eval,
 * appended durably and cut back to a checkpoint on resume. */
#include "run_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/atomic.h"
#include "../core/json.h"
#include "../core/mapfile.h"
#include "../core/rng.h"
#include "../core/sha256.h"
#include "../datasets/loader.h"
#include "../datasets/tokenizer.h"
#include "model_lora.h"
#include "model_nf4.h"
#include "checkpoint.h"
#include "run.h"
#include "schedule.h"
#include "train.h"

/* ------------------------------------------------------------ metrics */

/* Keep the metrics lines of steps <= step (drops what a killed run wrote after its last checkpoint). */
int run_metrics_truncate(run *r, int step, pl_err *err) {
    char *buf = NULL;
    size_t len = 0;
    pl_err e2 = {0};
    if (pl_read_file(r->metrics, (size_t)1 << 30, &buf, &len, &e2)) return PL_OK; /* none yet */
    char *out = malloc(len + 1);
    if (!out) { free(buf); return pl_err_set(err, PL_ENOMEM, "run: out of memory"); }
    size_t ol = 0;
    char *p = buf, *end = buf + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) break; /* a torn last line */
        cJSON *j = cJSON_ParseWithLength(p, (size_t)(nl - p));
        const cJSON *s = j ? cJSON_GetObjectItemCaseSensitive(j, "step") : NULL;
        if (cJSON_IsNumber(s) && s->valuedouble <= step) {
            memcpy(out + ol, p, (size_t)(nl - p) + 1);
            ol += (size_t)(nl - p) + 1;
        }
        cJSON_Delete(j);
        p = nl + 1;
    }
    int rc = pl_write_file_atomic(r->metrics, out, ol, err);
    free(out);
    free(buf);
    return rc;
}

/* Append one line with a single write, then fsync. */
int run_metrics_append(run *r, cJSON *j, pl_err *err) {
    char *s = cJSON_PrintUnformatted(j);
    if (!s) return pl_err_set(err, PL_ENOMEM, "run: out of memory");
    size_t n = strlen(s);
    char *line = realloc(s, n + 2);
    if (!line) { free(s); return pl_err_set(err, PL_ENOMEM, "run: out of memory"); }
    line[n] = '\n';
    line[n + 1] = 0;
    int fd = open(r->metrics, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int rc = PL_OK;
    if (fd < 0) rc = pl_err_set(err, PL_EIO, "%s: %s", r->metrics, strerror(errno));
    else {
        ssize_t w = write(fd, line, n + 1);
        if (w != (ssize_t)(n + 1)) rc = pl_err_set(err, PL_EIO, "%s: write: %s", r->metrics, strerror(errno));
        else if (fsync(fd)) rc = pl_err_set(err, PL_EIO, "%s: fsync: %s", r->metrics, strerror(errno));
        close(fd);
    }
    free(line);
    return rc;
}

void run_add_mem(cJSON *j, const pl_backend *be) {
    cJSON *m = cJSON_AddObjectToObject(j, "mem_peak");
    for (int k = 0; m && k < PL_MEM_NCAT; k++) cJSON_AddNumberToObject(m, pl_mem_cat_name((pl_mem_cat)k), (double)pl_mem_peak((pl_mem_cat)k));
    /* a device backend: the most device bytes held at once (the categories
     * peak at different times, and with --paged-optim "optimizer" counts the
     * moments that live in host memory) */
    if (be && be->mem_device_peak) cJSON_AddNumberToObject(j, "device_peak", (double)be->mem_device_peak());
    struct rusage ru;
    if (!getrusage(RUSAGE_SELF, &ru)) cJSON_AddNumberToObject(j, "rss_peak", (double)ru.ru_maxrss * 1024.0);
}
