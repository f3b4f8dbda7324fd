/* ir/dtype.c - element types: names, sizes, scalar conversions, GGUF q8_0/q4_0
 * blocks and bitsandbytes NF4 (optionally double-quantized).
 *
 * Everything here is a portable reference implementation: bit manipulation
 * instead of _Float16, no global mutable state, no printing. Loads and stores
 * of multi-byte values from caller buffers go through memcpy so that a buffer
 * at any byte offset (e.g. inside a mapped file) is accessed without UB. */
#include "loom/dtype.h"

#include <float.h>
#include "dtype_kquant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(float) == 4, "loom assumes IEEE-754 binary32 floats");
_Static_assert(sizeof(loom_block_q8_0) == 34, "block_q8_0 must match GGUF");
_Static_assert(sizeof(loom_block_q4_0) == 18, "block_q4_0 must match GGUF");
_Static_assert(sizeof(loom_block_q4_1) == 20, "block_q4_1 must match GGUF");
_Static_assert(sizeof(loom_block_q5_0) == 22, "block_q5_0 must match GGUF");
_Static_assert(sizeof(loom_block_q5_1) == 24, "block_q5_1 must match GGUF");
_Static_assert(sizeof(loom_block_q2_K) == 84, "block_q2_K must match GGUF");
_Static_assert(sizeof(loom_block_q3_K) == 110, "block_q3_K must match GGUF");
_Static_assert(sizeof(loom_block_q4_K) == 144, "block_q4_K must match GGUF");
_Static_assert(sizeof(loom_block_q5_K) == 176, "block_q5_K must match GGUF");
_Static_assert(sizeof(loom_block_q6_K) == 210, "block_q6_K must match GGUF");
_Static_assert(sizeof(loom_block_q8_K) == 292, "block_q8_K must match ggml");

/* ---- unaligned-safe loads/stores ---- */

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline float load_f32(const uint8_t *p) {
    float f;
    memcpy(&f, p, 4);
    return f;
}
static inline void store_f32(uint8_t *p, float f) {
    memcpy(p, &f, 4);
}
static inline uint16_t load_u16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
static inline void store_u16(uint8_t *p, uint16_t v) {
    memcpy(p, &v, 2);
}
static inline int32_t load_i32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline void store_i32(uint8_t *p, int32_t v) {
    memcpy(p, &v, 4);
}

/* ---- names and sizes ---- */

static const char *const dtype_names[LOOM_DTYPE_COUNT] = {
    [LOOM_F32] = "f32",   [LOOM_F16] = "f16",   [LOOM_BF16] = "bf16", [LOOM_I32] = "i32",
    [LOOM_Q8_0] = "q8_0", [LOOM_Q4_0] = "q4_0", [LOOM_NF4] = "nf4",   [LOOM_NF4_DQ] = "nf4_dq",
    [LOOM_Q4_1] = "q4_1", [LOOM_Q5_0] = "q5_0", [LOOM_Q5_1] = "q5_1", [LOOM_Q2_K] = "q2_K",
    [LOOM_Q3_K] = "q3_K", [LOOM_Q4_K] = "q4_K", [LOOM_Q5_K] = "q5_K", [LOOM_Q6_K] = "q6_K",
    [LOOM_Q8_K] = "q8_K",
};

static bool dtype_valid(loom_dtype t) {
    return (unsigned)t < (unsigned)LOOM_DTYPE_COUNT;
}

const char *loom_dtype_name(loom_dtype t) {
    return dtype_valid(t) ? dtype_names[t] : "?";
}

loom_status loom_dtype_from_name(const char *name, loom_dtype *out) {
    if (!name || !out) return LOOM_ERR_INVALID_ARG;
    for (int i = 0; i < LOOM_DTYPE_COUNT; i++) {
        if (strcmp(name, dtype_names[i]) == 0) {
            *out = (loom_dtype)i;
            return LOOM_OK;
        }
    }
    return LOOM_ERR_INVALID_ARG;
}

/* 0 for an out-of-range dtype. */
int64_t loom_dtype_block_size(loom_dtype t) {
    switch (t) {
    case LOOM_F32:
    case LOOM_F16:
    case LOOM_BF16:
    case LOOM_I32:
        return 1;
    case LOOM_Q8_0:
        return LOOM_QK8_0;
    case LOOM_Q4_0:
        return LOOM_QK4_0;
    case LOOM_Q4_1:
    case LOOM_Q5_0:
    case LOOM_Q5_1:
        return 32;
    case LOOM_Q2_K:
    case LOOM_Q3_K:
    case LOOM_Q4_K:
    case LOOM_Q5_K:
    case LOOM_Q6_K:
    case LOOM_Q8_K:
        return LOOM_QK_K;
    case LOOM_NF4:
    case LOOM_NF4_DQ:
        return LOOM_NF4_BLOCK;
    default:
        return 0;
    }
}

