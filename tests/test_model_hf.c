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
