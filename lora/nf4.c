/* nf4.c: NF4 + double quantization bit-compatible with bitsandbytes (CPU),
 * on-the-fly row dequantization for the linear layers, bitsandbytes-4bit
 * checkpoint import, NF4 bases for pl_model and their on-disk cache.
 *
 * What "bit-compatible" takes, read from bitsandbytes 0.50.2's CPU path:
 *  - 4-bit (backends/default quantize_4bit, plain torch ops in fp32): full
 *    blocks scale by the reciprocal, x * (1 / max(absmax, 1e-38f)); the short
 *    last block divides, x / max(absmax, 1e-38f), and stores that clamped
 *    absmax (so an all-zero tail block records 1e-38f, a full one 0). The
 *    scaled value is clamped to [-1, 1] and bucketized against the fp32
 *    midpoints (code[i] + code[i+1]) / 2 with torch.bucketize(right=False):
 *    a value exactly on a midpoint takes the LOWER code.
 *  - offset = torch.mean(absmax): torch's CPU cascade sum (4 accumulator
 *    levels, 4-way ILP over 8-lane vectors: torch's AVX2 kernel, which it
 *    also runs under AVX-512), then
 *    one fp32 division by the count. Reproduced in torch_sum below.
 *  - 8-bit nested (libbitsandbytes_cpu quantize_cpu, read from the shipped
 *    0.50.2 binary): absmax of each 256 block (an all-zero block gets code
 *    0), x * (1 / absmax), clamped to [-1, 1], then a 65536-entry table:
 *    bin = trunc(fma((x + 1) * 0.5, 65535, 0.5)), code = the number of
 *    midpoints below the bin's value (see dyn_lut_build).
 *  - dequantization: map[c] * nested + offset, then NF4[q] * absmax, fp32.
 * The torch sum is single-threaded here; torch itself splits it across
 * threads only past 32768 blocks (tensors over 2M elements at blocksize 64),
 * which the reference script pins with torch.set_num_threads(1). */
#include "nf4.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/atomic.h"
#include "../core/mapfile.h"
#include "../core/sha256.h"
#include "../trainer/model_int.h"
#include <cjson/cJSON.h>

const float pl_nf4_code[16] = {
    -0x1.0000000000000p+0f, -0x1.6473620000000p-1f, -0x1.0cd6600000000p-1f, -0x1.9465400000000p-2f,
    -0x1.23449a0000000p-2f, -0x1.7a6a7e0000000p-3f, -0x1.74f0e20000000p-4f, 0x0.0p+0f,
    0x1.45f5fe0000000p-4f,  0x1.4995c60000000p-3f,  0x1.f809ba0000000p-3f,  0x1.5a06740000000p-2f,
    0x1.c349700000000p-2f,  0x1.200f560000000p-1f,  0x1.7227660000000p-1f,  0x1.0000000000000p+0f,
};

/* bitsandbytes.functional.create_dynamic_map() (signed, 7 exponent bits),
 * as the fp32 values torch produces; a constant of the format. */
