/* tests/train/test_merge_lora.c - `loom merge-lora` (train/merge.h) on the
 * tiny transformers Llama of tests/model/data/hf/llama_gqa with the peft
 * adapter of tests/train/data/lora_golden (r 4, alpha 8, B non-zero, all
 * seven projections; scripts/gen_lora_golden.py):
 *   - merged at f32 from the Hugging Face directory, the model's decode
 *     logits equal peft's logits of base + adapter (golden.safetensors,
 *     mathematically what peft's merge_and_unload gives) and loom's own
 *     unmerged ones (the projection hook, `loom run --lora`), 1e-5 of their
 *     range. q/k rows: the adapter holds HF's order, the GGUF the permuted
 *     one, so a missed permutation fails here;
 *   - the same against peft's merge_and_unload (extra.safetensors,
 *     scripts/gen_lora_golden.py --extra): the merged model's logits, and
 *     its merged q_proj / k_proj / down_proj weights (GGUF rows put back in
 *     HF's order) to f32 rounding;
 *   - merged from a GGUF base (f16) stored at q8_0: the logits stay close to
 *     peft's (q8_0 rounding), much closer than the base without adapter;
 *   - weights the adapter does not touch are copied bit for bit;
 *   - an adapter of another shape is refused with a message naming it. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loom/gguf.h"
#include "loom/loom.h"
#include "loom/safetensors.h"
#include "testing.h"
#include "train/lora.h"
#include "train/merge.h"
#include "train/peft.h"

static const int32_t TOKENS[] = {1, 17, 200, 45, 3, 99, 128, 250, 5, 6, 7, 8}; /* golden.txt's */
#define T 12

static char adir[4096], model_dir[4096], tmpd[64];

static loom_model *load(const char *path, loom_dtype quant, bool quantize) {
    loom_model_params mp = loom_model_default_params();
    mp.backend = "cpu";
    mp.n_ctx = 16;
    mp.kv_dtype = LOOM_F32;
    mp.quantize = quantize;
    mp.quant = quant;
    loom_model *m = NULL;
    char err[512];
    CHECK_MSG(loom_model_load(path, &mp, &m, err, sizeof err) == LOOM_OK, "load %s: %s", path, err);
    return m;
}

/* All T positions' logits, [T][V]. */
static float *logits_of(loom_model *m) {
    const int64_t V = loom_model_config_of(m)->vocab_size;
    float *lg = malloc((size_t)(V * T) * sizeof *lg);
    int slot = 0;
    char err[512];
    loom_model_slot_clear(m, 0);
    loom_batch b = {
        .n_seq = 1, .n_tokens = T, .slots = &slot, .tokens = TOKENS, .all_logits = true};
    CHECK_MSG(loom_model_decode(m, &b, lg, err, sizeof err) == LOOM_OK, "decode: %s", err);
    return lg;
}

/* max |a - ref| / range(ref) */
static double rel_diff(const float *a, const float *ref, int64_t n) {
    double maxd = 0, lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        maxd = fmax(maxd, fabs((double)a[i] - ref[i]));
        lo = fmin(lo, ref[i]);
        hi = fmax(hi, ref[i]);
    }
    return maxd / (hi - lo);
}

static float *golden_logits(int64_t n) {
    char p[4200], err[512];
    snprintf(p, sizeof p, "%s/golden.safetensors", adir);
    loom_safetensors *gs = NULL;
    CHECK_MSG(loom_safetensors_open(p, &gs, err, sizeof err) == LOOM_OK, "%s", err);
    if (!gs) return NULL;
    int64_t i = loom_safetensors_find(gs, "logits");
    float *d = malloc((size_t)n * sizeof *d);
    CHECK(i >= 0 && loom_safetensors_read(gs, i, LOOM_F32, d, (size_t)n * 4) == LOOM_OK);
    loom_safetensors_close(gs);
    return d;
}

/* The merged weights against peft's merge_and_unload: the GGUF's f32 rows
 * put back in HF's order (q/k rows are permuted per head in GGUF). */
