/* test_cuda_backend.c: the CUDA backend (trainer/cuda/cuda_backend.cu) on the
 * CPU emulator against the CPU backend, the reference, on llama2.c's
 * stories260K with an NF4 (double-quantized) frozen base and LoRA on every
 * linear layer (r 8):
 *
 * 1. generation: greedy decoding from BOS (KV cache, the fused NF4 GEMV for
 *    one-token steps) gives the CPU backend's tokens (120; 16 under ASan); a forward's logits
 *    agree within bf16's error;
 * 2. one QLoRA step (two micro-batches of 64 tokens): the loss within a
 *    bf16 tolerance, the LoRA gradients within a normalized error; then 5
 *    AdamW steps: the adapters within tolerance; the same with dropout 0.1
 *    (the dropout op draws the CPU's masks: checked bit for bit on its own);
 * 3. every op a QLoRA step needs was launched on the device, and no op was
 *    left out of the table;
 * 4. memory: every byte the backend allocated is tagged, and the tags equal
 *    the emulated runtime's own count of allocated device memory;
 * 4b. the CUDA memory plan (trainer/plan.c with shape.cuda): on 6 configurations
 *    (NF4 and as-loaded bases, checkpointing on and off, LoRA targets and ranks,
 *    GQA, a tied and an untied head), the tagged peak of every category during
 *    a QLoRA step equals the plan, byte for byte;
 * 4c. the CUDA generation plan (pl_gen_plan_make with shape.cuda): a prefill
 *    of two prompts then greedy decode steps of batch 2 on a bf16 KV cache;
 *    the tagged peak of every category equals the plan byte for byte (NF4
 *    base: the prefill's GEMMs dequantize into the scratch; as loaded: bf16
 *    copies, no scratch), the KV cache is half the CPU's fp32 one, and the
 *    tags equal the emulator's allocated bytes while the cache is live;
 * 5. a full fine-tune and a backward hook are refused on this backend with a
 *    message; an op that fails (out of device memory) is an error from
 *    take_error, never NaNs.
 *
 * Tolerances (bf16 activations, 8 mantissa bits: one rounding is 2^-9 relative):
 * loss 2e-2 relative, gradients 0.1 normalized (||g - g_cpu|| / ||g_cpu||).
 * After 5 AdamW steps (lr 1e-2): the change of the adapters from their start
 * within 0.25 normalized and the step-5 loss within 10% relative. AdamW's
 * first steps move each element by about lr * sign(g), so elements whose
 * gradient is near zero move either way on the two backends; measured here:
 * gradients 0.04, the change 0.15.
 *
 * Mode `--write-adapter DIR` (tests/cli_lora_peft.sh): on the peft_ref base
 * (tiny random LlamaForCausalLM, fp32 as loaded), an rsLoRA adapter (r 4,
 * alpha 8, all seven modules) trained 3 AdamW steps on the CUDA backend and
 * saved as PEFT in DIR/adapter; the CPU backend then loads the base and that
 * adapter and writes the adapted fp32 logits of the first 13 tokens
 * (DIR/logits.f32, DIR/ids.i32), which peft must reproduce.
 *
 * Built with -DPL_CUDA_REAL (make gpu-test, tests/gpu/check.sh) it runs on a
 * real GPU: the same comparisons; the memory equality (4) and the
 * out-of-memory case (5) need the emulator's exact counts and capacity and are
 * left out there (the device's used memory is printed instead).
 *
 * The ASan/UBSan build (test_cuda_backend) decodes 16 tokens, compares one
 * QLoRA step with dropout, and plans 2 configurations with one step each; the
 * optimized build (opt_cuda_backend) runs everything: the emulator is slow
 * under the sanitizers. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "../core/half.h"
#include "../core/rng.h"
#include "../trainer/cpu/cpu_int.h"
#include "../trainer/cuda/cuda_backend.h"
#include "../trainer/cuda/cuda_ops.h"
#ifdef PL_CUDA_REAL /* tests/gpu/check.sh: on a GPU, against the real runtime */
#include <cuda_runtime_api.h>
#else
#include "../trainer/cuda/emu/emu_runtime.h"
#endif
#include "../lora/nf4.h"
#include "../trainer/model.h"
#include "../trainer/model_init.h"
#include "../trainer/model_lora.h"
#include "../trainer/model_nf4.h"
#include "../trainer/ops_math.h"
#include "../trainer/plan.h"
#include "../trainer/qlora.h"
#include "../trainer/train.h"

#define ROW 64
#define NGEN 120 /* greedy tokens on the CPU backend: the training rows reuse them */
#if defined(__SANITIZE_ADDRESS__)
#define STEPS 1
#define NCMP 16 /* of them compared with the CUDA backend's */
#define PLAN_STEPS 1
#else
#define STEPS 5
#define NCMP NGEN
#define PLAN_STEPS 2
#endif

static char model_path[4096];

/* seconds on the monotonic clock: each part's time is printed as a note */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Device bytes in use: the emulator's exact count, or the driver's (used
 * memory, which also holds the context and allocator slack) on a GPU. */
static size_t dev_used(void) {
#ifdef PL_CUDA_REAL
    size_t fr = 0, tot = 0;
    cudaMemGetInfo(&fr, &tot);
    return tot - fr;
#else
    return pl_emu_mem_used();
#endif
}
static const pl_backend *cuda;

static pl_model *load(const pl_backend *be) {
    pl_err err = {0};
    pl_model *m = NULL;
    pl_model_opts mo = {.nf4_blocksize = 64, .nf4_double_quant = 1};
    if (pl_model_load(&m, model_path, &mo, &err)) {
        CHECK(0, "load %s: %s", model_path, err.msg);
        return NULL;
    }
    m->be = be;
    return m;
}

/* Greedy tokens from BOS, n of them. */
static int greedy(pl_model *m, int32_t *out, int n) {
    pl_err err = {0};
    pl_kvcache kv;
    if (pl_kvcache_init(&kv, m, 1, n + 1, &err)) {
        CHECK(0, "kv cache: %s", err.msg);
        return -1;
    }
    float *logits = malloc((size_t)m->cfg.vocab * sizeof(float));
    int32_t tok = 1; /* BOS */
    int seq = 0, one = 1, rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        const int32_t *tp = &tok;
        rc = pl_model_decode(m, &kv, 1, &seq, &tp, &one, logits, NULL, &err);
        if (rc) {
            CHECK(0, "%s decode step %d: %s", m->be->name, i, err.msg);
            break;
        }
        int best = 0;
        for (int v = 1; v < m->cfg.vocab; v++)
            if (logits[v] > logits[best]) best = v;
        out[i] = tok = best;
    }
    free(logits);
    pl_kvcache_free(&kv);
    return rc;
}

static double norm_diff(const float *a, const float *b, size_t n, double *ref_norm) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    if (ref_norm) *ref_norm = sqrt(r);
    return r > 0 ? sqrt(d / r) : sqrt(d);
}

/* LoRA with every B drawn from a seeded normal (B = 0 at init would make
 * A's gradient zero), the same on both backends. */
static pl_lora *adapters(pl_model *m, float dropout) {
    pl_err err = {0};
    pl_lora_cfg cfg = {.r = 8, .alpha = 16, .dropout = dropout, .targets = PL_LORA_ALL_LINEAR, .seed = 7};
    pl_lora *l = NULL;
    if (pl_lora_init(&l, m, &cfg, &err)) {
        CHECK(0, "lora init: %s", err.msg);
        return NULL;
    }
    for (int i = 0; i < l->n; i++) {
        pl_lora_module *md = &l->mods[i];
        for (int j = 0; j < md->out * md->r; j++)
            md->B[j] = (float)(0.02 * pl_rng_normal(99, (uint64_t)i, (uint64_t)j));
    }
    return l;
}

