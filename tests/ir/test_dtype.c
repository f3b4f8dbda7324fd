/* tests/ir/test_dtype.c - dtype names/sizes, f16/bf16 rounding, GGUF q8_0/q4_0
 * byte layout, bitsandbytes NF4 (+ double quantization) and loom_convert.
 *
 * Reference values are computed independently of ir/dtype.c where possible:
 * half values via ldexp in double, rounding by comparing distances in double,
 * hand-written expected bytes for small blocks. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/dtype.h"
#include "testing.h"

/* Round-trip bounds of test_convert for values ~3 x normal over 2560
 * elements: half a step d/2 plus the fp16 rounding of d and m, with ~1.3x
 * margin over the measured error. */
#define TOL_Q4_1 0.4f  /* measured 0.30 */
#define TOL_Q5_0 0.26f /* measured 0.20 */
#define TOL_Q5_1 0.19f /* measured 0.14 */

/* ---- helpers ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rng_u32(void) { /* xorshift64*: deterministic, no libc rand */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}
static float rng_uniform(float lo, float hi) {
    return lo + (hi - lo) * (float)((rng_u32() >> 8) * (1.0 / 16777216.0));
}
/* Roughly normal (sum of uniforms), like real weights. */
static float rng_normalish(void) {
    float s = 0;
    for (int i = 0; i < 4; i++)
        s += rng_uniform(-1.0f, 1.0f);
    return s * 0.5f;
}
static float bits_f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint32_t f_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* ---- names, sizes ---- */

static void test_names(void) {
    static const char *names[] = {"f32",  "f16",    "bf16", "i32",  "q8_0", "q4_0",
                                  "nf4",  "nf4_dq", "q4_1", "q5_0", "q5_1", "q2_K",
                                  "q3_K", "q4_K",   "q5_K", "q6_K", "q8_K"};
    CHECK(sizeof names / sizeof names[0] == LOOM_DTYPE_COUNT);
    for (int i = 0; i < LOOM_DTYPE_COUNT; i++) {
        CHECK(strcmp(loom_dtype_name((loom_dtype)i), names[i]) == 0);
        loom_dtype t = LOOM_DTYPE_COUNT;
        CHECK(loom_dtype_from_name(names[i], &t) == LOOM_OK);
        CHECK(t == (loom_dtype)i);
    }
    CHECK(strcmp(loom_dtype_name(LOOM_DTYPE_COUNT), "?") == 0);
    CHECK(strcmp(loom_dtype_name((loom_dtype)-1), "?") == 0);
    static const char *bad[] = {"", "F32", "q4", "nf4dq", "nf4_dq ", "float", "?"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        loom_dtype t = LOOM_F16;
        CHECK(loom_dtype_from_name(bad[i], &t) == LOOM_ERR_INVALID_ARG);
        CHECK(t == LOOM_F16); /* untouched on failure */
    }
    loom_dtype t;
    CHECK(loom_dtype_from_name(NULL, &t) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_dtype_from_name("f32", NULL) == LOOM_ERR_INVALID_ARG);
}

static size_t roundup4(size_t v) {
    return (v + 3) / 4 * 4;
}

static void test_sizes(void) {
    static const int64_t bs[] = {1,  1,  1,   1,   32,  32,  64,  64, 32,
                                 32, 32, 256, 256, 256, 256, 256, 256};
    static const size_t bb[] = {4, 2, 2, 4, 34, 18, 0, 0, 20, 22, 24, 84, 110, 144, 176, 210, 292};
    CHECK(sizeof bs / sizeof bs[0] == LOOM_DTYPE_COUNT &&
          sizeof bb / sizeof bb[0] == LOOM_DTYPE_COUNT);
    for (int i = 0; i < LOOM_DTYPE_COUNT; i++) {
        loom_dtype t = (loom_dtype)i;
        CHECK(loom_dtype_block_size(t) == bs[i]);
        CHECK(loom_dtype_block_bytes(t) == bb[i]);
        CHECK(loom_dtype_is_quantized(t) == (i >= LOOM_Q8_0));
        CHECK(loom_dtype_is_nf4(t) == (t == LOOM_NF4 || t == LOOM_NF4_DQ));
        CHECK(loom_dtype_is_float(t) == (t == LOOM_F32 || t == LOOM_F16 || t == LOOM_BF16));
        CHECK(loom_dtype_nbytes(t, -64) == 0);
        if (bs[i] > 1) {
            CHECK(loom_dtype_nbytes(t, bs[i] + 1) == 0);
            CHECK(loom_dtype_nbytes(t, bs[i] / 2) == 0);
        }
    }
    CHECK(loom_dtype_block_size(LOOM_DTYPE_COUNT) == 0);
    CHECK(loom_dtype_block_bytes(LOOM_DTYPE_COUNT) == 0);
    CHECK(loom_dtype_nbytes(LOOM_DTYPE_COUNT, 64) == 0);
    CHECK(!loom_dtype_is_quantized(LOOM_DTYPE_COUNT));

    CHECK(loom_dtype_nbytes(LOOM_F32, 7) == 28);
    CHECK(loom_dtype_nbytes(LOOM_F16, 7) == 14);
    CHECK(loom_dtype_nbytes(LOOM_BF16, 3) == 6);
    CHECK(loom_dtype_nbytes(LOOM_I32, 5) == 20);
    CHECK(loom_dtype_nbytes(LOOM_Q8_0, 96) == 3 * 34);
    CHECK(loom_dtype_nbytes(LOOM_Q4_0, 96) == 3 * 18);
    CHECK(loom_dtype_nbytes(LOOM_F32, 0) == 0);
    CHECK(loom_dtype_nbytes(LOOM_NF4, 0) == 0);
    CHECK(loom_dtype_nbytes(LOOM_NF4_DQ, 0) == 4); /* just the offset */

    static const int64_t blocks[] = {1, 2, 3, 5, 255, 256, 257, 511, 512, 513, 1000};
    for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++) {
        int64_t nb = blocks[i], n = nb * 64;
        size_t groups = (size_t)(nb + 255) / 256;
        CHECK(loom_dtype_nbytes(LOOM_NF4, n) == (size_t)n / 2 + 4 * (size_t)nb);
        CHECK(loom_dtype_nbytes(LOOM_NF4_DQ, n) ==
              (size_t)n / 2 + roundup4((size_t)nb) + 4 * groups + 4);
    }
    CHECK(loom_dtype_nbytes(LOOM_NF4_DQ, 64) == 32 + 4 + 4 + 4);
    CHECK(loom_dtype_nbytes(LOOM_NF4_DQ, 64 * 257) == 64 * 257 / 2 + 260 + 8 + 4);
}

/* ---- f16 ---- */

/* Independent value of a finite half encoding, in double. */
static double half_value(uint16_t h) {
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -v : v;
}

static bool half_is_nan(uint16_t h) {
    return (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
}

/* Reference f32->f16: nearest finite half by comparing distances in double
 * (exact here), ties to the even encoding, overflow per IEEE (a value at or
 * beyond 65504 + half an ulp rounds to inf). */
static uint16_t ref_f32_to_f16(float f) {
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    double a = fabs((double)f);
    if (isinf(a) || a >= 65520.0) return sign | 0x7c00;
    /* largest positive encoding k with value(k) <= a; values are monotone in k */
    int lo = 0, hi = 0x7bff;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (half_value((uint16_t)mid) <= a)
            lo = mid;
        else
            hi = mid - 1;
    }
    int k = lo;
    if (k == 0x7bff) return sign | (uint16_t)k; /* a < 65520 */
    double dl = a - half_value((uint16_t)k), du = half_value((uint16_t)(k + 1)) - a;
    if (du < dl || (du == dl && (k & 1))) k++;
    return sign | (uint16_t)k;
}

