// kernels/vulkan/moe_acc.comp - one expert's contribution to the fused MoE
// output: y[d, t] = (first ? 0 : y[d, t]) + gates[e, t] * down[d, t]
// (the gates come from moe_gate.comp, 0 for tokens not routed to e).
#version 450
layout(local_size_x = 256) in;
#include "common.glsl"

layout(push_constant) uniform PC {
    uint Dm, T, E, e, g_off, dn_off, y_off, first, n;
} p;

void main() {
    uint i = flat_id();
    if (i >= p.n) return;
    uint t = i / p.Dm;
    float g = A_f32(p.g_off + (t * p.E + p.e) * 4u);
    float prev = p.first != 0u ? 0.0 : uintBitsToFloat(Y[(p.y_off >> 2) + i]);
    Y[(p.y_off >> 2) + i] = floatBitsToUint(prev + g * B_f32(p.dn_off + i * 4u));
}
