/* kernels/ref/ref_elementwise.c - reference add, mul, scale, silu, swiglu,
 * silu_back, gelu, gelu_back, cpy, concat and sum_to.
 *
 * Inputs are read element by element through their byte strides, so any
 * view (transposed, permuted, sliced) works without a copy. Outputs are the
 * node's own contiguous storage. Pointwise math is done in double and
 * rounded once to float, so the oracle carries no intermediate f32 error.
 * Work is split over output rows (i1, i2, i3). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ref/ref_ops.h"

static double loom_ref_sigmoid(double x) {
    return 1.0 / (1.0 + exp(-x));
}

/* ---------------- binary with broadcast ---------------- */

typedef enum { LOOM_REF_ADD, LOOM_REF_MUL } loom_ref_binop;

static loom_status loom_ref_binary(const loom_ref_ctx *c, loom_ref_binop op, const char *name) {
    const loom_tensor *y = c->node, *a = y->src[0], *b = y->src[1];
    if (!a || !b) return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "%s: missing source", name);
    for (int i = 0; i < LOOM_MAX_DIMS; i++)
        if (y->ne[i] != a->ne[i] || (b->ne[i] != a->ne[i] && b->ne[i] != 1))
            return loom_ref_fail(c, LOOM_ERR_INVALID_ARG,
                                 "%s: b extent %lld at dim %d cannot broadcast to %lld", name,
                                 (long long)b->ne[i], i, (long long)a->ne[i]);
    int64_t lo, hi;
    loom_ref_range(c, loom_ref_nrows(y), &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        int64_t i1, i2, i3;
        loom_ref_row_index(y->ne, r, &i1, &i2, &i3);
        /* A broadcast dim of b (extent 1) always reads index 0. */
        const int64_t j1 = b->ne[1] == 1 ? 0 : i1, j2 = b->ne[2] == 1 ? 0 : i2,
                      j3 = b->ne[3] == 1 ? 0 : i3;
        for (int64_t i0 = 0; i0 < y->ne[0]; i0++) {
            const double av = loom_ref_get_f32(a, i0, i1, i2, i3);
            const double bv = loom_ref_get_f32(b, b->ne[0] == 1 ? 0 : i0, j1, j2, j3);
            *loom_ref_out(y, i0, i1, i2, i3) = (float)(op == LOOM_REF_ADD ? av + bv : av * bv);
        }
    }
    return LOOM_OK;
}

loom_status loom_ref_add(const loom_ref_ctx *c) {
    return loom_ref_binary(c, LOOM_REF_ADD, "add");
}
loom_status loom_ref_mul(const loom_ref_ctx *c) {
    return loom_ref_binary(c, LOOM_REF_MUL, "mul");
}

/* ---------------- unary / same-shape pointwise ---------------- */

typedef enum {
    LOOM_REF_SCALE,
    LOOM_REF_SILU,
    LOOM_REF_SWIGLU,    /* silu(src0) * src1 */
    LOOM_REF_SILU_BACK, /* src0 = x, src1 = dy */
    LOOM_REF_GELU,      /* x Phi(x), erf form */
    LOOM_REF_GELU_BACK, /* src0 = x, src1 = dy */
} loom_ref_pointop;

