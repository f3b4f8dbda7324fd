/* tests/train/train_fixture.h - a byte-level tokenizer (256 byte tokens in
 * GPT-2's encoding + Llama-3's chat special tokens) for train/ tests that
 * need text without shipping a vocabulary. */
#ifndef LOOM_TESTS_TRAIN_FIXTURE_H
#define LOOM_TESTS_TRAIN_FIXTURE_H

#include <stdbool.h>
#include <stdio.h>

#include "loom/tokenizer.h"

/* GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to
 * 256 + n, written as UTF-8. */
static inline void byte_token(int b, char *out) {
    static int map[256];
    static bool init;
    if (!init) {
        int n = 0;
        for (int i = 0; i < 256; i++) {
            bool keep = (i >= 33 && i <= 126) || (i >= 161 && i <= 172) || (i >= 174);
            map[i] = keep ? i : 256 + n++;
        }
        init = true;
    }
    int c = map[b];
    if (c < 0x80) {
        out[0] = (char)c;
        out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3F));
        out[2] = 0;
    }
}

/* 261 ids: bytes 0..255, then <|begin_of_text|> 256, <|end_of_text|> 257,
 * <|eot_id|> 258, <|start_header_id|> 259, <|end_header_id|> 260. */
static inline loom_tokenizer *byte_tokenizer(void) {
    static char strs[256][4];
    const char *toks[261];
    int32_t types[261];
    for (int i = 0; i < 256; i++) {
        byte_token(i, strs[i]);
        toks[i] = strs[i];
        types[i] = LOOM_TOKEN_NORMAL;
    }
    const char *sp[5] = {"<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
                         "<|start_header_id|>", "<|end_header_id|>"};
    for (int i = 0; i < 5; i++) {
        toks[256 + i] = sp[i];
        types[256 + i] = LOOM_TOKEN_CONTROL;
    }
    loom_tokenizer *tok = NULL;
    char err[512];
    if (loom_tokenizer_from_vocab(toks, 261, NULL, 0, types, NULL, false, &tok, err, sizeof err) !=
        LOOM_OK)
        fprintf(stderr, "tokenizer: %s\n", err);
    return tok;
}

#endif
