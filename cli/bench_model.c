/* cli/bench_model.c - `loom bench model`: end-to-end tokens/s of whole models
 * on each backend, with llama-bench's parameter grid and tables
 * (docs/adr/0020-bench-model.md).
 *
 * Every comma list (-m, --backend, -p, -n, -t, --kv-type) and every -pg pair
 * is crossed. For each (model, backend, KV type) the model is loaded once
 * (load time and peak RSS are reported); then for each thread count and test:
 *   ppP     one forward over P prompt tokens            t/s = P / time
 *   tgN     N single-token decode steps from empty KV   t/s = N / time
 *   ppP+tgN both, one after the other                   t/s = (P + N) / time
 * as llama-bench does: one warm-up (the whole prompt, one generated token)
 * then -r repetitions, each from an empty KV slot, with random token ids.
 * Only the public model API is used (loom/model.h). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "bench/bench.h"
#include "cli/args.h"
#include "cli/bench_model.h"
#include "cli/cli.h"
#include "cli/wtype.h"
#include "loom/loom.h"
#include "loom/model.h"

#define MAX_LIST      16
#define MAX_TOK       65536
#define DEFAULT_BATCH 2048 /* llama-bench's -b default */

typedef struct bm_opts {
    const char *models[MAX_LIST];
    int n_models;
    char backends[256]; /* comma list, "all", or "" = the selected backend */
    int p[MAX_LIST], np, n[MAX_LIST], nn, pg[MAX_LIST][2], npg, t[MAX_LIST], nt;
    int b[MAX_LIST], nb; /* prompt tokens per forward (llama-bench's n_batch) */
    int kv[3], nkv;      /* indices into KV_NAMES */
    int reps, fmt;
    const char *preset;
    loom_dtype ptype; /* weight type of the preset models (--type) */
    const char *save, *plot, *peer;
    loom_cli_split split; /* layer split of every load (docs/adr/0030) */
} bm_opts;

static const char *const FORMATS[] = {"md", "json", "csv", "jsonl", NULL};
static const char *const KV_NAMES[] = {"f16", "q8_0", "f32", NULL};
static const loom_dtype KV_TYPES[] = {LOOM_F16, LOOM_Q8_0, LOOM_F32};
static const char *CMD = "bench model";

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: loom bench model [-m MODEL[,MODEL...]] [--preset NAME [--type TYPE]]\n"
        "                        [--backend NAME[,NAME...]|all] [-p N[,N...]] [-n N[,N...]]\n"
        "                        [-pg P,N] [-t N[,N...]] [-b N[,N...]] [--kv-type T[,T...]]\n"
        "                        [-r N] [-o md|json|csv|jsonl] [--save DIR] [--plot FILE.svg]\n"
        "                        [--peer llama.cpp]\n"
        "                        [--gpu-layers N|auto] [--devices LIST] [--tensor-split LIST]\n"
        "                        [--split MODE]\n"
        "  -m MODEL       GGUF files or HF checkpoint directories (default: the default\n"
        "                 model `loom run` uses, created on first use)\n"
        "  --preset NAME  also bench a model shape without a file (e.g. llama3-8b): random\n"
        "                 weights written to a temporary GGUF in $TMPDIR, unlinked once loaded\n"
        "  --type TYPE    weights of --preset: f32, f16, bf16, q8_0 (default), q4_0,\n"
        "                 q4_1, q5_0, q5_1\n"
        "  --backend B    backends to compare (default: the selected one); all = every\n"
        "                 available backend, with a ratio column against the first\n"
        "  -p N           prompt-processing tests, tokens per forward, 0..65536 (default 512)\n"
        "  -n N           generation tests, decode steps, 0..65536 (default 128)\n"
        "  -pg P,N        a combined test: P prompt tokens then N decode steps (repeatable)\n"
        "  -t N           cpu threads, 1..4096 (default: the cpu backend's, LOOM_THREADS)\n"
        "  -b N           prompt tokens per forward, 1..65536 (default 2048); longer prompts\n"
        "                 are processed in chunks of N\n"
        "  --kv-type T    KV cache types: f16 (default), q8_0, f32\n"
        "  -r N           repetitions per cell after one warm-up, 1..100 (default 5)\n"
        "  -o FMT         md (llama-bench's markdown table, default), json, csv, jsonl\n"
        "  --save DIR     also append a JSON record (git revision, machine, date, results)\n"
        "                 to DIR; compare two with `loom bench compare OLD NEW`\n"
        "  --plot FILE    also draw t/s per test and backend as grouped bars (SVG, log\n"
        "                 scale, rooflines marked); FILE.png is rendered by rsvg-convert\n"
        "  --peer llama.cpp  also run the same grid through llama.cpp's llama-bench\n"
        "                 ($LOOM_LLAMA_BENCH, else .llamacpp/build/bin/llama-bench from\n"
        "                 scripts/build-llamacpp.sh, else llama-bench on PATH); its rows follow\n"
        "                 loom's cell by cell, with a `vs llama.cpp` ratio (loom / llama.cpp)\n"
        "Each cell is mean +- stddev tokens/s. For tg on host memory (cpu, lavapipe) the\n"
        "roofline is the bytes a token reads (active weights + KV) over the triad bandwidth\n"
        "measured now with the same threads; %% roof is how much of it was reached.\n"
        "Layer split of every load (the plan is printed on stderr):\n"
        "%s",
        LOOM_CLI_SPLIT_USAGE);
}

