/* serve/ratelimit.h - token-bucket rate limit per client (API key, or the
 * client address when there is no key). Each client's bucket holds up to
 * burst tokens and refills at rate per second; a request takes one.
 *
 * Clients are tracked by a 64-bit hash of their identity in a fixed table
 * (memory is bounded whatever the number of clients): when the table is
 * full, the least recently seen client in the probed range is forgotten
 * (it starts again with a full bucket). Thread-safe. */
#ifndef LOOM_SERVE_RATELIMIT_H
#define LOOM_SERVE_RATELIMIT_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_ratelimit loom_ratelimit;

/* rate > 0 requests per second, burst >= 1. NULL when out of memory. */
loom_ratelimit *loom_ratelimit_new(double rate, double burst);
void loom_ratelimit_free(loom_ratelimit *rl); /* NULL is fine */

/* Take a token for client id at time now (seconds, monotonic). Returns 0
 * when the request may go ahead, else the seconds until a token will be
 * available (the Retry-After). */
double loom_ratelimit_take(loom_ratelimit *rl, const char *id, double now);

#ifdef __cplusplus
}
#endif
#endif
