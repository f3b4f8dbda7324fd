// kernels/vulkan/sum_to.comp - sum src over the dims where the output has
// extent 1 (kernels/ref/ref_elementwise.c): one output element per
// invocation, f32 sum in the reference's order (k3, k2, k1, k0).
#version 450
layout(local_size_x = 64) in;
#include "common.glsl"

layout(push_constant) uniform PC {
    uint ne0, ne1, ne2, ne3; // output
    uint a_off, a_nb0, a_nb1, a_nb2, a_nb3;
    uint r0, r1, r2, r3; // reduced extents (1 where kept)
    uint y_off, n;
} p;

void main() {
    uint e = flat_id();
    if (e >= p.n) return;
    uint o0 = e % p.ne0, o1 = (e / p.ne0) % p.ne1, o2 = (e / (p.ne0 * p.ne1)) % p.ne2,
         o3 = e / (p.ne0 * p.ne1 * p.ne2);
    float acc = 0.0;
    for (uint k3 = 0u; k3 < p.r3; k3++)
        for (uint k2 = 0u; k2 < p.r2; k2++)
            for (uint k1 = 0u; k1 < p.r1; k1++)
                for (uint k0 = 0u; k0 < p.r0; k0++)
                    acc += A_f32(p.a_off + (o0 + k0) * p.a_nb0 + (o1 + k1) * p.a_nb1 +
                                 (o2 + k2) * p.a_nb2 + (o3 + k3) * p.a_nb3);
    Y[(p.y_off >> 2) + e] = floatBitsToUint(acc);
}
