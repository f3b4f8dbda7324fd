/* bench/mpi_latency.c - a bare OpenMPI all-reduce of 640 floats, back to back
 * and with 0.3 ms of busy work before each (a TP layer half's worth on a
 * small model): on an idle machine both take microseconds of waiting; on an
 * oversubscribed one the second waits a scheduler round (bench/tp_bench.sh).
 * Build: mpicc -O2 bench/mpi_latency.c; run: mpirun -np 2 ./a.out */
#define _POSIX_C_SOURCE 200809L
#include <mpi.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int r;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    float buf[640] = {0};
    volatile double acc = 0;
    for (int work = 0; work < 2; work++) {
        const int n = work ? 100 : 500;
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = now(), wait = 0;
        for (int i = 0; i < n; i++) {
            double w0 = now();
            while (work && now() - w0 < 3e-4)
                acc += 1;
            double a = now();
            MPI_Allreduce(MPI_IN_PLACE, buf, 640, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            wait += now() - a;
        }
        if (!r)
            printf("all-reduce of 640 f32%s: %.3f ms per iteration, %.3f ms of it in the "
                   "all-reduce\n",
                   work ? " after 0.3 ms of work" : ", back to back", (now() - t0) / n * 1e3,
                   wait / n * 1e3);
    }
    MPI_Finalize();
    return 0;
}