static void test_f16(void) {
    /* Exhaustive: every half -> f32 is the exact value and comes back. */
    int bad_value = 0, bad_trip = 0, bad_nan = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = loom_f16_to_f32((uint16_t)h);
        uint16_t back = loom_f32_to_f16(f);
        if (half_is_nan((uint16_t)h)) {
            /* NaN stays NaN, sign kept, quiet bit set, top payload kept */
            if (!isnan(f) || !(f_bits(f) & 0x400000u) || !half_is_nan(back) ||
                (back & 0x8000) != (h & 0x8000) || !(back & 0x200) || (back & 0x1ff) != (h & 0x1ff))
                bad_nan++;
            continue;
        }
        if ((h & 0x7fff) == 0x7c00) {
            if (!isinf(f) || (f < 0) != ((h & 0x8000) != 0)) bad_value++;
        } else if ((double)f != half_value((uint16_t)h) ||
                   (signbit(f) != 0) != ((h & 0x8000) != 0)) {
            bad_value++;
        }
        if (back != h) bad_trip++;
    }
    CHECK_MSG(bad_value == 0, "%d halves decode wrong", bad_value);
    CHECK_MSG(bad_trip == 0, "%d halves fail the round trip", bad_trip);
    CHECK_MSG(bad_nan == 0, "%d NaN halves mishandled", bad_nan);

    /* Known encodings. */
    CHECK(loom_f32_to_f16(1.0f) == 0x3c00);
    CHECK(loom_f32_to_f16(-2.0f) == 0xc000);
    CHECK(loom_f32_to_f16(65504.0f) == 0x7bff);
    CHECK(loom_f32_to_f16(65519.996f) == 0x7bff);
    CHECK(loom_f32_to_f16(65520.0f) == 0x7c00);
    CHECK(loom_f32_to_f16(1e10f) == 0x7c00);
    CHECK(loom_f32_to_f16(-INFINITY) == 0xfc00);
    CHECK(loom_f32_to_f16(ldexpf(1, -24)) == 0x0001);
    CHECK(loom_f32_to_f16(ldexpf(1, -25)) == 0x0000);        /* tie -> even (0) */
    CHECK(loom_f32_to_f16(ldexpf(1.5f, -25)) == 0x0001);     /* above the tie */
    CHECK(loom_f32_to_f16(ldexpf(3, -25)) == 0x0002);        /* 1.5 ulp -> even 2 */
    CHECK(loom_f32_to_f16(-ldexpf(1, -26)) == 0x8000);       /* -0 */
    CHECK(loom_f32_to_f16(ldexpf(1023.5f, -24)) == 0x0400);  /* carry to min normal */
    CHECK(loom_f32_to_f16(1.0f + ldexpf(1, -11)) == 0x3c00); /* tie -> even */
    CHECK(loom_f32_to_f16(1.0f + ldexpf(3, -11)) == 0x3c02); /* tie -> even (up) */
    CHECK(loom_f32_to_f16(bits_f(0x7fc00000u)) == 0x7e00);
    CHECK(half_is_nan(loom_f32_to_f16(bits_f(0x7f800001u)))); /* low-payload sNaN */
    CHECK(half_is_nan(loom_f32_to_f16(bits_f(0xff812345u))));
    CHECK(loom_f32_to_f16(bits_f(0xff812345u)) & 0x8000);

    /* Every midpoint between adjacent finite halves, and its float
     * neighbours, against the reference. */
    int bad_mid = 0;
    for (uint16_t k = 0; k < 0x7bff; k++) {
        float mid = (float)((half_value(k) + half_value((uint16_t)(k + 1))) / 2);
        float probes[3] = {mid, nextafterf(mid, 0), nextafterf(mid, INFINITY)};
        for (int p = 0; p < 3; p++) {
            if (loom_f32_to_f16(probes[p]) != ref_f32_to_f16(probes[p])) bad_mid++;
            if (loom_f32_to_f16(-probes[p]) != ref_f32_to_f16(-probes[p])) bad_mid++;
        }
    }
    CHECK_MSG(bad_mid == 0, "%d midpoint roundings differ", bad_mid);

    /* Random floats: arbitrary bit patterns and values inside the half range. */
    int bad_rand = 0;
    for (int i = 0; i < 400000; i++) {
        float f;
        if (i & 1) {
            f = bits_f(rng_u32());
            if (isnan(f)) continue;
        } else {
            int e = (int)(rng_u32() % 46) - 28; /* 2^-28 .. 2^17 */
            f = ldexpf(rng_uniform(1.0f, 2.0f), e) * ((rng_u32() & 1) ? -1.0f : 1.0f);
        }
        if (loom_f32_to_f16(f) != ref_f32_to_f16(f)) bad_rand++;
    }
    CHECK_MSG(bad_rand == 0, "%d random f32->f16 roundings differ", bad_rand);
}

/* ---- bf16 ---- */

/* Reference f32->bf16 for non-NaN: the two candidates bracketing f (truncation
 * and one bf16 ulp further from zero), nearest by distance in double, ties to
 * even; a step past the largest finite value stands for 2^128 (-> inf). */
static uint16_t ref_f32_to_bf16(float f) {
    uint32_t u = f_bits(f);
    uint16_t lo = (uint16_t)(u >> 16);
    if ((u & 0xffff) == 0) return lo;
    uint16_t hi = (uint16_t)(lo + 1);
    double a = fabs((double)f);
    double vlo = fabs((double)bits_f((uint32_t)lo << 16));
    double vhi = (hi & 0x7fff) == 0x7f80 ? ldexp(1, 128) : fabs((double)bits_f((uint32_t)hi << 16));
    double dl = a - vlo, du = vhi - a;
    return (du < dl || (du == dl && (lo & 1))) ? hi : lo;
}

static void test_bf16(void) {
    int bad_trip = 0, bad_nan = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = loom_bf16_to_f32((uint16_t)h);
        uint16_t back = loom_f32_to_bf16(f);
        bool nan_in = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
        if (nan_in) {
            if (!isnan(f) || !(f_bits(f) & 0x400000u) || (back & 0x7f80) != 0x7f80 ||
                !(back & 0x40) || (back & 0x8000) != (h & 0x8000))
                bad_nan++;
        } else {
            if (f_bits(f) != (h << 16)) bad_trip++;
            if (back != h) bad_trip++;
        }
    }
    CHECK_MSG(bad_trip == 0, "%d bf16 round-trip failures", bad_trip);
    CHECK_MSG(bad_nan == 0, "%d bf16 NaN failures", bad_nan);

    CHECK(loom_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(loom_f32_to_bf16(bits_f(0x3f808000u)) == 0x3f80); /* tie -> even (down) */
    CHECK(loom_f32_to_bf16(bits_f(0x3f818000u)) == 0x3f82); /* tie -> even (up) */
    CHECK(loom_f32_to_bf16(bits_f(0x3f808001u)) == 0x3f81);
    CHECK(loom_f32_to_bf16(bits_f(0x7f7fffffu)) == 0x7f80); /* FLT_MAX -> inf */
    CHECK(loom_f32_to_bf16(bits_f(0x7f7f7fffu)) == 0x7f7f);
    CHECK(loom_f32_to_bf16(INFINITY) == 0x7f80);
    CHECK(loom_f32_to_bf16(-INFINITY) == 0xff80);
    CHECK(loom_f32_to_bf16(bits_f(0x00008000u)) == 0x0000); /* subnormal tie -> 0 */
    CHECK(loom_f32_to_bf16(bits_f(0x00018000u)) == 0x0002);
    CHECK(loom_f32_to_bf16(bits_f(0x7f800001u)) == 0x7fc0); /* sNaN -> quiet */
    CHECK(loom_f32_to_bf16(bits_f(0xffc12345u)) == 0xffc1);

    int bad = 0;
    for (int i = 0; i < 1000000; i++) {
        uint32_t u = rng_u32();
        if (i % 4 == 0) u = (u & 0xffff0000u) | 0x8000u; /* force exact ties */
        float f = bits_f(u);
        if (isnan(f)) continue;
        if (loom_f32_to_bf16(f) != ref_f32_to_bf16(f)) bad++;
    }
    CHECK_MSG(bad == 0, "%d random f32->bf16 roundings differ", bad);
}

/* ---- q8_0 ---- */

