/* gpu_bench.c: each launcher of trainer/cuda/ (cuda_ops.h) timed with CUDA
 * events, its achieved GB/s (memory-bound kernels) or TFLOP/s (GEMMs,
 * attention, the fused LM head) against the device's peak. Run by
 * bench/gpu.sh: built with nvcc (-DPL_CUDA_REAL) on a machine with a GPU,
 * or for the CPU emulator (make build/opt/bench/gpu_bench) with --tiny
 * shapes, where the times are the emulator's and not a measurement.
 *
 *   gpu_bench [--tiny] [--iters N]
 *   gpu_bench --peak [NAME]   the device and peak lines only (NAME: the table's
 *                             entry for that device name instead of this device's)
 *
 * Bytes and FLOPs are the kernel's minimum traffic / useful work (each
 * input read once, each output written once; 2 FLOPs per multiply-add,
 * causal attention half of the full score matrix), not what it really moves. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../trainer/cuda/cuda_ops.h"
#ifdef PL_CUDA_REAL
#include <cuda_runtime_api.h>
#else
#include "../trainer/cuda/emu/emu_runtime.h"
#endif

static int g_iters = 10, g_emulated;
static double g_peak_gbs, g_peak_tflops; /* 0: unknown */

static void *dmalloc(size_t bytes) {
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
        fprintf(stderr, "gpu_bench: cudaMalloc(%zu) failed\n", bytes);
        exit(1);
    }
    return p;
}
static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float frand(void) {
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((g_rng >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}
static uint16_t to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}
/* n bf16 values in [-s, s) on the device */
static pl_bf16 *dbf16(size_t n, float s) {
    uint16_t *h = malloc(n * 2 + 2);
    for (size_t i = 0; i < n; i++) h[i] = to_bf16(frand() * s);
    pl_bf16 *d = dmalloc(n * 2);
    cudaMemcpy(d, h, n * 2, cudaMemcpyHostToDevice);
    free(h);
    return d;
}
static float *df32(size_t n, float s) {
    float *h = malloc(n * 4 + 4);
    for (size_t i = 0; i < n; i++) h[i] = frand() * s;
    float *d = dmalloc(n * 4);
    cudaMemcpy(d, h, n * 4, cudaMemcpyHostToDevice);
    free(h);
    return d;
}
static int32_t *di32(size_t n, int32_t (*f)(size_t i, void *ctx), void *ctx) {
    int32_t *h = malloc(n * 4 + 4);
    for (size_t i = 0; i < n; i++) h[i] = f(i, ctx);
    int32_t *d = dmalloc(n * 4);
    cudaMemcpy(d, h, n * 4, cudaMemcpyHostToDevice);
    free(h);
    return d;
}
static int32_t idx_mod(size_t i, void *ctx) { return (int32_t)((i * 7919u + 13u) % (size_t)*(int *)ctx); }
static int32_t idx_self(size_t i, void *ctx) { (void)ctx; return (int32_t)i; }
static int32_t idx_zero(size_t i, void *ctx) { (void)ctx, (void)i; return 0; }

/* Times run() (one warm-up, then g_iters) and prints a row. bytes or flops (the other 0). */
typedef int (*bench_fn)(void *ctx);
static void row(const char *name, const char *shape, bench_fn run, void *ctx, double bytes, double flops) {
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    int err = run(ctx);
    cudaDeviceSynchronize();
    cudaEventRecord(e0, 0);
    for (int i = 0; i < g_iters && !err; i++) err = run(ctx);
    cudaEventRecord(e1, 0);
    cudaError_t se = cudaEventSynchronize(e1);
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    if (err || se != cudaSuccess) {
        printf("%-18s %-30s FAILED (%d, %s)\n", name, shape, err, cudaGetErrorString(se));
        return;
    }
    double s = ms * 1e-3 / g_iters;
    char ach[32], pk[32] = "-";
    if (flops > 0) {
        snprintf(ach, sizeof ach, "%.3g TFLOP/s", flops / s * 1e-12);
        if (g_peak_tflops > 0) snprintf(pk, sizeof pk, "%.1f%% of %g", 100 * flops / s * 1e-12 / g_peak_tflops, g_peak_tflops);
    } else {
        snprintf(ach, sizeof ach, "%.3g GB/s", bytes / s * 1e-9);
        if (g_peak_gbs > 0) snprintf(pk, sizeof pk, "%.1f%% of %g", 100 * bytes / s * 1e-9 / g_peak_gbs, g_peak_gbs);
    }
    printf("%-18s %-30s %12.1f  %-16s %s%s\n", name, shape, s * 1e6, ach, pk, g_emulated ? "  (emulated)" : "");
}

/* Peaks from the spec sheets (bf16 tensor cores, dense, fp32 accumulate;
 * memory bandwidth), for devices whose properties do not give them. */
static const struct { const char *name; double gbs, tflops; } k_peaks[] = {
    {"H200", 4800, 989}, {"H100 PCIe", 2000, 756}, {"H100", 3350, 989}, {"A100-SXM4-40GB", 1555, 312},
    {"A100-PCIE-40GB", 1555, 312}, {"A100", 2039, 312}, {"RTX 4090", 1008, 165}, {"RTX 3090", 936, 71},
    {"RTX A5000", 768, 111}, {"L4", 300, 121},
};

/* The peaks of this device, or of the table's entry for the device name as
 * (bench/gpu_train.sh's dry run: the emulator has no peak of its own). */
static void device_peaks(const char *as) {
    struct cudaDeviceProp p;
    memset(&p, 0, sizeof p);
    cudaGetDeviceProperties(&p, 0);
    char own[sizeof p.name];
    snprintf(own, sizeof own, "%s", p.name);
    if (as) snprintf(p.name, sizeof p.name, "%s", as);
    for (size_t i = 0; i < sizeof k_peaks / sizeof k_peaks[0]; i++)
        if (strstr(p.name, k_peaks[i].name)) {
            g_peak_gbs = k_peaks[i].gbs, g_peak_tflops = k_peaks[i].tflops;
            break;
        }
#ifdef PL_CUDA_REAL
    int clock_khz = 0; /* memory bandwidth from the properties: 2 (DDR) x clock x bus width */
    if (!as && cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, 0) == cudaSuccess && clock_khz > 0 &&
        p.memoryBusWidth > 0)
        g_peak_gbs = 2.0 * clock_khz * 1e3 * (p.memoryBusWidth / 8) * 1e-9;
#endif
    if (as) printf("device: %s (sm_%d%d, %d SMs); the peaks below are the table's for %s\n", own, p.major, p.minor,
                   p.multiProcessorCount, as);
    else printf("device: %s (sm_%d%d, %d SMs)\n", p.name, p.major, p.minor, p.multiProcessorCount);
    char gb[32] = "?", tf[32] = "?";
    if (g_peak_gbs > 0) snprintf(gb, sizeof gb, "%.0f", g_peak_gbs);
    if (g_peak_tflops > 0) snprintf(tf, sizeof tf, "%.0f", g_peak_tflops);
    printf("peak: %s GB/s memory, %s TFLOP/s bf16 tensor (dense, fp32 accumulate; ? = not known for this device)\n",
           gb, tf);
}

