/* rag/index.h - loom's vector index: exact (SIMD) search and HNSW over f32,
 * f16 or int8 vectors, metadata per vector with filters at search time,
 * incremental add and delete (tombstones), one versioned file that is
 * memory-mapped on load (docs/adr/0026-vector-index.md).
 *
 * Vectors, not text: the index stores what an encoder produced. The text
 * side (`loom rag index`, `loom rag search "query"`) plugs in above this
 * API: it encodes chunks with a loom encoder (model/), then calls
 * loom_rag_index_add() with one loom_rag_meta per chunk (source, byte offsets,
 * title), and encodes the query the same way before loom_rag_index_search().
 * The index records the encoder's name (loom_rag_index_set_encoder) so a
 * search can refuse a query vector from another model.
 *
 * Ids: a vector's id is its row, 0..count-1, in the order it was added;
 * deleting leaves a tombstone, so ids never move.
 *
 * Scores: LOOM_RAG_IP gives the inner product, LOOM_RAG_COSINE the cosine
 * similarity (vectors and queries are L2-normalised on the way in), both
 * "higher is better"; LOOM_RAG_L2 gives the squared Euclidean distance,
 * "lower is better" (FAISS reports the same). Hits are sorted best first.
 *
 * Threads: any number of threads may search one index at once (searches and
 * save take a shared lock); add, delete, build_hnsw and set_encoder take it
 * exclusively. A loom_threadpool runs one job at a time: concurrent searches
 * must not pass the same pool (pass NULL, or one pool per caller).
 * Errors: every loom_status return leaves a one-line message in the index
 * (loom_rag_index_error), or in the caller's err buffer for load. */
#ifndef LOOM_RAG_INDEX_H
#define LOOM_RAG_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loom/status.h"
#include "loom/threadpool.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum loom_rag_vtype {
    LOOM_RAG_F32 = 0,
    LOOM_RAG_F16 = 1,
    LOOM_RAG_I8 = 2, /* symmetric, one f32 scale per vector: x ~ scale * q, q in -127..127 */
} loom_rag_vtype;

typedef enum loom_rag_metric {
    LOOM_RAG_IP = 0,
    LOOM_RAG_COSINE = 1,
    LOOM_RAG_L2 = 2,
} loom_rag_metric;

/* Per-vector metadata. Strings are copied in; NULL means empty. */
typedef struct loom_rag_meta {
    const char *source;  /* file or URL the chunk came from */
    const char *title;   /* document title */
    const char *tag_str; /* free string tag (language, collection, ...) */
    uint64_t byte_begin; /* chunk's byte range in source: [begin, end) */
    uint64_t byte_end;
    int64_t tag; /* free integer tag (date, tenant, ...) */
} loom_rag_meta;

/* A filter: a hit must pass every part that is set. */
typedef struct loom_rag_filter {
    bool use_tag_range; /* tag_min <= tag <= tag_max */
    int64_t tag_min, tag_max;
    const char *tag_str; /* tag_str equals this (NULL: any) */
    const char *source;  /* source equals this (NULL: any) */
    /* Optional predicate, called from search threads (must be thread-safe). */
    bool (*fn)(void *ctx, uint32_t id, const loom_rag_meta *meta);
    void *ctx;
} loom_rag_filter;

typedef struct loom_rag_hit {
    uint32_t id;
    float score;
} loom_rag_hit;

typedef struct loom_rag_hnsw_params {
    int M;               /* links per node above level 0 (level 0 has 2*M); 4..128 */
    int ef_construction; /* candidate list while building; >= M */
    uint64_t seed;       /* levels are drawn from (seed, id): same seed, same levels */
} loom_rag_hnsw_params;

typedef struct loom_rag_search_params {
    int k;
    int ef_search;                 /* HNSW candidate list (raised to k); 0: max(k, 64) */
    bool exact;                    /* brute force even when the index has a graph */
    const loom_rag_filter *filter; /* NULL: none */
} loom_rag_search_params;

typedef struct loom_rag_index loom_rag_index;

/* A new empty index; the caller frees it with loom_rag_index_free. */
loom_status loom_rag_index_new(int dim, loom_rag_vtype vtype, loom_rag_metric metric,
                               loom_rag_index **out);
void loom_rag_index_free(loom_rag_index *ix);
/* Last error of this index (one line, never NULL). */
const char *loom_rag_index_error(const loom_rag_index *ix);

int loom_rag_index_dim(const loom_rag_index *ix);
loom_rag_vtype loom_rag_index_vtype(const loom_rag_index *ix);
loom_rag_metric loom_rag_index_metric(const loom_rag_index *ix);
uint32_t loom_rag_index_count(const loom_rag_index *ix); /* rows, tombstones included */
uint32_t loom_rag_index_live(const loom_rag_index *ix);  /* rows not deleted */
bool loom_rag_index_has_hnsw(const loom_rag_index *ix);
/* HNSW parameters of the graph (false when there is none). */
bool loom_rag_index_hnsw_params(const loom_rag_index *ix, loom_rag_hnsw_params *p);
/* The encoder that made the vectors ("" when unknown); the string is copied. */
loom_status loom_rag_index_set_encoder(loom_rag_index *ix, const char *name);
const char *loom_rag_index_encoder(const loom_rag_index *ix);

/* The text pipeline's settings (`loom rag index`), kept in the file (format
 * 1.1, section 'text settings') so that an update refuses other settings and
 * a search or ask encodes the query as the chunks were: the encoder's name is
 * loom_rag_index_encoder, these are the rest. Files of format 1.0 have none. */
