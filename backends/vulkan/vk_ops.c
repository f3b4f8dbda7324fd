/* backends/vulkan/vk_ops.c - which nodes the Vulkan backend runs, and how
 * each becomes a dispatch (bindings + push constants, laid out exactly as
 * the shader's push_constant block in kernels/vulkan/<shader>.comp).
 *
 * Addresses are byte offsets inside the bound range plus byte strides, so
 * views (transposed, permuted, sliced) run without copies; a broadcast dim
 * of add/mul's b gets stride 0. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk_internal.h"

/* ---------------- supports ---------------- */

static bool loom_vk_is(const loom_tensor *t, loom_dtype d) {
    return t && t->dtype == d;
}

/* Largest span one binding may cover: the binding starts at the tensor's
 * offset rounded down to minStorageBufferOffsetAlignment and ends rounded up
 * to 4 bytes, within maxStorageBufferRange and 32-bit byte addressing. */
static uint64_t loom_vk_lim(const loom_vk_ctx *c) {
    const uint64_t slack = (uint64_t)c->min_align + 4;
    uint64_t lim = c->max_range > slack ? c->max_range - slack : 0;
    return lim < 0xffff0000ull ? lim : 0xffff0000ull;
}

/* The tensor fits one binding. Matmul and get_rows split larger weights,
 * tables, activations and outputs into several dispatches (see
 * loom_vk_mm_plan / loom_vk_gr_plan); every other op needs this. */
static bool loom_vk_fits(const loom_vk_ctx *c, const loom_tensor *t) {
    if (!t) return false;
    return (uint64_t)loom_tensor_nbytes(t) <= loom_vk_lim(c);
}

static bool loom_vk_rowq(loom_dtype t);

/* k-quant weights (q2_K..q6_K, kernels/vulkan/kquant.glsl): rows of whole
 * 256-value super-blocks, read element by element through A_elem. */
static bool loom_vk_kq(const loom_tensor *t) {
    const loom_dtype d = t->dtype;
    return (d == LOOM_Q2_K || d == LOOM_Q3_K || d == LOOM_Q4_K || d == LOOM_Q5_K ||
            d == LOOM_Q6_K) &&
           t->ne[0] % LOOM_QK_K == 0;
}

/* Bytes of one row (dim 0) of a plain, row-blocked (32-value) or k-quant tensor. */
static uint64_t loom_vk_row_bytes(const loom_tensor *t) {
    if (loom_vk_rowq(t->dtype)) return (uint64_t)(t->ne[0] / 32) * loom_dtype_block_bytes(t->dtype);
    if (loom_vk_kq(t)) return (uint64_t)(t->ne[0] / LOOM_QK_K) * loom_dtype_block_bytes(t->dtype);
    return (uint64_t)(t->ne[0] - 1) * t->nb[0] + loom_dtype_block_bytes(t->dtype);
}

/* The most rows (dim 1) from 1..n whose span fits lim: row bytes plus
 * (rows - 1) row strides. 0 when not even one row fits. */
static int64_t loom_vk_rows_fit(uint64_t row, uint64_t nb1, int64_t n, uint64_t lim) {
    if (row > lim) return 0;
    if (n <= 1 || nb1 == 0) return n;
    const uint64_t r = (lim - row) / nb1 + 1;
    return r < (uint64_t)n ? (int64_t)r : n;
}

/* Bytes after the nf4/nf4_dq codes of storage s (the scale sections). */
static uint64_t loom_vk_nf4_tail(const loom_tensor *s) {
    const int64_t n = loom_tensor_nelements(s);
    return (uint64_t)loom_dtype_nbytes(s->dtype, n) - (uint64_t)n / 2;
}

static bool loom_vk_plain_f(loom_dtype t) {
    return t == LOOM_F32 || t == LOOM_F16 || t == LOOM_BF16;
}

/* Row-blocked quantized types the shaders read (common.glsl's loaders) and
 * quantize.comp writes (loom_vk_quantizes; set_rows: q8_0 only). */
static bool loom_vk_rowq(loom_dtype t) {
    return t == LOOM_Q8_0 || t == LOOM_Q4_0 || t == LOOM_Q4_1 || t == LOOM_Q5_0 || t == LOOM_Q5_1;
}

static bool loom_vk_quantizes(loom_dtype t) {
    return loom_vk_rowq(t);
}

static bool loom_vk_all_f32(const loom_tensor *node, int n_src) {
    if (node->dtype != LOOM_F32) return false;
    for (int i = 0; i < n_src; i++)
        if (!loom_vk_is(node->src[i], LOOM_F32)) return false;
    return true;
}

static bool loom_vk_same_shape(const loom_tensor *a, const loom_tensor *b) {
    return memcmp(a->ne, b->ne, sizeof a->ne) == 0;
}

/* Weights the shaders read: plain floats with any strides, q8_0/q4_0 rows of
 * whole blocks, or nf4/nf4_dq views of one contiguous storage with whole
 * code-byte rows (the reference's rule), the storage fitting one binding.
 * Which dtypes matmul/moe take at all is loom_op_weight_dtype_ok's. */
static bool loom_vk_weight_ok(const loom_vk_ctx *c, const loom_tensor *w) {
    if (loom_vk_plain_f(w->dtype)) return true;
    if (loom_vk_rowq(w->dtype)) return w->ne[0] % 32 == 0;
    if (loom_vk_kq(w)) return w->offset % 2 == 0; /* 16-bit scale loads */
    if (!loom_dtype_is_nf4(w->dtype)) return false;
    const loom_tensor *s = w->view_src ? w->view_src : w;
    /* The codes may be split by rows; the scale sections are bound whole. */
    if (s->dtype != w->dtype || !loom_tensor_is_contiguous(s) ||
        loom_vk_nf4_tail(s) > loom_vk_lim(c))
        return false;
    return w->ne[1] <= 1 || w->nb[1] == (size_t)w->ne[0] / 2;
}

/* How a matmul is cut into dispatches whose bindings each fit: the whole
 * product at once, or per batch (i2, i3), per nc weight rows and per mc
 * activation columns. */
typedef struct loom_vk_mm_plan {
    bool whole;
    int64_t nc, mc;
} loom_vk_mm_plan;

#define LOOM_VK_MAX_SPLIT 65536 /* dispatches one node may be split into */

static bool loom_vk_mm_plan_make(const loom_vk_ctx *c, const loom_tensor *y, const loom_tensor *w,
                                 const loom_tensor *x, loom_vk_mm_plan *pl) {
    const uint64_t lim = loom_vk_lim(c);
    const int64_t K = w->ne[0], N = w->ne[1], M = x->ne[1];
    uint64_t wrow, wall;
    if (loom_dtype_is_nf4(w->dtype)) {
        wrow = (uint64_t)K / 2;
        wall = wrow;
        for (int d = 1; d < LOOM_MAX_DIMS; d++)
            wall += (uint64_t)(w->ne[d] - 1) * w->nb[d];
    } else {
        wrow = loom_vk_row_bytes(w);
        wall = loom_tensor_nbytes(w);
    }
    pl->whole = false;
    pl->nc = N;
    pl->mc = M;
    if (wall <= lim && loom_tensor_nbytes(x) <= lim && loom_tensor_nbytes(y) <= lim) {
        pl->whole = true;
        return true;
    }
    int64_t nc = loom_vk_rows_fit(wrow, w->nb[1], N, lim);
    if ((uint64_t)nc * 4 > lim) nc = (int64_t)(lim / 4);
    if (nc < 1) return false;
    int64_t mc = loom_vk_rows_fit(loom_vk_row_bytes(x), x->nb[1], M, lim);
    const int64_t my = loom_vk_rows_fit((uint64_t)nc * 4, y->nb[1], M, lim);
    if (my < mc) mc = my;
    if (mc < 1) return false;
    const uint64_t n = (uint64_t)(x->ne[2] * x->ne[3]) * (uint64_t)((N + nc - 1) / nc) *
                       (uint64_t)((M + mc - 1) / mc);
    if (n > LOOM_VK_MAX_SPLIT) return false;
    pl->nc = nc;
    pl->mc = mc;
    return true;
}

/* get_rows: rows of the table per dispatch (the whole table when it fits). */
static int64_t loom_vk_gr_rows(const loom_vk_ctx *c, const loom_tensor *t) {
    const uint64_t lim = loom_vk_lim(c);
    if (loom_tensor_nbytes(t) <= lim) return t->ne[1];
    if (t->ne[2] != 1 || t->ne[3] != 1) return 0; /* batched tables must fit */
    const int64_t vc = loom_vk_rows_fit(loom_vk_row_bytes(t), t->nb[1], t->ne[1], lim);
    if (vc < 1 || (t->ne[1] + vc - 1) / vc > LOOM_VK_MAX_SPLIT) return 0;
    return vc;
}

/* set_rows: destination rows per dispatch. The whole destination when it
 * fits one binding; else chunks of rows of one batch b each (the rows a
 * dispatch writes are data on the device, so every chunk's dispatch reads
 * all rows and writes those that fall in it). 0 when not even that fits. */
static int64_t loom_vk_sr_rows(const loom_vk_ctx *c, const loom_tensor *y) {
    const uint64_t lim = loom_vk_lim(c);
    if (loom_tensor_nbytes(y) <= lim) return y->ne[1];
    const int64_t rc = loom_vk_rows_fit(loom_vk_row_bytes(y), y->nb[1], y->ne[1], lim);
    if (rc < 1 || (uint64_t)y->ne[2] * (uint64_t)((y->ne[1] + rc - 1) / rc) > LOOM_VK_MAX_SPLIT)
        return 0;
    return rc;
}

/* set_rows (ADR 0011): the node is the destination (a leaf or a view of
 * one, with its strides); f32/f16/bf16 by set_rows.comp, q8_0 by
 * quantize.comp's scatter mode (exact ggml rounding needs fp64). */
