/* kernels/cpu/cpu_impl.h - the optimised CPU kernels, written once over a
 * small vector vocabulary (VN lanes, vf, V_* macros, v_* helpers) that
 * cpu_avx512.c and cpu_avx2.c define before including this file. Everything
 * here is static; the one export is LC_ENTRY (loom_cpu_kernel_for_<isa>).
 *
 * Accuracy: all arithmetic is f32 (weights are dequantized exactly in
 * registers, activations stay f32), so results differ from the double-
 * accumulating reference only by f32 rounding. Layouts the kernels do not
 * handle (element stride != element size, unaligned nf4 rows, ...) make
 * LC_ENTRY answer NULL and the reference runs instead. */
#include <math.h>
#include <stdlib.h>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/ref/ref.h"

#define LC_MIN(a, b) ((a) < (b) ? (a) : (b))

static loom_status lc_fail(char *err, size_t err_n, loom_status s, const char *msg) {
    if (err && err_n) {
        size_t n = strlen(msg);
        if (n >= err_n) n = err_n - 1;
        memcpy(err, msg, n);
        err[n] = '\0';
    }
    return s;
}

static void lc_range(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi) {
    *lo = n * ith / nth;
    *hi = n * (ith + 1) / nth;
}

static void *lc_alloc(size_t bytes) {
    return aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
}

/* exp(x) for f32 lanes (Cephes expf: range reduction by ln2 and a degree-6
 * polynomial, ~1 ulp). Inputs are clamped to the finite range. */
static inline vf v_exp(vf x) {
    x = V_MIN(V_MAX(x, V_SET1(-87.3365447505531f)), V_SET1(88.3762626647949f));
    const vf n = V_ROUND(V_MUL(x, V_SET1(1.44269504088896341f)));
    vf r = V_FMA(n, V_SET1(-0.693359375f), x);
    r = V_FMA(n, V_SET1(2.12194440e-4f), r);
    vf p = V_SET1(1.9875691500E-4f);
    p = V_FMA(p, r, V_SET1(1.3981999507E-3f));
    p = V_FMA(p, r, V_SET1(8.3334519073E-3f));
    p = V_FMA(p, r, V_SET1(4.1665795894E-2f));
    p = V_FMA(p, r, V_SET1(1.6666665459E-1f));
    p = V_FMA(p, r, V_SET1(5.0000001201E-1f));
    p = V_FMA(p, V_MUL(r, r), V_ADD(r, V_SET1(1.0f)));
    return V_MUL(p, v_pow2i(V_CVT_I(n)));
}

static bool lc_f32_rows(const loom_tensor *t) {
    return t && t->dtype == LOOM_F32 && t->nb[0] == sizeof(float);
}

static bool lc_same_shape(const loom_tensor *a, const loom_tensor *b) {
    for (int i = 0; i < LOOM_MAX_DIMS; i++)
        if (a->ne[i] != b->ne[i]) return false;
    return true;
}

static void lc_row_index(const int64_t *ne, int64_t r, int64_t *i1, int64_t *i2, int64_t *i3) {
    *i1 = r % ne[1];
    *i2 = (r / ne[1]) % ne[2];
    *i3 = r / (ne[1] * ne[2]);
}

/* ======================= matmul ======================= */

/* Prefill blocking (BLIS-style). The output is [N, M] with n contiguous, so
 * the micro-kernel vectorises over n: it keeps an MM_MR x MM_NS tile (MM_MR
 * activation rows, two vectors of weight rows) in registers; per reduction
 * step it loads two vectors of a weight strip packed k-major (dequantized
 * once per MM_KC block and reused by every activation row) and broadcasts
 * one activation per row from a k-major packed group, so every load has a
 * constant offset and the tile is written back as whole vectors. */
#define MM_KC 512       /* reduction block: a multiple of every block size (64) */
#define MM_NS (2 * VN)  /* weight rows per packed strip */
#define MM_NC (16 * VN) /* weight rows packed at once (8 strips, 512 KiB at MM_KC: L2) */
#if VN == 16
#define MM_MR 12 /* 24 accumulators + 2 weight vectors + 1 broadcast of 32 zmm */
#else
#define MM_MR 6 /* 12 accumulators + 3 of 16 ymm */
#endif
/* Up to this many activation rows, matmul runs mm_dot1 per row (weights
 * re-read from cache) instead of packing: packing costs more than it saves. */
#define MM_SMALL_M 4
/* Decode streams each weight row once from DRAM; prefetching this many bytes
 * ahead keeps more misses in flight than the hardware prefetcher alone. */
#define MM_PREFETCH 1024

typedef struct mm_w {
    const loom_tensor *w;
    loom_dtype t;
    loom_nf4_layout nf;
    size_t view_offs;
    nf4_tab tab;
} mm_w;

