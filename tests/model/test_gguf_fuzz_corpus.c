/* tests/model/test_gguf_fuzz_corpus.c - runs the GGUF fuzz entry point
 * (tests/fuzz/fuzz_gguf.c) without libFuzzer: over every file of the seed
 * corpus tests/fuzz/corpus/gguf/, the in-memory fixture, and a fixed number
 * of deterministic random mutations of each. CI builds with gcc (no
 * libFuzzer) and runs this under ASan/UBSan in the sanitizer build.
 *
 *   test_gguf_fuzz_corpus [N_MUTATIONS_PER_FILE] [SEED]
 *   test_gguf_fuzz_corpus FILE...            replay inputs (e.g. a crash file) */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz_gguf.c"
#include "model/test_gguf_fixture.h"
#include "model/fuzz_replay.h"
#include "testing.h"

/* Values that tend to hit boundaries of lengths, counts and type ids. */
static const uint64_t interesting[] = {0,
                                       1,
                                       2,
                                       3,
                                       4,
                                       5,
                                       8,
                                       9,
                                       12,
                                       13,
                                       31,
                                       32,
                                       33,
                                       255,
                                       256,
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
    switch (r % 7) {
    case 0: /* flip a bit */
        if (len) buf[at] ^= (uint8_t)(1u << (rng() % 8));
        break;
    case 1: /* random byte */
        if (len) buf[at] = (uint8_t)rng();
        break;
    case 2: /* interesting little-endian u64 or u32 */
    case 3: {
        uint64_t v = interesting[rng() % (sizeof interesting / sizeof interesting[0])];
        size_t w = (r % 7) == 2 ? 8 : 4;
        for (size_t k = 0; k < w && at + k < len; k++)
            buf[at + k] = (uint8_t)(v >> (8 * k));
        break;
    }
    case 4: /* truncate */
        *n = len ? (size_t)(rng() % len) : 0;
        break;
    case 5: /* delete a run */
        if (len) {
            size_t k = 1 + (size_t)(rng() % 16);
            if (at + k > len) k = len - at;
            memmove(buf + at, buf + at + k, len - at - k);
            *n = len - k;
        }
        break;
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

int main(int argc, char **argv) {
    if (fuzz_replay_args(argc, argv)) return test_summary("test_gguf_fuzz_corpus");
    int n_mut = argc > 1 ? atoi(argv[1]) : 1000;
    uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 0) : 0x6c6f6f6d67677566ull;
    rng_state = seed ? seed : 1;
    printf("test_gguf_fuzz_corpus: %d mutations per seed, seed 0x%llx\n", n_mut,
           (unsigned long long)seed);

    /* the round-trip fixture, always available */
    loom_gguf_writer *w = NULL;
    uint8_t **bufs = NULL;
    void *fx = NULL;
    size_t fx_n = 0;
    CHECK(loom_gguf_writer_new(&w) == LOOM_OK && fixture_build(w, &bufs) == LOOM_OK &&
          loom_gguf_writer_write_memory(w, &fx, &fx_n) == LOOM_OK);
    if (fx) fuzz_seed("fixture", fx, fx_n, n_mut);
    free(fx);
    fixture_free(bufs);
    loom_gguf_writer_free(w);

    const int n_files = fuzz_corpus("gguf", n_mut);
    printf("test_gguf_fuzz_corpus: %d corpus files, %ld inputs run\n", n_files, n_execs);
    return test_summary("test_gguf_fuzz_corpus");
}
