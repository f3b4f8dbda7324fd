/* tests/fuzz/fuzz_data_prep.c - libFuzzer entry for `loom data prep`'s input
 * paths. The first byte picks the path, the rest is the input:
 *   % 3 == 0  HTML through libxml2 and the boilerplate rules (whole page and
 *             --qa-heading sections), then the text stages on its text;
 *   % 3 == 1  the text stages on raw bytes: NFKC (invalid UTF-8 must be a
 *             clean error), whitespace rule, URL/e-mail spans, MinHash;
 *   % 3 == 2  a JSONL file through the whole pipeline (bad records are
 *             removed and reported, never an error), every output line valid
 *             JSON.
 * Properties checked, not just "no crash": the whitespace rule is
 * idempotent, NFKC output is valid UTF-8 and NFKC-stable, redaction only
 * shrinks or replaces spans, the pipeline keeps no more records than it read.
 * Built with -DLOOM_FUZZ=ON (clang) as fuzz_data_prep; replayed in CI by
 * tests/train/test_data_prep_fuzz_corpus.c. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/data_prep.h"
#include "train/data_prep_html.h"
#include "train/data_prep_text.h"
#include "train/minhash.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_REQUIRE(cond)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_data_prep: invariant failed: %s (%s:%d)\n", #cond, __FILE__,     \
                    __LINE__);                                                                     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void text_stages(const char *s, size_t n) {
    char *norm = NULL;
    size_t nn = 0;
    loom_status st = loom_text_nfkc(s, n, &norm, &nn);
    FUZZ_REQUIRE(st == LOOM_OK || st == LOOM_ERR_FORMAT);
    if (st != LOOM_OK) return;
    /* NFKC is stable: a second pass changes nothing. */
    char *again = NULL;
    size_t an = 0;
    FUZZ_REQUIRE(loom_text_nfkc(norm, nn, &again, &an) == LOOM_OK);
    FUZZ_REQUIRE(an == nn && !memcmp(again, norm, nn));
    free(again);
    size_t w = loom_text_clean_ws(norm, nn);
    FUZZ_REQUIRE(w <= nn && norm[w] == 0);
    FUZZ_REQUIRE(loom_text_clean_ws(norm, w) == w);
    loom_text_spans sp;
    char *red = NULL;
    size_t rn = 0;
    FUZZ_REQUIRE(loom_text_urls_emails(norm, w, true, true, &sp, &red, &rn) == LOOM_OK);
    FUZZ_REQUIRE(sp.url_bytes <= w && sp.n_urls >= 0 && sp.n_emails >= 0);
    FUZZ_REQUIRE(rn <= w + 7 * (size_t)(sp.n_urls + sp.n_emails));
    free(red);
    loom_minhash m;
    if (loom_minhash_init(&m, 16, 3, 1) == LOOM_OK) {
        uint32_t sig[16];
        FUZZ_REQUIRE(loom_minhash_signature(&m, norm, w, sig) >= 0);
        loom_minhash_free(&m);
    }
    free(norm);
}

static void html_path(const uint8_t *data, size_t size) {
    for (int split = 0; split <= 3; split += 3) {
        loom_html_opts o = {0.5, split};
        loom_html_stats st = {0};
        loom_html_doc d;
        loom_status s = loom_html_extract((const char *)data, size, &o, &d, &st);
        FUZZ_REQUIRE(s == LOOM_OK || s == LOOM_ERR_FORMAT);
        if (s != LOOM_OK) continue;
        FUZZ_REQUIRE(d.text && d.title && d.n_sec >= 0);
        for (int k = 0; k < d.n_sec; k++)
            FUZZ_REQUIRE(d.sec[k].heading && d.sec[k].body && d.sec[k].body[0]);
        if (split == 0) text_stages(d.text, strlen(d.text));
        loom_html_doc_free(&d);
    }
}

static void jsonl_path(const uint8_t *data, size_t size) {
    char in[] = "/tmp/loom_fuzz_prep_in_XXXXXX";
    int fd = mkstemp(in);
    if (fd < 0) return;
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        remove(in);
        return;
    }
    fwrite(data, 1, size, f);
    fclose(f);
    char out[64];
    snprintf(out, sizeof out, "%s.out", in);
    loom_data_prep_opts o;
    loom_data_prep_defaults(&o);
    o.in_jsonl = in;
    o.out_path = out;
    o.num_perm = 32;
    loom_data_prep_result r;
    char err[512];
    loom_status s = loom_data_prep(&o, &r, err, sizeof err);
    FUZZ_REQUIRE(s == LOOM_OK);
    FUZZ_REQUIRE(r.records_out <= r.records_in);
    FILE *g = fopen(out, "rb");
    FUZZ_REQUIRE(g != NULL);
    char *line = NULL;
    size_t cap = 0;
    int64_t lines = 0;
    while (getline(&line, &cap, g) >= 0) {
        cJSON *j = cJSON_Parse(line);
        FUZZ_REQUIRE(cJSON_IsObject(j));
        cJSON_Delete(j);
        lines++;
    }
    free(line);
    fclose(g);
    FUZZ_REQUIRE(lines == r.records_out);
    remove(out);
    remove(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    int mode = data[0] % 3;
    data++, size--;
    if (mode == 0)
        html_path(data, size);
    else if (mode == 1)
        text_stages((const char *)data, size);
    else
        jsonl_path(data, size);
    return 0;
}
