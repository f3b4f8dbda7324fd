/* kernels/cuda/matmul.cu - matmul: out[n,m,i2,i3] = sum_k w[k,n,i2/r2,i3/r3] * x[k,m,i2,i3].
 *
 * Paths (the backend picks, backends/cuda/loom_backend_cuda.cu):
 *  - lc_matmul_rows, fast path (lc_matmul_fast_ok: dense weight rows, f32 x
 *    with unit k-stride, 16-byte aligned columns): the decode GEMV. It is
 *    memory bound, so it is built to keep many bytes in flight and few
 *    instructions per weight byte:
 *      * a 256-thread block owns R weight rows (2 for f32/f16/bf16, 4 for the
 *        quantized types when <= 2 columns) and a tile of MT <= 8 columns; the
 *        whole block splits K, consecutive threads take consecutive "units"
 *        (16 bytes of f32/f16/bf16 = one 128-bit load; a quarter q8_0 block =
 *        8 quants; half a q4_0 block = 8 bytes of nibbles; 8 bytes of nf4
 *        codes = 16 elements), so a warp reads a contiguous stretch of each
 *        row. q8_0 (34-byte) and q4_0 (18-byte) blocks are only 2-byte
 *        aligned: their quants are read as 16-bit words (4 lanes / 2 lanes
 *        share a block, so one warp load still covers ~300 contiguous bytes).
 *      * the R rows' loads of a unit are issued together; with 4-8 resident
 *        blocks per SM that is ~32-64 KB of weights in flight per SM.
 *      * x is read as float4 (L1/L2 resident: at most K*8*4 bytes) once per
 *        unit and reused for the R rows, so x traffic is 1/R of the naive one.
 *      * decoding: quants become floats with __byte_perm into the mantissa of
 *        2^23 and one FADD (the q4_0 -8 and the q8_0 sign folded into the
 *        constant); nf4 codes index a 16-entry codebook in shared memory
 *        (conflict-free: 16 words in 16 banks); the block scale (q8_0/q4_0 d,
 *        nf4 absmax, nf4_dq absmax rebuilt exactly like lc_nf4_absmax) is
 *        applied once per unit to the unit's partial dot product. These unit
 *        decoders live in dequant.cuh (moe.cu's grouped GEMM uses them too).
 *      * per-thread partials are reduced by warp shuffles, then across the
 *        8 warps through shared memory.
 *  - lc_matmul_rows, generic path (everything else: transposed or strided
 *    weights, half-precision or unaligned x, odd K): one warp per weight row n
 *    and a tile of LC_MT columns; lc_get per element (any dtype, any strides).
 *  - lc_matmul_tiled: 64x64 shared-memory tiles, weights dequantized once per
 *    tile: quantized prefill (fused dequant-GEMM, f32 FMA) when
 *    LOOM_CUDA_QGEMM=tiled or without a BLAS (HIP without hipBLAS), and GEMM
 *    for layouts cuBLAS cannot take.
 *  - lc_dequant_half: quantized prefill through cuBLAS (LOOM_CUDA_QGEMM=blas,
 *    the default): rows of a quantized weight are dequantized (same unit
 *    decoders) to f32 and split into f16 hi + lo = w - hi; with x split the
 *    same way (lc_convert_half) the backend runs three f16 tensor-core GEMMs
 *    hi*hi + hi*lo + lo*hi. One f16 rounding of w or of x alone has
 *    NMSE ~ 8e-8, above the parity floor for quantized weights with f32 x
 *    (1e-8); the split keeps ~22 bits of each (values must stay inside the
 *    f16 range, |w|, |x| < 65504, as on the f16-weight path).
 *  - lc_matmul_blas (in the backend): cuBLAS GemmEx (tensor cores for
 *    f16/bf16) for f16/bf16/f32 weights with row-contiguous rows; x is
 *    converted to the weight's dtype first when it differs (lc_convert_half).
 *    For bf16 weights x is split into hi + lo bf16 parts and two GEMMs
 *    accumulate, because one bf16 rounding of x (rel. error 2^-9) would exceed
 *    the parity tolerance; for f16 one rounding (2^-12) stays within it. f32
 *    weights use FP32 compute (no TF32).
 * Accumulation is f32 everywhere. HIP: the same code; a "warp" is 32 lanes
 * (half a wave64 on gfx90a), every shuffle has width 32. */
#include "kernels/cuda/dequant.cuh"

#define LC_MT    8 /* columns of x per warp */
#define LC_WARPS 4 /* warps per block */

