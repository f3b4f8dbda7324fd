/* tests/ir/test_ref_matmul.c - the reference matmul, flash attention and MoE
 * kernels against straightforward loops written here, plus thread-split
 * determinism (nth = 3 must equal nth = 1 bit for bit).
 * Tensors are filled in by hand (no graph) and the kernels called directly. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ref/ref_ops.h"
#include "testing.h"

/* ---------------- helpers ---------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static float frand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void fill_rand(float *p, int64_t n, float amp) {
    for (int64_t i = 0; i < n; i++)
        p[i] = amp * frand();
}

/* A leaf tensor over caller-owned data with canonical contiguous strides
 * (for nf4, as loom's graph lays it out: nb[0] = 1, nb[1] = code bytes of a
 * row; the absmax section follows all the codes). */
static loom_tensor mk(loom_dtype dt, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3,
                      void *data) {
    loom_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = dt;
    t.ne[0] = ne0;
    t.ne[1] = ne1;
    t.ne[2] = ne2;
    t.ne[3] = ne3;
    if (loom_dtype_is_nf4(dt)) {
        t.nb[0] = 1;
        t.nb[1] = (size_t)ne0 / 2;
    } else {
        t.nb[0] = loom_dtype_block_bytes(dt);
        t.nb[1] = t.nb[0] * (size_t)(ne0 / loom_dtype_block_size(dt));
    }
    t.nb[2] = t.nb[1] * (size_t)ne1;
    t.nb[3] = t.nb[2] * (size_t)ne2;
    t.data = data;
    t.backend_id = -1;
    return t;
}

/* A strided view of base: extents ne, byte strides nb (like loom_view). */
static loom_tensor mk_view(loom_tensor *base, const int64_t *ne, const size_t *nb) {
    loom_tensor t = *base;
    t.op = LOOM_OP_VIEW;
    t.view_src = base;
    t.view_offs = 0;
    t.data = NULL;
    for (int i = 0; i < 4; i++) {
        t.ne[i] = ne[i];
        t.nb[i] = nb[i];
    }
    return t;
}

/* Runs all nth shares of a node one after another. */
static loom_status run(loom_status (*fn)(const loom_ref_ctx *), loom_tensor *node, int nth) {
    char err[256] = "";
    for (int ith = 0; ith < nth; ith++) {
        loom_ref_ctx c = {node, ith, nth, err, sizeof err};
        loom_status s = fn(&c);
        if (s != LOOM_OK) {
            fprintf(stderr, "kernel failed: %s\n", err);
            return s;
        }
    }
    return LOOM_OK;
}

/* Max |a - b| / (1 + |b|). */
static double max_rel_err(const float *a, const float *b, int64_t n) {
    double m = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double e = fabs((double)a[i] - (double)b[i]) / (1.0 + fabs((double)b[i]));
        if (!(e <= m)) /* also catches NaN */
            m = isnan(e) ? INFINITY : e;
    }
    return m;
}

/* Stores f32 values as dtype dt (f32/f16/bf16) into dst, and writes back the
 * rounded values to src so a reference loop can use exactly what is stored. */
static void store_float(loom_dtype dt, float *src, void *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (dt == LOOM_F32) {
            ((float *)dst)[i] = src[i];
        } else if (dt == LOOM_F16) {
            ((uint16_t *)dst)[i] = loom_f32_to_f16(src[i]);
            src[i] = loom_f16_to_f32(((uint16_t *)dst)[i]);
        } else {
            ((uint16_t *)dst)[i] = loom_f32_to_bf16(src[i]);
            src[i] = loom_bf16_to_f32(((uint16_t *)dst)[i]);
        }
    }
}

/* Quantizes n weights into a new buffer of dtype dt (any matmul weight dtype)
 * and overwrites w with the dequantized values. Returns the buffer. */
static void *make_weights(loom_dtype dt, float *w, int64_t n) {
    void *q = malloc(loom_dtype_nbytes(dt, n) + 64);
    if (!q) return NULL;
    if (loom_dtype_is_float(dt)) {
        store_float(dt, w, q, n);
    } else if (loom_dtype_is_nf4(dt)) {
        loom_nf4_layout l;
        CHECK(loom_nf4_quantize(dt, w, n, q) == LOOM_OK);
        CHECK(loom_nf4_layout_of(dt, q, n, &l) == LOOM_OK);
        loom_nf4_dequantize(&l, 0, n, w);
    } else {
        CHECK(loom_quantize_row(dt, w, q, n) == LOOM_OK);
        CHECK(loom_dequantize_row(dt, q, w, n) == LOOM_OK);
    }
    return q;
}

