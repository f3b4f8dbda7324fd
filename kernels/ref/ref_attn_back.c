/* kernels/ref/ref_attn_back.c - reference flash-attention backward (the
 * oracle of LOOM_OP_FLASH_ATTN_BACK, see loom_flash_attn_back).
 *
 * With s_ij = scale q_i.k_j over the keys row i sees, P = softmax_j(s),
 * o_i = sum_j P_ij v_j and dO the incoming gradient:
 *   L_i = log sum_j exp(s_ij)        Delta_i = dO_i . o_i
 *   P_ij = exp(s_ij - L_i)           dS_ij = P_ij (dO_i . v_j - Delta_i)
 *   dq_i = scale sum_j dS_ij k_j     dk_j = scale sum_i dS_ij q_i
 *   dv_j = sum_i P_ij dO_i           (dk, dv summed over a KV head's query heads)
 * Straight loops in double, one score at a time: the most exact version, no
 * tiling (the optimised kernels tile; none of them holds T x T either). */
#include <math.h>
#include <stdlib.h>

#include "kernels/ref/ref_ops.h"

typedef struct {
    const loom_tensor *q, *k, *v, *dout, *x;
    int64_t D, Tq, Hq, B, Tk, Hkv, group;
    double scale;
    bool causal;
    int64_t q_offset;
} fab;

/* Keys visible to query row t: [0, n). */
static int64_t fab_visible(const fab *f, int64_t t) {
    if (!f->causal) return f->Tk;
    const int64_t last = t + f->q_offset;
    return last < 0 ? 0 : (last + 1 < f->Tk ? last + 1 : f->Tk);
}

static double fab_dot_qk(const fab *f, const loom_tensor *a, int64_t ia, int64_t ha,
                         const loom_tensor *b, int64_t jb, int64_t hb, int64_t bb) {
    double s = 0.0;
    for (int64_t d = 0; d < f->D; d++)
        s += (double)loom_ref_get_f32(a, d, ia, ha, bb) * (double)loom_ref_get_f32(b, d, jb, hb, bb);
    return s;
}

/* dO_i . v_j: dout is [D, Hq, Tq, B] (the forward output's layout). */
static double fab_dot_dov(const fab *f, int64_t t, int64_t h, int64_t j, int64_t b) {
    double s = 0.0;
    for (int64_t d = 0; d < f->D; d++)
        s += (double)loom_ref_get_f32(f->dout, d, h, t, b) *
             (double)loom_ref_get_f32(f->v, d, j, h / f->group, b);
    return s;
}

static float fab_stat(const fab *f, int row, int64_t t, int64_t h, int64_t b) {
    return loom_ref_get_f32(f->x, t, row, h, b);
}

static void fab_stats_row(const fab *f, float *out_l, float *out_delta, int64_t t, int64_t h,
                          int64_t b) {
    const int64_t n = fab_visible(f, t), hk = h / f->group;
    double m = -INFINITY;
    for (int64_t j = 0; j < n; j++) {
        const double s = f->scale * fab_dot_qk(f, f->q, t, h, f->k, j, hk, b);
        if (s > m) m = s;
    }
    double sum = 0.0;
    for (int64_t j = 0; j < n; j++)
        sum += exp(f->scale * fab_dot_qk(f, f->q, t, h, f->k, j, hk, b) - m);
    double delta = 0.0;
    for (int64_t d = 0; d < f->D; d++)
        delta += (double)loom_ref_get_f32(f->dout, d, h, t, b) *
                 (double)loom_ref_get_f32(f->x, d, h, t, b);
    *out_l = n ? (float)(m + log(sum)) : 0.0f;
    *out_delta = (float)delta;
}

/* dS_ij (and P_ij through *p) for query row (t, h, b) and key j. */
static double fab_ds(const fab *f, int64_t t, int64_t h, int64_t j, int64_t b, double *p) {
    const double s = f->scale * fab_dot_qk(f, f->q, t, h, f->k, j, h / f->group, b);
    *p = exp(s - (double)fab_stat(f, 0, t, h, b));
    return *p * (fab_dot_dov(f, t, h, j, b) - (double)fab_stat(f, 1, t, h, b));
}

