/* kernels/cpu/ops/moe.inc.h - the fused mixture-of-experts kernel (two
 * passes over a shared scratch).
 * Included by kernels/cpu/cpu_impl.h, so compiled once
 * per ISA (cpu_avx512.c, cpu_avx2.c) over that ISA's vector vocabulary;
 * no include guard and everything static on purpose. */

/* Fused MoE in two passes over a shared scratch (the backend runs pass 0 on
 * every thread, waits, then pass 1; see loom_cpu_multipass):
 *   pass 0: routing (each thread stores its share of tokens), then
 *           h[p] = silu(gate_e x_t) * (up_e x_t) for every routed pair
 *           p = (t, r), split over the rows f of the experts in use;
 *   pass 1: out[d, t] = sum_r g[p] * (down_e[d] . h[p]), split over d.
 * Pairs are grouped by expert so each weight row is read once per call and
 * reused from L1 for every token routed to it: decode streams only the
 * selected experts' weights, like a matmul. Routing is the reference's own
 * function (kernels/ref), so the expert choice is identical. */
typedef struct moe_dims {
    int64_t Dm, F, E, T, k, Dmp, Fp;
} moe_dims;

static moe_dims moe_dims_of(const loom_tensor *out) {
    moe_dims d;
    d.Dm = out->src[0]->ne[0];
    d.T = out->src[0]->ne[1];
    d.E = out->src[1]->ne[0];
    d.F = out->src[2]->ne[1];
    d.k = out->p.i[0];
    d.Dmp = (d.Dm + VN - 1) / VN * VN;
    d.Fp = (d.F + VN - 1) / VN * VN;
    return d;
}

/* Scratch: idx int32 [T*k], g f32 [T*k], then h f32 [T*k][Fp] (64-byte aligned). */
static size_t moe_h_offset(const moe_dims *d) {
    return ((size_t)(d->T * d->k) * 8 + 63) / 64 * 64;
}

static bool moe_weight_ok(const loom_tensor *w, int64_t K) {
    return w && w->ne[3] == 1 && mm_weight_ok(w, K);
}

static bool moe_supported(const loom_tensor *node, size_t *scratch_bytes) {
    if (!loom_ref_supports(node) || node->dtype != LOOM_F32 || !loom_tensor_is_contiguous(node))
        return false;
    const loom_tensor *x = node->src[0], *lg = node->src[1];
    if (!x || !lg || x->dtype != LOOM_F32 || lg->dtype != LOOM_F32 || x->nb[0] != sizeof(float) ||
        lg->nb[0] != sizeof(float))
        return false;
    const moe_dims d = moe_dims_of(node);
    if (d.k < 1 || d.k > d.E || d.E > 4096) return false;
    if (!moe_weight_ok(node->src[2], d.Dm) || !moe_weight_ok(node->src[3], d.Dm) ||
        !moe_weight_ok(node->src[4], d.F))
        return false;
    *scratch_bytes = moe_h_offset(&d) + (size_t)(d.T * d.k) * (size_t)d.Fp * sizeof(float);
    return true;
}

static loom_status moe_weight_init(const loom_tensor *w, mm_w *mw) {
    *mw = (mm_w){.w = w, .t = w->dtype, .view_offs = w->view_src ? w->view_offs : 0};
    if (!loom_dtype_is_nf4(w->dtype)) return LOOM_OK;
    const loom_tensor *s = w->view_src ? w->view_src : w;
    mw->tab = v_nf4_tab(loom_nf4_code);
    return loom_nf4_layout_of(s->dtype, s->data, loom_tensor_nelements(s), &mw->nf);
}

/* Pairs grouped by expert: order[] lists pair ids expert by expert, first[e]
 * is where expert e's run starts (first[E] = T*k); used[] the experts with
 * at least one pair, in increasing order. */
typedef struct moe_groups {
    int32_t *order, *first, *used;
    int n_used;
} moe_groups;

