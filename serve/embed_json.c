/* serve/embed_json.c - OpenAI embeddings request parsing and response
 * formatting (see embed_json.h). */
#include "serve/embed_json.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BAD(e, param, ...)                                                                         \
    loom_serve_error_set((e), 400, "invalid_request_error", (param), NULL, __VA_ARGS__)

void loom_serve_embed_params_free(loom_serve_embed_params *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n_input; i++)
        free(p->input[i]);
    free(p->input);
    free(p->model);
    memset(p, 0, sizeof *p);
}

static char *dup_str(const char *s) {
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

/* Absent or JSON null: the default. */
static const cJSON *field(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static loom_status parse_input(const cJSON *root, size_t max_inputs, loom_serve_embed_params *p,
                               loom_serve_error *e) {
    const cJSON *in = field(root, "input");
    if (!in) return BAD(e, "input", "'input' is required (a string or an array of strings)");
    if (cJSON_IsString(in)) {
        if (!in->valuestring[0]) return BAD(e, "input", "'input' must not be an empty string");
        p->input = malloc(sizeof *p->input);
        if (!p->input) return LOOM_ERR_OOM;
        p->input[0] = dup_str(in->valuestring);
        if (!p->input[0]) return LOOM_ERR_OOM;
        p->n_input = 1;
        return LOOM_OK;
    }
    if (!cJSON_IsArray(in))
        return BAD(e, "input", "'input' must be a string or an array of strings");
    size_t n = (size_t)cJSON_GetArraySize(in);
    if (n == 0) return BAD(e, "input", "'input' must not be an empty array");
    const cJSON *x = in->child;
    /* [1, 2, 3] or [[1, 2], [3]]: OpenAI's token-id forms. */
    if (cJSON_IsNumber(x) || cJSON_IsArray(x))
        return BAD(e, "input",
                   "'input' as token ids is not supported by this server (the encoder has its "
                   "own tokenizer): send text");
    if (n > max_inputs)
        return BAD(e, "input", "'input' has %zu items; at most %zu are allowed per request", n,
                   max_inputs);
    p->input = calloc(n, sizeof *p->input);
    if (!p->input) return LOOM_ERR_OOM;
    size_t i = 0;
    cJSON_ArrayForEach(x, in) {
        if (!cJSON_IsString(x))
            return BAD(e, "input", "'input[%zu]' must be a string (all items must be strings)", i);
        if (!x->valuestring[0]) return BAD(e, "input", "'input[%zu]' must not be empty", i);
        p->input[i] = dup_str(x->valuestring);
        if (!p->input[i]) return LOOM_ERR_OOM;
        p->n_input = ++i;
    }
    return LOOM_OK;
}

static loom_status parse_body(const cJSON *root, size_t max_inputs, loom_serve_embed_params *p,
                              loom_serve_error *e) {
    const cJSON *v = field(root, "model");
    if (v) {
        if (!cJSON_IsString(v)) return BAD(e, "model", "'model' must be a string");
        p->model = dup_str(v->valuestring);
        if (!p->model) return LOOM_ERR_OOM;
    }
    LOOM_TRY(parse_input(root, max_inputs, p, e));
    v = field(root, "encoding_format");
    if (v) {
        if (!cJSON_IsString(v) ||
            (strcmp(v->valuestring, "float") != 0 && strcmp(v->valuestring, "base64") != 0))
            return BAD(e, "encoding_format", "'encoding_format' must be 'float' or 'base64'");
        p->base64 = !strcmp(v->valuestring, "base64");
    }
    v = field(root, "dimensions");
    if (v) {
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) ||
            floor(v->valuedouble) != v->valuedouble || v->valuedouble < 1 || v->valuedouble > 1e9)
            return BAD(e, "dimensions", "'dimensions' must be a positive integer");
        p->dimensions = (int64_t)v->valuedouble;
    }
    v = field(root, "user");
    if (v && !cJSON_IsString(v)) return BAD(e, "user", "'user' must be a string");
    return LOOM_OK;
}