const float pl_nf4_dynamic_map[256] = {
    -0x1.fc66660000000p-1f, -0x1.f533340000000p-1f, -0x1.ee00000000000p-1f, -0x1.e6cccc0000000p-1f,
    -0x1.df999a0000000p-1f, -0x1.d866660000000p-1f, -0x1.d133340000000p-1f, -0x1.ca00000000000p-1f,
    -0x1.c2cccc0000000p-1f, -0x1.bb999a0000000p-1f, -0x1.b466660000000p-1f, -0x1.ad33340000000p-1f,
    -0x1.a600000000000p-1f, -0x1.9ecccc0000000p-1f, -0x1.97999a0000000p-1f, -0x1.9066660000000p-1f,
    -0x1.8933340000000p-1f, -0x1.8200000000000p-1f, -0x1.7acccc0000000p-1f, -0x1.73999a0000000p-1f,
    -0x1.6c66680000000p-1f, -0x1.6533340000000p-1f, -0x1.5e00000000000p-1f, -0x1.56cccc0000000p-1f,
    -0x1.4f999a0000000p-1f, -0x1.4866680000000p-1f, -0x1.4133340000000p-1f, -0x1.3a00000000000p-1f,
    -0x1.32cccc0000000p-1f, -0x1.2b999a0000000p-1f, -0x1.2466680000000p-1f, -0x1.1d33340000000p-1f,
    -0x1.1600000000000p-1f, -0x1.0ecccc0000000p-1f, -0x1.0799980000000p-1f, -0x1.0066660000000p-1f,
    -0x1.f266640000000p-2f, -0x1.e400000000000p-2f, -0x1.d599980000000p-2f, -0x1.c733340000000p-2f,
    -0x1.b8cccc0000000p-2f, -0x1.aa66660000000p-2f, -0x1.9c00000000000p-2f, -0x1.8d99980000000p-2f,
    -0x1.7f33340000000p-2f, -0x1.70cccc0000000p-2f, -0x1.6266660000000p-2f, -0x1.5400000000000p-2f,
    -0x1.4599980000000p-2f, -0x1.3733340000000p-2f, -0x1.28cccc0000000p-2f, -0x1.1a66680000000p-2f,
    -0x1.0c00000000000p-2f, -0x1.fb33320000000p-3f, -0x1.de66660000000p-3f, -0x1.c1999a0000000p-3f,
    -0x1.a4cccc0000000p-3f, -0x1.8800000000000p-3f, -0x1.6b33340000000p-3f, -0x1.4e66660000000p-3f,
    -0x1.31999a0000000p-3f, -0x1.14cccc0000000p-3f, -0x1.f000000000000p-4f, -0x1.b666680000000p-4f,
    -0x1.93d70a0000000p-4f, -0x1.8851ee0000000p-4f, -0x1.7cccce0000000p-4f, -0x1.7147ae0000000p-4f,
    -0x1.65c2900000000p-4f, -0x1.5a3d700000000p-4f, -0x1.4eb8540000000p-4f, -0x1.4333340000000p-4f,
    -0x1.37ae140000000p-4f, -0x1.2c28f60000000p-4f, -0x1.20a3d60000000p-4f, -0x1.151eba0000000p-4f,
    -0x1.09999a0000000p-4f, -0x1.fc28f60000000p-5f, -0x1.e51eba0000000p-5f, -0x1.ce147a0000000p-5f,
    -0x1.b70a3e0000000p-5f, -0x1.a000000000000p-5f, -0x1.88f5c20000000p-5f, -0x1.71eb860000000p-5f,
    -0x1.5ae1460000000p-5f, -0x1.43d70a0000000p-5f, -0x1.2cccce0000000p-5f, -0x1.15c2900000000p-5f,
    -0x1.fd70a40000000p-6f, -0x1.cf5c2a0000000p-6f, -0x1.a147ae0000000p-6f, -0x1.7333340000000p-6f,
    -0x1.451eba0000000p-6f, -0x1.170a3e0000000p-6f, -0x1.d1eb860000000p-7f, -0x1.75c2900000000p-7f,
    -0x1.3e76c80000000p-7f, -0x1.2c08300000000p-7f, -0x1.19999a0000000p-7f, -0x1.072b020000000p-7f,
    -0x1.e978d40000000p-8f, -0x1.c49ba60000000p-8f, -0x1.9fbe760000000p-8f, -0x1.7ae1480000000p-8f,
    -0x1.56041a0000000p-8f, -0x1.3126e80000000p-8f, -0x1.0c49ba0000000p-8f, -0x1.ced9140000000p-9f,
    -0x1.851eb80000000p-9f, -0x1.3b645a0000000p-9f, -0x1.e353f80000000p-10f, -0x1.4fdf3a0000000p-10f,
    -0x1.eecbfe0000000p-11f, -0x1.b3d07c0000000p-11f, -0x1.78d5000000000p-11f, -0x1.3dd9820000000p-11f,
    -0x1.02de020000000p-11f, -0x1.8fc5060000000p-12f, -0x1.19ce0a0000000p-12f, -0x1.47ae160000000p-13f,
    -0x1.743e960000000p-14f, -0x1.15df660000000p-14f, -0x1.6f00680000000p-15f, -0x1.64840c0000000p-16f,
    -0x1.040bfe0000000p-17f, -0x1.b435280000000p-19f, -0x1.27476e0000000p-21f, 0x0.0p+0f,
    0x1.27476e0000000p-21f, 0x1.b435280000000p-19f, 0x1.040bfe0000000p-17f, 0x1.64840c0000000p-16f,
    0x1.6f00680000000p-15f, 0x1.15df660000000p-14f, 0x1.743e960000000p-14f, 0x1.47ae160000000p-13f,
    0x1.19ce0a0000000p-12f, 0x1.8fc5060000000p-12f, 0x1.02de020000000p-11f, 0x1.3dd9820000000p-11f,
    0x1.78d5000000000p-11f, 0x1.b3d07c0000000p-11f, 0x1.eecbfe0000000p-11f, 0x1.4fdf3a0000000p-10f,
    0x1.e353f80000000p-10f, 0x1.3b645a0000000p-9f, 0x1.851eb80000000p-9f, 0x1.ced9140000000p-9f,
    0x1.0c49ba0000000p-8f, 0x1.3126e80000000p-8f, 0x1.56041a0000000p-8f, 0x1.7ae1480000000p-8f,
    0x1.9fbe760000000p-8f, 0x1.c49ba60000000p-8f, 0x1.e978d40000000p-8f, 0x1.072b020000000p-7f,
    0x1.19999a0000000p-7f, 0x1.2c08300000000p-7f, 0x1.3e76c80000000p-7f, 0x1.75c2900000000p-7f,
    0x1.d1eb860000000p-7f, 0x1.170a3e0000000p-6f, 0x1.451eba0000000p-6f, 0x1.7333340000000p-6f,
    0x1.a147ae0000000p-6f, 0x1.cf5c2a0000000p-6f, 0x1.fd70a40000000p-6f, 0x1.15c2900000000p-5f,
    0x1.2cccce0000000p-5f, 0x1.43d70a0000000p-5f, 0x1.5ae1460000000p-5f, 0x1.71eb860000000p-5f,
    0x1.88f5c20000000p-5f, 0x1.a000000000000p-5f, 0x1.b70a3e0000000p-5f, 0x1.ce147a0000000p-5f,
    0x1.e51eba0000000p-5f, 0x1.fc28f60000000p-5f, 0x1.09999a0000000p-4f, 0x1.151eba0000000p-4f,
    0x1.20a3d60000000p-4f, 0x1.2c28f60000000p-4f, 0x1.37ae140000000p-4f, 0x1.4333340000000p-4f,
    0x1.4eb8540000000p-4f, 0x1.5a3d700000000p-4f, 0x1.65c2900000000p-4f, 0x1.7147ae0000000p-4f,
    0x1.7cccce0000000p-4f, 0x1.8851ee0000000p-4f, 0x1.93d70a0000000p-4f, 0x1.b666680000000p-4f,
    0x1.f000000000000p-4f, 0x1.14cccc0000000p-3f, 0x1.31999a0000000p-3f, 0x1.4e66660000000p-3f,
    0x1.6b33340000000p-3f, 0x1.8800000000000p-3f, 0x1.a4cccc0000000p-3f, 0x1.c1999a0000000p-3f,
    0x1.de66660000000p-3f, 0x1.fb33320000000p-3f, 0x1.0c00000000000p-2f, 0x1.1a66680000000p-2f,
    0x1.28cccc0000000p-2f, 0x1.3733340000000p-2f, 0x1.4599980000000p-2f, 0x1.5400000000000p-2f,
    0x1.6266660000000p-2f, 0x1.70cccc0000000p-2f, 0x1.7f33340000000p-2f, 0x1.8d99980000000p-2f,
    0x1.9c00000000000p-2f, 0x1.aa66660000000p-2f, 0x1.b8cccc0000000p-2f, 0x1.c733340000000p-2f,
    0x1.d599980000000p-2f, 0x1.e400000000000p-2f, 0x1.f266640000000p-2f, 0x1.0066660000000p-1f,
    0x1.0799980000000p-1f, 0x1.0ecccc0000000p-1f, 0x1.1600000000000p-1f, 0x1.1d33340000000p-1f,
    0x1.2466680000000p-1f, 0x1.2b999a0000000p-1f, 0x1.32cccc0000000p-1f, 0x1.3a00000000000p-1f,
    0x1.4133340000000p-1f, 0x1.4866680000000p-1f, 0x1.4f999a0000000p-1f, 0x1.56cccc0000000p-1f,
    0x1.5e00000000000p-1f, 0x1.6533340000000p-1f, 0x1.6c66680000000p-1f, 0x1.73999a0000000p-1f,
    0x1.7acccc0000000p-1f, 0x1.8200000000000p-1f, 0x1.8933340000000p-1f, 0x1.9066660000000p-1f,
    0x1.97999a0000000p-1f, 0x1.9ecccc0000000p-1f, 0x1.a600000000000p-1f, 0x1.ad33340000000p-1f,
    0x1.b466660000000p-1f, 0x1.bb999a0000000p-1f, 0x1.c2cccc0000000p-1f, 0x1.ca00000000000p-1f,
    0x1.d133340000000p-1f, 0x1.d866660000000p-1f, 0x1.df999a0000000p-1f, 0x1.e6cccc0000000p-1f,
    0x1.ee00000000000p-1f, 0x1.f533340000000p-1f, 0x1.fc66660000000p-1f, 0x1.0000000000000p+0f
};

