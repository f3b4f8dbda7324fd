/* model/tokenizer/tokenizer_encode.c - encode: special-token split, then the
 * pre-tokenizer's pieces, each BPE-merged by rank (byte-level) or, for
 * SentencePiece vocabularies, merged from characters with byte fallback. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer/tok_core.h"

/* ---- encode ---- */

typedef struct tok_sym {
    int32_t id;
    int32_t prev, next; /* neighbours in the live list, -1 at the ends */
    int32_t alive;
} tok_sym;

typedef struct tok_heap_ent {
    uint32_t rank;
    uint32_t pos; /* index of the left symbol */
} tok_heap_ent;

typedef struct tok_enc {
    const loom_tokenizer *t;
    int32_t *ids;
    size_t n_ids, cap_ids;
    tok_sym *sym;
    tok_heap_ent *heap;
    size_t cap_sym;
    void *md; /* pre-tokenizer match state */
} tok_enc;

static bool push_id(tok_enc *e, int32_t id) {
    if (e->n_ids == e->cap_ids) {
        size_t nc = e->cap_ids ? e->cap_ids * 2 : 64;
        int32_t *p = realloc(e->ids, nc * sizeof(int32_t));
        if (!p) return false;
        e->ids = p;
        e->cap_ids = nc;
    }
    e->ids[e->n_ids++] = id;
    return true;
}

static inline bool heap_less(tok_heap_ent a, tok_heap_ent b) {
    return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos);
}

static void heap_push(tok_heap_ent *h, size_t *n, tok_heap_ent v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(v, h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static tok_heap_ent heap_pop(tok_heap_ent *h, size_t *n) {
    tok_heap_ent top = h[0], last = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && heap_less(h[c + 1], h[c])) c++;
        if (!heap_less(h[c], last)) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = last;
    return top;
}

static inline void push_pair(const loom_tokenizer *t, tok_heap_ent *h, size_t *hn, const tok_sym *s,
                             int32_t i) {
    const tok_pair_slot *m = pmap_find(t, pair_key(s[i].id, s[s[i].next].id));
    if (m) heap_push(h, hn, (tok_heap_ent){m->rank, (uint32_t)i});
}

/* BPE one pre-token: start from single bytes and repeatedly apply the
 * lowest-ranked merge present (leftmost on ties), as Hugging Face does. A heap
 * of candidate pairs with lazy invalidation keeps long pieces O(n log n). */
static loom_status sym_reserve(tok_enc *e, size_t n) {
    if (n > (size_t)INT32_MAX) return LOOM_ERR_INVALID_ARG;
    if (n > e->cap_sym) {
        size_t nc = n < 256 ? 256 : n;
        tok_sym *s = realloc(e->sym, nc * sizeof(tok_sym));
        if (!s) return LOOM_ERR_OOM;
        e->sym = s;
        tok_heap_ent *h = realloc(e->heap, 2 * nc * sizeof(tok_heap_ent));
        if (!h) return LOOM_ERR_OOM;
        e->heap = h;
        e->cap_sym = nc;
    }
    return LOOM_OK;
}

/* Merge the n_sym symbols in e->sym (ids set) by rank and emit the result:
 * repeatedly apply the lowest-ranked merge present (leftmost on ties), as
 * Hugging Face does. A heap of candidate pairs with lazy invalidation keeps
 * long pieces O(n log n). */
static loom_status merge_and_emit(tok_enc *e, size_t n_sym) {
    const loom_tokenizer *t = e->t;
    tok_sym *s = e->sym;
    tok_heap_ent *h = e->heap;
    size_t hn = 0;
    if (n_sym == 0) return LOOM_OK;
    for (size_t i = 0; i < n_sym; i++)
        s[i] = (tok_sym){s[i].id, (int32_t)i - 1, i + 1 < n_sym ? (int32_t)i + 1 : -1, 1};
    for (size_t i = 0; i + 1 < n_sym; i++)
        push_pair(t, h, &hn, s, (int32_t)i);
    /* Each merge pushes at most two entries and removes one symbol, so the
     * heap never exceeds 2n entries. */
    while (hn) {
        tok_heap_ent top = heap_pop(h, &hn);
        int32_t i = (int32_t)top.pos;
        if (!s[i].alive || s[i].next < 0) continue;
        int32_t j = s[i].next;
        const tok_pair_slot *m = pmap_find(t, pair_key(s[i].id, s[j].id));
        if (!m || m->rank != top.rank)
            continue; /* stale: a neighbour changed since this entry was pushed */
        s[i].id = m->new_id;
        s[j].alive = 0;
        s[i].next = s[j].next;
        if (s[j].next >= 0) s[s[j].next].prev = i;
        if (s[i].prev >= 0) push_pair(t, h, &hn, s, s[i].prev);
        if (s[i].next >= 0) push_pair(t, h, &hn, s, i);
    }
    for (int32_t i = 0; i >= 0; i = s[i].next)
        if (!push_id(e, s[i].id)) return LOOM_ERR_OOM;
    return LOOM_OK;
}

/* BPE one pre-token, starting from single bytes. */
static loom_status bpe_piece(tok_enc *e, const uint8_t *p, size_t n) {
    const loom_tokenizer *t = e->t;
    if (n == 0) return LOOM_OK;
    if (t->ignore_merges || n == 1) {
        int32_t id = vmap_find(t, p, n);
        if (id >= 0) return push_id(e, id) ? LOOM_OK : LOOM_ERR_OOM;
    }
    LOOM_TRY(sym_reserve(e, n));
    size_t n_sym = 0;
    /* Bytes without a token are left out, so their neighbours become
     * adjacent and may merge, as in Hugging Face's merge_word. */
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[p[i]];
        if (id >= 0) e->sym[n_sym++].id = id;
    }
    return merge_and_emit(e, n_sym);
}

