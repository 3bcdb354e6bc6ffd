/* test_mlp_chunk.c: MLP chunks (pl_train_opts.mlp_chunk, --mlp-chunk) on the
 * CPU backend, on llama2.c's stories260K.
 *
 * With checkpointing, each layer's MLP runs over chunks of rows in the
 * forward and again in the backward. Against the same steps run whole:
 *  - the forward's loss is the same to 1e-6 relative (per-row math; only
 *    the GEMMs' row blocking changes);
 *  - QLoRA (NF4 base, r 8 on every linear module, dropout 0.1, so the masks
 *    of the chunks must be the whole tensor's): after 3 AdamW steps the LoRA
 *    weights agree to 1e-5 normalized error (the adapters' gradients of the
 *    MLP modules are summed chunk by chunk: rounding only); the step losses
 *    to 1e-5 relative;
 *  - full fp32 fine-tuning (the MLP weights' gradients also summed per
 *    chunk): the same bounds;
 *  - a chunk longer than the sequence is no chunk: the bits of the whole run;
 *  - two chunked runs give the same bits;
 *  - refused: chunks that are not a multiple of 8, and chunks without
 *    checkpointing.
 * The tagged memory of chunked runs against the plan: tests/test_plan.c
 * (CPU) and tests/test_cuda_backend.c (CUDA, emulated). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "lora/lora.h"
#include "trainer/model_lora.h"
#include "trainer/qlora.h"
#include "trainer/train.h"

#define T 64
#define STEPS 3

static char model_path[4096];

typedef struct run_out {
    double loss[STEPS];
    float *w; /* the trained weights after STEPS, flattened */
    size_t n;
} run_out;

/* STEPS AdamW steps of one row of T tokens (a different row each step). */
static int run(int full, int chunk, run_out *o, pl_err *err) {
    memset(o, 0, sizeof *o);
    pl_model_opts mo = {.fp32 = full, .nf4_blocksize = full ? 0 : 64, .nf4_double_quant = 1};
    pl_model *m = NULL;
    int rc = pl_model_load(&m, model_path, &mo, err);
    if (rc) return rc;
    pl_train *t = NULL;
    pl_lora *l = NULL;
    pl_train_opts to = {.frozen_base = !full, .checkpoint = 1, .mlp_chunk = chunk};
    rc = pl_train_init_opts(&t, m, T, &to, err);
    if (!rc && !full) {
        pl_lora_cfg lc = {.r = 8, .alpha = 16, .dropout = 0.1f, .targets = PL_LORA_ALL_LINEAR, .seed = 5};
        rc = pl_lora_init(&l, m, &lc, err);
        if (!rc) rc = pl_train_attach_lora(t, l, err);
    }
    int32_t ids[T + 1];
    pl_qlora_opts qo = {.adamw = pl_adamw_defaults(), .max_grad_norm = 1.0f};
    qo.adamw.lr = 1e-2f;
    for (int s = 0; s < STEPS && !rc; s++) {
        for (int i = 0; i <= T; i++) ids[i] = (int32_t)((i * 13 + s * 101 + 7) % m->cfg.vocab);
        pl_microbatch mb = {ids, ids + 1, NULL, NULL, T};
        rc = pl_qlora_step(t, &mb, 1, &qo, &o->loss[s], NULL, err);
    }
    if (!rc) {
        size_t n = 0;
        if (full)
            for (int i = 0; i < t->n_params; i++) n += t->params[i].n;
        else
            for (int i = 0; i < l->n; i++) n += (size_t)l->mods[i].r * (size_t)(l->mods[i].in + l->mods[i].out);
        o->w = malloc(n * sizeof(float));
        o->n = n;
        size_t k = 0;
        if (full)
            for (int i = 0; i < t->n_params; i++) {
                memcpy(o->w + k, t->params[i].w, t->params[i].n * sizeof(float));
                k += t->params[i].n;
            }
        else
            for (int i = 0; i < l->n; i++) {
                size_t na = (size_t)l->mods[i].r * (size_t)l->mods[i].in, nb = (size_t)l->mods[i].r * l->mods[i].out;
                memcpy(o->w + k, l->mods[i].A, na * sizeof(float));
                memcpy(o->w + k + na, l->mods[i].B, nb * sizeof(float));
                k += na + nb;
            }
    }
    pl_train_free(t);
    pl_lora_free(l);
    pl_model_free(m);
    return rc;
}

