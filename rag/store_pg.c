/* rag/store_pg.c - the PostgreSQL + pgvector store (rag/store_pg.h). */
#define _POSIX_C_SOURCE 200809L
#include <libpq-fe.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rag/store_pg.h"

struct loom_rag_pg {
    PGconn *conn;
    char table[64];
};

#define BAD(st_, ...) (snprintf(err, err_n, __VA_ARGS__), (st_))

/* The server's message, first line only. */
static loom_status pg_fail(PGconn *c, const char *what, char *err, size_t err_n) {
    const char *m = PQerrorMessage(c);
    size_t l = strcspn(m, "\n");
    return BAD(LOOM_ERR_IO, "%s: %.*s", what, (int)l, m);
}

static loom_status exec_ok(loom_rag_pg *pg, const char *sql, const char *what, char *err,
                           size_t err_n) {
    PGresult *r = PQexec(pg->conn, sql);
    ExecStatusType s = PQresultStatus(r);
    PQclear(r);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) return pg_fail(pg->conn, what, err, err_n);
    return LOOM_OK;
}

loom_status loom_rag_pg_open(const char *url, const char *table, loom_rag_pg **out, char *err,
                             size_t err_n) {
    *out = NULL;
    size_t tl = table ? strlen(table) : 0;
    if (!tl || tl >= 64 || (table[0] >= '0' && table[0] <= '9'))
        return BAD(LOOM_ERR_INVALID_ARG, "table name '%s' must be 1..63 letters, digits or '_'",
                   table ? table : "");
    for (size_t i = 0; i < tl; i++) {
        char c = table[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return BAD(LOOM_ERR_INVALID_ARG,
                       "table name '%s' must be lower-case letters, digits or '_'", table);
    }
    loom_rag_pg *pg = calloc(1, sizeof *pg);
    if (!pg) return BAD(LOOM_ERR_OOM, "out of memory");
    memcpy(pg->table, table, tl + 1);
    pg->conn = PQconnectdb(url);
    if (PQstatus(pg->conn) != CONNECTION_OK) {
        loom_status st = pg_fail(pg->conn, "cannot connect to PostgreSQL", err, err_n);
        loom_rag_pg_close(pg);
        return st;
    }
    PQclear(PQexec(pg->conn, "SET client_min_messages = warning"));
    *out = pg;
    return LOOM_OK;
}

void loom_rag_pg_close(loom_rag_pg *pg) {
    if (!pg) return;
    PQfinish(pg->conn);
    free(pg);
}

static const char *const metric_name[] = {"ip", "cosine", "l2"};
static const char *const metric_ops[] = {"vector_ip_ops", "vector_cosine_ops", "vector_l2_ops"};
static const char *const metric_op[] = {"<#>", "<=>", "<->"};

loom_status loom_rag_pg_create(loom_rag_pg *pg, int dim, loom_rag_metric metric, bool replace,
                               char *err, size_t err_n) {
    char sql[1024];
    LOOM_TRY(exec_ok(pg, "CREATE EXTENSION IF NOT EXISTS vector",
                     "CREATE EXTENSION vector (is pgvector installed?)", err, err_n));
    if (replace) {
        snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS %s", pg->table);
        LOOM_TRY(exec_ok(pg, sql, "DROP TABLE", err, err_n));
    }
    snprintf(sql, sizeof sql,
             "CREATE TABLE %s (id bigint PRIMARY KEY, embedding vector(%d) NOT NULL, source text, "
             "title text, "
             "tag bigint, tag_str text, byte_begin bigint, byte_end bigint, chunk text)",
             pg->table, dim);
    LOOM_TRY(exec_ok(pg, sql, "CREATE TABLE", err, err_n));
    snprintf(sql, sizeof sql, "COMMENT ON TABLE %s IS 'loom:metric=%s'", pg->table,
             metric_name[metric]);
    return exec_ok(pg, sql, "COMMENT ON TABLE", err, err_n);
}

loom_status loom_rag_pg_describe(loom_rag_pg *pg, int *dim, loom_rag_metric *metric, char *err,
                                 size_t err_n) {
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT obj_description('%s'::regclass, 'pg_class'), atttypmod FROM pg_attribute "
             "WHERE attrelid = '%s'::regclass AND attname = 'embedding'",
             pg->table, pg->table);
    PGresult *r = PQexec(pg->conn, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        PQclear(r);
        return pg_fail(pg->conn, "table is not a loom vector table", err, err_n);
    }
    const char *c = PQgetvalue(r, 0, 0);
    *dim = atoi(PQgetvalue(r, 0, 1));
    int m = -1;
    for (int i = 0; i < 3; i++)
        if (!strncmp(c, "loom:metric=", 12) &&
            !strncmp(c + 12, metric_name[i], strcspn(c + 12, ";")) &&
            strlen(metric_name[i]) == strcspn(c + 12, ";"))
            m = i;
    PQclear(r);
    if (m < 0 || *dim < 1)
        return BAD(LOOM_ERR_FORMAT, "table %s has no loom metric comment", pg->table);
    *metric = (loom_rag_metric)m;
    return LOOM_OK;
}

