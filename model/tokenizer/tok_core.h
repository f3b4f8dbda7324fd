/* model/tokenizer/tok_core.h - the byte-level BPE tokenizer's representation,
 * shared by its three sources: tokenizer.c (construction, lookups, decode),
 * tokenizer_encode.c (encode) and tokenizer_export.c (GGUF arrays). Private
 * to model/tokenizer/; the hash-map probes are inline because encode's inner
 * loop calls them per symbol pair. */
#ifndef LOOM_TOK_CORE_H
#define LOOM_TOK_CORE_H

#include <string.h>

#include "model/tokenizer/tok_internal.h"

typedef struct tok_pair_slot {
    uint64_t key; /* (left << 32) | right; TOK_EMPTY_KEY when free */
    uint32_t rank;
    int32_t new_id;
} tok_pair_slot;

#define TOK_EMPTY_KEY UINT64_MAX

typedef struct tok_special {
    int32_t id;
    uint32_t len;
    const char *bytes; /* into blob */
    uint8_t type;
} tok_special;

struct loom_tokenizer {
    size_t n_vocab;
    uint32_t *off; /* per id: offset of its raw bytes in blob */
    uint32_t *len; /* per id: byte length; UINT32_MAX = unassigned id */
    uint8_t *type; /* per id: loom_token_type */
    char *blob;    /* all token bytes, back to back */
    int32_t *vmap; /* ordinary tokens: slot -> id, -1 = free */
    size_t vmap_mask;
    tok_pair_slot *pmap; /* merges */
    size_t pmap_mask;
    int32_t byte_id[256]; /* id of each single-byte token */
    tok_special *spec;    /* non-ordinary tokens sorted by (first byte, length desc) */
    size_t n_spec;
    uint32_t spec_lo[256], spec_hi[256]; /* range in spec per first byte */
    loom_pretok *pre;
    bool ignore_merges;
    bool add_bos; /* the file's metadata asks for BOS (loom_tokenizer_add_bos) */
    int32_t bos, eos, eot;
    char *chat_template; /* the model's template text (loom_tokenizer_chat_template), or NULL */
    /* SentencePiece BPE (GGUF tokenizer.ggml.model "llama"; tokenizer_spm.c):
     * symbols start as characters, not bytes; a character without a token
     * falls back to its bytes' <0xXX> tokens (byte_tok); no regex split. */
    bool spm;
    uint8_t spm_prefix; /* loom_tok_spm_prefix: where a "▁" goes in front of a segment */
    int32_t byte_tok[256];
};

/* ---- hash-map probes ---- */

static inline uint64_t hash_bytes(const uint8_t *p, size_t n) {
    /* FNV-1a over 8-byte words with a multiply-xorshift finish: token strings
     * are short, so simplicity beats a long-input hash here. */
    uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    h = (h ^ w) * 0x9e3779b97f4a7c15ull;
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    return h;
}

static inline uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static inline uint64_t pair_key(int32_t a, int32_t b) {
    return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
}

static inline int32_t vmap_find(const loom_tokenizer *t, const uint8_t *p, size_t n) {
    size_t i = (size_t)hash_bytes(p, n) & t->vmap_mask;
    for (;;) {
        int32_t id = t->vmap[i];
        if (id < 0) return -1;
        if (t->len[id] == n && memcmp(t->blob + t->off[id], p, n) == 0) return id;
        i = (i + 1) & t->vmap_mask;
    }
}

static inline const tok_pair_slot *pmap_find(const loom_tokenizer *t, uint64_t key) {
    size_t i = (size_t)hash_u64(key) & t->pmap_mask;
    for (;;) {
        const tok_pair_slot *s = &t->pmap[i];
        if (s->key == key) return s;
        if (s->key == TOK_EMPTY_KEY) return NULL;
        i = (i + 1) & t->pmap_mask;
    }
}

#endif
