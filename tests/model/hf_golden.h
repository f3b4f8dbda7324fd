/* tests/model/hf_golden.h - reads tests/model/data/hf/<name>/golden.txt and
 * logits.bin (format: scripts/gen_hf_golden.py's docstring). Header-only, for
 * the tests; the directory comes from $LOOM_SOURCE_DIR. */
#ifndef LOOM_TESTS_HF_GOLDEN_H
#define LOOM_TESTS_HF_GOLDEN_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/dtype.h"
#include "loom/status.h"

#define HF_GOLDEN_MAX_PROMPTS 8
#define HF_GOLDEN_MAX_TOKENS  256

typedef struct hf_golden_tensor {
    char name[128];
    char dtype[16];
    int n_dims;
    int64_t shape[4];
} hf_golden_tensor;

typedef struct hf_golden_prompt {
    int n_tokens;
    int32_t tokens[HF_GOLDEN_MAX_TOKENS];
    int64_t logits_offset; /* in floats, into hf_golden.logits: [n_tokens, vocab] */
    float logit_min, logit_max;
    int n_generated;
    int32_t generated[HF_GOLDEN_MAX_TOKENS];
    double margin; /* smallest top-1 minus top-2 gap of the greedy steps */
} hf_golden_prompt;

typedef struct hf_golden {
    char name[64];
    char dir[1024];       /* the model directory */
    char checkpoint[256]; /* relative to dir */
    loom_dtype storage;   /* F16 or BF16 */
    int64_t dim, n_layers, n_heads, n_kv_heads, head_dim, ffn_dim, vocab_size, max_ctx;
    int64_t n_experts, n_experts_used, expert_ffn_dim;
    float rms_eps, rope_theta;
    int rope_llama3;
    float rope_factor, rope_low, rope_high;
    int32_t rope_orig_ctx;
    int tie;
    int32_t bos_id, eos_id;
    int n_tensors;
    hf_golden_tensor *tensors;
    int n_prompts;
    hf_golden_prompt prompts[HF_GOLDEN_MAX_PROMPTS];
    float *logits; /* the whole logits.bin */
    int64_t n_logits;
} hf_golden;

static inline void hf_golden_free(hf_golden *g) {
    free(g->tensors);
    free(g->logits);
    g->tensors = NULL;
    g->logits = NULL;
}

static inline int hf_golden_ids(char *rest, int32_t *ids, int max) {
    int n = 0;
    for (char *tok = strtok(rest, " \n"); tok && n < max; tok = strtok(NULL, " \n"))
        ids[n++] = (int32_t)strtol(tok, NULL, 10);
    return n;
}