template <int WT>
static __device__ __forceinline__ float lc_wget(const lc_tensor &w, int64_t k, int64_t n,
                                                int64_t i2, int64_t i3) {
    lc_tensor t = w;
    t.dtype = WT; /* lets the compiler drop the other cases of lc_get */
    return lc_get(t, k, n, i2, i3);
}

template <int WT>
static __global__ void lc_matmul_rows_k(lc_tensor out, lc_tensor w, lc_tensor x, int64_t r2,
                                        int64_t r3) {
    const int lane = threadIdx.x % LOOM_WARP;
    const int64_t n = (int64_t)blockIdx.x * LC_WARPS + threadIdx.x / LOOM_WARP;
    const int64_t m0 = (int64_t)blockIdx.y * LC_MT;
    const int64_t slice = blockIdx.z, X2 = x.ne[2];
    const int64_t i2 = slice % X2, i3 = slice / X2;
    const int64_t K = w.ne[0], N = w.ne[1], M = x.ne[1];
    if (n >= N) return; /* whole warp leaves together */
    const int64_t mt = M - m0 < LC_MT ? M - m0 : LC_MT;
    const int64_t w2 = i2 / r2, w3 = i3 / r3;

    float acc[LC_MT];
#pragma unroll
    for (int j = 0; j < LC_MT; j++)
        acc[j] = 0.0f;
    for (int64_t k = lane; k < K; k += LOOM_WARP) {
        const float wv = lc_wget<WT>(w, k, n, w2, w3);
#pragma unroll
        for (int j = 0; j < LC_MT; j++)
            if (j < mt) acc[j] += wv * lc_get(x, k, m0 + j, i2, i3);
    }
#pragma unroll
    for (int j = 0; j < LC_MT; j++) {
        const float s = lc_warp_sum(acc[j]);
        if (lane == 0 && j < mt) *lc_outp(out, n, m0 + j, i2, i3) = s;
    }
}

/* ---------------- fast decode path (dense rows, f32 x) ---------------- */

#define LC_FT 256 /* threads per block of the fast kernel */

template <int WT, int MT, int R>
static __global__ void __launch_bounds__(LC_FT, MT >= 8 ? 2 : 1)
    lc_matmul_fast_k(lc_tensor out, lc_tensor w, lc_tensor x, int64_t r2, int64_t r3) {
    typedef lc_fmt<WT> F;
    __shared__ float cb[16];
    __shared__ float red[LC_FT / LOOM_WARP][R * MT];
    const int tid = threadIdx.x, lane = tid % LOOM_WARP, warp = tid / LOOM_WARP;
    if (WT == LOOM_NF4 || WT == LOOM_NF4_DQ) {
        if (tid < 16) cb[tid] = w.code[tid];
        __syncthreads();
    }
    const int64_t n0 = (int64_t)blockIdx.x * R, m0 = (int64_t)blockIdx.y * MT;
    const int64_t slice = blockIdx.z, X2 = x.ne[2];
    const int64_t i2 = slice % X2, i3 = slice / X2, w2 = i2 / r2, w3 = i3 / r3;
    const int64_t N = w.ne[1], M = x.ne[1];
    const int64_t U = w.ne[0] / F::UE;

    /* Rows / columns past the end are clamped (loaded, never stored). */
    const char *wp[R];
    int64_t we[R];
#pragma unroll
    for (int r = 0; r < R; r++)
        wp[r] = lc_row<WT>(w, n0 + r < N ? n0 + r : N - 1, w2, w3, we[r]);
    const float *xp[MT];
#pragma unroll
    for (int j = 0; j < MT; j++) {
        const int64_t m = m0 + j < M ? m0 + j : M - 1;
        xp[j] = (const float *)(x.data + m * x.nb[1] + i2 * x.nb[2] + i3 * x.nb[3]);
    }

    float acc[R][MT];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int j = 0; j < MT; j++)
            acc[r][j] = 0.0f;

    for (int64_t u = tid; u < U; u += LC_FT) {
        lc_unit q[R];
#pragma unroll
        for (int r = 0; r < R; r++)
            lc_load<WT>(w, wp[r], we[r], u, q[r]);
        float t[R][MT]; /* unscaled partial sums of this unit (quantized types) */
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int j = 0; j < MT; j++)
                t[r][j] = 0.0f;
