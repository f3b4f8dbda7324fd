/* model/formats/hf_config.c - Hugging Face config.json (Llama, Mistral, Mixtral) into
 * a loom_model_config, with transformers' defaults for absent fields and
 * loom_model_config_validate on the result. */
#define _POSIX_C_SOURCE 200809L

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "loom/safetensors.h"
#include "model/model_internal.h"

static const char *json_type(const cJSON *j) {
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsObject(j)) return "an object";
    return "invalid";
}

/* Member key of obj, NULL when absent or JSON null. */
static const cJSON *member(const cJSON *obj, const char *key) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNull(j) ? NULL : j;
}

static loom_status int_of(const cJSON *j, const char *field, int64_t *out, char *err,
                          size_t err_n) {
    double v = cJSON_IsNumber(j) ? j->valuedouble : NAN;
    if (!(fabs(v) <= 9007199254740992.0) || v != floor(v))
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "config.json: %s must be an integer (got %s)", field,
                               cJSON_IsNumber(j) ? "a fraction or huge number" : json_type(j));
    *out = (int64_t)v;
    return LOOM_OK;
}

/* Integer field: absent/null -> def (or an error when required). */
static loom_status get_int(const cJSON *obj, const char *key, bool required, int64_t def,
                           int64_t *out, char *err, size_t err_n) {
    const cJSON *j = member(obj, key);
    if (!j) {
        if (required)
            return loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "config.json: %s is missing", key);
        *out = def;
        return LOOM_OK;
    }
    return int_of(j, key, out, err, err_n);
}

static loom_status get_num(const cJSON *obj, const char *field, const char *key, bool required,
                           double def, double *out, char *err, size_t err_n) {
    const cJSON *j = member(obj, key);
    if (!j) {
        if (required)
            return loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "config.json: %s is missing",
                                   field);
        *out = def;
        return LOOM_OK;
    }
    if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble))
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "config.json: %s must be a finite number (got %s)", field,
                               json_type(j));
    *out = j->valuedouble;
    return LOOM_OK;
}

static loom_status get_bool(const cJSON *obj, const char *key, bool def, bool *out, char *err,
                            size_t err_n) {
    const cJSON *j = member(obj, key);
    if (!j) {
        *out = def;
        return LOOM_OK;
    }
    if (!cJSON_IsBool(j))
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "config.json: %s must be true or false (got %s)", key, json_type(j));
    *out = cJSON_IsTrue(j);
    return LOOM_OK;
}

/* bos/eos ids: an int, a list of ints (first and last are returned) or null. */
static loom_status get_ids(const cJSON *obj, const char *key, int64_t def, int64_t *first,
                           int64_t *last, char *err, size_t err_n) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!j) {
        *first = *last = def;
        return LOOM_OK;
    }
    if (cJSON_IsNull(j)) {
        *first = *last = -1;
        return LOOM_OK;
    }
    if (!cJSON_IsArray(j)) {
        LOOM_TRY(int_of(j, key, first, err, err_n));
        *last = *first;
        return LOOM_OK;
    }
    if (!j->child)
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "config.json: %s is an empty list",
                               key);
    for (const cJSON *e = j->child; e; e = e->next) {
        int64_t v = -1;
        LOOM_TRY(int_of(e, key, &v, err, err_n));
        if (e == j->child) *first = v;
        *last = v;
    }
    return LOOM_OK;
}

static loom_status to_i32(int64_t v, const char *field, int32_t *out, char *err, size_t err_n) {
    if (v < INT32_MIN || v > INT32_MAX)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "config.json: %s (%lld) does not fit in 32 bits", field,
                               (long long)v);
    *out = (int32_t)v;
    return LOOM_OK;
}

/* Keys of a RoPE settings object (transformers 4 "rope_scaling", transformers
 * 5 "rope_parameters") that loom implements. Every other key there changes
 * the rotation (yarn's beta_fast, longrope's factor lists, ...), so it is
 * refused rather than ignored. */
static const char *const ROPE_KEYS[] = {"rope_type",
                                        "type",
                                        "rope_theta",
                                        "factor",
                                        "low_freq_factor",
                                        "high_freq_factor",
                                        "original_max_position_embeddings"};

/* One RoPE settings object (name: "rope_scaling" or "rope_parameters") into
 * r->scaling and its factors. theta is left alone. */
