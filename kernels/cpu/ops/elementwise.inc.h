/* kernels/cpu/ops/elementwise.inc.h - silu, swiglu and the broadcasting binary ops
 * (add, mul).
 * Included by kernels/cpu/cpu_impl.h, so compiled once
 * per ISA (cpu_avx512.c, cpu_avx2.c) over that ISA's vector vocabulary;
 * no include guard and everything static on purpose. */

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

/* Exact GELU, x Phi(x). Phi from the erfc form of Abramowitz & Stegun 7.1.26
 * (|error| <= 1.5e-7 in erf; the same polynomial PyTorch's vectorised erf
 * uses): with z = |x|/sqrt 2, t = 1/(1 + p z), q = t P(t) exp(-z^2) ~ erfc(z),
 * Phi(x) = 1 - q/2 for x >= 0 and q/2 for x < 0. Taking q/2 directly for
 * negative x keeps the relative accuracy of the small tail values that
 * 1 + erf(x) would lose to cancellation. */
static inline vf v_gelu(vf x) {
    const vf ax = V_MAX(x, V_SUB(V_ZERO(), x));
    const vf z = V_MUL(ax, V_SET1(0.70710678118654752f));
    const vf t = V_DIV(V_SET1(1.0f), V_FMA(z, V_SET1(0.3275911f), V_SET1(1.0f)));
    vf p = V_SET1(1.061405429f);
    p = V_FMA(p, t, V_SET1(-1.453152027f));
    p = V_FMA(p, t, V_SET1(1.421413741f));
    p = V_FMA(p, t, V_SET1(-0.284496736f));
    p = V_FMA(p, t, V_SET1(0.254829592f));
    const vf h = V_MUL(V_MUL(V_MUL(p, t), v_exp(V_SUB(V_ZERO(), V_MUL(z, z)))), V_SET1(0.5f));
    /* step = 1 for x > 0, 0 for x < 0, 1/2 at 0 (x/|x| is exactly +-1) */
    const vf sgn = V_DIV(x, V_MAX(ax, V_SET1(1.17549435e-38f)));
    const vf step = V_FMA(sgn, V_SET1(0.5f), V_SET1(0.5f));
    const vf phi = V_FMA(step, V_SUB(V_SET1(1.0f), V_ADD(h, h)), h);
    return V_MUL(x, phi);
}

static loom_status k_gelu(const loom_tensor *y, int ith, int nth, char *err, size_t err_n) {
    (void)err;
    (void)err_n;
    const loom_tensor *a = y->src[0];
    const int64_t n = y->ne[0];
    int64_t lo, hi;
    lc_range(y->ne[1] * y->ne[2] * y->ne[3], ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        int64_t i1, i2, i3;
        lc_row_index(y->ne, r, &i1, &i2, &i3);
        const float *ar = loom_ref_ptr(a, 0, i1, i2, i3);
        float *yr = loom_ref_ptr(y, 0, i1, i2, i3);
        for (int64_t k = 0; k < n; k += VN) {
            const int t = (int)LC_MIN((int64_t)VN, n - k);
            const vf v = v_gelu(t == VN ? V_LOAD(ar + k) : v_load_tail(ar + k, t));
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

/* cpy between f32, f16 and bf16 (mixed-precision training's casts, ADR
 * 0041): rows with contiguous elements, any row strides, into a contiguous
 * result; converted through f32 VN values at a time, rounded as the scalar
 * loom_f32_to_f16 / loom_f32_to_bf16 (the reference) round. */
static bool cpy_float_ok(const loom_tensor *y) {
    const loom_tensor *a = y->src[0];
    const bool fy = y->dtype == LOOM_F32 || y->dtype == LOOM_F16 || y->dtype == LOOM_BF16;
    const bool fa = a && (a->dtype == LOOM_F32 || a->dtype == LOOM_F16 || a->dtype == LOOM_BF16);
    return fy && fa && loom_ref_supports(y) && loom_tensor_is_contiguous(y) &&
           lc_same_shape(y, a) && a->nb[0] == loom_dtype_block_bytes(a->dtype);
}

/* cpy of an f32 view with any element stride (a permute or transpose being
 * materialised, e.g. the encoder's v^T, ADR 0027) into a contiguous f32
 * result: a gather per row; the reference reads element by element through
 * loom_ref_get_f32. */
static bool cpy_strided_ok(const loom_tensor *y) {
    const loom_tensor *a = y->src[0];
    return a && a->dtype == LOOM_F32 && y->dtype == LOOM_F32 && loom_ref_supports(y) &&
           loom_tensor_is_contiguous(y) && lc_same_shape(y, a);
}

static loom_status k_cpy_strided(const loom_tensor *y, int ith, int nth, char *err, size_t err_n) {
    (void)err;
    (void)err_n;
    const loom_tensor *a = y->src[0];
    const int64_t n = y->ne[0];
    const size_t s0 = a->nb[0];
    int64_t lo, hi;
    lc_range(y->ne[1] * y->ne[2] * y->ne[3], ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        int64_t i1, i2, i3;
        lc_row_index(y->ne, r, &i1, &i2, &i3);
        const char *ar = loom_ref_ptr(a, 0, i1, i2, i3);
        float *yr = loom_ref_ptr(y, 0, i1, i2, i3);
        for (int64_t k = 0; k < n; k++)
            memcpy(yr + k, ar + (size_t)k * s0, sizeof(float));
    }
    return LOOM_OK;
}

static loom_status k_cpy_float(const loom_tensor *y, int ith, int nth, char *err, size_t err_n) {
    (void)err;
    (void)err_n;
    const loom_tensor *a = y->src[0];
    const int64_t n = y->ne[0];
    int64_t lo, hi;
    lc_range(y->ne[1] * y->ne[2] * y->ne[3], ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        int64_t i1, i2, i3;
        lc_row_index(y->ne, r, &i1, &i2, &i3);
        const void *ar = loom_ref_ptr(a, 0, i1, i2, i3);
        void *yr = loom_ref_ptr(y, 0, i1, i2, i3);
        int64_t k = 0;
        for (; k + VN <= n; k += VN) {
            const vf v = a->dtype == LOOM_F32   ? V_LOAD((const float *)ar + k)
                         : a->dtype == LOOM_F16 ? v_load_f16((const uint16_t *)ar + k)
                                                : v_load_bf16((const uint16_t *)ar + k);
            if (y->dtype == LOOM_F32)
                V_STORE((float *)yr + k, v);
            else if (y->dtype == LOOM_F16)
                v_store_f16((uint16_t *)yr + k, v);
            else
                v_store_bf16((uint16_t *)yr + k, v);
        }
        for (; k < n; k++) {
            const uint16_t h = a->dtype == LOOM_F32 ? 0 : ((const uint16_t *)ar)[k];
            const float v = a->dtype == LOOM_F32   ? ((const float *)ar)[k]
                            : a->dtype == LOOM_F16 ? loom_f16_to_f32(h)
                                                   : loom_bf16_to_f32(h);
            if (y->dtype == LOOM_F32)
                ((float *)yr)[k] = v;
            else if (y->dtype == LOOM_F16)
                ((uint16_t *)yr)[k] = loom_f32_to_f16(v);
            else
                ((uint16_t *)yr)[k] = loom_f32_to_bf16(v);
        }
    }
    return LOOM_OK;
}