/* Length of the UTF-8 character at p (1 for an invalid byte). */
static size_t utf8_len(const uint8_t *p, size_t n) {
    size_t need = p[0] < 0x80             ? 1
                  : (p[0] & 0xe0) == 0xc0 ? 2
                  : (p[0] & 0xf0) == 0xe0 ? 3
                  : (p[0] & 0xf8) == 0xf0 ? 4
                                          : 1;
    if (need > n) return 1;
    for (size_t k = 1; k < need; k++)
        if ((p[k] & 0xc0) != 0x80) return 1;
    return need;
}

static bool is_metaspace(const uint8_t *p, size_t n) { /* U+2581, which Metaspace makes of ' ' */
    return n >= 3 && p[0] == 0xe2 && p[1] == 0x96 && p[2] == 0x81;
}

/* SentencePiece BPE of one segment (Hugging Face: Metaspace with split off,
 * then BPE with byte_fallback): symbols are characters (' ' and U+2581 both
 * the "▁" token), a character without a token becomes its bytes' <0xXX>
 * tokens, and with prefix a "▁" is put in front, unless the text starts with
 * one and the prefix is Metaspace's (a Prepend normalizer adds it anyway). */
static loom_status spm_piece(tok_enc *e, const uint8_t *p, size_t n, bool prefix) {
    const loom_tokenizer *t = e->t;
    if (n == 0) return LOOM_OK;
    if (prefix && t->spm_prefix != LOOM_TOK_SPM_PREFIX_PREPEND &&
        (p[0] == ' ' || is_metaspace(p, n)))
        prefix = false;
    LOOM_TRY(sym_reserve(e, 4 * n + 1));
    size_t n_sym = 0;
    const uint8_t space = ' ';
    if (prefix) {
        int32_t id = vmap_find(t, &space, 1);
        if (id >= 0) e->sym[n_sym++].id = id;
    }
    for (size_t i = 0; i < n;) {
        size_t l = is_metaspace(p + i, n - i) ? 3 : utf8_len(p + i, n - i);
        const uint8_t *c = p[i] == 0xe2 && l == 3 && is_metaspace(p + i, 3) ? &space : p + i;
        int32_t id = vmap_find(t, c, c == &space ? 1 : l);
        if (id >= 0) {
            e->sym[n_sym++].id = id;
        } else {
            for (size_t k = 0; k < l; k++)
                if (t->byte_tok[p[i + k]] >= 0) e->sym[n_sym++].id = t->byte_tok[p[i + k]];
        }
        i += l;
    }
    return merge_and_emit(e, n_sym);
}