static loom_status parse_rope_object(const cJSON *rs, const char *name, loom_rope_params *r,
                                     char *err, size_t err_n) {
    r->scaling = LOOM_ROPE_SCALING_NONE;
    if (!cJSON_IsObject(rs))
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "config.json: %s must be an object or null (got %s)", name,
                               json_type(rs));
    for (const cJSON *e = rs->child; e; e = e->next) {
        bool known = false;
        for (size_t k = 0; k < sizeof ROPE_KEYS / sizeof ROPE_KEYS[0]; k++)
            known = known || !strcmp(e->string, ROPE_KEYS[k]);
        /* partial_rotary_factor 1 is full rotation, what loom does */
        if (!known && !strcmp(e->string, "partial_rotary_factor") && cJSON_IsNumber(e) &&
            e->valuedouble == 1.0)
            known = true;
        if (!known && !cJSON_IsNull(e))
            return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                                   "config.json: %s.%.40s is not supported (loom implements "
                                   "rope_type default and llama3 only)",
                                   name, e->string);
    }
    const cJSON *type = member(rs, "rope_type");
    if (!type) type = member(rs, "type");
    char field[64];
    snprintf(field, sizeof field, "%s.rope_type", name);
    if (!type && !strcmp(name, "rope_parameters")) return LOOM_OK; /* transformers 5: default */
    if (!cJSON_IsString(type))
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "config.json: %s must be a string (got %s)", field,
                               type ? json_type(type) : "nothing");
    if (!strcmp(type->valuestring, "default")) return LOOM_OK;
    if (strcmp(type->valuestring, "llama3") != 0)
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "config.json: %s '%.40s' is not supported (llama3 or default)",
                               field, type->valuestring);
    double factor = 0, lo = 0, hi = 0;
    int64_t orig = 0;
    char f1[64], f2[64], f3[64], f4[80];
    snprintf(f1, sizeof f1, "%s.factor", name);
    snprintf(f2, sizeof f2, "%s.low_freq_factor", name);
    snprintf(f3, sizeof f3, "%s.high_freq_factor", name);
    snprintf(f4, sizeof f4, "%s.original_max_position_embeddings", name);
    LOOM_TRY(get_num(rs, f1, "factor", true, 0, &factor, err, err_n));
    LOOM_TRY(get_num(rs, f2, "low_freq_factor", true, 0, &lo, err, err_n));
    LOOM_TRY(get_num(rs, f3, "high_freq_factor", true, 0, &hi, err, err_n));
    const cJSON *o = member(rs, "original_max_position_embeddings");
    if (!o) return loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "config.json: %s is missing", f4);
    LOOM_TRY(int_of(o, f4, &orig, err, err_n));
    LOOM_TRY(to_i32(orig, f4, &r->orig_ctx, err, err_n));
    r->scaling = LOOM_ROPE_SCALING_LLAMA3;
    r->factor = (float)factor;
    r->low_freq_factor = (float)lo;
    r->high_freq_factor = (float)hi;
    return LOOM_OK;
}

/* RoPE theta and scaling from either layout: transformers 4 writes top-level
 * rope_theta + rope_scaling, transformers 5 one rope_parameters object (with
 * rope_theta inside). Reading only the old layout silently gave theta 10000
 * and no scaling on transformers-5 files (issue 16). A file with both must
 * say the same thing in both, or it is refused: loom cannot know which one
 * the writer meant. A layout that is absent says nothing and is no conflict. */
static loom_status parse_rope(const cJSON *root, double def_theta, loom_rope_params *r, char *err,
                              size_t err_n) {
    const cJSON *rp = member(root, "rope_parameters"), *rs = member(root, "rope_scaling");
    const cJSON *rt = member(root, "rope_theta");
    loom_rope_params old = *r, neu = *r;
    double t_old = def_theta, t_new = def_theta;
    LOOM_TRY(get_num(root, "rope_theta", "rope_theta", false, def_theta, &t_old, err, err_n));
    if (rs) LOOM_TRY(parse_rope_object(rs, "rope_scaling", &old, err, err_n));
    if (!rp) {
        *r = old;
        r->theta = (float)t_old;
        return LOOM_OK;
    }
    LOOM_TRY(parse_rope_object(rp, "rope_parameters", &neu, err, err_n));
    if (!member(rp, "rope_theta") && !rt)
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "config.json: rope_parameters.rope_theta is missing");
    LOOM_TRY(
        get_num(rp, "rope_parameters.rope_theta", "rope_theta", false, t_old, &t_new, err, err_n));
    if (rt && (float)t_new != (float)t_old)
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "config.json: rope_theta (%g) and rope_parameters.rope_theta (%g) "
                               "disagree",
                               t_old, t_new);
    if (rs && (old.scaling != neu.scaling ||
               (neu.scaling == LOOM_ROPE_SCALING_LLAMA3 &&
                (old.factor != neu.factor || old.low_freq_factor != neu.low_freq_factor ||
                 old.high_freq_factor != neu.high_freq_factor || old.orig_ctx != neu.orig_ctx))))
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "config.json: rope_scaling and rope_parameters disagree (rope type "
                               "or factors)");
    *r = neu;
    r->theta = (float)t_new;
    return LOOM_OK;
}

