/* tests/model/test_tokenizer_real.c - tokenizers shaped like real files
 * (issue 16), against Hugging Face `tokenizers`.
 *
 * tests/model/data/tokenizer_real/ holds, per GGUF pre-tokenizer name
 * (llama-bpe, gpt2, smollm), a small trained byte-level vocabulary that lacks
 * some of the 256 byte tokens (as SmolLM2's does), its tokenizer.json and
 * HF's ids for a corpus of CRLF code, digit runs, whitespace and text with
 * the missing bytes (scripts/gen_tokenizer_golden.py --only synthetic).
 * Each is loaded from tokenizer.json and from a GGUF written here with only
 * the keys llama.cpp's converter writes (tokenizer.ggml.pre = the name, no
 * loom.* keys); both must give HF's ids and decoded text. Unknown
 * tokenizer.ggml.pre values are refused by name. BOS follows the file's
 * metadata (tokenizer.ggml.add_bos_token / bos_token_id, llama.cpp's
 * defaults without them), and a model whose tokenizer has no Llama-3 BOS
 * generates. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "loom/generate.h"
#include "loom/gguf.h"
#include "loom/model.h"
#include "loom/tokenizer.h"
#include "testing.h"

typedef struct {
    char name[64];
    char *text;
    size_t text_n;
    int32_t *ids;
    size_t n_ids;
    char *dec;
    size_t dec_n;
} tcase;

typedef struct {
    char pre[32];
    int ignore_merges;
    size_t n_tokens, n_merges, n_cases;
    char **tokens;
    char **merges; /* "left right" */
    tcase cases[64];
} golden;

static char *unhex(const char *h, size_t *n) {
    size_t l = strcmp(h, "-") == 0 ? 0 : strlen(h) / 2;
    char *o = malloc(l + 1);
    for (size_t i = 0; i < l; i++) {
        unsigned v = 0;
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

static const char *src_path(const char *rel, char *buf, size_t n) {
    const char *s = getenv("LOOM_SOURCE_DIR");
    snprintf(buf, n, "%s/%s", s ? s : ".", rel);
    return buf;
}

static bool read_golden(const char *pre, golden *g) {
    memset(g, 0, sizeof *g);
    char rel[256], path[1024];
    snprintf(rel, sizeof rel, "tests/model/data/tokenizer_real/%s.golden.txt", pre);
    FILE *f = fopen(src_path(rel, path, sizeof path), "r");
    CHECK_MSG(f != NULL, "cannot open %s", path);
    if (!f) return false;
    char *l;
    while ((l = next_line(f))) {
        if (l[0] == '#') continue;
        if (!strncmp(l, "pre ", 4)) snprintf(g->pre, sizeof g->pre, "%s", l + 4);
        if (!strncmp(l, "ignore_merges ", 14)) g->ignore_merges = atoi(l + 14);
        if (!strncmp(l, "tokens ", 7)) {
            g->n_tokens = (size_t)atol(l + 7);
            g->tokens = calloc(g->n_tokens, sizeof *g->tokens);
            for (size_t i = 0; i < g->n_tokens && (l = next_line(f)); i++)
                g->tokens[i] = unhex(l, NULL);
        } else if (!strncmp(l, "merges ", 7)) {
            g->n_merges = (size_t)atol(l + 7);
            g->merges = calloc(g->n_merges, sizeof *g->merges);
            for (size_t i = 0; i < g->n_merges && (l = next_line(f)); i++) {
                char *sp = strchr(l, ' ');
                *sp = 0;
                char *a = unhex(l, NULL), *b = unhex(sp + 1, NULL);
                size_t n = strlen(a) + strlen(b) + 2;
                g->merges[i] = malloc(n);
                snprintf(g->merges[i], n, "%s %s", a, b);
                free(a);
                free(b);
            }
        } else if (!strncmp(l, "case ", 5) && g->n_cases < 64) {
            tcase *c = &g->cases[g->n_cases++];
            char *p = l + 5, *sp = strchr(p, ' ');
            *sp = 0;
            snprintf(c->name, sizeof c->name, "%s", p);
            p = sp + 1;
            sp = strchr(p, ' ');
            if (sp) *sp = 0;
            c->text = unhex(p, &c->text_n);
            c->ids = malloc(4096 * sizeof(int32_t));
            for (p = sp ? sp + 1 : NULL; p && *p && c->n_ids < 4096;) {
                char *e;
                c->ids[c->n_ids++] = (int32_t)strtol(p, &e, 10);
                p = e;
                while (*p == ' ')
                    p++;
            }
        } else if (!strncmp(l, "decoded ", 8) && g->n_cases) {
            tcase *c = &g->cases[g->n_cases - 1];
            c->dec = unhex(l + 8, &c->dec_n);
        }
    }
    fclose(f);
    CHECK(!strcmp(g->pre, pre) && g->n_tokens > 300 && g->n_merges > 100 && g->n_cases > 10);
    return true;
}

static void free_golden(golden *g) {
    for (size_t i = 0; i < g->n_tokens; i++)
        free(g->tokens[i]);
    for (size_t i = 0; i < g->n_merges; i++)
        free(g->merges[i]);
    for (size_t i = 0; i < g->n_cases; i++) {
        free(g->cases[i].text);
        free(g->cases[i].ids);
        free(g->cases[i].dec);
    }
    free(g->tokens);
    free(g->merges);
}

/* The tokenizer.ggml.* keys llama.cpp's convert_hf_to_gguf.py writes for a
 * byte-level BPE, with the given pre value (NULL: key absent). The last three
 * tokens are the specials. */
static loom_status gguf_bos(const golden *g, const char *pre, int bos, int add_bos, void **buf,
                            size_t *n) {
    loom_gguf_writer *w = NULL;
    LOOM_TRY(loom_gguf_writer_new(&w));
    int32_t *types = malloc(g->n_tokens * sizeof *types);
    for (size_t i = 0; i < g->n_tokens; i++)
        types[i] = i + 3 >= g->n_tokens ? LOOM_TOKEN_CONTROL : LOOM_TOKEN_NORMAL;
    loom_status st = loom_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    if (st == LOOM_OK && pre) st = loom_gguf_writer_set_str(w, "tokenizer.ggml.pre", pre);
    if (st == LOOM_OK)
        st = loom_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens",
                                          (const char *const *)g->tokens, g->n_tokens);
    if (st == LOOM_OK)
        st = loom_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", LOOM_GGUF_I32, types,
                                      g->n_tokens);
    if (st == LOOM_OK)
        st = loom_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges",
                                          (const char *const *)g->merges, g->n_merges);
    if (st == LOOM_OK && bos >= 0)
        st = loom_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
    if (st == LOOM_OK && add_bos >= 0)
        st = loom_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", add_bos != 0);
    if (st == LOOM_OK) st = loom_gguf_writer_write_memory(w, buf, n);
    loom_gguf_writer_free(w);
    free(types);
    return st;
}

