/* model/tokenizer/tokenizer_json.c - load a Hugging Face tokenizer.json (byte-level BPE;
 * SentencePiece-style byte_fallback BPE goes to tokenizer_json_spm.c) with cJSON and hand its vocabulary, merges, added tokens and pre-tokenizer
 * regex to loom_tok_build(). Everything the loader does not implement is rejected
 * by name rather than silently ignored, so a tokenizer that would encode
 * differently from Hugging Face never loads. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer/tok_internal.h"

static bool is_null_or_absent(const cJSON *j) {
    return !j || cJSON_IsNull(j);
}

static bool is_true(const cJSON *j) {
    return j && cJSON_IsTrue(j);
}

static const char *str_field(const cJSON *obj, const char *name) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(j) ? j->valuestring : NULL;
}

/* A JSON number that is an integer in [0, INT32_MAX). */
static bool as_id(const cJSON *j, int32_t *id) {
    if (!cJSON_IsNumber(j)) return false;
    double d = j->valuedouble;
    if (!(d >= 0 && d < (double)INT32_MAX) || floor(d) != d) return false;
    *id = (int32_t)d;
    return true;
}

static loom_status read_file(const char *path, char **data, size_t *n, char *err, size_t err_n) {
    FILE *f = fopen(path, "rb");
    if (!f) return loom_model_fail(err, err_n, LOOM_ERR_IO, "tokenizer: cannot open %s", path);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : (1u << 20);
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return loom_model_fail(err, err_n, LOOM_ERR_OOM,
                                       "tokenizer: out of memory reading %s", path);
            }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0) break;
    }
    bool bad = ferror(f) != 0;
    fclose(f);
    if (bad) {
        free(buf);
        return loom_model_fail(err, err_n, LOOM_ERR_IO, "tokenizer: read error on %s", path);
    }
    buf[len] = 0;
    *data = buf;
    *n = len;
    return LOOM_OK;
}

/* pre_tokenizer -> regex stages. Supported: Sequence[Split(Regex, Isolated),
 * ByteLevel(use_regex=false)] (Llama 3), a lone ByteLevel(use_regex=true)
 * (GPT-2) and Sequence[Digits(individual_digits=true),
 * ByteLevel(use_regex=true)] (SmolLM, SmolLM2). All without add_prefix_space. */
