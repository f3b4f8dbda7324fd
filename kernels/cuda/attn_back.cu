/* kernels/cuda/attn_back.cu - FlashAttention-2's backward
 * (LOOM_OP_FLASH_ATTN_BACK; the math is in kernels/ref/ref_attn_back.c).
 * Probabilities are recomputed from the saved log-sum-exp, never stored.
 * One warp per unit, like the forward's general warp kernel:
 *  - STATS / DQ: a query row (t, h, b); keys in tiles of 32, one per lane
 *    (its score from the row of q in shared memory). STATS keeps the
 *    running max/sum and Delta = dO . o; DQ forms dS of its key and the warp
 *    accumulates dq over the tile (lane owns dims lane, lane + 32, ...).
 *  - DKV: a key row (j, hk, b); the query rows of the KV head's group that
 *    see it go in tiles of 32, one per lane (P and dS of the pair), then the
 *    warp accumulates dk and dv (no two warps write the same row: no atomics).
 * Any strides and f32/f16 K/V through lc_get; head dim up to 256. A tiled
 * tensor-core version is the next step where training on a GPU matters. */
#include "kernels/cuda/common.cuh"

#define LC_FB_WARPS    4
#define LC_FB_DMAX     256
#define LC_FB_PER_LANE (LC_FB_DMAX / LOOM_WARP)

__device__ __forceinline__ int64_t lc_fb_visible(int causal, int q_offset, int64_t t, int64_t Tk) {
    if (!causal) return Tk;
    const int64_t last = t + q_offset;
    return last < 0 ? 0 : (last + 1 < Tk ? last + 1 : Tk);
}

static __global__ void lc_fb_rows_k(int part, lc_tensor out, lc_tensor q, lc_tensor k,
                                    lc_tensor v, lc_tensor dout, lc_tensor x, float scale,
                                    int causal, int q_offset) {
    __shared__ float qs[LC_FB_WARPS][LC_FB_DMAX];
    __shared__ float ds_[LC_FB_WARPS][LC_FB_DMAX];
    const int warp = threadIdx.x / LOOM_WARP, lane = threadIdx.x % LOOM_WARP;
    const int64_t D = q.ne[0], Tq = q.ne[1], Hq = q.ne[2], B = q.ne[3];
    const int64_t Tk = k.ne[1], group = Hq / k.ne[2];
    const int64_t r = (int64_t)blockIdx.x * LC_FB_WARPS + warp;
    if (r >= Hq * Tq * B) return; /* whole warp; no block-wide sync below */
    const int64_t t = r % Tq, h = (r / Tq) % Hq, b = r / (Tq * Hq), hk = h / group;
    const int64_t n = lc_fb_visible(causal, q_offset, t, Tk);
    for (int64_t d = lane; d < D; d += LOOM_WARP) {
        qs[warp][d] = lc_get(q, d, t, h, b);
        ds_[warp][d] = lc_get(dout, d, h, t, b); /* the row of dO */
    }
    LOOM_SYNCWARP();
    float L = 0.0f, dl = 0.0f;
    if (part == 1) {
        L = lc_get(x, t, 0, h, b);
        dl = lc_get(x, t, 1, h, b);
    }
    float acc[LC_FB_PER_LANE];
#pragma unroll
    for (int i = 0; i < LC_FB_PER_LANE; i++)
        acc[i] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int64_t j0 = 0; j0 < n; j0 += LOOM_WARP) {
        const int cnt = (int)(n - j0 < LOOM_WARP ? n - j0 : LOOM_WARP);
        float s = -INFINITY, dp = 0.0f;
        if (lane < cnt) {
            float dot = 0.0f;
            for (int64_t d = 0; d < D; d++)
                dot += qs[warp][d] * lc_get(k, d, j0 + lane, hk, b);
            s = scale * dot;
            if (part == 1)
                for (int64_t d = 0; d < D; d++)
                    dp += ds_[warp][d] * lc_get(v, d, j0 + lane, hk, b);
        }
        if (part == 0) {
            const float m_new = fmaxf(m, lc_warp_max(s));
            const float p = lane < cnt ? expf(s - m_new) : 0.0f;
            l = l * expf(m - m_new) + lc_warp_sum(p);
            m = m_new;
            continue;
        }
        const float ds = lane < cnt ? expf(s - L) * (dp - dl) : 0.0f;
        for (int jj = 0; jj < cnt; jj++) {
            const float w = LOOM_SHFL(ds, jj, LOOM_WARP);
#pragma unroll
            for (int i = 0; i < LC_FB_PER_LANE; i++) {
                const int64_t d = lane + (int64_t)i * LOOM_WARP;
                if (d < D) acc[i] += w * lc_get(k, d, j0 + jj, hk, b);
            }
        }
    }
    if (part == 0) {
        float dd = 0.0f;
        for (int64_t d = lane; d < D; d += LOOM_WARP)
            dd += ds_[warp][d] * lc_get(x, d, h, t, b);
        dd = lc_warp_sum(dd);
        if (lane == 0) {
            *lc_outp(out, t, 0, h, b) = n > 0 ? m + logf(l) : 0.0f;
            *lc_outp(out, t, 1, h, b) = dd;
        }
        return;
    }
