/* emu_sched.cpp: CUDA threads as fibers, the block scheduler, barriers and
 * warp operations.
 *
 * A launch runs its blocks one after another on the calling thread. For each
 * block, every CUDA thread gets a fiber (its own stack, reused across blocks
 * and launches) and the scheduler loop below drives them:
 *
 *   1. resume every runnable fiber, in an order shuffled by the block's
 *      generator (seeded from the emulator seed, the launch number and the
 *      block index), until each waits at a barrier or a warp operation, or
 *      has returned;
 *   2. complete every warp operation whose participants (the non-exited lanes
 *      of its mask) have all arrived with the same operation and mask: the
 *      lanes get their results and become runnable;
 *   3. otherwise, when every live thread waits at a barrier, release them;
 *   4. otherwise the block can never finish: the launch fails, naming the
 *      kernel, the block and what each waiting thread waits for.
 *
 * Fibers switch with a few instructions of assembly on x86-64 (ucontext
 * elsewhere) and tell AddressSanitizer about every stack switch. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <mutex>
#include <string>
#include <vector>
#include "emu_int.h"

#if defined(__SANITIZE_ADDRESS__)
#define PL_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PL_EMU_ASAN 1
#endif
#endif
#ifdef PL_EMU_ASAN
extern "C" {
void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom, size_t size);
void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old, size_t *size_old);
void __asan_unpoison_memory_region(void const volatile *addr, size_t size);
}
#endif

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

__thread uint3 threadIdx, blockIdx;
__thread dim3 blockDim, gridDim;

/* ---- context switch -------------------------------------------------------------- */
#if defined(__x86_64__)
/* pl_emu_ctx_switch(save, load): push the callee-saved registers, store rsp
 * in *save, load rsp from load, pop and return into the other context. A new
 * context starts in pl_emu_ctx_start, which calls r13(r12). The SSE and x87
 * control words (MXCSR, FPU CW) are not switched: every fiber runs with the
 * launching thread's, and no kernel changes the rounding mode or the
 * exception masks. Loading them at every switch (ldmxcsr, fldcw) made the
 * emulated training and generation tests about a fifth slower: they spend
 * most of their time switching. */
extern "C" void pl_emu_ctx_switch(void **save, void *load);
extern "C" void pl_emu_ctx_start(void);
asm(R"(
    .pushsection .text
    .p2align 4
    .globl pl_emu_ctx_switch
    .hidden pl_emu_ctx_switch
    .type pl_emu_ctx_switch,@function
pl_emu_ctx_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size pl_emu_ctx_switch,.-pl_emu_ctx_switch
    .p2align 4
    .globl pl_emu_ctx_start
    .hidden pl_emu_ctx_start
    .type pl_emu_ctx_start,@function
pl_emu_ctx_start:
    movq %r12, %rdi
    callq *%r13
    ud2
    .size pl_emu_ctx_start,.-pl_emu_ctx_start
    .popsection
)");
struct ctx_t { void *sp; };
static void ctx_make(ctx_t *c, char *stack, size_t size, void (*fn)(void *), void *arg) {
    uintptr_t top = ((uintptr_t)stack + size) & ~(uintptr_t)15;
    uint64_t *sp = (uint64_t *)(top - 64);
    sp[0] = 0;                        /* padding: keeps rsp 16-byte aligned at the call */
    sp[1] = 0;                        /* r15 */
    sp[2] = 0;                        /* r14 */
    sp[3] = (uint64_t)(uintptr_t)fn;  /* r13 */
    sp[4] = (uint64_t)(uintptr_t)arg; /* r12 */
    sp[5] = 0;                        /* rbx */
    sp[6] = 0;                        /* rbp */
    sp[7] = (uint64_t)(uintptr_t)pl_emu_ctx_start;
    c->sp = sp;
}
static inline void ctx_switch(ctx_t *from, ctx_t *to) { pl_emu_ctx_switch(&from->sp, to->sp); }
#else
struct ctx_t { ucontext_t uc; };
static void (*g_uc_fn)(void *);
static void uc_entry(unsigned lo, unsigned hi) {
    void *arg = (void *)(((uintptr_t)hi << 32) | lo);
    g_uc_fn(arg);
}
static void ctx_make(ctx_t *c, char *stack, size_t size, void (*fn)(void *), void *arg) {
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = stack;
    c->uc.uc_stack.ss_size = size;
    c->uc.uc_link = nullptr;
    g_uc_fn = fn;
    uintptr_t a = (uintptr_t)arg;
    makecontext(&c->uc, (void (*)())uc_entry, 2, (unsigned)(a & 0xffffffffu), (unsigned)(a >> 32));
}
static inline void ctx_switch(ctx_t *from, ctx_t *to) { swapcontext(&from->uc, &to->uc); }
#endif

