/* model/generate/kv_cache.c - the KV cache of a loom_model: its backend, its
 * buffers (K and V of every layer, [kv_dim, n_ctx, n_slots] each) and the
 * per-slot positions generation advances. The loader allocates it
 * (arch/load.c, after the weights); arch/llama.c writes it in place with
 * set_rows (docs/adr/0011-kv-cache-in-place-writes.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    const int64_t kv_ne[4] = {kv_dim, m->n_ctx, m->n_slots, 1};
    /* K and V of every layer: 2 * n_layers tensors of kv_one bytes, packed
     * like the weights (several buffers only when the backend caps them),
     * one pack per device; at[i].buf indexes m->kvbufs. */
    const size_t kv_one = loom_dtype_nbytes(m->kv_dtype, kv_dim * m->n_ctx * m->n_slots);
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
                "model: KV cache tensor 'cache_k.0' ([%lld, %lld, %d] %s, %zu bytes) is larger "
                "than the %s backend's maximum buffer size (%zu bytes); use a smaller context "
                "or fewer slots",
                (long long)kv_dim, (long long)m->n_ctx, m->n_slots, loom_dtype_name(m->kv_dtype),
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
    m->slot_pos = calloc((size_t)m->n_slots, sizeof *m->slot_pos);
    if (!m->slot_pos) return loom_model_fail(err, err_n, LOOM_ERR_OOM, "model: out of memory");
    return LOOM_OK;
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
    if (slot >= 0 && slot < m->n_slots) m->slot_pos[slot] = 0;
}
loom_status loom_model_slot_truncate(loom_model *m, int slot, int64_t n) {
    if (slot < 0 || slot >= m->n_slots || n < 0 || n > m->slot_pos[slot])
        return LOOM_ERR_INVALID_ARG;
    m->slot_pos[slot] = n;
    return LOOM_OK;
}
