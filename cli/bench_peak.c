/* cli/bench_peak.c - the machine limits `loom bench` reports against:
 * a STREAM-like triad (a[i] = b[i] + s*c[i], doubles, 24 bytes/iteration,
 * write-allocate not counted, as in STREAM) for memory bandwidth, and an FMA
 * loop with independent accumulators for fp32 compute peak. Threads come
 * from a loom_threadpool, like the CPU backend's. */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench.h"
#include "loom/runtime.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define BENCH_X86 1
#endif

double loom_bench_now(bool cpu_clock, int n_threads) {
    struct timespec ts;
    clock_gettime(cpu_clock ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    const double s = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    return cpu_clock && n_threads > 1 ? s / n_threads : s;
}

/* ---------------- triad ---------------- */

#define TRIAD_N ((int64_t)1 << 24) /* 128 MiB per array: far beyond any cache */

typedef struct triad_ctx {
    double *a, *b, *c;
    int64_t n;
    int init;
} triad_ctx;

static void triad_task(void *arg, int ith, int nth) {
    triad_ctx *t = arg;
    const int64_t lo = t->n * ith / nth, hi = t->n * (ith + 1) / nth;
    double *a = t->a;
    const double *b = t->b, *c = t->c;
    if (t->init) { /* first touch by the thread that will stream it */
        for (int64_t i = lo; i < hi; i++) {
            a[i] = 0.0;
            t->b[i] = 1.0;
            t->c[i] = 2.0;
        }
        return;
    }
    const double s = 3.0;
    for (int64_t i = lo; i < hi; i++)
        a[i] = b[i] + s * c[i];
}

double loom_bench_triad_gbs(int n_threads, bool cpu_clock, double *seconds) {
    loom_threadpool *pool = NULL;
    if (loom_threadpool_new(n_threads, &pool) != LOOM_OK) return 0.0;
    triad_ctx t = {malloc(TRIAD_N * sizeof(double)), malloc(TRIAD_N * sizeof(double)),
                   malloc(TRIAD_N * sizeof(double)), TRIAD_N, 1};
    double best = 1e30, t0 = loom_bench_now(false, 1);
    if (t.a && t.b && t.c) {
        loom_threadpool_run(pool, triad_task, &t);
        t.init = 0;
        for (int rep = 0; rep < 6; rep++) {
            const double s = loom_bench_now(cpu_clock, n_threads);
            loom_threadpool_run(pool, triad_task, &t);
            const double e = loom_bench_now(cpu_clock, n_threads) - s;
            if (e < best) best = e;
        }
    }
    if (seconds) *seconds = loom_bench_now(false, 1) - t0;
    free(t.a);
    free(t.b);
    free(t.c);
    loom_threadpool_free(pool);
    return best < 1e30 ? 24.0 * (double)TRIAD_N / best * 1e-9 : 0.0;
}

/* ---------------- FMA peak ---------------- */

#define PEAK_ITERS 4000000

#ifdef BENCH_X86
/* 16 independent accumulators cover FMA latency x 2 pipes. */
/* Written out by hand so no optimisation level can spill the accumulators. */
#define PEAK_STEP8(F, a, m, c)                                                                     \
    a##0 = F(a##0, m, c), a##1 = F(a##1, m, c), a##2 = F(a##2, m, c), a##3 = F(a##3, m, c),        \
    a##4 = F(a##4, m, c), a##5 = F(a##5, m, c), a##6 = F(a##6, m, c), a##7 = F(a##7, m, c)

__attribute__((target("avx512f"))) static float peak_avx512(int64_t iters) {
    /* Distinct starting values, or the compiler merges identical chains. */
    __m512 a0 = _mm512_set1_ps(0.10f), a1 = _mm512_set1_ps(0.11f), a2 = _mm512_set1_ps(0.12f),
           a3 = _mm512_set1_ps(0.13f), a4 = _mm512_set1_ps(0.14f), a5 = _mm512_set1_ps(0.15f),
           a6 = _mm512_set1_ps(0.16f), a7 = _mm512_set1_ps(0.17f), b0 = _mm512_set1_ps(0.18f),
           b1 = _mm512_set1_ps(0.19f), b2 = _mm512_set1_ps(0.20f), b3 = _mm512_set1_ps(0.21f),
           b4 = _mm512_set1_ps(0.22f), b5 = _mm512_set1_ps(0.23f), b6 = _mm512_set1_ps(0.24f),
           b7 = _mm512_set1_ps(0.25f);
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (int64_t k = 0; k < iters; k++) {
        PEAK_STEP8(_mm512_fmadd_ps, a, m, c);
        PEAK_STEP8(_mm512_fmadd_ps, b, m, c);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s,
                      _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(b0, b1), _mm512_add_ps(b2, b3)),
                                    _mm512_add_ps(_mm512_add_ps(b4, b5), _mm512_add_ps(b6, b7))));
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float peak_avx2(int64_t iters) {
    /* Distinct starting values, or the compiler merges identical chains. */
    __m256 a0 = _mm256_set1_ps(0.10f), a1 = _mm256_set1_ps(0.11f), a2 = _mm256_set1_ps(0.12f),
           a3 = _mm256_set1_ps(0.13f), a4 = _mm256_set1_ps(0.14f), a5 = _mm256_set1_ps(0.15f),
           a6 = _mm256_set1_ps(0.16f), a7 = _mm256_set1_ps(0.17f), b0 = _mm256_set1_ps(0.18f),
           b1 = _mm256_set1_ps(0.19f), b2 = _mm256_set1_ps(0.20f), b3 = _mm256_set1_ps(0.21f),
           b4 = _mm256_set1_ps(0.22f), b5 = _mm256_set1_ps(0.23f), b6 = _mm256_set1_ps(0.24f),
           b7 = _mm256_set1_ps(0.25f);
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int64_t k = 0; k < iters; k++) {
        PEAK_STEP8(_mm256_fmadd_ps, a, m, c);
        PEAK_STEP8(_mm256_fmadd_ps, b, m, c);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s,
                      _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(b0, b1), _mm256_add_ps(b2, b3)),
                                    _mm256_add_ps(_mm256_add_ps(b4, b5), _mm256_add_ps(b6, b7))));
    float v[8];
    _mm256_storeu_ps(v, s);
    return v[0] + v[7];
}
#endif

