/* tests/model/test_hf_quant_load.c - quantize-on-load of Hugging Face
 * checkpoints (loom_model_load on a directory, `loom run -m HFDIR --quant`;
 * docs/adr/0012) against the transformers reference logits of
 * tests/model/data/hf/<name>/ (scripts/gen_hf_golden.py).
 *
 * For llama_gqa (dense, GQA, llama3 rope, f16 checkpoint) and mixtral_moe
 * (8 experts top-2, sharded bf16 checkpoint), loaded on the cpu backend with
 * an f16 KV cache and quant q8_0, q4_0 and nf4, asserted:
 *   - the weight types: "q8_0" / "q4_0" (norms and router f32 are not
 *     listed), "f16+nf4_dq" for nf4 (embedding and LM head f16, every other
 *     matrix nf4 with double quantization);
 *   - NMSE of all positions' logits against transformers' <= HF_NMSE[quant]
 *     (dense) / HF_NMSE_MOE[quant] (MoE);
 *   - top-1 agreement with transformers at the prompt positions, and at
 *     every "decisive" one (bounds and measurements below);
 *   - greedy tokens, teacher-forced: after the prompt, at each of the
 *     recorded greedy steps loom's argmax is compared with transformers'
 *     token, and transformers' token is fed next (so one miss does not
 *     derail the rest). At least HF_TOP1[quant] of all steps must agree
 *     (over both prompts of a model). The free-running greedy match (loom's
 *     own tokens fed back) is printed, not asserted;
 *   - q8_0 from the directory gives logits bit-identical to converting with
 *     loom_hf_write_gguf to q8_0 and loading that file (the same converter);
 *   - loom_model_export_gguf of the directory writes a loadable GGUF with
 *     general.file_type set; a tokenizer.json with more tokens than
 *     vocab_size is refused with a message saying so. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loom/gguf.h"
#include "loom/model.h"
#include "loom/runtime.h"
#include "loom/safetensors.h"
#include "model/hf_golden.h"
#include "testing.h"

/* Measured on the cpu backend: NMSE of the logits; top-1 agreement at the
 * 28 prompt positions; teacher-forced greedy agreement over 16 steps:
 *             llama_gqa                 mixtral_moe
 *   q8_0   5.0e-4, 28/28, 15/16      1.6e-2, 26/28, 14/16
 *   q4_0   1.0e-1, 21/28, 10/16      1.9e-1,  9/28, 11/16
 *   nf4    7.6e-2, 19/28,  8/16      1.4e-1, 17/28, 11/16
 * These reference models are tiny (hidden 64) with random normal(0, 0.02)
 * weights: their logits are nearly flat (top-1 minus top-2 is 0.36 at the
 * median prompt position and 0.002 at the closest greedy step), while 4-bit
 * weights leave ~0.3 RMS of logit error, so 4-bit top-1 picks flip often;
 * that is the quantization, not a loader bug (a layout bug gives NMSE ~1
 * and chance agreement, 1/256). The MoE model adds top-2 routing flips
 * (test_hf_golden.c). nf4 beats q4_0 on these normal weights, the
 * distribution its codebook is built for. Asserted:
 *   NMSE <= HF_NMSE (dense) / HF_NMSE_MOE (MoE): ~2x the measured;
 *   prompt-position top-1 agreement >= HF_POS_TOP1, teacher-forced greedy
 *   agreement >= HF_TOP1 (fractions; chance is 0.4%);
 *   at every "decisive" prompt position, where transformers' top-1 leads
 *   its top-2 by more than DECISIVE x the RMS logit error there, loom's
 *   top-1 is the same (q8_0: 23 of 28 and 17 of 28 positions are decisive;
 *   4-bit: at most 1, its noise is too large). */
enum { Q8, Q4, NF4, NQ };
static const loom_dtype k_quant[NQ] = {LOOM_Q8_0, LOOM_Q4_0, LOOM_NF4};
static const char *const k_qname[NQ] = {"q8_0", "q4_0", "nf4"};
static const char *const k_wtypes[NQ] = {"q8_0", "q4_0", "f16+nf4_dq"};
static const double HF_NMSE[NQ] = {1e-3, 0.25, 0.2};
static const double HF_NMSE_MOE[NQ] = {5e-2, 0.4, 0.3};
static const double HF_POS_TOP1[NQ] = {0.9, 0.25, 0.5};
static const double HF_TOP1[NQ] = {0.8, 0.4, 0.4};
#define DECISIVE 4.0

static int argmax(const float *x, int64_t n) {
    int best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = (int)i;
    return best;
}

static loom_model *load_dir(const char *dir, bool quantize, loom_dtype q, char *wtypes, size_t wn) {
    loom_model_params p = loom_model_default_params();
    p.backend = "cpu";
    p.kv_dtype = LOOM_F16;
    p.n_ctx = 64;
    p.quantize = quantize;
    p.quant = q;
    loom_model *m = NULL;
    char err[768];
    loom_status s = loom_model_load(dir, &p, &m, err, sizeof err);
    CHECK_MSG(s == LOOM_OK, "load %s: %s", dir, err);
    if (m && wtypes) snprintf(wtypes, wn, "%s", loom_model_weight_types(m));
    return m;
}

