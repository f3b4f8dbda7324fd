/* tests/ir/test_ref_elementwise.c - the scalar reference kernels (elementwise,
 * norm, softmax, rope, cpy/concat/sum_to, get_rows, cross entropy) checked
 * against hand-computed values or independent computations written
 * differently (finite differences, complex rotation, direct loops).
 *
 * Tensors are built by hand (no graph builder): a struct with contiguous
 * strides over a caller array, or a view aliasing one. Every op is also run
 * with nth = 3 (ith = 0, 1, 2 in turn) and must give bytes identical to nth = 1. */
#include <complex.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loom/backend_sdk.h"
#include "testing.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* ---------------- helpers ---------------- */

/* Leaf or node over data with contiguous strides (nf4 strides count code bytes). */
static loom_tensor mk(loom_dtype t, int64_t n0, int64_t n1, int64_t n2, int64_t n3, void *data) {
    loom_tensor x;
    memset(&x, 0, sizeof x);
    x.dtype = t;
    x.ne[0] = n0;
    x.ne[1] = n1;
    x.ne[2] = n2;
    x.ne[3] = n3;
    if (loom_dtype_is_nf4(t)) {
        x.nb[0] = 1;
        x.nb[1] = (size_t)n0 / 2;
    } else {
        x.nb[0] = loom_dtype_block_bytes(t);
        x.nb[1] = x.nb[0] * (size_t)(n0 / loom_dtype_block_size(t));
    }
    x.nb[2] = x.nb[1] * (size_t)n1;
    x.nb[3] = x.nb[2] * (size_t)n2;
    x.data = data;
    x.backend_id = -1;
    return x;
}

/* View of storage s with extents ne and byte strides nb at byte offset offs. */
static loom_tensor mkview(loom_tensor *s, const int64_t ne[4], const size_t nb[4], size_t offs) {
    loom_tensor v;
    memset(&v, 0, sizeof v);
    v.dtype = s->dtype;
    memcpy(v.ne, ne, sizeof v.ne);
    memcpy(v.nb, nb, sizeof v.nb);
    v.op = LOOM_OP_VIEW;
    v.view_src = s;
    v.view_offs = offs;
    v.backend_id = -1;
    return v;
}

/* Swap dims 0 and 1 of s (a transposed, non-contiguous view). */
static loom_tensor transposed(loom_tensor *s) {
    const int64_t ne[4] = {s->ne[1], s->ne[0], s->ne[2], s->ne[3]};
    const size_t nb[4] = {s->nb[1], s->nb[0], s->nb[2], s->nb[3]};
    return mkview(s, ne, nb, 0);
}

static void set_node(loom_tensor *y, loom_op op, loom_tensor *a, loom_tensor *b, loom_tensor *c) {
    y->op = op;
    y->src[0] = a;
    y->src[1] = b;
    y->src[2] = c;
}

static char err[256];

/* Runs node with nth = 1, then again with nth = 3 on a poisoned output, and
 * checks the two outputs are byte-identical. Returns the nth = 1 status
 * (err holds its message). */
static loom_status run(loom_tensor *y, size_t out_bytes) {
    err[0] = '\0';
    const loom_status s1 = loom_ref_compute(y, 0, 1, err, sizeof err);
    char err1[sizeof err];
    memcpy(err1, err, sizeof err);
    unsigned char *first = malloc(out_bytes);
    memcpy(first, y->data, out_bytes);
    memset(y->data, 0x7f, out_bytes);
    loom_status s3 = LOOM_OK;
    for (int ith = 0; ith < 3; ith++) {
        const loom_status s = loom_ref_compute(y, ith, 3, err, sizeof err);
        if (s != LOOM_OK) s3 = s;
    }
    CHECK_MSG(s1 == s3, "%s: status nth=1 %d, nth=3 %d", loom_op_name(y->op), (int)s1, (int)s3);
    if (s1 == LOOM_OK)
        CHECK_MSG(memcmp(first, y->data, out_bytes) == 0, "%s: nth=3 differs from nth=1",
                  loom_op_name(y->op));
    memcpy(y->data, first, out_bytes);
    memcpy(err, err1, sizeof err);
    free(first);
    return s1;
}

static bool near(double got, double want, double tol) {
    return fabs(got - want) <= tol * (1.0 + fabs(want));
}

/* Deterministic pseudo-random values in [-1, 1). */
static uint32_t rng_state = 12345u;
static float frand(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) / 8388608.0 - 1.0);
}
static void fill(float *x, int64_t n, float amp) {
    for (int64_t i = 0; i < n; i++)
        x[i] = amp * frand();
}

/* ---------------- add / mul with broadcast ---------------- */

static void test_binary(void) {
    /* a: transposed view of s [3,4,2] -> a [4,3,2]; a[i0,i1,i2] = s[i1,i0,i2]. */
    float sd[24], bd[8], bd2[3], out[24];
    fill(sd, 24, 2.0f);
    fill(bd, 8, 2.0f);
    fill(bd2, 3, 2.0f);
    loom_tensor s = mk(LOOM_F32, 3, 4, 2, 1, sd);
    loom_tensor a = transposed(&s);
    loom_tensor b = mk(LOOM_F32, 4, 1, 2, 1, bd);   /* broadcast over dim 1 */
    loom_tensor b2 = mk(LOOM_F32, 1, 3, 1, 1, bd2); /* broadcast over dims 0, 2 */
    loom_tensor y = mk(LOOM_F32, 4, 3, 2, 1, out);

    set_node(&y, LOOM_OP_ADD, &a, &b, NULL);
    CHECK(run(&y, sizeof out) == LOOM_OK);
    int bad = 0;
    for (int i2 = 0; i2 < 2; i2++)
        for (int i1 = 0; i1 < 3; i1++)
            for (int i0 = 0; i0 < 4; i0++)
                bad += out[i0 + 4 * i1 + 12 * i2] != sd[i1 + 3 * i0 + 12 * i2] + bd[i0 + 4 * i2];
    CHECK_MSG(bad == 0, "add broadcast: %d mismatches", bad);

    set_node(&y, LOOM_OP_MUL, &a, &b2, NULL);
    CHECK(run(&y, sizeof out) == LOOM_OK);
    bad = 0;
    for (int i2 = 0; i2 < 2; i2++)
        for (int i1 = 0; i1 < 3; i1++)
            for (int i0 = 0; i0 < 4; i0++)
                bad += out[i0 + 4 * i1 + 12 * i2] != sd[i1 + 3 * i0 + 12 * i2] * bd2[i1];
    CHECK_MSG(bad == 0, "mul broadcast: %d mismatches", bad);

    /* b that cannot broadcast is refused. */
    loom_tensor b3 = mk(LOOM_F32, 2, 3, 1, 1, bd);
    set_node(&y, LOOM_OP_ADD, &a, &b3, NULL);
    CHECK(loom_ref_compute(&y, 0, 1, err, sizeof err) == LOOM_ERR_INVALID_ARG);
}

