/* kernels/cuda/kquant.cuh - k-quant weights (q2_K..q6_K, loom/dtype.h,
 * docs/adr/0024-k-quants.md): element i0 of a row of 256-value super-blocks,
 * with the float operations of ir/dtype_kquant.c (separate mul and sub, no
 * FMA contraction, so the values are bit-identical to libloom's). Used by
 * lc_get (get_rows, cpy) and kquant.cu's matmul. */
#ifndef LOOM_KERNELS_CUDA_KQUANT_CUH
#define LOOM_KERNELS_CUDA_KQUANT_CUH

#include <stdint.h>

#include "kernels/cuda/vendor.h"
#include "loom/dtype.h"

__host__ __device__ __forceinline__ bool lc_is_kq(int dt) {
    return dt == LOOM_Q2_K || dt == LOOM_Q3_K || dt == LOOM_Q4_K || dt == LOOM_Q5_K ||
           dt == LOOM_Q6_K;
}

__device__ __forceinline__ int lc_kq_block_bytes(int dt) {
    return dt == LOOM_Q2_K   ? 84
           : dt == LOOM_Q3_K ? 110
           : dt == LOOM_Q4_K ? 144
           : dt == LOOM_Q5_K ? 176
                             : 210;
}

__device__ __forceinline__ float lc_kq_f16(const uint8_t *p) {
    return __half2float(__ushort_as_half((uint16_t)(p[0] | (p[1] << 8))));
}

/* Element i0 of the row whose first block is at row. */
__device__ __forceinline__ float lc_kq_elem(int dt, const char *row, int64_t i0) {
    const uint8_t *b = (const uint8_t *)row + (i0 >> 8) * lc_kq_block_bytes(dt);
    const int j = (int)(i0 & 255), l = j & 31;
    switch (dt) {
    case LOOM_Q2_K: {
        const int sc = b[j >> 4];
        const int q = (b[16 + 32 * (j >> 7) + l] >> (2 * ((j >> 5) & 3))) & 3;
        const float dl = __fmul_rn(lc_kq_f16(b + 80), (float)(sc & 15));
        const float ml = __fmul_rn(lc_kq_f16(b + 82), (float)(sc >> 4));
        return __fsub_rn(__fmul_rn(dl, (float)q), ml);
    }
    case LOOM_Q3_K: {
        const int i = j >> 4;
        const int lo = i < 8 ? (b[96 + i] & 15) : (b[88 + i] >> 4);
        const int hi = (b[104 + (i & 3)] >> (2 * (i >> 2))) & 3;
        int q = (b[32 + 32 * (j >> 7) + l] >> (2 * ((j >> 5) & 3))) & 3;
        if (!((b[l] >> (j >> 5)) & 1)) q -= 4;
        return __fmul_rn(__fmul_rn(lc_kq_f16(b + 108), (float)((lo | (hi << 4)) - 32)), (float)q);
    }
    case LOOM_Q6_K: {
        const int h = j >> 7, p = j & 63;
        const int lo = (b[64 * h + p] >> (4 * ((j >> 6) & 1))) & 15;
        const int hi = (b[128 + 32 * h + l] >> (2 * ((j & 127) >> 5))) & 3;
        const float dl = __fmul_rn(lc_kq_f16(b + 208), (float)(int8_t)b[192 + (j >> 4)]);
        return __fmul_rn(dl, (float)((lo | (hi << 4)) - 32));
    }
    default: { /* q4_K, q5_K */
        const int sb = j >> 5;
        int sc, m;
        if (sb < 4) {
            sc = b[4 + sb] & 63;
            m = b[8 + sb] & 63;
        } else {
            sc = (b[8 + sb] & 15) | ((b[sb] >> 6) << 4);
            m = (b[8 + sb] >> 4) | ((b[4 + sb] >> 6) << 4);
        }
        const int qs = dt == LOOM_Q5_K ? 48 : 16;
        int q = (b[qs + 32 * (sb >> 1) + l] >> (4 * (sb & 1))) & 15;
        if (dt == LOOM_Q5_K) q |= ((b[16 + l] >> sb) & 1) << 4;
        const float d1 = __fmul_rn(lc_kq_f16(b), (float)sc);
        const float m1 = __fmul_rn(lc_kq_f16(b + 2), (float)m);
        return __fsub_rn(__fmul_rn(d1, (float)q), m1);
    }
    }
}

#endif
