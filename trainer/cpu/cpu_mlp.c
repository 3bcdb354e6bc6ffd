/* cpu_mlp.c: the elementwise ops of the MLP and the residual stream: SwiGLU and add. */
#include "../ops_math.h"
#include "cpu_int.h"

/* out (T,H) = silu(gate) * up ; out may alias gate (or up). */
void pl_cpu_swiglu(float *out, const float *gate, const float *up, int T, int H) {
    long n = (long)T * H;
#pragma omp parallel for schedule(static) if (n >= PL_CPU_PAR_MIN)
    for (long i = 0; i < n; i++) out[i] = pl_swiglu(gate[i], up[i]);
}

/* out[i] = a[i] + b[i] ; out may alias a or b. */
void pl_cpu_add(float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for schedule(static) if (n >= PL_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}
