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

#include "../core/rng.h"

#define LORA_STREAM_DROP 0x44726f7000000000ull /* "Drop" << 32 */

/* ------------------------------------------------------------ dropout */

static uint64_t mix64(uint64_t x) { /* splitmix64's finalizer */
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27; x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

void pl_lora_dropout(const pl_lora *l, int step, int micro, int layer, pl_lin which, float *dst, const float *src,
                     int T, int cols) {
    const size_t n = (size_t)T * (size_t)cols;
    const float p = l->cfg.dropout;
    if (!(p > 0)) {
        if (dst != src) memcpy(dst, src, n * sizeof(float));
        return;
    }
    const uint64_t seed = l->cfg.seed;
    const uint64_t stream = LORA_STREAM_DROP ^ mix64(mix64(mix64((uint64_t)(uint32_t)step) ^ (uint64_t)(uint32_t)micro) ^
                                                     ((uint64_t)(uint32_t)layer * 8 + (uint64_t)which));
    /* An element is dropped when a 16-bit draw is below p * 65536 (p is
     * resolved to 1/65536): each Philox call (four 32-bit words) serves a
     * group of 8 elements, owned by one thread. */
    const double thr_d = (double)p * 65536.0 + 0.5;
    const uint32_t thr = thr_d >= 65535.0 ? 65535u : (uint32_t)thr_d;
    const float keep_scale = 1.0f / (1.0f - p);
    const long ngroups = (long)((n + 7) / 8);
#pragma omp parallel for schedule(static) if (ngroups >= 2048)
    for (long g = 0; g < ngroups; g++) {
        uint32_t w[4];
        pl_philox(seed, stream, (uint64_t)g, w);
        for (int k = 0; k < 8; k++) {
            size_t e = (size_t)g * 8 + (size_t)k;
            if (e >= n) break;
            uint32_t u = (w[k >> 1] >> ((k & 1) * 16)) & 0xffffu;
            dst[e] = u >= thr ? src[e] * keep_scale : 0.0f;
        }
    }
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
