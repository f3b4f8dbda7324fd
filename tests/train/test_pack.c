/* tests/train/test_pack.c - sequence packing (`loom finetune --pack`,
 * loom_train_graph_build_packed, docs/adr/0033):
 *   - one packed sequence of three documents (+ padding) on the tiny
 *     transformers Llama of tests/model/data/hf/llama_gqa with a LoRA whose
 *     B is non-zero: its loss times its counted targets equals the sum of
 *     the per-document (unpacked) losses times theirs, and so does every
 *     LoRA gradient (HF's packed loss is the mean over the pack's tokens,
 *     so the sums must agree), 1e-5 relative: no attention crosses a
 *     document; the same tokens in one causal sequence give another loss
 *     (so the check can fail); positions restart at 0 per document;
 *   - the same packed sequence with the committed peft adapter
 *     (tests/train/data/lora_golden) against transformers + peft
 *     (extra.safetensors, scripts/gen_lora_golden.py --extra: position_ids
 *     restarting per document, transformers' packed-sequence masking): the
 *     loss 1e-5 relative, every gradient 1e-4 relative L2;
 *   - `loom finetune --pack` end to end on a generated model (byte
 *     tokenizer): a step counts packed sequences (several examples each),
 *     the training loss goes down, and a run stopped after 3 steps and
 *     resumed repeats the uninterrupted one exactly. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loom/loom.h"
#include "loom/safetensors.h"
#include "testing.h"
#include "train/finetune.h"
#include "train/peft.h"
#include "train_fixture.h"

#define ND 3
static const int32_t DOC_LEN[ND] = {5, 7, 4};
static const int32_t DOCS[16] = {1, 17, 200, 45, 3, 99, 128, 250, 5, 6, 7, 8, 9, 31, 64, 2};
#define PAD 4
#define TP  (16 + PAD)

static double rel_l2(const double *a, const double *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1e-30));
}

/* loss * counted and gradient * counted of one graph run, added to acc */
static double run_acc(loom_train_graph *tg, const int32_t *tok, const int32_t *tgt, int counted,
                      loom_lora *lo, double **acc) {
    float l = NAN;
    char err[512];
    loom_status st = loom_train_graph_run(tg, tok, tgt, &l, err, sizeof err);
    CHECK_MSG(st == LOOM_OK, "run: %s", err);
    for (int i = 0; i < lo->n_params; i++) {
        int64_t n = lo->p[i].rows * lo->p[i].cols;
        float *gr = malloc((size_t)n * sizeof *gr);
        CHECK(loom_train_graph_grad(tg, i, gr) == LOOM_OK);
        for (int64_t j = 0; j < n; j++)
            acc[i][j] += (double)gr[j] * counted;
        free(gr);
    }
    return (double)l * counted;
}

