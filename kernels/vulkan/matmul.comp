// kernels/vulkan/matmul.comp - out[n,m,i2,i3] = sum_k w[k,n,i2/r2,i3/r3] * x[k,m,i2,i3]
// (kernels/ref/ref_matmul.c). Weights f32/f16/bf16 (any strides) or q8_0/q4_0
// rows (dequantized in registers, one fp16 scale per 32-value block);
// activations f32/f16/bf16 with any strides; f32 accumulation.
// One workgroup per (weight row n, tile of MT columns m, i2, i3): the WG
// invocations split K (blocks for quantized weights), each dequantizes a
// weight value once and applies it to the MT columns, then a shared-memory
// tree sums the partials. Per-invocation loops stay short (K / WG), which
// also keeps clear of lavapipe's trouble with very long shader loops.
#version 450
#define WG 64
#define MT 8
layout(local_size_x = WG) in;
#include "common.glsl"

layout(push_constant) uniform PC {
    uint K, N, M, X2, X3, r2, r3;
    uint w_off, w_nb0, w_nb1, w_nb2, w_nb3;
    uint x_off, x_nb0, x_nb1, x_nb2, x_nb3;
    uint y_off, wt, xt, n_groups, m_tiles;
    uint s_off, am_off, s2_off, dqo_off;
    uint y_nb1, y_nb2, y_nb3; // output byte strides (dim 0 contiguous f32)
} p;

shared float red[MT][WG];

void main() {
    uint g = flat_group();
    if (g >= p.n_groups) return; // uniform per workgroup
    uint tid = gl_LocalInvocationID.x;
    uint nn = g % p.N, r = g / p.N;
    uint mt = r % p.m_tiles;
    r /= p.m_tiles;
    uint i2 = r % p.X2, i3 = r / p.X2;
    uint m0 = mt * MT;
    uint mcount = min(uint(MT), p.M - m0);
    uint wrow = p.w_off + nn * p.w_nb1 + (i2 / p.r2) * p.w_nb2 + (i3 / p.r3) * p.w_nb3;
    uint xrow0 = p.x_off + m0 * p.x_nb1 + i2 * p.x_nb2 + i3 * p.x_nb3;
    float acc[MT];
    for (uint c = 0u; c < MT; c++)
        acc[c] = 0.0;
    if (p.wt == T_Q8_0 || p.wt == T_Q4_0) {
        bool q8 = p.wt == T_Q8_0;
        uint bsz = q8 ? 34u : 18u;
        for (uint bk = tid; bk < p.K / 32u; bk += WG) {
            uint blk = wrow + bk * bsz;
            float d = f16_bits_to_f32(A_u16(blk));
            for (uint j = 0u; j < 32u; j++) {
                float wv;
                if (q8) {
                    wv = float(int(A_u8(blk + 2u + j) << 24) >> 24) * d;
                } else {
                    uint q = A_u8(blk + 2u + (j & 15u));
                    wv = float(int(j < 16u ? (q & 15u) : (q >> 4)) - 8) * d;
                }
                uint k = bk * 32u + j;
                for (uint c = 0u; c < mcount; c++)
                    acc[c] += wv * B_elem(p.xt, xrow0 + c * p.x_nb1, k, p.x_nb0);
            }
        }
    } else if (p.wt == T_NF4 || p.wt == T_NF4_DQ) {
        uint e0 = 2u * wrow; // element index of the row in the nf4 storage
        for (uint k = tid; k < p.K; k += WG) {
            uint e = e0 + k;
            float wv = nf4_code(p.s_off, e) *
                       nf4_absmax(p.wt, e >> 6, p.am_off, p.s2_off, p.dqo_off);
            for (uint c = 0u; c < mcount; c++)
                acc[c] += wv * B_elem(p.xt, xrow0 + c * p.x_nb1, k, p.x_nb0);
        }
    } else {
        for (uint k = tid; k < p.K; k += WG) {
            float wv = A_elem(p.wt, wrow, k, p.w_nb0);
            for (uint c = 0u; c < mcount; c++)
                acc[c] += wv * B_elem(p.xt, xrow0 + c * p.x_nb1, k, p.x_nb0);
        }
    }
    for (uint c = 0u; c < MT; c++)
        red[c][tid] = acc[c];
    barrier();
    for (uint s = WG / 2; s > 0; s >>= 1) {
        if (tid < s)
            for (uint c = 0u; c < MT; c++)
                red[c][tid] += red[c][tid + s];
        barrier();
    }
    if (tid < mcount) {
        uint a = p.y_off + nn * 4u + (m0 + tid) * p.y_nb1 + i2 * p.y_nb2 + i3 * p.y_nb3;
        Y[a >> 2] = floatBitsToUint(red[tid][0]);
    }
}