size_t loom_dtype_block_bytes(loom_dtype t) {
    switch (t) {
    case LOOM_F32:
        return 4;
    case LOOM_F16:
    case LOOM_BF16:
        return 2;
    case LOOM_I32:
        return 4;
    case LOOM_Q8_0:
        return sizeof(loom_block_q8_0);
    case LOOM_Q4_0:
        return sizeof(loom_block_q4_0);
    case LOOM_Q4_1:
        return sizeof(loom_block_q4_1);
    case LOOM_Q5_0:
        return sizeof(loom_block_q5_0);
    case LOOM_Q5_1:
        return sizeof(loom_block_q5_1);
    case LOOM_Q2_K:
        return sizeof(loom_block_q2_K);
    case LOOM_Q3_K:
        return sizeof(loom_block_q3_K);
    case LOOM_Q4_K:
        return sizeof(loom_block_q4_K);
    case LOOM_Q5_K:
        return sizeof(loom_block_q5_K);
    case LOOM_Q6_K:
        return sizeof(loom_block_q6_K);
    case LOOM_Q8_K:
        return sizeof(loom_block_q8_K);
    default:
        return 0; /* nf4/nf4_dq: only a whole tensor has a size */
    }
}

bool loom_dtype_is_quantized(loom_dtype t) {
    return t != LOOM_F32 && t != LOOM_F16 && t != LOOM_BF16 && t != LOOM_I32 && dtype_valid(t);
}
bool loom_dtype_is_nf4(loom_dtype t) {
    return t == LOOM_NF4 || t == LOOM_NF4_DQ;
}
bool loom_dtype_is_float(loom_dtype t) {
    return t == LOOM_F32 || t == LOOM_F16 || t == LOOM_BF16;
}

/* Section sizes of an nf4 tensor of n elements (n % 64 == 0). */
static size_t nf4_codes_bytes(int64_t n) {
    return (size_t)n / 2;
}
static size_t nf4_nblocks(int64_t n) {
    return (size_t)n / LOOM_NF4_BLOCK;
}
static size_t nf4_ngroups(int64_t n) {
    return (nf4_nblocks(n) + LOOM_NF4_DQ_BLOCK - 1) / LOOM_NF4_DQ_BLOCK;
}
static size_t round_up4(size_t v) {
    return (v + 3) & ~(size_t)3;
}

/* Returns 0 (an impossible size for n > 0) when n is negative, is not a
 * multiple of the block size, or t is out of range: callers treat 0 as
 * "invalid request" rather than getting a silently truncated size. Note that
 * nf4_dq with n == 0 still has its 4-byte offset field. */
size_t loom_dtype_nbytes(loom_dtype t, int64_t n) {
    int64_t bs = loom_dtype_block_size(t);
    if (bs == 0 || n < 0 || n % bs != 0) return 0;
    switch (t) {
    case LOOM_NF4:
        return nf4_codes_bytes(n) + 4 * nf4_nblocks(n);
    case LOOM_NF4_DQ:
        return nf4_codes_bytes(n) + round_up4(nf4_nblocks(n)) + 4 * nf4_ngroups(n) + 4;
    default:
        return (size_t)(n / bs) * loom_dtype_block_bytes(t);
    }
}

/* ---- scalar conversions ---- */

uint16_t loom_f32_to_f16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t a = x & 0x7fffffffu;

    if (a > 0x7f800000u) /* NaN: keep the top payload bits, force quiet */
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    /* 65520 is the midpoint between 65504 (odd mantissa) and 2^16: ties go
     * to even, i.e. to infinity, so everything from there up is inf. */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
    if (a >= 0x38800000u) { /* normal half (>= 2^-14) */
        /* Rebias the exponent and keep 10 mantissa bits; a rounding carry
         * propagates into the exponent, which is exactly right. */
        uint32_t h = (a - 0x38000000u) >> 13;
        uint32_t rem = a & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
        return (uint16_t)(sign | h);
    }
    if (a < 0x33000000u) return sign; /* below half the smallest subnormal */
    /* Subnormal half: value / 2^-24 = m >> shift with the implicit bit made
     * explicit. shift is 14..24; rounding may yield 0x400 (= smallest normal),
     * also correct. */
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - (a >> 23);
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (uint16_t)(sign | q);
}

float loom_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    if (e == 0x1fu) /* inf, or NaN made quiet */
        return bits_f32(sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0u));
    if (e == 0) {
        if (m == 0) return bits_f32(sign);
        /* Subnormal: normalise so the leading 1 becomes the implicit bit. */
        int exp = -14;
        while (!(m & 0x400u)) {
            m <<= 1;
            exp--;
        }
        m &= 0x3ffu;
        return bits_f32(sign | ((uint32_t)(exp + 127) << 23) | (m << 13));
    }
    return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