/* A comma list of ints, each parsed strictly (an empty item is an error). */
static bool int_list(const char *flag, const char *v, int lo, int hi, int *out, int *n, int max) {
    char buf[512];
    if (strlen(v) >= sizeof buf) {
        fprintf(stderr, "loom %s: %s: value too long\n", CMD, flag);
        return false;
    }
    snprintf(buf, sizeof buf, "%s", v);
    *n = 0;
    char *s = buf;
    for (;;) {
        char *comma = strchr(s, ',');
        if (comma) *comma = 0;
        if (*n >= max) {
            fprintf(stderr, "loom %s: %s: at most %d values\n", CMD, flag, max);
            return false;
        }
        if (!loom_cli_parse_int(CMD, flag, s, lo, hi, &out[(*n)++])) return false;
        if (!comma) return true;
        s = comma + 1;
    }
}

static bool choice_list(const char *flag, const char *v, const char *const *names, int *out, int *n,
                        int max) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", v);
    *n = 0;
    char *s = buf;
    for (;;) {
        char *comma = strchr(s, ',');
        if (comma) *comma = 0;
        if (*n >= max) {
            fprintf(stderr, "loom %s: %s: at most %d values\n", CMD, flag, max);
            return false;
        }
        if (!loom_cli_parse_choice(CMD, flag, s, names, &out[(*n)++])) return false;
        if (!comma) return true;
        s = comma + 1;
    }
}

