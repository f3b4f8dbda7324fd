/* tests/train/test_loss_scale.c - train/loss_scale against PyTorch's
 * torch.amp.GradScaler on scripted sequences of clean / inf / nan steps
 * (tests/train/data/loss_scale_golden.txt, written by
 * scripts/gen_loss_scale_golden.py): after every step the skip decision,
 * the scale and the unscaled gradient the optimizer sees equal torch's bit
 * for bit (%.9g round-trips a float). Plus a checkpoint round trip of the
 * scaler's state (train/checkpoint.h's loss_scaler record). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testing.h"
#include "train/checkpoint.h"
#include "train/loss_scale.h"

typedef struct scase {
    char name[16];
    loom_loss_scaler s;
    int next; /* the step the scaler is at */
} scase;

static void replay(const char *path) {
    FILE *f = fopen(path, "r");
    CHECK_MSG(f != NULL, "cannot read %s", path);
    if (!f) return;
    scase cases[3];
    memset(cases, 0, sizeof cases);
    const char *names[3] = {"short", "default", "tiny"};
    for (int k = 0; k < 3; k++) {
        snprintf(cases[k].name, sizeof cases[k].name, "%s", names[k]);
        cases[k].s = loom_loss_scaler_default();
    }
    cases[0].s.scale = 1024.0f;
    cases[0].s.growth_interval = 3;
    cases[2].s.scale = 2.0f;
    char line[256];
    int n_lines = 0, n_skips = 0, n_growth = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        char name[16], kind[8], gtxt[32];
        int step, skipped;
        double want_scale;
        if (sscanf(line, "%15s %d %7s %d %lf %31s", name, &step, kind, &skipped, &want_scale,
                   gtxt) != 6) {
            CHECK_MSG(0, "bad golden line: %s", line);
            continue;
        }
        scase *c = NULL;
        for (int k = 0; k < 3; k++)
            if (!strcmp(cases[k].name, name)) c = &cases[k];
        CHECK_MSG(c != NULL, "unknown case %s", name);
        if (!c) continue;
        /* steps the golden leaves out are clean ones */
        float g = 0;
        bool found = false;
        for (; c->next <= step; c->next++) {
            const int i = c->next;
            const double base = 0.375 + 0.001 * (i % 7);
            const bool last = i == step;
            g = (float)(base * (double)c->s.scale);
            if (last && !strcmp(kind, "inf")) g = INFINITY;
            if (last && !strcmp(kind, "nan")) g = NAN;
            float *gp = &g;
            const int64_t one = 1;
            found = !loom_grads_finite(&gp, &one, 1);
            loom_loss_scaler_unscale(&c->s, &gp, &one, 1);
            const float before = c->s.scale;
            loom_loss_scaler_update(&c->s, found);
            n_growth += c->s.scale > before;
        }
        n_lines++;
        n_skips += found;
        CHECK_MSG(found == (skipped != 0), "%s step %d: skipped %d, torch %d", name, step, found,
                  skipped);
        CHECK_MSG((float)want_scale == c->s.scale, "%s step %d: scale %.9g, torch %.9g", name, step,
                  (double)c->s.scale, want_scale);
        if (!skipped) {
            const float want_g = (float)atof(gtxt);
            CHECK_MSG(want_g == g, "%s step %d: unscaled gradient %.9g, torch %.9g", name, step,
                      (double)g, (double)want_g);
        }
    }
    fclose(f);
    CHECK_MSG(n_lines > 30 && n_skips >= 8 && n_growth >= 3,
              "golden too thin: %d lines, %d skips, %d growths", n_lines, n_skips, n_growth);
    printf("GradScaler golden: %d lines, %d skipped steps, %d growths, all equal\n", n_lines,
           n_skips, n_growth);
}

/* A checkpoint keeps the scaler (scale and tracker) and one without it
 * loads with has_scaler false. */
static void test_checkpoint(void) {
    loom_model_config mc;
    memset(&mc, 0, sizeof mc);
    snprintf(mc.arch, sizeof mc.arch, "llama");
    mc.vocab_size = 32;
    mc.dim = 16;
    mc.n_layers = 1;
    mc.n_heads = 2;
    mc.n_kv_heads = 1;
    mc.head_dim = 8;
    mc.ffn_dim = 32;
    mc.rms_eps = 1e-5f;
    mc.max_ctx = 16;
    mc.rope = loom_rope_params_llama3(8);
    mc.rope.scaling = LOOM_ROPE_SCALING_NONE;
    loom_lora_config lc = loom_lora_default_config();
    lc.r = 2;
    loom_lora *lo = NULL;
    char err[512], path[] = "/tmp/loom_ls_ckpt_XXXXXX";
    CHECK_MSG(loom_lora_new(&mc, &lc, 1, &lo, err, sizeof err) == LOOM_OK, "%s", err);
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0) close(fd);
    int64_t sizes[64];
    for (int i = 0; lo && i < lo->n_params; i++)
        sizes[i] = lo->p[i].rows * lo->p[i].cols;
    loom_adamw_params ap = loom_adamw_default_params();
    loom_optim *o = NULL;
    if (lo) CHECK(loom_optim_create("adamw", &ap, lo->n_params, sizes, &o) == LOOM_OK);
    if (!lo || !o) return;
    for (int with = 0; with < 2; with++) {
        loom_ckpt_state s = {.step = 7, .seed = 42, .has_scaler = with != 0};
        s.scaler = loom_loss_scaler_default();
        s.scaler.scale = 0.125f;
        s.scaler.growth_tracker = 1999;
        CHECK_MSG(loom_checkpoint_save(path, &s, lo, o, err, sizeof err) == LOOM_OK, "%s", err);
        loom_ckpt_state r = {0};
        r.scaler = loom_loss_scaler_default();
        CHECK_MSG(loom_checkpoint_load(path, &r, lo, o, err, sizeof err) == LOOM_OK, "%s", err);
        CHECK(r.step == 7 && r.has_scaler == (with != 0));
        if (with)
            CHECK_MSG(r.scaler.scale == 0.125f && r.scaler.growth_tracker == 1999 &&
                          r.scaler.growth_interval == 2000,
                      "scaler after load: scale %g tracker %d", (double)r.scaler.scale,
                      r.scaler.growth_tracker);
    }
    unlink(path);
    loom_optim_free(o);
    loom_lora_free(lo);
}

int main(void) {
    const char *src = getenv("LOOM_SOURCE_DIR");
    char p[4200];
    snprintf(p, sizeof p, "%s/tests/train/data/loss_scale_golden.txt", src ? src : ".");
    replay(p);
    test_checkpoint();
    return test_summary("test_loss_scale");
}
