// kernels/vulkan/get_rows.comp - rows of a f32/f16/bf16/q8_0/q4_0 table picked
// by i32 ids, dequantized to f32 [D, T, B] (kernels/ref/ref_misc.c). An id
// outside [0, V) is reported through the aux error words (X[0] flag, X[1] id,
// X[2] t, X[3] b); the backend turns it into LOOM_ERR_INVALID_ARG.
#version 450
layout(local_size_x = 256) in;
#include "common.glsl"

layout(push_constant) uniform PC {
    uint D, T, Bn, V;
    uint t_off, t_nb0, t_nb1, t_nb2;
    uint ids_off, ids_nb0, ids_nb1;
    uint y_off, dtype, n;
    uint v0, vc; // this dispatch's chunk of table rows (t_off is row v0's)
} p;

void main() {
    uint i = flat_id();
    if (i >= p.n) return;
    uint d = i % p.D, r = i / p.D;
    uint t = r % p.T, b = r / p.T;
    int id = int(B[(p.ids_off + t * p.ids_nb0 + b * p.ids_nb1) >> 2]);
    float v = 0.0;
    if (id < 0 || uint(id) >= p.V) {
        if (p.v0 != 0u) return; // the first chunk reports it and writes 0
        if (atomicCompSwap(X[0], 0u, 1u) == 0u) {
            X[1] = uint(id);
            X[2] = t;
            X[3] = b;
        }
    } else {
        uint r = uint(id) - p.v0;
        if (r >= p.vc) return; // another chunk's row
        v = A_elem(p.dtype, p.t_off + r * p.t_nb1 + b * p.t_nb2, d, p.t_nb0);
    }
    Y[(p.y_off >> 2) + i] = floatBitsToUint(v);
}
