// kernels/vulkan/flash_attn_back.comp - FlashAttention-2's backward
// (LOOM_OP_FLASH_ATTN_BACK; the math is in kernels/ref/ref_attn_back.c).
// One workgroup per unit, probabilities recomputed tile by tile from the
// saved log-sum-exp, never stored:
//  part 0 STATS / 1 DQ: a unit is a query row (t, h, b); keys in tiles of WG,
//    one key per invocation (its score: a dot over D from shared q). STATS
//    keeps the running max/sum (wg_max / wg_sum) and Delta = dO . o; DQ forms
//    dS of its key, publishes it in shared memory, then each invocation
//    accumulates dq dims d = tid, tid + WG, ... over the tile.
//  part 2 DKV: a unit is a key row (j, hk, b); the query rows of the KV
//    head's group that see it go in tiles of WG, one per invocation (P and
//    dS of the pair), then each invocation accumulates its dk/dv dims.
// Bindings: 0 out, 1 q, 2 k, 3 v, 5 dout, 6 stats (DQ/DKV) or o (STATS).
// Rows of every tensor are contiguous in D (nb0 = element size); other
// strides are free. Head dim up to 256 (4 dims per invocation).
#version 450
#define WG 64
#define LOOM_WG_REDUCE
layout(local_size_x = WG) in;
#include "common.glsl"

layout(std430, set = 0, binding = 5) readonly buffer Src3 { uint E[]; };
layout(std430, set = 0, binding = 6) readonly buffer Src4 { uint F[]; };

layout(push_constant) uniform PC {
    uint D, Tq, Hq, Bn, Tk, group, part, causal;
    int q_offset;
    float scale;
    uint kvt, y_off;
    uint q_off, q_nb1, q_nb2, q_nb3;
    uint k_off, k_nb1, k_nb2, k_nb3;
    uint v_off, v_nb1, v_nb2, v_nb3;
    uint e_off, e_nb1, e_nb2, e_nb3;
    uint f_off, f_nb1, f_nb2, f_nb3;
} p;

shared float sa[256]; // q row (STATS/DQ) or k row (DKV)
shared float sb[256]; // dO row (DQ) or v row (DKV)
shared float sp[WG];  // P of the tile
shared float sd[WG];  // dS of the tile
shared uint sr[WG];   // DKV: the tile's query rows (h * Tq + t)

uint vis(uint t) { // keys [0, n) visible to query row t
    if (p.causal == 0u) return p.Tk;
    int last = int(t) + p.q_offset;
    return last < 0 ? 0u : min(uint(last) + 1u, p.Tk);
}
uint esz() { return p.kvt == T_F16 ? 2u : 4u; }
float qv(uint t, uint h, uint b, uint d) {
    return A_f32(p.q_off + t * p.q_nb1 + h * p.q_nb2 + b * p.q_nb3 + 4u * d);
}
float kv(uint j, uint hk, uint b, uint d) {
    return B_elem(p.kvt, p.k_off + j * p.k_nb1 + hk * p.k_nb2 + b * p.k_nb3, d, esz());
}
float vv(uint j, uint hk, uint b, uint d) {
    return C_elem(p.kvt, p.v_off + j * p.v_nb1 + hk * p.v_nb2 + b * p.v_nb3, d, esz());
}
float dov(uint h, uint t, uint b, uint d) { // dout is [D, Hq, Tq, B]
    return uintBitsToFloat(E[(p.e_off + h * p.e_nb1 + t * p.e_nb2 + b * p.e_nb3 + 4u * d) >> 2]);
}
float ov(uint h, uint t, uint b, uint d) { // STATS: o, shaped as dout
    return uintBitsToFloat(F[(p.f_off + h * p.f_nb1 + t * p.f_nb2 + b * p.f_nb3 + 4u * d) >> 2]);
}
float stat(uint t, uint row, uint h, uint b) { // stats [Tq, 2, Hq, B]
    return uintBitsToFloat(F[(p.f_off + 4u * t + row * p.f_nb1 + h * p.f_nb2 + b * p.f_nb3) >> 2]);
}
void put(uint idx, float x) { Y[(p.y_off >> 2) + idx] = floatBitsToUint(x); }

