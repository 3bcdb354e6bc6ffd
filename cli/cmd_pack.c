/* cmd_pack.c: `potluck pack RUN_DIR -o NAME.potluck`: a run directory as one
 * reproducible, verifiable bundle (plugins/bundle.h). */
#include <stdio.h>
#include <string.h>

#include "../plugins/bundle.h"
#include "cli.h"
#include "cmd_bundle.h"

static const char *pack_help =
    "usage: potluck pack RUN_DIR -o NAME.potluck [--data full|manifest|none] [--sign KEY.pem]\n"
    "                    [--recipe PATH] [--base PATH]\n"
    "\n"
    "Packs a run directory (what `potluck run` wrote) into one pax tar + zstd\n"
    "file: potluck.lock.json (every file's size and sha256; base model, datasets,\n"
    "recipe and plugins pinned; seeds, hyperparameters, hardware, wall time),\n"
    "README.md (model + dataset card), the recipe and the plugins it loaded,\n"
    "the datasets (--data full: manifests and shards, the default; manifest:\n"
    "manifests and cards only; none: no data files, shards pinned in the lock),\n"
    "the adapter, results and the run's records. The same run packs to the same\n"
    "bytes. --sign KEY.pem adds model.sig (OpenSSF model-signing format; make a\n"
    "key with `potluck keygen`). --recipe / --base: where the recipe file and\n"
    "the base model are when plan.json's paths do not resolve from here.\n";

int cmd_pack(int argc, char **argv) {
    pl_pack_opts o = {.version = PL_VERSION};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(pack_help, stdout); return 0; }
        int has = i + 1 < argc;
        if ((!strcmp(a, "-o") || !strcmp(a, "--out")) && has) o.out = argv[++i];
        else if (!strcmp(a, "--sign") && has) o.sign_key = argv[++i];
        else if (!strcmp(a, "--recipe") && has) o.recipe = argv[++i];
        else if (!strcmp(a, "--base") && has) o.base = argv[++i];
        else if (!strcmp(a, "--data") && has) {
            const char *d = argv[++i];
            if (!strcmp(d, "full")) o.data = PL_DATA_FULL;
            else if (!strcmp(d, "manifest")) o.data = PL_DATA_MANIFEST;
            else if (!strcmp(d, "none")) o.data = PL_DATA_NONE;
            else return cli_fail("pack: --data %s: expected full, manifest or none", d);
        } else if (a[0] == '-') return cli_fail("pack: unknown option or missing value: %s (see potluck pack --help)", a);
        else if (!o.run_dir) o.run_dir = a;
        else return cli_fail("pack: one run directory only (got '%s' and '%s')", o.run_dir, a);
    }
    if (!o.run_dir || !o.out) {
        fputs(pack_help, stderr);
        return 2;
    }
    pl_bundle_stats st;
    pl_err err = {0};
    if (pl_bundle_pack(&o, &st, &err)) return cli_fail_err(&err);
    if (st.warn[0]) fprintf(stderr, "potluck: pack: warning: %s\n", st.warn);
    printf("packed %s: %d files, %.1f MB -> %.1f MB%s%s\n", o.out, st.files, st.bytes / 1e6, st.archive_bytes / 1e6,
           st.signer[0] ? ", signed by key " : "", st.signer[0] ? st.signer : "");
    return 0;
}
