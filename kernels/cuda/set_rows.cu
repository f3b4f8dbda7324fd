/* kernels/cuda/set_rows.cu - in-place row write (loom_set_rows, ADR 0011):
 * dst[:, rows[t, b], b] = convert(src[:, t, b]), the KV-cache append.
 *
 * One block per (t, b); threads stride over the row. The destination is the
 * node itself (its storage is dst's), written through its byte strides as
 * f32, f16 or bf16 with the same rounding as libloom (quantized caches stay
 * on the cpu: q8_0 must match ggml byte for byte). A row outside [0, R)
 * sets LC_ERR_BAD_ROW in the error word and writes nothing for that (t, b);
 * synchronize turns it into an error naming the node. */
#include "kernels/cuda/common.cuh"

static __global__ void lc_set_rows_k(lc_tensor y, lc_tensor src, lc_tensor rows, int *err) {
    const int64_t T = src.ne[1], r = blockIdx.x;
    const int64_t t = r % T, b = r / T;
    const int64_t rb = rows.ne[1] == 1 ? 0 : b;
    const int32_t row = *(const int32_t *)(rows.data + t * rows.nb[0] + rb * rows.nb[1]);
    if (row < 0 || row >= y.ne[1]) {
        if (threadIdx.x == 0) atomicCAS(err, LC_ERR_NONE, LC_ERR_BAD_ROW);
        return;
    }
    char *base = y.data + (int64_t)row * y.nb[1] + b * y.nb[2];
    for (int64_t i = threadIdx.x; i < y.ne[0]; i += blockDim.x) {
        const float v = lc_get(src, i, t, b, 0);
        char *p = base + i * y.nb[0];
        if (y.dtype == LOOM_F32)
            *(float *)p = v;
        else if (y.dtype == LOOM_F16)
            *(uint16_t *)p = lc_f32_to_f16(v);
        else
            *(uint16_t *)p = lc_f32_to_bf16(v);
    }
}

extern "C" int lc_set_rows(void *stream, lc_tensor y, lc_tensor src, lc_tensor rows,
                           int *err_word) {
    const int64_t n = src.ne[1] * src.ne[2];
    if (n == 0 || y.ne[0] == 0) return 0;
    if (n > 0x7fffffff) return (int)cudaErrorInvalidValue;
    lc_set_rows_k<<<(unsigned)n, 128, 0, (cudaStream_t)stream>>>(y, src, rows, err_word);
    return lc_status();
}
