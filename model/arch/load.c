/* model/arch/load.c - loom_model from a GGUF file (or a Hugging Face
 * directory through a temporary GGUF), in steps: the config from metadata
 * and the backends; a plan of every tensor, checked by name, shape and
 * dtype; weight buffers on the run backend (one, or several when the
 * backend caps a buffer's size); upload, converting for quantize-on-load;
 * the KV cache (generate/kv_cache.c); the embedded tokenizer. */
#define _POSIX_C_SOURCE 200809L /* mkstemp */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/model_internal.h"
#include "runtime/comm.h"

loom_model_params loom_model_default_params(void) {
    loom_model_params p;
    memset(&p, 0, sizeof p);
    p.kv_dtype = LOOM_F16;
    p.split = LOOM_SPLIT_LAYER;
    p.gpu_layers = LOOM_GPU_LAYERS_AUTO;
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

/* ---------------- tensors: the plan ---------------- */

/* One weight the config calls for: where the model keeps it, what the GGUF
 * holds, the dtype it is stored at and where it is placed. */
typedef struct wplan {
    loom_tensor **dst;
    char name[64];
    int64_t ne[4];
    bool matrix;      /* any matmul dtype; else f32 (norms) */
    int64_t gi;       /* index in the GGUF */
    loom_dtype src;   /* dtype in the file */
    loom_dtype store; /* dtype kept at (quantize-on-load may convert) */
    size_t nbytes;    /* bytes as store */
    int layer;        /* blk.N: N; token_embd: -1; output_norm, output: -2 */
    int dev;          /* index in m->devs (docs/adr/0030) */
    loom_place at;    /* buffer (index in m->wbufs) and offset */
    int tp_dim;       /* tensor parallelism (arch/tp.c): -1, or the dim sliced */
    int64_t tp_start; /* ... from here, ne[tp_dim] long (ne is the slice's) */
    int64_t file_ne[4];
} wplan;

typedef struct wlist {
    wplan *v;
    int n, cap;
    size_t total; /* bytes of all weights as stored (the progress denominator) */
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
        wplan *v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return false;
        l->v = v;
        l->cap = cap;
    }
    wplan *w = &l->v[l->n++];
    memset(w, 0, sizeof *w);
    w->tp_dim = -1;
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
    w->layer = !strncmp(w->name, "blk.", 4)            ? atoi(w->name + 4)
               : !strcmp(w->name, "token_embd.weight") ? -1
                                                       : -2;
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
        loom_llama_layer *L = &m->layers[i];
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

/* ---------------- loading, step by step ---------------- */

/* Step 0: the parameters that need no file. */
static loom_status check_params(const loom_model_params *p, char *err, size_t err_n) {
    if (p->kv_dtype != LOOM_F16 && p->kv_dtype != LOOM_F32 && p->kv_dtype != LOOM_Q8_0)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "model: KV cache dtype must be f16, q8_0 or f32");
    if (p->split != LOOM_SPLIT_LAYER && p->split != LOOM_SPLIT_NONE)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "model: split must be LOOM_SPLIT_LAYER or LOOM_SPLIT_NONE");
    if (p->gpu_layers < LOOM_GPU_LAYERS_AUTO)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "model: gpu_layers must be LOOM_GPU_LAYERS_AUTO or >= 0");
    if (p->n_tensor_split < 0 || p->n_tensor_split > LOOM_MAX_DEVICES)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "model: n_tensor_split must be 0..%d", LOOM_MAX_DEVICES);
    float share_sum = 0;
    for (int i = 0; i < p->n_tensor_split; i++) {
        if (!(p->tensor_split[i] >= 0 && p->tensor_split[i] <= 1e6f))
            return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                                   "model: tensor split share %d must be 0..1e6", i);
        share_sum += p->tensor_split[i];
    }
    if (p->n_tensor_split > 0 && !(share_sum > 0))
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "model: the tensor split shares add up to 0");
    if (p->quantize) {
        loom_dtype probe;
        const int64_t ne2[2] = {64, 64};
        if (loom_model_store_type("x", 2, ne2, p->quant, &probe) != LOOM_OK)
            return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                                   "model: cannot quantize weights to %s (f32, f16, bf16, q8_0, "
                                   "q4_0, q4_1, q5_0, q5_1, nf4)",
                                   loom_dtype_name(p->quant));
    }
    return LOOM_OK;
}

