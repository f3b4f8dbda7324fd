/* rag/index_dist_avx2.c - AVX2 + FMA + F16C distance kernels (see
 * index_dist_avx512.c for why a target pragma). The tail of d % 8 values
 * runs in scalar code. */
#include "rag/index_dist.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC target("avx2,fma,f16c")
#endif

#include <immintrin.h>

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline float h2f(unsigned short h) {
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}

#define LOOP(LOADX, BODY, TAILX, TAILBODY)                                                         \
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();                                     \
    int i = 0;                                                                                     \
    for (; i + 16 <= d; i += 16) {                                                                 \
        __m256 q0 = _mm256_loadu_ps(q + i), x0 = LOADX(i);                                         \
        __m256 q1 = _mm256_loadu_ps(q + i + 8), x1 = LOADX(i + 8);                                 \
        BODY(a0, q0, x0);                                                                          \
        BODY(a1, q1, x1);                                                                          \
    }                                                                                              \
    for (; i + 8 <= d; i += 8) {                                                                   \
        __m256 q0 = _mm256_loadu_ps(q + i), x0 = LOADX(i);                                         \
        BODY(a0, q0, x0);                                                                          \
    }                                                                                              \
    float r = hsum(_mm256_add_ps(a0, a1));                                                         \
    for (; i < d; i++) {                                                                           \
        float xt = TAILX(i);                                                                       \
        TAILBODY(r, q[i], xt);                                                                     \
    }

#define IP(a, q, x) a = _mm256_fmadd_ps(q, x, a)
#define L2(a, q, x)                                                                                \
    do {                                                                                           \
        __m256 t_ = _mm256_sub_ps(q, x);                                                           \
        a = _mm256_fmadd_ps(t_, t_, a);                                                            \
    } while (0)
#define SIP(r, q, x) r += (q) * (x)
#define SL2(r, q, x) r += ((q) - (x)) * ((q) - (x))

#define LX_F32(o) _mm256_loadu_ps(x + (o))
#define TX_F32(o) x[o]
#define LX_F16(o) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + (o))))
#define TX_F16(o) h2f(x[o])
#define LX_I8(o)                                                                                   \
    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(x + (o)))))
#define TX_I8(o)  (float)x[o]
#define LX_I8S(o) _mm256_mul_ps(vs, LX_I8(o))
#define TX_I8S(o) (s * (float)x[o])

static float nip_f32(const float *q, const void *xv, float s, int d) {
    const float *x = xv;
    (void)s;
    LOOP(LX_F32, IP, TX_F32, SIP)
    return -r;
}
static float l2_f32(const float *q, const void *xv, float s, int d) {
    const float *x = xv;
    (void)s;
    LOOP(LX_F32, L2, TX_F32, SL2)
    return r;
}
static float nip_f16(const float *q, const void *xv, float s, int d) {
    const unsigned short *x = xv;
    (void)s;
    LOOP(LX_F16, IP, TX_F16, SIP)
    return -r;
}
static float l2_f16(const float *q, const void *xv, float s, int d) {
    const unsigned short *x = xv;
    (void)s;
    LOOP(LX_F16, L2, TX_F16, SL2)
    return r;
}
static float nip_i8(const float *q, const void *xv, float s, int d) {
    const signed char *x = xv;
    LOOP(LX_I8, IP, TX_I8, SIP)
    return -r * s;
}
static float l2_i8(const float *q, const void *xv, float s, int d) {
    const signed char *x = xv;
    const __m256 vs = _mm256_set1_ps(s);
    LOOP(LX_I8S, L2, TX_I8S, SL2)
    return r;
}

#define BLOCK8(NAME, BODY, SBODY, SIGN)                                                            \
    static void NAME(const float *q, const float *x, int d, float *out) {                          \
        __m256 a[8];                                                                               \
        for (int j = 0; j < 8; j++)                                                                \
            a[j] = _mm256_setzero_ps();                                                            \
        int i = 0;                                                                                 \
        for (; i + 8 <= d; i += 8) {                                                               \
            __m256 xv = _mm256_loadu_ps(x + i);                                                    \
            for (int j = 0; j < 8; j++)                                                            \
                BODY(a[j], _mm256_loadu_ps(q + (size_t)j * d + i), xv);                            \
        }                                                                                          \
        for (int j = 0; j < 8; j++) {                                                              \
            float r = hsum(a[j]);                                                                  \
            for (int t = i; t < d; t++)                                                            \
                SBODY(r, q[(size_t)j * d + t], x[t]);                                              \
            out[j] = SIGN r;                                                                       \
        }                                                                                          \
    }
BLOCK8(nip8_f32, IP, SIP, -)
BLOCK8(l28_f32, L2, SL2, +)

void loom_rag_kernels_avx2(loom_rag_kernels *k) {
    k->dist8[0] = nip8_f32;
    k->dist8[1] = l28_f32;
    k->isa = "avx2";
    k->dist[0][0] = nip_f32;
    k->dist[0][1] = l2_f32;
    k->dist[1][0] = nip_f16;
    k->dist[1][1] = l2_f16;
    k->dist[2][0] = nip_i8;
    k->dist[2][1] = l2_i8;
}

#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