/* ---- torch.mean on one CPU thread ---------------------------------------- */

static int g_mean_lanes = 0;

int pl_nf4_set_mean_lanes(int lanes) {
    int old = g_mean_lanes;
    g_mean_lanes = lanes == 8 || lanes == 16 ? lanes : 0;
    return old;
}

/* torch registers its sum kernel for AVX2 only: on an AVX-512 machine the
 * reduction still runs on 8-lane vectors (checked against torch.sum). */
static int default_lanes(void) { return 8; }

static int64_t ceil_log2(int64_t x) {
    if (x <= 2) return 1;
    int64_t b = 0;
    for (uint64_t v = (uint64_t)(x - 1); v; v >>= 1) b++;
    return b;
}

static void vadd(float *a, const float *b, int w) {
    for (int i = 0; i < w; i++) a[i] += b[i];
}

/* torch's multi_row_sum with 4 rows: unit u (w floats at x + u*w) belongs to
 * row u % 4; `size` units per row; partial sums move up 4 levels. */
static void multi_row_sum(const float *x, int64_t size, int w, float out[4][16]) {
    float acc[4][4][16];
    memset(acc, 0, sizeof acc);
    const int64_t lp = ceil_log2(size) / 4 > 4 ? ceil_log2(size) / 4 : 4;
    const int64_t step = (int64_t)1 << lp, mask = step - 1;
    int64_t i = 0;
    while (i + step <= size) {
        for (int64_t j = 0; j < step; j++, i++)
            for (int k = 0; k < 4; k++) vadd(acc[0][k], x + (4 * i + k) * w, w);
        for (int j = 1; j < 4; j++) {
            for (int k = 0; k < 4; k++) {
                vadd(acc[j][k], acc[j - 1][k], w);
                memset(acc[j - 1][k], 0, sizeof acc[j - 1][k]);
            }
            if ((i & (mask << (j * lp))) != 0) break;
        }
    }
    for (; i < size; i++)
        for (int k = 0; k < 4; k++) vadd(acc[0][k], x + (4 * i + k) * w, w);
    for (int j = 1; j < 4; j++)
        for (int k = 0; k < 4; k++) vadd(acc[0][k], acc[j][k], w);
    memcpy(out, acc[0], sizeof acc[0]);
}

/* torch's row_sum: 4-way ILP over `size` units, tail units into row 0. */
static void row_sum(const float *x, int64_t size, int w, float res[16]) {
    float p[4][16];
    int64_t size_ilp = size / 4;
    multi_row_sum(x, size_ilp, w, p);
    for (int64_t i = size_ilp * 4; i < size; i++) vadd(p[0], x + i * w, w);
    for (int k = 1; k < 4; k++) vadd(p[0], p[k], w);
    memcpy(res, p[0], (size_t)w * sizeof(float));
}

static float torch_sum(const float *x, int64_t n, int lanes) {
    float v[16] = {0};
    if (n >= lanes) { /* vectorized_inner_sum */
        int64_t vec_size = n / lanes;
        row_sum(x, vec_size, lanes, v);
        float f = 0.0f;
        for (int64_t k = vec_size * lanes; k < n; k++) f += x[k];
        for (int k = 0; k < lanes; k++) f += v[k];
        return 0.0f + f;
    }
    row_sum(x, n, 1, v); /* scalar path */
    return 0.0f + v[0];
}

float pl_nf4_torch_mean(const float *x, int64_t n, int lanes) {
    if (lanes != 8 && lanes != 16) lanes = g_mean_lanes ? g_mean_lanes : default_lanes();
    if (n <= 0) return NAN;
    return torch_sum(x, n, lanes) / (float)n;
}

/* ---- layout ---------------------------------------------------------------- */

static size_t al8(size_t x) { return (x + 7) & ~(size_t)7; }

/* Byte offsets of the arrays inside one buffer; assigns the pointers when
 * base is non-NULL. Returns the total size. Sizes are checked by callers. */
static size_t nf4_layout(pl_nf4 *q, unsigned char *base) {
    size_t off = 0;
    size_t o_packed = off; off = al8(off + (size_t)((q->n + 1) / 2));
    size_t o_abs = off;
    if (q->double_quant) off = al8(off + (size_t)q->n_blocks);
    else off = al8(off + (size_t)q->n_blocks * sizeof(float));
    size_t o_nest = off; off = al8(off + (size_t)q->n_nested * sizeof(float));
    if (base) {
        q->packed = base + o_packed;
        q->absmax = q->double_quant ? NULL : (float *)(void *)(base + o_abs);
        q->absmax_q = q->double_quant ? base + o_abs : NULL;
        q->nested_absmax = q->double_quant ? (float *)(void *)(base + o_nest) : NULL;
        q->buf = base;
        q->buf_bytes = off;
    }
    return off;
}

static int valid_blocksize(int64_t bs) {
    return bs >= 32 && bs <= 4096 && (bs & (bs - 1)) == 0;
}

/* Fill the counts of q for n elements; 0 or -1 when n is out of range. */
static int nf4_shape(pl_nf4 *q, int64_t n, int blocksize, int double_quant) {
    memset(q, 0, sizeof *q);
    if (n <= 0 || n > ((int64_t)1 << 46) || !valid_blocksize(blocksize)) return -1;
    q->n = n;
    q->blocksize = blocksize;
    q->double_quant = !!double_quant;
    q->n_blocks = (n + blocksize - 1) / blocksize;
    q->n_nested = q->double_quant ? (q->n_blocks + PL_NF4_NESTED_BLOCK - 1) / PL_NF4_NESTED_BLOCK : 0;
    return 0;
}

static int nf4_alloc(pl_nf4 *q) {
    size_t bytes = nf4_layout(q, NULL);
    unsigned char *b = calloc(1, bytes ? bytes : 1);
    if (!b) return -1;
    nf4_layout(q, b);
    return 0;
}

void pl_nf4_free(pl_nf4 *q) {
    if (!q) return;
    free(q->buf);
    memset(q, 0, sizeof *q);
}

/* ---- quantization ------------------------------------------------------------ */

/* Index of the NF4 code for a scaled value: the number of fp32 midpoints
 * strictly below it (torch.bucketize, right=False). */
