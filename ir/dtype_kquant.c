/* ir/dtype_kquant.c - ggml k-quant super-blocks of 256 values: dequantization
 * and quantization of q2_K, q3_K, q4_K, q5_K, q6_K and q8_K.
 *
 * The byte layouts are ggml's (see the structs in loom/dtype.h). Every value
 * is computed with the same float32 operations, in the same order, as ggml's
 * dequantize_row_*_K and gguf-py's gguf.quants: first the sub-block scale
 * d * sc (and min dmin * m), then scale * q (- min). The build uses ISO C
 * (-std=c11), where GCC and Clang do not contract a*b-c into an FMA, so the
 * results are bit-identical to gguf-py's numpy (checked by the
 * gguf_kquant_check ctest on random blocks and real files). */
#include "dtype_kquant.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

static inline float ld_f16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return loom_f16_to_f32(v);
}

bool loom_kquant_is(loom_dtype t) {
    return t == LOOM_Q2_K || t == LOOM_Q3_K || t == LOOM_Q4_K || t == LOOM_Q5_K || t == LOOM_Q6_K ||
           t == LOOM_Q8_K;
}

bool loom_kquant_can_quantize(loom_dtype t) {
    return loom_kquant_is(t);
}

/* q2_K: 16 sub-blocks of 16 values; scales[i] = 4-bit scale | 4-bit min << 4.
 * Value v = 128 h + 32 s + l (h < 2, s < 4, l < 32) is bits 2s..2s+1 of
 * qs[32 h + l]; it belongs to sub-block v / 16. */
static void deq_q2_K(const uint8_t *b, float *y) {
    const uint8_t *scales = b + offsetof(loom_block_q2_K, scales);
    const uint8_t *qs = b + offsetof(loom_block_q2_K, qs);
    const float d = ld_f16(b + offsetof(loom_block_q2_K, d));
    const float dmin = ld_f16(b + offsetof(loom_block_q2_K, dmin));
    for (int v = 0; v < LOOM_QK_K; v++) {
        const int h = v / 128, s = (v / 32) % 4, l = v % 32;
        const uint8_t sc = scales[v / 16];
        const float dl = d * (float)(sc & 0xF);
        const float ml = dmin * (float)(sc >> 4);
        const int q = (qs[32 * h + l] >> (2 * s)) & 3;
        y[v] = dl * (float)q - ml;
    }
}

/* q3_K: 16 signed 6-bit scales (biased by 32): low 4 bits in the nibbles of
 * bytes 0..7 (scale i < 8: low nibble of byte i, else high nibble of byte
 * i - 8), high 2 bits at bits 2k..2k+1 of byte 8 + (i % 4) for k = i / 4.
 * The 2 low bits of value v come as in q2_K; bit v / 32 of hmask[v % 32]
 * CLEAR means subtract 4. */
static void q3_K_scales(const uint8_t *sc, int out[16]) {
    for (int i = 0; i < 16; i++) {
        const int lo = i < 8 ? (sc[i] & 0xF) : (sc[i - 8] >> 4);
        const int hi = (sc[8 + i % 4] >> (2 * (i / 4))) & 3;
        out[i] = (lo | (hi << 4)) - 32;
    }
}

static void deq_q3_K(const uint8_t *b, float *y) {
    const uint8_t *hmask = b + offsetof(loom_block_q3_K, hmask);
    const uint8_t *qs = b + offsetof(loom_block_q3_K, qs);
    int sc[16];
    q3_K_scales(b + offsetof(loom_block_q3_K, scales), sc);
    const float d = ld_f16(b + offsetof(loom_block_q3_K, d));
    for (int v = 0; v < LOOM_QK_K; v++) {
        const int h = v / 128, s = (v / 32) % 4, l = v % 32;
        const float dl = d * (float)sc[v / 16];
        const int lo = (qs[32 * h + l] >> (2 * s)) & 3;
        const int hb = (hmask[l] >> (v / 32)) & 1;
        y[v] = dl * (float)(lo - (hb ? 0 : 4));
    }
}

/* q4_K / q5_K: 8 sub-blocks of 32 values with 6-bit scale and min packed in
 * 12 bytes: j < 4 in the low 6 bits of bytes j (scale) and 4 + j (min);
 * j >= 4 in the nibbles of byte 8 + j - 4 (scale low, min high) with their
 * top 2 bits in bits 6..7 of bytes j - 4 (scale) and j (min). */
