/* kernels/cpu/ops/kquant.inc.h - k-quant super-blocks (q2_K..q6_K, ADR 0024)
 * for the matmul/moe kernels: one 256-value block dequantized to f32 and
 * dotted with activations.
 * Included by kernels/cpu/cpu_impl.h, so compiled once
 * per ISA (cpu_avx512.c, cpu_avx2.c) over that ISA's vector vocabulary;
 * no include guard and everything static on purpose.
 *
 * First version (see the ADR): each block is dequantized into 256 floats in
 * L1 by loops over runs of 16 or 32 values that share one scale, which the
 * compiler vectorizes for the ISA of the including file, and the decode dot
 * then streams that buffer. The values are exactly ir/dtype_kquant.c's (same
 * float ops), so decode and prefill agree with the reference up to the f32
 * accumulation order. Integer dot products with q8_K activations are the
 * planned second step. */

static inline bool kq_is(loom_dtype t) {
    return t == LOOM_Q2_K || t == LOOM_Q3_K || t == LOOM_Q4_K || t == LOOM_Q5_K || t == LOOM_Q6_K;
}

static inline float kq_f16(const uint8_t *p) {
    return v_f16s(p);
}

/* 6-bit scale and min of sub-block j of a q4_K/q5_K block (12 packed bytes). */
static inline void kq_scale_min(const uint8_t *q, int j, float *sc, float *m) {
    if (j < 4) {
        *sc = (float)(q[j] & 63);
        *m = (float)(q[j + 4] & 63);
    } else {
        *sc = (float)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (float)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static void kq_q2_K(const uint8_t *b, float *restrict y) {
    const uint8_t *sc = b, *qs = b + 16;
    const float d = kq_f16(b + 80), dmin = kq_f16(b + 82);
    for (int h = 0; h < 2; h++)
        for (int s = 0; s < 4; s++)
            for (int hf = 0; hf < 2; hf++) {
                const uint8_t c = sc[8 * h + 2 * s + hf];
                const float dl = d * (float)(c & 0xF), ml = dmin * (float)(c >> 4);
                const uint8_t *q = qs + 32 * h + 16 * hf;
                float *o = y + 128 * h + 32 * s + 16 * hf;
                for (int l = 0; l < 16; l++)
                    o[l] = dl * (float)((q[l] >> (2 * s)) & 3) - ml;
            }
}

static void kq_q3_K(const uint8_t *b, float *restrict y) {
    const uint8_t *hm = b, *qs = b + 32, *sc = b + 96;
    const float d = kq_f16(b + 108);
    for (int h = 0; h < 2; h++)
        for (int s = 0; s < 4; s++)
            for (int hf = 0; hf < 2; hf++) {
                const int i = 8 * h + 2 * s + hf;
                const int lo = i < 8 ? (sc[i] & 0xF) : (sc[i - 8] >> 4);
                const int hi = (sc[8 + i % 4] >> (2 * (i / 4))) & 3;
                const float dl = d * (float)((lo | (hi << 4)) - 32);
                const uint8_t *q = qs + 32 * h + 16 * hf, *m = hm + 16 * hf;
                const int bit = 4 * h + s;
                float *o = y + 128 * h + 32 * s + 16 * hf;
                for (int l = 0; l < 16; l++)
                    o[l] = dl * (float)(((q[l] >> (2 * s)) & 3) - (((m[l] >> bit) & 1) ? 0 : 4));
            }
}

static void kq_q45_K(const uint8_t *b, float *restrict y, bool five) {
    const float d = kq_f16(b), dmin = kq_f16(b + 2);
    const uint8_t *sc = b + 4, *qh = b + 16, *qs = five ? b + 48 : b + 16;
    for (int j = 0; j < 8; j++) {
        float s, m;
        kq_scale_min(sc, j, &s, &m);
        const float d1 = d * s, m1 = dmin * m;
        const uint8_t *q = qs + 32 * (j / 2);
        const int sh = 4 * (j % 2);
        float *o = y + 32 * j;
        if (five) {
            for (int l = 0; l < 32; l++)
                o[l] = d1 * (float)(((q[l] >> sh) & 0xF) | (((qh[l] >> j) & 1) << 4)) - m1;
        } else {
            for (int l = 0; l < 32; l++)
                o[l] = d1 * (float)((q[l] >> sh) & 0xF) - m1;
        }
    }
}

static void kq_q6_K(const uint8_t *b, float *restrict y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    const float d = kq_f16(b + 208);
    for (int h = 0; h < 2; h++)
        for (int c = 0; c < 4; c++) /* value 128 h + 32 c + l */
            for (int hf = 0; hf < 2; hf++) {
                const float dl = d * (float)sc[8 * h + 2 * c + hf];
                const uint8_t *lo = ql + 64 * h + 32 * (c & 1) + 16 * hf;
                const uint8_t *hi = qh + 32 * h + 16 * hf;
                const int shl = 4 * (c >> 1), shh = 2 * c;
                float *o = y + 128 * h + 32 * c + 16 * hf;
                for (int l = 0; l < 16; l++)
                    o[l] =
                        dl * (float)((((lo[l] >> shl) & 0xF) | (((hi[l] >> shh) & 3) << 4)) - 32);
            }
}

/* One k-quant super-block of type t at b -> 256 floats at y. */
static void kq_block(loom_dtype t, const uint8_t *b, float *restrict y) {
    switch (t) {
    case LOOM_Q2_K:
        kq_q2_K(b, y);
        break;
    case LOOM_Q3_K:
        kq_q3_K(b, y);
        break;
    case LOOM_Q4_K:
        kq_q45_K(b, y, false);
        break;
    case LOOM_Q5_K:
        kq_q45_K(b, y, true);
        break;
    default:
        kq_q6_K(b, y);
        break;
    }
}

/* Decode for q4_K without the buffer: v_q4 (the q4_0 decoder) gives nibble
 * - 8 for 16 code bytes, so a sub-block's value d1 * n - m1 is d1 * (n - 8)
 * + (8 d1 - m1), and its dot with x is accumulated as two FMAs per vector
 * (codes . x and the plain sum of x), each then scaled once per sub-block. */
static float kq_dot_q4_K(const uint8_t *row, const float *x, int64_t K) {
    vf a0 = V_ZERO(), a1 = V_ZERO();
    for (int64_t i = 0; i < K / LOOM_QK_K; i++, row += 144, x += LOOM_QK_K) {
        __builtin_prefetch(row + 1024);
        const float d = kq_f16(row), dmin = kq_f16(row + 2);
        const uint8_t *qs = row + 16;
        for (int c = 0; c < 4; c++) { /* sub-blocks 2c (low nibbles), 2c + 1 (high) */
            vf tl = V_ZERO(), th = V_ZERO(), sl = V_ZERO(), sh = V_ZERO();
            for (int h = 0; h < 2; h++)
                for (int j = 0; j < 16 / VN; j++) {
                    const float *xl = x + 64 * c + 16 * h + VN * j, *xh = xl + 32;
                    const vf vl = V_LOAD(xl), vh = V_LOAD(xh);
                    tl = V_FMA(v_q4(qs + 32 * c + 16 * h, j), vl, tl);
                    th = V_FMA(v_q4(qs + 32 * c + 16 * h, j + 16 / VN), vh, th);
                    sl = V_ADD(sl, vl);
                    sh = V_ADD(sh, vh);
                }
            float s0, m0, s1, m1;
            kq_scale_min(row + 4, 2 * c, &s0, &m0);
            kq_scale_min(row + 4, 2 * c + 1, &s1, &m1);
            const float d0 = d * s0, d1 = d * s1;
            a0 = V_FMA(tl, V_SET1(d0), a0);
            a0 = V_FMA(sl, V_SET1(8.0f * d0 - dmin * m0), a0);
            a1 = V_FMA(th, V_SET1(d1), a1);
            a1 = V_FMA(sh, V_SET1(8.0f * d1 - dmin * m1), a1);
        }
    }
    return V_HSUM(V_ADD(a0, a1));
}

/* Decode for q6_K: the 6-bit codes of a block are first assembled as int8
 * (q - 32) by byte loops over 32 lanes that the compiler vectorizes, then
 * dotted with x through v_q8 (the q8_0 decoder), one scale per 16 values. */
static float kq_dot_q6_K(const uint8_t *row, const float *x, int64_t K) {
    _Alignas(64) int8_t q[LOOM_QK_K];
    vf a0 = V_ZERO(), a1 = V_ZERO();
    for (int64_t i = 0; i < K / LOOM_QK_K; i++, row += 210, x += LOOM_QK_K) {
        __builtin_prefetch(row + 1024);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = row + 64 * h, *qh = row + 128 + 32 * h;
            int8_t *o = q + 128 * h;
            for (int l = 0; l < 32; l++) {
                o[l] = (int8_t)(((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32);
                o[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                o[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                o[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
        }
        const int8_t *sc = (const int8_t *)(row + 192);
        const float d = kq_f16(row + 208);
        for (int s = 0; s < 16; s += 2) {
            vf t0 = V_ZERO(), t1 = V_ZERO();
            for (int j = 0; j < 16 / VN; j++) {
                t0 = V_FMA(v_q8(q + 16 * s + VN * j), V_LOAD(x + 16 * s + VN * j), t0);
                t1 = V_FMA(v_q8(q + 16 * s + 16 + VN * j), V_LOAD(x + 16 * s + 16 + VN * j), t1);
            }
            a0 = V_FMA(t0, V_SET1(d * (float)sc[s]), a0);
            a1 = V_FMA(t1, V_SET1(d * (float)sc[s + 1]), a1);
        }
    }
    return V_HSUM(V_ADD(a0, a1));
}

/* Decode: a row of K / 256 blocks dotted with x (K floats). */
static float kq_dot_row(loom_dtype t, const uint8_t *row, const float *x, int64_t K) {
    if (t == LOOM_Q4_K) return kq_dot_q4_K(row, x, K);
    if (t == LOOM_Q6_K) return kq_dot_q6_K(row, x, K);
    _Alignas(64) float buf[LOOM_QK_K];
    const size_t bb = loom_dtype_block_bytes(t);
    vf a0 = V_ZERO(), a1 = V_ZERO(), a2 = V_ZERO(), a3 = V_ZERO();
    for (int64_t i = 0; i < K / LOOM_QK_K; i++, row += bb, x += LOOM_QK_K) {
        __builtin_prefetch(row + 1024); /* as MM_PREFETCH (matmul_pack.inc.h) */
        kq_block(t, row, buf);
        for (int k = 0; k < LOOM_QK_K; k += 4 * VN) {
            a0 = V_FMA(V_LOAD(buf + k), V_LOAD(x + k), a0);
            a1 = V_FMA(V_LOAD(buf + k + VN), V_LOAD(x + k + VN), a1);
            a2 = V_FMA(V_LOAD(buf + k + 2 * VN), V_LOAD(x + k + 2 * VN), a2);
            a3 = V_FMA(V_LOAD(buf + k + 3 * VN), V_LOAD(x + k + 3 * VN), a3);
        }
    }
    return V_HSUM(V_ADD(V_ADD(a0, a1), V_ADD(a2, a3)));
}

/* Prefill/moe packing: values [k0, k0 + kc) of a row, k0 and kc multiples
 * of 256 (MM_KC is a multiple of 256; mm_weight_ok requires K % 256 == 0). */
static void kq_dequant_row(loom_dtype t, const uint8_t *row, int64_t k0, int64_t kc, float *dst) {
    const size_t bb = loom_dtype_block_bytes(t);
    const uint8_t *b = row + (size_t)(k0 / LOOM_QK_K) * bb;
    for (int64_t k = 0; k < kc; k += LOOM_QK_K, b += bb)
        kq_block(t, b, dst + k);
}