/* ---------------- matmul ---------------- */

/* Naive out[n,m,i2,i3] over f32 w (contiguous [K,N,W2,W3]) and x given as a
 * function of logical indices via a dense copy xd [K,M,X2,X3]. */
static void naive_matmul(const float *w, const float *xd, float *out, int64_t K, int64_t N,
                         int64_t W2, int64_t W3, int64_t M, int64_t X2, int64_t X3) {
    for (int64_t i3 = 0; i3 < X3; i3++)
        for (int64_t i2 = 0; i2 < X2; i2++)
            for (int64_t m = 0; m < M; m++)
                for (int64_t n = 0; n < N; n++) {
                    const float *wr = w + ((i3 / (X3 / W3) * W2 + i2 / (X2 / W2)) * N + n) * K;
                    const float *xr = xd + ((i3 * X2 + i2) * M + m) * K;
                    double acc = 0.0;
                    for (int64_t k = 0; k < K; k++)
                        acc += (double)wr[k] * (double)xr[k];
                    out[((i3 * X2 + i2) * M + m) * N + n] = (float)acc;
                }
}

typedef struct mm_case {
    loom_dtype wt, xt;
    int64_t K, N, W2, W3, M, X2, X3;
    int x_layout; /* 0 contiguous, 1 transposed (stored [M,K]), 2 permuted (stored [K,X2,M,X3]) */
} mm_case;

static void test_matmul_case(const mm_case *tc) {
    const int64_t K = tc->K, N = tc->N, M = tc->M, X2 = tc->X2, X3 = tc->X3;
    const int64_t nw = K * N * tc->W2 * tc->W3, nx = K * M * X2 * X3, no = N * M * X2 * X3;
    float *w = malloc(nw * sizeof(float)), *xd = malloc(nx * sizeof(float));
    float *xs = malloc(nx * sizeof(float)), *xstore = malloc(nx * sizeof(float));
    float *want = malloc(no * sizeof(float)), *got1 = malloc(no * sizeof(float));
    float *got3 = malloc(no * sizeof(float));
    CHECK(w && xd && xs && xstore && want && got1 && got3);
    if (!(w && xd && xs && xstore && want && got1 && got3)) return;
    fill_rand(w, nw, 1.0f);
    fill_rand(xd, nx, 1.0f);
    void *wq = make_weights(tc->wt, w, nw);

    /* Lay x out in storage order, convert to its dtype, and read back the
     * rounded values into the dense logical copy xd. */
    const size_t es = loom_dtype_block_bytes(tc->xt);
    int64_t sne[4]; /* storage extents */
    for (int64_t i3 = 0; i3 < X3; i3++)
        for (int64_t i2 = 0; i2 < X2; i2++)
            for (int64_t m = 0; m < M; m++)
                for (int64_t k = 0; k < K; k++) {
                    int64_t s;
                    if (tc->x_layout == 1)
                        s = ((i3 * X2 + i2) * K + k) * M + m;
                    else if (tc->x_layout == 2)
                        s = ((i3 * M + m) * X2 + i2) * K + k;
                    else
                        s = ((i3 * X2 + i2) * M + m) * K + k;
                    xs[s] = xd[((i3 * X2 + i2) * M + m) * K + k];
                }
    store_float(tc->xt, xs, xstore, nx);
    for (int64_t i3 = 0; i3 < X3; i3++)
        for (int64_t i2 = 0; i2 < X2; i2++)
            for (int64_t m = 0; m < M; m++)
                for (int64_t k = 0; k < K; k++) {
                    int64_t s;
                    if (tc->x_layout == 1)
                        s = ((i3 * X2 + i2) * K + k) * M + m;
                    else if (tc->x_layout == 2)
                        s = ((i3 * M + m) * X2 + i2) * K + k;
                    else
                        s = ((i3 * X2 + i2) * M + m) * K + k;
                    xd[((i3 * X2 + i2) * M + m) * K + k] = xs[s];
                }

    loom_tensor wt = mk(tc->wt, K, N, tc->W2, tc->W3, wq);
    loom_tensor xbase, xt;
    if (tc->x_layout == 1) {
        sne[0] = M, sne[1] = K, sne[2] = X2, sne[3] = X3;
        xbase = mk(tc->xt, sne[0], sne[1], sne[2], sne[3], xstore);
        const int64_t ne[4] = {K, M, X2, X3};
        const size_t nb[4] = {xbase.nb[1], xbase.nb[0], xbase.nb[2], xbase.nb[3]};
        xt = mk_view(&xbase, ne, nb);
    } else if (tc->x_layout == 2) {
        sne[0] = K, sne[1] = X2, sne[2] = M, sne[3] = X3;
        xbase = mk(tc->xt, sne[0], sne[1], sne[2], sne[3], xstore);
        const int64_t ne[4] = {K, M, X2, X3};
        const size_t nb[4] = {es, xbase.nb[2], xbase.nb[1], xbase.nb[3]};
        xt = mk_view(&xbase, ne, nb);
    } else {
        xt = mk(tc->xt, K, M, X2, X3, xstore);
    }
    loom_tensor out = mk(LOOM_F32, N, M, X2, X3, got1);
    out.op = LOOM_OP_MATMUL;
    out.src[0] = &wt;
    out.src[1] = &xt;

    naive_matmul(w, xd, want, K, N, tc->W2, tc->W3, M, X2, X3);
    CHECK(run(loom_ref_matmul, &out, 1) == LOOM_OK);
    /* Same values, same summation order in double: exact. */
    CHECK_MSG(memcmp(got1, want, no * sizeof(float)) == 0,
              "matmul w=%s x=%s K=%lld N=%lld M=%lld [%lld/%lld,%lld/%lld] layout %d: err %g",
              loom_dtype_name(tc->wt), loom_dtype_name(tc->xt), (long long)K, (long long)N,
              (long long)M, (long long)X2, (long long)tc->W2, (long long)X3, (long long)tc->W3,
              tc->x_layout, max_rel_err(got1, want, no));

    out.data = got3;
    memset(got3, 0xff, no * sizeof(float));
    CHECK(run(loom_ref_matmul, &out, 3) == LOOM_OK);
    CHECK(memcmp(got1, got3, no * sizeof(float)) == 0);

    free(w), free(xd), free(xs), free(xstore), free(want), free(got1), free(got3), free(wq);
}

