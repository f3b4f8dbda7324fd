/* model/tokenizer/tokenizer_gguf.c - the tokenizer as GGUF tokenizer.ggml.* metadata
 * (the keys llama.cpp writes for Llama 3: model "gpt2", pre "llama-bpe",
 * tokens / token_type / merges arrays and the special ids). */
#include <stdlib.h>
#include <string.h>

#include "loom/gguf.h"
#include "model/tokenizer/tok_internal.h"

loom_status loom_tokenizer_write_gguf(const loom_tokenizer *tok, loom_gguf_writer *w, char *err,
                                      size_t err_n) {
    if (!tok || !w)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "tokenizer: NULL argument");
    loom_tok_export_data d;
    LOOM_TRY(loom_tok_export(tok, &d, err, err_n));
    if (!d.pre_name && !d.pattern) {
        loom_tok_export_free(&d);
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "tokenizer: its pre-tokenizer has several stages and no "
                               "tokenizer.ggml.pre name; GGUF cannot store it");
    }
    loom_status st = loom_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    if (st == LOOM_OK && d.pre_name)
        st = loom_gguf_writer_set_str(w, "tokenizer.ggml.pre", d.pre_name);
    else if (st == LOOM_OK)
        st = loom_gguf_writer_set_str(w, "loom.tokenizer.pattern", d.pattern);
    if (st == LOOM_OK)
        st = loom_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", d.tokens, d.n_tokens);
    if (st == LOOM_OK)
        st = loom_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", LOOM_GGUF_I32, d.types,
                                      d.n_tokens);
    if (st == LOOM_OK)
        st = loom_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", d.merges, d.n_merges);
    if (st == LOOM_OK && d.ignore_merges != loom_pretok_default_ignore_merges(d.pre_name))
        st = loom_gguf_writer_set_bool(w, "loom.tokenizer.ignore_merges", d.ignore_merges);
    /* as llama.cpp's converter writes it: readers need not guess */
    if (st == LOOM_OK) st = loom_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", d.add_bos);
    const int32_t ids[3] = {loom_tokenizer_bos(tok), loom_tokenizer_eos(tok),
                            loom_tokenizer_eot(tok)};
    const char *keys[3] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                           "tokenizer.ggml.eot_token_id"};
    for (int i = 0; i < 3 && st == LOOM_OK; i++)
        if (ids[i] >= 0) st = loom_gguf_writer_set_u32(w, keys[i], (uint32_t)ids[i]);
    if (st == LOOM_OK && loom_tokenizer_chat_template(tok))
        st = loom_gguf_writer_set_str(w, "tokenizer.chat_template",
                                      loom_tokenizer_chat_template(tok));
    loom_tok_export_free(&d);
    if (st != LOOM_OK)
        return loom_model_fail(err, err_n, st, "tokenizer: writing GGUF metadata failed: %s",
                               loom_gguf_writer_error(w));
    return LOOM_OK;
}

/* Copy GGUF string-array element i (not NUL-terminated in the file) to p. */
static loom_status arr_str_copy(loom_gguf *g, const char *key, uint64_t i, char **p,
                                const char **dst) {
    const char *s;
    uint64_t len;
    LOOM_TRY(loom_gguf_get_arr_str(g, key, i, &s, &len));
    memcpy(*p, s, len);
    (*p)[len] = 0;
    *dst = *p;
    *p += len + 1;
    return LOOM_OK;
}

