/* model/model_load.c - loom_model from a GGUF file: the config from
 * metadata, every tensor checked by name, shape and dtype, weights uploaded
 * into buffers of the run backend (one, or several when the backend caps a
 * buffer's size), the KV cache allocated likewise, and the embedded
 * tokenizer. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"

#define W_ALIGN 64

loom_model_params loom_model_default_params(void) {
    loom_model_params p;
    memset(&p, 0, sizeof p);
    p.kv_dtype = LOOM_F16;
    return p;
}

/* ---------------- config ---------------- */

/* Integer key "llama.<name>"; *out keeps def when absent. required: absent is an error. */
static loom_status key_int(loom_gguf *g, const char *arch, const char *name, bool required,
                           int64_t *out, char *err, size_t err_n) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, name);
    if (loom_gguf_find_kv(g, key) < 0) {
        if (required)
            return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                   "model: GGUF metadata key '%s' is missing", key);
        return LOOM_OK;
    }
    if (loom_gguf_get_int(g, key, out) != LOOM_OK)
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "model: %s", loom_gguf_error(g));
    return LOOM_OK;
}

static loom_status key_float(loom_gguf *g, const char *key, float *out, char *err, size_t err_n) {
    int64_t i = loom_gguf_find_kv(g, key);
    if (i < 0) return LOOM_OK;
    double d;
    float f;
    if (loom_gguf_get_f32(g, key, &f) == LOOM_OK) {
        *out = f;
    } else if (loom_gguf_get_f64(g, key, &d) == LOOM_OK) {
        *out = (float)d;
    } else {
        int64_t v;
        if (loom_gguf_get_int(g, key, &v) != LOOM_OK)
            return loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "model: key '%s' is not a number",
                                   key);
        *out = (float)v;
    }
    return LOOM_OK;
}

/* llama.cpp stores Llama 3.1 rope scaling as per-frequency factors
 * (rope_freqs.weight). Accept them when they equal llama3 scaling with one of
 * the published parameter sets. */
static loom_status rope_from_freqs(loom_gguf *g, loom_model_config *c, char *err, size_t err_n) {
    int64_t ti = loom_gguf_find_tensor(g, "rope_freqs.weight");
    if (ti < 0 || c->rope.scaling == LOOM_ROPE_SCALING_LLAMA3) return LOOM_OK;
    loom_gguf_tensor_info info;
    LOOM_TRY(loom_gguf_tensor(g, ti, &info));
    const int64_t n = c->rope.n_dims / 2;
    if (info.ggml_type != LOOM_GGML_TYPE_F32 || info.ne[0] != n)
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "model: tensor 'rope_freqs.weight' must be f32 [%lld]",
                               (long long)n);
    static const float factors[] = {8.0f, 16.0f, 32.0f, 4.0f};
    float *want = malloc((size_t)(n > 0 ? n : 1) * sizeof *want);
    if (!want) return loom_model_fail(err, err_n, LOOM_ERR_OOM, "model: out of memory");
    for (size_t k = 0; k < sizeof factors / sizeof factors[0]; k++) {
        /* The published Llama 3.x parameter sets, through the same formula
         * loom writes rope_freqs.weight with. */
        loom_rope_params r = c->rope;
        r.scaling = LOOM_ROPE_SCALING_LLAMA3;
        r.factor = factors[k];
        r.low_freq_factor = 1.0f;
        r.high_freq_factor = 4.0f;
        r.orig_ctx = 8192;
        bool ok = loom_rope_freq_factors(&r, want, n) == LOOM_OK;
        for (int64_t i = 0; i < n && ok; i++) {
            float got;
            memcpy(&got, (const char *)info.data + 4 * i, 4);
            ok = fabsf(got - want[i]) <= 1e-3f * want[i];
        }
        if (ok) {
            free(want);
            c->rope = r;
            return LOOM_OK;
        }
    }
    free(want);
    return loom_model_fail(
        err, err_n, LOOM_ERR_UNSUPPORTED,
        "model: rope_freqs.weight does not match llama3 rope scaling (factor 4/8/16/32, "
        "low 1, high 4, original context 8192); other frequency factors are not "
        "supported");
}

static bool tensor_ne(loom_gguf *g, const char *name, int64_t ne[4]) {
    int64_t i = loom_gguf_find_tensor(g, name);
    loom_gguf_tensor_info info;
    if (i < 0 || loom_gguf_tensor(g, i, &info) != LOOM_OK) return false;
    memcpy(ne, info.ne, 4 * sizeof *ne);
    return true;
}

