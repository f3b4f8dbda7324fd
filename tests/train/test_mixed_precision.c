/* tests/train/test_mixed_precision.c - mixed-precision training graphs
 * (docs/adr/0041-mixed-precision-training.md) on the tiny transformers
 * Llama of tests/model/data/hf/llama_gqa with the committed peft adapter of
 * tests/train/data/lora_golden:
 *   - bf16 and f16 step graphs give the f32 graph's loss and LoRA gradients
 *     within the precision's rounding (loss 1e-2 relative for bf16, 2e-3 for
 *     f16; gradients relative L2 4e-2 / 8e-3 per tensor), and differ from it
 *     (the casts are there: a graph that silently ran f32 fails);
 *   - they match PyTorch + peft under torch.autocast("cpu", bf16 / f16)
 *     (tests/train/data/lora_golden/autocast.safetensors, written by
 *     scripts/gen_lora_golden.py --autocast) within the same tolerances. Both
 *     sides round the matmul inputs; PyTorch also rounds matmul outputs and
 *     runs attention's matmuls in the low precision, loom keeps f32 there,
 *     hence tolerances of a few bf16 ulps rather than f32's 1e-4;
 *   - f16 with a loss scale: the gradients read back are the scale times the
 *     unscaled ones (the unscaled within f16 rounding of the f32 graph's),
 *     and a scale that overflows f16 in the backward gives non-finite
 *     gradients (what GradScaler's skip detects). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/loom.h"
#include "loom/safetensors.h"
#include "testing.h"
#include "train/finetune.h"
#include "train/peft.h"

#define MAXT 64

static char dir[4096], model_dir[4096];
static int32_t tokens[MAXT], targets[MAXT];
static int T;

static bool read_golden_txt(void) {
    char p[4200];
    snprintf(p, sizeof p, "%s/golden.txt", dir);
    FILE *f = fopen(p, "r");
    if (!f) return false;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        char *s = line;
        int n, k;
        if (strncmp(s, "tokens ", 7) && strncmp(s, "targets ", 8)) continue;
        int32_t *dst = s[1] == 'o' ? tokens : targets;
        s = strchr(s, ' ');
        if (sscanf(s, "%d%n", &n, &k) != 1 || n > MAXT) break;
        s += k;
        T = n;
        for (int i = 0; i < n; i++) {
            sscanf(s, "%d%n", &dst[i], &k);
            s += k;
        }
    }
    fclose(f);
    return T > 0;
}

static double rel_l2(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1e-30));
}

/* One step graph's loss and gradients (HF row order, scale divided out). */
typedef struct result {
    float loss;
    float **g;
    bool finite;
} result;

static bool run_graph(loom_model *m, loom_lora *lo, loom_dtype prec, float scale, result *r) {
    const loom_model_config *mc = loom_model_config_of(m);
    loom_train_graph tg;
    char err[512];
    loom_status st = loom_train_graph_build(
        &tg, m, lo, T, LOOM_TG_BACKWARD | loom_train_precision_mode(prec), false, err, sizeof err);
    CHECK_MSG(st == LOOM_OK, "build %s: %s", loom_dtype_name(prec), err);
    if (st != LOOM_OK) return false;
    CHECK(prec != LOOM_F16 || tg.loss_scale != NULL);
    tg.scale = scale;
    st = loom_train_graph_run(&tg, tokens, targets, &r->loss, err, sizeof err);
    CHECK_MSG(st == LOOM_OK, "run %s: %s", loom_dtype_name(prec), err);
    r->g = calloc((size_t)lo->n_params, sizeof *r->g);
    r->finite = true;
    for (int i = 0; st == LOOM_OK && i < lo->n_params; i++) {
        loom_lora_param *p = &lo->p[i];
        const int64_t n = p->rows * p->cols;
        float *scratch = malloc((size_t)n * 4);
        r->g[i] = malloc((size_t)n * 4);
        CHECK(loom_train_graph_grad(&tg, i, r->g[i]) == LOOM_OK);
        for (int64_t j = 0; j < n; j++) {
            r->finite &= isfinite(r->g[i][j]) != 0;
            r->g[i][j] /= scale;
        }
        if (p->is_b) loom_peft_permute_rows(mc, p->proj, true, r->g[i], p->rows, p->cols, scratch);
        free(scratch);
    }
    loom_train_graph_free(&tg);
    return st == LOOM_OK;
}

static void result_free(const loom_lora *lo, result *r) {
    for (int i = 0; r->g && i < lo->n_params; i++)
        free(r->g[i]);
    free(r->g);
}

/* worst relative L2 error of a's gradients against b's (b: host arrays or
 * the golden's "<prefix>grad.<name>" tensors when gs is given) */
