/* tests/model/test_tokenizer_spm_json.c - SentencePiece BPE from a Hugging
 * Face tokenizer.json (byte_fallback BPE; model/tokenizer/tokenizer_json_spm.c)
 * against Hugging Face tokenizers.
 *
 * tokenizer.json is what transformers makes of Llama 2's vocabulary
 * (tests/model/data/spm/llama-spm.tokenizer.json.tar.xz, extracted by CMake
 * into LOOM_SPM_JSON_DIR; scripts/gen_spm_json_golden.py). Its ids must equal
 * llama-spm.golden.txt (Metaspace prepend_scheme "first"); two variants made
 * by replacing one exact substring, as the generator does, must equal
 * llama-spm.json-variants.golden.txt: "legacy" (normalizer
 * Prepend + Replace: every segment gets a "▁") and "always". Layouts loom does
 * not implement are refused by name. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/tokenizer.h"
#include "testing.h"

static const char META[] = "\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"Metaspace\","
                           "\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":\"first\","
                           "\"split\":false}";
static const char LEGACY[] =
    "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":"
    "\"\xe2\x96\x81\"},{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":"
    "\"\xe2\x96\x81\"}]},\"pre_tokenizer\":null";
static const char ALWAYS[] = "\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"Metaspace\","
                             "\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":\"always\","
                             "\"split\":false}";

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long l = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)l + 1);
    if (b && fread(b, 1, (size_t)l, f) != (size_t)l) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[l] = 0;
    if (n) *n = (size_t)l;
    return b;
}

/* text with its one occurrence of from replaced by to, written to path. */
static bool write_variant(const char *text, const char *from, const char *to, const char *path) {
    const char *at = strstr(text, from);
    if (!at || strstr(at + 1, from)) return false;
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    fwrite(text, 1, (size_t)(at - text), f);
    fputs(to, f);
    fputs(at + strlen(from), f);
    return fclose(f) == 0;
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
    *n = l;
    return o;
}

/* Every "case [PREFIX]NAME HEX ids" line of a golden file whose name starts
 * with prefix: loom's ids must be HF's. Returns the number of cases. */
static size_t golden(const loom_tokenizer *t, const char *path, const char *prefix) {
    FILE *f = fopen(path, "r");
    CHECK_MSG(f != NULL, "cannot open %s", path);
    if (!f) return 0;
    char *line = NULL, err[512];
    size_t cap = 0, n_cases = 0, n_same = 0;
    while (getline(&line, &cap, f) > 0) {
        if (strncmp(line, "case ", 5) || strncmp(line + 5, prefix, strlen(prefix))) continue;
        line[strcspn(line, "\n")] = 0;
        char *name = line + 5, *hex = strchr(name, ' ');
        *hex++ = 0;
        char *ids_s = strchr(hex, ' ');
        if (ids_s) *ids_s++ = 0;
        size_t tn = 0;
        char *text = unhex(hex, &tn);
        int32_t want[8192];
        size_t nw = 0;
        for (char *p = ids_s; p && *p && nw < 8192;) {
            want[nw++] = (int32_t)strtol(p, &p, 10);
            while (*p == ' ')
                p++;
        }
        int32_t *ids = NULL;
        size_t n = 0;
        loom_status st = loom_tokenizer_encode(t, text, tn, 0, &ids, &n, err, sizeof err);
        bool same = st == LOOM_OK && n == nw && (!n || !memcmp(ids, want, n * sizeof *ids));
        if (!same) {
            fprintf(stderr, "case %s: loom %zu ids, HF %zu:\n  loom", name, n, nw);
            for (size_t i = 0; i < n && i < 30; i++)
                fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\n  HF  ");
            for (size_t i = 0; i < nw && i < 30; i++)
                fprintf(stderr, " %d", want[i]);
            fprintf(stderr, "\n");
        }
        CHECK_MSG(same, "case %s differs from Hugging Face", name);
        n_cases++;
        n_same += same;
        free(ids);
        free(text);
    }
    free(line);
    fclose(f);
    printf("spm json %s: %zu cases, %zu identical to Hugging Face\n", prefix[0] ? prefix : "first",
           n_cases, n_same);
    return n_cases;
}

