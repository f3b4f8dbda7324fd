/* rag/index_exact.c - brute-force top k: every live row that passes the
 * filter is scored with the SIMD kernel; each thread keeps a bounded
 * max-heap of its best k over its slice of the rows, and the slices' heaps
 * are merged. Also the pair heaps HNSW uses. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "rag/index_impl.h"

/* Ties break on the id so results do not depend on the thread count. */
static inline bool worse(loom_rag_pair a, loom_rag_pair b) {
    return a.d > b.d || (a.d == b.d && a.id > b.id);
}

void loom_rag__maxheap_push(loom_rag_pair *h, size_t *n, loom_rag_pair p) {
    size_t i = (*n)++;
    while (i) {
        size_t up = (i - 1) / 2;
        if (!worse(p, h[up])) break;
        h[i] = h[up];
        i = up;
    }
    h[i] = p;
}

void loom_rag__maxheap_pop(loom_rag_pair *h, size_t *n) {
    loom_rag_pair last = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && worse(h[c + 1], h[c])) c++;
        if (!worse(h[c], last)) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = last;
}

void loom_rag__minheap_push(loom_rag_pair *h, size_t *n, loom_rag_pair p) {
    size_t i = (*n)++;
    while (i) {
        size_t up = (i - 1) / 2;
        if (!worse(h[up], p)) break;
        h[i] = h[up];
        i = up;
    }
    h[i] = p;
}

void loom_rag__minheap_pop(loom_rag_pair *h, size_t *n) {
    loom_rag_pair last = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && worse(h[c], h[c + 1])) c++;
        if (!worse(last, h[c])) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = last;
}

static int cmp_pair(const void *a, const void *b) {
    loom_rag_pair x = *(const loom_rag_pair *)a, y = *(const loom_rag_pair *)b;
    return worse(x, y) ? 1 : worse(y, x) ? -1 : 0;
}

void loom_rag__sort_pairs(loom_rag_pair *p, size_t n) {
    qsort(p, n, sizeof *p, cmp_pair);
}

typedef struct exact_ctx {
    const loom_rag_index *ix;
    const float *q;
    int k;
    const loom_rag_filter *f;
    loom_rag_pair *heaps; /* nth x k */
    size_t *counts;
} exact_ctx;

static void exact_slice(const loom_rag_index *ix, const float *q, int k, const loom_rag_filter *f,
                        uint32_t lo, uint32_t hi, loom_rag_pair *h, size_t *nh) {
    size_t n = 0;
    const uint8_t *row = ix->vecs + (size_t)lo * ix->row_bytes;
    for (uint32_t i = lo; i < hi; i++, row += ix->row_bytes) {
        if (ix->dead[i] || (f && !loom_rag__pass(ix, i, f))) continue;
        loom_rag_pair p = {ix->dist(q, row, loom_rag__scale(ix, i), ix->dim), i};
        if (n < (size_t)k) {
            loom_rag__maxheap_push(h, &n, p);
        } else if (worse(h[0], p)) {
            loom_rag__maxheap_pop(h, &n);
            loom_rag__maxheap_push(h, &n, p);
        }
    }
    *nh = n;
}

static void exact_task(void *vctx, int ith, int nth) {
    exact_ctx *c = vctx;
    const uint32_t n = c->ix->n;
    uint32_t lo = (uint32_t)((uint64_t)n * ith / nth),
             hi = (uint32_t)((uint64_t)n * (ith + 1) / nth);
    exact_slice(c->ix, c->q, c->k, c->f, lo, hi, c->heaps + (size_t)ith * c->k, &c->counts[ith]);
}

void loom_rag__exact(const loom_rag_index *ix, const float *q, int k, const loom_rag_filter *f,
                     loom_threadpool *pool, loom_rag_pair *out, int *n_out) {
    /* Threads only pay off on a large corpus: below ~16k rows one slice. */
    int nth = pool && ix->n >= 16384 ? loom_threadpool_size(pool) : 1;
    loom_rag_pair *heaps = nth > 1 ? malloc((size_t)nth * k * sizeof *heaps) : NULL;
    size_t *counts = nth > 1 ? calloc((size_t)nth, sizeof *counts) : NULL;
    if (nth > 1 && (!heaps || !counts)) nth = 1;
    size_t n = 0;
    if (nth == 1) {
        exact_slice(ix, q, k, f, 0, ix->n, out, &n);
    } else {
        exact_ctx c = {ix, q, k, f, heaps, counts};
        loom_threadpool_run(pool, exact_task, &c);
        for (int t = 0; t < nth; t++)
            for (size_t j = 0; j < counts[t]; j++) {
                loom_rag_pair p = heaps[(size_t)t * k + j];
                if (n < (size_t)k) {
                    loom_rag__maxheap_push(out, &n, p);
                } else if (worse(out[0], p)) {
                    loom_rag__maxheap_pop(out, &n);
                    loom_rag__maxheap_push(out, &n, p);
                }
            }
    }
    free(heaps);
    free(counts);
    loom_rag__sort_pairs(out, n);
    *n_out = (int)n;
}

void loom_rag__exact_block8(const loom_rag_index *ix, const float *qblk, int nq, int k,
                            const loom_rag_filter *f, loom_rag_pair *heaps, size_t *counts) {
    const loom_rag_dist8_fn fn = ix->kern.dist8[ix->metric == LOOM_RAG_L2];
    const int d = ix->dim;
    for (int j = 0; j < nq; j++)
        counts[j] = 0;
    const uint8_t *row = ix->vecs;
    for (uint32_t i = 0; i < ix->n; i++, row += ix->row_bytes) {
        if (ix->dead[i] || (f && !loom_rag__pass(ix, i, f))) continue;
        float dd[8];
        fn(qblk, (const float *)row, d, dd);
        for (int j = 0; j < nq; j++) {
            loom_rag_pair p = {dd[j], i};
            loom_rag_pair *h = heaps + (size_t)j * k;
            if (counts[j] < (size_t)k) {
                loom_rag__maxheap_push(h, &counts[j], p);
            } else if (worse(h[0], p)) {
                loom_rag__maxheap_pop(h, &counts[j]);
                loom_rag__maxheap_push(h, &counts[j], p);
            }
        }
    }
    for (int j = 0; j < nq; j++)
        loom_rag__sort_pairs(heaps + (size_t)j * k, counts[j]);
}
