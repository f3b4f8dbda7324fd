/* kernels/cuda/attn.cu - fused attention, FlashAttention-2 style online
 * softmax without the T x T matrix. Three kernels (docs/adr/0010, "Flash
 * attention"), chosen per call by lc_fa_plan_make (LOOM_CUDA_FA overrides):
 *
 *  - tiled f32 (lc_fa_tiled_k): a block of BR query rows x key tiles of BK
 *    in shared memory (K, then V, converted to f32 once), scores by FMA,
 *    online softmax per row, O += P V. The rows of a block are (query t,
 *    head h) pairs that share one KV head (GQA: K/V are read once for all
 *    `group` heads). With a key split (grid.y) each block writes its partial
 *    (m, l, unnormalized O) to scratch and lc_fa_combine_k merges them: this
 *    is the split-KV decode kernel (BR 4..16, many key splits) and also the
 *    prefill kernel for f32 K/V, HIP and the CPU emulation (BR 32).
 *  - tensor cores (lc_fa_mma_k, CUDA sm_80+ only, f16 K/V, D 64/128): 64
 *    query rows per block (16 per warp), K/V tiles of 64 keys in shared
 *    memory as f16, S = Q K^T and O += P V with mma.sync m16n8k16 (f16 in,
 *    f32 accumulate), P kept in registers (the FA2 register layout), Q
 *    pre-scaled by scale*log2(e) and rounded to f16 once, exp2 softmax.
 *    Same block geometry, masking and split/combine as the tiled kernel.
 *  - the warp kernel (lc_fa_warp_k): one warp per query row; the general
 *    fallback (D other than 64/128, grid limits, LOOM_CUDA_FA=warp).
 *
 * GQA: query head h reads KV head h / (Hq/Hkv). Causal: query t sees keys
 * j <= t + q_offset; a fully masked row is zeros (as kernels/ref defines).
 * K/V f32 or f16 with any strides (16-byte vector loads when the rows are
 * contiguous and aligned, lc_get otherwise). Output rows out(:, h, t, b). */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/common.cuh"

/* mma.sync / ldmatrix PTX: CUDA sm_80+ (the build's targets). The CPU
 * emulation runs the same kernel with the two instructions emulated from
 * their PTX fragment layouts (below); HIP uses the tiled f32 kernel. */
#if !defined(LOOM_USE_HIP)
#define LC_FA_MMA 1
#else
#define LC_FA_MMA 0
#endif

#if defined(LOOM_EMU)
struct lc_fa_u4 {
    uint32_t x, y, z, w;
};
struct lc_fa_f4 {
    float x, y, z, w;
};
#else
typedef uint4 lc_fa_u4;
typedef float4 lc_fa_f4;
#endif

#define LC_FA_WARPS    4
#define LC_FA_DMAX     256
#define LC_FA_PER_LANE (LC_FA_DMAX / LOOM_WARP)
#define LC_FA_NT       128 /* threads per block of the tiled kernels */

/* ---------------- warp kernel (general fallback) ---------------- */

/* Pool row of logical key j through a paged sequence's block table
 * (docs/adr/0035), clamped to the pool; j itself when tbl is NULL. */
__device__ __forceinline__ int64_t lc_fa_row(const int32_t *tbl, int bsz, int64_t rows, int64_t j) {
    if (!tbl) return j;
    int64_t r = (int64_t)tbl[j / bsz] * bsz + j % bsz;
    return r < 0 ? 0 : r >= rows ? rows - 1 : r;
}

