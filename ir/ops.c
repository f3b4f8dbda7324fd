/* ir/ops.c - op constructors: shape/dtype validation and result tensors.
 * Every check names the op and the offending shapes, because this message is
 * what a user sees when a model file or a config does not fit. */
#include "ir/graph_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* M_PI is POSIX, not C11. */
#define LOOM_PI 3.14159265358979323846

static const char *const op_names[LOOM_OP_COUNT] = {
    [LOOM_OP_NONE] = "none",
    [LOOM_OP_VIEW] = "view",
    [LOOM_OP_GET_ROWS] = "get_rows",
    [LOOM_OP_ADD] = "add",
    [LOOM_OP_MUL] = "mul",
    [LOOM_OP_SCALE] = "scale",
    [LOOM_OP_MATMUL] = "matmul",
    [LOOM_OP_RMS_NORM] = "rms_norm",
    [LOOM_OP_ROPE] = "rope",
    [LOOM_OP_SOFTMAX] = "softmax",
    [LOOM_OP_SILU] = "silu",
    [LOOM_OP_SWIGLU] = "swiglu",
    [LOOM_OP_FLASH_ATTN] = "flash_attn",
    [LOOM_OP_MOE] = "moe",
    [LOOM_OP_CPY] = "cpy",
    [LOOM_OP_CONCAT] = "concat",
    [LOOM_OP_CROSS_ENTROPY] = "cross_entropy",
    [LOOM_OP_SUM_TO] = "sum_to",
    [LOOM_OP_SILU_BACK] = "silu_back",
    [LOOM_OP_RMS_NORM_BACK] = "rms_norm_back",
    [LOOM_OP_SOFTMAX_BACK] = "softmax_back",
    [LOOM_OP_GET_ROWS_BACK] = "get_rows_back",
    [LOOM_OP_CROSS_ENTROPY_BACK] = "cross_entropy_back",
    [LOOM_OP_MOE_GATE] = "moe_gate",
    [LOOM_OP_MOE_GATE_BACK] = "moe_gate_back",
    [LOOM_OP_SET_ROWS] = "set_rows",
    [LOOM_OP_GELU] = "gelu",
    [LOOM_OP_GELU_BACK] = "gelu_back",
    [LOOM_OP_FLASH_ATTN_BACK] = "flash_attn_back",
};

const char *loom_op_name(loom_op op) {
    return (int)op >= 0 && op < LOOM_OP_COUNT && op_names[op] ? op_names[op] : "?";
}

bool loom_op_is_view(loom_op op) {
    return op == LOOM_OP_VIEW;
}

bool loom_op_is_inplace(loom_op op) {
    return op == LOOM_OP_SET_ROWS;
}

/* Shorthand for shape strings in messages. */
#define D(t) loom_tensor_describe((t), (char[64]){0}, 64)

/* Sticky-error entry check: a NULL input means an earlier constructor failed
 * (its message is already recorded) or the caller passed NULL. */
static bool inputs_ok(loom_graph *g, const char *op, int n, loom_tensor *const *ts) {
    if (!g || g->status != LOOM_OK) return false;
    for (int i = 0; i < n; i++) {
        if (!ts[i]) {
            loom_graph_fail(g, LOOM_ERR_INVALID_ARG, "%s: input %d is NULL", op, i);
            return false;
        }
        if (ts[i]->id < 0 || ts[i]->id >= g->n_tensors || g->tensors[ts[i]->id] != ts[i]) {
            loom_graph_fail(g, LOOM_ERR_INVALID_ARG, "%s: input %d belongs to another graph", op,
                            i);
            return false;
        }
    }
    return true;
}
#define INPUTS(op, ...)                                                                            \
    do {                                                                                           \
        loom_tensor *in_[] = {__VA_ARGS__};                                                        \
        if (!inputs_ok(g, op, (int)(sizeof in_ / sizeof in_[0]), in_)) return NULL;                \
    } while (0)

/* Record an error and return NULL from the constructor when cond fails. */
#define REQUIRE(cond, ...)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            loom_graph_fail(g, LOOM_ERR_INVALID_ARG, __VA_ARGS__);                                 \
            return NULL;                                                                           \
        }                                                                                          \
    } while (0)

static loom_tensor *new_node(loom_graph *g, loom_op op, loom_dtype t, const int64_t ne[4],
                             loom_tensor *s0, loom_tensor *s1, loom_tensor *s2) {
    loom_tensor *r = loom_ir_new_tensor(g, t, ne);
    if (!r) return NULL;
    r->op = op;
    r->src[0] = s0;
    r->src[1] = s1;
    r->src[2] = s2;
    return r;
}

static bool same_shape(const loom_tensor *a, const loom_tensor *b) {
    return memcmp(a->ne, b->ne, sizeof a->ne) == 0;
}

/* The weight dtypes of the ops that take weights (matmul: src0; moe: the
 * expert weights src2..4; get_rows: the table, e.g. token embeddings). These
 * tables are the one rule: graph building, the reference and every backend's
 * supports(), and model loading ask loom_op_weight_dtype_ok; a backend may
 * still decline a dtype it has no kernel for. A new quant type is enabled
 * for an op here only. get_rows has no nf4 (QLoRA keeps embeddings f16).
 * The k-quants q2_K..q6_K (ADR 0024) are weights and tables; q8_K is not. */
static const bool weight_dtypes[LOOM_DTYPE_COUNT] = {
    [LOOM_F32] = true,  [LOOM_F16] = true,  [LOOM_BF16] = true,   [LOOM_Q8_0] = true,
    [LOOM_Q4_0] = true, [LOOM_NF4] = true,  [LOOM_NF4_DQ] = true, [LOOM_Q4_1] = true,
    [LOOM_Q5_0] = true, [LOOM_Q5_1] = true, [LOOM_Q2_K] = true,   [LOOM_Q3_K] = true,
    [LOOM_Q4_K] = true, [LOOM_Q5_K] = true, [LOOM_Q6_K] = true,
};
static const bool table_dtypes[LOOM_DTYPE_COUNT] = {
    [LOOM_F32] = true,  [LOOM_F16] = true,  [LOOM_BF16] = true, [LOOM_Q8_0] = true,
    [LOOM_Q4_0] = true, [LOOM_Q4_1] = true, [LOOM_Q5_0] = true, [LOOM_Q5_1] = true,
    [LOOM_Q2_K] = true, [LOOM_Q3_K] = true, [LOOM_Q4_K] = true, [LOOM_Q5_K] = true,
    [LOOM_Q6_K] = true,
};

