/* tests/model/test_llm_embed.c - loom_model_embed against transformers.
 *
 * The tiny HF checkpoints of tests/model/data/hf/<name>/ (a Llama with GQA
 * and llama3 rope scaling, a Mixtral MoE) are loaded from their directories
 * and every token sequence of embed.txt (scripts/gen_llm_embed_golden.py:
 * the base model's last_hidden_state, mean-pooled and L2-normalised, in
 * PyTorch) is embedded: cosine >= 0.9999 with transformers', unit norm.
 *
 * Then what the server relies on: an embedding between two decode calls
 * leaves the KV cache alone (the next token's logits are those of a slot
 * that never saw an embedding, bit for bit; positions and block counts
 * unchanged), the same sequence gives the same vector every time, and bad
 * input (no tokens, more than the context, an id outside the vocabulary)
 * is refused with a message. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/model.h"
#include "loom/runtime.h"
#include "testing.h"

#define MAX_SEQ 8
#define MAX_TOK 512
#define MAX_DIM 256

typedef struct golden {
    int n;
    int n_tok[MAX_SEQ];
    int32_t tok[MAX_SEQ][MAX_TOK];
    int dim[MAX_SEQ];
    float vec[MAX_SEQ][MAX_DIM];
} golden;

/* embed.txt: "embed E T ID..." and "vec E D V..." records. */
static int read_golden(const char *path, golden *g) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    memset(g, 0, sizeof *g);
    char word[16];
    int e, k;
    while (fscanf(f, "%15s", word) == 1) {
        if (word[0] == '#') {
            int ch;
            while ((ch = fgetc(f)) != '\n' && ch != EOF) {
            }
        } else if (!strcmp(word, "embed") && fscanf(f, "%d %d", &e, &k) == 2 && e >= 0 &&
                   e < MAX_SEQ && k > 0 && k <= MAX_TOK) {
            g->n_tok[e] = k;
            for (int i = 0; i < k; i++)
                if (fscanf(f, "%d", &g->tok[e][i]) != 1) goto bad;
            if (e + 1 > g->n) g->n = e + 1;
        } else if (!strcmp(word, "vec") && fscanf(f, "%d %d", &e, &k) == 2 && e >= 0 &&
                   e < MAX_SEQ && k > 0 && k <= MAX_DIM) {
            g->dim[e] = k;
            for (int i = 0; i < k; i++)
                if (fscanf(f, "%f", &g->vec[e][i]) != 1) goto bad;
        } else {
            goto bad;
        }
    }
    fclose(f);
    return g->n > 0;
bad:
    fclose(f);
    return 0;
}