static __global__ void lc_fa_warp_k(lc_tensor out, lc_tensor q, lc_tensor k, lc_tensor v,
                                    float scale, int causal, int q_offset,
                                    const int32_t *tbl = 0, int bsz = 0) {
    __shared__ float qs[LC_FA_WARPS][LC_FA_DMAX];
    const int warp = threadIdx.x / LOOM_WARP, lane = threadIdx.x % LOOM_WARP;
    const int64_t D = q.ne[0], Tq = q.ne[1], Hq = q.ne[2], B = q.ne[3];
    /* Paged: the keys are q_offset + Tq rows of the pool through tbl. */
    const int64_t Tk = tbl ? (int64_t)q_offset + Tq : k.ne[1], group = Hq / k.ne[2];
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
                dot += qs[warp][d] * lc_get(k, d, lc_fa_row(tbl, bsz, k.ne[1], j0 + lane), hk, b);
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
                if (d < D) acc[i] += pj * lc_get(v, d, lc_fa_row(tbl, bsz, v.ne[1], j0 + jj), hk, b);
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

/* ---------------- shared pieces of the tiled kernels ---------------- */

__device__ __forceinline__ int64_t lc_fa_min64(int64_t a, int64_t b) {
    return a < b ? a : b;
}

/* What one block of the tiled kernels works on. Grid: x = row block
 * (reversed, so the causal blocks with the most keys start first), y = key
 * split, z = hk + Hkv * b. Rows rr of the (hk, b) row space (Tq * group of
 * them) are query t = rr / group of head hk * group + rr % group. */
struct lc_fa_block {
    int64_t Tq, Hq, Tk, group, hk, b, r0, ks, ke;
    int nrows; /* valid rows of the block (<= BR) */
};

__device__ __forceinline__ lc_fa_block lc_fa_block_get(const lc_tensor &q, const lc_tensor &k,
                                                       int br, int causal, int q_offset,
                                                       int64_t split_keys) {
    lc_fa_block g;
    g.Tq = q.ne[1];
    g.Hq = q.ne[2];
    g.Tk = k.ne[1];
    const int64_t Hkv = k.ne[2];
    g.group = g.Hq / Hkv;
    g.hk = blockIdx.z % Hkv;
    g.b = blockIdx.z / Hkv;
    const int64_t NR = g.Tq * g.group;
    g.r0 = (int64_t)(gridDim.x - 1 - blockIdx.x) * br;
    g.nrows = (int)lc_fa_min64(br, NR - g.r0);
    /* Keys any row of the block can see: those of its last query. */
    int64_t kend = g.Tk;
    if (causal) {
        const int64_t last = (g.r0 + g.nrows - 1) / g.group + q_offset;
        kend = last < 0 ? 0 : lc_fa_min64(last + 1, g.Tk);
    }
    g.ks = (int64_t)blockIdx.y * split_keys;
    g.ke = lc_fa_min64(g.ks + split_keys, kend);
    return g;
}

/* Row rr of the block's row space -> (t, h) and the output row index
 * R = h + Hq * (t + Tq * b) used by the split partials. */
__device__ __forceinline__ void lc_fa_row(const lc_fa_block &g, int64_t rr, int64_t &t,
                                          int64_t &h) {
    t = rr / g.group;
    h = g.hk * g.group + rr % g.group;
}

/* Partials: acc f32 [nsplit][Nrow][D], then (m, l) f32 [nsplit][Nrow][2];
 * m in natural-log units, -inf with l = 0 for a split that saw no key. */
__device__ __forceinline__ float *lc_fa_part_acc(float *part, int64_t Nrow, int64_t D, int64_t R) {
    return part + ((int64_t)blockIdx.y * Nrow + R) * D;
}
__device__ __forceinline__ float *lc_fa_part_ml(float *part, int64_t Nrow, int64_t D, int64_t R) {
    return part + (int64_t)gridDim.y * Nrow * D + ((int64_t)blockIdx.y * Nrow + R) * 2;
}

/* ---------------- tiled f32 kernel (FMA; split-KV decode) ---------------- */

template <int D_, int BR_, int BK_> struct lc_fa_cfg {
    static const int D = D_, BR = BR_, BK = BK_;
};

/* K or V rows j0 .. j0 + n - 1 of (hk, b) into dst[BK][D + 4] as f32; rows
 * n .. BK - 1 are zeros (finite: P is 0 there, and 0 * NaN would not be). */
template <int D, int BK>
__device__ __forceinline__ void lc_fa_load_f32(float (*dst)[D + 4], const lc_tensor &t, int64_t j0,
                                               int n, int64_t hk, int64_t b, int kvec) {
    const int tid = threadIdx.x;
    const char *base = t.data + j0 * t.nb[1] + hk * t.nb[2] + b * t.nb[3];
    if (kvec && t.dtype == LOOM_F16) {
        const int CPR = D / 8; /* 16-byte chunks per row */
        for (int c = tid; c < BK * CPR; c += LC_FA_NT) {
            const int row = c / CPR, ch = c % CPR;
            lc_fa_f4 lo = {0.0f, 0.0f, 0.0f, 0.0f}, hi = lo;
            if (row < n) {
                const lc_fa_u4 u = *(const lc_fa_u4 *)(base + row * t.nb[1] + ch * 16);
                lo.x = lc_f16_to_f32((uint16_t)(u.x & 0xffffu));
                lo.y = lc_f16_to_f32((uint16_t)(u.x >> 16));
                lo.z = lc_f16_to_f32((uint16_t)(u.y & 0xffffu));
                lo.w = lc_f16_to_f32((uint16_t)(u.y >> 16));
                hi.x = lc_f16_to_f32((uint16_t)(u.z & 0xffffu));
                hi.y = lc_f16_to_f32((uint16_t)(u.z >> 16));
                hi.z = lc_f16_to_f32((uint16_t)(u.w & 0xffffu));
                hi.w = lc_f16_to_f32((uint16_t)(u.w >> 16));
            }
            *(lc_fa_f4 *)&dst[row][ch * 8] = lo;
            *(lc_fa_f4 *)&dst[row][ch * 8 + 4] = hi;
        }
    } else if (kvec) { /* f32 */
        const int CPR = D / 4;
        for (int c = tid; c < BK * CPR; c += LC_FA_NT) {
            const int row = c / CPR, ch = c % CPR;
            lc_fa_f4 x = {0.0f, 0.0f, 0.0f, 0.0f};
            if (row < n) x = *(const lc_fa_f4 *)(base + row * t.nb[1] + ch * 16);
            *(lc_fa_f4 *)&dst[row][ch * 4] = x;
        }
    } else {
        for (int e = tid; e < BK * D; e += LC_FA_NT) {
            const int row = e / D, d = e % D;
            dst[row][d] = row < n ? lc_get(t, d, j0 + row, hk, b) : 0.0f;
        }
    }
}

/* 128 threads. Scores: thread (j = tid % BK, jg = tid / BK) computes key j
 * for rows jg + NJG * i. Softmax: warp w owns rows w, w + 4, ... PV: thread
 * (dg = tid % (D/4), sub = tid / (D/4)) accumulates dims 4dg..4dg+3 of rows
 * sub + NSUB * i. */
template <class C>
__global__ void __launch_bounds__(LC_FA_NT)
    lc_fa_tiled_k(lc_tensor out, lc_tensor q, lc_tensor k, lc_tensor v, float scale, int causal,
                  int q_offset, int kvec, int64_t split_keys, float *part) {
    const int D = C::D, BR = C::BR, BK = C::BK;
    const int NJG = LC_FA_NT / BK, SR = BR / NJG;                 /* score mapping */
    const int NDG = D / 4, NSUB = LC_FA_NT / NDG, PR = BR / NSUB; /* PV mapping */
    const int NW = LC_FA_NT / LOOM_WARP;
    static_assert(BR % NJG == 0 && BR % NSUB == 0 && BK % LOOM_WARP == 0, "tile shape");
    alignas(16) __shared__ float qs[BR][D + 4];
    alignas(16) __shared__ float kv[BK][D + 4]; /* K tile, then V tile */
    __shared__ float ss[BR][BK + 1];            /* scores, then P */
    __shared__ float m_s[BR], l_s[BR], c_s[BR];

    const int tid = threadIdx.x, warp = tid / LOOM_WARP, lane = tid % LOOM_WARP;
    const lc_fa_block g = lc_fa_block_get(q, k, BR, causal, q_offset, split_keys);

    for (int e = tid; e < BR * D; e += LC_FA_NT) {
        const int r = e / D, d = e % D;
        float x = 0.0f;
        if (r < g.nrows) {
            int64_t t, h;
            lc_fa_row(g, g.r0 + r, t, h);
            x = scale * lc_get(q, d, t, h, g.b);
        }
        qs[r][d] = x;
    }
    if (tid < BR) {
        m_s[tid] = -INFINITY;
        l_s[tid] = 0.0f;
    }
    /* Last visible key of each of this thread's score rows (rows past the
     * block's end see nothing). */
    const int j = tid % BK, jg = tid / BK;
    int64_t lim[SR];
#pragma unroll
    for (int i = 0; i < SR; i++) {
        const int r = jg + NJG * i;
        lim[i] = g.ke - 1;
        if (r >= g.nrows)
            lim[i] = -1;
        else if (causal)
            lim[i] = lc_fa_min64(lim[i], (g.r0 + r) / g.group + q_offset);
    }
    const int dg = tid % NDG, sub = tid / NDG;
    float acc[PR][4];
#pragma unroll
    for (int i = 0; i < PR; i++)
        acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
    __syncthreads();

    for (int64_t j0 = g.ks; j0 < g.ke; j0 += BK) {
        const int n = (int)lc_fa_min64(BK, g.ke - j0);
        lc_fa_load_f32<D, BK>(kv, k, j0, n, g.hk, g.b, kvec);
        __syncthreads();
        float s[SR];
#pragma unroll
        for (int i = 0; i < SR; i++)
            s[i] = 0.0f;
        for (int d = 0; d < D; d += 4) {
            const lc_fa_f4 kk = *(const lc_fa_f4 *)&kv[j][d];
#pragma unroll
            for (int i = 0; i < SR; i++) {
                const lc_fa_f4 qq = *(const lc_fa_f4 *)&qs[jg + NJG * i][d];
                s[i] = fmaf(qq.x, kk.x, s[i]);
                s[i] = fmaf(qq.y, kk.y, s[i]);
                s[i] = fmaf(qq.z, kk.z, s[i]);
                s[i] = fmaf(qq.w, kk.w, s[i]);
            }
        }
#pragma unroll
        for (int i = 0; i < SR; i++)
            ss[jg + NJG * i][j] = j0 + j <= lim[i] ? s[i] : -INFINITY;
        __syncthreads();
        for (int r = warp; r < BR; r += NW) {
            const float m_old = m_s[r];
            float x[BK / LOOM_WARP], mx = -INFINITY;
#pragma unroll
            for (int u = 0; u < BK / LOOM_WARP; u++) {
                x[u] = ss[r][lane + LOOM_WARP * u];
                mx = fmaxf(mx, x[u]);
            }
            const float m_new = fmaxf(m_old, lc_warp_max(mx));
            const float m_use = m_new == -INFINITY ? 0.0f : m_new; /* all masked so far */
            float sum = 0.0f;
#pragma unroll
            for (int u = 0; u < BK / LOOM_WARP; u++) {
                const float p = expf(x[u] - m_use);
                ss[r][lane + LOOM_WARP * u] = p;
                sum += p;
            }
            sum = lc_warp_sum(sum);
            if (lane == 0) {
                const float corr = expf(m_old - m_use);
                c_s[r] = corr;
                l_s[r] = l_s[r] * corr + sum;
                m_s[r] = m_new;
            }
        }
        __syncthreads(); /* P and corr ready; K no longer read */
        lc_fa_load_f32<D, BK>(kv, v, j0, n, g.hk, g.b, kvec);
        __syncthreads();
#pragma unroll
        for (int i = 0; i < PR; i++) {
            const float c = c_s[sub + NSUB * i];
            acc[i][0] *= c;
            acc[i][1] *= c;
            acc[i][2] *= c;
            acc[i][3] *= c;
        }
        for (int jj = 0; jj < n; jj++) {
            const lc_fa_f4 vv = *(const lc_fa_f4 *)&kv[jj][4 * dg];
#pragma unroll
            for (int i = 0; i < PR; i++) {
                const float p = ss[sub + NSUB * i][jj];
                acc[i][0] = fmaf(p, vv.x, acc[i][0]);
                acc[i][1] = fmaf(p, vv.y, acc[i][1]);
                acc[i][2] = fmaf(p, vv.z, acc[i][2]);
                acc[i][3] = fmaf(p, vv.w, acc[i][3]);
            }
        }
        __syncthreads(); /* before the next tile overwrites kv, ss */
    }

    const int64_t Nrow = g.Hq * g.Tq * q.ne[3];
#pragma unroll
    for (int i = 0; i < PR; i++) {
        const int r = sub + NSUB * i;
        if (r >= g.nrows) continue;
        int64_t t, h;
        lc_fa_row(g, g.r0 + r, t, h);
        if (!part) {
            const float l = l_s[r], inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
            for (int e = 0; e < 4; e++)
                *lc_outp(out, 4 * dg + e, h, t, g.b) = acc[i][e] * inv;
        } else {
            const int64_t R = h + g.Hq * (t + g.Tq * g.b);
            float *pa = lc_fa_part_acc(part, Nrow, D, R) + 4 * dg;
#pragma unroll
            for (int e = 0; e < 4; e++)
                pa[e] = acc[i][e];
            if (dg == 0) {
                float *ml = lc_fa_part_ml(part, Nrow, D, R);
                ml[0] = m_s[r];
                ml[1] = l_s[r];
            }
        }
    }
}

/* out(d, h, t, b) = sum_s acc_s e^(m_s - M) / sum_s l_s e^(m_s - M). */
static __global__ void lc_fa_combine_k(lc_tensor out, const float *part, int nsplit, int64_t D,
                                       int64_t Hq, int64_t Tq, int64_t Nrow) {
    const int64_t n = Nrow * D;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t R = e / D, d = e % D;
        const float *ml = part + (int64_t)nsplit * n;
        float M = -INFINITY;
        for (int s = 0; s < nsplit; s++)
            M = fmaxf(M, ml[((int64_t)s * Nrow + R) * 2]);
        float L = 0.0f, o = 0.0f;
        if (M != -INFINITY) {
            for (int s = 0; s < nsplit; s++) {
                const float w = expf(ml[((int64_t)s * Nrow + R) * 2] - M);
                L += w * ml[((int64_t)s * Nrow + R) * 2 + 1];
                o += w * part[((int64_t)s * Nrow + R) * D + d];
            }
        }
        const int64_t h = R % Hq, t = (R / Hq) % Tq, b = R / (Hq * Tq);
        *lc_outp(out, d, h, t, b) = L > 0.0f ? o / L : 0.0f;
    }
}