uint16_t loom_f32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    /* Same exponent range as f32, so rounding the mantissa is all there is;
     * a carry into the exponent (up to inf) is correct RNE behaviour. */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

float loom_bf16_to_f32(uint16_t h) {
    uint32_t x = (uint32_t)h << 16;
    if ((x & 0x7fffffffu) > 0x7f800000u) x |= 0x400000u;
    return bits_f32(x);
}

/* ---- GGUF q8_0 / q4_0 ----
 * These follow ggml's reference quantizers operation for operation (same
 * float ops in the same order) so the bytes match. Only the float->int
 * conversions are guarded: for finite inputs they are in range and identical
 * to the plain casts; NaN (which ggml leaves to UB) maps to 0. */

/* ggml casts roundf(x * id) straight to int8_t. That is in range for every
 * block with a finite, normal-enough scale; when id overflows to inf (amax
 * below ~3.7e-37) or the input is NaN/inf the cast is UB in C, and x86
 * builds of ggml produce 0 there (cvttss2si yields INT32_MIN, whose low byte
 * is 0). We return that same 0 without the UB. */
static int8_t q8_from_float(float v) {
    float r = roundf(v);
    if (!(r >= -128.0f && r <= 127.0f)) return 0;
    return (int8_t)r;
}

static void quantize_q8_0(const float *x, uint8_t *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += LOOM_QK8_0, y += sizeof(loom_block_q8_0)) {
        float amax = 0.0f;
        for (int j = 0; j < LOOM_QK8_0; j++) {
            float v = fabsf(x[j]);
            amax = amax > v ? amax : v; /* ggml's MAX(a, b), NaN quirks included */
        }
        const float d = amax / ((1 << 7) - 1);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        store_u16(y, loom_f32_to_f16(d));
        int8_t *qs = (int8_t *)(y + 2);
        for (int j = 0; j < LOOM_QK8_0; j++)
            qs[j] = q8_from_float(x[j] * id);
    }
}

/* ggml: MIN(15, (int8_t)(x + 8.5f)), truncating toward zero. Out-of-range
 * and NaN values (only reachable with a non-finite id) give 0, as above. */
static uint8_t q4_nibble(float v) {
    float t = v + 8.5f;
    int q = (t > -1.0f && t < 128.0f) ? (int)t : 0;
    return (uint8_t)(q < 15 ? q : 15);
}

static void quantize_q4_0(const float *x, uint8_t *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += LOOM_QK4_0, y += sizeof(loom_block_q4_0)) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < LOOM_QK4_0; j++) { /* first element of largest |x| wins */
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        const float d = max / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        store_u16(y, loom_f32_to_f16(d));
        for (int j = 0; j < LOOM_QK4_0 / 2; j++) {
            const float x0 = x[j] * id;
            const float x1 = x[j + LOOM_QK4_0 / 2] * id;
            y[2 + j] = (uint8_t)(q4_nibble(x0) | (q4_nibble(x1) << 4));
        }
    }
}

static void dequantize_q8_0(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += sizeof(loom_block_q8_0), y += LOOM_QK8_0) {
        const float d = loom_f16_to_f32(load_u16(x));
        const int8_t *qs = (const int8_t *)(x + 2);
        for (int j = 0; j < LOOM_QK8_0; j++)
            y[j] = qs[j] * d;
    }
}

static void dequantize_q4_0(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += sizeof(loom_block_q4_0), y += LOOM_QK4_0) {
        const float d = loom_f16_to_f32(load_u16(x));
        for (int j = 0; j < LOOM_QK4_0 / 2; j++) {
            const int x0 = (x[2 + j] & 0x0f) - 8;
            const int x1 = (x[2 + j] >> 4) - 8;
            y[j] = x0 * d;
            y[j + LOOM_QK4_0 / 2] = x1 * d;
        }
    }
}

/* ---- GGUF q4_1 / q5_0 / q5_1 ----
 * ggml's quantize_row_q4_1_ref / q5_0_ref / q5_1_ref, float op for float op
 * (gguf-py's gguf/quants.py computes the same): q5_0 is q4_0 with 5 bits
 * (d = max / -16, code = min(31, trunc(x/d + 16.5))); q4_1 and q5_1 store the
 * block minimum m and d = (max - min) / (2^bits - 1), code =
 * min(2^bits - 1, trunc((x - min)/d + 0.5)). The 5th bit of value j is bit j
 * of the little-endian u32 qh. Dequantization is d * code (+ m), two rounded
 * float ops (C11 builds do not contract them into an FMA), as gguf-py does. */

/* trunc(v) clamped to [0, top]; only non-finite inputs (a non-finite id)
 * reach the guard, and give 0 as for q4_0. */
static uint8_t q_code(float v, int top) {
    int q = (v > -1.0f && v < 128.0f) ? (int)v : 0;
    return (uint8_t)(q < top ? q : top);
}