/* ---------------- scale, silu, swiglu, silu_back ---------------- */

static double silu_d(double x) {
    return x / (1.0 + exp(-x));
}

static void test_pointwise(void) {
    enum { N = 21 };
    float xd[N], ud[N], out[N];
    for (int i = 0; i < N; i++)
        xd[i] = -10.0f + i; /* -10 .. 10, including 0 */
    fill(ud, N, 3.0f);
    loom_tensor x = mk(LOOM_F32, 7, 3, 1, 1, xd);
    loom_tensor u = mk(LOOM_F32, 7, 3, 1, 1, ud);
    loom_tensor y = mk(LOOM_F32, 7, 3, 1, 1, out);

    set_node(&y, LOOM_OP_SCALE, &x, NULL, NULL);
    y.p.f[0] = 0.25f;
    CHECK(run(&y, sizeof out) == LOOM_OK);
    int bad = 0;
    for (int i = 0; i < N; i++)
        bad += out[i] != xd[i] * 0.25f; /* exact: power of two */
    CHECK(bad == 0);

    set_node(&y, LOOM_OP_SILU, &x, NULL, NULL);
    CHECK(run(&y, sizeof out) == LOOM_OK);
    CHECK(out[10] == 0.0f);                              /* silu(0) = 0 */
    CHECK(near(out[11], 1.0 / (1.0 + exp(-1.0)), 1e-7)); /* silu(1) = sigmoid(1) */
    bad = 0;
    for (int i = 0; i < N; i++)
        bad += !near(out[i], xd[i] * (0.5 + 0.5 * tanh(0.5 * xd[i])), 1e-6);
    CHECK_MSG(bad == 0, "silu: %d mismatches vs tanh form", bad);

    set_node(&y, LOOM_OP_SWIGLU, &x, &u, NULL);
    CHECK(run(&y, sizeof out) == LOOM_OK);
    bad = 0;
    for (int i = 0; i < N; i++)
        bad += !near(out[i], silu_d(xd[i]) * ud[i], 1e-6);
    CHECK_MSG(bad == 0, "swiglu: %d mismatches", bad);

    /* silu_back against a central finite difference of silu (in double). */
    set_node(&y, LOOM_OP_SILU_BACK, &x, &u, NULL);
    CHECK(run(&y, sizeof out) == LOOM_OK);
    bad = 0;
    for (int i = 0; i < N; i++) {
        const double h = 1e-5;
        const double d = (silu_d(xd[i] + h) - silu_d(xd[i] - h)) / (2 * h);
        bad += !near(out[i], ud[i] * d, 1e-6);
    }
    CHECK_MSG(bad == 0, "silu_back: %d mismatches vs finite difference", bad);

    /* gelu (erf form) at points whose values are tabulated: x Phi(x) with
     * Phi(1) = 0.8413447460685429, Phi(-1) = 0.15865525393145707,
     * Phi(3) = 0.9986501019683699; xd = -10..10 so xd[11] = 1, xd[9] = -1. */
    set_node(&y, LOOM_OP_GELU, &x, NULL, NULL);
    CHECK(run(&y, sizeof out) == LOOM_OK);
    CHECK(out[10] == 0.0f);
    CHECK(near(out[11], 0.8413447460685429, 1e-7));
    CHECK(near(out[9], -0.15865525393145707, 1e-7));
    CHECK(near(out[13], 3 * 0.9986501019683699, 1e-6));
    CHECK(near(out[20], 10.0, 1e-6) && fabs(out[0]) < 1e-20); /* both tails */

    /* gelu_back against a central finite difference of x Phi(x) (in double). */
    set_node(&y, LOOM_OP_GELU_BACK, &x, &u, NULL);
    CHECK(run(&y, sizeof out) == LOOM_OK);
    bad = 0;
    for (int i = 0; i < N; i++) {
        const double h = 1e-5, a = xd[i];
        const double d = ((a + h) * 0.5 * erfc(-(a + h) / sqrt(2.0)) -
                          (a - h) * 0.5 * erfc(-(a - h) / sqrt(2.0))) /
                         (2 * h);
        bad += !near(out[i], ud[i] * d, 1e-6);
    }
    CHECK_MSG(bad == 0, "gelu_back: %d mismatches vs finite difference", bad);
}

/* ---------------- cpy ---------------- */

