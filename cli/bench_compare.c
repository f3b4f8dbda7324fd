/* cli/bench_compare.c - history for `loom bench model`: the JSON schema of a
 * result, `--save DIR` records, and `loom bench compare OLD NEW`
 * (docs/adr/0020-bench-model.md).
 *
 * A record is one JSON object: {"schema": "loom-bench-model/1", "git_rev",
 * "date", "machine": {"cpu", "isa", "triad_gbs", "devices": [...]},
 * "results": [...]}, written to DIR/bench-DATE-REV.json and appended as one
 * line to DIR/history.jsonl. compare reads records or plain `-o json`
 * arrays and matches cells by model, backend, threads, type_k and test. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "cli/args.h"
#include "loom/loom.h"
#include "cli/bench_model.h"

#ifndef LOOM_DEFAULT_SOURCE_DIR
#define LOOM_DEFAULT_SOURCE_DIR "."
#endif

cJSON *loom_bench_model_result_json(const bm_result *r) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    /* llama-bench's field names where it has one; loom's extras after. */
    cJSON_AddStringToObject(o, "model", r->model);
    cJSON_AddStringToObject(o, "model_filename", r->model_file);
    cJSON_AddStringToObject(o, "model_type", r->model_type);
    cJSON_AddNumberToObject(o, "model_size", r->size);
    cJSON_AddNumberToObject(o, "model_n_params", r->params);
    cJSON_AddStringToObject(o, "backend", r->backend);
    cJSON_AddStringToObject(o, "backend_label", r->backend_label);
    cJSON_AddStringToObject(o, "device", r->device);
    cJSON_AddStringToObject(o, "device_kind", r->device_kind);
    cJSON_AddNumberToObject(o, "n_threads", r->threads);
    cJSON_AddNumberToObject(o, "n_batch", r->n_batch);
    cJSON_AddStringToObject(o, "type_k", r->type_k);
    cJSON_AddStringToObject(o, "type_v", r->type_k);
    cJSON_AddNumberToObject(o, "n_prompt", r->n_prompt);
    cJSON_AddNumberToObject(o, "n_gen", r->n_gen);
    cJSON_AddStringToObject(o, "test", r->test);
    cJSON_AddStringToObject(o, "test_time", r->date);
    cJSON_AddNumberToObject(o, "avg_ns", r->avg_ns);
    cJSON_AddNumberToObject(o, "stddev_ns", r->stddev_ns);
    cJSON_AddNumberToObject(o, "avg_ts", r->avg_ts);
    cJSON_AddNumberToObject(o, "stddev_ts", r->stddev_ts);
    cJSON *ns = cJSON_AddArrayToObject(o, "samples_ns");
    cJSON *ts = cJSON_AddArrayToObject(o, "samples_ts");
    for (int i = 0; i < r->reps; i++) {
        cJSON_AddItemToArray(ns, cJSON_CreateNumber(r->samples_ns[i]));
        cJSON_AddItemToArray(ts,
                             cJSON_CreateNumber((r->n_prompt + r->n_gen) * 1e9 / r->samples_ns[i]));
    }
    if (r->peer) { /* the peer's load time and memory are not measured */
        cJSON_AddNullToObject(o, "load_s");
        cJSON_AddNullToObject(o, "peak_rss_bytes");
        cJSON_AddStringToObject(o, "build_commit", r->peer_build);
    } else {
        cJSON_AddNumberToObject(o, "load_s", r->load_s);
        cJSON_AddNumberToObject(o, "peak_rss_bytes", r->peak_rss);
    }
    if (r->roof_ts > 0) {
        cJSON_AddNumberToObject(o, "roofline_ts", r->roof_ts);
        cJSON_AddNumberToObject(o, "roofline_pct", 100.0 * r->avg_ts / r->roof_ts);
        cJSON_AddStringToObject(o, "roofline_kind", r->roof_kind);
    } else {
        cJSON_AddNullToObject(o, "roofline_ts");
        cJSON_AddNullToObject(o, "roofline_pct");
        cJSON_AddNullToObject(o, "roofline_kind");
    }
    if (r->ratio > 0)
        cJSON_AddNumberToObject(o, "ratio", r->ratio);
    else
        cJSON_AddNullToObject(o, "ratio");
    if (r->peer_ratio > 0)
        cJSON_AddNumberToObject(o, "ratio_peer", r->peer_ratio);
    else
        cJSON_AddNullToObject(o, "ratio_peer");
    return o;
}