/* The LoRA state of l, flattened: A then B of every module (which: 0 weights, 1 gradients). */
static float *flat(const pl_lora *l, int which, size_t *n) {
    size_t tot = 0;
    for (int i = 0; i < l->n; i++) tot += (size_t)l->mods[i].r * l->mods[i].in + (size_t)l->mods[i].out * l->mods[i].r;
    float *f = malloc(tot * sizeof(float)), *p = f;
    for (int i = 0; i < l->n; i++) {
        const pl_lora_module *md = &l->mods[i];
        size_t na = (size_t)md->r * md->in, nb = (size_t)md->out * md->r;
        memcpy(p, which ? md->gA : md->A, na * sizeof(float));
        memcpy(p + na, which ? md->gB : md->B, nb * sizeof(float));
        p += na + nb;
    }
    *n = tot;
    return f;
}

typedef struct run_out {
    double loss1, gnorm1, loss5;
    float *g1, *w0, *w5;
    size_t n;
} run_out;

/* One QLoRA step's gradients (before clipping), then 5 steps. */
static int qlora_run(pl_model *m, const int32_t *tok, float dropout, int steps, run_out *o) {
    pl_err err = {0};
    memset(o, 0, sizeof *o);
    pl_lora *l = adapters(m, dropout);
    if (!l) return -1;
    pl_train *t = NULL;
    pl_train_opts to = {.frozen_base = 1};
    if (pl_train_init_opts(&t, m, ROW, &to, &err) || pl_train_attach_lora(t, l, &err)) {
        CHECK(0, "%s: train init: %s", m->be->name, err.msg);
        pl_train_free(t);
        pl_lora_free(l);
        return -1;
    }
    o->w0 = flat(l, 0, &o->n);
    pl_microbatch mb[2] = {{tok, tok + 1, NULL, NULL, ROW}, {tok + ROW, tok + ROW + 1, NULL, NULL, ROW}};
    pl_qlora_opts qo = {.adamw = pl_adamw_defaults(), .max_grad_norm = 0.3f};
    qo.adamw.lr = 1e-2f;
    int rc = pl_train_accumulate(t, mb, 2, "test", &o->loss1, &err);
    CHECK(rc == 0, "%s: accumulate: %s", m->be->name, err.msg);
    if (!rc) {
        o->gnorm1 = pl_train_grad_norm(t);
        CHECK(t->be->take_error(&err) == 0, "%s: grads: %s", m->be->name, err.msg);
        o->g1 = flat(l, 1, &o->n);
    }
    /* the step counter stays at 0 for the first real step: same dropout masks */
    for (int s = 0; s < steps && !rc; s++) {
        rc = pl_qlora_step(t, mb, 2, &qo, &o->loss5, NULL, &err);
        CHECK(rc == 0, "%s: step %d: %s", m->be->name, s + 1, err.msg);
    }
    if (!rc) o->w5 = flat(l, 0, &o->n);
    pl_train_free(t);
    pl_lora_free(l);
    return rc;
}

static void free_run(run_out *o) {
    free(o->g1);
    free(o->w0);
    free(o->w5);
}

static void compare_runs(const char *what, const run_out *c, const run_out *g, int steps) {
    if (!c->g1 || !g->g1 || !c->w5 || !g->w5) {
        CHECK(0, "%s: a run did not finish", what);
        return;
    }
    double el = fabs(g->loss1 - c->loss1) / fabs(c->loss1);
    printf("note: %s: loss cpu %.6f cuda %.6f (rel %.2e); grad norm cpu %.6f cuda %.6f\n", what, c->loss1, g->loss1,
           el, c->gnorm1, g->gnorm1);
    CHECK(el <= 2e-2, "%s: step-1 loss rel err %.3g > 2e-2", what, el);
    CHECK(fabs(g->gnorm1 - c->gnorm1) / c->gnorm1 <= 0.1, "%s: grad norm %.6f vs cpu %.6f", what, g->gnorm1,
          c->gnorm1);
    double rn = 0, eg = norm_diff(g->g1, c->g1, c->n, &rn);
    printf("note: %s: LoRA gradients normalized error %.3g (cpu norm %.4g, %zu values)\n", what, eg, rn, c->n);
    CHECK(rn > 0 && eg <= 0.1, "%s: LoRA gradients normalized error %.3g > 0.1", what, eg);
    if (steps < 5) return; /* after one step the change is lr x sign(g): a comparison of signs, noise-dominated */
    /* the change made by the steps, compared */
    float *dc = malloc(c->n * sizeof(float)), *dg = malloc(c->n * sizeof(float));
    for (size_t i = 0; i < c->n; i++) {
        dc[i] = c->w5[i] - c->w0[i];
        dg[i] = g->w5[i] - g->w0[i];
    }
    double ew = norm_diff(dg, dc, c->n, &rn);
    printf("note: %s: adapters after %d AdamW steps: change normalized error %.3g (cpu change norm %.4g); "
           "loss at the last step cpu %.6f cuda %.6f\n", what, steps, ew, rn, c->loss5, g->loss5);
    CHECK(rn > 0 && ew <= 0.25, "%s: adapters after %d steps: normalized error %.3g > 0.25", what, steps, ew);
    /* within 10% of the cpu's, or, once the two rows are nearly learned (a loss near 0, where 10% is noise
     * of either run's rounding: the cpu's own result moves with its thread count), within 2% of step 1's */
    const double tol5 = fmax(0.1 * c->loss5, 0.02 * c->loss1);
    CHECK(fabs(g->loss5 - c->loss5) <= tol5, "%s: loss at step %d: cuda %.6f vs cpu %.6f (bound %.4f)", what, steps,
          g->loss5, c->loss5, tol5);
    CHECK(memcmp(c->w0, g->w0, c->n * sizeof(float)) == 0, "%s: both runs start from the same adapters", what);
    free(dc);
    free(dg);
}

/* 1 */
static void test_generation(int32_t *cpu_tok) {
    pl_model *mc = load(pl_backend_cpu()), *mg = load(cuda);
    if (!mc || !mg) goto out;
    int32_t gpu_tok[NCMP];
    if (greedy(mc, cpu_tok, NGEN) || greedy(mg, gpu_tok, NCMP)) goto out;
    int same = 0;
    while (same < NCMP && cpu_tok[same] == gpu_tok[same]) same++;
    printf("note: greedy decoding: %d of %d tokens equal to the cpu backend's\n", same, NCMP);
    CHECK(same == NCMP, "greedy tokens differ from the cpu backend's at step %d (%d vs %d)", same,
          same < NCMP ? gpu_tok[same] : -1, same < NCMP ? cpu_tok[same] : -1);
    /* a forward of 64 tokens: logits */
    pl_err err = {0};
    size_t nl = (size_t)ROW * mc->cfg.vocab;
    float *lc = malloc(nl * sizeof(float)), *lg = malloc(nl * sizeof(float));
    int32_t ids[ROW];
    ids[0] = 1;
    memcpy(ids + 1, cpu_tok, (ROW - 1) * sizeof(int32_t));
    CHECK(pl_model_forward(mc, ids, NULL, NULL, ROW, lc, &err) == 0, "cpu forward: %s", err.msg);
    CHECK(pl_model_forward(mg, ids, NULL, NULL, ROW, lg, &err) == 0, "cuda forward: %s", err.msg);
    double e = norm_diff(lg, lc, nl, NULL);
    printf("note: forward of %d tokens: logits normalized error %.3g\n", ROW, e);
    CHECK(e <= 2e-2, "forward logits normalized error %.3g > 2e-2", e);
    free(lc);
    free(lg);
out:
    pl_model_free(mc);
    pl_model_free(mg);
}

