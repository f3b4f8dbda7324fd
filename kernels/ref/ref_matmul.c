/* kernels/ref/ref_matmul.c - reference matmul (the oracle for every backend).
 *
 * out[n,m,i2,i3] = sum_k w[k,n,i2/r2,i3/r3] * x[k,m,i2,i3], accumulated in
 * double. Weight rows are dequantized whole with loom_ref_get_row (so every
 * weight dtype, nf4 included, goes through the one shared dequantizer);
 * activations are read element by element through their strides, so
 * transposed or permuted views need no copy. */
#include <stdlib.h>

#include "kernels/ref/ref_ops.h"

/* Columns of x converted to float at a time: bounds the scratch size while
 * still dequantizing each weight row only once per tile of columns. */
#define LOOM_REF_MM_TILE 32

static bool loom_ref_mm_weight_ok(loom_dtype t) {
    return t == LOOM_F32 || t == LOOM_F16 || t == LOOM_BF16 || t == LOOM_Q8_0 || t == LOOM_Q4_0 ||
           t == LOOM_NF4 || t == LOOM_NF4_DQ || loom_op_weight_dtype_ok(LOOM_OP_MATMUL, t);
}

loom_status loom_ref_matmul(const loom_ref_ctx *c) {
    const loom_tensor *out = c->node;
    const loom_tensor *w = out->src[0];
    const loom_tensor *x = out->src[1];
    if (!w || !x) return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "matmul: missing source");
    if (!loom_ref_mm_weight_ok(w->dtype) || !loom_dtype_is_float(x->dtype) ||
        out->dtype != LOOM_F32)
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "matmul: unsupported dtypes w=%s x=%s out=%s",
                             loom_dtype_name(w->dtype), loom_dtype_name(x->dtype),
                             loom_dtype_name(out->dtype));

    const int64_t K = w->ne[0], N = w->ne[1], W2 = w->ne[2], W3 = w->ne[3];
    const int64_t M = x->ne[1], X2 = x->ne[2], X3 = x->ne[3];
    if (x->ne[0] != K || W2 <= 0 || W3 <= 0 || X2 % W2 != 0 || X3 % W3 != 0 ||
        (!loom_dtype_is_nf4(w->dtype) && K % loom_dtype_block_size(w->dtype) != 0) ||
        out->ne[0] != N || out->ne[1] != M || out->ne[2] != X2 || out->ne[3] != X3)
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "matmul: shape mismatch");
    /* (nf4 rows need not be block aligned: its blocks run over the whole
     * tensor and loom_ref_get_row dequantizes from any element offset.) */
    const int64_t r2 = X2 / W2, r3 = X3 / W3;

    /* Work unit: one (n, i2, i3) output row, n fastest, so consecutive units
     * of a thread share the same activation slice. */
    int64_t lo, hi;
    loom_ref_range(c, N * X2 * X3, &lo, &hi);
    if (lo >= hi || M == 0) return LOOM_OK;

    float *wrow = malloc((size_t)(K > 0 ? K : 1) * sizeof(float));
    float *xt = malloc((size_t)(K > 0 ? K : 1) * LOOM_REF_MM_TILE * sizeof(float));
    if (!wrow || !xt) {
        free(wrow);
        free(xt);
        return loom_ref_fail(c, LOOM_ERR_OOM, "matmul: out of memory for scratch");
    }

    for (int64_t r = lo; r < hi;) {
        const int64_t slice = r / N; /* i2 + X2 * i3 */
        const int64_t i2 = slice % X2, i3 = slice / X2;
        const int64_t seg_end = (slice + 1) * N < hi ? (slice + 1) * N : hi;
        const int64_t n0 = r - slice * N, n1 = seg_end - slice * N;

        for (int64_t m0 = 0; m0 < M; m0 += LOOM_REF_MM_TILE) {
            const int64_t mt = M - m0 < LOOM_REF_MM_TILE ? M - m0 : LOOM_REF_MM_TILE;
            for (int64_t mm = 0; mm < mt; mm++)
                for (int64_t k = 0; k < K; k++)
                    xt[mm * K + k] = loom_ref_get_f32(x, k, m0 + mm, i2, i3);

            for (int64_t n = n0; n < n1; n++) {
                loom_ref_get_row(w, n, i2 / r2, i3 / r3, wrow);
                for (int64_t mm = 0; mm < mt; mm++) {
                    const float *xv = xt + mm * K;
                    double acc = 0.0;
                    for (int64_t k = 0; k < K; k++)
                        acc += (double)wrow[k] * (double)xv[k];
                    *(float *)loom_ref_ptr(out, n, m0 + mm, i2, i3) = (float)acc;
                }
            }
        }
        r = seg_end;
    }

    free(wrow);
    free(xt);
    return LOOM_OK;
}
