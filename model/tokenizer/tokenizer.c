/* model/tokenizer/tokenizer.c - byte-level BPE tokenizer core: construction from
 * token/merge arrays, decode and lookups. Encode (special-token split -> PCRE2
 * pre-tokenization -> BPE by merge rank) is in tokenizer_encode.c, the GGUF
 * arrays in tokenizer_export.c; the representation they share in tok_core.h.
 *
 * Tokens are stored as raw bytes (the GPT-2 byte-level alphabet is undone at
 * load time), so encode works on the input bytes directly and decode is a
 * concatenation. Two open-addressing hash maps serve the hot path: raw bytes
 * -> id for ordinary tokens, and (left id, right id) -> (rank, merged id). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer/tok_core.h"

/* ---- hash-map inserts (the probes are in tok_core.h) ---- */

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n)
        c <<= 1;
    return c;
}

/* Insert id unless an equal string is present (the lower id wins). */
static void vmap_insert(loom_tokenizer *t, int32_t id) {
    const uint8_t *p = (const uint8_t *)t->blob + t->off[id];
    size_t n = t->len[id];
    size_t i = (size_t)hash_bytes(p, n) & t->vmap_mask;
    for (;;) {
        int32_t o = t->vmap[i];
        if (o < 0) {
            t->vmap[i] = id;
            return;
        }
        if (t->len[o] == n && memcmp(t->blob + t->off[o], p, n) == 0) return;
        i = (i + 1) & t->vmap_mask;
    }
}

/* A repeated merge keeps its last rank, as Hugging Face's map does. */
static void pmap_insert(loom_tokenizer *t, uint64_t key, uint32_t rank, int32_t new_id) {
    size_t i = (size_t)hash_u64(key) & t->pmap_mask;
    for (;;) {
        tok_pair_slot *s = &t->pmap[i];
        if (s->key == TOK_EMPTY_KEY || s->key == key) {
            s->key = key;
            s->rank = rank;
            s->new_id = new_id;
            return;
        }
        i = (i + 1) & t->pmap_mask;
    }
}

/* ---- GPT-2 byte-level alphabet ---- */

#define U2B_N 324 /* codepoints used by bytes_to_unicode: < 256 + 68 */

static void byte_level_tables(int16_t u2b[U2B_N]) {
    for (int i = 0; i < U2B_N; i++)
        u2b[i] = -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        /* Printable Latin-1 bytes stand for themselves; the rest (controls,
         * space, DEL, NBSP, soft hyphen) are moved to U+0100 upwards. */
        bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        int cp = keep ? b : 256 + n++;
        u2b[cp] = (int16_t)b;
    }
}

/* Undo the byte-level alphabet of s into dst (room for strlen(s) bytes).
 * Returns the byte count, or -1 if s has a character outside the alphabet. */
static long byte_level_decode(const int16_t u2b[U2B_N], const char *s, uint8_t *dst) {
    const uint8_t *p = (const uint8_t *)s;
    long n = 0;
    while (*p) {
        uint32_t cp;
        if (p[0] < 0x80) {
            cp = p[0];
            p += 1;
        } else if ((p[0] & 0xe0) == 0xc0 && (p[1] & 0xc0) == 0x80) {
            cp = ((uint32_t)(p[0] & 0x1f) << 6) | (p[1] & 0x3f);
            p += 2;
        } else {
            return -1; /* every alphabet character is 1 or 2 UTF-8 bytes */
        }
        if (cp >= U2B_N || u2b[cp] < 0) return -1;
        dst[n++] = (uint8_t)u2b[cp];
    }
    return n;
}

static bool type_is_ordinary(int32_t ty) {
    return ty == LOOM_TOKEN_NORMAL || ty == LOOM_TOKEN_BYTE || ty == LOOM_TOKEN_UNDEFINED;
}

static int spec_cmp(const void *a, const void *b) {
    const tok_special *x = a, *y = b;
    uint8_t fx = x->len ? (uint8_t)x->bytes[0] : 0, fy = y->len ? (uint8_t)y->bytes[0] : 0;
    if (fx != fy) return fx < fy ? -1 : 1;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1; /* longest first: leftmost-longest matching */
    return x->id < y->id ? -1 : (x->id > y->id);
}

static void printable_escape(const char *s, char *buf, size_t n) {
    /* Short quoted excerpt of a token for error messages. */
    size_t j = 0;
    for (size_t i = 0; s[i] && j + 5 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            j += (size_t)snprintf(buf + j, n - j, "\\x%02x", c);
        else
            buf[j++] = (char)c;
    }
    buf[j] = 0;
}

