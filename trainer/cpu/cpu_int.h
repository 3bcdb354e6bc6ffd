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

#endif
