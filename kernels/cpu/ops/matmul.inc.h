/* kernels/cpu/ops/matmul.inc.h - the matmul kernel: which weights/layouts it
 * takes, and the decode (small M) and packed prefill (GEMM) drivers.
 * Included by kernels/cpu/cpu_impl.h, so compiled once
 * per ISA (cpu_avx512.c, cpu_avx2.c) over that ISA's vector vocabulary;
 * no include guard and everything static on purpose. */

/* Weight rows the matmul/moe kernels can stream: dense rows of K values,
 * quantized rows whole blocks, nf4 rows starting on a 64-value absmax block. */
static bool mm_weight_ok(const loom_tensor *w, int64_t K) {
    switch (w->dtype) {
    case LOOM_F32:
    case LOOM_F16:
    case LOOM_BF16:
        return w->nb[0] == loom_dtype_block_bytes(w->dtype);
    case LOOM_Q8_0:
    case LOOM_Q4_0:
    case LOOM_Q4_1:
    case LOOM_Q5_0:
    case LOOM_Q5_1:
        return K % 32 == 0 && w->nb[0] == loom_dtype_block_bytes(w->dtype);
    case LOOM_NF4:
    case LOOM_NF4_DQ: {
        const size_t offs = w->view_src ? w->view_offs : 0;
        return K % 64 == 0 && (offs * 2) % 64 == 0 && (w->nb[1] * 2) % 64 == 0 &&
               (w->nb[2] * 2) % 64 == 0 && (w->nb[3] * 2) % 64 == 0;
    }
    default: /* k-quants: whole 256-value super-blocks (kquant.inc.h) */
        return kq_is(w->dtype) && K % LOOM_QK_K == 0 &&
               w->nb[0] == loom_dtype_block_bytes(w->dtype);
    }
}

static bool mm_supported(const loom_tensor *node) {
    const loom_tensor *w = node->src[0], *x = node->src[1];
    if (!w || !x || node->dtype != LOOM_F32 || !loom_ref_supports(node)) return false;
    if (!loom_tensor_is_contiguous(node)) return false;
    const int64_t K = w->ne[0];
    if (K <= 0 || x->ne[0] != K || w->ne[2] <= 0 || w->ne[3] <= 0 || x->ne[2] % w->ne[2] ||
        x->ne[3] % w->ne[3])
        return false;
    if (x->nb[0] != loom_dtype_block_bytes(x->dtype)) return false;
    return mm_weight_ok(w, K);
}

/* Where the packed GEMM reads its activation rows: row m is x's row (m, i2, i3)
 * of a tensor (dense matmul, any activation dtype), or the f32 row at
 * base + r * ld floats with r = rows[m] / div when rows is set, else m (moe:
 * a token's row gathered through its expert's group, or a row of the
 * grouped hidden block). */
typedef struct mm_xsrc {
    const loom_tensor *x;
    int64_t i2, i3;
    const float *base;
    int64_t ld;
    const int32_t *rows;
    int32_t div;
} mm_xsrc;

/* Activations [k0, k0 + kc) of row m: a pointer into the source for f32
 * rows, else converted into tmp. */
static const float *mm_xsrc_row(const mm_xsrc *xs, int64_t m, int64_t k0, int64_t kc, int64_t kcp,
                                float *tmp) {
    if (xs->x) {
        mm_pack_x(xs->x, m, xs->i2, xs->i3, k0, kc, kcp, tmp);
        return tmp;
    }
    const int64_t r = xs->rows ? xs->rows[m] / xs->div : m;
    return xs->base + r * xs->ld + k0;
}

/* Scratch floats the packed GEMM needs for M activation rows of K values:
 * the activation block as k-major groups of MM_MR rows plus one row of
 * conversion scratch (xn), MM_NC packed weight rows plus VN dequantized rows
 * (wn). */
static void mm_gemm_scratch(int64_t K, int64_t M, size_t *xn, size_t *wn) {
    const int64_t kc_max = LC_MIN(K, MM_KC), kcp_max = (kc_max + VN - 1) / VN * VN;
    const int64_t groups = (M + MM_MR - 1) / MM_MR;
    *xn = (size_t)groups * MM_MR * kcp_max + kcp_max;
    *wn = (size_t)kcp_max * (MM_NC + VN);
}

