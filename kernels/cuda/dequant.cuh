/* kernels/cuda/dequant.cuh - the weight "unit" decoders shared by the
 * matmul fast path (matmul.cu) and the grouped MoE GEMM (moe.cu): one thread
 * loads a unit of a weight row (16 bytes of f32/f16/bf16, a quarter q8_0
 * block, half a q4_0 block, 8 bytes of nf4 codes) and turns it into groups of
 * 4 consecutive k as floats (times the unit's scale for the quantized types:
 * exactly the value lc_get returns). See matmul.cu for the design. */
#ifndef LOOM_KERNELS_CUDA_DEQUANT_CUH
#define LOOM_KERNELS_CUDA_DEQUANT_CUH

#include "kernels/cuda/common.cuh"

/* Per weight dtype: UE elements per unit (what one thread loads at once), as
 * G groups of 4 consecutive k; SC: the unit has a scale applied to its partial
 * sum; UB: bytes of the unit (a row is K / UE units). */
template <int WT> struct lc_fmt;
template <> struct lc_fmt<LOOM_F32> {
    enum { UE = 4, G = 1, SC = 0 };
};
template <> struct lc_fmt<LOOM_F16> {
    enum { UE = 8, G = 2, SC = 0 };
};
template <> struct lc_fmt<LOOM_BF16> {
    enum { UE = 8, G = 2, SC = 0 };
};
template <> struct lc_fmt<LOOM_Q8_0> {
    enum { UE = 8, G = 2, SC = 1 };
};
template <> struct lc_fmt<LOOM_Q4_0> {
    enum { UE = 16, G = 4, SC = 1 };
};
template <> struct lc_fmt<LOOM_NF4> {
    enum { UE = 16, G = 4, SC = 1 };
};
template <> struct lc_fmt<LOOM_NF4_DQ> {
    enum { UE = 16, G = 4, SC = 1 };
};

static inline int lc_fmt_ue(int dt) {
    switch (dt) {
    case LOOM_F32:
        return 4;
    case LOOM_F16:
    case LOOM_BF16:
    case LOOM_Q8_0:
        return 8;
    case LOOM_Q4_0:
    case LOOM_NF4:
    case LOOM_NF4_DQ:
        return 16;
    default:
        return 0;
    }
}

/* One unit as loaded: raw bytes (16 for f32/f16/bf16, 8 in q.x/q.y for the
 * quantized types) and the scale. */
struct lc_unit {
    uint4 q;
    float s;
};

/* Start of row (n, w2, w3): byte pointer, and for nf4 the element index of the
 * row's first element in the storage tensor (for the absmax index). */
template <int WT>
static __device__ __forceinline__ const char *lc_row(const lc_tensor &w, int64_t n, int64_t w2,
                                                     int64_t w3, int64_t &e0) {
    if (WT == LOOM_NF4 || WT == LOOM_NF4_DQ) {
        e0 = w.nf4_first + 2 * (n * w.nb[1] + w2 * w.nb[2] + w3 * w.nb[3]);
        return (const char *)w.codes + (e0 >> 1);
    }
    e0 = 0;
    return w.data + n * w.nb[1] + w2 * w.nb[2] + w3 * w.nb[3];
}

static __device__ __forceinline__ uint32_t lc_ld2x16(const char *p) {
    const uint16_t *h = (const uint16_t *)p;
    return (uint32_t)h[0] | ((uint32_t)h[1] << 16);
}

template <int WT>
static __device__ __forceinline__ void lc_load(const lc_tensor &w, const char *p, int64_t e0,
                                               int64_t u, lc_unit &r) {
    if (WT == LOOM_F32 || WT == LOOM_F16 || WT == LOOM_BF16) {
        r.q = *(const uint4 *)(p + 16 * u);
        r.s = 1.0f;
    } else if (WT == LOOM_Q8_0) { /* 34-byte blocks: d, 32 x int8; 4 units per block */
        const char *b = p + 34 * (u >> 2);
        r.s = lc_f16_to_f32(*(const uint16_t *)b);
        const char *qs = b + 2 + 8 * (u & 3);
        r.q.x = lc_ld2x16(qs);
        r.q.y = lc_ld2x16(qs + 4);
    } else if (WT == LOOM_Q4_0) { /* 18-byte blocks: d, 16 bytes of nibbles; 2 units */
        const char *b = p + 18 * (u >> 1);
        r.s = lc_f16_to_f32(*(const uint16_t *)b);
        const char *qs = b + 2 + 8 * (u & 1);
        r.q.x = lc_ld2x16(qs);
        r.q.y = lc_ld2x16(qs + 4);
    } else { /* nf4 / nf4_dq: 8 bytes of codes, 16 elements inside one 64-element block */
        const uint2 c = *(const uint2 *)(p + 8 * u);
        r.q.x = c.x;
        r.q.y = c.y;
        const int64_t blk = (e0 + 16 * u) >> 6;
        if (WT == LOOM_NF4)
            r.s = w.absmax[blk];
        else /* exactly lc_nf4_absmax: separate mul and add, no FMA contraction */
            r.s =
                __fadd_rn(__fmul_rn(w.code[16 + w.qabsmax[blk]], w.scale2[blk / LOOM_NF4_DQ_BLOCK]),
                          *w.dq_offset);
    }
}