/* 2, 3, 4 */
static void test_training(const int32_t *tok) {
    pl_model *mc = load(pl_backend_cpu()), *mg = load(cuda);
    if (!mc || !mg) {
        pl_model_free(mc);
        pl_model_free(mg);
        return;
    }
    unsigned long before[PL_CUDA_OP_N];
    for (int i = 0; i < PL_CUDA_OP_N; i++) before[i] = pl_cuda_backend_launches(i);
    size_t tags0 = 0;
    for (int c = 0; c < PL_MEM_NCAT; c++) tags0 += pl_mem_current((pl_mem_cat)c);
    size_t emu0 = dev_used();

    run_out c, g;
#if defined(__SANITIZE_ADDRESS__)
    const float drop0 = 0.1f; /* one run, with dropout, so every op is launched */
#else
    const float drop0 = 0.0f;
#endif
    qlora_run(mc, tok, drop0, STEPS, &c);
    /* memory, during the run: build a context and compare the two counts */
    {
        pl_err err = {0};
        pl_lora *l = adapters(mg, 0.0f);
        pl_train *t = NULL;
        pl_train_opts to = {.frozen_base = 1};
        size_t cpu_now = 0;
        for (int k = 0; k < PL_MEM_NCAT; k++) cpu_now += pl_mem_current((pl_mem_cat)k);
        size_t emu_a = dev_used();
        CHECK(l && pl_train_init_opts(&t, mg, ROW, &to, &err) == 0 && pl_train_attach_lora(t, l, &err) == 0,
              "cuda context: %s", err.msg);
        pl_microbatch mb = {tok, tok + 1, NULL, NULL, ROW};
        double loss = 0;
        CHECK(t && pl_train_accumulate(t, &mb, 1, "mem", &loss, &err) == 0, "cuda step for memory: %s", err.msg);
        size_t tags = 0;
        for (int k = 0; k < PL_MEM_NCAT; k++) tags += pl_mem_current((pl_mem_cat)k);
        size_t emu_b = dev_used();
        printf("note: memory: the run's tagged device bytes %zu, the emulator's allocated bytes %zu "
               "(activations %zu, workspace %zu, weights %zu, gradients %zu)\n", tags - cpu_now, emu_b - emu_a,
               pl_mem_current(PL_MEM_ACTIVATIONS), pl_mem_current(PL_MEM_WORKSPACE), pl_mem_current(PL_MEM_WEIGHTS),
               pl_mem_current(PL_MEM_GRADIENTS));
#ifndef PL_CUDA_REAL
        CHECK(tags - cpu_now == emu_b - emu_a && emu_b > emu_a,
              "tagged bytes (%zu) equal the emulator's allocated bytes (%zu)", tags - cpu_now, emu_b - emu_a);
#endif
        pl_train_free(t);
        pl_lora_free(l);
    }
    qlora_run(mg, tok, drop0, STEPS, &g);
    compare_runs(drop0 > 0 ? "QLoRA, dropout 0.1" : "QLoRA, no dropout", &c, &g, STEPS);
    free_run(&c);
    free_run(&g);
#if !defined(__SANITIZE_ADDRESS__) /* ASan: the dropout op is launched by the plan cases' steps */
    qlora_run(mc, tok, 0.1f, STEPS, &c);
    qlora_run(mg, tok, 0.1f, STEPS, &g);
    compare_runs("QLoRA, dropout 0.1", &c, &g, STEPS);
    free_run(&c);
    free_run(&g);
#endif

    static const int needed[] = {PL_CUDA_OP_EMBEDDING_Q, PL_CUDA_OP_RMSNORM, PL_CUDA_OP_ROPE, PL_CUDA_OP_ATTENTION,
                                 PL_CUDA_OP_SWIGLU, PL_CUDA_OP_LINEAR_Q, PL_CUDA_OP_LORA_FWD, PL_CUDA_OP_ADD,
                                 PL_CUDA_OP_DROPOUT, PL_CUDA_OP_LM_HEAD_CE, PL_CUDA_OP_LM_HEAD_CE_BWD,
                                 PL_CUDA_OP_RMSNORM_BWD, PL_CUDA_OP_ROPE_BWD, PL_CUDA_OP_ATTENTION_BWD,
                                 PL_CUDA_OP_SWIGLU_BWD, PL_CUDA_OP_LINEAR_Q_BWD_X, PL_CUDA_OP_LORA_BWD,
                                 PL_CUDA_OP_SUMSQ, PL_CUDA_OP_SCALE, PL_CUDA_OP_ADAMW};
    for (size_t i = 0; i < sizeof needed / sizeof needed[0]; i++) {
        unsigned long n = pl_cuda_backend_launches(needed[i]) - before[needed[i]];
        CHECK(n > 0, "op %s was not launched on the device during training", pl_cuda_backend_op_name(needed[i]));
    }
    printf("note: launches during the training runs:");
    for (int i = 0; i < PL_CUDA_OP_N; i++)
        printf(" %s %lu", pl_cuda_backend_op_name(i), pl_cuda_backend_launches(i) - before[i]);
    printf("\n");
    pl_model_free(mc);
    pl_model_free(mg);
    size_t tags1 = 0;
    for (int k = 0; k < PL_MEM_NCAT; k++) tags1 += pl_mem_current((pl_mem_cat)k);
    /* what stays: the backend's scratch and cuBLASLt workspace, counted on both sides */
#ifndef PL_CUDA_REAL
    CHECK((ptrdiff_t)(tags1 - tags0) == (ptrdiff_t)(dev_used() - emu0),
          "after freeing: tags moved %td, the emulator %td", (ptrdiff_t)(tags1 - tags0),
          (ptrdiff_t)(dev_used() - emu0));
#else
    (void)tags1;
    (void)tags0;
    (void)emu0;
#endif
}

/* 4b: the plan of a CUDA run against the tagged peaks of one QLoRA step */
typedef struct plan_case {
    const char *what;
    int peft_base; /* the peft_ref base (HF, untied, GQA 4/2) instead of stories260K */
    int nf4, ckpt, r, T;
    unsigned targets;
    int paged; /* --paged-optim with every LoRA tensor paged (paged_min 1) */
    int offload; /* --offload-checkpoints */
    int chunk;   /* --mlp-chunk */
} plan_case;

/* A plan case's model on the cuda backend (the peft_ref base or stories260K,
 * NF4 or as loaded) and its header's dtypes; NULL (counted as a failure) when
 * it does not load. */
static pl_model *load_case(const char *what, int peft_base, int nf4, pl_model_header *h) {
    char path[4400];
    if (peft_base) snprintf(path, sizeof path, "%s/peft_ref/base", check_env("POTLUCK_REFS"));
    else snprintf(path, sizeof path, "%s", model_path);
    pl_err err = {0};
    pl_model *m = NULL;
    pl_model_opts mo = {.nf4_blocksize = nf4 ? 64 : 0, .nf4_double_quant = 1};
    if (pl_model_load(&m, path, &mo, &err)) {
        CHECK(0, "%s: load: %s", what, err.msg);
        return NULL;
    }
    m->be = cuda;
    CHECK(pl_model_read_header(path, h, &err) == 0, "%s: header: %s", what, err.msg);
    return m;
}