static bool loom_vk_set_rows_ok(const loom_vk_ctx *c, const loom_tensor *y) {
    const loom_tensor *dst = y->src[0], *src = y->src[1], *rows = y->src[2];
    if (!dst || !src || !rows || !y->view_src || y->dtype != dst->dtype) return false;
    if (!loom_vk_is(src, LOOM_F32) || !loom_vk_is(rows, LOOM_I32)) return false;
    const int64_t W = y->ne[0], R = y->ne[1], B = y->ne[2], T = src->ne[1];
    if (src->ne[0] != W || src->ne[2] != B || src->ne[3] != 1 || y->ne[3] != 1 ||
        rows->ne[0] != T || (rows->ne[1] != 1 && rows->ne[1] != B) || rows->ne[2] != 1 ||
        rows->ne[3] != 1 || R < 1)
        return false;
    if ((uint64_t)W * (uint64_t)T * (uint64_t)B >= (uint64_t)1 << 31) return false;
    if (loom_vk_sr_rows(c, y) < 1) return false;
    switch (y->dtype) {
    case LOOM_F32:
        return y->nb[0] % 4 == 0 && y->nb[1] % 4 == 0 && y->nb[2] % 4 == 0;
    case LOOM_F16:
    case LOOM_BF16:
        return y->nb[0] % 2 == 0 && y->nb[1] % 2 == 0 && y->nb[2] % 2 == 0;
    case LOOM_Q8_0:
        return c->fp64 && W % 32 == 0 && y->nb[0] == loom_dtype_block_bytes(LOOM_Q8_0);
    default:
        return false;
    }
}

bool loom_vk_supports(loom_backend *be, const loom_tensor *node) {
    loom_vk_ctx *c = be->ctx;
    if (!node || !c) return false;
    if (node->op == LOOM_OP_NONE || loom_op_is_view(node->op)) return true;
    /* set_rows writes into its destination's strides and splits it itself;
     * its source and rows must fit one binding each. */
    if (node->op == LOOM_OP_SET_ROWS)
        return loom_vk_set_rows_ok(c, node) && loom_vk_fits(c, node->src[1]) &&
               loom_vk_fits(c, node->src[2]);
    /* Matmul splits every operand, get_rows its table (src 0). */
    const bool mm = node->op == LOOM_OP_MATMUL, gr = node->op == LOOM_OP_GET_ROWS;
    if (!loom_tensor_is_contiguous(node) || (!mm && !loom_vk_fits(c, node))) return false;
    if (loom_tensor_nbytes(node) >= 0xffff0000ull) return false;
    for (int i = 0; i < LOOM_MAX_SRC; i++) {
        if (!node->src[i] || mm || (gr && i == 0)) continue;
        if (!loom_vk_fits(c, node->src[i])) return false;
    }
    const loom_tensor *const *s = (const loom_tensor *const *)node->src;
    if (loom_tensor_nelements(node) >= (int64_t)1 << 31) return false;
    switch (node->op) {
    case LOOM_OP_ADD:
    case LOOM_OP_MUL:
        if (!loom_vk_all_f32(node, 2)) return false;
        for (int i = 0; i < LOOM_MAX_DIMS; i++)
            if (node->ne[i] != s[0]->ne[i] || (s[1]->ne[i] != s[0]->ne[i] && s[1]->ne[i] != 1))
                return false;
        return true;
    case LOOM_OP_SCALE:
    case LOOM_OP_SILU:
    case LOOM_OP_GELU:
        return loom_vk_all_f32(node, 1) && loom_vk_same_shape(node, s[0]);
    case LOOM_OP_SWIGLU:
    case LOOM_OP_SILU_BACK:
    case LOOM_OP_GELU_BACK:
    case LOOM_OP_RMS_NORM_BACK:
    case LOOM_OP_SOFTMAX_BACK:
        return loom_vk_all_f32(node, 2) && loom_vk_same_shape(node, s[0]) &&
               loom_vk_same_shape(node, s[1]);
    case LOOM_OP_RMS_NORM:
    case LOOM_OP_SOFTMAX:
        return loom_vk_all_f32(node, 1) && loom_vk_same_shape(node, s[0]);
    case LOOM_OP_ROPE: {
        if (!c->fp64) return false; /* angle needs double (see rope.comp) */
        if (!loom_vk_all_f32(node, 1) || !loom_vk_is(s[1], LOOM_I32) ||
            !loom_vk_same_shape(node, s[0]))
            return false;
        loom_rope_params rp;
        loom_rope_params_get(node, &rp);
        return rp.n_dims >= 0 && rp.n_dims % 2 == 0 && rp.n_dims <= node->ne[0] &&
               (rp.mode == LOOM_ROPE_NORMAL || rp.mode == LOOM_ROPE_NEOX) &&
               s[1]->ne[0] == s[0]->ne[2] && loom_tensor_nelements(s[1]) == s[0]->ne[2] &&
               rp.n_dims <= 4096;
    }
    case LOOM_OP_GET_ROWS:
        /* the rule (ir), then what get_rows.comp decodes */
        return node->dtype == LOOM_F32 && s[0] && loom_vk_gr_rows(c, s[0]) > 0 &&
               loom_op_weight_dtype_ok(LOOM_OP_GET_ROWS, s[0]->dtype) &&
               (loom_vk_plain_f(s[0]->dtype) || loom_vk_rowq(s[0]->dtype) || loom_vk_kq(s[0])) &&
               loom_vk_is(s[1], LOOM_I32) && s[1]->ne[2] == 1 && s[1]->ne[3] == 1 &&
               s[0]->ne[3] == 1 && (s[0]->ne[2] == 1 || s[0]->ne[2] == s[1]->ne[1]) &&
               node->ne[0] == s[0]->ne[0] && node->ne[1] == s[1]->ne[0] &&
               node->ne[2] == s[1]->ne[1];
    case LOOM_OP_CPY: {
        if (!s[0] || !loom_vk_same_shape(node, s[0])) return false;
        const loom_dtype st = s[0]->dtype, dt = node->dtype;
        if (loom_dtype_is_nf4(st)) /* nf4 sources: cpy.comp, to plain floats */
            return loom_vk_weight_ok(c, s[0]) && loom_vk_plain_f(dt) &&
                   loom_vk_fits(c, s[0]->view_src ? s[0]->view_src : s[0]);
        const bool src_ok = loom_vk_plain_f(st) || st == LOOM_I32 ||
                            (loom_vk_rowq(st) && s[0]->ne[0] % 32 == 0) || loom_vk_kq(s[0]);
        if (src_ok && loom_vk_quantizes(dt)) /* quantize.comp: exact reciprocals need fp64 */
            return c->fp64 && st != dt && s[0]->ne[0] % 32 == 0;
        if (src_ok && loom_dtype_is_nf4(dt)) /* quantize_nf4.comp: exact division needs fp64 */
            return c->fp64 && loom_tensor_nelements(node) % 64 == 0;
        return src_ok && (loom_vk_plain_f(dt) || (dt == LOOM_I32 && st == LOOM_I32));
    }
    case LOOM_OP_MATMUL: {
        if (node->dtype != LOOM_F32 || !s[0] || !s[1] || !loom_vk_plain_f(s[1]->dtype))
            return false;
        if (!loom_op_weight_dtype_ok(node->op, s[0]->dtype) || !loom_vk_weight_ok(c, s[0]))
            return false;
        const loom_tensor *w = s[0], *x = s[1];
        /* lavapipe ends shader loops after ~65536 iterations in total per
         * invocation; the split-K kernel runs about K/8 of them. */
        if (c->cpu_device && w->ne[0] > 400000) return false;
        loom_vk_mm_plan pl;
        return x->ne[0] == w->ne[0] && w->ne[2] > 0 && w->ne[3] > 0 && x->ne[2] % w->ne[2] == 0 &&
               x->ne[3] % w->ne[3] == 0 && node->ne[0] == w->ne[1] && node->ne[1] == x->ne[1] &&
               loom_vk_mm_plan_make(c, node, w, x, &pl);
    }
    case LOOM_OP_FLASH_ATTN:
        /* Per invocation: Tk/64 tiles of ~D + 256 loop iterations; keep
         * under lavapipe's loop limit (see the matmul case). The batched
         * paged form (src[4] offsets, docs/adr/0044) has no shader yet. */
        if (s[4]) return false;
        if (node->p.i[3] != 0 && (!s[3] || s[3]->dtype != LOOM_I32 ||
                                  s[3]->nb[0] != sizeof(int32_t) || !s[0] || s[0]->ne[3] != 1))
            return false;
        /* The most keys a node may read: the pool's rows, or a paged
         * sequence's table (never the patched q_offset, docs/adr/0011). */
        if (c->cpu_device && s[1] && s[0] &&
            ((node->p.i[3] ? s[3]->ne[0] * node->p.i[3] : s[1]->ne[1]) + 63) / 64 *
                    (s[0]->ne[0] + 300) >
                60000)
            return false;
        return node->dtype == LOOM_F32 && loom_vk_is(s[0], LOOM_F32) && s[1] && s[2] &&
               (s[1]->dtype == LOOM_F32 || s[1]->dtype == LOOM_F16) &&
               (s[2]->dtype == LOOM_F32 || s[2]->dtype == LOOM_F16) && s[0]->ne[0] <= 256 &&
               s[1]->ne[2] > 0 && s[0]->ne[2] % s[1]->ne[2] == 0 && s[1]->ne[0] == s[0]->ne[0];
    case LOOM_OP_FLASH_ATTN_BACK: {
        if (!s[0] || !s[1] || !s[2] || !s[3] || !s[4] || node->dtype != LOOM_F32 ||
            !loom_tensor_is_contiguous(node) || !loom_vk_is(s[0], LOOM_F32) ||
            !loom_vk_is(s[3], LOOM_F32) || !loom_vk_is(s[4], LOOM_F32) ||
            (s[1]->dtype != LOOM_F32 && s[1]->dtype != LOOM_F16) || s[2]->dtype != s[1]->dtype ||
            s[0]->ne[0] > 256 || s[1]->ne[2] <= 0 || s[0]->ne[2] % s[1]->ne[2] != 0)
            return false;
        /* rows contiguous in D (the shader's addressing) */
        const size_t es = loom_dtype_block_bytes(s[1]->dtype);
        if (s[0]->nb[0] != 4 || s[3]->nb[0] != 4 || s[4]->nb[0] != 4 || s[1]->nb[0] != es ||
            s[2]->nb[0] != es)
            return false;
        /* Per invocation: tiles of 64 keys (or query rows) of ~2D + 300
         * iterations; keep under lavapipe's loop limit (see flash_attn). */
        const int64_t D = s[0]->ne[0], rows = node->p.i[3] == LOOM_FA_BACK_DKV
                                                  ? s[0]->ne[1] * (s[0]->ne[2] / s[1]->ne[2])
                                                  : s[1]->ne[1];
        return !c->cpu_device || (rows + 63) / 64 * (2 * D + 300) <= 60000;
    }
    case LOOM_OP_CONCAT: {
        if (!s[0] || !s[1] || node->p.i[0] < 0 || node->p.i[0] > 3) return false;
        const loom_dtype y = node->dtype, a = s[0]->dtype, b = s[1]->dtype;
        const bool plain_a = loom_vk_plain_f(a) || a == LOOM_I32;
        const bool plain_b = loom_vk_plain_f(b) || b == LOOM_I32;
        if (y == LOOM_F32) return plain_a && plain_b;
        return (loom_vk_plain_f(y) || y == LOOM_I32) && a == y && b == y;
    }
    case LOOM_OP_SUM_TO: {
        if (!loom_vk_all_f32(node, 1)) return false;
        int64_t red = 1;
        for (int i = 0; i < LOOM_MAX_DIMS; i++) {
            if (node->ne[i] != s[0]->ne[i] && node->ne[i] != 1) return false;
            if (node->ne[i] != s[0]->ne[i]) red *= s[0]->ne[i];
        }
        return red <= 16384; /* one invocation sums them all: keep loops short */
    }
    case LOOM_OP_MOE: {
        if (!loom_vk_all_f32(node, 2) || s[0]->ne[2] != 1 || s[0]->ne[3] != 1) return false;
        const int64_t E = s[1]->ne[0], Dm = s[0]->ne[0], F = s[2] ? s[2]->ne[1] : 0;
        if (E > 256 || node->p.i[0] < 1 || node->p.i[0] > E || s[1]->ne[1] != s[0]->ne[1])
            return false;
        for (int i = 2; i <= 4; i++) {
            const loom_tensor *w = s[i];
            const int64_t k = i == 4 ? F : Dm;
            if (!w || w->ne[2] != E || w->ne[3] != 1 || w->ne[0] != k) return false;
            if (!loom_op_weight_dtype_ok(node->op, w->dtype) || !loom_vk_weight_ok(c, w))
                return false;
        }
        return true;
    }
    case LOOM_OP_CROSS_ENTROPY:
        return loom_vk_all_f32(node, 1) && loom_vk_is(s[1], LOOM_I32) &&
               loom_tensor_nelements(node) == 1 && s[1]->ne[0] == s[0]->ne[1] &&
               s[1]->ne[1] == s[0]->ne[2] && s[1]->ne[2] == s[0]->ne[3];
    case LOOM_OP_CROSS_ENTROPY_BACK:
        return loom_vk_all_f32(node, 1) && loom_vk_is(s[1], LOOM_I32) &&
               loom_vk_is(s[2], LOOM_F32) && loom_vk_same_shape(node, s[0]) &&
               s[1]->ne[0] == s[0]->ne[1] && s[1]->ne[1] == s[0]->ne[2] &&
               s[1]->ne[2] == s[0]->ne[3];
    case LOOM_OP_GET_ROWS_BACK:
        return loom_vk_all_f32(node, 1) && loom_vk_is(s[1], LOOM_I32) && s[1]->ne[2] == 1 &&
               s[1]->ne[3] == 1 && node->ne[2] == 1 && node->ne[3] == 1 &&
               s[0]->ne[1] == s[1]->ne[0] && s[0]->ne[2] == s[1]->ne[1] && s[0]->ne[3] == 1 &&
               node->ne[0] == s[0]->ne[0] && s[1]->ne[0] * s[1]->ne[1] <= 16384;
    case LOOM_OP_MOE_GATE:
        return loom_vk_all_f32(node, 1) && loom_vk_same_shape(node, s[0]) && node->ne[0] <= 256 &&
               node->ne[2] == 1 && node->ne[3] == 1 && node->p.i[0] >= 1 &&
               node->p.i[0] <= node->ne[0];
    case LOOM_OP_MOE_GATE_BACK:
        return loom_vk_all_f32(node, 2) && loom_vk_same_shape(node, s[0]) &&
               loom_vk_same_shape(node, s[1]) && node->ne[0] <= 4096 && node->ne[2] == 1 &&
               node->ne[3] == 1;
    default:
        return false;
    }
}

