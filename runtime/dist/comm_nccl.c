/* runtime/dist/comm_nccl.c - the NCCL communicator (see dist.h): libnccl.so.2
 * and the CUDA runtime are loaded with dlopen, so the build needs neither
 * (NCCL comes with the CUDA toolkit image or PyPI's nvidia-nccl-cu13). The
 * few declarations below are NCCL's and CUDA's stable C ABI (nccl.h 2.x,
 * cuda_runtime_api.h): opaque handles, int results, the data type numbers. */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"

typedef struct nccl_unique_id {
    char internal[128]; /* NCCL_UNIQUE_ID_BYTES */
} nccl_unique_id;
typedef void *nccl_comm_t;
typedef void *cuda_stream_t;
enum { NCCL_UINT8 = 1, NCCL_INT64 = 4, NCCL_FLOAT32 = 7, NCCL_FLOAT64 = 8 };
enum { NCCL_SUM = 0 };
enum { CUDA_H2D = 1, CUDA_D2H = 2 }; /* cudaMemcpyKind */

typedef struct nccl_api {
    void *lib, *cudart;
    int (*get_unique_id)(nccl_unique_id *);
    int (*comm_init_rank)(nccl_comm_t *, int, nccl_unique_id, int);
    int (*comm_destroy)(nccl_comm_t);
    int (*all_reduce)(const void *, void *, size_t, int, int, nccl_comm_t, cuda_stream_t);
    int (*broadcast)(const void *, void *, size_t, int, int, nccl_comm_t, cuda_stream_t);
    int (*reduce_scatter)(const void *, void *, size_t, int, int, nccl_comm_t, cuda_stream_t);
    int (*all_gather)(const void *, void *, size_t, int, nccl_comm_t, cuda_stream_t);
    int (*group_start)(void);
    int (*group_end)(void);
    const char *(*error_string)(int);
    int (*cuda_set_device)(int);
    int (*cuda_get_device_count)(int *);
    int (*cuda_malloc)(void **, size_t);
    int (*cuda_free)(void *);
    int (*cuda_memcpy)(void *, const void *, size_t, int);
    int (*cuda_stream_create)(cuda_stream_t *);
    int (*cuda_stream_destroy)(cuda_stream_t);
    int (*cuda_stream_sync)(cuda_stream_t);
} nccl_api;

typedef struct nccl_impl {
    nccl_api api;
    nccl_comm_t comm;
    cuda_stream_t stream;
    loom_comm *boot; /* the MPI comm it was bootstrapped over (owned) */
    void *dev;       /* staging buffer */
    size_t dev_bytes;
} nccl_impl;

static int ntype(loom_comm_dtype t) {
    return t == LOOM_COMM_F32 ? NCCL_FLOAT32 : t == LOOM_COMM_F64 ? NCCL_FLOAT64
                             : t == LOOM_COMM_I64 ? NCCL_INT64 : NCCL_UINT8;
}

/* The staging buffer grows to the largest collective seen. */
static loom_status stage(nccl_impl *n, size_t bytes) {
    if (bytes <= n->dev_bytes) return LOOM_OK;
    if (n->dev) n->api.cuda_free(n->dev);
    n->dev = NULL;
    n->dev_bytes = 0;
    if (n->api.cuda_malloc(&n->dev, bytes) != 0) return LOOM_ERR_OOM;
    n->dev_bytes = bytes;
    return LOOM_OK;
}

static loom_status finish(nccl_impl *n, int rc) {
    if (rc != 0) return LOOM_ERR_DEVICE;
    return n->api.cuda_stream_sync(n->stream) == 0 ? LOOM_OK : LOOM_ERR_DEVICE;
}

static loom_status nc_allreduce(loom_comm *c, void *buf, size_t count, loom_comm_dtype t) {
    nccl_impl *n = c->impl;
    size_t b = count * loom_comm_dtype_size(t);
    if (t == LOOM_COMM_U8) return LOOM_ERR_INVALID_ARG;
    LOOM_TRY(stage(n, b));
    if (n->api.cuda_memcpy(n->dev, buf, b, CUDA_H2D)) return LOOM_ERR_DEVICE;
    LOOM_TRY(finish(n, n->api.all_reduce(n->dev, n->dev, count, ntype(t), NCCL_SUM, n->comm,
                                         n->stream)));
    return n->api.cuda_memcpy(buf, n->dev, b, CUDA_D2H) ? LOOM_ERR_DEVICE : LOOM_OK;
}

