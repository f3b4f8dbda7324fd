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

/* The content of message i as the template puts it (trimmed, or merged into
 * another turn as llama2's system prompt is): render the whole conversation
 * with every content a marker except message i's real one. scaffold (all
 * markers) is X + MARK + Y around message i's marker, so that render is
 * X + content + Y. The whole conversation, not message i alone: the [INST]
 * templates refuse a lone assistant or system message. */
static loom_status rendered_content(const loom_tokenizer *tok, loom_chat_message *mk, size_t n,
                                    size_t i, const char *content, const char *scaffold,
                                    const char *at, char **out, size_t *off, size_t *len) {
    mk[i].content = content;
    char *a = NULL;
    loom_status st = loom_tokenizer_chat_render(tok, NULL, mk, n, true, &a, NULL, 0);
    mk[i].content = MARK;
    if (st != LOOM_OK) return LOOM_ERR_INTERNAL;
    size_t x = (size_t)(at - scaffold), y = strlen(at + MARK_N);
    size_t la = strlen(a);
    if (la < x + y || memcmp(a, scaffold, x) || memcmp(a + la - y, at + MARK_N, y)) {
        free(a);
        return LOOM_ERR_INTERNAL;
    }
    *out = a;
    *off = x;
    *len = la - x - y;
    return LOOM_OK;
}

/* Special tokens (control, unknown) in ids: what a client must not be able to write. */
static size_t n_special(const loom_tokenizer *tok, const int32_t *ids, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        loom_token_type ty = loom_tokenizer_token_type(tok, ids[i]);
        c += ty == LOOM_TOKEN_CONTROL || ty == LOOM_TOKEN_UNKNOWN;
    }
    return c;
}

/* Whether text encodes to any special token when special-token text is parsed. */
static loom_status has_special(const loom_tokenizer *tok, const char *text, bool *yes, char *err,
                               size_t err_n) {
    int32_t *ids = NULL;
    size_t n = 0;
    LOOM_TRY(loom_tokenizer_encode(tok, text, strlen(text), 0, &ids, &n, err, err_n));
    *yes = n_special(tok, ids, n) > 0;
    free(ids);
    return LOOM_OK;
}

/* The common case, no message with special-token text: the whole rendered
 * prompt encoded at once, as transformers and llama.cpp encode it. Pieces
 * encoded apart differ where a content meets template text: "[INST] " +
 * "Hello" is "▁[", "INST", "]", "▁", "▁Hello" apart and "...]", "▁Hello"
 * whole (SentencePiece), and byte-level BPE keeps a space with the word
 * after it. *done = false: leave it to the piecewise encoding. */
static loom_status encode_whole(const loom_tokenizer *tok, const loom_chat_message *msgs,
                                size_t n, const char *scaffold, int32_t **ids, size_t *n_ids,
                                bool *done, char *err, size_t err_n) {
    *done = false;
    for (size_t i = 0; i < n; i++) {
        bool sp = false;
        LOOM_TRY(has_special(tok, msgs[i].content ? msgs[i].content : "", &sp, err, err_n));
        if (sp) return LOOM_OK;
    }
    char *text = NULL;
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    loom_status st = loom_tokenizer_chat_render(tok, NULL, msgs, n, true, &text, err, err_n);
    if (st == LOOM_OK) st = loom_tokenizer_encode(tok, text, strlen(text), 0, &a, &na, err, err_n);
    if (st == LOOM_OK)
        st = loom_tokenizer_encode(tok, scaffold, strlen(scaffold), 0, &b, &nb, err, err_n);
    /* a content that completes a special token with the template text after
     * it would add one: then the careful way */
    if (st == LOOM_OK && n_special(tok, a, na) == n_special(tok, b, nb)) {
        *ids = a;
        *n_ids = na;
        *done = true;
        a = NULL;
    }
    free(text);
    free(a);
    free(b);
    return st;
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
    bool done = false;
    if (st == LOOM_OK) st = encode_whole(tok, msgs, n, scaffold, ids, n_ids, &done, err, err_n);
    if (st != LOOM_OK || done) {
        free(scaffold);
        free(mk);
        return st;
    }
    /* A content with special-token text: the template's text encoded with
     * special tokens, each content apart as plain text. */
    idvec v = {0};
    const char *p = scaffold;
    for (size_t i = 0; i < n && st == LOOM_OK; i++) {
        const char *at = strstr(p, MARK);
        char *r = NULL;
        size_t off = 0, len = 0;
        if (!at || (st = rendered_content(tok, mk, n, i, msgs[i].content, scaffold, at, &r, &off,
                                          &len)) != LOOM_OK) {
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
    free(mk);
    if (st != LOOM_OK) {
        free(v.ids);
        if (st == LOOM_ERR_OOM) snprintf(err, err_n, "out of memory");
        return st;
    }
    *ids = v.ids ? v.ids : malloc(sizeof(int32_t));
    *n_ids = v.n;
    return *ids ? LOOM_OK : LOOM_ERR_OOM;
}
