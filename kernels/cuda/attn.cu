/* kernels/cuda/attn.cu - fused attention, FlashAttention-2 style online
 * softmax without the T x T matrix.
 *
 * This is the correct-first warp-level version, NOT a tensor-core kernel:
 * one warp per query row (h, t, b), keys in chunks of 32 (lane j scores key
 * j of the chunk with a full D-long dot product against q in shared memory),
 * then the running max / sum are updated once per chunk and every lane
 * accumulates its D/32 output dims from the chunk's V rows (coalesced).
 * GQA: query head h reads KV head h / (Hq/Hkv). Causal: query t sees keys
 * j <= t + q_offset; a fully masked row is zeros (as kernels/ref defines).
 * K/V f32 or f16, any strides; D <= LC_FA_DMAX (the backend checks).
 * Left for later (docs/adr/0010): mma/WMMA tiles over several query rows and
 * a split-KV decode kernel for long contexts. */
#include "kernels/cuda/common.cuh"

#define LC_FA_WARPS    4
#define LC_FA_DMAX     256
#define LC_FA_PER_LANE (LC_FA_DMAX / LOOM_WARP)

static __global__ void lc_flash_attn_k(lc_tensor out, lc_tensor q, lc_tensor k, lc_tensor v,
                                       float scale, int causal, int q_offset) {
    __shared__ float qs[LC_FA_WARPS][LC_FA_DMAX];
    const int warp = threadIdx.x / LOOM_WARP, lane = threadIdx.x % LOOM_WARP;
    const int64_t D = q.ne[0], Tq = q.ne[1], Hq = q.ne[2], B = q.ne[3];
    const int64_t Tk = k.ne[1], group = Hq / k.ne[2];
    const int64_t r = (int64_t)blockIdx.x * LC_FA_WARPS + warp;
    if (r >= Hq * Tq * B) return; /* whole warp; no block-wide sync below */
    const int64_t h = r % Hq, t = (r / Hq) % Tq, b = r / (Hq * Tq), hk = h / group;

    int64_t n_vis = Tk;
    if (causal) {
        const int64_t last = t + q_offset;
        n_vis = last < 0 ? 0 : (last + 1 < Tk ? last + 1 : Tk);
    }
    for (int64_t d = lane; d < D; d += LOOM_WARP)
        qs[warp][d] = lc_get(q, d, t, h, b);
    LOOM_SYNCWARP();

    float acc[LC_FA_PER_LANE];
#pragma unroll
    for (int i = 0; i < LC_FA_PER_LANE; i++)
        acc[i] = 0.0f;
    float m = -INFINITY, l = 0.0f;

    for (int64_t j0 = 0; j0 < n_vis; j0 += LOOM_WARP) {
        const int cnt = (int)(n_vis - j0 < LOOM_WARP ? n_vis - j0 : LOOM_WARP);
        float s = -INFINITY;
        if (lane < cnt) {
            float dot = 0.0f;
            for (int64_t d = 0; d < D; d++)
                dot += qs[warp][d] * lc_get(k, d, j0 + lane, hk, b);
            s = scale * dot;
        }
        const float m_new = fmaxf(m, lc_warp_max(s));
        const float corr = expf(m - m_new); /* m = -inf at first: 0 */
        const float p = lane < cnt ? expf(s - m_new) : 0.0f;
        l = l * corr + lc_warp_sum(p);
#pragma unroll
        for (int i = 0; i < LC_FA_PER_LANE; i++)
            acc[i] *= corr;
        for (int jj = 0; jj < cnt; jj++) {
            const float pj = LOOM_SHFL(p, jj, LOOM_WARP);
#pragma unroll
            for (int i = 0; i < LC_FA_PER_LANE; i++) {
                const int64_t d = lane + (int64_t)i * LOOM_WARP;
                if (d < D) acc[i] += pj * lc_get(v, d, j0 + jj, hk, b);
            }
        }
        m = m_new;
    }
    const float inv = n_vis > 0 ? 1.0f / l : 0.0f;
#pragma unroll
    for (int i = 0; i < LC_FA_PER_LANE; i++) {
        const int64_t d = lane + (int64_t)i * LOOM_WARP;
        if (d < D) *lc_outp(out, d, h, t, b) = n_vis > 0 ? acc[i] * inv : 0.0f;
    }
}

extern "C" int lc_flash_attn(void *stream, float scale, int causal, int q_offset, lc_tensor out,
                             lc_tensor q, lc_tensor k, lc_tensor v) {
    const int64_t rows = q.ne[1] * q.ne[2] * q.ne[3];
    if (rows == 0 || q.ne[0] == 0) return 0;
    if (q.ne[0] > LC_FA_DMAX) return (int)cudaErrorInvalidValue;
    const int64_t g = (rows + LC_FA_WARPS - 1) / LC_FA_WARPS;
    if (g > 0x7fffffff) return (int)cudaErrorInvalidValue;
    lc_flash_attn_k<<<(unsigned)g, LC_FA_WARPS * LOOM_WARP, 0, (cudaStream_t)stream>>>(
        out, q, k, v, scale, causal, q_offset);
    return lc_status();
}
