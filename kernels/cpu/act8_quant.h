/* kernels/cpu/act8_quant.h - loom_act8_quantize_row (kernels/ref/ref_act8.c)
 * 8 lanes at a time, producing the same bytes, for the cpu's int8-activation
 * matmul (ADR 0036). A decode step quantizes every activation row it
 * multiplies; the scalar version's roundf/fmaxf calls were ~4% of a q8_0
 * decode step.
 *
 * Same bytes, by construction: amax is an exact max; the scale d = amax /
 * 127 and its inverse are the same scalar IEEE operations; x * id is the same
 * f32 product per lane; and roundf's half-away-from-zero is rebuilt exactly
 * from truncation: t = trunc(y), and y - t is exact for |y| < 2^23 (here
 * |y| <= 127), so |y - t| >= 0.5 decides the step away from zero as roundf
 * does. tests/ir/test_act8_simd.c checks it against the reference bit for bit
 * (finite inputs: NaN/inf activations have no defined codes either way).
 *
 * Header-only with a target attribute, so that the AVX2 and AVX-512
 * instantiations of the cpu kernels and the test can all include it. */
#ifndef LOOM_KERNELS_CPU_ACT8_QUANT_H
#define LOOM_KERNELS_CPU_ACT8_QUANT_H

#include <immintrin.h>
#include <stdint.h>

#include "loom/backend_sdk.h"

#define LOOM_A8Q_TGT __attribute__((target("avx2,fma")))

/* x: k floats (k a multiple of LOOM_ACT8_QK); q: k codes; d, s: k / 32
 * block scales and code sums, as loom_act8_quantize_row. */
static inline LOOM_A8Q_TGT void loom_cpu_act8_quantize_row(const float *x, int64_t k, int8_t *q,
                                                           float *d, int32_t *s) {
    const __m256 sign = _mm256_set1_ps(-0.0f), half = _mm256_set1_ps(0.5f);
    const __m256 one = _mm256_set1_ps(1.0f);
    /* _mm256_packs_* work per 128-bit lane: this puts the 4-byte groups back
     * in order */
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < k / LOOM_ACT8_QK; b++) {
        const float *xb = x + b * LOOM_ACT8_QK;
        __m256 v[4], mx = _mm256_setzero_ps();
        for (int j = 0; j < 4; j++) {
            v[j] = _mm256_loadu_ps(xb + 8 * j);
            mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, v[j]));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        float db = amax / 127.0f, id = db != 0.0f ? 1.0f / db : 0.0f;
        if (id > 3.4028235e38f) db = 0.0f, id = 0.0f; /* as the reference: 1 / db overflowed */
        const __m256 vid = _mm256_set1_ps(id);
        __m256i iv[4], acc = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            const __m256 y = _mm256_mul_ps(v[j], vid);
            const __m256 t = _mm256_round_ps(y, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            const __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(y, t));
            const __m256 away = _mm256_or_ps(one, _mm256_and_ps(sign, y)); /* +-1 as y */
            const __m256 step = _mm256_and_ps(_mm256_cmp_ps(frac, half, _CMP_GE_OQ), away);
            iv[j] = _mm256_cvttps_epi32(_mm256_add_ps(t, step));
            acc = _mm256_add_epi32(acc, iv[j]);
        }
        const __m256i p =
            _mm256_packs_epi16(_mm256_packs_epi32(iv[0], iv[1]), _mm256_packs_epi32(iv[2], iv[3]));
        _mm256_storeu_si256((__m256i *)(q + b * LOOM_ACT8_QK),
                            _mm256_permutevar8x32_epi32(p, order));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(1, 0, 3, 2)));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(2, 3, 0, 1)));
        d[b] = db;
        s[b] = _mm_cvtsi128_si32(s4);
    }
}

#endif
