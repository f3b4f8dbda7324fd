/* kernels/cuda/moe.cu - Mixtral-style MoE routing and expert FFN on the
 * device, with no host round trip:
 *   1. lc_moe_route_k: one thread per token picks the top-k logits (ties ->
 *      lower expert index, like kernels/ref) and softmaxes them (in double);
 *      it writes the chosen expert ids and gates to device scratch.
 *   2. lc_moe_up_k: one warp per (f, token, slot): h = silu(gate_e x) * (up_e x),
 *      reading the expert id from scratch.
 *   3. lc_moe_down_k: one warp per (d, token): out = sum_slot g * down_e h.
 * Weights are read through lc_get, so every matmul weight dtype works
 * (dequantized in registers). A grouped GEMM over tokens sharing an expert is
 * the prefill optimisation left for later (docs/adr/0010). */
#include "kernels/cuda/common.cuh"

#define LC_MOE_EMAX  256
#define LC_MOE_WARPS 4

static size_t lc_align256(size_t n) {
    return (n + 255) & ~(size_t)255;
}

extern "C" size_t lc_moe_scratch_bytes(int64_t T, int64_t k, int64_t F) {
    const size_t tk = (size_t)T * (size_t)k;
    return lc_align256(tk * 4) + lc_align256(tk * 4) + lc_align256(tk * (size_t)F * 4);
}

/* dense != NULL: moe_gate (write dense [E, T] gates); else ids/gates lists. */
static __global__ void lc_moe_route_k(lc_tensor logits, int k, int32_t *ids, float *gates,
                                      lc_tensor dense) {
    const int64_t E = logits.ne[0], T = logits.ne[1] * logits.ne[2] * logits.ne[3];
    const int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (t >= T) return;
    const int64_t i1 = t % logits.ne[1], i2 = (t / logits.ne[1]) % logits.ne[2],
                  i3 = t / (logits.ne[1] * logits.ne[2]);
    uint32_t sel[LC_MOE_EMAX / 32] = {0};
    int32_t idx[LC_MOE_EMAX];
    double g[LC_MOE_EMAX];
    for (int r = 0; r < k; r++) {
        int64_t best = -1;
        float bv = 0.0f;
        for (int64_t e = 0; e < E; e++) {
            if (sel[e >> 5] & (1u << (e & 31))) continue;
            const float v = lc_get(logits, e, i1, i2, i3);
            if (best < 0 || v > bv) { /* strict '>' keeps the lowest index among equals */
                best = e;
                bv = v;
            }
        }
        sel[best >> 5] |= 1u << (best & 31);
        idx[r] = (int32_t)best;
        g[r] = bv;
    }
    const double mx = g[0];
    double sum = 0.0;
    for (int r = 0; r < k; r++) {
        g[r] = exp(g[r] - mx);
        sum += g[r];
    }
    if (dense.data) {
        for (int64_t e = 0; e < E; e++)
            *lc_outp(dense, e, i1, i2, i3) = 0.0f;
        for (int r = 0; r < k; r++)
            *lc_outp(dense, idx[r], i1, i2, i3) = (float)(g[r] / sum);
        return;
    }
    for (int r = 0; r < k; r++) {
        ids[t * k + r] = idx[r];
        gates[t * k + r] = (float)(g[r] / sum);
    }
}

static __global__ void lc_moe_up_k(lc_tensor x, lc_tensor wg, lc_tensor wu, const int32_t *ids,
                                   float *h, int k) {
    const int lane = threadIdx.x % LOOM_WARP;
    const int64_t F = wg.ne[1], Dm = x.ne[0];
    const int64_t f = (int64_t)blockIdx.x * LC_MOE_WARPS + threadIdx.x / LOOM_WARP;
    const int64_t ts = blockIdx.y; /* token * k + slot */
    if (f >= F) return;
    const int64_t t = ts / k, e = ids[ts];
    float a = 0.0f, b = 0.0f;
    for (int64_t d = lane; d < Dm; d += LOOM_WARP) {
        const float xv = lc_get(x, d, t, 0, 0);
        a += lc_get(wg, d, f, e, 0) * xv;
        b += lc_get(wu, d, f, e, 0) * xv;
    }
    a = lc_warp_sum(a);
    b = lc_warp_sum(b);
    if (lane == 0) h[ts * F + f] = a / (1.0f + expf(-a)) * b;
}

static __global__ void lc_moe_down_k(lc_tensor out, lc_tensor wd, const int32_t *ids,
                                     const float *gates, const float *h, int k) {
    const int lane = threadIdx.x % LOOM_WARP;
    const int64_t F = wd.ne[0], Dm = wd.ne[1];
    const int64_t d = (int64_t)blockIdx.x * LC_MOE_WARPS + threadIdx.x / LOOM_WARP;
    const int64_t t = blockIdx.y;
    if (d >= Dm) return;
    float y = 0.0f;
    for (int r = 0; r < k; r++) {
        const int64_t ts = t * k + r, e = ids[ts];
        const float *hr = h + ts * F;
        float s = 0.0f;
        for (int64_t f = lane; f < F; f += LOOM_WARP)
            s += lc_get(wd, f, d, e, 0) * hr[f];
        y += gates[ts] * lc_warp_sum(s);
    }
    if (lane == 0) *lc_outp(out, d, t, 0, 0) = y;
}

extern "C" int lc_moe(void *stream, int top_k, lc_tensor out, lc_tensor x, lc_tensor logits,
                      lc_tensor gate, lc_tensor up, lc_tensor down, void *scratch) {
    const int64_t T = x.ne[1], F = gate.ne[1], Dm = x.ne[0];
    if (T == 0 || Dm == 0) return 0;
    if (logits.ne[0] > LC_MOE_EMAX || top_k < 1 || top_k > logits.ne[0] || T * top_k > 65535 ||
        T > 65535)
        return (int)cudaErrorInvalidValue;
    cudaStream_t st = (cudaStream_t)stream;
    const size_t tk = (size_t)T * (size_t)top_k;
    int32_t *ids = (int32_t *)scratch;
    float *gates = (float *)((char *)scratch + lc_align256(tk * 4));
    float *h = (float *)((char *)scratch + 2 * lc_align256(tk * 4));
    lc_tensor none = {};
    lc_moe_route_k<<<lc_blocks(T, 64), 64, 0, st>>>(logits, top_k, ids, gates, none);
    if (F > 0) {
        const dim3 gu((unsigned)((F + LC_MOE_WARPS - 1) / LC_MOE_WARPS), (unsigned)tk);
        lc_moe_up_k<<<gu, LC_MOE_WARPS * LOOM_WARP, 0, st>>>(x, gate, up, ids, h, top_k);
    }
    const dim3 gd((unsigned)((Dm + LC_MOE_WARPS - 1) / LC_MOE_WARPS), (unsigned)T);
    lc_moe_down_k<<<gd, LC_MOE_WARPS * LOOM_WARP, 0, st>>>(out, down, ids, gates, h, top_k);
    return lc_status();
}

extern "C" int lc_moe_gate(void *stream, int top_k, lc_tensor out, lc_tensor logits) {
    const int64_t T = logits.ne[1] * logits.ne[2] * logits.ne[3];
    if (T == 0) return 0;
    if (logits.ne[0] > LC_MOE_EMAX || top_k < 1 || top_k > logits.ne[0])
        return (int)cudaErrorInvalidValue;
    lc_moe_route_k<<<lc_blocks(T, 64), 64, 0, (cudaStream_t)stream>>>(logits, top_k, NULL, NULL,
                                                                      out);
    return lc_status();
}