/* Step 1: the config from the header's metadata, and the backends. */
static loom_status read_config(loom_model *m, loom_gguf *g, const loom_model_params *p, char *err,
                               size_t err_n) {
    LOOM_TRY(loom_model_config_from_gguf(g, &m->cfg, err, err_n));
    bool rw = false;
    loom_gguf_get_bool(g, "loom.random_weights", &rw);
    m->random_weights = rw;
    m->cpu = loom_registry_find("cpu");
    if (!m->cpu || !loom_registry_available(m->cpu->index))
        return loom_model_fail(err, err_n, LOOM_ERR_UNAVAILABLE,
                               "model: the cpu backend is unavailable");
    /* The run backend, or the devices of a layer split (arch/split.c). */
    return loom_split_devices(m, p, err, err_n);
}

/* Step 2: plan the tensors: every name the config calls for, checked in the
 * GGUF by shape and dtype, with the dtype it will be stored at. */
static loom_status plan_weights(loom_model *m, loom_gguf *g, const char *path,
                                const loom_model_params *p, wlist *wl, char *err, size_t err_n) {
    const loom_model_config *c = &m->cfg;
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers || !weights_list(m, wl) || loom_graph_new(&m->wg) != LOOM_OK)
        return loom_model_fail(err, err_n, LOOM_ERR_OOM, "model: out of memory");
    bool seen[LOOM_DTYPE_COUNT] = {0};
    for (int i = 0; i < wl->n; i++) {
        wplan *w = &wl->v[i];
        w->gi = loom_gguf_find_tensor(g, w->name);
        if (w->gi < 0)
            return loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "model: %s: tensor '%s' is missing",
                                   path, w->name);
        loom_gguf_tensor_info info;
        loom_dtype dt;
        loom_gguf_tensor(g, w->gi, &info);
        if (loom_gguf_tensor_dtype(g, w->gi, &dt) != LOOM_OK)
            return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED, "model: %s",
                                   loom_gguf_error(g));
        if (memcmp(info.ne, w->ne, sizeof w->ne) != 0)
            return loom_model_fail(
                err, err_n, LOOM_ERR_FORMAT,
                "model: %s: tensor '%s' has shape [%lld, %lld, %lld, %lld] but the config "
                "needs [%lld, %lld, %lld, %lld]",
                path, w->name, (long long)info.ne[0], (long long)info.ne[1], (long long)info.ne[2],
                (long long)info.ne[3], (long long)w->ne[0], (long long)w->ne[1],
                (long long)w->ne[2], (long long)w->ne[3]);
        if (w->matrix ? !loom_op_weight_dtype_ok(LOOM_OP_MATMUL, dt) : dt != LOOM_F32) {
            char types[128] = "";
            loom_op_weight_dtypes(LOOM_OP_MATMUL, types, sizeof types);
            return loom_model_fail(
                err, err_n, LOOM_ERR_UNSUPPORTED, "model: %s: tensor '%s' has type %s; %s%s", path,
                w->name, loom_dtype_name(dt),
                w->matrix ? "matrices must be one of " : "norm weights must be f32",
                w->matrix ? types : "");
        }
        w->src = w->store = dt;
        if (p->quantize && w->matrix) {
            /* quantize-on-load: the shared export policy (norms are f32
             * already; the router stays f32) */
            loom_model_store_type(w->name, w->ne[2] > 1 ? 3 : 2, w->ne, p->quant, &w->store);
        }
        if (w->matrix && strstr(w->name, "ffn_gate_inp") == NULL) seen[w->store] = true;
        w->nbytes = loom_dtype_nbytes(w->store, w->ne[0] * w->ne[1] * w->ne[2]);
        wl->total += w->nbytes;
    }
    size_t k = 0;
    for (int t = 0; t < LOOM_DTYPE_COUNT; t++)
        if (seen[t] && k < sizeof m->wtypes - 12)
            k += (size_t)snprintf(m->wtypes + k, sizeof m->wtypes - k, "%s%s", k ? "+" : "",
                                  loom_dtype_name((loom_dtype)t));
    return LOOM_OK;
}

