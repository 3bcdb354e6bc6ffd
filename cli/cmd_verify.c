/* cmd_verify.c: `potluck verify NAME.potluck|DIR [--key PUB.pem]`. */
#include <stdio.h>
#include <string.h>

#include "../plugins/bundle.h"
#include "cli.h"
#include "cmd_bundle.h"

static const char *verify_help =
    "usage: potluck verify NAME.potluck|DIR [--key PUB.pem]\n"
    "\n"
    "Checks a bundle (or an unpacked one) against its potluck.lock.json: every\n"
    "entry a plain file the lock lists, with its size and sha256, none missing,\n"
    "none extra, the lock itself unchanged. With --key (alias --trust), model.sig\n"
    "must be there and verify with that public key. A directory without a lock\n"
    "but with a model.sig from `model_signing sign key` is checked against the\n"
    "signature. Exit status 0 when everything matches; otherwise the first\n"
    "difference is named.\n";

int cmd_verify(int argc, char **argv) {
    const char *path = NULL, *key = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(verify_help, stdout); return 0; }
        if ((!strcmp(a, "--key") || !strcmp(a, "--trust")) && i + 1 < argc) key = argv[++i];
        else if (a[0] == '-') return cli_fail("verify: unknown option or missing value: %s", a);
        else if (!path) path = a;
        else return cli_fail("verify: one bundle at a time (got '%s' and '%s')", path, a);
    }
    if (!path) {
        fputs(verify_help, stderr);
        return 2;
    }
    pl_bundle_stats st;
    pl_err err = {0};
    if (pl_bundle_verify(path, key, &st, &err)) return strncmp(err.msg, path, strlen(path)) ? cli_fail("verify: %s: %s", path, err.msg) : cli_fail("verify: %s", err.msg);
    printf("verified %s: %d files, %.1f MB match the lock", path, st.files, st.bytes / 1e6);
    if (st.signed_ok) printf("; signature OK (key %s)", st.signer);
    else if (st.signer[0]) printf("; signed by key %s (not checked: give --key PUB.pem)", st.signer);
    else printf("; not signed");
    printf("\n");
    return 0;
}