/* Top-level keys that change the model's math in some transformers
 * architecture and that loom does not implement, each with the value(s)
 * that leave loom's math unchanged. Unknown keys outside this list are
 * bookkeeping (torch_dtype, transformers_version, _name_or_path,
 * initializer_range, ...) and are accepted. docs/adr/0021 records the list. */
typedef enum {
    NEUTRAL_NULL,
    NEUTRAL_FALSE,
    NEUTRAL_ONE,
    NEUTRAL_ALL_ONE,
    NEUTRAL_FULL_ATTN
} neutral;
static const struct {
    const char *key;
    neutral ok;
} MATH_KEYS[] = {
    {"quantization_config", NEUTRAL_NULL},
    {"partial_rotary_factor", NEUTRAL_ONE},
    {"rotary_pct", NEUTRAL_ONE},
    {"rope_interleaved", NEUTRAL_FALSE},
    {"logit_scale", NEUTRAL_ONE},
    {"logits_scaling", NEUTRAL_ONE},
    {"embedding_multiplier", NEUTRAL_ONE},
    {"residual_multiplier", NEUTRAL_ONE},
    {"attention_multiplier", NEUTRAL_NULL},
    {"attn_logit_softcapping", NEUTRAL_NULL},
    {"final_logit_softcapping", NEUTRAL_NULL},
    {"query_pre_attn_scalar", NEUTRAL_NULL},
    {"qk_layernorm", NEUTRAL_FALSE},
    {"use_qk_norm", NEUTRAL_FALSE},
    {"no_rope_layers", NEUTRAL_ALL_ONE},
    {"layer_types", NEUTRAL_FULL_ATTN},
    {"use_sliding_window", NEUTRAL_FALSE},
    {"bias", NEUTRAL_FALSE},
    {"use_bias", NEUTRAL_FALSE},
    {"shared_expert_intermediate_size", NEUTRAL_NULL},
    {"n_shared_experts", NEUTRAL_NULL},
    {"moe_intermediate_size", NEUTRAL_NULL},
};

static bool is_neutral(const cJSON *j, neutral ok) {
    switch (ok) {
    case NEUTRAL_NULL:
        return false; /* member() already dropped JSON null */
    case NEUTRAL_FALSE:
        return cJSON_IsFalse(j);
    case NEUTRAL_ONE:
        return cJSON_IsNumber(j) && j->valuedouble == 1.0;
    case NEUTRAL_ALL_ONE:
    case NEUTRAL_FULL_ATTN:
        if (!cJSON_IsArray(j)) return false;
        for (const cJSON *e = j->child; e; e = e->next) {
            if (ok == NEUTRAL_ALL_ONE && !(cJSON_IsNumber(e) && e->valuedouble == 1.0))
                return false;
            if (ok == NEUTRAL_FULL_ATTN &&
                !(cJSON_IsString(e) && !strcmp(e->valuestring, "full_attention")))
                return false;
        }
        return true;
    }
    return false;
}

static loom_status check_math_keys(const cJSON *root, char *err, size_t err_n) {
    for (size_t k = 0; k < sizeof MATH_KEYS / sizeof MATH_KEYS[0]; k++) {
        const cJSON *j = member(root, MATH_KEYS[k].key);
        if (!j || is_neutral(j, MATH_KEYS[k].ok)) continue;
        char v[48] = "";
        if (cJSON_IsNumber(j))
            snprintf(v, sizeof v, "%g", j->valuedouble);
        else if (cJSON_IsString(j))
            snprintf(v, sizeof v, "\"%.40s\"", j->valuestring);
        else if (cJSON_IsBool(j))
            snprintf(v, sizeof v, "%s", cJSON_IsTrue(j) ? "true" : "false");
        else
            snprintf(v, sizeof v, "%s", json_type(j));
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "config.json: %s = %s changes the model's math and is not "
                               "supported by loom",
                               MATH_KEYS[k].key, v);
    }
    return LOOM_OK;
}

