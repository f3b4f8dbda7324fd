/* model/arch/llama.c - the forward graph of a Llama-3 / Mixtral decoder over the
 * KV cache, and its cache of built graphs (see loom/model.h).
 *
 * Token layout: a batch of S sequences x T tokens is N = S*T columns,
 * sequence-major (column b*T + t). The KV cache of a layer is a block pool
 * [kv_dim, n_blocks * bs] (docs/adr/0035); new keys/values are written with
 * one set_rows per tensor at row block * bs + position % bs, block being
 * the sequence's table entry for the position (an i32 input computed on the
 * host). Attention runs one paged flash_attn over the pool ([head_dim,
 * rows, n_kv_heads]) for all S sequences, each through its block table (an
 * i32 input [max_blocks, S]) from its own position (an i32 input [S],
 * docs/adr/0044), so sequences at different positions share the matmuls of
 * one forward pass, and the graph does not depend on which slots run. A
 * model on another backend gets one node per sequence instead, whose
 * q_offset is patched per run (the GPU kernels read no offsets input). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"

void loom_llama_graph_release(loom_llama_graph *lg) {
    loom_sched_free(lg->s);
    loom_graph_free(lg->g);
    free(lg->fa);
    memset(lg, 0, sizeof *lg);
}

static loom_tensor *input_i32(loom_graph *g, int64_t n, const char *name) {
    loom_tensor *t = loom_tensor_1d(g, LOOM_I32, n);
    if (!t) return NULL;
    loom_tensor_set_name(t, "%s", name);
    return loom_tensor_set_flags(t, LOOM_FLAG_INPUT);
}

/* K or V of a layer for paged attention: the whole block pool read as
 * [head_dim, rows, n_kv_heads] from the set_rows result w ([kv_dim, rows]).
 * A q8_0 pool is first converted to f16 (whole pool, once per layer, so the
 * graph's memory does not depend on the sequence lengths). */
static loom_tensor *kv_pool_view(loom_model *m, loom_graph *g, loom_tensor *w) {
    const loom_model_config *c = &m->cfg;
    const int64_t D = c->head_dim, H = c->n_kv_heads, R = (int64_t)m->kv_nblk * m->kv_bs;
    if (m->kv_dtype == LOOM_Q8_0) {
        loom_tensor *h = loom_cpy(g, w, LOOM_F16);
        const size_t e16 = sizeof(uint16_t);
        return loom_view(g, h, 3, (int64_t[]){D, R, H},
                         (size_t[]){e16, (size_t)(D * H) * e16, (size_t)D * e16}, 0);
    }
    const size_t esz = loom_dtype_block_bytes(m->kv_dtype);
    const size_t row = loom_dtype_nbytes(m->kv_dtype, D * H);
    const size_t hd = loom_dtype_nbytes(m->kv_dtype, D);
    return loom_view(g, w, 3, (int64_t[]){D, R, H}, (size_t[]){esz, row, hd}, 0);
}

/* Layer split (docs/adr/0030): the scheduler over the model's devices (the
 * non-cpu ones in plan order, then the cpu, so unpinned nodes keep the old
 * "first that supports it" rule) with every compute node pinned to the
 * device of the segment it was built in: seg[0] is the first tensor id of
 * layer 0, seg[l] of layer l, seg[L] of the head; ids below seg[0] are the
 * embedding's. Tensor ids grow in creation order, so a node belongs to the
 * segment whose range holds its id. Nothing inside a layer moves to another
 * device; only the residual stream (and the small i32 inputs, once per
 * device) is copied at a boundary. */
static loom_status split_sched(loom_model *m, loom_llama_graph *lg, const int *seg) {
    loom_backend *list[LOOM_MAX_DEVICES];
    int idx[LOOM_MAX_DEVICES], n = 0, cpu = -1;
    for (int d = 0; d < m->n_devs; d++)
        if (m->devs[d] != m->cpu) {
            idx[d] = n;
            list[n++] = m->devs[d];
        } else {
            cpu = d;
        }
    idx[cpu] = n;
    list[n++] = m->cpu;
    LOOM_TRY(loom_sched_new(list, n, &lg->s));
    const int L = (int)m->cfg.n_layers;
    for (int i = 0; i < loom_graph_n_nodes(lg->g); i++) {
        const loom_tensor *t = loom_graph_node(lg->g, i);
        if (t->op == LOOM_OP_NONE || loom_op_is_view(t->op)) continue;
        int l = 0;
        while (l <= L && t->id >= seg[l])
            l++;
        /* l == 0: embedding; 1..L: layer l-1; L+1: the head */
        int d = l == 0 ? m->embd_dev : l <= L ? m->layer_dev[l - 1] : m->head_dev;
        LOOM_TRY(loom_sched_set_node_backend(lg->s, t, idx[d]));
    }
    return LOOM_OK;
}

