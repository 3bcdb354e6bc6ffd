/* fuzz_common.h: what the harnesses share. Each tests/fuzz/fuzz_NAME.c defines
 * LLVMFuzzerTestOneInput for one parser of untrusted input; `make fuzz` links
 * it with libFuzzer (clang), tests/cli_fuzz_replay.sh replays its corpus
 * (tests/fuzz/corpus/NAME/) through replay_main.c under ASan + UBSan. */
#ifndef PL_FUZZ_COMMON_H
#define PL_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input as a file (parsers that take a path): a private temporary file,
 * rewritten for every input. Returns its path, or NULL. */
static inline const char *fuzz_file(const uint8_t *data, size_t size, const char *suffix) {
    static char path[256];
    static int made;
    if (!made) {
        const char *tmp = getenv("TMPDIR");
        snprintf(path, sizeof path, "%s/pl_fuzz_%d%s", tmp && *tmp ? tmp : "/tmp", (int)getpid(), suffix);
        made = 1;
    }
    FILE *f = fopen(path, "wb");
    if (!f) return NULL;
    if (size && fwrite(data, 1, size, f) != size) {
        fclose(f);
        return NULL;
    }
    fclose(f);
    return path;
}

#endif
