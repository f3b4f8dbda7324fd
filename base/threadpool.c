/* base/threadpool.c - a small persistent pthread pool.
 *
 * Workers live as long as the pool. A run publishes (fn, ctx) and bumps a
 * generation counter; workers spin briefly on the counter (kernels are often
 * short, and a condition-variable wakeup costs tens of microseconds) and then
 * sleep on a condition variable. The caller runs ith = 0 itself and waits for
 * the others with the same spin-then-sleep scheme.
 *
 * Ownership: loom_threadpool_new allocates the pool and its threads;
 * loom_threadpool_free joins them and frees everything. A pool must not be
 * run from two threads at once. */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "loom/threadpool.h"

#if defined(__x86_64__) || defined(__i386__)
#define LOOM_CPU_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define LOOM_CPU_RELAX() __asm__ __volatile__("yield")
#else
#define LOOM_CPU_RELAX() ((void)0)
#endif

/* Spin iterations before sleeping. Pools larger than the core count do not
 * spin at all: spinners would steal the cores the other workers need. */
#define LOOM_POOL_SPIN 2000

struct loom_threadpool;

typedef struct loom_worker {
    struct loom_threadpool *pool;
    int ith;
    pthread_t thread;
} loom_worker;

struct loom_threadpool {
    int n;                /* threads including the caller */
    loom_worker *workers; /* n - 1 entries */
    int n_started;        /* workers whose thread was created */
    int spin;             /* LOOM_POOL_SPIN, or 0 when oversubscribed */

    pthread_mutex_t mu;
    pthread_cond_t start_cv;  /* workers sleep here between runs */
    pthread_cond_t done_cv;   /* the caller sleeps here until n_done == n - 1 */
    atomic_uint_fast64_t gen; /* bumped (under mu) to start a run */
    atomic_int n_done;        /* workers finished with the current run */
    atomic_bool stop;

    /* The current task; written before gen is bumped, read after. */
    loom_task_fn fn;
    void *ctx;
};

static void *worker_main(void *arg) {
    loom_worker *w = arg;
    loom_threadpool *p = w->pool;
    /* gen is 0 at creation; reading it here instead could skip a run that
     * started before this thread got scheduled. */
    uint_fast64_t seen = 0;
    for (;;) {
        /* Wait for a new generation: spin, then sleep. */
        uint_fast64_t g = seen;
        for (int i = 0; i < p->spin; i++) {
            g = atomic_load_explicit(&p->gen, memory_order_acquire);
            if (g != seen) break;
            LOOM_CPU_RELAX();
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen)
                pthread_cond_wait(&p->start_cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        seen = g;
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) break;

        p->fn(p->ctx, w->ith, p->n);

        if (atomic_fetch_add_explicit(&p->n_done, 1, memory_order_acq_rel) + 1 == p->n - 1) {
            /* Last one out wakes the caller (if it went to sleep). */
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

static void pool_stop(loom_threadpool *p) {
    pthread_mutex_lock(&p->mu);
    atomic_store_explicit(&p->stop, true, memory_order_release);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_acq_rel);
    pthread_cond_broadcast(&p->start_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_started; i++)
        pthread_join(p->workers[i].thread, NULL);
}

loom_status loom_threadpool_new(int n_threads, loom_threadpool **out) {
    if (!out) return LOOM_ERR_INVALID_ARG;
    *out = NULL;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores <= 0) cores = 1;
    if (n_threads <= 0) n_threads = (int)cores;
    loom_threadpool *p = calloc(1, sizeof *p);
    if (!p) return LOOM_ERR_OOM;
    p->n = n_threads;
    p->spin = n_threads <= cores ? LOOM_POOL_SPIN : 0;
    atomic_init(&p->gen, 0);
    atomic_init(&p->n_done, 0);
    atomic_init(&p->stop, false);
    if (n_threads > 1) {
        p->workers = calloc((size_t)n_threads - 1, sizeof *p->workers);
        if (!p->workers) {
            free(p);
            return LOOM_ERR_OOM;
        }
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    for (int i = 0; i < n_threads - 1; i++) {
        p->workers[i].pool = p;
        p->workers[i].ith = i + 1;
        if (pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]) != 0) {
            loom_threadpool_free(p);
            return LOOM_ERR_OOM;
        }
        p->n_started++;
    }
    *out = p;
    return LOOM_OK;
}

void loom_threadpool_free(loom_threadpool *p) {
    if (!p) return;
    pool_stop(p);
    pthread_cond_destroy(&p->done_cv);
    pthread_cond_destroy(&p->start_cv);
    pthread_mutex_destroy(&p->mu);
    free(p->workers);
    free(p);
}

int loom_threadpool_size(const loom_threadpool *p) {
    return p ? p->n : 0;
}

void loom_threadpool_run(loom_threadpool *p, loom_task_fn fn, void *ctx) {
    if (p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->n_done, 0, memory_order_relaxed);
    /* Bump under the mutex so a worker that just checked gen and is about to
     * sleep cannot miss the broadcast. */
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_acq_rel);
    pthread_cond_broadcast(&p->start_cv);
    pthread_mutex_unlock(&p->mu);

    fn(ctx, 0, p->n);

    int want = p->n - 1;
    for (int i = 0; i < p->spin; i++) {
        if (atomic_load_explicit(&p->n_done, memory_order_acquire) == want) return;
        LOOM_CPU_RELAX();
    }
    pthread_mutex_lock(&p->mu);
    while (atomic_load_explicit(&p->n_done, memory_order_acquire) != want)
        pthread_cond_wait(&p->done_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
