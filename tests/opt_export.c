/* opt_export.c: GGUF export of SmolLM2-135M-Instruct merged with a small
 * nonzero LoRA (r 4 on q,k,v,o,gate,up,down), as F16 and Q8_0.
 *
 * - potluck's logits on the exported F16 GGUF equal those of the merged
 *   model with every matrix rounded to fp16, bit for bit, on every processor:
 *   the only change the export makes is that rounding, and on a prompt of
 *   PL_CPU_LINQ_DOT_MAX_T tokens or more both models make the same pl_gemm
 *   calls on the same values (F16 rows are dequantized in blocks of whole
 *   column tiles, trainer/cpu/cpu_linear.c), so no summation order differs.
 *   The difference to the unrounded merged fp32 model is reported (under
 *   0.1); Q8_0 is close with the same argmax on most positions.
 * - With POTLUCK_EXPORT_DIR set (tests/cli_export.sh) the GGUF files stay
 *   there; once tests/interop/export_check.py has run llama.cpp
 *   (llama-cpp-python) on them (llamacpp_f16.json, llamacpp_q8_0.json), its
 *   greedy continuations of 8 prompts (their first 16 tokens) are compared with
 *   potluck's on the same files, skipping near ties (tests/greedy_compare.h),
 *   as tests/opt_smollm2.c does for the base model over all 32 tokens.
 * Runs on the optimized build. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "greedy_compare.h"
#include "core/half.h"
#include "core/json.h"
#include "core/mapfile.h"
#include "trainer/cpu/cpu_int.h"
#include "trainer/model_lora.h"
#include "trainer/export.h"
#include "trainer/model.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float urand(float a) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return a * (2.0f * (float)((rng_state >> 11) * (1.0 / 9007199254740992.0)) - 1.0f);
}

static float *round_f16(pl_qweight *w) {
    float *f = malloc(sizeof(float) * (size_t)w->rows * w->cols);
    for (int64_t r = 0; r < w->rows; r++) {
        float *row = f + (size_t)r * w->cols;
        pl_qweight_row(w, r, row);
        for (int64_t i = 0; i < w->cols; i++) row[i] = pl_f16_to_f32(pl_f32_to_f16(row[i]));
    }
    w->dtype = PL_F32;
    w->row_bytes = (size_t)w->cols * 4;
    w->data = f;
    w->aux = NULL;
    return f;
}

/* The llama.cpp comparison of an exported GGUF (tests/greedy_compare.h). */
static void greedy_compare(const char *gguf, const char *json, const char *label) {
    pl_err err = {0};
    cJSON *j = NULL;
    if (pl_json_load(json, 1 << 24, &j, &err)) { CHECK(0, "%s", err.msg); return; }
    pl_model *m = NULL;
    if (pl_model_load(&m, gguf, NULL, &err)) { CHECK(0, "%s", err.msg); cJSON_Delete(j); return; }
    greedy_compare_llamacpp(m, j, label, 16); /* 8 prompts x 16 tokens; opt_smollm2 runs all 32 on the model */
    pl_model_free(m);
    cJSON_Delete(j);
}

