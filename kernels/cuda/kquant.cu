/* kernels/cuda/kquant.cu - matmul with k-quant weights (q2_K..q6_K, ADR 0024):
 * one warp per output element, lanes striding over K, each weight element
 * dequantized by lc_kq_elem, f32 accumulation and a warp reduction. A first
 * version for correctness on every GPU backend (compile-checked with nvcc;
 * no device was available when it was written); the tiled/fast paths of
 * matmul.cu and integer dot products are the next step. */
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/kquant.cuh"

#define LC_KQ_WARPS 4

static __global__ void lc_matmul_kq_k(lc_tensor out, lc_tensor w, lc_tensor x, int64_t r2,
                                      int64_t r3, int64_t total) {
    const int64_t o = (int64_t)blockIdx.x * LC_KQ_WARPS + threadIdx.x / LOOM_WARP;
    if (o >= total) return;
    const int lane = threadIdx.x % LOOM_WARP;
    const int64_t N = w.ne[1], M = x.ne[1], X2 = x.ne[2];
    const int64_t n = o % N, m = (o / N) % M, s = o / (N * M), i2 = s % X2, i3 = s / X2;
    const char *row = w.data + n * w.nb[1] + (i2 / r2) * w.nb[2] + (i3 / r3) * w.nb[3];
    float acc = 0.0f;
    for (int64_t k = lane; k < w.ne[0]; k += LOOM_WARP)
        acc += lc_kq_elem(w.dtype, row, k) * lc_get(x, k, m, i2, i3);
    acc = lc_warp_sum(acc);
    if (lane == 0) *lc_outp(out, n, m, i2, i3) = acc;
}

extern "C" int lc_matmul_kq(void *stream, lc_tensor out, lc_tensor w, lc_tensor x) {
    if (!lc_is_kq(w.dtype) || w.ne[0] % LOOM_QK_K != 0 || w.ne[2] <= 0 || w.ne[3] <= 0)
        return (int)cudaErrorInvalidValue;
    const int64_t total = w.ne[1] * x.ne[1] * x.ne[2] * x.ne[3];
    if (total == 0) return 0;
    const int64_t blocks = (total + LC_KQ_WARPS - 1) / LC_KQ_WARPS;
    if (blocks > 0x7fffffff) return (int)cudaErrorInvalidValue;
    lc_matmul_kq_k<<<(unsigned)blocks, LC_KQ_WARPS * LOOM_WARP, 0, (cudaStream_t)stream>>>(
        out, w, x, x.ne[2] / w.ne[2], x.ne[3] / w.ne[3], total);
    return lc_status();
}
