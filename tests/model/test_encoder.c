/* tests/model/test_encoder.c - the WordPiece tokenizer and the BERT / MPNet
 * encoders against the goldens of scripts/gen_encoder_golden.py: a tiny
 * random BERT (tests/golden/encoder/tiny-bert; with argument mpnet the tiny
 * MPNet, tiny-mpnet) whose token ids must equal HF tokenizers'
 * and whose embeddings must reach cosine >= 0.9999 against PyTorch mean
 * pooling + L2 normalisation, in one padded batch and one by one; plus
 * the error paths (bad directory, bad ids, bad config). */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, symlink */
#include <unistd.h>

#include "encoder_golden.h"
#include "loom/runtime.h"

/* test_encoder [mpnet]: the tiny BERT (default) or the tiny MPNet. */
static const char *g_tok = "tok_tiny.bin", *g_emb = "emb_tiny.bin", *g_name = "tiny-bert";
static int g_max = 24;

static void test_tokens(const loom_wordpiece *wp) {
    int n = 0;
    enc_case *c = enc_read_tok(g_tok, &n);
    CHECK(c != NULL && n > 20);
    if (!c) return;
    int bad = enc_check_tokens(wp, c, n, g_max);
    CHECK_MSG(bad == 0, "%d of %d texts tokenized differently from HF tokenizers", bad, n);
    /* The truncation really was exercised, and so was [UNK]. */
    int truncated = 0;
    for (int i = 0; i < n; i++)
        truncated += c[i].n == g_max;
    CHECK(truncated >= 2);
    /* cap smaller than the count: the count is still reported */
    int32_t two[2];
    int got = 0;
    CHECK(loom_wordpiece_encode(wp, "hello world", 11, g_max, two, 2, &got) == LOOM_OK && got == 4);
    CHECK(loom_wordpiece_encode(wp, "x", 1, 1, two, 2, &got) == LOOM_ERR_INVALID_ARG);
    enc_cases_free(c, n);
}

static void test_embeddings(loom_encoder *e) {
    int n = 0, count = 0, dim = 0;
    enc_case *c = enc_read_tok(g_tok, &n);
    float *want = enc_read_emb(g_emb, &count, &dim);
    CHECK(c && want && count == n && dim == loom_encoder_dim(e));
    if (!c || !want || count != n) {
        enc_cases_free(c, n);
        free(want);
        return;
    }
    const char **texts = malloc((size_t)n * sizeof *texts);
    for (int i = 0; i < n; i++)
        texts[i] = c[i].text;
    float *got = calloc((size_t)n * (size_t)dim, sizeof *got);
    char err[512] = "";
    /* texts with a NUL inside are fed through their ids (embed takes C strings) */
    const int32_t **ids = malloc((size_t)n * sizeof *ids);
    int *lens = malloc((size_t)n * sizeof *lens);
    for (int i = 0; i < n; i++) {
        ids[i] = c[i].ids;
        lens[i] = c[i].n;
    }
    loom_status st = loom_encoder_embed_ids(e, ids, lens, n, got, err, sizeof err);
    CHECK_MSG(st == LOOM_OK, "%s", err);
    double worst = 1.0;
    for (int i = 0; i < n; i++) {
        double cs = enc_cos(got + (size_t)i * dim, want + (size_t)i * dim, dim);
        if (cs < worst) worst = cs;
    }
    CHECK_MSG(worst >= 0.9999, "batched: worst cosine %.6f < 0.9999", worst);
    /* unit norm */
    double nn = 0;
    for (int k = 0; k < dim; k++)
        nn += (double)got[k] * got[k];
    CHECK(fabs(nn - 1.0) < 1e-5);
    /* one by one, from text (padding must not change a sequence's embedding) */
    worst = 1.0;
    for (int i = 0; i < n; i++) {
        if (strlen(c[i].text) != c[i].len) continue;
        float one[1024];
        st = loom_encoder_embed(e, &texts[i], 1, one, err, sizeof err);
        CHECK_MSG(st == LOOM_OK, "%s", err);
        double cs = enc_cos(one, want + (size_t)i * dim, dim);
        if (cs < worst) worst = cs;
    }
    CHECK_MSG(worst >= 0.9999, "single: worst cosine %.6f < 0.9999", worst);
    printf("%s on %s: %d texts, dim %d\n", g_name, loom_encoder_backend(e), n, dim);

    /* bad ids and lengths are refused with a message, no crash */
    int32_t bad_ids[3] = {101, 999999, 102};
    const int32_t *bp = bad_ids;
    int bl = 3;
    CHECK(loom_encoder_embed_ids(e, &bp, &bl, 1, got, err, sizeof err) == LOOM_ERR_INVALID_ARG);
    CHECK(strstr(err, "outside the vocabulary") != NULL);
    bl = g_max + 1;
    CHECK(loom_encoder_embed_ids(e, &bp, &bl, 1, got, err, sizeof err) == LOOM_ERR_INVALID_ARG);
    free(ids);
    free(lens);
    free(texts);
    free(got);
    free(want);
    enc_cases_free(c, n);
}