/* ---------------- dispatch helpers ---------------- */

static loom_vk_bind loom_vk_b(const loom_tensor *t, bool write) {
    return (loom_vk_bind){t->buffer, t->offset, loom_tensor_nbytes(t), write};
}

/* Grid for n invocations in workgroups of wg: x capped at 65535 groups. */
static void loom_vk_grid(uint64_t n, uint32_t wg, uint32_t *gx, uint32_t *gy) {
    uint64_t groups = (n + wg - 1) / wg;
    if (groups == 0) {
        *gx = *gy = 0;
        return;
    }
    *gx = groups > 65535 ? 65535 : (uint32_t)groups;
    *gy = (uint32_t)((groups + *gx - 1) / *gx);
}

static uint32_t loom_vk_f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Append offset + 4 byte strides of t (5 words) at pc[*k]. */
static void loom_vk_put_t(const loom_vk_ctx *c, uint32_t *pc, int *k, const loom_tensor *t) {
    pc[(*k)++] = loom_vk_rel(c, t->offset);
    for (int d = 0; d < 4; d++)
        pc[(*k)++] = (uint32_t)t->nb[d];
}

static loom_status loom_vk_run(loom_backend *be, const char *shader, const loom_vk_bind *b, int nb,
                               const uint32_t *pc, uint64_t n, uint32_t wg) {
    uint32_t gx, gy;
    loom_vk_grid(n, wg, &gx, &gy);
    return loom_vk_dispatch(be, shader, b, nb, pc, gx, gy, 1);
}

/* Contiguous f32 [ne0, ne1] tensor at byte offset off of buffer b: scratch
 * operands of multi-dispatch ops, shaped like graph tensors so the per-op
 * helpers above can take them. */
static loom_tensor loom_vk_tmp(loom_buffer *b, size_t off, int64_t ne0, int64_t ne1) {
    loom_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = LOOM_F32;
    t.ne[0] = ne0;
    t.ne[1] = ne1;
    t.ne[2] = t.ne[3] = 1;
    t.nb[0] = sizeof(float);
    t.nb[1] = (size_t)ne0 * sizeof(float);
    t.nb[2] = t.nb[3] = t.nb[1] * (size_t)ne1;
    t.buffer = b;
    t.offset = off;
    return t;
}

static loom_status loom_vk_scratch(loom_backend *be, size_t bytes) {
    loom_vk_ctx *c = be->ctx;
    if (c->scratch && c->scratch->size >= bytes) return LOOM_OK;
    LOOM_TRY(loom_vk_flush(be)); /* the old scratch may be in use */
    if (c->scratch) loom_vk_buffer_free(c->scratch);
    c->scratch = NULL;
    return loom_vk_buffer_alloc(be, bytes + bytes / 4, &c->scratch);
}

/* ---------------- per-op ---------------- */

static loom_status loom_vk_eltwise(loom_backend *be, const loom_tensor *y, uint32_t op) {
    loom_vk_ctx *c = be->ctx;
    const loom_tensor *a = y->src[0], *b = y->src[1];
    const bool has_b = op != 2 && op != 3 && op != 6;
    uint32_t pc[LOOM_VK_PC_WORDS] = {0};
    int k = 0;
    for (int d = 0; d < 4; d++)
        pc[k++] = (uint32_t)y->ne[d];
    loom_vk_put_t(c, pc, &k, a);
    if (has_b) {
        pc[k++] = loom_vk_rel(c, b->offset);
        for (int d = 0; d < 4; d++)
            pc[k++] = b->ne[d] == 1 && a->ne[d] != 1 ? 0u : (uint32_t)b->nb[d];
    } else {
        k += 5;
    }
    pc[k++] = loom_vk_rel(c, y->offset);
    pc[k++] = op;
    const uint64_t n = (uint64_t)loom_tensor_nelements(y);
    pc[k++] = (uint32_t)n;
    pc[k++] = loom_vk_f2u(y->p.f[0]);
    loom_vk_bind bs[3] = {loom_vk_b(y, true), loom_vk_b(a, false)};
    if (has_b) bs[2] = loom_vk_b(b, false);
    return loom_vk_run(be, "eltwise", bs, has_b ? 3 : 2, pc, n, 256);
}

static loom_status loom_vk_rows(loom_backend *be, const loom_tensor *y, uint32_t op) {
    loom_vk_ctx *c = be->ctx;
    const loom_tensor *a = y->src[0], *b = y->src[1];
    const bool has_b = op >= 2;
    uint32_t pc[LOOM_VK_PC_WORDS] = {0};
    int k = 0;
    for (int d = 0; d < 4; d++)
        pc[k++] = (uint32_t)y->ne[d];
    loom_vk_put_t(c, pc, &k, a);
    if (has_b)
        loom_vk_put_t(c, pc, &k, b);
    else
        k += 5;
    pc[k++] = loom_vk_rel(c, y->offset);
    pc[k++] = op;
    pc[k++] = loom_vk_f2u(y->p.f[0]);
    pc[k++] = op == 1 ? (uint32_t)(y->p.i[1] != 0) : 0u;
    pc[k++] = op == 1 ? (uint32_t)y->p.i[2] : 0u;
    loom_vk_bind bs[3] = {loom_vk_b(y, true), loom_vk_b(a, false)};
    if (has_b) bs[2] = loom_vk_b(b, false);
    const uint64_t rows = (uint64_t)(y->ne[1] * y->ne[2] * y->ne[3]);
    return loom_vk_run(be, "rows", bs, has_b ? 3 : 2, pc, rows, 1);
}