/* All-position logits of every prompt, concatenated like logits.bin. */
static float *all_logits(loom_model *m, const hf_golden *g) {
    int64_t total = 0;
    for (int p = 0; p < g->n_prompts; p++)
        total += (int64_t)g->prompts[p].n_tokens * g->vocab_size;
    float *out = malloc((size_t)total * sizeof *out + 1);
    char err[512];
    for (int p = 0; p < g->n_prompts; p++) {
        const hf_golden_prompt *pr = &g->prompts[p];
        int slot = 0;
        loom_model_slot_clear(m, slot);
        loom_batch b = {1, pr->n_tokens, &slot, pr->tokens, true};
        loom_status s = loom_model_decode(m, &b, out + pr->logits_offset, err, sizeof err);
        CHECK_MSG(s == LOOM_OK, "%s: decode: %s", g->name, err);
    }
    return out;
}

/* Greedy steps: teacher-forced agreement (returned) and free-running match. */
static void greedy(loom_model *m, const hf_golden *g, int *agree, int *steps, int *free_match) {
    const int64_t V = g->vocab_size;
    float *lg = malloc((size_t)V * sizeof *lg);
    char err[512];
    for (int p = 0; p < g->n_prompts; p++) {
        const hf_golden_prompt *pr = &g->prompts[p];
        for (int forced = 1; forced >= 0; forced--) {
            int slot = 0;
            loom_model_slot_clear(m, slot);
            loom_batch b = {1, pr->n_tokens, &slot, pr->tokens, false};
            if (loom_model_decode(m, &b, lg, err, sizeof err) != LOOM_OK) break;
            bool still = true;
            for (int k = 0; k < pr->n_generated; k++) {
                int32_t tok = argmax(lg, V);
                if (forced) {
                    *agree += tok == pr->generated[k];
                    (*steps)++;
                    tok = pr->generated[k];
                } else {
                    still = still && tok == pr->generated[k];
                    *free_match += still;
                }
                if (k + 1 == pr->n_generated) break;
                loom_batch step = {1, 1, &slot, &tok, false};
                if (loom_model_decode(m, &step, lg, err, sizeof err) != LOOM_OK) break;
            }
        }
    }
    free(lg);
}

static void check_quant(const hf_golden *g) {
    int64_t total = 0;
    for (int p = 0; p < g->n_prompts; p++)
        total += (int64_t)g->prompts[p].n_tokens * g->vocab_size;
    for (int q = 0; q < NQ; q++) {
        char wt[64] = "";
        loom_model *m = load_dir(g->dir, true, k_quant[q], wt, sizeof wt);
        if (!m) continue;
        CHECK_MSG(!strcmp(wt, k_wtypes[q]), "%s --quant %s: weight types '%s', want '%s'", g->name,
                  k_qname[q], wt, k_wtypes[q]);
        float *got = all_logits(m, g);
        double num = 0, den = 0;
        for (int64_t i = 0; i < total; i++) {
            double d = (double)got[i] - g->logits[i];
            num += d * d;
            den += (double)g->logits[i] * g->logits[i];
        }
        double nmse = num / den, bound = g->n_experts ? HF_NMSE_MOE[q] : HF_NMSE[q];
        /* prompt positions: where transformers' top-1 leads its top-2 by more
         * than DECISIVE x the RMS logit error there, loom must pick it too */
        int n_pos = 0, n_decisive = 0, n_dec_agree = 0, n_agree = 0;
        const int64_t V = g->vocab_size;
        for (int64_t t = 0; t < total / V; t++) {
            const float *w = g->logits + t * V, *o = got + t * V;
            int top = argmax(w, V);
            double second = -INFINITY, e2 = 0;
            for (int64_t i = 0; i < V; i++) {
                if (i != top && w[i] > second) second = w[i];
                e2 += ((double)o[i] - w[i]) * ((double)o[i] - w[i]);
            }
            bool agree = argmax(o, V) == top, decisive = w[top] - second > DECISIVE * sqrt(e2 / V);
            n_pos++;
            n_agree += agree;
            n_decisive += decisive;
            n_dec_agree += decisive && agree;
        }
        int agree = 0, steps = 0, free_match = 0;
        greedy(m, g, &agree, &steps, &free_match);
        printf("%s --quant %-4s: weights %s, logits NMSE %.3g (bound %g); prompt positions: "
               "top-1 agrees at %d/%d (need >= %.0f%%), decisive %d (agree %d); greedy "
               "teacher-forced %d/%d (need >= %.0f%%), free-running %d/%d\n",
               g->name, k_qname[q], wt, nmse, bound, n_agree, n_pos, 100 * HF_POS_TOP1[q],
               n_decisive, n_dec_agree, agree, steps, 100 * HF_TOP1[q], free_match, steps);
        CHECK_MSG(n_dec_agree == n_decisive,
                  "%s --quant %s: top-1 at %d of %d decisive positions (of %d)", g->name,
                  k_qname[q], n_dec_agree, n_decisive, n_pos);
        CHECK_MSG(n_agree >= HF_POS_TOP1[q] * n_pos - 1e-9,
                  "%s --quant %s: top-1 at %d of %d prompt positions", g->name, k_qname[q], n_agree,
                  n_pos);
        CHECK_MSG(nmse <= bound, "%s --quant %s: NMSE %g > %g", g->name, k_qname[q], nmse, bound);
        CHECK_MSG(steps > 0 && agree >= HF_TOP1[q] * steps - 1e-9,
                  "%s --quant %s: greedy %d of %d steps agree", g->name, k_qname[q], agree, steps);
        if (q == Q8) {
            /* the same converter as loom_hf_write_gguf + loading the file */
            char path[256], err[768];
            snprintf(path, sizeof path, "/tmp/loom_test_hfq_%s_%d.gguf", g->name, (int)getpid());
            loom_model_config c;
            loom_safetensors *st = NULL;
            CHECK(loom_hf_config_load(g->dir, &c, err, sizeof err) == LOOM_OK);
            CHECK(loom_safetensors_open(g->dir, &st, err, sizeof err) == LOOM_OK);
            CHECK_MSG(st && loom_hf_write_gguf(st, &c, LOOM_Q8_0, path, err, sizeof err) == LOOM_OK,
                      "%s", err);
            loom_safetensors_close(st);
            loom_model *f = load_dir(path, false, LOOM_F32, NULL, 0);
            unlink(path);
            if (f) {
                float *fl = all_logits(f, g);
                CHECK_MSG(!memcmp(fl, got, (size_t)total * sizeof *fl),
                          "%s: --quant q8_0 differs from converting to a q8_0 GGUF", g->name);
                free(fl);
                loom_model_free(f);
            }
        }
        free(got);
        loom_model_free(m);
    }
}