bool loom_op_weight_dtype_ok(loom_op op, loom_dtype w) {
    if ((unsigned)w >= (unsigned)LOOM_DTYPE_COUNT) return false;
    switch (op) {
    case LOOM_OP_MATMUL:
    case LOOM_OP_MOE:
        return weight_dtypes[w];
    case LOOM_OP_GET_ROWS:
        return table_dtypes[w];
    default:
        return false;
    }
}

void loom_op_weight_dtypes(loom_op op, char *buf, size_t n) {
    if (!buf || !n) return;
    buf[0] = '\0';
    size_t used = 0;
    for (int t = 0; t < LOOM_DTYPE_COUNT; t++) {
        if (!loom_op_weight_dtype_ok(op, (loom_dtype)t)) continue;
        int k = snprintf(buf + used, n - used, "%s%s", used ? ", " : "",
                         loom_dtype_name((loom_dtype)t));
        if (k < 0 || (size_t)k >= n - used) break; /* truncated: the list is a message */
        used += (size_t)k;
    }
}

static bool is_activation(loom_dtype t) {
    return loom_dtype_is_float(t);
}

/* ---------------- views ---------------- */

enum { VIEW_RESHAPE = 1, VIEW_PERMUTE = 2, VIEW_SLICE = 3, VIEW_GENERAL = 4 };

static loom_tensor *new_view(loom_graph *g, loom_tensor *a, const int64_t ne[4], const size_t nb[4],
                             size_t offs, int kind) {
    loom_tensor *r = loom_ir_new_tensor(g, a->dtype, ne);
    if (!r) return NULL;
    memcpy(r->nb, nb, sizeof r->nb);
    r->op = LOOM_OP_VIEW;
    r->src[0] = a;
    r->view_src = loom_tensor_storage(a);
    r->view_offs = (a->view_src ? a->view_offs : 0) + offs;
    r->p.i[0] = kind;
    return r;
}

loom_tensor *loom_reshape(loom_graph *g, loom_tensor *a, int n_dims, const int64_t *ne) {
    INPUTS("reshape", a);
    REQUIRE(n_dims >= 1 && n_dims <= 4 && ne, "reshape: n_dims must be 1..4 (got %d)", n_dims);
    int64_t e[4] = {1, 1, 1, 1}, n = 1;
    for (int i = 0; i < n_dims; i++) {
        REQUIRE(ne[i] > 0, "reshape: extent %d must be positive (got %lld)", i, (long long)ne[i]);
        e[i] = ne[i];
        n *= ne[i];
    }
    REQUIRE(loom_tensor_is_contiguous(a), "reshape: input %s must be contiguous", D(a));
    REQUIRE(n == loom_tensor_nelements(a), "reshape: %s has %lld elements, new shape has %lld",
            D(a), (long long)loom_tensor_nelements(a), (long long)n);
    REQUIRE(e[0] % loom_dtype_block_size(a->dtype) == 0 || loom_dtype_is_nf4(a->dtype),
            "reshape: %s rows must stay whole blocks (new ne[0] %lld)", D(a), (long long)e[0]);
    size_t nb[4];
    loom_ir_contiguous_strides(a->dtype, e, nb);
    return new_view(g, a, e, nb, 0, VIEW_RESHAPE);
}
loom_tensor *loom_reshape_2d(loom_graph *g, loom_tensor *a, int64_t ne0, int64_t ne1) {
    return loom_reshape(g, a, 2, (int64_t[]){ne0, ne1});
}
loom_tensor *loom_reshape_3d(loom_graph *g, loom_tensor *a, int64_t ne0, int64_t ne1, int64_t ne2) {
    return loom_reshape(g, a, 3, (int64_t[]){ne0, ne1, ne2});
}
loom_tensor *loom_reshape_4d(loom_graph *g, loom_tensor *a, int64_t ne0, int64_t ne1, int64_t ne2,
                             int64_t ne3) {
    return loom_reshape(g, a, 4, (int64_t[]){ne0, ne1, ne2, ne3});
}

loom_tensor *loom_permute(loom_graph *g, loom_tensor *a, int ax0, int ax1, int ax2, int ax3) {
    INPUTS("permute", a);
    int ax[4] = {ax0, ax1, ax2, ax3}, seen = 0;
    for (int i = 0; i < 4; i++) {
        REQUIRE(ax[i] >= 0 && ax[i] < 4 && !(seen & (1 << ax[i])),
                "permute: axes (%d,%d,%d,%d) are not a permutation of 0..3", ax0, ax1, ax2, ax3);
        seen |= 1 << ax[i];
    }
    REQUIRE(!loom_dtype_is_quantized(a->dtype) || ax[0] == 0,
            "permute: %s is block-quantized; dim 0 must stay in place", D(a));
    int64_t ne[4];
    size_t nb[4];
    for (int i = 0; i < 4; i++) {
        ne[ax[i]] = a->ne[i];
        nb[ax[i]] = a->nb[i];
    }
    loom_tensor *r = new_view(g, a, ne, nb, 0, VIEW_PERMUTE);
    if (r)
        for (int i = 0; i < 4; i++)
            r->p.i[1 + i] = ax[i];
    return r;
}

loom_tensor *loom_transpose(loom_graph *g, loom_tensor *a) {
    return loom_permute(g, a, 1, 0, 2, 3);
}

loom_tensor *loom_slice(loom_graph *g, loom_tensor *a, int dim, int64_t start, int64_t len) {
    INPUTS("slice", a);
    REQUIRE(dim >= 0 && dim < 4, "slice: dim must be 0..3 (got %d)", dim);
    REQUIRE(start >= 0 && len > 0 && start + len <= a->ne[dim],
            "slice: range [%lld, %lld) is outside dim %d of %s", (long long)start,
            (long long)(start + len), dim, D(a));
    REQUIRE(!loom_dtype_is_nf4(a->dtype) || len == a->ne[dim],
            "slice: nf4 tensors can only be used whole (%s)", D(a));
    int64_t bs = loom_dtype_block_size(a->dtype);
    REQUIRE(dim != 0 || (start % bs == 0 && len % bs == 0),
            "slice: %s rows are blocks of %lld; start and length must be multiples", D(a),
            (long long)bs);
    int64_t ne[4];
    memcpy(ne, a->ne, sizeof ne);
    ne[dim] = len;
    size_t offs = dim == 0 ? (size_t)(start / bs) * a->nb[0] : (size_t)start * a->nb[dim];
    loom_tensor *r = new_view(g, a, ne, a->nb, offs, VIEW_SLICE);
    if (r) {
        r->p.i[1] = dim;
        r->p.i[2] = (int32_t)start;
    }
    return r;
}