/* ---------------- tensor-core kernel (CUDA only) ---------------- */

#if LC_FA_MMA
/* D (16x8 f32) += A (16x16 f16, row) * B (16x8 f16, col). Lane = 4 g + q:
 * a0 = A[g][2q..2q+1], a1 = A[g+8][2q..], a2 = A[g][2q+8..], a3 = A[g+8][2q+8..];
 * b0 = B[2q..2q+1][g], b1 = B[2q+8..2q+9][g]; c0,c1 = C[g][2q..], c2,c3 = C[g+8][2q..]
 * (the lower k / column index in the low 16 bits).
 * ldmatrix.x4.trans: lanes 8i..8i+7 give the row addresses (8 halves each)
 * of 8x8 matrix i; register i of lane 4g + q gets rows 2q, 2q+1 of column g. */
#if !defined(LOOM_EMU)
__device__ __forceinline__ void lc_mma16816(float c[4], const uint32_t a[4], uint32_t b0,
                                            uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void lc_ldsm_x4_trans(const uint16_t *p, uint32_t r[4]) {
    const unsigned addr = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}
__device__ __forceinline__ uint32_t lc_pack_h2(float lo, float hi) {
    const __half2 h = __floats2half2_rn(lo, hi); /* .x (low 16 bits) = lo */
    return *(const uint32_t *)&h;
}
/* 16 bytes global -> shared without a register round trip; src_bytes 0
 * writes zeros (sm_80+). */
__device__ __forceinline__ void lc_cp_async16(void *dst, const void *src, int src_bytes) {
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src),
                 "r"(src_bytes)
                 : "memory");
}
__device__ __forceinline__ void lc_cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void lc_cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
#else
/* Emulation (tests only): the warp's fragments meet in a per-warp buffer and
 * each lane computes its outputs from the layouts above (f32 sums of exact
 * f16 products, as the tensor cores accumulate). */
