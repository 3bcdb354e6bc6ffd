/* test_lora.c: LoRA adapters and the QLoRA trainer core (lora/lora.h, trainer/train.h's frozen base).
 *
 * 1. Targets parsing; init: A in U(-1/sqrt(in), 1/sqrt(in)) with the right
 *    variance, B zero, same seed -> same bits, other seed -> other values.
 * 2. PEFT parity (tests/interop/peft_ref.py, FP32 BASE: a tiny random
 *    LlamaForCausalLM, GQA 4/2, untied, norms re-randomized; PEFT r=8 alpha=16,
 *    all seven modules, B set nonzero; the C side loads the very same initial
 *    adapter with pl_lora_load_peft). Frozen-base context, one packed row of
 *    three samples with ignored targets. Tolerances: adapted logits
 *    ||d||/||ref|| <= 1e-5 (q/k adapters included, no permutation); loss of
 *    each of 5 steps rel 1e-5; LoRA gradients of step 1 rel 1e-4 per tensor
 *    (||g - ref|| / ||ref||); grad norm rel 1e-5; weights after step 1 rel 1e-5
 *    and after step 5 rel 1e-4 per tensor (AdamW lr 1e-3 wd 0, clipping 0.3).
 *    The same 5 steps as two micro-batches (gradient accumulation, loss
 *    normalized over the trained tokens of the whole step) match the same
 *    reference.
 *    NF4 base (the QLoRA case): the same base loaded with nf4_blocksize 64
 *    and double quantization (frozen NF4 layer weights) against PEFT on
 *    peft_ref's nf4_base/ (bitsandbytes NF4 quantize + flattened dequantize
 *    of the same weights, written out): nf4_base/'s layer weights equal our
 *    dequantized NF4 rows bit for bit, then the same checks and tolerances.
 * 3. Save/load round trip (bit-identical A, B and config), PEFT names and
 *    shapes in the file, hostile adapters (missing / unexpected tensor, wrong
 *    shape, unsupported config) rejected with a message.
 * 4. Merge: W += scale B A on an fp32 model gives the adapted logits.
 * 5. Activation checkpointing on/off with dropout 0.1: loss and every LoRA
 *    gradient bit-identical; peak PL_MEM_ACTIVATIONS both ways (printed);
 *    the activation count is pl_train_activation_bytes_ckpt + LoRA's xa.
 * 6. Dropout masks: deterministic, keyed by step/micro/layer/module, kept
 *    fraction ~ 1-p; three steps with dropout 0.1 at 1, 2 and 3 threads give
 *    bit-identical adapters, and run to run.
 * 7. Quantized frozen base: the F16 GGUF fixture as stored (linear_q,
 *    linear_q_bwd_x, F16 embedding rows) against the same model converted to
 *    fp32: loss and LoRA gradients agree (rel 1e-5).
 *
 * 8. NF4 frozen base (lora/nf4.h) against its fp32 dequantization.
 *
 * Mode `test_lora --write-adapter DIR` (tests/cli_lora_peft.sh): trains an
 * rsLoRA adapter (r 4, alpha 8, our own init) for 3 steps on the peft_ref
 * base, saves it with pl_lora_save_peft in DIR/adapter and writes DIR/ids.i32
 * and DIR/logits.f32 (potluck's adapted logits) for peft to reproduce. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "core/json.h"
#include "core/mapfile.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "lora/lora.h"
#include "lora/nf4.h"
#include "trainer/model_lora.h"
#include "trainer/model_nf4.h"
#include "trainer/qlora.h"
#include "trainer/train.h"

/* REQUIRE for void helpers: count a failure and leave the helper. */
#define REQUIRE_VOID(cond, ...)                                                 \
    do {                                                                        \
        if (!(cond)) {                                                          \
            CHECK(0, __VA_ARGS__);                                              \
            return;                                                             \
        }                                                                       \
    } while (0)

static char refdir[4096];
static int32_t *g_ids, *g_tg, *g_pos, *g_seg;
static int g_T;

static float *read_f32(const char *path, size_t n) {
    char *b = NULL;
    size_t nb = 0;
    pl_err err = {0};
    if (pl_read_file(path, 1 << 28, &b, &nb, &err) || nb != n * 4) {
        CHECK(0, "%s: %s (%zu bytes, expected %zu)", path, err.msg, nb, n * 4);
        free(b);
        return NULL;
    }
    return (float *)b;
}

static double rel_err(const float *a, const float *ref, size_t n) {
    double dd = 0, rr = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i];
        dd += d * d;
        rr += (double)ref[i] * ref[i];
    }
    return rr > 0 ? sqrt(dd / rr) : sqrt(dd);
}

static int load_i32(const char *name, int32_t **out, int T) {
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", refdir, name);
    char *b = NULL;
    size_t n = 0;
    pl_err err = {0};
    if (pl_read_file(p, 1 << 20, &b, &n, &err) || n != (size_t)T * 4) {
        CHECK(0, "%s: %s", p, err.msg);
        free(b);
        return -1;
    }
    *out = (int32_t *)b;
    return 0;
}

/* Worst relative error of the adapter's A and B (or gA and gB) against the
 * files dir/<PEFT name>.f32. */
static double cmp_lora(const pl_lora *l, const char *sub, int grads, const char **worst_name) {
    double worst = 0;
    static char wn[256];
    *worst_name = "";
    for (int i = 0; i < l->n; i++) {
        const pl_lora_module *md = &l->mods[i];
        for (int ab = 0; ab < 2; ab++) {
            char path[4600];
            snprintf(path, sizeof path, "%s/%s/base_model.model.model.layers.%d.%s.%s.lora_%c.weight.f32", refdir, sub,
                     md->layer, md->which <= PL_LIN_O ? "self_attn" : "mlp", pl_lin_name(md->which), ab ? 'B' : 'A');
            size_t n = (size_t)md->r * (ab ? md->out : md->in);
            float *ref = read_f32(path, n);
            if (!ref) return 1e30;
            const float *x = ab ? (grads ? md->gB : md->B) : (grads ? md->gA : md->A);
            double e = rel_err(x, ref, n);
            if (e > worst) {
                worst = e;
                snprintf(wn, sizeof wn, "layers.%d.%s.lora_%c", md->layer, pl_lin_name(md->which), ab ? 'B' : 'A');
                *worst_name = wn;
            }
            free(ref);
        }
    }
    return worst;
}

/* ------------------------------------------------------------ 1 */