static void test_matmul(void) {
    static const mm_case cases[] = {
        /* float weights, odd sizes */
        {LOOM_F32, LOOM_F32, 33, 7, 1, 1, 5, 1, 1, 0},
        {LOOM_F32, LOOM_F32, 1, 1, 1, 1, 1, 1, 1, 0},
        {LOOM_F32, LOOM_F32, 70, 37, 1, 1, 3, 1, 1, 0}, /* M < tile, N not a multiple of 3 */
        {LOOM_F32, LOOM_F32, 9, 5, 1, 1, 45, 1, 1, 0},  /* M spans two tiles */
        /* non-contiguous activations */
        {LOOM_F32, LOOM_F32, 17, 6, 1, 1, 11, 1, 1, 1},
        {LOOM_F32, LOOM_F32, 19, 5, 2, 1, 3, 4, 2, 2},
        /* broadcasting (GQA-style) */
        {LOOM_F32, LOOM_F32, 13, 6, 1, 1, 3, 4, 1, 0},
        {LOOM_F32, LOOM_F32, 13, 6, 2, 1, 3, 8, 1, 0},
        {LOOM_F32, LOOM_F32, 8, 3, 2, 1, 2, 4, 3, 0},
        {LOOM_F32, LOOM_F32, 8, 3, 2, 3, 2, 4, 3, 1},
        {LOOM_F32, LOOM_F32, 8, 3, 2, 2, 2, 4, 4, 2},
        /* f16 / bf16 weights and activations */
        {LOOM_F16, LOOM_F32, 31, 9, 1, 1, 4, 1, 1, 0},
        {LOOM_BF16, LOOM_F32, 31, 9, 1, 1, 4, 1, 1, 0},
        {LOOM_F32, LOOM_F16, 31, 9, 1, 1, 4, 1, 1, 1},
        {LOOM_F16, LOOM_BF16, 24, 5, 2, 1, 3, 4, 1, 2},
        {LOOM_BF16, LOOM_F16, 24, 5, 1, 1, 3, 2, 1, 0},
        /* quantized weights */
        {LOOM_Q8_0, LOOM_F32, 64, 9, 1, 1, 5, 1, 1, 0},
        {LOOM_Q4_0, LOOM_F32, 96, 7, 1, 1, 5, 1, 1, 0},
        {LOOM_Q8_0, LOOM_F16, 32, 4, 2, 1, 3, 4, 1, 1},
        {LOOM_Q4_0, LOOM_BF16, 32, 4, 1, 1, 3, 2, 1, 2},
        {LOOM_NF4, LOOM_F32, 128, 6, 1, 1, 5, 1, 1, 0},
        {LOOM_NF4_DQ, LOOM_F32, 128, 6, 1, 1, 5, 1, 1, 0},
        {LOOM_NF4, LOOM_F32, 96, 4, 2, 1, 3, 4, 1, 0},     /* rows straddle nf4 blocks */
        {LOOM_NF4_DQ, LOOM_F16, 64, 40, 2, 2, 3, 2, 2, 1}, /* > 256 absmax values */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        test_matmul_case(&cases[i]);
}

/* Shape errors and the dispatcher path. */
static void test_matmul_errors(void) {
    float w[6 * 4] = {0}, x[6 * 2] = {0}, o[4 * 2];
    loom_tensor wt = mk(LOOM_F32, 6, 4, 1, 1, w), xt = mk(LOOM_F32, 5, 2, 1, 1, x);
    loom_tensor out = mk(LOOM_F32, 4, 2, 1, 1, o);
    out.op = LOOM_OP_MATMUL;
    out.src[0] = &wt;
    out.src[1] = &xt;
    char err[128] = "";
    loom_ref_ctx c = {&out, 0, 1, err, sizeof err};
    CHECK(loom_ref_matmul(&c) == LOOM_ERR_INVALID_ARG); /* K mismatch */
    CHECK(err[0] != '\0');

    xt = mk(LOOM_F32, 6, 2, 1, 1, x);
    for (int i = 0; i < 12; i++)
        x[i] = (float)i;
    for (int i = 0; i < 24; i++)
        w[i] = (float)(i % 5) - 2.0f;
    CHECK(loom_ref_compute(&out, 0, 1, err, sizeof err) == LOOM_OK);
    /* out[1,0] = sum_k w[k,1] * k, w[k,1] = ((6 + k) % 5) - 2 */
    double want = 0;
    for (int k = 0; k < 6; k++)
        want += (((6 + k) % 5) - 2.0) * k;
    CHECK(o[1] == (float)want);
}

/* ---------------- flash attention ---------------- */

/* Dense two-pass softmax(q k^T * scale + mask) v over logical float arrays
 * q [D,Tq,Hq,B], k/v [D,Tk,Hkv,B]; out [D,Hq,Tq,B]. */
static void naive_attn(const float *q, const float *k, const float *v, float *out, int64_t D,
                       int64_t Tq, int64_t Tk, int64_t Hq, int64_t Hkv, int64_t B, float scale,
                       int causal, int64_t q_offset) {
    double *s = malloc((size_t)Tk * sizeof(double));
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < Hq; h++)
            for (int64_t t = 0; t < Tq; t++) {
                const int64_t hk = h / (Hq / Hkv);
                const float *qr = q + ((b * Hq + h) * Tq + t) * D;
                double mx = -INFINITY;
                for (int64_t j = 0; j < Tk; j++) {
                    const float *kr = k + ((b * Hkv + hk) * Tk + j) * D;
                    double dot = 0;
                    for (int64_t d = 0; d < D; d++)
                        dot += (double)qr[d] * kr[d];
                    s[j] = (causal && j > t + q_offset) ? -INFINITY : dot * scale;
                    if (s[j] > mx) mx = s[j];
                }
                float *o = out + ((b * Tq + t) * Hq + h) * D;
                if (mx == -INFINITY) {
                    for (int64_t d = 0; d < D; d++)
                        o[d] = 0.0f;
                    continue;
                }
                double sum = 0;
                for (int64_t j = 0; j < Tk; j++) {
                    s[j] = exp(s[j] - mx); /* masked: exp(-inf) = 0 */
                    sum += s[j];
                }
                for (int64_t d = 0; d < D; d++) {
                    double acc = 0;
                    for (int64_t j = 0; j < Tk; j++)
                        acc += s[j] / sum * v[((b * Hkv + hk) * Tk + j) * D + d];
                    o[d] = (float)acc;
                }
            }
    free(s);
}

