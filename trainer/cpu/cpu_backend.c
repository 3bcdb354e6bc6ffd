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

/* ------------------------------------------------------------------ op table */

static const pl_backend cpu_backend = {
    .name = "cpu",
    .alloc = pl_cpu_alloc,
    .free = pl_cpu_free,
    .embedding = pl_cpu_embedding,
    .rmsnorm = pl_cpu_rmsnorm,
    .rope = pl_cpu_rope,
    .attention = pl_cpu_attention,
    .swiglu = pl_cpu_swiglu,
    .linear = pl_cpu_linear,
    .linear_q = pl_cpu_linear_q,
    .add = pl_cpu_add,
    .cross_entropy = pl_cpu_cross_entropy,
    .embedding_bwd = pl_cpu_embedding_bwd,
    .rmsnorm_bwd = pl_cpu_rmsnorm_bwd,
    .rope_bwd = pl_cpu_rope_bwd,
    .attention_bwd = pl_cpu_attention_bwd,
    .swiglu_bwd = pl_cpu_swiglu_bwd,
    .linear_bwd = pl_cpu_linear_bwd,
    .linear_q_bwd_x = pl_cpu_linear_q_bwd_x,
    .cross_entropy_bwd = pl_cpu_cross_entropy_bwd,
    .sumsq = pl_cpu_sumsq,
    .scale = pl_cpu_scale,
    .adamw = pl_cpu_adamw,
    .take_error = pl_cpu_take_error,
};

const pl_backend *pl_backend_cpu(void) { return &cpu_backend; }