static loom_status loom_ref_pointwise(const loom_ref_ctx *c, loom_ref_pointop op, const char *name,
                                      int n_src) {
    const loom_tensor *y = c->node, *a = y->src[0], *b = n_src > 1 ? y->src[1] : NULL;
    if (!a || (n_src > 1 && !b))
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "%s: missing source", name);
    if (!loom_ref_same_shape(y, a) || (b && !loom_ref_same_shape(y, b)))
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "%s: shape mismatch", name);
    const double s = y->p.f[0];
    int64_t lo, hi;
    loom_ref_range(c, loom_ref_nrows(y), &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        int64_t i1, i2, i3;
        loom_ref_row_index(y->ne, r, &i1, &i2, &i3);
        for (int64_t i0 = 0; i0 < y->ne[0]; i0++) {
            const double x = loom_ref_get_f32(a, i0, i1, i2, i3);
            const double u = b ? loom_ref_get_f32(b, i0, i1, i2, i3) : 0.0;
            double v = 0.0;
            switch (op) {
            case LOOM_REF_SCALE:
                v = x * s;
                break;
            case LOOM_REF_SILU:
                v = x * loom_ref_sigmoid(x);
                break;
            case LOOM_REF_SWIGLU:
                v = x * loom_ref_sigmoid(x) * u;
                break;
            case LOOM_REF_SILU_BACK: {
                /* d/dx x*sig(x) = sig(x) * (1 + x*(1 - sig(x))) */
                const double sg = loom_ref_sigmoid(x);
                v = u * sg * (1.0 + x * (1.0 - sg));
                break;
            }
            case LOOM_REF_GELU: /* Phi(x) = (1 + erf(x / sqrt 2)) / 2 */
                v = 0.5 * x * (1.0 + erf(x * 0.70710678118654752440));
                break;
            case LOOM_REF_GELU_BACK: /* d/dx x Phi(x) = Phi(x) + x phi(x) */
                v = u * (0.5 * (1.0 + erf(x * 0.70710678118654752440)) +
                         x * 0.39894228040143267794 * exp(-0.5 * x * x));
                break;
            }
            *loom_ref_out(y, i0, i1, i2, i3) = (float)v;
        }
    }
    return LOOM_OK;
}

loom_status loom_ref_scale(const loom_ref_ctx *c) {
    return loom_ref_pointwise(c, LOOM_REF_SCALE, "scale", 1);
}
loom_status loom_ref_silu(const loom_ref_ctx *c) {
    return loom_ref_pointwise(c, LOOM_REF_SILU, "silu", 1);
}
loom_status loom_ref_swiglu(const loom_ref_ctx *c) {
    return loom_ref_pointwise(c, LOOM_REF_SWIGLU, "swiglu", 2);
}
loom_status loom_ref_silu_back(const loom_ref_ctx *c) {
    return loom_ref_pointwise(c, LOOM_REF_SILU_BACK, "silu_back", 2);
}
loom_status loom_ref_gelu(const loom_ref_ctx *c) {
    return loom_ref_pointwise(c, LOOM_REF_GELU, "gelu", 1);
}
loom_status loom_ref_gelu_back(const loom_ref_ctx *c) {
    return loom_ref_pointwise(c, LOOM_REF_GELU_BACK, "gelu_back", 2);
}

/* ---------------- cpy ---------------- */

/* Bytes of one element of a plain (block size 1) dtype. */
static size_t loom_ref_elem_bytes(loom_dtype t) {
    return loom_dtype_block_bytes(t);
}

/* Whole-tensor path for an nf4 destination: nf4 blocks and (for nf4_dq) the
 * second-level scales span rows, so the tensor is gathered as f32 and
 * quantized in one go, by thread 0 alone. */
static loom_status loom_ref_cpy_to_nf4(const loom_ref_ctx *c) {
    const loom_tensor *y = c->node, *a = y->src[0];
    if (c->ith != 0) return LOOM_OK;
    const int64_t n = loom_tensor_nelements(y);
    const int64_t d0 = a->ne[0];
    float *buf = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!buf)
        return loom_ref_fail(c, LOOM_ERR_OOM, "cpy: out of memory (%lld floats)", (long long)n);
    for (int64_t r = 0; r < loom_ref_nrows(a); r++) {
        int64_t i1, i2, i3;
        loom_ref_row_index(a->ne, r, &i1, &i2, &i3);
        loom_ref_get_row(a, i1, i2, i3, buf + r * d0);
    }
    const loom_status s = loom_convert(LOOM_F32, buf, y->dtype, loom_ref_ptr(y, 0, 0, 0, 0), n);
    free(buf);
    if (s != LOOM_OK)
        return loom_ref_fail(c, s, "cpy: conversion to %s failed", loom_dtype_name(y->dtype));
    return LOOM_OK;
}