loom_status loom_model_config_from_gguf(loom_gguf *g, loom_model_config *out, char *err,
                                        size_t err_n) {
    if (!g || !out)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "model: NULL argument");
    loom_model_config c;
    memset(&c, 0, sizeof c);
    const char *arch;
    uint64_t alen;
    if (loom_gguf_get_str(g, "general.architecture", &arch, &alen) != LOOM_OK)
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "model: GGUF metadata key 'general.architecture' is missing");
    if (!(alen == 5 && !memcmp(arch, "llama", 5)))
        return loom_model_fail(
            err, err_n, LOOM_ERR_UNSUPPORTED,
            "model: architecture '%.*s' is not supported (llama: Llama 2/3, Mixtral)",
            (int)(alen > 32 ? 32 : alen), arch);
    snprintf(c.arch, sizeof c.arch, "llama");
    LOOM_TRY(key_int(g, "llama", "embedding_length", true, &c.dim, err, err_n));
    LOOM_TRY(key_int(g, "llama", "block_count", true, &c.n_layers, err, err_n));
    LOOM_TRY(key_int(g, "llama", "feed_forward_length", true, &c.ffn_dim, err, err_n));
    LOOM_TRY(key_int(g, "llama", "attention.head_count", true, &c.n_heads, err, err_n));
    c.n_kv_heads = c.n_heads;
    LOOM_TRY(key_int(g, "llama", "attention.head_count_kv", false, &c.n_kv_heads, err, err_n));
    c.head_dim = c.n_heads > 0 ? c.dim / c.n_heads : 0;
    LOOM_TRY(key_int(g, "llama", "attention.key_length", false, &c.head_dim, err, err_n));
    c.max_ctx = 2048;
    LOOM_TRY(key_int(g, "llama", "context_length", false, &c.max_ctx, err, err_n));
    int64_t ne[4];
    c.vocab_size = tensor_ne(g, "token_embd.weight", ne) ? ne[1] : 0;
    LOOM_TRY(key_int(g, "llama", "vocab_size", false, &c.vocab_size, err, err_n));
    c.rms_eps = 1e-5f;
    LOOM_TRY(key_float(g, "llama.attention.layer_norm_rms_epsilon", &c.rms_eps, err, err_n));

    /* RoPE: GGUF q/k rows are in llama.cpp's order -> adjacent pairs (model.h). */
    c.rope = loom_rope_params_llama3((int32_t)c.head_dim);
    c.rope.mode = LOOM_ROPE_NORMAL;
    c.rope.scaling = LOOM_ROPE_SCALING_NONE;
    c.rope.theta = 10000.0f;
    LOOM_TRY(key_float(g, "llama.rope.freq_base", &c.rope.theta, err, err_n));
    int64_t n_rot = c.head_dim;
    LOOM_TRY(key_int(g, "llama", "rope.dimension_count", false, &n_rot, err, err_n));
    c.rope.n_dims = (int32_t)n_rot;
    const char *st;
    uint64_t slen;
    /* loom writes llama3 scaling under loom.* (llama.cpp asserts on an unknown
     * llama.rope.scaling.type and would read rope.scaling.factor as linear
     * scaling) plus rope_freqs.weight; files from before used llama.*. */
    const char *rs = loom_gguf_find_kv(g, "loom.rope.scaling.type") >= 0 ? "loom" : "llama";
    char rk[64];
#define RK(suffix) (snprintf(rk, sizeof rk, "%s.rope.scaling." suffix, rs), rk)
    if (loom_gguf_get_str(g, RK("type"), &st, &slen) == LOOM_OK) {
        if (slen == 6 && !memcmp(st, "llama3", 6)) {
            c.rope.scaling = LOOM_ROPE_SCALING_LLAMA3;
            c.rope.factor = 8.0f;
            c.rope.low_freq_factor = 1.0f;
            c.rope.high_freq_factor = 4.0f;
            c.rope.orig_ctx = 8192;
            LOOM_TRY(key_float(g, RK("factor"), &c.rope.factor, err, err_n));
            LOOM_TRY(key_float(g, RK("low_freq_factor"), &c.rope.low_freq_factor, err, err_n));
            LOOM_TRY(key_float(g, RK("high_freq_factor"), &c.rope.high_freq_factor, err, err_n));
            int64_t oc = c.rope.orig_ctx;
            LOOM_TRY(
                key_int(g, rs, "rope.scaling.original_context_length", false, &oc, err, err_n));
            c.rope.orig_ctx = (int32_t)oc;
        } else if (!(slen == 4 && !memcmp(st, "none", 4))) {
            return loom_model_fail(
                err, err_n, LOOM_ERR_UNSUPPORTED,
                "model: llama.rope.scaling.type '%.*s' is not supported (none, llama3)",
                (int)(slen > 32 ? 32 : slen), st);
        }
    }
