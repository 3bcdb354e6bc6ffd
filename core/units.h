/* units.h: byte counts for people: "1.50 GiB", "512 B". */
#ifndef PL_UNITS_H
#define PL_UNITS_H

#include <stddef.h>

/* b bytes with a binary unit and two decimals (B, KiB, MiB, GiB, TiB); "-"
 * for a negative or NaN count. Returns buf. */
char *pl_fmt_bytes(double b, char *buf, size_t n);

/* "24GiB", "24GB", "512MiB", "80G", "1e9" (units case-insensitive): *out =
 * bytes; NULL, or what is wrong with s. */
const char *pl_parse_bytes(const char *s, double *out);

#endif
