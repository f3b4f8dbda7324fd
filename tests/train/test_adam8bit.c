/* tests/train/test_adam8bit.c - 8-bit AdamW (train/adam8bit.c) against the
 * numpy replay of bitsandbytes' algorithm (scripts/gen_adam8bit_golden.py ->
 * tests/train/data/adam8bit_golden.bin), the quantizer's error bound, bad
 * arguments, and 8-bit vs f32 AdamW on a quadratic. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/dtype.h"
#include "testing.h"
#include "train/adam8bit.h"

static unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

typedef struct {
    const unsigned char *p, *end;
} cur;

static const void *take(cur *c, size_t n) {
    if ((size_t)(c->end - c->p) < n) return NULL;
    const void *r = c->p;
    c->p += n;
    return r;
}

static void test_golden(void) {
    const char *src = getenv("LOOM_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/train/data/adam8bit_golden.bin", src ? src : ".");
    size_t len = 0;
    unsigned char *buf = read_all(path, &len);
    CHECK_MSG(buf != NULL, "cannot read %s (set LOOM_SOURCE_DIR)", path);
    if (!buf) return;
    cur c = {buf, buf + len};
    const char *magic = take(&c, 8);
    CHECK(magic && !memcmp(magic, "LA8GOLD1", 8));
    uint32_t hdr[2];
    memcpy(hdr, take(&c, 8), 8);
    int n = (int)hdr[0], steps = (int)hdr[1], nb = (n + 255) / 256;
    float hpv[5];
    memcpy(hpv, take(&c, 20), 20);
    loom_adam8_hparams hp = {hpv[0], hpv[1], hpv[2], hpv[3], hpv[4]};
    const float *umap = take(&c, 256 * 4);

    loom_adam8_state st;
    CHECK(loom_adam8_state_init(&st, n) == LOOM_OK);
    CHECK_MSG(umap && !memcmp(st.umap, umap, sizeof st.umap),
              "create_dynamic_map(signed=False) differs from bitsandbytes' replay");
    float *p = malloc(sizeof(float) * (size_t)n), *g = malloc(sizeof(float) * (size_t)n);
    memcpy(p, take(&c, 4 * (size_t)n), 4 * (size_t)n);
    for (int t = 1; t <= steps; t++) {
        memcpy(g, take(&c, 4 * (size_t)n), 4 * (size_t)n);
        const float *ep = take(&c, 4 * (size_t)n);
        const uint8_t *em = take(&c, (size_t)n), *ev = take(&c, (size_t)n);
        const float *eam = take(&c, 4 * (size_t)nb), *eav = take(&c, 4 * (size_t)nb);
        if (!eav) break;
        CHECK(loom_adam8_step(&st, &hp, t, p, g) == LOOM_OK);
        int bad_p = 0, bad_m = 0, bad_v = 0, bad_a = 0;
        for (int i = 0; i < n; i++) {
            bad_p += memcmp(&p[i], &ep[i], 4) != 0;
            bad_m += st.m_code[i] != em[i];
            bad_v += st.v_code[i] != ev[i];
        }
        for (int b = 0; b < nb; b++)
            bad_a += memcmp(&st.m_absmax[b], &eam[b], 4) != 0 ||
                     memcmp(&st.v_absmax[b], &eav[b], 4) != 0;
        CHECK_MSG(bad_p + bad_m + bad_v + bad_a == 0,
                  "step %d: %d params, %d m codes, %d v codes, %d absmax blocks differ from "
                  "the bitsandbytes replay",
                  t, bad_p, bad_m, bad_v, bad_a);
    }
    CHECK(c.p == c.end);
    /* Block 3 starts with 40 gradients that are zero at every step: their
     * momentum is exactly 0 and must stay on the map's 0 entry. */
    CHECK(loom_nf4_dq_code[st.m_code[768]] == 0.0f);
    free(p);
    free(g);
    loom_adam8_state_free(&st);
    free(buf);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* splitmix64 -> [-1, 1) */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void test_quantize_bound(void) {
    enum { N = 256 * 3 + 17 };
    float x[N], y[N], umap[256];
    uint8_t q[N];
    float am[4];
    for (int i = 0; i < N; i++)
        x[i] = frand() * (i < 256 ? 1.0f : i < 512 ? 1e-3f : 50.0f);
    x[600] = 0;
    CHECK(loom_adam8_quantize(loom_nf4_dq_code, x, N, q, am) == LOOM_OK);
    loom_adam8_dequantize(loom_nf4_dq_code, q, am, N, y);
    /* The widest gap of the signed map is 0.0140625 (between means of the top
     * decade): half of it bounds the error relative to the block's absmax. */
    int worst = 0;
    for (int i = 0; i < N; i++)
        worst += fabsf(x[i] - y[i]) > 0.00704f * am[i / 256];
    CHECK_MSG(worst == 0, "%d elements off by more than half a map step", worst);
    CHECK(y[600] == 0.0f);
    CHECK(am[1] <= 1e-3f && am[1] > 0.9e-3f);
    /* Each block's absmax element round-trips exactly (code 1.0). */
    loom_adam8_unsigned_map(umap);
    CHECK(umap[0] == 0.0f && umap[255] == 1.0f);
    for (int i = 0; i < N; i++)
        x[i] = fabsf(x[i]);
    CHECK(loom_adam8_quantize(umap, x, N, q, am) == LOOM_OK);
    int at_one = 0;
    for (int i = 0; i < N; i++)
        at_one += x[i] == am[i / 256] && q[i] == 255;
    CHECK(at_one >= 4);
    float nanv[3] = {1, NAN, 2};
    CHECK(loom_adam8_quantize(umap, nanv, 3, q, am) == LOOM_ERR_INVALID_ARG);
}