static void test_targets_init(const pl_model *m) {
    pl_err err = {0};
    unsigned mask = 0;
    CHECK(pl_lora_parse_targets("all-linear", &mask, &err) == 0 && mask == PL_LORA_ALL_LINEAR, "all-linear");
    CHECK(pl_lora_parse_targets("q, v_proj,down", &mask, &err) == 0 &&
              mask == ((1u << PL_LIN_Q) | (1u << PL_LIN_V) | (1u << PL_LIN_DOWN)), "q,v_proj,down -> 0x%x", mask);
    CHECK(pl_lora_parse_targets("q,lm_head", &mask, &err) == PL_EINVAL && strstr(err.msg, "lm_head"),
          "lm_head rejected: %s", err.msg);
    CHECK(pl_lora_parse_targets("", &mask, &err) == PL_EINVAL, "empty list rejected");

    pl_lora_cfg cfg = {.r = 8, .alpha = 16, .dropout = 0, .targets = PL_LORA_ALL_LINEAR, .seed = 42};
    pl_lora *a = NULL, *b = NULL, *c = NULL;
    REQUIRE_VOID(pl_lora_init(&a, m, &cfg, &err) == 0, "init: %s", err.msg);
    CHECK(a->n == 14, "2 layers x 7 modules, got %d", a->n);
    CHECK(a->mods[0].which == PL_LIN_Q && a->mods[6].which == PL_LIN_DOWN && a->mods[7].layer == 1, "PEFT order");
    CHECK(a->mods[1].out == 32 && a->mods[1].in == 64 && a->mods[6].in == 96, "k_proj (32,64), down in 96");
    CHECK(fabsf(a->mods[0].scale - 2.0f) == 0, "scale alpha/r = 2");
    CHECK(pl_lora_n_params(a) == 2 * (8 * (64 + 64) + 8 * (64 + 32) * 2 + 8 * (64 + 64) + 8 * (64 + 96) * 3),
          "n_params %lld", (long long)pl_lora_n_params(a));
    int ok_bound = 1, ok_b0 = 1;
    double s2 = 0;
    size_t n = 0;
    for (int i = 0; i < a->n; i++) {
        const pl_lora_module *md = &a->mods[i];
        float bound = 1.0f / sqrtf((float)md->in);
        for (int e = 0; e < md->r * md->in; e++) {
            if (fabsf(md->A[e]) > bound) ok_bound = 0;
            s2 += (double)md->A[e] * md->A[e] / ((double)bound * bound);
            n++;
        }
        for (int e = 0; e < md->r * md->out; e++)
            if (md->B[e] != 0) ok_b0 = 0;
    }
    CHECK(ok_bound, "A within +-1/sqrt(in)");
    CHECK(ok_b0, "B zero");
    CHECK(fabs(s2 / n - 1.0 / 3) < 0.02, "A variance bound^2/3 (got %.4f bound^2)", s2 / n);
    REQUIRE_VOID(pl_lora_init(&b, m, &cfg, &err) == 0, "init: %s", err.msg);
    cfg.seed = 43;
    cfg.rslora = 1;
    REQUIRE_VOID(pl_lora_init(&c, m, &cfg, &err) == 0, "init: %s", err.msg);
    CHECK(!memcmp(a->mods[5].A, b->mods[5].A, sizeof(float) * 8 * 64), "same seed, same A");
    CHECK(memcmp(a->mods[5].A, c->mods[5].A, sizeof(float) * 8 * 64), "other seed, other A");
    CHECK(memcmp(a->mods[4].A, a->mods[5].A, sizeof(float) * 8 * 64), "modules draw different A");
    CHECK(fabsf(c->mods[0].scale - 16.0f / sqrtf(8.0f)) < 1e-6f, "rsLoRA scale alpha/sqrt(r)");
    CHECK(pl_lora_find(a, 1, PL_LIN_UP) == &a->mods[12], "find layers.1.up_proj");
    cfg.r = 0;
    pl_lora *bad = NULL;
    CHECK(pl_lora_init(&bad, m, &cfg, &err) == PL_EINVAL && !bad, "r 0 rejected: %s", err.msg);
    cfg.r = 8;
    cfg.dropout = 1.0f;
    CHECK(pl_lora_init(&bad, m, &cfg, &err) == PL_EINVAL && !bad, "dropout 1 rejected: %s", err.msg);
    pl_lora_free(a);
    pl_lora_free(b);
    pl_lora_free(c);
}

/* ------------------------------------------------------------ 2 */

static pl_train *frozen_ctx(pl_model *m, int ckpt, pl_lora *l) {
    pl_err err = {0};
    pl_train *t = NULL;
    pl_train_opts o = {.frozen_base = 1, .checkpoint = ckpt};
    if (pl_train_init_opts(&t, m, g_T, &o, &err)) {
        CHECK(0, "train init: %s", err.msg);
        return NULL;
    }
    if (l && pl_train_attach_lora(t, l, &err)) {
        CHECK(0, "attach: %s", err.msg);
        pl_train_free(t);
        return NULL;
    }
    return t;
}

static pl_qlora_opts parity_opts(void) {
    pl_qlora_opts o = {.adamw = pl_adamw_defaults(), .max_grad_norm = 0.3f};
    o.adamw.weight_decay = 0.0f;
    return o;
}

/* The PEFT parity run on base m against the reference files <pre>logits0.f32,
 * <pre>grads1/, <pre>w1/, <pre>w5/ and the losses / grad_norm1 of `ref`
 * (index.json, or its "nf4" object); `what` names the base in messages. */