static uint32_t lc_emu_frag[LC_FA_NT / 32][32][6];
static const uint16_t *lc_emu_rows[LC_FA_NT / 32][32];
static inline float lc_emu_h(uint32_t w, int hi) {
    return loom_f16_to_f32((uint16_t)(hi ? w >> 16 : w & 0xffffu));
}
static inline void lc_mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    const int w = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, qd = lane & 3;
    LOOM_SYNCWARP();
    for (int i = 0; i < 4; i++)
        lc_emu_frag[w][lane][i] = a[i];
    lc_emu_frag[w][lane][4] = b0;
    lc_emu_frag[w][lane][5] = b1;
    LOOM_SYNCWARP();
    for (int ci = 0; ci < 4; ci++) {
        const int r = g + (ci >= 2 ? 8 : 0), n = 2 * qd + (ci & 1);
        float acc = c[ci];
        for (int kx = 0; kx < 16; kx++) {
            const uint32_t aw =
                lc_emu_frag[w][(r % 8) * 4 + (kx % 8) / 2][(r >= 8) + 2 * (kx >= 8)];
            const uint32_t bw = lc_emu_frag[w][n * 4 + (kx % 8) / 2][4 + (kx >= 8)];
            acc += lc_emu_h(aw, kx & 1) * lc_emu_h(bw, kx & 1);
        }
        c[ci] = acc;
    }
    LOOM_SYNCWARP();
}
static inline void lc_ldsm_x4_trans(const uint16_t *p, uint32_t r[4]) {
    const int w = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, qd = lane & 3;
    LOOM_SYNCWARP();
    lc_emu_rows[w][lane] = p;
    LOOM_SYNCWARP();
    for (int i = 0; i < 4; i++)
        r[i] = (uint32_t)lc_emu_rows[w][8 * i + 2 * qd][g] |
               (uint32_t)lc_emu_rows[w][8 * i + 2 * qd + 1][g] << 16;
    LOOM_SYNCWARP();
}
static inline uint32_t lc_pack_h2(float lo, float hi) {
    return (uint32_t)lc_f32_to_f16(lo) | (uint32_t)lc_f32_to_f16(hi) << 16;
}
static inline void lc_cp_async16(void *dst, const void *src, int src_bytes) {
    if (src_bytes)
        memcpy(dst, src, 16);
    else
        memset(dst, 0, 16);
}
static inline void lc_cp_async_commit() {}
template <int N> static inline void lc_cp_async_wait() {}
#endif
__device__ __forceinline__ uint32_t lc_ld32(const uint16_t *p) {
    return *(const uint32_t *)p;
}

