/* fuzz_jinja.c: chat templates (datasets/jinja*.c): parse, then render with a
 * conversation, as a GGUF's or tokenizer_config.json's template would be. */
#include <string.h>
#include <cjson/cJSON.h>
#include "fuzz_common.h"
#include "../../datasets/jinja.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static cJSON *vars;
    if (!vars)
        vars = cJSON_Parse("{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                           "{\"role\":\"user\",\"content\":\"Hi <|im_end|> {{ x }}\"},"
                           "{\"role\":\"assistant\",\"content\":\"Hello.\"}],"
                           "\"bos_token\":\"<s>\",\"eos_token\":\"</s>\",\"add_generation_prompt\":true}");
    pl_err err = {0};
    char *out = NULL;
    size_t n = 0;
    pl_jinja_render_string((const char *)data, size, "fuzz", vars, NULL, &out, &n, &err);
    free(out);
    return 0;
}
