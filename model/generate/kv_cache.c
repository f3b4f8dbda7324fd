/* model/generate/kv_cache.c - the KV cache of a loom_model: its backend, its
 * buffers (K and V block pools of every layer, [kv_dim, n_blocks * bs]
 * each), the per-slot block tables and positions generation advances, and
 * prefix reuse through the block manager (kv_blocks.c, docs/adr/0035). The
 * loader allocates it (arch/load.c, after the weights); arch/llama.c writes
 * it in place with set_rows (docs/adr/0011-kv-cache-in-place-writes.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/generate/kv_blocks.h"
#include "model/model_internal.h"

/* Does backend be run set_rows into a destination of this dtype? */
static bool be_has_set_rows(loom_backend *be, loom_dtype kv) {
    loom_graph *g = NULL;
    if (loom_graph_new(&g) != LOOM_OK) return false;
    loom_tensor *dst = loom_tensor_2d(g, kv, 64, 4);
    loom_tensor *src = loom_tensor_2d(g, LOOM_F32, 64, 1);
    loom_tensor *rows = loom_tensor_1d(g, LOOM_I32, 1);
    loom_tensor *r = loom_set_rows(g, dst, src, rows);
    bool ok = r && be->iface->supports(be, r);
    loom_graph_free(g);
    return ok;
}

int64_t loom_kv_cache_n_ctx(const loom_model_config *c, const loom_model_params *p) {
    return p->n_ctx > 0 ? p->n_ctx : (c->max_ctx < 4096 ? c->max_ctx : 4096);
}

/* Each layer's cache lives on its layer's device (m->layer_dev, docs/adr/
 * 0030), or on the cpu when that device has no set_rows for the cache's
 * dtype; one pack of buffers per device, in layer order. */
