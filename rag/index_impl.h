/* rag/index_impl.h - the vector index's internals, shared by its files
 * (index.c: rows, metadata, add/delete, search entry points; index_exact.c:
 * brute force; hnsw.c: the graph; index_file.c: the file). Not installed. */
#ifndef LOOM_RAG_INDEX_IMPL_H
#define LOOM_RAG_INDEX_IMPL_H

#include <pthread.h>
#include <stdatomic.h>

#include "rag/index.h"
#include "rag/index_dist.h"

/* One metadata record; strings live NUL-terminated in the string pool. */
typedef struct loom_rag_meta_rec {
    uint64_t byte_begin, byte_end;
    int64_t tag;
    uint32_t src_off, src_len, title_off, title_len, tstr_off, tstr_len;
} loom_rag_meta_rec;

#define LOOM_RAG_NO_UPPER  0xffffffffu
#define LOOM_RAG_MAX_LEVEL 32
/* M's upper bound (files and builds are checked against it), and so the
 * longest list: the level-0 count and up to 2M ids. Scratch is sized by it. */
#define LOOM_RAG_MAX_M    128
#define LOOM_RAG_MAX_LIST (1 + 2 * LOOM_RAG_MAX_M)

/* Scratch of one search: visited tags (epoch-stamped so nothing is cleared
 * between searches) and heap space. Kept in a free list in the index. */
typedef struct loom_rag_scratch {
    uint16_t *visited;
    uint32_t visited_n;
    uint16_t epoch;
    void *cand, *top; /* loom_rag_pair arrays */
    size_t cand_cap, top_cap;
    uint32_t *nbuf;  /* a copy of one neighbour list (build: read under its lock) */
    uint32_t *fresh; /* the unvisited neighbours of one hop; in nbuf's allocation */
    float *qbuf;    /* a stored row decoded to f32 */
    struct loom_rag_scratch *next;
} loom_rag_scratch;

typedef struct loom_rag_pair {
    float d;
    uint32_t id;
} loom_rag_pair;

struct loom_rag_index {
    int dim;
    loom_rag_vtype vtype;
    loom_rag_metric metric;
    size_t row_bytes;
    loom_rag_kernels kern;
    loom_rag_dist_fn dist; /* kern.dist[vtype][metric == L2] */

    uint32_t n, cap, n_dead;
    uint8_t *vecs;           /* n x row_bytes */
    float *scales;           /* int8 only: n */
    uint8_t *dead;           /* n: 1 = tombstone */
    loom_rag_meta_rec *meta; /* n */
    char *pool;              /* metadata strings */
    size_t pool_len, pool_cap;
    char encoder[128];
    bool has_text; /* text: the text pipeline's settings (format 1.1) */
    loom_rag_text_settings text;

    /* HNSW (has_graph): level-0 lists n x (1 + M0) u32 (count, ids); upper
     * levels in upool, node i's level l >= 1 list at upool[uoff[i] + (l-1) *
     * (1 + M)] (uoff = LOOM_RAG_NO_UPPER for level-0 nodes). */
    bool has_graph;
    int M, M0, efc;
    uint64_t seed;
    uint8_t *levels;
    uint32_t *l0;
    uint32_t *uoff;
    uint32_t *upool;
    size_t upool_len, upool_cap;
    int max_level;
    uint32_t entry;
    /* build only: one spin lock per node, and the entry point's lock */
    _Atomic unsigned char *node_lock;
    pthread_mutex_t entry_lock;

    /* A loaded index reads from its mapping until it changes (then every
     * array is copied to the heap: to_heap()). */
    bool mapped;
    void *map;
    size_t map_len;
    bool map_is_mmap; /* false: the caller's buffer (load_mem) */

    pthread_rwlock_t lock;
    pthread_mutex_t scratch_lock;
    loom_rag_scratch *free_scratch;
    char err[256];
};

/* index.c */
loom_status loom_rag__fail(loom_rag_index *ix, loom_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
loom_status loom_rag__to_heap(loom_rag_index *ix);
loom_status loom_rag__alloc_common(int dim, loom_rag_vtype vtype, loom_rag_metric metric,
                                   loom_rag_index **out);
loom_rag_scratch *loom_rag__scratch_get(loom_rag_index *ix);
void loom_rag__scratch_put(loom_rag_index *ix, loom_rag_scratch *s);
bool loom_rag__pass(const loom_rag_index *ix, uint32_t id, const loom_rag_filter *f);
void loom_rag__meta_of(const loom_rag_index *ix, uint32_t id, loom_rag_meta *m);

static inline const void *loom_rag__row(const loom_rag_index *ix, uint32_t id) {
    return ix->vecs + (size_t)id * ix->row_bytes;
}
static inline float loom_rag__scale(const loom_rag_index *ix, uint32_t id) {
    return ix->scales ? ix->scales[id] : 1.0f;
}
static inline float loom_rag__dist(const loom_rag_index *ix, const float *q, uint32_t id) {
    return ix->dist(q, loom_rag__row(ix, id), loom_rag__scale(ix, id), ix->dim);
}
/* Row id as an f32 query (the row itself for f32 storage, else decoded into buf). */
const float *loom_rag__as_query(const loom_rag_index *ix, uint32_t id, float *buf);

/* index_exact.c: top k by brute force; hits sorted best first. */
void loom_rag__exact(const loom_rag_index *ix, const float *q, int k, const loom_rag_filter *f,
                     loom_threadpool *pool, loom_rag_pair *out, int *n_out);
/* Exact top k of nq <= 8 queries at once (qblk: 8 x dim, prepared: cosine
 * queries normalised, unused rows any finite values) over f32 rows with the
 * dist8 kernel; heaps 8 x k, each sorted best first, counts[j] hits each. */
void loom_rag__exact_block8(const loom_rag_index *ix, const float *qblk, int nq, int k,
                            const loom_rag_filter *f, loom_rag_pair *heaps, size_t *counts);
/* Binary heaps of pairs: max-heap (worst on top) and min-heap (best on top). */
void loom_rag__maxheap_push(loom_rag_pair *h, size_t *n, loom_rag_pair p);
void loom_rag__maxheap_pop(loom_rag_pair *h, size_t *n);
void loom_rag__minheap_push(loom_rag_pair *h, size_t *n, loom_rag_pair p);
void loom_rag__minheap_pop(loom_rag_pair *h, size_t *n);
void loom_rag__sort_pairs(loom_rag_pair *p, size_t n);

/* hnsw.c */
loom_status loom_rag__hnsw_build(loom_rag_index *ix, const loom_rag_hnsw_params *p,
                                 loom_threadpool *pool);
/* Link rows [first, n) into an existing graph. */
loom_status loom_rag__hnsw_insert_range(loom_rag_index *ix, uint32_t first, loom_threadpool *pool);
loom_status loom_rag__hnsw_search(loom_rag_index *ix, const float *q, int k, int ef,
                                  const loom_rag_filter *f, loom_rag_pair *out, int *n_out);
int loom_rag__hnsw_level_of(uint64_t seed, uint32_t id, int M);
/* The graph's structural check (loader): every id in range, counts bounded. */
bool loom_rag__hnsw_check(const loom_rag_index *ix, char *err, size_t err_n);

/* index_crc.c: CRC-32C (Castagnoli), hardware when the CPU has SSE4.2. */
uint32_t loom_rag__crc32c(uint32_t crc, const void *data, size_t n);

#endif
