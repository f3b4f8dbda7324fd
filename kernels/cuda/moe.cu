/* kernels/cuda/moe.cu - Mixtral-style MoE routing and expert FFN on the
 * device, with no host round trip. Two paths after a shared routing kernel
 * (lc_moe_route_k: one thread per token picks the top-k logits, ties -> lower
 * expert index, softmaxed in double exactly like loom_ref_moe_route; expert
 * ids and gates go to device scratch):
 *
 * warp (decode, few tokens):
 *   lc_moe_up_k: one warp per (f, token, slot): h = silu(gate_e x) * (up_e x);
 *   lc_moe_down_k: one warp per (d, token): out = sum_slot g * down_e h.
 *   Weights through lc_get (any dtype, any strides), but every (token, slot)
 *   re-reads its expert's weights.
 *
 * grouped (prefill, many tokens per expert):
 *   lc_moe_group_k (one block): count the (token, slot) pairs per expert,
 *     prefix-sum into offsets, scatter the pair indices into perm (grouped by
 *     expert) and write a tile table (expert, first pair) of <= LC_GM pairs
 *     per tile. The GEMM grids are sized for the worst case
 *     (ceil(T*k / LC_GM) + min(E, T*k) tiles) and surplus blocks exit, so the
 *     host never needs the counts.
 *   lc_moe_gemm_k<WT, 2>: per (64 features, tile) block, the gathered x rows
 *     times gate_e and up_e, SwiGLU fused: h[pair] = silu(a) * b.
 *   lc_moe_gemm_k<WT, 1>: the gathered h rows times down_e: y[pair].
 *   lc_moe_combine_k: out[:, t] = sum over slots 0..k-1 of gate * y[t*k+slot],
 *     always in slot order.
 *   The weight tiles are dequantized once per block into shared memory with
 *   matmul.cu's unit decoders (dequant.cuh) and reused for 64 pairs; f32 FMA
 *   (no tensor cores: the parity floor of quantized weights with f32 x is
 *   1e-8 NMSE, which one f16 rounding of x or w already exceeds). Each pair's
 *   row is computed by the same FMA sequence wherever it lands in a tile, and
 *   h / y are indexed by the pair, so the (atomic, unordered) placement within
 *   an expert's group cannot change any bit of the result.
 *
 * LOOM_CUDA_MOE = auto (default: grouped when T*k >= 4*E, i.e. >= 4 pairs per
 * expert on average) | grouped | warp. The grouped path needs dense weight
 * rows the unit decoders take (lc_fast_w_ok), gate and up of one dtype and
 * Dm, F multiples of LC_GK; anything else runs the warp path. */
#include "kernels/cuda/dequant.cuh"

#include <stdlib.h>
#include <string.h>

#define LC_MOE_EMAX  256
#define LC_MOE_WARPS 4
#define LC_GN        64  /* grouped GEMM: weight rows (output features) per block */
#define LC_GM        64  /* grouped GEMM: (token, slot) pairs per tile */
#define LC_GK        32  /* k per stage: one q8_0/q4_0 block, a multiple of every unit */
#define LC_GT        256 /* threads of the grouped kernels */

static size_t lc_align256(size_t n) {
    return (n + 255) & ~(size_t)255;
}

/* ---------------- path choice and scratch layout ---------------- */

enum { LC_MOE_AUTO, LC_MOE_WARP, LC_MOE_GROUPED };

/* LOOM_CUDA_MOE = auto | warp | grouped; read once. */
static int lc_moe_mode(void) {
    static int mode = -1;
    if (mode < 0) {
        const char *s = getenv("LOOM_CUDA_MOE");
        int m = LC_MOE_AUTO;
        if (s && !strcmp(s, "warp"))
            m = LC_MOE_WARP;
        else if (s && !strcmp(s, "grouped"))
            m = LC_MOE_GROUPED;
        mode = m; /* same value from any thread: a benign race */
    }
    return mode;
}

