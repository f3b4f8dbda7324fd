/* tests/fuzz/fuzz_serve_request.c - libFuzzer entry for `loom serve`'s
 * request parser (serve/openai_json.c) and text helpers (serve/text.c).
 *
 * The input is parsed as a chat and as a completion request. An accepted
 * request must satisfy the parser's promises (strings present, at most 4
 * non-empty stop strings, values in range); a rejected one must carry a 400
 * with a message. The request's text then goes through UTF-8 repair (the
 * output must be valid UTF-8 without NUL) and the response, SSE and error
 * formatters, whose output must be JSON that cJSON parses back. The input
 * is also parsed as an embeddings request (serve/embed_json.c): an accepted
 * one has 1..4 non-empty texts, and its response formats as JSON.
 *
 * Built as a libFuzzer binary with -DLOOM_FUZZ=ON (serve/CMakeLists.txt),
 * and included by tests/serve/test_serve_fuzz_corpus.c, the plain driver
 * CI runs over tests/fuzz/corpus/serve_request. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/embed_json.h"
#include "serve/openai_json.h"
#include "serve/text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SFUZZ_REQUIRE(cond)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_serve_request: invariant failed: %s (%s:%d)\n", #cond, __FILE__, \
                    __LINE__);                                                                     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Valid UTF-8 with no NUL, checked independently of serve/text.c. */
static int sfuzz_valid_utf8(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len = c == 0           ? 0
                     : c < 0x80       ? 1
                     : (c >> 5) == 6  ? 2
                     : (c >> 4) == 14 ? 3
                     : (c >> 3) == 30 ? 4
                                      : 0;
        if (!len || i + len > n) return 0;
        unsigned cp = len == 1 ? c : c & (0x7Fu >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        static const unsigned min[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += len;
    }
    return 1;
}

static void sfuzz_json_roundtrip(char *s, int sse) {
    SFUZZ_REQUIRE(s != NULL);
    const char *j = s;
    size_t n = strlen(s);
    if (sse) {
        SFUZZ_REQUIRE(n >= 8 && !strncmp(s, "data: ", 6) && !strcmp(s + n - 2, "\n\n"));
        s[n - 2] = 0;
        j = s + 6;
    }
    cJSON *o = cJSON_Parse(j);
    SFUZZ_REQUIRE(o != NULL);
    cJSON_Delete(o);
    free(s);
}

static void sfuzz_text(const char *t, size_t n, char *const *stop, size_t n_stop) {
    size_t m = 0;
    char *r = loom_utf8_repair(t, n, &m);
    SFUZZ_REQUIRE(r != NULL && strlen(r) == m && sfuzz_valid_utf8((const unsigned char *)r, m));
    size_t k = loom_utf8_sendable(t, n);
    SFUZZ_REQUIRE(k <= n && n - k <= 3);
    long at = loom_stop_find(t, n, 0, stop, n_stop);
    SFUZZ_REQUIRE(at >= -1 && (at < 0 || (size_t)at < n));
    SFUZZ_REQUIRE(loom_stop_hold(t, n, stop, n_stop) < n + 1);
    /* logprobs whose pieces are the raw input: any bytes must give valid JSON */
    loom_serve_logprob lp[2];
    memset(lp, 0, sizeof lp);
    lp[0].tok = (loom_serve_token_lp){1, -1.0f, t, n / 2};
    lp[0].n_top = 2;
    lp[0].top[0] = lp[0].tok;
    lp[0].top[1] = (loom_serve_token_lp){2, -2.0f, t + n / 2, n - n / 2};
    lp[1].tok = lp[0].top[1];
    loom_serve_lps lps = {lp, 2, true};
    loom_serve_meta meta = {LOOM_SERVE_CHAT, "chatcmpl-x", 1, "m\"odel"};
    sfuzz_json_roundtrip(loom_serve_response_json(&meta, r, m, "stop", 1, 2, lps), 0);
    sfuzz_json_roundtrip(loom_serve_sse_chunk(&meta, r, m, true, NULL, true, lps), 1);
    meta.kind = LOOM_SERVE_COMPLETION;
    sfuzz_json_roundtrip(loom_serve_sse_chunk(&meta, r, m, false, "length", false, lps), 1);
    free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    for (int kind = 0; kind < 2; kind++) {
        loom_serve_params p;
        loom_serve_error e;
        memset(&e, 0, sizeof e);
        loom_status st =
            loom_serve_parse_request((const char *)data, size, (loom_serve_kind)kind, &p, &e);
        if (st != LOOM_OK) {
            SFUZZ_REQUIRE(e.status == 400 || e.status == 500);
            SFUZZ_REQUIRE(e.message[0] != 0);
            sfuzz_json_roundtrip(loom_serve_error_json(&e), 0);
            continue;
        }
        SFUZZ_REQUIRE(p.n_stop <= LOOM_SERVE_MAX_STOP);
        for (size_t i = 0; i < p.n_stop; i++)
            SFUZZ_REQUIRE(p.stop[i] && p.stop[i][0]);
        SFUZZ_REQUIRE(p.temperature >= 0 && p.temperature <= 2 && p.top_p >= 0 && p.top_p <= 1);
        SFUZZ_REQUIRE(p.max_tokens == -1 || p.max_tokens >= 1);
        SFUZZ_REQUIRE(!p.include_usage || p.stream);
        if (kind == LOOM_SERVE_CHAT) {
            SFUZZ_REQUIRE(p.n_messages >= 1 && p.messages);
            for (size_t i = 0; i < p.n_messages; i++) {
                SFUZZ_REQUIRE(p.messages[i].role && p.messages[i].content);
                sfuzz_text(p.messages[i].content, strlen(p.messages[i].content), p.stop, p.n_stop);
            }
        } else {
            SFUZZ_REQUIRE(p.prompt != NULL);
            sfuzz_text(p.prompt, strlen(p.prompt), p.stop, p.n_stop);
        }
        loom_serve_params_free(&p);
    }
    {
        loom_serve_embed_params ep;
        loom_serve_error e;
        memset(&e, 0, sizeof e);
        if (loom_serve_parse_embed_request((const char *)data, size, 4, &ep, &e) != LOOM_OK) {
            SFUZZ_REQUIRE(e.status == 400 || e.status == 500);
            SFUZZ_REQUIRE(e.message[0] != 0);
            sfuzz_json_roundtrip(loom_serve_error_json(&e), 0);
        } else {
            SFUZZ_REQUIRE(ep.n_input >= 1 && ep.n_input <= 4 && ep.dimensions >= 0);
            for (size_t i = 0; i < ep.n_input; i++)
                SFUZZ_REQUIRE(ep.input[i] && ep.input[i][0]);
            const float vec[4 * 3] = {0.5f, -1e-30f, 3.0f, 1, 2, 3, 4, 5, 6, 7, 8, 9};
            sfuzz_json_roundtrip(loom_serve_embed_response_json(ep.model ? ep.model : "m", vec,
                                                                ep.n_input, 3, ep.base64, 7),
                                 0);
            loom_serve_embed_params_free(&ep);
        }
    }
    /* The raw bytes as generated text (any bytes a model could emit). */
    char *stops[] = {"END", "\n\n"};
    sfuzz_text((const char *)data, size, stops, 2);
    return 0;
}
