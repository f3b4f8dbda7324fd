/* model/tokenizer/tokenizer_json_spm.c - SentencePiece BPE from a Hugging
 * Face tokenizer.json (Llama 2, TinyLlama, Mistral: model.type BPE with
 * byte_fallback), the JSON twin of tokenizer_spm.c (docs/adr/0031):
 *   - vocab and merges are taken as written, "▁" (U+2581) standing for a
 *     space; <0xXX> vocab entries are the byte-fallback tokens;
 *   - the "▁" prefix (SentencePiece's add_dummy_prefix) comes from one of the
 *     two layouts transformers writes: the legacy normalizer
 *     Sequence[Prepend("▁"), Replace(" ", "▁")] with no pre-tokenizer (every
 *     segment between special tokens gets a "▁", even one that starts with a
 *     space), or Metaspace(replacement "▁", split false, prepend_scheme
 *     first|always|never) with no normalizer;
 *   - anything else that would change the ids is refused by name.
 * Encoding is tokenizer.c's (spm_piece), as for GGUF vocabularies. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer/tok_internal.h"

#define METASPACE "\xe2\x96\x81"

static const char *sfield(const cJSON *o, const char *name) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(j) ? j->valuestring : NULL;
}

static bool truthy(const cJSON *o, const char *name) {
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, name));
}

static bool absent(const cJSON *j) {
    return !j || cJSON_IsNull(j);
}

/* Replace(" " -> "▁"): the pattern is {"String": " "}. */
static bool is_space_replace(const cJSON *n) {
    const char *ty = sfield(n, "type"), *c = sfield(n, "content");
    const char *pat = sfield(cJSON_GetObjectItemCaseSensitive(n, "pattern"), "String");
    return ty && !strcmp(ty, "Replace") && pat && !strcmp(pat, " ") && c && !strcmp(c, METASPACE);
}

/* The prefix rule from normalizer + pre_tokenizer, or an error naming what is not understood. */
static loom_status prefix_rule(const cJSON *root, loom_tok_spm_prefix *mode, char *err,
                               size_t err_n) {
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (!absent(norm)) {
        if (!absent(pre))
            return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                                   "tokenizer.json: a byte_fallback BPE with both a normalizer "
                                   "and a pre_tokenizer is not supported");
        const char *ty = sfield(norm, "type");
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(norm, "normalizers");
        int n = cJSON_IsArray(seq) ? cJSON_GetArraySize(seq) : 0;
        const cJSON *a = n ? cJSON_GetArrayItem(seq, 0) : NULL;
        const char *pa = sfield(a, "type"), *pp = sfield(a, "prepend");
        if (ty && !strcmp(ty, "Sequence") && n == 2 && pa && !strcmp(pa, "Prepend") && pp &&
            !strcmp(pp, METASPACE) && is_space_replace(cJSON_GetArrayItem(seq, 1))) {
            *mode = LOOM_TOK_SPM_PREFIX_PREPEND;
            return LOOM_OK;
        }
        if ((ty && !strcmp(ty, "Sequence") && n == 1 && is_space_replace(a)) ||
            is_space_replace(norm)) {
            *mode = LOOM_TOK_SPM_PREFIX_NONE;
            return LOOM_OK;
        }
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "tokenizer.json: normalizer \"%s\" of a byte_fallback BPE is not "
                               "supported (only Sequence[Prepend(\"\xe2\x96\x81\"), Replace(\" \", "
                               "\"\xe2\x96\x81\")] or the Replace alone)",
                               ty ? ty : "?");
    }
    const char *ty = sfield(pre, "type");
    if (!ty || strcmp(ty, "Metaspace") != 0)
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "tokenizer.json: pre_tokenizer \"%s\" of a byte_fallback BPE is not "
                               "supported (only Metaspace, or none with a Prepend normalizer)",
                               ty ? ty : "(none)");
    const char *rep = sfield(pre, "replacement");
    if (!rep || strcmp(rep, METASPACE) != 0)
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "tokenizer.json: Metaspace replacement \"%s\" is not supported "
                               "(only \"\xe2\x96\x81\")",
                               rep ? rep : "?");
    const cJSON *split = cJSON_GetObjectItemCaseSensitive(pre, "split");
    if (!cJSON_IsFalse(split))
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "tokenizer.json: Metaspace with split = true is not supported "
                               "(SentencePiece models use split = false)");
    const char *sch = sfield(pre, "prepend_scheme");
    if (!sch) /* tokenizers < 0.14: add_prefix_space, applied to every segment */
        *mode = truthy(pre, "add_prefix_space") ? LOOM_TOK_SPM_PREFIX_ALWAYS
                                                : LOOM_TOK_SPM_PREFIX_NONE;
    else if (!strcmp(sch, "first"))
        *mode = LOOM_TOK_SPM_PREFIX_FIRST;
    else if (!strcmp(sch, "always"))
        *mode = LOOM_TOK_SPM_PREFIX_ALWAYS;
    else if (!strcmp(sch, "never"))
        *mode = LOOM_TOK_SPM_PREFIX_NONE;
    else
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "tokenizer.json: Metaspace prepend_scheme \"%s\" is not known", sch);
    return LOOM_OK;
}