loom_status loom_tok_build(const char *const *tokens, size_t n_tokens, const int32_t *types,
                           const loom_tok_merge *merges, size_t n_merges, const char *const *stages,
                           size_t n_stages, bool ignore_merges, loom_tokenizer **out, char *err,
                           size_t err_n) {
    if (!out || (!tokens && n_tokens))
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "tokenizer: NULL argument");
    *out = NULL;
    if (n_tokens == 0)
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "tokenizer: empty vocabulary");
    if (n_tokens > (size_t)INT32_MAX)
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "tokenizer: %zu tokens is too many",
                               n_tokens);
    if (n_merges && !merges)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "tokenizer: NULL merges");

    loom_status st = LOOM_OK;
    uint8_t *tmp = NULL;
    loom_tokenizer *t = calloc(1, sizeof(*t));
    if (!t) return loom_model_fail(err, err_n, LOOM_ERR_OOM, "tokenizer: out of memory");
    t->n_vocab = n_tokens;
    t->ignore_merges = ignore_merges;
    t->bos = t->eos = t->eot = -1;

    int16_t u2b[U2B_N];
    byte_level_tables(u2b);

    size_t blob_n = 0, max_len = 0, n_ord = 0;
    for (size_t i = 0; i < n_tokens; i++) {
        if (tokens[i]) {
            size_t l = strlen(tokens[i]);
            blob_n += l;
            if (l > max_len) max_len = l;
        }
    }
    if (blob_n >= UINT32_MAX) {
        st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "tokenizer: token strings too large");
        goto fail;
    }
    t->off = malloc(n_tokens * sizeof(uint32_t));
    t->len = malloc(n_tokens * sizeof(uint32_t));
    t->type = malloc(n_tokens);
    t->blob = malloc(blob_n + 1);
    if (!t->off || !t->len || !t->type || !t->blob) goto oom;

    /* Token strings -> raw bytes. */
    size_t pos = 0;
    for (size_t i = 0; i < n_tokens; i++) {
        int32_t ty = types ? types[i] : LOOM_TOKEN_NORMAL;
        if (ty < LOOM_TOKEN_UNDEFINED || ty > LOOM_TOKEN_BYTE) {
            st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                 "tokenizer: token %zu has invalid type %d", i, (int)ty);
            goto fail;
        }
        t->type[i] =
            (uint8_t)(ty == LOOM_TOKEN_UNDEFINED || ty == LOOM_TOKEN_BYTE ? LOOM_TOKEN_NORMAL : ty);
        t->off[i] = (uint32_t)pos;
        if (!tokens[i]) {
            t->len[i] = UINT32_MAX;
            t->type[i] = LOOM_TOKEN_UNDEFINED;
            continue;
        }
        if (type_is_ordinary(ty)) {
            long n = byte_level_decode(u2b, tokens[i], (uint8_t *)t->blob + pos);
            if (n <= 0) {
                char buf[64];
                printable_escape(tokens[i], buf, sizeof(buf));
                st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                     "tokenizer: token %zu \"%s\" is not in the byte-level (GPT-2) "
                                     "alphabet; only byte-level BPE vocabularies are supported",
                                     i, buf);
                goto fail;
            }
            t->len[i] = (uint32_t)n;
            n_ord++;
        } else {
            size_t n = strlen(tokens[i]);
            memcpy(t->blob + pos, tokens[i], n);
            t->len[i] = (uint32_t)n;
            t->n_spec++;
        }
        pos += t->len[i];
    }

    /* Ordinary tokens -> id map, at most half full. */
    size_t cap = pow2_at_least(n_ord * 2 + 1);
    t->vmap = malloc(cap * sizeof(int32_t));
    if (!t->vmap) goto oom;
    memset(t->vmap, 0xff, cap * sizeof(int32_t));
    t->vmap_mask = cap - 1;
    for (size_t i = 0; i < n_tokens; i++)
        if (t->type[i] == LOOM_TOKEN_NORMAL) vmap_insert(t, (int32_t)i);

    /* BPE starts from single bytes. A byte without a token (SmolLM2 lacks 21
     * of the 256) is dropped by encode, as Hugging Face's BPE drops a
     * character it has no id for when there is no unk token. */
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        t->byte_id[b] = vmap_find(t, &c, 1);
    }

    /* Merges -> (left, right) -> (rank, merged id). */
    cap = pow2_at_least(n_merges * 2 + 1);
    t->pmap = malloc(cap * sizeof(tok_pair_slot));
    tmp = malloc(2 * max_len + 2 + 2 * 1024);
    if (!t->pmap || !tmp) goto oom;
    for (size_t i = 0; i < cap; i++)
        t->pmap[i].key = TOK_EMPTY_KEY;
    t->pmap_mask = cap - 1;
    for (size_t r = 0; r < n_merges; r++) {
        const char *ls = merges[r].left, *rs = merges[r].right;
        if (!ls || !rs) {
            st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                 "tokenizer: merge %zu is missing a side", r);
            goto fail;
        }
        size_t ll = strlen(ls), rl = strlen(rs);
        if (ll > 1024 || rl > 1024 || ll + rl > 2 * max_len + 2) {
            st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                 "tokenizer: merge %zu: side longer than any token", r);
            goto fail;
        }
        long a = byte_level_decode(u2b, ls, tmp);
        long b = a > 0 ? byte_level_decode(u2b, rs, tmp + a) : -1;
        int32_t ia = a > 0 ? vmap_find(t, tmp, (size_t)a) : -1;
        int32_t ib = b > 0 ? vmap_find(t, tmp + a, (size_t)b) : -1;
        int32_t im = (ia >= 0 && ib >= 0) ? vmap_find(t, tmp, (size_t)(a + b)) : -1;
        if (im < 0) {
            char lb[64], rb[64];
            printable_escape(ls, lb, sizeof(lb));
            printable_escape(rs, rb, sizeof(rb));
            const char *what = ia < 0 ? "left side" : ib < 0 ? "right side" : "merged token";
            st =
                loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                "tokenizer: merge %zu (\"%s\" \"%s\"): %s is not in the vocabulary",
                                r, lb, rb, what);
            goto fail;
        }
        if (r > UINT32_MAX - 1) {
            st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "tokenizer: too many merges");
            goto fail;
        }
        pmap_insert(t, pair_key(ia, ib), (uint32_t)r, im);
    }

    /* Non-ordinary tokens, indexed by first byte for the special-token split. */
    if (t->n_spec) {
        t->spec = malloc(t->n_spec * sizeof(tok_special));
        if (!t->spec) goto oom;
        size_t k = 0;
        for (size_t i = 0; i < n_tokens; i++) {
            if (t->len[i] == UINT32_MAX || t->type[i] == LOOM_TOKEN_NORMAL) continue;
            t->spec[k++] = (tok_special){(int32_t)i, t->len[i], t->blob + t->off[i], t->type[i]};
        }
        t->n_spec = k;
        qsort(t->spec, t->n_spec, sizeof(tok_special), spec_cmp);
    }
    for (size_t k = 0; k < t->n_spec; k++) {
        if (!t->spec[k].len) continue; /* an empty token can never be matched */
        uint8_t f = (uint8_t)t->spec[k].bytes[0];
        if (t->spec_hi[f] == 0) t->spec_lo[f] = (uint32_t)k;
        t->spec_hi[f] = (uint32_t)k + 1;
    }

    const char *llama3 = loom_tokenizer_llama3_pattern();
    if (!stages || !n_stages) {
        stages = &llama3;
        n_stages = 1;
    }
    if ((st = loom_pretok_new(stages, n_stages, &t->pre, err, err_n)) != LOOM_OK) goto fail;

    int32_t id;
    if (loom_tokenizer_find(t, "<|begin_of_text|>", 17, &id) == LOOM_OK) t->bos = id;
    if (loom_tokenizer_find(t, "<|end_of_text|>", 15, &id) == LOOM_OK) t->eos = id;
    if (loom_tokenizer_find(t, "<|eot_id|>", 10, &id) == LOOM_OK) t->eot = id;
    t->add_bos = t->bos >= 0; /* the loaders replace it with the file's metadata */
    free(tmp);
    *out = t;
    return LOOM_OK;