loom_status loom_tokenizer_load_gguf(loom_gguf *g, loom_tokenizer **out, char *err, size_t err_n) {
    if (!g || !out)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "tokenizer: NULL argument");
    *out = NULL;
    loom_gguf_type et;
    uint64_t n_tok = 0, n_merges = 0;
    if (loom_gguf_find_kv(g, "tokenizer.ggml.tokens") < 0)
        return loom_model_fail(
            err, err_n, LOOM_ERR_INVALID_ARG,
            "tokenizer: no tokenizer in this GGUF (tokenizer.ggml.tokens is absent)");
    const char *model;
    uint64_t mlen;
    bool spm = false;
    if (loom_gguf_get_str(g, "tokenizer.ggml.model", &model, &mlen) == LOOM_OK) {
        spm = mlen == 5 && !memcmp(model, "llama", 5);
        if (!spm && !(mlen == 4 && !memcmp(model, "gpt2", 4)))
            return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                                   "tokenizer: tokenizer.ggml.model '%.*s' is not supported (gpt2: "
                                   "byte-level BPE; llama: SentencePiece BPE)",
                                   (int)(mlen > 64 ? 64 : mlen), model);
    }
    if (loom_gguf_get_arr_info(g, "tokenizer.ggml.tokens", &et, &n_tok) != LOOM_OK ||
        et != LOOM_GGUF_STRING)
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "tokenizer: tokenizer.ggml.tokens is not a string array");
    if (loom_gguf_find_kv(g, "tokenizer.ggml.merges") >= 0 &&
        (loom_gguf_get_arr_info(g, "tokenizer.ggml.merges", &et, &n_merges) != LOOM_OK ||
         et != LOOM_GGUF_STRING))
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "tokenizer: tokenizer.ggml.merges is not a string array");
    /* The pre-tokenizer: loom's own regex (loom.tokenizer.pattern) or the
     * name llama.cpp's converter writes. An absent tokenizer.ggml.pre means
     * Llama 3's split (what loom wrote before it wrote the name); a name loom
     * does not know is refused, since guessing tokenizes differently from
     * the model's training. */
    char *pattern = NULL;
    const char *const *stages = NULL;
    size_t n_stages = 0;
    bool ignore_merges = true, add_bos = true, named = false;
    const char *ps;
    uint64_t plen;
    if (spm) {
        /* SentencePiece: BOS unless the file says otherwise, as llama.cpp
         * and transformers; tokenizer.ggml.pre is not used. */
        LOOM_TRY(loom_tok_load_gguf_spm(g, out, err, err_n));
        n_tok = loom_tokenizer_vocab_size(*out);
        named = true;
        n_merges = 0;
    } else if (loom_gguf_get_str(g, "loom.tokenizer.pattern", &ps, &plen) == LOOM_OK) {
        pattern = malloc(plen + 1);
        if (!pattern) return loom_model_fail(err, err_n, LOOM_ERR_OOM, "tokenizer: out of memory");
        memcpy(pattern, ps, plen);
        pattern[plen] = 0;
    } else if (loom_gguf_find_kv(g, "tokenizer.ggml.pre") >= 0) {
        if (loom_gguf_get_str(g, "tokenizer.ggml.pre", &ps, &plen) != LOOM_OK)
            return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                   "tokenizer: tokenizer.ggml.pre is not a string");
        LOOM_TRY(
            loom_pretok_named(ps, (size_t)plen, &stages, &n_stages, &ignore_merges, err, err_n));
        /* llama.cpp adds BOS by default only for Llama 3's pre-tokenizer */
        add_bos = ignore_merges;
        named = true;
    }
    /* All strings in one block: sizes first. */
    size_t total = 0;
    loom_status st = LOOM_OK;
    for (uint64_t i = 0; !spm && i < n_tok + n_merges && st == LOOM_OK; i++) {
        const char *s;
        uint64_t len = 0;
        st = loom_gguf_get_arr_str(g, i < n_tok ? "tokenizer.ggml.tokens" : "tokenizer.ggml.merges",
                                   i < n_tok ? i : i - n_tok, &s, &len);
        total += len + 1;
    }
    char *blob = malloc(total ? total : 1), *p = blob;
    const char **tokens = calloc(n_tok ? n_tok : 1, sizeof *tokens);
    const char **merges = calloc(n_merges ? n_merges : 1, sizeof *merges);
    int32_t *types = calloc(n_tok ? n_tok : 1, sizeof *types);
    if (st == LOOM_OK && (!blob || !tokens || !merges || !types)) st = LOOM_ERR_OOM;
    for (uint64_t i = 0; !spm && i < n_tok && st == LOOM_OK; i++)
        st = arr_str_copy(g, "tokenizer.ggml.tokens", i, &p, &tokens[i]);
    for (uint64_t i = 0; !spm && i < n_merges && st == LOOM_OK; i++)
        st = arr_str_copy(g, "tokenizer.ggml.merges", i, &p, &merges[i]);
    uint64_t n_types = 0;
    bool have_types =
        st == LOOM_OK && !spm &&
        loom_gguf_get_arr_info(g, "tokenizer.ggml.token_type", &et, &n_types) == LOOM_OK &&
        n_types == n_tok;
    for (uint64_t i = 0; have_types && i < n_tok && st == LOOM_OK; i++) {
        int64_t v;
        st = loom_gguf_get_arr_int(g, "tokenizer.ggml.token_type", i, &v);
        types[i] = (int32_t)v;
    }
    if (spm) {
        /* built above */
    } else if (st != LOOM_OK) {
        st = loom_model_fail(err, err_n, st, "tokenizer: reading tokenizer.ggml.* failed: %s",
                             st == LOOM_ERR_OOM ? "out of memory" : loom_gguf_error(g));
    } else {
        loom_gguf_get_bool(g, "loom.tokenizer.ignore_merges", &ignore_merges);
        const char *const *stg = pattern ? (const char *const *)&pattern : stages;
        st = loom_tok_from_vocab(tokens, n_tok, merges, n_merges, have_types ? types : NULL, stg,
                                 pattern ? 1 : n_stages, ignore_merges, out, err, err_n);
    }
    if (st == LOOM_OK) {
        /* Special ids from the file override the guesses from token strings. */
        int32_t ids[3] = {loom_tokenizer_bos(*out), loom_tokenizer_eos(*out),
                          loom_tokenizer_eot(*out)};
        const char *keys[3] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                               "tokenizer.ggml.eot_token_id"};
        for (int i = 0; i < 3; i++) {
            int64_t v;
            if (loom_gguf_get_int(g, keys[i], &v) == LOOM_OK && v >= 0 && (uint64_t)v < n_tok)
                ids[i] = (int32_t)v;
        }
        if (loom_tokenizer_set_special_ids(*out, ids[0], ids[1], ids[2]) != LOOM_OK) {
            loom_tokenizer_free(*out);
            *out = NULL;
            st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "tokenizer: bad special token ids");
        }
    }
    if (st == LOOM_OK) {
        /* BOS as the file says (tokenizer.ggml.add_bos_token), else as
         * llama.cpp defaults for its pre-tokenizer; a file of loom's own
         * from before the key: BOS when it has one. */
        bool have_key = loom_gguf_find_kv(g, "tokenizer.ggml.add_bos_token") >= 0;
        if (have_key && loom_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos) != LOOM_OK)
            st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                 "tokenizer: tokenizer.ggml.add_bos_token is not a boolean");
        else if (!have_key && !named)
            add_bos = loom_tokenizer_bos(*out) >= 0;
        if (st == LOOM_OK && add_bos && loom_tokenizer_bos(*out) < 0) {
            if (have_key)
                st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                     "tokenizer: tokenizer.ggml.add_bos_token is true but the file "
                                     "has no BOS token (tokenizer.ggml.bos_token_id)");
            add_bos = false; /* a name's default without a BOS id: nothing to add */
        }
        if (st == LOOM_OK) loom_tokenizer_set_add_bos(*out, add_bos);
        /* the chat template text, chosen by fingerprint when chatting */
        const char *ct;
        uint64_t ctlen;
        if (st == LOOM_OK && loom_gguf_find_kv(g, "tokenizer.chat_template") >= 0) {
            char *c = NULL;
            if (loom_gguf_get_str(g, "tokenizer.chat_template", &ct, &ctlen) != LOOM_OK)
                st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                     "tokenizer: tokenizer.chat_template is not a string");
            else if (!(c = malloc(ctlen + 1)))
                st = loom_model_fail(err, err_n, LOOM_ERR_OOM, "tokenizer: out of memory");
            else {
                memcpy(c, ct, ctlen);
                c[ctlen] = 0;
                st = loom_tokenizer_set_chat_template(*out, c);
                free(c);
            }
        }
        if (st != LOOM_OK) {
            loom_tokenizer_free(*out);
            *out = NULL;
        }
    }
    free(blob);
    free(tokens);
    free(merges);
    free(types);
    free(pattern);
    return st;
}
