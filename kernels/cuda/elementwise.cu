/* kernels/cuda/elementwise.cu - add/mul with broadcast, scale, silu, swiglu,
 * silu_back, gelu, gelu_back, cpy (f32/f16/bf16/i32 out, plain or q8_0/q4_0 in) and get_rows.
 *
 * One thread per output element, grid-stride; inputs are read through their
 * byte strides so views need no copy (as in kernels/ref). Pointwise math is
 * f32 (the reference uses double; the difference is ~1 ulp per element). */
#include "kernels/cuda/common.cuh"

#define LC_THREADS 256

static __global__ void lc_binary_k(lc_tensor y, lc_tensor a, lc_tensor b, int op_mul, int64_t n) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t i0, i1, i2, i3;
        lc_unravel(y.ne, e, i0, i1, i2, i3);
        const float av = lc_get(a, i0, i1, i2, i3);
        /* A broadcast dim of b (extent 1) always reads index 0. */
        const float bv = lc_get(b, b.ne[0] == 1 ? 0 : i0, b.ne[1] == 1 ? 0 : i1,
                                b.ne[2] == 1 ? 0 : i2, b.ne[3] == 1 ? 0 : i3);
        *lc_outp(y, i0, i1, i2, i3) = op_mul ? av * bv : av + bv;
    }
}

extern "C" int lc_binary(void *stream, int op_mul, lc_tensor y, lc_tensor a, lc_tensor b) {
    const int64_t n = y.ne[0] * y.ne[1] * y.ne[2] * y.ne[3];
    if (n == 0) return 0;
    int g = lc_blocks(n, LC_THREADS);
    if (g > 65535) g = 65535;
    lc_binary_k<<<g, LC_THREADS, 0, (cudaStream_t)stream>>>(y, a, b, op_mul, n);
    return lc_status();
}

static __global__ void lc_unary_k(lc_tensor y, lc_tensor a, lc_tensor b, int kind, float s,
                                  int64_t n) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t i0, i1, i2, i3;
        lc_unravel(y.ne, e, i0, i1, i2, i3);
        const float x = lc_get(a, i0, i1, i2, i3);
        float v;
        if (kind == 0) {
            v = x * s;
        } else if (kind == 4) { /* exact gelu: x Phi(x), Phi = erfc(-x/sqrt 2)/2 */
            v = x * 0.5f * erfcf(-x * 0.70710678f);
        } else if (kind == 5) { /* gelu_back: dy (Phi(x) + x phi(x)) */
            v = lc_get(b, i0, i1, i2, i3) *
                (0.5f * erfcf(-x * 0.70710678f) + x * 0.39894228f * expf(-0.5f * x * x));
        } else {
            const float sg = 1.0f / (1.0f + expf(-x));
            if (kind == 1)
                v = x * sg;
            else if (kind == 2)
                v = x * sg * lc_get(b, i0, i1, i2, i3);
            else /* silu_back: dy * sig(x) * (1 + x*(1 - sig(x))) */
                v = lc_get(b, i0, i1, i2, i3) * sg * (1.0f + x * (1.0f - sg));
        }
        *lc_outp(y, i0, i1, i2, i3) = v;
    }
}

extern "C" int lc_unary(void *stream, int kind, float s, lc_tensor y, lc_tensor a, lc_tensor b) {
    const int64_t n = y.ne[0] * y.ne[1] * y.ne[2] * y.ne[3];
    if (n == 0) return 0;
    int g = lc_blocks(n, LC_THREADS);
    if (g > 65535) g = 65535;
    lc_unary_k<<<g, LC_THREADS, 0, (cudaStream_t)stream>>>(y, a, b, kind, s, n);
    return lc_status();
}

static __global__ void lc_cpy_k(lc_tensor y, lc_tensor a, int64_t n) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t i0, i1, i2, i3;
        lc_unravel(y.ne, e, i0, i1, i2, i3);
        char *dst = y.data + i0 * y.nb[0] + i1 * y.nb[1] + i2 * y.nb[2] + i3 * y.nb[3];
        if (y.dtype == a.dtype && (a.dtype == LOOM_I32 || a.dtype == LOOM_F32)) {
            *(uint32_t *)dst = *(const uint32_t *)lc_ptr(a, i0, i1, i2, i3); /* exact bytes */
            continue;
        }
        if (y.dtype == a.dtype && (a.dtype == LOOM_F16 || a.dtype == LOOM_BF16)) {
            *(uint16_t *)dst = *(const uint16_t *)lc_ptr(a, i0, i1, i2, i3);
            continue;
        }
        const float v = lc_get(a, i0, i1, i2, i3);
        switch (y.dtype) {
        case LOOM_F32:
            *(float *)dst = v;
            break;
        case LOOM_F16:
            *(uint16_t *)dst = lc_f32_to_f16(v);
            break;
        case LOOM_BF16:
            *(uint16_t *)dst = lc_f32_to_bf16(v);
            break;
        default:
            break; /* supports() admits nothing else */
        }
    }
}

extern "C" int lc_cpy(void *stream, lc_tensor y, lc_tensor a) {
    const int64_t n = y.ne[0] * y.ne[1] * y.ne[2] * y.ne[3];
    if (n == 0) return 0;
    int g = lc_blocks(n, LC_THREADS);
    if (g > 65535) g = 65535;
    lc_cpy_k<<<g, LC_THREADS, 0, (cudaStream_t)stream>>>(y, a, n);
    return lc_status();
}

/* One block per output row (t, b); an id outside [0, V) sets the error word
 * and leaves that row untouched (the reference stops with an error too). */
static __global__ void lc_get_rows_k(lc_tensor y, lc_tensor table, lc_tensor ids, int *err) {
    const int64_t T = ids.ne[0], r = blockIdx.x;
    const int64_t t = r % T, b = r / T;
    const int32_t id = *(const int32_t *)(ids.data + t * ids.nb[0] + b * ids.nb[1]);
    if (id < 0 || id >= table.ne[1]) {
        if (threadIdx.x == 0) atomicCAS(err, LC_ERR_NONE, LC_ERR_BAD_ID);
        return;
    }
    const int64_t tb = table.ne[2] == 1 ? 0 : b;
    for (int64_t d = threadIdx.x; d < y.ne[0]; d += blockDim.x)
        *lc_outp(y, d, t, b, 0) = lc_get(table, d, id, tb, 0);
}

extern "C" int lc_get_rows(void *stream, lc_tensor y, lc_tensor table, lc_tensor ids,
                           int *err_word) {
    const int64_t rows = ids.ne[0] * ids.ne[1];
    if (rows == 0 || y.ne[0] == 0) return 0;
    if (rows > 0x7fffffff) return (int)cudaErrorInvalidValue;
    lc_get_rows_k<<<(unsigned)rows, 128, 0, (cudaStream_t)stream>>>(y, table, ids, err_word);
    return lc_status();
}
