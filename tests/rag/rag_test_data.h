/* tests/rag/rag_test_data.h - seeded clustered vectors for the index tests:
 * a Gaussian mixture (centres + noise), the shape of real embeddings, where
 * uniform noise would make neighbours meaningless. */
#ifndef LOOM_TESTS_RAG_DATA_H
#define LOOM_TESTS_RAG_DATA_H
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

static inline uint64_t rt_next(uint64_t *s) {
    uint64_t x = (*s += 0x9e3779b97f4a7c15ull);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}
static inline float rt_gauss(uint64_t *s) {
    double u1 = ((double)(rt_next(s) >> 11) + 1.0) / 9007199254740993.0;
    double u2 = (double)(rt_next(s) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
/* n x d vectors around n_centres centres (noise sigma), row-major, malloc'd. */
static inline float *rt_mixture(size_t n, int d, int n_centres, float sigma, uint64_t seed) {
    float *c = malloc((size_t)n_centres * d * sizeof(float));
    float *v = malloc(n * d * sizeof(float));
    if (!c || !v) {
        free(c), free(v);
        return NULL;
    }
    for (size_t i = 0; i < (size_t)n_centres * d; i++)
        c[i] = rt_gauss(&seed);
    for (size_t i = 0; i < n; i++) {
        size_t k = rt_next(&seed) % (uint64_t)n_centres;
        for (int j = 0; j < d; j++)
            v[i * d + j] = c[k * d + j] + sigma * rt_gauss(&seed);
    }
    free(c);
    return v;
}
#endif
