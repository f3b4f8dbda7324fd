/* backends/vulkan/vk_internal.h - shared state of the Vulkan backend files.
 *
 * vk_device.c   loader (dlopen), instance, device choice, queue, info
 * vk_buffer.c   buffers, staging upload/download
 * vk_pipeline.c shader modules, pipelines, descriptor sets, command recording
 * vk_ops.c      supports() and the per-op dispatch (push constants)
 * loom_backend_vulkan.c  the vtable
 * Function pointers are resolved at run time (VK_NO_PROTOTYPES). */
#ifndef LOOM_VK_INTERNAL_H
#define LOOM_VK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vulkan/vulkan.h>

#include "loom/backend.h"

/* Embedded SPIR-V (generated vk_shaders_gen.c), terminated by a NULL name. */
typedef struct loom_vk_shader_blob {
    const char *name;
    const unsigned char *code;
    size_t size;
} loom_vk_shader_blob;
extern const loom_vk_shader_blob loom_vk_shaders[];

/* Global, instance and device functions used. */
#define LOOM_VK_INSTANCE_FNS(X)                                                                    \
    X(vkDestroyInstance)                                                                           \
    X(vkEnumeratePhysicalDevices)                                                                  \
    X(vkGetPhysicalDeviceProperties)                                                               \
    X(vkGetPhysicalDeviceProperties2)                                                              \
    X(vkGetPhysicalDeviceFeatures)                                                                 \
    X(vkGetPhysicalDeviceFeatures2)                                                                \
    X(vkGetPhysicalDeviceMemoryProperties)                                                         \
    X(vkGetPhysicalDeviceQueueFamilyProperties)                                                    \
    X(vkEnumerateDeviceExtensionProperties)                                                        \
    X(vkCreateDevice)                                                                              \
    X(vkGetDeviceProcAddr)

#define LOOM_VK_DEVICE_FNS(X)                                                                      \
    X(vkDestroyDevice)                                                                             \
    X(vkGetDeviceQueue)                                                                            \
    X(vkDeviceWaitIdle)                                                                            \
    X(vkCreateBuffer)                                                                              \
    X(vkDestroyBuffer)                                                                             \
    X(vkGetBufferMemoryRequirements)                                                               \
    X(vkAllocateMemory)                                                                            \
    X(vkFreeMemory)                                                                                \
    X(vkBindBufferMemory)                                                                          \
    X(vkMapMemory)                                                                                 \
    X(vkUnmapMemory)                                                                               \
    X(vkCreateShaderModule)                                                                        \
    X(vkDestroyShaderModule)                                                                       \
    X(vkCreatePipelineCache)                                                                       \
    X(vkDestroyPipelineCache)                                                                      \
    X(vkCreateComputePipelines)                                                                    \
    X(vkDestroyPipeline)                                                                           \
    X(vkCreatePipelineLayout)                                                                      \
    X(vkDestroyPipelineLayout)                                                                     \
    X(vkCreateDescriptorSetLayout)                                                                 \
    X(vkDestroyDescriptorSetLayout)                                                                \
    X(vkCreateDescriptorPool)                                                                      \
    X(vkDestroyDescriptorPool)                                                                     \
    X(vkResetDescriptorPool)                                                                       \
    X(vkAllocateDescriptorSets)                                                                    \
    X(vkUpdateDescriptorSets)                                                                      \
    X(vkCreateCommandPool)                                                                         \
    X(vkDestroyCommandPool)                                                                        \
    X(vkAllocateCommandBuffers)                                                                    \
    X(vkResetCommandBuffer)                                                                        \
    X(vkBeginCommandBuffer)                                                                        \
    X(vkEndCommandBuffer)                                                                          \
    X(vkCmdBindPipeline)                                                                           \
    X(vkCmdBindDescriptorSets)                                                                     \
    X(vkCmdPushConstants)                                                                          \
    X(vkCmdDispatch)                                                                               \
    X(vkCmdPipelineBarrier)                                                                        \
    X(vkCmdCopyBuffer)                                                                             \
    X(vkCmdFillBuffer)                                                                             \
    X(vkCreateFence)                                                                               \
    X(vkDestroyFence)                                                                              \
    X(vkResetFences)                                                                               \
    X(vkWaitForFences)                                                                             \
    X(vkQueueSubmit)

