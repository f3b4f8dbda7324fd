/* loom/backend.h - the backend vtable: what a device must implement.
 *
 * Adding a backend means filling loom_backend_iface and nothing else:
 * copy backends/null/ to backends/<name>/ (its CMakeLists.txt takes the name
 * from the folder) and the build and the registry pick it up with no edit
 * elsewhere (ADR 0001). GPU backends live in shared libraries
 * libloom-backend-<name>.so that export loom_backend_plugin_entry and are
 * found by file name and loaded with dlopen by the registry (loom/runtime.h),
 * so libloom itself never links a GPU runtime.
 * Backends never print: they fill `why`/error strings and return statuses.
 *
 * Slots: every slot of loom_backend_iface is REQUIRED unless its comment
 * says OPTIONAL. The registry lists a table with a NULL required slot as
 * unavailable (naming the slot) and never calls it, so callers may call
 * required slots without checking; each OPTIONAL slot may be NULL and every
 * caller in libloom checks it (the comment says what NULL means). A slot
 * added to the end of the table later must be OPTIONAL, so that older
 * plugins (zero-filled there) keep working. */
#ifndef LOOM_BACKEND_H
#define LOOM_BACKEND_H

#include "loom/export.h"

#include <stdbool.h>
#include <stddef.h>

#include "loom/ir.h"
#include "loom/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 2: loom_device_info gained max_buffer_bytes (a plugin built against 1
 * would write a shorter struct).
 * 3: loom_backend_iface gained the optional kernel_info and kernel_claims
 * slots at its end (a plugin built against 2 has a shorter vtable). */
/* 4: loom_device_info gained driver (a plugin built against 3 writes a
 * shorter struct). */
/* 5: loom_backend_iface gained the optional device_count slot, and
 * loom_backend gained device and name (one registry entry per device of a
 * backend: vulkan:0, vulkan:1; docs/adr/0042). */
#define LOOM_BACKEND_ABI_VERSION 5
/* Devices one backend may expose (vulkan:0 .. vulkan:63), the range of
 * --devices indices. */
#define LOOM_BACKEND_MAX_DEVICES 64
#define LOOM_ERROR_MAX           512

typedef struct loom_device_info {
    char name[128];        /* "llvmpipe (LLVM 15.0.6, 256 bits)", "NVIDIA H100 80GB HBM3" */
    char kind[16];         /* "cpu", "gpu", "cpu-emulated" */
    size_t mem_total;      /* bytes the device can hold; 0 if unknown */
    size_t mem_free;       /* bytes free now; 0 if unknown */
    bool fp16, bf16, int8; /* native arithmetic support */
    int subgroup_size;     /* warp/wavefront/subgroup/SIMD width; 0 if n/a */
    int n_threads;         /* CPU threads used; 0 if n/a */
    char features[256];    /* free-form: "avx512f avx512bw", "coopmat=no" ... */
    /* Largest single loom_buffer the backend can allocate, in bytes; 0 = no
     * limit known. Callers that need more (the model's weights and KV cache,
     * the scheduler's leaves) spread their tensors over several buffers, each
     * at most this size; one tensor must still fit one buffer. Vulkan reports
     * maxMemoryAllocationSize (lowered by LOOM_VULKAN_MAX_ALLOC=bytes for
     * tests); cpu, cuda and hip report 0. Filled by device_info, which
     * zeroes the struct first, like every field here. */
    size_t max_buffer_bytes;
    /* The driver behind the device, for benchmark records: Vulkan's
     * driverName and driverInfo ("llvmpipe Mesa 22.3.6 (LLVM 15.0.6)"),
     * CUDA/HIP's driver API version ("CUDA driver 12.4"); "" for the cpu or
     * when unknown. */
    char driver[96];
} loom_device_info;

typedef struct loom_backend loom_backend;

/* A device allocation. Owned by the backend that made it; freed with
 * loom_buffer_free. host is non-NULL when the memory is host-addressable. */
typedef struct loom_buffer {
    loom_backend *backend;
    size_t size;
    void *host;
    void *handle; /* backend private */
} loom_buffer;

/* An (op, key dtype) pair a backend has an optimised kernel for; see
 * loom_kernel_dtype and loom_backend_iface.kernel_claims. */
typedef struct loom_kernel_claim {
    loom_op op;
    loom_dtype dtype;
} loom_kernel_claim;

/* The dtype that names a node's kernel in kernel claims and coverage
 * reports: the weight of matmul (src0) and moe (src2), K of flash_attn(_back)
 * (src1), else src0's (the node's own when it has no source). One
 * definition, so a backend's claims and the parity suite's counts agree. */
static inline loom_dtype loom_kernel_dtype(const loom_tensor *node) {
    const loom_tensor *s = node->src[0];
    if (node->op == LOOM_OP_MOE) s = node->src[2];
    if (node->op == LOOM_OP_FLASH_ATTN || node->op == LOOM_OP_FLASH_ATTN_BACK) s = node->src[1];
    return s ? s->dtype : node->dtype;
}

