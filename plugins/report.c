/* report.c: `potluck report`: one self-contained HTML page for a run
 * directory (report.h): inline SVG curves (train and held-out loss,
 * learning rate, throughput, memory), the eval table of results.json, the
 * resolved recipe and the dataset card. No scripts, no external assets. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/atomic.h"
#include "../core/json.h"
#include "report.h"

typedef struct sb { char *p; size_t n, cap; int oom; } sb;

static void put(sb *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = (b->cap + n + 1) * 2;
        char *np = realloc(b->p, nc);
        if (!np) { b->oom = 1; return; }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void pf(sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void pf(sb *b, const char *fmt, ...) {
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if ((size_t)k < sizeof tmp) { put(b, tmp, (size_t)k); return; }
    char *big = malloc((size_t)k + 1);
    if (!big) { b->oom = 1; return; }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)k + 1, fmt, ap);
    va_end(ap);
    put(b, big, (size_t)k);
    free(big);
}

/* HTML-escaped text */
static void esc(sb *b, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '<': put(b, "&lt;", 4); break;
        case '>': put(b, "&gt;", 4); break;
        case '&': put(b, "&amp;", 5); break;
        case '"': put(b, "&quot;", 6); break;
        default: put(b, s, 1);
        }
    }
}

typedef struct series {
    const char *name, *color;
    double *x, *y;
    int n, dots;   /* dots: draw points (sparse series such as eval loss) */
} series;

/* a tick label with as many decimals as ticks `step` apart need */
static void fmt_num(char *out, size_t n, double v, double step) {
    if (fabs(v) >= 1e6 || (fabs(v) < 1e-3 && v != 0 && step < 1e-3)) { snprintf(out, n, "%.3g", v); return; }
    int d = step > 0 ? (int)ceil(-log10(step)) + 1 : 2;
    if (d < 0) d = 0;
    if (d > 8) d = 8;
    snprintf(out, n, "%.*f", d, v);
}

/* A line chart of several series over one x axis. */
static void chart(sb *b, const char *id, const char *title, const char *ylabel, const series *s, int ns) {
    const double W = 660, H = 260, L = 84, R = 16, T = 28, B = 40;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    int any = 0;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < s[k].n; i++) {
            if (!isfinite(s[k].x[i]) || !isfinite(s[k].y[i])) continue;
            any = 1;
            x0 = fmin(x0, s[k].x[i]); x1 = fmax(x1, s[k].x[i]);
            y0 = fmin(y0, s[k].y[i]); y1 = fmax(y1, s[k].y[i]);
        }
    pf(b, "<figure><svg id=\"%s\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" height=\"%.0f\" role=\"img\">\n",
       id, W, H, W, H);
    pf(b, "<title>");
    esc(b, title);
    pf(b, "</title>\n<text x=\"%.0f\" y=\"18\" class=\"t\">", L);
    esc(b, title);
    pf(b, "</text>\n");
    if (!any) {
        pf(b, "<text x=\"%.0f\" y=\"%.0f\" class=\"l\">no data</text></svg></figure>\n", W / 2 - 30, H / 2);
        return;
    }
    if (x1 == x0) { x0 -= 1; x1 += 1; }
    if (y1 == y0) { double d = fabs(y0) > 0 ? fabs(y0) * 0.05 : 1; y0 -= d; y1 += d; }
    double pad = (y1 - y0) * 0.05;
    y0 -= pad; y1 += pad;