/* Row n of weight slice (i2, i3): a pointer for row-blocked dtypes, the
 * element offset into the whole tensor for nf4. */
static const uint8_t *mm_wrow(const mm_w *mw, int64_t n, int64_t i2, int64_t i3, int64_t *eoff) {
    const loom_tensor *w = mw->w;
    if (loom_dtype_is_nf4(mw->t)) {
        *eoff = 2 * (int64_t)(mw->view_offs + (size_t)n * w->nb[1] + (size_t)i2 * w->nb[2] +
                              (size_t)i3 * w->nb[3]);
        return NULL;
    }
    *eoff = 0;
    return (const uint8_t *)loom_ref_ptr(w, 0, n, i2, i3);
}

static inline float mm_nf4_absmax(const mm_w *mw, int64_t b) {
    return mw->nf.absmax ? mw->nf.absmax[b] : loom_nf4_absmax(&mw->nf, b);
}

/* Weights [k0, k0 + kc) of one row as f32 into dst, zero-padded to kcp. */
static void mm_dequant(const mm_w *mw, const uint8_t *row, int64_t eoff, int64_t k0, int64_t kc,
                       int64_t kcp, float *dst) {
    int64_t k = 0;
    switch (mw->t) {
    case LOOM_F32: {
        const float *s = (const float *)row + k0;
        for (; k + VN <= kc; k += VN)
            V_STORE(dst + k, V_LOAD(s + k));
        for (; k < kc; k++)
            dst[k] = s[k];
        break;
    }
    case LOOM_F16: {
        const uint16_t *s = (const uint16_t *)row + k0;
        for (; k + VN <= kc; k += VN)
            V_STORE(dst + k, v_load_f16(s + k));
        for (; k < kc; k++)
            dst[k] = loom_f16_to_f32(s[k]);
        break;
    }
    case LOOM_BF16: {
        const uint16_t *s = (const uint16_t *)row + k0;
        for (; k + VN <= kc; k += VN)
            V_STORE(dst + k, v_load_bf16(s + k));
        for (; k < kc; k++)
            dst[k] = loom_bf16_to_f32(s[k]);
        break;
    }
    case LOOM_Q8_0: {
        const uint8_t *b = row + (size_t)(k0 / 32) * 34;
        for (; k < kc; k += 32, b += 34) {
            const vf d = V_SET1(v_f16s(b));
            for (int j = 0; j < 32 / VN; j++)
                V_STORE(dst + k + j * VN, V_MUL(v_q8((const int8_t *)b + 2 + j * VN), d));
        }
        break;
    }
    case LOOM_Q4_0: {
        const uint8_t *b = row + (size_t)(k0 / 32) * 18;
        for (; k < kc; k += 32, b += 18) {
            const vf d = V_SET1(v_f16s(b));
            for (int j = 0; j < 32 / VN; j++)
                V_STORE(dst + k + j * VN, V_MUL(v_q4(b + 2, j), d));
        }
        break;
    }
    case LOOM_NF4:
    case LOOM_NF4_DQ: {
        const int64_t e = eoff + k0;
        const uint8_t *c = mw->nf.codes + e / 2;
        for (; k < kc; k += 64, c += 32) {
            const vf a = V_SET1(mm_nf4_absmax(mw, (e + k) / 64));
            for (int j = 0; j < 64 / VN; j++)
                V_STORE(dst + k + j * VN, V_MUL(v_nf4(c + j * (VN / 2), mw->tab), a));
        }
        break;
    }
    default:
        break;
    }
    for (k = kc; k < kcp; k++)
        dst[k] = 0.0f;
}

/* Activations [k0, k0 + kc) of row (m, i2, i3) as f32, zero-padded to kcp. */
static void mm_pack_x(const loom_tensor *x, int64_t m, int64_t i2, int64_t i3, int64_t k0,
                      int64_t kc, int64_t kcp, float *dst) {
    const uint8_t *p = (const uint8_t *)loom_ref_ptr(x, 0, m, i2, i3);
    int64_t k = 0;
    if (x->dtype == LOOM_F32) {
        const float *s = (const float *)p + k0;
        for (; k + VN <= kc; k += VN)
            V_STORE(dst + k, V_LOAD(s + k));
        for (; k < kc; k++)
            dst[k] = s[k];
    } else if (x->dtype == LOOM_F16) {
        const uint16_t *s = (const uint16_t *)p + k0;
        for (; k + VN <= kc; k += VN)
            V_STORE(dst + k, v_load_f16(s + k));
        for (; k < kc; k++)
            dst[k] = loom_f16_to_f32(s[k]);
    } else {
        const uint16_t *s = (const uint16_t *)p + k0;
        for (; k + VN <= kc; k += VN)
            V_STORE(dst + k, v_load_bf16(s + k));
        for (; k < kc; k++)
            dst[k] = loom_bf16_to_f32(s[k]);
    }
    for (k = kc; k < kcp; k++)
        dst[k] = 0.0f;
}