namespace {

enum fstate { F_RUN, F_BAR, F_WARP, F_DONE };

struct fiber {
    ctx_t ctx;
    char *stack;
    int state;
    unsigned lin; /* linear thread index in the block */
    uint3 tid;
    /* the operation it waits in, and its result */
    int kind;
    unsigned mask;
    uint64_t value;
    int arg, width;
    uint64_t result;
#ifdef PL_EMU_ASAN
    void *fake_stack;
#endif
};

struct block_state {
    const pl_emu::launch_cfg *cfg;
    pl_emu::body_fn body;
    void *body_ctx;
    fiber *f;
    unsigned n;
    ctx_t sched;
    fiber *cur;
    std::string error;
#ifdef PL_EMU_ASAN
    const void *main_bottom;
    size_t main_size;
#endif
};

std::mutex g_launch_mu;
thread_local block_state *g_blk;
uint64_t g_seed;
bool g_seed_set;
uint64_t g_launches, g_switches;
std::vector<fiber> g_fibers;
std::vector<char *> g_stacks;
size_t g_stack_size;
std::vector<unsigned char> g_dyn_shared;

uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

size_t stack_size() {
    if (!g_stack_size) {
        const char *e = getenv("PL_EMU_STACK_KB");
        long kb = e ? atol(e) : 0;
#ifdef PL_EMU_ASAN
        if (kb <= 0) kb = 256;
#else
        if (kb <= 0) kb = 128;
#endif
        g_stack_size = (size_t)kb << 10;
    }
    return g_stack_size;
}

/* A stack with a guard page below it; reserved lazily (MAP_NORESERVE). */
char *stack_get(unsigned i) {
    while (g_stacks.size() <= i) {
        size_t sz = stack_size() + 4096;
        void *m = mmap(nullptr, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) {
            fprintf(stderr, "pl-emu: cannot map a fiber stack of %zu bytes\n", sz);
            abort();
        }
        mprotect(m, 4096, PROT_NONE);
        g_stacks.push_back((char *)m + 4096);
    }
    return g_stacks[i];
}

/* Static __shared__ variables live in this section (emu.h); the linker
 * defines its bounds. Weak: a program with none has no section. */
extern "C" char __start_pl_emu_shared[] __attribute__((weak));
extern "C" char __stop_pl_emu_shared[] __attribute__((weak));

/* Fill with 0xff (NaN as float), before every block. Under ASan not through
 * memset, which ASan checks against the redzones it may have put between the
 * variables: 8-byte stores in an uninstrumented loop (volatile, so that the
 * compiler does not turn it back into memset). Elsewhere memset: the byte
 * loop took a third of the scheduler's time on a 25 KB static section. */
#ifdef PL_EMU_ASAN
__attribute__((no_sanitize_address)) void poison_fill(unsigned char *p, size_t n) {
    size_t i = 0;
    for (; i < n && ((uintptr_t)(p + i) & 7); i++) ((volatile unsigned char *)p)[i] = 0xff;
    for (; i + 8 <= n; i += 8) *(volatile uint64_t *)(void *)(p + i) = ~(uint64_t)0;
    for (; i < n; i++) ((volatile unsigned char *)p)[i] = 0xff;
}
#else
void poison_fill(unsigned char *p, size_t n) { memset(p, 0xff, n); }
#endif

void to_fiber(block_state *b, fiber *f) {
    b->cur = f;
    threadIdx = f->tid;
    g_switches++;
#ifdef PL_EMU_ASAN
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, f->stack, stack_size());
    ctx_switch(&b->sched, &f->ctx);
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
    ctx_switch(&b->sched, &f->ctx);
#endif
    b->cur = nullptr;
}

