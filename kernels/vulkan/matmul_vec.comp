// kernels/vulkan/matmul_vec.comp - the decode matmul (few activation
// columns): out[n,m,i2,i3] = sum_k w[k,n,i2/r2,i3/r3] * x[k,m,i2,i3].
// A workgroup owns `rpw` weight rows x MC activation columns (x one batch).
// Weights are read in units of 16 bytes (4 f32, 8 f16/bf16, half a q8_0
// block, a q4_0 block's quants, 32 nf4 codes; a whole q4_1/q5_0/q5_1
// block), dequantized in registers.
// - matmul_vec_sg (subgroup arithmetic): each subgroup takes whole rows, its
//   lanes stride over the row's units and subgroupAdd the dot products: no
//   shared memory, no barrier.
// - matmul_vec (fallback): the whole workgroup takes R rows at a time and the
//   R x MC partial sums meet in a shared-memory tree.
// Weight rows must be contiguous and start on 4-byte (plain, nf4) or 2-byte
// (q8_0/q4_0/q4_1/q5_0/q5_1) boundaries; nf4 needs K % 32 == 0 (the host checks). f32
// accumulation.
#version 450
#define WG 128
#define R 4
#define MC 4
layout(local_size_x = WG) in;
#include "common.glsl"
#extension GL_EXT_control_flow_attributes : require
#ifdef LOOM_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

layout(push_constant) uniform PC {
    uint K, N, M, X2, X3, r2, r3;
    uint w_off, w_nb0, w_nb1, w_nb2, w_nb3;
    uint x_off, x_nb0, x_nb1, x_nb2, x_nb3;
    uint y_off, wt, xt, n_groups, m_tiles;
    uint s_off, am_off, s2_off, dqo_off;
    uint y_nb1, y_nb2, y_nb3;
    uint x_fast; // x is f32 with nb0 == 4
    uint rpw;    // weight rows per workgroup
} p;

#ifndef LOOM_SUBGROUP
shared float red[R * MC][WG];
#endif

// 16 bytes at a 2-byte aligned address of A.
uvec4 ld16(uint a) {
    uint w = a >> 2;
    if ((a & 3u) == 0u) return uvec4(A[w], A[w + 1u], A[w + 2u], A[w + 3u]);
    uint w0 = A[w], w1 = A[w + 1u], w2 = A[w + 2u], w3 = A[w + 3u], w4 = A[w + 4u];
    return uvec4((w0 >> 16) | (w1 << 16), (w1 >> 16) | (w2 << 16), (w2 >> 16) | (w3 << 16),
                 (w3 >> 16) | (w4 << 16));
}

float xv(uint xrow, uint k) {
    if (p.x_fast != 0u) return uintBitsToFloat(B[(xrow >> 2) + k]);
    return B_elem(p.xt, xrow, k, p.x_nb0);
}

// Dot product of unit u (weights k0 .. k0 + upu - 1 of the row at byte wrow)
// with activation column xr. Constant trip counts, no local arrays.
float unit_dot(uint wrow, uint u, uint k0, uint xr) {
    float s = 0.0;
    if (p.wt == T_F32) {
        uint a = (wrow >> 2) + u * 4u;
        for (uint i = 0u; i < 4u; i++)
            s += uintBitsToFloat(A[a + i]) * xv(xr, k0 + i);
    } else if (p.wt == T_F16) {
        uint a = (wrow >> 2) + u * 4u;
        for (uint i = 0u; i < 4u; i++) {
            vec2 h = unpackHalf2x16(A[a + i]);
            s += h.x * xv(xr, k0 + 2u * i) + h.y * xv(xr, k0 + 2u * i + 1u);
        }
    } else if (p.wt == T_BF16) {
        uint a = (wrow >> 2) + u * 4u;
        for (uint i = 0u; i < 4u; i++) {
            uint q = A[a + i];
            s += uintBitsToFloat(q << 16) * xv(xr, k0 + 2u * i) +
                 uintBitsToFloat(q & 0xffff0000u) * xv(xr, k0 + 2u * i + 1u);
        }
    } else if (p.wt == T_Q8_0) {
        uint blk = wrow + (u >> 1) * 34u;
        float d = f16_bits_to_f32(A_u16(blk));
        uvec4 q = ld16(blk + 2u + (u & 1u) * 16u);
        for (uint i = 0u; i < 4u; i++)
            for (uint j = 0u; j < 4u; j++)
                s += (float(int(q[i] << (24u - 8u * j)) >> 24) * d) * xv(xr, k0 + 4u * i + j);
    } else if (p.wt == T_Q4_0) {
        uint blk = wrow + u * 18u;
        float d = f16_bits_to_f32(A_u16(blk));
        uvec4 q = ld16(blk + 2u);
        for (uint i = 0u; i < 4u; i++)
            for (uint j = 0u; j < 4u; j++) {
                uint b = (q[i] >> (8u * j)) & 0xffu;
                uint k = k0 + 4u * i + j;
                s += (float(int(b & 15u) - 8) * d) * xv(xr, k) +
                     (float(int(b >> 4) - 8) * d) * xv(xr, k + 16u);
            }
    } else if (is_legacy_q(p.wt)) { // q4_1 / q5_0 / q5_1: one block per unit
        uint blk = wrow + u * legacy_bytes(p.wt);
        for (uint j = 0u; j < 32u; j++)
            s += A_legacy(p.wt, blk, j) * xv(xr, k0 + j);
    } else { // nf4 / nf4_dq: 32 codes under one absmax (K % 32 == 0)
        uint e = 2u * wrow + k0; // global element index
        float am = nf4_absmax(p.wt, e >> 6, p.am_off, p.s2_off, p.dqo_off);
        uint a = (p.s_off + (e >> 1)) >> 2;
        for (uint i = 0u; i < 4u; i++) {
            uint q = A[a + i];
            for (uint j = 0u; j < 4u; j++) {
                uint b = (q >> (8u * j)) & 0xffu;
                uint k = k0 + 8u * i + 2u * j;
                s += (uintBitsToFloat(X[LOOM_NF4_CODE_WORD + (b >> 4)]) * am) * xv(xr, k) +
                     (uintBitsToFloat(X[LOOM_NF4_CODE_WORD + (b & 15u)]) * am) * xv(xr, k + 1u);
            }
        }
    }
    return s;
}

