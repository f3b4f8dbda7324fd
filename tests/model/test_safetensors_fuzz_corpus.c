/* tests/model/test_safetensors_fuzz_corpus.c - runs the safetensors fuzz
 * entry point (tests/fuzz/fuzz_safetensors.c) without libFuzzer: over every
 * file of the seed corpus tests/fuzz/corpus/safetensors/, a few in-memory
 * seeds, and a fixed number of deterministic random mutations of each
 * (byte edits plus JSON-aware splices of tokens such as "data_offsets",
 * numbers at the limits, brackets and quotes). CI builds with gcc (no
 * libFuzzer) and runs this under ASan/UBSan in the sanitizer build.
 *
 *   test_safetensors_fuzz_corpus [N_MUTATIONS_PER_FILE] [SEED]
 *   test_safetensors_fuzz_corpus FILE...     replay inputs (e.g. a crash file) */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz_safetensors.c"
#include "testing.h"

static uint64_t rng_state;
static uint64_t rng(void) { /* xorshift64*: fixed seed, same mutations every run */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

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

/* JSON fragments spliced into headers (the same list as tests/fuzz/safetensors.dict). */
static const char *const tokens[] = {"\"dtype\"",
                                     "\"shape\"",
                                     "\"data_offsets\"",
                                     "\"__metadata__\"",
                                     "\"F32\"",
                                     "\"F16\"",
                                     "\"BF16\"",
                                     "\"I64\"",
                                     "\"F8_E4M3\"",
                                     "\"BOOL\"",
                                     "[0,4]",
                                     "[4,0]",
                                     "[]",
                                     "[0]",
                                     "[1,1,1,1,1]",
                                     "-1",
                                     "0",
                                     "1.5",
                                     "1e400",
                                     "9007199254740993",
                                     "18446744073709551616",
                                     "{",
                                     "}",
                                     "[",
                                     "]",
                                     ",",
                                     ":",
                                     "\"",
                                     "\\u0000",
                                     "null",
                                     "true",
                                     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
                                     "\"data_offsets\":[0,4]}}"};
#define N_TOKENS (sizeof tokens / sizeof tokens[0])

static const uint64_t interesting[] = {0,
                                       1,
                                       2,
                                       3,
                                       4,
                                       7,
                                       8,
                                       9,
                                       31,
                                       32,
                                       255,
                                       256,
                                       100000000,
                                       100000001,
                                       0x7fffffff,
                                       0xffffffffull,
                                       0x100000000ull,
                                       0x7fffffffffffffffull,
                                       0xffffffffffffffffull};

/* One random edit of buf (length *n, capacity cap). */
static void mutate_once(uint8_t *buf, size_t *n, size_t cap) {
    size_t len = *n;
    uint64_t r = rng();
    size_t at = len ? (size_t)(rng() % len) : 0;
    switch (r % 9) {
    case 0: /* flip a bit */
        if (len) buf[at] ^= (uint8_t)(1u << (rng() % 8));
        break;
    case 1: /* random byte */
        if (len) buf[at] = (uint8_t)rng();
        break;
    case 2: { /* interesting u64 into the header length or anywhere */
        uint64_t v = interesting[rng() % (sizeof interesting / sizeof interesting[0])];
        size_t pos = (rng() % 2) ? 0 : at;
        for (size_t k = 0; k < 8 && pos + k < len; k++)
            buf[pos + k] = (uint8_t)(v >> (8 * k));
        break;
    }
    case 3: /* truncate */
        *n = len ? (size_t)(rng() % len) : 0;
        break;
    case 4: /* delete a run */
        if (len) {
            size_t k = 1 + (size_t)(rng() % 16);
            if (at + k > len) k = len - at;
            memmove(buf + at, buf + at + k, len - at - k);
            *n = len - k;
        }
        break;
    case 5: /* overwrite with a JSON token (header length unchanged) */
    case 6: {
        const char *t = tokens[rng() % N_TOKENS];
        size_t k = strlen(t);
        for (size_t j = 0; j < k && at + j < len; j++)
            buf[at + j] = (uint8_t)t[j];
        break;
    }
    case 7: { /* insert a JSON token and grow the header length to match */
        const char *t = tokens[rng() % N_TOKENS];
        size_t k = strlen(t);
        if (len >= 8 && len + k <= cap && at >= 8) {
            memmove(buf + at + k, buf + at, len - at);
            memcpy(buf + at, t, k);
            *n = len + k;
            uint64_t hn = 0;
            for (int i = 7; i >= 0; i--)
                hn = (hn << 8) | buf[i];
            if (hn >= at - 8) hn += k;
            for (int i = 0; i < 8; i++)
                buf[i] = (uint8_t)(hn >> (8 * i));
        }
        break;
    }
    default: /* insert a run of random bytes */
        if (len < cap) {
            size_t k = 1 + (size_t)(rng() % 16);
            if (len + k > cap) k = cap - len;
            memmove(buf + at + k, buf + at, len - at);
            for (size_t j = 0; j < k; j++)
                buf[at + j] = (uint8_t)rng();
            *n = len + k;
        }
        break;
    }
}

static int run_one(const uint8_t *data, size_t n) {
    /* exact-size heap copy so ASan catches any read past the end */
    uint8_t *c = malloc(n ? n : 1);
    if (n) memcpy(c, data, n);
    int r = LLVMFuzzerTestOneInput(c, n);
    free(c);
    return r;
}

static long n_execs;

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void fuzz_seed(const char *name, const uint8_t *seed, size_t n, int n_mut) {
    CHECK_MSG(run_one(seed, n) == 0, "%s", name);
    n_execs++;
    size_t cap = n + 256;
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

/* 8-byte length + header + data, for the in-memory seeds. */
static void fuzz_header(const char *name, const char *hdr, size_t data_n, int n_mut) {
    size_t hn = strlen(hdr), n = 8 + hn + data_n;
    uint8_t *b = calloc(n, 1);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)hn >> (8 * i));
    memcpy(b + 8, hdr, hn);
    for (size_t i = 0; i < data_n; i++)
        b[8 + hn + i] = (uint8_t)(i * 37);
    fuzz_seed(name, b, n, n_mut);
    free(b);
}