/* Text COPY field: backslash, tab, newline and CR escaped. */
static bool put_text(char **buf, size_t *len, size_t *cap, const char *s) {
    size_t need = *len + 2 * (s ? strlen(s) : 2) + 4;
    if (need > *cap) {
        size_t c = *cap * 2 > need ? *cap * 2 : need;
        char *b = realloc(*buf, c);
        if (!b) return false;
        *buf = b, *cap = c;
    }
    if (!s) {
        memcpy(*buf + *len, "\\N", 2);
        *len += 2;
        return true;
    }
    for (; *s; s++) {
        char c = *s;
        if (c == '\\' || c == '\t' || c == '\n' || c == '\r') {
            (*buf)[(*len)++] = '\\';
            c = c == '\t' ? 't' : c == '\n' ? 'n' : c == '\r' ? 'r' : '\\';
        }
        (*buf)[(*len)++] = c;
    }
    return true;
}

static bool put_fmt(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool put_fmt(char **buf, size_t *len, size_t *cap, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
        va_end(ap);
        if (w < 0) return false;
        if ((size_t)w < *cap - *len) {
            *len += (size_t)w;
            return true;
        }
        size_t c = *cap * 2 + (size_t)w;
        char *b = realloc(*buf, c);
        if (!b) return false;
        *buf = b, *cap = c;
    }
}

/* "[x,y,...]" with round-trip precision. */
static bool put_vec(char **buf, size_t *len, size_t *cap, const float *v, int dim) {
    bool ok = put_fmt(buf, len, cap, "[");
    for (int j = 0; ok && j < dim; j++)
        ok = put_fmt(buf, len, cap, "%s%.9g", j ? "," : "", v[j]);
    return ok && put_fmt(buf, len, cap, "]");
}

loom_status loom_rag_pg_insert(loom_rag_pg *pg, const float *vecs, size_t n, int dim,
                               const loom_rag_meta *meta, uint64_t first_id, char *err,
                               size_t err_n) {
    return loom_rag_pg_insert_text(pg, vecs, n, dim, meta, NULL, first_id, err, err_n);
}

