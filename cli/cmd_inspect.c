/* cmd_inspect.c: `potluck inspect NAME.potluck`: the card, the lock's
 * summary, sizes, licenses, eval results and signer, read from the archive
 * without extracting anything (entries stream through the hash only). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../plugins/bundle.h"
#include "cli.h"
#include "cmd_bundle.h"

static const char *s_of(const cJSON *o, const char *k) {
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItem(o, k));
    return s ? s : "";
}

static void print_lock(const cJSON *lock) {
    const cJSON *pred = cJSON_GetObjectItem(lock, "predicate");
    const cJSON *bd = cJSON_GetObjectItem(pred, "buildDefinition");
    const cJSON *ext = cJSON_GetObjectItem(bd, "externalParameters");
    const cJSON *in = cJSON_GetObjectItem(bd, "internalParameters");
    const cJSON *meta = cJSON_GetObjectItem(cJSON_GetObjectItem(pred, "runDetails"), "metadata");
    const cJSON *ver = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(pred, "runDetails"), "builder"), "version");
    printf("== lock\n");
    printf("recipe:    %s (%s)\n", s_of(ext, "name"), s_of(ext, "recipe"));
    printf("base:      %s\n", s_of(ext, "base"));
    printf("license:   %s\n", s_of(ext, "license")[0] ? s_of(ext, "license") : "(none stated)");
    printf("data:      %s\n", s_of(ext, "data"));
    printf("seed:      %.0f\n", cJSON_GetNumberValue(cJSON_GetObjectItem(in, "seed")));
    printf("potluck:   %s (%s)\n", s_of(ver, "potluck"), s_of(ver, "build"));
    const cJSON *h = cJSON_GetObjectItem(meta, "potluck_host");
    if (cJSON_IsObject(h))
        printf("hardware:  %s, %s backend, %.0f threads\n", s_of(h, "cpu"), s_of(h, "backend"), cJSON_GetNumberValue(cJSON_GetObjectItem(h, "threads")));
    else
        printf("hardware:  not recorded by the run\n");
    printf("wall time: %.1f s", cJSON_GetNumberValue(cJSON_GetObjectItem(meta, "potluck_wall_seconds")));
    if (s_of(meta, "startedOn")[0]) printf(" (%s .. %s)", s_of(meta, "startedOn"), s_of(meta, "finishedOn"));
    printf("\n");
    const cJSON *r = cJSON_GetObjectItem(meta, "potluck_results"), *it;
    if (cJSON_IsObject(r)) {
        printf("results:  ");
        const char *k[] = {"base_eval_loss", "eval_loss", "final_train_loss"};
        for (int i = 0; i < 3; i++)
            if (cJSON_IsNumber(cJSON_GetObjectItem(r, k[i]))) printf(" %s=%.6g", k[i], cJSON_GetNumberValue(cJSON_GetObjectItem(r, k[i])));
        cJSON_ArrayForEach(it, cJSON_GetObjectItem(r, "metrics")) if (cJSON_IsNumber(it)) printf(" %s=%.6g", it->string, it->valuedouble);
        printf("\n");
    }
    printf("depends on:\n");
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(bd, "resolvedDependencies")) {
        const char *sha = s_of(cJSON_GetObjectItem(it, "digest"), "sha256");
        printf("  %-40s %s %s\n", s_of(it, "name"), sha[0] ? sha : "(not pinned)", s_of(it, "uri"));
    }
    printf("files:\n");
    double total = 0;
    int n = 0;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(lock, "subject")) {
        double sz = cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(it, "annotations"), "size"));
        printf("  %12.0f  %.16s  %s\n", sz, s_of(cJSON_GetObjectItem(it, "digest"), "sha256"), s_of(it, "name"));
        total += sz;
        n++;
    }
    printf("  %d files, %.0f bytes (and potluck.lock.json)\n", n, total);
}

int cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    int no_card = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs("usage: potluck inspect NAME.potluck [--no-card]\n"
                  "\n"
                  "Shows the bundle's card (README.md), the lock's summary (recipe, base,\n"
                  "license, seed, hardware, time, eval results, dependencies, every file with\n"
                  "its size) and the signer's key, reading the archive without extracting.\n"
                  "Every entry is hashed on the way; a bundle that does not verify is shown\n"
                  "as far as it was read, then the difference is reported (exit status 1).\n"
                  "Nothing in it is run or rendered.\n",
                  stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--no-card")) no_card = 1;
        else if (argv[i][0] == '-') return cli_fail("inspect: unknown option %s", argv[i]);
        else if (!path) path = argv[i];
        else return cli_fail("inspect: one bundle at a time");
    }
    if (!path) return cli_fail("inspect: usage: potluck inspect NAME.potluck");
    cJSON *lock = NULL;
    char *card = NULL;
    pl_bundle_stats st;
    pl_err err = {0};
    int rc = pl_bundle_inspect(path, &lock, &card, &st, &err);
    if (card && !no_card) printf("== README.md\n%s\n", card);
    if (lock) print_lock(lock);
    printf("signer:    %s\n", st.signer[0] ? st.signer : "(not signed)");
    if (!rc)
        printf("verified:  yes: %d entries, %.1f MB in a %.1f MB archive (signature not checked: use verify --key)\n", st.files, st.bytes / 1e6,
               st.archive_bytes / 1e6);
    cJSON_Delete(lock);
    free(card);
    if (rc) return cli_fail("inspect: %s: does not verify: %s", path, err.msg);
    return 0;
}