#undef RK
    LOOM_TRY(rope_from_freqs(g, &c, err, err_n));

    LOOM_TRY(key_int(g, "llama", "expert_count", false, &c.n_experts, err, err_n));
    LOOM_TRY(key_int(g, "llama", "expert_used_count", false, &c.n_experts_used, err, err_n));
    c.moe_every = 1;
    if (c.n_experts > 0) {
        LOOM_TRY(key_int(g, "loom", "moe_every", false, &c.moe_every, err, err_n));
        LOOM_TRY(key_int(g, "loom", "moe_offset", false, &c.moe_offset, err, err_n));
        c.expert_ffn_dim = c.ffn_dim;
        char name[64];
        snprintf(name, sizeof name, "blk.%lld.ffn_gate_exps.weight",
                 (long long)(c.moe_offset >= 0 ? c.moe_offset : 0));
        if (tensor_ne(g, name, ne)) c.expert_ffn_dim = ne[1];
        LOOM_TRY(key_int(g, "llama", "expert_feed_forward_length", false, &c.expert_ffn_dim, err,
                         err_n));
    }
    c.tie_embeddings = loom_gguf_find_tensor(g, "output.weight") < 0;
    int64_t v = -1;
    c.bos_id = c.eos_id = c.eot_id = -1;
    if (loom_gguf_get_int(g, "tokenizer.ggml.bos_token_id", &v) == LOOM_OK) c.bos_id = (int32_t)v;
    if (loom_gguf_get_int(g, "tokenizer.ggml.eos_token_id", &v) == LOOM_OK) c.eos_id = (int32_t)v;
    if (loom_gguf_get_int(g, "tokenizer.ggml.eot_token_id", &v) == LOOM_OK) c.eot_id = (int32_t)v;
    char verr[256];
    if (loom_model_config_validate(&c, verr, sizeof verr) != LOOM_OK)
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "model: invalid config in GGUF metadata: %s", verr);
    *out = c;
    return LOOM_OK;
}

/* ---------------- tensors ---------------- */

typedef struct wspec {
    loom_tensor **dst;
    char name[64];
    int64_t ne[4];
    bool matrix; /* any matmul dtype; else f32 (norms) */
    int64_t gi;  /* index in the GGUF */
} wspec;

typedef struct wlist {
    wspec *v;
    int n, cap;
} wlist;

static bool wadd(wlist *l, loom_tensor **dst, bool matrix, int64_t a, int64_t b, int64_t c,
                 const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 7, 8)))
#endif
    ;
static bool wadd(wlist *l, loom_tensor **dst, bool matrix, int64_t a, int64_t b, int64_t c,
                 const char *fmt, ...) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        wspec *v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return false;
        l->v = v;
        l->cap = cap;
    }
    wspec *w = &l->v[l->n++];
    memset(w, 0, sizeof *w);
    w->dst = dst;
    w->matrix = matrix;
    w->ne[0] = a;
    w->ne[1] = b;
    w->ne[2] = c;
    w->ne[3] = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->name, sizeof w->name, fmt, ap);
    va_end(ap);
    return true;
}

