/* model/formats/hf_convert.c - a Hugging Face Llama/Mistral/Mixtral checkpoint
 * (safetensors + config) written as a llama-architecture GGUF that
 * loom_model_load_gguf reads: llama.cpp tensor names, q/k rows permuted per
 * head to adjacent rotary pairs, Mixtral experts stacked. */
#define _POSIX_C_SOURCE 200809L /* stat */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "loom/gguf.h"
#include "loom/model.h"
#include "loom/safetensors.h"
#include "loom/tokenizer.h"
#include "model/model_internal.h"

typedef struct conv {
    loom_safetensors *st;
    const loom_model_config *c;
    loom_gguf_writer *w;
    loom_dtype wtype;
    const loom_hf_gguf_opts *o;
    int64_t n_done, n_total; /* elements converted, for progress */
    loom_blobs bufs;         /* converted tensors, alive until the file is written */
    char *err;
    size_t err_n;
} conv;

/* Tensor `name` as f32, checked to have PyTorch shape [d0] or [d0, d1]
 * (d1 == 0). *out is malloc'd. */
static loom_status read_f32(conv *v, const char *name, int64_t d0, int64_t d1, float **out) {
    *out = NULL;
    int64_t i = loom_safetensors_find(v->st, name);
    if (i < 0)
        return loom_model_fail(v->err, v->err_n, LOOM_ERR_FORMAT,
                               "HF checkpoint: tensor '%s' is missing", name);
    loom_st_tensor_info ti;
    LOOM_TRY(loom_safetensors_tensor(v->st, i, &ti));
    int nd = d1 ? 2 : 1;
    if (ti.n_dims != nd || ti.shape[0] != d0 || (nd == 2 && ti.shape[1] != d1))
        return loom_model_fail(
            v->err, v->err_n, LOOM_ERR_FORMAT,
            "HF checkpoint: tensor '%s' has shape [%lld%s%lld] (%d dims), the config "
            "wants [%lld%s%lld]",
            name, (long long)ti.shape[0], ti.n_dims > 1 ? ", " : "",
            ti.n_dims > 1 ? (long long)ti.shape[1] : 0LL, ti.n_dims, (long long)d0,
            nd > 1 ? ", " : "", nd > 1 ? (long long)d1 : 0LL);
    float *f = malloc((size_t)ti.n_elements * sizeof *f + 1);
    if (!f)
        return loom_model_fail(v->err, v->err_n, LOOM_ERR_OOM,
                               "HF checkpoint: out of memory for '%s'", name);
    loom_status s = loom_safetensors_read(v->st, i, LOOM_F32, f, (size_t)ti.n_elements * 4);
    if (s != LOOM_OK) {
        free(f);
        return loom_model_fail(v->err, v->err_n, s, "HF checkpoint: %s",
                               loom_safetensors_error(v->st));
    }
    *out = f;
    return LOOM_OK;
}

/* Add f (f32, ne extents, ownership taken) as GGUF tensor name, at the type
 * loom_model_store_type picks for wtype (norms and the MoE router f32, f16
 * when the rows do not fit wtype's blocks). */
static loom_status add(conv *v, const char *name, float *f, int n_dims, const int64_t *ne) {
    int64_t n = 1;
    for (int d = 0; d < n_dims; d++)
        n *= ne[d];
    loom_dtype t = LOOM_F32;
    loom_status s = loom_model_store_type(name, n_dims, ne, v->wtype, &t);
    if (s != LOOM_OK) {
        free(f);
        return loom_model_fail(v->err, v->err_n, s, "hf -> gguf: no storage type for '%s'", name);
    }
    void *data = f;
    if (t != LOOM_F32) {
        data = malloc(loom_dtype_nbytes(t, n) + 1);
        s = data ? loom_convert(LOOM_F32, f, t, data, n) : LOOM_ERR_OOM;
        free(f);
    }
    if (s == LOOM_OK && !loom_blobs_keep(&v->bufs, data)) s = LOOM_ERR_OOM;
    if (s != LOOM_OK) {
        free(data);
        return loom_model_fail(v->err, v->err_n, s, "converting '%s' to %s: %s", name,
                               loom_dtype_name(t), loom_status_str(s));
    }
    s = loom_gguf_writer_add_tensor(v->w, name, t, n_dims, ne, data);
    if (s != LOOM_OK)
        return loom_model_fail(v->err, v->err_n, s, "GGUF tensor '%s': %s", name,
                               loom_gguf_writer_error(v->w));
    v->n_done += n;
    if (v->o->progress && v->n_total > 0)
        v->o->progress(v->o->progress_ud, v->n_done >= v->n_total
                                              ? 1.0 /* rope_freqs is not in the checkpoint */
                                              : (double)v->n_done / (double)v->n_total);
    return LOOM_OK;
}

