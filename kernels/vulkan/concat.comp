// kernels/vulkan/concat.comp - concatenate a and b along dim `dim` into a
// contiguous output (kernels/ref/ref_elementwise.c): f32 output from any
// f32/f16/bf16/i32 sources (converted by value), or the same 4-byte (f32,
// i32) or 2-byte (f16, bf16) dtype throughout (bits copied). Each invocation
// writes one 32-bit output word (two 16-bit elements, the last half-word
// merged with atomics).
#version 450
layout(local_size_x = 256) in;
#include "common.glsl"

layout(push_constant) uniform PC {
    uint ne0, ne1, ne2, ne3;
    uint a_off, a_nb0, a_nb1, a_nb2, a_nb3;
    uint b_off, b_nb0, b_nb1, b_nb2, b_nb3;
    uint y_off, dim, a_ext, a_t, b_t, y_t, n, n_words;
} p;

// Element e of the output: its value as f32 bits (f32 output) or raw bits.
uint elem(uint e) {
    uint i[4];
    i[0] = e % p.ne0;
    uint r = e / p.ne0;
    i[1] = r % p.ne1;
    r /= p.ne1;
    i[2] = r % p.ne2;
    i[3] = r / p.ne2;
    bool from_a = i[p.dim] < p.a_ext;
    if (!from_a) i[p.dim] -= p.a_ext;
    if (from_a) {
        uint row = p.a_off + i[1] * p.a_nb1 + i[2] * p.a_nb2 + i[3] * p.a_nb3;
        if (p.y_t == T_F32) return floatBitsToUint(A_elem(p.a_t, row, i[0], p.a_nb0));
        if (p.y_t == T_I32) return A[(row + i[0] * p.a_nb0) >> 2];
        return A_u16(row + i[0] * p.a_nb0);
    }
    uint row = p.b_off + i[1] * p.b_nb1 + i[2] * p.b_nb2 + i[3] * p.b_nb3;
    if (p.y_t == T_F32) return floatBitsToUint(B_elem(p.b_t, row, i[0], p.b_nb0));
    if (p.y_t == T_I32) return B[(row + i[0] * p.b_nb0) >> 2];
    return B_u16(row + i[0] * p.b_nb0);
}

void main() {
    uint w = flat_id();
    if (w >= p.n_words) return;
    uint yw = (p.y_off >> 2) + w;
    if (p.y_t == T_F32 || p.y_t == T_I32) {
        Y[yw] = elem(w);
    } else {
        uint e = 2u * w;
        uint lo = elem(e);
        if (e + 1u < p.n) {
            Y[yw] = lo | (elem(e + 1u) << 16);
        } else {
            atomicAnd(Y[yw], 0xffff0000u);
            atomicOr(Y[yw], lo);
        }
    }
}