#pragma unroll
        for (int g = 0; g < F::G; g++) {
            const int64_t k = lc_gstart<WT>(u, g);
            float4 xv[MT];
#pragma unroll
            for (int j = 0; j < MT; j++)
                xv[j] = *(const float4 *)(xp[j] + k);
#pragma unroll
            for (int r = 0; r < R; r++) {
                float v[4];
                lc_group<WT>(q[r], g, cb, v);
#pragma unroll
                for (int j = 0; j < MT; j++) {
                    float &d = F::SC ? t[r][j] : acc[r][j];
                    d = fmaf(v[0], xv[j].x, d);
                    d = fmaf(v[1], xv[j].y, d);
                    d = fmaf(v[2], xv[j].z, d);
                    d = fmaf(v[3], xv[j].w, d);
                }
            }
        }
        if (F::SC) {
#pragma unroll
            for (int r = 0; r < R; r++)
#pragma unroll
                for (int j = 0; j < MT; j++)
                    acc[r][j] = fmaf(q[r].s, t[r][j], acc[r][j]);
        }
    }

#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int j = 0; j < MT; j++) {
            const float s = lc_warp_sum(acc[r][j]);
            if (lane == 0) red[warp][r * MT + j] = s;
        }
    __syncthreads();
    if (tid < R * MT) {
        const int r = tid / MT, j = tid % MT;
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < LC_FT / LOOM_WARP; i++)
            s += red[i][tid];
        if (n0 + r < N && m0 + j < M) *lc_outp(out, n0 + r, m0 + j, i2, i3) = s;
    }
}

static bool lc_fast_x_ok(const lc_tensor &x) {
    if (x.dtype != LOOM_F32 || x.nb[0] != 4 || !lc_al(x.data, 16)) return false;
    for (int i = 1; i < 4; i++)
        if (x.ne[i] > 1 && x.nb[i] % 16) return false;
    return true;
}

extern "C" int lc_matmul_fast_ok(lc_tensor w, lc_tensor x) {
    return lc_fast_w_ok(w) && lc_fast_x_ok(x) && w.ne[0] == x.ne[0];
}

template <int WT, int MT>
static void lc_fast_launch(cudaStream_t st, int64_t N, int64_t M, int64_t S, lc_tensor out,
                           lc_tensor w, lc_tensor x, int64_t r2, int64_t r3) {
    /* More rows per block where x reuse matters most (4-bit/8-bit weights,
     * few columns); registers bound it for wide column tiles. */
    constexpr int R = (lc_fmt<WT>::SC && MT <= 2) ? 4 : 2;
    const dim3 grid((unsigned)((N + R - 1) / R), (unsigned)((M + MT - 1) / MT), (unsigned)S);
    /* through a pointer: one name for the launch (the emulation's rewriter) */
    void (*kern)(lc_tensor, lc_tensor, lc_tensor, int64_t, int64_t) = lc_matmul_fast_k<WT, MT, R>;
    kern<<<grid, LC_FT, 0, st>>>(out, w, x, r2, r3);
}

template <int WT>
static void lc_fast_mt(cudaStream_t st, int64_t N, int64_t M, int64_t S, lc_tensor out, lc_tensor w,
                       lc_tensor x, int64_t r2, int64_t r3) {
    if (M == 1)
        lc_fast_launch<WT, 1>(st, N, M, S, out, w, x, r2, r3);
    else if (M == 2)
        lc_fast_launch<WT, 2>(st, N, M, S, out, w, x, r2, r3);
    else if (M <= 4)
        lc_fast_launch<WT, 4>(st, N, M, S, out, w, x, r2, r3);
    else
        lc_fast_launch<WT, 8>(st, N, M, S, out, w, x, r2, r3);
}