static bool moe_group(const int32_t *idx, const moe_dims *d, moe_groups *gr) {
    const int64_t P = d->T * d->k;
    gr->order = malloc((size_t)(P > 0 ? P : 1) * sizeof(int32_t));
    gr->first = calloc((size_t)d->E + 1, sizeof(int32_t));
    gr->used = malloc((size_t)d->E * sizeof(int32_t));
    if (!gr->order || !gr->first || !gr->used) return false;
    for (int64_t p = 0; p < P; p++)
        gr->first[idx[p] + 1]++;
    gr->n_used = 0;
    for (int64_t e = 0; e < d->E; e++) {
        if (gr->first[e + 1]) gr->used[gr->n_used++] = (int32_t)e;
        gr->first[e + 1] += gr->first[e];
    }
    int32_t *fill = calloc((size_t)d->E, sizeof(int32_t));
    if (!fill) return false;
    for (int64_t p = 0; p < P; p++)
        gr->order[gr->first[idx[p]] + fill[idx[p]]++] = (int32_t)p;
    free(fill);
    return true;
}

static void moe_groups_free(moe_groups *gr) {
    free(gr->order);
    free(gr->first);
    free(gr->used);
}

/* Routing of every token into idx/g (the gates rounded to f32). */
static bool moe_route_all(const loom_tensor *node, const moe_dims *d, int32_t *idx, float *g) {
    const loom_tensor *lg = node->src[1];
    unsigned char *sel = malloc((size_t)d->E);
    int64_t *ri = malloc((size_t)d->k * sizeof(int64_t));
    double *rg = malloc((size_t)d->k * sizeof(double));
    float *row = malloc((size_t)d->E * sizeof(float));
    const bool ok = sel && ri && rg && row;
    for (int64_t t = 0; ok && t < d->T; t++) {
        const uint8_t *p = (const uint8_t *)lg->data + t * lg->nb[1];
        memcpy(row, p, (size_t)d->E * sizeof(float));
        loom_ref_moe_route(row, d->E, d->k, sel, ri, rg);
        for (int64_t r = 0; r < d->k; r++) {
            idx[t * d->k + r] = (int32_t)ri[r];
            g[t * d->k + r] = (float)rg[r];
        }
    }
    free(sel);
    free(ri);
    free(rg);
    free(row);
    return ok;
}

/* Tokens routed to one expert from which its rows are dequantized once into
 * an f32 row instead of in registers per token. */
#define MOE_DEQUANT_MIN 3

