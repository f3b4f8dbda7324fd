/* tests/model/test_speculative.c - speculative decoding (docs/adr/0038):
 *  - the rejection sampler (loom_spec_verify) is a pure function: drafts x
 *    drawn from q, verified against p, must come out distributed as p
 *    (chi-square over a small vocabulary, fixed seed, 200k draws), for a
 *    draft distribution q and for a point mass (prompt lookup); accepting
 *    every draft would leave them distributed as q and fail;
 *  - prompt lookup finds the most recent n-gram and extrapolates repeats;
 *  - greedy generation with a draft model (another random model with the
 *    same vocabulary; the target itself at another weight type; the target
 *    itself) and with prompt lookup gives the tokens of plain decoding,
 *    also with a repetition penalty, at a context that fills up mid-step
 *    and with n_predict cut mid-step;
 *  - acceptance accounting: a draft identical to the target is always
 *    accepted (greedy and sampled), the step count follows; a foreign draft
 *    is not; tokens = 1 + accepted + verification steps;
 *  - a draft model with another vocabulary is refused with a clear error. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/generate.h"
#include "loom/loom.h"
#include "loom/model.h"
#include "testing.h"

/* ---- the rejection sampler against a chi-square test ---- */

static uint64_t rng_state = 0x1234567u;
static double urand(void) { /* splitmix64: the test's own stream */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

static int32_t draw(const float *q, int V) {
    double u = urand(), c = 0;
    for (int i = 0; i < V; i++)
        if (u < (c += q[i])) return i;
    return V - 1;
}

/* Chi-square statistic of counts against p (N draws). */
static double chi2(const long *count, const float *p, int V, long N) {
    double x = 0;
    for (int i = 0; i < V; i++) {
        double e = (double)p[i] * (double)N;
        if (e > 0)
            x += ((double)count[i] - e) * ((double)count[i] - e) / e;
        else if (count[i])
            x += 1e9; /* a token p forbids */
    }
    return x;
}

static void test_rejection_sampler(void) {
    enum { V = 6 };
    const long N = 200000;
    /* p and q disagree a lot; p(5) = 0 and q(5) > 0 (drafts p forbids), and
     * q(4) = 0 < p(4) (tokens only the resample can give). */
    const float p[V] = {0.30f, 0.05f, 0.25f, 0.15f, 0.25f, 0.0f};
    const float q[V] = {0.10f, 0.40f, 0.20f, 0.10f, 0.0f, 0.20f};
    /* Critical value of chi-square with 5 degrees of freedom at 0.001
     * (4 free when p has a zero: stricter still). */
    const double crit = 20.52;
    long count[V] = {0}, naive[V] = {0}, acc = 0;
    long bad = 0;
    for (long n = 0; n < N; n++) {
        int32_t x = draw(q, V), t = -1;
        bool ok = false;
        bad += loom_spec_verify(p, q, V, x, urand(), urand(), &t, &ok) != LOOM_OK;
        if (t >= 0 && t < V) count[t]++;
        naive[x]++; /* what accepting every draft would give */
        acc += ok;
    }
    double x2 = chi2(count, p, V, N), xn = chi2(naive, p, V, N);
    printf("rejection sampler (draft q): chi2 %.2f (accept-all would give %.0f), accepted %.3f\n",
           x2, xn, (double)acc / (double)N);
    CHECK_MSG(x2 < crit, "chi2 %.2f >= %.2f: the verified tokens are not distributed as p", x2,
              crit);
    CHECK(xn > crit); /* the test can tell q from p */
    /* Acceptance rate = sum min(p, q) = 0.1+0.05+0.2+0.1 = 0.45. */
    CHECK(fabs((double)acc / (double)N - 0.45) < 0.01);

    /* Point mass (prompt lookup): the draft is always token 2. */
    long c2[V] = {0}, acc2 = 0;
    for (long n = 0; n < N; n++) {
        int32_t t = -1;
        bool ok = false;
        bad += loom_spec_verify(p, NULL, V, 2, urand(), urand(), &t, &ok) != LOOM_OK;
        if (t >= 0 && t < V) c2[t]++;
        acc2 += ok;
    }
    x2 = chi2(c2, p, V, N);
    printf("rejection sampler (point mass): chi2 %.2f, accepted %.3f\n", x2,
           (double)acc2 / (double)N);
    CHECK_MSG(x2 < crit, "chi2 %.2f >= %.2f (point mass)", x2, crit);
    CHECK(fabs((double)acc2 / (double)N - 0.25) < 0.01);
    CHECK(bad == 0);
    int32_t t;
    bool ok;
    CHECK(loom_spec_verify(p, q, V, V, 0.5, 0.5, &t, &ok) == LOOM_ERR_INVALID_ARG);
}

static void test_lookup(void) {
    int32_t out[8];
    int n = -1;
    /* "1 2 3 9 1 2 3 7 1 2 3": the last 3-gram's most recent earlier
     * occurrence is followed by 7 1 2 3 ... */
    const int32_t a[] = {1, 2, 3, 9, 1, 2, 3, 7, 1, 2, 3};
    loom_spec_lookup(a, 11, 3, 1, 4, out, &n);
    CHECK(n == 4 && out[0] == 7 && out[1] == 1 && out[2] == 2 && out[3] == 3);
    /* a period-2 repetition running into the end: extrapolated. */
    const int32_t b[] = {5, 6, 5, 6};
    loom_spec_lookup(b, 4, 2, 1, 5, out, &n);
    CHECK(n == 5 && out[0] == 5 && out[1] == 6 && out[2] == 5 && out[3] == 6 && out[4] == 5);
    /* no earlier occurrence of any n-gram */
    const int32_t c[] = {1, 2, 3, 4};
    loom_spec_lookup(c, 4, 3, 1, 4, out, &n);
    CHECK(n == 0);
    /* ngram_min 2: a lone repeated token is not enough */
    const int32_t d[] = {7, 1, 2, 7};
    loom_spec_lookup(d, 4, 3, 2, 4, out, &n);
    CHECK(n == 0);
    loom_spec_lookup(d, 4, 3, 1, 2, out, &n);
    CHECK(n == 2 && out[0] == 1 && out[1] == 2);
}

/* ---- generation with and without speculation ---- */

static loom_model_config tiny(int64_t vocab) {
    loom_model_config c;
    char err[256];
    loom_model_config_preset("tiny-dense", &c, err, sizeof err);
    c.vocab_size = vocab;
    c.dim = 64;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 16;
    c.ffn_dim = 128;
    c.rope = loom_rope_params_llama3(16);
    c.bos_id = c.eos_id = c.eot_id = -1;
    return c;
}

static loom_model *load(int64_t vocab, loom_dtype w, uint64_t seed, int64_t ctx) {
    loom_model_config c = tiny(vocab);
    loom_model_params p = loom_model_default_params();
    p.backend = "cpu";
    p.n_ctx = ctx;
    p.kv_block_size = 8; /* verification rows cross block boundaries often */
    loom_model *m = NULL;
    char err[512];
    CHECK_MSG(loom_model_load_random(&c, w, seed, &p, &m, err, sizeof err) == LOOM_OK, "%s", err);
    return m;
}

static const int32_t PROMPT[] = {3, 17, 42, 99, 5, 17, 42, 8, 3, 17, 42};
enum { N_PROMPT = sizeof PROMPT / sizeof PROMPT[0] };

/* Tokens of a run (malloc'd) and its stats. */
static int32_t *gen(loom_model *m, loom_spec *spec, const loom_sampler_params *sp, int n_predict,
                    size_t *n, loom_generate_stats *st) {
    loom_generate_params gp = loom_generate_default_params();
    gp.sampling = *sp;
    gp.n_predict = n_predict;
    gp.spec = spec;
    int32_t *out = NULL;
    char err[512];
    *n = 0;
    CHECK_MSG(loom_generate_tokens(m, PROMPT, N_PROMPT, &gp, &out, n, NULL, st, err, sizeof err) ==
                  LOOM_OK,
              "%s", err);
    return out;
}

static loom_spec *spec_new(loom_model *m, loom_model *draft, int k) {
    loom_spec_params p = loom_spec_default_params();
    p.draft = draft;
    p.lookup = !draft;
    p.n_draft = k;
    loom_spec *s = NULL;
    char err[512];
    CHECK_MSG(loom_spec_new(m, &p, &s, err, sizeof err) == LOOM_OK, "%s", err);
    return s;
}

/* Greedy tokens with spec equal those without; returns the acceptance. */
static double same_tokens(const char *what, loom_model *m, loom_spec *spec,
                          const loom_sampler_params *sp, int n_predict) {
    size_t na = 0, nb = 0;
    loom_generate_stats sa, sb;
    memset(&sb, 0, sizeof sb);
    int32_t *a = gen(m, NULL, sp, n_predict, &na, &sa);
    int32_t *b = gen(m, spec, sp, n_predict, &nb, &sb);
    size_t first = 0;
    while (first < na && first < nb && a[first] == b[first])
        first++;
    CHECK_MSG(na == nb && first == na && sa.stop == sb.stop,
              "%s: %zu vs %zu tokens, first difference at %zu, stop %d vs %d", what, na, nb, first,
              (int)sa.stop, (int)sb.stop);
    CHECK(sb.n_accepted <= sb.n_drafted && sa.n_drafted == 0);
    double rate = sb.n_drafted ? (double)sb.n_accepted / (double)sb.n_drafted : 0;
    printf("%-40s %zu tokens, drafted %lld, accepted %lld (%.0f%%)\n", what, nb,
           (long long)sb.n_drafted, (long long)sb.n_accepted, 100 * rate);
    free(a);
    free(b);
    return rate;
}

static void test_greedy_identity(void) {
    loom_model *m = load(256, LOOM_F32, 7, 256);
    loom_model *other = load(256, LOOM_F32, 8, 256); /* another random model, same vocab */
    loom_model *q8 = load(256, LOOM_Q8_0, 7, 256);   /* the target's weights at q8_0 */
    loom_model *self = load(256, LOOM_F32, 7, 256);  /* the target itself */
    loom_model *small = load(256, LOOM_F32, 7, 40);  /* a context that fills up */
    if (!m || !other || !q8 || !self || !small) goto out;
    loom_sampler_params g = loom_sampler_default_params();
    g.temperature = 0.0f;
    for (int k = 1; k <= 4; k += 3) {
        char what[64];
        loom_spec *s = spec_new(m, NULL, k);
        snprintf(what, sizeof what, "lookup k=%d", k);
        same_tokens(what, m, s, &g, 60);
        loom_spec_free(s);
        s = spec_new(m, other, k);
        snprintf(what, sizeof what, "draft: another model k=%d", k);
        same_tokens(what, m, s, &g, 60);
        loom_spec_free(s);
        s = spec_new(m, q8, k);
        snprintf(what, sizeof what, "draft: target at q8_0 k=%d", k);
        same_tokens(what, m, s, &g, 60);
        loom_spec_free(s);
    }
    /* n_predict ends inside a step; penalties see every accepted token. */
    loom_spec *s = spec_new(m, self, 4);
    same_tokens("draft: self, n_predict 23", m, s, &g, 23);
    loom_sampler_params pen = g;
    pen.repeat_penalty = 1.5f;
    pen.frequency_penalty = 0.3f;
    same_tokens("draft: q8_0, repetition penalty", m, s, &pen, 50);
    loom_spec_free(s);
    s = spec_new(m, NULL, 4);
    same_tokens("lookup, repetition penalty", m, s, &pen, 50);
    loom_spec_free(s);
    /* The context fills up: the stop and the token count are the same. */
    s = spec_new(small, NULL, 6);
    same_tokens("lookup, context 40", small, s, &g, 100);
    loom_spec_free(s);
    s = spec_new(small, self, 6);
    same_tokens("draft, context 40", small, s, &g, 100);
    loom_spec_free(s);
out:
    loom_model_free(m);
    loom_model_free(other);
    loom_model_free(q8);
    loom_model_free(self);
    loom_model_free(small);
}

static void test_accounting(void) {
    loom_model *m = load(256, LOOM_F32, 7, 256);
    loom_model *self = load(256, LOOM_F32, 7, 256);
    loom_model *other = load(256, LOOM_F32, 8, 256);
    loom_model *wide = load(300, LOOM_F32, 8, 256);
    if (!m || !self || !other || !wide) goto out;
    loom_sampler_params g = loom_sampler_default_params();
    g.temperature = 0.0f;
    /* The draft is the target: every draft accepted, 1 + 5 steps of k+1. */
    const int k = 3, steps = 5;
    loom_spec *s = spec_new(m, self, k);
    size_t n = 0;
    loom_generate_stats st;
    free(gen(m, s, &g, 1 + steps * (k + 1), &n, &st));
    loom_spec_stats ss;
    loom_spec_get_stats(s, &ss);
    CHECK_MSG(n == (size_t)(1 + steps * (k + 1)) && st.n_drafted == steps * k &&
                  st.n_accepted == steps * k && ss.n_steps == steps,
              "n %zu drafted %lld accepted %lld steps %lld", n, (long long)st.n_drafted,
              (long long)st.n_accepted, (long long)ss.n_steps);
    /* Sampled: p == q, so u * q(x) < p(x) always holds. */
    loom_sampler_params t1 = loom_sampler_default_params();
    t1.temperature = 1.0f;
    t1.seed = 3;
    free(gen(m, s, &t1, 1 + steps * (k + 1), &n, &st));
    CHECK_MSG(st.n_drafted == steps * k && st.n_accepted == steps * k,
              "sampled self-draft: drafted %lld accepted %lld", (long long)st.n_drafted,
              (long long)st.n_accepted);
    /* A seed repeats a speculative run. */
    size_t n2 = 0;
    loom_generate_stats st2;
    int32_t *a = gen(m, s, &t1, 40, &n, &st);
    int32_t *b = gen(m, s, &t1, 40, &n2, &st2);
    CHECK(a && b && n == n2 && !memcmp(a, b, n * sizeof *a) && st.n_accepted == st2.n_accepted);
    free(a);
    free(b);
    loom_spec_free(s);
    /* A foreign draft: not always accepted; every token is accounted for:
     * one sampled after the prompt, accepted + 1 per verification step, and
     * one plain step at the end (one token left: nothing to draft). */
    s = spec_new(m, other, k);
    loom_spec_get_stats(s, &ss);
    free(gen(m, s, &g, 61, &n, &st));
    loom_spec_stats s2;
    loom_spec_get_stats(s, &s2);
    CHECK(st.n_accepted < st.n_drafted);
    const int64_t plain = s2.n_plain - ss.n_plain, steps2 = s2.n_steps - ss.n_steps;
    CHECK_MSG((int64_t)n == 1 + st.n_accepted + steps2 + plain,
              "%zu tokens, %lld accepted, %lld steps, %lld plain", n, (long long)st.n_accepted,
              (long long)steps2, (long long)plain);
    /* The adaptive length (docs/adr/0038): a draft that is never accepted
     * shrinks to one token per step, and drafting pauses between misses. */
    if (st.n_accepted == 0)
        CHECK_MSG(st.n_drafted < steps2 * k && plain > 1,
                  "never accepted: %lld drafted in %lld steps, %lld plain", (long long)st.n_drafted,
                  (long long)steps2, (long long)plain);
    loom_spec_free(s);
    /* Another vocabulary: refused. */
    loom_spec_params p = loom_spec_default_params();
    p.draft = wide;
    char err[512] = "";
    s = NULL;
    CHECK(loom_spec_new(m, &p, &s, err, sizeof err) == LOOM_ERR_INVALID_ARG && !s);
    CHECK_MSG(strstr(err, "vocabulary (300 tokens) differs"), "%s", err);
    p.lookup = true; /* both drafters */
    CHECK(loom_spec_new(m, &p, &s, err, sizeof err) == LOOM_ERR_INVALID_ARG);
out:
    loom_model_free(m);
    loom_model_free(self);
    loom_model_free(other);
    loom_model_free(wide);
}

int main(void) {
    CHECK(loom_registry_init() == LOOM_OK);
    test_rejection_sampler();
    test_lookup();
    test_greedy_identity();
    test_accounting();
    loom_registry_shutdown();
    return test_summary("test_speculative");
}