static loom_status pick_pattern(const cJSON *pre, const char **stages, size_t *n_stages, char *err,
                                size_t err_n) {
    *n_stages = 1;
    const char *ty = str_field(pre, "type");
    if (!ty)
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "tokenizer.json: pre_tokenizer is missing or has no \"type\"");
    if (strcmp(ty, "ByteLevel") == 0) {
        if (is_true(cJSON_GetObjectItemCaseSensitive(pre, "add_prefix_space")))
            return loom_model_fail(
                err, err_n, LOOM_ERR_UNSUPPORTED,
                "tokenizer.json: ByteLevel pre_tokenizer with add_prefix_space = true "
                "is not supported");
        if (!is_true(cJSON_GetObjectItemCaseSensitive(pre, "use_regex")))
            return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                                   "tokenizer.json: ByteLevel pre_tokenizer without a split regex "
                                   "(use_regex = false) is not supported");
        stages[0] = loom_pretok_gpt2_pattern();
        return LOOM_OK;
    }
    if (strcmp(ty, "Sequence") != 0)
        return loom_model_fail(
            err, err_n, LOOM_ERR_UNSUPPORTED,
            "tokenizer.json: pre_tokenizer type \"%s\" is not supported (expected "
            "Sequence of Split + ByteLevel, or ByteLevel)",
            ty);
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(pre, "pretokenizers");
    if (!cJSON_IsArray(seq) || cJSON_GetArraySize(seq) != 2)
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "tokenizer.json: pre_tokenizer Sequence must hold exactly [Split, "
                               "ByteLevel]");
    const cJSON *split = cJSON_GetArrayItem(seq, 0), *bl = cJSON_GetArrayItem(seq, 1);
    const char *t0 = str_field(split, "type"), *t1 = str_field(bl, "type");
    if (t0 && !strcmp(t0, "Digits") && t1 && !strcmp(t1, "ByteLevel")) {
        if (!is_true(cJSON_GetObjectItemCaseSensitive(split, "individual_digits")))
            return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                                   "tokenizer.json: Digits pre_tokenizer with individual_digits = "
                                   "false is not supported");
        if (is_true(cJSON_GetObjectItemCaseSensitive(bl, "add_prefix_space")) ||
            !is_true(cJSON_GetObjectItemCaseSensitive(bl, "use_regex")))
            return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                                   "tokenizer.json: ByteLevel after Digits must have "
                                   "add_prefix_space = false and use_regex = true");
        stages[0] = loom_pretok_digits_pattern();
        stages[1] = loom_pretok_gpt2_pattern();
        *n_stages = 2;
        return LOOM_OK;
    }
    if (!t0 || strcmp(t0, "Split") != 0 || !t1 || strcmp(t1, "ByteLevel") != 0)
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "tokenizer.json: pre_tokenizer Sequence is [%s, %s]; only [Split, "
                               "ByteLevel] and [Digits, ByteLevel] are supported",
                               t0 ? t0 : "?", t1 ? t1 : "?");
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(split, "pattern");
    const char *re = str_field(pat, "Regex");
    if (!re)
        return loom_model_fail(
            err, err_n, LOOM_ERR_UNSUPPORTED,
            "tokenizer.json: Split pre_tokenizer needs a {\"Regex\": ...} pattern "
            "(a literal String pattern is not supported)");
    const char *beh = str_field(split, "behavior");
    if (!beh || strcmp(beh, "Isolated") != 0)
        return loom_model_fail(
            err, err_n, LOOM_ERR_UNSUPPORTED,
            "tokenizer.json: Split behavior \"%s\" is not supported (only Isolated)",
            beh ? beh : "(missing)");
    if (is_true(cJSON_GetObjectItemCaseSensitive(split, "invert")))
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "tokenizer.json: Split with invert = true is not supported");
    if (is_true(cJSON_GetObjectItemCaseSensitive(bl, "add_prefix_space")) ||
        is_true(cJSON_GetObjectItemCaseSensitive(bl, "use_regex")))
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "tokenizer.json: ByteLevel after Split must have add_prefix_space = "
                               "false and use_regex = false");
    stages[0] = re;
    return LOOM_OK;
}

/* Everything outside model/added_tokens/pre_tokenizer that changes encoding. */
static loom_status check_model(const cJSON *root, const cJSON *model, char *err, size_t err_n) {
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (!is_null_or_absent(norm)) {
        const char *ty = str_field(norm, "type");
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "tokenizer.json: normalizer \"%s\" is not supported (only null)",
                               ty ? ty : "?");
    }
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (!is_null_or_absent(dec)) {
        const char *ty = str_field(dec, "type");
        if (!ty || strcmp(ty, "ByteLevel") != 0)
            return loom_model_fail(
                err, err_n, LOOM_ERR_UNSUPPORTED,
                "tokenizer.json: decoder \"%s\" is not supported (only ByteLevel)", ty ? ty : "?");
    }
    const char *ty = str_field(model, "type");
    if (ty && strcmp(ty, "BPE") != 0)
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "tokenizer.json: model type \"%s\" is not supported (only BPE)", ty);
    const cJSON *drop = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (!is_null_or_absent(drop) && !(cJSON_IsNumber(drop) && drop->valuedouble == 0))
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "tokenizer.json: BPE dropout is not supported");
    if (is_true(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback")))
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "tokenizer.json: BPE byte_fallback (SentencePiece-style) is not "
                               "supported");
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(model, affixes[i]);
        if (!is_null_or_absent(a) && !(cJSON_IsString(a) && a->valuestring[0] == 0))
            return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                                   "tokenizer.json: BPE %s is not supported", affixes[i]);
    }
    return LOOM_OK;
}

/* The token a TemplateProcessing post-processor puts before the text
 * ("single": [{SpecialToken X}, {Sequence A}, ...]): what HF's
 * encode(add_special_tokens=True) prepends. found: the post-processor says
 * either way; *bos: the token's text or NULL when it adds nothing in front. */
