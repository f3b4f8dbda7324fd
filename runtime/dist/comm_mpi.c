/* runtime/dist/comm_mpi.c - the MPI communicator (see dist.h). MPI's counts
 * are int: allreduce and broadcast go in chunks of at most INT_MAX/8
 * elements; allgather(v) of more than INT_MAX elements in all is refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"

#ifndef LOOM_HAVE_MPI

loom_status loom_comm_mpi_new(loom_comm **out, char *err, size_t err_n) {
    *out = NULL;
    snprintf(err, err_n, "this loom was built without MPI (configure with LOOM_MPI=ON and "
                         "OpenMPI installed: libopenmpi-dev)");
    return LOOM_ERR_UNSUPPORTED;
}

#else

#include <limits.h>
#include <mpi.h>

#define CHUNK ((size_t)INT_MAX / 8)

typedef struct mpi_impl {
    MPI_Comm comm;
} mpi_impl;

static int n_open;         /* live MPI comms: MPI is finalised with the last one */
static int we_initialised; /* MPI_Init was ours (a host program may own MPI) */

static MPI_Datatype mtype(loom_comm_dtype t) {
    switch (t) {
    case LOOM_COMM_F32: return MPI_FLOAT;
    case LOOM_COMM_F64: return MPI_DOUBLE;
    case LOOM_COMM_I64: return MPI_INT64_T;
    default: return MPI_UNSIGNED_CHAR;
    }
}

static MPI_Comm comm_of(loom_comm *c) {
    return ((mpi_impl *)c->impl)->comm;
}

static loom_status mpi_allreduce(loom_comm *c, void *buf, size_t count, loom_comm_dtype t) {
    if (t == LOOM_COMM_U8) return LOOM_ERR_INVALID_ARG;
    char *p = buf;
    const size_t es = loom_comm_dtype_size(t);
    for (size_t off = 0; off < count; off += CHUNK) {
        int n = (int)(count - off < CHUNK ? count - off : CHUNK);
        if (MPI_Allreduce(MPI_IN_PLACE, p + off * es, n, mtype(t), MPI_SUM, comm_of(c)) !=
            MPI_SUCCESS)
            return LOOM_ERR_DEVICE;
    }
    return LOOM_OK;
}

static loom_status mpi_bcast(loom_comm *c, void *buf, size_t count, loom_comm_dtype t, int root) {
    if (root < 0 || root >= c->size) return LOOM_ERR_INVALID_ARG;
    char *p = buf;
    const size_t es = loom_comm_dtype_size(t);
    for (size_t off = 0; off < count; off += CHUNK) {
        int n = (int)(count - off < CHUNK ? count - off : CHUNK);
        if (MPI_Bcast(p + off * es, n, mtype(t), root, comm_of(c)) != MPI_SUCCESS)
            return LOOM_ERR_DEVICE;
    }
    return LOOM_OK;
}

static loom_status mpi_rs(loom_comm *c, const void *send, void *recv, size_t count,
                          loom_comm_dtype t) {
    if (t == LOOM_COMM_U8 || count > (size_t)INT_MAX) return LOOM_ERR_INVALID_ARG;
    return MPI_Reduce_scatter_block(send, recv, (int)count, mtype(t), MPI_SUM, comm_of(c)) ==
                   MPI_SUCCESS
               ? LOOM_OK
               : LOOM_ERR_DEVICE;
}

static loom_status mpi_allgather(loom_comm *c, const void *send, void *recv, size_t count,
                                 loom_comm_dtype t) {
    if (count * (size_t)c->size > (size_t)INT_MAX) return LOOM_ERR_UNSUPPORTED;
    return MPI_Allgather(send, (int)count, mtype(t), recv, (int)count, mtype(t), comm_of(c)) ==
                   MPI_SUCCESS
               ? LOOM_OK
               : LOOM_ERR_DEVICE;
}

static loom_status mpi_allgatherv(loom_comm *c, const void *send, void *recv,
                                  const size_t *counts, loom_comm_dtype t) {
    int *cnt = malloc((size_t)c->size * 2 * sizeof *cnt);
    if (!cnt) return LOOM_ERR_OOM;
    int *disp = cnt + c->size;
    size_t total = 0;
    for (int r = 0; r < c->size; r++) {
        cnt[r] = (int)counts[r];
        disp[r] = (int)total;
        total += counts[r];
    }
    loom_status st = LOOM_OK;
    if (total > (size_t)INT_MAX)
        st = LOOM_ERR_UNSUPPORTED;
    else if (MPI_Allgatherv(send, cnt[c->rank], mtype(t), recv, cnt, disp, mtype(t),
                            comm_of(c)) != MPI_SUCCESS)
        st = LOOM_ERR_DEVICE;
    free(cnt);
    return st;
}

static loom_status mpi_barrier(loom_comm *c) {
    return MPI_Barrier(comm_of(c)) == MPI_SUCCESS ? LOOM_OK : LOOM_ERR_DEVICE;
}

static void mpi_free(loom_comm *c) {
    mpi_impl *m = c->impl;
    MPI_Comm_free(&m->comm);
    free(m);
    free(c);
    if (--n_open == 0 && we_initialised) {
        int fin = 0;
        MPI_Finalized(&fin);
        if (!fin) MPI_Finalize();
        we_initialised = 0;
    }
}

static const loom_comm_ops mpi_ops = {"mpi",         mpi_allreduce,  mpi_bcast,
                                      mpi_rs,        mpi_allgather,  mpi_allgatherv,
                                      mpi_barrier,   mpi_free};

loom_status loom_comm_mpi_new(loom_comm **out, char *err, size_t err_n) {
    *out = NULL;
    int inited = 0, fin = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&fin);
    if (fin) {
        snprintf(err, err_n, "MPI was already finalised in this process");
        return LOOM_ERR_UNAVAILABLE;
    }
    if (!inited) {
        /* FUNNELED: only the main thread calls MPI; loom's pool threads never do */
        int provided;
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
            snprintf(err, err_n, "MPI_Init failed");
            return LOOM_ERR_UNAVAILABLE;
        }
        we_initialised = 1;
    }
    loom_comm *c = calloc(1, sizeof *c);
    mpi_impl *m = calloc(1, sizeof *m);
    if (!c || !m) {
        free(c);
        free(m);
        snprintf(err, err_n, "out of memory");
        return LOOM_ERR_OOM;
    }
    /* a duplicate: our collectives never match a host program's */
    MPI_Comm_dup(MPI_COMM_WORLD, &m->comm);
    MPI_Comm_rank(m->comm, &c->rank);
    MPI_Comm_size(m->comm, &c->size);
    MPI_Comm local;
    MPI_Comm_split_type(m->comm, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &local);
    MPI_Comm_rank(local, &c->local_rank);
    MPI_Comm_free(&local);
    c->ops = &mpi_ops;
    c->impl = m;
    n_open++;
    *out = c;
    return LOOM_OK;
}

#endif
