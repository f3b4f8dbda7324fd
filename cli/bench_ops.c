/* cli/bench_ops.c - `loom bench ops`: times each op on each available backend
 * for a named shape set and reports time, GFLOP/s or GB/s and the percentage
 * of this machine's measured limit (triad bandwidth for bandwidth-bound
 * cases, FMA peak for compute-bound ones). Output: table, JSON or CSV;
 * --compare FILE prints ratios against an earlier JSON run. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench.h"
#include "cli/bench_model.h"
#include "cli/args.h"
#include "loom/loom.h"

typedef enum { B_MATMUL, B_ATTN, B_RMS, B_ROPE, B_SOFTMAX, B_SWIGLU, B_MOE } bench_kind;

typedef struct bench_case {
    bench_kind kind;
    char name[96];
    loom_dtype t; /* weight / KV dtype */
    int64_t n[6]; /* matmul: K N M; attn: D Tq Tk Hq Hkv causal; rows: ne0 ne1 ne2;
                     moe: Dm F E T top_k */
    int bw_bound; /* 1: report against bandwidth, 0: against FMA peak */
} bench_case;

typedef struct bench_result {
    char backend[16];
    char name[96];
    double ms, ms_median, gflops, gbs, pct;
    int bw_bound;
    int peer; /* -1: a loom backend; else the peer library's index */
} bench_result;

typedef struct bench_opts {
    const char *shapes, *format, *compare, *op;
    int threads;
    double min_time;
    bool cpu_clock, peers;
} bench_opts;

/* ---------------- shape sets ---------------- */

typedef struct case_list {
    bench_case v[96];
    int n;
} case_list;

static void add_case(case_list *l, bench_kind k, loom_dtype t, int bw, const int64_t *n, int nn,
                     const char *fmt, ...) __attribute__((format(printf, 7, 8)));
#include <stdarg.h>
static void add_case(case_list *l, bench_kind k, loom_dtype t, int bw, const int64_t *n, int nn,
                     const char *fmt, ...) {
    if (l->n >= (int)(sizeof l->v / sizeof l->v[0])) return;
    bench_case *c = &l->v[l->n++];
    memset(c, 0, sizeof *c);
    c->kind = k;
    c->t = t;
    c->bw_bound = bw;
    for (int i = 0; i < nn; i++)
        c->n[i] = n[i];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->name, sizeof c->name, fmt, ap);
    va_end(ap);
}

