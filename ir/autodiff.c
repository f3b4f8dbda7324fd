/* ir/autodiff.c - reverse-mode autodiff that emits backward nodes into the
 * same graph, so training runs on every backend with no extra machinery.
 *
 * Tensors are created after their sources, so descending id is a reverse
 * topological order: walking ids downwards from the loss visits every
 * consumer of a tensor before the tensor itself, and its gradient is
 * complete when we reach it. Fused ops (swiglu, moe) are differentiated
 * through their decomposition: the unfused graph is built right here and
 * back-propagated on its own (sub-walk over the new ids). flash_attn has its
 * own fused backward (loom_flash_attn_back), which never holds T x T scores. */
#include "ir/graph_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct ad_ctx {
    loom_graph *g;
    loom_tensor **grad; /* by tensor id; grows with the graph */
    uint8_t *needs;     /* by tensor id: 1 if a gradient must flow into it */
    /* Gradient checkpointing: by tensor id, the recomputed copy of a forward
     * node (remap) and, for a copy, the node it copies (orig). */
    loom_tensor **remap, **orig;
    int cap;
    bool include_inputs;
    int *ck;            /* ids of the LOOM_FLAG_CHECKPOINT tensors, ascending */
    int n_ck, seg_done; /* segments (ck[k], ck[k+1]] with k >= seg_done are recomputed */
} ad_ctx;

static loom_status grow(ad_ctx *c) {
    int n = c->g->n_tensors;
    if (n <= c->cap) return LOOM_OK;
    int cap = n * 2;
    loom_tensor **ng = realloc(c->grad, (size_t)cap * sizeof *ng);
    if (!ng) return loom_graph_fail(c->g, LOOM_ERR_OOM, "backward: out of memory");
    c->grad = ng;
    uint8_t *nn = realloc(c->needs, (size_t)cap);
    if (!nn) return loom_graph_fail(c->g, LOOM_ERR_OOM, "backward: out of memory");
    c->needs = nn;
    loom_tensor **nr = realloc(c->remap, (size_t)cap * sizeof *nr);
    if (!nr) return loom_graph_fail(c->g, LOOM_ERR_OOM, "backward: out of memory");
    c->remap = nr;
    loom_tensor **no = realloc(c->orig, (size_t)cap * sizeof *no);
    if (!no) return loom_graph_fail(c->g, LOOM_ERR_OOM, "backward: out of memory");
    c->orig = no;
    memset(c->grad + c->cap, 0, (size_t)(cap - c->cap) * sizeof *ng);
    memset(c->needs + c->cap, 0, (size_t)(cap - c->cap));
    memset(c->remap + c->cap, 0, (size_t)(cap - c->cap) * sizeof *nr);
    memset(c->orig + c->cap, 0, (size_t)(cap - c->cap) * sizeof *no);
    c->cap = cap;
    return LOOM_OK;
}

/* The tensor a backward rule reads for forward tensor x: its recomputed copy
 * inside a checkpointed segment, else x. */
static loom_tensor *R(const ad_ctx *c, loom_tensor *x) {
    return x && c->remap[x->id] ? c->remap[x->id] : x;
}
/* The forward tensor gradients are keyed by (a copy maps to its original). */
static loom_tensor *O(const ad_ctx *c, loom_tensor *x) {
    return x && c->orig[x->id] ? c->orig[x->id] : x;
}
static bool needs(const ad_ctx *c, loom_tensor *x) {
    return x && c->needs[O(c, x)->id];
}

/* Which sources of op carry gradient (bit i = src[i]). */
static unsigned diff_srcs(loom_op op) {
    switch (op) {
    case LOOM_OP_VIEW:
    case LOOM_OP_SCALE:
    case LOOM_OP_RMS_NORM:
    case LOOM_OP_ROPE:
    case LOOM_OP_SOFTMAX:
    case LOOM_OP_SILU:
    case LOOM_OP_GELU:
    case LOOM_OP_CPY:
    case LOOM_OP_SUM_TO:
    case LOOM_OP_CROSS_ENTROPY:
    case LOOM_OP_GET_ROWS:
    case LOOM_OP_MOE_GATE:
        return 1u;
    case LOOM_OP_ADD:
    case LOOM_OP_MUL:
    case LOOM_OP_MATMUL:
    case LOOM_OP_SWIGLU:
    case LOOM_OP_CONCAT:
        return 3u;
    case LOOM_OP_FLASH_ATTN:
        return 7u;
    case LOOM_OP_MOE:
        return 31u;
    default:
        return 0u; /* backward helper ops: no second-order rules */
    }
}