typedef struct loom_backend_iface {
    int abi_version; /* required: LOOM_BACKEND_ABI_VERSION */
    /* required: "cpu", "vulkan", "cuda", "hip"; a plugin's name must match
     * its file name (libloom-backend-<name>.so). */
    const char *name;
    int priority; /* higher is preferred: cuda 400, hip 300, vulkan 200, cpu 100, null 0 */

    /* Required. Probe the device and set up be->ctx. On any failure return
     * LOOM_ERR_UNAVAILABLE and put a one-line reason in why. */
    loom_status (*init)(loom_backend *be, char *why, size_t why_n);
    /* OPTIONAL (NULL: nothing to free). Frees be->ctx; buffers must be
     * freed first. Called only after a successful init. */
    void (*shutdown)(loom_backend *be);
    /* Required: `loom devices` and the scheduler read it. */
    void (*device_info)(loom_backend *be, loom_device_info *out);

    /* Required, all four. */
    loom_status (*buffer_alloc)(loom_backend *be, size_t size, loom_buffer **out);
    void (*buffer_free)(loom_buffer *b);
    loom_status (*buffer_upload)(loom_buffer *b, size_t off, const void *src, size_t n);
    loom_status (*buffer_download)(loom_buffer *b, size_t off, void *dst, size_t n);

    /* Required. Can this backend run this node (op, dtypes, shapes, strides)?
     * Must be honest: the scheduler trusts it, and the coverage test checks it. */
    bool (*supports)(loom_backend *be, const loom_tensor *node);
    /* Required. Run nodes in order. All sources and outputs live in this
     * backend's buffers (views resolve to their storage). May return before
     * the work is done; synchronize waits. Errors go to be->error. */
    loom_status (*compute)(loom_backend *be, loom_tensor *const *nodes, int n_nodes);
    /* OPTIONAL (NULL: compute is synchronous, there is nothing to wait for). */
    loom_status (*synchronize)(loom_backend *be);

    /* ---- OPTIONAL (NULL when not implemented; every caller checks) ----
     * Kernel coverage, for the parity suite (docs/adr/0007): it counts which
     * kernel each node ran and fails when a claimed kernel never ran. */

    /* Which kernel compute runs for node (a node this backend supports, with
     * the shapes, dtypes and strides it will be computed with): true when it
     * is one of the backend's optimised kernels, false when it is a generic
     * fallback (cpu: the reference kernel). name gets a short label ("avx2
     * matmul", "ref"). node NULL: name gets the kernel set in use (cpu: its
     * ISA, "avx512" / "avx2" / "scalar"); returns whether it has any
     * optimised kernels. */
    bool (*kernel_info)(loom_backend *be, const loom_tensor *node, char *name, size_t name_n);
    /* The (op, loom_kernel_dtype) pairs kernel_info answers true for on some
     * node, with the kernel set in use: stores up to max of them in out and
     * returns how many there are (may exceed max). Must agree with
     * kernel_info: the parity suite fails a claim no case ran optimised, and
     * an optimised kernel that is not claimed. */
    int (*kernel_claims)(loom_backend *be, loom_kernel_claim *out, int max);

    /* OPTIONAL (NULL: the backend drives one device). Several devices of one
     * kind (docs/adr/0042): called once, on the instance the registry
     * initialised first (be->device == 0), it returns how many devices the
     * backend can drive (1..LOOM_BACKEND_MAX_DEVICES). The registry then
     * makes one more loom_backend per further device, sets its device field
     * to 1, 2, ... and calls init on it; each instance owns its own be->ctx
     * (device handle, queues, memory), so a tensor read on another instance
     * is copied by the scheduler like one on another backend. */
    int (*device_count)(loom_backend *be);
} loom_backend_iface;

struct loom_backend {
    const loom_backend_iface *iface;
    void *ctx;                  /* backend private state */
    int index;                  /* position in the registry */
    int n_threads;              /* requested CPU threads (0 = all cores) */
    char error[LOOM_ERROR_MAX]; /* last error message */
    /* Which of the backend's devices this instance drives (0 unless the
     * table has device_count); set by the registry before init. */
    int device;
    /* The instance's name, set by the registry: the table's name when the
     * backend drives one device ("vulkan"), else name:device ("vulkan:1").
     * Empty for a loom_backend made outside the registry (tests):
     * loom_backend_name falls back to the table's name. */
    char name[32];
};

/* The name to show and look up for this instance ("vulkan", "vulkan:1"). */
static inline const char *loom_backend_name(const loom_backend *be) {
    return be->name[0] ? be->name : be->iface->name;
}

/* Plugins export this symbol (extern "C"); the registry calls it after dlopen. */
typedef const loom_backend_iface *(*loom_backend_plugin_entry_fn)(void);
#define LOOM_BACKEND_PLUGIN_ENTRY "loom_backend_plugin_entry"

/* Helpers for backends (backends/backend.c, below runtime/: a backend uses
 * these, never the registry). */

/* Record a printf-style message in be->error; returns s. */
LOOM_API loom_status loom_backend_fail(loom_backend *be, loom_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* The first required slot iface leaves NULL ("init", "compute", ...), or
 * NULL when the table is complete. */
LOOM_API const char *loom_backend_missing_slot(const loom_backend_iface *iface);
/* be->iface->synchronize, or LOOM_OK when the backend has none. */
LOOM_API loom_status loom_backend_synchronize(loom_backend *be);

#ifdef __cplusplus
}
#endif
#endif
