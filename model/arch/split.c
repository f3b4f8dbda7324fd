/* model/arch/split.c - the loader's side of a layer split (docs/adr/0030):
 * which devices a load uses (--devices, else the run backend and the cpu),
 * how much memory each has (device_info, capped by
 * $LOOM_DEVICE_MEMORY_LIMIT), the sizes the plan is made from, and the plan
 * itself (model/placement.c decides; this file only gathers the numbers).
 * arch/load.c places each weight on the device the plan gives its layer;
 * generate/kv_cache.c does the same for the KV cache; arch/llama.c pins
 * each layer's nodes to that device. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"

/* $LOOM_DEVICE_MEMORY_LIMIT: bytes with an optional K, M or G suffix
 * (powers of 1024); 0 when unset. Lets tests (and users who share a GPU)
 * plan against less memory than the device reports. */
static loom_status memory_limit(size_t *out, char *err, size_t err_n) {
    *out = 0;
    const char *s = getenv("LOOM_DEVICE_MEMORY_LIMIT");
    if (!s || !*s) return LOOM_OK;
    char *end = NULL;
    errno = 0;
    unsigned long long v = isdigit((unsigned char)s[0]) ? strtoull(s, &end, 10) : 0;
    unsigned long long mul = 1;
    if (end && *end && !end[1]) {
        mul = *end == 'K' ? 1ull << 10 : *end == 'M' ? 1ull << 20 : *end == 'G' ? 1ull << 30 : 0;
        if (mul) end++;
    }
    if (!end || end == s || *end || errno == ERANGE || !mul || v > SIZE_MAX / mul || v == 0)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "model: LOOM_DEVICE_MEMORY_LIMIT='%s' is not a byte count above 0 "
                               "(e.g. 8000000, 512M or 20G)",
                               s);
    *out = (size_t)(v * mul);
    return LOOM_OK;
}

static loom_status add_device(loom_model *m, loom_backend *be, char *err, size_t err_n) {
    for (int i = 0; i < m->n_devs; i++)
        if (m->devs[i] == be) return LOOM_OK;
    if (m->n_devs == LOOM_MAX_DEVICES)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "model: more than %d devices",
                               LOOM_MAX_DEVICES);
    m->devs[m->n_devs++] = be;
    return LOOM_OK;
}

/* Registry entries of backend kind `name` (its devices, ADR 0042). */
static int devices_of(const char *name) {
    int n = 0;
    for (int i = 0; i < loom_registry_count(); i++)
        n += strcmp(loom_registry_get(i)->iface->name, name) == 0;
    return n;
}

loom_status loom_split_devices(loom_model *m, const loom_model_params *p, char *err, size_t err_n) {
    m->n_devs = 0;
    int n_listed = 0; /* devices named by --devices (0: none given) */
    if (p->split == LOOM_SPLIT_LAYER && p->devices && p->devices[0]) {
        loom_device_ref refs[LOOM_MAX_DEVICES];
        int n = 0;
        char perr[256];
        if (loom_split_parse_devices(p->devices, refs, &n, perr, sizeof perr) != LOOM_OK)
            return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "model: --devices: %s", perr);
        for (int i = 0; i < n; i++) {
            /* "vulkan:1" is the registry's name of device 1 of "vulkan"
             * (docs/adr/0042); "vulkan" and "vulkan:0" name device 0. */
            char want[48];
            snprintf(want, sizeof want, "%.31s:%d", refs[i].name, refs[i].index);
            loom_backend *be = loom_registry_find(want);
            loom_backend *kind = loom_registry_find(refs[i].name);
            if (!be && kind && loom_registry_available(kind->index)) {
                const int nd = devices_of(refs[i].name);
                char range[80];
                if (nd > 1)
                    snprintf(range, sizeof range, "%.31s:0 to %.31s:%d", refs[i].name, refs[i].name,
                             nd - 1);
                else
                    snprintf(range, sizeof range, "only %.31s:0", refs[i].name);
                return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                                       "model: --devices: no device %s: backend '%s' has %d "
                                       "device%s (%s; `loom devices` lists them)",
                                       want, kind->iface->name, nd, nd == 1 ? "" : "s", range);
            }
            if (!be) be = kind; /* unavailable: say why below */
            if (!be)
                return loom_model_fail(err, err_n, LOOM_ERR_UNAVAILABLE,
                                       "model: --devices: unknown backend '%s'", refs[i].name);
            if (!loom_registry_available(be->index))
                return loom_model_fail(err, err_n, LOOM_ERR_UNAVAILABLE,
                                       "model: --devices: backend '%s' is unavailable: %s",
                                       loom_backend_name(be), loom_registry_why(be->index));
            LOOM_TRY(add_device(m, be, err, err_n));
        }
        n_listed = m->n_devs;
    } else {
        char berr[LOOM_ERROR_MAX] = "";
        loom_backend *be = NULL;
        loom_status st = loom_registry_select(p->backend, &be, berr, sizeof berr);
        if (st != LOOM_OK)
            return loom_model_fail(err, err_n, st, "model: %s",
                                   berr[0] ? berr : loom_status_str(st));
        LOOM_TRY(add_device(m, be, err, err_n));
    }
    LOOM_TRY(add_device(m, m->cpu, err, err_n));
    /* Shares: one per device of --devices (an unlisted cpu gets 0), or per
     * device of the default pair (backend, cpu). */
    const int named = n_listed ? n_listed : m->n_devs;
    if (p->split == LOOM_SPLIT_LAYER && p->n_tensor_split > 0 && p->n_tensor_split != named)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "model: --tensor-split has %d shares but %d device%s %s listed "
                               "(one share per device of --devices, default: the backend, then "
                               "cpu)",
                               p->n_tensor_split, named, named == 1 ? "" : "s",
                               named == 1 ? "is" : "are");
    /* The run backend: the first device that is not the cpu (the cpu when
     * there is none). */
    m->be = m->cpu;
    for (int d = m->n_devs - 1; d >= 0; d--)
        if (m->devs[d] != m->cpu) m->be = m->devs[d];
    return LOOM_OK;
}