/* Returns -1 to go on, else the exit code. */
static int parse(int argc, char **argv, bm_opts *o) {
    static const char *const valued[] = {"-m",     "--preset", "--type",    "--backend", "-p", "-n",
                                         "-pg",    "-t",       "--kv-type", "-r",        "-b", "-o",
                                         "--save", "--plot",   "--peer",    NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (loom_cli_is_help(a)) {
            usage(stdout);
            return 0;
        }
        bool known = loom_cli_split_flag(a);
        for (int k = 0; valued[k] && !known; k++)
            known = !strcmp(a, valued[k]);
        if (!known) {
            loom_cli_unknown(CMD, a);
            usage(stderr);
            return LOOM_CLI_USAGE;
        }
        if (!(v = loom_cli_value(CMD, argc, argv, &i))) return LOOM_CLI_USAGE;
        bool ok = true;
        int k = 0;
        if (loom_cli_split_flag(a)) {
            ok = loom_cli_split_parse(CMD, a, v, &o->split);
        } else if (!strcmp(a, "-m")) {
            /* Paths are split at commas, as llama-bench does. */
            static char mbuf[MAX_LIST][1024];
            const char *s = v;
            do {
                const char *c = strchr(s, ',');
                size_t len = c ? (size_t)(c - s) : strlen(s);
                if (len == 0 || len >= sizeof mbuf[0] || o->n_models >= MAX_LIST) {
                    fprintf(stderr, "loom %s: -m: '%s' is not a list of at most %d paths\n", CMD, v,
                            MAX_LIST);
                    return LOOM_CLI_USAGE;
                }
                memcpy(mbuf[o->n_models], s, len);
                mbuf[o->n_models][len] = 0;
                o->models[o->n_models] = mbuf[o->n_models];
                o->n_models++;
                s = c ? c + 1 : NULL;
            } while (s);
        } else if (!strcmp(a, "--preset")) {
            loom_model_config c;
            char err[512];
            if (loom_model_config_preset(v, &c, err, sizeof err) != LOOM_OK) {
                fprintf(stderr, "loom %s: --preset: %s\n", CMD, err);
                return LOOM_CLI_USAGE;
            }
            o->preset = v;
        } else if (!strcmp(a, "--type")) {
            loom_cli_wtype wt;
            ok = loom_cli_parse_wtype(CMD, a, v, LOOM_CLI_WT_RANDOM, &wt);
            if (ok) o->ptype = wt.type;
        } else if (!strcmp(a, "--backend")) {
            if (!v[0]) {
                fprintf(stderr, "loom %s: --backend: '' is not a backend name\n", CMD);
                return LOOM_CLI_USAGE;
            }
            snprintf(o->backends, sizeof o->backends, "%s", v);
        } else if (!strcmp(a, "-p")) {
            ok = int_list(a, v, 0, MAX_TOK, o->p, &o->np, MAX_LIST);
        } else if (!strcmp(a, "-n")) {
            ok = int_list(a, v, 0, MAX_TOK, o->n, &o->nn, MAX_LIST);
        } else if (!strcmp(a, "-b")) {
            ok = int_list(a, v, 1, MAX_TOK, o->b, &o->nb, MAX_LIST);
        } else if (!strcmp(a, "-t")) {
            ok = int_list(a, v, 1, 4096, o->t, &o->nt, MAX_LIST);
        } else if (!strcmp(a, "-pg")) {
            int pair[2], np = 0;
            if (o->npg >= MAX_LIST) {
                fprintf(stderr, "loom %s: -pg: at most %d pairs\n", CMD, MAX_LIST);
                return LOOM_CLI_USAGE;
            }
            if (!strchr(v, ',') || strchr(strchr(v, ',') + 1, ',')) {
                fprintf(stderr, "loom %s: -pg: '%s' is not P,N\n", CMD, v);
                return LOOM_CLI_USAGE;
            }
            ok = int_list(a, v, 0, MAX_TOK, pair, &np, 2);
            if (ok) {
                o->pg[o->npg][0] = pair[0];
                o->pg[o->npg][1] = pair[1];
                o->npg++;
            }
        } else if (!strcmp(a, "--kv-type")) {
            ok = choice_list(a, v, KV_NAMES, o->kv, &o->nkv, 3);
        } else if (!strcmp(a, "-r")) {
            ok = loom_cli_parse_int(CMD, a, v, 1, BM_MAX_REPS, &o->reps);
        } else if (!strcmp(a, "-o")) {
            ok = loom_cli_parse_choice(CMD, a, v, FORMATS, &k);
            o->fmt = k;
        } else if (!strcmp(a, "--plot")) {
            char conv[1024];
            if (loom_bench_plot_is_png(v) &&
                !loom_bench_on_path("rsvg-convert", conv, sizeof conv)) {
                fprintf(stderr,
                        "loom %s: --plot %s: PNG needs rsvg-convert on PATH (Debian: "
                        "librsvg2-bin); or write FILE.svg\n",
                        CMD, v);
                return LOOM_CLI_USAGE;
            }
            o->plot = v;
        } else if (!strcmp(a, "--peer")) {
            static const char *const PEERS[] = {"llama.cpp", NULL};
            ok = loom_cli_parse_choice(CMD, a, v, PEERS, &k);
            o->peer = PEERS[k];
        } else {
            o->save = v;
        }
        if (!ok) return LOOM_CLI_USAGE;
    }
    return loom_cli_split_check(CMD, &o->split) ? -1 : LOOM_CLI_USAGE;
}

static double now_s(void) {
    return loom_bench_now(false, 1);
}

static double peak_rss_bytes(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss * 1024.0; /* Linux: kilobytes */
}

static void iso_now(char *buf, size_t n) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Write the preset's random weights to a temporary file, for --peer only:
 * llama-bench reads files (loom itself loads presets in memory, see
 * load_model). The file is unlinked once every backend and the peer ran. */
static int preset_file(const char *preset, loom_dtype wt, char *path, size_t n) {
    loom_model_config c;
    char err[1024];
    if (loom_model_config_preset(preset, &c, err, sizeof err) != LOOM_OK) return 2;
    c.rope.mode = LOOM_ROPE_NORMAL; /* the GGUF convention (loom/model.h) */
    const char *tmp = getenv("TMPDIR");
    snprintf(path, n, "%s/loom-bench-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) {
        fprintf(stderr, "loom %s: cannot create a temporary file in %s\n", CMD,
                tmp && tmp[0] ? tmp : "/tmp");
        return 1;
    }
    close(fd);
    fprintf(stderr, "bench: writing preset %s (%s, random weights) to %s...\n", preset,
            loom_dtype_name(wt), path);
    if (loom_model_write_random_gguf(&c, wt, 1234u, NULL, path, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "loom %s: --preset %s: %s\n", CMD, preset, err);
        unlink(path);
        return 1;
    }
    return 0;
}

/* Prefill n tokens (0: none) then decode g tokens one at a time, from an
 * empty slot 0. Returns seconds, or -1 with err set. */