loom_status loom_kv_cache_alloc(loom_model *m, const loom_model_params *p, char *err,
                                size_t err_n) {
    const loom_model_config *c = &m->cfg;
    m->kv_dtype = p->kv_dtype;
    int cpu_dev = 0;
    while (m->devs[cpu_dev] != m->cpu)
        cpu_dev++;
    bool has[LOOM_MAX_DEVICES] = {0}, used[LOOM_MAX_DEVICES] = {0};
    for (int d = 0; d < m->n_devs; d++)
        has[d] = be_has_set_rows(m->devs[d], m->kv_dtype);
    for (int64_t l = 0; l < c->n_layers; l++) {
        m->kv_dev[l] = has[m->layer_dev[l]] ? m->layer_dev[l] : cpu_dev;
        used[m->kv_dev[l]] = true;
    }
    m->kv_be = c->n_layers > 0 ? m->devs[m->kv_dev[c->n_layers - 1]] : m->cpu;
    size_t kn = 0;
    m->kv_names[0] = '\0';
    for (int d = 0; d < m->n_devs; d++)
        if (used[d] && kn < sizeof m->kv_names)
            kn += (size_t)snprintf(m->kv_names + kn, sizeof m->kv_names - kn, "%s%s", kn ? "+" : "",
                                   m->devs[d]->iface->name);
    m->n_ctx = loom_kv_cache_n_ctx(c, p);
    m->n_slots = p->n_slots > 0 ? p->n_slots : 1;
    if (m->n_slots > LOOM_LLAMA_MAX_SEQ)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "model: at most %d slots",
                               LOOM_LLAMA_MAX_SEQ);
    const int64_t kv_dim = c->n_kv_heads * c->head_dim;
    if (m->kv_dtype == LOOM_Q8_0 && kv_dim % 32 != 0)
        return loom_model_fail(
            err, err_n, LOOM_ERR_INVALID_ARG,
            "model: a q8_0 KV cache needs n_kv_heads*head_dim (%lld) divisible by 32",
            (long long)kv_dim);
    if (p->kv_block_size < 0 || p->n_kv_blocks < 0)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "model: kv_block_size and n_kv_blocks must be >= 0");
    m->kv_bs = p->kv_block_size > 0 ? p->kv_block_size : 16;
    m->max_blk = (int)((m->n_ctx + m->kv_bs - 1) / m->kv_bs);
    m->kv_nblk = p->n_kv_blocks > 0 ? p->n_kv_blocks : m->n_slots * m->max_blk;
    const int64_t kv_ne[4] = {kv_dim, (int64_t)m->kv_nblk * m->kv_bs, 1, 1};
    /* K and V of every layer: 2 * n_layers tensors of kv_one bytes, packed
     * like the weights (several buffers only when the backend caps them),
     * one pack per device; at[i].buf indexes m->kvbufs. */
    const size_t kv_one = loom_dtype_nbytes(m->kv_dtype, kv_dim * kv_ne[1]);
    const int n_kv = (int)(2 * c->n_layers);
    loom_place *at = calloc((size_t)n_kv + 1, sizeof *at);
    loom_status st = at ? LOOM_OK : LOOM_ERR_OOM;
    if (st != LOOM_OK) loom_model_fail(err, err_n, st, "model: out of memory");
    for (int d = 0; d < m->n_devs && st == LOOM_OK; d++) {
        if (!used[d]) continue;
        loom_backend *be = m->devs[d];
        loom_pack pk = {.max = loom_backend_max_buffer(be)};
        for (int i = 0; i < n_kv && st == LOOM_OK; i++)
            if (m->kv_dev[i / 2] == d) st = loom_pack_add(&pk, kv_one, &at[i]);
        if (st == LOOM_OK) st = loom_pack_finish(&pk);
        if (st == LOOM_ERR_UNSUPPORTED)
            loom_model_fail(
                err, err_n, st,
                "model: KV cache tensor 'cache_k.0' ([%lld, %lld] %s, %zu bytes) is larger "
                "than the %s backend's maximum buffer size (%zu bytes); use a smaller context "
                "or fewer slots",
                (long long)kv_dim, (long long)kv_ne[1], loom_dtype_name(m->kv_dtype),
                kv_one, be->iface->name, pk.max);
        else if (st != LOOM_OK)
            loom_model_fail(err, err_n, st, "model: out of memory");
        loom_buffer **bufs = NULL;
        int n_bufs = 0;
        const int base = m->n_kvbufs;
        if (st == LOOM_OK)
            st = loom_alloc_buffers(be, pk.sizes, pk.n, &bufs, &n_bufs, "the KV cache", err, err_n);
        if (n_bufs) { /* append, so loom_model_free frees them even after a failure */
            loom_buffer **all = realloc(m->kvbufs, (size_t)(base + n_bufs) * sizeof *all);
            if (!all) {
                for (int k = 0; k < n_bufs; k++)
                    loom_buffer_free(bufs[k]);
                st = loom_model_fail(err, err_n, LOOM_ERR_OOM, "model: out of memory");
            } else {
                memcpy(all + base, bufs, (size_t)n_bufs * sizeof *bufs);
                m->kvbufs = all;
                m->n_kvbufs = base + n_bufs;
            }
        }
        free(bufs);
        for (int i = 0; i < n_kv && st == LOOM_OK; i++)
            if (m->kv_dev[i / 2] == d) at[i].buf += base;
        loom_pack_free(&pk);
    }
    for (int64_t i = 0; i < c->n_layers && st == LOOM_OK; i++) {
        char nk[32], nv[32];
        snprintf(nk, sizeof nk, "cache_k.%lld", (long long)i);
        snprintf(nv, sizeof nv, "cache_v.%lld", (long long)i);
        const loom_place *k = &at[2 * i], *v = &at[2 * i + 1];
        m->layers[i].k_cache =
            loom_bound_leaf(m->wg, m->kv_dtype, kv_ne, m->kvbufs[k->buf], k->off, nk);
        m->layers[i].v_cache =
            loom_bound_leaf(m->wg, m->kv_dtype, kv_ne, m->kvbufs[v->buf], v->off, nv);
        if (!m->layers[i].k_cache || !m->layers[i].v_cache)
            st = loom_model_fail(err, err_n, LOOM_ERR_OOM, "model: out of memory");
    }
    free(at);
    if (st != LOOM_OK) return st;
    const size_t ns = (size_t)m->n_slots;
    m->slot_pos = calloc(ns, sizeof *m->slot_pos);
    m->slot_nblk = calloc(ns, sizeof *m->slot_nblk);
    m->slot_tbl = calloc(ns * (size_t)m->max_blk, sizeof *m->slot_tbl);
    m->slot_bhash = calloc(ns * (size_t)m->max_blk, sizeof *m->slot_bhash);
    m->slot_tok = calloc(ns * (size_t)m->n_ctx, sizeof *m->slot_tok);
    m->blocks = calloc(1, sizeof *m->blocks);
    if (!m->slot_pos || !m->slot_nblk || !m->slot_tbl || !m->slot_bhash || !m->slot_tok ||
        !m->blocks || loom_kv_blocks_init(m->blocks, m->kv_nblk, m->kv_bs) != LOOM_OK)
        return loom_model_fail(err, err_n, LOOM_ERR_OOM, "model: out of memory");
    return LOOM_OK;
}

