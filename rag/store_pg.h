/* rag/store_pg.h - PostgreSQL + pgvector as loom's scale-out vector store
 * (the self-hosted stand-in for a hosted vector database), through libpq.
 *
 * One table per collection:
 *   id bigint primary key, embedding vector(D), source text, title text,
 *   tag bigint, tag_str text, byte_begin bigint, byte_end bigint, chunk text
 * with the metric in the table comment ("loom:metric=ip|cosine|l2", and for
 * `loom rag index --store` the text settings after it:
 * ";chunk=N;overlap=N;dim=N;normalize=N;max_tokens=N;encoder=NAME"), so a
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
/* The same with each row's chunk text (texts: n strings, or NULL for none). */
loom_status loom_rag_pg_insert_text(loom_rag_pg *pg, const float *vecs, size_t n, int dim,
                                    const loom_rag_meta *meta, const char *const *texts,
                                    uint64_t first_id, char *err, size_t err_n);
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

/* ---- the text pipeline (`loom rag index|search|ask --store`) ---- */
loom_status loom_rag_pg_exists(loom_rag_pg *pg, bool *exists, char *err, size_t err_n);
/* Record the metric, encoder name and text settings in the table comment. */
loom_status loom_rag_pg_set_text_settings(loom_rag_pg *pg, loom_rag_metric metric,
                                          const char *encoder, const loom_rag_text_settings *t,
                                          char *err, size_t err_n);
/* The recorded ones (*has false for a table from `loom rag build`). */
loom_status loom_rag_pg_text_settings(loom_rag_pg *pg, bool *has, char *encoder, size_t enc_n,
                                      loom_rag_text_settings *t, char *err, size_t err_n);
/* max(id) + 1, 0 for an empty table. */
loom_status loom_rag_pg_next_id(loom_rag_pg *pg, uint64_t *id, char *err, size_t err_n);
/* Distinct sources with their content hash (the rows' tag; one_hash false
 * when the rows disagree or were not written by the text pipeline). */
typedef struct loom_rag_pg_source {
    char *source;
    int64_t hash;
    bool one_hash;
} loom_rag_pg_source;
loom_status loom_rag_pg_sources(loom_rag_pg *pg, loom_rag_pg_source **out, size_t *n, char *err,
                                size_t err_n);
void loom_rag_pg_free_sources(loom_rag_pg_source *v, size_t n);
loom_status loom_rag_pg_delete_source(loom_rag_pg *pg, const char *source, size_t *n_deleted,
                                      char *err, size_t err_n);
/* The chunk text of row id ("" when absent), malloc'd into *text. */
loom_status loom_rag_pg_chunk_text(loom_rag_pg *pg, uint32_t id, char **text, char *err,
                                   size_t err_n);

#ifdef __cplusplus
}
#endif
#endif
