/* train/minhash.h - MinHash signatures and an LSH index for near-duplicate
 * documents (Broder 1997; the banding of Leskovec et al., MMDS ch. 3; the
 * parameter choice of datasketch's MinHashLSH). Used by `loom data prep`.
 *
 * The rule:
 *   - words: maximal runs of bytes that are ASCII letters/digits or >= 0x80
 *     (any non-ASCII UTF-8), ASCII letters lowercased;
 *   - shingles: every run of `ngram` consecutive words joined by one space
 *     (a text with fewer words has one shingle of all of them; none has none);
 *   - shingle hash x = FNV-1a 64 of its bytes, reduced mod p = 2^61 - 1;
 *   - permutation i: h_i(x) = (a_i * x + b_i) mod p, with a_i in [1, p) and
 *     b_i in [0, p) drawn from splitmix64(seed) in order a_0, b_0, a_1, ...
 *     (each draw taken mod p, a redrawn when 0), kept as its low 32 bits (as
 *     datasketch does); signature[i] = min over shingles (UINT32_MAX for an
 *     empty text);
 *   - estimated Jaccard = fraction of equal signature entries;
 *   - LSH: b bands of r rows (b*r <= num_perm) minimising
 *     0.5 * false-positive area + 0.5 * false-negative area of
 *     P(s) = 1 - (1 - s^r)^b around the threshold (datasketch's
 *     _optimal_param, integrals by Simpson's rule on 1000 intervals); two
 *     documents are candidates when any band's r values are all equal.
 * Candidates are then confirmed by the estimated Jaccard >= threshold. */
#ifndef LOOM_TRAIN_MINHASH_H
#define LOOM_TRAIN_MINHASH_H

#include <stddef.h>
#include <stdint.h>

#include "loom/status.h"

typedef struct loom_minhash {
    int num_perm; /* 1..1024 */
    int ngram;    /* >= 1 */
    uint64_t *a, *b;
} loom_minhash;

loom_status loom_minhash_init(loom_minhash *m, int num_perm, int ngram, uint64_t seed);
void loom_minhash_free(loom_minhash *m);
/* sig[num_perm] of text[0..len). Returns the number of shingles. */
int64_t loom_minhash_signature(const loom_minhash *m, const char *text, size_t len, uint32_t *sig);
double loom_minhash_jaccard(const uint32_t *s1, const uint32_t *s2, int num_perm);
/* Exact Jaccard of the two texts' shingle sets (the definition the estimate
 * approximates; for tests and reports). -1 on OOM; 1 when both are empty. */
double loom_minhash_exact_jaccard(int ngram, const char *t1, size_t n1, const char *t2, size_t n2);

/* LSH bands/rows for a threshold in (0, 1]. */
void loom_lsh_params(double threshold, int num_perm, int *bands, int *rows);

typedef struct loom_lsh loom_lsh;
loom_status loom_lsh_create(int num_perm, double threshold, loom_lsh **out);
void loom_lsh_free(loom_lsh *l);
int loom_lsh_bands(const loom_lsh *l);
int loom_lsh_rows(const loom_lsh *l);
/* The best stored document whose estimated Jaccard with sig is >= the
 * threshold among the LSH candidates: its id, or -1; *sim gets the estimate. */
int64_t loom_lsh_query(const loom_lsh *l, const uint32_t *sig, double *sim);
/* Stores sig (copied) under the next id (0, 1, ...); returns the id or -1 on OOM. */
int64_t loom_lsh_insert(loom_lsh *l, const uint32_t *sig);

#endif
