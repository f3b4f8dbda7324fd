/* serve/http.c - routes, auth, limits and the daemon on libmicrohttpd (see
 * server.h); the streaming response is serve/http_stream.c. */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "loom/generate.h"
#include "loom/tokenizer.h"
#include "serve/chat.h"
#include "serve/metrics.h"
#include "serve/openai_json.h"
#include "serve/ratelimit.h"
#include "serve/text.h"
#include "serve/server.h"

#include "serve/http_internal.h"

static char *dup_s(const char *s) {
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A fresh 64-bit value: ids and default seeds (not secrets). */
static uint64_t fresh(loom_server *s) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = ((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^
                 (atomic_fetch_add(&s->counter, 1) << 32);
    return splitmix(&x);
}

bool loom_server_key_equal(const char *secret, const char *given) {
    size_t ls = strlen(secret), lg = strlen(given);
    volatile unsigned char diff = (unsigned char)(ls != lg);
    for (size_t i = 0; i < ls; i++)
        diff |= (unsigned char)secret[i] ^ (unsigned char)(i < lg ? given[i] : 0);
    return diff == 0;
}

void loom_http_ctx_unref(conn_ctx *c) {
    if (atomic_fetch_sub(&c->refs, 1) != 1) return;
    if (c->req) {
        loom_engine_cancel(c->req);
        loom_engine_req_release(c->req);
    }
    if (c->counted) atomic_fetch_sub(&c->srv->in_flight, 1);
    free(c->path);
    free(c->prompt_log);
    free(c->rag_sources);
    free(c->body);
    free(c->acc);
    free(c->lp_acc);
    free(c->out);
    free(c);
}

/* ---- plain responses ---- */

/* The request's Origin when CORS allows it (borrowed from MHD), else NULL. */
static const char *cors_origin(conn_ctx *c) {
    const char *allowed = c->srv->cors;
    if (!allowed) return NULL;
    const char *o = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Origin");
    if (!o || !o[0] || strchr(o, ',')) return NULL;
    if (!strcmp(allowed, "*")) return o;
    size_t n = strlen(o);
    for (const char *p = strstr(allowed, o); p; p = strstr(p + 1, o))
        if (p[-1] == ',' && p[n] == ',') return o;
    return NULL;
}

static void add_cors(conn_ctx *c, struct MHD_Response *r) {
    const char *o = cors_origin(c);
    if (!o) return;
    MHD_add_response_header(r, "Access-Control-Allow-Origin", o);
    MHD_add_response_header(r, "Vary", "Origin");
}

static enum MHD_Result reply(conn_ctx *c, int status, const char *ctype, char *body) {
    const char *b = body ? body : "";
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(b), (void *)b, MHD_RESPMEM_MUST_COPY);
    free(body);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    add_cors(c, r);
    if (status == 401) MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (status == 429) {
        char ra[32];
        snprintf(ra, sizeof ra, "%d", c->retry_after);
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    enum MHD_Result ok = MHD_queue_response(c->conn, (unsigned)status, r);
    MHD_destroy_response(r);
    loom_metrics_count(c->srv->metrics, c->route, status);
    c->status = status;
    return ok;
}

static enum MHD_Result reply_error(conn_ctx *c, const loom_serve_error *e) {
    return reply(c, e->status, "application/json", loom_serve_error_json(e));
}

#if defined(__GNUC__)
__attribute__((format(printf, 6, 7)))
#endif
static enum MHD_Result
fail(conn_ctx *c, int status, const char *type, const char *param, const char *code,
     const char *fmt, ...) {
    loom_serve_error e;
    e.status = status;
    e.type = type;
    e.param = param;
    e.code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    return reply_error(c, &e);
}

static enum MHD_Result unavailable(conn_ctx *c) {
    bool loading = atomic_load(&c->srv->state) == ST_LOADING;
    return fail(c, 503, "server_error", NULL, loading ? "model_loading" : "server_draining",
                loading ? "the model is still loading" : "the server is shutting down");
}

/* ---- generation endpoints ---- */

/* The request's text for --log-prompts ("role: content" lines for chat),
 * repaired to valid UTF-8 so that the log line is valid JSON. */
static char *prompt_text(const loom_serve_params *p) {
    size_t n = p->prompt ? strlen(p->prompt) : 0;
    for (size_t i = 0; i < p->n_messages; i++)
        n += strlen(p->messages[i].role) + strlen(p->messages[i].content) + 3;
    char *t = malloc(n + 1);
    if (!t) return NULL;
    size_t k = 0;
    if (p->prompt) k += (size_t)snprintf(t, n + 1, "%s", p->prompt);
    for (size_t i = 0; i < p->n_messages; i++)
        k += (size_t)snprintf(t + k, n + 1 - k, "%s: %s\n", p->messages[i].role,
                              p->messages[i].content);
    size_t m;
    char *r = loom_utf8_repair(t, k, &m);
    free(t);
    return r;
}

static enum MHD_Result generate(conn_ctx *c, loom_serve_kind kind) {
    loom_server *s = c->srv;
    if (atomic_load(&s->state) != ST_READY) return unavailable(c);
    loom_serve_params p;
    loom_serve_error e;
    loom_status st = loom_serve_parse_request(c->body ? c->body : "", c->len, kind, &p, &e);
    if (st != LOOM_OK) return reply_error(c, &e);
    if (p.model && strcmp(p.model, s->model_name) != 0) {
        enum MHD_Result r = fail(c, 404, "invalid_request_error", "model", "model_not_found",
                                 "the model '%.100s' does not exist (this server has '%.100s')",
                                 p.model, s->model_name);
        loom_serve_params_free(&p);
        return r;
    }
    if (kind == LOOM_SERVE_CHAT) { /* the loom_retrieval extension (http_rag.c) */
        int rs = loom_http_rag_augment(s, c->body ? c->body : "", c->len, &p, &c->rag_sources, &e);
        if (rs) {
            loom_serve_params_free(&p);
            return reply_error(c, &e);
        }
    }
    /* Tokenize here, on the HTTP thread: the engine thread only runs the model.
     * Chat contents are plain text (serve/chat.h); a completions prompt is
     * raw model input, where special-token text is meant as such (as in
     * llama-server and loom run). */
    int32_t *ids = NULL;
    size_t n_ids = 0;
    char err[256] = "";
    st = kind == LOOM_SERVE_CHAT
             ? loom_serve_chat_encode(s->tok, p.messages, p.n_messages, &ids, &n_ids, err,
                                      sizeof err)
             : loom_tokenizer_encode(s->tok, p.prompt, strlen(p.prompt),
                                     loom_tokenizer_add_bos(s->tok) ? LOOM_TOK_ADD_BOS : 0u, &ids,
                                     &n_ids, err, sizeof err);
    if (st != LOOM_OK) {
        free(ids);
        loom_serve_params_free(&p);
        return fail(c, 400, "invalid_request_error",
                    kind == LOOM_SERVE_CHAT ? "messages" : "prompt", NULL,
                    "cannot tokenize the input: %s", err[0] ? err : "out of memory");
    }
    const char *pname = kind == LOOM_SERVE_CHAT ? "messages" : "prompt";
    if (n_ids == 0 || (int64_t)n_ids >= s->n_ctx) {
        free(ids);
        loom_serve_params_free(&p);
        return fail(c, 400, "invalid_request_error", pname, "context_length_exceeded",
                    "the input is %zu tokens; this server's context is %lld tokens per sequence",
                    n_ids, (long long)s->n_ctx);
    }
    loom_engine_input in = {0};
    in.prompt = ids;
    in.n_prompt = n_ids;
    in.max_tokens = p.max_tokens;
    loom_sampler_params sp = loom_sampler_default_params();
    /* OpenAI's sampler: temperature and nucleus only, penalties over the
     * generated tokens. */
    sp.temperature = (float)p.temperature;
    sp.top_p = (float)p.top_p;
    sp.top_k = 0;
    sp.min_p = 0;
    sp.repeat_penalty = 1;
    sp.presence_penalty = (float)p.presence_penalty;
    sp.frequency_penalty = (float)p.frequency_penalty;
    sp.penalty_last_n = -1;
    sp.seed = p.has_seed ? p.seed : fresh(s);
    in.sampling = sp;
    in.stop = p.stop;
    in.n_stop = p.n_stop;
    in.n_logprobs = p.n_logprobs;
    c->lp_on = p.n_logprobs >= 0;
    c->stream = p.stream;
    c->include_usage = p.include_usage;
    c->n_prompt = (int64_t)n_ids;
    c->n_gen = 0;
    if (s->log_prompts) c->prompt_log = prompt_text(&p);
    c->meta.kind = kind;
    snprintf(c->id, sizeof c->id, "%s-%016llx", kind == LOOM_SERVE_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)fresh(s));
    c->meta.id = c->id;
    c->meta.created = (int64_t)time(NULL);
    c->meta.model = s->model_name;
    /* Counted before submit so that a drain cannot miss it. */
    atomic_fetch_add(&s->in_flight, 1);
    c->counted = true;
    st = loom_engine_submit(s->engine, &in, loom_http_on_notify, c, &c->req);
    free(ids);
    loom_serve_params_free(&p);
    if (st != LOOM_OK) return unavailable(c);
    struct MHD_Response *r = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, 4096, loom_http_reader, c, loom_http_reader_free);
    if (!r) return MHD_NO;
    atomic_fetch_add(&c->refs, 1); /* the response's */
    add_cors(c, r);
    if (c->stream) {
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    } else {
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    }
    enum MHD_Result ok = MHD_queue_response(c->conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    loom_metrics_count(s->metrics, c->route, 200);
    c->status = 200;
    return ok;
}

/* ---- other routes ---- */

static cJSON *model_item(loom_server *s, const char *name, bool embedding) {
    cJSON *item = cJSON_CreateObject();
    cJSON_AddStringToObject(item, "id", name);
    cJSON_AddStringToObject(item, "object", "model");
    cJSON_AddNumberToObject(item, "created", (double)s->started);
    cJSON_AddStringToObject(item, "owned_by", "loom");
    /* loom extension: what the model serves. */
    cJSON_AddStringToObject(item, "type", embedding ? "embedding" : "text-generation");
    if (embedding) cJSON_AddNumberToObject(item, "dimensions", (double)loom_encoder_dim(s->enc));
    /* loom extension: the entry /v1/embeddings runs, and how. Without
     * --embed-model that is the LLM itself (its mean-pooled final hidden
     * states, docs/adr/0019-serving.md addendum "Embeddings from the LLM"). */
    if (embedding || !s->enc) {
        cJSON *em = cJSON_AddObjectToObject(item, "embeddings");
        cJSON_AddStringToObject(em, "source", embedding ? "encoder" : "llm");
        cJSON_AddStringToObject(em, "pooling", "mean"); /* both: mean over the tokens */
        cJSON_AddBoolToObject(em, "normalized", true);
        cJSON_AddNumberToObject(em, "dimensions",
                                embedding ? (double)loom_encoder_dim(s->enc)
                                          : (double)loom_model_config_of(s->model)->dim);
    }
    return item;
}

/* one: the entry of /v1/models/{name} (NULL: the list). */
static char *models_json(loom_server *s, const char *one) {
    cJSON *root;
    if (one) {
        root = model_item(s, one, strcmp(one, s->model_name) != 0);
    } else {
        root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "object", "list");
        cJSON *data = cJSON_AddArrayToObject(root, "data");
        cJSON_AddItemToArray(data, model_item(s, s->model_name, false));
        if (s->enc) cJSON_AddItemToArray(data, model_item(s, s->enc_name, true));
    }
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

/* The client's IP address as text ("?" when unknown). */
static void client_addr(struct MHD_Connection *conn, char *out, size_t n) {
    snprintf(out, n, "?");
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
                  (socklen_t)n);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
                  (socklen_t)n);
}

