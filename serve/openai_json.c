/* serve/openai_json.c - OpenAI request parsing/validation and response,
 * SSE and error formatting (see openai_json.h). */
#include "serve/openai_json.h"
#include "serve/text.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

loom_status loom_serve_error_set(loom_serve_error *e, int status, const char *type,
                                 const char *param, const char *code, const char *fmt, ...) {
    e->status = status;
    e->type = type;
    e->param = param;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return LOOM_ERR_INVALID_ARG;
}

static loom_status bad(loom_serve_error *e, const char *param, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static loom_status bad(loom_serve_error *e, const char *param, const char *fmt, ...) {
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return loom_serve_error_set(e, 400, "invalid_request_error", param, NULL, "%s", msg);
}

void loom_serve_params_free(loom_serve_params *p) {
    if (!p) return;
    free(p->model);
    free(p->prompt);
    for (size_t i = 0; i < p->n_messages; i++) {
        free((char *)p->messages[i].role);
        free((char *)p->messages[i].content);
    }
    free(p->messages);
    for (size_t i = 0; i < p->n_stop; i++)
        free(p->stop[i]);
    memset(p, 0, sizeof *p);
}

static char *dup_str(const char *s) {
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

/* A field that is absent or JSON null takes its default. */
static const cJSON *field(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static loom_status get_number(const cJSON *o, const char *name, double lo, double hi, double *out,
                              loom_serve_error *e) {
    const cJSON *v = field(o, name);
    if (!v) return LOOM_OK;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return bad(e, name, "'%s' must be a number", name);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return bad(e, name, "'%s' must be between %g and %g (got %g)", name, lo, hi,
                   v->valuedouble);
    *out = v->valuedouble;
    return LOOM_OK;
}

/* An integer-valued JSON number in [lo, hi]. */
static loom_status get_int(const cJSON *o, const char *name, double lo, double hi, bool *present,
                           double *out, loom_serve_error *e) {
    const cJSON *v = field(o, name);
    *present = false;
    if (!v) return LOOM_OK;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || floor(v->valuedouble) != v->valuedouble)
        return bad(e, name, "'%s' must be an integer", name);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return bad(e, name, "'%s' must be between %.0f and %.0f", name, lo, hi);
    *present = true;
    *out = v->valuedouble;
    return LOOM_OK;
}

static loom_status get_bool(const cJSON *o, const char *name, bool *out, loom_serve_error *e) {
    const cJSON *v = field(o, name);
    if (!v) return LOOM_OK;
    if (!cJSON_IsBool(v)) return bad(e, name, "'%s' must be a boolean", name);
    *out = cJSON_IsTrue(v);
    return LOOM_OK;
}

/* Message content: a string, or an array of {"type":"text","text":...} parts
 * (concatenated). */
static loom_status content_text(const cJSON *c, char **out, loom_serve_error *e) {
    if (!c) return bad(e, "messages", "every message needs a 'content'");
    if (cJSON_IsString(c)) {
        *out = dup_str(c->valuestring);
        return *out ? LOOM_OK : LOOM_ERR_OOM;
    }
    if (!cJSON_IsArray(c))
        return bad(e, "messages", "message 'content' must be a string or an array of text parts");
    size_t n = 0;
    const cJSON *part;
    cJSON_ArrayForEach(part, c) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(t) || strcmp(t->valuestring, "text") != 0 || !cJSON_IsString(x))
            return bad(e, "messages", "only content parts of type 'text' are supported");
        n += strlen(x->valuestring);
    }
    char *s = malloc(n + 1);
    if (!s) return LOOM_ERR_OOM;
    size_t k = 0;
    cJSON_ArrayForEach(part, c) {
        const char *x = cJSON_GetObjectItemCaseSensitive(part, "text")->valuestring;
        size_t l = strlen(x);
        memcpy(s + k, x, l);
        k += l;
    }
    s[k] = 0;
    *out = s;
    return LOOM_OK;
}

