/* ir/graph.c - graph lifetime, tensors, views and execution order.
 * Op constructors live in ir/ops.c; autodiff in ir/autodiff.c. */
#include "ir/graph_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

loom_status loom_graph_new(loom_graph **out) {
    if (!out) return LOOM_ERR_INVALID_ARG;
    *out = calloc(1, sizeof(loom_graph));
    return *out ? LOOM_OK : LOOM_ERR_OOM;
}

void loom_graph_free(loom_graph *g) {
    if (!g) return;
    for (int i = 0; i < g->n_tensors; i++)
        free(g->tensors[i]);
    free(g->tensors);
    for (int i = 0; i < g->n_blobs; i++)
        free(g->blobs[i]);
    free(g->blobs);
    free(g->nodes);
    free(g->in_order);
    free(g);
}

loom_status loom_graph_status(const loom_graph *g) {
    return g ? g->status : LOOM_ERR_INVALID_ARG;
}

const char *loom_graph_error(const loom_graph *g) {
    return g ? g->error : "no graph";
}

loom_status loom_graph_fail(loom_graph *g, loom_status s, const char *fmt, ...) {
    if (g && g->status == LOOM_OK) {
        g->status = s;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g->error, sizeof g->error, fmt, ap);
        va_end(ap);
    }
    return s;
}

/* ---------------- tensors ---------------- */

/* Canonical contiguous strides. nf4 has no per-element byte stride: nb[0] is 1
 * and nb[1] counts only the code bytes (the absmax section follows all codes). */
void loom_ir_contiguous_strides(loom_dtype t, const int64_t *ne, size_t *nb) {
    if (loom_dtype_is_nf4(t)) {
        nb[0] = 1;
        nb[1] = (size_t)ne[0] / 2;
    } else {
        nb[0] = loom_dtype_block_bytes(t);
        nb[1] = nb[0] * (size_t)(ne[0] / loom_dtype_block_size(t));
    }
    nb[2] = nb[1] * (size_t)ne[1];
    nb[3] = nb[2] * (size_t)ne[2];
}

loom_tensor *loom_ir_new_tensor(loom_graph *g, loom_dtype t, const int64_t ne[4]) {
    if (!g || g->status != LOOM_OK) return NULL;
    if ((int)t < 0 || t >= LOOM_DTYPE_COUNT) {
        loom_graph_fail(g, LOOM_ERR_INVALID_ARG, "tensor: unknown dtype %d", (int)t);
        return NULL;
    }
    int64_t n = 1;
    for (int i = 0; i < LOOM_MAX_DIMS; i++) {
        if (ne[i] <= 0 || ne[i] > ((int64_t)1 << 40) || n > ((int64_t)1 << 46) / ne[i]) {
            loom_graph_fail(g, LOOM_ERR_INVALID_ARG,
                            "tensor: extents [%lld,%lld,%lld,%lld] must be positive and "
                            "at most 2^46 elements in all",
                            (long long)ne[0], (long long)ne[1], (long long)ne[2], (long long)ne[3]);
            return NULL;
        }
        n *= ne[i];
    }
    int64_t bs = loom_dtype_block_size(t);
    if (loom_dtype_is_nf4(t) ? (ne[0] % 2 != 0 || n % bs != 0) : (ne[0] % bs != 0)) {
        loom_graph_fail(
            g, LOOM_ERR_INVALID_ARG, "tensor: %s needs ne[0] (%lld) to be a multiple of %lld%s",
            loom_dtype_name(t), (long long)ne[0], (long long)bs,
            loom_dtype_is_nf4(t) ? " (nf4: even ne[0], element count multiple of 64)" : "");
        return NULL;
    }
    if (g->n_tensors == g->cap_tensors) {
        int cap = g->cap_tensors ? 2 * g->cap_tensors : 64;
        loom_tensor **nt = realloc(g->tensors, (size_t)cap * sizeof *nt);
        uint8_t *no = realloc(g->in_order, (size_t)cap);
        if (no) g->in_order = no;
        if (!nt || !no) {
            if (nt) g->tensors = nt;
            loom_graph_fail(g, LOOM_ERR_OOM, "tensor: out of memory growing graph");
            return NULL;
        }
        g->tensors = nt;
        g->cap_tensors = cap;
    }
    loom_tensor *x = calloc(1, sizeof *x);
    if (!x) {
        loom_graph_fail(g, LOOM_ERR_OOM, "tensor: out of memory");
        return NULL;
    }
    x->dtype = t;
    memcpy(x->ne, ne, sizeof x->ne);
    loom_ir_contiguous_strides(t, ne, x->nb);
    x->id = g->n_tensors;
    x->backend_id = -1;
    g->in_order[g->n_tensors] = 0;
    g->tensors[g->n_tensors++] = x;
    return x;
}

