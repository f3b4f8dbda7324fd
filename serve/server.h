/* serve/server.h - `loom serve`: an OpenAI-compatible HTTP server on
 * libmicrohttpd (docs/adr/0019-serving.md) in front of the engine.
 *
 * HTTP threads (MHD's pool) only parse, validate, tokenize and stream; the
 * engine thread (serve/engine.h) owns the model. A streaming response is a
 * content-reader callback that takes the request's new text from the engine;
 * when there is none it suspends the connection (MHD_suspend_connection) and
 * the engine resumes it when it has more, so no thread waits per request.
 *
 * Lifecycle: loom_server_start listens at once (GET /health says "loading",
 * the API answers 503) so that orchestrators can watch a slow load;
 * loom_server_set_model makes it ready; loom_server_drain refuses new work
 * (503) and waits for the requests in flight; loom_server_free stops it.
 * The library never prints: errors come back in err. */
#ifndef LOOM_SERVE_SERVER_H
#define LOOM_SERVE_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "loom/encoder.h"
#include "loom/model.h"
#include "loom/status.h"
#include "serve/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_server loom_server;

typedef struct loom_server_config {
    const char *host;    /* numeric IPv4/IPv6 address; NULL = "127.0.0.1" */
    int port;            /* 0 = any free port (see loom_server_port) */
    int n_threads;       /* HTTP threads; 0 = 4 */
    const char *api_key; /* NULL or "" = no authentication; copied */
    size_t max_body;     /* request body limit in bytes (413 above); 0 = 1 MiB */
    int timeout_s;       /* close a connection idle this long (slow clients); 0 = 60 */
    /* Browser origins allowed to call the API (CORS), comma-separated, e.g.
     * "https://app.example,http://localhost:3000", or "*"; NULL/"" = none:
     * no CORS headers and no OPTIONS preflight. Copied. */
    const char *cors;
    /* Requests per second per client on /v1/ routes (a token bucket holding
     * max(1, rate) requests; the client is the API key, or the address when
     * there is no key); over it: 429 with Retry-After. 0 = no limit. */
    double rate_limit;
    /* Access log: one JSON line per finished request (no newline), called
     * on an HTTP thread (so it must be thread-safe); NULL = none. Prompt
     * text is included only with log_prompts. */
    void (*access_log)(void *ud, const char *line);
    void *access_log_ud;
    bool log_prompts;
} loom_server_config;

/* Listen on host:port. *out is freed with loom_server_free. */
loom_status loom_server_start(const loom_server_config *c, loom_server **out, char *err,
                              size_t err_n);
int loom_server_port(const loom_server *s); /* the bound port */

/* Serve m (borrowed: it must outlive the server) under the name model_name
 * (copied; the "model" of requests and responses). Starts the engine over
 * all of m's KV slots. */
loom_status loom_server_set_model(loom_server *s, loom_model *m, const char *model_name,
                                  const loom_engine_params *ep, char *err, size_t err_n);

/* Serve POST /v1/embeddings from e (borrowed: it must outlive the server)
 * under the name name (copied), next to the model. Call it before
 * loom_server_set_model (requests see it once the server is ready). */
loom_status loom_server_set_encoder(loom_server *s, loom_encoder *e, const char *name, char *err,
                                    size_t err_n);

/* Retrieval on chat completions, a loom extension (serve/http_rag.c, ADR
 * 0032): a request with "loom_retrieval": true or {"k": K} (1..max_k,
 * default 4) has the text of its last user message retrieved by fn; the
 * hits go into the system message as numbered sources, and the response
 * (the first chunk when streaming) carries them in "loom_sources". fn is
 * called on HTTP threads, several at once (it serialises itself); it fills
 * out (room for k) with malloc'd strings and sets *n. */
typedef struct loom_server_source {
    char *source, *title, *text;
    uint64_t byte_begin, byte_end;
    uint32_t id;
    float score;
} loom_server_source;
typedef loom_status (*loom_server_retrieve_fn)(void *ud, const char *query, int k,
                                               loom_server_source *out, int *n, char *err,
                                               size_t err_n);
/* Set once, before loom_server_set_model; ud is borrowed. */
loom_status loom_server_set_retriever(loom_server *s, loom_server_retrieve_fn fn, void *ud,
                                      int max_k, char *err, size_t err_n);
void loom_server_sources_free(loom_server_source *v, int n);

/* Refuse new requests with 503 and wait up to timeout_s for those in flight
 * to finish. Returns true when none is left. */
bool loom_server_drain(loom_server *s, double timeout_s);

/* Stop the engine (requests still running end), then the HTTP daemon. NULL
 * is fine. */
void loom_server_free(loom_server *s);

/* Equal strings, in time that depends only on the length of secret (API
 * keys: no early exit an attacker could time). */
bool loom_server_key_equal(const char *secret, const char *given);

#ifdef __cplusplus
}
#endif
#endif