static void test_q8_0(void) {
    /* Hand-computed block: amax 127 -> d = 1, id = 1, qs = roundf(x), which
     * rounds halves away from zero. */
    float x[32];
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j - 16);
    x[0] = 127.0f;
    x[1] = -2.5f;    /* -> -3 */
    x[2] = 2.5f;     /* -> 3 */
    x[3] = 0.49f;    /* -> 0 */
    x[4] = -0.5f;    /* -> -1 */
    x[5] = 100.4f;   /* -> 100 */
    x[31] = -126.6f; /* -> -127 */
    static const uint8_t expect[34] = {
        0x00, 0x3c,                                     /* d = fp16(1.0), little endian */
        127,  0xfd, 3,    0,    0xff, 100,  0xf6, 0xf7, /* 127,-3,3,0,-1,100,-10,-9 */
        0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff, /* -8..-1 */
        0,    1,    2,    3,    4,    5,    6,    7,    /* 0..7 */
        8,    9,    10,   11,   12,   13,   14,   0x81, /* 8..14, -127 */
    };
    uint8_t got[34];
    CHECK(loom_quantize_row(LOOM_Q8_0, x, got, 32) == LOOM_OK);
    CHECK(memcmp(got, expect, 34) == 0);

    /* d not a power of two: amax 1 -> d = 1/127 -> fp16 0x2008; the ramp
     * x[j] = (j-16)/16 maps to roundf(x * (1/d)) computed here by formula. */
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j - 16) / 16.0f;
    x[0] = -1.0f;
    CHECK(loom_quantize_row(LOOM_Q8_0, x, got, 32) == LOOM_OK);
    CHECK(got[0] == 0x08 && got[1] == 0x20);
    {
        const float d = 1.0f / 127.0f, id = 1.0f / d;
        int ok = 1;
        for (int j = 0; j < 32; j++)
            ok &= (int8_t)got[2 + j] == (int8_t)roundf(x[j] * id);
        CHECK(ok);
        CHECK((int8_t)got[2] == -127 && (int8_t)got[2 + 24] == 64); /* 0.5 * 127 = 63.5 -> 64 */
    }

    /* All-zero block: d = 0, id = 0, everything 0. */
    float z[32] = {0};
    CHECK(loom_quantize_row(LOOM_Q8_0, z, got, 32) == LOOM_OK);
    {
        int allz = 1;
        for (int i = 0; i < 34; i++)
            allz &= got[i] == 0;
        CHECK(allz);
    }

    /* Error bound on random rows. Quantization uses d = amax/127 while
     * dequantization uses d16 = fp16(d), so for q = roundf(x/d):
     *   |x - q*d16| <= |x - q*d| + |q|*|d - d16| <= d/2 + 127*|d - d16|
     * plus a few float ulps from computing x*(1/d). */
    enum { N = 32 * 64 };
    static float src[N], back[N];
    static uint8_t q[N / 32 * 34];
    for (int i = 0; i < N; i++)
        src[i] = rng_normalish() * ((i / 32) % 5 + 0.01f);
    CHECK(loom_quantize_row(LOOM_Q8_0, src, q, N) == LOOM_OK);
    CHECK(loom_dequantize_row(LOOM_Q8_0, q, back, N) == LOOM_OK);
    int bad = 0;
    for (int b = 0; b < N / 32; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++)
            amax = fmaxf(amax, fabsf(src[b * 32 + j]));
        double d = amax / 127.0f;
        uint16_t d16bits;
        memcpy(&d16bits, q + b * 34, 2);
        double d16 = half_value(d16bits);
        double bound = d / 2 + 127 * fabs(d - d16) + 1e-6 * amax;
        for (int j = 0; j < 32; j++) {
            double err = fabs((double)src[b * 32 + j] - back[b * 32 + j]);
            if (err > bound) bad++;
            /* dequantized value is exactly q * fp16(d) */
            if ((double)back[b * 32 + j] != (float)((int8_t)q[b * 34 + 2 + j] * (float)d16)) bad++;
        }
    }
    CHECK_MSG(bad == 0, "%d q8_0 elements out of bound", bad);

    /* Non-finite inputs must not crash or trip UBSan. */
    float nf[32] = {0};
    nf[3] = NAN;
    nf[4] = 1.0f;
    CHECK(loom_quantize_row(LOOM_Q8_0, nf, got, 32) == LOOM_OK);
    CHECK((int8_t)got[2 + 4] == 127);
    float tiny[32];
    for (int j = 0; j < 32; j++)
        tiny[j] = 1e-38f; /* 1/d overflows to inf */
    CHECK(loom_quantize_row(LOOM_Q8_0, tiny, got, 32) == LOOM_OK);
}

/* ---- q4_0 ---- */

static uint8_t ref_nibble(float v) { /* the ggml formula, written out */
    int t = (int)(v + 8.5f);
    return (uint8_t)(t < 15 ? t : 15);
}

static void test_q4_0(void) {
    /* Block 1: max = -8 -> d = 1, id = 1, nibble = trunc(x + 8.5) capped at 15. */
    float x[64];
    for (int j = 0; j < 32; j++)
        x[j] = (float)((j % 16) - 8);
    x[0] = -8.0f;  /* 0 */
    x[1] = 7.6f;   /* trunc(16.1) = 16 -> capped 15 */
    x[2] = 0.49f;  /* 8 */
    x[3] = 0.5f;   /* 9: halves round up */
    x[4] = -0.5f;  /* 8 */
    x[5] = -0.51f; /* 7 */
    x[16] = 7.49f; /* 15 */
    x[17] = -7.5f; /* 1 */
    /* Block 2: largest |x| is +16 -> d = -2, id = -0.5. */
    for (int j = 0; j < 32; j++)
        x[32 + j] = 0.0f;
    x[32 + 0] = 16.0f;   /* -8 + 8.5 -> 0 */
    x[32 + 1] = -14.0f;  /* 15.5 -> 15 */
    x[32 + 2] = 3.0f;    /* 7 */
    x[32 + 16] = -16.0f; /* 16.5 -> 16 -> 15: equal |x| later, first one wins */
    x[32 + 17] = 1.0f;   /* 8.0 -> 8 */
    static const uint8_t expect[36] = {
        0x00, 0x3c,                                     /* d = 1.0 */
        0xf0, 0x1f, 0x28, 0x39, 0x48, 0x57, 0x66, 0x77, /* x[j] lo, x[j+16] hi */
        0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, /* */
        0x00, 0xc0,                                     /* d = -2.0 */
        0xf0, 0x8f, 0x87, 0x88, 0x88, 0x88, 0x88, 0x88, /* */
        0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, /* */
    };
    uint8_t got[36];
    CHECK(loom_quantize_row(LOOM_Q4_0, x, got, 64) == LOOM_OK);
    CHECK(memcmp(got, expect, 36) == 0);
    for (int j = 0; j < 36; j++)
        CHECK_MSG(got[j] == expect[j], "q4_0 byte %d: got 0x%02x want 0x%02x", j, got[j],
                  expect[j]);

    /* A ramp with a non-power-of-two scale against the formula. */
    float r[32];
    for (int j = 0; j < 32; j++)
        r[j] = 0.3f * (float)j - 4.1f; /* max |x| = 5.2 at j=31 */
    CHECK(loom_quantize_row(LOOM_Q4_0, r, got, 32) == LOOM_OK);
    {
        const float max = r[31], d = max / -8, id = 1.0f / d;
        uint16_t dh = loom_f32_to_f16(d);
        CHECK(memcmp(got, &dh, 2) == 0);
        int ok = 1;
        for (int j = 0; j < 16; j++)
            ok &=
                got[2 + j] == (uint8_t)(ref_nibble(r[j] * id) | (ref_nibble(r[j + 16] * id) << 4));
        CHECK(ok);
    }

    /* Dequantization is (q - 8) * fp16(d), low nibble first. */
    float back[64];
    CHECK(loom_dequantize_row(LOOM_Q4_0, expect, back, 64) == LOOM_OK);
    CHECK(back[0] == -8.0f && back[1] == 7.0f && back[3] == 1.0f && back[16] == 7.0f);
    CHECK(back[32] == 16.0f && back[33] == -14.0f && back[48] == -14.0f && back[49] == 0.0f);

    /* Error bound. |d| = amax/8 and x*id lies in [-8, 8]; the nibble is
     * floor(x*id + 8.5) capped at 15, i.e. round-half-up except that x*id in
     * [7.5, 8] (only opposite in sign to the max) is capped to 7. So
     *   |x - (q-8)*d| <= |d|/2 uncapped, <= |d| capped,
     * plus 8*|d - d16| for the fp16 scale and float ulps. */
    enum { N = 32 * 64 };
    static float src[N], out[N];
    static uint8_t q[N / 32 * 18];
    for (int i = 0; i < N; i++)
        src[i] = rng_normalish() * ((i / 32) % 7 + 0.1f);
    for (int b = 0; b < 8; b++) { /* force capped elements: x*id = 7.984 */
        src[b * 32 + 5] = 50.0f;
        src[b * 32 + 6] = -49.9f;
    }
    CHECK(loom_quantize_row(LOOM_Q4_0, src, q, N) == LOOM_OK);
    CHECK(loom_dequantize_row(LOOM_Q4_0, q, out, N) == LOOM_OK);
    int bad = 0, capped = 0;
    for (int b = 0; b < N / 32; b++) {
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++)
            if (amax < fabsf(src[b * 32 + j])) amax = fabsf(src[b * 32 + j]), max = src[b * 32 + j];
        double d = max / -8.0f;
        uint16_t d16bits;
        memcpy(&d16bits, q + b * 18, 2);
        double slack = 8 * fabs(d - half_value(d16bits)) + 1e-6 * amax;
        for (int j = 0; j < 32; j++) {
            double xi = src[b * 32 + j];
            double err = fabs(xi - out[b * 32 + j]);
            bool cap = xi / d >= 7.5 - 1e-4;
            capped += cap;
            if (err > (cap ? fabs(d) : fabs(d) / 2) + slack) bad++;
        }
    }
    CHECK_MSG(bad == 0, "%d q4_0 elements out of bound", bad);
    CHECK(capped > 0);
}

/* ---- q4_1, q5_0, q5_1 (ggml's legacy types) ----
 * Hand-built blocks whose codes are known, the ggml formulas written out on a
 * ramp, and the round-trip bound. Byte equality with gguf-py on random and
 * edge-case blocks is tests/ir/check_legacy_quants.py. */

