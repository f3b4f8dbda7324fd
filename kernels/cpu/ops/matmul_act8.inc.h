/* kernels/cpu/ops/matmul_act8.inc.h - decode / small-batch matmul with int8
 * activations (ADR 0036): each activation row is quantized per 32 values
 * (kernels/cpu/act8_quant.h: the reference's loom_act8_quantize_row, the same
 * bytes 8 lanes at a time) and every weight
 * block is dotted with it in integers: AVX-512 VNNI vpdpbusd (u8 x s8 -> s32)
 * two 32-value blocks per instruction, AVX2 vpmaddubsw + vpmaddwd per block.
 * Included by kernels/cpu/cpu_impl.h, so compiled once per ISA; the integer
 * code is width-specific, hence the VN == 16 sections. The AVX-512 file
 * compiles it only for CPUs with VNNI (A8_TGT adds the target); on AVX-512
 * without VNNI the dispatcher uses the AVX2 instantiation.
 *
 * Weights are unsigned codes u (nibbles, 5-bit, 6-bit; q8_0 on VNNI as
 * w ^ 0x80) with a constant offset (q4_0 8, q5_0 16, q6_K 32, q8_0 128), so
 * sum((u - off) q) = sum(u q) - off sum(q). The second term is folded into
 * the accumulator's start value: xo holds -off * (sum of 4 consecutive q),
 * one int32 per output lane of vpdpbusd / vpmaddwd (both sum 4 adjacent
 * bytes into lane i), so the block dot is exact in integers. Types with a
 * min (q4_1, q5_1, q4_K) add m_w * d_x * sum(q) per block. */

#include "kernels/cpu/act8_quant.h"

#if VN == 16
#define A8_TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")))
#else
#define A8_TGT
#endif

/* Offset of the unsigned codes the integer dot sees, per weight type. */
static int a8_off(loom_dtype t) {
    switch (t) {
    case LOOM_Q4_0:
        return 8;
    case LOOM_Q5_0:
        return 16;
    case LOOM_Q6_K:
        return 32;
    case LOOM_Q8_0:
        return VN == 16 ? 128 : 0; /* AVX2 multiplies signed weights by the sign trick */
    default:
        return 0;
    }
}

/* One quantized activation row. */
typedef struct a8_x {
    const int8_t *q;   /* K codes */
    const float *d;    /* K/32 scales */
    const float *ds;   /* K/32: d * sum(q), for the min terms */
    const float *dds;  /* K/32 pairs (d, ds) */
    const int32_t *xo; /* K/4: -off * sum of 4 codes */
} a8_x;

/* ---- 256-bit helpers: one 32-value block ---- */

/* 32 nibbles of 16 bytes in element order: low nibbles then high. */
static inline A8_TGT __m256i a8_nib(const uint8_t *qs) {
    const __m128i t = _mm_loadu_si128((const __m128i *)qs), m = _mm_set1_epi8(15);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(t, 4), m), _mm_and_si128(t, m));
}

/* 0x10 in byte e where bit e of qh is set (the 5th bit of q5_0/q5_1). */
static inline A8_TGT __m256i a8_bit5(uint32_t qh) {
#if VN == 16
    return _mm256_maskz_mov_epi8((__mmask32)qh, _mm256_set1_epi8(0x10));
#else
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                           0x0101010101010101, 0x0000000000000000);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), shuf);
    b = _mm256_or_si256(b, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_and_si256(_mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1)), _mm256_set1_epi8(0x10));
#endif
}

/* acc + per-lane sums of 4 products u8 w x s8 q. */
static inline A8_TGT __m256i a8_dp(__m256i acc, __m256i w, __m256i q) {
#if VN == 16
    return _mm256_dpbusd_epi32(acc, w, q);
#else
    return _mm256_add_epi32(
        acc, _mm256_madd_epi16(_mm256_maddubs_epi16(w, q), _mm256_set1_epi16(1)));
#endif
}

static inline A8_TGT __m256i a8_xo(const a8_x *x, int64_t k) {
    return _mm256_loadu_si256((const __m256i *)(x->xo + k / 4));
}
static inline A8_TGT __m256i a8_q(const a8_x *x, int64_t k) {
    return _mm256_loadu_si256((const __m256i *)(x->q + k));
}

