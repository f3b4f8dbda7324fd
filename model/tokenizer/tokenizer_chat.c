/* model/tokenizer/tokenizer_chat.c - chat templates, rendered in C.
 *
 * A model's chat template is a Jinja program (GGUF tokenizer.chat_template,
 * tokenizer_config.json chat_template). loom does not interpret Jinja: it
 * knows a table of real templates by the FNV-1a hash of their exact text and
 * renders each family in C, byte-for-byte as transformers' apply_chat_template
 * does (tests/model/test_chat_template.c against goldens written by
 * scripts/gen_chat_template_golden.py with jinja2). A template not in the
 * table is refused with a hint; --chat-template NAME overrides the choice.
 * docs/adr/0025-real-default-model-chat-templates-perplexity.md.
 *
 * Jinja's trim and Python's str.strip() remove the characters for which
 * str.isspace() is true, listed in is_py_space(). */
#include <stdio.h>
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

static void put_stripped(sbuf *b, const char *s, size_t n) {
    size_t a, e;
    py_strip(s, n, &a, &e);
    put(b, s + a, e - a);
}

/* ---- the families ---- */

typedef enum family { FAM_LLAMA3, FAM_CHATML, FAM_MISTRAL, FAM_LLAMA2, FAM_ZEPHYR } family;

typedef struct named_template {
    const char *name;
    family fam;
    const char *default_system; /* ChatML variants that add a system turn; else NULL */
    const char *about;
} named_template;

static const named_template NAMED[] = {
    {"llama3", FAM_LLAMA3, NULL, "Llama 3 / 3.x headers, <|eot_id|>, contents trimmed"},
    {"chatml", FAM_CHATML, NULL, "<|im_start|>ROLE ... <|im_end|> (OpenHermes, Qwen-style)"},
    {"smollm2", FAM_CHATML, "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
     "ChatML with SmolLM2's default system turn"},
    {"mistral", FAM_MISTRAL, NULL, "Mistral-7B-Instruct v0.1/v0.2 [INST] (no system role)"},
    {"llama2", FAM_LLAMA2, NULL, "Llama-2-chat [INST] with <<SYS>>"},
    {"zephyr", FAM_ZEPHYR, NULL, "Zephyr <|user|> / <|assistant|>, EOS after each turn"},
};
#define N_NAMED (sizeof NAMED / sizeof NAMED[0])

/* The real template texts loom renders, by FNV-1a 64 of their exact bytes
 * (printed by scripts/gen_chat_template_golden.py, which renders each). */
typedef struct known_template {
    uint64_t hash;
    const char *name;       /* a NAMED entry */
    bool gen_prompt_always; /* the text appends the assistant header unconditionally */
    const char *source;
} known_template;

static const known_template KNOWN[] = {
    {0x74891e390e614ae2ull, "llama3", true, "Meta-Llama-3-8B-Instruct (first release)"},
    {0x0e60067a5537498eull, "llama3", false, "Meta-Llama-3-8B-Instruct (add_generation_prompt)"},
    {0x88bf4138d5c826f0ull, "chatml", false, "teknium/OpenHermes-2.5-Mistral-7B"},
    {0x45ec583d4d25bc3aull, "smollm2", false, "HuggingFaceTB/SmolLM2-*-Instruct"},
    {0x8c734b90b4f8d84dull, "mistral", false, "mistralai/Mistral-7B-Instruct-v0.1"},
    {0xf344eecf1bd3a427ull, "llama2", false, "meta-llama/Llama-2-7b-chat-hf"},
    {0xcd8b49000db02c2cull, "zephyr", false, "HuggingFaceH4/zephyr-7b-beta"},
};
#define N_KNOWN (sizeof KNOWN / sizeof KNOWN[0])

static uint64_t fnv1a64(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return h;
}

static const named_template *find_named(const char *name) {
    for (size_t i = 0; i < N_NAMED; i++)
        if (!strcmp(NAMED[i].name, name)) return &NAMED[i];
    return NULL;
}