/* Generic warp-per-row path, or the fast path when the layout allows it. */
extern "C" int lc_matmul_rows(void *stream, lc_tensor out, lc_tensor w, lc_tensor x) {
    const int64_t N = w.ne[1], M = x.ne[1], S = x.ne[2] * x.ne[3];
    if (N == 0 || M == 0 || S == 0) return 0;
    const int64_t r2 = x.ne[2] / w.ne[2], r3 = x.ne[3] / w.ne[3];
    cudaStream_t st = (cudaStream_t)stream;
    if (lc_matmul_fast_ok(w, x) && (N + 1) / 2 <= 0x7fffffff && (M + 7) / 8 <= 65535 &&
        S <= 65535) {
        switch (w.dtype) {
        case LOOM_F32:
            lc_fast_mt<LOOM_F32>(st, N, M, S, out, w, x, r2, r3);
            break;
        case LOOM_F16:
            lc_fast_mt<LOOM_F16>(st, N, M, S, out, w, x, r2, r3);
            break;
        case LOOM_BF16:
            lc_fast_mt<LOOM_BF16>(st, N, M, S, out, w, x, r2, r3);
            break;
        case LOOM_Q8_0:
            lc_fast_mt<LOOM_Q8_0>(st, N, M, S, out, w, x, r2, r3);
            break;
        case LOOM_Q4_0:
            lc_fast_mt<LOOM_Q4_0>(st, N, M, S, out, w, x, r2, r3);
            break;
        case LOOM_NF4:
            lc_fast_mt<LOOM_NF4>(st, N, M, S, out, w, x, r2, r3);
            break;
        case LOOM_NF4_DQ:
            lc_fast_mt<LOOM_NF4_DQ>(st, N, M, S, out, w, x, r2, r3);
            break;
        }
        return lc_status();
    }
    const int64_t gy = (M + LC_MT - 1) / LC_MT, gx = (N + LC_WARPS - 1) / LC_WARPS;
    if (gx > 0x7fffffff || gy > 65535 || S > 65535) return (int)cudaErrorInvalidValue;
    const dim3 grid((unsigned)gx, (unsigned)gy, (unsigned)S), block(LC_WARPS * LOOM_WARP);
    switch (w.dtype) {
    case LOOM_F32:
        lc_matmul_rows_k<LOOM_F32><<<grid, block, 0, st>>>(out, w, x, r2, r3);
        break;
    case LOOM_F16:
        lc_matmul_rows_k<LOOM_F16><<<grid, block, 0, st>>>(out, w, x, r2, r3);
        break;
    case LOOM_BF16:
        lc_matmul_rows_k<LOOM_BF16><<<grid, block, 0, st>>>(out, w, x, r2, r3);
        break;
    case LOOM_Q8_0:
        lc_matmul_rows_k<LOOM_Q8_0><<<grid, block, 0, st>>>(out, w, x, r2, r3);
        break;
    case LOOM_Q4_0:
        lc_matmul_rows_k<LOOM_Q4_0><<<grid, block, 0, st>>>(out, w, x, r2, r3);
        break;
    case LOOM_Q4_1: /* legacy types: generic kernels only (lc_get), no fast path yet */
        lc_matmul_rows_k<LOOM_Q4_1><<<grid, block, 0, st>>>(out, w, x, r2, r3);
        break;
    case LOOM_Q5_0:
        lc_matmul_rows_k<LOOM_Q5_0><<<grid, block, 0, st>>>(out, w, x, r2, r3);
        break;
    case LOOM_Q5_1:
        lc_matmul_rows_k<LOOM_Q5_1><<<grid, block, 0, st>>>(out, w, x, r2, r3);
        break;
    case LOOM_NF4:
        lc_matmul_rows_k<LOOM_NF4><<<grid, block, 0, st>>>(out, w, x, r2, r3);
        break;
    case LOOM_NF4_DQ:
        lc_matmul_rows_k<LOOM_NF4_DQ><<<grid, block, 0, st>>>(out, w, x, r2, r3);
        break;
    default:
        return (int)cudaErrorInvalidValue;
    }
    return lc_status();
}

/* Tiled kernel for larger M (prefill) when cuBLAS does not apply: quantized
 * weights (a fused dequant-GEMM: each 64x32 weight tile is dequantized once
 * into shared memory and used for 64 columns) and HIP builds without hipBLAS.
 * 256 threads, 64x64 outputs per block, 4x4 per thread, f32 FMA (no tensor
 * cores). */
#define LC_TB 64
#define LC_TK 32