static void check_bytes(const char *what, const uint8_t *got, const uint8_t *want, int n) {
    for (int j = 0; j < n; j++)
        CHECK_MSG(got[j] == want[j], "%s byte %d: got 0x%02x want 0x%02x", what, j, got[j],
                  want[j]);
}

static void test_legacy_exact(void) {
    float x[32], back[32];
    uint8_t got[24], want[24];
    /* q4_1: x = 2 * (j % 16) - 3 -> min -3, d = 2, code j % 16. */
    for (int j = 0; j < 32; j++)
        x[j] = 2.0f * (float)(j % 16) - 3.0f;
    memcpy(want, (const uint8_t[]){0x00, 0x40, 0x00, 0xc2}, 4); /* d 2.0, m -3.0 */
    for (int j = 0; j < 16; j++)
        want[4 + j] = (uint8_t)(j | (j << 4));
    CHECK(loom_quantize_row(LOOM_Q4_1, x, got, 32) == LOOM_OK);
    check_bytes("q4_1", got, want, 20);
    CHECK(loom_dequantize_row(LOOM_Q4_1, want, back, 32) == LOOM_OK);
    CHECK(memcmp(back, x, sizeof x) == 0);

    /* q5_0: x = j - 16 -> max -16 (first largest |x|), d = 1, code j; the
     * 5th bits (codes 16..31) are bits 16..31 of qh. */
    for (int j = 0; j < 32; j++)
        x[j] = (float)j - 16.0f;
    memcpy(want, (const uint8_t[]){0x00, 0x3c, 0x00, 0x00, 0xff, 0xff}, 6);
    for (int j = 0; j < 16; j++)
        want[6 + j] = (uint8_t)(j | (j << 4));
    CHECK(loom_quantize_row(LOOM_Q5_0, x, got, 32) == LOOM_OK);
    check_bytes("q5_0", got, want, 22);
    CHECK(loom_dequantize_row(LOOM_Q5_0, want, back, 32) == LOOM_OK);
    CHECK(memcmp(back, x, sizeof x) == 0);

    /* q5_1: x = 0.5 j + 1 -> m 1, d = 15.5 / 31 = 0.5, code j. */
    for (int j = 0; j < 32; j++)
        x[j] = 0.5f * (float)j + 1.0f;
    memcpy(want, (const uint8_t[]){0x00, 0x38, 0x00, 0x3c, 0x00, 0x00, 0xff, 0xff}, 8);
    for (int j = 0; j < 16; j++)
        want[8 + j] = (uint8_t)(j | (j << 4));
    CHECK(loom_quantize_row(LOOM_Q5_1, x, got, 32) == LOOM_OK);
    check_bytes("q5_1", got, want, 24);
    CHECK(loom_dequantize_row(LOOM_Q5_1, want, back, 32) == LOOM_OK);
    CHECK(memcmp(back, x, sizeof x) == 0);

    /* Rounding at the code boundaries: (x - min)/d + 0.5 truncated, so
     * 0.49 rounds down and 0.5 up; q5_0 caps at 31 (x/d + 16.5 = 32.5 when
     * the opposite extreme equals |max|). */
    for (int j = 0; j < 32; j++)
        x[j] = 0.0f;
    x[0] = 15.0f;  /* max 15, min 0 -> d 1 */
    x[1] = 2.49f;  /* 2 */
    x[2] = 2.5f;   /* 3 */
    x[17] = 14.5f; /* 15 */
    CHECK(loom_quantize_row(LOOM_Q4_1, x, got, 32) == LOOM_OK);
    CHECK(got[4] == 0x0f && got[5] == 0xf2 && got[6] == 0x03);
    for (int j = 0; j < 32; j++)
        x[j] = 0.0f;
    x[3] = -8.0f;  /* max -8 -> d 0.5, id 2: code = trunc(2x + 16.5) */
    x[4] = 8.0f;   /* 32.5 -> 32 -> capped 31 */
    x[5] = -0.26f; /* 15.98 -> 15 */
    CHECK(loom_quantize_row(LOOM_Q5_0, x, got, 32) == LOOM_OK);
    CHECK(got[0] == 0x00 && got[1] == 0x38); /* d = 0.5 */
    uint32_t qh;
    memcpy(&qh, got + 2, 4);
    CHECK((got[6 + 3] & 15) == 0 && !(qh & (1u << 3)));               /* code 0 */
    CHECK((got[6 + 4] & 15) == 15 && (qh & (1u << 4)));               /* code 31 */
    CHECK((got[6 + 5] & 15) == 15 && !(qh & (1u << 5)));              /* code 15 */
    CHECK((got[6 + 0] & 15) == 0 && (qh & 1u) && (got[6] >> 4) == 0); /* zeros: 16 */

    /* All-equal block: q4_1/q5_1 d = 0, every code 0, m = the value;
     * q5_0 codes 0 with d = -x/16. All dequantize to fp16(x). */
    for (int j = 0; j < 32; j++)
        x[j] = 0.3f;
    static const loom_dtype ty[3] = {LOOM_Q4_1, LOOM_Q5_0, LOOM_Q5_1};
    for (int t = 0; t < 3; t++) {
        CHECK(loom_quantize_row(ty[t], x, got, 32) == LOOM_OK);
        CHECK(loom_dequantize_row(ty[t], got, back, 32) == LOOM_OK);
        for (int j = 0; j < 32; j++)
            CHECK_MSG(fabsf(back[j] - 0.3f) < 2e-4f, "%s all-equal: %g", loom_dtype_name(ty[t]),
                      (double)back[j]);
    }
}

/* The ggml formulas written out again, on blocks with non-power-of-two
 * scales, against loom's bytes. */
static void test_legacy_formula(void) {
    float x[32];
    uint8_t got[24];
    for (int rep = 0; rep < 50; rep++) {
        for (int j = 0; j < 32; j++)
            x[j] = rng_normalish() * (0.01f + (float)rep);
        for (int t = 0; t < 3; t++) {
            const loom_dtype ty = t == 0 ? LOOM_Q4_1 : t == 1 ? LOOM_Q5_0 : LOOM_Q5_1;
            const int bits = t == 0 ? 4 : 5, top = (1 << bits) - 1;
            float mn = x[0], mx = x[0], amax = 0, max = 0;
            for (int j = 0; j < 32; j++) {
                mn = x[j] < mn ? x[j] : mn;
                mx = x[j] > mx ? x[j] : mx;
                if (amax < fabsf(x[j])) amax = fabsf(x[j]), max = x[j];
            }
            const float d = t == 1 ? max / -16 : (mx - mn) / top;
            const float id = d != 0.0f ? 1.0f / d : 0.0f;
            CHECK(loom_quantize_row(ty, x, got, 32) == LOOM_OK);
            const uint16_t dh = loom_f32_to_f16(d), mh = loom_f32_to_f16(mn);
            CHECK(memcmp(got, &dh, 2) == 0);
            if (t != 1) CHECK(memcmp(got + 2, &mh, 2) == 0);
            const uint8_t *qs = got + (t == 0 ? 4 : t == 1 ? 6 : 8);
            uint32_t qh = 0;
            if (bits == 5) memcpy(&qh, got + (t == 1 ? 2 : 4), 4);
            int bad = 0;
            for (int j = 0; j < 32; j++) {
                const float v = t == 1 ? x[j] * id + 16.5f : (x[j] - mn) * id + 0.5f;
                int q = (int)v;
                q = q < top ? q : top;
                const int have = (j < 16 ? qs[j] & 15 : qs[j - 16] >> 4) | (int)((qh >> j) & 1)
                                                                               << 4;
                bad += have != q;
            }
            CHECK_MSG(bad == 0, "%s rep %d: %d codes differ from the formula", loom_dtype_name(ty),
                      rep, bad);
        }
    }
}

/* ---- NF4 ---- */

static int nf4_elem_code(const uint8_t *codes, int64_t i) {
    return (i & 1) ? (codes[i / 2] & 15) : (codes[i / 2] >> 4);
}