int main(void) {
    const char *model = check_env("POTLUCK_MODEL");
    const char *refs = check_env("POTLUCK_REFS");
    const char *keep = getenv("POTLUCK_EXPORT_DIR");
    char tmpl[] = "/tmp/pl_opt_export_XXXXXX";
    const char *dir = keep && *keep ? keep : mkdtemp(tmpl);
    REQUIRE(dir != NULL, "mkdtemp");
    pl_err err = {0};
    pl_model *m = NULL;
    REQUIRE(pl_model_load(&m, model, NULL, &err) == 0, "load %s: %s", model, err.msg);
    REQUIRE(pl_export_writable(m, &err) == 0, "writable: %s", err.msg);
    pl_lora *l = NULL;
    pl_lora_cfg lc = {.r = 4, .alpha = 8, .targets = PL_LORA_ALL_LINEAR, .seed = 11};
    REQUIRE(pl_lora_init(&l, m, &lc, &err) == 0, "lora init: %s", err.msg);
    for (int k = 0; k < l->n; k++) /* B starts at zero: make the adapter do something */
        for (int i = 0; i < l->mods[k].out * l->mods[k].r; i++) l->mods[k].B[i] = urand(0.02f);
    REQUIRE(pl_lora_merge(m, l, &err) == 0, "merge: %s", err.msg);
    char ad[4200];
    snprintf(ad, sizeof ad, "%s/smollm2_adapter", dir);
    CHECK(pl_lora_save_peft(l, m, ad, model, &err) == 0, "save adapter: %s", err.msg);
    pl_lora_free(l);

    char f16p[4096], q8p[4096];
    snprintf(f16p, sizeof f16p, "%s/smollm2_f16.gguf", dir);
    snprintf(q8p, sizeof q8p, "%s/smollm2_q8_0.gguf", dir);
    pl_export_gguf_opts go = {.ftype = PL_FTYPE_F16, .name = "SmolLM2 + test adapter"};
    CHECK(pl_export_gguf(m, f16p, &go, &err) == 0, "F16 export: %s", err.msg);
    go.ftype = PL_FTYPE_Q8_0;
    CHECK(pl_export_gguf(m, q8p, &go, &err) == 0, "Q8_0 export: %s", err.msg);

    /* logits on two prompts of the llama.cpp reference (their token ids) */
    char p[4096];
    snprintf(p, sizeof p, "%s/smollm2_llamacpp/prompts.json", refs);
    cJSON *j = NULL;
    REQUIRE(pl_json_load(p, 1 << 24, &j, &err) == 0, "%s", err.msg);
    int32_t *ids;
    int T;
    read_ids(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "prompts"), 6), "prompt_ids"), &ids, &T);
    cJSON_Delete(j);
    int V = m->cfg.vocab;
    size_t nl = (size_t)T * V;
    float *merged = malloc(nl * 4), *rounded = malloc(nl * 4), *lf16 = malloc(nl * 4), *lq8 = malloc(nl * 4);
    CHECK(pl_model_forward(m, ids, NULL, NULL, T, merged, &err) == 0, "forward: %s", err.msg);
    /* the merged model with every matrix rounded to fp16 */
    int nr = 0;
    float **ro = malloc(sizeof(float *) * (size_t)(m->cfg.n_layers * 7 + 1));
    ro[nr++] = round_f16(&m->tok_embd);
    if (m->cfg.tied_embeddings) m->lm_head = m->tok_embd;
    for (int i = 0; i < m->cfg.n_layers; i++) {
        pl_layer *L = &m->layers[i];
        pl_qweight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int k = 0; k < 7; k++) ro[nr++] = round_f16(ws[k]);
    }
    CHECK(pl_model_forward(m, ids, NULL, NULL, T, rounded, &err) == 0, "forward: %s", err.msg);
    pl_model_free(m);
    for (int i = 0; i < nr; i++) free(ro[i]);
    free(ro);

    pl_model *mf = NULL, *mq = NULL;
    CHECK(pl_model_load(&mf, f16p, NULL, &err) == 0, "load F16 export: %s", err.msg);
    if (mf) {
        CHECK(mf->tok_embd.dtype == PL_F16 && mf->layers[0].wq.dtype == PL_F16 && mf->cfg.tied_embeddings &&
                  mf->cfg.n_layers == 30 && mf->cfg.n_kv_heads == 3 && mf->cfg.eos_id >= 0,
              "F16 export: config/dtypes");
        CHECK(pl_model_forward(mf, ids, NULL, NULL, T, lf16, &err) == 0, "forward F16: %s", err.msg);
        double d0 = check_max_abs(lf16, rounded, nl), d1 = check_max_abs(lf16, merged, nl);
        CHECK(T >= PL_CPU_LINQ_DOT_MAX_T, "prompt of %d tokens takes the GEMM path", T);
        CHECK(d0 == 0, "F16 export vs fp16-rounded merged model: same logit bits (max abs diff %g)", d0);
        printf("note: F16 GGUF export (%d tokens): vs merged fp32 rounded to fp16 %g, vs merged fp32 %g\n", T, d0, d1);
        CHECK(d1 < 0.1, "F16 export vs merged fp32: %g", d1);
        pl_model_free(mf);
    }
    CHECK(pl_model_load(&mq, q8p, NULL, &err) == 0, "load Q8_0 export: %s", err.msg);
    if (mq) {
        CHECK(mq->layers[0].wq.dtype == PL_Q8_0 && mq->tok_embd.dtype == PL_Q8_0, "Q8_0 export: dtypes");
        CHECK(pl_model_forward(mq, ids, NULL, NULL, T, lq8, &err) == 0, "forward Q8_0: %s", err.msg);
        double d = check_max_abs(lq8, merged, nl);
        int same = 0;
        for (int t = 0; t < T; t++) {
            int a, b;
            float ga, gb;
            top2(lq8 + (size_t)t * V, V, &a, &ga);
            top2(merged + (size_t)t * V, V, &b, &gb);
            same += a == b;
        }
        CHECK(same >= T * 9 / 10 && d < 2.0, "Q8_0 export: argmax agrees at %d/%d positions, max abs diff %g", same, T, d);
        printf("note: Q8_0 GGUF export: max abs logit diff %g vs merged fp32, argmax same at %d/%d positions\n", d,
               same, T);
        pl_model_free(mq);
    }
    free(merged); free(rounded); free(lf16); free(lq8); free(ids);

    /* llama.cpp's greedy continuations on the same files (tests/cli_export.sh) */
    char jp[4096];
    snprintf(jp, sizeof jp, "%s/llamacpp_f16.json", dir);
    if (access(jp, F_OK) == 0) greedy_compare(f16p, jp, "F16 export");
    snprintf(jp, sizeof jp, "%s/llamacpp_q8_0.json", dir);
    if (access(jp, F_OK) == 0) greedy_compare(q8p, jp, "Q8_0 export");
    if (!(keep && *keep)) {
        char cmd[4400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        CHECK(system(cmd) == 0, "cleanup");
    }
    return check_summary("opt_export");
}