static double run_test(loom_model *m, const int32_t *tok, int n, int g, int batch, float *logits,
                       char *err, size_t err_n) {
    int slot = 0;
    loom_model_slot_clear(m, 0);
    double t0 = now_s();
    for (int done = 0; done < n;) {
        int k = n - done < batch ? n - done : batch;
        loom_batch b = {1, k, &slot, tok + done, false};
        if (loom_model_decode(m, &b, logits, err, err_n) != LOOM_OK) return -1;
        done += k;
    }
    for (int i = 0; i < g; i++) {
        loom_batch b = {1, 1, &slot, tok + n + i, false};
        if (loom_model_decode(m, &b, logits, err, err_n) != LOOM_OK) return -1;
    }
    return now_s() - t0;
}

static void stats(const double *x, int n, double *mean, double *sd) {
    double s = 0, q = 0;
    for (int i = 0; i < n; i++)
        s += x[i];
    *mean = s / n;
    for (int i = 0; i < n; i++)
        q += (x[i] - *mean) * (x[i] - *mean);
    *sd = n > 1 ? sqrt(q / (n - 1)) : 0.0; /* sample stddev, as llama-bench */
}

/* A machine limit measured once per thread count (measuring takes seconds). */
typedef struct bm_limits {
    double v[MAX_LIST];
    int threads[MAX_LIST], n;
} bm_limits;

typedef struct bm_run {
    bm_result *res;
    int n, cap;
    bm_limits triad; /* GB/s per thread count */
    bm_limits peak;  /* fp32 FMA GFLOP/s per thread count */
    const char *peak_isa;
} bm_run;

/* The cached value for threads, or measure(threads) stored for next time. */
static double limit_for(bm_limits *l, int threads, double (*measure)(bm_run *, int), bm_run *run) {
    for (int i = 0; i < l->n; i++)
        if (l->threads[i] == threads) return l->v[i];
    const double v = measure(run, threads);
    if (l->n < MAX_LIST) {
        l->threads[l->n] = threads;
        l->v[l->n++] = v;
    }
    return v;
}

static double measure_peak(bm_run *run, int threads) {
    fprintf(stderr, "bench: measuring the FMA peak with %d thread(s)...\n", threads);
    return loom_bench_fma_peak_gflops(threads, false, &run->peak_isa);
}

static double peak_for(bm_run *run, int threads) {
    return limit_for(&run->peak, threads, measure_peak, run);
}

/* FLOPs per prompt token of a P-token forward at mean position pos: 2 per
 * weight of the layers, QK^T and PV over pos positions, and the LM head once
 * per forward (logits only for the last position; the embedding lookup is
 * not a matmul). */
static double token_flops(const loom_model *m, int P, double pos) {
    const loom_model_config *c = loom_model_config_of(m);
    loom_model_size sz;
    loom_model_config_size(c, &sz);
    const double head = (double)(c->vocab_size * c->dim);
    const double body = (double)sz.params_active - (c->tie_embeddings ? 1.0 : 2.0) * head;
    return 2.0 * body + 4.0 * (double)(c->n_layers * c->n_heads * c->head_dim) * pos +
           2.0 * head / P;
}

static double measure_triad(bm_run *run, int threads) {
    (void)run;
    fprintf(stderr, "bench: measuring triad bandwidth with %d thread(s)...\n", threads);
    double secs = 0;
    return loom_bench_triad_gbs(threads, false, &secs);
}

static double triad_for(bm_run *run, int threads) {
    return limit_for(&run->triad, threads, measure_triad, run);
}

/* Bytes one generated token reads at context position pos: the weights it
 * touches (top-k experts only; the embedding table contributes one row,
 * unless it doubles as the LM head) and pos KV rows of every layer. */
static double token_bytes(const loom_model *m, loom_dtype kv, double pos) {
    const loom_model_config *c = loom_model_config_of(m);
    loom_model_size sz;
    loom_model_config_size(c, &sz);
    double w = (double)loom_model_weight_bytes(m);
    double per_param = sz.params_total > 0 ? w / (double)sz.params_total : 0;
    double active = (double)sz.params_active;
    if (!c->tie_embeddings) active -= (double)(c->vocab_size * c->dim);
    double kv_scale = kv == LOOM_F32 ? 2.0 : kv == LOOM_Q8_0 ? 34.0 / 64.0 : 1.0;
    return active * per_param + (double)sz.kv_bytes_per_token_f16 * kv_scale * pos;
}

/* path, or with path NULL the --preset's random weights generated in memory
 * (the same seed and bytes as the file `loom init-model` would write). */
static loom_status load_model(const bm_opts *o, const char *path, const loom_model_params *mp,
                              loom_model **m, char *err, size_t err_n) {
    if (path) return loom_model_load(path, mp, m, err, err_n);
    loom_model_config c;
    loom_status st = loom_model_config_preset(o->preset, &c, err, err_n);
    c.rope.mode = LOOM_ROPE_NORMAL; /* the GGUF convention (loom/model.h) */
    if (st == LOOM_OK) st = loom_model_load_random(&c, o->ptype, 1234u, mp, m, err, err_n);
    return st;
}

