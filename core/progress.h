/* progress.h: one progress reporter for every long stage (generation,
 * filters, sharding, training, eval, model init), on stderr.
 *
 * On a terminal: one line redrawn in place, at most every 0.1 s,
 *
 *   label  [#########...........]  123/456 items  12.3 items/s  ETA 0:42  loss 1.2345
 *
 * Otherwise: a plain line at most every `every` seconds (default 10),
 *
 *   label: 123/456 items (26%), 12.3 items/s, ETA 0:42, loss 1.2345
 *
 * and in both modes a final line with the count, the time and the rate:
 *
 *   label: 456/456 items in 37.1 s, 12.3 items/s
 *
 * The mode comes from POTLUCK_PROGRESS: tty (the redrawn line, terminal or
 * not), plain, off (also 0, none, no); unset or anything else: tty when
 * stderr is a terminal, else plain. POTLUCK_PROGRESS_EVERY=S sets the plain
 * lines' interval in seconds (0: a line at every update). Everything printed
 * is deterministic apart from the times, rates and ETAs, which come from the
 * monotonic clock (or an injected one, for tests). A reporter belongs to one
 * thread; it never writes to stdout. */
#ifndef PL_PROGRESS_H
#define PL_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

typedef enum pl_progress_mode {
    PL_PROGRESS_AUTO = 0, /* POTLUCK_PROGRESS, else tty when stderr is a terminal */
    PL_PROGRESS_OFF,
    PL_PROGRESS_PLAIN,
    PL_PROGRESS_TTY,
} pl_progress_mode;

typedef struct pl_progress {
    /* set before pl_progress_begin (zero: the defaults); kept across stages */
    pl_progress_mode mode;  /* AUTO: resolved by begin */
    double every;           /* plain: seconds between lines; 0: the default
                             * (POTLUCK_PROGRESS_EVERY or 10); < 0: final line only */
    double (*clock)(void);  /* seconds, monotonic; NULL: CLOCK_MONOTONIC */
    FILE *out;              /* NULL: stderr */
    int width;              /* tty: the line is cut to width - 1 columns; 0: the
                             * terminal's width when there is one, else no limit */
    /* state, set by pl_progress_begin */
    char label[128], unit[32], note[160];
    int64_t total, done;    /* total <= 0: unknown (no bar, no ETA) */
    int64_t done0;          /* done before this process (pl_progress_start_at) */
    double every_s;         /* every, resolved: 0 a line at each update, < 0 none */
    double t0, last_draw, last_line;
    int active, shown;      /* begun and not ended; a tty line is on screen */
} pl_progress;

/* The mode POTLUCK_PROGRESS and isatty(2) give (never AUTO). */
pl_progress_mode pl_progress_mode_env(void);

/* Start a stage: total units of unit ("samples", "steps"); total <= 0 when
 * unknown. Resolves p->mode, p->every and p->width on first use. A stage
 * begun and never ended (it failed) is dropped without a final line. */
void pl_progress_begin(pl_progress *p, const char *label, int64_t total, const char *unit);

/* done units were done before this process (a resumed run): the rate and
 * the ETA count from there. Call after begin. */
void pl_progress_start_at(pl_progress *p, int64_t done);

/* done units so far (may pass total: the bar stays full, no ETA). Draws when
 * the throttle allows. */
void pl_progress_update(pl_progress *p, int64_t done);

/* Text shown after the rate until changed ("loss 1.2345"); NULL or "" clears it. */
void pl_progress_note(pl_progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Before printing other lines to the terminal: takes the redrawn line off
 * the screen (the next update draws it again). Nothing in the other modes. */
void pl_progress_clear(pl_progress *p);

/* The final line; the reporter can begin again. Nothing if not begun. */
void pl_progress_end(pl_progress *p);

/* "0:42", "1:02:03": whole seconds (negative or NaN: "-:--"). Returns buf. */
char *pl_progress_fmt_duration(double s, char *buf, size_t n);

/* A rate with three significant figures at most, no exponent: "0.0123",
 * "1.23", "12.3", "123", "12345". Returns buf. */
char *pl_progress_fmt_rate(double r, char *buf, size_t n);

#endif