loom_tensor *loom_view(loom_graph *g, loom_tensor *a, int n_dims, const int64_t *ne,
                       const size_t *nb, size_t offset) {
    INPUTS("view", a);
    REQUIRE(n_dims >= 1 && n_dims <= 4 && ne && nb, "view: n_dims must be 1..4 (got %d)", n_dims);
    REQUIRE(!loom_dtype_is_nf4(a->dtype), "view: nf4 tensors can only be used whole (%s)", D(a));
    int64_t e[4] = {1, 1, 1, 1};
    size_t s[4];
    for (int i = 0; i < n_dims; i++) {
        REQUIRE(ne[i] > 0, "view: extent %d must be positive", i);
        e[i] = ne[i];
    }
    loom_ir_contiguous_strides(a->dtype, e, s);
    for (int i = 0; i < n_dims; i++)
        s[i] = nb[i];
    for (int i = n_dims; i < 4; i++)
        s[i] = s[i - 1] * (size_t)e[i - 1];
    loom_tensor tmp = {.dtype = a->dtype};
    memcpy(tmp.ne, e, sizeof e);
    memcpy(tmp.nb, s, sizeof s);
    size_t span = loom_tensor_nbytes(&tmp);
    size_t have = loom_tensor_nbytes(a);
    REQUIRE(offset + span <= have, "view: %zu bytes at offset %zu exceed the %zu bytes of %s", span,
            offset, have, D(a));
    return new_view(g, a, e, s, offset, VIEW_GENERAL);
}

/* ---------------- forward ops ---------------- */

loom_tensor *loom_get_rows(loom_graph *g, loom_tensor *table, loom_tensor *ids) {
    INPUTS("get_rows", table, ids);
    REQUIRE(loom_op_weight_dtype_ok(LOOM_OP_GET_ROWS, table->dtype),
            "get_rows: table %s has no get_rows kernel", D(table));
    REQUIRE(table->ne[2] == 1 && table->ne[3] == 1, "get_rows: table %s must be 2-d", D(table));
    REQUIRE(ids->dtype == LOOM_I32 && ids->ne[2] == 1 && ids->ne[3] == 1,
            "get_rows: ids %s must be i32 with at most 2 dims", D(ids));
    int64_t ne[4] = {table->ne[0], ids->ne[0], ids->ne[1], 1};
    return new_node(g, LOOM_OP_GET_ROWS, LOOM_F32, ne, table, ids, NULL);
}

static loom_tensor *binary(loom_graph *g, loom_op op, loom_tensor *a, loom_tensor *b) {
    const char *name = loom_op_name(op);
    INPUTS(name, a, b);
    REQUIRE(a->dtype == LOOM_F32 && b->dtype == LOOM_F32, "%s: %s and %s must both be f32", name,
            D(a), D(b));
    for (int i = 0; i < 4; i++)
        REQUIRE(b->ne[i] == a->ne[i] || b->ne[i] == 1,
                "%s: %s does not broadcast to %s (dim %d: %lld vs %lld)", name, D(b), D(a), i,
                (long long)b->ne[i], (long long)a->ne[i]);
    return new_node(g, op, LOOM_F32, a->ne, a, b, NULL);
}
loom_tensor *loom_add(loom_graph *g, loom_tensor *a, loom_tensor *b) {
    return binary(g, LOOM_OP_ADD, a, b);
}
loom_tensor *loom_mul(loom_graph *g, loom_tensor *a, loom_tensor *b) {
    return binary(g, LOOM_OP_MUL, a, b);
}

static loom_tensor *unary_f32(loom_graph *g, loom_op op, loom_tensor *a) {
    INPUTS(loom_op_name(op), a);
    REQUIRE(a->dtype == LOOM_F32, "%s: input %s must be f32", loom_op_name(op), D(a));
    return new_node(g, op, LOOM_F32, a->ne, a, NULL, NULL);
}

loom_tensor *loom_scale(loom_graph *g, loom_tensor *a, float s) {
    loom_tensor *r = unary_f32(g, LOOM_OP_SCALE, a);
    if (r) r->p.f[0] = s;
    return r;
}

loom_tensor *loom_matmul(loom_graph *g, loom_tensor *w, loom_tensor *x) {
    INPUTS("matmul", w, x);
    REQUIRE(loom_op_weight_dtype_ok(LOOM_OP_MATMUL, w->dtype),
            "matmul: weight %s has no matmul kernel", D(w));
    REQUIRE(is_activation(x->dtype), "matmul: activations %s must be f32, f16 or bf16", D(x));
    REQUIRE(w->ne[0] == x->ne[0], "matmul: inner dims differ: weight %s vs activations %s", D(w),
            D(x));
    REQUIRE(x->ne[2] % w->ne[2] == 0 && x->ne[3] % w->ne[3] == 0,
            "matmul: weight %s does not broadcast over activations %s (dims 2,3 must divide)", D(w),
            D(x));
    REQUIRE(!loom_dtype_is_quantized(w->dtype) || w->nb[0] == loom_dtype_block_bytes(w->dtype) ||
                loom_dtype_is_nf4(w->dtype),
            "matmul: quantized weight %s must have contiguous rows", D(w));
    REQUIRE(!loom_dtype_is_nf4(w->dtype) || loom_tensor_is_contiguous(w),
            "matmul: nf4 weight %s must be contiguous", D(w));
    int64_t ne[4] = {w->ne[1], x->ne[1], x->ne[2], x->ne[3]};
    return new_node(g, LOOM_OP_MATMUL, LOOM_F32, ne, w, x, NULL);
}

