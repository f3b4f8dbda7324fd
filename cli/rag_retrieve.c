/* cli/rag_retrieve.c - the retrieval step of `loom rag search "text"` and
 * `loom rag ask` (rules in rag_retrieve.h; ADR 0032). */
#define _POSIX_C_SOURCE 200809L
#include "cli/rag_retrieve.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef LOOM_HAVE_LIBPQ
#include "rag/store_pg.h"
#endif

enum { BATCH = 32 };

static loom_encoder *open_enc(const char *cmd, const char *name) {
    char dir[PATH_MAX], err[400];
    loom_encoder *e = NULL;
    if (loom_encoder_resolve(name, dir, sizeof dir, err, sizeof err) != LOOM_OK ||
        loom_encoder_load(dir, NULL, &e, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "loom rag %s: encoder '%s': %s\n", cmd, name, err);
        return NULL;
    }
    return e;
}

bool loom_cli_retriever_open(loom_cli_retriever *r, const char *cmd,
                             const loom_cli_retrieve_opts *o) {
    memset(r, 0, sizeof *r);
    r->cmd = cmd;
    char err[1200];
    const char *what = o->index;
    if (o->index) {
        if (loom_rag_index_load(o->index, 0, &r->ix, err, sizeof err) != LOOM_OK) {
            fprintf(stderr, "loom rag %s: %s\n", cmd, err);
            return false;
        }
        r->dim = loom_rag_index_dim(r->ix);
        r->metric = loom_rag_index_metric(r->ix);
        snprintf(r->encoder, sizeof r->encoder, "%s", loom_rag_index_encoder(r->ix));
        if (loom_threadpool_new(o->threads, &r->pool) != LOOM_OK) r->pool = NULL;
    } else {
#ifdef LOOM_HAVE_LIBPQ
        const char *table = o->table ? o->table : "loom_vectors";
        what = table;
        bool has = false;
        loom_rag_text_settings ts;
        if (loom_rag_pg_open(o->store, table, &r->pg, err, sizeof err) != LOOM_OK ||
            loom_rag_pg_describe(r->pg, &r->dim, &r->metric, err, sizeof err) != LOOM_OK ||
            loom_rag_pg_text_settings(r->pg, &has, r->encoder, sizeof r->encoder, &ts, err,
                                      sizeof err) != LOOM_OK) {
            fprintf(stderr, "loom rag %s: --store: %s\n", cmd, err);
            loom_cli_retriever_close(r);
            return false;
        }
#else
        fprintf(stderr, "loom rag %s: --store: this loom was built without libpq\n", cmd);
        return false;
#endif
    }
    const char *ename = o->encoder ? o->encoder : r->encoder;
    if (!ename[0]) {
        fprintf(stderr,
                "loom rag %s: %s does not name its encoder (built from vectors?); give -m "
                "ENCODER or a query vector\n",
                cmd, what);
        loom_cli_retriever_close(r);
        return false;
    }
    if (!(r->enc = open_enc(cmd, ename))) {
        loom_cli_retriever_close(r);
        return false;
    }
    if (loom_encoder_dim(r->enc) != r->dim) {
        fprintf(stderr, "loom rag %s: encoder '%s' makes %d-d vectors, %s holds %d-d\n", cmd, ename,
                (int)loom_encoder_dim(r->enc), what, r->dim);
        loom_cli_retriever_close(r);
        return false;
    }
    return true;
}

void loom_cli_retriever_close(loom_cli_retriever *r) {
    loom_cli_doc_reader_free(&r->rd);
    loom_encoder_free(r->enc);
    loom_rag_index_free(r->ix);
    loom_threadpool_free(r->pool);
#ifdef LOOM_HAVE_LIBPQ
    loom_rag_pg_close(r->pg);
#endif
    memset(r, 0, sizeof *r);
}

