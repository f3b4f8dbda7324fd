/* model/arch/config.c - model configuration presets, validation and size accounting. */
#include "loom/model_config.h"
#include "loom/gguf.h"
#include "model/model_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Llama 3.1 architecture defaults shared by every preset. */
static loom_model_config llama3_base(void) {
    loom_model_config c = {0};
    snprintf(c.arch, sizeof c.arch, "llama");
    c.vocab_size = 128256;
    c.rms_eps = 1e-5f;
    c.moe_every = 1;
    c.bos_id = 128000;
    c.eos_id = 128001;
    c.eot_id = 128009;
    return c;
}

static void set_heads(loom_model_config *c, int64_t dim, int64_t n_heads, int64_t n_kv_heads) {
    c->dim = dim;
    c->n_heads = n_heads;
    c->n_kv_heads = n_kv_heads;
    c->head_dim = dim / n_heads;
    c->rope = loom_rope_params_llama3((int32_t)c->head_dim);
}

loom_status loom_model_config_preset(const char *name, loom_model_config *out, char *err,
                                     size_t err_n) {
    if (!name || !out)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "model preset: NULL argument");
    loom_model_config c = llama3_base();
    if (!strcmp(name, "llama3-8b") || !strcmp(name, "seed")) {
        set_heads(&c, 4096, 32, 8);
        c.n_layers = 32;
        c.ffn_dim = 14336;
        c.max_ctx = 131072;
        if (!strcmp(name, "seed")) { /* 8 experts, top-2, in every other layer */
            c.n_experts = 8;
            c.n_experts_used = 2;
            c.moe_every = 2;
            c.moe_offset = 1;
            c.expert_ffn_dim = 14336;
        }
    } else if (!strcmp(name, "tiny-moe") || !strcmp(name, "tiny-dense")) {
        set_heads(&c, 256, 8, 2);
        c.n_layers = 4;
        c.ffn_dim = 768;
        c.max_ctx = 4096;
        c.tie_embeddings = true; /* keeps the 128k-row vocabulary cheap */
        if (!strcmp(name, "tiny-moe")) {
            c.n_experts = 8;
            c.n_experts_used = 2;
            c.moe_every = 2;
            c.moe_offset = 1;
            c.expert_ffn_dim = 384;
        }
    } else if (!strcmp(name, "small-110m") || !strcmp(name, "small-110m-moe")) {
        /* ~116M parameters (82M of them the tied 128k-row embedding): the
         * size the CPU comparison with llama.cpp uses (docs/PERF.md). The MoE
         * variant puts 8 experts, top-2, in every layer, as Mixtral does:
         * llama.cpp's llama architecture cannot alternate dense and MoE. */
        set_heads(&c, 640, 10, 2);
        c.n_layers = 8;
        c.ffn_dim = 1728;
        c.max_ctx = 4096;
        c.tie_embeddings = true;
        if (!strcmp(name, "small-110m-moe")) {
            c.n_experts = 8;
            c.n_experts_used = 2;
            c.expert_ffn_dim = 864;
            c.ffn_dim = 864; /* unused (no dense layer); llama.cpp sizes experts by it */
        }
    } else {
        return loom_model_fail(
            err, err_n, LOOM_ERR_INVALID_ARG,
            "unknown model preset '%s' (known: llama3-8b, seed, tiny-moe, tiny-dense, "
            "small-110m, small-110m-moe)",
            name);
    }
    *out = c;
    return LOOM_OK;
}

#define POSITIVE(field)                                                                            \
    do {                                                                                           \
        if (c->field <= 0)                                                                         \
            return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,                               \
                                   #field " must be positive (got %lld)", (long long)c->field);    \
    } while (0)

