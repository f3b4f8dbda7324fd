/* kernels/ref/ref_misc.c - reference get_rows, get_rows_back, cross_entropy
 * and cross_entropy_back: the ops that index by integer ids/targets and so
 * can fail on data (an id out of range), reported as LOOM_ERR_INVALID_ARG. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ref/ref_ops.h"

static int32_t loom_ref_get_i32(const loom_tensor *t, int64_t i0, int64_t i1, int64_t i2,
                                int64_t i3) {
    int32_t v;
    memcpy(&v, loom_ref_ptr(t, i0, i1, i2, i3), sizeof v);
    return v;
}

/* ---------------- get_rows ---------------- */

loom_status loom_ref_get_rows(const loom_ref_ctx *c) {
    const loom_tensor *y = c->node, *table = y->src[0], *ids = y->src[1];
    if (!table || !ids) return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "get_rows: missing source");
    const int64_t D = table->ne[0], V = table->ne[1];
    const int64_t T = ids->ne[0], B = ids->ne[1];
    /* A table with a third dim holds one table per batch entry b. */
    if (ids->dtype != LOOM_I32 || ids->ne[2] != 1 || ids->ne[3] != 1 || table->ne[3] != 1 ||
        (table->ne[2] != 1 && table->ne[2] != B) || y->ne[0] != D || y->ne[1] != T ||
        y->ne[2] != B || y->ne[3] != 1)
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "get_rows: shape mismatch");
    if (loom_dtype_is_nf4(table->dtype))
        return loom_ref_fail(c, LOOM_ERR_UNSUPPORTED, "get_rows: nf4 tables are not supported");

    int64_t lo, hi;
    loom_ref_range(c, T * B, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const int64_t t = r % T, b = r / T;
        const int32_t id = loom_ref_get_i32(ids, t, b, 0, 0);
        if (id < 0 || id >= V)
            return loom_ref_fail(c, LOOM_ERR_INVALID_ARG,
                                 "get_rows: id %d at position (%lld, %lld) is outside [0, %lld)",
                                 (int)id, (long long)t, (long long)b, (long long)V);
        /* The output row is contiguous f32: dequantize straight into it. */
        loom_ref_get_row(table, id, table->ne[2] == 1 ? 0 : b, 0, loom_ref_out(y, 0, t, b, 0));
    }
    return LOOM_OK;
}

/* ---------------- get_rows_back ---------------- */

/* out[:, v] = sum over positions p with ids[p] == v of dy[:, p], positions in
 * ascending order, summed in double. Each thread owns a range of output rows
 * and buckets the positions hitting its range (a counting sort), so every
 * row's sum has the same terms in the same order whatever nth is. */
loom_status loom_ref_get_rows_back(const loom_ref_ctx *c) {
    const loom_tensor *y = c->node, *dy = y->src[0], *ids = y->src[1];
    if (!dy || !ids) return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "get_rows_back: missing source");
    const int64_t D = dy->ne[0], T = ids->ne[0], B = ids->ne[1], V = y->ne[1];
    if (ids->dtype != LOOM_I32 || ids->ne[2] != 1 || ids->ne[3] != 1 || dy->ne[1] != T ||
        dy->ne[2] != B || dy->ne[3] != 1 || y->ne[0] != D || y->ne[2] != 1 || y->ne[3] != 1)
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "get_rows_back: shape mismatch");

    const int64_t np = T * B;
    for (int64_t p = 0; p < np; p++) {
        const int32_t id = loom_ref_get_i32(ids, p % T, p / T, 0, 0);
        if (id < 0 || id >= V)
            return loom_ref_fail(
                c, LOOM_ERR_INVALID_ARG,
                "get_rows_back: id %d at position (%lld, %lld) is outside [0, %lld)", (int)id,
                (long long)(p % T), (long long)(p / T), (long long)V);
    }

    int64_t lo, hi;
    loom_ref_range(c, V, &lo, &hi);
    if (lo >= hi) return LOOM_OK;
    const int64_t nv = hi - lo;
    int64_t *start = calloc((size_t)nv + 1, sizeof(int64_t)); /* bucket bounds */
    int64_t *order = malloc((size_t)(np > 0 ? np : 1) * sizeof(int64_t));
    double *acc = malloc((size_t)(D > 0 ? D : 1) * sizeof(double));
    if (!start || !order || !acc) {
        free(start);
        free(order);
        free(acc);
        return loom_ref_fail(c, LOOM_ERR_OOM, "get_rows_back: out of memory");
    }
    for (int64_t p = 0; p < np; p++) {
        const int32_t id = loom_ref_get_i32(ids, p % T, p / T, 0, 0);
        if (id >= lo && id < hi) start[id - lo + 1]++;
    }
    for (int64_t v = 0; v < nv; v++)
        start[v + 1] += start[v];
    /* Fill buckets in ascending position order (fill[v] walks bucket v). */
    int64_t *fill = malloc((size_t)nv * sizeof(int64_t));
    if (!fill) {
        free(start);
        free(order);
        free(acc);
        return loom_ref_fail(c, LOOM_ERR_OOM, "get_rows_back: out of memory");
    }
    memcpy(fill, start, (size_t)nv * sizeof(int64_t));
    for (int64_t p = 0; p < np; p++) {
        const int32_t id = loom_ref_get_i32(ids, p % T, p / T, 0, 0);
        if (id >= lo && id < hi) order[fill[id - lo]++] = p;
    }

    for (int64_t v = 0; v < nv; v++) {
        for (int64_t d = 0; d < D; d++)
            acc[d] = 0.0;
        for (int64_t k = start[v]; k < start[v + 1]; k++) {
            const int64_t p = order[k];
            for (int64_t d = 0; d < D; d++)
                acc[d] += loom_ref_get_f32(dy, d, p % T, p / T, 0);
        }
        for (int64_t d = 0; d < D; d++)
            *loom_ref_out(y, d, lo + v, 0, 0) = (float)acc[d];
    }
    free(fill);
    free(start);
    free(order);
    free(acc);
    return LOOM_OK;
}