static void test_cpy(void) {
    /* f32 transposed view -> f16 contiguous. */
    float sd[12];
    fill(sd, 12, 4.0f);
    loom_tensor s = mk(LOOM_F32, 3, 4, 1, 1, sd);
    loom_tensor a = transposed(&s); /* [4,3] */
    uint16_t h[12];
    loom_tensor y16 = mk(LOOM_F16, 4, 3, 1, 1, h);
    set_node(&y16, LOOM_OP_CPY, &a, NULL, NULL);
    CHECK(run(&y16, sizeof h) == LOOM_OK);
    int bad = 0;
    for (int i1 = 0; i1 < 3; i1++)
        for (int i0 = 0; i0 < 4; i0++)
            bad += h[i0 + 4 * i1] != loom_f32_to_f16(sd[i1 + 3 * i0]);
    CHECK_MSG(bad == 0, "cpy f32 view -> f16: %d mismatches", bad);

    /* f16 -> bf16 goes by value. */
    uint16_t bf[12];
    loom_tensor ybf = mk(LOOM_BF16, 4, 3, 1, 1, bf);
    set_node(&ybf, LOOM_OP_CPY, &y16, NULL, NULL);
    y16.op = LOOM_OP_NONE;
    CHECK(run(&ybf, sizeof bf) == LOOM_OK);
    bad = 0;
    for (int i = 0; i < 12; i++)
        bad += bf[i] != loom_f32_to_bf16(loom_f16_to_f32(h[i]));
    CHECK(bad == 0);

    /* i32 -> i32 is exact, even beyond float's 24-bit mantissa. */
    int32_t iv[4] = {16777217, -2147483647, 7, 2147483647}, io[4];
    loom_tensor ti = mk(LOOM_I32, 4, 1, 1, 1, iv), yi = mk(LOOM_I32, 4, 1, 1, 1, io);
    set_node(&yi, LOOM_OP_CPY, &ti, NULL, NULL);
    CHECK(run(&yi, sizeof io) == LOOM_OK);
    CHECK(memcmp(iv, io, sizeof iv) == 0);

    /* f32 [64, 3] -> q8_0 matches loom_quantize_row; back -> f32 matches
     * loom_dequantize_row; q8_0 -> q8_0 copies blocks. */
    enum { K = 64, R = 3 };
    float q_in[K * R], q_back[K * R], ref_row[K];
    fill(q_in, K * R, 3.0f);
    loom_block_q8_0 qb[K / 32 * R], qref[K / 32 * R], qcopy[K / 32 * R];
    loom_tensor tq_in = mk(LOOM_F32, K, R, 1, 1, q_in);
    loom_tensor tq = mk(LOOM_Q8_0, K, R, 1, 1, qb);
    set_node(&tq, LOOM_OP_CPY, &tq_in, NULL, NULL);
    CHECK(run(&tq, sizeof qb) == LOOM_OK);
    for (int r = 0; r < R; r++)
        loom_quantize_row(LOOM_Q8_0, q_in + r * K, qref + r * (K / 32), K);
    CHECK(memcmp(qb, qref, sizeof qb) == 0);
    tq.op = LOOM_OP_NONE;
    loom_tensor tback = mk(LOOM_F32, K, R, 1, 1, q_back);
    set_node(&tback, LOOM_OP_CPY, &tq, NULL, NULL);
    CHECK(run(&tback, sizeof q_back) == LOOM_OK);
    bad = 0;
    for (int r = 0; r < R; r++) {
        loom_dequantize_row(LOOM_Q8_0, qref + r * (K / 32), ref_row, K);
        bad += memcmp(ref_row, q_back + r * K, sizeof ref_row) != 0;
    }
    CHECK(bad == 0);
    loom_tensor tqc = mk(LOOM_Q8_0, K, R, 1, 1, qcopy);
    set_node(&tqc, LOOM_OP_CPY, &tq, NULL, NULL);
    CHECK(run(&tqc, sizeof qcopy) == LOOM_OK);
    CHECK(memcmp(qcopy, qb, sizeof qb) == 0);

    /* f32 (transposed view) -> nf4 equals loom_nf4_quantize of the values in
     * logical order; nf4 -> f32 equals loom_nf4_dequantize. */
    enum { NN = 128 };
    float n_src[NN], n_logical[NN], n_back[NN], n_ref[NN];
    fill(n_src, NN, 1.5f);
    loom_tensor ns = mk(LOOM_F32, 16, 8, 1, 1, n_src);
    loom_tensor nv = transposed(&ns); /* [8,16] */
    for (int i1 = 0; i1 < 16; i1++)
        for (int i0 = 0; i0 < 8; i0++)
            n_logical[i0 + 8 * i1] = n_src[i1 + 16 * i0];
    const size_t nf4_bytes = loom_dtype_nbytes(LOOM_NF4_DQ, NN);
    unsigned char *nq = calloc(1, nf4_bytes), *nq_ref = calloc(1, nf4_bytes);
    loom_tensor tn = mk(LOOM_NF4_DQ, 8, 16, 1, 1, nq);
    set_node(&tn, LOOM_OP_CPY, &nv, NULL, NULL);
    CHECK(run(&tn, nf4_bytes) == LOOM_OK);
    CHECK(loom_nf4_quantize(LOOM_NF4_DQ, n_logical, NN, nq_ref) == LOOM_OK);
    CHECK(memcmp(nq, nq_ref, nf4_bytes) == 0);
    tn.op = LOOM_OP_NONE;
    loom_tensor tnb = mk(LOOM_F32, 8, 16, 1, 1, n_back);
    set_node(&tnb, LOOM_OP_CPY, &tn, NULL, NULL);
    CHECK(run(&tnb, sizeof n_back) == LOOM_OK);
    loom_nf4_layout l;
    CHECK(loom_nf4_layout_of(LOOM_NF4_DQ, nq, NN, &l) == LOOM_OK);
    loom_nf4_dequantize(&l, 0, NN, n_ref);
    CHECK(memcmp(n_back, n_ref, sizeof n_ref) == 0);

    /* An nf4 view of rows 5..9 (offset in code bytes) reads the right elements. */
    float n_part[8 * 5];
    const int64_t vne[4] = {8, 5, 1, 1};
    const size_t vnb[4] = {1, 4, 20, 20};
    loom_tensor tnv = mkview(&tn, vne, vnb, 5 * 4);
    loom_tensor tnp = mk(LOOM_F32, 8, 5, 1, 1, n_part);
    set_node(&tnp, LOOM_OP_CPY, &tnv, NULL, NULL);
    CHECK(loom_ref_supports(&tnp));
    CHECK(run(&tnp, sizeof n_part) == LOOM_OK);
    CHECK(memcmp(n_part, n_ref + 5 * 8, sizeof n_part) == 0);
    free(nq);
    free(nq_ref);
}

/* ---------------- concat ---------------- */

