/* tests/model/test_smollm2_logits.c - the real SmolLM2-135M-Instruct GGUF
 * against transformers' GGUF loader (issue 16, deliverable 5).
 *
 * tests/model/data/smollm2/logits.golden.txt (scripts/gen_smollm2_logits_golden.py)
 * holds, per weight type and prompt, what transformers computes in f32 from
 * the file's weights dequantized by gguf-py: every position's argmax and
 * top-1/top-2 gap, and the last position's 20 largest logits, every 97th
 * logit and the logit range. Files: the Q4_1 release from the model cache
 * (skip, exit 77, when it is not there) and, for the other types, copies
 * this test writes with loom_model_export_gguf from it, as the generator did
 * with `loom export-gguf`. loom runs them on the cpu backend with an f32 KV
 * cache, each prompt twice: in one forward (the prompt kernels) and one token
 * per forward (the decode kernels). Per file and prompt:
 *   - last position: max |loom - transformers| over the ~530 stored logits
 *     at most the tolerance of transformers' logit range. With f32
 *     activations (LOOM_CPU_ACT=f32, ctest test_smollm2_logits) what differs
 *     is summation order against PyTorch's f32 GEMM on dequantized weights:
 *     measured 0.0004%, checked at 0.05%. With the cpu's default int8
 *     activations (ADR 0036, ctest test_smollm2_logits_act8) the rounding of
 *     the activations adds up to 5.5% (the re-quantized q4_0 copy; 1-2% for
 *     the others), checked at 8%: that path's exactness is the parity
 *     suite's job against an int8 reference, its cost is the perplexity in
 *     PERF.md. LOOM_SMOLLM2_TOL sets the tolerance in percent (default 2);
 *   - the same top-1 token at every position where transformers' top-1/top-2
 *     gap exceeds TOL_GAP (a near tie may flip with any rounding);
 *   - at least 15 of transformers' top-20 among loom's top-20.
 * LOOM_SMOLLM2_TYPES (e.g. "q4_1,q8_0") limits the types. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loom/model.h"
#include "loom/runtime.h"
#include "testing.h"

static float TOL_REL = 0.02f; /* of the range; LOOM_SMOLLM2_TOL (percent) */
#define TOL_GAP 0.5f
#define MAX_TOK 256
#define TOPK 20
#define MAX_SAMPLE 1024

typedef struct prompt_golden {
    char name[32];
    int n;
    int32_t ids[MAX_TOK], argmax[MAX_TOK];
    float gap[MAX_TOK];
    int32_t top_id[TOPK];
    float top_v[TOPK];
    int stride, n_sample;
    float sample[MAX_SAMPLE];
    float lo, hi;
} prompt_golden;

#define MAX_PROMPTS 8
static prompt_golden P[MAX_PROMPTS];
static int n_prompts;
static double worst_rel;

static int cmp_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

static bool type_wanted(const char *t) {
    const char *w = getenv("LOOM_SMOLLM2_TYPES");
    if (!w || !*w) return true;
    size_t n = strlen(t);
    for (const char *p = w; (p = strstr(p, t)); p += n)
        if ((p == w || p[-1] == ',') && (p[n] == 0 || p[n] == ',')) return true;
    return false;
}

/* step: one token per forward (the decode kernels: one activation row),
 * else the whole prompt in one forward (the prompt-processing kernels). */
