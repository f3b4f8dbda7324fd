/* backends/cuda/loom_backend_cuda.cu - the "cuda" backend plugin (and, built
 * by backends/hip with LOOM_USE_HIP, the "hip" one from the same source).
 *
 * Host code only (the kernels are in kernels/cuda); written as a .cu so that
 * kernels/cuda/vendor.h maps every runtime/BLAS name for HIP in one place.
 * It is built as libloom-backend-{cuda,hip}.so and dlopen'ed by the registry,
 * so libloom never links the GPU runtime, and it links libcudart + cuBLAS,
 * never libcuda (the driver is loaded by cudart at run time).
 *
 * - init: cudaGetDeviceCount; any error (35 = no/old driver, 100 = no device)
 *   or a count of 0 -> LOOM_ERR_UNAVAILABLE with the runtime's message; then
 *   one stream, a cuBLAS handle, the nf4 codebooks and an error word on the
 *   device. Several devices (docs/adr/0042): device_count reports every
 *   device the runtime sees and the registry makes one instance per device
 *   (cuda:0, cuda:1, ...), each with its own stream, pool and handles on
 *   device be->device; $LOOM_CUDA_DEVICE / $LOOM_HIP_DEVICE=N instead
 *   exposes device N alone (as "cuda").
 * - memory: a caching pool (size classes, free blocks reused by class,
 *   released on OOM and at shutdown); buffers hold no host pointer.
 * - upload/download: through two pinned staging buffers and cudaMemcpyAsync on
 *   the stream (double buffered; every async copy touching a staging slot is
 *   followed by an event on that slot, which the host waits for before it
 *   writes the slot again). Uploads return before the copy lands (stream
 *   order keeps it correct); downloads return with the data.
 * - compute: one or a few kernels per node on the stream; synchronize waits
 *   and reports kernels' data errors (a get_rows id out of range).
 * Never prints, never aborts: errors go to be->error as LOOM_ERR_DEVICE. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/kernels.h"
#include "kernels/cuda/kquant.cuh"
#include "kernels/cuda/vendor.h"
#include "loom/backend.h"

#if defined(LOOM_USE_HIP)
#define GPU_NAME       "hip"
#define GPU_API        "hip"
#define GPU_PRIORITY   300
#define GPU_DEVICE_ENV "LOOM_HIP_DEVICE"
#else
#define GPU_NAME       "cuda"
#define GPU_API        "cuda"
#define GPU_PRIORITY   400
#define GPU_DEVICE_ENV "LOOM_CUDA_DEVICE"
#endif

#define GPU_STAGING_BYTES ((size_t)8 << 20) /* per slot */
#define GPU_GEMM_MIN_M    8                 /* below: the warp-per-row kernel rather than cuBLAS */
#define GPU_TILED_MIN_M   16 /* from here the tiled kernel rather than warp-per-row */

/* ---------------- context ---------------- */

typedef struct gpu_block {
    void *ptr;
    size_t size; /* size class actually allocated */
    int in_use;
    struct gpu_block *next;
} gpu_block;

typedef struct gpu_ctx {
    int device;    /* the runtime's device number */
    int n_exposed; /* device_count: every device, or 1 under GPU_DEVICE_ENV */
    cudaDeviceProp prop;
    cudaStream_t stream;
#if LOOM_HAVE_BLAS
    cublasHandle_t blas;
#endif
    gpu_block *blocks; /* every block, in use or cached */
    void *staging[2];  /* pinned; NULL: plain synchronous copies */
    cudaEvent_t ev[2];
    int slot;
    float *tables; /* nf4 code[16] + nf4_dq code[256] */
    int *err_word; /* see kernels.h LC_ERR_* */
    char err_node[LOOM_NAME_MAX];
    void *scratch; /* per-node temporary (x conversions, moe lists) */
    size_t scratch_size;
    /* rope frequencies (loom_rope_freq_table) last uploaded: rope_host[0, n)
     * mirrors the device copy rope_dev, rope_host[cap, cap + n) is where the
     * next table is computed; all layers share one table, so it is uploaded
     * once, not per node. */
    double *rope_dev, *rope_host;
    int rope_n, rope_cap;
} gpu_ctx;

static loom_status gpu_fail(loom_backend *be, cudaError_t e, const char *what) {
    return loom_backend_fail(be, LOOM_ERR_DEVICE, GPU_API ": %s: %s (%d)", what,
                             cudaGetErrorString(e), (int)e);
}

/* The runtime's current device is per host thread: make it ours before any
 * call that allocates or launches (the caller may use several threads). */
static void gpu_bind(const gpu_ctx *c) {
    if (c) (void)cudaSetDevice(c->device);
}

/* Release every block not in use. */
static void gpu_pool_trim(gpu_ctx *c) {
    gpu_block **pp = &c->blocks;
    while (*pp) {
        gpu_block *b = *pp;
        if (!b->in_use) {
            (void)cudaFree(b->ptr);
            *pp = b->next;
            free(b);
        } else {
            pp = &b->next;
        }
    }
}

static void gpu_teardown(gpu_ctx *c) {
    if (!c) return;
    gpu_bind(c);
    if (c->stream) (void)cudaStreamSynchronize(c->stream);
    for (gpu_block *b = c->blocks; b; b = b->next)
        b->in_use = 0; /* shutdown frees everything, leaked buffers too */
    gpu_pool_trim(c);
    if (c->scratch) (void)cudaFree(c->scratch);
    if (c->rope_dev) (void)cudaFree(c->rope_dev);
    free(c->rope_host);
    for (int i = 0; i < 2; i++) {
        if (c->staging[i]) (void)cudaFreeHost(c->staging[i]);
        if (c->ev[i]) (void)cudaEventDestroy(c->ev[i]);
    }
    if (c->tables) (void)cudaFree(c->tables);
    if (c->err_word) (void)cudaFree(c->err_word);
#if LOOM_HAVE_BLAS
    if (c->blas) (void)cublasDestroy(c->blas);
#endif
    if (c->stream) (void)cudaStreamDestroy(c->stream);
    (void)cudaGetLastError();
    free(c);
}