static bool make_cases(const char *set, case_list *l) {
    static const loom_dtype wt[] = {LOOM_F32, LOOM_F16, LOOM_BF16, LOOM_Q8_0, LOOM_Q4_0, LOOM_NF4};
    int64_t hid, ffn, hq, hkv, hd, tpre, ctx, vocab, gemm;
    if (!strcmp(set, "small")) {
        hid = 1024, ffn = 2816, hq = 8, hkv = 2, hd = 128, tpre = 64, ctx = 512, vocab = 0,
        gemm = 256;
    } else if (!strcmp(set, "llama3-8b")) {
        hid = 4096, ffn = 14336, hq = 32, hkv = 8, hd = 128, tpre = 512, ctx = 4096, vocab = 128256,
        gemm = 1024;
    } else {
        return false;
    }
    l->n = 0;
    for (int w = 0; w < 6; w++) {
        const char *dn = loom_dtype_name(wt[w]);
        int64_t a[3] = {hid, hid, 1};
        add_case(l, B_MATMUL, wt[w], 1, a, 3, "matmul %s decode %lldx%lld M=1", dn, (long long)hid,
                 (long long)hid);
        int64_t b[3] = {hid, ffn, 1};
        add_case(l, B_MATMUL, wt[w], 1, b, 3, "matmul %s decode %lldx%lld M=1", dn, (long long)ffn,
                 (long long)hid);
    }
    /* ggml's legacy types (issue 16), decode beside q4_0's */
    static const loom_dtype lq[] = {LOOM_Q4_1, LOOM_Q5_0, LOOM_Q5_1};
    for (int w = 0; w < 3; w++) {
        int64_t b[3] = {hid, ffn, 1};
        add_case(l, B_MATMUL, lq[w], 1, b, 3, "matmul %s decode %lldx%lld M=1",
                 loom_dtype_name(lq[w]), (long long)ffn, (long long)hid);
    }
    if (vocab) {
        int64_t a[3] = {hid, vocab, 1};
        add_case(l, B_MATMUL, LOOM_Q4_0, 1, a, 3, "matmul q4_0 decode %lldx%lld M=1 (lm_head)",
                 (long long)vocab, (long long)hid);
    }
    for (int w = 0; w < 6; w++) {
        int64_t a[3] = {hid, hid, tpre};
        add_case(l, B_MATMUL, wt[w], 0, a, 3, "matmul %s prefill %lldx%lld M=%lld",
                 loom_dtype_name(wt[w]), (long long)hid, (long long)hid, (long long)tpre);
    }
    {
        int64_t a[3] = {gemm, gemm, gemm};
        add_case(l, B_MATMUL, LOOM_F32, 0, a, 3, "matmul f32 gemm %lld^3", (long long)gemm);
        add_case(l, B_MATMUL, LOOM_BF16, 0, a, 3, "matmul bf16 gemm %lld^3", (long long)gemm);
    }
    {
        int64_t d[6] = {hd, 1, ctx, hq, hkv, 1};
        add_case(l, B_ATTN, LOOM_F16, 1, d, 6, "flash_attn decode f16 KV Tk=%lld Hq=%lld Hkv=%lld",
                 (long long)ctx, (long long)hq, (long long)hkv);
        int64_t p[6] = {hd, tpre, tpre, hq, hkv, 1};
        add_case(l, B_ATTN, LOOM_F16, 0, p, 6,
                 "flash_attn prefill f16 KV T=%lld Hq=%lld Hkv=%lld causal", (long long)tpre,
                 (long long)hq, (long long)hkv);
    }
    {
        int64_t r[3] = {hid, tpre, 1};
        add_case(l, B_RMS, LOOM_F32, 1, r, 3, "rms_norm [%lld,%lld]", (long long)hid,
                 (long long)tpre);
        int64_t q[3] = {hd, hq, tpre};
        add_case(l, B_ROPE, LOOM_F32, 1, q, 3, "rope llama3 [%lld,%lld,%lld]", (long long)hd,
                 (long long)hq, (long long)tpre);
        int64_t s[3] = {tpre, tpre, hq};
        add_case(l, B_SOFTMAX, LOOM_F32, 1, s, 3, "softmax causal [%lld,%lld,%lld]",
                 (long long)tpre, (long long)tpre, (long long)hq);
        int64_t g[3] = {ffn, tpre, 1};
        add_case(l, B_SWIGLU, LOOM_F32, 1, g, 3, "swiglu [%lld,%lld]", (long long)ffn,
                 (long long)tpre);
    }
    /* Mixtral-style MoE, 8 experts top-2, q4_0 experts (the seed config's FFN):
     * decode reads two experts' weights; a short prefill routes to most. */
    for (int p = 0; p < 2; p++) {
        const int64_t T = p ? 16 : 1;
        int64_t m[5] = {hid, ffn, 8, T, 2};
        add_case(l, B_MOE, LOOM_Q4_0, 1, m, 5, "moe q4_0 E=8 top2 %lldx%lld T=%lld", (long long)hid,
                 (long long)ffn, (long long)T);
    }
    return true;
}

/* ---------------- graph per case ---------------- */

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Random contents for a leaf, fast even for GB-sized weights: float types
 * get uniform values; quantized types get random codes with a fixed, valid
 * scale (the values do not matter for timing, NaN/Inf would). */