int main(int argc, char **argv) {
    if (argc > 1 && strchr(argv[1], '/') != NULL) { /* replay files */
        for (int i = 1; i < argc; i++) {
            size_t n;
            uint8_t *b = read_file(argv[i], &n);
            CHECK_MSG(b != NULL, "cannot read %s", argv[i]);
            if (b) CHECK(run_one(b, n) == 0);
            free(b);
        }
        return test_summary("test_safetensors_fuzz_corpus");
    }
    int n_mut = argc > 1 ? atoi(argv[1]) : 1000;
    uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 0) : 0x6c6f6f6d73746675ull;
    rng_state = seed ? seed : 1;
    printf("test_safetensors_fuzz_corpus: %d mutations per seed, seed 0x%llx\n", n_mut,
           (unsigned long long)seed);

    fuzz_header("two tensors",
                "{\"__metadata__\":{\"format\":\"pt\"},"
                "\"w\":{\"dtype\":\"BF16\",\"shape\":[2,32],\"data_offsets\":[0,128]},"
                "\"n\":{\"dtype\":\"F32\",\"shape\":[64],\"data_offsets\":[128,384]}}",
                384, n_mut);
    fuzz_header("empty", "{}", 0, n_mut);

    const char *src = getenv("LOOM_SOURCE_DIR");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/safetensors", src ? src : ".");
    /* sorted, so the random mutation stream does not depend on readdir order */
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
    if (n_names > 1) qsort(names, n_names, sizeof *names, cmp_str);
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
    printf("test_safetensors_fuzz_corpus: %d corpus files, %ld inputs run\n", n_files, n_execs);
    return test_summary("test_safetensors_fuzz_corpus");
}
