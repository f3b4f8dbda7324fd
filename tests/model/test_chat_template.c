/* tests/model/test_chat_template.c - loom's chat templates against transformers.
 *
 * tests/model/data/chat_template_golden.txt (scripts/gen_chat_template_golden.py,
 * rendered by transformers' own render_jinja_template) holds real template
 * texts and conversations rendered with them. For each template text, loom
 * must pick the expected template by fingerprint; for each conversation,
 * loom_chat_render must give the same bytes, or refuse where the template
 * raises. Then: unknown texts and names are refused with a clear message, the
 * override by name, and a tokenizer's stored template (GGUF round trip). */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loom/gguf.h"
#include "loom/tokenizer.h"
#include "testing.h"

typedef struct tmpl_rec {
    char name[32];
    char *bos, *eos, *text;
} tmpl_rec;

static char *read_n(FILE *f, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    if (fread(p, 1, n, f) != n) {
        free(p);
        return NULL;
    }
    p[n] = 0;
    return p;
}

/* The loom name a golden template text must be detected as. */
static const char *loom_name(const char *golden) {
    return !strcmp(golden, "llama3-gen") ? "llama3" : golden;
}

static void run_golden(const char *path) {
    FILE *f = fopen(path, "rb");
    CHECK_MSG(f != NULL, "cannot open %s", path);
    if (!f) return;
    tmpl_rec T[16];
    size_t nt = 0, n_cases = 0, n_same = 0;
    char kw[16];
    while (fscanf(f, "%15s", kw) == 1) {
        if (!strcmp(kw, "template")) {
            tmpl_rec *t = &T[nt];
            unsigned long long fp;
            size_t bl, el, tl;
            CHECK(nt < 16 && fscanf(f, " %31s %llx %zu %zu %zu", t->name, &fp, &bl, &el, &tl) == 5);
            fgetc(f);
            t->bos = read_n(f, bl);
            t->eos = read_n(f, el);
            t->text = read_n(f, tl);
            CHECK(t->bos && t->eos && t->text);
            fgetc(f);
            nt++;
            loom_chat_template ct;
            char err[512] = "";
            loom_status st = loom_chat_template_select(NULL, t->text, &ct, err, sizeof err);
            CHECK_MSG(st == LOOM_OK && !strcmp(ct.name, loom_name(t->name)),
                      "template %s not detected: %s", t->name, err);
            continue;
        }
        CHECK(!strcmp(kw, "case"));
        char name[32], res[8];
        int add_gen;
        size_t nm;
        if (fscanf(f, " %31s %d %zu %7s", name, &add_gen, &nm, res) != 4) {
            CHECK(0);
            break;
        }
        fgetc(f);
        loom_chat_message *m = calloc(nm ? nm : 1, sizeof *m);
        char **owned = calloc(2 * nm + 1, sizeof *owned);
        for (size_t i = 0; i < nm; i++) {
            char role[32];
            size_t cl;
            CHECK(fscanf(f, "msg %31s %zu", role, &cl) == 2);
            fgetc(f);
            owned[2 * i] = strdup(role);
            owned[2 * i + 1] = read_n(f, cl);
            fgetc(f);
            m[i].role = owned[2 * i];
            m[i].content = owned[2 * i + 1];
        }
        char *want = NULL;
        if (!strcmp(res, "ok")) {
            size_t wl;
            CHECK(fscanf(f, "expected %zu", &wl) == 1);
            fgetc(f);
            want = read_n(f, wl);
            fgetc(f);
        }
        const tmpl_rec *t = NULL;
        for (size_t k = 0; k < nt; k++)
            if (!strcmp(T[k].name, name)) t = &T[k];
        CHECK(t != NULL);
        loom_chat_template ct;
        char err[512] = "", *out = NULL;
        if (t && loom_chat_template_select(NULL, t->text, &ct, err, sizeof err) == LOOM_OK) {
            loom_status st =
                loom_chat_render(&ct, t->bos, t->eos, m, nm, add_gen != 0, &out, err, sizeof err);
            n_cases++;
            if (want) {
                bool same = st == LOOM_OK && out && !strcmp(out, want);
                n_same += same;
                CHECK_MSG(same, "%s case %zu (add_gen %d): loom %s\n  got  [%s]\n  want [%s]", name,
                          n_cases, add_gen, st == LOOM_OK ? "differs" : err, out ? out : "", want);
            } else {
                CHECK_MSG(st == LOOM_ERR_INVALID_ARG && err[0],
                          "%s case %zu: transformers refuses it, loom rendered [%s]", name, n_cases,
                          out ? out : "");
            }
        }
        free(out);
        free(want);
        for (size_t i = 0; i < 2 * nm; i++)
            free(owned[i]);
        free(owned);
        free(m);
    }
    fclose(f);
    CHECK(nt >= 7 && n_cases >= 200);
    printf("chat templates: %zu texts, %zu conversations, %zu identical renderings\n", nt, n_cases,
           n_same);
    for (size_t k = 0; k < nt; k++) {
        /* one byte changed: no longer the known text, refused with a hint */
        char *mod = strdup(T[k].text);
        mod[strlen(mod) - 1] ^= 1;
        loom_chat_template ct;
        char err[512] = "";
        CHECK(loom_chat_template_select(NULL, mod, &ct, err, sizeof err) == LOOM_ERR_UNSUPPORTED);
        CHECK_MSG(strstr(err, "unknown chat template") && strstr(err, "looks like") &&
                      strstr(err, loom_name(T[k].name)),
                  "%s: %s", T[k].name, err);
        free(mod);
        free(T[k].bos);
        free(T[k].eos);
        free(T[k].text);
    }
}