/* needs[] for every tensor not yet classified, in id order (sources first). */
static void classify(ad_ctx *c, int from) {
    for (int i = from; i < c->g->n_tensors; i++) {
        loom_tensor *t = c->g->tensors[i];
        if (t->op == LOOM_OP_NONE) {
            uint32_t want = LOOM_FLAG_PARAM | (c->include_inputs ? LOOM_FLAG_INPUT : 0u);
            c->needs[i] = (t->flags & want) && loom_dtype_is_float(t->dtype);
            continue;
        }
        unsigned m = diff_srcs(t->op);
        c->needs[i] = 0;
        for (int s = 0; s < LOOM_MAX_SRC; s++)
            if ((m >> s & 1u) && t->src[s] && c->needs[t->src[s]->id]) c->needs[i] = 1;
    }
}

/* grad[t] += d (d has t's shape, f32). */
static loom_status accum(ad_ctx *c, loom_tensor *t, loom_tensor *d) {
    t = O(c, t);
    if (!t || !c->needs[t->id]) return LOOM_OK;
    if (!d) return loom_graph_status(c->g) != LOOM_OK ? loom_graph_status(c->g) : LOOM_ERR_INTERNAL;
    if (!loom_tensor_is_contiguous(d)) d = loom_cont(c->g, d);
    if (d && memcmp(d->ne, t->ne, sizeof d->ne) != 0)
        d = loom_reshape(c->g, d, 4, t->ne); /* same count, e.g. [1] vs [1,1,1,1] */
    LOOM_TRY(grow(c));
    c->grad[t->id] = c->grad[t->id] ? loom_add(c->g, c->grad[t->id], d) : d;
    return loom_graph_status(c->g);
}

static loom_tensor *as_f32(loom_graph *g, loom_tensor *t) {
    return t->dtype == LOOM_F32 ? t : loom_cpy(g, t, LOOM_F32);
}

/* Sum a [K, N, X2, X3] weight gradient down to the weight's [K, N, W2, W3]. */
static loom_tensor *unbroadcast_weight(loom_graph *g, loom_tensor *dw, const loom_tensor *w) {
    int64_t K = dw->ne[0], N = dw->ne[1], X2 = dw->ne[2], X3 = dw->ne[3];
    if (X2 != w->ne[2]) { /* query heads i2 = t + r2*j2 map to weight head j2 */
        dw = loom_reshape_4d(g, dw, K * N, X2 / w->ne[2], w->ne[2], X3);
        dw = loom_sum_to(g, dw, (int64_t[]){K * N, 1, w->ne[2], X3});
        dw = loom_reshape_4d(g, dw, K, N, w->ne[2], X3);
    }
    if (X3 != w->ne[3]) {
        dw = loom_reshape_4d(g, dw, K * N * w->ne[2], X3 / w->ne[3], w->ne[3], 1);
        dw = loom_sum_to(g, dw, (int64_t[]){K * N * w->ne[2], 1, w->ne[3], 1});
        dw = loom_reshape_4d(g, dw, K, N, w->ne[2], w->ne[3]);
    }
    return dw;
}

static loom_status backprop(ad_ctx *c, loom_tensor *root, loom_tensor *droot, int min_id);

/* Gradient of a slice view: dy placed inside zeros of the parent's shape. */
static loom_tensor *unslice(loom_graph *g, loom_tensor *dy, const loom_tensor *parent, int dim,
                            int64_t start) {
    loom_tensor *r = dy;
    int64_t ne[4];
    if (start > 0) {
        memcpy(ne, parent->ne, sizeof ne);
        ne[dim] = start;
        r = loom_concat(g, loom_ir_constant(g, ne, 0.0f), r, dim);
    }
    int64_t tail = parent->ne[dim] - start - dy->ne[dim];
    if (tail > 0) {
        memcpy(ne, parent->ne, sizeof ne);
        ne[dim] = tail;
        r = loom_concat(g, r, loom_ir_constant(g, ne, 0.0f), dim);
    }
    return r;
}

/* FlashAttention-2's backward: per-row statistics (log-sum-exp, dO.O), then
 * dQ and dK/dV, each recomputing the probabilities tile by tile. */
