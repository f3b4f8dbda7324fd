/* tests/model/test_generate.c - the generation loop and the model file:
 *  - the Llama-3 tokenizer survives GGUF (tokenizer.ggml.*): same ids,
 *    pieces, special ids and encodings as from tokenizer.json;
 *  - loom_model_write_random_gguf is deterministic;
 *  - greedy generation is deterministic, streaming text == returned text,
 *    a stop string cuts the text exactly before its first occurrence, EOS
 *    stops, and batched multi-sequence generation equals one-by-one;
 *  - a seeded sampled run repeats exactly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loom/generate.h"
#include "loom/gguf.h"
#include "loom/loom.h"
#include "loom/model.h"
#include "testing.h"

static loom_tokenizer *load_json(void) {
    const char *src = getenv("LOOM_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/model/data/llama3-tokenizer/tokenizer.json", src ? src : ".");
    loom_tokenizer *t = NULL;
    char err[512];
    loom_status st = loom_tokenizer_load_hf_json(path, &t, err, sizeof err);
    CHECK_MSG(st == LOOM_OK, "%s", err);
    return t;
}

static void test_tokenizer_gguf(const loom_tokenizer *ref) {
    loom_gguf_writer *w = NULL;
    char err[512];
    CHECK(loom_gguf_writer_new(&w) == LOOM_OK);
    CHECK_MSG(loom_tokenizer_write_gguf(ref, w, err, sizeof err) == LOOM_OK, "%s", err);
    void *buf = NULL;
    size_t n = 0;
    CHECK(loom_gguf_writer_write_memory(w, &buf, &n) == LOOM_OK);
    loom_gguf_writer_free(w);
    loom_gguf *g = NULL;
    CHECK(loom_gguf_open_memory(buf, n, &g, err, sizeof err) == LOOM_OK);
    loom_tokenizer *t = NULL;
    CHECK_MSG(loom_tokenizer_load_gguf(g, &t, err, sizeof err) == LOOM_OK, "%s", err);
    if (t) {
        CHECK(loom_tokenizer_vocab_size(t) == loom_tokenizer_vocab_size(ref));
        CHECK(loom_tokenizer_bos(t) == 128000 && loom_tokenizer_eos(t) == 128001 &&
              loom_tokenizer_eot(t) == 128009);
        size_t bad = 0;
        for (size_t id = 0; id < loom_tokenizer_vocab_size(ref); id++) {
            const char *a, *b;
            size_t la, lb;
            if (loom_tokenizer_piece(ref, (int32_t)id, &a, &la) != LOOM_OK ||
                loom_tokenizer_piece(t, (int32_t)id, &b, &lb) != LOOM_OK || la != lb ||
                memcmp(a, b, la) != 0 ||
                loom_tokenizer_token_type(ref, (int32_t)id) !=
                    loom_tokenizer_token_type(t, (int32_t)id))
                bad++;
        }
        CHECK_MSG(bad == 0, "%zu tokens differ after the GGUF round trip", bad);
        static const char *const texts[] = {
            "Hello, world! The quick brown fox jumps over 1234567 lazy dogs.",
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
            "日本語のテキスト and émojis 🎉🎉   with   spaces\n\n\tand tabs",
            "def f(x):\n    return x ** 2  # code\n"};
        for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
            int32_t *a = NULL, *b = NULL;
            size_t na = 0, nb = 0;
            CHECK(loom_tokenizer_encode(ref, texts[i], strlen(texts[i]), 0, &a, &na, err,
                                        sizeof err) == LOOM_OK);
            CHECK(loom_tokenizer_encode(t, texts[i], strlen(texts[i]), 0, &b, &nb, err,
                                        sizeof err) == LOOM_OK);
            CHECK_MSG(na == nb && a && b && memcmp(a, b, na * sizeof *a) == 0, "text %zu", i);
            free(a);
            free(b);
        }
    }
    loom_tokenizer_free(t);
    loom_gguf_close(g);
    free(buf);
}

/* A byte-level tokenizer with 256 byte tokens, a few merges and the three
 * Llama-3 specials: real text handling with a tiny vocabulary, so the
 * generation tests stay fast (also under ASan). */
