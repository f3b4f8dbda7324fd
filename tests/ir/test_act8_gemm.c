/* tests/ir/test_act8_gemm.c - the cpu's int8-activation matmul gives every
 * output element, bit for bit, the value it has when its activation row is
 * multiplied alone (M = 1, one decode step): for M in {1, 8, 9, 16, 33,
 * 128}, every weight type the kernel takes, thread splits 1..3, weight
 * ranges over several cache panels, on AVX2 and (where the CPU has VNNI)
 * AVX-512. That is the chunk invariance `loom serve` relies on (ADR 0043):
 * a token's activations round and sum the same whether it is decoded,
 * prefilled in a chunk of any size, or batched with other requests. The
 * values themselves are checked against the int8 reference by the parity
 * suite (parity_cases_act8, M up to 33 and 600 weight rows).
 * White-box (links loom_internal): calls loom_cpu_act8_kernel_for, the
 * kernel the cpu backend runs. Skipped (77) on a CPU without AVX2. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_kernels.h"
#include "loom/backend_sdk.h"
#include "loom/dtype.h"
#include "loom/ir.h"
#include "testing.h"

/* 300 rows: 2..6 panels of A8_PANEL_BYTES (48 KiB) per type at these K. */
enum { N = 300, MMAX = 128 };

static uint64_t rng = 0xD1B54A32D192ED03ull;

static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static bool run(loom_cpu_kernel_fn fn, loom_tensor *out, int nth) {
    char err[128] = "";
    for (int ith = 0; ith < nth; ith++) {
        const loom_status st = fn(out, ith, nth, err, sizeof err);
        CHECK_MSG(st == LOOM_OK, "kernel: %s: %s", loom_status_str(st), err);
        if (st != LOOM_OK) return false;
    }
    return true;
}

static void check_type(loom_dtype t, loom_cpu_isa isa) {
    /* an odd number of 32-value blocks (AVX-512 pairs them, then a tail);
     * k-quants: three super-blocks */
    const int64_t K = t == LOOM_Q4_K || t == LOOM_Q6_K ? 768 : 32 * 7;
    static const int64_t Ms[] = {1, 8, 9, 16, 33, MMAX};
    const char *tn = loom_dtype_name(t), *in = loom_cpu_isa_name(isa);
    loom_graph *g = NULL;
    CHECK(loom_graph_new(&g) == LOOM_OK);
    if (!g) return;
    loom_tensor *w = loom_tensor_4d(g, t, K, N, 1, 1);
    float *wf = malloc((size_t)(K * N) * sizeof(float));
    float *xf = malloc((size_t)(K * MMAX) * sizeof(float));
    float *want = malloc((size_t)(N * MMAX) * sizeof(float));
    float *got = malloc((size_t)(N * MMAX) * sizeof(float));
    uint8_t *wq = w ? malloc(loom_tensor_nbytes(w)) : NULL;
    CHECK(w && wf && xf && want && got && wq);
    if (!w || !wf || !xf || !want || !got || !wq) goto done;
    for (int64_t i = 0; i < K * N; i++)
        wf[i] = 0.05f * frand() + (i % 7 == 0 ? 0.02f : 0.0f); /* mins matter */
    CHECK(loom_quantize_row(t, wf, wq, K * N) == LOOM_OK);
    w->data = wq;
    for (int64_t i = 0; i < K * MMAX; i++) /* outliers widen some block scales */
        xf[i] = frand() * (i % 97 == 0 ? 20.0f : 1.0f) * (1.0f + (float)(i / K % 5));
    for (int64_t i = 3 * K; i < 3 * K + 32; i++) /* a zero block: scale 0 */
        xf[i] = 0.0f;

    /* Each activation row alone: the decode kernel's value. */
    loom_tensor *x1 = loom_tensor_4d(g, LOOM_F32, K, 1, 1, 1), *o1 = loom_matmul(g, w, x1);
    loom_cpu_kernel_fn fn1 = o1 ? loom_cpu_act8_kernel_for(o1, isa) : NULL;
    CHECK_MSG(fn1 != NULL, "%s %s: no int8 kernel for M = 1", in, tn);
    if (!fn1) goto done;
    for (int64_t m = 0; m < MMAX; m++) {
        x1->data = xf + m * K;
        o1->data = want + m * N;
        if (!run(fn1, o1, 1)) goto done;
    }

    for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
        const int64_t M = Ms[mi];
        loom_tensor *xm = loom_tensor_4d(g, LOOM_F32, K, M, 1, 1), *om = loom_matmul(g, w, xm);
        /* the rule covers every M, so the cpu runs (and the parity suite
         * checks) the int8 kernel for prefill too */
        CHECK_MSG(om && loom_ref_act8_applies(om), "%s M=%lld: outside loom_ref_act8_applies", tn,
                  (long long)M);
        loom_cpu_kernel_fn fn = om ? loom_cpu_act8_kernel_for(om, isa) : NULL;
        CHECK_MSG(fn != NULL, "%s %s: no int8 kernel for M = %lld", in, tn, (long long)M);
        if (!fn) continue;
        xm->data = xf;
        om->data = got;
        for (int nth = 1; nth <= 3; nth++) {
            memset(got, 0xff, (size_t)(N * M) * sizeof(float));
            if (!run(fn, om, nth)) goto done;
            int64_t bad = 0, first = -1;
            for (int64_t i = 0; i < N * M; i++)
                if (memcmp(&got[i], &want[i], sizeof(float)) && bad++ == 0) first = i;
            CHECK_MSG(bad == 0,
                      "%s %s M=%lld nth=%d: %lld of %lld outputs differ from the M = 1 kernel; "
                      "first row %lld col %lld: %.9g vs %.9g",
                      in, tn, (long long)M, nth, (long long)bad, (long long)(N * M),
                      (long long)(first / N), (long long)(first % N), (double)got[first],
                      (double)want[first]);
        }
    }
done:
    free(wf);
    free(xf);
    free(want);
    free(got);
    free(wq);
    loom_graph_free(g);
}

int main(void) {
    const loom_cpu_isa best = loom_cpu_isa_detect();
    if (best < LOOM_CPU_ISA_AVX2) {
        printf("test_act8_gemm: SKIP: no AVX2 (the int8 kernels need it)\n");
        return 77;
    }
    static const loom_dtype types[] = {LOOM_Q4_0, LOOM_Q4_1, LOOM_Q5_0, LOOM_Q5_1,
                                       LOOM_Q8_0, LOOM_Q4_K, LOOM_Q6_K};
    for (int isa = LOOM_CPU_ISA_AVX2; isa <= (int)best; isa++) {
        /* AVX-512 without VNNI runs the AVX2 instantiation: already covered */
        if (isa == LOOM_CPU_ISA_AVX512 && !__builtin_cpu_supports("avx512vnni")) continue;
        printf("test_act8_gemm: %s\n", loom_cpu_isa_name((loom_cpu_isa)isa));
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            check_type(types[i], (loom_cpu_isa)isa);
    }
    return test_summary("test_act8_gemm");
}