oom:
    st = loom_model_fail(err, err_n, LOOM_ERR_OOM, "tokenizer: out of memory");
fail:
    free(tmp);
    loom_tokenizer_free(t);
    return st;
}

loom_status loom_tokenizer_from_vocab(const char *const *tokens, size_t n_tokens,
                                      const char *const *merges, size_t n_merges,
                                      const int32_t *token_types, const char *pattern,
                                      bool ignore_merges, loom_tokenizer **out, char *err,
                                      size_t err_n) {
    return loom_tok_from_vocab(tokens, n_tokens, merges, n_merges, token_types,
                               pattern ? &pattern : NULL, pattern ? 1 : 0, ignore_merges, out, err,
                               err_n);
}

loom_status loom_tok_from_vocab(const char *const *tokens, size_t n_tokens,
                                const char *const *merges, size_t n_merges,
                                const int32_t *token_types, const char *const *stages,
                                size_t n_stages, bool ignore_merges, loom_tokenizer **out,
                                char *err, size_t err_n) {
    if (!out) return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "tokenizer: NULL out");
    *out = NULL;
    if (n_merges && !merges)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "tokenizer: NULL merges");
    /* "left right" -> two strings (split at the first space, as GGUF writes them). */
    loom_tok_merge *m = calloc(n_merges ? n_merges : 1, sizeof(loom_tok_merge));
    size_t total = 0;
    for (size_t i = 0; i < n_merges; i++)
        total += merges[i] ? strlen(merges[i]) + 1 : 0;
    char *buf = malloc(total + 1);
    if (!m || !buf) {
        free(m);
        free(buf);
        return loom_model_fail(err, err_n, LOOM_ERR_OOM, "tokenizer: out of memory");
    }
    char *p = buf;
    loom_status st = LOOM_OK;
    for (size_t i = 0; i < n_merges; i++) {
        const char *s = merges[i];
        const char *sp = s ? strchr(s, ' ') : NULL;
        if (!sp || sp == s || !sp[1] || strchr(sp + 1, ' ')) {
            st =
                loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                "tokenizer: merge %zu is not \"left right\" (one space between two "
                                "non-empty tokens)",
                                i);
            break;
        }
        size_t n = strlen(s);
        memcpy(p, s, n + 1);
        p[sp - s] = 0;
        m[i].left = p;
        m[i].right = p + (sp - s) + 1;
        p += n + 1;
    }
    if (st == LOOM_OK)
        st = loom_tok_build(tokens, n_tokens, token_types, m, n_merges, stages, n_stages,
                            ignore_merges, out, err, err_n);
    free(m);
    free(buf);
    return st;
}