static void names_list(char *buf, size_t n) {
    size_t o = 0;
    buf[0] = 0;
    for (size_t i = 0; i < N_NAMED && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%s", i ? ", " : "", NAMED[i].name);
}

const char *loom_chat_template_names(size_t i) {
    return i < N_NAMED ? NAMED[i].name : NULL;
}

loom_status loom_chat_template_select(const char *name, const char *text, loom_chat_template *out,
                                      char *err, size_t err_n) {
    if (!out) return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "chat template: NULL out");
    memset(out, 0, sizeof *out);
    char names[256];
    names_list(names, sizeof names);
    if (name) {
        const named_template *t = find_named(name);
        if (!t)
            return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                                   "unknown chat template '%s' (known: %s)", name, names);
        out->name = t->name;
        return LOOM_OK;
    }
    if (!text)
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "the model has no chat template (tokenizer.chat_template); pass "
                               "--chat-template NAME (%s)",
                               names);
    uint64_t h = fnv1a64(text);
    for (size_t i = 0; i < N_KNOWN; i++)
        if (KNOWN[i].hash == h) {
            out->name = KNOWN[i].name;
            out->gen_prompt_always = KNOWN[i].gen_prompt_always;
            return LOOM_OK;
        }
    /* Unknown text: say which family it resembles, but do not guess. */
    const char *hint = strstr(text, "<|start_header_id|>") ? "llama3"
                       : strstr(text, "<|im_start|>")      ? "chatml"
                       : strstr(text, "<<SYS>>")           ? "llama2"
                       : strstr(text, "[INST]")            ? "mistral"
                       : strstr(text, "<|assistant|>")     ? "zephyr"
                                                           : NULL;
    return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                           "unknown chat template (fingerprint %016llx, %zu bytes, starts "
                           "\"%.40s\"); %s%s%spass --chat-template NAME (%s)",
                           (unsigned long long)h, strlen(text), text, hint ? "it looks like '" : "",
                           hint ? hint : "", hint ? "': " : "", names);
}

/* Python's ('user' == role) != (i % 2 == 0): the [INST] templates' check. */
static bool alternation_broken(const char *role, size_t i) {
    return (strcmp(role, "user") == 0) != (i % 2 == 0);
}

loom_status loom_chat_render(const loom_chat_template *tmpl, const char *bos, const char *eos,
                             const loom_chat_message *m, size_t n, bool add_generation_prompt,
                             char **out, char *err, size_t err_n) {
    if (!tmpl || !tmpl->name || !out || (n && !m))
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "chat template: NULL argument");
    *out = NULL;
    const named_template *t = find_named(tmpl->name);
    if (!t)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "unknown chat template '%s'",
                               tmpl->name);
    for (size_t i = 0; i < n; i++)
        if (!m[i].role || !m[i].content)
            return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                                   "chat message %zu has no role or content", i);
    if (!bos) bos = "";
    if (!eos) eos = "";
    sbuf b = {0};
    put(&b, "", 0); /* an empty conversation still yields "" (or the prompt) */
    const char *fail = NULL;
    switch (t->fam) {
    case FAM_LLAMA3:
        for (size_t i = 0; i < n; i++) {
            if (i == 0) puts_(&b, bos);
            puts_(&b, "<|start_header_id|>");
            puts_(&b, m[i].role);
            puts_(&b, "<|end_header_id|>\n\n");
            put_stripped(&b, m[i].content, strlen(m[i].content));
            puts_(&b, "<|eot_id|>");
        }
        if (add_generation_prompt || tmpl->gen_prompt_always)
            puts_(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case FAM_CHATML:
        for (size_t i = 0; i < n; i++) {
            if (i == 0 && t->default_system && strcmp(m[0].role, "system") != 0) {
                puts_(&b, "<|im_start|>system\n");
                puts_(&b, t->default_system);
                puts_(&b, "<|im_end|>\n");
            }
            puts_(&b, "<|im_start|>");
            puts_(&b, m[i].role);
            puts_(&b, "\n");
            puts_(&b, m[i].content);
            puts_(&b, "<|im_end|>\n");
        }
        if (add_generation_prompt) puts_(&b, "<|im_start|>assistant\n");
        break;
    case FAM_MISTRAL:
        puts_(&b, bos);
        for (size_t i = 0; i < n && !fail; i++) {
            if (alternation_broken(m[i].role, i))
                fail = "the mistral template needs roles alternating user/assistant/..., "
                       "starting with user (it has no system role)";
            else if (!strcmp(m[i].role, "user")) {
                puts_(&b, "[INST] ");
                puts_(&b, m[i].content);
                puts_(&b, " [/INST]");
            } else if (!strcmp(m[i].role, "assistant")) {
                puts_(&b, m[i].content);
                puts_(&b, eos);
            } else {
                fail = "the mistral template supports only user and assistant roles";
            }
        }
        break;
    case FAM_LLAMA2: {
        /* messages[0] of an empty list is undefined in the template: an error */
        if (n == 0) {
            fail = "the llama2 template needs at least one message";
            break;
        }
        const char *sys = !strcmp(m[0].role, "system") ? m[0].content : NULL;
        size_t first = sys ? 1 : 0;
        sbuf c = {0};
        for (size_t i = first; i < n && !fail; i++) {
            size_t li = i - first;
            if (alternation_broken(m[i].role, li)) {
                fail = "the llama2 template needs roles alternating user/assistant/... after "
                       "an optional system message";
                break;
            }
            /* content = ('<<SYS>>\n' + sys + '\n<</SYS>>\n\n' if first) + text,
             * then strip()ped as a whole. */
            c.n = 0;
            put(&c, "", 0);
            if (li == 0 && sys) {
                puts_(&c, "<<SYS>>\n");
                puts_(&c, sys);
                puts_(&c, "\n<</SYS>>\n\n");
            }
            puts_(&c, m[i].content);
            if (c.oom) break;
            if (!strcmp(m[i].role, "user")) {
                puts_(&b, bos);
                puts_(&b, "[INST] ");
                put_stripped(&b, c.p, c.n);
                puts_(&b, " [/INST]");
            } else if (!strcmp(m[i].role, "assistant")) {
                puts_(&b, " ");
                put_stripped(&b, c.p, c.n);
                puts_(&b, " ");
                puts_(&b, eos);
            } /* any other role at an assistant position renders nothing */
        }
        if (c.oom) b.oom = true;
        free(c.p);
        break;
    }
    case FAM_ZEPHYR:
        for (size_t i = 0; i < n; i++) {
            const char *r = m[i].role;
            if (strcmp(r, "user") && strcmp(r, "system") && strcmp(r, "assistant")) continue;
            puts_(&b, "<|");
            puts_(&b, r);
            puts_(&b, "|>\n");
            puts_(&b, m[i].content);
            puts_(&b, eos);
            puts_(&b, "\n");
        }
        /* {% if loop.last and add_generation_prompt %}: inside the loop */
        if (add_generation_prompt && n > 0) puts_(&b, "<|assistant|>\n");
        break;
    }
    if (fail) {
        free(b.p);
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "%s", fail);
    }
    if (b.oom) {
        free(b.p);
        return loom_model_fail(err, err_n, LOOM_ERR_OOM, "chat template: out of memory");
    }
    *out = b.p;
    return LOOM_OK;
}

