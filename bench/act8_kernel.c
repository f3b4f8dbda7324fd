/* bench/act8_kernel.c - the cpu's int8-activation matmul kernel alone, one
 * thread, on SmolLM2-135M's two FFN shapes (K x N = 576 x 1536, 1536 x 576)
 * at M = 1 (decode), 16 (`loom serve` with 16 streams) and 64 (prefill), for
 * the legacy and k-quant types (ADR 0043 and its addendum). Each case runs
 * the kernel back to back and keeps the best of 60 batches: on a shared VM
 * whose speed drifts between seconds, the minimum is what repeats. To
 * compare two trees, build this against each tree's loom_internal and run
 * the two binaries in alternation.
 *
 * Build (after the project's build): cc -O2 -I. -Iinclude -DLOOM_STATIC
 *   bench/act8_kernel.c build/libloom_internal.a -lm -lpthread -ldl -o act8_kernel
 * Run: ./act8_kernel [avx2|avx512]  (default: the best this CPU has) */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cpu/cpu_kernels.h"
#include "loom/backend_sdk.h"
#include "loom/dtype.h"
#include "loom/ir.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Best time of one kernel call (seconds) for weights of type t, K x N, M rows. */
static double time_case(loom_dtype t, int64_t K, int64_t N, int64_t M, loom_cpu_isa isa) {
    double best = -1.0;
    loom_graph *g = NULL;
    if (loom_graph_new(&g) != LOOM_OK) return best;
    loom_tensor *w = loom_tensor_4d(g, t, K, N, 1, 1), *x = loom_tensor_4d(g, LOOM_F32, K, M, 1, 1);
    loom_tensor *o = w && x ? loom_matmul(g, w, x) : NULL;
    float *wf = malloc((size_t)(K * N) * sizeof(float)),
          *xf = malloc((size_t)(K * M) * sizeof(float));
    float *of = malloc((size_t)(N * M) * sizeof(float));
    void *wq = w ? malloc(loom_tensor_nbytes(w)) : NULL;
    loom_cpu_kernel_fn fn = o ? loom_cpu_act8_kernel_for(o, isa) : NULL;
    if (!wf || !xf || !of || !wq || !fn) goto done;
    for (int64_t i = 0; i < K * N; i++) /* deterministic, spread values */
        wf[i] = (float)((uint64_t)i * 2654435761u % 1000) / 1000.0f - 0.5f;
    for (int64_t i = 0; i < K * M; i++)
        xf[i] = (float)((uint64_t)i * 40503u % 1000) / 1000.0f - 0.5f;
    if (loom_quantize_row(t, wf, wq, K * N) != LOOM_OK) goto done;
    w->data = wq;
    x->data = xf;
    o->data = of;
    char err[128];
    const int reps = M == 1 ? 200 : 20;
    for (int b = 0; b < 60; b++) {
        const double t0 = now();
        for (int r = 0; r < reps; r++)
            if (fn(o, 0, 1, err, sizeof err) != LOOM_OK) {
                fprintf(stderr, "act8_kernel: %s\n", err);
                best = -1.0;
                goto done;
            }
        const double dt = (now() - t0) / reps;
        if (best < 0 || dt < best) best = dt;
    }
done:
    free(wf);
    free(xf);
    free(of);
    free(wq);
    loom_graph_free(g);
    return best;
}

int main(int argc, char **argv) {
    loom_cpu_isa isa = loom_cpu_isa_detect();
    if (argc > 1) isa = strcmp(argv[1], "avx512") == 0 ? LOOM_CPU_ISA_AVX512 : LOOM_CPU_ISA_AVX2;
    if (isa < LOOM_CPU_ISA_AVX2 || isa > loom_cpu_isa_detect()) {
        fprintf(stderr, "act8_kernel: this CPU cannot run the %s kernels\n",
                argc > 1 ? argv[1] : "int8");
        return 2;
    }
    static const loom_dtype types[] = {LOOM_Q4_0, LOOM_Q4_1, LOOM_Q8_0, LOOM_Q4_K, LOOM_Q6_K};
    static const int64_t shapes[][2] = {{576, 1536}, {1536, 576}};
    static const int64_t Ms[] = {1, 16, 64};
    printf("act8_kernel: %s, 1 thread, best of 60 batches\n", loom_cpu_isa_name(isa));
    printf("%-5s %5s %5s %4s %10s %14s\n", "type", "K", "N", "M", "us", "ns/block-row");
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (size_t si = 0; si < 2; si++)
            for (size_t mi = 0; mi < 3; mi++) {
                const loom_dtype t = types[ti];
                const int64_t K = shapes[si][0], N = shapes[si][1], M = Ms[mi];
                if (K % loom_dtype_block_size(t)) continue; /* k-quants: 256-value blocks */
                const double s = time_case(t, K, N, M, isa);
                if (s < 0) return 1;
                printf("%-5s %5lld %5lld %4lld %10.1f %14.3f\n", loom_dtype_name(t), (long long)K,
                       (long long)N, (long long)M, s * 1e6, s * 1e9 / (double)(K / 32 * N * M));
            }
    return 0;
}
