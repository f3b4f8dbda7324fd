// kernels/vulkan/rope.comp - rotary embedding (normal/neox, llama3 scaling,
// inverse), matching kernels/ref/ref_norm.c. The per-pair inv_freq table is
// computed on the host in double exactly as the reference does (aux buffer)
// and the angle pos * inv_freq is formed and range-reduced in double, so only
// the final f32 cos/sin of an angle in [-pi, pi] differs from the reference.
// Needs shaderFloat64 (the backend does not offer rope without it).
#version 450
layout(local_size_x = 64) in;
#include "common.glsl"

layout(push_constant) uniform PC {
    uint ne0, ne1, ne2, ne3;
    uint x_off, x_nb0, x_nb1, x_nb2, x_nb3;
    uint pos_off, pos_nb0;
    uint y_off, n_dims, mode, inverse, tab_off, per_row, n;
} p;

void main() {
    uint i = flat_id();
    if (i >= p.n) return;
    uint k = i % p.per_row, row = i / p.per_row;
    uint i1 = row % p.ne1, i2 = (row / p.ne1) % p.ne2, i3 = row / (p.ne1 * p.ne2);
    uint xrow = p.x_off + i1 * p.x_nb1 + i2 * p.x_nb2 + i3 * p.x_nb3;
    uint yrow = (p.y_off >> 2) + row * p.ne0;
    uint half_ = p.n_dims / 2u;
    if (k >= half_) { // pass-through dims
        uint j = p.n_dims + (k - half_);
        Y[yrow + j] = A[(xrow + j * p.x_nb0) >> 2];
        return;
    }
    int pos = int(B[(p.pos_off + i2 * p.pos_nb0) >> 2]);
    uint t = (p.tab_off >> 2) + 2u * k;
    double inv = packDouble2x32(uvec2(X[t], X[t + 1u]));
    double ang = double(pos) * inv;
    const double TWO_PI = 6.283185307179586476925286766559LF;
    ang -= floor(ang / TWO_PI + 0.5LF) * TWO_PI;
    float fa = float(ang);
    float cs = cos(fa), sn = sin(fa);
    if (p.inverse != 0u) sn = -sn;
    uint ja = p.mode == 2u ? k : 2u * k;
    uint jb = p.mode == 2u ? k + half_ : 2u * k + 1u;
    float a = A_f32(xrow + ja * p.x_nb0), b = A_f32(xrow + jb * p.x_nb0);
    Y[yrow + ja] = floatBitsToUint(a * cs - b * sn);
    Y[yrow + jb] = floatBitsToUint(a * sn + b * cs);
}