static inline int nf4_index(float s, const float *mid) {
    int i = 0;
    for (int k = 0; k < 15; k++) i += mid[k] < s;
    return i;
}

/* bitsandbytes' CPU 8-bit quantizer (quantize_cpu in libbitsandbytes_cpu,
 * 0.50.x) does no search per value: it discretizes [-1, 1] into 65536 bins
 * and looks the code up in a table built once per map. Bin i stands for
 * (2 * i) / 65535 - 1 (fp32, that order); its code is the number of fp32
 * midpoints 0.5 * (code[k] + code[k + 1]) strictly below that value. */
#define DYN_LUT_SIZE 65536

static void dyn_lut_build(const float *code, uint8_t *lut) {
    float mid[255];
    for (int k = 0; k < 255; k++) mid[k] = 0.5f * (code[k] + code[k + 1]);
    int c = 0;
    for (int i = 0; i < DYN_LUT_SIZE; i++) {
        const float v = (2.0f * (float)i) / (float)(DYN_LUT_SIZE - 1) - 1.0f;
        while (c < 255 && mid[c] < v) c++;
        lut[i] = (uint8_t)c;
    }
}

/* The bin of a value already scaled by its block's 1 / absmax: clamp to
 * [-1, 1], then trunc(fma((v + 1) * 0.5, 65535, 0.5)) -- the library is
 * built with FMA contraction, and that fused rounding is what moves values
 * within ~1e-5 of a bin edge (and so of a midpoint) to the other code. */
static inline int dyn_bin(float v) {
    v = v < -1.0f ? -1.0f : 1.0f < v ? 1.0f : v;
    const float t = fmaf((v + 1.0f) * 0.5f, (float)(DYN_LUT_SIZE - 1), 0.5f);
    if (!(t >= 0.0f)) return 0; /* NaN: cvttss2si gives 0x80000000, whose low 16 bits are 0 */
    return (int)t & 0xffff;
}

/* Quantize x (q->n floats) into q, whose counts and arrays are already laid
 * out (nf4_shape + nf4_layout). On error q's arrays hold garbage. */
static int nf4_fill(const float *x, pl_nf4 *q, pl_err *err) {
    const int64_t n = q->n;
    const int blocksize = q->blocksize;
    float *absmax = malloc((size_t)q->n_blocks * sizeof(float));
    if (!absmax) return pl_err_set(err, PL_ENOMEM, "nf4: out of memory for %lld elements", (long long)n);
    float mid[15];
    for (int k = 0; k < 15; k++) mid[k] = (pl_nf4_code[k] + pl_nf4_code[k + 1]) / 2.0f;
    const int64_t full = n / blocksize;
    const float tiny = (float)1e-38;
    int64_t bad = -1;
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (int64_t b = 0; b < q->n_blocks; b++) {
        const int64_t i0 = b * blocksize, i1 = i0 + blocksize < n ? i0 + blocksize : n;
        float am = 0.0f;
        int finite = 1;
        for (int64_t i = i0; i < i1; i++) {
            if (!isfinite(x[i])) finite = 0;
            float a = fabsf(x[i]);
            if (a > am) am = a;
        }
        if (!finite) {
#pragma omp critical(pl_nf4_bad)
            if (bad < 0 || i0 < bad) bad = i0;
            continue;
        }
        /* full blocks: x * (1 / max(absmax, tiny)); the short tail: x / max(absmax, tiny) */
        float scale = 0.0f, div = 0.0f;
        if (b < full) {
            absmax[b] = am;
            scale = 1.0f / (am > tiny ? am : tiny);
        } else {
            div = am > tiny ? am : tiny;
            absmax[b] = div;
        }
        for (int64_t i = i0; i < i1; i += 2) {
            int qv[2] = {7, 7};
            for (int k = 0; k < 2 && i + k < i1; k++) {
                float s = b < full ? x[i + k] * scale : x[i + k] / div;
                s = s < -1.0f ? -1.0f : s > 1.0f ? 1.0f : s;
                qv[k] = nf4_index(s, mid);
            }
            /* blocksize is even, so a byte never straddles two blocks */
            q->packed[i / 2] = (uint8_t)(qv[0] << 4 | qv[1]);
        }
    }
    if (bad >= 0) {
        free(absmax);
        return pl_err_set(err, PL_EINVAL, "nf4: element %lld..: expected finite values, found NaN or infinity",
                          (long long)bad);
    }
    if (!q->double_quant) {
        memcpy(q->absmax, absmax, (size_t)q->n_blocks * sizeof(float));
    } else {
        uint8_t *lut = malloc(DYN_LUT_SIZE);
        if (!lut) {
            free(absmax);
            return pl_err_set(err, PL_ENOMEM, "nf4: out of memory for the 8-bit code table");
        }
        q->offset = pl_nf4_torch_mean(absmax, q->n_blocks, 0);
        memcpy(q->code, pl_nf4_dynamic_map, sizeof q->code);
        dyn_lut_build(q->code, lut);
        for (int64_t b = 0; b < q->n_blocks; b++) absmax[b] = absmax[b] - q->offset;
        for (int64_t nb = 0; nb < q->n_nested; nb++) {
            const int64_t b0 = nb * PL_NF4_NESTED_BLOCK;
            const int64_t b1 = b0 + PL_NF4_NESTED_BLOCK < q->n_blocks ? b0 + PL_NF4_NESTED_BLOCK : q->n_blocks;
            float am = 0.0f;
            for (int64_t b = b0; b < b1; b++) am = fmaxf(am, fabsf(absmax[b]));
            q->nested_absmax[nb] = am;
            if (am == 0.0f) { /* an all-zero nested block: every code 0 */
                for (int64_t b = b0; b < b1; b++) q->absmax_q[b] = 0;
                continue;
            }
            const float inv = 1.0f / am; /* scale by the reciprocal, as bnb */
            for (int64_t b = b0; b < b1; b++) q->absmax_q[b] = lut[dyn_bin(absmax[b] * inv)];
        }
        free(lut);
    }
    free(absmax);
    return 0;
}

int pl_nf4_quantize(const float *x, int64_t n, int blocksize, int double_quant, pl_nf4 *out, pl_err *err) {
    pl_nf4 q;
    if (!valid_blocksize(blocksize))
        return pl_err_set(err, PL_EINVAL, "nf4: blocksize %d: expected a power of two in 32..4096", blocksize);
    if (nf4_shape(&q, n, blocksize, double_quant))
        return pl_err_set(err, PL_EINVAL, "nf4: %lld elements: expected 1..2^46", (long long)n);
    if (nf4_alloc(&q)) return pl_err_set(err, PL_ENOMEM, "nf4: out of memory for %lld elements", (long long)n);
    int rc = nf4_fill(x, &q, err);
    if (rc) {
        pl_nf4_free(&q);
        return rc;
    }
    *out = q;
    return 0;
}