static loom_status fill_leaf(loom_tensor *t, uint64_t seed) {
    const int64_t n = loom_tensor_nelements(t);
    const size_t bytes = loom_dtype_nbytes(t->dtype, n);
    uint8_t *buf = malloc(bytes ? bytes : 1);
    if (!buf) return LOOM_ERR_OOM;
    uint64_t s = seed;
    if (t->dtype == LOOM_I32) {
        int32_t *p = (int32_t *)buf;
        for (int64_t i = 0; i < n; i++)
            p[i] = (int32_t)i; /* positions */
    } else if (loom_dtype_is_float(t->dtype)) {
        float *f = malloc((size_t)n * sizeof *f);
        if (!f) {
            free(buf);
            return LOOM_ERR_OOM;
        }
        for (int64_t i = 0; i < n; i++)
            f[i] = (float)((double)(rng_next(&s) >> 11) * 0x1.0p-53 * 2.0 - 1.0);
        loom_convert(LOOM_F32, f, t->dtype, buf, n);
        free(f);
    } else {
        for (size_t i = 0; i + 8 <= bytes; i += 8) {
            const uint64_t r = rng_next(&s);
            memcpy(buf + i, &r, 8);
        }
        if (t->dtype == LOOM_Q8_0 || t->dtype == LOOM_Q4_0 || t->dtype == LOOM_Q4_1 ||
            t->dtype == LOOM_Q5_0 || t->dtype == LOOM_Q5_1) {
            /* finite scales (q4_1/q5_1: and minimums) over random codes */
            const size_t bb = loom_dtype_block_bytes(t->dtype);
            const uint16_t d = loom_f32_to_f16(0.01f), m = loom_f32_to_f16(-0.08f);
            const bool has_m = t->dtype == LOOM_Q4_1 || t->dtype == LOOM_Q5_1;
            for (size_t i = 0; i + bb <= bytes; i += bb) {
                memcpy(buf + i, &d, 2);
                if (has_m) memcpy(buf + i + 2, &m, 2);
            }
        } else if (t->dtype == LOOM_NF4) {
            float *am = (float *)(buf + n / 2);
            for (int64_t i = 0; i < n / 64; i++)
                am[i] = 0.05f;
        }
    }
    loom_status st = loom_tensor_upload(t, buf, loom_tensor_nbytes(t));
    free(buf);
    return st;
}

static loom_tensor *leaf(loom_graph *g, loom_dtype t, int64_t a, int64_t b, int64_t c, int64_t d) {
    return loom_tensor_set_flags(loom_tensor_4d(g, t, a, b, c, d), LOOM_FLAG_INPUT);
}

