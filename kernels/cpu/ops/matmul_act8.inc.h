/* kernels/cpu/ops/matmul_act8.inc.h - matmul with int8 activations (ADR
 * 0036; every M since ADR 0043): each activation row is quantized per 32
 * values (kernels/cpu/act8_quant.h: the reference's loom_act8_quantize_row,
 * the same bytes 8 lanes at a time) and every weight
 * block is dotted with it in integers: AVX-512 VNNI vpdpbusd (u8 x s8 -> s32)
 * two 32-value blocks per instruction, AVX2 vpmaddubsw + vpmaddwd per block.
 * Decode and prefill share one microkernel (a weight row against up to A8_R
 * activation rows), so a row's result does not depend on how many rows the
 * matmul has.
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

/* Activation rows per microkernel call (see "R activation rows" below).
 * The weight block's decode and scale arithmetic is shared by the R rows.
 * AVX-512 keeps two accumulators per row (even and odd blocks) in its 32
 * registers; AVX2 keeps one per row, so that 8 rows fit its 16. On AVX2, 8
 * rows with the group layout of a8_il were 1.1-1.3x faster than 4 for M >=
 * 16; 8 rows alone were not (ADR 0043 addendum). */
#if VN == 16
#define A8_R 8 /* 16 zmm accumulators of 32 */
#else
#define A8_R 8 /* 8 ymm accumulators of 8 */
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

/* One quantized activation row. g4 / gs4 belong to its group of A8_R rows
 * (k_matmul_act8: rows m0 .. m0 + A8_R - 1, m0 a multiple of A8_R): block j's
 * d and ds of the group's rows side by side, g4[j * A8_R + lane], zeros past
 * the last row, so that the AVX2 legacy and the k-quant dots scale all the
 * group's rows with one multiply; they read the first row's pointers. */
typedef struct a8_x {
    const int8_t *q;   /* K codes (AVX2: the group's, see a8_il) */
    const float *d;    /* K/32 scales */
    const float *ds;   /* K/32: d * sum(q), for the min terms */
    const float *dds;  /* K/32 pairs (d, ds) */
    const int32_t *xo; /* K/4: -off * sum of 4 codes (AVX2: the group's, see a8_il) */
    const float *g4;   /* K/32 * A8_R: the group's d */
    const float *gs4;  /* K/32 * A8_R: the group's ds */
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
    return _mm256_add_epi32(acc,
                            _mm256_madd_epi16(_mm256_maddubs_epi16(w, q), _mm256_set1_epi16(1)));
#endif
}

/* Where row r of a group of R rows keeps its codes (and xo lanes) for
 * values k .. k + 31. AVX-512: each row's back to back, from its own
 * pointers. AVX2: the group's rows interleaved per 64 values (one cache line
 * of codes), so that one pointer and constant offsets (R is a compile-time
 * constant in every a8_rows instantiation) reach every row: with a pointer
 * per row the compiler spilled them, and the reloads made 5-6 loads per block
 * and row, more than the load ports take (ADR 0043 addendum). R = 1 is the
 * plain row. */
static inline size_t a8_il(int R, int r, int64_t k) {
    return (size_t)(((k >> 6) * R + r) * 64 + (k & 32));
}
static inline A8_TGT __m256i a8_xo(const a8_x *x, int R, int r, int64_t k) {
#if VN == 16
    (void)R;
    return _mm256_loadu_si256((const __m256i *)(x[r].xo + k / 4));
#else
    return _mm256_loadu_si256((const __m256i *)((const char *)x[0].xo + a8_il(R, r, k)));
#endif
}
static inline A8_TGT __m256i a8_q(const a8_x *x, int R, int r, int64_t k) {
#if VN == 16
    (void)R;
    return _mm256_loadu_si256((const __m256i *)(x[r].q + k));
#else
    return _mm256_loadu_si256((const __m256i *)(x[0].q + a8_il(R, r, k)));
#endif
}

static inline A8_TGT float a8_hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- R activation rows per weight row ----
 * Every dot below takes R (1..A8_R) quantized activation rows and decodes
 * each weight block once for all of them. Each row's float arithmetic is a
 * fixed sequence (its own accumulators, the same products and sums in the
 * same order) that does not depend on R or on the row's place in the group,
 * so a row's result is bit-identical whether it is multiplied alone (M = 1,
 * decode), in a small batch or inside a prefill GEMM of any M (ADR 0043).
 * R is a compile-time constant in every instantiation (a8_rows). */
