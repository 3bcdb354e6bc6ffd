/* rng.c: Philox4x32-10 counter-based random numbers keyed by (seed, stream, index).
 *
 * Philox4x32-10 is the generator of Salmon, Moraes, Dror and Shaw, "Parallel
 * random numbers: as easy as 1, 2, 3" (SC 2011), as in the Random123 library:
 * ten rounds of two 32x32->64 multiplications (0xD2511F53, 0xCD9E8D57) with a
 * Weyl key schedule (0x9E3779B9, 0xBB67AE85) bumped between rounds.
 *
 * Mapping of potluck's (seed, stream, index) onto Philox's key and counter
 * (fixed forever: changing it changes every random choice of every run):
 *
 *   key[0] = seed   & 0xffffffff     key[1] = seed   >> 32
 *   ctr[0] = index  & 0xffffffff     ctr[1] = index  >> 32
 *   ctr[2] = stream & 0xffffffff     ctr[3] = stream >> 32
 *
 * so pl_philox(seed, stream, index) returns Random123's
 * philox4x32_R(10, ctr, key) words 0..3 unchanged, and Random123's known-answer
 * vectors can be checked through it (see tests/test_core.c).
 *
 * Derived values from the four output words w[0..3] of one counter:
 *   u32       w[0]
 *   u64       w[0] | w[1] << 32
 *   uniform   (w[0] >> 8) * 2^-24                      in [0, 1), 24 bits
 *   uniform_d (u64 >> 11) * 2^-53                      in [0, 1), 53 bits
 *   normal    Box-Muller: u1 = (w[0] + 1) * 2^-32 in (0, 1], u2 = w[1] * 2^-32,
 *             sqrt(-2 ln u1) * cos(2 pi u2), computed in double
 *   below(n)  Lemire's multiply-shift with rejection on 64-bit words: try
 *             w[0..1], then w[2..3]; further tries (probability < n/2^64 each)
 *             use the same counter under key seed + k * 0x9E3779B97F4A7C15.
 *             Exactly uniform, and still a pure function of (seed, stream, index). */
#include "rng.h"
#include "philox.h"

#include <math.h>

void pl_philox(uint64_t seed, uint64_t stream, uint64_t index, uint32_t out[4]) {
    pl_philox4(seed, stream, index, out); /* core/philox.h */
}

uint32_t pl_rng_u32(uint64_t seed, uint64_t stream, uint64_t index) {
    uint32_t w[4];
    pl_philox(seed, stream, index, w);
    return w[0];
}

uint64_t pl_rng_u64(uint64_t seed, uint64_t stream, uint64_t index) {
    uint32_t w[4];
    pl_philox(seed, stream, index, w);
    return (uint64_t)w[0] | (uint64_t)w[1] << 32;
}

float pl_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
    return (float)(pl_rng_u32(seed, stream, index) >> 8) * 0x1.0p-24f;
}

double pl_rng_uniform_d(uint64_t seed, uint64_t stream, uint64_t index) {
    return (double)(pl_rng_u64(seed, stream, index) >> 11) * 0x1.0p-53;
}

float pl_rng_normal(uint64_t seed, uint64_t stream, uint64_t index) {
    return pl_philox_normal(seed, stream, index); /* core/philox.h */
}

/* Lemire: x * n as a 128-bit number; its high word is uniform in [0, n)
 * once the low word is not below 2^64 mod n. Returns 1 and sets *out if x
 * is accepted. */
static int lemire_try(uint64_t x, uint64_t n, uint64_t *out) {
    unsigned __int128 m = (unsigned __int128)x * n;
    uint64_t lo = (uint64_t)m;
    if (lo < n) {
        uint64_t t = (0 - n) % n; /* 2^64 mod n */
        if (lo < t) return 0;
    }
    *out = (uint64_t)(m >> 64);
    return 1;
}

uint64_t pl_rng_below(uint64_t seed, uint64_t stream, uint64_t index, uint64_t n) {
    if (n <= 1) return 0;
    uint64_t r = 0;
    for (uint64_t k = 0;; k++) {
        uint32_t w[4];
        pl_philox(seed + k * 0x9E3779B97F4A7C15ull, stream, index, w);
        if (lemire_try((uint64_t)w[0] | (uint64_t)w[1] << 32, n, &r)) return r;
        if (lemire_try((uint64_t)w[2] | (uint64_t)w[3] << 32, n, &r)) return r;
    }
}