typedef struct peak_ctx {
    int kind; /* 2 avx512, 1 avx2, 0 scalar */
    volatile float sink[256];
} peak_ctx;

static void peak_task(void *arg, int ith, int nth) {
    (void)nth;
    peak_ctx *p = arg;
    float r = 0.0f;
#ifdef BENCH_X86
    if (p->kind == 2) r = peak_avx512(PEAK_ITERS);
    if (p->kind == 1) r = peak_avx2(PEAK_ITERS);
#endif
    if (p->kind == 0) {
        float a = 1.0f;
        for (int64_t k = 0; k < PEAK_ITERS; k++)
            a = a * 0.999999f + 1e-7f;
        r = a;
    }
    p->sink[ith & 255] = r;
}

double loom_bench_fma_peak_gflops(int n_threads, bool cpu_clock, const char **isa) {
    peak_ctx p;
    memset((void *)&p, 0, sizeof p);
    p.kind = 0;
#ifdef BENCH_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        p.kind = 2;
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        p.kind = 1;
#endif
    if (isa) *isa = p.kind == 2 ? "avx512" : p.kind == 1 ? "avx2" : "scalar";
    loom_threadpool *pool = NULL;
    if (loom_threadpool_new(n_threads, &pool) != LOOM_OK) return 0.0;
    const int nth = loom_threadpool_size(pool);
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        const double s = loom_bench_now(cpu_clock, nth);
        loom_threadpool_run(pool, peak_task, &p);
        const double e = loom_bench_now(cpu_clock, nth) - s;
        if (e < best) best = e;
    }
    loom_threadpool_free(pool);
    const double per_iter = p.kind == 2 ? 16 * 16 * 2 : p.kind == 1 ? 16 * 8 * 2 : 2;
    return per_iter * (double)PEAK_ITERS * nth / best * 1e-9;
}