static loom_status flash_attn_backward(ad_ctx *c, loom_tensor *t, loom_tensor *dy) {
    loom_graph *g = c->g;
    loom_tensor *q = t->src[0], *k = t->src[1], *v = t->src[2];
    const float scale = t->p.f[0];
    const bool causal = t->p.i[1] != 0;
    const int32_t q_off = t->p.i[2];
    loom_tensor *st =
        loom_flash_attn_back(g, LOOM_FA_BACK_STATS, q, k, v, dy, t, scale, causal, q_off);
    if (needs(c, q))
        LOOM_TRY(accum(
            c, q, loom_flash_attn_back(g, LOOM_FA_BACK_DQ, q, k, v, dy, st, scale, causal, q_off)));
    if (!needs(c, k) && !needs(c, v)) return loom_graph_status(g);
    loom_tensor *dkv =
        loom_flash_attn_back(g, LOOM_FA_BACK_DKV, q, k, v, dy, st, scale, causal, q_off);
    if (!dkv) return loom_graph_status(g);
    const int64_t B = q->ne[3];
    if (needs(c, k)) LOOM_TRY(accum(c, k, loom_slice(g, dkv, 3, 0, B)));
    return needs(c, v) ? accum(c, v, loom_slice(g, dkv, 3, B, B)) : LOOM_OK;
}

/* A fused node's backward through its unfused equivalent, built here and
 * back-propagated on its own (a sub-walk over the new ids). */
static loom_status via_decomposition(ad_ctx *c, loom_tensor *t, loom_tensor *dy) {
    loom_graph *g = c->g;
    int first_new = g->n_tensors;
    loom_tensor *d = loom_decompose(g, t);
    if (!d) return loom_graph_status(g);
    LOOM_TRY(grow(c));
    classify(c, first_new);
    return backprop(c, d, dy, first_new - 1);
}

static loom_status node_backward(ad_ctx *c, loom_tensor *t, loom_tensor *dy) {
    loom_graph *g = c->g;
    t = R(c, t); /* inside a checkpointed segment: the recomputed node and sources */
    loom_tensor *a = t->src[0], *b = t->src[1];
    bool na = needs(c, a), nb = needs(c, b);
    if (!loom_tensor_is_contiguous(dy)) dy = loom_cont(g, dy);
    switch (t->op) {
    case LOOM_OP_VIEW:
        switch (t->p.i[0]) {
        case 1: /* reshape */
            return accum(c, a, loom_reshape(g, dy, 4, a->ne));
        case 2: { /* permute: undo it */
            int inv[4];
            for (int i = 0; i < 4; i++)
                inv[t->p.i[1 + i]] = i;
            return accum(c, a, loom_permute(g, dy, inv[0], inv[1], inv[2], inv[3]));
        }
        case 3: /* slice */
            return accum(c, a, unslice(g, dy, a, t->p.i[1], t->p.i[2]));
        default:
            return loom_graph_fail(g, LOOM_ERR_UNSUPPORTED,
                                   "backward: gradient through a general strided view ('%s') is "
                                   "not supported; use reshape/permute/slice",
                                   t->name);
        }
    case LOOM_OP_ADD:
        LOOM_TRY(accum(c, a, dy));
        return nb ? accum(c, b, loom_sum_to(g, dy, b->ne)) : LOOM_OK;
    case LOOM_OP_MUL:
        if (na) LOOM_TRY(accum(c, a, loom_mul(g, dy, b)));
        return nb ? accum(c, b, loom_sum_to(g, loom_mul(g, dy, a), b->ne)) : LOOM_OK;
    case LOOM_OP_SCALE:
        return accum(c, a, loom_scale(g, dy, t->p.f[0]));
    case LOOM_OP_MATMUL: { /* y[n,m] = sum_k w[k,n] x[k,m] */
        /* Mixed precision (docs/adr/0041): a matmul whose weight and
         * activation are both f16 or both bf16 is a low-precision one, and
         * so are its two backward matmuls: dy is rounded to that dtype (f16
         * overflows to inf there, which a loss scaler detects) and the
         * products accumulate in f32 as in the forward. Every other matmul
         * keeps f32 gradients and f32 activations. */
        const loom_dtype lp =
            (b->dtype == LOOM_BF16 || b->dtype == LOOM_F16) && a->dtype == b->dtype ? b->dtype
                                                                                    : LOOM_F32;
        loom_tensor *dyl = lp == LOOM_F32 ? dy : loom_cpy(g, dy, lp);
        if (nb) { /* dx[k,m] = sum_n w[k,n] dy[n,m] */
            /* W^T is materialised (the kernels read weights row-major): in the
             * weight's own dtype when it is f16/bf16/f32 (an f16 model's copy
             * is half an f32 one, and exact), through f32 for block-quantized
             * ones (a transposed view of blocks does not exist). */
            loom_tensor *w = loom_dtype_is_quantized(a->dtype) ? as_f32(g, a) : a;
            loom_tensor *wt = loom_cont(g, loom_transpose(g, w));
            LOOM_TRY(accum(c, b, loom_matmul(g, wt, dyl)));
        }
        if (na) { /* dw[k,n] = sum_m x[k,m] dy[n,m] */
            loom_tensor *xt = loom_cont(g, loom_transpose(g, lp == LOOM_F32 ? as_f32(g, b) : b));
            loom_tensor *dyt = loom_cont(g, loom_transpose(g, dyl));
            LOOM_TRY(accum(c, a, unbroadcast_weight(g, loom_matmul(g, xt, dyt), a)));
        }
        return LOOM_OK;
    }
    case LOOM_OP_RMS_NORM:
        return accum(c, a, loom_rms_norm_back(g, a, dy, t->p.f[0]));
    case LOOM_OP_ROPE: {
        loom_rope_params p;
        loom_rope_params_get(t, &p);
        p.inverse = !p.inverse; /* a rotation's transpose is the opposite rotation */
        return accum(c, a, loom_rope(g, dy, b, &p));
    }
    case LOOM_OP_SOFTMAX:
        return accum(c, a, loom_softmax_back(g, t, dy, t->p.f[0]));
    case LOOM_OP_SILU:
        return accum(c, a, loom_silu_back(g, a, dy));
    case LOOM_OP_GELU:
        return accum(c, a, loom_gelu_back(g, a, dy));
    case LOOM_OP_CPY:
        return loom_dtype_is_float(a->dtype) ? accum(c, a, dy) : LOOM_OK;
    case LOOM_OP_CONCAT: {
        int dim = t->p.i[0];
        if (na) LOOM_TRY(accum(c, a, loom_slice(g, dy, dim, 0, a->ne[dim])));
        return nb ? accum(c, b, loom_slice(g, dy, dim, a->ne[dim], b->ne[dim])) : LOOM_OK;
    }
    case LOOM_OP_GET_ROWS:
        return accum(c, a, loom_get_rows_back(g, dy, b, a->ne[1]));
    case LOOM_OP_CROSS_ENTROPY:
        return accum(c, a, loom_cross_entropy_back(g, a, b, dy));
    case LOOM_OP_SUM_TO: /* broadcast dy back over the summed dims */
        return accum(c, a, loom_add(g, loom_ir_constant(g, a->ne, 0.0f), dy));
    case LOOM_OP_MOE_GATE:
        return accum(c, a, loom_moe_gate_back(g, t, dy));
    case LOOM_OP_FLASH_ATTN: /* a form with extra sources goes through the decomposition */
        return t->src[3] ? via_decomposition(c, t, dy) : flash_attn_backward(c, t, dy);
    case LOOM_OP_SWIGLU:
    case LOOM_OP_MOE:
        return via_decomposition(c, t, dy);
    default:
        return loom_graph_fail(g, LOOM_ERR_UNSUPPORTED, "backward: op %s has no backward rule",
                               loom_op_name(t->op));
    }
}

