/* cli/rag_retrieve.h - the retrieval step shared by `loom rag search "text"`
 * and `loom rag ask`: a text query, encoded with the encoder the index or
 * store recorded, searched in an index file or a PostgreSQL + pgvector
 * table, hits with their metadata and chunk text (read back from the source
 * for an index file, from the table's chunk column for a store), optionally
 * re-ranked (docs/adr/0032-retrieval-store-rerank.md). */
#ifndef LOOM_CLI_RAG_RETRIEVE_H
#define LOOM_CLI_RAG_RETRIEVE_H

#include <stdbool.h>
#include <stddef.h>

#include "cli/rag_docs.h"
#include "loom/encoder.h"
#include "rag/index.h"

typedef struct loom_rag_pg loom_rag_pg;

typedef struct loom_cli_retriever {
    const char *cmd; /* "search", "ask": error prefix */
    loom_rag_index *ix;
    loom_rag_pg *pg;
    loom_encoder *enc;
    int dim;
    loom_rag_metric metric;
    char encoder[1024];
    loom_cli_doc_reader rd;
    loom_threadpool *pool;
} loom_cli_retriever;

/* Where to look and how. */
typedef struct loom_cli_retrieve_opts {
    const char *index;   /* an index file, or */
    const char *store;   /* a PostgreSQL URL (with table) */
    const char *table;   /* default loom_vectors */
    const char *encoder; /* NULL: the one recorded with the vectors */
    int threads;         /* search threads for an index (0: every core) */
} loom_cli_retrieve_opts;

/* One hit; strings owned (loom_cli_hits_free). text "" when the source is
 * gone or changed (a warning was printed). */
typedef struct loom_cli_hit {
    uint32_t id;
    float score;
    loom_rag_meta meta;
    char *text;
    size_t len;
} loom_cli_hit;

/* Re-ranking (ADR 0032): with rerank >= k the first stage fetches rerank
 * candidates; their chunk texts are re-encoded in f32 by the same encoder
 * and scored by exact cosine with the query; with mmr in [0, 1] the k hits
 * are then picked by maximal marginal relevance (lambda = mmr), else the k
 * best cosines. mmr < 0: off. */
typedef struct loom_cli_search_opts {
    int k, ef, rerank;
    float mmr;
    bool exact;
    const loom_rag_filter *filter;
} loom_cli_search_opts;

/* Open the index or store and its encoder; false after one line on stderr. */
bool loom_cli_retriever_open(loom_cli_retriever *r, const char *cmd,
                             const loom_cli_retrieve_opts *o);
void loom_cli_retriever_close(loom_cli_retriever *r);
/* Encode nq texts (dim floats each into q). */
bool loom_cli_retriever_encode(loom_cli_retriever *r, const char *const *texts, int nq, float *q);
/* Top k (or re-ranked) of one encoded query: hits has room for
 * max(k, rerank) entries; *n hits, free with loom_cli_hits_free(hits, *n). */
bool loom_cli_retrieve(loom_cli_retriever *r, const float *q, const loom_cli_search_opts *so,
                       loom_cli_hit *hits, int *n);
void loom_cli_hits_free(loom_cli_hit *hits, int n);

/* Maximal marginal relevance over n candidates (unit vectors, n x dim, and
 * their query similarities sim_q): picks k indices into order, each the
 * argmax of lambda * sim_q[i] - (1 - lambda) * max_{j picked} <v_i, v_j>
 * (ties: the lower index). Returns how many were picked (min(k, n)). */
int loom_cli_mmr(const float *v, const float *sim_q, int n, int dim, float lambda, int k,
                 int *order);

#endif
