/* tests/ir/test_paged_batch.c - loom_flash_attn_paged_batch (docs/adr/0044):
 * its argument checks, and on the cpu backend the property serving relies
 * on: a sequence's attention output is bit for bit the same whether it runs
 * alone or beside others in one batched node, and the same as the
 * per-sequence paged node it replaces (loom_flash_attn_paged). The values
 * themselves are checked against an independent gather by the parity
 * suite (parity/parity_cases_paged.c). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/runtime.h"
#include "testing.h"

enum { D = 64, HQ = 4, HKV = 2, TQ = 2, BS = 4, NB = 16, NBT = 6, S = 3 };
#define R (BS * NB)

static loom_backend *cpu;
static float q_all[S][TQ][HQ][D]; /* [D, Hq, Tq] per sequence, as the model's q */
static uint16_t kpool[R][HKV * D], vpool[R][HKV * D]; /* f16 pools [kv_dim, R] */
static int32_t tables[S][NBT];
static const int32_t offsets[S] = {5, 0, 17};

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static loom_tensor *input(loom_graph *g, loom_dtype t, int64_t a, int64_t b, int64_t c, int64_t d) {
    loom_tensor *x = loom_tensor_new(g, t, 4, (int64_t[]){a, b, c, d});
    return x ? loom_tensor_set_flags(x, LOOM_FLAG_INPUT) : NULL;
}

/* The pool as the model reads it: [D, R, Hkv] over a [kv_dim, R] leaf. */
static loom_tensor *pool_view(loom_graph *g, loom_tensor *leaf) {
    const size_t e = sizeof(uint16_t);
    return loom_view(g, leaf, 3, (int64_t[]){D, R, HKV}, (size_t[]){e, HKV * D * e, D * e}, 0);
}

/* Attention of sequences first..first+n-1: one batched node (per_seq false)
 * or one loom_flash_attn_paged node per sequence, concatenated (per_seq
 * true). out: n * TQ * HQ * D floats. */
static bool run(int first, int n, bool per_seq, float *out) {
    loom_graph *g = NULL;
    loom_sched *s = NULL;
    bool ok = false;
    if (loom_graph_new(&g) != LOOM_OK) return false;
    loom_tensor *ql = input(g, LOOM_F32, D, HQ, TQ, n);
    loom_tensor *kl = input(g, LOOM_F16, HKV * D, R, 1, 1);
    loom_tensor *vl = input(g, LOOM_F16, HKV * D, R, 1, 1);
    loom_tensor *tl = input(g, LOOM_I32, NBT, n, 1, 1);
    loom_tensor *ol = input(g, LOOM_I32, n, 1, 1, 1);
    loom_tensor *q = loom_permute(g, ql, 0, 2, 1, 3); /* [D, Tq, Hq, n] */
    loom_tensor *k = pool_view(g, kl), *v = pool_view(g, vl);
    const float scale = 1.0f / sqrtf((float)D);
    loom_tensor *o = NULL;
    if (!per_seq) {
        o = loom_flash_attn_paged_batch(g, q, k, v, tl, ol, BS, scale);
    } else {
        for (int b = 0; b < n; b++) {
            loom_tensor *tb = loom_view(g, tl, 1, (int64_t[]){NBT}, (size_t[]){sizeof(int32_t)},
                                        (size_t)b * NBT * sizeof(int32_t));
            loom_tensor *ob = loom_flash_attn_paged(g, loom_slice(g, q, 3, b, 1), k, v, tb, BS,
                                                    scale, offsets[first + b]);
            o = o ? loom_concat(g, o, ob, 3) : ob;
        }
    }
    if (o) loom_tensor_set_flags(o, LOOM_FLAG_OUTPUT);
    if (!o || loom_graph_expand(g, o) != LOOM_OK) {
        CHECK_MSG(0, "building: %s", loom_graph_error(g));
        goto done;
    }
    if (loom_sched_new(&cpu, 1, &s) != LOOM_OK || loom_sched_alloc(s, g) != LOOM_OK) {
        CHECK_MSG(0, "scheduling failed");
        goto done;
    }
    loom_tensor_upload(ql, &q_all[first], (size_t)n * sizeof q_all[0]);
    loom_tensor_upload(kl, kpool, sizeof kpool);
    loom_tensor_upload(vl, vpool, sizeof vpool);
    loom_tensor_upload(tl, &tables[first], (size_t)n * sizeof tables[0]);
    loom_tensor_upload(ol, &offsets[first], (size_t)n * sizeof offsets[0]);
    if (loom_sched_compute(s, g) != LOOM_OK) {
        CHECK_MSG(0, "compute: %s", loom_sched_error(s));
        goto done;
    }
    ok = loom_tensor_download(o, out, (size_t)n * TQ * HQ * D * sizeof(float)) == LOOM_OK;
done:
    loom_sched_free(s);
    loom_graph_free(g);
    return ok;
}

