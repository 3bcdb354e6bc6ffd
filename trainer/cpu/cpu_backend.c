/* cpu_backend.c: the CPU backend's op table and the memory accounting every backend shares. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../../core/error.h"
#include "cpu_int.h"

/* ------------------------------------------------------------ memory accounting
 *
 * Counters are per category, updated with atomics so any thread may allocate.
 * Peak is raised with a compare-and-swap loop after current grows. */

static size_t mem_cur[PL_MEM_NCAT], mem_peak[PL_MEM_NCAT];

static const char *const mem_names[PL_MEM_NCAT] = {
    "weights", "activations", "gradients", "optimizer", "workspace", "kvcache",
};

static int cat_ok(pl_mem_cat cat) { return (int)cat >= 0 && cat < PL_MEM_NCAT; }

size_t pl_mem_current(pl_mem_cat cat) {
    return cat_ok(cat) ? __atomic_load_n(&mem_cur[cat], __ATOMIC_RELAXED) : 0;
}

size_t pl_mem_peak(pl_mem_cat cat) {
    return cat_ok(cat) ? __atomic_load_n(&mem_peak[cat], __ATOMIC_RELAXED) : 0;
}

const char *pl_mem_cat_name(pl_mem_cat cat) { return cat_ok(cat) ? mem_names[cat] : "?"; }

void pl_mem_reset_peak(void) {
    for (int c = 0; c < PL_MEM_NCAT; c++)
        __atomic_store_n(&mem_peak[c], __atomic_load_n(&mem_cur[c], __ATOMIC_RELAXED), __ATOMIC_RELAXED);
}