static bool weights_list(loom_model *m, wlist *l) {
    const loom_model_config *c = &m->cfg;
    const int64_t d = c->dim, q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    bool ok = wadd(l, &m->tok_embd, true, d, c->vocab_size, 1, "token_embd.weight") &&
              wadd(l, &m->output_norm, false, d, 1, 1, "output_norm.weight");
    if (!c->tie_embeddings)
        ok = ok && wadd(l, &m->output, true, d, c->vocab_size, 1, "output.weight");
    for (int64_t i = 0; i < c->n_layers && ok; i++) {
        llama_layer *L = &m->layers[i];
        long long n = (long long)i;
        ok = wadd(l, &L->attn_norm, false, d, 1, 1, "blk.%lld.attn_norm.weight", n) &&
             wadd(l, &L->wq, true, d, q, 1, "blk.%lld.attn_q.weight", n) &&
             wadd(l, &L->wk, true, d, kv, 1, "blk.%lld.attn_k.weight", n) &&
             wadd(l, &L->wv, true, d, kv, 1, "blk.%lld.attn_v.weight", n) &&
             wadd(l, &L->wo, true, q, d, 1, "blk.%lld.attn_output.weight", n) &&
             wadd(l, &L->ffn_norm, false, d, 1, 1, "blk.%lld.ffn_norm.weight", n);
        L->moe = loom_model_config_layer_is_moe(c, i);
        if (!ok) break;
        if (L->moe) {
            const int64_t f = c->expert_ffn_dim, e = c->n_experts;
            ok = wadd(l, &L->router, true, d, e, 1, "blk.%lld.ffn_gate_inp.weight", n) &&
                 wadd(l, &L->gate_exps, true, d, f, e, "blk.%lld.ffn_gate_exps.weight", n) &&
                 wadd(l, &L->up_exps, true, d, f, e, "blk.%lld.ffn_up_exps.weight", n) &&
                 wadd(l, &L->down_exps, true, f, d, e, "blk.%lld.ffn_down_exps.weight", n);
        } else {
            const int64_t f = c->ffn_dim;
            ok = wadd(l, &L->gate, true, d, f, 1, "blk.%lld.ffn_gate.weight", n) &&
                 wadd(l, &L->up, true, d, f, 1, "blk.%lld.ffn_up.weight", n) &&
                 wadd(l, &L->down, true, f, d, 1, "blk.%lld.ffn_down.weight", n);
        }
    }
    return ok;
}

static size_t align_up(size_t n) {
    return (n + W_ALIGN - 1) / W_ALIGN * W_ALIGN;
}

/* Greedy placement of n tensors of nbytes[i] bytes, in order, into buffers
 * of at most max bytes (0 = no limit: one buffer), each tensor at a W_ALIGN
 * offset. Fills buf[i] and off[i]; sizes (room for n entries, at least 1)
 * gets each buffer's size and *n_bufs their number. A tensor larger than max
 * cannot be placed: its index goes to *too_big (else -1) and nothing else is
 * meaningful. Why greedy in order: it keeps a layer's tensors together and
 * the split is deterministic; a tensor never straddles two buffers. */
static void pack_tensors(const size_t *nbytes, int n, size_t max, int *buf, size_t *off,
                         size_t *sizes, int *n_bufs, int *too_big) {
    int nb = 0;
    size_t end = 0; /* bytes used in buffer nb - 1 */
    *too_big = -1;
    for (int i = 0; i < n; i++) {
        if (max && nbytes[i] > max) {
            *too_big = i;
            return;
        }
        size_t at = align_up(end);
        if (nb == 0 || (max && (at > max || nbytes[i] > max - at))) {
            sizes[nb++] = 0;
            at = 0;
        }
        buf[i] = nb - 1;
        off[i] = at;
        end = at + nbytes[i];
        sizes[nb - 1] = end;
    }
    if (nb == 0) sizes[nb++] = 0;
    for (int b = 0; b < nb; b++)
        if (sizes[b] == 0) sizes[b] = W_ALIGN; /* backends refuse empty buffers */
    *n_bufs = nb;
}

/* Allocate n buffers of sizes[i] on be into a new array *out (owned by the
 * model, freed by loom_model_free even when this fails half-way). */
static loom_status alloc_buffers(loom_backend *be, const size_t *sizes, int n, loom_buffer ***out,
                                 int *n_out, const char *what, char *err, size_t err_n) {
    *out = calloc((size_t)n, sizeof **out);
    *n_out = 0;
    if (!*out) return loom_model_fail(err, err_n, LOOM_ERR_OOM, "model: out of memory");
    *n_out = n;
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += sizes[i];
    for (int i = 0; i < n; i++) {
        be->error[0] = '\0';
        loom_status st = loom_buffer_alloc(be, sizes[i], &(*out)[i]);
        if (st != LOOM_OK) {
            if (n == 1)
                return loom_model_fail(
                    err, err_n, st, "model: cannot allocate %s (%zu bytes) on %s: %s", what,
                    sizes[i], be->iface->name, be->error[0] ? be->error : loom_status_str(st));
            return loom_model_fail(
                err, err_n, st,
                "model: cannot allocate %s (%zu bytes in %d buffers; buffer %d: %zu bytes) "
                "on %s: %s",
                what, total, n, i, sizes[i], be->iface->name,
                be->error[0] ? be->error : loom_status_str(st));
        }
    }
    return LOOM_OK;
}

