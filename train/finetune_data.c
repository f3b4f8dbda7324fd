/* train/finetune_data.c - JSONL -> tokenized, loss-masked examples (see
 * finetune_data.h). */
#include "finetune_data.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static loom_status fail(char *err, size_t n, loom_status st, const char *path, int64_t line,
                        const char *msg) {
    if (err && n) snprintf(err, n, "%s:%lld: %s", path, (long long)line, msg);
    return st;
}

void loom_ft_dataset_free(loom_ft_dataset *d) {
    if (!d) return;
    for (int64_t i = 0; i < d->n; i++) {
        free(d->ex[i].ids);
        free(d->ex[i].loss);
    }
    free(d->ex);
    memset(d, 0, sizeof *d);
}

/* Append ids with loss flag f to e (grown). */
static bool append(loom_ft_example *e, int32_t *cap, const int32_t *ids, size_t n, uint8_t f) {
    if ((size_t)e->n + n > (size_t)*cap) {
        int32_t c = *cap ? *cap : 64;
        while ((size_t)c < (size_t)e->n + n)
            c *= 2;
        int32_t *ni = realloc(e->ids, (size_t)c * sizeof *ni);
        if (ni) e->ids = ni;
        uint8_t *nl = realloc(e->loss, (size_t)c);
        if (nl) e->loss = nl;
        if (!ni || !nl) return false;
        *cap = c;
    }
    memcpy(e->ids + e->n, ids, n * sizeof *ids);
    memset(e->loss + e->n, f, n);
    e->n += (int32_t)n;
    return true;
}

/* Encode the bytes of s after the first skip bytes (special tokens parsed). */
static loom_status encode(const loom_tokenizer *tok, const char *s, size_t skip, unsigned flags,
                          int32_t **ids, size_t *n) {
    char e[256];
    return loom_tokenizer_encode(tok, s + skip, strlen(s) - skip, flags, ids, n, e, sizeof e);
}

/* The chat template of a dataset: chosen on the first chat line (a
 * text-only dataset never needs one), then reused. */
typedef struct chat_ctx {
    const loom_tokenizer *tok;
    const char *name; /* --chat-template, or NULL: the model's */
    bool ready;
    loom_chat_template t;
    char *bos, *eos; /* the tokens' text, as the template sees them */
    char why[512];
} chat_ctx;

static char *piece_text(const loom_tokenizer *tok, int32_t id) {
    const char *p = "";
    size_t n = 0;
    if (id >= 0) loom_tokenizer_piece(tok, id, &p, &n);
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = 0;
    }
    return s;
}

static const char *chat_select(chat_ctx *c) {
    if (c->ready) return NULL;
    const char *name = c->name, *text = loom_tokenizer_chat_template(c->tok);
    /* as loom_tokenizer_chat_render: loom init-model's models carry Llama
     * 3's vocabulary without a template text */
    if (!name && !text &&
        loom_tokenizer_find(c->tok, "<|start_header_id|>", 19, &(int32_t){0}) == LOOM_OK)
        name = "llama3";
    char e[400];
    if (loom_chat_template_select(name, text, &c->t, e, sizeof e) != LOOM_OK) {
        snprintf(c->why, sizeof c->why, "chat template: %s", e);
        return c->why;
    }
    /* training renders each turn exactly as it ends: the first Llama-3
     * release's text appends the assistant header even without
     * add_generation_prompt, which would be trained on as part of the last
     * answer */
    c->t.gen_prompt_always = false;
    c->bos = piece_text(c->tok, loom_tokenizer_bos(c->tok));
    c->eos = piece_text(c->tok, loom_tokenizer_eos(c->tok));
    if (!c->bos || !c->eos) return "out of memory";
    c->ready = true;
    return NULL;
}

