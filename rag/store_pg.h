/* rag/store_pg.h - PostgreSQL + pgvector as loom's scale-out vector store
 * (the self-hosted stand-in for a hosted vector database), through libpq.
 *
 * One table per collection:
 *   id bigint primary key, embedding vector(D), source text, title text,
 *   tag bigint, tag_str text, byte_begin bigint, byte_end bigint
 * with the metric in the table comment ("loom:metric=ip|cosine|l2"), so a
 * search knows which pgvector operator (<#>, <=>, <->) to order by. Scores
 * come back in the local index's convention (rag/index.h): inner product,
 * cosine similarity, or squared L2 distance. Ids are the local index's ids
 * (0-based rows), so the two can be compared and kept in step.
 * Errors: a one-line message in err (the server's first line included). */
#ifndef LOOM_RAG_STORE_PG_H
#define LOOM_RAG_STORE_PG_H

#include "rag/index.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_rag_pg loom_rag_pg;

/* url: a libpq connection string or postgresql:// URI; table: an SQL
 * identifier of letters, digits and '_' (checked: it is spliced into SQL). */
loom_status loom_rag_pg_open(const char *url, const char *table, loom_rag_pg **out, char *err,
                             size_t err_n);
void loom_rag_pg_close(loom_rag_pg *pg);
/* CREATE EXTENSION vector if needed, then the table (replaced when replace). */
loom_status loom_rag_pg_create(loom_rag_pg *pg, int dim, loom_rag_metric metric, bool replace,
                               char *err, size_t err_n);
/* Rows first_id.. with optional metadata, in one COPY. */
loom_status loom_rag_pg_insert(loom_rag_pg *pg, const float *vecs, size_t n, int dim,
                               const loom_rag_meta *meta, uint64_t first_id, char *err,
                               size_t err_n);
/* pgvector's HNSW index on the table (m, ef_construction). */
loom_status loom_rag_pg_build_hnsw(loom_rag_pg *pg, int M, int ef_construction, char *err,
                                   size_t err_n);
/* Dimension and metric of an existing table. */
loom_status loom_rag_pg_describe(loom_rag_pg *pg, int *dim, loom_rag_metric *metric, char *err,
                                 size_t err_n);
/* Top k: exact (index scans off) or through the HNSW index with
 * hnsw.ef_search = ef_search (0: pgvector's default). Filter: tag range,
 * tag_str and source (fn is not supported here). meta (NULL, or k
 * entries) gets each hit's metadata; its strings are malloc'd: free them with
 * loom_rag_pg_free_meta(meta, *n_hits). */
loom_status loom_rag_pg_search(loom_rag_pg *pg, const float *q, int dim, int k, int ef_search,
                               bool exact, const loom_rag_filter *f, loom_rag_hit *hits,
                               loom_rag_meta *meta, int *n_hits, char *err, size_t err_n);
void loom_rag_pg_free_meta(loom_rag_meta *meta, int n);

#ifdef __cplusplus
}
#endif
#endif