static void template_bos(const cJSON *pp, bool *found, const char **bos) {
    const char *ty = str_field(pp, "type");
    if (ty && !strcmp(ty, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(pp, "processors")) {
            template_bos(it, found, bos);
        }
        return;
    }
    if (!ty || strcmp(ty, "TemplateProcessing") != 0) return;
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(pp, "single");
    const cJSON *first = cJSON_IsArray(single) ? single->child : NULL;
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(first, "SpecialToken");
    *found = true;
    *bos = sp ? str_field(sp, "id") : NULL;
    if (*bos) { /* the special token's own ids, when the table gives one */
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(pp, "special_tokens"), *bos);
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(e, "tokens");
        if (cJSON_IsArray(ids) && cJSON_IsString(ids->child)) *bos = ids->child->valuestring;
    }
}

/* BOS as Hugging Face adds it: tokenizer_config.json's add_bos_token and
 * bos_token beside tokenizer.json (LlamaTokenizerFast rebuilds its
 * post-processor from them), else the TemplateProcessing post-processor.
 * Without either, the Llama-3 guess from loom_tok_build stands (BOS when
 * <|begin_of_text|> exists): the Llama-3 tokenizer.json loom ships has a
 * ByteLevel post-processor, and Llama 3 is trained with BOS. */
static loom_status apply_bos(const cJSON *root, const char *path, loom_tokenizer *t, char *err,
                             size_t err_n) {
    bool found = false, add = false;
    const char *bos_text = NULL;
    template_bos(cJSON_GetObjectItemCaseSensitive(root, "post_processor"), &found, &bos_text);
    add = found && bos_text;

    size_t dn = strlen(path);
    while (dn && path[dn - 1] != '/')
        dn--;
    char *cpath = malloc(dn + 32);
    if (!cpath) return loom_model_fail(err, err_n, LOOM_ERR_OOM, "tokenizer: out of memory");
    snprintf(cpath, dn + 32, "%.*stokenizer_config.json", (int)dn, path);
    char *data = NULL;
    size_t n = 0;
    cJSON *cfg = NULL;
    FILE *f = fopen(cpath, "rb");
    if (f) {
        fclose(f);
        loom_status st = read_file(cpath, &data, &n, err, err_n);
        if (st == LOOM_OK) cfg = cJSON_ParseWithLength(data, n);
        free(data);
        if (st == LOOM_OK && !cfg)
            st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "tokenizer: %s is not valid JSON",
                                 cpath);
        if (st != LOOM_OK) {
            free(cpath);
            return st;
        }
    }
    free(cpath);
    const cJSON *ab = cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token");
    const cJSON *bt = cJSON_GetObjectItemCaseSensitive(cfg, "bos_token");
    if (cJSON_IsObject(bt)) bt = cJSON_GetObjectItemCaseSensitive(bt, "content");
    if (cJSON_IsBool(ab)) {
        found = true;
        add = cJSON_IsTrue(ab);
    }
    if (cJSON_IsString(bt)) bos_text = bt->valuestring;
    loom_status st = LOOM_OK;
    int32_t id = -1;
    if (bos_text && loom_tokenizer_find(t, bos_text, strlen(bos_text), &id) != LOOM_OK)
        st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                             "tokenizer: the BOS token \"%.60s\" is not in the vocabulary",
                             bos_text);
    if (st == LOOM_OK && id >= 0)
        loom_tokenizer_set_special_ids(t, id, loom_tokenizer_eos(t), loom_tokenizer_eot(t));
    /* The chat template (a string, or a list of {name, template}: the
     * "default" one), and eos_token when the vocabulary gave no guess. */
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    if (cJSON_IsArray(ct)) {
        const cJSON *it, *pick = NULL;
        cJSON_ArrayForEach(it, ct) {
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(it, "name");
            if (cJSON_IsString(nm) && !strcmp(nm->valuestring, "default"))
                pick = cJSON_GetObjectItemCaseSensitive(it, "template");
        }
        ct = pick;
    }
    if (st == LOOM_OK && cJSON_IsString(ct) &&
        loom_tokenizer_set_chat_template(t, ct->valuestring) != LOOM_OK)
        st = loom_model_fail(err, err_n, LOOM_ERR_OOM, "tokenizer: out of memory");
    const cJSON *et = cJSON_GetObjectItemCaseSensitive(cfg, "eos_token");
    if (cJSON_IsObject(et)) et = cJSON_GetObjectItemCaseSensitive(et, "content");
    int32_t eid = -1;
    if (st == LOOM_OK && loom_tokenizer_eos(t) < 0 && cJSON_IsString(et) &&
        loom_tokenizer_find(t, et->valuestring, strlen(et->valuestring), &eid) == LOOM_OK)
        loom_tokenizer_set_special_ids(t, loom_tokenizer_bos(t), eid, loom_tokenizer_eot(t));
    if (st == LOOM_OK && found) {
        if (add && loom_tokenizer_bos(t) < 0)
            st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                 "tokenizer: add_bos_token is true but there is no bos_token");
        else
            loom_tokenizer_set_add_bos(t, add);
    }
    cJSON_Delete(cfg);
    return st;
}