static loom_status parse_messages(const cJSON *root, loom_serve_params *p, loom_serve_error *e) {
    const cJSON *msgs = field(root, "messages");
    if (!msgs) return bad(e, "messages", "'messages' is required");
    if (!cJSON_IsArray(msgs)) return bad(e, "messages", "'messages' must be an array");
    int n = cJSON_GetArraySize(msgs);
    if (n == 0) return bad(e, "messages", "'messages' must not be empty");
    p->messages = calloc((size_t)n, sizeof *p->messages);
    if (!p->messages) return LOOM_ERR_OOM;
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        if (!cJSON_IsObject(m)) return bad(e, "messages", "every message must be an object");
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsString(role)) return bad(e, "messages", "every message needs a string 'role'");
        const char *r = role->valuestring;
        /* "developer" is OpenAI's newer name for the system role. */
        if (!strcmp(r, "developer")) r = "system";
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant"))
            return bad(e, "messages", "unsupported message role '%.40s'", role->valuestring);
        loom_chat_message *dst = &p->messages[p->n_messages];
        char *content = NULL;
        LOOM_TRY(content_text(cJSON_GetObjectItemCaseSensitive(m, "content"), &content, e));
        dst->content = content;
        p->n_messages++; /* counted now so that free releases content on a later error */
        dst->role = dup_str(r);
        if (!dst->role) return LOOM_ERR_OOM;
    }
    return LOOM_OK;
}

static loom_status parse_prompt(const cJSON *root, loom_serve_params *p, loom_serve_error *e) {
    const cJSON *v = field(root, "prompt");
    if (!v) return bad(e, "prompt", "'prompt' is required");
    if (cJSON_IsArray(v)) {
        /* A list of prompts is a batch request: one prompt only for now. */
        if (cJSON_GetArraySize(v) != 1 || !cJSON_IsString(cJSON_GetArrayItem(v, 0)))
            return bad(e, "prompt", "'prompt' must be a string or a list of exactly one string");
        v = cJSON_GetArrayItem(v, 0);
    }
    if (!cJSON_IsString(v)) return bad(e, "prompt", "'prompt' must be a string");
    p->prompt = dup_str(v->valuestring);
    return p->prompt ? LOOM_OK : LOOM_ERR_OOM;
}

static loom_status parse_stop(const cJSON *root, loom_serve_params *p, loom_serve_error *e) {
    const cJSON *v = field(root, "stop");
    if (!v) return LOOM_OK;
    if (cJSON_IsString(v)) {
        if (!v->valuestring[0]) return LOOM_OK;
        p->stop[0] = dup_str(v->valuestring);
        if (!p->stop[0]) return LOOM_ERR_OOM;
        p->n_stop = 1;
        return LOOM_OK;
    }
    if (!cJSON_IsArray(v)) return bad(e, "stop", "'stop' must be a string or a list of strings");
    if (cJSON_GetArraySize(v) > LOOM_SERVE_MAX_STOP)
        return bad(e, "stop", "'stop' holds at most %d sequences", LOOM_SERVE_MAX_STOP);
    const cJSON *s;
    cJSON_ArrayForEach(s, v) {
        if (!cJSON_IsString(s))
            return bad(e, "stop", "'stop' must be a string or a list of strings");
        if (!s->valuestring[0]) continue;
        p->stop[p->n_stop] = dup_str(s->valuestring);
        if (!p->stop[p->n_stop]) return LOOM_ERR_OOM;
        p->n_stop++;
    }
    return LOOM_OK;
}

