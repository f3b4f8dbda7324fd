// kernels/vulkan/moe_gate.comp - per token (kernels/ref/ref_moe.c):
// op 0 moe_gate: dense gates [E, T] = softmax over the top_k logits (ties to
// the lower expert index), 0 elsewhere; op 1 moe_gate_back: dlogits from
// gates (a) and dgates (b). One invocation per token; E <= 256.
#version 450
layout(local_size_x = 64) in;
#include "common.glsl"

layout(push_constant) uniform PC {
    uint E, T, k, op;
    uint a_off, a_nb0, a_nb1;
    uint b_off, b_nb0, b_nb1;
    uint y_off;
} p;

void main() {
    uint t = flat_id();
    if (t >= p.T) return;
    uint arow = p.a_off + t * p.a_nb1;
    uint yrow = (p.y_off >> 2) + t * p.E;
    if (p.op == 1u) {
        uint brow = p.b_off + t * p.b_nb1;
        float dot = 0.0;
        for (uint e = 0u; e < p.E; e++) {
            float g = A_f32(arow + e * p.a_nb0);
            if (g > 0.0) dot += g * B_f32(brow + e * p.b_nb0);
        }
        for (uint e = 0u; e < p.E; e++) {
            float g = A_f32(arow + e * p.a_nb0);
            float d = g > 0.0 ? g * (B_f32(brow + e * p.b_nb0) - dot) : 0.0;
            Y[yrow + e] = floatBitsToUint(d);
        }
        return;
    }
    uint sel[8]; // bit set of chosen experts (E <= 256)
    for (uint i = 0u; i < 8u; i++)
        sel[i] = 0u;
    for (uint e = 0u; e < p.E; e++)
        Y[yrow + e] = 0u;
    float mx = 0.0, sum = 0.0;
    // Pass 1: pick the top k in order; the first pick holds the max.
    for (uint r = 0u; r < p.k; r++) {
        int best = -1;
        float bv = 0.0;
        for (uint e = 0u; e < p.E; e++) {
            if ((sel[e >> 5] & (1u << (e & 31u))) != 0u) continue;
            float v = A_f32(arow + e * p.a_nb0);
            if (best < 0 || v > bv) {
                best = int(e);
                bv = v;
            }
        }
        sel[uint(best) >> 5] |= 1u << (uint(best) & 31u);
        if (r == 0u) mx = bv;
        float g = exp(bv - mx);
        sum += g;
        Y[yrow + uint(best)] = floatBitsToUint(g);
    }
    for (uint e = 0u; e < p.E; e++)
        if ((sel[e >> 5] & (1u << (e & 31u))) != 0u)
            Y[yrow + e] = floatBitsToUint(uintBitsToFloat(Y[yrow + e]) / sum);
}