loom_tensor *loom_rms_norm(loom_graph *g, loom_tensor *x, float eps) {
    if (g && g->status == LOOM_OK && !(eps >= 0.0f)) {
        loom_graph_fail(g, LOOM_ERR_INVALID_ARG, "rms_norm: eps must be >= 0 (got %g)", eps);
        return NULL;
    }
    loom_tensor *r = unary_f32(g, LOOM_OP_RMS_NORM, x);
    if (r) r->p.f[0] = eps;
    return r;
}

/* ROPE parameter layout in p: i[0] n_dims, i[1] mode, f[2] theta, i[3] scaling,
 * f[4] factor, f[5] low_freq_factor, f[6] high_freq_factor, i[7] orig_ctx, i[8] inverse. */
void loom_rope_params_get(const loom_tensor *node, loom_rope_params *out) {
    out->n_dims = node->p.i[0];
    out->mode = node->p.i[1];
    out->theta = node->p.f[2];
    out->scaling = node->p.i[3];
    out->factor = node->p.f[4];
    out->low_freq_factor = node->p.f[5];
    out->high_freq_factor = node->p.f[6];
    out->orig_ctx = node->p.i[7];
    out->inverse = node->p.i[8];
}

void loom_rope_freq_table(const loom_rope_params *p, double *out, double *unscaled) {
    const int64_t half = p->n_dims / 2;
    for (int64_t i = 0; i < half; i++) {
        const double base = pow((double)p->theta, -2.0 * (double)i / (double)p->n_dims);
        double inv = base;
        if (p->scaling == LOOM_ROPE_SCALING_LLAMA3) {
            const double factor = p->factor, low = p->low_freq_factor, high = p->high_freq_factor;
            const double ctx = p->orig_ctx;
            const double wavelen = 2.0 * LOOM_PI / inv;
            if (wavelen > ctx / low) {
                inv = inv / factor;
            } else if (wavelen < ctx / high) {
                /* high frequency: unchanged */
            } else {
                const double smooth = (ctx / wavelen - low) / (high - low);
                inv = (1.0 - smooth) * inv / factor + smooth * inv;
            }
        }
        out[i] = inv;
        if (unscaled) unscaled[i] = base;
    }
}

loom_rope_params loom_rope_params_llama3(int32_t head_dim) {
    loom_rope_params p = {.n_dims = head_dim,
                          .mode = LOOM_ROPE_NEOX,
                          .theta = 500000.0f,
                          .scaling = LOOM_ROPE_SCALING_LLAMA3,
                          .factor = 8.0f,
                          .low_freq_factor = 1.0f,
                          .high_freq_factor = 4.0f,
                          .orig_ctx = 8192,
                          .inverse = 0};
    return p;
}

loom_tensor *loom_rope(loom_graph *g, loom_tensor *x, loom_tensor *pos, const loom_rope_params *p) {
    INPUTS("rope", x, pos);
    REQUIRE(p, "rope: params are NULL");
    REQUIRE(x->dtype == LOOM_F32, "rope: x %s must be f32 [head_dim, n_heads, T, B]", D(x));
    REQUIRE(pos->dtype == LOOM_I32 && pos->ne[0] == x->ne[2] && pos->ne[1] == 1 &&
                pos->ne[2] == 1 && pos->ne[3] == 1,
            "rope: positions %s must be i32 [T] with T = x ne[2] (%lld)", D(pos),
            (long long)x->ne[2]);
    REQUIRE(p->n_dims > 0 && p->n_dims % 2 == 0 && p->n_dims <= x->ne[0],
            "rope: n_dims %d must be even and in (0, head_dim %lld]", p->n_dims,
            (long long)x->ne[0]);
    REQUIRE(p->mode == LOOM_ROPE_NORMAL || p->mode == LOOM_ROPE_NEOX,
            "rope: mode %d is neither normal (0) nor neox (2)", p->mode);
    REQUIRE(p->theta > 0.0f, "rope: theta must be positive (got %g)", p->theta);
    REQUIRE(p->scaling == LOOM_ROPE_SCALING_NONE || p->scaling == LOOM_ROPE_SCALING_LLAMA3,
            "rope: unknown scaling type %d", p->scaling);
    if (p->scaling == LOOM_ROPE_SCALING_LLAMA3)
        REQUIRE(p->factor > 0.0f && p->low_freq_factor > 0.0f &&
                    p->high_freq_factor > p->low_freq_factor && p->orig_ctx > 0,
                "rope: llama3 scaling needs factor > 0, 0 < low_freq_factor < high_freq_factor "
                "and orig_ctx > 0 (got %g, %g, %g, %d)",
                p->factor, p->low_freq_factor, p->high_freq_factor, p->orig_ctx);
    loom_tensor *r = new_node(g, LOOM_OP_ROPE, LOOM_F32, x->ne, x, pos, NULL);
    if (r) {
        r->p.i[0] = p->n_dims;
        r->p.i[1] = p->mode;
        r->p.f[2] = p->theta;
        r->p.i[3] = p->scaling;
        r->p.f[4] = p->factor;
        r->p.f[5] = p->low_freq_factor;
        r->p.f[6] = p->high_freq_factor;
        r->p.i[7] = p->orig_ctx;
        r->p.i[8] = p->inverse ? 1 : 0;
    }
    return r;
}

loom_tensor *loom_softmax(loom_graph *g, loom_tensor *x, float scale, bool causal,
                          int32_t q_offset) {
    loom_tensor *r = unary_f32(g, LOOM_OP_SOFTMAX, x);
    if (r) {
        r->p.f[0] = scale;
        r->p.i[1] = causal;
        r->p.i[2] = q_offset;
    }
    return r;
}

loom_tensor *loom_silu(loom_graph *g, loom_tensor *x) {
    return unary_f32(g, LOOM_OP_SILU, x);
}

loom_tensor *loom_gelu(loom_graph *g, loom_tensor *x) {
    return unary_f32(g, LOOM_OP_GELU, x);
}

static loom_tensor *same_shape_pair(loom_graph *g, loom_op op, loom_tensor *a, loom_tensor *b) {
    const char *name = loom_op_name(op);
    INPUTS(name, a, b);
    REQUIRE(a->dtype == LOOM_F32 && b->dtype == LOOM_F32 && same_shape(a, b),
            "%s: %s and %s must be f32 with the same shape", name, D(a), D(b));
    return new_node(g, op, LOOM_F32, a->ne, a, b, NULL);
}