static void test_plan_case(const plan_case *pc) {
    pl_model_header h;
    pl_model *m = load_case(pc->what, pc->peft_base, pc->nf4, &h);
    if (!m) return;
    pl_err err = {0};
    pl_train_shape sh = {.seq_len = pc->T, .micro_batch = 1, .frozen_base = 1, .lora_r = pc->r,
                         .lora_targets = pc->targets, .checkpoint = pc->ckpt, .nf4_blocksize = pc->nf4 ? 64 : 0,
                         .nf4_double_quant = 1, .layer_dtype = h.layer_dtype, .embd_dtype = h.embd_dtype,
                         .head_dtype = h.head_dtype, .cuda = 1, .paged_optim = pc->paged, .paged_min = 1,
                         .offload = pc->offload, .mlp_chunk = pc->chunk};
    pl_mem_plan plan;
    CHECK(pl_train_plan(&m->cfg, &sh, &plan, &err) == 0, "%s: plan: %s", pc->what, err.msg);
    size_t cur0[PL_MEM_NCAT];
    for (int k = 0; k < PL_MEM_NCAT; k++) cur0[k] = pl_mem_current((pl_mem_cat)k);
    pl_mem_reset_peak();
    pl_lora_cfg cfg = {.r = pc->r, .alpha = 16, .dropout = 0.05f, .targets = pc->targets, .seed = 3};
    pl_lora *l = NULL;
    pl_train *t = NULL;
    pl_train_opts to = {.frozen_base = 1, .checkpoint = pc->ckpt, .paged_optim = pc->paged, .paged_min = 1,
                        .offload = pc->offload, .mlp_chunk = pc->chunk};
    unsigned long off0 = pl_cuda_backend_launches(PL_CUDA_OP_OFFLOAD), fetch0 = pl_cuda_backend_launches(PL_CUDA_OP_FETCH);
    size_t emu_before = dev_used();
    int32_t *ids = malloc((size_t)(pc->T + 1) * sizeof *ids);
    for (int i = 0; i <= pc->T; i++) ids[i] = (int32_t)((i * 7 + 3) % m->cfg.vocab);
    int rc = pl_lora_init(&l, m, &cfg, &err);
    if (!rc) rc = pl_train_init_opts(&t, m, pc->T, &to, &err);
    if (!rc) rc = pl_train_attach_lora(t, l, &err);
    pl_microbatch mb = {ids, ids + 1, NULL, NULL, pc->T};
    pl_qlora_opts qo = {.adamw = pl_adamw_defaults(), .max_grad_norm = 0.3f};
    for (int st = 0; st < PLAN_STEPS && !rc; st++) rc = pl_qlora_step(t, &mb, 1, &qo, NULL, NULL, &err);
    CHECK(rc == 0, "%s: steps: %s", pc->what, err.msg);
    static int pin_checked;
    int steps_run = PLAN_STEPS; /* the pin check below adds one */
    if (!rc && !pin_checked) { /* a step of shapes seen already asks cuBLASLt's heuristic nothing: pinned */
        pin_checked = 1;
        unsigned long h0 = pl_cuda_backend_heuristic_calls();
        int rc3 = pl_qlora_step(t, &mb, 1, &qo, NULL, NULL, &err);
        CHECK(rc3 == 0 && h0 > 0 && pl_cuda_backend_heuristic_calls() == h0,
              "%s: another step reuses the GEMM algorithms (%lu heuristic calls before, %lu after)", pc->what, h0,
              pl_cuda_backend_heuristic_calls());
        rc = rc3;
        steps_run++;
    }
    if (pc->offload) { /* layers 0..L-3 went out in each forward and came back in each backward */
        unsigned long no = pl_cuda_backend_launches(PL_CUDA_OP_OFFLOAD) - off0;
        unsigned long nf = pl_cuda_backend_launches(PL_CUDA_OP_FETCH) - fetch0;
        unsigned long want = (unsigned long)steps_run * (unsigned long)(m->cfg.n_layers - 2);
        CHECK(no == want && nf == want, "%s: %lu offloads and %lu fetches, want %lu each", pc->what, no, nf, want);
        CHECK(plan.offloaded > 0 && plan.offloaded == plan.item[PL_PB_X_HOST].bytes &&
                  plan.device == plan.tracked - plan.offloaded,
              "%s: the offloaded inputs (%zu bytes) are host memory, outside the device total %zu", pc->what,
              plan.offloaded, plan.device);
#ifndef PL_CUDA_REAL
        /* the pinned host buffers are not device memory: the emulator's device
         * bytes grew by the tagged bytes less them (the gemm workspace and
         * weight copies were there before) */
        size_t tags = 0;
        for (int k = 0; k < PL_MEM_NCAT; k++) tags += pl_mem_current((pl_mem_cat)k) - cur0[k];
        CHECK(dev_used() - emu_before == tags - plan.offloaded, "%s: device bytes grew %zu, tagged %zu less offloaded %zu",
              pc->what, dev_used() - emu_before, tags, plan.offloaded);
#endif
    }
    (void)emu_before;
    size_t gemm = pl_cuda_gemm_workspace(), worst = 0;
    for (int k = 0; k < PL_MEM_NCAT; k++) {
        size_t got = pl_mem_peak((pl_mem_cat)k) - cur0[k];
        size_t want = plan.cat[k] - (k == PL_MEM_WORKSPACE ? gemm : 0); /* opened with the backend, before */
        size_t d = got > want ? got - want : want - got;
        if (d > worst) worst = d;
        CHECK(got == want, "%s: %s: tagged peak %zu, plan %zu", pc->what, pl_mem_cat_name((pl_mem_cat)k), got, want);
    }
    printf("note: cuda plan, %s: device %zu bytes at the peak, paged %zu (tagged: weights %zu, activations %zu, "
           "gradients %zu, optimizer %zu, workspace %zu): largest difference from the tagged peaks %zu bytes\n",
           pc->what, plan.device, plan.paged,
           plan.cat[PL_MEM_WEIGHTS], plan.cat[PL_MEM_ACTIVATIONS], plan.cat[PL_MEM_GRADIENTS],
           plan.cat[PL_MEM_OPTIMIZER], plan.cat[PL_MEM_WORKSPACE], worst);
    if (pc->paged)
        CHECK(plan.paged > 0 && plan.paged == plan.cat[PL_MEM_OPTIMIZER] && plan.device < plan.tracked,
              "%s: every moment paged (%zu of %zu bytes), device %zu", pc->what, plan.paged, plan.cat[PL_MEM_OPTIMIZER],
              plan.device);
    if (pc->paged || pc->offload) {
        /* the same steps without paging / offloading: the same bits */
        size_t n;
        float *wp = flat(l, 0, &n);
        pl_lora *l2 = NULL;
        pl_train *t2 = NULL;
        pl_train_opts to2 = to;
        to2.paged_optim = 0;
        to2.offload = 0;
        int rc2 = pl_lora_init(&l2, m, &cfg, &err);
        if (!rc2) rc2 = pl_train_init_opts(&t2, m, pc->T, &to2, &err);
        if (!rc2) rc2 = pl_train_attach_lora(t2, l2, &err);
        for (int st = 0; st < steps_run && !rc2; st++) rc2 = pl_qlora_step(t2, &mb, 1, &qo, NULL, NULL, &err);
        float *wu = rc2 ? NULL : flat(l2, 0, &n);
        CHECK(wu && !memcmp(wp, wu, n * sizeof(float)), "%s: %d steps give the bits of the same steps %s",
              pc->what, steps_run, pc->paged ? "without paging" : "with the inputs kept on the device");
        free(wp);
        free(wu);
        pl_train_free(t2);
        pl_lora_free(l2);
    }
    pl_train_free(t);
    pl_lora_free(l);
    pl_model_free(m);
    free(ids);
}

static void test_plan(void) {
    const unsigned all = PL_LORA_ALL_LINEAR, qv = (1u << PL_LIN_Q) | (1u << PL_LIN_V);
    const plan_case cases[] = {
        {"stories260K NF4, r 8 all-linear, seq 64", 0, 1, 0, 8, 64, all, 0, 0, 0},
        {"stories260K NF4, checkpointing, paged AdamW state, r 8, seq 64", 0, 1, 1, 8, 64, all, 1, 0, 0},
        {"stories260K NF4, checkpointing with offloaded layer inputs, MLP chunks of 24, r 8, seq 64", 0, 1, 1, 8, 64,
         all, 0, 1, 24},
        {"stories260K NF4, r 4 on q and v, seq 32", 0, 1, 0, 4, 32, qv, 0, 0, 0},
        {"peft_ref base as loaded (fp32 -> bf16 copies, untied head, GQA 4/2), r 16, seq 48", 1, 0, 0, 16, 48, all, 0, 0, 0},
        {"peft_ref base NF4, checkpointing, r 2 on down, seq 40", 1, 1, 1, 2, 40, 1u << PL_LIN_DOWN, 0, 0, 0},
    };
#if defined(__SANITIZE_ADDRESS__)
    /* the offloaded, chunked case (the most code) at seq 32, still two MLP
     * chunks; the optimized build runs all six at their lengths */
    const plan_case asan_case = {"stories260K NF4, checkpointing with offloaded layer inputs, MLP chunks of 24, r 8, "
                                 "seq 32", 0, 1, 1, 8, 32, all, 0, 1, 24};
    test_plan_case(&asan_case);
    (void)cases;
#else
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) test_plan_case(&cases[i]);
#endif
}