loom_status loom_ref_cpy(const loom_ref_ctx *c) {
    const loom_tensor *y = c->node, *a = y->src[0];
    if (!a) return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "cpy: missing source");
    if (!loom_ref_same_shape(y, a))
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "cpy: shape mismatch");
    if (loom_dtype_is_nf4(y->dtype)) return loom_ref_cpy_to_nf4(c);

    const int64_t d0 = y->ne[0];
    /* Row-blocked quantized rows hold whole blocks (an nf4 source is read by
     * element offset and has no such constraint). */
    const int64_t a_bs = loom_dtype_is_nf4(a->dtype) ? 1 : loom_dtype_block_size(a->dtype);
    if (d0 % loom_dtype_block_size(y->dtype) != 0 || d0 % a_bs != 0)
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG,
                             "cpy: row length %lld is not a multiple of the block size",
                             (long long)d0);
    /* Same plain dtype: move the element bytes (exact, also for i32 values
     * that a float round trip would round). Same row-blocked quantized dtype:
     * copy the row's blocks. Otherwise convert the row through f32. */
    const bool same = a->dtype == y->dtype && !loom_dtype_is_nf4(a->dtype);
    float *row = NULL;
    if (!same) {
        row = malloc((size_t)(d0 > 0 ? d0 : 1) * sizeof(float));
        if (!row) return loom_ref_fail(c, LOOM_ERR_OOM, "cpy: out of memory");
    }
    loom_status st = LOOM_OK;
    int64_t lo, hi;
    loom_ref_range(c, loom_ref_nrows(y), &lo, &hi);
    for (int64_t r = lo; r < hi && st == LOOM_OK; r++) {
        int64_t i1, i2, i3;
        loom_ref_row_index(y->ne, r, &i1, &i2, &i3);
        char *dst = loom_ref_ptr(y, 0, i1, i2, i3);
        if (same && loom_dtype_is_quantized(y->dtype)) {
            memcpy(dst, loom_ref_ptr(a, 0, i1, i2, i3), loom_dtype_nbytes(y->dtype, d0));
        } else if (same) {
            const size_t eb = loom_ref_elem_bytes(y->dtype);
            for (int64_t i0 = 0; i0 < d0; i0++)
                memcpy(dst + (size_t)i0 * eb, loom_ref_ptr(a, i0, i1, i2, i3), eb);
        } else {
            loom_ref_get_row(a, i1, i2, i3, row);
            st = loom_quantize_row(y->dtype, row, dst, d0);
        }
    }
    free(row);
    if (st != LOOM_OK)
        return loom_ref_fail(c, st, "cpy: conversion %s -> %s failed", loom_dtype_name(a->dtype),
                             loom_dtype_name(y->dtype));
    return LOOM_OK;
}

/* ---------------- concat ---------------- */

/* Copy n elements starting at (i0, i1, i2, i3) of src into y's row at y_i0.
 * Same dtype: bytes (blocks for quantized, i0 and n block-aligned);
 * otherwise y is f32 and values convert through loom_ref_get_f32. */
static void loom_ref_copy_span(const loom_tensor *y, int64_t y_i0, int64_t y1, int64_t y2,
                               int64_t y3, const loom_tensor *src, int64_t i0, int64_t i1,
                               int64_t i2, int64_t i3, int64_t n) {
    if (src->dtype == y->dtype && loom_dtype_is_quantized(y->dtype)) {
        memcpy(loom_ref_ptr(y, y_i0, y1, y2, y3), loom_ref_ptr(src, i0, i1, i2, i3),
               loom_dtype_nbytes(y->dtype, n));
    } else if (src->dtype == y->dtype) {
        const size_t eb = loom_ref_elem_bytes(y->dtype);
        for (int64_t k = 0; k < n; k++)
            memcpy(loom_ref_ptr(y, y_i0 + k, y1, y2, y3), loom_ref_ptr(src, i0 + k, i1, i2, i3),
                   eb);
    } else {
        for (int64_t k = 0; k < n; k++)
            *loom_ref_out(y, y_i0 + k, y1, y2, y3) = loom_ref_get_f32(src, i0 + k, i1, i2, i3);
    }
}

