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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz_safetensors.c"
#include "model/fuzz_replay.h"
#include "testing.h"

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
    if (fuzz_replay_args(argc, argv)) return test_summary("test_safetensors_fuzz_corpus");
    int n_mut = argc > 1 ? atoi(argv[1]) : 1000;
    uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 0) : 0x6c6f6f6d73746675ull;
    rng_state = seed ? seed : 1;
    fuzz_slack = 256; /* room for inserted JSON tokens */
    printf("test_safetensors_fuzz_corpus: %d mutations per seed, seed 0x%llx\n", n_mut,
           (unsigned long long)seed);

    fuzz_header("two tensors",
                "{\"__metadata__\":{\"format\":\"pt\"},"
                "\"w\":{\"dtype\":\"BF16\",\"shape\":[2,32],\"data_offsets\":[0,128]},"
                "\"n\":{\"dtype\":\"F32\",\"shape\":[64],\"data_offsets\":[128,384]}}",
                384, n_mut);
    fuzz_header("empty", "{}", 0, n_mut);

    const int n_files = fuzz_corpus("safetensors", n_mut);
    printf("test_safetensors_fuzz_corpus: %d corpus files, %ld inputs run\n", n_files, n_execs);
    return test_summary("test_safetensors_fuzz_corpus");
}