static bool authorized(conn_ctx *c) {
    loom_server *s = c->srv;
    if (!s->api_key) return true;
    const char *h = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7) != 0) return false;
    return loom_server_key_equal(s->api_key, h + 7);
}

/* serve/web/chat.html, embedded at build time (serve/CMakeLists.txt). */
extern const char loom_chat_page_html[];
extern const unsigned long loom_chat_page_html_len;

/* GET /: the chat page. It is public like /health (it holds no data; the
 * API calls it makes carry the key the user types in). The CSP keeps the
 * page to its own inline code and this server's API. */
static enum MHD_Result chat_page(conn_ctx *c) {
    struct MHD_Response *r = MHD_create_response_from_buffer(
        (size_t)loom_chat_page_html_len, (void *)loom_chat_page_html, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'none'; script-src 'unsafe-inline'; style-src "
                            "'unsafe-inline'; connect-src 'self'; img-src 'self' data:");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result ok = MHD_queue_response(c->conn, 200, r);
    MHD_destroy_response(r);
    loom_metrics_count(c->srv->metrics, c->route, 200);
    c->status = 200;
    return ok;
}

static enum MHD_Result route(conn_ctx *c, const char *url, const char *method) {
    loom_server *s = c->srv;
    bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    bool post = !strcmp(method, "POST");
    if (!strcmp(method, "OPTIONS")) {
        /* CORS preflight: browsers send it without credentials, so it is
         * answered before the key check, and only for allowed origins. */
        if (!cors_origin(c))
            return fail(c, 403, "invalid_request_error", NULL, "cors_origin_not_allowed",
                        "cross-origin requests from this origin are not allowed");
        struct MHD_Response *r =
            MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (!r) return MHD_NO;
        add_cors(c, r);
        MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        MHD_add_response_header(r, "Access-Control-Allow-Headers",
                                "Authorization, Content-Type, OpenAI-Organization, OpenAI-Project");
        MHD_add_response_header(r, "Access-Control-Max-Age", "600");
        enum MHD_Result ok = MHD_queue_response(c->conn, 204, r);
        MHD_destroy_response(r);
        loom_metrics_count(s->metrics, c->route, 204);
        c->status = 204;
        return ok;
    }
    if (!strcmp(url, "/health")) {
        if (!get) return fail(c, 405, "invalid_request_error", NULL, NULL, "use GET");
        int st = atomic_load(&s->state);
        const char *body = st == ST_READY     ? "{\"status\":\"ok\"}"
                           : st == ST_LOADING ? "{\"status\":\"loading\"}"
                                              : "{\"status\":\"draining\"}";
        return reply(c, st == ST_READY ? 200 : 503, "application/json", dup_s(body));
    }
    if (!strcmp(url, "/") || !strcmp(url, "/index.html")) {
        if (!get) return fail(c, 405, "invalid_request_error", NULL, NULL, "use GET");
        return chat_page(c);
    }
    if (c->too_big)
        return fail(c, 413, "invalid_request_error", NULL, "request_too_large",
                    "the request body is larger than %zu bytes", s->max_body);
    if (!authorized(c))
        return fail(c, 401, "invalid_request_error", NULL, "invalid_api_key",
                    "missing or incorrect API key (send 'Authorization: Bearer KEY')");
    if (s->limit && !strncmp(url, "/v1/", 4)) {
        char who[INET6_ADDRSTRLEN + 8] = "key"; /* one key for now: its bucket */
        if (!s->api_key) client_addr(c->conn, who, sizeof who);
        double wait = loom_ratelimit_take(s->limit, who, mono_s());
        if (wait > 0) {
            c->retry_after = (int)wait + 1;
            return fail(c, 429, "requests", NULL, "rate_limit_exceeded",
                        "rate limit reached; retry after %d s", c->retry_after);
        }
    }
    if (!strcmp(url, "/metrics")) {
        if (!get) return fail(c, 405, "invalid_request_error", NULL, NULL, "use GET");
        /* s->engine is set before the state leaves "loading" (seq_cst). */
        loom_engine *eng = atomic_load(&s->state) == ST_LOADING ? NULL : s->engine;
        loom_engine_stats es;
        if (eng) loom_engine_get_stats(eng, &es);
        return reply(c, 200, "text/plain; version=0.0.4",
                     loom_metrics_render(s->metrics, eng ? &es : NULL));
    }
    if (!strcmp(url, "/v1/models") || !strncmp(url, "/v1/models/", 11)) {
        if (!get) return fail(c, 405, "invalid_request_error", NULL, NULL, "use GET");
        if (atomic_load(&s->state) == ST_LOADING || !s->model_name) return unavailable(c);
        const char *one = url[10] == '/' ? url + 11 : NULL;
        if (one && strcmp(one, s->model_name) != 0 && !(s->enc && !strcmp(one, s->enc_name)))
            return fail(c, 404, "invalid_request_error", "model", "model_not_found",
                        "the model '%.100s' does not exist", one);
        return reply(c, 200, "application/json", models_json(s, one));
    }
    if (!strcmp(url, "/v1/embeddings")) {
        if (!post) return fail(c, 405, "invalid_request_error", NULL, NULL, "use POST");
        if (atomic_load(&s->state) != ST_READY) return unavailable(c);
        /* In flight while it runs, so that a drain waits for it. */
        atomic_fetch_add(&s->in_flight, 1);
        char *out = NULL;
        int status = loom_http_embeddings(s, c->body ? c->body : "", c->len, &c->n_prompt, &out);
        atomic_fetch_sub(&s->in_flight, 1);
        return reply(c, status, "application/json", out);
    }
    if (!strcmp(url, "/v1/chat/completions") || !strcmp(url, "/v1/completions")) {
        if (!post) return fail(c, 405, "invalid_request_error", NULL, NULL, "use POST");
        return generate(c,
                        url[4] == 'c' && url[5] == 'h' ? LOOM_SERVE_CHAT : LOOM_SERVE_COMPLETION);
    }
    return fail(c, 404, "invalid_request_error", NULL, "not_found", "unknown route %s %.100s",
                method, url);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **req_cls) {
    (void)version;
    loom_server *s = cls;
    conn_ctx *c = *req_cls;
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c) return MHD_NO;
        c->srv = s;
        c->conn = conn;
        atomic_init(&c->refs, 1);
        c->route = loom_metrics_route(url);
        c->t0 = mono_s();
        c->n_prompt = c->n_gen = -1;
        snprintf(c->method, sizeof c->method, "%s", method);
        if (s->access_log) {
            size_t pl = strlen(url), m;
            c->path = loom_utf8_repair(url, pl > 512 ? 512 : pl, &m);
        }
        *req_cls = c;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > HARD_BODY_LIMIT) {
            c->too_big = true;
            return fail(c, 413, "invalid_request_error", NULL, "request_too_large",
                        "the request body is larger than %zu bytes", s->max_body);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (c->too_big || c->len + n > s->max_body) {
            /* Keep reading and dropping: the client gets its 413 at the end. */
            c->too_big = true;
            free(c->body);
            c->body = NULL;
            c->len = c->cap = 0;
            return MHD_YES;
        }
        if (c->len + n + 1 > c->cap) {
            size_t cap = c->cap ? c->cap : 4096;
            while (cap < c->len + n + 1)
                cap *= 2;
            char *b = realloc(c->body, cap);
            if (!b) return MHD_NO;
            c->body = b;
            c->cap = cap;
        }
        memcpy(c->body + c->len, upload, n);
        c->len += n;
        c->body[c->len] = 0;
        return MHD_YES;
    }
    return route(c, url, method);
}

