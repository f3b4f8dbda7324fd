/* tests/train/test_data_prep.c - the stages of `loom data prep`: whitespace
 * rule, NFKC, URL/e-mail finding, HTML extraction with boilerplate removal,
 * MinHash estimates against exact Jaccard, and the LSH index. The whole
 * pipeline on committed fixtures is tests/train/check_data_prep.py. */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testing.h"
#include "train/data_prep_html.h"
#include "train/data_prep_text.h"
#include "train/minhash.h"

static void test_ws(void) {
    static const char *const cases[][2] = {
        {"  hello   world  ", "hello   world"},
        {"a\r\nb\rc\n", "a\nb\nc"},
        {"a\n\n\n\n\nb", "a\n\nb"},
        {"a \t \n  \n\t\nb", "a\n\nb"},
        {"\n\n  x", "x"},
        {"def f():\n    return 1\n", "def f():\n    return 1"},
        {"a\x01\x7f"
         "b\xe2\x80\x8b"
         "c\xef\xbb\xbf",
         "abc"},                                          /* controls, ZWSP, BOM */
        {"p1\xe2\x80\xa8p2\xe2\x80\xa9p3", "p1\np2\np3"}, /* U+2028, U+2029 */
        {"x\xc2\x85y", "xy"},                             /* C1 control NEL */
        {"", ""},
        {" \n \t ", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *s = strdup(cases[i][0]);
        size_t n = loom_text_clean_ws(s, strlen(s));
        CHECK_MSG(n == strlen(cases[i][1]) && !strcmp(s, cases[i][1]), "case %zu: got '%s'", i, s);
        /* Idempotent. */
        size_t n2 = loom_text_clean_ws(s, n);
        CHECK(n2 == n);
        free(s);
    }
}

static void test_nfkc(void) {
    char *o = NULL;
    size_t n = 0;
    /* ligature fi, full-width A, e + combining acute, NBSP, superscript 2 */
    const char *in = "\xef\xac\x81 \xef\xbc\xa1 e\xcc\x81 a\xc2\xa0"
                     "b x\xc2\xb2";
    CHECK(loom_text_nfkc(in, strlen(in), &o, &n) == LOOM_OK);
    CHECK_MSG(o && !strcmp(o, "fi A \xc3\xa9 a b x2"), "%s", o ? o : "(null)");
    free(o);
    CHECK(loom_text_nfkc("ok\xff", 3, &o, &n) == LOOM_ERR_FORMAT);
    CHECK(loom_text_nfkc("\xc3", 1, &o, &n) == LOOM_ERR_FORMAT); /* truncated sequence */
}

static void test_urls_emails(void) {
    static const struct {
        const char *in, *out; /* out with both redactions */
        int urls, emails;
    } cases[] = {
        {"mail bob.smith+x@mail.example.org today", "mail <EMAIL> today", 0, 1},
        {"see https://docs.python.org/3/faq/. Then", "see <URL>. Then", 1, 0},
        {"(http://en.wikipedia.org/wiki/Foo_(bar)) end", "(<URL>) end", 1, 0},
        {"at www.python.org, or ftp://x.org/a", "at <URL>, or <URL>", 2, 0},
        {"not@an address, a@b, x@y.c, @z.com", "not@an address, a@b, x@y.c, @z.com", 0, 0},
        {"http://user@host.com/p and me@host.com", "<URL> and <EMAIL>", 1, 1},
        {"nohttp://x", "nohttp://x", 0, 0},
        {"https://", "https://", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        loom_text_spans sp;
        char *o = NULL;
        size_t n = 0;
        CHECK(loom_text_urls_emails(cases[i].in, strlen(cases[i].in), true, true, &sp, &o, &n) ==
              LOOM_OK);
        CHECK_MSG(o && !strcmp(o, cases[i].out) && sp.n_urls == cases[i].urls &&
                      sp.n_emails == cases[i].emails,
                  "case %zu: '%s' (%lld urls, %lld emails)", i, o ? o : "", (long long)sp.n_urls,
                  (long long)sp.n_emails);
        free(o);
        /* Without redaction the text is unchanged and the counts the same. */
        CHECK(loom_text_urls_emails(cases[i].in, strlen(cases[i].in), false, false, &sp, &o, &n) ==
              LOOM_OK);
        CHECK(o && !strcmp(o, cases[i].in) && sp.n_urls == cases[i].urls);
        free(o);
    }
    loom_text_spans sp;
    char *o = NULL;
    size_t n;
    const char *u = "go to http://a.b/c now";
    CHECK(loom_text_urls_emails(u, strlen(u), false, true, &sp, &o, &n) == LOOM_OK);
    CHECK(sp.url_bytes == strlen("http://a.b/c"));
    free(o);
}

static const char PAGE[] =
    "<!DOCTYPE html><html><head><title>  The  FAQ </title><style>p{}</style>"
    "<script>var x = '<p>not text</p>';</script></head><body>"
    "<div class=\"related\" role=\"navigation\"><a href=a>index</a> | <a href=b>next</a></div>"
    "<header>Site header</header>"
    "<nav><ul><li><a href=x>Home</a></li></ul></nav>"
    "<div class=\"body\" role=\"main\"><section>"
    "<h1>FAQ<a class=\"headerlink\" href=\"#faq\">\xc2\xb6</a></h1>"
    "<h2>General</h2>"
    "<h3><a class=\"toc-backref\" href=\"#q1\">What is it?</a></h3>"
    "<p>It is a   <em>thing</em>\n that works.</p>"
    "<pre>def f():\n    return 1\n</pre>"
    "<h3>Where is it?</h3><p>Here, see <a href=u>the page</a> for more.</p>"
    "<ul><li><a href=1>link one</a></li><li><a href=2>link two</a></li></ul>"
    "<h3>Empty?</h3>"
    "</section></div>"
    "<div class=\"sphinxsidebar\">sidebar text</div>"
    "<div class=\"footer\">&copy; footer</div><footer>page footer</footer>"
    "</body></html>";

static void test_html(void) {
    loom_html_opts o = {0.5, 0};
    loom_html_stats st = {0};
    loom_html_doc d;
    CHECK(loom_html_extract(PAGE, sizeof PAGE - 1, &o, &d, &st) == LOOM_OK);
    const char *want = "FAQ\n\nGeneral\n\nWhat is it?\n\nIt is a thing that works.\n\n"
                       "def f():\n    return 1\n\nWhere is it?\n\nHere, see the page for more."
                       "\n\nEmpty?";
    CHECK_MSG(d.text && !strcmp(d.text, want), "got:\n%s", d.text ? d.text : "(null)");
    CHECK(d.title && !strcmp(d.title, "The FAQ"));
    /* head, header, nav, footer; role=navigation; sphinxsidebar + footer
     * class; one permalink; two link-only list items. */
    CHECK_MSG(st.n[LOOM_HTML_DROP_TAG] == 4, "%lld", (long long)st.n[LOOM_HTML_DROP_TAG]);
    CHECK(st.n[LOOM_HTML_DROP_ROLE] == 1);
    CHECK(st.n[LOOM_HTML_DROP_CLASS] == 2);
    CHECK(st.n[LOOM_HTML_DROP_PERMALINK] == 1);
    CHECK(st.n[LOOM_HTML_DROP_LINK_DENSE] == 2);
    loom_html_doc_free(&d);

    /* Sections at h2..h3: "General" has no text of its own (its first child
     * is an h3), "Empty?" has none at all: both dropped. */
    o.split_level = 3;
    memset(&st, 0, sizeof st);
    CHECK(loom_html_extract(PAGE, sizeof PAGE - 1, &o, &d, &st) == LOOM_OK);
    CHECK(d.n_sec == 2);
    if (d.n_sec == 2) {
        CHECK(!strcmp(d.sec[0].heading, "What is it?"));
        CHECK(!strcmp(d.sec[0].body, "It is a thing that works.\n\ndef f():\n    return 1"));
        CHECK(!strcmp(d.sec[1].heading, "Where is it?"));
        CHECK(!strcmp(d.sec[1].body, "Here, see the page for more."));
    }
    CHECK(st.n[LOOM_HTML_DROP_EMPTY_SECTION] == 2);
    loom_html_doc_free(&d);

    /* Garbage and empty input: a clean error or an empty text, never a crash. */
    CHECK(loom_html_extract("", 0, &o, &d, &st) == LOOM_ERR_FORMAT);
    if (loom_html_extract("<<<>>>\x01\xff", 8, &o, &d, &st) == LOOM_OK) loom_html_doc_free(&d);
}

static uint64_t rs = 12345;
static uint64_t rnd(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}

/* A text of n words from a vocabulary of 5000 made-up words. */
static char *words(int n, uint64_t seed) {
    char *s = malloc((size_t)n * 8 + 1);
    size_t k = 0;
    uint64_t save = rs;
    rs = seed;
    for (int i = 0; i < n; i++)
        k += (size_t)sprintf(s + k, "%sw%llu", i ? " " : "", (unsigned long long)(rnd() % 5000));
    rs = save;
    return s;
}

static void test_minhash(void) {
    loom_minhash m;
    CHECK(loom_minhash_init(&m, 128, 5, 7) == LOOM_OK);
    uint32_t s1[128], s2[128];
    /* Identical and case/punctuation variants: same shingles, same signature. */
    CHECK(loom_minhash_signature(&m, "The quick brown fox jumps over the lazy dog", 43, s1) == 5);
    const char *v = "the QUICK, brown fox -- jumps over the lazy dog!";
    loom_minhash_signature(&m, v, strlen(v), s2);
    CHECK(loom_minhash_jaccard(s1, s2, 128) == 1.0);
    CHECK(loom_minhash_exact_jaccard(5, v, strlen(v), "The quick brown fox jumps over the lazy dog",
                                     43) == 1.0);
    /* Estimates within 4.5 standard errors of the exact Jaccard, over pairs
     * sharing a varying share of their words. */
    int bad = 0;
    for (int t = 0; t < 40; t++) {
        char *a = words(300, 1000 + (uint64_t)t);
        char *b = strdup(a);
        int changes = t * 3; /* replace some words of b */
        for (int c = 0; c < changes; c++) {
            size_t at = (size_t)(rnd() % (strlen(b) - 6));
            while (at > 0 && b[at - 1] != ' ')
                at--;
            b[at] = 'z'; /* "w123" -> "z123": a different word */
        }
        double ex = loom_minhash_exact_jaccard(5, a, strlen(a), b, strlen(b));
        loom_minhash_signature(&m, a, strlen(a), s1);
        loom_minhash_signature(&m, b, strlen(b), s2);
        double est = loom_minhash_jaccard(s1, s2, 128);
        double se = sqrt(ex * (1 - ex) / 128) + 1.0 / 128;
        bad += fabs(est - ex) > 4.5 * se;
        free(a);
        free(b);
    }
    CHECK_MSG(bad == 0, "%d of 40 estimates off by more than 4.5 standard errors", bad);
    /* Empty text: no shingles, all UINT32_MAX. */
    CHECK(loom_minhash_signature(&m, " ,. ", 4, s1) == 0 && s1[0] == UINT32_MAX);

    /* LSH parameters (datasketch's optimum; recomputed by
     * tests/train/check_data_prep.py in Python). */
    int b, r;
    loom_lsh_params(0.8, 128, &b, &r);
    CHECK_MSG(b * r <= 128 && b == 9 && r == 13, "0.8/128: %d bands x %d rows", b, r);
    loom_lsh_params(0.5, 128, &b, &r);
    CHECK(b * r <= 128 && b > 9);

    /* The index: 300 unrelated documents, then a near copy of one. */
    loom_lsh *l = NULL;
    CHECK(loom_lsh_create(128, 0.8, &l) == LOOM_OK);
    for (int d = 0; d < 300; d++) {
        char *a = words(200, 5000 + (uint64_t)d);
        loom_minhash_signature(&m, a, strlen(a), s1);
        CHECK(loom_lsh_query(l, s1, NULL) == -1);
        CHECK(loom_lsh_insert(l, s1) == d);
        free(a);
    }
    char *a = words(200, 5000 + 123);
    a[strlen(a) / 2] = 'q'; /* change one character of one word in the middle */
    loom_minhash_signature(&m, a, strlen(a), s1);
    double sim = 0;
    CHECK(loom_lsh_query(l, s1, &sim) == 123 && sim >= 0.8);
    free(a);
    a = words(200, 99999);
    loom_minhash_signature(&m, a, strlen(a), s1);
    CHECK(loom_lsh_query(l, s1, &sim) == -1);
    free(a);
    loom_lsh_free(l);
    CHECK(loom_lsh_create(128, 0.0, &l) == LOOM_ERR_INVALID_ARG);
    loom_minhash_free(&m);
    CHECK(loom_minhash_init(&m, 0, 5, 1) == LOOM_ERR_INVALID_ARG);
}

int main(void) {
    test_ws();
    test_nfkc();
    test_urls_emails();
    test_html();
    test_minhash();
    return test_summary("test_data_prep");
}