/* K or V rows j0 .. j0 + n - 1 (n >= 1) into dst[64][D + 8] as f16 (both
 * f16 here), rows n .. 63 zeros. Contiguous rows: cp.async, in flight until
 * lc_cp_async_wait (the caller commits); else plain loads and stores. */
template <int D>
__device__ __forceinline__ void lc_fa_load_h(uint16_t (*dst)[D + 8], const lc_tensor &t, int64_t j0,
                                             int n, int64_t hk, int64_t b, int kvec) {
    const int tid = threadIdx.x;
    if (kvec) {
        const char *base = t.data + j0 * t.nb[1] + hk * t.nb[2] + b * t.nb[3];
        const int CPR = D / 8;
        for (int c = tid; c < 64 * CPR; c += LC_FA_NT) {
            const int row = c / CPR, ch = c % CPR;
            const bool in = row < n;
            lc_cp_async16(&dst[row][ch * 8], in ? base + row * t.nb[1] + ch * 16 : base,
                          in ? 16 : 0);
        }
    } else {
        for (int e = tid; e < 64 * D; e += LC_FA_NT) {
            const int row = e / D, d = e % D;
            dst[row][d] = row < n ? lc_f32_to_f16(lc_get(t, d, j0 + row, hk, b)) : (uint16_t)0;
        }
    }
}

/* 4 warps x 16 query rows, key tiles of 64. Per warp and tile: S (16 x 64)
 * in s[8][4] (n-tile nt = keys 8nt..8nt+7, C layout above), P repacked as
 * the A operand of O += P V without leaving registers; V's B fragments by
 * ldmatrix.trans (thread gets V[j0+2q..2q+1][d0+g]). Shared rows are padded
 * to D + 8 halves: the 32-bit fragment loads and ldmatrix rows hit 32
 * different banks. */
template <int D>
__global__ void __launch_bounds__(LC_FA_NT)
    lc_fa_mma_k(lc_tensor out, lc_tensor q, lc_tensor k, lc_tensor v, float qscale, int causal,
                int q_offset, int kvec, int64_t split_keys, float *part) {
    const int BR = 64, BK = 64, NKS = D / 16, NDT = D / 8;
    alignas(16) __shared__ uint16_t ks[BK][D + 8]; /* K tile (Q staging first) */
    alignas(16) __shared__ uint16_t vs[BK][D + 8];
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, gq = lane >> 2, qd = lane & 3;
    const lc_fa_block g = lc_fa_block_get(q, k, BR, causal, q_offset, split_keys);

    /* Q rows (scaled by scale * log2 e) -> f16 -> A fragments. */
    for (int e = tid; e < BR * D; e += LC_FA_NT) {
        const int r = e / D, d = e % D;
        float x = 0.0f;
        if (r < g.nrows) {
            int64_t t, h;
            lc_fa_row(g, g.r0 + r, t, h);
            x = qscale * lc_get(q, d, t, h, g.b);
        }
        ks[r][d] = lc_f32_to_f16(x);
    }
    __syncthreads();
    uint32_t qa[NKS][4];
    const int ra = warp * 16 + gq; /* this thread's rows: ra and ra + 8 */
#pragma unroll
    for (int kk = 0; kk < NKS; kk++) {
        qa[kk][0] = lc_ld32(&ks[ra][kk * 16 + 2 * qd]);
        qa[kk][1] = lc_ld32(&ks[ra + 8][kk * 16 + 2 * qd]);
        qa[kk][2] = lc_ld32(&ks[ra][kk * 16 + 8 + 2 * qd]);
        qa[kk][3] = lc_ld32(&ks[ra + 8][kk * 16 + 8 + 2 * qd]);
    }
    int64_t lim0 = g.ke - 1, lim1 = g.ke - 1; /* last visible key of rows ra, ra + 8 */
    if (causal) {
        lim0 = lc_fa_min64(lim0, (g.r0 + ra) / g.group + q_offset);
        lim1 = lc_fa_min64(lim1, (g.r0 + ra + 8) / g.group + q_offset);
    }
    const int64_t lim_min = causal ? g.r0 / g.group + q_offset : INT64_MAX;

    float o[NDT][4];
#pragma unroll
    for (int dt = 0; dt < NDT; dt++)
        o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

    /* Pipeline (FA2): K(j+1) loads during softmax and P V of tile j, V(j)
     * during S = Q K(j)^T. */
    __syncthreads(); /* Q staging no longer read */
    if (g.ks < g.ke)
        lc_fa_load_h<D>(ks, k, g.ks, (int)lc_fa_min64(BK, g.ke - g.ks), g.hk, g.b, kvec);
    lc_cp_async_commit();
    for (int64_t j0 = g.ks; j0 < g.ke; j0 += BK) {
        const int n = (int)lc_fa_min64(BK, g.ke - j0);
        const bool more = j0 + BK < g.ke;
        __syncthreads(); /* P V of the previous tile no longer reads vs */
        lc_fa_load_h<D>(vs, v, j0, n, g.hk, g.b, kvec);
        lc_cp_async_commit();
        lc_cp_async_wait<1>(); /* K(j) landed (V(j) may be in flight) */
        __syncthreads();

        float s[BK / 8][4];
#pragma unroll
        for (int nt = 0; nt < BK / 8; nt++)
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < NKS; kk++)
#pragma unroll
            for (int nt = 0; nt < BK / 8; nt++)
                lc_mma16816(s[nt], qa[kk], lc_ld32(&ks[nt * 8 + gq][kk * 16 + 2 * qd]),
                            lc_ld32(&ks[nt * 8 + gq][kk * 16 + 8 + 2 * qd]));
        __syncthreads(); /* every warp is done with ks: prefetch K(j+1) */
        if (more) {
            lc_fa_load_h<D>(ks, k, j0 + BK, (int)lc_fa_min64(BK, g.ke - j0 - BK), g.hk, g.b, kvec);
            lc_cp_async_commit();
        }

        if (j0 + BK > g.ke || j0 + BK - 1 > lim_min) { /* tile crosses a row's limit */
#pragma unroll
            for (int nt = 0; nt < BK / 8; nt++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int64_t key = j0 + nt * 8 + 2 * qd + e;
                    if (key > lim0) s[nt][e] = -INFINITY;
                    if (key > lim1) s[nt][2 + e] = -INFINITY;
                }
        }
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < BK / 8; nt++) {
            mx0 = fmaxf(mx0, fmaxf(s[nt][0], s[nt][1]));
            mx1 = fmaxf(mx1, fmaxf(s[nt][2], s[nt][3]));
        }
        /* the 4 lanes of a quad hold one row */
        mx0 = fmaxf(mx0, LOOM_SHFL_XOR(mx0, 1, LOOM_WARP));
        mx0 = fmaxf(mx0, LOOM_SHFL_XOR(mx0, 2, LOOM_WARP));
        mx1 = fmaxf(mx1, LOOM_SHFL_XOR(mx1, 1, LOOM_WARP));
        mx1 = fmaxf(mx1, LOOM_SHFL_XOR(mx1, 2, LOOM_WARP));
        const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
        const float mu0 = mn0 == -INFINITY ? 0.0f : mn0, mu1 = mn1 == -INFINITY ? 0.0f : mn1;
        const float c0 = exp2f(m0 - mu0), c1 = exp2f(m1 - mu1);
        m0 = mn0;
        m1 = mn1;
        float rs0 = 0.0f, rs1 = 0.0f;
