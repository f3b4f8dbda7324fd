/* serve/http_rag.c - retrieval on chat completions, a loom extension
 * (server.h, docs/adr/0032-retrieval-store-rerank.md):
 *
 *   "loom_retrieval": true | {"k": K}
 *
 * The last user message is the query; the retriever (set by `loom serve
 * --rag-index|--rag-store`, see cli/serve_cmd.c) returns the top K chunks,
 * which go into the system message as numbered sources with the same
 * instruction `loom rag ask` gives; the response carries them as
 * "loom_sources": [{"index", "id", "score", "source", "title",
 * "byte_begin", "byte_end", "text"}] (the first chunk when streaming).
 * OpenAI clients pass the field through extra_body and ignore the answer's
 * extra key. A prompt that no longer fits the context is refused by the
 * usual context_length_exceeded check. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/http_internal.h"

#define DEFAULT_K 4

static const char *k_system =
    "Answer the question using only the numbered sources below. After each statement, cite "
    "the sources that support it as [1], [2], ... If the sources do not hold the answer, say "
    "that they do not.";

loom_status loom_server_set_retriever(loom_server *s, loom_server_retrieve_fn fn, void *ud,
                                      int max_k, char *err, size_t err_n) {
    if (!fn || max_k < 1 || s->retrieve || atomic_load(&s->state) != ST_LOADING) {
        snprintf(err, err_n, "the retriever must be set once, before the model, with max_k >= 1");
        return LOOM_ERR_INVALID_ARG;
    }
    s->retrieve = fn, s->retrieve_ud = ud, s->retrieve_max_k = max_k;
    return LOOM_OK;
}

void loom_server_sources_free(loom_server_source *v, int n) {
    for (int i = 0; v && i < n; i++) {
        free(v[i].source), free(v[i].title), free(v[i].text);
        memset(&v[i], 0, sizeof v[i]);
    }
}

static int bad(loom_serve_error *e, int status, const char *msg) {
    loom_serve_error_set(e, status, status >= 500 ? "server_error" : "invalid_request_error",
                         "loom_retrieval", NULL, "%s", msg);
    return status;
}

/* The new system message: the caller's own (if any), then the instruction
 * and the sources. */
static char *system_text(const char *own, const loom_server_source *v, int n) {
    size_t len = strlen(k_system) + (own ? strlen(own) : 0) + 32;
    for (int i = 0; i < n; i++)
        len += strlen(v[i].title) + strlen(v[i].source) + strlen(v[i].text) + 32;
    char *t = malloc(len);
    if (!t) return NULL;
    size_t k = (size_t)snprintf(t, len, "%s%s%s\n\nSources:\n", own ? own : "", own ? "\n\n" : "",
                                k_system);
    for (int i = 0; i < n; i++)
        k += (size_t)snprintf(t + k, len - k, "\n[%d] %s (%s)\n%s\n", i + 1, v[i].title,
                              v[i].source, v[i].text);
    return t;
}

static char *sources_json(const loom_server_source *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(a, o);
        cJSON_AddNumberToObject(o, "index", i + 1);
        cJSON_AddNumberToObject(o, "id", v[i].id);
        cJSON_AddNumberToObject(o, "score", v[i].score);
        cJSON_AddStringToObject(o, "source", v[i].source);
        cJSON_AddStringToObject(o, "title", v[i].title);
        cJSON_AddNumberToObject(o, "byte_begin", (double)v[i].byte_begin);
        cJSON_AddNumberToObject(o, "byte_end", (double)v[i].byte_end);
        cJSON_AddStringToObject(o, "text", v[i].text);
    }
    char *j = a ? cJSON_PrintUnformatted(a) : NULL;
    cJSON_Delete(a);
    return j;
}

