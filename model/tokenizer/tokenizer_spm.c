/* model/tokenizer/tokenizer_spm.c - SentencePiece BPE vocabularies from GGUF
 * (tokenizer.ggml.model "llama": Llama 2, TinyLlama, Mistral, Mixtral), as
 * Hugging Face transformers loads them (docs/adr/0025):
 *   - tokens are UTF-8 with U+2581 ("▁") for a space; <0xXX> tokens are byte
 *     fallback for characters without a token;
 *   - the file has scores, not merges: the merges are derived as
 *     transformers' generate_merges does: every split of a token into two
 *     tokens, ordered by the token's score (higher first), then by the
 *     left and right lengths in characters (longer first), ties in token
 *     order and, within a token, by (left id, right id);
 *   - Metaspace pre-tokenizer with prepend_scheme "first" (a "▁" before the
 *     text at offset 0 unless it starts with one; tokenizer.ggml.
 *     add_space_prefix = false turns it off) and no split.
 * The encoder itself is tokenizer.c's (spm_piece). */
#include <stdlib.h>
#include <string.h>

#include "loom/gguf.h"
#include "model/tokenizer/tok_internal.h"

typedef struct spm_merge {
    int32_t l, r;
    float score;
    uint32_t len_l, len_r; /* characters */
    uint32_t order;        /* position in generation order (stability) */
} spm_merge;

static int merge_cmp(const void *a, const void *b) {
    const spm_merge *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    if (x->len_l != y->len_l) return x->len_l > y->len_l ? -1 : 1;
    if (x->len_r != y->len_r) return x->len_r > y->len_r ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

static int local_cmp(const void *a, const void *b) {
    const spm_merge *x = a, *y = b;
    if (x->l != y->l) return x->l < y->l ? -1 : 1;
    return (x->r > y->r) - (x->r < y->r);
}

static uint32_t n_chars(const char *s, size_t n) {
    uint32_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((uint8_t)s[i] & 0xc0) != 0x80;
    return c;
}

/* A string -> id map over the file's token strings (open addressing). */
typedef struct smap {
    int32_t *slot;
    size_t mask;
    const char *const *tok;
    const uint32_t *len;
} smap;

static uint64_t fnv(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return h;
}

static int32_t smap_find(const smap *m, const char *s, size_t n) {
    for (size_t i = fnv(s, n) & m->mask;; i = (i + 1) & m->mask) {
        int32_t id = m->slot[i];
        if (id < 0) return -1;
        if (m->len[id] == n && !memcmp(m->tok[id], s, n)) return id;
    }
}

/* "▁" -> ' ' */
static size_t unmeta(const char *s, size_t n, uint8_t *dst) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (i + 2 < n && (uint8_t)s[i] == 0xe2 && (uint8_t)s[i + 1] == 0x96 &&
            (uint8_t)s[i + 2] == 0x81) {
            dst[k++] = ' ';
            i += 3;
        } else {
            dst[k++] = (uint8_t)s[i++];
        }
    }
    return k;
}

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

