/* kernels/cpu/ops/flash_attn.inc.h - flash attention (online softmax, no score
 * matrix).
 * Included by kernels/cpu/cpu_impl.h, so compiled once
 * per ISA (cpu_avx512.c, cpu_avx2.c) over that ISA's vector vocabulary;
 * no include guard and everything static on purpose. */

#define FA_G  8   /* query heads sharing one K/V pass */
#define FA_DM 256 /* largest head dim handled */
#define FA_KC VN  /* keys per online-softmax step */

static inline vf fa_load_kv(const loom_tensor *t, const uint8_t *row, int64_t d) {
    return t->dtype == LOOM_F16 ? v_load_f16((const uint16_t *)row + d)
                                : V_LOAD((const float *)row + d);
}

/* Pool row of logical key j through a block table (paged: tb is the
 * sequence's table), clamped to the pool; j itself when unpaged. */
static inline int64_t fa_row(const int32_t *tb, int64_t bsz, int64_t rows, int64_t j) {
    if (!tb) return j;
    const int64_t r = (int64_t)tb[j / bsz] * bsz + j % bsz;
    return r < 0 ? 0 : r >= rows ? rows - 1 : r;
}

/* Online softmax (no score matrix): keys are consumed FA_KC at a time; per
 * query head the running max m, denominator l and the weighted V sum are
 * rescaled when the max grows. The query heads of one GQA group are done
 * together so each K/V row is loaded once for all of them. */
static loom_status k_flash_attn(const loom_tensor *out, int ith, int nth, char *err, size_t err_n) {
    (void)err;
    (void)err_n;
    const loom_tensor *q = out->src[0], *kt = out->src[1], *vt = out->src[2];
    const int64_t D = q->ne[0], Tq = q->ne[1], Hq = q->ne[2], B = q->ne[3];
    const float scale = out->p.f[0];
    const bool causal = out->p.i[1] != 0;
    /* Paged (docs/adr/0035): k/v are the block pool, src[3] the table.
     * Batched (docs/adr/0044): column b of src[3] and offset src[4][b] are
     * sequence b's; the pool has one batch (kb = 0). */
    const int64_t bsz = out->p.i[3];
    const loom_tensor *tbl = bsz > 0 ? out->src[3] : NULL;
    const int32_t *offs =
        bsz > 0 && out->src[4] ? (const int32_t *)loom_ref_ptr(out->src[4], 0, 0, 0, 0) : NULL;
    const int64_t Hkv = kt->ne[2], group = Hq / Hkv;
    const int64_t ngc = (group + FA_G - 1) / FA_G; /* chunks of query heads per KV head */
    const int64_t nd = D / VN;

    int64_t lo, hi;
    lc_range(Hkv * ngc * Tq * B, ith, nth, &lo, &hi);
    for (int64_t u = lo; u < hi; u++) {
        const int64_t gc = u % ngc, hk = (u / ngc) % Hkv, t = (u / (ngc * Hkv)) % Tq,
                      b = u / (ngc * Hkv * Tq);
        const int64_t h0 = hk * group + gc * FA_G;
        const int G = (int)LC_MIN((int64_t)FA_G, hk * group + group - h0);
        const int64_t q_offset = offs ? offs[b] : out->p.i[2], kb = offs ? 0 : b;
        const int32_t *tb = tbl ? (const int32_t *)loom_ref_ptr(tbl, 0, offs ? b : 0, 0, 0) : NULL;
        /* a table is read within its length, whatever the offset says */
        const int64_t Tk = tbl ? LC_MIN(q_offset + Tq, tbl->ne[0] * bsz) : kt->ne[1];
        int64_t nv = Tk;
        if (causal) {
            const int64_t last = t + q_offset;
            nv = last < 0 ? 0 : (last + 1 < Tk ? last + 1 : Tk);
        }
        float qs[FA_G][FA_DM], acc[FA_G][FA_DM], mrun[FA_G], lrun[FA_G];
        for (int g = 0; g < G; g++) {
            const float *qr = loom_ref_ptr(q, 0, t, h0 + g, b);
            for (int64_t d = 0; d < D; d++) {
                qs[g][d] = qr[d] * scale;
                acc[g][d] = 0.0f;
            }
            mrun[g] = -INFINITY;
            lrun[g] = 0.0f;
        }
        for (int64_t j0 = 0; j0 < nv; j0 += FA_KC) {
            const int nk = (int)LC_MIN((int64_t)FA_KC, nv - j0);
            float s[FA_G][FA_KC];
            for (int jj = 0; jj < nk; jj++) {
                const uint8_t *kr =
                    loom_ref_ptr(kt, 0, fa_row(tb, bsz, kt->ne[1], j0 + jj), hk, kb);
                vf dacc[FA_G];
                for (int g = 0; g < G; g++)
                    dacc[g] = V_ZERO();
                for (int64_t i = 0; i < nd; i++) {
                    const vf kv = fa_load_kv(kt, kr, i * VN);
                    for (int g = 0; g < G; g++)
                        dacc[g] = V_FMA(V_LOAD(qs[g] + i * VN), kv, dacc[g]);
                }
                for (int g = 0; g < G; g++)
                    s[g][jj] = V_HSUM(dacc[g]);
            }
            float pw[FA_G][FA_KC];
            for (int g = 0; g < G; g++) {
                for (int jj = nk; jj < FA_KC; jj++)
                    s[g][jj] = -INFINITY;
                float mx = V_HMAX(V_LOAD(s[g]));
                const float mnew = mx > mrun[g] ? mx : mrun[g];
                const float c = mrun[g] == -INFINITY ? 0.0f : expf(mrun[g] - mnew);
                V_STORE(pw[g], v_exp(V_SUB(V_LOAD(s[g]), V_SET1(mnew))));
                for (int jj = nk; jj < FA_KC; jj++)
                    pw[g][jj] = 0.0f;
                lrun[g] = lrun[g] * c + V_HSUM(V_LOAD(pw[g]));
                mrun[g] = mnew;
                if (c != 1.0f) {
                    const vf vc = V_SET1(c);
                    for (int64_t i = 0; i < nd; i++)
                        V_STORE(acc[g] + i * VN, V_MUL(V_LOAD(acc[g] + i * VN), vc));
                }
            }
            for (int jj = 0; jj < nk; jj++) {
                const uint8_t *vr =
                    loom_ref_ptr(vt, 0, fa_row(tb, bsz, vt->ne[1], j0 + jj), hk, kb);
                for (int64_t i = 0; i < nd; i++) {
                    const vf vv = fa_load_kv(vt, vr, i * VN);
                    for (int g = 0; g < G; g++)
                        V_STORE(acc[g] + i * VN,
                                V_FMA(V_SET1(pw[g][jj]), vv, V_LOAD(acc[g] + i * VN)));
                }
            }
        }
        for (int g = 0; g < G; g++) {
            float *o = loom_ref_ptr(out, 0, h0 + g, t, b);
            if (nv == 0) {
                for (int64_t d = 0; d < D; d++)
                    o[d] = 0.0f;
                continue;
            }
            const vf il = V_SET1(1.0f / lrun[g]);
            for (int64_t i = 0; i < nd; i++)
                V_STORE(o + i * VN, V_MUL(V_LOAD(acc[g] + i * VN), il));
        }
    }
    return LOOM_OK;
}