loom_status loom_model_config_validate(const loom_model_config *c, char *err, size_t err_n) {
    if (!c) return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "model config is NULL");
    POSITIVE(vocab_size);
    POSITIVE(dim);
    POSITIVE(n_layers);
    POSITIVE(n_heads);
    POSITIVE(n_kv_heads);
    POSITIVE(head_dim);
    POSITIVE(ffn_dim);
    POSITIVE(max_ctx);
    if (c->vocab_size > INT32_MAX)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "vocab_size (%lld) must fit token ids in i32",
                               (long long)c->vocab_size);
    if (c->n_heads % c->n_kv_heads != 0)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "n_heads (%lld) must be a multiple of n_kv_heads (%lld)",
                               (long long)c->n_heads, (long long)c->n_kv_heads);
    if (c->head_dim % 2 != 0)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "head_dim (%lld) must be even for rotary embeddings",
                               (long long)c->head_dim);
    if (!(c->rms_eps > 0.0f))
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "rms_eps must be positive (got %g)", c->rms_eps);
    const loom_rope_params *r = &c->rope;
    if (!(r->theta > 0.0f))
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "rope theta must be positive (got %g)", r->theta);
    if (r->n_dims <= 0 || r->n_dims > c->head_dim || r->n_dims % 2 != 0)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "rope n_dims (%d) must be even and in (0, head_dim %lld]", r->n_dims,
                               (long long)c->head_dim);
    if (r->mode != LOOM_ROPE_NORMAL && r->mode != LOOM_ROPE_NEOX)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "rope mode %d is neither normal (0) nor neox (2)", r->mode);
    if (r->scaling == LOOM_ROPE_SCALING_LLAMA3) {
        if (!(r->factor > 0.0f))
            return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                                   "rope_scaling.factor must be positive (got %g)", r->factor);
        if (!(r->low_freq_factor > 0.0f) || !(r->high_freq_factor > r->low_freq_factor))
            return loom_model_fail(
                err, err_n, LOOM_ERR_INVALID_ARG,
                "rope_scaling needs 0 < low_freq_factor < high_freq_factor (got %g, %g)",
                r->low_freq_factor, r->high_freq_factor);
        if (r->orig_ctx <= 0)
            return loom_model_fail(
                err, err_n, LOOM_ERR_INVALID_ARG,
                "rope_scaling.original_max_position_embeddings must be positive (got %d)",
                r->orig_ctx);
    } else if (r->scaling != LOOM_ROPE_SCALING_NONE) {
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "rope scaling type %d is not supported (none or llama3)",
                               r->scaling);
    }
    if (c->n_experts < 0)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "n_experts must be >= 0 (got %lld)", (long long)c->n_experts);
    if (c->n_experts > 0) {
        if (c->n_experts_used < 1 || c->n_experts_used > c->n_experts)
            return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                                   "n_experts_used (%lld) must be in 1..n_experts (%lld)",
                                   (long long)c->n_experts_used, (long long)c->n_experts);
        if (c->moe_every < 1)
            return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                                   "moe_every must be >= 1 (got %lld)", (long long)c->moe_every);
        if (c->moe_offset < 0 || c->moe_offset >= c->moe_every)
            return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                                   "moe_offset (%lld) must be in 0..moe_every-1 (%lld)",
                                   (long long)c->moe_offset, (long long)(c->moe_every - 1));
        POSITIVE(expert_ffn_dim);
    }
    int32_t ids[3] = {c->bos_id, c->eos_id, c->eot_id};
    const char *names[3] = {"bos_id", "eos_id", "eot_id"};
    for (int i = 0; i < 3; i++)
        if (ids[i] < -1 || ids[i] >= c->vocab_size)
            return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                                   "%s (%d) must be -1 or a token id below vocab_size (%lld)",
                                   names[i], ids[i], (long long)c->vocab_size);
    return LOOM_OK;
}

bool loom_model_config_layer_is_moe(const loom_model_config *c, int64_t layer) {
    return c->n_experts > 0 && c->moe_every > 0 && layer % c->moe_every == c->moe_offset;
}

loom_status loom_rope_freq_factors(const loom_rope_params *p, float *out, int64_t n) {
    if (!p || !out || p->scaling != LOOM_ROPE_SCALING_LLAMA3 || n != p->n_dims / 2 || n <= 0)
        return LOOM_ERR_INVALID_ARG;
    /* factor_i = unscaled / scaled inv_freq, both from the one rope rule. */
    double *t = malloc(2 * (size_t)n * sizeof *t);
    if (!t) return LOOM_ERR_OOM;
    loom_rope_freq_table(p, t, t + n);
    for (int64_t i = 0; i < n; i++)
        out[i] = (float)(t[n + i] / t[i]);
    free(t);
    return LOOM_OK;
}

loom_status loom_rope_write_gguf_kv(struct loom_gguf_writer *w, const loom_rope_params *r) {
    if (!w || !r) return LOOM_ERR_INVALID_ARG;
    if (r->scaling != LOOM_ROPE_SCALING_LLAMA3) return LOOM_OK;
    LOOM_TRY(loom_gguf_writer_set_str(w, "loom.rope.scaling.type", "llama3"));
    LOOM_TRY(loom_gguf_writer_set_f32(w, "loom.rope.scaling.factor", r->factor));
    LOOM_TRY(loom_gguf_writer_set_f32(w, "loom.rope.scaling.low_freq_factor", r->low_freq_factor));
    LOOM_TRY(
        loom_gguf_writer_set_f32(w, "loom.rope.scaling.high_freq_factor", r->high_freq_factor));
    return loom_gguf_writer_set_u32(w, "loom.rope.scaling.original_context_length",
                                    (uint32_t)r->orig_ctx);
}

/* Bytes per weight element, as a fraction num/den, for stored matrices. */
static int64_t matrix_bytes(int64_t params, loom_dtype t) {
    switch (t) {
    case LOOM_Q8_0:
        return params / 32 * 34;
    case LOOM_Q4_0:
        return params / 32 * 18;
    case LOOM_NF4:
        return params / 2 + params / 64 * 4;
    default:
        return params * 2; /* f16 */
    }
}