#define PX(v) (L + ((v) - x0) / (x1 - x0) * (W - L - R))
#define PY(v) (H - B - ((v) - y0) / (y1 - y0) * (H - T - B))
    pf(b, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" class=\"frame\"/>\n", L, T, W - L - R, H - T - B);
    for (int g = 0; g <= 4; g++) {
        double yv = y0 + (y1 - y0) * g / 4, xv = x0 + (x1 - x0) * g / 4;
        char a[32], c[32];
        fmt_num(a, sizeof a, yv, (y1 - y0) / 4);
        if (x1 - x0 >= 4) snprintf(c, sizeof c, "%.0f", xv); /* steps */
        else fmt_num(c, sizeof c, xv, (x1 - x0) / 4);
        pf(b, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" class=\"grid\"/><text x=\"%.1f\" y=\"%.1f\" class=\"l\" text-anchor=\"end\">%s</text>\n",
           L, W - R, PY(yv), PY(yv), L - 4, PY(yv) + 4, a);
        pf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"l\" text-anchor=\"middle\">%s</text>\n", PX(xv), H - B + 16, c);
    }
    pf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"l\" text-anchor=\"middle\">step</text>\n", L + (W - L - R) / 2, H - 6);
    pf(b, "<text x=\"12\" y=\"%.1f\" class=\"l\" transform=\"rotate(-90 12 %.1f)\" text-anchor=\"middle\">", T + (H - T - B) / 2, T + (H - T - B) / 2);
    esc(b, ylabel);
    pf(b, "</text>\n");
    for (int k = 0; k < ns; k++) {
        if (s[k].n == 0) continue;
        if (!s[k].dots || s[k].n > 1) {
            pf(b, "<polyline class=\"series\" data-series=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\" points=\"", s[k].name, s[k].color);
            for (int i = 0; i < s[k].n; i++)
                if (isfinite(s[k].y[i])) pf(b, "%.1f,%.1f ", PX(s[k].x[i]), PY(s[k].y[i]));
            pf(b, "\"/>\n");
        }
        if (s[k].dots)
            for (int i = 0; i < s[k].n; i++)
                if (isfinite(s[k].y[i])) pf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n", PX(s[k].x[i]), PY(s[k].y[i]), s[k].color);
        pf(b, "<rect x=\"%.0f\" y=\"%.0f\" width=\"10\" height=\"10\" fill=\"%s\"/><text x=\"%.0f\" y=\"%.0f\" class=\"l\">", W - R - 150, T + 8 + 16.0 * k,
           s[k].color, W - R - 136, T + 17 + 16.0 * k);
        esc(b, s[k].name);
        pf(b, "</text>\n");
    }
#undef PX
#undef PY
    pf(b, "</svg></figure>\n");
}

static char *slurp(const char *path, size_t max) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max, f) : 0;
    fclose(f);
    if (buf) buf[n] = 0;
    return buf;
}

typedef struct arr { double *v; int n, cap; } arr;
static void push(arr *a, double v) {
    if (a->n == a->cap) {
        int nc = a->cap ? a->cap * 2 : 64;
        double *nv = realloc(a->v, (size_t)nc * sizeof *nv);
        if (!nv) return;
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->n++] = v;
}

static const char *CSS =
    "body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:980px;color:#1d2330;padding:0 1em}"
    "h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #dde;padding-bottom:.2em}"
    ".sub{color:#667}table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccd;padding:.25em .6em;text-align:right}"
    "th{background:#f1f3f8}td:first-child,th:first-child{text-align:left}pre{background:#f6f7fa;padding:.8em;overflow:auto;max-height:28em;font-size:13px}"
    "figure{margin:.8em 0}svg.chart{background:#fff;max-width:100%;height:auto}.frame{fill:#fbfcfe;stroke:#ccd}.grid{stroke:#e4e7ef}"
    ".t{font:600 14px system-ui,sans-serif;fill:#1d2330}.l{font:11px system-ui,sans-serif;fill:#556}.kv td{text-align:left}"
    "td.ans{text-align:left;vertical-align:top;white-space:pre-wrap;font-size:13px;max-width:16em}#answers th{text-align:left}";

