/* kernels/ref/ref_attn.c - reference fused attention (the oracle).
 *
 * Straight two-pass softmax(scale * q k^T) v per query row: the row of
 * scores (Tk values) is materialised, which optimised kernels avoid, and all
 * sums are taken in double so this is the most exact version of the op. */
#include <math.h>
#include <stdlib.h>

#include "kernels/ref/ref_ops.h"

static bool loom_ref_attn_kv_ok(const loom_tensor *t) {
    return t->dtype == LOOM_F32 || t->dtype == LOOM_F16;
}

/* Pool row of logical key j (paged: through column b of the block tables),
 * or j itself. */
static int64_t kv_row(const loom_tensor *tbl, int64_t bsz, int64_t b, int64_t j) {
    if (!tbl) return j;
    return (int64_t) * (const int32_t *)loom_ref_ptr(tbl, j / bsz, b, 0, 0) * bsz + j % bsz;
}

loom_status loom_ref_flash_attn(const loom_ref_ctx *c) {
    const loom_tensor *out = c->node;
    const loom_tensor *q = out->src[0], *k = out->src[1], *v = out->src[2];
    if (!q || !k || !v) return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "flash_attn: missing source");
    if (q->dtype != LOOM_F32 || !loom_ref_attn_kv_ok(k) || !loom_ref_attn_kv_ok(v) ||
        out->dtype != LOOM_F32)
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "flash_attn: unsupported dtypes");

    const int64_t D = q->ne[0], Tq = q->ne[1], Hq = q->ne[2], B = q->ne[3];
    /* Paged (docs/adr/0035): k/v are the block pool, src[3] the block table;
     * the sequence's keys are 0 .. q_offset + Tq - 1. Batched (docs/adr/0044):
     * B sequences over one pool [D, R, Hkv, 1], column b of src[3] the table
     * of sequence b and src[4][b] its query offset. */
    const int64_t bsz = out->p.i[3];
    const loom_tensor *tbl = bsz > 0 ? out->src[3] : NULL;
    const loom_tensor *offs = bsz > 0 ? out->src[4] : NULL;
    if (bsz > 0 && (!tbl || tbl->dtype != LOOM_I32 || (offs ? tbl->ne[1] != B : B != 1)))
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "flash_attn: bad block table");
    if (offs && (offs->dtype != LOOM_I32 || offs->ne[0] != B || k->ne[3] != 1))
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "flash_attn: bad batched offsets");
    const int64_t Hkv = k->ne[2];
    int64_t tk_max = bsz > 0 ? 0 : k->ne[1];
    for (int64_t b = 0; bsz > 0 && b < B; b++) { /* every row a sequence reads is in the pool */
        const int64_t off = offs ? *(const int32_t *)loom_ref_ptr(offs, b, 0, 0, 0) : out->p.i[2];
        const int64_t Tk = off + Tq;
        if (off < 0 || Tk > tbl->ne[0] * bsz)
            return loom_ref_fail(
                c, LOOM_ERR_INVALID_ARG,
                "flash_attn: %lld keys exceed the block table (%lld blocks of %lld)", (long long)Tk,
                (long long)tbl->ne[0], (long long)bsz);
        const int64_t tb = offs ? b : 0;
        for (int64_t j = 0; j < (Tk + bsz - 1) / bsz; j++)
            if (kv_row(tbl, bsz, tb, j * bsz) < 0 || kv_row(tbl, bsz, tb, j * bsz) >= k->ne[1])
                return loom_ref_fail(
                    c, LOOM_ERR_INVALID_ARG,
                    "flash_attn: block %lld of the table is outside the pool (%lld)",
                    (long long)(kv_row(tbl, bsz, tb, j * bsz) / bsz), (long long)(k->ne[1] / bsz));
        tk_max = Tk > tk_max ? Tk : tk_max;
    }
    bool shape_ok = k->ne[0] == D && (offs || k->ne[3] == B) && Hkv > 0 && Hq % Hkv == 0;
    for (int i = 0; i < LOOM_MAX_DIMS; i++)
        shape_ok = shape_ok && v->ne[i] == k->ne[i];
    shape_ok = shape_ok && out->ne[0] == D && out->ne[1] == Hq && out->ne[2] == Tq &&
               out->ne[3] == B && out->nb[0] == sizeof(float);
    if (!shape_ok) return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "flash_attn: shape mismatch");

    const double scale = (double)out->p.f[0];
    const bool causal = out->p.i[1] != 0;
    const int64_t group = Hq / Hkv; /* query heads per KV head (GQA) */

    /* Work unit: one output row (h, t, b), h fastest, matching out's layout. */
    int64_t lo, hi;
    loom_ref_range(c, Hq * Tq * B, &lo, &hi);
    if (lo >= hi) return LOOM_OK;

    const size_t nd = (size_t)(D > 0 ? D : 1), nk = (size_t)(tk_max > 0 ? tk_max : 1);
    double *s = malloc(nk * sizeof(double));
    double *qv = malloc(nd * sizeof(double));
    double *acc = malloc(nd * sizeof(double));
    if (!s || !qv || !acc) {
        free(s);
        free(qv);
        free(acc);
        return loom_ref_fail(c, LOOM_ERR_OOM, "flash_attn: out of memory for scratch");
    }

    for (int64_t r = lo; r < hi; r++) {
        const int64_t h = r % Hq, t = (r / Hq) % Tq, b = r / (Hq * Tq);
        const int64_t hk = h / group;
        float *o = loom_ref_ptr(out, 0, h, t, b);
        const int64_t q_offset =
            offs ? *(const int32_t *)loom_ref_ptr(offs, b, 0, 0, 0) : out->p.i[2];
        const int64_t Tk = bsz > 0 ? q_offset + Tq : k->ne[1];
        const int64_t tb = offs ? b : 0, kb = offs ? 0 : b; /* table column, K/V batch */

        /* Keys visible to this query: all of them, or j <= t + q_offset. */
        int64_t n_vis = Tk;
        if (causal) {
            const int64_t last = t + q_offset;
            n_vis = last < 0 ? 0 : (last + 1 < Tk ? last + 1 : Tk);
        }
        if (n_vis == 0) { /* fully masked: defined as zeros, not NaN */
            for (int64_t d = 0; d < D; d++)
                o[d] = 0.0f;
            continue;
        }

        for (int64_t d = 0; d < D; d++)
            qv[d] = (double)loom_ref_get_f32(q, d, t, h, b);

        /* Pass 1: scores and their max. */
        double smax = -INFINITY;
        for (int64_t j = 0; j < n_vis; j++) {
            double dot = 0.0;
            for (int64_t d = 0; d < D; d++)
                dot += qv[d] * (double)loom_ref_get_f32(k, d, kv_row(tbl, bsz, tb, j), hk, kb);
            s[j] = scale * dot;
            if (s[j] > smax) smax = s[j];
        }

        /* Pass 2: max-subtracted exponentials, their sum and the weighted V. */
        double sum = 0.0;
        for (int64_t d = 0; d < D; d++)
            acc[d] = 0.0;
        for (int64_t j = 0; j < n_vis; j++) {
            const double p = exp(s[j] - smax);
            sum += p;
            for (int64_t d = 0; d < D; d++)
                acc[d] += p * (double)loom_ref_get_f32(v, d, kv_row(tbl, bsz, tb, j), hk, kb);
        }
        for (int64_t d = 0; d < D; d++)
            o[d] = (float)(acc[d] / sum);
    }

    free(s);
    free(qv);
    free(acc);
    return LOOM_OK;
}
