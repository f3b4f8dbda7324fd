/* bench/bench.h - `loom bench`: op micro-benchmarks across backends, with the
 * machine's own limits (STREAM-like triad bandwidth, FMA peak) measured by the
 * same tool so every figure is reported as a fraction of what this machine
 * can do. The implementation lives in cli/bench*.c (linked into the CLI). */
#ifndef LOOM_BENCH_H
#define LOOM_BENCH_H

#include <stdbool.h>
#include <stddef.h>

/* `loom bench ops ...`; returns the process exit code (0 ok, 1 failure, 2 usage). */
int loom_cli_bench(const char *backend, int argc, char **argv);

/* Seconds from the wall clock, or (cpu_clock) process CPU time divided by
 * n_threads: on a machine shared with other work the CPU clock estimates
 * what an idle machine would do, for compute-bound code. */
double loom_bench_now(bool cpu_clock, int n_threads);

/* Machine limits, measured with n_threads threads (cli/bench_peak.c). */
double loom_bench_triad_gbs(int n_threads, bool cpu_clock, double *seconds);
/* fp32 FMA peak in GFLOP/s with the widest vector ISA available ("avx512",
 * "avx2" or "scalar" written to isa). */
double loom_bench_fma_peak_gflops(int n_threads, bool cpu_clock, const char **isa);

/* Peer libraries for the GEMM cases (cli/bench_peers.c): 0 = OpenBLAS,
 * 1 = oneDNN, loaded with dlopen on first use. loom_bench_peer_gemm times
 * out[M][N] = X[M][K] . W[N][K]^T (f32, or bf16 inputs with f32 output) with
 * threads threads and writes the best time to *sec; false when the library or
 * the dtype is unavailable. note gets either the implementation used or why
 * not (always written). */
#include <stdint.h>
int loom_bench_peer_count(void);
const char *loom_bench_peer_name(int peer);
bool loom_bench_peer_gemm(int peer, bool bf16, int64_t M, int64_t N, int64_t K, int threads,
                          bool cpu_clock, double min_time, double *sec, char *note, size_t note_n);

#endif