// Row dot products for columns m0 .. m0 + mc - 1, partial over this
// invocation's units (lane of nl lanes).
void row_dots(uint n, uint m0, uint mc, uint i2, uint i3, uint lane, uint nl, uint upu,
              out float acc[MC]) {
    uint wrow = p.w_off + n * p.w_nb1 + (i2 / p.r2) * p.w_nb2 + (i3 / p.r3) * p.w_nb3;
    uint units = p.K / upu;
    [[unroll]] for (uint c = 0u; c < MC; c++) {
        acc[c] = 0.0;
        if (c >= mc) continue;
        uint xr = p.x_off + (m0 + c) * p.x_nb1 + i2 * p.x_nb2 + i3 * p.x_nb3;
        float a = 0.0;
        for (uint u = lane; u < units; u += nl)
            a += unit_dot(wrow, u, u * upu, xr);
        // Plain types: the K % upu tail, element by element.
        for (uint k = units * upu + lane; k < p.K; k += nl)
            a += A_elem(p.wt, wrow, k, p.w_nb0) * xv(xr, k);
        acc[c] = a;
    }
}

void store(uint n, uint m, uint i2, uint i3, float v) {
    Y[(p.y_off + n * 4u + m * p.y_nb1 + i2 * p.y_nb2 + i3 * p.y_nb3) >> 2] = floatBitsToUint(v);
}

void main() {
    uint g = flat_group();
    if (g >= p.n_groups) return; // uniform per workgroup
    uint tid = gl_LocalInvocationID.x;
    uint n_tiles = (p.N + p.rpw - 1u) / p.rpw;
    uint nt = g % n_tiles, rr = g / n_tiles;
    uint mt = rr % p.m_tiles;
    rr /= p.m_tiles;
    uint i2 = rr % p.X2, i3 = rr / p.X2;
    uint n0 = nt * p.rpw, n1 = min(n0 + p.rpw, p.N), m0 = mt * MC;
    uint mc = min(uint(MC), p.M - m0);
    uint upu = p.wt == T_F32 ? 4u : (p.wt == T_F16 || p.wt == T_BF16) ? 8u
                                                                   : p.wt == T_Q8_0 ? 16u : 32u;
#ifdef LOOM_SUBGROUP
    for (uint n = n0 + gl_SubgroupID; n < n1; n += gl_NumSubgroups) {
        float acc[MC];
        row_dots(n, m0, mc, i2, i3, gl_SubgroupInvocationID, gl_SubgroupSize, upu, acc);
        [[unroll]] for (uint c = 0u; c < MC; c++) {
            float v = subgroupAdd(acc[c]);
            if (c < mc && subgroupElect()) store(n, m0 + c, i2, i3, v);
        }
    }
#else
    for (uint nb = n0; nb < n1; nb += R) {
        [[unroll]] for (uint r = 0u; r < R; r++) {
            float acc[MC];
            row_dots(min(nb + r, n1 - 1u), m0, mc, i2, i3, tid, WG, upu, acc);
            [[unroll]] for (uint c = 0u; c < MC; c++)
                red[r * MC + c][tid] = acc[c];
        }
        barrier();
        for (uint s = WG / 2; s > 0; s >>= 1) {
            if (tid < s)
                [[unroll]] for (uint i = 0u; i < R * MC; i++)
                    red[i][tid] += red[i][tid + s];
            barrier();
        }
        if (tid < R * MC) {
            uint r = tid / MC, c = tid % MC;
            if (nb + r < n1 && c < mc) store(nb + r, m0 + c, i2, i3, red[tid][0]);
        }
        barrier();
    }
#endif
}
