/* progress.c: the progress reporter (progress.h): a redrawn line on a
 * terminal, plain periodic lines otherwise, a final line in both. */
#include "progress.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define PL_PROGRESS_REDRAW_S 0.1 /* at most 10 redraws a second */
#define PL_PROGRESS_EVERY_S 10.0 /* plain lines, by default */
#define PL_PROGRESS_BAR 20

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double now_of(const pl_progress *p) { return p->clock ? p->clock() : mono_now(); }
static FILE *out_of(const pl_progress *p) { return p->out ? p->out : stderr; }

pl_progress_mode pl_progress_mode_env(void) {
    const char *e = getenv("POTLUCK_PROGRESS");
    if (e && *e) {
        if (!strcasecmp(e, "tty")) return PL_PROGRESS_TTY;
        if (!strcasecmp(e, "plain")) return PL_PROGRESS_PLAIN;
        if (!strcasecmp(e, "off") || !strcmp(e, "0") || !strcasecmp(e, "none") || !strcasecmp(e, "no"))
            return PL_PROGRESS_OFF;
    }
    return isatty(2) ? PL_PROGRESS_TTY : PL_PROGRESS_PLAIN;
}

char *pl_progress_fmt_duration(double s, char *buf, size_t n) {
    if (!(s >= 0) || s > 1e9) {
        snprintf(buf, n, "-:--");
        return buf;
    }
    long t = (long)(s + 0.5), h = t / 3600, m = t / 60 % 60, sec = t % 60;
    if (h) snprintf(buf, n, "%ld:%02ld:%02ld", h, m, sec);
    else snprintf(buf, n, "%ld:%02ld", m, sec);
    return buf;
}

char *pl_progress_fmt_rate(double r, char *buf, size_t n) {
    if (!(r >= 0) || isinf(r)) snprintf(buf, n, "-");
    else if (r == 0) snprintf(buf, n, "0");
    else if (r < 1) {
        int dec = 2 - (int)floor(log10(r));
        snprintf(buf, n, "%.*f", dec > 6 ? 6 : dec, r);
    } else if (r < 10) snprintf(buf, n, "%.2f", r);
    else if (r < 100) snprintf(buf, n, "%.1f", r);
    else snprintf(buf, n, "%.0f", r);
    return buf;
}

/* seconds since begin; units a second over that time (NAN before any time passed) */
static double rate_of(const pl_progress *p, double now, double *elapsed) {
    double e = now - p->t0;
    if (elapsed) *elapsed = e;
    return e > 0 ? (double)(p->done - p->done0) / e : NAN;
}

/* "done/total unit" or "done unit" */
static int fmt_count(const pl_progress *p, char *buf, size_t n) {
    if (p->total > 0)
        return snprintf(buf, n, "%lld/%lld %s", (long long)p->done, (long long)p->total, p->unit);
    return snprintf(buf, n, "%lld %s", (long long)p->done, p->unit);
}

/* ETA text, or "" when there is no total or nothing is left */
static void fmt_eta(const pl_progress *p, double rate, char *buf, size_t n) {
    buf[0] = 0;
    if (p->total <= 0 || p->done >= p->total) return;
    char d[32];
    pl_progress_fmt_duration(rate > 0 ? (double)(p->total - p->done) / rate : NAN, d, sizeof d);
    snprintf(buf, n, "ETA %s", d);
}

static void emit(pl_progress *p, const char *s) {
    FILE *f = out_of(p);
    fputs(s, f);
    fflush(f);
}

/* The parts both kinds of line show: the count, the rate, the ETA. */
static void line_parts(const pl_progress *p, double now, char cnt[160], char r[32], char eta[48]) {
    double rate = rate_of(p, now, NULL);
    fmt_count(p, cnt, 160);
    pl_progress_fmt_rate(rate, r, 32);
    fmt_eta(p, rate, eta, 48);
}

static void draw_tty(pl_progress *p, double now) {
    char line[768], cnt[160], r[32], eta[48];
    line_parts(p, now, cnt, r, eta);
    int l;
    if (p->total > 0) {
        char bar[PL_PROGRESS_BAR + 1];
        int64_t d = p->done < 0 ? 0 : p->done > p->total ? p->total : p->done;
        int fill = (int)((double)d * PL_PROGRESS_BAR / (double)p->total);
        for (int i = 0; i < PL_PROGRESS_BAR; i++) bar[i] = i < fill ? '#' : '.';
        bar[PL_PROGRESS_BAR] = 0;
        l = snprintf(line, sizeof line, "%s  [%s]  %s  %s %s/s%s%s", p->label, bar, cnt, r, p->unit, *eta ? "  " : "", eta);
    } else {
        l = snprintf(line, sizeof line, "%s  %s  %s %s/s", p->label, cnt, r, p->unit);
    }
    if (p->note[0] && l >= 0 && (size_t)l < sizeof line) snprintf(line + l, sizeof line - (size_t)l, "  %s", p->note);
    if (p->width > 1 && strlen(line) > (size_t)p->width - 1) line[p->width - 1] = 0;
    char out[800];
    snprintf(out, sizeof out, "\r%s\033[K", line);
    emit(p, out);
    p->shown = 1;
    p->last_draw = now;
}

