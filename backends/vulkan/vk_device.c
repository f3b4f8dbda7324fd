/* backends/vulkan/vk_device.c - loading the Vulkan loader, creating the
 * instance and device, and describing the device.
 *
 * The loader is dlopen'ed (libvulkan.so.1) so libloom and the CLI never
 * depend on it. Device choice: discrete > integrated > virtual > CPU; a CPU
 * implementation (Mesa lavapipe) only with LOOM_VULKAN_ALLOW_CPU=1, because
 * it is slower than loom's own cpu backend and exists here for testing.
 * Several devices (ADR 0042): the backend exposes every usable physical
 * device, best first, as vulkan:0, vulkan:1, ...; each registry instance
 * creates its own VkInstance and VkDevice for its own device, so instances
 * share nothing. */
#define _GNU_SOURCE

#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk_internal.h"

/* Sanitizer builds keep the Vulkan loader and driver mapped until exit.
 * Mesa 22.3's lavapipe, on AMD processors, stores a 128-byte block from its
 * CPU detection (pthread_once -> realloc) in a global and never frees it.
 * LeakSanitizer scans at exit, after vkDestroyInstance has let the loader
 * dlclose the driver: the global is gone, the block counts as a direct leak
 * from "<unknown module>", and the ASan pass depended on the host's CPU
 * vendor. Pinned (RTLD_NODELETE), the driver's globals are still scanned, so
 * the block is reachable as it really is, no suppression is needed, and a
 * leak from the driver that is truly unreferenced would still be reported
 * with symbolized frames. Leaks in loom's own code are unaffected (ctest
 * lsan_canary). Release builds unload the driver as before. */
#if defined(__SANITIZE_ADDRESS__)
#define LOOM_VK_PIN_DRIVER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LOOM_VK_PIN_DRIVER 1
#endif
#endif

#ifdef LOOM_VK_PIN_DRIVER
typedef struct pin_walk {
    int index, from;
} pin_walk;

static int loom_vk_count_objs(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)info;
    (void)size;
    ++*(int *)arg;
    return 0;
}

/* The link map lists objects in load order, so everything the loader brought
 * in (itself, the ICDs and their dependencies) comes after the first
 * `from` entries. Pinning a few older objects too, should one have been
 * unloaded meanwhile, is harmless. */
static int loom_vk_pin_obj(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)size;
    pin_walk *w = arg;
    if (w->index++ < w->from || !info->dlpi_name || !info->dlpi_name[0]) return 0;
    void *h = dlopen(info->dlpi_name, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
    if (h) dlclose(h); /* drops our reference; NODELETE keeps the mapping */
    return 0;
}
#endif

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

/* LOOM_VULKAN_LOGICAL_DEVICES=k (1..8, default 1): open every physical
 * device k times, as k logical devices (one VkDevice each, with its own
 * queue and memory). For testing several devices of one kind on a machine
 * with one (ADR 0042): a tensor read on the other logical device is really
 * copied. */
static loom_status loom_vk_logical(int *out, char *why, size_t why_n) {
    *out = 1;
    const char *v = getenv("LOOM_VULKAN_LOGICAL_DEVICES");
    if (!v || !*v) return LOOM_OK;
    if (v[0] < '1' || v[0] > '8' || v[1]) {
        snprintf(why, why_n, "vulkan: LOOM_VULKAN_LOGICAL_DEVICES='%.32s' is not a count 1..8", v);
        return LOOM_ERR_UNAVAILABLE;
    }
    *out = v[0] - '0';
    return LOOM_OK;
}

/* Usable physical devices, best first (discrete > integrated > virtual >
 * CPU; the driver's order among equals): device d of the backend is the
 * (d / logical)-th. Fills c->phys, c->queue_family and c->n_devices for
 * device `device`, or returns UNAVAILABLE with why. */
