/* tests/model/test_tokenizer_spm.c - SentencePiece BPE (GGUF tokenizer.ggml.model
 * "llama") against Hugging Face.
 *
 * Loads tests/model/data/spm/llama-spm.vocab.gguf (Llama 2's vocabulary, the
 * vocab-only file of llama.cpp's tokenizer tests) and, for every case of
 * llama-spm.golden.txt (scripts/gen_spm_golden.py: transformers loading the
 * same GGUF, tokenizers encoding), requires identical ids; decode gives the
 * text back, with the "▁" prefix as a leading space. Also: BOS/EOS and
 * add_bos from the metadata, add_space_prefix = false, and that the
 * vocabulary cannot be written back (refused by name). */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/gguf.h"
#include "loom/tokenizer.h"
#include "testing.h"

static const char *src_path(const char *rel, char *buf, size_t n) {
    const char *s = getenv("LOOM_SOURCE_DIR");
    snprintf(buf, n, "%s/%s", s ? s : ".", rel);
    return buf;
}

static char *unhex(const char *h, size_t *n) {
    size_t l = strcmp(h, "-") ? strlen(h) / 2 : 0;
    char *o = malloc(l + 1);
    for (size_t i = 0; i < l; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        o[i] = (char)v;
    }
    o[l] = 0;
    if (n) *n = l;
    return o;
}

static char *next_line(FILE *f) {
    static char *line;
    static size_t cap;
    ssize_t r = getline(&line, &cap, f);
    if (r < 0) {
        free(line);
        line = NULL;
        cap = 0;
        return NULL;
    }
    if (r && line[r - 1] == '\n') line[r - 1] = 0;
    return line;
}

static void golden_cases(const loom_tokenizer *t) {
    char path[1024], err[512];
    FILE *f = fopen(src_path("tests/model/data/spm/llama-spm.golden.txt", path, sizeof path), "r");
    CHECK_MSG(f != NULL, "cannot open %s", path);
    if (!f) return;
    size_t n_cases = 0, n_same = 0;
    char *l, name[128] = "";
    char *text = NULL;
    size_t text_n = 0;
    while ((l = next_line(f))) {
        if (!strncmp(l, "case ", 5)) {
            char *p = l + 5, *sp = strchr(p, ' ');
            *sp = 0;
            snprintf(name, sizeof name, "%s", p);
            p = sp + 1;
            sp = strchr(p, ' ');
            if (sp) *sp = 0;
            free(text);
            text = unhex(p, &text_n);
            int32_t want[8192];
            size_t nw = 0;
            for (p = sp ? sp + 1 : NULL; p && *p && nw < 8192;) {
                want[nw++] = (int32_t)strtol(p, &p, 10);
                while (*p == ' ')
                    p++;
            }
            int32_t *ids = NULL;
            size_t n = 0;
            loom_status st = loom_tokenizer_encode(t, text, text_n, 0, &ids, &n, err, sizeof err);
            bool same = st == LOOM_OK && n == nw && (!n || !memcmp(ids, want, n * sizeof *ids));
            n_cases++;
            n_same += same;
            if (!same) {
                fprintf(stderr, "case %s: loom %zu ids, HF %zu:\n  loom", name, n, nw);
                for (size_t i = 0; i < n && i < 40; i++)
                    fprintf(stderr, " %d", ids[i]);
                fprintf(stderr, "\n  HF  ");
                for (size_t i = 0; i < nw && i < 40; i++)
                    fprintf(stderr, " %d", want[i]);
                fprintf(stderr, "\n");
            }
            CHECK_MSG(same, "case %s differs from Hugging Face", name);
            /* decode: the text back; a leading space is the "▁" prefix
             * (Hugging Face's decoder strips it), special tokens as text */
            char *dec = NULL;
            size_t dn = 0;
            if (st == LOOM_OK &&
                loom_tokenizer_decode(t, ids, n, 0, &dec, &dn, err, sizeof err) == LOOM_OK) {
                bool back = (dn == text_n && !memcmp(dec, text, dn)) ||
                            (dn == text_n + 1 && dec[0] == ' ' && !memcmp(dec + 1, text, text_n));
                /* U+2581 in the text comes back as a space, as in Hugging Face */
                bool meta = strstr(text, "\xe2\x96\x81") != NULL;
                CHECK_MSG(back || meta, "case %s: decode(encode(x)) != x", name);
            }
            free(dec);
            free(ids);
        }
    }
    free(text);
    fclose(f);
    printf("spm: %zu cases, %zu identical to Hugging Face\n", n_cases, n_same);
    CHECK(n_cases >= 100);
}

