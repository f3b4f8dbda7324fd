/* model/tokenizer/tokenizer_export.c - the tokenizer.ggml.* arrays of a GGUF
 * file rebuilt from a tokenizer (loom export-gguf): tokens back in the GPT-2
 * byte-level alphabet, merges ordered by rank. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer/tok_core.h"

/* ---- export (GGUF tokenizer.ggml.*) ---- */

/* Byte-level encode n raw bytes into dst (room for 2n + 1): the inverse of
 * byte_level_decode. */
static void byte_level_encode(const uint8_t *p, size_t n, char *dst) {
    static int16_t b2u[256];
    static bool init;
    if (!init) { /* idempotent: concurrent first calls write the same values */
        int k = 0;
        for (int b = 0; b < 256; b++) {
            bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
            b2u[b] = (int16_t)(keep ? b : 256 + k++);
        }
        init = true;
    }
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = (uint32_t)b2u[p[i]];
        if (cp < 0x80) {
            dst[j++] = (char)cp;
        } else {
            dst[j++] = (char)(0xc0 | (cp >> 6));
            dst[j++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    dst[j] = 0;
}

void loom_tok_export_free(loom_tok_export_data *d) {
    if (!d) return;
    free(d->strings);
    free(d->tokens);
    free(d->types);
    free(d->merges);
    memset(d, 0, sizeof *d);
}

static int slot_rank_cmp(const void *a, const void *b) {
    const tok_pair_slot *x = *(const tok_pair_slot *const *)a,
                        *y = *(const tok_pair_slot *const *)b;
    return x->rank < y->rank ? -1 : x->rank > y->rank;
}

loom_status loom_tok_export(const loom_tokenizer *t, loom_tok_export_data *d, char *err,
                            size_t err_n) {
    memset(d, 0, sizeof *d);
    if (t->spm)
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "tokenizer: writing a SentencePiece (llama) vocabulary is not "
                               "supported");
    size_t n_merges = 0;
    for (size_t i = 0; i <= t->pmap_mask && t->pmap; i++)
        n_merges += t->pmap[i].key != TOK_EMPTY_KEY;
    /* Upper bound of the string bytes: each byte becomes at most 2. */
    size_t total = 0;
    for (size_t i = 0; i < t->n_vocab; i++)
        total += (t->len[i] == UINT32_MAX ? 0 : 2 * (size_t)t->len[i]) + 1;
    const tok_pair_slot **order = malloc((n_merges ? n_merges : 1) * sizeof *order);
    for (size_t i = 0, k = 0; order && i <= t->pmap_mask && t->pmap; i++)
        if (t->pmap[i].key != TOK_EMPTY_KEY) order[k++] = &t->pmap[i];
    if (order) {
        for (size_t k = 0; k < n_merges; k++) {
            uint32_t l = (uint32_t)(order[k]->key >> 32), r = (uint32_t)order[k]->key;
            total += 2 * ((size_t)t->len[l] + t->len[r]) + 2;
        }
    }
    d->strings = malloc(total + 1);
    d->tokens = calloc(t->n_vocab, sizeof *d->tokens);
    d->types = calloc(t->n_vocab, sizeof *d->types);
    d->merges = calloc(n_merges ? n_merges : 1, sizeof *d->merges);
    if (!order || !d->strings || !d->tokens || !d->types || !d->merges) {
        free(order);
        loom_tok_export_free(d);
        return loom_model_fail(err, err_n, LOOM_ERR_OOM, "tokenizer: out of memory");
    }
    char *p = d->strings;
    for (size_t i = 0; i < t->n_vocab; i++) {
        d->types[i] = t->type[i];
        d->tokens[i] = p;
        if (t->len[i] == UINT32_MAX) { /* unassigned id: GGUF needs a string */
            *p++ = 0;
            d->types[i] = LOOM_TOKEN_UNUSED;
            continue;
        }
        const uint8_t *b = (const uint8_t *)t->blob + t->off[i];
        if (t->type[i] == LOOM_TOKEN_NORMAL || t->type[i] == LOOM_TOKEN_UNDEFINED ||
            t->type[i] == LOOM_TOKEN_BYTE) {
            byte_level_encode(b, t->len[i], p);
        } else {
            memcpy(p, b, t->len[i]);
            p[t->len[i]] = 0;
        }
        p += strlen(p) + 1;
    }
    qsort(order, n_merges, sizeof *order, slot_rank_cmp);
    for (size_t k = 0; k < n_merges; k++) {
        uint32_t l = (uint32_t)(order[k]->key >> 32), r = (uint32_t)order[k]->key;
        d->merges[k] = p;
        byte_level_encode((const uint8_t *)t->blob + t->off[l], t->len[l], p);
        p += strlen(p);
        *p++ = ' ';
        byte_level_encode((const uint8_t *)t->blob + t->off[r], t->len[r], p);
        p += strlen(p) + 1;
    }
    free(order);
    d->n_tokens = t->n_vocab;
    d->n_merges = n_merges;
    d->pre_name = loom_pretok_name(t->pre);
    d->pattern = loom_pretok_pattern(t->pre);
    d->ignore_merges = t->ignore_merges;
    d->add_bos = loom_tokenizer_add_bos(t);
    return LOOM_OK;
}

void loom_tok_byte_level_encode(const uint8_t *p, size_t n, char *dst) {
    byte_level_encode(p, n, dst);
}
