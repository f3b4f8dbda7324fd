// kernels/vulkan/matmul_tiled.comp - the prefill matmul (many activation
// columns): out[n,m,i2,i3] = sum_k w[k,n,i2/r2,i3/r3] * x[k,m,i2,i3].
// One workgroup per 64 x 64 output tile (x one batch); K is walked in steps
// of 32 (one q8_0/q4_0 block): the 256 invocations dequantize a 64 x 32
// weight tile and convert a 64 x 32 activation tile into shared memory
// (f32, 16 KiB), then each accumulates a 4 x 4 register block of outputs.
// Weights f32/f16/bf16 (any strides), q8_0/q4_0, nf4/nf4_dq; activations
// f32/f16/bf16 with any strides; f32 accumulation. The host keeps K <= 16384
// on lavapipe (its loop limit, see ADR 0008).
#version 450
#define BN 64
#define BM 64
#define BK 32
layout(local_size_x = 256) in;
#include "common.glsl"

layout(push_constant) uniform PC {
    uint K, N, M, X2, X3, r2, r3;
    uint w_off, w_nb0, w_nb1, w_nb2, w_nb3;
    uint x_off, x_nb0, x_nb1, x_nb2, x_nb3;
    uint y_off, wt, xt, n_groups, m_tiles;
    uint s_off, am_off, s2_off, dqo_off;
    uint y_nb1, y_nb2, y_nb3;
} p;

shared float Ws[BK][BN + 1];
shared float Xs[BK][BM + 1];

void main() {
    uint g = flat_group();
    if (g >= p.n_groups) return; // uniform per workgroup
    uint tid = gl_LocalInvocationID.x;
    uint n_tiles = (p.N + BN - 1u) / BN;
    uint nt = g % n_tiles, rr = g / n_tiles;
    uint mt = rr % p.m_tiles;
    rr /= p.m_tiles;
    uint i2 = rr % p.X2, i3 = rr / p.X2;
    uint n0 = nt * BN, m0 = mt * BM;
    uint wbase = p.w_off + (i2 / p.r2) * p.w_nb2 + (i3 / p.r3) * p.w_nb3;
    uint xbase = p.x_off + i2 * p.x_nb2 + i3 * p.x_nb3;

    // Tile loads: invocation tid fills row lr (of 64) at k offsets lk .. lk + 7.
    uint lr = tid >> 2, lk = (tid & 3u) * 8u;
    uint wn = n0 + lr, xm = m0 + lr;
    uint wrow = wbase + min(wn, p.N - 1u) * p.w_nb1;
    uint xrow = xbase + min(xm, p.M - 1u) * p.x_nb1;
    bool nf4 = p.wt == T_NF4 || p.wt == T_NF4_DQ;

    // Compute: invocation (tx, ty) owns n = n0 + tx + 16 i, m = m0 + ty + 16 j.
    uint tx = tid & 15u, ty = tid >> 4;
    float acc[16];
    for (uint i = 0u; i < 16u; i++)
        acc[i] = 0.0;

    for (uint k0 = 0u; k0 < p.K; k0 += BK) {
        if (nf4) {
            uint e = 2u * wrow + k0 + lk; // 8 elements inside one 64-block
            float am = wn < p.N && k0 + lk < p.K
                           ? nf4_absmax(p.wt, e >> 6, p.am_off, p.s2_off, p.dqo_off)
                           : 0.0;
            for (uint i = 0u; i < 8u; i++) {
                uint k = k0 + lk + i;
                Ws[lk + i][lr] = wn < p.N && k < p.K ? nf4_code(p.s_off, e + i) * am : 0.0;
            }
        } else {
            for (uint i = 0u; i < 8u; i++) {
                uint k = k0 + lk + i;
                Ws[lk + i][lr] = wn < p.N && k < p.K ? A_elem(p.wt, wrow, k, p.w_nb0) : 0.0;
            }
        }
        for (uint i = 0u; i < 8u; i++) {
            uint k = k0 + lk + i;
            Xs[lk + i][lr] = xm < p.M && k < p.K ? B_elem(p.xt, xrow, k, p.x_nb0) : 0.0;
        }
        barrier();
        for (uint kk = 0u; kk < BK; kk++) {
            float a[4], b[4];
            for (uint i = 0u; i < 4u; i++)
                a[i] = Ws[kk][tx + 16u * i];
            for (uint j = 0u; j < 4u; j++)
                b[j] = Xs[kk][ty + 16u * j];
            for (uint j = 0u; j < 4u; j++)
                for (uint i = 0u; i < 4u; i++)
                    acc[j * 4u + i] += a[i] * b[j];
        }
        barrier();
    }
    for (uint j = 0u; j < 4u; j++) {
        uint m = m0 + ty + 16u * j;
        if (m >= p.M) break;
        for (uint i = 0u; i < 4u; i++) {
            uint n = n0 + tx + 16u * i;
            if (n < p.N) {
                uint a = p.y_off + n * 4u + m * p.y_nb1 + i2 * p.y_nb2 + i3 * p.y_nb3;
                Y[a >> 2] = floatBitsToUint(acc[j * 4u + i]);
            }
        }
    }
}
