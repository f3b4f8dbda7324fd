// kernels/vulkan/quantize.comp - f32/f16/bf16/i32/q8_0/q4_0/... values into
// q8_0, q4_0, q4_1, q5_0 or q5_1 blocks, byte-identical to ir/dtype.c's
// ggml-compatible quantizers
// (same float operations in the same order). Two uses:
// - cpy (scatter == 0): a strided source [ne0, ne1, ne2, ne3] into a
//   contiguous destination, block b at y_off + b * block bytes;
// - set_rows (scatter == 1, kernels/ref/ref_misc.c): source [W, T, B] (ne0
//   = W, ne1 = T, ne2 = B), row (t, b) into destination row rows[t, b] of
//   batch b. A row outside [0, R) writes nothing and is reported through
//   the aux error words (report_bad_row). The destination may be split into
//   dispatches of rc rows from r0 (binding-size limit): rows outside the
//   chunk are skipped, only the dispatch with report = 1 reports.
// The reciprocal 1/d must be correctly rounded, which Vulkan's f32 division
// does not promise (div_rn in quant.glsl; fp64 only). One block per
// invocation; blocks are not word-aligned, so the words shared with a
// neighbour are merged with atomics.
#version 450
layout(local_size_x = 64) in;
#include "common.glsl"
#include "convert.glsl"
#include "quant.glsl"

layout(push_constant) uniform PC {
    uint ne0, ne1, ne2, ne3;
    uint a_off, a_nb0, a_nb1, a_nb2, a_nb3;
    uint y_off, src_t, dst_t, n_blocks;
    uint scatter, y_nb1, y_nb2;          // set_rows: destination strides
    uint r_off, r_nb0, r_nb1, R;         // set_rows: i32 rows (binding 2), rows of dst
    uint r0, rc, report, b_base, tag;    // set_rows: this dispatch's chunk, reporting
} p;

// C roundf: half away from zero.
float round_away(float v) {
    float t = trunc(v);
    if (abs(v - t) >= 0.5) t += sign(v);
    return t;
}

float load(uint e) {
    uint i0 = e % p.ne0, r = e / p.ne0;
    uint i1 = r % p.ne1;
    r /= p.ne1;
    uint i2 = r % p.ne2, i3 = r / p.ne2;
    return A_elem(p.src_t, p.a_off + i1 * p.a_nb1 + i2 * p.a_nb2 + i3 * p.a_nb3, i0, p.a_nb0);
}

void put(inout uint w[9], uint i, uint v) { w[i >> 2] |= (v & 0xffu) << ((i & 3u) * 8u); }

