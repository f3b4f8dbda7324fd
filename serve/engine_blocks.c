/* serve/engine_blocks.c - the engine's use of the paged KV cache (docs/adr/
 * 0035): prefix reuse at admission, room for every forward, and
 * preemption (vLLM's recompute policy) when the block pool runs short.
 *
 * Preemption: the newest running request (highest admission order, kept
 * across preemptions so a resumed request keeps its place) gives its slot
 * back: its blocks are released (its full blocks stay in the prefix cache,
 * so resuming usually re-attaches most of them) and it goes back to the
 * head of the queue with its sampler. When it is admitted again, the prompt
 * and the tokens it generated so far are fed again and generation goes on
 * from there: nothing is dropped and, with greedy sampling, nothing changes
 * in its output. Only a request that cannot fit even alone ends early. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "serve/engine_internal.h"

bool loom_engine_req_push_tok(loom_engine_req *r, int32_t tok) {
    if (r->n_toks == r->toks_cap) {
        size_t c = r->toks_cap ? 2 * r->toks_cap : 64;
        int32_t *t = realloc(r->toks, c * sizeof *t);
        if (!t) return false;
        r->toks = t;
        r->toks_cap = c;
    }
    r->toks[r->n_toks++] = tok;
    return true;
}

static int available(const loom_engine *e) {
    loom_kv_block_stats st;
    loom_model_kv_block_stats(e->m, &st);
    return st.n_free + st.n_cached;
}

/* The running sequence admitted last, or -1. */
static int newest(const loom_engine *e) {
    int v = -1;
    for (int i = 0; i < e->n_slots; i++)
        if (e->seqs[i].r && (v < 0 || e->seqs[i].order > e->seqs[v].order)) v = i;
    return v;
}

static void preempt(loom_engine *e, int i) {
    seq *q = &e->seqs[i];
    loom_engine_req *r = q->r;
    r->saved_s = q->s;
    loom_model_slot_clear(e->m, i);
    memset(q, 0, sizeof *q);
    atomic_fetch_sub(&e->n_running, 1);
    atomic_fetch_add(&e->preemptions, 1);
    pthread_mutex_lock(&e->mu);
    r->next = e->wait_head;
    e->wait_head = r;
    if (!e->wait_tail) e->wait_tail = r;
    e->n_waiting++;
    pthread_mutex_unlock(&e->mu);
}

bool loom_engine_blocks_admit_ok(loom_engine *e, const loom_engine_req *r) {
    if (atomic_load(&e->n_running) == 0) return true; /* alone it can always try */
    loom_kv_block_stats st;
    loom_model_kv_block_stats(e->m, &st);
    const size_t first = r->n_toks < (size_t)e->chunk ? r->n_toks : (size_t)e->chunk;
    int need = (int)((first + (size_t)st.block_size - 1) / (size_t)st.block_size);
    for (int i = 0; i < e->n_slots; i++)
        if (e->seqs[i].r) need++; /* each running sequence may open a block */
    return st.n_free + st.n_cached >= need;
}

size_t loom_engine_blocks_attach_prefix(loom_engine *e, int i, const int32_t *toks, size_t n) {
    int64_t reused = 0;
    if (e->no_prefix_cache) return 0;
    if (loom_model_slot_reuse_prefix(e->m, i, toks, (int64_t)n, &reused) != LOOM_OK) reused = 0;
    atomic_fetch_add(&e->prefix_tokens, (long long)reused);
    return (size_t)reused;
}

void loom_engine_blocks_room_decode(loom_engine *e) {
    for (;;) {
        int need = 0, n = 0;
        for (int i = 0; i < e->n_slots; i++)
            if (e->seqs[i].r && e->seqs[i].decoding) {
                need += loom_model_slot_blocks_needed(e->m, i, 1);
                n++;
            }
        if (!n || need <= available(e)) return;
        if (atomic_load(&e->n_running) > 1) {
            preempt(e, newest(e));
            continue;
        }
        /* One sequence holds the whole pool: it cannot grow any more. */
        for (int i = 0; i < e->n_slots; i++)
            if (e->seqs[i].r && e->seqs[i].decoding &&
                loom_model_slot_blocks_needed(e->m, i, 1) > 0)
                loom_engine_finish_seq(e, i, LOOM_FINISH_LENGTH, NULL);
        return;
    }
}

bool loom_engine_blocks_room_prefill(loom_engine *e, int *idx, int *k, int len) {
    int need = 0;
    for (int j = 0; j < *k; j++)
        need += loom_model_slot_blocks_needed(e->m, idx[j], len);
    const int av = available(e);
    if (need <= av) return true;
    if (*k > 1 && loom_model_slot_blocks_needed(e->m, idx[0], len) <= av) {
        *k = 1;
        return true;
    }
    if (atomic_load(&e->n_running) > 1) {
        preempt(e, newest(e));
        return false;
    }
    loom_engine_finish_seq(e, idx[0], LOOM_FINISH_ABORT,
                           "the prompt needs more KV cache blocks than the pool holds");
    return false;
}

void loom_engine_blocks_publish(loom_engine *e) {
    loom_kv_block_stats st;
    loom_model_kv_block_stats(e->m, &st);
    atomic_store(&e->kv_block_size, st.block_size);
    atomic_store(&e->kv_blocks, st.n_blocks);
    atomic_store(&e->kv_used, st.n_used);
    atomic_store(&e->kv_cached, st.n_cached);
}

void loom_engine_blocks_stats(loom_engine *e, loom_engine_stats *s) {
    s->kv_block_size = atomic_load(&e->kv_block_size);
    s->kv_blocks = atomic_load(&e->kv_blocks);
    s->kv_blocks_used = atomic_load(&e->kv_used);
    s->kv_blocks_cached = atomic_load(&e->kv_cached);
    s->prefix_tokens = atomic_load(&e->prefix_tokens);
    s->preemptions = atomic_load(&e->preemptions);
}
