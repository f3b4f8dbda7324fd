/* backends/vulkan/vk_device.c - loading the Vulkan loader, creating the
 * instance and device, and describing the device.
 *
 * The loader is dlopen'ed (libvulkan.so.1) so libloom and the CLI never
 * depend on it. Device choice: discrete > integrated > virtual > CPU; a CPU
 * implementation (Mesa lavapipe) only with LOOM_VULKAN_ALLOW_CPU=1, because
 * it is slower than loom's own cpu backend and exists here for testing. */
#define _GNU_SOURCE

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk_internal.h"

static int loom_vk_type_rank(VkPhysicalDeviceType t) {
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU:
        return 4;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU:
        return 3;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU:
        return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU:
        return 1;
    default:
        return 0;
    }
}

static bool loom_vk_env_on(const char *name) {
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

static bool loom_vk_has_ext(const VkExtensionProperties *e, uint32_t n, const char *name) {
    for (uint32_t i = 0; i < n; i++)
        if (strcmp(e[i].extensionName, name) == 0) return true;
    return false;
}

/* Pick the best device; fills c->phys or returns UNAVAILABLE with why. */
static loom_status loom_vk_pick(loom_vk_ctx *c, char *why, size_t why_n) {
    uint32_t n = 0;
    if (c->f.vkEnumeratePhysicalDevices(c->instance, &n, NULL) != VK_SUCCESS || n == 0) {
        snprintf(why, why_n, "vulkan: no physical devices");
        return LOOM_ERR_UNAVAILABLE;
    }
    VkPhysicalDevice *devs = calloc(n, sizeof *devs);
    if (!devs) {
        snprintf(why, why_n, "vulkan: out of memory");
        return LOOM_ERR_UNAVAILABLE;
    }
    c->f.vkEnumeratePhysicalDevices(c->instance, &n, devs);
    const bool allow_cpu = loom_vk_env_on("LOOM_VULKAN_ALLOW_CPU");
    int best = -1, best_rank = 0;
    char skipped[160] = "";
    for (uint32_t i = 0; i < n; i++) {
        VkPhysicalDeviceProperties p;
        c->f.vkGetPhysicalDeviceProperties(devs[i], &p);
        int rank = loom_vk_type_rank(p.deviceType);
        if (p.apiVersion < VK_API_VERSION_1_2) continue; /* shaders target 1.2 */
        if (p.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU && !allow_cpu) {
            snprintf(skipped, sizeof skipped, "%.120s", p.deviceName);
            continue;
        }
        /* Needs a compute queue. */
        uint32_t nq = 0;
        c->f.vkGetPhysicalDeviceQueueFamilyProperties(devs[i], &nq, NULL);
        VkQueueFamilyProperties qf[16];
        if (nq > 16) nq = 16;
        c->f.vkGetPhysicalDeviceQueueFamilyProperties(devs[i], &nq, qf);
        int fam = -1;
        for (uint32_t q = 0; q < nq && fam < 0; q++)
            if (qf[q].queueFlags & VK_QUEUE_COMPUTE_BIT) fam = (int)q;
        if (fam < 0) continue;
        if (rank > best_rank) {
            best = (int)i;
            best_rank = rank;
            c->queue_family = (uint32_t)fam;
        }
    }
    if (best < 0) {
        if (skipped[0])
            snprintf(
                why, why_n,
                "vulkan: only a CPU implementation (%s); set LOOM_VULKAN_ALLOW_CPU=1 to use it",
                skipped);
        else
            snprintf(why, why_n, "vulkan: no Vulkan 1.2 device with a compute queue");
        free(devs);
        return LOOM_ERR_UNAVAILABLE;
    }
    c->phys = devs[best];
    free(devs);
    return LOOM_OK;
}

static void loom_vk_query(loom_vk_ctx *c, VkPhysicalDeviceFeatures2 *feat2,
                          VkPhysicalDeviceVulkan12Features *f12) {
    c->f.vkGetPhysicalDeviceProperties(c->phys, &c->props);
    c->f.vkGetPhysicalDeviceMemoryProperties(c->phys, &c->memprops);
    VkPhysicalDeviceSubgroupProperties sg = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                      .pNext = &sg};
    c->f.vkGetPhysicalDeviceProperties2(c->phys, &p2);
    c->subgroup_size = sg.subgroupSize;

    *f12 = (VkPhysicalDeviceVulkan12Features){
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
    *feat2 = (VkPhysicalDeviceFeatures2){.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
                                         .pNext = f12};
    c->f.vkGetPhysicalDeviceFeatures2(c->phys, feat2);
    c->fp16 = f12->shaderFloat16;
    c->int8 = f12->shaderInt8;
    c->fp64 = feat2->features.shaderFloat64;
    c->int64 = feat2->features.shaderInt64;
    c->cpu_device = c->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
    /* Host-visible device memory is plentiful only on unified-memory devices
     * (a discrete GPU's BAR window is small): map buffers only there. */
    c->unified = c->cpu_device || c->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU;
    c->max_range = c->props.limits.maxStorageBufferRange;
    c->min_align = c->props.limits.minStorageBufferOffsetAlignment;
    if (c->min_align < 4) c->min_align = 4;

    size_t total = 0;
    for (uint32_t i = 0; i < c->memprops.memoryHeapCount; i++)
        if (c->memprops.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
            total += c->memprops.memoryHeaps[i].size;
    c->mem_total = total;

    uint32_t next = 0;
    c->f.vkEnumerateDeviceExtensionProperties(c->phys, NULL, &next, NULL);
    VkExtensionProperties *ext = calloc(next ? next : 1, sizeof *ext);
    if (ext) {
        c->f.vkEnumerateDeviceExtensionProperties(c->phys, NULL, &next, ext);
        c->coopmat = loom_vk_has_ext(ext, next, "VK_KHR_cooperative_matrix") ||
                     loom_vk_has_ext(ext, next, "VK_NV_cooperative_matrix");
        c->bf16ext = loom_vk_has_ext(ext, next, "VK_KHR_shader_bfloat16");
        free(ext);
    }
}

loom_status loom_vk_device_init(loom_backend *be, loom_vk_ctx *c, char *why, size_t why_n) {
    (void)be;
    c->lib = dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!c->lib) c->lib = dlopen("libvulkan.so", RTLD_NOW | RTLD_LOCAL);
    if (!c->lib) {
        snprintf(why, why_n, "vulkan: libvulkan.so.1 not found");
        return LOOM_ERR_UNAVAILABLE;
    }
    void *sym = dlsym(c->lib, "vkGetInstanceProcAddr");
    if (!sym) {
        snprintf(why, why_n, "vulkan: libvulkan.so.1 has no vkGetInstanceProcAddr");
        return LOOM_ERR_UNAVAILABLE;
    }
    memcpy(&c->f.vkGetInstanceProcAddr, &sym, sizeof sym);
    loom_vk_fns *f = &c->f;
    f->vkCreateInstance = (PFN_vkCreateInstance)f->vkGetInstanceProcAddr(NULL, "vkCreateInstance");
    f->vkEnumerateInstanceVersion = (PFN_vkEnumerateInstanceVersion)f->vkGetInstanceProcAddr(
        NULL, "vkEnumerateInstanceVersion");
    uint32_t api = VK_API_VERSION_1_0;
    if (f->vkEnumerateInstanceVersion) f->vkEnumerateInstanceVersion(&api);
    if (!f->vkCreateInstance || api < VK_API_VERSION_1_2) {
        snprintf(why, why_n, "vulkan: loader too old (needs Vulkan 1.2)");
        return LOOM_ERR_UNAVAILABLE;
    }
    VkApplicationInfo app = {.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
                             .pApplicationName = "loom",
                             .pEngineName = "loom",
                             .apiVersion = VK_API_VERSION_1_2};
    VkInstanceCreateInfo ici = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
                                .pApplicationInfo = &app};
    VkResult r = f->vkCreateInstance(&ici, NULL, &c->instance);
    if (r != VK_SUCCESS) {
        /* No ICD gives VK_ERROR_INCOMPATIBLE_DRIVER (-9). */
        snprintf(why, why_n, "vulkan: vkCreateInstance failed (VkResult %d: no driver?)", (int)r);
        c->instance = VK_NULL_HANDLE;
        return LOOM_ERR_UNAVAILABLE;
    }
#define LOOM_VK_LOAD_I(name)                                                                       \
    f->name = (PFN_##name)f->vkGetInstanceProcAddr(c->instance, #name);                            \
    if (!f->name) {                                                                                \
        snprintf(why, why_n, "vulkan: missing instance function " #name);                          \
        return LOOM_ERR_UNAVAILABLE;                                                               \
    }
    LOOM_VK_INSTANCE_FNS(LOOM_VK_LOAD_I)
#undef LOOM_VK_LOAD_I

    LOOM_TRY(loom_vk_pick(c, why, why_n));
    VkPhysicalDeviceFeatures2 feat2;
    VkPhysicalDeviceVulkan12Features f12;
    loom_vk_query(c, &feat2, &f12);

    /* Enable only what the shaders may use. */
    VkPhysicalDeviceVulkan12Features en12 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
    VkPhysicalDeviceFeatures2 en = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
                                    .pNext = &en12};
    en.features.shaderFloat64 = feat2.features.shaderFloat64;
    en.features.shaderInt64 = feat2.features.shaderInt64;
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                                   .queueFamilyIndex = c->queue_family,
                                   .queueCount = 1,
                                   .pQueuePriorities = &prio};
    VkDeviceCreateInfo dci = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
                              .pNext = &en,
                              .queueCreateInfoCount = 1,
                              .pQueueCreateInfos = &qci};
    r = f->vkCreateDevice(c->phys, &dci, NULL, &c->dev);
    if (r != VK_SUCCESS) {
        snprintf(why, why_n, "vulkan: vkCreateDevice failed on %s (VkResult %d)",
                 c->props.deviceName, (int)r);
        c->dev = VK_NULL_HANDLE;
        return LOOM_ERR_UNAVAILABLE;
    }