static void check_prompt(loom_model *m, const char *type, const prompt_golden *g, float *logits,
                         int64_t V, bool step) {
    char err[512], label[64];
    snprintf(label, sizeof label, "%s%s", type, step ? "/1" : "");
    type = label;
    loom_model_slot_clear(m, 0);
    int slot = 0;
    loom_status s = LOOM_OK;
    for (int p = 0; p < (step ? g->n : 1) && s == LOOM_OK; p++) {
        loom_batch b = {1, step ? 1 : g->n, &slot, g->ids + p, !step};
        s = loom_model_decode(m, &b, logits + (int64_t)p * V, err, sizeof err);
    }
    CHECK_MSG(s == LOOM_OK, "%s %s: decode: %s", type, g->name, err);
    if (s != LOOM_OK) return;
    int flips = 0;
    for (int p = 0; p < g->n; p++) {
        const float *row = logits + (int64_t)p * V;
        int32_t am = 0;
        for (int64_t v = 1; v < V; v++)
            if (row[v] > row[am]) am = (int32_t)v;
        if (am != g->argmax[p] && g->gap[p] > TOL_GAP) {
            flips++;
            fprintf(stderr, "%s %s pos %d: loom top-1 %d, transformers %d (gap %.3f)\n", type,
                    g->name, p, am, g->argmax[p], g->gap[p]);
        }
    }
    CHECK_MSG(flips == 0, "%s %s: %d positions with another top-1 token", type, g->name, flips);
    const float *last = logits + (int64_t)(g->n - 1) * V;
    double maxerr = 0;
    for (int k = 0; k < g->n_sample; k++)
        maxerr = fmax(maxerr, fabs((double)last[(int64_t)k * g->stride] - g->sample[k]));
    for (int k = 0; k < TOPK; k++)
        maxerr = fmax(maxerr, fabs((double)last[g->top_id[k]] - g->top_v[k]));
    double rel = maxerr / (double)(g->hi - g->lo);
    worst_rel = fmax(worst_rel, rel);
    /* loom's own top-20 threshold: the 20th largest logit */
    float *sorted = malloc((size_t)V * sizeof *sorted);
    int common = 0;
    if (sorted) {
        memcpy(sorted, last, (size_t)V * sizeof *sorted);
        qsort(sorted, (size_t)V, sizeof *sorted, cmp_desc);
        for (int k = 0; k < TOPK; k++)
            common += last[g->top_id[k]] >= sorted[TOPK - 1];
        free(sorted);
    }
    printf("  %-7s %-8s %3d tokens: max |diff| %.4f = %.4f%% of the range, top-20 overlap %d\n",
           type, g->name, g->n, maxerr, 100 * rel, common);
    CHECK_MSG(rel <= TOL_REL, "%s %s: logits differ by %.2f%% of the range (tolerance %.2f%%)",
              type, g->name, 100 * rel, 100 * TOL_REL);
    CHECK_MSG(common >= 15, "%s %s: only %d of transformers' top-20 in loom's", type, g->name,
              common);
}

static void check_type(const char *type, const char *release) {
    if (!type_wanted(type) || !n_prompts) return;
    char err[1024], tmp[1024] = "";
    const char *path = release;
    if (strcmp(type, "q4_1") != 0) {
        loom_export_params ep = {0};
        CHECK_MSG(loom_dtype_from_name(type, &ep.type) == LOOM_OK, "unknown type %s", type);
        const char *td = getenv("TMPDIR");
        snprintf(tmp, sizeof tmp, "%s/loom-smollm2-%s-%ld.gguf", td && *td ? td : "/tmp", type,
                 (long)getpid());
        loom_status s = loom_model_export_gguf(release, tmp, &ep, NULL, err, sizeof err);
        CHECK_MSG(s == LOOM_OK, "export %s: %s", type, err);
        if (s != LOOM_OK) return;
        path = tmp;
    }
    loom_model_params mp = loom_model_default_params();
    mp.backend = "cpu";
    mp.kv_dtype = LOOM_F32;
    mp.n_ctx = MAX_TOK;
    loom_model *m = NULL;
    loom_status s = loom_model_load(path, &mp, &m, err, sizeof err);
    if (tmp[0]) unlink(tmp); /* mapped: the data stays until the model is freed */
    CHECK_MSG(s == LOOM_OK, "load %s: %s", type, err);
    if (s != LOOM_OK) return;
    const int64_t V = loom_model_config_of(m)->vocab_size;
    float *logits = malloc((size_t)(MAX_TOK * V) * sizeof *logits);
    CHECK(logits != NULL);
    for (int step = 0; step < 2; step++)
        for (int i = 0; i < n_prompts && logits; i++)
            check_prompt(m, type, &P[i], logits, V, step);
    free(logits);
    loom_model_free(m);
}