static void test_concat(void) {
    float ad[2 * 3 * 2], bd[3 * 3 * 2], out[5 * 3 * 2];
    for (int i = 0; i < 12; i++)
        ad[i] = (float)(100 + i);
    for (int i = 0; i < 18; i++)
        bd[i] = (float)(200 + i);
    loom_tensor a = mk(LOOM_F32, 2, 3, 2, 1, ad), b = mk(LOOM_F32, 3, 3, 2, 1, bd);
    loom_tensor y = mk(LOOM_F32, 5, 3, 2, 1, out);
    set_node(&y, LOOM_OP_CONCAT, &a, &b, NULL);
    y.p.i[0] = 0;
    CHECK(run(&y, sizeof out) == LOOM_OK);
    /* Row (i1, i2): a's 2 values then b's 3. */
    CHECK(out[0] == 100 && out[1] == 101 && out[2] == 200 && out[3] == 201 && out[4] == 202);
    CHECK(out[5 * 4 + 0] == 108 && out[5 * 4 + 2] == 212); /* row (1, 1) */

    /* dim 1 with a transposed a: a' = transpose of s [3,2] -> [2,3]... */
    float sd[6] = {1, 2, 3, 4, 5, 6}, cd[2 * 2], out2[2 * 5];
    loom_tensor s = mk(LOOM_F32, 3, 2, 1, 1, sd);
    loom_tensor at = transposed(&s); /* [2,3]: at[i0,i1] = sd[i1 + 3*i0] */
    cd[0] = 7, cd[1] = 8, cd[2] = 9, cd[3] = 10;
    loom_tensor c = mk(LOOM_F32, 2, 2, 1, 1, cd);
    loom_tensor y2 = mk(LOOM_F32, 2, 5, 1, 1, out2);
    set_node(&y2, LOOM_OP_CONCAT, &at, &c, NULL);
    y2.p.i[0] = 1;
    CHECK(run(&y2, sizeof out2) == LOOM_OK);
    const float want2[10] = {1, 4, 2, 5, 3, 6, 7, 8, 9, 10};
    CHECK(memcmp(out2, want2, sizeof want2) == 0);

    /* dim 2, f16 sources into f16 (bytes copied). */
    uint16_t ha[4], hb[2], ho[6];
    for (int i = 0; i < 4; i++)
        ha[i] = loom_f32_to_f16((float)i);
    for (int i = 0; i < 2; i++)
        hb[i] = loom_f32_to_f16((float)(10 + i));
    loom_tensor fa = mk(LOOM_F16, 2, 1, 2, 1, ha), fb = mk(LOOM_F16, 2, 1, 1, 1, hb);
    loom_tensor fy = mk(LOOM_F16, 2, 1, 3, 1, ho);
    set_node(&fy, LOOM_OP_CONCAT, &fa, &fb, NULL);
    fy.p.i[0] = 2;
    CHECK(run(&fy, sizeof ho) == LOOM_OK);
    CHECK(memcmp(ho, ha, sizeof ha) == 0 && memcmp(ho + 4, hb, sizeof hb) == 0);
}

/* ---------------- sum_to ---------------- */

static void test_sum_to(void) {
    float xd[3 * 4 * 2], o1[3 * 2], o2[4], o3[1];
    fill(xd, 24, 5.0f);
    loom_tensor x = mk(LOOM_F32, 3, 4, 2, 1, xd);
    loom_tensor y1 = mk(LOOM_F32, 3, 1, 2, 1, o1);
    set_node(&y1, LOOM_OP_SUM_TO, &x, NULL, NULL);
    CHECK(run(&y1, sizeof o1) == LOOM_OK);
    int bad = 0;
    for (int i2 = 0; i2 < 2; i2++)
        for (int i0 = 0; i0 < 3; i0++) {
            double s = 0;
            for (int i1 = 0; i1 < 4; i1++)
                s += xd[i0 + 3 * i1 + 12 * i2];
            bad += o1[i0 + 3 * i2] != (float)s;
        }
    CHECK_MSG(bad == 0, "sum_to dim1: %d mismatches", bad);

    /* Transposed input [4,3,2] summed to [4,1,1]. */
    loom_tensor xt = transposed(&x);
    loom_tensor y2 = mk(LOOM_F32, 4, 1, 1, 1, o2);
    set_node(&y2, LOOM_OP_SUM_TO, &xt, NULL, NULL);
    CHECK(run(&y2, sizeof o2) == LOOM_OK);
    bad = 0;
    for (int j = 0; j < 4; j++) {
        double s = 0;
        for (int i2 = 0; i2 < 2; i2++)
            for (int i0 = 0; i0 < 3; i0++)
                s += xd[i0 + 3 * j + 12 * i2];
        bad += !near(o2[j], s, 1e-6);
    }
    CHECK_MSG(bad == 0, "sum_to transposed: %d mismatches", bad);

    loom_tensor y3 = mk(LOOM_F32, 1, 1, 1, 1, o3);
    set_node(&y3, LOOM_OP_SUM_TO, &x, NULL, NULL);
    CHECK(run(&y3, sizeof o3) == LOOM_OK);
    double s = 0;
    for (int i = 0; i < 24; i++)
        s += xd[i];
    CHECK(near(o3[0], s, 1e-6));
}

/* ---------------- rms_norm ---------------- */

/* sum(dy * rms_norm(x)) for one row, in double (for finite differences). */
static double rms_loss(const double *x, const float *dy, int n, double eps) {
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += x[i] * x[i];
    const double r = 1.0 / sqrt(ss / n + eps);
    double l = 0;
    for (int i = 0; i < n; i++)
        l += dy[i] * x[i] * r;
    return l;
}