/* Decode: one weight row . one f32 activation row (K values, x padded with
 * zeros to a multiple of VN). Weights are dequantized in registers and never
 * stored: this loop is bound by streaming the weights. */
static float mm_dot1(const mm_w *mw, const uint8_t *row, int64_t eoff, const float *x, int64_t K) {
    vf a0 = V_ZERO(), a1 = V_ZERO(), a2 = V_ZERO(), a3 = V_ZERO();
    int64_t k = 0;
    float tail = 0.0f;
    switch (mw->t) {
    case LOOM_F32: {
        const float *w = (const float *)row;
        for (; k + 4 * VN <= K; k += 4 * VN) {
            a0 = V_FMA(V_LOAD(w + k), V_LOAD(x + k), a0);
            a1 = V_FMA(V_LOAD(w + k + VN), V_LOAD(x + k + VN), a1);
            a2 = V_FMA(V_LOAD(w + k + 2 * VN), V_LOAD(x + k + 2 * VN), a2);
            a3 = V_FMA(V_LOAD(w + k + 3 * VN), V_LOAD(x + k + 3 * VN), a3);
        }
        for (; k + VN <= K; k += VN)
            a0 = V_FMA(V_LOAD(w + k), V_LOAD(x + k), a0);
        if (k < K) a1 = V_FMA(v_load_tail(w + k, (int)(K - k)), V_LOAD(x + k), a1);
        break;
    }
    case LOOM_F16:
    case LOOM_BF16: {
        const uint16_t *w = (const uint16_t *)row;
        const bool h = mw->t == LOOM_F16;
        for (; k + 2 * VN <= K; k += 2 * VN) {
            const vf w0 = h ? v_load_f16(w + k) : v_load_bf16(w + k);
            const vf w1 = h ? v_load_f16(w + k + VN) : v_load_bf16(w + k + VN);
            a0 = V_FMA(w0, V_LOAD(x + k), a0);
            a1 = V_FMA(w1, V_LOAD(x + k + VN), a1);
        }
        for (; k + VN <= K; k += VN)
            a2 = V_FMA(h ? v_load_f16(w + k) : v_load_bf16(w + k), V_LOAD(x + k), a2);
        for (; k < K; k++)
            tail += (h ? loom_f16_to_f32(w[k]) : loom_bf16_to_f32(w[k])) * x[k];
        break;
    }
    case LOOM_Q8_0: {
        const uint8_t *b = row;
        const int64_t nb = K / 32;
        int64_t i = 0;
        for (; i + 2 <= nb; i += 2, b += 68) {
            __builtin_prefetch(b + MM_PREFETCH);
            vf t0 = V_ZERO(), t1 = V_ZERO();
            for (int j = 0; j < 32 / VN; j++) {
                t0 = V_FMA(v_q8((const int8_t *)b + 2 + j * VN), V_LOAD(x + i * 32 + j * VN), t0);
                t1 = V_FMA(v_q8((const int8_t *)b + 36 + j * VN), V_LOAD(x + i * 32 + 32 + j * VN),
                           t1);
            }
            a0 = V_FMA(t0, V_SET1(v_f16s(b)), a0);
            a1 = V_FMA(t1, V_SET1(v_f16s(b + 34)), a1);
        }
        for (; i < nb; i++, b += 34) {
            vf t0 = V_ZERO();
            for (int j = 0; j < 32 / VN; j++)
                t0 = V_FMA(v_q8((const int8_t *)b + 2 + j * VN), V_LOAD(x + i * 32 + j * VN), t0);
            a2 = V_FMA(t0, V_SET1(v_f16s(b)), a2);
        }
        break;
    }
    case LOOM_Q4_0: {
        const uint8_t *b = row;
        const int64_t nb = K / 32;
        int64_t i = 0;
        for (; i + 2 <= nb; i += 2, b += 36) {
            __builtin_prefetch(b + MM_PREFETCH);
            vf t0 = V_ZERO(), t1 = V_ZERO();
            for (int j = 0; j < 32 / VN; j++) {
                t0 = V_FMA(v_q4(b + 2, j), V_LOAD(x + i * 32 + j * VN), t0);
                t1 = V_FMA(v_q4(b + 20, j), V_LOAD(x + i * 32 + 32 + j * VN), t1);
            }
            a0 = V_FMA(t0, V_SET1(v_f16s(b)), a0);
            a1 = V_FMA(t1, V_SET1(v_f16s(b + 18)), a1);
        }
        for (; i < nb; i++, b += 18) {
            vf t0 = V_ZERO();
            for (int j = 0; j < 32 / VN; j++)
                t0 = V_FMA(v_q4(b + 2, j), V_LOAD(x + i * 32 + j * VN), t0);
            a2 = V_FMA(t0, V_SET1(v_f16s(b)), a2);
        }
        break;
    }
    case LOOM_NF4:
    case LOOM_NF4_DQ: {
        const uint8_t *c = mw->nf.codes + eoff / 2;
        const int64_t nb = K / 64, b0 = eoff / 64;
        for (int64_t i = 0; i < nb; i++, c += 32) {
            __builtin_prefetch(c + MM_PREFETCH);
            vf t0 = V_ZERO(), t1 = V_ZERO();
            for (int j = 0; j < 64 / VN; j += 2) {
                t0 = V_FMA(v_nf4(c + j * (VN / 2), mw->tab), V_LOAD(x + i * 64 + j * VN), t0);
                t1 = V_FMA(v_nf4(c + (j + 1) * (VN / 2), mw->tab),
                           V_LOAD(x + i * 64 + (j + 1) * VN), t1);
            }
            const vf a = V_SET1(mm_nf4_absmax(mw, b0 + i));
            if (i & 1)
                a1 = V_FMA(V_ADD(t0, t1), a, a1);
            else
                a0 = V_FMA(V_ADD(t0, t1), a, a0);
        }
        break;
    }
    default:
        break;
    }
    return V_HSUM(V_ADD(V_ADD(a0, a1), V_ADD(a2, a3))) + tail;
}

