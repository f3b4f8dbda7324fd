/* kernels/ref/ref.c - shared helpers of the reference kernels and the op
 * dispatcher (loom_ref_supports / loom_ref_compute).
 *
 * Addressing: a tensor's host data is t->data, or for a view the aliased
 * tensor's data plus view_offs. Row-blocked dtypes are addressed through the
 * byte strides nb (nb[0] is the block size in bytes for q8_0/q4_0). nf4 has
 * no per-element stride; its rows are located by element offset in the
 * whole-tensor structure-of-arrays layout (see loom/dtype.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kernels/ref/ref_ops.h"

loom_status loom_ref_fail(const loom_ref_ctx *c, loom_status s, const char *fmt, ...) {
    if (c && c->err && c->err_n > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, c->err_n, fmt, ap);
        va_end(ap);
    }
    return s;
}

void loom_ref_range(const loom_ref_ctx *c, int64_t n, int64_t *lo, int64_t *hi) {
    /* Chunk boundaries n*i/nth: contiguous, balanced to within one item, and
     * the union over ith is exactly [0, n). */
    const int64_t nth = c->nth > 0 ? c->nth : 1;
    const int64_t ith = c->ith;
    *lo = n * ith / nth;
    *hi = n * (ith + 1) / nth;
}

/* Host base address of t's elements (view: the storage's data + offset). */
static char *loom_ref_base(const loom_tensor *t) {
    if (t->data) return (char *)t->data;
    if (t->view_src && t->view_src->data) return (char *)t->view_src->data + t->view_offs;
    return NULL;
}

void *loom_ref_ptr(const loom_tensor *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
    const int64_t bs = loom_dtype_block_size(t->dtype);
    return loom_ref_base(t) + (size_t)(i0 / bs) * t->nb[0] + (size_t)i1 * t->nb[1] +
           (size_t)i2 * t->nb[2] + (size_t)i3 * t->nb[3];
}

