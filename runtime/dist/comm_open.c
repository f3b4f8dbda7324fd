/* runtime/dist/comm_open.c - picking a communicator (see dist.h). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"

bool loom_dist_have_mpi(void) {
#ifdef LOOM_HAVE_MPI
    return true;
#else
    return false;
#endif
}

bool loom_dist_launched_by_mpirun(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_SIZE");
}

loom_status loom_dist_open(const char *kind, loom_comm **out, char *err, size_t err_n) {
    *out = NULL;
    if (!kind || !strcmp(kind, "auto"))
        kind = loom_dist_have_mpi() && loom_dist_launched_by_mpirun() ? "mpi" : "self";
    if (!strcmp(kind, "self")) return loom_comm_self_new(out);
    if (!strcmp(kind, "mpi")) return loom_comm_mpi_new(out, err, err_n);
    if (!strcmp(kind, "nccl")) {
        loom_comm *boot;
        loom_status st = loom_comm_mpi_new(&boot, err, err_n);
        if (st != LOOM_OK) return st;
        st = loom_comm_nccl_new(boot, out, err, err_n); /* owns boot on success */
        if (st != LOOM_OK) loom_comm_free(boot);
        return st;
    }
    snprintf(err, err_n, "unknown communicator '%s' (auto, self, mpi, nccl)", kind);
    return LOOM_ERR_INVALID_ARG;
}
