/* model/generate/kv_blocks.h - the block manager of the paged KV cache
 * (docs/adr/0035): reference counts, a free list, and the prefix cache.
 *
 * Blocks are indices 0..n-1 into every layer's K/V pool (block b holds pool
 * rows b*bs .. b*bs+bs-1). A block is in exactly one state:
 *   - in use: ref > 0 (one reference per sequence whose table holds it);
 *   - cached: ref == 0 and hashed (its contents are a full block of known
 *     tokens after a known prefix): on an LRU list, reusable by a prefix hit
 *     and evicted (least recently released first) when no block is free;
 *   - free: ref == 0 and not hashed.
 * A full block is hashed by (hash of the previous block of its sequence,
 * its bs token ids) — vLLM's prefix caching — and found again only if
 * parent hash and tokens compare equal (no trust in the 64-bit hash alone).
 * Not thread-safe: the model's owner calls it. */
#ifndef LOOM_MODEL_KV_BLOCKS_H
#define LOOM_MODEL_KV_BLOCKS_H

#include <stdbool.h>
#include <stdint.h>

#include "loom/status.h"

typedef struct loom_kv_blocks {
    int n, bs;
    int32_t *ref;
    uint64_t *hash, *parent; /* hash 0: not hashed */
    int32_t *tokens;         /* [n][bs]: the ids of a hashed block */
    int32_t *free_list;      /* stack of free blocks */
    int n_free;
    int32_t *prev, *next; /* LRU list of cached blocks (-1 ends) */
    int lru_head, lru_tail, n_cached;
    int32_t *bucket, *chain; /* hash table: bucket heads and per-block chain */
    int n_buckets;           /* a power of two */
    int64_t hits, evictions; /* statistics */
} loom_kv_blocks;

loom_status loom_kv_blocks_init(loom_kv_blocks *kb, int n, int bs);
void loom_kv_blocks_free(loom_kv_blocks *kb);

/* A block with ref 1: a free one, else the least recently cached one
 * (evicted from the prefix cache); -1 when every block is in use. */
int32_t loom_kv_blocks_alloc(loom_kv_blocks *kb);
void loom_kv_blocks_retain(loom_kv_blocks *kb, int32_t b);
void loom_kv_blocks_release(loom_kv_blocks *kb, int32_t b);

/* The hash of a full block of bs tokens after a block hashed parent (0 for
 * the first block of a sequence); never 0. */
uint64_t loom_kv_blocks_hash(uint64_t parent, const int32_t *tokens, int bs);
/* The cached or in-use block with this content, or -1. */
int32_t loom_kv_blocks_lookup(const loom_kv_blocks *kb, uint64_t h, uint64_t parent,
                              const int32_t *tokens);
/* Record block b (in use, just filled) as holding tokens after parent;
 * false when another block already holds that content (b stays unhashed). */
bool loom_kv_blocks_register(loom_kv_blocks *kb, int32_t b, uint64_t h, uint64_t parent,
                             const int32_t *tokens);
/* Forget b's content (it is about to be overwritten). */
void loom_kv_blocks_unregister(loom_kv_blocks *kb, int32_t b);

/* Blocks a new allocation can take: free plus cached. */
static inline int loom_kv_blocks_available(const loom_kv_blocks *kb) {
    return kb->n_free + kb->n_cached;
}

#endif