static double norm_err(const float *a, const float *b, size_t n) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    return r > 0 ? sqrt(d / r) : sqrt(d);
}

static void compare(const char *what, int full, int chunk) {
    pl_err err = {0};
    run_out whole, ch, ch2;
    int rc = run(full, 0, &whole, &err);
    CHECK(rc == 0, "%s: whole run: %s", what, err.msg);
    rc = rc ? rc : run(full, chunk, &ch, &err);
    CHECK(rc == 0, "%s: chunked run (%d): %s", what, chunk, err.msg);
    if (rc) return;
    double wl = 0;
    for (int s = 0; s < STEPS; s++) {
        double d = fabs(ch.loss[s] - whole.loss[s]) / fabs(whole.loss[s]);
        if (d > wl) wl = d;
    }
    CHECK(fabs(ch.loss[0] - whole.loss[0]) <= 1e-6 * fabs(whole.loss[0]), "%s: the first forward's loss %.9g vs %.9g",
          what, ch.loss[0], whole.loss[0]);
    CHECK(wl <= 1e-5, "%s: step losses within %.3g relative", what, wl);
    double ne = norm_err(ch.w, whole.w, whole.n);
    CHECK(ch.n == whole.n && ne <= 1e-5, "%s: weights after %d steps, normalized error %.3g", what, STEPS, ne);
    printf("note: %s, chunks of %d of %d tokens: step losses within %.2g relative, weights after %d steps within "
           "%.2g normalized error (%s the whole run's bits)\n", what, chunk, T, wl, STEPS, ne,
           memcmp(ch.w, whole.w, whole.n * sizeof(float)) ? "not" : "exactly");
    rc = run(full, chunk, &ch2, &err);
    CHECK(rc == 0 && !memcmp(ch2.w, ch.w, ch.n * sizeof(float)), "%s: two chunked runs give the same bits", what);
    free(ch2.w);
    free(whole.w);
    free(ch.w);
}

int main(void) {
    snprintf(model_path, sizeof model_path, "%s/fixtures/stories260K/stories260K.bin", check_env("POTLUCK_SHARED"));
    compare("QLoRA NF4 r 8 all-linear, dropout 0.1", 0, 24); /* chunks of 24, 24, 16 rows */
    compare("full fp32 fine-tuning", 1, 16);
    /* a chunk as long as the row or longer: one chunk, the whole run's bits */
    pl_err err = {0};
    run_out a, b;
    int rc = run(0, 0, &a, &err);
    if (!rc) rc = run(0, 128, &b, &err);
    CHECK(rc == 0 && !memcmp(a.w, b.w, a.n * sizeof(float)), "a chunk of 128 on rows of 64: the unchunked bits (%s)",
          err.msg);
    if (!rc) {
        free(a.w);
        free(b.w);
    }
    /* refusals */
    pl_model *m = NULL;
    REQUIRE(pl_model_load(&m, model_path, NULL, &err) == 0, "load: %s", err.msg);
    pl_train *t = NULL;
    pl_train_opts o1 = {.frozen_base = 1, .checkpoint = 1, .mlp_chunk = 12};
    CHECK(pl_train_init_opts(&t, m, T, &o1, &err) == PL_EINVAL && strstr(err.msg, "multiple of 8"), "chunk 12: %s",
          err.msg);
    pl_train_opts o2 = {.frozen_base = 1, .checkpoint = 0, .mlp_chunk = 16};
    CHECK(pl_train_init_opts(&t, m, T, &o2, &err) == PL_EINVAL && strstr(err.msg, "checkpointing"),
          "chunks without checkpointing: %s", err.msg);
    pl_model_free(m);
    return check_summary("test_mlp_chunk");
}