/* The projection hook a graph is built with (none: plain projections). */
typedef struct hook_ref {
    loom_proj_hook fn;
    void *ud;
    /* Training graphs of packed sequences (loom_model_build_train_packed):
     * the lengths of the n_docs documents laid end to end in the one
     * sequence; attention runs per document, so none attends across a
     * boundary (the block-diagonal causal mask, without a mask tensor).
     * NULL: S sequences of T tokens. Kept here, with the hook, so that
     * block()'s signature stays as it is. */
    const int32_t *docs;
    int n_docs;
    /* Training graphs in mixed precision (docs/adr/0041): LOOM_BF16 or
     * LOOM_F16 rounds both inputs of every projection and of the LM head to
     * that dtype (f32 accumulation, f32 output); LOOM_F32 (0, the default of
     * every other graph) leaves matmuls as they are. */
    loom_dtype mm;
} hook_ref;

/* y = W x with both inputs in h->mm when that is a low precision. */
static loom_tensor *mm_lp(const hook_ref *h, loom_graph *g, loom_tensor *w, loom_tensor *x) {
    if (h->mm == LOOM_F32 || !w || !x) return loom_matmul(g, w, x);
    if (w->dtype != h->mm) w = loom_cpy(g, w, h->mm);
    if (x->dtype != h->mm) x = loom_cpy(g, x, h->mm);
    return loom_matmul(g, w, x);
}

/* y = W x for projection which of layer l, plus the hook's term (a LoRA
 * adapter) when one is set; without a hook this is the plain matmul. */
static loom_tensor *proj(const hook_ref *h, loom_graph *g, int64_t l, loom_proj which,
                         const loom_tensor *w, loom_tensor *x) {
    loom_tensor *y = mm_lp(h, g, loom_model_mirror(g, w), x);
    if (!h->fn || !y) return y;
    return h->fn(h->ud, g, l, which, x, y);
}

/* Tensor parallelism (docs/adr/0034): the row-parallel partial sums of a
 * graph (attention output and FFN output of every layer, 2 per layer) whose
 * scheduler gets an all-reduce hook after each. NULL outside a TP build. */
typedef struct tp_marks {
    loom_tensor **v;
    int n;
} tp_marks;

static loom_tensor *tp_mark(tp_marks *tm, loom_tensor *partial) {
    if (tm && partial) tm->v[tm->n++] = partial;
    return partial;
}

/* One decoder block on x [dim, N]. lg != NULL: attention through the KV
 * cache of lg's slots (inference); lg == NULL: S independent sequences of T
 * tokens at positions 0..T-1, keys and values straight from this pass
 * (training: no cache, every op differentiable). tm: tensor parallelism's
 * partial sums are recorded there (m->cfg is then the rank's shard). */