/* From the running fiber back to the scheduler; returns when resumed. */
void to_sched(block_state *b, fiber *f, bool dying) {
#ifdef PL_EMU_ASAN
    __sanitizer_start_switch_fiber(dying ? nullptr : &f->fake_stack, b->main_bottom, b->main_size);
    ctx_switch(&f->ctx, &b->sched);
    __sanitizer_finish_switch_fiber(f->fake_stack, nullptr, nullptr);
#else
    (void)dying;
    ctx_switch(&f->ctx, &b->sched);
#endif
}

void fiber_main(void *arg) {
    fiber *f = static_cast<fiber *>(arg);
    block_state *b = g_blk;
#ifdef PL_EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &b->main_bottom, &b->main_size);
#endif
    b->body(b->body_ctx);
    f->state = F_DONE;
    to_sched(b, f, true);
    __builtin_trap(); /* a finished fiber is never resumed */
}

const char *kind_name(int k) {
    switch (k) {
    case pl_emu::W_SHFL: return "__shfl_sync";
    case pl_emu::W_SHFL_UP: return "__shfl_up_sync";
    case pl_emu::W_SHFL_DOWN: return "__shfl_down_sync";
    case pl_emu::W_SHFL_XOR: return "__shfl_xor_sync";
    case pl_emu::W_BALLOT: return "__ballot_sync";
    case pl_emu::W_ANY: return "__any_sync";
    case pl_emu::W_ALL: return "__all_sync";
    case pl_emu::W_SYNC: return "__syncwarp";
    }
    return "?";
}

std::string fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char *f, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}

/* The source lane of a shuffle for lane l, or -1 when it reads its own value. */
int shfl_src(int kind, int l, int arg, int width) {
    int base = l & ~(width - 1), in = l - base;
    switch (kind) {
    case pl_emu::W_SHFL: return base + (arg & (width - 1));
    case pl_emu::W_SHFL_UP: return in - arg < 0 ? -1 : l - arg;
    case pl_emu::W_SHFL_DOWN: return in + arg >= width ? -1 : l + arg;
    case pl_emu::W_SHFL_XOR: {
        int s = l ^ arg;
        return s >= base + width || s < 0 ? -1 : s;
    }
    }
    return -1;
}

/* Step 2 for warp w: completes every group whose participants have all
 * arrived. Returns 1 when something completed; sets b->error on a misuse. */
