/* fuzz_import.c: the JSONL / JSON chat-data importers (datasets/import.c) in
 * every format, then rendering each example with ChatML. */
#include "fuzz_common.h"
#include "../../datasets/import.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const pl_import_fmt fmts[] = {PL_FMT_AUTO, PL_FMT_OPENAI, PL_FMT_SHAREGPT, PL_FMT_ALPACA, PL_FMT_TEXT, PL_FMT_IO};
    for (size_t k = 0; k < sizeof fmts / sizeof fmts[0]; k++) {
        pl_import_opts o = {.fmt = fmts[k], .keep_errors = 8};
        pl_import im = {0};
        pl_err err = {0};
        pl_import_buffer("fuzz.jsonl", (const char *)data, size, &o, &im, &err);
        pl_import_free(&im);
    }
    return 0;
}
