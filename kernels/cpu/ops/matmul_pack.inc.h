/* kernels/cpu/ops/matmul_pack.inc.h - the matmul building blocks shared by decode,
 * prefill and moe: blocking constants, the weight view (mm_w), per-row
 * dequantization and activation packing, and the prefill micro-kernel.
 * Included by kernels/cpu/cpu_impl.h, so compiled once
 * per ISA (cpu_avx512.c, cpu_avx2.c) over that ISA's vector vocabulary;
 * no include guard and everything static on purpose. */

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

/* Where the fields of a q4_1 / q5_0 / q5_1 block sit (loom/dtype.h). */
typedef struct mm_legacy {
    int bytes, qs, qh; /* block bytes; offsets of qs and qh */
    bool five, has_m;  /* 5-bit codes; a minimum m after d */
    int off;           /* subtracted from the codes: 16 for q5_0 */
} mm_legacy;

static inline mm_legacy mm_legacy_of(loom_dtype t) {
    if (t == LOOM_Q4_1) return (mm_legacy){20, 4, 0, false, true, 0};
    if (t == LOOM_Q5_0) return (mm_legacy){22, 6, 2, true, false, 16};
    return (mm_legacy){24, 8, 4, true, true, 0}; /* q5_1 */
}

static inline uint32_t mm_legacy_qh(const mm_legacy *L, const uint8_t *b) {
    uint32_t qh = 0;
    if (L->five) memcpy(&qh, b + L->qh, 4);
    return qh;
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
    case LOOM_Q4_1:
    case LOOM_Q5_0:
    case LOOM_Q5_1: {
        /* d * q (+ m), two rounded ops as ggml's dequantizer (no FMA) */
        const mm_legacy L = mm_legacy_of(mw->t);
        const uint8_t *b = row + (size_t)(k0 / 32) * L.bytes;
        for (; k < kc; k += 32, b += L.bytes) {
            const vf d = V_SET1(v_f16s(b)), m = V_SET1(L.has_m ? v_f16s(b + 2) : 0.0f);
            const uint32_t qh = mm_legacy_qh(&L, b);
            for (int j = 0; j < 32 / VN; j++) {
                const vf q = L.five ? v_q5(b + L.qs, qh, j, L.off) : v_q4u(b + L.qs, j);
                V_STORE(dst + k + j * VN, L.has_m ? V_ADD(V_MUL(q, d), m) : V_MUL(q, d));
            }
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
        if (kq_is(mw->t)) {
            kq_dequant_row(mw->t, row, k0, kc, dst);
            k = kc;
        }
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