/* Build the case; *flops and *bytes get the work and the minimum traffic. */
static loom_tensor *build(loom_graph *g, const bench_case *c, double *flops, double *bytes) {
    const int64_t *n = c->n;
    loom_tensor *out = NULL;
    switch (c->kind) {
    case B_MATMUL: {
        const int64_t K = n[0], N = n[1], M = n[2];
        loom_tensor *w = leaf(g, c->t, K, N, 1, 1), *x = leaf(g, LOOM_F32, K, M, 1, 1);
        out = loom_matmul(g, w, x);
        *flops = 2.0 * (double)K * (double)N * (double)M;
        *bytes = (double)loom_dtype_nbytes(c->t, K * N) + 4.0 * (double)(K * M + N * M);
        break;
    }
    case B_ATTN: {
        const int64_t D = n[0], Tq = n[1], Tk = n[2], Hq = n[3], Hkv = n[4];
        loom_tensor *q = leaf(g, LOOM_F32, D, Tq, Hq, 1);
        loom_tensor *k = leaf(g, c->t, D, Tk, Hkv, 1), *v = leaf(g, c->t, D, Tk, Hkv, 1);
        const int32_t qoff = (int32_t)(Tk - Tq);
        out = loom_flash_attn(g, q, k, v, 1.0f / sqrtf((float)D), n[5] != 0, qoff);
        /* Visible (query, key) pairs: causal keeps about half of a square. */
        const double pairs =
            n[5] ? (double)Tq * ((double)qoff + ((double)Tq + 1) / 2.0) : (double)Tq * (double)Tk;
        *flops = 4.0 * (double)D * (double)Hq * pairs;
        *bytes = 2.0 * (double)loom_dtype_nbytes(c->t, D * Tk * Hkv) + 8.0 * (double)(D * Tq * Hq);
        break;
    }
    case B_RMS:
    case B_SOFTMAX: {
        loom_tensor *x = leaf(g, LOOM_F32, n[0], n[1], n[2], 1);
        out = c->kind == B_RMS ? loom_rms_norm(g, x, 1e-5f) : loom_softmax(g, x, 0.088f, true, 0);
        const double e = (double)(n[0] * n[1] * n[2]);
        *flops = (c->kind == B_RMS ? 3.0 : 5.0) * e;
        *bytes = 8.0 * e;
        break;
    }
    case B_ROPE: {
        loom_tensor *x = leaf(g, LOOM_F32, n[0], n[1], n[2], 1);
        loom_tensor *pos = leaf(g, LOOM_I32, n[2], 1, 1, 1);
        loom_rope_params p = loom_rope_params_llama3((int32_t)n[0]);
        out = loom_rope(g, x, pos, &p);
        const double e = (double)(n[0] * n[1] * n[2]);
        *flops = 3.0 * e;
        *bytes = 8.0 * e;
        break;
    }
    case B_MOE: {
        const int64_t Dm = n[0], F = n[1], E = n[2], T = n[3], top_k = n[4];
        loom_tensor *x = leaf(g, LOOM_F32, Dm, T, 1, 1), *lg = leaf(g, LOOM_F32, E, T, 1, 1);
        loom_tensor *gw = leaf(g, c->t, Dm, F, E, 1), *uw = leaf(g, c->t, Dm, F, E, 1);
        loom_tensor *dw = leaf(g, c->t, F, Dm, E, 1);
        out = loom_moe(g, x, lg, gw, uw, dw, (int32_t)top_k);
        *flops = 6.0 * (double)Dm * (double)F * (double)(T * top_k);
        /* Least traffic: the weights of the experts some token uses (at most E). */
        const int64_t used = T * top_k < E ? T * top_k : E;
        *bytes =
            3.0 * (double)loom_dtype_nbytes(c->t, Dm * F) * (double)used + 8.0 * (double)(Dm * T);
        break;
    }
    case B_SWIGLU: {
        loom_tensor *a = leaf(g, LOOM_F32, n[0], n[1], 1, 1),
                    *b = leaf(g, LOOM_F32, n[0], n[1], 1, 1);
        out = loom_swiglu(g, a, b);
        const double e = (double)(n[0] * n[1]);
        *flops = 6.0 * e;
        *bytes = 12.0 * e;
        break;
    }
    }
    return out ? loom_tensor_set_flags(out, LOOM_FLAG_OUTPUT) : NULL;
}

/* Time one case on one backend; returns false (with a message) on failure. */
static bool run_case(loom_backend *be, loom_backend *cpu, const bench_case *c, const bench_opts *o,
                     int nth, bench_result *r, char *err, size_t err_n) {
    loom_graph *g = NULL;
    loom_sched *s = NULL;
    bool ok = false;
    double flops = 0, bytes = 0;
    if (loom_graph_new(&g) != LOOM_OK) return false;
    loom_tensor *out = build(g, c, &flops, &bytes);
    loom_backend *list[2] = {be, cpu};
    const int nb = be == cpu ? 1 : 2;
    if (!out || loom_graph_expand(g, out) != LOOM_OK) {
        snprintf(err, err_n, "graph: %s", loom_graph_error(g));
        goto done;
    }
    if (loom_sched_new(list, nb, &s) != LOOM_OK || loom_sched_alloc(s, g) != LOOM_OK) {
        snprintf(err, err_n, "alloc: %s", s ? loom_sched_error(s) : "scheduler");
        goto done;
    }
    for (int i = 0; i < loom_graph_n_tensors(g); i++) {
        loom_tensor *t = loom_graph_tensor(g, i);
        if (t->op == LOOM_OP_NONE && (t->flags & LOOM_FLAG_INPUT) &&
            fill_leaf(t, 0x1234u + (uint64_t)i) != LOOM_OK) {
            snprintf(err, err_n, "upload failed");
            goto done;
        }
    }
    /* Warm-up (first touch, pool start, caches), then repeat for min_time. */
    if (loom_sched_compute(s, g) != LOOM_OK) {
        snprintf(err, err_n, "compute: %s", loom_sched_error(s));
        goto done;
    }
    double times[256];
    int nt = 0;
    const double t_start = loom_bench_now(false, 1);
    while (nt < 256 && (nt < 3 || loom_bench_now(false, 1) - t_start < o->min_time)) {
        const double t0 = loom_bench_now(o->cpu_clock, nth);
        if (loom_sched_compute(s, g) != LOOM_OK) {
            snprintf(err, err_n, "compute: %s", loom_sched_error(s));
            goto done;
        }
        times[nt++] = loom_bench_now(o->cpu_clock, nth) - t0;
    }
    /* Best time (as STREAM reports): on a shared machine the other processes
     * only ever add time; the median goes to JSON as well. */
    for (int i = 1; i < nt; i++)
        for (int j = i; j > 0 && times[j] < times[j - 1]; j--) {
            const double tmp = times[j];
            times[j] = times[j - 1];
            times[j - 1] = tmp;
        }
    const double sec = times[0];
    r->ms_median = times[nt / 2] * 1e3;
    snprintf(r->backend, sizeof r->backend, "%s", be->iface->name);
    snprintf(r->name, sizeof r->name, "%s", c->name);
    r->ms = sec * 1e3;
    r->gflops = flops / sec * 1e-9;
    r->gbs = bytes / sec * 1e-9;
    r->bw_bound = c->bw_bound;
    ok = true;
done:
    loom_sched_free(s);
    loom_graph_free(g);
    return ok;
}

