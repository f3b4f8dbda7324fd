/* kernels/cpu/ops/flash_attn_back.inc.h - FlashAttention-2's backward
 * (LOOM_OP_FLASH_ATTN_BACK; the math is in kernels/ref/ref_attn_back.c).
 * Included by kernels/cpu/cpu_impl.h after flash_attn.inc.h (fa_load_kv,
 * FA_DM); compiled once per ISA; everything static on purpose.
 *
 * Keys are taken VN at a time and transposed into [D][VN] tiles, so one
 * query row scores a whole tile with D broadcast-FMAs (lanes = keys, no
 * horizontal sums) and exp runs on full vectors. The probabilities are
 * recomputed from the saved log-sum-exp, never stored: memory is O(tile).
 *  - STATS / DQ: a unit is a tile of FB_TR query rows of one head; it walks
 *    the key tiles those rows see (online max/sum for STATS; dS then
 *    dq += dS k for DQ, rows accumulated in f32 on the stack).
 *  - DKV: a unit is one tile of VN keys of one KV head; it walks every query
 *    row of the head's group that sees the tile, accumulating dk^T and dv^T
 *    as [D][VN] vectors (lanes = keys), so no unit writes another's rows.
 * Causal rows see a growing prefix, so units are handed out in zigzag
 * order (heavy, light, heavy, ...) to keep the contiguous thread split even. */

#define FB_TR 16 /* query rows per STATS/DQ unit */

typedef struct {
    const loom_tensor *q, *k, *v, *dout, *x, *out;
    int64_t D, Tq, Hq, B, Tk, Hkv, group;
    float scale;
    bool causal;
    int64_t q_offset;
} fb_ctx;

static int64_t fb_visible(const fb_ctx *f, int64_t t) {
    if (!f->causal) return f->Tk;
    const int64_t last = t + f->q_offset;
    return last < 0 ? 0 : (last + 1 < f->Tk ? last + 1 : f->Tk);
}

/* Zigzag: 0, n-1, 1, n-2, ... */
static int64_t fb_zigzag(int64_t i, int64_t n) {
    return (i & 1) ? n - 1 - i / 2 : i / 2;
}

/* Keys [j0, j0+nk) of KV head hk, transposed to t[d*VN + lane] (lanes >= nk
 * zero); rows (optional) gets them untransposed as f32 [VN][D]. */
static void fb_tile(const fb_ctx *f, const loom_tensor *src, int64_t j0, int nk, int64_t hk,
                    int64_t b, float *t, float *rows) {
    const int64_t D = f->D;
    for (int64_t i = 0; i < D * VN; i++)
        t[i] = 0.0f;
    float tmp[VN];
    for (int kk = 0; kk < nk; kk++) {
        const uint8_t *r = loom_ref_ptr(src, 0, j0 + kk, hk, b);
        for (int64_t d0 = 0; d0 < D; d0 += VN) {
            const vf x = fa_load_kv(src, r, d0);
            if (rows) V_STORE(rows + kk * D + d0, x);
            V_STORE(tmp, x);
            for (int l = 0; l < VN; l++)
                t[(d0 + l) * VN + kk] = tmp[l];
        }
    }
}

/* sum_d a[d] * t[d*VN + lane]: one score (or dO.v) per key lane. */
static inline vf fb_rowdot(const float *a, const float *t, int64_t D) {
    vf s0 = V_ZERO(), s1 = V_ZERO(), s2 = V_ZERO(), s3 = V_ZERO();
    for (int64_t d = 0; d < D; d += 4) { /* D is a multiple of VN >= 4 */
        s0 = V_FMA(V_SET1(a[d]), V_LOAD(t + d * VN), s0);
        s1 = V_FMA(V_SET1(a[d + 1]), V_LOAD(t + (d + 1) * VN), s1);
        s2 = V_FMA(V_SET1(a[d + 2]), V_LOAD(t + (d + 2) * VN), s2);
        s3 = V_FMA(V_SET1(a[d + 3]), V_LOAD(t + (d + 3) * VN), s3);
    }
    return V_ADD(V_ADD(s0, s1), V_ADD(s2, s3));
}

/* 1.0 for lanes < n, else 0 (n clamped to [0, VN]). */
static inline vf fb_lanes(int64_t n) {
    float m[VN];
    for (int l = 0; l < VN; l++)
        m[l] = l < n ? 1.0f : 0.0f;
    return V_LOAD(m);
}

