/* backends/null/loom_backend_null.c - the template for a new backend.
 *
 * Every slot of loom_backend_iface is implemented, each doing the least a
 * real backend must do. By default init reports that there is no device, so
 * the registry lists the backend as unavailable ("template, no device") and
 * it can never run anything by accident. With $LOOM_TEMPLATE_DEVICE=1 it
 * claims a pretend device whose memory is host memory and which runs one op
 * (f32 add of same-shape contiguous tensors): enough for the conformance test
 * (test_backend_conformance --backend <name>) to exercise the whole table.
 *
 * To start a backend "foo":
 *   1. copy this folder to backends/foo/; the build picks it up with no edit
 *      elsewhere: backends/foo/CMakeLists.txt takes the name "foo" from the
 *      folder, declares the option LOOM_FOO (AUTO|ON|OFF), builds
 *      libloom-backend-foo.so next to libloom and compiles this file with
 *      LOOM_BACKEND_NAME="foo"; the registry finds the plugin by that file
 *      name (ADR 0001). Check it: LOOM_TEMPLATE_DEVICE=1
 *      build/test_backend_conformance --backend foo;
 *   2. in init, probe the device (load the driver, pick a device) and return
 *      LOOM_ERR_UNAVAILABLE with a one-line reason when anything is missing;
 *      keep per-device state in be->ctx; drop the LOOM_TEMPLATE_DEVICE part;
 *   3. fill buffers, upload/download, supports and compute; supports must be
 *      honest (the scheduler trusts it and the coverage test checks it);
 *   4. look for the device's toolkit in CMakeLists.txt (AUTO skips quietly
 *      without it, ON fails the configure) and set a priority.
 * Rules for every backend: never print, never abort; put messages in `why`
 * (init) or be->error (everything else) and return a status. Use only
 * loom/backend.h (and lower layers: loom/ir.h, loom/status.h, kernels/),
 * never the registry or the scheduler.
 * Ownership: be->ctx is made by init and freed by shutdown; a loom_buffer and
 * its device memory are made by buffer_alloc and freed by buffer_free. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/backend.h"

/* Set by CMakeLists.txt from the folder name, so a copy needs no edit. */
#ifndef LOOM_BACKEND_NAME
#define LOOM_BACKEND_NAME "null"
#endif

/* Per-device state; a real backend keeps its context, queues, caches here. */
typedef struct null_ctx {
    size_t allocated; /* bytes in live buffers, for device_info */
} null_ctx;

static loom_status null_init(loom_backend *be, char *why, size_t why_n) {
    /* A real backend probes here and only then allocates be->ctx. */
    be->ctx = NULL;
    const char *fake = getenv("LOOM_TEMPLATE_DEVICE");
    if (!fake || strcmp(fake, "1") != 0) {
        snprintf(why, why_n, LOOM_BACKEND_NAME " backend: template, no device");
        return LOOM_ERR_UNAVAILABLE;
    }
    null_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(why, why_n, LOOM_BACKEND_NAME " backend: out of memory");
        return LOOM_ERR_UNAVAILABLE;
    }
    be->ctx = c;
    return LOOM_OK;
}

static void null_shutdown(loom_backend *be) {
    free(be->ctx); /* buffers were freed by their owners before this */
    be->ctx = NULL;
}

static void null_device_info(loom_backend *be, loom_device_info *out) {
    /* Zero first: fields this backend does not know stay 0 / "". */
    *out = (loom_device_info){0};
    snprintf(out->name, sizeof out->name, LOOM_BACKEND_NAME " template device (host memory)");
    snprintf(out->kind, sizeof out->kind, "cpu-emulated");
    const null_ctx *c = be->ctx;
    snprintf(out->features, sizeof out->features, "template; %zu bytes allocated",
             c ? c->allocated : (size_t)0);
}

static loom_status null_buffer_alloc(loom_backend *be, size_t size, loom_buffer **out) {
    /* A real backend allocates device memory, wraps it in a loom_buffer
     * (backend = be, size, host = mapped pointer or NULL, handle = its own)
     * and returns LOOM_ERR_OOM with a message naming the size on failure. */
    *out = NULL;
    if (size == 0)
        return loom_backend_fail(be, LOOM_ERR_INVALID_ARG, LOOM_BACKEND_NAME ": zero-size buffer");
    loom_buffer *b = calloc(1, sizeof *b);
    void *mem = malloc(size);
    if (!b || !mem) {
        free(b);
        free(mem);
        return loom_backend_fail(be, LOOM_ERR_OOM, LOOM_BACKEND_NAME ": cannot allocate %zu bytes",
                                 size);
    }
    b->backend = be;
    b->size = size;
    b->host = mem; /* host-addressable: the runtime may read it directly */
    b->handle = mem;
    ((null_ctx *)be->ctx)->allocated += size;
    *out = b;
    return LOOM_OK;
}