static void test_graph(const char *model_dir) {
    loom_model_params mp = loom_model_default_params();
    mp.backend = "cpu";
    mp.n_ctx = 16;
    mp.kv_dtype = LOOM_F32;
    mp.quantize = true;
    mp.quant = LOOM_F32;
    loom_model *m = NULL;
    char err[512];
    CHECK_MSG(loom_model_load(model_dir, &mp, &m, err, sizeof err) == LOOM_OK, "%s", err);
    if (!m) return;
    loom_lora_config lc = {.r = 4, .alpha = 8, .dropout = 0, .targets = LOOM_LORA_ALL_TARGETS};
    loom_lora *lo = NULL;
    CHECK(loom_lora_new(loom_model_config_of(m), &lc, 5, &lo, err, sizeof err) == LOOM_OK);
    uint64_t rng[4];
    loom_train_rng_seed(rng, 77);
    for (int i = 0; i < lo->n_params; i++)
        if (lo->p[i].is_b)
            for (int64_t j = 0; j < lo->p[i].rows * lo->p[i].cols; j++)
                lo->p[i].w[j] = 0.2f * (2.0f * loom_train_rng_uniform(rng) - 1.0f);
    double *gp[64], *gd[64];
    for (int i = 0; i < lo->n_params; i++) {
        gp[i] = calloc((size_t)(lo->p[i].rows * lo->p[i].cols), sizeof(double));
        gd[i] = calloc((size_t)(lo->p[i].rows * lo->p[i].cols), sizeof(double));
    }
    /* each document alone: targets = next token, the last predicts nothing */
    double sum_docs = 0;
    int counted = 0, off = 0;
    int32_t tok[TP], tgt[TP];
    for (int d = 0; d < ND; off += DOC_LEN[d++]) {
        const int n = DOC_LEN[d];
        for (int t = 0; t < n; t++) {
            tok[t] = DOCS[off + t];
            tgt[t] = t + 1 < n ? DOCS[off + t + 1] : -1;
        }
        loom_train_graph tg;
        CHECK(loom_train_graph_build(&tg, m, lo, n, true, false, err, sizeof err) == LOOM_OK);
        sum_docs += run_acc(&tg, tok, tgt, n - 1, lo, gd);
        counted += n - 1;
        loom_train_graph_free(&tg);
    }
    /* packed: the three documents then PAD tokens of padding */
    int32_t ptok[TP], ptgt[TP], lens[ND + 1];
    off = 0;
    for (int d = 0; d < ND; off += DOC_LEN[d++]) {
        lens[d] = DOC_LEN[d];
        for (int t = 0; t < DOC_LEN[d]; t++) {
            ptok[off + t] = DOCS[off + t];
            ptgt[off + t] = t + 1 < DOC_LEN[d] ? DOCS[off + t + 1] : -1;
        }
    }
    for (int t = 16; t < TP; t++) {
        ptok[t] = 0;
        ptgt[t] = -1;
    }
    lens[ND] = PAD;
    loom_train_graph tg;
    loom_status st =
        loom_train_graph_build_packed(&tg, m, lo, TP, lens, ND + 1, true, false, err, sizeof err);
    CHECK_MSG(st == LOOM_OK, "packed build: %s", err);
    if (st == LOOM_OK) {
        CHECK(loom_train_graph_same_docs(&tg, lens, ND + 1));
        CHECK(!loom_train_graph_same_docs(&tg, DOC_LEN, ND));
        int32_t pos[TP];
        CHECK(loom_tensor_download(tg.io.pos, pos, sizeof pos) == LOOM_OK);
        const int32_t want[TP] = {0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 0, 1, 2, 3};
        CHECK_MSG(!memcmp(pos, want, sizeof pos), "positions do not restart per document");
        double packed = run_acc(&tg, ptok, ptgt, counted, lo, gp);
        CHECK_MSG(fabs(packed - sum_docs) <= 1e-5 * fabs(sum_docs),
                  "packed loss x tokens %.8g, per-document sum %.8g", packed, sum_docs);
        double worst = 0;
        for (int i = 0; i < lo->n_params; i++) {
            double e = rel_l2(gp[i], gd[i], lo->p[i].rows * lo->p[i].cols);
            worst = fmax(worst, e);
            CHECK_MSG(e <= 1e-5, "%s: packed gradient differs, relative L2 %.3g", lo->p[i].name, e);
        }
        printf("packed: loss sum %.8g vs per-document %.8g, worst gradient rel L2 %.3g over %d\n",
               packed, sum_docs, worst, lo->n_params);
        loom_train_graph_free(&tg);
    }
    /* the same tokens as one causal sequence: documents see each other */
    CHECK(loom_train_graph_build(&tg, m, lo, TP, false, false, err, sizeof err) == LOOM_OK);
    float l = NAN;
    CHECK(loom_train_graph_run(&tg, ptok, ptgt, &l, err, sizeof err) == LOOM_OK);
    /* (random weights attend weakly: the difference is ~3e-4 relative, 1000x
     * the packed check's agreement) */
    CHECK_MSG(fabs(l * counted - sum_docs) > 1e-4 * fabs(sum_docs),
              "unmasked causal loss %.8g equals the packed one", (double)l * counted);
    printf("one causal sequence instead: loss sum %.8g\n", (double)l * counted);
    loom_train_graph_free(&tg);
    /* bad layouts are refused */
    const int32_t bad[2] = {10, 5};
    CHECK(loom_train_graph_build_packed(&tg, m, lo, TP, bad, 2, true, false, err, sizeof err) ==
          LOOM_ERR_INVALID_ARG);
    for (int i = 0; i < lo->n_params; i++) {
        free(gp[i]);
        free(gd[i]);
    }
    loom_lora_free(lo);
    loom_model_free(m);
}