void loom_kquant_scale_min(const uint8_t *q, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Sub-block j = 2c + k of q4_K is nibble k of qs[32 c .. 32 c + 31]. */
static void deq_q4_K(const uint8_t *b, float *y) {
    const float d = ld_f16(b + offsetof(loom_block_q4_K, d));
    const float dmin = ld_f16(b + offsetof(loom_block_q4_K, dmin));
    const uint8_t *scales = b + offsetof(loom_block_q4_K, scales);
    const uint8_t *qs = b + offsetof(loom_block_q4_K, qs);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        loom_kquant_scale_min(scales, j, &sc, &m);
        const float d1 = d * (float)sc, m1 = dmin * (float)m;
        const uint8_t *q = qs + 32 * (j / 2);
        const int sh = 4 * (j % 2);
        for (int l = 0; l < 32; l++)
            y[32 * j + l] = d1 * (float)((q[l] >> sh) & 0xF) - m1;
    }
}

/* q5_K: q4_K's nibbles plus bit j of qh[l] as bit 4 of value 32 j + l. */
static void deq_q5_K(const uint8_t *b, float *y) {
    const float d = ld_f16(b + offsetof(loom_block_q5_K, d));
    const float dmin = ld_f16(b + offsetof(loom_block_q5_K, dmin));
    const uint8_t *scales = b + offsetof(loom_block_q5_K, scales);
    const uint8_t *qh = b + offsetof(loom_block_q5_K, qh);
    const uint8_t *qs = b + offsetof(loom_block_q5_K, qs);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        loom_kquant_scale_min(scales, j, &sc, &m);
        const float d1 = d * (float)sc, m1 = dmin * (float)m;
        const uint8_t *q = qs + 32 * (j / 2);
        const int sh = 4 * (j % 2);
        for (int l = 0; l < 32; l++) {
            const int v = ((q[l] >> sh) & 0xF) | (((qh[l] >> j) & 1) << 4);
            y[32 * j + l] = d1 * (float)v - m1;
        }
    }
}

/* q6_K: value v = 128 h + 64 k + p (p < 64): low 4 bits are nibble k of
 * ql[64 h + p], high 2 bits are bits 2s..2s+1 of qh[32 h + p % 32] with
 * s = (64 k + p) / 32; 16 int8 scales per 16 values; q is biased by 32. */
static void deq_q6_K(const uint8_t *b, float *y) {
    const uint8_t *ql = b + offsetof(loom_block_q6_K, ql);
    const uint8_t *qh = b + offsetof(loom_block_q6_K, qh);
    const int8_t *scales = (const int8_t *)(b + offsetof(loom_block_q6_K, scales));
    const float d = ld_f16(b + offsetof(loom_block_q6_K, d));
    for (int v = 0; v < LOOM_QK_K; v++) {
        const int h = v / 128, k = (v / 64) % 2, p = v % 64;
        const int s = (64 * k + p) / 32;
        const int lo = (ql[64 * h + p] >> (4 * k)) & 0xF;
        const int hi = (qh[32 * h + p % 32] >> (2 * s)) & 3;
        const float dl = d * (float)scales[v / 16];
        y[v] = dl * (float)((lo | (hi << 4)) - 32);
    }
}

/* q8_K: float scale, 256 int8 values (bsums only speed up dot products). */
static void deq_q8_K(const uint8_t *b, float *y) {
    float d;
    memcpy(&d, b + offsetof(loom_block_q8_K, d), 4);
    const int8_t *qs = (const int8_t *)(b + offsetof(loom_block_q8_K, qs));
    for (int v = 0; v < LOOM_QK_K; v++)
        y[v] = d * (float)qs[v];
}

void loom_kquant_dequantize(loom_dtype t, const uint8_t *src, float *dst, int64_t nb) {
    const size_t bs = loom_dtype_block_bytes(t);
    for (int64_t i = 0; i < nb; i++, src += bs, dst += LOOM_QK_K) {
        switch (t) {
        case LOOM_Q2_K:
            deq_q2_K(src, dst);
            break;
        case LOOM_Q3_K:
            deq_q3_K(src, dst);
            break;
        case LOOM_Q4_K:
            deq_q4_K(src, dst);
            break;
        case LOOM_Q5_K:
            deq_q5_K(src, dst);
            break;
        case LOOM_Q6_K:
            deq_q6_K(src, dst);
            break;
        case LOOM_Q8_K:
            deq_q8_K(src, dst);
            break;
        default:
            return;
        }
    }
}

