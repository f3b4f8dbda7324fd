/* serve/chat.c - template text encoded with special tokens, message contents
 * as plain text (see chat.h). */
#include "serve/chat.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Stands in for a content while rendering: no whitespace at either end
 * (the template trims contents) and no byte a client's text is needed for. */
static const char MARK[] = "\x01loom-content\x02";
#define MARK_N (sizeof MARK - 1)

typedef struct {
    int32_t *ids;
    size_t n, cap;
} idvec;

static loom_status append(const loom_tokenizer *tok, idvec *v, const char *s, size_t len,
                          unsigned flags, char *err, size_t err_n) {
    if (!len) return LOOM_OK;
    int32_t *ids = NULL;
    size_t n = 0;
    LOOM_TRY(loom_tokenizer_encode(tok, s, len, flags, &ids, &n, err, err_n));
    if (v->n + n > v->cap) {
        size_t cap = v->cap ? v->cap : 256;
        while (cap < v->n + n)
            cap *= 2;
        int32_t *b = realloc(v->ids, cap * sizeof *b);
        if (!b) {
            free(ids);
            return LOOM_ERR_OOM;
        }
        v->ids = b;
        v->cap = cap;
    }
    memcpy(v->ids + v->n, ids, n * sizeof *ids);
    v->n += n;
    free(ids);
    return LOOM_OK;
}

/* The content of message m as the template puts it (trimmed): render m
 * alone with its content and with the marker; the marker render is
 * X + MARK + Y, so the content render is X + content + Y. */
static loom_status rendered_content(const loom_tokenizer *tok, const loom_chat_message *m,
                                    char **out, size_t *off, size_t *len) {
    loom_chat_message mk = {m->role, MARK};
    char *a = NULL, *b = NULL;
    if (loom_tokenizer_chat_render(tok, NULL, m, 1, false, &a, NULL, 0) != LOOM_OK ||
        loom_tokenizer_chat_render(tok, NULL, &mk, 1, false, &b, NULL, 0) != LOOM_OK) {
        free(a);
        free(b);
        return LOOM_ERR_INTERNAL; /* a template that refuses a lone message ([INST] ones) */
    }
    const char *at = strstr(b, MARK);
    size_t x = at ? (size_t)(at - b) : 0, y = at ? strlen(at + MARK_N) : 0;
    size_t la = strlen(a);
    bool ok = at && la >= x + y && !memcmp(a, b, x) && !memcmp(a + la - y, at + MARK_N, y);
    free(b);
    if (!ok) {
        free(a);
        return LOOM_ERR_INTERNAL;
    }
    *out = a;
    *off = x;
    *len = la - x - y;
    return LOOM_OK;
}

loom_status loom_serve_chat_encode(const loom_tokenizer *tok, const loom_chat_message *msgs,
                                   size_t n, int32_t **ids, size_t *n_ids, char *err,
                                   size_t err_n) {
    *ids = NULL;
    *n_ids = 0;
    loom_chat_message *mk = calloc(n ? n : 1, sizeof *mk);
    if (!mk) return LOOM_ERR_OOM;
    for (size_t i = 0; i < n; i++) {
        mk[i].role = msgs[i].role;
        mk[i].content = MARK;
    }
    char *scaffold = NULL;
    loom_status st = loom_tokenizer_chat_render(tok, NULL, mk, n, true, &scaffold, err, err_n);
    free(mk);
    if (st != LOOM_OK) return st;
    idvec v = {0};
    const char *p = scaffold;
    for (size_t i = 0; i < n && st == LOOM_OK; i++) {
        const char *at = strstr(p, MARK);
        char *r = NULL;
        size_t off = 0, len = 0;
        if (!at || (st = rendered_content(tok, &msgs[i], &r, &off, &len)) != LOOM_OK) {
            snprintf(err, err_n, "the chat template did not render message %zu as expected", i);
            if (st == LOOM_OK) st = LOOM_ERR_INTERNAL;
            break;
        }
        st = append(tok, &v, p, (size_t)(at - p), 0, err, err_n);
        if (st == LOOM_OK) st = append(tok, &v, r + off, len, LOOM_TOK_NO_SPECIAL, err, err_n);
        free(r);
        p = at + MARK_N;
    }
    if (st == LOOM_OK) st = append(tok, &v, p, strlen(p), 0, err, err_n);
    free(scaffold);
    if (st != LOOM_OK) {
        free(v.ids);
        if (st == LOOM_ERR_OOM) snprintf(err, err_n, "out of memory");
        return st;
    }
    *ids = v.ids ? v.ids : malloc(sizeof(int32_t));
    *n_ids = v.n;
    return *ids ? LOOM_OK : LOOM_ERR_OOM;
}