int resolve_warp(block_state *b, unsigned w) {
    const unsigned l0 = w * 32, l1 = l0 + 32 < b->n ? l0 + 32 : b->n;
    int progress = 0;
    for (unsigned i = l0; i < l1; i++) {
        fiber *fi = &b->f[i];
        if (fi->state != F_WARP) continue;
        const unsigned mask = fi->mask;
        const int lane = (int)(i - l0);
        if (!(mask >> lane & 1u)) {
            b->error = fmt("thread %u (warp %u lane %d) calls %s with mask 0x%08x, which does not name its own lane",
                           i, w, lane, kind_name(fi->kind), mask);
            return 0;
        }
        if (fi->kind <= pl_emu::W_SHFL_XOR && (fi->width < 1 || fi->width > 32 || (fi->width & (fi->width - 1)))) {
            b->error = fmt("thread %u calls %s with width %d: expected a power of two up to 32", i,
                           kind_name(fi->kind), fi->width);
            return 0;
        }
        /* participants: the lanes of mask that exist and have not exited */
        unsigned part = 0;
        bool ready = true;
        for (unsigned j = l0; j < l1; j++) {
            if (!(mask >> (j - l0) & 1u) || b->f[j].state == F_DONE) continue;
            part |= 1u << (j - l0);
            const fiber *fj = &b->f[j];
            if (fj->state != F_WARP) {
                ready = false;
                continue;
            }
            if (fj->kind != fi->kind || fj->mask != mask || (fi->kind <= pl_emu::W_SHFL_XOR && fj->width != fi->width)) {
                b->error = fmt("warp %u: lane %d waits in %s (mask 0x%08x, width %d) while lane %u waits in %s "
                               "(mask 0x%08x, width %d)",
                               w, lane, kind_name(fi->kind), mask, fi->width, j - l0, kind_name(fj->kind), fj->mask,
                               fj->width);
                return 0;
            }
        }
        if (!ready) continue;
        unsigned ballot = 0;
        for (unsigned j = l0; j < l1; j++)
            if (part >> (j - l0) & 1u && b->f[j].value) ballot |= 1u << (j - l0);
        for (unsigned j = l0; j < l1; j++) {
            if (!(part >> (j - l0) & 1u)) continue;
            fiber *fj = &b->f[j];
            switch (fj->kind) {
            case pl_emu::W_BALLOT: fj->result = ballot; break;
            case pl_emu::W_ANY: fj->result = ballot != 0; break;
            case pl_emu::W_ALL: fj->result = ballot == part; break;
            case pl_emu::W_SYNC: fj->result = 0; break;
            default: {
                int s = shfl_src(fj->kind, (int)(j - l0), fj->arg, fj->width);
                if (s < 0) fj->result = fj->value;
                else if (s < 32 && (part >> s & 1u)) fj->result = b->f[l0 + (unsigned)s].value;
                else fj->result = ~0ull; /* a lane outside the mask or exited: undefined, poison */
            }
            }
        }
        for (unsigned j = l0; j < l1; j++)
            if (part >> (j - l0) & 1u) b->f[j].state = F_RUN;
        progress = 1;
    }
    return progress;
}

std::string describe_waits(block_state *b) {
    /* one example thread per kind of wait, with how many wait so */
    std::string s;
    unsigned nb = 0, first_b = 0, nw = 0, first_w = 0;
    for (unsigned i = 0; i < b->n; i++) {
        if (b->f[i].state == F_BAR && !nb++) first_b = i;
        if (b->f[i].state == F_WARP && !nw++) first_w = i;
    }
    if (nb) s += fmt("; %u threads wait at __syncthreads (first: thread %u)", nb, first_b);
    if (nw)
        s += fmt("; %u threads wait in warp operations (first: thread %u in %s, mask 0x%08x)", nw, first_w,
                 kind_name(b->f[first_w].kind), b->f[first_w].mask);
    return s;
}

/* Runs one block to its end; false (b->error set) when it cannot finish. */
bool run_block(block_state *b, uint64_t rng) {
    std::vector<unsigned> order;
    order.reserve(b->n);
    unsigned live = b->n;
    while (live > 0) {
        order.clear();
        for (unsigned i = 0; i < b->n; i++)
            if (b->f[i].state == F_RUN) order.push_back(i);
        if (!order.empty()) {
            for (size_t k = order.size(); k > 1; k--) { /* Fisher-Yates */
                size_t r = (size_t)(splitmix(&rng) % k);
                unsigned t = order[k - 1];
                order[k - 1] = order[r];
                order[r] = t;
            }
            for (unsigned i : order) {
                to_fiber(b, &b->f[i]);
                if (b->f[i].state == F_DONE) live--;
            }
            continue;
        }
        int progress = 0;
        for (unsigned w = 0; w * 32 < b->n; w++) {
            progress |= resolve_warp(b, w);
            if (!b->error.empty()) return false;
        }
        if (progress) continue;
        unsigned at_bar = 0, cnt = 0;
        for (unsigned i = 0; i < b->n; i++)
            if (b->f[i].state == F_BAR) {
                at_bar++;
                cnt += b->f[i].value != 0;
            }
        if (at_bar == live) {
            for (unsigned i = 0; i < b->n; i++) {
                fiber *f = &b->f[i];
                if (f->state != F_BAR) continue;
                switch (f->kind) {
                case pl_emu::B_COUNT: f->result = cnt; break;
                case pl_emu::B_AND: f->result = cnt == live; break;
                case pl_emu::B_OR: f->result = cnt != 0; break;
                default: f->result = 0;
                }
                f->state = F_RUN;
            }
            continue;
        }
        b->error = fmt("deadlock: %u of %u live threads wait at __syncthreads, the others in warp operations that "
                       "cannot complete%s",
                       at_bar, live, describe_waits(b).c_str());
        return false;
    }
    return true;
}