int pl_report_write(const char *run_dir, const char *out, pl_err *err) {
    char p[4200];
    struct stat st;
    /* a potluck run (train/metrics.jsonl) or a training run directory */
    snprintf(p, sizeof p, "%s/train/metrics.jsonl", run_dir);
    int is_run = stat(p, &st) == 0;
    if (!is_run) snprintf(p, sizeof p, "%s/metrics.jsonl", run_dir);
    FILE *f = fopen(p, "r");
    if (!f) return pl_err_set(err, PL_ENOTFOUND, "%s: no train/metrics.jsonl or metrics.jsonl (is it a potluck run directory?)", run_dir);
    arr step = {0}, loss = {0}, lr = {0}, tps = {0}, rss = {0}, est = {0}, evl = {0};
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        cJSON *j = cJSON_Parse(line);
        if (!j) continue;
        double s = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "step"));
        const cJSON *lo = cJSON_GetObjectItem(j, "loss"), *el = cJSON_GetObjectItem(j, "eval_loss");
        if (cJSON_IsNumber(lo) && isfinite(s)) {
            push(&step, s);
            push(&loss, lo->valuedouble);
            push(&lr, cJSON_GetNumberValue(cJSON_GetObjectItem(j, "lr")));
            push(&tps, cJSON_GetNumberValue(cJSON_GetObjectItem(j, "tokens_per_s")));
            const cJSON *r = cJSON_GetObjectItem(j, "rss_peak");
            push(&rss, cJSON_IsNumber(r) ? r->valuedouble / 1048576.0 : NAN);
        }
        if (cJSON_IsNumber(el) && isfinite(s)) { push(&est, s); push(&evl, el->valuedouble); }
        cJSON_Delete(j);
    }
    free(line);
    fclose(f);
    cJSON *plan = NULL, *res = NULL;
    pl_err e2 = {0};
    snprintf(p, sizeof p, "%s/plan.json", run_dir);
    if (stat(p, &st) == 0) pl_json_load(p, (size_t)16 << 20, &plan, &e2);
    snprintf(p, sizeof p, "%s/results.json", run_dir);
    if (stat(p, &st) == 0) pl_json_load(p, (size_t)64 << 20, &res, &e2);
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(plan, "name"));
    sb b = {0};
    pf(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
           "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n"
           "<title>potluck report: ");
    esc(&b, name ? name : run_dir);
    pf(&b, "</title>\n<style>%s</style></head><body>\n<h1>", CSS);
    esc(&b, name ? name : "potluck run");
    pf(&b, "</h1>\n<p class=\"sub\">");
    esc(&b, run_dir);
    const char *base = cJSON_GetStringValue(cJSON_GetObjectItem(res, "base"));
    if (base && *base) { pf(&b, " &middot; base "); esc(&b, base); }
    pf(&b, " &middot; %d steps</p>\n", step.n ? (int)step.v[step.n - 1] : 0);

    /* summary */
    double b0 = NAN, bf = NAN;
    for (int i = 0; i < est.n; i++) { if (est.v[i] == 0) b0 = evl.v[i]; else bf = evl.v[i]; }
    if (isfinite(b0) && isfinite(bf))
        pf(&b, "<p><b>Held-out loss %.4f (base) &rarr; %.4f (fine-tuned)</b>, %+.1f%%; perplexity %.2f &rarr; %.2f.</p>\n", b0, bf,
           100 * (bf - b0) / b0, exp(b0), exp(bf));

    pf(&b, "<h2>Training</h2>\n");
    series ls[2] = {{"train loss", "#2b6cb0", step.v, loss.v, step.n, 0}, {"held-out loss", "#d9480f", est.v, evl.v, est.n, 1}};
    chart(&b, "loss", "Loss", "loss (nats/token)", ls, 2);
    series lrs[1] = {{"learning rate", "#2f9e44", step.v, lr.v, step.n, 0}};
    chart(&b, "lr", "Learning rate", "lr", lrs, 1);
    series ts[1] = {{"tokens/s", "#7048e8", step.v, tps.v, step.n, 0}};
    chart(&b, "throughput", "Throughput", "tokens/s", ts, 1);
    series ms[1] = {{"peak RSS (MiB)", "#c2255c", step.v, rss.v, step.n, 0}};
    chart(&b, "memory", "Memory", "MiB", ms, 1);

    /* eval table */
    const cJSON *rows = cJSON_GetObjectItem(res, "rows");
    if (cJSON_IsArray(rows) && cJSON_GetArraySize(rows) > 0) {
        pf(&b, "<h2>Evaluation</h2>\n<table id=\"eval\"><tr><th>variant</th><th>task</th><th>metric</th><th>value</th><th>stderr</th><th>n</th></tr>\n");
        const cJSON *r;
        cJSON_ArrayForEach(r, rows) {
            pf(&b, "<tr><td>");
            esc(&b, cJSON_GetStringValue(cJSON_GetObjectItem(r, "variant")));
            pf(&b, "</td><td>");
            esc(&b, cJSON_GetStringValue(cJSON_GetObjectItem(r, "task")));
            pf(&b, "</td><td>");
            esc(&b, cJSON_GetStringValue(cJSON_GetObjectItem(r, "metric")));
            const cJSON *v = cJSON_GetObjectItem(r, "value"), *se = cJSON_GetObjectItem(r, "stderr"), *n = cJSON_GetObjectItem(r, "n");
            if (cJSON_IsNumber(v)) pf(&b, "</td><td>%.4f", v->valuedouble); else pf(&b, "</td><td>n/a");
            if (cJSON_IsNumber(se)) pf(&b, "</td><td>%.4f", se->valuedouble); else pf(&b, "</td><td>");
            if (cJSON_IsNumber(n) && n->valuedouble > 0) pf(&b, "</td><td>%.0f</td></tr>\n", n->valuedouble); else pf(&b, "</td><td></td></tr>\n");
        }
        pf(&b, "</table>\n");
    }
    /* the same held-out prompts answered by both (results.json "answers") */
    const cJSON *ans = cJSON_GetObjectItem(res, "answers");
    if (cJSON_IsArray(ans) && cJSON_GetArraySize(ans) > 0) {
        pf(&b, "<h2>Answers side by side</h2>\n<p class=\"sub\">held-out prompts, greedy; the reference is the "
               "held-out sample's own answer</p>\n<table id=\"answers\"><tr><th>prompt</th><th>base</th>"
               "<th>fine-tuned</th><th>reference</th></tr>\n");
        const cJSON *a;
        cJSON_ArrayForEach(a, ans) {
            static const char *const K[4] = {"prompt", "base", "fine_tuned", "reference"};
            pf(&b, "<tr>");
            for (int k = 0; k < 4; k++) {
                pf(&b, "<td class=\"ans\">");
                esc(&b, cJSON_GetStringValue(cJSON_GetObjectItem(a, K[k])));
                pf(&b, "</td>");
            }
            pf(&b, "</tr>\n");
        }
        pf(&b, "</table>\n");
    }
    const cJSON *met = cJSON_GetObjectItem(res, "metrics");
    if (cJSON_IsObject(met)) {
        pf(&b, "<h3>Recipe metrics</h3>\n<table class=\"kv\">");
        const cJSON *it;
        cJSON_ArrayForEach(it, met) {
            char *v = cJSON_PrintUnformatted(it);
            pf(&b, "<tr><td>");
            esc(&b, it->string);
            pf(&b, "</td><td>");
            esc(&b, v);
            pf(&b, "</td></tr>");
            free(v);
        }
        pf(&b, "</table>\n");
    }
    if (plan) {
        char *ps = cJSON_Print(plan);
        pf(&b, "<h2>Resolved recipe</h2>\n<pre id=\"recipe\">");
        esc(&b, ps);
        pf(&b, "</pre>\n");
        free(ps);
    }
    snprintf(p, sizeof p, "%s/data/train/card.md", run_dir);
    char *card = slurp(p, 1 << 20);
    if (card) {
        pf(&b, "<h2>Dataset card</h2>\n<pre id=\"card\">");
        esc(&b, card);
        pf(&b, "</pre>\n");
        free(card);
    }
    pf(&b, "<p class=\"sub\">written by potluck report</p>\n</body></html>\n");
    cJSON_Delete(plan);
    cJSON_Delete(res);
    free(step.v); free(loss.v); free(lr.v); free(tps.v); free(rss.v); free(est.v); free(evl.v);
    if (b.oom) { free(b.p); return pl_err_set(err, PL_ENOMEM, "report: out of memory"); }
    int rc = pl_write_file_atomic(out, b.p, b.n, err);
    free(b.p);
    return rc;
}
