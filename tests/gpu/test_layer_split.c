/* tests/gpu/test_layer_split.c - a model split by layers over two real
 * backends, cpu + Vulkan (lavapipe in CI), against the same model on the cpu
 * alone (docs/adr/0030-layer-split.md):
 *  - 0, 1, half and all of the layers on Vulkan (and a --tensor-split 3,1),
 *    KV cache f16 and f32, tied and untied embeddings: the same greedy
 *    tokens as the cpu, and the logits of every step within tolerance;
 *  - every weight and KV tensor of a layer lives on the layer's device;
 *  - the scheduler's copies: exactly one activation copy per device
 *    boundary of the plan per forward pass (embedding -> layers -> head),
 *    none inside a layer, in prefill and decode graphs alike;
 *  - LOOM_DEVICE_MEMORY_LIMIT: auto places fewer layers and still matches;
 *    an explicit --gpu-layers that does not fit is a load error naming the
 *    tensor and the --gpu-layers that would fit.
 * Skipped (exit 77) without a usable Vulkan device (ctest sets
 * LOOM_VULKAN_ALLOW_CPU=1 for lavapipe). */
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

static char g_path[2][256]; /* tied, untied */

static void write_model(int untied) {
    loom_model_config c;
    char err[512];
    CHECK(loom_model_config_preset("tiny-dense", &c, err, sizeof err) == LOOM_OK);
    c.vocab_size = VOCAB;
    c.tie_embeddings = untied ? false : true;
    c.bos_id = c.eos_id = c.eot_id = -1;
    CHECK_MSG(loom_model_write_random_gguf(&c, LOOM_F32, 21, NULL, g_path[untied], err,
                                           sizeof err) == LOOM_OK,
              "%s", err);
}

typedef struct run_out {
    int32_t tok[N_STEPS];
    float logits[N_STEPS][VOCAB];
    int act_copies[2]; /* prefill graph, decode graph */
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
    return LOOM_OK;
}

static loom_model_params params(loom_dtype kv) {
    loom_model_params p = loom_model_default_params();
    p.kv_dtype = kv;
    p.n_ctx = 64;
    return p;
}

/* Device boundaries along embedding -> layer 0..L-1 -> head. */
static int boundaries(const loom_model *m) {
    int n = 0, prev = m->embd_dev;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        n += m->layer_dev[l] != prev;
        prev = m->layer_dev[l];
    }
    return n + (m->head_dev != prev);
}

static bool on(const loom_tensor *t, const loom_backend *be) {
    return t && t->buffer && t->buffer->backend == be;
}

