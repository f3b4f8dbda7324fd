/* tests/ir/test_act8_simd.c - the cpu kernels' SIMD activation quantizer
 * (kernels/cpu/act8_quant.h) gives the same bytes as the reference one
 * (loom_act8_quantize_row), which the parity suite's int8 reference and
 * test_ref_act8 rely on: codes, f32 scales and code sums, bit for bit, on
 * random rows of several magnitudes, exact halfway values (roundf rounds
 * them away from zero, the SIMD rounding mode would not), values just below
 * halfway, zero blocks, signed zeros, subnormals and blocks whose amax
 * is 127 (scale exactly 1). Skipped (77) on a CPU without AVX2. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/act8_quant.h"
#include "loom/backend_sdk.h"
#include "testing.h"

enum { K = 32 * 64, NB = K / 32 };

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static int compare(const float *x, const char *what) {
    static int8_t q0[K], q1[K];
    static float d0[NB], d1[NB];
    static int32_t s0[NB], s1[NB];
    memset(q1, 0x55, sizeof q1);
    loom_act8_quantize_row(x, K, q0, d0, s0);
    loom_cpu_act8_quantize_row(x, K, q1, d1, s1);
    int bad = 0;
    for (int i = 0; i < K; i++)
        if (q0[i] != q1[i] && bad++ < 3)
            fprintf(stderr, "%s: code %d: reference %d, simd %d (x = %.9g)\n", what, i, q0[i],
                    q1[i], (double)x[i]);
    for (int b = 0; b < NB; b++)
        if ((memcmp(&d0[b], &d1[b], sizeof(float)) || s0[b] != s1[b]) && bad++ < 3)
            fprintf(stderr, "%s: block %d: scale %.9g / %.9g, sum %d / %d\n", what, b,
                    (double)d0[b], (double)d1[b], s0[b], s1[b]);
    CHECK_MSG(bad == 0, "%s: %d differences", what, bad);
    return bad;
}

int main(void) {
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
        printf("test_act8_simd: SKIP: no AVX2/FMA\n");
        return 77;
    }
    static float x[K];
    const float scales[] = {1e-30f, 1e-3f, 1.0f, 3.0f, 1e4f, 1e30f};
    for (size_t si = 0; si < sizeof scales / sizeof *scales; si++)
        for (int round = 0; round < 20; round++) {
            for (int i = 0; i < K; i++)
                x[i] = scales[si] * frand();
            compare(x, "random");
        }
    /* Blocks with amax 127 (scale 1): x is its own code, so x = n + 0.5 is
     * exactly halfway and x = n + 0.49999997 just below. */
    for (int b = 0; b < NB; b++) {
        float *xb = x + 32 * b;
        xb[0] = (b & 1) ? -127.0f : 127.0f;
        for (int l = 1; l < 32; l++) {
            const float n = (float)((int)(frand() * 126.0f));
            const int kind = (b + l) % 4;
            xb[l] = kind == 0   ? n + 0.5f
                    : kind == 1 ? n - 0.5f
                    : kind == 2 ? n + nextafterf(0.5f, 0.0f)
                                : n - nextafterf(0.5f, 0.0f);
        }
    }
    compare(x, "halfway");
    for (int i = 0; i < K; i++) /* zero blocks, signed zeros, subnormals */
        x[i] = (i / 32) % 3 == 0   ? ((i & 1) ? -0.0f : 0.0f)
               : (i / 32) % 3 == 1 ? 1e-40f * frand()
                                   : frand();
    compare(x, "zeros/subnormals");
    return test_summary("test_act8_simd");
}