static void test_nf4_tables(void) {
    /* bitsandbytes' NF4 table, as published (float32 values printed in full). */
    static const double bnb_nf4[16] = {-1.0,
                                       -0.6961928009986877,
                                       -0.5250730514526367,
                                       -0.39491748809814453,
                                       -0.28444138169288635,
                                       -0.18477343022823334,
                                       -0.09105003625154495,
                                       0.0,
                                       0.07958029955625534,
                                       0.16093020141124725,
                                       0.24611230194568634,
                                       0.33791524171829224,
                                       0.44070982933044434,
                                       0.5626170039176941,
                                       0.7229568362236023,
                                       1.0};
    for (int i = 0; i < 16; i++) {
        CHECK(loom_nf4_code[i] == (float)bnb_nf4[i]);
        CHECK((double)loom_nf4_code[i] == bnb_nf4[i]); /* they are exact float32 values */
    }
    CHECK(loom_nf4_code[0] == -1.0f && loom_nf4_code[7] == 0.0f && loom_nf4_code[15] == 1.0f);
    int inc = 1;
    for (int i = 1; i < 16; i++)
        inc &= loom_nf4_code[i - 1] < loom_nf4_code[i];
    CHECK(inc);

    /* Dynamic map: 256 entries, strictly increasing, -0.99296875.. up to 1.0,
     * 0 at index 127, negatives mirroring positives 128..254. */
    const float *c = loom_nf4_dq_code;
    inc = 1;
    for (int i = 1; i < 256; i++)
        inc &= c[i - 1] < c[i];
    CHECK(inc);
    CHECK(c[0] < 0 && fabsf(c[0] + 0.99296875f) < 1e-6f);
    CHECK(c[255] == 1.0f);
    CHECK(c[127] == 0.0f);
    int mirror = 1;
    for (int i = 0; i < 127; i++)
        mirror &= c[i] == -c[254 - i];
    CHECK(mirror);
    CHECK(c[128] > 5e-7f && c[128] < 6e-7f); /* 1e-6 * (0.1 + 1) / 2 */

    /* Recompute create_dynamic_map(signed=True, 7, 8) in float32 and check
     * the stored literals are exactly it (as a multiset; both are sorted). */
    float pos[127];
    int k = 0;
    static const double pow10[7] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0};
    for (int i = 0; i < 7; i++) {
        int steps = (1 << i) + 1, half = steps / 2;
        float start = 0.1f, end = 1.0f, step = (end - start) / (float)(steps - 1), b[65];
        for (int j = 0; j < steps; j++)
            b[j] = j < half ? start + step * (float)j : end - step * (float)(steps - 1 - j);
        for (int j = 0; j + 1 < steps; j++)
            pos[k++] = (float)pow10[i] * ((b[j] + b[j + 1]) / 2.0f);
    }
    CHECK(k == 127);
    int found = 0;
    for (int i = 0; i < 127; i++)
        for (int j = 128; j < 255; j++)
            found += c[j] == pos[i];
    CHECK_MSG(found == 127, "only %d of 127 recomputed dynamic-map values present", found);
}

static void test_nf4_exact_codes(void) {
    /* Every code times a power-of-two absmax is exactly representable, so it
     * must survive quantize -> dequantize bit for bit (nf4 and nf4_dq: equal
     * absmax everywhere makes scale2 0 and the offset exact). */
    enum { N = 64 * 4 };
    float src[N], out[N];
    uint8_t buf[N]; /* >= nbytes */
    for (int e = -6; e <= 6; e += 3) {
        float s = ldexpf(1.0f, e);
        for (int i = 0; i < N; i++)
            src[i] = loom_nf4_code[(i + i / 64) % 16] * s;
        for (int t = LOOM_NF4; t <= LOOM_NF4_DQ; t++) {
            CHECK(loom_dtype_nbytes((loom_dtype)t, N) <= sizeof buf);
            CHECK(loom_nf4_quantize((loom_dtype)t, src, N, buf) == LOOM_OK);
            loom_nf4_layout l;
            CHECK(loom_nf4_layout_of((loom_dtype)t, buf, N, &l) == LOOM_OK);
            int ok = 1;
            for (int i = 0; i < N; i++)
                ok &= nf4_elem_code(l.codes, i) == (i + i / 64) % 16;
            CHECK(ok);
            for (int b = 0; b < N / 64; b++)
                CHECK(loom_nf4_absmax(&l, b) == s);
            loom_nf4_dequantize(&l, 0, N, out);
            CHECK(memcmp(out, src, sizeof src) == 0);
        }
    }

    /* Packing order: element 0 in the high nibble. */
    float p[64] = {0};
    p[0] = -1.0f; /* code 0 */
    p[1] = 1.0f;  /* code 15 */
    p[2] = 1.0f;
    p[4] = 0.16f; /* code 9 (0.1609) */
    p[5] = -0.3f; /* code 4 (-0.2844) */
    CHECK(loom_nf4_quantize(LOOM_NF4, p, 64, buf) == LOOM_OK);
    CHECK(buf[0] == 0x0f);
    CHECK(buf[1] == 0xf7);
    CHECK(buf[2] == 0x94);
    CHECK(buf[3] == 0x77);
    float am;
    memcpy(&am, buf + 32, 4);
    CHECK(am == 1.0f);

    /* Zero block: absmax 0, every code 7 (0.0), dequantizes to zeros. */
    memset(p, 0, sizeof p);
    memset(buf, 0xaa, sizeof buf);
    CHECK(loom_nf4_quantize(LOOM_NF4, p, 64, buf) == LOOM_OK);
    int ok = 1;
    for (int i = 0; i < 32; i++)
        ok &= buf[i] == 0x77;
    CHECK(ok);
    memcpy(&am, buf + 32, 4);
    CHECK(am == 0.0f);
    loom_nf4_layout l;
    CHECK(loom_nf4_layout_of(LOOM_NF4, buf, 64, &l) == LOOM_OK);
    loom_nf4_dequantize(&l, 0, 64, out);
    ok = 1;
    for (int i = 0; i < 64; i++)
        ok &= out[i] == 0.0f;
    CHECK(ok);
}

static void test_nf4_random(void) {
    enum { NB = 601, N = 64 * NB }; /* 3 dq groups, the last one short */
    float *src = malloc(N * sizeof(float)), *out = malloc(N * sizeof(float));
    float *part = malloc(200 * sizeof(float));
    uint8_t *q = malloc(loom_dtype_nbytes(LOOM_NF4_DQ, N));
    uint8_t *q1 = malloc(loom_dtype_nbytes(LOOM_NF4, N));
    CHECK(src && out && part && q && q1);
    if (!src || !out || !part || !q || !q1) return;
    for (int i = 0; i < N; i++)
        src[i] = rng_normalish() * (1.0f + (float)((i / 64) % 13));
    for (int i = 64 * 5; i < 64 * 6; i++)
        src[i] = 0.0f; /* one zero block */

    /* nf4: nearest-code property against the stored absmax. */
    CHECK(loom_nf4_quantize(LOOM_NF4, src, N, q1) == LOOM_OK);
    loom_nf4_layout l;
    CHECK(loom_nf4_layout_of(LOOM_NF4, q1, N, &l) == LOOM_OK);
    CHECK(l.codes == q1 && (const uint8_t *)l.absmax == q1 + N / 2 && !l.qabsmax && l.n == N);
    int bad = 0;
    for (int b = 0; b < NB; b++) {
        float am = 0;
        for (int j = 0; j < 64; j++)
            am = fmaxf(am, fabsf(src[b * 64 + j]));
        if (loom_nf4_absmax(&l, b) != am) bad++;
        for (int j = 0; j < 64; j++) {
            int64_t i = (int64_t)b * 64 + j;
            double v = am ? (double)(src[i] / am) : 0.0;
            int c = nf4_elem_code(l.codes, i);
            double dc = fabs(v - loom_nf4_code[c]);
            for (int k = 0; k < 16; k++)
                if (fabs(v - loom_nf4_code[k]) < dc) bad++;
        }
    }
    CHECK_MSG(bad == 0, "%d nf4 elements not at the nearest code", bad);

    /* nf4_dq: same codes, layout, absmax reconstruction. */
    CHECK(loom_nf4_quantize(LOOM_NF4_DQ, src, N, q) == LOOM_OK);
    loom_nf4_layout ld;
    CHECK(loom_nf4_layout_of(LOOM_NF4_DQ, q, N, &ld) == LOOM_OK);
    CHECK(memcmp(q, q1, N / 2) == 0);
    CHECK(ld.absmax == NULL && ld.qabsmax == q + N / 2);
    CHECK((const uint8_t *)ld.scale2 == q + N / 2 + 604);
    CHECK(q[N / 2 + 601] == 0 && q[N / 2 + 602] == 0 && q[N / 2 + 603] == 0); /* padding */
    CHECK(loom_dtype_nbytes(LOOM_NF4_DQ, N) == (size_t)N / 2 + 604 + 3 * 4 + 4);
    float offset_stored;
    memcpy(&offset_stored, q + N / 2 + 604 + 12, 4);
    CHECK(ld.offset == offset_stored);

    double sum = 0;
    for (int b = 0; b < NB; b++)
        sum += loom_nf4_absmax(&l, b);
    CHECK(ld.offset == (float)(sum / NB));

    bad = 0;
    int bad_near = 0;
    for (int g = 0; g < 3; g++) {
        int b0 = g * 256, b1 = b0 + 256 < NB ? b0 + 256 : NB;
        float s2 = 0;
        for (int b = b0; b < b1; b++)
            s2 = fmaxf(s2, fabsf(loom_nf4_absmax(&l, b) - ld.offset));
        float s2_stored;
        memcpy(&s2_stored, q + N / 2 + 604 + 4 * g, 4);
        CHECK(s2 == s2_stored);
        for (int b = b0; b < b1; b++) {
            float am = loom_nf4_absmax(&l, b);
            /* The dynamic map's widest gap is 1/64 * 0.9 near +-1 (0.0140625),
             * so the reconstruction error is at most half that times scale2. */
            double err = fabs((double)loom_nf4_absmax(&ld, b) - am);
            if (err > s2 * 0.0070313 + 1e-6 * (fabs(ld.offset) + s2)) bad++;
            double v = (double)((am - ld.offset) / s2);
            int qi = ld.qabsmax[b];
            for (int k = 0; k < 256; k++)
                if (fabs(v - loom_nf4_dq_code[k]) < fabs(v - loom_nf4_dq_code[qi])) bad_near++;
        }
    }
    CHECK_MSG(bad == 0, "%d dq absmax values off by more than scale2*gap/2", bad);
    CHECK_MSG(bad_near == 0, "%d qabsmax entries not nearest", bad_near);

    /* Dequantized values use the reconstructed absmax. */
    loom_nf4_dequantize(&ld, 0, N, out);
    bad = 0;
    for (int64_t i = 0; i < N; i++) {
        float want = loom_nf4_code[nf4_elem_code(q, i)] * loom_nf4_absmax(&ld, i / 64);
        if (out[i] != want) bad++;
    }
    CHECK(bad == 0);
    /* Partial, unaligned ranges agree with the full dequantization. */
    loom_nf4_dequantize(&ld, 33, 200, part);
    CHECK(memcmp(part, out + 33, 200 * sizeof(float)) == 0);
    loom_nf4_dequantize(&ld, N - 7, 7, part);
    CHECK(memcmp(part, out + N - 7, 7 * sizeof(float)) == 0);

    /* Unaligned base: sections are read bytewise. */
    uint8_t *shifted = malloc(loom_dtype_nbytes(LOOM_NF4_DQ, N) + 1);
    if (shifted) {
        memcpy(shifted + 1, q, loom_dtype_nbytes(LOOM_NF4_DQ, N));
        loom_nf4_layout lu;
        CHECK(loom_nf4_layout_of(LOOM_NF4_DQ, shifted + 1, N, &lu) == LOOM_OK);
        loom_nf4_dequantize(&lu, 0, 200, part);
        CHECK(memcmp(part, out, 200 * sizeof(float)) == 0);
        free(shifted);
    }

    /* All absmax equal except none: a single block has scale2 0. */
    CHECK(loom_nf4_quantize(LOOM_NF4_DQ, src, 64, q) == LOOM_OK);
    CHECK(loom_nf4_layout_of(LOOM_NF4_DQ, q, 64, &ld) == LOOM_OK);
    CHECK(ld.qabsmax[0] == 127 && ld.scale2[0] == 0.0f);
    CHECK(loom_nf4_absmax(&ld, 0) == loom_nf4_absmax(&l, 0));

    free(src);
    free(out);
    free(part);
    free(q);
    free(q1);
}

