/* kernels/ref/ref_norm.c - reference rms_norm, rms_norm_back, softmax,
 * softmax_back and rope.
 *
 * All are row-wise over ne[0]; work is split over rows (i1, i2, i3). Row
 * reductions (mean of squares, max, sum of exponentials, dot products)
 * accumulate in double; each output is rounded to float once. */
#include <math.h>
#include <stdlib.h>

#include "kernels/ref/ref_ops.h"

/* Checks shared by the row-wise ops: sources present, same shape as output. */
static loom_status loom_ref_check_rows(const loom_ref_ctx *c, int n_src, const char *name) {
    const loom_tensor *y = c->node;
    for (int i = 0; i < n_src; i++) {
        if (!y->src[i])
            return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "%s: missing source %d", name, i);
        if (!loom_ref_same_shape(y, y->src[i]))
            return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "%s: source %d shape mismatch", name, i);
    }
    return LOOM_OK;
}

/* ---------------- rms_norm ---------------- */

loom_status loom_ref_rms_norm(const loom_ref_ctx *c) {
    LOOM_TRY(loom_ref_check_rows(c, 1, "rms_norm"));
    const loom_tensor *y = c->node, *x = y->src[0];
    const double eps = y->p.f[0];
    const int64_t n = y->ne[0];
    int64_t lo, hi;
    loom_ref_range(c, loom_ref_nrows(y), &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        int64_t i1, i2, i3;
        loom_ref_row_index(y->ne, r, &i1, &i2, &i3);
        double ss = 0.0;
        for (int64_t i0 = 0; i0 < n; i0++) {
            const double v = loom_ref_get_f32(x, i0, i1, i2, i3);
            ss += v * v;
        }
        const double denom = sqrt(ss / (double)n + eps);
        for (int64_t i0 = 0; i0 < n; i0++)
            *loom_ref_out(y, i0, i1, i2, i3) = (float)(loom_ref_get_f32(x, i0, i1, i2, i3) / denom);
    }
    return LOOM_OK;
}

/* y = x * r with r = 1/sqrt(mean(x^2) + eps). dr/dx_j = -r^3 x_j / n, so
 * dx = r*dy + x * (-r^3/n) * sum(dy*x) = r*dy - x * r^3 * mean(dy*x). */
loom_status loom_ref_rms_norm_back(const loom_ref_ctx *c) {
    LOOM_TRY(loom_ref_check_rows(c, 2, "rms_norm_back"));
    const loom_tensor *dx = c->node, *x = dx->src[0], *dy = dx->src[1];
    const double eps = dx->p.f[0];
    const int64_t n = dx->ne[0];
    int64_t lo, hi;
    loom_ref_range(c, loom_ref_nrows(dx), &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        int64_t i1, i2, i3;
        loom_ref_row_index(dx->ne, r, &i1, &i2, &i3);
        double ss = 0.0, dot = 0.0;
        for (int64_t i0 = 0; i0 < n; i0++) {
            const double xv = loom_ref_get_f32(x, i0, i1, i2, i3);
            const double g = loom_ref_get_f32(dy, i0, i1, i2, i3);
            ss += xv * xv;
            dot += g * xv;
        }
        const double rr = 1.0 / sqrt(ss / (double)n + eps);
        const double k = rr * rr * rr * (dot / (double)n);
        for (int64_t i0 = 0; i0 < n; i0++) {
            const double xv = loom_ref_get_f32(x, i0, i1, i2, i3);
            const double g = loom_ref_get_f32(dy, i0, i1, i2, i3);
            *loom_ref_out(dx, i0, i1, i2, i3) = (float)(rr * g - xv * k);
        }
    }
    return LOOM_OK;
}

/* ---------------- softmax ---------------- */

loom_status loom_ref_softmax(const loom_ref_ctx *c) {
    LOOM_TRY(loom_ref_check_rows(c, 1, "softmax"));
    const loom_tensor *y = c->node, *x = y->src[0];
    const double scale = y->p.f[0];
    const bool causal = y->p.i[1] != 0;
    const int64_t q_offset = y->p.i[2];
    const int64_t n = y->ne[0];
    int64_t lo, hi;
    loom_ref_range(c, loom_ref_nrows(y), &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        int64_t i1, i2, i3;
        loom_ref_row_index(y->ne, r, &i1, &i2, &i3);
        /* Keys n' < n_vis are visible: n' > i1 + q_offset is masked. */
        int64_t n_vis = n;
        if (causal) {
            const int64_t last = i1 + q_offset; /* last visible key index */
            n_vis = last < 0 ? 0 : (last + 1 < n ? last + 1 : n);
        }
        double mx = -INFINITY;
        for (int64_t i0 = 0; i0 < n_vis; i0++) {
            const double v = scale * loom_ref_get_f32(x, i0, i1, i2, i3);
            if (v > mx) mx = v;
        }
        /* Fully masked row (or all inputs -inf): zeros rather than NaN. */
        if (mx == -INFINITY) {
            for (int64_t i0 = 0; i0 < n; i0++)
                *loom_ref_out(y, i0, i1, i2, i3) = 0.0f;
            continue;
        }
        double sum = 0.0;
        for (int64_t i0 = 0; i0 < n_vis; i0++)
            sum += exp(scale * loom_ref_get_f32(x, i0, i1, i2, i3) - mx);
        for (int64_t i0 = 0; i0 < n; i0++) {
            const double e =
                i0 < n_vis ? exp(scale * loom_ref_get_f32(x, i0, i1, i2, i3) - mx) : 0.0;
            *loom_ref_out(y, i0, i1, i2, i3) = (float)(e / sum);
        }
    }
    return LOOM_OK;
}

