/* rng.h: a counter-based random generator (Philox4x32-10).
 *
 * Every random choice is a pure function of (seed, stream, index): no hidden
 * state, so a resumed or parallel run draws the same numbers as a serial one.
 * Streams separate uses (dropout, sampling, shuffling, ...); index counts
 * draws within a stream. */
#ifndef PL_RNG_H
#define PL_RNG_H

#include <stdint.h>

/* Four 32-bit words for counter (stream, index) under key seed. */
void pl_philox(uint64_t seed, uint64_t stream, uint64_t index, uint32_t out[4]);

uint32_t pl_rng_u32(uint64_t seed, uint64_t stream, uint64_t index);
uint64_t pl_rng_u64(uint64_t seed, uint64_t stream, uint64_t index);
/* Uniform in [0, 1) with 24 random bits (float) or 53 (double). */
float pl_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index);
double pl_rng_uniform_d(uint64_t seed, uint64_t stream, uint64_t index);
/* Standard normal (Box-Muller on one counter). */
float pl_rng_normal(uint64_t seed, uint64_t stream, uint64_t index);
/* Uniform integer in [0, n) without modulo bias; n > 0. */
uint64_t pl_rng_below(uint64_t seed, uint64_t stream, uint64_t index, uint64_t n);

#endif