bool loom_cli_retriever_encode(loom_cli_retriever *r, const char *const *texts, int nq, float *q) {
    char err[400];
    for (int b = 0; b < nq; b += BATCH) {
        int n = nq - b < BATCH ? nq - b : BATCH;
        if (loom_encoder_embed(r->enc, texts + b, n, q + (size_t)b * r->dim, err, sizeof err) !=
            LOOM_OK) {
            fprintf(stderr, "loom rag %s: encoder: %s\n", r->cmd, err);
            return false;
        }
    }
    return true;
}

void loom_cli_hits_free(loom_cli_hit *hits, int n) {
    for (int i = 0; hits && i < n; i++) {
        free((char *)hits[i].meta.source);
        free((char *)hits[i].meta.title);
        free((char *)hits[i].meta.tag_str);
        free(hits[i].text);
        memset(&hits[i], 0, sizeof hits[i]);
    }
}

static char *dupn(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n), d[n] = '\0';
    return d;
}

/* The first stage: top k from the index or the store, with text. */
static bool first_stage(loom_cli_retriever *r, const float *q, int k, int ef, bool exact,
                        const loom_rag_filter *f, loom_cli_hit *hits, int *n) {
    *n = 0;
    loom_rag_hit *h = malloc((size_t)k * sizeof *h);
    if (!h) return fprintf(stderr, "loom rag %s: out of memory\n", r->cmd), false;
    int nh = 0;
    bool ok = true;
    if (r->ix) {
        loom_rag_search_params sp = {.k = k, .ef_search = ef, .exact = exact, .filter = f};
        if (loom_rag_index_search(r->ix, q, &sp, r->pool, h, &nh) != LOOM_OK) {
            fprintf(stderr, "loom rag %s: %s\n", r->cmd, loom_rag_index_error(r->ix));
            ok = false;
        }
        for (int i = 0; ok && i < nh; i++) {
            loom_rag_meta m;
            loom_rag_index_meta(r->ix, h[i].id, &m);
            size_t tn = 0;
            const char *t = loom_cli_doc_chunk(&r->rd, &m, &tn);
            loom_cli_hit *o = &hits[i];
            o->id = h[i].id, o->score = h[i].score, o->meta = m, o->len = tn;
            o->meta.source = strdup(m.source), o->meta.title = strdup(m.title);
            o->meta.tag_str = strdup(m.tag_str), o->text = dupn(t, tn);
            *n = i + 1;
            if (!o->meta.source || !o->meta.title || !o->meta.tag_str || !o->text) {
                fprintf(stderr, "loom rag %s: out of memory\n", r->cmd);
                ok = false;
            }
        }
    } else {
#ifdef LOOM_HAVE_LIBPQ
        char err[600];
        loom_rag_meta *md = calloc((size_t)k, sizeof *md);
        if (!md || loom_rag_pg_search(r->pg, q, r->dim, k, ef, exact, f, h, md, &nh, err,
                                      sizeof err) != LOOM_OK) {
            fprintf(stderr, "loom rag %s: --store: %s\n", r->cmd, md ? err : "out of memory");
            ok = false;
        }
        for (int i = 0; ok && i < nh; i++) {
            loom_cli_hit *o = &hits[i];
            o->id = h[i].id, o->score = h[i].score, o->meta = md[i];
            md[i] = (loom_rag_meta){0};
            *n = i + 1;
            if (loom_rag_pg_chunk_text(r->pg, o->id, &o->text, err, sizeof err) != LOOM_OK) {
                fprintf(stderr, "loom rag %s: --store: %s\n", r->cmd, err);
                ok = false;
            } else {
                o->len = strlen(o->text);
            }
        }
        loom_rag_pg_free_meta(md, nh);
        free(md);
#endif
    }
    free(h);
    return ok;
}

