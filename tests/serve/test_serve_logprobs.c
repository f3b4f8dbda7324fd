/* tests/serve/test_serve_logprobs.c - loom_serve_logprobs against a
 * reference computed another way: probabilities normalised in long double
 * and the alternatives found by sorting the whole row. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/logprobs.h"

static int failures = 0;
#define CHECK(c, ...)                                                                              \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #c);                  \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static const float *g_row;
/* Higher logit first; equal logits: lower id first. */
static int by_logit(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    if (g_row[i] != g_row[j]) return g_row[i] > g_row[j] ? -1 : 1;
    return i - j;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float uniform(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 16777216.0));
}

static void check_row(const float *row, int n, int chosen, int n_top, const char *what) {
    long double z = 0;
    for (int i = 0; i < n; i++)
        z += expl((long double)row[i]);
    int *order = malloc((size_t)n * sizeof *order);
    for (int i = 0; i < n; i++)
        order[i] = i;
    g_row = row;
    qsort(order, (size_t)n, sizeof *order, by_logit);
    loom_serve_logprob lp;
    loom_serve_logprobs(row, n, chosen, n_top, &lp);
    float want = (float)logl(expl((long double)row[chosen]) / z);
    CHECK(lp.tok.token == chosen && fabsf(lp.tok.logprob - want) <= 1e-5f * (1 + fabsf(want)),
          "%s: chosen %d logprob %g want %g", what, chosen, lp.tok.logprob, want);
    int k_want = n_top < n ? n_top : n;
    CHECK(lp.n_top == k_want, "%s: n_top %d want %d", what, lp.n_top, k_want);
    for (int k = 0; k < lp.n_top && k < k_want; k++) {
        float w = (float)logl(expl((long double)row[order[k]]) / z);
        CHECK(lp.top[k].token == order[k] && fabsf(lp.top[k].logprob - w) <= 1e-5f * (1 + fabsf(w)),
              "%s: top[%d] = %d (%g), want %d (%g)", what, k, lp.top[k].token, lp.top[k].logprob,
              order[k], w);
    }
    free(order);
}

int main(void) {
    enum { N = 5000 };
    static float row[N];
    for (int i = 0; i < N; i++)
        row[i] = 8 * uniform() - 4;
    check_row(row, N, 17, 5, "random");
    check_row(row, N, 4999, 20, "random, 20 alternatives");
    check_row(row, N, 0, 0, "no alternatives");
    /* large logits: exp overflows without the max shift */
    for (int i = 0; i < N; i++)
        row[i] = 200 + 30 * uniform();
    check_row(row, N, 3, 3, "large logits");
    /* ties: lower id first */
    for (int i = 0; i < N; i++)
        row[i] = (float)(i % 7);
    check_row(row, N, 6, 10, "ties");
    /* fewer tokens than asked for */
    float small[3] = {1, 3, 2};
    check_row(small, 3, 1, 20, "vocabulary of 3");
    /* more than the cap is capped */
    loom_serve_logprob lp;
    loom_serve_logprobs(row, N, 0, 99, &lp);
    CHECK(lp.n_top == LOOM_SERVE_MAX_TOP_LOGPROBS, "cap: %d", lp.n_top);
    if (failures) {
        fprintf(stderr, "test_serve_logprobs: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_serve_logprobs: ok\n");
    return 0;
}