static void test_nf4_errors(void) {
    uint8_t buf[256] = {0};
    float x[128] = {0};
    loom_nf4_layout l;
    CHECK(loom_nf4_layout_of(LOOM_NF4, buf, 63, &l) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_nf4_layout_of(LOOM_NF4_DQ, buf, 96, &l) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_nf4_layout_of(LOOM_NF4, buf, -64, &l) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_nf4_layout_of(LOOM_Q4_0, buf, 64, &l) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_nf4_layout_of(LOOM_NF4, NULL, 64, &l) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_nf4_layout_of(LOOM_NF4, buf, 64, NULL) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_nf4_quantize(LOOM_NF4, x, 100, buf) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_nf4_quantize(LOOM_F32, x, 64, buf) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_nf4_quantize(LOOM_NF4, NULL, 64, buf) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_nf4_quantize(LOOM_NF4_DQ, x, 64, NULL) == LOOM_ERR_INVALID_ARG);
    /* n = 0 is a valid empty tensor; nf4_dq still writes its offset. */
    memset(buf, 0xff, 4);
    CHECK(loom_nf4_quantize(LOOM_NF4_DQ, x, 0, buf) == LOOM_OK);
    CHECK(buf[0] == 0 && buf[1] == 0 && buf[2] == 0 && buf[3] == 0);
}

/* ---- row functions ---- */

static void test_rows(void) {
    float x[64], y[64];
    uint8_t b[64 * 4];
    for (int i = 0; i < 64; i++)
        x[i] = (float)i * 0.37f - 11.0f;

    CHECK(loom_quantize_row(LOOM_F32, x, b, 64) == LOOM_OK);
    CHECK(memcmp(b, x, sizeof x) == 0);
    CHECK(loom_dequantize_row(LOOM_F32, b, y, 64) == LOOM_OK);
    CHECK(memcmp(y, x, sizeof x) == 0);

    CHECK(loom_quantize_row(LOOM_F16, x, b, 64) == LOOM_OK);
    CHECK(loom_dequantize_row(LOOM_F16, b, y, 64) == LOOM_OK);
    int ok = 1;
    for (int i = 0; i < 64; i++) {
        uint16_t h;
        memcpy(&h, b + 2 * i, 2);
        ok &= h == loom_f32_to_f16(x[i]) && y[i] == loom_f16_to_f32(h);
    }
    CHECK(ok);

    CHECK(loom_quantize_row(LOOM_BF16, x, b, 64) == LOOM_OK);
    CHECK(loom_dequantize_row(LOOM_BF16, b, y, 64) == LOOM_OK);
    ok = 1;
    for (int i = 0; i < 64; i++) {
        uint16_t h;
        memcpy(&h, b + 2 * i, 2);
        ok &= h == loom_f32_to_bf16(x[i]) && y[i] == loom_bf16_to_f32(h);
    }
    CHECK(ok);

    /* i32 by value: truncation toward zero, saturating, NaN -> 0. */
    float iv[8] = {3.7f, -3.7f, 0.0f, 1e20f, -1e20f, NAN, 2147483520.0f, -2147483648.0f};
    int32_t want[8] = {3, -3, 0, INT32_MAX, INT32_MIN, 0, 2147483520, INT32_MIN};
    int32_t got[8];
    CHECK(loom_quantize_row(LOOM_I32, iv, got, 8) == LOOM_OK);
    CHECK(memcmp(got, want, sizeof got) == 0);
    int32_t ints[4] = {-5, 0, 16777217, 7};
    CHECK(loom_dequantize_row(LOOM_I32, ints, y, 4) == LOOM_OK);
    CHECK(y[0] == -5.0f && y[1] == 0.0f && y[2] == 16777216.0f && y[3] == 7.0f);

    /* Error paths. */
    CHECK(loom_quantize_row(LOOM_Q8_0, x, b, 48) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_quantize_row(LOOM_Q4_0, x, b, 31) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_dequantize_row(LOOM_Q8_0, b, y, 33) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_dequantize_row(LOOM_Q4_0, b, y, 16) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_quantize_row(LOOM_NF4, x, b, 64) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_quantize_row(LOOM_NF4_DQ, x, b, 64) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_dequantize_row(LOOM_NF4, b, y, 64) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_dequantize_row(LOOM_NF4_DQ, b, y, 64) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_quantize_row(LOOM_F32, x, b, -1) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_quantize_row(LOOM_F16, NULL, b, 4) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_dequantize_row(LOOM_F16, b, NULL, 4) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_quantize_row(LOOM_DTYPE_COUNT, x, b, 4) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_dequantize_row((loom_dtype)99, b, y, 4) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_quantize_row(LOOM_Q8_0, x, b, 0) == LOOM_OK);
}

/* ---- loom_convert ---- */