static loom_tensor *block(loom_model *m, const hook_ref *hk, loom_graph *g, loom_llama_graph *lg,
                          int64_t l, loom_tensor *x, loom_tensor *pos, int S, int T,
                          tp_marks *tm) {
    const loom_model_config *c = &m->cfg;
    const loom_llama_layer *L = &m->layers[l];
    const int64_t N = (int64_t)S * T, D = c->head_dim, Hq = c->n_heads, Hkv = c->n_kv_heads;
    const int64_t kv_dim = Hkv * D;
    const float eps = c->rms_eps, scale = 1.0f / sqrtf((float)D);
    loom_tensor *h = loom_mul(g, loom_rms_norm(g, x, eps), loom_model_mirror(g, L->attn_norm));
    loom_tensor *q = loom_reshape_3d(g, proj(hk, g, l, LOOM_PROJ_Q, L->wq, h), D, Hq, N);
    loom_tensor *k = loom_reshape_3d(g, proj(hk, g, l, LOOM_PROJ_K, L->wk, h), D, Hkv, N);
    loom_tensor *v = proj(hk, g, l, LOOM_PROJ_V, L->wv, h); /* [kv_dim, N] */
    q = loom_rope(g, q, pos, &c->rope);
    k = loom_rope(g, k, pos, &c->rope);
    loom_tensor *qp = loom_permute(g, q, 0, 2, 1, 3); /* [D, N, Hq] */
    loom_tensor *kw = NULL, *vw = NULL, *kp = NULL, *vp = NULL;
    if (lg) { /* Write this step's K/V into the block pool, in place. */
        loom_tensor *kc = loom_model_mirror(g, L->k_cache);
        loom_tensor *vc = loom_model_mirror(g, L->v_cache);
        kw = kv_pool_view(m, g, loom_set_rows(g, kc, loom_reshape_2d(g, k, kv_dim, N), lg->rows));
        vw = kv_pool_view(m, g, loom_set_rows(g, vc, v, lg->rows));
    } else {
        kp = loom_permute(g, k, 0, 2, 1, 3); /* [D, N, Hkv] */
        vp = loom_permute(g, loom_reshape_3d(g, v, D, Hkv, N), 0, 2, 1, 3);
    }
    loom_tensor *att = NULL;
    /* attention groups; 0: one batched node (docs/adr/0044) */
    const int n_att = lg && lg->q_offsets ? 0 : !lg && hk->docs ? hk->n_docs : S;
    if (n_att == 0) { /* q as [D, T, Hq, S], the tables as [max_blk, S] */
        loom_tensor *q4 = loom_permute(g, loom_reshape_4d(g, q, D, Hq, T, S), 0, 2, 1, 3);
        loom_tensor *tb = loom_reshape_2d(g, lg->tables, m->max_blk, S);
        att = loom_flash_attn_paged_batch(g, q4, kw, vw, tb, lg->q_offsets, m->kv_bs, scale);
    }
    int64_t off = 0;
    for (int b = 0; b < n_att; b++) {
        const int64_t len = !lg && hk->docs ? hk->docs[b] : T;
        loom_tensor *qb = n_att == 1 ? qp : loom_slice(g, qp, 1, off, len);
        loom_tensor *o;
        if (lg) { /* through sequence b's block table; q_offset patched per run */
            loom_tensor *tb = loom_view(g, lg->tables, 1, (int64_t[]){m->max_blk},
                                        (size_t[]){sizeof(int32_t)},
                                        (size_t)b * (size_t)m->max_blk * sizeof(int32_t));
            o = loom_flash_attn_paged(g, qb, kw, vw, tb, m->kv_bs, scale, 0);
            lg->fa[(size_t)l * (size_t)S + (size_t)b] = o;
        } else {
            loom_tensor *kb = n_att == 1 ? kp : loom_slice(g, kp, 1, off, len);
            loom_tensor *vb = n_att == 1 ? vp : loom_slice(g, vp, 1, off, len);
            o = loom_flash_attn(g, qb, kb, vb, scale, true, 0);
        }
        att = att ? loom_concat(g, att, o, 2) : o; /* [D, Hq, off + len] */
        off += len;
    }
    att = loom_reshape_2d(g, att, D * Hq, N);
    x = loom_add(g, x, tp_mark(tm, proj(hk, g, l, LOOM_PROJ_O, L->wo, att)));
    h = loom_mul(g, loom_rms_norm(g, x, eps), loom_model_mirror(g, L->ffn_norm));
    loom_tensor *f;
    if (L->moe) {
        loom_tensor *router = loom_matmul(g, loom_model_mirror(g, L->router), h); /* [E, N] */
        f = loom_moe(g, h, router, loom_model_mirror(g, L->gate_exps),
                     loom_model_mirror(g, L->up_exps), loom_model_mirror(g, L->down_exps),
                     (int32_t)c->n_experts_used);
    } else {
        loom_tensor *gt = proj(hk, g, l, LOOM_PROJ_GATE, L->gate, h);
        loom_tensor *up = proj(hk, g, l, LOOM_PROJ_UP, L->up, h);
        f = proj(hk, g, l, LOOM_PROJ_DOWN, L->down, loom_swiglu(g, gt, up));
    }
    return loom_add(g, x, tp_mark(tm, f));
}

/* Final norm and LM head on x [dim, n]; hk->mm as for the projections. */
static loom_tensor *head(loom_model *m, const hook_ref *hk, loom_graph *g, loom_tensor *x) {
    const loom_model_config *c = &m->cfg;
    x = loom_mul(g, loom_rms_norm(g, x, c->rms_eps), loom_model_mirror(g, m->output_norm));
    loom_tensor *y =
        mm_lp(hk, g, loom_model_mirror(g, c->tie_embeddings ? m->tok_embd : m->output), x);
    /* the head's logits are ranked: keep its activations f32 (ADR 0036 addendum 3) */
    return y ? loom_tensor_set_flags(y, LOOM_FLAG_F32_ACT) : y;
}