loom_status loom_tok_load_gguf_spm(loom_gguf *g, loom_tokenizer **out, char *err, size_t err_n) {
    if (err && err_n) err[0] = 0;
    loom_gguf_type et;
    uint64_t n_tok = 0, n_sc = 0, n_ty = 0;
    const void *scd = NULL;
    if (loom_gguf_get_arr_info(g, "tokenizer.ggml.tokens", &et, &n_tok) != LOOM_OK ||
        et != LOOM_GGUF_STRING || n_tok == 0 || n_tok > INT32_MAX)
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "tokenizer: tokenizer.ggml.tokens is not a string array");
    if (loom_gguf_get_arr_data(g, "tokenizer.ggml.scores", LOOM_GGUF_F32, &scd, &n_sc) != LOOM_OK ||
        n_sc != n_tok)
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "tokenizer: a llama (SentencePiece) vocabulary needs "
                               "tokenizer.ggml.scores (f32, one per token)");
    if (loom_gguf_get_arr_info(g, "tokenizer.ggml.token_type", &et, &n_ty) != LOOM_OK ||
        n_ty != n_tok)
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "tokenizer: a llama (SentencePiece) vocabulary needs "
                               "tokenizer.ggml.token_type (one per token)");
    const size_t n = (size_t)n_tok;
    loom_status st = LOOM_OK;
    const char **raw = calloc(n, sizeof *raw);
    uint32_t *rlen = calloc(n, sizeof *rlen);
    int32_t *types = calloc(n, sizeof *types);
    float *score = calloc(n, sizeof *score);
    const char **btoks = calloc(n, sizeof *btoks); /* strings for loom_tok_build */
    size_t cap = 64;
    while (cap < 2 * n + 1)
        cap *= 2;
    smap m = {malloc(cap * sizeof(int32_t)), cap - 1, NULL, rlen};
    int32_t byte_ids[256];
    for (int b = 0; b < 256; b++)
        byte_ids[b] = -1;
    size_t sbytes = 0;
    if (!raw || !rlen || !types || !score || !btoks || !m.slot) st = LOOM_ERR_OOM;
    for (size_t i = 0; i < n && st == LOOM_OK; i++) {
        uint64_t l;
        int64_t ty;
        if (loom_gguf_get_arr_str(g, "tokenizer.ggml.tokens", i, &raw[i], &l) != LOOM_OK ||
            loom_gguf_get_arr_int(g, "tokenizer.ggml.token_type", i, &ty) != LOOM_OK || l > 4096 ||
            ty < 0 || ty > LOOM_TOKEN_BYTE || memchr(raw[i], 0, (size_t)l))
            st = LOOM_ERR_FORMAT;
        rlen[i] = (uint32_t)l;
        types[i] = (int32_t)ty;
        memcpy(&score[i], (const char *)scd + 4 * i, 4);
        sbytes += 2 * l + 2;
    }
    if (st == LOOM_OK) {
        m.tok = raw;
        memset(m.slot, 0xff, cap * sizeof(int32_t));
        for (size_t i = 0; i < n; i++) {
            size_t h = fnv(raw[i], rlen[i]) & m.mask;
            bool dup = false;
            for (; m.slot[h] >= 0; h = (h + 1) & m.mask)
                dup |= rlen[m.slot[h]] == rlen[i] && !memcmp(raw[m.slot[h]], raw[i], rlen[i]);
            if (!dup) m.slot[h] = (int32_t)i; /* the first id of a string, as a dict */
        }
    }
    /* Strings for loom_tok_build: normal tokens in the byte-level alphabet of
     * their text (▁ -> ' '), the others raw; <0xXX> tokens noted. */
    char *sblob = st == LOOM_OK ? malloc(sbytes + 1) : NULL, *sp = sblob;
    uint8_t *tmp = malloc(4096 * 2 + 8);
    if (st == LOOM_OK && (!sblob || !tmp)) st = LOOM_ERR_OOM;
    for (size_t i = 0; i < n && st == LOOM_OK; i++) {
        btoks[i] = sp;
        if (types[i] == LOOM_TOKEN_BYTE) {
            int hi = rlen[i] == 6 ? hexval(raw[i][3]) : -1, lo = hi >= 0 ? hexval(raw[i][4]) : -1;
            if (hi < 0 || lo < 0 || memcmp(raw[i], "<0x", 3) || raw[i][5] != '>') {
                st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                     "tokenizer: byte token %zu is not <0xXX>", i);
                break;
            }
            byte_ids[hi * 16 + lo] = (int32_t)i;
            types[i] = LOOM_TOKEN_UNUSED; /* becomes a 1-byte BYTE token in spm_finish */
        }
        if (types[i] == LOOM_TOKEN_NORMAL || types[i] == LOOM_TOKEN_UNDEFINED) {
            size_t k = unmeta(raw[i], rlen[i], tmp);
            if (k == 0) { /* an empty token cannot be spelled: unassigned */
                btoks[i] = NULL;
                continue;
            }
            loom_tok_byte_level_encode(tmp, k, sp);
            types[i] = LOOM_TOKEN_NORMAL;
        } else {
            memcpy(sp, raw[i], rlen[i]);
            sp[rlen[i]] = 0;
        }
        sp += strlen(sp) + 1;
    }
    /* Merges from the scores (transformers' generate_merges). */
    spm_merge *mg = NULL, *local = NULL;
    size_t n_mg = 0, cap_mg = 0;
    if (st == LOOM_OK && !(local = malloc(4097 * sizeof *local))) st = LOOM_ERR_OOM;
    for (size_t i = 0; i < n && st == LOOM_OK; i++) {
        size_t nl = 0;
        for (size_t k = 1; k < rlen[i]; k++) {
            if (((uint8_t)raw[i][k] & 0xc0) == 0x80) continue; /* split at characters */
            int32_t a = smap_find(&m, raw[i], k), b = smap_find(&m, raw[i] + k, rlen[i] - k);
            if (a < 0 || b < 0) continue;
            local[nl++] = (spm_merge){
                a, b, score[i], n_chars(raw[i], k), n_chars(raw[i] + k, rlen[i] - k), 0};
        }
        qsort(local, nl, sizeof *local, local_cmp);
        for (size_t k = 0; k < nl; k++) {
            /* only merges of ordinary tokens can ever apply in encode */
            if (types[local[k].l] != LOOM_TOKEN_NORMAL || types[local[k].r] != LOOM_TOKEN_NORMAL ||
                types[i] != LOOM_TOKEN_NORMAL || smap_find(&m, raw[i], rlen[i]) != (int32_t)i)
                continue;
            if (n_mg == cap_mg) {
                cap_mg = cap_mg ? 2 * cap_mg : 4096;
                spm_merge *nm = realloc(mg, cap_mg * sizeof *mg);
                if (!nm) {
                    st = LOOM_ERR_OOM;
                    break;
                }
                mg = nm;
            }
            local[k].order = (uint32_t)n_mg;
            mg[n_mg++] = local[k];
        }
    }
    if (st == LOOM_OK && n_mg) qsort(mg, n_mg, sizeof *mg, merge_cmp);
    loom_tok_merge *merges = st == LOOM_OK ? malloc((n_mg ? n_mg : 1) * sizeof *merges) : NULL;
    if (st == LOOM_OK && !merges) st = LOOM_ERR_OOM;
    for (size_t k = 0; k < n_mg && st == LOOM_OK; k++)
        merges[k] = (loom_tok_merge){btoks[mg[k].l], btoks[mg[k].r]};
    if (st == LOOM_OK)
        st = loom_tok_build(btoks, n, types, merges, n_mg, NULL, 0, false, out, err, err_n);
    bool prefix = true;
    if (st == LOOM_OK && loom_gguf_find_kv(g, "tokenizer.ggml.add_space_prefix") >= 0)
        loom_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &prefix);
    if (st == LOOM_OK &&
        loom_tok_spm_finish(*out, byte_ids,
                            prefix ? LOOM_TOK_SPM_PREFIX_FIRST : LOOM_TOK_SPM_PREFIX_NONE) !=
            LOOM_OK) {
        loom_tokenizer_free(*out);
        *out = NULL;
        st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "tokenizer: bad byte token");
    }
    if (st == LOOM_ERR_OOM)
        loom_model_fail(err, err_n, st, "tokenizer: out of memory");
    else if (st == LOOM_ERR_FORMAT && err && err_n && !err[0])
        loom_model_fail(err, err_n, st, "tokenizer: malformed tokenizer.ggml.* arrays");
    free(raw);
    free(rlen);
    free(types);
    free(score);
    free(btoks);
    free(m.slot);
    free(sblob);
    free(tmp);
    free(mg);
    free(local);
    free(merges);
    return st;
}
