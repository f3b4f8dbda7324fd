/* tests/runtime/test_threadpool.c - loom_threadpool: every ith runs exactly
 * once per run, with the right nth, over many consecutive runs. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "loom/runtime.h"
#include "testing.h"

#define MAX_T 64

typedef struct counts {
    atomic_int hits[MAX_T];
    atomic_int bad_nth;
    atomic_int total;
    int want_nth;
} counts;

static void count_task(void *ctx, int ith, int nth) {
    counts *c = ctx;
    if (nth != c->want_nth || ith < 0 || ith >= nth || ith >= MAX_T)
        atomic_fetch_add(&c->bad_nth, 1);
    else
        atomic_fetch_add(&c->hits[ith], 1);
    atomic_fetch_add(&c->total, 1);
}

/* Sums a range split by ith/nth, the way kernels use the pool. */
typedef struct sum_ctx {
    const int *v;
    int n;
    long long part[MAX_T];
} sum_ctx;

static void sum_task(void *ctx, int ith, int nth) {
    sum_ctx *c = ctx;
    int lo = (int)((long long)c->n * ith / nth), hi = (int)((long long)c->n * (ith + 1) / nth);
    long long s = 0;
    for (int i = lo; i < hi; i++)
        s += c->v[i];
    c->part[ith] = s;
}

static void test_pool(int n) {
    loom_threadpool *p = NULL;
    CHECK(loom_threadpool_new(n, &p) == LOOM_OK);
    if (!p) return;
    int nth = loom_threadpool_size(p);
    CHECK(nth >= 1 && nth <= MAX_T);
    if (n > 0) CHECK(nth == n);

    /* Many runs in a row: each ith exactly once per run. */
    const int runs = 2000;
    counts *c = calloc(1, sizeof *c);
    c->want_nth = nth;
    for (int r = 0; r < runs; r++)
        loom_threadpool_run(p, count_task, c);
    CHECK_MSG(atomic_load(&c->bad_nth) == 0, "pool of %d: bad ith/nth", nth);
    CHECK_MSG(atomic_load(&c->total) == runs * nth, "pool of %d: %d calls, want %d", nth,
              atomic_load(&c->total), runs * nth);
    int wrong = 0;
    for (int i = 0; i < nth && i < MAX_T; i++)
        wrong += atomic_load(&c->hits[i]) != runs;
    CHECK_MSG(wrong == 0, "pool of %d: %d threads ran a wrong number of times", nth, wrong);
    free(c);

    /* Results written by workers are visible to the caller after run(). */
    enum { N = 100003 };
    int *v = malloc(N * sizeof *v);
    long long want = 0;
    for (int i = 0; i < N; i++) {
        v[i] = (i * 7919) % 1000 - 500;
        want += v[i];
    }
    sum_ctx sc = {.v = v, .n = N};
    int bad = 0;
    for (int r = 0; r < 200; r++) {
        memset(sc.part, 0, sizeof sc.part);
        loom_threadpool_run(p, sum_task, &sc);
        long long got = 0;
        for (int i = 0; i < nth; i++)
            got += sc.part[i];
        bad += got != want;
    }
    CHECK_MSG(bad == 0, "pool of %d: %d wrong sums", nth, bad);
    free(v);
    loom_threadpool_free(p);
}

int main(void) {
    test_pool(1);
    test_pool(2);
    test_pool(4);
    test_pool(7);
    test_pool(0); /* one per core */
    test_pool(-3);

    /* Create and free without ever running; free(NULL) is fine. */
    loom_threadpool *p = NULL;
    CHECK(loom_threadpool_new(3, &p) == LOOM_OK);
    loom_threadpool_free(p);
    loom_threadpool_free(NULL);
    CHECK(loom_threadpool_size(NULL) == 0);
    CHECK(loom_threadpool_new(2, NULL) == LOOM_ERR_INVALID_ARG);
    return test_summary("test_threadpool");
}
