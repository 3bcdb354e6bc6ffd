/* fuzz_gguf.c: GGUF files: the container (core/gguf.c), then the tokenizer
 * metadata (datasets/tokenizer_gguf.c) and the model loader's checks. */
#include "fuzz_common.h"
#include "../../core/gguf.h"
#include "../../datasets/tokenizer.h"
#include "../../trainer/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = fuzz_file(data, size, ".gguf");
    if (!p) return 0;
    pl_err err = {0};
    pl_gguf *g = NULL;
    if (pl_gguf_open(&g, p, &err) == 0) pl_gguf_close(g);
    pl_tokenizer *t = NULL;
    if (pl_tokenizer_load(&t, p, &err) == 0) {
        int32_t *ids = NULL;
        int n = 0;
        if (pl_tokenizer_encode(t, "Hello, world! 123 \xc3\xa9 <s>", 23, 1, 1, &ids, &n, &err) == 0) {
            char buf[256];
            for (int i = 0; i < n; i++) pl_tokenizer_decode(t, i ? ids[i - 1] : -1, ids[i], 1, buf, sizeof buf);
        }
        free(ids);
        pl_tokenizer_free(t);
    }
    pl_model *m = NULL;
    if (pl_model_load(&m, p, NULL, &err) == 0) pl_model_free(m);
    return 0;
}