/* ---------------- cross entropy ---------------- */

/* Targets are indexed by the logits' row (i1, i2, i3): [T] for [V, T]. */
static loom_status loom_ref_ce_check(const loom_ref_ctx *c, const char *name,
                                     const loom_tensor *logits, const loom_tensor *targets) {
    if (!logits || !targets)
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "%s: missing source", name);
    if (targets->dtype != LOOM_I32 || targets->ne[0] != logits->ne[1] ||
        targets->ne[1] != logits->ne[2] || targets->ne[2] != logits->ne[3] || targets->ne[3] != 1)
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "%s: targets must be i32, one per row", name);
    /* Validate every target up front so all threads agree on the count. */
    const int64_t V = logits->ne[0];
    for (int64_t i3 = 0; i3 < logits->ne[3]; i3++)
        for (int64_t i2 = 0; i2 < logits->ne[2]; i2++)
            for (int64_t i1 = 0; i1 < logits->ne[1]; i1++) {
                const int32_t tg = loom_ref_get_i32(targets, i1, i2, i3, 0);
                if (tg >= V)
                    return loom_ref_fail(c, LOOM_ERR_INVALID_ARG,
                                         "%s: target %d at row %lld is outside [0, %lld)", name,
                                         (int)tg, (long long)i1, (long long)V);
            }
    return LOOM_OK;
}

/* Rows whose target is not negative (ignore_index rows excluded). */
static int64_t loom_ref_ce_count(const loom_tensor *logits, const loom_tensor *targets) {
    int64_t n = 0;
    for (int64_t i3 = 0; i3 < logits->ne[3]; i3++)
        for (int64_t i2 = 0; i2 < logits->ne[2]; i2++)
            for (int64_t i1 = 0; i1 < logits->ne[1]; i1++)
                n += loom_ref_get_i32(targets, i1, i2, i3, 0) >= 0;
    return n;
}

/* max and log(sum(exp(x - max))) of one logits row, in double. */
static void loom_ref_lse(const loom_tensor *x, int64_t i1, int64_t i2, int64_t i3, double *mx,
                         double *log_sum) {
    double m = -INFINITY;
    for (int64_t v = 0; v < x->ne[0]; v++) {
        const double xv = loom_ref_get_f32(x, v, i1, i2, i3);
        if (xv > m) m = xv;
    }
    double s = 0.0;
    for (int64_t v = 0; v < x->ne[0]; v++)
        s += exp(loom_ref_get_f32(x, v, i1, i2, i3) - m);
    *mx = m;
    *log_sum = log(s);
}

loom_status loom_ref_cross_entropy(const loom_ref_ctx *c) {
    const loom_tensor *y = c->node, *logits = y->src[0], *targets = y->src[1];
    LOOM_TRY(loom_ref_ce_check(c, "cross_entropy", logits, targets));
    if (loom_tensor_nelements(y) != 1)
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "cross_entropy: output must be [1]");
    /* One scalar: a single thread does the whole (double) sum. */
    if (c->ith != 0) return LOOM_OK;
    double total = 0.0;
    int64_t count = 0;
    for (int64_t i3 = 0; i3 < logits->ne[3]; i3++)
        for (int64_t i2 = 0; i2 < logits->ne[2]; i2++)
            for (int64_t i1 = 0; i1 < logits->ne[1]; i1++) {
                const int32_t tg = loom_ref_get_i32(targets, i1, i2, i3, 0);
                if (tg < 0) continue;
                double mx, ls;
                loom_ref_lse(logits, i1, i2, i3, &mx, &ls);
                total += mx + ls - loom_ref_get_f32(logits, tg, i1, i2, i3);
                count++;
            }
    *loom_ref_out(y, 0, 0, 0, 0) = count > 0 ? (float)(total / (double)count) : 0.0f;
    return LOOM_OK;
}

