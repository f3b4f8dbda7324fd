/* cli/bench_model.h - `loom bench model` and `loom bench compare` (docs/adr/0020).
 * Shared between cli/bench_model.c (the grid run and its tables) and
 * cli/bench_compare.c (--save records and the comparison of two of them). */
#ifndef LOOM_CLI_BENCH_MODEL_H
#define LOOM_CLI_BENCH_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

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
    double roof_ts;      /* roofline (tokens/s); 0 = not applicable */
    char roof_kind[12];  /* "bandwidth" (tg: triad) or "fma" (pp: fp32 FMA peak) */
    double ratio;        /* avg_ts / the first backend's; 0 = not applicable */
    double peer_ratio;   /* loom rows: avg_ts / the peer's in the same cell; 0 = none */
    char date[32];       /* ISO 8601 UTC, when the cell ran */
    bool peer;           /* a row of the peer (llama.cpp), not of loom */
    char peer_build[48]; /* the peer's build_commit */
} bm_result;

/* The machine a run happened on (for --save records). */
typedef struct bm_machine {
    char cpu[128];
    char isa[64];
    double triad_gbs; /* 0 = not measured */
    int triad_threads;
} bm_machine;

/* cli/bench_compare.c */
/* --save DIR for a finished run: the machine (CPU model, ISA, the triad
 * bandwidth measured, each backend's device with driver, the peer's build)
 * and the results. 0 ok, else 1 (message printed). */
struct loom_backend;
int loom_bench_model_save_run(const char *dir, struct loom_backend *const *bes, int nbe,
                              double triad_gbs, int triad_threads, const bm_result *r, int n);
/* Append a record of the run to DIR (DIR/bench-DATE-REV.json and a line of
 * DIR/history.jsonl); the path written goes to path. 0 ok, else 1. */
int loom_bench_model_save(const char *dir, const bm_machine *mach, const char *devices_json,
                          const bm_result *r, int n, char *path, size_t path_n);
/* cJSON object of one result (the -o json schema); caller deletes it. */
struct cJSON;
struct cJSON *loom_bench_model_result_json(const bm_result *r);
/* The git revision of the source tree loom was built from ("unknown" if none). */
void loom_bench_git_rev(char *out, size_t n);

/* cli/bench_peer.c: `--peer llama.cpp` through a llama-bench binary. */
typedef struct bm_peer {
    char exe[1024]; /* llama-bench, or a program printing its -o json */
} bm_peer;

/* The grid of one peer run: one KV type and one batch size (llama-bench
 * crosses -ctk with -ctv and -b with -ub, loom pairs them). */
typedef struct bm_peer_grid {
    const int *p, *n, *t;
    int np, nn, nt;
    const int (*pg)[2];
    int npg;
    int b, reps;
    const char *kv;
} bm_peer_grid;

/* Find peer name ("llama.cpp"): $LOOM_LLAMA_BENCH, else
 * <source>/.llamacpp/build/bin/llama-bench, else llama-bench on PATH.
 * 0 ok, else 2 with a one-line error printed. */
int loom_bench_peer_find(const char *name, bm_peer *p);
/* Run g on the GGUF at model and append one row per llama-bench result to
 * *res (grown as needed; *n rows of *cap). 0 ok, else 1 (message printed). */
int loom_bench_peer_run(const bm_peer *p, const char *model, const bm_peer_grid *g, bm_result **res,
                        int *n, int *cap);

/* name found on PATH (an executable file), its path in out. */
bool loom_bench_on_path(const char *name, char *out, size_t n);
/* Run argv (argv[0] a path) with stdout captured into *out (malloc'd,
 * NUL-terminated; the caller frees it) and stderr written to errf. Returns
 * the exit status, or -1 if it could not run. */
int loom_bench_run_child(char *const *argv, FILE *errf, char **out);
/* Same cell: model, threads, n_batch, test and KV type (backend aside). */
bool loom_bench_same_cell(const bm_result *a, const bm_result *b);
/* Reorder rows cell by cell: loom's backends in run order, then the peer's
 * row of that cell under them (cells keep their first-seen order). */
void loom_bench_interleave(bm_result *res, int n);

/* cli/bench_table.c: the tables. */
void loom_bench_count_label(double v, char *buf, size_t n); /* "25M", "1.2B" */
/* peer: the peer's name for a "vs PEER" column, NULL for none. */
void loom_bench_print_md(const bm_result *r, int n, bool ratio, bool kv_col, bool b_col,
                         const char *first, const char *peer);
void loom_bench_print_csv(const bm_result *r, int n);
bool loom_bench_print_json(const bm_result *r, int n, bool lines);

/* cli/bench_plot.c: grouped bars of t/s per test and backend, rooflines marked,
 * as SVG at path, or PNG when path ends in .png (rendered by rsvg-convert,
 * librsvg2-bin). 0 ok, else 1 (message printed). */
bool loom_bench_plot_is_png(const char *path);
int loom_bench_model_plot(const char *path, const bm_result *r, int n);

int loom_cli_bench_model(const char *backend, int argc, char **argv);
int loom_cli_bench_compare(int argc, char **argv);

#endif
