/* serve/metrics.h - request counters for GET /metrics (Prometheus text
 * exposition format 0.0.4). Thread-safe. Routes are a fixed set of labels
 * (unknown paths count as "other") so that a scanner cannot blow up the
 * number of series. */
#ifndef LOOM_SERVE_METRICS_H
#define LOOM_SERVE_METRICS_H

#include <stdint.h>

#include "serve/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_metrics loom_metrics;

loom_metrics *loom_metrics_new(void);    /* NULL when out of memory */
void loom_metrics_free(loom_metrics *m); /* NULL is fine */

/* The route label for a request path ("/v1/chat/completions", ..., "other"). */
const char *loom_metrics_route(const char *path);
void loom_metrics_count(loom_metrics *m, const char *route, int status);

/* The exposition text; engine may be NULL (still loading). malloc'd. */
char *loom_metrics_render(loom_metrics *m, const loom_engine_stats *engine);

/* One access-log entry (strings borrowed; NULL ones are left out). */
typedef struct loom_access_entry {
    const char *method, *path, *client;
    int status;
    double duration_s;
    const char *outcome; /* "ok", or "client_gone" / "timeout" / "error" */
    /* generation requests */
    const char *id, *finish;
    int64_t n_prompt, n_gen; /* -1 = not a generation request */
    int stream;              /* -1 = not a generation request */
    const char *prompt;      /* only with --log-prompts */
} loom_access_entry;

/* The entry as one JSON object on one line (no newline). malloc'd. */
char *loom_access_log_json(const loom_access_entry *e);

#ifdef __cplusplus
}
#endif
#endif
