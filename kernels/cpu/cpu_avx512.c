/* kernels/cpu/cpu_avx512.c - the AVX-512 instantiation of cpu_impl.h.
 *
 * Compiled for every x86-64 build with a target pragma (a function-level
 * target attribute on everything below), not -march: the same binary runs
 * on CPUs without AVX-512, and the dispatcher only calls in here when cpuid
 * says the instructions exist. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c"))),        \
                             apply_to = function)
#else
#pragma GCC target("avx512f,avx512bw,avx512vl,fma,f16c")
#endif

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define VN 16
typedef __m512 vf;
typedef __m512i vi;

#define V_LOAD(p)      _mm512_loadu_ps(p)
#define V_STORE(p, v)  _mm512_storeu_ps(p, v)
#define V_ZERO()       _mm512_setzero_ps()
#define V_SET1(x)      _mm512_set1_ps(x)
#define V_ADD(a, b)    _mm512_add_ps(a, b)
#define V_SUB(a, b)    _mm512_sub_ps(a, b)
#define V_MUL(a, b)    _mm512_mul_ps(a, b)
#define V_DIV(a, b)    _mm512_div_ps(a, b)
#define V_MAX(a, b)    _mm512_max_ps(a, b)
#define V_MIN(a, b)    _mm512_min_ps(a, b)
#define V_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define V_HSUM(v)      _mm512_reduce_add_ps(v)
#define V_HMAX(v)      _mm512_reduce_max_ps(v)
#define V_ROUND(v)     _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define V_CVT_I(v)     _mm512_cvtps_epi32(v)
#define LC_ENTRY       loom_cpu_kernel_for_avx512
#define LC_MP_ENTRY    loom_cpu_multipass_for_avx512
#define LC_A8_ENTRY    loom_cpu_act8_for_avx512

static inline vf v_pow2i(vi n) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n, _mm512_set1_epi32(127)), 23));
}
/* In-register transpose of 16 rows of 16 floats: r[i][j] <- r[j][i]
 * (unpack pairs, then 4x4 blocks in 128-bit lanes, then the lanes). */
static inline void v_transpose(vf r[16]) {
    vf t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
        r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
        r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xdd);
    }
}
static inline vf v_load_tail(const float *p, int n) {
    return _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1u), p);
}
static inline void v_store_tail(float *p, vf v, int n) {
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1u), v);
}
static inline vf v_load_f16(const uint16_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}
static inline vf v_load_bf16(const uint16_t *p) {
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
/* VN values to f16 / bf16, rounded to nearest even, NaN kept quiet: the same
 * bits as loom_f32_to_f16 / loom_f32_to_bf16 (vcvtps2ph is IEEE RNE with
 * subnormals; bf16 is the scalar formula on 16 lanes). */
static inline void v_store_f16(uint16_t *p, vf v) {
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}
static inline void v_store_bf16(uint16_t *p, vf v) {
    const __m512i x = _mm512_castps_si512(v);
    const __m512i one = _mm512_set1_epi32(1);
    __m512i r =
        _mm512_add_epi32(x, _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                                             _mm512_and_si512(_mm512_srli_epi32(x, 16), one)));
    r = _mm512_srli_epi32(r, 16);
    const __m512i abs = _mm512_and_si512(x, _mm512_set1_epi32(0x7fffffff));
    const __mmask16 nan = _mm512_cmpgt_epi32_mask(abs, _mm512_set1_epi32(0x7f800000));
    r = _mm512_mask_mov_epi32(r, nan,
                              _mm512_or_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(0x40)));
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtepi32_epi16(r));
}
static inline vf v_q8(const int8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
}
/* Vector j of a q4_0 block (elements 16j..16j+15): low nibbles of the 16
 * code bytes for j = 0, high nibbles for j = 1. vpermps reads only the low 4
 * bits of each index, so a table of the 16 values (q - 8) replaces the mask,
 * the subtraction and the int->float conversion: 512-bit ALU ports are the
 * bottleneck of decode, not memory, so every op counts. */
static const float k_q4_vals[16] = {-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7};
static inline vf v_q4(const uint8_t *qs, int j) {
    const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)qs));
    return _mm512_permutexvar_ps(j ? _mm512_srli_epi32(v, 4) : v, _mm512_loadu_ps(k_q4_vals));
}
/* Vector j of a q4_1 block: the unsigned nibbles (0..15), ordered as v_q4,
 * by the same table lookup (vpermps reads the low 4 index bits). */
static const float k_q5_vals[32] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                                    16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
static inline vf v_q4u(const uint8_t *qs, int j) {
    const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)qs));
    return _mm512_permutexvar_ps(j ? _mm512_srli_epi32(v, 4) : v, _mm512_loadu_ps(k_q5_vals));
}
/* Vector j of a q5_0/q5_1 block minus off (16 for q5_0, 0 for q5_1): index
 * nibble | (bit e of qh) << 4 into the 32 values (vpermt2ps reads 5 bits). */
static inline vf v_q5(const uint8_t *qs, uint32_t qh, int j, int off) {
    const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)qs));
    const __m512i v = j ? _mm512_srli_epi32(b, 4) : b;
    const __m512i h = _mm512_maskz_mov_epi32((__mmask16)(qh >> (16 * j)), _mm512_set1_epi32(16));
    const __m512i idx = _mm512_ternarylogic_epi32(v, _mm512_set1_epi32(15), h, 0xEA); /* a&b|c */
    const vf t =
        _mm512_permutex2var_ps(_mm512_loadu_ps(k_q5_vals), idx, _mm512_loadu_ps(k_q5_vals + 16));
    return off ? _mm512_sub_ps(t, _mm512_set1_ps((float)off)) : t;
}
typedef struct nf4_tab {
    vf t;
} nf4_tab;
static inline nf4_tab v_nf4_tab(const float *code) {
    nf4_tab r = {_mm512_loadu_ps(code)};
    return r;
}
/* 16 nf4 values from 8 code bytes (first value in the high nibble): each
 * byte is duplicated into two dword lanes, the even lanes shifted right by
 * 4, and the 16-entry codebook (one register) is indexed by the low 4 bits. */
static inline vf v_nf4(const uint8_t *codes, nf4_tab tab) {
    const __m128i b = _mm_loadl_epi64((const __m128i *)codes);
    const __m512i v = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(b, b));
    return _mm512_permutexvar_ps(_mm512_mask_srli_epi32(v, 0x5555, v, 4), tab.t);
}
static inline float v_f16s(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return _cvtsh_ss(h);
}

#include "kernels/cpu/cpu_impl.h"

#if defined(__clang__)
#pragma clang attribute pop
#endif

#endif