/* Prefill micro-kernel: o[r * ldo + j] (+)= sum_k xg[k * MM_MR + r] *
 * ws[k * MM_NS + j] for r < mr activation rows and j < nv weight rows. */
static void mm_micro(const float *xg, const float *ws, int64_t kc, float *o, int64_t ldo, int mr,
                     int nv, bool acc) {
    vf c0[MM_MR], c1[MM_MR];
    for (int r = 0; r < MM_MR; r++)
        c0[r] = c1[r] = V_ZERO();
    for (int64_t k = 0; k < kc; k++) {
        const vf w0 = V_LOAD(ws + k * MM_NS), w1 = V_LOAD(ws + k * MM_NS + VN);
        for (int r = 0; r < MM_MR; r++) {
            const vf b = V_SET1(xg[k * MM_MR + r]);
            c0[r] = V_FMA(w0, b, c0[r]);
            c1[r] = V_FMA(w1, b, c1[r]);
        }
    }
    for (int r = 0; r < mr; r++) {
        float *d = o + r * ldo;
        if (nv == MM_NS) {
            V_STORE(d, acc ? V_ADD(V_LOAD(d), c0[r]) : c0[r]);
            V_STORE(d + VN, acc ? V_ADD(V_LOAD(d + VN), c1[r]) : c1[r]);
            continue;
        }
        const int n0 = nv < VN ? nv : VN, n1 = nv - n0;
        v_store_tail(d, acc ? V_ADD(v_load_tail(d, n0), c0[r]) : c0[r], n0);
        if (n1 > 0) v_store_tail(d + VN, acc ? V_ADD(v_load_tail(d + VN, n1), c1[r]) : c1[r], n1);
    }
}

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
        return K % 32 == 0 && w->nb[0] == loom_dtype_block_bytes(w->dtype);
    case LOOM_NF4:
    case LOOM_NF4_DQ: {
        const size_t offs = w->view_src ? w->view_offs : 0;
        return K % 64 == 0 && (offs * 2) % 64 == 0 && (w->nb[1] * 2) % 64 == 0 &&
               (w->nb[2] * 2) % 64 == 0 && (w->nb[3] * 2) % 64 == 0;
    }
    default:
        return false;
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

    const bool small = M <= MM_SMALL_M;
    const int64_t Kp = (K + VN - 1) / VN * VN;
    const int64_t kc_max = LC_MIN(K, MM_KC), kcp_max = (kc_max + VN - 1) / VN * VN;
    const int64_t groups = (M + MM_MR - 1) / MM_MR;
    /* small M: every activation row packed whole. Prefill: the activation
     * block as k-major groups of MM_MR rows, MM_NC packed weight rows and one
     * row of conversion scratch. */
    const size_t xn = small ? (size_t)M * Kp : (size_t)groups * MM_MR * kcp_max + kcp_max;
    float *xbuf = lc_alloc(xn * sizeof(float));
    /* wbuf: MM_NC packed weight rows, then VN dequantized rows (tbuf) */
    float *wbuf = small ? NULL : lc_alloc((size_t)kcp_max * (MM_NC + VN) * sizeof(float));
    float *tbuf = wbuf ? wbuf + (size_t)kcp_max * MM_NC : NULL;
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
            for (int64_t m = 0; m < M; m++)
                mm_pack_x(x, m, i2, i3, 0, K, Kp, xbuf + m * Kp);
            for (int64_t n = n0; n < n1; n++) {
                int64_t eoff;
                const uint8_t *row = mm_wrow(&mw, n, wi2, wi3, &eoff);
                for (int64_t m = 0; m < M; m++)
                    *(float *)loom_ref_ptr(out, n, m, i2, i3) =
                        mm_dot1(&mw, row, eoff, xbuf + m * Kp, K);
            }
            continue;
        }
        float *o0 = (float *)loom_ref_ptr(out, 0, 0, i2, i3);
        for (int64_t k0 = 0; k0 < K; k0 += MM_KC) {
            const int64_t kc = LC_MIN(MM_KC, K - k0), kcp = (kc + VN - 1) / VN * VN;
            float *xrow = xbuf + (size_t)groups * MM_MR * kcp;
            /* Pack activations: group g holds rows [g*MR, g*MR + MR) k-major. */
            for (int64_t m = 0; m < groups * MM_MR; m++) {
                float *g = xbuf + (size_t)(m / MM_MR) * MM_MR * kcp + m % MM_MR;
                if (m < M) mm_pack_x(x, m, i2, i3, k0, kc, kcp, xrow);
                for (int64_t k = 0; k < kc; k++)
                    g[k * MM_MR] = m < M ? xrow[k] : 0.0f;
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
                        const uint8_t *row = mm_wrow(&mw, nb + q0 + j, wi2, wi3, &eoff);
                        mm_dequant(&mw, row, eoff, k0, kc, kcp, t);
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
                                 o0 + g * MM_MR * ostride + nb + s * MM_NS, ostride, mr, nv,
                                 k0 > 0);
                    }
                }
            }
        }
    }
    free(xbuf);
    free(wbuf);
    return LOOM_OK;
}

