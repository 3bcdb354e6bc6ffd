/* fuzz_safetensors.c: safetensors headers and tensor tables (core/safetensors.c). */
#include "fuzz_common.h"
#include "../../core/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = fuzz_file(data, size, ".safetensors");
    if (!p) return 0;
    pl_err err = {0};
    pl_st *st = NULL;
    if (pl_st_open(&st, p, &err) == 0) {
        for (size_t i = 0; i < pl_st_count(st); i++) {
            const pl_st_tensor *t = pl_st_at(st, i);
            if (t) {
                int64_t n = t->n_elems;
                if (n > 0 && n < (1 << 20)) {
                    float *f = malloc((size_t)n * sizeof(float));
                    if (f) pl_st_to_f32(t, f, &err);
                    free(f);
                }
            }
        }
        pl_st_close(st);
    }
    return 0;
}