/* Leaf of wg bound to buffer b at offset off. */
static loom_tensor *bound_leaf(loom_graph *wg, loom_dtype t, const int64_t ne[4], loom_buffer *b,
                               size_t off, const char *name) {
    loom_tensor *x = loom_tensor_new(wg, t, 4, ne);
    if (!x) return NULL;
    loom_tensor_set_name(x, "%s", name);
    x->buffer = b;
    x->offset = off;
    x->data = b->host ? (char *)b->host + off : NULL;
    return x;
}

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

static const char *dtype_short(loom_dtype t) {
    return loom_dtype_name(t);
}

loom_status loom_model_load_gguf(const char *path, const loom_model_params *pp, loom_model **out,
                                 char *err, size_t err_n) {
    if (!path || !out)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "model: NULL argument");
    *out = NULL;
    char gerr[512];
    loom_gguf *g = NULL;
    loom_status st = loom_gguf_open(path, &g, gerr, sizeof gerr);
    if (st != LOOM_OK) return loom_model_fail(err, err_n, st, "model: %s", gerr);
    return llama_load_from_gguf(g, path, pp, out, err, err_n);
}

/* Tensor i of g as dtype dst (quantize-on-load): into a malloc'd *out. */
static loom_status requantize(loom_gguf *g, int64_t i, loom_dtype src, loom_dtype dst, int64_t n,
                              void **out) {
    loom_gguf_tensor_info info;
    LOOM_TRY(loom_gguf_tensor(g, i, &info));
    *out = malloc(loom_dtype_nbytes(dst, n) + 1);
    if (!*out) return LOOM_ERR_OOM;
    loom_status s = loom_convert(src, info.data, dst, *out, n);
    if (s != LOOM_OK) {
        free(*out);
        *out = NULL;
    }
    return s;
}