/* ---------------- compare ---------------- */

/* Time of (backend, name) in an earlier JSON run written by this tool (one
 * result object per line), or 0 if absent. */
static double compare_lookup(const char *path, const char *backend, const char *name) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[1024], key[256];
    double ms = 0;
    snprintf(key, sizeof key, "\"backend\": \"%s\", \"case\": \"%s\",", backend, name);
    while (fgets(line, sizeof line, f)) {
        if (!strstr(line, key)) continue;
        const char *p = strstr(line, "\"ms\": ");
        if (p) ms = strtod(p + 6, NULL);
        break;
    }
    fclose(f);
    return ms;
}

/* 1-minute load average: other processes on the machine skew every figure. */
static double load_avg(void) {
    double l = -1.0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1.0;
        fclose(f);
    }
    return l;
}

/* loom cpu time vs each peer's on the same case (>1: loom is faster). */
static void print_peer_ratios(const bench_result *res, int nres, char (*note)[160], int npeer) {
    bool any = false;
    for (int p = 0; p < npeer && p < 4; p++)
        if (note[p][0]) {
            if (!any)
                printf("\npeers (same run, same threads; ratio = peer time / loom cpu time):\n");
            any = true;
            printf("  %-9s %s\n", loom_bench_peer_name(p), note[p]);
        }
    for (int i = 0; i < nres; i++) {
        if (res[i].peer >= 0 || strcmp(res[i].backend, "cpu")) continue;
        bool first = true;
        for (int j = 0; j < nres; j++) {
            if (res[j].peer < 0 || strcmp(res[j].name, res[i].name)) continue;
            if (first) printf("  %-52s", res[i].name);
            first = false;
            printf("  %s %.2fx", res[j].backend, res[j].ms / res[i].ms);
        }
        if (!first) printf("\n");
    }
}

/* ---------------- main ---------------- */

static void bench_usage(FILE *f) {
    fprintf(f,
            "usage: loom bench ops [--shapes small|llama3-8b] [--backend NAME|all]\n"
            "                      [--threads N] [--format table|json|csv] [--compare FILE]\n"
            "                      [--op SUBSTRING] [--min-time SECONDS] [--clock wall|cpu]\n"
            "                      [--peers on|off]\n"
            "  --threads N      1..4096 (default: the cpu backend's, LOOM_THREADS)\n"
            "  --min-time S     seconds per case, 0..3600 (default 0.25)\n"
            "Times each op on each available backend; %% is of the triad bandwidth (GB/s)\n"
            "for bandwidth-bound cases and of the FMA peak (GFLOP/s) for compute-bound ones,\n"
            "both measured by this tool with the same thread count. LOOM_CPU_ISA selects the\n"
            "cpu kernels (avx512|avx2|scalar). --clock cpu times with process CPU time / threads\n"
            "(an estimate of an idle machine when others share it; only meaningful for the cpu\n"
            "backend, and the pool's idle threads count as busy). --peers (default on) also\n"
            "times the f32/bf16 GEMM and prefill cases through OpenBLAS and oneDNN when they\n"
            "are installed (loaded with dlopen), with the cpu backend's thread count.\n"
            "Whole models: loom bench model (tokens/s, llama-bench's grid; see its help);\n"
            "two saved runs: loom bench compare OLD.json NEW.json.\n");
}

