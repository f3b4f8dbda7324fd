/* rag/index_dist_avx512.c - AVX-512 (F, BW, VL) distance kernels. Compiled
 * with a target pragma, not -march, so one binary runs everywhere and
 * index_dist.c picks these only on CPUs that have them (as kernels/cpu). */
#include "rag/index_dist.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c"))),        \
                             apply_to = function)
#else
#pragma GCC target("avx512f,avx512bw,avx512vl,fma,f16c")
#endif

#include <immintrin.h>

/* Two accumulators hide the FMA latency; the tail is a masked load, so any
 * d works without a scalar loop. */
#define LOOP(LOADX, BODY)                                                                          \
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();                                     \
    int i = 0;                                                                                     \
    for (; i + 32 <= d; i += 32) {                                                                 \
        __m512 q0 = _mm512_loadu_ps(q + i), x0 = LOADX(i);                                         \
        __m512 q1 = _mm512_loadu_ps(q + i + 16), x1 = LOADX(i + 16);                               \
        BODY(a0, q0, x0);                                                                          \
        BODY(a1, q1, x1);                                                                          \
    }                                                                                              \
    for (; i + 16 <= d; i += 16) {                                                                 \
        __m512 q0 = _mm512_loadu_ps(q + i), x0 = LOADX(i);                                         \
        BODY(a0, q0, x0);                                                                          \
    }                                                                                              \
    if (i < d) {                                                                                   \
        __mmask16 m = (__mmask16)((1u << (d - i)) - 1);                                            \
        __m512 q0 = _mm512_maskz_loadu_ps(m, q + i), x0 = MLOADX(m, i);                            \
        BODY(a1, q0, x0);                                                                          \
    }                                                                                              \
    float r = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));

#define IP(a, q, x) a = _mm512_fmadd_ps(q, x, a)
#define L2(a, q, x)                                                                                \
    do {                                                                                           \
        __m512 t_ = _mm512_sub_ps(q, x);                                                           \
        a = _mm512_fmadd_ps(t_, t_, a);                                                            \
    } while (0)

#define LX_F32(o)     _mm512_loadu_ps(x + (o))
#define MLX_F32(m, o) _mm512_maskz_loadu_ps(m, x + (o))
#define LX_F16(o)     _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + (o))))
#define MLX_F16(m, o) _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + (o)))
#define LX_I8(o)                                                                                   \
    _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(x + (o)))))
#define MLX_I8(m, o) _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, x + (o))))
/* int8 L2: scale the row on load, so the loop is the f32 one. */
#define LX_I8S(o)     _mm512_mul_ps(vs, LX_I8(o))
#define MLX_I8S(m, o) _mm512_mul_ps(vs, MLX_I8(m, o))

static float nip_f32(const float *q, const void *xv, float s, int d) {
    const float *x = xv;
    (void)s;
#define MLOADX MLX_F32
    LOOP(LX_F32, IP)
#undef MLOADX
    return -r;
}
static float l2_f32(const float *q, const void *xv, float s, int d) {
    const float *x = xv;
    (void)s;
#define MLOADX MLX_F32
    LOOP(LX_F32, L2)
#undef MLOADX
    return r;
}
static float nip_f16(const float *q, const void *xv, float s, int d) {
    const unsigned short *x = xv;
    (void)s;
#define MLOADX MLX_F16
    LOOP(LX_F16, IP)
#undef MLOADX
    return -r;
}
static float l2_f16(const float *q, const void *xv, float s, int d) {
    const unsigned short *x = xv;
    (void)s;
#define MLOADX MLX_F16
    LOOP(LX_F16, L2)
#undef MLOADX
    return r;
}
static float nip_i8(const float *q, const void *xv, float s, int d) {
    const signed char *x = xv;
#define MLOADX MLX_I8
    LOOP(LX_I8, IP)
#undef MLOADX
    return -r * s;
}
static float l2_i8(const float *q, const void *xv, float s, int d) {
    const signed char *x = xv;
    const __m512 vs = _mm512_set1_ps(s);
#define MLOADX MLX_I8S
    LOOP(LX_I8S, L2)
#undef MLOADX
    return r;
}

/* 8 accumulators, one row load shared by the eight queries. */
#define BLOCK8(NAME, BODY, SIGN)                                                                   \
    static void NAME(const float *q, const float *x, int d, float *out) {                          \
        __m512 a[8];                                                                               \
        for (int j = 0; j < 8; j++)                                                                \
            a[j] = _mm512_setzero_ps();                                                            \
        int i = 0;                                                                                 \
        for (; i + 16 <= d; i += 16) {                                                             \
            __m512 xv = _mm512_loadu_ps(x + i);                                                    \
            for (int j = 0; j < 8; j++)                                                            \
                BODY(a[j], _mm512_loadu_ps(q + (size_t)j * d + i), xv);                            \
        }                                                                                          \
        if (i < d) {                                                                               \
            __mmask16 m = (__mmask16)((1u << (d - i)) - 1);                                        \
            __m512 xv = _mm512_maskz_loadu_ps(m, x + i);                                           \
            for (int j = 0; j < 8; j++)                                                            \
                BODY(a[j], _mm512_maskz_loadu_ps(m, q + (size_t)j * d + i), xv);                   \
        }                                                                                          \
        for (int j = 0; j < 8; j++)                                                                \
            out[j] = SIGN _mm512_reduce_add_ps(a[j]);                                              \
    }
BLOCK8(nip8_f32, IP, -)
BLOCK8(l28_f32, L2, +)

void loom_rag_kernels_avx512(loom_rag_kernels *k) {
    k->dist8[0] = nip8_f32;
    k->dist8[1] = l28_f32;
    k->isa = "avx512";
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