void stats_dq(uint i, uint tid) {
    uint t = i % p.Tq, h = (i / p.Tq) % p.Hq, b = i / (p.Tq * p.Hq);
    uint hk = h / p.group, n = vis(t);
    for (uint d = tid; d < p.D; d += WG) {
        sa[d] = qv(t, h, b, d);
        sb[d] = dov(h, t, b, d);
    }
    float L = 0.0, dl = 0.0;
    if (p.part == 1u) {
        L = stat(t, 0u, h, b);
        dl = stat(t, 1u, h, b);
    }
    float acc[4] = float[4](0.0, 0.0, 0.0, 0.0);
    float mx = uintBitsToFloat(0xff800000u), sum = 0.0;
    barrier();
    for (uint j0 = 0u; j0 < n; j0 += WG) {
        uint j = j0 + tid;
        float s = uintBitsToFloat(0xff800000u);
        float dp = 0.0;
        if (j < n) {
            float dot = 0.0;
            for (uint d = 0u; d < p.D; d++)
                dot += sa[d] * kv(j, hk, b, d);
            s = p.scale * dot;
            if (p.part == 1u)
                for (uint d = 0u; d < p.D; d++)
                    dp += sb[d] * vv(j, hk, b, d);
        }
        if (p.part == 0u) {
            float mnew = max(mx, wg_max(s));
            float w = j < n ? exp(s - mnew) : 0.0;
            sum = sum * exp(mx - mnew) + wg_sum(w);
            mx = mnew;
            continue;
        }
        float pj = j < n ? exp(s - L) : 0.0;
        sd[tid] = pj * (dp - dl);
        barrier();
        uint nj = min(uint(WG), n - j0);
        for (uint c = 0u; c < 4u; c++) {
            uint d = tid + c * WG;
            if (d >= p.D) break;
            float a = acc[c];
            for (uint jj = 0u; jj < nj; jj++)
                a += sd[jj] * kv(j0 + jj, hk, b, d);
            acc[c] = a;
        }
        barrier();
    }
    if (p.part == 0u) {
        float part_dl = 0.0;
        for (uint d = tid; d < p.D; d += WG)
            part_dl += sb[d] * ov(h, t, b, d);
        float delta = wg_sum(part_dl);
        if (tid == 0u) {
            uint base = t + 2u * p.Tq * (h + p.Hq * b);
            put(base, n > 0u ? mx + log(sum) : 0.0);
            put(base + p.Tq, delta);
        }
        return;
    }
    uint orow = ((b * p.Hq + h) * p.Tq + t) * p.D; // dq is q's shape [D, Tq, Hq, B]
    for (uint c = 0u; c < 4u; c++) {
        uint d = tid + c * WG;
        if (d < p.D) put(orow + d, p.scale * acc[c]);
    }
}

void dkv(uint i, uint tid) {
    uint Hkv = p.Hq / p.group;
    uint j = i % p.Tk, hk = (i / p.Tk) % Hkv, b = i / (p.Tk * Hkv);
    for (uint d = tid; d < p.D; d += WG) {
        sa[d] = kv(j, hk, b, d);
        sb[d] = vv(j, hk, b, d);
    }
    // query rows t that see key j: t + q_offset >= j
    uint t0 = 0u;
    if (p.causal != 0u) t0 = uint(max(int(j) - p.q_offset, 0));
    uint nt = t0 < p.Tq ? p.Tq - t0 : 0u, rows = nt * p.group;
    float ak[4] = float[4](0.0, 0.0, 0.0, 0.0), av[4] = float[4](0.0, 0.0, 0.0, 0.0);
    barrier();
    for (uint r0 = 0u; r0 < rows; r0 += WG) {
        uint r = r0 + tid;
        float pv = 0.0, ds = 0.0;
        uint h = 0u, t = 0u;
        if (r < rows) {
            h = hk * p.group + r / nt;
            t = t0 + r % nt;
            float s = 0.0, dp = 0.0;
            for (uint d = 0u; d < p.D; d++) {
                s += qv(t, h, b, d) * sa[d];
                dp += dov(h, t, b, d) * sb[d];
            }
            pv = exp(p.scale * s - stat(t, 0u, h, b));
            ds = pv * (dp - stat(t, 1u, h, b));
        }
        sp[tid] = pv;
        sd[tid] = ds;
        sr[tid] = h * p.Tq + t;
        barrier();
        uint nr = min(uint(WG), rows - r0);
        for (uint c = 0u; c < 4u; c++) {
            uint d = tid + c * WG;
            if (d >= p.D) break;
            float a = ak[c], e = av[c];
            for (uint rr = 0u; rr < nr; rr++) {
                uint hh = sr[rr] / p.Tq, tt = sr[rr] % p.Tq;
                a += sd[rr] * qv(tt, hh, b, d);
                e += sp[rr] * dov(hh, tt, b, d);
            }
            ak[c] = a;
            av[c] = e;
        }
        barrier();
    }
    uint krow = ((b * Hkv + hk) * p.Tk + j) * p.D;          // dk: batch b
    uint vrow = (((p.Bn + b) * Hkv + hk) * p.Tk + j) * p.D; // dv: batch Bn + b
    for (uint c = 0u; c < 4u; c++) {
        uint d = tid + c * WG;
        if (d < p.D) {
            put(krow + d, p.scale * ak[c]);
            put(vrow + d, av[c]);
        }
    }
}

void main() {
    uint i = flat_group();
    uint n = p.part == 2u ? p.Tk * (p.Hq / p.group) * p.Bn : p.Tq * p.Hq * p.Bn;
    if (i >= n) return; // uniform per workgroup
    if (p.part == 2u)
        dkv(i, gl_LocalInvocationID.x);
    else
        stats_dq(i, gl_LocalInvocationID.x);
}