static loom_status nc_bcast(loom_comm *c, void *buf, size_t count, loom_comm_dtype t, int root) {
    nccl_impl *n = c->impl;
    size_t b = count * loom_comm_dtype_size(t);
    LOOM_TRY(stage(n, b));
    if (c->rank == root && n->api.cuda_memcpy(n->dev, buf, b, CUDA_H2D)) return LOOM_ERR_DEVICE;
    LOOM_TRY(finish(n, n->api.broadcast(n->dev, n->dev, count, ntype(t), root, n->comm,
                                        n->stream)));
    return n->api.cuda_memcpy(buf, n->dev, b, CUDA_D2H) ? LOOM_ERR_DEVICE : LOOM_OK;
}

static loom_status nc_rs(loom_comm *c, const void *send, void *recv, size_t count,
                         loom_comm_dtype t) {
    nccl_impl *n = c->impl;
    size_t es = loom_comm_dtype_size(t), b = count * es * (size_t)c->size;
    if (t == LOOM_COMM_U8) return LOOM_ERR_INVALID_ARG;
    LOOM_TRY(stage(n, b + count * es));
    char *d = n->dev;
    if (n->api.cuda_memcpy(d, send, b, CUDA_H2D)) return LOOM_ERR_DEVICE;
    LOOM_TRY(finish(n, n->api.reduce_scatter(d, d + b, count, ntype(t), NCCL_SUM, n->comm,
                                             n->stream)));
    return n->api.cuda_memcpy(recv, d + b, count * es, CUDA_D2H) ? LOOM_ERR_DEVICE : LOOM_OK;
}

static loom_status nc_allgather(loom_comm *c, const void *send, void *recv, size_t count,
                                loom_comm_dtype t) {
    nccl_impl *n = c->impl;
    size_t es = loom_comm_dtype_size(t), b = count * es * (size_t)c->size;
    LOOM_TRY(stage(n, b));
    char *d = n->dev;
    if (n->api.cuda_memcpy(d + (size_t)c->rank * count * es, send, count * es, CUDA_H2D))
        return LOOM_ERR_DEVICE;
    LOOM_TRY(finish(n, n->api.all_gather(d + (size_t)c->rank * count * es, d, count, ntype(t),
                                         n->comm, n->stream)));
    return n->api.cuda_memcpy(recv, d, b, CUDA_D2H) ? LOOM_ERR_DEVICE : LOOM_OK;
}

/* NCCL has no allgatherv: one broadcast per rank into its slot, grouped. */
static loom_status nc_allgatherv(loom_comm *c, const void *send, void *recv,
                                 const size_t *counts, loom_comm_dtype t) {
    nccl_impl *n = c->impl;
    size_t es = loom_comm_dtype_size(t), total = 0, mine = 0;
    for (int r = 0; r < c->size; r++) {
        if (r == c->rank) mine = total;
        total += counts[r];
    }
    LOOM_TRY(stage(n, total * es));
    char *d = n->dev;
    if (n->api.cuda_memcpy(d + mine * es, send, counts[c->rank] * es, CUDA_H2D))
        return LOOM_ERR_DEVICE;
    int rc = n->api.group_start();
    size_t off = 0;
    for (int r = 0; rc == 0 && r < c->size; r++) {
        rc = n->api.broadcast(d + off * es, d + off * es, counts[r], ntype(t), r, n->comm,
                              n->stream);
        off += counts[r];
    }
    if (rc == 0) rc = n->api.group_end();
    LOOM_TRY(finish(n, rc));
    return n->api.cuda_memcpy(recv, d, total * es, CUDA_D2H) ? LOOM_ERR_DEVICE : LOOM_OK;
}

static loom_status nc_barrier(loom_comm *c) {
    int64_t z = 0;
    return nc_allreduce(c, &z, 1, LOOM_COMM_I64);
}

static void nc_free(loom_comm *c) {
    nccl_impl *n = c->impl;
    if (n->comm) n->api.comm_destroy(n->comm);
    if (n->dev) n->api.cuda_free(n->dev);
    if (n->stream) n->api.cuda_stream_destroy(n->stream);
    loom_comm_free(n->boot);
    /* the libraries stay loaded: CUDA does not support being unloaded */
    free(n);
    free(c);
}

static const loom_comm_ops nccl_ops = {"nccl",        nc_allreduce,  nc_bcast,
                                       nc_rs,         nc_allgather,  nc_allgatherv,
                                       nc_barrier,    nc_free};

static void *open_first(const char *const *names) {
    for (int i = 0; names[i]; i++) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (h) return h;
    }
    return NULL;
}