static loom_status build(loom_model *m, loom_llama_graph *lg, char *err, size_t err_n) {
    const loom_model_config *c = &m->cfg;
    const int S = lg->n_seq, T = lg->n_tokens;
    const int64_t N = (int64_t)S * T;
    size_t n_dyn = (size_t)c->n_layers * (size_t)S;
    lg->fa = calloc(n_dyn, sizeof *lg->fa);
    int *seg = calloc((size_t)c->n_layers + 1, sizeof *seg); /* split_sched */
    if (!lg->fa || !seg || loom_graph_new(&lg->g) != LOOM_OK) {
        free(seg);
        return loom_model_fail(err, err_n, LOOM_ERR_OOM, "model: out of memory");
    }
    loom_graph *g = lg->g;

    lg->tokens = input_i32(g, N, "tokens");
    lg->pos = input_i32(g, N, "positions");
    lg->rows = input_i32(g, N, "kv_rows");
    lg->tables = input_i32(g, (int64_t)m->max_blk * S, "kv_blocks");
    /* One attention node for the whole batch where the cpu runs every node
     * (docs/adr/0044); other backends lack its kernel. */
    if (m->be == m->cpu && !m->split) lg->q_offsets = input_i32(g, S, "q_offsets");
    loom_tensor *x = loom_get_rows(g, loom_model_mirror(g, m->tok_embd), lg->tokens); /* [dim, N] */
    const hook_ref hk = {m->hook, m->hook_ud, NULL, 0, LOOM_F32};
    tp_marks tm = {NULL, 0};
    if (m->tp > 1 && !(tm.v = calloc((size_t)(2 * c->n_layers), sizeof *tm.v))) {
        free(seg);
        return loom_model_fail(err, err_n, LOOM_ERR_OOM, "model: out of memory");
    }
    for (int64_t l = 0; l < c->n_layers; l++) {
        seg[l] = loom_graph_n_tensors(g); /* layer l's tensors start here */
        x = block(m, &hk, g, lg, l, x, lg->pos, S, T, m->tp > 1 ? &tm : NULL);
    }
    seg[c->n_layers] = loom_graph_n_tensors(g); /* the head's */
    /* Only the columns whose logits are wanted go through the LM head. */
    if (!lg->all_logits && T > 1) {
        if (S == 1) {
            x = loom_slice(g, x, 1, T - 1, 1);
        } else {
            lg->out_ids = input_i32(g, S, "out_ids");
            x = loom_get_rows(g, x, lg->out_ids);
            x = loom_reshape_2d(g, x, c->dim, S);
        }
    }
    lg->logits = head(m, &hk, g, x);
    if (lg->logits) {
        loom_tensor_set_name(lg->logits, "logits");
        loom_tensor_set_flags(lg->logits, LOOM_FLAG_OUTPUT);
    }
    loom_status st = lg->logits ? loom_graph_expand(g, lg->logits) : loom_graph_status(g);
    if (st != LOOM_OK) {
        free(seg);
        free(tm.v);
        return loom_model_fail(err, err_n, st, "model: building the forward graph failed: %s",
                               loom_graph_error(g));
    }
    loom_backend *list[2] = {m->be, m->cpu};
    st = m->split ? split_sched(m, lg, seg) : loom_sched_new(list, m->be == m->cpu ? 1 : 2, &lg->s);
    free(seg);
    /* the all-reduces run between splits, on the host (arch/tp.c) */
    for (int i = 0; st == LOOM_OK && i < tm.n; i++)
        st = loom_sched_set_node_hook(lg->s, tm.v[i], loom_tp_allreduce_hook, m);
    free(tm.v);
    if (st == LOOM_OK) st = loom_sched_alloc(lg->s, g);
    if (st != LOOM_OK)
        return loom_model_fail(err, err_n, st, "model: scheduling the forward graph failed: %s",
                               lg->s ? loom_sched_error(lg->s) : loom_status_str(st));
    m->n_builds++;
    return LOOM_OK;
}

void loom_model_sched_stats(const loom_model *m, loom_sched_stats *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!m) return;
    const loom_llama_graph *last = NULL;
    long long n = 0, hooks = 0;
    double secs = 0, hook_secs = 0;
    for (int i = 0; i < LOOM_LLAMA_GRAPH_CACHE; i++) {
        const loom_llama_graph *lg = &m->cache[i];
        if (!lg->used || !lg->s) continue;
        loom_sched_stats st;
        loom_sched_get_stats(lg->s, &st);
        n += st.n_computes;
        secs += st.copy_seconds;
        hooks += st.n_hook_calls;
        hook_secs += st.hook_seconds;
        if (!last || lg->last_used > last->last_used) last = lg;
    }
    if (last) loom_sched_get_stats(last->s, out);
    out->n_computes = n;
    out->copy_seconds = secs;
    out->n_hook_calls = hooks;
    out->hook_seconds = hook_secs;
}

