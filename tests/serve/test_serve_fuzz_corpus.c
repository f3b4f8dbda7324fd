/* tests/serve/test_serve_fuzz_corpus.c - runs the request-parser fuzz entry
 * point (tests/fuzz/fuzz_serve_request.c) without libFuzzer over every seed
 * of tests/fuzz/corpus/serve_request/ and a fixed number of deterministic
 * mutations of each (under ASan/UBSan in the sanitizer build).
 *
 *   test_serve_fuzz_corpus [N_MUTATIONS_PER_FILE] [SEED]
 *   test_serve_fuzz_corpus FILE...            replay inputs (e.g. a crash file) */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz_serve_request.c"
#include "model/fuzz_replay.h"
#include "testing.h"

/* JSON-aware edits: structural characters and tokens the parser branches on. */
static const char *const tokens[] = {"{",           "}",
                                     "[",           "]",
                                     ",",           ":",
                                     "\"",          "null",
                                     "true",        "false",
                                     "-1",          "1e309",
                                     "0.5",         "\\u00",
                                     "\\ud83d",     "\xC3",
                                     "\xF0\x9F",    "\"stop\":",
                                     "\"n\":",      "\"messages\":",
                                     "\"prompt\":", "\"stream\":true,",
                                     "\"input\":",  "\"encoding_format\":\"base64\","};

static void mutate_once(uint8_t *buf, size_t *n, size_t cap) {
    size_t len = *n;
    size_t at = len ? (size_t)(rng() % len) : 0;
    switch (rng() % 5) {
    case 0: /* random byte */
        if (len) buf[at] = (uint8_t)rng();
        break;
    case 1: /* truncate */
        *n = len ? (size_t)(rng() % len) : 0;
        break;
    case 2: /* delete a run */
        if (len) {
            size_t k = 1 + (size_t)(rng() % 8);
            if (at + k > len) k = len - at;
            memmove(buf + at, buf + at + k, len - at - k);
            *n = len - k;
        }
        break;
    default: { /* insert a token */
        const char *t = tokens[rng() % (sizeof tokens / sizeof tokens[0])];
        size_t k = strlen(t);
        if (len + k <= cap) {
            memmove(buf + at + k, buf + at, len - at);
            memcpy(buf + at, t, k);
            *n = len + k;
        }
        break;
    }
    }
}

int main(int argc, char **argv) {
    if (fuzz_replay_args(argc, argv)) return test_summary("test_serve_fuzz_corpus");
    int n_mut = argc > 1 ? atoi(argv[1]) : 2000;
    uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 0) : 0x73657276655f6a73ull;
    rng_state = seed ? seed : 1;
    const int n_files = fuzz_corpus("serve_request", n_mut);
    printf("test_serve_fuzz_corpus: %d corpus files, %ld inputs run\n", n_files, n_execs);
    return test_summary("test_serve_fuzz_corpus");
}
