/* kernels/cpu/ops/moe.inc.h - the fused mixture-of-experts kernel (two
 * passes over a shared scratch).
 * Included by kernels/cpu/cpu_impl.h, so compiled once
 * per ISA (cpu_avx512.c, cpu_avx2.c) over that ISA's vector vocabulary;
 * no include guard and everything static on purpose. */

/* Fused MoE in two passes over a shared scratch (the backend runs pass 0 on
 * every thread, waits, then pass 1; see loom_cpu_multipass):
 *   pass 0: routing (each thread stores its share of tokens), then
 *           h[j] = silu(gate_e x_t) * (up_e x_t) for every routed pair
 *           p = (t, r), stored at its place j in the expert-grouped order;
 *   pass 1: out[d, t] = sum_r g[p] * (down_e[d] . h[j]), split over d.
 * Pairs are grouped by expert so each weight row is read once per call.
 * An expert with few tokens (decode) runs per-token dot products, its rows
 * reused from L1 for every token routed to it: decode streams only the
 * selected experts' weights, like a matmul. An expert with at least
 * MOE_GEMM_MIN tokens (prefill) runs the dense prefill's packed GEMM over its
 * gathered token rows (ADR 0040). Routing is the reference's own function
 * (kernels/ref), so the expert choice is identical. */
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

/* Scratch: idx int32 [T*k], g f32 [T*k], then h f32 [T*k][Fp] (64-byte
 * aligned), its rows in the expert-grouped order of moe_group. */
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
/* Tokens routed to one expert from which it runs as a packed GEMM over its
 * gathered rows instead of per-token dots (measured: ADR 0040). */
#define MOE_GEMM_MIN 8
/* Rows of one expert's group per GEMM call: bounds the packed activation
 * block and the up / down result tile (MOE_MC x MM_NC floats). */
#define MOE_MC 256

static bool moe_is_gemm(const moe_groups *gr, int64_t e) {
    return gr->first[e + 1] - gr->first[e] >= MOE_GEMM_MIN;
}

/* The GEMM path splits columns (F in pass 0, Dm in pass 1) over threads in
 * whole strips of MM_NS, so no thread packs a partial strip of another's. */
static void moe_col_range(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi) {
    const int64_t units = (n + MM_NS - 1) / MM_NS;
    lc_range(units, ith, nth, lo, hi);
    *lo = LC_MIN(n, *lo * MM_NS);
    *hi = LC_MIN(n, *hi * MM_NS);
}

/* Thread-local buffers of the GEMM path: mm_gemm's scratch for MOE_MC rows
 * of K values, and an MOE_MC x MM_NC result tile. */
typedef struct moe_gemm_buf {
    float *xbuf, *wbuf, *tile;
} moe_gemm_buf;

static bool moe_gemm_buf_alloc(moe_gemm_buf *b, int64_t K) {
    size_t xn, wn;
    mm_gemm_scratch(K, MOE_MC, &xn, &wn);
    b->xbuf = lc_alloc(xn * sizeof(float));
    b->wbuf = lc_alloc(wn * sizeof(float));
    b->tile = lc_alloc((size_t)MOE_MC * MM_NC * sizeof(float));
    return b->xbuf && b->wbuf && b->tile;
}

static void moe_gemm_buf_free(moe_gemm_buf *b) {
    free(b->xbuf);
    free(b->wbuf);
    free(b->tile);
}

/* h = silu(h) * u over n values (the gate result already in h). */
static void moe_swiglu_row(float *h, const float *u, int64_t n) {
    int64_t j = 0;
    for (; j + VN <= n; j += VN) {
        const vf a = V_LOAD(h + j);
        const vf s = V_DIV(a, V_ADD(V_SET1(1.0f), v_exp(V_SUB(V_ZERO(), a))));
        V_STORE(h + j, V_MUL(s, V_LOAD(u + j)));
    }
    if (j < n) {
        const int r = (int)(n - j);
        const vf a = v_load_tail(h + j, r);
        const vf s = V_DIV(a, V_ADD(V_SET1(1.0f), v_exp(V_SUB(V_ZERO(), a))));
        v_store_tail(h + j, V_MUL(s, v_load_tail(u + j, r)), r);
    }
}