float pl_nf4_block_absmax(const pl_nf4 *q, int64_t b) {
    if (!q->double_quant) return q->absmax[b];
    float a = q->code[q->absmax_q[b]] * q->nested_absmax[b / PL_NF4_NESTED_BLOCK];
    return a + q->offset;
}

int pl_nf4_dequantize(const pl_nf4 *q, int64_t start, int64_t count, float *dst) {
    if (start < 0 || count < 0 || start > q->n || count > q->n - start) return -1;
    int64_t i = start;
    const int64_t end = start + count;
    while (i < end) {
        const int64_t b = i / q->blocksize;
        const int64_t bend = (b + 1) * q->blocksize < end ? (b + 1) * q->blocksize : end;
        const float am = pl_nf4_block_absmax(q, b);
        for (; i < bend; i++) {
            const uint8_t byte = q->packed[i >> 1];
            const int v = i & 1 ? byte & 15 : byte >> 4;
            *dst++ = pl_nf4_code[v] * am;
        }
    }
    return 0;
}

/* ---- weight view --------------------------------------------------------------- */

static int nf4_row(const pl_qweight *w, int64_t r, float *dst) {
    const pl_nf4 *q = w->data;
    if (!q || r < 0 || r >= w->rows) return -1;
    return pl_nf4_dequantize(q, r * w->cols, w->cols, dst);
}

static const pl_qaux nf4_aux = {nf4_row};

int pl_nf4_qweight(const pl_nf4 *q, int64_t rows, int64_t cols, pl_qweight *w) {
    memset(w, 0, sizeof *w);
    if (!q || rows <= 0 || cols <= 0 || rows > q->n / cols || rows * cols != q->n) return -1;
    w->dtype = PL_NF4;
    w->rows = rows;
    w->cols = cols;
    w->row_bytes = 0;
    w->data = q;
    w->aux = &nf4_aux;
    return 0;
}

/* ---- NF4 bases for pl_model --------------------------------------------------- */

static const char *const lin_names[7] = {"q", "k", "v", "o", "gate", "up", "down"};

static void layer_weights(pl_layer *L, pl_qweight *ws[7]) {
    ws[0] = &L->wq; ws[1] = &L->wk; ws[2] = &L->wv; ws[3] = &L->wo;
    ws[4] = &L->w_gate; ws[5] = &L->w_up; ws[6] = &L->w_down;
}

/* A model-owned pl_nf4 for n elements: the struct and its arrays in one
 * pl_model_own allocation (q->buf is NULL: pl_nf4_free must not be called on
 * it; the model frees it). NULL when out of memory. */
static pl_nf4 *model_nf4(pl_model *m, int64_t n, int blocksize, int double_quant) {
    pl_nf4 shape;
    if (nf4_shape(&shape, n, blocksize, double_quant)) return NULL;
    const size_t head = al8(sizeof(pl_nf4)), bytes = nf4_layout(&shape, NULL);
    if (bytes > SIZE_MAX - head) return NULL;
    unsigned char *p = pl_model_own(m, head + bytes);
    if (!p) return NULL;
    pl_nf4 *q = (pl_nf4 *)(void *)p;
    *q = shape;
    nf4_layout(q, p + head);
    q->buf = NULL;
    q->buf_bytes = bytes;
    return q;
}

int pl_nf4_quantize_model(pl_model *m, int blocksize, int double_quant, pl_err *err) {
    if (!valid_blocksize(blocksize))
        return pl_err_set(err, PL_EINVAL, "%s: nf4 blocksize %d: expected a power of two in 32..4096", m->path,
                          blocksize);
    float *tmp = NULL;
    size_t cap = 0;
    int rc = 0;
    for (int l = 0; l < m->cfg.n_layers && !rc; l++) {
        pl_qweight *ws[7];
        layer_weights(&m->layers[l], ws);
        for (int i = 0; i < 7 && !rc; i++) {
            pl_qweight *w = ws[i];
            if (w->dtype == PL_NF4) continue;
            size_t n, bytes;
            if (w->rows <= 0 || w->cols <= 0 || !pl_mul_ok((size_t)w->rows, (size_t)w->cols, &n) ||
                !pl_mul_ok(n, sizeof(float), &bytes)) {
                rc = pl_err_set(err, PL_ERANGE, "%s: layer %d %s weight: %lld x %lld is not a valid size", m->path,
                                l, lin_names[i], (long long)w->rows, (long long)w->cols);
                break;
            }
            if (bytes > cap) { /* one tensor's fp32 rows at most */
                float *t = realloc(tmp, bytes);
                if (!t) {
                    rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory for layer %d %s weight (%zu bytes)", m->path,
                                    l, lin_names[i], bytes);
                    break;
                }
                tmp = t;
                cap = bytes;
            }
            for (int64_t r = 0; r < w->rows && !rc; r++)
                if (pl_qweight_row(w, r, tmp + (size_t)r * (size_t)w->cols))
                    rc = pl_err_set(err, PL_EUNSUPPORTED, "%s: layer %d %s weight: cannot read %s rows", m->path, l,
                                    lin_names[i], pl_dtype_name(w->dtype));
            if (rc) break;
            pl_nf4 *q = model_nf4(m, (int64_t)n, blocksize, double_quant);
            if (!q) {
                rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory quantizing layer %d %s weight to nf4", m->path, l,
                                lin_names[i]);
                break;
            }
            pl_err e2;
            if (nf4_fill(tmp, q, &e2)) {
                rc = pl_err_set(err, e2.code, "%s: layer %d %s weight: %s", m->path, l, lin_names[i], e2.msg);
                break;
            }
            const int64_t rows = w->rows, cols = w->cols;
            pl_nf4_qweight(q, rows, cols, w);
        }
    }
    free(tmp);
    return rc;
}

/* ---- the quantized-base cache ------------------------------------------------ */

#define CACHE_MAGIC "PLNF4CA\n"
#define CACHE_VERSION 1u
#define CACHE_HEAD 56
#define CACHE_MAX_NAME 255

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* sha256("potluck nf4 cache v1" | sha256 of each source weight file, in
 * order | blocksize u32 | double_quant u32). */