static void test_parity(pl_model *m, const cJSON *idx, const cJSON *refj, const char *pre, const char *what) {
    pl_err err = {0};
    char adir[4200];
    snprintf(adir, sizeof adir, "%s/adapter0", refdir);
    pl_lora *l = NULL;
    REQUIRE_VOID(pl_lora_load_peft(&l, m, adir, &err) == 0, "load PEFT adapter0: %s", err.msg);
    CHECK(l->cfg.r == 8 && l->cfg.alpha == 16 && l->cfg.dropout == 0 && !l->cfg.rslora &&
              l->cfg.targets == PL_LORA_ALL_LINEAR && l->n == 14, "adapter0 config read");
    pl_train *t = frozen_ctx(m, 0, l);
    if (!t) { pl_lora_free(l); return; }
    CHECK(t->n_params == 0, "frozen base: no parameters (%d)", t->n_params);

    /* adapted logits (each sample alone in torch; one packed row here) */
    double lsum = 0;
    int64_t nv = 0;
    CHECK(pl_train_forward(t, g_ids, g_tg, g_pos, g_seg, g_T, &lsum, &nv, &err) == 0, "forward: %s", err.msg);
    char p[4400];
    snprintf(p, sizeof p, "%s/%slogits0.f32", refdir, pre);
    float *ref = read_f32(p, (size_t)g_T * 256);
    if (ref) {
        double e = rel_err(t->logits, ref, (size_t)g_T * 256);
        printf("note: peft parity (%s): adapted logits rel err %.3g\n", what, e);
        CHECK(e <= 1e-5, "%s: adapted logits match PEFT: rel %.3g > 1e-5", what, e);
        free(ref);
    }
    int64_t ref_nv = 0;
    pl_json_int(idx, "n_valid", "index.json", &ref_nv, &err);
    CHECK(nv == ref_nv, "n_valid %lld vs %lld", (long long)nv, (long long)ref_nv);

    /* step-1 gradients before clipping */
    pl_train_zero_grad(t);
    CHECK(pl_train_backward(t, (float)(1.0 / (double)nv), &err) == 0, "backward: %s", err.msg);
    const char *wn;
    char sub_g[64], sub_w1[64], sub_w5[64];
    snprintf(sub_g, sizeof sub_g, "%sgrads1", pre);
    snprintf(sub_w1, sizeof sub_w1, "%sw1", pre);
    snprintf(sub_w5, sizeof sub_w5, "%sw5", pre);
    double eg = cmp_lora(l, sub_g, 1, &wn);
    printf("note: peft parity (%s): step-1 LoRA grads worst rel err %.3g (%s)\n", what, eg, wn);
    CHECK(eg <= 1e-4, "%s: LoRA grads of step 1: worst rel %.3g > 1e-4 at %s", what, eg, wn);

    /* 5 steps */
    const cJSON *losses = cJSON_GetObjectItemCaseSensitive(refj, "losses");
    double gn1_ref = 0;
    CHECK(pl_json_num(refj, "grad_norm1", "index.json", &gn1_ref, &err) == 0 && cJSON_GetArraySize(losses) == 5,
          "%s: reference losses and grad_norm1: %s", what, err.msg);
    pl_qlora_opts o = parity_opts();
    pl_microbatch mb = {g_ids, g_tg, g_pos, g_seg, g_T};
    double worst_loss = 0;
    for (int s = 1; s <= 5; s++) {
        double loss = 0, gn = 0;
        CHECK(pl_qlora_step(t, &mb, 1, &o, &loss, &gn, &err) == 0, "step %d: %s", s, err.msg);
        const cJSON *lr = cJSON_GetArrayItem(losses, s - 1);
        double rl = cJSON_IsNumber(lr) ? lr->valuedouble : 1e30;
        double e = fabs(loss - rl) / fabs(rl);
        if (e > worst_loss) worst_loss = e;
        CHECK(e <= 1e-5, "%s: step %d loss %.7f vs PEFT %.7f", what, s, loss, rl);
        if (s == 1) {
            double en = fabs(gn - gn1_ref) / gn1_ref;
            CHECK(en <= 1e-5, "%s: grad norm %.7f vs torch %.7f", what, gn, gn1_ref);
            double e1 = cmp_lora(l, sub_w1, 0, &wn);
            printf("note: peft parity (%s): weights after step 1 worst rel err %.3g (%s); grad norm %.6f (clipped to 0.3)\n",
                   what, e1, wn, gn);
            CHECK(e1 <= 1e-5, "%s: weights after step 1: worst rel %.3g > 1e-5 at %s", what, e1, wn);
        }
    }
    printf("note: peft parity (%s): 5 step losses worst rel err %.3g\n", what, worst_loss);
    double e5 = cmp_lora(l, sub_w5, 0, &wn);
    printf("note: peft parity (%s): weights after step 5 worst rel err %.3g (%s)\n", what, e5, wn);
    CHECK(e5 <= 1e-4, "%s: weights after step 5: worst rel %.3g > 1e-4 at %s", what, e5, wn);
    CHECK(t->step == 5, "5 AdamW steps (%d)", t->step);
    pl_train_free(t);
    pl_lora_free(l);

    /* the same as two micro-batches: samples 0+1 (33 tokens) and sample 2 (15) */
    l = NULL;
    REQUIRE_VOID(pl_lora_load_peft(&l, m, adir, &err) == 0, "reload: %s", err.msg);
    t = frozen_ctx(m, 0, l);
    if (!t) { pl_lora_free(l); return; }
    pl_microbatch two[2] = {{g_ids, g_tg, g_pos, g_seg, 33}, {g_ids + 33, g_tg + 33, g_pos + 33, g_seg + 33, 15}};
    for (int s = 1; s <= 5; s++) {
        double loss = 0;
        CHECK(pl_qlora_step(t, two, 2, &o, &loss, NULL, &err) == 0, "accum step %d: %s", s, err.msg);
        const cJSON *lr = cJSON_GetArrayItem(losses, s - 1);
        CHECK(cJSON_IsNumber(lr) && fabs(loss - lr->valuedouble) / fabs(lr->valuedouble) <= 1e-5,
              "%s: accum step %d loss %.7f", what, s, loss);
    }
    e5 = cmp_lora(l, sub_w5, 0, &wn);
    printf("note: peft parity (%s): 2 micro-batches, weights after step 5 worst rel err %.3g\n", what, e5);
    CHECK(e5 <= 1e-4, "%s: accumulated: weights after step 5: worst rel %.3g > 1e-4 at %s", what, e5, wn);
    pl_train_free(t);
    pl_lora_free(l);
}

/* 2b. PEFT parity on the NF4 base (the QLoRA case): the ORIGINAL fp32 base
 * loaded with nf4_blocksize 64 + double quantization (frozen NF4 layer
 * weights), adapter0 attached, the same steps against peft_ref's run on
 * nf4_base/ (bitsandbytes' NF4 quantize + flattened dequantize of the same
 * weights, written out). First: nf4_base/'s layer weights equal our
 * dequantized NF4 rows bit for bit, and every other tensor equals base/'s. */
