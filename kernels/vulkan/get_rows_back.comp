// kernels/vulkan/get_rows_back.comp - scatter-add of dy [D, T, B] rows into
// [D, V] by i32 ids (kernels/ref/ref_misc.c): one output element (d, v) per
// invocation, summing the positions whose id is v in ascending order, so the
// result is deterministic. An id outside [0, V) is reported through the aux
// error words like get_rows.comp.
#version 450
layout(local_size_x = 64) in;
#include "common.glsl"

layout(push_constant) uniform PC {
    uint D, T, Bn, V;
    uint dy_off, dy_nb0, dy_nb1, dy_nb2;
    uint ids_off, ids_nb0, ids_nb1;
    uint y_off, n;
} p;

void main() {
    uint i = flat_id();
    if (i >= p.n) return;
    uint d = i % p.D, v = i / p.D;
    float acc = 0.0;
    for (uint b = 0u; b < p.Bn; b++)
        for (uint t = 0u; t < p.T; t++) {
            int id = int(B[(p.ids_off + t * p.ids_nb0 + b * p.ids_nb1) >> 2]);
            if (id < 0 || uint(id) >= p.V) {
                if (atomicCompSwap(X[0], 0u, 1u) == 0u) {
                    X[1] = uint(id);
                    X[2] = t;
                    X[3] = b;
                }
            } else if (uint(id) == v) {
                acc += A_f32(p.dy_off + d * p.dy_nb0 + t * p.dy_nb1 + b * p.dy_nb2);
            }
        }
    Y[(p.y_off >> 2) + i] = floatBitsToUint(acc);
}