#define LOOM_VK_DECL(name) PFN_##name name;
typedef struct loom_vk_fns {
    PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr;
    PFN_vkCreateInstance vkCreateInstance;
    PFN_vkEnumerateInstanceVersion vkEnumerateInstanceVersion;
    LOOM_VK_INSTANCE_FNS(LOOM_VK_DECL)
    LOOM_VK_DEVICE_FNS(LOOM_VK_DECL)
} loom_vk_fns;
#undef LOOM_VK_DECL

#define LOOM_VK_BINDINGS  7   /* storage buffers per dispatch: out, src0..src2, aux, src3, src4 */
#define LOOM_VK_PC_WORDS  32  /* 128 bytes of push constants */
#define LOOM_VK_MAX_SETS  512 /* descriptor sets per pool before a flush */
#define LOOM_VK_AUX_BYTES (256 * 1024)

/* One shader's pipeline, created on first use. */
typedef struct loom_vk_pipeline {
    const loom_vk_shader_blob *blob;
    VkPipeline pipeline;
    bool failed;
} loom_vk_pipeline;

/* A device allocation behind a loom_buffer (the handle). */
typedef struct loom_vk_buf {
    VkBuffer buf;
    VkDeviceMemory mem;
    VkDeviceSize size;
    void *map; /* persistent mapping when host-visible and coherent */
} loom_vk_buf;

/* Byte range read or written by a dispatch since the last barrier. */
typedef struct loom_vk_range {
    VkBuffer buf;
    VkDeviceSize lo, hi;
    bool write;
} loom_vk_range;

typedef struct loom_vk_ctx {
    loom_vk_fns f;
    void *lib;         /* dlopen handle of libvulkan.so.1 */
    int n_objs_before; /* loaded shared objects before the loader (vk_device.c) */
    VkInstance instance;
    VkPhysicalDevice phys;
    /* Devices this backend exposes (device_count; docs/adr/0042): every
     * usable physical device, each opened `logical` times
     * (LOOM_VULKAN_LOGICAL_DEVICES, default 1); this instance is device
     * be->device, logical copy logical_index of its physical device. */
    int n_devices, logical, logical_index;
    VkDevice dev;
    VkQueue queue;
    uint32_t queue_family;
    VkPhysicalDeviceProperties props;
    char driver[96]; /* driverName driverInfo (VkPhysicalDeviceDriverProperties) */
    VkPhysicalDeviceMemoryProperties memprops;
    uint32_t subgroup_size, sg_min, sg_max;
    uint32_t sg_ops;   /* VkSubgroupFeatureFlags supported (any stage) */
    bool sg_compute;   /* subgroup operations are supported in compute */
    bool use_subgroup; /* run the *_sg shader variants (subgroup arithmetic) */
    bool fp16, int8, fp64, int64, cpu_device, unified;
    bool coopmat, bf16ext;
    /* VK_KHR_cooperative_matrix (or NV) as reported; no shader uses it yet. */
    uint32_t n_coop;
    char coop_desc[64];
    size_t mem_total;
    VkDeviceSize max_range, min_align;
    VkDeviceSize dev_max_range; /* the device's limit before LOOM_VULKAN_MAX_RANGE */
    VkDeviceSize max_alloc;     /* maxMemoryAllocationSize */
    VkDeviceSize max_buffer;    /* maxBufferSize (Vulkan 1.3), else 0 */
    /* What device_info reports as max_buffer_bytes: the smaller of the two
     * above, rounded down to 64 KiB (so a driver's size alignment cannot push
     * an allocation over), or LOOM_VULKAN_MAX_ALLOC when that is smaller;
     * then alloc_forced is set and buffer_alloc refuses anything larger, as
     * a strict driver would (tests run the model's buffer splitting with it). */
    VkDeviceSize max_buf_bytes;
    bool alloc_forced;

    VkDescriptorSetLayout dsl;
    VkPipelineLayout layout;
    VkPipelineCache cache;
    VkDescriptorPool pool;
    uint32_t sets_used;
    VkCommandPool cmd_pool;
    VkCommandBuffer cmd;
    VkFence fence;
    bool recording; /* cmd is begun */
    bool submitted; /* fence pending */
    int n_dispatch; /* in the current command buffer */
    loom_vk_pipeline *pipes;
    int n_pipes;

    /* Small host-visible buffer for per-dispatch tables (rope inv_freq) and
     * the device-side error word; written linearly within one submission. */
    loom_buffer *aux;
    size_t aux_used;

    /* Device scratch for multi-dispatch ops (moe), grown on demand. */
    loom_buffer *scratch;

    /* Index of the node being recorded in the slice loom_vk_compute runs:
     * shaders that report errors (set_rows) store it in the aux error
     * words, so the message can name the node. */
    uint32_t cur_node;

    loom_vk_range *written;
    int n_written, cap_written;

    bool force_staging; /* LOOM_VULKAN_STAGING=1: test the staging path */
    bool force_coop;    /* LOOM_VULKAN_MATMUL_COOP=1: always the split-K matmul */
    /* LOOM_VULKAN_MATMUL=vec|tiled|simple|splitk: only that matmul kernel
     * where it applies (0 = automatic choice); for tests and benchmarks. */
    int mm_kernel;
} loom_vk_ctx;