static bool lc_moe_grouped(int top_k, const lc_tensor &x, const lc_tensor &logits,
                           const lc_tensor &gate, const lc_tensor &up, const lc_tensor &down) {
    const int mode = lc_moe_mode();
    if (mode == LC_MOE_WARP) return false;
    const int64_t Dm = x.ne[0], F = gate.ne[1], T = x.ne[1], E = logits.ne[0];
    if (F <= 0 || Dm % LC_GK || F % LC_GK || gate.dtype != up.dtype) return false;
    if (!lc_fast_w_ok(gate) || !lc_fast_w_ok(up) || !lc_fast_w_ok(down)) return false;
    return mode == LC_MOE_GROUPED || T * top_k >= 4 * E;
}

/* Sections of the scratch; the grouped ones are 0 bytes on the warp path. */
struct lc_moe_layout {
    size_t ids, gates, h, y, perm, offs, tile_e, tile_p, ntiles, total;
    int64_t max_tiles;
};

static lc_moe_layout lc_moe_layout_make(int64_t T, int64_t k, int64_t F, int64_t Dm, int64_t E,
                                        bool grouped) {
    lc_moe_layout L;
    const size_t tk = (size_t)T * (size_t)k;
    const int64_t tki = (int64_t)tk;
    L.max_tiles = grouped ? (tki + LC_GM - 1) / LC_GM + (E < tki ? E : tki) : 0;
    size_t o = 0;
    L.ids = o, o += lc_align256(tk * 4);
    L.gates = o, o += lc_align256(tk * 4);
    L.h = o, o += lc_align256(tk * (size_t)F * 4);
    if (grouped) {
        L.y = o, o += lc_align256(tk * (size_t)Dm * 4);
        L.perm = o, o += lc_align256(tk * 4);
        L.offs = o, o += lc_align256((size_t)(E + 1) * 4);
        L.tile_e = o, o += lc_align256((size_t)L.max_tiles * 4);
        L.tile_p = o, o += lc_align256((size_t)L.max_tiles * 4);
        L.ntiles = o, o += lc_align256(4);
    } else {
        L.y = L.perm = L.offs = L.tile_e = L.tile_p = L.ntiles = o;
    }
    L.total = o;
    return L;
}

extern "C" size_t lc_moe_scratch_bytes(int top_k, lc_tensor x, lc_tensor logits, lc_tensor gate,
                                       lc_tensor up, lc_tensor down) {
    const bool g = lc_moe_grouped(top_k, x, logits, gate, up, down);
    return lc_moe_layout_make(x.ne[1], top_k, gate.ne[1], x.ne[0], logits.ne[0], g).total;
}

/* ---------------- routing ---------------- */

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

/* ---------------- warp path ---------------- */

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

/* ---------------- grouped path ---------------- */

/* Device-side grouping of the T*k pairs by expert (one block: E <= 256). */
static __global__ void __launch_bounds__(LC_GT)
    lc_moe_group_k(const int32_t *ids, int tk, int E, int32_t *perm, int32_t *offs, int32_t *tile_e,
                   int32_t *tile_p, int32_t *ntiles) {
    __shared__ int cnt[LC_MOE_EMAX], cur[LC_MOE_EMAX];
    const int tid = threadIdx.x;
    for (int e = tid; e < E; e += LC_GT)
        cnt[e] = 0;
    __syncthreads();
    for (int i = tid; i < tk; i += LC_GT)
        atomicAdd(&cnt[ids[i]], 1);
    __syncthreads();
    if (tid == 0) { /* E <= 256 serial steps: cheaper than a block scan's barriers */
        int p = 0, nt = 0;
        for (int e = 0; e < E; e++) {
            offs[e] = p;
            cur[e] = p;
            for (int r = 0; r < cnt[e]; r += LC_GM) {
                tile_e[nt] = e;
                tile_p[nt] = p + r;
                nt++;
            }
            p += cnt[e];
        }
        offs[E] = p;
        *ntiles = nt;
    }
    __syncthreads();
    /* Order within an expert is arbitrary; results do not depend on it (header). */
    for (int i = tid; i < tk; i += LC_GT)
        perm[atomicAdd(&cur[ids[i]], 1)] = i;
}

