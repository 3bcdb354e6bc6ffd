/* cpu_mlp_bwd.c: SwiGLU's backward on the CPU (elementwise). */
#include "../ops_math.h"
#include "cpu_int.h"

/* dgate, dup (T,H) from dout (T,H) of out = silu(gate) * up. dgate (or dup)
 * may alias dout: each element's dout is read before either is written. */
void pl_cpu_swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int T,
                       int H) {
    long n = (long)T * H;
#pragma omp parallel for schedule(static) if (n >= PL_CPU_PAR_MIN)
    for (long i = 0; i < n; i++) {
        float dg, du;
        pl_swiglu_bwd(dout[i], gate[i], up[i], &dg, &du);
        dgate[i] = dg;
        dup[i] = du;
    }
}