static void access_log(conn_ctx *c, struct MHD_Connection *conn,
                       enum MHD_RequestTerminationCode toe) {
    char addr[INET6_ADDRSTRLEN + 8];
    client_addr(conn, addr, sizeof addr);
    const char *outcome = "error";
    if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
        outcome = "ok";
    else if (toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED)
        outcome = "timeout";
    else if (c->gone || toe == MHD_REQUEST_TERMINATED_CLIENT_ABORT ||
             toe == MHD_REQUEST_TERMINATED_READ_ERROR)
        outcome = "client_gone";
    else if (toe == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN)
        outcome = "shutdown";
    loom_access_entry e = {
        .method = c->method,
        .path = c->path,
        .client = addr,
        .status = c->status,
        .duration_s = mono_s() - c->t0,
        .outcome = outcome,
        .id = c->req ? c->id : NULL,
        .finish = c->finish,
        .n_prompt = c->req ? c->n_prompt : -1,
        .n_gen = c->req ? c->n_gen : -1,
        .stream = c->req ? c->stream : -1,
        .prompt = c->prompt_log,
    };
    char *line = loom_access_log_json(&e);
    if (line) c->srv->access_log(c->srv->access_log_ud, line);
    free(line);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)cls;
    conn_ctx *c = *req_cls;
    *req_cls = NULL;
    if (c && c->srv->access_log) access_log(c, conn, toe);
    /* A client that went away mid-stream: cancel now so that its KV slot
     * is free at the engine's next step (ctx_unref does it on the last ref;
     * the response may still hold one). */
    if (c && c->req) loom_engine_cancel(c->req);
    if (c) loom_http_ctx_unref(c);
}

