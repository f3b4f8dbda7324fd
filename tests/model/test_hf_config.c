/* tests/model/test_hf_config.c - config.json layouts of transformers 4 and 5
 * (issue 16): RoPE settings under "rope_parameters" (transformers 5) give the
 * same numbers as top-level rope_theta/rope_scaling (transformers 4); both
 * layouts disagreeing, unknown rope types and keys that change the math but
 * that loom does not implement are refused with one line naming the key.
 * The transformers-5 texts are what LlamaConfig(...).to_dict() writes
 * (transformers 5.25, json.dumps with sort_keys). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/safetensors.h"
#include "hf_configs.h"
#include "testing.h"

/* Llama 3.1 8B (hf_configs.h) as transformers 5 writes it. */
static const char *V5 =
    "{\"_name_or_path\":\"\",\"architectures\":[\"LlamaForCausalLM\"],\"attention_bias\":false,"
    "\"attention_dropout\":0.0,\"bos_token_id\":128000,\"chunk_size_feed_forward\":0,"
    "\"dtype\":\"bfloat16\",\"eos_token_id\":[128001,128008,128009],\"head_dim\":128,"
    "\"hidden_act\":\"silu\",\"hidden_size\":4096,\"id2label\":{\"0\":\"LABEL_0\",\"1\":"
    "\"LABEL_1\"},\"initializer_range\":0.02,\"intermediate_size\":14336,"
    "\"is_encoder_decoder\":false,\"label2id\":{\"LABEL_0\":0,\"LABEL_1\":1},"
    "\"max_position_embeddings\":131072,\"mlp_bias\":false,\"model_type\":\"llama\","
    "\"num_attention_heads\":32,\"num_hidden_layers\":32,\"num_key_value_heads\":8,"
    "\"output_attentions\":false,\"output_hidden_states\":false,\"pad_token_id\":null,"
    "\"pretraining_tp\":1,\"problem_type\":null,\"return_dict\":true,\"rms_norm_eps\":1e-05,"
    "\"rope_parameters\":{\"factor\":8.0,\"high_freq_factor\":4.0,\"low_freq_factor\":1.0,"
    "\"original_max_position_embeddings\":8192,\"rope_theta\":500000.0,\"rope_type\":"
    "\"llama3\"},\"tie_word_embeddings\":false,\"transformers_version\":\"5.25.0\","
    "\"use_cache\":true,\"vocab_size\":128256}";

/* transformers 5, no scaling: LlamaConfig(rope_parameters={"rope_theta": 100000.0, ...}) */
static const char *V5_DEFAULT =
    "{\"model_type\":\"llama\",\"vocab_size\":256,\"hidden_size\":64,\"intermediate_size\":128,"
    "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"rope_parameters\":{\"rope_theta\":"
    "100000.0,\"rope_type\":\"default\"},\"transformers_version\":\"5.25.0\"}";

static loom_status parse(const char *j, loom_model_config *c, char *err, size_t n) {
    return loom_hf_config_parse(j, strlen(j), c, err, n);
}

/* base with from -> to must be refused with status want and an error containing needle. */
static void bad(const char *base, const char *from, const char *to, loom_status want,
                const char *needle) {
    char *j = test_replace(base, from, to);
    CHECK_MSG(j != NULL, "edit '%s' not found", from);
    if (!j) return;
    loom_model_config c;
    char err[512] = "";
    loom_status s = parse(j, &c, err, sizeof err);
    CHECK_MSG(s == want, "'%s'->'%s': status %d want %d (%s)", from, to, s, want, err);
    CHECK_MSG(strstr(err, needle) != NULL, "'%s'->'%s': '%s' lacks '%s'", from, to, err, needle);
    CHECK_MSG(!strchr(err, '\n'), "error is not one line: %s", err);
    free(j);
}

static void good(const char *base, const char *from, const char *to) {
    char *j = test_replace(base, from, to);
    CHECK_MSG(j != NULL, "edit '%s' not found", from);
    if (!j) return;
    loom_model_config c;
    char err[512] = "";
    CHECK_MSG(parse(j, &c, err, sizeof err) == LOOM_OK, "'%s'->'%s': %s", from, to, err);
    free(j);
}

