/* tests/rag/test_rag_chunk.c - the sentence-aware token chunker (rag/chunk.h)
 * with a tiny WordPiece vocabulary in which every word and every '.' is one
 * piece: hand-worked packings, the overlap rule, long sentences cut at white
 * space, and on a longer random text the invariants checked against the
 * tokenizer itself (size <= chunk, chunks start and end on sentence
 * boundaries, every word covered, chunks advance). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/encoder.h"
#include "rag/chunk.h"
#include "testing.h"

static const char *k_vocab =
    "{\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\",\"vocab\":{\"[PAD]\":0,"
    "\"[UNK]\":1,\"[CLS]\":2,\"[SEP]\":3,\"[MASK]\":4,\".\":5,\"a\":6,\"b\":7,\"c\":8}}}";

static int pieces(const loom_wordpiece *wp, const char *t, size_t n) {
    int k = 0;
    CHECK(loom_wordpiece_encode(wp, t, n, 1 << 30, NULL, 0, &k) == LOOM_OK);
    return k - 2;
}

static void expect(const loom_wordpiece *wp, const char *text, int chunk, int ov,
                   const size_t *want, size_t nwant) {
    loom_rag_chunk *c = NULL;
    size_t n = 0;
    CHECK(loom_rag_chunk_text(wp, text, strlen(text), chunk, ov, &c, &n) == LOOM_OK);
    CHECK_MSG(n == nwant, "'%s' chunk %d overlap %d: %zu chunks, want %zu", text, chunk, ov, n,
              nwant);
    for (size_t i = 0; i < n && i < nwant; i++)
        CHECK_MSG(c[i].begin == want[2 * i] && c[i].end == want[2 * i + 1],
                  "'%s' chunk %zu: [%zu,%zu) want [%zu,%zu)", text, i, c[i].begin, c[i].end,
                  want[2 * i], want[2 * i + 1]);
    free(c);
}

static void test_hand(const loom_wordpiece *wp) {
    /* sentences "a b." (3) "c c c." (4) "a." (2) */
    const char *t = "a b. c c c. a.";
    const size_t w1[] = {0, 4, 5, 11, 12, 14};
    expect(wp, t, 5, 0, w1, 3);
    const size_t w2[] = {0, 11, 12, 14}; /* 3 + 4 = 7 fits 7; "a." alone */
    expect(wp, t, 7, 0, w2, 2);
    /* overlap 4 carries "c c c." into the next chunk */
    const size_t w3[] = {0, 11, 5, 14};
    expect(wp, t, 7, 4, w3, 2);
    /* overlap 3 cannot carry the 4-piece sentence */
    expect(wp, t, 7, 3, w2, 2);
    /* a line break ends a sentence; blank lines and leading blanks are skipped */
    const char *t2 = "  a b\n\nc\n";
    const size_t w4[] = {2, 5, 7, 8};
    expect(wp, t2, 2, 0, w4, 2);
    const size_t w5[] = {2, 8};
    expect(wp, t2, 3, 0, w5, 1);
    /* a sentence of 10 pieces, chunk 4: cut at white space */
    const char *t3 = "a a a a a a a a a a.";
    const size_t w6[] = {0, 7, 8, 15, 16, 20};
    expect(wp, t3, 4, 0, w6, 3);
    /* nothing to chunk */
    expect(wp, "   \n\n ", 4, 0, NULL, 0);
    loom_rag_chunk *c = NULL;
    size_t n = 0;
    CHECK(loom_rag_chunk_text(wp, "a", 1, 4, 4, &c, &n) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_rag_chunk_text(wp, "a", 1, 0, 0, &c, &n) == LOOM_ERR_INVALID_ARG);
}

static int is_sep(char ch) {
    return ch == ' ' || ch == '\n';
}

static void test_random(const loom_wordpiece *wp) {
    uint64_t s = 12345;
    size_t cap = 20000, len = 0;
    char *t = malloc(cap);
    while (len + 8 < cap) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        unsigned r = (unsigned)(s >> 33);
        const char *w = r % 7 == 0 ? "a." : r % 3 == 0 ? "bb" : r % 2 ? "c" : "a";
        len += (size_t)sprintf(t + len, "%s%s", w, r % 41 == 0 ? "\n" : " ");
    }
    const int chunk = 37, ov = 9;
    loom_rag_chunk *c = NULL;
    size_t n = 0;
    CHECK(loom_rag_chunk_text(wp, t, len, chunk, ov, &c, &n) == LOOM_OK);
    CHECK(n > 10);
    size_t covered = 0; /* end of the covered prefix */
    for (size_t i = 0; i < n; i++) {
        int p = pieces(wp, t + c[i].begin, c[i].end - c[i].begin);
        CHECK_MSG(p <= chunk && p == c[i].tokens, "chunk %zu: %d pieces (said %d), max %d", i, p,
                  c[i].tokens, chunk);
        /* starts a sentence (or a cut of a long one: at a word) */
        CHECK(c[i].begin == 0 || is_sep(t[c[i].begin - 1]));
        CHECK(c[i].end == len || is_sep(t[c[i].end]));
        /* no gap before it, and it advances */
        CHECK_MSG(c[i].begin <= covered + 1, "gap before chunk %zu", i);
        CHECK(c[i].end > covered);
        if (i) {
            CHECK(c[i].begin > c[i - 1].begin);
            size_t olap = c[i - 1].end > c[i].begin ? c[i - 1].end - c[i].begin : 0;
            if (olap) CHECK(pieces(wp, t + c[i].begin, olap) <= ov);
        }
        covered = c[i].end;
    }
    while (len && is_sep(t[len - 1]))
        len--;
    CHECK(covered == len);
    free(c);
    free(t);
}

/* Arbitrary bytes (invalid UTF-8, NULs, control characters): no crash, and
 * chunks stay in bounds, ordered and within the size. */
static void test_bytes(const loom_wordpiece *wp) {
    uint64_t s = 99;
    for (int round = 0; round < 200; round++) {
        size_t len = (size_t)(round * 37 % 700);
        char *t = malloc(len + 1);
        for (size_t i = 0; i < len; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            unsigned r = (unsigned)(s >> 40);
            t[i] = r % 5 == 0 ? ' ' : r % 11 == 0 ? '.' : r % 13 == 0 ? '\n' : (char)r;
        }
        loom_rag_chunk *c = NULL;
        size_t n = 0;
        const int chunk = 8 + round % 20, ov = round % 8;
        CHECK(loom_rag_chunk_text(wp, t, len, chunk, ov, &c, &n) == LOOM_OK);
        for (size_t i = 0; i < n; i++) {
            CHECK(c[i].begin < c[i].end && c[i].end <= len);
            CHECK(i == 0 || (c[i].begin > c[i - 1].begin && c[i].end > c[i - 1].end));
            /* a single word larger than the chunk is the one allowed excess */
            CHECK(c[i].tokens <= chunk || !memchr(t + c[i].begin, ' ', c[i].end - c[i].begin));
        }
        free(c);
        free(t);
    }
}

int main(void) {
    loom_wordpiece *wp = NULL;
    char err[256];
    if (loom_wordpiece_load_json(k_vocab, strlen(k_vocab), &wp, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "vocab: %s\n", err);
        return 1;
    }
    test_hand(wp);
    test_random(wp);
    test_bytes(wp);
    loom_wordpiece_free(wp);
    return test_summary("test_rag_chunk");
}
