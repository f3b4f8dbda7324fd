/* cli/bench_model.h - `loom bench model` and `loom bench compare` (docs/adr/0020).
 * Shared between cli/bench_model.c (the grid run and its tables) and
 * cli/bench_compare.c (--save records and the comparison of two of them). */
#ifndef LOOM_CLI_BENCH_MODEL_H
#define LOOM_CLI_BENCH_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BM_MAX_REPS 100

/* One cell of the grid: a test (pp, tg or pg) of one model on one backend
 * with one thread count and KV type, over reps repetitions. */
typedef struct bm_result {
    char model[64];         /* llama-bench style: "llama 25M Q8_0" */
    char model_file[512];   /* path, or "preset:NAME" */
    char model_type[32];    /* weight types, e.g. "q8_0" */
    double size;            /* weight bytes */
    double params;          /* parameters */
    char backend[24];       /* registry name: cpu, vulkan, ... */
    char backend_label[64]; /* what the table shows: "vulkan (cpu emulation)" */
    char device[128];
    char device_kind[16];
    int threads;
    int n_batch;    /* prompt tokens per forward */
    char type_k[8]; /* KV cache type */
    int n_prompt, n_gen;
    char test[32]; /* pp512, tg128, pp512+tg128 */
    double load_s;
    double peak_rss; /* bytes, process peak after this cell */
    int reps;
    double samples_ns[BM_MAX_REPS];
    double avg_ns, stddev_ns, avg_ts, stddev_ts;
    double roof_ts;     /* roofline (tokens/s); 0 = not applicable */
    char roof_kind[12]; /* "bandwidth" (tg: triad) or "fma" (pp: fp32 FMA peak) */
    double ratio;       /* avg_ts / the first backend's; 0 = not applicable */
    char date[32];      /* ISO 8601 UTC, when the cell ran */
} bm_result;

/* The machine a run happened on (for --save records). */
typedef struct bm_machine {
    char cpu[128];
    char isa[64];
    double triad_gbs; /* 0 = not measured */
    int triad_threads;
} bm_machine;

/* cli/bench_compare.c */
/* Append a record of the run to DIR (DIR/bench-DATE-REV.json and a line of
 * DIR/history.jsonl); the path written goes to path. 0 ok, else 1. */
int loom_bench_model_save(const char *dir, const bm_machine *mach, const char *devices_json,
                          const bm_result *r, int n, char *path, size_t path_n);
/* cJSON object of one result (the -o json schema); caller deletes it. */
struct cJSON;
struct cJSON *loom_bench_model_result_json(const bm_result *r);
/* The git revision of the source tree loom was built from ("unknown" if none). */
void loom_bench_git_rev(char *out, size_t n);

/* cli/bench_plot.c: grouped bars of t/s per test and backend, rooflines marked,
 * as SVG at path. 0 ok, else 1 (message printed). */
int loom_bench_model_plot(const char *path, const bm_result *r, int n);

int loom_cli_bench_model(const char *backend, int argc, char **argv);
int loom_cli_bench_compare(int argc, char **argv);

#endif
