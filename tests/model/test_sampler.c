/* tests/model/test_sampler.c - the sampling pipeline of loom/generate.h:
 * greedy = argmax, top-k / top-p / min-p candidate sets, repetition /
 * presence / frequency penalties and their window, seed determinism and
 * the sampled distribution. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loom/generate.h"
#include "testing.h"

static loom_sampler *mk(loom_sampler_params p, int64_t V) {
    loom_sampler *s = NULL;
    CHECK(loom_sampler_new(&p, V, &s) == LOOM_OK);
    return s;
}

static loom_sampler_params plain(void) {
    loom_sampler_params p = loom_sampler_default_params();
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    return p;
}

static void test_greedy(void) {
    loom_sampler_params p = plain();
    p.temperature = 0.0f;
    loom_sampler *s = mk(p, 6);
    float l[6] = {0.1f, 3.0f, -1.0f, 3.0f, 2.9f, -INFINITY};
    int32_t t = -1;
    CHECK(loom_sampler_sample(s, l, &t) == LOOM_OK && t == 1); /* tie: lower id */
    for (int i = 0; i < 20; i++) {
        float l2[6] = {0.1f, 3.0f, -1.0f, 3.5f, 2.9f, 0.0f};
        CHECK(loom_sampler_sample(s, l2, &t) == LOOM_OK && t == 3);
    }
    loom_sampler_free(s);
}

static void test_masks(void) {
    /* probabilities 0.5, 0.3, 0.15, 0.05 (shuffled ids) */
    const float pr[4] = {0.15f, 0.5f, 0.05f, 0.3f};
    int32_t ids[4];
    float probs[4], l[4];
    int64_t n;
#define LOGITS()                                                                                   \
    for (int i = 0; i < 4; i++)                                                                    \
    l[i] = logf(pr[i])

    loom_sampler_params p = plain();
    loom_sampler *s = mk(p, 4);
    LOGITS();
    CHECK(loom_sampler_candidates(s, l, ids, probs, &n) == LOOM_OK && n == 4);
    CHECK(ids[0] == 1 && ids[1] == 3 && ids[2] == 0 && ids[3] == 2);
    CHECK(fabsf(probs[0] - 0.5f) < 1e-5f && fabsf(probs[3] - 0.05f) < 1e-5f);
    loom_sampler_free(s);

    p = plain();
    p.top_k = 2;
    s = mk(p, 4);
    LOGITS();
    CHECK(loom_sampler_candidates(s, l, ids, probs, &n) == LOOM_OK && n == 2);
    CHECK(ids[0] == 1 && ids[1] == 3 && fabsf(probs[0] - 0.625f) < 1e-5f);
    loom_sampler_free(s);

    p = plain();
    p.top_p = 0.75f; /* 0.5 < 0.75 <= 0.8 */
    s = mk(p, 4);
    LOGITS();
    CHECK(loom_sampler_candidates(s, l, ids, probs, &n) == LOOM_OK && n == 2);
    loom_sampler_free(s);
    p.top_p = 0.85f; /* needs the third */
    s = mk(p, 4);
    LOGITS();
    CHECK(loom_sampler_candidates(s, l, ids, probs, &n) == LOOM_OK && n == 3 && ids[2] == 0);
    loom_sampler_free(s);

    p = plain();
    p.min_p = 0.2f; /* keep p >= 0.1 */
    s = mk(p, 4);
    LOGITS();
    CHECK(loom_sampler_candidates(s, l, ids, probs, &n) == LOOM_OK && n == 3);
    CHECK(fabsf(probs[0] - 0.5f / 0.95f) < 1e-5f);
    loom_sampler_free(s);

    /* Temperature sharpens before the masks: T=0.5 squares the ratios. */
    p = plain();
    p.temperature = 0.5f;
    s = mk(p, 4);
    LOGITS();
    CHECK(loom_sampler_candidates(s, l, ids, probs, &n) == LOOM_OK && n == 4);
    double z = 0.25 + 0.09 + 0.0225 + 0.0025;
    CHECK(fabs(probs[0] - 0.25 / z) < 1e-5);
    loom_sampler_free(s);
#undef LOGITS
}