/* The packed sequence of test_graph with peft's adapter, against PyTorch. */
static void test_torch(const char *model_dir, const char *adir) {
    loom_model_params mp = loom_model_default_params();
    mp.backend = "cpu";
    mp.n_ctx = 16;
    mp.kv_dtype = LOOM_F32;
    mp.quantize = true;
    mp.quant = LOOM_F32;
    loom_model *m = NULL;
    loom_lora *lo = NULL;
    loom_safetensors *gs = NULL;
    char err[512], p[4200];
    snprintf(p, sizeof p, "%s/extra.safetensors", adir);
    CHECK_MSG(loom_model_load(model_dir, &mp, &m, err, sizeof err) == LOOM_OK, "%s", err);
    CHECK_MSG(m && loom_peft_load(adir, loom_model_config_of(m), &lo, err, sizeof err) == LOOM_OK,
              "%s", err);
    CHECK_MSG(loom_safetensors_open(p, &gs, err, sizeof err) == LOOM_OK, "%s", err);
    if (!m || !lo || !gs) goto out;
    const loom_model_config *mc = loom_model_config_of(m);
    int32_t tok[TP], tgt[TP], lens[ND + 1];
    int off = 0;
    for (int d = 0; d < ND; off += DOC_LEN[d++]) {
        lens[d] = DOC_LEN[d];
        for (int t = 0; t < DOC_LEN[d]; t++) {
            tok[off + t] = DOCS[off + t];
            tgt[off + t] = t + 1 < DOC_LEN[d] ? DOCS[off + t + 1] : -1;
        }
    }
    for (int t = 16; t < TP; t++) {
        tok[t] = 0;
        tgt[t] = -1;
    }
    lens[ND] = PAD;
    loom_train_graph tg;
    CHECK(loom_train_graph_build_packed(&tg, m, lo, TP, lens, ND + 1, true, false, err,
                                        sizeof err) == LOOM_OK);
    float l = NAN, ref = NAN;
    CHECK(loom_train_graph_run(&tg, tok, tgt, &l, err, sizeof err) == LOOM_OK);
    int64_t i = loom_safetensors_find(gs, "packed.loss");
    CHECK(i >= 0 && loom_safetensors_read(gs, i, LOOM_F32, &ref, 4) == LOOM_OK);
    CHECK_MSG(fabs(l - ref) <= 1e-5 * fabs(ref), "packed loss %.8g, transformers %.8g", l, ref);
    double worst = 0;
    for (int k = 0; k < lo->n_params; k++) {
        const loom_lora_param *pp = &lo->p[k];
        const int64_t n = pp->rows * pp->cols;
        float *g = malloc((size_t)n * 4), *gr = malloc((size_t)n * 4), *scr = malloc((size_t)n * 4);
        double *a = malloc((size_t)n * 8), *b = malloc((size_t)n * 8);
        char name[200];
        snprintf(name, sizeof name, "packed.grad.%s", pp->name);
        int64_t j = loom_safetensors_find(gs, name);
        CHECK_MSG(j >= 0, "golden has no %s", name);
        CHECK(loom_train_graph_grad(&tg, k, g) == LOOM_OK);
        if (pp->is_b) loom_peft_permute_rows(mc, pp->proj, true, g, pp->rows, pp->cols, scr);
        if (j >= 0 && loom_safetensors_read(gs, j, LOOM_F32, gr, (size_t)n * 4) == LOOM_OK) {
            for (int64_t e = 0; e < n; e++) {
                a[e] = g[e];
                b[e] = gr[e];
            }
            double r = rel_l2(a, b, n);
            worst = fmax(worst, r);
            CHECK_MSG(r <= 1e-4, "%s: gradient differs from transformers', relative L2 %.3g",
                      pp->name, r);
        }
        free(g);
        free(gr);
        free(scr);
        free(a);
        free(b);
    }
    printf("packed vs transformers + peft: loss %.8g vs %.8g, worst gradient rel L2 %.3g\n", l, ref,
           worst);
    loom_train_graph_free(&tg);
out:
    loom_safetensors_close(gs);
    loom_lora_free(lo);
    loom_model_free(m);
}

/* ---- the loop ---- */

static char root[64], model_path[128], data_path[128];

static bool make_model(void) {
    loom_tokenizer *tok = byte_tokenizer();
    char err[512];
    if (!tok) return false;
    loom_model_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.arch, sizeof c.arch, "llama");
    c.vocab_size = 261;
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
    c.eot_id = 258;
    loom_status st =
        loom_model_write_random_gguf(&c, LOOM_F32, 7, tok, model_path, err, sizeof err);
    loom_tokenizer_free(tok);
    CHECK_MSG(st == LOOM_OK, "write model: %s", err);
    return st == LOOM_OK;
}

static loom_finetune_params params(const char *out) {
    loom_finetune_params p = loom_finetune_default_params();
    p.model = model_path;
    p.data = data_path;
    p.out_dir = out;
    p.backend = "cpu";
    p.lora.r = 8;
    p.lora.dropout = 0.1f;
    p.lr = 1e-2f;
    p.grad_accum = 1;
    p.seq = 64;
    p.max_steps = 6;
    p.pack = true;
    p.quiet = true;
    return p;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) n = 0;
    if (b) b[n] = 0;
    fclose(f);
    return b;
}