/* "▁" -> ' ', then the byte-level spelling loom_tok_build expects; dst has
 * room for 2 * strlen(s) + 1. */
static void spell(const char *s, uint8_t *tmp, char *dst) {
    size_t k = 0, n = strlen(s);
    for (size_t i = 0; i < n;) {
        if (i + 2 < n && !memcmp(s + i, METASPACE, 3)) {
            tmp[k++] = ' ';
            i += 3;
        } else {
            tmp[k++] = (uint8_t)s[i++];
        }
    }
    loom_tok_byte_level_encode(tmp, k, dst);
}

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* <0xXX> -> XX, else -1 */
static int byte_token(const char *s) {
    if (strlen(s) != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    int hi = hexval(s[3]), lo = hexval(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static bool as_id(const cJSON *j, int32_t *id) {
    if (!cJSON_IsNumber(j)) return false;
    double d = j->valuedouble;
    if (!(d >= 0 && d < (double)INT32_MAX) || floor(d) != d) return false;
    *id = (int32_t)d;
    return true;
}

loom_status loom_tok_load_json_spm(const void *root_, loom_tokenizer **out, char *err,
                                   size_t err_n) {
    const cJSON *root = root_;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *jm = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    loom_tok_spm_prefix mode = LOOM_TOK_SPM_PREFIX_NONE;
    LOOM_TRY(prefix_rule(root, &mode, err, err_n));
    const cJSON *drop = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (!absent(drop) && !(cJSON_IsNumber(drop) && drop->valuedouble == 0))
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "tokenizer.json: BPE dropout is not supported");
    if (truthy(model, "ignore_merges"))
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "tokenizer.json: ignore_merges with byte_fallback is not supported");
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const char *a = sfield(model, affixes[i]);
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(model, affixes[i]);
        if (!absent(j) && !(a && !a[0]))
            return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                                   "tokenizer.json: BPE %s is not supported", affixes[i]);
    }
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(jm) || (!absent(added) && !cJSON_IsArray(added)))
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "tokenizer.json: model.vocab, model.merges or added_tokens is "
                               "missing or malformed");

    int32_t max_id = -1, id;
    size_t sbytes = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        if (!as_id(it, &id))
            return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                   "tokenizer.json: model.vocab[\"%s\"] is not a non-negative "
                                   "integer id",
                                   it->string ? it->string : "?");
        if (id > max_id) max_id = id;
        sbytes += 2 * strlen(it->string) + 1;
    }
    cJSON_ArrayForEach(it, added) {
        const char *content = sfield(it, "content");
        if (!as_id(cJSON_GetObjectItemCaseSensitive(it, "id"), &id) || !content)
            return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                   "tokenizer.json: an added_tokens entry lacks an integer \"id\" "
                                   "or a string \"content\"");
        /* the segments between added tokens are what the prefix rule sees: a
         * normalized added token would be matched after the "▁" rewrite */
        static const char *const unsup[] = {"lstrip", "rstrip", "single_word", "normalized"};
        for (int k = 0; k < 4; k++)
            if (truthy(it, unsup[k]))
                return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                                       "tokenizer.json: added token %d \"%s\" sets %s, which is "
                                       "not supported with byte_fallback",
                                       (int)id, content, unsup[k]);
        if (id > max_id) max_id = id;
        sbytes += strlen(content) + 1;
    }
    if (max_id < 0)
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "tokenizer.json: empty vocabulary");
    const size_t n_tok = (size_t)max_id + 1, n_merges = (size_t)cJSON_GetArraySize(jm);
    size_t mbytes = 0;
    cJSON_ArrayForEach(it, jm) {
        if (cJSON_IsString(it))
            mbytes += 2 * strlen(it->valuestring) + 2;
        else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 &&
                 cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
                 cJSON_IsString(cJSON_GetArrayItem(it, 1)))
            mbytes += 2 * (strlen(cJSON_GetArrayItem(it, 0)->valuestring) +
                           strlen(cJSON_GetArrayItem(it, 1)->valuestring)) +
                      2;
        else
            return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                   "tokenizer.json: a merge is neither \"left right\" nor [left, "
                                   "right]");
    }

    loom_status st = LOOM_OK;
    const char **tokens = calloc(n_tok, sizeof *tokens);
    int32_t *types = calloc(n_tok, sizeof *types);
    loom_tok_merge *merges = calloc(n_merges ? n_merges : 1, sizeof *merges);
    char *blob = malloc(sbytes + mbytes + 1), *sp = blob;
    uint8_t *tmp = malloc(sbytes + mbytes + 1);
    int32_t byte_ids[256];
    for (int b = 0; b < 256; b++)
        byte_ids[b] = -1;
    if (!tokens || !types || !merges || !blob || !tmp) {
        st = loom_model_fail(err, err_n, LOOM_ERR_OOM, "tokenizer: out of memory");
        goto done;
    }
    cJSON_ArrayForEach(it, vocab) {
        as_id(it, &id);
        if (tokens[id]) {
            st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                 "tokenizer.json: id %d is used twice in model.vocab", (int)id);
            goto done;
        }
        int b = byte_token(it->string);
        tokens[id] = sp;
        if (b >= 0) { /* spm_finish makes it the 1-byte BYTE token of b */
            if (byte_ids[b] < 0) byte_ids[b] = id;
            types[id] = LOOM_TOKEN_UNUSED;
            strcpy(sp, it->string);
        } else if (!it->string[0]) {
            tokens[id] = NULL; /* an empty token cannot be spelled: unassigned */
            continue;
        } else {
            types[id] = LOOM_TOKEN_NORMAL;
            spell(it->string, tmp, sp);
        }
        sp += strlen(sp) + 1;
    }
    /* Added tokens win over a vocab entry with the same id, as in Hugging Face. */
    cJSON_ArrayForEach(it, added) {
        as_id(cJSON_GetObjectItemCaseSensitive(it, "id"), &id);
        const char *c = sfield(it, "content");
        for (int b = 0; b < 256; b++)
            if (byte_ids[b] == id) byte_ids[b] = -1;
        strcpy(sp, c);
        tokens[id] = sp;
        sp += strlen(c) + 1;
        types[id] = truthy(it, "special") ? LOOM_TOKEN_CONTROL : LOOM_TOKEN_USER_DEFINED;
    }
    size_t r = 0;
    cJSON_ArrayForEach(it, jm) {
        const char *l, *rt;
        char pair[2][1024];
        if (cJSON_IsString(it)) {
            const char *s = it->valuestring, *space = strchr(s, ' ');
            if (!space || space == s || !space[1] || strchr(space + 1, ' ') ||
                (size_t)(space - s) >= sizeof pair[0] || strlen(space + 1) >= sizeof pair[1]) {
                st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                     "tokenizer.json: merges[%zu] \"%.80s\" is not \"left right\"",
                                     r, s);
                goto done;
            }
            memcpy(pair[0], s, (size_t)(space - s));
            pair[0][space - s] = 0;
            strcpy(pair[1], space + 1);
            l = pair[0];
            rt = pair[1];
        } else {
            l = cJSON_GetArrayItem(it, 0)->valuestring;
            rt = cJSON_GetArrayItem(it, 1)->valuestring;
        }
        merges[r].left = sp;
        spell(l, tmp, sp);
        sp += strlen(sp) + 1;
        merges[r].right = sp;
        spell(rt, tmp, sp);
        sp += strlen(sp) + 1;
        r++;
    }
    st = loom_tok_build(tokens, n_tok, types, merges, n_merges, NULL, 0, false, out, err, err_n);
    if (st == LOOM_OK && loom_tok_spm_finish(*out, byte_ids, mode) != LOOM_OK) {
        loom_tokenizer_free(*out);
        *out = NULL;
        st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "tokenizer.json: bad byte token");
    }
done:
    free(tokens);
    free(types);
    free(merges);
    free(blob);
    free(tmp);
    return st;
}