static const char *render(chat_ctx *c, const loom_chat_message *m, size_t n, bool gen, char **out) {
    char e[400];
    if (loom_chat_render(&c->t, c->bos, c->eos, m, n, gen, out, e, sizeof e) == LOOM_OK)
        return NULL;
    snprintf(c->why, sizeof c->why, "chat template %s: %s", c->t.name, e);
    return c->why;
}

/* messages: render prefixes so that each assistant message's tokens are
 * known: [0, i) with the generation prompt is the prompt, [0, i] without it
 * ends after the answer's end-of-turn (and whatever the template writes
 * right after it, e.g. ChatML's newline). Each rendering must extend the
 * previous one (checked: a template that rewrites earlier turns cannot be
 * masked this way). Pieces are tokenized separately; the templates' special
 * tokens and newlines split pre-tokenization, so this equals tokenizing the
 * whole conversation (test_finetune checks it for ChatML). */
static const char *chat(chat_ctx *c, const cJSON *msgs, loom_ft_example *e, int32_t *cap) {
    int n = cJSON_GetArraySize(msgs);
    if (n < 1) return "\"messages\" must be a non-empty array";
    const char *why = chat_select(c);
    if (why) return why;
    loom_chat_message *m = calloc((size_t)n, sizeof *m);
    if (!m) return "out of memory";
    bool any = false;
    for (int i = 0; i < n && !why; i++) {
        const cJSON *it = cJSON_GetArrayItem(msgs, i);
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(it, "role");
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!cJSON_IsString(r) || !cJSON_IsString(ct))
            why = "each message needs string \"role\" and \"content\"";
        else
            m[i] = (loom_chat_message){r->valuestring, ct->valuestring};
    }
    char *prev = NULL; /* the rendering already tokenized */
    size_t done = 0;
    for (int i = 0; i < n && !why; i++) {
        if (strcmp(m[i].role, "assistant") != 0) continue;
        any = true;
        char *pre = NULL, *full = NULL;
        int32_t *ids = NULL;
        size_t k = 0;
        if ((why = render(c, m, (size_t)i, true, &pre)) == NULL &&
            (why = render(c, m, (size_t)i + 1, false, &full)) == NULL) {
            size_t lp = strlen(pre);
            if ((prev && strncmp(pre, prev, done) != 0) || strncmp(full, pre, lp) != 0) {
                snprintf(c->why, sizeof c->why,
                         "chat template %s: a turn's rendering does not extend the previous "
                         "one, so the assistant tokens cannot be masked",
                         c->t.name);
                why = c->why;
            } else if (encode(c->tok, pre, done, 0, &ids, &k) != LOOM_OK ||
                       !append(e, cap, ids, k, 0)) {
                why = "cannot tokenize the prompt";
            } else {
                free(ids);
                ids = NULL;
                if (encode(c->tok, full, lp, 0, &ids, &k) != LOOM_OK || !append(e, cap, ids, k, 1))
                    why = "cannot tokenize an answer";
                done = strlen(full);
            }
        }
        free(ids);
        free(pre);
        if (!why) {
            free(prev);
            prev = full;
        } else {
            free(full);
        }
    }
    free(prev);
    if (!why && !any) why = "a conversation needs at least one \"assistant\" message";
    free(m);
    return why;
}

loom_status loom_ft_dataset_load(const char *path, const loom_tokenizer *tok, int32_t max_len,
                                 loom_ft_dataset *out, char *err, size_t err_n) {
    return loom_ft_dataset_load_chat(path, tok, NULL, max_len, out, err, err_n);
}

