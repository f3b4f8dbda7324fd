/* kernels/cpu/ops/rope.inc.h - rotary position embedding (normal and neox).
 * Included by kernels/cpu/cpu_impl.h, so compiled once
 * per ISA (cpu_avx512.c, cpu_avx2.c) over that ISA's vector vocabulary;
 * no include guard and everything static on purpose. */

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
    loom_rope_freq_table(&p, inv, NULL); /* the reference's numbers: cos/sin match bit for bit */
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