static double cosine(const float *a, const float *b, int64_t n) {
    double ab = 0, aa = 0, bb = 0;
    for (int64_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return ab / sqrt(aa * bb);
}

static void check_model(const char *name) {
    const char *src = getenv("LOOM_SOURCE_DIR");
    char dir[1024], path[1100], err[512] = "";
    snprintf(dir, sizeof dir, "%s/tests/model/data/hf/%s", src ? src : ".", name);
    snprintf(path, sizeof path, "%s/embed.txt", dir);
    static golden g;
    CHECK_MSG(read_golden(path, &g), "%s: cannot read %s", name, path);
    if (!g.n) return;
    loom_model_params p = loom_model_default_params();
    p.n_ctx = 128;
    p.n_slots = 2;
    p.kv_dtype = LOOM_F32;
    loom_model *m = NULL;
    loom_status s = loom_model_load(dir, &p, &m, err, sizeof err);
    CHECK_MSG(s == LOOM_OK, "%s: load: %s", name, err);
    if (s != LOOM_OK) return;
    const int64_t D = loom_model_config_of(m)->dim, V = loom_model_config_of(m)->vocab_size;
    float *v = malloc((size_t)D * sizeof *v), *v2 = malloc((size_t)D * sizeof *v2);

    for (int e = 0; e < g.n; e++) {
        CHECK_MSG(g.dim[e] == D, "%s seq %d: golden has %d dims, model %lld", name, e, g.dim[e],
                  (long long)D);
        s = loom_model_embed(m, g.tok[e], (size_t)g.n_tok[e], v, err, sizeof err);
        CHECK_MSG(s == LOOM_OK, "%s seq %d: embed: %s", name, e, err);
        if (s != LOOM_OK || g.dim[e] != D) continue;
        double c = cosine(v, g.vec[e], D), nrm = 0;
        for (int64_t i = 0; i < D; i++)
            nrm += (double)v[i] * v[i];
        CHECK_MSG(c >= 0.9999, "%s seq %d (%d tokens): cosine with transformers %.6f", name, e,
                  g.n_tok[e], c);
        CHECK_MSG(fabs(sqrt(nrm) - 1) < 1e-5, "%s seq %d: norm %g", name, e, sqrt(nrm));
        printf("%s seq %d (%d tokens): cosine with transformers %.7f\n", name, e, g.n_tok[e], c);
        /* deterministic: the same sequence, the same vector */
        s = loom_model_embed(m, g.tok[e], (size_t)g.n_tok[e], v2, err, sizeof err);
        CHECK_MSG(s == LOOM_OK && !memcmp(v, v2, (size_t)D * sizeof *v), "%s seq %d: repeat", name,
                  e);
    }

    /* The KV cache: slot 0 reads a prompt, an embedding runs, slot 0 reads
     * one more token; slot 1 does the same without the embedding. */
    const int32_t *pr = g.tok[g.n - 1];
    const int n_pr = g.n_tok[g.n - 1] < 16 ? g.n_tok[g.n - 1] : 16;
    float *la = malloc((size_t)V * sizeof *la), *lb = malloc((size_t)V * sizeof *lb);
    const int32_t next = 7;
    loom_kv_block_stats k0, k1;
    for (int slot = 0; slot < 2; slot++) {
        loom_model_slot_clear(m, slot);
        loom_batch b = {1, n_pr, &slot, pr, false};
        s = loom_model_decode(m, &b, slot ? lb : la, err, sizeof err); /* overwritten below */
        CHECK_MSG(s == LOOM_OK, "%s: prefill slot %d: %s", name, slot, err);
        if (slot == 0) {
            loom_model_kv_block_stats(m, &k0);
            s = loom_model_embed(m, g.tok[g.n - 1], (size_t)g.n_tok[g.n - 1], v, err, sizeof err);
            CHECK_MSG(s == LOOM_OK, "%s: embed between decodes: %s", name, err);
            loom_model_kv_block_stats(m, &k1);
            CHECK_MSG(k0.n_used == k1.n_used && k0.n_cached == k1.n_cached &&
                          k0.n_free == k1.n_free,
                      "%s: the embedding changed the KV block pool", name);
            CHECK_MSG(loom_model_slot_pos(m, 0) == n_pr, "%s: slot 0 at %lld after embed", name,
                      (long long)loom_model_slot_pos(m, 0));
        }
        loom_batch b1 = {1, 1, &slot, &next, false};
        s = loom_model_decode(m, &b1, slot ? lb : la, err, sizeof err);
        CHECK_MSG(s == LOOM_OK, "%s: decode slot %d: %s", name, slot, err);
    }
    CHECK_MSG(!memcmp(la, lb, (size_t)V * sizeof *la),
              "%s: logits after an embedding differ from a slot that saw none", name);

    /* bad input */
    const int32_t bad_id[2] = {1, (int32_t)V};
    err[0] = 0;
    CHECK(loom_model_embed(m, bad_id, 2, v, err, sizeof err) == LOOM_ERR_INVALID_ARG &&
          strstr(err, "vocabulary"));
    err[0] = 0;
    CHECK(loom_model_embed(m, pr, 0, v, err, sizeof err) == LOOM_ERR_INVALID_ARG &&
          strstr(err, "tokens"));
    int32_t *longer = calloc(129, sizeof *longer); /* context 128 */
    err[0] = 0;
    CHECK(loom_model_embed(m, longer, 129, v, err, sizeof err) == LOOM_ERR_INVALID_ARG &&
          strstr(err, "1..128"));
    free(longer);
    free(la);
    free(lb);
    free(v);
    free(v2);
    loom_model_free(m);
}

int main(void) {
    CHECK(loom_registry_init() == LOOM_OK);
    check_model("llama_gqa");
    check_model("mixtral_moe");
    loom_registry_shutdown();
    return test_summary("test_llm_embed");
}