/* Block minimum and maximum as ggml's loops find them (strict < and >). */
static void block_min_max(const float *x, int n, float *mn, float *mx) {
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *mn = lo;
    *mx = hi;
}

/* Pack 32 codes of `bits` (4 or 5) bits: low nibbles as q4_0 (j and j+16
 * share byte j), the 5th bits into qh (when non-NULL). */
static void pack_codes(const uint8_t *q, uint8_t *qh, uint8_t *qs) {
    uint32_t h = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 15u) | ((q[j + 16] & 15u) << 4));
        h |= (uint32_t)(q[j] >> 4) << j;
        h |= (uint32_t)(q[j + 16] >> 4) << (j + 16);
    }
    if (qh) memcpy(qh, &h, 4);
}

/* Codes of one block (bits 4 or 5) unpacked; qh NULL for 4-bit blocks. */
static void unpack_codes(const uint8_t *qh, const uint8_t *qs, int *q) {
    uint32_t h = 0;
    if (qh) memcpy(&h, qh, 4);
    for (int j = 0; j < 16; j++) {
        q[j] = (qs[j] & 15) | (int)(((h >> j) & 1u) << 4);
        q[j + 16] = (qs[j] >> 4) | (int)(((h >> (j + 16)) & 1u) << 4);
    }
}

/* q4_1 (bits 4, qh NULL) and q5_1 (bits 5): d, m, [qh,] qs. */
static void quantize_qx_1(const float *x, uint8_t *y, int64_t nb, int bits) {
    const size_t bsz = bits == 4 ? sizeof(loom_block_q4_1) : sizeof(loom_block_q5_1);
    const int top = (1 << bits) - 1;
    for (int64_t i = 0; i < nb; i++, x += 32, y += bsz) {
        float mn, mx;
        block_min_max(x, 32, &mn, &mx);
        const float d = (mx - mn) / top;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        store_u16(y, loom_f32_to_f16(d));
        store_u16(y + 2, loom_f32_to_f16(mn));
        uint8_t q[32];
        for (int j = 0; j < 32; j++)
            q[j] = q_code((x[j] - mn) * id + 0.5f, top);
        pack_codes(q, bits == 5 ? y + 4 : NULL, y + (bits == 5 ? 8 : 4));
    }
}

static void quantize_q5_0(const float *x, uint8_t *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += LOOM_QK5_0, y += sizeof(loom_block_q5_0)) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < LOOM_QK5_0; j++) { /* first element of largest |x| wins */
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        const float d = max / -16;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        store_u16(y, loom_f32_to_f16(d));
        uint8_t q[32];
        for (int j = 0; j < 32; j++)
            q[j] = q_code(x[j] * id + 16.5f, 31);
        pack_codes(q, y + 2, y + 6);
    }
}

static void dequantize_qx_1(const uint8_t *x, float *y, int64_t nb, int bits) {
    const size_t bsz = bits == 4 ? sizeof(loom_block_q4_1) : sizeof(loom_block_q5_1);
    for (int64_t i = 0; i < nb; i++, x += bsz, y += 32) {
        const float d = loom_f16_to_f32(load_u16(x));
        const float m = loom_f16_to_f32(load_u16(x + 2));
        int q[32];
        unpack_codes(bits == 5 ? x + 4 : NULL, x + (bits == 5 ? 8 : 4), q);
        for (int j = 0; j < 32; j++) {
            const float p = q[j] * d;
            y[j] = p + m;
        }
    }
}

static void dequantize_q5_0(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += sizeof(loom_block_q5_0), y += LOOM_QK5_0) {
        const float d = loom_f16_to_f32(load_u16(x));
        int q[32];
        unpack_codes(x + 2, x + 6, q);
        for (int j = 0; j < 32; j++)
            y[j] = (q[j] - 16) * d;
    }
}

/* float -> i32 "by value": truncate toward zero like a C cast, saturating
 * out-of-range values and mapping NaN to 0 instead of invoking UB. */
static int32_t i32_from_float(float v) {
    if (v != v) return 0;
    if (v >= 2147483648.0f) return INT32_MAX;
    if (v < -2147483648.0f) return INT32_MIN;
    return (int32_t)v;
}

/* Row functions: common argument checks. */
static loom_status check_row(loom_dtype t, const void *src, const void *dst, int64_t n) {
    if (!dtype_valid(t) || loom_dtype_is_nf4(t) || n < 0) return LOOM_ERR_INVALID_ARG;
    if (n % loom_dtype_block_size(t) != 0) return LOOM_ERR_INVALID_ARG;
    if (n > 0 && (!src || !dst)) return LOOM_ERR_INVALID_ARG;
    return LOOM_OK;
}