static loom_status parse_body(const cJSON *root, loom_serve_params *p, loom_serve_error *e) {
    const cJSON *v = field(root, "model");
    if (v) {
        if (!cJSON_IsString(v)) return bad(e, "model", "'model' must be a string");
        p->model = dup_str(v->valuestring);
        if (!p->model) return LOOM_ERR_OOM;
    }
    if (p->kind == LOOM_SERVE_CHAT)
        LOOM_TRY(parse_messages(root, p, e));
    else
        LOOM_TRY(parse_prompt(root, p, e));
    LOOM_TRY(get_number(root, "temperature", 0, 2, &p->temperature, e));
    LOOM_TRY(get_number(root, "top_p", 0, 1, &p->top_p, e));
    LOOM_TRY(get_number(root, "presence_penalty", -2, 2, &p->presence_penalty, e));
    LOOM_TRY(get_number(root, "frequency_penalty", -2, 2, &p->frequency_penalty, e));
    bool has;
    double d;
    LOOM_TRY(get_int(root, "max_tokens", 1, 1e9, &has, &d, e));
    if (has) p->max_tokens = (int64_t)d;
    /* The newer name wins when both are given (OpenAI deprecates max_tokens). */
    LOOM_TRY(get_int(root, "max_completion_tokens", 1, 1e9, &has, &d, e));
    if (has) p->max_tokens = (int64_t)d;
    /* JSON numbers are doubles: seeds beyond 2^53 lose bits, as in any JS client. */
    LOOM_TRY(get_int(root, "seed", -9.2e18, 1.8e19, &p->has_seed, &d, e));
    if (p->has_seed) p->seed = d < 0 ? (uint64_t)(int64_t)d : (uint64_t)d;
    LOOM_TRY(get_int(root, "n", 1, 1e9, &has, &d, e));
    if (has && d != 1) return bad(e, "n", "only n=1 is supported");
    LOOM_TRY(parse_stop(root, p, e));
    LOOM_TRY(get_bool(root, "stream", &p->stream, e));
    const cJSON *so = field(root, "stream_options");
    if (so) {
        if (!cJSON_IsObject(so))
            return bad(e, "stream_options", "'stream_options' must be an object");
        if (!p->stream)
            return bad(e, "stream_options",
                       "'stream_options' is only allowed when 'stream' is true");
        const cJSON *iu = field(so, "include_usage");
        if (iu && !cJSON_IsBool(iu))
            return bad(e, "stream_options", "'stream_options.include_usage' must be a boolean");
        p->include_usage = iu && cJSON_IsTrue(iu);
    }
    p->n_logprobs = -1;
    if (p->kind == LOOM_SERVE_CHAT) {
        bool lp = false, has_top = false;
        double top = 0;
        LOOM_TRY(get_bool(root, "logprobs", &lp, e));
        LOOM_TRY(get_int(root, "top_logprobs", 0, LOOM_SERVE_MAX_TOP_LOGPROBS, &has_top, &top, e));
        if (has_top && !lp)
            return bad(e, "top_logprobs", "'top_logprobs' needs 'logprobs' set to true");
        if (lp) p->n_logprobs = (int)top;
    } else {
        bool has_lp = false;
        double n_lp = 0;
        LOOM_TRY(get_int(root, "logprobs", 0, 5, &has_lp, &n_lp, e));
        if (has_lp) p->n_logprobs = (int)n_lp;
    }
    if (p->kind == LOOM_SERVE_COMPLETION) {
        /* In the legacy completions API logprobs is an integer; echo and
         * best_of change the response shape. */
        const cJSON *x = field(root, "echo");
        if (x && cJSON_IsTrue(x)) return bad(e, "echo", "'echo' is not supported");
        x = field(root, "best_of");
        if (x && !(cJSON_IsNumber(x) && x->valuedouble == 1))
            return bad(e, "best_of", "only best_of=1 is supported");
    }
    return LOOM_OK;
}

loom_status loom_serve_parse_request(const char *body, size_t len, loom_serve_kind kind,
                                     loom_serve_params *out, loom_serve_error *e) {
    memset(out, 0, sizeof *out);
    out->kind = kind;
    out->temperature = 1.0;
    out->top_p = 1.0;
    out->max_tokens = -1;
    /* Exactly one JSON value and nothing after it: cJSON checks that only on
     * a NUL-terminated copy (an embedded NUL would end the text early). */
    if (memchr(body, 0, len)) return bad(e, NULL, "the request body contains a NUL byte");
    char *copy = malloc(len + 1);
    if (!copy) return loom_serve_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    memcpy(copy, body, len);
    copy[len] = 0;
    cJSON *root = cJSON_ParseWithOpts(copy, NULL, 1);
    free(copy);
    if (!root) return bad(e, NULL, "could not parse the request body as JSON");
    loom_status st = LOOM_OK;
    if (!cJSON_IsObject(root))
        st = bad(e, NULL, "the request body must be a JSON object");
    else
        st = parse_body(root, out, e);
    cJSON_Delete(root);
    if (st == LOOM_ERR_OOM)
        loom_serve_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    if (st != LOOM_OK) loom_serve_params_free(out);
    return st;
}