static loom_tokenizer *byte_tokenizer(void) {
    static char strs[262][8];
    const char *tokens[262];
    int32_t types[262];
    int n = 0, k = 0;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        unsigned cp = keep ? (unsigned)b : 256u + (unsigned)k++;
        if (cp < 0x80) {
            strs[b][0] = (char)cp;
            strs[b][1] = 0;
        } else {
            strs[b][0] = (char)(0xc0 | (cp >> 6));
            strs[b][1] = (char)(0x80 | (cp & 0x3f));
            strs[b][2] = 0;
        }
        tokens[b] = strs[b];
        types[b] = LOOM_TOKEN_NORMAL;
    }
    n = 256;
    /* merges "t h" -> "th", "th e" -> "the" */
    snprintf(strs[n], sizeof strs[n], "th");
    snprintf(strs[n + 1], sizeof strs[n + 1], "the");
    tokens[n] = strs[n];
    tokens[n + 1] = strs[n + 1];
    types[n] = types[n + 1] = LOOM_TOKEN_NORMAL;
    n += 2;
    static const char *const specials[3] = {"<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"};
    for (int i = 0; i < 3; i++) {
        tokens[n] = specials[i];
        types[n++] = LOOM_TOKEN_CONTROL;
    }
    const char *merges[2] = {"t h", "th e"};
    loom_tokenizer *t = NULL;
    char err[256];
    CHECK_MSG(loom_tokenizer_from_vocab(tokens, (size_t)n, merges, 2, types, NULL, true, &t, err,
                                        sizeof err) == LOOM_OK,
              "%s", err);
    return t;
}

typedef struct stream {
    char buf[8192];
    size_t n;
    int calls;
} stream;

static bool on_token(void *ud, int32_t tok, const char *text, size_t len) {
    (void)tok;
    stream *s = ud;
    if (s->n + len < sizeof s->buf) {
        memcpy(s->buf + s->n, text, len);
        s->n += len;
        s->buf[s->n] = 0;
    }
    s->calls++;
    return true;
}

static loom_model *load(const char *path, int slots) {
    loom_model_params p = loom_model_default_params();
    p.backend = "cpu";
    p.n_ctx = 128;
    p.n_slots = slots;
    loom_model *m = NULL;
    char err[512];
    CHECK_MSG(loom_model_load_gguf(path, &p, &m, err, sizeof err) == LOOM_OK, "%s", err);
    return m;
}

/* A small model over tok's vocabulary. */
static loom_model_config small_config(const loom_tokenizer *tok) {
    loom_model_config c;
    char err[256];
    loom_model_config_preset("tiny-moe", &c, err, sizeof err);
    c.dim = 64;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 16;
    c.ffn_dim = 96;
    c.expert_ffn_dim = 64;
    c.n_experts = 4;
    c.rope = loom_rope_params_llama3(16);
    c.rope.mode = LOOM_ROPE_NORMAL;
    c.vocab_size = (int64_t)loom_tokenizer_vocab_size(tok);
    c.bos_id = loom_tokenizer_bos(tok);
    c.eos_id = loom_tokenizer_eos(tok);
    c.eot_id = loom_tokenizer_eot(tok);
    return c;
}

