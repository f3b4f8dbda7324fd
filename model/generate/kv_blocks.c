/* model/generate/kv_blocks.c - block manager of the paged KV cache (see
 * kv_blocks.h and docs/adr/0035). */
#include "model/generate/kv_blocks.h"

#include <stdlib.h>
#include <string.h>

loom_status loom_kv_blocks_init(loom_kv_blocks *kb, int n, int bs) {
    memset(kb, 0, sizeof *kb);
    if (n < 1 || bs < 1) return LOOM_ERR_INVALID_ARG;
    kb->n = n;
    kb->bs = bs;
    kb->n_buckets = 1;
    while (kb->n_buckets < 2 * n)
        kb->n_buckets *= 2;
    const size_t un = (size_t)n;
    kb->ref = calloc(un, sizeof *kb->ref);
    kb->hash = calloc(un, sizeof *kb->hash);
    kb->parent = calloc(un, sizeof *kb->parent);
    kb->tokens = malloc(un * (size_t)bs * sizeof *kb->tokens);
    kb->free_list = malloc(un * sizeof *kb->free_list);
    kb->prev = malloc(un * sizeof *kb->prev);
    kb->next = malloc(un * sizeof *kb->next);
    kb->chain = malloc(un * sizeof *kb->chain);
    kb->bucket = malloc((size_t)kb->n_buckets * sizeof *kb->bucket);
    if (!kb->ref || !kb->hash || !kb->parent || !kb->tokens || !kb->free_list || !kb->prev ||
        !kb->next || !kb->chain || !kb->bucket) {
        loom_kv_blocks_free(kb);
        return LOOM_ERR_OOM;
    }
    /* Lowest ids on top of the stack: a fresh cache fills the pool in order. */
    for (int i = 0; i < n; i++)
        kb->free_list[i] = n - 1 - i;
    kb->n_free = n;
    for (int i = 0; i < kb->n_buckets; i++)
        kb->bucket[i] = -1;
    kb->lru_head = kb->lru_tail = -1;
    return LOOM_OK;
}

void loom_kv_blocks_free(loom_kv_blocks *kb) {
    free(kb->ref);
    free(kb->hash);
    free(kb->parent);
    free(kb->tokens);
    free(kb->free_list);
    free(kb->prev);
    free(kb->next);
    free(kb->chain);
    free(kb->bucket);
    memset(kb, 0, sizeof *kb);
}

static void lru_unlink(loom_kv_blocks *kb, int32_t b) {
    if (kb->prev[b] >= 0)
        kb->next[kb->prev[b]] = kb->next[b];
    else
        kb->lru_head = kb->next[b];
    if (kb->next[b] >= 0)
        kb->prev[kb->next[b]] = kb->prev[b];
    else
        kb->lru_tail = kb->prev[b];
    kb->n_cached--;
}

static void lru_append(loom_kv_blocks *kb, int32_t b) {
    kb->prev[b] = kb->lru_tail;
    kb->next[b] = -1;
    if (kb->lru_tail >= 0)
        kb->next[kb->lru_tail] = b;
    else
        kb->lru_head = b;
    kb->lru_tail = b;
    kb->n_cached++;
}

void loom_kv_blocks_unregister(loom_kv_blocks *kb, int32_t b) {
    if (!kb->hash[b]) return;
    int32_t *link = &kb->bucket[kb->hash[b] & (uint64_t)(kb->n_buckets - 1)];
    while (*link >= 0 && *link != b)
        link = &kb->chain[*link];
    if (*link == b) *link = kb->chain[b];
    kb->hash[b] = 0;
}

int32_t loom_kv_blocks_alloc(loom_kv_blocks *kb) {
    int32_t b = -1;
    if (kb->n_free > 0) {
        b = kb->free_list[--kb->n_free];
    } else if (kb->lru_head >= 0) { /* evict the least recently used cached block */
        b = kb->lru_head;
        lru_unlink(kb, b);
        loom_kv_blocks_unregister(kb, b);
        kb->evictions++;
    }
    if (b >= 0) kb->ref[b] = 1;
    return b;
}

void loom_kv_blocks_retain(loom_kv_blocks *kb, int32_t b) {
    if (kb->ref[b] == 0) lru_unlink(kb, b); /* only hashed blocks are found with ref 0 */
    kb->ref[b]++;
}

void loom_kv_blocks_release(loom_kv_blocks *kb, int32_t b) {
    if (kb->ref[b] <= 0) return;
    if (--kb->ref[b] > 0) return;
    if (kb->hash[b])
        lru_append(kb, b);
    else
        kb->free_list[kb->n_free++] = b;
}

uint64_t loom_kv_blocks_hash(uint64_t parent, const int32_t *tokens, int bs) {
    /* FNV-1a over the parent hash and the ids, then a splitmix64 finish. */
    uint64_t h = 1469598103934665603ull ^ parent;
    for (int i = 0; i < bs; i++) {
        h ^= (uint32_t)tokens[i];
        h *= 1099511628211ull;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h ? h : 1;
}

int32_t loom_kv_blocks_lookup(const loom_kv_blocks *kb, uint64_t h, uint64_t parent,
                              const int32_t *tokens) {
    for (int32_t b = kb->bucket[h & (uint64_t)(kb->n_buckets - 1)]; b >= 0; b = kb->chain[b])
        if (kb->hash[b] == h && kb->parent[b] == parent &&
            memcmp(kb->tokens + (size_t)b * (size_t)kb->bs, tokens,
                   (size_t)kb->bs * sizeof *tokens) == 0)
            return b;
    return -1;
}

bool loom_kv_blocks_register(loom_kv_blocks *kb, int32_t b, uint64_t h, uint64_t parent,
                             const int32_t *tokens) {
    if (kb->hash[b] || loom_kv_blocks_lookup(kb, h, parent, tokens) >= 0) return false;
    kb->hash[b] = h;
    kb->parent[b] = parent;
    memcpy(kb->tokens + (size_t)b * (size_t)kb->bs, tokens, (size_t)kb->bs * sizeof *tokens);
    int32_t *head = &kb->bucket[h & (uint64_t)(kb->n_buckets - 1)];
    kb->chain[b] = *head;
    *head = b;
    return true;
}
