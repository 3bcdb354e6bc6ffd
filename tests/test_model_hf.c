/* test_model_hf.c: Hugging Face directories written by transformers'
 * save_pretrained (tests/interop/hf_tiny.py): tiny random LlamaForCausalLM
 * (GQA, llama3 rope scaling, untied; also saved sharded), Qwen2ForCausalLM
 * (q/k/v bias, tied, GQA ratio 3) and MistralForCausalLM. Our logits must
 * match transformers' on the same ids. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/json.h"
#include "core/mapfile.h"
#include "trainer/model.h"
#include "trainer/train.h"

#include <sys/stat.h>
#include <unistd.h>

/* A copy of hf_tiny/NAME in tmp/NAME_sw whose config.json has the given
 * sliding_window and use_sliding_window (-1: key left out); returns the dir. */
static const char *with_window(const char *refs, const char *tmp, const char *name, int window, int use,
                               char *dir, size_t cap) {
    char src[4096], p[4400];
    snprintf(src, sizeof src, "%s/hf_tiny/%s", refs, name);
    snprintf(dir, cap, "%s/%s_sw%d_%d", tmp, name, window, use);
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/model.safetensors", src);
    char q[4400];
    snprintf(q, sizeof q, "%s/model.safetensors", dir);
    if (symlink(p, q) != 0) return NULL;
    snprintf(p, sizeof p, "%s/config.json", src);
    cJSON *j = NULL;
    pl_err err = {0};
    if (pl_json_load(p, 1 << 20, &j, &err)) return NULL;
    cJSON_DeleteItemFromObject(j, "sliding_window");
    cJSON_DeleteItemFromObject(j, "use_sliding_window");
    cJSON_AddNumberToObject(j, "sliding_window", window);
    if (use >= 0) cJSON_AddBoolToObject(j, "use_sliding_window", use);
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    snprintf(q, sizeof q, "%s/config.json", dir);
    FILE *f = fopen(q, "w");
    if (!f || !s) { free(s); if (f) fclose(f); return NULL; }
    fputs(s, f);
    fclose(f);
    free(s);
    return dir;
}

/* Mistral's sliding window (and Qwen2's with use_sliding_window) is read; potluck
 * does not implement it, so sequences longer than the window are refused with a
 * message, and the window's length itself still works. */
static void test_sliding_window(const char *refs) {
    char tmp[] = "/tmp/test_model_hf_XXXXXX", dir[4400];
    if (!mkdtemp(tmp)) { CHECK(0, "mkdtemp"); return; }
    pl_err err = {0};
    pl_model *m = NULL;
    const char *d = with_window(refs, tmp, "mistral", 4, -1, dir, sizeof dir);
    CHECK(d && pl_model_load(&m, d, NULL, &err) == 0, "mistral with sliding_window 4: load: %s", err.msg);
    if (m) {
        CHECK(m->cfg.sliding_window == 4, "sliding_window read: %d", m->cfg.sliding_window);
        int32_t ids[5] = {1, 2, 3, 4, 5};
        float *lg = malloc(sizeof(float) * 5 * (size_t)m->cfg.vocab);
        CHECK(pl_model_forward(m, ids, NULL, NULL, 4, lg, &err) == 0, "4 tokens in a window of 4: %s", err.msg);
        int rc = pl_model_forward(m, ids, NULL, NULL, 5, lg, &err);
        CHECK(rc == PL_EUNSUPPORTED && strstr(err.msg, "sliding window of 4") && strstr(err.msg, "at most 4 tokens"),
              "5 tokens refused: %d %s", rc, err.msg);
        pl_kvcache kv;
        rc = pl_kvcache_init(&kv, m, 1, 5, &err);
        CHECK(rc == PL_EUNSUPPORTED && strstr(err.msg, "context: 5 tokens"), "a context of 5 refused: %s", err.msg);
        if (rc == 0) pl_kvcache_free(&kv);
        CHECK(pl_kvcache_init(&kv, m, 1, 4, &err) == 0, "a context of 4: %s", err.msg);
        pl_kvcache_free(&kv);
        pl_train *t = NULL;
        rc = pl_train_init(&t, m, 5, &err);
        CHECK(rc == PL_EUNSUPPORTED && !t && strstr(err.msg, "train rows"), "training rows of 5 refused: %s", err.msg);
        pl_train_free(t);
        free(lg);
        pl_model_free(m);
        m = NULL;
    }
    d = with_window(refs, tmp, "qwen2", 4, 0, dir, sizeof dir);
    CHECK(d && pl_model_load(&m, d, NULL, &err) == 0 && m->cfg.sliding_window == 0,
          "qwen2 with use_sliding_window false: no window (%s)", err.msg);
    pl_model_free(m);
    m = NULL;
    d = with_window(refs, tmp, "qwen2", 4, 1, dir, sizeof dir);
    CHECK(d && pl_model_load(&m, d, NULL, &err) == 0 && m->cfg.sliding_window == 4,
          "qwen2 with use_sliding_window true: window 4 (%s)", err.msg);
    pl_model_free(m);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0, "cleanup");
}

