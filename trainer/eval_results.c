/* eval_results.c: results.json rows and the side-by-side table
 * (docs/eval.md). A row is one (variant, task, metric) value with its
 * standard error; files from several runs or peers are read together. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/json.h"
#include "eval.h"
#include "eval_results.h"

cJSON *pl_eval_row(const char *variant, const char *model, const char *adapter, const char *task,
                   const char *task_sha256, int64_t n, const char *metric, double value, double se) {
    cJSON *r = cJSON_CreateObject();
    if (!r) return NULL;
    cJSON_AddStringToObject(r, "variant", variant ? variant : "");
    cJSON_AddStringToObject(r, "model", model ? model : "");
    if (adapter) cJSON_AddStringToObject(r, "adapter", adapter);
    cJSON_AddStringToObject(r, "task", task);
    if (task_sha256) cJSON_AddStringToObject(r, "items_sha256", task_sha256);
    cJSON_AddNumberToObject(r, "n", (double)n);
    cJSON_AddStringToObject(r, "metric", metric);
    if (isfinite(value)) cJSON_AddNumberToObject(r, "value", value);
    else cJSON_AddNullToObject(r, "value");
    if (isfinite(se)) cJSON_AddNumberToObject(r, "stderr", se);
    else cJSON_AddNullToObject(r, "stderr");
    return r;
}

int pl_eval_rows_load(const char *path, cJSON *rows, pl_err *err) {
    cJSON *j = NULL;
    int rc = pl_json_load(path, (size_t)64 << 20, &j, err);
    if (rc) return rc;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "rows");
    if (!cJSON_IsArray(a)) {
        cJSON_Delete(j);
        return pl_err_set(err, PL_EFORMAT, "%s: expected a \"rows\" list (docs/eval.md)", path);
    }
    int i = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, a) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, "value");
        if (!cJSON_IsObject(r) || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(r, "variant")) ||
            !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(r, "task")) ||
            !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(r, "metric")) || !(cJSON_IsNumber(v) || cJSON_IsNull(v))) {
            cJSON_Delete(j);
            return pl_err_set(err, PL_EFORMAT, "%s: rows[%d]: expected \"variant\", \"task\", \"metric\" (strings) and \"value\" (a number or null)",
                              path, i);
        }
        cJSON_AddItemToArray(rows, cJSON_Duplicate(r, 1));
        i++;
    }
    cJSON_Delete(j);
    return PL_OK;
}

int pl_eval_rows_write(const char *path, const cJSON *rows, pl_err *err) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "format", "potluck-eval/1");
    cJSON_AddItemToObject(j, "rows", cJSON_Duplicate(rows, 1));
    int rc = pl_json_write(path, j, err);
    cJSON_Delete(j);
    return rc;
}

typedef struct sbuf { char *p; size_t n, cap; int oom; } sbuf;
static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if (b->n + (size_t)k + 1 > b->cap) {
        size_t nc = (b->cap + (size_t)k + 1) * 2;
        char *np = realloc(b->p, nc);
        if (!np) { b->oom = 1; return; }
        b->p = np;
        b->cap = nc;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

static const char *sget(const cJSON *r, const char *k) {
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, k));
    return s ? s : "";
}

/* index of s in list (adding it) */
static int intern(const char ***list, int *n, const char *s) {
    for (int i = 0; i < *n; i++)
        if (!strcmp((*list)[i], s)) return i;
    const char **nl = realloc(*list, (size_t)(*n + 1) * sizeof *nl);
    if (!nl) return -1;
    *list = nl;
    nl[*n] = s;
    return (*n)++;
}

char *pl_eval_table(const cJSON *rows) {
    const char **vars = NULL, **cols = NULL;
    int nv = 0, ncol = 0;
    const cJSON *r;
    char key[512];
    /* columns: task/metric, in first-seen order */
    char **colkeys = NULL;
    int nck = 0;
    cJSON_ArrayForEach(r, rows) {
        intern(&vars, &nv, sget(r, "variant"));
        snprintf(key, sizeof key, "%s %s", sget(r, "task"), sget(r, "metric"));
        int found = -1;
        for (int i = 0; i < nck; i++) if (!strcmp(colkeys[i], key)) found = i;
        if (found < 0) {
            char **nk = realloc(colkeys, (size_t)(nck + 1) * sizeof *nk);
            if (!nk) break;
            colkeys = nk;
            colkeys[nck++] = strdup(key);
        }
    }
    (void)cols; (void)ncol;
    sbuf b = {0};
    int vw = 7;
    for (int i = 0; i < nv; i++) if ((int)strlen(vars[i]) > vw) vw = (int)strlen(vars[i]);
    int cw = 18;
    for (int c = 0; c < nck; c++) if (colkeys[c] && (int)strlen(colkeys[c]) > cw) cw = (int)strlen(colkeys[c]);
    sb_printf(&b, "%-*s", vw, "variant");
    for (int c = 0; c < nck; c++) sb_printf(&b, "  %*s", cw, colkeys[c] ? colkeys[c] : "?");
    sb_printf(&b, "\n");
    for (int v = 0; v < nv; v++) {
        sb_printf(&b, "%-*s", vw, vars[v]);
        for (int c = 0; c < nck; c++) {
            const cJSON *hit = NULL;
            int differ = 0;
            const char *h0 = NULL;
            cJSON_ArrayForEach(r, rows) {
                snprintf(key, sizeof key, "%s %s", sget(r, "task"), sget(r, "metric"));
                if (!colkeys[c] || strcmp(key, colkeys[c])) continue;
                const char *h = sget(r, "items_sha256");
                if (*h) { if (h0 && strcmp(h0, h)) differ = 1; if (!h0) h0 = h; }
                if (!strcmp(sget(r, "variant"), vars[v])) hit = r;
            }
            char cell[96] = "-";
            if (hit) {
                const cJSON *val = cJSON_GetObjectItemCaseSensitive(hit, "value"), *se = cJSON_GetObjectItemCaseSensitive(hit, "stderr");
                if (cJSON_IsNumber(val) && cJSON_IsNumber(se))
                    snprintf(cell, sizeof cell, "%.4f ± %.4f%s", val->valuedouble, se->valuedouble, differ ? "*" : "");
                else if (cJSON_IsNumber(val)) snprintf(cell, sizeof cell, "%.4f%s", val->valuedouble, differ ? "*" : "");
                else snprintf(cell, sizeof cell, "n/a");
            }
            /* "±" is 2 bytes, 1 column */
            int extra = strstr(cell, "±") ? 1 : 0;
            sb_printf(&b, "  %*s", cw + extra, cell);
        }
        sb_printf(&b, "\n");
    }
    int any_differ = 0;
    for (int c = 0; c < nck; c++) {
        const char *h0 = NULL;
        cJSON_ArrayForEach(r, rows) {
            snprintf(key, sizeof key, "%s %s", sget(r, "task"), sget(r, "metric"));
            if (!colkeys[c] || strcmp(key, colkeys[c])) continue;
            const char *h = sget(r, "items_sha256");
            if (*h) { if (h0 && strcmp(h0, h)) any_differ = 1; if (!h0) h0 = h; }
        }
    }
    if (any_differ) sb_printf(&b, "* the rows of this column scored different items (items_sha256 differs)\n");
    for (int c = 0; c < nck; c++) free(colkeys[c]);
    free(colkeys);
    free(vars);
    if (b.oom) { free(b.p); return NULL; }
    if (!b.p) return strdup("");
    return b.p;
}