struct lc_moe_groups {
    const int32_t *perm;   /* [T*k] pair indices t*k+slot, grouped by expert */
    const int32_t *offs;   /* [E+1] first position of each expert in perm */
    const int32_t *tile_e; /* [max_tiles] expert of tile j */
    const int32_t *tile_p; /* [max_tiles] first perm position of tile j */
    const int32_t *ntiles; /* tiles in use */
};

/* One block: LC_GN weight rows n of expert e x one tile of <= LC_GM pairs.
 * Row r of the gathered operand is src[:, pair / div] (x: div = top_k, one x
 * column per token; h: div = 1). NW = 2: gate (w0) and up (w1), writes
 * dst[pair * N + n] = silu(a) * b; NW = 1: down (w0), dst[pair * N + n] = a.
 * 256 threads, 4x4 outputs per thread and weight, like lc_matmul_tiled_k. */
template <int WT, int NW>
static __global__ void __launch_bounds__(LC_GT)
    lc_moe_gemm_k(lc_tensor src, int div, lc_tensor w0, lc_tensor w1, lc_moe_groups gr,
                  float *dst) {
    typedef lc_fmt<WT> F;
    constexpr int UPR = LC_GK / F::UE; /* units per weight row and stage */
    __shared__ float cb[16];
    __shared__ float ws[NW][LC_GK][LC_GN + 1]; /* [k][n] dequantized; +1: conflict-free */
    __shared__ float xs[LC_GK][LC_GM + 1];     /* [k][tile row] */
    __shared__ int rows[LC_GM];                /* pair of each tile row, -1 past the group */
    const int j = blockIdx.y;
    if (j >= *gr.ntiles) return; /* the whole block: the grid is sized for the worst case */
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int e = gr.tile_e[j], p0 = gr.tile_p[j], pend = gr.offs[e + 1];
    const int64_t K = w0.ne[0], N = w0.ne[1], n0 = (int64_t)blockIdx.x * LC_GN;
    if ((WT == LOOM_NF4 || WT == LOOM_NF4_DQ) && tid < 16) cb[tid] = w0.code[tid];
    if (tid < LC_GM) rows[tid] = p0 + tid < pend ? gr.perm[p0 + tid] : -1;
    __syncthreads();

    float acc[NW][4][4];
#pragma unroll
    for (int w = 0; w < NW; w++)
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int m = 0; m < 4; m++)
                acc[w][i][m] = 0.0f;

    for (int64_t k0 = 0; k0 < K; k0 += LC_GK) {
        /* Weights: one unit per thread and step (consecutive threads walk a row),
         * dequantized to exactly lc_get's values. Rows past N become zeros. */
        for (int i = tid; i < LC_GN * UPR; i += LC_GT) {
            const int rr = i / UPR;
            const int64_t n = n0 + rr, u = k0 / F::UE + i % UPR;
#pragma unroll
            for (int w = 0; w < NW; w++) {
                const lc_tensor &wt = w ? w1 : w0;
                lc_unit q = {}; /* zeros (and scale 0) for rows past N */
                if (n < N) {
                    int64_t e0; /* set by lc_row: a separate statement (argument order) */
                    const char *p = lc_row<WT>(wt, n, e, 0, e0);
                    lc_load<WT>(wt, p, e0, u, q);
                }
#pragma unroll
                for (int g = 0; g < F::G; g++) {
                    float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                    if (n < N) lc_group<WT>(q, g, cb, v);
                    const int kk = (int)(lc_gstart<WT>(u, g) - k0);
#pragma unroll
                    for (int c = 0; c < 4; c++)
                        ws[w][kk + c][rr] = F::SC ? v[c] * q.s : v[c];
                }
            }
        }
        /* Gathered rows: consecutive threads read consecutive k of one row. */
        for (int i = tid; i < LC_GK * LC_GM; i += LC_GT) {
            const int kk = i % LC_GK, m = i / LC_GK, r = rows[m];
            xs[kk][m] = r >= 0 ? lc_get(src, k0 + kk, r / div, 0, 0) : 0.0f;
        }
        __syncthreads();
#pragma unroll 8
        for (int kk = 0; kk < LC_GK; kk++) {
            float b[4];
#pragma unroll
            for (int m = 0; m < 4; m++)
                b[m] = xs[kk][ty + 16 * m];
#pragma unroll
            for (int w = 0; w < NW; w++)
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    const float a = ws[w][kk][tx + 16 * i];
#pragma unroll
                    for (int m = 0; m < 4; m++)
                        acc[w][i][m] += a * b[m];
                }
        }
        __syncthreads();
    }