static int cache_key(const pl_model *m, int blocksize, int double_quant, uint8_t key[32], pl_err *err) {
    pl_sha256 *h = pl_sha256_new();
    if (!h) return pl_err_set(err, PL_ENOMEM, "%s: out of memory for sha256", m->path);
    static const char tag[] = "potluck nf4 cache v1";
    pl_sha256_update(h, tag, sizeof tag - 1);
    int n_files = 0;
    for (int f = 0;; f++) {
        const char *p = m->st ? pl_st_file_path(m->st, f) : f == 0 ? m->path : NULL;
        if (!p) break;
        uint8_t d[32];
        int rc = pl_sha256_file(p, d, err);
        if (rc) {
            pl_sha256_final(h, d);
            return rc;
        }
        pl_sha256_update(h, d, 32);
        n_files++;
    }
    unsigned char tail[8];
    put_u32(tail, (uint32_t)blocksize);
    put_u32(tail + 4, (uint32_t)!!double_quant);
    pl_sha256_update(h, tail, 8);
    pl_sha256_final(h, key);
    if (!n_files) return pl_err_set(err, PL_EINVAL, "%s: no source weight files to key the nf4 cache on", m->path);
    return 0;
}

static size_t absmax_bytes(const pl_nf4 *q) {
    return (size_t)q->n_blocks * (q->double_quant ? 1 : sizeof(float));
}

static int cache_write(pl_afile *f, pl_sha256 *h, const void *p, size_t n) {
    if (!n) return 0;
    pl_sha256_update(h, p, n);
    return fwrite(p, 1, n, f->fp) == n ? 0 : -1;
}

int pl_nf4_cache_save(const pl_model *m, const char *path, pl_err *err) {
    const int L = m->cfg.n_layers;
    if (L <= 0 || !m->layers)
        return pl_err_set(err, PL_EINVAL, "%s: nf4 cache: the model has no layers", path);
    const pl_nf4 *q0 = m->layers[0].wq.dtype == PL_NF4 ? m->layers[0].wq.data : NULL;
    if (!q0) return pl_err_set(err, PL_EINVAL, "%s: nf4 cache: the model's layer weights are not NF4", path);
    for (int l = 0; l < L; l++) {
        pl_qweight *ws[7];
        layer_weights(&m->layers[l], ws);
        for (int i = 0; i < 7; i++) {
            const pl_nf4 *q = ws[i]->data;
            if (ws[i]->dtype != PL_NF4 || !q || q->blocksize != q0->blocksize || q->double_quant != q0->double_quant)
                return pl_err_set(err, PL_EINVAL, "%s: nf4 cache: layer %d %s weight is not NF4 (blocksize %d, dq %d)",
                                  path, l, lin_names[i], q0->blocksize, q0->double_quant);
        }
    }
    unsigned char head[CACHE_HEAD];
    memcpy(head, CACHE_MAGIC, 8);
    put_u32(head + 8, CACHE_VERSION);
    put_u32(head + 12, (uint32_t)q0->blocksize);
    put_u32(head + 16, (uint32_t)q0->double_quant);
    put_u32(head + 20, (uint32_t)(7 * L));
    int rc = cache_key(m, q0->blocksize, q0->double_quant, head + 24, err);
    if (rc) return pl_err_prefix(err, "nf4 cache %s", path);
    pl_afile f;
    if ((rc = pl_afile_open(&f, path, err))) return rc;
    pl_sha256 *h = pl_sha256_new();
    int bad = !h || cache_write(&f, h, head, CACHE_HEAD);
    for (int l = 0; l < L && !bad; l++) {
        pl_qweight *ws[7];
        layer_weights(&m->layers[l], ws);
        for (int i = 0; i < 7 && !bad; i++) {
            const pl_nf4 *q = ws[i]->data;
            char name[64];
            int nl = snprintf(name, sizeof name, "layers.%d.%s", l, lin_names[i]);
            unsigned char rec[4 + CACHE_MAX_NAME + 8 * 4 + 4 + 8], *p = rec;
            put_u32(p, (uint32_t)nl); p += 4;
            memcpy(p, name, (size_t)nl); p += nl;
            put_u64(p, (uint64_t)ws[i]->rows); p += 8;
            put_u64(p, (uint64_t)ws[i]->cols); p += 8;
            put_u64(p, (uint64_t)q->n_blocks); p += 8;
            put_u64(p, (uint64_t)q->n_nested); p += 8;
            uint32_t ob;
            memcpy(&ob, &q->offset, 4);
            put_u32(p, ob); p += 4;
            const size_t pk = (size_t)(q->n + 1) / 2, ab = absmax_bytes(q), nb = (size_t)q->n_nested * sizeof(float);
            put_u64(p, (uint64_t)(pk + ab + nb)); p += 8;
            const void *am = q->double_quant ? (const void *)q->absmax_q : (const void *)q->absmax;
            bad = cache_write(&f, h, rec, (size_t)(p - rec)) || cache_write(&f, h, q->packed, pk) ||
                  cache_write(&f, h, am, ab) || cache_write(&f, h, q->nested_absmax, nb);
        }
    }
    uint8_t d[32];
    if (h) pl_sha256_final(h, d);
    if (!bad) bad = fwrite(d, 1, 32, f.fp) != 32;
    if (bad) {
        int e = errno;
        pl_afile_abort(&f);
        return h ? pl_err_set(err, PL_EIO, "%s: writing the nf4 cache: %s", path, strerror(e))
                 : pl_err_set(err, PL_ENOMEM, "%s: out of memory for sha256", path);
    }
    return pl_afile_commit(&f, err);
}

/* One tensor record of a mapped cache, validated against the model. */
typedef struct cache_rec {
    pl_qweight *w;
    int64_t n_blocks, n_nested;
    float offset;
    const unsigned char *data; /* packed | absmax | nested */
} cache_rec;

