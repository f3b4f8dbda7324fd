// kernels/vulkan/eltwise.comp - add, mul (b broadcast through zero strides),
// scale, silu, swiglu, silu_back, gelu, gelu_back; one output element per
// invocation.
// Matches kernels/ref/ref_elementwise.c: add/mul of two floats rounded once
// is exact in f32 too; the transcendental ops carry a few ulp.
#version 450
layout(local_size_x = 256) in;
#include "common.glsl"

layout(push_constant) uniform PC {
    uint ne0, ne1, ne2, ne3;
    uint a_off, a_nb0, a_nb1, a_nb2, a_nb3;
    uint b_off, b_nb0, b_nb1, b_nb2, b_nb3;
    uint y_off, op, n;
    float s;
} p;

float sigmoid(float x) { return 1.0 / (1.0 + exp(-x)); }

// Phi(x), the normal CDF, for the exact GELU (GLSL has no erf): the erfc form
// of Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7), as kernels/cpu's v_gelu,
// taking q/2 directly for x < 0 so small tail values keep their accuracy.
float phi_cdf(float x) {
    float z = abs(x) * 0.70710678;
    float t = 1.0 / (1.0 + 0.3275911 * z);
    float q = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 +
              t * (-1.453152027 + t * 1.061405429)))) * exp(-z * z);
    return x >= 0.0 ? 1.0 - 0.5 * q : 0.5 * q;
}

void main() {
    uint i = flat_id();
    if (i >= p.n) return;
    uint i0 = i % p.ne0, r = i / p.ne0;
    uint i1 = r % p.ne1;
    r /= p.ne1;
    uint i2 = r % p.ne2, i3 = r / p.ne2;
    float x = A_f32(p.a_off + i0 * p.a_nb0 + i1 * p.a_nb1 + i2 * p.a_nb2 + i3 * p.a_nb3);
    float u = 0.0;
    if (p.op != 2u && p.op != 3u && p.op != 6u)
        u = B_f32(p.b_off + i0 * p.b_nb0 + i1 * p.b_nb1 + i2 * p.b_nb2 + i3 * p.b_nb3);
    float v;
    if (p.op == 0u) v = x + u;
    else if (p.op == 1u) v = x * u;
    else if (p.op == 2u) v = x * p.s;
    else if (p.op == 3u) v = x * sigmoid(x);
    else if (p.op == 4u) v = x * sigmoid(x) * u;
    else if (p.op == 5u) {
        float sg = sigmoid(x);
        v = u * sg * (1.0 + x * (1.0 - sg));
    } else if (p.op == 6u) v = x * phi_cdf(x);
    else v = u * (phi_cdf(x) + x * 0.39894228 * exp(-0.5 * x * x)); // gelu_back
    Y[(p.y_off >> 2) + i] = floatBitsToUint(v);
}
