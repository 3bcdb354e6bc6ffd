/* opt_plan.c: the memory plan (trainer/plan.h) against the process's
 * resident memory on SmolLM2-135M (Q4_1 GGUF, $POTLUCK_MODEL), QLoRA with an
 * NF4 base, on the optimized build (under ASan resident memory says little).
 *
 * Two configurations (seq 256 r 16 all-linear, no checkpointing; seq 512 r 8
 * q,v with checkpointing), each after a small warm-up run (OpenBLAS and
 * OpenMP allocate their own buffers on first use) in a fresh measurement
 * window (/proc/self/clear_refs resets VmHWM):
 *   - tagged peaks (pl_mem_peak) equal the plan, byte for byte;
 *   - the peak RSS growth over training (init, LoRA, two QLoRA steps) is
 *     within 10% of what the plan says training adds: the tagged total, the
 *     attention scratch, and the tied embedding/LM head's file pages, first
 *     read in full by the LM head's forward;
 *   - the peak RSS growth over the whole run, model load and NF4
 *     quantization included, is within 10% of the plan's total plus the Q4_1
 *     layer weights the quantization reads through the file map (they stay
 *     mapped and resident, as page cache).
 * The measured numbers are printed. */
#include <malloc.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "lora/lora.h"
#include "trainer/model_lora.h"
#include "trainer/plan.h"
#include "trainer/qlora.h"
#include "trainer/train.h"

/* VmRSS / VmHWM of this process, bytes. */
static size_t status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    size_t v = 0, k = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, k) && line[k] == ':') v = strtoull(line + k + 1, NULL, 10);
    fclose(f);
    return v * 1024;
}