void loom_tokenizer_free(loom_tokenizer *t) {
    if (!t) return;
    free(t->off);
    free(t->len);
    free(t->type);
    free(t->blob);
    free(t->vmap);
    free(t->pmap);
    free(t->spec);
    loom_pretok_free(t->pre);
    free(t->chat_template);
    free(t);
}

/* ---- decode and lookups ---- */

static bool is_skippable(uint8_t type) {
    return type == LOOM_TOKEN_CONTROL || type == LOOM_TOKEN_UNKNOWN || type == LOOM_TOKEN_UNUSED;
}

loom_status loom_tokenizer_decode(const loom_tokenizer *t, const int32_t *ids, size_t n_ids,
                                  unsigned flags, char **out, size_t *out_len, char *err,
                                  size_t err_n) {
    if (!t || !out || !out_len || (!ids && n_ids))
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "tokenizer: NULL argument");
    *out = NULL;
    *out_len = 0;
    if (flags & ~(unsigned)LOOM_TOK_SKIP_SPECIAL)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "tokenizer: unknown decode flags 0x%x", flags);
    size_t total = 0;
    for (size_t i = 0; i < n_ids; i++) {
        int32_t id = ids[i];
        if (id < 0 || (size_t)id >= t->n_vocab || t->len[id] == UINT32_MAX)
            return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                                   "tokenizer: decode: ids[%zu] = %d is not a token id (vocabulary "
                                   "size %zu)",
                                   i, (int)id, t->n_vocab);
        if (!((flags & LOOM_TOK_SKIP_SPECIAL) && is_skippable(t->type[id]))) total += t->len[id];
    }
    char *buf = malloc(total + 1);
    if (!buf) return loom_model_fail(err, err_n, LOOM_ERR_OOM, "tokenizer: out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n_ids; i++) {
        int32_t id = ids[i];
        if ((flags & LOOM_TOK_SKIP_SPECIAL) && is_skippable(t->type[id])) continue;
        memcpy(buf + k, t->blob + t->off[id], t->len[id]);
        k += t->len[id];
    }
    buf[k] = 0;
    *out = buf;
    *out_len = k;
    return LOOM_OK;
}

loom_status loom_tokenizer_piece(const loom_tokenizer *t, int32_t id, const char **bytes,
                                 size_t *len) {
    if (!t || !bytes || !len) return LOOM_ERR_INVALID_ARG;
    if (id < 0 || (size_t)id >= t->n_vocab || t->len[id] == UINT32_MAX) return LOOM_ERR_INVALID_ARG;
    *bytes = t->blob + t->off[id];
    *len = t->len[id];
    return LOOM_OK;
}

