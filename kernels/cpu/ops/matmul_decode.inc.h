/* kernels/cpu/ops/matmul_decode.inc.h - matmul decode: one weight row dotted with an
 * activation row, weights dequantized in registers.
 * Included by kernels/cpu/cpu_impl.h, so compiled once
 * per ISA (cpu_avx512.c, cpu_avx2.c) over that ISA's vector vocabulary;
 * no include guard and everything static on purpose. */

/* q4_1 / q5_0 / q5_1 row . x: per block d * sum(q x) (+ m * sum(x)), the
 * sums over the block in registers (llama.cpp's decomposition). Inlined into
 * mm_dot1 once per type, so the layout switches fold away. Even and odd
 * blocks use separate accumulators for two independent chains. */
static inline __attribute__((always_inline)) float mm_dot_legacy(loom_dtype t, const uint8_t *b,
                                                                 const float *x, int64_t K) {
    const mm_legacy L = mm_legacy_of(t);
    vf a0 = V_ZERO(), a1 = V_ZERO(), m0 = V_ZERO(), m1 = V_ZERO();
    const int64_t nb = K / 32;
    for (int64_t i = 0; i < nb; i++, b += L.bytes) {
        __builtin_prefetch(b + MM_PREFETCH);
        const uint32_t qh = mm_legacy_qh(&L, b);
        vf t0 = V_ZERO(), s0 = V_ZERO();
        for (int j = 0; j < 32 / VN; j++) {
            const vf xv = V_LOAD(x + i * 32 + j * VN);
            const vf q = L.five ? v_q5(b + L.qs, qh, j, L.off) : v_q4u(b + L.qs, j);
            t0 = V_FMA(q, xv, t0);
            if (L.has_m) s0 = V_ADD(s0, xv);
        }
        if (i & 1) {
            a1 = V_FMA(t0, V_SET1(v_f16s(b)), a1);
            if (L.has_m) m1 = V_FMA(s0, V_SET1(v_f16s(b + 2)), m1);
        } else {
            a0 = V_FMA(t0, V_SET1(v_f16s(b)), a0);
            if (L.has_m) m0 = V_FMA(s0, V_SET1(v_f16s(b + 2)), m0);
        }
    }
    return V_HSUM(V_ADD(V_ADD(a0, a1), V_ADD(m0, m1)));
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
    case LOOM_Q4_1:
        return mm_dot_legacy(LOOM_Q4_1, row, x, K);
    case LOOM_Q5_0:
        return mm_dot_legacy(LOOM_Q5_0, row, x, K);
    case LOOM_Q5_1:
        return mm_dot_legacy(LOOM_Q5_1, row, x, K);
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
        if (kq_is(mw->t)) return kq_dot_row(mw->t, row, x, K);
        break;
    }
    return V_HSUM(V_ADD(V_ADD(a0, a1), V_ADD(a2, a3))) + tail;
}

/* q4_K decode with the sums of x over each 32 values (xs) taken once per
 * activation row: a sub-block's value is d_j u - m_j (u the unsigned
 * nibble), so its dot is d_j (u . x) - m_j xs_j, one scalar FMA per 32
 * values instead of kq_dot_q4_K's vector add per vector for the plain sum of
 * x (recomputed for every row there). Why (ADR 0040): 4-bit decode with f32
 * activations is bound by instructions, not memory, on the AVX2 host this
 * was measured on; 1.2-1.3x on q4_K [14336 x 4096] and the lm_head.
 * Interleaving 2 or 4 rows to share the activation loads measured slower
 * (the loads are folded into the FMAs) and is not done. */
static void mm_xsums(const float *x, int64_t K, float *xs) {
    for (int64_t b = 0; b < K / 32; b++) {
        vf s = V_LOAD(x + 32 * b);
        for (int j = 1; j < 32 / VN; j++)
            s = V_ADD(s, V_LOAD(x + 32 * b + j * VN));
        xs[b] = V_HSUM(s);
    }
}

static float mm_dot_q4_K_xs(const uint8_t *row, const float *x, const float *xs, int64_t K) {
    vf a0 = V_ZERO(), a1 = V_ZERO();
    float s = 0.0f;
    for (int64_t i = 0; i < K / LOOM_QK_K; i++, row += 144, x += LOOM_QK_K, xs += 8) {
        __builtin_prefetch(row + MM_PREFETCH);
        const float d = kq_f16(row), dmin = kq_f16(row + 2);
        const uint8_t *qs = row + 16;
        for (int c = 0; c < 4; c++) { /* sub-blocks 2c (low nibbles), 2c + 1 (high) */
            vf tl = V_ZERO(), th = V_ZERO();
            for (int h = 0; h < 2; h++)
                for (int j = 0; j < 16 / VN; j++) {
                    const float *xl = x + 64 * c + 16 * h + VN * j;
                    tl = V_FMA(v_q4u(qs + 32 * c + 16 * h, j), V_LOAD(xl), tl);
                    th = V_FMA(v_q4u(qs + 32 * c + 16 * h, j + 16 / VN), V_LOAD(xl + 32), th);
                }
            float s0, m0, s1, m1;
            kq_scale_min(row + 4, 2 * c, &s0, &m0);
            kq_scale_min(row + 4, 2 * c + 1, &s1, &m1);
            a0 = V_FMA(tl, V_SET1(d * s0), a0);
            a1 = V_FMA(th, V_SET1(d * s1), a1);
            s -= dmin * (m0 * xs[2 * c] + m1 * xs[2 * c + 1]);
        }
    }
    return V_HSUM(V_ADD(a0, a1)) + s;
}
