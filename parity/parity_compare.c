/* parity/parity_compare.c - output comparison for the parity suite:
 * NMSE with NaN/Inf positions for float outputs, identical bytes for
 * quantized ones (quantizers are deterministic). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parity/parity_internal.h"

size_t parity_storage_bytes(const loom_tensor *t) {
    size_t n = loom_tensor_nbytes(t);
    if (loom_dtype_is_nf4(t->dtype)) {
        size_t full = loom_dtype_nbytes(t->dtype, loom_tensor_nelements(t));
        if (full > n) n = full;
    }
    return n;
}

/* ---------------- comparison ---------------- */

static bool same_nonfinite(float a, float b) {
    if (isnan(a) && isnan(b)) return true;
    return isinf(a) && isinf(b) && signbit(a) == signbit(b);
}

static void compare_f32(const float *got, const float *want, int64_t n, double tol, cmp_result *r) {
    double d2 = 0, b2 = 0;
    int64_t max_i = -1, first_nf = -1;
    r->max_abs = 0;
    r->n_nonfinite = 0;
    for (int64_t i = 0; i < n; i++) {
        float a = got[i], b = want[i];
        if (!isfinite(a) || !isfinite(b)) {
            if (!same_nonfinite(a, b)) {
                if (first_nf < 0) first_nf = i;
                r->n_nonfinite++;
            }
            continue;
        }
        double d = (double)a - (double)b;
        d2 += d * d;
        b2 += (double)b * b;
        if (fabs(d) > r->max_abs || max_i < 0) {
            r->max_abs = fabs(d);
            max_i = i;
        }
    }
    r->nmse = b2 > 0 ? d2 / b2 : d2;
    r->ok = r->n_nonfinite == 0 && r->nmse <= tol;
    r->bad_idx = -1;
    if (r->ok) return;
    if (first_nf >= 0) {
        r->bad_idx = first_nf;
    } else {
        /* First element off by clearly more than the tolerated average. */
        double thr = 4.0 * sqrt(tol) * sqrt(b2 / (double)(n > 0 ? n : 1));
        for (int64_t i = 0; i < n && r->bad_idx < 0; i++)
            if (fabs((double)got[i] - (double)want[i]) > thr) r->bad_idx = i;
        if (r->bad_idx < 0) r->bad_idx = max_i;
    }
    if (r->bad_idx >= 0) {
        r->got = got[r->bad_idx];
        r->want = want[r->bad_idx];
    }
}

/* Compare two contiguous tensors' bytes of dtype t (the shape from ref). */
void parity_compare(const loom_tensor *t, const void *got, const void *want, double tol,
                    cmp_result *r) {
    memset(r, 0, sizeof *r);
    r->bad_idx = -1;
    int64_t n = loom_tensor_nelements(t);
    size_t nbytes = parity_storage_bytes(t);
    if (loom_dtype_is_quantized(t->dtype)) {
        /* Quantizers are deterministic: demand identical bytes. */
        r->exact = true;
        const uint8_t *a = got, *b = want;
        size_t i = 0;
        while (i < nbytes && a[i] == b[i])
            i++;
        r->ok = i == nbytes;
        if (!r->ok) {
            if (loom_dtype_is_nf4(t->dtype)) {
                if (i < (size_t)n / 2)
                    r->bad_idx = (int64_t)i * 2;
                else
                    snprintf(r->note, sizeof r->note, "first differing byte %zu (scale section)",
                             i);
            } else {
                /* q8_0/q4_0 blocks: a 2-byte fp16 scale, then the values
                 * (q4_0: byte j holds elements j and j + 16); q4_1/q5_0/q5_1
                 * end in the same 16 nibble bytes after a longer header. */
                size_t bb = loom_dtype_block_bytes(t->dtype), off = i % bb;
                size_t hdr = t->dtype == LOOM_Q8_0 ? 2 : bb - 16;
                r->bad_idx = (int64_t)(i / bb) * loom_dtype_block_size(t->dtype) +
                             (off >= hdr ? (int64_t)(off - hdr) : 0);
                if (off < hdr)
                    snprintf(r->note, sizeof r->note, "the block header differs (byte %zu)", i);
            }
        }
        /* NMSE of the dequantized values, for the report only. */
        float *fa = malloc((size_t)n * sizeof *fa), *fb = malloc((size_t)n * sizeof *fb);
        if (fa && fb && loom_convert(t->dtype, got, LOOM_F32, fa, n) == LOOM_OK &&
            loom_convert(t->dtype, want, LOOM_F32, fb, n) == LOOM_OK) {
            cmp_result tmp;
            compare_f32(fa, fb, n, 0, &tmp);
            r->nmse = tmp.nmse;
            r->max_abs = tmp.max_abs;
            if (r->bad_idx >= 0) {
                r->got = fa[r->bad_idx];
                r->want = fb[r->bad_idx];
            }
        }
        free(fa);
        free(fb);
        return;
    }
    if (t->dtype == LOOM_F32) {
        compare_f32(got, want, n, tol, r);
        return;
    }
    float *fa = malloc((size_t)(n > 0 ? n : 1) * sizeof *fa);
    float *fb = malloc((size_t)(n > 0 ? n : 1) * sizeof *fb);
    if (!fa || !fb || loom_convert(t->dtype, got, LOOM_F32, fa, n) != LOOM_OK ||
        loom_convert(t->dtype, want, LOOM_F32, fb, n) != LOOM_OK) {
        r->ok = false;
        snprintf(r->note, sizeof r->note, "could not convert %s output for comparison",
                 loom_dtype_name(t->dtype));
    } else {
        compare_f32(fa, fb, n, tol, r);
    }
    free(fa);
    free(fb);
}