template <int WT>
static __global__ void __launch_bounds__(256)
    lc_matmul_tiled_k(lc_tensor out, lc_tensor w, lc_tensor x, int64_t r2, int64_t r3) {
    __shared__ float ws[LC_TK][LC_TB + 1]; /* [k][n]; +1 keeps the stores conflict-free */
    __shared__ float xs[LC_TK][LC_TB + 1]; /* [k][m] */
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int64_t n0 = (int64_t)blockIdx.x * LC_TB, m0 = (int64_t)blockIdx.y * LC_TB;
    const int64_t slice = blockIdx.z, X2 = x.ne[2];
    const int64_t i2 = slice % X2, i3 = slice / X2, w2 = i2 / r2, w3 = i3 / r3;
    const int64_t K = w.ne[0], N = w.ne[1], M = x.ne[1];
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
            acc[i][j] = 0.0f;
    for (int64_t k0 = 0; k0 < K; k0 += LC_TK) {
        /* consecutive threads take consecutive k of one row: coalesced reads */
        for (int i = tid; i < LC_TK * LC_TB; i += 256) {
            const int kk = i % LC_TK, rr = i / LC_TK;
            const int64_t k = k0 + kk, n = n0 + rr, m = m0 + rr;
            ws[kk][rr] = (n < N && k < K) ? lc_wget<WT>(w, k, n, w2, w3) : 0.0f;
            xs[kk][rr] = (m < M && k < K) ? lc_get(x, k, m, i2, i3) : 0.0f;
        }
        __syncthreads();
#pragma unroll 8
        for (int kk = 0; kk < LC_TK; kk++) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                a[i] = ws[kk][tx + 16 * i];
                b[i] = xs[kk][ty + 16 * i];
            }
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++)
                    acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int64_t n = n0 + tx + 16 * i, m = m0 + ty + 16 * j;
            if (n < N && m < M) *lc_outp(out, n, m, i2, i3) = acc[i][j];
        }
}

extern "C" int lc_matmul_tiled(void *stream, lc_tensor out, lc_tensor w, lc_tensor x) {
    const int64_t N = w.ne[1], M = x.ne[1], S = x.ne[2] * x.ne[3];
    if (N == 0 || M == 0 || S == 0) return 0;
    const int64_t gx = (N + LC_TB - 1) / LC_TB, gy = (M + LC_TB - 1) / LC_TB;
    if (gx > 0x7fffffff || gy > 65535 || S > 65535) return (int)cudaErrorInvalidValue;
    const dim3 grid((unsigned)gx, (unsigned)gy, (unsigned)S), block(256);
    const int64_t r2 = x.ne[2] / w.ne[2], r3 = x.ne[3] / w.ne[3];
    cudaStream_t st = (cudaStream_t)stream;
    switch (w.dtype) {
    case LOOM_F32:
        lc_matmul_tiled_k<LOOM_F32><<<grid, block, 0, st>>>(out, w, x, r2, r3);
        break;
    case LOOM_F16:
        lc_matmul_tiled_k<LOOM_F16><<<grid, block, 0, st>>>(out, w, x, r2, r3);
        break;
    case LOOM_BF16:
        lc_matmul_tiled_k<LOOM_BF16><<<grid, block, 0, st>>>(out, w, x, r2, r3);
        break;
    case LOOM_Q8_0:
        lc_matmul_tiled_k<LOOM_Q8_0><<<grid, block, 0, st>>>(out, w, x, r2, r3);
        break;
    case LOOM_Q4_0:
        lc_matmul_tiled_k<LOOM_Q4_0><<<grid, block, 0, st>>>(out, w, x, r2, r3);
        break;
    case LOOM_Q4_1: /* legacy types: generic kernels only (lc_get), no fast path yet */
        lc_matmul_tiled_k<LOOM_Q4_1><<<grid, block, 0, st>>>(out, w, x, r2, r3);
        break;
    case LOOM_Q5_0:
        lc_matmul_tiled_k<LOOM_Q5_0><<<grid, block, 0, st>>>(out, w, x, r2, r3);
        break;
    case LOOM_Q5_1:
        lc_matmul_tiled_k<LOOM_Q5_1><<<grid, block, 0, st>>>(out, w, x, r2, r3);
        break;
    case LOOM_NF4:
        lc_matmul_tiled_k<LOOM_NF4><<<grid, block, 0, st>>>(out, w, x, r2, r3);
        break;
    case LOOM_NF4_DQ:
        lc_matmul_tiled_k<LOOM_NF4_DQ><<<grid, block, 0, st>>>(out, w, x, r2, r3);
        break;
    default:
        return (int)cudaErrorInvalidValue;
    }
    return lc_status();
}

/* x (any float dtype, any strides) -> contiguous hi (and lo = x - hi) of dst dtype. */
static __global__ void lc_convert_half_k(lc_tensor x, int dst, uint16_t *hi, uint16_t *lo,
                                         int64_t n) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t i0, i1, i2, i3;
        lc_unravel(x.ne, e, i0, i1, i2, i3);
        const float v = lc_get(x, i0, i1, i2, i3);
        const uint16_t h = dst == LOOM_F16 ? lc_f32_to_f16(v) : lc_f32_to_bf16(v);
        hi[e] = h;
        if (lo) {
            const float r = v - (dst == LOOM_F16 ? lc_f16_to_f32(h) : lc_bf16_to_f32(h));
            lo[e] = dst == LOOM_F16 ? lc_f32_to_f16(r) : lc_f32_to_bf16(r);
        }
    }
}