static loom_tokenizer *load(const char *path) {
    loom_tokenizer *t = NULL;
    char err[512];
    loom_status st = loom_tokenizer_load_hf_json(path, &t, err, sizeof err);
    CHECK_MSG(st == LOOM_OK, "%s: %s", path, err);
    return t;
}

/* A variant loom must refuse, with words from the message. */
static void refused(const char *text, const char *from, const char *to, const char *path,
                    const char *words) {
    CHECK(write_variant(text, from, to, path));
    loom_tokenizer *t = NULL;
    char err[512] = "";
    loom_status st = loom_tokenizer_load_hf_json(path, &t, err, sizeof err);
    CHECK_MSG(st == LOOM_ERR_UNSUPPORTED && strstr(err, words), "expected refusal '%s', got %d: %s",
              words, (int)st, err);
    loom_tokenizer_free(t);
}

int main(void) {
    const char *src = getenv("LOOM_SOURCE_DIR"), *dir = getenv("LOOM_SPM_JSON_DIR");
    if (!src || !dir) {
        fprintf(stderr, "test_tokenizer_spm_json: set LOOM_SOURCE_DIR and LOOM_SPM_JSON_DIR\n");
        return 1;
    }
    char path[4096], gpath[4096], vpath[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    size_t n = 0;
    char *text = slurp(path, &n);
    CHECK_MSG(text != NULL, "cannot read %s (extracted by CMake at configure time)", path);
    if (!text) return 1;

    loom_tokenizer *t = load(path);
    if (t) {
        snprintf(gpath, sizeof gpath, "%s/tests/model/data/spm/llama-spm.golden.txt", src);
        CHECK(golden(t, gpath, "") >= 100);
        /* BOS from the TemplateProcessing post-processor, as HF adds it */
        int32_t s = -1;
        CHECK(loom_tokenizer_find(t, "<s>", 3, &s) == LOOM_OK && s == 1);
        CHECK(loom_tokenizer_bos(t) == 1 && loom_tokenizer_add_bos(t));
        int32_t *ids = NULL;
        size_t k = 0;
        CHECK(loom_tokenizer_encode(t, "Hi", 2, LOOM_TOK_ADD_BOS, &ids, &k, NULL, 0) == LOOM_OK);
        CHECK(k >= 2 && ids[0] == 1);
        free(ids);
    }
    loom_tokenizer_free(t);

    snprintf(gpath, sizeof gpath, "%s/tests/model/data/spm/llama-spm.json-variants.golden.txt",
             src);
    static const struct {
        const char *name, *repl;
    } V[] = {{"legacy", LEGACY}, {"always", ALWAYS}};
    for (int v = 0; v < 2; v++) {
        snprintf(vpath, sizeof vpath, "%s/tokenizer-%s.json", dir, V[v].name);
        CHECK(write_variant(text, META, V[v].repl, vpath));
        char prefix[32];
        snprintf(prefix, sizeof prefix, "%s:", V[v].name);
        if ((t = load(vpath))) CHECK(golden(t, gpath, prefix) >= 40);
        loom_tokenizer_free(t);
    }

    snprintf(vpath, sizeof vpath, "%s/tokenizer-bad.json", dir);
    refused(text, "\"split\":false", "\"split\":true", vpath, "split = true");
    refused(text, "\"prepend_scheme\":\"first\"", "\"prepend_scheme\":\"sometimes\"", vpath,
            "prepend_scheme \"sometimes\"");
    refused(text, "\"normalizer\":null", "\"normalizer\":{\"type\":\"NFKC\"}", vpath,
            "both a normalizer and a pre_tokenizer");
    refused(text, META, "\"normalizer\":{\"type\":\"NFKC\"},\"pre_tokenizer\":null", vpath,
            "normalizer \"NFKC\"");
    refused(text, "\"dropout\":null", "\"dropout\":0.1", vpath, "dropout");
    free(text);
    return test_summary("test_tokenizer_spm_json");
}