#define SYM(lib, field, name)                                                    \
    do {                                                                         \
        *(void **)&a->field = dlsym(a->lib, name);                               \
        if (!a->field) {                                                         \
            snprintf(err, err_n, "nccl: %s has no symbol %s", #lib, name);       \
            return LOOM_ERR_UNAVAILABLE;                                         \
        }                                                                        \
    } while (0)

static loom_status load_api(nccl_api *a, char *err, size_t err_n) {
    static const char *const nccl_names[] = {"libnccl.so.2", "libnccl.so", NULL};
    static const char *const cudart_names[] = {"libcudart.so.13", "libcudart.so.12",
                                               "libcudart.so", NULL};
    if (!(a->lib = open_first(nccl_names))) {
        snprintf(err, err_n, "nccl: cannot load libnccl.so.2 (install NCCL, e.g. the CUDA "
                             "toolkit's or PyPI's nvidia-nccl-cu13, on the library path)");
        return LOOM_ERR_UNAVAILABLE;
    }
    if (!(a->cudart = open_first(cudart_names))) {
        snprintf(err, err_n, "nccl: cannot load the CUDA runtime (libcudart.so)");
        return LOOM_ERR_UNAVAILABLE;
    }
    SYM(lib, get_unique_id, "ncclGetUniqueId");
    SYM(lib, comm_init_rank, "ncclCommInitRank");
    SYM(lib, comm_destroy, "ncclCommDestroy");
    SYM(lib, all_reduce, "ncclAllReduce");
    SYM(lib, broadcast, "ncclBroadcast");
    SYM(lib, reduce_scatter, "ncclReduceScatter");
    SYM(lib, all_gather, "ncclAllGather");
    SYM(lib, group_start, "ncclGroupStart");
    SYM(lib, group_end, "ncclGroupEnd");
    SYM(lib, error_string, "ncclGetErrorString");
    SYM(cudart, cuda_set_device, "cudaSetDevice");
    SYM(cudart, cuda_get_device_count, "cudaGetDeviceCount");
    SYM(cudart, cuda_malloc, "cudaMalloc");
    SYM(cudart, cuda_free, "cudaFree");
    SYM(cudart, cuda_memcpy, "cudaMemcpy");
    SYM(cudart, cuda_stream_create, "cudaStreamCreate");
    SYM(cudart, cuda_stream_destroy, "cudaStreamDestroy");
    SYM(cudart, cuda_stream_sync, "cudaStreamSynchronize");
    return LOOM_OK;
}

loom_status loom_comm_nccl_new(loom_comm *boot, loom_comm **out, char *err, size_t err_n) {
    *out = NULL;
    nccl_impl *n = calloc(1, sizeof *n);
    loom_comm *c = calloc(1, sizeof *c);
    loom_status st = n && c ? LOOM_OK : LOOM_ERR_OOM;
    if (st == LOOM_OK) st = load_api(&n->api, err, err_n);
    /* every rank must learn whether every rank loaded NCCL before the
     * broadcast below, or a rank without it would leave the others waiting */
    st = loom_comm_agree(boot, st);
    int ndev = 0;
    if (st == LOOM_OK && (n->api.cuda_get_device_count(&ndev) != 0 || ndev < 1)) {
        snprintf(err, err_n, "nccl: no CUDA device");
        st = LOOM_ERR_UNAVAILABLE;
    }
    if (st == LOOM_OK && (n->api.cuda_set_device(boot->local_rank % ndev) != 0 ||
                          n->api.cuda_stream_create(&n->stream) != 0)) {
        snprintf(err, err_n, "nccl: cannot use CUDA device %d", boot->local_rank % ndev);
        st = LOOM_ERR_DEVICE;
    }
    nccl_unique_id id;
    memset(&id, 0, sizeof id);
    if (st == LOOM_OK && boot->rank == 0 && n->api.get_unique_id(&id) != 0) {
        snprintf(err, err_n, "nccl: ncclGetUniqueId failed");
        st = LOOM_ERR_DEVICE;
    }
    st = loom_comm_agree(boot, st);
    if (st == LOOM_OK) st = loom_comm_broadcast(boot, &id, sizeof id, LOOM_COMM_U8, 0);
    if (st == LOOM_OK) {
        int rc = n->api.comm_init_rank(&n->comm, boot->size, id, boot->rank);
        if (rc != 0) {
            snprintf(err, err_n, "nccl: ncclCommInitRank failed: %s", n->api.error_string(rc));
            st = LOOM_ERR_DEVICE;
        }
    }
    if (st != LOOM_OK) {
        if (err && !err[0]) snprintf(err, err_n, "nccl: another rank failed to start NCCL");
        if (n && n->stream) n->api.cuda_stream_destroy(n->stream);
        free(n);
        free(c);
        return st;
    }
    n->boot = boot;
    c->ops = &nccl_ops;
    c->impl = n;
    c->rank = boot->rank;
    c->size = boot->size;
    c->local_rank = boot->local_rank;
    *out = c;
    return LOOM_OK;
}