/* One (model, backend, KV type): load, then every thread count and test. */
static int bench_one(const bm_opts *o, bm_run *run, const char *path, const char *label_file,
                     loom_backend *be, int kvi, const int *threads, int nthreads) {
    loom_model_params mp = loom_model_default_params();
    mp.backend = loom_backend_name(be); /* "vulkan:1" loads on device 1 (ADR 0042) */
    mp.kv_dtype = KV_TYPES[kvi];
    int64_t ctx = 16;
    for (int i = 0; i < o->np; i++)
        if (o->p[i] > ctx) ctx = o->p[i];
    for (int i = 0; i < o->nn; i++)
        if (o->n[i] > ctx) ctx = o->n[i];
    for (int i = 0; i < o->npg; i++)
        if (o->pg[i][0] + o->pg[i][1] > ctx) ctx = o->pg[i][0] + o->pg[i][1];
    mp.n_ctx = ctx;
    mp.n_slots = 1;
    loom_cli_split_apply(&o->split, &mp);
    char err[1024] = "";
    loom_model *m = NULL;
    fprintf(stderr, "bench: loading %s on %s (kv %s)...\n", label_file, be->iface->name,
            KV_NAMES[kvi]);
    double t0 = now_s();
    if (load_model(o, path, &mp, &m, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "loom %s: %s: %s\n", CMD, label_file, err);
        return 1;
    }
    const double load_s = now_s() - t0;
    loom_cli_print_plan(m);
    const loom_model_config *c = loom_model_config_of(m);
    loom_model_size sz;
    loom_model_config_size(c, &sz);
    loom_device_info info;
    memset(&info, 0, sizeof info);
    be->iface->device_info(be, &info);
    const bool host_mem = !strcmp(info.kind, "cpu") || !strcmp(info.kind, "cpu-emulated");

    int32_t *tok = malloc(sizeof *tok * (size_t)(ctx + 1));
    float *logits = malloc(sizeof *logits * (size_t)c->vocab_size);
    if (!tok || !logits) {
        free(tok);
        free(logits);
        loom_model_free(m);
        return 1;
    }
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int64_t i = 0; i <= ctx; i++) { /* random ids, as llama-bench */
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        tok[i] = (int32_t)(s % (uint64_t)c->vocab_size);
    }
    loom_backend *cpu = loom_registry_find("cpu");
    int rc = 0;
    for (int ti = 0, bi = 0; ti < nthreads && rc == 0; bi = (bi + 1) % o->nb, ti += bi == 0) {
        const int batch = o->b[bi];
        be->n_threads = threads[ti];
        if (cpu) cpu->n_threads = threads[ti]; /* ops a GPU backend leaves to the cpu */
        int ntests = o->np + o->nn + o->npg;
        for (int k = 0; k < ntests && rc == 0; k++) {
            int np = 0, ng = 0;
            if (k < o->np)
                np = o->p[k];
            else if (k < o->np + o->nn)
                ng = o->n[k - o->np];
            else
                np = o->pg[k - o->np - o->nn][0], ng = o->pg[k - o->np - o->nn][1];
            if (np == 0 && ng == 0) continue; /* -p 0 / -n 0 turn a test off */
            if (run->n == run->cap) {
                int cap = run->cap ? 2 * run->cap : 32;
                bm_result *nr = realloc(run->res, sizeof *nr * (size_t)cap);
                if (!nr) {
                    rc = 1;
                    break;
                }
                run->res = nr, run->cap = cap;
            }
            bm_result *r = &run->res[run->n];
            memset(r, 0, sizeof *r);
            if (k < o->np)
                snprintf(r->test, sizeof r->test, "pp%d", np);
            else if (k < o->np + o->nn)
                snprintf(r->test, sizeof r->test, "tg%d", ng);
            else
                snprintf(r->test, sizeof r->test, "pp%d+tg%d", np, ng);
            fprintf(stderr, "bench: %s %s t=%d %s\n", label_file, be->iface->name, threads[ti],
                    r->test);
            /* Warm-up: builds the graphs of both shapes (llama-bench: the
             * whole prompt and one generated token). */
            if (run_test(m, tok, np, ng > 0 ? 1 : 0, batch, logits, err, sizeof err) < 0) {
                fprintf(stderr, "loom %s: %s on %s: %s\n", CMD, label_file, be->iface->name, err);
                rc = 1;
                break;
            }
            double ts[BM_MAX_REPS];
            for (int rep = 0; rep < o->reps; rep++) {
                double sec = run_test(m, tok, np, ng, batch, logits, err, sizeof err);
                if (sec < 0) {
                    fprintf(stderr, "loom %s: %s on %s: %s\n", CMD, label_file, be->iface->name,
                            err);
                    rc = 1;
                    break;
                }
                if (sec < 1e-9) sec = 1e-9;
                r->samples_ns[rep] = sec * 1e9;
                ts[rep] = (np + ng) / sec;
            }
            if (rc) break;
            r->reps = o->reps;
            stats(r->samples_ns, o->reps, &r->avg_ns, &r->stddev_ns);
            stats(ts, o->reps, &r->avg_ts, &r->stddev_ts);
            char pl[16];
            loom_bench_count_label((double)sz.params_total, pl, sizeof pl);
            char up[16];
            snprintf(up, sizeof up, "%s", loom_model_weight_types(m));
            for (char *q = up; *q; q++)
                if (*q >= 'a' && *q <= 'z') *q = (char)(*q - 'a' + 'A');
            snprintf(r->model, sizeof r->model, "%s %s %s", c->arch, pl, up);
            snprintf(r->model_file, sizeof r->model_file, "%s", label_file);
            snprintf(r->model_type, sizeof r->model_type, "%s", loom_model_weight_types(m));
            r->size = (double)loom_model_weight_bytes(m);
            r->params = (double)sz.params_total;
            snprintf(r->backend, sizeof r->backend, "%s", be->iface->name);
            if (!strcmp(info.kind, "cpu-emulated"))
                snprintf(r->backend_label, sizeof r->backend_label, "%s (cpu emulation)",
                         be->iface->name);
            else
                snprintf(r->backend_label, sizeof r->backend_label, "%s", be->iface->name);
            snprintf(r->device, sizeof r->device, "%s", info.name);
            snprintf(r->device_kind, sizeof r->device_kind, "%s", info.kind);
            r->threads = threads[ti];
            r->n_batch = batch;
            snprintf(r->type_k, sizeof r->type_k, "%s", KV_NAMES[kvi]);
            r->n_prompt = np, r->n_gen = ng;
            r->load_s = load_s;
            r->peak_rss = peak_rss_bytes();
            iso_now(r->date, sizeof r->date);
            if (np == 0 && host_mem) {
                /* Generation from an empty cache: the mean position is (N-1)/2. */
                double bw = triad_for(run, threads[ti]) * 1e9;
                double b = token_bytes(m, KV_TYPES[kvi], (ng - 1) / 2.0);
                r->roof_ts = b > 0 ? bw / b : 0;
                snprintf(r->roof_kind, sizeof r->roof_kind, "bandwidth");
            } else if (ng == 0 && host_mem) {
                /* Causal prompt: token i attends to i positions, (P-1)/2 on average. */
                double fl = token_flops(m, np, (np - 1) / 2.0);
                r->roof_ts = fl > 0 ? peak_for(run, threads[ti]) * 1e9 / fl : 0;
                snprintf(r->roof_kind, sizeof r->roof_kind, "fma");
            }
            run->n++;
        }
    }
    free(tok);
    free(logits);
    loom_model_free(m);
    return rc;
}

