/* cmd_unpack.c: `potluck unpack NAME.potluck DIR [--key PUB.pem]`. */
#include <stdio.h>
#include <string.h>

#include "../plugins/bundle.h"
#include "cli.h"
#include "cmd_bundle.h"

static const char *unpack_help =
    "usage: potluck unpack NAME.potluck DIR [--key PUB.pem]\n"
    "\n"
    "Verifies the bundle (as potluck verify does), then extracts it into a new\n"
    "temporary folder beside DIR and renames that to DIR (which must not\n"
    "exist). Refused: absolute paths, '..', links, devices, duplicate names,\n"
    "entries the lock does not list or larger than it declares, more files or\n"
    "bytes than it declares. Nothing is written outside DIR.\n";

int cmd_unpack(int argc, char **argv) {
    const char *path = NULL, *dir = NULL, *key = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(unpack_help, stdout); return 0; }
        if ((!strcmp(a, "--key") || !strcmp(a, "--trust")) && i + 1 < argc) key = argv[++i];
        else if (a[0] == '-') return cli_fail("unpack: unknown option or missing value: %s", a);
        else if (!path) path = a;
        else if (!dir) dir = a;
        else return cli_fail("unpack: expected NAME.potluck DIR, got a third argument '%s'", a);
    }
    if (!path || !dir) {
        fputs(unpack_help, stderr);
        return 2;
    }
    pl_bundle_stats st;
    pl_err err = {0};
    if (pl_bundle_unpack(path, dir, key, &st, &err)) return strncmp(err.msg, path, strlen(path)) ? cli_fail("unpack: %s: %s", path, err.msg) : cli_fail("unpack: %s", err.msg);
    printf("unpacked %s -> %s: %d files, %.1f MB, verified%s\n", path, dir, st.files, st.bytes / 1e6,
           st.signed_ok ? ", signature OK" : "");
    return 0;
}
