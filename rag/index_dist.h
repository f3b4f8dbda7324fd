/* rag/index_dist.h - distance kernels of the vector index (internal).
 *
 * One function per (storage type, metric): dist(q, x, scale, d) with q the
 * f32 query, x one stored row (f32, f16 or int8 with its scale), lower is
 * better: the negated inner product for IP/cosine, the squared distance for
 * L2. Chosen once per index from the CPU (AVX-512, AVX2+F16C, scalar), capped
 * by LOOM_CPU_ISA like the cpu backend's kernels. */
#ifndef LOOM_RAG_INDEX_DIST_H
#define LOOM_RAG_INDEX_DIST_H

#include <stddef.h>
#include <stdint.h>

typedef float (*loom_rag_dist_fn)(const float *q, const void *x, float scale, int d);

/* Eight f32 queries (row-major, stride d) against one f32 row: out[j] is
 * query j's distance. Batched exact search streams the rows once per eight
 * queries instead of once per query. */
typedef void (*loom_rag_dist8_fn)(const float *q, const float *x, int d, float *out);

typedef struct loom_rag_kernels {
    const char *isa;
    /* [vtype][0 = negated inner product, 1 = squared L2] */
    loom_rag_dist_fn dist[3][2];
    /* f32 rows only; NULL in the scalar table (callers loop over dist). */
    loom_rag_dist8_fn dist8[2];
} loom_rag_kernels;

typedef enum {
    LOOM_RAG_ISA_SCALAR = 0,
    LOOM_RAG_ISA_AVX2 = 1,
    LOOM_RAG_ISA_AVX512 = 2
} loom_rag_isa;

/* The best kernels this CPU runs, capped by env (the value of LOOM_CPU_ISA:
 * avx512|avx2|scalar, NULL or unknown: no cap). */
void loom_rag_kernels_select(const char *env, loom_rag_kernels *out);
/* One ISA's table (false when this CPU or build lacks it). */
int loom_rag_kernels_for(loom_rag_isa isa, loom_rag_kernels *out);

void loom_rag_kernels_scalar(loom_rag_kernels *k);
void loom_rag_kernels_avx2(loom_rag_kernels *k);
void loom_rag_kernels_avx512(loom_rag_kernels *k);

#endif