loom_status loom_dequantize_row(loom_dtype t, const void *src, float *dst, int64_t n) {
    LOOM_TRY(check_row(t, src, dst, n));
    if (n == 0) return LOOM_OK;
    const uint8_t *s = src;
    switch (t) {
    case LOOM_F32:
        memmove(dst, src, (size_t)n * 4);
        break;
    case LOOM_F16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = loom_f16_to_f32(load_u16(s + 2 * i));
        break;
    case LOOM_BF16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = loom_bf16_to_f32(load_u16(s + 2 * i));
        break;
    case LOOM_I32:
        for (int64_t i = 0; i < n; i++)
            dst[i] = (float)load_i32(s + 4 * i);
        break;
    case LOOM_Q8_0:
        dequantize_q8_0(s, dst, n / LOOM_QK8_0);
        break;
    case LOOM_Q4_0:
        dequantize_q4_0(s, dst, n / LOOM_QK4_0);
        break;
    case LOOM_Q4_1:
        dequantize_qx_1(s, dst, n / LOOM_QK4_1, 4);
        break;
    case LOOM_Q5_0:
        dequantize_q5_0(s, dst, n / LOOM_QK5_0);
        break;
    case LOOM_Q5_1:
        dequantize_qx_1(s, dst, n / LOOM_QK5_1, 5);
        break;
    default:
        if (loom_kquant_is(t)) { /* ir/dtype_kquant.c */
            loom_kquant_dequantize(t, s, dst, n / LOOM_QK_K);
            break;
        }
        return LOOM_ERR_INVALID_ARG;
    }
    return LOOM_OK;
}

loom_status loom_quantize_row(loom_dtype t, const float *src, void *dst, int64_t n) {
    LOOM_TRY(check_row(t, src, dst, n));
    if (n == 0) return LOOM_OK;
    uint8_t *d = dst;
    switch (t) {
    case LOOM_F32:
        memmove(dst, src, (size_t)n * 4);
        break;
    case LOOM_F16:
        for (int64_t i = 0; i < n; i++)
            store_u16(d + 2 * i, loom_f32_to_f16(src[i]));
        break;
    case LOOM_BF16:
        for (int64_t i = 0; i < n; i++)
            store_u16(d + 2 * i, loom_f32_to_bf16(src[i]));
        break;
    case LOOM_I32:
        for (int64_t i = 0; i < n; i++)
            store_i32(d + 4 * i, i32_from_float(src[i]));
        break;
    case LOOM_Q8_0:
        quantize_q8_0(src, d, n / LOOM_QK8_0);
        break;
    case LOOM_Q4_0:
        quantize_q4_0(src, d, n / LOOM_QK4_0);
        break;
    case LOOM_Q4_1:
        quantize_qx_1(src, d, n / LOOM_QK4_1, 4);
        break;
    case LOOM_Q5_0:
        quantize_q5_0(src, d, n / LOOM_QK5_0);
        break;
    case LOOM_Q5_1:
        quantize_qx_1(src, d, n / LOOM_QK5_1, 5);
        break;
    default:
        if (loom_kquant_can_quantize(t)) { /* ir/dtype_kquant.c */
            loom_kquant_quantize(t, src, d, n / LOOM_QK_K);
            break;
        }
        return LOOM_ERR_INVALID_ARG;
    }
    return LOOM_OK;
}

/* ---- NF4 ---- */

