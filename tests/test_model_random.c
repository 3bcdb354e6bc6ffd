/* test_model_random.c: the rehearsal model "random:SHAPE[@SEED]"
 * (trainer/model_random.c) on the CPU backend:
 *  - it is the model `potluck model init --random --nf4` writes for the same
 *    shape and seed: loading both, every layer weight's NF4 bytes (codes,
 *    8-bit absmax codes, nested absmax, offset, map) and the BF16 embedding
 *    and head are equal byte for byte, the norms 1 (a Llama shape with its own
 *    head, a tied Qwen2 shape with q/k/v biases, 0), and the logits of a
 *    forward are equal bit for bit;
 *  - another seed gives other bytes; the default seed is 0;
 *  - the header (potluck plan) reads its shape without making it: the layers
 *    NF4, the embeddings BF16; a preset name works as a shape;
 *  - it has no tokenizer (a clear error naming --tokenizer);
 *  - bad specs are refused with a message: no shape, an unknown shape, a seed
 *    that is not a whole number;
 *  - lora/nf4_math.h's pl_nf4_dyn_count (the device's lookup of the nested
 *    8-bit code) equals a plain count of the midpoints below each of the
 *    65536 bins' values (what lora/nf4.c's table holds). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lora/nf4.h"
#include "../lora/nf4_math.h"
#include "../trainer/model.h"
#include "../trainer/model_init.h"
#include "../trainer/plan.h"
#include "check.h"

static char dir[256];

static void write_cfg(const char *path, const char *arch, int tied) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    fprintf(f,
            "{\"architectures\": [\"%s\"], \"model_type\": \"%s\", \"vocab_size\": 300, \"hidden_size\": 64,"
            " \"intermediate_size\": 96, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
            " \"num_key_value_heads\": 2, \"max_position_embeddings\": 128, \"rms_norm_eps\": 1e-5,"
            " \"rope_theta\": 10000.0, \"tie_word_embeddings\": %s, \"bos_token_id\": 1, \"eos_token_id\": 2}\n",
            arch, !strcmp(arch, "Qwen2ForCausalLM") ? "qwen2" : "llama", tied ? "true" : "false");
    fclose(f);
}

static int same_nf4(const pl_qweight *a, const pl_qweight *b) {
    if (a->dtype != PL_NF4 || b->dtype != PL_NF4 || a->rows != b->rows || a->cols != b->cols) return 0;
    const pl_nf4 *p = a->data, *q = b->data;
    return p->n == q->n && p->blocksize == q->blocksize && p->double_quant && q->double_quant &&
           !memcmp(p->packed, q->packed, (size_t)(p->n + 1) / 2) &&
           !memcmp(p->absmax_q, q->absmax_q, (size_t)p->n_blocks) &&
           !memcmp(p->nested_absmax, q->nested_absmax, (size_t)p->n_nested * 4) &&
           !memcmp(&p->offset, &q->offset, 4) && !memcmp(p->code, q->code, sizeof p->code);
}

static int same_bf16(const pl_qweight *a, const pl_qweight *b) {
    return a->dtype == PL_BF16 && b->dtype == PL_BF16 && a->rows == b->rows && a->cols == b->cols &&
           !memcmp(a->data, b->data, (size_t)(a->rows * a->cols) * 2);
}

static int ones(const float *v, int n) {
    for (int i = 0; i < n; i++)
        if (v[i] != 1.0f) return 0;
    return 1;
}

/* The random model of cfg at seed equals the init's folder, byte for byte. */
static void against_init(const char *arch, int tied, uint64_t seed) {
    char cfg[300], out[300], spec[400];
    snprintf(cfg, sizeof cfg, "%s/%s-%d.json", dir, arch, tied);
    snprintf(out, sizeof out, "%s/init-%s-%d-%llu", dir, arch, tied, (unsigned long long)seed);
    write_cfg(cfg, arch, tied);
    pl_err err = {0};
    pl_model *probe = NULL;
    pl_model_config c;
    if (seed) snprintf(spec, sizeof spec, "random:%s@%llu", cfg, (unsigned long long)seed);
    else snprintf(spec, sizeof spec, "random:%s", cfg); /* the default seed is 0 */
    int rc = pl_model_load(&probe, spec, NULL, &err);
    CHECK(rc == 0, "%s: %s", spec, err.msg);
    if (rc) return;
    c = probe->cfg;
    pl_model_init_opts o = {.seed = seed, .nf4 = 1};
    rc = pl_model_init_random(&c, out, &o, &err);
    CHECK(rc == 0, "model init %s: %s", out, err.msg);
    pl_model *ref = NULL;
    if (!rc) rc = pl_model_load(&ref, out, NULL, &err);
    CHECK(rc == 0, "load %s: %s", out, err.msg);
    if (rc) { pl_model_free(probe); return; }
    pl_model *m = probe;
    CHECK(m->source == PL_SRC_RANDOM && m->cfg.n_layers == ref->cfg.n_layers && m->cfg.vocab == ref->cfg.vocab &&
              m->cfg.tied_embeddings == ref->cfg.tied_embeddings && m->cfg.qkv_bias == ref->cfg.qkv_bias,
          "%s: the config of the init's folder", spec);
    int lin = 1, norms = 1, bias = 1;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const pl_layer *a = &m->layers[l], *b = &ref->layers[l];
        const pl_qweight *wa[7] = {&a->wq, &a->wk, &a->wv, &a->wo, &a->w_gate, &a->w_up, &a->w_down};
        const pl_qweight *wb[7] = {&b->wq, &b->wk, &b->wv, &b->wo, &b->w_gate, &b->w_up, &b->w_down};
        for (int i = 0; i < 7; i++) lin &= same_nf4(wa[i], wb[i]);
        norms &= ones(a->attn_norm, m->cfg.dim) && ones(a->ffn_norm, m->cfg.dim);
        if (m->cfg.qkv_bias) bias &= a->bq && a->bk && a->bv && b->bq && !memcmp(a->bq, b->bq, (size_t)m->cfg.dim * 4);
    }
    CHECK(lin, "%s: every layer weight's NF4 bytes equal the init's", spec);
    CHECK(norms && ones(m->out_norm, m->cfg.dim), "%s: norms 1", spec);
    CHECK(bias, "%s: q/k/v biases 0 as the init's", spec);
    CHECK(same_bf16(&m->tok_embd, &ref->tok_embd), "%s: the embedding's BF16 bytes", spec);
    CHECK(tied ? m->lm_head.data == m->tok_embd.data : same_bf16(&m->lm_head, &ref->lm_head), "%s: the head (%s)",
          spec, tied ? "tied" : "its own");
    /* the same model: the same logits, bit for bit */
    int32_t ids[6] = {1, 17, 42, 299, 5, 8}, pos[6] = {0, 1, 2, 3, 4, 5};
    const int V = m->cfg.vocab;
    float *la = malloc((size_t)6 * V * sizeof(float)), *lb = malloc((size_t)6 * V * sizeof(float));
    if (la && lb && !pl_model_forward(m, ids, pos, NULL, 6, la, &err) && !pl_model_forward(ref, ids, pos, NULL, 6, lb, &err))
        CHECK(!memcmp(la, lb, (size_t)6 * V * sizeof(float)), "%s: the forward's logits equal the init's", spec);
    else
        CHECK(0, "%s: forward: %s", spec, err.msg);
    free(la);
    free(lb);
    struct pl_tokenizer *tok = NULL;
    pl_err te = {0};
    CHECK(pl_model_tokenizer(m, NULL, &tok, &te) != 0 && strstr(te.msg, "no tokenizer") && strstr(te.msg, "--tokenizer"),
          "%s: no tokenizer, said: %s", spec, te.msg);
    pl_model_free(ref);
    pl_model_free(m);
}