int loom_http_rag_augment(loom_server *s, const char *body, size_t len, loom_serve_params *p,
                          char **sources, loom_serve_error *e) {
    *sources = NULL;
    cJSON *root = cJSON_ParseWithLength(body, len); /* already validated by the parser */
    const cJSON *r = root ? cJSON_GetObjectItemCaseSensitive(root, "loom_retrieval") : NULL;
    int k = DEFAULT_K, status = 0;
    char msg[300];
    if (!r || cJSON_IsNull(r) || cJSON_IsFalse(r)) goto done;
    if (!s->retrieve) {
        status = bad(e, 400,
                     "this server has no retrieval index (start it with --rag-index INDEX or "
                     "--rag-store URL)");
        goto done;
    }
    if (cJSON_IsObject(r)) {
        for (const cJSON *it = r->child; it; it = it->next)
            if (strcmp(it->string, "k")) {
                snprintf(msg, sizeof msg,
                         "'loom_retrieval' has an unknown key '%.40s' (it takes 'k')", it->string);
                status = bad(e, 400, msg);
                goto done;
            }
        const cJSON *kk = cJSON_GetObjectItemCaseSensitive(r, "k");
        if (kk && (!cJSON_IsNumber(kk) || kk->valuedouble != (double)(int)kk->valuedouble ||
                   kk->valuedouble < 1 || kk->valuedouble > s->retrieve_max_k)) {
            snprintf(msg, sizeof msg, "'loom_retrieval.k' must be an integer from 1 to %d",
                     s->retrieve_max_k);
            status = bad(e, 400, msg);
            goto done;
        }
        if (kk) k = (int)kk->valuedouble;
    } else if (!cJSON_IsTrue(r)) {
        status = bad(e, 400, "'loom_retrieval' must be true or an object like {\"k\": 4}");
        goto done;
    }
    if (k > s->retrieve_max_k) k = s->retrieve_max_k;
    const char *q = NULL;
    for (size_t i = 0; i < p->n_messages; i++)
        if (!strcmp(p->messages[i].role, "user")) q = p->messages[i].content;
    if (!q || !q[0]) {
        status = bad(e, 400, "'loom_retrieval' needs a user message to search with");
        goto done;
    }
    loom_server_source *v = calloc((size_t)k, sizeof *v);
    int n = 0;
    char err[300] = "";
    if (!v || s->retrieve(s->retrieve_ud, q, k, v, &n, err, sizeof err) != LOOM_OK) {
        snprintf(msg, sizeof msg, "retrieval failed: %.200s", v ? err : "out of memory");
        status = bad(e, 500, msg);
        loom_server_sources_free(v, n);
        free(v);
        goto done;
    }
    /* The sources join the first system message, or make one. */
    const bool has_sys = p->n_messages && !strcmp(p->messages[0].role, "system");
    char *t = system_text(has_sys ? p->messages[0].content : NULL, v, n);
    loom_chat_message *m =
        has_sys ? p->messages : realloc(p->messages, (p->n_messages + 1) * sizeof *m);
    char *role = has_sys ? NULL : strdup("system");
    *sources = sources_json(v, n);
    loom_server_sources_free(v, n);
    free(v);
    if (!t || !m || (!has_sys && !role) || !*sources) {
        free(t), free(role), free(*sources);
        *sources = NULL;
        if (m) p->messages = m;
        status = bad(e, 500, "out of memory");
        goto done;
    }
    p->messages = m;
    if (has_sys) {
        free((char *)m[0].content);
        m[0].content = t;
    } else {
        memmove(m + 1, m, p->n_messages * sizeof *m);
        m[0].role = role, m[0].content = t;
        p->n_messages++;
    }
done:
    cJSON_Delete(root);
    return status;
}

char *loom_http_rag_attach(char *json, const char *sources) {
    if (!json || !sources) return json;
    /* A response object, or "data: {...}\n\n": the object's closing brace is
     * the last '}' either way. */
    char *close = strrchr(json, '}');
    if (!close) return json;
    size_t head = (size_t)(close - json), sl = strlen(sources), tail = strlen(close);
    char *out = malloc(head + sl + tail + 20);
    if (!out) return json;
    memcpy(out, json, head);
    size_t k = head;
    memcpy(out + k, ",\"loom_sources\":", 16), k += 16;
    memcpy(out + k, sources, sl), k += sl;
    memcpy(out + k, close, tail + 1);
    free(json);
    return out;
}