/* ======================= row-wise ops ======================= */

static loom_status k_rms_norm(const loom_tensor *y, int ith, int nth, char *err, size_t err_n) {
    (void)err;
    (void)err_n;
    const loom_tensor *x = y->src[0];
    const int64_t n = y->ne[0];
    const double eps = y->p.f[0];
    int64_t lo, hi;
    lc_range(y->ne[1] * y->ne[2] * y->ne[3], ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        int64_t i1, i2, i3;
        lc_row_index(y->ne, r, &i1, &i2, &i3);
        const float *xr = loom_ref_ptr(x, 0, i1, i2, i3);
        float *yr = loom_ref_ptr(y, 0, i1, i2, i3);
        vf s0 = V_ZERO(), s1 = V_ZERO();
        int64_t k = 0;
        for (; k + 2 * VN <= n; k += 2 * VN) {
            const vf a = V_LOAD(xr + k), b = V_LOAD(xr + k + VN);
            s0 = V_FMA(a, a, s0);
            s1 = V_FMA(b, b, s1);
        }
        for (; k + VN <= n; k += VN) {
            const vf a = V_LOAD(xr + k);
            s0 = V_FMA(a, a, s0);
        }
        if (k < n) {
            const vf a = v_load_tail(xr + k, (int)(n - k));
            s1 = V_FMA(a, a, s1);
        }
        const double ss = V_HSUM(V_ADD(s0, s1));
        const vf sc = V_SET1((float)(1.0 / sqrt(ss / (double)n + eps)));
        for (k = 0; k + VN <= n; k += VN)
            V_STORE(yr + k, V_MUL(V_LOAD(xr + k), sc));
        if (k < n) v_store_tail(yr + k, V_MUL(v_load_tail(xr + k, (int)(n - k)), sc), (int)(n - k));
    }
    return LOOM_OK;
}

