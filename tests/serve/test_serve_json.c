/* tests/serve/test_serve_json.c - the pure parts of serve/: OpenAI request
 * parsing and validation, response/SSE/error formatting, UTF-8 repair and
 * stop strings, the constant-time key comparison. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/openai_json.h"
#include "serve/ratelimit.h"
#include "serve/server.h"
#include "serve/text.h"

static int failures = 0;
#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c);                  \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

#define CHECK_MSG(c, ...)                                                                          \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #c);                  \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static loom_status parse(const char *body, loom_serve_kind k, loom_serve_params *p,
                         loom_serve_error *e) {
    return loom_serve_parse_request(body, strlen(body), k, p, e);
}

/* The request is rejected with 400 naming param (NULL: no parameter). */
static void expect_400(const char *body, loom_serve_kind k, const char *param) {
    loom_serve_params p;
    loom_serve_error e;
    memset(&e, 0, sizeof e);
    loom_status st = parse(body, k, &p, &e);
    CHECK(st != LOOM_OK);
    CHECK(e.status == 400);
    if (param) {
        CHECK(e.param && !strcmp(e.param, param));
        if (!e.param || strcmp(e.param, param))
            fprintf(stderr, "  body %s: param %s, want %s (%s)\n", body, e.param ? e.param : "null",
                    param, e.message);
    } else {
        CHECK(e.param == NULL);
    }
}

static void test_chat_ok(void) {
    loom_serve_params p;
    loom_serve_error e;
    const char *b = "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
                    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
                    "{\"type\":\"text\",\"text\":\"b\"}]}],\"temperature\":0,\"top_p\":0.5,"
                    "\"max_tokens\":7,\"max_completion_tokens\":9,\"stop\":[\"x\",\"\",\"yz\"],"
                    "\"seed\":42,\"presence_penalty\":0.5,\"frequency_penalty\":-1,\"n\":1,"
                    "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"user\":\"u\"}";
    CHECK(parse(b, LOOM_SERVE_CHAT, &p, &e) == LOOM_OK);
    CHECK(!strcmp(p.model, "m"));
    CHECK(p.n_messages == 2);
    CHECK(!strcmp(p.messages[0].role, "system") && !strcmp(p.messages[0].content, "be brief"));
    CHECK(!strcmp(p.messages[1].content, "ab"));
    CHECK(p.temperature == 0 && p.top_p == 0.5);
    CHECK(p.max_tokens == 9);
    CHECK(p.n_stop == 2 && !strcmp(p.stop[0], "x") && !strcmp(p.stop[1], "yz"));
    CHECK(p.has_seed && p.seed == 42);
    CHECK(p.presence_penalty == 0.5 && p.frequency_penalty == -1);
    CHECK(p.stream && p.include_usage);
    loom_serve_params_free(&p);

    /* Defaults, nulls, and a single stop string. */
    CHECK(parse("{\"messages\":[{\"role\":\"developer\",\"content\":\"x\"}],\"temperature\":null,"
                "\"stop\":\"END\",\"logprobs\":false}",
                LOOM_SERVE_CHAT, &p, &e) == LOOM_OK);
    CHECK(p.model == NULL && p.temperature == 1 && p.top_p == 1 && p.max_tokens == -1);
    CHECK(!strcmp(p.messages[0].role, "system"));
    CHECK(p.n_stop == 1 && !strcmp(p.stop[0], "END") && !p.stream && !p.has_seed);
    loom_serve_params_free(&p);
}

static void test_completion_ok(void) {
    loom_serve_params p;
    loom_serve_error e;
    CHECK(parse("{\"prompt\":\"hello\"}", LOOM_SERVE_COMPLETION, &p, &e) == LOOM_OK);
    CHECK(!strcmp(p.prompt, "hello"));
    loom_serve_params_free(&p);
    CHECK(parse("{\"prompt\":[\"one\"],\"best_of\":1}", LOOM_SERVE_COMPLETION, &p, &e) == LOOM_OK);
    CHECK(!strcmp(p.prompt, "one"));
    loom_serve_params_free(&p);
}