/* ---- the shapes and the calls -------------------------------------------------------------- */
typedef struct {
    int T, C, H, V, nh, nkv, hd, r, I, O;
    int64_t n;
    pl_bf16 *x, *y, *w, *gate, *up, *out, *q, *k, *v, *ao, *dq, *dk, *dv, *la, *lb, *xa, *dxa, *emb;
    float *wf, *rstd, *ws, *p, *g, *m, *vv, *lse, *losses, *dW, *dA, *dB, *inv_freq;
    double *dsum;
    int64_t *nvalid;
    int32_t *ids, *pos, *qlast, *seg, *tg;
    pl_cuda_nf4 nf4;
    pl_cuda_blas *blas;
    void *gws;
    size_t gws_bytes;
} B;

static int b_nf4_dequant(void *c) { B *b = c; return pl_cuda_nf4_dequant(b->y, &b->nf4, 0, b->nf4.n, NULL); }
static int b_nf4_gemv(void *c) { B *b = c; return pl_cuda_nf4_gemv(b->y, b->x, &b->nf4, b->O, b->I, 1, NULL); }
static int b_embedding(void *c) { B *b = c; return pl_cuda_embedding(b->y, b->ids, b->emb, b->T, b->C, NULL); }
static int b_rmsnorm(void *c) { B *b = c; return pl_cuda_rmsnorm(b->y, b->rstd, b->x, b->wf, b->T, b->C, 1e-5f, NULL); }
static int b_rmsnorm_bwd(void *c) {
    B *b = c;
    return pl_cuda_rmsnorm_bwd(b->out, b->dW, b->y, b->x, b->wf, b->rstd, b->T, b->C, b->ws, NULL);
}
static int b_rope(void *c) { B *b = c; return pl_cuda_rope(b->q, b->pos, b->inv_freq, b->T, b->nh, b->hd, 0, NULL); }
static int b_swiglu(void *c) { B *b = c; return pl_cuda_swiglu(b->out, b->gate, b->up, (int64_t)b->T * b->H, NULL); }
static int b_swiglu_bwd(void *c) {
    B *b = c;
    return pl_cuda_swiglu_bwd(b->dq, b->dk, b->out, b->gate, b->up, (int64_t)b->T * b->H, NULL);
}
static int b_adamw(void *c) {
    B *b = c;
    return pl_cuda_adamw(b->p, b->g, b->m, b->vv, b->n, 1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f, 1, NULL);
}
static int b_attention(void *c) {
    B *b = c;
    return pl_cuda_attention(b->ao, b->lse, b->q, b->k, b->v, b->qlast, b->seg, b->seg, b->T, b->T, b->nh, b->nkv,
                             b->hd, NULL);
}
static int b_attention_bwd(void *c) {
    B *b = c;
    return pl_cuda_attention_bwd(b->dq, b->dk, b->dv, b->ao, b->q, b->k, b->v, b->ao, b->lse, b->qlast, b->seg,
                                 b->seg, b->T, b->T, b->nh, b->nkv, b->hd, b->ws, NULL);
}
static int b_lm_head(void *c) {
    B *b = c;
    return pl_cuda_lm_head_ce(b->lse, b->losses, b->dsum, b->nvalid, b->x, b->w, b->tg, b->T, b->C, b->V, b->ws, NULL);
}
static int b_lm_head_bwd(void *c) {
    B *b = c;
    return pl_cuda_lm_head_ce_bwd(b->out, b->dW, b->x, b->w, b->tg, b->lse, b->T, b->C, b->V, 1.0f / b->T, b->ws, NULL);
}
static int b_linear(void *c) { B *b = c; return pl_cuda_linear(b->blas, b->y, b->x, b->w, b->T, b->C, b->V, b->gws, b->gws_bytes, NULL); }
static int b_linear_bwd_x(void *c) {
    B *b = c;
    return pl_cuda_linear_bwd_x(b->blas, b->out, 0, b->y, b->w, b->T, b->C, b->V, b->gws, b->gws_bytes, NULL);
}
static int b_linear_bwd_w(void *c) {
    B *b = c;
    return pl_cuda_linear_bwd_w(b->blas, b->dW, b->y, b->x, b->T, b->C, b->V, 1.0f, b->gws, b->gws_bytes, NULL);
}
static int b_lora_fwd(void *c) {
    B *b = c;
    return pl_cuda_lora_fwd(b->blas, b->y, b->xa, b->x, b->la, b->lb, b->T, b->C, b->C, b->r, 2.0f, b->gws,
                            b->gws_bytes, NULL);
}
static int b_lora_bwd(void *c) {
    B *b = c;
    return pl_cuda_lora_bwd(b->blas, b->out, 1, b->dA, b->dB, b->dxa, b->y, b->x, b->xa, b->la, b->lb, b->T, b->C,
                            b->C, b->r, 2.0f, b->gws, b->gws_bytes, NULL);
}