/* MHD reports internal errors here; the library must not print. */
static void quiet_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    (void)fmt;
    (void)ap;
}

loom_status loom_server_start(const loom_server_config *cfg, loom_server **out, char *err,
                              size_t err_n) {
    *out = NULL;
    loom_server *s = calloc(1, sizeof *s);
    if (!s) return LOOM_ERR_OOM;
    s->max_body = cfg->max_body ? cfg->max_body : (size_t)1 << 20;
    if (s->max_body > HARD_BODY_LIMIT) s->max_body = HARD_BODY_LIMIT;
    atomic_init(&s->state, ST_LOADING);
    atomic_init(&s->in_flight, 0);
    atomic_init(&s->counter, 0);
    pthread_mutex_init(&s->enc_mu, NULL);
    s->started = (int64_t)time(NULL);
    s->metrics = loom_metrics_new();
    if (cfg->api_key && cfg->api_key[0]) s->api_key = dup_s(cfg->api_key);
    if (cfg->cors && cfg->cors[0]) {
        /* ",a,b," so that an origin matches only between commas; spaces
         * after commas are dropped. */
        size_t n = strlen(cfg->cors);
        s->cors = malloc(n + 3);
        if (s->cors) {
            size_t k = 0;
            if (strcmp(cfg->cors, "*") != 0) s->cors[k++] = ',';
            for (const char *p = cfg->cors; *p; p++)
                if (*p != ' ') s->cors[k++] = *p;
            if (strcmp(cfg->cors, "*") != 0) s->cors[k++] = ',';
            s->cors[k] = 0;
        }
    }
    s->access_log = cfg->access_log;
    s->access_log_ud = cfg->access_log_ud;
    s->log_prompts = cfg->log_prompts;
    if (cfg->rate_limit > 0) {
        double burst = cfg->rate_limit > 1 ? cfg->rate_limit : 1;
        s->limit = loom_ratelimit_new(cfg->rate_limit, burst);
        if (!s->limit) {
            loom_server_free(s);
            return LOOM_ERR_OOM;
        }
    }
    if (!s->metrics || (cfg->api_key && cfg->api_key[0] && !s->api_key) ||
        (cfg->cors && cfg->cors[0] && !s->cors)) {
        loom_server_free(s);
        return LOOM_ERR_OOM;
    }
    const char *host = cfg->host && cfg->host[0] ? cfg->host : "127.0.0.1";
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    struct sockaddr *addr;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    memset(&a4, 0, sizeof a4);
    memset(&a6, 0, sizeof a6);
    if (inet_pton(AF_INET, host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)cfg->port);
        addr = (struct sockaddr *)&a4;
    } else if (inet_pton(AF_INET6, host, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)cfg->port);
        addr = (struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(err, err_n, "--host must be a numeric IPv4 or IPv6 address (got '%s')", host);
        loom_server_free(s);
        return LOOM_ERR_INVALID_ARG;
    }
    unsigned threads = cfg->n_threads > 0 ? (unsigned)cfg->n_threads : 4;
    /* A connection waiting for the engine is suspended, and suspended
     * connections do not time out: the limit applies to clients that are
     * slow to send their request or to read the answer. */
    unsigned timeout = cfg->timeout_s > 0 ? (unsigned)cfg->timeout_s : 60;
    s->d = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, on_request, s,
                            MHD_OPTION_SOCK_ADDR, addr, MHD_OPTION_THREAD_POOL_SIZE, threads,
                            MHD_OPTION_CONNECTION_LIMIT, 512u, MHD_OPTION_CONNECTION_TIMEOUT,
                            timeout, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_EXTERNAL_LOGGER, quiet_log, s, MHD_OPTION_END);
    if (!s->d) {
        snprintf(err, err_n, "cannot listen on %s:%d (address in use or not permitted?)", host,
                 cfg->port);
        loom_server_free(s);
        return LOOM_ERR_IO;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : cfg->port;
    *out = s;
    return LOOM_OK;
}

