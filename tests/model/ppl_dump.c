/* tests/model/ppl_dump.c - the C half of the perplexity check
 * (tests/model/check_perplexity.py).
 *
 *   ppl_dump MODEL.gguf TOKENS.bin WINDOWS.bin OUT.bin CTX CHUNKS ADD_BOS
 *
 * TOKENS.bin: int32 ids, the text. WINDOWS.bin: int32 ids, windows of CTX
 * tokens formed by the Python side (its own reading of llama.cpp's rule).
 * Each window is evaluated from an empty KV cache and all its logits are
 * written to OUT.bin (float32 [n_windows][CTX][vocab]), followed by what
 * loom_perplexity_tokens reports on TOKENS (CTX, CHUNKS, ADD_BOS) as
 * float64 ppl, ppl_err, nll_mean and int64 n_chunks, n_scored. The forward
 * pass is loom's; the windowing, scoring and statistics are checked in
 * numpy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/loom.h"
#include "loom/model.h"
#include "loom/perplexity.h"

static int32_t *read_ids(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    int32_t *p = malloc(sz > 0 ? (size_t)sz : 1);
    *n = (size_t)sz / 4;
    if (p && fread(p, 4, *n, f) != *n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    return p;
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: ppl_dump MODEL TOKENS WINDOWS OUT CTX CHUNKS ADD_BOS\n");
        return 2;
    }
    const int64_t ctx = atoll(argv[5]), chunks = atoll(argv[6]);
    const bool add_bos = atoi(argv[7]) != 0;
    size_t nt = 0, nw = 0;
    int32_t *toks = read_ids(argv[2], &nt), *wins = read_ids(argv[3], &nw);
    char err[1024] = "";
    loom_model *m = NULL;
    loom_model_params mp = loom_model_default_params();
    mp.backend = "cpu";
    mp.n_ctx = ctx;
    mp.kv_dtype = LOOM_F32;
    if (!toks || !wins || loom_registry_init() != LOOM_OK ||
        loom_model_load(argv[1], &mp, &m, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "ppl_dump: setup failed: %s\n", err);
        return 1;
    }
    const size_t vocab = (size_t)loom_model_config_of(m)->vocab_size;
    float *logits = malloc(sizeof *logits * vocab * (size_t)ctx);
    FILE *out = fopen(argv[4], "wb");
    int rc = logits && out ? 0 : 1;
    const int slot = 0;
    for (size_t w = 0; rc == 0 && w < nw / (size_t)ctx; w++) {
        loom_model_slot_clear(m, slot);
        loom_batch b = {.n_seq = 1,
                        .n_tokens = (int)ctx,
                        .slots = &slot,
                        .tokens = wins + w * (size_t)ctx,
                        .all_logits = true};
        if (loom_model_decode(m, &b, logits, err, sizeof err) != LOOM_OK ||
            fwrite(logits, sizeof *logits * vocab, (size_t)ctx, out) != (size_t)ctx) {
            fprintf(stderr, "ppl_dump: window %zu: %s\n", w, err);
            rc = 1;
        }
    }
    loom_perplexity_params pp = loom_perplexity_default_params();
    pp.n_ctx = ctx;
    pp.n_chunks = chunks;
    loom_perplexity_result r;
    if (rc == 0 &&
        loom_perplexity_tokens(m, toks, nt, add_bos, &pp, &r, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "ppl_dump: perplexity: %s\n", err);
        rc = 1;
    }
    if (rc == 0) {
        double d[3] = {r.ppl, r.ppl_err, r.nll_mean};
        int64_t k[2] = {r.n_chunks, r.n_scored};
        if (fwrite(d, sizeof d, 1, out) != 1 || fwrite(k, sizeof k, 1, out) != 1) rc = 1;
    }
    if (out && fclose(out) != 0) rc = 1;
    free(logits);
    free(toks);
    free(wins);
    loom_model_free(m);
    loom_registry_shutdown();
    return rc;
}