static void test_errors(void) {
    const loom_serve_kind C = LOOM_SERVE_CHAT, P = LOOM_SERVE_COMPLETION;
    expect_400("", C, NULL);
    expect_400("{", C, NULL);
    expect_400("[1,2]", C, NULL);
    expect_400("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}garbage", C, NULL);
    expect_400("{}", C, "messages");
    expect_400("{\"messages\":\"hi\"}", C, "messages");
    expect_400("{\"messages\":[]}", C, "messages");
    expect_400("{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", C, "messages");
    expect_400("{\"messages\":[{\"role\":\"user\"}]}", C, "messages");
    expect_400("{\"messages\":[{\"role\":\"user\",\"content\":5}]}", C, "messages");
    expect_400("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", C,
               "messages");
#define M "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]"
    expect_400("{" M ",\"model\":5}", C, "model");
    expect_400("{" M ",\"temperature\":\"hot\"}", C, "temperature");
    expect_400("{" M ",\"temperature\":3}", C, "temperature");
    expect_400("{" M ",\"top_p\":1.5}", C, "top_p");
    expect_400("{" M ",\"max_tokens\":0}", C, "max_tokens");
    expect_400("{" M ",\"max_tokens\":1.5}", C, "max_tokens");
    expect_400("{" M ",\"max_completion_tokens\":\"9\"}", C, "max_completion_tokens");
    expect_400("{" M ",\"n\":2}", C, "n");
    expect_400("{" M ",\"stop\":5}", C, "stop");
    expect_400("{" M ",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", C, "stop");
    expect_400("{" M ",\"stop\":[\"a\",1]}", C, "stop");
    expect_400("{" M ",\"seed\":\"1\"}", C, "seed");
    expect_400("{" M ",\"presence_penalty\":2.5}", C, "presence_penalty");
    expect_400("{" M ",\"frequency_penalty\":-3}", C, "frequency_penalty");
    expect_400("{" M ",\"stream\":\"yes\"}", C, "stream");
    expect_400("{" M ",\"stream_options\":{\"include_usage\":true}}", C, "stream_options");
    expect_400("{" M ",\"stream\":true,\"stream_options\":{\"include_usage\":1}}", C,
               "stream_options");
    expect_400("{" M ",\"logprobs\":1}", C, "logprobs");
    expect_400("{" M ",\"top_logprobs\":3}", C, "top_logprobs");
    expect_400("{" M ",\"logprobs\":true,\"top_logprobs\":21}", C, "top_logprobs");
    expect_400("{" M ",\"logprobs\":true,\"top_logprobs\":1.5}", C, "top_logprobs");
#undef M
    expect_400("{\"prompt\":\"a\",\"logprobs\":true}", P, "logprobs");
    expect_400("{\"prompt\":\"a\",\"logprobs\":6}", P, "logprobs");
    expect_400("{}", P, "prompt");
    expect_400("{\"prompt\":7}", P, "prompt");
    expect_400("{\"prompt\":[\"a\",\"b\"]}", P, "prompt");
    expect_400("{\"prompt\":\"a\",\"echo\":true}", P, "echo");
    expect_400("{\"prompt\":\"a\",\"best_of\":3}", P, "best_of");
}

/* logprobs options: off by default; chat's bool + top_logprobs; the legacy
 * completions integer. */
static void test_logprob_params(void) {
    static const struct {
        const char *body;
        loom_serve_kind kind;
        int want;
    } cases[] = {
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", LOOM_SERVE_CHAT, -1},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":false}",
         LOOM_SERVE_CHAT, -1},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":true}",
         LOOM_SERVE_CHAT, 0},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":true,"
         "\"top_logprobs\":20}",
         LOOM_SERVE_CHAT, 20},
        {"{\"prompt\":\"a\"}", LOOM_SERVE_COMPLETION, -1},
        {"{\"prompt\":\"a\",\"logprobs\":null}", LOOM_SERVE_COMPLETION, -1},
        {"{\"prompt\":\"a\",\"logprobs\":0}", LOOM_SERVE_COMPLETION, 0},
        {"{\"prompt\":\"a\",\"logprobs\":5}", LOOM_SERVE_COMPLETION, 5},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        loom_serve_params p;
        loom_serve_error e;
        CHECK(loom_serve_parse_request(cases[i].body, strlen(cases[i].body), cases[i].kind, &p,
                                       &e) == LOOM_OK);
        CHECK_MSG(p.n_logprobs == cases[i].want, "%s: n_logprobs %d", cases[i].body,
                  p.n_logprobs);
        loom_serve_params_free(&p);
    }
}