/* 4c: the plan of a CUDA generation against the tagged peaks of one */
typedef struct gen_case {
    const char *what;
    int peft_base; /* the peft_ref base (HF fp32, untied, GQA 4/2) instead of stories260K */
    int nf4;
    int prompt[2]; /* the two prompts' lengths: one prefill of both */
    int steps;     /* greedy decode steps of batch 2 after it */
} gen_case;

static void test_gen_plan_case(const gen_case *gc) {
    pl_model_header h;
    pl_model *m = load_case(gc->what, gc->peft_base, gc->nf4, &h);
    if (!m) return;
    pl_err err = {0};
    const int nseq = 2, V = m->cfg.vocab;
    const int prefill = gc->prompt[0] + gc->prompt[1];
    const int nctx = (gc->prompt[0] > gc->prompt[1] ? gc->prompt[0] : gc->prompt[1]) + gc->steps;
    pl_train_shape sh = {.frozen_base = 1, .nf4_blocksize = gc->nf4 ? 64 : 0, .nf4_double_quant = 1,
                         .layer_dtype = h.layer_dtype, .embd_dtype = h.embd_dtype, .head_dtype = h.head_dtype,
                         .stored_mapped = h.source != PL_SRC_LLAMA2C, .cuda = 1};
    pl_gen_plan g;
    if (pl_gen_plan_make(&m->cfg, &sh, nseq, nctx, prefill, &g, &err)) {
        CHECK(0, "%s: plan: %s", gc->what, err.msg);
        pl_model_free(m);
        return;
    }
    CHECK(g.kv > 0 && 2 * g.kv == pl_kvcache_bytes(&m->cfg, nseq, nctx, 4),
          "%s: the bf16 KV cache (%zu bytes) is half the fp32 one (%zu)", gc->what, g.kv,
          pl_kvcache_bytes(&m->cfg, nseq, nctx, 4));
    CHECK((g.dev_scratch > 0) == (gc->nf4 && prefill > PL_CUDA_GEMV_MAX_T), "%s: scratch %zu bytes", gc->what,
          g.dev_scratch);
    size_t cur0[PL_MEM_NCAT], tags0 = 0;
    for (int k = 0; k < PL_MEM_NCAT; k++) tags0 += cur0[k] = pl_mem_current((pl_mem_cat)k);
    size_t emu0 = dev_used();
    pl_mem_reset_peak();
    pl_kvcache kv;
    int rc = pl_kvcache_init(&kv, m, nseq, nctx, &err);
    CHECK(rc == 0, "%s: kv cache: %s", gc->what, err.msg);
    if (rc) {
        pl_model_free(m);
        return;
    }
    int32_t *toks[2], next[2];
    const int32_t *tp[2];
    int seqs[2] = {0, 1}, nt[2], steps = 0;
    float *logits = malloc((size_t)nseq * V * sizeof(float));
    for (int i = 0; i < nseq; i++) {
        toks[i] = malloc((size_t)gc->prompt[i] * sizeof(int32_t));
        for (int j = 0; j < gc->prompt[i]; j++) toks[i][j] = (int32_t)((1 + i * 31 + j * 7) % V);
        tp[i] = toks[i];
        nt[i] = gc->prompt[i];
    }
    rc = pl_model_decode(m, &kv, nseq, seqs, tp, nt, logits, NULL, &err); /* the prefill: both prompts at once */
    CHECK(rc == 0, "%s: prefill: %s", gc->what, err.msg);
    for (; steps < gc->steps && !rc; steps++) { /* greedy steps, one token per sequence */
        for (int i = 0; i < nseq; i++) {
            const float *l = logits + (size_t)i * V;
            int best = 0;
            for (int v = 1; v < V; v++)
                if (l[v] > l[best]) best = v;
            next[i] = best;
            tp[i] = &next[i];
            nt[i] = 1;
        }
        rc = pl_model_decode(m, &kv, nseq, seqs, tp, nt, logits, NULL, &err);
        CHECK(rc == 0, "%s: decode step %d: %s", gc->what, steps + 1, err.msg);
    }
    CHECK(kv.len[0] == gc->prompt[0] + steps && kv.len[1] == gc->prompt[1] + steps, "%s: cached %d and %d tokens",
          gc->what, kv.len[0], kv.len[1]);
    /* while the cache is live: every tagged byte is an emulated device byte */
    size_t tags = 0;
    for (int k = 0; k < PL_MEM_NCAT; k++) tags += pl_mem_current((pl_mem_cat)k);
#ifndef PL_CUDA_REAL
    CHECK(tags - tags0 == dev_used() - emu0 && tags > tags0, "%s: tagged bytes %zu, the emulator's allocated bytes %zu",
          gc->what, tags - tags0, dev_used() - emu0);
#endif
    size_t gemm = pl_cuda_gemm_workspace(), worst = 0, got[PL_MEM_NCAT];
    for (int k = 0; k < PL_MEM_NCAT; k++) {
        got[k] = pl_mem_peak((pl_mem_cat)k) - cur0[k];
        size_t want = g.cat[k] - (k == PL_MEM_WORKSPACE ? gemm : 0); /* opened with the backend, before */
        size_t d = got[k] > want ? got[k] - want : want - got[k];
        if (d > worst) worst = d;
        CHECK(got[k] == want, "%s: %s: tagged peak %zu, generation plan %zu", gc->what,
              pl_mem_cat_name((pl_mem_cat)k), got[k], want);
    }
    printf("note: cuda generation plan, %s: prefill %d + %d tokens, %d steps of batch 2, ctx %d: device %zu bytes "
           "(plan/tagged peak: weights %zu/%zu, kv cache %zu/%zu, activations %zu/%zu, workspace %zu/%zu with "
           "cuBLASLt's %zu and scratch %zu); largest difference %zu bytes\n",
           gc->what, gc->prompt[0], gc->prompt[1], steps, nctx, g.device, g.cat[PL_MEM_WEIGHTS], got[PL_MEM_WEIGHTS],
           g.kv, got[PL_MEM_KVCACHE], g.activations, got[PL_MEM_ACTIVATIONS], g.workspace,
           got[PL_MEM_WORKSPACE] + gemm, g.dev_gemm_ws, g.dev_scratch, worst);
    free(logits);
    for (int i = 0; i < nseq; i++) free(toks[i]);
    pl_kvcache_free(&kv);
    pl_model_free(m);
}

static void test_gen_plan(void) {
    const gen_case cases[] = {
        {"stories260K NF4", 0, 1, {9, 7}, 3},
        {"peft_ref base as loaded (fp32 -> bf16 copies, untied head, GQA 4/2)", 1, 0, {12, 5}, 4},
    };
    size_t n = sizeof cases / sizeof cases[0];
#if defined(__SANITIZE_ADDRESS__)
    n = 1; /* the optimized build runs both */
#endif
    for (size_t i = 0; i < n; i++) test_gen_plan_case(&cases[i]);
}