static loom_status loom_vk_rope(loom_backend *be, const loom_tensor *y) {
    loom_vk_ctx *c = be->ctx;
    const loom_tensor *x = y->src[0], *pos = y->src[1];
    loom_rope_params rp;
    loom_rope_params_get(y, &rp);
    const int64_t half = rp.n_dims / 2;
    const size_t tab_bytes = (size_t)(half > 0 ? half : 1) * sizeof(double);
    size_t tab = loom_vk_aux_alloc(c, tab_bytes);
    if (tab == (size_t)-1) {
        LOOM_TRY(loom_vk_flush(be));
        tab = loom_vk_aux_alloc(c, tab_bytes);
        if (tab == (size_t)-1)
            return loom_backend_fail(be, LOOM_ERR_UNSUPPORTED, "vulkan: rope table too large");
    }
    loom_rope_freq_table(&rp, (double *)((char *)c->aux->host + tab), NULL);
    uint32_t pc[LOOM_VK_PC_WORDS] = {0};
    int k = 0;
    for (int d = 0; d < 4; d++)
        pc[k++] = (uint32_t)y->ne[d];
    loom_vk_put_t(c, pc, &k, x);
    pc[k++] = loom_vk_rel(c, pos->offset);
    pc[k++] = (uint32_t)pos->nb[0];
    pc[k++] = loom_vk_rel(c, y->offset);
    pc[k++] = (uint32_t)rp.n_dims;
    pc[k++] = (uint32_t)rp.mode;
    pc[k++] = (uint32_t)(rp.inverse != 0);
    pc[k++] = (uint32_t)tab;
    const uint32_t per_row = (uint32_t)(half + (y->ne[0] - rp.n_dims));
    pc[k++] = per_row;
    const uint64_t n = (uint64_t)per_row * (uint64_t)(y->ne[1] * y->ne[2] * y->ne[3]);
    pc[k++] = (uint32_t)n;
    loom_vk_bind bs[5] = {loom_vk_b(y, true), loom_vk_b(x, false), loom_vk_b(pos, false)};
    bs[4] = (loom_vk_bind){c->aux, 0, LOOM_VK_AUX_BYTES, false};
    return loom_vk_run(be, "rope", bs, 5, pc, n, 64);
}

/* get_rows: one dispatch per chunk of table rows that fits a binding (one
 * for most tables); each writes the outputs whose id falls in its chunk,
 * the first also the zeros and error report of ids out of range. */
static loom_status loom_vk_get_rows(loom_backend *be, const loom_tensor *y) {
    loom_vk_ctx *c = be->ctx;
    const loom_tensor *t = y->src[0], *ids = y->src[1];
    const int64_t V = t->ne[1], vc = loom_vk_gr_rows(c, t);
    if (vc < 1)
        return loom_backend_fail(be, LOOM_ERR_UNSUPPORTED, "vulkan: get_rows table too large");
    for (int64_t v0 = 0; v0 < V; v0 += vc) {
        loom_tensor ts = *t;
        ts.ne[1] = v0 + vc < V ? vc : V - v0;
        ts.offset = t->offset + (size_t)v0 * t->nb[1];
        uint32_t pc[LOOM_VK_PC_WORDS] = {0};
        int k = 0;
        pc[k++] = (uint32_t)t->ne[0];
        pc[k++] = (uint32_t)ids->ne[0];
        pc[k++] = (uint32_t)ids->ne[1];
        pc[k++] = (uint32_t)V;
        pc[k++] = loom_vk_rel(c, ts.offset);
        pc[k++] = (uint32_t)t->nb[0];
        pc[k++] = (uint32_t)t->nb[1];
        pc[k++] = t->ne[2] == 1 ? 0u : (uint32_t)t->nb[2];
        pc[k++] = loom_vk_rel(c, ids->offset);
        pc[k++] = (uint32_t)ids->nb[0];
        pc[k++] = (uint32_t)ids->nb[1];
        pc[k++] = loom_vk_rel(c, y->offset);
        pc[k++] = (uint32_t)t->dtype;
        const uint64_t n = (uint64_t)loom_tensor_nelements(y);
        pc[k++] = (uint32_t)n;
        pc[k++] = (uint32_t)v0;
        pc[k++] = (uint32_t)ts.ne[1];
        loom_vk_bind bs[5] = {loom_vk_b(y, true), loom_vk_b(&ts, false), loom_vk_b(ids, false)};
        bs[4] = (loom_vk_bind){c->aux, 0, 16 * 4, true};
        LOOM_TRY(loom_vk_run(be, "get_rows", bs, 5, pc, n, 256));
    }
    return LOOM_OK;
}

/* nf4/nf4_dq operand t (a view of storage s = view_src, or s itself): bind
 * A to code_span code bytes from t's offset and C to the scale sections
 * from the first absmax block t uses to the end of s, and fill common.glsl's
 * (s_off, am_off, s2_off, dqo_off) so that the loaders take GLOBAL element
 * and block indices of s (offsets wrap modulo 2^32 where a binding starts
 * after index 0). The caller passes t's code-byte offset inside s as the
 * tensor offset. */
static void loom_vk_nf4_binds(const loom_vk_ctx *c, const loom_tensor *t, uint64_t code_span,
                              loom_vk_bind *a, loom_vk_bind *cb, uint32_t out[4]) {
    const loom_tensor *s = t->view_src ? t->view_src : t;
    const int64_t n = loom_tensor_nelements(s);
    const uint64_t codes = (uint64_t)n / 2, nblk = (uint64_t)n / 64;
    const uint64_t g0 = t->offset - s->offset; /* first code byte of t */
    *a = (loom_vk_bind){s->buffer, t->offset, code_span ? code_span : 4, false};
    out[0] = loom_vk_rel(c, t->offset) - (uint32_t)g0;
    const uint64_t bsz = s->dtype == LOOM_NF4 ? 4u : 1u;
    const uint64_t blk0 = 2 * g0 / 64;
    const uint64_t am_lo = codes + bsz * blk0;
    const uint64_t total = loom_dtype_nbytes(s->dtype, n);
    const size_t off = s->offset + am_lo;
    *cb = (loom_vk_bind){s->buffer, off, total > am_lo ? total - am_lo : 4, false};
    const uint32_t r = loom_vk_rel(c, off);
    out[1] = r - (uint32_t)(bsz * blk0);
    const uint64_t s2 = codes + ((nblk + 3) & ~(uint64_t)3);
    out[2] = r + (uint32_t)(s2 - am_lo);
    out[3] = out[2] + 4u * (uint32_t)((nblk + 255) / 256);
}

/* cpy into nf4/nf4_dq (quantize_nf4.comp): mode 0 writes the codes (and
 * nf4's absmax); for nf4_dq, mode 1 writes each block's absmax to scratch,
 * the host forms the offset (their mean, summed in double in block order
 * like ir/dtype.c: an order-dependent sum, so not a device reduction; one
 * f32 per 64 values crosses to the host) and mode 2 double-quantizes the
 * absmax values per group of 256 blocks. */
static loom_status loom_vk_cpy_nf4(loom_backend *be, const loom_tensor *y) {
    loom_vk_ctx *c = be->ctx;
    const loom_tensor *a = y->src[0];
    const int64_t n = loom_tensor_nelements(y), nb = n / 64;
    if (nb == 0) return LOOM_OK;
    uint32_t pc[LOOM_VK_PC_WORDS] = {0};
    int k = 0;
    for (int d = 0; d < 4; d++)
        pc[k++] = (uint32_t)y->ne[d];
    loom_vk_put_t(c, pc, &k, a);
    const uint32_t y_off = loom_vk_rel(c, y->offset);
    pc[k++] = y_off;
    pc[k++] = (uint32_t)a->dtype;
    pc[k++] = (uint32_t)y->dtype;
    pc[k++] = (uint32_t)nb;
    const int k_mode = k++;
    const uint32_t abs_off = y_off + (uint32_t)(n / 2);
    pc[k++] = abs_off;
    pc[k++] = abs_off + (uint32_t)((nb + 3) & ~(int64_t)3); /* nf4_dq scale2 section */
    const int k_offset = k++;
    loom_vk_bind bs[5] = {loom_vk_b(y, true), loom_vk_b(a, false)};
    bs[4] = (loom_vk_bind){c->aux, 0, LOOM_VK_AUX_BYTES, false}; /* the codebooks */
    pc[k_mode] = 0;
    LOOM_TRY(loom_vk_run(be, "quantize_nf4", bs, 5, pc, (uint64_t)nb, 256));
    if (y->dtype == LOOM_NF4) return LOOM_OK;

    LOOM_TRY(loom_vk_scratch(be, (size_t)nb * 4));
    loom_tensor am = loom_vk_tmp(c->scratch, 0, nb, 1);
    pc[9] = 0; /* y_off: the scratch */
    pc[k_mode] = 1;
    bs[0] = loom_vk_b(&am, true);
    LOOM_TRY(loom_vk_run(be, "quantize_nf4", bs, 5, pc, (uint64_t)nb, 256));
    LOOM_TRY(loom_vk_flush(be));
    float *h = malloc((size_t)nb * sizeof *h);
    if (!h) return loom_backend_fail(be, LOOM_ERR_OOM, "vulkan: out of host memory");
    loom_status st = loom_vk_buffer_download(c->scratch, 0, h, (size_t)nb * sizeof *h);
    double sum = 0.0;
    for (int64_t b = 0; b < nb; b++)
        sum += h[b];
    free(h);
    LOOM_TRY(st);
    const float offset = (float)(sum / (double)nb);
    pc[4] = 0; /* a_off: the absmax values in scratch */
    pc[9] = y_off;
    pc[k_mode] = 2;
    pc[k_offset] = loom_vk_f2u(offset);
    bs[0] = loom_vk_b(y, true);
    bs[1] = loom_vk_b(&am, false);
    const uint64_t groups = (uint64_t)(nb + 255) / 256;
    return loom_vk_run(be, "quantize_nf4", bs, 5, pc, groups * 256, 256);
}

