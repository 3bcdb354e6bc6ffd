/* cpu_rope_bwd.c: RoPE's backward on the CPU (rotation by the opposite angle), one token row per OpenMP iteration. */
#include "../ops_math.h"
#include "cpu_int.h"

/* d (T, nheads*hd) in place: dL/d(rope(x)) becomes dL/dx; pos (T); inv_freq (hd/2). */
void pl_cpu_rope_bwd(float *d, const int32_t *pos, const float *inv_freq, int T, int nheads, int hd) {
#pragma omp parallel for schedule(static) if ((long)T * nheads * hd >= PL_CPU_PAR_MIN)
    for (int t = 0; t < T; t++) pl_rope_row_bwd(d + (size_t)t * nheads * hd, nheads, hd, pos[t], inv_freq);
}