/* HF q/k rows (pairs i, i + D/2 in each head) -> llama.cpp order (pairs 2i, 2i+1). */
static float *permute_rope(const float *w, int64_t n_heads, int64_t D, int64_t cols) {
    float *o = malloc((size_t)(n_heads * D * cols) * sizeof *o + 1);
    if (!o) return NULL;
    for (int64_t h = 0; h < n_heads; h++)
        for (int64_t j = 0; j < D / 2; j++)
            for (int64_t t = 0; t < 2; t++)
                memcpy(o + (h * D + 2 * j + t) * cols, w + (h * D + t * (D / 2) + j) * cols,
                       (size_t)cols * sizeof *o);
    return o;
}

static loom_status linear(conv *v, const char *hf, const char *gguf, int64_t out_f, int64_t in_f,
                          int64_t rope_heads) {
    float *f;
    LOOM_TRY(read_f32(v, hf, out_f, in_f, &f));
    if (rope_heads) {
        float *p = permute_rope(f, rope_heads, v->c->head_dim, in_f);
        free(f);
        if (!p)
            return loom_model_fail(v->err, v->err_n, LOOM_ERR_OOM, "out of memory permuting '%s'",
                                   hf);
        f = p;
    }
    const int64_t ne[2] = {in_f, out_f};
    return add(v, gguf, f, 2, ne);
}

static loom_status norm(conv *v, const char *hf, const char *gguf) {
    float *f;
    LOOM_TRY(read_f32(v, hf, v->c->dim, 0, &f));
    const int64_t ne[1] = {v->c->dim};
    return add(v, gguf, f, 1, ne);
}

/* Mixtral experts.E.<which> ([rows, cols] each) stacked into ne [cols, rows, E]. */
static loom_status experts(conv *v, int64_t l, const char *which, const char *gguf, int64_t rows,
                           int64_t cols) {
    const int64_t E = v->c->n_experts, per = rows * cols;
    float *all = malloc((size_t)(E * per) * sizeof *all + 1);
    if (!all)
        return loom_model_fail(v->err, v->err_n, LOOM_ERR_OOM, "out of memory stacking experts");
    for (int64_t e = 0; e < E; e++) {
        char name[128];
        snprintf(name, sizeof name, "model.layers.%lld.block_sparse_moe.experts.%lld.%s.weight",
                 (long long)l, (long long)e, which);
        float *f;
        loom_status s = read_f32(v, name, rows, cols, &f);
        if (s != LOOM_OK) {
            free(all);
            return s;
        }
        memcpy(all + e * per, f, (size_t)per * sizeof *f);
        free(f);
    }
    const int64_t ne[3] = {cols, rows, E};
    return add(v, gguf, all, 3, ne);
}