static int read_ints(const char *s, int32_t *out, int max) {
    int n = 0;
    for (char *e; n < max; s = e) {
        long v = strtol(s, &e, 10);
        if (e == s) break;
        out[n++] = (int32_t)v;
    }
    return n;
}

int main(void) {
    const char *tol = getenv("LOOM_SMOLLM2_TOL");
    if (tol && *tol) TOL_REL = strtof(tol, NULL) / 100.0f;
    char release[1024], path[4096];
    const char *env = getenv("LOOM_SMOLLM2_GGUF");
    if (env && *env) {
        snprintf(release, sizeof release, "%s", env);
    } else {
        char dir[900];
        loom_model_cache_dir(dir, sizeof dir);
        snprintf(release, sizeof release, "%s/SmolLM2-135M-Instruct.Q4_1.gguf", dir);
    }
    if (access(release, R_OK) != 0) {
        printf("SKIP: no %s (scripts/fetch-default-model.sh, or set LOOM_SMOLLM2_GGUF)\n", release);
        return 77;
    }
    const char *src = getenv("LOOM_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/tests/model/data/smollm2/logits.golden.txt", src ? src : ".");
    FILE *f = fopen(path, "r");
    CHECK_MSG(f != NULL, "cannot open %s", path);
    if (!f) return test_summary("test_smollm2_logits");
    CHECK(loom_registry_init() == LOOM_OK);
    char *line = NULL, type[32] = "";
    size_t cap = 0;
    int n_types = 0;
    prompt_golden *g = NULL;
    while (getline(&line, &cap, f) > 0) {
        if (!strncmp(line, "model ", 6)) {
            if (type[0]) check_type(type, release), n_types++;
            sscanf(line + 6, "%31s", type);
            n_prompts = 0;
        } else if (!strncmp(line, "prompt ", 7) && n_prompts < MAX_PROMPTS) {
            g = &P[n_prompts++];
            int off = 0;
            if (sscanf(line + 7, "%31s %d %n", g->name, &g->n, &off) < 2 || g->n > MAX_TOK)
                g->n = 0;
            CHECK(read_ints(line + 7 + off, g->ids, MAX_TOK) == g->n && g->n > 0);
        } else if (g && !strncmp(line, "argmax ", 7)) {
            CHECK(read_ints(line + 7, g->argmax, MAX_TOK) == g->n);
        } else if (g && !strncmp(line, "gap ", 4)) {
            char *p = line + 4, *e;
            for (int k = 0; k < g->n; k++, p = e)
                g->gap[k] = strtof(p, &e);
        } else if (g && !strncmp(line, "top ", 4)) {
            char *p = line + 4;
            for (int k = 0; k < TOPK; k++) {
                g->top_id[k] = (int32_t)strtol(p, &p, 10);
                p++; /* ':' */
                g->top_v[k] = strtof(p, &p);
            }
        } else if (g && !strncmp(line, "sample ", 7)) {
            char *p = line + 7, *e;
            g->stride = (int)strtol(p, &p, 10);
            for (g->n_sample = 0; g->n_sample < MAX_SAMPLE; p = e) {
                float v = strtof(p, &e);
                if (e == p) break;
                g->sample[g->n_sample++] = v;
            }
        } else if (g && !strncmp(line, "range ", 6)) {
            sscanf(line + 6, "%f %f", &g->lo, &g->hi);
        }
    }
    if (type[0]) check_type(type, release), n_types++;
    free(line);
    fclose(f);
    if (!getenv("LOOM_SMOLLM2_TYPES")) CHECK(n_types >= 5);
    printf("worst last-position difference: %.4f%% of the logit range\n", 100 * worst_rel);
    loom_registry_shutdown();
    return test_summary("test_smollm2_logits");
}