/* the dropout op: CUDA's mask and scale are the CPU's, bit for bit on bf16 inputs */
static void test_dropout(void) {
    const size_t n = 1000;
    float *src = malloc(n * sizeof(float)), *ref = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
    uint16_t *h = malloc(n * 2);
    for (size_t i = 0; i < n; i++) {
        h[i] = pl_f32_to_bf16((float)pl_rng_normal(5, 0, i));
        src[i] = pl_bf16_to_f32(h[i]);
    }
    pl_cpu_dropout(ref, src, n, 0.1f, 1234, 77, 0);
    void *d = cuda->alloc(n * 2, PL_MEM_ACTIVATIONS);
    cuda->upload(d, h, n * 2);
    /* in two slices (elements 0..399 and 400..999): the mask of the whole */
    cuda->dropout(d, d, 400, 0.1f, 1234, 77, 0);
    cuda->dropout(pl_act_at(cuda, d, 400), pl_act_at(cuda, d, 400), n - 400, 0.1f, 1234, 77, 400);
    cuda->act_to_f32(got, d, n);
    pl_err err = {0};
    CHECK(cuda->take_error(&err) == 0, "dropout: %s", err.msg);
    {   /* the cpu op in slices too */
        float *sl = malloc(n * sizeof(float));
        pl_cpu_dropout(sl, src, 200, 0.1f, 1234, 77, 0);
        pl_cpu_dropout(sl + 200, src + 200, n - 200, 0.1f, 1234, 77, 200);
        CHECK(!memcmp(sl, ref, n * sizeof(float)), "cpu dropout in slices of 200 and 800: the whole's mask");
        free(sl);
    }
    size_t same = 0, zeros = 0;
    for (size_t i = 0; i < n; i++) {
        same += pl_f32_to_bf16(ref[i]) == pl_f32_to_bf16(got[i]);
        zeros += ref[i] == 0;
    }
    CHECK(same == n, "dropout: %zu of %zu elements equal the cpu op's (rounded to bf16)", same, n);
    CHECK(zeros > 50 && zeros < 150, "dropout 0.1 dropped %zu of %zu", zeros, n);
    cuda->free(d);
    free(src);
    free(ref);
    free(got);
    free(h);
}