/* Step lines of OUTDIR/train_log.jsonl without the timing fields. */
static char *curve(const char *out, int *max_tokens) {
    char p[300], line[1024];
    snprintf(p, sizeof p, "%s/train_log.jsonl", out);
    FILE *f = fopen(p, "r");
    char *acc = calloc(1, 1 << 16);
    size_t n = 0;
    while (f && fgets(line, sizeof line, f)) {
        const char *tk = strstr(line, "\"tokens\":");
        if (tk && atoi(tk + 9) > *max_tokens) *max_tokens = atoi(tk + 9);
        char *cut = strstr(line, ",\"tokens_per_s\"");
        if (!cut || !strstr(line, "\"loss\"")) continue;
        *cut = 0;
        n += (size_t)snprintf(acc + n, (1 << 16) - n, "%s\n", line);
    }
    if (f) fclose(f);
    return acc;
}

static void test_loop(void) {
    /* 12 short texts of 11-17 bytes (+ BOS, EOS): 3-4 per 64-token sequence */
    FILE *f = fopen(data_path, "w");
    const char *words[4] = {"alpha", "beta", "gamma", "delta"};
    for (int i = 0; i < 12; i++)
        fprintf(f, "{\"text\": \"%s %s %d\"}\n", words[i % 4], words[(i * 3 + 1) % 4], i * 37);
    fclose(f);
    char a[300], b[300], err[1024];
    snprintf(a, sizeof a, "%s/full", root);
    snprintf(b, sizeof b, "%s/split", root);
    loom_finetune_params p = params(a);
    p.max_steps = 0;
    p.epochs = 4;
    loom_finetune_result r;
    loom_status st = loom_finetune_run(&p, &r, err, sizeof err);
    CHECK_MSG(st == LOOM_OK, "finetune --pack: %s", err);
    /* 12 examples of 15-21 tokens: 3 per sequence of 64, 4 sequences per epoch */
    CHECK_MSG(r.steps >= 12 && r.steps <= 20, "%lld steps for 4 epochs", (long long)r.steps);
    CHECK_MSG(r.last_loss < 0.8 * r.first_loss, "packed training loss %.4f -> %.4f", r.first_loss,
              r.last_loss);
    printf("finetune --pack: %lld steps (4 epochs of 12 examples), loss %.4f -> %.4f\n",
           (long long)r.steps, r.first_loss, r.last_loss);
    int max_tok = 0;
    free(curve(a, &max_tok));
    CHECK_MSG(max_tok > 40, "at most %d trained tokens per step: not packed", max_tok);
    /* exact resume */
    p = params(a);
    snprintf(a, sizeof a, "%s/full6", root);
    p.out_dir = a;
    CHECK(loom_finetune_run(&p, NULL, err, sizeof err) == LOOM_OK);
    p.out_dir = b;
    p.save_every = 3;
    p.stop_after = 3;
    CHECK_MSG(loom_finetune_run(&p, NULL, err, sizeof err) == LOOM_OK, "first half: %s", err);
    p.stop_after = 0;
    p.resume = true;
    CHECK_MSG(loom_finetune_run(&p, NULL, err, sizeof err) == LOOM_OK, "resumed: %s", err);
    char *ca = curve(a, &max_tok), *cb = curve(b, &max_tok);
    CHECK_MSG(strcmp(ca, cb) == 0, "--pack: curves differ:\n--- uninterrupted\n%s--- resumed\n%s",
              ca, cb);
    free(ca);
    free(cb);
    char fa[400], fb[400];
    snprintf(fa, sizeof fa, "%s/adapter_model.safetensors", a);
    snprintf(fb, sizeof fb, "%s/adapter_model.safetensors", b);
    char *da = slurp(fa), *db = slurp(fb);
    CHECK_MSG(da && db && !strcmp(da, db), "--pack: adapters differ after resume");
    free(da);
    free(db);
}

int main(void) {
    const char *src = getenv("LOOM_SOURCE_DIR");
    char model_dir[4096], adir[4096];
    snprintf(model_dir, sizeof model_dir, "%s/tests/model/data/hf/llama_gqa", src ? src : ".");
    snprintf(adir, sizeof adir, "%s/tests/train/data/lora_golden", src ? src : ".");
    CHECK(loom_registry_init() == LOOM_OK);
    test_graph(model_dir);
    test_torch(model_dir, adir);
    snprintf(root, sizeof root, "/tmp/loom-pack-test-XXXXXX");
    CHECK(mkdtemp(root) != NULL);
    snprintf(model_path, sizeof model_path, "%s/m.gguf", root);
    snprintf(data_path, sizeof data_path, "%s/d.jsonl", root);
    if (make_model()) test_loop();
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK(system(cmd) == 0);
    loom_registry_shutdown();
    return test_summary("test_pack");
}