loom_tensor *loom_swiglu(loom_graph *g, loom_tensor *gate, loom_tensor *up) {
    return same_shape_pair(g, LOOM_OP_SWIGLU, gate, up);
}

loom_tensor *loom_flash_attn(loom_graph *g, loom_tensor *q, loom_tensor *k, loom_tensor *v,
                             float scale, bool causal, int32_t q_offset) {
    INPUTS("flash_attn", q, k, v);
    REQUIRE(q->dtype == LOOM_F32, "flash_attn: q %s must be f32 [D, Tq, Hq, B]", D(q));
    REQUIRE((k->dtype == LOOM_F32 || k->dtype == LOOM_F16) && k->dtype == v->dtype,
            "flash_attn: k %s and v %s must both be f32 or both f16", D(k), D(v));
    REQUIRE(same_shape(k, v), "flash_attn: k %s and v %s must have the same shape", D(k), D(v));
    REQUIRE(q->ne[0] == k->ne[0], "flash_attn: head dims differ: q %s vs k %s", D(q), D(k));
    REQUIRE(q->ne[2] % k->ne[2] == 0,
            "flash_attn: %lld query heads are not a multiple of %lld KV heads (q %s, k %s)",
            (long long)q->ne[2], (long long)k->ne[2], D(q), D(k));
    REQUIRE(q->ne[3] == k->ne[3], "flash_attn: batch differs: q %s vs k %s", D(q), D(k));
    REQUIRE(q_offset >= 0 || !causal, "flash_attn: q_offset must be >= 0 (got %d)", q_offset);
    int64_t ne[4] = {q->ne[0], q->ne[2], q->ne[1], q->ne[3]};
    loom_tensor *r = new_node(g, LOOM_OP_FLASH_ATTN, LOOM_F32, ne, q, k, v);
    if (r) {
        r->p.f[0] = scale;
        r->p.i[1] = causal;
        r->p.i[2] = q_offset;
    }
    return r;
}

loom_tensor *loom_flash_attn_paged(loom_graph *g, loom_tensor *q, loom_tensor *k, loom_tensor *v,
                                   loom_tensor *blocks, int32_t block_size, float scale,
                                   int32_t q_offset) {
    INPUTS("flash_attn", q, k, v, blocks);
    REQUIRE(blocks->dtype == LOOM_I32 && blocks->ne[1] == 1 && blocks->ne[2] == 1 &&
                blocks->ne[3] == 1 && blocks->nb[0] == sizeof(int32_t),
            "flash_attn: block table %s must be contiguous i32 [n_blocks]", D(blocks));
    REQUIRE(block_size > 0 && k->ne[1] % block_size == 0,
            "flash_attn: the pool's %lld rows (k %s) are not whole blocks of %d",
            (long long)k->ne[1], D(k), block_size);
    REQUIRE(q->ne[3] == 1, "flash_attn: a paged q %s must have B = 1", D(q));
    REQUIRE(q_offset >= 0, "flash_attn: q_offset must be >= 0 (got %d)", q_offset);
    loom_tensor *r = loom_flash_attn(g, q, k, v, scale, true, q_offset);
    if (r) {
        r->src[3] = blocks;
        r->p.i[3] = block_size;
    }
    return r;
}

loom_tensor *loom_flash_attn_paged_batch(loom_graph *g, loom_tensor *q, loom_tensor *k,
                                         loom_tensor *v, loom_tensor *blocks, loom_tensor *offsets,
                                         int32_t block_size, float scale) {
    INPUTS("flash_attn", q, k, v, blocks, offsets);
    const int64_t S = q->ne[3];
    REQUIRE(k->ne[3] == 1, "flash_attn: a batched paged k %s must be one pool (B = 1)", D(k));
    REQUIRE(blocks->dtype == LOOM_I32 && blocks->ne[1] == S && blocks->ne[2] == 1 &&
                blocks->ne[3] == 1 && loom_tensor_is_contiguous(blocks),
            "flash_attn: block tables %s must be contiguous i32 [n_blocks, %lld]", D(blocks),
            (long long)S);
    REQUIRE(offsets->dtype == LOOM_I32 && offsets->ne[0] == S && offsets->ne[1] == 1 &&
                offsets->ne[2] == 1 && offsets->ne[3] == 1 && offsets->nb[0] == sizeof(int32_t),
            "flash_attn: offsets %s must be contiguous i32 [%lld]", D(offsets), (long long)S);
    REQUIRE(block_size > 0 && k->ne[1] % block_size == 0,
            "flash_attn: the pool's %lld rows (k %s) are not whole blocks of %d",
            (long long)k->ne[1], D(k), block_size);
    REQUIRE(q->dtype == LOOM_F32 && (k->dtype == LOOM_F32 || k->dtype == LOOM_F16) &&
                k->dtype == v->dtype && same_shape(k, v),
            "flash_attn: q %s must be f32, k %s and v %s both f32 or both f16 of one shape", D(q),
            D(k), D(v));
    REQUIRE(q->ne[0] == k->ne[0] && q->ne[2] % k->ne[2] == 0,
            "flash_attn: q %s and k %s differ in head dim or GQA grouping", D(q), D(k));
    int64_t ne[4] = {q->ne[0], q->ne[2], q->ne[1], S};
    loom_tensor *r = new_node(g, LOOM_OP_FLASH_ATTN, LOOM_F32, ne, q, k, v);
    if (r) {
        r->src[3] = blocks;
        r->src[4] = offsets;
        r->p.f[0] = scale;
        r->p.i[1] = 1; /* causal */
        r->p.i[3] = block_size;
    }
    return r;
}