#define A8_INL __attribute__((always_inline))
/* Loops over the R rows unroll fully, so each row's accumulators are registers. */
#define A8_UNROLL _Pragma("GCC unroll 8")

/* A8_R floats, one per row of a group (lane r: row r), for the scale and
 * min arithmetic of a block, done for all of the group's rows at once. */
#if A8_R == 8
typedef __m256 a8_lv;
#define A8_LV_LOAD(p)     _mm256_loadu_ps(p)
#define A8_LV_STORE(p, v) _mm256_storeu_ps(p, v)
#define A8_LV_SET1(x)     _mm256_set1_ps(x)
#define A8_LV_MUL(a, b)   _mm256_mul_ps(a, b)
#define A8_LV_ADD(a, b)   _mm256_add_ps(a, b)
#define A8_LV_ZERO()      _mm256_setzero_ps()
#define A8_LV_LO(v)       _mm256_castps256_ps128(v)
#else
typedef __m128 a8_lv;
#define A8_LV_LOAD(p)     _mm_loadu_ps(p)
#define A8_LV_STORE(p, v) _mm_storeu_ps(p, v)
#define A8_LV_SET1(x)     _mm_set1_ps(x)
#define A8_LV_MUL(a, b)   _mm_mul_ps(a, b)
#define A8_LV_ADD(a, b)   _mm_add_ps(a, b)
#define A8_LV_ZERO()      _mm_setzero_ps()
#define A8_LV_LO(v)       (v)
#endif

/* Lane r of v (also stored at a) in every lane: row 0 straight from the
 * register (decode, R = 1, then needs no store), others from memory. */
static inline A8_TGT A8_INL __m128 a8_lane128(a8_lv v, const float *a, int r) {
    return r == 0 ? _mm_broadcastss_ps(A8_LV_LO(v)) : _mm_broadcast_ss(a + r);
}
static inline A8_TGT A8_INL __m256 a8_lane(a8_lv v, const float *a, int r) {
    return r == 0 ? _mm256_broadcastss_ps(A8_LV_LO(v)) : _mm256_broadcast_ss(a + r);
}

/* The weight side of legacy block b, shared by every activation row: codes
 * as the integer dot takes them (AVX2 q8_0: the signed bytes, for the sign
 * trick in a8_legacy_x). */
static inline A8_TGT A8_INL __m256i a8_legacy_w(loom_dtype t, const uint8_t *b) {
    if (t == LOOM_Q8_0) {
        const __m256i w = _mm256_loadu_si256((const __m256i *)(b + 2));
#if VN == 16
        return _mm256_xor_si256(w, _mm256_set1_epi8((char)0x80));
#else
        return w;
#endif
    }
    const mm_legacy L = mm_legacy_of(t == LOOM_Q4_0 ? LOOM_Q4_1 : t);
    __m256i w = a8_nib(b + (t == LOOM_Q4_0 ? 2 : L.qs));
    if (L.five) w = _mm256_or_si256(w, a8_bit5(mm_legacy_qh(&L, b)));
    return w;
}

/* Integer dot of decoded legacy block w (values k .. k + 31) with x, as s32
 * lanes (exact: the order of integer sums does not matter). */
static inline A8_TGT A8_INL __m256i a8_legacy_x(loom_dtype t, __m256i w, const a8_x *x, const int R,
                                                int r, int64_t k) {
    const __m256i q = a8_q(x, R, r, k);
#if VN != 16
    if (t == LOOM_Q8_0)
        return a8_dp(_mm256_setzero_si256(), _mm256_sign_epi8(w, w), _mm256_sign_epi8(q, w));
#endif
    return a8_dp(t == LOOM_Q4_1 || t == LOOM_Q5_1 ? _mm256_setzero_si256() : a8_xo(x, R, r, k), w,
                 q);
}

#if VN != 16
/* AVX2: block i (at b) of a legacy row into acc[r] (and, with a min, the
 * lanes of mn) for the group's rows x[0 .. R). */
