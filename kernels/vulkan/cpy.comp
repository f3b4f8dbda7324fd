// kernels/vulkan/cpy.comp - convert a strided f32/f16/bf16/i32/q8_0/q4_0/nf4
// tensor into a contiguous f32/f16/bf16 one (kernels/ref/ref_elementwise.c),
// or copy i32 -> i32 bit-exactly. f32 -> f16/bf16 rounding is done on the
// bits (round to nearest even, NaN kept quiet) exactly like ir/dtype.c.
// Each invocation writes one 32-bit output word: one f32/i32 element or two
// 16-bit ones; a final half-filled word is merged with atomics so the
// neighbouring bytes are left untouched.
#version 450
layout(local_size_x = 256) in;
#include "common.glsl"

layout(push_constant) uniform PC {
    uint ne0, ne1, ne2, ne3;
    uint a_off, a_nb0, a_nb1, a_nb2, a_nb3;
    uint y_off, src_t, dst_t, n, n_words;
    uint s_off, am_off, s2_off, dqo_off; // nf4 sources (see common.glsl)
} p;

uint f32_to_f16_bits(float f) {
    uint x = floatBitsToUint(f);
    uint sign = (x >> 16) & 0x8000u;
    uint a = x & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u | ((a >> 13) & 0x3ffu);
    if (a >= 0x477ff000u) return sign | 0x7c00u;
    if (a >= 0x38800000u) {
        uint h = (a - 0x38000000u) >> 13;
        uint rem = a & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u) != 0u)) h++;
        return sign | h;
    }
    if (a < 0x33000000u) return sign;
    uint m = (a & 0x7fffffu) | 0x800000u;
    uint shift = 126u - (a >> 23);
    uint q = m >> shift;
    uint rem = m & ((1u << shift) - 1u);
    uint hf = 1u << (shift - 1u);
    if (rem > hf || (rem == hf && (q & 1u) != 0u)) q++;
    return sign | q;
}

uint f32_to_bf16_bits(float f) {
    uint x = floatBitsToUint(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return ((x >> 16) | 0x40u) & 0xffffu;
    x += 0x7fffu + ((x >> 16) & 1u);
    return x >> 16;
}

uint src_addr_row(uint e, out uint i0) {
    i0 = e % p.ne0;
    uint r = e / p.ne0;
    uint i1 = r % p.ne1;
    r /= p.ne1;
    uint i2 = r % p.ne2, i3 = r / p.ne2;
    return p.a_off + i1 * p.a_nb1 + i2 * p.a_nb2 + i3 * p.a_nb3;
}

float load(uint e) {
    uint i0;
    uint row = src_addr_row(e, i0);
    if (p.src_t == T_NF4 || p.src_t == T_NF4_DQ) { // a_off: byte offset in the storage
        uint ee = 2u * row + i0;
        return nf4_code(p.s_off, ee) *
               nf4_absmax(p.src_t, ee >> 6, p.am_off, p.s2_off, p.dqo_off);
    }
    return A_elem(p.src_t, row, i0, p.a_nb0);
}

uint to_half(float v) { return p.dst_t == T_F16 ? f32_to_f16_bits(v) : f32_to_bf16_bits(v); }

void main() {
    uint w = flat_id();
    if (w >= p.n_words) return;
    uint yw = (p.y_off >> 2) + w;
    if (p.dst_t == T_F32) {
        Y[yw] = floatBitsToUint(load(w));
    } else if (p.dst_t == T_I32) { // i32 -> i32: raw bits
        uint i0;
        uint row = src_addr_row(w, i0);
        Y[yw] = A[(row + i0 * p.a_nb0) >> 2];
    } else {
        uint e = 2u * w;
        uint lo = to_half(load(e));
        if (e + 1u < p.n) {
            Y[yw] = lo | (to_half(load(e + 1u)) << 16);
        } else {
            atomicAnd(Y[yw], 0xffff0000u);
            atomicOr(Y[yw], lo);
        }
    }
}