/* 5 */
static void test_refusals(void) {
    pl_err err = {0};
    pl_model *m = NULL;
    pl_model_opts mo = {.fp32 = 1};
    if (pl_model_load(&m, model_path, &mo, &err)) {
        CHECK(0, "load fp32: %s", err.msg);
        return;
    }
    m->be = cuda;
    pl_train *t = NULL;
    int rc = pl_train_init(&t, m, ROW, &err);
    CHECK(rc == PL_EUNSUPPORTED && !t && strstr(err.msg, "--backend cpu"), "full fine-tune refused: %s", err.msg);
    pl_train_free(t);
    pl_model_free(m);

#ifndef PL_CUDA_REAL
    /* an op that cannot get its memory: the error comes from take_error */
    pl_model *mg = load(cuda);
    if (!mg) return;
    pl_emu_set_capacity(dev_used() + 4096); /* no room for the first weight copy */
    float *logits = malloc((size_t)mg->cfg.vocab * 8 * sizeof(float));
    int32_t ids[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    pl_emu_set_quiet(1);
    rc = pl_model_forward(mg, ids, NULL, NULL, 8, logits, &err);
    pl_emu_set_quiet(0);
    CHECK(rc != 0 && (strstr(err.msg, "memory") || strstr(err.msg, "out of")),
          "forward without device memory fails with a message (%d): %s", rc, err.msg);
    pl_emu_set_capacity((size_t)24 << 30);
    CHECK(cuda->take_error(&err) == 0, "the failure was taken once: %s", err.msg);
    free(logits);
    pl_model_free(mg);
#endif
}

/* The small Llama shape of 6 and 7 as a config.json: 2 layers of width 96 and
 * MLP 1101 (96 x 1101 = 1651.5 NF4 blocks: a short last one; 7 nested blocks). */
static int write_shape(const char *path, int tied) {
    FILE *f = fopen(path, "w");
    if (!f) {
        CHECK(0, "write %s", path);
        return -1;
    }
    fprintf(f, "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"vocab_size\": 300, "
               "\"hidden_size\": 96, \"intermediate_size\": 1101, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
               "\"num_key_value_heads\": 2, \"max_position_embeddings\": 128, \"rms_norm_eps\": 1e-5, "
               "\"rope_theta\": 10000.0, \"tie_word_embeddings\": %s}\n", tied ? "true" : "false");
    return fclose(f) ? -1 : 0;
}

/* 6. the rehearsal model "random:SHAPE@SEED" (trainer/model_random.c) made
 * on the device (init_random): its host bytes equal the CPU backend's making
 * of the same spec byte for byte (NF4 codes, absmax codes, nested absmax,
 * offset; BF16 embedding and head); one init_random launch per random
 * tensor; the device copies are the weights' resident copies (the tags grew
 * by the emulator's allocated bytes, and a forward uploads nothing more); its
 * logits are the CPU model's within bf16's error. The shape has a short last
 * NF4 block (96 x 1101 = 1651.5 blocks) and several nested blocks. On a GPU
 * (PL_CUDA_REAL) the byte equality also checks CUDA's double log and cos
 * against the host's on these 0.9 M values (core/philox.h: they may differ in
 * a last bit, which would show here as a differing tensor). */
static int same_weight(const pl_qweight *a, const pl_qweight *b) {
    if (a->dtype != b->dtype || a->rows != b->rows || a->cols != b->cols) return 0;
    if (a->dtype == PL_BF16) return !memcmp(a->data, b->data, (size_t)(a->rows * a->cols) * 2);
    const pl_nf4 *p = a->data, *q = b->data;
    return a->dtype == PL_NF4 && p->n == q->n && !memcmp(p->packed, q->packed, (size_t)(p->n + 1) / 2) &&
           !memcmp(p->absmax_q, q->absmax_q, (size_t)p->n_blocks) &&
           !memcmp(p->nested_absmax, q->nested_absmax, (size_t)p->n_nested * 4) && !memcmp(&p->offset, &q->offset, 4) &&
           !memcmp(p->code, q->code, sizeof p->code);
}

static void test_random_model(void) {
    char dir[] = "/tmp/potluck-cuda-random-XXXXXX", cfg[128], spec[160];
    if (!mkdtemp(dir)) { CHECK(0, "mkdtemp"); return; }
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    if (write_shape(cfg, 0)) return;
    snprintf(spec, sizeof spec, "random:%s@7", cfg);
    pl_err err = {0};
    pl_model *g = NULL, *c = NULL;
    size_t tags0 = 0, tags1 = 0;
    for (int k = 0; k < PL_MEM_NCAT; k++) tags0 += pl_mem_current((pl_mem_cat)k);
    const size_t emu0 = dev_used();
    const unsigned long n0 = pl_cuda_backend_launches(PL_CUDA_OP_INIT_RANDOM);
    int rc = pl_backend_set_default("cuda", &err);
    if (!rc) rc = pl_model_load(&g, spec, NULL, &err);
    pl_err e2 = {0};
    pl_backend_set_default("cpu", &e2);
    CHECK(rc == 0 && g && g->be == cuda, "%s on the cuda backend: %s", spec, err.msg);
    if (rc) return;
    for (int k = 0; k < PL_MEM_NCAT; k++) tags1 += pl_mem_current((pl_mem_cat)k);
    const size_t emu1 = dev_used();
    const unsigned long launched = pl_cuda_backend_launches(PL_CUDA_OP_INIT_RANDOM) - n0;
    CHECK(launched == (unsigned long)(7 * g->cfg.n_layers + 2), "init_random launched %lu times for %d random tensors",
          launched, 7 * g->cfg.n_layers + 2);
#ifndef PL_CUDA_REAL /* the driver's used memory is not exact on a GPU */
    CHECK((ptrdiff_t)(tags1 - tags0) == (ptrdiff_t)(emu1 - emu0) && emu1 > emu0,
          "the device copies are tagged: %td tagged bytes, %td allocated", (ptrdiff_t)(tags1 - tags0),
          (ptrdiff_t)(emu1 - emu0));
#else
    CHECK(tags1 > tags0, "the device copies are tagged: %td bytes", (ptrdiff_t)(tags1 - tags0));
#endif
    rc = pl_model_load(&c, spec, NULL, &err);
    CHECK(rc == 0 && c && c->be != cuda, "%s on the cpu backend: %s", spec, err.msg);
    if (!rc) {
        int same = same_weight(&g->tok_embd, &c->tok_embd) && same_weight(&g->lm_head, &c->lm_head);
        CHECK(same, "the BF16 embedding and head made on the device equal the CPU's");
        int lin = 1;
        for (int l = 0; l < g->cfg.n_layers; l++) {
            const pl_layer *a = &g->layers[l], *b = &c->layers[l];
            lin &= same_weight(&a->wq, &b->wq) && same_weight(&a->wk, &b->wk) && same_weight(&a->wv, &b->wv) &&
                   same_weight(&a->wo, &b->wo) && same_weight(&a->w_gate, &b->w_gate) &&
                   same_weight(&a->w_up, &b->w_up) && same_weight(&a->w_down, &b->w_down);
        }
        const pl_nf4 *q = g->layers[0].w_gate.data;
        CHECK(lin, "every NF4 layer weight made on the device equals the CPU's, byte for byte (%lld blocks, %lld nested)",
              (long long)q->n_blocks, (long long)q->n_nested);
        int32_t ids[8] = {1, 5, 77, 200, 9, 299, 3, 150};
        const int V = g->cfg.vocab;
        float *lg = malloc((size_t)8 * V * 4), *lc = malloc((size_t)8 * V * 4);
        const size_t emu2 = dev_used();
        rc = lg && lc ? pl_model_forward(c, ids, NULL, NULL, 8, lc, &err) : PL_ENOMEM;
        if (!rc) rc = pl_model_forward(g, ids, NULL, NULL, 8, lg, &err);
        CHECK(rc == 0, "forward of the random model on both backends: %s", err.msg);
        if (!rc) {
            double ref = 0;
            double d = norm_diff(lg, lc, (size_t)8 * V, &ref);
            CHECK(d <= 2e-2, "the device model's logits are the CPU's within bf16 error: %.3g normalized (norm %.3g)", d,
                  ref);
            const unsigned long nw = pl_cuda_backend_launches(PL_CUDA_OP_INIT_RANDOM) - n0;
            CHECK(nw == launched, "the forward made no weight again");
            printf("note: random model on the device: %td device bytes at load; the forward added %td (activations, "
                   "scratch, norms); logits differ from the CPU's by %.3g normalized\n", (ptrdiff_t)(emu1 - emu0),
                   (ptrdiff_t)(dev_used() - emu2), d);
        }
        free(lg);
        free(lc);
    }
    pl_model_free(c);
    pl_model_free(g);
    remove(cfg);
    rmdir(dir);
}

/* 7. the NF4 base quantized on the device (backend.h's quantize_nf4, what
 * trainer/run.c's NF4 base uses on this backend): BF16 and F16 weights of
 * 96 x 1101 (a short last block, several nested blocks) give pl_nf4_fill's
 * bytes exactly; a NaN is refused naming the element's block as the CPU
 * does; a whole BF16 model (model init without --nf4) quantized through
 * pl_model_nf4_quantize_on with the cuda backend equals the CPU's
 * quantization of it, every layer weight made on the device. */
static int nf4_same(const pl_nf4 *p, const pl_nf4 *q) {
    return p->n == q->n && !memcmp(p->packed, q->packed, (size_t)(p->n + 1) / 2) &&
           !memcmp(p->absmax_q, q->absmax_q, (size_t)p->n_blocks) &&
           !memcmp(p->nested_absmax, q->nested_absmax, (size_t)p->n_nested * 4) && !memcmp(&p->offset, &q->offset, 4) &&
           !memcmp(p->code, q->code, sizeof p->code);
}

static void test_quantize_nf4(void) {
    const int64_t R = 96, C = 1101, n = R * C;
    float *x = malloc((size_t)n * 4);
    uint16_t *h = malloc((size_t)n * 2);
    if (!x || !h) { CHECK(0, "out of memory"); free(x); free(h); return; }
    const unsigned long q0 = pl_cuda_backend_launches(PL_CUDA_OP_QUANTIZE_NF4);
    for (int f16 = 0; f16 < 2; f16++) {
        for (int64_t i = 0; i < n; i++) { /* rows of different scales, a few zero blocks */
            float v = 0.05f * pl_rng_normal(3, (uint64_t)f16, (uint64_t)i) * (float)(1 + (i / C) % 7);
            if (i / 64 == 5) v = 0.0f;
            h[i] = f16 ? pl_f32_to_f16(v) : pl_f32_to_bf16(v);
            x[i] = f16 ? pl_f16_to_f32(h[i]) : pl_bf16_to_f32(h[i]);
        }
        pl_err err = {0};
        pl_nf4 ref, dev;
        int rc = pl_nf4_quantize(x, n, 64, 1, &ref, &err);
        CHECK(rc == 0, "cpu quantize: %s", err.msg);
        if (rc) continue;
        rc = pl_nf4_quantize(x, n, 64, 1, &dev, &err); /* laid out the same; overwritten by the device */
        memset(dev.packed, 0, (size_t)(n + 1) / 2);
        dev.offset = 0;
        pl_qweight w = {f16 ? PL_F16 : PL_BF16, R, C, (size_t)C * 2, h, NULL};
        rc = cuda->quantize_nf4(&dev, &w);
        CHECK(rc == 0 && cuda->take_error(&err) == 0, "%s on the device: %d %s", f16 ? "F16" : "BF16", rc, err.msg);
        CHECK(nf4_same(&dev, &ref), "%s quantized on the device equals pl_nf4_fill's bytes (%lld blocks, %lld nested)",
              f16 ? "F16" : "BF16", (long long)ref.n_blocks, (long long)ref.n_nested);
        cuda->release_weights(&dev);
        if (f16) { /* a NaN: the CPU's refusal, naming the same element */
            h[64 * 700 + 3] = 0x7e00;
            x[64 * 700 + 3] = NAN;
            pl_err ec = {0}, ed = {0};
            pl_nf4 bad;
            int rcc = pl_nf4_quantize(x, n, 64, 1, &bad, &ec);
            int rcd = cuda->quantize_nf4(&dev, &w);
            cuda->take_error(&ed);
            CHECK(rcc != 0 && rcd != 0 && !strcmp(ec.msg, ed.msg), "a NaN refused as the CPU does: '%s' / '%s'", ec.msg,
                  ed.msg);
            cuda->release_weights(&dev);
        }
        pl_nf4_free(&ref);
        pl_nf4_free(&dev);
    }
    pl_qweight w8 = {PL_Q8_0, 1, 32, 34, h, NULL};
    pl_nf4 small;
    pl_err e = {0};
    if (!pl_nf4_quantize(x, 32, 32, 1, &small, &e)) {
        CHECK(cuda->quantize_nf4(&small, &w8) == PL_EUNSUPPORTED, "a Q8_0 source is left to the host");
        pl_nf4_free(&small);
    }
    CHECK(pl_cuda_backend_launches(PL_CUDA_OP_QUANTIZE_NF4) - q0 == 3, "quantize_nf4 launched 3 times");
    free(x);
    free(h);

    /* a BF16 model's base */
    char dir[] = "/tmp/potluck-cuda-quant-XXXXXX", cfg[128], mdir[160];
    if (!mkdtemp(dir)) { CHECK(0, "mkdtemp"); return; }
    snprintf(cfg, sizeof cfg, "%s/shape.json", dir);
    snprintf(mdir, sizeof mdir, "%s/model", dir);
    if (write_shape(cfg, 1)) return;
    pl_model_header hd;
    pl_model_init_opts o = {.seed = 9};
    pl_err err = {0};
    int rc = pl_model_read_header(cfg, &hd, &err);
    if (!rc) rc = pl_model_init_random(&hd.cfg, mdir, &o, &err);
    CHECK(rc == 0, "model init %s: %s", mdir, err.msg);
    pl_model *g = NULL, *c = NULL;
    if (!rc) rc = pl_model_load(&g, mdir, NULL, &err);
    if (!rc) rc = pl_model_load(&c, mdir, NULL, &err);
    CHECK(rc == 0, "load %s: %s", mdir, err.msg);
    if (!rc) {
        g->be = cuda;
        int on_dev = -1;
        rc = pl_model_nf4_quantize_on(g, 64, 1, &on_dev, &err);
        CHECK(rc == 0 && on_dev == 7 * g->cfg.n_layers, "the BF16 base quantized on the device: %d of %d weights: %s",
              on_dev, 7 * g->cfg.n_layers, err.msg);
        rc = pl_model_nf4_quantize_on(c, 64, 1, NULL, &err);
        int same = rc == 0;
        for (int l = 0; same && l < g->cfg.n_layers; l++) {
            const pl_layer *a = &g->layers[l], *b = &c->layers[l];
            const pl_qweight *wa[7] = {&a->wq, &a->wk, &a->wv, &a->wo, &a->w_gate, &a->w_up, &a->w_down};
            const pl_qweight *wb[7] = {&b->wq, &b->wk, &b->wv, &b->wo, &b->w_gate, &b->w_up, &b->w_down};
            for (int i = 0; i < 7; i++) same &= wa[i]->dtype == PL_NF4 && nf4_same(wa[i]->data, wb[i]->data);
        }
        CHECK(same, "every layer weight quantized on the device equals the CPU's quantization: %s", err.msg);
    }
    pl_model_free(g);
    pl_model_free(c);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", dir);
}

static int32_t *read_i32(const char *dir, const char *name, size_t n) {
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "rb");
    int32_t *v = malloc(n * sizeof *v);
    size_t got = f && v ? fread(v, sizeof *v, n, f) : 0;
    if (f) fclose(f);
    if (got != n) {
        free(v);
        return NULL;
    }
    return v;
}