/* The cached graph for this batch shape, built when missing (evicting the
 * least recently used one). */
static loom_status get_graph(loom_model *m, const loom_batch *b, loom_llama_graph **out, char *err,
                             size_t err_n) {
    const bool all = b->all_logits && b->n_tokens > 0;
    loom_llama_graph *lru = &m->cache[0];
    for (int i = 0; i < LOOM_LLAMA_GRAPH_CACHE; i++) {
        loom_llama_graph *lg = &m->cache[i];
        /* The slots do not matter: their block tables are inputs. */
        if (lg->used && lg->n_seq == b->n_seq && lg->n_tokens == b->n_tokens &&
            lg->all_logits == all) {
            lg->last_used = ++m->tick;
            *out = lg;
            return LOOM_OK;
        }
        if (!lg->used || (lru->used && lg->last_used < lru->last_used)) lru = lg;
    }
    loom_llama_graph_release(lru);
    lru->used = true;
    lru->n_seq = b->n_seq;
    lru->n_tokens = b->n_tokens;
    lru->all_logits = all;
    memcpy(lru->slots, b->slots, (size_t)b->n_seq * sizeof *b->slots);
    loom_status st = build(m, lru, err, err_n);
    if (st != LOOM_OK) {
        loom_llama_graph_release(lru);
        return st;
    }
    lru->last_used = ++m->tick;
    *out = lru;
    return LOOM_OK;
}

loom_status loom_model_decode(loom_model *m, const loom_batch *b, float *logits, char *err,
                              size_t err_n) {
    if (!m || !b || !b->slots || !b->tokens || !logits)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "model: NULL argument");
    const int S = b->n_seq, T = b->n_tokens;
    if (S < 1 || S > m->n_slots || T < 1)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "model: a batch needs 1..%d sequences and at least one token",
                               m->n_slots);
    for (int i = 0; i < S; i++) {
        int s = b->slots[i];
        if (s < 0 || s >= m->n_slots)
            return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                                   "model: slot %d is not in 0..%d", s, m->n_slots - 1);
        for (int j = 0; j < i; j++)
            if (b->slots[j] == s)
                return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                                       "model: slot %d appears twice in one batch", s);
        if (m->slot_pos[s] + T > m->n_ctx)
            return loom_model_fail(
                err, err_n, LOOM_ERR_INVALID_ARG,
                "model: slot %d would hold %lld tokens, more than the context (%lld)", s,
                (long long)(m->slot_pos[s] + T), (long long)m->n_ctx);
    }
    const int64_t N = (int64_t)S * T, V = m->cfg.vocab_size;
    for (int64_t i = 0; i < N; i++)
        if (b->tokens[i] < 0 || b->tokens[i] >= V)
            return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                                   "model: token id %d is outside the vocabulary [0, %lld)",
                                   b->tokens[i], (long long)V);
    /* Blocks for the new positions (docs/adr/0035); a slot keeps blocks it
     * got here even if a later one fails (they are used by its next try). */
    for (int i = 0; i < S; i++)
        LOOM_TRY(loom_kv_cache_reserve(m, b->slots[i], m->slot_pos[b->slots[i]] + T, err, err_n));
    loom_llama_graph *lg;
    LOOM_TRY(get_graph(m, b, &lg, err, err_n));

    /* Re-target the graph: the query offset of every sequence (per-sequence
     * attention nodes; the batched node reads them from q_offsets). */
    for (int64_t l = 0; !lg->q_offsets && l < m->cfg.n_layers; l++)
        for (int i = 0; i < S; i++) {
            size_t di = (size_t)l * (size_t)S + (size_t)i;
            int64_t pos = m->slot_pos[b->slots[i]];
            if (loom_node_set_q_offset(lg->fa[di], (int32_t)pos) != LOOM_OK)
                return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                                       "model: cannot re-target attention to position %lld",
                                       (long long)pos);
        }
    const size_t nt = (size_t)m->max_blk * (size_t)S;
    int32_t *buf = malloc(((size_t)(2 * N + 2 * S) + nt) * sizeof *buf);
    if (!buf) return loom_model_fail(err, err_n, LOOM_ERR_OOM, "model: out of memory");
    int32_t *pos = buf, *rows = buf + N, *out_ids = buf + 2 * N, *offs = out_ids + S,
            *tables = offs + S;
    memset(tables, 0, nt * sizeof *tables); /* unused entries: a valid block id */
    for (int i = 0; i < S; i++) {
        const int slot = b->slots[i];
        const int32_t *tbl = m->slot_tbl + (size_t)slot * (size_t)m->max_blk;
        memcpy(tables + (size_t)i * (size_t)m->max_blk, tbl,
               (size_t)m->slot_nblk[slot] * sizeof *tbl);
        for (int t = 0; t < T; t++) {
            int64_t p = m->slot_pos[slot] + t;
            pos[i * T + t] = (int32_t)p;
            rows[i * T + t] = tbl[p / m->kv_bs] * m->kv_bs + (int32_t)(p % m->kv_bs);
        }
        out_ids[i] = i * T + T - 1;
        offs[i] = (int32_t)m->slot_pos[slot];
    }
    size_t nb = (size_t)N * sizeof(int32_t);
    loom_status st = loom_tensor_upload(lg->tokens, b->tokens, nb);
    if (st == LOOM_OK) st = loom_tensor_upload(lg->pos, pos, nb);
    if (st == LOOM_OK) st = loom_tensor_upload(lg->rows, rows, nb);
    if (st == LOOM_OK) st = loom_tensor_upload(lg->tables, tables, nt * sizeof *tables);
    if (st == LOOM_OK && lg->out_ids)
        st = loom_tensor_upload(lg->out_ids, out_ids, (size_t)S * sizeof(int32_t));
    if (st == LOOM_OK && lg->q_offsets)
        st = loom_tensor_upload(lg->q_offsets, offs, (size_t)S * sizeof(int32_t));
    free(buf);
    if (st != LOOM_OK) return loom_model_fail(err, err_n, st, "model: uploading the batch failed");
    st = loom_sched_compute(lg->s, lg->g);
    if (st != LOOM_OK)
        return loom_model_fail(err, err_n, st, "model: forward pass failed: %s",
                               loom_sched_error(lg->s));
    st = loom_tensor_download(lg->logits, logits, loom_tensor_nbytes(lg->logits));
    if (st != LOOM_OK) return loom_model_fail(err, err_n, st, "model: reading the logits failed");
    for (int i = 0; i < S; i++) {
        loom_kv_cache_commit(m, b->slots[i], m->slot_pos[b->slots[i]], b->tokens + (size_t)i * T,
                             T);
        m->slot_pos[b->slots[i]] += T;
    }
    m->n_runs++;
    return LOOM_OK;
}

