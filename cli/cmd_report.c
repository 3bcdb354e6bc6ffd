/* cmd_report.c: `potluck report RUN_DIR`: one self-contained HTML page
 * (plugins/report.c). */
#include <stdio.h>
#include <string.h>

#include "../plugins/report.h"
#include "cli.h"

static const char *report_help =
    "usage: potluck report RUN_DIR [--out FILE]\n"
    "\n"
    "Writes one self-contained HTML file (no scripts, no network, no external\n"
    "assets) for a `potluck run` or `potluck train` directory: loss (train and\n"
    "held-out), learning-rate, throughput and memory curves as inline SVG, the\n"
    "eval table of results.json, the resolved recipe and the dataset card.\n"
    "\n"
    "  --out FILE   where to write it (default RUN_DIR/report.html)\n";

int cmd_report(int argc, char **argv) {
    const char *dir = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(report_help, stdout); return 0; }
        else if (!strcmp(a, "--out")) {
            if (i + 1 >= argc) return cli_fail("report: --out: expected a value");
            out = argv[++i];
        } else if (a[0] == '-' && a[1]) return cli_fail("report: unknown option '%s' (see potluck report --help)", a);
        else if (!dir) dir = a;
        else return cli_fail("report: one RUN_DIR only (got '%s' too)", a);
    }
    if (!dir) return cli_fail("report: give a RUN_DIR (see potluck report --help)");
    char def[4200];
    if (!out) {
        snprintf(def, sizeof def, "%s/report.html", dir);
        out = def;
    }
    pl_err err = {0};
    if (pl_report_write(dir, out, &err)) return cli_fail_err(&err);
    printf("report: %s\n", out);
    return 0;
}