loom_tensor *loom_tensor_new(loom_graph *g, loom_dtype t, int n_dims, const int64_t *ne) {
    if (!g || g->status != LOOM_OK) return NULL;
    if (n_dims < 1 || n_dims > LOOM_MAX_DIMS || !ne) {
        loom_graph_fail(g, LOOM_ERR_INVALID_ARG, "tensor: n_dims must be 1..4 (got %d)", n_dims);
        return NULL;
    }
    int64_t e[4] = {1, 1, 1, 1};
    for (int i = 0; i < n_dims; i++)
        e[i] = ne[i];
    return loom_ir_new_tensor(g, t, e);
}

loom_tensor *loom_tensor_1d(loom_graph *g, loom_dtype t, int64_t ne0) {
    int64_t ne[4] = {ne0, 1, 1, 1};
    return loom_tensor_new(g, t, 4, ne);
}
loom_tensor *loom_tensor_2d(loom_graph *g, loom_dtype t, int64_t ne0, int64_t ne1) {
    int64_t ne[4] = {ne0, ne1, 1, 1};
    return loom_tensor_new(g, t, 4, ne);
}
loom_tensor *loom_tensor_3d(loom_graph *g, loom_dtype t, int64_t ne0, int64_t ne1, int64_t ne2) {
    int64_t ne[4] = {ne0, ne1, ne2, 1};
    return loom_tensor_new(g, t, 4, ne);
}
loom_tensor *loom_tensor_4d(loom_graph *g, loom_dtype t, int64_t ne0, int64_t ne1, int64_t ne2,
                            int64_t ne3) {
    int64_t ne[4] = {ne0, ne1, ne2, ne3};
    return loom_tensor_new(g, t, 4, ne);
}

loom_tensor *loom_tensor_set_name(loom_tensor *t, const char *fmt, ...) {
    if (!t) return NULL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    return t;
}

loom_tensor *loom_tensor_set_flags(loom_tensor *t, uint32_t flags) {
    if (t) t->flags |= flags;
    return t;
}

