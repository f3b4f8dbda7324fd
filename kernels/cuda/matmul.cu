/* kernels/cuda/matmul.cu - matmul: out[n,m,i2,i3] = sum_k w[k,n,i2/r2,i3/r3] * x[k,m,i2,i3].
 *
 * Two paths (the backend picks, backends/cuda/loom_backend_cuda.cu):
 *  - lc_matmul_rows: one warp per weight row n and a tile of LC_MT columns m.
 *    The weight row is dequantized in registers (templated on its dtype: q8_0,
 *    q4_0, nf4, nf4_dq, f16, bf16, f32), each lane taking k = lane + 32*j, so
 *    a warp reads consecutive bytes of a row; x is read through its strides.
 *    This is the decode kernel (M small) and the fallback for every layout.
 *  - lc_matmul_tiled: 64x64 shared-memory tiles, weights dequantized once per
 *    tile: quantized prefill (fused dequant-GEMM) and GEMM without a BLAS.
 *  - lc_matmul_blas: cuBLAS GemmEx (tensor cores for f16/bf16) for f16/bf16/f32
 *    weights with row-contiguous rows; x is converted to the weight's dtype
 *    first when it differs (lc_convert_half). For bf16 weights x is split into
 *    hi + lo bf16 parts and two GEMMs accumulate, because one bf16 rounding of
 *    x (rel. error 2^-9) would exceed the parity tolerance; for f16 one
 *    rounding (2^-12) stays within it. f32 weights use FP32 compute (no TF32).
 * Accumulation is f32 everywhere. */
#include "kernels/cuda/common.cuh"

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

extern "C" int lc_matmul_rows(void *stream, lc_tensor out, lc_tensor w, lc_tensor x) {
    const int64_t N = w.ne[1], M = x.ne[1], S = x.ne[2] * x.ne[3];
    if (N == 0 || M == 0 || S == 0) return 0;
    const int64_t gy = (M + LC_MT - 1) / LC_MT, gx = (N + LC_WARPS - 1) / LC_WARPS;
    if (gx > 0x7fffffff || gy > 65535 || S > 65535) return (int)cudaErrorInvalidValue;
    const dim3 grid((unsigned)gx, (unsigned)gy, (unsigned)S), block(LC_WARPS * LOOM_WARP);
    const int64_t r2 = x.ne[2] / w.ne[2], r3 = x.ne[3] / w.ne[3];
    cudaStream_t st = (cudaStream_t)stream;
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