/* ---------------- the peer ---------------- */

/* The peer on one model: one llama-bench run per (KV type, batch), since
 * llama-bench would cross -ctk with -ctv and -b with -ub. Its rows take
 * loom's model label (llama.cpp names models its own way) and, on the cpu,
 * the roofline of loom's row of the same cell: the same machine limit. */
static int peer_model(const bm_opts *o, const bm_peer *peer, bm_run *run, const char *path,
                      const char *label, const int *threads, int nthreads) {
    const int first = run->n;
    for (int k = 0; k < o->nkv; k++)
        for (int bi = 0; bi < o->nb; bi++) {
            bm_peer_grid g = {.p = o->p,
                              .np = o->np,
                              .n = o->n,
                              .nn = o->nn,
                              .t = threads,
                              .nt = nthreads,
                              .pg = (const int(*)[2])o->pg,
                              .npg = o->npg,
                              .b = o->b[bi],
                              .reps = o->reps,
                              .kv = KV_NAMES[o->kv[k]]};
            if (loom_bench_peer_run(peer, path, &g, &run->res, &run->n, &run->cap)) return 1;
        }
    for (int i = first; i < run->n; i++) {
        bm_result *r = &run->res[i];
        snprintf(r->model_file, sizeof r->model_file, "%s", label);
        for (int j = 0; j < first; j++) {
            const bm_result *l = &run->res[j];
            if (strcmp(l->model_file, label)) continue;
            snprintf(r->model, sizeof r->model, "%s", l->model);
            if (loom_bench_same_cell(l, r) && l->roof_ts > 0 && !strcmp(r->device_kind, "cpu")) {
                r->roof_ts = l->roof_ts;
                snprintf(r->roof_kind, sizeof r->roof_kind, "%s", l->roof_kind);
            }
        }
    }
    return 0;
}