static loom_status metadata(conv *v) {
    const loom_model_config *c = v->c;
    loom_gguf_writer *w = v->w;
#define U32(key, val) LOOM_TRY(loom_gguf_writer_set_u32(w, key, (uint32_t)(val)))
#define F32(key, val) LOOM_TRY(loom_gguf_writer_set_f32(w, key, (float)(val)))
    LOOM_TRY(loom_gguf_writer_set_str(w, "general.architecture", "llama"));
    LOOM_TRY(
        loom_gguf_writer_set_str(w, "general.name", "converted from a Hugging Face checkpoint"));
    U32("llama.context_length", c->max_ctx);
    U32("llama.embedding_length", c->dim);
    U32("llama.block_count", c->n_layers);
    U32("llama.feed_forward_length", c->n_experts ? c->expert_ffn_dim : c->ffn_dim);
    U32("llama.attention.head_count", c->n_heads);
    U32("llama.attention.head_count_kv", c->n_kv_heads);
    U32("llama.attention.key_length", c->head_dim);
    U32("llama.attention.value_length", c->head_dim);
    U32("llama.rope.dimension_count", c->rope.n_dims);
    U32("llama.vocab_size", c->vocab_size);
    F32("llama.attention.layer_norm_rms_epsilon", c->rms_eps);
    F32("llama.rope.freq_base", c->rope.theta);
    LOOM_TRY(loom_rope_write_gguf_kv(w, &c->rope));
    if (c->n_experts > 0) {
        U32("llama.expert_count", c->n_experts);
        U32("llama.expert_used_count", c->n_experts_used);
        U32("llama.expert_feed_forward_length", c->expert_ffn_dim);
        if (c->moe_every != 1 || c->moe_offset != 0) {
            U32("loom.moe_every", c->moe_every);
            U32("loom.moe_offset", c->moe_offset);
        }
    }
    U32("general.file_type", loom_model_gguf_file_type(v->wtype));
    U32("general.quantization_version", 2); /* ggml's GGML_QNT_VERSION */
    if (v->o->tok) {
        /* tokenizer.json's special ids win over config.json's (one key each) */
        char terr[256];
        if (loom_tokenizer_write_gguf(v->o->tok, w, terr, sizeof terr) != LOOM_OK)
            return loom_model_fail(v->err, v->err_n, LOOM_ERR_FORMAT, "hf -> gguf: %s", terr);
    } else {
        if (c->bos_id >= 0) U32("tokenizer.ggml.bos_token_id", c->bos_id);
        if (c->eos_id >= 0) U32("tokenizer.ggml.eos_token_id", c->eos_id);
        if (c->eot_id >= 0) U32("tokenizer.ggml.eot_token_id", c->eot_id);
    }
#undef U32
#undef F32
    return LOOM_OK;
}