static loom_status gguf_of(const golden *g, const char *pre, void **buf, size_t *n) {
    return gguf_bos(g, pre, -1, -1, buf, n);
}

static void check_cases(const loom_tokenizer *t, const golden *g, const char *how) {
    char err[512];
    for (size_t i = 0; i < g->n_cases; i++) {
        const tcase *c = &g->cases[i];
        int32_t *ids = NULL;
        size_t n = 0;
        loom_status st = loom_tokenizer_encode(t, c->text, c->text_n, 0, &ids, &n, err, sizeof err);
        CHECK_MSG(st == LOOM_OK, "%s %s %s: %s", g->pre, how, c->name, err);
        bool same = st == LOOM_OK && n == c->n_ids && !memcmp(ids, c->ids, n * sizeof *ids);
        CHECK_MSG(same, "%s %s %s: ids differ from HF (%zu vs %zu ids)", g->pre, how, c->name, n,
                  c->n_ids);
        if (!same && st == LOOM_OK) {
            fprintf(stderr, "  loom:");
            for (size_t k = 0; k < n; k++)
                fprintf(stderr, " %d", ids[k]);
            fprintf(stderr, "\n  hf:  ");
            for (size_t k = 0; k < c->n_ids; k++)
                fprintf(stderr, " %d", c->ids[k]);
            fprintf(stderr, "\n");
        }
        char *d = NULL;
        size_t dn = 0;
        if (st == LOOM_OK &&
            loom_tokenizer_decode(t, c->ids, c->n_ids, 0, &d, &dn, err, sizeof err) == LOOM_OK)
            CHECK_MSG(dn == c->dec_n && !memcmp(d, c->dec, dn), "%s %s %s: decoded text differs",
                      g->pre, how, c->name);
        free(d);
        free(ids);
    }
}