/* ---------------- main ---------------- */

static int pick_backends(const char *spec, loom_backend **bes, int max) {
    int n = 0;
    if (!spec[0]) {
        char err[LOOM_ERROR_MAX] = "";
        if (loom_registry_select(NULL, &bes[0], err, sizeof err) != LOOM_OK) {
            fprintf(stderr, "loom %s: %s\n", CMD, err);
            return -1;
        }
        return 1;
    }
    if (!strcmp(spec, "all")) {
        for (int i = 0; i < loom_registry_count() && n < max; i++)
            if (loom_registry_available(i) && strcmp(loom_registry_get(i)->iface->name, "null"))
                bes[n++] = loom_registry_get(i);
        /* cpu first: the reference the ratio column divides by. */
        for (int i = 1; i < n; i++)
            if (!strcmp(bes[i]->iface->name, "cpu")) {
                loom_backend *t = bes[0];
                bes[0] = bes[i], bes[i] = t;
            }
        return n;
    }
    char buf[256];
    snprintf(buf, sizeof buf, "%s", spec);
    for (char *s = strtok(buf, ","); s && n < max; s = strtok(NULL, ",")) {
        loom_backend *be = NULL;
        char err[LOOM_ERROR_MAX] = "";
        if (loom_registry_select(s, &be, err, sizeof err) != LOOM_OK) {
            fprintf(stderr, "loom %s: %s\n", CMD, err[0] ? err : "unavailable backend");
            return -1;
        }
        bes[n++] = be;
    }
    return n;
}