/* Step 2a: tensor parallelism (docs/adr/0034, arch/tp.c): this rank's
 * slice of every split weight, its store type re-picked for the slice's
 * shape, and the config of the shard. */
static loom_status tp_plan(loom_model *m, wlist *wl, const loom_model_params *p, char *err,
                           size_t err_n) {
    m->tp = p->tp > 1 ? p->tp : 1;
    if (m->tp == 1) return LOOM_OK;
    if (!p->comm || loom_comm_size(p->comm) != p->tp)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "model: --tp %d needs %d ranks (start it with mpirun; this run has "
                               "%d)",
                               p->tp, p->tp, loom_comm_size(p->comm));
    m->comm = p->comm;
    m->tp_rank = loom_comm_rank(p->comm);
    LOOM_TRY(loom_tp_local_config(&m->cfg, m->tp, err, err_n));
    wl->total = 0;
    for (int i = 0; i < wl->n; i++) {
        wplan *w = &wl->v[i];
        memcpy(w->file_ne, w->ne, sizeof w->ne);
        LOOM_TRY(loom_tp_shard_weight(w->name, w->src, m->tp, m->tp_rank, w->ne, &w->tp_dim,
                                      &w->tp_start, err, err_n));
        if (w->tp_dim >= 0) {
            w->store = w->src;
            if (p->quantize && w->matrix)
                loom_model_store_type(w->name, w->ne[2] > 1 ? 3 : 2, w->ne, p->quant, &w->store);
            w->nbytes = loom_dtype_nbytes(w->store, w->ne[0] * w->ne[1] * w->ne[2]);
        }
        wl->total += w->nbytes;
    }
    return LOOM_OK;
}

/* Step 2b: the device of every weight (docs/adr/0030). LOOM_SPLIT_NONE:
 * all on the run backend; a layer split: the plan's (arch/split.c) from the
 * bytes each layer, the embedding and the head take as stored. */
static loom_status assign_devices(loom_model *m, wlist *wl, const loom_model_params *p, char *err,
                                  size_t err_n) {
    const int L = (int)m->cfg.n_layers;
    m->layer_dev = calloc((size_t)(L > 0 ? L : 1), sizeof *m->layer_dev);
    m->kv_dev = calloc((size_t)(L > 0 ? L : 1), sizeof *m->kv_dev);
    size_t *lb = calloc((size_t)(L > 0 ? L : 1), sizeof *lb);
    if (!m->layer_dev || !m->kv_dev || !lb) {
        free(lb);
        return loom_model_fail(err, err_n, LOOM_ERR_OOM, "model: out of memory");
    }
    loom_status st = LOOM_OK;
    if (p->split == LOOM_SPLIT_LAYER) {
        size_t embd = 0, head = 0;
        for (int i = 0; i < wl->n; i++) {
            const wplan *w = &wl->v[i];
            if (w->layer >= 0 && w->layer < L)
                lb[w->layer] += w->nbytes;
            else if (w->layer == -1)
                embd += w->nbytes;
            else
                head += w->nbytes;
        }
        st = loom_split_make(m, p, lb, embd, head, err, err_n);
    }
    free(lb);
    if (st != LOOM_OK) return st;
    int be = 0; /* m->be's index when nothing is split */
    while (m->devs[be] != m->be)
        be++;
    for (int i = 0; i < wl->n; i++) {
        wplan *w = &wl->v[i];
        w->dev = !m->split        ? be
                 : w->layer >= 0  ? m->layer_dev[w->layer]
                 : w->layer == -1 ? m->embd_dev
                                  : m->head_dev;
    }
    if (!m->split) {
        for (int l = 0; l < L; l++)
            m->layer_dev[l] = be;
        m->embd_dev = m->head_dev = be;
    }
    return LOOM_OK;
}