static loom_status emit_piece(void *ud, const uint8_t *p, size_t n) {
    return bpe_piece(ud, p, n);
}

/* Pre-tokenize text without special tokens and BPE each piece; at_start:
 * the text begins at offset 0 of the input (SentencePiece's prefix: only
 * there for Metaspace "first", before every segment otherwise). */
static loom_status encode_plain(tok_enc *e, const uint8_t *text, size_t n, bool at_start, char *err,
                                size_t err_n) {
    if (e->t->spm) {
        const uint8_t mode = e->t->spm_prefix;
        bool prefix =
            mode == LOOM_TOK_SPM_PREFIX_FIRST ? at_start : mode != LOOM_TOK_SPM_PREFIX_NONE;
        loom_status st = spm_piece(e, text, n, prefix);
        return st == LOOM_OK ? st : loom_model_fail(err, err_n, st, "tokenizer: out of memory");
    }
    return loom_pretok_split(e->t->pre, e->md, text, n, emit_piece, e, err, err_n);
}

static bool spec_matchable(uint8_t type, unsigned flags) {
    if (type == LOOM_TOKEN_USER_DEFINED)
        return true; /* added non-special tokens are always split out */
    if (type == LOOM_TOKEN_CONTROL || type == LOOM_TOKEN_UNKNOWN)
        return !(flags & LOOM_TOK_NO_SPECIAL);
    return false;
}

loom_status loom_tokenizer_encode(const loom_tokenizer *t, const char *text, size_t len,
                                  unsigned flags, int32_t **ids, size_t *n_ids, char *err,
                                  size_t err_n) {
    if (!t || !ids || !n_ids || (!text && len))
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "tokenizer: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    if (flags & ~(unsigned)(LOOM_TOK_ADD_BOS | LOOM_TOK_NO_SPECIAL))
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "tokenizer: unknown encode flags 0x%x", flags);
    if ((flags & LOOM_TOK_ADD_BOS) && t->bos < 0)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "tokenizer: LOOM_TOK_ADD_BOS but the tokenizer has no BOS token");
    tok_enc e = {.t = t};
    loom_status st = LOOM_OK;
    e.md = loom_pretok_scratch_new(t->pre);
    if (!e.md || !push_id(&e, 0)) /* allocates ids even for empty output */
        goto oom;
    e.n_ids = 0;
    if (flags & LOOM_TOK_ADD_BOS) push_id(&e, t->bos);

    /* Split on special tokens (leftmost-longest), encode the text between. */
    const uint8_t *u = (const uint8_t *)text;
    size_t seg = 0, i = 0;
    while (i < len) {
        uint8_t c = u[i];
        const tok_special *hit = NULL;
        for (uint32_t k = t->spec_lo[c]; k < t->spec_hi[c]; k++) {
            const tok_special *sp = &t->spec[k];
            if (sp->len <= len - i && spec_matchable(sp->type, flags) &&
                memcmp(sp->bytes, u + i, sp->len) == 0) {
                hit = sp;
                break;
            }
        }
        if (!hit) {
            i++;
            continue;
        }
        if ((st = encode_plain(&e, u + seg, i - seg, seg == 0, err, err_n)) != LOOM_OK) goto fail;
        if (!push_id(&e, hit->id)) goto oom;
        i += hit->len;
        seg = i;
    }
    if ((st = encode_plain(&e, u + seg, len - seg, seg == 0, err, err_n)) != LOOM_OK) goto fail;
    free(e.sym);
    free(e.heap);
    loom_pretok_scratch_free(e.md);
    *ids = e.ids;
    *n_ids = e.n_ids;
    return LOOM_OK;

oom:
    st = loom_model_fail(err, err_n, LOOM_ERR_OOM, "tokenizer: out of memory");
fail:
    free(e.ids);
    free(e.sym);
    free(e.heap);
    loom_pretok_scratch_free(e.md);
    return st;
}