loom_tensor *loom_set_rows(loom_graph *g, loom_tensor *dst, loom_tensor *src, loom_tensor *rows) {
    INPUTS("set_rows", dst, src, rows);
    loom_tensor *st = loom_tensor_storage(dst);
    REQUIRE(st->op == LOOM_OP_NONE,
            "set_rows: destination %s must be a leaf or a view of one (persistent storage)",
            D(dst));
    REQUIRE(dst->dtype == LOOM_F32 || dst->dtype == LOOM_F16 || dst->dtype == LOOM_BF16 ||
                dst->dtype == LOOM_Q8_0,
            "set_rows: destination %s must be f32/f16/bf16/q8_0", D(dst));
    REQUIRE(dst->ne[0] % loom_dtype_block_size(dst->dtype) == 0,
            "set_rows: destination %s rows must be whole blocks", D(dst));
    REQUIRE(src->dtype == LOOM_F32, "set_rows: source %s must be f32", D(src));
    REQUIRE(src->ne[0] == dst->ne[0] && src->ne[2] == dst->ne[2] && src->ne[3] == 1 &&
                dst->ne[3] == 1,
            "set_rows: source %s must be [W, T, B] for destination %s [W, R, B]", D(src), D(dst));
    REQUIRE(rows->dtype == LOOM_I32 && rows->ne[0] == src->ne[1] &&
                (rows->ne[1] == 1 || rows->ne[1] == src->ne[2]) && rows->ne[2] == 1 &&
                rows->ne[3] == 1,
            "set_rows: rows %s must be i32 [T] or [T, B] for source %s", D(rows), D(src));
    loom_tensor *r = new_node(g, LOOM_OP_SET_ROWS, dst->dtype, dst->ne, dst, src, rows);
    if (!r) return NULL;
    memcpy(r->nb, dst->nb, sizeof r->nb);
    r->view_src = st;
    r->view_offs = dst->view_src ? dst->view_offs : 0;
    return r;
}

loom_status loom_view_set_extent(loom_tensor *v, int dim, int64_t ne) {
    if (!v || v->op != LOOM_OP_VIEW || !v->view_src || dim < 0 || dim >= LOOM_MAX_DIMS || ne <= 0)
        return LOOM_ERR_INVALID_ARG;
    const int64_t bs = loom_dtype_block_size(v->dtype);
    if (dim == 0 && ne % bs != 0) return LOOM_ERR_INVALID_ARG;
    /* Last byte the view touches with the new extent, against the storage. */
    size_t end = v->view_offs;
    for (int i = 0; i < LOOM_MAX_DIMS; i++) {
        int64_t e = i == dim ? ne : v->ne[i];
        if (i == 0) e /= bs;
        end += (size_t)(e - 1) * v->nb[i];
    }
    end += v->nb[0];
    if (end > loom_tensor_nbytes(v->view_src)) return LOOM_ERR_INVALID_ARG;
    v->ne[dim] = ne;
    return LOOM_OK;
}

loom_status loom_node_set_q_offset(loom_tensor *node, int32_t q_offset) {
    if (!node || (node->op != LOOM_OP_FLASH_ATTN && node->op != LOOM_OP_SOFTMAX) || q_offset < 0)
        return LOOM_ERR_INVALID_ARG;
    node->p.i[2] = q_offset;
    return LOOM_OK;
}

loom_tensor *loom_moe_gate(loom_graph *g, loom_tensor *logits, int32_t top_k) {
    INPUTS("moe_gate", logits);
    REQUIRE(logits->dtype == LOOM_F32 && logits->ne[2] == 1 && logits->ne[3] == 1,
            "moe_gate: router logits %s must be f32 [n_experts, T]", D(logits));
    REQUIRE(top_k >= 1 && top_k <= logits->ne[0], "moe_gate: top_k %d must be in 1..%lld", top_k,
            (long long)logits->ne[0]);
    loom_tensor *r = new_node(g, LOOM_OP_MOE_GATE, LOOM_F32, logits->ne, logits, NULL, NULL);
    if (r) r->p.i[0] = top_k;
    return r;
}

loom_tensor *loom_moe(loom_graph *g, loom_tensor *x, loom_tensor *logits, loom_tensor *gate,
                      loom_tensor *up, loom_tensor *down, int32_t top_k) {
    INPUTS("moe", x, logits, gate, up, down);
    REQUIRE(x->dtype == LOOM_F32 && x->ne[2] == 1 && x->ne[3] == 1,
            "moe: x %s must be f32 [dim, T]", D(x));
    REQUIRE(logits->dtype == LOOM_F32 && logits->ne[1] == x->ne[1] && logits->ne[2] == 1 &&
                logits->ne[3] == 1,
            "moe: router logits %s must be f32 [n_experts, T] with T of x %s", D(logits), D(x));
    int64_t E = logits->ne[0], Dm = x->ne[0], F = gate->ne[1];
    REQUIRE(top_k >= 1 && top_k <= E, "moe: top_k %d must be in 1..%lld", top_k, (long long)E);
    REQUIRE(gate->ne[0] == Dm && gate->ne[2] == E && gate->ne[3] == 1,
            "moe: gate experts %s must be [dim %lld, ffn, n_experts %lld]", D(gate), (long long)Dm,
            (long long)E);
    REQUIRE(same_shape(gate, up) && gate->dtype == up->dtype,
            "moe: up experts %s must match gate experts %s", D(up), D(gate));
    REQUIRE(down->ne[0] == F && down->ne[1] == Dm && down->ne[2] == E && down->ne[3] == 1,
            "moe: down experts %s must be [ffn %lld, dim %lld, n_experts %lld]", D(down),
            (long long)F, (long long)Dm, (long long)E);
    loom_tensor *ws[3] = {gate, up, down};
    for (int i = 0; i < 3; i++) {
        REQUIRE(loom_op_weight_dtype_ok(LOOM_OP_MOE, ws[i]->dtype),
                "moe: expert weights %s have no matmul kernel", D(ws[i]));
        REQUIRE(loom_tensor_is_contiguous(ws[i]) ||
                    (!loom_dtype_is_nf4(ws[i]->dtype) &&
                     ws[i]->nb[0] == loom_dtype_block_bytes(ws[i]->dtype)),
                "moe: expert weights %s must have contiguous rows", D(ws[i]));
    }
    loom_tensor *r = new_node(g, LOOM_OP_MOE, LOOM_F32, x->ne, x, logits, gate);
    if (r) {
        r->src[3] = up;
        r->src[4] = down;
        r->p.i[0] = top_k;
    }
    return r;
}