static inline A8_TGT A8_INL void a8_legacy_blk(loom_dtype t, const uint8_t *b, const a8_x *x,
                                               const int R, int64_t i, const float *g4,
                                               const float *gs4, __m256 *acc, a8_lv *mn) {
    const __m256i w = a8_legacy_w(t, b);
    const bool has_m = t == LOOM_Q4_1 || t == LOOM_Q5_1;
    if (R == 1) { /* decode: lane 0 of the code below (the same products and sums) */
        const __m256 a = _mm256_cvtepi32_ps(a8_legacy_x(t, w, x, 1, 0, 32 * i));
        acc[0] = _mm256_fmadd_ps(a, _mm256_set1_ps(v_f16s(b) * x[0].d[i]), acc[0]);
        if (has_m) *mn = A8_LV_ADD(*mn, A8_LV_SET1(v_f16s(b + 2) * x[0].ds[i]));
        return;
    }
    const a8_lv sc = A8_LV_MUL(A8_LV_SET1(v_f16s(b)), A8_LV_LOAD(g4 + A8_R * i));
    if (has_m)
        *mn = A8_LV_ADD(*mn, A8_LV_MUL(A8_LV_SET1(v_f16s(b + 2)), A8_LV_LOAD(gs4 + A8_R * i)));
    float scs[A8_R];
    A8_LV_STORE(scs, sc);
    A8_UNROLL
    for (int r = 0; r < R; r++) {
        const __m256 a = _mm256_cvtepi32_ps(a8_legacy_x(t, w, x, R, r, 32 * i));
        acc[r] = _mm256_fmadd_ps(a, a8_lane(sc, scs, r), acc[r]);
    }
}
#endif

/* Bytes per block of a legacy type (a compile-time constant where t is). */
static inline int a8_legacy_bytes(loom_dtype t) {
    return t == LOOM_Q8_0   ? 34
           : t == LOOM_Q4_0 ? 18
           : t == LOOM_Q4_1 ? 20
           : t == LOOM_Q5_0 ? 22
                            : 24;
}

/* q4_0 / q4_1 / q5_0 / q5_1 / q8_0 row . x[r] -> out[r]. */
static inline A8_TGT A8_INL void a8_dot_legacy(loom_dtype t, const uint8_t *b, const a8_x *x,
                                               const int R, int64_t K, float *out) {
    const int bytes = a8_legacy_bytes(t);
    const int64_t nb = K / 32;
    int64_t i = 0;
#if VN == 16
    const bool has_m = t == LOOM_Q4_1 || t == LOOM_Q5_1;
    float mins0[A8_R], mins1[A8_R];
    A8_UNROLL
    for (int r = 0; r < R; r++)
        mins0[r] = mins1[r] = 0.0f;
    /* Two blocks per vpdpbusd: lanes 0-7 block i, 8-15 block i + 1. */
    __m512 acc0[A8_R], acc1[A8_R];
    __m128 macc[A8_R];
    float tail[A8_R];
    A8_UNROLL
    for (int r = 0; r < R; r++) {
        acc0[r] = acc1[r] = _mm512_setzero_ps();
        macc[r] = _mm_setzero_ps();
        tail[r] = 0.0f;
    }
    for (; i + 2 <= nb; i += 2, b += 2 * bytes) {
        __builtin_prefetch(b + MM_PREFETCH);
        __m512i w;
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
                const uint64_t qh =
                    (uint64_t)mm_legacy_qh(&L, b) | (uint64_t)mm_legacy_qh(&L, b + bytes) << 32;
                w = _mm512_or_si512(w, _mm512_maskz_mov_epi8(qh, _mm512_set1_epi8(0x10)));
            }
        }
        /* Both blocks' d (and m) in one conversion: halves [d0 m0 d1 m1]
         * times [dx0 ds0 dx1 ds1]; lanes 0 and 2 scale the s32 lanes, 1 and
         * 3 are the min terms. */
        uint32_t h0, h1;
        memcpy(&h0, b, 4);
        memcpy(&h1, b + bytes, 4);
        if (!has_m) h0 &= 0xFFFFu, h1 &= 0xFFFFu;
        const __m128 hw = _mm_cvtph_ps(_mm_set_epi32(0, 0, (int)h1, (int)h0));
        A8_UNROLL
        for (int r = 0; r < R; r++) {
            const __m512i q = _mm512_loadu_si512(x[r].q + 32 * i);
            __m512i a = has_m ? _mm512_setzero_si512() : _mm512_loadu_si512(x[r].xo + 8 * i);
            a = _mm512_dpbusd_epi32(a, w, q);
            const __m128 p = _mm_mul_ps(hw, _mm_loadu_ps(x[r].dds + 2 * i));
            const __m512 sc = _mm512_permutexvar_ps(
                _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0),
                _mm512_castps128_ps512(p));
            if (i & 2)
                acc1[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), sc, acc1[r]);
            else
                acc0[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), sc, acc0[r]);
            if (has_m) macc[r] = _mm_add_ps(macc[r], p);
        }
    }
    for (; i < nb; i++, b += bytes) {
        const __m256i w = a8_legacy_w(t, b);
        const float dw = v_f16s(b), mw = has_m ? v_f16s(b + 2) : 0.0f;
        A8_UNROLL
        for (int r = 0; r < R; r++) {
            const __m256i a = a8_legacy_x(t, w, x, R, r, 32 * i);
            tail[r] +=
                a8_hsum256(_mm256_mul_ps(_mm256_cvtepi32_ps(a), _mm256_set1_ps(dw * x[r].d[i])));
            if (has_m) mins0[r] += mw * x[r].ds[i];
        }
    }
    A8_UNROLL
    for (int r = 0; r < R; r++) {
        if (has_m) {
            float ml[4];
            _mm_storeu_ps(ml, macc[r]);
            mins1[r] += ml[1] + ml[3];
        }
        out[r] =
            _mm512_reduce_add_ps(_mm512_add_ps(acc0[r], acc1[r])) + tail[r] + mins0[r] + mins1[r];
    }