/* Step 3: allocate the weight buffers, per device (one device unless the
 * layers are split). One buffer per device unless the backend caps a
 * buffer's size (Vulkan's maxMemoryAllocationSize: an 8B model at f16 is
 * ~16 GB, a driver may allow 4 GiB), then as many as needed, packed greedily
 * in order (loom_pack_add). On a non-cpu device of a layer split, the
 * weights, then the KV cache and activations, are checked against its free
 * memory first, so that what does not fit is named with a --gpu-layers that
 * would (the plan's), rather than left to the driver. */
static loom_status place_weights(loom_model *m, wlist *wl, const loom_model_params *p, char *err,
                                 size_t err_n) {
    loom_status st = LOOM_OK;
    for (int d = 0; d < m->n_devs && st == LOOM_OK; d++) {
        loom_backend *be = m->devs[d];
        loom_pack pk = {.max = loom_backend_max_buffer(be)};
        const size_t cap = m->has_plan && !m->plan.dev[d].cpu ? m->plan.dev[d].mem_free : 0;
        size_t used = 0;
        int first_w = -1;
        for (int i = 0; i < wl->n && st == LOOM_OK; i++) {
            wplan *w = &wl->v[i];
            if (w->dev != d) continue;
            if (first_w < 0) first_w = i;
            used += w->nbytes;
            if (cap && used > cap) {
                loom_pack_free(&pk);
                return loom_model_fail(
                    err, err_n, LOOM_ERR_OOM,
                    "model: out of memory on %s at tensor '%s' (%zu bytes): the weights placed "
                    "there reach %.1f MiB of %.1f MiB free; %d of %d layers fit off the cpu: "
                    "try --gpu-layers %d (or auto)",
                    loom_backend_name(be), w->name, w->nbytes, (double)used / (1 << 20),
                    (double)cap / (1 << 20), m->plan.max_fitting, m->plan.n_layers,
                    m->plan.max_fitting);
            }
            st = loom_pack_add(&pk, w->nbytes, &w->at);
            if (st == LOOM_ERR_UNSUPPORTED)
                loom_model_fail(
                    err, err_n, st,
                    "model: tensor '%s' (%zu bytes as %s) is larger than the %s backend's maximum "
                    "buffer size (%zu bytes); a tensor cannot be split across buffers",
                    w->name, w->nbytes, loom_dtype_name(w->store), loom_backend_name(be), pk.max);
        }
        if (cap && st == LOOM_OK && m->plan.need_bytes[d] > cap) {
            int l = m->plan.first[d];
            loom_pack_free(&pk);
            return loom_model_fail(
                err, err_n, LOOM_ERR_OOM,
                "model: out of memory on %s at the KV cache 'cache_k.%d': weights %.1f MiB + KV "
                "cache %.1f MiB (ctx %lld, %s) + activations %.1f MiB > %.1f MiB free; %d of %d "
                "layers fit off the cpu: try --gpu-layers %d, a smaller --ctx or --kv-type q8_0",
                loom_backend_name(be), l, (double)m->plan.weight_bytes[d] / (1 << 20),
                (double)m->plan.kv_bytes[d] / (1 << 20), (long long)loom_kv_cache_n_ctx(&m->cfg, p),
                loom_dtype_name(p->kv_dtype), (double)m->plan.act_bytes[d] / (1 << 20),
                (double)cap / (1 << 20), m->plan.max_fitting, m->plan.n_layers,
                m->plan.max_fitting);
        }
        if (first_w < 0 || st != LOOM_OK) {
            loom_pack_free(&pk);
            continue;
        }
        st = loom_pack_finish(&pk);
        if (st == LOOM_ERR_OOM) loom_model_fail(err, err_n, st, "model: out of memory");
        /* This device's buffers follow the earlier devices' in m->wbufs. */
        const int base = m->n_wbufs;
        loom_buffer **bufs = NULL;
        int n_bufs = 0;
        if (st == LOOM_OK) {
            char what[160];
            if (m->split)
                snprintf(what, sizeof what,
                         "the weights from '%s' on (a layer split: %d of %d "
                         "layers fit off the cpu, try --gpu-layers %d)",
                         wl->v[first_w].name, m->plan.max_fitting, m->plan.n_layers,
                         m->plan.max_fitting);
            else
                snprintf(what, sizeof what, "the weights");
            st = loom_alloc_buffers(be, pk.sizes, pk.n, &bufs, &n_bufs, what, err, err_n);
        }
        if (n_bufs) { /* append, so loom_model_free frees them even after a failure */
            loom_buffer **all = realloc(m->wbufs, (size_t)(base + n_bufs) * sizeof *all);
            if (!all) {
                for (int k = 0; k < n_bufs; k++)
                    loom_buffer_free(bufs[k]);
                st = loom_model_fail(err, err_n, LOOM_ERR_OOM, "model: out of memory");
            } else {
                memcpy(all + base, bufs, (size_t)n_bufs * sizeof *bufs);
                m->wbufs = all;
                m->n_wbufs = base + n_bufs;
            }
        }
        free(bufs);
        for (int i = 0; i < wl->n && st == LOOM_OK; i++)
            if (wl->v[i].dev == d) wl->v[i].at.buf += base;
        loom_pack_free(&pk);
    }
    return st;
}