static loom_status gpu_init(loom_backend *be, char *why, size_t why_n) {
    be->ctx = NULL;
    int count = 0; /* left unchanged by cudaGetDeviceCount on error */
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        snprintf(why, why_n, GPU_API "GetDeviceCount: %s (%d)", cudaGetErrorString(e), (int)e);
        (void)
            cudaGetLastError(); /* clear the sticky-free error so it cannot leak into later calls */
        return LOOM_ERR_UNAVAILABLE;
    }
    if (count <= 0) {
        snprintf(why, why_n, GPU_API "GetDeviceCount: no " GPU_NAME " device");
        return LOOM_ERR_UNAVAILABLE;
    }
    int dev = be->device, exposed = count;
    const char *env = getenv(GPU_DEVICE_ENV);
    if (env && *env) {
        dev = atoi(env);
        exposed = 1;
        if (dev < 0 || dev >= count) {
            snprintf(why, why_n, "%s=%d but only %d " GPU_NAME " device(s)", GPU_DEVICE_ENV, dev,
                     count);
            return LOOM_ERR_UNAVAILABLE;
        }
    } else if (dev >= count) {
        snprintf(why, why_n, GPU_NAME ": no device %d (%d present)", dev, count);
        return LOOM_ERR_UNAVAILABLE;
    }

    gpu_ctx *c = (gpu_ctx *)calloc(1, sizeof *c);
    if (!c) {
        snprintf(why, why_n, GPU_NAME ": out of host memory");
        return LOOM_ERR_UNAVAILABLE;
    }
    c->device = dev;
    c->n_exposed = exposed;
    const char *step = GPU_API "SetDevice";
    if ((e = cudaSetDevice(dev)) == cudaSuccess) {
        step = GPU_API "GetDeviceProperties";
        e = cudaGetDeviceProperties(&c->prop, dev);
    }
    if (e == cudaSuccess) {
        step = GPU_API "StreamCreate";
        e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    }
    for (int i = 0; i < 2 && e == cudaSuccess; i++) {
        step = GPU_API "EventCreate";
        e = cudaEventCreateWithFlags(&c->ev[i], cudaEventDisableTiming);
    }
    if (e == cudaSuccess) {
        step = GPU_API "Malloc (tables)";
        e = cudaMalloc((void **)&c->tables, (16 + 256) * sizeof(float));
    }
    if (e == cudaSuccess) e = cudaMalloc((void **)&c->err_word, sizeof(int));
    if (e == cudaSuccess) {
        step = GPU_API "Memcpy (tables)";
        e = cudaMemcpy(c->tables, loom_nf4_code, 16 * sizeof(float), cudaMemcpyHostToDevice);
    }
    if (e == cudaSuccess)
        e = cudaMemcpy(c->tables + 16, loom_nf4_dq_code, 256 * sizeof(float),
                       cudaMemcpyHostToDevice);
    if (e == cudaSuccess) {
        const int zero = 0;
        e = cudaMemcpy(c->err_word, &zero, sizeof zero, cudaMemcpyHostToDevice);
    }
    if (e != cudaSuccess) {
        snprintf(why, why_n, "%s: %s (%d)", step, cudaGetErrorString(e), (int)e);
        gpu_teardown(c);
        return LOOM_ERR_UNAVAILABLE;
    }
#if LOOM_HAVE_BLAS
    cublasStatus_t bs = cublasCreate(&c->blas);
    if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasSetStream(c->blas, c->stream);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        snprintf(why, why_n, GPU_NAME ": cublasCreate/SetStream failed (status %d)", (int)bs);
        gpu_teardown(c);
        return LOOM_ERR_UNAVAILABLE;
    }
#endif
    /* Pinned staging is an optimisation: without it copies are synchronous. */
    for (int i = 0; i < 2; i++)
        if (cudaMallocHost(&c->staging[i], GPU_STAGING_BYTES) != cudaSuccess) {
            c->staging[i] = NULL;
            (void)cudaGetLastError();
        }
    if (!c->staging[0] || !c->staging[1]) {
        for (int i = 0; i < 2; i++)
            if (c->staging[i]) (void)cudaFreeHost(c->staging[i]);
        c->staging[0] = c->staging[1] = NULL;
    }
    be->ctx = c;
    be->error[0] = '\0';
    return LOOM_OK;
}

static void gpu_shutdown(loom_backend *be) {
    gpu_teardown((gpu_ctx *)be->ctx);
    be->ctx = NULL;
}

static void gpu_device_info(loom_backend *be, loom_device_info *out) {
    gpu_ctx *c = (gpu_ctx *)be->ctx;
    memset(out, 0, sizeof *out);
    snprintf(out->kind, sizeof out->kind, "gpu");
    if (!c) {
        snprintf(out->name, sizeof out->name, GPU_NAME " (unavailable)");
        return;
    }
    gpu_bind(c);
    snprintf(out->name, sizeof out->name, "%s", c->prop.name);
    out->mem_total = c->prop.totalGlobalMem;
    size_t fr = 0, tot = 0;
    if (cudaMemGetInfo(&fr, &tot) == cudaSuccess) out->mem_free = fr;
    (void)cudaGetLastError();
    out->fp16 = true;
#if defined(LOOM_USE_HIP)
    out->bf16 = true;
    out->subgroup_size = c->prop.warpSize;
    snprintf(out->features, sizeof out->features, "%s%s", c->prop.gcnArchName,
             LOOM_HAVE_BLAS ? " hipblas" : " no-hipblas");
#else
    out->bf16 = c->prop.major >= 8;
    out->subgroup_size = c->prop.warpSize;
    snprintf(out->features, sizeof out->features, "sm_%d%d cublas", c->prop.major, c->prop.minor);
#endif
    out->int8 = true;
    int dv = 0;
    if (cudaDriverGetVersion(&dv) == cudaSuccess && dv > 0)
        snprintf(out->driver, sizeof out->driver, "%s driver %d.%d",
#if defined(LOOM_USE_HIP)
                 "HIP", dv / 10000000, (dv / 100000) % 100
#else
                 "CUDA", dv / 1000, (dv % 1000) / 10
#endif
        );
    (void)cudaGetLastError();
}

/* ---------------- memory ---------------- */

/* Size class: powers of two up to 1 MiB, then steps of min(2 MiB, 1/8 of the
 * power of two above): at most 2 MiB or 12.5% wasted per buffer. */
static size_t gpu_size_class(size_t n) {
    size_t p = 256;
    while (p < n && p < ((size_t)1 << 62))
        p <<= 1;
    if (p <= ((size_t)1 << 20)) return p;
    size_t step = p / 8 < ((size_t)2 << 20) ? p / 8 : ((size_t)2 << 20);
    return (n + step - 1) / step * step;
}

