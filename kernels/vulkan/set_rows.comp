// kernels/vulkan/set_rows.comp - in-place row write (loom_set_rows, ADR
// 0011; kernels/ref/ref_misc.c) into an f32, f16 or bf16 destination:
// dst[:, rows[t, b], b] = convert(src[:, t, b]). q8_0 destinations go
// through quantize.comp (scatter mode), which needs fp64.
// A row outside [0, R) writes nothing and is reported through the aux error
// words (report_bad_row, by the invocation of element 0 only); the backend
// turns that into an error naming the node and the row. The destination may
// be split into dispatches of rc rows from r0 (a binding covers at most
// maxStorageBufferRange): rows outside the chunk are skipped and only the
// dispatch with report = 1 reports.
// packed = 1 (16-bit rows contiguous and starting on 4-byte boundaries, W
// even): one invocation per output word (two values), plain stores.
// Otherwise one invocation per element; 16-bit values are merged into
// their word with atomics, since the neighbour may belong to another row.
#version 450
layout(local_size_x = 256) in;
#include "common.glsl"
#include "convert.glsl"

layout(push_constant) uniform PC {
    uint W, T, Bn, R;
    uint s_off, s_nb0, s_nb1, s_nb2;   // f32 source (binding 1)
    uint r_off, r_nb0, r_nb1;          // i32 rows (binding 2); r_nb1 = 0 for [T]
    uint y_off, y_nb0, y_nb1, y_nb2;   // destination (binding 0), from row r0
    uint dtype, packed, n;
    uint r0, rc, report, b_base, tag;
} p;

uint to_half(float v) { return p.dtype == T_F16 ? f32_to_f16_bits(v) : f32_to_bf16_bits(v); }

void main() {
    uint i = flat_id();
    if (i >= p.n) return;
    uint per = p.packed != 0u ? p.W / 2u : p.W;
    uint j = i % per, r = i / per;
    uint t = r % p.T, b = r / p.T;
    int row = int(B[(p.r_off + t * p.r_nb0 + b * p.r_nb1) >> 2]);
    if (row < 0 || uint(row) >= p.R) {
        if (j == 0u && p.report != 0u) report_bad_row(row, t, p.b_base + b, p.R, p.tag);
        return;
    }
    uint rr = uint(row) - p.r0;
    if (rr >= p.rc) return; // another dispatch's rows
    uint dst = p.y_off + rr * p.y_nb1 + b * p.y_nb2;
    uint src = p.s_off + t * p.s_nb1 + b * p.s_nb2;
    if (p.dtype == T_F32) { // f32 -> f32: the bits, as the reference's copy
        Y[(dst + j * p.y_nb0) >> 2] = A[(src + j * p.s_nb0) >> 2];
    } else if (p.packed != 0u) {
        uint e = 2u * j;
        uint lo = to_half(A_f32(src + e * p.s_nb0));
        uint hi = to_half(A_f32(src + (e + 1u) * p.s_nb0));
        Y[(dst + 2u * e) >> 2] = lo | (hi << 16);
    } else {
        uint a = dst + j * p.y_nb0;
        uint sh = (a & 2u) * 8u;
        uint h = to_half(A_f32(src + j * p.s_nb0));
        atomicAnd(Y[a >> 2], ~(0xffffu << sh));
        atomicOr(Y[a >> 2], h << sh);
    }
}
