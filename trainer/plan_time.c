/* plan_time.c: a training step's time on a GPU, estimated from the plan
 * (trainer/plan.h, docs/planner.md "Step time"): the step's FLOPs and device
 * memory traffic divided by the device's spec-sheet peaks times stated
 * efficiency factors, or by what bench/gpu.sh measured on that device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../core/json.h"
#include "plan.h"

/* Spec sheets: bf16 tensor-core TFLOP/s, dense, fp32 accumulate (what a
 * cuBLASLt GEMM with CUBLAS_COMPUTE_32F can reach), and memory bandwidth;
 * the same figures as bench/gpu_bench.c's peaks. */
static const pl_gpu_spec specs[] = {
    {"RTX 3090", 24, 71, 936},   {"RTX 4090", 24, 165, 1008}, {"RTX A5000", 24, 111, 768},
    {"L4", 24, 121, 300},        {"A100 80GB", 80, 312, 2039}, {"H100 SXM", 80, 989, 3350},
};

const pl_gpu_spec *pl_gpu_specs(int *n) {
    *n = (int)(sizeof specs / sizeof specs[0]);
    return specs;
}

/* FLOPs and bytes of one forward + backward of p->T tokens (see plan.h). */
static void step_work(const pl_model_config *c, const pl_mem_plan *p, double *flops, double *bytes) {
    const pl_train_shape *s = &p->shape;
    const double T = p->T, D = c->dim, H = c->hidden, V = c->vocab, L = c->n_layers;
    const double qd = (double)c->n_heads * c->head_dim, kvd = (double)c->n_kv_heads * c->head_dim;
    const double lo[7] = {qd, kvd, kvd, D, H, H, D}, li[7] = {D, D, D, qd, D, D, H};
    double nlin = 0, lora = 0;
    for (int j = 0; j < 7; j++) {
        nlin += lo[j] * li[j];
        if (s->frozen_base && s->lora_r > 0 && ((s->lora_targets >> j) & 1)) lora += (double)s->lora_r * (lo[j] + li[j]);
    }
    nlin *= L;
    lora *= L;
    const double fwd_passes = s->checkpoint ? 2 : 1; /* checkpointing recomputes each layer's forward */
    double f = 0;
    f += (fwd_passes * 2 + 2) * T * nlin;            /* base GEMMs: forward(s), dx (the base is frozen: no dW) */
    f += (fwd_passes * 2 + 4) * T * lora;            /* LoRA: xa, y; backward dB, dxa, dA, dx */
    f += 6 * T * V * D;                              /* fused head + loss: logits, recomputed for dx, dx */
    f += L * (fwd_passes * 2 + 2 + 5) * T * T * qd;  /* causal attention: forward(s), the lse recompute, backward */
    double b = 0;
    const double base = (double)p->item[PL_PB_DEV_BASE].bytes;
    if (s->nf4_blocksize > 0) b += (fwd_passes + 1) * (base + 4 * nlin); /* read NF4, write + read the bf16 scratch */
    else b += (fwd_passes + 1) * 2 * nlin;
    b += 3 * 2 * V * D;                                                  /* the head's bf16 rows, three passes */
    b += 3 * (double)p->cat[PL_MEM_ACTIVATIONS] + 2 * (double)p->cat[PL_MEM_GRADIENTS];
    *flops = f;
    *bytes = b;
}

/* A measurement bench/gpu.sh wrote for device g: dir/<name>.json with
 * "gemm_tflops" and "gbs" (achieved). 0 when there is none. */
static int measured(const char *dir, const pl_gpu_spec *g, double *tflops, double *gbs) {
    if (!dir || !*dir) return 0;
    char path[4096], name[64];
    size_t k = 0;
    for (const char *q = g->name; *q && k + 1 < sizeof name; q++) name[k++] = (*q == ' ' || *q == '/') ? '_' : *q;
    name[k] = 0;
    snprintf(path, sizeof path, "%s/%s.json", dir, name);
    cJSON *j = NULL;
    pl_err e = {0};
    if (pl_json_load(path, 1 << 16, &j, &e)) return 0;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "gemm_tflops"), *m = cJSON_GetObjectItemCaseSensitive(j, "gbs");
    int ok = cJSON_IsNumber(t) && cJSON_IsNumber(m) && t->valuedouble > 0 && m->valuedouble > 0;
    if (ok) {
        *tflops = t->valuedouble;
        *gbs = m->valuedouble;
    }
    cJSON_Delete(j);
    return ok;
}

int pl_plan_step_time(const pl_model_config *c, const pl_mem_plan *p, const pl_gpu_spec *g, const char *measure_dir,
                      pl_step_est *out, pl_err *err) {
    memset(out, 0, sizeof *out);
    if (!p->shape.cuda) return pl_err_set(err, PL_EINVAL, "step time: the plan is not a CUDA plan");
    step_work(c, p, &out->flops, &out->bytes);
    double tf = g->tflops * PL_EFF_GEMM, bw = g->gbs * PL_EFF_MEM;
    if (measured(measure_dir, g, &tf, &bw)) out->measured = 1;
    out->tflops_used = tf;
    out->gbs_used = bw;
    /* no overlap assumed: dequantization and the GEMMs that read its output are separate kernels */
    out->seconds = out->flops / (tf * 1e12) + out->bytes / (bw * 1e9);
    out->tokens_per_s = out->seconds > 0 ? p->T / out->seconds : 0;
    out->fits = (double)p->need <= g->mem_gib * 1073741824.0; /* the runtime's reserve included */
    return PL_OK;
}