static void test_bad_args(void) {
    loom_adam8_state st;
    CHECK(loom_adam8_state_init(&st, 0) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_adam8_state_init(&st, 10) == LOOM_OK);
    float p[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, g[10] = {0}, p0[10];
    memcpy(p0, p, sizeof p);
    loom_adam8_hparams h = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f};
    CHECK(loom_adam8_step(&st, &h, 0, p, g) == LOOM_ERR_INVALID_ARG);
    g[3] = INFINITY;
    CHECK(loom_adam8_step(&st, &h, 1, p, g) == LOOM_ERR_INVALID_ARG);
    g[3] = 0;
    h.beta1 = 1.0f;
    CHECK(loom_adam8_step(&st, &h, 1, p, g) == LOOM_ERR_INVALID_ARG);
    h.beta1 = 0.9f;
    h.eps = 0;
    CHECK(loom_adam8_step(&st, &h, 1, p, g) == LOOM_ERR_INVALID_ARG);
    CHECK(!memcmp(p, p0, sizeof p));
    loom_adam8_state_free(&st);
    loom_adam8_state_free(&st); /* idempotent */
}

/* f(x) = 1/2 sum a_i (x_i - c_i)^2 with curvatures 0.1..10: both optimizers
 * must converge, and 8-bit must track f32 (the paper's claim: same result). */
static void test_quadratic(void) {
    enum { N = 5000, STEPS = 1500 };
    float *a = malloc(N * sizeof(float)), *c = malloc(N * sizeof(float));
    float *x8 = malloc(N * sizeof(float)), *x32 = malloc(N * sizeof(float));
    float *g = malloc(N * sizeof(float)), *m = calloc(N, sizeof(float)),
          *v = calloc(N, sizeof(float));
    for (int i = 0; i < N; i++) {
        a[i] = powf(10.0f, frand());
        c[i] = frand() * 3.0f;
        x8[i] = x32[i] = 0.0f;
    }
    double f0 = 0;
    for (int i = 0; i < N; i++)
        f0 += 0.5 * a[i] * c[i] * c[i];
    loom_adam8_state st;
    CHECK(loom_adam8_state_init(&st, N) == LOOM_OK);
    loom_adam8_hparams h = {2e-2f, 0.9f, 0.999f, 1e-8f, 0.0f};
    for (int t = 1; t <= STEPS; t++) {
        float lr = t > STEPS / 2 ? 2e-3f : 2e-2f; /* a decay, as a schedule would */
        h.lr = lr;
        for (int i = 0; i < N; i++)
            g[i] = a[i] * (x8[i] - c[i]);
        CHECK(t > 1 || loom_adam8_step(&st, &h, t, x8, g) == LOOM_OK);
        if (t > 1) loom_adam8_step(&st, &h, t, x8, g);
        for (int i = 0; i < N; i++)
            g[i] = a[i] * (x32[i] - c[i]);
        loom_adam8_f32_step(&h, t, N, x32, g, m, v);
    }
    double f8 = 0, f32v = 0, d2 = 0, c2 = 0;
    for (int i = 0; i < N; i++) {
        f8 += 0.5 * a[i] * (x8[i] - c[i]) * (x8[i] - c[i]);
        f32v += 0.5 * a[i] * (x32[i] - c[i]) * (x32[i] - c[i]);
        d2 += (double)(x8[i] - x32[i]) * (x8[i] - x32[i]);
        c2 += (double)c[i] * c[i];
    }
    printf("quadratic: f0 %.4g, f32 AdamW %.4g, 8-bit AdamW %.4g, |x8-x32|/|c| %.3g\n", f0, f32v,
           f8, sqrt(d2 / c2));
    CHECK(f32v < 1e-3 * f0);
    CHECK(f8 < 1e-3 * f0);
    CHECK(sqrt(d2 / c2) < 0.02);
    loom_adam8_state_free(&st);
    free(a), free(c), free(x8), free(x32), free(g), free(m), free(v);
}

int main(void) {
    test_golden();
    test_quantize_bound();
    test_bad_args();
    test_quadratic();
    return test_summary("test_adam8bit");
}
