// kernels/vulkan/matmul_simple.comp - the same product as matmul.comp with
// one output per invocation and the whole K loop in it: far fewer barriers,
// so faster for short K, but used only for K <= 16384 (lavapipe stops very
// long shader loops, ~65536 iterations). Weights f32/f16/bf16/q8_0/q4_0/nf4/nf4_dq,
// activations f32/f16/bf16, any strides, f32 accumulation.
#version 450
layout(local_size_x = 64) in;
#include "common.glsl"

layout(push_constant) uniform PC {
    uint K, N, M, X2, X3, r2, r3;
    uint w_off, w_nb0, w_nb1, w_nb2, w_nb3;
    uint x_off, x_nb0, x_nb1, x_nb2, x_nb3;
    uint y_off, wt, xt, n;
    uint s_off, am_off, s2_off, dqo_off;
    uint y_nb1, y_nb2, y_nb3; // output byte strides (dim 0 contiguous f32)
} p;

float xval(uint xrow, uint k) { return B_elem(p.xt, xrow, k, p.x_nb0); }

void main() {
    uint i = flat_id();
    if (i >= p.n) return;
    uint nn = i % p.N, r = i / p.N;
    uint m = r % p.M;
    r /= p.M;
    uint i2 = r % p.X2, i3 = r / p.X2;
    uint wrow = p.w_off + nn * p.w_nb1 + (i2 / p.r2) * p.w_nb2 + (i3 / p.r3) * p.w_nb3;
    uint xrow = p.x_off + m * p.x_nb1 + i2 * p.x_nb2 + i3 * p.x_nb3;
    float acc = 0.0;
    if (p.wt == T_Q8_0) {
        for (uint b = 0u; b < p.K / 32u; b++) {
            uint blk = wrow + b * 34u;
            float d = f16_bits_to_f32(A_u16(blk));
            for (uint j = 0u; j < 32u; j++) {
                int q = int(A_u8(blk + 2u + j) << 24) >> 24;
                acc += (float(q) * d) * xval(xrow, b * 32u + j);
            }
        }
    } else if (p.wt == T_Q4_0) {
        for (uint b = 0u; b < p.K / 32u; b++) {
            uint blk = wrow + b * 18u;
            float d = f16_bits_to_f32(A_u16(blk));
            for (uint j = 0u; j < 16u; j++) {
                uint q = A_u8(blk + 2u + j);
                acc += (float(int(q & 15u) - 8) * d) * xval(xrow, b * 32u + j);
                acc += (float(int(q >> 4) - 8) * d) * xval(xrow, b * 32u + j + 16u);
            }
        }
    } else if (p.wt == T_NF4 || p.wt == T_NF4_DQ) {
        // w_off is the view's byte offset inside its nf4 storage: element
        // index = 2 * code byte offset.
        uint e0 = 2u * wrow;
        uint k = 0u;
        while (k < p.K) {
            uint blk = (e0 + k) >> 6;
            float am = nf4_absmax(p.wt, blk, p.am_off, p.s2_off, p.dqo_off);
            uint kend = min(p.K, (blk + 1u) * 64u - e0);
            for (; k < kend; k++)
                acc += (nf4_code(p.s_off, e0 + k) * am) * xval(xrow, k);
        }
    } else {
        for (uint k = 0u; k < p.K; k++)
            acc += A_elem(p.wt, wrow, k, p.w_nb0) * xval(xrow, k);
    }
    Y[(p.y_off + nn * 4u + m * p.y_nb1 + i2 * p.y_nb2 + i3 * p.y_nb3) >> 2] = floatBitsToUint(acc);
}
