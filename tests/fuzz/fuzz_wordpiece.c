/* tests/fuzz/fuzz_wordpiece.c - libFuzzer entry for the WordPiece tokenizer
 * (loom/encoder.h): its tokenizer.json loader and its encoder.
 *
 * Byte 0 picks the mode. 'J': the rest is a tokenizer.json; a rejected one
 * must come with a message and no object, an accepted one must encode a few
 * fixed texts within its invariants. Anything else: the rest is text for a
 * small fixed vocabulary (lower-casing, accents, CJK, punctuation, specials).
 * Invariants of every encoding: [CLS] first, [SEP] last (the ids "" gets), every id inside
 * the vocabulary, at most max_tokens ids, the same ids when encoded again
 * and when the output buffer is too small (the count is still reported).
 * Invariant failures abort, which libFuzzer and ctest both report.
 *
 * Built as a libFuzzer binary with -DLOOM_FUZZ=ON (clang), and included by
 * tests/model/test_wordpiece_fuzz_corpus.c, the plain driver CI runs. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/encoder.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define WP_FUZZ_REQUIRE(cond)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_wordpiece: invariant failed: %s (%s:%d)\n", #cond, __FILE__,     \
                    __LINE__);                                                                     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const char wp_fuzz_vocab[] =
    "{\"normalizer\":{\"type\":\"BertNormalizer\",\"clean_text\":true,"
    "\"handle_chinese_chars\":true,\"strip_accents\":null,\"lowercase\":true},"
    "\"added_tokens\":[{\"id\":0,\"content\":\"[PAD]\"},{\"id\":1,\"content\":\"[UNK]\"},"
    "{\"id\":2,\"content\":\"[CLS]\"},{\"id\":3,\"content\":\"[SEP]\"}],"
    "\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\",\"continuing_subword_prefix\":\"##"
    "\","
    "\"max_input_chars_per_word\":20,\"vocab\":{\"[PAD]\":0,\"[UNK]\":1,\"[CLS]\":2,\"[SEP]\":3,"
    "\"a\":4,\"b\":5,\"##a\":6,\"##b\":7,\"ab\":8,\"cafe\":9,\",\":10,\".\":11,\"中\":12,"
    "\"##ing\":13,\"play\":14,\"i\":15,\"##\\u0307\":16,\"e\":17,\"##e\":18}}}";

static void wp_fuzz_encode(const loom_wordpiece *wp, const char *text, size_t n, int max_tokens) {
    int32_t ids[64], again[64], small[2];
    int got = 0, got2 = 0, got3 = 0;
    WP_FUZZ_REQUIRE(loom_wordpiece_encode(wp, text, n, max_tokens, ids, 64, &got) == LOOM_OK);
    WP_FUZZ_REQUIRE(got >= 2 && got <= max_tokens);
    const int k = got < 64 ? got : 64;
    const int32_t V = loom_wordpiece_vocab_size(wp);
    for (int i = 0; i < k; i++)
        WP_FUZZ_REQUIRE(ids[i] >= 0 && ids[i] < V);
    int32_t empty[2]; /* "" encodes as [CLS] [SEP] (whatever their names) */
    int ne = 0;
    WP_FUZZ_REQUIRE(loom_wordpiece_encode(wp, "", 0, 2, empty, 2, &ne) == LOOM_OK && ne == 2);
    WP_FUZZ_REQUIRE(ids[0] == empty[0]);
    if (got <= 64) WP_FUZZ_REQUIRE(ids[got - 1] == empty[1]);
    WP_FUZZ_REQUIRE(loom_wordpiece_encode(wp, text, n, max_tokens, again, 64, &got2) == LOOM_OK);
    WP_FUZZ_REQUIRE(got2 == got && memcmp(ids, again, (size_t)k * sizeof *ids) == 0);
    WP_FUZZ_REQUIRE(loom_wordpiece_encode(wp, text, n, max_tokens, small, 2, &got3) == LOOM_OK);
    WP_FUZZ_REQUIRE(got3 == got && small[0] == ids[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    char err[512] = "";
    loom_wordpiece *wp = NULL;
    const char *rest = (const char *)data + 1;
    const size_t n = size - 1;
    if (data[0] == 'J') {
        loom_status st = loom_wordpiece_load_json(rest, n, &wp, err, sizeof err);
        if (st != LOOM_OK) {
            WP_FUZZ_REQUIRE(wp == NULL && err[0] != '\0');
            return 0;
        }
        static const char *const texts[] = {"", "Hello, world!", "Café 中文 [SEP] x",
                                            "\xff\xfe broken \xc3"};
        for (int i = 0; i < 4; i++)
            wp_fuzz_encode(wp, texts[i], strlen(texts[i]), 48);
    } else {
        WP_FUZZ_REQUIRE(loom_wordpiece_load_json(wp_fuzz_vocab, sizeof wp_fuzz_vocab - 1, &wp, err,
                                                 sizeof err) == LOOM_OK);
        wp_fuzz_encode(wp, rest, n, 2 + data[0] % 40);
        wp_fuzz_encode(wp, rest, n, 1 << 20);
    }
    loom_wordpiece_free(wp);
    return 0;
}