static int compare(const char *refs, const char *name, pl_arch want_arch) {
    char dir[4096], p[4200];
    snprintf(dir, sizeof dir, "%s/hf_tiny/%s", refs, name);
    pl_err err = {0};
    cJSON *meta = NULL;
    snprintf(p, sizeof p, "%s/meta.json", dir);
    int64_t T = 0, V = 0;
    if (pl_json_load(p, 1 << 20, &meta, &err) || pl_json_int(meta, "T", p, &T, &err) ||
        pl_json_int(meta, "vocab", p, &V, &err)) {
        CHECK(0, "%s: %s", name, err.msg);
        cJSON_Delete(meta);
        return 1;
    }
    cJSON_Delete(meta);
    char *ids_b = NULL, *lg_b = NULL;
    size_t ids_n = 0, lg_n = 0;
    snprintf(p, sizeof p, "%s/ids.i32", dir);
    int rc = pl_read_file(p, 1 << 26, &ids_b, &ids_n, &err);
    snprintf(p, sizeof p, "%s/logits.f32", dir);
    if (!rc) rc = pl_read_file(p, 1 << 28, &lg_b, &lg_n, &err);
    CHECK(rc == 0 && ids_n == (size_t)T * 4 && lg_n == (size_t)(T * V) * 4, "%s: reference files: %s", name, err.msg);
    pl_model *m = NULL;
    if (rc == 0) {
        rc = pl_model_load(&m, dir, NULL, &err);
        CHECK(rc == 0, "%s: load: %s", name, err.msg);
    }
    if (rc == 0) {
        CHECK(m->cfg.arch == want_arch, "%s: architecture %s", name, pl_arch_name(m->cfg.arch));
        CHECK(m->cfg.vocab == V, "%s: vocab %d, expected %lld", name, m->cfg.vocab, (long long)V);
        float *lg = malloc((size_t)(T * V) * sizeof(float));
        rc = pl_model_forward(m, (const int32_t *)ids_b, NULL, NULL, (int)T, lg, &err);
        CHECK(rc == 0, "%s: forward: %s", name, err.msg);
        if (rc == 0) {
            const float *ref = (const float *)lg_b;
            double scale = 0;
            for (int64_t i = 0; i < T * V; i++) scale = fabs(ref[i]) > scale ? fabs(ref[i]) : scale;
            double d = check_max_abs(lg, ref, (size_t)(T * V));
            int argmax_same = 1;
            for (int64_t t = 0; t < T; t++) {
                int64_t a = 0, b = 0;
                for (int64_t v = 1; v < V; v++) {
                    if (lg[t * V + v] > lg[t * V + a]) a = v;
                    if (ref[t * V + v] > ref[t * V + b]) b = v;
                }
                if (a != b) argmax_same = 0;
            }
            CHECK(d <= 1e-4 * (scale > 1 ? scale : 1), "%s: logits differ from transformers: max abs %g (max |logit| %g)",
                  name, d, scale);
            CHECK(argmax_same, "%s: argmax differs from transformers at some position", name);
            printf("note: %s: %lld tokens, max abs logit diff vs transformers %.3g (max |logit| %.3g)\n", name,
                   (long long)T, d, scale);
        }
        free(lg);
    }
    pl_model_free(m);
    free(ids_b);
    free(lg_b);
    return rc;
}

int main(void) {
    const char *refs = check_env("POTLUCK_REFS");
    compare(refs, "llama", PL_ARCH_LLAMA);
    compare(refs, "llama_sharded", PL_ARCH_LLAMA);
    compare(refs, "qwen2", PL_ARCH_QWEN2);
    compare(refs, "mistral", PL_ARCH_MISTRAL);
    test_sliding_window(refs);
    /* fp32 conversion path (used for training) gives the same logits */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/hf_tiny/qwen2", refs);
    pl_err err = {0};
    pl_model *a = NULL, *b = NULL;
    pl_model_opts o = {.fp32 = 1};
    if (pl_model_load(&a, dir, NULL, &err) == 0 && pl_model_load(&b, dir, &o, &err) == 0) {
        int32_t ids[5] = {1, 2, 3, 4, 5};
        float la[5 * 300], lb[5 * 300];
        int ok = a->cfg.vocab == 300 && pl_model_forward(a, ids, NULL, NULL, 5, la, &err) == 0 &&
                 pl_model_forward(b, ids, NULL, NULL, 5, lb, &err) == 0;
        CHECK(ok && check_max_abs(la, lb, 5 * 300) < 1e-5, "fp32 copy gives different logits: %s", err.msg);
    } else {
        CHECK(0, "qwen2 load: %s", err.msg);
    }
    pl_model_free(a);
    pl_model_free(b);
    return check_summary("test_model_hf");
}