/* A copy of forward node x reading the copies of its sources in the segment
 * being recomputed (leaves and tensors before the segment are shared). */
static loom_status clone_node(ad_ctx *c, loom_tensor *x) {
    loom_graph *g = c->g;
    loom_tensor *r = loom_ir_new_tensor(g, x->dtype, x->ne);
    if (!r) return loom_graph_status(g);
    LOOM_TRY(grow(c));
    r->op = x->op;
    r->p = x->p;
    memcpy(r->nb, x->nb, sizeof r->nb);
    for (int s = 0; s < LOOM_MAX_SRC; s++)
        r->src[s] = R(c, x->src[s]);
    r->view_src = R(c, x->view_src);
    r->view_offs = x->view_offs;
    loom_tensor_set_name(r, "%.36s (recompute)", x->name);
    c->remap[x->id] = r;
    c->orig[r->id] = x;
    c->needs[r->id] = c->needs[x->id];
    return LOOM_OK;
}

/* Before the backward of forward node id i: if it lies in a checkpointed
 * segment (ck[k], ck[k+1]] not recomputed yet, copy the segment's forward
 * nodes now. Their ids follow every backward node made so far, so they run
 * right before this segment's backward and die after it. */
static loom_status enter_segment(ad_ctx *c, int i) {
    int k = c->n_ck - 1;
    while (k >= 0 && c->ck[k] >= i)
        k--; /* the last checkpoint before i */
    if (k < 0 || k + 1 >= c->n_ck || k >= c->seg_done) return LOOM_OK; /* none, or done */
    for (int j = c->ck[k] + 1; j <= c->ck[k + 1]; j++) {
        loom_tensor *x = c->g->tensors[j];
        if (x->op != LOOM_OP_NONE && c->g->in_order[j]) LOOM_TRY(clone_node(c, x));
    }
    c->seg_done = k;
    return LOOM_OK;
}