static void test_parity_nf4(const cJSON *idx) {
    pl_err err = {0};
    char p[4400];
    const cJSON *nj = cJSON_GetObjectItemCaseSensitive(idx, "nf4");
    REQUIRE_VOID(cJSON_IsObject(nj), "index.json has no \"nf4\" object (rerun bash tests/refs.sh peft_ref)");
    snprintf(p, sizeof p, "%s/base", refdir);
    pl_model *m = NULL;
    pl_model_opts mo = {.nf4_blocksize = 64, .nf4_double_quant = 1};
    REQUIRE_VOID(pl_model_load(&m, p, &mo, &err) == 0, "load base as NF4: %s", err.msg);
    snprintf(p, sizeof p, "%s/nf4_base/model.safetensors", refdir);
    pl_st *st = NULL;
    if (pl_st_open(&st, p, &err)) {
        CHECK(0, "%s", err.msg);
        pl_model_free(m);
        return;
    }
    static const char *hf[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
    int n_nf4 = 0, n_cmp = 0;
    int64_t n_diff = 0, n_elems = 0;
    float *row = NULL;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        pl_layer *L = &m->layers[l];
        pl_qweight *w[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int j = 0; j < 7; j++) {
            char name[128];
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, hf[j]);
            n_nf4 += w[j]->dtype == PL_NF4;
            const pl_st_tensor *t = pl_st_find(st, name);
            if (!t || t->dtype != PL_F32 || t->n_dims != 2 || t->shape[0] != w[j]->rows || t->shape[1] != w[j]->cols) {
                CHECK(0, "nf4_base: %s missing or not F32 (%lld, %lld)", name, (long long)w[j]->rows,
                      (long long)w[j]->cols);
                continue;
            }
            float *r2 = realloc(row, sizeof(float) * (size_t)w[j]->cols);
            if (!r2) break;
            row = r2;
            const float *ref = (const float *)t->data;
            for (int64_t r = 0; r < w[j]->rows; r++) {
                if (pl_qweight_row(w[j], r, row)) { n_diff += w[j]->cols; continue; }
                for (int64_t c = 0; c < w[j]->cols; c++) {
                    float v;
                    memcpy(&v, ref + r * w[j]->cols + c, 4); /* the map may be unaligned */
                    n_diff += memcmp(&v, &row[c], 4) != 0;
                }
            }
            n_elems += w[j]->rows * w[j]->cols;
            n_cmp++;
        }
    }
    free(row);
    pl_st_close(st);
    CHECK(n_nf4 == 7 * m->cfg.n_layers, "every layer linear weight NF4 (%d of %d)", n_nf4, 7 * m->cfg.n_layers);
    printf("note: peft parity (NF4 base): nf4_base/ (bitsandbytes) vs our dequantized NF4: %lld of %lld values differ "
           "in %d tensors\n", (long long)n_diff, (long long)n_elems, n_cmp);
    CHECK(n_cmp == 7 * m->cfg.n_layers && n_diff == 0,
          "nf4_base/ layer weights equal our dequantized NF4 bit for bit (%lld of %lld differ)", (long long)n_diff,
          (long long)n_elems);
    /* not vacuous: quantization changes the loss the NF4 reference starts from */
    const cJSON *l32 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(idx, "losses"), 0),
                *l4 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(nj, "losses"), 0);
    CHECK(cJSON_IsNumber(l32) && cJSON_IsNumber(l4) && fabs(l4->valuedouble - l32->valuedouble) > 1e-3,
          "NF4 reference loss differs from the fp32 one (%.6f vs %.6f)", l4 ? l4->valuedouble : 0,
          l32 ? l32->valuedouble : 0);
    test_parity(m, idx, nj, "nf4_", "NF4 base");
    pl_model_free(m);
}

/* ------------------------------------------------------------ 3 */

static void write_text(const char *path, const char *s) {
    FILE *f = fopen(path, "w");
    if (f) { fputs(s, f); fclose(f); }
}