void loom_bench_git_rev(char *out, size_t n) {
    snprintf(out, n, "unknown");
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "git -C '%s' rev-parse --short=12 HEAD 2>/dev/null && "
             "git -C '%s' diff --quiet HEAD 2>/dev/null || echo dirty",
             LOOM_DEFAULT_SOURCE_DIR, LOOM_DEFAULT_SOURCE_DIR);
    FILE *p = popen(cmd, "r");
    if (!p) return;
    char rev[64] = "", dirty[16] = "";
    if (fgets(rev, sizeof rev, p)) {
        rev[strcspn(rev, "\n")] = 0;
        if (fgets(dirty, sizeof dirty, p) && !strncmp(dirty, "dirty", 5))
            snprintf(out, n, "%s-dirty", rev);
        else if (rev[0] && strcmp(rev, "dirty"))
            snprintf(out, n, "%s", rev);
    }
    pclose(p);
}

int loom_bench_model_save_run(const char *dir, loom_backend *const *bes, int nbe, double triad_gbs,
                              int triad_threads, const bm_result *r, int n) {
    bm_machine mach;
    memset(&mach, 0, sizeof mach);
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
            snprintf(mach.cpu, sizeof mach.cpu, "%s", strchr(line, ':') + 2);
            mach.cpu[strcspn(mach.cpu, "\n")] = 0;
            break;
        }
    if (f) fclose(f);
    loom_backend *cpu = loom_registry_find("cpu");
    loom_device_info ci;
    memset(&ci, 0, sizeof ci);
    if (cpu) cpu->iface->device_info(cpu, &ci);
    const char *kern = strstr(ci.features, "kernels=");
    snprintf(mach.isa, sizeof mach.isa, "%s", kern ? kern + 8 : "unknown");
    mach.isa[strcspn(mach.isa, " ,;")] = 0;
    mach.triad_gbs = triad_gbs, mach.triad_threads = triad_threads;
    cJSON *devs = cJSON_CreateArray();
    for (int b = 0; b < nbe; b++) {
        loom_device_info di;
        memset(&di, 0, sizeof di);
        bes[b]->iface->device_info(bes[b], &di);
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "backend", bes[b]->iface->name);
        cJSON_AddStringToObject(d, "name", di.name);
        cJSON_AddStringToObject(d, "kind", di.kind);
        cJSON_AddStringToObject(d, "driver", di.driver);
        cJSON_AddStringToObject(d, "features", di.features);
        cJSON_AddItemToArray(devs, d);
    }
    for (int i = 0; i < n; i++) /* the peer, once */
        if (r[i].peer) {
            cJSON *d = cJSON_CreateObject();
            cJSON_AddStringToObject(d, "backend", r[i].backend);
            cJSON_AddStringToObject(d, "name", r[i].device);
            cJSON_AddStringToObject(d, "kind", r[i].device_kind);
            cJSON_AddStringToObject(d, "build", r[i].peer_build);
            cJSON_AddItemToArray(devs, d);
            break;
        }
    char *dj = cJSON_PrintUnformatted(devs);
    cJSON_Delete(devs);
    char path[1200];
    int rc = loom_bench_model_save(dir, &mach, dj ? dj : "[]", r, n, path, sizeof path);
    cJSON_free(dj);
    if (rc == 0) fprintf(stderr, "bench: saved %s\n", path);
    return rc;
}

int loom_bench_model_save(const char *dir, const bm_machine *mach, const char *devices_json,
                          const bm_result *r, int n, char *path, size_t path_n) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "loom bench model: --save: cannot create %s: %s\n", dir, strerror(errno));
        return 1;
    }
    char rev[80], date[32], stamp[32];
    loom_bench_git_rev(rev, sizeof rev);
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    cJSON *rec = cJSON_CreateObject();
    cJSON_AddStringToObject(rec, "schema", "loom-bench-model/1");
    cJSON_AddStringToObject(rec, "git_rev", rev);
    cJSON_AddStringToObject(rec, "date", date);
    cJSON *m = cJSON_AddObjectToObject(rec, "machine");
    cJSON_AddStringToObject(m, "cpu", mach->cpu);
    cJSON_AddStringToObject(m, "isa", mach->isa);
    if (mach->triad_gbs > 0) {
        cJSON_AddNumberToObject(m, "triad_gbs", mach->triad_gbs);
        cJSON_AddNumberToObject(m, "triad_threads", mach->triad_threads);
    }
    cJSON *devs = cJSON_Parse(devices_json);
    cJSON_AddItemToObject(m, "devices", devs ? devs : cJSON_CreateArray());
    cJSON *res = cJSON_AddArrayToObject(rec, "results");
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(res, loom_bench_model_result_json(&r[i]));
    char *pretty = cJSON_Print(rec), *line = cJSON_PrintUnformatted(rec);
    cJSON_Delete(rec);
    int rc = 0;
    snprintf(path, path_n, "%s/bench-%s-%s.json", dir, stamp, rev);
    FILE *f = fopen(path, "w");
    if (!f || !pretty || fprintf(f, "%s\n", pretty) < 0) rc = 1;
    if (f && fclose(f) != 0) rc = 1;
    char hist[1200];
    snprintf(hist, sizeof hist, "%s/history.jsonl", dir);
    FILE *h = fopen(hist, "a");
    if (!h || !line || fprintf(h, "%s\n", line) < 0) rc = 1;
    if (h && fclose(h) != 0) rc = 1;
    if (rc) fprintf(stderr, "loom bench model: --save: cannot write %s\n", path);
    cJSON_free(pretty);
    cJSON_free(line);
    return rc;
}