int pl_nf4_cache_load(pl_model *m, const char *path, pl_err *err) {
    pl_map map;
    int rc = pl_map_open(&map, path, err);
    if (rc) return rc;
    const unsigned char *b = map.data;
    const size_t size = map.size;
    const int L = m->cfg.n_layers;
    cache_rec *recs = NULL;
    if (size < CACHE_HEAD + 32) {
        rc = pl_err_set(err, PL_EFORMAT, "%s: nf4 cache: %zu bytes, expected at least %d (header + checksum)", path,
                        size, CACHE_HEAD + 32);
        goto out;
    }
    if (memcmp(b, CACHE_MAGIC, 8) != 0) {
        rc = pl_err_set(err, PL_EFORMAT, "%s: nf4 cache: bad magic (not a potluck nf4 cache)", path);
        goto out;
    }
    if (get_u32(b + 8) != CACHE_VERSION) {
        rc = pl_err_set(err, PL_EUNSUPPORTED, "%s: nf4 cache: version %u, expected %u", path, get_u32(b + 8),
                        CACHE_VERSION);
        goto out;
    }
    uint8_t d[32];
    pl_sha256_buf(b, size - 32, d);
    if (memcmp(d, b + size - 32, 32) != 0) {
        rc = pl_err_set(err, PL_EFORMAT, "%s: nf4 cache: checksum mismatch (truncated or corrupted file)", path);
        goto out;
    }
    const uint32_t bs = get_u32(b + 12), dq = get_u32(b + 16), nt = get_u32(b + 20);
    if (!valid_blocksize(bs) || dq > 1) {
        rc = pl_err_set(err, PL_EFORMAT, "%s: nf4 cache: blocksize %u / double_quant %u out of range", path, bs, dq);
        goto out;
    }
    if (L <= 0 || !m->layers || nt != 7u * (uint32_t)L) {
        rc = pl_err_set(err, PL_EFORMAT, "%s: nf4 cache: %u tensors, the model has %d", path, nt, 7 * L);
        goto out;
    }
    uint8_t key[32];
    if ((rc = cache_key(m, (int)bs, (int)dq, key, err))) {
        pl_err_prefix(err, "nf4 cache %s", path);
        goto out;
    }
    if (memcmp(key, b + 24, 32) != 0) {
        rc = pl_err_set(err, PL_EINVAL, "%s: nf4 cache: made from other weights or settings than %s (blocksize %u, "
                        "double_quant %u): key mismatch", path, m->path, bs, dq);
        goto out;
    }
    recs = calloc(nt, sizeof *recs);
    if (!recs) {
        rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    /* pass 1: every record checked against the file size and the model */
    size_t pos = CACHE_HEAD;
    const size_t end = size - 32;
    for (uint32_t t = 0; t < nt; t++) {
        const int l = (int)(t / 7), i = (int)(t % 7);
        pl_qweight *ws[7];
        layer_weights(&m->layers[l], ws);
        char want[64];
        const int wl = snprintf(want, sizeof want, "layers.%d.%s", l, lin_names[i]);
        if (end - pos < 4 || get_u32(b + pos) != (uint32_t)wl || end - pos - 4 < (size_t)wl + 44 ||
            memcmp(b + pos + 4, want, (size_t)wl) != 0) {
            rc = pl_err_set(err, PL_EFORMAT, "%s: nf4 cache: record %u at byte %zu: expected tensor '%s'", path, t,
                            pos, want);
            goto out;
        }
        const unsigned char *p = b + pos + 4 + wl;
        const uint64_t rows = get_u64(p), cols = get_u64(p + 8), nbk = get_u64(p + 16), nns = get_u64(p + 24);
        const uint32_t ob = get_u32(p + 32);
        const uint64_t db = get_u64(p + 36);
        pl_nf4 shape;
        if (rows != (uint64_t)ws[i]->rows || cols != (uint64_t)ws[i]->cols ||
            nf4_shape(&shape, ws[i]->rows * ws[i]->cols, (int)bs, (int)dq) || (uint64_t)shape.n_blocks != nbk ||
            (uint64_t)shape.n_nested != nns) {
            rc = pl_err_set(err, PL_ERANGE, "%s: nf4 cache: '%s': shape %llu x %llu with %llu blocks / %llu nested, "
                            "expected %lld x %lld", path, want, (unsigned long long)rows, (unsigned long long)cols,
                            (unsigned long long)nbk, (unsigned long long)nns, (long long)ws[i]->rows,
                            (long long)ws[i]->cols);
            goto out;
        }
        const size_t need = (size_t)(shape.n + 1) / 2 + absmax_bytes(&shape) + (size_t)shape.n_nested * sizeof(float);
        pos += 4 + (size_t)wl + 44;
        if (db != need || end - pos < need) {
            rc = pl_err_set(err, PL_ERANGE, "%s: nf4 cache: '%s': %llu data bytes at byte %zu, expected %zu within "
                            "the file (%zu bytes)", path, want, (unsigned long long)db, pos, need, size);
            goto out;
        }
        recs[t].w = ws[i];
        recs[t].n_blocks = shape.n_blocks;
        recs[t].n_nested = shape.n_nested;
        memcpy(&recs[t].offset, &ob, 4);
        recs[t].data = b + pos;
        pos += need;
    }
    if (pos != end) {
        rc = pl_err_set(err, PL_EFORMAT, "%s: nf4 cache: %zu unexpected bytes after the last tensor", path, end - pos);
        goto out;
    }
    /* pass 2: copy into model-owned tensors (only allocation can fail here;
     * weights already replaced stay valid) */
    for (uint32_t t = 0; t < nt; t++) {
        pl_qweight *w = recs[t].w;
        const int64_t rows = w->rows, cols = w->cols;
        pl_nf4 *q = model_nf4(m, rows * cols, (int)bs, (int)dq);
        if (!q) {
            rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory loading the nf4 cache", path);
            goto out;
        }
        const size_t pk = (size_t)(q->n + 1) / 2, ab = absmax_bytes(q), nb = (size_t)q->n_nested * sizeof(float);
        memcpy(q->packed, recs[t].data, pk);
        memcpy(q->double_quant ? (void *)q->absmax_q : (void *)q->absmax, recs[t].data + pk, ab);
        if (nb) memcpy(q->nested_absmax, recs[t].data + pk + ab, nb);
        q->offset = recs[t].offset;
        if (q->double_quant) memcpy(q->code, pl_nf4_dynamic_map, sizeof q->code);
        pl_nf4_qweight(q, rows, cols, w);
    }
out:
    free(recs);
    pl_map_close(&map);
    return rc;
}

/* ---- bitsandbytes-4bit checkpoints (*-bnb-4bit) ------------------------------ */

/* The companion tensor "<name>.<suffix>" with the given dtype and element
 * count (-1: any); NULL with err set otherwise. */
static const pl_st_tensor *bnb_part(pl_model *m, const char *name, const char *suffix, pl_dtype dt, int64_t count,
                                    pl_err *err) {
    char full[512];
    if (snprintf(full, sizeof full, "%s.%s", name, suffix) >= (int)sizeof full) {
        pl_err_set(err, PL_EINVAL, "%s: tensor name '%s' too long", m->path, name);
        return NULL;
    }
    const pl_st_tensor *t = pl_st_find(m->st, full);
    if (!t) {
        pl_err_set(err, PL_ENOTFOUND, "%s: 4-bit tensor '%s': missing '%s'", m->path, name, full);
        return NULL;
    }
    if (t->dtype != dt || (count >= 0 && t->n_elems != count) || t->nbytes != (size_t)t->n_elems * pl_dtype_block_bytes(dt)) {
        pl_err_set(err, PL_EFORMAT, "%s: '%s': expected %s with %lld elements, found %s with %lld", m->path, full,
                   pl_dtype_name(dt), (long long)count, pl_dtype_name(t->dtype), (long long)t->n_elems);
        return NULL;
    }
    return t;
}

static int json_num(const cJSON *j, const char *key, double *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsNumber(it)) return -1;
    *out = it->valuedouble;
    return 0;
}