static void mem_add(pl_mem_cat cat, size_t n) {
    size_t now = __atomic_add_fetch(&mem_cur[cat], n, __ATOMIC_RELAXED);
    size_t peak = __atomic_load_n(&mem_peak[cat], __ATOMIC_RELAXED);
    while (now > peak &&
           !__atomic_compare_exchange_n(&mem_peak[cat], &peak, now, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

static void mem_sub(pl_mem_cat cat, size_t n) { __atomic_sub_fetch(&mem_cur[cat], n, __ATOMIC_RELAXED); }

void pl_mem_note(pl_mem_cat cat, ptrdiff_t bytes) {
    if (!cat_ok(cat)) return;
    if (bytes >= 0) mem_add(cat, (size_t)bytes);
    else mem_sub(cat, (size_t)-bytes);
}

/* The header sits in the bytes just before the 64-byte aligned block; raw is
 * what calloc returned. The magic catches a pointer that did not come from
 * pl_cpu_alloc (or a double free) before the counters go wrong. */
#define MEM_ALIGN 64
#define MEM_MAGIC 0x706c6d656d484452ull /* "plmemHDR" */
#define MEM_DEAD 0x646561646d656d21ull

typedef struct mem_hdr {
    void *raw;
    size_t bytes;
    uint64_t magic;
    int cat;
} mem_hdr;

/* Zeroed, 64-byte aligned, tagged with cat; NULL when out of memory or cat is
 * not a category. calloc keeps huge blocks lazily zeroed (fresh mmap pages). */
void *pl_cpu_alloc(size_t bytes, pl_mem_cat cat) {
    size_t total;
    if (!cat_ok(cat) || !pl_add_ok(bytes, sizeof(mem_hdr) + MEM_ALIGN, &total)) return NULL;
    unsigned char *raw = calloc(1, total);
    if (!raw) return NULL;
    uintptr_t u = ((uintptr_t)raw + sizeof(mem_hdr) + MEM_ALIGN - 1) & ~(uintptr_t)(MEM_ALIGN - 1);
    mem_hdr *h = (mem_hdr *)u - 1;
    h->raw = raw;
    h->bytes = bytes;
    h->magic = MEM_MAGIC;
    h->cat = (int)cat;
    mem_add(cat, bytes);
    return (void *)u;
}

void pl_cpu_free(void *p) {
    if (!p) return;
    mem_hdr *h = (mem_hdr *)p - 1;
    if (h->magic != MEM_MAGIC || !cat_ok((pl_mem_cat)h->cat)) return; /* not ours: leave it */
    h->magic = MEM_DEAD;
    mem_sub((pl_mem_cat)h->cat, h->bytes);
    free(h->raw);
}

/* ------------------------------------------------------------------ op failures */

/* The first failure since the last pl_cpu_take_error: set once (the first
 * op thread to fail wins), read and cleared by the caller of the ops. */
static int fail_set;
static pl_err fail_err;

void pl_cpu_fail(int code, const char *fmt, ...) {
    int expect = 0;
    if (!__atomic_compare_exchange_n(&fail_set, &expect, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) return;
    va_list ap;
    va_start(ap, fmt);
    fail_err.code = code;
    vsnprintf(fail_err.msg, sizeof fail_err.msg, fmt, ap);
    va_end(ap);
    __atomic_store_n(&fail_set, 2, __ATOMIC_RELEASE);
}

int pl_cpu_take_error(pl_err *err) {
    if (__atomic_load_n(&fail_set, __ATOMIC_ACQUIRE) != 2) return 0;
    int code = fail_err.code;
    pl_err_set(err, code, "%s", fail_err.msg);
    __atomic_store_n(&fail_set, 0, __ATOMIC_RELEASE);
    return code;
}

/* ------------------------------------------------------------------ op table
 *
 * backend.h types activation buffers void * (their element type is the
 * backend's act_dtype); the CPU's ops work on floats, so the table holds
 * these adapters. Host and backend memory are the same here: upload,
 * download and copy are memcpy. */

static void cpu_copy(void *dst, const void *src, size_t bytes) {
    if (bytes && dst != src) memmove(dst, src, bytes);
}
static void cpu_zero(void *p, size_t bytes) {
    if (bytes) memset(p, 0, bytes);
}
static void cpu_act_to_f32(float *dst, const void *src, size_t n) { cpu_copy(dst, src, n * sizeof(float)); }
static void cpu_embedding(void *out, const int32_t *ids, const float *table, int T, int C) {
    pl_cpu_embedding(out, ids, table, T, C);
}
static void cpu_embedding_q(void *out, const int32_t *ids, const pl_qweight *table, int T) {
    pl_cpu_embedding_q(out, ids, table, T);
}
static void cpu_rmsnorm(void *out, const void *x, const float *w, int T, int C, float eps) {
    pl_cpu_rmsnorm(out, x, w, T, C, eps);
}
static void cpu_rope(void *x, const int32_t *pos, const float *inv_freq, int T, int nheads, int hd) {
    pl_cpu_rope(x, pos, inv_freq, T, nheads, hd);
}
static void cpu_attention(void *out, const void *q, const void *k, const void *v, const int32_t *qlast,
                          const int32_t *qseg, const int32_t *kseg, int Tq, int Tk, int nh, int nkv, int hd) {
    pl_cpu_attention(out, q, k, v, qlast, qseg, kseg, Tq, Tk, nh, nkv, hd);
}
static void cpu_swiglu(void *out, const void *gate, const void *up, int T, int H) { pl_cpu_swiglu(out, gate, up, T, H); }
static void cpu_linear(void *out, const void *x, const float *w, const float *bias, int T, int I, int O) {
    pl_cpu_linear(out, x, w, bias, T, I, O);
}
static void cpu_linear_q(void *out, const void *x, const pl_qweight *w, const float *bias, int T, void *ws) {
    pl_cpu_linear_q(out, x, w, bias, T, ws);
}
static void cpu_lora_fwd(void *y, void *xa, const void *u, const float *A, const float *B, int T, int I, int O, int r,
                         float scale, void *tmp) {
    pl_cpu_lora_fwd(y, xa, u, A, B, T, I, O, r, scale, tmp);
}
static void cpu_add(void *out, const void *a, const void *b, size_t n) { pl_cpu_add(out, a, b, n); }
static void cpu_dropout(void *dst, const void *src, size_t n, float p, uint64_t seed, uint64_t stream,
                        uint64_t first) {
    pl_cpu_dropout(dst, src, n, p, seed, stream, first);
}
static double cpu_cross_entropy(const void *logits, const int32_t *targets, int T, int V, float *losses,
                                int64_t *n_valid) {
    return pl_cpu_cross_entropy(logits, targets, T, V, losses, n_valid);
}
static void cpu_embedding_bwd(float *dtable, const int32_t *ids, const void *dout, int T, int C) {
    pl_cpu_embedding_bwd(dtable, ids, dout, T, C);
}
static void cpu_rmsnorm_bwd(void *dx, float *dw, const void *dout, const void *x, const float *w, int T, int C,
                            float eps) {
    pl_cpu_rmsnorm_bwd(dx, dw, dout, x, w, T, C, eps);
}
static void cpu_rope_bwd(void *d, const int32_t *pos, const float *inv_freq, int T, int nheads, int hd) {
    pl_cpu_rope_bwd(d, pos, inv_freq, T, nheads, hd);
}
static void cpu_attention_bwd(void *dq, void *dk, void *dv, const void *dout, const void *q, const void *k,
                              const void *v, const void *out, const int32_t *qlast, const int32_t *qseg,
                              const int32_t *kseg, int Tq, int Tk, int nh, int nkv, int hd) {
    pl_cpu_attention_bwd(dq, dk, dv, dout, q, k, v, out, qlast, qseg, kseg, Tq, Tk, nh, nkv, hd);
}
static void cpu_swiglu_bwd(void *dgate, void *dup, const void *dout, const void *gate, const void *up, int T, int H) {
    pl_cpu_swiglu_bwd(dgate, dup, dout, gate, up, T, H);
}
static void cpu_linear_bwd(void *dx, float *dw, float *dbias, const void *dout, const void *x, const float *w, int T,
                           int I, int O) {
    pl_cpu_linear_bwd(dx, dw, dbias, dout, x, w, T, I, O);
}
static void cpu_linear_q_bwd_x(void *dx, const void *dout, const pl_qweight *w, int T, void *ws) {
    pl_cpu_linear_q_bwd_x(dx, dout, w, T, ws);
}
static void cpu_lora_bwd(void *dx, int accumulate, float *gA, float *gB, const void *dout, const void *u,
                         const void *xa, const float *A, const float *B, int T, int I, int O, int r, float scale,
                         void *tmp, void *dxa, void *du) {
    pl_cpu_lora_bwd(dx, accumulate, gA, gB, dout, u, xa, A, B, T, I, O, r, scale, tmp, dxa, du);
}
static void cpu_cross_entropy_bwd(void *dlogits, const void *logits, const int32_t *targets, int T, int V,
                                  float scale) {
    pl_cpu_cross_entropy_bwd(dlogits, logits, targets, T, V, scale);
}

static const pl_backend cpu_backend = {
    .name = "cpu",
    .act_dtype = PL_F32,
    .host_memory = 1,
    .alloc = pl_cpu_alloc,
    .free = pl_cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .copy = cpu_copy,
    .zero = cpu_zero,
    .act_to_f32 = cpu_act_to_f32,
    .release_weights = NULL,
    .embedding = cpu_embedding,
    .embedding_q = cpu_embedding_q,
    .rmsnorm = cpu_rmsnorm,
    .rope = cpu_rope,
    .attention = cpu_attention,
    .swiglu = cpu_swiglu,
    .linear = cpu_linear,
    .linear_q = cpu_linear_q,
    .lora_fwd = cpu_lora_fwd,
    .add = cpu_add,
    .dropout = cpu_dropout,
    .cross_entropy = cpu_cross_entropy,
    .lm_head_ce = NULL,
    .lm_head_ce_bwd = NULL,
    .embedding_bwd = cpu_embedding_bwd,
    .rmsnorm_bwd = cpu_rmsnorm_bwd,
    .rope_bwd = cpu_rope_bwd,
    .attention_bwd = cpu_attention_bwd,
    .swiglu_bwd = cpu_swiglu_bwd,
    .linear_bwd = cpu_linear_bwd,
    .linear_q_bwd_x = cpu_linear_q_bwd_x,
    .lora_bwd = cpu_lora_bwd,
    .cross_entropy_bwd = cpu_cross_entropy_bwd,
    .sumsq = pl_cpu_sumsq,
    .scale = pl_cpu_scale,
    .adamw = pl_cpu_adamw,
    .take_error = pl_cpu_take_error,
};

const pl_backend *pl_backend_cpu(void) { return &cpu_backend; }