static loom_status parse_root(const cJSON *root, loom_model_config *out, char *err, size_t err_n) {
    if (!cJSON_IsObject(root))
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "config.json: not a JSON object (got %s)", json_type(root));
    /* architecture: model_type, else architectures[0] */
    const char *mt = NULL;
    const cJSON *j = member(root, "model_type");
    if (j && !cJSON_IsString(j))
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "config.json: model_type must be a string (got %s)", json_type(j));
    if (j) mt = j->valuestring;
    const char *arch = NULL;
    j = member(root, "architectures");
    if (cJSON_IsArray(j) && cJSON_IsString(j->child)) arch = j->child->valuestring;
    if (!mt && arch) {
        if (!strcmp(arch, "LlamaForCausalLM")) mt = "llama";
        if (!strcmp(arch, "MistralForCausalLM")) mt = "mistral";
        if (!strcmp(arch, "MixtralForCausalLM")) mt = "mixtral";
    }
    if (!mt)
        return loom_model_fail(
            err, err_n, LOOM_ERR_UNSUPPORTED,
            "config.json: no model_type and no known architectures entry (%.60s)",
            arch ? arch : "none");
    bool llama = !strcmp(mt, "llama"), mistral = !strcmp(mt, "mistral"),
         mixtral = !strcmp(mt, "mixtral");
    if (!llama && !mistral && !mixtral)
        return loom_model_fail(
            err, err_n, LOOM_ERR_UNSUPPORTED,
            "config.json: model_type '%.40s' is not supported (llama, mistral, mixtral)", mt);

    loom_model_config c = {0};
    snprintf(c.arch, sizeof c.arch, "llama");
    int64_t v = -1;
    LOOM_TRY(get_int(root, "vocab_size", true, 0, &c.vocab_size, err, err_n));
    LOOM_TRY(get_int(root, "hidden_size", true, 0, &c.dim, err, err_n));
    LOOM_TRY(get_int(root, "intermediate_size", true, 0, &c.ffn_dim, err, err_n));
    LOOM_TRY(get_int(root, "num_hidden_layers", true, 0, &c.n_layers, err, err_n));
    LOOM_TRY(get_int(root, "num_attention_heads", true, 0, &c.n_heads, err, err_n));
    LOOM_TRY(get_int(root, "num_key_value_heads", false, c.n_heads, &c.n_kv_heads, err, err_n));
    if (c.n_heads <= 0)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "config.json: num_attention_heads must be positive (got %lld)",
                               (long long)c.n_heads);
    LOOM_TRY(get_int(root, "head_dim", false, c.dim / c.n_heads, &c.head_dim, err, err_n));
    if (c.head_dim > INT32_MAX)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "config.json: head_dim (%lld) is too large", (long long)c.head_dim);
    double d = 0;
    LOOM_TRY(get_num(root, "rms_norm_eps", "rms_norm_eps", false, mixtral ? 1e-5 : 1e-6, &d, err,
                     err_n));
    c.rms_eps = (float)d;
    c.rope.mode = LOOM_ROPE_NEOX; /* HF rotate_half on unpermuted q/k weights */
    c.rope.n_dims = (int32_t)c.head_dim;
    LOOM_TRY(parse_rope(root, mixtral ? 1e6 : 1e4, &c.rope, err, err_n));
    LOOM_TRY(check_math_keys(root, err, err_n));
    LOOM_TRY(get_int(root, "max_position_embeddings", false, llama ? 2048 : 4096 * 32, &c.max_ctx,
                     err, err_n));
    LOOM_TRY(get_bool(root, "tie_word_embeddings", false, &c.tie_embeddings, err, err_n));

    /* features loom does not have */
    const cJSON *act = member(root, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu") != 0))
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "config.json: hidden_act must be \"silu\" (got %.40s)",
                               cJSON_IsString(act) ? act->valuestring : json_type(act));
    bool b = false;
    LOOM_TRY(get_bool(root, "attention_bias", false, &b, err, err_n));
    if (b)
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "config.json: attention_bias=true is not supported");
    LOOM_TRY(get_bool(root, "mlp_bias", false, &b, err, err_n));
    if (b)
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "config.json: mlp_bias=true is not supported");
    LOOM_TRY(get_int(root, "sliding_window", false, -1, &v, err, err_n));
    if (v >= 0 && v < c.max_ctx)
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "config.json: sliding_window (%lld) below max_position_embeddings "
                               "(%lld) is not supported",
                               (long long)v, (long long)c.max_ctx);

    c.moe_every = 1;
    if (mixtral) {
        LOOM_TRY(get_int(root, "num_local_experts", false, 8, &c.n_experts, err, err_n));
        LOOM_TRY(get_int(root, "num_experts_per_tok", false, 2, &c.n_experts_used, err, err_n));
        c.expert_ffn_dim = c.ffn_dim;
        c.moe_offset = 0;
        if (c.n_experts == 0)
            return loom_model_fail(
                err, err_n, LOOM_ERR_INVALID_ARG,
                "config.json: num_local_experts must be positive for mixtral (got 0)");
    }

    int64_t bos = -1, bos_last = -1, eos = -1, eot = -1;
    LOOM_TRY(get_ids(root, "bos_token_id", 1, &bos, &bos_last, err, err_n));
    LOOM_TRY(get_ids(root, "eos_token_id", 2, &eos, &eot, err, err_n));
    LOOM_TRY(to_i32(bos, "bos_token_id", &c.bos_id, err, err_n));
    LOOM_TRY(to_i32(eos, "eos_token_id", &c.eos_id, err, err_n));
    LOOM_TRY(to_i32(eos == eot ? -1 : eot, "eos_token_id", &c.eot_id, err, err_n));

    char verr[256];
    loom_status s = loom_model_config_validate(&c, verr, sizeof verr);
    if (s != LOOM_OK) return loom_model_fail(err, err_n, s, "config.json: %s", verr);
    *out = c;
    return LOOM_OK;
}