loom_status loom_ref_concat(const loom_ref_ctx *c) {
    const loom_tensor *y = c->node, *a = y->src[0], *b = y->src[1];
    const int dim = y->p.i[0];
    if (!a || !b) return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "concat: missing source");
    if (dim < 0 || dim >= LOOM_MAX_DIMS)
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "concat: bad dim %d", dim);
    for (int i = 0; i < LOOM_MAX_DIMS; i++) {
        const bool ok = i == dim ? y->ne[i] == a->ne[i] + b->ne[i]
                                 : y->ne[i] == a->ne[i] && y->ne[i] == b->ne[i];
        if (!ok)
            return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "concat: extents differ at dim %d", i);
    }
    const bool mixed = a->dtype != y->dtype || b->dtype != y->dtype;
    if (mixed && (y->dtype != LOOM_F32 || loom_dtype_is_quantized(a->dtype) ||
                  loom_dtype_is_quantized(b->dtype)))
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "concat: dtypes %s + %s -> %s",
                             loom_dtype_name(a->dtype), loom_dtype_name(b->dtype),
                             loom_dtype_name(y->dtype));
    if (loom_dtype_is_nf4(y->dtype))
        return loom_ref_fail(c, LOOM_ERR_UNSUPPORTED, "concat: nf4 is not row-addressable");
    if (dim == 0 && a->ne[0] % loom_dtype_block_size(y->dtype) != 0)
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "concat: dim 0 split is not block-aligned");

    int64_t lo, hi;
    loom_ref_range(c, loom_ref_nrows(y), &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        int64_t i1, i2, i3;
        loom_ref_row_index(y->ne, r, &i1, &i2, &i3);
        if (dim == 0) {
            loom_ref_copy_span(y, 0, i1, i2, i3, a, 0, i1, i2, i3, a->ne[0]);
            loom_ref_copy_span(y, a->ne[0], i1, i2, i3, b, 0, i1, i2, i3, b->ne[0]);
            continue;
        }
        /* The whole row comes from a, or from b with dim's index shifted. */
        int64_t j[4] = {0, i1, i2, i3};
        const loom_tensor *src = a;
        if (j[dim] >= a->ne[dim]) {
            j[dim] -= a->ne[dim];
            src = b;
        }
        loom_ref_copy_span(y, 0, i1, i2, i3, src, 0, j[1], j[2], j[3], y->ne[0]);
    }
    return LOOM_OK;
}

/* ---------------- sum_to ---------------- */

loom_status loom_ref_sum_to(const loom_ref_ctx *c) {
    const loom_tensor *y = c->node, *a = y->src[0];
    if (!a) return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "sum_to: missing source");
    for (int i = 0; i < LOOM_MAX_DIMS; i++)
        if (y->ne[i] != a->ne[i] && y->ne[i] != 1)
            return loom_ref_fail(c, LOOM_ERR_INVALID_ARG,
                                 "sum_to: extent %lld at dim %d is neither %lld nor 1",
                                 (long long)y->ne[i], i, (long long)a->ne[i]);
    /* Reduced extent per dim: a's extent where y collapses it, else 1. */
    int64_t red[4];
    for (int i = 0; i < LOOM_MAX_DIMS; i++)
        red[i] = y->ne[i] == a->ne[i] ? 1 : a->ne[i];

    /* Each output element is one independent double sum in a fixed order, so
     * the split over output elements does not change any result. */
    const int64_t n = loom_tensor_nelements(y);
    int64_t lo, hi;
    loom_ref_range(c, n, &lo, &hi);
    for (int64_t e = lo; e < hi; e++) {
        const int64_t o0 = e % y->ne[0], o1 = (e / y->ne[0]) % y->ne[1],
                      o2 = (e / (y->ne[0] * y->ne[1])) % y->ne[2],
                      o3 = e / (y->ne[0] * y->ne[1] * y->ne[2]);
        double acc = 0.0;
        for (int64_t k3 = 0; k3 < red[3]; k3++)
            for (int64_t k2 = 0; k2 < red[2]; k2++)
                for (int64_t k1 = 0; k1 < red[1]; k1++)
                    for (int64_t k0 = 0; k0 < red[0]; k0++)
                        acc += loom_ref_get_f32(a, o0 + k0, o1 + k1, o2 + k2, o3 + k3);
        *loom_ref_out(y, o0, o1, o2, o3) = (float)acc;
    }
    return LOOM_OK;
}