/* q8_K as ggml's quantize_row_q8_K_ref: the value of largest magnitude maps
 * to -127 (so a positive maximum rounds to -127 and its sign lives in d),
 * round-half-even via nearbyintf, clamped at 127; bsums are the sums of each
 * 16 quants. A block of zeros gets d = 0. */
static void quant_q8_K(const float *x, uint8_t *b) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < LOOM_QK_K; j++) {
        const float ax = fabsf(x[j]);
        if (ax > amax) {
            amax = ax;
            max = x[j];
        }
    }
    loom_block_q8_K blk;
    memset(&blk, 0, sizeof blk);
    if (amax != 0.0f) {
        const float iscale = -127.0f / max;
        for (int j = 0; j < LOOM_QK_K; j++) {
            const float r = nearbyintf(iscale * x[j]);
            /* finite inputs stay within [-127, 127]; NaN/inf map to 0 */
            const int v = (r >= -128.0f && r <= 127.0f) ? (int)r : (r > 127.0f ? 127 : 0);
            blk.qs[j] = (int8_t)v;
        }
        for (int j = 0; j < LOOM_QK_K / 16; j++) {
            int s = 0;
            for (int l = 0; l < 16; l++)
                s += blk.qs[16 * j + l];
            blk.bsums[j] = (int16_t)s;
        }
        blk.d = 1.0f / iscale;
    }
    memcpy(b, &blk, sizeof blk);
}

/* ---- k-quant quantization (q2_K .. q6_K) ----
 * The algorithm of ggml's reference quantizers (quantize_row_q{2,3,4,5,6}_K_ref
 * in ggml/src/ggml-quants.c, which llama-quantize runs when it has no
 * importance matrix): per sub-block a scale (and min) chosen by a small
 * search that minimises a weighted error (make_qx_quants, make_q3_quants,
 * make_qkx2_quants there), those scales quantized against the super-block's
 * largest, then every value re-rounded with the final scales. Rounding is
 * half-to-even (nearbyintf), as ggml's nearest_int. loom is built without FMA
 * contraction, so the bytes equal an operation-for-operation numpy model of
 * the same algorithm (scripts/kquant_ref.py, ctest gguf_kquant_quant_ref);
 * llama.cpp's own build may contract to FMA, so its files can differ in the
 * last bit of a search and the quantization error is what is compared with
 * it (scripts/check_kquant.py --rmse, docs/adr/0039-k-quant-mixes.md). */

#define KQ_GROUP_MAX_EPS 1e-15f

static int kq_nearest(float v) {
    const float r = nearbyintf(v);
    if (r != r) return 0; /* NaN */
    return r > 1e9f ? 1000000000 : r < -1e9f ? -1000000000 : (int)r;
}