static void test_rms_norm(void) {
    /* Hand value: row {3, 4}: mean of squares 12.5. */
    float xd[2] = {3, 4}, yd[2];
    loom_tensor x = mk(LOOM_F32, 2, 1, 1, 1, xd), y = mk(LOOM_F32, 2, 1, 1, 1, yd);
    set_node(&y, LOOM_OP_RMS_NORM, &x, NULL, NULL);
    y.p.f[0] = 0.5f;
    CHECK(run(&y, sizeof yd) == LOOM_OK);
    CHECK(near(yd[0], 3.0 / sqrt(13.0), 1e-7) && near(yd[1], 4.0 / sqrt(13.0), 1e-7));

    /* Transposed input: rows of the view are columns of the storage. */
    enum { D = 6, R = 4 };
    float sd[D * R], out[D * R], dyd[D * R], dx[D * R];
    fill(sd, D * R, 2.0f);
    fill(dyd, D * R, 1.0f);
    loom_tensor s = mk(LOOM_F32, R, D, 1, 1, sd);
    loom_tensor xt = transposed(&s); /* [D, R]: xt[i, r] = sd[r + R*i] */
    loom_tensor yt = mk(LOOM_F32, D, R, 1, 1, out);
    set_node(&yt, LOOM_OP_RMS_NORM, &xt, NULL, NULL);
    yt.p.f[0] = 1e-5f;
    CHECK(run(&yt, sizeof out) == LOOM_OK);
    int bad = 0;
    for (int r = 0; r < R; r++) {
        double ss = 0;
        for (int i = 0; i < D; i++)
            ss += (double)sd[r + R * i] * sd[r + R * i];
        const double rms = sqrt(ss / D + 1e-5f);
        for (int i = 0; i < D; i++)
            bad += !near(out[i + D * r], sd[r + R * i] / rms, 1e-6);
    }
    CHECK_MSG(bad == 0, "rms_norm transposed: %d mismatches", bad);

    /* rms_norm_back against central differences of sum(dy * y). */
    loom_tensor dyt = mk(LOOM_F32, D, R, 1, 1, dyd);
    loom_tensor dxt = mk(LOOM_F32, D, R, 1, 1, dx);
    set_node(&dxt, LOOM_OP_RMS_NORM_BACK, &xt, &dyt, NULL);
    dxt.p.f[0] = 1e-5f;
    CHECK(run(&dxt, sizeof dx) == LOOM_OK);
    bad = 0;
    for (int r = 0; r < R; r++) {
        double row[D];
        for (int i = 0; i < D; i++)
            row[i] = sd[r + R * i];
        for (int i = 0; i < D; i++) {
            const double h = 1e-6, keep = row[i];
            row[i] = keep + h;
            const double lp = rms_loss(row, dyd + D * r, D, 1e-5f);
            row[i] = keep - h;
            const double lm = rms_loss(row, dyd + D * r, D, 1e-5f);
            row[i] = keep;
            bad += !near(dx[i + D * r], (lp - lm) / (2 * h), 1e-5);
        }
    }
    CHECK_MSG(bad == 0, "rms_norm_back: %d mismatches vs finite difference", bad);
}

/* ---------------- softmax ---------------- */

static void test_softmax(void) {
    /* Plain rows, scale, non-contiguous input. */
    enum { N = 5, M = 4 };
    float sd[N * M], out[N * M];
    fill(sd, N * M, 4.0f);
    loom_tensor s = mk(LOOM_F32, M, N, 1, 1, sd);
    loom_tensor x = transposed(&s); /* [N, M]: x[n, m] = sd[m + M*n] */
    loom_tensor y = mk(LOOM_F32, N, M, 1, 1, out);
    set_node(&y, LOOM_OP_SOFTMAX, &x, NULL, NULL);
    y.p.f[0] = 0.7f;
    CHECK(run(&y, sizeof out) == LOOM_OK);
    int bad = 0;
    for (int m = 0; m < M; m++) {
        double z = 0;
        for (int n = 0; n < N; n++)
            z += exp(0.7f * (double)sd[m + M * n]);
        for (int n = 0; n < N; n++)
            bad += !near(out[n + N * m], exp(0.7f * (double)sd[m + M * n]) / z, 1e-6);
    }
    CHECK_MSG(bad == 0, "softmax: %d mismatches", bad);

    /* Causal with q_offset = 1: row m sees keys n <= m + 1. */
    float cd[N * M], co[N * M];
    fill(cd, N * M, 3.0f);
    loom_tensor cx = mk(LOOM_F32, N, M, 1, 1, cd), cy = mk(LOOM_F32, N, M, 1, 1, co);
    set_node(&cy, LOOM_OP_SOFTMAX, &cx, NULL, NULL);
    cy.p.f[0] = 1.0f;
    cy.p.i[1] = 1;
    cy.p.i[2] = 1;
    CHECK(run(&cy, sizeof co) == LOOM_OK);
    bad = 0;
    for (int m = 0; m < M; m++) {
        double z = 0;
        for (int n = 0; n <= m + 1 && n < N; n++)
            z += exp((double)cd[n + N * m]);
        for (int n = 0; n < N; n++) {
            const double want = n <= m + 1 ? exp((double)cd[n + N * m]) / z : 0.0;
            bad += n <= m + 1 ? !near(co[n + N * m], want, 1e-6) : co[n + N * m] != 0.0f;
        }
    }
    CHECK_MSG(bad == 0, "causal softmax: %d mismatches", bad);

    /* q_offset = -2: rows 0 and 1 are fully masked -> zeros, row 2 sees only key 0. */
    cy.p.i[2] = -2;
    CHECK(run(&cy, sizeof co) == LOOM_OK);
    bad = 0;
    for (int n = 0; n < 2 * N; n++)
        bad += co[n] != 0.0f;
    CHECK_MSG(bad == 0, "fully masked rows must be zero (%d nonzero)", bad);
    CHECK(co[2 * N] == 1.0f && co[2 * N + 1] == 0.0f);
    CHECK(near(co[3 * N] + co[3 * N + 1], 1.0, 1e-7) && co[3 * N + 2] == 0.0f);

    /* softmax_back against central differences of sum(dy * softmax(scale*x)). */
    enum { K = 6 };
    float xv[K], yv[K], dyv[K], dxv[K];
    fill(xv, K, 2.0f);
    fill(dyv, K, 1.0f);
    const float scale = 0.5f;
    loom_tensor tx = mk(LOOM_F32, K, 1, 1, 1, xv), ty = mk(LOOM_F32, K, 1, 1, 1, yv);
    set_node(&ty, LOOM_OP_SOFTMAX, &tx, NULL, NULL);
    ty.p.f[0] = scale;
    CHECK(run(&ty, sizeof yv) == LOOM_OK);
    ty.op = LOOM_OP_NONE;
    loom_tensor tdy = mk(LOOM_F32, K, 1, 1, 1, dyv), tdx = mk(LOOM_F32, K, 1, 1, 1, dxv);
    set_node(&tdx, LOOM_OP_SOFTMAX_BACK, &ty, &tdy, NULL);
    tdx.p.f[0] = scale;
    CHECK(run(&tdx, sizeof dxv) == LOOM_OK);
    bad = 0;
    for (int i = 0; i < K; i++) {
        double l[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            double xs[K], z = 0, acc = 0;
            for (int j = 0; j < K; j++)
                xs[j] = xv[j] + (j == i ? (sgn ? -1e-6 : 1e-6) : 0.0);
            for (int j = 0; j < K; j++)
                z += exp(scale * xs[j]);
            for (int j = 0; j < K; j++)
                acc += dyv[j] * exp(scale * xs[j]) / z;
            l[sgn] = acc;
        }
        /* y is rounded to f32 before the backward, hence the looser tolerance. */
        bad += !near(dxv[i], (l[0] - l[1]) / 2e-6, 1e-5);
    }
    CHECK_MSG(bad == 0, "softmax_back: %d mismatches vs finite difference", bad);
}

