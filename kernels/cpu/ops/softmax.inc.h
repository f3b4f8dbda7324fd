/* kernels/cpu/ops/softmax.inc.h - softmax over f32 rows (optional scale/mask).
 * Included by kernels/cpu/cpu_impl.h, so compiled once
 * per ISA (cpu_avx512.c, cpu_avx2.c) over that ISA's vector vocabulary;
 * no include guard and everything static on purpose. */

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