loom_status loom_ft_dataset_load_chat(const char *path, const loom_tokenizer *tok,
                                      const char *chat_template, int32_t max_len,
                                      loom_ft_dataset *out, char *err, size_t err_n) {
    memset(out, 0, sizeof *out);
    if (!tok) return fail(err, err_n, LOOM_ERR_INVALID_ARG, path, 0, "the model has no tokenizer");
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, err_n, LOOM_ERR_IO, path, 0, "cannot open");
    chat_ctx cc = {.tok = tok, .name = chat_template};
    char *line = NULL;
    size_t cap = 0;
    int64_t ln = 0, cap_ex = 0;
    loom_status st = LOOM_OK;
    const int32_t eos = loom_tokenizer_eos(tok);
    for (;;) {
        ln++;
        size_t len = 0;
        int c;
        while ((c = fgetc(f)) != EOF && c != '\n') { /* getline without POSIX */
            if (len + 2 > cap) {
                size_t nc = cap ? 2 * cap : 4096;
                char *nl = realloc(line, nc);
                if (!nl) {
                    st = fail(err, err_n, LOOM_ERR_OOM, path, ln, "out of memory");
                    goto done;
                }
                line = nl;
                cap = nc;
            }
            line[len++] = (char)c;
        }
        if (c == EOF && len == 0) break;
        if (line) line[len] = 0;
        size_t sp = 0;
        while (sp < len && (line[sp] == ' ' || line[sp] == '\t' || line[sp] == '\r'))
            sp++;
        if (sp == len) continue;
        cJSON *j = cJSON_ParseWithLength(line, len);
        if (!cJSON_IsObject(j)) {
            cJSON_Delete(j);
            st = fail(err, err_n, LOOM_ERR_FORMAT, path, ln, "not a JSON object");
            goto done;
        }
        if (out->n == cap_ex) {
            int64_t nc = cap_ex ? 2 * cap_ex : 64;
            loom_ft_example *ne = realloc(out->ex, (size_t)nc * sizeof *ne);
            if (!ne) {
                cJSON_Delete(j);
                st = fail(err, err_n, LOOM_ERR_OOM, path, ln, "out of memory");
                goto done;
            }
            out->ex = ne;
            cap_ex = nc;
        }
        loom_ft_example *e = &out->ex[out->n++];
        memset(e, 0, sizeof *e);
        int32_t ecap = 0;
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(j, "text");
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
        const char *why = NULL;
        if (cJSON_IsString(text)) {
            int32_t *ids = NULL;
            size_t k = 0;
            unsigned fl = loom_tokenizer_add_bos(tok) ? LOOM_TOK_ADD_BOS : 0u;
            if (encode(tok, text->valuestring, 0, fl, &ids, &k) != LOOM_OK ||
                !append(e, &ecap, ids, k, 1) || (eos >= 0 && !append(e, &ecap, &eos, 1, 1)))
                why = "cannot tokenize \"text\"";
            free(ids);
            if (!why && e->n) e->loss[0] = 0; /* nothing predicts the first token */
        } else if (cJSON_IsArray(msgs)) {
            why = chat(&cc, msgs, e, &ecap);
        } else {
            why = "needs a string \"text\" or an array \"messages\"";
        }
        cJSON_Delete(j);
        if (!why && e->n < 2) why = "fewer than two tokens: nothing to predict";
        if (why) {
            st = fail(err, err_n, LOOM_ERR_FORMAT, path, ln, why);
            goto done;
        }
        if (e->n > max_len) e->n = max_len;
        out->n_tokens += e->n;
        for (int32_t t = 1; t < e->n; t++)
            out->n_loss_tokens += e->loss[t];
    }
    if (out->n == 0) st = fail(err, err_n, LOOM_ERR_FORMAT, path, ln, "no examples");
done:
    free(line);
    free(cc.bos);
    free(cc.eos);
    fclose(f);
    if (st != LOOM_OK) loom_ft_dataset_free(out);
    return st;
}

int32_t loom_ft_example_fill(const loom_ft_example *e, int32_t T, int32_t pad, int32_t *tokens,
                             int32_t *targets) {
    int32_t counted = 0;
    for (int32_t t = 0; t < T; t++) {
        tokens[t] = t < e->n ? e->ids[t] : pad;
        targets[t] = -1;
        if (t + 1 < e->n && e->loss[t + 1]) {
            targets[t] = e->ids[t + 1];
            counted++;
        }
    }
    return counted;
}