loom_status loom_tokenizer_find(const loom_tokenizer *t, const char *bytes, size_t len,
                                int32_t *id) {
    if (!t || !id || (!bytes && len)) return LOOM_ERR_INVALID_ARG;
    int32_t v = len ? vmap_find(t, (const uint8_t *)bytes, len) : -1;
    if (v < 0)
        for (size_t k = 0; k < t->n_spec; k++)
            if (t->spec[k].len == len && memcmp(t->spec[k].bytes, bytes, len) == 0) {
                v = t->spec[k].id;
                break;
            }
    if (v < 0) return LOOM_ERR_INVALID_ARG;
    *id = v;
    return LOOM_OK;
}

loom_token_type loom_tokenizer_token_type(const loom_tokenizer *t, int32_t id) {
    if (!t || id < 0 || (size_t)id >= t->n_vocab || t->len[id] == UINT32_MAX)
        return LOOM_TOKEN_UNDEFINED;
    return (loom_token_type)t->type[id];
}

size_t loom_tokenizer_vocab_size(const loom_tokenizer *t) {
    return t ? t->n_vocab : 0;
}
int32_t loom_tokenizer_bos(const loom_tokenizer *t) {
    return t ? t->bos : -1;
}
int32_t loom_tokenizer_eos(const loom_tokenizer *t) {
    return t ? t->eos : -1;
}
int32_t loom_tokenizer_eot(const loom_tokenizer *t) {
    return t ? t->eot : -1;
}

loom_status loom_tokenizer_set_special_ids(loom_tokenizer *t, int32_t bos, int32_t eos,
                                           int32_t eot) {
    if (!t) return LOOM_ERR_INVALID_ARG;
    int32_t v[3] = {bos, eos, eot};
    for (int i = 0; i < 3; i++)
        if (v[i] < -1 || (v[i] >= 0 && ((size_t)v[i] >= t->n_vocab || t->len[v[i]] == UINT32_MAX)))
            return LOOM_ERR_INVALID_ARG;
    t->bos = bos;
    t->eos = eos;
    t->eot = eot;
    if (bos < 0) t->add_bos = false;
    return LOOM_OK;
}

bool loom_tokenizer_add_bos(const loom_tokenizer *t) {
    return t && t->add_bos && t->bos >= 0;
}

loom_status loom_tokenizer_set_add_bos(loom_tokenizer *t, bool add_bos) {
    if (!t || (add_bos && t->bos < 0)) return LOOM_ERR_INVALID_ARG;
    t->add_bos = add_bos;
    return LOOM_OK;
}

const char *loom_tokenizer_chat_template(const loom_tokenizer *t) {
    return t ? t->chat_template : NULL;
}

loom_status loom_tokenizer_set_chat_template(loom_tokenizer *t, const char *text) {
    if (!t) return LOOM_ERR_INVALID_ARG;
    char *c = NULL;
    if (text) {
        size_t n = strlen(text);
        if (!(c = malloc(n + 1))) return LOOM_ERR_OOM;
        memcpy(c, text, n + 1);
    }
    free(t->chat_template);
    t->chat_template = c;
    return LOOM_OK;
}

loom_status loom_tok_spm_finish(loom_tokenizer *t, const int32_t *byte_ids,
                                loom_tok_spm_prefix prefix) {
    t->spm = true;
    t->spm_prefix = (uint8_t)prefix;
    for (int b = 0; b < 256; b++) {
        int32_t id = byte_ids[b];
        t->byte_tok[b] = id;
        if (id < 0) continue;
        /* <0xXX> decodes to its byte and is never matched as text */
        if (t->len[id] == UINT32_MAX || t->len[id] < 1) return LOOM_ERR_INVALID_ARG;
        t->blob[t->off[id]] = (char)b;
        t->len[id] = 1;
        t->type[id] = LOOM_TOKEN_BYTE;
    }
    size_t k = 0;
    for (size_t i = 0; i < t->n_spec; i++)
        if (t->type[t->spec[i].id] != LOOM_TOKEN_BYTE) t->spec[k++] = t->spec[i];
    t->n_spec = k;
    memset(t->spec_lo, 0, sizeof t->spec_lo);
    memset(t->spec_hi, 0, sizeof t->spec_hi);
    for (size_t i = 0; i < t->n_spec; i++) {
        if (!t->spec[i].len) continue;
        uint8_t f = (uint8_t)t->spec[i].bytes[0];
        if (t->spec_hi[f] == 0) t->spec_lo[f] = (uint32_t)i;
        t->spec_hi[f] = (uint32_t)i + 1;
    }
    return LOOM_OK;
}

bool loom_tok_is_spm(const loom_tokenizer *t) {
    return t && t->spm;
}
