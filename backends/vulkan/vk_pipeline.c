/* backends/vulkan/vk_pipeline.c - pipelines, descriptor sets and command
 * recording.
 *
 * All shaders share one pipeline layout: LOOM_VK_BINDINGS storage buffers
 * (out, src0, src1, src2, aux, then src3 and src4 for the few ops with five
 * sources, e.g. flash_attn_back) and 128 bytes of push constants, so a
 * dispatch is "bind pipeline, write a descriptor set, push, dispatch".
 * Pipelines are created lazily through a VkPipelineCache. Work is recorded
 * into one command buffer and submitted by loom_vk_flush (end of compute, or
 * earlier when the descriptor pool or aux buffer fills up).
 *
 * Barriers: the byte ranges each dispatch reads and writes since the last
 * barrier are tracked; a compute->compute barrier is inserted only when a
 * new dispatch reads or writes a range written before it, or writes a range
 * read before it (the memory planner reuses dead tensors' bytes). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk_internal.h"

/* Fixed start of the aux buffer: 16 error words, then the nf4 codebook
 * (16 floats at word 16) and the nf4_dq codebook (256 floats at word 32),
 * as kernels/vulkan/common.glsl expects. */
#define LOOM_VK_AUX_FIXED_WORDS (32 + 256)

loom_status loom_vk_pipeline_init(loom_backend *be, loom_vk_ctx *c) {
    VkDescriptorSetLayoutBinding b[LOOM_VK_BINDINGS];
    for (int i = 0; i < LOOM_VK_BINDINGS; i++)
        b[i] = (VkDescriptorSetLayoutBinding){.binding = (uint32_t)i,
                                              .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                              .descriptorCount = 1,
                                              .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT};
    VkDescriptorSetLayoutCreateInfo dci = {.sType =
                                               VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
                                           .bindingCount = LOOM_VK_BINDINGS,
                                           .pBindings = b};
    if (c->f.vkCreateDescriptorSetLayout(c->dev, &dci, NULL, &c->dsl) != VK_SUCCESS)
        return loom_backend_fail(be, LOOM_ERR_DEVICE, "vulkan: descriptor set layout failed");
    VkPushConstantRange pcr = {
        .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .offset = 0, .size = LOOM_VK_PC_WORDS * 4};
    VkPipelineLayoutCreateInfo plci = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
                                       .setLayoutCount = 1,
                                       .pSetLayouts = &c->dsl,
                                       .pushConstantRangeCount = 1,
                                       .pPushConstantRanges = &pcr};
    if (c->f.vkCreatePipelineLayout(c->dev, &plci, NULL, &c->layout) != VK_SUCCESS)
        return loom_backend_fail(be, LOOM_ERR_DEVICE, "vulkan: pipeline layout failed");
    VkPipelineCacheCreateInfo pcci = {.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO};
    if (c->f.vkCreatePipelineCache(c->dev, &pcci, NULL, &c->cache) != VK_SUCCESS)
        c->cache = VK_NULL_HANDLE;
    VkDescriptorPoolSize ps = {.type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                               .descriptorCount = LOOM_VK_MAX_SETS * LOOM_VK_BINDINGS};
    VkDescriptorPoolCreateInfo dpci = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
                                       .maxSets = LOOM_VK_MAX_SETS,
                                       .poolSizeCount = 1,
                                       .pPoolSizes = &ps};
    if (c->f.vkCreateDescriptorPool(c->dev, &dpci, NULL, &c->pool) != VK_SUCCESS)
        return loom_backend_fail(be, LOOM_ERR_DEVICE, "vulkan: descriptor pool failed");
    VkCommandPoolCreateInfo cpci = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                    .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
                                    .queueFamilyIndex = c->queue_family};
    if (c->f.vkCreateCommandPool(c->dev, &cpci, NULL, &c->cmd_pool) != VK_SUCCESS)
        return loom_backend_fail(be, LOOM_ERR_DEVICE, "vulkan: command pool failed");
    VkCommandBufferAllocateInfo cbai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                        .commandPool = c->cmd_pool,
                                        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                        .commandBufferCount = 1};
    if (c->f.vkAllocateCommandBuffers(c->dev, &cbai, &c->cmd) != VK_SUCCESS)
        return loom_backend_fail(be, LOOM_ERR_DEVICE, "vulkan: command buffer failed");
    VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    if (c->f.vkCreateFence(c->dev, &fci, NULL, &c->fence) != VK_SUCCESS)
        return loom_backend_fail(be, LOOM_ERR_DEVICE, "vulkan: fence failed");

    int n = 0;
    while (loom_vk_shaders[n].name)
        n++;
    c->pipes = calloc((size_t)(n ? n : 1), sizeof *c->pipes);
    if (!c->pipes) return loom_backend_fail(be, LOOM_ERR_OOM, "vulkan: out of memory");
    for (int i = 0; i < n; i++)
        c->pipes[i].blob = &loom_vk_shaders[i];
    c->n_pipes = n;
    LOOM_TRY(loom_vk_buffer_alloc_host(be, LOOM_VK_AUX_BYTES, &c->aux));
    float *aux = c->aux->host;
    memset(aux, 0, LOOM_VK_AUX_FIXED_WORDS * 4);
    memcpy(aux + 16, loom_nf4_code, 16 * sizeof(float));
    memcpy(aux + 32, loom_nf4_dq_code, 256 * sizeof(float));
    c->aux_used = LOOM_VK_AUX_FIXED_WORDS * 4;
    return LOOM_OK;
}