/* ---------------- embeddings: pooled final hidden states ---------------- */

/* Why a forward without the KV cache rather than a scratch slot: every slot
 * of a serving model belongs to the engine (serve/engine.c), and a slot's
 * KV blocks come from the pool the running requests share, so a scratch
 * slot would either take a slot away from serving or compete with it for
 * blocks (and could evict cached prefixes). The cache-free block (the
 * training path's: keys and values straight from this pass, causal
 * attention over them) leaves the cache untouched by construction, and for
 * one causal sequence from position 0 it computes what a prefill through
 * the cache computes. The graph is built per call and freed: embedding
 * inputs vary in length, and the decode graph cache (keyed by batch shape)
 * is not evicted for them. */
loom_status loom_model_embed(loom_model *m, const int32_t *tokens, size_t n, float *out, char *err,
                             size_t err_n) {
    if (!m || !tokens || !out)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "model: NULL argument");
    const loom_model_config *c = &m->cfg;
    const int64_t ctx = m->n_ctx < c->max_ctx ? m->n_ctx : c->max_ctx;
    if (n < 1 || (int64_t)n > ctx)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "model: an embedding input needs 1..%lld tokens, got %zu",
                               (long long)ctx, n);
    if (m->tp > 1) /* cfg is this rank's shard; the ranks would have to run it together */
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "model: embeddings of a tensor-parallel load (--tp) are not "
                               "supported");
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                                   "model: token id %d is outside the vocabulary [0, %lld)",
                                   tokens[i], (long long)c->vocab_size);
    const int T = (int)n;
    const int64_t D = c->dim;
    loom_llama_graph lg = {0};
    int *seg = calloc((size_t)c->n_layers + 1, sizeof *seg); /* split_sched */
    int32_t *pos = malloc(n * sizeof *pos);
    float *h = malloc((size_t)D * n * sizeof *h);
    loom_status st = LOOM_OK;
    if (!seg || !pos || !h || loom_graph_new(&lg.g) != LOOM_OK) {
        st = loom_model_fail(err, err_n, LOOM_ERR_OOM, "model: out of memory");
        goto done;
    }
    loom_graph *g = lg.g;
    lg.tokens = input_i32(g, T, "tokens");
    lg.pos = input_i32(g, T, "positions");
    loom_tensor *x = loom_get_rows(g, loom_model_mirror(g, m->tok_embd), lg.tokens); /* [D, T] */
    /* the model's projection hook (a served LoRA adapter) applies here too */
    const hook_ref hk = {m->hook, m->hook_ud, NULL, 0, LOOM_F32};
    for (int64_t l = 0; l < c->n_layers; l++) {
        seg[l] = loom_graph_n_tensors(g);
        x = block(m, &hk, g, NULL, l, x, lg.pos, 1, T, NULL);
    }
    seg[c->n_layers] = loom_graph_n_tensors(g);
    /* The final RMSNorm, as head() applies it, without the LM head: HF's
     * last_hidden_state. */
    x = loom_mul(g, loom_rms_norm(g, x, c->rms_eps), loom_model_mirror(g, m->output_norm));
    if (x) {
        loom_tensor_set_name(x, "hidden");
        loom_tensor_set_flags(x, LOOM_FLAG_OUTPUT);
    }
    st = x ? loom_graph_expand(g, x) : loom_graph_status(g);
    if (st != LOOM_OK) {
        st = loom_model_fail(err, err_n, st, "model: building the embedding graph failed: %s",
                             loom_graph_error(g));
        goto done;
    }
    loom_backend *list[2] = {m->be, m->cpu};
    st = m->split ? split_sched(m, &lg, seg) : loom_sched_new(list, m->be == m->cpu ? 1 : 2, &lg.s);
    if (st == LOOM_OK) st = loom_sched_alloc(lg.s, g);
    if (st != LOOM_OK) {
        st = loom_model_fail(err, err_n, st, "model: scheduling the embedding graph failed: %s",
                             lg.s ? loom_sched_error(lg.s) : loom_status_str(st));
        goto done;
    }
    for (int t = 0; t < T; t++)
        pos[t] = t;
    st = loom_tensor_upload(lg.tokens, tokens, n * sizeof *tokens);
    if (st == LOOM_OK) st = loom_tensor_upload(lg.pos, pos, n * sizeof *pos);
    if (st == LOOM_OK) st = loom_sched_compute(lg.s, g);
    if (st != LOOM_OK) {
        st = loom_model_fail(err, err_n, st, "model: embedding forward failed: %s",
                             loom_sched_error(lg.s));
        goto done;
    }
    st = loom_tensor_download(x, h, (size_t)D * n * sizeof *h);
    if (st != LOOM_OK) {
        st = loom_model_fail(err, err_n, st, "model: reading the hidden states failed");
        goto done;
    }
    /* Mean over the tokens (llama.cpp's --pooling mean, sentence-transformers'
     * mean pooling with no padding), then L2-normalised; in double so the
     * sum of a long input loses nothing. Column t of h is token t. */
    double norm = 0;
    for (int64_t d = 0; d < D; d++) {
        double sum = 0;
        for (int t = 0; t < T; t++)
            sum += h[(size_t)t * (size_t)D + (size_t)d];
        out[d] = (float)(sum / T);
        norm += (sum / T) * (sum / T);
    }
    norm = sqrt(norm);
    if (norm > 0)
        for (int64_t d = 0; d < D; d++)
            out[d] = (float)(out[d] / norm);
