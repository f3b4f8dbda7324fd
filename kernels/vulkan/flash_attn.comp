// kernels/vulkan/flash_attn.comp - fused attention with an online softmax
// (kernels/ref/ref_attn.c). One workgroup per query row (h, t, b); keys are
// processed in tiles of WG: each invocation scores one key of the tile (full
// dot over D), the tile max/sum update the running max/sum, then each
// invocation accumulates its output dims d = tid, tid + WG, ... over the
// tile (paged: keys go through the block table, binding 5). GQA maps query head h to KV head h / (Hq/Hkv); causal with q_offset;
// K/V f32 or f16 with any strides; head dim up to 256 (4 dims/invocation).
// (Keeping per-invocation loops short also avoids very long single-thread
// loops, which misbehaved on lavapipe.)
#version 450
#define WG 64
#define LOOM_WG_REDUCE
layout(local_size_x = WG) in;
#include "common.glsl"

layout(push_constant) uniform PC {
    uint D, Tq, Hq, Bn, Tk, group;
    uint q_off, q_nb0, q_nb1, q_nb2, q_nb3;
    uint k_off, k_nb0, k_nb1, k_nb2, k_nb3;
    uint v_off, v_nb0, v_nb1, v_nb2, v_nb3;
    uint y_off, causal;
    int q_offset;
    float scale;
    uint kt, vt, n;
    uint bsz, tbl_off, pool_rows; // paged (docs/adr/0035): block size (0 = unpaged)
} p;

// The block table of a paged sequence (i32 block ids); binding 4 is aux.
layout(std430, set = 0, binding = 5) readonly buffer Src3 { int E[]; };

// Pool row of logical key j (clamped to the pool), or j when unpaged.
uint kv_row(uint j) {
    if (p.bsz == 0u) return j;
    int blk = E[(p.tbl_off >> 2) + j / p.bsz];
    uint r = uint(max(blk, 0)) * p.bsz + j % p.bsz;
    return min(r, p.pool_rows - 1u);
}

shared float sc[WG];
shared float qs[256];

void main() {
    uint i = flat_group();
    if (i >= p.n) return; // uniform per workgroup
    uint tid = gl_LocalInvocationID.x;
    uint h = i % p.Hq, t = (i / p.Hq) % p.Tq, b = i / (p.Hq * p.Tq);
    uint hk = h / p.group;
    uint yrow = (p.y_off >> 2) + i * p.D;
    uint n_vis = p.Tk;
    if (p.causal != 0u) {
        int last = int(t) + p.q_offset;
        n_vis = last < 0 ? 0u : min(uint(last) + 1u, p.Tk);
    }
    if (n_vis == 0u) {
        for (uint d = tid; d < p.D; d += WG)
            Y[yrow + d] = 0u;
        return;
    }
    uint qrow = p.q_off + t * p.q_nb1 + h * p.q_nb2 + b * p.q_nb3;
    for (uint d = tid; d < p.D; d += WG)
        qs[d] = A_f32(qrow + d * p.q_nb0);
    float acc[4] = float[4](0.0, 0.0, 0.0, 0.0);
    float mx = uintBitsToFloat(0xff800000u), sum = 0.0;
    barrier();
    for (uint j0 = 0u; j0 < n_vis; j0 += WG) {
        uint j = j0 + tid;
        float s = uintBitsToFloat(0xff800000u);
        if (j < n_vis) {
            uint krow = p.k_off + kv_row(j) * p.k_nb1 + hk * p.k_nb2 + b * p.k_nb3;
            float dot = 0.0;
            for (uint d = 0u; d < p.D; d++)
                dot += qs[d] * B_elem(p.kt, krow, d, p.k_nb0);
            s = p.scale * dot;
        }
        // tile max and sum (wg_max / wg_sum: subgroup or shared-memory tree)
        float mnew = max(mx, wg_max(s));
        float w = j < n_vis ? exp(s - mnew) : 0.0;
        sc[tid] = w;
        float wsum = wg_sum(w); // its barriers also publish sc[]
        float corr = exp(mx - mnew); // 0 on the first tile (mx = -inf)
        sum = sum * corr + wsum;
        uint nj = min(uint(WG), n_vis - j0);
        for (uint c = 0u; c < 4u; c++) {
            uint d = tid + c * WG;
            if (d >= p.D) break;
            float a = acc[c] * corr;
            for (uint jj = 0u; jj < nj; jj++) {
                uint vrow = p.v_off + kv_row(j0 + jj) * p.v_nb1 + hk * p.v_nb2 + b * p.v_nb3;
                a += sc[jj] * C_elem(p.vt, vrow, d, p.v_nb0);
            }
            acc[c] = a;
        }
        mx = mnew;
        barrier();
    }
    for (uint c = 0u; c < 4u; c++) {
        uint d = tid + c * WG;
        if (d < p.D) Y[yrow + d] = floatBitsToUint(acc[c] / sum);
    }
}