int loom_cli_bench(const char *backend, int argc, char **argv) {
    bench_opts o = {"small", "table", NULL, NULL, 0, 0.25, false, true};
    const char *cmd = "bench";
    if (argc >= 2 && loom_cli_is_help(argv[1])) {
        bench_usage(stdout);
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "model"))
        return loom_cli_bench_model(backend, argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "compare")) return loom_cli_bench_compare(argc - 1, argv + 1);
    if (argc < 2 || strcmp(argv[1], "ops") != 0) {
        if (argc >= 2)
            fprintf(stderr, "loom bench: unknown benchmark '%s' (ops, model, compare)\n", argv[1]);
        bench_usage(stderr);
        return LOOM_CLI_USAGE;
    }
    static const char *const shapes[] = {"small", "llama3-8b", NULL};
    static const char *const formats[] = {"table", "json", "csv", NULL};
    static const char *const clocks[] = {"wall", "cpu", NULL};
    static const char *const on_off[] = {"off", "on", NULL};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (loom_cli_is_help(a)) {
            bench_usage(stdout);
            return 0;
        }
        static const char *const valued[] = {"--shapes",  "--format", "--compare", "--op",
                                             "--threads", "--clock",  "--peers",   "--min-time",
                                             "--backend", NULL};
        bool known = false;
        for (int k = 0; valued[k] && !known; k++)
            known = !strcmp(a, valued[k]);
        if (!known) {
            loom_cli_unknown(cmd, a);
            bench_usage(stderr);
            return LOOM_CLI_USAGE;
        }
        if (!(v = loom_cli_value(cmd, argc, argv, &i))) return LOOM_CLI_USAGE;
        int k = 0;
        bool ok = true;
        if (!strcmp(a, "--shapes")) {
            if ((ok = loom_cli_parse_choice(cmd, a, v, shapes, &k))) o.shapes = shapes[k];
        } else if (!strcmp(a, "--format")) {
            if ((ok = loom_cli_parse_choice(cmd, a, v, formats, &k))) o.format = formats[k];
        } else if (!strcmp(a, "--clock")) {
            if ((ok = loom_cli_parse_choice(cmd, a, v, clocks, &k))) o.cpu_clock = k == 1;
        } else if (!strcmp(a, "--peers")) {
            if ((ok = loom_cli_parse_choice(cmd, a, v, on_off, &k))) o.peers = k == 1;
        } else if (!strcmp(a, "--threads")) {
            ok = loom_cli_parse_int(cmd, a, v, 1, 4096, &o.threads);
        } else if (!strcmp(a, "--min-time")) {
            ok = loom_cli_parse_f64(cmd, a, v, 0.0, 3600.0, &o.min_time);
        } else if (!strcmp(a, "--compare")) {
            o.compare = v;
        } else if (!strcmp(a, "--op")) {
            o.op = v;
        } else {
            backend = v;
        }
        if (!ok) return LOOM_CLI_USAGE;
    }
    case_list *cl = calloc(1, sizeof *cl);
    if (!cl) return 1;
    if (!make_cases(o.shapes, cl)) {
        fprintf(stderr, "loom bench: unknown shape set '%s' (small, llama3-8b)\n", o.shapes);
        free(cl);
        return 2;
    }
    if (loom_registry_init() != LOOM_OK) {
        fprintf(stderr, "loom bench: backend registry failed\n");
        free(cl);
        return 1;
    }
    loom_backend *cpu = loom_registry_find("cpu");
    loom_backend *bes[8];
    int nbe = 0;
    for (int i = 0; i < loom_registry_count() && nbe < 8; i++) {
        loom_backend *be = loom_registry_get(i);
        if (!loom_registry_available(i)) continue;
        if (backend && backend[0] && strcmp(backend, "all") && strcmp(backend, be->iface->name))
            continue;
        if (!strcmp(be->iface->name, "null")) continue;
        bes[nbe++] = be;
    }
    if (nbe == 0 || !cpu) {
        fprintf(stderr, "loom bench: no available backend%s%s\n", backend ? " named " : "",
                backend ? backend : "");
        loom_registry_shutdown();
        free(cl);
        return 2;
    }
    for (int b = 0; b < nbe; b++)
        if (o.threads > 0) bes[b]->n_threads = o.threads;
    if (o.threads > 0) cpu->n_threads = o.threads;

    loom_device_info info;
    cpu->iface->device_info(cpu, &info);
    const int nth = info.n_threads > 0 ? info.n_threads : 1;
    fprintf(stderr, "bench: measuring machine limits with %d thread(s)...\r", nth);
    double triad_s = 0;
    const double bw = loom_bench_triad_gbs(nth, o.cpu_clock, &triad_s);
    const char *peak_isa = "scalar";
    const double peak = loom_bench_fma_peak_gflops(nth, o.cpu_clock, &peak_isa);
    const char *kern = strstr(info.features, "kernels=");

    const int npeer = loom_bench_peer_count();
    bench_result *res = calloc((size_t)cl->n * (size_t)(nbe + npeer), sizeof *res);
    char peer_note[4][160] = {{0}};
    int nres = 0, failed = 0;
    for (int b = 0; b < nbe; b++)
        for (int i = 0; i < cl->n; i++) {
            if (o.op && !strstr(cl->v[i].name, o.op)) continue;
            fprintf(stderr, "\33[2K\rbench: [%d/%d] %s: %s", i + 1, cl->n, bes[b]->iface->name,
                    cl->v[i].name);
            fflush(stderr);
            char err[512] = "";
            bench_result *r = &res[nres];
            if (!run_case(bes[b], cpu, &cl->v[i], &o, nth, r, err, sizeof err)) {
                fprintf(stderr, "\nbench: %s on %s failed: %s\n", cl->v[i].name,
                        bes[b]->iface->name, err);
                failed++;
                continue;
            }
            r->pct = 100.0 * (r->bw_bound ? r->gbs / bw : r->gflops / peak);
            r->peer = -1;
            nres++;
        }
    /* Peers: the compute-bound f32/bf16 matmuls, when the cpu backend is
     * among those benchmarked (same thread count). */
    bool cpu_run = false;
    for (int b = 0; b < nbe; b++)
        cpu_run = cpu_run || bes[b] == cpu;
    for (int p = 0; o.peers && cpu_run && p < npeer && p < 4; p++)
        for (int i = 0; i < cl->n; i++) {
            const bench_case *c = &cl->v[i];
            if (c->kind != B_MATMUL || c->bw_bound || (c->t != LOOM_F32 && c->t != LOOM_BF16))
                continue;
            if (o.op && !strstr(c->name, o.op)) continue;
            fprintf(stderr, "\33[2K\rbench: peer %s: %s", loom_bench_peer_name(p), c->name);
            fflush(stderr);
            double sec = 0;
            char note[160];
            const bool ok =
                loom_bench_peer_gemm(p, c->t == LOOM_BF16, c->n[2], c->n[1], c->n[0], nth,
                                     o.cpu_clock, o.min_time, &sec, note, sizeof note);
            if (!peer_note[p][0] || ok) snprintf(peer_note[p], sizeof peer_note[p], "%s", note);
            if (!ok) continue;
            bench_result *r = &res[nres++];
            snprintf(r->backend, sizeof r->backend, "%s", loom_bench_peer_name(p));
            snprintf(r->name, sizeof r->name, "%s", c->name);
            r->ms = r->ms_median = sec * 1e3;
            r->gflops = 2.0 * (double)c->n[0] * (double)c->n[1] * (double)c->n[2] / sec * 1e-9;
            r->gbs = 0;
            r->pct = 100.0 * r->gflops / peak;
            r->peer = p;
        }
    fprintf(stderr, "\33[2K\r");

    const bool json = !strcmp(o.format, "json"), csv = !strcmp(o.format, "csv");
    const double load = load_avg();
    if (json) {
        printf(
            "{\n  \"shapes\": \"%s\", \"threads\": %d, \"cpu_kernels\": \"%s\",\n"
            "  \"cpu\": \"%s\", \"triad_gbs\": %.2f, \"fma_peak_gflops\": %.1f, "
            "\"fma_peak_isa\": \"%s\", \"load_avg\": %.2f, \"clock\": \"%s\",\n  \"results\": [\n",
            o.shapes, nth, kern ? kern + 8 : "?", info.name, bw, peak, peak_isa, load,
            o.cpu_clock ? "cpu" : "wall");
        for (int i = 0; i < nres; i++)
            printf("    {\"backend\": \"%s\", \"case\": \"%s\", \"ms\": %.4f, \"ms_median\": %.4f, "
                   "\"gflops\": %.2f, \"gbs\": %.2f, \"bound\": \"%s\", \"pct\": %.1f, "
                   "\"peer\": %s}%s\n",
                   res[i].backend, res[i].name, res[i].ms, res[i].ms_median, res[i].gflops,
                   res[i].gbs, res[i].bw_bound ? "bandwidth" : "compute", res[i].pct,
                   res[i].peer >= 0 ? "true" : "false", i + 1 < nres ? "," : "");
        printf("  ]\n}\n");
    } else if (csv) {
        printf("backend,case,ms,gflops,gbs,bound,pct%s\n", o.compare ? ",ratio_vs_compare" : "");
        for (int i = 0; i < nres; i++) {
            printf("%s,\"%s\",%.4f,%.2f,%.2f,%s,%.1f", res[i].backend, res[i].name, res[i].ms,
                   res[i].gflops, res[i].gbs, res[i].bw_bound ? "bandwidth" : "compute",
                   res[i].pct);
            if (o.compare) {
                const double old = compare_lookup(o.compare, res[i].backend, res[i].name);
                printf(",%.3f", old > 0 ? old / res[i].ms : 0.0);
            }
            printf("\n");
        }
    } else {
        printf("loom bench ops --shapes %s: %d thread(s), cpu kernels %s\n", o.shapes, nth,
               kern ? kern + 8 : "?");
        printf(
            "machine limits (measured now): triad %.1f GB/s, fp32 FMA peak %.0f GFLOP/s (%s)\n"
            "load average %.2f (other processes skew timings); times are the best of the runs, %s "
            "clock\n\n",
            bw, peak, peak_isa, load, o.cpu_clock ? "cpu" : "wall");
        printf("%-8s %-52s %10s %9s %8s %7s%s\n", "backend", "case", "time", "GFLOP/s", "GB/s",
               "%limit", o.compare ? "  speedup" : "");
        for (int i = 0; i < nres; i++) {
            char tm[32];
            if (res[i].ms >= 1.0)
                snprintf(tm, sizeof tm, "%.2f ms", res[i].ms);
            else
                snprintf(tm, sizeof tm, "%.1f us", res[i].ms * 1e3);
            printf("%-8s %-52s %10s %9.1f %8.1f %6.0f%%%s", res[i].backend, res[i].name, tm,
                   res[i].gflops, res[i].gbs, res[i].pct, res[i].bw_bound ? "b" : "c");
            if (o.compare) {
                const double old = compare_lookup(o.compare, res[i].backend, res[i].name);
                if (old > 0)
                    printf("  %6.2fx", old / res[i].ms);
                else
                    printf("       -");
            }
            printf("\n");
        }
        printf("\n%%limit: b = of triad bandwidth, c = of FMA peak. Speedup = old time / new.\n");
        print_peer_ratios(res, nres, peer_note, npeer);
    }
    free(res);
    free(cl);
    loom_registry_shutdown();
    return failed ? 1 : 0;
}