#pragma unroll
    for (int m = 0; m < 4; m++) {
        const int r = rows[ty + 16 * m];
        if (r < 0) continue;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int64_t n = n0 + tx + 16 * i;
            if (n >= N) continue;
            const float a = acc[0][i][m], b = acc[NW - 1][i][m];
            dst[(int64_t)r * N + n] = NW == 2 ? a / (1.0f + expf(-a)) * b : a;
        }
    }
}

/* out[d, t] = sum_slot gate * y[t*k + slot][d], slots in order 0..k-1 (as the
 * warp path and kernels/ref add them). */
static __global__ void lc_moe_combine_k(lc_tensor out, const float *y, const float *gates, int k,
                                        int64_t Dm, int64_t T) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < Dm * T;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t d = i % Dm, t = i / Dm;
        float acc = 0.0f;
        for (int r = 0; r < k; r++)
            acc += gates[t * k + r] * y[(t * k + r) * Dm + d];
        *lc_outp(out, d, t, 0, 0) = acc;
    }
}

template <int WT, int NW>
static void lc_moe_gemm_launch(cudaStream_t st, dim3 grid, lc_tensor src, int div, lc_tensor w0,
                               lc_tensor w1, lc_moe_groups gr, float *dst) {
    /* through a pointer: one name for the launch (the emulation's rewriter) */
    void (*kern)(lc_tensor, int, lc_tensor, lc_tensor, lc_moe_groups, float *) =
        lc_moe_gemm_k<WT, NW>;
    kern<<<grid, LC_GT, 0, st>>>(src, div, w0, w1, gr, dst);
}

template <int NW>
static void lc_moe_gemm(cudaStream_t st, dim3 grid, lc_tensor src, int div, lc_tensor w0,
                        lc_tensor w1, lc_moe_groups gr, float *dst) {
    switch (w0.dtype) {
    case LOOM_F32:
        lc_moe_gemm_launch<LOOM_F32, NW>(st, grid, src, div, w0, w1, gr, dst);
        break;
    case LOOM_F16:
        lc_moe_gemm_launch<LOOM_F16, NW>(st, grid, src, div, w0, w1, gr, dst);
        break;
    case LOOM_BF16:
        lc_moe_gemm_launch<LOOM_BF16, NW>(st, grid, src, div, w0, w1, gr, dst);
        break;
    case LOOM_Q8_0:
        lc_moe_gemm_launch<LOOM_Q8_0, NW>(st, grid, src, div, w0, w1, gr, dst);
        break;
    case LOOM_Q4_0:
        lc_moe_gemm_launch<LOOM_Q4_0, NW>(st, grid, src, div, w0, w1, gr, dst);
        break;
    case LOOM_NF4:
        lc_moe_gemm_launch<LOOM_NF4, NW>(st, grid, src, div, w0, w1, gr, dst);
        break;
    case LOOM_NF4_DQ:
        lc_moe_gemm_launch<LOOM_NF4_DQ, NW>(st, grid, src, div, w0, w1, gr, dst);
        break;
    }
}

