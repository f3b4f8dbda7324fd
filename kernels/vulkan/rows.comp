// kernels/vulkan/rows.comp - row-wise ops over ne[0], one workgroup per row:
// op 0 rms_norm, 1 softmax (scale, causal mask with q_offset), 2 rms_norm_back,
// 3 softmax_back, and cross entropy (kernels/ref/ref_misc.c): 4 per-row loss
// into a scratch pair (loss, counted), 5 the mean of those pairs (one row of
// ne0 pairs), 6 cross_entropy_back (b = i32 targets, C = dloss).
// Matches kernels/ref/ref_norm.c; reductions are f32 partial sums combined
// by wg_sum / wg_max (common.glsl: subgroup arithmetic in the rows_sg
// variant, a shared-memory tree otherwise).
#version 450
#define WG 128
#define LOOM_WG_REDUCE
layout(local_size_x = WG) in;
#include "common.glsl"

layout(push_constant) uniform PC {
    uint ne0, ne1, ne2, ne3;
    uint a_off, a_nb0, a_nb1, a_nb2, a_nb3;
    uint b_off, b_nb0, b_nb1, b_nb2, b_nb3;
    uint y_off, op;
    float f; // eps or scale
    uint causal;
    int q_offset;
    uint c_off;
} p;

void main() {
    uint row = flat_group();
    uint nrows = p.ne1 * p.ne2 * p.ne3;
    if (row >= nrows) return; // uniform per workgroup
    uint i1 = row % p.ne1, i2 = (row / p.ne1) % p.ne2, i3 = row / (p.ne1 * p.ne2);
    uint arow = p.a_off + i1 * p.a_nb1 + i2 * p.a_nb2 + i3 * p.a_nb3;
    uint brow = p.b_off + i1 * p.b_nb1 + i2 * p.b_nb2 + i3 * p.b_nb3;
    uint yrow = (p.y_off >> 2) + row * p.ne0;
    uint n = p.ne0, t = gl_LocalInvocationID.x;

    if (p.op == 0u) {
        float ss = 0.0;
        for (uint i = t; i < n; i += WG) {
            float x = A_f32(arow + i * p.a_nb0);
            ss += x * x;
        }
        ss = wg_sum(ss);
        float denom = sqrt(ss / float(n) + p.f);
        for (uint i = t; i < n; i += WG)
            Y[yrow + i] = floatBitsToUint(A_f32(arow + i * p.a_nb0) / denom);
    } else if (p.op == 1u) {
        uint n_vis = n;
        if (p.causal != 0u) {
            int last = int(i1) + p.q_offset;
            n_vis = last < 0 ? 0u : min(uint(last) + 1u, n);
        }
        float mx = uintBitsToFloat(0xff800000u); // -inf
        for (uint i = t; i < n_vis; i += WG)
            mx = max(mx, p.f * A_f32(arow + i * p.a_nb0));
        mx = wg_max(mx);
        if (isinf(mx) && mx < 0.0) {
            for (uint i = t; i < n; i += WG)
                Y[yrow + i] = 0u;
            return;
        }
        float sum = 0.0;
        for (uint i = t; i < n_vis; i += WG)
            sum += exp(p.f * A_f32(arow + i * p.a_nb0) - mx);
        sum = wg_sum(sum);
        for (uint i = t; i < n; i += WG) {
            float e = i < n_vis ? exp(p.f * A_f32(arow + i * p.a_nb0) - mx) : 0.0;
            Y[yrow + i] = floatBitsToUint(e / sum);
        }
    } else if (p.op == 2u) {
        float ss = 0.0, dot = 0.0;
        for (uint i = t; i < n; i += WG) {
            float x = A_f32(arow + i * p.a_nb0), g = B_f32(brow + i * p.b_nb0);
            ss += x * x;
            dot += g * x;
        }
        ss = wg_sum(ss);
        dot = wg_sum(dot);
        float rr = 1.0 / sqrt(ss / float(n) + p.f);
        float k = rr * rr * rr * (dot / float(n));
        for (uint i = t; i < n; i += WG) {
            float x = A_f32(arow + i * p.a_nb0), g = B_f32(brow + i * p.b_nb0);
            Y[yrow + i] = floatBitsToUint(rr * g - x * k);
        }
    } else if (p.op == 4u || p.op == 6u) {
        // Targets are indexed by the logits row (i1, i2, i3); b_nb0..2 are
        // their strides.
        int tg = int(B[(p.b_off + i1 * p.b_nb0 + i2 * p.b_nb1 + i3 * p.b_nb2) >> 2]);
        if (tg >= int(n)) { // reported like get_rows' ids (aux error words)
            if (t == 0u && atomicCompSwap(X[0], 0u, 1u) == 0u) {
                X[1] = uint(tg);
                X[2] = i1;
                X[3] = i2;
            }
            tg = -1;
        }
        float mx = uintBitsToFloat(0xff800000u);
        for (uint i = t; i < n; i += WG)
            mx = max(mx, A_f32(arow + i * p.a_nb0));
        mx = wg_max(mx);
        float s = 0.0;
        for (uint i = t; i < n; i += WG)
            s += exp(A_f32(arow + i * p.a_nb0) - mx);
        float ls = log(wg_sum(s));
        if (p.op == 4u) {
            if (t == 0u) {
                uint o = (p.y_off >> 2) + 2u * row;
                float loss = tg >= 0 ? mx + ls - A_f32(arow + uint(tg) * p.a_nb0) : 0.0;
                Y[o] = floatBitsToUint(loss);
                Y[o + 1u] = floatBitsToUint(tg >= 0 ? 1.0 : 0.0);
            }
            return;
        }
        // Rows counted in the mean: every target >= 0 (scan all rows).
        float cnt = 0.0;
        for (uint r = t; r < nrows; r += WG) {
            uint j1 = r % p.ne1, j2 = (r / p.ne1) % p.ne2, j3 = r / (p.ne1 * p.ne2);
            cnt += int(B[(p.b_off + j1 * p.b_nb0 + j2 * p.b_nb1 + j3 * p.b_nb2) >> 2]) >= 0 ? 1.0
                                                                                          : 0.0;
        }
        cnt = wg_sum(cnt);
        float g = cnt > 0.0 ? C_f32(p.c_off) / cnt : 0.0;
        for (uint i = t; i < n; i += WG) {
            float d = 0.0;
            if (tg >= 0) {
                float pr = exp(A_f32(arow + i * p.a_nb0) - mx - ls);
                d = g * (pr - (int(i) == tg ? 1.0 : 0.0));
            }
            Y[yrow + i] = floatBitsToUint(d);
        }
    } else if (p.op == 5u) {
        float tot = 0.0, cnt = 0.0;
        for (uint i = t; i < n; i += WG) {
            tot += A_f32(p.a_off + 8u * i);
            cnt += A_f32(p.a_off + 8u * i + 4u);
        }
        tot = wg_sum(tot);
        cnt = wg_sum(cnt);
        if (t == 0u) Y[p.y_off >> 2] = floatBitsToUint(cnt > 0.0 ? tot / cnt : 0.0);
    } else {
        float dot = 0.0;
        for (uint i = t; i < n; i += WG)
            dot += B_f32(brow + i * p.b_nb0) * A_f32(arow + i * p.a_nb0);
        dot = wg_sum(dot);
        for (uint i = t; i < n; i += WG) {
            float y = A_f32(arow + i * p.a_nb0), g = B_f32(brow + i * p.b_nb0);
            Y[yrow + i] = floatBitsToUint(p.f * y * (g - dot));
        }
    }
}