done:
    loom_llama_graph_release(&lg);
    free(seg);
    free(pos);
    free(h);
    return st;
}

/* ---------------- training forward and the projection hook ---------------- */

loom_status loom_model_set_proj_hook(loom_model *m, loom_proj_hook hook, void *ud) {
    if (!m) return LOOM_ERR_INVALID_ARG;
    if (hook && m->tp > 1) return LOOM_ERR_UNSUPPORTED; /* LoRA would need splitting too */
    for (int i = 0; i < LOOM_LLAMA_GRAPH_CACHE; i++) /* built without (or with another) hook */
        loom_llama_graph_release(&m->cache[i]);
    m->hook = hook;
    m->hook_ud = ud;
    return LOOM_OK;
}

static loom_status build_train(loom_model *m, loom_graph *g, int n_seq, int n_tokens,
                               const int32_t *docs, int n_docs, loom_dtype mm, loom_proj_hook hook,
                               void *ud, loom_model_train_io *io, char *err, size_t err_n) {
    if (!m || !g || !io || n_seq < 1 || n_tokens < 1)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "model: training graph needs a model, a graph and a shape >= 1x1");
    if (n_tokens > m->cfg.max_ctx)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "model: %d tokens per sequence exceed the context (%lld)", n_tokens,
                               (long long)m->cfg.max_ctx);
    if (mm != LOOM_F32 && mm != LOOM_BF16 && mm != LOOM_F16)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "model: training matmuls run in f32, bf16 or f16, not %s",
                               loom_dtype_name(mm));
    const int64_t N = (int64_t)n_seq * n_tokens;
    memset(io, 0, sizeof *io);
    io->tokens = input_i32(g, N, "tokens");
    io->pos = input_i32(g, N, "positions");
    loom_tensor *x = loom_get_rows(g, loom_model_mirror(g, m->tok_embd), io->tokens); /* [dim, N] */
    const hook_ref hk = {hook, ud, docs, n_docs, mm};
    if (m->tp > 1)
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "model: training graphs of a tensor-parallel load (--tp) are not "
                               "supported; fine-tune data-parallel instead");
    /* The residual stream between blocks: gradient checkpoints, so the
     * backward recomputes one block at a time (the caller may clear them). */
    loom_tensor_set_flags(x, LOOM_FLAG_CHECKPOINT);
    for (int64_t l = 0; l < m->cfg.n_layers; l++)
        x = loom_tensor_set_flags(block(m, &hk, g, NULL, l, x, io->pos, n_seq, n_tokens, NULL),
                                  LOOM_FLAG_CHECKPOINT);
    io->logits = head(m, &hk, g, x); /* [vocab, N] */
    if (io->logits) loom_tensor_set_name(io->logits, "logits");
    if (loom_graph_status(g) != LOOM_OK)
        return loom_model_fail(err, err_n, loom_graph_status(g),
                               "model: building the training graph failed: %s",
                               loom_graph_error(g));
    return LOOM_OK;
}