/* ---- output ---- */

static char *print_and_free(cJSON *o) {
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

char *loom_serve_error_json(const loom_serve_error *e) {
    cJSON *root = cJSON_CreateObject();
    cJSON *err = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(err, "message", e->message);
    cJSON_AddStringToObject(err, "type", e->type ? e->type : "invalid_request_error");
    if (e->param)
        cJSON_AddStringToObject(err, "param", e->param);
    else
        cJSON_AddNullToObject(err, "param");
    if (e->code)
        cJSON_AddStringToObject(err, "code", e->code);
    else
        cJSON_AddNullToObject(err, "code");
    return print_and_free(root);
}

/* cJSON wants NUL-terminated strings; text arrives with a length. */
static cJSON *add_text(cJSON *o, const char *name, const char *text, size_t len) {
    char *s = malloc(len + 1);
    if (!s) return NULL;
    memcpy(s, text, len);
    s[len] = 0;
    cJSON *r = cJSON_AddStringToObject(o, name, s);
    free(s);
    return r;
}

static cJSON *base(const loom_serve_meta *m, const char *object) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", m->id);
    cJSON_AddStringToObject(root, "object", object);
    cJSON_AddNumberToObject(root, "created", (double)m->created);
    cJSON_AddStringToObject(root, "model", m->model);
    return root;
}

/* A token's text for JSON: its bytes, with a piece of a multi-byte
 * character shown as U+FFFD (the exact bytes go in "bytes"). */
static void add_piece(cJSON *o, const char *name, const loom_serve_token_lp *t) {
    size_t n = 0;
    char *fixed = loom_utf8_repair(t->piece ? t->piece : "", t->piece_len, &n);
    add_text(o, name, fixed ? fixed : "", fixed ? n : 0);
    free(fixed);
}

static void add_bytes(cJSON *o, const loom_serve_token_lp *t) {
    cJSON *b = cJSON_AddArrayToObject(o, "bytes");
    for (size_t i = 0; i < t->piece_len; i++)
        cJSON_AddItemToArray(b, cJSON_CreateNumber((unsigned char)t->piece[i]));
}

/* Chat: {"content":[{token, logprob, bytes, top_logprobs:[…]}], "refusal":null}.
 * Completions (legacy): {tokens, token_logprobs, top_logprobs:[{tok: lp}], text_offset}. */
static void add_logprobs(cJSON *c, bool chat, loom_serve_lps lps) {
    if (!lps.on) {
        cJSON_AddNullToObject(c, "logprobs");
        return;
    }
    cJSON *lp = cJSON_AddObjectToObject(c, "logprobs");
    if (chat) {
        cJSON *content = cJSON_AddArrayToObject(lp, "content");
        for (size_t i = 0; i < lps.n; i++) {
            const loom_serve_logprob *x = &lps.v[i];
            cJSON *o = cJSON_CreateObject();
            cJSON_AddItemToArray(content, o);
            add_piece(o, "token", &x->tok);
            cJSON_AddNumberToObject(o, "logprob", x->tok.logprob);
            add_bytes(o, &x->tok);
            cJSON *tops = cJSON_AddArrayToObject(o, "top_logprobs");
            for (int k = 0; k < x->n_top; k++) {
                cJSON *t = cJSON_CreateObject();
                cJSON_AddItemToArray(tops, t);
                add_piece(t, "token", &x->top[k]);
                cJSON_AddNumberToObject(t, "logprob", x->top[k].logprob);
                add_bytes(t, &x->top[k]);
            }
        }
        cJSON_AddNullToObject(lp, "refusal");
        return;
    }
    cJSON *toks = cJSON_AddArrayToObject(lp, "tokens");
    cJSON *tlp = cJSON_AddArrayToObject(lp, "token_logprobs");
    cJSON *tops = cJSON_AddArrayToObject(lp, "top_logprobs");
    cJSON *off = cJSON_AddArrayToObject(lp, "text_offset");
    for (size_t i = 0; i < lps.n; i++) {
        const loom_serve_logprob *x = &lps.v[i];
        cJSON *t = cJSON_CreateObject();
        add_piece(t, "t", &x->tok);
        cJSON_AddItemToArray(toks, cJSON_DetachItemFromObject(t, "t"));
        cJSON_Delete(t);
        cJSON_AddItemToArray(tlp, cJSON_CreateNumber(x->tok.logprob));
        cJSON *m = cJSON_CreateObject();
        for (int k = 0; k < x->n_top; k++) {
            size_t n = 0;
            char *key = loom_utf8_repair(x->top[k].piece ? x->top[k].piece : "",
                                         x->top[k].piece_len, &n);
            /* Two pieces can read the same once repaired; keep the first
             * (the more likely), as a JSON object cannot hold both. */
            if (key && !cJSON_GetObjectItemCaseSensitive(m, key))
                cJSON_AddNumberToObject(m, key, x->top[k].logprob);
            free(key);
        }
        cJSON_AddItemToArray(tops, m);
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)x->text_offset));
    }
}