#define LOOM_VK_LOAD_D(name)                                                                       \
    f->name = (PFN_##name)f->vkGetDeviceProcAddr(c->dev, #name);                                   \
    if (!f->name) {                                                                                \
        snprintf(why, why_n, "vulkan: missing device function " #name);                            \
        return LOOM_ERR_UNAVAILABLE;                                                               \
    }
    LOOM_VK_DEVICE_FNS(LOOM_VK_LOAD_D)
#undef LOOM_VK_LOAD_D
    f->vkGetDeviceQueue(c->dev, c->queue_family, 0, &c->queue);
    c->force_staging = loom_vk_env_on("LOOM_VULKAN_STAGING");
    c->force_coop = loom_vk_env_on("LOOM_VULKAN_MATMUL_COOP");
    return LOOM_OK;
}

void loom_vk_device_shutdown(loom_vk_ctx *c) {
    if (c->dev) c->f.vkDestroyDevice(c->dev, NULL);
    if (c->instance) c->f.vkDestroyInstance(c->instance, NULL);
    if (c->lib) dlclose(c->lib);
    c->dev = VK_NULL_HANDLE;
    c->instance = VK_NULL_HANDLE;
    c->lib = NULL;
}

void loom_vk_device_info(loom_backend *be, loom_device_info *out) {
    loom_vk_ctx *c = be->ctx;
    memset(out, 0, sizeof *out);
    if (!c) return;
    snprintf(out->name, sizeof out->name, "%.127s", c->props.deviceName);
    snprintf(out->kind, sizeof out->kind, "%s", c->cpu_device ? "cpu-emulated" : "gpu");
    out->mem_total = c->mem_total;
    out->fp16 = c->fp16;
    out->int8 = c->int8;
    out->bf16 = false; /* bf16 is converted bit-wise in the shaders */
    out->subgroup_size = (int)c->subgroup_size;
    uint32_t v = c->props.apiVersion;
    snprintf(out->features, sizeof out->features,
             "vulkan=%u.%u coopmat=%s bf16=%s fp64=%s subgroup=%u shared=%uK "
             "max_storage_range=%lluM",
             VK_API_VERSION_MAJOR(v), VK_API_VERSION_MINOR(v), c->coopmat ? "yes" : "no",
             c->bf16ext ? "yes" : "no", c->fp64 ? "yes" : "no", c->subgroup_size,
             c->props.limits.maxComputeSharedMemorySize / 1024,
             (unsigned long long)(c->max_range >> 20));
}
