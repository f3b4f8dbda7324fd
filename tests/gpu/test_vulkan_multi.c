/* tests/gpu/test_vulkan_multi.c - several devices of one kind
 * (docs/adr/0042): a model split by layers over vulkan:0 and vulkan:1 (and
 * vulkan:0 + vulkan:1 + cpu), against the same model on one Vulkan device
 * and on the cpu alone. In CI both are lavapipe's one physical device opened
 * twice (LOOM_VULKAN_LOGICAL_DEVICES=2): two VkDevices, each with its own
 * memory, so a tensor read on the other device is really copied.
 *  - the registry has vulkan:0 and vulkan:1, distinct instances;
 *  - --tensor-split 1,1 / 3,1 / 2,1,1 (and auto): the same greedy tokens as
 *    one device and as the cpu, logits within the parity tolerance, KV f16
 *    and f32;
 *  - every weight and KV tensor of a layer lives in a buffer of its layer's
 *    device (vulkan:1's layers in vulkan:1's buffers);
 *  - exactly one activation copy per device boundary per forward, with at
 *    least one boundary between vulkan:0 and vulkan:1;
 *  - --devices vulkan:5 is a one-line load error naming the device range.
 * Skipped (exit 77) without a usable Vulkan device or without a second one
 * (ctest sets LOOM_VULKAN_ALLOW_CPU=1 and LOOM_VULKAN_LOGICAL_DEVICES=2). */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loom/model.h"
#include "loom/runtime.h"
#include "model/model_internal.h"
#include "testing.h"

#define N_PROMPT 5
#define N_STEPS  6 /* prefill + 5 decode steps */
#define VOCAB    1000
#define N_LAYERS 4

static char g_path[256];
static loom_backend *g_vk[2];

static void write_model(void) {
    loom_model_config c;
    char err[512];
    CHECK(loom_model_config_preset("tiny-dense", &c, err, sizeof err) == LOOM_OK);
    c.vocab_size = VOCAB;
    c.tie_embeddings = false; /* a head apart from the embedding: more to place */
    c.bos_id = c.eos_id = c.eot_id = -1;
    CHECK(c.n_layers == N_LAYERS);
    CHECK_MSG(loom_model_write_random_gguf(&c, LOOM_F32, 42, NULL, g_path, err, sizeof err) ==
                  LOOM_OK,
              "%s", err);
}

typedef struct run_out {
    int32_t tok[N_STEPS];
    float logits[N_STEPS][VOCAB];
    int act_copies[2]; /* prefill graph, decode graph */
    double copy_ms;    /* scheduler time in copies, summed over the run */
} run_out;

