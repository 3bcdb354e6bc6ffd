/* check.h: the tiny assertion layer every C test uses.
 *
 * CHECK(cond, fmt, ...) counts a pass or prints "FAIL file:line: message" and
 * counts a failure; the test's main ends with `return check_summary("name");`
 * which prints "== name: P passed, F failed" (read by tests/run.sh) and
 * returns the exit status. */
#ifndef PL_CHECK_H
#define PL_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int check_passed, check_failed;

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (cond) {                                                             \
            check_passed++;                                                     \
        } else {                                                                \
            check_failed++;                                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)

/* Fatal precondition: counts a failure and leaves the test. */
#define REQUIRE(cond, ...)                                                      \
    do {                                                                        \
        if (!(cond)) {                                                          \
            check_failed++;                                                     \
            fprintf(stderr, "FAIL (fatal) %s:%d: ", __FILE__, __LINE__);        \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
            return check_summary(__FILE__);                                     \
        }                                                                       \
    } while (0)

static inline int check_summary(const char *name) {
    printf("== %s: %d passed, %d failed\n", name, check_passed, check_failed);
    fflush(stdout);
    return check_failed ? 1 : 0;
}

/* Paths of the shared fixtures and the cached peer references, from the
 * environment the runner sets (POTLUCK_SHARED, POTLUCK_REFS, POTLUCK_CACHE). */
static inline const char *check_env(const char *name) {
    const char *v = getenv(name);
    if (!v || !*v) {
        fprintf(stderr, "FAIL: environment variable %s is not set (run tests through make test)\n", name);
        exit(1);
    }
    return v;
}

/* Max abs difference of two float arrays. */
static inline double check_max_abs(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d != d) return INFINITY;
        if (d > m) m = d;
    }
    return m;
}

#endif