#pragma unroll
        for (int nt = 0; nt < BK / 8; nt++) {
            s[nt][0] = exp2f(s[nt][0] - mu0);
            s[nt][1] = exp2f(s[nt][1] - mu0);
            s[nt][2] = exp2f(s[nt][2] - mu1);
            s[nt][3] = exp2f(s[nt][3] - mu1);
            rs0 += s[nt][0] + s[nt][1];
            rs1 += s[nt][2] + s[nt][3];
        }
        l0 = l0 * c0 + rs0; /* per-lane partial sums; the quad is summed at the end */
        l1 = l1 * c1 + rs1;
#pragma unroll
        for (int dt = 0; dt < NDT; dt++) {
            o[dt][0] *= c0;
            o[dt][1] *= c0;
            o[dt][2] *= c1;
            o[dt][3] *= c1;
        }
        if (more)
            lc_cp_async_wait<1>(); /* V(j) landed (K(j+1) may be in flight) */
        else
            lc_cp_async_wait<0>();
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK / 16; kk++) {
            const uint32_t pa[4] = {lc_pack_h2(s[2 * kk][0], s[2 * kk][1]),
                                    lc_pack_h2(s[2 * kk][2], s[2 * kk][3]),
                                    lc_pack_h2(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                    lc_pack_h2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
            /* ldmatrix x4: lanes 8i..8i+7 address matrix i = (keys +8 if i&1,
             * dims +8 if i&2): r0, r1 = b0, b1 of dims dt*8, r2, r3 of dt*8+8. */
            const int vrow = kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
#pragma unroll
            for (int dt = 0; dt < NDT; dt += 2) {
                uint32_t vb[4];
                lc_ldsm_x4_trans(&vs[vrow][dt * 8 + (lane >> 4) * 8], vb);
                lc_mma16816(o[dt], pa, vb[0], vb[1]);
                lc_mma16816(o[dt + 1], pa, vb[2], vb[3]);
            }
        }
    }

    l0 += LOOM_SHFL_XOR(l0, 1, LOOM_WARP);
    l0 += LOOM_SHFL_XOR(l0, 2, LOOM_WARP);
    l1 += LOOM_SHFL_XOR(l1, 1, LOOM_WARP);
    l1 += LOOM_SHFL_XOR(l1, 2, LOOM_WARP);
    const int64_t Nrow = g.Hq * g.Tq * q.ne[3];
#pragma unroll
    for (int half = 0; half < 2; half++) {
        const int r = ra + 8 * half;
        if (r >= g.nrows) continue;
        int64_t t, h;
        lc_fa_row(g, g.r0 + r, t, h);
        const float l = half ? l1 : l0, m = half ? m1 : m0;
        if (!part) {
            const float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
            for (int dt = 0; dt < NDT; dt++) {
                *lc_outp(out, dt * 8 + 2 * qd, h, t, g.b) = o[dt][2 * half] * inv;
                *lc_outp(out, dt * 8 + 2 * qd + 1, h, t, g.b) = o[dt][2 * half + 1] * inv;
            }
        } else {
            const int64_t R = h + g.Hq * (t + g.Tq * g.b);
            float *pa = lc_fa_part_acc(part, Nrow, D, R);
#pragma unroll
            for (int dt = 0; dt < NDT; dt++) {
                pa[dt * 8 + 2 * qd] = o[dt][2 * half];
                pa[dt * 8 + 2 * qd + 1] = o[dt][2 * half + 1];
            }
            if (qd == 0) {
                float *ml = lc_fa_part_ml(part, Nrow, D, R);
                ml[0] = m * 0.6931471805599453f; /* log2 units -> natural */
                ml[1] = l;
            }
        }
    }
}
#endif

/* ---------------- host: plan and launch ---------------- */

enum { LC_FA_AUTO, LC_FA_WARP, LC_FA_TILED, LC_FA_SPLIT, LC_FA_FMA };
enum { LC_FA_K_WARP, LC_FA_K_F32, LC_FA_K_MMA };