loom_status loom_serve_parse_embed_request(const char *body, size_t len, size_t max_inputs,
                                           loom_serve_embed_params *out, loom_serve_error *e) {
    memset(out, 0, sizeof *out);
    if (memchr(body, 0, len)) return BAD(e, NULL, "the request body contains a NUL byte");
    char *copy = malloc(len + 1);
    if (!copy) return loom_serve_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    memcpy(copy, body, len);
    copy[len] = 0;
    cJSON *root = cJSON_ParseWithOpts(copy, NULL, 1);
    free(copy);
    if (!root) return BAD(e, NULL, "could not parse the request body as JSON");
    loom_status st = cJSON_IsObject(root) ? parse_body(root, max_inputs, out, e)
                                          : BAD(e, NULL, "the request body must be a JSON object");
    cJSON_Delete(root);
    if (st == LOOM_ERR_OOM)
        loom_serve_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    if (st != LOOM_OK) loom_serve_embed_params_free(out);
    return st;
}

/* ---- output ---- */

/* The vector as JSON text: a "[...]" array of %.9g numbers (enough digits
 * for every float32 to read back exactly), or a quoted base64 string of its
 * little-endian float32 bytes. */
static char *vector_text(const float *v, int64_t dim, bool base64) {
    if (base64) {
        static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t nb = (size_t)dim * 4;
        char *s = malloc(4 * ((nb + 2) / 3) + 3);
        if (!s) return NULL;
        unsigned char *b = malloc(nb ? nb : 1);
        if (!b) {
            free(s);
            return NULL;
        }
        for (int64_t i = 0; i < dim; i++) {
            uint32_t u;
            memcpy(&u, &v[i], 4);
            for (int k = 0; k < 4; k++)
                b[4 * i + k] = (unsigned char)(u >> (8 * k));
        }
        size_t k = 0;
        s[k++] = '"';
        for (size_t i = 0; i < nb; i += 3) {
            uint32_t t = (uint32_t)b[i] << 16;
            if (i + 1 < nb) t |= (uint32_t)b[i + 1] << 8;
            if (i + 2 < nb) t |= b[i + 2];
            s[k++] = A[(t >> 18) & 63];
            s[k++] = A[(t >> 12) & 63];
            s[k++] = i + 1 < nb ? A[(t >> 6) & 63] : '=';
            s[k++] = i + 2 < nb ? A[t & 63] : '=';
        }
        s[k++] = '"';
        s[k] = 0;
        free(b);
        return s;
    }
    size_t cap = (size_t)dim * 18 + 3, k = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    s[k++] = '[';
    for (int64_t i = 0; i < dim; i++) {
        /* JSON has no NaN/Inf; the encoder's outputs are finite, 0 if not. */
        double x = isfinite(v[i]) ? (double)v[i] : 0.0;
        k += (size_t)snprintf(s + k, cap - k, i ? ",%.9g" : "%.9g", x);
    }
    s[k++] = ']';
    s[k] = 0;
    return s;
}

char *loom_serve_embed_response_json(const char *model, const float *vecs, size_t n, int64_t dim,
                                     bool base64, int64_t prompt_tokens) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    bool ok = cJSON_AddStringToObject(root, "object", "list") != NULL;
    cJSON *data = cJSON_AddArrayToObject(root, "data");
    ok = ok && data;
    for (size_t i = 0; ok && i < n; i++) {
        cJSON *item = cJSON_CreateObject();
        if (!item || !cJSON_AddItemToArray(data, item)) {
            cJSON_Delete(item);
            ok = false;
            break;
        }
        ok = cJSON_AddStringToObject(item, "object", "embedding") &&
             cJSON_AddNumberToObject(item, "index", (double)i);
        char *vt = ok ? vector_text(vecs + i * (size_t)dim, dim, base64) : NULL;
        cJSON *raw = vt ? cJSON_CreateRaw(vt) : NULL;
        free(vt);
        if (!raw || !cJSON_AddItemToObject(item, "embedding", raw)) {
            cJSON_Delete(raw);
            ok = false;
        }
    }
    ok = ok && cJSON_AddStringToObject(root, "model", model);
    cJSON *u = ok ? cJSON_AddObjectToObject(root, "usage") : NULL;
    ok = u && cJSON_AddNumberToObject(u, "prompt_tokens", (double)prompt_tokens) &&
         cJSON_AddNumberToObject(u, "total_tokens", (double)prompt_tokens);
    char *s = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return s;
}