static void test_save_load(pl_model *m, const char *tmp) {
    pl_err err = {0};
    pl_lora_cfg cfg = {.r = 4, .alpha = 12, .dropout = 0.05f, .rslora = 1,
                       .targets = (1u << PL_LIN_Q) | (1u << PL_LIN_K) | (1u << PL_LIN_DOWN), .seed = 5};
    pl_lora *a = NULL, *b = NULL;
    REQUIRE_VOID(pl_lora_init(&a, m, &cfg, &err) == 0, "init: %s", err.msg);
    for (int i = 0; i < a->n; i++)
        for (int e = 0; e < a->mods[i].out * a->mods[i].r; e++) a->mods[i].B[e] = 0.01f * (float)((e * 7 + i) % 13);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/rt", tmp);
    REQUIRE_VOID(pl_lora_save_peft(a, m, dir, "tiny-llama", &err) == 0, "save: %s", err.msg);
    REQUIRE_VOID(pl_lora_load_peft(&b, m, dir, &err) == 0, "load: %s", err.msg);
    CHECK(b->n == a->n && b->cfg.r == 4 && b->cfg.alpha == 12 && b->cfg.dropout == 0.05f && b->cfg.rslora == 1 &&
              b->cfg.targets == cfg.targets, "config round trip");
    int same = b->n == a->n;
    for (int i = 0; same && i < a->n; i++)
        same = a->mods[i].layer == b->mods[i].layer && a->mods[i].which == b->mods[i].which &&
               !memcmp(a->mods[i].A, b->mods[i].A, sizeof(float) * 4 * a->mods[i].in) &&
               !memcmp(a->mods[i].B, b->mods[i].B, sizeof(float) * 4 * a->mods[i].out) &&
               a->mods[i].scale == b->mods[i].scale;
    CHECK(same, "A, B and scale bit-identical after the round trip");
    /* the file itself: PEFT names and shapes */
    char p[4400];
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    pl_st *st = NULL;
    if (pl_st_open(&st, p, &err) == 0) {
        const pl_st_tensor *tt = pl_st_find(st, "base_model.model.model.layers.1.mlp.down_proj.lora_A.weight");
        CHECK(tt && tt->n_dims == 2 && tt->shape[0] == 4 && tt->shape[1] == 96 && tt->dtype == PL_F32,
              "down_proj lora_A (4, 96) F32");
        tt = pl_st_find(st, "base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight");
        CHECK(tt && tt->shape[0] == 32 && tt->shape[1] == 4, "k_proj lora_B (32, 4)");
        CHECK(pl_st_count(st) == 12, "12 tensors (%zu)", pl_st_count(st));
        pl_st_close(st);
    } else CHECK(0, "%s", err.msg);
    cJSON *js = NULL;
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    if (pl_json_load(p, 1 << 20, &js, &err) == 0) {
        const char *s = NULL;
        CHECK(pl_json_str(js, "peft_type", p, &s, &err) == 0 && !strcmp(s, "LORA"), "peft_type LORA");
        CHECK(pl_json_str(js, "task_type", p, &s, &err) == 0 && !strcmp(s, "CAUSAL_LM"), "task_type");
        CHECK(pl_json_str(js, "bias", p, &s, &err) == 0 && !strcmp(s, "none"), "bias none");
        CHECK(pl_json_str(js, "base_model_name_or_path", p, &s, &err) == 0 && !strcmp(s, "tiny-llama"), "base name");
        cJSON_Delete(js);
    } else CHECK(0, "%s", err.msg);
    char raw[64];
    {
        char *b2 = NULL;
        size_t nb = 0;
        pl_read_file(p, 1 << 20, &b2, &nb, &err);
        CHECK(b2 && strstr(b2, "\"lora_dropout\":\t0.05") , "lora_dropout written as 0.05");
        CHECK(b2 && strstr(b2, "\"lora_alpha\":\t12,"), "lora_alpha written as an integer");
        free(b2);
    }
    (void)raw;
    pl_lora_free(b);
    b = NULL;

    /* hostile: a config naming more modules -> missing tensor */
    char cfgtxt[512];
    snprintf(cfgtxt, sizeof cfgtxt,
             "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 12, \"lora_dropout\": 0.0, \"bias\": \"none\", "
             "\"target_modules\": [%s], \"use_rslora\": true}", "\"q_proj\", \"k_proj\", \"down_proj\", \"up_proj\"");
    write_text(p, cfgtxt);
    CHECK(pl_lora_load_peft(&b, m, dir, &err) == PL_ENOTFOUND && !b && strstr(err.msg, "up_proj.lora_A"),
          "missing tensor: %s", err.msg);
    snprintf(cfgtxt, sizeof cfgtxt,
             "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 12, \"bias\": \"none\", "
             "\"target_modules\": [\"q_proj\", \"down_proj\"]}");
    write_text(p, cfgtxt);
    CHECK(pl_lora_load_peft(&b, m, dir, &err) == PL_EFORMAT && !b && strstr(err.msg, "unexpected tensor") &&
              strstr(err.msg, "k_proj"), "unexpected tensor: %s", err.msg);
    snprintf(cfgtxt, sizeof cfgtxt,
             "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 12, \"target_modules\": [\"q_proj\", \"k_proj\", "
             "\"down_proj\"]}");
    write_text(p, cfgtxt);
    CHECK(pl_lora_load_peft(&b, m, dir, &err) == PL_EFORMAT && !b && strstr(err.msg, "shape"), "wrong r: %s", err.msg);
    snprintf(cfgtxt, sizeof cfgtxt,
             "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 12, \"use_dora\": true, \"target_modules\": "
             "[\"q_proj\"]}");
    write_text(p, cfgtxt);
    CHECK(pl_lora_load_peft(&b, m, dir, &err) == PL_EUNSUPPORTED && !b && strstr(err.msg, "use_dora"),
          "DoRA rejected: %s", err.msg);
    write_text(p, "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 12, \"target_modules\": [\"wq\"]}");
    CHECK(pl_lora_load_peft(&b, m, dir, &err) == PL_EUNSUPPORTED && !b && strstr(err.msg, "wq"),
          "unknown module rejected: %s", err.msg);
    write_text(p, "{\"peft_type\": \"LORA\", \"r\": 99999999999, \"lora_alpha\": 12, \"target_modules\": [\"q_proj\"]}");
    CHECK(pl_lora_load_peft(&b, m, dir, &err) != 0 && !b, "huge r rejected: %s", err.msg);
    write_text(p, "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 12, \"lora_dropout\": 1.5, \"target_modules\": [\"q_proj\"]}");
    CHECK(pl_lora_load_peft(&b, m, dir, &err) == PL_EINVAL && !b && strstr(err.msg, "dropout"),
          "dropout 1.5 rejected: %s", err.msg);
    write_text(p, "{\"peft_type\": \"LORA\", \"r\"");
    CHECK(pl_lora_load_peft(&b, m, dir, &err) != 0 && !b, "truncated config rejected: %s", err.msg);
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    write_text(p, "garbage");
    write_text(strcat(strcpy(cfgtxt, dir), "/adapter_config.json"),
               "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 12, \"target_modules\": [\"q_proj\"]}");
    CHECK(pl_lora_load_peft(&b, m, dir, &err) != 0 && !b, "garbage safetensors rejected: %s", err.msg);
    pl_lora_free(a);
}

/* ------------------------------------------------------------ 4 */

static void test_merge(const pl_model *m) {
    pl_err err = {0};
    char p[4400];
    snprintf(p, sizeof p, "%s/base", refdir);
    pl_model *m32 = NULL;
    pl_model_opts mo = {.fp32 = 1};
    REQUIRE_VOID(pl_model_load(&m32, p, &mo, &err) == 0, "load fp32: %s", err.msg);
    snprintf(p, sizeof p, "%s/adapter0", refdir);
    pl_lora *l = NULL;
    if (pl_lora_load_peft(&l, m32, p, &err) == 0) {
        CHECK(pl_lora_merge(m32, l, &err) == 0, "merge: %s", err.msg);
        float *lg = malloc(sizeof(float) * g_T * 256);
        CHECK(pl_model_forward(m32, g_ids, g_pos, g_seg, g_T, lg, &err) == 0, "forward: %s", err.msg);
        snprintf(p, sizeof p, "%s/logits0.f32", refdir);
        float *ref = read_f32(p, (size_t)g_T * 256);
        if (ref) {
            double e = rel_err(lg, ref, (size_t)g_T * 256);
            printf("note: merged model logits rel err vs PEFT %.3g\n", e);
            CHECK(e <= 1e-5, "merged logits: rel %.3g > 1e-5", e);
            free(ref);
        }
        free(lg);
        pl_lora_free(l);
    } else CHECK(0, "load: %s", err.msg);
    pl_model_free(m32);
    (void)m;
}

/* ------------------------------------------------------------ 5, 6 */

static pl_lora *dropout_lora(pl_model *m) {
    pl_err err = {0};
    pl_lora_cfg cfg = {.r = 8, .alpha = 16, .dropout = 0.1f, .targets = PL_LORA_ALL_LINEAR, .seed = 77};
    pl_lora *l = NULL;
    if (pl_lora_init(&l, m, &cfg, &err)) { CHECK(0, "init: %s", err.msg); return NULL; }
    for (int i = 0; i < l->n; i++) /* nonzero B so every gradient flows */
        for (int e = 0; e < l->mods[i].out * l->mods[i].r; e++)
            l->mods[i].B[e] = 0.02f * pl_rng_normal(99, (uint64_t)i, (uint64_t)e);
    return l;
}

