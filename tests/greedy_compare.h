/* greedy_compare.h: the llama.cpp greedy comparison the SmolLM2 tests share
 * (opt_smollm2.c on the model, opt_export.c on its GGUF exports).
 *
 * For every prompt of a llama.cpp reference (prompt_ids, 32 gen_ids and
 * llama.cpp's own top2_gap per step), our greedy continuation must equal
 * llama.cpp's up to the first step where either side's top-2 logit gap is
 * under 0.1: ours (the rule) or llama.cpp's (its activations are
 * quantized to 8 bits, which moves logits by a few hundredths, so where
 * llama.cpp itself is within 0.1 it may pick either). The step where the
 * comparison ends is reported, and over the prompt set at least
 * GREEDY_MIN_COMPARED tokens must have been compared: a model whose gaps all
 * collapse (or a reference without tokens) cannot pass by comparing nothing.
 * (Seen: 76 to 131 of 256 on SmolLM2 and its F16/Q8_0 exports.) */
#ifndef PL_TEST_GREEDY_COMPARE_H
#define PL_TEST_GREEDY_COMPARE_H

#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "core/json.h"
#include "trainer/model.h"

#define GREEDY_MIN_COMPARED 48

static inline void top2(const float *x, int V, int *best, float *gap) {
    int a = 0, b = -1;
    for (int v = 1; v < V; v++) {
        if (x[v] > x[a]) { b = a; a = v; }
        else if (b < 0 || x[v] > x[b]) b = v;
    }
    *best = a;
    *gap = x[a] - x[b];
}

static inline void read_ids(const cJSON *arr, int32_t **out, int *n) {
    int k = cJSON_GetArraySize(arr);
    *out = malloc(sizeof(int32_t) * (k ? k : 1));
    *n = k;
    for (int i = 0; i < k; i++) (*out)[i] = (int32_t)cJSON_GetArrayItem(arr, i)->valuedouble;
}

/* A matrix rounded to fp16 precision, as an owned fp32 copy (freed by caller). */
/* Compare m's greedy continuations with the "prompts" array of a llama.cpp
 * reference; label prefixes the note lines. */
static inline void greedy_compare_llamacpp(pl_model *m, const cJSON *j, const char *label) {
    pl_err err = {0};
    const cJSON *prompts = cJSON_GetObjectItem(j, "prompts");
    int np = cJSON_GetArraySize(prompts), V = m->cfg.vocab, full = 0, total_agree = 0;
    CHECK(np >= 8, "%s: expected at least 8 prompts, found %d", label, np);
    float *lg = malloc((size_t)V * sizeof(float));
    for (int i = 0; i < np; i++) {
        const cJSON *e = cJSON_GetArrayItem(prompts, i);
        int32_t *pids, *want;
        int n, nw;
        const cJSON *gaps = cJSON_GetObjectItem(e, "top2_gap");
        read_ids(cJSON_GetObjectItem(e, "prompt_ids"), &pids, &n);
        read_ids(cJSON_GetObjectItem(e, "gen_ids"), &want, &nw);
        pl_kvcache kv;
        int seq = 0, rc = pl_kvcache_init(&kv, m, 1, n + nw + 1, &err);
        const int32_t *tp = pids;
        if (!rc) rc = pl_model_decode(m, &kv, 1, &seq, &tp, &n, lg, NULL, &err);
        int agree = 0, tie_step = -1, mismatch = -1;
        const char *tie_who = "";
        for (int s = 0; s < nw && !rc; s++) {
            int best;
            float gap;
            top2(lg, V, &best, &gap);
            double peer_gap = cJSON_GetArrayItem(gaps, s) ? cJSON_GetArrayItem(gaps, s)->valuedouble : 1e9;
            if (gap < 0.1f) { tie_step = s; tie_who = "our"; break; }
            if (peer_gap < 0.1) { tie_step = s; tie_who = "llama.cpp's"; break; }
            if (best != want[s]) {
                mismatch = s;
                printf("note: %s prompt %d step %d: ours %d (gap %.3f), llama.cpp %d (gap %.3f)\n", label, i, s, best,
                       gap, want[s], peer_gap);
                break;
            }
            agree++;
            int32_t t = want[s];
            const int32_t *tt = &t;
            int one = 1;
            rc = pl_model_decode(m, &kv, 1, &seq, &tt, &one, lg, NULL, &err);
        }
        CHECK(rc == 0, "%s prompt %d: decode: %s", label, i, err.msg);
        CHECK(mismatch < 0, "%s prompt %d: greedy token %d differs from llama.cpp with a clear top-2 gap", label, i,
              mismatch);
        if (agree == nw) full++;
        total_agree += agree;
        printf("note: %s llama.cpp greedy prompt %d: %d/%d tokens agree%s", label, i, agree, nw, tie_step >= 0 ? "" : "\n");
        if (tie_step >= 0) printf(", comparison ends at step %d (%s top-2 gap < 0.1)\n", tie_step, tie_who);
        pl_kvcache_free(&kv);
        free(pids);
        free(want);
    }
    printf("note: %s vs llama.cpp: %d of %d prompts agree on all greedy tokens, %d tokens compared\n", label, full, np,
           total_agree);
    CHECK(total_agree >= GREEDY_MIN_COMPARED, "%s vs llama.cpp: %d tokens compared over %d prompts, at least %d required",
          label, total_agree, np, GREEDY_MIN_COMPARED);
    free(lg);
}

#endif