/* The two logprobs shapes, with a token that is half of "é" (C3 A9). */
static void test_logprob_format(void) {
    loom_serve_logprob lp[2];
    memset(lp, 0, sizeof lp);
    lp[0].tok = (loom_serve_token_lp){7, -0.5f, "Hi", 2};
    lp[0].n_top = 2;
    lp[0].top[0] = (loom_serve_token_lp){7, -0.5f, "Hi", 2};
    lp[0].top[1] = (loom_serve_token_lp){9, -1.25f, "Ho", 2};
    lp[1].tok = (loom_serve_token_lp){3, -2.0f, "\xC3", 1};
    lp[1].text_offset = 2;
    loom_serve_lps lps = {lp, 2, true};
    loom_serve_meta m = {LOOM_SERVE_CHAT, "chatcmpl-1", 1, "tiny"};
    char *s = loom_serve_response_json(&m, "Hi", 2, "stop", 1, 2, lps);
    CHECK_MSG(s && strstr(s, "\"logprobs\":{\"content\":[{\"token\":\"Hi\",\"logprob\":-0.5,"
                             "\"bytes\":[72,105],\"top_logprobs\":[{\"token\":\"Hi\",\"logprob\":"
                             "-0.5,\"bytes\":[72,105]},{\"token\":\"Ho\",\"logprob\":-1.25,"
                             "\"bytes\":[72,111]}]},{\"token\":\"\xEF\xBF\xBD\",\"logprob\":-2,"
                             "\"bytes\":[195],\"top_logprobs\":[]}],\"refusal\":null}"),
              "chat logprobs: %s", s ? s : "(null)");
    free(s);
    m.kind = LOOM_SERVE_COMPLETION;
    s = loom_serve_sse_chunk(&m, "Hi", 2, false, NULL, false, lps);
    CHECK_MSG(s && strstr(s, "\"logprobs\":{\"tokens\":[\"Hi\",\"\xEF\xBF\xBD\"],"
                             "\"token_logprobs\":[-0.5,-2],\"top_logprobs\":[{\"Hi\":-0.5,"
                             "\"Ho\":-1.25},{}],\"text_offset\":[0,2]}"),
              "completion logprobs: %s", s ? s : "(null)");
    free(s);
    /* off: null, as before */
    loom_serve_lps off = {NULL, 0, false};
    s = loom_serve_sse_chunk(&m, "x", 1, false, NULL, false, off);
    CHECK(s && strstr(s, "\"logprobs\":null"));
    free(s);
}

static const loom_serve_lps NOLP = {NULL, 0, false};

static void test_format(void) {
    loom_serve_meta m = {LOOM_SERVE_CHAT, "chatcmpl-1", 1700000000, "tiny"};
    char *s = loom_serve_sse_chunk(&m, "h\"i", 3, true, NULL, true, NOLP);
    CHECK(s && !strcmp(s, "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\","
                          "\"created\":1700000000,\"model\":\"tiny\",\"choices\":[{\"index\":0,"
                          "\"delta\":{\"role\":\"assistant\",\"content\":\"h\\\"i\"},"
                          "\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"));
    free(s);
    s = loom_serve_sse_chunk(&m, "", 0, false, "stop", false, NOLP);
    CHECK(s && strstr(s, "\"delta\":{}") && strstr(s, "\"finish_reason\":\"stop\"") &&
          !strstr(s, "usage"));
    free(s);
    s = loom_serve_sse_usage(&m, 3, 4);
    CHECK(s && strstr(s, "\"choices\":[]") &&
          strstr(s, "\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}"));
    free(s);
    CHECK(!strcmp(loom_serve_sse_done(), "data: [DONE]\n\n"));
    s = loom_serve_response_json(&m, "ok", 2, "length", 5, 2, NOLP);
    CHECK(s && strstr(s, "\"object\":\"chat.completion\"") &&
          strstr(s, "\"message\":{\"role\":\"assistant\",\"content\":\"ok\"}") &&
          strstr(s, "\"finish_reason\":\"length\""));
    free(s);
    loom_serve_meta mc = {LOOM_SERVE_COMPLETION, "cmpl-1", 1, "tiny"};
    s = loom_serve_response_json(&mc, "ab", 1, "stop", 1, 1, NOLP);
    CHECK(s && strstr(s, "\"object\":\"text_completion\"") && strstr(s, "\"text\":\"a\""));
    free(s);
    loom_serve_error e;
    loom_serve_error_set(&e, 400, "invalid_request_error", "top_p", NULL, "bad %d", 1);
    s = loom_serve_error_json(&e);
    CHECK(s && !strcmp(s, "{\"error\":{\"message\":\"bad 1\",\"type\":\"invalid_request_error\","
                          "\"param\":\"top_p\",\"code\":null}}"));
    free(s);
}