static loom_status convert_all(conv *v) {
    const loom_model_config *c = v->c;
    const int64_t H = c->dim, D = c->head_dim, q = c->n_heads * D, kv = c->n_kv_heads * D;
    LOOM_TRY(metadata(v));
    LOOM_TRY(linear(v, "model.embed_tokens.weight", "token_embd.weight", c->vocab_size, H, 0));
    if (c->rope.scaling == LOOM_ROPE_SCALING_LLAMA3) {
        /* llama.cpp reads llama3 scaling only from this tensor. */
        const int64_t n = c->rope.n_dims / 2;
        float *f = malloc((size_t)(n > 0 ? n : 1) * sizeof *f);
        if (!f) return loom_model_fail(v->err, v->err_n, LOOM_ERR_OOM, "hf -> gguf: out of memory");
        if (loom_rope_freq_factors(&c->rope, f, n) != LOOM_OK) {
            free(f);
            return loom_model_fail(v->err, v->err_n, LOOM_ERR_INVALID_ARG,
                                   "hf -> gguf: bad llama3 rope scaling");
        }
        LOOM_TRY(add(v, "rope_freqs.weight", f, 1, &n));
    }
    for (int64_t l = 0; l < c->n_layers; l++) {
        char hf[160], gg[96];
#define HF(fmt) (snprintf(hf, sizeof hf, "model.layers.%lld." fmt, (long long)l), hf)
#define GG(fmt) (snprintf(gg, sizeof gg, "blk.%lld." fmt, (long long)l), gg)
        LOOM_TRY(norm(v, HF("input_layernorm.weight"), GG("attn_norm.weight")));
        LOOM_TRY(linear(v, HF("self_attn.q_proj.weight"), GG("attn_q.weight"), q, H, c->n_heads));
        LOOM_TRY(
            linear(v, HF("self_attn.k_proj.weight"), GG("attn_k.weight"), kv, H, c->n_kv_heads));
        LOOM_TRY(linear(v, HF("self_attn.v_proj.weight"), GG("attn_v.weight"), kv, H, 0));
        LOOM_TRY(linear(v, HF("self_attn.o_proj.weight"), GG("attn_output.weight"), H, q, 0));
        LOOM_TRY(norm(v, HF("post_attention_layernorm.weight"), GG("ffn_norm.weight")));
        if (loom_model_config_layer_is_moe(c, l)) {
            const int64_t F = c->expert_ffn_dim;
            /* the router stays f32, as llama.cpp keeps it: quantizing it flips
             * top-k choices for little memory */
            float *r;
            LOOM_TRY(read_f32(v, HF("block_sparse_moe.gate.weight"), c->n_experts, H, &r));
            const int64_t rne[2] = {H, c->n_experts};
            LOOM_TRY(add(v, GG("ffn_gate_inp.weight"), r, 2, rne));
            LOOM_TRY(experts(v, l, "w1", GG("ffn_gate_exps.weight"), F, H));
            LOOM_TRY(experts(v, l, "w3", GG("ffn_up_exps.weight"), F, H));
            LOOM_TRY(experts(v, l, "w2", GG("ffn_down_exps.weight"), H, F));
        } else {
            const int64_t F = c->ffn_dim;
            LOOM_TRY(linear(v, HF("mlp.gate_proj.weight"), GG("ffn_gate.weight"), F, H, 0));
            LOOM_TRY(linear(v, HF("mlp.up_proj.weight"), GG("ffn_up.weight"), F, H, 0));
            LOOM_TRY(linear(v, HF("mlp.down_proj.weight"), GG("ffn_down.weight"), H, F, 0));
        }
#undef HF
#undef GG
    }
    LOOM_TRY(norm(v, "model.norm.weight", "output_norm.weight"));
    if (!c->tie_embeddings)
        LOOM_TRY(linear(v, "lm_head.weight", "output.weight", c->vocab_size, H, 0));
    return LOOM_OK;
}

/* Elements the converter will write (the progress denominator). */
static int64_t total_elements(loom_safetensors *st) {
    int64_t n = 0;
    for (int64_t i = 0; i < loom_safetensors_n_tensors(st); i++) {
        loom_st_tensor_info ti;
        if (loom_safetensors_tensor(st, i, &ti) == LOOM_OK) n += ti.n_elements;
    }
    return n;
}

loom_status loom_hf_write_gguf(loom_safetensors *st, const loom_model_config *c, loom_dtype wtype,
                               const char *path, char *err, size_t err_n) {
    loom_hf_gguf_opts o = {.wtype = wtype};
    return loom_hf_write_gguf_ex(st, c, &o, path, err, err_n);
}