/* For y = softmax(scale * x): dx = scale * y * (dy - sum(dy * y)). */
loom_status loom_ref_softmax_back(const loom_ref_ctx *c) {
    LOOM_TRY(loom_ref_check_rows(c, 2, "softmax_back"));
    const loom_tensor *dx = c->node, *y = dx->src[0], *dy = dx->src[1];
    const double scale = dx->p.f[0];
    const int64_t n = dx->ne[0];
    int64_t lo, hi;
    loom_ref_range(c, loom_ref_nrows(dx), &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        int64_t i1, i2, i3;
        loom_ref_row_index(dx->ne, r, &i1, &i2, &i3);
        double dot = 0.0;
        for (int64_t i0 = 0; i0 < n; i0++)
            dot += (double)loom_ref_get_f32(dy, i0, i1, i2, i3) *
                   (double)loom_ref_get_f32(y, i0, i1, i2, i3);
        for (int64_t i0 = 0; i0 < n; i0++) {
            const double yv = loom_ref_get_f32(y, i0, i1, i2, i3);
            const double g = loom_ref_get_f32(dy, i0, i1, i2, i3);
            *loom_ref_out(dx, i0, i1, i2, i3) = (float)(scale * yv * (g - dot));
        }
    }
    return LOOM_OK;
}

/* ---------------- rope ---------------- */

loom_status loom_ref_rope(const loom_ref_ctx *c) {
    const loom_tensor *y = c->node, *x = y->src[0], *pos = y->src[1];
    if (!x || !pos) return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "rope: missing source");
    if (!loom_ref_same_shape(y, x))
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "rope: shape mismatch");
    if (pos->dtype != LOOM_I32 || pos->ne[0] != x->ne[2] || loom_tensor_nelements(pos) != x->ne[2])
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG,
                             "rope: pos must be i32 with one position per token (%lld)",
                             (long long)x->ne[2]);
    loom_rope_params p;
    loom_rope_params_get(y, &p);
    const int64_t hd = y->ne[0], half = p.n_dims / 2;
    if (p.n_dims < 0 || p.n_dims % 2 != 0 || p.n_dims > hd)
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "rope: n_dims %d must be even and <= %lld",
                             (int)p.n_dims, (long long)hd);
    if (p.mode != LOOM_ROPE_NORMAL && p.mode != LOOM_ROPE_NEOX)
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "rope: unknown mode %d", (int)p.mode);

    double *inv = malloc((size_t)(half > 0 ? half : 1) * sizeof(double));
    if (!inv) return loom_ref_fail(c, LOOM_ERR_OOM, "rope: out of memory");
    loom_rope_freq_table(&p, inv, NULL);
    const double sign = p.inverse ? -1.0 : 1.0;

    int64_t lo, hi;
    loom_ref_range(c, loom_ref_nrows(y), &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        int64_t i1, i2, i3;
        loom_ref_row_index(y->ne, r, &i1, &i2, &i3);
        /* Read the i32 directly: a float round trip would round large positions. */
        const int32_t t_pos = *(const int32_t *)loom_ref_ptr(pos, i2, 0, 0, 0);
        for (int64_t i = 0; i < half; i++) {
            const double angle = (double)t_pos * inv[i];
            const float cs = (float)cos(angle), sn = (float)(sign * sin(angle));
            const int64_t ja = p.mode == LOOM_ROPE_NEOX ? i : 2 * i;
            const int64_t jb = p.mode == LOOM_ROPE_NEOX ? i + half : 2 * i + 1;
            const double a = loom_ref_get_f32(x, ja, i1, i2, i3);
            const double b = loom_ref_get_f32(x, jb, i1, i2, i3);
            *loom_ref_out(y, ja, i1, i2, i3) = (float)(a * cs - b * sn);
            *loom_ref_out(y, jb, i1, i2, i3) = (float)(a * sn + b * cs);
        }
        for (int64_t j = p.n_dims; j < hd; j++)
            *loom_ref_out(y, j, i1, i2, i3) = loom_ref_get_f32(x, j, i1, i2, i3);
    }
    free(inv);
    return LOOM_OK;
}
