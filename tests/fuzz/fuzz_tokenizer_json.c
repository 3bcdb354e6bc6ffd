/* fuzz_tokenizer_json.c: tokenizer.json files (datasets/tokenizer_json.c,
 * tokenizer_hf.c, pre-tokenizers), then encode and decode with what loaded. */
#include <string.h>
#include "fuzz_common.h"
#include "../../datasets/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = fuzz_file(data, size, ".tokenizer.json");
    if (!p) return 0;
    pl_err err = {0};
    pl_tokenizer *t = NULL;
    if (pl_tokenizer_load(&t, p, &err) == 0) {
        static const char text[] = "The quick brown fox, 12345 caf\xc3\xa9 \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x99\x82\n\t  end";
        int32_t *ids = NULL, *offs = NULL;
        int n = 0;
        if (pl_tokenizer_encode_offsets(t, text, sizeof text - 1, 1, 1, &ids, &offs, &n, &err) == 0) {
            char buf[256];
            for (int i = 0; i < n; i++) pl_tokenizer_decode(t, i ? ids[i - 1] : -1, ids[i], 1, buf, sizeof buf);
        }
        free(ids);
        free(offs);
        pl_tokenizer_free(t);
    }
    return 0;
}
