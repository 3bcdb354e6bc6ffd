/* units.c: byte counts for people (units.h). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "units.h"

char *pl_fmt_bytes(double b, char *buf, size_t n) {
    static const char *const u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int k = 0;
    if (!(b >= 0)) {
        snprintf(buf, n, "-");
        return buf;
    }
    while (b >= 1024 && k < 4) {
        b /= 1024;
        k++;
    }
    if (k == 0) snprintf(buf, n, "%.0f B", b);
    else snprintf(buf, n, "%.2f %s", b, u[k]);
    return buf;
}

const char *pl_parse_bytes(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || errno || end == s || !isfinite(v)) return "expected a size like 24GiB";
    if (v <= 0) return "not a positive size";
    static const struct { const char *u; double f; } units[] = {
        {"", 1}, {"B", 1}, {"K", 1024.0}, {"KiB", 1024.0}, {"KB", 1e3}, {"M", 1048576.0}, {"MiB", 1048576.0},
        {"MB", 1e6}, {"G", 1073741824.0}, {"GiB", 1073741824.0}, {"GB", 1e9}, {"T", 1099511627776.0},
        {"TiB", 1099511627776.0}, {"TB", 1e12}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcasecmp(end, units[i].u)) {
            *out = v * units[i].f;
            return *out < 1 ? "less than a byte" : NULL;
        }
    return "unknown unit (B, KiB, MiB, GiB, TiB, or KB, MB, GB, TB)";
}