/* Activation reserve for the plan: the residual stream, q/k/v, attention
 * output and the FFN's three intermediates of one prefill chunk, in f32 and
 * without counting the planner's reuse (so it over-estimates), plus a q8_0
 * cache's f16 copy of one layer's K and V. An estimate, stated as such in
 * the plan; the margin covers the rest. */
static size_t act_estimate(const loom_model *m, int64_t n_ctx, int n_slots, loom_dtype kv) {
    const loom_model_config *c = &m->cfg;
    const int64_t chunk = 256; /* loom_generate's default n_batch */
    const int64_t q = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    int64_t ffn = c->ffn_dim;
    if (c->n_experts > 0 && c->expert_ffn_dim * c->n_experts_used > ffn)
        ffn = c->expert_ffn_dim * c->n_experts_used;
    size_t b = (size_t)(chunk * (4 * c->dim + 2 * q + 2 * kvd + 3 * ffn)) * sizeof(float);
    if (kv == LOOM_Q8_0) b += (size_t)(2 * n_ctx * kvd * n_slots) * 2;
    return b;
}

loom_status loom_split_make(loom_model *m, const loom_model_params *p, const size_t *layer_bytes,
                            size_t embd_bytes, size_t head_bytes, char *err, size_t err_n) {
    const loom_model_config *c = &m->cfg;
    size_t limit = 0;
    LOOM_TRY(memory_limit(&limit, err, err_n));
    loom_split_input in;
    memset(&in, 0, sizeof in);
    in.n_layers = (int)c->n_layers;
    in.layer_bytes = layer_bytes;
    const int64_t n_ctx = loom_kv_cache_n_ctx(c, p);
    const int n_slots = p->n_slots > 0 ? p->n_slots : 1;
    in.kv_layer_bytes =
        2 * loom_dtype_nbytes(p->kv_dtype, c->n_kv_heads * c->head_dim * n_ctx * n_slots);
    in.embd_bytes = embd_bytes;
    in.head_bytes = head_bytes;
    in.tied = c->tie_embeddings;
    in.act_bytes = act_estimate(m, n_ctx, n_slots, p->kv_dtype);
    in.logits_bytes = (size_t)c->vocab_size * (size_t)n_slots * sizeof(float);
    in.gpu_layers = p->gpu_layers;
    in.shares = p->n_tensor_split > 0;
    in.n_devices = m->n_devs;
    for (int d = 0; d < m->n_devs; d++) {
        loom_split_device *sd = &in.dev[d];
        loom_device_info info;
        memset(&info, 0, sizeof info);
        m->devs[d]->iface->device_info(m->devs[d], &info);
        snprintf(sd->name, sizeof sd->name, "%s", loom_backend_name(m->devs[d]));
        sd->cpu = m->devs[d] == m->cpu;
        sd->mem_free = info.mem_free ? info.mem_free : info.mem_total;
        if (!sd->cpu && limit && (!sd->mem_free || limit < sd->mem_free)) sd->mem_free = limit;
        sd->share = in.shares && d < p->n_tensor_split ? p->tensor_split[d] : 0.0f;
    }
    char perr[256];
    if (loom_split_plan_make(&in, &m->plan, perr, sizeof perr) != LOOM_OK)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "model: %s", perr);
    m->has_plan = true;
    /* Device of every layer, the embedding and the head; a plan with
     * everything on one device loads as without a split (m->split false). */
    const loom_split_plan *pl = &m->plan;
    m->embd_dev = pl->embd_dev;
    m->head_dev = pl->head_dev;
    bool one = true;
    for (int l = 0; l < in.n_layers; l++) {
        m->layer_dev[l] = loom_split_plan_layer_device(pl, l);
        one = one && m->layer_dev[l] == pl->head_dev;
    }
    one = one && pl->embd_dev == pl->head_dev;
    m->split = !one;
    if (one) m->be = m->devs[pl->head_dev];
    return LOOM_OK;
}
