/* half.h: fp16 and bf16 <-> fp32 conversions, exact and round-to-nearest-even.
 * Usable from C and CUDA (PL_HD). */
#ifndef PL_HALF_H
#define PL_HALF_H

#include <stdint.h>
#include <string.h>

#include "hd.h"

static inline PL_HD float pl_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline PL_HD uint32_t pl_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static inline PL_HD float pl_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0) {
        if (man == 0) return pl_bits_f32(sign);
        /* subnormal: renormalize */
        int e = -1;
        do { e++; man <<= 1; } while (!(man & 0x400u));
        man &= 0x3ffu;
        return pl_bits_f32(sign | ((uint32_t)(127 - 15 - e) << 23) | (man << 13));
    }
    if (exp == 31) return pl_bits_f32(sign | 0x7f800000u | (man << 13));
    return pl_bits_f32(sign | ((exp + 127 - 15) << 23) | (man << 13));
}

static inline PL_HD uint16_t pl_f32_to_f16(float f) {
    uint32_t x = pl_f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u | ((ax >> 13) & 0x3ffu) : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to inf */
    if (ax < 0x38800000u) { /* subnormal or zero in fp16 */
        if (ax < 0x33000000u) return (uint16_t)sign; /* below half the smallest subnormal */
        uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t v = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (v & 1))) v++;
        return (uint16_t)(sign | v);
    }
    uint32_t v = ((ax >> 13) - ((127u - 15u) << 10));
    uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (v & 1))) v++;
    return (uint16_t)(sign | v);
}

static inline PL_HD float pl_bf16_to_f32(uint16_t h) { return pl_bits_f32((uint32_t)h << 16); }

static inline PL_HD uint16_t pl_f32_to_bf16(float f) {
    uint32_t x = pl_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet nan */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

#endif