static void test_variant(const char *pre) {
    golden g;
    if (!read_golden(pre, &g)) return;
    char err[512], rel[256], path[1024];
    loom_tokenizer *t = NULL;

    snprintf(rel, sizeof rel, "tests/model/data/tokenizer_real/%s.tokenizer.json", pre);
    loom_status st =
        loom_tokenizer_load_hf_json(src_path(rel, path, sizeof path), &t, err, sizeof err);
    CHECK_MSG(st == LOOM_OK, "%s tokenizer.json: %s", pre, err);
    if (t) check_cases(t, &g, "tokenizer.json");
    loom_tokenizer_free(t);
    t = NULL;

    void *buf = NULL;
    size_t n = 0;
    CHECK(gguf_of(&g, pre, &buf, &n) == LOOM_OK);
    loom_gguf *f = NULL;
    CHECK(loom_gguf_open_memory(buf, n, &f, err, sizeof err) == LOOM_OK);
    st = f ? loom_tokenizer_load_gguf(f, &t, err, sizeof err) : LOOM_ERR_IO;
    CHECK_MSG(st == LOOM_OK, "%s GGUF: %s", pre, err);
    if (t) check_cases(t, &g, "GGUF");
    loom_tokenizer_free(t);
    loom_gguf_close(f);
    free(buf);
    free_golden(&g);
}

/* tokenizer.ggml.pre values loom does not know are refused, naming the value. */
static void test_unknown_pre(void) {
    golden g;
    if (!read_golden("gpt2", &g)) return;
    static const char *const bad[] = {"qwen2-unknown", "falcon", "deepseek-coder", ""};
    for (int i = 0; i < 4; i++) {
        void *buf = NULL;
        size_t n = 0;
        char err[512] = "";
        CHECK(gguf_of(&g, bad[i], &buf, &n) == LOOM_OK);
        loom_gguf *f = NULL;
        CHECK(loom_gguf_open_memory(buf, n, &f, err, sizeof err) == LOOM_OK);
        loom_tokenizer *t = NULL;
        loom_status st = f ? loom_tokenizer_load_gguf(f, &t, err, sizeof err) : LOOM_ERR_IO;
        char want[64];
        snprintf(want, sizeof want, "'%s'", bad[i]);
        CHECK_MSG(st == LOOM_ERR_UNSUPPORTED && t == NULL, "pre '%s': status %d", bad[i], st);
        CHECK_MSG(strstr(err, "tokenizer.ggml.pre") && strstr(err, want), "pre '%s': %s", bad[i],
                  err);
        loom_tokenizer_free(t);
        loom_gguf_close(f);
        free(buf);
    }
    free_golden(&g);
}

/* GGUF bos/add_bos keys -> the tokenizer's BOS id and add_bos (want_st:
 * the load status). Returns the tokenizer when loaded. */
static loom_tokenizer *load_bos(const golden *g, const char *pre, int bos, int add_bos,
                                loom_status want_st, int32_t want_bos, bool want_add) {
    void *buf = NULL;
    size_t n = 0;
    char err[512] = "";
    CHECK(gguf_bos(g, pre, bos, add_bos, &buf, &n) == LOOM_OK);
    loom_gguf *f = NULL;
    CHECK(loom_gguf_open_memory(buf, n, &f, err, sizeof err) == LOOM_OK);
    loom_tokenizer *t = NULL;
    loom_status st = f ? loom_tokenizer_load_gguf(f, &t, err, sizeof err) : LOOM_ERR_IO;
    CHECK_MSG(st == want_st, "%s bos %d add %d: status %d (%s)", pre, bos, add_bos, st, err);
    if (st != LOOM_OK) CHECK_MSG(strstr(err, "add_bos_token") != NULL, "%s", err);
    if (t) {
        CHECK_MSG(loom_tokenizer_bos(t) == want_bos && loom_tokenizer_add_bos(t) == want_add,
                  "%s bos %d add %d: got bos %d add %d", pre, bos, add_bos, loom_tokenizer_bos(t),
                  loom_tokenizer_add_bos(t));
    }
    loom_gguf_close(f);
    free(buf);
    return t;
}

/* issue 16: "loom run" failed for any tokenizer without <|begin_of_text|>
 * (LOOM_TOK_ADD_BOS but the tokenizer has no BOS token). */