loom_status loom_hf_config_parse(const char *json, size_t n, loom_model_config *out, char *err,
                                 size_t err_n) {
    if (err && err_n) err[0] = '\0';
    if (!json || !out)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "config.json: NULL argument");
    /* a NUL-terminated copy: cJSON never reads past it, and a NUL inside the
     * text (which would end the JSON early) is caught */
    char *txt = malloc(n + 1);
    if (!txt) return loom_model_fail(err, err_n, LOOM_ERR_OOM, "config.json: out of memory");
    memcpy(txt, json, n);
    txt[n] = '\0';
    size_t len = strlen(txt);
    if (len != n) {
        free(txt);
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "config.json: not valid JSON (NUL byte at %zu)", len);
    }
    cJSON *root = cJSON_ParseWithOpts(txt, NULL, 1);
    free(txt);
    if (!root) return loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "config.json: not valid JSON");
    loom_status s = parse_root(root, out, err, err_n);
    cJSON_Delete(root);
    return s;
}

loom_status loom_hf_config_load(const char *path, loom_model_config *out, char *err, size_t err_n) {
    if (err && err_n) err[0] = '\0';
    if (!path || !out)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "config.json: NULL argument");
    struct stat sb;
    size_t pn = strlen(path) + 16;
    char *p = malloc(pn);
    if (!p) return loom_model_fail(err, err_n, LOOM_ERR_OOM, "config.json: out of memory");
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        snprintf(p, pn, "%s/config.json", path);
    else
        snprintf(p, pn, "%s", path);
    FILE *f = fopen(p, "rb");
    if (!f) {
        loom_status s = loom_model_fail(err, err_n, LOOM_ERR_IO, "config.json: cannot open %s: %s",
                                        p, strerror(errno));
        free(p);
        return s;
    }
    free(p);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    loom_status s = LOOM_OK;
    for (;;) {
        if (len == cap) {
            if (cap >= (64u << 20)) {
                s = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                    "config.json: file is larger than 64 MiB");
                break;
            }
            cap = cap ? 2 * cap : 16384;
            char *nb = realloc(buf, cap);
            if (!nb) {
                s = loom_model_fail(err, err_n, LOOM_ERR_OOM, "config.json: out of memory");
                break;
            }
            buf = nb;
        }
        size_t k = fread(buf + len, 1, cap - len, f);
        len += k;
        if (k == 0) break;
    }
    fclose(f);
    if (s == LOOM_OK) s = loom_hf_config_parse(buf, len, out, err, err_n);
    free(buf);
    return s;
}