/* set_rows (in place, ADR 0011): one dispatch when the destination fits a
 * binding, else one per batch b and chunk of rc rows (loom_vk_sr_rows):
 * each binds only its chunk and writes the rows that fall in it; the first
 * chunk of each batch reports rows outside [0, R) (aux error words, turned
 * into an error naming the node and row by loom_vk_compute). */
static loom_status loom_vk_set_rows(loom_backend *be, const loom_tensor *y) {
    loom_vk_ctx *c = be->ctx;
    const loom_tensor *src = y->src[1], *rows = y->src[2];
    const int64_t W = y->ne[0], R = y->ne[1], B = y->ne[2], T = src->ne[1];
    const int64_t rc = loom_vk_sr_rows(c, y);
    if (rc < 1)
        return loom_backend_fail(be, LOOM_ERR_UNSUPPORTED, "vulkan: set_rows rows too large");
    const bool whole = rc == R && loom_tensor_nbytes(y) <= loom_vk_lim(c);
    const bool q = y->dtype == LOOM_Q8_0;
    const uint32_t elem_al = y->dtype == LOOM_F32 ? 4 : q ? 1 : 2;
    const uint32_t r_nb1 = rows->ne[1] == 1 ? 0u : (uint32_t)rows->nb[1];
    for (int64_t b0 = 0; b0 < (whole ? 1 : B); b0++) {
        for (int64_t r0 = 0; r0 < R; r0 += rc) {
            const int64_t bn = whole ? B : 1;
            loom_tensor ys = *y;
            ys.ne[1] = r0 + rc < R ? rc : R - r0;
            ys.ne[2] = bn;
            ys.offset = y->offset + (size_t)b0 * y->nb[2] + (size_t)r0 * y->nb[1];
            const uint32_t y_off = loom_vk_rel(c, ys.offset);
            if (y_off % elem_al != 0)
                return loom_backend_fail(be, LOOM_ERR_UNSUPPORTED,
                                         "vulkan: set_rows destination not %u-byte aligned",
                                         elem_al);
            const uint32_t s_off = loom_vk_rel(c, src->offset) + (uint32_t)(b0 * src->nb[2]);
            const uint32_t r_off = loom_vk_rel(c, rows->offset) + (uint32_t)b0 * r_nb1;
            uint32_t pc[LOOM_VK_PC_WORDS] = {0};
            int k = 0;
            loom_vk_bind bs[5] = {loom_vk_b(&ys, true), loom_vk_b(src, false),
                                  loom_vk_b(rows, false)};
            bs[4] = (loom_vk_bind){c->aux, 0, 16 * 4, true}; /* the error words */
            if (q) { /* quantize.comp, scatter mode: one block per invocation */
                pc[k++] = (uint32_t)W;
                pc[k++] = (uint32_t)T;
                pc[k++] = (uint32_t)bn;
                pc[k++] = 1;
                pc[k++] = s_off;
                for (int d = 0; d < 4; d++)
                    pc[k++] = (uint32_t)src->nb[d];
                pc[k++] = y_off;
                pc[k++] = (uint32_t)LOOM_F32;
                pc[k++] = (uint32_t)y->dtype;
                const uint64_t blocks = (uint64_t)(W / 32) * (uint64_t)(T * bn);
                pc[k++] = (uint32_t)blocks;
                pc[k++] = 1; /* scatter */
                pc[k++] = (uint32_t)y->nb[1];
                pc[k++] = (uint32_t)y->nb[2];
                pc[k++] = r_off;
                pc[k++] = (uint32_t)rows->nb[0];
                pc[k++] = r_nb1;
                pc[k++] = (uint32_t)R;
                pc[k++] = (uint32_t)r0;
                pc[k++] = (uint32_t)ys.ne[1];
                pc[k++] = r0 == 0;
                pc[k++] = (uint32_t)b0;
                pc[k++] = c->cur_node;
                LOOM_TRY(loom_vk_run(be, "quantize", bs, 5, pc, blocks, 64));
                continue;
            }
            /* 16-bit rows contiguous from 4-byte boundaries: a word per
             * invocation, no atomics (the usual f16 KV cache). */
            const bool packed = y->dtype != LOOM_F32 && y->nb[0] == 2 && W % 2 == 0 &&
                                y_off % 4 == 0 && y->nb[1] % 4 == 0 &&
                                (bn == 1 || y->nb[2] % 4 == 0);
            pc[k++] = (uint32_t)W;
            pc[k++] = (uint32_t)T;
            pc[k++] = (uint32_t)bn;
            pc[k++] = (uint32_t)R;
            pc[k++] = s_off;
            pc[k++] = (uint32_t)src->nb[0];
            pc[k++] = (uint32_t)src->nb[1];
            pc[k++] = (uint32_t)src->nb[2];
            pc[k++] = r_off;
            pc[k++] = (uint32_t)rows->nb[0];
            pc[k++] = r_nb1;
            pc[k++] = y_off;
            pc[k++] = (uint32_t)y->nb[0];
            pc[k++] = (uint32_t)y->nb[1];
            pc[k++] = (uint32_t)y->nb[2];
            pc[k++] = (uint32_t)y->dtype;
            pc[k++] = packed;
            const uint64_t n = (uint64_t)(packed ? W / 2 : W) * (uint64_t)(T * bn);
            pc[k++] = (uint32_t)n;
            pc[k++] = (uint32_t)r0;
            pc[k++] = (uint32_t)ys.ne[1];
            pc[k++] = r0 == 0;
            pc[k++] = (uint32_t)b0;
            pc[k++] = c->cur_node;
            LOOM_TRY(loom_vk_run(be, "set_rows", bs, 5, pc, n, 256));
        }
    }
    return LOOM_OK;
}

static loom_status loom_vk_cpy(loom_backend *be, const loom_tensor *y) {
    loom_vk_ctx *c = be->ctx;
    const loom_tensor *a = y->src[0];
    if (loom_vk_rel(c, y->offset) % 4 != 0)
        return loom_backend_fail(be, LOOM_ERR_UNSUPPORTED,
                                 "op cpy node '%s': output not 4-byte aligned", y->name);
    if (loom_dtype_is_nf4(y->dtype)) return loom_vk_cpy_nf4(be, y);
    uint32_t pc[LOOM_VK_PC_WORDS] = {0};
    int k = 0;
    for (int d = 0; d < 4; d++)
        pc[k++] = (uint32_t)y->ne[d];
    loom_vk_put_t(c, pc, &k, a);
    pc[k++] = loom_vk_rel(c, y->offset);
    pc[k++] = (uint32_t)a->dtype;
    pc[k++] = (uint32_t)y->dtype;
    if (loom_vk_quantizes(y->dtype)) { /* one 32-value block per invocation */
        const uint64_t blocks = (uint64_t)loom_tensor_nelements(y) / 32;
        pc[k++] = (uint32_t)blocks;
        loom_vk_bind bs[2] = {loom_vk_b(y, true), loom_vk_b(a, false)};
        return loom_vk_run(be, "quantize", bs, 2, pc, blocks, 64);
    }
    const uint64_t n = (uint64_t)loom_tensor_nelements(y);
    pc[k++] = (uint32_t)n;
    const uint64_t words = (y->dtype == LOOM_F16 || y->dtype == LOOM_BF16) ? (n + 1) / 2 : n;
    pc[k++] = (uint32_t)words;
    loom_vk_bind bs[4] = {loom_vk_b(y, true), loom_vk_b(a, false)};
    if (loom_dtype_is_nf4(a->dtype)) {
        const loom_tensor *st = a->view_src ? a->view_src : a;
        const uint64_t g0 = a->offset - st->offset;
        loom_vk_nf4_binds(c, a, (uint64_t)loom_tensor_nelements(st) / 2 - g0, &bs[1], &bs[3],
                          pc + k);
        pc[4] = (uint32_t)g0;
    }
    return loom_vk_run(be, "cpy", bs, 4, pc, words, 256);
}

#define LOOM_VK_VEC_M   4  /* matmul_vec up to this many activation columns */
#define LOOM_VK_VEC_MC  4  /* activation columns per matmul_vec workgroup (its MC) */
#define LOOM_VK_TILED_M 16 /* matmul_tiled from this many */

/* matmul_vec.comp reads weight rows in 16-byte units with word loads: rows
 * contiguous, starting on 4-byte (plain, nf4 codes) or 2-byte (q8_0/q4_0
 * blocks) boundaries, nf4 rows of whole 32-code units. */
static bool loom_vk_vec_ok(const loom_tensor *w) {
    size_t al = 4;
    switch (w->dtype) {
    case LOOM_F32:
    case LOOM_F16:
    case LOOM_BF16:
        if (w->nb[0] != loom_dtype_block_bytes(w->dtype)) return false;
        break;
    case LOOM_Q8_0:
    case LOOM_Q4_0:
    case LOOM_Q4_1:
    case LOOM_Q5_0:
    case LOOM_Q5_1:
        al = 2;
        break;
    case LOOM_NF4:
    case LOOM_NF4_DQ:
        if (w->ne[0] % 32 != 0) return false;
        break;
    default:
        return false;
    }
    return w->offset % al == 0 && w->nb[1] % al == 0 && w->nb[2] % al == 0 && w->nb[3] % al == 0;
}

/* One matmul dispatch: y (a view with byte strides nb[1..3], f32 elements
 * contiguous in dim 0) = w x over the views given; r2/r3 the broadcast
 * ratios of w's batch dims. */