int pl_nf4_bnb_weight(pl_model *m, const char *name, int64_t rows, int64_t cols, pl_qweight *w, pl_err *err) {
    memset(w, 0, sizeof *w);
    if (!m->st) return pl_err_set(err, PL_EINVAL, "%s: '%s': 4-bit weights need a safetensors model", m->path, name);
    if (strncmp(name, "model.layers.", 13) != 0)
        return pl_err_set(err, PL_EUNSUPPORTED, "%s: '%s': only the layers' linear weights may be 4-bit", m->path, name);
    if (rows <= 0 || cols <= 0 || rows > ((int64_t)1 << 46) / cols)
        return pl_err_set(err, PL_ERANGE, "%s: '%s': shape %lld x %lld out of range", m->path, name, (long long)rows,
                          (long long)cols);
    const pl_st_tensor *t = pl_st_find(m->st, name);
    if (!t) return pl_err_set(err, PL_ENOTFOUND, "%s: missing tensor '%s'", m->path, name);
    const pl_st_tensor *js = bnb_part(m, name, "quant_state.bitsandbytes__nf4", PL_U8, -1, err);
    if (!js) return err ? err->code : PL_EFORMAT; /* (FP4 checkpoints land here too: NF4 only) */
    if (js->n_elems <= 0 || js->n_elems > 65536)
        return pl_err_set(err, PL_ERANGE, "%s: '%s' quant state: %lld bytes, expected 1..65536", m->path, name,
                          (long long)js->n_elems);
    cJSON *j = cJSON_ParseWithLength((const char *)js->data, (size_t)js->n_elems);
    if (!j) return pl_err_set(err, PL_EFORMAT, "%s: '%s' quant state: not JSON", m->path, name);
    double bsd = 0, nbs = 0, noff = 0;
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *qt = cJSON_GetObjectItemCaseSensitive(j, "quant_type");
    int rc = 0;
    const int nested = cJSON_GetObjectItemCaseSensitive(j, "nested_blocksize") != NULL;
    if (json_num(j, "blocksize", &bsd) || !(bsd >= 32 && bsd <= 4096) || !valid_blocksize((int64_t)bsd) ||
        bsd != (double)(int64_t)bsd)
        rc = pl_err_set(err, PL_EFORMAT, "%s: '%s' quant state: blocksize missing or not a power of two in 32..4096",
                        m->path, name);
    else if (!cJSON_IsString(qt) || strcmp(qt->valuestring, "nf4") != 0)
        rc = pl_err_set(err, PL_EUNSUPPORTED, "%s: '%s' quant state: quant_type %s, expected \"nf4\"", m->path, name,
                        cJSON_IsString(qt) ? qt->valuestring : "missing");
    else if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) != 2 ||
             !cJSON_IsNumber(cJSON_GetArrayItem(shape, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(shape, 1)) ||
             cJSON_GetArrayItem(shape, 0)->valuedouble != (double)rows ||
             cJSON_GetArrayItem(shape, 1)->valuedouble != (double)cols)
        rc = pl_err_set(err, PL_EFORMAT, "%s: '%s' quant state: shape is not [%lld, %lld]", m->path, name,
                        (long long)rows, (long long)cols);
    else if (nested && (json_num(j, "nested_blocksize", &nbs) || nbs != PL_NF4_NESTED_BLOCK ||
                        json_num(j, "nested_offset", &noff) || !isfinite(noff)))
        rc = pl_err_set(err, PL_EUNSUPPORTED, "%s: '%s' quant state: expected nested_blocksize %d and a finite "
                        "nested_offset", m->path, name, PL_NF4_NESTED_BLOCK);
    cJSON_Delete(j);
    if (rc) return rc;
    pl_nf4 shp;
    nf4_shape(&shp, rows * cols, (int)bsd, nested);
    const int64_t packed = (shp.n + 1) / 2;
    if (t->dtype != PL_U8 || t->n_elems != packed || t->nbytes != (size_t)packed)
        return pl_err_set(err, PL_EFORMAT, "%s: '%s': expected %lld packed bytes (U8), found %s with %lld elements",
                          m->path, name, (long long)packed, pl_dtype_name(t->dtype), (long long)t->n_elems);
    const pl_st_tensor *qm = bnb_part(m, name, "quant_map", PL_F32, 16, err);
    if (!qm) return err ? err->code : PL_EFORMAT;
    if (memcmp(qm->data, pl_nf4_code, sizeof pl_nf4_code) != 0)
        return pl_err_set(err, PL_EUNSUPPORTED, "%s: '%s.quant_map' is not the NF4 code", m->path, name);
    const pl_st_tensor *ab = NULL, *na = NULL, *nm = NULL;
    if (nested) {
        if (!(ab = bnb_part(m, name, "absmax", PL_U8, shp.n_blocks, err)) ||
            !(na = bnb_part(m, name, "nested_absmax", PL_F32, shp.n_nested, err)) ||
            !(nm = bnb_part(m, name, "nested_quant_map", PL_F32, 256, err)))
            return err ? err->code : PL_EFORMAT;
    } else if (!(ab = bnb_part(m, name, "absmax", PL_F32, shp.n_blocks, err))) {
        return err ? err->code : PL_EFORMAT;
    }
    pl_nf4 *q = model_nf4(m, rows * cols, (int)bsd, nested);
    if (!q) return pl_err_set(err, PL_ENOMEM, "%s: out of memory for '%s'", m->path, name);
    memcpy(q->packed, t->data, (size_t)packed);
    if (nested) {
        memcpy(q->absmax_q, ab->data, (size_t)shp.n_blocks);
        memcpy(q->nested_absmax, na->data, (size_t)shp.n_nested * sizeof(float));
        memcpy(q->code, nm->data, sizeof q->code);
        q->offset = (float)noff;
    } else {
        memcpy(q->absmax, ab->data, (size_t)shp.n_blocks * sizeof(float));
    }
    return pl_nf4_qweight(q, rows, cols, w) ? pl_err_set(err, PL_EINVAL, "%s: '%s': bad shape", m->path, name) : 0;
}
