/* cli/rag_serve.c - `loom serve --rag-index INDEX | --rag-store URL`: the
 * retriever behind the server's loom_retrieval extension (serve/http_rag.c)
 * is the one `loom rag search` and `loom rag ask` use (cli/rag_retrieve.c);
 * serve/ sees only a callback, so it does not depend on cli/ or rag/. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/rag_retrieve.h"
#include "serve/server.h"

bool loom_cli_serve_rag_open(loom_server *srv, const char *index, const char *store,
                             const char *table);
void loom_cli_serve_rag_close(void);

enum { MAX_K = 32 };

/* One per process (one server per `loom serve`); the encoder and the
 * document reader are used by one request at a time. */
static struct {
    loom_cli_retriever r;
    bool open;
    pthread_mutex_t mu;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER};

static char *dup0(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n), d[n] = '\0';
    return d;
}

static loom_status retrieve(void *ud, const char *query, int k, loom_server_source *out, int *n,
                            char *err, size_t err_n) {
    (void)ud;
    *n = 0;
    float *q = malloc((size_t)g.r.dim * sizeof *q);
    loom_cli_hit *h = calloc((size_t)k, sizeof *h);
    int nh = 0;
    loom_status st = LOOM_OK;
    if (!q || !h) {
        snprintf(err, err_n, "out of memory");
        st = LOOM_ERR_OOM;
        goto done;
    }
    loom_cli_search_opts so = {.k = k, .mmr = -1};
    pthread_mutex_lock(&g.mu);
    /* The retriever reports its errors on stderr (the server's log). */
    bool ok =
        loom_cli_retriever_encode(&g.r, &query, 1, q) && loom_cli_retrieve(&g.r, q, &so, h, &nh);
    pthread_mutex_unlock(&g.mu);
    if (!ok) {
        snprintf(err, err_n, "the index search failed (see the server log)");
        st = LOOM_ERR_IO;
        goto done;
    }
    for (int i = 0; i < nh; i++) {
        if (!h[i].len) continue; /* the source is gone or changed: warned */
        loom_server_source *o = &out[*n];
        o->source = dup0(h[i].meta.source, strlen(h[i].meta.source));
        o->title = dup0(h[i].meta.title, strlen(h[i].meta.title));
        o->text = dup0(h[i].text, h[i].len);
        o->byte_begin = h[i].meta.byte_begin, o->byte_end = h[i].meta.byte_end;
        o->id = h[i].id, o->score = h[i].score;
        (*n)++;
        if (!o->source || !o->title || !o->text) {
            snprintf(err, err_n, "out of memory");
            st = LOOM_ERR_OOM;
            break;
        }
    }
done:
    loom_cli_hits_free(h, nh);
    free(h), free(q);
    return st;
}

bool loom_cli_serve_rag_open(loom_server *srv, const char *index, const char *store,
                             const char *table) {
    loom_cli_retrieve_opts o = {.index = index, .store = store, .table = table, .threads = 1};
    if (!loom_cli_retriever_open(&g.r, "serve", &o)) return false;
    g.open = true;
    char err[256];
    if (loom_server_set_retriever(srv, retrieve, NULL, MAX_K, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "loom serve: %s\n", err);
        return false;
    }
    fprintf(stderr, "loom serve: retrieval from %s (encoder '%s', %d-d), up to %d sources\n",
            index   ? index
            : table ? table
                    : "loom_vectors",
            g.r.encoder, g.r.dim, MAX_K);
    return true;
}

void loom_cli_serve_rag_close(void) {
    if (g.open) loom_cli_retriever_close(&g.r);
    g.open = false;
}
