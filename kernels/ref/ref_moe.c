/* kernels/ref/ref_moe.c - reference mixture-of-experts routing and FFN.
 *
 * Routing (shared by moe_gate and moe): per token the top-k logits are picked
 * (ties -> lower expert index) and softmaxed among themselves in double;
 * every other expert gets weight 0. The fused FFN then evaluates only the
 * selected experts, one weight row at a time through loom_ref_get_row, so
 * every matmul weight dtype works. */
#include <math.h>
#include <stdlib.h>

#include "kernels/ref/ref_ops.h"

/* Declared in ref.h: the one routing rule every backend must reproduce. */
void loom_ref_moe_route(const float *logits, int64_t E, int64_t k, unsigned char *sel,
                               int64_t *idx, double *g) {
    for (int64_t e = 0; e < E; e++)
        sel[e] = 0;
    for (int64_t r = 0; r < k; r++) {
        /* Strict '>' scanning upwards keeps the lowest index among equals. */
        int64_t best = -1;
        for (int64_t e = 0; e < E; e++)
            if (!sel[e] && (best < 0 || logits[e] > logits[best])) best = e;
        sel[best] = 1;
        idx[r] = best;
    }
    /* idx[0] holds the largest logit: subtract it for a stable exp. */
    const double mx = (double)logits[idx[0]];
    double sum = 0.0;
    for (int64_t r = 0; r < k; r++) {
        g[r] = exp((double)logits[idx[r]] - mx);
        sum += g[r];
    }
    for (int64_t r = 0; r < k; r++)
        g[r] /= sum;
}

/* Per-thread routing scratch for E experts. */
typedef struct loom_ref_moe_scratch {
    float *logits;
    unsigned char *sel;
    int64_t *idx;
    double *g;
} loom_ref_moe_scratch;

static void loom_ref_moe_scratch_free(loom_ref_moe_scratch *s) {
    free(s->logits);
    free(s->sel);
    free(s->idx);
    free(s->g);
}

static bool loom_ref_moe_scratch_alloc(loom_ref_moe_scratch *s, int64_t E) {
    const size_t n = (size_t)(E > 0 ? E : 1);
    s->logits = malloc(n * sizeof(float));
    s->sel = malloc(n);
    s->idx = malloc(n * sizeof(int64_t));
    s->g = malloc(n * sizeof(double));
    if (s->logits && s->sel && s->idx && s->g) return true;
    loom_ref_moe_scratch_free(s);
    return false;
}

loom_status loom_ref_moe_gate(const loom_ref_ctx *c) {
    const loom_tensor *out = c->node;
    const loom_tensor *lg = out->src[0];
    if (!lg || lg->dtype != LOOM_F32 || out->dtype != LOOM_F32)
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "moe_gate: logits and output must be f32");
    const int64_t E = lg->ne[0], T = lg->ne[1] * lg->ne[2] * lg->ne[3];
    const int64_t k = out->p.i[0];
    if (k < 1 || k > E)
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "moe_gate: top_k %lld not in [1, %lld]",
                             (long long)k, (long long)E);
    for (int i = 0; i < LOOM_MAX_DIMS; i++)
        if (out->ne[i] != lg->ne[i])
            return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "moe_gate: shape mismatch");

    int64_t lo, hi;
    loom_ref_range(c, T, &lo, &hi);
    if (lo >= hi) return LOOM_OK;
    loom_ref_moe_scratch s;
    if (!loom_ref_moe_scratch_alloc(&s, E))
        return loom_ref_fail(c, LOOM_ERR_OOM, "moe_gate: out of memory for scratch");

    for (int64_t t = lo; t < hi; t++) {
        const int64_t i1 = t % lg->ne[1], i2 = (t / lg->ne[1]) % lg->ne[2],
                      i3 = t / (lg->ne[1] * lg->ne[2]);
        for (int64_t e = 0; e < E; e++)
            s.logits[e] = loom_ref_get_f32(lg, e, i1, i2, i3);
        loom_ref_moe_route(s.logits, E, k, s.sel, s.idx, s.g);
        for (int64_t e = 0; e < E; e++)
            *(float *)loom_ref_ptr(out, e, i1, i2, i3) = 0.0f;
        for (int64_t r = 0; r < k; r++)
            *(float *)loom_ref_ptr(out, s.idx[r], i1, i2, i3) = (float)s.g[r];
    }
    loom_ref_moe_scratch_free(&s);
    return LOOM_OK;
}

/* d logits of the top-k softmax: for selected s, g_s * (dg_s - sum_sel g dg);
 * unselected experts get 0 (the selection is piecewise constant).
 * The selection is recovered from the forward output as gates > 0. A selected
 * gate is exp(l_s - l_max) / sum, which is 0 only if l_s is ~100 below the
 * top logit; such an expert's true gradient g_s * (...) is 0 as well (to
 * float precision), so treating it as unselected changes nothing. */