void loom_vk_pipeline_shutdown(loom_vk_ctx *c) {
    if (!c->dev) return;
    c->f.vkDeviceWaitIdle(c->dev);
    for (int i = 0; i < c->n_pipes; i++)
        if (c->pipes[i].pipeline) c->f.vkDestroyPipeline(c->dev, c->pipes[i].pipeline, NULL);
    free(c->pipes);
    c->pipes = NULL;
    if (c->scratch) loom_vk_buffer_free(c->scratch);
    c->scratch = NULL;
    if (c->aux) loom_vk_buffer_free(c->aux);
    c->aux = NULL;
    free(c->written);
    c->written = NULL;
    if (c->fence) c->f.vkDestroyFence(c->dev, c->fence, NULL);
    if (c->cmd_pool) c->f.vkDestroyCommandPool(c->dev, c->cmd_pool, NULL);
    if (c->pool) c->f.vkDestroyDescriptorPool(c->dev, c->pool, NULL);
    if (c->cache) c->f.vkDestroyPipelineCache(c->dev, c->cache, NULL);
    if (c->layout) c->f.vkDestroyPipelineLayout(c->dev, c->layout, NULL);
    if (c->dsl) c->f.vkDestroyDescriptorSetLayout(c->dev, c->dsl, NULL);
}

/* Create p's pipeline on first use; false when that failed (remembered). */
static bool loom_vk_make_pipeline(loom_vk_ctx *c, loom_vk_pipeline *p) {
    if (p->failed) return false;
    if (p->pipeline) return true;
    VkShaderModuleCreateInfo smci = {.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
                                     .codeSize = p->blob->size,
                                     .pCode = (const uint32_t *)(const void *)p->blob->code};
    VkShaderModule mod;
    if (c->f.vkCreateShaderModule(c->dev, &smci, NULL, &mod) != VK_SUCCESS) {
        p->failed = true;
        return false;
    }
    VkComputePipelineCreateInfo cpci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                  .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                  .module = mod,
                  .pName = "main"},
        .layout = c->layout};
    VkResult r = c->f.vkCreateComputePipelines(c->dev, c->cache, 1, &cpci, NULL, &p->pipeline);
    c->f.vkDestroyShaderModule(c->dev, mod, NULL);
    if (r != VK_SUCCESS) {
        p->pipeline = VK_NULL_HANDLE;
        p->failed = true;
        return false;
    }
    return true;
}

static loom_vk_pipeline *loom_vk_find_pipeline(loom_vk_ctx *c, const char *name) {
    for (int i = 0; i < c->n_pipes; i++)
        if (strcmp(c->pipes[i].blob->name, name) == 0) return &c->pipes[i];
    return NULL;
}

/* Shader `name`, or its subgroup-arithmetic variant `name`_sg when the
 * device has subgroup arithmetic in compute (c->use_subgroup) and the
 * variant was built (backends/vulkan/CMakeLists.txt) and compiles. */
