/* cpu_int.h: the CPU backend's ops, shared between its files (one op family
 * per file; cpu_backend.c puts them in the pl_backend table). Signatures and
 * semantics are those of trainer/backend.h. */
#ifndef PL_CPU_INT_H
#define PL_CPU_INT_H

#include <stddef.h>
#include <stdint.h>
#include "../backend.h"

/* Below this many elements an elementwise op runs on the calling thread: the
 * OpenMP fork costs more than the work. Results are the same bits either way. */
#define PL_CPU_PAR_MIN 16384

/* linear_q: T below this runs dot products on the quantized rows (generation);
 * T at or above it dequantizes blocks of rows and calls sgemm. Measured on
 * SmolLM2's Q4_1 LM head (49152 x 576, 2 threads): the dot path costs ~1.1 ms
 * per token; dequantize + sgemm 15.6 ms at T=8, 16.9 ms at T=16, 31.6 ms at
 * T=64, so the two cross near T=16. */
#define PL_CPU_LINQ_DOT_MAX_T 16

void *pl_cpu_alloc(size_t bytes, pl_mem_cat cat);
void pl_cpu_free(void *p);

void pl_cpu_embedding(float *out, const int32_t *ids, const float *table, int T, int C);
void pl_cpu_rmsnorm(float *out, const float *x, const float *w, int T, int C, float eps);
void pl_cpu_rope(float *x, const int32_t *pos, const float *inv_freq, int T, int nheads, int hd);
void pl_cpu_attention(float *out, const float *q, const float *k, const float *v,
                      const int32_t *qlast, const int32_t *qseg, const int32_t *kseg,
                      int Tq, int Tk, int nh, int nkv, int hd);
void pl_cpu_swiglu(float *out, const float *gate, const float *up, int T, int H);
void pl_cpu_add(float *out, const float *a, const float *b, size_t n);
void pl_cpu_linear(float *out, const float *x, const float *w, const float *bias, int T, int I, int O);
void pl_cpu_linear_q(float *out, const float *x, const pl_qweight *w, const float *bias, int T,
                     float *workspace);
double pl_cpu_cross_entropy(const float *logits, const int32_t *targets, int T, int V, float *losses,
                            int64_t *n_valid);

/* backward ops (cpu_*_bwd.c) and the optimizer's (cpu_optim.c) */
void pl_cpu_embedding_bwd(float *dtable, const int32_t *ids, const float *dout, int T, int C);
void pl_cpu_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x, const float *w, int T, int C,
                        float eps);
void pl_cpu_rope_bwd(float *d, const int32_t *pos, const float *inv_freq, int T, int nheads, int hd);
void pl_cpu_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                          const float *v, const float *out, const int32_t *qlast, const int32_t *qseg,
                          const int32_t *kseg, int Tq, int Tk, int nh, int nkv, int hd);
void pl_cpu_swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int T,
                       int H);
void pl_cpu_linear_bwd(float *dx, float *dw, float *dbias, const float *dout, const float *x, const float *w,
                       int T, int I, int O);
void pl_cpu_linear_q_bwd_x(float *dx, const float *dout, const pl_qweight *w, int T, float *workspace);
void pl_cpu_cross_entropy_bwd(float *dlogits, const float *logits, const int32_t *targets, int T, int V,
                              float scale);
double pl_cpu_sumsq(const float *x, size_t n);
void pl_cpu_scale(float *x, float s, size_t n);
void pl_cpu_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2,
                  float eps, float wd, int t);

/* cpu_dropout.c: the dropout op on floats; cpu_lora.c: LoRA's ops and the
 * embedding of a quantized table, on floats. */
void pl_cpu_dropout(float *dst, const float *src, size_t n, float p, uint64_t seed, uint64_t stream, uint64_t first);
void pl_cpu_embedding_q(float *out, const int32_t *ids, const pl_qweight *table, int T);
void pl_cpu_lora_fwd(float *y, float *xa, const float *u, const float *A, const float *B, int T, int I, int O, int r,
                     float scale, float *tmp);
void pl_cpu_lora_bwd(float *dx, int accumulate, float *gA, float *gB, const float *dout, const float *u,
                     const float *xa, const float *A, const float *B, int T, int I, int O, int r, float scale,
                     float *tmp, float *dxa, float *du);

/* An op failed (out of memory for its scratch, a weight it cannot read):
 * record why, for pl_backend.take_error (first failure wins; thread-safe). */
void pl_cpu_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int pl_cpu_take_error(pl_err *err);

/* A function built twice, for AVX2 and for baseline x86-64, chosen at load
 * time (target_clones); under GCC kept out of line with its callees inlined
 * (clang refuses noinline and flatten with target_clones: the fuzz build). */
#if defined(__clang__)
#define PL_AVX2_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define PL_AVX2_CLONES __attribute__((target_clones("avx2", "default"), noinline, flatten))
#endif

#endif