static loom_status gpu_buffer_alloc(loom_backend *be, size_t size, loom_buffer **out) {
    gpu_ctx *c = (gpu_ctx *)be->ctx;
    *out = NULL;
    if (size == 0)
        return loom_backend_fail(be, LOOM_ERR_INVALID_ARG, GPU_NAME ": zero-size buffer");
    gpu_bind(c);
    const size_t cls = gpu_size_class(size);
    gpu_block *blk = NULL;
    for (gpu_block *b = c->blocks; b && !blk; b = b->next)
        if (!b->in_use && b->size == cls) blk = b;
    if (!blk) {
        blk = (gpu_block *)calloc(1, sizeof *blk);
        if (!blk) return loom_backend_fail(be, LOOM_ERR_OOM, GPU_NAME ": out of host memory");
        cudaError_t e = cudaMalloc(&blk->ptr, cls);
        if (e == cudaErrorMemoryAllocation) { /* give the cache back and retry */
            (void)cudaGetLastError();
            gpu_pool_trim(c);
            e = cudaMalloc(&blk->ptr, cls);
        }
        if (e != cudaSuccess) {
            free(blk);
            (void)cudaGetLastError();
            return loom_backend_fail(be, LOOM_ERR_OOM, GPU_API "Malloc(%zu): %s (%d)", cls,
                                     cudaGetErrorString(e), (int)e);
        }
        blk->size = cls;
        blk->next = c->blocks;
        c->blocks = blk;
    }
    loom_buffer *b = (loom_buffer *)calloc(1, sizeof *b);
    if (!b) return loom_backend_fail(be, LOOM_ERR_OOM, GPU_NAME ": out of host memory");
    blk->in_use = 1;
    b->backend = be;
    b->size = size;
    b->host = NULL;
    b->handle = blk;
    *out = b;
    return LOOM_OK;
}

/* Back to the pool. Work already enqueued that still reads it is ordered
 * before any later use, since everything runs on one stream. */
static void gpu_buffer_free(loom_buffer *b) {
    if (!b) return;
    if (b->handle) ((gpu_block *)b->handle)->in_use = 0;
    free(b);
}

static char *gpu_buf_ptr(const loom_buffer *b) {
    return (char *)((gpu_block *)b->handle)->ptr;
}

static loom_status gpu_check_range(loom_buffer *b, size_t off, const void *p, size_t n,
                                   const char *what) {
    if (!p && n)
        return loom_backend_fail(b->backend, LOOM_ERR_INVALID_ARG, GPU_NAME ": %s with NULL data",
                                 what);
    if (off > b->size || n > b->size - off)
        return loom_backend_fail(b->backend, LOOM_ERR_INVALID_ARG,
                                 GPU_NAME
                                 ": %s of %zu bytes at offset %zu exceeds buffer of %zu bytes",
                                 what, n, off, b->size);
    return LOOM_OK;
}

static loom_status gpu_buffer_upload(loom_buffer *b, size_t off, const void *src, size_t n) {
    LOOM_TRY(gpu_check_range(b, off, src, n, "upload"));
    loom_backend *be = b->backend;
    gpu_ctx *c = (gpu_ctx *)be->ctx;
    char *dst = gpu_buf_ptr(b) + off;
    cudaError_t e = cudaSuccess;
    gpu_bind(c);
    if (!c->staging[0]) {
        e = cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, c->stream);
        if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
        return e == cudaSuccess ? LOOM_OK : gpu_fail(be, e, "upload");
    }
    for (size_t done = 0; done < n && e == cudaSuccess;) {
        const size_t len = n - done < GPU_STAGING_BYTES ? n - done : GPU_STAGING_BYTES;
        const int s = c->slot;
        c->slot ^= 1;
        e = cudaEventSynchronize(c->ev[s]); /* the slot's previous copy is done */
        if (e != cudaSuccess) break;
        memcpy(c->staging[s], (const char *)src + done, len);
        e = cudaMemcpyAsync(dst + done, c->staging[s], len, cudaMemcpyHostToDevice, c->stream);
        if (e == cudaSuccess) e = cudaEventRecord(c->ev[s], c->stream);
        done += len;
    }
    return e == cudaSuccess ? LOOM_OK : gpu_fail(be, e, "upload");
}

static loom_status gpu_buffer_download(loom_buffer *b, size_t off, void *dstv, size_t n) {
    LOOM_TRY(gpu_check_range(b, off, dstv, n, "download"));
    loom_backend *be = b->backend;
    gpu_ctx *c = (gpu_ctx *)be->ctx;
    const char *src = gpu_buf_ptr(b) + off;
    char *dst = (char *)dstv;
    cudaError_t e = cudaSuccess;
    gpu_bind(c);
    if (!c->staging[0]) {
        e = cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, c->stream);
        if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
        return e == cudaSuccess ? LOOM_OK : gpu_fail(be, e, "download");
    }
    const size_t nch = (n + GPU_STAGING_BYTES - 1) / GPU_STAGING_BYTES;
    /* Chunk i goes through slot i % 2; chunk i+1 is in flight while chunk i
     * is copied out on the host. */
    for (size_t i = 0; i <= nch && e == cudaSuccess; i++) {
        if (i < nch) {
            const size_t o = i * GPU_STAGING_BYTES;
            const size_t len = n - o < GPU_STAGING_BYTES ? n - o : GPU_STAGING_BYTES;
            e = cudaMemcpyAsync(c->staging[i & 1], src + o, len, cudaMemcpyDeviceToHost, c->stream);
            if (e == cudaSuccess) e = cudaEventRecord(c->ev[i & 1], c->stream);
        }
        if (i > 0 && e == cudaSuccess) {
            const size_t j = i - 1, o = j * GPU_STAGING_BYTES;
            const size_t len = n - o < GPU_STAGING_BYTES ? n - o : GPU_STAGING_BYTES;
            e = cudaEventSynchronize(c->ev[j & 1]);
            if (e == cudaSuccess) memcpy(dst + o, c->staging[j & 1], len);
        }
    }
    return e == cudaSuccess ? LOOM_OK : gpu_fail(be, e, "download");
}

/* ---------------- supports ---------------- */

static bool is_f32(const loom_tensor *t) {
    return t && t->dtype == LOOM_F32;
}
static bool is_float(const loom_tensor *t) {
    return t && (t->dtype == LOOM_F32 || t->dtype == LOOM_F16 || t->dtype == LOOM_BF16);
}

/* Same rule as kernels/ref: nf4 rows are addressed by element offset into one
 * contiguous storage tensor. */