static bool fa_supported(const loom_tensor *node) {
    const loom_tensor *q = node->src[0], *k = node->src[1], *v = node->src[2];
    if (!loom_ref_supports(node) || !loom_tensor_is_contiguous(node)) return false;
    const loom_tensor *offs = node->src[4];
    if (node->p.i[3] != 0 &&
        (node->src[3]->nb[0] != sizeof(int32_t) ||
         (offs ? !loom_tensor_is_contiguous(node->src[3]) || node->src[3]->ne[1] != q->ne[3] ||
                     k->ne[3] != 1 || offs->nb[0] != sizeof(int32_t) || offs->ne[0] != q->ne[3]
               : q->ne[3] != 1)))
        return false;
    if (offs && node->p.i[3] == 0) return false;
    const int64_t D = q->ne[0];
    if (D % VN != 0 || D > FA_DM || k->ne[0] != D || k->dtype != v->dtype) return false;
    for (int i = 0; i < LOOM_MAX_DIMS; i++)
        if (v->ne[i] != k->ne[i]) return false;
    if (k->ne[2] <= 0 || q->ne[2] % k->ne[2] != 0 || (!offs && k->ne[3] != q->ne[3])) return false;
    if (node->ne[0] != D || node->ne[1] != q->ne[2] || node->ne[2] != q->ne[1] ||
        node->ne[3] != q->ne[3])
        return false;
    return q->nb[0] == sizeof(float) && k->nb[0] == loom_dtype_block_bytes(k->dtype) &&
           v->nb[0] == loom_dtype_block_bytes(v->dtype);
}