typedef struct attn_case {
    int64_t D, Tq, Tk, Hq, Hkv, B;
    int causal;
    int32_t q_offset;
    loom_dtype kvt;
} attn_case;

static void test_attn_case(const attn_case *tc) {
    const int64_t D = tc->D, Tq = tc->Tq, Tk = tc->Tk, Hq = tc->Hq, Hkv = tc->Hkv, B = tc->B;
    const int64_t nq = D * Tq * Hq * B, nk = D * Tk * Hkv * B, no = D * Hq * Tq * B;
    const float scale = 1.0f / sqrtf((float)D);
    /* Logical (dense [D,T,H,B]) copies for the naive loop, storage in the
     * KV-cache layout [D,H,T,B] viewed as [D,T,H,B], as models do. */
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nk * 4);
    float *qs = malloc(nq * 4), *ks = malloc(nk * 4), *vs = malloc(nk * 4);
    void *kst = malloc(nk * 4), *vst = malloc(nk * 4);
    float *want = malloc(no * 4), *got1 = malloc(no * 4), *got3 = malloc(no * 4);
    fill_rand(q, nq, 2.0f);
    fill_rand(k, nk, 2.0f);
    fill_rand(v, nk, 1.0f);
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < Tq; t++)
            for (int64_t h = 0; h < Hq; h++)
                memcpy(qs + ((b * Tq + t) * Hq + h) * D, q + ((b * Hq + h) * Tq + t) * D, D * 4);
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < Tk; t++)
            for (int64_t h = 0; h < Hkv; h++) {
                memcpy(ks + ((b * Tk + t) * Hkv + h) * D, k + ((b * Hkv + h) * Tk + t) * D, D * 4);
                memcpy(vs + ((b * Tk + t) * Hkv + h) * D, v + ((b * Hkv + h) * Tk + t) * D, D * 4);
            }
    store_float(tc->kvt, ks, kst, nk);
    store_float(tc->kvt, vs, vst, nk);
    for (int64_t b = 0; b < B; b++) /* rounded values back into the logical copies */
        for (int64_t t = 0; t < Tk; t++)
            for (int64_t h = 0; h < Hkv; h++) {
                memcpy(k + ((b * Hkv + h) * Tk + t) * D, ks + ((b * Tk + t) * Hkv + h) * D, D * 4);
                memcpy(v + ((b * Hkv + h) * Tk + t) * D, vs + ((b * Tk + t) * Hkv + h) * D, D * 4);
            }

    loom_tensor qb = mk(LOOM_F32, D, Hq, Tq, B, qs);
    loom_tensor kb = mk(tc->kvt, D, Hkv, Tk, B, kst);
    loom_tensor vb = mk(tc->kvt, D, Hkv, Tk, B, vst);
    const int64_t qne[4] = {D, Tq, Hq, B}, kne[4] = {D, Tk, Hkv, B};
    const size_t qnb[4] = {qb.nb[0], qb.nb[2], qb.nb[1], qb.nb[3]};
    const size_t knb[4] = {kb.nb[0], kb.nb[2], kb.nb[1], kb.nb[3]};
    loom_tensor qt = mk_view(&qb, qne, qnb), kt = mk_view(&kb, kne, knb);
    loom_tensor vt = mk_view(&vb, kne, knb);
    loom_tensor out = mk(LOOM_F32, D, Hq, Tq, B, got1);
    out.op = LOOM_OP_FLASH_ATTN;
    out.src[0] = &qt;
    out.src[1] = &kt;
    out.src[2] = &vt;
    out.p.f[0] = scale;
    out.p.i[1] = tc->causal;
    out.p.i[2] = tc->q_offset;

    naive_attn(q, k, v, want, D, Tq, Tk, Hq, Hkv, B, scale, tc->causal, tc->q_offset);
    CHECK(run(loom_ref_flash_attn, &out, 1) == LOOM_OK);
    const double err = max_rel_err(got1, want, no);
    CHECK_MSG(err < 1e-6, "attn D=%lld Tq=%lld Tk=%lld Hq=%lld Hkv=%lld causal=%d off=%d: err %g",
              (long long)D, (long long)Tq, (long long)Tk, (long long)Hq, (long long)Hkv, tc->causal,
              (int)tc->q_offset, err);

    out.data = got3;
    memset(got3, 0xff, no * 4);
    CHECK(run(loom_ref_flash_attn, &out, 3) == LOOM_OK);
    CHECK(memcmp(got1, got3, no * 4) == 0);

    free(q), free(k), free(v), free(qs), free(ks), free(vs), free(kst), free(vst);
    free(want), free(got1), free(got3);
}