/* The packed (BLIS-style) GEMM: o[m * ldo + (n - n0)] = sum_k x_m[k] w_n[k]
 * for weight rows n in [n0, n1) of slice (wi2, wi3) and M activation rows.
 * xbuf / wbuf are sized by mm_gemm_scratch. Shared by dense prefill and the
 * grouped moe experts (ADR 0040). */
static void mm_gemm(const mm_w *mw, int64_t wi2, int64_t wi3, int64_t n0, int64_t n1, int64_t K,
                    int64_t M, const mm_xsrc *xs, float *o, int64_t ldo, float *xbuf, float *wbuf) {
    const int64_t groups = (M + MM_MR - 1) / MM_MR;
    const int64_t kcp_max = (LC_MIN(K, MM_KC) + VN - 1) / VN * VN;
    float *tbuf = wbuf + (size_t)kcp_max * MM_NC;
    for (int64_t k0 = 0; k0 < K; k0 += MM_KC) {
        const int64_t kc = LC_MIN(MM_KC, K - k0), kcp = (kc + VN - 1) / VN * VN;
        float *xrow = xbuf + (size_t)groups * MM_MR * kcp;
        /* Pack activations: group g holds rows [g*MR, g*MR + MR) k-major. */
        for (int64_t m = 0; m < groups * MM_MR; m++) {
            float *g = xbuf + (size_t)(m / MM_MR) * MM_MR * kcp + m % MM_MR;
            if (m >= M) {
                for (int64_t k = 0; k < kc; k++)
                    g[k * MM_MR] = 0.0f;
                continue;
            }
            const float *s = mm_xsrc_row(xs, m, k0, kc, kcp, xrow);
            for (int64_t k = 0; k < kc; k++)
                g[k * MM_MR] = s[k];
        }
        for (int64_t nb = n0; nb < n1; nb += MM_NC) {
            const int64_t nc = LC_MIN(MM_NC, n1 - nb);
            /* Pack weights: strip s holds rows [nb + s*NS, +NS) k-major. VN
             * rows at a time are dequantized into tbuf and transposed in
             * registers, VN x VN at a time (rows past nc are zeros). */
            const int64_t ncs = (nc + MM_NS - 1) / MM_NS * MM_NS;
            for (int64_t q0 = 0; q0 < ncs; q0 += VN) {
                for (int64_t j = 0; j < VN; j++) {
                    float *t = tbuf + j * kcp;
                    if (q0 + j >= nc) {
                        memset(t, 0, (size_t)kcp * sizeof(float));
                        continue;
                    }
                    int64_t eoff;
                    const uint8_t *row = mm_wrow(mw, nb + q0 + j, wi2, wi3, &eoff);
                    mm_dequant(mw, row, eoff, k0, kc, kcp, t);
                }
                float *ws = wbuf + (size_t)(q0 / MM_NS) * MM_NS * kcp + q0 % MM_NS;
                for (int64_t k = 0; k < kcp; k += VN) {
                    vf v[VN];
                    for (int j = 0; j < VN; j++)
                        v[j] = V_LOAD(tbuf + j * kcp + k);
                    v_transpose(v);
                    for (int i = 0; i < VN; i++)
                        V_STORE(ws + (k + i) * MM_NS, v[i]);
                }
            }
            for (int64_t g = 0; g < groups; g++) {
                const int mr = (int)LC_MIN(MM_MR, M - g * MM_MR);
                for (int64_t s = 0; s * MM_NS < nc; s++) {
                    const int nv = (int)LC_MIN(MM_NS, nc - s * MM_NS);
                    mm_micro(xbuf + (size_t)g * MM_MR * kcp, wbuf + (size_t)s * MM_NS * kcp, kc,
                             o + g * MM_MR * ldo + (nb - n0) + s * MM_NS, ldo, mr, nv, k0 > 0);
                }
            }
        }
    }
}