static void fb_stats_dq(const fb_ctx *f, int part, int64_t h, int64_t b, int64_t t0, int nr) {
    const int64_t D = f->D, hk = h / f->group;
    float kt[FA_DM * VN], vt[FA_DM * VN], kr[VN * FA_DM];
    float qs[FB_TR][FA_DM], acc[FB_TR][FA_DM], m[FB_TR], l[FB_TR], L[FB_TR], dl[FB_TR];
    int64_t n[FB_TR], nmax = 0;
    for (int r = 0; r < nr; r++) {
        const float *qr = loom_ref_ptr(f->q, 0, t0 + r, h, b);
        for (int64_t d = 0; d < D; d++) {
            qs[r][d] = qr[d] * f->scale;
            acc[r][d] = 0.0f;
        }
        n[r] = fb_visible(f, t0 + r);
        if (n[r] > nmax) nmax = n[r];
        m[r] = -INFINITY;
        l[r] = 0.0f;
        if (part == LOOM_FA_BACK_DQ) {
            L[r] = *(const float *)loom_ref_ptr(f->x, t0 + r, 0, h, b);
            dl[r] = *(const float *)loom_ref_ptr(f->x, t0 + r, 1, h, b);
        }
    }
    for (int64_t j0 = 0; j0 < nmax; j0 += VN) {
        const int nk = (int)LC_MIN((int64_t)VN, f->Tk - j0);
        fb_tile(f, f->k, j0, nk, hk, b, kt, part == LOOM_FA_BACK_DQ ? kr : NULL);
        if (part == LOOM_FA_BACK_DQ) fb_tile(f, f->v, j0, nk, hk, b, vt, NULL);
        for (int r = 0; r < nr; r++) {
            const int64_t nv = LC_MIN(n[r] - j0, (int64_t)nk);
            if (nv <= 0) continue;
            const vf s = fb_rowdot(qs[r], kt, D);
            if (part == LOOM_FA_BACK_STATS) { /* online max / sum over visible lanes */
                float sv[VN];
                V_STORE(sv, s);
                float mx = -INFINITY;
                for (int c = 0; c < nv; c++)
                    mx = sv[c] > mx ? sv[c] : mx;
                const float mn = mx > m[r] ? mx : m[r];
                const vf p = V_MUL(v_exp(V_SUB(s, V_SET1(mn))), fb_lanes(nv));
                l[r] = l[r] * (m[r] == -INFINITY ? 0.0f : expf(m[r] - mn)) + V_HSUM(p);
                m[r] = mn;
                continue;
            }
            const vf p = V_MUL(v_exp(V_SUB(s, V_SET1(L[r]))), fb_lanes(nv));
            const float *dor = loom_ref_ptr(f->dout, 0, h, t0 + r, b);
            const vf dp = fb_rowdot(dor, vt, D);
            float ds[VN];
            V_STORE(ds, V_MUL(p, V_SUB(dp, V_SET1(dl[r]))));
            for (int c = 0; c < nv; c++) {
                const vf w = V_SET1(ds[c]);
                for (int64_t d = 0; d < D; d += VN)
                    V_STORE(acc[r] + d, V_FMA(w, V_LOAD(kr + c * D + d), V_LOAD(acc[r] + d)));
            }
        }
    }
    for (int r = 0; r < nr; r++) {
        if (part == LOOM_FA_BACK_STATS) {
            const float *dor = loom_ref_ptr(f->dout, 0, h, t0 + r, b);
            const float *orow = loom_ref_ptr(f->x, 0, h, t0 + r, b);
            vf dd = V_ZERO();
            for (int64_t d = 0; d < D; d += VN)
                dd = V_FMA(V_LOAD(dor + d), V_LOAD(orow + d), dd);
            *(float *)loom_ref_ptr(f->out, t0 + r, 0, h, b) =
                n[r] ? m[r] + logf(l[r]) : 0.0f;
            *(float *)loom_ref_ptr(f->out, t0 + r, 1, h, b) = V_HSUM(dd);
        } else {
            float *o = loom_ref_ptr(f->out, 0, t0 + r, h, b);
            const vf sc = V_SET1(f->scale);
            for (int64_t d = 0; d < D; d += VN)
                V_STORE(o + d, V_MUL(V_LOAD(acc[r] + d), sc));
        }
    }
}