static loom_status k_softmax(const loom_tensor *y, int ith, int nth, char *err, size_t err_n) {
    (void)err;
    (void)err_n;
    const loom_tensor *x = y->src[0];
    const int64_t n = y->ne[0];
    const float scale = y->p.f[0];
    const bool causal = y->p.i[1] != 0;
    const int64_t q_offset = y->p.i[2];
    const vf vs = V_SET1(scale);
    int64_t lo, hi;
    lc_range(y->ne[1] * y->ne[2] * y->ne[3], ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        int64_t i1, i2, i3;
        lc_row_index(y->ne, r, &i1, &i2, &i3);
        const float *xr = loom_ref_ptr(x, 0, i1, i2, i3);
        float *yr = loom_ref_ptr(y, 0, i1, i2, i3);
        int64_t nv = n;
        if (causal) {
            const int64_t last = i1 + q_offset;
            nv = last < 0 ? 0 : (last + 1 < n ? last + 1 : n);
        }
        vf mx = V_SET1(-INFINITY);
        int64_t k = 0;
        for (; k + VN <= nv; k += VN)
            mx = V_MAX(mx, V_MUL(V_LOAD(xr + k), vs));
        float m = V_HMAX(mx);
        for (; k < nv; k++)
            if (xr[k] * scale > m) m = xr[k] * scale;
        if (nv == 0 || m == -INFINITY) {
            for (k = 0; k < n; k++)
                yr[k] = 0.0f;
            continue;
        }
        const vf vm = V_SET1(m);
        vf sum = V_ZERO();
        for (k = 0; k + VN <= nv; k += VN) {
            const vf e = v_exp(V_SUB(V_MUL(V_LOAD(xr + k), vs), vm));
            V_STORE(yr + k, e);
            sum = V_ADD(sum, e);
        }
        if (k < nv) {
            /* Tail: exp of the valid lanes only (masked lanes would add exp(-87)). */
            const int t = (int)(nv - k);
            float tmp[VN];
            V_STORE(tmp, v_exp(V_SUB(V_MUL(v_load_tail(xr + k, t), vs), vm)));
            for (int j = t; j < VN; j++)
                tmp[j] = 0.0f;
            const vf e = V_LOAD(tmp);
            v_store_tail(yr + k, e, t);
            sum = V_ADD(sum, e);
        }
        const float invf = (float)(1.0 / (double)V_HSUM(sum));
        const vf inv = V_SET1(invf);
        for (k = 0; k + VN <= nv; k += VN)
            V_STORE(yr + k, V_MUL(V_LOAD(yr + k), inv));
        for (; k < nv; k++)
            yr[k] *= invf;
        for (k = nv; k < n; k++)
            yr[k] = 0.0f;
    }
    return LOOM_OK;
}

/* silu(x) = x / (1 + exp(-x)); swiglu = silu(gate) * up. */
static loom_status k_silu_like(const loom_tensor *y, int ith, int nth, char *err, size_t err_n) {
    (void)err;
    (void)err_n;
    const loom_tensor *a = y->src[0], *b = y->op == LOOM_OP_SWIGLU ? y->src[1] : NULL;
    const int64_t n = y->ne[0];
    const vf one = V_SET1(1.0f);
    int64_t lo, hi;
    lc_range(y->ne[1] * y->ne[2] * y->ne[3], ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        int64_t i1, i2, i3;
        lc_row_index(y->ne, r, &i1, &i2, &i3);
        const float *ar = loom_ref_ptr(a, 0, i1, i2, i3);
        const float *br = b ? (const float *)loom_ref_ptr(b, 0, i1, i2, i3) : NULL;
        float *yr = loom_ref_ptr(y, 0, i1, i2, i3);
        for (int64_t k = 0; k < n; k += VN) {
            const int t = (int)LC_MIN((int64_t)VN, n - k);
            const vf xv = t == VN ? V_LOAD(ar + k) : v_load_tail(ar + k, t);
            vf v = V_DIV(xv, V_ADD(one, v_exp(V_SUB(V_ZERO(), xv))));
            if (br) v = V_MUL(v, t == VN ? V_LOAD(br + k) : v_load_tail(br + k, t));
            if (t == VN)
                V_STORE(yr + k, v);
            else
                v_store_tail(yr + k, v, t);
        }
    }
    return LOOM_OK;
}

static loom_status k_binary(const loom_tensor *y, int ith, int nth, char *err, size_t err_n) {
    (void)err;
    (void)err_n;
    const loom_tensor *a = y->src[0], *b = y->src[1];
    const bool add = y->op == LOOM_OP_ADD, bscalar = b->ne[0] == 1;
    const int64_t n = y->ne[0];
    int64_t lo, hi;
    lc_range(y->ne[1] * y->ne[2] * y->ne[3], ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        int64_t i1, i2, i3;
        lc_row_index(y->ne, r, &i1, &i2, &i3);
        const int64_t j1 = b->ne[1] == 1 ? 0 : i1, j2 = b->ne[2] == 1 ? 0 : i2,
                      j3 = b->ne[3] == 1 ? 0 : i3;
        const float *ar = loom_ref_ptr(a, 0, i1, i2, i3);
        const float *br = loom_ref_ptr(b, 0, j1, j2, j3);
        float *yr = loom_ref_ptr(y, 0, i1, i2, i3);
        const vf bs = V_SET1(bscalar ? br[0] : 0.0f);
        for (int64_t k = 0; k < n; k += VN) {
            const int t = (int)LC_MIN((int64_t)VN, n - k);
            const vf av = t == VN ? V_LOAD(ar + k) : v_load_tail(ar + k, t);
            const vf bv = bscalar ? bs : t == VN ? V_LOAD(br + k) : v_load_tail(br + k, t);
            const vf v = add ? V_ADD(av, bv) : V_MUL(av, bv);
            if (t == VN)
                V_STORE(yr + k, v);
            else
                v_store_tail(yr + k, v, t);
        }
    }
    return LOOM_OK;
}

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* Same inv_freq as the reference (double), so cos/sin match bit for bit. */
static double lc_rope_inv_freq(const loom_rope_params *p, int64_t i) {
    double inv = pow((double)p->theta, -2.0 * (double)i / (double)p->n_dims);
    if (p->scaling == LOOM_ROPE_SCALING_LLAMA3) {
        const double factor = p->factor, low = p->low_freq_factor, high = p->high_freq_factor;
        const double ctx = p->orig_ctx, wavelen = 2.0 * M_PI / inv;
        if (wavelen > ctx / low) {
            inv = inv / factor;
        } else if (wavelen < ctx / high) {
        } else {
            const double smooth = (ctx / wavelen - low) / (high - low);
            inv = (1.0 - smooth) * inv / factor + smooth * inv;
        }
    }
    return inv;
}