static loom_status loom_vk_matmul_one(loom_backend *be, const loom_tensor *y, const loom_tensor *w,
                                      const loom_tensor *x, uint32_t r2, uint32_t r3) {
    loom_vk_ctx *c = be->ctx;
    uint32_t pc[LOOM_VK_PC_WORDS] = {0};
    int k = 0;
    pc[k++] = (uint32_t)w->ne[0];
    pc[k++] = (uint32_t)w->ne[1];
    pc[k++] = (uint32_t)x->ne[1];
    pc[k++] = (uint32_t)x->ne[2];
    pc[k++] = (uint32_t)x->ne[3];
    pc[k++] = r2;
    pc[k++] = r3;
    loom_vk_put_t(c, pc, &k, w);
    loom_vk_put_t(c, pc, &k, x);
    pc[k++] = loom_vk_rel(c, y->offset);
    pc[k++] = (uint32_t)w->dtype;
    pc[k++] = (uint32_t)x->dtype;
    loom_vk_bind bs[4] = {loom_vk_b(y, true), loom_vk_b(w, false), loom_vk_b(x, false)};
    int nbind = 3;
    uint32_t nf4[4] = {0};
    if (loom_dtype_is_nf4(w->dtype)) {
        uint64_t span = (uint64_t)w->ne[0] / 2;
        for (int d = 1; d < LOOM_MAX_DIMS; d++)
            span += (uint64_t)(w->ne[d] - 1) * w->nb[d];
        loom_vk_nf4_binds(c, w, span, &bs[1], &bs[3], nf4);
        pc[7] = (uint32_t)(w->offset - (w->view_src ? w->view_src : w)->offset);
        nbind = 4;
    }
    const uint32_t ynb[3] = {(uint32_t)y->nb[1], (uint32_t)y->nb[2], (uint32_t)y->nb[3]};
    const int64_t K = w->ne[0], N = w->ne[1], M = x->ne[1], XB = x->ne[2] * x->ne[3];
    /* Decode (M <= LOOM_VK_VEC_M) on GPUs: matmul_vec.comp, coalesced 16-byte
     * weight units, a subgroup (or the workgroup) per row. On CPU devices
     * (lavapipe) matmul_simple measured ~6x faster for decode (docs/PERF.md),
     * so it stays there; LOOM_VULKAN_MATMUL=vec forces matmul_vec (ctest). */
    if ((c->mm_kernel == 1 || (M <= LOOM_VK_VEC_M && !c->mm_kernel && !c->cpu_device)) &&
        loom_vk_vec_ok(w) && !c->force_coop) {
        /* Rows per workgroup: one per subgroup (matmul_vec_sg), else 4 (R);
         * either shader handles any count. */
        uint64_t rpw = c->use_subgroup && c->subgroup_size ? 128 / c->subgroup_size : 4;
        if (rpw < 1) rpw = 1;
        const uint64_t m_tiles = (uint64_t)(M + LOOM_VK_VEC_MC - 1) / LOOM_VK_VEC_MC;
        const uint64_t groups = (uint64_t)(N + (int64_t)rpw - 1) / rpw * m_tiles * (uint64_t)XB;
        if (groups < 0xffffffffull) {
            pc[k++] = (uint32_t)groups;
            pc[k++] = (uint32_t)m_tiles;
            memcpy(pc + k, nf4, sizeof nf4);
            memcpy(pc + k + 4, ynb, sizeof ynb);
            pc[k + 7] = x->dtype == LOOM_F32 && x->nb[0] == 4;
            pc[k + 8] = (uint32_t)rpw;
            return loom_vk_run(be, "matmul_vec", bs, nbind, pc, groups, 1);
        }
    }
    /* Prefill (M >= LOOM_VK_TILED_M): matmul_tiled.comp, 64 x 64 output tiles
     * through shared memory. lavapipe: K <= 16384 (loop limit). */
    if ((c->mm_kernel == 2 || (M >= LOOM_VK_TILED_M && !c->mm_kernel)) &&
        (K <= 16384 || !c->cpu_device) && !c->force_coop &&
        (!loom_dtype_is_nf4(w->dtype) || (K % 8 == 0 && w->offset % 4 == 0))) {
        const uint64_t m_tiles = (uint64_t)(M + 63) / 64;
        const uint64_t groups = (uint64_t)(N + 63) / 64 * m_tiles * (uint64_t)XB;
        if (groups < 0xffffffffull) {
            pc[k++] = (uint32_t)groups;
            pc[k++] = (uint32_t)m_tiles;
            memcpy(pc + k, nf4, sizeof nf4);
            memcpy(pc + k + 4, ynb, sizeof ynb);
            return loom_vk_run(be, "matmul_tiled", bs, nbind, pc, groups, 1);
        }
    }
    /* Short K: one output per invocation (matmul_simple.comp). */
    if (w->ne[0] <= 16384 && !c->force_coop) {
        const uint64_t n = (uint64_t)(y->ne[0] * y->ne[1] * y->ne[2] * y->ne[3]);
        pc[k++] = (uint32_t)n;
        memcpy(pc + k, nf4, sizeof nf4);
        memcpy(pc + k + 4, ynb, sizeof ynb);
        return loom_vk_run(be, "matmul_simple", bs, nbind, pc, n, 64);
    }
    /* One workgroup per (n, tile of 8 columns m, i2, i3); see matmul.comp. */
    const uint64_t m_tiles = (uint64_t)(x->ne[1] + 7) / 8;
    const uint64_t groups = (uint64_t)w->ne[1] * m_tiles * (uint64_t)(x->ne[2] * x->ne[3]);
    if (groups >= 0xffffffffull)
        return loom_backend_fail(be, LOOM_ERR_UNSUPPORTED, "vulkan: matmul grid too large");
    pc[k++] = (uint32_t)groups;
    pc[k++] = (uint32_t)m_tiles;
    memcpy(pc + k, nf4, sizeof nf4);
    memcpy(pc + k + 4, ynb, sizeof ynb);
    return loom_vk_run(be, "matmul", bs, nbind, pc, groups, 1);
}

/* matmul, split into dispatches whose bindings fit (loom_vk_mm_plan): per
 * batch (i2, i3), per nc weight rows and per mc activation columns, each
 * writing its [nc, mc] block of y through y's strides. */
static loom_status loom_vk_matmul(loom_backend *be, const loom_tensor *y) {
    loom_vk_ctx *c = be->ctx;
    const loom_tensor *w = y->src[0], *x = y->src[1];
    loom_vk_mm_plan pl;
    if (!loom_vk_mm_plan_make(c, y, w, x, &pl))
        return loom_backend_fail(be, LOOM_ERR_UNSUPPORTED,
                                 "vulkan: matmul operands too large to split");
    const uint32_t r2 = (uint32_t)(x->ne[2] / w->ne[2]), r3 = (uint32_t)(x->ne[3] / w->ne[3]);
    if (pl.whole) return loom_vk_matmul_one(be, y, w, x, r2, r3);
    const int64_t N = w->ne[1], M = x->ne[1];
    for (int64_t i3 = 0; i3 < x->ne[3]; i3++)
        for (int64_t i2 = 0; i2 < x->ne[2]; i2++)
            for (int64_t n0 = 0; n0 < N; n0 += pl.nc)
                for (int64_t m0 = 0; m0 < M; m0 += pl.mc) {
                    const int64_t nc = n0 + pl.nc < N ? pl.nc : N - n0;
                    const int64_t mc = m0 + pl.mc < M ? pl.mc : M - m0;
                    loom_tensor ws = *w, xs = *x, ys = *y;
                    ws.ne[1] = nc;
                    ws.ne[2] = ws.ne[3] = 1;
                    ws.offset = w->offset + (size_t)n0 * w->nb[1] + (size_t)(i2 / r2) * w->nb[2] +
                                (size_t)(i3 / r3) * w->nb[3];
                    if (!ws.view_src) ws.view_src = (loom_tensor *)w; /* nf4: the storage */
                    xs.ne[1] = mc;
                    xs.ne[2] = xs.ne[3] = 1;
                    xs.offset = x->offset + (size_t)m0 * x->nb[1] + (size_t)i2 * x->nb[2] +
                                (size_t)i3 * x->nb[3];
                    ys.ne[0] = nc;
                    ys.ne[1] = mc;
                    ys.ne[2] = ys.ne[3] = 1;
                    ys.offset = y->offset + (size_t)n0 * y->nb[0] + (size_t)m0 * y->nb[1] +
                                (size_t)i2 * y->nb[2] + (size_t)i3 * y->nb[3];
                    LOOM_TRY(loom_vk_matmul_one(be, &ys, &ws, &xs, 1, 1));
                }
    return LOOM_OK;
}

static loom_status loom_vk_flash_attn(loom_backend *be, const loom_tensor *y) {
    loom_vk_ctx *c = be->ctx;
    const loom_tensor *q = y->src[0], *kk = y->src[1], *v = y->src[2];
    uint32_t pc[LOOM_VK_PC_WORDS] = {0};
    int k = 0;
    pc[k++] = (uint32_t)q->ne[0];
    pc[k++] = (uint32_t)q->ne[1];
    pc[k++] = (uint32_t)q->ne[2];
    pc[k++] = (uint32_t)q->ne[3];
    /* Paged (docs/adr/0035): the keys are q_offset + Tq rows through the
     * block table (binding 5); q_offset is read here, at compute time. */
    const loom_tensor *tbl = y->p.i[3] > 0 ? y->src[3] : NULL;
    pc[k++] = tbl ? (uint32_t)(y->p.i[2] + q->ne[1]) : (uint32_t)kk->ne[1];
    pc[k++] = (uint32_t)(q->ne[2] / kk->ne[2]);
    loom_vk_put_t(c, pc, &k, q);
    loom_vk_put_t(c, pc, &k, kk);
    loom_vk_put_t(c, pc, &k, v);
    pc[k++] = loom_vk_rel(c, y->offset);
    pc[k++] = (uint32_t)(y->p.i[1] != 0);
    pc[k++] = (uint32_t)y->p.i[2];
    pc[k++] = loom_vk_f2u(y->p.f[0]);
    pc[k++] = (uint32_t)kk->dtype;
    pc[k++] = (uint32_t)v->dtype;
    const uint64_t n = (uint64_t)(q->ne[1] * q->ne[2] * q->ne[3]);
    pc[k++] = (uint32_t)n;
    pc[k++] = tbl ? (uint32_t)y->p.i[3] : 0u;
    pc[k++] = tbl ? loom_vk_rel(c, tbl->offset) : 0u;
    pc[k++] = (uint32_t)kk->ne[1];
    loom_vk_bind bs[6] = {loom_vk_b(y, true), loom_vk_b(q, false), loom_vk_b(kk, false),
                          loom_vk_b(v, false)};
    if (tbl) bs[5] = loom_vk_b(tbl, false); /* bs[4]: the aux buffer */
    return loom_vk_run(be, "flash_attn", bs, 6, pc, n, 1); /* a workgroup per row */
}