/* Load model `name`; on failure err says why. g is freed with hf_golden_free. */
static inline loom_status hf_golden_load(const char *name, hf_golden *g, char *err, size_t err_n) {
    memset(g, 0, sizeof *g);
    const char *src = getenv("LOOM_SOURCE_DIR");
    snprintf(g->name, sizeof g->name, "%s", name);
    snprintf(g->dir, sizeof g->dir, "%s/tests/model/data/hf/%s", src ? src : ".", name);
    char path[1100];
    snprintf(path, sizeof path, "%s/golden.txt", g->dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, err_n, "cannot open %.400s (is LOOM_SOURCE_DIR set?)", path);
        return LOOM_ERR_IO;
    }
    char line[8192];
    loom_status s = LOOM_OK;
    while (s == LOOM_OK && fgets(line, sizeof line, f)) {
        char key[32], a[160], b[160];
        int p, n;
        if (line[0] == '#' || sscanf(line, "%31s", key) != 1) continue;
        if (!strcmp(key, "model")) {
            continue;
        } else if (!strcmp(key, "checkpoint")) {
            sscanf(line, "%*s %255s", g->checkpoint);
        } else if (!strcmp(key, "storage")) {
            sscanf(line, "%*s %159s", a);
            g->storage = !strcmp(a, "BF16") ? LOOM_BF16 : !strcmp(a, "F16") ? LOOM_F16 : LOOM_F32;
        } else if (!strcmp(key, "cfg")) {
            double v = 0;
            if (sscanf(line, "%*s %159s %159s", a, b) != 2) continue;
            v = strtod(b, NULL);
            if (!strcmp(a, "dim")) g->dim = (int64_t)v;
            if (!strcmp(a, "n_layers")) g->n_layers = (int64_t)v;
            if (!strcmp(a, "n_heads")) g->n_heads = (int64_t)v;
            if (!strcmp(a, "n_kv_heads")) g->n_kv_heads = (int64_t)v;
            if (!strcmp(a, "head_dim")) g->head_dim = (int64_t)v;
            if (!strcmp(a, "ffn_dim")) g->ffn_dim = (int64_t)v;
            if (!strcmp(a, "vocab_size")) g->vocab_size = (int64_t)v;
            if (!strcmp(a, "max_ctx")) g->max_ctx = (int64_t)v;
            if (!strcmp(a, "n_experts")) g->n_experts = (int64_t)v;
            if (!strcmp(a, "n_experts_used")) g->n_experts_used = (int64_t)v;
            if (!strcmp(a, "expert_ffn_dim")) g->expert_ffn_dim = (int64_t)v;
            if (!strcmp(a, "rms_eps")) g->rms_eps = (float)v;
            if (!strcmp(a, "rope_theta")) g->rope_theta = (float)v;
            if (!strcmp(a, "tie")) g->tie = (int)v;
            if (!strcmp(a, "bos_id")) g->bos_id = (int32_t)v;
            if (!strcmp(a, "eos_id")) g->eos_id = (int32_t)v;
            if (!strcmp(a, "rope_scaling") && !strcmp(b, "llama3")) {
                double fa, lo, hi;
                int orig;
                g->rope_llama3 =
                    sscanf(line, "%*s %*s %*s %lf %lf %lf %d", &fa, &lo, &hi, &orig) == 4;
                g->rope_factor = (float)fa;
                g->rope_low = (float)lo;
                g->rope_high = (float)hi;
                g->rope_orig_ctx = orig;
            }
        } else if (!strcmp(key, "tensor")) {
            hf_golden_tensor *nt = realloc(g->tensors, (size_t)(g->n_tensors + 1) * sizeof *nt);
            if (!nt) {
                s = LOOM_ERR_OOM;
                break;
            }
            g->tensors = nt;
            hf_golden_tensor *t = &nt[g->n_tensors++];
            memset(t, 0, sizeof *t);
            long long d[4] = {0};
            int k = sscanf(line, "%*s %127s %15s %lld %lld %lld %lld", t->name, t->dtype, &d[0],
                           &d[1], &d[2], &d[3]);
            t->n_dims = k - 2;
            for (int i = 0; i < 4; i++)
                t->shape[i] = d[i];
        } else if (sscanf(line, "%*s %d%n", &p, &n) == 1 && p >= 0 && p < HF_GOLDEN_MAX_PROMPTS) {
            hf_golden_prompt *pr = &g->prompts[p];
            if (p + 1 > g->n_prompts) g->n_prompts = p + 1;
            char *rest = line + n;
            if (!strcmp(key, "prompt")) {
                int cnt = (int)strtol(rest, &rest, 10);
                pr->n_tokens = hf_golden_ids(rest, pr->tokens, HF_GOLDEN_MAX_TOKENS);
                if (pr->n_tokens != cnt) s = LOOM_ERR_FORMAT;
            } else if (!strcmp(key, "generated")) {
                int cnt = (int)strtol(rest, &rest, 10);
                pr->n_generated = hf_golden_ids(rest, pr->generated, HF_GOLDEN_MAX_TOKENS);
                if (pr->n_generated != cnt) s = LOOM_ERR_FORMAT;
            } else if (!strcmp(key, "logits")) {
                long long off, t, v;
                double lo, hi;
                if (sscanf(rest, "%lld %lld %lld %lf %lf", &off, &t, &v, &lo, &hi) != 5 ||
                    t != pr->n_tokens)
                    s = LOOM_ERR_FORMAT;
                pr->logits_offset = off;
                pr->logit_min = (float)lo;
                pr->logit_max = (float)hi;
            } else if (!strcmp(key, "margin")) {
                pr->margin = strtod(rest, NULL);
            }
        }
    }
    fclose(f);
    if (s != LOOM_OK) {
        snprintf(err, err_n, "%.300s: malformed line: %.100s", path, line);
        hf_golden_free(g);
        return s;
    }
    /* logits.bin: every prompt's [T, V] block */
    snprintf(path, sizeof path, "%s/logits.bin", g->dir);
    f = fopen(path, "rb");
    if (!f) {
        snprintf(err, err_n, "cannot open %.400s", path);
        hf_golden_free(g);
        return LOOM_ERR_IO;
    }
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    g->n_logits = bytes / 4;
    g->logits = malloc((size_t)bytes + 4);
    size_t got = g->logits ? fread(g->logits, 1, (size_t)bytes, f) : 0;
    fclose(f);
    int64_t need = 0;
    for (int p = 0; p < g->n_prompts; p++) {
        int64_t end = g->prompts[p].logits_offset + (int64_t)g->prompts[p].n_tokens * g->vocab_size;
        if (end > need) need = end;
    }
    if (got != (size_t)bytes || need != g->n_logits || g->n_prompts == 0 || g->n_tensors == 0) {
        snprintf(err, err_n, "%.400s: %ld bytes, golden.txt needs %lld floats", path, bytes,
                 (long long)need);
        hf_golden_free(g);
        return LOOM_ERR_FORMAT;
    }
    return LOOM_OK;
}

#endif