static bool nf4_view_ok(const loom_tensor *w) {
    const loom_tensor *s = w->view_src ? w->view_src : w;
    if (s->dtype != w->dtype || !loom_tensor_is_contiguous(s)) return false;
    return w->ne[1] <= 1 || w->nb[1] == (size_t)w->ne[0] / 2;
}

static bool is_legacy_q(loom_dtype t) {
    return t == LOOM_Q4_1 || t == LOOM_Q5_0 || t == LOOM_Q5_1;
}

/* Weights of op (matmul/moe): a dtype the op takes (loom_op_weight_dtype_ok,
 * the one rule) that kernels/cuda/dequant.cuh decodes, in a layout it reads. */
static bool weight_ok(loom_op op, const loom_tensor *w) {
    if (!w || !loom_op_weight_dtype_ok(op, w->dtype)) return false;
    if (loom_dtype_is_nf4(w->dtype)) return nf4_view_ok(w);
    /* q4_1/q5_0/q5_1: matmul's generic kernels (lc_get); the grouped MoE GEMM
     * decodes only dequant.cuh's units, so their MoE stays on the cpu */
    if (is_legacy_q(w->dtype)) return op == LOOM_OP_MATMUL && w->ne[0] % 32 == 0;
    if (lc_is_kq(w->dtype)) /* kernels/cuda/kquant.cu: matmul only, not moe yet */
        return op == LOOM_OP_MATMUL && w->ne[0] % LOOM_QK_K == 0;
    return is_float(w) || w->dtype == LOOM_Q8_0 || w->dtype == LOOM_Q4_0;
}

static bool gpu_supports(loom_backend *be, const loom_tensor *node) {
    (void)be;
    if (!node) return false;
    loom_tensor *const *s = node->src;
    switch (node->op) {
    case LOOM_OP_NONE:
    case LOOM_OP_VIEW:
        return true;
    case LOOM_OP_ADD:
    case LOOM_OP_MUL:
    case LOOM_OP_SWIGLU:
    case LOOM_OP_SILU_BACK:
    case LOOM_OP_GELU_BACK:
        return is_f32(node) && is_f32(s[0]) && is_f32(s[1]);
    case LOOM_OP_SCALE:
    case LOOM_OP_SILU:
    case LOOM_OP_GELU:
    case LOOM_OP_RMS_NORM:
    case LOOM_OP_SOFTMAX:
        return is_f32(node) && is_f32(s[0]) &&
               node->ne[1] * node->ne[2] * node->ne[3] <= 0x7fffffff;
    case LOOM_OP_ROPE:
        return is_f32(node) && is_f32(s[0]) && s[1] && s[1]->dtype == LOOM_I32;
    case LOOM_OP_GET_ROWS:
        /* the rule (ir), then what kernels/cuda/dequant.cuh decodes */
        return is_f32(node) && s[0] && loom_op_weight_dtype_ok(LOOM_OP_GET_ROWS, s[0]->dtype) &&
               (is_float(s[0]) || s[0]->dtype == LOOM_Q8_0 || s[0]->dtype == LOOM_Q4_0 ||
                is_legacy_q(s[0]->dtype) ||
                (lc_is_kq(s[0]->dtype) && s[0]->ne[0] % LOOM_QK_K == 0)) &&
               s[1] && s[1]->dtype == LOOM_I32;
    case LOOM_OP_SET_ROWS: /* f32/f16/bf16 caches; quantizing stays on the cpu */
        return is_float(node) && s[1] && s[1]->dtype == LOOM_F32 && s[2] &&
               s[2]->dtype == LOOM_I32 && s[1]->ne[1] * s[1]->ne[2] <= 0x7fffffff;
    case LOOM_OP_CPY:
        if (!s[0]) return false;
        if (node->dtype == LOOM_I32) return s[0]->dtype == LOOM_I32;
        if (!is_float(node)) return false; /* quantizing stays on the CPU (exact ggml rounding) */
        if (is_float(s[0])) return true;
        if (s[0]->dtype == LOOM_Q8_0 || s[0]->dtype == LOOM_Q4_0 || is_legacy_q(s[0]->dtype))
            return s[0]->ne[0] % 32 == 0;
        if (lc_is_kq(s[0]->dtype)) return s[0]->ne[0] % LOOM_QK_K == 0;
        return loom_dtype_is_nf4(s[0]->dtype) && nf4_view_ok(s[0]);
    case LOOM_OP_MATMUL:
        return is_f32(node) && weight_ok(node->op, s[0]) && is_float(s[1]) &&
               s[1]->ne[2] * s[1]->ne[3] <= 65535 && s[1]->ne[1] <= 8 * 65535;
    case LOOM_OP_FLASH_ATTN:
        if (s[4]) return false; /* batched paged form (docs/adr/0044): no kernel yet */
        if (node->p.i[3] != 0 && (!s[3] || s[3]->dtype != LOOM_I32 ||
                                  s[3]->nb[0] != sizeof(int32_t) || s[0]->ne[3] != 1))
            return false;
        return is_f32(node) && is_f32(s[0]) && s[1] && s[2] &&
               (s[1]->dtype == LOOM_F32 || s[1]->dtype == LOOM_F16) &&
               (s[2]->dtype == LOOM_F32 || s[2]->dtype == LOOM_F16) && s[0]->ne[0] <= 256;
    case LOOM_OP_FLASH_ATTN_BACK:
        return is_f32(node) && is_f32(s[0]) && s[1] && s[2] &&
               (s[1]->dtype == LOOM_F32 || s[1]->dtype == LOOM_F16) &&
               s[2]->dtype == s[1]->dtype && is_f32(s[3]) && is_f32(s[4]) &&
               s[0]->ne[0] <= 256 && node->p.i[3] >= 0 && node->p.i[3] <= 2;
    case LOOM_OP_MOE: {
        if (!is_f32(node) || !is_f32(s[0]) || !is_f32(s[1])) return false;
        if (!weight_ok(node->op, s[2]) || !weight_ok(node->op, s[3]) || !weight_ok(node->op, s[4]))
            return false;
        const int64_t T = s[0]->ne[1], k = node->p.i[0];
        return s[1]->ne[0] <= 256 && T <= 65535 && T * k <= 65535;
    }
    case LOOM_OP_MOE_GATE:
        return is_f32(node) && is_f32(s[0]) && s[0]->ne[0] <= 256;
    default:
        return false; /* concat, cross_entropy, sum_to and the other backward ops: CPU */
    }
}

/* ---------------- compute ---------------- */