/* Step 4: upload every weight, converting it first when quantize-on-load
 * stores it at another dtype. */
static loom_status upload_weights(loom_model *m, loom_gguf *g, const wlist *wl,
                                  const loom_model_params *p, char *err, size_t err_n) {
    size_t done_bytes = 0;
    for (int i = 0; i < wl->n; i++) {
        const wplan *w = &wl->v[i];
        loom_gguf_tensor_info info;
        loom_gguf_tensor(g, w->gi, &info);
        loom_buffer *wb = m->wbufs[w->at.buf];
        loom_tensor *t = loom_bound_leaf(m->wg, w->store, w->ne, wb, w->at.off, w->name);
        if (!t) return loom_model_fail(err, err_n, LOOM_ERR_OOM, "model: out of memory");
        const void *src = info.data;
        size_t nbytes = info.nbytes;
        void *conv = NULL, *slice = NULL;
        loom_status st;
        if (w->tp_dim >= 0) { /* this rank's part (tp_plan) */
            st = loom_tp_slice(w->src, info.data, w->file_ne, w->tp_dim, w->tp_start,
                               w->ne[w->tp_dim], &slice, &nbytes);
            if (st != LOOM_OK)
                return loom_model_fail(err, err_n, st, "model: slicing '%s' for --tp failed",
                                       w->name);
            src = slice;
        }
        if (w->store != w->src) {
            const int64_t n = w->ne[0] * w->ne[1] * w->ne[2];
            st = slice ? ((conv = malloc(loom_dtype_nbytes(w->store, n) + 1))
                              ? loom_convert(w->src, slice, w->store, conv, n)
                              : LOOM_ERR_OOM)
                       : requantize(g, w->gi, w->src, w->store, n, &conv);
            free(slice);
            slice = NULL;
            if (st != LOOM_OK) free(conv);
            if (st != LOOM_OK)
                return loom_model_fail(err, err_n, st, "model: converting '%s' from %s to %s: %s",
                                       w->name, loom_dtype_name(w->src), loom_dtype_name(w->store),
                                       loom_status_str(st));
            src = conv;
            nbytes = loom_dtype_nbytes(w->store, n);
        }
        st = wb->backend->iface->buffer_upload(wb, w->at.off, src, nbytes);
        free(conv);
        free(slice);
        if (st != LOOM_OK)
            return loom_model_fail(err, err_n, st, "model: uploading '%s' to %s failed: %s",
                                   w->name, loom_backend_name(wb->backend), wb->backend->error);
        *w->dst = t;
        done_bytes += nbytes;
        if (p->progress)
            p->progress(p->progress_ud, wl->total ? (double)done_bytes / (double)wl->total : 1);
    }
    m->wbytes = done_bytes;
    if (p->progress) p->progress(p->progress_ud, 1.0);
    return LOOM_OK;
}

