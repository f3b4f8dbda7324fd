// kernels/vulkan/quantize_nf4.comp - cpy of a strided f32/f16/bf16/i32/
// q8_0/q4_0 tensor into nf4 or nf4_dq (the whole-tensor structure-of-arrays
// layout of loom/dtype.h), byte-identical to ir/dtype.c's loom_nf4_quantize.
// Three modes, one dispatch each (backends/vulkan/vk_ops.c):
// 0  one invocation per block of 64: absmax = max |x| (NaN never wins), the
//    64 codes (x / absmax correctly rounded, then the nearest NF4 code with
//    the reference's double midpoints) at y_off + 32 * blk, and for nf4 the
//    f32 absmax at abs_off + 4 * blk.
// 1  nf4_dq: the absmax of each block only, as f32 at y_off + 4 * blk (a
//    scratch buffer). The host then forms the offset, the mean absmax summed
//    in double in block order exactly as the reference (an order-dependent
//    sum, so it is not done as a parallel reduction).
// 2  nf4_dq: one workgroup per group of 256 blocks (absmax read from the
//    scratch, binding 1): c = absmax - offset, scale2 = max |c|, qabsmax =
//    nearest dynamic-map code to c / scale2; the qabsmax bytes (zero
//    padding included), scale2 and (group 0) the offset.
// Blocks whose absmax is subnormal are rescaled by 2^64 on the integer bits
// first, so devices that flush denormals (lavapipe) still divide exactly.
#version 450
layout(local_size_x = 256) in;
#include "common.glsl"
#include "quant.glsl"

layout(push_constant) uniform PC {
    uint ne0, ne1, ne2, ne3;
    uint a_off, a_nb0, a_nb1, a_nb2, a_nb3;
    uint y_off, src_t, dst_t, nb; // nb: blocks of 64
    uint mode, abs_off;           // abs_off: nf4 absmax / nf4_dq qabsmax section
    uint s2_off, offset_bits;     // nf4_dq: scale2 section, the offset (f32 bits)
} p;

float load(uint e) {
    uint i0 = e % p.ne0, r = e / p.ne0;
    uint i1 = r % p.ne1;
    r /= p.ne1;
    uint i2 = r % p.ne2, i3 = r / p.ne2;
    return A_elem(p.src_t, p.a_off + i1 * p.a_nb1 + i2 * p.a_nb2 + i3 * p.a_nb3, i0, p.a_nb0);
}

// |v| as bits with NaN mapped to 0: for non-negative floats the unsigned
// order is the numeric order, so max over these is the reference's
// "if (v > am) am = v" from 0 in any order, and never touches denormals.
uint abs_bits(float v) {
    uint a = floatBitsToUint(v) & 0x7fffffffu;
    return a > 0x7f800000u ? 0u : a;
}

// v times 2^64 when v is zero or subnormal (built from its bits, so exact
// where denormals are flushed); other values (NaN) unchanged.
float up64(float v) {
    uint x = floatBitsToUint(v);
    if ((x & 0x7f800000u) != 0u) return v;
    float m = float(x & 0x7fffffu) * uintBitsToFloat(0x15000000u); // * 2^-85
    return (x & 0x80000000u) != 0u ? -m : m;
}

shared uint s_red[256];
shared uint s_q[256];

void main() {
    if (p.mode == 2u) {
        uint g = flat_group(), k = gl_LocalInvocationID.x;
        uint blk = g * 256u + k;
        float offset = uintBitsToFloat(p.offset_bits);
        precise float c = 0.0;
        if (blk < p.nb) c = A_f32(p.a_off + 4u * blk) - offset;
        s_red[k] = blk < p.nb ? abs_bits(c) : 0u;
        barrier();
        for (uint s = 128u; s > 0u; s >>= 1) { // max of the bits: exact in any order
            if (k < s) s_red[k] = max(s_red[k], s_red[k + s]);
            barrier();
        }
        float s2 = uintBitsToFloat(s_red[0]);
        uint q = 0u;
        if (blk < p.nb) {
            float v = floatBitsToUint(s2) != 0u ? div_rn(c, s2) : 0.0;
            q = nearest_code(LOOM_NF4_DQ_CODE_WORD, 256u, v);
        }
        s_q[k] = q;
        barrier();
        // qabsmax bytes of this group, padded with zeros to a whole word.
        uint nbytes4 = (p.nb + 3u) & ~3u;
        if (k < 64u && g * 256u + 4u * k < nbytes4)
            Y[(p.abs_off + g * 256u + 4u * k) >> 2] =
                s_q[4u * k] | (s_q[4u * k + 1u] << 8) | (s_q[4u * k + 2u] << 16) |
                (s_q[4u * k + 3u] << 24);
        if (k == 0u) {
            Y[(p.s2_off >> 2) + g] = floatBitsToUint(s2);
            if (g == 0u) Y[(p.s2_off >> 2) + (p.nb + 255u) / 256u] = p.offset_bits;
        }
        return;
    }
    uint blk = flat_id();
    if (blk >= p.nb) return;
    uint amb = 0u;
    for (uint j = 0u; j < 64u; j++)
        amb = max(amb, abs_bits(load(blk * 64u + j)));
    if (p.mode == 1u) {
        Y[(p.y_off >> 2) + blk] = amb;
        return;
    }
    if (p.dst_t == T_NF4) Y[(p.abs_off >> 2) + blk] = amb;
    bool tiny = amb < 0x00800000u;
    float am = tiny ? up64(uintBitsToFloat(amb)) : uintBitsToFloat(amb);
    for (uint w = 0u; w < 8u; w++) {
        uint word = 0u;
        for (uint h = 0u; h < 8u; h++) { // 8 codes, high nibble first
            float x = load(blk * 64u + 8u * w + h);
            if (tiny) x = up64(x);
            uint code = 7u; // absmax 0: every value is 0.0 (code 7)
            if (amb != 0u) {
                float a = div_rn(x, am);
                code = isnan(a) ? 0u : nearest_code(LOOM_NF4_CODE_WORD, 16u, a);
            }
            uint byte_i = h >> 1;
            word |= code << (byte_i * 8u + ((h & 1u) != 0u ? 0u : 4u));
        }
        Y[(p.y_off >> 2) + blk * 8u + w] = word;
    }
}