static void test_convert(void) {
    enum { N = 64 * 40 }; /* 2.5 internal chunks of 1024 */
    static float src[N + 1], back[N];
    static uint8_t a[N * 4 + 64], b1[N * 4 + 64], b2[N * 4 + 64];
    for (int i = 0; i < N; i++)
        src[i] = rng_normalish() * 3.0f;
    int bad_pairs = 0;
    /* The types with row conversions today; the k-quant rows join with
     * their issue (N is a multiple of 256 already). */
    const int n_conv = LOOM_Q5_1 + 1;
    for (int s = 0; s < n_conv; s++) {
        for (int d = 0; d < n_conv; d++) {
            loom_dtype st = (loom_dtype)s, dt = (loom_dtype)d;
            /* a = src as st; b1 = convert(st -> dt); b2 = via explicit f32 */
            CHECK(loom_convert(LOOM_F32, src, st, a, N) == LOOM_OK);
            memset(b1, 0x5a, sizeof b1);
            memset(b2, 0x5a, sizeof b2);
            if (loom_convert(st, a, dt, b1, N) != LOOM_OK) {
                bad_pairs++;
                continue;
            }
            CHECK(loom_convert(st, a, LOOM_F32, back, N) == LOOM_OK);
            if (s == d) {
                memcpy(b2, a, loom_dtype_nbytes(st, N));
            } else {
                CHECK(loom_convert(LOOM_F32, back, dt, b2, N) == LOOM_OK);
            }
            size_t nb = loom_dtype_nbytes(dt, N);
            CHECK(nb > 0 && nb <= sizeof b1);
            CHECK_MSG(memcmp(b1, b2, sizeof b1) == 0, "convert %s -> %s differs from two-step",
                      loom_dtype_name(st), loom_dtype_name(dt));
        }
    }
    CHECK(bad_pairs == 0);

    /* Round-trip accuracy per destination type. */
    static const float tol[LOOM_DTYPE_COUNT] = {0,
                                                3e-3f,
                                                2.4e-2f,
                                                1.0f,
                                                0.1f,
                                                1.5f,
                                                1.9f,
                                                2.0f,
                                                [LOOM_Q4_1] = TOL_Q4_1,
                                                [LOOM_Q5_0] = TOL_Q5_0,
                                                [LOOM_Q5_1] = TOL_Q5_1};
    for (int d = 0; d < n_conv; d++) {
        CHECK(loom_convert(LOOM_F32, src, (loom_dtype)d, a, N) == LOOM_OK);
        CHECK(loom_convert((loom_dtype)d, a, LOOM_F32, back, N) == LOOM_OK);
        float maxerr = 0;
        for (int i = 0; i < N; i++)
            maxerr = fmaxf(maxerr, fabsf(back[i] - src[i]));
        CHECK_MSG(maxerr <= tol[d], "%s round trip max error %g", loom_dtype_name((loom_dtype)d),
                  (double)maxerr);
    }

    /* Unaligned f32 source takes the copying path and gives the same bytes. */
    uint8_t *mis = (uint8_t *)malloc(N * 4 + 1);
    if (mis) {
        memcpy(mis + 1, src, N * 4);
        CHECK(loom_convert(LOOM_F32, mis + 1, LOOM_Q4_0, b1, N) == LOOM_OK);
        CHECK(loom_convert(LOOM_F32, src, LOOM_Q4_0, b2, N) == LOOM_OK);
        CHECK(memcmp(b1, b2, loom_dtype_nbytes(LOOM_Q4_0, N)) == 0);
        CHECK(loom_convert(LOOM_F32, mis + 1, LOOM_NF4_DQ, b1, N) == LOOM_OK);
        CHECK(loom_convert(LOOM_F32, src, LOOM_NF4_DQ, b2, N) == LOOM_OK);
        CHECK(memcmp(b1, b2, loom_dtype_nbytes(LOOM_NF4_DQ, N)) == 0);
        free(mis);
    }

    /* Errors. */
    CHECK(loom_convert(LOOM_F32, src, LOOM_Q4_0, a, 48) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_convert(LOOM_Q8_0, a, LOOM_NF4, b1, 96) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_convert(LOOM_NF4, a, LOOM_F32, b1, 32) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_convert(LOOM_F32, src, LOOM_F16, a, -1) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_convert(LOOM_F32, NULL, LOOM_F16, a, 4) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_convert(LOOM_F32, src, LOOM_DTYPE_COUNT, a, 4) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_convert(LOOM_F32, src, LOOM_F16, a, 0) == LOOM_OK);
}

/* ---- k-quants (ir/dtype_kquant.c) ----
 * Blocks packed here from chosen integer codes and scales, following ggml's
 * layouts as documented in ggml-common.h, then dequantized by loom: the
 * expected values are exact in float32. Bit-exactness against gguf-py on
 * random blocks and real files is scripts/check_kquant.py's job. */

static void put_f16(uint8_t *p, float f) {
    uint16_t h = loom_f32_to_f16(f);
    memcpy(p, &h, 2);
}

static int kq_code(int v, int mod) {
    return (v * 7 + v / 16) % mod;
}

