/* nf4.c: NF4 + double quantization bit-compatible with bitsandbytes (CPU),
 * on-the-fly row dequantization for the linear layers (a pl_qweight view).
 * Quantizing a model, its on-disk cache and bitsandbytes-4bit checkpoints
 * are the model's business: trainer/model_nf4.c.
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
 *    one fp32 division by the count. Reproduced in pl_nf4_tsum (nf4_math.h).
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
#include "nf4_math.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


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

float pl_nf4_torch_mean(const float *x, int64_t n, int lanes) {
    if (lanes != 8 && lanes != 16) lanes = g_mean_lanes ? g_mean_lanes : default_lanes();
    if (n <= 0) return NAN;
    return pl_nf4_tsum(x, n, lanes) / (float)n;
}

/* ---- layout ---------------------------------------------------------------- */

static size_t al8(size_t x) { return (x + 7) & ~(size_t)7; }

/* Byte offsets of the arrays inside one buffer; assigns the pointers when
 * base is non-NULL. Returns the total size. Sizes are checked by callers. */
size_t pl_nf4_layout(pl_nf4 *q, unsigned char *base) {
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

int pl_nf4_valid_blocksize(int64_t bs) {
    return bs >= 32 && bs <= 4096 && (bs & (bs - 1)) == 0;
}

/* Fill the counts of q for n elements; 0 or -1 when n is out of range. */
int pl_nf4_shape(pl_nf4 *q, int64_t n, int blocksize, int double_quant) {
    memset(q, 0, sizeof *q);
    if (n <= 0 || n > ((int64_t)1 << 46) || !pl_nf4_valid_blocksize(blocksize)) return -1;
    q->n = n;
    q->blocksize = blocksize;
    q->double_quant = !!double_quant;
    q->n_blocks = (n + blocksize - 1) / blocksize;
    q->n_nested = q->double_quant ? (q->n_blocks + PL_NF4_NESTED_BLOCK - 1) / PL_NF4_NESTED_BLOCK : 0;
    return 0;
}

static int nf4_alloc(pl_nf4 *q) {
    size_t bytes = pl_nf4_layout(q, NULL);
    unsigned char *b = calloc(1, bytes ? bytes : 1);
    if (!b) return -1;
    pl_nf4_layout(q, b);
    return 0;
}

void pl_nf4_free(pl_nf4 *q) {
    if (!q) return;
    free(q->buf);
    memset(q, 0, sizeof *q);
}

/* ---- quantization ------------------------------------------------------------ */

/* bitsandbytes' CPU 8-bit quantizer (quantize_cpu in libbitsandbytes_cpu,
 * 0.50.x) does no search per value: it discretizes [-1, 1] into 65536 bins
 * and looks the code up in a table built once per map. Bin i stands for
 * (2 * i) / 65535 - 1 (fp32, that order); its code is the number of fp32
 * midpoints 0.5 * (code[k] + code[k + 1]) strictly below that value. A
 * value's bin is pl_nf4_dyn_bin (nf4_math.h): the library is built with FMA
 * contraction, and that fused rounding is what moves values within ~1e-5 of
 * a bin edge (and so of a midpoint) to the other code. */
#define DYN_LUT_SIZE PL_NF4_DYN_BINS

static void dyn_lut_build(const float *code, uint8_t *lut) {
    float mid[255];
    for (int k = 0; k < 255; k++) mid[k] = 0.5f * (code[k] + code[k + 1]);
    int c = 0;
    for (int i = 0; i < DYN_LUT_SIZE; i++) {
        const float v = pl_nf4_dyn_bin_value(i);
        while (c < 255 && mid[c] < v) c++;
        lut[i] = (uint8_t)c;
    }
}

/* Quantize x (q->n floats) into q, whose counts and arrays are already laid
 * out (nf4_shape + nf4_layout). On error q's arrays hold garbage. */
int pl_nf4_fill(const float *x, pl_nf4 *q, pl_err *err) {
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
                qv[k] = pl_nf4_code_index(s, mid);
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
            for (int64_t b = b0; b < b1; b++) q->absmax_q[b] = lut[pl_nf4_dyn_bin(absmax[b] * inv)];
        }
        free(lut);
    }
    free(absmax);
    return 0;
}

int pl_nf4_quantize(const float *x, int64_t n, int blocksize, int double_quant, pl_nf4 *out, pl_err *err) {
    pl_nf4 q;
    if (!pl_nf4_valid_blocksize(blocksize))
        return pl_err_set(err, PL_EINVAL, "nf4: blocksize %d: expected a power of two in 32..4096", blocksize);
    if (pl_nf4_shape(&q, n, blocksize, double_quant))
        return pl_err_set(err, PL_EINVAL, "nf4: %lld elements: expected 1..2^46", (long long)n);
    if (nf4_alloc(&q)) return pl_err_set(err, PL_ENOMEM, "nf4: out of memory for %lld elements", (long long)n);
    int rc = pl_nf4_fill(x, &q, err);
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