static inline A8_TGT float a8_hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Integer dot of legacy block i (32 values at k = 32 i) with x, as s32 lanes. */
static inline A8_TGT __attribute__((always_inline)) __m256i
a8_legacy1(loom_dtype t, const uint8_t *b, const a8_x *x, int64_t k) {
    const __m256i q = a8_q(x, k);
    if (t == LOOM_Q8_0) {
        const __m256i w = _mm256_loadu_si256((const __m256i *)(b + 2));
#if VN == 16
        return a8_dp(a8_xo(x, k), _mm256_xor_si256(w, _mm256_set1_epi8((char)0x80)), q);
#else
        return a8_dp(_mm256_setzero_si256(), _mm256_sign_epi8(w, w), _mm256_sign_epi8(q, w));
#endif
    }
    const mm_legacy L = mm_legacy_of(t == LOOM_Q4_0 ? LOOM_Q4_1 : t);
    __m256i w = a8_nib(b + (t == LOOM_Q4_0 ? 2 : L.qs));
    if (L.five) w = _mm256_or_si256(w, a8_bit5(mm_legacy_qh(&L, b)));
    return a8_dp(t == LOOM_Q4_1 || t == LOOM_Q5_1 ? _mm256_setzero_si256() : a8_xo(x, k), w, q);
}

/* q4_0 / q4_1 / q5_0 / q5_1 / q8_0 row . x. Inlined once per type. */
static inline A8_TGT __attribute__((always_inline)) float a8_dot_legacy(loom_dtype t,
                                                                        const uint8_t *b,
                                                                        const a8_x *x, int64_t K) {
    const int bytes = t == LOOM_Q8_0   ? 34
                      : t == LOOM_Q4_0 ? 18
                      : t == LOOM_Q4_1 ? 20
                      : t == LOOM_Q5_0 ? 22
                                       : 24;
    const bool has_m = t == LOOM_Q4_1 || t == LOOM_Q5_1;
    const int64_t nb = K / 32;
    int64_t i = 0;
    float mins0 = 0.0f, mins1 = 0.0f;
#if VN == 16
    /* Two blocks per vpdpbusd: lanes 0-7 block i, 8-15 block i + 1. */
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    __m128 macc = _mm_setzero_ps();
    for (; i + 2 <= nb; i += 2, b += 2 * bytes) {
        __builtin_prefetch(b + MM_PREFETCH);
        const __m512i q = _mm512_loadu_si512(x->q + 32 * i);
        __m512i w, a;
        if (t == LOOM_Q8_0) {
            w = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(b + 2))),
                _mm256_loadu_si256((const __m256i *)(b + bytes + 2)), 1);
            w = _mm512_xor_si512(w, _mm512_set1_epi8((char)0x80));
        } else {
            const mm_legacy L = mm_legacy_of(t == LOOM_Q4_0 ? LOOM_Q4_1 : t);
            const int qs = t == LOOM_Q4_0 ? 2 : L.qs;
            const __m256i v = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(b + bytes + qs)),
                                               _mm_loadu_si128((const __m128i *)(b + qs)));
            const __m256i m = _mm256_set1_epi8(15);
            w = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(v, m)),
                                   _mm256_and_si256(_mm256_srli_epi16(v, 4), m), 1);
            /* [lo0 lo1 hi0 hi1] -> [lo0 hi0 lo1 hi1]: element order of both blocks */
            w = _mm512_shuffle_i64x2(w, w, _MM_SHUFFLE(3, 1, 2, 0));
            if (L.five) {
                const uint64_t qh = (uint64_t)mm_legacy_qh(&L, b) |
                                    (uint64_t)mm_legacy_qh(&L, b + bytes) << 32;
                w = _mm512_or_si512(w, _mm512_maskz_mov_epi8(qh, _mm512_set1_epi8(0x10)));
            }
        }
        a = has_m ? _mm512_setzero_si512() : _mm512_loadu_si512(x->xo + 8 * i);
        a = _mm512_dpbusd_epi32(a, w, q);
        /* Both blocks' d (and m) in one conversion: halves [d0 m0 d1 m1]
         * times [dx0 ds0 dx1 ds1]; lanes 0 and 2 scale the s32 lanes, 1 and
         * 3 are the min terms. */
        uint32_t h0, h1;
        memcpy(&h0, b, 4);
        memcpy(&h1, b + bytes, 4);
        if (!has_m) h0 &= 0xFFFFu, h1 &= 0xFFFFu;
        const __m128 p = _mm_mul_ps(_mm_cvtph_ps(_mm_set_epi32(0, 0, (int)h1, (int)h0)),
                                    _mm_loadu_ps(x->dds + 2 * i));
        const __m512 sc = _mm512_permutexvar_ps(
            _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0),
            _mm512_castps128_ps512(p));
        if (i & 2)
            acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), sc, acc1);
        else
            acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), sc, acc0);
        if (has_m) macc = _mm_add_ps(macc, p);
    }
    float tail = 0.0f;
    for (; i < nb; i++, b += bytes) {
        const __m256i a = a8_legacy1(t, b, x, 32 * i);
        tail += a8_hsum256(_mm256_mul_ps(_mm256_cvtepi32_ps(a), _mm256_set1_ps(v_f16s(b) * x->d[i])));
        if (has_m) mins0 += v_f16s(b + 2) * x->ds[i];
    }
    if (has_m) {
        float ml[4];
        _mm_storeu_ps(ml, macc);
        mins1 += ml[1] + ml[3];
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + tail + mins0 + mins1;
#else
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (; i < nb; i++, b += bytes) {
        __builtin_prefetch(b + MM_PREFETCH);
        const __m256i a = a8_legacy1(t, b, x, 32 * i);
        const __m256 sc = _mm256_set1_ps(v_f16s(b) * x->d[i]);
        if (i & 1) {
            acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a), sc, acc1);
            if (has_m) mins1 += v_f16s(b + 2) * x->ds[i];
        } else {
            acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a), sc, acc0);
            if (has_m) mins0 += v_f16s(b + 2) * x->ds[i];
        }
    }
    return a8_hsum256(_mm256_add_ps(acc0, acc1)) + mins0 + mins1;