static void names_and_override(void) {
    loom_chat_template ct;
    char err[512] = "";
    CHECK(loom_chat_template_select("nope", NULL, &ct, err, sizeof err) == LOOM_ERR_INVALID_ARG);
    CHECK(strstr(err, "unknown chat template 'nope'") && strstr(err, "chatml"));
    CHECK(loom_chat_template_select(NULL, NULL, &ct, err, sizeof err) == LOOM_ERR_UNSUPPORTED);
    CHECK(strstr(err, "no chat template") && strstr(err, "--chat-template"));
    CHECK(loom_chat_template_select(NULL, "{{ hello }}", &ct, err, sizeof err) ==
          LOOM_ERR_UNSUPPORTED);
    CHECK(strstr(err, "unknown chat template") && !strstr(err, "looks like"));
    size_t n = 0;
    while (loom_chat_template_names(n))
        n++;
    CHECK(n == 6);
    for (size_t i = 0; i < n; i++) {
        CHECK(loom_chat_template_select(loom_chat_template_names(i), "ignored", &ct, err,
                                        sizeof err) == LOOM_OK);
        CHECK(!strcmp(ct.name, loom_chat_template_names(i)));
    }
    /* the name wins over the text */
    loom_chat_message m[1] = {{"user", "Hi"}};
    char *out = NULL;
    CHECK(loom_chat_template_select("chatml", "{{ anything }}", &ct, err, sizeof err) == LOOM_OK);
    CHECK(loom_chat_render(&ct, NULL, NULL, m, 1, true, &out, err, sizeof err) == LOOM_OK);
    CHECK(out && !strcmp(out, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
    free(out);
}

/* A tokenizer's stored template: set, written to GGUF, read back, used. */
static void tokenizer_template(void) {
    /* printable ASCII (its own GPT-2 byte-alphabet character) and two
     * control tokens; the other bytes have no token, which is allowed */
    char bytes[256][2];
    size_t nt = 0;
    const char *vocab[100];
    for (int i = 33; i < 127; i++) {
        bytes[i][0] = (char)i;
        bytes[i][1] = 0;
        vocab[nt++] = bytes[i];
    }
    vocab[nt++] = "<|im_start|>";
    vocab[nt++] = "<|im_end|>";
    int32_t types[100];
    for (size_t i = 0; i < nt; i++)
        types[i] = i + 2 >= nt ? LOOM_TOKEN_CONTROL : LOOM_TOKEN_NORMAL;
    loom_tokenizer *t = NULL;
    char err[512] = "";
    loom_status st =
        loom_tokenizer_from_vocab(vocab, nt, NULL, 0, types, NULL, false, &t, err, sizeof err);
    CHECK_MSG(st == LOOM_OK, "%s", err);
    if (st != LOOM_OK) return;
    CHECK(loom_tokenizer_chat_template(t) == NULL);
    loom_chat_message m[1] = {{"user", "Hi"}};
    char *out = NULL;
    /* no stored text, no Llama-3 vocabulary: refused, names the override */
    CHECK(loom_tokenizer_chat_render(t, NULL, m, 1, true, &out, err, sizeof err) ==
          LOOM_ERR_UNSUPPORTED);
    CHECK(strstr(err, "--chat-template") != NULL);
    const char *smol =
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
        "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|im_start|>assistant\n' }}{% endif %}";
    CHECK(loom_tokenizer_set_chat_template(t, smol) == LOOM_OK);
    CHECK(loom_tokenizer_chat_render(t, NULL, m, 1, true, &out, err, sizeof err) == LOOM_OK);
    CHECK(out && strstr(out, "named SmolLM") && strstr(out, "<|im_start|>user\nHi<|im_end|>\n"));
    free(out);
    out = NULL;
    CHECK(loom_tokenizer_chat_render(t, "chatml", m, 1, false, &out, err, sizeof err) == LOOM_OK);
    CHECK(out && !strcmp(out, "<|im_start|>user\nHi<|im_end|>\n"));
    free(out);
    /* GGUF round trip keeps the text */
    const char *tmp = getenv("TMPDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/loom_chat_tmpl_%d.gguf", tmp ? tmp : "/tmp", (int)getpid());
    loom_gguf_writer *w = NULL;
    CHECK(loom_gguf_writer_new(&w) == LOOM_OK);
    CHECK(loom_gguf_writer_set_str(w, "general.architecture", "llama") == LOOM_OK);
    st = loom_tokenizer_write_gguf(t, w, err, sizeof err);
    CHECK_MSG(st == LOOM_OK, "%s", err);
    CHECK(loom_gguf_writer_write(w, path) == LOOM_OK);
    loom_gguf_writer_free(w);
    loom_gguf *g = NULL;
    loom_tokenizer *t2 = NULL;
    CHECK(loom_gguf_open(path, &g, err, sizeof err) == LOOM_OK);
    if (g) {
        st = loom_tokenizer_load_gguf(g, &t2, err, sizeof err);
        CHECK_MSG(st == LOOM_OK, "%s", err);
        CHECK(t2 && loom_tokenizer_chat_template(t2) &&
              !strcmp(loom_tokenizer_chat_template(t2), smol));
        loom_gguf_close(g);
    }
    remove(path);
    loom_tokenizer_free(t2);
    loom_tokenizer_free(t);
}

/* tokenizer_config.json's chat_template beside a tokenizer.json: the Llama 3
 * files loom ships carry Meta's first template. */
static void hf_json_template(const char *src) {
    char path[1024], err[512] = "";
    snprintf(path, sizeof path, "%s/model/data/llama3-tokenizer/tokenizer.json", src);
    loom_tokenizer *t = NULL;
    loom_status st = loom_tokenizer_load_hf_json(path, &t, err, sizeof err);
    CHECK_MSG(st == LOOM_OK, "%s", err);
    if (!t) return;
    const char *text = loom_tokenizer_chat_template(t);
    CHECK(text && strstr(text, "<|start_header_id|>"));
    loom_chat_template ct;
    CHECK(loom_chat_template_select(NULL, text, &ct, err, sizeof err) == LOOM_OK &&
          !strcmp(ct.name, "llama3") && ct.gen_prompt_always);
    loom_chat_message m[1] = {{"user", " Hi "}};
    char *out = NULL;
    CHECK(loom_tokenizer_chat_render(t, NULL, m, 1, false, &out, err, sizeof err) == LOOM_OK);
    CHECK(out && !strcmp(out, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi"
                              "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"));
    free(out);
    loom_tokenizer_free(t);
}

int main(void) {
    const char *src = getenv("LOOM_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/model/data/chat_template_golden.txt", src ? src : ".");
    run_golden(path);
    names_and_override();
    tokenizer_template();
    hf_json_template(src ? src : ".");
    return test_summary("test_chat_template");
}