static int argmax(const float *x) {
    int b = 0;
    for (int i = 1; i < VOCAB; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* Activation copies of the graph of the last decode. */
static int last_act_copies(const loom_model *m) {
    const loom_llama_graph *best = NULL;
    for (int i = 0; i < LOOM_LLAMA_GRAPH_CACHE; i++)
        if (m->cache[i].used && (!best || m->cache[i].last_used > best->last_used))
            best = &m->cache[i];
    loom_sched_stats st;
    loom_sched_get_stats(best ? best->s : NULL, &st);
    return st.n_act_copies;
}

/* Greedy: prefill N_PROMPT tokens, then N_STEPS-1 single-token steps. */
static loom_status run(loom_model *m, run_out *o) {
    const int32_t prompt[N_PROMPT] = {3, 141, 59, 265, 358};
    const int slot = 0;
    char err[512];
    loom_batch b = {1, N_PROMPT, &slot, prompt, false};
    loom_status st = loom_model_decode(m, &b, o->logits[0], err, sizeof err);
    CHECK_MSG(st == LOOM_OK, "%s", err);
    if (st != LOOM_OK) return st;
    o->act_copies[0] = last_act_copies(m);
    for (int s = 0; s < N_STEPS; s++) {
        o->tok[s] = argmax(o->logits[s]);
        if (s + 1 == N_STEPS) break;
        loom_batch d = {1, 1, &slot, &o->tok[s], false};
        st = loom_model_decode(m, &d, o->logits[s + 1], err, sizeof err);
        CHECK_MSG(st == LOOM_OK, "%s", err);
        if (st != LOOM_OK) return st;
    }
    o->act_copies[1] = last_act_copies(m);
    loom_sched_stats ss;
    loom_model_sched_stats(m, &ss);
    o->copy_ms = 1e3 * ss.copy_seconds;
    return LOOM_OK;
}

static loom_model_params params(loom_dtype kv) {
    loom_model_params p = loom_model_default_params();
    p.kv_dtype = kv;
    p.n_ctx = 64;
    return p;
}

/* Device boundaries along embedding -> layer 0..L-1 -> head, and how many
 * of them are between the two Vulkan devices. */
static int boundaries(const loom_model *m, int *vk_vk) {
    int n = 0, prev = m->embd_dev;
    *vk_vk = 0;
    for (int l = 0; l <= N_LAYERS; l++) {
        const int d = l < N_LAYERS ? m->layer_dev[l] : m->head_dev;
        if (d != prev) {
            n++;
            *vk_vk += m->devs[d] != m->cpu && m->devs[prev] != m->cpu;
        }
        prev = d;
    }
    return n;
}

static bool on(const loom_tensor *t, const loom_backend *be) {
    return t && t->buffer && t->buffer->backend == be;
}

/* Every tensor of layer l on its device; embedding and head on theirs. */
static void check_placement(const loom_model *m, const char *what) {
    int bad = 0;
    for (int l = 0; l < N_LAYERS; l++) {
        const loom_llama_layer *L = &m->layers[l];
        const loom_backend *be = m->devs[m->layer_dev[l]];
        const loom_tensor *w[] = {L->attn_norm, L->wq, L->wk,   L->wv,      L->wo,     L->ffn_norm,
                                  L->gate,      L->up, L->down, L->k_cache, L->v_cache};
        for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
            if (!on(w[i], be)) bad++;
    }
    if (!on(m->tok_embd, m->devs[m->embd_dev])) bad++;
    if (!on(m->output_norm, m->devs[m->head_dev])) bad++;
    if (m->output && !on(m->output, m->devs[m->head_dev])) bad++;
    CHECK_MSG(bad == 0, "%s: %d tensors off their device", what, bad);
}

/* Tolerance on |dlogit| / logit range, as in test_layer_split: the devices
 * run the same shaders, so only the split's summation order could differ;
 * f32 cache 1e-4, f16 cache one f16 ulp (2^-11). */
static void compare(const run_out *ref, const run_out *got, loom_dtype kv, const char *what,
                    const char *ref_name) {
    const float tol = kv == LOOM_F32 ? 1e-4f : 1.0f / 2048.0f;
    for (int s = 0; s < N_STEPS; s++) {
        CHECK_MSG(got->tok[s] == ref->tok[s], "%s: step %d token %d, %s %d", what, s, got->tok[s],
                  ref_name, ref->tok[s]);
        float lo = ref->logits[s][0], hi = lo, worst = 0;
        for (int i = 0; i < VOCAB; i++) {
            lo = fminf(lo, ref->logits[s][i]);
            hi = fmaxf(hi, ref->logits[s][i]);
            worst = fmaxf(worst, fabsf(got->logits[s][i] - ref->logits[s][i]));
        }
        CHECK_MSG(worst <= tol * (hi - lo), "%s: step %d max |dlogit| %g vs range %g (%s)", what, s,
                  worst, hi - lo, ref_name);
    }
}

static loom_status reference(loom_dtype kv, const char *backend, run_out *o) {
    char err[1024];
    loom_model_params p = params(kv);
    p.backend = backend;
    p.split = LOOM_SPLIT_NONE;
    loom_model *m = NULL;
    loom_status st = loom_model_load_gguf(g_path, &p, &m, err, sizeof err);
    CHECK_MSG(st == LOOM_OK, "%s: %s", backend, err);
    if (st != LOOM_OK) return st;
    st = run(m, o);
    loom_model_free(m);
    return st;
}

typedef struct split_case {
    const char *devices;
    int n_shares;
    float shares[3];
    int want_layers[3]; /* layers per listed device; -1: not checked */
} split_case;

/* all: every case; else the two-device and the three-device one (an f32
 * cache adds no placement case, only the tighter tolerance). */
static void test_splits(loom_dtype kv, bool all) {
    static run_out cpu, one, got;
    if (reference(kv, "cpu", &cpu) != LOOM_OK || reference(kv, "vulkan:0", &one) != LOOM_OK) return;
    compare(&cpu, &one, kv, "vulkan:0 alone", "cpu");
    const split_case cases[] = {
        {"vulkan:0,vulkan:1", 2, {1, 1}, {2, 2}},
        {"vulkan:0,vulkan:1", 2, {3, 1}, {3, 1}},
        {"vulkan:1,vulkan:0", 2, {1, 3}, {1, 3}},
        {"vulkan:0,vulkan:1,cpu", 3, {2, 1, 1}, {2, 1, 1}},
        {"vulkan:0,vulkan:1", 0, {0}, {-1, -1}}, /* auto: by free memory */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        if (!all && k != 0 && k != 3) continue;
        const split_case *c = &cases[k];
        char what[128], err[1024];
        snprintf(what, sizeof what, "kv %s, --devices %s --tensor-split %g,%g,%g",
                 loom_dtype_name(kv), c->devices, c->shares[0], c->shares[1], c->shares[2]);
        loom_model_params p = params(kv);
        p.devices = c->devices;
        p.n_tensor_split = c->n_shares;
        for (int i = 0; i < c->n_shares; i++)
            p.tensor_split[i] = c->shares[i];
        loom_model *m = NULL;
        loom_status st = loom_model_load_gguf(g_path, &p, &m, err, sizeof err);
        CHECK_MSG(st == LOOM_OK, "%s: %s", what, err);
        if (st != LOOM_OK) continue;
        const loom_split_plan *pl = loom_model_split_plan(m);
        CHECK_MSG(m->split && pl, "%s: not split", what);
        /* m->devs lists the devices as given, then the cpu. */
        CHECK(m->devs[0] == g_vk[c->devices[7] - '0'] && m->devs[1] != m->devs[0]);
        for (int d = 0; pl && d < 3; d++)
            if (c->want_layers[d] >= 0 && d < pl->n_devices)
                CHECK_MSG(pl->count[d] == c->want_layers[d], "%s: %s holds %d layers, want %d",
                          what, pl->dev[d].name, pl->count[d], c->want_layers[d]);
        /* The plan names the devices apart. */
        char line[1024];
        if (pl) loom_split_plan_describe(pl, true, line, sizeof line);
        CHECK_MSG(pl && strstr(line, "vulkan:0") && strstr(line, "vulkan:1"), "%s: plan '%s'", what,
                  pl ? line : "");
        check_placement(m, what);
        memset(&got, 0, sizeof got);
        if (run(m, &got) == LOOM_OK) {
            compare(&one, &got, kv, what, "vulkan:0 alone");
            compare(&cpu, &got, kv, what, "cpu");
            int vk_vk = 0;
            const int nb = boundaries(m, &vk_vk);
            CHECK_MSG(vk_vk >= 1, "%s: no boundary between vulkan:0 and vulkan:1", what);
            for (int g = 0; g < 2; g++)
                CHECK_MSG(got.act_copies[g] == nb,
                          "%s: %s graph: %d activation copies, %d device boundaries", what,
                          g ? "decode" : "prefill", got.act_copies[g], nb);
            printf("  %s: %d boundaries (%d vulkan|vulkan), %.4f ms copying per forward\n", what,
                   nb, vk_vk, got.copy_ms / N_STEPS);
        }
        loom_model_free(m);
    }
}

/* A device index the backend does not have: a clear one-line load error. */
static void test_bad_index(void) {
    char err[1024];
    loom_model_params p = params(LOOM_F16);
    p.devices = "vulkan:5,cpu";
    loom_model *m = NULL;
    loom_status st = loom_model_load_gguf(g_path, &p, &m, err, sizeof err);
    CHECK_MSG(st == LOOM_ERR_INVALID_ARG && !m, "vulkan:5 loaded (status %d)", (int)st);
    CHECK_MSG(strstr(err, "no device vulkan:5") && strstr(err, "vulkan:0 to vulkan:1") &&
                  !strchr(err, '\n'),
              "message: %s", err);
    loom_model_free(m);
}

int main(void) {
    if (loom_registry_init() != LOOM_OK) return 1;
    g_vk[0] = loom_registry_find("vulkan:0");
    g_vk[1] = loom_registry_find("vulkan:1");
    if (!g_vk[0] || !loom_registry_available(g_vk[0]->index)) {
        printf("test_vulkan_multi: SKIP (no usable Vulkan device)\n");
        loom_registry_shutdown();
        return 77;
    }
    if (!g_vk[1] || !loom_registry_available(g_vk[1]->index)) {
        printf("test_vulkan_multi: SKIP (one Vulkan device; set LOOM_VULKAN_LOGICAL_DEVICES=2)\n");
        loom_registry_shutdown();
        return 77;
    }
    /* Two instances, each with its own device state. */
    CHECK(g_vk[0] != g_vk[1] && g_vk[0]->ctx != g_vk[1]->ctx);
    CHECK(g_vk[0]->device == 0 && g_vk[1]->device == 1);
    CHECK(loom_registry_find("vulkan") == g_vk[0]);
    CHECK(!strcmp(loom_backend_name(g_vk[1]), "vulkan:1"));
    snprintf(g_path, sizeof g_path, "/tmp/loom_vkmulti_%d.gguf", (int)getpid());
    write_model();
    test_splits(LOOM_F16, true);
    test_splits(LOOM_F32, false);
    test_bad_index();
    unlink(g_path);
    loom_registry_shutdown();
    return test_summary("test_vulkan_multi");
}