/* Offset + strides of dims 1..3 (4 words); dim 0 is contiguous. */
static void loom_vk_put_rows(const loom_vk_ctx *c, uint32_t *pc, int *k, const loom_tensor *t) {
    pc[(*k)++] = loom_vk_rel(c, t->offset);
    for (int d = 1; d < 4; d++)
        pc[(*k)++] = (uint32_t)t->nb[d];
}

static loom_status loom_vk_flash_attn_back(loom_backend *be, const loom_tensor *y) {
    loom_vk_ctx *c = be->ctx;
    const loom_tensor *q = y->src[0], *kk = y->src[1], *v = y->src[2], *e = y->src[3],
                      *f = y->src[4];
    uint32_t pc[LOOM_VK_PC_WORDS] = {0};
    int k = 0;
    pc[k++] = (uint32_t)q->ne[0];
    pc[k++] = (uint32_t)q->ne[1];
    pc[k++] = (uint32_t)q->ne[2];
    pc[k++] = (uint32_t)q->ne[3];
    pc[k++] = (uint32_t)kk->ne[1];
    pc[k++] = (uint32_t)(q->ne[2] / kk->ne[2]);
    pc[k++] = (uint32_t)y->p.i[3];
    pc[k++] = (uint32_t)(y->p.i[1] != 0);
    pc[k++] = (uint32_t)y->p.i[2];
    pc[k++] = loom_vk_f2u(y->p.f[0]);
    pc[k++] = (uint32_t)kk->dtype;
    pc[k++] = loom_vk_rel(c, y->offset);
    loom_vk_put_rows(c, pc, &k, q);
    loom_vk_put_rows(c, pc, &k, kk);
    loom_vk_put_rows(c, pc, &k, v);
    loom_vk_put_rows(c, pc, &k, e);
    loom_vk_put_rows(c, pc, &k, f);
    const uint64_t n = y->p.i[3] == LOOM_FA_BACK_DKV
                           ? (uint64_t)(kk->ne[1] * kk->ne[2] * kk->ne[3])
                           : (uint64_t)(q->ne[1] * q->ne[2] * q->ne[3]);
    /* binding 4 is the aux buffer (NULL slot); src3/src4 go to 5 and 6 */
    loom_vk_bind bs[7] = {loom_vk_b(y, true),  loom_vk_b(q, false), loom_vk_b(kk, false),
                          loom_vk_b(v, false), {0},                 loom_vk_b(e, false),
                          loom_vk_b(f, false)};
    return loom_vk_run(be, "flash_attn_back", bs, 7, pc, n, 1); /* a workgroup per unit */
}

static loom_status loom_vk_concat(loom_backend *be, const loom_tensor *y) {
    loom_vk_ctx *c = be->ctx;
    const loom_tensor *a = y->src[0], *b = y->src[1];
    uint32_t pc[LOOM_VK_PC_WORDS] = {0};
    int k = 0;
    for (int d = 0; d < 4; d++)
        pc[k++] = (uint32_t)y->ne[d];
    loom_vk_put_t(c, pc, &k, a);
    loom_vk_put_t(c, pc, &k, b);
    pc[k++] = loom_vk_rel(c, y->offset);
    const int dim = y->p.i[0];
    pc[k++] = (uint32_t)dim;
    pc[k++] = (uint32_t)a->ne[dim];
    pc[k++] = (uint32_t)a->dtype;
    pc[k++] = (uint32_t)b->dtype;
    pc[k++] = (uint32_t)y->dtype;
    const uint64_t n = (uint64_t)loom_tensor_nelements(y);
    pc[k++] = (uint32_t)n;
    const uint64_t words = (y->dtype == LOOM_F16 || y->dtype == LOOM_BF16) ? (n + 1) / 2 : n;
    pc[k++] = (uint32_t)words;
    loom_vk_bind bs[3] = {loom_vk_b(y, true), loom_vk_b(a, false), loom_vk_b(b, false)};
    return loom_vk_run(be, "concat", bs, 3, pc, words, 256);
}

static loom_status loom_vk_sum_to(loom_backend *be, const loom_tensor *y) {
    loom_vk_ctx *c = be->ctx;
    const loom_tensor *a = y->src[0];
    uint32_t pc[LOOM_VK_PC_WORDS] = {0};
    int k = 0;
    for (int d = 0; d < 4; d++)
        pc[k++] = (uint32_t)y->ne[d];
    loom_vk_put_t(c, pc, &k, a);
    for (int d = 0; d < 4; d++)
        pc[k++] = y->ne[d] == a->ne[d] ? 1u : (uint32_t)a->ne[d];
    pc[k++] = loom_vk_rel(c, y->offset);
    const uint64_t n = (uint64_t)loom_tensor_nelements(y);
    pc[k++] = (uint32_t)n;
    loom_vk_bind bs[2] = {loom_vk_b(y, true), loom_vk_b(a, false)};
    return loom_vk_run(be, "sum_to", bs, 2, pc, n, 64);
}

/* Cross entropy on rows.comp: op 4 per-row (loss, counted) pairs into
 * scratch, op 5 their mean; op 6 the backward, one workgroup per row. */
static loom_status loom_vk_cross_entropy(loom_backend *be, const loom_tensor *y, bool back) {
    loom_vk_ctx *c = be->ctx;
    const loom_tensor *lg = y->src[0], *tg = y->src[1];
    const int64_t rows = lg->ne[1] * lg->ne[2] * lg->ne[3];
    uint32_t pc[LOOM_VK_PC_WORDS] = {0};
    int k = 0;
    for (int d = 0; d < 4; d++)
        pc[k++] = (uint32_t)lg->ne[d];
    loom_vk_put_t(c, pc, &k, lg);
    pc[k++] = loom_vk_rel(c, tg->offset);
    for (int d = 0; d < 4; d++)
        pc[k++] = (uint32_t)tg->nb[d];
    loom_tensor pairs;
    const loom_tensor *out = y;
    if (!back) {
        LOOM_TRY(loom_vk_scratch(be, (size_t)rows * 8 + 256));
        pairs = loom_vk_tmp(c->scratch, 0, 2, rows);
        out = &pairs;
    }
    pc[k++] = loom_vk_rel(c, out->offset);
    pc[k++] = back ? 6u : 4u;
    k += 3; /* f, causal, q_offset unused */
    loom_vk_bind bs[4] = {loom_vk_b(out, true), loom_vk_b(lg, false), loom_vk_b(tg, false)};
    if (back) {
        pc[k++] = loom_vk_rel(c, y->src[2]->offset);
        bs[3] = loom_vk_b(y->src[2], false);
    }
    LOOM_TRY(loom_vk_run(be, "rows", bs, back ? 4 : 3, pc, (uint64_t)rows, 1));
    if (back) return LOOM_OK;
    uint32_t pc2[LOOM_VK_PC_WORDS] = {(uint32_t)rows, 1, 1, 1};
    pc2[4] = loom_vk_rel(c, pairs.offset);
    pc2[14] = loom_vk_rel(c, y->offset);
    pc2[15] = 5u;
    loom_vk_bind bs2[2] = {loom_vk_b(y, true), loom_vk_b(&pairs, false)};
    return loom_vk_run(be, "rows", bs2, 2, pc2, 1, 1);
}

static loom_status loom_vk_get_rows_back(loom_backend *be, const loom_tensor *y) {
    loom_vk_ctx *c = be->ctx;
    const loom_tensor *dy = y->src[0], *ids = y->src[1];
    uint32_t pc[LOOM_VK_PC_WORDS] = {0};
    int k = 0;
    pc[k++] = (uint32_t)y->ne[0];
    pc[k++] = (uint32_t)ids->ne[0];
    pc[k++] = (uint32_t)ids->ne[1];
    pc[k++] = (uint32_t)y->ne[1];
    pc[k++] = loom_vk_rel(c, dy->offset);
    pc[k++] = (uint32_t)dy->nb[0];
    pc[k++] = (uint32_t)dy->nb[1];
    pc[k++] = (uint32_t)dy->nb[2];
    pc[k++] = loom_vk_rel(c, ids->offset);
    pc[k++] = (uint32_t)ids->nb[0];
    pc[k++] = (uint32_t)ids->nb[1];
    pc[k++] = loom_vk_rel(c, y->offset);
    const uint64_t n = (uint64_t)loom_tensor_nelements(y);
    pc[k++] = (uint32_t)n;
    loom_vk_bind bs[5] = {loom_vk_b(y, true), loom_vk_b(dy, false), loom_vk_b(ids, false)};
    bs[4] = (loom_vk_bind){c->aux, 0, 16 * 4, true};
    return loom_vk_run(be, "get_rows_back", bs, 5, pc, n, 64);
}