/* Pass 0 of one GEMM expert e over gate/up rows [f0, f1): its token rows
 * gathered from x, gate straight into h (grouped rows), up into the tile,
 * then h = silu(gate) * up. */
static void moe_gemm_gate_up(const loom_tensor *out, const moe_dims *d, const moe_groups *gr,
                             int64_t e, const mm_w *wg, const mm_w *wu, int64_t f0, int64_t f1,
                             float *h, moe_gemm_buf *b) {
    const loom_tensor *x = out->src[0];
    const int64_t n_e = gr->first[e + 1] - gr->first[e];
    for (int64_t m0 = 0; m0 < n_e; m0 += MOE_MC) {
        const int64_t mc = LC_MIN(MOE_MC, n_e - m0), j0 = gr->first[e] + m0;
        const mm_xsrc xs = {.base = (const float *)x->data,
                            .ld = (int64_t)(x->nb[1] / sizeof(float)),
                            .rows = gr->order + j0,
                            .div = (int32_t)d->k};
        for (int64_t c0 = f0; c0 < f1; c0 += MM_NC) {
            const int64_t c1 = LC_MIN(f1, c0 + MM_NC);
            float *hb = h + j0 * d->Fp;
            mm_gemm(wg, e, 0, c0, c1, d->Dm, mc, &xs, hb + c0, d->Fp, b->xbuf, b->wbuf);
            mm_gemm(wu, e, 0, c0, c1, d->Dm, mc, &xs, b->tile, MM_NC, b->xbuf, b->wbuf);
            for (int64_t r = 0; r < mc; r++)
                moe_swiglu_row(hb + r * d->Fp + c0, b->tile + r * MM_NC, c1 - c0);
        }
        if (f1 == d->F) /* the padding mm_dot1 reads as whole vectors */
            for (int64_t r = 0; r < mc; r++)
                for (int64_t z = d->F; z < d->Fp; z++)
                    h[(j0 + r) * d->Fp + z] = 0.0f;
    }
}

/* Pass 1 of one GEMM expert e over output columns [c_lo, c_hi): the down
 * projection of its grouped h rows into the tile, scaled by each pair's gate
 * and added to its token's output row. */
static void moe_gemm_down(const loom_tensor *out, const moe_dims *d, const moe_groups *gr,
                          const float *g, int64_t e, const mm_w *wd, int64_t c_lo, int64_t c_hi,
                          const float *h, moe_gemm_buf *b) {
    const int64_t n_e = gr->first[e + 1] - gr->first[e];
    for (int64_t m0 = 0; m0 < n_e; m0 += MOE_MC) {
        const int64_t mc = LC_MIN(MOE_MC, n_e - m0), j0 = gr->first[e] + m0;
        const mm_xsrc xs = {.base = h + j0 * d->Fp, .ld = d->Fp};
        for (int64_t c0 = c_lo; c0 < c_hi; c0 += MM_NC) {
            const int64_t c1 = LC_MIN(c_hi, c0 + MM_NC), n = c1 - c0;
            mm_gemm(wd, e, 0, c0, c1, d->F, mc, &xs, b->tile, MM_NC, b->xbuf, b->wbuf);
            for (int64_t r = 0; r < mc; r++) {
                const int64_t p = gr->order[j0 + r], t = p / d->k;
                float *o = (float *)((uint8_t *)out->data + t * out->nb[1]) + c0;
                const float *y = b->tile + r * MM_NC;
                const vf gv = V_SET1(g[p]);
                int64_t j = 0;
                for (; j + VN <= n; j += VN)
                    V_STORE(o + j, V_FMA(gv, V_LOAD(y + j), V_LOAD(o + j)));
                if (j < n) {
                    const int rr = (int)(n - j);
                    v_store_tail(o + j, V_FMA(gv, v_load_tail(y + j, rr), v_load_tail(o + j, rr)),
                                 rr);
                }
            }
        }
    }
}

