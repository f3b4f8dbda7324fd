/* base/threadpool.c - a small persistent pthread pool.
 *
 * Workers live as long as the pool. A run publishes (fn, ctx) and bumps a
 * generation counter; workers spin briefly on the counter (kernels are often
 * short, and a condition-variable wakeup costs tens of microseconds) and then
 * sleep on a condition variable. The caller runs ith = 0 itself and waits for
 * the others with the same spin-then-sleep scheme.
 *
 * The spin adapts to contention (docs/adr/0044): a spinner holds its core
 * and uses up the CPU share the scheduler would give back to a sleeper on
 * wake-up, so when other runnable threads share the cores (a server's HTTP
 * threads, other processes) every node's fork/join stalls on descheduled
 * pool threads, and spinning makes it worse. The caller counts its own
 * involuntary context switches (getrusage RUSAGE_THREAD, Linux) every
 * LOOM_POOL_CHECK runs: more than LOOM_POOL_PREEMPTS in a window means
 * contention and the spin drops to LOOM_POOL_SPIN_SHORT polls; LOOM_POOL_CALM
 * windows in a row without it restore LOOM_POOL_SPIN.
 *
 * Ownership: loom_threadpool_new allocates the pool and its threads;
 * loom_threadpool_free joins them and frees everything. A pool must not be
 * run from two threads at once. */
#define _GNU_SOURCE /* RUSAGE_THREAD */

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
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
#define LOOM_POOL_SPIN       2000
#define LOOM_POOL_SPIN_SHORT 100 /* under contention (see the top) */
#define LOOM_POOL_CHECK      256 /* runs per contention window */
#define LOOM_POOL_PREEMPTS   2   /* involuntary switches a window tolerates */
#define LOOM_POOL_CALM       8   /* quiet windows before the long spin is back */

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
    int spin_max;         /* LOOM_POOL_SPIN, or 0 when oversubscribed */
    atomic_int spin;      /* the current spin: spin_max or LOOM_POOL_SPIN_SHORT */
    /* Contention check (caller side, one thread at a time): runs since the
     * last check, the checking thread and its involuntary switches then,
     * quiet windows in a row. */
    unsigned n_runs;
    pthread_t check_thread;
    long last_nivcsw;
    int calm;

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
        const int spin = atomic_load_explicit(&p->spin, memory_order_relaxed);
        for (int i = 0; i < spin; i++) {
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
    p->spin_max = n_threads <= cores ? LOOM_POOL_SPIN : 0;
    atomic_init(&p->spin, p->spin_max);
    p->last_nivcsw = -1;
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

/* Every LOOM_POOL_CHECK runs: shorten or restore the spin (see the top). */
static void adapt_spin(loom_threadpool *p) {
#ifdef RUSAGE_THREAD
    struct rusage ru;
    if (getrusage(RUSAGE_THREAD, &ru) != 0) return;
    const pthread_t self = pthread_self();
    const long nv = ru.ru_nivcsw;
    if (p->last_nivcsw < 0 || !pthread_equal(self, p->check_thread) || nv < p->last_nivcsw) {
        p->check_thread = self; /* a new caller: a new baseline */
    } else if (nv - p->last_nivcsw > LOOM_POOL_PREEMPTS) {
        p->calm = 0;
        atomic_store_explicit(
            &p->spin, LOOM_POOL_SPIN_SHORT < p->spin_max ? LOOM_POOL_SPIN_SHORT : p->spin_max,
            memory_order_relaxed);
    } else if (++p->calm >= LOOM_POOL_CALM) {
        atomic_store_explicit(&p->spin, p->spin_max, memory_order_relaxed);
    }
    p->last_nivcsw = nv;
#else
    (void)p;
#endif
}

void loom_threadpool_run(loom_threadpool *p, loom_task_fn fn, void *ctx) {
    if (p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    if (p->spin_max && ++p->n_runs % LOOM_POOL_CHECK == 0) adapt_spin(p);
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
    const int spin = atomic_load_explicit(&p->spin, memory_order_relaxed);
    for (int i = 0; i < spin; i++) {
        if (atomic_load_explicit(&p->n_done, memory_order_acquire) == want) return;
        LOOM_CPU_RELAX();
    }
    pthread_mutex_lock(&p->mu);
    while (atomic_load_explicit(&p->n_done, memory_order_acquire) != want)
        pthread_cond_wait(&p->done_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
