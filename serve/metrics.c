/* serve/metrics.c - Prometheus counters (see metrics.h). */
#define _POSIX_C_SOURCE 200809L
#include "serve/metrics.h"

#include <cjson/cJSON.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const ROUTES[] = {"/v1/chat/completions",
                                     "/v1/completions",
                                     "/v1/models",
                                     "/health",
                                     "/metrics",
                                     "/",
                                     "/v1/embeddings",
                                     "other"};
#define N_ROUTES  (sizeof ROUTES / sizeof ROUTES[0])
#define MAX_CODES 16 /* distinct statuses per route; more fold into the last */

typedef struct {
    int status;
    int64_t n;
} code_count;

struct loom_metrics {
    pthread_mutex_t mu;
    code_count codes[N_ROUTES][MAX_CODES];
};

loom_metrics *loom_metrics_new(void) {
    loom_metrics *m = calloc(1, sizeof *m);
    if (m) pthread_mutex_init(&m->mu, NULL);
    return m;
}

void loom_metrics_free(loom_metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

const char *loom_metrics_route(const char *path) {
    for (size_t i = 0; i + 1 < N_ROUTES; i++)
        if (!strcmp(path, ROUTES[i])) return ROUTES[i];
    return ROUTES[N_ROUTES - 1];
}

void loom_metrics_count(loom_metrics *m, const char *route, int status) {
    size_t r = N_ROUTES - 1;
    for (size_t i = 0; i < N_ROUTES; i++)
        if (!strcmp(route, ROUTES[i])) r = i;
    pthread_mutex_lock(&m->mu);
    code_count *c = m->codes[r];
    int k = 0;
    while (k < MAX_CODES - 1 && c[k].status && c[k].status != status)
        k++;
    c[k].status = c[k].status ? c[k].status : status;
    c[k].n++;
    pthread_mutex_unlock(&m->mu);
}

typedef struct {
    char *buf;
    size_t len, cap;
    bool oom;
} sbuf;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void
put(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n;
        char *nb = realloc(b->buf, cap);
        if (!nb) {
            b->oom = true;
            return;
        }
        b->buf = nb;
        b->cap = cap;
    }
}

