/* cpu_rope.c: rotate-half RoPE on the CPU, one token row per OpenMP iteration. */
#include "../ops_math.h"
#include "cpu_int.h"

/* x (T, nheads*hd) in place; pos (T); inv_freq (hd/2). cos/sin are computed
 * once per (token, frequency) and applied to every head of the row. */
void pl_cpu_rope(float *x, const int32_t *pos, const float *inv_freq, int T, int nheads, int hd) {
#pragma omp parallel for schedule(static) if ((long)T * nheads * hd >= PL_CPU_PAR_MIN)
    for (int t = 0; t < T; t++) pl_rope_row(x + (size_t)t * nheads * hd, nheads, hd, pos[t], inv_freq);
}