/* Propagate droot from root down to every tensor with id > min_id that root
 * depends on; tensors at or below min_id only receive gradient. */
static loom_status backprop(ad_ctx *c, loom_tensor *root, loom_tensor *droot, int min_id) {
    loom_graph *g = c->g;
    int top = root->id;
    uint8_t *reach = calloc((size_t)top + 1, 1);
    if (!reach) return loom_graph_fail(g, LOOM_ERR_OOM, "backward: out of memory");
    reach[top] = 1;
    LOOM_TRY(grow(c));
    c->grad[top] = droot;
    loom_status st = LOOM_OK;
    for (int i = top; i > min_id && st == LOOM_OK; i--) {
        loom_tensor *t = g->tensors[i];
        if (!reach[i] || t->op == LOOM_OP_NONE || !c->needs[i] || !c->grad[i]) continue;
        for (int s = 0; s < LOOM_MAX_SRC; s++)
            if (t->src[s] && t->src[s]->id > min_id) reach[t->src[s]->id] = 1;
        if (min_id < 0 && c->n_ck > 1) st = enter_segment(c, i);
        if (st == LOOM_OK) st = node_backward(c, t, c->grad[i]);
    }
    free(reach);
    return st;
}

loom_status loom_graph_backward(loom_graph *g, loom_tensor *loss, bool include_inputs) {
    if (!g || !loss) return LOOM_ERR_INVALID_ARG;
    LOOM_TRY(loom_graph_status(g));
    if (loss->dtype != LOOM_F32 || loom_tensor_nelements(loss) != 1)
        return loom_graph_fail(g, LOOM_ERR_INVALID_ARG,
                               "backward: loss must be an f32 scalar (got %s)",
                               loom_tensor_describe(loss, (char[64]){0}, 64));
    if (loss->id >= g->n_tensors || !g->in_order[loss->id])
        return loom_graph_fail(g, LOOM_ERR_INVALID_ARG,
                               "backward: expand the loss into the graph first");
    int n_forward = g->n_tensors;
    ad_ctx c = {.g = g, .include_inputs = include_inputs};
    c.ck = malloc((size_t)n_forward * sizeof *c.ck);
    if (!c.ck) return loom_graph_fail(g, LOOM_ERR_OOM, "backward: out of memory");
    for (int i = 0; i < n_forward; i++)
        if ((g->tensors[i]->flags & LOOM_FLAG_CHECKPOINT) && g->in_order[i]) c.ck[c.n_ck++] = i;
    c.seg_done = c.n_ck - 1;
    loom_status st = grow(&c);
    if (st == LOOM_OK) {
        classify(&c, 0);
        loom_tensor *seed = loom_ir_constant(g, loss->ne, 1.0f);
        st = seed ? grow(&c) : loom_graph_status(g);
        if (st == LOOM_OK) {
            classify(&c, seed->id);
            st = backprop(&c, loss, seed, -1);
        }
    }
    /* Every gradient is expanded in one pass, so the backward runs in the
     * order it was built (a layer's weight gradients right after its
     * backward), not parameter by parameter. */
    loom_tensor **roots = st == LOOM_OK ? malloc((size_t)n_forward * sizeof *roots) : NULL;
    int n_roots = 0;
    if (st == LOOM_OK && !roots) st = loom_graph_fail(g, LOOM_ERR_OOM, "backward: out of memory");
    for (int i = 0; i < n_forward && st == LOOM_OK; i++) {
        loom_tensor *t = g->tensors[i];
        if (t->op != LOOM_OP_NONE || !c.needs[i] || !c.grad[i]) continue;
        loom_tensor *d = c.grad[i];
        if (d->op == LOOM_OP_NONE || d->op == LOOM_OP_VIEW) /* own storage, never aliased */
            d = loom_cont(g, d);
        if (!d) {
            st = loom_graph_status(g);
            break;
        }
        loom_tensor_set_flags(d, LOOM_FLAG_OUTPUT);
        if (!d->name[0]) loom_tensor_set_name(d, "grad_%s", t->name[0] ? t->name : "t");
        t->grad = d;
        roots[n_roots++] = d;
    }
    if (st == LOOM_OK) st = loom_ir_expand_many(g, roots, n_roots);
    free(roots);
    free(c.grad);
    free(c.needs);
    free(c.remap);
    free(c.orig);
    free(c.ck);
    return st;
}