void main() {
    uint b = flat_id();
    if (b >= p.n_blocks) return;
    uint bbytes = p.dst_t == T_Q8_0 ? 34u : p.dst_t == T_Q4_0 ? 18u : legacy_bytes(p.dst_t);
    uint ob = p.y_off + b * bbytes;
    if (p.scatter != 0u) {
        uint bpr = p.ne0 / 32u;
        uint k = b % bpr, r = b / bpr;
        uint t = r % p.ne1, bb = r / p.ne1;
        int row = int(B[(p.r_off + t * p.r_nb0 + bb * p.r_nb1) >> 2]);
        if (row < 0 || uint(row) >= p.R) {
            if (k == 0u && p.report != 0u) report_bad_row(row, t, p.b_base + bb, p.R, p.tag);
            return;
        }
        uint rr = uint(row) - p.r0;
        if (rr >= p.rc) return; // another dispatch's rows
        ob = p.y_off + rr * p.y_nb1 + bb * p.y_nb2 + k * bbytes;
    }
    float x[32];
    for (uint j = 0u; j < 32u; j++)
        x[j] = load(b * 32u + j);
    uint w[9];
    for (uint j = 0u; j < 9u; j++)
        w[j] = 0u;
    if (p.dst_t == T_Q8_0) {
        float amax = 0.0;
        for (uint j = 0u; j < 32u; j++) {
            float v = abs(x[j]);
            amax = amax > v ? amax : v;
        }
        float d = div_rn(amax, 127.0);
        float id = d != 0.0 ? div_rn(1.0, d) : 0.0;
        w[0] = f32_to_f16_bits(d);
        for (uint j = 0u; j < 32u; j++) {
            precise float v = x[j] * id;
            float r = round_away(v);
            int q = (r >= -128.0 && r <= 127.0) ? int(r) : 0;
            put(w, 2u + j, uint(q));
        }
    } else if (p.dst_t == T_Q4_1 || p.dst_t == T_Q5_1) {
        // ggml quantize_row_q4_1_ref / q5_1_ref: m = min, d = (max - min) / top,
        // code = min(top, trunc((x - m) * id + 0.5))
        bool five = p.dst_t == T_Q5_1;
        float top = five ? 31.0 : 15.0;
        float mn = 3.402823466e38, mx = -3.402823466e38;
        for (uint j = 0u; j < 32u; j++) {
            if (x[j] < mn) mn = x[j];
            if (x[j] > mx) mx = x[j];
        }
        precise float range = mx - mn;
        float d = div_rn(range, top);
        float id = d != 0.0 ? div_rn(1.0, d) : 0.0;
        w[0] = f32_to_f16_bits(d) | (f32_to_f16_bits(mn) << 16);
        uint qh = 0u, qs0 = five ? 8u : 4u;
        for (uint j = 0u; j < 16u; j++) {
            precise float x0 = (x[j] - mn) * id;
            precise float x1 = (x[j + 16u] - mn) * id;
            precise float t0 = x0 + 0.5;
            precise float t1 = x1 + 0.5;
            uint q0 = uint(min((t0 > -1.0 && t0 < 128.0) ? int(t0) : 0, int(top)));
            uint q1 = uint(min((t1 > -1.0 && t1 < 128.0) ? int(t1) : 0, int(top)));
            put(w, qs0 + j, (q0 & 15u) | ((q1 & 15u) << 4));
            qh |= ((q0 >> 4) << j) | ((q1 >> 4) << (j + 16u));
        }
        if (five) w[1] = qh; // bytes 4..7
    } else if (p.dst_t == T_Q5_0) {
        // ggml quantize_row_q5_0_ref: q4_0 with d = max / -16, 16.5, cap 31
        float amax = 0.0, mx = 0.0;
        for (uint j = 0u; j < 32u; j++)
            if (amax < abs(x[j])) {
                amax = abs(x[j]);
                mx = x[j];
            }
        float d = div_rn(mx, -16.0);
        float id = d != 0.0 ? div_rn(1.0, d) : 0.0;
        w[0] = f32_to_f16_bits(d);
        uint qh = 0u;
        for (uint j = 0u; j < 16u; j++) {
            precise float x0 = x[j] * id;
            precise float x1 = x[j + 16u] * id;
            precise float t0 = x0 + 16.5;
            precise float t1 = x1 + 16.5;
            uint q0 = uint(min((t0 > -1.0 && t0 < 128.0) ? int(t0) : 0, 31));
            uint q1 = uint(min((t1 > -1.0 && t1 < 128.0) ? int(t1) : 0, 31));
            put(w, 6u + j, (q0 & 15u) | ((q1 & 15u) << 4));
            qh |= ((q0 >> 4) << j) | ((q1 >> 4) << (j + 16u));
        }
        for (uint k = 0u; k < 4u; k++) // bytes 2..5
            put(w, 2u + k, qh >> (8u * k));
    } else {
        float amax = 0.0, mx = 0.0;
        for (uint j = 0u; j < 32u; j++)
            if (amax < abs(x[j])) {
                amax = abs(x[j]);
                mx = x[j];
            }
        float d = div_rn(mx, -8.0);
        float id = d != 0.0 ? div_rn(1.0, d) : 0.0;
        w[0] = f32_to_f16_bits(d);
        for (uint j = 0u; j < 16u; j++) {
            precise float x0 = x[j] * id;
            precise float x1 = x[j + 16u] * id;
            precise float t0 = x0 + 8.5;
            precise float t1 = x1 + 8.5;
            int q0 = (t0 > -1.0 && t0 < 128.0) ? int(t0) : 0;
            int q1 = (t1 > -1.0 && t1 < 128.0) ? int(t1) : 0;
            put(w, 2u + j, uint(min(q0, 15)) | (uint(min(q1, 15)) << 4));
        }
    }
    store_bytes(ob, w, bbytes);
}