static void test_text(void) {
    /* "é" is C3 A9; "€" E2 82 AC; "😀" F0 9F 98 80. */
    CHECK(loom_utf8_sendable("ab", 2) == 2);
    CHECK(loom_utf8_sendable("a\xC3", 2) == 1);
    CHECK(loom_utf8_sendable("a\xE2\x82", 3) == 1);
    CHECK(loom_utf8_sendable("a\xF0\x9F\x98", 4) == 1);
    CHECK(loom_utf8_sendable("a\xF0\x9F\x98\x80", 5) == 5);
    CHECK(loom_utf8_sendable("a\xFF", 2) == 2);  /* invalid: sent (repaired) now */
    CHECK(loom_utf8_sendable("a\xC3x", 3) == 3); /* broken: sent now */
    size_t n;
    char *r = loom_utf8_repair("a\xFF\xC3\xA9\xED\xA0\x80z", 8, &n);
    CHECK(r && !strcmp(r, "a\xEF\xBF\xBD\xC3\xA9\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDz"));
    free(r);
    r = loom_utf8_repair("a\0b", 3, &n);
    CHECK(r && n == 5 &&
          !memcmp(r,
                  "a\xEF\xBF\xBD"
                  "b",
                  5));
    free(r);
    char *stops[] = {"END", "xy"};
    CHECK(loom_stop_find("abENDxy", 7, 0, stops, 2) == 2);
    CHECK(loom_stop_find("abENDxy", 7, 3, stops, 2) == 5);
    CHECK(loom_stop_find("abEN", 4, 0, stops, 2) == -1);
    CHECK(loom_stop_hold("abEN", 4, stops, 2) == 2);
    CHECK(loom_stop_hold("abx", 3, stops, 2) == 1);
    CHECK(loom_stop_hold("abc", 3, stops, 2) == 0);
    CHECK(loom_server_key_equal("secret", "secret"));
    CHECK(!loom_server_key_equal("secret", "secreT"));
    CHECK(!loom_server_key_equal("secret", "secret2"));
    CHECK(!loom_server_key_equal("secret", "secre"));
    CHECK(!loom_server_key_equal("secret", ""));
}

static void test_ratelimit(void) {
    loom_ratelimit *rl = loom_ratelimit_new(2, 3); /* 2/s, burst 3 */
    CHECK(rl != NULL);
    if (!rl) return;
    CHECK(loom_ratelimit_take(rl, "a", 100.0) == 0);
    CHECK(loom_ratelimit_take(rl, "a", 100.0) == 0);
    CHECK(loom_ratelimit_take(rl, "a", 100.0) == 0);
    double w = loom_ratelimit_take(rl, "a", 100.0);
    CHECK(w > 0.49 && w < 0.51);                     /* half a second to the next token */
    CHECK(loom_ratelimit_take(rl, "b", 100.0) == 0); /* another client has its own */
    CHECK(loom_ratelimit_take(rl, "a", 100.5) == 0); /* refilled */
    CHECK(loom_ratelimit_take(rl, "a", 100.5) > 0);
    CHECK(loom_ratelimit_take(rl, "a", 1000.0) == 0); /* full again, capped at burst */
    CHECK(loom_ratelimit_take(rl, "a", 1000.0) == 0);
    CHECK(loom_ratelimit_take(rl, "a", 1000.0) == 0);
    CHECK(loom_ratelimit_take(rl, "a", 1000.0) > 0);
    /* many clients: the table stays bounded and keeps working */
    char id[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(id, sizeof id, "client-%d", i);
        CHECK(loom_ratelimit_take(rl, id, 2000.0 + i * 1e-3) == 0);
    }
    loom_ratelimit_free(rl);
    CHECK(loom_ratelimit_new(0, 1) == NULL);
}

int main(void) {
    test_ratelimit();
    test_chat_ok();
    test_completion_ok();
    test_errors();
    test_format();
    test_logprob_params();
    test_logprob_format();
    test_text();
    if (failures) {
        fprintf(stderr, "test_serve_json: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_serve_json: ok\n");
    return 0;
}