loom_status llama_load_from_gguf(loom_gguf *g, const char *path, const loom_model_params *pp,
                                 loom_model **out, char *err, size_t err_n) {
    *out = NULL;
    loom_model_params p = pp ? *pp : loom_model_default_params();
    loom_status st = LOOM_OK;
    loom_model *m = NULL;
    wlist wl = {0};
    loom_dtype *store = NULL; /* per weight: the dtype it is kept at */
    /* Buffer placement, per weight / per KV tensor: size, buffer index,
     * offset in it; and per buffer: its size. */
    size_t *wsize = NULL, *woff = NULL, *bsize = NULL;
    size_t *kvsize = NULL, *kvoff = NULL, *kvbsize = NULL;
    int *wbuf = NULL, *kvbuf = NULL;
    if (p.kv_dtype != LOOM_F16 && p.kv_dtype != LOOM_F32 && p.kv_dtype != LOOM_Q8_0) {
        st = loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                             "model: KV cache dtype must be f16, q8_0 or f32");
        goto done;
    }
    if (p.quantize) {
        loom_dtype probe;
        const int64_t ne2[2] = {64, 64};
        if (loom_model_store_type("x", 2, ne2, p.quant, &probe) != LOOM_OK) {
            st = loom_model_fail(
                err, err_n, LOOM_ERR_INVALID_ARG,
                "model: cannot quantize weights to %s (f32, f16, bf16, q8_0, q4_0, nf4)",
                loom_dtype_name(p.quant));
            goto done;
        }
    }
    m = calloc(1, sizeof *m);
    if (!m) {
        st = loom_model_fail(err, err_n, LOOM_ERR_OOM, "model: out of memory");
        goto done;
    }
    if ((st = loom_model_config_from_gguf(g, &m->cfg, err, err_n)) != LOOM_OK) goto done;
    const loom_model_config *c = &m->cfg;
    bool rw = false;
    loom_gguf_get_bool(g, "loom.random_weights", &rw);
    m->random_weights = rw;

    /* Backends. */
    m->cpu = loom_registry_find("cpu");
    if (!m->cpu || !loom_registry_available(m->cpu->index)) {
        st = loom_model_fail(err, err_n, LOOM_ERR_UNAVAILABLE,
                             "model: the cpu backend is unavailable");
        goto done;
    }
    char berr[LOOM_ERROR_MAX] = "";
    if ((st = loom_registry_select(p.backend, &m->be, berr, sizeof berr)) != LOOM_OK) {
        st = loom_model_fail(err, err_n, st, "model: %s", berr[0] ? berr : loom_status_str(st));
        goto done;
    }
    m->kv_dtype = p.kv_dtype;
    m->kv_be = be_has_set_rows(m->be, m->kv_dtype) ? m->be : m->cpu;

    /* Tensors: every expected name, shape and dtype. */
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers || !weights_list(m, &wl) || loom_graph_new(&m->wg) != LOOM_OK ||
        !(store = calloc((size_t)wl.n + 1, sizeof *store))) {
        st = loom_model_fail(err, err_n, LOOM_ERR_OOM, "model: out of memory");
        goto done;
    }
    size_t total = 0;
    bool seen[LOOM_DTYPE_COUNT] = {0};
    wsize = calloc((size_t)wl.n + 1, sizeof *wsize);
    woff = calloc((size_t)wl.n + 1, sizeof *woff);
    bsize = calloc((size_t)wl.n + 1, sizeof *bsize);
    wbuf = calloc((size_t)wl.n + 1, sizeof *wbuf);
    if (!wsize || !woff || !bsize || !wbuf) {
        st = loom_model_fail(err, err_n, LOOM_ERR_OOM, "model: out of memory");
        goto done;
    }
    for (int i = 0; i < wl.n; i++) {
        wspec *w = &wl.v[i];
        w->gi = loom_gguf_find_tensor(g, w->name);
        if (w->gi < 0) {
            st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "model: %s: tensor '%s' is missing",
                                 path, w->name);
            goto done;
        }
        loom_gguf_tensor_info info;
        loom_dtype dt;
        loom_gguf_tensor(g, w->gi, &info);
        if (loom_gguf_tensor_dtype(g, w->gi, &dt) != LOOM_OK) {
            st = loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED, "model: %s", loom_gguf_error(g));
            goto done;
        }
        if (memcmp(info.ne, w->ne, sizeof w->ne) != 0) {
            st = loom_model_fail(
                err, err_n, LOOM_ERR_FORMAT,
                "model: %s: tensor '%s' has shape [%lld, %lld, %lld, %lld] but the config "
                "needs [%lld, %lld, %lld, %lld]",
                path, w->name, (long long)info.ne[0], (long long)info.ne[1], (long long)info.ne[2],
                (long long)info.ne[3], (long long)w->ne[0], (long long)w->ne[1],
                (long long)w->ne[2], (long long)w->ne[3]);
            goto done;
        }
        bool ok = w->matrix ? loom_op_weight_dtype_ok(LOOM_OP_MATMUL, dt) : dt == LOOM_F32;
        if (!ok) {
            st = loom_model_fail(
                err, err_n, LOOM_ERR_UNSUPPORTED, "model: %s: tensor '%s' has type %s; %s", path,
                w->name, loom_dtype_name(dt),
                w->matrix ? "matrices must have a matmul weight type" : "norm weights must be f32");
            goto done;
        }
        store[i] = dt;
        if (p.quantize && w->matrix) {
            /* quantize-on-load: the shared export policy (norms are f32
             * already; the router stays f32) */
            loom_model_store_type(w->name, w->ne[2] > 1 ? 3 : 2, w->ne, p.quant, &store[i]);
        }
        if (w->matrix && strstr(w->name, "ffn_gate_inp") == NULL) seen[store[i]] = true;
        wsize[i] = loom_dtype_nbytes(store[i], w->ne[0] * w->ne[1] * w->ne[2]);
        total += wsize[i];
    }
    size_t k = 0;
    for (int t = 0; t < LOOM_DTYPE_COUNT; t++)
        if (seen[t] && k < sizeof m->wtypes - 12)
            k += (size_t)snprintf(m->wtypes + k, sizeof m->wtypes - k, "%s%s", k ? "+" : "",
                                  dtype_short((loom_dtype)t));

    /* Weights: buffers on the run backend, filled tensor by tensor. One
     * buffer unless the backend caps a buffer's size (Vulkan's
     * maxMemoryAllocationSize: an 8B model at f16 is ~16 GB, a driver may
     * allow 4 GiB), then as many as needed, packed greedily in order. */
    const size_t wmax = loom_backend_max_buffer(m->be);
    int n_wb = 0, big = -1;
    pack_tensors(wsize, wl.n, wmax, wbuf, woff, bsize, &n_wb, &big);
    if (big >= 0) {
        st = loom_model_fail(
            err, err_n, LOOM_ERR_UNSUPPORTED,
            "model: tensor '%s' (%zu bytes as %s) is larger than the %s backend's maximum "
            "buffer size (%zu bytes); a tensor cannot be split across buffers",
            wl.v[big].name, wsize[big], loom_dtype_name(store[big]), m->be->iface->name, wmax);
        goto done;
    }
    if ((st = alloc_buffers(m->be, bsize, n_wb, &m->wbufs, &m->n_wbufs, "the weights", err,
                            err_n)) != LOOM_OK)
        goto done;
    size_t done_bytes = 0;
    for (int i = 0; i < wl.n; i++) {
        wspec *w = &wl.v[i];
        loom_gguf_tensor_info info;
        loom_dtype dt;
        loom_gguf_tensor(g, w->gi, &info);
        loom_gguf_tensor_dtype(g, w->gi, &dt);
        loom_buffer *wb = m->wbufs[wbuf[i]];
        loom_tensor *t = bound_leaf(m->wg, store[i], w->ne, wb, woff[i], w->name);
        if (!t) {
            st = loom_model_fail(err, err_n, LOOM_ERR_OOM, "model: out of memory");
            goto done;
        }
        const void *src = info.data;
        size_t nbytes = info.nbytes;
        void *conv = NULL;
        if (store[i] != dt) {
            const int64_t n = w->ne[0] * w->ne[1] * w->ne[2];
            if ((st = requantize(g, w->gi, dt, store[i], n, &conv)) != LOOM_OK) {
                st = loom_model_fail(err, err_n, st, "model: converting '%s' from %s to %s: %s",
                                     w->name, loom_dtype_name(dt), loom_dtype_name(store[i]),
                                     loom_status_str(st));
                goto done;
            }
            src = conv;
            nbytes = loom_dtype_nbytes(store[i], n);
        }
        st = m->be->iface->buffer_upload(wb, woff[i], src, nbytes);
        free(conv);
        if (st != LOOM_OK) {
            st = loom_model_fail(err, err_n, st, "model: uploading '%s' to %s failed: %s", w->name,
                                 m->be->iface->name, m->be->error);
            goto done;
        }
        *w->dst = t;
        done_bytes += nbytes;
        if (p.progress) p.progress(p.progress_ud, total ? (double)done_bytes / (double)total : 1);
    }
    m->wbytes = done_bytes;
    if (p.progress) p.progress(p.progress_ud, 1.0);

    /* KV cache. */
    m->n_ctx = p.n_ctx > 0 ? p.n_ctx : (c->max_ctx < 4096 ? c->max_ctx : 4096);
    m->n_slots = p.n_slots > 0 ? p.n_slots : 1;
    if (m->n_slots > LLAMA_MAX_SEQ) {
        st = loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "model: at most %d slots",
                             LLAMA_MAX_SEQ);
        goto done;
    }
    const int64_t kv_dim = c->n_kv_heads * c->head_dim;
    if (m->kv_dtype == LOOM_Q8_0 && kv_dim % 32 != 0) {
        st = loom_model_fail(
            err, err_n, LOOM_ERR_INVALID_ARG,
            "model: a q8_0 KV cache needs n_kv_heads*head_dim (%lld) divisible by 32",
            (long long)kv_dim);
        goto done;
    }
    const int64_t kv_ne[4] = {kv_dim, m->n_ctx, m->n_slots, 1};
    /* K and V of every layer: 2 * n_layers tensors of kv_one bytes, packed
     * like the weights (several buffers only when the backend caps them). */
    const size_t kv_one = loom_dtype_nbytes(m->kv_dtype, kv_dim * m->n_ctx * m->n_slots);
    const int n_kv = (int)(2 * c->n_layers);
    kvoff = calloc((size_t)n_kv + 1, sizeof *kvoff);
    kvsize = calloc((size_t)n_kv + 1, sizeof *kvsize);
    kvbsize = calloc((size_t)n_kv + 1, sizeof *kvbsize);
    kvbuf = calloc((size_t)n_kv + 1, sizeof *kvbuf);
    if (!kvoff || !kvsize || !kvbsize || !kvbuf) {
        st = loom_model_fail(err, err_n, LOOM_ERR_OOM, "model: out of memory");
        goto done;
    }
    for (int i = 0; i < n_kv; i++)
        kvsize[i] = kv_one;
    const size_t kvmax = loom_backend_max_buffer(m->kv_be);
    int n_kvb = 0;
    pack_tensors(kvsize, n_kv, kvmax, kvbuf, kvoff, kvbsize, &n_kvb, &big);
    if (big >= 0) {
        st = loom_model_fail(
            err, err_n, LOOM_ERR_UNSUPPORTED,
            "model: KV cache tensor 'cache_k.0' ([%lld, %lld, %d] %s, %zu bytes) is larger "
            "than the %s backend's maximum buffer size (%zu bytes); use a smaller context "
            "or fewer slots",
            (long long)kv_dim, (long long)m->n_ctx, m->n_slots, loom_dtype_name(m->kv_dtype),
            kv_one, m->kv_be->iface->name, kvmax);
        goto done;
    }
    if ((st = alloc_buffers(m->kv_be, kvbsize, n_kvb, &m->kvbufs, &m->n_kvbufs, "the KV cache", err,
                            err_n)) != LOOM_OK)
        goto done;
    for (int64_t i = 0; i < c->n_layers; i++) {
        char nk[32], nv[32];
        snprintf(nk, sizeof nk, "cache_k.%lld", (long long)i);
        snprintf(nv, sizeof nv, "cache_v.%lld", (long long)i);
        const int ik = (int)(2 * i), iv = (int)(2 * i + 1);
        m->layers[i].k_cache =
            bound_leaf(m->wg, m->kv_dtype, kv_ne, m->kvbufs[kvbuf[ik]], kvoff[ik], nk);
        m->layers[i].v_cache =
            bound_leaf(m->wg, m->kv_dtype, kv_ne, m->kvbufs[kvbuf[iv]], kvoff[iv], nv);
        if (!m->layers[i].k_cache || !m->layers[i].v_cache) {
            st = loom_model_fail(err, err_n, LOOM_ERR_OOM, "model: out of memory");
            goto done;
        }
    }
    m->slot_pos = calloc((size_t)m->n_slots, sizeof *m->slot_pos);
    if (!m->slot_pos) {
        st = loom_model_fail(err, err_n, LOOM_ERR_OOM, "model: out of memory");
        goto done;
    }

    /* Tokenizer (optional). */
    if (loom_gguf_find_kv(g, "tokenizer.ggml.tokens") >= 0) {
        char terr[512];
        if ((st = loom_tokenizer_load_gguf(g, &m->tok, terr, sizeof terr)) != LOOM_OK) {
            st = loom_model_fail(err, err_n, st, "model: %s", terr);
            goto done;
        }
    }
    st = LOOM_OK;
