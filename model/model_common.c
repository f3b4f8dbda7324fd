/* model/model_common.c - small helpers shared by the model sources (declared
 * in model/model_internal.h): the error convention, the list of heap blocks
 * a GGUF writer references until it writes, and the placement of tensors
 * into backend buffers (weights: arch/load.c; KV cache: generate/kv_cache.c). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "model/model_internal.h"

void loom_model_cache_dir(char *buf, size_t n) {
    if (!buf || n == 0) return;
    const char *c = getenv("LOOM_MODEL_CACHE"), *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
    if (c && c[0])
        snprintf(buf, n, "%s", c);
    else if (x && x[0])
        snprintf(buf, n, "%s/loom/models", x);
    else
        snprintf(buf, n, "%s/.cache/loom/models", h && h[0] ? h : ".");
}

loom_tensor *loom_model_mirror(loom_graph *g, const loom_tensor *w) {
    loom_tensor *t = loom_tensor_new(g, w->dtype, 4, w->ne);
    if (!t) return NULL;
    loom_tensor_set_name(t, "%s", w->name);
    t->buffer = w->buffer;
    t->offset = w->offset;
    t->data = w->data;
    return t;
}

loom_status loom_model_vfail(char *err, size_t err_n, loom_status st, const char *fmt, va_list ap) {
    if (err && err_n) vsnprintf(err, err_n, fmt, ap);
    return st;
}

loom_status loom_model_fail(char *err, size_t err_n, loom_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    loom_model_vfail(err, err_n, st, fmt, ap);
    va_end(ap);
    return st;
}

bool loom_blobs_keep(loom_blobs *b, void *p) {
    if (b->n == b->cap) {
        int cap = b->cap ? 2 * b->cap : 64;
        void **v = realloc(b->v, (size_t)cap * sizeof *v);
        if (!v) return false;
        b->v = v;
        b->cap = cap;
    }
    b->v[b->n++] = p;
    return true;
}

void loom_blobs_free(loom_blobs *b) {
    for (int i = 0; i < b->n; i++)
        free(b->v[i]);
    free(b->v);
    b->v = NULL;
    b->n = b->cap = 0;
}

/* ---------------- buffer placement (weights, KV cache) ---------------- */

static size_t align_up(size_t n) {
    return (n + LOOM_W_ALIGN - 1) / LOOM_W_ALIGN * LOOM_W_ALIGN;
}

/* Why greedy in order: it keeps a layer's tensors together and the split is
 * deterministic; a tensor never straddles two buffers. */
loom_status loom_pack_add(loom_pack *pk, size_t nbytes, loom_place *at) {
    if (pk->max && nbytes > pk->max) return LOOM_ERR_UNSUPPORTED;
    size_t off = align_up(pk->end);
    if (pk->n == 0 || (pk->max && (off > pk->max || nbytes > pk->max - off))) {
        if (pk->n == pk->cap) {
            int cap = pk->cap ? 2 * pk->cap : 4;
            size_t *v = realloc(pk->sizes, (size_t)cap * sizeof *v);
            if (!v) return LOOM_ERR_OOM;
            pk->sizes = v;
            pk->cap = cap;
        }
        pk->sizes[pk->n++] = 0;
        off = 0;
    }
    at->buf = pk->n - 1;
    at->off = off;
    pk->end = off + nbytes;
    pk->sizes[pk->n - 1] = pk->end;
    return LOOM_OK;
}

loom_status loom_pack_finish(loom_pack *pk) {
    if (pk->n == 0) {
        loom_place unused;
        LOOM_TRY(loom_pack_add(pk, 0, &unused));
    }
    for (int b = 0; b < pk->n; b++)
        if (pk->sizes[b] == 0) pk->sizes[b] = LOOM_W_ALIGN; /* backends refuse empty buffers */
    return LOOM_OK;
}

void loom_pack_free(loom_pack *pk) {
    free(pk->sizes);
    pk->sizes = NULL;
    pk->n = pk->cap = 0;
}

loom_status loom_alloc_buffers(loom_backend *be, const size_t *sizes, int n, loom_buffer ***out,
                               int *n_out, const char *what, char *err, size_t err_n) {
    *out = calloc((size_t)n, sizeof **out);
    *n_out = 0;
    if (!*out) return loom_model_fail(err, err_n, LOOM_ERR_OOM, "model: out of memory");
    *n_out = n;
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += sizes[i];
    for (int i = 0; i < n; i++) {
        be->error[0] = '\0';
        loom_status st = loom_buffer_alloc(be, sizes[i], &(*out)[i]);
        if (st != LOOM_OK) {
            if (n == 1)
                return loom_model_fail(
                    err, err_n, st, "model: cannot allocate %s (%zu bytes) on %s: %s", what,
                    sizes[i], be->iface->name, be->error[0] ? be->error : loom_status_str(st));
            return loom_model_fail(
                err, err_n, st,
                "model: cannot allocate %s (%zu bytes in %d buffers; buffer %d: %zu bytes) "
                "on %s: %s",
                what, total, n, i, sizes[i], be->iface->name,
                be->error[0] ? be->error : loom_status_str(st));
        }
    }
    return LOOM_OK;
}

loom_tensor *loom_bound_leaf(loom_graph *wg, loom_dtype t, const int64_t ne[4], loom_buffer *b,
                             size_t off, const char *name) {
    loom_tensor *x = loom_tensor_new(wg, t, 4, ne);
    if (!x) return NULL;
    loom_tensor_set_name(x, "%s", name);
    x->buffer = b;
    x->offset = off;
    x->data = b->host ? (char *)b->host + off : NULL;
    return x;
}
