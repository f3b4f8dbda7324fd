/* kernels/cpu/cpu_avx2.c - the AVX2 (+FMA, F16C) instantiation of
 * cpu_impl.h; see cpu_avx512.c for why a target pragma and not -march. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC target("avx2,fma,f16c")
#endif

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define VN 8
typedef __m256 vf;
typedef __m256i vi;

#define V_LOAD(p)      _mm256_loadu_ps(p)
#define V_STORE(p, v)  _mm256_storeu_ps(p, v)
#define V_ZERO()       _mm256_setzero_ps()
#define V_SET1(x)      _mm256_set1_ps(x)
#define V_ADD(a, b)    _mm256_add_ps(a, b)
#define V_SUB(a, b)    _mm256_sub_ps(a, b)
#define V_MUL(a, b)    _mm256_mul_ps(a, b)
#define V_DIV(a, b)    _mm256_div_ps(a, b)
#define V_MAX(a, b)    _mm256_max_ps(a, b)
#define V_MIN(a, b)    _mm256_min_ps(a, b)
#define V_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define V_HSUM(v)      v_hsum(v)
#define V_HMAX(v)      v_hmax(v)
#define V_ROUND(v)     _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define V_CVT_I(v)     _mm256_cvtps_epi32(v)
#define LC_ENTRY       loom_cpu_kernel_for_avx2
#define LC_MP_ENTRY    loom_cpu_multipass_for_avx2
#define LC_A8_ENTRY    loom_cpu_act8_for_avx2

static inline float v_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline float v_hmax(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline vf v_pow2i(vi n) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23));
}
static inline __m256i v_tail_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
/* In-register transpose of 8 rows of 8 floats: r[i][j] <- r[j][i]. */
static inline void v_transpose(vf r[8]) {
    vf t[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x20);
        t[i + 4] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x31);
    }
    for (int i = 0; i < 8; i++)
        r[i] = t[i];
}
static inline vf v_load_tail(const float *p, int n) {
    return _mm256_maskload_ps(p, v_tail_mask(n));
}
static inline void v_store_tail(float *p, vf v, int n) {
    _mm256_maskstore_ps(p, v_tail_mask(n), v);
}
static inline vf v_load_f16(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
static inline vf v_load_bf16(const uint16_t *p) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
/* VN values to f16 / bf16, rounded to nearest even, NaN kept quiet: the same
 * bits as loom_f32_to_f16 / loom_f32_to_bf16 (F16C's vcvtps2ph is IEEE RNE
 * with subnormals; bf16 is the scalar formula on 8 lanes). */
static inline void v_store_f16(uint16_t *p, vf v) {
    _mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}
static inline void v_store_bf16(uint16_t *p, vf v) {
    const __m256i x = _mm256_castps_si256(v);
    __m256i r = _mm256_add_epi32(
        x, _mm256_add_epi32(_mm256_set1_epi32(0x7fff),
                            _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1))));
    r = _mm256_srli_epi32(r, 16);
    const __m256i abs = _mm256_and_si256(x, _mm256_set1_epi32(0x7fffffff));
    const __m256i nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7f800000));
    r = _mm256_blendv_epi8(r, _mm256_or_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(0x40)),
                           nan);
    /* 32 -> 16 bits: values are < 2^16, so unsigned saturation is exact */
    const __m256i pk = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
    _mm_storeu_si128((__m128i *)p, _mm256_castsi256_si128(pk));
}
static inline vf v_q8(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}
/* Vector j (elements 8j..8j+7) of a q4_0 block: low nibbles of bytes
 * 0..7 / 8..15 for j = 0 / 1, high nibbles for j = 2 / 3. */
static inline vf v_q4(const uint8_t *qs, int j) {
    __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(qs + (j & 1) * 8)));
    v = j >= 2 ? _mm256_srli_epi32(v, 4) : _mm256_and_si256(v, _mm256_set1_epi32(15));
    return _mm256_cvtepi32_ps(_mm256_sub_epi32(v, _mm256_set1_epi32(8)));
}
/* Vector j of a q4_1 block: the unsigned nibbles (0..15), ordered as v_q4. */
static inline vf v_q4u(const uint8_t *qs, int j) {
    __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(qs + (j & 1) * 8)));
    v = j >= 2 ? _mm256_srli_epi32(v, 4) : _mm256_and_si256(v, _mm256_set1_epi32(15));
    return _mm256_cvtepi32_ps(v);
}
/* Vector j of a q5_0/q5_1 block minus off (16 for q5_0, 0 for q5_1): the
 * nibbles as v_q4u, bit 4 of element e from bit e of qh. */
static inline vf v_q5(const uint8_t *qs, uint32_t qh, int j, int off) {
    __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(qs + (j & 1) * 8)));
    v = j >= 2 ? _mm256_srli_epi32(v, 4) : _mm256_and_si256(v, _mm256_set1_epi32(15));
    __m256i h = _mm256_srlv_epi32(_mm256_set1_epi32((int)(qh >> (8 * j))),
                                  _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    h = _mm256_slli_epi32(_mm256_and_si256(h, _mm256_set1_epi32(1)), 4);
    return _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_or_si256(v, h), _mm256_set1_epi32(off)));
}
typedef struct nf4_tab {
    vf lo, hi;
} nf4_tab;
static inline nf4_tab v_nf4_tab(const float *code) {
    nf4_tab r = {_mm256_loadu_ps(code), _mm256_loadu_ps(code + 8)};
    return r;
}
/* 8 nf4 values from 4 code bytes: two 8-entry lookups blended on bit 3. */
static inline vf v_nf4(const uint8_t *codes, nf4_tab tab) {
    int32_t w;
    memcpy(&w, codes, sizeof w);
    const __m128i b = _mm_cvtsi32_si128(w);
    const __m128i m = _mm_set1_epi8(15);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), m), lo = _mm_and_si128(b, m);
    const __m256i idx = _mm256_cvtepu8_epi32(_mm_unpacklo_epi8(hi, lo));
    const vf a = _mm256_permutevar8x32_ps(tab.lo, idx), c = _mm256_permutevar8x32_ps(tab.hi, idx);
    return _mm256_blendv_ps(a, c, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
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