/* ---------------- rope ---------------- */

static void rope_set(loom_tensor *y, int n_dims, int mode, float theta, int inverse) {
    memset(&y->p, 0, sizeof y->p);
    y->p.i[0] = n_dims;
    y->p.i[1] = mode;
    y->p.f[2] = theta;
    y->p.i[3] = LOOM_ROPE_SCALING_NONE;
    y->p.i[8] = inverse;
}

/* Expected rope of one head vector by complex multiplication, given inv_freq. */
static void rope_expect(const float *x, int hd, int n_dims, int mode, const double *inv, double pos,
                        double sign, double *out) {
    for (int j = 0; j < hd; j++)
        out[j] = x[j];
    for (int i = 0; i < n_dims / 2; i++) {
        const int ja = mode == LOOM_ROPE_NEOX ? i : 2 * i;
        const int jb = mode == LOOM_ROPE_NEOX ? i + n_dims / 2 : 2 * i + 1;
        const double complex z = (x[ja] + I * x[jb]) * cexp(I * sign * pos * inv[i]);
        out[ja] = creal(z);
        out[jb] = cimag(z);
    }
}

static void test_rope(void) {
    enum { HD = 10, NH = 2, T = 3 };
    /* x as a permuted view: storage [HD, T, NH] viewed as [HD, NH, T]. */
    float sd[HD * T * NH], out[HD * NH * T], back[HD * NH * T];
    fill(sd, HD * T * NH, 1.0f);
    loom_tensor s = mk(LOOM_F32, HD, T, NH, 1, sd);
    const int64_t vne[4] = {HD, NH, T, 1};
    const size_t vnb[4] = {s.nb[0], s.nb[2], s.nb[1], s.nb[3]};
    loom_tensor x = mkview(&s, vne, vnb, 0);
    int32_t posd[T] = {0, 7, 123457};
    loom_tensor pos = mk(LOOM_I32, T, 1, 1, 1, posd);
    loom_tensor y = mk(LOOM_F32, HD, NH, T, 1, out);

    const int modes[2] = {LOOM_ROPE_NORMAL, LOOM_ROPE_NEOX};
    for (int mi = 0; mi < 2; mi++) {
        const int n_dims = 8; /* dims 8, 9 pass through */
        const float theta = 10000.0f;
        double inv[HD / 2];
        for (int i = 0; i < n_dims / 2; i++)
            inv[i] = 1.0 / pow(theta, (2.0 * i) / n_dims);
        set_node(&y, LOOM_OP_ROPE, &x, &pos, NULL);
        rope_set(&y, n_dims, modes[mi], theta, 0);
        CHECK(run(&y, sizeof out) == LOOM_OK);
        int bad = 0;
        for (int t = 0; t < T; t++)
            for (int h = 0; h < NH; h++) {
                float xin[HD];
                double want[HD];
                for (int j = 0; j < HD; j++)
                    xin[j] = sd[j + HD * t + HD * T * h];
                rope_expect(xin, HD, n_dims, modes[mi], inv, posd[t], 1.0, want);
                for (int j = 0; j < HD; j++)
                    bad += !near(out[j + HD * h + HD * NH * t], want[j], 2e-6);
                bad += out[8 + HD * h + HD * NH * t] != xin[8]; /* exact pass-through */
            }
        CHECK_MSG(bad == 0, "rope mode %d: %d mismatches", modes[mi], bad);

        /* inverse rotates by -angle: matches the conjugate rotation, and
         * undoes the forward rotation. */
        loom_tensor yf = mk(LOOM_F32, HD, NH, T, 1, out);
        loom_tensor yb = mk(LOOM_F32, HD, NH, T, 1, back);
        set_node(&yb, LOOM_OP_ROPE, &yf, &pos, NULL);
        rope_set(&yb, n_dims, modes[mi], theta, 1);
        CHECK(run(&yb, sizeof back) == LOOM_OK);
        bad = 0;
        for (int t = 0; t < T; t++)
            for (int h = 0; h < NH; h++) {
                double want[HD];
                rope_expect(out + HD * h + HD * NH * t, HD, n_dims, modes[mi], inv, posd[t], -1.0,
                            want);
                for (int j = 0; j < HD; j++) {
                    bad += !near(back[j + HD * h + HD * NH * t], want[j], 2e-6);
                    bad += !near(back[j + HD * h + HD * NH * t], sd[j + HD * t + HD * T * h], 1e-5);
                }
            }
        CHECK_MSG(bad == 0, "inverse rope mode %d: %d mismatches", modes[mi], bad);
    }

    /* llama3 scaling: n_dims 6, theta 1000 -> inv_freq 1, 0.1, 0.01 with
     * wavelengths 6.28, 62.8, 628. orig_ctx 100, low 1, high 4: the high
     * frequency bound is wavelength 25, the low one 100, so pair 0 is kept,
     * pair 2 is divided by factor 8 and pair 1 is interpolated with
     * smooth = (100/62.83 - 1)/3 = 0.197. */
    {
        float xd[6] = {1, 0, 0.5f, -1, 2, 0.25f}, yd[6];
        int32_t p1[1] = {50};
        loom_tensor xx = mk(LOOM_F32, 6, 1, 1, 1, xd), pp = mk(LOOM_I32, 1, 1, 1, 1, p1);
        loom_tensor yy = mk(LOOM_F32, 6, 1, 1, 1, yd);
        set_node(&yy, LOOM_OP_ROPE, &xx, &pp, NULL);
        rope_set(&yy, 6, LOOM_ROPE_NEOX, 1000.0f, 0);
        yy.p.i[3] = LOOM_ROPE_SCALING_LLAMA3;
        yy.p.f[4] = 8.0f;
        yy.p.f[5] = 1.0f;
        yy.p.f[6] = 4.0f;
        yy.p.i[7] = 100;
        CHECK(run(&yy, sizeof yd) == LOOM_OK);
        const double wl1 = 2 * M_PI / 0.1, smooth = (100.0 / wl1 - 1.0) / 3.0;
        CHECK(smooth > 0.15 && smooth < 0.25);
        const double inv[3] = {1.0, 0.1 * smooth + (1 - smooth) * 0.1 / 8.0, 0.01 / 8.0};
        /* The shared table (loom_rope_freq_table) every kernel reads. */
        loom_rope_params rp;
        loom_rope_params_get(&yy, &rp);
        double tab[3], base[3];
        loom_rope_freq_table(&rp, tab, base);
        for (int i = 0; i < 3; i++)
            CHECK_MSG(near(tab[i], inv[i], 1e-12) && near(base[i], pow(10.0, -i), 1e-12),
                      "rope table %d: %g (want %g), unscaled %g", i, tab[i], inv[i], base[i]);
        double want[6];
        rope_expect(xd, 6, 6, LOOM_ROPE_NEOX, inv, 50.0, 1.0, want);
        int bad = 0;
        for (int j = 0; j < 6; j++)
            bad += !near(yd[j], want[j], 2e-6);
        CHECK_MSG(bad == 0, "llama3 rope: %d mismatches", bad);
        /* Pair 0 (i, i+3) = (x0, x3) = (1, -1) rotated by 50 rad, unscaled. */
        CHECK(near(yd[0], cos(50.0) + sin(50.0), 1e-6));
        CHECK(near(yd[3], sin(50.0) - cos(50.0), 1e-6));
    }
}