void loom_kv_cache_free(loom_model *m) {
    if (m->blocks) loom_kv_blocks_free(m->blocks);
    free(m->blocks);
    free(m->slot_pos);
    free(m->slot_nblk);
    free(m->slot_tbl);
    free(m->slot_bhash);
    free(m->slot_tok);
}

loom_status loom_kv_cache_reserve(loom_model *m, int slot, int64_t upto, char *err, size_t err_n) {
    int32_t *tbl = m->slot_tbl + (size_t)slot * (size_t)m->max_blk;
    while ((int64_t)m->slot_nblk[slot] * m->kv_bs < upto) {
        int32_t b = loom_kv_blocks_alloc(m->blocks);
        if (b < 0)
            return loom_model_fail(err, err_n, LOOM_ERR_OOM,
                                   "model: the KV cache is out of blocks (%d blocks of %d tokens "
                                   "all in use); free a slot or load with more blocks",
                                   m->kv_nblk, m->kv_bs);
        m->slot_bhash[(size_t)slot * (size_t)m->max_blk + (size_t)m->slot_nblk[slot]] = 0;
        tbl[m->slot_nblk[slot]++] = b;
    }
    return LOOM_OK;
}

/* Hash and register every full block of slot below position end that is
 * not registered yet (their tokens are known and their rows written). */
static void hash_full_blocks(loom_model *m, int slot, int64_t end) {
    const size_t base = (size_t)slot * (size_t)m->max_blk;
    const int32_t *toks = m->slot_tok + (size_t)slot * (size_t)m->n_ctx;
    for (int64_t k = 0; (k + 1) * m->kv_bs <= end; k++) {
        if (m->slot_bhash[base + (size_t)k]) continue;
        const uint64_t parent = k ? m->slot_bhash[base + (size_t)k - 1] : 0;
        if (k && !parent) return; /* a chain broken by an unregistered block */
        const int32_t *bt = toks + k * m->kv_bs;
        const uint64_t h = loom_kv_blocks_hash(parent, bt, m->kv_bs);
        const int32_t b = m->slot_tbl[base + (size_t)k];
        /* Registered now, or another block already holds this content: the
         * chain goes on with the same hash either way. */
        loom_kv_blocks_register(m->blocks, b, h, parent, bt);
        m->slot_bhash[base + (size_t)k] = h;
    }
}

void loom_kv_cache_commit(loom_model *m, int slot, int64_t pos, const int32_t *tokens, int64_t n) {
    memcpy(m->slot_tok + (size_t)slot * (size_t)m->n_ctx + pos, tokens, (size_t)n * sizeof *tokens);
    hash_full_blocks(m, slot, pos + n);
}

static void release_from(loom_model *m, int slot, int keep) {
    const size_t base = (size_t)slot * (size_t)m->max_blk;
    for (int k = keep; k < m->slot_nblk[slot]; k++) {
        loom_kv_blocks_release(m->blocks, m->slot_tbl[base + (size_t)k]);
        m->slot_bhash[base + (size_t)k] = 0;
    }
    if (m->slot_nblk[slot] > keep) m->slot_nblk[slot] = keep;
}

/* ---------------- accessors (loom/model.h) ---------------- */