#else
    /* The block scales d_w * d_x of the group's rows in one multiply (lanes
     * are rows), and their min terms m_w * ds_x in one lane vector: per lane
     * the same float operations for any R, R = 1 included. */
    __m256 acc[A8_R];
    a8_lv mn = A8_LV_ZERO();
    A8_UNROLL
    for (int r = 0; r < R; r++)
        acc[r] = _mm256_setzero_ps();
    const float *g4 = x[0].g4, *gs4 = x[0].gs4;
    for (; i < nb; i++, b += bytes) {
        __builtin_prefetch(b + MM_PREFETCH); /* per block, as decode always did */
        a8_legacy_blk(t, b, x, R, i, g4, gs4, acc, &mn);
    }
    float m[A8_R];
    A8_LV_STORE(m, mn);
    A8_UNROLL
    for (int r = 0; r < R; r++)
        out[r] = a8_hsum256(acc[r]) + m[r];
#endif
}

/* The k-quant dots below alternate two accumulators per row with AVX-512
 * (32 registers); AVX2 has room for one per row at R = 8, so its "odd"
 * accumulator is the even one and the final sum skips the unused array. */
#if VN == 16
#define A8_ODD(acc0, acc1)    (acc1)
#define A8_SUM(acc0, acc1, r) _mm256_add_ps(acc0[r], acc1[r])
#else
#define A8_ODD(acc0, acc1)    (acc0)
#define A8_SUM(acc0, acc1, r) ((void)acc1, acc0[r])
#endif

/* q4_K: sub-block j (32 values, 6-bit scale and min) is x block j of the
 * super-block; 32 code bytes hold sub-blocks 2c (low nibbles) and 2c + 1.
 * Scales d * s * d_x and min terms of the group's rows as lane vectors. */
static inline A8_TGT A8_INL void a8_dot_q4_K(const uint8_t *b, const a8_x *x, const int R,
                                             int64_t K, float *out) {
    __m256 acc0[A8_R], acc1[A8_R];
    a8_lv mins = A8_LV_ZERO();
    A8_UNROLL
    for (int r = 0; r < R; r++)
        acc0[r] = acc1[r] = _mm256_setzero_ps();
    const float *g4 = x[0].g4, *gs4 = x[0].gs4;
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
            float sc0[A8_R], sc1[A8_R];
            const a8_lv v0 = A8_LV_MUL(A8_LV_SET1(d * s0), A8_LV_LOAD(g4 + A8_R * j0));
            const a8_lv v1 = A8_LV_MUL(A8_LV_SET1(d * s1), A8_LV_LOAD(g4 + A8_R * (j0 + 1)));
            A8_LV_STORE(sc0, v0);
            A8_LV_STORE(sc1, v1);
            mins = A8_LV_ADD(
                mins,
                A8_LV_ADD(A8_LV_MUL(A8_LV_SET1(dmin * m0), A8_LV_LOAD(gs4 + A8_R * j0)),
                          A8_LV_MUL(A8_LV_SET1(dmin * m1), A8_LV_LOAD(gs4 + A8_R * (j0 + 1)))));
            A8_UNROLL
            for (int r = 0; r < R; r++) {
                const __m256i a0 = a8_dp(_mm256_setzero_si256(), lo, a8_q(x, R, r, 32 * j0));
                const __m256i a1 = a8_dp(_mm256_setzero_si256(), hi, a8_q(x, R, r, 32 * j0 + 32));
                acc0[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a0), a8_lane(v0, sc0, r), acc0[r]);
                A8_ODD(acc0, acc1)
                [r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a1), a8_lane(v1, sc1, r),
                                      A8_ODD(acc0, acc1)[r]);
            }
        }
    }
    float mn[A8_R];
    A8_LV_STORE(mn, mins);
    A8_UNROLL
    for (int r = 0; r < R; r++)
        out[r] = a8_hsum256(A8_SUM(acc0, acc1, r)) - mn[r];
}