static loom_status desc(loom_backend *be, const loom_tensor *node, const loom_tensor *t,
                        lc_tensor *d) {
    memset(d, 0, sizeof *d);
    if (!t) return LOOM_OK;
    if (!t->buffer || !t->buffer->handle || t->buffer->backend != be)
        return loom_backend_fail(be, LOOM_ERR_INVALID_ARG,
                                 "op %s node '%s': tensor '%s' is not in a " GPU_NAME " buffer",
                                 loom_op_name(node->op), node->name, t->name);
    d->data = gpu_buf_ptr(t->buffer) + t->offset;
    d->dtype = (int)t->dtype;
    for (int i = 0; i < 4; i++) {
        d->ne[i] = t->ne[i];
        d->nb[i] = (int64_t)t->nb[i];
    }
    if (loom_dtype_is_nf4(t->dtype)) {
        const loom_tensor *st = t->view_src ? t->view_src : t;
        if (!st->buffer || st->buffer->backend != be)
            return loom_backend_fail(be, LOOM_ERR_INVALID_ARG,
                                     "op %s node '%s': nf4 storage of '%s' is not on " GPU_NAME,
                                     loom_op_name(node->op), node->name, t->name);
        const char *base = gpu_buf_ptr(st->buffer) + st->offset;
        const int64_t n = loom_tensor_nelements(st);
        const size_t codes = (size_t)n / 2, nblk = (size_t)n / LOOM_NF4_BLOCK;
        const size_t ngrp = (nblk + LOOM_NF4_DQ_BLOCK - 1) / LOOM_NF4_DQ_BLOCK;
        d->codes = (const uint8_t *)base;
        if (t->dtype == LOOM_NF4) {
            d->absmax = (const float *)(base + codes);
        } else {
            const size_t s2 = codes + (nblk + 3) / 4 * 4;
            d->qabsmax = (const uint8_t *)(base + codes);
            d->scale2 = (const float *)(base + s2);
            d->dq_offset = (const float *)(base + s2 + 4 * ngrp);
        }
        d->nf4_first = t->view_src ? 2 * (int64_t)t->view_offs : 0;
        d->code = ((gpu_ctx *)be->ctx)->tables;
    }
    return LOOM_OK;
}

/* Device scratch of at least n bytes (cudaFree waits for the device, so no
 * kernel still uses the old one). */
static loom_status need_scratch(loom_backend *be, size_t n, void **out) {
    gpu_ctx *c = (gpu_ctx *)be->ctx;
    if (n > c->scratch_size) {
        if (c->scratch) (void)cudaFree(c->scratch);
        c->scratch = NULL;
        c->scratch_size = 0;
        cudaError_t e = cudaMalloc(&c->scratch, n);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            c->scratch = NULL;
            return loom_backend_fail(be, LOOM_ERR_OOM, GPU_API "Malloc(%zu) for scratch: %s (%d)",
                                     n, cudaGetErrorString(e), (int)e);
        }
        c->scratch_size = n;
    }
    *out = c->scratch;
    return LOOM_OK;
}

/* Device table of p's rope frequencies. Uploaded (stream-ordered, after the
 * kernels that read the previous table) only when it differs from the last
 * one; the synchronize makes the pageable source safe to reuse. */
static loom_status rope_freq(loom_backend *be, const loom_rope_params *p, const double **out) {
    gpu_ctx *c = (gpu_ctx *)be->ctx;
    const int n = p->n_dims / 2;
    if (n > c->rope_cap) {
        if (c->rope_dev) (void)cudaFree(c->rope_dev);
        free(c->rope_host);
        c->rope_dev = NULL;
        c->rope_n = c->rope_cap = 0;
        c->rope_host = (double *)malloc(2 * (size_t)n * sizeof(double));
        cudaError_t e = c->rope_host ? cudaMalloc((void **)&c->rope_dev, (size_t)n * sizeof(double))
                                     : cudaErrorMemoryAllocation;
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            free(c->rope_host);
            c->rope_host = NULL;
            c->rope_dev = NULL;
            return loom_backend_fail(be, LOOM_ERR_OOM, "rope: no memory for %d frequencies", n);
        }
        c->rope_cap = n;
    }
    double *next = c->rope_host + c->rope_cap;
    loom_rope_freq_table(p, next, NULL);
    if (n != c->rope_n || memcmp(next, c->rope_host, (size_t)n * sizeof(double))) {
        memcpy(c->rope_host, next, (size_t)n * sizeof(double));
        c->rope_n = -1; /* not valid until the copy is done */
        cudaError_t e = cudaMemcpyAsync(c->rope_dev, c->rope_host, (size_t)n * sizeof(double),
                                        cudaMemcpyHostToDevice, c->stream);
        if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
        if (e != cudaSuccess) return gpu_fail(be, e, "rope frequency upload");
        c->rope_n = n;
    }
    *out = c->rope_dev;
    return LOOM_OK;
}

static size_t dtype_es(int dt) {
    return dt == LOOM_F32 ? 4 : 2;
}

#if LOOM_HAVE_BLAS
static
#if defined(LOOM_USE_HIP)
    hipblasDatatype_t
#else
    cudaDataType_t
#endif
    blas_type(int dt) {
    return dt == LOOM_F32 ? CUDA_R_32F : dt == LOOM_F16 ? CUDA_R_16F : CUDA_R_16BF;
}

/* cuBLAS path (see kernels/cuda/matmul.cu). Returns LOOM_ERR_UNSUPPORTED
 * (nothing enqueued, no message) when the layout does not fit it. */