loom_status loom_ref_moe_gate_back(const loom_ref_ctx *c) {
    const loom_tensor *out = c->node;
    const loom_tensor *g = out->src[0], *dg = out->src[1];
    if (!g || !dg || g->dtype != LOOM_F32 || dg->dtype != LOOM_F32 || out->dtype != LOOM_F32)
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "moe_gate_back: inputs must be f32");
    for (int i = 0; i < LOOM_MAX_DIMS; i++)
        if (g->ne[i] != dg->ne[i] || out->ne[i] != g->ne[i])
            return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "moe_gate_back: shape mismatch");
    const int64_t E = g->ne[0], T = g->ne[1] * g->ne[2] * g->ne[3];

    int64_t lo, hi;
    loom_ref_range(c, T, &lo, &hi);
    for (int64_t t = lo; t < hi; t++) {
        const int64_t i1 = t % g->ne[1], i2 = (t / g->ne[1]) % g->ne[2],
                      i3 = t / (g->ne[1] * g->ne[2]);
        double dot = 0.0;
        for (int64_t e = 0; e < E; e++) {
            const double ge = loom_ref_get_f32(g, e, i1, i2, i3);
            if (ge > 0.0) dot += ge * (double)loom_ref_get_f32(dg, e, i1, i2, i3);
        }
        for (int64_t e = 0; e < E; e++) {
            const double ge = loom_ref_get_f32(g, e, i1, i2, i3);
            double d = 0.0;
            if (ge > 0.0) d = ge * ((double)loom_ref_get_f32(dg, e, i1, i2, i3) - dot);
            *(float *)loom_ref_ptr(out, e, i1, i2, i3) = (float)d;
        }
    }
    return LOOM_OK;
}

static bool loom_ref_moe_weight_ok(const loom_tensor *w, int64_t ne0, int64_t ne1, int64_t E) {
    const loom_dtype t = w->dtype;
    return loom_op_weight_dtype_ok(LOOM_OP_MOE, t) && w->ne[0] == ne0 && w->ne[1] == ne1 &&
           w->ne[2] == E && w->ne[3] == 1 &&
           (loom_dtype_is_nf4(t) || ne0 % loom_dtype_block_size(t) == 0);
}

static double loom_ref_dot(const float *a, const double *b, int64_t n) {
    double acc = 0.0;
    for (int64_t i = 0; i < n; i++)
        acc += (double)a[i] * b[i];
    return acc;
}

loom_status loom_ref_moe(const loom_ref_ctx *c) {
    const loom_tensor *out = c->node;
    const loom_tensor *x = out->src[0], *lg = out->src[1];
    const loom_tensor *wg = out->src[2], *wu = out->src[3], *wd = out->src[4];
    if (!x || !lg || !wg || !wu || !wd)
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "moe: missing source");
    if (x->dtype != LOOM_F32 || lg->dtype != LOOM_F32 || out->dtype != LOOM_F32)
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "moe: x, logits and output must be f32");
    const int64_t Dm = x->ne[0], T = x->ne[1], E = lg->ne[0], F = wg->ne[1];
    const int64_t k = out->p.i[0];
    if (x->ne[2] != 1 || x->ne[3] != 1 || lg->ne[1] != T || lg->ne[2] != 1 || lg->ne[3] != 1 ||
        out->ne[0] != Dm || out->ne[1] != T || out->ne[2] != 1 || out->ne[3] != 1 ||
        !loom_ref_moe_weight_ok(wg, Dm, F, E) || !loom_ref_moe_weight_ok(wu, Dm, F, E) ||
        !loom_ref_moe_weight_ok(wd, F, Dm, E))
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "moe: shape or dtype mismatch");
    if (k < 1 || k > E)
        return loom_ref_fail(c, LOOM_ERR_INVALID_ARG, "moe: top_k %lld not in [1, %lld]",
                             (long long)k, (long long)E);

    int64_t lo, hi;
    loom_ref_range(c, T, &lo, &hi);
    if (lo >= hi) return LOOM_OK;

    const size_t nw = (size_t)(Dm > F ? Dm : F) + 1;
    loom_ref_moe_scratch s;
    if (!loom_ref_moe_scratch_alloc(&s, E))
        return loom_ref_fail(c, LOOM_ERR_OOM, "moe: out of memory for scratch");
    float *wrow = malloc(nw * sizeof(float));
    double *xv = malloc(nw * sizeof(double));
    double *h = malloc(nw * sizeof(double));
    double *y = malloc(nw * sizeof(double));
    if (!wrow || !xv || !h || !y) {
        free(wrow);
        free(xv);
        free(h);
        free(y);
        loom_ref_moe_scratch_free(&s);
        return loom_ref_fail(c, LOOM_ERR_OOM, "moe: out of memory for scratch");
    }

    for (int64_t t = lo; t < hi; t++) {
        for (int64_t e = 0; e < E; e++)
            s.logits[e] = loom_ref_get_f32(lg, e, t, 0, 0);
        loom_ref_moe_route(s.logits, E, k, s.sel, s.idx, s.g);
        for (int64_t d = 0; d < Dm; d++) {
            xv[d] = (double)loom_ref_get_f32(x, d, t, 0, 0);
            y[d] = 0.0;
        }
        /* Experts in routing order (decreasing gate), each a SwiGLU FFN. */
        for (int64_t r = 0; r < k; r++) {
            const int64_t e = s.idx[r];
            for (int64_t f = 0; f < F; f++) {
                loom_ref_get_row(wg, f, e, 0, wrow);
                const double a = loom_ref_dot(wrow, xv, Dm);
                loom_ref_get_row(wu, f, e, 0, wrow);
                const double b = loom_ref_dot(wrow, xv, Dm);
                h[f] = a / (1.0 + exp(-a)) * b; /* silu(a) * b */
            }
            for (int64_t d = 0; d < Dm; d++) {
                loom_ref_get_row(wd, d, e, 0, wrow);
                y[d] += s.g[r] * loom_ref_dot(wrow, h, F);
            }
        }
        for (int64_t d = 0; d < Dm; d++)
            *(float *)loom_ref_ptr(out, d, t, 0, 0) = (float)y[d];
    }

    free(wrow);
    free(xv);
    free(h);
    free(y);
    loom_ref_moe_scratch_free(&s);
    return LOOM_OK;
}