/* cos/sin are computed once per position (rows of the same token share
 * them: heads are the fastest row index), not once per row. */
static loom_status k_rope(const loom_tensor *y, int ith, int nth, char *err, size_t err_n) {
    const loom_tensor *x = y->src[0], *pos = y->src[1];
    loom_rope_params p;
    loom_rope_params_get(y, &p);
    const int64_t hd = y->ne[0], half = p.n_dims / 2;
    const size_t hn = (size_t)(half > 0 ? half : 1);
    double *inv = malloc(hn * sizeof(double));
    float *cs = lc_alloc(hn * sizeof(float)), *sn = lc_alloc(hn * sizeof(float));
    if (!inv || !cs || !sn) {
        free(inv);
        free(cs);
        free(sn);
        return lc_fail(err, err_n, LOOM_ERR_OOM, "rope: out of memory");
    }
    for (int64_t i = 0; i < half; i++)
        inv[i] = lc_rope_inv_freq(&p, i);
    const double sign = p.inverse ? -1.0 : 1.0;
    int64_t lo, hi, cached = -1;
    lc_range(y->ne[1] * y->ne[2] * y->ne[3], ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        int64_t i1, i2, i3;
        lc_row_index(y->ne, r, &i1, &i2, &i3);
        if (i2 != cached) {
            const int32_t tp = *(const int32_t *)loom_ref_ptr(pos, i2, 0, 0, 0);
            for (int64_t i = 0; i < half; i++) {
                const double ang = (double)tp * inv[i];
                cs[i] = (float)cos(ang);
                sn[i] = (float)(sign * sin(ang));
            }
            cached = i2;
        }
        const float *xr = loom_ref_ptr(x, 0, i1, i2, i3);
        float *yr = loom_ref_ptr(y, 0, i1, i2, i3);
        if (p.mode == LOOM_ROPE_NEOX) {
            int64_t i = 0;
            for (; i + VN <= half; i += VN) {
                const vf a = V_LOAD(xr + i), b = V_LOAD(xr + half + i);
                const vf c = V_LOAD(cs + i), s = V_LOAD(sn + i);
                V_STORE(yr + i, V_SUB(V_MUL(a, c), V_MUL(b, s)));
                V_STORE(yr + half + i, V_FMA(a, s, V_MUL(b, c)));
            }
            for (; i < half; i++) {
                const float a = xr[i], b = xr[half + i];
                yr[i] = a * cs[i] - b * sn[i];
                yr[half + i] = a * sn[i] + b * cs[i];
            }
        } else {
            for (int64_t i = 0; i < half; i++) {
                const float a = xr[2 * i], b = xr[2 * i + 1];
                yr[2 * i] = a * cs[i] - b * sn[i];
                yr[2 * i + 1] = a * sn[i] + b * cs[i];
            }
        }
        for (int64_t j = p.n_dims; j < hd; j++)
            yr[j] = xr[j];
    }
    free(inv);
    free(cs);
    free(sn);
    return LOOM_OK;
}

/* ======================= flash attention ======================= */

#define FA_G  8   /* query heads sharing one K/V pass */
#define FA_DM 256 /* largest head dim handled */
#define FA_KC VN  /* keys per online-softmax step */