const char *loom_model_kv_backend_name(const loom_model *m) {
    return m->kv_names[0] ? m->kv_names : m->kv_be->iface->name;
}
int64_t loom_model_n_ctx(const loom_model *m) {
    return m->n_ctx;
}
int loom_model_n_slots(const loom_model *m) {
    return m->n_slots;
}
int64_t loom_model_slot_pos(const loom_model *m, int slot) {
    return slot >= 0 && slot < m->n_slots ? m->slot_pos[slot] : -1;
}
void loom_model_slot_clear(loom_model *m, int slot) {
    if (slot < 0 || slot >= m->n_slots) return;
    release_from(m, slot, 0);
    m->slot_pos[slot] = 0;
}
loom_status loom_model_slot_truncate(loom_model *m, int slot, int64_t n) {
    if (slot < 0 || slot >= m->n_slots || n < 0 || n > m->slot_pos[slot])
        return LOOM_ERR_INVALID_ARG;
    const int keep = (int)((n + m->kv_bs - 1) / m->kv_bs);
    if (n % m->kv_bs != 0 && keep <= m->slot_nblk[slot]) {
        /* The block holding position n will be overwritten from there on. */
        const size_t at = (size_t)slot * (size_t)m->max_blk + (size_t)keep - 1;
        const int32_t b = m->slot_tbl[at];
        if (m->blocks->ref[b] > 1) return LOOM_ERR_UNSUPPORTED;
        if (m->slot_bhash[at]) {
            loom_kv_blocks_unregister(m->blocks, b);
            m->slot_bhash[at] = 0;
        }
    }
    release_from(m, slot, keep);
    m->slot_pos[slot] = n;
    return LOOM_OK;
}

void loom_model_kv_block_stats(const loom_model *m, loom_kv_block_stats *out) {
    memset(out, 0, sizeof *out);
    if (!m || !m->blocks) return;
    const loom_kv_blocks *kb = m->blocks;
    out->block_size = kb->bs;
    out->n_blocks = kb->n;
    out->n_free = kb->n_free;
    out->n_cached = kb->n_cached;
    out->n_used = kb->n - kb->n_free - kb->n_cached;
    out->prefix_hits = kb->hits;
    out->evictions = kb->evictions;
}

int loom_model_slot_blocks_needed(const loom_model *m, int slot, int64_t n_tokens) {
    if (!m || slot < 0 || slot >= m->n_slots || n_tokens <= 0) return 0;
    const int64_t need = (m->slot_pos[slot] + n_tokens + m->kv_bs - 1) / m->kv_bs;
    return need > m->slot_nblk[slot] ? (int)(need - m->slot_nblk[slot]) : 0;
}

loom_status loom_model_slot_reuse_prefix(loom_model *m, int slot, const int32_t *tokens,
                                         int64_t n, int64_t *n_reused) {
    if (n_reused) *n_reused = 0;
    if (!m || slot < 0 || slot >= m->n_slots || (!tokens && n > 0) || n < 0 ||
        m->slot_pos[slot] != 0 || m->slot_nblk[slot] != 0)
        return LOOM_ERR_INVALID_ARG;
    const size_t base = (size_t)slot * (size_t)m->max_blk;
    const int bs = m->kv_bs;
    uint64_t parent = 0;
    int k = 0;
    /* Whole blocks, leaving at least the last token to compute. */
    for (; (int64_t)(k + 1) * bs <= n - 1 && k < m->max_blk; k++) {
        const int32_t *bt = tokens + (size_t)k * (size_t)bs;
        const uint64_t h = loom_kv_blocks_hash(parent, bt, bs);
        const int32_t b = loom_kv_blocks_lookup(m->blocks, h, parent, bt);
        if (b < 0) break;
        loom_kv_blocks_retain(m->blocks, b);
        m->slot_tbl[base + (size_t)k] = b;
        m->slot_bhash[base + (size_t)k] = h;
        m->blocks->hits++;
        parent = h;
    }
    m->slot_nblk[slot] = k;
    m->slot_pos[slot] = (int64_t)k * bs;
    memcpy(m->slot_tok + (size_t)slot * (size_t)m->n_ctx, tokens,
           (size_t)m->slot_pos[slot] * sizeof *tokens);
    if (n_reused) *n_reused = m->slot_pos[slot];
    return LOOM_OK;
}