static int write_adapter(const char *dir) {
    const char *refs = check_env("POTLUCK_REFS");
    char refdir[4200], base[4300], p[4400];
    snprintf(refdir, sizeof refdir, "%s/peft_ref", refs);
    snprintf(base, sizeof base, "%s/base", refdir);
    const int T = 48;
    int32_t *ids = read_i32(refdir, "ids.i32", T), *tg = read_i32(refdir, "targets.i32", T);
    int32_t *pos = read_i32(refdir, "pos.i32", T), *seg = read_i32(refdir, "seg.i32", T);
    REQUIRE(ids && tg && pos && seg, "%s: ids/targets/pos/seg (run bash tests/refs.sh peft_ref)", refdir);
    pl_err err = {0};
    pl_model *m = NULL;
    REQUIRE(pl_model_load(&m, base, NULL, &err) == 0, "load %s: %s", base, err.msg);
    m->be = cuda;
    mkdir(dir, 0755);
    pl_lora_cfg cfg = {.r = 4, .alpha = 8, .dropout = 0.0f, .rslora = 1, .targets = PL_LORA_ALL_LINEAR, .seed = 2024};
    pl_lora *l = NULL;
    pl_train *t = NULL;
    pl_train_opts to = {.frozen_base = 1, .checkpoint = 1};
    REQUIRE(pl_lora_init(&l, m, &cfg, &err) == 0 && pl_train_init_opts(&t, m, T, &to, &err) == 0 &&
                pl_train_attach_lora(t, l, &err) == 0,
            "cuda context: %s", err.msg);
    pl_qlora_opts o = {.adamw = pl_adamw_defaults(), .max_grad_norm = 0.3f};
    o.adamw.lr = 1e-2f;
    o.adamw.weight_decay = 0.0f;
    pl_microbatch mb = {ids, tg, pos, seg, T};
    double loss = 0;
    for (int s = 0; s < 3; s++) CHECK(pl_qlora_step(t, &mb, 1, &o, &loss, NULL, &err) == 0, "step: %s", err.msg);
    printf("note: peft_ref base, 3 AdamW steps on the cuda backend: loss %.6f\n", loss);
    snprintf(p, sizeof p, "%s/adapter", dir);
    CHECK(pl_lora_save_peft(l, m, p, base, &err) == 0, "save: %s", err.msg);
    pl_train_free(t);
    pl_lora_free(l);
    pl_model_free(m);
    /* the cpu backend, the base and the saved adapter: fp32 logits of the first sample */
    m = NULL;
    l = NULL;
    t = NULL;
    to.checkpoint = 0;
    REQUIRE(pl_model_load(&m, base, NULL, &err) == 0, "reload: %s", err.msg);
    REQUIRE(pl_lora_load_peft(&l, m, p, &err) == 0 && pl_train_init_opts(&t, m, T, &to, &err) == 0 &&
                pl_train_attach_lora(t, l, &err) == 0,
            "cpu context with the saved adapter: %s", err.msg);
    int64_t nv = 0;
    CHECK(pl_train_forward(t, ids, tg, NULL, NULL, 13, NULL, &nv, &err) == 0, "cpu forward: %s", err.msg);
    snprintf(p, sizeof p, "%s/logits.f32", dir);
    FILE *f = fopen(p, "wb");
    CHECK(f && fwrite(t->logits, 4, (size_t)13 * m->cfg.vocab, f) == (size_t)13 * m->cfg.vocab, "write %s", p);
    if (f) fclose(f);
    snprintf(p, sizeof p, "%s/ids.i32", dir);
    f = fopen(p, "wb");
    CHECK(f && fwrite(ids, 4, 13, f) == 13, "write %s", p);
    if (f) fclose(f);
    pl_train_free(t);
    pl_lora_free(l);
    pl_model_free(m);
    free(ids);
    free(tg);
    free(pos);
    free(seg);
    return check_summary("test_cuda_backend --write-adapter");
}

int main(int argc, char **argv) {
    pl_err err0 = {0};
    if (argc == 3 && !strcmp(argv[1], "--write-adapter")) {
        cuda = pl_backend_named("cuda", &err0);
        REQUIRE(cuda, "open the cuda backend: %s", err0.msg);
        return write_adapter(argv[2]);
    }
    const char *shared = check_env("POTLUCK_SHARED");
    snprintf(model_path, sizeof model_path, "%s/fixtures/stories260K/stories260K.bin", shared);
    pl_err err = {0};
    cuda = pl_backend_named("cuda", &err);
    REQUIRE(cuda && !strcmp(cuda->name, "cuda"), "open the cuda backend: %s", err.msg);
    CHECK(cuda->act_dtype == PL_BF16 && !cuda->host_memory, "bf16 activations in device memory");
    CHECK(pl_backend_named("tpu", &err) == NULL && strstr(err.msg, "unknown backend"), "unknown backend: %s", err.msg);
    double t[8];
    t[0] = now_s();
    test_dropout();
    int32_t tok[NGEN];
    t[1] = now_s();
    test_generation(tok);
    /* training rows: BOS + the greedy text, 2 rows of 64 inputs and their next tokens */
    int32_t rows[2 * ROW + 1];
    rows[0] = 1;
    for (int i = 1; i <= 2 * ROW; i++) rows[i] = tok[(i - 1) % NGEN];
    t[2] = now_s();
    test_training(rows);
    t[3] = now_s();
    test_plan();
    t[4] = now_s();
    test_gen_plan();
    t[5] = now_s();
    test_refusals();
    t[6] = now_s();
    test_random_model();
    test_quantize_nf4();
    t[7] = now_s();
    printf("note: seconds: dropout %.1f, generation %.1f, training %.1f, plan %.1f, generation plan %.1f, refusals %.1f, "
           "random model and device quantization %.1f\n",
           t[1] - t[0], t[2] - t[1], t[3] - t[2], t[4] - t[3], t[5] - t[4], t[6] - t[5], t[7] - t[6]);
    return check_summary("test_cuda_backend");
}