static void add_usage(cJSON *root, int64_t n_prompt, int64_t n_gen) {
    cJSON *u = cJSON_AddObjectToObject(root, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)n_gen);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(n_prompt + n_gen));
}

static void add_finish(cJSON *c, const char *finish) {
    if (finish)
        cJSON_AddStringToObject(c, "finish_reason", finish);
    else
        cJSON_AddNullToObject(c, "finish_reason");
}

char *loom_serve_response_json(const loom_serve_meta *m, const char *text, size_t len,
                               const char *finish, int64_t n_prompt, int64_t n_gen,
                               loom_serve_lps lps) {
    bool chat = m->kind == LOOM_SERVE_CHAT;
    cJSON *root = base(m, chat ? "chat.completion" : "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(root, "choices");
    cJSON *c = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, c);
    cJSON_AddNumberToObject(c, "index", 0);
    if (chat) {
        cJSON *msg = cJSON_AddObjectToObject(c, "message");
        cJSON_AddStringToObject(msg, "role", "assistant");
        add_text(msg, "content", text, len);
    } else {
        add_text(c, "text", text, len);
    }
    add_logprobs(c, chat, lps);
    add_finish(c, finish);
    add_usage(root, n_prompt, n_gen);
    return print_and_free(root);
}

/* "data: " + json + "\n\n" */
static char *sse_wrap(char *json) {
    if (!json) return NULL;
    size_t n = strlen(json);
    char *s = malloc(n + 9);
    if (s) {
        memcpy(s, "data: ", 6);
        memcpy(s + 6, json, n);
        memcpy(s + 6 + n, "\n\n", 3);
    }
    free(json);
    return s;
}

char *loom_serve_sse_chunk(const loom_serve_meta *m, const char *text, size_t len, bool role,
                           const char *finish, bool usage_null, loom_serve_lps lps) {
    bool chat = m->kind == LOOM_SERVE_CHAT;
    cJSON *root = base(m, chat ? "chat.completion.chunk" : "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(root, "choices");
    cJSON *c = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, c);
    cJSON_AddNumberToObject(c, "index", 0);
    if (chat) {
        cJSON *d = cJSON_AddObjectToObject(c, "delta");
        if (role) cJSON_AddStringToObject(d, "role", "assistant");
        if (len || role) add_text(d, "content", text, len);
    } else {
        add_text(c, "text", text, len);
    }
    add_logprobs(c, chat, lps);
    add_finish(c, finish);
    if (usage_null) cJSON_AddNullToObject(root, "usage");
    return sse_wrap(print_and_free(root));
}

char *loom_serve_sse_usage(const loom_serve_meta *m, int64_t n_prompt, int64_t n_gen) {
    bool chat = m->kind == LOOM_SERVE_CHAT;
    cJSON *root = base(m, chat ? "chat.completion.chunk" : "text_completion");
    cJSON_AddArrayToObject(root, "choices");
    add_usage(root, n_prompt, n_gen);
    return sse_wrap(print_and_free(root));
}

const char *loom_serve_sse_done(void) {
    return "data: [DONE]\n\n";
}
