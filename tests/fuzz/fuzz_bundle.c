/* fuzz_bundle.c: the bundle reader (plugins/bundle_*.c): every input is a
 * .potluck file given to verify, inspect and unpack (into a fresh folder,
 * removed afterwards); unpack must never write outside it. The leak-* seed
 * is the harness's own first mistake (it freed inspect's lock and card only
 * on success; inspect hands them over on errors too, to show them). */
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>
#include "fuzz_common.h"
#include "../../core/atomic.h"
#include "../../plugins/bundle.h"
#include "../../trainer/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = fuzz_file(data, size, ".potluck");
    if (!p) return 0;
    static char parent[256], out[320];
    if (!parent[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(parent, sizeof parent, "%s/pl_fuzz_bundle_%d", tmp && *tmp ? tmp : "/tmp", (int)getpid());
        mkdir(parent, 0700);
        snprintf(out, sizeof out, "%s/out", parent);
    }
    pl_err err = {0};
    pl_bundle_stats st;
    int rc = pl_bundle_verify(p, NULL, &st, &err);
    if (getenv("FUZZ_VERBOSE")) fprintf(stderr, "fuzz_bundle: verify: %s\n", rc ? err.msg : "ok");
    cJSON *lock = NULL;
    char *card = NULL;
    pl_err e2 = {0};
    pl_bundle_inspect(p, &lock, &card, &st, &e2); /* lock and card are ours even on an error (inspect shows them) */
    cJSON_Delete(lock);
    free(card);
    pl_err e3 = {0};
    rc = pl_bundle_unpack(p, out, NULL, &st, &e3);
    if (getenv("FUZZ_VERBOSE")) fprintf(stderr, "fuzz_bundle: unpack: %s\n", rc ? e3.msg : "ok");
    pl_err e4 = {0};
    pl_rmtree(out, &e4);
    /* nothing but out (now gone) may appear beside it */
    DIR *d = opendir(parent);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)))
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
                fprintf(stderr, "fuzz_bundle: unpack left %s/%s\n", parent, de->d_name);
                abort();
            }
        closedir(d);
    }
    return 0;
}
