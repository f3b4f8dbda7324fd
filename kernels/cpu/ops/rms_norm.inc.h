/* kernels/cpu/ops/rms_norm.inc.h - rms_norm over f32 rows.
 * Included by kernels/cpu/cpu_impl.h, so compiled once
 * per ISA (cpu_avx512.c, cpu_avx2.c) over that ISA's vector vocabulary;
 * no include guard and everything static on purpose. */

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