loom_status loom_hf_write_gguf_ex(loom_safetensors *st, const loom_model_config *c,
                                  const loom_hf_gguf_opts *o, const char *path, char *err,
                                  size_t err_n) {
    conv v = {.st = st, .c = c, .o = o, .err = err, .err_n = err_n};
    if (err && err_n) err[0] = '\0';
    if (!st || !c || !o || !path)
        return loom_model_fail(v.err, v.err_n, LOOM_ERR_INVALID_ARG, "hf -> gguf: NULL argument");
    const loom_dtype wtype = v.wtype = o->wtype;
    char verr[256];
    if (loom_model_config_validate(c, verr, sizeof verr) != LOOM_OK)
        return loom_model_fail(v.err, v.err_n, LOOM_ERR_INVALID_ARG, "hf -> gguf: %s", verr);
    if (c->rope.mode != LOOM_ROPE_NEOX || c->rope.n_dims != c->head_dim)
        return loom_model_fail(
            v.err, v.err_n, LOOM_ERR_INVALID_ARG,
            "hf -> gguf: the config must describe HF weights (neox rope over head_dim)");
    if (!(wtype == LOOM_F32 || wtype == LOOM_F16 || wtype == LOOM_BF16 || wtype == LOOM_Q8_0 ||
          wtype == LOOM_Q4_0))
        return loom_model_fail(
            v.err, v.err_n, LOOM_ERR_INVALID_ARG,
            "hf -> gguf: weight type %s cannot be stored in GGUF (f32, f16, bf16, q8_0, "
            "q4_0)",
            loom_dtype_name(wtype));
    if (o->tok && (int64_t)loom_tokenizer_vocab_size(o->tok) > c->vocab_size)
        return loom_model_fail(v.err, v.err_n, LOOM_ERR_INVALID_ARG,
                               "hf -> gguf: the tokenizer has %zu tokens but vocab_size is %lld",
                               loom_tokenizer_vocab_size(o->tok), (long long)c->vocab_size);
    v.n_total = total_elements(st);
    loom_status s = loom_gguf_writer_new(&v.w);
    if (s != LOOM_OK) return loom_model_fail(v.err, v.err_n, s, "hf -> gguf: out of memory");
    s = convert_all(&v);
    if (s != LOOM_OK && err && err_n && !err[0])
        loom_model_fail(v.err, v.err_n, s, "hf -> gguf: %s", loom_gguf_writer_error(v.w));
    if (s == LOOM_OK) {
        s = loom_gguf_writer_write(v.w, path);
        if (s != LOOM_OK)
            loom_model_fail(v.err, v.err_n, s, "hf -> gguf: writing %s: %s", path,
                            loom_gguf_writer_error(v.w));
    }
    loom_gguf_writer_free(v.w);
    loom_blobs_free(&v.bufs);
    return s;
}

/* ---------------- checkpoint directory -> GGUF file ---------------- */

/* The lossless float type of a checkpoint: bf16 or f16 when every tensor is
 * stored so, else f32. Used for the temporary file of quantize-on-load to
 * nf4, which is quantized while loading from these exact values. */
static loom_dtype lossless_type(loom_safetensors *st) {
    loom_dtype common = LOOM_DTYPE_COUNT;
    for (int64_t i = 0; i < loom_safetensors_n_tensors(st); i++) {
        loom_dtype t;
        if (loom_safetensors_tensor_dtype(st, i, &t) != LOOM_OK) return LOOM_F32;
        if (common == LOOM_DTYPE_COUNT) common = t;
        if (t != common) return LOOM_F32;
    }
    return common == LOOM_F16 || common == LOOM_BF16 ? common : LOOM_F32;
}

loom_status loom_hf_dir_to_gguf(const char *dir, loom_dtype wtype, const char *path,
                                loom_progress_fn progress, void *ud, char *err, size_t err_n) {
    loom_model_config c;
    char e[768];
    loom_status s = loom_hf_config_load(dir, &c, e, sizeof e);
    if (s != LOOM_OK) return loom_model_fail(err, err_n, s, "%s: %s", dir, e);
    loom_safetensors *st = NULL;
    s = loom_safetensors_open(dir, &st, e, sizeof e);
    if (s != LOOM_OK) return loom_model_fail(err, err_n, s, "%s: %s", dir, e);
    loom_tokenizer *tok = NULL;
    char tp[4096];
    struct stat sb;
    snprintf(tp, sizeof tp, "%s/tokenizer.json", dir);
    if (stat(tp, &sb) == 0 && (s = loom_tokenizer_load_hf_json(tp, &tok, e, sizeof e)) != LOOM_OK) {
        loom_safetensors_close(st);
        return loom_model_fail(err, err_n, s, "%s: %s", tp, e);
    }
    loom_hf_gguf_opts o = {.wtype = wtype == LOOM_DTYPE_COUNT ? lossless_type(st) : wtype,
                           .tok = tok,
                           .progress = progress,
                           .progress_ud = ud};
    s = loom_hf_write_gguf_ex(st, &c, &o, path, e, sizeof e);
    if (s != LOOM_OK) loom_model_fail(err, err_n, s, "%s: %s", dir, e);
    loom_tokenizer_free(tok);
    loom_safetensors_close(st);
    return s;
}