/* ---------------- launch ---------------- */

extern "C" int lc_moe(void *stream, int top_k, lc_tensor out, lc_tensor x, lc_tensor logits,
                      lc_tensor gate, lc_tensor up, lc_tensor down, void *scratch) {
    const int64_t T = x.ne[1], F = gate.ne[1], Dm = x.ne[0], E = logits.ne[0];
    if (T == 0 || Dm == 0) return 0;
    if (E > LC_MOE_EMAX || top_k < 1 || top_k > E || T * top_k > 65535 || T > 65535)
        return (int)cudaErrorInvalidValue;
    cudaStream_t st = (cudaStream_t)stream;
    const bool grouped = lc_moe_grouped(top_k, x, logits, gate, up, down);
    const lc_moe_layout L = lc_moe_layout_make(T, top_k, F, Dm, E, grouped);
    char *s = (char *)scratch;
    int32_t *ids = (int32_t *)(s + L.ids);
    float *gates = (float *)(s + L.gates), *h = (float *)(s + L.h);
    const int64_t tk = T * top_k;
    lc_tensor none = {};
    lc_moe_route_k<<<lc_blocks(T, 64), 64, 0, st>>>(logits, top_k, ids, gates, none);

    if (!grouped) {
        if (F > 0) {
            const dim3 gu((unsigned)((F + LC_MOE_WARPS - 1) / LC_MOE_WARPS), (unsigned)tk);
            lc_moe_up_k<<<gu, LC_MOE_WARPS * LOOM_WARP, 0, st>>>(x, gate, up, ids, h, top_k);
        }
        const dim3 gd((unsigned)((Dm + LC_MOE_WARPS - 1) / LC_MOE_WARPS), (unsigned)T);
        lc_moe_down_k<<<gd, LC_MOE_WARPS * LOOM_WARP, 0, st>>>(out, down, ids, gates, h, top_k);
        return lc_status();
    }

    float *y = (float *)(s + L.y);
    lc_moe_groups gr;
    gr.perm = (const int32_t *)(s + L.perm);
    gr.offs = (const int32_t *)(s + L.offs);
    gr.tile_e = (const int32_t *)(s + L.tile_e);
    gr.tile_p = (const int32_t *)(s + L.tile_p);
    gr.ntiles = (const int32_t *)(s + L.ntiles);
    lc_moe_group_k<<<1, LC_GT, 0, st>>>(ids, (int)tk, (int)E, (int32_t *)(s + L.perm),
                                        (int32_t *)(s + L.offs), (int32_t *)(s + L.tile_e),
                                        (int32_t *)(s + L.tile_p), (int32_t *)(s + L.ntiles));
    /* h as a [F, T*k] f32 tensor: the down GEMM's gathered operand. */
    lc_tensor ht = {};
    ht.data = (char *)h;
    ht.dtype = LOOM_F32;
    ht.ne[0] = F, ht.ne[1] = tk, ht.ne[2] = ht.ne[3] = 1;
    ht.nb[0] = 4, ht.nb[1] = 4 * F, ht.nb[2] = ht.nb[3] = 4 * F * tk;
    const unsigned nt = (unsigned)L.max_tiles;
    lc_moe_gemm<2>(st, dim3((unsigned)((F + LC_GN - 1) / LC_GN), nt), x, top_k, gate, up, gr, h);
    lc_moe_gemm<1>(st, dim3((unsigned)((Dm + LC_GN - 1) / LC_GN), nt), ht, 1, down, down, gr, y);
    int gc = lc_blocks(Dm * T, 256);
    if (gc > 65535) gc = 65535;
    lc_moe_combine_k<<<gc, 256, 0, st>>>(out, y, gates, top_k, Dm, T);
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