static loom_status loom_vk_pick(loom_vk_ctx *c, int device, char *why, size_t why_n) {
    LOOM_TRY(loom_vk_logical(&c->logical, why, why_n));
    uint32_t n = 0;
    if (c->f.vkEnumeratePhysicalDevices(c->instance, &n, NULL) != VK_SUCCESS || n == 0) {
        snprintf(why, why_n, "vulkan: no physical devices");
        return LOOM_ERR_UNAVAILABLE;
    }
    VkPhysicalDevice *devs = calloc(n, sizeof *devs);
    int *rank = calloc(n, sizeof *rank), *fam = calloc(n, sizeof *fam);
    if (!devs || !rank || !fam) {
        free(devs);
        free(rank);
        free(fam);
        snprintf(why, why_n, "vulkan: out of memory");
        return LOOM_ERR_UNAVAILABLE;
    }
    c->f.vkEnumeratePhysicalDevices(c->instance, &n, devs);
    const bool allow_cpu = loom_vk_env_on("LOOM_VULKAN_ALLOW_CPU");
    int n_usable = 0;
    char skipped[160] = "";
    for (uint32_t i = 0; i < n; i++) {
        VkPhysicalDeviceProperties p;
        c->f.vkGetPhysicalDeviceProperties(devs[i], &p);
        rank[i] = 0;                                     /* unusable */
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
        fam[i] = -1;
        for (uint32_t q = 0; q < nq && fam[i] < 0; q++)
            if (qf[q].queueFlags & VK_QUEUE_COMPUTE_BIT) fam[i] = (int)q;
        if (fam[i] < 0) continue;
        rank[i] = loom_vk_type_rank(p.deviceType); /* 0 (other type): not used */
        n_usable += rank[i] > 0;
    }
    c->n_devices = n_usable * c->logical;
    const int want = device / c->logical;
    c->logical_index = device % c->logical;
    int pick = -1;
    /* The want-th usable device in rank order (stable among equal ranks). */
    for (int r = 4, k = 0; r >= 1 && pick < 0; r--)
        for (uint32_t i = 0; i < n && pick < 0; i++)
            if (rank[i] == r && k++ == want) pick = (int)i;
    if (pick >= 0) {
        c->phys = devs[pick];
        c->queue_family = (uint32_t)fam[pick];
    }
    free(devs);
    free(rank);
    free(fam);
    if (pick >= 0) return LOOM_OK;
    if (n_usable > 0)
        snprintf(why, why_n, "vulkan: no device %d (%d usable)", device, c->n_devices);
    else if (skipped[0])
        snprintf(why, why_n,
                 "vulkan: only a CPU implementation (%s); set LOOM_VULKAN_ALLOW_CPU=1 to use it",
                 skipped);
    else
        snprintf(why, why_n, "vulkan: no Vulkan 1.2 device with a compute queue");
    return LOOM_ERR_UNAVAILABLE;
}

/* VK_KHR_cooperative_matrix (Vulkan headers >= 1.3.255 declare these; the
 * values below are the registry's, for older headers). */
#ifndef VK_KHR_cooperative_matrix
#define LOOM_VK_STYPE_COOP_PROPS_KHR ((VkStructureType)1000506001)
typedef struct loom_vk_coop_props {
    VkStructureType sType;
    void *pNext;
    uint32_t MSize, NSize, KSize;
    int32_t AType, BType, CType, ResultType; /* VkComponentTypeKHR */
    VkBool32 saturatingAccumulation;
    int32_t scope; /* VkScopeKHR: 3 = subgroup */
} loom_vk_coop_props;
#else
#define LOOM_VK_STYPE_COOP_PROPS_KHR VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_KHR
typedef VkCooperativeMatrixPropertiesKHR loom_vk_coop_props;
#endif
typedef VkResult(VKAPI_PTR *loom_vk_coop_fn)(VkPhysicalDevice, uint32_t *, loom_vk_coop_props *);

static const char *loom_vk_ctype(int32_t t) {
    static const char *const names[] = {"f16", "f32", "f64", "s8",  "s16", "s32",
                                        "s64", "u8",  "u16", "u32", "u64"};
    return t >= 0 && t < 11 ? names[t] : "?";
}

/* Record how many cooperative-matrix shapes the device offers and the
 * f16 x f16 -> f32 one a matmul would use (the first such, subgroup scope). */
static void loom_vk_coop_query(loom_vk_ctx *c, const char *kind) {
    snprintf(c->coop_desc, sizeof c->coop_desc, "%s", kind);
    PFN_vkVoidFunction fp = c->f.vkGetInstanceProcAddr(
        c->instance, "vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR");
    if (!fp) return;
    loom_vk_coop_fn fn;
    memcpy(&fn, &fp, sizeof fn);
    uint32_t n = 0;
    if (fn(c->phys, &n, NULL) != VK_SUCCESS || n == 0) return;
    if (n > 64) n = 64;
    loom_vk_coop_props *p = calloc(n, sizeof *p);
    if (!p) return;
    for (uint32_t i = 0; i < n; i++)
        p[i].sType = LOOM_VK_STYPE_COOP_PROPS_KHR;
    VkResult r = fn(c->phys, &n, p);
    if (r == VK_SUCCESS || r == VK_INCOMPLETE) {
        c->n_coop = n;
        int pick = -1;
        for (uint32_t i = 0; i < n && pick < 0; i++)
            if (p[i].AType == 0 && p[i].BType == 0 && p[i].ResultType == 1 && p[i].scope == 3)
                pick = (int)i;
        if (pick < 0) pick = 0;
        snprintf(c->coop_desc, sizeof c->coop_desc, "%s:%u,%ux%ux%u:%s>%s", kind, n, p[pick].MSize,
                 p[pick].NSize, p[pick].KSize, loom_vk_ctype(p[pick].AType),
                 loom_vk_ctype(p[pick].ResultType));
    }
    free(p);
}