/* q6_K: run j = 4 h + c of a super-block (values 128 h + 32 c ..) is x
 * block j; its 6-bit codes come from ql (4 bits) and qh (2 bits), offset 32
 * (in xo); one scale per 16 values, i.e. per four s32 lanes. */
static inline A8_TGT A8_INL void a8_dot_q6_K(const uint8_t *b, const a8_x *x, const int R,
                                             int64_t K, float *out) {
    __m256 acc0[A8_R], acc1[A8_R];
    A8_UNROLL
    for (int r = 0; r < R; r++)
        acc0[r] = acc1[r] = _mm256_setzero_ps();
    const float *g4 = x[0].g4;
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
                /* per row: (d * d_x) * scale of each 16-value half */
                const a8_lv dx = A8_LV_MUL(A8_LV_SET1(d), A8_LV_LOAD(g4 + A8_R * j));
                float s0[A8_R], s1[A8_R];
                const a8_lv v0 = A8_LV_MUL(dx, A8_LV_SET1((float)sc[8 * h + 2 * c]));
                const a8_lv v1 = A8_LV_MUL(dx, A8_LV_SET1((float)sc[8 * h + 2 * c + 1]));
                A8_LV_STORE(s0, v0);
                A8_LV_STORE(s1, v1);
                A8_UNROLL
                for (int r = 0; r < R; r++) {
                    const __m256i a = a8_dp(a8_xo(x, R, r, k), w, a8_q(x, R, r, k));
                    const __m256 s = _mm256_set_m128(a8_lane128(v1, s1, r), a8_lane128(v0, s0, r));
                    const __m256 af = _mm256_cvtepi32_ps(a);
                    if (c & 1) {
                        A8_ODD(acc0, acc1)[r] = _mm256_fmadd_ps(af, s, A8_ODD(acc0, acc1)[r]);
                    } else {
                        acc0[r] = _mm256_fmadd_ps(af, s, acc0[r]);
                    }
                }
            }
        }
    }
    A8_UNROLL
    for (int r = 0; r < R; r++)
        out[r] = a8_hsum256(A8_SUM(acc0, acc1, r));
}

/* Weight rows [n0, n1) (row n at w0 + n * ws) . x[r] -> o[r * os + n], for
 * r < R; the n loop sits inside each type's instantiation. */
#define A8_ROWS(call)                                                                              \
    for (int64_t n = n0; n < n1; n++) {                                                            \
        float res[A8_R];                                                                           \
        call;                                                                                      \
        A8_UNROLL                                                                                  \
        for (int r = 0; r < R; r++)                                                                \
            o[r * os + n] = res[r];                                                                \
    }

#if VN != 16
/* AVX2 decode (R = 1) of weight rows n and n + 1 side by side: each row's
 * arithmetic is a8_dot_legacy's for R = 1, whose single accumulator is a
 * chain of dependent FMAs (one per block, 4 cycles each); two rows in one
 * loop give the core two chains to overlap. The results are those of the
 * one-row dot, bit for bit. */