int main(void) {
    loom_model_config a, b;
    char err[512] = "";
    CHECK_MSG(parse(hf_config_llama31_8b, &a, err, sizeof err) == LOOM_OK, "v4: %s", err);
    CHECK_MSG(parse(V5, &b, err, sizeof err) == LOOM_OK, "v5: %s", err);
    /* the transformers-5 layout: same theta and llama3 scaling as transformers 4 */
    CHECK_MSG(b.rope.theta == 500000.0f, "v5 theta %g", (double)b.rope.theta);
    CHECK(b.rope.scaling == LOOM_ROPE_SCALING_LLAMA3 && b.rope.factor == 8.0f &&
          b.rope.low_freq_factor == 1.0f && b.rope.high_freq_factor == 4.0f &&
          b.rope.orig_ctx == 8192);
    CHECK(memcmp(&a.rope, &b.rope, sizeof a.rope) == 0);
    CHECK(a.dim == b.dim && a.head_dim == b.head_dim && a.max_ctx == b.max_ctx &&
          a.bos_id == b.bos_id && a.eos_id == b.eos_id && a.eot_id == b.eot_id);

    CHECK_MSG(parse(V5_DEFAULT, &b, err, sizeof err) == LOOM_OK, "v5 default: %s", err);
    CHECK_MSG(b.rope.theta == 100000.0f && b.rope.scaling == LOOM_ROPE_SCALING_NONE,
              "v5 default theta %g", (double)b.rope.theta);

    /* both layouts: agreeing is fine, disagreeing is an error */
    good(V5, "\"tie_word_embeddings\"", "\"rope_theta\":500000.0,\"tie_word_embeddings\"");
    good(hf_config_llama31_8b, "\"tie_word_embeddings\"",
         "\"rope_parameters\":{\"rope_type\":\"llama3\",\"rope_theta\":500000,\"factor\":8,"
         "\"low_freq_factor\":1,\"high_freq_factor\":4,\"original_max_position_embeddings\":8192},"
         "\"tie_word_embeddings\"");
    bad(V5, "\"tie_word_embeddings\"", "\"rope_theta\":10000.0,\"tie_word_embeddings\"",
        LOOM_ERR_FORMAT, "rope_theta");
    bad(hf_config_llama31_8b, "\"tie_word_embeddings\"",
        "\"rope_parameters\":{\"rope_type\":\"llama3\",\"rope_theta\":500000,\"factor\":16,"
        "\"low_freq_factor\":1,\"high_freq_factor\":4,\"original_max_position_embeddings\":8192},"
        "\"tie_word_embeddings\"",
        LOOM_ERR_FORMAT, "disagree");
    bad(hf_config_llama31_8b, "\"tie_word_embeddings\"",
        "\"rope_parameters\":{\"rope_type\":\"default\",\"rope_theta\":500000},"
        "\"tie_word_embeddings\"",
        LOOM_ERR_FORMAT, "disagree");

    /* rope types loom does not implement */
    static const char *const types[] = {"yarn", "dynamic", "longrope", "linear", "su"};
    for (int i = 0; i < 5; i++) {
        char to[64];
        snprintf(to, sizeof to, "\"rope_type\":\"%s\"", types[i]);
        bad(V5, "\"rope_type\":\"llama3\"", to, LOOM_ERR_UNSUPPORTED, types[i]);
    }
    bad(V5, "\"rope_theta\":500000.0,", "", LOOM_ERR_FORMAT, "rope_parameters.rope_theta");
    bad(V5, "\"factor\":8.0,", "", LOOM_ERR_FORMAT, "factor is missing");
    bad(V5, "\"factor\":8.0,", "\"factor\":8.0,\"beta_fast\":32,", LOOM_ERR_UNSUPPORTED,
        "beta_fast");
    bad(V5, "\"rope_parameters\":{", "\"rope_parameters\":{\"partial_rotary_factor\":0.5,",
        LOOM_ERR_UNSUPPORTED, "partial_rotary_factor");
    bad(V5,
        "\"rope_parameters\":{\"factor\":8.0,\"high_freq_factor\":4.0,\"low_freq_factor\":1.0,"
        "\"original_max_position_embeddings\":8192,\"rope_theta\":500000.0,\"rope_type\":"
        "\"llama3\"}",
        "\"rope_parameters\":[]", LOOM_ERR_FORMAT, "rope_parameters");

    /* keys that change the math */
    bad(V5, "\"attention_bias\":false", "\"attention_bias\":true", LOOM_ERR_UNSUPPORTED,
        "attention_bias");
    bad(V5, "\"mlp_bias\":false", "\"mlp_bias\":true", LOOM_ERR_UNSUPPORTED, "mlp_bias");
    bad(V5, "\"hidden_act\":\"silu\"", "\"hidden_act\":\"gelu\"", LOOM_ERR_UNSUPPORTED,
        "hidden_act");
    struct {
        const char *key_value, *needle;
    } math[] = {
        {"\"partial_rotary_factor\":0.5", "partial_rotary_factor"},
        {"\"sliding_window\":4096", "sliding_window"},
        {"\"quantization_config\":{\"quant_method\":\"awq\"}", "quantization_config"},
        {"\"logit_scale\":0.5", "logit_scale"},
        {"\"attn_logit_softcapping\":50.0", "attn_logit_softcapping"},
        {"\"no_rope_layers\":[1,1,0]", "no_rope_layers"},
        {"\"use_qk_norm\":true", "use_qk_norm"},
        {"\"layer_types\":[\"sliding_attention\"]", "layer_types"},
        {"\"rope_interleaved\":true", "rope_interleaved"},
        {"\"qk_layernorm\":true", "qk_layernorm"},
        {"\"embedding_multiplier\":12.0", "embedding_multiplier"},
    };
    for (size_t i = 0; i < sizeof math / sizeof math[0]; i++) {
        char to[160];
        snprintf(to, sizeof to, "%s,\"use_cache\"", math[i].key_value);
        bad(V5, "\"use_cache\"", to, LOOM_ERR_UNSUPPORTED, math[i].needle);
    }
    /* values of those keys that leave the math as loom computes it */
    good(V5, "\"use_cache\"", "\"sliding_window\":null,\"use_cache\"");
    good(V5, "\"use_cache\"", "\"partial_rotary_factor\":1.0,\"use_cache\"");
    good(V5, "\"use_cache\"",
         "\"layer_types\":[\"full_attention\",\"full_attention\"],\"use_cache\"");
    good(V5, "\"use_cache\"", "\"pretraining_tp\":2,\"use_cache\"");
    good(V5, "\"use_cache\"", "\"tie_word_embeddings\":true,\"use_cache\"");
    /* keys that do not change the math, known or not */
    good(V5, "\"use_cache\"", "\"torch_dtype\":\"float16\",\"use_cache\"");
    good(V5, "\"use_cache\"", "\"max_window_layers\":28,\"use_cache\""); /* with no sliding */
    good(V5, "\"use_cache\"", "\"some_trainer_note\":\"x\",\"use_cache\"");
    return test_summary("test_hf_config");
}
