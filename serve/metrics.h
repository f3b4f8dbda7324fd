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

#ifdef __cplusplus
}
#endif
#endif
