/* tests/train/test_lora_golden.c - loom's LoRA against PyTorch + peft
 * (tests/train/data/lora_golden, written by scripts/gen_lora_golden.py) on
 * the tiny transformers Llama of tests/model/data/hf/llama_gqa:
 *   - loom_peft_load reads peft's adapter (q/k B rows permuted into the
 *     GGUF layout), and loom_peft_save writes the same tensors back bit for
 *     bit (rows permuted back);
 *   - logits, masked-prompt loss and every lora_A / lora_B gradient agree
 *     with peft's, in the training graph and (logits) in the decode graph
 *     through the KV cache with the adapter applied unmerged. Tolerances from f32: both sides
 * compute in f32 with different reduction orders (and loom's attention backward through the
 *     decomposition), so agreement is to a few hundred ulps of the values'
 *     scale: logits 1e-5 of their range, loss 1e-5 relative, gradients
 *     relative L2 error 1e-4 per tensor;
 *   - two AdamW steps with global-norm clipping from the same gradients give
 *     torch.optim.AdamW's weights (1e-6 relative L2), and the cosine
 *     schedule equals transformers' get_cosine_schedule_with_warmup. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loom/loom.h"
#include "loom/safetensors.h"
#include "testing.h"
#include "train/finetune.h"
#include "train/peft.h"

#define MAXT 64

static char dir[4096], model_dir[4096];
static int32_t tokens[MAXT], targets[MAXT];
static int T;
static double g_loss, g_norm;

static bool read_golden_txt(void) {
    char p[4200];
    snprintf(p, sizeof p, "%s/golden.txt", dir);
    FILE *f = fopen(p, "r");
    if (!f) return false;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        char *s = line;
        int n, k;
        if (!strncmp(s, "tokens ", 7) || !strncmp(s, "targets ", 8)) {
            int32_t *dst = s[1] == 'o' ? tokens : targets;
            s = strchr(s, ' ');
            if (sscanf(s, "%d%n", &n, &k) != 1 || n > MAXT) break;
            s += k;
            T = n;
            for (int i = 0; i < n; i++) {
                sscanf(s, "%d%n", &dst[i], &k);
                s += k;
            }
        } else if (!strncmp(s, "loss ", 5)) {
            g_loss = atof(s + 5);
        } else if (!strncmp(s, "grad_norm ", 10)) {
            g_norm = atof(s + 10);
        }
    }
    fclose(f);
    return T > 0;
}

static float *tensor(loom_safetensors *st, const char *name, int64_t n) {
    int64_t i = loom_safetensors_find(st, name);
    CHECK_MSG(i >= 0, "golden has no %s", name);
    if (i < 0) return NULL;
    loom_st_tensor_info info;
    loom_safetensors_tensor(st, i, &info);
    CHECK_MSG(info.n_elements == n, "%s: %lld elements, want %lld", name,
              (long long)info.n_elements, (long long)n);
    float *d = malloc((size_t)n * sizeof *d);
    CHECK(loom_safetensors_read(st, i, LOOM_F32, d, (size_t)n * 4) == LOOM_OK);
    return d;
}

static double rel_l2(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1e-30));
}

static void test_forward_backward(loom_model *m, loom_lora *lo, loom_safetensors *gs) {
    const loom_model_config *mc = loom_model_config_of(m);
    loom_train_graph tg;
    char err[512];
    loom_status st = loom_train_graph_build(&tg, m, lo, T, true, true, err, sizeof err);
    CHECK_MSG(st == LOOM_OK, "build: %s", err);
    if (st != LOOM_OK) return;
    float loss = NAN;
    CHECK(loom_train_graph_run(&tg, tokens, targets, &loss, err, sizeof err) == LOOM_OK);
    CHECK_MSG(fabs(loss - g_loss) <= 1e-5 * fabs(g_loss), "loss %.8g, peft %.8g", loss, g_loss);
    const int64_t V = mc->vocab_size;
    float *lg = malloc((size_t)(V * T) * 4), *ref = tensor(gs, "logits", V * T);
    CHECK(loom_tensor_download(tg.io.logits, lg, (size_t)(V * T) * 4) == LOOM_OK);
    double maxd = 0, lo_ = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; ref && i < V * T; i++) {
        maxd = fmax(maxd, fabs((double)lg[i] - ref[i]));
        lo_ = fmin(lo_, ref[i]);
        hi = fmax(hi, ref[i]);
    }
    CHECK_MSG(maxd <= 1e-5 * (hi - lo_), "logits differ by %.3g (range %.3g)", maxd, hi - lo_);
    printf("logits: max |diff| %.3g of range %.3g; loss %.8g vs %.8g\n", maxd, hi - lo_, loss,
           g_loss);
    free(lg);
    free(ref);
    double worst = 0;
    for (int i = 0; i < lo->n_params; i++) {
        loom_lora_param *p = &lo->p[i];
        int64_t n = p->rows * p->cols;
        float *g = malloc((size_t)n * 4), *scratch = malloc((size_t)n * 4);
        CHECK(loom_train_graph_grad(&tg, i, g) == LOOM_OK);
        if (p->is_b) loom_peft_permute_rows(mc, p->proj, true, g, p->rows, p->cols, scratch);
        char name[160];
        snprintf(name, sizeof name, "grad.%s", p->name);
        float *r = tensor(gs, name, n);
        if (r) {
            double e = rel_l2(g, r, n);
            worst = fmax(worst, e);
            CHECK_MSG(e < 1e-4, "%s: relative L2 error %.3g vs peft", name, e);
        }
        free(r);
        free(g);
        free(scratch);
    }
    printf("gradients: worst relative L2 error %.3g over %d tensors\n", worst, lo->n_params);
    loom_train_graph_free(&tg);
}

/* Inference with the adapter, unmerged (loom run --lora): the decode graph
 * through the KV cache with the projection hook gives peft's logits. */