done:
    free(wl.v);
    free(store);
    free(wsize);
    free(woff);
    free(bsize);
    free(wbuf);
    free(kvsize);
    free(kvoff);
    free(kvbsize);
    free(kvbuf);
    loom_gguf_close(g); /* weights were copied into the backend buffer */
    if (st != LOOM_OK) {
        loom_model_free(m);
        return st;
    }
    *out = m;
    return LOOM_OK;
}

void loom_model_free(loom_model *m) {
    if (!m) return;
    for (int i = 0; i < LLAMA_GRAPH_CACHE; i++)
        llama_graph_release(&m->cache[i]);
    loom_tokenizer_free(m->tok);
    loom_graph_free(m->wg);
    for (int i = 0; i < m->n_wbufs; i++)
        loom_buffer_free(m->wbufs[i]);
    for (int i = 0; i < m->n_kvbufs; i++)
        loom_buffer_free(m->kvbufs[i]);
    free(m->wbufs);
    free(m->kvbufs);
    free(m->layers);
    free(m->slot_pos);
    free(m);
}

const loom_model_config *loom_model_config_of(const loom_model *m) {
    return &m->cfg;
}
const loom_tokenizer *loom_model_tokenizer(const loom_model *m) {
    return m->tok;
}
bool loom_model_random_weights(const loom_model *m) {
    return m->random_weights;
}
const char *loom_model_backend_name(const loom_model *m) {
    return m->be->iface->name;
}
const char *loom_model_kv_backend_name(const loom_model *m) {
    return m->kv_be->iface->name;
}
int64_t loom_model_n_ctx(const loom_model *m) {
    return m->n_ctx;
}
int loom_model_n_slots(const loom_model *m) {
    return m->n_slots;
}
size_t loom_model_weight_bytes(const loom_model *m) {
    return m->wbytes;
}
const char *loom_model_weight_types(const loom_model *m) {
    return m->wtypes;
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
void loom_model_graph_stats(const loom_model *m, int *n_builds, int *n_runs) {
    if (n_builds) *n_builds = m->n_builds;
    if (n_runs) *n_runs = m->n_runs;
}
