/* minhash.h: shingling, 64-bit text hashing, MinHash signatures and an LSH
 * index for streaming near-duplicate detection.
 *
 * Shingles. unit "word": the text is lowercased (ASCII letters) and split into
 * words = maximal runs of [a-z0-9] and bytes >= 0x80 (so UTF-8 letters of any
 * script stay inside words; every other byte separates); a shingle is n
 * consecutive words. unit "char": a shingle is n consecutive UTF-8 code points
 * of the ASCII-lowercased text. A text with fewer than n tokens gives one
 * shingle made of all its tokens (none when it has no token at all).
 * Each token is hashed once (pl_hash64); a shingle's hash folds its tokens'
 * hashes in order, so equal shingle sets give equal hash sets.
 *
 * Signature: num_perm values sig[p] = min over shingles of
 * ((a_p * x + b_p) mod 2^64) >> 32, where x is the shingle's 32-bit key (the
 * 64-bit hash folded) and a_p, b_p are 64-bit values drawn from Philox
 * (core/rng.h) under the seed: Dietzfelbinger's multiply-add-shift family,
 * strongly universal from 32-bit keys to 32-bit values. datasketch uses
 * (a * h + b) mod (2^61 - 1) over 32-bit SHA-1 values, one 128-bit product
 * and a reduction per permutation; this family needs one 64-bit multiply,
 * which is where most of the speed comes from. Both estimate the Jaccard
 * index as the share of equal signature entries (standard error
 * sqrt(J (1 - J) / num_perm)); tests/test_minhash.c checks the estimates
 * and decisions against datasketch's on the same documents.
 *
 * LSH: b bands of r rows (b * r <= num_perm); each band's r values hash to a
 * bucket key; two documents are candidates when any band key matches; a
 * candidate is a duplicate when its estimated Jaccard >= threshold.
 *
 * Defaults and where they come from:
 *   datatrove MinhashConfig: word 5-grams, 14 buckets x 8 hashes = 112 perms
 *     (an S-curve midpoint near (1/14)^(1/8) = 0.72);
 *   NeMo Curator fuzzy dedup: char 24-grams, 260 perms = 20 bands x 13 rows
 *     (midpoint near (1/20)^(1/13) = 0.79), Jaccard threshold 0.8;
 *   ours: word 5-grams, 128 perms, threshold 0.8, and (b, r) chosen from the
 *     threshold as datasketch's MinHashLSH does (pl_minhash_optimal_param;
 *     for 0.8 / 128 that is 9 bands x 13 rows). */
#ifndef PL_MINHASH_H
#define PL_MINHASH_H

#include <stddef.h>
#include <stdint.h>
#include "../core/error.h"

#define PL_MINHASH_EMPTY ((uint64_t)1 << 32) /* signature value of a text without shingles */

enum pl_shingle_unit { PL_UNIT_WORD = 0, PL_UNIT_CHAR = 1 };

/* 64-bit hash of bytes (our own multiply-fold mix; deterministic across runs
 * and machines). */
uint64_t pl_hash64(const void *data, size_t len, uint64_t seed);
/* Fold one more 64-bit value into a running hash. */
uint64_t pl_hash64_fold(uint64_t h, uint64_t v);

/* Tokens of a text for shingling (see above): hash, byte offset and byte
 * length of each token in the original text. Growable; reuse across calls. */
typedef struct pl_tokens {
    uint64_t *hash;
    uint32_t *off, *len;
    size_t n, cap;
} pl_tokens;
int pl_tokens_split(pl_tokens *t, const char *text, size_t len, int unit, pl_err *err);
void pl_tokens_free(pl_tokens *t);
/* Hash of the n-gram of tokens [i, i + n) (n clipped to the tokens left). */
uint64_t pl_tokens_gram(const pl_tokens *t, size_t i, size_t n);

/* The distinct shingle hashes of a text, sorted ascending (*out malloc'd,
 * *n_out entries; NULL/0 when the text has no token). */
int pl_shingles(const char *text, size_t len, int ngram, int unit, uint64_t **out, size_t *n_out, pl_err *err);
/* Exact Jaccard of two sorted distinct hash lists (1 when both are empty). */
double pl_jaccard_sorted(const uint64_t *a, size_t na, const uint64_t *b, size_t nb);

typedef struct pl_minhash_opts {
    int num_perm;       /* signature length (default 128) */
    double threshold;   /* estimated Jaccard for a duplicate (default 0.8) */
    int bands, rows;    /* 0, 0: chosen from threshold and num_perm */
    int ngram;          /* shingle size (default 5) */
    int unit;           /* PL_UNIT_WORD (default) or PL_UNIT_CHAR */
    uint64_t seed;      /* permutation seed (default 1) */
} pl_minhash_opts;

