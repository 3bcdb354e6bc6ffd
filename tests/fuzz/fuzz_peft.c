/* fuzz_peft.c: PEFT adapter folders (trainer/model_lora.c pl_lora_load_peft)
 * against a real model, the tiny Llama GGUF of ../shared/fixtures
 * ($POTLUCK_SHARED). The input is the adapter_config.json; when it holds the
 * line "--safetensors--", what follows replaces adapter_model.safetensors,
 * else a valid adapter potluck wrote for the model (r 2, every linear) is
 * used, so both the config and the tensor checks are reached. */
#include <string.h>
#include <sys/stat.h>
#include "fuzz_common.h"
#include "../../core/atomic.h"
#include "../../trainer/model_lora.h"

static pl_model *model;
static char dir[256], good[256];

static int setup(void) {
    const char *sh = getenv("POTLUCK_SHARED");
    char mp[512];
    snprintf(mp, sizeof mp, "%s/fixtures/gguf-tiny-llama/llama-2-tiny-random.gguf", sh && *sh ? sh : "../shared");
    pl_err err = {0};
    pl_model_opts o = {.fp32 = 1};
    if (pl_model_load(&model, mp, &o, &err)) {
        fprintf(stderr, "fuzz_peft: %s (set POTLUCK_SHARED)\n", err.msg);
        abort();
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/pl_fuzz_peft_%d", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    snprintf(good, sizeof good, "%s/pl_fuzz_peft_good_%d", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    mkdir(dir, 0700);
    mkdir(good, 0700);
    pl_lora_cfg c = {.r = 2, .alpha = 4, .targets = PL_LORA_ALL_LINEAR, .seed = 1};
    pl_lora *l = NULL;
    if (pl_lora_init(&l, model, &c, &err) || pl_lora_save_peft(l, model, good, "tiny", &err)) {
        fprintf(stderr, "fuzz_peft: %s\n", err.msg);
        abort();
    }
    pl_lora_free(l);
    return 0;
}

static void put(const char *name, const void *d, size_t n) {
    char p[320];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) return;
    if (n) fwrite(d, 1, n, f);
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) ready = !setup();
    static const char mark[] = "\n--safetensors--\n";
    const uint8_t *st = NULL;
    for (size_t i = 0; i + sizeof mark - 1 <= size; i++)
        if (!memcmp(data + i, mark, sizeof mark - 1)) { st = data + i; break; }
    size_t cfg_n = st ? (size_t)(st - data) : size;
    put("adapter_config.json", data, cfg_n);
    if (st) {
        const uint8_t *b = st + sizeof mark - 1;
        put("adapter_model.safetensors", b, size - (size_t)(b - data));
    } else {
        static uint8_t *gb;
        static size_t gn;
        if (!gb) {
            char p[320];
            snprintf(p, sizeof p, "%s/adapter_model.safetensors", good);
            FILE *f = fopen(p, "rb");
            if (!f) abort();
            fseek(f, 0, SEEK_END);
            gn = (size_t)ftell(f);
            fseek(f, 0, SEEK_SET);
            gb = malloc(gn ? gn : 1);
            if (!gb || fread(gb, 1, gn, f) != gn) abort();
            fclose(f);
        }
        put("adapter_model.safetensors", gb, gn);
    }
    pl_err err = {0};
    pl_lora *l = NULL;
    int rc = pl_lora_load_peft(&l, model, dir, &err);
    if (getenv("FUZZ_VERBOSE")) fprintf(stderr, "fuzz_peft: %s\n", rc ? err.msg : "loaded");
    if (rc == 0) pl_lora_free(l);
    return 0;
}