static void test_errors(void) {
    loom_encoder *e = NULL;
    char err[512] = "";
    CHECK(loom_encoder_load("/nonexistent-dir", NULL, &e, err, sizeof err) != LOOM_OK);
    CHECK(e == NULL && strstr(err, "config.json") != NULL);
    loom_wordpiece *wp = NULL;
    CHECK(loom_wordpiece_load_json("{", 1, &wp, err, sizeof err) == LOOM_ERR_FORMAT && !wp);
    const char *bpe = "{\"model\":{\"type\":\"BPE\",\"vocab\":{}}}";
    CHECK(loom_wordpiece_load_json(bpe, strlen(bpe), &wp, err, sizeof err) == LOOM_ERR_UNSUPPORTED);
    const char *dup = "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0,\"b\":0}}}";
    CHECK(loom_wordpiece_load_json(dup, strlen(dup), &wp, err, sizeof err) == LOOM_ERR_FORMAT);
    const char *nospecial = "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0}}}";
    CHECK(loom_wordpiece_load_json(nospecial, strlen(nospecial), &wp, err, sizeof err) ==
          LOOM_ERR_FORMAT);
    CHECK(strstr(err, "[UNK]") != NULL);
}

/* config.json variants of the tiny BERT in a temporary directory (weights
 * and tokenizer linked): each must fail with a message naming the problem. */
static void test_bad_configs(const char *dir) {
    char path[4096], tmpl[] = "/tmp/loom_enc_XXXXXX";
    size_t n = 0;
    char *cfg = (char *)enc_slurp(strcat(strcpy(path, dir), "/config.json"), &n);
    const char *tmp = mkdtemp(tmpl);
    CHECK(cfg && tmp);
    if (!cfg || !tmp) {
        free(cfg);
        return;
    }
    cfg = realloc(cfg, n + 1);
    cfg[n] = '\0';
    const char *files[] = {"model.safetensors", "tokenizer.json"};
    for (int i = 0; i < 2; i++) {
        char from[4200], to[4200];
        snprintf(from, sizeof from, "%s/%s", dir, files[i]);
        snprintf(to, sizeof to, "%s/%s", tmp, files[i]);
        CHECK(symlink(from, to) == 0);
    }
    static const struct {
        const char *from, *to, *msg;
        loom_status st;
    } v[] = {
        {"\"model_type\": \"bert\"", "\"model_type\": \"roberta\"", "model_type",
         LOOM_ERR_UNSUPPORTED},
        {"\"hidden_act\": \"gelu\"", "\"hidden_act\": \"relu\"", "hidden_act",
         LOOM_ERR_UNSUPPORTED},
        {"\"hidden_size\": 32", "\"hidden_size\": 30", "multiple", LOOM_ERR_FORMAT},
        {"\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3", "encoder.layer.2",
         LOOM_ERR_FORMAT},
        {"\"vocab_size\": 1000", "\"vocab_size\": 999", "tokenizer has 1000", LOOM_ERR_FORMAT},
        {"\"intermediate_size\": 64", "\"intermediate_size\": -64", "intermediate_size",
         LOOM_ERR_FORMAT},
        {"{", "[", "JSON object", LOOM_ERR_FORMAT},
    };
    char cpath[4200];
    snprintf(cpath, sizeof cpath, "%s/config.json", tmp);
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char *bad = test_replace(cfg, v[i].from, v[i].to);
        CHECK_MSG(bad != NULL, "variant %zu: '%s' not in config.json", i, v[i].from);
        if (!bad) continue;
        FILE *f = fopen(cpath, "wb");
        fputs(bad, f);
        fclose(f);
        free(bad);
        loom_encoder *e = NULL;
        char err[512] = "";
        loom_status st = loom_encoder_load(tmp, NULL, &e, err, sizeof err);
        CHECK_MSG(st == v[i].st && !e && strstr(err, v[i].msg) && !strchr(err, '\n'),
                  "variant %zu: status %d, message '%s' (want '%s')", i, (int)st, err, v[i].msg);
        loom_encoder_free(e);
    }
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp, files[i]);
        unlink(path);
    }
    unlink(cpath);
    rmdir(tmp);
    free(cfg);
}

int main(int argc, char **argv) {
    char dir[4096];
    if (argc > 1 && !strcmp(argv[1], "mpnet")) {
        g_tok = "tok_tiny_mpnet.bin";
        g_emb = "emb_tiny_mpnet.bin";
        g_name = "tiny-mpnet";
        g_max = 36;
    }
    CHECK(loom_registry_init() == LOOM_OK);
    enc_path(dir, sizeof dir, g_name);
    loom_encoder *e = NULL;
    char err[512] = "";
    loom_status st = loom_encoder_load(dir, NULL, &e, err, sizeof err);
    CHECK_MSG(st == LOOM_OK, "%s", err);
    if (e) {
        CHECK(loom_encoder_max_tokens(e) == g_max && loom_encoder_dim(e) == 32);
        test_tokens(loom_encoder_tokenizer(e));
        test_embeddings(e);
        loom_encoder_free(e);
    }
    test_errors();
    if (!strcmp(g_name, "tiny-bert")) test_bad_configs(dir);
    loom_registry_shutdown();
    return test_summary("test_encoder");
}