loom_status loom_rag_pg_insert_text(loom_rag_pg *pg, const float *vecs, size_t n, int dim,
                                    const loom_rag_meta *meta, const char *const *texts,
                                    uint64_t first_id, char *err, size_t err_n) {
    char sql[256];
    snprintf(sql, sizeof sql,
             "COPY %s (id, embedding, source, title, tag, tag_str, byte_begin, byte_end%s) FROM "
             "STDIN",
             pg->table, texts ? ", chunk" : "");
    PGresult *r = PQexec(pg->conn, sql);
    if (PQresultStatus(r) != PGRES_COPY_IN) {
        PQclear(r);
        return pg_fail(pg->conn, "COPY", err, err_n);
    }
    PQclear(r);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    bool ok = buf != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        const loom_rag_meta *m = meta ? &meta[i] : NULL;
        ok = put_fmt(&buf, &len, &cap, "%" PRIu64 "\t", first_id + i) &&
             put_vec(&buf, &len, &cap, vecs + i * (size_t)dim, dim) &&
             put_fmt(&buf, &len, &cap, "\t") && put_text(&buf, &len, &cap, m ? m->source : NULL) &&
             put_fmt(&buf, &len, &cap, "\t") && put_text(&buf, &len, &cap, m ? m->title : NULL) &&
             put_fmt(&buf, &len, &cap, "\t%" PRId64 "\t", m ? m->tag : 0) &&
             put_text(&buf, &len, &cap, m ? m->tag_str : NULL) &&
             put_fmt(&buf, &len, &cap, "\t%" PRIu64 "\t%" PRIu64, m ? m->byte_begin : 0,
                     m ? m->byte_end : 0) &&
             (!texts || (put_fmt(&buf, &len, &cap, "\t") &&
                         put_text(&buf, &len, &cap, texts[i] ? texts[i] : ""))) &&
             put_fmt(&buf, &len, &cap, "\n");
        if (ok && (len > (1u << 20) || i + 1 == n)) {
            ok = PQputCopyData(pg->conn, buf, (int)len) == 1;
            len = 0;
        }
    }
    free(buf);
    if (PQputCopyEnd(pg->conn, ok ? NULL : "loom: out of memory") != 1)
        return pg_fail(pg->conn, "COPY", err, err_n);
    r = PQgetResult(pg->conn);
    ExecStatusType s = PQresultStatus(r);
    PQclear(r);
    while ((r = PQgetResult(pg->conn)))
        PQclear(r);
    if (s != PGRES_COMMAND_OK) return pg_fail(pg->conn, "COPY", err, err_n);
    return ok ? LOOM_OK : BAD(LOOM_ERR_OOM, "out of memory");
}

loom_status loom_rag_pg_build_hnsw(loom_rag_pg *pg, int M, int ef_construction, char *err,
                                   size_t err_n) {
    int dim;
    loom_rag_metric m;
    LOOM_TRY(loom_rag_pg_describe(pg, &dim, &m, err, err_n));
    char sql[512];
    snprintf(sql, sizeof sql,
             "CREATE INDEX IF NOT EXISTS %.57s_hnsw ON %s USING hnsw (embedding %s) WITH (m = %d, "
             "ef_construction = %d)",
             pg->table, pg->table, metric_ops[m], M, ef_construction);
    return exec_ok(pg, sql, "CREATE INDEX hnsw", err, err_n);
}