static void seeds(void) {
    char cfg[300], s1[400], s2[400];
    snprintf(cfg, sizeof cfg, "%s/seeds.json", dir);
    write_cfg(cfg, "LlamaForCausalLM", 0);
    snprintf(s1, sizeof s1, "random:%s@1", cfg);
    snprintf(s2, sizeof s2, "random:%s@2", cfg);
    pl_err err = {0};
    pl_model *a = NULL, *b = NULL, *a2 = NULL;
    int rc = pl_model_load(&a, s1, NULL, &err) || pl_model_load(&b, s2, NULL, &err) ||
             pl_model_load(&a2, s1, NULL, &err);
    CHECK(rc == 0, "load seeds: %s", err.msg);
    if (!rc) {
        CHECK(!same_nf4(&a->layers[0].wq, &b->layers[0].wq) && !same_bf16(&a->tok_embd, &b->tok_embd),
              "seed 2 gives other bytes than seed 1");
        CHECK(same_nf4(&a->layers[1].w_down, &a2->layers[1].w_down) && same_bf16(&a->lm_head, &a2->lm_head),
              "seed 1 twice gives the same bytes");
    }
    pl_model_free(a);
    pl_model_free(b);
    pl_model_free(a2);
}

static void header_and_refusals(void) {
    pl_err err = {0};
    pl_model_header h;
    int rc = pl_model_read_header("random:llama2-7b@5", &h, &err);
    const pl_plan_preset *p = pl_plan_preset_find("llama2-7b");
    CHECK(rc == 0 && p, "header of random:llama2-7b@5: %s", err.msg);
    if (!rc && p)
        CHECK(h.source == PL_SRC_RANDOM && h.cfg.dim == p->cfg.dim && h.cfg.n_layers == p->cfg.n_layers &&
                  h.cfg.vocab == p->cfg.vocab && h.layer_dtype == PL_NF4 && h.embd_dtype == PL_BF16 &&
                  h.head_dtype == PL_BF16,
              "header: the preset's shape (dim %d, %d layers), NF4 layers, BF16 embeddings", h.cfg.dim, h.cfg.n_layers);
    static const struct { const char *spec, *says; } bad[] = {
        {"random:", "give a shape"},
        {"random:@3", "give a shape"},
        {"random:no-such-preset", "neither a preset"},
        {"random:llama2-7b@", "whole number"},
        {"random:llama2-7b@x1", "whole number"},
        {"random:llama2-7b@-1", "whole number"},
        {"random:llama2-7b@1.5", "whole number"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pl_model *m = NULL;
        pl_err e = {0};
        int r = pl_model_load(&m, bad[i].spec, NULL, &e);
        CHECK(r != 0 && !m && strstr(e.msg, bad[i].says), "%s refused (%s): %s", bad[i].spec, bad[i].says, e.msg);
        pl_err e2 = {0};
        CHECK(pl_model_read_header(bad[i].spec, &h, &e2) != 0 && strstr(e2.msg, bad[i].says),
              "%s: the header refused too: %s", bad[i].spec, e2.msg);
    }
}

static void dyn_count(void) {
    float mid[255];
    for (int k = 0; k < 255; k++) mid[k] = 0.5f * (pl_nf4_dynamic_map[k] + pl_nf4_dynamic_map[k + 1]);
    int bad = -1;
    for (int i = 0; i < PL_NF4_DYN_BINS && bad < 0; i++) {
        const float v = pl_nf4_dyn_bin_value(i);
        int c = 0;
        for (int k = 0; k < 255; k++) c += mid[k] < v;
        if (pl_nf4_dyn_count(mid, v) != c) bad = i;
    }
    CHECK(bad < 0, "pl_nf4_dyn_count differs from the plain count at bin %d", bad);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/potluck-test-model-random-XXXXXX");
    REQUIRE(mkdtemp(dir), "mkdtemp");
    against_init("LlamaForCausalLM", 0, 11);
    against_init("Qwen2ForCausalLM", 1, 0);
    seeds();
    header_and_refusals();
    dyn_count();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", dir);
    return check_summary("test_model_random");
}