static inline A8_TGT A8_INL void a8_dot_legacy_w2(loom_dtype t, const uint8_t *b, size_t ws,
                                                  const a8_x *x, int64_t K, float *out) {
    const int bytes = a8_legacy_bytes(t);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    a8_lv mn0 = A8_LV_ZERO(), mn1 = A8_LV_ZERO();
    const float *g4 = x[0].g4, *gs4 = x[0].gs4;
    for (int64_t i = 0; i < K / 32; i++, b += bytes) {
        __builtin_prefetch(b + MM_PREFETCH);
        __builtin_prefetch(b + ws + MM_PREFETCH);
        a8_legacy_blk(t, b, x, 1, i, g4, gs4, &acc0, &mn0);
        a8_legacy_blk(t, b + ws, x, 1, i, g4, gs4, &acc1, &mn1);
    }
    float m0[A8_R], m1[A8_R];
    A8_LV_STORE(m0, mn0);
    A8_LV_STORE(m1, mn1);
    out[0] = a8_hsum256(acc0) + m0[0];
    out[1] = a8_hsum256(acc1) + m1[0];
}

/* Legacy rows: a8_dot_legacy per weight row, in pairs for decode. */
#define A8_LEGACY_ROWS(T)                                                                          \
    do {                                                                                           \
        if (R == 1) {                                                                              \
            int64_t n = n0;                                                                        \
            for (; n + 2 <= n1; n += 2)                                                            \
                a8_dot_legacy_w2(T, w0 + (size_t)n * ws, ws, x, K, o + n);                         \
            if (n < n1) a8_dot_legacy(T, w0 + (size_t)n * ws, x, 1, K, o + n);                     \
        } else {                                                                                   \
            A8_ROWS(a8_dot_legacy(T, w0 + (size_t)n * ws, x, R, K, res));                          \
        }                                                                                          \
    } while (0)
#else
#define A8_LEGACY_ROWS(T) A8_ROWS(a8_dot_legacy(T, w0 + (size_t)n * ws, x, R, K, res))
#endif

static inline A8_TGT A8_INL void a8_rows_t(loom_dtype t, const uint8_t *w0, size_t ws, int64_t n0,
                                           int64_t n1, const a8_x *x, const int R, int64_t K,
                                           float *o, int64_t os) {
    switch (t) {
    case LOOM_Q4_0:
        A8_LEGACY_ROWS(LOOM_Q4_0);
        return;
    case LOOM_Q4_1:
        A8_LEGACY_ROWS(LOOM_Q4_1);
        return;
    case LOOM_Q5_0:
        A8_LEGACY_ROWS(LOOM_Q5_0);
        return;
    case LOOM_Q5_1:
        A8_LEGACY_ROWS(LOOM_Q5_1);
        return;
    case LOOM_Q8_0:
        A8_LEGACY_ROWS(LOOM_Q8_0);
        return;
    case LOOM_Q4_K:
        A8_ROWS(a8_dot_q4_K(w0 + (size_t)n * ws, x, R, K, res));
        return;
    default:
        A8_ROWS(a8_dot_q6_K(w0 + (size_t)n * ws, x, R, K, res));
        return;
    }
}

/* a8_rows_t for 1 <= R <= A8_R: one instantiation per R (and type), so that
 * every loop over r unrolls into registers. */
static A8_TGT void a8_rows(loom_dtype t, const uint8_t *w0, size_t ws, int64_t n0, int64_t n1,
                           const a8_x *x, int R, int64_t K, float *o, int64_t os) {
    switch (R) {
#define A8_CASE(c)                                                                                 \
    case c:                                                                                        \
        a8_rows_t(t, w0, ws, n0, n1, x, c, K, o, os);                                              \
        return;
        A8_CASE(1)
        A8_CASE(2)
        A8_CASE(3)
        A8_CASE(4)
#if A8_R == 8
        A8_CASE(5)
        A8_CASE(6)
        A8_CASE(7)
        A8_CASE(8)
#endif
#undef A8_CASE
    default:
        return;
    }
}

static bool a8_supported(const loom_tensor *node) {
    return loom_ref_act8_applies(node) && mm_supported(node);
}

/* Weight bytes per cache panel: a thread's rows are taken a panel at a time,
 * and the panel is re-read (from L2) for every group of A8_R activation
 * rows, whose quantized bytes stay in L1 across the panel's rows. */
#define A8_PANEL_BYTES (16 * 1024)

/* Work split as k_matmul: output rows (n, slice) over threads; each thread
 * quantizes the M activation rows of a slice once (a row costs O(K), the
 * thread's share of the matmul O(K N / nth) per row) and runs them past its
 * weight rows in groups of A8_R. Decode (M <= A8_R) is one group; prefill
 * the same microkernel over cache panels, so a row's result does not depend
 * on M (ADR 0043). */
