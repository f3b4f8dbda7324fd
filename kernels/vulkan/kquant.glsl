// kernels/vulkan/kquant.glsl - k-quant weights (q2_K..q6_K, loom/dtype.h and
// docs/adr/0024-k-quants.md): one element of a row of 256-value super-blocks,
// dequantized in the shader with the same float operations as
// ir/dtype_kquant.c. Included by common.glsl; LOOM_KQ_ELEM(BUF) defines
// BUF_kq(t, row, i0) over that buffer's u8/u16 loaders, and BUF_elem calls
// it for t >= T_Q2_K. Every element re-reads its sub-block's scale bytes:
// simple and exact, slower than a per-block decode (a later step).

#define T_Q2_K 11u
#define T_Q3_K 12u
#define T_Q4_K 13u
#define T_Q5_K 14u
#define T_Q6_K 15u

uint kq_block_bytes(uint t) {
    return t == T_Q2_K ? 84u : t == T_Q3_K ? 110u : t == T_Q4_K ? 144u : t == T_Q5_K ? 176u : 210u;
}

#define LOOM_KQ_ELEM(BUF)                                                                       \
    float BUF##_kq(uint t, uint row, uint i0) {                                                 \
        uint blk = row + (i0 >> 8) * kq_block_bytes(t);                                         \
        uint j = i0 & 255u, l = j & 31u;                                                        \
        if (t == T_Q2_K) {                                                                      \
            uint sc = BUF##_u8(blk + (j >> 4));                                                 \
            float d = f16_bits_to_f32(BUF##_u16(blk + 80u));                                    \
            float dm = f16_bits_to_f32(BUF##_u16(blk + 82u));                                   \
            uint q = (BUF##_u8(blk + 16u + 32u * (j >> 7) + l) >> (2u * ((j >> 5) & 3u))) & 3u;  \
            return (d * float(sc & 15u)) * float(q) - dm * float(sc >> 4);                      \
        }                                                                                       \
        if (t == T_Q3_K) {                                                                      \
            uint i = j >> 4;                                                                    \
            uint lo = i < 8u ? (BUF##_u8(blk + 96u + i) & 15u) : (BUF##_u8(blk + 88u + i) >> 4); \
            uint hi = (BUF##_u8(blk + 104u + (i & 3u)) >> (2u * (i >> 2))) & 3u;                \
            float d = f16_bits_to_f32(BUF##_u16(blk + 108u));                                   \
            int q = int((BUF##_u8(blk + 32u + 32u * (j >> 7) + l) >> (2u * ((j >> 5) & 3u))) & 3u); \
            if (((BUF##_u8(blk + l) >> (j >> 5)) & 1u) == 0u) q -= 4;                           \
            return (d * float(int(lo | (hi << 4)) - 32)) * float(q);                            \
        }                                                                                       \
        if (t == T_Q6_K) {                                                                      \
            uint h = j >> 7, p = j & 63u;                                                       \
            uint lo = (BUF##_u8(blk + 64u * h + p) >> (4u * ((j >> 6) & 1u))) & 15u;            \
            uint hi = (BUF##_u8(blk + 128u + 32u * h + l) >> (2u * ((j & 127u) >> 5))) & 3u;    \
            int sc = int(BUF##_u8(blk + 192u + (j >> 4)) << 24) >> 24;                          \
            float d = f16_bits_to_f32(BUF##_u16(blk + 208u));                                   \
            return (d * float(sc)) * float(int(lo | (hi << 4)) - 32);                           \
        }                                                                                       \
        /* q4_K / q5_K: 6-bit scale and min of sub-block sb */                                 \
        uint sb = j >> 5, sc, m;                                                                \
        if (sb < 4u) {                                                                          \
            sc = BUF##_u8(blk + 4u + sb) & 63u;                                                 \
            m = BUF##_u8(blk + 8u + sb) & 63u;                                                  \
        } else {                                                                                \
            uint c = BUF##_u8(blk + 8u + sb);                                                   \
            sc = (c & 15u) | ((BUF##_u8(blk + sb) >> 6) << 4);                                  \
            m = (c >> 4) | ((BUF##_u8(blk + 4u + sb) >> 6) << 4);                               \
        }                                                                                       \
        float d = f16_bits_to_f32(BUF##_u16(blk));                                              \
        float dm = f16_bits_to_f32(BUF##_u16(blk + 2u));                                        \
        uint qs = t == T_Q5_K ? 48u : 16u;                                                      \
        uint q = (BUF##_u8(blk + qs + 32u * (sb >> 1) + l) >> (4u * (sb & 1u))) & 15u;          \
        if (t == T_Q5_K) q |= ((BUF##_u8(blk + 16u + l) >> sb) & 1u) << 4;                      \
        return (d * float(sc)) * float(q) - dm * float(m);                                      \
    }
