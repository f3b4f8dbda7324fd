/* tests/model/test_wordpiece_fuzz_corpus.c - runs the WordPiece fuzz entry
 * point (tests/fuzz/fuzz_wordpiece.c) without libFuzzer: over every file of
 * tests/fuzz/corpus/wordpiece/, the tiny BERT's tokenizer.json and the
 * goldens' texts, each with a fixed number of deterministic mutations (byte
 * edits and splices of UTF-8 sequences: combining marks, CJK, invalid bytes,
 * special tokens, JSON fragments). CI runs it under ASan/UBSan too.
 *
 *   test_wordpiece_fuzz_corpus [N_MUTATIONS_PER_SEED] [SEED]
 *   test_wordpiece_fuzz_corpus FILE...     replay inputs (e.g. a crash file) */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz_wordpiece.c"
#include "model/encoder_golden.h"
#include "model/fuzz_replay.h"

static const char *const tokens[] = {"\xcc\x81",
                                     "\xe4\xb8\xad",
                                     "\xf0\x9f\x98\x80",
                                     "\xff",
                                     "\xc3",
                                     "\xe2\x80\x8b",
                                     "\xc4\xb0",
                                     "[SEP]",
                                     "[CLS]",
                                     "##",
                                     " ",
                                     "\t",
                                     "\x00",
                                     ",",
                                     "{",
                                     "}",
                                     "\"vocab\"",
                                     ":",
                                     "-1",
                                     "1e99",
                                     "null",
                                     "\"WordPiece\"",
                                     "\"BertNormalizer\"",
                                     "[",
                                     "]",
                                     "\"",
                                     "true",
                                     "0"};
#define N_TOKENS (sizeof tokens / sizeof tokens[0])

static void mutate_once(uint8_t *buf, size_t *n, size_t cap) {
    size_t len = *n;
    size_t at = len > 1 ? 1 + (size_t)(rng() % (len - 1)) : len; /* byte 0 is the mode */
    switch (rng() % 6) {
    case 0:
        if (at < len) buf[at] ^= (uint8_t)(1u << (rng() % 8));
        break;
    case 1:
        if (at < len) buf[at] = (uint8_t)rng();
        break;
    case 2:
        *n = len > 1 ? 1 + (size_t)(rng() % len) : len;
        break;
    case 3: /* delete a run */
        if (at < len) {
            size_t k = 1 + (size_t)(rng() % 8);
            if (at + k > len) k = len - at;
            memmove(buf + at, buf + at + k, len - at - k);
            *n = len - k;
        }
        break;
    default: { /* insert a token */
        const char *t = tokens[rng() % N_TOKENS];
        size_t k = strlen(t) ? strlen(t) : 1;
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
    if (fuzz_replay_args(argc, argv)) return test_summary("test_wordpiece_fuzz_corpus");
    int n_mut = argc > 1 ? atoi(argv[1]) : 300;
    uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 0) : 0x6c6f6f6d77706675ull;
    rng_state = seed ? seed : 1;
    fuzz_slack = 128;
    /* text seeds: the golden corpus */
    int n = 0;
    enc_case *c = enc_read_tok("tok_tiny.bin", &n);
    CHECK(c != NULL);
    for (int i = 0; c && i < n; i++) {
        uint8_t *b = malloc(c[i].len + 1);
        b[0] = (uint8_t)('a' + i);
        memcpy(b + 1, c[i].text, c[i].len);
        char name[32];
        snprintf(name, sizeof name, "text %d", i);
        fuzz_seed(name, b, c[i].len + 1, n_mut);
        free(b);
    }
    enc_cases_free(c, n);
    /* tokenizer.json seed: the tiny BERT's (17 KB), fewer mutations */
    char path[4096];
    size_t sz = 0;
    uint8_t *tj = enc_slurp(enc_path(path, sizeof path, "tiny-bert/tokenizer.json"), &sz);
    CHECK(tj != NULL);
    if (tj) {
        uint8_t *b = malloc(sz + 1);
        b[0] = 'J';
        memcpy(b + 1, tj, sz);
        fuzz_slack = 128;
        fuzz_seed("tiny-bert tokenizer.json", b, sz + 1, n_mut / 3);
        free(b);
        free(tj);
    }
    const int n_files = fuzz_corpus("wordpiece", n_mut);
    printf("test_wordpiece_fuzz_corpus: %d corpus files, %ld inputs run\n", n_files, n_execs);
    return test_summary("test_wordpiece_fuzz_corpus");
}