static void check_merged_weights(const char *path, const loom_model_config *mc,
                                 loom_safetensors *xs) {
    static const struct {
        const char *gguf, *hf;
        loom_proj proj;
    } W[3] = {
        {"blk.0.attn_q.weight", "merged.model.layers.0.self_attn.q_proj.weight", LOOM_PROJ_Q},
        {"blk.0.attn_k.weight", "merged.model.layers.0.self_attn.k_proj.weight", LOOM_PROJ_K},
        {"blk.1.ffn_down.weight", "merged.model.layers.1.mlp.down_proj.weight", LOOM_PROJ_DOWN}};
    loom_gguf *g = NULL;
    CHECK(loom_gguf_open(path, &g, NULL, 0) == LOOM_OK);
    for (int k = 0; g && k < 3; k++) {
        loom_gguf_tensor_info ti;
        int64_t i = loom_gguf_find_tensor(g, W[k].gguf), j = loom_safetensors_find(xs, W[k].hf);
        CHECK_MSG(i >= 0 && j >= 0, "%s / %s missing", W[k].gguf, W[k].hf);
        if (i < 0 || j < 0 || loom_gguf_tensor(g, i, &ti) != LOOM_OK) continue;
        const int64_t cols = ti.ne[0], rows = ti.ne[1], n = rows * cols;
        float *w = malloc((size_t)n * 4), *ref = malloc((size_t)n * 4),
              *scr = malloc((size_t)n * 4);
        memcpy(w, ti.data, (size_t)n * 4); /* f32 file */
        loom_peft_permute_rows(mc, W[k].proj, true, w, rows, cols, scr);
        CHECK(loom_safetensors_read(xs, j, LOOM_F32, ref, (size_t)n * 4) == LOOM_OK);
        double maxd = 0, maxw = 0;
        for (int64_t e = 0; e < n; e++) {
            maxd = fmax(maxd, fabs((double)w[e] - ref[e]));
            maxw = fmax(maxw, fabs((double)ref[e]));
        }
        CHECK_MSG(maxd <= 1e-6 * maxw, "%s vs peft's merged %s: max |diff| %.3g (max |w| %.3g)",
                  W[k].gguf, W[k].hf, maxd, maxw);
        printf("%s vs merge_and_unload: max |diff| %.3g of max |w| %.3g\n", W[k].gguf, maxd, maxw);
        free(w);
        free(ref);
        free(scr);
    }
    loom_gguf_close(g);
}

/* Same bytes for tensor name in both GGUFs? */
static bool same_tensor(const char *a, const char *b, const char *name) {
    loom_gguf *ga = NULL, *gb = NULL;
    bool same = false;
    if (loom_gguf_open(a, &ga, NULL, 0) == LOOM_OK && loom_gguf_open(b, &gb, NULL, 0) == LOOM_OK) {
        loom_gguf_tensor_info ta, tb;
        int64_t ia = loom_gguf_find_tensor(ga, name), ib = loom_gguf_find_tensor(gb, name);
        same = ia >= 0 && ib >= 0 && loom_gguf_tensor(ga, ia, &ta) == LOOM_OK &&
               loom_gguf_tensor(gb, ib, &tb) == LOOM_OK && ta.nbytes == tb.nbytes &&
               !memcmp(ta.data, tb.data, ta.nbytes);
    }
    loom_gguf_close(ga);
    loom_gguf_close(gb);
    return same;
}

