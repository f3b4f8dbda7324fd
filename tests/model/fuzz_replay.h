/* tests/model/fuzz_replay.h - the libFuzzer-free fuzz driver shared by
 * test_gguf_fuzz_corpus.c and test_safetensors_fuzz_corpus.c: a fixed-seed
 * RNG, exact-size heap copies (so ASan sees any read past the end), seeds
 * mutated a fixed number of times, crash-file replay and the sorted corpus
 * walk. Included once per test executable, after the fuzz target (which
 * defines LLVMFuzzerTestOneInput); the including file defines mutate_once,
 * its format-aware edits, and sets fuzz_slack. */
#ifndef LOOM_TESTS_FUZZ_REPLAY_H
#define LOOM_TESTS_FUZZ_REPLAY_H

#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testing.h"

static uint64_t rng_state;
static uint64_t rng(void) { /* xorshift64*: fixed seed, same mutations every run */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

/* One random edit of buf (length *n, capacity cap), defined by the driver. */
static void mutate_once(uint8_t *buf, size_t *n, size_t cap);
/* Bytes a mutated input may grow by (insertions). */
static size_t fuzz_slack = 64;
static long n_execs;

/* Whole file into a malloc'd buffer (caller frees), NULL when unreadable. */
static uint8_t *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *buf = NULL;
    size_t cap = 0;
    *n = 0;
    for (;;) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 4096;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) break;
            buf = nb;
        }
        size_t k = fread(buf + *n, 1, cap - *n, f);
        *n += k;
        if (k == 0) break;
    }
    fclose(f);
    return buf;
}

static int run_one(const uint8_t *data, size_t n) {
    uint8_t *c = malloc(n ? n : 1);
    if (n) memcpy(c, data, n);
    int r = LLVMFuzzerTestOneInput(c, n);
    free(c);
    return r;
}

/* The seed itself (must be accepted without error), then n_mut mutants of
 * 1-4 edits each (any outcome but a crash or sanitizer report is fine). */
static void fuzz_seed(const char *name, const uint8_t *seed, size_t n, int n_mut) {
    CHECK_MSG(run_one(seed, n) == 0, "%s", name);
    n_execs++;
    size_t cap = n + fuzz_slack;
    uint8_t *buf = malloc(cap);
    for (int m = 0; m < n_mut; m++) {
        size_t len = n;
        memcpy(buf, seed, n);
        int edits = 1 + (int)(rng() % 4);
        for (int e = 0; e < edits; e++)
            mutate_once(buf, &len, cap);
        run_one(buf, len);
        n_execs++;
    }
    free(buf);
}

/* argv[1..] are files to replay (e.g. a crash file): true when handled. */
static bool fuzz_replay_args(int argc, char **argv) {
    if (argc <= 1 || strchr(argv[1], '/') == NULL) return false;
    for (int i = 1; i < argc; i++) {
        size_t n;
        uint8_t *b = read_file(argv[i], &n);
        CHECK_MSG(b != NULL, "cannot read %s", argv[i]);
        if (b) CHECK(run_one(b, n) == 0);
        free(b);
    }
    return true;
}

static int fuzz_cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every file of $LOOM_SOURCE_DIR/tests/fuzz/corpus/<sub> as a seed, in name
 * order (so the mutation stream does not depend on readdir order); returns
 * the number of files run. */
static int fuzz_corpus(const char *sub, int n_mut) {
    const char *src = getenv("LOOM_SOURCE_DIR");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/%s", src ? src : ".", sub);
    char **names = NULL;
    size_t n_names = 0;
    DIR *d = opendir(dir);
    CHECK_MSG(d != NULL, "cannot open corpus %s (is LOOM_SOURCE_DIR set?)", dir);
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.') continue;
        char **nn = realloc(names, (n_names + 1) * sizeof *names);
        if (!nn) break;
        names = nn;
        names[n_names] = malloc(strlen(e->d_name) + 1);
        if (names[n_names]) strcpy(names[n_names++], e->d_name);
    }
    if (d) closedir(d);
    if (n_names > 1) qsort(names, n_names, sizeof *names, fuzz_cmp_str);
    int n_files = 0;
    for (size_t i = 0; i < n_names; i++) {
        char path[4096 + 256];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        size_t n;
        uint8_t *b = read_file(path, &n);
        if (b) {
            n_files++;
            fuzz_seed(names[i], b, n, n_mut);
        }
        free(b);
        free(names[i]);
    }
    free(names);
    CHECK_MSG(n_files >= 5, "only %d corpus files in %s", n_files, dir);
    return n_files;
}

#endif