static void test_generation(const loom_tokenizer *tok, const char *path) {
    loom_model_config c = small_config(tok);
    char err[512];
    CHECK_MSG(loom_model_write_random_gguf(&c, LOOM_Q8_0, 5, tok, path, err, sizeof err) == LOOM_OK,
              "%s", err);
    loom_model *m = load(path, 3);
    if (!m) return;
    CHECK(loom_model_random_weights(m) && loom_model_tokenizer(m));
    loom_generate_params gp = loom_generate_default_params();
    gp.sampling.temperature = 0.0f;
    gp.n_predict = 24;
    gp.ignore_eos = true;
    const char *prompt = "The capital of France is";
    char *t1 = NULL, *t2 = NULL;
    loom_generate_stats s;
    stream st = {0};
    gp.on_token = on_token;
    gp.ud = &st;
    CHECK_MSG(loom_generate(m, prompt, &gp, &t1, &s, err, sizeof err) == LOOM_OK, "%s", err);
    int32_t *pids = NULL;
    size_t n_pids = 0;
    CHECK(loom_tokenizer_encode(tok, prompt, strlen(prompt), 0, &pids, &n_pids, err, sizeof err) ==
          LOOM_OK);
    free(pids);
    CHECK(s.n_gen == 24 && s.n_prompt == (int64_t)n_pids + 1 && s.stop == LOOM_STOP_LENGTH);
    CHECK(t1 && strcmp(st.buf, t1) == 0 && st.calls > 0);
    gp.on_token = NULL;
    CHECK(loom_generate(m, prompt, &gp, &t2, &s, err, sizeof err) == LOOM_OK);
    CHECK(t1 && t2 && strcmp(t1, t2) == 0);
    printf("greedy: \"%s\"\n", t1 ? t1 : "(null)");

    /* Stop string: a piece of the middle of the greedy text. */
    size_t len = t1 ? strlen(t1) : 0;
    if (len >= 12) {
        char stop[5];
        memcpy(stop, t1 + len / 2, 4);
        stop[4] = 0;
        const char *stops[2] = {"\x01never", stop};
        gp.stop = stops;
        gp.n_stop = 2;
        memset(&st, 0, sizeof st);
        gp.on_token = on_token;
        char *t3 = NULL;
        CHECK(loom_generate(m, prompt, &gp, &t3, &s, err, sizeof err) == LOOM_OK);
        const char *first = strstr(t1, stop);
        CHECK(t3 && first && strlen(t3) == (size_t)(first - t1) &&
              strncmp(t3, t1, strlen(t3)) == 0);
        CHECK(s.stop == LOOM_STOP_STRING && strcmp(st.buf, t3 ? t3 : "") == 0);
        free(t3);
        gp.stop = NULL;
        gp.n_stop = 0;
        gp.on_token = NULL;
    }

    /* Several sequences in one batched forward == one by one. */
    const char *prompts[3] = {"Hello", "Once upon a time there was", prompt};
    char *texts[3] = {NULL, NULL, NULL};
    gp.n_predict = 10;
    CHECK_MSG(loom_generate_batch(m, prompts, 3, &gp, texts, &s, err, sizeof err) == LOOM_OK, "%s",
              err);
    for (int i = 0; i < 3; i++) {
        char *one = NULL;
        CHECK(loom_generate(m, prompts[i], &gp, &one, NULL, err, sizeof err) == LOOM_OK);
        CHECK_MSG(one && texts[i] && strcmp(one, texts[i]) == 0, "sequence %d: '%s' vs '%s'", i,
                  one ? one : "", texts[i] ? texts[i] : "");
        free(one);
        free(texts[i]);
    }

    /* Seeded sampling repeats; another seed differs. */
    gp.sampling = loom_sampler_default_params();
    gp.sampling.temperature = 1.0f;
    gp.sampling.top_k = 0;
    gp.sampling.top_p = 1.0f;
    gp.sampling.min_p = 0.0f;
    gp.sampling.seed = 11;
    gp.n_predict = 16;
    char *a = NULL, *b = NULL, *d = NULL;
    CHECK(loom_generate(m, prompt, &gp, &a, NULL, err, sizeof err) == LOOM_OK);
    CHECK(loom_generate(m, prompt, &gp, &b, NULL, err, sizeof err) == LOOM_OK);
    gp.sampling.seed = 12;
    CHECK(loom_generate(m, prompt, &gp, &d, NULL, err, sizeof err) == LOOM_OK);
    CHECK(a && b && d && strcmp(a, b) == 0 && strcmp(a, d) != 0);
    free(a);
    free(b);
    free(d);
    free(t1);
    free(t2);
    loom_model_free(m);
}