static loom_status k_matmul(const loom_tensor *out, int ith, int nth, char *err, size_t err_n) {
    const loom_tensor *w = out->src[0], *x = out->src[1];
    const int64_t K = w->ne[0], N = w->ne[1], M = x->ne[1], X2 = x->ne[2], X3 = x->ne[3];
    const int64_t r2 = X2 / w->ne[2], r3 = X3 / w->ne[3];
    int64_t lo, hi;
    lc_range(N * X2 * X3, ith, nth, &lo, &hi);
    if (lo >= hi || M == 0) return LOOM_OK;

    mm_w mw = {.w = w, .t = w->dtype, .view_offs = w->view_src ? w->view_offs : 0};
    if (loom_dtype_is_nf4(w->dtype)) {
        const loom_tensor *s = w->view_src ? w->view_src : w;
        if (loom_nf4_layout_of(s->dtype, s->data, loom_tensor_nelements(s), &mw.nf) != LOOM_OK)
            return lc_fail(err, err_n, LOOM_ERR_INVALID_ARG, "matmul: bad nf4 tensor");
        mw.tab = v_nf4_tab(loom_nf4_code);
    }

    const bool small = M <= MM_SMALL_M, q4k = small && w->dtype == LOOM_Q4_K;
    const int64_t Kp = (K + VN - 1) / VN * VN, nrun = K / 32;
    /* small M: every activation row packed whole (and, for q4_K, its sums
     * over 32 values after them: mm_dot_q4_K_xs). Prefill: mm_gemm's scratch. */
    size_t xn = (size_t)M * (size_t)(Kp + nrun), wn = 0;
    if (!small) mm_gemm_scratch(K, M, &xn, &wn);
    float *xbuf = lc_alloc(xn * sizeof(float));
    float *wbuf = small ? NULL : lc_alloc(wn * sizeof(float));
    if (!xbuf || (!small && !wbuf)) {
        free(xbuf);
        free(wbuf);
        return lc_fail(err, err_n, LOOM_ERR_OOM, "matmul: out of memory for scratch");
    }
    const int64_t ostride = (int64_t)(out->nb[1] / sizeof(float));

    for (int64_t r = lo; r < hi;) {
        const int64_t slice = r / N, i2 = slice % X2, i3 = slice / X2;
        const int64_t n0 = r - slice * N, n1 = LC_MIN(hi, (slice + 1) * N) - slice * N;
        const int64_t wi2 = i2 / r2, wi3 = i3 / r3;
        r = slice * N + n1;
        if (small) {
            float *xs = xbuf + M * Kp;
            for (int64_t m = 0; m < M; m++) {
                mm_pack_x(x, m, i2, i3, 0, K, Kp, xbuf + m * Kp);
                if (q4k) mm_xsums(xbuf + m * Kp, K, xs + m * nrun);
            }
            int64_t n = n0;
            for (; q4k && n < n1; n++) {
                int64_t eoff;
                const uint8_t *row = mm_wrow(&mw, n, wi2, wi3, &eoff);
                for (int64_t m = 0; m < M; m++)
                    *(float *)loom_ref_ptr(out, n, m, i2, i3) =
                        mm_dot_q4_K_xs(row, xbuf + m * Kp, xs + m * nrun, K);
            }
            for (; n < n1; n++) {
                int64_t eoff;
                const uint8_t *row = mm_wrow(&mw, n, wi2, wi3, &eoff);
                for (int64_t m = 0; m < M; m++)
                    *(float *)loom_ref_ptr(out, n, m, i2, i3) =
                        mm_dot1(&mw, row, eoff, xbuf + m * Kp, K);
            }
            continue;
        }
        const mm_xsrc xs = {.x = x, .i2 = i2, .i3 = i3};
        float *o0 = (float *)loom_ref_ptr(out, 0, 0, i2, i3);
        mm_gemm(&mw, wi2, wi3, n0, n1, K, M, &xs, o0 + n0, ostride, xbuf, wbuf);
    }
    free(xbuf);
    free(wbuf);
    return LOOM_OK;
}