static void test_decode_with_adapter(loom_model *m, loom_lora *lo, loom_safetensors *gs) {
    const int64_t V = loom_model_config_of(m)->vocab_size;
    loom_lora_binding b;
    CHECK(loom_lora_binding_init(&b, lo, false) == LOOM_OK);
    CHECK(loom_model_set_proj_hook(m, loom_lora_hook, &b) == LOOM_OK);
    float *lg = malloc((size_t)(V * T) * 4), *ref = tensor(gs, "logits", V * T);
    int slot = 0;
    char err[512];
    /* building a training graph in between leaves the decode hook alone */
    loom_train_graph tg;
    CHECK(loom_train_graph_build(&tg, m, lo, 4, false, false, err, sizeof err) == LOOM_OK);
    loom_train_graph_free(&tg);
    loom_model_slot_clear(m, 0);
    /* two chunks, so the second attends over cached keys of the first */
    loom_batch b1 = {
        .n_seq = 1, .n_tokens = 5, .slots = &slot, .tokens = tokens, .all_logits = true};
    loom_batch b2 = {
        .n_seq = 1, .n_tokens = T - 5, .slots = &slot, .tokens = tokens + 5, .all_logits = true};
    CHECK_MSG(loom_model_decode(m, &b1, lg, err, sizeof err) == LOOM_OK, "decode: %s", err);
    CHECK_MSG(loom_model_decode(m, &b2, lg + 5 * V, err, sizeof err) == LOOM_OK, "decode: %s", err);
    double maxd = 0, lo_ = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; ref && i < V * T; i++) {
        maxd = fmax(maxd, fabs((double)lg[i] - ref[i]));
        lo_ = fmin(lo_, ref[i]);
        hi = fmax(hi, ref[i]);
    }
    CHECK_MSG(maxd <= 1e-5 * (hi - lo_), "decode with adapter: logits differ by %.3g (range %.3g)",
              maxd, hi - lo_);
    printf("decode with the adapter (KV cache, unmerged): max |diff| %.3g of range %.3g\n", maxd,
           hi - lo_);
    CHECK(loom_model_set_proj_hook(m, NULL, NULL) == LOOM_OK);
    loom_model_slot_clear(m, 0);
    free(lg);
    free(ref);
    loom_lora_binding_free(&b);
}

/* AdamW + clipping on peft's gradients, in HF layout (elementwise, so the
 * row order does not matter). */
static void test_optimizer(loom_lora *lo, loom_safetensors *gs, loom_safetensors *ad) {
    const int np = lo->n_params;
    float **w = calloc((size_t)np, sizeof *w), **g = calloc((size_t)np, sizeof *g);
    float **g0 = calloc((size_t)np, sizeof *g0);
    int64_t *sz = calloc((size_t)np, sizeof *sz);
    char name[160];
    for (int i = 0; i < np; i++) {
        sz[i] = lo->p[i].rows * lo->p[i].cols;
        w[i] = tensor(ad, lo->p[i].name, sz[i]);
        snprintf(name, sizeof name, "grad.%s", lo->p[i].name);
        g0[i] = tensor(gs, name, sz[i]);
        g[i] = malloc((size_t)sz[i] * 4);
        if (!w[i] || !g0[i]) return;
    }
    loom_adamw_params hp = {.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.1f};
    loom_optim *o;
    CHECK(loom_adamw_new(&hp, np, sz, &o) == LOOM_OK);
    double norm0 = 0;
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < np; i++)
            memcpy(g[i], g0[i], (size_t)sz[i] * 4);
        double nrm = loom_clip_grad_norm(g, sz, np, 0.5);
        if (s == 0) norm0 = nrm;
        loom_optim_step(o, w, g, sz, 1e-2f);
    }
    CHECK_MSG(fabs(norm0 - g_norm) <= 1e-5 * g_norm, "grad norm %.8g, torch %.8g", norm0, g_norm);
    double worst = 0;
    for (int i = 0; i < np; i++) {
        snprintf(name, sizeof name, "after.%s", lo->p[i].name);
        float *r = tensor(gs, name, sz[i]);
        if (r) {
            double e = rel_l2(w[i], r, sz[i]);
            worst = fmax(worst, e);
            CHECK_MSG(e < 1e-6, "%s: relative L2 error %.3g vs torch AdamW", name, e);
        }
        free(r);
        free(w[i]);
        free(g[i]);
        free(g0[i]);
    }
    printf("adamw: worst relative L2 error %.3g after two steps\n", worst);
    loom_optim_free(o);
    free(w);
    free(g);
    free(g0);
    free(sz);
    float *lrs = tensor(gs, "lr_schedule", 11);
    for (int s = 0; lrs && s <= 10; s++)
        CHECK_MSG(fabsf(loom_lr_cosine(1.0f, s, 3, 10) - lrs[s]) <= 1e-7f,
                  "lr multiplier at step %d: %.9g, transformers %.9g", s,
                  (double)loom_lr_cosine(1.0f, s, 3, 10), (double)lrs[s]);
    free(lrs);
}