/* bitsandbytes NF4 codebook (the float32 values it stores). */
const float loom_nf4_code[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

/* bitsandbytes create_dynamic_map(signed=True, max_exponent_bits=7,
 * total_bits=8), sorted. Generated offline by replaying the algorithm in
 * float32 with torch.linspace's CPU formula (start + j*step for the first
 * half, end - (steps-1-j)*step for the rest); values printed with %.9g so
 * they convert back to the exact float32. Strictly increasing, from
 * about -0.99297 up to exactly 1.0, with 0.0 at index 127. */
const float loom_nf4_dq_code[256] = {
    -0.992968738f,    -0.978906274f,    -0.96484375f,     -0.950781226f,
    -0.936718762f,    -0.922656238f,    -0.908593774f,    -0.89453125f,
    -0.880468726f,    -0.866406262f,    -0.852343738f,    -0.838281274f,
    -0.82421875f,     -0.810156226f,    -0.796093762f,    -0.782031238f,
    -0.767968774f,    -0.75390625f,     -0.739843786f,    -0.725781262f,
    -0.711718738f,    -0.697656274f,    -0.68359375f,     -0.669531286f,
    -0.655468762f,    -0.641406238f,    -0.627343774f,    -0.61328125f,
    -0.599218786f,    -0.585156262f,    -0.571093738f,    -0.557031274f,
    -0.54296875f,     -0.528906226f,    -0.514843762f,    -0.500781238f,
    -0.486718714f,    -0.47265625f,     -0.458593726f,    -0.444531232f,
    -0.430468738f,    -0.416406214f,    -0.40234375f,     -0.388281226f,
    -0.374218762f,    -0.360156238f,    -0.346093714f,    -0.33203125f,
    -0.317968726f,    -0.303906262f,    -0.289843738f,    -0.275781244f,
    -0.26171875f,     -0.247656241f,    -0.233593747f,    -0.219531253f,
    -0.205468744f,    -0.19140625f,     -0.177343741f,    -0.163281247f,
    -0.149218753f,    -0.135156244f,    -0.12109375f,     -0.107031256f,
    -0.0985937491f,   -0.0957812592f,   -0.0929687545f,   -0.0901562497f,
    -0.0873437524f,   -0.0845312476f,   -0.0817187577f,   -0.078906253f,
    -0.0760937557f,   -0.0732812509f,   -0.0704687461f,   -0.0676562563f,
    -0.0648437515f,   -0.0620312504f,   -0.0592187531f,   -0.0564062484f,
    -0.0535937548f,   -0.05078125f,     -0.047968749f,    -0.0451562479f,
    -0.0423437469f,   -0.0395312496f,   -0.0367187522f,   -0.0339062475f,
    -0.0310937501f,   -0.0282812472f,   -0.0254687499f,   -0.0226562507f,
    -0.0198437497f,   -0.0170312505f,   -0.0142187504f,   -0.0114062503f,
    -0.00971874967f,  -0.00915624946f,  -0.00859375019f,  -0.00803124998f,
    -0.00746874977f,  -0.00690625003f,  -0.00634375028f,  -0.00578125007f,
    -0.00521875033f,  -0.00465624966f,  -0.00409374991f,  -0.00353124971f,
    -0.00296874996f,  -0.00240624999f,  -0.00184375001f,  -0.00128124992f,
    -0.000943750085f, -0.000831249985f, -0.00071875006f,  -0.000606250076f,
    -0.000493749976f, -0.000381249993f, -0.000268750038f, -0.000156250011f,
    -8.87499991e-05f, -6.62500024e-05f, -4.37499984e-05f, -2.12499981e-05f,
    -7.7499999e-06f,  -3.25000019e-06f, -5.50000038e-07f, 0.0f,
    5.50000038e-07f,  3.25000019e-06f,  7.7499999e-06f,   2.12499981e-05f,
    4.37499984e-05f,  6.62500024e-05f,  8.87499991e-05f,  0.000156250011f,
    0.000268750038f,  0.000381249993f,  0.000493749976f,  0.000606250076f,
    0.00071875006f,   0.000831249985f,  0.000943750085f,  0.00128124992f,
    0.00184375001f,   0.00240624999f,   0.00296874996f,   0.00353124971f,
    0.00409374991f,   0.00465624966f,   0.00521875033f,   0.00578125007f,
    0.00634375028f,   0.00690625003f,   0.00746874977f,   0.00803124998f,
    0.00859375019f,   0.00915624946f,   0.00971874967f,   0.0114062503f,
    0.0142187504f,    0.0170312505f,    0.0198437497f,    0.0226562507f,
    0.0254687499f,    0.0282812472f,    0.0310937501f,    0.0339062475f,
    0.0367187522f,    0.0395312496f,    0.0423437469f,    0.0451562479f,
    0.047968749f,     0.05078125f,      0.0535937548f,    0.0564062484f,
    0.0592187531f,    0.0620312504f,    0.0648437515f,    0.0676562563f,
    0.0704687461f,    0.0732812509f,    0.0760937557f,    0.078906253f,
    0.0817187577f,    0.0845312476f,    0.0873437524f,    0.0901562497f,
    0.0929687545f,    0.0957812592f,    0.0985937491f,    0.107031256f,
    0.12109375f,      0.135156244f,     0.149218753f,     0.163281247f,
    0.177343741f,     0.19140625f,      0.205468744f,     0.219531253f,
    0.233593747f,     0.247656241f,     0.26171875f,      0.275781244f,
    0.289843738f,     0.303906262f,     0.317968726f,     0.33203125f,
    0.346093714f,     0.360156238f,     0.374218762f,     0.388281226f,
    0.40234375f,      0.416406214f,     0.430468738f,     0.444531232f,
    0.458593726f,     0.47265625f,      0.486718714f,     0.500781238f,
    0.514843762f,     0.528906226f,     0.54296875f,      0.557031274f,
    0.571093738f,     0.585156262f,     0.599218786f,     0.61328125f,
    0.627343774f,     0.641406238f,     0.655468762f,     0.669531286f,
    0.68359375f,      0.697656274f,     0.711718738f,     0.725781262f,
    0.739843786f,     0.75390625f,      0.767968774f,     0.782031238f,
    0.796093762f,     0.810156226f,     0.82421875f,      0.838281274f,
    0.852343738f,     0.866406262f,     0.880468726f,     0.89453125f,
    0.908593774f,     0.922656238f,     0.936718762f,     0.950781226f,
    0.96484375f,      0.978906274f,     0.992968738f,     1.0f,
};

/* Index of the nearest table entry to x in a sorted table (ties to the lower
 * index). Midpoints are compared in double, where the sum of two of these
 * floats is exact, so the answer is truly the nearest code. */
static int nearest_sorted(const float *tab, int len, float x) {
    int lo = 0, hi = len; /* first index with tab[i] >= x */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (tab[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0) return 0;
    if (lo == len) return len - 1;
    double m = ((double)tab[lo - 1] + (double)tab[lo]) * 0.5;
    return (double)x > m ? lo : lo - 1;
}

/* NF4 code for a normalised value; NaN maps to code 0 like bitsandbytes'
 * comparison tree (all "x > t" tests fail). */
static uint8_t nf4_encode(float x) {
    if (x != x) return 0;
    return (uint8_t)nearest_sorted(loom_nf4_code, 16, x);
}

loom_status loom_nf4_layout_of(loom_dtype t, const void *base, int64_t n, loom_nf4_layout *out) {
    if (!loom_dtype_is_nf4(t) || !base || !out || n < 0 || n % LOOM_NF4_BLOCK != 0)
        return LOOM_ERR_INVALID_ARG;
    const uint8_t *b = base;
    size_t codes = nf4_codes_bytes(n);
    memset(out, 0, sizeof *out);
    out->codes = b;
    out->n = n;
    if (t == LOOM_NF4) {
        out->absmax = (const float *)(const void *)(b + codes);
    } else {
        size_t s2 = codes + round_up4(nf4_nblocks(n));
        out->qabsmax = b + codes;
        out->scale2 = (const float *)(const void *)(b + s2);
        out->offset = load_f32(b + s2 + 4 * nf4_ngroups(n));
    }
    return LOOM_OK;
}

/* The section pointers are read through memcpy: base need not be aligned. */
float loom_nf4_absmax(const loom_nf4_layout *l, int64_t b) {
    if (!l->qabsmax) return load_f32((const uint8_t *)l->absmax + 4 * b);
    float s2 = load_f32((const uint8_t *)l->scale2 + 4 * (b / LOOM_NF4_DQ_BLOCK));
    return loom_nf4_dq_code[l->qabsmax[b]] * s2 + l->offset;
}

void loom_nf4_dequantize(const loom_nf4_layout *l, int64_t first, int64_t count, float *dst) {
    int64_t i = first, end = first + count;
    while (i < end) {
        int64_t blk = i / LOOM_NF4_BLOCK;
        int64_t blk_end = (blk + 1) * LOOM_NF4_BLOCK;
        if (blk_end > end) blk_end = end;
        const float am = loom_nf4_absmax(l, blk);
        for (; i < blk_end; i++) {
            uint8_t byte = l->codes[i / 2];
            uint8_t c = (i & 1) ? (byte & 0x0f) : (byte >> 4);
            *dst++ = loom_nf4_code[c] * am;
        }
    }
}

/* max |x| over one block; NaN never wins (ggml/bitsandbytes-style max). */
static float block_absmax(const float *x) {
    float am = 0.0f;
    for (int j = 0; j < LOOM_NF4_BLOCK; j++) {
        float v = fabsf(x[j]);
        if (v > am) am = v;
    }
    return am;
}

/* Codes for block blk, scaled by its exact absmax (bitsandbytes computes the
 * codes before double-quantizing the absmax). */
static void nf4_encode_block(const float *x, float am, uint8_t *codes) {
    for (int j = 0; j < LOOM_NF4_BLOCK; j += 2) {
        /* absmax 0 -> every value is 0 -> code 7 (the 0.0 entry). */
        float a = am != 0.0f ? x[j] / am : 0.0f;
        float b = am != 0.0f ? x[j + 1] / am : 0.0f;
        codes[j / 2] = (uint8_t)((nf4_encode(a) << 4) | nf4_encode(b));
    }
}

loom_status loom_nf4_quantize(loom_dtype t, const float *src, int64_t n, void *dst) {
    if (!loom_dtype_is_nf4(t) || n < 0 || n % LOOM_NF4_BLOCK != 0 || !dst || (n > 0 && !src))
        return LOOM_ERR_INVALID_ARG;
    uint8_t *out = dst;
    const size_t nb = nf4_nblocks(n);
    uint8_t *absmax_sec = out + nf4_codes_bytes(n);

    if (t == LOOM_NF4) {
        for (size_t b = 0; b < nb; b++) {
            const float *x = src + b * LOOM_NF4_BLOCK;
            float am = block_absmax(x);
            nf4_encode_block(x, am, out + b * (LOOM_NF4_BLOCK / 2));
            store_f32(absmax_sec + 4 * b, am);
        }
        return LOOM_OK;
    }

    /* nf4_dq, in two passes over src so no heap is needed: the first finds
     * the offset (mean absmax), the second works one group of 256 blocks at a
     * time with the group's absmax values in a stack buffer. */
    double sum = 0.0;
    for (size_t b = 0; b < nb; b++)
        sum += block_absmax(src + b * LOOM_NF4_BLOCK);
    const float offset = nb ? (float)(sum / (double)nb) : 0.0f;

    uint8_t *qabs = absmax_sec;
    uint8_t *scale2_sec = absmax_sec + round_up4(nb);
    memset(qabs + nb, 0, round_up4(nb) - nb); /* padding */
    const size_t ng = nf4_ngroups(n);
    for (size_t g = 0; g < ng; g++) {
        float c[LOOM_NF4_DQ_BLOCK];
        size_t b0 = g * LOOM_NF4_DQ_BLOCK;
        size_t cnt = nb - b0 < LOOM_NF4_DQ_BLOCK ? nb - b0 : LOOM_NF4_DQ_BLOCK;
        float s2 = 0.0f;
        for (size_t k = 0; k < cnt; k++) {
            const float *x = src + (b0 + k) * LOOM_NF4_BLOCK;
            float am = block_absmax(x);
            nf4_encode_block(x, am, out + (b0 + k) * (LOOM_NF4_BLOCK / 2));
            c[k] = am - offset;
            float a = fabsf(c[k]);
            if (a > s2) s2 = a;
        }
        for (size_t k = 0; k < cnt; k++) {
            float v = s2 != 0.0f ? c[k] / s2 : 0.0f;
            qabs[b0 + k] = (uint8_t)nearest_sorted(loom_nf4_dq_code, 256, v);
        }
        store_f32(scale2_sec + 4 * g, s2);
    }
    store_f32(scale2_sec + 4 * ng, offset);
    return LOOM_OK;
}

/* ---- whole-tensor conversion ---- */

static bool f32_aligned(const void *p) {
    return (uintptr_t)p % _Alignof(float) == 0;
}

#define CONVERT_CHUNK 1024 /* floats; a multiple of every block size */

loom_status loom_convert(loom_dtype src_t, const void *src, loom_dtype dst_t, void *dst,
                         int64_t n) {
    if (!dtype_valid(src_t) || !dtype_valid(dst_t) || n < 0) return LOOM_ERR_INVALID_ARG;
    if (n % loom_dtype_block_size(src_t) != 0 || n % loom_dtype_block_size(dst_t) != 0)
        return LOOM_ERR_INVALID_ARG;
    if (!src || !dst) return LOOM_ERR_INVALID_ARG;

    /* Same dtype: an exact byte copy (keeps NaN payloads and quantized bits). */
    if (src_t == dst_t) {
        memmove(dst, src, loom_dtype_nbytes(src_t, n));
        return LOOM_OK;
    }

    /* To nf4: the whole tensor must be quantized at once (double
     * quantization spans blocks), so gather it as f32 first. */
    if (loom_dtype_is_nf4(dst_t)) {
        if (src_t == LOOM_F32 && f32_aligned(src)) return loom_nf4_quantize(dst_t, src, n, dst);
        float *tmp = malloc(n > 0 ? (size_t)n * sizeof(float) : 1);
        if (!tmp) return LOOM_ERR_OOM;
        loom_status s = loom_convert(src_t, src, LOOM_F32, tmp, n);
        if (s == LOOM_OK) s = loom_nf4_quantize(dst_t, tmp, n, dst);
        free(tmp);
        return s;
    }

    loom_nf4_layout l;
    if (loom_dtype_is_nf4(src_t)) LOOM_TRY(loom_nf4_layout_of(src_t, src, n, &l));

    /* Everything else streams through a small f32 buffer. Chunk starts are
     * multiples of CONVERT_CHUNK, hence block-aligned for both dtypes. */
    float buf[CONVERT_CHUNK];
    for (int64_t start = 0; start < n; start += CONVERT_CHUNK) {
        int64_t len = n - start < CONVERT_CHUNK ? n - start : CONVERT_CHUNK;
        const float *f = buf;
        if (loom_dtype_is_nf4(src_t)) {
            loom_nf4_dequantize(&l, start, len, buf);
        } else if (src_t == LOOM_F32 && f32_aligned(src)) {
            f = (const float *)src + start; /* read in place */
        } else {
            const uint8_t *s = (const uint8_t *)src + loom_dtype_nbytes(src_t, start);
            LOOM_TRY(loom_dequantize_row(src_t, s, buf, len));
        }
        uint8_t *d = (uint8_t *)dst + loom_dtype_nbytes(dst_t, start);
        LOOM_TRY(loom_quantize_row(dst_t, f, d, len));
    }
    return LOOM_OK;
}
