/* tests/train/test_optim_adam8.c - "adamw8bit" behind the loom_optim
 * interface (train/optim_adam8.c): over several steps with a changing
 * learning rate and weight decay, every tensor moves exactly as
 * train/adam8bit.c's own step (itself checked against the numpy replay of
 * bitsandbytes, test_adam8bit) with the bitsandbytes size rule: 32-bit states
 * under LOOM_ADAM8_MIN_SIZE elements, 8-bit from there on; the state arrays
 * the checkpoint saves are those states; a non-finite gradient leaves its
 * tensor alone; loom_optim_create knows the name. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testing.h"
#include "train/adam8bit.h"
#include "train/optim.h"

#define NT 4

static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

int main(void) {
    const int64_t sizes[NT] = {100, LOOM_ADAM8_MIN_SIZE - 1, LOOM_ADAM8_MIN_SIZE, 5000};
    loom_adamw_params hp = loom_adamw_default_params();
    hp.weight_decay = 0.01f;
    loom_optim *o = NULL;
    CHECK(loom_optim_create("adamw8bit", &hp, NT, sizes, &o) == LOOM_OK && o);
    if (!o) return test_summary("test_optim_adam8");
    CHECK(strcmp(o->ops->name, "adamw8bit") == 0);
    CHECK(o->ops->n_state(o) == 2 + 2 + 4 + 4);

    float *w[NT], *g[NT], *rw[NT], *rm[NT], *rv[NT];
    loom_adam8_state rs[NT];
    uint64_t seed = 1;
    for (int i = 0; i < NT; i++) {
        w[i] = malloc((size_t)sizes[i] * sizeof(float));
        g[i] = malloc((size_t)sizes[i] * sizeof(float));
        rw[i] = malloc((size_t)sizes[i] * sizeof(float));
        rm[i] = calloc((size_t)sizes[i], sizeof(float));
        rv[i] = calloc((size_t)sizes[i], sizeof(float));
        for (int64_t j = 0; j < sizes[i]; j++)
            rw[i][j] = w[i][j] = 0.1f * frand(&seed);
        CHECK(loom_adam8_state_init(&rs[i], sizes[i]) == LOOM_OK);
    }
    for (int t = 1; t <= 6; t++) {
        const float lr = 1e-3f * (float)t;
        for (int i = 0; i < NT; i++)
            for (int64_t j = 0; j < sizes[i]; j++)
                g[i][j] = frand(&seed) * (i + 1) * 0.01f;
        loom_optim_step(o, w, g, sizes, lr);
        const loom_adam8_hparams h = {lr, hp.beta1, hp.beta2, hp.eps, hp.weight_decay};
        for (int i = 0; i < NT; i++) {
            if (sizes[i] >= LOOM_ADAM8_MIN_SIZE)
                CHECK(loom_adam8_step(&rs[i], &h, t, rw[i], g[i]) == LOOM_OK);
            else
                CHECK(loom_adam8_f32_step(&h, t, sizes[i], rw[i], g[i], rm[i], rv[i]) == LOOM_OK);
            CHECK_MSG(memcmp(w[i], rw[i], (size_t)sizes[i] * sizeof(float)) == 0,
                      "tensor %d (%lld elements) differs from adam8bit.c at step %d", i,
                      (long long)sizes[i], t);
        }
    }
    CHECK(o->t == 6);
    /* the checkpointed arrays are the states themselves, named and sized */
    const char *names[] = {"exp_avg.0", "exp_avg_sq.0", "exp_avg.1",  "exp_avg_sq.1",
                           "m_code.2",  "v_code.2",     "m_absmax.2", "v_absmax.2",
                           "m_code.3",  "v_code.3",     "m_absmax.3", "v_absmax.3"};
    for (int k = 0; k < o->ops->n_state(o); k++) {
        const char *nm;
        void *d;
        size_t b;
        o->ops->state(o, k, &nm, &d, &b);
        CHECK_MSG(nm && strcmp(nm, names[k]) == 0, "state %d is '%s'", k, nm ? nm : "(null)");
        int i = k < 4 ? k / 2 : 2 + (k - 4) / 4;
        const void *want;
        size_t wb;
        if (i < 2) {
            want = k % 2 ? (void *)rv[i] : (void *)rm[i];
            wb = (size_t)sizes[i] * sizeof(float);
        } else {
            int r = (k - 4) % 4;
            want = r == 0   ? (void *)rs[i].m_code
                   : r == 1 ? (void *)rs[i].v_code
                   : r == 2 ? (void *)rs[i].m_absmax
                            : (void *)rs[i].v_absmax;
            wb = r < 2 ? (size_t)sizes[i] : (size_t)rs[i].n_blocks * sizeof(float);
        }
        CHECK_MSG(b == wb && memcmp(d, want, b) == 0, "state %s differs from the reference", nm);
    }
    /* the 8-bit states are really 8-bit: 5000 elements of codes, not floats */
    {
        const char *nm;
        void *d;
        size_t b;
        o->ops->state(o, 8, &nm, &d, &b);
        CHECK(b == 5000);
    }
    /* a non-finite gradient: that tensor is skipped, the others step */
    float *keep = malloc((size_t)sizes[3] * sizeof(float));
    memcpy(keep, w[3], (size_t)sizes[3] * sizeof(float));
    g[3][17] = NAN;
    float w0 = w[0][0];
    loom_optim_step(o, w, g, sizes, 1e-3f);
    CHECK(memcmp(keep, w[3], (size_t)sizes[3] * sizeof(float)) == 0);
    CHECK(w[0][0] != w0);
    free(keep);

    for (int i = 0; i < NT; i++) {
        free(w[i]);
        free(g[i]);
        free(rw[i]);
        free(rm[i]);
        free(rv[i]);
        loom_adam8_state_free(&rs[i]);
    }
    loom_optim_free(o);
    loom_optim *x = NULL;
    CHECK(loom_optim_create("sgd", &hp, NT, sizes, &x) == LOOM_ERR_UNSUPPORTED && !x);
    const int64_t bad[1] = {0};
    CHECK(loom_adamw8bit_new(&hp, 1, bad, &x) == LOOM_ERR_INVALID_ARG && !x);
    return test_summary("test_optim_adam8");
}