/* ---------------- get_rows / get_rows_back ---------------- */

static void test_get_rows(void) {
    enum { D = 32, V = 5 };
    float tab[D * V];
    fill(tab, D * V, 2.0f);
    /* ids [T=2, B=2] as a strided view: every other element of a 1-d array. */
    int32_t idstore[8] = {3, -1, 0, -1, 4, -1, 3, -1};
    loom_tensor ist = mk(LOOM_I32, 8, 1, 1, 1, idstore);
    const int64_t ine[4] = {2, 2, 1, 1};
    const size_t inb[4] = {8, 16, 32, 32};
    loom_tensor ids = mkview(&ist, ine, inb, 0);
    const int want_ids[4] = {3, 0, 4, 3};

    float out[D * 4];
    loom_tensor y = mk(LOOM_F32, D, 2, 2, 1, out);
    loom_tensor t32 = mk(LOOM_F32, D, V, 1, 1, tab);
    set_node(&y, LOOM_OP_GET_ROWS, &t32, &ids, NULL);
    CHECK(run(&y, sizeof out) == LOOM_OK);
    int bad = 0;
    for (int p = 0; p < 4; p++)
        bad += memcmp(out + D * p, tab + D * want_ids[p], D * sizeof(float)) != 0;
    CHECK(bad == 0);

    /* f16 and q8_0 tables: rows equal the converted/dequantized table rows. */
    uint16_t t16[D * V];
    loom_block_q8_0 tq[V];
    for (int i = 0; i < D * V; i++)
        t16[i] = loom_f32_to_f16(tab[i]);
    for (int v = 0; v < V; v++)
        loom_quantize_row(LOOM_Q8_0, tab + D * v, &tq[v], D);
    loom_tensor th = mk(LOOM_F16, D, V, 1, 1, t16), tqq = mk(LOOM_Q8_0, D, V, 1, 1, tq);
    set_node(&y, LOOM_OP_GET_ROWS, &th, &ids, NULL);
    CHECK(run(&y, sizeof out) == LOOM_OK);
    bad = 0;
    for (int p = 0; p < 4; p++)
        for (int d = 0; d < D; d++)
            bad += out[D * p + d] != loom_f16_to_f32(t16[D * want_ids[p] + d]);
    CHECK(bad == 0);
    set_node(&y, LOOM_OP_GET_ROWS, &tqq, &ids, NULL);
    CHECK(run(&y, sizeof out) == LOOM_OK);
    bad = 0;
    for (int p = 0; p < 4; p++) {
        float row[D];
        loom_dequantize_row(LOOM_Q8_0, &tq[want_ids[p]], row, D);
        bad += memcmp(out + D * p, row, sizeof row) != 0;
    }
    CHECK(bad == 0);

    /* An out-of-range id fails with a message naming it, its position and V. */
    idstore[4] = 9; /* position (0, 1) */
    set_node(&y, LOOM_OP_GET_ROWS, &t32, &ids, NULL);
    CHECK(run(&y, sizeof out) == LOOM_ERR_INVALID_ARG);
    CHECK_MSG(strstr(err, "9") && strstr(err, "(0, 1)") && strstr(err, "5"), "message: %s", err);
    idstore[4] = -1;
    CHECK(run(&y, sizeof out) == LOOM_ERR_INVALID_ARG);
    idstore[4] = 4;

    /* get_rows_back: scatter-add; id 3 appears twice, rows 1 and 2 stay zero. */
    float dyd[D * 4], gd[D * V];
    fill(dyd, D * 4, 1.0f);
    loom_tensor dy = mk(LOOM_F32, D, 2, 2, 1, dyd);
    loom_tensor g = mk(LOOM_F32, D, V, 1, 1, gd);
    set_node(&g, LOOM_OP_GET_ROWS_BACK, &dy, &ids, NULL);
    CHECK(run(&g, sizeof gd) == LOOM_OK);
    bad = 0;
    for (int d = 0; d < D; d++) {
        bad += gd[D * 3 + d] != (float)((double)dyd[d] + (double)dyd[D * 3 + d]);
        bad += gd[D * 0 + d] != dyd[D * 1 + d];
        bad += gd[D * 4 + d] != dyd[D * 2 + d];
        bad += gd[D * 1 + d] != 0.0f || gd[D * 2 + d] != 0.0f;
    }
    CHECK_MSG(bad == 0, "get_rows_back: %d mismatches", bad);
    idstore[0] = 5;
    CHECK(run(&g, sizeof gd) == LOOM_ERR_INVALID_ARG);
    idstore[0] = 3;
}

/* ---------------- cross entropy ---------------- */

static double ce_loss(const double *lg, const int32_t *tg, int V, int T) {
    double tot = 0;
    int cnt = 0;
    for (int t = 0; t < T; t++) {
        if (tg[t] < 0) continue;
        double z = 0;
        for (int v = 0; v < V; v++)
            z += exp(lg[v + V * t]);
        tot += -log(exp(lg[tg[t] + V * t]) / z);
        cnt++;
    }
    return cnt ? tot / cnt : 0.0;
}