static void test_invariance(void) {
    for (int b = 0; b < S; b++)
        for (int j = 0; j < NBT; j++)
            tables[b][j] = (int32_t)(((b * NBT + j) * 7 + 3) % NB);
    float *q = &q_all[0][0][0][0];
    for (size_t i = 0; i < sizeof q_all / sizeof(float); i++)
        q[i] = frand();
    float f[HKV * D];
    for (int r = 0; r < R; r++) {
        for (int i = 0; i < HKV * D; i++)
            f[i] = frand();
        loom_convert(LOOM_F32, f, LOOM_F16, kpool[r], HKV * D);
        for (int i = 0; i < HKV * D; i++)
            f[i] = frand();
        loom_convert(LOOM_F32, f, LOOM_F16, vpool[r], HKV * D);
    }
    const size_t per = (size_t)TQ * HQ * D;
    static float all[S * TQ * HQ * D], old[S * TQ * HQ * D], one[TQ * HQ * D];
    CHECK(run(0, S, false, all));
    CHECK(run(0, S, true, old));
    CHECK_MSG(memcmp(all, old, sizeof all) == 0,
              "batched node differs from the per-sequence paged nodes");
    bool finite = true;
    for (size_t i = 0; i < S * per; i++)
        finite = finite && isfinite(all[i]) && all[i] != 0.0f;
    CHECK_MSG(finite, "output has zeros or non-finite values");
    for (int b = 0; b < S; b++) {
        CHECK(run(b, 1, false, one));
        CHECK_MSG(memcmp(one, all + (size_t)b * per, per * sizeof(float)) == 0,
                  "sequence %d alone differs from its row in the batch", b);
    }
}

/* Bad arguments fail the graph with a message naming the problem. */
static void test_errors(void) {
    static const struct {
        int what;
        const char *want;
    } cases[] = {
        {0, "offsets"}, {1, "offsets"}, {2, "block tables"}, {3, "one pool"}, {4, "whole blocks"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        loom_graph *g = NULL;
        if (loom_graph_new(&g) != LOOM_OK) return;
        const int w = cases[i].what;
        loom_tensor *q = input(g, LOOM_F32, D, TQ, HQ, S);
        loom_tensor *k = input(g, LOOM_F16, D, R, HKV, w == 3 ? 2 : 1);
        loom_tensor *v = input(g, LOOM_F16, D, R, HKV, w == 3 ? 2 : 1);
        loom_tensor *t = input(g, LOOM_I32, NBT, w == 2 ? S - 1 : S, 1, 1);
        loom_tensor *o = input(g, w == 0 ? LOOM_F32 : LOOM_I32, w == 1 ? S + 1 : S, 1, 1, 1);
        loom_tensor *r = loom_flash_attn_paged_batch(g, q, k, v, t, o, w == 4 ? 5 : BS, 0.125f);
        CHECK_MSG(!r && strstr(loom_graph_error(g), cases[i].want),
                  "case %d: want an error naming '%s', got '%s'", w, cases[i].want,
                  loom_graph_error(g));
        loom_graph_free(g);
    }
    loom_graph *g = NULL;
    if (loom_graph_new(&g) != LOOM_OK) return;
    loom_tensor *r = loom_flash_attn_paged_batch(
        g, input(g, LOOM_F32, D, TQ, HQ, S), input(g, LOOM_F16, D, R, HKV, 1),
        input(g, LOOM_F16, D, R, HKV, 1), input(g, LOOM_I32, NBT, S, 1, 1),
        input(g, LOOM_I32, S, 1, 1, 1), BS, 0.125f);
    CHECK(r && r->op == LOOM_OP_FLASH_ATTN && r->src[4] && r->p.i[3] == BS && r->p.i[1] == 1);
    CHECK(r && r->ne[0] == D && r->ne[1] == HQ && r->ne[2] == TQ && r->ne[3] == S);
    loom_graph_free(g);
}

int main(void) {
    if (loom_registry_init() != LOOM_OK || !(cpu = loom_registry_find("cpu"))) {
        fprintf(stderr, "no cpu backend\n");
        return 1;
    }
    test_errors();
    test_invariance();
    loom_registry_shutdown();
    return test_summary("test_paged_batch");
}