static void test_penalties(void) {
    loom_sampler_params p = plain();
    p.temperature = 0.0f;
    p.repeat_penalty = 2.0f;
    loom_sampler *s = mk(p, 4);
    loom_sampler_accept(s, 0);
    loom_sampler_accept(s, 1);
    loom_sampler_accept(s, 1); /* counted once by the repetition penalty */
    float l[4] = {2.0f, -2.0f, 1.0f, 0.5f};
    int32_t ids[4];
    float probs[4];
    int64_t n;
    CHECK(loom_sampler_candidates(s, l, ids, probs, &n) == LOOM_OK);
    CHECK(l[0] == 1.0f && l[1] == -4.0f && l[2] == 1.0f && l[3] == 0.5f);
    CHECK(n == 1 && ids[0] == 0); /* tie 0/2 at 1.0 -> lower id */
    loom_sampler_free(s);

    p = plain();
    p.temperature = 0.0f;
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.25f;
    s = mk(p, 4);
    loom_sampler_accept(s, 2);
    loom_sampler_accept(s, 2);
    loom_sampler_accept(s, 3);
    float l2[4] = {0.0f, 0.0f, 1.0f, 1.0f};
    CHECK(loom_sampler_candidates(s, l2, ids, probs, &n) == LOOM_OK);
    CHECK(fabsf(l2[2] - 0.0f) < 1e-6f && fabsf(l2[3] - 0.25f) < 1e-6f && l2[0] == 0.0f);
    CHECK(ids[0] == 3);
    loom_sampler_free(s);

    /* Window: only the last penalty_last_n tokens count. */
    p = plain();
    p.temperature = 0.0f;
    p.presence_penalty = 1.0f;
    p.penalty_last_n = 2;
    s = mk(p, 4);
    loom_sampler_accept(s, 0);
    loom_sampler_accept(s, 1);
    loom_sampler_accept(s, 2);
    float l3[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    CHECK(loom_sampler_candidates(s, l3, ids, probs, &n) == LOOM_OK);
    CHECK(l3[0] == 0.0f && l3[1] == -1.0f && l3[2] == -1.0f && ids[0] == 0);
    loom_sampler_free(s);
}

static void test_seed_and_distribution(void) {
    const int64_t V = 50;
    float base[50];
    for (int i = 0; i < V; i++)
        base[i] = (float)(i % 7) * 0.3f;
    int32_t a[64], b[64], c[64];
    loom_sampler_params p = loom_sampler_default_params();
    p.seed = 1234;
    for (int run = 0; run < 3; run++) {
        if (run == 2) p.seed = 99;
        loom_sampler *s = mk(p, V);
        int32_t *out = run == 0 ? a : run == 1 ? b : c;
        for (int i = 0; i < 64; i++) {
            float l[50];
            memcpy(l, base, sizeof l);
            CHECK(loom_sampler_sample(s, l, &out[i]) == LOOM_OK);
            loom_sampler_accept(s, out[i]);
        }
        loom_sampler_free(s);
    }
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(a, c, sizeof a) != 0);

    /* Frequencies follow the probabilities. */
    p = plain();
    p.seed = 7;
    loom_sampler *s = mk(p, 3);
    int cnt[3] = {0};
    const int N = 20000;
    for (int i = 0; i < N; i++) {
        float l[3] = {logf(0.5f), logf(0.3f), logf(0.2f)};
        int32_t t;
        CHECK(loom_sampler_sample(s, l, &t) == LOOM_OK && t >= 0 && t < 3);
        if (t >= 0 && t < 3) cnt[t]++;
    }
    CHECK(fabs(cnt[0] / (double)N - 0.5) < 0.02 && fabs(cnt[1] / (double)N - 0.3) < 0.02 &&
          fabs(cnt[2] / (double)N - 0.2) < 0.02);
    /* reset reseeds */
    loom_sampler_reset(s);
    loom_sampler_free(s);
}

int main(void) {
    test_greedy();
    test_masks();
    test_penalties();
    test_seed_and_distribution();
    return test_summary("test_sampler");
}
