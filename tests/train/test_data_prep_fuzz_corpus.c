/* tests/train/test_data_prep_fuzz_corpus.c - runs the data-prep fuzz entry
 * point (tests/fuzz/fuzz_data_prep.c) without libFuzzer: every seed of
 * tests/fuzz/corpus/data_prep/ and a fixed number of deterministic mutations
 * of each (byte edits plus HTML/JSON/Unicode fragments spliced in). CI runs
 * it in the plain and the sanitizer builds.
 *
 *   test_data_prep_fuzz_corpus [N_MUTATIONS_PER_FILE] [SEED]
 *   test_data_prep_fuzz_corpus FILE...        replay inputs (a crash file) */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz_data_prep.c"
#include "model/fuzz_replay.h"
#include "testing.h"

static const char *const fragments[] = {
    "<",
    ">",
    "</p>",
    "<pre>",
    "</pre>",
    "<nav>",
    "<a class=\"headerlink\">",
    "<h3>",
    "</h3>",
    "<script>",
    "<!--",
    "-->",
    "&amp;",
    "&#x0;",
    "\"",
    "\\",
    "\\u0000",
    "\\ud800",
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "\n",
    "\r\n",
    "@",
    "http://",
    "www.",
    "\xc2\xa0",
    "\xef\xac\x81",
    "\xe2\x80\xa8",
    "\xff",
    "\xc3",
    "\xf0\x9f\x98\x80",
    "{\"text\":\"",
    "{\"messages\":[{\"role\":\"user\",\"content\":\"",
};

static void mutate_once(uint8_t *buf, size_t *n, size_t cap) {
    size_t len = *n;
    size_t at = len ? (size_t)(rng() % len) : 0;
    switch (rng() % 5) {
    case 0:
        if (len > 1) buf[1 + rng() % (len - 1)] ^= (uint8_t)(1u << (rng() % 8));
        break;
    case 1: /* truncate (keep the mode byte) */
        if (len > 1) *n = 1 + (size_t)(rng() % (len - 1));
        break;
    case 2: /* delete a run */
        if (len > 1 && at > 0) {
            size_t k = 1 + (size_t)(rng() % 32);
            if (at + k > len) k = len - at;
            memmove(buf + at, buf + at + k, len - at - k);
            *n = len - k;
        }
        break;
    default: { /* splice a fragment */
        const char *f = fragments[rng() % (sizeof fragments / sizeof fragments[0])];
        size_t k = strlen(f);
        if (at == 0) at = len ? 1 : 0;
        if (len + k <= cap) {
            memmove(buf + at + k, buf + at, len - at);
            memcpy(buf + at, f, k);
            *n = len + k;
        }
        break;
    }
    }
}

int main(int argc, char **argv) {
    fuzz_slack = 256;
    if (fuzz_replay_args(argc, argv)) return test_summary("test_data_prep_fuzz_corpus");
    int n_mut = argc > 1 ? atoi(argv[1]) : 200;
    uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 0) : 0x70726570ull;
    rng_state = seed ? seed : 1;
    printf("test_data_prep_fuzz_corpus: %d mutations per seed, seed 0x%llx\n", n_mut,
           (unsigned long long)seed);
    int n = fuzz_corpus("data_prep", n_mut);
    printf("test_data_prep_fuzz_corpus: %d corpus files, %ld inputs run\n", n, n_execs);
    return test_summary("test_data_prep_fuzz_corpus");
}