extern "C" int lc_convert_half(void *stream, lc_tensor x, int dst_dtype, void *hi, void *lo) {
    const int64_t n = x.ne[0] * x.ne[1] * x.ne[2] * x.ne[3];
    if (n == 0) return 0;
    int g = lc_blocks(n, 256);
    if (g > 65535) g = 65535;
    lc_convert_half_k<<<g, 256, 0, (cudaStream_t)stream>>>(x, dst_dtype, (uint16_t *)hi,
                                                           (uint16_t *)lo, n);
    return lc_status();
}

/* Rows [n0, n0 + rows) of slice (0, 0) of a quantized weight -> f16 hi and
 * lo = w - hi, row-major [rows][K]. One thread per (row, unit), the decoders
 * of the fast path; w = d * q (exact in f32, like lc_get) or code * absmax. */
template <int WT>
static __global__ void __launch_bounds__(256)
    lc_dequant_half_k(lc_tensor w, int64_t n0, int64_t rows, uint16_t *hi, uint16_t *lo) {
    typedef lc_fmt<WT> F;
    __shared__ float cb[16];
    if (WT == LOOM_NF4 || WT == LOOM_NF4_DQ) {
        if (threadIdx.x < 16) cb[threadIdx.x] = w.code[threadIdx.x];
        __syncthreads();
    }
    const int64_t K = w.ne[0], U = K / F::UE, n_units = rows * U;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n_units;
         e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t rr = e / U, u = e % U;
        int64_t e0;
        const char *p = lc_row<WT>(w, n0 + rr, 0, 0, e0);
        lc_unit q;
        lc_load<WT>(w, p, e0, u, q);
#pragma unroll
        for (int g = 0; g < F::G; g++) {
            float v[4];
            lc_group<WT>(q, g, cb, v);
            uint16_t h[4], l[4];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const float f = F::SC ? v[i] * q.s : v[i];
                h[i] = lc_f32_to_f16(f);
                l[i] = lc_f32_to_f16(f - lc_f16_to_f32(h[i]));
            }
            const int64_t o = rr * K + lc_gstart<WT>(u, g);
            uint2 hv, lv; /* 8-byte stores: o is a multiple of 4 halves */
            hv.x = (uint32_t)h[0] | ((uint32_t)h[1] << 16);
            hv.y = (uint32_t)h[2] | ((uint32_t)h[3] << 16);
            lv.x = (uint32_t)l[0] | ((uint32_t)l[1] << 16);
            lv.y = (uint32_t)l[2] | ((uint32_t)l[3] << 16);
            *(uint2 *)(hi + o) = hv;
            *(uint2 *)(lo + o) = lv;
        }
    }
}

extern "C" int lc_dequant_half(void *stream, lc_tensor w, int64_t n0, int64_t rows, void *hi,
                               void *lo) {
    if (!lc_fast_w_ok(w) || !lc_al(hi, 8) || !lc_al(lo, 8)) return (int)cudaErrorInvalidValue;
    const int ue = lc_fmt_ue(w.dtype);
    const int64_t n_units = rows * (w.ne[0] / ue);
    if (n_units <= 0) return 0;
    int g = lc_blocks(n_units, 256);
    if (g > 65535 * 4) g = 65535 * 4;
    cudaStream_t st = (cudaStream_t)stream;
    uint16_t *h = (uint16_t *)hi, *l = (uint16_t *)lo;
    switch (w.dtype) {
    case LOOM_Q8_0:
        lc_dequant_half_k<LOOM_Q8_0><<<g, 256, 0, st>>>(w, n0, rows, h, l);
        break;
    case LOOM_Q4_0:
        lc_dequant_half_k<LOOM_Q4_0><<<g, 256, 0, st>>>(w, n0, rows, h, l);
        break;
    case LOOM_NF4:
        lc_dequant_half_k<LOOM_NF4><<<g, 256, 0, st>>>(w, n0, rows, h, l);
        break;
    case LOOM_NF4_DQ:
        lc_dequant_half_k<LOOM_NF4_DQ><<<g, 256, 0, st>>>(w, n0, rows, h, l);
        break;
    default:
        return (int)cudaErrorInvalidValue;
    }
    return lc_status();
}