static char *dup_or_empty(PGresult *r, int row, int col) {
    return strdup(PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

void loom_rag_pg_free_meta(loom_rag_meta *meta, int n) {
    for (int i = 0; meta && i < n; i++) {
        free((char *)meta[i].source);
        free((char *)meta[i].title);
        free((char *)meta[i].tag_str);
    }
}

loom_status loom_rag_pg_search(loom_rag_pg *pg, const float *q, int dim, int k, int ef_search,
                               bool exact, const loom_rag_filter *f, loom_rag_hit *hits,
                               loom_rag_meta *meta, int *n_hits, char *err, size_t err_n) {
    *n_hits = 0;
    if (f && f->fn)
        return BAD(LOOM_ERR_UNSUPPORTED,
                   "the PostgreSQL store takes tag, tag_str and source filters only");
    int tdim;
    loom_rag_metric m;
    LOOM_TRY(loom_rag_pg_describe(pg, &tdim, &m, err, err_n));
    if (tdim != dim)
        return BAD(LOOM_ERR_INVALID_ARG, "the query has %d values, table %s's vectors %d", dim,
                   pg->table, tdim);
    size_t cap = 4096, len = 0;
    char *qv = malloc(cap);
    if (!qv || !put_vec(&qv, &len, &cap, q, dim))
        return free(qv), BAD(LOOM_ERR_OOM, "out of memory");
    char sql[1024], where[64] = "";
    const char *params[5] = {qv, NULL, NULL, NULL, NULL};
    int np = 1;
    char tmin[32], tmax[32];
    if (f && f->use_tag_range) {
        snprintf(tmin, sizeof tmin, "%" PRId64, f->tag_min);
        snprintf(tmax, sizeof tmax, "%" PRId64, f->tag_max);
        params[np++] = tmin;
        params[np++] = tmax;
        strcat(where, " AND tag BETWEEN $2::bigint AND $3::bigint");
    }
    char w2[128] = "";
    if (f && f->tag_str) {
        params[np++] = f->tag_str;
        snprintf(w2, sizeof w2, " AND tag_str = $%d", np);
    }
    char w3[128] = "";
    if (f && f->source) {

        params[np++] = f->source;
        snprintf(w3, sizeof w3, " AND source = $%d", np);
    }
    snprintf(sql, sizeof sql,
             "SELECT id, embedding %s $1::vector, source, title, tag, tag_str, byte_begin, "
             "byte_end FROM %s "
             "WHERE true%s%s%s ORDER BY embedding %s $1::vector LIMIT %d",
             metric_op[m], pg->table, where, w2, w3, metric_op[m], k);
    loom_status st = exec_ok(pg, "BEGIN", "BEGIN", err, err_n);
    char set[96];
    if (exact)
        snprintf(set, sizeof set, "SET LOCAL enable_indexscan = off");
    else
        snprintf(set, sizeof set, "SET LOCAL hnsw.ef_search = %d", ef_search > 0 ? ef_search : 40);
    if (st == LOOM_OK) st = exec_ok(pg, set, set, err, err_n);
    if (st == LOOM_OK) {
        PGresult *r = PQexecParams(pg->conn, sql, np, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            st = pg_fail(pg->conn, "vector search", err, err_n);
        } else {
            int n = PQntuples(r);
            for (int i = 0; i < n && i < k; i++) {
                double d = strtod(PQgetvalue(r, i, 1), NULL);
                hits[i].id = (uint32_t)strtoull(PQgetvalue(r, i, 0), NULL, 10);
                /* pgvector: <#> is -ip, <=> is 1 - cos, <-> is the L2 distance. */
                hits[i].score = (float)(m == LOOM_RAG_IP       ? -d
                                        : m == LOOM_RAG_COSINE ? 1.0 - d
                                                               : d * d);
                if (meta) {
                    meta[i].source = dup_or_empty(r, i, 2);
                    meta[i].title = dup_or_empty(r, i, 3);
                    meta[i].tag = strtoll(PQgetvalue(r, i, 4), NULL, 10);
                    meta[i].tag_str = dup_or_empty(r, i, 5);
                    meta[i].byte_begin = strtoull(PQgetvalue(r, i, 6), NULL, 10);
                    meta[i].byte_end = strtoull(PQgetvalue(r, i, 7), NULL, 10);
                }
                *n_hits = i + 1;
            }
        }
        PQclear(r);
    }
    PQclear(PQexec(pg->conn, st == LOOM_OK ? "COMMIT" : "ROLLBACK"));
    free(qv);
    return st;
}

/* ---- the text pipeline's side (`loom rag index|search|ask --store`) ---- */

loom_status loom_rag_pg_exists(loom_rag_pg *pg, bool *exists, char *err, size_t err_n) {
    const char *p[1] = {pg->table};
    PGresult *r =
        PQexecParams(pg->conn, "SELECT to_regclass($1) IS NOT NULL", 1, NULL, p, NULL, NULL, 0);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    if (ok) *exists = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return ok ? LOOM_OK : pg_fail(pg->conn, "table lookup", err, err_n);
}

loom_status loom_rag_pg_set_text_settings(loom_rag_pg *pg, loom_rag_metric metric,
                                          const char *encoder, const loom_rag_text_settings *t,
                                          char *err, size_t err_n) {
    char c[1024];
    snprintf(c, sizeof c,
             "loom:metric=%s;chunk=%u;overlap=%u;dim=%u;normalize=%u;max_tokens=%u;encoder=%s",
             metric_name[metric], t->chunk, t->overlap, t->encoder_dim, t->normalize, t->max_tokens,
             encoder);
    char *lit = PQescapeLiteral(pg->conn, c, strlen(c));
    if (!lit) return pg_fail(pg->conn, "COMMENT ON TABLE", err, err_n);
    char sql[1200];
    snprintf(sql, sizeof sql, "COMMENT ON TABLE %s IS %s", pg->table, lit);
    PQfreemem(lit);
    return exec_ok(pg, sql, "COMMENT ON TABLE", err, err_n);
}

loom_status loom_rag_pg_text_settings(loom_rag_pg *pg, bool *has, char *encoder, size_t enc_n,
                                      loom_rag_text_settings *t, char *err, size_t err_n) {
    char sql[256];
    *has = false;
    snprintf(sql, sizeof sql, "SELECT obj_description('%s'::regclass, 'pg_class')", pg->table);
    PGresult *r = PQexec(pg->conn, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        PQclear(r);
        return pg_fail(pg->conn, "table is not a loom vector table", err, err_n);
    }
    const char *c = PQgetvalue(r, 0, 0), *e = strstr(c, ";encoder=");
    memset(t, 0, sizeof *t);
    if (e && sscanf(c, "loom:metric=%*[a-z];chunk=%u;overlap=%u;dim=%u;normalize=%u;max_tokens=%u",
                    &t->chunk, &t->overlap, &t->encoder_dim, &t->normalize, &t->max_tokens) == 5) {
        snprintf(encoder, enc_n, "%s", e + 9);
        *has = true;
    }
    PQclear(r);
    return LOOM_OK;
}

loom_status loom_rag_pg_next_id(loom_rag_pg *pg, uint64_t *id, char *err, size_t err_n) {
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT coalesce(max(id) + 1, 0) FROM %s", pg->table);
    PGresult *r = PQexec(pg->conn, sql);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    if (ok) *id = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return ok ? LOOM_OK : pg_fail(pg->conn, "max(id)", err, err_n);
}

loom_status loom_rag_pg_sources(loom_rag_pg *pg, loom_rag_pg_source **out, size_t *n, char *err,
                                size_t err_n) {
    char sql[512];
    *out = NULL, *n = 0;
    snprintf(sql, sizeof sql,
             "SELECT source, min(tag) = max(tag) AND bool_and(tag_str = 'loom-rag-text'), "
             "min(tag) FROM %s GROUP BY source",
             pg->table);
    PGresult *r = PQexec(pg->conn, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        return pg_fail(pg->conn, "listing sources", err, err_n);
    }
    int rows = PQntuples(r);
    loom_rag_pg_source *v = calloc((size_t)rows + 1, sizeof *v);
    bool ok = v != NULL;
    for (int i = 0; ok && i < rows; i++) {
        ok = (v[i].source = dup_or_empty(r, i, 0)) != NULL;
        v[i].one_hash = PQgetvalue(r, i, 1)[0] == 't';
        v[i].hash = strtoll(PQgetvalue(r, i, 2), NULL, 10);
    }
    PQclear(r);
    if (!ok) {
        loom_rag_pg_free_sources(v, (size_t)rows);
        return BAD(LOOM_ERR_OOM, "out of memory");
    }
    *out = v, *n = (size_t)rows;
    return LOOM_OK;
}

void loom_rag_pg_free_sources(loom_rag_pg_source *v, size_t n) {
    for (size_t i = 0; v && i < n; i++)
        free(v[i].source);
    free(v);
}

loom_status loom_rag_pg_delete_source(loom_rag_pg *pg, const char *source, size_t *n_deleted,
                                      char *err, size_t err_n) {
    char sql[256];
    snprintf(sql, sizeof sql, "DELETE FROM %s WHERE source = $1", pg->table);
    const char *p[1] = {source};
    PGresult *r = PQexecParams(pg->conn, sql, 1, NULL, p, NULL, NULL, 0);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (ok && n_deleted) *n_deleted = strtoull(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return ok ? LOOM_OK : pg_fail(pg->conn, "DELETE", err, err_n);
}

loom_status loom_rag_pg_chunk_text(loom_rag_pg *pg, uint32_t id, char **text, char *err,
                                   size_t err_n) {
    char sql[256], ids[24];
    *text = NULL;
    snprintf(sql, sizeof sql, "SELECT chunk FROM %s WHERE id = $1::bigint", pg->table);
    snprintf(ids, sizeof ids, "%u", id);
    const char *p[1] = {ids};
    PGresult *r = PQexecParams(pg->conn, sql, 1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        return pg_fail(pg->conn, "reading the chunk text (a table from before the text column?)",
                       err, err_n);
    }
    *text = PQntuples(r) == 1 ? dup_or_empty(r, 0, 0) : strdup("");
    PQclear(r);
    return *text ? LOOM_OK : BAD(LOOM_ERR_OOM, "out of memory");
}