static void test_attn(void) {
    static const attn_case cases[] = {
        {64, 5, 5, 4, 4, 1, 1, 0, LOOM_F32},    /* GQA 1, causal prefill */
        {64, 6, 6, 8, 2, 2, 1, 0, LOOM_F32},    /* GQA 4, batch 2 */
        {128, 3, 3, 8, 1, 1, 1, 0, LOOM_F32},   /* GQA 8, head_dim 128 */
        {64, 1, 17, 8, 2, 1, 1, 16, LOOM_F32},  /* KV-cache decode */
        {128, 1, 17, 4, 1, 2, 1, 16, LOOM_F16}, /* decode over an f16 cache */
        {64, 4, 9, 4, 1, 1, 1, 5, LOOM_F16},    /* chunked prefill after a prefix */
        {64, 3, 11, 4, 2, 1, 0, 0, LOOM_F32},   /* non-causal (encoder / cross) */
        {128, 4, 7, 8, 8, 1, 0, 0, LOOM_F16},
        /* The graph rejects a negative q_offset, but the kernel defines it:
         * the first queries see no key and output zeros. */
        {64, 4, 4, 2, 1, 1, 1, -2, LOOM_F32},
        {64, 2, 3, 2, 2, 1, 1, 5, LOOM_F32}, /* offset past Tk: every key visible */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        test_attn_case(&cases[i]);
}

/* ---------------- MoE ---------------- */

/* Softmax over all E logits, keep the top k (stable: ties -> lower index),
 * renormalise: Mixtral's formulation, a different route to the same gates. */
static void naive_gates(const float *l, int64_t E, int64_t k, double *g) {
    double mx = -INFINITY, sum = 0;
    for (int64_t e = 0; e < E; e++)
        mx = l[e] > mx ? l[e] : mx;
    for (int64_t e = 0; e < E; e++) {
        g[e] = exp(l[e] - mx);
        sum += g[e];
    }
    for (int64_t e = 0; e < E; e++)
        g[e] /= sum;
    double kept = 0;
    for (int64_t e = 0; e < E; e++) {
        int64_t rank = 0; /* experts that beat e */
        for (int64_t o = 0; o < E; o++)
            if (l[o] > l[e] || (l[o] == l[e] && o < e)) rank++;
        if (rank >= k) g[e] = 0;
        kept += g[e];
    }
    for (int64_t e = 0; e < E; e++)
        g[e] /= kept;
}

static void test_moe_gate(void) {
    /* Ties go to the lower expert index. */
    float l[2 * 5] = {1, 3, 3, 2, 3, /* token 1: all equal */ 0, 0, 0, 0, 0};
    float g[10];
    loom_tensor lt = mk(LOOM_F32, 5, 2, 1, 1, l), out = mk(LOOM_F32, 5, 2, 1, 1, g);
    out.op = LOOM_OP_MOE_GATE;
    out.src[0] = &lt;
    out.p.i[0] = 1;
    CHECK(run(loom_ref_moe_gate, &out, 1) == LOOM_OK);
    CHECK(g[0] == 0 && g[1] == 1.0f && g[2] == 0 && g[3] == 0 && g[4] == 0);
    CHECK(g[5] == 1.0f && g[6] == 0 && g[7] == 0 && g[8] == 0 && g[9] == 0);
    out.p.i[0] = 2;
    CHECK(run(loom_ref_moe_gate, &out, 1) == LOOM_OK);
    CHECK(g[0] == 0 && g[1] == 0.5f && g[2] == 0.5f && g[3] == 0 && g[4] == 0);
    CHECK(g[5] == 0.5f && g[6] == 0.5f && g[7] == 0 && g[8] == 0 && g[9] == 0);
    out.p.i[0] = 3;
    CHECK(run(loom_ref_moe_gate, &out, 1) == LOOM_OK);
    CHECK(g[0] == 0 && g[1] == g[2] && g[2] == g[4] && g[3] == 0);
    CHECK(fabsf(g[1] - 1.0f / 3.0f) < 1e-7f);
    CHECK(g[5] == g[6] && g[6] == g[7] && g[8] == 0 && g[9] == 0);
    char err[128] = "";
    loom_ref_ctx c = {&out, 0, 1, err, sizeof err};
    out.p.i[0] = 0;
    CHECK(loom_ref_moe_gate(&c) == LOOM_ERR_INVALID_ARG && err[0] != '\0');
    out.p.i[0] = 6;
    CHECK(loom_ref_moe_gate(&c) == LOOM_ERR_INVALID_ARG);
    out.p.i[0] = 5; /* k = E: plain softmax */
    CHECK(run(loom_ref_moe_gate, &out, 1) == LOOM_OK);
    CHECK(fabsf(g[0] + g[1] + g[2] + g[3] + g[4] - 1.0f) < 1e-6f && g[0] > 0);

    /* Random logits against the Mixtral formulation, k = 1, 2, 3. */
    enum { E = 8, T = 13 };
    float rl[E * T], rg1[E * T], rg3[E * T];
    fill_rand(rl, E * T, 3.0f);
    loom_tensor rlt = mk(LOOM_F32, E, T, 1, 1, rl), ro = mk(LOOM_F32, E, T, 1, 1, rg1);
    ro.op = LOOM_OP_MOE_GATE;
    ro.src[0] = &rlt;
    for (int k = 1; k <= 3; k++) {
        ro.p.i[0] = k;
        ro.data = rg1;
        CHECK(run(loom_ref_moe_gate, &ro, 1) == LOOM_OK);
        ro.data = rg3;
        CHECK(run(loom_ref_moe_gate, &ro, 3) == LOOM_OK);
        CHECK(memcmp(rg1, rg3, sizeof rg1) == 0);
        double gerr = 0;
        int nz_ok = 1;
        for (int t = 0; t < T; t++) {
            double w[E];
            naive_gates(rl + t * E, E, k, w);
            int nz = 0;
            for (int e = 0; e < E; e++) {
                gerr = fmax(gerr, fabs(w[e] - rg1[t * E + e]));
                nz += rg1[t * E + e] != 0;
            }
            nz_ok &= nz == k;
        }
        CHECK_MSG(gerr < 1e-7, "moe_gate k=%d err %g", k, gerr);
        CHECK(nz_ok);
    }
}

static void test_moe_gate_back(void) {
    enum { E = 8, T = 6 };
    float l[E * T], r[E * T], g[E * T], dl[E * T], dl3[E * T], lp[E * T], gp[E * T];
    /* Well-separated logits so a +-h step never changes the selection. */
    for (int t = 0; t < T; t++)
        for (int e = 0; e < E; e++)
            l[t * E + e] = (float)((e * 5 + t * 3) % E) * 0.4f + 0.1f * frand();
    fill_rand(r, E * T, 1.0f);
    for (int k = 1; k <= 3; k++) {
        loom_tensor lt = mk(LOOM_F32, E, T, 1, 1, l), gt = mk(LOOM_F32, E, T, 1, 1, g);
        gt.op = LOOM_OP_MOE_GATE;
        gt.src[0] = &lt;
        gt.p.i[0] = k;
        CHECK(run(loom_ref_moe_gate, &gt, 1) == LOOM_OK);
        loom_tensor rt = mk(LOOM_F32, E, T, 1, 1, r), bt = mk(LOOM_F32, E, T, 1, 1, dl);
        bt.op = LOOM_OP_MOE_GATE_BACK;
        bt.src[0] = &gt;
        bt.src[1] = &rt;
        CHECK(run(loom_ref_moe_gate_back, &bt, 1) == LOOM_OK);
        bt.data = dl3;
        CHECK(run(loom_ref_moe_gate_back, &bt, 3) == LOOM_OK);
        CHECK(memcmp(dl, dl3, sizeof dl) == 0);

        /* Central difference of f(l) = sum(gates(l) * r), one logit at a time. */
        const float h = 1e-2f;
        double err = 0;
        loom_tensor lpt = mk(LOOM_F32, E, T, 1, 1, lp), gpt = mk(LOOM_F32, E, T, 1, 1, gp);
        gpt.op = LOOM_OP_MOE_GATE;
        gpt.src[0] = &lpt;
        gpt.p.i[0] = k;
        for (int i = 0; i < E * T; i++) {
            const float lo = l[i] - h, hi = l[i] + h; /* the steps actually taken */
            double f[2];
            for (int sgn = 0; sgn < 2; sgn++) {
                memcpy(lp, l, sizeof l);
                lp[i] = sgn ? lo : hi;
                run(loom_ref_moe_gate, &gpt, 1);
                double s = 0;
                for (int j = 0; j < E * T; j++)
                    s += (double)gp[j] * r[j];
                f[sgn] = s;
            }
            const double fd = (f[0] - f[1]) / ((double)hi - (double)lo);
            err = fmax(err, fabs(fd - dl[i]));
            if (g[i] == 0) CHECK(dl[i] == 0.0f);
        }
        CHECK_MSG(err < 2e-4, "moe_gate_back k=%d: max |fd - analytic| = %g", k, err);
    }
}

typedef struct moe_case {
    loom_dtype wt;
    int64_t Dm, F, E, T, k;
} moe_case;

static void test_moe_case(const moe_case *tc) {
    const int64_t Dm = tc->Dm, F = tc->F, E = tc->E, T = tc->T, k = tc->k;
    const int64_t ngu = Dm * F * E;
    float *x = malloc(Dm * T * 4), *l = malloc(E * T * 4);
    float *wg = malloc(ngu * 4), *wu = malloc(ngu * 4), *wd = malloc(ngu * 4);
    float *want = malloc(Dm * T * 4), *got1 = malloc(Dm * T * 4), *got3 = malloc(Dm * T * 4);
    fill_rand(x, Dm * T, 1.0f);
    fill_rand(l, E * T, 2.0f);
    fill_rand(wg, ngu, 0.3f);
    fill_rand(wu, ngu, 0.3f);
    fill_rand(wd, ngu, 0.3f);
    void *qg = make_weights(tc->wt, wg, ngu), *qu = make_weights(tc->wt, wu, ngu);
    void *qd = make_weights(tc->wt, wd, ngu);

    /* Per token, every expert with a nonzero gate, in expert order. */
    double *g = malloc(E * sizeof(double)), *hv = malloc(F * sizeof(double));
    for (int64_t t = 0; t < T; t++) {
        naive_gates(l + t * E, E, k, g);
        for (int64_t d = 0; d < Dm; d++)
            want[t * Dm + d] = 0;
        double *y = calloc((size_t)(Dm > 0 ? Dm : 1), sizeof(double));
        for (int64_t e = 0; e < E; e++) {
            if (g[e] == 0) continue;
            for (int64_t f = 0; f < F; f++) {
                double a = 0, b = 0;
                for (int64_t d = 0; d < Dm; d++) {
                    a += (double)wg[(e * F + f) * Dm + d] * x[t * Dm + d];
                    b += (double)wu[(e * F + f) * Dm + d] * x[t * Dm + d];
                }
                hv[f] = a / (1 + exp(-a)) * b;
            }
            for (int64_t d = 0; d < Dm; d++) {
                double s = 0;
                for (int64_t f = 0; f < F; f++)
                    s += (double)wd[(e * Dm + d) * F + f] * hv[f];
                y[d] += g[e] * s;
            }
        }
        for (int64_t d = 0; d < Dm; d++)
            want[t * Dm + d] = (float)y[d];
        free(y);
    }

    loom_tensor xt = mk(LOOM_F32, Dm, T, 1, 1, x), lt = mk(LOOM_F32, E, T, 1, 1, l);
    loom_tensor gt = mk(tc->wt, Dm, F, E, 1, qg), ut = mk(tc->wt, Dm, F, E, 1, qu);
    loom_tensor dt = mk(tc->wt, F, Dm, E, 1, qd);
    loom_tensor out = mk(LOOM_F32, Dm, T, 1, 1, got1);
    out.op = LOOM_OP_MOE;
    out.src[0] = &xt;
    out.src[1] = &lt;
    out.src[2] = &gt;
    out.src[3] = &ut;
    out.src[4] = &dt;
    out.p.i[0] = (int32_t)k;
    CHECK(run(loom_ref_moe, &out, 1) == LOOM_OK);
    const double err = max_rel_err(got1, want, Dm * T);
    CHECK_MSG(err < 1e-6, "moe %s Dm=%lld F=%lld E=%lld k=%lld: err %g", loom_dtype_name(tc->wt),
              (long long)Dm, (long long)F, (long long)E, (long long)k, err);
    out.data = got3;
    CHECK(run(loom_ref_moe, &out, 3) == LOOM_OK);
    CHECK(memcmp(got1, got3, Dm * T * 4) == 0);

    free(x), free(l), free(wg), free(wu), free(wd), free(want), free(got1), free(got3);
    free(qg), free(qu), free(qd), free(g), free(hv);
}

static void test_moe(void) {
    static const moe_case cases[] = {
        {LOOM_F32, 12, 20, 4, 5, 2},  {LOOM_F32, 7, 9, 8, 4, 1},    {LOOM_F32, 8, 5, 3, 2, 3},
        {LOOM_F16, 16, 24, 4, 3, 2},  {LOOM_BF16, 16, 24, 4, 3, 2}, {LOOM_Q8_0, 64, 96, 4, 4, 2},
        {LOOM_Q4_0, 32, 64, 8, 5, 2}, {LOOM_NF4, 64, 96, 4, 4, 2},  {LOOM_NF4_DQ, 64, 128, 8, 3, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        test_moe_case(&cases[i]);
}

int main(void) {
    test_matmul();
    test_matmul_errors();
    test_attn();
    test_moe_gate();
    test_moe_gate_back();
    test_moe();
    return test_summary("test_ref_matmul");
}
