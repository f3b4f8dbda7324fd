/* serve/http_internal.h - what serve/http.c (routes) and serve/http_stream.c
 * (the streaming response) share: the server and per-request state. Not a
 * public interface. */
#ifndef LOOM_SERVE_HTTP_INTERNAL_H
#define LOOM_SERVE_HTTP_INTERNAL_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "serve/engine.h"
#include "serve/metrics.h"
#include "serve/openai_json.h"
#include "serve/ratelimit.h"
#include "serve/server.h"

enum { ST_LOADING = 0, ST_READY, ST_DRAINING };

/* Bodies above this are not even read (the connection is closed after the
 * 413); between max_body and this they are read and thrown away so that the
 * client, still sending, gets the 413 instead of a reset. */
#define HARD_BODY_LIMIT ((size_t)64 << 20)

struct loom_server {
    struct MHD_Daemon *d;
    int port;
    char *api_key;
    char *cors;            /* ",origin1,origin2," or NULL; "*" for any */
    loom_ratelimit *limit; /* NULL: no rate limit */
    void (*access_log)(void *ud, const char *line);
    void *access_log_ud;
    bool log_prompts;
    size_t max_body;
    atomic_int state;
    atomic_int in_flight; /* generation requests submitted and not yet closed */
    atomic_ullong counter;
    loom_metrics *metrics;
    loom_model *model;
    const loom_tokenizer *tok;
    char *model_name;
    int64_t n_ctx;
    int64_t started;
    loom_engine *engine;
    /* --embed-model: borrowed encoder, used under enc_mu (one embed call at
     * a time); NULL when the server has none. */
    loom_encoder *enc;
    char *enc_name;
    pthread_mutex_t enc_mu;
    /* --rag-index / --rag-store (serve/http_rag.c); NULL: none */
    loom_server_retrieve_fn retrieve;
    void *retrieve_ud;
    int retrieve_max_k;
};

/* Per-request state, from the first access-handler call until MHD's
 * completion notice and the response's free callback have both run. */
typedef struct conn_ctx {
    loom_server *srv;
    struct MHD_Connection *conn;
    atomic_int refs;
    const char *route;
    int retry_after; /* seconds, for a 429 */
    /* access log */
    char method[16];
    char *path; /* valid UTF-8 copy */
    double t0;
    int status;
    int64_t n_prompt, n_gen;
    const char *finish;
    char *prompt_log; /* with log_prompts only */
    char *body;
    size_t len, cap;
    bool too_big;
    /* generation */
    loom_engine_req *req;
    bool counted;   /* in srv->in_flight */
    bool suspended; /* under the request's lock (engine.h: take/notify) */
    loom_serve_meta meta;
    char id[48];
    bool stream, include_usage, finished;
    bool gone; /* the reader saw the client close */
    char *acc; /* non-streaming: the whole text */
    size_t acc_len;
    bool lp_on;                 /* the request asked for logprobs */
    loom_serve_logprob *lp_acc; /* non-streaming: every token's logprobs */
    size_t n_lp_acc;
    char *rag_sources; /* "loom_sources" JSON array (http_rag.c), or NULL */
    char *out;         /* bytes MHD has not taken yet */
    size_t out_len, out_off;
} conn_ctx;

/* Drop a reference to c; the last one cancels and releases its request. */
void loom_http_ctx_unref(conn_ctx *c);

/* The engine's notify callback (engine thread, request lock held). */
void loom_http_on_notify(void *ud);
/* MHD content reader of a generation response and its free callback (cls is
 * the conn_ctx, which holds a reference for the response). */
ssize_t loom_http_reader(void *cls, uint64_t pos, char *buf, size_t max);
void loom_http_reader_free(void *cls);

/* POST /v1/embeddings (serve/http_embed.c): returns the HTTP status and sets
 * *out to the JSON body (response or error; malloc'd, may be NULL when out of
 * memory) and *n_tokens to the tokens embedded (-1 on error). */
int loom_http_embeddings(loom_server *s, const char *body, size_t len, int64_t *n_tokens,
                         char **out);

/* Retrieval (serve/http_rag.c): when the chat request body asks for it
 * ("loom_retrieval"), put the sources into p's system message and set
 * *sources to the "loom_sources" JSON array (malloc'd). Returns 0, or an
 * HTTP status with e filled. */
int loom_http_rag_augment(loom_server *s, const char *body, size_t len, loom_serve_params *p,
                          char **sources, loom_serve_error *e);
/* json (a response object, or an SSE "data: {...}\n\n" event) with
 * "loom_sources": sources added; takes json, returns a new string (json
 * itself when sources is NULL or on failure). */
char *loom_http_rag_attach(char *json, const char *sources);

#endif
