/* runtime/dist/dist.h - creating communicators (runtime/comm.h): the static
 * library loom_dist, linked by the CLI and the tests, never by libloom
 * (docs/adr/0034-communicator-data-and-tensor-parallel.md).
 *
 *   self  one rank, every collective a copy; what a program started without
 *         mpirun gets.
 *   mpi   MPI_COMM_WORLD (OpenMPI); only in builds with LOOM_MPI (CMake
 *         finds MPI; on by default when found). MPI is initialised on the
 *         first open and finalised when the last comm is freed.
 *   nccl  NCCL over the GPUs of the ranks, libnccl.so.2 and the CUDA runtime
 *         loaded at run time (dlopen, as the CUDA backend loads cuBLAS);
 *         bootstrapped over MPI (rank 0's ncclUniqueId is broadcast), so it
 *         needs LOOM_MPI too. Each rank uses GPU local_rank % device count.
 *         Buffers stay host memory (the callers' contract): each collective
 *         stages through one device buffer, so it is correct for host-side
 *         training loops; device-resident tensors would skip the copies.
 *   auto  mpi when the process was started by mpirun (OMPI_COMM_WORLD_SIZE or
 *         PMIX_RANK in the environment) and the build has MPI, else self. */
#ifndef LOOM_RUNTIME_DIST_H
#define LOOM_RUNTIME_DIST_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime/comm.h"

/* kind: "auto", "self", "mpi" or "nccl" (NULL = "auto"). *out owned by the
 * caller (loom_comm_free). LOOM_ERR_UNSUPPORTED for mpi/nccl in a build
 * without MPI, LOOM_ERR_UNAVAILABLE when NCCL or CUDA cannot be loaded;
 * err gets one line. */
loom_status loom_dist_open(const char *kind, loom_comm **out, char *err, size_t err_n);

/* Whether this build has MPI (LOOM_MPI). */
bool loom_dist_have_mpi(void);

/* Whether the environment says mpirun started this process. */
bool loom_dist_launched_by_mpirun(void);

/* internal: the implementations */
loom_status loom_comm_self_new(loom_comm **out);
loom_status loom_comm_mpi_new(loom_comm **out, char *err, size_t err_n);
/* boot: an MPI comm, owned by the NCCL comm on success (MPI stays up while
 * NCCL runs; the caller frees it on failure) */
loom_status loom_comm_nccl_new(loom_comm *boot, loom_comm **out, char *err, size_t err_n);

#endif
