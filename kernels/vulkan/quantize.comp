// kernels/vulkan/quantize.comp - cpy of a strided f32/f16/bf16/i32/q8_0/q4_0
// tensor into contiguous q8_0 or q4_0 blocks, byte-identical to ir/dtype.c's
// ggml-compatible quantizers (same float operations in the same order). The
// reciprocal 1/d must be correctly rounded, which Vulkan's f32 division does
// not promise: the candidate quotients around it are checked with exact
// double residuals (the backend offers this only with shaderFloat64).
// One block per invocation; its 34/18 bytes are merged into the output
// words with atomics, since blocks are not word-aligned.
#version 450
layout(local_size_x = 64) in;
#include "common.glsl"

layout(push_constant) uniform PC {
    uint ne0, ne1, ne2, ne3;
    uint a_off, a_nb0, a_nb1, a_nb2, a_nb3;
    uint y_off, src_t, dst_t, n_blocks;
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

// Correctly rounded a / b for finite, normal results: the nearest of the
// approximate quotient and its two neighbours (ties to the even mantissa).
float div_rn(float a, float b) {
    float q = a / b;
    if (isinf(q) || isnan(q) || q == 0.0) return q;
    uint qb = floatBitsToUint(q);
    float best = q;
    double be = abs(double(a) - double(q) * double(b));
    for (int s = -1; s <= 1; s += 2) {
        float c = uintBitsToFloat(uint(int(qb) + s));
        double e = abs(double(a) - double(c) * double(b));
        if (e < be || (e == be && (floatBitsToUint(c) & 1u) == 0u)) {
            best = c;
            be = e;
        }
    }
    return best;
}

// C roundf: half away from zero.
float round_away(float v) {
    float t = trunc(v);
    if (abs(v - t) >= 0.5) t += sign(v);
    return t;
}

float load(uint e) {
    uint i0 = e % p.ne0, r = e / p.ne0;
    uint i1 = r % p.ne1;
    r /= p.ne1;
    uint i2 = r % p.ne2, i3 = r / p.ne2;
    return A_elem(p.src_t, p.a_off + i1 * p.a_nb1 + i2 * p.a_nb2 + i3 * p.a_nb3, i0, p.a_nb0);
}

void put_byte(uint addr, uint v) {
    uint sh = (addr & 3u) * 8u;
    atomicAnd(Y[addr >> 2], ~(0xffu << sh));
    atomicOr(Y[addr >> 2], (v & 0xffu) << sh);
}

void main() {
    uint b = flat_id();
    if (b >= p.n_blocks) return;
    float x[32];
    for (uint j = 0u; j < 32u; j++)
        x[j] = load(b * 32u + j);
    if (p.dst_t == T_Q8_0) {
        uint ob = p.y_off + b * 34u;
        float amax = 0.0;
        for (uint j = 0u; j < 32u; j++) {
            float v = abs(x[j]);
            amax = amax > v ? amax : v;
        }
        float d = div_rn(amax, 127.0);
        float id = d != 0.0 ? div_rn(1.0, d) : 0.0;
        uint h = f32_to_f16_bits(d);
        put_byte(ob, h);
        put_byte(ob + 1u, h >> 8);
        for (uint j = 0u; j < 32u; j++) {
            precise float v = x[j] * id;
            float r = round_away(v);
            int q = (r >= -128.0 && r <= 127.0) ? int(r) : 0;
            put_byte(ob + 2u + j, uint(q));
        }
    } else {
        uint ob = p.y_off + b * 18u;
        float amax = 0.0, mx = 0.0;
        for (uint j = 0u; j < 32u; j++)
            if (amax < abs(x[j])) {
                amax = abs(x[j]);
                mx = x[j];
            }
        float d = div_rn(mx, -8.0);
        float id = d != 0.0 ? div_rn(1.0, d) : 0.0;
        uint h = f32_to_f16_bits(d);
        put_byte(ob, h);
        put_byte(ob + 1u, h >> 8);
        for (uint j = 0u; j < 16u; j++) {
            precise float x0 = x[j] * id;
            precise float x1 = x[j + 16u] * id;
            precise float t0 = x0 + 8.5;
            precise float t1 = x1 + 8.5;
            int q0 = (t0 > -1.0 && t0 < 128.0) ? int(t0) : 0;
            int q1 = (t1 > -1.0 && t1 < 128.0) ? int(t1) : 0;
            put_byte(ob + 2u + j, uint(min(q0, 15)) | (uint(min(q1, 15)) << 4));
        }
    }
}