static loom_status matmul_blas(loom_backend *be, const loom_tensor *node, const lc_tensor *o,
                               const lc_tensor *w, const lc_tensor *x) {
    gpu_ctx *c = (gpu_ctx *)be->ctx;
    const int64_t K = w->ne[0], N = w->ne[1], M = x->ne[1], X2 = x->ne[2], X3 = x->ne[3];
    const int wt = w->dtype;
    if (wt != LOOM_F32 && wt != LOOM_F16 && wt != LOOM_BF16) return LOOM_ERR_UNSUPPORTED;
    const size_t es = dtype_es(wt);
    if (M < GPU_GEMM_MIN_M || K > 0x7fffffff || N > 0x7fffffff || M > 0x7fffffff)
        return LOOM_ERR_UNSUPPORTED;
    if ((size_t)w->nb[0] != es || w->nb[1] % es || w->nb[2] % es || w->nb[3] % es ||
        w->nb[1] / (int64_t)es < K)
        return LOOM_ERR_UNSUPPORTED;
    if (o->nb[0] != 4 || o->nb[1] != 4 * N || o->nb[2] != o->nb[1] * M || o->nb[3] != o->nb[2] * X2)
        return LOOM_ERR_UNSUPPORTED;

    /* The x operand: used in place when it already has the weight's dtype
     * and unit stride, else converted into scratch (hi, and lo for bf16). */
    const char *xh = NULL, *xl = NULL;
    int64_t ldx, sx2, sx3; /* element strides of the x operand */
    if (x->dtype == wt && (size_t)x->nb[0] == es && x->nb[1] % es == 0 && x->nb[2] % es == 0 &&
        x->nb[3] % es == 0 && x->nb[1] / (int64_t)es >= K) {
        xh = x->data;
        ldx = x->nb[1] / (int64_t)es;
        sx2 = x->nb[2] / (int64_t)es;
        sx3 = x->nb[3] / (int64_t)es;
    } else if (wt == LOOM_F16 || wt == LOOM_BF16) {
        const size_t ne = (size_t)(K * M * X2 * X3);
        const bool need_lo = wt == LOOM_BF16 && x->dtype != LOOM_BF16;
        const size_t half = (ne * 2 + 255) & ~(size_t)255;
        void *scr = NULL;
        LOOM_TRY(need_scratch(be, need_lo ? 2 * half : half, &scr));
        int e = lc_convert_half(c->stream, *x, wt, scr, need_lo ? (char *)scr + half : NULL);
        if (e) return gpu_fail(be, (cudaError_t)e, "convert x for GEMM");
        xh = (const char *)scr;
        xl = need_lo ? (const char *)scr + half : NULL;
        ldx = K;
        sx2 = K * M;
        sx3 = K * M * X2;
    } else {
        return LOOM_ERR_UNSUPPORTED; /* f32 weights, half x: the row kernel reads it directly */
    }

    const float one = 1.0f, zero = 0.0f;
    const int64_t r2 = X2 / w->ne[2], r3 = X3 / w->ne[3];
    /* One GEMM over all slices when the weight is shared and x is dense. */
    const bool merged = w->ne[2] == 1 && w->ne[3] == 1 && ldx == K && sx2 == K * M &&
                        sx3 == K * M * X2 && M * X2 * X3 <= 0x7fffffff;
    const int64_t n_slices = merged ? 1 : X2 * X3;
    const int64_t Mg = merged ? M * X2 * X3 : M;
    for (int64_t sl = 0; sl < n_slices; sl++) {
        const int64_t i2 = sl % X2, i3 = sl / X2;
        const char *wp = w->data + (i2 / r2) * w->nb[2] + (i3 / r3) * w->nb[3];
        float *op = (float *)(o->data + i2 * o->nb[2] + i3 * o->nb[3]);
        const int64_t xoff = (i2 * sx2 + i3 * sx3) * (int64_t)es;
        for (int part = 0; part < (xl ? 2 : 1); part++) {
            const char *xp = (part ? xl : xh) + xoff;
            cublasStatus_t st = cublasGemmEx(
                c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)Mg, (int)K, &one, wp, blas_type(wt),
                (int)(w->nb[1] / es), xp, blas_type(wt), (int)ldx, part ? &one : &zero, op,
                CUDA_R_32F, (int)N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
            if (st != CUBLAS_STATUS_SUCCESS)
                return loom_backend_fail(be, LOOM_ERR_DEVICE,
                                         "op matmul node '%s': cublasGemmEx failed (status %d)",
                                         node->name, (int)st);
        }
    }
    return LOOM_OK;
}
#endif

/* Quantized weights with many columns (prefill): LOOM_CUDA_QGEMM (HIP:
 * LOOM_HIP_QGEMM) = blas (default; dequantize to f16 hi + lo, three cuBLAS
 * GEMMs, see kernels/cuda/matmul.cu) or tiled (the fused dequant-GEMM kernel),
 * from LOOM_CUDA_QGEMM_MIN_M (LOOM_HIP_QGEMM_MIN_M) columns x slices on
 * (default GPU_QGEMM_MIN_M). Below it, and for layouts the fast decode kernel
 * takes, the decode kernel in column tiles of 8 streams the weights
 * ceil(M / 8) times, which beats both up to about that M. Read once. */
#if defined(LOOM_USE_HIP)
#define GPU_QGEMM_ENV "LOOM_HIP_QGEMM"
#else
#define GPU_QGEMM_ENV "LOOM_CUDA_QGEMM"
#endif
#define GPU_QGEMM_MIN_M 64
/* f16 weight rows dequantized per pass (hi; lo as much again) */
#define GPU_QGEMM_WBYTES ((size_t)64 << 20)

typedef struct qgemm_cfg {
    int tiled;     /* 1: fused tiled kernel, 0: dequantize + BLAS */
    int64_t min_m; /* columns (x slices) from which a quantized matmul is a GEMM */
} qgemm_cfg;

static qgemm_cfg qgemm_get(void) {
    static int done;
    static qgemm_cfg cfg;
    if (!done) {
        qgemm_cfg c = {!LOOM_HAVE_BLAS, GPU_QGEMM_MIN_M};
        const char *m = getenv(GPU_QGEMM_ENV);
        if (m && !strcmp(m, "tiled")) c.tiled = 1;
        const char *n = getenv(GPU_QGEMM_ENV "_MIN_M");
        if (n && atoll(n) > 0) c.min_m = atoll(n);
        cfg = c; /* same value from any thread: a benign race */
        done = 1;
    }
    return cfg;
}

#if LOOM_HAVE_BLAS
static size_t align256(size_t n) {
    return (n + 255) & ~(size_t)255;
}

/* Quantized weight (q8_0/q4_0/nf4/nf4_dq, one slice, a layout the fast
 * decoders take) times many columns: x -> f16 hi (+ lo unless x is f16) in
 * scratch, then per pass of up to GPU_QGEMM_WBYTES of rows: dequantize to f16
 * hi + lo and accumulate W_hi X_hi + W_hi X_lo + W_lo X_hi (f32 compute). The
 * lo terms keep ~22 bits of w and x (one f16 rounding would exceed the
 * parity tolerance of quantized matmuls). LOOM_ERR_UNSUPPORTED (nothing
 * enqueued): not this path. */
