/* units.c: byte counts for people (units.h). */
#include <stdio.h>

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