static loom_vk_pipeline *loom_vk_get_pipeline(loom_backend *be, const char *name) {
    loom_vk_ctx *c = be->ctx;
    if (c->use_subgroup) {
        char sg[64];
        snprintf(sg, sizeof sg, "%s_sg", name);
        loom_vk_pipeline *p = loom_vk_find_pipeline(c, sg);
        if (p && loom_vk_make_pipeline(c, p)) return p;
    }
    loom_vk_pipeline *p = loom_vk_find_pipeline(c, name);
    return p && loom_vk_make_pipeline(c, p) ? p : NULL;
}

loom_status loom_vk_begin(loom_backend *be) {
    loom_vk_ctx *c = be->ctx;
    if (c->recording) return LOOM_OK;
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                   .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    if (c->f.vkBeginCommandBuffer(c->cmd, &bi) != VK_SUCCESS)
        return loom_backend_fail(be, LOOM_ERR_DEVICE, "vulkan: vkBeginCommandBuffer failed");
    c->recording = true;
    c->n_dispatch = 0;
    c->n_written = 0;
    return LOOM_OK;
}

loom_status loom_vk_flush(loom_backend *be) {
    loom_vk_ctx *c = be->ctx;
    if (!c->recording) return LOOM_OK;
    c->recording = false;
    loom_status st = LOOM_OK;
    if (c->f.vkEndCommandBuffer(c->cmd) != VK_SUCCESS) {
        st = loom_backend_fail(be, LOOM_ERR_DEVICE, "vulkan: vkEndCommandBuffer failed");
    } else if (c->n_dispatch > 0) {
        VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
                           .commandBufferCount = 1,
                           .pCommandBuffers = &c->cmd};
        VkResult r = c->f.vkQueueSubmit(c->queue, 1, &si, c->fence);
        if (r == VK_SUCCESS) r = c->f.vkWaitForFences(c->dev, 1, &c->fence, VK_TRUE, UINT64_MAX);
        if (r != VK_SUCCESS)
            st = loom_backend_fail(be, LOOM_ERR_DEVICE, "vulkan: submit/wait failed (VkResult %d)",
                                   (int)r);
        c->f.vkResetFences(c->dev, 1, &c->fence);
    }
    c->f.vkResetCommandBuffer(c->cmd, 0);
    c->f.vkResetDescriptorPool(c->dev, c->pool, 0);
    c->sets_used = 0;
    c->aux_used = LOOM_VK_AUX_FIXED_WORDS * 4;
    c->n_written = 0;
    c->n_dispatch = 0;
    return st;
}

size_t loom_vk_aux_alloc(loom_vk_ctx *c, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (c->aux_used + n > LOOM_VK_AUX_BYTES) return (size_t)-1;
    size_t off = c->aux_used;
    c->aux_used += n;
    return off;
}

/* Does an access conflict with one since the last barrier? Only
 * read-after-read is free. */
static bool loom_vk_conflict(const loom_vk_ctx *c, VkBuffer buf, VkDeviceSize lo, VkDeviceSize hi,
                             bool write) {
    for (int i = 0; i < c->n_written; i++) {
        const loom_vk_range *r = &c->written[i];
        if (r->buf == buf && r->lo < hi && lo < r->hi && (write || r->write)) return true;
    }
    return false;
}

static loom_status loom_vk_track(loom_backend *be, VkBuffer buf, VkDeviceSize lo, VkDeviceSize hi,
                                 bool write) {
    loom_vk_ctx *c = be->ctx;
    if (c->n_written == c->cap_written) {
        int cap = c->cap_written ? 2 * c->cap_written : 64;
        loom_vk_range *p = realloc(c->written, (size_t)cap * sizeof *p);
        if (!p) return loom_backend_fail(be, LOOM_ERR_OOM, "vulkan: out of memory");
        c->written = p;
        c->cap_written = cap;
    }
    c->written[c->n_written++] = (loom_vk_range){buf, lo, hi, write};
    return LOOM_OK;
}