static double worst_grad(const loom_lora *lo, const result *a, const result *b,
                         loom_safetensors *gs, const char *prefix) {
    double worst = 0;
    for (int i = 0; i < lo->n_params; i++) {
        const int64_t n = lo->p[i].rows * lo->p[i].cols;
        float *ref = b ? b->g[i] : NULL;
        if (gs) {
            char name[200];
            snprintf(name, sizeof name, "%sgrad.%s", prefix, lo->p[i].name);
            int64_t k = loom_safetensors_find(gs, name);
            CHECK_MSG(k >= 0, "golden has no %s", name);
            if (k < 0) return INFINITY;
            ref = malloc((size_t)n * 4);
            CHECK(loom_safetensors_read(gs, k, LOOM_F32, ref, (size_t)n * 4) == LOOM_OK);
        }
        worst = fmax(worst, rel_l2(a->g[i], ref, n));
        if (gs) free(ref);
    }
    return worst;
}

static float golden_scalar(loom_safetensors *gs, const char *name) {
    int64_t k = loom_safetensors_find(gs, name);
    CHECK_MSG(k >= 0, "golden has no %s", name);
    float v = NAN;
    if (k >= 0) CHECK(loom_safetensors_read(gs, k, LOOM_F32, &v, 4) == LOOM_OK);
    return v;
}

static void test_precisions(loom_model *m, loom_lora *lo, loom_safetensors *ac) {
    result f32 = {0}, lp[2] = {{0}};
    const loom_dtype precs[2] = {LOOM_BF16, LOOM_F16};
    const char *names[2] = {"bf16", "f16"};
    const double tol_loss[2] = {1e-2, 2e-3}, tol_grad[2] = {4e-2, 8e-3};
    if (!run_graph(m, lo, LOOM_F32, 1.0f, &f32)) return;
    for (int k = 0; k < 2; k++) {
        /* f16: a GradScaler-like scale; the gradients come back scaled */
        if (!run_graph(m, lo, precs[k], k ? 1024.0f : 1.0f, &lp[k])) continue;
        CHECK_MSG(lp[k].finite, "%s: non-finite gradients", names[k]);
        const double dl = fabs((double)lp[k].loss - f32.loss) / fabs((double)f32.loss);
        const double dg = worst_grad(lo, &lp[k], &f32, NULL, "");
        CHECK_MSG(dl < tol_loss[k], "%s loss %.8g vs f32 %.8g", names[k], lp[k].loss, f32.loss);
        CHECK_MSG(dg < tol_grad[k], "%s gradients: relative L2 %.3g vs f32", names[k], dg);
        /* the low-precision path really ran: f32 would agree to ~1e-7 */
        CHECK_MSG(dl > 1e-7 && dg > 1e-5, "%s graph matches f32 too well (loss %.3g, grads %.3g)",
                  names[k], dl, dg);
        printf("%s vs f32: loss %.8g vs %.8g (rel %.3g), gradients worst rel L2 %.3g\n", names[k],
               lp[k].loss, f32.loss, dl, dg);
        if (!ac) continue;
        char key[64];
        snprintf(key, sizeof key, "%s.loss", names[k]);
        const float tl = golden_scalar(ac, key);
        snprintf(key, sizeof key, "%s.", names[k]);
        const double tdl = fabs((double)lp[k].loss - tl) / fabs((double)tl);
        const double tdg = worst_grad(lo, &lp[k], NULL, ac, key);
        CHECK_MSG(tdl < tol_loss[k], "%s loss %.8g vs torch autocast %.8g", names[k], lp[k].loss,
                  tl);
        CHECK_MSG(tdg < tol_grad[k], "%s gradients: relative L2 %.3g vs torch autocast", names[k],
                  tdg);
        printf("%s vs torch autocast: loss %.8g vs %.8g (rel %.3g), gradients worst rel L2 %.3g\n",
               names[k], lp[k].loss, tl, tdl, tdg);
    }
    /* a scale that overflows f16 in the backward: GradScaler's inf case */
    result big = {0};
    if (run_graph(m, lo, LOOM_F16, 1e30f, &big))
        CHECK_MSG(!big.finite, "f16 with scale 1e30: gradients stayed finite");
    result_free(lo, &big);
    for (int k = 0; k < 2; k++)
        result_free(lo, &lp[k]);
    result_free(lo, &f32);
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
    mp.quantize = true;
    mp.quant = LOOM_F32; /* as the golden's model: f32 master weights, cast per use */
    loom_model *m = NULL;
    char err[512], p[4200];
    CHECK_MSG(loom_model_load(model_dir, &mp, &m, err, sizeof err) == LOOM_OK, "%s", err);
    loom_lora *lo = NULL;
    if (m)
        CHECK_MSG(loom_peft_load(dir, loom_model_config_of(m), &lo, err, sizeof err) == LOOM_OK,
                  "peft load: %s", err);
    loom_safetensors *ac = NULL;
    snprintf(p, sizeof p, "%s/autocast.safetensors", dir);
    CHECK_MSG(loom_safetensors_open(p, &ac, err, sizeof err) == LOOM_OK, "%s", err);
    if (m && lo) test_precisions(m, lo, ac);
    loom_safetensors_close(ac);
    loom_lora_free(lo);
    loom_model_free(m);
    loom_registry_shutdown();
    return test_summary("test_mixed_precision");
}
