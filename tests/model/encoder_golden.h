/* tests/model/encoder_golden.h - readers of the encoder goldens written by
 * scripts/gen_encoder_golden.py (formats in its docstring), shared by
 * test_encoder.c and test_encoder_minilm.c. */
#ifndef LOOM_TEST_ENCODER_GOLDEN_H
#define LOOM_TEST_ENCODER_GOLDEN_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/encoder.h"
#include "testing.h"

typedef struct enc_case {
    char *text;
    size_t len;
    int n;
    int32_t *ids;
} enc_case;

static inline char *enc_path(char *buf, size_t n, const char *rel) {
    const char *s = getenv("LOOM_SOURCE_DIR");
    snprintf(buf, n, "%s/tests/golden/encoder/%s", s ? s : ".", rel);
    return buf;
}

static inline uint8_t *enc_slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(sz > 0 ? (size_t)sz : 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = (size_t)sz;
    return b;
}

static inline uint32_t enc_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* tok_*.bin -> cases (the caller frees with enc_cases_free); count in *n. */
static inline enc_case *enc_read_tok(const char *rel, int *n) {
    char path[4096];
    size_t sz = 0, at = 4;
    uint8_t *b = enc_slurp(enc_path(path, sizeof path, rel), &sz);
    if (!b || sz < 4) {
        fprintf(stderr, "cannot read %s\n", path);
        free(b);
        return NULL;
    }
    *n = (int)enc_u32(b);
    enc_case *c = calloc((size_t)*n, sizeof *c);
    for (int i = 0; c && i < *n; i++) {
        size_t len = enc_u32(b + at);
        at += 4;
        c[i].text = malloc(len + 1);
        memcpy(c[i].text, b + at, len);
        c[i].text[len] = '\0';
        c[i].len = len;
        at += len;
        c[i].n = (int)enc_u32(b + at);
        at += 4;
        c[i].ids = malloc((size_t)c[i].n * sizeof(int32_t) + 1);
        memcpy(c[i].ids, b + at, (size_t)c[i].n * sizeof(int32_t));
        at += (size_t)c[i].n * sizeof(int32_t);
    }
    free(b);
    return c;
}

static inline void enc_cases_free(enc_case *c, int n) {
    for (int i = 0; c && i < n; i++) {
        free(c[i].text);
        free(c[i].ids);
    }
    free(c);
}

/* emb_*.bin -> count x dim floats */
static inline float *enc_read_emb(const char *rel, int *count, int *dim) {
    char path[4096];
    size_t sz = 0;
    uint8_t *b = enc_slurp(enc_path(path, sizeof path, rel), &sz);
    if (!b || sz < 8) {
        free(b);
        return NULL;
    }
    *count = (int)enc_u32(b);
    *dim = (int)enc_u32(b + 4);
    size_t nb = (size_t)*count * (size_t)*dim * sizeof(float);
    float *e = sz == 8 + nb ? malloc(nb) : NULL;
    if (e) memcpy(e, b + 8, nb);
    free(b);
    return e;
}

/* Same ids as HF tokenizers for every case; prints the first mismatches. */
static inline int enc_check_tokens(const loom_wordpiece *wp, const enc_case *c, int n,
                                   int max_tokens) {
    int bad = 0;
    int32_t *ids = malloc(4096 * sizeof *ids);
    for (int i = 0; i < n; i++) {
        int got = 0;
        loom_status st =
            loom_wordpiece_encode(wp, c[i].text, c[i].len, max_tokens, ids, 4096, &got);
        bool same =
            st == LOOM_OK && got == c[i].n && memcmp(ids, c[i].ids, (size_t)got * sizeof *ids) == 0;
        if (!same && bad++ < 5) {
            fprintf(stderr, "case %d '%.60s': %d ids, want %d\n  got :", i, c[i].text, got, c[i].n);
            for (int k = 0; k < got && k < 24; k++)
                fprintf(stderr, " %d(%s)", ids[k], loom_wordpiece_token(wp, ids[k]));
            fprintf(stderr, "\n  want:");
            for (int k = 0; k < c[i].n && k < 24; k++)
                fprintf(stderr, " %d(%s)", c[i].ids[k], loom_wordpiece_token(wp, c[i].ids[k]));
            fprintf(stderr, "\n");
        }
    }
    free(ids);
    return bad;
}

static inline double enc_cos(const float *a, const float *b, int n) {
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return ab / sqrt(aa * bb + 1e-300);
}

#endif