/* vk_device.c */
loom_status loom_vk_device_init(loom_backend *be, loom_vk_ctx *c, char *why, size_t why_n);
void loom_vk_device_shutdown(loom_vk_ctx *c);
void loom_vk_device_info(loom_backend *be, loom_device_info *out);

/* vk_buffer.c */
loom_status loom_vk_buffer_alloc(loom_backend *be, size_t size, loom_buffer **out);
void loom_vk_buffer_free(loom_buffer *b);
/* Mapped host-visible buffer (the aux buffer), whatever the device kind. */
loom_status loom_vk_buffer_alloc_host(loom_backend *be, size_t size, loom_buffer **out);
loom_status loom_vk_buffer_upload(loom_buffer *b, size_t off, const void *src, size_t n);
loom_status loom_vk_buffer_download(loom_buffer *b, size_t off, void *dst, size_t n);

/* vk_pipeline.c */
loom_status loom_vk_pipeline_init(loom_backend *be, loom_vk_ctx *c);
void loom_vk_pipeline_shutdown(loom_vk_ctx *c);
/* Begin recording if needed. */
loom_status loom_vk_begin(loom_backend *be);
/* End, submit and wait for everything recorded; resets the descriptor pool. */
loom_status loom_vk_flush(loom_backend *be);

/* One storage-buffer binding: the whole tensor storage region. */
typedef struct loom_vk_bind {
    const loom_buffer *buf;
    size_t offset; /* byte offset of the tensor in buf */
    size_t span;   /* bytes the dispatch may touch from offset */
    bool write;
} loom_vk_bind;

/* Byte offset of a tensor at buffer offset off inside its binding (the
 * binding starts at off rounded down to minStorageBufferOffsetAlignment);
 * shaders add it to every address. */
static inline uint32_t loom_vk_rel(const loom_vk_ctx *c, size_t off) {
    return (uint32_t)(off % c->min_align);
}
/* Record one dispatch of shader name with up to LOOM_VK_BINDINGS bindings
 * (a NULL buf leaves the slot on a dummy buffer) and LOOM_VK_PC_WORDS words
 * of push constants; inserts a barrier first when an earlier dispatch since
 * the last one touched an overlapping range (see vk_pipeline.c). */
loom_status loom_vk_dispatch(loom_backend *be, const char *shader, const loom_vk_bind *binds,
                             int n_binds, const uint32_t *pc, uint32_t gx, uint32_t gy,
                             uint32_t gz);
/* Reserve n bytes (4-aligned) in the aux buffer; returns its offset, or
 * (size_t)-1 when it is full (caller flushes and retries). */
size_t loom_vk_aux_alloc(loom_vk_ctx *c, size_t n);

/* vk_ops.c */
bool loom_vk_supports(loom_backend *be, const loom_tensor *node);
loom_status loom_vk_compute(loom_backend *be, loom_tensor *const *nodes, int n_nodes);

#endif
