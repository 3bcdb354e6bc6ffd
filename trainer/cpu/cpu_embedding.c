/* cpu_embedding.c: token embedding lookup on the CPU. */
#include <string.h>
#include "cpu_int.h"

/* out (T,C) = table (V,C) [ids[t]]; the caller has checked 0 <= ids[t] < V. */
void pl_cpu_embedding(float *out, const int32_t *ids, const float *table, int T, int C) {
#pragma omp parallel for schedule(static) if ((long)T * C >= PL_CPU_PAR_MIN)
    for (int t = 0; t < T; t++)
        memcpy(out + (size_t)t * C, table + (size_t)ids[t] * C, (size_t)C * sizeof(float));
}