static void plain_line(pl_progress *p, double now) {
    char line[768], cnt[160], r[32], eta[48];
    line_parts(p, now, cnt, r, eta);
    int l;
    if (p->total > 0) {
        double pct = 100.0 * (double)p->done / (double)p->total;
        l = snprintf(line, sizeof line, "%s: %s (%d%%), %s %s/s%s%s", p->label, cnt, (int)(pct > 100 ? 100 : pct < 0 ? 0 : pct),
                     r, p->unit, *eta ? ", " : "", eta);
    } else {
        l = snprintf(line, sizeof line, "%s: %s, %s %s/s", p->label, cnt, r, p->unit);
    }
    if (p->note[0] && l >= 0 && (size_t)l < sizeof line) snprintf(line + l, sizeof line - (size_t)l, ", %s", p->note);
    size_t n = strlen(line);
    if (n + 1 < sizeof line) line[n] = '\n', line[n + 1] = 0;
    emit(p, line);
    p->last_line = now;
}

void pl_progress_begin(pl_progress *p, const char *label, int64_t total, const char *unit) {
    pl_progress_clear(p); /* one left unended (a failed stage) goes without a final line */
    if (p->mode == PL_PROGRESS_AUTO) p->mode = pl_progress_mode_env();
    p->every_s = p->every;
    if (p->every == 0) {
        const char *e = getenv("POTLUCK_PROGRESS_EVERY");
        char *end = NULL;
        double v = e && *e ? strtod(e, &end) : -1;
        p->every_s = end && !*end && v >= 0 ? v : PL_PROGRESS_EVERY_S;
    }
    if (p->width == 0) {
        struct winsize ws;
        p->width = p->mode == PL_PROGRESS_TTY && !p->out && ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : -1;
    }
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    snprintf(p->unit, sizeof p->unit, "%s", unit && *unit ? unit : "items");
    p->note[0] = 0;
    p->total = total;
    p->done = p->done0 = 0;
    p->t0 = p->last_line = now_of(p);
    p->last_draw = -INFINITY;
    p->shown = 0;
    p->active = p->mode != PL_PROGRESS_OFF;
    if (p->active && p->mode == PL_PROGRESS_TTY) draw_tty(p, p->t0);
}

void pl_progress_start_at(pl_progress *p, int64_t done) {
    p->done = p->done0 = done;
    p->last_draw = -INFINITY; /* the next update draws */
}

void pl_progress_update(pl_progress *p, int64_t done) {
    p->done = done;
    if (!p->active) return;
    double now = now_of(p);
    if (p->mode == PL_PROGRESS_TTY) {
        if (now - p->last_draw >= PL_PROGRESS_REDRAW_S) draw_tty(p, now);
    } else if (p->every_s >= 0 && now - p->last_line >= p->every_s) {
        plain_line(p, now);
    }
}

void pl_progress_note(pl_progress *p, const char *fmt, ...) {
    p->note[0] = 0;
    if (!fmt) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->note, sizeof p->note, fmt, ap);
    va_end(ap);
}

void pl_progress_clear(pl_progress *p) {
    if (!p->active || !p->shown) return;
    emit(p, "\r\033[K");
    p->shown = 0;
    p->last_draw = -INFINITY;
}

void pl_progress_end(pl_progress *p) {
    if (!p->active) return;
    double now = now_of(p), elapsed;
    double rate = rate_of(p, now, &elapsed);
    char line[768], cnt[160], r[32], el[32];
    fmt_count(p, cnt, sizeof cnt);
    pl_progress_fmt_rate(rate, r, sizeof r);
    if (elapsed >= 0 && elapsed < 60) snprintf(el, sizeof el, "%.1f s", elapsed);
    else pl_progress_fmt_duration(elapsed, el, sizeof el);
    int l = snprintf(line, sizeof line, "%s%s: %s in %s, %s %s/s", p->mode == PL_PROGRESS_TTY ? "\r" : "", p->label, cnt, el,
                     r, p->unit);
    if (p->note[0] && l >= 0 && (size_t)l < sizeof line) snprintf(line + l, sizeof line - (size_t)l, ", %s", p->note);
    size_t n = strlen(line);
    const char *tail = p->mode == PL_PROGRESS_TTY ? "\033[K\n" : "\n";
    snprintf(line + n, sizeof line - n, "%s", tail);
    emit(p, line);
    p->active = 0;
    p->shown = 0;
}