loom_status loom_ref_flash_attn_back(const loom_ref_ctx *c) {
    const loom_tensor *out = c->node;
    fab f = {.q = out->src[0], .k = out->src[1], .v = out->src[2], .dout = out->src[3],
             .x = out->src[4]};
    if (!f.q || !f.k || !f.v || !f.dout || !f.x)
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "flash_attn_back: missing source");
    f.D = f.q->ne[0], f.Tq = f.q->ne[1], f.Hq = f.q->ne[2], f.B = f.q->ne[3];
    f.Tk = f.k->ne[1], f.Hkv = f.k->ne[2];
    if (f.Hkv <= 0 || f.Hq % f.Hkv != 0)
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "flash_attn_back: bad GQA shape");
    f.group = f.Hq / f.Hkv;
    f.scale = (double)out->p.f[0];
    f.causal = out->p.i[1] != 0;
    f.q_offset = out->p.i[2];
    const int part = out->p.i[3];

    int64_t lo, hi;
    if (part == LOOM_FA_BACK_STATS) {
        loom_ref_range(c, f.Tq * f.Hq * f.B, &lo, &hi);
        for (int64_t r = lo; r < hi; r++) {
            const int64_t t = r % f.Tq, h = (r / f.Tq) % f.Hq, b = r / (f.Tq * f.Hq);
            fab_stats_row(&f, loom_ref_out(out, t, 0, h, b), loom_ref_out(out, t, 1, h, b), t,
                          h, b);
        }
        return LOOM_OK;
    }
    double *acc = malloc((size_t)(f.D > 0 ? f.D : 1) * 2 * sizeof *acc);
    if (!acc) return loom_ref_fail(c, LOOM_ERR_OOM, "flash_attn_back: out of memory");
    if (part == LOOM_FA_BACK_DQ) {
        loom_ref_range(c, f.Tq * f.Hq * f.B, &lo, &hi);
        for (int64_t r = lo; r < hi; r++) {
            const int64_t t = r % f.Tq, h = (r / f.Tq) % f.Hq, b = r / (f.Tq * f.Hq);
            const int64_t n = fab_visible(&f, t), hk = h / f.group;
            for (int64_t d = 0; d < f.D; d++)
                acc[d] = 0.0;
            for (int64_t j = 0; j < n; j++) {
                double p;
                const double ds = fab_ds(&f, t, h, j, b, &p);
                for (int64_t d = 0; d < f.D; d++)
                    acc[d] += ds * (double)loom_ref_get_f32(f.k, d, j, hk, b);
            }
            for (int64_t d = 0; d < f.D; d++)
                *loom_ref_out(out, d, t, h, b) = (float)(f.scale * acc[d]);
        }
    } else { /* DKV: one unit per key row (j, hk, b) writes dk and dv */
        loom_ref_range(c, f.Tk * f.Hkv * f.B, &lo, &hi);
        for (int64_t r = lo; r < hi; r++) {
            const int64_t j = r % f.Tk, hk = (r / f.Tk) % f.Hkv, b = r / (f.Tk * f.Hkv);
            double *dk = acc, *dv = acc + f.D;
            for (int64_t d = 0; d < 2 * f.D; d++)
                acc[d] = 0.0;
            for (int64_t h = hk * f.group; h < (hk + 1) * f.group; h++)
                for (int64_t t = 0; t < f.Tq; t++) {
                    if (j >= fab_visible(&f, t)) continue;
                    double p;
                    const double ds = fab_ds(&f, t, h, j, b, &p);
                    for (int64_t d = 0; d < f.D; d++) {
                        dk[d] += ds * (double)loom_ref_get_f32(f.q, d, t, h, b);
                        dv[d] += p * (double)loom_ref_get_f32(f.dout, d, h, t, b);
                    }
                }
            for (int64_t d = 0; d < f.D; d++) {
                *loom_ref_out(out, d, j, hk, b) = (float)(f.scale * dk[d]);
                *loom_ref_out(out, d, j, hk, f.B + b) = (float)dv[d];
            }
        }
    }
    free(acc);
    return LOOM_OK;
}