static void test_checkpoint(pl_model *m) {
    pl_err err = {0};
    pl_lora *la = dropout_lora(m), *lb = dropout_lora(m);
    if (!la || !lb) { pl_lora_free(la); pl_lora_free(lb); return; }
    size_t peak[2], cur_add[2], xa_bytes = 0;
    for (int i = 0; i < la->n; i++) xa_bytes += 4 * (size_t)g_T * la->mods[i].r;
    double loss[2];
    pl_lora *ls[2] = {la, lb};
    for (int ck = 0; ck < 2; ck++) {
        size_t c0 = pl_mem_current(PL_MEM_ACTIVATIONS);
        pl_mem_reset_peak();
        pl_train *t = frozen_ctx(m, ck, ls[ck]);
        if (!t) { pl_lora_free(la); pl_lora_free(lb); return; }
        cur_add[ck] = pl_mem_current(PL_MEM_ACTIVATIONS) - c0;
        t->step = 3; /* some step: masks keyed by it */
        int64_t nv = 0;
        CHECK(pl_train_forward(t, g_ids, g_tg, g_pos, g_seg, g_T, &loss[ck], &nv, &err) == 0, "fwd: %s", err.msg);
        pl_train_zero_grad(t);
        CHECK(pl_train_backward(t, 1.0f / (float)nv, &err) == 0, "bwd: %s", err.msg);
        peak[ck] = pl_mem_peak(PL_MEM_ACTIVATIONS);
        CHECK(cur_add[ck] == pl_train_activation_bytes_ckpt(&m->cfg, g_T, ck) + xa_bytes,
              "checkpoint %d: activations %zu = formula %zu + LoRA xa %zu", ck, cur_add[ck],
              pl_train_activation_bytes_ckpt(&m->cfg, g_T, ck), xa_bytes);
        pl_train_free(t);
    }
    printf("note: peak PL_MEM_ACTIVATIONS (T=%d, 2 layers): %zu B without checkpointing, %zu B with\n", g_T, peak[0],
           peak[1]);
    CHECK(peak[1] < peak[0], "checkpointing lowers the activation peak");
    CHECK(loss[0] == loss[1], "same loss bits with checkpointing (%.9g vs %.9g)", loss[0], loss[1]);
    int same = 1, nonzero = 1;
    for (int i = 0; i < la->n; i++) {
        size_t na = (size_t)la->mods[i].r * la->mods[i].in, nb = (size_t)la->mods[i].r * la->mods[i].out;
        if (memcmp(la->mods[i].gA, lb->mods[i].gA, na * 4) || memcmp(la->mods[i].gB, lb->mods[i].gB, nb * 4)) same = 0;
        double s = 0;
        for (size_t e = 0; e < na; e++) s += fabsf(la->mods[i].gA[e]);
        if (s == 0) nonzero = 0;
    }
    CHECK(same, "every LoRA gradient bit-identical with and without checkpointing (dropout 0.1)");
    CHECK(nonzero, "every gA nonzero");
    pl_lora_free(la);
    pl_lora_free(lb);
}

static void test_dropout(pl_model *m) {
    pl_lora *l = dropout_lora(m);
    if (!l) return;
    enum { N = 48 * 64 };
    float *src = malloc(N * 4), *a = malloc(N * 4), *b = malloc(N * 4);
    for (int i = 0; i < N; i++) src[i] = 1.0f + (float)(i % 7);
    pl_lora_dropout(l, 2, 0, 1, PL_LIN_V, a, src, 48, 64);
    pl_lora_dropout(l, 2, 0, 1, PL_LIN_V, b, src, 48, 64);
    CHECK(!memcmp(a, b, N * 4), "same key, same mask");
    int kept = 0, scaled = 1;
    for (int i = 0; i < N; i++) {
        if (a[i] != 0) {
            kept++;
            if (a[i] != src[i] * (1.0f / 0.9f)) scaled = 0;
        }
    }
    CHECK(fabs(kept / (double)N - 0.9) < 0.02, "kept fraction %.4f ~ 0.9", kept / (double)N);
    CHECK(scaled, "kept elements scaled by 1/(1-p)");
    int keys[4][4] = {{3, 0, 1, PL_LIN_V}, {2, 1, 1, PL_LIN_V}, {2, 0, 0, PL_LIN_V}, {2, 0, 1, PL_LIN_K}};
    for (int k = 0; k < 4; k++) {
        pl_lora_dropout(l, keys[k][0], keys[k][1], keys[k][2], (pl_lin)keys[k][3], b, src, 48, 64);
        CHECK(memcmp(a, b, N * 4), "key %d (step/micro/layer/module changed) gives another mask", k);
    }
    memcpy(b, src, N * 4);
    pl_lora_dropout(l, 2, 0, 1, PL_LIN_V, b, b, 48, 64);
    CHECK(!memcmp(a, b, N * 4), "in place gives the same");
    free(src);
    free(a);
    free(b);
    pl_lora_free(l);

    /* three QLoRA steps with dropout at 1, 2, 3 threads and twice at 2 */
    float *first = NULL;
    size_t total = 0;
    int nthr[4] = {2, 1, 2, 3};
    int all_same = 1;
    double loss_last = 0;
    for (int r = 0; r < 4; r++) {
        omp_set_num_threads(nthr[r]);
        pl_lora *ld = dropout_lora(m);
        pl_train *t = ld ? frozen_ctx(m, r == 3, ld) : NULL; /* the 3-thread run also checkpoints */
        if (!t) { pl_lora_free(ld); break; }
        pl_qlora_opts o = parity_opts();
        pl_microbatch two[2] = {{g_ids, g_tg, g_pos, g_seg, 33}, {g_ids + 33, g_tg + 33, g_pos + 33, g_seg + 33, 15}};
        pl_err err = {0};
        for (int s = 0; s < 3; s++)
            CHECK(pl_qlora_step(t, two, 2, &o, &loss_last, NULL, &err) == 0, "dropout step: %s", err.msg);
        size_t n = 0;
        for (int i = 0; i < ld->n; i++) n += (size_t)ld->mods[i].r * (ld->mods[i].in + ld->mods[i].out);
        float *w = malloc(n * 4), *q = w;
        for (int i = 0; i < ld->n; i++) {
            size_t na = (size_t)ld->mods[i].r * ld->mods[i].in, nb = (size_t)ld->mods[i].r * ld->mods[i].out;
            memcpy(q, ld->mods[i].A, na * 4);
            memcpy(q + na, ld->mods[i].B, nb * 4);
            q += na + nb;
        }
        if (!first) { first = w; total = n; }
        else {
            int eq = n == total && !memcmp(first, w, n * 4);
            CHECK(eq, "run %d (%d threads%s): adapter bits equal to the first run", r, nthr[r],
                  r == 3 ? ", checkpointing" : "");
            all_same &= eq;
            free(w);
        }
        pl_train_free(t);
        pl_lora_free(ld);
    }
    omp_set_num_threads(2);
    printf("note: dropout 0.1, 3 steps x 2 micro-batches: adapters %s at 1, 2, 3 threads, run to run and with "
           "checkpointing (last loss %.6f)\n", all_same ? "bit-identical" : "DIFFER", loss_last);
    free(first);
}