void loom_model_config_size(const loom_model_config *c, loom_model_size *out) {
    memset(out, 0, sizeof *out);
    const int64_t d = c->dim, q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    const int64_t attn = d * q + 2 * d * kv + q * d;
    const int64_t dense = 3 * d * c->ffn_dim;
    const int64_t expert = 3 * d * c->expert_ffn_dim, router = d * c->n_experts;
    int64_t mat_total = 0, mat_active = 0, norms = d; /* final norm */
    for (int64_t l = 0; l < c->n_layers; l++) {
        norms += 2 * d;
        int64_t ffn = dense, ffn_active = dense;
        if (loom_model_config_layer_is_moe(c, l)) {
            ffn = router + c->n_experts * expert;
            ffn_active = router + c->n_experts_used * expert;
        }
        mat_total += attn + ffn;
        mat_active += attn + ffn_active;
    }
    int64_t embed = c->vocab_size * d * (c->tie_embeddings ? 1 : 2);
    mat_total += embed;
    mat_active += embed;
    out->params_embed = embed;
    out->params_total = mat_total + norms;
    out->params_active = mat_active + norms;
    out->bytes_f16 = matrix_bytes(mat_total, LOOM_F16) + 4 * norms;
    out->bytes_q8_0 = matrix_bytes(mat_total, LOOM_Q8_0) + 4 * norms;
    out->bytes_q4_0 = matrix_bytes(mat_total, LOOM_Q4_0) + 4 * norms;
    out->bytes_nf4 = matrix_bytes(mat_total, LOOM_NF4) + 4 * norms;
    out->kv_bytes_per_token_f16 = 2 * c->n_layers * kv * 2;
}

static double gib(int64_t b) {
    return (double)b / (1024.0 * 1024.0 * 1024.0);
}

int loom_model_config_describe(const loom_model_config *c, int64_t ctx, size_t mem_bytes, char *buf,
                               size_t n) {
    loom_model_size s;
    loom_model_config_size(c, &s);
    int64_t kv = s.kv_bytes_per_token_f16 * ctx;
    int w = snprintf(
        buf, n,
        "architecture      %s\n"
        "vocab             %lld\n"
        "dim / layers      %lld / %lld\n"
        "heads             %lld query, %lld kv (GQA %lld:1), head_dim %lld\n"
        "ffn               %lld (SwiGLU)\n"
        "experts           %lld, top-%lld, every %lld layer(s) from layer %lld, expert ffn %lld\n"
        "rope              theta %g, %s, scaling %s (factor %g, low %g, high %g, orig ctx %d)\n"
        "context           %lld max\n"
        "embeddings        %s\n"
        "parameters        %.3f B total, %.3f B active per token\n"
        "weights           f16 %.2f GiB, q8_0 %.2f GiB, q4_0 %.2f GiB, nf4 %.2f GiB\n"
        "kv cache (f16)    %lld bytes/token, %.2f GiB at %lld tokens\n",
        c->arch, (long long)c->vocab_size, (long long)c->dim, (long long)c->n_layers,
        (long long)c->n_heads, (long long)c->n_kv_heads, (long long)(c->n_heads / c->n_kv_heads),
        (long long)c->head_dim, (long long)c->ffn_dim, (long long)c->n_experts,
        (long long)c->n_experts_used, (long long)c->moe_every, (long long)c->moe_offset,
        (long long)c->expert_ffn_dim, c->rope.theta,
        c->rope.mode == LOOM_ROPE_NEOX ? "neox" : "normal",
        c->rope.scaling == LOOM_ROPE_SCALING_LLAMA3 ? "llama3" : "none", c->rope.factor,
        c->rope.low_freq_factor, c->rope.high_freq_factor, c->rope.orig_ctx, (long long)c->max_ctx,
        c->tie_embeddings ? "tied" : "untied", s.params_total / 1e9, s.params_active / 1e9,
        gib(s.bytes_f16), gib(s.bytes_q8_0), gib(s.bytes_q4_0), gib(s.bytes_nf4),
        (long long)s.kv_bytes_per_token_f16, gib(kv), (long long)ctx);
    if (w < 0 || mem_bytes == 0) return w;
    size_t used = (size_t)w < n ? (size_t)w : n;
    const int64_t need[4] = {s.bytes_f16, s.bytes_q8_0, s.bytes_q4_0, s.bytes_nf4};
    const char *names[4] = {"f16", "q8_0", "q4_0", "nf4"};
    int w2 = snprintf(buf + used, n - used, "fits %.1f GiB     ", gib((int64_t)mem_bytes));
    for (int i = 0; i < 4 && w2 >= 0; i++) {
        w += w2;
        used = (size_t)w < n ? (size_t)w : n;
        w2 = snprintf(buf + used, n - used, "%s %s%s", names[i],
                      need[i] + kv <= (int64_t)mem_bytes ? "yes" : "no", i < 3 ? ", " : "\n");
    }
    return w2 < 0 ? w2 : w + w2;
}