/* LOOM_CUDA_FA = auto (default) | warp | tiled | split | fma; read once.
 * LOOM_CUDA_FA_SPLIT_KEYS = N (tests): split every tiled call into N-key
 * splits, to exercise the partials and the combine on small shapes. */
static int64_t lc_fa_forced_split = -1;
static int lc_fa_mode(void) {
    static int mode = -1;
    if (mode < 0) {
        const char *sk = getenv("LOOM_CUDA_FA_SPLIT_KEYS");
        lc_fa_forced_split = sk ? atoll(sk) : 0;
        const char *s = getenv("LOOM_CUDA_FA");
        int m = LC_FA_AUTO;
        if (s && !strcmp(s, "warp"))
            m = LC_FA_WARP;
        else if (s && !strcmp(s, "tiled"))
            m = LC_FA_TILED;
        else if (s && !strcmp(s, "split"))
            m = LC_FA_SPLIT;
        else if (s && !strcmp(s, "fma"))
            m = LC_FA_FMA;
        mode = m;
    }
    return mode;
}

struct lc_fa_plan {
    int kernel, br, kvec;
    int64_t nrb, nsplit, split_keys;
    size_t scratch; /* bytes of partials when nsplit > 1 */
};

/* 16-byte loads of whole rows: unit element stride, aligned rows. */
static bool lc_fa_vec_ok(const lc_tensor &t, int64_t D) {
    const int64_t es = t.dtype == LOOM_F32 ? 4 : 2;
    if (t.nb[0] != es || (D * es) % 16) return false;
    if (((uintptr_t)t.data) % 16) return false;
    for (int i = 1; i < 4; i++)
        if (t.nb[i] % 16) return false;
    return true;
}

static lc_fa_plan lc_fa_plan_make(const lc_tensor &q, const lc_tensor &k, const lc_tensor &v,
                                  bool can_split) {
    lc_fa_plan p;
    memset(&p, 0, sizeof p);
    p.kernel = LC_FA_K_WARP;
    p.nsplit = 1;
    const int mode = lc_fa_mode();
    const int64_t D = q.ne[0], Tq = q.ne[1], Hq = q.ne[2], B = q.ne[3];
    const int64_t Tk = k.ne[1], Hkv = k.ne[2];
    if (mode == LC_FA_WARP || (D != 64 && D != 128) || Hkv <= 0 || Hq % Hkv || Hkv * B > 65535)
        return p;
    const int64_t NR = Tq * (Hq / Hkv);
    p.kvec = lc_fa_vec_ok(k, D) && lc_fa_vec_ok(v, D);
    const bool mma = LC_FA_MMA && k.dtype == LOOM_F16 && v.dtype == LOOM_F16 && mode != LC_FA_FMA &&
                     mode != LC_FA_SPLIT;
    const bool small = NR <= 16; /* decode: all heads of a KV head in one block */
    if (small && mode != LC_FA_TILED) {
        p.kernel = LC_FA_K_F32;
        p.br = NR <= 4 && D == 128 ? 4 : (NR <= 8 ? 8 : 16);
    } else if (mode == LC_FA_SPLIT) {
        p.kernel = LC_FA_K_F32;
        p.br = 16;
    } else if (mma) {
        p.kernel = LC_FA_K_MMA;
        p.br = 64;
    } else {
        p.kernel = LC_FA_K_F32;
        p.br = small ? (NR <= 4 && D == 128 ? 4 : (NR <= 8 ? 8 : 16)) : 32;
    }
    p.nrb = (NR + p.br - 1) / p.br;
    if (p.nrb > 0x7fffffff) {
        p.kernel = LC_FA_K_WARP;
        return p;
    }
    /* Key splits when the grid would not fill the GPU (decode, short
     * chunks): aim at ~512 blocks, at least 128 keys per split (64 when
     * forced with LOOM_CUDA_FA=split). */
    const int64_t base = p.nrb * Hkv * B;
    int64_t ns = 1;
    if (can_split && mode != LC_FA_TILED && Tk > 0) {
        const int64_t min_keys = mode == LC_FA_SPLIT ? 64 : 128;
        if (mode == LC_FA_SPLIT)
            ns = (Tk + min_keys - 1) / min_keys;
        else if (base < 128)
            ns = (512 + base - 1) / base;
        const int64_t max_ns = (Tk + min_keys - 1) / min_keys;
        if (ns > max_ns) ns = max_ns;
        if (ns > 65535) ns = 65535;
        if (ns < 1) ns = 1;
    }
    int64_t sk = (Tk + ns - 1) / ns;
    sk = (sk + 63) / 64 * 64;
    if (sk < 64) sk = 64;
    if (can_split && mode != LC_FA_TILED && lc_fa_forced_split > 0)
        sk = lc_fa_forced_split < 65535 ? lc_fa_forced_split : 65535;
    ns = (Tk + sk - 1) / sk;
    /* At most 65535 splits (grid.y) and 256 MiB of partials. */
    const int64_t row_bytes = Hq * Tq * B * (D + 2) * (int64_t)sizeof(float);
    int64_t ns_max = ((int64_t)256 << 20) / row_bytes;
    if (ns_max > 65535) ns_max = 65535;
    if (ns > ns_max && ns > 1) {
        ns = ns_max < 1 ? 1 : ns_max;
        sk = (Tk + ns - 1) / ns;
        ns = (Tk + sk - 1) / sk;
    }
    if (ns < 1) ns = 1;
    p.split_keys = ns > 1 ? sk : (Tk > 0 ? Tk : 1);
    p.nsplit = ns;
    if (ns > 1) p.scratch = (size_t)ns * (size_t)(Hq * Tq * B) * (size_t)(D + 2) * sizeof(float);
    return p;
}

