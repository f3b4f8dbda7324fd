/* tests/model/test_encoder_minilm.c - the real all-MiniLM-L6-v2 (fetched by
 * scripts/fetch-models.sh; with argument mpnet all-mpnet-base-v2) against the goldens of
 * scripts/gen_encoder_golden.py: WordPiece ids equal to HF tokenizers' on the
 * varied corpus with the full 30,522-token vocabulary, and embeddings of
 * tests/golden/encoder/sentences.txt at cosine >= 0.9999 against
 * sentence-transformers. Exit 77 (skipped) when the model is not there. */
#include "encoder_golden.h"
#include "loom/model.h"
#include "loom/runtime.h"

static const char *model_dir(char *buf, size_t n, const char *name) {
    loom_model_cache_dir(buf, n);
    size_t k = strlen(buf);
    snprintf(buf + k, n - k, "/%s", name);
    return buf;
}

int main(int argc, char **argv) {
    /* test_encoder_minilm [mpnet]: all-MiniLM-L6-v2, or all-mpnet-base-v2
     * (`scripts/fetch-models.sh mpnet`; not fetched in CI) */
    const bool mp = argc > 1 && !strcmp(argv[1], "mpnet");
    const char *tok_bin = mp ? "tok_mpnet.bin" : "tok_minilm.bin";
    const char *emb_bin = mp ? "emb_mpnet.bin" : "emb_minilm.bin";
    const int want_dim = mp ? 768 : 384, want_max = mp ? 384 : 256;
    char dbuf[4096], cfg[4200];
    const char *dir = model_dir(dbuf, sizeof dbuf, mp ? "all-mpnet-base-v2" : "all-MiniLM-L6-v2");
    snprintf(cfg, sizeof cfg, "%s/model.safetensors", dir);
    FILE *f = fopen(cfg, "rb");
    if (!f) {
        printf("test_encoder_minilm: SKIP: %s not found (scripts/fetch-models.sh fetches it)\n",
               cfg);
        return 77;
    }
    fclose(f);
    CHECK(loom_registry_init() == LOOM_OK);
    loom_encoder *e = NULL;
    char err[512] = "";
    loom_status st = loom_encoder_load(dir, NULL, &e, err, sizeof err);
    CHECK_MSG(st == LOOM_OK, "%s", err);
    if (!e) return test_summary("test_encoder_minilm");
    CHECK(loom_encoder_dim(e) == want_dim && loom_encoder_max_tokens(e) == want_max);

    int n = 0;
    enc_case *c = enc_read_tok(tok_bin, &n);
    CHECK(c != NULL);
    if (c) {
        int bad = enc_check_tokens(loom_encoder_tokenizer(e), c, n, want_max);
        CHECK_MSG(bad == 0, "%d of %d texts tokenized differently from HF tokenizers", bad, n);
        enc_cases_free(c, n);
    }

    /* sentences.txt: one sentence per line (the golden's order) */
    char path[4096];
    size_t sz = 0;
    char *text = (char *)enc_slurp(enc_path(path, sizeof path, "sentences.txt"), &sz);
    int count = 0, dim = 0;
    float *want = enc_read_emb(emb_bin, &count, &dim);
    CHECK(text && want && dim == want_dim);
    if (text && want) {
        const char **lines = calloc((size_t)count + 1, sizeof *lines);
        int k = 0;
        char *p = text, *end = text + sz;
        while (p < end && k < count) {
            char *nl = memchr(p, '\n', (size_t)(end - p));
            if (nl) *nl = '\0';
            lines[k++] = p;
            p = nl ? nl + 1 : end;
        }
        CHECK(k == count);
        float *got = calloc((size_t)count * (size_t)dim, sizeof *got);
        st = loom_encoder_embed(e, lines, k, got, err, sizeof err);
        CHECK_MSG(st == LOOM_OK, "%s", err);
        double worst = 1.0;
        for (int i = 0; i < k; i++) {
            double cs = enc_cos(got + (size_t)i * dim, want + (size_t)i * dim, dim);
            if (cs < worst) worst = cs;
        }
        CHECK_MSG(worst >= 0.9999, "worst cosine %.7f < 0.9999", worst);
        printf("%s on %s: %d sentences, worst cosine vs sentence-transformers %.7f\n", dir,
               loom_encoder_backend(e), k, worst);
        free(got);
        free(lines);
    }
    free(text);
    free(want);
    loom_encoder_free(e);
    loom_registry_shutdown();
    return test_summary("test_encoder_minilm");
}
