/* fuzz_manifest.c: dataset manifests (datasets/manifest.c), read from a
 * folder holding the input as manifest.json. */
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include "fuzz_common.h"
#include "../../datasets/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char dir[256];
    if (!dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/pl_fuzz_manifest_%d", tmp && *tmp ? tmp : "/tmp", (int)getpid());
        mkdir(dir, 0700);
    }
    char p[320];
    snprintf(p, sizeof p, "%s/manifest.json", dir);
    FILE *f = fopen(p, "wb");
    if (!f) return 0;
    if (size) fwrite(data, 1, size, f);
    fclose(f);
    pl_err err = {0};
    pl_manifest *m = NULL;
    if (pl_manifest_load(&m, dir, &err) == 0) pl_manifest_free(m);
    return 0;
}
