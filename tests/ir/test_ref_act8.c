/* tests/ir/test_ref_act8.c - the int8-activation reference (ADR 0036),
 * checked independently of the SIMD kernels it is the oracle for:
 * - loom_act8_quantize_row gives the codes of ggml's quantize_row_q8_0
 *   (loom's q8_0 quantizer, itself checked against gguf-py) with the scale
 *   kept in f32 (amax / 127), and the per-block code sums;
 * - loom_ref_compute_act8 on every weight type equals the dot of the
 *   dequantized weights (loom_dequantize_row, bit-exact with gguf-py) with the
 *   dequantized activations d * q, in double: so its integer decomposition
 *   (codes, scales, mins per 32-value block) is the weight type's;
 * - loom_ref_act8_applies: the shapes and dtypes it covers. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loom/backend_sdk.h"
#include "loom/dtype.h"
#include "loom/ir.h"
#include "testing.h"

static uint64_t rng = 0x2545F4914F6CDD1Dull;

static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void test_quantize(void) {
    enum { K = 256 };
    float x[K];
    for (int i = 0; i < K; i++)
        x[i] = 3.0f * frand();
    for (int i = 64; i < 96; i++)
        x[i] = 0.0f; /* an all-zero block: d = 0, codes 0 */
    x[100] = 127.0f; /* amax 127: d = 1, so x = k + 0.5 hits roundf's halfway rule */
    x[101] = 2.5f;
    x[102] = -2.5f;
    int8_t q[K];
    float d[K / 32];
    int32_t s[K / 32];
    loom_act8_quantize_row(x, K, q, d, s);
    uint8_t ref[K / 32 * 34];
    CHECK(loom_quantize_row(LOOM_Q8_0, x, ref, K) == LOOM_OK);
    for (int b = 0; b < K / 32; b++) {
        float amax = 0.0f;
        int32_t sum = 0;
        for (int l = 0; l < 32; l++) {
            amax = fmaxf(amax, fabsf(x[32 * b + l]));
            sum += q[32 * b + l];
        }
        CHECK_MSG(d[b] == amax / 127.0f, "block %d: d %g want %g", b, d[b], amax / 127.0f);
        CHECK_MSG(memcmp(q + 32 * b, ref + 34 * b + 2, 32) == 0, "block %d: codes differ from q8_0",
                  b);
        CHECK_MSG(s[b] == sum, "block %d: sum %d want %d", b, s[b], sum);
    }
    CHECK(q[101] == 3 && q[102] == -3); /* half away from zero, as ggml's roundf */
}

static void test_matches_dequantized(loom_dtype t) {
    const int64_t K = 512, N = 5, M = 3;
    loom_graph *g = NULL;
    CHECK(loom_graph_new(&g) == LOOM_OK);
    loom_tensor *w = loom_tensor_4d(g, t, K, N, 1, 1), *x = loom_tensor_4d(g, LOOM_F32, K, M, 1, 1);
    loom_tensor *out = loom_matmul(g, w, x);
    CHECK(w && x && out);
    if (!out) {
        loom_graph_free(g);
        return;
    }
    float *wf = malloc((size_t)(K * N) * sizeof(float)), *xf = malloc((size_t)(K * M) * 4);
    uint8_t *wq = malloc(loom_tensor_nbytes(w));
    float *o = malloc((size_t)(N * M) * sizeof(float)), *deq = malloc((size_t)K * sizeof(float));
    for (int64_t i = 0; i < K * N; i++)
        wf[i] = 0.05f * frand() + (i % 7 == 0 ? 0.02f : 0.0f); /* mins matter */
    for (int64_t i = 0; i < K * M; i++)
        xf[i] = frand() * (i % 97 == 0 ? 20.0f : 1.0f); /* outliers widen some block scales */
    CHECK(loom_quantize_row(t, wf, wq, K * N) == LOOM_OK);
    w->data = wq;
    x->data = xf;
    out->data = o;
    CHECK(loom_ref_act8_applies(out));
    char err[128] = "";
    CHECK_MSG(loom_ref_compute_act8(out, 0, 1, err, sizeof err) == LOOM_OK, "%s", err);

    int8_t q[512];
    float d[16];
    int32_t s[16];
    double worst = 0.0;
    for (int64_t m = 0; m < M; m++) {
        loom_act8_quantize_row(xf + m * K, K, q, d, s);
        for (int64_t n = 0; n < N; n++) {
            CHECK(loom_dequantize_row(t, wq + (size_t)n * w->nb[1], deq, K) == LOOM_OK);
            double want = 0.0, mag = 0.0;
            for (int64_t k = 0; k < K; k++) {
                const double xv = (double)d[k / 32] * q[k];
                want += (double)deq[k] * xv;
                mag += fabs((double)deq[k] * xv);
            }
            const double e = fabs((double)o[m * N + n] - want) / (mag > 0 ? mag : 1.0);
            if (e > worst) worst = e;
        }
    }
    /* The only difference is the final rounding to f32 (and double sums). */
    CHECK_MSG(worst < 1e-7, "%s: act8 reference vs dequantized dot: rel err %g", loom_dtype_name(t),
              worst);
    free(wf);
    free(xf);
    free(wq);
    free(o);
    free(deq);
    loom_graph_free(g);
}

static void test_applies(void) {
    loom_graph *g = NULL;
    CHECK(loom_graph_new(&g) == LOOM_OK);
    loom_tensor *w = loom_tensor_4d(g, LOOM_Q4_0, 64, 8, 1, 1);
    loom_tensor *x8 = loom_tensor_4d(g, LOOM_F32, 64, 8, 1, 1);
    loom_tensor *xp = loom_tensor_4d(g, LOOM_F32, 64, 512, 1, 1);
    loom_tensor *xh = loom_tensor_4d(g, LOOM_F16, 64, 1, 1, 1);
    loom_tensor *wf = loom_tensor_4d(g, LOOM_F32, 64, 8, 1, 1);
    loom_tensor *w3 = loom_tensor_4d(g, LOOM_Q3_K, 256, 8, 1, 1);
    loom_tensor *x3 = loom_tensor_4d(g, LOOM_F32, 256, 1, 1, 1);
    CHECK(loom_ref_act8_applies(loom_matmul(g, w, x8)));
    CHECK(loom_ref_act8_applies(loom_matmul(g, w, xp)));   /* prefill too (ADR 0043) */
    CHECK(!loom_ref_act8_applies(loom_matmul(g, w, xh)));  /* f16 activations */
    CHECK(!loom_ref_act8_applies(loom_matmul(g, wf, x8))); /* f32 weights */
    CHECK(!loom_ref_act8_applies(loom_matmul(g, w3, x3))); /* q3_K: no int8 kernel */
    CHECK(!loom_ref_act8_applies(loom_add(g, x8, x8)));
    CHECK(!loom_ref_act8_applies(NULL));
    /* a model's output head keeps f32 activations (ADR 0036 addendum 3) */
    CHECK(!loom_ref_act8_applies(loom_tensor_set_flags(loom_matmul(g, w, x8), LOOM_FLAG_F32_ACT)));
    loom_graph_free(g);
}

int main(void) {
    test_quantize();
    static const loom_dtype types[] = {LOOM_Q4_0, LOOM_Q4_1, LOOM_Q5_0, LOOM_Q5_1,
                                       LOOM_Q8_0, LOOM_Q4_K, LOOM_Q6_K};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        test_matches_dequantized(types[i]);
    test_applies();
    return test_summary("test_ref_act8");
}