/* Every tensor of layer l on its device; embedding and head on theirs. */
static void check_placement(const loom_model *m, const char *what) {
    int bad = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
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

/* Tolerance on |dlogit| / logit range: the backends differ in summation
 * order only, so an f32 cache gets test_model_forward's 1e-4 bound; in an
 * f16 cache an element may round to the neighbouring f16 value on the two
 * backends, one f16 ulp (2^-11 relative), so f16 gets 2^-11. (Measured on
 * lavapipe: 7e-7 and 3e-5.) */
static void compare(const run_out *ref, const run_out *got, loom_dtype kv, const char *what) {
    const float tol = kv == LOOM_F32 ? 1e-4f : 1.0f / 2048.0f;
    for (int s = 0; s < N_STEPS; s++) {
        CHECK_MSG(got->tok[s] == ref->tok[s], "%s: step %d token %d, cpu %d", what, s, got->tok[s],
                  ref->tok[s]);
        float lo = ref->logits[s][0], hi = lo, worst = 0;
        for (int i = 0; i < VOCAB; i++) {
            lo = fminf(lo, ref->logits[s][i]);
            hi = fmaxf(hi, ref->logits[s][i]);
            worst = fmaxf(worst, fabsf(got->logits[s][i] - ref->logits[s][i]));
        }
        CHECK_MSG(worst <= tol * (hi - lo), "%s: step %d max |dlogit| %g vs range %g", what, s,
                  worst, hi - lo);
    }
}

static loom_status load(int untied, loom_model_params *p, loom_model **m, char *err, size_t err_n) {
    return loom_model_load_gguf(g_path[untied], p, m, err, err_n);
}

static void test_boundaries(int untied, loom_dtype kv) {
    char err[1024];
    loom_model_params p = params(kv);
    p.backend = "cpu";
    p.split = LOOM_SPLIT_NONE;
    loom_model *m = NULL;
    CHECK_MSG(load(untied, &p, &m, err, sizeof err) == LOOM_OK, "%s", err);
    if (!m) return;
    static run_out ref, got;
    run(m, &ref);
    loom_model_free(m);
    const int L = 4;
    const int cases[] = {0, 1, L / 2, L, -100}; /* -100: --tensor-split 1,3 over cpu,vulkan */
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char what[96];
        p = params(kv);
        p.devices = "vulkan:0,cpu";
        if (cases[k] >= 0) {
            p.gpu_layers = cases[k];
        } else {
            p.n_tensor_split = 2;
            p.tensor_split[0] = 3.0f; /* vulkan */
            p.tensor_split[1] = 1.0f; /* cpu */
        }
        snprintf(
            what, sizeof what, "%s kv %s, %s%d", untied ? "untied" : "tied", loom_dtype_name(kv),
            cases[k] >= 0 ? "gpu-layers " : "tensor-split 3,1: ", cases[k] >= 0 ? cases[k] : 3);
        m = NULL;
        loom_status st = load(untied, &p, &m, err, sizeof err);
        CHECK_MSG(st == LOOM_OK, "%s: %s", what, err);
        if (st != LOOM_OK) continue;
        const loom_split_plan *pl = loom_model_split_plan(m);
        CHECK(pl != NULL);
        const int want = cases[k] >= 0 ? cases[k] : 3;
        CHECK_MSG(pl && pl->n_gpu_layers == want, "%s: %d layers off the cpu", what,
                  pl ? pl->n_gpu_layers : -1);
        /* The last layers are the offloaded ones. */
        for (int l = 0; l < L; l++)
            CHECK_MSG((m->devs[m->layer_dev[l]] == m->cpu) == (l < L - want), "%s: layer %d", what,
                      l);
        check_placement(m, what);
        memset(&got, 0, sizeof got);
        if (run(m, &got) == LOOM_OK) {
            compare(&ref, &got, kv, what);
            /* One copy of the residual stream per boundary, nothing else:
             * a node of a layer never runs on another device. */
            const int nb = m->split ? boundaries(m) : 0;
            for (int g = 0; g < 2; g++)
                CHECK_MSG(got.act_copies[g] == nb,
                          "%s: %s graph: %d activation copies, %d "
                          "device boundaries",
                          what, g ? "decode" : "prefill", got.act_copies[g], nb);
            if (want > 0 && want < L) CHECK_MSG(nb >= 1 && m->split, "%s: not split", what);
        }
        loom_model_free(m);
    }
}

/* Less device memory than the model needs: auto offloads fewer layers (and
 * still matches the cpu); all layers asked for explicitly is a clear load
 * error naming a tensor and the --gpu-layers that fits. */