static void null_buffer_free(loom_buffer *b) {
    /* Release the device memory in b->handle, then the struct. NULL is fine. */
    if (!b) return;
    null_ctx *c = b->backend ? b->backend->ctx : NULL;
    if (c) c->allocated -= b->size;
    free(b->handle);
    free(b);
}

/* Every copy is checked against the buffer first: off + n <= size, written
 * so that it cannot overflow. */
static loom_status null_check_range(loom_buffer *b, size_t off, size_t n, const char *what) {
    if (off > b->size || n > b->size - off)
        return loom_backend_fail(b->backend, LOOM_ERR_INVALID_ARG,
                                 LOOM_BACKEND_NAME
                                 ": %s of %zu bytes at %zu outside a %zu-byte buffer",
                                 what, n, off, b->size);
    return LOOM_OK;
}

static loom_status null_buffer_upload(loom_buffer *b, size_t off, const void *src, size_t n) {
    loom_status s = null_check_range(b, off, n, "upload");
    if (s != LOOM_OK) return s;
    if (n) memcpy((char *)b->handle + off, src, n); /* a real backend: host -> device copy */
    return LOOM_OK;
}

static loom_status null_buffer_download(loom_buffer *b, size_t off, void *dst, size_t n) {
    loom_status s = null_check_range(b, off, n, "download");
    if (s != LOOM_OK) return s;
    if (n) memcpy(dst, (const char *)b->handle + off, n); /* device -> host */
    return LOOM_OK;
}

/* The one op the template device runs: f32 a + b, same shape, contiguous. */
static bool null_is_simple_add(const loom_tensor *t) {
    const loom_tensor *a = t->src[0], *b = t->src[1];
    if (t->op != LOOM_OP_ADD || !a || !b) return false;
    if (t->dtype != LOOM_F32 || a->dtype != LOOM_F32 || b->dtype != LOOM_F32) return false;
    for (int d = 0; d < LOOM_MAX_DIMS; d++)
        if (a->ne[d] != t->ne[d] || b->ne[d] != t->ne[d]) return false;
    return loom_tensor_is_contiguous(t) && loom_tensor_is_contiguous(a) &&
           loom_tensor_is_contiguous(b);
}

static bool null_supports(loom_backend *be, const loom_tensor *node) {
    /* Decide from node->op, node->dtype and the sources' dtypes/strides. */
    (void)be;
    return null_is_simple_add(node);
}

/* Where a tensor's bytes are in this backend's memory. */
static float *null_f32(const loom_tensor *t) {
    return (float *)(void *)((char *)t->buffer->handle + t->offset);
}

static loom_status null_compute(loom_backend *be, loom_tensor *const *nodes, int n_nodes) {
    /* Enqueue one kernel per node (tensor data: t->buffer + t->offset; views
     * already carry their storage's buffer and offset). Name the failing node
     * in be->error: "op <op> node '<name>': <why>". */
    for (int i = 0; i < n_nodes; i++) {
        const loom_tensor *t = nodes[i];
        if (!null_is_simple_add(t) || !t->buffer || !t->src[0]->buffer || !t->src[1]->buffer)
            return loom_backend_fail(be, LOOM_ERR_UNSUPPORTED,
                                     "op %s node '%s': " LOOM_BACKEND_NAME " backend cannot run it",
                                     loom_op_name(t->op), t->name);
        float *y = null_f32(t);
        const float *a = null_f32(t->src[0]), *b = null_f32(t->src[1]);
        for (int64_t k = 0, n = loom_tensor_nelements(t); k < n; k++)
            y[k] = a[k] + b[k];
    }
    return LOOM_OK;
}

static loom_status null_synchronize(loom_backend *be) {
    /* Wait for everything enqueued by compute; report device faults here.
     * (Optional slot: a backend whose compute is synchronous may leave it NULL.) */
    (void)be;
    return LOOM_OK;
}

static const loom_backend_iface k_null_iface = {
    .abi_version = LOOM_BACKEND_ABI_VERSION,
    .name = LOOM_BACKEND_NAME,
    .priority = 0, /* below every real backend: never the default */
    .init = null_init,
    .shutdown = null_shutdown,
    .device_info = null_device_info,
    .buffer_alloc = null_buffer_alloc,
    .buffer_free = null_buffer_free,
    .buffer_upload = null_buffer_upload,
    .buffer_download = null_buffer_download,
    .supports = null_supports,
    .compute = null_compute,
    .synchronize = null_synchronize,
};

/* The one exported symbol; the registry finds it with dlsym. The plugin is
 * built with -fvisibility=hidden, so everything else stays private. */
#if defined(__GNUC__)
#define NULL_EXPORT __attribute__((visibility("default")))
#else
#define NULL_EXPORT
#endif
NULL_EXPORT const loom_backend_iface *loom_backend_plugin_entry(void);

const loom_backend_iface *loom_backend_plugin_entry(void) {
    return &k_null_iface;
}
