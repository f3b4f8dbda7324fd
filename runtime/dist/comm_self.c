/* runtime/dist/comm_self.c - the one-rank communicator (see dist.h). */
#include <stdlib.h>
#include <string.h>

#include "dist.h"

static loom_status self_allreduce(loom_comm *c, void *buf, size_t count, loom_comm_dtype t) {
    return LOOM_OK;
}
static loom_status self_bcast(loom_comm *c, void *buf, size_t count, loom_comm_dtype t, int root) {
    return root == 0 ? LOOM_OK : LOOM_ERR_INVALID_ARG;
}
static loom_status self_rs(loom_comm *c, const void *send, void *recv, size_t count,
                           loom_comm_dtype t) {
    if (send != recv) memmove(recv, send, count * loom_comm_dtype_size(t));
    return LOOM_OK;
}
static loom_status self_allgatherv(loom_comm *c, const void *send, void *recv,
                                   const size_t *counts, loom_comm_dtype t) {
    if (send != recv) memmove(recv, send, counts[0] * loom_comm_dtype_size(t));
    return LOOM_OK;
}
static loom_status self_allgather(loom_comm *c, const void *send, void *recv, size_t count,
                                  loom_comm_dtype t) {
    return self_allgatherv(c, send, recv, &count, t);
}
static loom_status self_barrier(loom_comm *c) {
    return LOOM_OK;
}
static void self_free(loom_comm *c) {
    free(c);
}

static const loom_comm_ops self_ops = {"self",          self_allreduce, self_bcast,
                                       self_rs,         self_allgather, self_allgatherv,
                                       self_barrier,    self_free};

loom_status loom_comm_self_new(loom_comm **out) {
    loom_comm *c = calloc(1, sizeof *c);
    if (!c) return LOOM_ERR_OOM;
    c->ops = &self_ops;
    c->size = 1;
    *out = c;
    return LOOM_OK;
}
