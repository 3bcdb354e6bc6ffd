/* gemm.h: single-precision matrix products whose bits do not depend on the
 * number of threads.
 *
 * OpenBLAS decides by itself how a threaded sgemm is split over threads, and
 * the split (with it, which kernel computes which element and where partial
 * sums meet) changes with the thread count, the processor and the
 * environment. pl_gemm decides the split instead: the output is cut into tiles
 * whose shape depends only on (M, N); each tile is one single-threaded sgemm
 * over the full reduction dimension K, and threads take whole tiles. Every
 * output element is therefore computed by the same kernel call, with the same
 * operands in the same order, at 1, 2 or 64 threads.
 *
 * What this promises: the same bits at any thread count for the same inputs on
 * one machine with one OpenBLAS kernel (OPENBLAS_CORETYPE). What it does not:
 * the same bits on another processor family or OpenBLAS kernel, whose
 * microkernels sum in another order (agreement there is to rounding). */
#ifndef PL_GEMM_H
#define PL_GEMM_H

/* C (M,N) = alpha * op(A) (M,K) . op(B) (K,N) + beta * C, row-major.
 * op(A) = A (M,K; row stride lda) or, with trans_a, A^T for A (K,M; lda);
 * op(B) = B (K,N; ldb) or, with trans_b, B^T for B (N,K; ldb).
 * beta 0 overwrites C (NaNs in C do not propagate). M, N, K <= 0: nothing
 * happens, except K <= 0 scales C by beta as sgemm would (beta 0: zeros).
 * Runs outside or inside an OpenMP parallel region (inside: on the calling
 * thread only, same bits). */
void pl_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
             int ldb, float beta, float *C, int ldc);

/* Output tile shape pl_gemm uses for an (M, N) product: a pure function of M
 * and N. Exposed for tests and for code that wants to produce the same bits
 * as pl_gemm over a part of the columns (tiles start at multiples of *tn). */
void pl_gemm_tile(int M, int N, int *tm, int *tn);

/* Benchmarks only: route pl_gemm to one threaded OpenBLAS sgemm call, the
 * path before pl_gemm existed (bits then depend on the thread count). */
void pl_gemm_set_openblas_threaded(int on);
int pl_gemm_openblas_threaded(void);

#endif