#endif
}

/* q4_K: sub-block j (32 values, 6-bit scale and min) is x block j of the
 * super-block; 32 code bytes hold sub-blocks 2c (low nibbles) and 2c + 1. */
static A8_TGT float a8_dot_q4_K(const uint8_t *b, const a8_x *x, int64_t K) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float mins = 0.0f;
    const __m256i m4 = _mm256_set1_epi8(15);
    for (int64_t i = 0; i < K / LOOM_QK_K; i++, b += 144) {
        __builtin_prefetch(b + MM_PREFETCH);
        const float d = v_f16s(b), dmin = v_f16s(b + 2);
        const int64_t x0 = 8 * i; /* first x block */
        for (int c = 0; c < 4; c++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * c));
            const __m256i lo = _mm256_and_si256(v, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            float s0, m0, s1, m1;
            kq_scale_min(b + 4, 2 * c, &s0, &m0);
            kq_scale_min(b + 4, 2 * c + 1, &s1, &m1);
            const int64_t j0 = x0 + 2 * c;
            const __m256i a0 = a8_dp(_mm256_setzero_si256(), lo, a8_q(x, 32 * j0));
            const __m256i a1 = a8_dp(_mm256_setzero_si256(), hi, a8_q(x, 32 * j0 + 32));
            acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a0), _mm256_set1_ps(d * s0 * x->d[j0]), acc0);
            acc1 =
                _mm256_fmadd_ps(_mm256_cvtepi32_ps(a1), _mm256_set1_ps(d * s1 * x->d[j0 + 1]), acc1);
            mins += dmin * m0 * x->ds[j0] + dmin * m1 * x->ds[j0 + 1];
        }
    }
    return a8_hsum256(_mm256_add_ps(acc0, acc1)) - mins;
}

/* q6_K: run j = 4 h + c of a super-block (values 128 h + 32 c ..) is x
 * block j; its 6-bit codes come from ql (4 bits) and qh (2 bits), offset 32
 * (in xo); one scale per 16 values, i.e. per four s32 lanes. */
static A8_TGT float a8_dot_q6_K(const uint8_t *b, const a8_x *x, int64_t K) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(3);
    for (int64_t i = 0; i < K / LOOM_QK_K; i++, b += 210) {
        __builtin_prefetch(b + MM_PREFETCH);
        const int8_t *sc = (const int8_t *)(b + 192);
        const float d = v_f16s(b + 208);
        for (int h = 0; h < 2; h++) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(b + 64 * h));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(b + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * h));
            for (int c = 0; c < 4; c++) {
                const __m256i l = c & 1 ? l1 : l0;
                const __m256i lo = c >> 1 ? _mm256_and_si256(_mm256_srli_epi16(l, 4), m4)
                                          : _mm256_and_si256(l, m4);
                const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), m2);
                const __m256i w = _mm256_or_si256(lo, _mm256_slli_epi16(hb, 4));
                const int64_t j = 8 * i + 4 * h + c, k = 32 * j;
                const __m256i a = a8_dp(a8_xo(x, k), w, a8_q(x, k));
                const float dx = d * x->d[j];
                const __m256 s = _mm256_set_m128(_mm_set1_ps(dx * (float)sc[8 * h + 2 * c + 1]),
                                                 _mm_set1_ps(dx * (float)sc[8 * h + 2 * c]));
                if (c & 1)
                    acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a), s, acc1);
                else
                    acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a), s, acc0);
            }
        }
    }
    return a8_hsum256(_mm256_add_ps(acc0, acc1));
}

