/* tests/sanitizers/tsan_canary.c - proves the ThreadSanitizer pass still
 * catches a data race in loom's own code.
 *
 * The TSan build leaves the SIMD kernels uninstrumented (CMakeLists.txt) and
 * runs only the concurrency tests, so a report-free pass means little unless
 * the instrumentation of libloom itself is known to work. This program breaks
 * the thread pool's rule ("a pool must not be run from two threads at once",
 * base/threadpool.c): two threads call loom_threadpool_run on one pool, and
 * both write the pool's task fields unsynchronised inside libloom. The ctest `tsan_canary` passes
 * only when TSan reports a data race with a frame in loom_threadpool_run and the process exits
 * non-zero. */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>

#include "loom/threadpool.h"

static void task(void *ctx, int ith, int nth) {
    (void)ctx, (void)ith, (void)nth;
}

static void *runner(void *arg) {
    loom_threadpool *p = arg;
    for (int i = 0; i < 100; i++)
        loom_threadpool_run(p, task, NULL);
    return NULL;
}

int main(void) {
    loom_threadpool *p = NULL;
    if (loom_threadpool_new(2, &p) != LOOM_OK) {
        fprintf(stderr, "tsan_canary: loom_threadpool_new failed\n");
        return 3;
    }
    pthread_t a, b;
    if (pthread_create(&a, NULL, runner, p) != 0 || pthread_create(&b, NULL, runner, p) != 0) {
        fprintf(stderr, "tsan_canary: pthread_create failed\n");
        return 3;
    }
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    loom_threadpool_free(p);
    printf("tsan_canary: ran one pool from two threads on purpose\n");
    return 0;
}
