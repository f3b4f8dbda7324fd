/* tests/train/test_finetune_chat.c - chat data in `loom finetune` goes
 * through the model's own chat template (picked by fingerprint, as `loom
 * chat` does; docs/adr/0025), here a ChatML model (OpenHermes' template text,
 * from tests/model/data/chat_template_golden.txt, which transformers
 * rendered): a conversation's tokens are those of its ChatML rendering
 * tokenized whole, and exactly the assistant answers (content, <|im_end|>
 * and the newline the template writes after it) count in the loss. The
 * expected rendering is written out by hand from the golden cases' format,
 * independent of loom's renderer. --chat-template overrides the model's
 * template; a model whose template loom does not know is refused on the
 * first chat line, naming its fingerprint. A short finetune of a ChatML
 * model (GGUF with tokenizer.chat_template) on chat data lowers the loss. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/loom.h"
#include "loom/model.h"
#include "testing.h"
#include "train/finetune.h"
#include "train/finetune_data.h"
#include "train_fixture.h"

/* OpenHermes-2.5's template (fingerprint 0x88bf4138d5c826f0, "chatml") */
static char *chatml_text(const char *src) {
    char path[512], kw[32], name[32];
    snprintf(path, sizeof path, "%s/tests/model/data/chat_template_golden.txt", src);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *text = NULL;
    unsigned long long fp;
    size_t bl, el, tl;
    while (!text && fscanf(f, "%31s", kw) == 1) {
        if (strcmp(kw, "template") != 0) continue;
        if (fscanf(f, " %31s %llx %zu %zu %zu", name, &fp, &bl, &el, &tl) != 5) break;
        fgetc(f);
        if (strcmp(name, "chatml") != 0) continue;
        fseek(f, (long)(bl + el), SEEK_CUR);
        text = calloc(tl + 1, 1);
        if (text && fread(text, 1, tl, f) != tl) {
            free(text);
            text = NULL;
        }
    }
    fclose(f);
    return text;
}

/* bytes 0..255, <s> 256 (BOS), <|im_end|> 257 (EOS), <|im_start|> 258 */
static loom_tokenizer *chatml_tokenizer(const char *tmpl) {
    static char strs[256][4];
    const char *toks[259];
    int32_t types[259];
    for (int i = 0; i < 256; i++) {
        byte_token(i, strs[i]);
        toks[i] = strs[i];
        types[i] = LOOM_TOKEN_NORMAL;
    }
    const char *sp[3] = {"<s>", "<|im_end|>", "<|im_start|>"};
    for (int i = 0; i < 3; i++) {
        toks[256 + i] = sp[i];
        types[256 + i] = LOOM_TOKEN_CONTROL;
    }
    loom_tokenizer *tok = NULL;
    char err[512];
    if (loom_tokenizer_from_vocab(toks, 259, NULL, 0, types, NULL, false, &tok, err, sizeof err) !=
        LOOM_OK) {
        fprintf(stderr, "tokenizer: %s\n", err);
        return NULL;
    }
    loom_tokenizer_set_special_ids(tok, 256, 257, 257);
    if (tmpl) loom_tokenizer_set_chat_template(tok, tmpl);
    return tok;
}

static const char *CHAT =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", "
    "\"content\": \"Hello\"}, {\"role\": \"assistant\", \"content\": \"Hi there\"}, {\"role\": "
    "\"user\", \"content\": \"Who are you\"}, {\"role\": \"assistant\", \"content\": "
    "\"loom\"}]}\n";
/* ChatML: <|im_start|>ROLE\nCONTENT<|im_end|>\n per message; answers marked */
static const char *const PARTS[] = {
    "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
    "<|im_start|>assistant\n",
    "Hi there<|im_end|>\n",
    "<|im_start|>user\nWho are you<|im_end|>\n<|im_start|>assistant\n",
    "loom<|im_end|>\n",
};

static void check_example(const loom_tokenizer *tok, const loom_ft_example *e, const char *what) {
    /* the whole rendering tokenized at once; the mask from the marked parts */
    char whole[512] = "";
    for (int i = 0; i < 4; i++)
        strcat(whole, PARTS[i]);
    int32_t *ids = NULL;
    size_t n = 0;
    char err[256];
    CHECK(loom_tokenizer_encode(tok, whole, strlen(whole), 0, &ids, &n, err, sizeof err) ==
          LOOM_OK);
    uint8_t want[512];
    size_t k = 0;
    for (int i = 0; i < 4; i++) {
        int32_t *p = NULL;
        size_t pn = 0;
        CHECK(loom_tokenizer_encode(tok, PARTS[i], strlen(PARTS[i]), 0, &p, &pn, err, sizeof err) ==
              LOOM_OK);
        for (size_t j = 0; j < pn && k < sizeof want; j++)
            want[k++] = (uint8_t)(i % 2);
        free(p);
    }
    CHECK_MSG(k == n, "%s: parts tokenize to %zu tokens, the whole to %zu", what, k, n);
    bool same = e->n == (int32_t)n && memcmp(e->ids, ids, n * sizeof *ids) == 0;
    CHECK_MSG(same, "%s: the example's %d tokens are not the ChatML rendering's %zu", what, e->n,
              n);
    if (same) {
        int bad = -1;
        for (size_t t = 1; t < n && bad < 0; t++)
            if (e->loss[t] != want[t]) bad = (int)t;
        CHECK_MSG(bad < 0, "%s: token %d (id %d) loss flag %d, want %d", what, bad,
                  bad >= 0 ? e->ids[bad] : 0, bad >= 0 ? e->loss[bad] : 0,
                  bad >= 0 ? want[bad] : 0);
    }
    free(ids);
}