/* ------------------------------------------------------------ 7 */

static void test_quantized_base(void) {
    const char *shared = check_env("POTLUCK_SHARED");
    char p[4400];
    snprintf(p, sizeof p, "%s/fixtures/gguf-tiny-llama/llama-2-tiny-random.gguf", shared);
    pl_err err = {0};
    pl_model *mq = NULL, *mf = NULL;
    pl_model_opts mo = {.fp32 = 1};
    REQUIRE_VOID(pl_model_load(&mq, p, NULL, &err) == 0, "load gguf: %s", err.msg);
    REQUIRE_VOID(pl_model_load(&mf, p, &mo, &err) == 0, "load gguf fp32: %s", err.msg);
    CHECK(mq->layers[0].wq.dtype == PL_F16 && mq->tok_embd.dtype == PL_F16, "fixture stored as F16");
    enum { T = 24 };
    int32_t ids[T], tg[T];
    for (int i = 0; i < T; i++) {
        ids[i] = (int32_t)((i * 7919 + 13) % 32000);
        tg[i] = i % 5 == 4 ? -100 : (int32_t)(((i + 1) * 7919 + 13) % 32000);
    }
    double loss[2] = {0, 0};
    pl_lora *ls[2] = {NULL, NULL};
    pl_model *ms[2] = {mq, mf};
    size_t wsz = 0;
    for (int k = 0; k < 2; k++) {
        pl_lora_cfg cfg = {.r = 4, .alpha = 8, .targets = PL_LORA_ALL_LINEAR, .seed = 11};
        if (pl_lora_init(&ls[k], ms[k], &cfg, &err)) { CHECK(0, "init: %s", err.msg); break; }
        for (int i = 0; i < ls[k]->n; i++)
            for (int e = 0; e < ls[k]->mods[i].out * 4; e++) ls[k]->mods[i].B[e] = 0.1f * pl_rng_normal(3, i, e);
        pl_train *t = NULL;
        pl_train_opts o = {.frozen_base = 1};
        size_t w0 = pl_mem_current(PL_MEM_WEIGHTS);
        if (pl_train_init_opts(&t, ms[k], T, &o, &err) || pl_train_attach_lora(t, ls[k], &err)) {
            CHECK(0, "ctx: %s", err.msg);
            pl_train_free(t);
            break;
        }
        if (k == 0) wsz = pl_mem_current(PL_MEM_WEIGHTS) - w0;
        int64_t nv = 0;
        CHECK(pl_train_forward(t, ids, tg, NULL, NULL, T, &loss[k], &nv, &err) == 0, "fwd: %s", err.msg);
        pl_train_zero_grad(t);
        CHECK(pl_train_backward(t, 1.0f / (float)nv, &err) == 0, "bwd: %s", err.msg);
        pl_train_free(t);
    }
    CHECK(wsz == 0, "frozen quantized base: no weight copies (%zu bytes)", wsz);
    if (ls[0] && ls[1]) {
        CHECK(fabs(loss[0] - loss[1]) <= 1e-5 * fabs(loss[1]), "F16 base loss %.7f vs fp32 %.7f", loss[0], loss[1]);
        double worst = 0;
        for (int i = 0; i < ls[0]->n; i++) {
            const pl_lora_module *a = &ls[0]->mods[i], *b = &ls[1]->mods[i];
            double e1 = rel_err(a->gA, b->gA, (size_t)a->r * a->in), e2 = rel_err(a->gB, b->gB, (size_t)a->r * a->out);
            if (e1 > worst) worst = e1;
            if (e2 > worst) worst = e2;
        }
        printf("note: F16 GGUF frozen base vs fp32: loss sum %.7f / %.7f, LoRA grads worst rel %.3g\n", loss[0], loss[1],
               worst);
        CHECK(worst <= 1e-5, "F16 base LoRA grads vs fp32: rel %.3g", worst);
    }
    pl_lora_free(ls[0]);
    pl_lora_free(ls[1]);
    pl_model_free(mq);
    pl_model_free(mf);
}

/* 8. NF4 frozen base (lora/nf4.h, blocksize 64, double quantization): the
 * base read through pl_qweight.aux against an fp32 model holding the same
 * NF4-dequantized values: loss and LoRA gradients agree (rel 1e-5), and two
 * QLoRA steps leave the NF4 weights untouched. */