static inline vf fa_load_kv(const loom_tensor *t, const uint8_t *row, int64_t d) {
    return t->dtype == LOOM_F16 ? v_load_f16((const uint16_t *)row + d)
                                : V_LOAD((const float *)row + d);
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
    const int64_t Tk = kt->ne[1], Hkv = kt->ne[2], group = Hq / Hkv;
    const int64_t ngc = (group + FA_G - 1) / FA_G; /* chunks of query heads per KV head */
    const float scale = out->p.f[0];
    const bool causal = out->p.i[1] != 0;
    const int64_t q_offset = out->p.i[2];
    const int64_t nd = D / VN;

    int64_t lo, hi;
    lc_range(Hkv * ngc * Tq * B, ith, nth, &lo, &hi);
    for (int64_t u = lo; u < hi; u++) {
        const int64_t gc = u % ngc, hk = (u / ngc) % Hkv, t = (u / (ngc * Hkv)) % Tq,
                      b = u / (ngc * Hkv * Tq);
        const int64_t h0 = hk * group + gc * FA_G;
        const int G = (int)LC_MIN((int64_t)FA_G, hk * group + group - h0);
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
                const uint8_t *kr = loom_ref_ptr(kt, 0, j0 + jj, hk, b);
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
                const uint8_t *vr = loom_ref_ptr(vt, 0, j0 + jj, hk, b);
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
    const int64_t D = q->ne[0];
    if (D % VN != 0 || D > FA_DM || k->ne[0] != D || k->dtype != v->dtype) return false;
    for (int i = 0; i < LOOM_MAX_DIMS; i++)
        if (v->ne[i] != k->ne[i]) return false;
    if (k->ne[2] <= 0 || q->ne[2] % k->ne[2] != 0 || k->ne[3] != q->ne[3]) return false;
    if (node->ne[0] != D || node->ne[1] != q->ne[2] || node->ne[2] != q->ne[1] ||
        node->ne[3] != q->ne[3])
        return false;
    return q->nb[0] == sizeof(float) && k->nb[0] == loom_dtype_block_bytes(k->dtype) &&
           v->nb[0] == loom_dtype_block_bytes(v->dtype);
}

/* ======================= moe ======================= */

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

/* ======================= dispatch ======================= */

static bool rows_f32_same(const loom_tensor *node, int n_src) {
    if (!loom_ref_supports(node) || !loom_tensor_is_contiguous(node)) return false;
    for (int i = 0; i < n_src; i++)
        if (!lc_f32_rows(node->src[i]) || !lc_same_shape(node, node->src[i])) return false;
    return true;
}

loom_cpu_kernel_fn LC_ENTRY(const loom_tensor *node) {
    if (!node) return NULL;
    switch (node->op) {
    case LOOM_OP_MATMUL:
        return mm_supported(node) ? k_matmul : NULL;
    case LOOM_OP_RMS_NORM:
        return rows_f32_same(node, 1) ? k_rms_norm : NULL;
    case LOOM_OP_SOFTMAX:
        return rows_f32_same(node, 1) ? k_softmax : NULL;
    case LOOM_OP_SILU:
        return rows_f32_same(node, 1) ? k_silu_like : NULL;
    case LOOM_OP_SWIGLU:
        return rows_f32_same(node, 2) ? k_silu_like : NULL;
    case LOOM_OP_ADD:
    case LOOM_OP_MUL: {
        const loom_tensor *a = node->src[0], *b = node->src[1];
        if (!loom_ref_supports(node) || !loom_tensor_is_contiguous(node) || !lc_f32_rows(a) ||
            !lc_same_shape(node, a) || !b || b->dtype != LOOM_F32)
            return NULL;
        for (int i = 0; i < LOOM_MAX_DIMS; i++)
            if (b->ne[i] != a->ne[i] && b->ne[i] != 1) return NULL;
        if (b->ne[0] != 1 && b->nb[0] != sizeof(float)) return NULL;
        return k_binary;
    }
    case LOOM_OP_ROPE: {
        const loom_tensor *x = node->src[0], *pos = node->src[1];
        loom_rope_params p;
        if (!rows_f32_same(node, 1) || !pos || pos->dtype != LOOM_I32 || pos->ne[0] != x->ne[2] ||
            loom_tensor_nelements(pos) != x->ne[2])
            return NULL;
        loom_rope_params_get(node, &p);
        if (p.n_dims < 0 || p.n_dims % 2 != 0 || p.n_dims > x->ne[0] ||
            (p.mode != LOOM_ROPE_NORMAL && p.mode != LOOM_ROPE_NEOX))
            return NULL;
        return k_rope;
    }
    case LOOM_OP_FLASH_ATTN:
        return fa_supported(node) ? k_flash_attn : NULL;
    default:
        return NULL;
    }
}

bool LC_MP_ENTRY(const loom_tensor *node, loom_cpu_multipass *mp) {
    size_t bytes = 0;
    if (!node || node->op != LOOM_OP_MOE || !moe_supported(node, &bytes)) return false;
    mp->fn = k_moe_pass;
    mp->n_passes = 2;
    mp->scratch_bytes = bytes;
    return true;
}