/* Step 6: the embedded tokenizer (optional). */
static loom_status load_tokenizer(loom_model *m, loom_gguf *g, char *err, size_t err_n) {
    if (loom_gguf_find_kv(g, "tokenizer.ggml.tokens") < 0) return LOOM_OK;
    char terr[512];
    loom_status st = loom_tokenizer_load_gguf(g, &m->tok, terr, sizeof terr);
    if (st != LOOM_OK) return loom_model_fail(err, err_n, st, "model: %s", terr);
    return LOOM_OK;
}

/* Load from an open GGUF; takes ownership of g (closed before returning, on
 * success and failure). path only labels messages. */
loom_status loom_model_load_open_gguf(loom_gguf *g, const char *path, const loom_model_params *pp,
                                      loom_model **out, char *err, size_t err_n) {
    *out = NULL;
    const loom_model_params p = pp ? *pp : loom_model_default_params();
    loom_model *m = NULL;
    wlist wl = {0};
    loom_status st = check_params(&p, err, err_n);
    if (st == LOOM_OK && !(m = calloc(1, sizeof *m)))
        st = loom_model_fail(err, err_n, LOOM_ERR_OOM, "model: out of memory");
    if (st == LOOM_OK) st = read_config(m, g, &p, err, err_n);
    if (st == LOOM_OK) st = plan_weights(m, g, path, &p, &wl, err, err_n);
    if (st == LOOM_OK) st = tp_plan(m, &wl, &p, err, err_n);
    if (st == LOOM_OK) st = assign_devices(m, &wl, &p, err, err_n);
    if (st == LOOM_OK) st = place_weights(m, &wl, &p, err, err_n);
    if (st == LOOM_OK) st = upload_weights(m, g, &wl, &p, err, err_n);
    /* Step 5: generate/kv_cache.c */
    if (st == LOOM_OK) st = loom_kv_cache_alloc(m, &p, err, err_n);
    if (st == LOOM_OK) st = load_tokenizer(m, g, err, err_n);
    free(wl.v);
    loom_gguf_close(g); /* weights were copied into the backend buffers */
    if (st != LOOM_OK) {
        loom_model_free(m);
        return st;
    }
    *out = m;
    return LOOM_OK;
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
    return loom_model_load_open_gguf(g, path, pp, out, err, err_n);
}

/* ---------------- model sources: GGUF file or HF directory ---------------- */

