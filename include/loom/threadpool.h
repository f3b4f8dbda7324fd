/* loom/threadpool.h - a persistent pthread pool (base/threadpool.c).
 *
 * Part of the bottom layer (base/): the cpu backend, the CLI's benchmarks
 * and tests use it, and it depends on nothing but loom/status.h.
 * loom/runtime.h includes this header, so existing users see no change. */
#ifndef LOOM_THREADPOOL_H
#define LOOM_THREADPOOL_H

#include "loom/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_threadpool loom_threadpool;
typedef void (*loom_task_fn)(void *ctx, int ith, int nth);
/* n_threads <= 0 means one per online core. Caller frees with loom_threadpool_free. */
LOOM_API loom_status loom_threadpool_new(int n_threads, loom_threadpool **out);
LOOM_API void loom_threadpool_free(loom_threadpool *p);
LOOM_API int loom_threadpool_size(const loom_threadpool *p);
/* Run fn(ctx, ith, nth) on every thread (the caller is thread 0); returns when all are done. */
LOOM_API void loom_threadpool_run(loom_threadpool *p, loom_task_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif
#endif