static void test_bos(void) {
    golden g;
    if (!read_golden("smollm", &g)) return;
    const int32_t im_start = (int32_t)g.n_tokens - 2;
    /* no BOS keys; smollm: llama.cpp adds no BOS */
    loom_tokenizer *t = load_bos(&g, "smollm", -1, -1, LOOM_OK, -1, false);
    loom_tokenizer_free(t);
    /* SmolLM2's GGUF: a BOS id, add_bos_token false */
    t = load_bos(&g, "smollm", im_start, 0, LOOM_OK, im_start, false);
    loom_tokenizer_free(t);
    t = load_bos(&g, "smollm", im_start, -1, LOOM_OK, im_start, false);
    loom_tokenizer_free(t);
    /* add_bos_token true: encode with LOOM_TOK_ADD_BOS starts with that id */
    t = load_bos(&g, "smollm", im_start, 1, LOOM_OK, im_start, true);
    if (t) {
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK(loom_tokenizer_encode(t, "Hi", 2, LOOM_TOK_ADD_BOS, &ids, &n, NULL, 0) == LOOM_OK &&
              n >= 2 && ids[0] == im_start);
        free(ids);
    }
    loom_tokenizer_free(t);
    /* llama-bpe: llama.cpp's default is BOS */
    t = load_bos(&g, "llama-bpe", im_start, -1, LOOM_OK, im_start, true);
    loom_tokenizer_free(t);
    t = load_bos(&g, "llama-bpe", im_start, 0, LOOM_OK, im_start, false);
    loom_tokenizer_free(t);
    /* asking for a BOS the file does not have */
    t = load_bos(&g, "gpt2", -1, 1, LOOM_ERR_FORMAT, -1, false);
    loom_tokenizer_free(t);

    /* generation with a tokenizer that has no BOS at all, and with one whose
     * metadata adds BOS: the prompt then starts with it */
    for (int with_bos = 0; with_bos < 2; with_bos++) {
        t = load_bos(&g, "smollm", with_bos ? im_start : -1, with_bos, LOOM_OK,
                     with_bos ? im_start : -1, with_bos != 0);
        if (!t) continue;
        char err[512] = "", path[256];
        const char *tmp = getenv("TMPDIR");
        snprintf(path, sizeof path, "%s/loom_tok_real_%d_%d.gguf", tmp && tmp[0] ? tmp : "/tmp",
                 (int)getpid(), with_bos);
        loom_model_config c;
        loom_model_config_preset("tiny-dense", &c, err, sizeof err);
        c.dim = 32;
        c.n_layers = 1;
        c.n_heads = 2;
        c.n_kv_heads = 1;
        c.head_dim = 16;
        c.ffn_dim = 64;
        c.rope = loom_rope_params_llama3(16);
        c.vocab_size = (int64_t)loom_tokenizer_vocab_size(t);
        c.bos_id = loom_tokenizer_bos(t);
        c.eos_id = (int32_t)g.n_tokens - 1;
        c.eot_id = -1;
        CHECK_MSG(loom_model_write_random_gguf(&c, LOOM_F32, 3, t, path, err, sizeof err) ==
                      LOOM_OK,
                  "%s", err);
        loom_tokenizer_free(t);
        loom_model_params p = loom_model_default_params();
        p.backend = "cpu";
        p.n_ctx = 64;
        loom_model *m = NULL;
        CHECK_MSG(loom_model_load_gguf(path, &p, &m, err, sizeof err) == LOOM_OK, "%s", err);
        if (m) {
            const loom_tokenizer *mt = loom_model_tokenizer(m);
            CHECK(mt && loom_tokenizer_add_bos(mt) == (with_bos != 0));
            loom_generate_params gp = loom_generate_default_params();
            gp.sampling.temperature = 0.0f;
            gp.n_predict = 4;
            gp.ignore_eos = true;
            char *text = NULL;
            loom_generate_stats s;
            loom_status st = loom_generate(m, "Hello 12 world", &gp, &text, &s, err, sizeof err);
            CHECK_MSG(st == LOOM_OK, "generate (BOS %d): %s", with_bos, err);
            int32_t *ids = NULL;
            size_t n = 0;
            CHECK(loom_tokenizer_encode(mt, "Hello 12 world", 14, 0, &ids, &n, NULL, 0) == LOOM_OK);
            CHECK_MSG(st != LOOM_OK || s.n_prompt == (int64_t)n + with_bos,
                      "prompt %lld tokens, text %zu + BOS %d", (long long)s.n_prompt, n, with_bos);
            free(ids);
            free(text);
        }
        loom_model_free(m);
        unlink(path);
    }
    free_golden(&g);
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long l = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)l + 1);
    *n = fread(b, 1, (size_t)l, f);
    b[*n] = 0;
    fclose(f);
    return b;
}