static loom_status k_moe_pass(const loom_tensor *out, int pass, void *scratch, int ith, int nth,
                              char *err, size_t err_n) {
    const moe_dims d = moe_dims_of(out);
    const int64_t P = d.T * d.k;
    int32_t *idx_sh = scratch;
    float *g_sh = (float *)(idx_sh + P);
    float *h = (float *)((uint8_t *)scratch + moe_h_offset(&d));
    int32_t *idx = NULL;
    float *g = NULL, *xp = NULL;
    moe_groups gr = {0};
    mm_w wa, wb;
    loom_status st = LOOM_OK;

    if (pass == 0) {
        /* Every thread routes all tokens itself (T*E work, no barrier needed)
         * and publishes only its own share for pass 1. */
        idx = malloc((size_t)(P > 0 ? P : 1) * sizeof(int32_t));
        g = malloc((size_t)(P > 0 ? P : 1) * sizeof(float));
        if (!idx || !g || !moe_route_all(out, &d, idx, g)) goto oom;
        int64_t lo, hi;
        lc_range(d.T, ith, nth, &lo, &hi);
        for (int64_t p = lo * d.k; p < hi * d.k; p++) {
            idx_sh[p] = idx[p];
            g_sh[p] = g[p];
        }
    } else {
        idx = idx_sh;
        g = g_sh;
    }
    if (!moe_group(idx, &d, &gr)) goto oom;

    if (pass == 0) {
        const loom_tensor *x = out->src[0];
        if ((st = moe_weight_init(out->src[2], &wa)) != LOOM_OK ||
            (st = moe_weight_init(out->src[3], &wb)) != LOOM_OK) {
            lc_fail(err, err_n, st, "moe: bad nf4 weight");
            goto done;
        }
        /* Rows, not tokens, are split: any token may meet this thread's rows.
         * wf: the current gate and up rows dequantized once, when enough
         * tokens share them (prefill) that re-dequantizing per token costs
         * more than an f32 row in L1. */
        xp = lc_alloc(((size_t)(d.T > 0 ? d.T : 1) + 2) * (size_t)d.Dmp * sizeof(float));
        if (!xp) goto oom;
        float *wf = xp + (size_t)(d.T > 0 ? d.T : 1) * (size_t)d.Dmp;
        const mm_w w32 = {.t = LOOM_F32};
        for (int64_t t = 0; t < d.T; t++)
            mm_pack_x(x, t, 0, 0, 0, d.Dm, d.Dmp, xp + t * d.Dmp);
        int64_t lo, hi;
        lc_range((int64_t)gr.n_used * d.F, ith, nth, &lo, &hi);
        for (int64_t q = lo; q < hi; q++) {
            const int64_t e = gr.used[q / d.F], f = q % d.F;
            int64_t ea, eb;
            const uint8_t *ra = mm_wrow(&wa, f, e, 0, &ea), *rb = mm_wrow(&wb, f, e, 0, &eb);
            const mm_w *ma = &wa, *mb = &wb;
            if (gr.first[e + 1] - gr.first[e] >= MOE_DEQUANT_MIN && wa.t != LOOM_F32) {
                mm_dequant(&wa, ra, ea, 0, d.Dm, d.Dmp, wf);
                mm_dequant(&wb, rb, eb, 0, d.Dm, d.Dmp, wf + d.Dmp);
                ra = (const uint8_t *)wf, rb = (const uint8_t *)(wf + d.Dmp);
                ea = eb = 0;
                ma = mb = &w32;
            }
            for (int32_t j = gr.first[e]; j < gr.first[e + 1]; j++) {
                const int64_t p = gr.order[j], t = p / d.k;
                const float a = mm_dot1(ma, ra, ea, xp + t * d.Dmp, d.Dm);
                const float b = mm_dot1(mb, rb, eb, xp + t * d.Dmp, d.Dm);
                float *hp = h + p * d.Fp;
                hp[f] = a / (1.0f + expf(-a)) * b;
                if (f == d.F - 1)
                    for (int64_t z = d.F; z < d.Fp; z++)
                        hp[z] = 0.0f; /* mm_dot1 reads whole vectors */
            }
        }
    } else {
        if ((st = moe_weight_init(out->src[4], &wa)) != LOOM_OK) {
            lc_fail(err, err_n, st, "moe: bad nf4 weight");
            goto done;
        }
        int64_t lo, hi;
        lc_range(d.Dm, ith, nth, &lo, &hi);
        float *wf = xp = lc_alloc((size_t)d.Fp * sizeof(float)); /* see pass 0 */
        if (!xp) goto oom;
        const mm_w w32 = {.t = LOOM_F32};
        for (int64_t t = 0; t < d.T; t++) {
            float *o = (float *)((uint8_t *)out->data + t * out->nb[1]);
            for (int64_t dd = lo; dd < hi; dd++)
                o[dd] = 0.0f;
        }
        for (int64_t dd = lo; dd < hi; dd++)
            for (int u = 0; u < gr.n_used; u++) {
                const int64_t e = gr.used[u];
                int64_t eo;
                const uint8_t *row = mm_wrow(&wa, dd, e, 0, &eo);
                const mm_w *mw = &wa;
                if (gr.first[e + 1] - gr.first[e] >= MOE_DEQUANT_MIN && wa.t != LOOM_F32) {
                    mm_dequant(&wa, row, eo, 0, d.F, d.Fp, wf);
                    row = (const uint8_t *)wf, eo = 0, mw = &w32;
                }
                for (int32_t j = gr.first[e]; j < gr.first[e + 1]; j++) {
                    const int64_t p = gr.order[j], t = p / d.k;
                    float *o = (float *)((uint8_t *)out->data + t * out->nb[1]);
                    o[dd] += g[p] * mm_dot1(mw, row, eo, h + p * d.Fp, d.F);
                }
            }
    }
    goto done;
oom:
    st = lc_fail(err, err_n, LOOM_ERR_OOM, "moe: out of memory for scratch");
done:
    if (pass == 0) {
        free(idx);
        free(g);
    }
    free(xp);
    moe_groups_free(&gr);
    return st;
}