int loom_cli_mmr(const float *v, const float *sim_q, int n, int dim, float lambda, int k,
                 int *order) {
    if (k > n) k = n;
    bool *used = calloc((size_t)(n ? n : 1), 1);
    float *maxsim = malloc((size_t)(n ? n : 1) * sizeof *maxsim); /* max sim to the picked */
    if (!used || !maxsim) return free(used), free(maxsim), 0;
    for (int i = 0; i < n; i++)
        maxsim[i] = -1e30f;
    int got = 0;
    for (; got < k; got++) {
        int best = -1;
        double bv = 0;
        for (int i = 0; i < n; i++) {
            if (used[i]) continue;
            double s = (double)lambda * sim_q[i] - (got ? (1.0 - lambda) * maxsim[i] : 0.0);
            if (best < 0 || s > bv) best = i, bv = s;
        }
        used[best] = true;
        order[got] = best;
        for (int i = 0; i < n; i++) {
            if (used[i]) continue;
            double d = 0;
            for (int j = 0; j < dim; j++)
                d += (double)v[(size_t)i * dim + j] * v[(size_t)best * dim + j];
            if ((float)d > maxsim[i]) maxsim[i] = (float)d;
        }
    }
    free(used), free(maxsim);
    return got;
}

/* Re-encode the candidates' texts (f32, the same encoder), exact cosine
 * with q, then the k best or the MMR picks. Candidates without text are
 * dropped (there is nothing to show or re-encode). */
static bool rerank(loom_cli_retriever *r, const float *q, const loom_cli_search_opts *so,
                   loom_cli_hit *hits, int *n) {
    int m = 0;
    for (int i = 0; i < *n; i++) {
        if (hits[i].len) {
            loom_cli_hit t = hits[i];
            hits[i] = hits[m];
            hits[m++] = t;
        }
    }
    loom_cli_hits_free(hits + m, *n - m);
    *n = m;
    if (!m) return true;
    const int d = r->dim;
    float *v = malloc((size_t)m * d * sizeof *v), *sq = malloc((size_t)m * sizeof *sq);
    const char **tx = malloc((size_t)m * sizeof *tx);
    int *order = malloc((size_t)m * sizeof *order);
    loom_cli_hit *tmp = malloc((size_t)m * sizeof *tmp);
    bool *kept = calloc((size_t)m, 1);
    bool ok = v && sq && tx && order && tmp && kept;
    if (!ok) fprintf(stderr, "loom rag %s: out of memory\n", r->cmd);
    for (int i = 0; ok && i < m; i++)
        tx[i] = hits[i].text;
    if (ok) ok = loom_cli_retriever_encode(r, tx, m, v);
    for (int i = 0; ok && i < m; i++) {
        double s = 0;
        for (int j = 0; j < d; j++)
            s += (double)q[j] * v[(size_t)i * d + j];
        sq[i] = (float)s;
    }
    int k = so->k < m ? so->k : m;
    if (ok && so->mmr >= 0) {
        k = loom_cli_mmr(v, sq, m, d, so->mmr, k, order);
    } else if (ok) { /* best cosine first; ties keep the first stage's order */
        for (int i = 0; i < m; i++)
            order[i] = i;
        for (int i = 1; i < m; i++)
            for (int j = i; j > 0 && sq[order[j]] > sq[order[j - 1]]; j--) {
                int t = order[j];
                order[j] = order[j - 1], order[j - 1] = t;
            }
    }
    if (ok) {
        for (int i = 0; i < k; i++) {
            tmp[i] = hits[order[i]];
            tmp[i].score = sq[order[i]];
            kept[order[i]] = true;
        }
        for (int i = 0, j = k; i < m; i++)
            if (!kept[i]) tmp[j++] = hits[i];
        memcpy(hits, tmp, (size_t)m * sizeof *hits);
        loom_cli_hits_free(hits + k, m - k);
        *n = k;
    }
    free(v), free(sq), free(tx), free(order), free(tmp), free(kept);
    return ok;
}

bool loom_cli_retrieve(loom_cli_retriever *r, const float *q, const loom_cli_search_opts *so,
                       loom_cli_hit *hits, int *n) {
    const bool re = so->rerank > 0 || so->mmr >= 0;
    const int k1 = re && so->rerank > so->k ? so->rerank : so->k;
    if (!first_stage(r, q, k1, so->ef, so->exact, so->filter, hits, n)) return false;
    return re ? rerank(r, q, so, hits, n) : true;
}