/* d(mean loss)/dlogits[v, t] = dloss/count * (softmax(logits[:, t])[v] - [v == target_t]). */
loom_status loom_ref_cross_entropy_back(const loom_ref_ctx *c) {
    const loom_tensor *dx = c->node, *logits = dx->src[0], *targets = dx->src[1];
    const loom_tensor *dloss = dx->src[2];
    LOOM_TRY(loom_ref_ce_check(c, "cross_entropy_back", logits, targets));
    if (!dloss || loom_tensor_nelements(dloss) != 1)
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "cross_entropy_back: dloss must be [1]");
    for (int i = 0; i < LOOM_MAX_DIMS; i++)
        if (dx->ne[i] != logits->ne[i])
            return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "cross_entropy_back: shape mismatch");

    const int64_t count = loom_ref_ce_count(logits, targets);
    const double g = count > 0 ? (double)loom_ref_get_f32(dloss, 0, 0, 0, 0) / (double)count : 0.0;
    const int64_t V = logits->ne[0], R1 = logits->ne[1], R2 = logits->ne[2];
    int64_t lo, hi;
    loom_ref_range(c, R1 * R2 * logits->ne[3], &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const int64_t i1 = r % R1, i2 = (r / R1) % R2, i3 = r / (R1 * R2);
        const int32_t tg = loom_ref_get_i32(targets, i1, i2, i3, 0);
        if (tg < 0) {
            for (int64_t v = 0; v < V; v++)
                *loom_ref_out(dx, v, i1, i2, i3) = 0.0f;
            continue;
        }
        double mx, ls;
        loom_ref_lse(logits, i1, i2, i3, &mx, &ls);
        for (int64_t v = 0; v < V; v++) {
            const double p = exp(loom_ref_get_f32(logits, v, i1, i2, i3) - mx - ls);
            *loom_ref_out(dx, v, i1, i2, i3) = (float)(g * (p - (v == tg ? 1.0 : 0.0)));
        }
    }
    return LOOM_OK;
}

/* ---------------- set_rows (in place) ---------------- */

/* dst rows are written through the node itself: its storage is dst's
 * (loom_set_rows), so loom_ref_ptr(node, ...) addresses the destination. */
loom_status loom_ref_set_rows(const loom_ref_ctx *c) {
    const loom_tensor *y = c->node, *src = y->src[1], *rows = y->src[2];
    if (!src || !rows) return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "set_rows: missing source");
    const int64_t W = y->ne[0], R = y->ne[1], B = y->ne[2], T = src->ne[1];
    if (src->ne[0] != W || src->ne[2] != B || rows->ne[0] != T)
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "set_rows: shape mismatch");
    float *buf = malloc((size_t)W * sizeof *buf);
    if (!buf) return loom_ref_fail(c, LOOM_ERR_OOM, "set_rows: out of memory");
    loom_status st = LOOM_OK;
    int64_t lo, hi;
    loom_ref_range(c, T * B, &lo, &hi);
    for (int64_t r = lo; r < hi && st == LOOM_OK; r++) {
        const int64_t t = r % T, b = r / T;
        const int32_t row = loom_ref_get_i32(rows, t, rows->ne[1] == 1 ? 0 : b, 0, 0);
        if (row < 0 || row >= R) {
            st = loom_ref_fail(c, LOOM_ERR_INVALID_ARG,
                               "set_rows: row %d at position (%lld, %lld) is outside [0, %lld)",
                               (int)row, (long long)t, (long long)b, (long long)R);
            break;
        }
        for (int64_t i = 0; i < W; i++)
            buf[i] = loom_ref_get_f32(src, i, t, b, 0);
        void *dst = loom_ref_ptr(y, 0, row, b, 0);
        if (loom_dtype_is_quantized(y->dtype)) {
            st = loom_quantize_row(y->dtype, buf, dst, W);
        } else if (y->nb[0] == loom_dtype_block_bytes(y->dtype)) {
            st = loom_convert(LOOM_F32, buf, y->dtype, dst, W);
        } else { /* strided destination row: element by element */
            for (int64_t i = 0; i < W && st == LOOM_OK; i++)
                st = loom_convert(LOOM_F32, buf + i, y->dtype, loom_ref_ptr(y, i, row, b, 0), 1);
        }
        if (st != LOOM_OK) st = loom_ref_fail(c, st, "set_rows: conversion failed");
    }
    free(buf);
    return st;
}