int main(int argc, char **argv) {
    int tiny = 0, peak_only = 0;
    const char *peak_as = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tiny")) tiny = 1;
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc) g_iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--peak")) {
            peak_only = 1;
            if (i + 1 < argc && argv[i + 1][0] != '-') peak_as = argv[++i];
        } else {
            fprintf(stderr, "usage: gpu_bench [--tiny] [--iters N] | gpu_bench --peak [NAME]\n");
            return 2;
        }
    }
#ifndef PL_CUDA_REAL
    g_emulated = 1;
    pl_emu_set_quiet(1);
#endif
    if (tiny && g_iters > 2) g_iters = 1;
    if (g_iters < 1) g_iters = 1;
    device_peaks(peak_as);
    if (peak_only) return 0;
    if (g_emulated) printf("emulated, not a measurement: the CPU emulator runs the kernels (tiny shapes)\n");
    B b;
    memset(&b, 0, sizeof b);
    /* a 1B-class layer (T tokens, C model dim, H MLP dim, V vocab), or tiny shapes for the emulator */
    if (tiny) b.T = 16, b.C = 64, b.H = 160, b.V = 300, b.nh = 2, b.nkv = 1, b.hd = 32, b.r = 8, b.n = 4096;
    else b.T = 2048, b.C = 2048, b.H = 5632, b.V = 32000, b.nh = 16, b.nkv = 4, b.hd = 128, b.r = 16, b.n = 1 << 24;
    b.I = b.C, b.O = b.H;
    const size_t TC = (size_t)b.T * b.C, TH = (size_t)b.T * b.H, VC = (size_t)b.V * b.C, OI = (size_t)b.O * b.I;
    const size_t big = TH > VC ? TH : VC;
    b.x = dbf16(TC, 1.0f), b.y = dbf16(big > (size_t)b.T * b.V ? big : (size_t)b.T * b.V, 0.5f);
    b.out = dbf16(big, 0.5f), b.w = dbf16(VC, 0.05f), b.gate = dbf16(TH, 2.0f), b.up = dbf16(TH, 1.0f);
    b.emb = dbf16(VC, 1.0f), b.q = dbf16((size_t)b.T * b.nh * b.hd, 1.0f), b.k = dbf16((size_t)b.T * b.nkv * b.hd, 1.0f);
    b.v = dbf16((size_t)b.T * b.nkv * b.hd, 1.0f), b.ao = dbf16((size_t)b.T * b.nh * b.hd, 1.0f);
    b.dq = dbf16(big, 1.0f), b.dk = dbf16(big, 1.0f), b.dv = dbf16((size_t)b.T * b.nkv * b.hd, 1.0f);
    b.la = dbf16((size_t)b.r * b.C, 0.05f), b.lb = dbf16((size_t)b.C * b.r, 0.05f), b.xa = dbf16((size_t)b.T * b.r, 1.0f);
    b.dxa = dbf16((size_t)b.T * b.r, 1.0f);
    b.wf = df32(b.C, 1.0f), b.rstd = df32(b.T, 1.0f), b.dW = df32(VC > OI ? VC : OI, 0.01f);
    b.dA = df32((size_t)b.r * b.C, 0.01f), b.dB = df32((size_t)b.C * b.r, 0.01f), b.inv_freq = df32(b.hd / 2, 0.5f);
    b.p = df32((size_t)b.n, 1.0f), b.g = df32((size_t)b.n, 1e-3f), b.m = df32((size_t)b.n, 1e-4f), b.vv = df32((size_t)b.n, 0.0f);
    b.lse = df32((size_t)b.nh * b.T, 1.0f), b.losses = df32(b.T, 0.0f);
    b.dsum = dmalloc(8), b.nvalid = dmalloc(8);
    size_t ws = pl_cuda_rmsnorm_bwd_workspace(b.T, b.C), w2 = pl_cuda_attention_bwd_workspace(b.T, b.nh);
    size_t w3 = pl_cuda_lm_head_ce_workspace(b.T, b.V), w4 = pl_cuda_lm_head_ce_bwd_workspace(b.T, b.C);
    if (w2 > ws) ws = w2;
    if (w3 > ws) ws = w3;
    if (w4 > ws) ws = w4;
    b.ws = dmalloc(ws * 4);
    b.ids = di32(b.T, idx_mod, &b.V), b.pos = di32(b.T, idx_self, NULL), b.qlast = di32(b.T, idx_self, NULL);
    b.seg = di32(b.T, idx_zero, NULL), b.tg = di32(b.T, idx_mod, &b.V);
    /* NF4 weight (O,I), plain fp32 absmax in blocks of 64 */
    b.nf4.n = (int64_t)OI, b.nf4.blocksize = 64;
    uint8_t *pk = malloc(OI / 2 + 1);
    for (size_t i = 0; i < OI / 2 + 1; i++) pk[i] = (uint8_t)(i * 37u);
    uint8_t *dpk = dmalloc(OI / 2 + 1);
    cudaMemcpy(dpk, pk, OI / 2 + 1, cudaMemcpyHostToDevice);
    free(pk);
    b.nf4.packed = dpk, b.nf4.absmax = df32(OI / 64 + 1, 0.1f);
    if (pl_cuda_blas_create(&b.blas) != 0) {
        fprintf(stderr, "gpu_bench: cuBLASLt handle failed\n");
        return 1;
    }
    b.gws_bytes = pl_cuda_gemm_workspace(), b.gws = dmalloc(b.gws_bytes);

    char sh[64];
    printf("%-18s %-30s %12s  %-16s %s\n", "kernel", "shape", "time (us)", "achieved", "of peak");
    snprintf(sh, sizeof sh, "n=%zu", OI);
    row("nf4_dequant", sh, b_nf4_dequant, &b, OI * 2.5 + OI / 16.0, 0);
    snprintf(sh, sizeof sh, "T=1 %dx%d", b.O, b.I);
    row("nf4_gemv", sh, b_nf4_gemv, &b, OI / 2.0 + OI / 16.0 + b.I * 2.0 + b.O * 2.0, 0);
    snprintf(sh, sizeof sh, "T=%d C=%d", b.T, b.C);
    row("embedding", sh, b_embedding, &b, TC * 4.0, 0);
    row("rmsnorm", sh, b_rmsnorm, &b, TC * 4.0 + b.C * 4.0, 0);
    row("rmsnorm_bwd", sh, b_rmsnorm_bwd, &b, TC * 6.0 + b.C * 8.0, 0);
    snprintf(sh, sizeof sh, "T=%d nh=%d hd=%d", b.T, b.nh, b.hd);
    row("rope", sh, b_rope, &b, (double)b.T * b.nh * b.hd * 4.0, 0);
    snprintf(sh, sizeof sh, "T=%d H=%d", b.T, b.H);
    row("swiglu", sh, b_swiglu, &b, TH * 6.0, 0);
    row("swiglu_bwd", sh, b_swiglu_bwd, &b, TH * 10.0, 0);
    snprintf(sh, sizeof sh, "n=%lld", (long long)b.n);
    row("adamw", sh, b_adamw, &b, (double)b.n * 28.0, 0);
    const double attn = 2.0 * (double)b.T * b.T * b.hd * b.nh; /* 2 GEMMs, causal half */
    snprintf(sh, sizeof sh, "T=%d nh=%d/%d hd=%d", b.T, b.nh, b.nkv, b.hd);
    row("attention", sh, b_attention, &b, 0, attn);
    row("attention_bwd", sh, b_attention_bwd, &b, 0, 2.5 * attn);
    snprintf(sh, sizeof sh, "T=%d C=%d V=%d", b.T, b.C, b.V);
    const double head = 2.0 * (double)b.T * b.C * b.V;
    row("lm_head_ce", sh, b_lm_head, &b, 0, head);
    row("lm_head_ce_bwd", sh, b_lm_head_bwd, &b, 0, 2 * head);
    snprintf(sh, sizeof sh, "T=%d in=%d out=%d", b.T, b.C, b.V);
    row("gemm y=x.W^T", sh, b_linear, &b, 0, head);
    row("gemm dx=dy.W", sh, b_linear_bwd_x, &b, 0, head);
    row("gemm dW+=dy^T.x", sh, b_linear_bwd_w, &b, 0, head);
    snprintf(sh, sizeof sh, "T=%d in=out=%d r=%d", b.T, b.C, b.r);
    row("lora_fwd", sh, b_lora_fwd, &b, 0, 4.0 * b.T * b.C * b.r);
    row("lora_bwd", sh, b_lora_bwd, &b, 0, 8.0 * b.T * b.C * b.r);
    if (g_emulated) printf("emulated, not a measurement\n");
    pl_cuda_blas_destroy(b.blas);
    return 0; /* device memory goes with the process */
}