typedef struct loom_rag_text_settings {
    uint32_t chunk;       /* tokens per chunk (after capping to the encoder) */
    uint32_t overlap;     /* tokens shared by neighbouring chunks, < chunk */
    uint32_t encoder_dim; /* the encoder's output size (= the index's dim) */
    uint32_t normalize;   /* 1: mean pooling + L2 normalisation (loom's encoders) */
    uint32_t max_tokens;  /* the encoder's maximum input, [CLS]/[SEP] included */
} loom_rag_text_settings;
/* Record s (checked: chunk >= 1, overlap < chunk, encoder_dim = dim,
 * normalize 0/1). */
loom_status loom_rag_index_set_text_settings(loom_rag_index *ix, const loom_rag_text_settings *s);
/* The recorded settings; false when the index has none (vectors, or 1.0). */
bool loom_rag_index_text_settings(const loom_rag_index *ix, loom_rag_text_settings *out);

/* Append n vectors (row-major f32, n x dim; converted to the index's type)
 * with optional metadata (NULL or n entries). First new id in *first_id
 * (may be NULL). When the index has a graph the new vectors are linked into
 * it (with pool's threads; pool may be NULL). */
loom_status loom_rag_index_add(loom_rag_index *ix, const float *vecs, size_t n,
                               const loom_rag_meta *meta, loom_threadpool *pool,
                               uint32_t *first_id);
/* Tombstone one id: it is never returned again (the graph keeps routing
 * through it). Deleting an id twice is an error. */
loom_status loom_rag_index_delete(loom_rag_index *ix, uint32_t id);
bool loom_rag_index_is_deleted(const loom_rag_index *ix, uint32_t id);
/* Metadata of id (strings point into the index; valid until it changes). */
loom_status loom_rag_index_meta(const loom_rag_index *ix, uint32_t id, loom_rag_meta *out);
/* Vector id decoded to f32 (dim floats). */
loom_status loom_rag_index_vector(const loom_rag_index *ix, uint32_t id, float *out);

/* Build (or rebuild) the HNSW graph over every row. With pool's threads the
 * graph depends on scheduling; with one thread (pool NULL or size 1) it is
 * a function of the vectors and p alone. */
loom_status loom_rag_index_build_hnsw(loom_rag_index *ix, const loom_rag_hnsw_params *p,
                                      loom_threadpool *pool);

/* Top k of one query (dim floats). hits has room for k; *n_hits <= k
 * (fewer when fewer rows pass). HNSW when the index has a graph and
 * !exact; otherwise exact, spread over pool's threads (pool may be NULL). */
loom_status loom_rag_index_search(loom_rag_index *ix, const float *query,
                                  const loom_rag_search_params *sp, loom_threadpool *pool,
                                  loom_rag_hit *hits, int *n_hits);
/* nq queries (nq x dim) spread over pool's threads, one query per task;
 * hits is nq x k, n_hits nq entries. */
loom_status loom_rag_index_search_batch(loom_rag_index *ix, const float *queries, size_t nq,
                                        const loom_rag_search_params *sp, loom_threadpool *pool,
                                        loom_rag_hit *hits, int *n_hits);

/* ---- persistence (rag/index_file.c) ---- */
/* Write the index to path atomically: a temporary file next to it, fsync,
 * rename, fsync of the directory. A crash leaves the old file or the new. */
loom_status loom_rag_index_save(loom_rag_index *ix, const char *path);
/* Load flags. */
#define LOOM_RAG_LOAD_NO_VERIFY 1u /* skip the checksums (the structure is still checked) */
/* Map path read-only and check it; on failure a one-line reason in err.
 * The index reads its vectors and graph from the mapping until it is
 * changed (add/delete/build copy them to memory first). */
loom_status loom_rag_index_load(const char *path, unsigned flags, loom_rag_index **out, char *err,
                                size_t err_n);
/* The same from a caller's buffer, which must outlive the index (fuzzing). */
loom_status loom_rag_index_load_mem(const void *data, size_t size, unsigned flags,
                                    loom_rag_index **out, char *err, size_t err_n);

/* ---- vector files (rag/index_npy.c) ---- */
/* A matrix read from a NumPy .npy file (little-endian float32 '<f4',
 * int32 '<i4' or int64 '<i8', C order, 1-D or 2-D) or, for any other
 * name, raw float32 with dim columns (dim > 0 required then). */
typedef struct loom_rag_matrix {
    char kind; /* 'f' f32, 'i' i32, 'l' i64 */
    size_t rows, cols;
    void *data; /* malloc'd; loom_rag_matrix_free */
} loom_rag_matrix;
loom_status loom_rag_matrix_read(const char *path, int dim, loom_rag_matrix *out, char *err,
                                 size_t err_n);
/* The same from bytes (the fuzz target); is_npy selects the format. */
loom_status loom_rag_matrix_parse(const void *bytes, size_t n, bool is_npy, int dim,
                                  loom_rag_matrix *out, char *err, size_t err_n);
void loom_rag_matrix_free(loom_rag_matrix *m);

/* ---- helpers ---- */
/* Scalar reference score of one stored row against a query, in the metric's
 * convention (tests compare the SIMD paths with it). */
float loom_rag_index_ref_score(const loom_rag_index *ix, uint32_t id, const float *query);
/* Name of the distance kernels in use ("avx512", "avx2", "scalar"); the
 * environment variable LOOM_CPU_ISA caps them as it does the cpu backend. */
const char *loom_rag_isa_name(void);

#ifdef __cplusplus
}
#endif
#endif
