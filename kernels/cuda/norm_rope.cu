/* kernels/cuda/norm_rope.cu - rms_norm, softmax (scale, causal mask,
 * q_offset) and rope (normal/neox, llama3 scaling).
 *
 * Row ops use one block of LC_ROW_THREADS per row: each thread strides over
 * the row, a warp shuffle reduction then one across the block's warps.
 * Inputs go through their strides. rope computes its angle in double, as
 * kernels/ref does, so cos/sin round to the same floats. */
#include "kernels/cuda/common.cuh"

#define LC_ROW_THREADS 256

/* Sum (max when is_max) over the block; every thread gets the result. */
static __device__ float lc_block_reduce(float v, bool is_max) {
    __shared__ float part[LC_ROW_THREADS / LOOM_WARP];
    __shared__ float result;
    v = is_max ? lc_warp_max(v) : lc_warp_sum(v);
    const int w = threadIdx.x / LOOM_WARP, l = threadIdx.x % LOOM_WARP;
    if (l == 0) part[w] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        float r = part[0];
        for (int i = 1; i < (int)(blockDim.x / LOOM_WARP); i++)
            r = is_max ? fmaxf(r, part[i]) : r + part[i];
        result = r;
    }
    __syncthreads();
    const float r = result;
    __syncthreads(); /* part/result are reused by the next call */
    return r;
}

static __device__ void lc_row_of(const lc_tensor &y, int64_t r, int64_t &i1, int64_t &i2,
                                 int64_t &i3) {
    i1 = r % y.ne[1];
    i2 = (r / y.ne[1]) % y.ne[2];
    i3 = r / (y.ne[1] * y.ne[2]);
}

static __global__ void lc_rms_norm_k(lc_tensor y, lc_tensor x, float eps) {
    int64_t i1, i2, i3;
    lc_row_of(y, blockIdx.x, i1, i2, i3);
    const int64_t n = y.ne[0];
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const float v = lc_get(x, i, i1, i2, i3);
        ss += v * v;
    }
    ss = lc_block_reduce(ss, false);
    const float inv = 1.0f / sqrtf(ss / (float)n + eps);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        *lc_outp(y, i, i1, i2, i3) = lc_get(x, i, i1, i2, i3) * inv;
}

static int64_t lc_rows(const lc_tensor &y) {
    return y.ne[1] * y.ne[2] * y.ne[3];
}

extern "C" int lc_rms_norm(void *stream, float eps, lc_tensor y, lc_tensor x) {
    const int64_t rows = lc_rows(y);
    if (rows == 0) return 0;
    if (rows > 0x7fffffff) return (int)cudaErrorInvalidValue;
    lc_rms_norm_k<<<(unsigned)rows, LC_ROW_THREADS, 0, (cudaStream_t)stream>>>(y, x, eps);
    return lc_status();
}

static __global__ void lc_softmax_k(lc_tensor y, lc_tensor x, float scale, int causal,
                                    int q_offset) {
    int64_t i1, i2, i3;
    lc_row_of(y, blockIdx.x, i1, i2, i3);
    const int64_t n = y.ne[0];
    int64_t n_vis = n; /* keys n' > i1 + q_offset are masked */
    if (causal) {
        const int64_t last = i1 + q_offset;
        n_vis = last < 0 ? 0 : (last + 1 < n ? last + 1 : n);
    }
    float mx = -INFINITY;
    for (int64_t i = threadIdx.x; i < n_vis; i += blockDim.x)
        mx = fmaxf(mx, scale * lc_get(x, i, i1, i2, i3));
    mx = lc_block_reduce(mx, true);
    if (mx == -INFINITY) { /* fully masked (or all -inf): zeros, not NaN */
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
            *lc_outp(y, i, i1, i2, i3) = 0.0f;
        return;
    }
    float sum = 0.0f;
    for (int64_t i = threadIdx.x; i < n_vis; i += blockDim.x)
        sum += expf(scale * lc_get(x, i, i1, i2, i3) - mx);
    sum = lc_block_reduce(sum, false);
    const float inv = 1.0f / sum;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        *lc_outp(y, i, i1, i2, i3) =
            i < n_vis ? expf(scale * lc_get(x, i, i1, i2, i3) - mx) * inv : 0.0f;
}

extern "C" int lc_softmax(void *stream, float scale, int causal, int q_offset, lc_tensor y,
                          lc_tensor x) {
    const int64_t rows = lc_rows(y);
    if (rows == 0) return 0;
    if (rows > 0x7fffffff) return (int)cudaErrorInvalidValue;
    lc_softmax_k<<<(unsigned)rows, LC_ROW_THREADS, 0, (cudaStream_t)stream>>>(y, x, scale, causal,
                                                                              q_offset);
    return lc_status();
}

typedef struct lc_rope_p {
    int n_dims, mode, inverse;
} lc_rope_p;

/* One thread per (pair or pass-through dim, row). inv_freq: the host's
 * loom_rope_freq_table on the device (the one place the rule lives). */
static __global__ void lc_rope_k(lc_tensor y, lc_tensor x, lc_tensor pos, lc_rope_p p,
                                 const double *inv_freq, int64_t n) {
    const int64_t hd = y.ne[0], half = p.n_dims / 2, per_row = half + (hd - p.n_dims);
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t j = e % per_row, r = e / per_row;
        int64_t i1, i2, i3;
        lc_row_of(y, r, i1, i2, i3);
        if (j >= half) { /* dims >= n_dims pass through */
            const int64_t d = p.n_dims + (j - half);
            *lc_outp(y, d, i1, i2, i3) = lc_get(x, d, i1, i2, i3);
            continue;
        }
        const int32_t t_pos = *(const int32_t *)(pos.data + i2 * pos.nb[0]);
        const double angle = (double)t_pos * inv_freq[j];
        const float cs = (float)cos(angle), sn = (float)((p.inverse ? -1.0 : 1.0) * sin(angle));
        const int64_t ja = p.mode == 2 ? j : 2 * j, jb = p.mode == 2 ? j + half : 2 * j + 1;
        const double a = lc_get(x, ja, i1, i2, i3), b = lc_get(x, jb, i1, i2, i3);
        /* double like the reference: a*cs - b*sn rounded once */
        *lc_outp(y, ja, i1, i2, i3) = (float)(a * cs - b * sn);
        *lc_outp(y, jb, i1, i2, i3) = (float)(a * sn + b * cs);
    }
}

extern "C" int lc_rope(void *stream, int n_dims, int mode, int inverse, const double *inv_freq,
                       lc_tensor y, lc_tensor x, lc_tensor pos) {
    lc_rope_p p = {n_dims, mode, inverse};
    const int64_t per_row = n_dims / 2 + (y.ne[0] - n_dims);
    const int64_t n = per_row * lc_rows(y);
    if (n == 0) return 0;
    int g = lc_blocks(n, 256);
    if (g > 65535) g = 65535;
    lc_rope_k<<<g, 256, 0, (cudaStream_t)stream>>>(y, x, pos, p, inv_freq, n);
    return lc_status();
}