static void spit(const char *path, const char *s) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fputs(s, f);
    fclose(f);
}

/* tokenizer.json + tokenizer_config.json in dir -> BOS id and add_bos. */
static void check_json_bos(const char *dir, const char *tj, const char *cfg, loom_status want_st,
                           int32_t want_bos, bool want_add) {
    char p1[600], p2[600], err[512] = "";
    snprintf(p1, sizeof p1, "%s/tokenizer.json", dir);
    snprintf(p2, sizeof p2, "%s/tokenizer_config.json", dir);
    spit(p1, tj);
    if (cfg)
        spit(p2, cfg);
    else
        unlink(p2);
    loom_tokenizer *t = NULL;
    loom_status st = loom_tokenizer_load_hf_json(p1, &t, err, sizeof err);
    CHECK_MSG(st == want_st, "cfg %s: status %d (%s)", cfg ? cfg : "none", st, err);
    if (t)
        CHECK_MSG(loom_tokenizer_bos(t) == want_bos && loom_tokenizer_add_bos(t) == want_add,
                  "cfg %s: bos %d add %d", cfg ? cfg : "none", loom_tokenizer_bos(t),
                  loom_tokenizer_add_bos(t));
    loom_tokenizer_free(t);
    unlink(p1);
    unlink(p2);
}

/* BOS from Hugging Face metadata: the TemplateProcessing post-processor and
 * tokenizer_config.json (add_bos_token, bos_token). */
static void test_bos_json(void) {
    golden g;
    if (!read_golden("gpt2", &g)) return;
    const int32_t im_start = (int32_t)g.n_tokens - 2;
    free_golden(&g);
    char rel[] = "tests/model/data/tokenizer_real/gpt2.tokenizer.json", path[1024];
    size_t n = 0;
    char *base = slurp(src_path(rel, path, sizeof path), &n);
    CHECK(base && strstr(base, "\"post_processor\": null"));
    if (!base) return;
    const char *tmp = getenv("TMPDIR");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/loom_tok_bos_XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        free(base);
        return;
    }
    check_json_bos(dir, base, NULL, LOOM_OK, -1, false);
    const char *tp = "\"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": "
                     "[{\"SpecialToken\": {\"id\": \"<|im_start|>\", \"type_id\": 0}}, "
                     "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"pair\": [], "
                     "\"special_tokens\": {\"<|im_start|>\": {\"id\": \"<|im_start|>\", "
                     "\"ids\": [0], \"tokens\": [\"<|im_start|>\"]}}}";
    const char *at = strstr(base, "\"post_processor\": null");
    size_t k = (size_t)(at - base), m = strlen("\"post_processor\": null");
    char *with = malloc(n + strlen(tp) + 1);
    snprintf(with, n + strlen(tp) + 1, "%.*s%s%s", (int)k, base, tp, base + k + m);
    check_json_bos(dir, with, NULL, LOOM_OK, im_start, true);
    check_json_bos(dir, with, "{\"add_bos_token\": false}", LOOM_OK, im_start, false);
    check_json_bos(dir, base, "{\"bos_token\": \"<|im_start|>\", \"add_bos_token\": true}", LOOM_OK,
                   im_start, true);
    check_json_bos(dir, base, "{\"bos_token\": {\"content\": \"<|im_start|>\"}}", LOOM_OK, im_start,
                   false);
    check_json_bos(dir, base, "{\"add_bos_token\": true}", LOOM_ERR_FORMAT, -1, false);
    check_json_bos(dir, base, "{\"bos_token\": \"<s>\"}", LOOM_ERR_FORMAT, -1, false);
    free(with);
    free(base);
    rmdir(dir);
}

int main(void) {
    test_variant("llama-bpe");
    test_variant("gpt2");
    test_variant("smollm");
    test_unknown_pre();
    test_bos();
    test_bos_json();
    return test_summary("test_tokenizer_real");
}