/* EOS: a model whose eos id is its own greedy first token stops at once. */
static void test_eos(const char *path) {
    loom_model_config c;
    char err[512];
    loom_model_config_preset("tiny-dense", &c, err, sizeof err);
    c.vocab_size = 64;
    c.dim = 32;
    c.n_layers = 1;
    c.n_heads = 2;
    c.n_kv_heads = 1;
    c.head_dim = 16;
    c.ffn_dim = 32;
    c.rope = loom_rope_params_llama3(16);
    c.bos_id = c.eos_id = c.eot_id = -1;
    CHECK(loom_model_write_random_gguf(&c, LOOM_F32, 3, NULL, path, err, sizeof err) == LOOM_OK);
    loom_model *m = load(path, 1);
    if (!m) return;
    loom_generate_params gp = loom_generate_default_params();
    gp.sampling.temperature = 0.0f;
    gp.n_predict = 5;
    const int32_t prompt[3] = {1, 2, 3};
    int32_t *out = NULL;
    size_t n = 0;
    loom_generate_stats s;
    char *text = NULL;
    CHECK(loom_generate_tokens(m, prompt, 3, &gp, &out, &n, &text, &s, err, sizeof err) == LOOM_OK);
    CHECK(n == 5 && s.stop == LOOM_STOP_LENGTH && text && text[0] == 0);
    int32_t first = out ? out[0] : 0;
    free(out);
    free(text);
    loom_model_free(m);
    c.eos_id = first;
    CHECK(loom_model_write_random_gguf(&c, LOOM_F32, 3, NULL, path, err, sizeof err) == LOOM_OK);
    m = load(path, 1);
    if (!m) return;
    out = NULL;
    CHECK(loom_generate_tokens(m, prompt, 3, &gp, &out, &n, NULL, &s, err, sizeof err) == LOOM_OK);
    CHECK(n == 1 && out && out[0] == first && s.stop == LOOM_STOP_EOS);
    free(out);
    loom_model_free(m);
}

static void test_deterministic_file(const char *path) {
    loom_model_config c;
    char err[512];
    loom_model_config_preset("tiny-dense", &c, err, sizeof err);
    c.vocab_size = 64;
    c.dim = 32;
    c.n_layers = 1;
    c.n_heads = 2;
    c.n_kv_heads = 1;
    c.head_dim = 16;
    c.ffn_dim = 32;
    c.rope = loom_rope_params_llama3(16);
    c.bos_id = c.eos_id = c.eot_id = -1;
    void *bufs[2] = {NULL, NULL};
    size_t ns[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        CHECK(loom_model_write_random_gguf(&c, LOOM_Q8_0, 9, NULL, path, err, sizeof err) ==
              LOOM_OK);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        fseek(f, 0, SEEK_END);
        ns[i] = (size_t)ftell(f);
        fseek(f, 0, SEEK_SET);
        bufs[i] = malloc(ns[i]);
        if (bufs[i] && fread(bufs[i], 1, ns[i], f) != ns[i]) ns[i] = 0;
        fclose(f);
    }
    CHECK(ns[0] > 0 && ns[0] == ns[1] && bufs[0] && bufs[1] && !memcmp(bufs[0], bufs[1], ns[0]));
    free(bufs[0]);
    free(bufs[1]);
}

int main(void) {
    CHECK(loom_registry_init() == LOOM_OK);
    char path[64];
    snprintf(path, sizeof path, "/tmp/loom_test_generate_%d.gguf", (int)getpid());
    loom_tokenizer *tok = load_json();
    if (tok) test_tokenizer_gguf(tok);
    loom_tokenizer_free(tok);
    tok = byte_tokenizer();
    if (tok) test_generation(tok, path);
    test_eos(path);
    test_deterministic_file(path);
    loom_tokenizer_free(tok);
    unlink(path);
    loom_registry_shutdown();
    return test_summary("test_generate");
}