template <int D, int BR, int BK>
static void lc_fa_launch_f32(const lc_fa_plan &p, cudaStream_t st, float scale, int causal,
                             int q_offset, lc_tensor out, lc_tensor q, lc_tensor k, lc_tensor v,
                             float *part) {
    typedef lc_fa_cfg<D, BR, BK> C;
    const dim3 grid((unsigned)p.nrb, (unsigned)p.nsplit, (unsigned)(k.ne[2] * k.ne[3]));
    lc_fa_tiled_k<C><<<grid, LC_FA_NT, 0, st>>>(out, q, k, v, scale, causal, q_offset, p.kvec,
                                                p.split_keys, part);
}

extern "C" size_t lc_flash_attn_scratch_bytes(lc_tensor q, lc_tensor k, lc_tensor v) {
    if (q.ne[0] == 0 || q.ne[1] * q.ne[2] * q.ne[3] == 0) return 0;
    return lc_fa_plan_make(q, k, v, true).scratch;
}

extern "C" int lc_flash_attn_ex(void *stream, float scale, int causal, int q_offset, lc_tensor out,
                                lc_tensor q, lc_tensor k, lc_tensor v, void *scratch,
                                size_t scratch_bytes) {
    const int64_t rows = q.ne[1] * q.ne[2] * q.ne[3];
    if (rows == 0 || q.ne[0] == 0) return 0;
    if (q.ne[0] > LC_FA_DMAX) return (int)cudaErrorInvalidValue;
    cudaStream_t st = (cudaStream_t)stream;
    lc_fa_plan p = lc_fa_plan_make(q, k, v, true);
    if (p.nsplit > 1 && (!scratch || scratch_bytes < p.scratch))
        p = lc_fa_plan_make(q, k, v, false);
    float *part = p.nsplit > 1 ? (float *)scratch : (float *)0;
    const int64_t D = q.ne[0];

    if (p.kernel == LC_FA_K_WARP) {
        const int64_t g = (rows + LC_FA_WARPS - 1) / LC_FA_WARPS;
        if (g > 0x7fffffff) return (int)cudaErrorInvalidValue;
        lc_fa_warp_k<<<(unsigned)g, LC_FA_WARPS * LOOM_WARP, 0, st>>>(out, q, k, v, scale, causal,
                                                                      q_offset);
        return lc_status();
    }
#if LC_FA_MMA
    if (p.kernel == LC_FA_K_MMA) {
        const dim3 grid((unsigned)p.nrb, (unsigned)p.nsplit, (unsigned)(k.ne[2] * k.ne[3]));
        const float qs = scale * 1.4426950408889634f; /* exp(x) = exp2(x log2 e) */
        if (D == 64)
            lc_fa_mma_k<64><<<grid, LC_FA_NT, 0, st>>>(out, q, k, v, qs, causal, q_offset, p.kvec,
                                                       p.split_keys, part);
        else
            lc_fa_mma_k<128><<<grid, LC_FA_NT, 0, st>>>(out, q, k, v, qs, causal, q_offset, p.kvec,
                                                        p.split_keys, part);
    } else
#endif
    {
        if (D == 64) {
            if (p.br == 8)
                lc_fa_launch_f32<64, 8, 64>(p, st, scale, causal, q_offset, out, q, k, v, part);
            else if (p.br == 16)
                lc_fa_launch_f32<64, 16, 64>(p, st, scale, causal, q_offset, out, q, k, v, part);
            else
                lc_fa_launch_f32<64, 32, 32>(p, st, scale, causal, q_offset, out, q, k, v, part);
        } else {
            if (p.br == 4)
                lc_fa_launch_f32<128, 4, 64>(p, st, scale, causal, q_offset, out, q, k, v, part);
            else if (p.br == 8)
                lc_fa_launch_f32<128, 8, 64>(p, st, scale, causal, q_offset, out, q, k, v, part);
            else if (p.br == 16)
                lc_fa_launch_f32<128, 16, 64>(p, st, scale, causal, q_offset, out, q, k, v, part);
            else
                lc_fa_launch_f32<128, 32, 32>(p, st, scale, causal, q_offset, out, q, k, v, part);
        }
    }
    if (p.nsplit > 1) {
        const int64_t n = rows * D;
        lc_fa_combine_k<<<lc_blocks(n, 256), 256, 0, st>>>(out, part, (int)p.nsplit, D, q.ne[2],
                                                           q.ne[1], rows);
    }
    return lc_status();
}

extern "C" int lc_flash_attn(void *stream, float scale, int causal, int q_offset, lc_tensor out,
                             lc_tensor q, lc_tensor k, lc_tensor v) {
    return lc_flash_attn_ex(stream, scale, causal, q_offset, out, q, k, v, (void *)0, 0);
}

/* Paged attention (docs/adr/0035): the warp kernel with every key read
 * through the block table tbl (device i32, bsz rows per block); causal,
 * B = 1. Correct for decode and prefill; the tiled/tensor-core kernels do
 * not take a table yet. */
extern "C" int lc_flash_attn_paged(void *stream, float scale, int q_offset, int bsz,
                                   lc_tensor out, lc_tensor q, lc_tensor k, lc_tensor v,
                                   const int32_t *tbl) {
    const int64_t rows = q.ne[1] * q.ne[2] * q.ne[3];
    if (rows == 0 || q.ne[0] == 0) return 0;
    if (q.ne[0] > LC_FA_DMAX || bsz <= 0) return (int)cudaErrorInvalidValue;
    const int64_t g = (rows + LC_FA_WARPS - 1) / LC_FA_WARPS;
    if (g > 0x7fffffff) return (int)cudaErrorInvalidValue;
    lc_fa_warp_k<<<(unsigned)g, LC_FA_WARPS * LOOM_WARP, 0, (cudaStream_t)stream>>>(
        out, q, k, v, scale, 1, q_offset, tbl, bsz);
    return lc_status();
}