static A8_TGT float a8_dot(loom_dtype t, const uint8_t *row, const a8_x *x, int64_t K) {
    switch (t) {
    case LOOM_Q4_0:
        return a8_dot_legacy(LOOM_Q4_0, row, x, K);
    case LOOM_Q4_1:
        return a8_dot_legacy(LOOM_Q4_1, row, x, K);
    case LOOM_Q5_0:
        return a8_dot_legacy(LOOM_Q5_0, row, x, K);
    case LOOM_Q5_1:
        return a8_dot_legacy(LOOM_Q5_1, row, x, K);
    case LOOM_Q8_0:
        return a8_dot_legacy(LOOM_Q8_0, row, x, K);
    case LOOM_Q4_K:
        return a8_dot_q4_K(row, x, K);
    default:
        return a8_dot_q6_K(row, x, K);
    }
}

static bool a8_supported(const loom_tensor *node) {
    return loom_ref_act8_applies(node) && mm_supported(node);
}

/* Work split as k_matmul: output rows (n, slice) over threads; each thread
 * quantizes the M activation rows of a slice once and reuses them for all
 * its weight rows (M <= LOOM_ACT8_MAX_M: rows re-read from L1). */
static A8_TGT loom_status k_matmul_act8(const loom_tensor *out, int ith, int nth, char *err,
                                        size_t err_n) {
    const loom_tensor *w = out->src[0], *x = out->src[1];
    const int64_t K = w->ne[0], N = w->ne[1], M = x->ne[1], X2 = x->ne[2], X3 = x->ne[3];
    const int64_t r2 = X2 / w->ne[2], r3 = X3 / w->ne[3], nb = K / LOOM_ACT8_QK;
    int64_t lo, hi;
    lc_range(N * X2 * X3, ith, nth, &lo, &hi);
    if (lo >= hi || M == 0) return LOOM_OK;
    /* per row: q (K bytes), xo (K bytes of int32), d, ds, s (nb each), dds (2 nb) */
    const size_t per = (size_t)K * 2 + (size_t)nb * 20 + 64;
    uint8_t *buf = lc_alloc(per * (size_t)M);
    if (!buf) return lc_fail(err, err_n, LOOM_ERR_OOM, "matmul: out of memory for scratch");
    a8_x xs[LOOM_ACT8_MAX_M];
    const int off = a8_off(w->dtype);
    const int64_t ostride = (int64_t)(out->nb[1] / sizeof(float));
    for (int64_t r = lo; r < hi;) {
        const int64_t slice = r / N, i2 = slice % X2, i3 = slice / X2;
        const int64_t n0 = r - slice * N, n1 = LC_MIN(hi, (slice + 1) * N) - slice * N;
        r = slice * N + n1;
        for (int64_t m = 0; m < M; m++) {
            uint8_t *p = buf + per * (size_t)m;
            int8_t *q = (int8_t *)p;
            int32_t *xo = (int32_t *)(p + K);
            float *d = (float *)(p + 2 * K), *ds = d + nb;
            int32_t *s = (int32_t *)(ds + nb);
            loom_cpu_act8_quantize_row((const float *)loom_ref_ptr(x, 0, m, i2, i3), K, q, d, s);
            for (int64_t j = 0; j < K / 4; j++)
                xo[j] = -off * (q[4 * j] + q[4 * j + 1] + q[4 * j + 2] + q[4 * j + 3]);
            float *dds = (float *)(s + nb);
            for (int64_t j = 0; j < nb; j++) {
                ds[j] = d[j] * (float)s[j];
                dds[2 * j] = d[j];
                dds[2 * j + 1] = ds[j];
            }
            xs[m] = (a8_x){q, d, ds, dds, xo};
        }
        float *o = (float *)loom_ref_ptr(out, 0, 0, i2, i3);
        /* rows by stride: a call per weight row was 2% of a q8_0 decode step */
        const uint8_t *w0 = (const uint8_t *)loom_ref_ptr(w, 0, 0, i2 / r2, i3 / r3);
        for (int64_t n = n0; n < n1; n++) {
            const uint8_t *row = w0 + (size_t)n * w->nb[1];
            for (int64_t m = 0; m < M; m++)
                o[m * ostride + n] = a8_dot(w->dtype, row, &xs[m], K);
        }
    }
    free(buf);
    return LOOM_OK;
}