#pragma unroll
    for (int i = 0; i < LC_FB_PER_LANE; i++) {
        const int64_t d = lane + (int64_t)i * LOOM_WARP;
        if (d < D) *lc_outp(out, d, t, h, b) = scale * acc[i];
    }
}

static __global__ void lc_fb_dkv_k(lc_tensor out, lc_tensor q, lc_tensor k, lc_tensor v,
                                   lc_tensor dout, lc_tensor x, float scale, int causal,
                                   int q_offset) {
    __shared__ float ks[LC_FB_WARPS][LC_FB_DMAX];
    __shared__ float vs[LC_FB_WARPS][LC_FB_DMAX];
    const int warp = threadIdx.x / LOOM_WARP, lane = threadIdx.x % LOOM_WARP;
    const int64_t D = q.ne[0], Tq = q.ne[1], Hq = q.ne[2], B = q.ne[3];
    const int64_t Tk = k.ne[1], Hkv = k.ne[2], group = Hq / Hkv;
    const int64_t r = (int64_t)blockIdx.x * LC_FB_WARPS + warp;
    if (r >= Tk * Hkv * B) return;
    const int64_t j = r % Tk, hk = (r / Tk) % Hkv, b = r / (Tk * Hkv);
    for (int64_t d = lane; d < D; d += LOOM_WARP) {
        ks[warp][d] = lc_get(k, d, j, hk, b);
        vs[warp][d] = lc_get(v, d, j, hk, b);
    }
    LOOM_SYNCWARP();
    int64_t t0 = 0; /* first query row that sees key j: t + q_offset >= j */
    if (causal) t0 = j - q_offset > 0 ? j - q_offset : 0;
    const int64_t nt = t0 < Tq ? Tq - t0 : 0, rows = nt * group;
    float ak[LC_FB_PER_LANE], av[LC_FB_PER_LANE];
#pragma unroll
    for (int i = 0; i < LC_FB_PER_LANE; i++)
        ak[i] = av[i] = 0.0f;
    for (int64_t r0 = 0; r0 < rows; r0 += LOOM_WARP) {
        const int cnt = (int)(rows - r0 < LOOM_WARP ? rows - r0 : LOOM_WARP);
        float p = 0.0f, ds = 0.0f;
        if (lane < cnt) {
            const int64_t h = hk * group + (r0 + lane) / nt, t = t0 + (r0 + lane) % nt;
            float s = 0.0f, dp = 0.0f;
            for (int64_t d = 0; d < D; d++) {
                s += lc_get(q, d, t, h, b) * ks[warp][d];
                dp += lc_get(dout, d, h, t, b) * vs[warp][d];
            }
            p = expf(scale * s - lc_get(x, t, 0, h, b));
            ds = p * (dp - lc_get(x, t, 1, h, b));
        }
        for (int rr = 0; rr < cnt; rr++) {
            const float pr = LOOM_SHFL(p, rr, LOOM_WARP), dr = LOOM_SHFL(ds, rr, LOOM_WARP);
            const int64_t h = hk * group + (r0 + rr) / nt, t = t0 + (r0 + rr) % nt;
#pragma unroll
            for (int i = 0; i < LC_FB_PER_LANE; i++) {
                const int64_t d = lane + (int64_t)i * LOOM_WARP;
                if (d < D) {
                    ak[i] += dr * lc_get(q, d, t, h, b);
                    av[i] += pr * lc_get(dout, d, h, t, b);
                }
            }
        }
    }
#pragma unroll
    for (int i = 0; i < LC_FB_PER_LANE; i++) {
        const int64_t d = lane + (int64_t)i * LOOM_WARP;
        if (d < D) {
            *lc_outp(out, d, j, hk, b) = scale * ak[i];
            *lc_outp(out, d, j, hk, B + b) = av[i];
        }
    }
}

extern "C" int lc_flash_attn_back(void *stream, int part, float scale, int causal, int q_offset,
                                  lc_tensor out, lc_tensor q, lc_tensor k, lc_tensor v,
                                  lc_tensor dout, lc_tensor x) {
    if (q.ne[0] > LC_FB_DMAX || part < 0 || part > 2) return (int)cudaErrorInvalidValue;
    const int64_t units = part == 2 ? k.ne[1] * k.ne[2] * k.ne[3] : q.ne[1] * q.ne[2] * q.ne[3];
    if (units == 0 || q.ne[0] == 0) return 0;
    const int64_t g = (units + LC_FB_WARPS - 1) / LC_FB_WARPS;
    if (g > 0x7fffffff) return (int)cudaErrorInvalidValue;
    cudaStream_t st = (cudaStream_t)stream;
    if (part == 2)
        lc_fb_dkv_k<<<(unsigned)g, LC_FB_WARPS * LOOM_WARP, 0, st>>>(out, q, k, v, dout, x, scale,
                                                                     causal, q_offset);
    else
        lc_fb_rows_k<<<(unsigned)g, LC_FB_WARPS * LOOM_WARP, 0, st>>>(part, out, q, k, v, dout, x,
                                                                      scale, causal, q_offset);
    return lc_status();
}