int64_t loom_tensor_nelements(const loom_tensor *t) {
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

bool loom_tensor_is_contiguous(const loom_tensor *t) {
    size_t nb[4];
    loom_ir_contiguous_strides(t->dtype, t->ne, nb);
    if (loom_dtype_is_nf4(t->dtype) && t->view_src && t->view_offs != 0) return false;
    for (int i = 0; i < LOOM_MAX_DIMS; i++)
        if (t->ne[i] > 1 && t->nb[i] != nb[i]) return false;
    return true;
}

size_t loom_tensor_nbytes(const loom_tensor *t) {
    if (loom_tensor_is_contiguous(t)) return loom_dtype_nbytes(t->dtype, loom_tensor_nelements(t));
    /* Span of a strided view: the last element's end. */
    size_t bytes = (size_t)(t->ne[0] / loom_dtype_block_size(t->dtype)) * t->nb[0];
    if (loom_dtype_block_size(t->dtype) == 1)
        bytes = (size_t)(t->ne[0] - 1) * t->nb[0] + loom_dtype_block_bytes(t->dtype);
    for (int i = 1; i < LOOM_MAX_DIMS; i++)
        bytes += (size_t)(t->ne[i] - 1) * t->nb[i];
    return bytes;
}

int loom_tensor_ndims(const loom_tensor *t) {
    for (int i = LOOM_MAX_DIMS - 1; i > 0; i--)
        if (t->ne[i] > 1) return i + 1;
    return 1;
}

loom_tensor *loom_tensor_storage(loom_tensor *t) {
    return t && t->view_src ? t->view_src : t;
}

char *loom_tensor_describe(const loom_tensor *t, char *buf, size_t n) {
    if (!buf || n == 0) return buf;
    if (!t) {
        snprintf(buf, n, "(null)");
        return buf;
    }
    int w =
        snprintf(buf, n, "%s[%lld,%lld,%lld,%lld]", loom_dtype_name(t->dtype), (long long)t->ne[0],
                 (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3]);
    if (w > 0 && (size_t)w < n && !loom_tensor_is_contiguous(t))
        snprintf(buf + w, n - (size_t)w, "{strided}");
    return buf;
}

loom_status loom_tensor_set_host_data(loom_tensor *t, void *data) {
    if (!t || !data || t->op != LOOM_OP_NONE || t->view_src) return LOOM_ERR_INVALID_ARG;
    t->data = data;
    t->buffer = NULL;
    t->offset = 0;
    return LOOM_OK;
}

loom_tensor *loom_ir_constant(loom_graph *g, const int64_t ne[4], float value) {
    loom_tensor *t = loom_ir_new_tensor(g, LOOM_F32, ne);
    if (!t) return NULL;
    if (g->n_blobs == g->cap_blobs) {
        int cap = g->cap_blobs ? 2 * g->cap_blobs : 8;
        void **nb = realloc(g->blobs, (size_t)cap * sizeof *nb);
        if (!nb) {
            loom_graph_fail(g, LOOM_ERR_OOM, "constant: out of memory");
            return NULL;
        }
        g->blobs = nb;
        g->cap_blobs = cap;
    }
    int64_t n = loom_tensor_nelements(t);
    float *data = malloc((size_t)n * sizeof *data);
    if (!data) {
        loom_graph_fail(g, LOOM_ERR_OOM, "constant: out of memory for %lld floats", (long long)n);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++)
        data[i] = value;
    g->blobs[g->n_blobs++] = data;
    t->data = data;
    loom_tensor_set_name(t, "const_%g", value);
    return t;
}

/* ---------------- execution order ---------------- */

static loom_status push_node(loom_graph *g, loom_tensor *t) {
    if (g->n_nodes == g->cap_nodes) {
        int cap = g->cap_nodes ? 2 * g->cap_nodes : 64;
        loom_tensor **nn = realloc(g->nodes, (size_t)cap * sizeof *nn);
        if (!nn) return loom_graph_fail(g, LOOM_ERR_OOM, "graph: out of memory growing node list");
        g->nodes = nn;
        g->cap_nodes = cap;
    }
    g->nodes[g->n_nodes++] = t;
    return LOOM_OK;
}

/* Tensors are created after their sources, so ascending id is already a
 * topological order: mark everything t reaches, then append the marked
 * non-leaf tensors not yet in the order, by id. No recursion, so graph depth
 * (hundreds of layers) cannot overflow the stack. */
loom_status loom_graph_expand(loom_graph *g, loom_tensor *t) {
    return loom_ir_expand_many(g, &t, 1);
}

/* The union of the roots' dependencies is pushed in id order (a topological
 * order) in one pass: expanding roots one at a time would run each root's
 * closure before the next root's, keeping tensors alive longer than the
 * graph's own order needs (e.g. every layer's weight gradient at the end of a
 * backward pass, with their inputs alive until then). */
loom_status loom_ir_expand_many(loom_graph *g, loom_tensor *const *ts, int n) {
    if (!g) return LOOM_ERR_INVALID_ARG;
    if (g->status != LOOM_OK) return g->status;
    int top = -1;
    for (int k = 0; k < n; k++) {
        loom_tensor *t = ts[k];
        if (!t || t->id < 0 || t->id >= g->n_tensors || g->tensors[t->id] != t)
            return loom_graph_fail(g, LOOM_ERR_INVALID_ARG,
                                   "expand: tensor is not part of this graph");
        if (t->id > top) top = t->id;
    }
    if (top < 0) return LOOM_OK;
    uint8_t *mark = calloc((size_t)g->n_tensors, 1);
    if (!mark) return loom_graph_fail(g, LOOM_ERR_OOM, "expand: out of memory");
    for (int k = 0; k < n; k++)
        mark[ts[k]->id] = 1;
    for (int i = top; i >= 0; i--) {
        if (!mark[i] || g->in_order[i]) continue;
        loom_tensor *x = g->tensors[i];
        for (int s = 0; s < LOOM_MAX_SRC; s++)
            if (x->src[s]) mark[x->src[s]->id] = 1;
        if (x->view_src) mark[x->view_src->id] = 1;
    }
    loom_status st = LOOM_OK;
    for (int i = 0; i <= top && st == LOOM_OK; i++) {
        if (!mark[i] || g->in_order[i] || g->tensors[i]->op == LOOM_OP_NONE) continue;
        g->in_order[i] = 1;
        st = push_node(g, g->tensors[i]);
    }
    free(mark);
    return st;
}

int loom_graph_n_nodes(const loom_graph *g) {
    return g ? g->n_nodes : 0;
}
loom_tensor *loom_graph_node(const loom_graph *g, int i) {
    return g && i >= 0 && i < g->n_nodes ? g->nodes[i] : NULL;
}
int loom_graph_n_tensors(const loom_graph *g) {
    return g ? g->n_tensors : 0;
}
loom_tensor *loom_graph_tensor(const loom_graph *g, int i) {
    return g && i >= 0 && i < g->n_tensors ? g->tensors[i] : NULL;
}