int loom_server_port(const loom_server *s) {
    return s->port;
}

loom_status loom_server_set_model(loom_server *s, loom_model *m, const char *model_name,
                                  const loom_engine_params *ep, char *err, size_t err_n) {
    if (s->engine) {
        snprintf(err, err_n, "the server already has a model");
        return LOOM_ERR_INVALID_ARG;
    }
    s->model_name = dup_s(model_name);
    if (!s->model_name) return LOOM_ERR_OOM;
    s->model = m;
    s->tok = loom_model_tokenizer(m);
    s->n_ctx = loom_model_n_ctx(m);
    LOOM_TRY(loom_engine_new(m, ep, &s->engine, err, err_n));
    atomic_store(&s->state, ST_READY);
    return LOOM_OK;
}

bool loom_server_drain(loom_server *s, double timeout_s) {
    atomic_store(&s->state, ST_DRAINING);
    struct timespec t0, now, nap = {0, 20 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (atomic_load(&s->in_flight) == 0) return true;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((double)(now.tv_sec - t0.tv_sec) + 1e-9 * (double)(now.tv_nsec - t0.tv_nsec) >=
            timeout_s)
            return false;
        nanosleep(&nap, NULL);
    }
}

void loom_server_free(loom_server *s) {
    if (!s) return;
    atomic_store(&s->state, ST_DRAINING);
    /* Stop the engine first: it ends every request and resumes every
     * suspended connection, which MHD_stop_daemon requires. Its memory goes
     * only after the HTTP threads are gone (they read its stats). */
    loom_engine_stop(s->engine);
    if (s->d) MHD_stop_daemon(s->d);
    loom_engine_free(s->engine);
    s->engine = NULL;
    loom_metrics_free(s->metrics);
    free(s->api_key);
    free(s->cors);
    loom_ratelimit_free(s->limit);
    free(s->model_name);
    free(s->enc_name);
    pthread_mutex_destroy(&s->enc_mu);
    free(s);
}