loom_status loom_vk_dispatch(loom_backend *be, const char *shader, const loom_vk_bind *binds,
                             int n_binds, const uint32_t *pc, uint32_t gx, uint32_t gy,
                             uint32_t gz) {
    loom_vk_ctx *c = be->ctx;
    if (gx == 0 || gy == 0 || gz == 0) return LOOM_OK;
    loom_vk_pipeline *p = loom_vk_get_pipeline(be, shader);
    if (!p)
        return loom_backend_fail(be, LOOM_ERR_DEVICE, "vulkan: no pipeline for shader '%s'",
                                 shader);
    if (c->sets_used >= LOOM_VK_MAX_SETS) LOOM_TRY(loom_vk_flush(be));
    LOOM_TRY(loom_vk_begin(be));

    VkDescriptorBufferInfo bi[LOOM_VK_BINDINGS];
    const loom_vk_buf *auxb = c->aux->handle;
    bool need_barrier = false;
    for (int i = 0; i < LOOM_VK_BINDINGS; i++) {
        const loom_vk_bind *b = i < n_binds && binds[i].buf ? &binds[i] : NULL;
        if (!b) {
            bi[i] = (VkDescriptorBufferInfo){auxb->buf, 0, VK_WHOLE_SIZE};
            continue;
        }
        const loom_vk_buf *vb = b->buf->handle;
        VkDeviceSize base = b->offset / c->min_align * c->min_align;
        VkDeviceSize end = ((VkDeviceSize)b->offset + b->span + 3) & ~(VkDeviceSize)3;
        if (end > vb->size) end = vb->size;
        if (end <= base) end = base + 4 <= vb->size ? base + 4 : vb->size;
        if (end - base > c->max_range)
            return loom_backend_fail(be, LOOM_ERR_UNSUPPORTED,
                                     "vulkan: binding of %llu bytes exceeds maxStorageBufferRange",
                                     (unsigned long long)(end - base));
        bi[i] = (VkDescriptorBufferInfo){vb->buf, base, end - base};
        if (loom_vk_conflict(c, vb->buf, b->offset, (VkDeviceSize)b->offset + b->span, b->write))
            need_barrier = true;
    }
    if (need_barrier && c->n_dispatch > 0) {
        VkMemoryBarrier mb = {
            .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
            .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
            .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT};
        c->f.vkCmdPipelineBarrier(
            c->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
            VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &mb, 0, NULL, 0, NULL);
        c->n_written = 0;
    }
    for (int i = 0; i < n_binds; i++) {
        if (!binds[i].buf) continue;
        const loom_vk_buf *vb = binds[i].buf->handle;
        LOOM_TRY(loom_vk_track(be, vb->buf, binds[i].offset,
                               (VkDeviceSize)binds[i].offset + binds[i].span, binds[i].write));
    }

    VkDescriptorSetAllocateInfo dsai = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                                        .descriptorPool = c->pool,
                                        .descriptorSetCount = 1,
                                        .pSetLayouts = &c->dsl};
    VkDescriptorSet set;
    if (c->f.vkAllocateDescriptorSets(c->dev, &dsai, &set) != VK_SUCCESS)
        return loom_backend_fail(be, LOOM_ERR_DEVICE, "vulkan: descriptor set allocation failed");
    c->sets_used++;
    VkWriteDescriptorSet w[LOOM_VK_BINDINGS];
    for (int i = 0; i < LOOM_VK_BINDINGS; i++)
        w[i] = (VkWriteDescriptorSet){.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                                      .dstSet = set,
                                      .dstBinding = (uint32_t)i,
                                      .descriptorCount = 1,
                                      .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                      .pBufferInfo = &bi[i]};
    c->f.vkUpdateDescriptorSets(c->dev, LOOM_VK_BINDINGS, w, 0, NULL);

    c->f.vkCmdBindPipeline(c->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p->pipeline);
    c->f.vkCmdBindDescriptorSets(c->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, c->layout, 0, 1, &set, 0,
                                 NULL);
    c->f.vkCmdPushConstants(c->cmd, c->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, LOOM_VK_PC_WORDS * 4,
                            pc);
    c->f.vkCmdDispatch(c->cmd, gx, gy, gz);
    c->n_dispatch++;
    return LOOM_OK;
}
