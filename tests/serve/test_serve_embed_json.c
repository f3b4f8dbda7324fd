/* tests/serve/test_serve_embed_json.c - the embeddings wire format of
 * serve/embed_json.c: request parsing and validation (input forms, limits,
 * encoding_format, dimensions, user) and the response, checked by parsing it
 * back with cJSON and by an independent base64 decoder here. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/embed_json.h"
#include "testing.h"

static loom_status parse(const char *body, size_t max, loom_serve_embed_params *p,
                         loom_serve_error *e) {
    return loom_serve_parse_embed_request(body, strlen(body), max, p, e);
}

static void expect_400(const char *body, size_t max, const char *param, const char *in_msg) {
    loom_serve_embed_params p;
    loom_serve_error e;
    memset(&e, 0, sizeof e);
    loom_status st = parse(body, max, &p, &e);
    CHECK_MSG(st != LOOM_OK && e.status == 400, "%s: accepted or status %d", body, e.status);
    if (param)
        CHECK_MSG(e.param && !strcmp(e.param, param), "%s: param %s, want %s (%s)", body,
                  e.param ? e.param : "null", param, e.message);
    else
        CHECK_MSG(e.param == NULL, "%s: param %s, want none", body, e.param);
    if (in_msg) CHECK_MSG(strstr(e.message, in_msg) != NULL, "%s: message '%s'", body, e.message);
    CHECK(p.input == NULL && p.n_input == 0 && p.model == NULL);
}

static void test_parse_ok(void) {
    loom_serve_embed_params p;
    loom_serve_error e;
    CHECK(parse("{\"input\":\"hello world\",\"model\":\"m\"}", 8, &p, &e) == LOOM_OK);
    CHECK(p.n_input == 1 && !strcmp(p.input[0], "hello world") && !strcmp(p.model, "m"));
    CHECK(!p.base64 && p.dimensions == 0);
    loom_serve_embed_params_free(&p);
    CHECK(parse("{\"input\":[\"a\",\"b\\u00e9\",\"c\"],\"encoding_format\":\"base64\","
                "\"dimensions\":384,\"user\":\"u-1\"}",
                3, &p, &e) == LOOM_OK);
    CHECK(p.n_input == 3 && !strcmp(p.input[1], "b\xC3\xA9") && !strcmp(p.input[2], "c"));
    CHECK(p.base64 && p.dimensions == 384 && p.model == NULL);
    loom_serve_embed_params_free(&p);
    /* null means default */
    CHECK(parse("{\"input\":\"x\",\"encoding_format\":null,\"dimensions\":null,\"model\":null}", 1,
                &p, &e) == LOOM_OK);
    CHECK(!p.base64 && p.dimensions == 0 && p.model == NULL);
    loom_serve_embed_params_free(&p);
    CHECK(parse("{\"input\":\"x\",\"encoding_format\":\"float\"}", 1, &p, &e) == LOOM_OK);
    CHECK(!p.base64);
    loom_serve_embed_params_free(&p);
}

static void test_parse_errors(void) {
    expect_400("", 8, NULL, "JSON");
    expect_400("[1]", 8, NULL, "object");
    expect_400("{\"input\":\"a\"} x", 8, NULL, "JSON");
    expect_400("{}", 8, "input", "required");
    expect_400("{\"input\":null}", 8, "input", "required");
    expect_400("{\"input\":\"\"}", 8, "input", "empty");
    expect_400("{\"input\":[]}", 8, "input", "empty");
    expect_400("{\"input\":[\"a\",\"\"]}", 8, "input", "input[1]");
    expect_400("{\"input\":[\"a\",2]}", 8, "input", "input[1]");
    expect_400("{\"input\":[1,2,3]}", 8, "input", "token ids");
    expect_400("{\"input\":[[1,2],[3]]}", 8, "input", "token ids");
    expect_400("{\"input\":7}", 8, "input", "string");
    expect_400("{\"input\":{\"a\":1}}", 8, "input", "string");
    expect_400("{\"input\":[\"a\",\"b\",\"c\"]}", 2, "input", "at most 2");
    expect_400("{\"input\":\"a\",\"model\":5}", 8, "model", NULL);
    expect_400("{\"input\":\"a\",\"encoding_format\":\"int8\"}", 8, "encoding_format", NULL);
    expect_400("{\"input\":\"a\",\"encoding_format\":1}", 8, "encoding_format", NULL);
    expect_400("{\"input\":\"a\",\"dimensions\":0}", 8, "dimensions", NULL);
    expect_400("{\"input\":\"a\",\"dimensions\":1.5}", 8, "dimensions", NULL);
    expect_400("{\"input\":\"a\",\"dimensions\":\"384\"}", 8, "dimensions", NULL);
    expect_400("{\"input\":\"a\",\"user\":3}", 8, "user", NULL);
    /* an embedded NUL */
    loom_serve_embed_params p;
    loom_serve_error e;
    CHECK(loom_serve_parse_embed_request("{\"input\":\"a\"}\0", 14, 8, &p, &e) != LOOM_OK &&
          e.status == 400);
}