loom_tensor *loom_cpy(loom_graph *g, loom_tensor *a, loom_dtype t) {
    INPUTS("cpy", a);
    REQUIRE((int)t >= 0 && t < LOOM_DTYPE_COUNT, "cpy: unknown target dtype %d", (int)t);
    REQUIRE(!loom_dtype_is_quantized(a->dtype) || loom_tensor_is_contiguous(a),
            "cpy: quantized source %s must be contiguous", D(a));
    REQUIRE((a->dtype == LOOM_I32) == (t == LOOM_I32) || loom_dtype_is_float(a->dtype) ||
                loom_dtype_is_float(t),
            "cpy: cannot convert %s to %s", D(a), loom_dtype_name(t));
    int64_t bs = loom_dtype_block_size(t);
    REQUIRE(loom_dtype_is_nf4(t) ? loom_tensor_nelements(a) % bs == 0 && a->ne[0] % 2 == 0
                                 : a->ne[0] % bs == 0,
            "cpy: %s does not fit %s blocks of %lld", D(a), loom_dtype_name(t), (long long)bs);
    return new_node(g, LOOM_OP_CPY, t, a->ne, a, NULL, NULL);
}

loom_tensor *loom_cont(loom_graph *g, loom_tensor *a) {
    return a ? loom_cpy(g, a, a->dtype) : loom_cpy(g, a, LOOM_F32);
}

loom_tensor *loom_concat(loom_graph *g, loom_tensor *a, loom_tensor *b, int dim) {
    INPUTS("concat", a, b);
    REQUIRE(dim >= 0 && dim < 4, "concat: dim must be 0..3 (got %d)", dim);
    REQUIRE(a->dtype == b->dtype && !loom_dtype_is_quantized(a->dtype),
            "concat: %s and %s must share a non-quantized dtype", D(a), D(b));
    int64_t ne[4];
    for (int i = 0; i < 4; i++) {
        REQUIRE(i == dim || a->ne[i] == b->ne[i], "concat: %s and %s differ in dim %d", D(a), D(b),
                i);
        ne[i] = i == dim ? a->ne[i] + b->ne[i] : a->ne[i];
    }
    loom_tensor *r = new_node(g, LOOM_OP_CONCAT, a->dtype, ne, a, b, NULL);
    if (r) r->p.i[0] = dim;
    return r;
}

loom_tensor *loom_cross_entropy(loom_graph *g, loom_tensor *logits, loom_tensor *targets) {
    INPUTS("cross_entropy", logits, targets);
    REQUIRE(logits->dtype == LOOM_F32 && logits->ne[2] == 1 && logits->ne[3] == 1,
            "cross_entropy: logits %s must be f32 [vocab, T]", D(logits));
    REQUIRE(targets->dtype == LOOM_I32 && targets->ne[0] == logits->ne[1] &&
                loom_tensor_nelements(targets) == targets->ne[0],
            "cross_entropy: targets %s must be i32 [T] with T = %lld", D(targets),
            (long long)logits->ne[1]);
    int64_t ne[4] = {1, 1, 1, 1};
    return new_node(g, LOOM_OP_CROSS_ENTROPY, LOOM_F32, ne, logits, targets, NULL);
}

/* ---------------- backward helper ops ---------------- */

loom_tensor *loom_sum_to(loom_graph *g, loom_tensor *a, const int64_t *ne) {
    INPUTS("sum_to", a);
    REQUIRE(ne, "sum_to: shape is NULL");
    REQUIRE(a->dtype == LOOM_F32, "sum_to: input %s must be f32", D(a));
    for (int i = 0; i < 4; i++)
        REQUIRE(ne[i] == a->ne[i] || ne[i] == 1,
                "sum_to: target extent %lld in dim %d must be 1 or %lld (input %s)",
                (long long)ne[i], i, (long long)a->ne[i], D(a));
    return new_node(g, LOOM_OP_SUM_TO, LOOM_F32, ne, a, NULL, NULL);
}

loom_tensor *loom_silu_back(loom_graph *g, loom_tensor *x, loom_tensor *dy) {
    return same_shape_pair(g, LOOM_OP_SILU_BACK, x, dy);
}

loom_tensor *loom_gelu_back(loom_graph *g, loom_tensor *x, loom_tensor *dy) {
    return same_shape_pair(g, LOOM_OP_GELU_BACK, x, dy);
}

loom_tensor *loom_rms_norm_back(loom_graph *g, loom_tensor *x, loom_tensor *dy, float eps) {
    loom_tensor *r = same_shape_pair(g, LOOM_OP_RMS_NORM_BACK, x, dy);
    if (r) r->p.f[0] = eps;
    return r;
}

loom_tensor *loom_softmax_back(loom_graph *g, loom_tensor *y, loom_tensor *dy, float scale) {
    loom_tensor *r = same_shape_pair(g, LOOM_OP_SOFTMAX_BACK, y, dy);
    if (r) r->p.f[0] = scale;
    return r;
}

loom_tensor *loom_get_rows_back(loom_graph *g, loom_tensor *dy, loom_tensor *ids, int64_t n_rows) {
    INPUTS("get_rows_back", dy, ids);
    REQUIRE(dy->dtype == LOOM_F32 && ids->dtype == LOOM_I32 && dy->ne[1] == ids->ne[0] &&
                dy->ne[2] == ids->ne[1] && dy->ne[3] == 1 && ids->ne[2] == 1 && ids->ne[3] == 1,
            "get_rows_back: dy %s must be f32 [D, T, B] for ids %s i32 [T, B]", D(dy), D(ids));
    REQUIRE(n_rows > 0, "get_rows_back: n_rows must be positive (got %lld)", (long long)n_rows);
    int64_t ne[4] = {dy->ne[0], n_rows, 1, 1};
    return new_node(g, LOOM_OP_GET_ROWS_BACK, LOOM_F32, ne, dy, ids, NULL);
}

loom_tensor *loom_cross_entropy_back(loom_graph *g, loom_tensor *logits, loom_tensor *targets,
                                     loom_tensor *dloss) {
    INPUTS("cross_entropy_back", logits, targets, dloss);
    REQUIRE(dloss->dtype == LOOM_F32 && loom_tensor_nelements(dloss) == 1,
            "cross_entropy_back: dloss %s must be an f32 scalar", D(dloss));
    REQUIRE(logits->dtype == LOOM_F32 && logits->ne[2] == 1 && logits->ne[3] == 1 &&
                targets->dtype == LOOM_I32 && targets->ne[0] == logits->ne[1],
            "cross_entropy_back: logits %s / targets %s do not match", D(logits), D(targets));
    return new_node(g, LOOM_OP_CROSS_ENTROPY_BACK, LOOM_F32, logits->ne, logits, targets, dloss);
}

