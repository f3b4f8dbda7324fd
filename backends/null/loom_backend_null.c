/* backends/null/loom_backend_null.c - the template for a new backend.
 *
 * Every entry of loom_backend_iface is implemented, each doing the least a
 * real backend must do, and init reports that there is no device, so the
 * registry lists "null" as unavailable. To start a backend "foo":
 *   1. copy this file to backends/foo/loom_backend_foo.c and rename null_ -> foo_;
 *   2. in init, probe the device (load the driver, pick a device) and return
 *      LOOM_ERR_UNAVAILABLE with a one-line reason when anything is missing;
 *      keep per-device state in be->ctx;
 *   3. fill buffers, upload/download, supports and compute; supports must be
 *      honest (the scheduler trusts it and the coverage test checks it);
 *   4. build it as a MODULE library named libloom-backend-foo.so next to
 *      libloom, linking loom (for loom_backend_fail).
 * Rules for every backend: never print, never abort; put messages in `why`
 * (init) or be->error (everything else) and return a status.
 * Ownership: be->ctx is made by init and freed by shutdown; a loom_buffer and
 * its device memory are made by buffer_alloc and freed by buffer_free. */
#include <stdio.h>
#include <stdlib.h>

#include "loom/backend.h"

/* Per-device state; a real backend keeps its context, queues, caches here. */
typedef struct null_ctx {
    int device; /* placeholder */
} null_ctx;

static loom_status null_init(loom_backend *be, char *why, size_t why_n) {
    /* A real backend probes here and only then allocates be->ctx. */
    be->ctx = NULL;
    snprintf(why, why_n, "null backend: template, no device");
    return LOOM_ERR_UNAVAILABLE;
}

static void null_shutdown(loom_backend *be) {
    free(be->ctx); /* buffers were freed by their owners before this */
    be->ctx = NULL;
}

static void null_device_info(loom_backend *be, loom_device_info *out) {
    (void)be;
    *out = (loom_device_info){0};
    snprintf(out->name, sizeof out->name, "null device");
    snprintf(out->kind, sizeof out->kind, "none");
}

static loom_status null_buffer_alloc(loom_backend *be, size_t size, loom_buffer **out) {
    /* A real backend allocates device memory, wraps it in a loom_buffer
     * (backend = be, size, host = mapped pointer or NULL, handle = its own)
     * and returns LOOM_ERR_OOM with a message naming the size on failure. */
    *out = NULL;
    return loom_backend_fail(be, LOOM_ERR_UNSUPPORTED,
                             "null backend: buffer_alloc(%zu) unimplemented", size);
}

static void null_buffer_free(loom_buffer *b) {
    /* Release the device memory in b->handle, then the struct. NULL is fine. */
    free(b);
}

static loom_status null_buffer_upload(loom_buffer *b, size_t off, const void *src, size_t n) {
    /* A real backend checks off + n <= b->size first (LOOM_ERR_INVALID_ARG). */
    (void)off;
    (void)src;
    return loom_backend_fail(b->backend, LOOM_ERR_UNSUPPORTED,
                             "null backend: upload of %zu bytes unimplemented", n);
}

static loom_status null_buffer_download(loom_buffer *b, size_t off, void *dst, size_t n) {
    (void)off;
    (void)dst;
    return loom_backend_fail(b->backend, LOOM_ERR_UNSUPPORTED,
                             "null backend: download of %zu bytes unimplemented", n);
}

static bool null_supports(loom_backend *be, const loom_tensor *node) {
    /* Decide from node->op, node->dtype and the sources' dtypes/strides. */
    (void)be;
    (void)node;
    return false;
}

static loom_status null_compute(loom_backend *be, loom_tensor *const *nodes, int n_nodes) {
    /* Enqueue one kernel per node (tensor data: t->buffer + t->offset; views
     * already carry their storage's buffer and offset). Name the failing node
     * in be->error: "op <op> node '<name>': <why>". */
    if (n_nodes <= 0) return LOOM_OK;
    return loom_backend_fail(be, LOOM_ERR_UNSUPPORTED,
                             "op %s node '%s': null backend computes nothing",
                             loom_op_name(nodes[0]->op), nodes[0]->name);
}

static loom_status null_synchronize(loom_backend *be) {
    /* Wait for everything enqueued by compute; report device faults here. */
    (void)be;
    return LOOM_OK;
}

static const loom_backend_iface k_null_iface = {
    .abi_version = LOOM_BACKEND_ABI_VERSION,
    .name = "null",
    .priority = 0,
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

/* The one exported symbol; the registry finds it with dlsym. */
#if defined(__GNUC__)
#define NULL_EXPORT __attribute__((visibility("default")))
#else
#define NULL_EXPORT
#endif
NULL_EXPORT const loom_backend_iface *loom_backend_plugin_entry(void);

const loom_backend_iface *loom_backend_plugin_entry(void) {
    return &k_null_iface;
}
