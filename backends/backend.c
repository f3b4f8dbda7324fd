/* backends/backend.c - helpers declared in loom/backend.h, for every backend.
 *
 * They sit in the backends layer, below runtime/, so that a backend (the
 * built-in cpu one or a plugin, which links libloom) can report errors
 * without calling into the registry that lists it. */
#include <stdarg.h>
#include <stdio.h>

#include "loom/backend.h"

loom_status loom_backend_fail(loom_backend *be, loom_status s, const char *fmt, ...) {
    if (!be) return s;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(be->error, sizeof be->error, fmt, ap);
    va_end(ap);
    return s;
}

const char *loom_backend_missing_slot(const loom_backend_iface *iface) {
    if (!iface) return "table";
    if (!iface->name || !iface->name[0]) return "name";
    /* In table order; shutdown and synchronize are optional. */
    if (!iface->init) return "init";
    if (!iface->device_info) return "device_info";
    if (!iface->buffer_alloc) return "buffer_alloc";
    if (!iface->buffer_free) return "buffer_free";
    if (!iface->buffer_upload) return "buffer_upload";
    if (!iface->buffer_download) return "buffer_download";
    if (!iface->supports) return "supports";
    if (!iface->compute) return "compute";
    return NULL;
}

loom_status loom_backend_synchronize(loom_backend *be) {
    if (!be || !be->iface) return LOOM_ERR_INVALID_ARG;
    return be->iface->synchronize ? be->iface->synchronize(be) : LOOM_OK;
}