loom_tensor *loom_moe_gate_back(loom_graph *g, loom_tensor *gates, loom_tensor *dgates) {
    return same_shape_pair(g, LOOM_OP_MOE_GATE_BACK, gates, dgates);
}

loom_tensor *loom_flash_attn_back(loom_graph *g, loom_fa_back_part part, loom_tensor *q,
                                  loom_tensor *k, loom_tensor *v, loom_tensor *dout,
                                  loom_tensor *x, float scale, bool causal, int32_t q_offset) {
    INPUTS("flash_attn_back", q, k, v, dout, x);
    REQUIRE(part >= LOOM_FA_BACK_STATS && part <= LOOM_FA_BACK_DKV,
            "flash_attn_back: unknown part %d", (int)part);
    /* The forward's checks, so q/k/v are a valid attention triple. */
    REQUIRE(q->dtype == LOOM_F32, "flash_attn_back: q %s must be f32 [D, Tq, Hq, B]", D(q));
    REQUIRE((k->dtype == LOOM_F32 || k->dtype == LOOM_F16) && k->dtype == v->dtype,
            "flash_attn_back: k %s and v %s must both be f32 or both f16", D(k), D(v));
    REQUIRE(same_shape(k, v), "flash_attn_back: k %s and v %s must have the same shape", D(k),
            D(v));
    REQUIRE(q->ne[0] == k->ne[0] && q->ne[3] == k->ne[3] && q->ne[2] % k->ne[2] == 0,
            "flash_attn_back: q %s does not attend over k %s (head dim, batch or GQA)", D(q),
            D(k));
    REQUIRE(q_offset >= 0 || !causal, "flash_attn_back: q_offset must be >= 0 (got %d)",
            q_offset);
    const int64_t Dh = q->ne[0], Tq = q->ne[1], Hq = q->ne[2], B = q->ne[3];
    const int64_t one[4] = {Dh, Hq, Tq, B}, st[4] = {Tq, 2, Hq, B};
    REQUIRE(dout->dtype == LOOM_F32 && memcmp(dout->ne, one, sizeof one) == 0,
            "flash_attn_back: dout %s must be f32 [D, Hq, Tq, B] as the forward's output", D(dout));
    if (part == LOOM_FA_BACK_STATS)
        REQUIRE(x->dtype == LOOM_F32 && same_shape(x, dout),
                "flash_attn_back: o %s must be the forward's f32 output, shaped as dout %s",
                D(x), D(dout));
    else
        REQUIRE(x->dtype == LOOM_F32 && memcmp(x->ne, st, sizeof st) == 0,
                "flash_attn_back: stats %s must be f32 [Tq, 2, Hq, B] (the STATS part)", D(x));
    int64_t ne[4];
    if (part == LOOM_FA_BACK_STATS)
        memcpy(ne, st, sizeof ne);
    else if (part == LOOM_FA_BACK_DQ)
        memcpy(ne, q->ne, sizeof ne);
    else
        memcpy(ne, (int64_t[]){Dh, k->ne[1], k->ne[2], 2 * B}, sizeof ne);
    loom_tensor *r = new_node(g, LOOM_OP_FLASH_ATTN_BACK, LOOM_F32, ne, q, k, v);
    if (r) {
        r->src[3] = dout;
        r->src[4] = x;
        r->p.i[3] = (int32_t)part;
        r->p.f[0] = scale;
        r->p.i[1] = causal;
        r->p.i[2] = q_offset;
    }
    return r;
}

/* ---------------- decompositions of fused ops ---------------- */

static loom_tensor *decompose_flash_attn(loom_graph *g, loom_tensor *f) {
    loom_tensor *q = f->src[0], *k = f->src[1], *v = f->src[2];
    /* scores [Tk, Tq, Hq, B]: k broadcasts over query heads exactly as GQA does. */
    loom_tensor *s = loom_matmul(g, k, q);
    loom_tensor *p = loom_softmax(g, s, f->p.f[0], f->p.i[1] != 0, f->p.i[2]);
    loom_tensor *vt = loom_cont(g, loom_transpose(g, v)); /* [Tk, D, Hkv, B] */
    loom_tensor *o = loom_matmul(g, vt, p);               /* [D, Tq, Hq, B] */
    return loom_cont(g, loom_permute(g, o, 0, 2, 1, 3));  /* [D, Hq, Tq, B] */
}

static loom_tensor *expert(loom_graph *g, loom_tensor *w, int64_t e) {
    if (w && loom_dtype_is_nf4(w->dtype)) /* nf4 cannot be sliced: dequantize first */
        w = loom_cpy(g, w, LOOM_F32);
    return loom_slice(g, w, 2, e, 1);
}

static loom_tensor *decompose_moe(loom_graph *g, loom_tensor *f) {
    loom_tensor *x = f->src[0], *logits = f->src[1];
    loom_tensor *gates = loom_moe_gate(g, logits, f->p.i[0]); /* [E, T] */
    loom_tensor *acc = NULL;
    for (int64_t e = 0; e < logits->ne[0]; e++) {
        loom_tensor *h = loom_swiglu(g, loom_matmul(g, expert(g, f->src[2], e), x),
                                     loom_matmul(g, expert(g, f->src[3], e), x));
        loom_tensor *y = loom_matmul(g, expert(g, f->src[4], e), h);
        loom_tensor *ye = loom_mul(g, y, loom_slice(g, gates, 0, e, 1));
        acc = acc ? loom_add(g, acc, ye) : ye;
    }
    return acc;
}

loom_tensor *loom_decompose(loom_graph *g, loom_tensor *f) {
    INPUTS("decompose", f);
    switch (f->op) {
    case LOOM_OP_SWIGLU:
        return loom_mul(g, loom_silu(g, f->src[0]), f->src[1]);
    case LOOM_OP_FLASH_ATTN:
        if (f->p.i[3] != 0) { /* inference only: the pool is not a differentiable tensor */
            loom_graph_fail(g, LOOM_ERR_UNSUPPORTED, "decompose: paged flash_attn has no unfused form");
            return NULL;
        }
        return decompose_flash_attn(g, f);
    case LOOM_OP_MOE:
        return decompose_moe(g, f);
    default:
        loom_graph_fail(g, LOOM_ERR_INVALID_ARG, "decompose: %s is not a fused op",
                        loom_op_name(f->op));
        return NULL;
    }
}