int loom_cli_bench_model(const char *backend, int argc, char **argv) {
    bm_opts o;
    memset(&o, 0, sizeof o);
    loom_cli_split_init(&o.split);
    o.reps = 5;
    o.ptype = LOOM_Q8_0;
    if (backend) snprintf(o.backends, sizeof o.backends, "%s", backend);
    int prc = parse(argc, argv, &o);
    if (prc >= 0) return prc;
    /* llama-bench's defaults: -pg adds to them; -p 0 / -n 0 turn them off. */
    if (!o.np) o.p[o.np++] = 512;
    if (!o.nn) o.n[o.nn++] = 128;
    if (!o.nkv) o.kv[o.nkv++] = 0;
    if (!o.nb) o.b[o.nb++] = DEFAULT_BATCH;
    if (loom_registry_init() != LOOM_OK) {
        fprintf(stderr, "loom %s: backend registry failed\n", CMD);
        return 1;
    }
    loom_backend *bes[8];
    int nbe = pick_backends(o.backends, bes, 8);
    if (nbe <= 0) {
        if (nbe == 0) fprintf(stderr, "loom %s: no available backend\n", CMD);
        loom_registry_shutdown();
        return LOOM_CLI_USAGE;
    }
    bm_peer peer;
    if (o.peer) {
        int prc2 = loom_bench_peer_find(o.peer, &peer);
        for (int i = 0; prc2 == 0 && i < o.n_models; i++)
            if (loom_model_path_is_hf(o.models[i])) {
                fprintf(stderr,
                        "loom %s: --peer llama.cpp needs GGUF files; %s is a Hugging Face "
                        "directory (write one with `loom export-gguf -m DIR -o OUT.gguf`)\n",
                        CMD, o.models[i]);
                prc2 = LOOM_CLI_USAGE;
            }
        if (prc2) {
            loom_registry_shutdown();
            return prc2;
        }
    }
    int threads[MAX_LIST], nthreads = o.nt;
    memcpy(threads, o.t, sizeof threads);
    loom_backend *cpu = loom_registry_find("cpu");
    if (!nthreads) {
        loom_device_info info;
        memset(&info, 0, sizeof info);
        if (cpu) cpu->iface->device_info(cpu, &info);
        threads[nthreads++] = info.n_threads > 0 ? info.n_threads : 1;
    }
    /* The models: -m's, the preset's temporary file, else the default model. */
    const char *paths[MAX_LIST + 1], *labels[MAX_LIST + 1];
    int nm = 0;
    for (int i = 0; i < o.n_models; i++)
        paths[nm] = labels[nm] = o.models[i], nm++;
    char defpath[1024], tmppath[1024] = "", plabel[64];
    if (o.preset && !o.peer) {
        snprintf(plabel, sizeof plabel, "preset:%s", o.preset);
        paths[nm] = NULL, labels[nm] = plabel, nm++;
    } else if (o.preset) {
        int rc = preset_file(o.preset, o.ptype, tmppath, sizeof tmppath);
        if (rc) {
            loom_registry_shutdown();
            return rc;
        }
        snprintf(plabel, sizeof plabel, "preset:%s", o.preset);
        paths[nm] = tmppath, labels[nm] = plabel, nm++;
    }
    if (nm == 0) {
        int rc = loom_cli_default_model(defpath, sizeof defpath);
        if (rc) {
            loom_registry_shutdown();
            return rc;
        }
        paths[nm] = labels[nm] = defpath, nm++;
    }
    bm_run run;
    memset(&run, 0, sizeof run);
    int rc = 0;
    for (int mi = 0; mi < nm && rc == 0; mi++) {
        for (int b = 0; b < nbe && rc == 0; b++)
            for (int k = 0; k < o.nkv && rc == 0; k++)
                rc = bench_one(&o, &run, paths[mi], labels[mi], bes[b], o.kv[k], threads, nthreads);
        if (rc == 0 && o.peer)
            rc = peer_model(&o, &peer, &run, paths[mi], labels[mi], threads, nthreads);
        /* A preset's file goes once every backend has loaded it. */
        if (paths[mi] == tmppath) unlink(tmppath);
    }
    if (tmppath[0]) unlink(tmppath);
    /* Ratios against the same cell on the first backend. */
    for (int i = 0; nbe > 1 && i < run.n; i++)
        for (int j = 0; j < run.n; j++) {
            const bm_result *a = &run.res[j], *r = &run.res[i];
            if (!r->peer && !a->peer && !strcmp(a->backend, bes[0]->iface->name) &&
                loom_bench_same_cell(a, r) && a->avg_ts > 0) {
                run.res[i].ratio = r->avg_ts / a->avg_ts;
                break;
            }
        }
    /* loom / llama.cpp in the same cell, on loom's rows. */
    for (int i = 0; o.peer && i < run.n; i++)
        for (int j = 0; j < run.n && !run.res[i].peer; j++)
            if (run.res[j].peer && loom_bench_same_cell(&run.res[i], &run.res[j]) &&
                run.res[j].avg_ts > 0) {
                run.res[i].peer_ratio = run.res[i].avg_ts / run.res[j].avg_ts;
                break;
            }
    if (o.peer) loom_bench_interleave(run.res, run.n);
    if (rc == 0) {
        if (o.fmt == 0) {
            bool kv_col = o.nkv > 1 || o.kv[0] != 0;
            loom_bench_print_md(run.res, run.n, nbe > 1, kv_col,
                                o.nb > 1 || o.b[0] != DEFAULT_BATCH, bes[0]->iface->name, o.peer);
            for (int i = 0; i < run.n; i++) {
                const bm_result *r = &run.res[i];
                bool seen = false; /* one line per (model, backend, KV type) */
                for (int j = 0; j < i && !seen; j++)
                    seen = !strcmp(r->model_file, run.res[j].model_file) &&
                           !strcmp(r->backend, run.res[j].backend) &&
                           !strcmp(r->type_k, run.res[j].type_k);
                if (seen) continue;
                if (r->peer)
                    printf("%s%s on %s (%s): %s, build %s\n", i == 0 ? "\n" : "", r->model_file,
                           r->backend_label, r->device, peer.exe, r->peer_build);
                else
                    printf("%s%s on %s (%s): load %.2f s, peak RSS %.0f MiB\n", i == 0 ? "\n" : "",
                           r->model_file, r->backend_label, r->device, r->load_s,
                           r->peak_rss / (1024.0 * 1024));
            }
            for (int i = 0; i < run.triad.n; i++)
                printf("triad bandwidth %.1f GB/s with %d thread(s) (roofline of tg on host "
                       "memory)\n",
                       run.triad.v[i], run.triad.threads[i]);
            for (int i = 0; i < run.peak.n; i++)
                printf("fp32 FMA peak %.0f GFLOP/s (%s) with %d thread(s) (roofline of pp on the "
                       "host)\n",
                       run.peak.v[i], run.peak_isa ? run.peak_isa : "?", run.peak.threads[i]);
        } else if (o.fmt == 2) {
            loom_bench_print_csv(run.res, run.n);
        } else if (!loom_bench_print_json(run.res, run.n, o.fmt == 3)) {
            rc = 1;
        }
    }
    if (rc == 0 && o.plot) rc = loom_bench_model_plot(o.plot, run.res, run.n);
    if (rc == 0 && o.save)
        rc = loom_bench_model_save_run(o.save, bes, nbe, run.triad.n ? run.triad.v[0] : 0,
                                       run.triad.n ? run.triad.threads[0] : 0, run.res, run.n);
    free(run.res);
    loom_registry_shutdown();
    return rc;
}
