/* model/tokenizer/tokenizer_chat.c - the Llama-3 chat template, rendered in C.
 *
 * The template in Llama 3's tokenizer_config.json is
 *   {% for message in messages %}
 *     content = '<|start_header_id|>' + role + '<|end_header_id|>\n\n'
 *               + (message['content'] | trim) + '<|eot_id|>'
 *     first message: bos_token + content
 *   {% endfor %}
 *   '<|start_header_id|>assistant<|end_header_id|>\n\n'
 * Jinja's trim is Python's str.strip(): it removes the characters for which
 * str.isspace() is true, listed in is_py_space(). */
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer/tok_internal.h"

static bool is_py_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Decode the UTF-8 character starting at p (at most n bytes); *l = its length.
 * Invalid bytes decode as themselves with length 1 (never whitespace). */
static uint32_t utf8_at(const uint8_t *p, size_t n, size_t *l) {
    uint32_t c = p[0];
    size_t need = c < 0x80             ? 1
                  : (c & 0xe0) == 0xc0 ? 2
                  : (c & 0xf0) == 0xe0 ? 3
                  : (c & 0xf8) == 0xf0 ? 4
                                       : 0;
    if (need <= 1 || need > n) {
        *l = 1;
        return need == 1 ? c : 0xfffd0000u | c;
    }
    uint32_t v = c & (0x7f >> need);
    for (size_t k = 1; k < need; k++) {
        if ((p[k] & 0xc0) != 0x80) {
            *l = 1;
            return 0xfffd0000u | c;
        }
        v = (v << 6) | (p[k] & 0x3f);
    }
    *l = need;
    return v;
}

/* Trimmed span [*b, *e) of s[0..n). */
static void py_strip(const char *s, size_t n, size_t *b, size_t *e) {
    const uint8_t *u = (const uint8_t *)s;
    size_t i = 0;
    while (i < n) {
        size_t l;
        uint32_t c = utf8_at(u + i, n - i, &l);
        if (!is_py_space(c)) break;
        i += l;
    }
    /* From the end: find the last non-space character by scanning forward
     * (UTF-8 cannot be decoded backwards safely when it may be invalid). */
    size_t end = i, k = i;
    while (k < n) {
        size_t l;
        uint32_t c = utf8_at(u + k, n - k, &l);
        k += l;
        if (!is_py_space(c)) end = k;
    }
    *b = i;
    *e = end;
}

typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n + 1)
            nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void puts_(sbuf *b, const char *s) {
    put(b, s, strlen(s));
}

loom_status loom_chat_format_llama3(const loom_chat_message *messages, size_t n,
                                    bool add_generation_prompt, char **out) {
    if (!out || (n && !messages)) return LOOM_ERR_INVALID_ARG;
    *out = NULL;
    for (size_t i = 0; i < n; i++)
        if (!messages[i].role || !messages[i].content) return LOOM_ERR_INVALID_ARG;
    sbuf b = {0};
    put(&b, "", 0); /* an empty conversation still yields "" (or the prompt) */
    for (size_t i = 0; i < n; i++) {
        if (i == 0) puts_(&b, "<|begin_of_text|>");
        puts_(&b, "<|start_header_id|>");
        puts_(&b, messages[i].role);
        puts_(&b, "<|end_header_id|>\n\n");
        size_t s, e;
        py_strip(messages[i].content, strlen(messages[i].content), &s, &e);
        put(&b, messages[i].content + s, e - s);
        puts_(&b, "<|eot_id|>");
    }
    if (add_generation_prompt) puts_(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    if (b.oom) {
        free(b.p);
        return LOOM_ERR_OOM;
    }
    *out = b.p;
    return LOOM_OK;
}
