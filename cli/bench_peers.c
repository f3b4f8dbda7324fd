/* cli/bench_peers.c - the GEMM cases of `loom bench` timed through OpenBLAS
 * and oneDNN in the same run, so loom's CPU matmul is reported as a ratio
 * against the libraries a user would otherwise reach for.
 *
 * Both are loaded with dlopen when the benchmark asks for them, never linked:
 * the loom binary does not depend on them, and their thread pools start only
 * here. OpenBLAS is f32 only (cblas_sgemm; Debian's 0.3.21 has no sbgemm).
 * oneDNN runs its matmul primitive (f32, and bf16 x bf16 -> f32 on
 * AVX512_BF16 hardware) and needs dnnl.h at build time for its types
 * (LOOM_HAVE_DNNL_H, set by CMake when the header exists).
 *
 * Shapes follow loom's matmul: out[M][N] = X[M][K] . W[N][K]^T, W stored
 * row-major as loom stores weights (oneDNN format tag "ba", not pre-packed:
 * loom packs on the fly too). */
#define _POSIX_C_SOURCE 200809L

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"

#if defined(LOOM_HAVE_DNNL_H)
#include <dnnl.h>
#endif

static const char *const peer_names[] = {"openblas", "onednn"};

int loom_bench_peer_count(void) {
    return (int)(sizeof peer_names / sizeof peer_names[0]);
}

const char *loom_bench_peer_name(int peer) {
    return peer >= 0 && peer < loom_bench_peer_count() ? peer_names[peer] : "?";
}

static void fill_f32(float *p, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)(seed >> 8) / 16777216.0f - 0.5f;
    }
}

/* Best of the runs (at least 3, for min_time seconds), as run_case does. */
typedef void (*peer_fn)(void *ctx);
static double time_best(peer_fn fn, void *ctx, bool cpu_clock, int threads, double min_time) {
    fn(ctx); /* warm-up: thread pools, packing buffers, first touch */
    double best = 1e30;
    const double t_start = loom_bench_now(false, 1);
    for (int i = 0; i < 256 && (i < 3 || loom_bench_now(false, 1) - t_start < min_time); i++) {
        const double t0 = loom_bench_now(cpu_clock, threads);
        fn(ctx);
        const double t = loom_bench_now(cpu_clock, threads) - t0;
        if (t < best) best = t;
    }
    return best;
}

/* ---------------- OpenBLAS ---------------- */

typedef void (*cblas_sgemm_fn)(int order, int ta, int tb, int M, int N, int K, float alpha,
                               const float *A, int lda, const float *B, int ldb, float beta,
                               float *C, int ldc);
typedef struct {
    cblas_sgemm_fn sgemm;
    int M, N, K;
    const float *x, *w;
    float *c;
} blas_run;

static void blas_call(void *p) {
    blas_run *r = p;
    enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 }; /* CBLAS enum values */
    r->sgemm(ROW_MAJOR, NO_TRANS, TRANS, r->M, r->N, r->K, 1.0f, r->x, r->K, r->w, r->K, 0.0f, r->c,
             r->N);
}

static bool peer_openblas(bool bf16, int64_t M, int64_t N, int64_t K, int threads, bool cpu_clock,
                          double min_time, double *sec, char *note, size_t note_n) {
    if (bf16) {
        snprintf(note, note_n, "openblas: no bf16 GEMM in this build");
        return false;
    }
    /* The pthread build first; plain libopenblas.so.0 is whichever variant
     * the alternatives system selected. */
    void *h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(note, note_n, "openblas: not installed (%s)", dlerror());
        return false;
    }
    blas_run r = {.M = (int)M, .N = (int)N, .K = (int)K};
    void (*set_threads)(int) = NULL;
    *(void **)&r.sgemm = dlsym(h, "cblas_sgemm");
    *(void **)&set_threads = dlsym(h, "openblas_set_num_threads");
    float *x = malloc((size_t)M * (size_t)K * sizeof *x);
    float *w = malloc((size_t)N * (size_t)K * sizeof *w);
    float *c = malloc((size_t)M * (size_t)N * sizeof *c);
    bool ok = false;
    if (!r.sgemm || !x || !w || !c) {
        snprintf(note, note_n, "openblas: %s", r.sgemm ? "out of memory" : "no cblas_sgemm");
    } else {
        if (set_threads) set_threads(threads);
        fill_f32(x, (size_t)M * (size_t)K, 1);
        fill_f32(w, (size_t)N * (size_t)K, 2);
        r.x = x, r.w = w, r.c = c;
        *sec = time_best(blas_call, &r, cpu_clock, threads, min_time);
        const char *ct = getenv("OPENBLAS_CORETYPE");
        snprintf(note, note_n, "openblas sgemm (OPENBLAS_CORETYPE=%s)", ct ? ct : "auto-detected");
        ok = true;
    }
    free(x);
    free(w);
    free(c);
    /* OpenBLAS keeps worker threads; unloading it under them is unsafe. */
    return ok;
}

