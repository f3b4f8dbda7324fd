/* cli/bench_peer.c - `loom bench model --peer llama.cpp`: the same grid run
 * through llama.cpp's llama-bench in the same invocation (docs/adr/0020).
 *
 * llama-bench is run as a child process with loom's grid mapped onto its
 * flags and `-o json`; its results (llama-bench's own field names: avg_ts,
 * stddev_ts, samples_ns ...) become rows beside loom's. A child process, not
 * a library: llama.cpp's OpenMP workers keep spinning after a run and would
 * steal loom's cores, and a binary the user already has is the most honest
 * peer (it is exactly what model cards quote). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli/bench_model.h"

#ifndef LOOM_DEFAULT_SOURCE_DIR
#define LOOM_DEFAULT_SOURCE_DIR "."
#endif

static const char *CMD = "loom bench model";

static bool is_exe(const char *p) {
    struct stat sb;
    return p && *p && stat(p, &sb) == 0 && S_ISREG(sb.st_mode) && access(p, X_OK) == 0;
}

bool loom_bench_on_path(const char *name, char *out, size_t n) {
    const char *path = getenv("PATH");
    if (!path || !out || n == 0) return false;
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *save = NULL, *d = strtok_r(buf, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(out, n, "%s/%s", *d ? d : ".", name);
        if (is_exe(out)) return true;
    }
    return false;
}

int loom_bench_peer_find(const char *name, bm_peer *p) {
    memset(p, 0, sizeof *p);
    if (strcmp(name, "llama.cpp") != 0) {
        fprintf(stderr, "%s: --peer: unknown peer '%s' (known: llama.cpp)\n", CMD, name);
        return 2;
    }
    const char *env = getenv("LOOM_LLAMA_BENCH");
    if (env && *env) {
        if (!is_exe(env)) {
            fprintf(stderr, "%s: --peer llama.cpp: LOOM_LLAMA_BENCH=%s is not an executable file\n",
                    CMD, env);
            return 2;
        }
        snprintf(p->exe, sizeof p->exe, "%s", env);
        return 0;
    }
    /* What scripts/build-llamacpp.sh leaves in the source tree. */
    snprintf(p->exe, sizeof p->exe, "%s/.llamacpp/build/bin/llama-bench", LOOM_DEFAULT_SOURCE_DIR);
    if (is_exe(p->exe)) return 0;
    if (loom_bench_on_path("llama-bench", p->exe, sizeof p->exe)) return 0;
    fprintf(stderr,
            "%s: --peer llama.cpp: no llama-bench found (set LOOM_LLAMA_BENCH, run "
            "scripts/build-llamacpp.sh, or put llama-bench on PATH)\n",
            CMD);
    return 2;
}

static void join_ints(char *out, size_t n, const int *v, int k) {
    size_t used = 0;
    out[0] = 0;
    for (int i = 0; i < k && used < n; i++)
        used += (size_t)snprintf(out + used, n - used, "%s%d", i ? "," : "", v[i]);
}

/* The last non-empty line of f (the child's stderr), for the error message. */
static void last_line(FILE *f, char *out, size_t n) {
    char line[1024];
    out[0] = 0;
    rewind(f);
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (line[0]) snprintf(out, n, "%s", line);
    }
}