/* Independent base64 decoder (RFC 4648, with padding). */
static size_t b64_decode(const char *s, unsigned char *out) {
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (; *s && *s != '='; s++) {
        const char *A = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const char *p = strchr(A, *s);
        if (!p) return (size_t)-1;
        acc = (acc << 6) | (uint32_t)(p - A);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    return n;
}

static void check_response(size_t n, int64_t dim, bool base64) {
    float *v = malloc((n * (size_t)dim + 1) * sizeof *v);
    uint32_t x = 12345;
    for (size_t i = 0; i < n * (size_t)dim; i++) {
        x = x * 1664525u + 1013904223u;
        v[i] = ((float)(x >> 8) / 16777216.0f - 0.5f) * (i % 7 ? 1.0f : 1e-7f);
    }
    if (n) v[0] = -0.0f;
    char *s = loom_serve_embed_response_json("m\"x", v, n, dim, base64, 42);
    CHECK(s != NULL);
    cJSON *r = cJSON_Parse(s);
    CHECK(r != NULL);
    if (!r) {
        free(s);
        free(v);
        return;
    }
    CHECK(!strcmp(cJSON_GetObjectItem(r, "object")->valuestring, "list"));
    CHECK(!strcmp(cJSON_GetObjectItem(r, "model")->valuestring, "m\"x"));
    cJSON *u = cJSON_GetObjectItem(r, "usage");
    CHECK(cJSON_GetObjectItem(u, "prompt_tokens")->valuedouble == 42);
    CHECK(cJSON_GetObjectItem(u, "total_tokens")->valuedouble == 42);
    cJSON *data = cJSON_GetObjectItem(r, "data");
    CHECK((size_t)cJSON_GetArraySize(data) == n);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        cJSON *it = cJSON_GetArrayItem(data, (int)i);
        CHECK(!strcmp(cJSON_GetObjectItem(it, "object")->valuestring, "embedding"));
        CHECK(cJSON_GetObjectItem(it, "index")->valuedouble == (double)i);
        cJSON *emb = cJSON_GetObjectItem(it, "embedding");
        const float *want = v + i * (size_t)dim;
        if (base64) {
            CHECK(cJSON_IsString(emb));
            unsigned char *b = malloc((size_t)dim * 4 + 4);
            size_t nb = b64_decode(emb->valuestring, b);
            CHECK(nb == (size_t)dim * 4);
            for (int64_t k = 0; nb == (size_t)dim * 4 && k < dim; k++) {
                uint32_t w = (uint32_t)b[4 * k] | (uint32_t)b[4 * k + 1] << 8 |
                             (uint32_t)b[4 * k + 2] << 16 | (uint32_t)b[4 * k + 3] << 24,
                         g;
                memcpy(&g, &want[k], 4);
                bad += w != g;
            }
            free(b);
        } else {
            CHECK(cJSON_IsArray(emb) && cJSON_GetArraySize(emb) == dim);
            for (int64_t k = 0; k < dim; k++)
                bad += (float)cJSON_GetArrayItem(emb, (int)k)->valuedouble != want[k];
        }
    }
    CHECK_MSG(bad == 0, "%zu values differ (n %zu dim %lld base64 %d)", bad, n, (long long)dim,
              base64);
    cJSON_Delete(r);
    free(s);
    free(v);
}

int main(void) {
    test_parse_ok();
    test_parse_errors();
    /* dims 1..3 cover every base64 padding case (4, 8, 12 bytes) and odd tails */
    for (int64_t d = 1; d <= 5; d++) {
        check_response(3, d, true);
        check_response(3, d, false);
    }
    check_response(7, 384, false);
    check_response(7, 384, true);
    check_response(0, 384, false);
    return test_summary("test_serve_embed_json");
}
