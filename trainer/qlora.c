/* qlora.c: the train-time side of LoRA: dropout masks and one QLoRA
 * optimizer step over micro-batches (the forward and backward through the
 * adapters are in train.c / train_backward.c).
 *
 * Dropout draws (core/rng.h, Philox keyed by the adapter seed): stream
 * mix(step, micro, layer, module), index e / 4 (word e % 4), so masks are a
 * pure function of (seed, step, micro-batch, layer, module, element) and
 * recomputation under checkpointing draws the same ones. */
#include "qlora.h"

#include <math.h>
#include <string.h>

#include "cpu/cpu_int.h"

#define LORA_STREAM_DROP 0x44726f7000000000ull /* "Drop" << 32 */

/* ------------------------------------------------------------ dropout */

static uint64_t mix64(uint64_t x) { /* splitmix64's finalizer */
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27; x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint64_t pl_lora_drop_stream(int step, int micro, int layer, pl_lin which) {
    return LORA_STREAM_DROP ^ mix64(mix64(mix64((uint64_t)(uint32_t)step) ^ (uint64_t)(uint32_t)micro) ^
                                    ((uint64_t)(uint32_t)layer * 8 + (uint64_t)which));
}

void pl_lora_dropout(const pl_lora *l, int step, int micro, int layer, pl_lin which, float *dst, const float *src,
                     int T, int cols) {
    pl_cpu_dropout(dst, src, (size_t)T * (size_t)cols, l->cfg.dropout, l->cfg.seed,
                   pl_lora_drop_stream(step, micro, layer, which), 0);
}

/* ------------------------------------------------------------ one QLoRA step */

int pl_qlora_step(pl_train *t, const pl_microbatch *mb, int n_mb, const pl_qlora_opts *o, double *loss,
                  double *grad_norm, pl_err *err) {
    if (n_mb > 0 && !t->lora && t->n_params == 0)
        return pl_err_set(err, PL_EINVAL, "qlora: nothing to train (no LoRA attached)");
    int rc = pl_train_accumulate(t, mb, n_mb, "qlora", loss, err);
    if (rc) return rc;
    double gn = pl_train_grad_norm(t);
    if (grad_norm) *grad_norm = gn;
    if (!isfinite(gn)) return pl_err_set(err, PL_ERANGE, "qlora: step %d: the gradient norm is %g", t->step + 1, gn);
    if (o->max_grad_norm > 0) {
        /* torch.nn.utils.clip_grad_norm_: coef = max / (norm + 1e-6), applied when < 1 */
        float coef = (float)((double)o->max_grad_norm / (gn + 1e-6));
        if (coef < 1.0f) pl_train_scale_grads(t, coef);
    }
    return pl_train_adamw(t, &o->adamw, err);
}