/* Corrupted copies of the file (bytes flipped in the token arrays, the
 * types, the scores region): loading must fail cleanly or succeed, never
 * crash (ASan/UBSan builds check the memory side). */
static void corrupted_loads(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *orig = malloc((size_t)n), *buf = malloc((size_t)n);
    CHECK(orig && buf && fread(orig, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    uint64_t s = 0x243f6a8885a308d3ull;
    int ok = 0, refused = 0;
    for (int it = 0; it < 60 && orig && buf; it++) {
        memcpy(buf, orig, (size_t)n);
        for (int k = 0; k < 1 + it % 8; k++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            size_t at = (size_t)(s % (uint64_t)n);
            buf[at] = it % 3 == 0 ? 0xff : (unsigned char)(s >> 40);
        }
        loom_gguf *g = NULL;
        loom_tokenizer *t = NULL;
        char err[512] = "";
        if (loom_gguf_open_memory(buf, (size_t)n, &g, err, sizeof err) == LOOM_OK &&
            loom_tokenizer_load_gguf(g, &t, err, sizeof err) == LOOM_OK) {
            int32_t *ids = NULL;
            size_t m = 0;
            loom_tokenizer_encode(t, "Hello, w\xc3\xb6rld \xe6\x97\xa5", 16, 0, &ids, &m, err,
                                  sizeof err);
            free(ids);
            ok++;
        } else {
            CHECK(err[0] != 0); /* a refusal says why */
            refused++;
        }
        loom_tokenizer_free(t);
        loom_gguf_close(g);
    }
    printf("spm: corrupted files: %d loaded, %d refused with a message\n", ok, refused);
    free(orig);
    free(buf);
}

int main(void) {
    char path[1024], err[512] = "";
    const char *p = src_path("tests/model/data/spm/llama-spm.vocab.gguf", path, sizeof path);
    loom_gguf *g = NULL;
    loom_tokenizer *t = NULL;
    CHECK_MSG(loom_gguf_open(p, &g, err, sizeof err) == LOOM_OK, "%s", err);
    if (g) {
        loom_status st = loom_tokenizer_load_gguf(g, &t, err, sizeof err);
        CHECK_MSG(st == LOOM_OK, "load: %s", err);
    }
    if (t) {
        CHECK(loom_tokenizer_vocab_size(t) == 32000);
        CHECK(loom_tokenizer_bos(t) == 1 && loom_tokenizer_eos(t) == 2);
        CHECK(loom_tokenizer_add_bos(t));
        CHECK(loom_tokenizer_token_type(t, 3 + 0x41) == LOOM_TOKEN_BYTE);
        const char *b;
        size_t bl;
        CHECK(loom_tokenizer_piece(t, 3 + 0x0a, &b, &bl) == LOOM_OK && bl == 1 && b[0] == '\n');
        golden_cases(t);
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK(loom_tokenizer_encode(t, "Hi", 2, LOOM_TOK_ADD_BOS, &ids, &n, err, sizeof err) ==
              LOOM_OK);
        CHECK(n >= 2 && ids[0] == 1);
        free(ids);
        /* special-token text as plain text */
        CHECK(loom_tokenizer_encode(t, "<s>", 3, LOOM_TOK_NO_SPECIAL, &ids, &n, err, sizeof err) ==
              LOOM_OK);
        CHECK(n >= 2 && ids[0] != 1);
        free(ids);
        loom_gguf_writer *w = NULL;
        CHECK(loom_gguf_writer_new(&w) == LOOM_OK);
        CHECK(loom_tokenizer_write_gguf(t, w, err, sizeof err) == LOOM_ERR_UNSUPPORTED);
        CHECK(strstr(err, "SentencePiece") != NULL);
        loom_gguf_writer_free(w);
    }
    loom_tokenizer_free(t);
    loom_gguf_close(g);
    corrupted_loads(p);
    return test_summary("test_tokenizer_spm");
}
