/* backends/vulkan/loom_backend_vulkan.c - the "vulkan" backend vtable.
 *
 * Priority 200 (below cuda/hip, above cpu). init loads the loader, picks
 * device be->device (vulkan:0, vulkan:1, ...: device_count says how many;
 * docs/adr/0042) and builds the shared pipeline layout; any failure leaves the
 * backend "unavailable" with a one-line reason and nothing allocated.
 * compute records one command buffer for the whole slice and submits it,
 * waiting on a fence before returning (so synchronize has nothing left to
 * wait for); see vk_pipeline.c for barriers and vk_ops.c for the ops.
 * Ownership: be->ctx (loom_vk_ctx) is made by init and freed by shutdown. */
#include <stdio.h>
#include <stdlib.h>

#include "vk_internal.h"

static void vulkan_shutdown(loom_backend *be) {
    loom_vk_ctx *c = be->ctx;
    if (!c) return;
    loom_vk_pipeline_shutdown(c);
    loom_vk_device_shutdown(c);
    free(c);
    be->ctx = NULL;
}

static loom_status vulkan_init(loom_backend *be, char *why, size_t why_n) {
    loom_vk_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(why, why_n, "vulkan: out of memory");
        return LOOM_ERR_UNAVAILABLE;
    }
    be->ctx = c;
    be->error[0] = '\0';
    loom_status st = loom_vk_device_init(be, c, why, why_n);
    if (st == LOOM_OK) {
        st = loom_vk_pipeline_init(be, c);
        if (st != LOOM_OK) {
            snprintf(why, why_n, "%s", be->error);
            st = LOOM_ERR_UNAVAILABLE;
        }
    }
    if (st != LOOM_OK) vulkan_shutdown(be);
    return st;
}

static loom_status vulkan_synchronize(loom_backend *be) {
    return loom_vk_flush(be);
}

/* Every usable physical device times LOOM_VULKAN_LOGICAL_DEVICES; the
 * registry makes an instance per device (vk_device.c picks it by
 * be->device). */
static int vulkan_device_count(loom_backend *be) {
    const loom_vk_ctx *c = be->ctx;
    return c ? c->n_devices : 0;
}

static const loom_backend_iface k_vulkan_iface = {
    .abi_version = LOOM_BACKEND_ABI_VERSION,
    .name = "vulkan",
    .priority = 200,
    .init = vulkan_init,
    .shutdown = vulkan_shutdown,
    .device_info = loom_vk_device_info,
    .buffer_alloc = loom_vk_buffer_alloc,
    .buffer_free = loom_vk_buffer_free,
    .buffer_upload = loom_vk_buffer_upload,
    .buffer_download = loom_vk_buffer_download,
    .supports = loom_vk_supports,
    .compute = loom_vk_compute,
    .synchronize = vulkan_synchronize,
    .device_count = vulkan_device_count,
};

__attribute__((visibility("default"))) const loom_backend_iface *loom_backend_plugin_entry(void);

const loom_backend_iface *loom_backend_plugin_entry(void) {
    return &k_vulkan_iface;
}