static loom_status k_moe_pass(const loom_tensor *out, int pass, void *scratch, int ith, int nth,
                              char *err, size_t err_n) {
    const moe_dims d = moe_dims_of(out);
    const int64_t P = d.T * d.k;
    int32_t *idx_sh = scratch;
    float *g_sh = (float *)(idx_sh + P);
    float *h = (float *)((uint8_t *)scratch + moe_h_offset(&d));
    int32_t *idx = NULL;
    float *g = NULL, *xp = NULL;
    int32_t *small = NULL; /* the experts of the per-token path */
    int n_small = 0;
    bool any_gemm = false;
    moe_groups gr = {0};
    moe_gemm_buf gb = {0};
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
    small = malloc((size_t)(d.E > 0 ? d.E : 1) * sizeof(int32_t));
    if (!small) goto oom;
    for (int u = 0; u < gr.n_used; u++)
        if (!moe_is_gemm(&gr, gr.used[u])) small[n_small++] = gr.used[u];
    any_gemm = n_small < gr.n_used;

    if (pass == 0) {
        const loom_tensor *x = out->src[0];
        if ((st = moe_weight_init(out->src[2], &wa)) != LOOM_OK ||
            (st = moe_weight_init(out->src[3], &wb)) != LOOM_OK) {
            lc_fail(err, err_n, st, "moe: bad nf4 weight");
            goto done;
        }
        if (any_gemm) {
            if (!moe_gemm_buf_alloc(&gb, d.Dm)) goto oom;
            int64_t f0, f1;
            moe_col_range(d.F, ith, nth, &f0, &f1);
            for (int u = 0; u < gr.n_used && f0 < f1; u++)
                if (moe_is_gemm(&gr, gr.used[u]))
                    moe_gemm_gate_up(out, &d, &gr, gr.used[u], &wa, &wb, f0, f1, h, &gb);
        }
        /* Per-token path: rows, not tokens, are split: any token may meet
         * this thread's rows. wf: the current gate and up rows dequantized
         * once, when enough tokens share them that re-dequantizing per token
         * costs more than an f32 row in L1. */
        xp = lc_alloc(((size_t)(d.T > 0 ? d.T : 1) + 2) * (size_t)d.Dmp * sizeof(float));
        if (!xp) goto oom;
        float *wf = xp + (size_t)(d.T > 0 ? d.T : 1) * (size_t)d.Dmp;
        const mm_w w32 = {.t = LOOM_F32};
        int64_t lo, hi;
        lc_range((int64_t)n_small * d.F, ith, nth, &lo, &hi);
        if (lo < hi)
            for (int64_t t = 0; t < d.T; t++)
                mm_pack_x(x, t, 0, 0, 0, d.Dm, d.Dmp, xp + t * d.Dmp);
        for (int64_t q = lo; q < hi; q++) {
            const int64_t e = small[q / d.F], f = q % d.F;
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
                const int64_t t = gr.order[j] / d.k;
                const float a = mm_dot1(ma, ra, ea, xp + t * d.Dmp, d.Dm);
                const float b = mm_dot1(mb, rb, eb, xp + t * d.Dmp, d.Dm);
                float *hp = h + (int64_t)j * d.Fp;
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
        moe_col_range(d.Dm, ith, nth, &lo, &hi);
        float *wf = xp = lc_alloc((size_t)d.Fp * sizeof(float)); /* see pass 0 */
        if (!xp || (any_gemm && !moe_gemm_buf_alloc(&gb, d.F))) goto oom;
        const mm_w w32 = {.t = LOOM_F32};
        for (int64_t t = 0; t < d.T; t++) {
            float *o = (float *)((uint8_t *)out->data + t * out->nb[1]);
            for (int64_t dd = lo; dd < hi; dd++)
                o[dd] = 0.0f;
        }
        /* Experts in increasing order on both paths, so each output sums its
         * terms in the same order whichever path an expert takes. */
        for (int u = 0; u < gr.n_used && lo < hi; u++) {
            const int64_t e = gr.used[u];
            if (moe_is_gemm(&gr, e)) {
                moe_gemm_down(out, &d, &gr, g, e, &wa, lo, hi, h, &gb);
                continue;
            }
            for (int64_t dd = lo; dd < hi; dd++) {
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
                    o[dd] += g[p] * mm_dot1(mw, row, eo, h + (int64_t)j * d.Fp, d.F);
                }
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
    free(small);
    moe_gemm_buf_free(&gb);
    moe_groups_free(&gr);
    return st;
}