static void fb_dkv(const fb_ctx *f, int64_t hk, int64_t b, int64_t j0) {
    const int64_t D = f->D;
    const int nk = (int)LC_MIN((int64_t)VN, f->Tk - j0);
    float kt[FA_DM * VN], vt[FA_DM * VN], dkt[FA_DM * VN], dvt[FA_DM * VN];
    fb_tile(f, f->k, j0, nk, hk, b, kt, NULL);
    fb_tile(f, f->v, j0, nk, hk, b, vt, NULL);
    for (int64_t i = 0; i < D * VN; i++)
        dkt[i] = dvt[i] = 0.0f;
    /* First query row that sees key j0: t + q_offset >= j0. */
    int64_t t_lo = 0;
    if (f->causal) t_lo = j0 - f->q_offset > 0 ? j0 - f->q_offset : 0;
    for (int64_t h = hk * f->group; h < (hk + 1) * f->group; h++)
        for (int64_t t = t_lo; t < f->Tq; t++) {
            const int64_t nv = LC_MIN(fb_visible(f, t) - j0, (int64_t)nk);
            if (nv <= 0) continue;
            const float *qr = loom_ref_ptr(f->q, 0, t, h, b);
            const float *dor = loom_ref_ptr(f->dout, 0, h, t, b);
            const float L = *(const float *)loom_ref_ptr(f->x, t, 0, h, b);
            const float dl = *(const float *)loom_ref_ptr(f->x, t, 1, h, b);
            const vf s = V_MUL(fb_rowdot(qr, kt, D), V_SET1(f->scale));
            vf p = v_exp(V_SUB(s, V_SET1(L)));
            if (nv < VN) p = V_MUL(p, fb_lanes(nv));
            const vf ds = V_MUL(p, V_SUB(fb_rowdot(dor, vt, D), V_SET1(dl)));
            for (int64_t d = 0; d < D; d++) {
                V_STORE(dvt + d * VN, V_FMA(p, V_SET1(dor[d]), V_LOAD(dvt + d * VN)));
                V_STORE(dkt + d * VN, V_FMA(ds, V_SET1(qr[d]), V_LOAD(dkt + d * VN)));
            }
        }
    for (int kk = 0; kk < nk; kk++) {
        float *dk = loom_ref_ptr(f->out, 0, j0 + kk, hk, b);
        float *dv = loom_ref_ptr(f->out, 0, j0 + kk, hk, f->B + b);
        for (int64_t d = 0; d < D; d++) {
            dk[d] = dkt[d * VN + kk] * f->scale;
            dv[d] = dvt[d * VN + kk];
        }
    }
}

static loom_status k_flash_attn_back(const loom_tensor *out, int ith, int nth, char *err,
                                     size_t err_n) {
    (void)err;
    (void)err_n;
    fb_ctx f = {.q = out->src[0], .k = out->src[1], .v = out->src[2], .dout = out->src[3],
                .x = out->src[4], .out = out};
    f.D = f.q->ne[0], f.Tq = f.q->ne[1], f.Hq = f.q->ne[2], f.B = f.q->ne[3];
    f.Tk = f.k->ne[1], f.Hkv = f.k->ne[2], f.group = f.Hq / f.Hkv;
    f.scale = out->p.f[0];
    f.causal = out->p.i[1] != 0;
    f.q_offset = out->p.i[2];
    const int part = out->p.i[3];
    int64_t lo, hi;
    if (part == LOOM_FA_BACK_DKV) {
        const int64_t nb = (f.Tk + VN - 1) / VN, heads = f.Hkv * f.B;
        lc_range(nb * heads, ith, nth, &lo, &hi);
        for (int64_t u = lo; u < hi; u++) {
            const int64_t hb = u % heads, blk = fb_zigzag(u / heads, nb);
            fb_dkv(&f, hb % f.Hkv, hb / f.Hkv, blk * VN);
        }
        return LOOM_OK;
    }
    const int64_t nt = (f.Tq + FB_TR - 1) / FB_TR, heads = f.Hq * f.B;
    lc_range(nt * heads, ith, nth, &lo, &hi);
    for (int64_t u = lo; u < hi; u++) {
        const int64_t hb = u % heads, tile = fb_zigzag(u / heads, nt);
        const int64_t t0 = tile * FB_TR;
        fb_stats_dq(&f, part, hb % f.Hq, hb / f.Hq, t0, (int)LC_MIN((int64_t)FB_TR, f.Tq - t0));
    }
    return LOOM_OK;
}

static bool fb_supported(const loom_tensor *node) {
    const loom_tensor *q = node->src[0], *k = node->src[1], *v = node->src[2];
    const loom_tensor *dout = node->src[3], *x = node->src[4];
    if (!loom_ref_supports(node) || !loom_tensor_is_contiguous(node)) return false;
    const int64_t D = q->ne[0];
    if (D % VN != 0 || D > FA_DM || k->ne[0] != D || k->dtype != v->dtype) return false;
    if (k->ne[2] <= 0 || q->ne[2] % k->ne[2] != 0 || k->ne[3] != q->ne[3]) return false;
    return q->nb[0] == sizeof(float) && dout->nb[0] == sizeof(float) &&
           x->nb[0] == sizeof(float) && k->nb[0] == loom_dtype_block_bytes(k->dtype) &&
           v->nb[0] == loom_dtype_block_bytes(v->dtype);
}
