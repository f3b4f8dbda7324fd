/* kernels/cpu/cpu_impl.h - the optimised CPU kernels, written once over a
 * small vector vocabulary (VN lanes, vf, V_* macros, v_* helpers) that
 * cpu_avx512.c and cpu_avx2.c define before including this file. Everything
 * here is static; the exports are LC_ENTRY (loom_cpu_kernel_for_<isa>) and
 * LC_MP_ENTRY (loom_cpu_multipass_for_<isa>).
 *
 * This file holds the shared helpers and the per-node table; each op family
 * lives in kernels/cpu/ops/<op>.inc.h, included below in dependency order
 * (matmul_pack before the matmul and moe files that use it). They are
 * textual includes, not separate translation units, so each ISA is still
 * one translation unit: the helpers inline across op files exactly as
 * before, and the target pragma of the ISA file covers every kernel.
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
#include "loom/backend_sdk.h"

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

/* ======================= ops (one file per op family) ======================= */

#include "kernels/cpu/ops/kquant.inc.h"
#include "kernels/cpu/ops/matmul_pack.inc.h"
#include "kernels/cpu/ops/matmul_decode.inc.h"
#include "kernels/cpu/ops/matmul.inc.h"
#include "kernels/cpu/ops/matmul_act8.inc.h"
#include "kernels/cpu/ops/rms_norm.inc.h"
#include "kernels/cpu/ops/softmax.inc.h"
#include "kernels/cpu/ops/elementwise.inc.h"
#include "kernels/cpu/ops/rope.inc.h"
#include "kernels/cpu/ops/flash_attn.inc.h"
#include "kernels/cpu/ops/flash_attn_back.inc.h"
#include "kernels/cpu/ops/moe.inc.h"

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
    case LOOM_OP_GELU:
        return rows_f32_same(node, 1) ? k_gelu : NULL;
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
    case LOOM_OP_CPY:
        if (cpy_float_ok(node)) return k_cpy_float;
        return cpy_strided_ok(node) ? k_cpy_strided : NULL;
    case LOOM_OP_FLASH_ATTN:
        return fa_supported(node) ? k_flash_attn : NULL;
    case LOOM_OP_FLASH_ATTN_BACK:
        return fb_supported(node) ? k_flash_attn_back : NULL;
    default:
        return NULL;
    }
}

/* The int8-activation matmul (ADR 0036) for node, or NULL. */
loom_cpu_kernel_fn LC_A8_ENTRY(const loom_tensor *node) {
    return a8_supported(node) ? k_matmul_act8 : NULL;
}

bool LC_MP_ENTRY(const loom_tensor *node, loom_cpu_multipass *mp) {
    size_t bytes = 0;
    if (!node || node->op != LOOM_OP_MOE || !moe_supported(node, &bytes)) return false;
    mp->fn = k_moe_pass;
    mp->n_passes = 2;
    mp->scratch_bytes = bytes;
    return true;
}