static void check_export(const hf_golden *g) {
    char out[256], err[768];
    snprintf(out, sizeof out, "/tmp/loom_test_hfx_%s_%d.gguf", g->name, (int)getpid());
    loom_export_params p = {.type = LOOM_F16};
    loom_export_stats st = {0};
    loom_status s = loom_model_export_gguf(g->dir, out, &p, &st, err, sizeof err);
    CHECK_MSG(s == LOOM_OK, "%s: export: %s", g->name, err);
    printf("%s: exported to f16: %lld tensors, %zu bytes\n", g->name, (long long)st.n_tensors,
           st.bytes_out);
    loom_gguf *gg = NULL;
    uint32_t ft = 99;
    CHECK(s == LOOM_OK && loom_gguf_open(out, &gg, err, sizeof err) == LOOM_OK &&
          loom_gguf_get_u32(gg, "general.file_type", &ft) == LOOM_OK && ft == 1 &&
          st.n_tensors == loom_gguf_n_tensors(gg));
    loom_gguf_close(gg);
    loom_model *m = load_dir(out, false, LOOM_F32, NULL, 0);
    CHECK(m != NULL);
    loom_model_free(m);
    unlink(out);

    /* a checkpoint directory with a tokenizer larger than its vocabulary */
    const char *src = getenv("LOOM_SOURCE_DIR");
    char dir[256], cmd[4096];
    snprintf(dir, sizeof dir, "/tmp/loom_test_hftok_%s_%d", g->name, (int)getpid());
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s && ln -sf %s/* %s/ && ln -sf "
             "%s/model/data/llama3-tokenizer/tokenizer.json %s/tokenizer.json",
             dir, g->dir, dir, src ? src : ".", dir);
    CHECK(system(cmd) == 0);
    s = loom_model_export_gguf(dir, out, &p, NULL, err, sizeof err);
    CHECK_MSG(s == LOOM_ERR_INVALID_ARG && strstr(err, "tokenizer has 128256 tokens") &&
                  strstr(err, "vocab_size"),
              "%s: tokenizer mismatch: %d '%s'", g->name, (int)s, err);
    CHECK(access(out, F_OK) != 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

int main(void) {
    CHECK(loom_registry_init() == LOOM_OK);
    static const char *const names[] = {"llama_gqa", "mixtral_moe"};
    for (int i = 0; i < 2; i++) {
        hf_golden g;
        char err[512];
        loom_status s = hf_golden_load(names[i], &g, err, sizeof err);
        CHECK_MSG(s == LOOM_OK, "%s: %s", names[i], err);
        if (s != LOOM_OK) continue;
        check_quant(&g);
        check_export(&g);
        hf_golden_free(&g);
    }
    loom_registry_shutdown();
    return test_summary("test_hf_quant_load");
}