static void loom_vk_query(loom_vk_ctx *c, VkPhysicalDeviceFeatures2 *feat2,
                          VkPhysicalDeviceVulkan12Features *f12) {
    c->f.vkGetPhysicalDeviceProperties(c->phys, &c->props);
    c->f.vkGetPhysicalDeviceMemoryProperties(c->phys, &c->memprops);
    const bool v13 = c->props.apiVersion >= VK_API_VERSION_1_3;
    VkPhysicalDeviceMaintenance4Properties m4 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_4_PROPERTIES};
    VkPhysicalDeviceSubgroupSizeControlProperties sgc = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_PROPERTIES,
        .pNext = v13 ? &m4 : NULL};
    VkPhysicalDeviceMaintenance3Properties m3 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES,
        .pNext = v13 ? &sgc : NULL};
    /* Core in Vulkan 1.2, which every device loom picks has. */
    VkPhysicalDeviceDriverProperties drv = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES, .pNext = &m3};
    VkPhysicalDeviceSubgroupProperties sg = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES, .pNext = &drv};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                      .pNext = &sg};
    c->f.vkGetPhysicalDeviceProperties2(c->phys, &p2);
    c->subgroup_size = sg.subgroupSize;
    c->sg_ops = sg.supportedOperations;
    c->sg_compute = (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) != 0;
    c->sg_min = v13 ? sgc.minSubgroupSize : sg.subgroupSize;
    c->sg_max = v13 ? sgc.maxSubgroupSize : sg.subgroupSize;
    c->max_alloc = m3.maxMemoryAllocationSize;
    snprintf(c->driver, sizeof c->driver, "%.40s %.50s", drv.driverName, drv.driverInfo);
    c->max_buffer = v13 ? m4.maxBufferSize : 0;

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
    c->dev_max_range = c->max_range = c->props.limits.maxStorageBufferRange;
    c->min_align = c->props.limits.minStorageBufferOffsetAlignment;
    if (c->min_align < 4) c->min_align = 4;
    /* LOOM_VULKAN_MAX_RANGE=bytes pretends the device's storage-buffer range
     * is smaller, so the split paths for large tensors run on small shapes
     * (tests); never above the real limit. */
    const char *mr = getenv("LOOM_VULKAN_MAX_RANGE");
    if (mr && *mr) {
        unsigned long long v = strtoull(mr, NULL, 0);
        if (v >= 4096 && v < c->max_range) c->max_range = (VkDeviceSize)v;
    }

    /* The largest buffer callers should ask for (device_info's
     * max_buffer_bytes). LOOM_VULKAN_MAX_ALLOC=bytes lowers it, never raises
     * it; values below 64 KiB are ignored. */
    const VkDeviceSize unit = 64 << 10;
    VkDeviceSize lim = c->max_alloc;
    if (c->max_buffer && (!lim || c->max_buffer < lim)) lim = c->max_buffer;
    if (lim >= unit) lim = lim / unit * unit;
    c->max_buf_bytes = lim;
    const char *ma = getenv("LOOM_VULKAN_MAX_ALLOC");
    if (ma && *ma) {
        unsigned long long v = strtoull(ma, NULL, 0) / unit * unit;
        if (v >= unit && (!lim || v < lim)) {
            c->max_buf_bytes = (VkDeviceSize)v;
            c->alloc_forced = true;
        }
    }

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
        if (loom_vk_has_ext(ext, next, "VK_KHR_cooperative_matrix"))
            loom_vk_coop_query(c, "khr");
        else if (c->coopmat)
            snprintf(c->coop_desc, sizeof c->coop_desc, "nv");
        free(ext);
    }
}