block_state *current(const char *what) {
    block_state *b = g_blk;
    if (!b || !b->cur) pl_emu::fatal_outside_kernel(what);
    return b;
}

} /* namespace */

namespace pl_emu {

void fatal_outside_kernel(const char *what) {
    fprintf(stderr, "pl-emu: %s called outside a kernel launch\n", what);
    abort();
}

uint64_t env_seed() {
    const char *e = getenv("PL_EMU_SEED");
    return e && *e ? strtoull(e, nullptr, 0) : 1;
}

int barrier(int kind, int pred) {
    block_state *b = current("__syncthreads");
    fiber *f = b->cur;
    f->state = F_BAR;
    f->kind = kind;
    f->value = (uint64_t)pred;
    to_sched(b, f, false);
    return (int)f->result;
}

uint64_t warp_op(int kind, unsigned mask, uint64_t value, int arg, int width) {
    block_state *b = current(kind_name(kind));
    fiber *f = b->cur;
    f->state = F_WARP;
    f->kind = kind;
    f->mask = mask;
    f->value = value;
    f->arg = arg;
    f->width = width;
    to_sched(b, f, false);
    return f->result;
}

unsigned active_mask() {
    block_state *b = current("__activemask");
    unsigned l = b->cur->lin, l0 = l & ~31u, m = 0;
    for (unsigned j = l0; j < l0 + 32 && j < b->n; j++)
        if (b->f[j].state != F_DONE) m |= 1u << (j - l0);
    return m;
}

void *dynamic_shared() {
    current("dynamic shared memory");
    return g_dyn_shared.data();
}

cudaError_t run_grid(const launch_cfg &cfg, body_fn body, void *ctx) {
    const dim3 g = cfg.grid, bl = cfg.block;
    const uint64_t nthreads = (uint64_t)bl.x * bl.y * bl.z;
    if (!stream_valid(cfg.stream)) {
        set_error(cudaErrorInvalidResourceHandle, fmt("kernel %s: invalid stream", cfg.name).c_str());
        return cudaErrorInvalidResourceHandle;
    }
    if (nthreads == 0 || nthreads > 1024 || bl.x > 1024 || bl.y > 1024 || bl.z > 64 || g.x == 0 || g.y == 0 ||
        g.z == 0 || g.x > 2147483647u || g.y > 65535 || g.z > 65535) {
        std::string m = fmt("kernel %s: invalid configuration: grid (%u,%u,%u) block (%u,%u,%u)", cfg.name, g.x, g.y,
                            g.z, bl.x, bl.y, bl.z);
        set_error(cudaErrorInvalidConfiguration, m.c_str());
        return cudaErrorInvalidConfiguration;
    }
    if (cfg.shmem > max_dynamic_shared(cfg.func)) {
        std::string m = fmt("kernel %s: %zu bytes of dynamic shared memory requested, the limit is %zu (raise it "
                            "with cudaFuncSetAttribute)",
                            cfg.name, cfg.shmem, max_dynamic_shared(cfg.func));
        set_error(cudaErrorInvalidValue, m.c_str());
        return cudaErrorInvalidValue;
    }
    std::lock_guard<std::mutex> lk(g_launch_mu);
    if (!g_seed_set) {
        g_seed = env_seed();
        g_seed_set = true;
    }
    const uint64_t launch_no = g_launches++;
    const unsigned n = (unsigned)nthreads;
    if (g_fibers.size() < n) g_fibers.resize(n);
    for (unsigned i = 0; i < n; i++) stack_get(i);
    g_dyn_shared.assign(cfg.shmem ? cfg.shmem : 16, 0xff);

    block_state b;
    b.cfg = &cfg;
    b.body = body;
    b.body_ctx = ctx;
    b.f = g_fibers.data();
    b.n = n;
    b.cur = nullptr;
#ifdef PL_EMU_ASAN
    b.main_bottom = nullptr;
    b.main_size = 0;
#endif
    block_state *saved = g_blk;
    const uint3 saved_tid = threadIdx, saved_bid = blockIdx;
    const dim3 saved_bdim = blockDim, saved_gdim = gridDim;
    g_blk = &b;
    blockDim = bl;
    gridDim = g;
    bool ok = true;
    unsigned char *sh0 = (unsigned char *)__start_pl_emu_shared, *sh1 = (unsigned char *)__stop_pl_emu_shared;
    for (unsigned bz = 0; bz < g.z && ok; bz++)
        for (unsigned by = 0; by < g.y && ok; by++)
            for (unsigned bx = 0; bx < g.x && ok; bx++) {
                blockIdx = uint3{bx, by, bz};
                if (sh0 && sh1 > sh0) poison_fill(sh0, (size_t)(sh1 - sh0));
                poison_fill(g_dyn_shared.data(), g_dyn_shared.size());
                for (unsigned i = 0; i < n; i++) {
                    fiber *f = &b.f[i];
                    f->stack = g_stacks[i];
                    f->state = F_RUN;
                    f->lin = i;
                    f->tid = uint3{i % bl.x, (i / bl.x) % bl.y, i / (bl.x * bl.y)};
                    f->kind = 0;
                    f->result = 0;
#ifdef PL_EMU_ASAN
                    f->fake_stack = nullptr;
#endif
                    ctx_make(&f->ctx, f->stack, stack_size(), fiber_main, f);
                }
                uint64_t rng = g_seed * 0x9e3779b97f4a7c15ull ^ (launch_no << 32) ^
                               (((uint64_t)bz * g.y + by) * g.x + bx);
                if (!run_block(&b, rng)) {
                    ok = false;
                    std::string m = fmt("kernel %s: block (%u,%u,%u) of grid (%u,%u,%u), block size (%u,%u,%u): %s",
                                        cfg.name, bx, by, bz, g.x, g.y, g.z, bl.x, bl.y, bl.z, b.error.c_str());
                    set_error(cudaErrorLaunchFailure, m.c_str());
#ifdef PL_EMU_ASAN
                    /* the abandoned fibers' frames stay poisoned: clear their stacks */
                    for (unsigned i = 0; i < n; i++) __asan_unpoison_memory_region(g_stacks[i], stack_size());
#endif
                }
            }
    g_blk = saved;
    threadIdx = saved_tid;
    blockIdx = saved_bid;
    blockDim = saved_bdim;
    gridDim = saved_gdim;
    return ok ? cudaSuccess : cudaErrorLaunchFailure;
}

} /* namespace pl_emu */

extern "C" {
void pl_emu_set_seed(uint64_t seed) {
    std::lock_guard<std::mutex> lk(g_launch_mu);
    g_seed = seed;
    g_seed_set = true;
}
uint64_t pl_emu_seed(void) {
    std::lock_guard<std::mutex> lk(g_launch_mu);
    if (!g_seed_set) {
        g_seed = pl_emu::env_seed();
        g_seed_set = true;
    }
    return g_seed;
}
uint64_t pl_emu_launches(void) { return g_launches; }
uint64_t pl_emu_switches(void) { return g_switches; }
}
