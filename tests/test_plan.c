/* test_plan.c: the memory plan (trainer/plan.h) equals what training
 * allocates on the CPU backend.
 *
 * 1. Eight training configurations on the small fixtures (stories260K:
 *    llama2.c, GQA 8/4, tied; peft_ref's base: HF fp32, GQA 4/2, untied;
 *    llama-2-tiny-random: GGUF F16, no GQA, untied), varying seq, rows per
 *    forward (micro-batch, packed with segment ids), LoRA rank and targets,
 *    checkpointing, NF4 / as-loaded base and full fp32 fine-tuning. Each runs
 *    two optimizer steps of two micro-batches, then checks that the peak
 *    of every tagged category (pl_mem_peak, the growth over the case) equals
 *    the plan byte for byte, and that the plan's NF4 base bytes equal the
 *    model's NF4 tensors (header + arrays). The table is printed.
 * 2. Generation: pl_kvcache_init and a prefill through pl_model_decode peak
 *    at the generation plan's KV cache, activations and workspace exactly.
 * 3. The header reader agrees with the loaders' configs on all three
 *    fixtures; presets are complete and sane; bad shapes are refused.
 *
 * RSS against the plan's total is checked in tests/opt_plan.c (optimized
 * build, SmolLM2): under ASan resident memory says little. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>
#include "check.h"
#include "lora/lora.h"
#include "lora/nf4.h"
#include "trainer/model_lora.h"
#include "trainer/plan.h"
#include "trainer/qlora.h"
#include "trainer/train.h"

typedef struct tcase {
    const char *name;
    const char *model;     /* "stories", "peft", "gguf" */
    const char *base;      /* "nf4", "as-loaded", "full" */
    int seq, mb, r;
    const char *targets;
    int ckpt;
    int chunk;             /* MLP rows per chunk (--mlp-chunk), 0: all */
} tcase;

static const tcase cases[] = {
    {"stories nf4 r8 all", "stories", "nf4", 64, 1, 8, "all-linear", 0, 0},
    {"stories nf4 r4 q,v ckpt mb3", "stories", "nf4", 32, 3, 4, "q,v", 1, 0},
    {"peft fp32 r8 all ckpt", "peft", "as-loaded", 48, 1, 8, "all-linear", 1, 0},
    {"peft nf4 r16 mlp mb2", "peft", "nf4", 17, 2, 16, "gate,up,down", 0, 0},
    {"gguf f16 r2 all ckpt", "gguf", "as-loaded", 40, 1, 2, "all-linear", 1, 0},
    {"gguf nf4 r8 k,o mb2", "gguf", "nf4", 64, 2, 8, "k,o", 0, 0},
    {"stories full fp32", "stories", "full", 32, 1, 0, NULL, 0, 0},
    {"peft full fp32 ckpt mb2", "peft", "full", 24, 2, 0, NULL, 1, 0},
    {"stories nf4 r8 all ckpt mlp-chunk 24", "stories", "nf4", 64, 1, 8, "all-linear", 1, 24},
    {"peft nf4 r4 mlp ckpt mlp-chunk 16 mb2", "peft", "nf4", 24, 2, 4, "gate,up,down", 1, 16},
};

static char p_stories[4096], p_peft[4096], p_gguf[4096];

static const char *model_path(const char *k) {
    return !strcmp(k, "stories") ? p_stories : !strcmp(k, "peft") ? p_peft : p_gguf;
}

static size_t al8(size_t x) { return (x + 7) & ~(size_t)7; }

/* Two micro-batches of mb packed rows of seq tokens each. */
static void make_rows(int V, int seq, int mb, int salt, int32_t *ids, int32_t *tg, int32_t *pos, int32_t *seg) {
    uint32_t x = 2463534242u + (uint32_t)salt * 7919u;
    for (int r = 0; r < mb; r++)
        for (int i = 0; i < seq; i++) {
            int k = r * seq + i;
            x ^= x << 13; x ^= x >> 17; x ^= x << 5;
            ids[k] = (int32_t)(x % (uint32_t)V);
            pos[k] = i;
            seg[k] = r;
        }
    for (int k = 0; k < mb * seq; k++) tg[k] = (k + 1) % seq == 0 ? -1 : ids[k + 1];
}