loom_status loom_model_build_train(loom_model *m, loom_graph *g, int n_seq, int n_tokens,
                                   loom_proj_hook hook, void *ud, loom_model_train_io *io,
                                   char *err, size_t err_n) {
    return build_train(m, g, n_seq, n_tokens, NULL, 0, LOOM_F32, hook, ud, io, err, err_n);
}

loom_status loom_model_build_train_packed(loom_model *m, loom_graph *g, int n_tokens,
                                          const int32_t *doc_len, int n_docs, loom_proj_hook hook,
                                          void *ud, loom_model_train_io *io, char *err,
                                          size_t err_n) {
    const loom_model_train_opts o = {.n_seq = 1,
                                     .n_tokens = n_tokens,
                                     .doc_len = doc_len,
                                     .n_docs = n_docs,
                                     .hook = hook,
                                     .ud = ud,
                                     .matmul_dtype = LOOM_F32};
    if (!doc_len || n_docs < 1)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "model: packed documents cover 0 of %d tokens", n_tokens);
    return loom_model_build_train_opts(m, g, &o, io, err, err_n);
}

loom_status loom_model_build_train_opts(loom_model *m, loom_graph *g,
                                        const loom_model_train_opts *o, loom_model_train_io *io,
                                        char *err, size_t err_n) {
    if (!o)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "model: NULL training options");
    if (!o->doc_len)
        return build_train(m, g, o->n_seq, o->n_tokens, NULL, 0, o->matmul_dtype, o->hook, o->ud,
                           io, err, err_n);
    const int32_t *doc_len = o->doc_len;
    const int n_docs = o->n_docs, n_tokens = o->n_tokens;
    if (o->n_seq != 1)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "model: a packed training graph holds one sequence (n_seq %d)",
                               o->n_seq);
    int64_t sum = 0;
    for (int i = 0; doc_len && i < n_docs; i++) {
        if (doc_len[i] < 1)
            return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                                   "model: packed document %d has %d tokens (>= 1)", i,
                                   (int)doc_len[i]);
        sum += doc_len[i];
    }
    if (!doc_len || n_docs < 1 || sum != n_tokens)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "model: packed documents cover %lld of %d tokens", (long long)sum,
                               n_tokens);
    return build_train(m, g, 1, n_tokens, doc_len, n_docs, o->matmul_dtype, o->hook, o->ud, io, err,
                       err_n);
}

void loom_model_backends(const loom_model *m, loom_backend **run, loom_backend **cpu) {
    if (run) *run = m ? m->be : NULL;
    if (cpu) *cpu = m ? m->cpu : NULL;
}