/* save what was loaded: the same tensors, byte for byte */
static void test_save_roundtrip(loom_lora *lo, loom_safetensors *ad) {
    char tmpl[] = "/tmp/loom_peft_XXXXXX", err[512];
    char *d = mkdtemp(tmpl);
    CHECK(d != NULL);
    if (!d) return;
    CHECK_MSG(loom_peft_save(d, lo, "base", err, sizeof err) == LOOM_OK, "save: %s", err);
    char p[4200];
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", d);
    loom_safetensors *st;
    CHECK(loom_safetensors_open(p, &st, err, sizeof err) == LOOM_OK);
    int same = 0;
    for (int i = 0; i < lo->n_params; i++) {
        int64_t n = lo->p[i].rows * lo->p[i].cols;
        float *a = tensor(st, lo->p[i].name, n), *b = tensor(ad, lo->p[i].name, n);
        same += a && b && memcmp(a, b, (size_t)n * 4) == 0;
        free(a);
        free(b);
    }
    CHECK_MSG(same == lo->n_params, "%d of %d tensors written back unchanged", same, lo->n_params);
    CHECK(loom_safetensors_n_tensors(st) == lo->n_params);
    loom_safetensors_close(st);
    /* and loads back into the same adapter config */
    loom_lora *lo2 = NULL;
    CHECK_MSG(loom_peft_load(d, &lo->mc, &lo2, err, sizeof err) == LOOM_OK, "reload: %s", err);
    if (lo2)
        CHECK(lo2->cfg.r == lo->cfg.r && lo2->cfg.alpha == lo->cfg.alpha &&
              lo2->cfg.targets == lo->cfg.targets);
    loom_lora_free(lo2);
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", d);
    unlink(p);
    snprintf(p, sizeof p, "%s/adapter_config.json", d);
    unlink(p);
    rmdir(d);
}

int main(void) {
    const char *src = getenv("LOOM_SOURCE_DIR");
    snprintf(dir, sizeof dir, "%s/tests/train/data/lora_golden", src ? src : ".");
    snprintf(model_dir, sizeof model_dir, "%s/tests/model/data/hf/llama_gqa", src ? src : ".");
    CHECK_MSG(read_golden_txt(), "cannot read %s/golden.txt", dir);
    CHECK(loom_registry_init() == LOOM_OK);
    loom_model_params mp = loom_model_default_params();
    mp.backend = "cpu";
    mp.n_ctx = 16;
    mp.kv_dtype = LOOM_F32;
    mp.quantize = true;
    mp.quant = LOOM_F32;
    loom_model *m = NULL;
    char err[512], p[4200];
    CHECK_MSG(loom_model_load(model_dir, &mp, &m, err, sizeof err) == LOOM_OK, "%s", err);
    loom_lora *lo = NULL;
    if (m)
        CHECK_MSG(loom_peft_load(dir, loom_model_config_of(m), &lo, err, sizeof err) == LOOM_OK,
                  "peft load: %s", err);
    loom_safetensors *gs = NULL, *ad = NULL;
    snprintf(p, sizeof p, "%s/golden.safetensors", dir);
    CHECK(loom_safetensors_open(p, &gs, err, sizeof err) == LOOM_OK);
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    CHECK(loom_safetensors_open(p, &ad, err, sizeof err) == LOOM_OK);
    if (m && lo && gs && ad) {
        CHECK(lo->cfg.r == 4 && lo->cfg.alpha == 8.0f && lo->n_params == 28);
        test_forward_backward(m, lo, gs);
        test_decode_with_adapter(m, lo, gs);
        test_optimizer(lo, gs, ad);
        test_save_roundtrip(lo, ad);
    }
    loom_safetensors_close(gs);
    loom_safetensors_close(ad);
    loom_lora_free(lo);
    loom_model_free(m);
    loom_registry_shutdown();
    return test_summary("test_lora_golden");
}