static void run_case(const tcase *tc) {
    pl_err err = {0};
    size_t cur0[PL_MEM_NCAT];
    for (int k = 0; k < PL_MEM_NCAT; k++) cur0[k] = pl_mem_current((pl_mem_cat)k);
    const int full = !strcmp(tc->base, "full"), nf4 = !strcmp(tc->base, "nf4");
    pl_model_opts mo = {.fp32 = full, .nf4_blocksize = nf4 ? 64 : 0, .nf4_double_quant = 1};
    pl_model *m = NULL;
    if (pl_model_load(&m, model_path(tc->model), &mo, &err)) {
        CHECK(0, "%s: load: %s", tc->name, err.msg);
        return;
    }
    pl_mem_reset_peak();
    const pl_model_config *c = &m->cfg;
    pl_model_header hd; /* the dtype the layers are stored in (the loaded ones may be NF4 now) */
    if (pl_model_read_header(model_path(tc->model), &hd, &err)) {
        CHECK(0, "%s: header: %s", tc->name, err.msg);
        pl_model_free(m);
        return;
    }
    pl_train_shape sh = {.seq_len = tc->seq, .micro_batch = tc->mb, .frozen_base = !full, .lora_r = tc->r,
                         .checkpoint = tc->ckpt, .nf4_blocksize = nf4 ? 64 : 0, .nf4_double_quant = 1,
                         .layer_dtype = hd.layer_dtype, .embd_dtype = m->tok_embd.dtype,
                         .head_dtype = m->lm_head.dtype, .stored_mapped = m->source != PL_SRC_LLAMA2C,
                         .threads = 1, .mlp_chunk = tc->chunk};
    if (tc->targets && pl_lora_parse_targets(tc->targets, &sh.lora_targets, &err)) {
        CHECK(0, "%s: targets: %s", tc->name, err.msg);
        pl_model_free(m);
        return;
    }
    pl_mem_plan plan;
    if (pl_train_plan(c, &sh, &plan, &err)) {
        CHECK(0, "%s: plan: %s", tc->name, err.msg);
        pl_model_free(m);
        return;
    }
    const int T = tc->seq * tc->mb;
    pl_train *t = NULL;
    pl_lora *l = NULL;
    pl_train_opts to = {.frozen_base = !full, .checkpoint = tc->ckpt, .mlp_chunk = tc->chunk};
    int rc = pl_train_init_opts(&t, m, T, &to, &err);
    CHECK(rc == 0, "%s: init: %s", tc->name, err.msg);
    if (!rc && !full) {
        pl_lora_cfg lc = {.r = tc->r, .alpha = 2.0f * tc->r, .dropout = 0.1f, .targets = sh.lora_targets, .seed = 7};
        rc = pl_lora_init(&l, m, &lc, &err);
        CHECK(rc == 0, "%s: lora: %s", tc->name, err.msg);
        if (!rc) rc = pl_train_attach_lora(t, l, &err);
        CHECK(rc == 0, "%s: attach: %s", tc->name, err.msg);
    }
    int32_t *buf = malloc((size_t)T * 4 * 4 * 2);
    CHECK(buf != NULL, "%s: out of memory", tc->name);
    if (!rc && buf) {
        pl_microbatch mb[2];
        for (int i = 0; i < 2; i++) {
            int32_t *b = buf + (size_t)i * 4 * T;
            make_rows(c->vocab, tc->seq, tc->mb, i, b, b + T, b + 2 * T, b + 3 * T);
            mb[i] = (pl_microbatch){.ids = b, .targets = b + T, .pos = b + 2 * T, .seg = b + 3 * T, .T = T};
        }
        for (int step = 0; step < 2 && !rc; step++) {
            double loss = 0, gn = 0;
            if (full) {
                pl_adamw_opts ao = pl_adamw_defaults();
                rc = pl_train_step(t, mb, 2, &ao, 0, &loss, &err);
            } else {
                pl_qlora_opts qo = {.adamw = pl_adamw_defaults(), .max_grad_norm = 0.3f};
                rc = pl_qlora_step(t, mb, 2, &qo, &loss, &gn, &err);
            }
            CHECK(rc == 0 && loss > 0, "%s: step %d: rc %d loss %g: %s", tc->name, step, rc, loss, err.msg);
        }
    }
    free(buf);
    /* the table: per category plan vs measured peak (growth over this case) */
    printf("%-30s", tc->name);
    for (int k = 0; k < PL_MEM_NCAT; k++) {
        size_t peak = pl_mem_peak((pl_mem_cat)k) - cur0[k];
        printf(" %s %zu/%zu", pl_mem_cat_name((pl_mem_cat)k), plan.cat[k], peak);
        CHECK(peak == plan.cat[k], "%s: %s: plan %zu bytes, measured peak %zu", tc->name,
              pl_mem_cat_name((pl_mem_cat)k), plan.cat[k], peak);
    }
    printf("\n");
    CHECK(plan.cat[PL_MEM_OPTIMIZER] > 0 && plan.cat[PL_MEM_ACTIVATIONS] > 0 && plan.cat[PL_MEM_GRADIENTS] > 0,
          "%s: the plan is not empty", tc->name);
    if (nf4) { /* the NF4 base: the model's tensors, header and arrays, against the plan */
        size_t have = 0;
        int all = 1;
        for (int li = 0; li < c->n_layers; li++) {
            const pl_layer *L = &m->layers[li];
            const pl_qweight *ws[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
            for (int j = 0; j < 7; j++) {
                if (ws[j]->dtype != PL_NF4) { all = 0; continue; }
                have += al8(sizeof(pl_nf4)) + ((const pl_nf4 *)ws[j]->data)->buf_bytes;
            }
        }
        CHECK(all, "%s: every layer weight is NF4", tc->name);
        if (m->source == PL_SRC_LLAMA2C) { /* the fp32 checkpoint stays in memory beside the NF4 copy */
            size_t src = 0;
            for (int li = 0; li < c->n_layers; li++) {
                const pl_layer *L = &m->layers[li];
                const pl_qweight *ws[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
                for (int j = 0; j < 7; j++) src += 4 * (size_t)ws[j]->rows * (size_t)ws[j]->cols;
            }
            CHECK(plan.item[PL_PB_BASE_SOURCE].bytes == src, "%s: llama2.c source layers %zu, plan %zu", tc->name,
                  src, plan.item[PL_PB_BASE_SOURCE].bytes);
        } else {
            CHECK(plan.item[PL_PB_BASE_SOURCE].bytes == 0, "%s: a mapped source is not counted twice", tc->name);
        }
        CHECK(have == plan.item[PL_PB_BASE].bytes, "%s: NF4 base: model holds %zu bytes, plan %zu", tc->name, have,
              plan.item[PL_PB_BASE].bytes);
    }
    if (full) { /* one fp32 gradient per parameter: the plan's count is the model's */
        CHECK((int64_t)plan.trained_params == pl_model_n_params(m), "%s: trained params %lld, model %lld", tc->name,
              (long long)plan.trained_params, (long long)pl_model_n_params(m));
    } else {
        CHECK(plan.lora_params == pl_lora_n_params(l), "%s: LoRA params: plan %lld, adapter %lld", tc->name,
              (long long)plan.lora_params, (long long)(l ? pl_lora_n_params(l) : -1));
    }
    pl_train_free(t);
    pl_lora_free(l);
    pl_model_free(m);
    for (int k = 0; k < PL_MEM_NCAT; k++)
        CHECK(pl_mem_current((pl_mem_cat)k) == cur0[k], "%s: %s freed", tc->name, pl_mem_cat_name((pl_mem_cat)k));
}

static void test_generation(void) {
    pl_err err = {0};
    pl_model *m = NULL;
    if (pl_model_load(&m, p_gguf, NULL, &err)) { CHECK(0, "gen: load: %s", err.msg); return; }
    const int nseq = 3, nctx = 20;
    size_t cur0[PL_MEM_NCAT];
    for (int k = 0; k < PL_MEM_NCAT; k++) cur0[k] = pl_mem_current((pl_mem_cat)k);
    pl_mem_reset_peak();
    pl_train_shape sh = {.layer_dtype = m->layers[0].wq.dtype, .embd_dtype = m->tok_embd.dtype,
                         .head_dtype = m->lm_head.dtype, .stored_mapped = 1};
    pl_gen_plan g;
    int rc = pl_gen_plan_make(&m->cfg, &sh, nseq, nctx, 0, &g, &err);
    CHECK(rc == 0, "gen plan: %s", err.msg);
    pl_kvcache kv;
    rc = pl_kvcache_init(&kv, m, nseq, nctx, &err);
    CHECK(rc == 0, "kv init: %s", err.msg);
    if (!rc) {
        int32_t toks[3][20];
        const int32_t *tp[3];
        int seqs[3], nt[3];
        for (int i = 0; i < nseq; i++) {
            for (int j = 0; j < nctx; j++) toks[i][j] = (int32_t)((i * 31 + j * 7) % m->cfg.vocab);
            tp[i] = toks[i];
            seqs[i] = i;
            nt[i] = nctx;
        }
        float *logits = malloc((size_t)nseq * m->cfg.vocab * sizeof(float));
        rc = pl_model_decode(m, &kv, nseq, seqs, tp, nt, logits, NULL, &err);
        CHECK(rc == 0, "decode: %s", err.msg);
        free(logits);
        size_t kvp = pl_mem_peak(PL_MEM_KVCACHE) - cur0[PL_MEM_KVCACHE];
        size_t ap = pl_mem_peak(PL_MEM_ACTIVATIONS) - cur0[PL_MEM_ACTIVATIONS];
        size_t wp = pl_mem_peak(PL_MEM_WORKSPACE) - cur0[PL_MEM_WORKSPACE];
        printf("generation (gguf, %d x %d): kvcache %zu/%zu activations %zu/%zu workspace %zu/%zu\n", nseq, nctx,
               g.kv, kvp, g.activations, ap, g.workspace, wp);
        CHECK(kvp == g.kv, "gen: KV cache plan %zu, peak %zu", g.kv, kvp);
        CHECK(ap == g.activations, "gen: activations plan %zu, peak %zu", g.activations, ap);
        CHECK(wp == g.workspace, "gen: workspace plan %zu, peak %zu", g.workspace, wp);
        pl_kvcache_free(&kv);
    }
    pl_model_free(m);
}

static void test_header_presets(void) {
    const char *paths[3] = {p_stories, p_peft, p_gguf};
    for (int i = 0; i < 3; i++) {
        pl_err err = {0};
        pl_model *m = NULL;
        pl_model_header h;
        if (pl_model_load(&m, paths[i], NULL, &err)) { CHECK(0, "%s: %s", paths[i], err.msg); continue; }
        int rc = pl_model_read_header(paths[i], &h, &err);
        CHECK(rc == 0, "header %s: %s", paths[i], err.msg);
        const pl_model_config *a = &h.cfg, *b = &m->cfg;
        CHECK(!rc && a->dim == b->dim && a->hidden == b->hidden && a->n_layers == b->n_layers &&
                  a->n_heads == b->n_heads && a->n_kv_heads == b->n_kv_heads && a->head_dim == b->head_dim &&
                  a->vocab == b->vocab && a->tied_embeddings == b->tied_embeddings && a->qkv_bias == b->qkv_bias,
              "header %s: shape differs from the loaded model's", paths[i]);
        CHECK(h.layer_dtype == m->layers[0].wq.dtype || (h.source == PL_SRC_HF && m->layers[0].wq.dtype == PL_F32),
              "header %s: layer dtype %s, model %s", paths[i], pl_dtype_name(h.layer_dtype),
              pl_dtype_name(m->layers[0].wq.dtype));
        CHECK(h.source == m->source, "header %s: source", paths[i]);
        pl_model_free(m);
    }
    pl_model_header h;
    pl_err err = {0};
    char p[4200];
    snprintf(p, sizeof p, "%s/config.json", p_peft);
    CHECK(pl_model_read_header(p, &h, &err) == 0 && h.cfg.dim == 64, "header from config.json: %s", err.msg);
    CHECK(pl_model_read_header("/nonexistent/model", &h, &err) != 0 && strstr(err.msg, "/nonexistent/model"),
          "missing path refused: %s", err.msg);
    const char *shared = check_env("POTLUCK_SHARED");
    snprintf(p, sizeof p, "%s/fixtures/PROVENANCE.md", shared);
    CHECK(pl_model_read_header(p, &h, &err) != 0 && strstr(err.msg, "not a model"), "a text file is refused: %s",
          err.msg);

    int n;
    const pl_plan_preset *ps = pl_plan_presets(&n);
    CHECK(n >= 16, "%d presets", n);
    const char *want[] = {"llama2-7b", "llama2-13b", "llama2-70b", "llama-7b", "llama-13b", "llama-33b", "llama-65b",
                          "codellama-34b", "llama3.1-8b", "llama3.1-70b", "mistral-7b", "qwen2.5-7b", "qwen2.5-14b",
                          "qwen2.5-32b", "yi-34b"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK(pl_plan_preset_find(want[i]) != NULL, "preset %s", want[i]);
    for (int i = 0; i < n; i++) {
        const pl_model_config *c = &ps[i].cfg;
        CHECK(c->head_dim * c->n_heads == c->dim && c->n_heads % c->n_kv_heads == 0 && c->head_dim == 128,
              "preset %s: heads", ps[i].name);
    }
    /* parameter counts of the releases (billions, rounded as published) */
    struct { const char *n; double lo, hi; } sizes[] = {
        {"llama2-7b", 6.7, 6.8}, {"llama2-13b", 13.0, 13.1}, {"llama2-70b", 68.9, 69.0}, {"llama-33b", 32.5, 32.6},
        {"llama-65b", 65.2, 65.3}, {"mistral-7b", 7.24, 7.25}, {"llama3.1-8b", 8.03, 8.04}, {"qwen2.5-7b", 7.61, 7.62},
        {"yi-34b", 34.3, 34.5}, {"codellama-34b", 33.7, 33.8}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        const pl_plan_preset *pp = pl_plan_preset_find(sizes[i].n);
        pl_train_shape s = {.seq_len = 1, .micro_batch = 1, .layer_dtype = PL_BF16, .embd_dtype = PL_BF16,
                            .head_dtype = PL_BF16};
        pl_mem_plan pl;
        CHECK(pp && pl_train_plan(&pp->cfg, &s, &pl, &err) == 0, "plan %s", sizes[i].n);
        double b = pp ? (double)pl.trained_params / 1e9 : 0;
        CHECK(b >= sizes[i].lo && b <= sizes[i].hi, "preset %s: %.3fB parameters, published %.2f..%.2fB", sizes[i].n,
              b, sizes[i].lo, sizes[i].hi);
    }
    /* bad shapes */
    const pl_model_config *c7 = &pl_plan_preset_find("llama2-7b")->cfg;
    pl_train_shape s = {.seq_len = 0, .micro_batch = 1};
    pl_mem_plan pl;
    CHECK(pl_train_plan(c7, &s, &pl, &err) == PL_EINVAL, "seq 0 refused");
    s.seq_len = 1 << 20;
    s.micro_batch = 2;
    CHECK(pl_train_plan(c7, &s, &pl, &err) == PL_EINVAL, "2M tokens per forward refused");
    s = (pl_train_shape){.seq_len = 8, .micro_batch = 1, .lora_r = 8};
    CHECK(pl_train_plan(c7, &s, &pl, &err) == PL_EINVAL, "LoRA without a frozen base refused");
    s = (pl_train_shape){.seq_len = 8, .micro_batch = 1, .frozen_base = 1, .nf4_blocksize = 48,
                         .layer_dtype = PL_BF16, .embd_dtype = PL_BF16};
    CHECK(pl_train_plan(c7, &s, &pl, &err) == PL_EINVAL, "NF4 blocksize 48 refused");
    /* checkpointing's saving grows with depth; activations grow linearly with T */
    pl_train_shape a = {.seq_len = 512, .micro_batch = 1, .frozen_base = 1, .lora_r = 16,
                        .lora_targets = PL_LORA_ALL_LINEAR, .nf4_blocksize = 64, .nf4_double_quant = 1,
                        .layer_dtype = PL_BF16, .embd_dtype = PL_BF16, .head_dtype = PL_BF16};
    pl_mem_plan p1, p2, p3;
    pl_train_plan(c7, &a, &p1, &err);
    a.micro_batch = 2;
    pl_train_plan(c7, &a, &p2, &err);
    a.micro_batch = 1;
    a.checkpoint = 1;
    pl_train_plan(c7, &a, &p3, &err);
    CHECK(p2.cat[PL_MEM_ACTIVATIONS] == 2 * p1.cat[PL_MEM_ACTIVATIONS], "activations linear in T");
    CHECK(p3.cat[PL_MEM_ACTIVATIONS] * 5 < p1.cat[PL_MEM_ACTIVATIONS], "checkpointing saves > 80%% at 32 layers");
    CHECK(p1.item[PL_PB_LORA_W].bytes == 4 * (size_t)p1.lora_params && p1.lora_params == 39976960,
          "Llama-2 7B r16 all-linear: %lld LoRA params (PEFT: 39,976,960)", (long long)p1.lora_params);
}

/* Step-time estimates of CUDA plans (trainer/plan_time.c): properties of the
 * FLOP count, the spec table's order, and a bench/gpu.sh measurement file
 * replacing peak x efficiency (a malformed one is ignored). */
static void test_step_time(void) {
    pl_err err = {0};
    const pl_model_config *c7 = &pl_plan_preset_find("llama2-7b")->cfg;
    pl_train_shape s = {.seq_len = 512, .micro_batch = 1, .frozen_base = 1, .lora_r = 64,
                        .lora_targets = PL_LORA_ALL_LINEAR, .nf4_blocksize = 64, .nf4_double_quant = 1,
                        .layer_dtype = PL_BF16, .embd_dtype = PL_BF16, .head_dtype = PL_BF16, .cuda = 1};
    pl_mem_plan p, pc, p2;
    CHECK(pl_train_plan(c7, &s, &p, &err) == 0, "cuda plan 7b: %s", err.msg);
    pl_train_shape sc = s;
    sc.checkpoint = 1;
    CHECK(pl_train_plan(c7, &sc, &pc, &err) == 0, "cuda plan 7b ckpt: %s", err.msg);
    pl_train_shape s2 = s;
    s2.seq_len = 1024;
    CHECK(pl_train_plan(c7, &s2, &p2, &err) == 0, "cuda plan 7b seq 1024: %s", err.msg);
    int n;
    const pl_gpu_spec *g = pl_gpu_specs(&n);
    CHECK(n == 6, "six GPUs in the table (%d)", n);
    pl_step_est e, ec, e2;
    /* the base's GEMMs alone: forward + dx = 4 T N_lin; checkpointing adds one forward (2 T N_lin + LoRA's 2 T r(I+O)) */
    const double nlin = 32.0 * (4096.0 * 4096 * 4 + 3 * 4096.0 * 11008);
    for (int i = 0; i < n; i++) {
        CHECK(pl_plan_step_time(c7, &p, &g[i], NULL, &e, &err) == 0, "%s: %s", g[i].name, err.msg);
        CHECK(e.seconds > 0 && !e.measured && e.tokens_per_s > 0, "%s: %g s", g[i].name, e.seconds);
        CHECK(e.fits == ((double)p.tracked <= g[i].mem_gib * 1073741824.0), "%s: fits", g[i].name);
        if (i == 0) {
            CHECK(e.flops > 4 * 512 * nlin && e.flops < 4.4 * 512 * nlin, "7b seq 512: %.4g FLOPs, the GEMMs alone %.4g",
                  e.flops, 4 * 512 * nlin);
            pl_plan_step_time(c7, &pc, &g[i], NULL, &ec, &err);
            pl_plan_step_time(c7, &p2, &g[i], NULL, &e2, &err);
            CHECK(ec.flops - e.flops > 2 * 512 * nlin && ec.seconds > e.seconds, "checkpointing adds a forward");
            CHECK(e2.flops > 2 * e.flops && e2.flops < 2.2 * e.flops, "seq 1024 vs 512: %.4g vs %.4g FLOPs (attention grows as T^2)",
                  e2.flops, e.flops);
            printf("note: llama2-7b QLoRA r 64 seq 512 on the cuda backend: %.4g TFLOP and %.4g GB per step; %s %.3f s "
                   "(%.0f tokens/s)\n", e.flops * 1e-12, e.bytes * 1e-9, g[i].name, e.seconds, e.tokens_per_s);
        }
    }
    pl_step_est e3090, eh100;
    pl_plan_step_time(c7, &p, &g[0], NULL, &e3090, &err);
    pl_plan_step_time(c7, &p, &g[5], NULL, &eh100, &err);
    CHECK(eh100.seconds < e3090.seconds / 4, "H100 %.3f s vs RTX 3090 %.3f s", eh100.seconds, e3090.seconds);
    /* a measurement file */
    char dir[] = "/tmp/test_plan_gpu.XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp");
        return;
    }
    char path[256];
    snprintf(path, sizeof path, "%s/RTX_4090.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"device\": \"NVIDIA GeForce RTX 4090\", \"gemm_tflops\": 100, \"gbs\": 900}", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/L4.json", dir);
    f = fopen(path, "w");
    fputs("{\"gemm_tflops\": \"fast\"}", f);
    fclose(f);
    pl_step_est m, base;
    CHECK(pl_plan_step_time(c7, &p, &g[1], dir, &m, &err) == 0 && m.measured && m.tflops_used == 100 && m.gbs_used == 900,
          "RTX 4090: the measured figures are used (%d %g %g)", m.measured, m.tflops_used, m.gbs_used);
    pl_plan_step_time(c7, &p, &g[1], NULL, &base, &err);
    CHECK(fabs(m.seconds - (m.flops / 100e12 + m.bytes / 900e9)) < 1e-9 * m.seconds && m.seconds != base.seconds,
          "measured step time %.4f s (estimated %.4f s)", m.seconds, base.seconds);
    CHECK(pl_plan_step_time(c7, &p, &g[3], dir, &m, &err) == 0 && !m.measured, "a malformed measurement is ignored");
    remove(path);
    snprintf(path, sizeof path, "%s/RTX_4090.json", dir);
    remove(path);
    rmdir(dir);
    pl_mem_plan cpu;
    s.cuda = 0;
    pl_train_plan(c7, &s, &cpu, &err);
    CHECK(pl_plan_step_time(c7, &cpu, &g[0], NULL, &m, &err) == PL_EINVAL, "a CPU plan has no GPU step time");
}

/* Offloaded checkpoints: the inputs of layers 0..L-3 in host memory, two on
 * the device; refused without cuda or checkpointing; nothing to offload at
 * two layers. The trainer's allocation against this plan (tagged peaks, the
 * emulator's device bytes, the same bits) is tests/test_cuda_backend.c's. */
static void test_offload(void) {
    pl_err err = {0};
    const pl_model_config *c8 = &pl_plan_preset_find("llama3.1-8b")->cfg;
    pl_train_shape s = {.seq_len = 8192, .micro_batch = 1, .frozen_base = 1, .lora_r = 32,
                        .lora_targets = PL_LORA_ALL_LINEAR, .nf4_blocksize = 64, .nf4_double_quant = 1,
                        .layer_dtype = PL_BF16, .embd_dtype = PL_BF16, .head_dtype = PL_BF16, .cuda = 1,
                        .checkpoint = 1};
    pl_mem_plan pk, po;
    CHECK(pl_train_plan(c8, &s, &pk, &err) == 0, "8b ckpt: %s", err.msg);
    pl_train_shape so = s;
    so.offload = 1;
    CHECK(pl_train_plan(c8, &so, &po, &err) == 0, "8b offload: %s", err.msg);
    const size_t x = (size_t)8192 * 4096 * 2, L = (size_t)c8->n_layers;
    CHECK(pk.item[PL_PB_X_IN].count == L && pk.item[PL_PB_X_HOST].count == 0 && pk.offloaded == 0,
          "checkpointing keeps x_in per layer on the device");
    CHECK(po.item[PL_PB_X_IN].count == 2 && po.item[PL_PB_X_IN].each == x && po.item[PL_PB_X_HOST].count == L - 2 &&
              po.item[PL_PB_X_HOST].each == x && po.offloaded == (L - 2) * x,
          "offload: x_in x%zu, x_host x%zu of %zu bytes", po.item[PL_PB_X_IN].count, po.item[PL_PB_X_HOST].count,
          po.item[PL_PB_X_HOST].each);
    CHECK(po.tracked == pk.tracked && po.device == pk.device - (L - 2) * x && po.device == po.tracked - po.offloaded,
          "offload moves (L-2) x_in off the device: device %zu -> %zu", pk.device, po.device);
    pl_train_shape bad = so;
    bad.checkpoint = 0;
    CHECK(pl_train_plan(c8, &bad, &po, &err) == PL_EINVAL && strstr(err.msg, "checkpointing"), "offload without "
          "checkpointing: %s", err.msg);
    bad = so;
    bad.cuda = 0;
    CHECK(pl_train_plan(c8, &bad, &po, &err) == PL_EINVAL && strstr(err.msg, "cuda"), "offload on the cpu: %s",
          err.msg);
    pl_model_config two = *c8;
    two.n_layers = 2;
    CHECK(pl_train_plan(&two, &so, &po, &err) == 0 && po.offloaded == 0 && po.item[PL_PB_X_IN].count == 2,
          "two layers: nothing offloaded");
}

int main(void) {
    const char *shared = check_env("POTLUCK_SHARED"), *refs = check_env("POTLUCK_REFS");
    snprintf(p_stories, sizeof p_stories, "%s/fixtures/stories260K/stories260K.bin", shared);
    snprintf(p_peft, sizeof p_peft, "%s/peft_ref/base", refs);
    snprintf(p_gguf, sizeof p_gguf, "%s/fixtures/gguf-tiny-llama/llama-2-tiny-random.gguf", shared);
    printf("plan vs measured peak (bytes, plan/peak) per category:\n");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
    test_generation();
    test_header_presets();
    test_step_time();
    test_offload();
    return check_summary("test_plan");
}
