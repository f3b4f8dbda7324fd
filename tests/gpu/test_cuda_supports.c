/* tests/gpu/test_cuda_supports.c - the GPU plugins' supports() claims,
 * checked without a GPU.
 *
 * supports() looks only at the node (op, dtypes, shapes), so the plugin's
 * table can be asked directly after dlopen, before (and without) init. The
 * cases pin the documented coverage: what must run on the GPU (every op the
 * Llama-3/MoE forward pass uses, each weight dtype) and what must be left to
 * the CPU (layouts the kernels do not handle). Skipped when a plugin was not
 * built. */
#define _POSIX_C_SOURCE 200809L

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loom/backend.h"
#include "testing.h"

static const loom_backend_iface *load(const char *name, void **dl) {
    const char *dir = getenv("LOOM_PLUGIN_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/libloom-backend-%s.so", dir && *dir ? dir : ".", name);
    *dl = NULL;
    if (access(path, F_OK) != 0) return NULL;
    *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    CHECK_MSG(*dl != NULL, "dlopen %s: %s", path, dlerror());
    if (!*dl) return NULL;
    void *sym = dlsym(*dl, LOOM_BACKEND_PLUGIN_ENTRY);
    CHECK(sym != NULL);
    if (!sym) return NULL;
    loom_backend_plugin_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry);
    return entry();
}