/* First k of group g of unit u (4 consecutive k). */
template <int WT> static __device__ __forceinline__ int64_t lc_gstart(int64_t u, int g) {
    if (WT == LOOM_F32) return 4 * u;
    if (WT == LOOM_Q4_0) /* bytes 8h..8h+7 of block u/2: low nibbles k, high nibbles k + 16 */
        return 32 * (u >> 1) + 8 * (u & 1) + 4 * (g & 1) + 16 * (g >> 1);
    return (int64_t)lc_fmt<WT>::UE * u + 4 * g;
}

/* Unsigned byte i of v as a float: 2^23 + byte, built in the mantissa. */
static __device__ __forceinline__ float lc_byte_f(uint32_t v, int i) {
    return __uint_as_float(__byte_perm(v, 0x4B00u, 0x5440u | (unsigned)i));
}

/* The 4 values of group g (before the unit's scale). */
template <int WT>
static __device__ __forceinline__ void lc_group(const lc_unit &r, int g, const float *cb,
                                                float v[4]) {
    if (WT == LOOM_F32) {
        v[0] = __uint_as_float(r.q.x);
        v[1] = __uint_as_float(r.q.y);
        v[2] = __uint_as_float(r.q.z);
        v[3] = __uint_as_float(r.q.w);
    } else if (WT == LOOM_F16 || WT == LOOM_BF16) {
        const uint32_t a = g ? r.q.z : r.q.x, b = g ? r.q.w : r.q.y;
        if (WT == LOOM_F16) {
            v[0] = lc_f16_to_f32((uint16_t)(a & 0xffffu));
            v[1] = lc_f16_to_f32((uint16_t)(a >> 16));
            v[2] = lc_f16_to_f32((uint16_t)(b & 0xffffu));
            v[3] = lc_f16_to_f32((uint16_t)(b >> 16));
        } else {
            v[0] = __uint_as_float(a << 16);
            v[1] = __uint_as_float(a & 0xffff0000u);
            v[2] = __uint_as_float(b << 16);
            v[3] = __uint_as_float(b & 0xffff0000u);
        }
    } else if (WT == LOOM_Q8_0) { /* int8 -> uint8 + 128, exact */
        const uint32_t a = (g ? r.q.y : r.q.x) ^ 0x80808080u;
#pragma unroll
        for (int i = 0; i < 4; i++)
            v[i] = lc_byte_f(a, i) - 8388736.0f; /* 2^23 + 128 */
    } else if (WT == LOOM_Q4_0) {
        const uint32_t a = (g & 1) ? r.q.y : r.q.x;
        const uint32_t nib = (g >> 1) ? (a >> 4) & 0x0f0f0f0fu : a & 0x0f0f0f0fu;
#pragma unroll
        for (int i = 0; i < 4; i++)
            v[i] = lc_byte_f(nib, i) - 8388616.0f; /* 2^23 + 8: the q4_0 offset */
    } else { /* nf4: element 2j in the high nibble of byte j */
        const uint32_t a = (g >> 1) ? r.q.y : r.q.x;
        const uint32_t pr = (g & 1) ? a >> 16 : a & 0xffffu;
        v[0] = cb[(pr >> 4) & 15];
        v[1] = cb[pr & 15];
        v[2] = cb[(pr >> 12) & 15];
        v[3] = cb[(pr >> 8) & 15];
    }
}

static inline bool lc_al(const void *p, int64_t a) {
    return ((uintptr_t)p % (uintptr_t)a) == 0;
}

/* The weight layout the unit decoders take: dense k within a row, every row
 * start aligned for its unit loads (16 bytes f32/f16/bf16, 8 nf4 codes, 2
 * q8_0/q4_0), K a multiple of the unit. */
static inline bool lc_fast_w_ok(const lc_tensor &w) {
    const int ue = lc_fmt_ue(w.dtype);
    const int64_t K = w.ne[0];
    if (!ue || K <= 0 || K % ue || K / ue > 0x7fffffff) return false;
    int64_t al;
    switch (w.dtype) {
    case LOOM_F32:
        if (w.nb[0] != 4) return false;
        al = 16;
        break;
    case LOOM_F16:
    case LOOM_BF16:
        if (w.nb[0] != 2) return false;
        al = 16;
        break;
    case LOOM_Q8_0:
        if (w.nb[0] != 34) return false;
        al = 2;
        break;
    case LOOM_Q4_0:
        if (w.nb[0] != 18) return false;
        al = 2;
        break;
    default: /* nf4: k is dense by construction (lc_get); row starts from nb[1..3] */
        if (w.nf4_first % 16 || !lc_al(w.codes, 8)) return false;
        for (int i = 1; i < 4; i++)
            if (w.ne[i] > 1 && w.nb[i] % 8) return false;
        return true;
    }
    if (!lc_al(w.data, al)) return false;
    for (int i = 1; i < 4; i++)
        if (w.ne[i] > 1 && w.nb[i] % al) return false;
    return true;
}

#endif
