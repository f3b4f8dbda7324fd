/* model/formats/quant_mix.c - llama.cpp's k-quant mixes Q3_K_M, Q4_K_M and
 * Q5_K_M: which type each tensor of a llama GGUF is stored at (ADR 0039).
 *
 * The rules are those of llama.cpp's llama_tensor_get_type /
 * llama_tensor_get_type_impl and tensor_type_fallback (src/llama-quant.cpp)
 * for these three ftypes, without an importance matrix and without
 * --pure / --output-tensor-type / --token-embedding-type overrides, for the
 * llama architecture (the Falcon-only branches do not apply). Used by
 * export.c; the expected types are checked independently by
 * tests/model/check_quant_mix.py (a table written from the same rules) and,
 * opt-in, against llama-quantize's own files (scripts/check_kquant_mix.py). */
#include <stdio.h>
#include <string.h>

#include "model/model_internal.h"

loom_dtype loom_mix_base(loom_quant_mix mix) {
    switch (mix) {
    case LOOM_MIX_Q3_K_M:
        return LOOM_Q3_K;
    case LOOM_MIX_Q4_K_M:
        return LOOM_Q4_K;
    case LOOM_MIX_Q5_K_M:
        return LOOM_Q5_K;
    default:
        return LOOM_DTYPE_COUNT;
    }
}

int loom_mix_file_type(loom_quant_mix mix) {
    switch (mix) { /* LLAMA_FTYPE_MOSTLY_Q3_K_M, _Q4_K_M, _Q5_K_M */
    case LOOM_MIX_Q3_K_M:
        return 12;
    case LOOM_MIX_Q4_K_M:
        return 15;
    case LOOM_MIX_Q5_K_M:
        return 17;
    default:
        return -1;
    }
}

const char *loom_mix_name(loom_quant_mix mix) {
    switch (mix) {
    case LOOM_MIX_Q3_K_M:
        return "q3_K_M";
    case LOOM_MIX_Q4_K_M:
        return "q4_K_M";
    case LOOM_MIX_Q5_K_M:
        return "q5_K_M";
    default:
        return "none";
    }
}

/* llama.cpp's tensor categories, by name as tensor_get_category matches them
 * (first match wins; "ffn_down" also matches ffn_down_exps). */
typedef enum {
    CAT_TOKEN_EMBD,
    CAT_OUTPUT,
    CAT_ATTN_V,
    CAT_ATTN_K,
    CAT_ATTN_OUTPUT,
    CAT_FFN_DOWN,
    CAT_OTHER
} mix_cat;

static mix_cat category(const char *name) {
    if (!strcmp(name, "output.weight")) return CAT_OUTPUT;
    if (!strcmp(name, "token_embd.weight")) return CAT_TOKEN_EMBD;
    /* attn_qkv and attn_kv_b count as attn_v (category_is_attn_v) */
    if (strstr(name, "attn_qkv.weight") || strstr(name, "attn_kv_b.weight") ||
        strstr(name, "attn_v.weight"))
        return CAT_ATTN_V;
    if (strstr(name, "attn_k.weight")) return CAT_ATTN_K;
    if (strstr(name, "attn_q.weight")) return CAT_OTHER;
    if (strstr(name, "attn_output.weight")) return CAT_ATTN_OUTPUT;
    if (strstr(name, "ffn_up") || strstr(name, "ffn_gate")) return CAT_OTHER;
    if (strstr(name, "ffn_down")) return CAT_FFN_DOWN;
    return CAT_OTHER;
}

/* tensor_allows_quantization: matrices named *weight, except norms and the
 * MoE router; loom keeps everything else f32 as loom_model_store_type does. */
static bool quantizable(const char *name, int n_dims) {
    const size_t n = strlen(name);
    return n_dims >= 2 && n >= 6 && !strcmp(name + n - 6, "weight") &&
           !strstr(name, "_norm.weight") && !strstr(name, "ffn_gate_inp.weight");
}

/* The layers that get more bits: the first and last eighth, and every third
 * one between (llama.cpp's use_more_bits). */
static bool more_bits(int i, int n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

void loom_mix_begin(loom_mix_state *st, loom_quant_mix mix, const loom_model_config *c,
                    loom_gguf *g) {
    memset(st, 0, sizeof *st);
    st->mix = mix;
    st->base = loom_mix_base(mix);
    st->n_layer = (int)c->n_layers;
    st->n_expert = (int)c->n_experts;
    /* llama.cpp's LLM_TYPE_70B for the llama architecture: 80 layers and
     * fewer KV heads than query heads (80 layers without GQA is 65B) */
    st->is_70b = c->n_layers == 80 && c->n_kv_heads != c->n_heads;
    st->tied = true;
    for (int64_t i = 0; i < loom_gguf_n_tensors(g); i++) {
        loom_gguf_tensor_info ti;
        if (loom_gguf_tensor(g, i, &ti) != LOOM_OK) continue;
        if (category(ti.name) == CAT_ATTN_V) st->n_attn_v++;
        if (category(ti.name) == CAT_OUTPUT) st->tied = false;
    }
}

loom_dtype loom_mix_type(loom_mix_state *st, const char *name, int n_dims, const int64_t *ne) {
    if (!quantizable(name, n_dims)) return LOOM_F32;
    const loom_quant_mix mix = st->mix;
    loom_dtype t = st->base;
    const mix_cat cat = category(name);
    if (cat == CAT_OUTPUT || (st->tied && cat == CAT_TOKEN_EMBD)) {
        /* the output head: q6_K, or q8_0 when its rows are not super-blocks */
        t = ne[0] % LOOM_QK_K != 0 ? LOOM_Q8_0 : LOOM_Q6_K;
    } else if (cat == CAT_ATTN_V) {
        if (mix == LOOM_MIX_Q3_K_M)
            t = st->i_attn_v < 2 ? LOOM_Q5_K : LOOM_Q4_K;
        else if (more_bits(st->i_attn_v, st->n_attn_v))
            t = LOOM_Q6_K;
        /* attn_v of a 70B is 8x smaller than attn_q: more bits cost little */
        if (st->is_70b && (t == LOOM_Q3_K || t == LOOM_Q4_K)) t = LOOM_Q5_K;
        if (st->n_expert == 8) t = LOOM_Q8_0;
        st->i_attn_v++;
    } else if (cat == CAT_ATTN_K) {
        if (st->n_expert == 8) t = LOOM_Q8_0;
    } else if (cat == CAT_FFN_DOWN) {
        /* with experts the layer comes from the name (llama.cpp's layer_info);
         * dense models count ffn_down tensors in file order */
        int il = st->i_ffn_down, nl = st->n_layer;
        if (st->n_expert > 1 && sscanf(name, "blk.%d.", &il) != 1) il = st->i_ffn_down;
        if (mix == LOOM_MIX_Q3_K_M)
            t = il < nl / 16 ? LOOM_Q5_K : LOOM_Q4_K;
        else if (more_bits(il, nl))
            t = LOOM_Q6_K;
        st->i_ffn_down++;
    } else if (cat == CAT_ATTN_OUTPUT) {
        if (st->n_expert == 8) {
            if (mix == LOOM_MIX_Q3_K_M || mix == LOOM_MIX_Q4_K_M) t = LOOM_Q5_K;
        } else if (mix == LOOM_MIX_Q3_K_M) {
            t = LOOM_Q4_K;
        }
    }
    /* token_embd of an untied model and attn_q / ffn_up / ffn_gate keep the base */
    return loom_model_kquant_fallback(t, ne[0]);
}