loom_status loom_vk_device_init(loom_backend *be, loom_vk_ctx *c, char *why, size_t why_n) {
#ifdef LOOM_VK_PIN_DRIVER
    c->n_objs_before = 0;
    dl_iterate_phdr(loom_vk_count_objs, &c->n_objs_before);
#endif
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

    LOOM_TRY(loom_vk_pick(c, be->device, why, why_n));
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
    const char *mk = getenv("LOOM_VULKAN_MATMUL");
    c->mm_kernel = !mk                     ? 0
                   : !strcmp(mk, "vec")    ? 1
                   : !strcmp(mk, "tiled")  ? 2
                   : !strcmp(mk, "simple") ? 3
                   : !strcmp(mk, "splitk") ? 4
                                           : 0;
    if (c->mm_kernel == 4) c->force_coop = true;
    /* Subgroup arithmetic in compute: the *_sg shader variants reduce with
     * subgroupAdd/subgroupMax; LOOM_VULKAN_SUBGROUP=0 forces the
     * shared-memory fallback (tests run both). */
    const VkSubgroupFeatureFlags need =
        VK_SUBGROUP_FEATURE_BASIC_BIT | VK_SUBGROUP_FEATURE_ARITHMETIC_BIT;
    const char *sgenv = getenv("LOOM_VULKAN_SUBGROUP");
    c->use_subgroup = c->sg_compute && (c->sg_ops & need) == need && c->subgroup_size >= 4 &&
                      !(sgenv && strcmp(sgenv, "0") == 0);
    return LOOM_OK;
}

void loom_vk_device_shutdown(loom_vk_ctx *c) {
#ifdef LOOM_VK_PIN_DRIVER
    if (c->lib) {
        pin_walk w = {0, c->n_objs_before};
        dl_iterate_phdr(loom_vk_pin_obj, &w);
    }
#endif
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
    out->max_buffer_bytes = (size_t)c->max_buf_bytes;
    snprintf(out->driver, sizeof out->driver, "%s", c->driver);
    uint32_t v = c->props.apiVersion;
    /* Subgroup operations in compute: b(asic) v(ote) a(rithmetic) B(allot)
     * s(huffle) r(elative shuffle) c(lustered) q(uad). */
    char ops[16] = "";
    const char *const letters = "bvaBsrcq";
    int no = 0;
    for (int i = 0; i < 8; i++)
        if (c->sg_ops & (1u << i)) ops[no++] = letters[i];
    ops[no] = '\0';
    char sgsz[24];
    if (c->sg_min != c->sg_max)
        snprintf(sgsz, sizeof sgsz, "%u(%u-%u)", c->subgroup_size, c->sg_min, c->sg_max);
    else
        snprintf(sgsz, sizeof sgsz, "%u", c->subgroup_size);
    char range[64];
    if (c->max_range != c->dev_max_range)
        snprintf(range, sizeof range, "%lluK(forced;dev %lluM)",
                 (unsigned long long)(c->max_range >> 10),
                 (unsigned long long)(c->dev_max_range >> 20));
    else
        snprintf(range, sizeof range, "%lluM", (unsigned long long)(c->max_range >> 20));
    char alloc[64];
    if (c->alloc_forced)
        snprintf(alloc, sizeof alloc, "%lluK(forced;dev %lluM)",
                 (unsigned long long)(c->max_buf_bytes >> 10),
                 (unsigned long long)(c->max_alloc >> 20));
    else
        snprintf(alloc, sizeof alloc, "%lluM", (unsigned long long)(c->max_alloc >> 20));
    char logical[48] = "";
    if (c->logical > 1)
        snprintf(logical, sizeof logical, "logical=%d/%d ", c->logical_index + 1, c->logical);
    char feat[512];
    snprintf(feat, sizeof feat,
             "%svulkan=%u.%u subgroup=%s sg_ops=%s%s sg_reduce=%s coopmat=%s bf16=%s fp64=%s "
             "shared=%uK max_storage_range=%s max_alloc=%s",
             logical, VK_API_VERSION_MAJOR(v), VK_API_VERSION_MINOR(v), sgsz, no ? ops : "none",
             c->sg_compute ? "" : "(not compute)", c->use_subgroup ? "subgroup" : "shared",
             c->coopmat ? (c->coop_desc[0] ? c->coop_desc : "yes") : "no",
             c->bf16ext ? "yes" : "no", c->fp64 ? "yes" : "no",
             c->props.limits.maxComputeSharedMemorySize / 1024, range, alloc);
    snprintf(out->features, sizeof out->features, "%.*s", (int)sizeof out->features - 1, feat);
}