int loom_bench_run_child(char *const *argv, FILE *errf, char **out) {
    *out = NULL;
    int fd[2];
    if (pipe(fd) != 0) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]), close(fd[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fd[1], 1);
        dup2(fileno(errf), 2);
        close(fd[0]), close(fd[1]);
        execv(argv[0], argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fd[1]);
    size_t len = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    ssize_t got;
    while (buf) {
        if (len + 4096 > cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
        }
        got = read(fd[0], buf + len, cap - len - 1);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        len += (size_t)got;
    }
    close(fd[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (!buf) return -1;
    buf[len] = 0;
    *out = buf;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static const char *str(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* One llama-bench row -> a bm_result (model/roofline are the caller's). */
static bool to_result(const cJSON *o, const bm_peer_grid *g, bm_result *r) {
    memset(r, 0, sizeof *r);
    const double np = num(o, "n_prompt"), ng = num(o, "n_gen"), th = num(o, "n_threads");
    r->avg_ts = num(o, "avg_ts");
    r->stddev_ts = num(o, "stddev_ts");
    r->avg_ns = num(o, "avg_ns");
    r->stddev_ns = num(o, "stddev_ns");
    if (np < 0 || ng < 0 || th < 1 || r->avg_ts < 0 || r->stddev_ts < 0 || r->avg_ns < 0)
        return false;
    r->n_prompt = (int)np, r->n_gen = (int)ng, r->threads = (int)th;
    if (r->n_gen == 0)
        snprintf(r->test, sizeof r->test, "pp%d", r->n_prompt);
    else if (r->n_prompt == 0)
        snprintf(r->test, sizeof r->test, "tg%d", r->n_gen);
    else
        snprintf(r->test, sizeof r->test, "pp%d+tg%d", r->n_prompt, r->n_gen);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "samples_ns");
    const cJSON *e;
    cJSON_ArrayForEach(e, s) {
        if (r->reps < BM_MAX_REPS && cJSON_IsNumber(e) && e->valuedouble > 0)
            r->samples_ns[r->reps++] = e->valuedouble;
    }
    r->peer = true;
    snprintf(r->backend, sizeof r->backend, "llama.cpp");
    const char *bes = str(o, "backends");
    snprintf(r->backend_label, sizeof r->backend_label, "llama.cpp (%s)", bes[0] ? bes : "?");
    const char *gpu = str(o, "gpu_info");
    snprintf(r->device, sizeof r->device, "%s", gpu[0] ? gpu : str(o, "cpu_info"));
    snprintf(r->device_kind, sizeof r->device_kind, "%s",
             !bes[0] || !strcmp(bes, "CPU") ? "cpu" : "gpu");
    snprintf(r->model_type, sizeof r->model_type, "%s", str(o, "model_type"));
    snprintf(r->peer_build, sizeof r->peer_build, "%s", str(o, "build_commit"));
    r->size = num(o, "model_size");
    r->params = num(o, "model_n_params");
    r->n_batch = g->b;
    snprintf(r->type_k, sizeof r->type_k, "%s", g->kv);
    snprintf(r->date, sizeof r->date, "%s", str(o, "test_time"));
    return true;
}

int loom_bench_peer_run(const bm_peer *p, const char *model, const bm_peer_grid *g, bm_result **res,
                        int *n, int *cap) {
    char ps[256], ns[256], ts[256], bs[16], rs[16], pgs[16][32];
    join_ints(ps, sizeof ps, g->p, g->np);
    join_ints(ns, sizeof ns, g->n, g->nn);
    join_ints(ts, sizeof ts, g->t, g->nt);
    snprintf(bs, sizeof bs, "%d", g->b);
    snprintf(rs, sizeof rs, "%d", g->reps);
    /* loom's -b is prompt tokens per forward, llama.cpp's is -ub (its -b
     * only groups ubatches): both are set, so one forward sees the same
     * tokens in both. */
    const char *argv[64];
    int a = 0;
    argv[a++] = p->exe;
    const char *fixed[] = {"-m",  model, "-p",   ps,    "-n",   ns,    "-t", ts, "-b", bs,
                           "-ub", bs,    "-ctk", g->kv, "-ctv", g->kv, "-r", rs, "-o", "json"};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        argv[a++] = fixed[i];
    for (int i = 0; i < g->npg && i < 16; i++) {
        snprintf(pgs[i], sizeof pgs[i], "%d,%d", g->pg[i][0], g->pg[i][1]);
        argv[a++] = "-pg";
        argv[a++] = pgs[i];
    }
    argv[a] = NULL;
    fprintf(stderr, "bench: llama.cpp peer: %s -m %s -p %s -n %s -t %s -b %s -ctk %s -r %s\n",
            p->exe, model, ps, ns, ts, bs, g->kv, rs);
    FILE *errf = tmpfile();
    if (!errf) {
        fprintf(stderr, "%s: --peer llama.cpp: cannot create a temporary file\n", CMD);
        return 1;
    }
    char *out = NULL;
    int st = loom_bench_run_child((char *const *)argv, errf, &out);
    char why[1024];
    last_line(errf, why, sizeof why);
    fclose(errf);
    if (st != 0) {
        fprintf(stderr, "%s: --peer llama.cpp: %s failed (exit %d) on %s: %s\n", CMD, p->exe, st,
                model, why[0] ? why : "no message");
        free(out);
        return 1;
    }
    cJSON *arr = cJSON_Parse(out);
    free(out);
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0) {
        fprintf(stderr, "%s: --peer llama.cpp: %s printed no JSON array of results\n", CMD, p->exe);
        cJSON_Delete(arr);
        return 1;
    }
    const cJSON *o;
    int rc = 0;
    cJSON_ArrayForEach(o, arr) {
        if (*n == *cap) {
            int nc = *cap ? 2 * *cap : 32;
            bm_result *nr = realloc(*res, sizeof *nr * (size_t)nc);
            if (!nr) {
                rc = 1;
                break;
            }
            *res = nr, *cap = nc;
        }
        if (!to_result(o, g, &(*res)[*n])) {
            fprintf(stderr,
                    "%s: --peer llama.cpp: %s printed a result without n_prompt, n_gen, "
                    "n_threads, avg_ns, avg_ts or stddev_ts\n",
                    CMD, p->exe);
            rc = 1;
            break;
        }
        (*n)++;
    }
    cJSON_Delete(arr);
    return rc;
}

bool loom_bench_same_cell(const bm_result *a, const bm_result *b) {
    return !strcmp(a->model_file, b->model_file) && a->threads == b->threads &&
           a->n_batch == b->n_batch && !strcmp(a->test, b->test) && !strcmp(a->type_k, b->type_k);
}

void loom_bench_interleave(bm_result *res, int n) {
    bm_result *out = malloc(sizeof *out * (size_t)(n ? n : 1));
    bool *used = calloc((size_t)(n ? n : 1), 1);
    if (!out || !used) {
        free(out);
        free(used);
        return; /* the table stays in run order */
    }
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (used[i] || res[i].peer) continue;
        for (int pass = 0; pass < 2; pass++)
            for (int j = i; j < n; j++)
                if (!used[j] && res[j].peer == (pass == 1) &&
                    loom_bench_same_cell(&res[i], &res[j]))
                    out[k++] = res[j], used[j] = true;
    }
    for (int i = 0; i < n; i++) /* peer cells loom did not run */
        if (!used[i]) out[k++] = res[i];
    memcpy(res, out, sizeof *out * (size_t)n);
    free(out);
    free(used);
}