static void check_iface(const char *name, int priority) {
    void *dl = NULL;
    const loom_backend_iface *f = load(name, &dl);
    if (!f) {
        printf("%s: plugin not built, skipped\n", name);
        if (dl) dlclose(dl);
        return;
    }
    CHECK(f->abi_version == LOOM_BACKEND_ABI_VERSION);
    CHECK(strcmp(f->name, name) == 0);
    CHECK(f->priority == priority);
    CHECK(f->init && f->shutdown && f->device_info && f->buffer_alloc && f->buffer_free &&
          f->buffer_upload && f->buffer_download && f->supports && f->compute && f->synchronize);

    loom_graph *g = NULL;
    CHECK(loom_graph_new(&g) == LOOM_OK);
    const int64_t D = 64, T = 5;
    loom_tensor *x = loom_tensor_2d(g, LOOM_F32, D, T);
    /* every weight dtype: decode (M = 5) and prefill-sized (M = 40) */
    const loom_dtype wt[] = {LOOM_F32,  LOOM_F16, LOOM_BF16,  LOOM_Q8_0,
                             LOOM_Q4_0, LOOM_NF4, LOOM_NF4_DQ};
    for (size_t i = 0; i < sizeof wt / sizeof wt[0]; i++) {
        loom_tensor *w = loom_tensor_2d(g, wt[i], D, 32);
        CHECK_MSG(f->supports(NULL, loom_matmul(g, w, x)), "matmul w=%s", loom_dtype_name(wt[i]));
        loom_tensor *xb = loom_tensor_2d(g, LOOM_BF16, D, 40);
        CHECK_MSG(f->supports(NULL, loom_matmul(g, w, xb)), "matmul w=%s x=bf16",
                  loom_dtype_name(wt[i]));
    }
    /* ggml's legacy types: matmul and get_rows (generic kernels), moe on the cpu */
    const loom_dtype lq[] = {LOOM_Q4_1, LOOM_Q5_0, LOOM_Q5_1};
    for (size_t i = 0; i < 3; i++) {
        loom_tensor *w = loom_tensor_2d(g, lq[i], D, 32);
        CHECK_MSG(f->supports(NULL, loom_matmul(g, w, x)), "matmul w=%s", loom_dtype_name(lq[i]));
        loom_tensor *ids1 = loom_tensor_1d(g, LOOM_I32, T);
        CHECK(f->supports(NULL, loom_get_rows(g, loom_tensor_2d(g, lq[i], D, 100), ids1)));
        CHECK(!f->supports(NULL, loom_cpy(g, x, lq[i])));
        loom_tensor *lgq = loom_tensor_2d(g, LOOM_F32, 8, T);
        loom_tensor *eg = loom_tensor_3d(g, lq[i], D, 64, 8),
                    *ed = loom_tensor_3d(g, lq[i], 64, D, 8);
        CHECK(!f->supports(NULL, loom_moe(g, x, lgq, eg, eg, ed, 2)));
    }
    loom_tensor *y = loom_rms_norm(g, x, 1e-5f);
    CHECK(f->supports(NULL, y));
    CHECK(f->supports(NULL, loom_add(g, x, loom_tensor_1d(g, LOOM_F32, D))));
    CHECK(f->supports(NULL, loom_mul(g, x, x)));
    CHECK(f->supports(NULL, loom_scale(g, x, 0.5f)));
    CHECK(f->supports(NULL, loom_silu(g, x)));
    CHECK(f->supports(NULL, loom_gelu(g, x))); /* sentence encoders (ADR 0027) */
    CHECK(f->supports(NULL, loom_gelu_back(g, x, x)));
    CHECK(f->supports(NULL, loom_swiglu(g, x, x)));
    CHECK(f->supports(NULL, loom_softmax(g, x, 0.125f, true, 2)));
    loom_tensor *h = loom_tensor_3d(g, LOOM_F32, 16, 4, T);
    loom_tensor *pos = loom_tensor_1d(g, LOOM_I32, T);
    loom_rope_params rp = loom_rope_params_llama3(16);
    CHECK(f->supports(NULL, loom_rope(g, h, pos, &rp)));
    loom_tensor *ids = loom_tensor_1d(g, LOOM_I32, T);
    CHECK(f->supports(NULL, loom_get_rows(g, loom_tensor_2d(g, LOOM_Q8_0, D, 100), ids)));
    CHECK(f->supports(NULL, loom_cpy(g, x, LOOM_F16)));
    CHECK(f->supports(NULL, loom_cpy(g, x, LOOM_BF16)));
    /* quantizing must round exactly like ggml: left to the CPU */
    CHECK(!f->supports(NULL, loom_cpy(g, x, LOOM_Q8_0)));
    CHECK(!f->supports(NULL, loom_cpy(g, x, LOOM_NF4)));
    CHECK(!f->supports(NULL, loom_concat(g, x, x, 1)));

    /* attention: f32 and f16 K/V, GQA; head dim above 256 goes to the CPU */
    loom_tensor *q = loom_tensor_4d(g, LOOM_F32, 128, T, 8, 1);
    loom_tensor *k16 = loom_tensor_4d(g, LOOM_F16, 128, 9, 2, 1);
    CHECK(f->supports(NULL, loom_flash_attn(g, q, k16, k16, 0.088f, true, 4)));
    loom_tensor *q5 = loom_tensor_4d(g, LOOM_F32, 512, T, 2, 1);
    loom_tensor *k5 = loom_tensor_4d(g, LOOM_F32, 512, 9, 2, 1);
    CHECK(!f->supports(NULL, loom_flash_attn(g, q5, k5, k5, 0.04f, false, 0)));

    /* MoE with q4_0 experts, and its gate */
    const int64_t E = 8, F = 96;
    loom_tensor *lg = loom_tensor_2d(g, LOOM_F32, E, T);
    loom_tensor *wg = loom_tensor_3d(g, LOOM_Q4_0, D, F, E);
    loom_tensor *wd = loom_tensor_3d(g, LOOM_Q4_0, F, D, E);
    CHECK(f->supports(NULL, loom_moe(g, x, lg, wg, wg, wd, 2)));
    CHECK(f->supports(NULL, loom_moe_gate(g, lg, 2)));
    CHECK_MSG(loom_graph_status(g) == LOOM_OK, "%s", loom_graph_error(g));
    loom_graph_free(g);
    dlclose(dl);
}

int main(void) {
    check_iface("cuda", 400);
    check_iface("hip", 300);
    return test_summary("test_cuda_supports");
}
