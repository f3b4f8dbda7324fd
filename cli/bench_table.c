/* cli/bench_table.c - the tables of `loom bench model`: llama-bench's
 * markdown columns, CSV and JSON / JSON lines (docs/adr/0020). */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli/bench_model.h"

/* "25M", "1.2B", "8.0B" (llama-bench prints "8B" class names the same way). */
void loom_bench_count_label(double v, char *buf, size_t n) {
    if (v >= 1e9)
        snprintf(buf, n, "%.1fB", v / 1e9);
    else if (v >= 1e6)
        snprintf(buf, n, "%.0fM", v / 1e6);
    else
        snprintf(buf, n, "%.0fK", v / 1e3);
}

static void size_label(double b, char *buf, size_t n) {
    if (b >= 1024.0 * 1024 * 1024)
        snprintf(buf, n, "%.2f GiB", b / (1024.0 * 1024 * 1024));
    else
        snprintf(buf, n, "%.2f MiB", b / (1024.0 * 1024));
}

void loom_bench_print_md(const bm_result *r, int n, bool ratio, bool kv_col, bool b_col,
                         const char *first, const char *peer) {
    printf("| model | size | params | backend | threads |%s%s test | t/s |",
           b_col ? " n_batch |" : "", kv_col ? " type_k |" : "");
    if (ratio) printf(" vs %s |", first);
    if (peer) printf(" vs %s |", peer);
    printf(" roofline t/s | %% roof |\n");
    printf("| --- | ---: | ---: | --- | ---: |%s%s ---: | ---: |", b_col ? " ---: |" : "",
           kv_col ? " --- |" : "");
    if (ratio) printf(" ---: |");
    if (peer) printf(" ---: |");
    printf(" ---: | ---: |\n");
    for (int i = 0; i < n; i++) {
        char sz[32], pl[16];
        size_label(r[i].size, sz, sizeof sz);
        loom_bench_count_label(r[i].params, pl, sizeof pl);
        printf("| %s | %s | %s | %s | %d |", r[i].model, sz, pl, r[i].backend_label, r[i].threads);
        if (b_col) printf(" %d |", r[i].n_batch);
        if (kv_col) printf(" %s |", r[i].type_k);
        printf(" %s | %.2f ± %.2f |", r[i].test, r[i].avg_ts, r[i].stddev_ts);
        if (ratio) {
            if (r[i].ratio > 0)
                printf(" %.2f |", r[i].ratio);
            else
                printf(" - |");
        }
        if (peer) {
            if (r[i].peer_ratio > 0)
                printf(" %.2f |", r[i].peer_ratio);
            else
                printf(" - |");
        }
        if (r[i].roof_ts > 0)
            printf(" %.1f | %.0f%% |\n", r[i].roof_ts, 100.0 * r[i].avg_ts / r[i].roof_ts);
        else
            printf(" - | - |\n");
    }
}

static void csv_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"') putchar('"');
        putchar(*s);
    }
    putchar('"');
}

void loom_bench_print_csv(const bm_result *r, int n) {
    printf(
        "model,model_filename,model_type,model_size,model_n_params,backend,device,device_kind,"
        "n_threads,n_batch,type_k,n_prompt,n_gen,test,test_time,load_s,peak_rss_bytes,reps,avg_ns,"
        "stddev_ns,avg_ts,stddev_ts,roofline_ts,ratio,ratio_peer\n");
    for (int i = 0; i < n; i++) {
        csv_str(r[i].model), putchar(',');
        csv_str(r[i].model_file), putchar(',');
        csv_str(r[i].model_type);
        printf(",%.0f,%.0f,", r[i].size, r[i].params);
        csv_str(r[i].backend_label), putchar(',');
        csv_str(r[i].device), putchar(',');
        csv_str(r[i].device_kind);
        printf(",%d,%d,%s,%d,%d,%s,%s,%.4f,%.0f,%d,%.0f,%.0f,%.4f,%.4f,%.4f,%.4f,%.4f\n",
               r[i].threads, r[i].n_batch, r[i].type_k, r[i].n_prompt, r[i].n_gen, r[i].test,
               r[i].date, r[i].load_s, r[i].peak_rss, r[i].reps, r[i].avg_ns, r[i].stddev_ns,
               r[i].avg_ts, r[i].stddev_ts, r[i].roof_ts, r[i].ratio, r[i].peer_ratio);
    }
}

bool loom_bench_print_json(const bm_result *r, int n, bool lines) {
    cJSON *arr = lines ? NULL : cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        cJSON *o = loom_bench_model_result_json(&r[i]);
        if (!o) return false;
        if (lines) {
            char *s = cJSON_PrintUnformatted(o);
            if (s) printf("%s\n", s);
            cJSON_free(s);
            cJSON_Delete(o);
        } else {
            cJSON_AddItemToArray(arr, o);
        }
    }
    if (arr) {
        char *s = cJSON_Print(arr);
        if (s) printf("%s\n", s);
        cJSON_free(s);
        cJSON_Delete(arr);
    }
    return true;
}