static void test_kquant_known(void) {
    float y[LOOM_QK_K];
    uint8_t blk[sizeof(loom_block_q8_K)];
    int bad;

    /* q2_K: 2-bit codes, per-16 scale (low nibble) and min (high nibble). */
    memset(blk, 0, sizeof blk);
    loom_block_q2_K *b2 = (loom_block_q2_K *)blk;
    for (int i = 0; i < 16; i++)
        b2->scales[i] = (uint8_t)((i % 16) | (((i * 5) % 16) << 4));
    for (int v = 0; v < 256; v++)
        b2->qs[32 * (v / 128) + v % 32] |= (uint8_t)(kq_code(v, 4) << (2 * ((v / 32) % 4)));
    put_f16(blk + offsetof(loom_block_q2_K, d), 0.5f);
    put_f16(blk + offsetof(loom_block_q2_K, dmin), 0.25f);
    CHECK(loom_dequantize_row(LOOM_Q2_K, blk, y, 256) == LOOM_OK);
    bad = 0;
    for (int v = 0; v < 256; v++) {
        int i = v / 16;
        bad +=
            y[v] != 0.5f * (float)(i % 16) * (float)kq_code(v, 4) - 0.25f * (float)((i * 5) % 16);
    }
    CHECK_MSG(bad == 0, "q2_K: %d values differ", bad);

    /* q3_K: 6-bit scales biased by 32, hmask bit set = no -4 offset. */
    memset(blk, 0, sizeof blk);
    loom_block_q3_K *b3 = (loom_block_q3_K *)blk;
    int sc3[16];
    for (int i = 0; i < 16; i++) {
        sc3[i] = (i * 9) % 64;
        b3->scales[i % 8] |= (uint8_t)((sc3[i] & 15) << (4 * (i / 8)));
        b3->scales[8 + i % 4] |= (uint8_t)((sc3[i] >> 4) << (2 * (i / 4)));
    }
    for (int v = 0; v < 256; v++) {
        int q = kq_code(v, 8) - 4; /* -4..3 */
        int lo = q & 3, hb = q >= 0;
        b3->qs[32 * (v / 128) + v % 32] |= (uint8_t)(lo << (2 * ((v / 32) % 4)));
        b3->hmask[v % 32] |= (uint8_t)(hb << (v / 32));
    }
    put_f16(blk + offsetof(loom_block_q3_K, d), 0.125f);
    CHECK(loom_dequantize_row(LOOM_Q3_K, blk, y, 256) == LOOM_OK);
    bad = 0;
    for (int v = 0; v < 256; v++)
        bad += y[v] != 0.125f * (float)(sc3[v / 16] - 32) * (float)(kq_code(v, 8) - 4);
    CHECK_MSG(bad == 0, "q3_K: %d values differ", bad);

    /* q4_K and q5_K: 8 sub-blocks of 32, 6-bit scale and min. */
    for (int five = 0; five < 2; five++) {
        memset(blk, 0, sizeof blk);
        uint8_t *sc = blk + 4;
        int scv[8], mv[8];
        for (int j = 0; j < 8; j++) {
            scv[j] = (j * 13 + 5) % 64;
            mv[j] = (j * 29 + 3) % 64;
            if (j < 4) {
                sc[j] = (uint8_t)scv[j];
                sc[j + 4] = (uint8_t)mv[j];
            } else {
                sc[j + 4] = (uint8_t)((scv[j] & 15) | ((mv[j] & 15) << 4));
                sc[j - 4] |= (uint8_t)((scv[j] >> 4) << 6);
                sc[j] |= (uint8_t)((mv[j] >> 4) << 6);
            }
        }
        uint8_t *qh = blk + 16, *qs = five ? blk + 48 : blk + 16;
        int mod = five ? 32 : 16;
        for (int v = 0; v < 256; v++) {
            int j = v / 32, q = kq_code(v, mod);
            qs[32 * (j / 2) + v % 32] |= (uint8_t)((q & 15) << (4 * (j % 2)));
            if (five) qh[v % 32] |= (uint8_t)((q >> 4) << j);
        }
        put_f16(blk, 0.5f);
        put_f16(blk + 2, 2.0f);
        loom_dtype t = five ? LOOM_Q5_K : LOOM_Q4_K;
        CHECK(loom_dequantize_row(t, blk, y, 256) == LOOM_OK);
        bad = 0;
        for (int v = 0; v < 256; v++)
            bad += y[v] !=
                   0.5f * (float)scv[v / 32] * (float)kq_code(v, mod) - 2.0f * (float)mv[v / 32];
        CHECK_MSG(bad == 0, "%s: %d values differ", loom_dtype_name(t), bad);
    }

    /* q6_K: 6-bit codes biased by 32, int8 scale per 16. */
    memset(blk, 0, sizeof blk);
    loom_block_q6_K *b6 = (loom_block_q6_K *)blk;
    for (int i = 0; i < 16; i++)
        b6->scales[i] = (int8_t)(i * 17 - 128);
    for (int v = 0; v < 256; v++) {
        int h = v / 128, k = (v / 64) % 2, p = v % 64, q = kq_code(v, 64);
        b6->ql[64 * h + p] |= (uint8_t)((q & 15) << (4 * k));
        b6->qh[32 * h + p % 32] |= (uint8_t)((q >> 4) << (2 * ((64 * k + p) / 32)));
    }
    put_f16(blk + offsetof(loom_block_q6_K, d), 0.0625f);
    CHECK(loom_dequantize_row(LOOM_Q6_K, blk, y, 256) == LOOM_OK);
    bad = 0;
    for (int v = 0; v < 256; v++)
        bad += y[v] != 0.0625f * (float)((v / 16) * 17 - 128) * (float)(kq_code(v, 64) - 32);
    CHECK_MSG(bad == 0, "q6_K: %d values differ", bad);

    /* q8_K (activations): ggml's rule, the largest |x| maps to -127 * sign,
     * bsums are the per-16 sums; a zero block has d == 0. */
    float x[2 * LOOM_QK_K];
    for (int i = 0; i < 2 * LOOM_QK_K; i++)
        x[i] = rng_normalish() * 2.0f;
    x[37] = 5.0f; /* the block's maximum, positive */
    for (int i = LOOM_QK_K; i < 2 * LOOM_QK_K; i++)
        x[i] = 0.0f;
    loom_block_q8_K q8[2];
    CHECK(loom_quantize_row(LOOM_Q8_K, x, q8, 2 * LOOM_QK_K) == LOOM_OK);
    CHECK(q8[0].qs[37] == -127 && q8[0].d == 1.0f / (-127.0f / 5.0f));
    CHECK(q8[1].d == 0.0f && q8[1].qs[0] == 0 && q8[1].bsums[3] == 0);
    bad = 0;
    for (int j = 0; j < 16; j++) {
        int s = 0;
        for (int l = 0; l < 16; l++)
            s += q8[0].qs[16 * j + l];
        bad += s != q8[0].bsums[j];
    }
    for (int i = 0; i < LOOM_QK_K; i++) {
        float r = x[i] * (-127.0f / 5.0f);
        bad += fabsf((float)q8[0].qs[i] - r) > 0.5f;
    }
    CHECK_MSG(bad == 0, "q8_K: %d bad quants/bsums", bad);
    float back[2 * LOOM_QK_K];
    CHECK(loom_dequantize_row(LOOM_Q8_K, q8, back, 2 * LOOM_QK_K) == LOOM_OK);
    CHECK(fabsf(back[37] - 5.0f) < 1e-5f && back[LOOM_QK_K] == 0.0f);

    /* q2_K..q6_K quantizers (bytes checked against scripts/kquant_ref.py by
     * the gguf_kquant_quant_ref ctest): error well inside the step of each
     * format, an all-zero block stays zero, and a block quantizes the same
     * alone and inside a longer row. */
    enum { NQ = 8 * LOOM_QK_K };
    static float src[NQ], back2[NQ];
    static uint8_t qb[NQ];
    for (int i = 0; i < NQ; i++)
        src[i] = rng_normalish() * (i < LOOM_QK_K ? 0.0f : 0.05f * (float)(1 + i / 512));
    static const loom_dtype qk[] = {LOOM_Q2_K, LOOM_Q3_K, LOOM_Q4_K, LOOM_Q5_K, LOOM_Q6_K};
    /* rmse / rms per block: about half a step of each format on normal data */
    static const double max_rel_rmse[] = {0.45, 0.25, 0.12, 0.06, 0.03};
    for (int q = 0; q < 5; q++) {
        CHECK(loom_quantize_row(qk[q], src, qb, NQ) == LOOM_OK);
        CHECK(loom_dequantize_row(qk[q], qb, back2, NQ) == LOOM_OK);
        bad = 0;
        for (int i = 0; i < LOOM_QK_K; i++)
            bad += back2[i] != 0.0f;
        for (int b = 1; b < NQ / LOOM_QK_K; b++) {
            double se = 0, ss = 0;
            for (int i = b * LOOM_QK_K; i < (b + 1) * LOOM_QK_K; i++) {
                se += ((double)back2[i] - src[i]) * ((double)back2[i] - src[i]);
                ss += (double)src[i] * src[i];
            }
            bad += !(sqrt(se / ss) <= max_rel_rmse[q]);
        }
        uint8_t one[sizeof(loom_block_q6_K)];
        CHECK(loom_quantize_row(qk[q], src + 3 * LOOM_QK_K, one, LOOM_QK_K) == LOOM_OK);
        bad += memcmp(one, qb + 3 * loom_dtype_block_bytes(qk[q]), loom_dtype_block_bytes(qk[q]));
        CHECK_MSG(bad == 0, "%s quantizer: %d bad blocks", loom_dtype_name(qk[q]), bad);
    }
    CHECK(loom_dequantize_row(LOOM_Q4_K, blk, y, 128) == LOOM_ERR_INVALID_ARG);
}

/* `test_dtype --dequant TYPE IN OUT`: raw blocks of TYPE in IN, float32 out
 * (for scripts/check_kquant.py, which compares with gguf-py). */
static int dequant_file(const char *tname, const char *in, const char *out) {
    loom_dtype t;
    if (loom_dtype_from_name(tname, &t) != LOOM_OK) {
        fprintf(stderr, "dequant: unknown dtype %s\n", tname);
        return 2;
    }
    FILE *f = fopen(in, "rb");
    if (!f) {
        fprintf(stderr, "dequant: cannot open %s\n", in);
        return 2;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    size_t bb = loom_dtype_block_bytes(t);
    int64_t bs = loom_dtype_block_size(t);
    if (len < 0 || bb == 0 || (size_t)len % bb != 0) {
        fclose(f);
        fprintf(stderr, "dequant: %s is not a whole number of %s blocks\n", in, tname);
        return 2;
    }
    int64_t n = (int64_t)((size_t)len / bb) * bs;
    uint8_t *src = malloc((size_t)len + 1);
    float *dst = malloc((size_t)n * sizeof(float) + 1);
    int rc = 2;
    if (src && dst && fread(src, 1, (size_t)len, f) == (size_t)len &&
        loom_dequantize_row(t, src, dst, n) == LOOM_OK) {
        FILE *o = fopen(out, "wb");
        if (o && fwrite(dst, sizeof(float), (size_t)n, o) == (size_t)n) rc = 0;
        if (o && fclose(o) != 0) rc = 2;
    }
    if (rc) fprintf(stderr, "dequant: failed on %s\n", in);
    fclose(f);
    free(src);
    free(dst);
    return rc;
}

/* `test_dtype --quantize TYPE IN OUT`: float32 in IN, blocks of TYPE out. */
static int quantize_file(const char *tname, const char *in, const char *out) {
    loom_dtype t;
    FILE *f = fopen(in, "rb");
    if (loom_dtype_from_name(tname, &t) != LOOM_OK || !f) {
        fprintf(stderr, "quantize: bad dtype %s or unreadable %s\n", tname, in);
        if (f) fclose(f);
        return 2;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    const int64_t n = len > 0 ? len / 4 : 0;
    const size_t nb = loom_dtype_nbytes(t, n);
    float *src = malloc((size_t)n * 4 + 4);
    uint8_t *dst = malloc(nb + 1);
    int rc = 2;
    if (src && dst && nb > 0 && fread(src, 4, (size_t)n, f) == (size_t)n &&
        loom_quantize_row(t, src, dst, n) == LOOM_OK) {
        FILE *o = fopen(out, "wb");
        if (o && fwrite(dst, 1, nb, o) == nb) rc = 0;
        if (o && fclose(o) != 0) rc = 2;
    }
    if (rc) fprintf(stderr, "quantize: failed on %s as %s\n", in, tname);
    fclose(f);
    free(src);
    free(dst);
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "--dequant") == 0)
        return dequant_file(argv[2], argv[3], argv[4]);
    if (argc == 5 && strcmp(argv[1], "--quantize") == 0)
        return quantize_file(argv[2], argv[3], argv[4]);
    test_names();
    test_sizes();
    test_f16();
    test_bf16();
    test_q8_0();
    test_q4_0();
    test_legacy_exact();
    test_legacy_formula();
    test_nf4_tables();
    test_nf4_exact_codes();
    test_nf4_random();
    test_nf4_errors();
    test_rows();
    test_convert();
    test_kquant_known();
    return test_summary("test_dtype");
}