static int kq_clamp(int v, int lo, int hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

/* ggml stores the 4- and 6-bit sub-block scales through uint8_t and then
 * caps them: a negative rounding wraps and caps at the top. */
static int kq_cap_u8(int v, int cap) {
    const int u = (int)(uint8_t)v;
    return u < cap ? u : cap;
}

/* Signed levels -nmax..nmax-1 (stored + nmax in L) with weights x^2: the
 * scale minimising sum w (x - scale l)^2 over 19 candidate inverse scales
 * (make_qx_quants with rmse_type 1). */
static float kq_make_qx(int n, int nmax, const float *x, uint8_t *L) {
    float max = 0.0f, amax = 0.0f;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (!(amax >= KQ_GROUP_MAX_EPS)) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = -(float)nmax / max;
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; i++) {
        const int l = kq_clamp(kq_nearest(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (uint8_t)(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0.0f;
        for (int i = 0; i < n; i++) {
            const int l = kq_clamp(kq_nearest(iscale * x[i]), -nmax, nmax - 1);
            const float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++)
                L[i] = (uint8_t)(nmax + kq_clamp(kq_nearest(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* q3_K's sub-block search (make_q3_quants with do_rmse): levels -nmax..nmax-1
 * from the largest magnitude, then up to 5 sweeps that move one value at a
 * time to the level its least-squares scale asks for when that raises
 * sumlx^2 / suml2 (the weighted fit, weights x^2). L gets level + nmax (an
 * all-zero group: L = 0 and scale 0). */
static float kq_make_q3(int n, int nmax, const float *x, uint8_t *L) {
    float max = 0.0f, amax = 0.0f;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (!(amax >= KQ_GROUP_MAX_EPS)) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    const float iscale = -(float)nmax / max;
    int l[16];
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; i++) {
        l[i] = kq_clamp(kq_nearest(iscale * x[i]), -nmax, nmax - 1);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l[i];
        suml2 += w * (float)l[i] * (float)l[i];
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * (float)l[i];
            if (!(slx > 0.0f)) continue;
            float sl2 = suml2 - w * (float)l[i] * (float)l[i];
            const int nl = kq_clamp(kq_nearest(x[i] * sl2 / slx), -nmax, nmax - 1);
            if (nl == l[i]) continue;
            slx += w * x[i] * (float)nl;
            sl2 += w * (float)nl * (float)nl;
            if (sl2 > 0.0f && slx * slx * suml2 > sumlx * sumlx * sl2) {
                l[i] = nl;
                sumlx = slx;
                suml2 = sl2;
                n_changed++;
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; i++)
        L[i] = (uint8_t)(l[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Unsigned levels 0..nmax with a min (x ~ scale * l - min, min >= 0): start
 * from the range, then nstep + 1 candidate inverse scales, each followed by
 * the weighted least-squares scale and min for its levels; keep the one with
 * the smallest weighted error, squared or (use_mad, q2_K) absolute
 * (make_qkx2_quants). */
static float kq_make_qkx(int n, int nmax, const float *x, const float *w, uint8_t *L,
                         float *the_min, float rmin, float rdelta, int nstep, bool use_mad) {
    uint8_t Laux[32];
    float min = x[0], max = x[0], sum_w = w[0], sum_x = w[0] * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0.0f) min = 0.0f;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.0f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1.0f / iscale;
    float best_error = 0.0f;
    for (int i = 0; i < n; i++) {
        const int l = kq_clamp(kq_nearest(iscale * (x[i] - min)), 0, nmax);
        L[i] = (uint8_t)l;
        const float diff = scale * (float)l + min - x[i];
        best_error += w[i] * (use_mad ? fabsf(diff) : diff * diff);
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
        for (int i = 0; i < n; i++) {
            const int l = kq_clamp(kq_nearest(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * (float)l;
            sum_l2 += w[i] * (float)l * (float)l;
            sum_xl += w[i] * (float)l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0.0f) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0.0f) {
                this_min = 0.0f;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0.0f;
            for (int i = 0; i < n; i++) {
                const float diff = this_scale * (float)Laux[i] + this_min - x[i];
                cur_error += w[i] * (use_mad ? fabsf(diff) : diff * diff);
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* 2 bits per value: 16 sub-blocks of 16, each with a 4-bit scale and min
 * against the super-block's d and dmin; the search weighs |x| and the
 * absolute error. */
static void quant_q2_K(const float *x, uint8_t *out) {
    loom_block_q2_K y;
    memset(&y, 0, sizeof y);
    uint8_t L[LOOM_QK_K];
    float scales[16], mins[16], w[16];
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 16; j++) {
        for (int l = 0; l < 16; l++)
            w[l] = fabsf(x[16 * j + l]);
        scales[j] = kq_make_qkx(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, true);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    if (max_scale > 0.0f) {
        const float iscale = 15.0f / max_scale;
        for (int j = 0; j < 16; j++)
            y.scales[j] = (uint8_t)kq_nearest(iscale * scales[j]);
        y.d = loom_f32_to_f16(max_scale / 15.0f);
    }
    if (max_min > 0.0f) {
        const float iscale = 15.0f / max_min;
        for (int j = 0; j < 16; j++)
            y.scales[j] |= (uint8_t)((unsigned)kq_nearest(iscale * mins[j]) << 4);
        y.dmin = loom_f32_to_f16(max_min / 15.0f);
    }
    for (int j = 0; j < 16; j++) {
        const float d = loom_f16_to_f32(y.d) * (float)(y.scales[j] & 0xF);
        if (d == 0.0f) continue;
        const float dm = loom_f16_to_f32(y.dmin) * (float)(y.scales[j] >> 4);
        for (int l = 0; l < 16; l++)
            L[16 * j + l] = (uint8_t)kq_clamp(kq_nearest((x[16 * j + l] + dm) / d), 0, 3);
    }
    for (int j = 0; j < LOOM_QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            y.qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                        (L[j + l + 96] << 6));
    memcpy(out, &y, sizeof y);
}

/* 3 bits per value: 16 sub-blocks of 16 with signed 6-bit scales against d
 * (layout in q3_K_scales above); the low 2 bits go to qs as in q2_K, the
 * third to hmask (set: level >= 4, i.e. not biased down by 4). */
static void quant_q3_K(const float *x, uint8_t *out) {
    loom_block_q3_K y;
    memset(&y, 0, sizeof y);
    uint8_t L[LOOM_QK_K];
    float scales[16], max_scale = 0.0f, amax = 0.0f;
    for (int j = 0; j < 16; j++) {
        scales[j] = kq_make_q3(16, 4, x + 16 * j, L + 16 * j);
        if (fabsf(scales[j]) > amax) {
            amax = fabsf(scales[j]);
            max_scale = scales[j];
        }
    }
    if (max_scale != 0.0f) {
        const float iscale = -32.0f / max_scale;
        for (int j = 0; j < 16; j++) {
            const int l = kq_clamp((int8_t)kq_nearest(iscale * scales[j]), -32, 31) + 32;
            if (j < 8)
                y.scales[j] = (uint8_t)(l & 0xF);
            else
                y.scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
            y.scales[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
        }
        y.d = loom_f32_to_f16(1.0f / iscale);
    }
    int sc[16];
    q3_K_scales(y.scales, sc);
    for (int j = 0; j < 16; j++) {
        const float d = loom_f16_to_f32(y.d) * (float)sc[j];
        if (d == 0.0f) continue;
        for (int l = 0; l < 16; l++)
            L[16 * j + l] = (uint8_t)(kq_clamp(kq_nearest(x[16 * j + l] / d), -4, 3) + 4);
    }
    for (int j = 0; j < LOOM_QK_K; j++)
        if (L[j] > 3) {
            y.hmask[j % 32] |= (uint8_t)(1u << (j / 32));
            L[j] -= 4;
        }
    for (int j = 0; j < LOOM_QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            y.qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                        (L[j + l + 96] << 6));
    memcpy(out, &y, sizeof y);
}

/* q4_K and q5_K share the scale/min search: 8 sub-blocks of 32 values with
 * weights rms + |x|, 6-bit scales and mins against d and dmin (packing in
 * loom_kquant_scale_min), then the levels 0..nmax re-rounded. */
static void kq_scale_min_32(const float *x, int nmax, float rmin, int nstep, uint8_t *scales12,
                            uint16_t *dh, uint16_t *dminh, uint8_t *L) {
    float scales[8], mins[8], w[32];
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 8; j++) {
        float sum_x2 = 0.0f;
        for (int l = 0; l < 32; l++)
            sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++)
            w[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] =
            kq_make_qkx(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j], rmin, 0.1f, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
    memset(scales12, 0, LOOM_K_SCALE_SIZE);
    for (int j = 0; j < 8; j++) {
        const int ls = kq_cap_u8(kq_nearest(inv_scale * scales[j]), 63);
        const int lm = kq_cap_u8(kq_nearest(inv_min * mins[j]), 63);
        if (j < 4) {
            scales12[j] = (uint8_t)ls;
            scales12[j + 4] = (uint8_t)lm;
        } else {
            scales12[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            scales12[j - 4] |= (uint8_t)((ls >> 4) << 6);
            scales12[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    *dh = loom_f32_to_f16(max_scale / 63.0f);
    *dminh = loom_f32_to_f16(max_min / 63.0f);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        loom_kquant_scale_min(scales12, j, &sc, &m);
        const float d = loom_f16_to_f32(*dh) * (float)sc;
        if (d == 0.0f) continue;
        const float dm = loom_f16_to_f32(*dminh) * (float)m;
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = (uint8_t)kq_clamp(kq_nearest((x[32 * j + l] + dm) / d), 0, nmax);
    }
}

static void quant_q4_K(const float *x, uint8_t *out) {
    loom_block_q4_K y;
    memset(&y, 0, sizeof y);
    uint8_t L[LOOM_QK_K];
    kq_scale_min_32(x, 15, -1.0f, 20, y.scales, &y.d, &y.dmin, L);
    for (int j = 0; j < LOOM_QK_K; j += 64)
        for (int l = 0; l < 32; l++)
            y.qs[j / 2 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    memcpy(out, &y, sizeof y);
}

/* q5_K: q4_K's nibbles, bit 4 of value 32 j + l in bit j of qh[l]. */
static void quant_q5_K(const float *x, uint8_t *out) {
    loom_block_q5_K y;
    memset(&y, 0, sizeof y);
    uint8_t L[LOOM_QK_K];
    kq_scale_min_32(x, 31, -0.5f, 15, y.scales, &y.d, &y.dmin, L);
    for (int j = 0; j < LOOM_QK_K; j++)
        if (L[j] > 15) {
            y.qh[j % 32] |= (uint8_t)(1u << (j / 32));
            L[j] -= 16;
        }
    for (int j = 0; j < LOOM_QK_K; j += 64)
        for (int l = 0; l < 32; l++)
            y.qs[j / 2 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    memcpy(out, &y, sizeof y);
}
static void quant_q6_K(const float *x, uint8_t *out) {
    loom_block_q6_K y;
    memset(&y, 0, sizeof y);
    uint8_t L[LOOM_QK_K];
    float scales[16], max_scale = 0.0f, max_abs_scale = 0.0f;
    for (int ib = 0; ib < 16; ib++) {
        const float s = kq_make_qx(16, 32, x + 16 * ib, L + 16 * ib);
        scales[ib] = s;
        if (fabsf(s) > max_abs_scale) {
            max_abs_scale = fabsf(s);
            max_scale = s;
        }
    }
    if (!(max_abs_scale >= KQ_GROUP_MAX_EPS)) {
        memcpy(out, &y, sizeof y); /* all zero, d = 0 */
        return;
    }
    const float iscale = -128.0f / max_scale;
    y.d = loom_f32_to_f16(1.0f / iscale);
    for (int ib = 0; ib < 16; ib++)
        y.scales[ib] = (int8_t)kq_clamp(kq_nearest(iscale * scales[ib]), -128, 127);
    for (int j = 0; j < 16; j++) {
        const float d = loom_f16_to_f32(y.d) * (float)y.scales[j];
        if (d == 0.0f) continue;
        for (int l = 0; l < 16; l++)
            L[16 * j + l] = (uint8_t)(kq_clamp(kq_nearest(x[16 * j + l] / d), -32, 31) + 32);
    }
    for (int j = 0; j < LOOM_QK_K; j += 128) {
        uint8_t *ql = y.ql + j / 2, *qh = y.qh + j / 4;
        for (int l = 0; l < 32; l++) {
            const uint8_t *q = L + j + l;
            ql[l] = (uint8_t)((q[0] & 0xF) | ((q[64] & 0xF) << 4));
            ql[l + 32] = (uint8_t)((q[32] & 0xF) | ((q[96] & 0xF) << 4));
            qh[l] = (uint8_t)((q[0] >> 4) | ((q[32] >> 4) << 2) | ((q[64] >> 4) << 4) |
                              ((q[96] >> 4) << 6));
        }
    }
    memcpy(out, &y, sizeof y);
}

void loom_kquant_quantize(loom_dtype t, const float *src, uint8_t *dst, int64_t nb) {
    const size_t bb = loom_dtype_block_bytes(t);
    for (int64_t i = 0; i < nb; i++) {
        const float *x = src + i * LOOM_QK_K;
        uint8_t *b = dst + (size_t)i * bb;
        switch (t) {
        case LOOM_Q2_K:
            quant_q2_K(x, b);
            break;
        case LOOM_Q3_K:
            quant_q3_K(x, b);
            break;
        case LOOM_Q4_K:
            quant_q4_K(x, b);
            break;
        case LOOM_Q5_K:
            quant_q5_K(x, b);
            break;
        case LOOM_Q6_K:
            quant_q6_K(x, b);
            break;
        case LOOM_Q8_K:
            quant_q8_K(x, b);
            break;
        default:
            return;
        }
    }
}