static void test_nf4_base(void) {
    pl_err err = {0};
    char p[4400];
    snprintf(p, sizeof p, "%s/base", refdir);
    pl_model *mq = NULL, *md = NULL;
    pl_model_opts mo = {.fp32 = 1};
    REQUIRE_VOID(pl_model_load(&mq, p, NULL, &err) == 0, "load: %s", err.msg);
    if (pl_model_load(&md, p, &mo, &err)) {
        CHECK(0, "nf4 setup: %s", err.msg);
        pl_model_free(mq);
        return;
    }
    /* quantize every layer weight of mq (blocksize 64, double quantization)
     * and put the dequantized values into md's fp32 copies */
    enum { NW = 2 * 7 };
    pl_nf4 q[NW];
    memset(q, 0, sizeof q);
    int ok = mq->cfg.n_layers * 7 <= NW, nq = 0;
    for (int l = 0; ok && l < mq->cfg.n_layers; l++) {
        pl_layer *Lq = &mq->layers[l], *Ld = &md->layers[l];
        pl_qweight *wq[7] = {&Lq->wq, &Lq->wk, &Lq->wv, &Lq->wo, &Lq->w_gate, &Lq->w_up, &Lq->w_down};
        pl_qweight *wd[7] = {&Ld->wq, &Ld->wk, &Ld->wv, &Ld->wo, &Ld->w_gate, &Ld->w_up, &Ld->w_down};
        for (int j = 0; ok && j < 7; j++) {
            int64_t rows = wd[j]->rows, cols = wd[j]->cols;
            if (pl_nf4_quantize((const float *)wd[j]->data, rows * cols, 64, 1, &q[nq], &err) ||
                pl_nf4_qweight(&q[nq], rows, cols, wq[j])) { ok = 0; break; }
            nq++;
            for (int64_t r = 0; r < rows; r++)
                if (pl_qweight_row(wq[j], r, (float *)wd[j]->data + r * cols)) ok = 0;
        }
    }
    CHECK(ok, "NF4 quantization of the base and its fp32 twin: %s", err.msg);
    CHECK(mq->layers[1].w_down.dtype == PL_NF4 && mq->layers[1].w_down.aux, "base quantized to NF4");
    double loss[2] = {0, 0};
    pl_lora *ls[2] = {NULL, NULL};
    pl_model *ms[2] = {mq, md};
    for (int k = 0; ok && k < 2; k++) {
        ls[k] = dropout_lora(ms[k]);
        if (!ls[k]) break;
        ls[k]->cfg.dropout = 0;
        pl_train *t = frozen_ctx(ms[k], k == 0, ls[k]);
        if (!t) break;
        int64_t nv = 0;
        CHECK(pl_train_forward(t, g_ids, g_tg, g_pos, g_seg, g_T, &loss[k], &nv, &err) == 0, "fwd: %s", err.msg);
        pl_train_zero_grad(t);
        CHECK(pl_train_backward(t, 1.0f / (float)nv, &err) == 0, "bwd: %s", err.msg);
        pl_train_free(t);
    }
    if (ls[0] && ls[1]) {
        CHECK(fabs(loss[0] - loss[1]) <= 1e-5 * fabs(loss[1]), "NF4 base loss %.7f vs dequantized fp32 %.7f", loss[0],
              loss[1]);
        double worst = 0;
        for (int i = 0; i < ls[0]->n; i++) {
            const pl_lora_module *a = &ls[0]->mods[i], *b = &ls[1]->mods[i];
            double e1 = rel_err(a->gA, b->gA, (size_t)a->r * a->in), e2 = rel_err(a->gB, b->gB, (size_t)a->r * a->out);
            if (e1 > worst) worst = e1;
            if (e2 > worst) worst = e2;
        }
        printf("note: NF4 frozen base (checkpointed) vs its fp32 dequantization: loss sum %.7f / %.7f, LoRA grads worst "
               "rel %.3g\n", loss[0], loss[1], worst);
        CHECK(worst <= 1e-5, "NF4 base LoRA grads vs fp32: rel %.3g", worst);
    }
    pl_lora_free(ls[0]);
    pl_lora_free(ls[1]);
    pl_model_free(mq);
    pl_model_free(md);
    for (int i = 0; i < nq; i++) pl_nf4_free(&q[i]);
}

/* ------------------------------------------------------------ --write-adapter */

static int write_adapter(pl_model *m, const char *dir) {
    pl_err err = {0};
    mkdir(dir, 0755);
    pl_lora_cfg cfg = {.r = 4, .alpha = 8, .dropout = 0.0f, .rslora = 1, .targets = PL_LORA_ALL_LINEAR, .seed = 2024};
    pl_lora *l = NULL;
    REQUIRE(pl_lora_init(&l, m, &cfg, &err) == 0, "init: %s", err.msg);
    pl_train *t = frozen_ctx(m, 1, l);
    REQUIRE(t, "context");
    pl_qlora_opts o = parity_opts();
    o.adamw.lr = 1e-2f;
    pl_microbatch mb = {g_ids, g_tg, g_pos, g_seg, g_T};
    for (int s = 0; s < 3; s++) CHECK(pl_qlora_step(t, &mb, 1, &o, NULL, NULL, &err) == 0, "step: %s", err.msg);
    /* logits of the first sample (13 tokens, positions 0..12) with the trained adapter */
    int64_t nv;
    CHECK(pl_train_forward(t, g_ids, g_tg, NULL, NULL, 13, NULL, &nv, &err) == 0, "fwd: %s", err.msg);
    char p[4400];
    snprintf(p, sizeof p, "%s/adapter", dir);
    char base[4400];
    snprintf(base, sizeof base, "%s/base", refdir);
    CHECK(pl_lora_save_peft(l, m, p, base, &err) == 0, "save: %s", err.msg);
    snprintf(p, sizeof p, "%s/logits.f32", dir);
    FILE *f = fopen(p, "wb");
    CHECK(f && fwrite(t->logits, 4, 13 * 256, f) == 13 * 256, "write %s", p);
    if (f) fclose(f);
    snprintf(p, sizeof p, "%s/ids.i32", dir);
    f = fopen(p, "wb");
    CHECK(f && fwrite(g_ids, 4, 13, f) == 13, "write %s", p);
    if (f) fclose(f);
    pl_train_free(t);
    pl_lora_free(l);
    return 0;
}

int main(int argc, char **argv) {
    const char *refs = check_env("POTLUCK_REFS");
    snprintf(refdir, sizeof refdir, "%s/peft_ref", refs);
    omp_set_num_threads(2);
    pl_err err = {0};
    char p[4400];
    snprintf(p, sizeof p, "%s/index.json", refdir);
    cJSON *idx = NULL;
    REQUIRE(pl_json_load(p, 1 << 22, &idx, &err) == 0, "%s (run bash tests/refs.sh peft_ref)", err.msg);
    int64_t T = 0;
    pl_json_int(idx, "T", p, &T, &err);
    g_T = (int)T;
    REQUIRE(g_T == 48, "T %d", g_T);
    int bad = load_i32("ids.i32", &g_ids, g_T) | load_i32("targets.i32", &g_tg, g_T) |
              load_i32("pos.i32", &g_pos, g_T) | load_i32("seg.i32", &g_seg, g_T);
    REQUIRE(!bad, "batch files");
    /* the fp32 base as stored (mapped, read-only): the frozen base */
    snprintf(p, sizeof p, "%s/base", refdir);
    pl_model *m = NULL;
    REQUIRE(pl_model_load(&m, p, NULL, &err) == 0, "load base: %s", err.msg);

    if (argc == 3 && !strcmp(argv[1], "--write-adapter")) {
        write_adapter(m, argv[2]);
    } else if (getenv("POTLUCK_TEST_THREADS_ONLY")) {
        /* tests/cli_openblas_kernels.sh: only the thread-count checks, under another OpenBLAS kernel */
        test_dropout(m);
    } else {
        char tmp[] = "/tmp/test_lora.XXXXXX";
        REQUIRE(mkdtemp(tmp), "mkdtemp");
        test_targets_init(m);
        test_parity(m, idx, idx, "", "fp32 base");
        test_parity_nf4(idx);
        test_save_load(m, tmp);
        test_merge(m);
        test_checkpoint(m);
        test_dropout(m);
        test_quantized_base();
        test_nf4_base();
        char cmd[256];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        CHECK(system(cmd) == 0, "cleanup");
    }
    pl_model_free(m);
    cJSON_Delete(idx);
    free(g_ids);
    free(g_tg);
    free(g_pos);
    free(g_seg);
    return check_summary("test_lora");
}