bool loom_model_path_is_hf(const char *path) {
    struct stat sb;
    if (!path || stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) return false;
    char p[4096];
    snprintf(p, sizeof p, "%s/config.json", path);
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

loom_status loom_model_load(const char *path, const loom_model_params *pp, loom_model **out,
                            char *err, size_t err_n) {
    if (!path || !out)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "model: NULL argument");
    *out = NULL;
    if (!loom_model_path_is_hf(path)) {
        struct stat sb;
        if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
            return loom_model_fail(
                err, err_n, LOOM_ERR_IO,
                "model: %s is a directory without config.json (expected a GGUF file or "
                "a Hugging Face checkpoint directory)",
                path);
        return loom_model_load_gguf(path, pp, out, err, err_n);
    }
    loom_model_params p = pp ? *pp : loom_model_default_params();
    loom_dtype wtype = LOOM_DTYPE_COUNT; /* lossless */
    if (p.quantize) {
        loom_dtype probe;
        const int64_t ne[2] = {64, 64};
        if (loom_model_store_type("x", 2, ne, p.quant, &probe) != LOOM_OK)
            return loom_model_fail(
                err, err_n, LOOM_ERR_INVALID_ARG,
                "model: cannot quantize to %s (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, nf4)",
                loom_dtype_name(p.quant));
        if (!loom_dtype_is_nf4(p.quant)) {
            wtype = p.quant; /* the converter writes the final type: nothing left to do */
            p.quantize = false;
        }
    }
    /* The temporary GGUF: converted, loaded (weights are copied into the
     * backend buffer), removed. Why a file and not memory: the reader and
     * the loader work on a mapped file, and the page cache, not the heap,
     * then holds the converted bytes (ADR 0012). */
    const char *td = getenv("TMPDIR");
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s/loom-hf-XXXXXX", td && *td ? td : "/tmp");
    int fd = mkstemp(tmp);
    if (fd < 0)
        return loom_model_fail(
            err, err_n, LOOM_ERR_IO,
            "model: cannot create a temporary file in %s for converting %s (set TMPDIR)",
            td && *td ? td : "/tmp", path);
    close(fd);
    loom_status s = loom_hf_dir_to_gguf(path, wtype, tmp, NULL, NULL, err, err_n);
    loom_gguf *g = NULL;
    char e[512];
    if (s == LOOM_OK && (s = loom_gguf_open(tmp, &g, e, sizeof e)) != LOOM_OK)
        loom_model_fail(err, err_n, s, "model: converted %s: %s", path, e);
    unlink(tmp); /* mapped (or failed): the name is no longer needed */
    if (s != LOOM_OK) return s;
    return loom_model_load_open_gguf(g, path, &p, out, err, err_n);
}

void loom_model_free(loom_model *m) {
    if (!m) return;
    for (int i = 0; i < LOOM_LLAMA_GRAPH_CACHE; i++)
        loom_llama_graph_release(&m->cache[i]);
    loom_tokenizer_free(m->tok);
    loom_graph_free(m->wg);
    for (int i = 0; i < m->n_wbufs; i++)
        loom_buffer_free(m->wbufs[i]);
    for (int i = 0; i < m->n_kvbufs; i++)
        loom_buffer_free(m->kvbufs[i]);
    free(m->wbufs);
    free(m->kvbufs);
    free(m->tp_buf);
    free(m->layers);
    free(m->layer_dev);
    free(m->kv_dev);
    loom_kv_cache_free(m);
    free(m);
}

const loom_split_plan *loom_model_split_plan(const loom_model *m) {
    return m && m->has_plan ? &m->plan : NULL;
}

loom_status loom_model_plan_split(const char *path, const loom_model_params *pp,
                                  loom_split_plan *out, char *err, size_t err_n) {
    if (!path || !out)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "model: NULL argument");
    loom_model_params p = pp ? *pp : loom_model_default_params();
    p.split = LOOM_SPLIT_LAYER; /* a plan is what is asked for */
    char gerr[512];
    loom_gguf *g = NULL;
    loom_status st = loom_gguf_open(path, &g, gerr, sizeof gerr);
    if (st != LOOM_OK) return loom_model_fail(err, err_n, st, "model: %s", gerr);
    /* The loader's steps up to the plan; no buffer is allocated. */
    loom_model *m = calloc(1, sizeof *m);
    wlist wl = {0};
    st = m ? check_params(&p, err, err_n)
           : loom_model_fail(err, err_n, LOOM_ERR_OOM, "model: out of memory");
    if (st == LOOM_OK) st = read_config(m, g, &p, err, err_n);
    if (st == LOOM_OK) st = plan_weights(m, g, path, &p, &wl, err, err_n);
    if (st == LOOM_OK) st = assign_devices(m, &wl, &p, err, err_n);
    if (st == LOOM_OK) *out = m->plan;
    free(wl.v);
    loom_gguf_close(g);
    loom_model_free(m);
    return st;
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
size_t loom_model_weight_bytes(const loom_model *m) {
    return m->wbytes;
}
const char *loom_model_weight_types(const loom_model *m) {
    return m->wtypes;
}
void loom_model_graph_stats(const loom_model *m, int *n_builds, int *n_runs) {
    if (n_builds) *n_builds = m->n_builds;
    if (n_runs) *n_runs = m->n_runs;
}
