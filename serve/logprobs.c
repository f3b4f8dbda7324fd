/* serve/logprobs.c - see logprobs.h. */
#include "serve/logprobs.h"

#include <math.h>
#include <string.h>

void loom_serve_logprobs(const float *logits, int64_t n_vocab, int32_t chosen, int n_top,
                         loom_serve_logprob *out) {
    memset(out, 0, sizeof *out);
    if (n_top < 0) n_top = 0;
    if (n_top > LOOM_SERVE_MAX_TOP_LOGPROBS) n_top = LOOM_SERVE_MAX_TOP_LOGPROBS;
    float mx = -INFINITY;
    for (int64_t i = 0; i < n_vocab; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (int64_t i = 0; i < n_vocab; i++)
        sum += exp((double)logits[i] - (double)mx);
    const double lse = (double)mx + log(sum);
    out->tok.token = chosen;
    out->tok.logprob = (float)((double)logits[chosen] - lse);
    /* Top n by insertion into a sorted list: n <= 20, one pass over the row. */
    int n = 0;
    for (int64_t i = 0; i < n_vocab && n_top > 0; i++) {
        float v = logits[i];
        if (n == n_top && !(v > out->top[n - 1].logprob)) continue;
        int k = n < n_top ? n++ : n - 1;
        while (k > 0 && v > out->top[k - 1].logprob) {
            out->top[k] = out->top[k - 1];
            k--;
        }
        out->top[k].token = (int32_t)i;
        out->top[k].logprob = v; /* raw logit until the end */
    }
    for (int k = 0; k < n; k++)
        out->top[k].logprob = (float)((double)out->top[k].logprob - lse);
    out->n_top = n;
}