loom_status loom_tokenizer_load_hf_json(const char *path, loom_tokenizer **out, char *err,
                                        size_t err_n) {
    if (!path || !out)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "tokenizer: NULL argument");
    *out = NULL;
    char *data = NULL;
    size_t n = 0;
    LOOM_TRY(read_file(path, &data, &n, err, err_n));
    cJSON *root = cJSON_ParseWithLength(data, n);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = (at && at >= data && at <= data + n) ? (size_t)(at - data) : 0;
        free(data);
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "tokenizer: %s is not valid JSON (near byte %zu)", path, off);
    }
    free(data);

    loom_status st = LOOM_OK;
    const char **tokens = NULL;
    int32_t *types = NULL;
    loom_tok_merge *merges = NULL;
    const char *stages[LOOM_PRETOK_MAX_STAGES] = {NULL};
    size_t n_stages = 0;

    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *jm = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(model)) {
        st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "tokenizer.json: no \"model\" object");
        goto done;
    }
    if (!cJSON_IsObject(vocab)) {
        st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                             "tokenizer.json: model.vocab missing or not an "
                             "object");
        goto done;
    }
    if (!cJSON_IsArray(jm)) {
        st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                             "tokenizer.json: model.merges missing or not an "
                             "array");
        goto done;
    }
    if (!is_null_or_absent(added) && !cJSON_IsArray(added)) {
        st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                             "tokenizer.json: added_tokens is not an array");
        goto done;
    }
    if (is_true(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback"))) {
        /* SentencePiece-style BPE (Llama 2, Mistral): tokenizer_json_spm.c */
        const char *mt = str_field(model, "type");
        if (mt && strcmp(mt, "BPE") != 0)
            st = loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                                 "tokenizer.json: model type \"%s\" is not supported (only BPE)",
                                 mt);
        else if ((st = loom_tok_load_json_spm(root, out, err, err_n)) == LOOM_OK &&
                 (st = apply_bos(root, path, *out, err, err_n)) != LOOM_OK) {
            loom_tokenizer_free(*out);
            *out = NULL;
        }
        goto done;
    }
    if ((st = check_model(root, model, err, err_n)) != LOOM_OK) goto done;
    if ((st = pick_pattern(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), stages,
                           &n_stages, err, err_n)) != LOOM_OK)
        goto done;
    const cJSON *im = cJSON_GetObjectItemCaseSensitive(model, "ignore_merges");
    if (!is_null_or_absent(im) && !cJSON_IsBool(im)) {
        st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                             "tokenizer.json: model.ignore_merges is not a "
                             "boolean");
        goto done;
    }
    bool ignore_merges = is_true(im);

    /* Vocabulary size = largest id + 1 over vocab and added tokens. */
    int32_t max_id = -1, id;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        if (!as_id(it, &id)) {
            st = loom_model_fail(
                err, err_n, LOOM_ERR_FORMAT,
                "tokenizer.json: model.vocab[\"%s\"] is not a non-negative integer id",
                it->string ? it->string : "?");
            goto done;
        }
        if (id > max_id) max_id = id;
    }
    cJSON_ArrayForEach(it, added) {
        const cJSON *jid = cJSON_GetObjectItemCaseSensitive(it, "id");
        const char *content = str_field(it, "content");
        if (!as_id(jid, &id) || !content) {
            st = loom_model_fail(
                err, err_n, LOOM_ERR_FORMAT,
                "tokenizer.json: an added_tokens entry lacks an integer \"id\" or a "
                "string \"content\"");
            goto done;
        }
        static const char *const unsup[] = {"lstrip", "rstrip", "single_word"};
        for (int k = 0; k < 3; k++)
            if (is_true(cJSON_GetObjectItemCaseSensitive(it, unsup[k]))) {
                st = loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                                     "tokenizer.json: added token %d \"%s\" sets %s, which is not "
                                     "supported",
                                     (int)id, content, unsup[k]);
                goto done;
            }
        if (id > max_id) max_id = id;
    }
    if (max_id < 0) {
        st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "tokenizer.json: empty vocabulary");
        goto done;
    }
    size_t n_tok = (size_t)max_id + 1;
    tokens = calloc(n_tok, sizeof(*tokens));
    types = calloc(n_tok, sizeof(*types));
    size_t n_merges = (size_t)cJSON_GetArraySize(jm);
    merges = calloc(n_merges ? n_merges : 1, sizeof(*merges));
    if (!tokens || !types || !merges) {
        st = loom_model_fail(err, err_n, LOOM_ERR_OOM, "tokenizer: out of memory");
        goto done;
    }
    cJSON_ArrayForEach(it, vocab) {
        as_id(it, &id);
        if (tokens[id]) {
            st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                 "tokenizer.json: id %d is used by both \"%s\" and \"%s\"", (int)id,
                                 tokens[id], it->string);
            goto done;
        }
        tokens[id] = it->string;
        types[id] = LOOM_TOKEN_NORMAL;
    }
    /* Added tokens win over a vocab entry with the same id, as in Hugging Face. */
    cJSON_ArrayForEach(it, added) {
        as_id(cJSON_GetObjectItemCaseSensitive(it, "id"), &id);
        tokens[id] = str_field(it, "content");
        types[id] = is_true(cJSON_GetObjectItemCaseSensitive(it, "special"))
                        ? LOOM_TOKEN_CONTROL
                        : LOOM_TOKEN_USER_DEFINED;
    }

    /* Merges: "left right" strings, or [left, right] arrays (newer files). The
     * string form points into a copy that is split in place. */
    size_t r = 0;
    cJSON_ArrayForEach(it, jm) {
        if (cJSON_IsString(it)) {
            char *s = it->valuestring; /* owned by the cJSON tree, freed with it */
            char *sp = strchr(s, ' ');
            if (!sp || sp == s || !sp[1] || strchr(sp + 1, ' ')) {
                st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                     "tokenizer.json: merges[%zu] \"%s\" is not \"left right\"", r,
                                     s);
                goto done;
            }
            *sp = 0; /* the tree is ours and is freed below */
            merges[r].left = s;
            merges[r].right = sp + 1;
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 &&
                   cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
            merges[r].left = cJSON_GetArrayItem(it, 0)->valuestring;
            merges[r].right = cJSON_GetArrayItem(it, 1)->valuestring;
        } else {
            st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                 "tokenizer.json: merges[%zu] is neither \"left right\" nor [left, "
                                 "right]",
                                 r);
            goto done;
        }
        r++;
    }

    st = loom_tok_build(tokens, n_tok, types, merges, n_merges, stages, n_stages, ignore_merges,
                        out, err, err_n);
    if (st == LOOM_OK && (st = apply_bos(root, path, *out, err, err_n)) != LOOM_OK) {
        loom_tokenizer_free(*out);
        *out = NULL;
    }

done:
    free(tokens);
    free(types);
    free(merges);
    cJSON_Delete(root);
    return st;
}