/* ---------------- oneDNN ---------------- */

#if defined(LOOM_HAVE_DNNL_H)
static uint16_t f32_to_bf16(float f) { /* round to nearest even (inputs are finite) */
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

#define DNNL_FNS(X)                                                                                \
    X(dnnl_engine_create)                                                                          \
    X(dnnl_engine_destroy)                                                                         \
    X(dnnl_stream_create)                                                                          \
    X(dnnl_stream_destroy)                                                                         \
    X(dnnl_stream_wait)                                                                            \
    X(dnnl_memory_desc_init_by_tag)                                                                \
    X(dnnl_matmul_desc_init)                                                                       \
    X(dnnl_primitive_desc_create)                                                                  \
    X(dnnl_primitive_desc_destroy)                                                                 \
    X(dnnl_primitive_desc_query)                                                                   \
    X(dnnl_primitive_create)                                                                       \
    X(dnnl_primitive_destroy)                                                                      \
    X(dnnl_primitive_execute)                                                                      \
    X(dnnl_memory_create)                                                                          \
    X(dnnl_memory_destroy)                                                                         \
    X(dnnl_memory_get_data_handle)

typedef struct dnnl_api {
#define X(f) __typeof__(f) *f;
    DNNL_FNS(X)
#undef X
} dnnl_api;

typedef struct {
    const dnnl_api *api;
    dnnl_primitive_t prim;
    dnnl_stream_t stream;
    dnnl_exec_arg_t args[3];
} dnnl_run;

static void dnnl_call(void *p) {
    dnnl_run *r = p;
    r->api->dnnl_primitive_execute(r->prim, r->stream, 3, r->args);
    r->api->dnnl_stream_wait(r->stream);
}

static bool peer_onednn(bool bf16, int64_t M, int64_t N, int64_t K, int threads, bool cpu_clock,
                        double min_time, double *sec, char *note, size_t note_n) {
    void *h = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(note, note_n, "onednn: not installed (%s)", dlerror());
        return false;
    }
    dnnl_api a;
    bool have = true;
#define X(f) have = have && (*(void **)&a.f = dlsym(h, #f)) != NULL;
    DNNL_FNS(X)
#undef X
    if (!have) {
        snprintf(note, note_n, "onednn: libdnnl.so.2 lacks the 2.x C API");
        return false;
    }
    /* oneDNN's CPU runtime here is OpenMP (libgomp, loaded with it). */
    void (*omp_threads)(int) = NULL;
    *(void **)&omp_threads = dlsym(h, "omp_set_num_threads");
    if (omp_threads) omp_threads(threads);

    const dnnl_data_type_t dt = bf16 ? dnnl_bf16 : dnnl_f32;
    dnnl_engine_t eng = NULL;
    dnnl_stream_t st = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_memory_t mem[3] = {NULL, NULL, NULL};
    dnnl_memory_desc_t md[3];
    const dnnl_dims_t dims[3] = {{M, K}, {K, N}, {M, N}};
    const dnnl_format_tag_t tags[3] = {dnnl_ab, dnnl_ba, dnnl_ab};
    dnnl_matmul_desc_t mmd;
    bool ok = false;
    if (a.dnnl_engine_create(&eng, dnnl_cpu, 0) != dnnl_success ||
        a.dnnl_stream_create(&st, eng, dnnl_stream_default_flags) != dnnl_success) {
        snprintf(note, note_n, "onednn: no cpu engine");
        goto done;
    }
    for (int i = 0; i < 3; i++)
        if (a.dnnl_memory_desc_init_by_tag(&md[i], 2, dims[i], i == 2 ? dnnl_f32 : dt, tags[i]) !=
            dnnl_success)
            goto fail;
    if (a.dnnl_matmul_desc_init(&mmd, &md[0], &md[1], NULL, &md[2]) != dnnl_success ||
        a.dnnl_primitive_desc_create(&pd, &mmd, NULL, eng, NULL) != dnnl_success ||
        a.dnnl_primitive_create(&prim, pd) != dnnl_success) {
        snprintf(note, note_n, "onednn: no %s matmul implementation on this CPU",
                 bf16 ? "bf16" : "f32");
        goto done;
    }
    for (int i = 0; i < 3; i++) {
        void *ptr = NULL;
        if (a.dnnl_memory_create(&mem[i], &md[i], eng, DNNL_MEMORY_ALLOCATE) != dnnl_success ||
            a.dnnl_memory_get_data_handle(mem[i], &ptr) != dnnl_success)
            goto fail;
        const size_t n = (size_t)dims[i][0] * (size_t)dims[i][1];
        if (i == 2) continue;
        if (!bf16) {
            fill_f32(ptr, n, (uint32_t)i + 1);
            continue;
        }
        float *tmp = malloc(n * sizeof *tmp);
        if (!tmp) goto fail;
        fill_f32(tmp, n, (uint32_t)i + 1);
        for (size_t j = 0; j < n; j++)
            ((uint16_t *)ptr)[j] = f32_to_bf16(tmp[j]);
        free(tmp);
    }
    dnnl_run r = {
        .api = &a,
        .prim = prim,
        .stream = st,
        .args = {{DNNL_ARG_SRC, mem[0]}, {DNNL_ARG_WEIGHTS, mem[1]}, {DNNL_ARG_DST, mem[2]}}};
    *sec = time_best(dnnl_call, &r, cpu_clock, threads, min_time);
    const char *impl = NULL;
    if (a.dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success)
        impl = NULL;
    snprintf(note, note_n, "onednn matmul %s (%s)", bf16 ? "bf16 x bf16 -> f32" : "f32",
             impl ? impl : "?");
    ok = true;
    goto done;
fail:
    snprintf(note, note_n, "onednn: memory setup failed");
done:
    for (int i = 0; i < 3; i++)
        if (mem[i]) a.dnnl_memory_destroy(mem[i]);
    if (prim) a.dnnl_primitive_destroy(prim);
    if (pd) a.dnnl_primitive_desc_destroy(pd);
    if (st) a.dnnl_stream_destroy(st);
    if (eng) a.dnnl_engine_destroy(eng);
    return ok; /* like OpenBLAS, the library stays loaded (OpenMP threads) */
}
#else
static bool peer_onednn(bool bf16, int64_t M, int64_t N, int64_t K, int threads, bool cpu_clock,
                        double min_time, double *sec, char *note, size_t note_n) {
    (void)bf16, (void)M, (void)N, (void)K, (void)threads, (void)cpu_clock, (void)min_time;
    (void)sec;
    snprintf(note, note_n, "onednn: built without dnnl.h (install libdnnl-dev and reconfigure)");
    return false;
}
#endif

bool loom_bench_peer_gemm(int peer, bool bf16, int64_t M, int64_t N, int64_t K, int threads,
                          bool cpu_clock, double min_time, double *sec, char *note, size_t note_n) {
    if (M <= 0 || N <= 0 || K <= 0 || M > INT32_MAX || N > INT32_MAX || K > INT32_MAX) {
        snprintf(note, note_n, "peer gemm: bad shape");
        return false;
    }
    if (peer == 0)
        return peer_openblas(bf16, M, N, K, threads, cpu_clock, min_time, sec, note, note_n);
    if (peer == 1)
        return peer_onednn(bf16, M, N, K, threads, cpu_clock, min_time, sec, note, note_n);
    snprintf(note, note_n, "peer gemm: unknown peer %d", peer);
    return false;
}