void pl_minhash_opts_default(pl_minhash_opts *o);

/* datasketch's choice of (bands, rows): minimize wfp * FP + wfn * FN over
 * b * r <= num_perm, where FP = integral over [0, t] of 1 - (1 - s^r)^b and
 * FN = integral over [t, 1] of (1 - s^r)^b (our own integration: composite
 * Simpson on 2048 intervals). datasketch uses weights 0.5, 0.5. */
void pl_minhash_optimal_param(double threshold, int num_perm, double wfp, double wfn, int *bands, int *rows);

typedef struct pl_minhash pl_minhash;

/* Checks the options (num_perm 1..4096, 0 < threshold <= 1, bands * rows <=
 * num_perm, ngram 1..1024). */
int pl_minhash_new(pl_minhash **out, const pl_minhash_opts *o, pl_err *err);
void pl_minhash_free(pl_minhash *m);
const pl_minhash_opts *pl_minhash_options(const pl_minhash *m); /* resolved: bands, rows set */

/* sig has num_perm entries. *n_shingles (may be NULL): shingle positions. */
int pl_minhash_signature(pl_minhash *m, const char *text, size_t len, uint64_t *sig, size_t *n_shingles,
                         pl_err *err);
/* Share of equal entries of two signatures. */
double pl_minhash_jaccard(const uint64_t *a, const uint64_t *b, int num_perm);

/* Every inserted document sharing a band with sig (LSH candidates), by
 * ascending id, with its estimated Jaccard. The arrays are the index's own
 * and stay valid until the next call on m. */
int pl_minhash_query(pl_minhash *m, const uint64_t *sig, const int64_t **ids, const double **jac, size_t *n,
                     pl_err *err);
/* Insert a signature under a caller-chosen id. */
int pl_minhash_insert(pl_minhash *m, const uint64_t *sig, int64_t id, pl_err *err);

/* Streaming near-dedup. The document gets id = number of earlier
 * check_add calls (0-based). If an inserted document has estimated Jaccard
 * >= threshold with it (among LSH candidates), *dup_of = that document's id
 * (the most similar; ties: the earliest) and *jac its estimate; the
 * document is not inserted. Otherwise *dup_of = -1 and it is inserted. */
int pl_minhash_check_add(pl_minhash *m, const char *text, size_t len, int64_t *dup_of, double *jac, pl_err *err);
/* Documents seen by check_add, and inserted (by check_add or insert). */
int64_t pl_minhash_seen(const pl_minhash *m);
int64_t pl_minhash_size(const pl_minhash *m);

/* The LSH bucket key under which the index files sig's band `band`. */
uint64_t pl_minhash_band_key(const pl_minhash *m, const uint64_t *sig, int band);

/* check_add's decisions over n documents, computed in parts by band
 * (dedup by band ownership over several ranks, docs/distributed.md).
 * A candidate pair: documents j < i whose keys agree in some band and whose
 * estimated Jaccard (equal low 32 bits of the entries, as the index
 * compares them) is >= threshold. */
typedef struct pl_minhash_pair {
    int64_t i, j;  /* j < i */
    int32_t eq;    /* equal signature entries: the estimate is eq / num_perm */
    int32_t band;  /* the band that found it (the first one, after resolve's sort) */
} pl_minhash_pair;
/* The candidate pairs of the bands b with b % nparts == part, over the n
 * signatures sigs (n x num_perm), appended to *pairs (*n_pairs entries,
 * *cap allocated; realloc'd). Every pair of documents sharing a bucket is
 * compared, so a bucket of k documents costs k (k - 1) / 2 comparisons. */
int pl_minhash_pairs(const pl_minhash *m, const uint64_t *sigs, int64_t n, int part, int nparts, pl_minhash_pair **pairs,
                     size_t *n_pairs, size_t *cap, pl_err *err);
/* From the pairs of every part (any order, a pair may repeat; sorted here):
 * dup_of[i] = the kept document i duplicates (the most similar; ties: the
 * earliest) or -1 when i is kept, jac[i] its estimate: exactly what n calls
 * of check_add on the documents in order give. */
int pl_minhash_resolve(const pl_minhash *m, pl_minhash_pair *pairs, size_t n_pairs, int64_t n, int64_t *dup_of, double *jac,
                       pl_err *err);

#endif