int main(void) {
    const char *src = getenv("LOOM_SOURCE_DIR");
    snprintf(adir, sizeof adir, "%s/tests/train/data/lora_golden", src ? src : ".");
    snprintf(model_dir, sizeof model_dir, "%s/tests/model/data/hf/llama_gqa", src ? src : ".");
    snprintf(tmpd, sizeof tmpd, "/tmp/loom-merge-test-XXXXXX");
    CHECK(mkdtemp(tmpd) != NULL);
    CHECK(loom_registry_init() == LOOM_OK);
    char merged[4200], base16[4200], merged8[4200], base32[4200], err[1024];
    snprintf(merged, sizeof merged, "%s/merged_f32.gguf", tmpd);
    snprintf(base16, sizeof base16, "%s/base_f16.gguf", tmpd);
    snprintf(base32, sizeof base32, "%s/base_f32.gguf", tmpd);
    snprintf(merged8, sizeof merged8, "%s/merged_q8_0.gguf", tmpd);

    /* 1. HF base, f32 */
    int n = 0;
    loom_status s =
        loom_lora_merge_gguf(model_dir, adir, merged, LOOM_F32, NULL, &n, err, sizeof err);
    CHECK_MSG(s == LOOM_OK, "merge: %s", err);
    CHECK_MSG(n == 14, "%d weights merged, want 14 (2 layers x 7)", n);
    loom_model *mm = load(merged, LOOM_F32, false);
    loom_model *mb = load(model_dir, LOOM_F32, true);
    if (!mm || !mb) return test_summary("test_merge_lora");
    const int64_t V = loom_model_config_of(mm)->vocab_size;
    float *ref = golden_logits(V * T);
    float *lm = logits_of(mm), *lbase = logits_of(mb);
    double d_merged = rel_diff(lm, ref, V * T), d_base = rel_diff(lbase, ref, V * T);
    CHECK_MSG(d_merged <= 1e-5, "merged f32 vs peft: %.3g of the range", d_merged);
    /* the adapter must matter, or the check above proves nothing */
    CHECK_MSG(d_base > 1e-2, "base without adapter vs peft: only %.3g", d_base);
    printf("merged f32 vs peft (base + adapter): %.3g of range; base alone: %.3g\n", d_merged,
           d_base);
    /* loom's unmerged path */
    loom_lora *lo = NULL;
    CHECK_MSG(loom_peft_load(adir, loom_model_config_of(mb), &lo, err, sizeof err) == LOOM_OK, "%s",
              err);
    loom_lora_binding bind;
    CHECK(loom_lora_binding_init(&bind, lo, false) == LOOM_OK);
    CHECK(loom_model_set_proj_hook(mb, loom_lora_hook, &bind) == LOOM_OK);
    float *lhook = logits_of(mb);
    double d_hook = rel_diff(lm, lhook, V * T);
    CHECK_MSG(d_hook <= 1e-5, "merged f32 vs unmerged (hook): %.3g of the range", d_hook);
    printf("merged f32 vs loom unmerged (--lora): %.3g of range\n", d_hook);
    /* peft's merge_and_unload */
    char xp_path[4200];
    snprintf(xp_path, sizeof xp_path, "%s/extra.safetensors", adir);
    loom_safetensors *xs = NULL;
    CHECK_MSG(loom_safetensors_open(xp_path, &xs, err, sizeof err) == LOOM_OK, "%s", err);
    if (xs) {
        int64_t i = loom_safetensors_find(xs, "merged.logits");
        float *mref = malloc((size_t)(V * T) * sizeof *mref);
        CHECK(i >= 0 &&
              loom_safetensors_read(xs, i, LOOM_F32, mref, (size_t)(V * T) * 4) == LOOM_OK);
        double d_pm = rel_diff(lm, mref, V * T);
        CHECK_MSG(d_pm <= 1e-5, "merged f32 vs merge_and_unload: %.3g of the range", d_pm);
        printf("merged f32 vs peft merge_and_unload logits: %.3g of range\n", d_pm);
        free(mref);
        check_merged_weights(merged, loom_model_config_of(mm), xs);
        loom_safetensors_close(xs);
    }
    loom_lora_binding_free(&bind);
    loom_model_free(mb);

    /* untouched tensors go through as they are (base exported at f32) */
    loom_export_params xp = {.type = LOOM_F32};
    CHECK(loom_model_export_gguf(model_dir, base32, &xp, NULL, err, sizeof err) == LOOM_OK);
    CHECK(same_tensor(base32, merged, "token_embd.weight"));
    CHECK(same_tensor(base32, merged, "blk.1.attn_norm.weight"));
    CHECK(!same_tensor(base32, merged, "blk.1.attn_q.weight"));

    /* 2. GGUF base (f16), stored at q8_0 */
    xp.type = LOOM_F16;
    CHECK(loom_model_export_gguf(model_dir, base16, &xp, NULL, err, sizeof err) == LOOM_OK);
    s = loom_lora_merge_gguf(base16, adir, merged8, LOOM_Q8_0, NULL, &n, err, sizeof err);
    CHECK_MSG(s == LOOM_OK && n == 14, "merge q8_0: %s", err);
    loom_model *m8 = load(merged8, LOOM_F32, false);
    if (m8) {
        CHECK(strstr(loom_model_weight_types(m8), "q8_0") != NULL);
        float *l8 = logits_of(m8);
        double d8 = rel_diff(l8, ref, V * T);
        CHECK_MSG(d8 < 0.1 * d_base, "merged q8_0 vs peft: %.3g of range (base alone %.3g)", d8,
                  d_base);
        printf("merged q8_0 (from an f16 GGUF) vs peft: %.3g of range\n", d8);
        free(l8);
    }
    loom_model_free(m8);

    /* 3. an adapter for another model: a clear error, no output */
    char other[4200], bad_out[4200];
    snprintf(other, sizeof other, "%s/other", tmpd);
    snprintf(bad_out, sizeof bad_out, "%s/bad.gguf", tmpd);
    loom_model_config oc = *loom_model_config_of(mm);
    oc.ffn_dim *= 2;
    loom_lora_config lc = {.r = 2, .alpha = 4, .dropout = 0, .targets = LOOM_LORA_ALL_TARGETS};
    loom_lora *lo2 = NULL;
    CHECK(loom_lora_new(&oc, &lc, 3, &lo2, err, sizeof err) == LOOM_OK);
    CHECK(mkdir(other, 0755) == 0);
    CHECK(loom_peft_save(other, lo2, "other", err, sizeof err) == LOOM_OK);
    s = loom_lora_merge_gguf(base16, other, bad_out, LOOM_F16, NULL, NULL, err, sizeof err);
    CHECK_MSG(s != LOOM_OK && strstr(err, "merge-lora: ") == err && strstr(err, "gate_proj"),
              "another model's adapter: status %d, '%s'", (int)s, err);
    printf("another model's adapter: %s\n", err);
    CHECK(access(bad_out, F_OK) != 0);
    loom_lora_free(lo2);

    free(ref);
    free(lm);
    free(lbase);
    free(lhook);
    loom_lora_free(lo);
    loom_model_free(mm);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpd);
    CHECK(system(cmd) == 0);
    return test_summary("test_merge_lora");
}