/* op 0 moe_gate (a = logits), 1 moe_gate_back (a = gates, b = dgates). */
static loom_status loom_vk_moe_gate(loom_backend *be, const loom_tensor *y, uint32_t op) {
    loom_vk_ctx *c = be->ctx;
    const loom_tensor *a = y->src[0], *b = op ? y->src[1] : NULL;
    uint32_t pc[LOOM_VK_PC_WORDS] = {0};
    int k = 0;
    pc[k++] = (uint32_t)y->ne[0];
    pc[k++] = (uint32_t)y->ne[1];
    pc[k++] = op ? 0u : (uint32_t)y->p.i[0];
    pc[k++] = op;
    pc[k++] = loom_vk_rel(c, a->offset);
    pc[k++] = (uint32_t)a->nb[0];
    pc[k++] = (uint32_t)a->nb[1];
    if (b) {
        pc[k++] = loom_vk_rel(c, b->offset);
        pc[k++] = (uint32_t)b->nb[0];
        pc[k++] = (uint32_t)b->nb[1];
    } else {
        k += 3;
    }
    pc[k++] = loom_vk_rel(c, y->offset);
    loom_vk_bind bs[3] = {loom_vk_b(y, true), loom_vk_b(a, false)};
    if (b) bs[2] = loom_vk_b(b, false);
    return loom_vk_run(be, "moe_gate", bs, b ? 3 : 2, pc, (uint64_t)y->ne[1], 64);
}

/* matmul of weight slice w (expert e of dim 2) with x into y. */
static loom_status loom_vk_matmul_into(loom_backend *be, loom_tensor *y, const loom_tensor *w,
                                       int64_t e, const loom_tensor *x) {
    loom_tensor ws = *w;
    if (!ws.view_src) ws.view_src = (loom_tensor *)w; /* nf4: locate the storage */
    ws.ne[2] = 1;
    ws.offset = w->offset + (size_t)e * w->nb[2];
    y->src[0] = &ws;
    y->src[1] = (loom_tensor *)x;
    loom_status st = loom_vk_matmul(be, y);
    y->src[0] = y->src[1] = NULL;
    return st;
}

/* Fused MoE as a dispatch sequence: gates, then per expert gate/up matmuls,
 * swiglu, down matmul, and gate-weighted accumulation into the output. Every
 * token goes through every expert (unrouted ones with gate 0, which adds an
 * exact 0), so this is correct but does E/top_k times the routed work. */
static loom_status loom_vk_moe(loom_backend *be, const loom_tensor *y) {
    loom_vk_ctx *c = be->ctx;
    const loom_tensor *x = y->src[0], *lg = y->src[1];
    const loom_tensor *wg = y->src[2], *wu = y->src[3], *wd = y->src[4];
    const int64_t Dm = x->ne[0], T = x->ne[1], E = lg->ne[0], F = wg->ne[1];
    const size_t al = 256;
    const size_t sz_g = ((size_t)(E * T) * 4 + al - 1) / al * al;
    const size_t sz_h = ((size_t)(F * T) * 4 + al - 1) / al * al;
    const size_t sz_d = ((size_t)(Dm * T) * 4 + al - 1) / al * al;
    LOOM_TRY(loom_vk_scratch(be, sz_g + 2 * sz_h + sz_d));
    loom_tensor G = loom_vk_tmp(c->scratch, 0, E, T);
    loom_tensor H1 = loom_vk_tmp(c->scratch, sz_g, F, T);
    loom_tensor H2 = loom_vk_tmp(c->scratch, sz_g + sz_h, F, T);
    loom_tensor Dn = loom_vk_tmp(c->scratch, sz_g + 2 * sz_h, Dm, T);

    G.src[0] = (loom_tensor *)lg;
    G.p.i[0] = y->p.i[0];
    LOOM_TRY(loom_vk_moe_gate(be, &G, 0));
    G.src[0] = NULL;
    for (int64_t e = 0; e < E; e++) {
        LOOM_TRY(loom_vk_matmul_into(be, &H1, wg, e, x));
        LOOM_TRY(loom_vk_matmul_into(be, &H2, wu, e, x));
        H1.src[0] = &H1;
        H1.src[1] = &H2;
        loom_status st = loom_vk_eltwise(be, &H1, 4); /* swiglu in place */
        H1.src[0] = H1.src[1] = NULL;
        LOOM_TRY(st);
        LOOM_TRY(loom_vk_matmul_into(be, &Dn, wd, e, &H1));
        uint32_t pc[LOOM_VK_PC_WORDS] = {(uint32_t)Dm,
                                         (uint32_t)T,
                                         (uint32_t)E,
                                         (uint32_t)e,
                                         loom_vk_rel(c, G.offset),
                                         loom_vk_rel(c, Dn.offset),
                                         loom_vk_rel(c, y->offset),
                                         e == 0,
                                         (uint32_t)(Dm * T)};
        loom_vk_bind bs[3] = {loom_vk_b(y, true), loom_vk_b(&G, false), loom_vk_b(&Dn, false)};
        LOOM_TRY(loom_vk_run(be, "moe_acc", bs, 3, pc, (uint64_t)(Dm * T), 256));
    }
    return LOOM_OK;
}

static loom_status loom_vk_node(loom_backend *be, const loom_tensor *t) {
    switch (t->op) {
    case LOOM_OP_ADD:
        return loom_vk_eltwise(be, t, 0);
    case LOOM_OP_MUL:
        return loom_vk_eltwise(be, t, 1);
    case LOOM_OP_SCALE:
        return loom_vk_eltwise(be, t, 2);
    case LOOM_OP_SILU:
        return loom_vk_eltwise(be, t, 3);
    case LOOM_OP_SWIGLU:
        return loom_vk_eltwise(be, t, 4);
    case LOOM_OP_SILU_BACK:
        return loom_vk_eltwise(be, t, 5);
    case LOOM_OP_GELU:
        return loom_vk_eltwise(be, t, 6);
    case LOOM_OP_GELU_BACK:
        return loom_vk_eltwise(be, t, 7);
    case LOOM_OP_RMS_NORM:
        return loom_vk_rows(be, t, 0);
    case LOOM_OP_SOFTMAX:
        return loom_vk_rows(be, t, 1);
    case LOOM_OP_RMS_NORM_BACK:
        return loom_vk_rows(be, t, 2);
    case LOOM_OP_SOFTMAX_BACK:
        return loom_vk_rows(be, t, 3);
    case LOOM_OP_ROPE:
        return loom_vk_rope(be, t);
    case LOOM_OP_GET_ROWS:
        return loom_vk_get_rows(be, t);
    case LOOM_OP_CPY:
        return loom_vk_cpy(be, t);
    case LOOM_OP_SET_ROWS:
        return loom_vk_set_rows(be, t);
    case LOOM_OP_MATMUL:
        return loom_vk_matmul(be, t);
    case LOOM_OP_FLASH_ATTN:
        return loom_vk_flash_attn(be, t);
    case LOOM_OP_FLASH_ATTN_BACK:
        return loom_vk_flash_attn_back(be, t);
    case LOOM_OP_CONCAT:
        return loom_vk_concat(be, t);
    case LOOM_OP_SUM_TO:
        return loom_vk_sum_to(be, t);
    case LOOM_OP_MOE:
        return loom_vk_moe(be, t);
    case LOOM_OP_CROSS_ENTROPY:
        return loom_vk_cross_entropy(be, t, false);
    case LOOM_OP_CROSS_ENTROPY_BACK:
        return loom_vk_cross_entropy(be, t, true);
    case LOOM_OP_GET_ROWS_BACK:
        return loom_vk_get_rows_back(be, t);
    case LOOM_OP_MOE_GATE:
        return loom_vk_moe_gate(be, t, 0);
    case LOOM_OP_MOE_GATE_BACK:
        return loom_vk_moe_gate(be, t, 1);
    default:
        return loom_backend_fail(be, LOOM_ERR_UNSUPPORTED, "op %s node '%s': not supported",
                                 loom_op_name(t->op), t->name);
    }
}

static bool loom_vk_on_device(const loom_backend *be, const loom_tensor *t) {
    return t->buffer && t->buffer->backend == be;
}

loom_status loom_vk_compute(loom_backend *be, loom_tensor *const *nodes, int n_nodes) {
    loom_vk_ctx *c = be->ctx;
    uint32_t *err = c->aux->host;
    memset(err, 0, 8 * sizeof *err); /* the error words (common.glsl) */
    for (int i = 0; i < n_nodes; i++) {
        const loom_tensor *t = nodes[i];
        if (t->op == LOOM_OP_NONE || loom_op_is_view(t->op)) continue;
        bool ok = loom_vk_on_device(be, t);
        for (int s = 0; s < LOOM_MAX_SRC && ok; s++)
            if (t->src[s]) ok = loom_vk_on_device(be, t->src[s]);
        if (!ok) {
            loom_vk_flush(be);
            return loom_backend_fail(be, LOOM_ERR_INVALID_ARG,
                                     "op %s node '%s': a tensor is not in a vulkan buffer",
                                     loom_op_name(t->op), t->name);
        }
        c->cur_node = (uint32_t)i;
        loom_status st = loom_vk_node(be, t);
        if (st != LOOM_OK) {
            loom_vk_flush(be);
            if (!be->error[0] || strncmp(be->error, "op ", 3) != 0) {
                char msg[LOOM_ERROR_MAX];
                snprintf(msg, sizeof msg, "%s", be->error);
                loom_backend_fail(be, st, "op %s node '%s': %s", loom_op_name(t->op), t->name, msg);
            }
            return st;
        }
    }
    LOOM_TRY(loom_vk_flush(be));
    if (err[0] == 2) /* LOOM_ERR_BAD_ROW in common.glsl: nothing was written for it */
        return loom_backend_fail(be, LOOM_ERR_INVALID_ARG,
                                 "op set_rows node '%s': row %d at position (%u, %u) is outside "
                                 "[0, %u)",
                                 err[5] < (uint32_t)n_nodes ? nodes[err[5]]->name : "?",
                                 (int)err[1], err[2], err[3], err[4]);
    if (err[0])
        return loom_backend_fail(be, LOOM_ERR_INVALID_ARG,
                                 "an id or target (%d) at position (%u, %u) is out of range",
                                 (int)err[1], err[2], err[3]);
    return LOOM_OK;
}
