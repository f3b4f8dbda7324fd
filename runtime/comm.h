/* runtime/comm.h - the communicator: collectives across ranks (processes)
 * for data-parallel training (train/) and tensor-parallel inference
 * (model/), docs/adr/0034-communicator-data-and-tensor-parallel.md.
 *
 * Header only, on purpose: libloom defines no communicator code, so it never
 * links MPI or NCCL. Implementations live in runtime/dist/ (the static
 * library loom_dist: a single-rank "self" comm, MPI when built with
 * LOOM_MPI, NCCL loaded at run time) and are created by the program (the
 * CLI); train/ and model/ only call through this table. Backends never see
 * it.
 *
 * Semantics (those of MPI): every rank calls the same collectives in the
 * same order with the same counts; a failure on one rank leaves the others
 * blocked, so callers agree on errors before the next collective (see
 * loom_comm_agree). Buffers are host memory. Sums of floats are in an order
 * the implementation picks, identical on every rank for one call (MPI's
 * and NCCL's allreduce give every rank the same bits), but not the order of
 * a single-rank loop: results match it within rounding only. */
#ifndef LOOM_RUNTIME_COMM_H
#define LOOM_RUNTIME_COMM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "loom/status.h"

typedef enum loom_comm_dtype {
    LOOM_COMM_U8 = 0, /* bytes (no sum) */
    LOOM_COMM_F32,
    LOOM_COMM_F64,
    LOOM_COMM_I64,
} loom_comm_dtype;

static inline size_t loom_comm_dtype_size(loom_comm_dtype t) {
    return t == LOOM_COMM_U8 ? 1 : t == LOOM_COMM_F32 ? 4 : 8;
}

typedef struct loom_comm loom_comm;

typedef struct loom_comm_ops {
    const char *name; /* "self", "mpi", "nccl" */
    /* buf[count] = the sum over ranks of every rank's buf[count] */
    loom_status (*allreduce_sum)(loom_comm *c, void *buf, size_t count, loom_comm_dtype t);
    /* buf[count] = root's buf[count] */
    loom_status (*broadcast)(loom_comm *c, void *buf, size_t count, loom_comm_dtype t, int root);
    /* recv[count] = the sum over ranks of send[rank * count .. +count] */
    loom_status (*reduce_scatter_sum)(loom_comm *c, const void *send, void *recv, size_t count,
                                      loom_comm_dtype t);
    /* recv[r * count .. +count] = rank r's send[count] */
    loom_status (*allgather)(loom_comm *c, const void *send, void *recv, size_t count,
                             loom_comm_dtype t);
    /* recv = rank 0's send[counts[0]], then rank 1's send[counts[1]], ...
     * (counts[rank] is this rank's own count) */
    loom_status (*allgatherv)(loom_comm *c, const void *send, void *recv, const size_t *counts,
                              loom_comm_dtype t);
    loom_status (*barrier)(loom_comm *c);
    void (*free)(loom_comm *c);
} loom_comm_ops;

struct loom_comm {
    const loom_comm_ops *ops;
    int rank, size; /* 0 <= rank < size */
    int local_rank; /* rank among the processes of this machine (picks the GPU) */
    void *impl;
};

static inline int loom_comm_rank(const loom_comm *c) {
    return c ? c->rank : 0;
}
static inline int loom_comm_size(const loom_comm *c) {
    return c ? c->size : 1;
}
static inline loom_status loom_comm_allreduce_sum(loom_comm *c, void *buf, size_t count,
                                                  loom_comm_dtype t) {
    return !c || c->size == 1 ? LOOM_OK : c->ops->allreduce_sum(c, buf, count, t);
}
static inline loom_status loom_comm_broadcast(loom_comm *c, void *buf, size_t count,
                                              loom_comm_dtype t, int root) {
    return !c || c->size == 1 ? LOOM_OK : c->ops->broadcast(c, buf, count, t, root);
}
static inline loom_status loom_comm_allgatherv(loom_comm *c, const void *send, void *recv,
                                               const size_t *counts, loom_comm_dtype t) {
    if (c) return c->ops->allgatherv(c, send, recv, counts, t);
    if (send != recv) memmove(recv, send, counts[0] * loom_comm_dtype_size(t));
    return LOOM_OK;
}
static inline loom_status loom_comm_barrier(loom_comm *c) {
    return !c || c->size == 1 ? LOOM_OK : c->ops->barrier(c);
}
/* Every rank learns whether every rank succeeded: returns LOOM_OK only when
 * st is LOOM_OK everywhere, else the failing status (this rank's own when it
 * failed, LOOM_ERR_INTERNAL when only another rank did). Call it where one
 * rank may fail alone (a file write on rank 0) before the next collective. */
static inline loom_status loom_comm_agree(loom_comm *c, loom_status st) {
    if (!c || c->size == 1) return st;
    int64_t bad = st != LOOM_OK;
    loom_status cs = c->ops->allreduce_sum(c, &bad, 1, LOOM_COMM_I64);
    if (cs != LOOM_OK) return cs;
    return st != LOOM_OK ? st : bad ? LOOM_ERR_INTERNAL : LOOM_OK;
}
static inline void loom_comm_free(loom_comm *c) {
    if (c) c->ops->free(c);
}

#endif