float loom_ref_get_f32(const loom_tensor *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
    const void *p = loom_ref_ptr(t, i0, i1, i2, i3);
    switch (t->dtype) {
    case LOOM_F32: {
        float v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    case LOOM_F16: {
        uint16_t h;
        memcpy(&h, p, sizeof h);
        return loom_f16_to_f32(h);
    }
    case LOOM_BF16: {
        uint16_t h;
        memcpy(&h, p, sizeof h);
        return loom_bf16_to_f32(h);
    }
    case LOOM_I32: {
        int32_t v;
        memcpy(&v, p, sizeof v);
        return (float)v;
    }
    default:
        return 0.0f; /* quantized: not element-addressable, use loom_ref_get_row */
    }
}

void loom_ref_get_row(const loom_tensor *t, int64_t i1, int64_t i2, int64_t i3, float *dst) {
    const int64_t n = t->ne[0];
    if (loom_dtype_is_nf4(t->dtype)) {
        /* nf4 strides count code bytes (two elements per byte), so the row's
         * element offset in the storage is twice its byte offset. Only valid
         * when the storage is one contiguous nf4 tensor. */
        const loom_tensor *s = t->view_src ? t->view_src : t;
        const size_t byte_off = (t->view_src ? t->view_offs : 0) + (size_t)i1 * t->nb[1] +
                                (size_t)i2 * t->nb[2] + (size_t)i3 * t->nb[3];
        loom_nf4_layout l;
        if (loom_nf4_layout_of(s->dtype, s->data, loom_tensor_nelements(s), &l) != LOOM_OK) {
            memset(dst, 0, (size_t)n * sizeof(float));
            return;
        }
        loom_nf4_dequantize(&l, (int64_t)byte_off * 2, n, dst);
        return;
    }
    if (loom_dtype_is_quantized(t->dtype)) {
        /* Blocks within a row are always contiguous (nb[0] = block bytes). */
        loom_dequantize_row(t->dtype, loom_ref_ptr(t, 0, i1, i2, i3), dst, n);
        return;
    }
    if (t->dtype == LOOM_F32 && t->nb[0] == sizeof(float)) {
        /* the same values as the loop below, without a call per element:
         * get_rows moves whole activation rows through here (the encoder's
         * packed tokens, ADR 0027) */
        memcpy(dst, loom_ref_ptr(t, 0, i1, i2, i3), (size_t)n * sizeof(float));
        return;
    }
    for (int64_t i0 = 0; i0 < n; i0++)
        dst[i0] = loom_ref_get_f32(t, i0, i1, i2, i3);
}

/* ---------------- supports ---------------- */

static bool loom_ref_is(const loom_tensor *t, loom_dtype d) {
    return t && t->dtype == d;
}

static bool loom_ref_all_f32(const loom_tensor *node, int n_src) {
    if (node->dtype != LOOM_F32) return false;
    for (int i = 0; i < n_src; i++)
        if (!loom_ref_is(node->src[i], LOOM_F32)) return false;
    return true;
}

/* nf4 is only addressable by element offset into one contiguous tensor, so
 * its storage must be contiguous and the view's rows whole code-byte rows. */
static bool loom_ref_nf4_view_ok(const loom_tensor *w) {
    const loom_tensor *s = w->view_src ? w->view_src : w;
    if (s->dtype != w->dtype || !loom_tensor_is_contiguous(s)) return false;
    return w->ne[1] <= 1 || w->nb[1] == (size_t)w->ne[0] / 2;
}

/* Weights of matmul/moe: a dtype the op takes (the ir's rule; the reference
 * reads every dtype) in a layout the reference can address. */
static bool loom_ref_weight_ok(loom_op op, const loom_tensor *w) {
    return w && loom_op_weight_dtype_ok(op, w->dtype) &&
           (!loom_dtype_is_nf4(w->dtype) || loom_ref_nf4_view_ok(w));
}

static bool loom_ref_act_ok(const loom_tensor *x) {
    return x && (x->dtype == LOOM_F32 || x->dtype == LOOM_F16 || x->dtype == LOOM_BF16);
}

static bool loom_ref_valid_dtype(const loom_tensor *t) {
    return t && (int)t->dtype >= 0 && (int)t->dtype < (int)LOOM_DTYPE_COUNT;
}

bool loom_ref_supports(const loom_tensor *node) {
    if (!node) return false;
    const loom_tensor *const *s = (const loom_tensor *const *)node->src;
    switch (node->op) {
    case LOOM_OP_NONE:
    case LOOM_OP_VIEW:
        return true;

    case LOOM_OP_GET_ROWS:
        return node->dtype == LOOM_F32 && s[0] &&
               loom_op_weight_dtype_ok(LOOM_OP_GET_ROWS, s[0]->dtype) &&
               loom_ref_is(s[1], LOOM_I32);
    case LOOM_OP_GET_ROWS_BACK:
        return loom_ref_all_f32(node, 1) && loom_ref_is(s[1], LOOM_I32);

    case LOOM_OP_SCALE:
    case LOOM_OP_SILU:
    case LOOM_OP_GELU:
    case LOOM_OP_RMS_NORM:
    case LOOM_OP_SOFTMAX:
    case LOOM_OP_SUM_TO:
    case LOOM_OP_MOE_GATE:
        return loom_ref_all_f32(node, 1);
    case LOOM_OP_ADD:
    case LOOM_OP_MUL:
    case LOOM_OP_SWIGLU:
    case LOOM_OP_SILU_BACK:
    case LOOM_OP_GELU_BACK:
    case LOOM_OP_RMS_NORM_BACK:
    case LOOM_OP_SOFTMAX_BACK:
    case LOOM_OP_MOE_GATE_BACK:
        return loom_ref_all_f32(node, 2);
    case LOOM_OP_ROPE:
        return loom_ref_all_f32(node, 1) && loom_ref_is(s[1], LOOM_I32);

    case LOOM_OP_CPY:
        /* Any dtype to any dtype; a quantized source must be contiguous. */
        if (!loom_ref_valid_dtype(node) || !loom_ref_valid_dtype(s[0])) return false;
        if (loom_dtype_is_nf4(s[0]->dtype)) return loom_ref_nf4_view_ok(s[0]);
        return true;
    case LOOM_OP_CONCAT:
        /* Same dtype throughout (bytes are copied; nf4 excluded), or f32 out
         * from plain float/i32 sources (converted by value). */
        if (!loom_ref_valid_dtype(node) || !loom_ref_valid_dtype(s[0]) ||
            !loom_ref_valid_dtype(s[1]))
            return false;
        if (loom_dtype_is_nf4(node->dtype) || loom_dtype_is_nf4(s[0]->dtype) ||
            loom_dtype_is_nf4(s[1]->dtype))
            return false;
        if (s[0]->dtype == node->dtype && s[1]->dtype == node->dtype) return true;
        return node->dtype == LOOM_F32 && !loom_dtype_is_quantized(s[0]->dtype) &&
               !loom_dtype_is_quantized(s[1]->dtype);

    case LOOM_OP_CROSS_ENTROPY:
        return loom_ref_all_f32(node, 1) && loom_ref_is(s[1], LOOM_I32);
    case LOOM_OP_CROSS_ENTROPY_BACK:
        return loom_ref_all_f32(node, 1) && loom_ref_is(s[1], LOOM_I32) &&
               loom_ref_is(s[2], LOOM_F32);

    case LOOM_OP_MATMUL:
        return node->dtype == LOOM_F32 && loom_ref_weight_ok(node->op, s[0]) &&
               loom_ref_act_ok(s[1]);
    case LOOM_OP_FLASH_ATTN:
        if (node->p.i[3] != 0 && (!s[3] || !loom_ref_is(s[3], LOOM_I32))) return false;
        if (s[4] && (node->p.i[3] == 0 || !loom_ref_is(s[4], LOOM_I32))) return false;
        return node->dtype == LOOM_F32 && loom_ref_is(s[0], LOOM_F32) && s[1] && s[2] &&
               (s[1]->dtype == LOOM_F32 || s[1]->dtype == LOOM_F16) &&
               (s[2]->dtype == LOOM_F32 || s[2]->dtype == LOOM_F16);
    case LOOM_OP_FLASH_ATTN_BACK:
        return node->dtype == LOOM_F32 && loom_ref_is(s[0], LOOM_F32) && s[1] && s[2] &&
               (s[1]->dtype == LOOM_F32 || s[1]->dtype == LOOM_F16) &&
               s[2]->dtype == s[1]->dtype && loom_ref_is(s[3], LOOM_F32) &&
               loom_ref_is(s[4], LOOM_F32) && node->p.i[3] >= LOOM_FA_BACK_STATS &&
               node->p.i[3] <= LOOM_FA_BACK_DKV;
    case LOOM_OP_SET_ROWS:
        /* The result aliases the destination (src0) exactly. */
        return s[0] && s[1] && s[2] && node->dtype == s[0]->dtype &&
               (node->dtype == LOOM_F32 || node->dtype == LOOM_F16 || node->dtype == LOOM_BF16 ||
                node->dtype == LOOM_Q8_0) &&
               s[1]->dtype == LOOM_F32 && loom_ref_is(s[2], LOOM_I32) && node->view_src &&
               (node->dtype != LOOM_Q8_0 || node->nb[0] == loom_dtype_block_bytes(LOOM_Q8_0));
    case LOOM_OP_MOE:
        return loom_ref_all_f32(node, 2) && loom_ref_weight_ok(node->op, s[2]) &&
               loom_ref_weight_ok(node->op, s[3]) && loom_ref_weight_ok(node->op, s[4]);

    default:
        return false;
    }
}

/* ---------------- compute ---------------- */

loom_status loom_ref_compute(const loom_tensor *node, int ith, int nth, char *err, size_t err_n) {
    if (err && err_n > 0) err[0] = '\0';
    const loom_ref_ctx c = {node, ith, nth, err, err_n};
    if (!node) return loom_ref_fail(&c, LOOM_ERR_INVALID_ARG, "ref: NULL node");
    if (nth < 1 || ith < 0 || ith >= nth)
        return loom_ref_fail(&c, LOOM_ERR_INVALID_ARG, "ref: bad thread split ith=%d nth=%d", ith,
                             nth);
    if (node->op == LOOM_OP_NONE || node->op == LOOM_OP_VIEW) return LOOM_OK;

    /* Everything the kernels touch must be host-addressable. */
    if (!loom_ref_base(node))
        return loom_ref_fail(&c, LOOM_ERR_INVALID_ARG, "%s: output '%s' has no host data",
                             loom_op_name(node->op), node->name);
    for (int i = 0; i < LOOM_MAX_SRC; i++)
        if (node->src[i] && !loom_ref_base(node->src[i]))
            return loom_ref_fail(&c, LOOM_ERR_INVALID_ARG, "%s: source %d '%s' has no host data",
                                 loom_op_name(node->op), i, node->src[i]->name);

    switch (node->op) {
    case LOOM_OP_GET_ROWS:
        return loom_ref_get_rows(&c);
    case LOOM_OP_ADD:
        return loom_ref_add(&c);
    case LOOM_OP_MUL:
        return loom_ref_mul(&c);
    case LOOM_OP_SCALE:
        return loom_ref_scale(&c);
    case LOOM_OP_MATMUL:
        return loom_ref_matmul(&c);
    case LOOM_OP_RMS_NORM:
        return loom_ref_rms_norm(&c);
    case LOOM_OP_ROPE:
        return loom_ref_rope(&c);
    case LOOM_OP_SOFTMAX:
        return loom_ref_softmax(&c);
    case LOOM_OP_SILU:
        return loom_ref_silu(&c);
    case LOOM_OP_SWIGLU:
        return loom_ref_swiglu(&c);
    case LOOM_OP_FLASH_ATTN:
        return loom_ref_flash_attn(&c);
    case LOOM_OP_MOE:
        return loom_ref_moe(&c);
    case LOOM_OP_CPY:
        return loom_ref_cpy(&c);
    case LOOM_OP_CONCAT:
        return loom_ref_concat(&c);
    case LOOM_OP_CROSS_ENTROPY:
        return loom_ref_cross_entropy(&c);
    case LOOM_OP_SUM_TO:
        return loom_ref_sum_to(&c);
    case LOOM_OP_SILU_BACK:
        return loom_ref_silu_back(&c);
    case LOOM_OP_GELU:
        return loom_ref_gelu(&c);
    case LOOM_OP_GELU_BACK:
        return loom_ref_gelu_back(&c);
    case LOOM_OP_RMS_NORM_BACK:
        return loom_ref_rms_norm_back(&c);
    case LOOM_OP_SOFTMAX_BACK:
        return loom_ref_softmax_back(&c);
    case LOOM_OP_GET_ROWS_BACK:
        return loom_ref_get_rows_back(&c);
    case LOOM_OP_CROSS_ENTROPY_BACK:
        return loom_ref_cross_entropy_back(&c);
    case LOOM_OP_MOE_GATE:
        return loom_ref_moe_gate(&c);
    case LOOM_OP_MOE_GATE_BACK:
        return loom_ref_moe_gate_back(&c);
    case LOOM_OP_SET_ROWS:
        return loom_ref_set_rows(&c);
    case LOOM_OP_FLASH_ATTN_BACK:
        return loom_ref_flash_attn_back(&c);
    default:
        return loom_ref_fail(&c, LOOM_ERR_UNSUPPORTED, "ref: op %d (%s) not implemented",
                             (int)node->op, loom_op_name(node->op));
    }
}