static int reset_hwm(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return -1;
    int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static void rows(int V, int T, int salt, int32_t *ids, int32_t *tg) {
    uint32_t x = 88172645u + (uint32_t)salt;
    for (int i = 0; i < T; i++) {
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        ids[i] = (int32_t)(x % (uint32_t)V);
    }
    for (int i = 0; i < T; i++) tg[i] = i + 1 < T ? ids[i + 1] : -1;
}

/* Init, LoRA, two QLoRA steps of one row of T tokens; fills *plan. */
static int train(pl_model *m, int T, int r, const char *targets, int ckpt, pl_mem_plan *plan, int check) {
    pl_err err = {0};
    pl_train_shape sh = {.seq_len = T, .micro_batch = 1, .frozen_base = 1, .lora_r = r, .checkpoint = ckpt,
                         .nf4_blocksize = 64, .nf4_double_quant = 1, .layer_dtype = m->layers[0].w_gate.dtype,
                         .embd_dtype = m->tok_embd.dtype, .head_dtype = m->lm_head.dtype, .stored_mapped = 1,
                         .threads = omp_get_max_threads()};
    if (pl_lora_parse_targets(targets, &sh.lora_targets, &err) || pl_train_plan(&m->cfg, &sh, plan, &err)) {
        CHECK(0, "plan: %s", err.msg);
        return -1;
    }
    size_t cur0[PL_MEM_NCAT];
    for (int k = 0; k < PL_MEM_NCAT; k++) cur0[k] = pl_mem_current((pl_mem_cat)k);
    pl_mem_reset_peak();
    pl_train *t = NULL;
    pl_lora *l = NULL;
    pl_train_opts to = {.frozen_base = 1, .checkpoint = ckpt};
    pl_lora_cfg lc = {.r = r, .alpha = 2.0f * r, .dropout = 0.05f, .targets = sh.lora_targets, .seed = 3};
    int rc = pl_train_init_opts(&t, m, T, &to, &err);
    if (!rc) rc = pl_lora_init(&l, m, &lc, &err);
    if (!rc) rc = pl_train_attach_lora(t, l, &err);
    CHECK(rc == 0, "setup T %d: %s", T, err.msg);
    int32_t *ids = malloc((size_t)T * 4), *tg = malloc((size_t)T * 4);
    for (int s = 0; !rc && s < 2; s++) {
        rows(m->cfg.vocab, T, s, ids, tg);
        pl_microbatch mb = {.ids = ids, .targets = tg, .T = T};
        pl_qlora_opts qo = {.adamw = pl_adamw_defaults(), .max_grad_norm = 0.3f};
        double loss = 0;
        rc = pl_qlora_step(t, &mb, 1, &qo, &loss, NULL, &err);
        CHECK(rc == 0 && loss > 0, "step %d: %s", s, err.msg);
    }
    free(ids);
    free(tg);
    if (check)
        for (int k = 0; k < PL_MEM_NCAT; k++) {
            size_t peak = pl_mem_peak((pl_mem_cat)k) - cur0[k];
            CHECK(peak == plan->cat[k], "T %d: %s: plan %zu, peak %zu", T, pl_mem_cat_name((pl_mem_cat)k),
                  plan->cat[k], peak);
        }
    pl_train_free(t);
    pl_lora_free(l);
    return rc;
}

static void one(const char *path, int T, int r, const char *targets, int ckpt) {
    pl_err err = {0};
    if (reset_hwm()) { CHECK(0, "cannot reset VmHWM through /proc/self/clear_refs"); return; }
    size_t rss_start = status_kb("VmRSS");
    pl_model_opts mo = {.nf4_blocksize = 64, .nf4_double_quant = 1};
    pl_model *m = NULL;
    if (pl_model_load(&m, path, &mo, &err)) { CHECK(0, "load: %s", err.msg); return; }
    pl_mem_plan warm, plan;
    train(m, 32, 2, "q", 0, &warm, 0); /* OpenBLAS / OpenMP buffers, thread stacks */
    size_t rss_model = status_kb("VmRSS");
    reset_hwm();
    train(m, T, r, targets, ckpt, &plan, 1);
    size_t hwm = status_kb("VmHWM");
    size_t grow = hwm - rss_model;
    size_t want = plan.tracked + plan.item[PL_PB_ATTN_SCRATCH].bytes;
    double rel = ((double)grow - (double)want) / (double)want;
    printf("SmolLM2 T %d r %d %s%s: training RSS growth %zu, plan %zu (tagged %zu + attention scratch %zu): "
           "%+.2f%%\n", T, r, targets, ckpt ? " ckpt" : "", grow, want, plan.tracked,
           plan.item[PL_PB_ATTN_SCRATCH].bytes, 100 * rel);
    CHECK(rel > -0.10 && rel < 0.10, "T %d: training RSS growth %zu vs plan %zu: %+.1f%% (limit 10%%)", T, grow, want,
          100 * rel);
    /* the whole run: the plan's total. The Q4_1 source layers are read
     * through the map once, to quantize them to NF4, and their pages are
     * dropped from the resident set after that (trainer/model_nf4.c), so
     * they are not part of the run's RSS */
    size_t src = 0; /* the layer matrices' bytes in the GGUF (norms are copied to fp32, counted in the plan) */
    for (uint64_t i = 0; m->gguf && i < m->gguf->n_tensors; i++) {
        const pl_gguf_tensor *gt = &m->gguf->tensors[i];
        if (!strncmp(gt->name, "blk.", 4) && gt->n_dims == 2) src += gt->nbytes;
    }
    CHECK(src > 0, "the GGUF's layer matrices");
    /* VmHWM was reset after the model loaded: the whole run's peak is the larger of the two windows */
    size_t whole_want = plan.total;
    size_t whole = rss_model - rss_start + grow;
    double rel2 = ((double)whole - (double)whole_want) / (double)whole_want;
    printf("SmolLM2 T %d: whole-run RSS growth %zu, plan total %zu (Q4_1 source layers of %zu bytes dropped after "
           "quantization): %+.2f%%\n",
           T, whole, plan.total, src, 100 * rel2);
    CHECK(rel2 > -0.10 && rel2 < 0.10, "T %d: whole-run RSS %zu vs %zu: %+.1f%%", T, whole, whole_want, 100 * rel2);
    pl_model_free(m);
}

int main(void) {
    const char *path = check_env("POTLUCK_MODEL");
    /* a fixed mmap threshold: glibc's dynamic one would serve the buffers
     * from heap memory the warm-up freed, already resident */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    mallopt(M_TRIM_THRESHOLD, 128 * 1024);
    one(path, 256, 16, "all-linear", 0);
    one(path, 512, 8, "q,v", 1);
    return check_summary("opt_plan");
}