static A8_TGT loom_status k_matmul_act8(const loom_tensor *out, int ith, int nth, char *err,
                                        size_t err_n) {
    const loom_tensor *w = out->src[0], *x = out->src[1];
    const int64_t K = w->ne[0], N = w->ne[1], M = x->ne[1], X2 = x->ne[2], X3 = x->ne[3];
    const int64_t r2 = X2 / w->ne[2], r3 = X3 / w->ne[3], nb = K / LOOM_ACT8_QK;
    int64_t lo, hi;
    lc_range(N * X2 * X3, ith, nth, &lo, &hi);
    if (lo >= hi || M == 0) return LOOM_OK;
    /* per row: q (K bytes), xo (K bytes of int32), d, ds, s (nb each), dds (2 nb) */
    const size_t per = ((size_t)K * 2 + (size_t)nb * 20 + 127) / 64 * 64; /* rows 64-aligned */
    const int64_t ng = (M + A8_R - 1) / A8_R;
    const size_t gper = (size_t)nb * A8_R * 2 * sizeof(float); /* a group's g4 and gs4 */
#if VN == 16
    const size_t ilper = 0;
#else
    const size_t ilper = (size_t)(nb + 1) / 2 * 64 * A8_R; /* a group's q (and xo), a8_il */
#endif
    uint8_t *buf = lc_alloc((per + sizeof(a8_x)) * (size_t)M + (gper + 2 * ilper) * (size_t)ng);
    if (!buf) return lc_fail(err, err_n, LOOM_ERR_OOM, "matmul: out of memory for scratch");
    float *gbuf = (float *)(buf + per * (size_t)M);
    a8_x *xs = (a8_x *)(buf + per * (size_t)M + gper * (size_t)ng);
#if VN != 16
    int8_t *ilbuf = (int8_t *)(xs + M);
#endif
    const int off = a8_off(w->dtype);
    const int64_t ostride = (int64_t)(out->nb[1] / sizeof(float));
    const int64_t pr = (int64_t)(A8_PANEL_BYTES / w->nb[1]), panel = pr > 1 ? pr : 1;
    for (int64_t r = lo; r < hi;) {
        const int64_t slice = r / N, i2 = slice % X2, i3 = slice / X2;
        const int64_t n0 = r - slice * N, n1 = LC_MIN(hi, (slice + 1) * N) - slice * N;
        r = slice * N + n1;
        memset(gbuf, 0, gper * (size_t)ng);
        for (int64_t m = 0; m < M; m++) {
            uint8_t *p = buf + per * (size_t)m;
            float *g4 = gbuf + (size_t)(m / A8_R) * nb * A8_R * 2, *gs4 = g4 + nb * A8_R;
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
                g4[j * A8_R + m % A8_R] = d[j];
                gs4[j * A8_R + m % A8_R] = ds[j];
            }
#if VN == 16
            xs[m] = (a8_x){q, d, ds, dds, xo, g4, gs4};
#else
            /* the group's rows interleaved (a8_il), its R being the rows it has */
            int8_t *qg = ilbuf + 2 * ilper * (size_t)(m / A8_R), *xog = qg + ilper;
            const int gr = (int)LC_MIN(A8_R, M - m / A8_R * A8_R), gi = (int)(m % A8_R);
            for (int64_t j = 0; j < nb; j++) {
                memcpy(qg + a8_il(gr, gi, 32 * j), q + 32 * j, 32);
                memcpy(xog + a8_il(gr, gi, 32 * j), (const char *)xo + 32 * j, 32);
            }
            xs[m] = (a8_x){qg, d, ds, dds, (const int32_t *)xog, g4, gs4};
#endif
        }
        float *o = (float *)loom_ref_ptr(out, 0, 0, i2, i3);
        /* rows by stride: a call per weight row was 2% of a q8_0 decode step */
        const uint8_t *w0 = (const uint8_t *)loom_ref_ptr(w, 0, 0, i2 / r2, i3 / r3);
        for (int64_t p0 = n0; p0 < n1; p0 += panel) {
            const int64_t p1 = LC_MIN(n1, p0 + panel);
            for (int64_t m0 = 0; m0 < M; m0 += A8_R)
                a8_rows(w->dtype, w0, w->nb[1], p0, p1, xs + m0, (int)LC_MIN(A8_R, M - m0), K,
                        o + m0 * ostride, ostride);
        }
    }
    free(buf);
    return LOOM_OK;
}