static void test_memory_limit(void) {
    char err[1024];
    loom_model_params p = params(LOOM_F16);
    p.devices = "vulkan";
    loom_split_plan full;
    unsetenv("LOOM_DEVICE_MEMORY_LIMIT");
    CHECK_MSG(loom_model_plan_split(g_path[1], &p, &full, err, sizeof err) == LOOM_OK, "%s", err);
    CHECK(full.fits && full.n_gpu_layers == 4 && full.head_dev == 0);
    /* Room for about two layers: the vulkan device's need with 2 layers,
     * plus the margin. */
    size_t two = 0;
    {
        loom_split_plan t;
        p.gpu_layers = 2;
        CHECK(loom_model_plan_split(g_path[1], &p, &t, err, sizeof err) == LOOM_OK);
        two = t.need_bytes[0];
        p.gpu_layers = LOOM_GPU_LAYERS_AUTO;
    }
    char v[32];
    snprintf(v, sizeof v, "%zu", two + two / 12);
    setenv("LOOM_DEVICE_MEMORY_LIMIT", v, 1);
    loom_split_plan auto_plan;
    CHECK_MSG(loom_model_plan_split(g_path[1], &p, &auto_plan, err, sizeof err) == LOOM_OK, "%s",
              err);
    CHECK_MSG(auto_plan.fits && auto_plan.n_gpu_layers == 2 && auto_plan.max_fitting == 2,
              "auto under %s bytes: %d layers, max %d, fits %d", v, auto_plan.n_gpu_layers,
              auto_plan.max_fitting, auto_plan.fits);
    loom_model *m = NULL;
    CHECK_MSG(load(1, &p, &m, err, sizeof err) == LOOM_OK, "%s", err);
    if (m) {
        CHECK(m->split && loom_model_split_plan(m)->n_gpu_layers == 2);
        loom_model_free(m);
    }
    p.gpu_layers = 4;
    m = NULL;
    loom_status st = load(1, &p, &m, err, sizeof err);
    CHECK_MSG(st == LOOM_ERR_OOM && !m, "explicit 4 layers under the limit: %s", err);
    CHECK_MSG(strstr(err, "out of memory on vulkan at tensor 'blk.") &&
                  strstr(err, "try --gpu-layers 2"),
              "message: %s", err);
    loom_model_free(m);
    /* Room for two layers' weights but not their KV cache and activations:
     * the error names the first KV tensor there. */
    {
        loom_split_plan t;
        unsetenv("LOOM_DEVICE_MEMORY_LIMIT");
        p.gpu_layers = 2;
        CHECK(loom_model_plan_split(g_path[1], &p, &t, err, sizeof err) == LOOM_OK);
        CHECK(t.act_bytes[0] > 1024 * 1024);
        snprintf(v, sizeof v, "%zu", t.weight_bytes[0] + t.act_bytes[0] / 2);
        setenv("LOOM_DEVICE_MEMORY_LIMIT", v, 1);
        st = load(1, &p, &m, err, sizeof err);
        CHECK_MSG(st == LOOM_ERR_OOM && !m &&
                      strstr(err, "out of memory on vulkan at the KV cache 'cache_k.2'") &&
                      strstr(err, "try --gpu-layers"),
                  "weights fit, KV does not: %s", err);
        loom_model_free(m);
        m = NULL;
    }
    setenv("LOOM_DEVICE_MEMORY_LIMIT", "12Q", 1);
    CHECK(load(1, &p, &m, err, sizeof err) == LOOM_ERR_INVALID_ARG &&
          strstr(err, "LOOM_DEVICE_MEMORY_LIMIT='12Q'"));
    unsetenv("LOOM_DEVICE_MEMORY_LIMIT");
}

int main(void) {
    if (loom_registry_init() != LOOM_OK) return 1;
    loom_backend *vk = loom_registry_find("vulkan");
    if (!vk || !loom_registry_available(vk->index)) {
        printf("test_layer_split: SKIP (no usable Vulkan device)\n");
        loom_registry_shutdown();
        return 77;
    }
    for (int u = 0; u < 2; u++) {
        snprintf(g_path[u], sizeof g_path[u], "/tmp/loom_split_%d_%d.gguf", (int)getpid(), u);
        write_model(u);
    }
    test_boundaries(0, LOOM_F16);
    test_boundaries(1, LOOM_F16);
    test_boundaries(1, LOOM_F32);
    test_memory_limit();
    for (int u = 0; u < 2; u++)
        unlink(g_path[u]);
    loom_registry_shutdown();
    return test_summary("test_layer_split");
}