static loom_status matmul_qblas(loom_backend *be, const loom_tensor *node, const lc_tensor *o,
                                const lc_tensor *w, const lc_tensor *x) {
    gpu_ctx *c = (gpu_ctx *)be->ctx;
    const int wt = w->dtype;
    if (wt != LOOM_Q8_0 && wt != LOOM_Q4_0 && wt != LOOM_NF4 && wt != LOOM_NF4_DQ)
        return LOOM_ERR_UNSUPPORTED;
    const qgemm_cfg cfg = qgemm_get();
    const int64_t K = w->ne[0], N = w->ne[1], M = x->ne[1], X2 = x->ne[2], X3 = x->ne[3];
    const int64_t Mg = M * X2 * X3;
    if (cfg.tiled || Mg < cfg.min_m || w->ne[2] != 1 || w->ne[3] != 1) return LOOM_ERR_UNSUPPORTED;
    if (K > 0x7fffffff || N > 0x7fffffff || Mg > 0x7fffffff) return LOOM_ERR_UNSUPPORTED;
    if (o->nb[0] != 4 || o->nb[1] != 4 * N || o->nb[2] != o->nb[1] * M || o->nb[3] != o->nb[2] * X2)
        return LOOM_ERR_UNSUPPORTED;
    if (lc_dequant_half(c->stream, *w, 0, 0, NULL, NULL) != 0) /* rows = 0: layout check only */
        return LOOM_ERR_UNSUPPORTED;

    int64_t chunk = (int64_t)(GPU_QGEMM_WBYTES / ((size_t)K * 2));
    if (chunk >= 64) chunk -= chunk % 64;
    if (chunk < 1) chunk = 1;
    if (chunk > N) chunk = N;
    const bool x_lo = x->dtype != LOOM_F16; /* f16 x is exact in one half */
    const size_t xb = align256((size_t)(K * Mg) * 2), wb = align256((size_t)(chunk * K) * 2);
    void *scr = NULL;
    LOOM_TRY(need_scratch(be, xb * (x_lo ? 2 : 1) + 2 * wb, &scr));
    char *xh = (char *)scr, *xl = x_lo ? xh + xb : NULL;
    char *wh = xh + xb * (x_lo ? 2 : 1), *wl = wh + wb;
    int e = lc_convert_half(c->stream, *x, LOOM_F16, xh, xl);
    if (e) return gpu_fail(be, (cudaError_t)e, "convert x for quantized GEMM");

    const float one = 1.0f, zero = 0.0f;
    for (int64_t n0 = 0; n0 < N; n0 += chunk) {
        const int64_t rows = N - n0 < chunk ? N - n0 : chunk;
        e = lc_dequant_half(c->stream, *w, n0, rows, wh, wl);
        if (e) return gpu_fail(be, (cudaError_t)e, "dequantize weights for GEMM");
        const char *as[3] = {wh, wh, wl}, *bs[3] = {xh, xl, xh};
        for (int t = 0; t < 3; t++) {
            if (!bs[t]) continue;
            cublasStatus_t st = cublasGemmEx(
                c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, (int)Mg, (int)K, &one, as[t],
                CUDA_R_16F, (int)K, bs[t], CUDA_R_16F, (int)K, t ? &one : &zero,
                (float *)o->data + n0, CUDA_R_32F, (int)N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
            if (st != CUBLAS_STATUS_SUCCESS)
                return loom_backend_fail(be, LOOM_ERR_DEVICE,
                                         "op matmul node '%s': cublasGemmEx (quantized, %s) "
                                         "failed (status %d)",
                                         node->name, loom_dtype_name((loom_dtype)wt), (int)st);
        }
    }
    return LOOM_OK;
}
#endif

/* Matmul with loom's own kernels: the decode kernel (fast path when
 * lc_matmul_fast_ok, generic otherwise) for few columns, the tiled kernel for
 * many (from GPU_TILED_MIN_M for the generic layouts, from the quantized-GEMM
 * threshold where the fast decode kernel applies). */
static int matmul_kernels(void *st, lc_tensor y, lc_tensor w, lc_tensor x) {
    if (lc_is_kq(w.dtype)) return lc_matmul_kq(st, y, w, x);
    const int64_t lim = lc_matmul_fast_ok(w, x) ? qgemm_get().min_m : GPU_TILED_MIN_M;
    return x.ne[1] >= lim ? lc_matmul_tiled(st, y, w, x) : lc_matmul_rows(st, y, w, x);
}

static loom_status run_node(loom_backend *be, loom_tensor *node) {
    gpu_ctx *c = (gpu_ctx *)be->ctx;
    void *st = (void *)c->stream;
    if (node->op == LOOM_OP_NONE || node->op == LOOM_OP_VIEW) return LOOM_OK;
    lc_tensor y, a, b, d2, d3, d4;
    LOOM_TRY(desc(be, node, node, &y));
    LOOM_TRY(desc(be, node, node->src[0], &a));
    LOOM_TRY(desc(be, node, node->src[1], &b));
    int e = 0;
    switch (node->op) {
    case LOOM_OP_ADD:
    case LOOM_OP_MUL:
        e = lc_binary(st, node->op == LOOM_OP_MUL, y, a, b);
        break;
    case LOOM_OP_SCALE:
        e = lc_unary(st, 0, node->p.f[0], y, a, b);
        break;
    case LOOM_OP_SILU:
        e = lc_unary(st, 1, 0.0f, y, a, b);
        break;
    case LOOM_OP_SWIGLU:
        e = lc_unary(st, 2, 0.0f, y, a, b);
        break;
    case LOOM_OP_SILU_BACK:
        e = lc_unary(st, 3, 0.0f, y, a, b);
        break;
    case LOOM_OP_GELU:
        e = lc_unary(st, 4, 0.0f, y, a, b);
        break;
    case LOOM_OP_GELU_BACK:
        e = lc_unary(st, 5, 0.0f, y, a, b);
        break;
    case LOOM_OP_CPY:
        e = lc_cpy(st, y, a);
        break;
    case LOOM_OP_GET_ROWS:
        snprintf(c->err_node, sizeof c->err_node, "%s", node->name);
        e = lc_get_rows(st, y, a, b, c->err_word);
        break;
    case LOOM_OP_SET_ROWS: {
        lc_tensor r;
        LOOM_TRY(desc(be, node, node->src[2], &r));
        snprintf(c->err_node, sizeof c->err_node, "%s", node->name);
        e = lc_set_rows(st, y, b, r, c->err_word);
        break;
    }
    case LOOM_OP_RMS_NORM:
        e = lc_rms_norm(st, node->p.f[0], y, a);
        break;
    case LOOM_OP_SOFTMAX:
        e = lc_softmax(st, node->p.f[0], node->p.i[1] != 0, node->p.i[2], y, a);
        break;
    case LOOM_OP_ROPE: {
        loom_rope_params p;
        loom_rope_params_get(node, &p);
        if (p.n_dims < 0 || p.n_dims % 2 || p.n_dims > node->ne[0] ||
            (p.mode != LOOM_ROPE_NORMAL && p.mode != LOOM_ROPE_NEOX) ||
            loom_tensor_nelements(node->src[1]) != node->ne[2])
            return loom_backend_fail(be, LOOM_ERR_INVALID_ARG,
                                     "op rope node '%s': bad n_dims %d / mode %d / positions",
                                     node->name, (int)p.n_dims, (int)p.mode);
        const double *inv_freq;
        LOOM_TRY(rope_freq(be, &p, &inv_freq));
        e = lc_rope(st, p.n_dims, p.mode, p.inverse, inv_freq, y, a, b);
        break;
    }
    case LOOM_OP_MATMUL: {
#if LOOM_HAVE_BLAS
        loom_status s = matmul_blas(be, node, &y, &a, &b);
        if (s != LOOM_ERR_UNSUPPORTED) return s;
        s = matmul_qblas(be, node, &y, &a, &b);
        if (s != LOOM_ERR_UNSUPPORTED) return s;
#endif
        e = matmul_kernels(st, y, a, b);
        break;
    }
    case LOOM_OP_FLASH_ATTN: {
        LOOM_TRY(desc(be, node, node->src[2], &d2));
        if (node->p.i[3] != 0) { /* paged (docs/adr/0035): the block table is src[3] */
            LOOM_TRY(desc(be, node, node->src[3], &d3));
            e = lc_flash_attn_paged(st, node->p.f[0], node->p.i[2], node->p.i[3], y, a, b, d2,
                                    (const int32_t *)d3.data);
            break;
        }
        /* Split-KV partials (decode, short chunks) live in the scratch. */
        const size_t fa_bytes = lc_flash_attn_scratch_bytes(a, b, d2);
        void *scr = NULL;
        if (fa_bytes) LOOM_TRY(need_scratch(be, fa_bytes, &scr));
        e = lc_flash_attn_ex(st, node->p.f[0], node->p.i[1] != 0, node->p.i[2], y, a, b, d2, scr,
                             fa_bytes);
        break;
    }
    case LOOM_OP_FLASH_ATTN_BACK:
        LOOM_TRY(desc(be, node, node->src[2], &d2));
        LOOM_TRY(desc(be, node, node->src[3], &d3));
        LOOM_TRY(desc(be, node, node->src[4], &d4));
        e = lc_flash_attn_back(st, node->p.i[3], node->p.f[0], node->p.i[1] != 0, node->p.i[2], y,
                               a, b, d2, d3, d4);
        break;
    case LOOM_OP_MOE: {
        LOOM_TRY(desc(be, node, node->src[2], &d2));
        LOOM_TRY(desc(be, node, node->src[3], &d3));
        LOOM_TRY(desc(be, node, node->src[4], &d4));
        void *scr = NULL;
        const size_t moe_bytes = lc_moe_scratch_bytes(node->p.i[0], a, b, d2, d3, d4);
        LOOM_TRY(need_scratch(be, moe_bytes, &scr));
        e = lc_moe(st, node->p.i[0], y, a, b, d2, d3, d4, scr);
        break;
    }
    case LOOM_OP_MOE_GATE:
        e = lc_moe_gate(st, node->p.i[0], y, a);
        break;
    default:
        return loom_backend_fail(be, LOOM_ERR_UNSUPPORTED,
                                 "op %s node '%s': not supported by " GPU_NAME,
                                 loom_op_name(node->op), node->name);
    }
    if (e)
        return loom_backend_fail(be, LOOM_ERR_DEVICE, "op %s node '%s': kernel launch: %s (%d)",
                                 loom_op_name(node->op), node->name,
                                 cudaGetErrorString((cudaError_t)e), e);
    return LOOM_OK;
}

static loom_status gpu_compute(loom_backend *be, loom_tensor *const *nodes, int n_nodes) {
    gpu_bind((gpu_ctx *)be->ctx);
    for (int i = 0; i < n_nodes; i++)
        LOOM_TRY(run_node(be, nodes[i]));
    return LOOM_OK;
}

static loom_status gpu_synchronize(loom_backend *be) {
    gpu_ctx *c = (gpu_ctx *)be->ctx;
    gpu_bind(c);
    cudaError_t e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess) return gpu_fail(be, e, "stream synchronize (a kernel failed)");
    int word = 0;
    e = cudaMemcpy(&word, c->err_word, sizeof word, cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) return gpu_fail(be, e, "read error word");
    if (word != LC_ERR_NONE) {
        const int zero = 0;
        (void)cudaMemcpy(c->err_word, &zero, sizeof zero, cudaMemcpyHostToDevice);
        if (word == LC_ERR_BAD_ROW)
            return loom_backend_fail(be, LOOM_ERR_INVALID_ARG,
                                     "op set_rows node '%s': a row is outside the destination",
                                     c->err_node);
        return loom_backend_fail(be, LOOM_ERR_INVALID_ARG,
                                 "op get_rows node '%s': an id is outside the table", c->err_node);
    }
    return LOOM_OK;
}

/* The registry makes one instance per device (cuda:0, cuda:1, ...). */
static int gpu_device_count(loom_backend *be) {
    const gpu_ctx *c = (const gpu_ctx *)be->ctx;
    return c ? c->n_exposed : 0;
}

static loom_backend_iface make_iface(void) {
    loom_backend_iface f;
    memset(&f, 0, sizeof f);
    f.abi_version = LOOM_BACKEND_ABI_VERSION;
    f.name = GPU_NAME;
    f.priority = GPU_PRIORITY;
    f.init = gpu_init;
    f.shutdown = gpu_shutdown;
    f.device_info = gpu_device_info;
    f.buffer_alloc = gpu_buffer_alloc;
    f.buffer_free = gpu_buffer_free;
    f.buffer_upload = gpu_buffer_upload;
    f.buffer_download = gpu_buffer_download;
    f.supports = gpu_supports;
    f.compute = gpu_compute;
    f.synchronize = gpu_synchronize;
    f.device_count = gpu_device_count;
    return f;
}

static const loom_backend_iface k_gpu_iface = make_iface();

extern "C" __attribute__((visibility("default"))) const loom_backend_iface *
loom_backend_plugin_entry(void) {
    return &k_gpu_iface;
}
