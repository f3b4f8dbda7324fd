/* kernels/cuda/common.cuh - device helpers shared by the kernels: strided
 * element access for every dtype (dequantizing in registers), f16/bf16
 * conversions that round exactly like loom/dtype.h, warp reductions. */
#ifndef LOOM_KERNELS_CUDA_COMMON_CUH
#define LOOM_KERNELS_CUDA_COMMON_CUH

#include <stdint.h>

#include "kernels/cuda/kernels.h"
#include "kernels/cuda/vendor.h"
#include "kernels/cuda/kquant.cuh"
#include "loom/dtype.h"

static inline int lc_blocks(int64_t n, int t) {
    int64_t b = (n + t - 1) / t;
    return (int)(b > 0x7fffffff ? 0x7fffffff : (b < 1 ? 1 : b));
}

__device__ __forceinline__ float lc_f16_to_f32(uint16_t h) {
    return __half2float(__ushort_as_half(h));
}
__device__ __forceinline__ float lc_bf16_to_f32(uint16_t h) {
    return __uint_as_float((uint32_t)h << 16);
}
/* Round to nearest even, NaN kept quiet (loom_f32_to_bf16). */
__device__ __forceinline__ uint16_t lc_f32_to_bf16(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
__device__ __forceinline__ uint16_t lc_f32_to_f16(float f) {
    return __half_as_ushort(__float2half_rn(f));
}

__device__ __forceinline__ float lc_warp_sum(float v) {
#pragma unroll
    for (int o = LOOM_WARP / 2; o > 0; o >>= 1)
        v += LOOM_SHFL_XOR(v, o, LOOM_WARP);
    return v;
}
__device__ __forceinline__ float lc_warp_max(float v) {
#pragma unroll
    for (int o = LOOM_WARP / 2; o > 0; o >>= 1)
        v = fmaxf(v, LOOM_SHFL_XOR(v, o, LOOM_WARP));
    return v;
}

/* Byte address of (i0, i1, i2, i3); for row-blocked quantized types i0 / block. */
__device__ __forceinline__ const char *lc_ptr(const lc_tensor &t, int64_t i0, int64_t i1,
                                              int64_t i2, int64_t i3) {
    const int64_t bs = t.dtype == LOOM_Q8_0 || t.dtype == LOOM_Q4_0 ? 32 : 1;
    return t.data + (i0 / bs) * t.nb[0] + i1 * t.nb[1] + i2 * t.nb[2] + i3 * t.nb[3];
}

__device__ __forceinline__ float lc_nf4_absmax(const lc_tensor &t, int64_t blk) {
    if (t.dtype == LOOM_NF4) return t.absmax[blk];
    /* Separate mul and add: libloom computes this without FMA contraction. */
    return __fadd_rn(__fmul_rn(t.code[16 + t.qabsmax[blk]], t.scale2[blk / LOOM_NF4_DQ_BLOCK]),
                     *t.dq_offset);
}

/* Element (i0, i1, i2, i3) of any dtype as float. nf4 rows are located like
 * kernels/ref: the byte offset of the row, times two, is its element offset. */
__device__ __forceinline__ float lc_get(const lc_tensor &t, int64_t i0, int64_t i1, int64_t i2,
                                        int64_t i3) {
    switch (t.dtype) {
    case LOOM_F32:
        return *(const float *)lc_ptr(t, i0, i1, i2, i3);
    case LOOM_F16:
        return lc_f16_to_f32(*(const uint16_t *)lc_ptr(t, i0, i1, i2, i3));
    case LOOM_BF16:
        return lc_bf16_to_f32(*(const uint16_t *)lc_ptr(t, i0, i1, i2, i3));
    case LOOM_I32:
        return (float)*(const int32_t *)lc_ptr(t, i0, i1, i2, i3);
    case LOOM_Q8_0: {
        const char *b = lc_ptr(t, i0, i1, i2, i3); /* block start */
        const float d = lc_f16_to_f32((uint16_t)((uint8_t)b[0] | ((uint8_t)b[1] << 8)));
        return d * (float)(int8_t)b[2 + (i0 & 31)];
    }
    case LOOM_Q4_0: {
        const char *b = lc_ptr(t, i0, i1, i2, i3);
        const float d = lc_f16_to_f32((uint16_t)((uint8_t)b[0] | ((uint8_t)b[1] << 8)));
        const int j = (int)(i0 & 31);
        const uint8_t q = (uint8_t)b[2 + (j & 15)];
        return d * (float)((j < 16 ? (q & 15) : (q >> 4)) - 8);
    }
    case LOOM_Q4_1:
    case LOOM_Q5_0:
    case LOOM_Q5_1: { /* ggml's legacy blocks (loom/dtype.h): d * q (+ m), not fused */
        const char *b = lc_ptr(t, i0, i1, i2, i3);
        const float d = lc_f16_to_f32((uint16_t)((uint8_t)b[0] | ((uint8_t)b[1] << 8)));
        const int j = (int)(i0 & 31);
        const int qs = t.dtype == LOOM_Q4_1 ? 4 : t.dtype == LOOM_Q5_0 ? 6 : 8;
        const uint8_t byte = (uint8_t)b[qs + (j & 15)];
        int q = j < 16 ? (byte & 15) : (byte >> 4);
        if (t.dtype != LOOM_Q4_1) {
            const char *h = b + (t.dtype == LOOM_Q5_0 ? 2 : 4) + (j >> 3);
            q |= (((uint8_t)*h >> (j & 7)) & 1) << 4;
        }
        if (t.dtype == LOOM_Q5_0) return d * (float)(q - 16);
        const float m = lc_f16_to_f32((uint16_t)((uint8_t)b[2] | ((uint8_t)b[3] << 8)));
        return __fadd_rn(__fmul_rn(d, (float)q), m);
    }
    case LOOM_Q2_K:
    case LOOM_Q3_K:
    case LOOM_Q4_K:
    case LOOM_Q5_K:
    case LOOM_Q6_K: /* kquant.cuh; lc_ptr with i0 = 0 is the row start */
        return lc_kq_elem(t.dtype, lc_ptr(t, 0, i1, i2, i3), i0);
    case LOOM_NF4:
    case LOOM_NF4_DQ: {
        const int64_t e = t.nf4_first + 2 * (i1 * t.nb[1] + i2 * t.nb[2] + i3 * t.nb[3]) + i0;
        const uint8_t byte = t.codes[e >> 1];
        const int c = (e & 1) ? (byte & 15) : (byte >> 4);
        return t.code[c] * lc_nf4_absmax(t, e / LOOM_NF4_BLOCK);
    }
    default:
        return 0.0f;
    }
}

/* Linear index -> (i0, i1, i2, i3) for extents ne. */
__device__ __forceinline__ void lc_unravel(const int64_t *ne, int64_t e, int64_t &i0, int64_t &i1,
                                           int64_t &i2, int64_t &i3) {
    i0 = e % ne[0];
    e /= ne[0];
    i1 = e % ne[1];
    e /= ne[1];
    i2 = e % ne[2];
    i3 = e / ne[2];
}

__device__ __forceinline__ float *lc_outp(const lc_tensor &t, int64_t i0, int64_t i1, int64_t i2,
                                          int64_t i3) {
    return (float *)(t.data + i0 * t.nb[0] + i1 * t.nb[1] + i2 * t.nb[2] + i3 * t.nb[3]);
}

static inline int lc_status(void) {
    return (int)cudaGetLastError();
}

#endif
