/* test_progress.c: the progress reporter (core/progress.h) with an injected
 * clock: the terminal line (bar, count, rate, ETA, note, width), its
 * throttling, the plain periodic lines, the final line, unknown and zero
 * totals, done past total, resumed counts, clearing, and the mode from
 * POTLUCK_PROGRESS. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/progress.h"

static double fake_now;
static double fake_clock(void) { return fake_now; }

typedef struct cap {
    FILE *f;
    char *buf;
    size_t len;
} cap;

static void cap_open(cap *c) {
    c->buf = NULL;
    c->len = 0;
    c->f = open_memstream(&c->buf, &c->len);
}

/* what was written since the last call */
static char *cap_take(cap *c, size_t *mark) {
    fflush(c->f);
    char *s = strndup(c->buf + *mark, c->len - *mark);
    *mark = c->len;
    return s;
}

static void cap_close(cap *c) {
    fclose(c->f);
    free(c->buf);
}

static int count_of(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static void test_formatters(void) {
    char b[64];
    CHECK(!strcmp(pl_progress_fmt_duration(0, b, sizeof b), "0:00"), "%s", b);
    CHECK(!strcmp(pl_progress_fmt_duration(42.4, b, sizeof b), "0:42"), "%s", b);
    CHECK(!strcmp(pl_progress_fmt_duration(59.6, b, sizeof b), "1:00"), "%s", b);
    CHECK(!strcmp(pl_progress_fmt_duration(3723, b, sizeof b), "1:02:03"), "%s", b);
    CHECK(!strcmp(pl_progress_fmt_duration(-1, b, sizeof b), "-:--"), "%s", b);
    CHECK(!strcmp(pl_progress_fmt_duration(NAN, b, sizeof b), "-:--"), "%s", b);
    CHECK(!strcmp(pl_progress_fmt_rate(12.34, b, sizeof b), "12.3"), "%s", b);
    CHECK(!strcmp(pl_progress_fmt_rate(1.234, b, sizeof b), "1.23"), "%s", b);
    CHECK(!strcmp(pl_progress_fmt_rate(1234.4, b, sizeof b), "1234"), "%s", b);
    CHECK(!strcmp(pl_progress_fmt_rate(0.01234, b, sizeof b), "0.0123"), "%s", b);
    CHECK(!strcmp(pl_progress_fmt_rate(0.5, b, sizeof b), "0.500"), "%s", b);
    CHECK(!strcmp(pl_progress_fmt_rate(0, b, sizeof b), "0"), "%s", b);
    CHECK(!strcmp(pl_progress_fmt_rate(NAN, b, sizeof b), "-"), "%s", b);
    CHECK(!strcmp(pl_progress_fmt_rate(1e-9, b, sizeof b), "0.000000"), "%s", b);
}

static void test_tty(void) {
    cap c;
    cap_open(&c);
    size_t mark = 0;
    fake_now = 100;
    pl_progress p = {.mode = PL_PROGRESS_TTY, .clock = fake_clock, .out = c.f};
    pl_progress_begin(&p, "03-filter.length", 456, "samples");
    char *s = cap_take(&c, &mark);
    CHECK(!strcmp(s, "\r03-filter.length  [....................]  0/456 samples  - samples/s  ETA -:--\033[K"), "begin: [%s]", s);
    free(s);
    /* 123 in 10 s: 12.3/s, 333 left: 27 s */
    fake_now = 110;
    pl_progress_update(&p, 123);
    s = cap_take(&c, &mark);
    CHECK(!strcmp(s, "\r03-filter.length  [#####...............]  123/456 samples  12.3 samples/s  ETA 0:27\033[K"), "update: [%s]", s);
    free(s);
    /* throttled: 0.05 s later nothing is drawn, the count is kept */
    fake_now = 110.05;
    pl_progress_update(&p, 200);
    s = cap_take(&c, &mark);
    CHECK(!strcmp(s, ""), "throttled: [%s]", s);
    CHECK(p.done == 200, "done kept: %lld", (long long)p.done);
    free(s);
    /* many updates within one tenth of a second draw at most once */
    int draws = 0;
    for (int i = 0; i < 100; i++) {
        fake_now = 110.1 + i * 0.001;
        pl_progress_update(&p, 200 + i);
        s = cap_take(&c, &mark);
        draws += count_of(s, "\r");
        free(s);
    }
    CHECK(draws == 1, "100 updates in 0.1 s: %d draws", draws);
    /* a note, and the bar full at the end */
    fake_now = 120;
    pl_progress_note(&p, "loss %.4f", 1.23456);
    pl_progress_update(&p, 456);
    s = cap_take(&c, &mark);
    CHECK(!strcmp(s, "\r03-filter.length  [####################]  456/456 samples  22.8 samples/s  loss 1.2346\033[K"), "full: [%s]", s);
    free(s);
    /* clear takes the line off; the next update redraws at once */
    pl_progress_clear(&p);
    s = cap_take(&c, &mark);
    CHECK(!strcmp(s, "\r\033[K"), "clear: [%s]", s);
    free(s);
    pl_progress_clear(&p);
    s = cap_take(&c, &mark);
    CHECK(!strcmp(s, ""), "second clear: [%s]", s);
    free(s);
    fake_now = 120.01;
    pl_progress_update(&p, 456);
    s = cap_take(&c, &mark);
    CHECK(count_of(s, "\r") == 1 && strstr(s, "456/456"), "redraw after clear: [%s]", s);
    free(s);
    fake_now = 125;
    pl_progress_end(&p);
    s = cap_take(&c, &mark);
    CHECK(!strcmp(s, "\r03-filter.length: 456/456 samples in 25.0 s, 18.2 samples/s, loss 1.2346\033[K\n"), "end: [%s]", s);
    free(s);
    /* after end: updates and a second end print nothing */
    pl_progress_update(&p, 500);
    pl_progress_end(&p);
    s = cap_take(&c, &mark);
    CHECK(!strcmp(s, ""), "after end: [%s]", s);
    free(s);
    cap_close(&c);
}

static void test_tty_edge(void) {
    cap c;
    cap_open(&c);
    size_t mark = 0;
    fake_now = 0;
    pl_progress p = {.mode = PL_PROGRESS_TTY, .clock = fake_clock, .out = c.f};
    /* unknown total: no bar, no ETA */
    pl_progress_begin(&p, "generate", 0, "tokens");
    free(cap_take(&c, &mark));
    fake_now = 4;
    pl_progress_update(&p, 10);
    char *s = cap_take(&c, &mark);
    CHECK(!strcmp(s, "\rgenerate  10 tokens  2.50 tokens/s\033[K"), "unknown total: [%s]", s);
    free(s);
    fake_now = 8;
    pl_progress_end(&p);
    s = cap_take(&c, &mark);
    CHECK(!strcmp(s, "\rgenerate: 10 tokens in 8.0 s, 1.25 tokens/s\033[K\n"), "unknown total end: [%s]", s);
    free(s);
    /* done past total: bar full, no ETA, count as given */
    fake_now = 0;
    pl_progress_begin(&p, "gen", 10, NULL);
    free(cap_take(&c, &mark));
    fake_now = 2;
    pl_progress_update(&p, 15);
    s = cap_take(&c, &mark);
    CHECK(!strcmp(s, "\rgen  [####################]  15/10 items  7.50 items/s\033[K"), "past total: [%s]", s);
    free(s);
    /* a long run: ETA in hours, elapsed in h:mm:ss */
    fake_now = 0;
    pl_progress_begin(&p, "train", 10000, "steps");
    free(cap_take(&c, &mark));
    fake_now = 100;
    pl_progress_update(&p, 20);
    s = cap_take(&c, &mark);
    CHECK(strstr(s, "20/10000 steps  0.200 steps/s  ETA 13:51:40") != NULL, "hours: [%s]", s);
    free(s);
    fake_now = 3725;
    pl_progress_end(&p);
    s = cap_take(&c, &mark);
    CHECK(strstr(s, ": 20/10000 steps in 1:02:05, 0.00537 steps/s") != NULL, "long elapsed: [%s]", s);
    free(s);
    /* resumed: the rate and ETA count from the resume point */
    fake_now = 0;
    pl_progress_begin(&p, "train", 100, "steps");
    pl_progress_start_at(&p, 50);
    free(cap_take(&c, &mark));
    fake_now = 10;
    pl_progress_update(&p, 60);
    s = cap_take(&c, &mark);
    CHECK(strstr(s, "60/100 steps  1.00 steps/s  ETA 0:40") != NULL, "resumed: [%s]", s);
    free(s);
    pl_progress_end(&p);
    free(cap_take(&c, &mark));
    /* width: the line is cut to width - 1 columns, the erase kept */
    p.width = 30;
    fake_now = 0;
    pl_progress_begin(&p, "a-very-long-stage-label-indeed", 10, "samples");
    s = cap_take(&c, &mark);
    CHECK(!strcmp(s, "\ra-very-long-stage-label-indee\033[K"), "cut: [%s]", s);
    free(s);
    pl_progress_end(&p);
    free(cap_take(&c, &mark));
    /* zero elapsed at the end: the rate is unknown, not infinite */
    p.width = -1;
    fake_now = 5;
    pl_progress_begin(&p, "x", 3, "items");
    pl_progress_update(&p, 3);
    pl_progress_end(&p);
    s = cap_take(&c, &mark);
    CHECK(strstr(s, "x: 3/3 items in 0.0 s, - items/s") != NULL, "zero elapsed: [%s]", s);
    free(s);
    cap_close(&c);
}

static void test_plain(void) {
    cap c;
    cap_open(&c);
    size_t mark = 0;
    fake_now = 0;
    pl_progress p = {.mode = PL_PROGRESS_PLAIN, .clock = fake_clock, .out = c.f, .every = 10};
    pl_progress_begin(&p, "01-generate.persona", 40, "samples");
    char *s = cap_take(&c, &mark);
    CHECK(!strcmp(s, ""), "plain begin prints nothing: [%s]", s);
    free(s);
    /* nothing before 10 s, however many updates */
    for (int i = 1; i <= 9; i++) {
        fake_now = i;
        pl_progress_update(&p, i);
    }
    s = cap_take(&c, &mark);
    CHECK(!strcmp(s, ""), "before the interval: [%s]", s);
    free(s);
    fake_now = 10;
    pl_progress_update(&p, 10);
    s = cap_take(&c, &mark);
    CHECK(!strcmp(s, "01-generate.persona: 10/40 samples (25%), 1.00 samples/s, ETA 0:30\n"), "plain line: [%s]", s);
    free(s);
    fake_now = 19.9;
    pl_progress_update(&p, 20);
    s = cap_take(&c, &mark);
    CHECK(!strcmp(s, ""), "within the next interval: [%s]", s);
    free(s);
    fake_now = 20;
    pl_progress_note(&p, "loss %.2f", 0.5);
    pl_progress_update(&p, 20);
    s = cap_take(&c, &mark);
    CHECK(!strcmp(s, "01-generate.persona: 20/40 samples (50%), 1.00 samples/s, ETA 0:20, loss 0.50\n"), "with note: [%s]", s);
    free(s);
    pl_progress_note(&p, NULL);
    pl_progress_clear(&p); /* nothing to clear in plain mode */
    fake_now = 35;
    pl_progress_update(&p, 50);
    s = cap_take(&c, &mark);
    CHECK(!strcmp(s, "01-generate.persona: 50/40 samples (100%), 1.43 samples/s\n"), "past total: [%s]", s);
    free(s);
    fake_now = 40;
    pl_progress_end(&p);
    s = cap_take(&c, &mark);
    CHECK(!strcmp(s, "01-generate.persona: 50/40 samples in 40.0 s, 1.25 samples/s\n"), "plain end: [%s]", s);
    free(s);
    /* unknown total */
    fake_now = 0;
    pl_progress_begin(&p, "shard", -1, "tokens");
    fake_now = 10;
    pl_progress_update(&p, 1000);
    fake_now = 12;
    pl_progress_end(&p);
    s = cap_take(&c, &mark);
    CHECK(!strcmp(s, "shard: 1000 tokens, 100 tokens/s\nshard: 1000 tokens in 12.0 s, 83.3 tokens/s\n"), "unknown total: [%s]", s);
    free(s);
    /* every < 0: the final line only */
    pl_progress q = {.mode = PL_PROGRESS_PLAIN, .clock = fake_clock, .out = c.f, .every = -1};
    fake_now = 0;
    pl_progress_begin(&q, "train", 5, "steps");
    for (int i = 1; i <= 5; i++) {
        fake_now = 100 * i;
        pl_progress_update(&q, i);
    }
    pl_progress_end(&q);
    s = cap_take(&c, &mark);
    CHECK(!strcmp(s, "train: 5/5 steps in 8:20, 0.0100 steps/s\n"), "final only: [%s]", s);
    free(s);
    /* off: nothing at all */
    pl_progress o = {.mode = PL_PROGRESS_OFF, .clock = fake_clock, .out = c.f};
    pl_progress_begin(&o, "x", 5, "items");
    pl_progress_update(&o, 5);
    pl_progress_end(&o);
    s = cap_take(&c, &mark);
    CHECK(!strcmp(s, ""), "off: [%s]", s);
    free(s);
    cap_close(&c);
}

static void test_env(void) {
    setenv("POTLUCK_PROGRESS", "tty", 1);
    CHECK(pl_progress_mode_env() == PL_PROGRESS_TTY, "tty");
    setenv("POTLUCK_PROGRESS", "plain", 1);
    CHECK(pl_progress_mode_env() == PL_PROGRESS_PLAIN, "plain");
    setenv("POTLUCK_PROGRESS", "off", 1);
    CHECK(pl_progress_mode_env() == PL_PROGRESS_OFF, "off");
    setenv("POTLUCK_PROGRESS", "0", 1);
    CHECK(pl_progress_mode_env() == PL_PROGRESS_OFF, "0");
    setenv("POTLUCK_PROGRESS", "1", 1);
    pl_progress_mode m = pl_progress_mode_env();
    CHECK(m == PL_PROGRESS_TTY || m == PL_PROGRESS_PLAIN, "1: auto");
    /* the interval from POTLUCK_PROGRESS_EVERY; 0: every update */
    cap c;
    cap_open(&c);
    size_t mark = 0;
    setenv("POTLUCK_PROGRESS", "plain", 1);
    setenv("POTLUCK_PROGRESS_EVERY", "0", 1);
    pl_progress p = {.clock = fake_clock, .out = c.f};
    fake_now = 0;
    pl_progress_begin(&p, "s", 3, "samples");
    CHECK(p.mode == PL_PROGRESS_PLAIN, "auto resolved to plain: %d", p.mode);
    for (int i = 1; i <= 3; i++) pl_progress_update(&p, i);
    pl_progress_end(&p);
    char *s = cap_take(&c, &mark);
    CHECK(count_of(s, "\n") == 4 && count_of(s, "s: 3/3 samples in ") == 1, "every update: [%s]", s);
    free(s);
    unsetenv("POTLUCK_PROGRESS_EVERY");
    unsetenv("POTLUCK_PROGRESS");
    cap_close(&c);
}

int main(void) {
    test_formatters();
    test_tty();
    test_tty_edge();
    test_plain();
    test_env();
    return check_summary("test_progress");
}
