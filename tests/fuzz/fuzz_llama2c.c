/* fuzz_llama2c.c: llama2.c files (trainer/model_llama2c.c, datasets'
 * llama2.c tokenizer reader): every input is loaded both as a checkpoint
 * (pl_model_load detects the format by content) and as a tokenizer .bin
 * for vocabularies of 512 and 32000 tokens (stories260K's and Llama-2's). */
#include "fuzz_common.h"
#include "../../datasets/tokenizer.h"
#include "../../trainer/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = fuzz_file(data, size, ".bin");
    if (!p) return 0;
    pl_err err = {0};
    pl_model *m = NULL;
    int rc = pl_model_load(&m, p, NULL, &err);
    if (getenv("FUZZ_VERBOSE")) fprintf(stderr, "fuzz_llama2c: model: %s\n", rc ? err.msg : "loaded");
    if (rc == 0) pl_model_free(m);
    static const int vocabs[] = {512, 32000};
    for (int i = 0; i < 2; i++) {
        pl_tokenizer *t = NULL;
        pl_err e = {0};
        if (pl_tokenizer_load_llama2c(&t, p, vocabs[i], &e) == 0) {
            int32_t *ids = NULL;
            int n = 0;
            if (pl_tokenizer_encode(t, "Once upon a time", 16, 1, 0, &ids, &n, &e) == 0) {
                char buf[512];
                for (int k = 0; k < n; k++) pl_tokenizer_decode(t, k ? ids[k - 1] : -1, ids[k], 1, buf, sizeof buf);
            }
            free(ids);
            pl_tokenizer_free(t);
        }
    }
    return 0;
}