static void hist(sbuf *b, const char *name, const char *help, const loom_engine_hist *h) {
    put(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    int64_t cum = 0;
    for (int i = 0; i < LOOM_ENGINE_N_BUCKETS; i++) {
        cum += h->count[i];
        if (i < LOOM_ENGINE_N_BUCKETS - 1)
            put(b, "%s_bucket{le=\"%g\"} %lld\n", name, loom_engine_bucket_le[i], (long long)cum);
        else
            put(b, "%s_bucket{le=\"+Inf\"} %lld\n", name, (long long)cum);
    }
    put(b, "%s_sum %.6f\n%s_count %lld\n", name, h->sum, name, (long long)h->n);
}

char *loom_metrics_render(loom_metrics *m, const loom_engine_stats *e) {
    sbuf b = {malloc(4096), 0, 4096, false};
    if (!b.buf) return NULL;
    b.buf[0] = 0;
    put(&b, "# HELP loom_requests_total HTTP requests by route and status.\n"
            "# TYPE loom_requests_total counter\n");
    pthread_mutex_lock(&m->mu);
    for (size_t r = 0; r < N_ROUTES; r++)
        for (int k = 0; k < MAX_CODES && m->codes[r][k].status; k++)
            put(&b, "loom_requests_total{route=\"%s\",status=\"%d\"} %lld\n", ROUTES[r],
                m->codes[r][k].status, (long long)m->codes[r][k].n);
    pthread_mutex_unlock(&m->mu);
    loom_engine_stats z = {0};
    if (!e) e = &z;
    put(&b,
        "# HELP loom_prompt_tokens_total Prompt tokens prefilled.\n"
        "# TYPE loom_prompt_tokens_total counter\n"
        "loom_prompt_tokens_total %lld\n"
        "# HELP loom_generation_tokens_total Tokens generated.\n"
        "# TYPE loom_generation_tokens_total counter\n"
        "loom_generation_tokens_total %lld\n"
        "# HELP loom_engine_steps_total Engine steps (batched forwards) run.\n"
        "# TYPE loom_engine_steps_total counter\n"
        "loom_engine_steps_total %lld\n"
        "# HELP loom_queue_depth Requests waiting for a KV slot.\n"
        "# TYPE loom_queue_depth gauge\n"
        "loom_queue_depth %d\n"
        "# HELP loom_active_slots KV slots running a request.\n"
        "# TYPE loom_active_slots gauge\n"
        "loom_active_slots %d\n"
        "# HELP loom_slots KV slots (--parallel).\n"
        "# TYPE loom_slots gauge\n"
        "loom_slots %d\n",
        (long long)e->prompt_tokens, (long long)e->gen_tokens, (long long)e->steps, e->n_waiting,
        e->n_running, e->n_slots);
    put(&b,
        "# HELP loom_graph_builds_total Forward graphs built (a new batch shape).\n"
        "# TYPE loom_graph_builds_total counter\n"
        "loom_graph_builds_total %lld\n"
        "# HELP loom_graph_runs_total Forward passes run.\n"
        "# TYPE loom_graph_runs_total counter\n"
        "loom_graph_runs_total %lld\n",
        (long long)e->graph_builds, (long long)e->graph_runs);
    put(&b,
        "# HELP loom_kv_blocks KV cache blocks in the pool (docs/adr/0035).\n"
        "# TYPE loom_kv_blocks gauge\n"
        "loom_kv_blocks %d\n"
        "# HELP loom_kv_block_size Tokens per KV cache block.\n"
        "# TYPE loom_kv_block_size gauge\n"
        "loom_kv_block_size %d\n"
        "# HELP loom_kv_blocks_used KV cache blocks held by running requests.\n"
        "# TYPE loom_kv_blocks_used gauge\n"
        "loom_kv_blocks_used %d\n"
        "# HELP loom_kv_blocks_cached Free KV cache blocks kept for prefix reuse.\n"
        "# TYPE loom_kv_blocks_cached gauge\n"
        "loom_kv_blocks_cached %d\n"
        "# HELP loom_prefix_cache_tokens_total Prompt tokens taken from cached KV blocks.\n"
        "# TYPE loom_prefix_cache_tokens_total counter\n"
        "loom_prefix_cache_tokens_total %lld\n"
        "# HELP loom_preemptions_total Requests preempted (requeued) for lack of KV blocks.\n"
        "# TYPE loom_preemptions_total counter\n"
        "loom_preemptions_total %lld\n"
        "# HELP loom_spec_draft_tokens_total Draft tokens verified (speculative decoding, "
        "docs/adr/0038).\n"
        "# TYPE loom_spec_draft_tokens_total counter\n"
        "loom_spec_draft_tokens_total %lld\n"
        "# HELP loom_spec_accepted_tokens_total Draft tokens accepted by the target model.\n"
        "# TYPE loom_spec_accepted_tokens_total counter\n"
        "loom_spec_accepted_tokens_total %lld\n",
        e->kv_blocks, e->kv_block_size, e->kv_blocks_used, e->kv_blocks_cached,
        (long long)e->prefix_tokens, (long long)e->preemptions, (long long)e->spec_drafted,
        (long long)e->spec_accepted);
    hist(&b, "loom_time_to_first_token_seconds",
         "Time from a request's arrival to its first generated token.", &e->ttft);
    hist(&b, "loom_inter_token_latency_seconds",
         "Time between consecutive generated tokens of a request.", &e->itl);
    if (b.oom) {
        free(b.buf);
        return NULL;
    }
    return b.buf;
}

char *loom_access_log_json(const loom_access_entry *e) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    if (e->method) cJSON_AddStringToObject(o, "method", e->method);
    if (e->path) cJSON_AddStringToObject(o, "path", e->path);
    cJSON_AddNumberToObject(o, "status", e->status);
    cJSON_AddNumberToObject(o, "ms", (double)(int64_t)(e->duration_s * 1e4) / 10.0);
    if (e->client) cJSON_AddStringToObject(o, "client", e->client);
    if (e->outcome) cJSON_AddStringToObject(o, "outcome", e->outcome);
    if (e->id) cJSON_AddStringToObject(o, "id", e->id);
    if (e->stream >= 0) cJSON_AddBoolToObject(o, "stream", e->stream);
    if (e->n_prompt >= 0) cJSON_AddNumberToObject(o, "prompt_tokens", (double)e->n_prompt);
    if (e->n_gen >= 0) cJSON_AddNumberToObject(o, "completion_tokens", (double)e->n_gen);
    if (e->finish) cJSON_AddStringToObject(o, "finish_reason", e->finish);
    if (e->prompt) cJSON_AddStringToObject(o, "prompt", e->prompt);
    char *line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return line;
}
