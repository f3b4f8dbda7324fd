/* rag/chunk.c - sentence-aware token chunks (the rule is in chunk.h). */
#include "rag/chunk.h"

#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>

typedef struct span {
    size_t b, e;
    int t;
} span;

typedef struct spans {
    span *v;
    size_t n, cap;
} spans;

static bool push(spans *s, size_t b, size_t e, int t) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        span *nv = realloc(s->v, cap * sizeof *nv);
        if (!nv) return false;
        s->v = nv, s->cap = cap;
    }
    s->v[s->n++] = (span){b, e, t};
    return true;
}

static bool is_ws(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static loom_status count(const loom_wordpiece *wp, const char *t, size_t n, int *out) {
    int k = 0;
    loom_status st = loom_wordpiece_encode(wp, t, n, INT_MAX, NULL, 0, &k);
    *out = k - 2; /* [CLS] and [SEP] */
    return st;
}

/* A sentence [b, e) of more than max pieces: cut at white space. */
static loom_status split_long(const loom_wordpiece *wp, const char *t, size_t b, size_t e, int max,
                              spans *out) {
    size_t cb = b, i = b;
    int acc = 0;
    while (i < e) {
        size_t wb = i;
        while (i < e && !is_ws(t[i]))
            i++;
        size_t we = i;
        while (i < e && is_ws(t[i]))
            i++;
        int wt = 0;
        loom_status st = count(wp, t + wb, we - wb, &wt);
        if (st != LOOM_OK) return st;
        if (acc == 0) cb = wb; /* a piece starts at a word the encoder sees */
        if (acc > 0 && acc + wt > max) {
            /* close the piece before this word (trailing blanks dropped) */
            size_t ce = wb;
            while (ce > cb && is_ws(t[ce - 1]))
                ce--;
            if (!push(out, cb, ce, acc)) return LOOM_ERR_OOM;
            cb = wb, acc = 0;
        }
        acc += wt;
    }
    if (acc > 0 && !push(out, cb, e, acc)) return LOOM_ERR_OOM;
    return LOOM_OK;
}

loom_status loom_rag_chunk_text(const loom_wordpiece *wp, const char *text, size_t len,
                                int chunk_tokens, int overlap_tokens, loom_rag_chunk **out,
                                size_t *n_out) {
    if (!wp || (!text && len) || !out || !n_out || chunk_tokens < 1 || overlap_tokens < 0 ||
        overlap_tokens >= chunk_tokens)
        return LOOM_ERR_INVALID_ARG;
    *out = NULL, *n_out = 0;
    spans s = {0};
    loom_status st = LOOM_OK;
    size_t i = 0;
    while (st == LOOM_OK && i < len) {
        while (i < len && is_ws(text[i]))
            i++;
        if (i >= len) break;
        size_t b = i;
        while (i < len && text[i] != '\n' &&
               !((text[i] == '.' || text[i] == '!' || text[i] == '?') && i + 1 < len &&
                 is_ws(text[i + 1])))
            i++;
        size_t e = i < len && text[i] != '\n' ? i + 1 : i; /* keep the punctuation */
        i = e;
        while (e > b && is_ws(text[e - 1]))
            e--;
        int t = 0;
        if ((st = count(wp, text + b, e - b, &t)) != LOOM_OK) break;
        if (t <= 0) continue; /* nothing the encoder sees */
        if (t > chunk_tokens)
            st = split_long(wp, text, b, e, chunk_tokens, &s);
        else if (!push(&s, b, e, t))
            st = LOOM_ERR_OOM;
    }
    loom_rag_chunk *c = NULL;
    size_t nc = 0;
    if (st == LOOM_OK && s.n && !(c = malloc(s.n * sizeof *c))) st = LOOM_ERR_OOM;
    for (size_t a = 0; st == LOOM_OK && a < s.n;) {
        size_t z = a;
        int acc = 0;
        while (z < s.n && (z == a || acc + s.v[z].t <= chunk_tokens))
            acc += s.v[z++].t;
        c[nc++] = (loom_rag_chunk){s.v[a].b, s.v[z - 1].e, acc};
        if (z == s.n) break;
        size_t next = z;
        int ov = 0;
        while (next - 1 > a && ov + s.v[next - 1].t <= overlap_tokens)
            ov += s.v[--next].t;
        /* no overlap when it would leave no room for the next sentence: the
           chunk would repeat the tail of this one and end where it ends */
        a = ov + s.v[z].t > chunk_tokens ? z : next;
    }
    free(s.v);
    if (st != LOOM_OK) {
        free(c);
        return st;
    }
    *out = c, *n_out = nc;
    return LOOM_OK;
}