loom_status loom_chat_format_llama3(const loom_chat_message *messages, size_t n,
                                    bool add_generation_prompt, char **out) {
    if (!out || (n && !messages)) return LOOM_ERR_INVALID_ARG;
    loom_chat_template t = {.name = "llama3"};
    return loom_chat_render(&t, "<|begin_of_text|>", "<|end_of_text|>", messages, n,
                            add_generation_prompt, out, NULL, 0);
}

loom_status loom_tokenizer_chat_render(const loom_tokenizer *tok, const char *name,
                                       const loom_chat_message *m, size_t n,
                                       bool add_generation_prompt, char **out, char *err,
                                       size_t err_n) {
    if (!tok || !out)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "chat template: NULL argument");
    *out = NULL;
    const char *text = loom_tokenizer_chat_template(tok);
    loom_chat_template t;
    if (!name && !text &&
        loom_tokenizer_find(tok, "<|start_header_id|>", 19, &(int32_t){0}) == LOOM_OK) {
        /* models made by loom init-model carry Llama 3's vocabulary without a
         * template text; what loom chat always did for them */
        name = "llama3";
    }
    LOOM_TRY(loom_chat_template_select(name, text, &t, err, err_n));
    /* bos_token / eos_token as the template sees them: the tokens' text */
    const char *bp = "", *ep = "";
    size_t bl = 0, el = 0;
    int32_t bos = loom_tokenizer_bos(tok), eos = loom_tokenizer_eos(tok);
    if (bos >= 0) loom_tokenizer_piece(tok, bos, &bp, &bl);
    if (eos >= 0) loom_tokenizer_piece(tok, eos, &ep, &el);
    char *bs = malloc(bl + 1), *es = malloc(el + 1);
    if (!bs || !es) {
        free(bs);
        free(es);
        return loom_model_fail(err, err_n, LOOM_ERR_OOM, "chat template: out of memory");
    }
    memcpy(bs, bp, bl);
    bs[bl] = 0;
    memcpy(es, ep, el);
    es[el] = 0;
    loom_status st = loom_chat_render(&t, bs, es, m, n, add_generation_prompt, out, err, err_n);
    free(bs);
    free(es);
    return st;
}