int main(void) {
    const char *src = getenv("LOOM_SOURCE_DIR");
    char *tmpl = chatml_text(src ? src : ".");
    CHECK_MSG(tmpl != NULL, "no chatml template in chat_template_golden.txt (LOOM_SOURCE_DIR=%s)",
              src ? src : "(unset)");
    char dir[] = "/tmp/loom_ftchat_XXXXXX";
    if (!tmpl || !mkdtemp(dir)) return test_summary("test_finetune_chat");
    char data[300], model[300], out[300], cmd[400], err[1024];
    snprintf(data, sizeof data, "%s/chat.jsonl", dir);
    snprintf(model, sizeof model, "%s/chatml.gguf", dir);
    snprintf(out, sizeof out, "%s/run", dir);
    FILE *f = fopen(data, "w");
    fputs(CHAT, f);
    fclose(f);

    /* the model's template, by fingerprint */
    loom_tokenizer *tok = chatml_tokenizer(tmpl);
    loom_ft_dataset ds;
    CHECK_MSG(loom_ft_dataset_load_chat(data, tok, NULL, 512, &ds, err, sizeof err) == LOOM_OK,
              "%s", err);
    if (ds.n == 1) check_example(tok, &ds.ex[0], "model's template");
    loom_ft_dataset_free(&ds);

    /* no template text: refused, naming the problem; --chat-template chatml
     * renders the same */
    loom_tokenizer *bare = chatml_tokenizer(NULL);
    err[0] = 0;
    CHECK(loom_ft_dataset_load_chat(data, bare, NULL, 512, &ds, err, sizeof err) ==
          LOOM_ERR_FORMAT);
    CHECK_MSG(strstr(err, "chat.jsonl:1:") && strstr(err, "chat template"), "message: %s", err);
    CHECK_MSG(loom_ft_dataset_load_chat(data, bare, "chatml", 512, &ds, err, sizeof err) == LOOM_OK,
              "%s", err);
    if (ds.n == 1) check_example(bare, &ds.ex[0], "--chat-template chatml");
    loom_ft_dataset_free(&ds);
    /* the override wins over the model's text: llama3 headers, not ChatML */
    CHECK(loom_ft_dataset_load_chat(data, tok, "llama3", 512, &ds, err, sizeof err) == LOOM_OK);
    int32_t hdr = -1;
    loom_tokenizer_find(tok, "<|im_start|>", 12, &hdr);
    bool has_im = false;
    for (int32_t t = 0; ds.n == 1 && t < ds.ex[0].n; t++)
        has_im |= ds.ex[0].ids[t] == hdr;
    CHECK_MSG(ds.n == 1 && !has_im, "--chat-template llama3 still rendered ChatML");
    loom_ft_dataset_free(&ds);
    CHECK(loom_ft_dataset_load_chat(data, tok, "nonesuch", 512, &ds, err, sizeof err) != LOOM_OK);
    CHECK_MSG(strstr(err, "nonesuch") || strstr(err, "chatml"), "message: %s", err);
    loom_tokenizer_free(bare);

    /* a short finetune of a ChatML model on chat data */
    loom_model_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.arch, sizeof c.arch, "llama");
    c.vocab_size = 259;
    c.dim = 64;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 16;
    c.ffn_dim = 128;
    c.rms_eps = 1e-5f;
    c.rope = loom_rope_params_llama3(16);
    c.rope.mode = LOOM_ROPE_NORMAL;
    c.rope.scaling = LOOM_ROPE_SCALING_NONE;
    c.rope.theta = 10000.0f;
    c.max_ctx = 256;
    c.tie_embeddings = true;
    c.bos_id = 256;
    c.eos_id = 257;
    c.eot_id = 257;
    CHECK_MSG(loom_model_write_random_gguf(&c, LOOM_F32, 7, tok, model, err, sizeof err) == LOOM_OK,
              "%s", err);
    loom_tokenizer_free(tok);
    CHECK(loom_registry_init() == LOOM_OK);
    loom_finetune_params p = loom_finetune_default_params();
    p.model = model;
    p.data = data;
    p.out_dir = out;
    p.backend = "cpu";
    p.lora.r = 8;
    p.grad_accum = 1;
    p.lr = 1e-2f;
    p.max_steps = 8;
    p.quiet = true;
    loom_finetune_result r;
    CHECK_MSG(loom_finetune_run(&p, &r, err, sizeof err) == LOOM_OK, "finetune: %s", err);
    CHECK_MSG(r.last_loss < 0.8 * r.first_loss, "loss %.4f -> %.4f", r.first_loss, r.last_loss);
    printf("chatml run: loss %.4f -> %.4f\n", r.first_loss, r.last_loss);
    loom_registry_shutdown();
    free(tmpl);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return test_summary("test_finetune_chat");
}