static void test_cross_entropy(void) {
    enum { V = 4, T = 3 };
    /* Hand case: uniform logits -> loss log(V); row 1 ignored. */
    float u[V * T] = {0};
    int32_t tg[T] = {2, -100, 0};
    float loss[1];
    loom_tensor lt = mk(LOOM_F32, V, T, 1, 1, u), tt = mk(LOOM_I32, T, 1, 1, 1, tg);
    loom_tensor y = mk(LOOM_F32, 1, 1, 1, 1, loss);
    set_node(&y, LOOM_OP_CROSS_ENTROPY, &lt, &tt, NULL);
    CHECK(run(&y, sizeof loss) == LOOM_OK);
    CHECK(near(loss[0], log(4.0), 1e-7));

    float lg[V * T];
    fill(lg, V * T, 3.0f);
    lg[5] = 50.0f; /* ignored row: must not matter */
    loom_tensor l2 = mk(LOOM_F32, V, T, 1, 1, lg);
    set_node(&y, LOOM_OP_CROSS_ENTROPY, &l2, &tt, NULL);
    CHECK(run(&y, sizeof loss) == LOOM_OK);
    double lgd[V * T];
    for (int i = 0; i < V * T; i++)
        lgd[i] = lg[i];
    CHECK(near(loss[0], ce_loss(lgd, tg, V, T), 1e-6));

    /* All rows ignored -> 0; a target >= V is an error. */
    int32_t none[T] = {-1, -100, -5};
    loom_tensor tn = mk(LOOM_I32, T, 1, 1, 1, none);
    set_node(&y, LOOM_OP_CROSS_ENTROPY, &l2, &tn, NULL);
    CHECK(run(&y, sizeof loss) == LOOM_OK && loss[0] == 0.0f);
    int32_t badt[T] = {0, 4, 1};
    loom_tensor tb = mk(LOOM_I32, T, 1, 1, 1, badt);
    set_node(&y, LOOM_OP_CROSS_ENTROPY, &l2, &tb, NULL);
    CHECK(run(&y, sizeof loss) == LOOM_ERR_INVALID_ARG);

    /* cross_entropy_back against central differences of dloss * loss. */
    float dl[1] = {0.75f}, dx[V * T];
    loom_tensor tdl = mk(LOOM_F32, 1, 1, 1, 1, dl), tdx = mk(LOOM_F32, V, T, 1, 1, dx);
    set_node(&tdx, LOOM_OP_CROSS_ENTROPY_BACK, &l2, &tt, &tdl);
    CHECK(run(&tdx, sizeof dx) == LOOM_OK);
    int bad = 0;
    for (int i = 0; i < V * T; i++) {
        const double h = 1e-6, keep = lgd[i];
        lgd[i] = keep + h;
        const double lp = ce_loss(lgd, tg, V, T);
        lgd[i] = keep - h;
        const double lm = ce_loss(lgd, tg, V, T);
        lgd[i] = keep;
        bad += !near(dx[i], 0.75 * (lp - lm) / (2 * h), 1e-5);
    }
    CHECK_MSG(bad == 0, "cross_entropy_back: %d mismatches vs finite difference", bad);
    bad = 0;
    for (int v = 0; v < V; v++)
        bad += dx[v + V * 1] != 0.0f; /* ignored row */
    CHECK(bad == 0);
    set_node(&tdx, LOOM_OP_CROSS_ENTROPY_BACK, &l2, &tb, &tdl);
    CHECK(run(&tdx, sizeof dx) == LOOM_ERR_INVALID_ARG);
}

/* ---------------- supports / dispatch ---------------- */

static void test_supports(void) {
    float f[64];
    loom_tensor a = mk(LOOM_F32, 64, 1, 1, 1, f), b = mk(LOOM_F32, 64, 1, 1, 1, f);
    loom_tensor h = mk(LOOM_F16, 64, 1, 1, 1, f), q = mk(LOOM_Q4_0, 64, 1, 1, 1, f);
    loom_tensor n4 = mk(LOOM_NF4, 64, 1, 1, 1, f), i = mk(LOOM_I32, 64, 1, 1, 1, f);
    loom_tensor y = mk(LOOM_F32, 64, 1, 1, 1, f);
    set_node(&y, LOOM_OP_ADD, &a, &b, NULL);
    CHECK(loom_ref_supports(&y));
    set_node(&y, LOOM_OP_ADD, &a, &h, NULL);
    CHECK(!loom_ref_supports(&y));
    set_node(&y, LOOM_OP_MATMUL, &n4, &h, NULL);
    CHECK(loom_ref_supports(&y));
    set_node(&y, LOOM_OP_MATMUL, &q, &i, NULL);
    CHECK(!loom_ref_supports(&y));
    set_node(&y, LOOM_OP_GET_ROWS, &q, &i, NULL);
    CHECK(loom_ref_supports(&y));
    set_node(&y, LOOM_OP_GET_ROWS, &n4, &i, NULL);
    CHECK(!loom_ref_supports(&y));
    set_node(&y, LOOM_OP_FLASH_ATTN, &a, &h, &h);
    CHECK(loom_ref_supports(&y));
    set_node(&y, LOOM_OP_FLASH_ATTN, &h, &h, &h);
    CHECK(!loom_ref_supports(&y));
    set_node(&y, LOOM_OP_CPY, &q, NULL, NULL);
    CHECK(loom_ref_supports(&y));
    y.op = LOOM_OP_COUNT;
    CHECK(!loom_ref_supports(&y));
    CHECK(loom_ref_compute(&y, 0, 1, err, sizeof err) == LOOM_ERR_UNSUPPORTED && err[0]);
    y.op = LOOM_OP_VIEW;
    CHECK(loom_ref_compute(&y, 0, 1, err, sizeof err) == LOOM_OK);
}

int main(void) {
    test_binary();
    test_pointwise();
    test_cpy();
    test_concat();
    test_sum_to();
    test_rms_norm();
    test_softmax();
    test_rope();
    test_get_rows();
    test_cross_entropy();
    test_supports();
    return test_summary("test_ref_elementwise");
}