/* ---------------- loom bench compare ---------------- */

static const char *CMD = "bench compare";

static void usage(FILE *f) {
    fprintf(
        f, "usage: loom bench compare OLD.json NEW.json [--fail-below RATIO]\n"
           "  OLD, NEW       records `loom bench model` saved, or its JSON output\n"
           "  --fail-below R exit 1 when a cell's new/old tokens/s is below R, 0..100\n"
           "                 (default 0.95)\n"
           "Prints new/old per cell (matched by model, backend, threads, batch, KV type, test).\n");
}

/* The results array of a record or of a plain -o json array; the document
 * is returned in *doc (caller deletes). NULL with a message on error. */
static cJSON *load_results(const char *path, cJSON **doc) {
    *doc = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "loom %s: cannot open %s: %s\n", CMD, path, strerror(errno));
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len) {
        fprintf(stderr, "loom %s: cannot read %s\n", CMD, path);
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[len] = 0;
    *doc = cJSON_Parse(buf);
    free(buf);
    cJSON *res = *doc;
    if (cJSON_IsObject(res)) res = cJSON_GetObjectItemCaseSensitive(res, "results");
    if (!cJSON_IsArray(res)) {
        fprintf(stderr, "loom %s: %s is not a bench model record or JSON result array\n", CMD,
                path);
        cJSON_Delete(*doc);
        *doc = NULL;
        return NULL;
    }
    return res;
}

static const char *str_of(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static double num_of(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static bool same_cell(const cJSON *a, const cJSON *b) {
    static const char *const keys[] = {"model", "backend", "type_k", "test", NULL};
    for (int i = 0; keys[i]; i++)
        if (strcmp(str_of(a, keys[i]), str_of(b, keys[i]))) return false;
    return num_of(a, "n_threads") == num_of(b, "n_threads") &&
           num_of(a, "n_batch") == num_of(b, "n_batch");
}

int loom_cli_bench_compare(int argc, char **argv) {
    const char *files[2] = {NULL, NULL};
    double fail_below = 0.95;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (loom_cli_is_help(a)) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--fail-below")) {
            if (!(v = loom_cli_value(CMD, argc, argv, &i))) return LOOM_CLI_USAGE;
            if (!loom_cli_parse_f64(CMD, a, v, 0.0, 100.0, &fail_below)) return LOOM_CLI_USAGE;
        } else if (a[0] != '-' && !files[1]) {
            files[files[0] ? 1 : 0] = a;
        } else {
            loom_cli_unknown(CMD, a);
            usage(stderr);
            return LOOM_CLI_USAGE;
        }
    }
    if (!files[1]) {
        fprintf(stderr, "loom %s: OLD.json and NEW.json are required\n", CMD);
        usage(stderr);
        return LOOM_CLI_USAGE;
    }
    cJSON *dold, *dnew;
    cJSON *old = load_results(files[0], &dold);
    if (!old) return 1;
    cJSON *nw = load_results(files[1], &dnew);
    if (!nw) {
        cJSON_Delete(dold);
        return 1;
    }
    int worse = 0, matched = 0;
    printf("| model | backend | threads | type_k | test | old t/s | new t/s | new/old |\n"
           "| --- | --- | ---: | --- | --- | ---: | ---: | ---: |\n");
    const cJSON *n;
    cJSON_ArrayForEach(n, nw) {
        const cJSON *o = NULL, *it;
        cJSON_ArrayForEach(it, old) {
            if (same_cell(it, n)) {
                o = it;
                break;
            }
        }
        double nt = num_of(n, "avg_ts");
        if (!o) {
            printf("| %s | %s | %.0f | %s | %s | - | %.2f | new cell |\n", str_of(n, "model"),
                   str_of(n, "backend"), num_of(n, "n_threads"), str_of(n, "type_k"),
                   str_of(n, "test"), nt);
            continue;
        }
        double ot = num_of(o, "avg_ts"), ratio = ot > 0 ? nt / ot : 0;
        bool bad = ratio < fail_below;
        worse += bad;
        matched++;
        printf("| %s | %s | %.0f | %s | %s | %.2f | %.2f | %.3f%s |\n", str_of(n, "model"),
               str_of(n, "backend"), num_of(n, "n_threads"), str_of(n, "type_k"), str_of(n, "test"),
               ot, nt, ratio, bad ? " REGRESSION" : "");
    }
    printf("\n%d cell(s) compared, %d below %.3g\n", matched, worse, fail_below);
    cJSON_Delete(dold);
    cJSON_Delete(dnew);
    return worse ? 1 : 0;
}
